//! The request pipeline: the stages in order, one line each.
//!
//! ```text
//! route → authenticate → assign canary → admit → read body → validate → render request
//!       → cache lookup / (breaker) invoke → (shadow) → respond
//!       → access log + metrics (in the HTTP adapter)
//! ```
//!
//! Input: a framework-free [`GatewayRequest`] head (the HTTP adapter already refused oversized
//! headers and declared lengths over the limit, and assigned the request and trace ids), the body
//! as a stream of chunks, unread until `read body`, and the request's memory account
//! ([`crate::memory`]). Output: a [`GatewayResponse`]. Every early exit is a [`GatewayError`]
//! value; one place ([`Gateway::refuse`]) turns it into API Gateway's response and logs the cause.
//! Only `read body` and `invoke` do I/O; every other stage is a plain function over borrowed state.
//!
//! Memory: the body is charged to the request's account as it arrives (`read body`), the rendered
//! integration request when it is not the body itself, SageMaker's answer when this request made
//! the call, and a rendered response; a refused charge is 503 with `Retry-After: 1`.
//!
//! This file holds the sequence only; each stage's body lives in its module: route in
//! [`crate::config::resolve`], authenticate in [`crate::auth`], admit in [`crate::limits::admit`],
//! read body in [`crate::body`], validate, render request and respond in [`crate::integration`],
//! cache lookup in [`crate::cache::lookup`], invoke in [`crate::breaker`] around
//! [`crate::upstream`]. Building the [`Gateway`] and running it is [`crate::app`]'s job.
//!
//! Each stage line is wrapped in [`traced`], which records the stage's span when the request is
//! traced ([`crate::otel`], OTLP export on and sampled) and otherwise costs one `Option` check.

use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use futures_util::Stream;

use crate::auth::{self, KeySet};
use crate::body::{self, BodyLimits};
use crate::cache;
use crate::config::GatewayConfig;
use crate::context::{Limited, RequestContext, names};
use crate::error::GatewayError;
use crate::integration::{self, MappingInput};
use crate::limits::{self, FailedAttemptLimiter, KeyLimiters, LimitClock, Limiter};
use crate::memory::{Held, MemoryBudget, new_bytes};
use crate::metrics::Metrics;
use crate::otel::Tracer;
use crate::relay;
use crate::route;
use crate::shadow;
use crate::upstream::SageMaker;

mod live;
pub use self::live::Live;

// Paths other code reached through this module before the stage bodies moved to their modules
// (kept for one step; see docs/architecture.md for where each now lives).
pub use crate::auth::KeysSnapshot;
pub use crate::config::resolve::Routed;
pub use crate::integration::{default_body, mapping_input, response as respond};
pub use crate::limits::usage_json;
pub use crate::message::{API_KEY_HEADER, GatewayRequest, GatewayResponse};

/// Everything the pipeline reads; shared by all workers.
pub struct Gateway {
    /// The per-request configuration (gateway.yaml and its stage throttles, caches, breakers): a
    /// request loads it once and finishes on it; a config reload swaps it whole.
    pub live: ArcSwap<Live>,
    /// Current keys and their limiters. Read lock-free per request; replaced whole on reload.
    pub keys: ArcSwap<KeysSnapshot>,
    /// Where throttle and quota state lives.
    pub limiter: Limiter,
    /// Unknown-key attempts per client address (key enumeration defence).
    pub failed_attempts: FailedAttemptLimiter,
    /// The SageMaker integration.
    pub upstream: SageMaker,
    /// Metrics, recorded once per request by the HTTP adapter.
    pub metrics: Metrics,
    /// OTLP trace export; `None` (the default) records no spans at all.
    pub tracer: Option<Tracer>,
    /// The in-flight memory budget every request's account draws on.
    pub memory: MemoryBudget,
    /// Set to `true` when open streams must end (shutdown, once the drain grace is spent).
    pub stop_streams: tokio::sync::watch::Sender<bool>,
    /// The request body's size and time limits (`server.max_body_bytes`, `body_timeout_secs`).
    body_limits: BodyLimits,
    clock: LimitClock,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("live", &self.live.load())
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Builds the shared state around `limiter` (see [`crate::app::connect_limiter`]); fails only
    /// on limiter settings the config validation let through.
    pub fn new(
        config: Arc<GatewayConfig>,
        keys: Arc<KeySet>,
        upstream: SageMaker,
        limiter: Limiter,
    ) -> anyhow::Result<Gateway> {
        let clock = limiter.clock().clone();
        let keys = KeysSnapshot::new(keys, &KeyLimiters::default(), &clock)?;
        let metrics = Metrics::new(&config);
        let budget = match config.server.memory_budget {
            Some(bytes) => bytes,
            None => {
                let (bytes, from) = crate::memory::default_budget();
                tracing::info!(bytes, from, "in-flight memory budget");
                bytes
            }
        };
        let slots = config.server.max_requests_in_flight.unwrap_or_else(|| {
            let slots = crate::memory::default_slots();
            tracing::info!(slots, "requests in flight past the key check at most");
            slots
        });
        let memory = MemoryBudget::with_slots(budget, slots);
        Ok(Gateway {
            memory,
            keys: ArcSwap::from_pointee(keys),
            limiter,
            failed_attempts: FailedAttemptLimiter::with_defaults(clock.clone()),
            upstream,
            body_limits: BodyLimits::of(&config.server),
            live: ArcSwap::from_pointee(Live::first(config, &metrics, &clock)?),
            metrics,
            clock,
            tracer: None,
            stop_streams: tokio::sync::watch::Sender::new(false),
        })
    }

    /// Turns on OTLP traces (see [`crate::otel`]).
    pub fn with_tracer(mut self, tracer: Tracer) -> Self {
        self.tracer = Some(tracer);
        self
    }

    /// Installs a reloaded key set, keeping limiter state for (key, plan) pairs whose settings did
    /// not change.
    pub fn install_keys(&self, keys: Arc<KeySet>) {
        let current = self.keys.load();
        match KeysSnapshot::new(keys, &current.limiters, &self.clock) {
            Ok(snapshot) => self.keys.store(Arc::new(snapshot)),
            Err(e) => {
                tracing::error!(error = %e, "reloaded keys rejected by the limiter; previous keys stay in force")
            }
        }
    }

    /// The per-request configuration now in force.
    pub fn live(&self) -> Arc<Live> {
        self.live.load_full()
    }

    /// Builds the state of a reloaded `config` beside the current one (keeping what it did not
    /// change, see [`Live::next`]) and swaps it in; requests already running finish on the old.
    /// Fails only on limiter settings the config validation let through (nothing is swapped).
    pub fn install_config(&self, config: Arc<GatewayConfig>) -> anyhow::Result<Arc<Live>> {
        let next = Arc::new(self.live.load().next(config, &self.metrics, &self.clock)?);
        self.live.store(next.clone());
        Ok(next)
    }

    /// Runs the pipeline for one request: its head, its body's chunks (read only once the request
    /// is admitted) and its memory account (which the caller keeps until the response is written).
    pub async fn handle<B, E>(
        &self,
        req: &GatewayRequest,
        body: &mut B,
        memory: &Held,
        ctx: &mut RequestContext,
    ) -> GatewayResponse
    where
        B: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        // The request's configuration: reloads after this point do not change it.
        let live = self.live.load_full();
        let mut input = None;
        let mut response = match self.run(&live, req, body, memory, ctx, &mut input).await {
            Ok(resp) => resp,
            Err(err) => self.refuse_under(&live.config, err, input.as_ref(), ctx),
        };
        if let Some(status) = ctx.cache {
            response
                .headers
                .push((cache::CACHE_STATUS_HEADER.to_owned(), status.to_owned()));
        }
        response
    }

    /// The one writer of gateway responses: API Gateway's default for `err`, or the operator's
    /// override of its type (`gateway_responses`, DEFAULT_4XX / DEFAULT_5XX), with the outcome and
    /// its cause recorded for the access log. The HTTP adapter answers its refusals of a request
    /// head (431, 413) through it too; `input` is `None` before the request was routed.
    pub fn refuse(
        &self,
        err: GatewayError,
        input: Option<&MappingInput<'_>>,
        ctx: &mut RequestContext,
    ) -> GatewayResponse {
        self.refuse_under(&self.live.load().config, err, input, ctx)
    }

    /// [`Gateway::refuse`] under a request's `config`.
    fn refuse_under(
        &self,
        config: &GatewayConfig,
        err: GatewayError,
        input: Option<&MappingInput<'_>>,
        ctx: &mut RequestContext,
    ) -> GatewayResponse {
        ctx.limited = match err {
            GatewayError::Throttled { .. } => Some(Limited::Throttled),
            GatewayError::QuotaExceeded { .. } => Some(Limited::Quota),
            _ => None,
        };
        ctx.error_type = err
            .default_response()
            .response_type
            .map(crate::error::ResponseType::name);
        ctx.error_cause = Some(err.to_string());
        integration::gateway_response(&err, &config.gateway_responses, input, ctx)
    }

    /// The stages, in order, one line each (plus the memory charges between them).
    async fn run<'a, B, E>(
        &'a self,
        live: &'a Live,
        req: &'a GatewayRequest,
        body: &mut B,
        memory: &'a Held,
        ctx: &mut RequestContext,
        input: &mut Option<MappingInput<'a>>,
    ) -> Result<GatewayResponse, GatewayError>
    where
        B: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let config = &*live.config;
        // route
        let (stage, route, path_params) = traced(ctx, names::ROUTE, |ctx| config.route(req, ctx))?;
        let query = route::decode_query(&req.query, config.server.decode_parameters)
            .map_err(|e| GatewayError::InvalidRequest(e.to_string()))?;
        let input = input.insert(mapping_input(stage, req, path_params, query, memory));
        // authenticate
        let keys = self.keys.load();
        let caller = traced(ctx, names::AUTHENTICATE, |ctx| {
            auth::authenticate(&keys.keys, &self.failed_attempts, req, stage, route, ctx)
        })?;
        // assign canary (the stage's canary view from here on, when the request is one)
        let stage = crate::canary::assign(stage, input, ctx);
        // take a slot (the connection state of a request in flight, bounded in number), before
        // admission: a 503 for a full house spends none of the caller's throttle or quota
        memory.take_slot().map_err(|_| GatewayError::Unavailable {
            reason: crate::memory::OverBudget::SLOTS_REASON,
        })?;
        // admit
        let start = ctx.span_start();
        let key_limiter = keys.limiter(caller.as_ref());
        let stage_limiter = live.stage_limiters.get(&stage.name).map(|l| &**l);
        let admitted = limits::admit(
            &self.limiter,
            key_limiter,
            stage_limiter,
            &route.method,
            &route.path,
        )
        .await;
        end_span(ctx, names::ADMIT, start, &admitted);
        admitted?;
        // read body
        let start = ctx.span_start();
        let (length, encoding) = (
            req.header("content-length"),
            req.header("transfer-encoding"),
        );
        let read = body::read(body, length, encoding, &self.body_limits, memory).await;
        end_span(ctx, names::READ_BODY, start, &read);
        input.body = read?;
        // validate
        traced(ctx, names::VALIDATE, |ctx| {
            crate::validate::request(route, input, ctx)
        })?;
        // render request
        let (invocation, overrides) = traced(ctx, names::RENDER, |ctx| {
            integration::invocation(config, stage, route, input, ctx)
        })?;
        memory.try_grow(new_bytes(&invocation.body, &input.body))?;
        // stream (a streaming route: never cached; the breaker around the call up to the first
        // part, then the parts relayed as they arrive)
        if let Some(limits) = route.integration.stream {
            return self.stream(live, invocation, limits, req, ctx).await;
        }
        // cache lookup + invoke (the endpoint's circuit breaker wraps the call: a cache hit never
        // reaches it, and an open circuit answers without starting the call). The call's future
        // (2 KB, the HTTP exchange) is boxed when it starts: held inline, the breaker and the
        // cache's coalescing each kept a copy, and every request in flight, even a cache hit,
        // carried 12 KB of future (#19).
        let invoke = || {
            live.breakers.call(
                &invocation.endpoint_name,
                Box::pin(self.upstream.invoke(&invocation)),
            )
        };
        let store = live.caches.get(&stage.name).map(|c| &**c);
        let (fetched, warn) = cache::lookup(
            store,
            route,
            caller.as_ref(),
            input,
            &invocation,
            invoke,
            ctx,
        )
        .await?;
        // SageMaker's answer is held from here on, when this request's own call brought it.
        let answer = fetched.answer_body();
        if fetched.stats.is_some() {
            memory.charge(answer.len());
        }
        // shadow (a sampled copy of this request's own call, in the background; one `Option`
        // check when the route has none)
        if route.shadow.is_some() && fetched.stats.is_some_and(|s| s.attempts > 0) {
            let (shadows, upstream) = (&live.shadows, &self.upstream);
            shadow::mirror(
                shadows,
                route,
                &stage.name,
                &invocation,
                upstream,
                &self.memory,
            );
        }
        // select integration response + render response
        let response = traced(ctx, names::RESPOND, |ctx| {
            integration::response(route, fetched.result, input, ctx, &overrides)
        });
        response.map(|mut r| {
            memory.charge(new_bytes(&r.body, &answer));
            if warn {
                r.headers
                    .push(("warning".to_owned(), cache::UNAUTHORIZED_WARNING.to_owned()));
            }
            r
        })
    }
}

impl Gateway {
    /// The invoke and relay stages of a streaming route ([`crate::relay`]).
    async fn stream(
        &self,
        live: &Live,
        invocation: crate::upstream::Invocation,
        limits: crate::config::stream::StreamLimits,
        req: &GatewayRequest,
        ctx: &mut RequestContext,
    ) -> Result<GatewayResponse, GatewayError> {
        relay::check_session(invocation.session_id.as_deref())?;
        let account = Arc::new(self.memory.account());
        let relay = relay::Relay {
            limits,
            framing: relay::Framing::of(req.header("accept")),
            memory: account.clone(),
            stop: self.stop_streams.subscribe(),
            started: std::time::Instant::now(),
        };
        let endpoint = invocation.endpoint_name.clone();
        let call = self.upstream.invoke_stream(invocation, account);
        let (opened, stats) = live.breakers.call(&endpoint, call).await;
        relay::respond(opened, stats, relay, &endpoint, ctx)
    }
}

/// Runs one synchronous stage, recording its span when the request is traced (otherwise the cost
/// is two `Option` checks).
fn traced<T>(
    ctx: &mut RequestContext,
    name: &'static str,
    stage: impl FnOnce(&mut RequestContext) -> Result<T, GatewayError>,
) -> Result<T, GatewayError> {
    let start = ctx.span_start();
    let out = stage(ctx);
    end_span(ctx, name, start, &out);
    out
}

fn end_span<T>(
    ctx: &mut RequestContext,
    name: &'static str,
    start: Option<std::time::SystemTime>,
    out: &Result<T, GatewayError>,
) {
    if let Some(start) = start {
        ctx.span_end(name, start, out.as_ref().err());
    }
}
