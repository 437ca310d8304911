//! The `cache lookup` stage: API Gateway's stage cache, in process, between "render request" and
//! "invoke".
//!
//! Input: the stage and route settings ([`crate::config::cache`]), the request's key parameters,
//! its `Cache-Control` header and caller, and a way to invoke SageMaker. Output: a [`Fetched`]
//! holding the upstream reply (from the cache, from another request's call, or from this request's
//! own call) and the [`CacheStatus`] for the `x-sagegate-cache` header and the access log. The
//! stage function the pipeline calls is [`lookup`] (`stage.rs`).
//!
//! What is stored: the *upstream reply* of a successful call (status 200, at most
//! `max_entry_bytes`), before integration responses and response templates, minus the headers that
//! identify the call that produced it (`x-amzn-requestid`, and the custom attributes SageMaker
//! echoes, which carry the producing request's id). Response templates, `$context.requestId`,
//! `x-amzn-RequestId` and `X-Amzn-Trace-Id` are therefore always the current request's.
//!
//! Key: the stage's scope (its name and a digest of its variables), the request's method, the
//! resource path, then every key part and `when` parameter as `name` then value, each
//! length-prefixed so no value can forge another key; the body is keyed by its SHA-256. The
//! configuration only loads when the key covers everything the route's templates and integration
//! read ([`crate::config::cache_key`]), so no request can store an answer under another request's
//! key. Requests that fail a `when` condition bypass the cache (no read, no write): the shipped
//! config keeps stochastic answers out, since a replayed stochastic ranking would corrupt the
//! logged propensities.
//!
//! Coalescing: concurrent misses of one key share one upstream call (moka's `try_get_with`). A call
//! that fails or is not cacheable is not stored; its waiters then make their own calls, so one
//! failure never becomes another request's answer.
//!
//! Time: freshness is judged on the injected [`LimitClock`] against the insert time stored in the
//! entry (tests advance a manual clock; nothing sleeps). moka's own per-entry expiry, set to the
//! same TTL on real time, only reclaims memory.
//!
//! Invariant: no lock is held across `.await`; moka's cache is internally concurrent.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use governor::clock::Clock;
use moka::Expiry;
use moka::notification::RemovalCause;
use moka::policy::EvictionPolicy;
use sha2::{Digest, Sha256};

use crate::auth::Caller;
use crate::config::cache::{
    KeyPart, StageCacheConfig, UnauthorizedStrategy, push_key_part as push_part,
};
use crate::config::gateway::{Route, Stage};
use crate::config::param::ParamSource;
use crate::limits::LimitClock;
use crate::upstream::{
    CLOSED_SESSION_ID, InvokeStats, NEW_SESSION_ID, UpstreamFailure, UpstreamReply,
};

pub use self::stage::lookup;

/// Response header telling the client how the cache served it.
pub const CACHE_STATUS_HEADER: &str = "x-sagegate-cache";
/// The warning sent with SUCCEED_WITH_RESPONSE_HEADER.
pub const UNAUTHORIZED_WARNING: &str =
    r#"199 sagegate "Cache-Control max-age=0 ignored: caller not authorized to invalidate""#;
/// Headers of a reply that identify the call that produced it; never stored.
const PER_CALL_HEADERS: &[&str] = &["x-amzn-requestid", "x-amzn-sagemaker-custom-attributes"];
/// Bytes charged per entry beyond key, body and headers (entry struct, moka bookkeeping).
const ENTRY_OVERHEAD: u64 = 128;

/// How the cache served a request (`cacheStatus` in the access log, `x-sagegate-cache` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// A fresh stored answer.
    Hit,
    /// No fresh answer: this request called SageMaker.
    Miss,
    /// No fresh answer, but another request's call for the same key was in flight: shared.
    Coalesced,
    /// An authorized `Cache-Control: max-age=0`: called SageMaker and replaced the entry.
    Refresh,
    /// The route or request does not use the cache.
    Bypass,
}

impl CacheStatus {
    /// The header and log value.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Coalesced => "coalesced",
            CacheStatus::Refresh => "refresh",
            CacheStatus::Bypass => "bypass",
        }
    }
}

/// The outcome of the lookup-and-invoke step.
#[derive(Debug)]
pub struct Fetched {
    /// The reply, or this request's own failure.
    pub result: Result<UpstreamReply, UpstreamFailure>,
    /// Stats of this request's own call; `None` when it made none.
    pub stats: Option<InvokeStats>,
    /// How the cache served it.
    pub status: CacheStatus,
}

/// What `Cache-Control: max-age=0` asks for, once the caller is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Directive {
    /// No invalidation asked.
    Normal,
    /// An allowed invalidation: fetch and replace.
    Refresh,
    /// Not allowed, served normally; `warn` adds the `Warning` header.
    Ignored {
        /// SUCCEED_WITH_RESPONSE_HEADER.
        warn: bool,
    },
    /// Not allowed: 403 (FAIL_WITH_403).
    Refuse,
}

/// Reads `Cache-Control` values and decides what an invalidation request gets.
pub fn directive<'a>(
    cache_control: impl Iterator<Item = &'a str>,
    caller: Option<&Caller>,
    config: &StageCacheConfig,
) -> Directive {
    let asks = cache_control
        .flat_map(|v| v.split(','))
        .any(|d| d.trim().eq_ignore_ascii_case("max-age=0"));
    if !asks {
        return Directive::Normal;
    }
    let allowed = !config.require_authorization
        || caller.is_some_and(|c| {
            config.invalidator_keys.contains(&c.key.id)
                || config.invalidator_plans.contains(&c.plan.id)
        });
    if allowed {
        return Directive::Refresh;
    }
    match config.unauthorized_strategy {
        UnauthorizedStrategy::FailWith403 => Directive::Refuse,
        UnauthorizedStrategy::SucceedWithResponseHeader => Directive::Ignored { warn: true },
        UnauthorizedStrategy::SucceedWithoutResponseHeader => Directive::Ignored { warn: false },
    }
}

/// The TTL a request of `route` on `stage` is cached for, `None` when the route does not cache.
pub fn route_ttl(stage: &Stage, route: &Route) -> Option<Duration> {
    route.cache.ttl_on(&stage.cache, &route.method)
}

/// What the key reads from a request besides its parameters.
#[derive(Debug, Clone, Copy)]
pub struct KeyRequest<'a> {
    /// The request's own method (an `ANY` route serves several; `$context.httpMethod` tells them
    /// apart).
    pub method: &'a str,
    /// Decoded query parameters, in request order (`method.request.querystring.*`).
    pub query: &'a [(String, String)],
    /// The body (`method.request.body`, hashed only when the route keys it and the request uses
    /// the cache).
    pub body: &'a [u8],
}

/// The cache key of a request, or `None` when a `when` condition fails (the request bypasses).
/// `value` reads a request parameter (header names lower case).
pub fn key(
    stage: &Stage,
    route: &Route,
    req: KeyRequest<'_>,
    value: impl Fn(&ParamSource) -> Option<String>,
) -> Option<String> {
    let mut key = String::with_capacity(128);
    push_part(&mut key, &stage.cache.scope);
    push_part(&mut key, req.method);
    push_part(&mut key, &route.path);
    // The parameters' names once (computed at load), then their values in the same order: the
    // `when` parameters the key parameters do not name (each read once: checked, then keyed),
    // then the key parameters.
    push_part(&mut key, &route.cache.labels);
    for (param, accepted) in &route.cache.when {
        let v = value(param)?;
        if !accepted.contains(&v) {
            return None;
        }
        if !route.cache.names(param) {
            push_part(&mut key, &v);
        }
    }
    for part in &route.cache.key_parameters {
        match part {
            KeyPart::Param(param) => push_value(&mut key, value(param)),
            KeyPart::AllQuery => {
                push_part(&mut key, itoa::Buffer::new().format(req.query.len()));
                for (name, v) in req.query {
                    push_part(&mut key, name);
                    push_part(&mut key, v);
                }
            }
            // A digest, never the body: a key's size does not grow with what the client sends.
            KeyPart::Body if req.body.is_empty() => push_part(&mut key, EMPTY_SHA256),
            KeyPart::Body => {
                let mut hex = [0u8; 64];
                let _ = hex::encode_to_slice(Sha256::digest(req.body), &mut hex);
                push_part(&mut key, std::str::from_utf8(&hex).unwrap_or_default());
            }
        }
    }
    Some(key)
}

/// The SHA-256 of no bytes, the body part of every GET's key.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn push_value(key: &mut String, value: Option<String>) {
    match value {
        Some(v) => push_part(key, &v),
        // Absent differs from empty.
        None => key.push('-'),
    }
}

/// One stored answer.
#[derive(Debug)]
struct Entry {
    reply: UpstreamReply,
    /// Insert time on the injected clock, nanoseconds.
    stored_at: u64,
    ttl: Duration,
    weight: u32,
}

/// Counters the metrics read.
#[derive(Debug, Default)]
pub struct CacheCounters {
    /// Entries removed to keep the byte bound.
    pub evicted_size: AtomicU64,
    /// Entries removed after their TTL.
    pub evicted_expired: AtomicU64,
}

struct EntryTtl;

impl Expiry<String, Arc<Entry>> for EntryTtl {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &Arc<Entry>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// A stage's cache.
pub struct StageCache {
    store: moka::future::Cache<String, Arc<Entry>>,
    max_entry_bytes: u64,
    clock: LimitClock,
    /// Eviction counts, shared with the eviction listener.
    pub counters: Arc<CacheCounters>,
}

impl std::fmt::Debug for StageCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StageCache")
            .field("entries", &self.store.entry_count())
            .field("bytes", &self.store.weighted_size())
            .finish_non_exhaustive()
    }
}

impl StageCache {
    /// An empty cache bounded by `config.max_bytes`, judging freshness on `clock`.
    pub fn new(config: &StageCacheConfig, clock: LimitClock) -> Self {
        let counters = Arc::new(CacheCounters::default());
        let listener = {
            let counters = counters.clone();
            move |_k: Arc<String>, _v: Arc<Entry>, cause: RemovalCause| match cause {
                RemovalCause::Size => {
                    counters.evicted_size.fetch_add(1, Ordering::Relaxed);
                }
                RemovalCause::Expired => {
                    counters.evicted_expired.fetch_add(1, Ordering::Relaxed);
                }
                RemovalCause::Explicit | RemovalCause::Replaced => {}
            }
        };
        let store = moka::future::Cache::builder()
            .max_capacity(config.max_bytes)
            .weigher(|_k: &String, v: &Arc<Entry>| v.weight)
            // LRU rather than TinyLFU: a new answer is always admitted, the oldest unused leaves.
            .eviction_policy(EvictionPolicy::lru())
            .expire_after(EntryTtl)
            .eviction_listener(listener)
            .build();
        StageCache {
            store,
            max_entry_bytes: config.max_entry_bytes,
            clock,
            counters,
        }
    }

    /// Entries and bytes held (after applying pending evictions).
    pub async fn size(&self) -> (u64, u64) {
        self.store.run_pending_tasks().await;
        (self.store.entry_count(), self.store.weighted_size())
    }

    fn now(&self) -> u64 {
        self.clock.now().as_u64()
    }

    fn fresh(&self, entry: &Entry) -> bool {
        let age = Duration::from_nanos(self.now().saturating_sub(entry.stored_at));
        age < entry.ttl
    }

    /// A storable copy of `reply`, `None` when it must not be cached (not a 200, or too large).
    fn storable(&self, key: &str, reply: &UpstreamReply, ttl: Duration) -> Option<Arc<Entry>> {
        // A reply that opened or closed a SageMaker session answers one caller only.
        let session = [NEW_SESSION_ID, CLOSED_SESSION_ID]
            .iter()
            .any(|h| reply.header(h).is_some());
        if reply.status != 200 || session {
            return None;
        }
        let headers: Vec<(String, String)> = reply
            .headers
            .iter()
            .filter(|(n, _)| !PER_CALL_HEADERS.contains(&n.as_str()))
            .cloned()
            .collect();
        let header_bytes: usize = headers.iter().map(|(n, v)| n.len() + v.len()).sum();
        let answer_bytes = (reply.body.len() + header_bytes) as u64;
        if answer_bytes > self.max_entry_bytes {
            return None;
        }
        let weight = u32::try_from(answer_bytes + key.len() as u64 + ENTRY_OVERHEAD).ok()?;
        Some(Arc::new(Entry {
            reply: UpstreamReply {
                status: reply.status,
                body: reply.body.clone(),
                headers,
            },
            stored_at: self.now(),
            ttl,
            weight,
        }))
    }

    /// Serves `key` from the cache or through `invoke`, per `directive` (never `Refuse` here).
    pub async fn fetch<F, Fut>(
        &self,
        key: String,
        ttl: Duration,
        directive: Directive,
        invoke: F,
    ) -> Fetched
    where
        F: Fn() -> Fut,
        Fut: Future<Output = (Result<UpstreamReply, UpstreamFailure>, InvokeStats)>,
    {
        if directive == Directive::Refresh {
            let (result, stats) = invoke().await;
            if let Ok(reply) = &result
                && let Some(entry) = self.storable(&key, reply, ttl)
            {
                self.store.insert(key, entry).await;
            }
            return Fetched {
                result,
                stats: Some(stats),
                status: CacheStatus::Refresh,
            };
        }
        if let Some(entry) = self.store.get(&key).await {
            if self.fresh(&entry) {
                return Fetched {
                    result: Ok(entry.reply.clone()),
                    stats: None,
                    status: CacheStatus::Hit,
                };
            }
            self.store.invalidate(&key).await;
        }
        // Miss: one call per key; the leader's own outcome is kept whole in `led`.
        let mut led = None;
        let shared = self
            .store
            .try_get_with(key.clone(), async {
                let (result, stats) = invoke().await;
                let entry = match &result {
                    Ok(reply) => self.storable(&key, reply, ttl),
                    Err(_) => None,
                };
                led = Some((result, stats));
                entry.ok_or(NotStored)
            })
            .await;
        if let Some((result, stats)) = led {
            return Fetched {
                result,
                stats: Some(stats),
                status: CacheStatus::Miss,
            };
        }
        match shared {
            Ok(entry) => Fetched {
                result: Ok(entry.reply.clone()),
                stats: None,
                status: CacheStatus::Coalesced,
            },
            // The shared call failed or was not cacheable: this request makes its own.
            Err(_) => {
                let (result, stats) = invoke().await;
                Fetched {
                    result,
                    stats: Some(stats),
                    status: CacheStatus::Miss,
                }
            }
        }
    }
}

/// The leader's answer was not stored (failure, non-200, too large).
#[derive(Debug)]
struct NotStored;

mod stage;
#[cfg(test)]
mod tests;
