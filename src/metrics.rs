//! Prometheus metrics: recorded from the finished [`RequestContext`] (the last pipeline step,
//! beside the access log), exposed in text format on the admin listener only.
//!
//! Families (all prefixed `sagegate_`):
//! - `requests_total`, `request_duration_seconds` by `stage`, `route` (resource path template) and
//!   `status_class` (`2xx`…`5xx`); `integration_duration_seconds` by `stage`, `route` and
//!   `variant` (the production variant that answered, `x-Amzn-Invoked-Production-Variant`; `""`
//!   when SageMaker named none, e.g. a timeout);
//! - `canary_requests_total` by `stage`, `canary` (`true`, `false`) and `status_class`, and
//!   `canary_request_duration_seconds` by `stage` and `canary`, for the requests of a stage that
//!   has a canary, once assigned ([`crate::canary`]): a rollout's split, errors and latency;
//! - `throttled_total`, `quota_rejected_total` by `key_id` (the id from the keys file, `""` without
//!   a key; never a key or its hash);
//! - `cache_lookups_total` by `stage`, `result` (`hit`, `miss`, `coalesced`, `refresh`, `bypass`),
//!   `cache_evictions_total` by `stage`, `cause` (`size`, `expired`), `cache_bytes`, `cache_entries`;
//! - `upstream_errors_total` by `error_type` (SageMaker's error type, from a fixed list; a stream
//!   SageMaker fails or leaves idle after its first part counts too, see docs/streaming.md)
//!   (a request refused by the circuit breaker made no call and is not counted here);
//! - `shadow_calls_total` by `endpoint` (a route's shadow endpoint) and `outcome` (`ok`,
//!   `model_error`, `error`, `timeout`, `dropped`), `shadow_duration_seconds` by `endpoint`, for
//!   the configured shadow endpoints ([`crate::shadow`]); never in the primary's families;
//! - `circuit_breaker_state` by `endpoint` (0 closed, 1 open, 2 half-open),
//!   `circuit_breaker_transitions_total` by `endpoint`, `state` (the state entered),
//!   `circuit_breaker_short_circuited_total` by `endpoint` (requests failed fast), for the endpoints
//!   that have a breaker ([`crate::breaker`]), updated by the breaker as it changes;
//! - `memory_held_bytes` (bytes the requests in flight hold: bodies, rendered templates, SageMaker's
//!   answers), `memory_budget_bytes` (its limit), `memory_slots_taken` (requests past the key check
//!   in flight), `memory_slots` (their limit, `server.max_requests_in_flight`), `memory_refusals_total`
//!   (charges and slots refused, each a 503; see [`crate::memory`]);
//! - `stream_first_byte_seconds` (request arrival to the first part handed to the connection),
//!   `stream_bytes_total`, `stream_parts_total`, `stream_ends_total` by `outcome` (`complete`,
//!   `upstream_error`, `timeout`, `client_gone`, `shutdown`), each also by `stage` and `route`, and
//!   `stream_open` (streams being relayed), for streaming routes ([`crate::relay`]);
//! - `in_flight_requests`; `key_reloads_total` by `result` (`ok`, `failed`); `build_info` by `version`;
//! - `config_reloads_total` by `result` (`ok`, `failed`: the file does not load, `refused`: it
//!   changes a restart-only field or drops a stage or route the keys use), `config_generation`
//!   (0 at start, +1 per reload that swapped the configuration; see [`crate::app::reload`]),
//!   `config_info` by `sha256` (one series, 1: the SHA-256 of the gateway.yaml text in force, so
//!   tasks can be compared);
//! - `otel_spans_total` by `result` (`exported`, `queue_full`, `export_failed`), only with OTLP on;
//! - `limit_store_up` (0 while the shared store is down), `limit_store_errors_total`,
//!   `limit_store_fallback_total` by `decision` (`local`, `deny`).
//!
//! Cardinality is bounded by the configuration: stage and route labels only take configured values
//! (`""` for requests that matched none), key ids come from the keys file, error types from a list,
//! endpoint names from the configuration (after stage variables), variants from SageMaker's answers
//! but at most [`MAX_VARIANTS`] distinct SageMaker variant names (a value that is not a variant name,
//! or one past the bound, counts as `other`).
//! Hot path: the per-(stage, route) children are created at start (and on a config reload) and
//! found by two map lookups on borrowed strings; a call that names its variant adds a read lock on
//! the variants seen and the histogram family's own lookup. Nothing is allocated per request after
//! a variant's first call.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use arc_swap::ArcSwap;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::config::GatewayConfig;
use crate::context::{Limited, RequestContext};

/// Latency buckets in seconds: 1 ms to 60 s (the longest route timeout).
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 29.0, 60.0,
];
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
/// Distinct `variant` label values kept (SageMaker allows 10 production variants per endpoint).
pub const MAX_VARIANTS: usize = 32;
/// The `variant` label of a variant past [`MAX_VARIANTS`] or not a SageMaker variant name.
const OTHER_VARIANT: &str = "other";

/// Time to first byte buckets in seconds: 1 ms to 15 minutes (the longest default stream).
const FIRST_BYTE_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 29.0, 60.0,
    300.0, 900.0,
];

/// The streaming families (labels `stage`, `route` take configured values only).
struct StreamFamilies {
    first_byte: HistogramVec,
    bytes: IntCounterVec,
    parts: IntCounterVec,
    ends: IntCounterVec,
}

/// The children of one (stage, route).
struct RouteMetrics {
    requests: [IntCounter; 5],
    latency: [Histogram; 5],
    integration: Histogram,
}

/// stage → route path → children.
type RouteChildren = HashMap<String, HashMap<String, RouteMetrics>>;

/// The families with a child per configured (stage, route).
struct RouteFamilies {
    requests: IntCounterVec,
    latency: HistogramVec,
    integration: HistogramVec,
}

impl RouteFamilies {
    /// The children of every (stage, route) of `config`, and of `("", "")`.
    fn children(&self, config: &GatewayConfig) -> RouteChildren {
        let mut routes = RouteChildren::new();
        let mut add = |stage: &str, route: &str| {
            let children = RouteMetrics {
                requests: STATUS_CLASSES
                    .map(|c| self.requests.with_label_values(&[stage, route, c])),
                latency: STATUS_CLASSES.map(|c| self.latency.with_label_values(&[stage, route, c])),
                integration: self.integration.with_label_values(&[stage, route, ""]),
            };
            routes
                .entry(stage.to_owned())
                .or_default()
                .insert(route.to_owned(), children);
        };
        add("", "");
        for stage in config.stages.keys() {
            add(stage, "");
            for route in &config.routes {
                add(stage, &route.path);
            }
        }
        routes
    }
}

/// All metrics of one gateway.
pub struct Metrics {
    /// Streams being relayed now.
    pub stream_open: IntGauge,
    streams: StreamFamilies,
    registry: Registry,
    /// stage → route path → children; `""` keys for requests that matched no stage or route.
    /// Replaced whole when a config reload brings stages or routes ([`Metrics::add_routes`]).
    routes: ArcSwap<RouteChildren>,
    route_families: RouteFamilies,
    /// The variant names seen so far (at most [`MAX_VARIANTS`]).
    variants: RwLock<HashSet<String>>,
    canary_requests: IntCounterVec,
    canary_latency: HistogramVec,
    throttled: IntCounterVec,
    quota_rejected: IntCounterVec,
    cache_lookups: IntCounterVec,
    cache_evictions: IntCounterVec,
    cache_bytes: IntGaugeVec,
    cache_entries: IntGaugeVec,
    upstream_errors: IntCounterVec,
    /// Requests being handled now.
    pub in_flight: IntGauge,
    key_reloads: IntCounterVec,
    config_reloads: IntCounterVec,
    config_generation: IntGauge,
    config_info: IntGaugeVec,
    otel_spans: IntCounterVec,
    breaker_state: IntGaugeVec,
    breaker_transitions: IntCounterVec,
    breaker_short_circuited: IntCounterVec,
    limit_store_up: IntGauge,
    limit_store_errors: IntCounter,
    limit_store_fallback: IntCounterVec,
    memory_held: IntGauge,
    memory_budget: IntGauge,
    memory_slots_taken: IntGauge,
    memory_slots: IntGauge,
    memory_refusals: IntCounter,
    shadow_calls: IntCounterVec,
    shadow_latency: HistogramVec,
}

/// The metric children of one shadow endpoint (see [`crate::shadow`]).
#[derive(Debug, Clone)]
pub struct ShadowMetrics {
    /// Shadow calls by outcome, in the order of [`SHADOW_OUTCOMES`].
    pub calls: [IntCounter; 5],
    /// Duration of the shadow calls made (retries included).
    pub latency: Histogram,
}

/// The `outcome` label values of `shadow_calls_total`.
pub const SHADOW_OUTCOMES: [&str; 5] = ["ok", "model_error", "error", "timeout", "dropped"];

/// The metric children of one endpoint's circuit breaker (see [`crate::breaker`]).
#[derive(Debug, Clone)]
pub struct BreakerMetrics {
    /// 0 closed, 1 open, 2 half-open.
    pub state: IntGauge,
    /// Transitions into closed.
    pub to_closed: IntCounter,
    /// Transitions into open.
    pub to_open: IntCounter,
    /// Transitions into half-open.
    pub to_half_open: IntCounter,
    /// Requests failed fast without a SageMaker call.
    pub short_circuited: IntCounter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| unreachable_metric(name, e));
    let _ = registry.register(Box::new(c.clone()));
    c
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| unreachable_metric(name, e));
    let _ = registry.register(Box::new(g.clone()));
    g
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).unwrap_or_else(|e| unreachable_metric(name, e));
    let _ = registry.register(Box::new(g.clone()));
    g
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).unwrap_or_else(|e| unreachable_metric(name, e));
    let _ = registry.register(Box::new(c.clone()));
    c
}

fn histogram_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let h = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
        labels,
    )
    .unwrap_or_else(|e| unreachable_metric(name, e));
    let _ = registry.register(Box::new(h.clone()));
    h
}

/// Metric names and labels are constants of this file; the constructors only fail on invalid ones.
#[allow(clippy::panic)]
fn unreachable_metric<T>(name: &str, e: prometheus::Error) -> T {
    panic!("metric {name} is malformed: {e}")
}

impl Metrics {
    /// Registers every family, with the children of every configured (stage, route).
    pub fn new(config: &GatewayConfig) -> Self {
        let registry = Registry::new_custom(Some("sagegate".to_owned()), None)
            .unwrap_or_else(|e| unreachable_metric("registry", e));
        let requests = counter_vec(
            &registry,
            "requests_total",
            "Requests answered, by stage, route and status class.",
            &["stage", "route", "status_class"],
        );
        let latency = histogram_vec(
            &registry,
            "request_duration_seconds",
            "Time from request arrival to response, by stage, route and status class.",
            &["stage", "route", "status_class"],
        );
        let integration = histogram_vec(
            &registry,
            "integration_duration_seconds",
            "Duration of SageMaker calls (retries included), by stage, route and the production variant that answered.",
            &["stage", "route", "variant"],
        );
        let route_families = RouteFamilies {
            requests,
            latency,
            integration,
        };
        let routes = ArcSwap::from_pointee(route_families.children(config));
        let cache_lookups = counter_vec(
            &registry,
            "cache_lookups_total",
            "Stage cache outcomes: hit, miss, coalesced (waited for another request's call), refresh, bypass.",
            &["stage", "result"],
        );
        let cache_evictions = counter_vec(
            &registry,
            "cache_evictions_total",
            "Entries removed from a stage cache, by cause (size, expired).",
            &["stage", "cause"],
        );
        let cache_bytes = gauge_vec(
            &registry,
            "cache_bytes",
            "Bytes held by a stage cache.",
            &["stage"],
        );
        let cache_entries = gauge_vec(
            &registry,
            "cache_entries",
            "Entries held by a stage cache.",
            &["stage"],
        );
        for (name, stage) in &config.stages {
            if stage.cache.enabled {
                for result in ["hit", "miss", "coalesced", "refresh", "bypass"] {
                    cache_lookups.with_label_values(&[name, result]);
                }
                for cause in ["size", "expired"] {
                    cache_evictions.with_label_values(&[name, cause]);
                }
                cache_bytes.with_label_values(&[name]);
                cache_entries.with_label_values(&[name]);
            }
        }
        let stream_open = gauge(&registry, "stream_open", "Streams being relayed.");
        let route_outcome = &["stage", "route", "outcome"];
        let streams = StreamFamilies {
            first_byte: {
                let name = "stream_first_byte_seconds";
                let h = HistogramVec::new(
                    HistogramOpts::new(
                        name,
                        "Time from request arrival to the first streamed part handed to the connection, by stage and route.",
                    )
                    .buckets(FIRST_BYTE_BUCKETS.to_vec()),
                    &["stage", "route"],
                )
                .unwrap_or_else(|e| unreachable_metric(name, e));
                let _ = registry.register(Box::new(h.clone()));
                h
            },
            bytes: counter_vec(
                &registry,
                "stream_bytes_total",
                "Streamed body bytes handed to the connection, by stage and route.",
                &["stage", "route"],
            ),
            parts: counter_vec(
                &registry,
                "stream_parts_total",
                "SageMaker parts relayed, by stage and route.",
                &["stage", "route"],
            ),
            ends: counter_vec(
                &registry,
                "stream_ends_total",
                "Streams ended, by stage, route and outcome (complete, upstream_error, timeout, client_gone, shutdown).",
                route_outcome,
            ),
        };
        let in_flight = IntGauge::new("in_flight_requests", "Requests being handled.")
            .unwrap_or_else(|e| unreachable_metric("in_flight_requests", e));
        let _ = registry.register(Box::new(in_flight.clone()));
        let build = gauge_vec(
            &registry,
            "build_info",
            "Always 1; the version label says which build runs.",
            &["version"],
        );
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let key_reloads = counter_vec(
            &registry,
            "key_reloads_total",
            "Reloads of the keys source, by result (ok, failed).",
            &["result"],
        );
        key_reloads.with_label_values(&["ok"]);
        key_reloads.with_label_values(&["failed"]);
        let config_reloads = counter_vec(
            &registry,
            "config_reloads_total",
            "Reloads of gateway.yaml, by result (ok, failed, refused).",
            &["result"],
        );
        for result in ["ok", "failed", "refused"] {
            config_reloads.with_label_values(&[result]);
        }
        let otel_spans = counter_vec(
            &registry,
            "otel_spans_total",
            "Trace spans by fate: exported, queue_full (dropped at the request), export_failed (dropped after a failed export).",
            &["result"],
        );
        // The family only shows when OTLP export is on.
        if config.telemetry.otlp.is_some() {
            for result in ["exported", "queue_full", "export_failed"] {
                otel_spans.with_label_values(&[result]);
            }
        }
        let breaker_state = gauge_vec(
            &registry,
            "circuit_breaker_state",
            "Circuit breaker state per SageMaker endpoint: 0 closed, 1 open, 2 half-open.",
            &["endpoint"],
        );
        let breaker_transitions = counter_vec(
            &registry,
            "circuit_breaker_transitions_total",
            "Circuit breaker transitions per SageMaker endpoint, by the state entered (closed, open, half_open).",
            &["endpoint", "state"],
        );
        let breaker_short_circuited = counter_vec(
            &registry,
            "circuit_breaker_short_circuited_total",
            "Requests failed fast by an open circuit breaker (no SageMaker call), per endpoint.",
            &["endpoint"],
        );
        let limit_store_up = IntGauge::new(
            "limit_store_up",
            "1 while limit decisions are shared (always 1 for the memory store), 0 while the shared store is down.",
        )
        .unwrap_or_else(|e| unreachable_metric("limit_store_up", e));
        let _ = registry.register(Box::new(limit_store_up.clone()));
        limit_store_up.set(1);
        let limit_store_errors = IntCounter::new(
            "limit_store_errors_total",
            "Calls to the shared limit store that failed or timed out.",
        )
        .unwrap_or_else(|e| unreachable_metric("limit_store_errors_total", e));
        let _ = registry.register(Box::new(limit_store_errors.clone()));
        let limit_store_fallback = counter_vec(
            &registry,
            "limit_store_fallback_total",
            "Requests decided without the shared store (it was down), by decision: local (in-process limits) or deny (503).",
            &["decision"],
        );
        limit_store_fallback.with_label_values(&["local"]);
        limit_store_fallback.with_label_values(&["deny"]);
        Metrics {
            stream_open,
            streams,
            otel_spans,
            breaker_state,
            breaker_transitions,
            breaker_short_circuited,
            routes,
            route_families,
            canary_requests: counter_vec(
                &registry,
                "canary_requests_total",
                "Requests of the stages that have a canary, by stage, canary (true, false) and status class.",
                &["stage", "canary", "status_class"],
            ),
            canary_latency: histogram_vec(
                &registry,
                "canary_request_duration_seconds",
                "Time from request arrival to response on the stages that have a canary, by stage and canary (true, false).",
                &["stage", "canary"],
            ),
            throttled: counter_vec(
                &registry,
                "throttled_total",
                "Requests refused by a throttle (plan, route or stage), by key id.",
                &["key_id"],
            ),
            quota_rejected: counter_vec(
                &registry,
                "quota_rejected_total",
                "Requests refused because the usage plan's quota is used up, by key id.",
                &["key_id"],
            ),
            variants: RwLock::new(HashSet::new()),
            cache_lookups,
            cache_evictions,
            cache_bytes,
            cache_entries,
            upstream_errors: counter_vec(
                &registry,
                "upstream_errors_total",
                "Failed SageMaker calls, by SageMaker error type.",
                &["error_type"],
            ),
            in_flight,
            key_reloads,
            config_reloads,
            config_generation: gauge(
                &registry,
                "config_generation",
                "Generation of the gateway.yaml in force: 0 as loaded at start, +1 per reload.",
            ),
            config_info: gauge_vec(
                &registry,
                "config_info",
                "The gateway.yaml in force, by the SHA-256 of its text (one series, always 1): tasks that disagree run different files.",
                &["sha256"],
            ),
            limit_store_up,
            limit_store_errors,
            limit_store_fallback,
            memory_held: gauge(
                &registry,
                "memory_held_bytes",
                "Bytes held by the requests in flight (bodies, rendered templates, SageMaker's answers).",
            ),
            memory_budget: gauge(
                &registry,
                "memory_budget_bytes",
                "The in-flight memory budget (server.memory_budget_bytes).",
            ),
            memory_slots_taken: gauge(
                &registry,
                "memory_slots_taken",
                "Requests past the key check in flight (each holds its connection state).",
            ),
            memory_slots: gauge(
                &registry,
                "memory_slots",
                "Requests that may be in flight past the key check (server.max_requests_in_flight).",
            ),
            memory_refusals: counter(
                &registry,
                "memory_refusals_total",
                "Requests refused with 503 because the in-flight memory budget was spent or every slot was taken.",
            ),
            shadow_calls: counter_vec(
                &registry,
                "shadow_calls_total",
                "Shadow copies of SageMaker calls, by shadow endpoint and outcome: ok, model_error, error, timeout, dropped (over max_concurrent or the memory share, never sent).",
                &["endpoint", "outcome"],
            ),
            shadow_latency: histogram_vec(
                &registry,
                "shadow_duration_seconds",
                "Duration of shadow calls made (retries included), by shadow endpoint.",
                &["endpoint"],
            ),
            registry,
        }
    }

    /// The children of `endpoint`'s circuit breaker (created at zero, closed).
    pub fn breaker(&self, endpoint: &str) -> BreakerMetrics {
        let to = |state: &str| {
            self.breaker_transitions
                .with_label_values(&[endpoint, state])
        };
        BreakerMetrics {
            state: self.breaker_state.with_label_values(&[endpoint]),
            to_closed: to("closed"),
            to_open: to("open"),
            to_half_open: to("half_open"),
            short_circuited: self.breaker_short_circuited.with_label_values(&[endpoint]),
        }
    }

    /// The children of shadow endpoint `endpoint` (created at zero).
    pub fn shadow(&self, endpoint: &str) -> ShadowMetrics {
        ShadowMetrics {
            calls: SHADOW_OUTCOMES.map(|o| self.shadow_calls.with_label_values(&[endpoint, o])),
            latency: self.shadow_latency.with_label_values(&[endpoint]),
        }
    }

    /// The `sagegate_otel_spans_total` counter of `result` (for the OTLP export task).
    pub fn otel_spans(&self, result: &str) -> IntCounter {
        self.otel_spans.with_label_values(&[result])
    }

    /// Creates the children of the (stage, route) pairs of a reloaded `config`; the series of
    /// pairs it no longer has stay, with their counts.
    pub fn add_routes(&self, config: &GatewayConfig) {
        self.routes
            .store(Arc::new(self.route_families.children(config)));
    }

    /// Records one finished request.
    pub fn observe(&self, ctx: &RequestContext, status: u16, elapsed: Duration) {
        let stage = ctx.stage.as_deref().unwrap_or("");
        let routes = self.routes.load();
        let stage_routes = routes
            .get_key_value(stage)
            .or_else(|| routes.get_key_value(""));
        let children = stage_routes.and_then(|(stage, r)| {
            r.get_key_value(ctx.resource_path.as_deref().unwrap_or(""))
                .or_else(|| r.get_key_value(""))
                .map(|(route, m)| (stage, route, m))
        });
        if let Some((stage, route, m)) = children {
            let class = usize::from(status / 100).clamp(1, 5) - 1;
            m.requests[class].inc();
            m.latency[class].observe(elapsed.as_secs_f64());
            if let Some(d) = ctx.integration_latency {
                let variant = ctx
                    .invoked_variant
                    .as_deref()
                    .map(|v| self.variant_label(v));
                match variant {
                    None => m.integration.observe(d.as_secs_f64()),
                    Some(v) => {
                        if let Ok(h) = self
                            .route_families
                            .integration
                            .get_metric_with_label_values(&[stage, route, v])
                        {
                            h.observe(d.as_secs_f64());
                        }
                    }
                }
            }
        }
        if let Some(canary) = ctx.canary {
            let canary = if canary { "true" } else { "false" };
            let class = STATUS_CLASSES[usize::from(status / 100).clamp(1, 5) - 1];
            self.inc(&self.canary_requests, &[stage, canary, class]);
            if let Ok(h) = self
                .canary_latency
                .get_metric_with_label_values(&[stage, canary])
            {
                h.observe(elapsed.as_secs_f64());
            }
        }
        let key_id = ctx.api_key_id.as_deref().unwrap_or("");
        match ctx.limited {
            Some(Limited::Throttled) => self.inc(&self.throttled, &[key_id]),
            Some(Limited::Quota) => self.inc(&self.quota_rejected, &[key_id]),
            None => {}
        }
        if let Some(result) = ctx.cache {
            self.inc(&self.cache_lookups, &[stage, result]);
        }
        // A short-circuited request made no SageMaker call; the breaker counts it per endpoint.
        if let Some(error_type) = ctx
            .upstream_error
            .filter(|t| *t != crate::context::CIRCUIT_OPEN)
        {
            self.inc(&self.upstream_errors, &[error_type]);
        }
    }

    /// Records a finished stream (the context's [`crate::context::StreamRecord`]); stage and route
    /// are configured values (a stream only starts on a matched route).
    pub fn observe_stream(&self, ctx: &RequestContext) {
        let Some(record) = &ctx.stream else { return };
        let Some(outcome) = record.outcome else {
            return;
        };
        let labels = [
            ctx.stage.as_deref().unwrap_or(""),
            ctx.resource_path.as_deref().unwrap_or(""),
        ];
        let f = &self.streams;
        if let Some(d) = record.first_byte
            && let Ok(h) = f.first_byte.get_metric_with_label_values(&labels)
        {
            h.observe(d.as_secs_f64());
        }
        if let Ok(c) = f.bytes.get_metric_with_label_values(&labels) {
            c.inc_by(record.bytes);
        }
        if let Ok(c) = f.parts.get_metric_with_label_values(&labels) {
            c.inc_by(record.parts);
        }
        self.inc(&f.ends, &[labels[0], labels[1], outcome]);
    }

    /// `variant` as a label value: itself when it is a SageMaker variant name and one of the first
    /// [`MAX_VARIANTS`] seen, else `other`.
    fn variant_label<'a>(&self, variant: &'a str) -> &'a str {
        if !crate::message::is_sagemaker_name(variant, 63) {
            return OTHER_VARIANT;
        }
        if self
            .variants
            .read()
            .is_ok_and(|seen| seen.contains(variant))
        {
            return variant;
        }
        match self.variants.write() {
            Ok(mut seen) if seen.len() < MAX_VARIANTS => {
                seen.insert(variant.to_owned());
                variant
            }
            Ok(seen) if seen.contains(variant) => variant,
            _ => OTHER_VARIANT,
        }
    }

    fn inc(&self, vec: &IntCounterVec, labels: &[&str]) {
        if let Ok(c) = vec.get_metric_with_label_values(labels) {
            c.inc();
        }
    }

    /// Sets a stage cache's size and eviction counts (read at scrape time).
    pub fn set_cache(&self, stage: &str, entries: u64, bytes: u64, evicted: (u64, u64)) {
        let as_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        if let Ok(g) = self.cache_entries.get_metric_with_label_values(&[stage]) {
            g.set(as_i64(entries));
        }
        if let Ok(g) = self.cache_bytes.get_metric_with_label_values(&[stage]) {
            g.set(as_i64(bytes));
        }
        for (cause, total) in [("size", evicted.0), ("expired", evicted.1)] {
            if let Ok(c) = self
                .cache_evictions
                .get_metric_with_label_values(&[stage, cause])
            {
                c.inc_by(total.saturating_sub(c.get()));
            }
        }
    }

    /// Counts one gateway.yaml reload by `result` (`ok`, `failed`, `refused`) and shows the
    /// generation now in force.
    pub fn config_reloaded(&self, result: &str, generation: u64) {
        if let Ok(c) = self.config_reloads.get_metric_with_label_values(&[result]) {
            c.inc();
        }
        self.config_generation
            .set(i64::try_from(generation).unwrap_or(i64::MAX));
    }

    /// Names the gateway.yaml in force by the hex SHA-256 of its text (at start and after each
    /// reload): the one `config_info` series.
    pub fn config_in_force(&self, sha256: &str) {
        self.config_info.reset();
        if let Ok(g) = self.config_info.get_metric_with_label_values(&[sha256]) {
            g.set(1);
        }
    }

    /// Sets the key-reload counts (read from the key store at scrape time).
    pub fn set_key_reloads(&self, ok: u64, failed: u64) {
        for (result, total) in [("ok", ok), ("failed", failed)] {
            if let Ok(c) = self.key_reloads.get_metric_with_label_values(&[result]) {
                c.inc_by(total.saturating_sub(c.get()));
            }
        }
    }

    /// Sets the memory budget's use, limit and refusals (read from the budget at scrape time).
    pub fn set_memory(&self, budget: &crate::memory::MemoryBudget) {
        let as_i64 = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
        self.memory_held.set(as_i64(budget.held()));
        self.memory_budget.set(as_i64(budget.limit()));
        self.memory_slots_taken.set(as_i64(budget.taken()));
        self.memory_slots.set(as_i64(budget.slots()));
        self.memory_refusals
            .inc_by(budget.refused().saturating_sub(self.memory_refusals.get()));
    }

    /// Sets the limit store's state and counts (read from the store at scrape time).
    pub fn set_limit_store(&self, status: &crate::limits::StoreStatus) {
        self.limit_store_up.set(i64::from(status.up));
        self.limit_store_errors
            .inc_by(status.errors.saturating_sub(self.limit_store_errors.get()));
        for (decision, total) in [("local", status.fallback_local), ("deny", status.denied)] {
            if let Ok(c) = self
                .limit_store_fallback
                .get_metric_with_label_values(&[decision])
            {
                c.inc_by(total.saturating_sub(c.get()));
            }
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Metrics of a config with stage `prod` and route `/a`, and a request context for `path`.
    fn one_route(path: &str) -> (Metrics, RequestContext) {
        let text = "stages:\n  prod: {}\nroutes:\n  - method: GET\n    path: /a\n    integration: { endpoint_name: ep }\n";
        let config = GatewayConfig::parse("g.yaml", text, &|_| None).unwrap();
        let ctx = RequestContext::new(
            "id".into(),
            "trace".into(),
            std::net::IpAddr::from([127, 0, 0, 1]),
            "GET",
            path,
        );
        (Metrics::new(&config), ctx)
    }

    #[test]
    fn labels_only_take_configured_values() {
        let (metrics, mut ctx) = one_route("/prod/zzz");
        // A stage or route the config does not have (cannot happen; still bounded).
        ctx.stage = Some("invented".into());
        ctx.resource_path = Some("/invented".into());
        metrics.observe(&ctx, 404, Duration::from_millis(1));
        let text = metrics.render();
        assert!(!text.contains("invented"), "{text}");
        assert!(
            text.contains(r#"sagegate_requests_total{route="",stage="",status_class="4xx"} 1"#)
        );
        assert!(
            text.contains(
                r#"sagegate_requests_total{route="/a",stage="prod",status_class="2xx"} 0"#
            )
        );
    }

    #[test]
    fn variant_label_is_bounded() {
        let (metrics, mut ctx) = one_route("/prod/a");
        ctx.stage = Some("prod".into());
        ctx.resource_path = Some("/a".into());
        ctx.integration_latency = Some(Duration::from_millis(3));
        let mut observe = |variant: Option<String>| {
            ctx.invoked_variant = variant;
            metrics.observe(&ctx, 200, Duration::from_millis(4));
        };
        observe(None);
        observe(Some("blue".into()));
        observe(Some("not a name\"}".into()));
        for i in 0..MAX_VARIANTS + 5 {
            observe(Some(format!("v{i}")));
        }
        observe(Some("blue".into()));
        let text = metrics.render();
        let count = |variant: &str| {
            let series = format!(
                "sagegate_integration_duration_seconds_count{{route=\"/a\",stage=\"prod\",variant=\"{variant}\"}} "
            );
            text.lines()
                .find_map(|l| l.strip_prefix(series.as_str()))
                .map(|n| n.parse::<u64>().unwrap())
        };
        assert_eq!(count(""), Some(1), "{text}");
        assert_eq!(count("blue"), Some(2), "{text}");
        assert_eq!(count("v0"), Some(1), "{text}");
        // `blue` took one of the places: v0..v30 are kept, the rest and the bad name are `other`.
        assert_eq!(count(&format!("v{}", MAX_VARIANTS - 2)), Some(1), "{text}");
        assert_eq!(count(&format!("v{}", MAX_VARIANTS - 1)), None, "{text}");
        assert_eq!(count("other"), Some(7), "{text}");
        assert!(!text.contains("not a name"), "{text}");
    }
}
