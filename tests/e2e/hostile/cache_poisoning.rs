//! Cache poisoning (issue 14): no caller can put an answer into the stage cache that another
//! caller's request then gets. Each test plays one attack against the real binary: a GET with a
//! body and an odd content type, a header the template falls back to (`seed`), a template that
//! reads the caller's identity, a trace id the caller writes, and `check-config` refusing a cached
//! template that reads outside its key, at the reference's position.

use std::process::Command;

use crate::cache::cached_config;
use crate::kit::config::{KEY_A, KEY_TEMP_ONLY};
use crate::kit::{
    Gateway, GatewayYaml, KeysYaml, Recommender, Upstream, sagegate_bin, shipped_config_dir,
};

/// The victim's request: the seed, with k=3.
const VICTIM: &str = "/temp/recommended-movies/U:114521?k=3&inference_type=deterministic";
/// What the attacker wants every caller of [`VICTIM`] to get.
const ATTACK_BODY: &str =
    r#"{"user_id":"U:1","k":3,"inference_type":"stochastic_epsilon_greedy","epsilon":1}"#;

fn shipped(name: &str) -> String {
    std::fs::read_to_string(shipped_config_dir().join(name)).unwrap()
}

/// The shipped `gateway.yaml` in front of the real recommender; callers `KEY_A` (the victim) and
/// `KEY_TEMP_ONLY` (the attacker).
async fn shipped_gateway(recommender: &Recommender) -> Gateway {
    Gateway::builder()
        .config_text(&shipped("gateway.yaml"))
        .keys(KeysYaml::standard())
        .upstream_url(&recommender.url())
        .start()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_with_an_odd_content_type_never_reaches_a_cached_answer() {
    let recommender = Recommender::start().await;
    let gateway = shipped_gateway(&recommender).await;

    // The attack of the issue: the template does not match, so the body would pass through.
    gateway
        .get(VICTIM)
        .key(KEY_TEMP_ONLY)
        .header("content-type", "application/vnd.x+json")
        .body(ATTACK_BODY)
        .send()
        .await
        .assert_unsupported_media_type();
    // A JSON body on the GET is rendered through the template, which does not read it.
    let json_body = gateway
        .get(VICTIM)
        .key(KEY_TEMP_ONLY)
        .header("content-type", "application/json")
        .body(ATTACK_BODY)
        .send()
        .await;
    let attacker = json_body.assert_ok();
    assert_eq!(attacker["user_id"], "U:114521", "{attacker}");

    let victim = gateway.get(VICTIM).key(KEY_A).send().await;
    let body = victim.assert_ok();
    assert_eq!(body["user_id"], "U:114521", "{body}");
    assert_eq!(body["inference_type"], "deterministic", "{body}");
    assert_eq!(body["k"], 3, "{body}");
    assert_eq!(
        body, attacker,
        "one deterministic answer, whoever asked first"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seed_header_never_reaches_a_cached_answer() {
    let recommender = Recommender::start().await;
    let gateway = shipped_gateway(&recommender).await;

    // `$input.params('seed')` would have read the header and sent `"seed":"4242"` to the model,
    // which echoes it; the answer would then be every caller's.
    let attack = gateway
        .get(VICTIM)
        .key(KEY_TEMP_ONLY)
        .header("seed", "4242")
        .send()
        .await;
    let attacker = attack.assert_ok();
    assert_eq!(attack.header("x-sagegate-cache"), Some("miss"));
    assert_ne!(
        attacker["rng"]["seed"], "4242",
        "the header reached the model"
    );

    // The victim shares the entry, which holds nothing of the attacker's.
    let victim = gateway.get(VICTIM).key(KEY_A).send().await;
    let body = victim.assert_ok();
    assert_eq!(victim.header("x-sagegate-cache"), Some("hit"));
    assert_eq!(body["rng"]["seed"], attacker["rng"]["seed"]);

    // A seed in the query string is in the key: its own entry, and it reaches the model.
    let seeded = gateway
        .get(&format!("{VICTIM}&seed=4242"))
        .key(KEY_A)
        .send()
        .await;
    assert_eq!(seeded.assert_ok()["rng"]["seed"], "4242");
    assert_eq!(seeded.header("x-sagegate-cache"), Some("miss"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_that_passes_bodies_through_keys_them() {
    // The kit's cached route has no template: bodies pass through, so the key holds the body's
    // digest and the content type.
    let upstream = Upstream::start().await;
    let gateway = Gateway::builder()
        .config_text(&cached_config("{ enabled: true }", "{ enabled: true }"))
        .keys(KeysYaml::standard())
        .upstream(&upstream)
        .start()
        .await;
    let url = "/temp/recommended-movies/U:1?k=3&inference_type=deterministic";
    let send = |key: &'static str, content_type: Option<&'static str>, body: &'static str| {
        let mut req = gateway.get(url).key(key);
        if let Some(t) = content_type {
            req = req.header("content-type", t);
        }
        if !body.is_empty() {
            req = req.body(body);
        }
        req.send()
    };
    let status = |r: &crate::kit::Reply| r.header("x-sagegate-cache").map(str::to_owned);

    let attack = send(KEY_TEMP_ONLY, Some("application/vnd.x+json"), ATTACK_BODY).await;
    attack.assert_ok();
    assert_eq!(status(&attack).as_deref(), Some("miss"));
    assert_eq!(upstream.single().body, ATTACK_BODY.as_bytes());

    // The victim's request is another key: its own call, with the default body.
    let victim = send(KEY_A, None, "").await;
    victim.assert_ok();
    assert_eq!(status(&victim).as_deref(), Some("miss"));
    let received = upstream.received();
    assert_eq!(received.len(), 2);
    assert_eq!(
        received[1].json(),
        serde_json::json!({"user_id": "U:1", "k": 3, "inference_type": "deterministic"})
    );

    // Bodies still cache: the same body and type again is a hit; another body or type is not.
    let again = send(KEY_A, Some("application/vnd.x+json"), ATTACK_BODY).await;
    assert_eq!(status(&again).as_deref(), Some("hit"));
    let other_type = send(KEY_A, Some("application/json"), ATTACK_BODY).await;
    assert_eq!(status(&other_type).as_deref(), Some("miss"));
    let other_body = send(KEY_A, Some("application/vnd.x+json"), "{}").await;
    assert_eq!(status(&other_body).as_deref(), Some("miss"));
    assert_eq!(
        send(KEY_A, None, "").await.header("x-sagegate-cache"),
        Some("hit")
    );
    assert_eq!(upstream.count(), 4);
}

/// The kit's cached config (temp caching, deterministic answers only) with the main route
/// rendering `template` (`passthrough_behavior: NEVER`) and keyed by `keys`.
fn templated(template: &str, keys: &str) -> String {
    let text = cached_config("{ enabled: true }", "{ enabled: false }");
    let from = text
        .find("      key_parameters:\n")
        .expect("the cached route");
    let to = from + text[from..].find("      when:").expect("its condition");
    let mut text = format!(
        "{}      key_parameters: [{keys}]\n{}",
        &text[..from],
        &text[to..]
    );
    let anchor = "      inference_id: context.requestId\n";
    let at = text.find(anchor).expect("the main route's integration") + anchor.len();
    text.insert_str(
        at,
        &format!(
            "      passthrough_behavior: NEVER\n      request_templates:\n        application/json: |\n          {template}\n"
        ),
    );
    text
}

/// The JSON body of the `n`-th request the upstream received.
fn sent_for(upstream: &Upstream, n: usize) -> serde_json::Value {
    upstream.received()[n].json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_reading_the_caller_is_refused_unless_the_key_holds_the_caller() {
    let template = r#"{"caller": "$context.identity.apiKeyId", "user_id": "$util.escapeJavaScript($input.params('user_id'))"}"#;

    // Without the caller in the key the gateway does not start: one caller's answer would be
    // served to the next.
    let unkeyed = templated(template, "method.request.path.user_id");
    let out = check_config(&unkeyed);
    assert!(!out.status.success(), "{out:?}");
    let (line, col) = position_of(&unkeyed, "$context.identity.apiKeyId");
    let expected = format!(
        ":{line}:{col}: routes[0].integration.request_templates.application/json: the cached answer depends on `$context.identity.apiKeyId`, which the cache key does not hold: add `context.identity.apiKeyId` to routes[0].cache.key_parameters"
    );
    let printed = printed(&out);
    assert!(
        printed.contains(&expected),
        "missing {expected:?} in:\n{printed}"
    );

    // With it, each caller has its own entry.
    let keyed = templated(
        template,
        "method.request.path.user_id, context.identity.apiKeyId",
    );
    let upstream = Upstream::start().await;
    let gateway = Gateway::builder()
        .config_text(&keyed)
        .keys(KeysYaml::standard())
        .upstream(&upstream)
        .start()
        .await;
    let url = "/temp/recommended-movies/U:5?k=1&inference_type=deterministic";
    let first = gateway.get(url).key(KEY_A).send().await;
    first.assert_ok();
    assert_eq!(first.header("x-sagegate-cache"), Some("miss"));
    let other = gateway.get(url).key(KEY_TEMP_ONLY).send().await;
    other.assert_ok();
    assert_eq!(other.header("x-sagegate-cache"), Some("miss"));
    assert_eq!(sent_for(&upstream, 0)["caller"], "partner-a");
    assert_eq!(sent_for(&upstream, 1)["caller"], "temp-only");
    let again = gateway.get(url).key(KEY_A).send().await;
    assert_eq!(again.header("x-sagegate-cache"), Some("hit"));
    assert_eq!(upstream.count(), 2);
}

#[test]
fn check_config_names_the_template_reference_that_reads_outside_the_key() {
    // The shipped template before this fix: `$input.params('seed')` falls back to the header.
    let template = r#"{"user_id": "$util.escapeJavaScript($input.params('user_id'))", "seed": "$util.escapeJavaScript($input.params('seed'))"}"#;
    let config = templated(
        template,
        "method.request.path.user_id, method.request.querystring.seed",
    );
    let printed = assert_refused_at(
        &config,
        "$input.params('seed')",
        "the cached answer depends on header `seed`",
    );
    assert!(
        printed.contains("add `method.request.header.seed` to routes[0].cache.key_parameters"),
        "{printed}"
    );
    // Reading the query string only loads.
    let fixed = format!(
        "#set($seed = \"$!input.params().querystring.get('seed')\"){}",
        template.replace("$input.params('seed')", "$seed")
    );
    let fixed = templated(
        &fixed,
        "method.request.path.user_id, method.request.querystring.seed",
    );
    let out = check_config(&fixed);
    assert!(out.status.success(), "{out:?}");
    // And the standard kit config, without a cache, is untouched by the rule.
    assert!(
        check_config(&GatewayYaml::standard().render())
            .status
            .success()
    );
}

#[test]
fn a_trace_id_the_caller_writes_is_refused_on_a_cached_route() {
    // `$context.xrayTraceId` is the caller's own `X-Amzn-Trace-Id` (any visible ASCII): read by a
    // cached route, `X-Amzn-Trace-Id: admin=true;variant=b` would reach the model (in the body or
    // its custom attributes) and the answer would be every caller's.
    let template = r#"{"user_id": "$util.escapeJavaScript($input.params('user_id'))", "trace": "$util.escapeJavaScript($context.xrayTraceId)"}"#;
    let config = templated(template, "method.request.path.user_id");
    assert_refused_at(
        &config,
        "$context.xrayTraceId",
        "the cached answer depends on `$context.xrayTraceId`, which no cache key can hold (the caller chooses it with its X-Amzn-Trace-Id header)",
    );

    // The same through an identifier header SageMaker passes to the model.
    let plain = templated(
        r#"{"user_id": "$util.escapeJavaScript($input.params('user_id'))"}"#,
        "method.request.path.user_id",
    );
    let attributes = plain.replacen(
        "custom_attributes: context.requestId",
        "custom_attributes: context.xrayTraceId",
        1,
    );
    assert_ne!(attributes, plain);
    let out = check_config(&attributes);
    assert!(!out.status.success(), "{out:?}");
    let printed = printed(&out);
    assert!(
        printed.contains("routes[0].integration.custom_attributes: the cached answer depends on `$context.xrayTraceId`, which no cache key can hold"),
        "{printed}"
    );
    // The gateway's own per-request id is fine.
    assert!(check_config(&plain).status.success());
}

/// Runs `check-config` on `config`, which must fail with `message` at the first `needle` in the
/// main route's request template; returns what it printed.
fn assert_refused_at(config: &str, needle: &str, message: &str) -> String {
    let out = check_config(config);
    assert!(!out.status.success(), "{out:?}");
    let (line, col) = position_of(config, needle);
    let printed = printed(&out);
    let expected = format!(
        "gateway.yaml:{line}:{col}: routes[0].integration.request_templates.application/json: {message}"
    );
    assert!(
        printed.contains(&expected),
        "missing {expected:?} in:\n{printed}"
    );
    printed
}

/// 1-based line and column (characters) of the first `needle` in `text`.
fn position_of(text: &str, needle: &str) -> (usize, usize) {
    text.lines()
        .enumerate()
        .find_map(|(i, l)| {
            let at = l.find(needle)?;
            Some((i + 1, l[..at].chars().count() + 1))
        })
        .unwrap_or_else(|| panic!("{needle} not in the config"))
}

/// What `check-config` printed, stderr then stdout.
fn printed(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout)
}

/// `sagegate check-config` on `config` (and the kit's standard keys), from a temp dir.
fn check_config(config: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("gateway.yaml");
    let keys_path = dir.path().join("keys.yaml");
    std::fs::write(&config_path, config).unwrap();
    std::fs::write(&keys_path, KeysYaml::standard().render()).unwrap();
    Command::new(sagegate_bin())
        .arg("check-config")
        .arg("--config")
        .arg(&config_path)
        .arg("--keys")
        .arg(&keys_path)
        .env_clear()
        .output()
        .unwrap()
}
