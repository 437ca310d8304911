//! Throttling through the real gateway: a usage plan's per-key bucket, a stage's bucket for a route
//! without keys, and a plan's per-route override. N rapid requests are admitted at least `burst`
//! and at most `burst + rate × elapsed (+1)` times; every other answer is API Gateway's 429.

use std::time::Instant;

use crate::kit::config::{KEY_A, Key, Plan};
use crate::kit::{Gateway, GatewayYaml, KeysYaml, Upstream};

const N: usize = 30;

/// Sends `N` requests to `path` one after the other; returns (admitted, elapsed seconds). Every
/// refusal must be the throttling 429 with Retry-After.
async fn burst(gateway: &Gateway, path: &str, key: Option<&str>) -> (usize, f64) {
    let started = Instant::now();
    let mut admitted = 0;
    for _ in 0..N {
        let mut req = gateway.get(path);
        if let Some(k) = key {
            req = req.key(k);
        }
        let reply = req.send().await;
        if reply.status == 200 {
            admitted += 1;
        } else {
            reply.assert_too_many_requests();
        }
    }
    (admitted, started.elapsed().as_secs_f64())
}

fn assert_within_bucket(admitted: usize, elapsed: f64, rate: f64, burst: usize) {
    let most = burst as f64 + (rate * elapsed).ceil() + 1.0;
    assert!(
        admitted >= burst && admitted as f64 <= most,
        "admitted {admitted} of {N} in {elapsed:.2}s; bucket rate {rate}/s burst {burst} allows {burst}..={most}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_plan_throttle_admits_the_burst_then_refuses() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::builder()
        .keys(
            KeysYaml::new()
                .plan(Plan::new("slow", &["temp", "prod"]).throttle(1.0, 5))
                .key(Key::new("slow-a", KEY_A, &["slow"]))
                .key(Key::new("slow-b", "e2e-key-slow-b-0123456789", &["slow"])),
        )
        .upstream(&upstream)
        .start()
        .await;
    let path = "/temp/recommended-movies/U:114521?k=10&inference_type=deterministic";
    let (admitted, elapsed) = burst(&gateway, path, Some(KEY_A)).await;
    assert_within_bucket(admitted, elapsed, 1.0, 5);
    assert_eq!(
        upstream.count(),
        admitted,
        "refused requests never reach SageMaker"
    );
    // The bucket is per key: another key of the same plan still has its burst.
    let (admitted_b, elapsed_b) = burst(&gateway, path, Some("e2e-key-slow-b-0123456789")).await;
    assert_within_bucket(admitted_b, elapsed_b, 1.0, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stage_throttle_alone_limits_a_route_without_key() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::builder()
        .config(GatewayYaml::standard().stage_throttle(1.0, 5))
        .upstream(&upstream)
        .start()
        .await;
    let (admitted, elapsed) = burst(&gateway, "/temp/open/U:114521", None).await;
    assert_within_bucket(admitted, elapsed, 1.0, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_route_override_limits_only_that_route() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::builder()
        .keys(
            KeysYaml::new()
                .plan(
                    Plan::new("standard", &["temp", "prod"])
                        .throttle(1000.0, 2000)
                        .route_throttle("GET /recommended-movies/{user_id}", 1.0, 3),
                )
                .key(Key::new("partner-a", KEY_A, &["standard"])),
        )
        .upstream(&upstream)
        .start()
        .await;
    let (admitted, elapsed) = burst(
        &gateway,
        "/temp/recommended-movies/U:114521?k=10&inference_type=deterministic",
        Some(KEY_A),
    )
    .await;
    assert_within_bucket(admitted, elapsed, 1.0, 3);
    // Another route of the same key is limited by the plan's generous default only.
    let (other, _) = burst(&gateway, "/temp/other/U:114521", Some(KEY_A)).await;
    assert_eq!(other, N);
}
