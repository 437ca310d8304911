//! sagegate: a self-hosted replacement for Amazon API Gateway (REST) in front of a SageMaker
//! real-time endpoint.
//!
//! # Layout
//!
//! One module per pipeline stage, in request order, then the shared pieces:
//!
//! - [`route`]: stage selection and resource matching (`{param}`, `{param+}`, precedence).
//! - [`auth`]: API keys from a file or S3 object, constant-time lookup, reload without restart.
//! - [`limits`]: usage-plan and stage throttles (token buckets) and quotas, in process or shared
//!   by every task through Redis / Valkey (`limits::redis`).
//! - [`body`]: the request body, read only once the request is admitted (size, time, memory).
//! - [`mapping`]: API Gateway's VTL mapping templates, parsed at load, rendered per request.
//! - [`cache`]: the stage cache (TTL, key parameters, conditions, coalescing, invalidation).
//! - [`breaker`]: a circuit breaker per SageMaker endpoint around `invoke` (fail fast while sick).
//! - [`upstream`]: the SageMaker `InvokeEndpoint` call, SigV4-signed with credentials from the AWS
//!   chain: a lean `aws-sigv4` + hyper client (default) or the full SDK client (feature `aws`);
//!   the keys source's S3 `GetObject` goes through the same signer and client (`upstream::s3`).
//! - [`integration`]: request/response templates, integration responses, gateway responses.
//! - [`pipeline`]: the stages called in order, one line each.
//! - [`server`]: the actix-web adapter: limits before routing, ids, `/healthz`, drain.
//! - [`test_invoke`]: `sagegate test-invoke`, the console's "Test" button over the stages above.
//! - [`context`]: the per-request context and its access-log line.
//! - [`memory`]: the in-flight memory budget (one atomic count, an account per request).
//! - [`error`]: client-visible outcomes, API Gateway's default gateway responses.
//! - [`config`]: `gateway.yaml` compiled into a typed model, every error located.
//! - [`metrics`]: Prometheus metrics from each request's context, served on the admin listener.
//! - [`otel`]: optional OpenTelemetry traces (a span per request, a child per stage) over OTLP/HTTP.
//! - [`telemetry`], [`healthcheck`]: logging set-up and the container health probe.

#[cfg(feature = "aws")]
pub mod app;
pub mod auth;
pub mod body;
#[cfg(feature = "aws")]
pub mod breaker;
#[cfg(feature = "aws")]
pub mod cache;
pub mod config;
pub mod context;
pub mod error;
pub mod healthcheck;
#[cfg(feature = "aws")]
pub mod integration;
pub mod limits;
pub mod mapping;
pub mod memory;
pub mod message;
#[cfg(feature = "aws")]
pub mod metrics;
#[cfg(feature = "aws")]
pub mod otel;
#[cfg(feature = "aws")]
pub mod pipeline;
pub mod route;
#[cfg(feature = "aws")]
pub mod server;
pub mod telemetry;
#[cfg(feature = "aws")]
pub mod test_invoke;
#[cfg(feature = "aws")]
pub mod upstream;

/// Resolves on SIGTERM or SIGINT (Ctrl-C): the signal to drain and stop.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
