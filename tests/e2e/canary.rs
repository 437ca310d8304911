//! Stage canaries (#21) through the real binary, with the canary's overrides naming a second
//! SageMaker endpoint (the in-test SageMaker records which endpoint each call named): the share of
//! canary requests over 400 requests is within a binomial bound, and each canary request carries
//! the flag and the overridden variable into its template, its access-log line and the metrics;
//! sticky assignment sends one user (a path parameter) or one API key always to the same side, the
//! side SHA-256 of the stage and the value says; canary and primary never share a cache entry,
//! and a canary without `use_stage_cache` never touches the cache; a rollout 5% → 50% → promoted,
//! by reloads, fails no request of a stream running through it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sha2::{Digest, Sha256};

use crate::cache::cached_config;
use crate::config_reload::{rename_over, until_generation};
use crate::kit::config::{ENDPOINT_PROD, ENDPOINT_TEMP, KEY_A, KEY_TEMP_ONLY};
use crate::kit::{Gateway, GatewayYaml, Upstream, WAIT, eventually};
use crate::metrics::{admin_url, sample, scrape};

const CANARY_PROD: &str = "ep-prod-canary";
const CANARY_TEMP: &str = "ep-temp-canary";

/// `text` with a canary under the stage whose endpoint is `stage_endpoint`: `percent` of its
/// requests to `canary_endpoint`, plus `more` settings (`, sticky: …`).
fn with_canary(
    text: &str,
    stage_endpoint: &str,
    percent: f64,
    canary_endpoint: &str,
    more: &str,
) -> String {
    let line = format!("    variables: {{ endpoint: {stage_endpoint} }}\n");
    assert!(text.contains(&line), "the kit's config changed shape");
    let block = format!(
        "{{ percent_traffic: {percent}, stage_variable_overrides: {{ endpoint: {canary_endpoint} }}{more} }}"
    );
    text.replacen(&line, &format!("{line}    canary: {block}\n"), 1)
}

/// The endpoint named by each upstream call, in order.
fn endpoints(upstream: &Upstream) -> Vec<String> {
    upstream
        .received()
        .iter()
        .map(|r| r.path.split('/').nth(2).unwrap().to_owned())
        .collect()
}

/// The documented sticky assignment: SHA-256(stage NUL value), top 53 bits as a fraction.
fn sticky_is_canary(stage: &str, value: &str, percent: f64) -> bool {
    let digest = Sha256::digest([stage.as_bytes(), b"\0", value.as_bytes()].concat());
    let top = u64::from_be_bytes(digest[..8].try_into().unwrap()) >> 11;
    (top as f64 / (1u64 << 53) as f64) * 100.0 < percent
}

async fn open(gateway: &Gateway, stage: &str, user: &str) -> crate::kit::Reply {
    gateway
        .get(&format!("/{stage}/open/{user}"))
        .header("content-type", "application/json")
        .send()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarter_of_the_requests_go_to_the_canary_and_carry_the_flag_everywhere() {
    const N: usize = 400;
    let upstream = Upstream::start().await;
    let config = GatewayYaml::standard()
        .integration_field(
            "request_templates",
            r#"{ application/json: '{"canary": "$context.isCanaryRequest", "endpoint": "$stageVariables.endpoint"}' }"#,
        )
        .render();
    let config = with_canary(&config, ENDPOINT_PROD, 25.0, CANARY_PROD, "");
    let gateway = Gateway::builder()
        .config_text(&config)
        .upstream(&upstream)
        .env("SAGEGATE_ADMIN_LISTEN", "127.0.0.1:0")
        .start()
        .await;
    for i in 0..N {
        open(&gateway, "prod", &format!("u{i}")).await.assert_ok();
    }
    // Every call's template saw the flag and the variable of its own side.
    let calls = upstream.received();
    assert_eq!(calls.len(), N);
    let mut canary = 0;
    for call in &calls {
        let endpoint = call.path.split('/').nth(2).unwrap();
        let body = call.json();
        let is_canary = endpoint == CANARY_PROD;
        assert!(is_canary || endpoint == ENDPOINT_PROD, "{endpoint}");
        assert_eq!(body["endpoint"], endpoint, "{body}");
        assert_eq!(body["canary"], is_canary.to_string(), "{body}");
        canary += usize::from(is_canary);
    }
    // Binomial(400, 0.25): mean 100, sigma 8.66; 4.5 sigma is [61, 139]. Fails when the split is
    // wrong (a 5% or 50% split lands far outside), essentially never by chance (p < 1e-5).
    let sigma = (N as f64 * 0.25 * 0.75).sqrt();
    let off = (canary as f64 - N as f64 * 0.25).abs();
    assert!(off <= 4.5 * sigma, "{canary} of {N} canary requests");

    // The access log says which side and which endpoint answered each request.
    let lines = eventually("an access-log line per request", WAIT, || {
        let lines: Vec<_> = gateway
            .access_log()
            .into_iter()
            .filter(|l| l["stage"] == "prod")
            .collect();
        async move { (lines.len() >= N).then_some(lines) }
    })
    .await;
    let logged_canary = lines
        .iter()
        .filter(|l| {
            let is_canary = l["isCanaryRequest"] == true;
            let endpoint = if is_canary {
                CANARY_PROD
            } else {
                ENDPOINT_PROD
            };
            assert_eq!(l["endpointName"], endpoint, "{l}");
            is_canary
        })
        .count();
    assert_eq!(logged_canary, canary);

    // The metrics split the stage's requests by side.
    let s = scrape(&admin_url(&gateway)).await;
    let count = |side: &str| {
        let labels = [("stage", "prod"), ("canary", side), ("status_class", "2xx")];
        sample(&s, "sagegate_canary_requests_total", &labels).unwrap_or(0.0)
    };
    assert_eq!(count("true"), canary as f64);
    assert_eq!(count("false"), (N - canary) as f64);
    let latency = [("stage", "prod"), ("canary", "true")];
    assert_eq!(
        sample(&s, "sagegate_canary_request_duration_seconds", &latency),
        Some(canary as f64)
    );

    // A stage without a canary: never a canary request, no canary series.
    open(&gateway, "temp", "u1").await.assert_ok();
    assert_eq!(endpoints(&upstream).pop().unwrap(), ENDPOINT_TEMP);
    let s = scrape(&admin_url(&gateway)).await;
    let temp = [
        ("stage", "temp"),
        ("canary", "false"),
        ("status_class", "2xx"),
    ];
    assert_eq!(sample(&s, "sagegate_canary_requests_total", &temp), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_assignment_keeps_a_user_and_a_key_on_one_side() {
    let upstream = Upstream::start().await;
    let config = with_canary(
        &GatewayYaml::standard().render(),
        ENDPOINT_PROD,
        50.0,
        CANARY_PROD,
        ", sticky: { by: parameter, name: method.request.path.user_id }",
    );
    let config = with_canary(
        &config,
        ENDPOINT_TEMP,
        50.0,
        CANARY_TEMP,
        ", sticky: { by: api_key }",
    );
    let gateway = Gateway::builder()
        .config_text(&config)
        .upstream(&upstream)
        .start()
        .await;

    // By user: each of 20 users five times, interleaved.
    let users: Vec<String> = (0..20).map(|i| format!("U:{i}")).collect();
    for _ in 0..5 {
        for user in &users {
            open(&gateway, "prod", user).await.assert_ok();
        }
    }
    let mut sides: BTreeMap<String, Vec<bool>> = BTreeMap::new();
    for call in upstream.received() {
        let user = call.json()["user_id"].as_str().unwrap().to_owned();
        let endpoint = call.path.split('/').nth(2).unwrap().to_owned();
        sides.entry(user).or_default().push(endpoint == CANARY_PROD);
    }
    assert_eq!(sides.len(), users.len());
    for (user, seen) in &sides {
        assert_eq!(seen.len(), 5);
        let want = sticky_is_canary("prod", user, 50.0);
        assert!(seen.iter().all(|s| *s == want), "{user}: {seen:?}");
    }
    // Different users spread over both sides (the hash says which; 20 users all on one side
    // would be a broken hash).
    let in_canary = sides.values().filter(|s| s[0]).count();
    assert!((1..users.len()).contains(&in_canary), "{in_canary} of 20");

    // By API key id: partner-a and temp-only, each ten times.
    let before = upstream.count();
    for _ in 0..10 {
        for key in [KEY_A, KEY_TEMP_ONLY] {
            gateway
                .get("/temp/other/U:1")
                .key(key)
                .send()
                .await
                .assert_ok();
        }
    }
    let got = endpoints(&upstream).split_off(before);
    for (i, key_id) in ["partner-a", "temp-only"].into_iter().enumerate() {
        let want = if sticky_is_canary("temp", key_id, 50.0) {
            CANARY_TEMP
        } else {
            ENDPOINT_TEMP
        };
        assert!(
            got.iter().skip(i).step_by(2).all(|e| e == want),
            "{key_id}: {got:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_and_primary_never_share_a_cache_entry() {
    const N: usize = 40;
    let upstream = Upstream::start().await;
    let config = cached_config("{ enabled: true }", "{ enabled: true }");
    // prod: the canary caches, apart from the primary; temp: the canary skips the cache.
    let config = with_canary(
        &config,
        ENDPOINT_PROD,
        50.0,
        CANARY_PROD,
        ", use_stage_cache: true",
    );
    let config = with_canary(&config, ENDPOINT_TEMP, 50.0, CANARY_TEMP, "");
    let gateway = Gateway::builder()
        .config_text(&config)
        .upstream(&upstream)
        .start()
        .await;
    let path =
        |stage: &str| format!("/{stage}/recommended-movies/U:1?k=10&inference_type=deterministic");

    // One key, N requests: each side misses once, then hits its own entry.
    let mut statuses = Vec::new();
    for _ in 0..N {
        let reply = gateway.get(&path("prod")).key(KEY_A).send().await;
        reply.assert_ok();
        statuses.push(reply.header("x-sagegate-cache").unwrap().to_owned());
    }
    let mut called = endpoints(&upstream);
    called.sort();
    assert_eq!(called, [ENDPOINT_PROD, CANARY_PROD], "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| *s == "miss").count(), 2);

    // Without use_stage_cache: every canary request calls its endpoint and bypasses the cache
    // (neither reads nor writes it); the primary still misses once and then hits.
    let before = upstream.count();
    let mut canary_replies = 0;
    for _ in 0..N {
        let reply = gateway.get(&path("temp")).key(KEY_A).send().await;
        reply.assert_ok();
        let entry = gateway.access_entry(&reply.request_id()).await;
        if entry["isCanaryRequest"] == true {
            canary_replies += 1;
            assert_eq!(reply.header("x-sagegate-cache"), Some("bypass"));
            assert_eq!(entry["cacheStatus"], "bypass", "{entry}");
        }
    }
    let called = endpoints(&upstream).split_off(before);
    let canary_calls = called.iter().filter(|e| *e == CANARY_TEMP).count();
    assert_eq!(canary_calls, canary_replies);
    assert!(canary_replies > 0 && canary_replies < N);
    assert_eq!(called.len() - canary_calls, 1, "{called:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_by_reloads_fails_no_request() {
    let upstream = Upstream::start().await;
    let base = GatewayYaml::standard().render();
    let canary = |percent: f64| with_canary(&base, ENDPOINT_PROD, percent, CANARY_PROD, "");
    let gateway = Gateway::builder()
        .config_text(&canary(5.0))
        .upstream(&upstream)
        .start()
        .await;

    // A stream of requests runs through every reload (bounded: it stops at the end, or at 20000).
    let stop = Arc::new(AtomicBool::new(false));
    let url = gateway.url("/prod/open/U:1");
    let stream = tokio::spawn({
        let stop = stop.clone();
        async move {
            let client = reqwest::Client::builder().no_proxy().build().unwrap();
            let mut statuses = Vec::new();
            while !stop.load(Ordering::Relaxed) && statuses.len() < 20_000 {
                let resp = client.get(&url).send().await.unwrap();
                statuses.push(resp.status().as_u16());
            }
            statuses
        }
    });

    // 50%: both endpoints answer.
    rename_over(&gateway, &canary(50.0));
    until_generation(&gateway, 1).await;
    let before = upstream.count();
    eventually("both endpoints called at 50%", WAIT, || {
        let got = endpoints(&upstream).split_off(before.min(upstream.count()));
        let both = got.iter().any(|e| e == CANARY_PROD) && got.iter().any(|e| e == ENDPOINT_PROD);
        async move { both.then_some(()) }
    })
    .await;

    // Promoted: the operator merged the overrides into the stage and removed the canary.
    let promoted = base.replacen(
        &format!("endpoint: {ENDPOINT_PROD} "),
        &format!("endpoint: {CANARY_PROD} "),
        1,
    );
    assert_ne!(promoted, base);
    rename_over(&gateway, &promoted);
    until_generation(&gateway, 2).await;
    // (The stream's requests that loaded the old configuration may still be arriving: only
    // this user's calls, all made after the swap, are counted.)
    for _ in 0..20 {
        let reply = open(&gateway, "prod", "U:2").await;
        reply.assert_ok();
        let entry = gateway.access_entry(&reply.request_id()).await;
        assert_eq!(entry["isCanaryRequest"], false, "{entry}");
    }
    let after: Vec<String> = upstream
        .received()
        .iter()
        .filter(|r| r.json()["user_id"] == "U:2")
        .map(|r| r.path.split('/').nth(2).unwrap().to_owned())
        .collect();
    assert_eq!(after.len(), 20);
    assert!(after.iter().all(|e| e == CANARY_PROD), "{after:?}");

    stop.store(true, Ordering::Relaxed);
    let statuses = stream.await.unwrap();
    assert!(!statuses.is_empty());
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
}
