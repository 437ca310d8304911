//! Stage cache: keys and conditions, TTL on a manual clock, coalescing, size bound, invalidation.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use chrono::{TimeZone, Utc};
use tokio::sync::Notify;

use super::*;
use crate::config::GatewayConfig;
use crate::error::GatewayError;
use crate::limits::ManualClock;

const CONFIG: &str = r#"
stages:
  prod:
    variables: { endpoint: ep }
    cache: { enabled: true, ttl_secs: 300, max_bytes: 4000, max_entry_bytes: 1000 }
  open:
    variables: { endpoint: ep }
    cache: { enabled: true, require_authorization: false }
  strict:
    variables: { endpoint: ep }
    cache:
      enabled: true
      unauthorized_strategy: FAIL_WITH_403
      invalidators: { keys: [ops], usage_plans: [internal] }
  plain:
    variables: { endpoint: ep }
routes:
  - method: GET
    path: /recommended-movies/{user_id}
    integration:
      endpoint_name: ep
      passthrough_behavior: NEVER
      request_templates:
        application/json: |
          $input.params('user_id') $input.params().querystring.k $input.params().header.x-tenant
          $input.params('inference_type')
    cache:
      key_parameters: [method.request.path.user_id, method.request.querystring.k, method.request.header.X-Tenant]
      when: { method.request.querystring.inference_type: [deterministic] }
  - method: POST
    path: /score
    integration: { endpoint_name: ep }
  - method: GET
    path: /short
    integration: { endpoint_name: ep }
    cache:
      ttl_secs: 10
      key_parameters: [method.request.querystring.*, method.request.body, method.request.header.content-type]
"#;

fn config() -> GatewayConfig {
    GatewayConfig::parse("g.yaml", CONFIG, &|_| None).unwrap()
}

fn params(list: &[(&str, &str)]) -> impl Fn(&ParamSource) -> Option<String> {
    let list: Vec<(String, String)> = list
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |p: &ParamSource| {
        let name = p.to_string();
        list.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    }
}

/// A GET without query or body, as the key sees it.
const GET: KeyRequest<'static> = KeyRequest {
    method: "GET",
    query: &[],
    body: b"",
};

fn reply(body: &str) -> UpstreamReply {
    UpstreamReply {
        status: 200,
        body: Bytes::from(body.to_owned()),
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("x-amzn-requestid".into(), "upstream-req-1".into()),
            (
                "x-amzn-sagemaker-custom-attributes".into(),
                "gateway-req-1".into(),
            ),
        ],
    }
}

fn stats() -> InvokeStats {
    InvokeStats {
        latency: Duration::from_millis(1),
        status: Some(200),
        attempts: 1,
    }
}

fn failure() -> UpstreamFailure {
    UpstreamFailure {
        error: GatewayError::IntegrationFailure("boom".into()),
        reply: None,
    }
}

fn manual() -> (ManualClock, LimitClock) {
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap());
    let limit = LimitClock::manual(&clock);
    (clock, limit)
}

/// A counting upstream answering `body`.
fn upstream(
    calls: &AtomicUsize,
    body: &'static str,
) -> impl Fn() -> std::future::Ready<(Result<UpstreamReply, UpstreamFailure>, InvokeStats)> {
    move || {
        calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready((Ok(reply(body)), stats()))
    }
}

#[test]
fn key_holds_the_key_parameters_and_ignores_the_rest() {
    let c = config();
    let (stage, route) = (&c.stages["prod"], &c.routes[0]);
    let base = [
        ("method.request.path.user_id", "U:1"),
        ("method.request.querystring.k", "10"),
        ("method.request.querystring.inference_type", "deterministic"),
    ];
    let k1 = key(stage, route, GET, params(&base)).unwrap();
    let mut other_k = base;
    other_k[1].1 = "11";
    assert_ne!(k1, key(stage, route, GET, params(&other_k)).unwrap());
    let mut with_unlisted = base.to_vec();
    with_unlisted.push(("method.request.querystring.department", "B"));
    assert_eq!(k1, key(stage, route, GET, params(&with_unlisted)).unwrap());
    let mut with_tenant = base.to_vec();
    with_tenant.push(("method.request.header.x-tenant", "t1"));
    assert_ne!(k1, key(stage, route, GET, params(&with_tenant)).unwrap());
    // Another stage, same parameters: another entry.
    assert_ne!(
        k1,
        key(&c.stages["open"], route, GET, params(&base)).unwrap()
    );
    // A value cannot forge the boundary between two parameters.
    let forged = [
        ("method.request.path.user_id", "U:1;2:10"),
        ("method.request.querystring.inference_type", "deterministic"),
    ];
    assert_ne!(k1, key(stage, route, GET, params(&forged)).unwrap());
    // Another method on the same route (an `ANY` route): another entry.
    let post = KeyRequest {
        method: "POST",
        ..GET
    };
    assert_ne!(k1, key(stage, route, post, params(&base)).unwrap());
}

#[test]
fn key_holds_every_query_parameter_and_the_body_digest_when_asked() {
    let c = config();
    let (stage, route) = (&c.stages["prod"], &c.routes[2]);
    let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    let key_of = |query: &[(String, String)], body: &[u8], content_type: Option<&str>| {
        let req = KeyRequest {
            method: "GET",
            query,
            body,
        };
        let ct = content_type.map(str::to_owned);
        key(stage, route, req, move |p| match p {
            ParamSource::Header(h) if h == "content-type" => ct.clone(),
            _ => None,
        })
        .unwrap()
    };
    let q = pairs(&[("a", "1"), ("b", "2")]);
    let k1 = key_of(&q, b"", None);
    assert_eq!(k1, key_of(&q, b"", None));
    assert_ne!(k1, key_of(&pairs(&[("a", "1")]), b"", None));
    assert_ne!(k1, key_of(&pairs(&[("a", "1"), ("b", "3")]), b"", None));
    assert_ne!(k1, key_of(&pairs(&[("a", "1b"), ("", "2")]), b"", None));
    assert_ne!(k1, key_of(&q, b"{}", None));
    assert_ne!(k1, key_of(&q, b"", Some("text/plain")));
    // The body is held as a digest: the key does not grow with it.
    let big = key_of(&q, &[b'x'; 100_000], None);
    assert_eq!(big.len(), k1.len());
    assert_ne!(big, k1);
}

#[test]
fn key_scope_changes_with_the_stage_and_its_variables() {
    let with = |vars: &str| {
        let text = CONFIG.replacen("variables: { endpoint: ep }", vars, 1);
        let c = GatewayConfig::parse("g.yaml", &text, &|_| None).unwrap();
        let base = [("method.request.querystring.inference_type", "deterministic")];
        key(&c.stages["prod"], &c.routes[0], GET, params(&base)).unwrap()
    };
    let k1 = with("variables: { endpoint: ep }");
    assert_eq!(k1, with("variables: { endpoint: ep }"));
    assert_ne!(k1, with("variables: { endpoint: ep, model: v2 }"));
    assert_ne!(k1, with("variables: { endpoint: ep2 }"));
    // A value cannot move into a name.
    assert_ne!(with("variables: { a: bc }"), with("variables: { ab: c }"));
}

#[test]
fn conditions_keep_stochastic_requests_out() {
    let c = config();
    let (stage, route) = (&c.stages["prod"], &c.routes[0]);
    for policy in ["stochastic_plackett_luce", "Deterministic", ""] {
        let p = [
            ("method.request.path.user_id", "U:1"),
            ("method.request.querystring.inference_type", policy),
        ];
        assert_eq!(key(stage, route, GET, params(&p)), None, "{policy}");
    }
    assert_eq!(
        key(
            stage,
            route,
            GET,
            params(&[("method.request.path.user_id", "U:1")])
        ),
        None,
        "a missing condition parameter does not match"
    );
}

#[test]
fn which_routes_cache() {
    let c = config();
    assert_eq!(
        route_ttl(&c.stages["prod"], &c.routes[0]),
        Some(Duration::from_secs(300))
    );
    assert_eq!(route_ttl(&c.stages["prod"], &c.routes[1]), None, "POST");
    assert_eq!(
        route_ttl(&c.stages["prod"], &c.routes[2]),
        Some(Duration::from_secs(10))
    );
    assert_eq!(route_ttl(&c.stages["plain"], &c.routes[0]), None);
}

#[test]
fn config_errors_are_located() {
    let text = r#"
stages:
  prod:
    cache: { enabled: true, ttl_secs: 3601, max_entry_bytes: 0, colour: red }
  temp:
    cache: { enabled: true, max_bytes: 10, max_entry_bytes: 20 }
routes:
  - method: GET
    path: /a
    integration: { endpoint_name: ep }
    cache:
      key_parameters: [context.requestId, method.request.path.a, method.request.path.a]
      when: { stageVariables.x: [a], method.request.querystring.t: [] }
"#;
    let err = GatewayConfig::parse("g.yaml", text, &|_| None)
        .unwrap_err()
        .to_string();
    for expected in [
        "stages.prod.cache.colour: unknown field `colour`",
        "stages.temp.cache.max_entry_bytes: must not exceed max_bytes",
        "routes[0].cache.key_parameters[0]: `context.requestId`: use method.request.path.NAME",
        "routes[0].cache.key_parameters[2]: `method.request.path.a` is listed twice",
        "routes[0].cache.when.stageVariables.x: `stageVariables.x`: use method.request",
        "routes[0].cache.when.method.request.querystring.t: expected a non-empty list",
    ] {
        assert!(err.contains(expected), "missing `{expected}` in:\n{err}");
    }
    let text = text.replace("colour: red", "ttl_secs: 3601, max_entry_bytes: 0");
    let text = text.replace("ttl_secs: 3601, max_entry_bytes: 0, ", "");
    let err = GatewayConfig::parse("g.yaml", &text, &|_| None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("stages.prod.cache.ttl_secs: must be at most 3600"),
        "{err}"
    );
    assert!(
        err.contains("stages.prod.cache.max_entry_bytes: must be between 1 and"),
        "{err}"
    );
}

#[tokio::test]
async fn answers_expire_after_their_ttl_on_the_injected_clock() {
    let c = config();
    let (clock, limit) = manual();
    let cache = StageCache::new(&c.stages["prod"].cache, limit);
    let calls = AtomicUsize::new(0);
    let ttl = Duration::from_secs(300);
    let fetch = || cache.fetch("k".into(), ttl, Directive::Normal, upstream(&calls, "{}"));
    assert_eq!(fetch().await.status, CacheStatus::Miss);
    assert_eq!(fetch().await.status, CacheStatus::Hit);
    clock.advance(Duration::from_secs(299));
    assert_eq!(fetch().await.status, CacheStatus::Hit);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    clock.advance(Duration::from_secs(1));
    let refetched = fetch().await;
    assert_eq!(refetched.status, CacheStatus::Miss, "300 s old is stale");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(fetch().await.status, CacheStatus::Hit);
}

#[tokio::test]
async fn a_hit_carries_no_identifier_of_the_call_that_produced_it() {
    let c = config();
    let (_clock, limit) = manual();
    let cache = StageCache::new(&c.stages["prod"].cache, limit);
    let calls = AtomicUsize::new(0);
    let ttl = Duration::from_secs(300);
    let first = cache
        .fetch("k".into(), ttl, Directive::Normal, upstream(&calls, "{}"))
        .await;
    let own = first.result.unwrap();
    assert_eq!(own.header("x-amzn-requestid"), Some("upstream-req-1"));
    let hit = cache
        .fetch("k".into(), ttl, Directive::Normal, upstream(&calls, "{}"))
        .await;
    assert!(hit.stats.is_none());
    let hit = hit.result.unwrap();
    assert_eq!(hit.header("x-amzn-requestid"), None);
    assert_eq!(hit.header("x-amzn-sagemaker-custom-attributes"), None);
    assert_eq!(hit.header("content-type"), Some("application/json"));
}

#[tokio::test]
async fn failures_non_200_and_oversized_answers_are_not_stored() {
    let c = config();
    let (_clock, limit) = manual();
    let cache = StageCache::new(&c.stages["prod"].cache, limit);
    let ttl = Duration::from_secs(300);
    let calls = AtomicUsize::new(0);
    let failing = || {
        calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready((Err(failure()), stats()))
    };
    for _ in 0..2 {
        let f = cache
            .fetch("f".into(), ttl, Directive::Normal, failing)
            .await;
        assert!(f.result.is_err());
        assert_eq!(f.status, CacheStatus::Miss);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    let accepted = || {
        std::future::ready((
            Ok(UpstreamReply {
                status: 202,
                ..reply("{}")
            }),
            stats(),
        ))
    };
    cache
        .fetch("a".into(), ttl, Directive::Normal, accepted)
        .await;
    assert_eq!(cache.size().await.0, 0);

    // max_entry_bytes is 1000.
    let big: &'static str = Box::leak("x".repeat(1001).into_boxed_str());
    let calls = AtomicUsize::new(0);
    for _ in 0..2 {
        let f = cache
            .fetch("big".into(), ttl, Directive::Normal, upstream(&calls, big))
            .await;
        assert_eq!(f.result.unwrap().body.len(), 1001);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn the_byte_bound_evicts_the_least_recently_used() {
    let c = config();
    let (_clock, limit) = manual();
    // max_bytes 4000: each ~900-byte answer weighs about 1100 with key and overhead.
    let cache = StageCache::new(&c.stages["prod"].cache, limit);
    let ttl = Duration::from_secs(300);
    let body: &'static str = Box::leak("y".repeat(900).into_boxed_str());
    let calls = AtomicUsize::new(0);
    for i in 0..6 {
        cache
            .fetch(
                format!("k{i}"),
                ttl,
                Directive::Normal,
                upstream(&calls, body),
            )
            .await;
        cache.store.run_pending_tasks().await;
    }
    let (entries, bytes) = cache.size().await;
    assert!(bytes <= 4000, "{bytes} bytes held");
    assert!(entries < 6 && entries > 0, "{entries} entries");
    assert!(cache.counters.evicted_size.load(Ordering::Relaxed) >= 6 - entries);
    // The oldest is gone (a new call), the newest is served from the cache.
    let before = calls.load(Ordering::SeqCst);
    let newest = cache
        .fetch("k5".into(), ttl, Directive::Normal, upstream(&calls, body))
        .await;
    assert_eq!(newest.status, CacheStatus::Hit);
    let oldest = cache
        .fetch("k0".into(), ttl, Directive::Normal, upstream(&calls, body))
        .await;
    assert_eq!(oldest.status, CacheStatus::Miss);
    assert_eq!(calls.load(Ordering::SeqCst), before + 1);
}

/// An upstream that holds every call until `gate` opens; counts calls; the first `fail_first`
/// calls fail.
struct Gated {
    calls: AtomicUsize,
    gate: Notify,
    fail_first: usize,
}

impl Gated {
    async fn call(&self) -> (Result<UpstreamReply, UpstreamFailure>, InvokeStats) {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if n == 0 {
            self.gate.notified().await;
        }
        if n < self.fail_first {
            (Err(failure()), stats())
        } else {
            (Ok(reply("{\"shared\":true}")), stats())
        }
    }
}

async fn hundred_concurrent_misses(fail_first: usize) -> (Arc<Gated>, Vec<Fetched>) {
    let c = config();
    let (_clock, limit) = manual();
    let cache = Arc::new(StageCache::new(&c.stages["prod"].cache, limit));
    let gated = Arc::new(Gated {
        calls: AtomicUsize::new(0),
        gate: Notify::new(),
        fail_first,
    });
    let all = futures_util::future::join_all((0..100).map(|_| {
        let (cache, gated) = (cache.clone(), gated.clone());
        async move {
            cache
                .fetch(
                    "same".into(),
                    Duration::from_secs(300),
                    Directive::Normal,
                    || gated.call(),
                )
                .await
        }
    }));
    let release = async {
        // Every request has been polled up to its wait once the leader's call started and the
        // scheduler went round again.
        while gated.calls.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        gated.gate.notify_one();
    };
    let (fetched, ()) = tokio::join!(all, release);
    (gated, fetched)
}

#[tokio::test]
async fn concurrent_misses_make_one_call() {
    let (gated, fetched) = hundred_concurrent_misses(0).await;
    assert_eq!(gated.calls.load(Ordering::SeqCst), 1);
    let count = |s| fetched.iter().filter(|f| f.status == s).count();
    assert_eq!(count(CacheStatus::Miss), 1);
    assert_eq!(count(CacheStatus::Coalesced), 99);
    assert!(fetched.iter().all(|f| f.result.is_ok()));
}

#[tokio::test]
async fn a_failed_shared_call_is_not_stored_and_does_not_poison_its_waiters() {
    let (gated, fetched) = hundred_concurrent_misses(1).await;
    let failed: Vec<_> = fetched.iter().filter(|f| f.result.is_err()).collect();
    assert_eq!(failed.len(), 1, "only the leader gets the failure");
    assert_eq!(failed[0].status, CacheStatus::Miss);
    // The waiters made their own calls (moka returns the leader's error to them).
    assert!(gated.calls.load(Ordering::SeqCst) > 1);
    assert!(
        fetched
            .iter()
            .filter(|f| f.result.is_ok())
            .all(|f| f.stats.is_some())
    );
}

#[tokio::test]
async fn invalidation_refreshes_the_entry() {
    let c = config();
    let (_clock, limit) = manual();
    let cache = StageCache::new(&c.stages["prod"].cache, limit);
    let ttl = Duration::from_secs(300);
    let calls = AtomicUsize::new(0);
    cache
        .fetch("k".into(), ttl, Directive::Normal, upstream(&calls, "old"))
        .await;
    let refreshed = cache
        .fetch("k".into(), ttl, Directive::Refresh, upstream(&calls, "new"))
        .await;
    assert_eq!(refreshed.status, CacheStatus::Refresh);
    let hit = cache
        .fetch("k".into(), ttl, Directive::Normal, upstream(&calls, "x"))
        .await;
    assert_eq!(hit.status, CacheStatus::Hit);
    assert_eq!(&hit.result.unwrap().body[..], b"new");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

fn caller(key_id: &str, plan_id: &str) -> Caller {
    let text = format!(
        "usage_plans:\n  - id: {plan_id}\n    stages: [strict]\nkeys:\n  - id: {key_id}\n    name: n\n    enabled: true\n    usage_plans: [{plan_id}]\n    value: \"{key_id}-0123456789abcdefghij\"\n"
    );
    let ctx = crate::auth::KeysContext::new(["strict"], Vec::<String>::new());
    let set = crate::auth::parse_keys("keys.yaml", &text, &ctx).unwrap();
    set.authenticate(
        Some(format!("{key_id}-0123456789abcdefghij").as_bytes()),
        "strict",
    )
    .unwrap()
}

#[test]
fn who_may_invalidate() {
    let c = config();
    let max_age_0 = || ["no-store, max-age=0"].into_iter();
    let strict = &c.stages["strict"].cache;
    assert_eq!(
        directive(["max-age=60"].into_iter(), None, strict),
        Directive::Normal
    );
    assert_eq!(directive(max_age_0(), None, strict), Directive::Refuse);
    assert_eq!(
        directive(max_age_0(), Some(&caller("ops", "basic")), strict),
        Directive::Refresh
    );
    assert_eq!(
        directive(max_age_0(), Some(&caller("partner", "internal")), strict),
        Directive::Refresh
    );
    assert_eq!(
        directive(max_age_0(), Some(&caller("partner", "basic")), strict),
        Directive::Refuse
    );
    assert_eq!(
        directive(max_age_0(), None, &c.stages["prod"].cache),
        Directive::Ignored { warn: true }
    );
    assert_eq!(
        directive(max_age_0(), None, &c.stages["open"].cache),
        Directive::Refresh,
        "require_authorization: false lets anyone invalidate"
    );
}

#[test]
fn the_empty_body_digest_is_sha256_of_nothing() {
    use sha2::Digest;
    assert_eq!(
        super::EMPTY_SHA256,
        hex::encode(sha2::Sha256::digest(b"")),
        "a GET's key part is the digest of its (empty) body"
    );
}
