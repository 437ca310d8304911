//! gateway.yaml reload without a restart (#21): a changed stage variable applies after the file is
//! renamed over the old one, a changed template after an in-place write and SIGHUP; a broken or
//! invalid file keeps the running configuration (and never quotes a value read from the
//! environment); a change of `server.listen` is refused by its name, a stage the keys still use
//! cannot be removed; several reloads in the middle of a stream of requests fail none of them.
//! Each step waits for the reload's log line or metric, never for time to pass.

use crate::kit::config::{ENDPOINT_TEMP, KEY_A, Key, Plan};
use crate::kit::{Gateway, GatewayYaml, KeysYaml, Upstream, eventually};
use crate::metrics::{admin_url, sample, scrape};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

fn config(endpoint_temp: &str) -> String {
    GatewayYaml::standard().render().replace(
        &format!("endpoint: {ENDPOINT_TEMP} "),
        &format!("endpoint: {endpoint_temp} "),
    )
}

/// Writes `text` to a new file beside gateway.yaml and renames it over it (as editors, `mv` and
/// config management do).
pub(crate) fn rename_over(gateway: &Gateway, text: &str) {
    let path = gateway.config_path();
    let tmp = path.with_extension("yaml.new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
}

/// Waits for the `configuration reloaded` line of `generation`.
pub(crate) async fn until_generation(gateway: &Gateway, generation: u64) {
    eventually(
        &format!("configuration generation {generation}"),
        WAIT,
        || {
            let found = gateway
                .log_lines()
                .iter()
                .any(|l| l["message"] == "configuration reloaded" && l["generation"] == generation)
                .then_some(());
            async move { found }
        },
    )
    .await;
}

/// The endpoint the last upstream call named (`/endpoints/{name}/invocations`).
fn last_endpoint(upstream: &Upstream) -> String {
    let last = upstream
        .received()
        .pop()
        .expect("a call reached the upstream");
    last.path
        .split('/')
        .nth(2)
        .expect("an InvokeEndpoint path")
        .to_owned()
}

async fn open_call(gateway: &Gateway) -> u16 {
    gateway
        .get("/temp/open/u1")
        .header("content-type", "application/json")
        .send()
        .await
        .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_variable_and_template_apply_after_a_rename_and_after_sighup() {
    let upstream = Upstream::start().await;
    let mut gateway = Gateway::builder()
        .config_text(&config("ep-one"))
        .upstream(&upstream)
        .start()
        .await;
    assert_eq!(open_call(&gateway).await, 200);
    assert_eq!(last_endpoint(&upstream), "ep-one");

    // Renamed over: the watch reloads it.
    rename_over(&gateway, &config("ep-two"));
    until_generation(&gateway, 1).await;
    assert_eq!(open_call(&gateway).await, 200);
    assert_eq!(last_endpoint(&upstream), "ep-two");

    // Written in place with a request template, and SIGHUP.
    let templated = config("ep-two").replace(
        "      accept: application/json\n",
        "      accept: application/json\n      request_templates:\n        \
         application/json: '{\"from\": \"$stageVariables.endpoint\", \"generation\": 2}'\n",
    );
    std::fs::write(gateway.config_path(), &templated).unwrap();
    gateway.signal("HUP");
    gateway
        .wait_for_log("SIGHUP: reloading the configuration")
        .await;
    until_generation(&gateway, 2).await;
    assert_eq!(open_call(&gateway).await, 200);
    let body: serde_json::Value =
        serde_json::from_slice(&upstream.received().pop().unwrap().body).unwrap();
    assert_eq!(body, serde_json::json!({"from": "ep-two", "generation": 2}));
    assert!(
        gateway.exited().is_none(),
        "SIGHUP must not stop the gateway"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_file_keeps_the_config_and_restart_only_fields_are_refused_by_name() {
    const SECRET: &str = "e2e-secret-from-the-environment-41";
    // Not an endpoint name: quoted by the endpoint check, which reads it through a stage variable.
    const SECRET_NAME: &str = "e2e secret/stage variable 42";
    let upstream = Upstream::start().await;
    let gateway = Gateway::builder()
        .config_text(&config("ep-one"))
        .env("SAGEGATE_ADMIN_LISTEN", "127.0.0.1:0")
        .env("SAGEGATE_E2E_SECRET", SECRET)
        .env("SAGEGATE_E2E_SECRET_NAME", SECRET_NAME)
        .upstream(&upstream)
        .start()
        .await;
    let admin = admin_url(&gateway);
    let reloads = async |result: &str| {
        let s = scrape(&admin).await;
        sample(&s, "sagegate_config_reloads_total", &[("result", result)]).unwrap()
    };
    let until_reloads = async |result: &str, want: f64| {
        eventually(
            &format!("config_reloads_total{{result={result}}} = {want}"),
            WAIT,
            || {
                let admin = admin.clone();
                let result = result.to_owned();
                async move {
                    let s = scrape(&admin).await;
                    let got = sample(&s, "sagegate_config_reloads_total", &[("result", &result)]);
                    (got == Some(want)).then_some(())
                }
            },
        )
        .await;
    };
    let still_serving = async || {
        assert_eq!(open_call(&gateway).await, 200);
        assert_eq!(last_endpoint(&upstream), "ep-one");
    };

    // Broken YAML, with a new variable: nothing of it applies.
    rename_over(
        &gateway,
        &config("ep-broken").replace("routes:\n", "routes: [\n"),
    );
    until_reloads("failed", 1.0).await;
    gateway.wait_for_log("configuration reload failed").await;
    still_serving().await;

    // A file that fails on a value read from the environment: `says` is in the log, `secret` never.
    let fails_quietly = async |text: String, failures: f64, says: &str, secret: &str| {
        rename_over(&gateway, &text);
        until_reloads("failed", failures).await;
        still_serving().await;
        let log = gateway.stdout() + &gateway.stderr();
        assert!(log.contains(says), "the diagnostic says `{says}`:\n{log}");
        assert!(
            !log.contains(secret),
            "a value from the environment is never logged:\n{log}"
        );
    };
    // A validation error on a value read from the environment: reported, never quoted.
    let invalid = config("ep-invalid").replace(
        "max_attempts: 2",
        "max_attempts: \"${env:SAGEGATE_E2E_SECRET}\"",
    );
    fails_quietly(invalid, 2.0, "max_attempts", SECRET).await;
    // A stage variable read from the environment, invalid as the endpoint name it becomes: the
    // endpoint check's diagnostic does not quote it either.
    let invalid = config("ep-invalid").replace(
        "endpoint: ep-invalid ",
        "endpoint: \"${env:SAGEGATE_E2E_SECRET_NAME}\" ",
    );
    assert_ne!(
        invalid,
        config("ep-invalid"),
        "the test reads the environment"
    );
    let says = "is not a SageMaker endpoint name";
    fails_quietly(invalid, 3.0, says, SECRET_NAME).await;

    // A new listen address: refused by name, the rest of the file (a new variable) not applied.
    let moved = config("ep-moved").replace("listen: \"127.0.0.1:0\"", "listen: \"127.0.0.1:1\"");
    rename_over(&gateway, &moved);
    until_reloads("refused", 1.0).await;
    gateway
        .wait_for_log("server.listen cannot change without a restart")
        .await;
    still_serving().await;

    // Removing stage `temp`, which the keys' plan `standard` covers: refused, naming both.
    let no_temp = config("ep-one").replace(
        "  temp:\n    variables: { endpoint: ep-one }\n    \
         throttle: { rate_limit: 1000, burst_limit: 2000 }\n",
        "",
    );
    assert_ne!(no_temp, config("ep-one"), "the test removes a stage");
    rename_over(&gateway, &no_temp);
    until_reloads("refused", 2.0).await;
    gateway
        .wait_for_log("usage plan `standard` of the keys covers stage `temp`")
        .await;
    still_serving().await;

    // Fixed: applies, and the generation shows it.
    rename_over(&gateway, &config("ep-fixed"));
    until_reloads("ok", 1.0).await;
    let s = scrape(&admin).await;
    assert_eq!(sample(&s, "sagegate_config_generation", &[]), Some(1.0));
    assert_eq!(open_call(&gateway).await, 200);
    assert_eq!(last_endpoint(&upstream), "ep-fixed");
    assert_eq!(reloads("failed").await, 3.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_load_fail_no_request() {
    const RELOADS: u64 = 6;
    const WORKERS: usize = 4;
    let upstream = Upstream::start().await;
    let keys = KeysYaml::new()
        .plan(Plan::new("standard", &["temp", "prod"]))
        .key(Key::new("partner-a", KEY_A, &["standard"]));
    let gateway = std::sync::Arc::new(
        Gateway::builder()
            .config_text(&config("ep-0"))
            .keys(keys)
            .upstream(&upstream)
            .start()
            .await,
    );
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let (gateway, done) = (gateway.clone(), done.clone());
        workers.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            // Bounded: until the reloads are over, and at most 2,000 requests per worker.
            for i in 0..2000 {
                if done.load(std::sync::atomic::Ordering::Relaxed) && i > 0 {
                    break;
                }
                let path = format!("/temp/other/u{w}-{i}");
                statuses.push(gateway.get(&path).key(KEY_A).send().await.status);
            }
            statuses
        }));
    }
    for generation in 1..=RELOADS {
        rename_over(&gateway, &config(&format!("ep-{generation}")));
        until_generation(&gateway, generation).await;
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for worker in workers {
        let statuses = worker.await.unwrap();
        total += statuses.len();
        assert!(
            statuses.iter().all(|s| *s == 200),
            "every request answered 200 across the reloads: {statuses:?}"
        );
    }
    assert!(total >= WORKERS, "requests ran during the reloads");
    // Every worker's last request may have started before the last swap: one after it.
    let last = gateway.get("/temp/other/after").key(KEY_A).send().await;
    assert_eq!(last.status, 200);
    let endpoints: std::collections::BTreeSet<String> = upstream
        .received()
        .iter()
        .map(|r| r.path.split('/').nth(2).unwrap().to_owned())
        .collect();
    let known: std::collections::BTreeSet<String> =
        (0..=RELOADS).map(|g| format!("ep-{g}")).collect();
    assert!(endpoints.is_subset(&known), "{endpoints:?}");
    assert!(endpoints.contains(&format!("ep-{RELOADS}")));
}

/// A gateway reading `text` from a fake S3 object (`s3://cfg-bucket/gateway.yaml`), polled every
/// 0.2 s, in front of a fake SageMaker.
async fn from_s3(text: &str) -> (crate::kit::s3::FakeS3, Upstream, Gateway) {
    let s3 = crate::kit::s3::FakeS3::start("cfg-bucket", "gateway.yaml", text).await;
    let upstream = Upstream::start().await;
    let gateway = Gateway::builder()
        .config_source("s3://cfg-bucket/gateway.yaml")
        .env("AWS_ENDPOINT_URL_S3", &s3.url())
        .env("SAGEGATE_KEYS_POLL_INTERVAL", "0.2")
        .upstream(&upstream)
        .start()
        .await;
    (s3, upstream, gateway)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_in_s3_is_polled_by_etag_and_a_bad_upload_keeps_the_config() {
    let (s3, upstream, gateway) = from_s3(&config("ep-one")).await;
    assert_eq!(open_call(&gateway).await, 200);
    assert_eq!(last_endpoint(&upstream), "ep-one");
    // Unchanged object: polls are answered 304.
    eventually("a 304 poll", WAIT, || {
        let seen = s3.received().iter().any(|r| r.status == 304);
        async move { seen.then_some(()) }
    })
    .await;

    s3.upload(&config("ep-two"));
    until_generation(&gateway, 1).await;
    assert_eq!(open_call(&gateway).await, 200);
    assert_eq!(last_endpoint(&upstream), "ep-two");

    s3.upload(&config("ep-three").replace("routes:\n", "routes: [\n"));
    gateway
        .wait_for_log("configuration reload failed; the previous configuration stays in force")
        .await;
    assert_eq!(open_call(&gateway).await, 200);
    assert_eq!(last_endpoint(&upstream), "ep-two");
    // The bad object is reported once, not on every poll: later polls are 304s.
    let polls = s3.received().len();
    eventually("two more polls", WAIT, || {
        let n = s3.received().len();
        async move { (n >= polls + 2).then_some(()) }
    })
    .await;
    let failures = gateway
        .log_lines()
        .iter()
        .filter(|l| {
            l["message"] == "configuration reload failed; the previous configuration stays in force"
        })
        .count();
    assert_eq!(failures, 1, "{}", gateway.stdout());
}

/// An S3 object refused because the keys in force still name a stage it removes applies at a later
/// poll once the keys are fixed, without another upload (on Fargate there is no SIGHUP to send).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_config_refused_for_the_keys_applies_once_the_keys_fit() {
    let no_temp = |endpoint: &str| {
        config(endpoint).replace(
            &format!(
                "  temp:\n    variables: {{ endpoint: {endpoint} }}\n    \
                 throttle: {{ rate_limit: 1000, burst_limit: 2000 }}\n"
            ),
            "",
        )
    };
    assert_ne!(
        no_temp("ep-one"),
        config("ep-one"),
        "the test removes a stage"
    );
    let (s3, _upstream, gateway) = from_s3(&config("ep-one")).await;
    s3.upload(&no_temp("ep-one"));
    gateway
        .wait_for_log("usage plan `standard` of the keys covers stage `temp`")
        .await;
    assert_eq!(open_call(&gateway).await, 200);

    gateway.replace_keys(
        &KeysYaml::new()
            .plan(Plan::new("standard", &["prod"]).throttle(1000.0, 2000))
            .key(Key::new("partner-a", KEY_A, &["standard"]))
            .render(),
    );
    gateway.wait_for_log("keys reloaded").await;
    until_generation(&gateway, 1).await;
    assert_ne!(open_call(&gateway).await, 200, "stage `temp` is gone");
}

/// A gateway.yaml past the size bound fails the reload with the bound named, whether a runaway file
/// or a symlink to a device that never ends (`/dev/zero`); the running configuration stays and the
/// gateway's memory does not grow with the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_file_past_the_size_bound_keeps_the_config() {
    const TOO_LARGE: &str = "larger than 16777216 bytes";
    let upstream = Upstream::start().await;
    let mut gateway = Gateway::builder()
        .config_text(&config("ep-one"))
        .upstream(&upstream)
        .start()
        .await;
    let refusals = |gateway: &Gateway| {
        gateway
            .log_lines()
            .iter()
            .filter(|l| l["message"].as_str().is_some_and(|m| m.contains(TOO_LARGE)))
            .count()
    };
    // Valid YAML (the padding is a comment), one byte past the bound.
    let mut big = config("ep-big");
    big.push('#');
    let pad = 16 * 1024 * 1024 + 1 - big.len();
    big.push_str(&"x".repeat(pad));
    rename_over(&gateway, &big);
    eventually("the too-large file refused", WAIT, || {
        let n = refusals(&gateway);
        async move { (n == 1).then_some(()) }
    })
    .await;
    assert_eq!(open_call(&gateway).await, 200);
    assert_eq!(last_endpoint(&upstream), "ep-one");

    if std::path::Path::new("/dev/zero").exists() {
        let link = gateway.config_path().with_extension("yaml.link");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        std::fs::rename(&link, gateway.config_path()).unwrap();
        gateway.signal("HUP");
        eventually("the endless file refused", WAIT, || {
            let n = refusals(&gateway);
            async move { (n >= 2).then_some(()) }
        })
        .await;
        assert_eq!(open_call(&gateway).await, 200);
        assert_eq!(last_endpoint(&upstream), "ep-one");
    }

    rename_over(&gateway, &config("ep-fixed"));
    until_generation(&gateway, 1).await;
    assert_eq!(open_call(&gateway).await, 200);
    assert_eq!(last_endpoint(&upstream), "ep-fixed");
    assert!(gateway.exited().is_none());
}

/// Keys in S3 whose plan names a stage gateway.yaml does not declare yet are refused; once a
/// config reload adds the stage, a later poll reads the unchanged object again and applies it,
/// without another upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_keys_refused_for_a_missing_stage_apply_once_the_config_adds_it() {
    let keys = |stages: &[&str]| {
        KeysYaml::new()
            .plan(Plan::new("standard", stages).throttle(1000.0, 2000))
            .key(Key::new("partner-a", KEY_A, &["standard"]))
            .render()
    };
    let s3 =
        crate::kit::s3::FakeS3::start("keys-bucket", "keys.yaml", &keys(&["temp", "prod"])).await;
    let upstream = Upstream::start().await;
    let gateway = Gateway::builder()
        .config_text(&config("ep-one"))
        .keys_source("s3://keys-bucket/keys.yaml")
        .env("AWS_ENDPOINT_URL_S3", &s3.url())
        .env("SAGEGATE_KEYS_POLL_INTERVAL", "0.2")
        .upstream(&upstream)
        .start()
        .await;
    s3.upload(&keys(&["temp", "prod", "beta"]));
    gateway
        .wait_for_log("keys reload failed; the previous keys stay in force")
        .await;

    let with_beta = config("ep-one").replace(
        "routes:\n",
        "  beta:\n    variables: { endpoint: ep-beta }\nroutes:\n",
    );
    assert_ne!(with_beta, config("ep-one"), "the test adds a stage");
    rename_over(&gateway, &with_beta);
    until_generation(&gateway, 1).await;
    gateway.wait_for_log("keys reloaded").await;
    let reply = gateway
        .get("/beta/recommended-movies/U:1?k=3&inference_type=deterministic")
        .key(KEY_A)
        .send()
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
}

/// The `config_info` series in `admin`'s metrics: the sha256 labels it has.
async fn config_info(admin: &str) -> Vec<String> {
    let s = scrape(admin).await;
    s.samples
        .iter()
        .filter(|x| x.name == "sagegate_config_info")
        .map(|x| {
            assert_eq!(x.value, 1.0);
            x.labels["sha256"].clone()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_in_force_is_named_by_its_sha256_at_start_and_after_a_reload() {
    use sha2::Digest;
    let sha = |text: &str| hex::encode(sha2::Sha256::digest(text.as_bytes()));
    let upstream = Upstream::start().await;
    let first = config("ep-one");
    let gateway = Gateway::builder()
        .config_text(&first)
        .env("SAGEGATE_ADMIN_LISTEN", "127.0.0.1:0")
        .upstream(&upstream)
        .start()
        .await;
    // At start: one line, and one series, naming the file loaded (a task that never reloads).
    let loaded: Vec<_> = gateway
        .log_lines()
        .into_iter()
        .filter(|l| l["message"] == "configuration loaded")
        .collect();
    assert_eq!(loaded.len(), 1, "{loaded:?}");
    assert_eq!(loaded[0]["sha256"], sha(&first));
    assert_eq!(loaded[0]["generation"], 0);
    let admin = admin_url(&gateway);
    assert_eq!(config_info(&admin).await, vec![sha(&first)]);

    // After a reload: the new file's digest, and still one series.
    let second = config("ep-two");
    rename_over(&gateway, &second);
    until_generation(&gateway, 1).await;
    assert_eq!(config_info(&admin).await, vec![sha(&second)]);
}
