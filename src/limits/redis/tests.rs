//! Tests of the shared store against a real `redis-server` (Debian package `redis-server`; `.ci/run`
//! installs it). Each test starts its own server on a free loopback port, without persistence, and
//! stops it when done.
//!
//! The script's decisions are compared with the in-process limiter's on the same inputs: the same
//! handles, a [`ManualClock`] for the memory store and the same instant, in microseconds, passed to
//! the script instead of the server's `TIME`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::limits::{
    KeyLimiter, KeyPlanSpec, LimitClock, ManualClock, QuotaSpec, RouteThrottle, StageLimiter,
    ThrottleSpec, period_bounds,
};

/// A `redis-server` on a free loopback port; killed on drop.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    /// On a free port (retried when another process took the port between the probe and the bind).
    fn start() -> Server {
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            if let Some(server) = Server::try_start_on(port) {
                return server;
            }
        }
        panic!("redis-server did not start on a free port");
    }

    fn start_on(port: u16) -> Server {
        Server::try_start_on(port).expect("redis-server on its old port")
    }

    /// Ready once the server on `port` answers PING and reports this child's process id (another
    /// test's server on a reused port would answer PING too).
    fn try_start_on(port: u16) -> Option<Server> {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "redis-server must be installed for these tests (apt-get install redis-server)",
            );
        // The handle kills and reaps the process on drop, also when the wait below fails.
        let mut server = Server { child, port };
        let pid = format!("process_id:{}", server.child.id());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if server.child.try_wait().ok().flatten().is_some() {
                return None;
            }
            if info(port).is_some_and(|i| i.contains(&pid)) {
                return Some(server);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `kill -s NAME` on the server: STOP hangs it (connections open, nothing answered), CONT resumes.
fn signal(server: &Server, name: &str) {
    let status = Command::new("kill")
        .args(["-s", name, &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -s {name}");
}

fn info(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    s.write_all(b"INFO server\r\n").ok()?;
    let mut buf = [0u8; 8192];
    let n = s.read(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

fn settings(url: &str, on_failure: FailurePolicy) -> RedisSettings {
    RedisSettings {
        url: url.to_owned(),
        username: None,
        password: None,
        connections: 2,
        timeout: Duration::from_millis(200),
        connect_timeout: Duration::from_millis(500),
        probe_interval: Duration::from_millis(100),
        consecutive_failures: 3,
        key_prefix: "test".to_owned(),
        quota_retention: Duration::from_secs(35 * 86400),
        on_failure,
    }
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).single().unwrap()
}

fn micros(t: DateTime<Utc>) -> u64 {
    u64::try_from(t.timestamp_micros()).unwrap()
}

fn throttle(rate_limit: f64, burst_limit: u32) -> ThrottleSpec {
    ThrottleSpec {
        rate_limit,
        burst_limit,
    }
}

/// Probes until the store answers (a reconnect after a server restart can take a probe or two).
async fn recovered(store: &RedisStore) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if store.probe_now().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

async fn store(server: &Server, on_failure: FailurePolicy, clock: LimitClock) -> RedisStore {
    let store =
        RedisStore::new(settings(&server.url(), on_failure), MemoryStore::new(clock)).unwrap();
    assert!(recovered(&store).await, "store reachable");
    store
}

/// Random request sequences over several layer combinations: the script and the memory store
/// admit and reject the same requests, with the same retry times, until the quota runs out and
/// across a month boundary.
#[tokio::test]
async fn script_decides_like_the_memory_limiter() {
    let server = Server::start();
    // Intervals that are whole microseconds (1, 2, 5, 1000 per second), so both sides agree on
    // every digit of the retry time.
    let cases: [(f64, u32, f64, u32, u64, QuotaPeriod, u64); 4] = [
        (2.0, 3, 1000.0, 5, 40, QuotaPeriod::Day, 0),
        (5.0, 1, 1.0, 4, 25, QuotaPeriod::Month, 3),
        (1.0, 5, 2.0, 2, 1000, QuotaPeriod::Week, 0),
        (1000.0, 10, 5.0, 20, 60, QuotaPeriod::Month, 0),
    ];
    let mut over_quota = 0;
    for (case, (plan_rate, plan_burst, route_rate, route_burst, limit, period, offset)) in
        cases.into_iter().enumerate()
    {
        // A minute before a month ends (and a week: 2024-03-31 is a Sunday).
        let manual = ManualClock::new(utc(2024, 3, 31, 23, 59, 0));
        let clock = LimitClock::manual(&manual);
        let memory = MemoryStore::new(clock.clone());
        let shared = store(&server, FailurePolicy::Local, clock.clone()).await;
        let key = KeyLimiter::new(
            KeyPlanSpec {
                key_id: format!("key:{case}"),
                plan_id: "plan%1".to_owned(),
                throttle: Some(throttle(plan_rate, plan_burst)),
                route_throttles: vec![RouteThrottle {
                    route: crate::route::RouteKey {
                        method: "GET".to_owned(),
                        path: "/a".to_owned(),
                    },
                    throttle: throttle(route_rate, route_burst),
                }],
                quota: Some(QuotaSpec {
                    limit,
                    period,
                    offset,
                }),
            },
            &clock,
        )
        .unwrap();
        let stage =
            StageLimiter::new(&format!("s{case}"), Some(throttle(50.0, 30)), &[], &clock).unwrap();
        let mut rng = StdRng::seed_from_u64(case as u64);
        let (mut admitted, mut throttled, mut exhausted) = (0, 0, 0);
        for step in 0..600 {
            let path = if rng.random_bool(0.5) { "/a" } else { "/b" };
            let req = AdmitRequest::new(Some(&key), Some(&stage), "GET", path);
            let now = micros(manual.wall_now());
            let expected = memory.admit_now(&req);
            let got = shared.admit_at(&req, now).await.unwrap();
            assert_eq!(got, expected, "case {case}, step {step}, path {path}");
            match expected {
                Admission::Admitted => admitted += 1,
                Admission::Throttled { .. } => throttled += 1,
                _ => exhausted += 1,
            }
            // Mostly bursts (no time), sometimes a pause of up to 2 s, in whole microseconds.
            if rng.random_bool(0.3) {
                manual.advance(Duration::from_micros(rng.random_range(1..2_000_000)));
            }
        }
        assert!(
            admitted > 0 && throttled > 0,
            "case {case}: {admitted} admitted, {throttled} throttled, {exhausted} over quota"
        );
        over_quota += exhausted;
    }
    assert!(over_quota > 0, "some case runs out of quota");
}

/// On the server's clock, a cell expires when its bucket is full again (a missing cell reads as
/// full), so idle keys cost no memory; a quota counter lives until its period ends + retention.
#[tokio::test]
async fn cells_expire_when_full_and_counters_after_the_retention() {
    let server = Server::start();
    let clock = LimitClock::system();
    let shared = store(&server, FailurePolicy::Local, clock.clone()).await;
    let key = KeyLimiter::new(
        KeyPlanSpec {
            key_id: "ttl".to_owned(),
            plan_id: "p".to_owned(),
            // One token per 10 s, burst 3: after 3 requests the bucket is full again in 30 s.
            throttle: Some(throttle(0.1, 3)),
            route_throttles: Vec::new(),
            quota: Some(QuotaSpec {
                limit: 100,
                period: QuotaPeriod::Day,
                offset: 0,
            }),
        },
        &clock,
    )
    .unwrap();
    let req = AdmitRequest::new(Some(&key), None, "GET", "/");
    for _ in 0..3 {
        assert_eq!(shared.admit(&req).await, Admission::Admitted);
    }
    assert!(matches!(
        shared.admit(&req).await,
        Admission::Throttled { .. }
    ));
    let mut con = shared.shared.conn();
    let cell_ttl: i64 = redis::cmd("PTTL")
        .arg("{test}:t:k:ttl:p")
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(
        (20_000..=30_000).contains(&cell_ttl),
        "cell expires when full again (30 s after the first take): {cell_ttl} ms"
    );
    let counters: Vec<String> = redis::cmd("KEYS")
        .arg("{test}:q:p:ttl:D:*")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(counters.len(), 1, "{counters:?}");
    let counter_ttl: i64 = redis::cmd("TTL")
        .arg(&counters[0])
        .query_async(&mut con)
        .await
        .unwrap();
    let (_, end) = period_bounds(QuotaPeriod::Day, Utc::now());
    let expected = end.timestamp() + 35 * 86_400 - Utc::now().timestamp();
    assert!(
        (expected - 5..=expected + 5).contains(&counter_ttl),
        "counter kept until period end + retention: {counter_ttl} s, expected {expected}"
    );
}

/// The script's calendar periods (cut from the store's time in Lua) are the Rust ones.
#[tokio::test]
async fn script_periods_are_the_utc_calendar_periods() {
    let server = Server::start();
    let clock = LimitClock::system();
    let shared = store(&server, FailurePolicy::Local, clock.clone()).await;
    let mut rng = StdRng::seed_from_u64(7);
    let mut instants = vec![
        utc(2024, 2, 29, 23, 59, 59),
        utc(2024, 3, 1, 0, 0, 0),
        utc(2023, 12, 31, 23, 59, 59),
        utc(2024, 1, 1, 0, 0, 0),
        utc(2100, 2, 28, 12, 0, 0),
        utc(2000, 2, 29, 0, 0, 0),
        utc(1970, 1, 5, 0, 0, 0),
    ];
    for _ in 0..300 {
        let secs = rng.random_range(0..7_000_000_000i64);
        instants.push(DateTime::from_timestamp(secs, 0).unwrap());
    }
    for (i, at) in instants.into_iter().enumerate() {
        for period in [QuotaPeriod::Day, QuotaPeriod::Week, QuotaPeriod::Month] {
            let key = KeyLimiter::new(
                KeyPlanSpec {
                    key_id: format!("k{i}"),
                    plan_id: format!("{period:?}"),
                    throttle: None,
                    route_throttles: Vec::new(),
                    quota: Some(QuotaSpec {
                        limit: 10,
                        period,
                        offset: 0,
                    }),
                },
                &clock,
            )
            .unwrap();
            let req = AdmitRequest::new(Some(&key), None, "GET", "/");
            let reply = shared.shared.eval(&req, Some(micros(at))).await.unwrap();
            let (start, end) = period_bounds(period, at);
            assert_eq!(
                reply,
                vec![0, 0, 0, 1, 10, start.timestamp(), end.timestamp()],
                "{period:?} at {at}"
            );
        }
    }
}

fn quota_key(id: &str, limit: u64, clock: &LimitClock) -> KeyLimiter {
    KeyLimiter::new(
        KeyPlanSpec {
            key_id: id.to_owned(),
            plan_id: "metered".to_owned(),
            throttle: Some(throttle(1000.0, 1000)),
            route_throttles: Vec::new(),
            quota: Some(QuotaSpec {
                limit,
                period: QuotaPeriod::Day,
                offset: 0,
            }),
        },
        clock,
    )
    .unwrap()
}

/// With Redis gone, `local` decides with the in-process limits (no wait beyond the timeout,
/// `consecutive_failures` failed calls mark the store down, later requests do not touch it); after
/// it returns, the quota admitted locally is added to the shared counter, except for requests
/// whose call may have counted them already (the server died with the call in flight).
#[tokio::test]
async fn local_policy_falls_back_and_adds_local_counts_back() {
    let mut server = Server::start();
    let port = server.port;
    let clock = LimitClock::system();
    let shared = store(&server, FailurePolicy::Local, clock.clone()).await;
    let key = quota_key("fallback", 100, &clock);
    let req = AdmitRequest::new(Some(&key), None, "GET", "/");
    for _ in 0..3 {
        assert_eq!(shared.admit(&req).await, Admission::Admitted);
    }
    server.stop();
    for _ in 0..5 {
        assert_eq!(shared.admit(&req).await, Admission::Admitted);
    }
    assert!(!shared.is_up());
    assert_eq!(shared.stats().outages.load(Ordering::Relaxed), 1);
    assert_eq!(
        shared.stats().errors.load(Ordering::Relaxed),
        3,
        "three calls in a row failed, then the store was down and not tried"
    );
    assert_eq!(shared.stats().fallback_local.load(Ordering::Relaxed), 5);
    // A new, empty server on the same port: the probe brings the store back and adds the 5,
    // less those whose call met the dying connection (it may have run: never added twice).
    let uncertain = shared.stats().uncertain.load(Ordering::Relaxed);
    assert!(uncertain <= 3, "{uncertain}");
    let _server = Server::start_on(port);
    assert!(recovered(&shared).await);
    let usage = shared.usage(&[&key], UsagePeriod::Current).await.unwrap();
    assert_eq!(
        usage[0].1.used,
        5 - uncertain,
        "local admissions added back"
    );
    assert_eq!(shared.admit(&req).await, Admission::Admitted);
    let usage = shared.usage(&[&key], UsagePeriod::Current).await.unwrap();
    assert_eq!(usage[0].1.used, 6 - uncertain);
}

/// One slow call (SIGSTOP) decides its own request locally and nothing else: the store stays up
/// and the next request is shared again. The script of the call that timed out runs when the
/// server resumes, and is the only count of that request.
#[tokio::test]
async fn one_slow_call_costs_one_request_and_is_counted_once() {
    let server = Server::start();
    let clock = LimitClock::system();
    let shared = store(&server, FailurePolicy::Local, clock.clone()).await;
    let key = quota_key("slow", 100, &clock);
    let req = AdmitRequest::new(Some(&key), None, "GET", "/");
    for _ in 0..2 {
        assert_eq!(shared.admit(&req).await, Admission::Admitted);
    }
    signal(&server, "STOP");
    assert_eq!(shared.admit(&req).await, Admission::Admitted);
    signal(&server, "CONT");
    assert!(shared.is_up(), "one slow call does not take the store down");
    assert_eq!(shared.stats().outages.load(Ordering::Relaxed), 0);
    assert_eq!(shared.stats().errors.load(Ordering::Relaxed), 1);
    assert_eq!(shared.stats().uncertain.load(Ordering::Relaxed), 1);
    // Shared again.
    assert_eq!(shared.admit(&req).await, Admission::Admitted);
    // A command on every connection runs after what was queued there: the late script too.
    shared.shared.probe().await.unwrap();
    assert!(
        shared.shared.pending.lock().unwrap().is_empty(),
        "nothing to add back"
    );
    let usage = shared.usage(&[&key], UsagePeriod::Current).await.unwrap();
    assert_eq!(usage[0].1.used, 4, "four requests, each counted once");
}

/// `consecutive_failures` timed-out calls in a row mark the store down; every request admitted
/// while it was down is added back on recovery, and those whose script ran late are not.
#[tokio::test]
async fn consecutive_timeouts_trip_the_store_and_each_request_counts_once() {
    let server = Server::start();
    let clock = LimitClock::system();
    let shared = store(&server, FailurePolicy::Local, clock.clone()).await;
    let key = quota_key("hung", 100, &clock);
    let req = AdmitRequest::new(Some(&key), None, "GET", "/");
    assert_eq!(shared.admit(&req).await, Admission::Admitted);
    signal(&server, "STOP");
    for i in 1..=3 {
        assert!(shared.is_up(), "up before failure {i}");
        assert_eq!(shared.admit(&req).await, Admission::Admitted);
    }
    assert!(!shared.is_up(), "three in a row");
    for _ in 0..4 {
        assert_eq!(shared.admit(&req).await, Admission::Admitted);
    }
    assert_eq!(shared.stats().errors.load(Ordering::Relaxed), 3);
    assert_eq!(shared.stats().uncertain.load(Ordering::Relaxed), 3);
    signal(&server, "CONT");
    assert!(recovered(&shared).await);
    let usage = shared.usage(&[&key], UsagePeriod::Current).await.unwrap();
    assert_eq!(
        usage[0].1.used, 8,
        "1 shared + 3 late scripts + 4 added back"
    );
}

/// A success in between resets the count: failures that are not in a row never trip.
#[tokio::test]
async fn failures_not_in_a_row_never_trip() {
    let server = Server::start();
    let clock = LimitClock::system();
    let shared = store(&server, FailurePolicy::Deny, clock.clone()).await;
    let key = quota_key("flaky", 100, &clock);
    let req = AdmitRequest::new(Some(&key), None, "GET", "/");
    for _ in 0..3 {
        signal(&server, "STOP");
        for _ in 0..2 {
            assert_eq!(shared.admit(&req).await, Admission::StoreUnavailable);
        }
        signal(&server, "CONT");
        assert_eq!(shared.admit(&req).await, Admission::Admitted);
    }
    assert!(shared.is_up());
    assert_eq!(shared.stats().errors.load(Ordering::Relaxed), 6);
    assert_eq!(shared.stats().outages.load(Ordering::Relaxed), 0);
}

/// A batch of local counts whose flush failed after it ran is resent under the same id, and the
/// server adds it once.
#[tokio::test]
async fn a_flush_sent_twice_adds_once() {
    let server = Server::start();
    let clock = LimitClock::system();
    let shared = store(&server, FailurePolicy::Local, clock.clone()).await;
    let key = quota_key("flushed", 100, &clock);
    let quota = key.quota().unwrap();
    shared.shared.remember_local(quota);
    shared.shared.remember_local(quota);
    let (id, counts) = shared.shared.pending.lock().unwrap().next_batch().unwrap();
    assert!(shared.shared.flush(&id, &counts).await.unwrap(), "added");
    // As if that answer had been lost: the same batch again.
    shared.shared.pending.lock().unwrap().unsent = Some((id, counts));
    assert!(recovered(&shared).await);
    assert!(shared.shared.pending.lock().unwrap().is_empty());
    let usage = shared.usage(&[&key], UsagePeriod::Current).await.unwrap();
    assert_eq!(usage[0].1.used, 2);
}

/// A local fallback continues from the last shared count this task saw, not from zero.
#[tokio::test]
async fn local_quota_continues_from_the_last_shared_count() {
    let mut server = Server::start();
    let clock = LimitClock::system();
    let shared = store(&server, FailurePolicy::Local, clock.clone()).await;
    let key = quota_key("continue", 5, &clock);
    let req = AdmitRequest::new(Some(&key), None, "GET", "/");
    for _ in 0..3 {
        assert_eq!(shared.admit(&req).await, Admission::Admitted);
    }
    server.stop();
    assert_eq!(shared.admit(&req).await, Admission::Admitted);
    assert_eq!(shared.admit(&req).await, Admission::Admitted);
    assert!(
        matches!(shared.admit(&req).await, Admission::QuotaExceeded { .. }),
        "5 in total, 3 of them shared"
    );
    assert!(!shared.is_up());
}

#[tokio::test]
async fn deny_policy_refuses_while_down_and_recovers() {
    let mut server = Server::start();
    let port = server.port;
    let clock = LimitClock::system();
    let shared = store(&server, FailurePolicy::Deny, clock.clone()).await;
    let key = quota_key("deny", 100, &clock);
    let req = AdmitRequest::new(Some(&key), None, "GET", "/");
    assert_eq!(shared.admit(&req).await, Admission::Admitted);
    server.stop();
    assert_eq!(shared.admit(&req).await, Admission::StoreUnavailable);
    assert_eq!(shared.admit(&req).await, Admission::StoreUnavailable);
    assert_eq!(shared.stats().denied.load(Ordering::Relaxed), 2);
    let _server = Server::start_on(port);
    assert!(recovered(&shared).await);
    assert_eq!(shared.admit(&req).await, Admission::Admitted);
}

/// A server that lost its script cache (restart, `SCRIPT FLUSH`) answers NOSCRIPT once; the
/// store sends the source and goes on, without counting it as a failure.
#[tokio::test]
async fn noscript_is_answered_by_sending_the_script() {
    let server = Server::start();
    let clock = LimitClock::system();
    let shared = store(&server, FailurePolicy::Deny, clock.clone()).await;
    let key = quota_key("noscript", 2, &clock);
    let req = AdmitRequest::new(Some(&key), None, "GET", "/");
    let mut con = shared.shared.conn();
    redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async::<()>(&mut con)
        .await
        .unwrap();
    assert_eq!(shared.admit(&req).await, Admission::Admitted);
    assert_eq!(shared.admit(&req).await, Admission::Admitted);
    assert!(matches!(
        shared.admit(&req).await,
        Admission::QuotaExceeded { .. }
    ));
    assert!(shared.is_up());
    assert_eq!(shared.stats().errors.load(Ordering::Relaxed), 0);
}

/// Ids with the separator in them never share a counter; every key has the hash tag.
#[tokio::test]
async fn keys_are_escaped_and_hash_tagged() {
    let server = Server::start();
    let clock = LimitClock::system();
    let shared = store(&server, FailurePolicy::Deny, clock.clone()).await;
    let a = KeyLimiter::new(
        KeyPlanSpec {
            key_id: "a:b".to_owned(),
            plan_id: "c".to_owned(),
            throttle: None,
            route_throttles: Vec::new(),
            quota: Some(QuotaSpec {
                limit: 1,
                period: QuotaPeriod::Day,
                offset: 0,
            }),
        },
        &clock,
    )
    .unwrap();
    let b = KeyLimiter::new(
        KeyPlanSpec {
            key_id: "b".to_owned(),
            plan_id: "c:a".to_owned(),
            ..a.spec().clone()
        },
        &clock,
    )
    .unwrap();
    for key in [&a, &b] {
        let req = AdmitRequest::new(Some(key), None, "GET", "/");
        assert_eq!(shared.admit(&req).await, Admission::Admitted);
    }
    let mut con = shared.shared.conn();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys.iter().all(|k| k.starts_with("{test}:q:")), "{keys:?}");
    assert!(
        keys.iter().any(|k| k.starts_with("{test}:q:c:a%3Ab:D:")),
        "{keys:?}"
    );
}

#[test]
fn urls_are_logged_without_credentials() {
    assert_eq!(
        redacted_url("rediss://user:s3cret@cache.example:6379/0"),
        "rediss://cache.example:6379/0"
    );
    assert_eq!(
        redacted_url("redis://127.0.0.1:6379"),
        "redis://127.0.0.1:6379"
    );
    let s = settings("redis://:pw@h:1", FailurePolicy::Local);
    let shown = format!(
        "{:?}",
        RedisSettings {
            password: Some("hunter2".into()),
            ..s
        }
    );
    assert!(
        !shown.contains("pw") && !shown.contains("hunter2"),
        "{shown}"
    );
}
