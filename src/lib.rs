//! sagegate: a self-hosted replacement for Amazon API Gateway (REST) in front of a SageMaker
//! real-time endpoint.
//!
//! # Layout
//!
//! Arrows run one way: adapter → pipeline → stages → upstream, everything over the leaves (no
//! import cycle between these modules: `.ci/module-cycles.py`; the map is docs/architecture.md).
//!
//! Entry and adapter:
//! - [`app`]: builds the gateway from a config and runs it (`sagegate serve`); tests build it
//!   around an in-process SageMaker.
//! - [`server`]: the actix-web adapter: limits before routing, ids, `/healthz`, drain, admin.
//! - [`test_invoke`]: `sagegate test-invoke`, the console's "Test" button over the stages below.
//! - [`pipeline`]: the stages called in order, one line each, and the one error writer.
//! - [`cli`]: the operator's commands: the key lifecycle on a keys source, the usage table.
//! - [`import`]: `sagegate import`, an API Gateway export (and its stages, usage plans and keys)
//!   into `gateway.yaml` and `keys.yaml`.
//!
//! The stages, in request order:
//! - [`config::resolve`] (route): stage selection and resource matching over the compiled table.
//! - [`auth`]: API keys from a file or S3 object, constant-time lookup, reload without restart;
//!   the authenticate stage and the keys' limiter state.
//! - [`canary`]: the stage's canary: whether this request is a canary request, and the stage view
//!   (overridden variables) it then runs on.
//! - [`limits`]: usage-plan and stage throttles (token buckets) and quotas, in process or shared
//!   by every task through Redis / Valkey (`limits::redis`); the admit stage; usage read-out.
//! - [`body`]: the request body, read only once the request is admitted (size, time, memory).
//! - [`validate`]: API Gateway's request validators: required parameters, body models (JSON Schema).
//! - [`integration`]: render the request (template + SageMaker headers), select the integration
//!   response and render it; gateway-response overrides.
//! - [`cache`]: the stage cache (TTL, key parameters, conditions, coalescing, invalidation) and
//!   the cache-lookup stage.
//! - [`breaker`]: a circuit breaker per SageMaker endpoint around `invoke` (fail fast while sick).
//! - [`shadow`]: after `invoke`, a sampled copy of the route's call to a second endpoint, in the
//!   background, bounded in number, time and memory, its answer only counted.
//! - [`relay`]: a streaming route's parts to the client as they arrive (chunked or SSE), bounded
//!   per stream, ended by timeouts, errors, the client leaving or shutdown.
//! - [`upstream`]: the SageMaker `InvokeEndpoint` (and `InvokeEndpointWithResponseStream`) call, SigV4-signed with credentials from the AWS
//!   chain: a lean `aws-sigv4` + hyper client (default) or the full SDK client (feature `aws`), or
//!   an in-process [`upstream::Invoke`]; the one classification of a failed call
//!   (`upstream::classify`); the keys source's S3 `GetObject` (`upstream::s3`).
//!
//! Libraries (import nothing of the crate) and configuration:
//! - [`route`]: the generic route table (`{param}`, `{param+}`, precedence) and `RouteKey`.
//! - [`mapping`]: API Gateway's VTL mapping templates, parsed at load, rendered per request.
//! - [`config`]: `gateway.yaml` compiled into a typed model, every error located.
//!
//! Leaves and observability:
//! - [`message`]: the request/response vocabulary and the contract's header names.
//! - [`error`]: client-visible outcomes, API Gateway's default gateway responses (one table).
//! - [`context`]: the per-request record (plain data) and its access-log line.
//! - [`memory`]: the in-flight memory budget (one atomic count, an account per request).
//! - [`metrics`]: Prometheus metrics from each request's context, served on the admin listener.
//! - [`otel`]: optional OpenTelemetry traces from the context's spans, over OTLP/HTTP.
//! - [`telemetry`], [`healthcheck`]: logging set-up and the container health probe.

#[cfg(feature = "aws")]
pub mod app;
pub mod auth;
pub mod body;
#[cfg(feature = "aws")]
pub mod breaker;
#[cfg(feature = "aws")]
pub mod cache;
#[cfg(feature = "aws")]
pub mod canary;
pub mod cli;
pub mod config;
pub mod context;
pub mod error;
pub mod healthcheck;
#[cfg(feature = "aws")]
pub mod import;
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
#[cfg(feature = "aws")]
pub mod relay;
pub mod route;
#[cfg(feature = "aws")]
pub mod server;
#[cfg(feature = "aws")]
pub mod shadow;
pub mod telemetry;
#[cfg(feature = "aws")]
pub mod test_invoke;
#[cfg(feature = "aws")]
pub mod upstream;
#[cfg(feature = "aws")]
pub mod validate;

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
