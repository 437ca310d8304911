//! Limiter handles: per (key, plan) from the keys file, per stage from gateway.yaml, and the
//! reload rule that decides which per-key state survives.
//!
//! Input: the limit settings of each key's usage plan ([`KeyPlanSpec`]) and of each stage.
//! Output: `Arc`'d handles holding the buckets and quota counter, built once, so a request only
//! borrows them (no per-request names or map lookups). Invariant: on reload,
//! [`KeyLimiters::reconcile`] reuses the handle of a (key, plan) whose settings are equal, so its
//! tokens and quota count carry on; a changed plan gets a fresh handle (new limits apply at once);
//! a removed pair is dropped once in-flight requests release it.
//!
//! With the shared store the state is not in the handle but under the handle's store names,
//! which depend on ids only (`t:k:<key>:<plan>`, `t:kr:<key>:<plan>:<route>`, `t:s:<stage>`,
//! `t:sr:<stage>:<route>`, `q:<plan>:<key>`, ids escaped by `key_part`): a changed plan's new
//! limits apply to the count and tokens so far, a key deleted and added back within a period
//! resumes its count, and a deleted key's state simply expires.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::route::RouteKey;

use super::{Bucket, LimitClock, QuotaCounter, QuotaSpec, QuotaUsage, SpecError, ThrottleSpec};

/// A throttle override for one route: API Gateway's `"{resourcePath}/{METHOD}"` entries.
#[derive(Clone, Debug, PartialEq)]
pub struct RouteThrottle {
    /// The route: method as the router reports it, upper case (`GET`), and resource path
    /// template as configured (`/recommended-movies/{user_id}`).
    pub route: RouteKey,
    /// The bucket's settings.
    pub throttle: ThrottleSpec,
}

/// The limit settings that apply to one API key through one usage plan.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyPlanSpec {
    /// API key id (never the key value).
    pub key_id: String,
    /// Usage plan id.
    pub plan_id: String,
    /// Per-key throttle of the plan (layer 2), if any.
    pub throttle: Option<ThrottleSpec>,
    /// Per-key, per-route overrides of the plan (layer 1).
    pub route_throttles: Vec<RouteThrottle>,
    /// The plan's quota, if any.
    pub quota: Option<QuotaSpec>,
}

struct RouteBucket {
    route: RouteKey,
    bucket: Bucket,
}

fn route_buckets(
    prefix: &str,
    store_prefix: &str,
    routes: &[RouteThrottle],
    clock: &LimitClock,
) -> Result<Vec<RouteBucket>, SpecError> {
    routes
        .iter()
        .map(|route| {
            let name = format!("{prefix}/route:{}", route.route);
            let store_key = format!("{store_prefix}:{}", route.route);
            Ok(RouteBucket {
                route: route.route.clone(),
                bucket: Bucket::new(name, route.throttle, clock)?.with_store_key(store_key),
            })
        })
        .collect()
}

/// An id as one component of a shared-store key: `%` and `:` escaped, so `a:b` + `c` and `a` +
/// `b:c` never name the same counter.
pub(crate) fn key_part(id: &str) -> std::borrow::Cow<'_, str> {
    if id.contains(['%', ':']) {
        std::borrow::Cow::Owned(id.replace('%', "%25").replace(':', "%3A"))
    } else {
        std::borrow::Cow::Borrowed(id)
    }
}

fn find_route<'a>(
    routes: &'a [RouteBucket],
    method: &str,
    resource_path: &str,
) -> Option<&'a Bucket> {
    // A handful of entries per plan or stage: a linear scan beats hashing and allocates nothing.
    routes
        .iter()
        .find(|r| r.route.is(method, resource_path))
        .map(|r| &r.bucket)
}

/// The limiter state of one (key, plan): layer-1 and layer-2 buckets and the quota counter.
pub struct KeyLimiter {
    spec: KeyPlanSpec,
    plan: Option<Bucket>,
    routes: Vec<RouteBucket>,
    quota: Option<QuotaCounter>,
}

impl KeyLimiter {
    /// Fresh state (full buckets, zero usage) for `spec`, created at `clock`'s current time.
    pub fn new(spec: KeyPlanSpec, clock: &LimitClock) -> Result<Self, SpecError> {
        let prefix = format!("key:{}/plan:{}", spec.key_id, spec.plan_id);
        // Shared-store names: throttle cells per (key, plan), the quota per (plan, key); the
        // period is appended by the store.
        let (key, plan) = (key_part(&spec.key_id), key_part(&spec.plan_id));
        let plan_bucket = spec
            .throttle
            .map(|t| {
                Bucket::new(prefix.as_str(), t, clock)
                    .map(|b| b.with_store_key(format!("t:k:{key}:{plan}")))
            })
            .transpose()?;
        let routes = route_buckets(
            &prefix,
            &format!("t:kr:{key}:{plan}"),
            &spec.route_throttles,
            clock,
        )?;
        let quota = spec.quota.map(|q| {
            QuotaCounter::new(format!("{prefix}/quota"), q, clock.wall_now())
                .with_store_key(format!("q:{plan}:{key}"))
        });
        let plan = plan_bucket;
        Ok(KeyLimiter {
            spec,
            plan,
            routes,
            quota,
        })
    }

    /// The settings this state was built for.
    pub fn spec(&self) -> &KeyPlanSpec {
        &self.spec
    }

    /// Layer 1: the plan's override for this route, if any.
    pub fn route_bucket(&self, method: &str, resource_path: &str) -> Option<&Bucket> {
        find_route(&self.routes, method, resource_path)
    }

    /// Layer 2: the plan's per-key bucket, if the plan throttles.
    pub fn plan_bucket(&self) -> Option<&Bucket> {
        self.plan.as_ref()
    }

    /// The quota counter, if the plan has a quota.
    pub fn quota(&self) -> Option<&QuotaCounter> {
        self.quota.as_ref()
    }

    /// Quota usage in the period containing `now`; `None` when the plan has no quota.
    pub fn usage(&self, now: DateTime<Utc>) -> Option<QuotaUsage> {
        self.quota.as_ref().map(|q| q.usage(now))
    }
}

impl std::fmt::Debug for KeyLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyLimiter")
            .field("key_id", &self.spec.key_id)
            .field("plan_id", &self.spec.plan_id)
            .finish_non_exhaustive()
    }
}

/// The stage-wide buckets (layers 3 and 4), shared by every caller of a stage. Built from
/// gateway.yaml; a reload keeps it while the stage's throttles are unchanged
/// (the pipeline's `Live`).
pub struct StageLimiter {
    stage: String,
    default: Option<Bucket>,
    routes: Vec<RouteBucket>,
}

impl StageLimiter {
    /// Buckets for `stage`: `default` applies to every request of the stage (layer 4), `routes`
    /// to the named routes (layer 3).
    pub fn new(
        stage: &str,
        default: Option<ThrottleSpec>,
        routes: &[RouteThrottle],
        clock: &LimitClock,
    ) -> Result<Self, SpecError> {
        let prefix = format!("stage:{stage}");
        let part = key_part(stage);
        Ok(StageLimiter {
            stage: stage.to_owned(),
            default: default
                .map(|t| {
                    Bucket::new(prefix.as_str(), t, clock)
                        .map(|b| b.with_store_key(format!("t:s:{part}")))
                })
                .transpose()?,
            routes: route_buckets(&prefix, &format!("t:sr:{part}"), routes, clock)?,
        })
    }

    /// The stage name.
    pub fn stage(&self) -> &str {
        &self.stage
    }

    /// Layer 3: the stage's bucket for this route, if configured.
    pub fn route_bucket(&self, method: &str, resource_path: &str) -> Option<&Bucket> {
        find_route(&self.routes, method, resource_path)
    }

    /// Layer 4: the stage's default bucket, if configured.
    pub fn default_bucket(&self) -> Option<&Bucket> {
        self.default.as_ref()
    }
}

impl std::fmt::Debug for StageLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StageLimiter")
            .field("stage", &self.stage)
            .finish_non_exhaustive()
    }
}

/// What a reconcile did, for the reload log line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// (key, plan) pairs whose state carried over.
    pub kept: usize,
    /// Pairs with fresh state: new, or settings changed.
    pub reset: usize,
    /// Pairs of the old snapshot that are gone.
    pub dropped: usize,
}

/// An immutable set of per-(key, plan) limiter handles: one keys snapshot's worth. The keys
/// snapshot that the auth stage swaps atomically holds one of these (or the `Arc`s from it).
#[derive(Debug, Default)]
pub struct KeyLimiters {
    /// key id → the key's plans (a key has at most ~10 plans; scanned linearly).
    by_key: HashMap<String, Vec<Arc<KeyLimiter>>>,
}

impl KeyLimiters {
    /// Builds the next snapshot from `specs`, reusing this snapshot's handle for every (key, plan)
    /// whose spec is unchanged. Reports all bad specs at once; on error nothing changes (the
    /// caller keeps the current snapshot in force).
    pub fn reconcile(
        &self,
        specs: &[KeyPlanSpec],
        clock: &LimitClock,
    ) -> Result<(KeyLimiters, ReconcileReport), Vec<SpecError>> {
        let mut next: HashMap<String, Vec<Arc<KeyLimiter>>> = HashMap::new();
        let mut report = ReconcileReport::default();
        let mut errors = Vec::new();
        for spec in specs {
            let plans = match next.entry(spec.key_id.clone()) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => e.insert(Vec::new()),
            };
            if plans.iter().any(|l| l.spec.plan_id == spec.plan_id) {
                errors.push(SpecError::DuplicateKeyPlan {
                    key_id: spec.key_id.clone(),
                    plan_id: spec.plan_id.clone(),
                });
                continue;
            }
            match self.get(&spec.key_id, &spec.plan_id) {
                Some(old) if old.spec == *spec => {
                    report.kept += 1;
                    plans.push(Arc::clone(old));
                }
                _ => match KeyLimiter::new(spec.clone(), clock) {
                    Ok(fresh) => {
                        report.reset += 1;
                        plans.push(Arc::new(fresh));
                    }
                    Err(e) => errors.push(e),
                },
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        report.dropped = self
            .iter()
            .filter(|old| {
                !next
                    .get(&old.spec.key_id)
                    .is_some_and(|plans| plans.iter().any(|l| l.spec.plan_id == old.spec.plan_id))
            })
            .count();
        Ok((KeyLimiters { by_key: next }, report))
    }

    /// The handle for (key, plan).
    pub fn get(&self, key_id: &str, plan_id: &str) -> Option<&Arc<KeyLimiter>> {
        self.by_key
            .get(key_id)?
            .iter()
            .find(|l| l.spec.plan_id == plan_id)
    }

    /// Every handle, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<KeyLimiter>> {
        self.by_key.values().flatten()
    }

    /// Number of (key, plan) handles.
    pub fn len(&self) -> usize {
        self.by_key.values().map(Vec::len).sum()
    }

    /// Whether there are no handles.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Quota usage of every (key, plan) that has a quota, sorted by key id then plan id.
    pub fn usage(&self, now: DateTime<Utc>) -> Vec<(String, String, QuotaUsage)> {
        let mut out: Vec<_> = self
            .iter()
            .filter_map(|l| {
                l.usage(now)
                    .map(|u| (l.spec.key_id.clone(), l.spec.plan_id.clone(), u))
            })
            .collect();
        out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        out
    }
}
