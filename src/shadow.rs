//! Shadow traffic: a sampled copy of a route's SageMaker call sent to a second endpoint
//! (`routes[i].shadow`, [`crate::config::shadow`]), its answer discarded.
//!
//! Place in the pipeline: right after `invoke`, once this request's own call has returned (the
//! client's answer is decided); the copy runs on a background task and the request goes on to
//! `respond` at once. Input: the route's compiled [`Shadow`], the stage, the [`Invocation`] the
//! primary got. Output: nothing the client sees; `sagegate_shadow_calls_total` and
//! `sagegate_shadow_duration_seconds` by shadow endpoint ([`crate::metrics`]).
//!
//! Which calls are copied: only a call this request made itself. A request refused before invoke
//! (route, key, throttle, quota, body, validation, template), a cache hit, a request that waited
//! for another's call (coalesced), and a request the primary's open circuit refused make no call,
//! so they are never shadowed: there is no primary answer to compare the shadow's with. A
//! streaming route cannot have a shadow (`shadow` on one is refused at load).
//!
//! The copy: the primary's body, content type, accept, custom attributes, inference id, target
//! model, explanations and trace id, signed for the shadow endpoint; the headers that name
//! something of the primary endpoint (target variant, inference component, container hostname,
//! session id) are not copied, and `shadow.target_variant` sets the variant. Its time limit is
//! `shadow.timeout_ms` (default: the route's), the client's retries rule applies inside it.
//!
//! Invariants:
//! - The client's answer never waits for, depends on, or is billed to the shadow: no throttle or
//!   quota token is taken, the primary's circuit breaker never sees the shadow's outcome (the
//!   shadow has no breaker: a sick shadow endpoint fills its `max_concurrent` slots and the copies
//!   past them are dropped, which bounds its cost as a breaker would).
//! - At most `max_concurrent` copies of a route are open at once; one more is dropped and
//!   counted, never queued. After a reload that changes `max_concurrent`, copies started under
//!   the old bound finish under it (for their time limit at most).
//! - Memory: the copy holds the body (shared with the primary's, but kept past the client's
//!   answer), charged to the gateway's budget on an account of its own, and only while the total
//!   stays within [`MEMORY_SHARE`] of the limit: past it the copy is dropped, so shadows never push
//!   a client request into a 503. The shadow's answer (at most
//!   [`crate::upstream::MAX_ANSWER_BYTES`], read by the client and dropped at once) is not
//!   charged: at most `max_concurrent` of them per route exist at once.
//! - At shutdown, copies still open are abandoned (they are not part of the drain).
//! - With no shadow configured the pipeline pays one `Option` check per request.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::GatewayConfig;
use crate::config::gateway::Route;
use crate::config::shadow::Shadow;
use crate::memory::MemoryBudget;
use crate::metrics::{Metrics, ShadowMetrics};
use crate::upstream::{Invocation, SageMaker, UpstreamFailure};

/// Share of the memory budget shadow copies may take the total to.
pub const MEMORY_SHARE: f64 = 0.5;

/// Index of an outcome in [`ShadowMetrics::calls`] ([`crate::metrics::SHADOW_OUTCOMES`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok = 0,
    ModelError = 1,
    Error = 2,
    Timeout = 3,
    Dropped = 4,
}

impl Outcome {
    fn of(result: &Result<crate::upstream::UpstreamReply, UpstreamFailure>) -> Outcome {
        match result {
            Ok(_) => Outcome::Ok,
            Err(failure) => match failure.error_type() {
                "ModelError" => Outcome::ModelError,
                "Timeout" => Outcome::Timeout,
                _ => Outcome::Error,
            },
        }
    }
}

/// The shadow state of every route that has a shadow: its slots and its endpoints' metrics.
#[derive(Debug, Default)]
pub struct Shadows {
    /// By [`Route::key`].
    lanes: HashMap<String, Arc<Lane>>,
}

/// One route's shadow: its open-call bound and its endpoints' metrics.
#[derive(Debug)]
struct Lane {
    max_concurrent: usize,
    slots: Arc<Semaphore>,
    /// By shadow endpoint name.
    metrics: HashMap<String, ShadowMetrics>,
}

impl Shadows {
    /// The shadow state of `config`'s routes, keeping from `previous` the slots of a route whose
    /// `max_concurrent` did not change (the copies it has open still count).
    pub fn carried(config: &GatewayConfig, metrics: &Metrics, previous: Option<&Shadows>) -> Self {
        let mut lanes = HashMap::new();
        for route in &config.routes {
            let Some(shadow) = &route.shadow else {
                continue;
            };
            let key = route.key();
            let slots = previous
                .and_then(|p| p.lanes.get(&key))
                .filter(|old| old.max_concurrent == shadow.max_concurrent)
                .map_or_else(
                    || Arc::new(Semaphore::new(shadow.max_concurrent)),
                    |old| old.slots.clone(),
                );
            let metrics = shadow
                .endpoint_by_stage
                .values()
                .map(|endpoint| (endpoint.clone(), metrics.shadow(endpoint)))
                .collect();
            let lane = Lane {
                max_concurrent: shadow.max_concurrent,
                slots,
                metrics,
            };
            lanes.insert(key, Arc::new(lane));
        }
        Shadows { lanes }
    }

    /// Open shadow calls of `route` now (0 without a shadow).
    pub fn open(&self, route: &Route) -> usize {
        self.lanes
            .get(&route.key())
            .map_or(0, |l| l.max_concurrent - l.slots.available_permits())
    }
}

/// Copies `primary` (this request's own call on `route` in `stage`) to the route's shadow
/// endpoint when sampled, on a background task; returns at once.
pub fn mirror(
    shadows: &Shadows,
    route: &Route,
    stage: &str,
    primary: &Invocation,
    upstream: &SageMaker,
    memory: &MemoryBudget,
) {
    let Some(shadow) = &route.shadow else {
        return;
    };
    if !sampled(shadow.percent) {
        return;
    }
    let (Some(lane), Some(endpoint)) = (
        shadows.lanes.get(&route.key()),
        shadow.endpoint_by_stage.get(stage),
    ) else {
        return;
    };
    let Some(metrics) = lane.metrics.get(endpoint) else {
        return;
    };
    let Some(slot) = admit(lane, memory, primary.body.len()) else {
        metrics.calls[Outcome::Dropped as usize].inc();
        tracing::debug!(endpoint = %endpoint, "shadow call dropped");
        return;
    };
    let inv = copy(primary, shadow, endpoint);
    let upstream = upstream.clone();
    let metrics = metrics.clone();
    tokio::spawn(async move {
        let (result, stats) = upstream.invoke(&inv).await;
        let outcome = Outcome::of(&result);
        metrics.calls[outcome as usize].inc();
        metrics.latency.observe(stats.latency.as_secs_f64());
        if let Err(failure) = &result {
            tracing::debug!(error_type = failure.error_type(), "shadow call failed");
        }
        drop(slot);
    });
}

/// What a shadow call holds until it ends: its slot and its memory.
struct Slot {
    _permit: OwnedSemaphorePermit,
    _memory: crate::memory::Held,
}

/// A slot and the body's memory, or `None` when either is spent.
fn admit(lane: &Lane, memory: &MemoryBudget, body: usize) -> Option<Slot> {
    let permit = lane.slots.clone().try_acquire_owned().ok()?;
    let account = memory.account();
    account.try_grow_within_share(body, MEMORY_SHARE).ok()?;
    Some(Slot {
        _permit: permit,
        _memory: account,
    })
}

/// Whether a call is copied at `percent` (0 to 100).
fn sampled(percent: f64) -> bool {
    percent >= 100.0 || (percent > 0.0 && rand::random::<f64>() * 100.0 < percent)
}

/// The shadow's invocation: the primary's, for `endpoint` (module docs: what is copied).
fn copy(primary: &Invocation, shadow: &Shadow, endpoint: &str) -> Invocation {
    Invocation {
        endpoint_name: endpoint.to_owned(),
        target_variant: shadow.target_variant.clone(),
        inference_component_name: None,
        target_container_hostname: None,
        session_id: None,
        timeout: shadow.timeout,
        ..primary.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_bounds_are_exact() {
        assert!((0..1000).all(|_| sampled(100.0)));
        assert!((0..1000).all(|_| !sampled(0.0)));
        let hits = (0..10_000).filter(|_| sampled(10.0)).count();
        // Binomial(10000, 0.1): mean 1000, sd 30; six sd either side.
        assert!((820..=1180).contains(&hits), "{hits}");
    }
}
