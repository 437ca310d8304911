//! Usage plans shared by several gateway tasks through one real `redis-server`
//! (`limits.store: redis`): three gateway processes take a bounded concurrent load on one key,
//! and together admit no more than one bucket allows and exactly one quota; rejected requests
//! consume nothing; a restarted gateway keeps the count. Then the store fails under load: the
//! declared policy holds (`local`: no 5xx and no request held beyond a bound far below the hang it
//! would otherwise be; `deny`: 503), and limits are shared again once Redis is back; a hung Redis
//! costs no request a double count, and one slow call does not switch the task to local limits.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::Value;

use crate::kit::client::Reply;
use crate::kit::config::{KEY_A, Key, Plan};
use crate::kit::{Gateway, GatewayYaml, KeysYaml, RedisServer, Upstream, WAIT, eventually};
use crate::metrics::{admin_url, sample, scrape};

const KEY_B: &str = "e2e-key-shared-b-0123456789";
const SEED: &str = "/temp/recommended-movies/U:114521?k=10&inference_type=deterministic";

/// `n` gateways in front of `upstream`, sharing `redis`'s limits under `policy`, each with its
/// admin listener on.
async fn fleet(
    n: usize,
    redis: &RedisServer,
    policy: &'static str,
    keys: &KeysYaml,
    upstream: &Upstream,
) -> Vec<Gateway> {
    let mut gateways = Vec::new();
    for _ in 0..n {
        gateways.push(gateway(redis, policy, keys, upstream).await);
    }
    gateways
}

async fn gateway(
    redis: &RedisServer,
    policy: &'static str,
    keys: &KeysYaml,
    upstream: &Upstream,
) -> Gateway {
    let config = GatewayYaml::standard().redis_limits(&redis.url(), policy, 50);
    gateway_with(&config.render(), keys, upstream).await
}

/// A gateway on `config` with its admin listener on, once its limit store is up.
async fn gateway_with(config: &str, keys: &KeysYaml, upstream: &Upstream) -> Gateway {
    let gateway = Gateway::builder()
        .config_text(config)
        .keys(keys.clone())
        .env("SAGEGATE_ADMIN_LISTEN", "127.0.0.1:0")
        .upstream(upstream)
        .start()
        .await;
    gateway.wait_for_log("limit store up").await;
    gateway
}

/// What a load got back.
#[derive(Debug, Default)]
struct Tally {
    ok: usize,
    throttled: usize,
    limit_exceeded: usize,
    /// Statuses of anything else, or 0 for a transport failure (e.g. the client's timeout).
    other: Vec<u16>,
}

impl Tally {
    fn add(&mut self, reply: &Reply) {
        if reply.status == 200 {
            self.ok += 1;
        } else if reply.is_too_many_requests() {
            reply.assert_too_many_requests();
            self.throttled += 1;
        } else if reply.status == 429 {
            reply.assert_limit_exceeded();
            self.limit_exceeded += 1;
        } else {
            self.other.push(reply.status);
        }
    }
}

/// `clients` concurrent clients, each sending `per_client` requests with `key` one after the
/// other, client `c`'s `i`-th request to gateway `(c + i) % n`. Every request gives up after
/// `patience`. `sent` counts answers as they come. Returns the tally and the seconds from the
/// first request sent to the last answer.
async fn load(
    gateways: &[Gateway],
    key: &str,
    clients: usize,
    per_client: usize,
    patience: Duration,
    sent: &AtomicUsize,
) -> (Tally, f64) {
    let started = Instant::now();
    let runs = (0..clients).map(|c| async move {
        let mut tally = Tally::default();
        for i in 0..per_client {
            let gateway = &gateways[(c + i) % gateways.len()];
            match gateway
                .get(SEED)
                .key(key)
                .timeout(patience)
                .send_raw()
                .await
            {
                Ok(resp) => tally.add(&Reply::read(resp).await),
                Err(_) => tally.other.push(0),
            }
            sent.fetch_add(1, Ordering::SeqCst);
        }
        tally
    });
    let mut total = Tally::default();
    for t in join_all(runs).await {
        total.ok += t.ok;
        total.throttled += t.throttled;
        total.limit_exceeded += t.limit_exceeded;
        total.other.extend(t.other);
    }
    (total, started.elapsed().as_secs_f64())
}

async fn health_body(gateway: &Gateway) -> (u16, String) {
    let resp = reqwest::Client::builder()
        .no_proxy()
        .timeout(WAIT)
        .build()
        .unwrap()
        .get(gateway.url("/healthz"))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// Waits until every gateway reports the store `state` (`up`, `down`) in its `/healthz` detail,
/// which always answers 200: the ALB never takes a task out because of Redis.
async fn await_store_state(gateways: &[Gateway], state: &str) {
    for gateway in gateways {
        eventually(&format!("limit store {state}"), WAIT, || async {
            let (status, body) = health_body(gateway).await;
            assert_eq!(status, 200, "{body}");
            body.contains(&format!(r#""state":"{state}""#))
                .then_some(())
        })
        .await;
    }
}

async fn usage_of(admin: &str, key_id: &str) -> Value {
    let resp = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("{admin}/usage?key_id={key_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_gateways_share_one_bucket() {
    let redis = RedisServer::start();
    let upstream = Upstream::start().await;
    // Half a token a second, a burst of 5: three per-task buckets would admit 15 at once.
    let keys = KeysYaml::new()
        .plan(Plan::new("shared", &["temp", "prod"]).throttle(0.5, 5))
        .key(Key::new("shared-a", KEY_A, &["shared"]));
    let gateways = fleet(3, &redis, "local", &keys, &upstream).await;
    let sent = AtomicUsize::new(0);
    let (tally, elapsed) = load(&gateways, KEY_A, 6, 8, WAIT, &sent).await;
    let most = 5.0 + (0.5 * elapsed).floor() + 1.0;
    assert!(
        tally.ok >= 5 && tally.ok as f64 <= most,
        "{tally:?} in {elapsed:.2}s; one shared bucket allows 5..={most}"
    );
    assert_eq!(tally.ok + tally.throttled, 48, "{tally:?}");
    assert_eq!(
        upstream.count(),
        tally.ok,
        "refused requests never reach SageMaker"
    );
    for g in &gateways {
        let status = health_body(g).await.1;
        assert!(status.contains(r#""state":"up""#), "{status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_is_exact_across_gateways_and_survives_a_restart() {
    let redis = RedisServer::start();
    let upstream = Upstream::start().await;
    let keys = KeysYaml::new()
        .plan(Plan::new("metered", &["temp", "prod"]).quota(20, "DAY"))
        .key(Key::new("metered-a", KEY_A, &["metered"]));
    let mut gateways = fleet(3, &redis, "local", &keys, &upstream).await;
    let sent = AtomicUsize::new(0);
    let (tally, _) = load(&gateways, KEY_A, 6, 6, WAIT, &sent).await;
    assert_eq!(tally.ok, 20, "exactly the quota, in total: {tally:?}");
    assert_eq!(tally.limit_exceeded, 16, "{tally:?}");
    assert_eq!(upstream.count(), 20);

    // The usage read-out, from the shared counter, on any gateway's admin listener.
    let usage = usage_of(&admin_url(&gateways[2]), "metered-a").await;
    let row = &usage["usage"][0];
    assert_eq!(usage["store"], "redis");
    assert_eq!(
        (row["used"].as_u64(), row["remaining"].as_u64()),
        (Some(20), Some(0))
    );
    assert_eq!(row["plan_id"], "metered");
    assert_eq!(row["period"], "DAY");
    assert!(
        !usage.to_string().contains(KEY_A),
        "key ids only, never keys"
    );

    // A gateway restarted mid-period starts from the shared count, not from zero.
    let restarted = gateway(&redis, "local", &keys, &upstream).await;
    drop(gateways.remove(0));
    restarted
        .get(SEED)
        .key(KEY_A)
        .send()
        .await
        .assert_limit_exceeded();
    assert_eq!(upstream.count(), 20);

    // `sagegate usage` reads the same counter from Redis with the gateway's files, or asks a
    // running gateway with --admin.
    let out = std::process::Command::new(crate::kit::sagegate_bin())
        .args(["usage", "--json", "--key-id", "metered-a", "--config"])
        .arg(restarted.config_path())
        .arg("--keys")
        .arg(restarted.keys_path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cli["usage"][0]["used"], 20, "{cli}");
    let out = std::process::Command::new(crate::kit::sagegate_bin())
        .args([
            "usage",
            "--json",
            "--period",
            "previous",
            "--admin",
            &admin_url(&restarted),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let previous: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(previous["period"], "previous");
    assert_eq!(previous["usage"][0]["used"], 0, "{previous}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_requests_consume_no_shared_quota() {
    let redis = RedisServer::start();
    let upstream = Upstream::start().await;
    let keys = KeysYaml::new()
        .plan(
            Plan::new("metered", &["temp"])
                .throttle(2.0, 1)
                .quota(6, "DAY"),
        )
        .key(Key::new("metered-a", KEY_A, &["metered"]));
    let gateways = fleet(3, &redis, "local", &keys, &upstream).await;
    // Rounds of six concurrent requests over the three gateways: the shared bucket (one token,
    // two a second) refuses most of each round, until the quota is used up (bounded).
    let mut tally = Tally::default();
    let deadline = Instant::now() + WAIT;
    while tally.limit_exceeded == 0 {
        assert!(
            Instant::now() < deadline,
            "the quota never ran out: {tally:?}"
        );
        let round = (0..6).map(|i| gateways[i % 3].get(SEED).key(KEY_A).send());
        for reply in join_all(round).await {
            tally.add(&reply);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(tally.ok, 6, "exactly the quota was admitted: {tally:?}");
    assert!(
        tally.throttled > 0,
        "the throttle refused some first: {tally:?}"
    );
    assert!(tally.other.is_empty(), "{tally:?}");
    assert_eq!(upstream.count(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_policy_rides_out_a_redis_outage_under_load() {
    let mut redis = RedisServer::start();
    let upstream = Upstream::start().await;
    let keys = KeysYaml::new()
        .plan(
            Plan::new("busy", &["temp", "prod"])
                .throttle(1000.0, 2000)
                .quota(100_000, "DAY"),
        )
        .plan(Plan::new("small", &["temp", "prod"]).quota(6, "DAY"))
        .key(Key::new("busy-a", KEY_A, &["busy"]))
        .key(Key::new("small-b", KEY_B, &["small"]));
    let gateways = fleet(3, &redis, "local", &keys, &upstream).await;

    // Redis is killed while 4 clients are sending; every request is still answered, by the
    // in-process limits, within a bound (5 s) far below the hang a blocked call would be.
    let sent = AtomicUsize::new(0);
    let patience = Duration::from_secs(5);
    let ((tally, _), ()) = tokio::join!(load(&gateways, KEY_A, 4, 15, patience, &sent), async {
        eventually("the load to be under way", WAIT, || async {
            (sent.load(Ordering::SeqCst) >= 12).then_some(())
        })
        .await;
        redis.stop();
    });
    assert!(
        tally.other.is_empty(),
        "no 5xx, no stuck request: {tally:?}"
    );
    assert_eq!(tally.ok, 60, "{tally:?}");
    // However the load fell on the gateways, each tries the store at least once more.
    for g in &gateways {
        g.get(SEED).key(KEY_A).send().await.assert_ok();
    }
    await_store_state(&gateways, "down").await;
    let metrics = scrape(&admin_url(&gateways[0])).await;
    assert_eq!(sample(&metrics, "sagegate_limit_store_up", &[]), Some(0.0));

    // Back (empty, as after a failover without persistence): shared again.
    redis.restart();
    await_store_state(&gateways, "up").await;
    let sent = AtomicUsize::new(0);
    let (small, _) = load(&gateways, KEY_B, 3, 4, WAIT, &sent).await;
    assert_eq!(small.ok, 6, "one quota across the fleet again: {small:?}");
    assert_eq!(small.limit_exceeded, 6, "{small:?}");
    let metrics = scrape(&admin_url(&gateways[0])).await;
    assert_eq!(sample(&metrics, "sagegate_limit_store_up", &[]), Some(1.0));
    for g in &gateways {
        let out = g.stdout();
        let lines = |needle: &str| out.lines().filter(|l| l.contains(needle)).count();
        assert_eq!(
            (lines("limit store down;"), lines("limit store up again")),
            (1, 1),
            "one log line per transition, not per request:\n{out}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_costs_each_request_at_most_the_timeout() {
    let redis = RedisServer::start();
    let upstream = Upstream::start().await;
    let keys = KeysYaml::new()
        .plan(Plan::new("busy", &["temp", "prod"]).quota(1000, "DAY"))
        .key(Key::new("busy-a", KEY_A, &["busy"]));
    let gateways = fleet(1, &redis, "local", &keys, &upstream).await;
    // SIGSTOP: connections stay open and nothing answers, the worst case for a client without
    // its own timeout. The first call gives up after timeout_ms (50 ms); the rest skip Redis.
    redis.pause();
    let sent = AtomicUsize::new(0);
    let (tally, _) = load(&gateways, KEY_A, 2, 10, Duration::from_secs(5), &sent).await;
    assert!(tally.other.is_empty(), "{tally:?}");
    assert_eq!(tally.ok, 20);
    await_store_state(&gateways, "down").await;
    redis.resume();
    await_store_state(&gateways, "up").await;
    let usage = usage_of(&admin_url(&gateways[0]), "busy-a").await;
    // Every request counted once: the calls that timed out were queued in the paused server and
    // ran when it resumed (the probe runs after them on each connection), and only the requests
    // admitted without such a call were added back.
    assert_eq!(usage["usage"][0]["used"], 20, "{usage}");
}

/// One slow call decides its own request by the policy and nothing more: the store stays up,
/// so the next requests meet the shared bucket, not this task's full local one (with a probe
/// interval of a minute, the window that one slow call used to open).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_slow_redis_call_does_not_hand_the_task_full_local_buckets() {
    let redis = RedisServer::start();
    let upstream = Upstream::start().await;
    let keys = KeysYaml::new()
        .plan(Plan::new("tight", &["temp", "prod"]).throttle(0.01, 2))
        .key(Key::new("tight-a", KEY_A, &["tight"]));
    let config = GatewayYaml::standard()
        .redis_limits(&redis.url(), "local", 200)
        .render();
    let slow_probe = config.replace("probe_interval_ms: 100", "probe_interval_ms: 60000");
    assert_ne!(slow_probe, config, "the kit's config changed shape");
    let gateway = gateway_with(&slow_probe, &keys, &upstream).await;
    for _ in 0..2 {
        gateway.get(SEED).key(KEY_A).send().await.assert_ok();
    }
    gateway
        .get(SEED)
        .key(KEY_A)
        .send()
        .await
        .assert_too_many_requests();
    // One call that gets no answer in time: this request is decided by this task's bucket.
    redis.pause();
    gateway.get(SEED).key(KEY_A).send().await.assert_ok();
    redis.resume();
    let (_, body) = health_body(&gateway).await;
    assert!(body.contains(r#""state":"up""#), "{body}");
    // The shared bucket decides again at once.
    for _ in 0..3 {
        gateway
            .get(SEED)
            .key(KEY_A)
            .send()
            .await
            .assert_too_many_requests();
    }
    let metrics = scrape(&admin_url(&gateway)).await;
    assert_eq!(
        sample(&metrics, "sagegate_limit_store_errors_total", &[]),
        Some(1.0)
    );
    assert_eq!(sample(&metrics, "sagegate_limit_store_up", &[]), Some(1.0));
    assert!(!gateway.stdout().contains("limit store down;"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_policy_answers_503_while_redis_is_down() {
    let mut redis = RedisServer::start();
    let upstream = Upstream::start().await;
    let keys = KeysYaml::new()
        .plan(Plan::new("metered", &["temp", "prod"]).quota(100, "DAY"))
        .key(Key::new("metered-a", KEY_A, &["metered"]));
    let gateways = fleet(2, &redis, "deny", &keys, &upstream).await;
    gateways[0].get(SEED).key(KEY_A).send().await.assert_ok();
    redis.stop();
    for gateway in &gateways {
        for _ in 0..3 {
            gateway
                .get(SEED)
                .key(KEY_A)
                .send()
                .await
                .assert_gateway_error(
                    503,
                    r#"{"message":"Service Unavailable"}"#,
                    "ServiceUnavailableException",
                );
        }
    }
    await_store_state(&gateways, "down").await;
    assert_eq!(
        upstream.count(),
        1,
        "nothing passes while the limits cannot be checked"
    );
    redis.restart();
    await_store_state(&gateways, "up").await;
    for gateway in &gateways {
        gateway.get(SEED).key(KEY_A).send().await.assert_ok();
    }
}

fn reconciles(gateway: &Gateway) -> usize {
    gateway
        .stdout()
        .lines()
        .filter(|l| l.contains("limiter state reconciled with keys"))
        .count()
}

/// Replaces the keys file and waits until the gateway has installed it.
async fn reload(gateway: &Gateway, keys: &KeysYaml) {
    let before = reconciles(gateway);
    gateway.replace_keys(&keys.render());
    eventually("the keys reload", WAIT, || async {
        (reconciles(gateway) > before).then_some(())
    })
    .await;
}

/// Shared counters are named by (plan, key id), not by the settings: a reload that changes the
/// plan's limit applies it to the count so far, and a key deleted and added back within the
/// period resumes its count (deleted keys' counters simply expire).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_apply_changed_limits_to_the_shared_count() {
    let redis = RedisServer::start();
    let upstream = Upstream::start().await;
    let keys = |limit: u64, with_a: bool| {
        let k = KeysYaml::new()
            .plan(Plan::new("metered", &["temp", "prod"]).quota(limit, "DAY"))
            .key(Key::new("metered-b", KEY_B, &["metered"]));
        if with_a {
            k.key(Key::new("metered-a", KEY_A, &["metered"]))
        } else {
            k
        }
    };
    let gateway = gateway(&redis, "local", &keys(5, true), &upstream).await;
    for _ in 0..3 {
        gateway.get(SEED).key(KEY_A).send().await.assert_ok();
    }
    // Lowered to 4: one more, not four more.
    reload(&gateway, &keys(4, true)).await;
    gateway.get(SEED).key(KEY_A).send().await.assert_ok();
    gateway
        .get(SEED)
        .key(KEY_A)
        .send()
        .await
        .assert_limit_exceeded();
    // Deleted, then back: the count is still there.
    reload(&gateway, &keys(4, false)).await;
    gateway.get(SEED).key(KEY_A).send().await.assert_forbidden();
    reload(&gateway, &keys(4, true)).await;
    gateway
        .get(SEED)
        .key(KEY_A)
        .send()
        .await
        .assert_limit_exceeded();
    // Raised to 6: two more.
    reload(&gateway, &keys(6, true)).await;
    gateway.get(SEED).key(KEY_A).send().await.assert_ok();
    gateway.get(SEED).key(KEY_A).send().await.assert_ok();
    gateway
        .get(SEED)
        .key(KEY_A)
        .send()
        .await
        .assert_limit_exceeded();
    assert_eq!(upstream.count(), 6);
}

/// A store that is down when the gateway starts does not stop it: the policy decides until the
/// probe reaches the store, and from then on the limits are shared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_starts_while_redis_is_down() {
    let mut redis = RedisServer::start();
    redis.stop();
    let upstream = Upstream::start().await;
    let keys = KeysYaml::new()
        .plan(Plan::new("metered", &["temp", "prod"]).quota(2, "DAY"))
        .key(Key::new("metered-a", KEY_A, &["metered"]));
    let gateway = Gateway::builder()
        .config(GatewayYaml::standard().redis_limits(&redis.url(), "local", 50))
        .keys(keys)
        .upstream(&upstream)
        .start()
        .await;
    gateway.wait_for_log("limit store down at start").await;
    let (status, body) = health_body(&gateway).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""state":"down""#), "{body}");
    gateway.get(SEED).key(KEY_A).send().await.assert_ok();
    redis.restart();
    await_store_state(std::slice::from_ref(&gateway), "up").await;
    // The local admission was added to the shared count: one more, then the quota is used up.
    gateway.get(SEED).key(KEY_A).send().await.assert_ok();
    gateway
        .get(SEED)
        .key(KEY_A)
        .send()
        .await
        .assert_limit_exceeded();
}
