//! The per-request part of the gateway's state: the compiled gateway.yaml and what is built from
//! it per stage and endpoint (stage throttles, stage caches, circuit breakers). The [`Gateway`]
//! holds it behind an atomic pointer; a request loads it once and finishes on it, a config reload
//! ([`crate::app::reload`]) builds a new one beside it and swaps it in whole.
//!
//! What survives a reload ([`Live::next`]), so that a reload changes only what the file changed:
//! - a stage's throttle buckets, when the stage's `throttle` and `route_throttles` are unchanged
//!   (a changed throttle applies at once, with full buckets; the other stages keep their counts);
//! - a stage's cache and its entries, when the stage's cache settings (their key scope holds a
//!   digest of the stage variables) and the routes (templates, integrations, cache keys; see
//!   [`GatewayConfig::routes_digest`]) are unchanged: an entry is only ever served under the
//!   configuration that produced it (docs/security.md, cache scope); a stage's canary caches in
//!   the same store under its own scope, so a changed canary leaves the primary's entries in place
//!   and its own old entries unreachable (they age out);
//! - an endpoint's circuit breaker and its state, when the endpoint keeps the same settings;
//! - a route's open shadow calls, when its `shadow.max_concurrent` is unchanged.
//!
//! [`Gateway`]: super::Gateway

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::breaker::Breakers;
use crate::cache::StageCache;
use crate::config::GatewayConfig;
use crate::limits::{LimitClock, StageLimiter};
use crate::metrics::Metrics;
use crate::shadow::Shadows;

/// One loaded gateway.yaml and the state built from it; immutable once built.
pub struct Live {
    /// The compiled configuration.
    pub config: Arc<GatewayConfig>,
    /// Stage throttles by stage name.
    pub stage_limiters: BTreeMap<String, Arc<StageLimiter>>,
    /// Stage caches by stage name, for the stages that cache.
    pub caches: BTreeMap<String, Arc<StageCache>>,
    /// Circuit breakers of the endpoints that have one.
    pub breakers: Breakers,
    /// Shadow traffic of the routes that have it.
    pub shadows: Shadows,
    /// 0 for the configuration loaded at start, then one more per reload that swapped it.
    pub generation: u64,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("stages", &self.config.stages.keys())
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl Live {
    /// The state of the configuration loaded at start.
    pub fn first(
        config: Arc<GatewayConfig>,
        metrics: &Metrics,
        clock: &LimitClock,
    ) -> anyhow::Result<Live> {
        Live::build(config, None, metrics, clock)
    }

    /// The state of a reloaded `config`, keeping from `self` what the reload did not change
    /// (module docs).
    pub fn next(
        &self,
        config: Arc<GatewayConfig>,
        metrics: &Metrics,
        clock: &LimitClock,
    ) -> anyhow::Result<Live> {
        Live::build(config, Some(self), metrics, clock)
    }

    fn build(
        config: Arc<GatewayConfig>,
        previous: Option<&Live>,
        metrics: &Metrics,
        clock: &LimitClock,
    ) -> anyhow::Result<Live> {
        let old_stage = |name: &str| previous.and_then(|p| p.config.stages.get(name));
        let mut stage_limiters = BTreeMap::new();
        for stage in config.stages.values() {
            let kept = old_stage(&stage.name)
                .filter(|old| {
                    old.throttle == stage.throttle && old.route_throttles == stage.route_throttles
                })
                .and_then(|_| previous?.stage_limiters.get(&stage.name).cloned());
            let limiter = match kept {
                Some(limiter) => limiter,
                None => Arc::new(StageLimiter::new(
                    &stage.name,
                    stage.throttle,
                    &stage.route_throttles,
                    clock,
                )?),
            };
            stage_limiters.insert(stage.name.clone(), limiter);
        }
        let routes_unchanged =
            previous.is_some_and(|p| p.config.routes_digest == config.routes_digest);
        let mut caches = BTreeMap::new();
        for stage in config.stages.values().filter(|s| s.cache.enabled) {
            let kept = old_stage(&stage.name)
                .filter(|old| old.cache == stage.cache && routes_unchanged)
                .and_then(|_| previous?.caches.get(&stage.name).cloned());
            let cache =
                kept.unwrap_or_else(|| Arc::new(StageCache::new(&stage.cache, clock.clone())));
            caches.insert(stage.name.clone(), cache);
        }
        let breakers = Breakers::carried(
            &config,
            metrics,
            clock.clone(),
            previous.map(|p| &p.breakers),
        );
        let shadows = Shadows::carried(&config, metrics, previous.map(|p| &p.shadows));
        Ok(Live {
            shadows,
            config,
            stage_limiters,
            caches,
            breakers,
            generation: previous.map_or(0, |p| p.generation + 1),
        })
    }
}
