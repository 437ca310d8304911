//! The circuit breaker: one per SageMaker endpoint, wrapped around the `invoke` stage.
//!
//! ```text
//! cache lookup ──hit──────────────────────────────────────────▶ respond   (never reaches here)
//!              └─miss─▶ breaker ──admitted──▶ invoke ──outcome──▶ breaker ──▶ respond
//!                          └──open──▶ 502 + Retry-After (no SageMaker call)
//! ```
//!
//! Input: the endpoint name of an [`Invocation`](crate::upstream::Invocation) (stage variables
//! already resolved) and the not-yet-started call. Output: the call's own result, or, while the
//! circuit is open, a [`GatewayError::CircuitOpen`] failure made without touching the network.
//!
//! States, per endpoint:
//! - **closed**: every call goes through; `consecutive_failures` failed calls in a row open it.
//! - **open**: calls fail fast for the cool-down: `cool_down` the first time, doubled each time a
//!   probe fails, capped at `max_cool_down`; a close resets it.
//! - **half-open**: the first call after the cool-down turns the circuit half-open and becomes a
//!   probe; at most `half_open_probes` probes are in flight at once, every other call fails fast.
//!   The first probe that succeeds closes the circuit; the first that fails re-opens it.
//!   Half-open is entered lazily by the next call, so an endpoint without traffic shows `open`
//!   until someone asks.
//!
//! What counts ([`outcome`]), once per client request *after* the SDK's retries (the breaker wraps
//! the whole `invoke`, so two attempts of one request are one outcome):
//! - failure: no answer (connection refused or reset, an unparsable answer), the route timeout,
//!   any 5xx from SageMaker (`InternalFailure`, `ServiceUnavailable`, 530
//!   `InternalDependencyException`), and a `ModelError` whose container answered 5xx or nothing.
//! - success: a 200, a model's 4xx (`ModelError` 424 with a 4xx `OriginalStatusCode`), and
//!   SageMaker's other 4xx (`ValidationError`, access denied). These are answers about *this
//!   request*: counting them would let one client with a bad input (or a body over SageMaker's
//!   6 MB) open the circuit for every other client, and the endpoint that sent them is alive.
//! - neither: throttling (`ThrottlingException`, `ModelNotReadyException`). The endpoint is up but
//!   at capacity; the SDK already backs off, and failing everything for a cool-down would turn a
//!   capacity limit into an outage. Throttling does not reset the count either.
//! - A call abandoned before it finished (the client went away, the handler was dropped) counts
//!   as nothing; a probe abandoned that way gives its slot back, so half-open never wedges.
//!
//! Results of calls admitted under an earlier state (a slow call that started while closed and
//! finishes after the circuit opened) are ignored: every transition starts a new generation.
//!
//! Invariants: state is a few integers per endpoint behind a `std::sync::Mutex` held for a
//! handful of instructions and never across `.await`; the map of breakers is built from the
//! configuration (at start and on a config reload) and never grows between, so its size is bounded
//! by the configured endpoint names, never by clients. Time comes from the injected
//! [`LimitClock`]; unit tests advance a manual clock.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use governor::clock::Clock;

use crate::config::GatewayConfig;
use crate::config::gateway::CircuitBreakerConfig;
use crate::error::GatewayError;
use crate::limits::LimitClock;
use crate::metrics::{BreakerMetrics, Metrics};
use crate::upstream::{InvokeStats, UpstreamFailure, UpstreamReply};

pub use crate::context::CIRCUIT_OPEN;
pub use crate::upstream::classify::{Outcome, outcome};

/// A call's result, as the `invoke` stage returns it.
pub type CallResult = (Result<UpstreamReply, UpstreamFailure>, InvokeStats);

/// Whether `failure` is the breaker's own refusal (no SageMaker call was made).
pub fn is_short_circuit(failure: &UpstreamFailure) -> bool {
    matches!(failure.error, GatewayError::CircuitOpen { .. })
}

/// The state of one endpoint's circuit, as the `circuit_breaker_state` gauge shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Calls go through.
    Closed,
    /// Calls fail fast.
    Open,
    /// Probes go through, other calls fail fast.
    HalfOpen,
}

impl CircuitState {
    /// The gauge value: 0 closed, 1 open, 2 half-open.
    pub fn gauge(self) -> i64 {
        match self {
            CircuitState::Closed => 0,
            CircuitState::Open => 1,
            CircuitState::HalfOpen => 2,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Closed { failures: u32 },
    Open { until: u64 },
    HalfOpen { in_flight: u32 },
}

#[derive(Debug)]
struct State {
    phase: Phase,
    /// Bumped by every transition; outcomes of calls admitted under another generation are stale.
    generation: u64,
    /// Failed probes since the circuit last closed: the cool-down is `cool_down × 2^reopened`.
    reopened: u32,
}

/// One endpoint's breaker.
struct Breaker {
    endpoint: String,
    settings: CircuitBreakerConfig,
    /// Short critical sections only (a few comparisons and stores); never held across `.await`.
    state: Mutex<State>,
    metrics: BreakerMetrics,
}

/// Permission for one call; report its outcome with [`Permit::finish`]. Dropped unfinished (the
/// call was abandoned), it counts as nothing and gives a probe slot back.
struct Permit<'a> {
    breaker: &'a Breaker,
    generation: u64,
    finished: bool,
}

impl Breaker {
    fn new(endpoint: &str, settings: CircuitBreakerConfig, metrics: BreakerMetrics) -> Self {
        metrics.state.set(CircuitState::Closed.gauge());
        Breaker {
            endpoint: endpoint.to_owned(),
            settings,
            state: Mutex::new(State {
                phase: Phase::Closed { failures: 0 },
                generation: 0,
                reopened: 0,
            }),
            metrics,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the few integers inconsistent in a way
        // worse than a stale count; keep serving rather than poison every later request.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Lets a call through, or says how long the circuit stays open.
    fn admit(&self, now: u64) -> Result<Permit<'_>, Duration> {
        let mut s = self.lock();
        match s.phase {
            Phase::Closed { .. } => {}
            Phase::Open { until } if now < until => {
                self.metrics.short_circuited.inc();
                return Err(Duration::from_nanos(until - now));
            }
            Phase::Open { .. } => {
                self.transition(&mut s, Phase::HalfOpen { in_flight: 1 });
            }
            Phase::HalfOpen { in_flight } if in_flight < self.settings.half_open_probes => {
                s.phase = Phase::HalfOpen {
                    in_flight: in_flight + 1,
                };
            }
            Phase::HalfOpen { .. } => {
                self.metrics.short_circuited.inc();
                return Err(Duration::ZERO);
            }
        }
        Ok(Permit {
            breaker: self,
            generation: s.generation,
            finished: false,
        })
    }

    /// Records the outcome of a call admitted under `generation`.
    fn record(&self, generation: u64, outcome: Outcome, now: u64) {
        let mut s = self.lock();
        if s.generation != generation {
            return;
        }
        match (s.phase, outcome) {
            (Phase::Closed { failures }, Outcome::Failure) => {
                let failures = failures.saturating_add(1);
                if failures >= self.settings.consecutive_failures {
                    self.open(&mut s, now);
                } else {
                    s.phase = Phase::Closed { failures };
                }
            }
            (Phase::Closed { .. }, Outcome::Success) => s.phase = Phase::Closed { failures: 0 },
            (Phase::HalfOpen { .. }, Outcome::Success) => {
                s.reopened = 0;
                self.transition(&mut s, Phase::Closed { failures: 0 });
            }
            (Phase::HalfOpen { .. }, Outcome::Failure) => {
                s.reopened = s.reopened.saturating_add(1);
                self.open(&mut s, now);
            }
            (Phase::HalfOpen { in_flight }, Outcome::Neutral) => {
                s.phase = Phase::HalfOpen {
                    in_flight: in_flight.saturating_sub(1),
                };
            }
            // Closed + neutral changes nothing; an open circuit admits no call of its generation.
            (Phase::Closed { .. }, Outcome::Neutral) | (Phase::Open { .. }, _) => {}
        }
    }

    fn open(&self, s: &mut State, now: u64) {
        let cool_down = self.cool_down(s.reopened);
        let until = now.saturating_add(u64::try_from(cool_down.as_nanos()).unwrap_or(u64::MAX));
        tracing::warn!(
            endpoint = %self.endpoint,
            cool_down_ms = cool_down.as_millis() as u64,
            failed_probes = s.reopened,
            "circuit breaker opened: failing fast"
        );
        self.transition(s, Phase::Open { until });
    }

    /// `cool_down × 2^reopened`, capped.
    fn cool_down(&self, reopened: u32) -> Duration {
        let factor = 1u32.checked_shl(reopened.min(31)).unwrap_or(u32::MAX);
        self.settings
            .cool_down
            .saturating_mul(factor)
            .min(self.settings.max_cool_down)
    }

    fn transition(&self, s: &mut State, to: Phase) {
        s.phase = to;
        s.generation = s.generation.wrapping_add(1);
        let state = match to {
            Phase::Closed { .. } => {
                tracing::info!(endpoint = %self.endpoint, "circuit breaker closed");
                self.metrics.to_closed.inc();
                CircuitState::Closed
            }
            Phase::Open { .. } => {
                self.metrics.to_open.inc();
                CircuitState::Open
            }
            Phase::HalfOpen { .. } => {
                tracing::info!(endpoint = %self.endpoint, "circuit breaker half-open: probing");
                self.metrics.to_half_open.inc();
                CircuitState::HalfOpen
            }
        };
        self.metrics.state.set(state.gauge());
    }

    fn state(&self) -> CircuitState {
        match self.lock().phase {
            Phase::Closed { .. } => CircuitState::Closed,
            Phase::Open { .. } => CircuitState::Open,
            Phase::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }
}

impl Permit<'_> {
    fn finish(mut self, outcome: Outcome, now: u64) {
        self.finished = true;
        self.breaker.record(self.generation, outcome, now);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.finished {
            // Abandoned mid-call: neutral, which frees a half-open probe slot.
            self.breaker.record(self.generation, Outcome::Neutral, 0);
        }
    }
}

/// The breakers of every endpoint that has one; endpoints without one are called directly.
pub struct Breakers {
    // Arc: a config reload shares an unchanged endpoint's breaker, state and all.
    by_endpoint: HashMap<String, Arc<Breaker>>,
    clock: LimitClock,
}

impl std::fmt::Debug for Breakers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Breakers")
            .field("endpoints", &self.by_endpoint.keys())
            .finish_non_exhaustive()
    }
}

impl Breakers {
    /// One breaker per endpoint name of every integration that enables one. The configuration
    /// guarantees that all routes reaching one endpoint agree on its settings.
    pub fn new(config: &GatewayConfig, metrics: &Metrics, clock: LimitClock) -> Self {
        Breakers::carried(config, metrics, clock, None)
    }

    /// [`Breakers::new`] for a reloaded `config`: an endpoint whose settings did not change keeps
    /// its breaker of `previous` (its state and counts); a new or changed one starts closed.
    pub fn carried(
        config: &GatewayConfig,
        metrics: &Metrics,
        clock: LimitClock,
        previous: Option<&Breakers>,
    ) -> Self {
        let mut by_endpoint = HashMap::new();
        for route in &config.routes {
            let Some(settings) = route.integration.circuit_breaker else {
                continue;
            };
            for (_, endpoint) in route.integration.endpoints() {
                by_endpoint.entry(endpoint.clone()).or_insert_with(|| {
                    previous
                        .and_then(|p| p.by_endpoint.get(endpoint))
                        .filter(|b| b.settings == settings)
                        .cloned()
                        .unwrap_or_else(|| {
                            Arc::new(Breaker::new(endpoint, settings, metrics.breaker(endpoint)))
                        })
                });
            }
        }
        Breakers { by_endpoint, clock }
    }

    fn now(&self) -> u64 {
        self.clock.now().as_u64()
    }

    /// Runs `call` (the SageMaker invocation for `endpoint`) through the endpoint's breaker: not
    /// started at all while the circuit is open, its outcome recorded otherwise.
    pub async fn call<F, T>(
        &self,
        endpoint: &str,
        call: F,
    ) -> (Result<T, UpstreamFailure>, InvokeStats)
    where
        F: Future<Output = (Result<T, UpstreamFailure>, InvokeStats)>,
    {
        let Some(breaker) = self.by_endpoint.get(endpoint) else {
            return call.await;
        };
        let permit = match breaker.admit(self.now()) {
            Ok(permit) => permit,
            Err(retry_after) => {
                let failure = UpstreamFailure {
                    error: GatewayError::CircuitOpen {
                        endpoint: endpoint.to_owned(),
                        retry_after,
                    },
                    reply: None,
                };
                return (Err(failure), InvokeStats::default());
            }
        };
        let (result, stats) = call.await;
        permit.finish(outcome(&result), self.now());
        (result, stats)
    }

    /// The state of `endpoint`'s circuit, `None` when it has no breaker.
    pub fn state(&self, endpoint: &str) -> Option<CircuitState> {
        self.by_endpoint.get(endpoint).map(|b| b.state())
    }
}

#[cfg(test)]
mod tests;
