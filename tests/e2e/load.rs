//! Behaviour under a bounded concurrent load (loopback, 8 clients): key reloads (add, disable,
//! break, fix) never fail a key that stays valid; SIGTERM lets in-flight requests finish; one key
//! hammered by many clients is admitted within its token bucket, and its quota counts exactly the
//! admitted requests, also when SageMaker fails (the limiter counts at admission; docs/security.md).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::kit::config::{Key, Plan};
use crate::kit::{Gateway, KeysYaml, SageMakerReply, Upstream, WAIT, eventually};

const STAYS: &str = "e2e-load-key-stays-0123456789";
const DISABLED_LATER: &str = "e2e-load-key-disabled-later-0123456789";
const ADDED: &str = "e2e-load-key-added-0123456789";
const PATH: &str = "/temp/recommended-movies/U:1?k=1&inference_type=deterministic";

fn keys(added: bool, disabled: bool) -> KeysYaml {
    let mut later = Key::new("later", DISABLED_LATER, &["p"]);
    if disabled {
        later = later.disabled();
    }
    let mut k = KeysYaml::new()
        .plan(Plan::new("p", &["temp", "prod"]).throttle(10_000.0, 20_000))
        .key(Key::new("stays", STAYS, &["p"]))
        .key(later);
    if added {
        k = k.key(Key::new("added", ADDED, &["p"]));
    }
    k
}

async fn until(gateway: &Gateway, key: &str, status: u16) {
    eventually(&format!("{key} to get {status}"), WAIT, || async move {
        (gateway.get(PATH).key(key).send().await.status == status).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_reload_under_load_without_failing_a_valid_key() {
    let upstream = Upstream::start().await;
    let gateway = Arc::new(
        Gateway::builder()
            .keys(keys(false, false))
            .upstream(&upstream)
            .start()
            .await,
    );
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (gateway, stop) = (gateway.clone(), stop.clone());
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    statuses.push(gateway.get(PATH).key(STAYS).send().await.status);
                }
                statuses
            })
        })
        .collect();
    let started = Instant::now();
    // Add a key.
    gateway.replace_keys(&keys(true, false).render());
    until(&gateway, ADDED, 200).await;
    // Disable one: refused from the next reload on, for good.
    gateway.replace_keys(&keys(true, true).render());
    until(&gateway, DISABLED_LATER, 403).await;
    // Break the file: nothing changes.
    gateway.replace_keys("usage_plans: [this is: not valid\n");
    gateway
        .wait_for_log("the previous keys stay in force")
        .await;
    gateway.get(PATH).key(ADDED).send().await.assert_ok();
    gateway
        .get(PATH)
        .key(DISABLED_LATER)
        .send()
        .await
        .assert_forbidden();
    // Fix it (the added key removed this time).
    gateway.replace_keys(&keys(false, true).render());
    until(&gateway, ADDED, 403).await;
    gateway
        .get(PATH)
        .key(DISABLED_LATER)
        .send()
        .await
        .assert_forbidden();
    // Keep the load on for at least ~2 s in all.
    while started.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let mut all = Vec::new();
    for c in clients {
        all.extend(c.await.unwrap());
    }
    assert!(all.len() >= 8, "{all:?}");
    let failed: Vec<u16> = all.iter().copied().filter(|s| *s != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} failed: {failed:?}",
        failed.len(),
        all.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_requests_finish() {
    let upstream =
        Upstream::replying(SageMakerReply::ok_default().after(Duration::from_secs(1))).await;
    let mut gateway = Gateway::builder().upstream(&upstream).start().await;
    let url = gateway.url(PATH);
    let in_flight: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let client = reqwest::Client::builder().no_proxy().build().unwrap();
                let resp = client
                    .get(url)
                    .header("x-api-key", crate::kit::config::KEY_A)
                    .send()
                    .await
                    .unwrap();
                (resp.status().as_u16(), resp.bytes().await.unwrap().len())
            })
        })
        .collect();
    eventually("8 requests at the upstream", WAIT, || {
        let n = upstream.count();
        async move { (n == 8).then_some(()) }
    })
    .await;
    gateway.signal("TERM");
    // New work is turned away: /healthz 503 or the connection is refused.
    eventually("health to go 503 or refuse", WAIT, || async {
        match gateway.health().await {
            Some(200) => None,
            _ => Some(()),
        }
    })
    .await;
    for r in in_flight {
        let (status, len) = r.await.unwrap();
        assert_eq!(status, 200);
        assert!(len > 0);
    }
    let status = gateway.wait_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "exit {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_under_concurrency_is_admitted_within_its_bucket() {
    let upstream = Upstream::start().await;
    let keys = KeysYaml::new()
        .plan(Plan::new("p", &["temp"]).throttle(5.0, 10))
        .key(Key::new("k", STAYS, &["p"]));
    let gateway = Arc::new(
        Gateway::builder()
            .keys(keys)
            .upstream(&upstream)
            .start()
            .await,
    );
    let started = Instant::now();
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let gateway = gateway.clone();
            tokio::spawn(async move {
                let mut s = Vec::new();
                for _ in 0..15 {
                    s.push(gateway.get(PATH).key(STAYS).send().await.status);
                }
                s
            })
        })
        .collect();
    let mut all = Vec::new();
    for c in clients {
        all.extend(c.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    let admitted = all.iter().filter(|s| **s == 200).count();
    assert!(all.iter().all(|s| *s == 200 || *s == 429), "{all:?}");
    let budget = 10.0 + 5.0 * elapsed + 1.0;
    assert!(
        admitted as f64 <= budget,
        "{admitted} admitted > {budget} in {elapsed:.2} s"
    );
    assert!(admitted >= 10, "the burst is admitted: {all:?}");
    assert_eq!(
        upstream.count(),
        admitted,
        "only admitted requests reach SageMaker"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_counts_admitted_requests_even_when_sagemaker_fails() {
    let upstream = Upstream::replying(SageMakerReply::service_unavailable()).await;
    let keys = KeysYaml::new()
        .plan(
            Plan::new("p", &["temp"])
                .throttle(10_000.0, 20_000)
                .quota(20, "DAY"),
        )
        .key(Key::new("k", STAYS, &["p"]));
    let gateway = Arc::new(
        Gateway::builder()
            .keys(keys)
            .upstream(&upstream)
            .start()
            .await,
    );
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let gateway = gateway.clone();
            tokio::spawn(async move {
                let mut s = Vec::new();
                for _ in 0..10 {
                    s.push(gateway.get(PATH).key(STAYS).send().await);
                }
                s
            })
        })
        .collect();
    let mut all = Vec::new();
    for c in clients {
        all.extend(c.await.unwrap());
    }
    let admitted = all.iter().filter(|r| r.status == 502).count();
    let over = all.iter().filter(|r| r.status == 429).count();
    for r in all.iter().filter(|r| r.status == 429) {
        r.assert_limit_exceeded();
    }
    assert_eq!(
        (admitted, over),
        (20, 20),
        "statuses: {:?}",
        all.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    // One retry each (503 is retried once): SageMaker saw exactly two calls per admitted request.
    assert_eq!(upstream.count(), 40);
}
