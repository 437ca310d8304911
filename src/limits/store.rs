//! The admission decision and the seam for a shared state store.
//!
//! Input: an [`AdmitRequest`] (borrowed handles, resolved once per request without allocation).
//! Output: an [`Admission`]. The in-process [`MemoryStore`] decides synchronously on the handles'
//! own atomics; [`LimitStore`] is the contract a shared store (Redis, for exact limits across
//! replicas) will implement with one round trip per request, which is why its methods return
//! futures. The pipeline holds a [`Limiter`] and awaits it; the memory variant's future is
//! immediately ready and allocation-free. [`RedisStore`] (module [`super::redis`]) is the shared
//! implementation: one script call per request, the in-process state as its fallback.

use std::future::{Future, ready};
use std::sync::atomic::Ordering;

use super::bucket::Taken;
use super::{
    Admission, Bucket, KeyLimiter, LimitClock, QuotaCounter, QuotaUsage, RedisStore, StageLimiter,
    UsagePeriod,
};

/// The handles that apply to one request, in the order they are checked. Every field is
/// optional: an unthrottled stage, a route without overrides, or a request without an API key
/// (on a route that does not require one) simply skips those layers.
#[derive(Clone, Copy, Debug, Default)]
pub struct AdmitRequest<'a> {
    /// Layer 1: usage plan, per key, per route override.
    pub key_route: Option<&'a Bucket>,
    /// Layer 2: usage plan, per key.
    pub key_plan: Option<&'a Bucket>,
    /// Layer 3: stage, per route.
    pub stage_route: Option<&'a Bucket>,
    /// Layer 4: stage default.
    pub stage_default: Option<&'a Bucket>,
    /// The usage plan's quota for this key.
    pub quota: Option<&'a QuotaCounter>,
}

impl<'a> AdmitRequest<'a> {
    /// Resolves the layers for a caller (`key`: its (key, plan) handle, `None` without a key) on a
    /// route of `stage`. `method` is upper case; `resource_path` is the matched route's template.
    pub fn new(
        key: Option<&'a KeyLimiter>,
        stage: Option<&'a StageLimiter>,
        method: &str,
        resource_path: &str,
    ) -> Self {
        AdmitRequest {
            key_route: key.and_then(|k| k.route_bucket(method, resource_path)),
            key_plan: key.and_then(KeyLimiter::plan_bucket),
            stage_route: stage.and_then(|s| s.route_bucket(method, resource_path)),
            stage_default: stage.and_then(StageLimiter::default_bucket),
            quota: key.and_then(KeyLimiter::quota),
        }
    }

    /// Whether no layer and no quota applies (nothing to decide, nothing to count).
    pub fn is_empty(&self) -> bool {
        self.quota.is_none() && self.layers().iter().all(Option::is_none)
    }

    fn layers(&self) -> [Option<&'a Bucket>; 4] {
        [
            self.key_route,
            self.key_plan,
            self.stage_route,
            self.stage_default,
        ]
    }
}

/// Where limiter state lives. Implementations must never count a rejected request (neither in a
/// quota nor as a throttle token) and must check-and-count the quota atomically.
pub trait LimitStore: Send + Sync {
    /// Decides one request.
    fn admit(&self, req: &AdmitRequest<'_>) -> impl Future<Output = Admission> + Send;

    /// The quota usage of one (key, plan) in the current period; `None` without a quota.
    fn usage(&self, key: &KeyLimiter) -> impl Future<Output = Option<QuotaUsage>> + Send;
}

/// In-process state: the handles' atomics and counters. Exact for one replica.
#[derive(Clone, Debug)]
pub struct MemoryStore {
    clock: LimitClock,
}

impl MemoryStore {
    /// A store reading time from `clock` (the same clock the handles were built with).
    pub fn new(clock: LimitClock) -> Self {
        MemoryStore { clock }
    }

    /// The clock, for building handles.
    pub fn clock(&self) -> &LimitClock {
        &self.clock
    }

    /// The decision, synchronously.
    pub fn admit_now(&self, req: &AdmitRequest<'_>) -> Admission {
        let mut taken: [Option<(&Bucket, Taken)>; 4] = [None, None, None, None];
        for (slot, bucket) in taken.iter_mut().zip(req.layers()) {
            let Some(bucket) = bucket else { continue };
            match bucket.try_take() {
                Ok(t) => *slot = Some((bucket, t)),
                Err(retry_after) => {
                    tracing::debug!(bucket = bucket.name(), ?retry_after, "throttled");
                    refund_all(taken);
                    return Admission::Throttled { retry_after };
                }
            }
        }
        if let Some(quota) = req.quota
            && let Err(retry_after) = quota.try_consume(self.clock.wall_now())
        {
            tracing::debug!(quota = quota.name(), ?retry_after, "quota exceeded");
            refund_all(taken);
            return Admission::QuotaExceeded { retry_after };
        }
        Admission::Admitted
    }

    /// The usage read-out, synchronously.
    pub fn usage_now(&self, key: &KeyLimiter) -> Option<QuotaUsage> {
        key.usage(self.clock.wall_now())
    }
}

/// Hands back, latest first, the tokens a rejected request took from earlier layers (latest
/// first so each refund finds its own swap still on top when nothing else intervened).
fn refund_all(taken: [Option<(&Bucket, Taken)>; 4]) {
    for (bucket, t) in taken.into_iter().rev().flatten() {
        bucket.refund(t);
    }
}

impl LimitStore for MemoryStore {
    fn admit(&self, req: &AdmitRequest<'_>) -> impl Future<Output = Admission> + Send {
        ready(self.admit_now(req))
    }

    fn usage(&self, key: &KeyLimiter) -> impl Future<Output = Option<QuotaUsage>> + Send {
        ready(self.usage_now(key))
    }
}

/// The store the gateway runs with; one variant per backend so the pipeline stays non-generic
/// and the in-memory path needs no boxing.
#[derive(Clone, Debug)]
pub enum Limiter {
    /// In-process state.
    Memory(MemoryStore),
    /// Shared state in Redis / Valkey, with the in-process state as the `local` fallback.
    Redis(RedisStore),
}

/// The store's health, for `/healthz` detail and `/metrics`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreStatus {
    /// `memory` or `redis`.
    pub backend: &'static str,
    /// Whether decisions are shared (always true for `memory`, which has nothing to lose).
    pub up: bool,
    /// The failure policy (`local`, `deny`), for a shared store.
    pub on_store_failure: Option<&'static str>,
    /// Failed or timed-out store calls.
    pub errors: u64,
    /// Requests decided by the in-process limits while the store was down.
    pub fallback_local: u64,
    /// Requests refused with 503 while the store was down.
    pub denied: u64,
}

impl Limiter {
    /// The in-process store on `clock` (use [`LimitClock::system`] in production).
    pub fn memory(clock: LimitClock) -> Self {
        Limiter::Memory(MemoryStore::new(clock))
    }

    /// The clock handles must be built with.
    pub fn clock(&self) -> &LimitClock {
        match self {
            Limiter::Memory(m) => m.clock(),
            Limiter::Redis(r) => r.local().clock(),
        }
    }

    /// Backend and health.
    pub fn status(&self) -> StoreStatus {
        match self {
            Limiter::Memory(_) => StoreStatus {
                backend: "memory",
                up: true,
                on_store_failure: None,
                errors: 0,
                fallback_local: 0,
                denied: 0,
            },
            Limiter::Redis(r) => {
                let s = r.stats();
                StoreStatus {
                    backend: "redis",
                    up: r.is_up(),
                    on_store_failure: Some(r.settings().on_failure.name()),
                    errors: s.errors.load(Ordering::Relaxed),
                    fallback_local: s.fallback_local.load(Ordering::Relaxed),
                    denied: s.denied.load(Ordering::Relaxed),
                }
            }
        }
    }

    /// Quota usage of each handle in `limiters` that has a quota (index into `limiters`, usage),
    /// from the shared counters when the store is Redis. Fails when the store does not answer.
    pub async fn usage_report(
        &self,
        limiters: &[&KeyLimiter],
        which: UsagePeriod,
    ) -> Result<Vec<(usize, QuotaUsage)>, String> {
        match self {
            Limiter::Memory(m) => {
                let now = m.clock().wall_now();
                Ok(limiters
                    .iter()
                    .enumerate()
                    .filter_map(|(i, l)| {
                        let q = l.quota()?;
                        Some((
                            i,
                            match which {
                                UsagePeriod::Current => q.usage(now),
                                UsagePeriod::Previous => q.previous_usage(now),
                            },
                        ))
                    })
                    .collect())
            }
            Limiter::Redis(r) => r
                .usage(limiters, which)
                .await
                .map_err(|e| format!("limit store: {e}")),
        }
    }
}

impl LimitStore for Limiter {
    async fn admit(&self, req: &AdmitRequest<'_>) -> Admission {
        match self {
            Limiter::Memory(m) => m.admit_now(req),
            Limiter::Redis(r) => r.admit(req).await,
        }
    }

    async fn usage(&self, key: &KeyLimiter) -> Option<QuotaUsage> {
        match self {
            Limiter::Memory(m) => m.usage_now(key),
            Limiter::Redis(r) => r
                .usage(&[key], UsagePeriod::Current)
                .await
                .ok()
                .and_then(|rows| rows.into_iter().next().map(|(_, u)| u)),
        }
    }
}
