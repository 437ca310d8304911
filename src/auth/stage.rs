//! The `authenticate` stage, and the keys as the pipeline holds them: a [`KeysSnapshot`] pairs a
//! [`KeySet`] with the limiter state of its (key, plan) pairs, translated into the limits' own
//! vocabulary here ([`KeySet::plan_specs`]) so that no other module glues the two together.
//!
//! Input: the request head, the matched stage and route, the current keys. Output: the
//! [`Caller`] (or `None` on a route without `api_key_required`), recorded in the context.
//!
//! Security: every presented key that fails counts against the client address
//! ([`FailedAttemptLimiter`]); past the limit each gets the same 429, so an unknown key is not
//! told apart from a disabled or wrong-stage one.

use std::sync::Arc;

use crate::config::gateway::{Route, Stage};
use crate::context::{Authenticated, RequestContext};
use crate::error::GatewayError;
use crate::limits::{
    FailedAttemptLimiter, KeyLimiter, KeyLimiters, KeyPlanSpec, LimitClock, RouteThrottle,
};
use crate::message::{API_KEY_HEADER, GatewayRequest};

use super::{AuthError, Caller, KeySet};

/// Keys and the limiter state that belongs to them, swapped together on reload.
#[derive(Debug)]
pub struct KeysSnapshot {
    /// The keys.
    pub keys: Arc<KeySet>,
    /// Per (key, plan) limiter handles.
    pub limiters: KeyLimiters,
}

impl KeysSnapshot {
    /// The snapshot of `keys`, keeping the limiter state of `previous` for every (key, plan)
    /// whose settings did not change.
    pub fn new(
        keys: Arc<KeySet>,
        previous: &KeyLimiters,
        clock: &LimitClock,
    ) -> anyhow::Result<KeysSnapshot> {
        let limiters = keys.limiters(previous, clock)?;
        Ok(KeysSnapshot { keys, limiters })
    }

    /// The limiter of `caller`'s (key, plan), if it has one.
    pub fn limiter(&self, caller: Option<&Caller>) -> Option<&KeyLimiter> {
        caller
            .and_then(|c| self.limiters.get(&c.key.id, &c.plan.id))
            .map(Arc::as_ref)
    }
}

impl KeySet {
    /// The limit settings of every (key, plan) of this set, in the limits' vocabulary.
    pub fn plan_specs(&self) -> Vec<KeyPlanSpec> {
        let mut specs = Vec::new();
        for key in self.keys() {
            for plan in &key.usage_plans {
                let route_throttles = plan
                    .route_throttles
                    .iter()
                    .map(|(route, throttle)| RouteThrottle {
                        route: route.clone(),
                        throttle: *throttle,
                    })
                    .collect();
                specs.push(KeyPlanSpec {
                    key_id: key.id.clone(),
                    plan_id: plan.id.clone(),
                    throttle: plan.throttle,
                    route_throttles,
                    quota: plan.quota,
                });
            }
        }
        specs
    }

    /// Limiter handles for every (key, plan) of this set, reusing `previous` where settings are
    /// unchanged (fresh state with an empty `previous`, e.g. to read shared counters from outside
    /// a running gateway).
    pub fn limiters(
        &self,
        previous: &KeyLimiters,
        clock: &LimitClock,
    ) -> anyhow::Result<KeyLimiters> {
        let (limiters, report) = previous
            .reconcile(&self.plan_specs(), clock)
            .map_err(|errs| {
                anyhow::anyhow!(
                    errs.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            })?;
        tracing::info!(
            kept = report.kept,
            reset = report.reset,
            dropped = report.dropped,
            "limiter state reconciled with keys"
        );
        Ok(limiters)
    }
}

/// The authenticate stage: the caller of `route` on `stage`, from the request's `x-api-key`.
pub fn authenticate(
    keys: &KeySet,
    failed_attempts: &FailedAttemptLimiter,
    req: &GatewayRequest,
    stage: &Stage,
    route: &Route,
    ctx: &mut RequestContext,
) -> Result<Option<Caller>, GatewayError> {
    if !route.api_key_required {
        ctx.authenticated = Authenticated::PublicRoute;
        return Ok(None);
    }
    let mut presented = req.header_values(API_KEY_HEADER);
    let key = presented.next();
    if presented.next().is_some() {
        // Two keys in one request: refuse rather than guess which one the client meant.
        return Err(GatewayError::InvalidApiKey {
            reason: "more than one x-api-key header",
        });
    }
    match keys.authenticate(key.map(str::as_bytes), &stage.name) {
        Ok(caller) => {
            ctx.api_key_id = Some(caller.key.id.clone());
            ctx.authenticated = Authenticated::Key;
            Ok(Some(caller))
        }
        Err(err) => {
            ctx.api_key_id = err.key_id().map(str::to_owned);
            // Every presented key that fails counts, and past the limit each gets the same 429:
            // an unknown key is not told apart from a disabled or wrong-stage one.
            if err != AuthError::Missing && !failed_attempts.allow_failed_attempt(ctx.source_ip) {
                return Err(GatewayError::KeyAttemptsThrottled);
            }
            Err(GatewayError::InvalidApiKey {
                reason: match err {
                    AuthError::Missing => "missing",
                    AuthError::Unknown => "unknown key",
                    AuthError::Disabled { .. } => "disabled key",
                    AuthError::StageNotCovered { .. } => "no usage plan for this stage",
                },
            })
        }
    }
}
