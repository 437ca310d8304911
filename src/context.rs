//! The per-request context: filled in as the stages run, then written as one access-log line.
//!
//! Field names in the log are API Gateway's `$context` names (`requestId`, `identity.sourceIp`,
//! `resourcePath`, `integrationLatency`, …) so existing dashboards and queries keep working. The key
//! *id* is logged, never the key or its hash.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

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
    /// The request's trace when OTLP export is on and it is sampled; `None` otherwise, and then
    /// the stages record nothing (see [`crate::otel`]).
    #[cfg(feature = "aws")]
    pub trace: Option<Box<crate::otel::RequestTrace>>,
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
            error_type: None,
            error_cause: None,
            validation_error: None,
            cache: None,
            upstream_error: None,
            limited: None,
            #[cfg(feature = "aws")]
            trace: None,
        }
    }

    /// `$context.requestTime` in API Gateway's CLF format, `26/Nov/2026:15:06:23 +0000`.
    pub fn request_time_clf(&self) -> String {
        self.request_time.format("%d/%b/%Y:%H:%M:%S %z").to_string()
    }

    /// Writes the access-log line for a response of `status` and `length` bytes, and for a failed
    /// request the `request failed` warning with its cause. A request refused before or at
    /// authentication gets one line only, its cause in the access line: a caller without a valid
    /// key controls no log volume beyond one line (DESIGN "Edge rules").
    pub fn log_access(&self, status: u16, length: usize) {
        let latency_ms = self.started.elapsed().as_millis() as u64;
        let integration_ms = self.integration_latency.map(|d| d.as_millis() as u64);
        let unauthenticated = self.authenticated == Authenticated::No;
        let refused = self.error_cause.as_deref().filter(|_| unauthenticated);
        tracing::info!(
            target: "access",
            requestId = %self.request_id,
            "identity.sourceIp" = %self.source_ip,
            "identity.userAgent" = %self.user_agent,
            "identity.apiKeyId" = self.api_key_id.as_deref(),
            requestTime = %self.request_time_clf(),
            requestTimeEpoch = self.request_time.timestamp_millis(),
            httpMethod = %self.http_method,
            path = %self.path,
            resourcePath = self.resource_path.as_deref(),
            stage = self.stage.as_deref(),
            status,
            responseLength = length,
            responseLatency = latency_ms,
            integrationLatency = integration_ms,
            integrationStatus = self.integration_status,
            awsEndpointRequestId = self.aws_endpoint_request_id.as_deref(),
            "error.responseType" = self.error_type,
            "error.validationErrorString" = self.validation_error.as_deref(),
            cacheStatus = self.cache,
            upstreamErrorType = self.upstream_error,
            xrayTraceId = %self.trace_id,
            cause = refused,
        );
        if let Some(cause) = self.error_cause.as_ref().filter(|_| !unauthenticated) {
            tracing::warn!(requestId = %self.request_id, route = self.resource_path.as_deref(), status, cause = %cause, "request failed");
        }
    }
}
