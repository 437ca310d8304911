//! Shadow traffic (`routes[i].shadow`, src/shadow.rs) in the real binary, in front of two SageMaker
//! endpoints on one in-test upstream (the primary `ep-temp`, the shadow `ep-shadow`): each call
//! the route makes is copied with the same body, signed for the shadow endpoint; a shadow that
//! hangs or fails never changes the client's answer; copies past `max_concurrent` are dropped and
//! counted; refused requests and cache hits are not copied; a reload adds and removes the block;
//! the metrics count every outcome by shadow endpoint.
//!
//! No assertion depends on timing: "the client got its answer while the shadow call is open" is
//! checked with a shadow reply held until the test releases it.

use crate::cache::cached_config;
use crate::kit::config::{ENDPOINT_TEMP, KEY_A, ROUTE};
use crate::kit::{Gateway, GatewayYaml, Reply, SageMakerReply, Upstream, WAIT, eventually};
use crate::metrics::{admin_url, sample, scrape};

const SHADOW: &str = "ep-shadow";
const PRIMARY_BODY: &str = r#"{"recommendations":[{"item_id":"M:1","score":0.5}]}"#;

fn shadow_block(percent: f64, max_concurrent: usize) -> String {
    format!(
        "{{ endpoint_name: {SHADOW}, percent: {percent}, max_concurrent: {max_concurrent}, timeout_ms: 20000, target_variant: Challenger }}"
    )
}

fn shadowed(percent: f64, max_concurrent: usize) -> GatewayYaml {
    GatewayYaml::standard().route_field("shadow", &shadow_block(percent, max_concurrent))
}

async fn start(config: &str, upstream: &Upstream) -> (Gateway, String) {
    let gateway = Gateway::builder()
        .config_text(config)
        .upstream(upstream)
        .env("SAGEGATE_ADMIN_LISTEN", "127.0.0.1:0")
        .start()
        .await;
    let admin = admin_url(&gateway);
    (gateway, admin)
}

async fn recommend(gateway: &Gateway, user: &str) -> Reply {
    gateway
        .get(&format!(
            "/temp/recommended-movies/{user}?k=3&inference_type=stochastic_plackett_luce"
        ))
        .key(KEY_A)
        .send()
        .await
}

/// The value of `metric` with `labels` now.
async fn read(admin: &str, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    sample(&scrape(admin).await, metric, labels)
}

/// Waits until `outcome` of the shadow endpoint has counted `n`.
async fn until_counted(admin: &str, outcome: &str, n: f64) {
    eventually(&format!("{n} shadow calls {outcome}"), WAIT, || async {
        let labels = [("endpoint", SHADOW), ("outcome", outcome)];
        let got = read(admin, "sagegate_shadow_calls_total", &labels).await;
        (got == Some(n)).then_some(())
    })
    .await;
}

/// Waits until the shadow endpoint has received `n` calls, and returns them.
async fn until_shadow_received(
    upstream: &Upstream,
    n: usize,
) -> Vec<crate::kit::upstream::Received> {
    eventually(&format!("{n} shadow calls received"), WAIT, || async {
        let got = upstream.received_by(SHADOW);
        (got.len() >= n).then_some(got)
    })
    .await
}

/// The `user_id` of each copy the shadow endpoint received, in order.
fn shadow_users(upstream: &Upstream) -> Vec<String> {
    let copies = upstream.received_by(SHADOW);
    copies
        .iter()
        .map(|r| r.json()["user_id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn every_call_is_copied_at_100_percent_with_the_same_body_signed_for_the_shadow() {
    let upstream = Upstream::start().await;
    let (gateway, admin) = start(&shadowed(100.0, 16).render(), &upstream).await;
    for user in ["U:1", "U:2", "U:3"] {
        let reply = recommend(&gateway, user).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.text(), PRIMARY_BODY);
    }
    let shadows = until_shadow_received(&upstream, 3).await;
    let primaries = upstream.received_by(ENDPOINT_TEMP);
    assert_eq!(primaries.len(), 3);
    for primary in &primaries {
        let copy = shadows
            .iter()
            .find(|s| s.body == primary.body)
            .unwrap_or_else(|| panic!("no shadow copy of {:?}", primary.json()));
        assert_eq!(copy.path, format!("/endpoints/{SHADOW}/invocations"));
        assert_eq!(copy.signature, Ok(()), "signed for the shadow endpoint");
        for header in [
            "content-type",
            "accept",
            "x-amzn-sagemaker-custom-attributes",
            "x-amzn-sagemaker-inference-id",
            "x-amzn-trace-id",
        ] {
            assert_eq!(copy.header(header), primary.header(header), "{header}");
        }
        assert_eq!(
            copy.header("x-amzn-sagemaker-target-variant"),
            Some("Challenger")
        );
    }
    until_counted(&admin, "ok", 3.0).await;
    let latency = read(
        &admin,
        "sagegate_shadow_duration_seconds",
        &[("endpoint", SHADOW)],
    );
    assert_eq!(latency.await, Some(3.0), "one latency sample per call made");
    // Beside the primary's own families, which count the client's requests only.
    let labels = [("stage", "temp"), ("route", ROUTE), ("status_class", "2xx")];
    let primary = read(&admin, "sagegate_requests_total", &labels).await;
    assert_eq!(primary, Some(3.0));
}

#[tokio::test]
async fn a_hanging_shadow_never_holds_the_answer_and_copies_past_the_bound_are_dropped() {
    let upstream = Upstream::start().await;
    upstream.reply_for(SHADOW, SageMakerReply::ok(r#"{"shadow":true}"#).held());
    let (gateway, admin) = start(&shadowed(100.0, 2).render(), &upstream).await;
    // Two copies fill the slots and hang; each client still gets the primary's answer.
    for user in ["U:1", "U:2"] {
        let reply = recommend(&gateway, user).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.text(), PRIMARY_BODY);
    }
    until_shadow_received(&upstream, 2).await;
    // Both shadow calls are still open (held): two more requests are answered, their copies dropped.
    for user in ["U:3", "U:4"] {
        let reply = recommend(&gateway, user).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.text(), PRIMARY_BODY);
    }
    until_counted(&admin, "dropped", 2.0).await;
    assert_eq!(upstream.received_by(SHADOW).len(), 2, "dropped, not queued");
    upstream.release();
    until_counted(&admin, "ok", 2.0).await;
    // The slots are free again: the next call is copied.
    recommend(&gateway, "U:5").await.assert_ok();
    until_counted(&admin, "ok", 3.0).await;
    assert_eq!(upstream.received_by(SHADOW).len(), 3);
}

#[tokio::test]
async fn shadow_failures_never_change_the_answer_and_are_counted_by_outcome() {
    let upstream = Upstream::start().await;
    let config = shadowed(100.0, 16)
        // One failure would open the primary's circuit: the shadow's failures must not reach it.
        .circuit_breaker("{ consecutive_failures: 1, cool_down_ms: 60000 }")
        .render();
    let (gateway, admin) = start(&config, &upstream).await;
    let faults = [
        (SageMakerReply::model_error(400, "bad input"), "model_error"),
        (SageMakerReply::service_unavailable(), "error"),
        (SageMakerReply::Reset, "error"),
    ];
    let mut counted = std::collections::HashMap::new();
    for (i, (fault, outcome)) in faults.into_iter().enumerate() {
        upstream.reply_for(SHADOW, fault);
        let reply = recommend(&gateway, &format!("U:{i}")).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.text(), PRIMARY_BODY);
        let n = counted.entry(outcome).or_insert(0.0);
        *n += 1.0;
        until_counted(&admin, outcome, *n).await;
    }
    let state = read(
        &admin,
        "sagegate_circuit_breaker_state",
        &[("endpoint", ENDPOINT_TEMP)],
    );
    assert_eq!(state.await, Some(0.0), "the primary's circuit stays closed");
    assert_eq!(upstream.received_by(ENDPOINT_TEMP).len(), 3);
}

#[tokio::test]
async fn a_shadow_past_its_time_limit_counts_as_timeout() {
    let upstream = Upstream::start().await;
    upstream.reply_for(SHADOW, SageMakerReply::ok("{}").held());
    let block = format!("{{ endpoint_name: {SHADOW}, percent: 100, timeout_ms: 100 }}");
    let config = GatewayYaml::standard()
        .route_field("shadow", &block)
        .render();
    let (gateway, admin) = start(&config, &upstream).await;
    recommend(&gateway, "U:1").await.assert_ok();
    until_counted(&admin, "timeout", 1.0).await;
    upstream.release();
}

#[tokio::test]
async fn refused_requests_and_cache_hits_are_not_copied() {
    let upstream = Upstream::start().await;
    let on = "{ enabled: true, ttl_secs: 300 }";
    let config = cached_config(on, on).replacen(
        "    path: /recommended-movies/{user_id}\n",
        &format!(
            "    path: /recommended-movies/{{user_id}}\n    shadow: {}\n",
            shadow_block(100.0, 16)
        ),
        1,
    );
    let (gateway, admin) = start(&config, &upstream).await;
    // Refused before invoke: no key, a bad key, a missing required parameter.
    gateway
        .recommend("temp", "U:1", None)
        .await
        .assert_forbidden();
    gateway
        .recommend("temp", "U:1", Some("e2e-not-a-key-0123456789"))
        .await
        .assert_forbidden();
    let missing = gateway
        .get("/temp/recommended-movies/U:1?inference_type=deterministic")
        .key(KEY_A)
        .send()
        .await;
    assert_eq!(missing.status, 400);
    // A miss is copied; the hit that follows is not.
    let miss = gateway.recommend("temp", "U:1", Some(KEY_A)).await;
    assert_eq!(
        miss.header("x-sagegate-cache"),
        Some("miss"),
        "{:?}",
        miss.headers
    );
    let hit = gateway.recommend("temp", "U:1", Some(KEY_A)).await;
    assert_eq!(hit.header("x-sagegate-cache"), Some("hit"));
    assert_eq!(hit.text(), miss.text());
    // A later miss (another user) is copied: by the time its copy is in, every earlier one is.
    gateway
        .recommend("temp", "U:2", Some(KEY_A))
        .await
        .assert_ok();
    until_counted(&admin, "ok", 2.0).await;
    let users = shadow_users(&upstream);
    assert_eq!(users.len(), 2, "{users:?}");
    assert!(users.contains(&"U:1".to_owned()) && users.contains(&"U:2".to_owned()));
    assert_eq!(upstream.received_by(ENDPOINT_TEMP).len(), 2);
}

#[tokio::test]
async fn a_reload_adds_changes_and_removes_the_shadow() {
    let upstream = Upstream::start().await;
    let (gateway, admin) = start(&GatewayYaml::standard().render(), &upstream).await;
    recommend(&gateway, "U:1").await.assert_ok();
    let reload = |text: String, generation: u64| {
        std::fs::write(gateway.config_path(), text).unwrap();
        gateway.signal("HUP");
        crate::config_reload::until_generation(&gateway, generation)
    };
    reload(shadowed(100.0, 4).render(), 1).await;
    recommend(&gateway, "U:2").await.assert_ok();
    until_counted(&admin, "ok", 1.0).await;
    // 0 percent: configured, nothing copied.
    reload(shadowed(0.0, 4).render(), 2).await;
    recommend(&gateway, "U:3").await.assert_ok();
    reload(GatewayYaml::standard().render(), 3).await;
    recommend(&gateway, "U:4").await.assert_ok();
    reload(shadowed(100.0, 4).render(), 4).await;
    recommend(&gateway, "U:5").await.assert_ok();
    until_counted(&admin, "ok", 2.0).await;
    let users = shadow_users(&upstream);
    assert_eq!(users, ["U:2", "U:5"]);
}
