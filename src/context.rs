//! The per-request context: filled in as the stages run, then written as one access-log line.
//!
//! Field names in the log are API Gateway's `$context` names (`requestId`, `identity.sourceIp`,
//! `resourcePath`, `integrationLatency`, …) so existing dashboards and queries keep working. The key
//! *id* is logged, never the key or its hash.
//!
//! A leaf: the context records plain data (strings, numbers, times) and imports no stage; the
//! access log, [`crate::metrics`] and [`crate::otel`] read it. A sampled request's trace is
//! recorded here too, as plain stage spans ([`RequestTrace`]); `otel` turns them into OTLP spans.

use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};

use crate::error::GatewayError;

mod access;

/// The name [`RequestContext::upstream_error`] records for a request the circuit breaker refused
/// (no SageMaker call was made, so the metrics do not count it as an upstream error).
pub const CIRCUIT_OPEN: &str = "CircuitOpen";

/// Why the limits stage refused a request (for the per-key metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    /// A throttle bucket (plan, route or stage) was empty.
    Throttled,
    /// The usage plan's quota is used up.
    Quota,
}

/// How far the caller got through authentication. Only an authenticated request may be traced
/// (DESIGN "Edge rules": a caller without a valid key controls no cost).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Authenticated {
    /// Not (yet): refused before or at authentication.
    #[default]
    No,
    /// A route without `api_key_required`: the operator opened it to anyone.
    PublicRoute,
    /// A valid API key whose usage plans cover the stage.
    Key,
}

/// What is known about one request so far.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// `$context.requestId` (UUID v4), also `x-amzn-RequestId`.
    pub request_id: String,
    /// `X-Amzn-Trace-Id` (the client's, or a new root).
    pub trace_id: String,
    /// `$context.identity.sourceIp`.
    pub source_ip: IpAddr,
    /// `$context.identity.userAgent`.
    pub user_agent: String,
    /// `$context.httpMethod`.
    pub http_method: String,
    /// `$context.path` (raw request path).
    pub path: String,
    /// `$context.stage`, once known.
    pub stage: Option<String>,
    /// `$context.resourcePath` (the matched template), once known.
    pub resource_path: Option<String>,
    /// `$context.identity.apiKeyId`, once known (also for a disabled or wrong-stage key).
    pub api_key_id: Option<String>,
    /// Whether the caller passed authentication.
    pub authenticated: Authenticated,
    /// When the request arrived (monotonic).
    pub started: Instant,
    /// When the request arrived (wall clock), for `$context.requestTime`.
    pub request_time: DateTime<Utc>,
    /// `$context.integrationLatency`.
    pub integration_latency: Option<Duration>,
    /// `$context.integrationStatus`.
    pub integration_status: Option<u16>,
    /// `$context.awsEndpointRequestId`.
    pub aws_endpoint_request_id: Option<String>,
    /// The production variant that answered this request's own SageMaker call
    /// (`x-Amzn-Invoked-Production-Variant`), for the access log and the metrics.
    pub invoked_variant: Option<String>,
    /// `$context.isCanaryRequest` on a stage with a canary, once assigned ([`crate::canary`]);
    /// `None` elsewhere (logged `false`).
    pub canary: Option<bool>,
    /// The SageMaker endpoint this request's own call went to (none for a cache hit).
    pub endpoint_name: Option<String>,
    /// `$context.error.responseType` when the request ended in a gateway response.
    pub error_type: Option<&'static str>,
    /// Internal cause for the log (never sent to the client).
    pub error_cause: Option<String>,
    /// `$context.error.validationErrorString`: why the validate stage refused the request.
    pub validation_error: Option<String>,
    /// Stage cache outcome (`hit`, `miss`, `coalesced`, `refresh`, `bypass`) when the stage caches.
    pub cache: Option<&'static str>,
    /// SageMaker's error type when this request's own call failed (for metrics and the access log's
    /// `upstreamErrorType`), or `CircuitOpen` when the circuit breaker refused the call.
    pub upstream_error: Option<&'static str>,
    /// Which limit refused the request, if one did (for the per-key metrics).
    pub limited: Option<Limited>,
    /// A streaming route's stream: how it was framed, relayed and ended ([`crate::relay`]).
    pub stream: Option<StreamRecord>,
    /// The request's trace when OTLP export is on and it is sampled; `None` otherwise, and then
    /// the stages record nothing (see [`crate::otel`]).
    pub trace: Option<Box<RequestTrace>>,
}

impl RequestContext {
    /// A fresh context for a request from `source_ip`.
    pub fn new(
        request_id: String,
        trace_id: String,
        source_ip: IpAddr,
        http_method: &str,
        path: &str,
    ) -> Self {
        RequestContext {
            request_id,
            trace_id,
            source_ip,
            user_agent: String::new(),
            http_method: http_method.to_owned(),
            path: path.to_owned(),
            stage: None,
            resource_path: None,
            api_key_id: None,
            authenticated: Authenticated::No,
            started: Instant::now(),
            request_time: Utc::now(),
            integration_latency: None,
            integration_status: None,
            aws_endpoint_request_id: None,
            invoked_variant: None,
            canary: None,
            endpoint_name: None,
            error_type: None,
            error_cause: None,
            validation_error: None,
            cache: None,
            upstream_error: None,
            limited: None,
            trace: None,
            stream: None,
        }
    }

    /// `$context.requestTime` in API Gateway's CLF format, `26/Nov/2026:15:06:23 +0000`.
    pub fn request_time_clf(&self) -> String {
        let mut out = Vec::with_capacity(26);
        access::write_clf(&mut out, &self.request_time);
        String::from_utf8(out).unwrap_or_default()
    }

    /// Writes the access-log line for a response of `status` and `length` bytes, and for a failed
    /// request the `request failed` warning with its cause. A request refused before or at
    /// authentication gets one line only, its cause in the access line: a caller without a valid
    /// key controls no log volume beyond one line (DESIGN "Edge rules").
    pub fn log_access(&self, status: u16, length: usize) {
        if tracing::enabled!(target: "access", tracing::Level::INFO) {
            access::write(|line| self.access_fields(line, status, length));
        }
        let unauthenticated = self.authenticated == Authenticated::No;
        if let Some(cause) = self.error_cause.as_ref().filter(|_| !unauthenticated) {
            tracing::warn!(requestId = %self.request_id, route = self.resource_path.as_deref(), status, cause = %cause, "request failed");
        }
    }

    /// The access line's fields, in their order (absent ones left out).
    fn access_fields(&self, line: &mut access::Line<'_>, status: u16, length: usize) {
        let unauthenticated = self.authenticated == Authenticated::No;
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        line.str("requestId", &self.request_id);
        line.ip("identity.sourceIp", self.source_ip);
        line.str("identity.userAgent", &self.user_agent);
        line.opt_str("identity.apiKeyId", self.api_key_id.as_deref());
        line.clf("requestTime", &self.request_time);
        line.int("requestTimeEpoch", self.request_time.timestamp_millis());
        line.str("httpMethod", &self.http_method);
        line.str("path", &self.path);
        line.opt_str("resourcePath", self.resource_path.as_deref());
        line.opt_str("stage", self.stage.as_deref());
        line.int("status", status);
        line.int("responseLength", length);
        line.int("responseLatency", millis(self.started.elapsed()));
        line.opt_int("integrationLatency", self.integration_latency.map(millis));
        line.opt_int("integrationStatus", self.integration_status);
        line.opt_str(
            "awsEndpointRequestId",
            self.aws_endpoint_request_id.as_deref(),
        );
        line.opt_str("invokedProductionVariant", self.invoked_variant.as_deref());
        line.opt_str("endpointName", self.endpoint_name.as_deref());
        line.bool("isCanaryRequest", self.canary.unwrap_or(false));
        line.opt_str("error.responseType", self.error_type);
        line.opt_str(
            "error.validationErrorString",
            self.validation_error.as_deref(),
        );
        line.opt_str("cacheStatus", self.cache);
        line.opt_str("upstreamErrorType", self.upstream_error);
        line.str("xrayTraceId", &self.trace_id);
        line.opt_str(
            "cause",
            self.error_cause.as_deref().filter(|_| unauthenticated),
        );
        if let Some(stream) = &self.stream {
            line.str("stream.framing", stream.framing);
            line.opt_str("stream.outcome", stream.outcome);
            line.opt_int("stream.timeToFirstByte", stream.first_byte.map(millis));
            line.int("stream.bytes", stream.bytes);
            line.int("stream.parts", stream.parts);
        }
    }
}

/// What a streamed response did, for the access log and the metrics (filled in by the HTTP adapter
/// as it writes the stream).
#[derive(Debug, Clone, Default)]
pub struct StreamRecord {
    /// `chunked` or `sse`.
    pub framing: &'static str,
    /// How it ended (`complete`, `upstream_error`, `timeout`, `client_gone`, `shutdown`); `None`
    /// when the stream never started (the call failed before the first part).
    pub outcome: Option<&'static str>,
    /// From the request's arrival to the first part handed to the connection.
    pub first_byte: Option<Duration>,
    /// Body bytes handed to the connection (SSE framing included).
    pub bytes: u64,
    /// SageMaker parts relayed.
    pub parts: u64,
}

impl StreamRecord {
    /// A stream about to be relayed with `framing`.
    pub fn new(framing: &'static str) -> Self {
        StreamRecord {
            framing,
            ..StreamRecord::default()
        }
    }
}

/// Span names of the stages, as they appear in X-Ray and trace back ends.
pub mod names {
    /// Stage selection and resource matching.
    pub const ROUTE: &str = "route";
    /// API key check.
    pub const AUTHENTICATE: &str = "authenticate";
    /// Throttles and quota.
    pub const ADMIT: &str = "admit";
    /// The request body, read once the request is admitted.
    pub const READ_BODY: &str = "read body";
    /// Required parameters.
    pub const VALIDATE: &str = "validate";
    /// Request template.
    pub const RENDER: &str = "render request";
    /// Stage cache (the SageMaker call of a miss is its child).
    pub const CACHE: &str = "cache lookup";
    /// The SageMaker Runtime call, retries included.
    pub const INVOKE: &str = "SageMaker InvokeEndpoint";
    /// Integration response and response template.
    pub const RESPOND: &str = "respond";
}

/// What the sampler knew at arrival; `otel` finishes the decision once authentication is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceDecision {
    /// The ratio's verdict.
    pub ratio: bool,
    /// The caller's sampled flag, when it sent one and callers are trusted.
    pub caller: Option<bool>,
}

/// A span attribute's value.
#[derive(Debug, Clone, PartialEq)]
pub enum SpanValue {
    /// A string.
    Text(String),
    /// An integer.
    Int(i64),
}

/// One stage's span, recorded while the request runs.
#[derive(Debug, Clone)]
pub struct StageSpan {
    /// Span name (one of [`names`]).
    pub name: &'static str,
    /// `true` for the SageMaker call (an OTel `Client` span), `false` for the gateway's own stages
    /// (`Internal`).
    pub client: bool,
    /// Index of the enclosing stage span in [`RequestTrace::stages`]; `None` = the server span.
    pub parent: Option<usize>,
    /// Start.
    pub start: SystemTime,
    /// End.
    pub end: SystemTime,
    /// Attributes.
    pub attributes: Vec<(&'static str, SpanValue)>,
    /// Error type when the stage failed (API Gateway's response type or SageMaker's error type).
    pub error: Option<&'static str>,
}

/// The trace of one request that may be sampled: ids, the arrival decision, and the stage spans.
#[derive(Debug, Clone)]
pub struct RequestTrace {
    /// The arrival half of the sampling decision.
    pub decision: TraceDecision,
    /// The trace id (the caller's, or a new one).
    pub trace_id: [u8; 16],
    /// The server span's id.
    pub span_id: [u8; 8],
    /// The caller's span, when it sent one.
    pub parent: Option<[u8; 8]>,
    /// When the request arrived.
    pub start: SystemTime,
    /// Stage spans in the order they ended.
    pub stages: Vec<StageSpan>,
}

impl RequestTrace {
    /// Adds a stage span; returns its index (to parent later spans on it).
    pub fn push(&mut self, span: StageSpan) -> usize {
        self.stages.push(span);
        self.stages.len() - 1
    }
}

/// This request's own SageMaker call, as the trace records it.
#[derive(Debug, Clone, Copy)]
pub struct CallRecord<'a> {
    /// The endpoint called.
    pub endpoint: &'a str,
    /// HTTP attempts made.
    pub attempts: u32,
    /// SageMaker's status, when it answered.
    pub status: Option<u16>,
    /// Wall time of the call, retries included.
    pub latency: Duration,
    /// SageMaker's request id of a successful call.
    pub request_id: Option<&'a str>,
    /// SageMaker's error type of a failed call.
    pub error: Option<&'static str>,
}

impl RequestContext {
    /// The current time when this request is traced, to start a stage span; `None` (one branch,
    /// no clock read) when it is not.
    #[inline]
    pub fn span_start(&self) -> Option<SystemTime> {
        self.trace.as_ref().map(|_| SystemTime::now())
    }

    /// Records stage `name` from `start` to now, as a child of the server span.
    pub fn span_end(
        &mut self,
        name: &'static str,
        start: SystemTime,
        error: Option<&GatewayError>,
    ) {
        if let Some(trace) = self.trace.as_mut() {
            trace.push(StageSpan {
                name,
                client: false,
                parent: None,
                start,
                end: SystemTime::now(),
                attributes: Vec::new(),
                error: error.map(GatewayError::response_type_name),
            });
        }
    }

    /// Records the cache lookup (when the stage caches) and this request's own SageMaker call
    /// (when it made one: not for hits, nor for waiters of another request's call). The call is
    /// the lookup's child; it ended when the lookup returned and lasted `call.latency`.
    pub fn record_fetch(&mut self, start: SystemTime, call: Option<CallRecord<'_>>) {
        let cache = self.cache;
        let Some(trace) = self.trace.as_mut() else {
            return;
        };
        let end = SystemTime::now();
        let parent = cache.map(|status| {
            trace.push(StageSpan {
                name: names::CACHE,
                client: false,
                parent: None,
                start,
                end,
                attributes: vec![("sagegate.cache", SpanValue::Text(status.to_owned()))],
                error: None,
            })
        });
        let Some(call) = call else {
            return;
        };
        let mut attributes = vec![
            ("rpc.system", SpanValue::Text("aws-api".to_owned())),
            (
                "rpc.service",
                SpanValue::Text("SageMaker Runtime".to_owned()),
            ),
            ("rpc.method", SpanValue::Text("InvokeEndpoint".to_owned())),
            (
                "aws.sagemaker.endpoint_name",
                SpanValue::Text(call.endpoint.to_owned()),
            ),
            (
                "sagegate.attempts",
                SpanValue::Int(i64::from(call.attempts)),
            ),
        ];
        if let Some(status) = call.status {
            attributes.push((
                "http.response.status_code",
                SpanValue::Int(i64::from(status)),
            ));
        }
        if let Some(id) = call.request_id {
            attributes.push(("aws.request_id", SpanValue::Text(id.to_owned())));
        }
        trace.push(StageSpan {
            name: names::INVOKE,
            client: true,
            parent,
            start: end.checked_sub(call.latency).unwrap_or(start).max(start),
            end,
            attributes,
            error: call.error,
        });
    }
}
