//! The stage cache through the real binary: deterministic answers are served from the cache (one
//! upstream call, counted at the in-test SageMaker), stochastic ones never; every reply carries its
//! own request id; 100 concurrent identical misses make one upstream call; `Cache-Control:
//! max-age=0` refreshes for allowed callers and is ignored or refused for others; the byte bound
//! evicts. TTL expiry needs time travel and is tested in process (`src/cache/tests.rs`).

use std::collections::HashSet;

use crate::kit::config::{KEY_A, Key, Plan};
use crate::kit::{Gateway, GatewayYaml, KeysYaml, SageMakerReply, Upstream, WAIT, eventually};
use crate::metrics::{admin_url, sample, scrape};

/// Key of `ops`, allowed to invalidate (key id listed in `invalidators`).
const KEY_OPS: &str = "e2e-key-ops-0123456789abcdef";

/// The standard API with `cache` settings for stages temp and prod, and the main route caching
/// deterministic answers only, keyed by everything its default body reads (the user, every query
/// parameter) and by the body and content type it would pass through; the other routes do not
/// cache (the gateway refuses a cached route whose key misses what it reads).
pub fn cached_config(temp: &str, prod: &str) -> String {
    let text = GatewayYaml::standard().render();
    let text = text.replacen(
        "    variables: { endpoint: ep-temp }\n",
        &format!("    variables: {{ endpoint: ep-temp }}\n    cache: {temp}\n"),
        1,
    );
    let text = text.replacen(
        "    variables: { endpoint: ep-prod }\n",
        &format!("    variables: {{ endpoint: ep-prod }}\n    cache: {prod}\n"),
        1,
    );
    let cached = text.replacen(
        "    path: /recommended-movies/{user_id}\n",
        "    path: /recommended-movies/{user_id}
    cache:
      key_parameters:
        - method.request.path.user_id
        - method.request.querystring.*
        - method.request.body
        - method.request.header.content-type
      when: { method.request.querystring.inference_type: [deterministic] }
",
        1,
    );
    assert_ne!(cached, text, "the kit's config changed shape");
    let mut cached = cached;
    for other in ["/open/{user_id}", "/other/{user_id}"] {
        let before = format!("    path: {other}\n");
        assert!(cached.contains(&before), "the kit's config changed shape");
        cached = cached.replacen(
            &before,
            &format!("{before}    cache: {{ enabled: false }}\n"),
            1,
        );
    }
    cached
}

fn keys() -> KeysYaml {
    KeysYaml::new()
        .plan(Plan::new("standard", &["temp", "prod"]).throttle(10_000.0, 10_000))
        .key(Key::new("partner-a", KEY_A, &["standard"]))
        .key(Key::new("ops", KEY_OPS, &["standard"]))
}

async fn start(upstream: &Upstream, temp: &str, prod: &str) -> Gateway {
    Gateway::builder()
        .config_text(&cached_config(temp, prod))
        .keys(keys())
        .upstream(upstream)
        .env("SAGEGATE_ADMIN_LISTEN", "127.0.0.1:0")
        .start()
        .await
}

fn path(user: &str, k: u32, policy: &str) -> String {
    format!("/temp/recommended-movies/{user}?k={k}&inference_type={policy}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deterministic_answers_come_from_the_cache_and_stochastic_ones_never() {
    let upstream = Upstream::start().await;
    let gateway = start(&upstream, "{ enabled: true }", "{ enabled: true }").await;

    let mut ids = Vec::new();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let reply = gateway
            .get(&path("U:1", 10, "deterministic"))
            .key(KEY_A)
            .send()
            .await;
        reply.assert_ok();
        statuses.push(reply.header("x-sagegate-cache").unwrap().to_owned());
        let id = reply.request_id();
        let entry = gateway.access_entry(&id).await;
        assert_eq!(entry["cacheStatus"], statuses.last().unwrap().as_str());
        assert!(!ids.contains(&id), "a request id was replayed");
        ids.push(id);
    }
    assert_eq!(statuses, ["miss", "hit", "hit"]);
    // The one upstream call carried the first request's id.
    assert_eq!(
        upstream
            .single()
            .header("x-amzn-sagemaker-custom-attributes"),
        Some(ids[0].as_str())
    );

    // A hit's access-log line has no upstream request id of another call.
    let hit_ids: Vec<String> = gateway
        .access_log()
        .into_iter()
        .filter(|l| l["cacheStatus"] == "hit")
        .map(|l| {
            assert!(l["awsEndpointRequestId"].is_null(), "{l}");
            assert!(l["integrationLatency"].is_null(), "{l}");
            l["requestId"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(hit_ids.len(), 2);

    // Another key parameter value is another entry; the same value on prod is another stage.
    gateway
        .get(&path("U:1", 5, "deterministic"))
        .key(KEY_A)
        .send()
        .await
        .assert_ok();
    assert_eq!(upstream.count(), 2);

    for _ in 0..3 {
        let reply = gateway
            .get(&path("U:1", 10, "stochastic_plackett_luce"))
            .key(KEY_A)
            .send()
            .await;
        reply.assert_ok();
        assert_eq!(reply.header("x-sagegate-cache"), Some("bypass"));
    }
    assert_eq!(
        upstream.count(),
        5,
        "every stochastic request reached SageMaker"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_identical_misses_make_one_upstream_call() {
    let upstream = Upstream::replying(SageMakerReply::ok_default().held()).await;
    let gateway = start(&upstream, "{ enabled: true }", "{ enabled: true }").await;
    let admin = admin_url(&gateway);

    let requests: Vec<_> = (0..100)
        .map(|_| {
            let req = gateway
                .get(&path("U:42", 10, "deterministic"))
                .key(KEY_A)
                .send();
            tokio::spawn(req)
        })
        .collect();
    // Release the one upstream call only once all 100 are inside the gateway.
    eventually("100 requests in flight", WAIT, || {
        let admin = admin.clone();
        async move {
            let m = scrape(&admin).await;
            (sample(&m, "sagegate_in_flight_requests", &[]) == Some(100.0)).then_some(())
        }
    })
    .await;
    assert_eq!(upstream.count(), 1);
    upstream.release();
    let mut statuses = Vec::new();
    let mut ids = HashSet::new();
    for r in requests {
        let reply = r.await.unwrap();
        reply.assert_ok();
        ids.insert(reply.request_id());
        statuses.push(reply.header("x-sagegate-cache").unwrap().to_owned());
    }
    assert_eq!(upstream.count(), 1, "one upstream call for 100 requests");
    assert_eq!(ids.len(), 100, "each reply has its own request id");
    assert_eq!(statuses.iter().filter(|s| *s == "miss").count(), 1);
    assert_eq!(statuses.iter().filter(|s| *s == "coalesced").count(), 99);
    let m = scrape(&admin).await;
    let lookups = |result: &str| {
        sample(
            &m,
            "sagegate_cache_lookups_total",
            &[("stage", "temp"), ("result", result)],
        )
    };
    assert_eq!(lookups("coalesced"), Some(99.0));
    assert_eq!(lookups("miss"), Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_call_is_not_cached() {
    let upstream = Upstream::replying(SageMakerReply::internal_failure()).await;
    let gateway = start(&upstream, "{ enabled: true }", "{ enabled: true }").await;
    gateway
        .get(&path("U:7", 10, "deterministic"))
        .key(KEY_A)
        .send()
        .await
        .assert_bad_gateway();
    upstream.reply_with(SageMakerReply::ok_default());
    let reply = gateway
        .get(&path("U:7", 10, "deterministic"))
        .key(KEY_A)
        .send()
        .await;
    reply.assert_ok();
    assert_eq!(reply.header("x-sagegate-cache"), Some("miss"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_age_0_refreshes_for_allowed_callers_only() {
    let upstream = Upstream::replying(SageMakerReply::ok(r#"{"v":"old"}"#)).await;
    let gateway = start(
        &upstream,
        "{ enabled: true, invalidators: { keys: [ops] } }",
        "{ enabled: true, invalidators: { keys: [ops] }, unauthorized_strategy: FAIL_WITH_403 }",
    )
    .await;
    let get = |stage: &str, key: &str, max_age_0: bool| {
        let mut req = gateway
            .get(&format!(
                "/{stage}/recommended-movies/U:9?k=10&inference_type=deterministic"
            ))
            .key(key);
        if max_age_0 {
            req = req.header("cache-control", "max-age=0");
        }
        req.send()
    };
    assert_eq!(get("temp", KEY_A, false).await.json()["v"], "old");
    upstream.reply_with(SageMakerReply::ok(r#"{"v":"new"}"#));

    // Not allowed (SUCCEED_WITH_RESPONSE_HEADER): served from the cache, with a warning.
    let ignored = get("temp", KEY_A, true).await;
    assert_eq!(ignored.json()["v"], "old");
    assert_eq!(ignored.header("x-sagegate-cache"), Some("hit"));
    assert!(ignored.header("warning").unwrap().starts_with("199 "));
    assert_eq!(upstream.count(), 1);

    // Allowed: fetched again and stored.
    let refreshed = get("temp", KEY_OPS, true).await;
    assert_eq!(refreshed.json()["v"], "new");
    assert_eq!(refreshed.header("x-sagegate-cache"), Some("refresh"));
    assert_eq!(refreshed.header("warning"), None);
    assert_eq!(upstream.count(), 2);
    let after = get("temp", KEY_A, false).await;
    assert_eq!(after.json()["v"], "new");
    assert_eq!(after.header("x-sagegate-cache"), Some("hit"));

    // FAIL_WITH_403 on prod: API Gateway's ACCESS_DENIED (the key is valid, the action is not).
    let refused = get("prod", KEY_A, true).await;
    refused.assert_forbidden();
    let entry = gateway.access_entry(&refused.request_id()).await;
    assert_eq!(entry["error.responseType"], "ACCESS_DENIED");
    assert_eq!(entry["identity.apiKeyId"], "partner-a");
    assert_eq!(get("prod", KEY_OPS, true).await.json()["v"], "new");
    assert_eq!(upstream.count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_byte_bound_evicts_and_large_answers_are_not_cached() {
    let body = format!(r#"{{"pad":"{}"}}"#, "x".repeat(600));
    let upstream = Upstream::replying(SageMakerReply::ok(&body)).await;
    let gateway = start(
        &upstream,
        "{ enabled: true, max_bytes: 2500, max_entry_bytes: 1000 }",
        "{ enabled: true }",
    )
    .await;
    let admin = admin_url(&gateway);
    for user in 1..=5 {
        gateway
            .get(&path(&format!("U:{user}"), 10, "deterministic"))
            .key(KEY_A)
            .send()
            .await
            .assert_ok();
    }
    assert_eq!(upstream.count(), 5);
    let m = scrape(&admin).await;
    let bytes = sample(&m, "sagegate_cache_bytes", &[("stage", "temp")]).unwrap();
    assert!(bytes > 0.0 && bytes <= 2500.0, "{bytes}");
    let evicted = sample(
        &m,
        "sagegate_cache_evictions_total",
        &[("stage", "temp"), ("cause", "size")],
    )
    .unwrap();
    assert!(evicted >= 2.0, "{evicted}");
    // The most recent answer is still there, the first one is gone.
    let newest = gateway
        .get(&path("U:5", 10, "deterministic"))
        .key(KEY_A)
        .send()
        .await;
    assert_eq!(newest.header("x-sagegate-cache"), Some("hit"));
    let oldest = gateway
        .get(&path("U:1", 10, "deterministic"))
        .key(KEY_A)
        .send()
        .await;
    assert_eq!(oldest.header("x-sagegate-cache"), Some("miss"));
    assert_eq!(upstream.count(), 6);

    // An answer over max_entry_bytes goes upstream every time.
    upstream.reply_with(SageMakerReply::ok(&format!(
        r#"{{"pad":"{}"}}"#,
        "y".repeat(1200)
    )));
    for _ in 0..2 {
        let big = gateway
            .get(&path("U:99", 10, "deterministic"))
            .key(KEY_A)
            .send()
            .await;
        assert_eq!(big.header("x-sagegate-cache"), Some("miss"));
    }
    assert_eq!(upstream.count(), 8);
}
