//! The command line: `check-config` (shipped config passes; every error of a broken config or
//! keys file is printed as `file:line:col: path: message`), `keys new` (a key printed once whose
//! `value_sha256` entry authenticates end to end), `healthcheck --url`, the image's default keys
//! file (`config/keys.empty.yaml`: loads, serves, and every key-protected route answers 403), and
//! `test-invoke` (prints what the running gateway sends SageMaker and answers its client, byte for
//! byte; exit 2 with the route, template and line:col on bad input).

use std::path::Path;
use std::process::{Command, Output};

use sha2::{Digest, Sha256};

use crate::kit::config::Plan;
use crate::kit::{
    DEMO_KEY, Gateway, KeysYaml, SageMakerReply, Upstream, closed_port, sagegate_bin,
    shipped_config_dir,
};

fn sagegate(args: &[&str]) -> Output {
    Command::new(sagegate_bin())
        .args(args)
        .env_clear()
        .output()
        .unwrap()
}

fn check_config(config: &Path, keys: &Path) -> Output {
    sagegate(&[
        "check-config",
        "--config",
        config.to_str().unwrap(),
        "--keys",
        keys.to_str().unwrap(),
    ])
}

#[test]
fn check_config_accepts_the_shipped_config() {
    let dir = shipped_config_dir();
    let out = check_config(&dir.join("gateway.yaml"), &dir.join("keys.yaml"));
    assert!(out.status.success(), "{out:?}");
}

/// The keys file the gateway image bakes in as its default keys source (../Dockerfile).
const IMAGE_DEFAULT_KEYS: &str = "keys.empty.yaml";

#[test]
fn check_config_accepts_the_image_default_keys_file() {
    let dir = shipped_config_dir();
    let out = check_config(&dir.join("gateway.yaml"), &dir.join(IMAGE_DEFAULT_KEYS));
    assert!(out.status.success(), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_default_keys_file_serves_and_refuses_every_key() {
    let shipped = |name: &str| std::fs::read_to_string(shipped_config_dir().join(name)).unwrap();
    let upstream = Upstream::start().await;
    let gateway = Gateway::builder()
        .config_text(&shipped("gateway.yaml"))
        .keys_text(&shipped(IMAGE_DEFAULT_KEYS))
        .upstream(&upstream)
        .start()
        .await;
    assert_eq!(gateway.health().await, Some(200), "the ALB keeps the task");
    for stage in ["temp", "prod"] {
        // The demo key of config/keys.yaml, no key, and any other key: all refused alike.
        for key in [Some(DEMO_KEY), None, Some("a-key-nobody-configured-0123")] {
            gateway
                .recommend(stage, "U:114521", key)
                .await
                .assert_forbidden();
        }
    }
    assert_eq!(upstream.count(), 0, "nothing reached SageMaker");
}

const BROKEN_GATEWAY: &str = r#"server:
  keep_alive_secs: 0
stages:
  prod:
    throttle: { rate_limit: 0, burst_limit: 1 }
routes:
  - method: GET
    path: /a
    integration: { endpoint_name: "${stageVariables.nope}", timeout_ms: 70000 }
"#;

const BROKEN_KEYS: &str = "usage_plans:
  - id: standard
    stages: [temp, staging]
    throttle: { rate_limit: 0, burst_limit: 5 }
keys:
  - id: a
    usage_plans: [standard]
    value: too-short-key
";

fn gateway_errors(file: &str) -> Vec<String> {
    vec![
        format!("{file}:2:20: server.keep_alive_secs: must be > 0"),
        format!("{file}:5:29: stages.prod.throttle.rate_limit: must be > 0"),
        format!(
            "{file}:9:35: routes[0].integration.endpoint_name: stage `prod` has no variable `nope`"
        ),
        format!("{file}:9:73: routes[0].integration.timeout_ms: must be between 50 and 60000"),
    ]
}

fn keys_errors(file: &str) -> Vec<String> {
    vec![
        format!(
            "{file}:3:20: usage_plans[0].stages[1]: unknown stage `staging` (gateway config stages: prod, temp)"
        ),
        format!(
            "{file}:4:29: usage_plans[0].throttle.rate_limit: must be a number > 0 (requests per second)"
        ),
        format!("{file}:8:12: keys[0].value: must be at least 20 characters (has 13)"),
    ]
}

/// Asserts the output lists exactly `expected`, one per line.
fn assert_lists(out: &Output, expected: &[String]) {
    assert!(!out.status.success(), "check-config must fail: {out:?}");
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    for e in expected {
        assert!(lines.contains(&e.as_str()), "missing `{e}` in:\n{text}");
    }
    assert_eq!(lines.len(), expected.len(), "unexpected lines in:\n{text}");
}

#[test]
fn check_config_prints_every_error_of_a_broken_gateway_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.yaml");
    std::fs::write(&config, BROKEN_GATEWAY).unwrap();
    // A keys file that fits the broken config's stages: only gateway.yaml's errors are expected.
    let keys = dir.path().join("keys.yaml");
    let shipped = std::fs::read_to_string(shipped_config_dir().join("keys.yaml")).unwrap();
    std::fs::write(
        &keys,
        shipped.replace("stages: [temp, prod]", "stages: [prod]"),
    )
    .unwrap();
    let out = check_config(&config, &keys);
    assert_lists(&out, &gateway_errors(config.to_str().unwrap()));
}

#[test]
fn check_config_prints_every_error_of_a_broken_keys_file() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.yaml");
    std::fs::write(&keys, BROKEN_KEYS).unwrap();
    let config = shipped_config_dir().join("gateway.yaml");
    let out = check_config(&config, &keys);
    assert_lists(&out, &keys_errors(keys.to_str().unwrap()));
}

#[test]
fn check_config_prints_the_errors_of_both_files_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.yaml");
    let keys = dir.path().join("keys.yaml");
    std::fs::write(&config, BROKEN_GATEWAY).unwrap();
    std::fs::write(&keys, BROKEN_KEYS).unwrap();
    let out = check_config(&config, &keys);
    // The keys file is checked against the stages of gateway.yaml; with that file broken, at
    // least the keys file's own errors (those not about stages) must still be reported.
    let mut expected = gateway_errors(config.to_str().unwrap());
    expected.extend(keys_errors(keys.to_str().unwrap()).into_iter().skip(1));
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success());
    for e in &expected {
        assert!(text.contains(e.as_str()), "missing `{e}` in:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_new_prints_a_key_once_and_an_entry_that_authenticates() {
    let out = sagegate(&["keys", "new", "--id", "fresh", "--plan", "standard"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let value = text
        .lines()
        .map(str::trim)
        .find(|l| l.len() >= 20 && l.bytes().all(|b| b.is_ascii_alphanumeric()))
        .unwrap_or_else(|| panic!("no key value in:\n{text}"))
        .to_owned();
    assert_eq!(
        text.matches(&value).count(),
        1,
        "the key is printed once:\n{text}"
    );
    let entry_start = text
        .find("  - id:")
        .unwrap_or_else(|| panic!("no entry in:\n{text}"));
    let entry = &text[entry_start..];
    let hash = hex::encode(Sha256::digest(value.as_bytes()));
    assert!(
        entry.contains(&format!("value_sha256: \"{hash}\"")),
        "{entry}"
    );
    assert!(!entry.contains(&value), "the entry holds only the hash");

    let upstream = Upstream::start().await;
    let gateway = Gateway::builder()
        .keys(
            KeysYaml::new()
                .plan(Plan::new("standard", &["temp", "prod"]))
                .raw_key_entries(entry),
        )
        .upstream(&upstream)
        .start()
        .await;
    let reply = gateway.recommend("temp", "U:114521", Some(&value)).await;
    reply.assert_ok();
    let line = gateway.access_entry(&reply.request_id()).await;
    assert_eq!(line["identity.apiKeyId"], "fresh");
    gateway
        .recommend("temp", "U:114521", Some(&value[1..]))
        .await
        .assert_forbidden();

    // A second run prints a different key.
    let again =
        String::from_utf8(sagegate(&["keys", "new", "--id", "fresh", "--plan", "standard"]).stdout)
            .unwrap();
    assert!(!again.contains(&value));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_exits_zero_when_healthy_and_one_when_not() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::in_front_of(&upstream).await;
    let url = gateway.url("/healthz");
    let ok = tokio::task::spawn_blocking(move || sagegate(&["healthcheck", "--url", &url]))
        .await
        .unwrap();
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");
    let closed = format!("http://127.0.0.1:{}/healthz", closed_port());
    let down = tokio::task::spawn_blocking(move || sagegate(&["healthcheck", "--url", &closed]))
        .await
        .unwrap();
    assert_eq!(down.status.code(), Some(1), "{down:?}");
}

#[test]
fn serve_refuses_to_start_on_a_broken_config_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.yaml");
    std::fs::write(&config, BROKEN_GATEWAY).unwrap();
    let keys = shipped_config_dir().join("keys.yaml");
    let out = Command::new(sagegate_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--keys")
        .arg(&keys)
        .env_clear()
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    assert!(!out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stderr);
    for e in gateway_errors(config.to_str().unwrap()) {
        assert!(text.contains(&e), "missing `{e}` in:\n{text}");
    }
}

/// `sagegate test-invoke` on `config` with `args`, `stdin` as standard input.
pub(crate) fn test_invoke(config: &Path, args: &[&str], stdin: &[u8]) -> Output {
    use std::io::Write as _;
    let mut child = Command::new(sagegate_bin())
        .arg("test-invoke")
        .arg("--config")
        .arg(config)
        .args(args)
        .env_clear()
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn printed(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"))
}

const SEED_PATH: &str = "/recommended-movies/O%27Brien";
const SEED_QUERY: &str = "k=3&inference_type=deterministic&seed=7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_invoke_prints_what_the_gateway_sends_and_answers() {
    let answer = r#"{"user_id":"O'Brien","recommendations":[{"item_id":"M:1","score":0.5}]}"#;
    let upstream = Upstream::replying(SageMakerReply::ok(answer)).await;
    let shipped = |name: &str| std::fs::read_to_string(shipped_config_dir().join(name)).unwrap();
    let gateway = Gateway::builder()
        .config_text(&shipped("gateway.yaml"))
        .keys_text(&shipped("keys.yaml"))
        .upstream(&upstream)
        .start()
        .await;
    let reply = gateway
        .get(&format!("/temp{SEED_PATH}?{SEED_QUERY}"))
        .key(DEMO_KEY)
        .header("accept", "application/json")
        .send()
        .await;
    reply.assert_ok();
    let sent = upstream.single();

    let config = shipped_config_dir().join("gateway.yaml");
    let dir = tempfile::tempdir().unwrap();
    let answer_file = dir.path().join("answer.json");
    std::fs::write(&answer_file, answer).unwrap();
    let out = tokio::task::spawn_blocking(move || {
        test_invoke(
            &config,
            &[
                "--stage",
                "temp",
                "--method",
                "GET",
                "--path",
                SEED_PATH,
                "--query",
                SEED_QUERY,
                "--header",
                "Accept: application/json",
                "--upstream-status",
                "200",
                "--upstream-body",
                answer_file.to_str().unwrap(),
            ],
            b"",
        )
    })
    .await
    .unwrap();
    let printed = printed(&out);
    // The call: the endpoint the stage names, the body and headers the gateway sent.
    assert_eq!(printed["endpoint"], "movie-recommender-temp");
    assert_eq!(printed["body"].as_str().unwrap().as_bytes(), &sent.body[..]);
    for name in ["Content-Type", "Accept"] {
        assert_eq!(
            printed["headers"][name].as_str(),
            sent.header(&name.to_ascii_lowercase()),
            "{name}: {printed}"
        );
    }
    // The custom attributes and inference id are the request's id, a fresh one per request.
    let attrs = printed["headers"]["X-Amzn-SageMaker-Custom-Attributes"]
        .as_str()
        .unwrap();
    assert!(crate::kit::client::is_uuid(attrs), "{printed}");
    assert!(
        sent.header("x-amzn-sagemaker-custom-attributes")
            .is_some_and(crate::kit::client::is_uuid)
    );
    // The answer: what the client got.
    assert_eq!(printed["response"]["status"], u64::from(reply.status));
    assert_eq!(printed["response"]["body"], reply.text());
    assert_eq!(
        printed["response"]["headers"]["content-type"].as_str(),
        reply.header("content-type")
    );
}

const TEMPLATED_CONFIG: &str = r#"stages:
  temp:
    variables: { endpoint: ep-temp }
routes:
  - method: POST
    path: /items/{id}
    integration:
      endpoint_name: "${stageVariables.endpoint}"
      request_templates:
        application/json: |-
          #set($context.responseOverride.header.x-from-request = "yes")
          {"id": "$input.params('id')",
           "n": $input.json('$.n'), "decoded": "$util.base64Decode($input.params('b64'))"}
      responses:
        - selection_pattern: "424"
          status: 400
          response_templates:
            application/json: '{"model": $input.json(''$.OriginalMessage'')}'
        - status: 200
"#;

/// `test-invoke` flags for `POST /temp/items/A:1?{query}`, the body from standard input.
fn items_request(query: &str) -> Vec<&str> {
    vec![
        "--stage",
        "temp",
        "--method",
        "POST",
        "--path",
        "/items/A:1",
        "--query",
        query,
        "--body",
        "-",
    ]
}

#[test]
fn test_invoke_reads_the_body_from_stdin_and_maps_answers() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.yaml");
    std::fs::write(&config, TEMPLATED_CONFIG).unwrap();
    let base = items_request("b64=aGk=");
    let mut out = printed(&test_invoke(&config, &base, br#"{"n": [1, 2]}"#));
    // Both default to the request's id, a fresh one per request.
    for name in [
        "X-Amzn-SageMaker-Custom-Attributes",
        "X-Amzn-SageMaker-Inference-Id",
    ] {
        let id = out["headers"].as_object_mut().unwrap().remove(name);
        assert!(id.is_some_and(|v| crate::kit::client::is_uuid(v.as_str().unwrap())));
    }
    assert_eq!(
        out,
        serde_json::json!({
            "endpoint": "ep-temp",
            "headers": {"Content-Type": "application/json", "Accept": "application/json"},
            "body": "{\"id\": \"A:1\",\n \"n\": [1,2], \"decoded\": \"hi\"}",
        })
    );
    // A model error (424, as SageMaker answers it) through the "424" integration response; the
    // request template's header override reaches the client.
    let error_file = dir.path().join("error.json");
    std::fs::write(
        &error_file,
        r#"{"ErrorCode":"CLIENT_ERROR_FROM_MODEL","OriginalStatusCode":400,"OriginalMessage":"k must be > 0","Message":"Received client error (400)"}"#,
    )
    .unwrap();
    let mut args = base.to_vec();
    args.extend([
        "--upstream-status",
        "424",
        "--upstream-body",
        error_file.to_str().unwrap(),
    ]);
    let out = printed(&test_invoke(&config, &args, b"{}"));
    assert_eq!(out["response"]["status"], 400);
    assert_eq!(out["response"]["body"], r#"{"model": "k must be > 0"}"#);
    assert_eq!(out["response"]["headers"]["x-from-request"], "yes");
    // SageMaker throttling, not selected by any pattern: API Gateway's 429.
    let mut args = base.to_vec();
    args.extend(["--upstream-status", "429"]);
    let out = printed(&test_invoke(&config, &args, b"{}"));
    assert_eq!(out["response"]["status"], 429);
    assert_eq!(
        out["response"]["body"],
        r#"{"message":"Too Many Requests"}"#
    );
}

#[test]
fn test_invoke_exits_2_naming_the_route_the_template_and_the_position() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.yaml");
    std::fs::write(&config, TEMPLATED_CONFIG).unwrap();
    let run = |args: &[&str], stdin: &[u8]| {
        let out = test_invoke(&config, args, stdin);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        assert!(out.stdout.is_empty(), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let request = items_request;
    // `$util.base64Decode` of a value that is not base64, on line 3, column 39 of the template.
    let err = run(&request("b64=!!"), b"{}");
    assert!(
        err.contains("request template application/json of POST /items/{id}: 3:39: "),
        "{err}"
    );
    assert!(err.contains("base64Decode"), "{err}");
    // A body that starts like JSON and is not: the client's 400, at the $input.json.
    let err = run(&request("b64=aGk="), br#"{"n": "#);
    assert!(err.contains("3:7: payload is not valid JSON"), "{err}");
    assert!(
        err.contains(r#"400 {"message": "Could not process payload"}"#),
        "{err}"
    );
    // No such route; a malformed header flag; an unreadable body file; a broken config file.
    let mut args = request("");
    args[5] = "/nope";
    assert!(run(&args, b"").contains("403"));
    let mut args = request("");
    args.extend(["--header", "no colon here"]);
    assert!(run(&args, b"").contains("--header `no colon here`"));
    let mut args = request("");
    args[9] = "/does/not/exist";
    assert!(run(&args, b"").contains("--body /does/not/exist: cannot read"));
    std::fs::write(&config, BROKEN_GATEWAY).unwrap();
    assert!(run(&request(""), b"").contains("must be > 0"));
}
