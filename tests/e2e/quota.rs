//! Usage-plan quotas through the real gateway: exactly `limit` requests per key and period, then
//! 429 `Limit Exceeded`; requests refused by a throttle do not count against the quota.

use std::time::{Duration, Instant};

use futures_util::future::join_all;

use crate::kit::config::{KEY_A, Key, Plan};
use crate::kit::{Gateway, KeysYaml, Upstream, WAIT};

const KEY_B: &str = "e2e-key-quota-b-0123456789";
const SEED: &str = "/temp/recommended-movies/U:114521?k=10&inference_type=deterministic";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_admits_exactly_the_limit_per_key() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::builder()
        .keys(
            KeysYaml::new()
                .plan(Plan::new("metered", &["temp", "prod"]).quota(3, "DAY"))
                .key(Key::new("metered-a", KEY_A, &["metered"]))
                .key(Key::new("metered-b", KEY_B, &["metered"])),
        )
        .upstream(&upstream)
        .start()
        .await;
    for _ in 0..3 {
        gateway.get(SEED).key(KEY_A).send().await.assert_ok();
    }
    for _ in 0..3 {
        gateway
            .get(SEED)
            .key(KEY_A)
            .send()
            .await
            .assert_limit_exceeded();
    }
    // The quota is per key, and spans stages of the plan.
    gateway
        .recommend("prod", "U:114521", Some(KEY_A))
        .await
        .assert_limit_exceeded();
    gateway.get(SEED).key(KEY_B).send().await.assert_ok();
    assert_eq!(
        upstream.count(),
        4,
        "only admitted requests reach SageMaker"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_requests_do_not_consume_quota() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::builder()
        .keys(
            KeysYaml::new()
                .plan(
                    Plan::new("metered", &["temp"])
                        .throttle(2.0, 1)
                        .quota(3, "DAY"),
                )
                .key(Key::new("metered-a", KEY_A, &["metered"])),
        )
        .upstream(&upstream)
        .start()
        .await;
    // Bursts of concurrent requests: the bucket (one token, two a second) refuses most of each,
    // until the quota is used up. Ends at the first `Limit Exceeded` (bounded).
    let mut admitted = 0;
    let mut throttled = 0;
    let deadline = Instant::now() + WAIT;
    'rounds: loop {
        assert!(
            Instant::now() < deadline,
            "the quota never ran out ({admitted} admitted)"
        );
        let batch: Vec<_> = (0..6)
            .map(|_| gateway.get(SEED).key(KEY_A).send())
            .collect();
        let mut exhausted = false;
        for reply in join_all(batch).await {
            if reply.status == 200 {
                admitted += 1;
            } else if reply.is_too_many_requests() {
                reply.assert_too_many_requests();
                throttled += 1;
            } else {
                reply.assert_limit_exceeded();
                exhausted = true;
            }
        }
        if exhausted {
            break 'rounds;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        admitted, 3,
        "exactly the quota was admitted ({throttled} throttled)"
    );
    assert!(throttled > 0, "the throttle refused some requests first");
    assert_eq!(upstream.count(), 3);
    gateway
        .get(SEED)
        .key(KEY_A)
        .send()
        .await
        .assert_limit_exceeded();
}
