//! The request pipeline: the stages in order, one line each.
//!
//! ```text
//! route → authenticate → admit → read body → validate → render request
//!       → cache lookup / (breaker) invoke → respond → access log + metrics (in the HTTP adapter)
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
//! Each stage line is wrapped in [`traced`], which records the stage's span when the request is
//! traced ([`crate::otel`], OTLP export on and sampled) and otherwise costs one `Option` check.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use futures_util::Stream;
use serde_json::{Map, Value};

use crate::auth::{AuthError, Caller, KeySet};
use crate::body::{self, BodyLimits};
use crate::breaker::{self, Breakers};
use crate::cache::{self, CacheStatus, Directive, Fetched, StageCache};
use crate::config::GatewayConfig;
use crate::config::gateway::{Route, Stage};
use crate::config::param::ParamSource;
use crate::context::{Authenticated, CallRecord, Limited, RequestContext, names};
use crate::error::GatewayError;
use crate::integration::{self, MappingInput};
use crate::limits::{
    Admission, AdmitRequest, FailedAttemptLimiter, KeyLimiters, KeyPlanSpec, LimitClock,
    LimitStore, Limiter, QuotaPeriod as LimitPeriod, QuotaSpec, RouteThrottle, StageLimiter,
    ThrottleSpec,
};
use crate::mapping;
use crate::memory::{Held, MemoryBudget};
use crate::metrics::Metrics;
use crate::otel::Tracer;
use crate::route::{self, RouteError};
use crate::upstream::{Invocation, SageMaker, UpstreamFailure, UpstreamReply};

pub use crate::message::{API_KEY_HEADER, GatewayRequest, GatewayResponse};

/// Keys and the limiter state that belongs to them, swapped together on reload.
#[derive(Debug)]
pub struct KeysSnapshot {
    /// The keys.
    pub keys: Arc<KeySet>,
    /// Per (key, plan) limiter handles.
    pub limiters: KeyLimiters,
}

/// Everything the pipeline reads; shared by all workers.
pub struct Gateway {
    /// The compiled configuration.
    pub config: Arc<GatewayConfig>,
    /// Current keys and their limiters. Read lock-free per request; replaced whole on reload.
    pub keys: ArcSwap<KeysSnapshot>,
    /// Stage throttles by stage name (not reloaded: they come from gateway.yaml).
    pub stage_limiters: BTreeMap<String, StageLimiter>,
    /// Where throttle and quota state lives.
    pub limiter: Limiter,
    /// Unknown-key attempts per client address (key enumeration defence).
    pub failed_attempts: FailedAttemptLimiter,
    /// The SageMaker integration.
    pub upstream: SageMaker,
    /// Circuit breakers of the endpoints that have one, around `upstream`.
    pub breakers: Breakers,
    /// Stage caches by stage name, for the stages that cache.
    pub caches: BTreeMap<String, StageCache>,
    /// Metrics, recorded once per request by the HTTP adapter.
    pub metrics: Metrics,
    /// OTLP trace export; `None` (the default) records no spans at all.
    pub tracer: Option<Tracer>,
    /// The in-flight memory budget every request's account draws on.
    pub memory: MemoryBudget,
    clock: LimitClock,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("stages", &self.config.stages.keys())
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Builds the shared state around `limiter` (see [`connect_limiter`]); fails only on limiter
    /// settings the config validation let through.
    pub fn new(
        config: Arc<GatewayConfig>,
        keys: Arc<KeySet>,
        upstream: SageMaker,
        limiter: Limiter,
    ) -> anyhow::Result<Gateway> {
        let clock = limiter.clock().clone();
        let mut stage_limiters = BTreeMap::new();
        for stage in config.stages.values() {
            stage_limiters.insert(stage.name.clone(), stage_limiter(stage, &clock)?);
        }
        let limiters = reconcile(&KeyLimiters::default(), &keys, &clock)?;
        let caches = config
            .stages
            .values()
            .filter(|s| s.cache.enabled)
            .map(|s| (s.name.clone(), StageCache::new(&s.cache, clock.clone())))
            .collect();
        let metrics = Metrics::new(&config);
        let breakers = Breakers::new(&config, &metrics, clock.clone());
        let memory = MemoryBudget::new(match config.server.memory_budget {
            Some(bytes) => bytes,
            None => {
                let (bytes, from) = crate::memory::default_budget();
                tracing::info!(bytes, from, "in-flight memory budget");
                bytes
            }
        });
        Ok(Gateway {
            memory,
            caches,
            metrics,
            breakers,
            keys: ArcSwap::from_pointee(KeysSnapshot { keys, limiters }),
            stage_limiters,
            limiter,
            failed_attempts: FailedAttemptLimiter::with_defaults(clock.clone()),
            upstream,
            config,
            clock,
            tracer: None,
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
        match reconcile(&current.limiters, &keys, &self.clock) {
            Ok(limiters) => self.keys.store(Arc::new(KeysSnapshot { keys, limiters })),
            Err(e) => {
                tracing::error!(error = %e, "reloaded keys rejected by the limiter; previous keys stay in force")
            }
        }
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
        let mut input = None;
        let mut response = match self.run(req, body, memory, ctx, &mut input).await {
            Ok(resp) => resp,
            Err(err) => self.refuse(err, input.as_ref(), ctx),
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
        integration::gateway_response(&err, &self.config.gateway_responses, input, ctx)
    }

    async fn run<'a, B, E>(
        &'a self,
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
        let decode = self.config.server.decode_parameters;
        // route
        let (stage, route, path_params) =
            traced(ctx, names::ROUTE, |ctx| Self::route(&self.config, req, ctx))?;
        let query = route::decode_query(&req.query, decode)
            .map_err(|e| GatewayError::InvalidRequest(e.to_string()))?;
        let input = input.insert(mapping_input(stage, req, path_params, query, memory));
        // authenticate
        let keys = self.keys.load();
        let caller = traced(ctx, names::AUTHENTICATE, |ctx| {
            self.authenticate(&keys.keys, req, stage, route, ctx)
        })?;
        // admit
        let start = ctx.span_start();
        let admitted = self.admit(&keys, caller.as_ref(), stage, route).await;
        end_span(ctx, names::ADMIT, start, &admitted);
        admitted?;
        // read body
        let start = ctx.span_start();
        let read = self.read_body(req, body, memory).await;
        end_span(ctx, names::READ_BODY, start, &read);
        input.body = read?;
        // validate
        traced(ctx, names::VALIDATE, |_| {
            validate(route, req, &input.params.querystring)
        })?;
        // render request
        let (invocation, overrides) = traced(ctx, names::RENDER, |ctx| {
            Self::render_request(&self.config, stage, route, input, ctx)
        })?;
        memory.try_grow(new_bytes(&invocation.body, &input.body))?;
        // cache lookup + invoke
        let (fetched, warn) = self
            .fetch(stage, route, caller.as_ref(), input, invocation, ctx)
            .await?;
        // SageMaker's answer is held from here on, when this request's own call brought it.
        let answer = answer_body(&fetched);
        if fetched.stats.is_some() {
            memory.charge(answer.len());
        }
        // select integration response + render response
        let response = traced(ctx, names::RESPOND, |ctx| {
            respond(route, fetched.result, input, ctx, &overrides)
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

    /// The cache lookup and invoke stages: the reply from the stage cache, from another request's
    /// call for the same key, or from this request's own SageMaker call. The bool asks for the
    /// `Warning` header of an ignored invalidation.
    async fn fetch(
        &self,
        stage: &Stage,
        route: &Route,
        caller: Option<&Caller>,
        input: &MappingInput<'_>,
        invocation: Invocation,
        ctx: &mut RequestContext,
    ) -> Result<(Fetched, bool), GatewayError> {
        let start = ctx.span_start();
        // The endpoint's circuit breaker wraps the call: a cache hit never reaches it, and an open
        // circuit answers without starting the call.
        let invoke = || {
            self.breakers.call(
                &invocation.endpoint_name,
                self.upstream.invoke(invocation.clone()),
            )
        };
        let cached = self.caches.get(&stage.name).and_then(|c| {
            let ttl = cache::route_ttl(stage, route)?;
            let req = cache::KeyRequest {
                method: &input.req.method,
                query: &input.params.querystring,
                body: &input.body,
            };
            let key = cache::key(stage, route, req, |p| input.value(p, ctx))?;
            Some((c, ttl, key))
        });
        let mut warn = false;
        let fetched = match cached {
            Some((store, ttl, key)) => {
                let directive = cache::directive(
                    input.req.header_values("cache-control"),
                    caller,
                    &stage.cache,
                );
                let directive = match directive {
                    // API Gateway's FAIL_WITH_403: the key is valid, the action is not allowed.
                    Directive::Refuse => {
                        return Err(GatewayError::AccessDenied {
                            reason: "not authorized to invalidate the cache",
                        });
                    }
                    Directive::Ignored { warn: w } => {
                        warn = w;
                        Directive::Normal
                    }
                    d => d,
                };
                store.fetch(key, ttl, directive, invoke).await
            }
            None => {
                let (result, stats) = invoke().await;
                Fetched {
                    result,
                    stats: Some(stats),
                    status: CacheStatus::Bypass,
                }
            }
        };
        if self.caches.contains_key(&stage.name) {
            ctx.cache = Some(fetched.status.as_str());
        }
        if let Some(start) = start {
            let call = fetched.stats.map(|stats| CallRecord {
                endpoint: &invocation.endpoint_name,
                attempts: stats.attempts,
                status: stats.status,
                latency: stats.latency,
                request_id: fetched
                    .result
                    .as_ref()
                    .ok()
                    .and_then(|r| r.header("x-amzn-requestid")),
                error: fetched
                    .result
                    .as_ref()
                    .err()
                    .map(UpstreamFailure::error_type),
            });
            ctx.record_fetch(start, call);
        }
        if let Err(failure) = &fetched.result
            && breaker::is_short_circuit(failure)
        {
            // No SageMaker call was made: no integration latency or status to log.
            ctx.upstream_error = Some(breaker::CIRCUIT_OPEN);
        } else if let Some(stats) = fetched.stats {
            ctx.integration_latency = Some(stats.latency);
            ctx.integration_status = stats.status;
            if let Err(failure) = &fetched.result {
                ctx.upstream_error = Some(failure.error_type());
            }
        }
        Ok((fetched, warn))
    }

    /// The read-body stage over this gateway's limits ([`crate::body`]).
    async fn read_body<B, E>(
        &self,
        req: &GatewayRequest,
        chunks: &mut B,
        memory: &Held,
    ) -> Result<Bytes, GatewayError>
    where
        B: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let server = &self.config.server;
        let limits = BodyLimits {
            max_bytes: server.max_body_bytes,
            timeout: server.body_timeout,
        };
        body::read(
            chunks,
            req.header("content-length"),
            req.header("transfer-encoding"),
            &limits,
            memory,
        )
        .await
    }

    /// The route stage (also `sagegate test-invoke`'s).
    pub fn route<'a>(
        config: &'a GatewayConfig,
        req: &GatewayRequest,
        ctx: &mut RequestContext,
    ) -> Result<Routed<'a>, GatewayError> {
        let (stage_name, rest) =
            route::split_stage(&req.path).ok_or(GatewayError::MissingAuthenticationToken)?;
        let stage = match config.stages.get(stage_name) {
            Some(stage) => stage,
            // `/healthz` is a resource (GET only): another method on it is an unknown method.
            None if stage_name == &crate::message::HEALTH_PATH[1..] => {
                return Err(GatewayError::MissingAuthenticationToken);
            }
            None => return Err(GatewayError::UnknownStage),
        };
        ctx.stage = Some(stage.name.clone());
        let matched = config
            .table
            .resolve(&req.method, rest, config.server.decode_parameters)
            .map_err(|e| match e {
                RouteError::NotFound => GatewayError::MissingAuthenticationToken,
                RouteError::BadPath(why) => GatewayError::InvalidRequest(why.to_string()),
            })?;
        let route = &config.routes[*matched.value];
        ctx.resource_path = Some(route.path.clone());
        Ok((stage, route, matched.params))
    }

    fn authenticate(
        &self,
        keys: &KeySet,
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
                if err != AuthError::Missing
                    && !self.failed_attempts.allow_failed_attempt(ctx.source_ip)
                {
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

    async fn admit(
        &self,
        keys: &KeysSnapshot,
        caller: Option<&Caller>,
        stage: &Stage,
        route: &Route,
    ) -> Result<(), GatewayError> {
        let key_limiter = caller.and_then(|c| keys.limiters.get(&c.key.id, &c.plan.id));
        let request = AdmitRequest::new(
            key_limiter.map(Arc::as_ref),
            self.stage_limiters.get(&stage.name),
            &route.method,
            &route.path,
        );
        match self.limiter.admit(&request).await {
            Admission::Admitted => Ok(()),
            Admission::Throttled { retry_after } => Err(GatewayError::Throttled { retry_after }),
            Admission::QuotaExceeded { retry_after } => {
                Err(GatewayError::QuotaExceeded { retry_after })
            }
            Admission::StoreUnavailable => Err(GatewayError::Unavailable {
                reason: "limit store down (on_store_failure: deny)",
            }),
        }
    }

    /// The render-request stage (also `sagegate test-invoke`'s): the SageMaker call to make, and
    /// the overrides the request template set (the response stages read them).
    pub fn render_request(
        config: &GatewayConfig,
        stage: &Stage,
        route: &Route,
        input: &MappingInput<'_>,
        ctx: &RequestContext,
    ) -> Result<(Invocation, mapping::Overrides), GatewayError> {
        let integration = &route.integration;
        let endpoint_name = integration
            .endpoint_by_stage
            .get(&stage.name)
            .cloned()
            .ok_or_else(|| {
                GatewayError::ApiConfiguration(format!("no endpoint for stage {}", stage.name))
            })?;
        let payload =
            integration::render_request(route, input, ctx, &config.binary_media_types, || {
                default_body(&input.params.path, &input.params.querystring)
            })?;
        let source = |s: &Option<ParamSource>| s.as_ref().and_then(|s| input.value(s, ctx));
        let mut headers = [
            ("content-type".to_owned(), Some(payload.content_type)),
            ("accept".to_owned(), Some(integration.accept.clone())),
            (
                "x-amzn-sagemaker-custom-attributes".to_owned(),
                source(&integration.custom_attributes),
            ),
            (
                "x-amzn-sagemaker-inference-id".to_owned(),
                source(&integration.inference_id),
            ),
            (
                "x-amzn-sagemaker-target-variant".to_owned(),
                source(&integration.target_variant),
            ),
        ];
        // Explicit `request_parameters` mappings, then the template's `requestOverride.header`, win.
        let mapped = integration
            .request_headers
            .iter()
            .map(|(h, s)| (h.clone(), input.value(s, ctx)));
        let overridden = payload
            .overrides
            .request_headers
            .iter()
            .map(|(h, v)| (h.to_ascii_lowercase(), Some(v.clone())));
        for (name, value) in mapped.chain(overridden) {
            if let Some(slot) = headers.iter_mut().find(|(h, _)| *h == name) {
                slot.1 = value;
            }
        }
        let mut take = |name: &str| {
            headers
                .iter_mut()
                .find(|(h, _)| h == name)
                .and_then(|(_, v)| v.take())
        };
        let content_type = take("content-type").unwrap_or_else(|| integration.content_type.clone());
        let accept = take("accept").unwrap_or_else(|| integration.accept.clone());
        let custom_attributes = take("x-amzn-sagemaker-custom-attributes");
        let inference_id = take("x-amzn-sagemaker-inference-id");
        let target_variant = take("x-amzn-sagemaker-target-variant");
        check_header_value("Content-Type", Some(&content_type), 1024)?;
        check_header_value("Accept", Some(&accept), 1024)?;
        check_header_value(
            "X-Amzn-SageMaker-Custom-Attributes",
            custom_attributes.as_deref(),
            1024,
        )?;
        check_header_value("X-Amzn-SageMaker-Inference-Id", inference_id.as_deref(), 64)?;
        check_header_value(
            "X-Amzn-SageMaker-Target-Variant",
            target_variant.as_deref(),
            63,
        )?;
        let invocation = Invocation {
            endpoint_name,
            body: payload.body,
            content_type,
            accept,
            custom_attributes,
            inference_id,
            target_variant,
            trace_id: ctx.trace_id.clone(),
            timeout: integration.timeout,
        };
        Ok((invocation, payload.overrides))
    }
}

/// The limit store `config` asks for on `clock`: in-process, or Redis (connected and probed once,
/// bounded by its connect timeout; a store that is down at start does not stop the gateway, its
/// failure policy applies until the background probe reaches it).
pub async fn connect_limiter(config: &GatewayConfig, clock: LimitClock) -> anyhow::Result<Limiter> {
    let local = crate::limits::MemoryStore::new(clock.clone());
    match &config.limits.redis {
        None => Ok(Limiter::memory(clock)),
        Some(settings) => {
            let store = crate::limits::RedisStore::connect(settings.clone(), local)
                .await
                .map_err(|e| anyhow::anyhow!("limits.redis: {e}"))?;
            Ok(Limiter::Redis(store))
        }
    }
}

/// The usage read-out of `GET /usage` and `sagegate usage`: every (key, plan) with a quota, or
/// only `key_id`'s, sorted by key id then plan id, in `period`. Key ids only, never key values.
pub async fn usage_report(
    gateway: &Gateway,
    key_id: Option<&str>,
    period: crate::limits::UsagePeriod,
) -> Result<Value, String> {
    let keys = gateway.keys.load();
    usage_json(&gateway.limiter, &keys.limiters, key_id, period).await
}

/// [`usage_report`] over any store and handles (the CLI reads Redis without a running gateway).
pub async fn usage_json(
    limiter: &Limiter,
    limiters: &KeyLimiters,
    key_id: Option<&str>,
    period: crate::limits::UsagePeriod,
) -> Result<Value, String> {
    let mut handles: Vec<&crate::limits::KeyLimiter> = limiters
        .iter()
        .map(Arc::as_ref)
        .filter(|l| key_id.is_none_or(|k| l.spec().key_id == k))
        .collect();
    handles.sort_by(|a, b| {
        (&a.spec().key_id, &a.spec().plan_id).cmp(&(&b.spec().key_id, &b.spec().plan_id))
    });
    let rows = limiter.usage_report(&handles, period).await?;
    let usage: Vec<Value> = rows
        .into_iter()
        .filter_map(|(i, u)| {
            let spec = handles.get(i)?.spec();
            let rfc3339 = |t: chrono::DateTime<chrono::Utc>| {
                t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            };
            Some(serde_json::json!({
                "key_id": spec.key_id,
                "plan_id": spec.plan_id,
                "period": match u.period {
                    LimitPeriod::Day => "DAY",
                    LimitPeriod::Week => "WEEK",
                    LimitPeriod::Month => "MONTH",
                },
                "period_start": rfc3339(u.period_start),
                "period_end": rfc3339(u.resets_at),
                "limit": u.limit,
                "used": u.used,
                "remaining": u.remaining,
            }))
        })
        .collect();
    Ok(serde_json::json!({
        "store": limiter.status().backend,
        "period": match period {
            crate::limits::UsagePeriod::Current => "current",
            crate::limits::UsagePeriod::Previous => "previous",
        },
        "usage": usage,
    }))
}

/// Limiter handles for every (key, plan) of `keys` (fresh state), e.g. to read their shared
/// counters from outside a running gateway.
pub fn key_limiters(keys: &KeySet, clock: &LimitClock) -> anyhow::Result<KeyLimiters> {
    reconcile(&KeyLimiters::default(), keys, clock)
}

/// Periodic upkeep of limiter state (forgetting quiet addresses of the failed-key limiter).
pub fn spawn_housekeeping(gateway: Arc<Gateway>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            tick.tick().await;
            gateway.failed_attempts.housekeeping();
        }
    });
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

/// The select-integration-response and render-response stages over what `fetch` returned (also
/// `sagegate test-invoke`'s); `overrides` are the request template's.
pub fn respond(
    route: &Route,
    result: Result<UpstreamReply, UpstreamFailure>,
    input: &MappingInput<'_>,
    ctx: &mut RequestContext,
    overrides: &mapping::Overrides,
) -> Result<GatewayResponse, GatewayError> {
    match result {
        Ok(reply) => {
            ctx.aws_endpoint_request_id = reply.header("x-amzn-requestid").map(str::to_owned);
            integration::respond(route, &reply, input, ctx, overrides)
        }
        Err(failure) => match failure
            .reply
            .as_ref()
            .and_then(|r| integration::respond_failure(route, r, input, ctx, overrides))
        {
            Some(mapped) => {
                ctx.error_cause = Some(failure.error.to_string());
                mapped
            }
            None => Err(failure.error),
        },
    }
}

/// The route stage's output: the stage, the route and its path parameters.
pub type Routed<'a> = (&'a Stage, &'a Route, Vec<(String, String)>);

/// What templates and mapping expressions read of a routed request (headers API Gateway's front
/// door blanks are blank: [`mapping::BLANKED_HEADERS`]).
pub fn mapping_input<'a>(
    stage: &'a Stage,
    req: &'a GatewayRequest,
    path: Vec<(String, String)>,
    query: Vec<(String, String)>,
    memory: &'a Held,
) -> MappingInput<'a> {
    let params = mapping::Params {
        path,
        querystring: query,
        // The caller's key is a secret, never template input: `$input.params()` does not show it
        // (the key id is `$context.identity.apiKeyId`). Front-door headers are blank.
        header: mapping::template_headers(
            &req.headers
                .iter()
                .filter(|(name, _)| name != API_KEY_HEADER)
                .cloned()
                .collect::<Vec<_>>(),
        ),
    };
    MappingInput {
        params,
        stage,
        req,
        body: Bytes::new(),
        memory,
    }
}

/// Bytes of `produced` that are new, not a view of `source` (a passthrough body, an answer sent on
/// unchanged): these are what a stage adds to the request's memory.
fn new_bytes(produced: &Bytes, source: &Bytes) -> usize {
    if produced.as_ptr() == source.as_ptr() {
        0
    } else {
        produced.len()
    }
}

/// SageMaker's answer in `fetched` (the reply, or the failed call's reply); empty when none came.
fn answer_body(fetched: &Fetched) -> Bytes {
    match &fetched.result {
        Ok(reply) => reply.body.clone(),
        Err(failure) => failure
            .reply
            .as_ref()
            .map_or_else(Bytes::new, |r| r.body.clone()),
    }
}

/// SageMaker's header rule: visible US-ASCII, within the length limit. A value copied from a client
/// header that breaks it is the client's error (400), never a header injection.
fn check_header_value(name: &str, value: Option<&str>, max: usize) -> Result<(), GatewayError> {
    match value {
        Some(v)
            if v.is_empty() || v.len() > max || !v.bytes().all(|b| (0x20..0x7f).contains(&b)) =>
        {
            Err(GatewayError::InvalidRequest(format!(
                "{name} must be 1 to {max} visible ASCII characters"
            )))
        }
        _ => Ok(()),
    }
}

/// Route validation: required query parameters and headers.
pub fn validate(
    route: &Route,
    req: &GatewayRequest,
    query: &[(String, String)],
) -> Result<(), GatewayError> {
    let mut missing: Vec<String> = Vec::new();
    for name in &route.validation.required_query {
        if route::last_value(query, name).is_none_or(str::is_empty) {
            missing.push(name.clone());
        }
    }
    for name in &route.validation.required_headers {
        if req.header(name).is_none_or(str::is_empty) {
            missing.push(name.clone());
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(GatewayError::MissingParameters(missing))
    }
}

/// The body sent when a route has no request template: a JSON object of the path and query
/// parameters (path wins on a name clash; for a repeated query key the last value counts), values
/// that are JSON numbers sent as numbers. Serialized, never spliced, so any value is safe.
pub fn default_body(path: &[(String, String)], query: &[(String, String)]) -> Value {
    let mut map = Map::new();
    for (k, v) in path {
        map.insert(k.clone(), json_scalar(v));
    }
    for (k, v) in query {
        if !path.iter().any(|(p, _)| p == k) {
            map.insert(k.clone(), json_scalar(v));
        }
    }
    Value::Object(map)
}

fn json_scalar(v: &str) -> Value {
    let looks_numeric = v
        .bytes()
        .next()
        .is_some_and(|b| b == b'-' || b.is_ascii_digit())
        && !v.bytes().any(|b| b.is_ascii_whitespace());
    if looks_numeric && let Ok(n) = serde_json::from_str::<serde_json::Number>(v) {
        return Value::Number(n);
    }
    Value::String(v.to_owned())
}

fn throttle(t: crate::auth::Throttle) -> ThrottleSpec {
    ThrottleSpec {
        rate_limit: t.rate_limit,
        burst_limit: t.burst_limit,
    }
}

fn stage_limiter(stage: &Stage, clock: &LimitClock) -> anyhow::Result<StageLimiter> {
    let routes: Vec<RouteThrottle> = stage
        .route_throttles
        .iter()
        .map(|(m, p, t)| RouteThrottle {
            method: m.clone(),
            resource_path: p.clone(),
            throttle: *t,
        })
        .collect();
    Ok(StageLimiter::new(
        &stage.name,
        stage.throttle,
        &routes,
        clock,
    )?)
}

/// Limiter handles for every (key, plan) of `keys`, reusing `previous` where settings are unchanged.
fn reconcile(
    previous: &KeyLimiters,
    keys: &KeySet,
    clock: &LimitClock,
) -> anyhow::Result<KeyLimiters> {
    let mut specs = Vec::new();
    for key in keys.keys() {
        for plan in &key.usage_plans {
            let route_throttles = plan
                .route_throttles
                .iter()
                .filter_map(|(k, t)| {
                    let (m, p) = k.split_once(' ')?;
                    Some(RouteThrottle {
                        method: m.to_owned(),
                        resource_path: p.to_owned(),
                        throttle: throttle(*t),
                    })
                })
                .collect();
            specs.push(KeyPlanSpec {
                key_id: key.id.clone(),
                plan_id: plan.id.clone(),
                throttle: plan.throttle.map(throttle),
                route_throttles,
                quota: plan.quota.map(|q| QuotaSpec {
                    limit: q.limit,
                    offset: q.offset,
                    period: match q.period {
                        crate::auth::QuotaPeriod::Day => LimitPeriod::Day,
                        crate::auth::QuotaPeriod::Week => LimitPeriod::Week,
                        crate::auth::QuotaPeriod::Month => LimitPeriod::Month,
                    },
                }),
            });
        }
    }
    let (limiters, report) = previous.reconcile(&specs, clock).map_err(|errs| {
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

/// Picks the client address: the TCP peer, or with `trusted_hops` proxies in front, the address
/// the outermost trusted proxy saw (the `trusted_hops`-th entry from the right of
/// `X-Forwarded-For`). Entries left of it are client-supplied and never trusted.
pub fn client_ip(peer: IpAddr, forwarded_for: &[&str], trusted_hops: usize) -> IpAddr {
    if trusted_hops == 0 {
        return peer;
    }
    let entries: Vec<&str> = forwarded_for
        .iter()
        .flat_map(|h| h.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if entries.is_empty() {
        return peer;
    }
    let idx = entries.len().saturating_sub(trusted_hops);
    entries[idx].parse().unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_body_types_numbers() {
        let path = vec![("user_id".to_owned(), "U:114521".to_owned())];
        let query = vec![
            ("k".to_owned(), "10".to_owned()),
            ("t".to_owned(), "0.5".to_owned()),
            ("s".to_owned(), "007".to_owned()),
            ("x".to_owned(), "1 ".to_owned()),
        ];
        assert_eq!(
            default_body(&path, &query).to_string(),
            r#"{"user_id":"U:114521","k":10,"t":0.5,"s":"007","x":"1 "}"#
        );
    }

    #[test]
    fn forwarded_for_trusts_only_configured_hops() {
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(client_ip(peer, &["1.2.3.4"], 0), peer);
        assert_eq!(
            client_ip(peer, &["6.6.6.6, 1.2.3.4"], 1),
            "1.2.3.4".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_ip(peer, &["6.6.6.6", "1.2.3.4, 10.0.0.9"], 2),
            "1.2.3.4".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip(peer, &[], 1), peer);
        assert_eq!(client_ip(peer, &["garbage"], 1), peer);
    }

    #[test]
    fn header_values_are_checked() {
        assert!(check_header_value("X", Some("a=b;c=d"), 1024).is_ok());
        assert!(check_header_value("X", Some("a\r\nInjected: 1"), 1024).is_err());
        assert!(check_header_value("X", Some("é"), 1024).is_err());
        assert!(check_header_value("X", Some(&"a".repeat(1025)), 1024).is_err());
        assert!(check_header_value("X", None, 1024).is_ok());
    }
}
