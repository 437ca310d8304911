//! `gateway.yaml`: raw serde structs (`deny_unknown_fields`) → validation that collects every error →
//! the typed [`GatewayConfig`] the server runs on.
//!
//! Each section, stage and route is deserialized on its own so that one bad route does not hide the
//! errors of the next; semantic checks then run on everything that did parse. Every error is a
//! [`Diagnostic`] located in the file.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::cache::{self, RawRouteCache, RawStageCache, RouteCacheConfig, StageCacheConfig};
use super::cache_key::{self, KeyGap};
use super::canary::{self, Canary, RawCanary};
use super::diag::{Diagnostic, Diagnostics};
use super::models::{self, Model, Models};
use super::param::ParamSource;
use super::shadow::{self, RawShadow, Shadow};
use super::stream::{self, Mode, RawStream, StreamLimits};
use super::telemetry::{self, TelemetryConfig};
use super::templates::{self, GatewayResponses, IntegrationResponse, Passthrough, TemplateSet};
use super::yaml::Doc;
use crate::limits::{FailurePolicy, RedisSettings, RouteThrottle, ThrottleSpec};
use crate::route::{RouteKey, RouteSpec, RouteTable};

/// Longest integration timeout a route may set: SageMaker's own 60 s limit.
pub const MAX_ROUTE_TIMEOUT: Duration = Duration::from_secs(60);
/// Shortest integration timeout (API Gateway's 50 ms floor).
pub const MIN_ROUTE_TIMEOUT: Duration = Duration::from_millis(50);

// ---------------------------------------------------------------------------------------------
// Raw file shape.

const TOP_LEVEL: &[&str] = &[
    "server",
    "sagemaker",
    "stages",
    "routes",
    "gateway_responses",
    "binary_media_types",
    "telemetry",
    "limits",
    "models",
];

/// `server:` — listener and connection handling.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    /// Address of the stage listener. Default `0.0.0.0:8080`; `--listen` / `SAGEGATE_LISTEN` win.
    listen: Option<String>,
    /// Address of the admin listener (metrics, usage); default `127.0.0.1:9090`, `""` disables it.
    admin_listen: Option<String>,
    /// Proxies in front of the gateway whose `X-Forwarded-For` entries are trusted: 1 behind an ALB,
    /// 0 when clients connect directly (default 0).
    #[serde(default)]
    trusted_proxy_hops: usize,
    /// HTTP keep-alive in seconds (default 75: longer than the ALB's 60 s idle timeout).
    keep_alive_secs: Option<u64>,
    /// Seconds a client has to send its request head (default 10).
    client_header_timeout_secs: Option<u64>,
    /// Seconds in-flight requests get to finish after SIGTERM (default 30).
    drain_grace_secs: Option<u64>,
    /// Largest request body in bytes (default 10 MiB = 10485760): a declared `Content-Length` over
    /// it is refused before routing (413), a chunked body while it is read.
    max_body_bytes: Option<usize>,
    /// Largest total size of request header names and values in bytes (default 10240, API Gateway's).
    max_header_bytes: Option<usize>,
    /// Seconds the whole request body has to arrive once the request is admitted (default 10);
    /// slower bodies get 408.
    body_timeout_secs: Option<u64>,
    /// Bytes all requests in flight may hold at once (bodies, rendered templates, SageMaker's
    /// answers); past it new work gets 503. Default: half the cgroup's memory limit, 512 MiB when
    /// there is none. At least `max_body_bytes`.
    memory_budget_bytes: Option<u64>,
    /// Requests past the key check that may be in flight at once; past it new ones get 503.
    /// Default: the cgroup default budget over 128 KiB (4096 without a limit). At least 1.
    max_requests_in_flight: Option<usize>,
    /// Percent-decode path and query values before use (default true); false = API Gateway's raw values.
    decode_parameters: Option<bool>,
    /// Worker threads (default: one per CPU).
    workers: Option<usize>,
}

/// `sagemaker:` — the SageMaker Runtime client.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSageMaker {
    /// Region; default from the AWS chain (`AWS_REGION`, profile, task metadata).
    region: Option<String>,
    /// Endpoint override (local stack). `AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME` wins when set.
    endpoint_url: Option<String>,
    /// Total attempts per call including the first (default 2: at most one retry, only on
    /// throttling and 5xx, always within the route's timeout). 1 disables retries.
    max_attempts: Option<u32>,
    /// TCP/TLS connect timeout in milliseconds (default 2000).
    connect_timeout_ms: Option<u64>,
    /// How the call is made: `lean` (default) or `sdk`; see [`SageMakerClient`].
    client: Option<String>,
    /// Circuit-breaker defaults for every integration (default: no breaker); see
    /// [`RawCircuitBreaker`]. A route's own `integration.circuit_breaker` overrides field by field.
    circuit_breaker: Option<RawCircuitBreaker>,
}

/// `sagemaker.circuit_breaker:` and `routes[i].integration.circuit_breaker:` — one breaker per
/// SageMaker endpoint name (after stage variables), see [`crate::breaker`]. Present = on.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCircuitBreaker {
    /// Whether the breaker is on (default true when the section is written; not inherited);
    /// `false` on a route turns off the defaults of `sagemaker.circuit_breaker` for it.
    enabled: Option<bool>,
    /// Consecutive failed calls (counted per client request, after the SDK's retries) that open
    /// the circuit (default 5, 1 to 1000).
    consecutive_failures: Option<u32>,
    /// Milliseconds the circuit stays open after it first opens (default 5000, 1 to 3600000).
    cool_down_ms: Option<u64>,
    /// Cap in milliseconds of the cool-down, which doubles each time a probe fails (default
    /// 60000 or `cool_down_ms` if larger; at least `cool_down_ms`, at most 3600000).
    max_cool_down_ms: Option<u64>,
    /// Probe requests let through at once while half-open (default 1, 1 to 100).
    half_open_probes: Option<u32>,
}

/// `limits:` — where throttle and quota state lives.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    /// `memory` (default: each task keeps its own) or `redis` (shared by every task through
    /// `limits.redis`).
    store: Option<String>,
    /// When the shared store is down or slow: `local` (default: decide with this task's
    /// in-process limits) or `deny` (503 Service Unavailable).
    on_store_failure: Option<String>,
    /// The shared store's connection.
    redis: Option<RawRedis>,
}

/// `limits.redis:` — Redis, Valkey or ElastiCache. No `Debug`: it may hold a password.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRedis {
    /// `redis://host:6379/0`, or `rediss://` for TLS (ElastiCache in-transit encryption); may
    /// carry `user:password@`. Required with `store: redis`.
    url: Option<String>,
    /// ACL user name, when not in the URL (`""` = none).
    username: Option<String>,
    /// Password or ElastiCache auth token, when not in the URL (`""` = none); read it from the
    /// environment (`${env:SAGEGATE_REDIS_PASSWORD:-}`), which ECS fills from Secrets Manager.
    password: Option<String>,
    /// Multiplexed connections per task (default 2, at most 64); each pipelines many requests.
    connections: Option<usize>,
    /// Longest wait for one admission call in milliseconds (default 50, at most 5000); past it
    /// the failure policy decides that request.
    timeout_ms: Option<u64>,
    /// Failed or timed-out admission calls in a row that mark the store down (default 3, 1 to
    /// 100); any success resets the count. While down, requests skip Redis until a probe answers.
    consecutive_failures: Option<u32>,
    /// Longest wait for a connection, a probe or a usage read in milliseconds (default 1000).
    connect_timeout_ms: Option<u64>,
    /// How often a down store is probed, in milliseconds (default 1000).
    probe_interval_ms: Option<u64>,
    /// The hash tag every key goes under, `{sagegate}:…` (default `sagegate`); one per
    /// deployment sharing a Redis.
    key_prefix: Option<String>,
    /// Days a quota counter is kept after its period ends, for usage read-outs (default 35).
    quota_retention_days: Option<u64>,
}

/// `stages.<name>:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStage {
    /// Stage variables, usable as `${stageVariables.x}` in integrations and `$stageVariables.x` in templates.
    #[serde(default)]
    variables: BTreeMap<String, String>,
    /// Stage default throttle (API Gateway's `*/*` method setting), shared by all callers.
    throttle: Option<ThrottleSpec>,
    /// Per-route stage throttles, keyed `"GET /recommended-movies/{user_id}"`.
    #[serde(default)]
    route_throttles: BTreeMap<String, ThrottleSpec>,
    /// The stage cache (default off); see [`super::cache`] for every field.
    cache: Option<RawStageCache>,
    /// The stage's canary (default none); see [`super::canary`] for every field.
    canary: Option<RawCanary>,
}

/// `routes[i]:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    /// HTTP method, or ANY.
    method: String,
    /// Resource path template, e.g. `/recommended-movies/{user_id}`.
    path: String,
    /// Whether callers must present a valid `x-api-key` (default false).
    #[serde(default)]
    api_key_required: bool,
    #[serde(default)]
    validation: RawValidation,
    integration: RawIntegration,
    /// Per-route cache settings (default: GET routes cache when the stage does, keyed by method
    /// and resource path only); see [`super::cache`].
    cache: Option<RawRouteCache>,
    /// A sampled copy of the route's SageMaker calls to a second endpoint (default none); see
    /// [`super::shadow`].
    shadow: Option<RawShadow>,
}

/// `routes[i].validation:` — API Gateway's request validator: what is written is checked.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawValidation {
    /// Query parameters that must be present (400 `Missing required request parameters: [..]`).
    #[serde(default)]
    required_query: Vec<String>,
    /// Headers that must be present.
    #[serde(default)]
    required_headers: Vec<String>,
    /// The model (a name under `models:`) the body must match, by request Content-Type (missing =
    /// `application/json`); `$default` for any other type. A type with no model is not checked
    /// (API Gateway's rule). 400 `Invalid request body` otherwise.
    #[serde(default)]
    body: Map<String, Value>,
}

/// `routes[i].integration:` — the SageMaker call.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIntegration {
    /// Endpoint name; may use `${stageVariables.x}`.
    endpoint_name: String,
    /// Content-Type sent to SageMaker (default `application/json`).
    content_type: Option<String>,
    /// Accept sent to SageMaker (default `application/json`).
    accept: Option<String>,
    /// Integration timeout in milliseconds (default 29000, at most 60000).
    timeout_ms: Option<u64>,
    /// Source of `X-Amzn-SageMaker-Custom-Attributes` (default `context.requestId`; `null` disables).
    #[serde(default = "default_request_id_source")]
    custom_attributes: Option<String>,
    /// Source of `X-Amzn-SageMaker-Inference-Id` (default `context.requestId`; `null` disables).
    #[serde(default = "default_request_id_source")]
    inference_id: Option<String>,
    /// Source of `X-Amzn-SageMaker-Target-Variant` (default none).
    target_variant: Option<String>,
    /// Source of `X-Amzn-SageMaker-Target-Model` (multi-model endpoints; default none).
    target_model: Option<String>,
    /// Source of `X-Amzn-SageMaker-Inference-Component` (default none).
    inference_component_name: Option<String>,
    /// Source of `X-Amzn-SageMaker-Target-Container-Hostname` (default none).
    target_container_hostname: Option<String>,
    /// Source of `X-Amzn-SageMaker-Session-Id` (default none).
    session_id: Option<String>,
    /// Source of `X-Amzn-SageMaker-Enable-Explanations` (default none).
    enable_explanations: Option<String>,
    /// Request templates by Content-Type (VTL, API Gateway's dialect). Without any, the body is the
    /// default JSON object of path and query parameters (GET) or the request body as is.
    #[serde(default)]
    request_templates: Map<String, Value>,
    /// WHEN_NO_MATCH (default), WHEN_NO_TEMPLATES or NEVER.
    #[serde(default)]
    passthrough_behavior: Passthrough,
    /// `integration.request.header.NAME: source`, for the SageMaker headers (overrides the shortcuts above).
    #[serde(default)]
    request_parameters: Map<String, Value>,
    /// Integration responses (compiled from the document, see `templates::integration_responses`).
    #[serde(default, rename = "responses")]
    _responses: Option<Value>,
    /// This integration's circuit breaker, over the defaults of `sagemaker.circuit_breaker`.
    circuit_breaker: Option<RawCircuitBreaker>,
    /// `buffered` (default: `InvokeEndpoint`) or `stream` (`InvokeEndpointWithResponseStream`).
    #[serde(default)]
    mode: Mode,
    /// A streaming route's time limits (see [`super::stream`]).
    stream: Option<RawStream>,
}

fn default_request_id_source() -> Option<String> {
    Some("context.requestId".to_owned())
}

// ---------------------------------------------------------------------------------------------
// Typed model.

/// The whole compiled gateway configuration.
#[derive(Debug)]
pub struct GatewayConfig {
    /// File name it came from.
    pub file: String,
    /// Listener and connection settings.
    pub server: ServerConfig,
    /// SageMaker client settings.
    pub sagemaker: SageMakerConfig,
    /// Stages by name.
    pub stages: BTreeMap<String, Stage>,
    /// Routes, in file order (index = route id).
    pub routes: Vec<Route>,
    /// The route table over `routes` (values are indexes into `routes`).
    pub table: RouteTable<usize>,
    /// Content types passed through untouched, never templated (API Gateway's binary media types).
    pub binary_media_types: Vec<String>,
    /// Gateway response overrides.
    pub gateway_responses: GatewayResponses,
    /// OTLP trace export (`telemetry:`), merged with the `OTEL_*` environment.
    pub telemetry: TelemetryConfig,
    /// Where limit state lives.
    pub limits: LimitsConfig,
    /// SHA-256 of the `routes` (without their `shadow` blocks) and `binary_media_types` sections
    /// as loaded: what, besides a stage and its variables, shapes a cached answer (a reload that
    /// changes it empties the caches).
    pub routes_digest: [u8; 32],
    /// Problems that do not stop the gateway, located like errors (logged at start, printed by
    /// `check-config`).
    pub warnings: Vec<Diagnostic>,
}

/// `limits:`, compiled.
#[derive(Debug, Clone, Default)]
pub struct LimitsConfig {
    /// The shared store; `None` = `store: memory`.
    pub redis: Option<RedisSettings>,
}

/// See `server:` in the file for each field's meaning and default.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Stage listener address.
    pub listen: String,
    /// Admin listener address; `None` when disabled.
    pub admin_listen: Option<String>,
    /// Trusted `X-Forwarded-For` hops.
    pub trusted_proxy_hops: usize,
    /// HTTP keep-alive.
    pub keep_alive: Duration,
    /// Time allowed to send the request head.
    pub client_header_timeout: Duration,
    /// Drain grace after SIGTERM.
    pub drain_grace: Duration,
    /// Body size limit in bytes.
    pub max_body_bytes: usize,
    /// Header size limit in bytes.
    pub max_header_bytes: usize,
    /// Time allowed for the whole body once the request is admitted.
    pub body_timeout: Duration,
    /// In-flight memory budget in bytes; `None` = the default from the cgroup
    /// ([`crate::memory::default_budget`], read when the gateway starts).
    pub memory_budget: Option<u64>,
    /// Requests past the key check in flight at once; `None` = the default from the cgroup
    /// ([`crate::memory::default_slots`], read when the gateway starts).
    pub max_requests_in_flight: Option<usize>,
    /// Percent-decode path and query values.
    pub decode_parameters: bool,
    /// Worker threads.
    pub workers: Option<usize>,
}

/// SageMaker Runtime client settings.
#[derive(Debug, Clone)]
pub struct SageMakerConfig {
    /// Region override.
    pub region: Option<String>,
    /// Endpoint override from the file (the environment variable is applied by the client builder).
    pub endpoint_url: Option<String>,
    /// Total attempts per call.
    pub max_attempts: u32,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// The circuit breaker of integrations that do not set their own; `None` = off.
    pub circuit_breaker: Option<CircuitBreakerConfig>,
    /// How the call is made.
    pub client: SageMakerClient,
}

/// `sagemaker.client`: which code makes the `InvokeEndpoint` call. Both sign with AWS's SigV4 signer
/// and credentials from `aws-config`'s default chain, and give the same answers (e2e
/// `upstream_paths.rs` compares what the upstream receives from each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SageMakerClient {
    /// `aws-sigv4` on hyper, a connection pool per worker (`src/upstream/lean.rs`): a fraction of
    /// the SDK's per-call CPU and memory (bench/RESULTS.md).
    #[default]
    Lean,
    /// The full `aws-sdk-sagemakerruntime` client (orchestrator, interceptors, retry machinery).
    Sdk,
}

/// A circuit breaker's settings, compiled (see `RawCircuitBreaker` for units and defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitBreakerConfig {
    /// Consecutive failed calls that open the circuit.
    pub consecutive_failures: u32,
    /// Cool-down after the circuit first opens.
    pub cool_down: Duration,
    /// Cap of the doubling cool-down.
    pub max_cool_down: Duration,
    /// Probes let through at once while half-open.
    pub half_open_probes: u32,
}

/// Default of `consecutive_failures`.
pub const DEFAULT_BREAKER_FAILURES: u32 = 5;
/// Default of `cool_down_ms`.
pub const DEFAULT_BREAKER_COOL_DOWN: Duration = Duration::from_secs(5);
/// Default of `max_cool_down_ms` (unless `cool_down_ms` is larger).
pub const DEFAULT_BREAKER_MAX_COOL_DOWN: Duration = Duration::from_secs(60);
/// Longest cool-down accepted.
pub const MAX_BREAKER_COOL_DOWN_MS: u64 = 3_600_000;

/// A deployed stage.
#[derive(Debug, Clone)]
pub struct Stage {
    /// Stage name (first path segment).
    pub name: String,
    /// Stage variables.
    pub variables: BTreeMap<String, String>,
    /// Stage default throttle.
    pub throttle: Option<ThrottleSpec>,
    /// Per-route stage throttles.
    pub route_throttles: Vec<RouteThrottle>,
    /// The stage cache.
    pub cache: StageCacheConfig,
    /// The stage's canary, if it has one.
    pub canary: Option<Arc<Canary>>,
    /// Whether this is a canary's view of the stage ([`Canary::view`]): `$context.isCanaryRequest`.
    pub is_canary: bool,
}

/// One route of the API.
#[derive(Debug, Clone)]
pub struct Route {
    /// Method as declared (upper case, or ANY).
    pub method: String,
    /// Resource path template.
    pub path: String,
    /// Whether a valid API key is required.
    pub api_key_required: bool,
    /// Required parameters.
    pub validation: Validation,
    /// The SageMaker integration.
    pub integration: Integration,
    /// Cache settings of the route.
    pub cache: RouteCacheConfig,
    /// Shadow traffic of the route; `None` = none.
    pub shadow: Option<Shadow>,
}

impl Route {
    /// `"GET /recommended-movies/{user_id}"`, the key used by throttle overrides.
    pub fn key(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// What the validate stage checks ([`crate::validate`]).
#[derive(Debug, Clone, Default)]
pub struct Validation {
    /// Query parameters.
    pub required_query: Vec<String>,
    /// Headers (lower case).
    pub required_headers: Vec<String>,
    /// Body models by media type (lower case, or `$default`), in file order.
    pub body: Vec<(String, Arc<Model>)>,
}

/// The media-type key of `validation.body` that matches any type without its own model.
pub const DEFAULT_MODEL_KEY: &str = "$default";

/// The SageMaker call of a route.
#[derive(Debug, Clone)]
pub struct Integration {
    /// Endpoint name per stage, with stage variables resolved.
    pub endpoint_by_stage: HashMap<String, String>,
    /// Endpoint name per stage that has a canary, with the canary's variables resolved.
    pub canary_endpoint_by_stage: HashMap<String, String>,
    /// Request Content-Type.
    pub content_type: String,
    /// Request Accept.
    pub accept: String,
    /// Integration timeout.
    pub timeout: Duration,
    /// `X-Amzn-SageMaker-Custom-Attributes` source.
    pub custom_attributes: Option<ParamSource>,
    /// `X-Amzn-SageMaker-Inference-Id` source.
    pub inference_id: Option<ParamSource>,
    /// `X-Amzn-SageMaker-Target-Variant` source.
    pub target_variant: Option<ParamSource>,
    /// `X-Amzn-SageMaker-Target-Model` source.
    pub target_model: Option<ParamSource>,
    /// `X-Amzn-SageMaker-Inference-Component` source.
    pub inference_component_name: Option<ParamSource>,
    /// `X-Amzn-SageMaker-Target-Container-Hostname` source.
    pub target_container_hostname: Option<ParamSource>,
    /// `X-Amzn-SageMaker-Session-Id` source.
    pub session_id: Option<ParamSource>,
    /// `X-Amzn-SageMaker-Enable-Explanations` source.
    pub enable_explanations: Option<ParamSource>,
    /// `integration.request.header.*` mappings (lower-case header name, source).
    pub request_headers: Vec<(String, ParamSource)>,
    /// Request templates by Content-Type.
    pub request_templates: TemplateSet,
    /// What happens when no request template matches.
    pub passthrough: Passthrough,
    /// Integration responses; empty = DESIGN §1's defaults.
    pub responses: Vec<IntegrationResponse>,
    /// The circuit breaker guarding this integration's endpoints; `None` = off.
    pub circuit_breaker: Option<CircuitBreakerConfig>,
    /// `mode: stream`: the stream's time limits (`timeout` is then `first_byte`); `None` = buffered.
    pub stream: Option<StreamLimits>,
}

impl Integration {
    /// The endpoint a request on `stage` calls (its canary's when `stage` is a canary view).
    pub fn endpoint(&self, stage: &Stage) -> Option<&String> {
        let by_stage = if stage.is_canary {
            &self.canary_endpoint_by_stage
        } else {
            &self.endpoint_by_stage
        };
        by_stage.get(&stage.name)
    }

    /// Every endpoint this integration may call, with its stage's name (primaries, then canaries).
    pub fn endpoints(&self) -> impl Iterator<Item = (&String, &String)> {
        self.endpoint_by_stage
            .iter()
            .chain(&self.canary_endpoint_by_stage)
    }

    /// The SageMaker header shortcuts: config field, header (lower case, as in
    /// `templates::REQUEST_HEADER_TARGETS`) and source.
    pub fn header_sources(&self) -> [(&'static str, &'static str, Option<&ParamSource>); 8] {
        [
            (
                "custom_attributes",
                "x-amzn-sagemaker-custom-attributes",
                self.custom_attributes.as_ref(),
            ),
            (
                "inference_id",
                "x-amzn-sagemaker-inference-id",
                self.inference_id.as_ref(),
            ),
            (
                "target_variant",
                "x-amzn-sagemaker-target-variant",
                self.target_variant.as_ref(),
            ),
            (
                "target_model",
                "x-amzn-sagemaker-target-model",
                self.target_model.as_ref(),
            ),
            (
                "inference_component_name",
                "x-amzn-sagemaker-inference-component",
                self.inference_component_name.as_ref(),
            ),
            (
                "target_container_hostname",
                "x-amzn-sagemaker-target-container-hostname",
                self.target_container_hostname.as_ref(),
            ),
            (
                "session_id",
                "x-amzn-sagemaker-session-id",
                self.session_id.as_ref(),
            ),
            (
                "enable_explanations",
                "x-amzn-sagemaker-enable-explanations",
                self.enable_explanations.as_ref(),
            ),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// Compilation.

impl GatewayConfig {
    /// Loads and validates `text` (the contents of `file`), reading `${env:...}` through `env`.
    pub fn parse(
        file: &str,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<GatewayConfig, Diagnostics> {
        let doc = Doc::parse(file, text, env).map_err(Diagnostics)?;
        let mut errors = Vec::new();
        let config = compile(&doc, &mut errors, &mut Vec::new());
        let telemetry = telemetry::compile(&doc, env, &mut errors);
        let config = config.map(|c| GatewayConfig { telemetry, ..c });
        match config {
            Some(c) if errors.is_empty() => Ok(c),
            _ => {
                errors.sort_by_key(|d| (d.line, d.col));
                Err(Diagnostics(errors))
            }
        }
    }

    /// What the cached routes of `text` read beyond their cache keys (each an error of
    /// [`GatewayConfig::parse`]), when that is all that is wrong with the file; otherwise every
    /// other error. `sagegate import` adds these to the keys it writes.
    pub fn cache_key_gaps(
        file: &str,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Vec<KeyGap>, Diagnostics> {
        let doc = Doc::parse(file, text, env).map_err(Diagnostics)?;
        let mut errors = Vec::new();
        let mut gaps = Vec::new();
        let config = compile(&doc, &mut errors, &mut gaps);
        telemetry::compile(&doc, env, &mut errors);
        errors.retain(|e| !gaps.iter().any(|g| g.diagnostic == *e));
        if config.is_some() && errors.is_empty() {
            Ok(gaps)
        } else {
            errors.sort_by_key(|d| (d.line, d.col));
            Err(Diagnostics(errors))
        }
    }

    /// Stage names and route keys as declared in `text`, even when the file has other errors, so the
    /// keys file can still be checked against them. `None` when the YAML itself does not parse.
    pub fn declared_names(
        file: &str,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Option<(BTreeSet<String>, BTreeSet<String>)> {
        let doc = Doc::parse(file, text, env).ok()?;
        let stages = doc
            .get("stages")
            .and_then(Value::as_object)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        let routes = doc
            .get("routes")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(|r| {
                        Some(format!(
                            "{} {}",
                            r.get("method")?.as_str()?.to_ascii_uppercase(),
                            normalize_path(r.get("path")?.as_str()?)
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some((stages, routes))
    }

    /// Stage names.
    pub fn stage_names(&self) -> BTreeSet<String> {
        self.stages.keys().cloned().collect()
    }

    /// Route keys (`"GET /path"`), for validating usage-plan overrides.
    pub fn route_keys(&self) -> BTreeSet<String> {
        self.routes.iter().map(Route::key).collect()
    }
}

/// Compiles `doc`, collecting every error; the cache-key errors are also returned in `gaps`.
fn compile(
    doc: &Doc,
    errors: &mut Vec<Diagnostic>,
    gaps: &mut Vec<KeyGap>,
) -> Option<GatewayConfig> {
    let Some(top) = doc.value.as_object() else {
        errors.push(doc.error("", "expected a mapping with `stages` and `routes`"));
        return None;
    };
    for key in top.keys() {
        if !TOP_LEVEL.contains(&key.as_str()) {
            errors.push(doc.error(
                key,
                format!(
                    "unknown field `{key}`, expected one of {}",
                    TOP_LEVEL.join(", ")
                ),
            ));
        }
    }
    let server = compile_server(doc, errors);
    let (sagemaker, breaker_defaults) = compile_sagemaker(doc, errors);
    let stages = compile_stages(doc, errors);
    let models = models::compile(doc, errors);
    let routes = compile_routes(doc, &stages, &models, breaker_defaults.as_ref(), errors);
    check_stage_route_throttles(doc, &stages, &routes, errors);
    check_shared_breakers(doc, &routes, errors);
    let warnings = super::api_key::check(doc, errors);

    let specs = routes
        .iter()
        .enumerate()
        .map(|(i, r)| RouteSpec::new(r.method.clone(), r.path.clone(), i))
        .collect();
    let table = match RouteTable::build(specs) {
        Ok(t) => Some(t),
        Err(errs) => {
            for e in errs {
                errors.push(doc.error(&format!("routes[{}]", e.index), e.message));
            }
            None
        }
    };
    let binary_media_types = match doc.get("binary_media_types") {
        None | Some(Value::Null) => Vec::new(),
        Some(_) => doc
            .deserialize::<Vec<String>>("binary_media_types")
            .map_err(|e| errors.push(e))
            .unwrap_or_default(),
    };
    let binary_media_types: Vec<String> = binary_media_types
        .iter()
        .map(|m| m.to_ascii_lowercase())
        .collect();
    let found = cache_key::check(doc, &stages, &routes, &binary_media_types);
    errors.extend(found.iter().map(|g| g.diagnostic.clone()));
    gaps.extend(found);
    let gateway_responses = templates::gateway_responses(doc, errors);
    let limits = compile_limits(doc, errors);
    Some(GatewayConfig {
        file: doc.file.clone(),
        server: server?,
        sagemaker: sagemaker?,
        stages,
        routes,
        table: table?,
        binary_media_types,
        gateway_responses,
        telemetry: TelemetryConfig::default(),
        limits: limits?,
        routes_digest: routes_digest(doc),
        warnings,
    })
}

/// See [`GatewayConfig::routes_digest`].
fn routes_digest(doc: &Doc) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    for section in ["routes", "binary_media_types"] {
        let mut value = doc.get(section).cloned().unwrap_or_default();
        // A route's shadow block changes no answer a cache holds: changing it keeps the caches.
        if let Some(routes) = value.as_array_mut() {
            for route in routes.iter_mut().filter_map(Value::as_object_mut) {
                route.remove("shadow");
            }
        }
        hash.update(value.to_string());
        hash.update([0]);
    }
    hash.finalize().into()
}

fn compile_limits(doc: &Doc, errors: &mut Vec<Diagnostic>) -> Option<LimitsConfig> {
    let raw: RawLimits = section(doc, "limits", errors)?;
    let shared = match raw.store.as_deref() {
        None | Some("memory") => false,
        Some("redis") => true,
        Some(other) => {
            errors.push(doc.error(
                "limits.store",
                format!("`{other}` is not a store; expected memory or redis"),
            ));
            false
        }
    };
    let on_failure = match raw.on_store_failure.as_deref() {
        None | Some("local") => FailurePolicy::Local,
        Some("deny") => FailurePolicy::Deny,
        Some(other) => {
            errors.push(doc.error(
                "limits.on_store_failure",
                format!("`{other}` is not a policy; expected local or deny"),
            ));
            FailurePolicy::Local
        }
    };
    let redis = raw.redis.map(|r| compile_redis(doc, r, on_failure, errors));
    if !shared {
        return Some(LimitsConfig::default());
    }
    match redis {
        Some(settings) => Some(LimitsConfig {
            redis: Some(settings?),
        }),
        None => {
            errors.push(doc.error(
                "limits.store",
                "`redis` needs a `limits.redis` section with a `url`",
            ));
            None
        }
    }
}

fn compile_redis(
    doc: &Doc,
    raw: RawRedis,
    on_failure: FailurePolicy,
    errors: &mut Vec<Diagnostic>,
) -> Option<RedisSettings> {
    let before = errors.len();
    let url = raw.url.unwrap_or_default();
    let shown = crate::limits::redis::redacted_url(&url);
    if url.is_empty() {
        errors.push(doc.error(
            "limits.redis.url",
            "required: redis://host:6379 or rediss://host:6379",
        ));
    } else if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        errors.push(doc.error(
            "limits.redis.url",
            format!("`{shown}` must start with redis:// or rediss:// (TLS)"),
        ));
    } else if let Err(e) = redis::IntoConnectionInfo::into_connection_info(url.as_str()) {
        errors.push(doc.error(
            "limits.redis.url",
            format!(
                "`{shown}` is not a Redis URL: {}",
                e.detail().unwrap_or("invalid")
            ),
        ));
    }
    let mut millis = |name: &str, v: Option<u64>, default: u64, max: u64| -> Duration {
        let v = v.unwrap_or(default);
        if v == 0 || v > max {
            errors.push(doc.error(
                &format!("limits.redis.{name}"),
                format!("must be between 1 and {max}"),
            ));
        }
        Duration::from_millis(v)
    };
    let timeout = millis("timeout_ms", raw.timeout_ms, 50, 5000);
    let connect_timeout = millis("connect_timeout_ms", raw.connect_timeout_ms, 1000, 30_000);
    let probe_interval = millis("probe_interval_ms", raw.probe_interval_ms, 1000, 60_000);
    let consecutive_failures = raw.consecutive_failures.unwrap_or(3);
    if !(1..=100).contains(&consecutive_failures) {
        errors.push(doc.error(
            "limits.redis.consecutive_failures",
            "must be between 1 and 100",
        ));
    }
    let connections = raw.connections.unwrap_or(2);
    if !(1..=64).contains(&connections) {
        errors.push(doc.error("limits.redis.connections", "must be between 1 and 64"));
    }
    let key_prefix = raw.key_prefix.unwrap_or_else(|| "sagegate".to_owned());
    if key_prefix.is_empty()
        || key_prefix.len() > 64
        || !key_prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        errors.push(doc.error(
            "limits.redis.key_prefix",
            "use 1 to 64 letters, digits, `-`, `_` or `.` (it becomes the hash tag `{prefix}`)",
        ));
    }
    let retention_days = raw.quota_retention_days.unwrap_or(35);
    if retention_days > 400 {
        errors.push(doc.error("limits.redis.quota_retention_days", "must be at most 400"));
    }
    if errors.len() > before {
        return None;
    }
    Some(RedisSettings {
        url,
        username: raw.username.filter(|u| !u.is_empty()),
        password: raw.password.filter(|p| !p.is_empty()),
        connections,
        timeout,
        connect_timeout,
        probe_interval,
        consecutive_failures,
        key_prefix,
        quota_retention: Duration::from_secs(retention_days * 24 * 3600),
        on_failure,
    })
}

fn section<T: serde::de::DeserializeOwned + Default>(
    doc: &Doc,
    path: &str,
    errors: &mut Vec<Diagnostic>,
) -> Option<T> {
    if doc.get(path).is_none_or(Value::is_null) {
        return Some(T::default());
    }
    doc.deserialize(path).map_err(|e| errors.push(e)).ok()
}

fn compile_server(doc: &Doc, errors: &mut Vec<Diagnostic>) -> Option<ServerConfig> {
    let raw: RawServer = section(doc, "server", errors)?;
    let mut positive = |name: &str, v: Option<u64>, default: u64| -> Duration {
        let v = v.unwrap_or(default);
        if v == 0 {
            errors.push(doc.error(&format!("server.{name}"), "must be > 0"));
        }
        Duration::from_secs(v)
    };
    let keep_alive = positive("keep_alive_secs", raw.keep_alive_secs, 75);
    let client_header_timeout = positive(
        "client_header_timeout_secs",
        raw.client_header_timeout_secs,
        10,
    );
    let body_timeout = positive("body_timeout_secs", raw.body_timeout_secs, 10);
    let drain_grace = Duration::from_secs(raw.drain_grace_secs.unwrap_or(30));
    let max_body_bytes = raw.max_body_bytes.unwrap_or(10 * 1024 * 1024);
    if max_body_bytes == 0 {
        errors.push(doc.error("server.max_body_bytes", "must be > 0"));
    }
    let max_header_bytes = raw.max_header_bytes.unwrap_or(10 * 1024);
    if max_header_bytes < 1024 {
        errors.push(doc.error("server.max_header_bytes", "must be at least 1024"));
    }
    if let Some(budget) = raw.memory_budget_bytes
        && budget < max_body_bytes as u64
    {
        errors.push(doc.error(
            "server.memory_budget_bytes",
            format!("must be at least server.max_body_bytes ({max_body_bytes})"),
        ));
    }
    if raw.workers == Some(0) {
        errors.push(doc.error("server.workers", "must be > 0"));
    }
    if raw.max_requests_in_flight == Some(0) {
        errors.push(doc.error("server.max_requests_in_flight", "must be > 0"));
    }
    if raw.trusted_proxy_hops > 16 {
        errors.push(doc.error("server.trusted_proxy_hops", "must be at most 16"));
    }
    let listen = raw.listen.unwrap_or_else(|| "0.0.0.0:8080".to_owned());
    if listen.parse::<std::net::SocketAddr>().is_err() {
        errors.push(doc.error(
            "server.listen",
            format!("`{listen}` is not an address like 0.0.0.0:8080"),
        ));
    }
    let admin_listen = match raw.admin_listen.as_deref() {
        None => Some("127.0.0.1:9090".to_owned()),
        Some("") => None,
        Some(a) => {
            if a.parse::<std::net::SocketAddr>().is_err() {
                errors.push(doc.error(
                    "server.admin_listen",
                    format!("`{a}` is not an address like 127.0.0.1:9090"),
                ));
            }
            Some(a.to_owned())
        }
    };
    Some(ServerConfig {
        listen,
        admin_listen,
        trusted_proxy_hops: raw.trusted_proxy_hops,
        keep_alive,
        client_header_timeout,
        drain_grace,
        max_body_bytes,
        max_header_bytes,
        body_timeout,
        memory_budget: raw.memory_budget_bytes,
        max_requests_in_flight: raw.max_requests_in_flight,
        decode_parameters: raw.decode_parameters.unwrap_or(true),
        workers: raw.workers,
    })
}

/// The client settings, and the raw circuit-breaker defaults routes inherit field by field.
fn compile_sagemaker(
    doc: &Doc,
    errors: &mut Vec<Diagnostic>,
) -> (Option<SageMakerConfig>, Option<RawCircuitBreaker>) {
    let Some(raw) = section::<RawSageMaker>(doc, "sagemaker", errors) else {
        return (None, None);
    };
    let max_attempts = raw.max_attempts.unwrap_or(2);
    if !(1..=3).contains(&max_attempts) {
        errors.push(doc.error("sagemaker.max_attempts", "must be 1, 2 or 3"));
    }
    if let Some(url) = &raw.endpoint_url
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        errors.push(doc.error(
            "sagemaker.endpoint_url",
            format!("`{url}` must start with http:// or https://"),
        ));
    }
    let connect_timeout = Duration::from_millis(raw.connect_timeout_ms.unwrap_or(2000));
    if connect_timeout.is_zero() {
        errors.push(doc.error("sagemaker.connect_timeout_ms", "must be > 0"));
    }
    let circuit_breaker = compile_breaker(
        doc,
        BREAKER_DEFAULTS_PATH,
        raw.circuit_breaker.as_ref(),
        None,
        errors,
    );
    let client = match raw.client.as_deref() {
        None | Some("lean") => SageMakerClient::Lean,
        Some("sdk") => SageMakerClient::Sdk,
        Some(other) => {
            errors.push(doc.error(
                "sagemaker.client",
                format!("`{other}` must be `lean` or `sdk`"),
            ));
            SageMakerClient::Lean
        }
    };
    let config = SageMakerConfig {
        client,
        region: raw.region.filter(|r| !r.is_empty()),
        endpoint_url: raw.endpoint_url.filter(|u| !u.is_empty()),
        max_attempts,
        connect_timeout,
        circuit_breaker,
    };
    (Some(config), raw.circuit_breaker)
}

const BREAKER_DEFAULTS_PATH: &str = "sagemaker.circuit_breaker";

/// Compiles the breaker at `path` (`own`, possibly absent) over `inherited` defaults. Each field
/// comes from `own`, else the defaults, else the built-in default. Range errors are reported only
/// for fields written at `path`: the defaults' own errors are reported once, where they are written.
fn compile_breaker(
    doc: &Doc,
    path: &str,
    own: Option<&RawCircuitBreaker>,
    inherited: Option<&RawCircuitBreaker>,
    errors: &mut Vec<Diagnostic>,
) -> Option<CircuitBreakerConfig> {
    if own.is_none() && inherited.is_none() {
        return None;
    }
    // (value, where it is written) of one field.
    fn pick<T>(
        path: &str,
        own: Option<&RawCircuitBreaker>,
        inherited: Option<&RawCircuitBreaker>,
        field: &str,
        get: fn(&RawCircuitBreaker) -> Option<T>,
    ) -> Option<(T, String)> {
        own.and_then(get)
            .map(|v| (v, format!("{path}.{field}")))
            .or_else(|| {
                inherited
                    .and_then(get)
                    .map(|v| (v, format!("{BREAKER_DEFAULTS_PATH}.{field}")))
            })
    }
    // A section that is written is on unless it says otherwise; it does not inherit `enabled`.
    let enabled = match own {
        Some(own) => own.enabled,
        None => inherited.and_then(|d| d.enabled),
    };
    if enabled == Some(false) {
        return None;
    }
    let mut valid = true;
    let mut check = |ok: bool, at: &str, message: &str| {
        if !ok {
            valid = false;
            if at.starts_with(path) {
                errors.push(doc.error(at, message));
            }
        }
    };
    let failures = pick(path, own, inherited, "consecutive_failures", |r| {
        r.consecutive_failures
    });
    if let Some((n, at)) = &failures {
        check((1..=1000).contains(n), at, "must be between 1 and 1000");
    }
    let cool_down = pick(path, own, inherited, "cool_down_ms", |r| r.cool_down_ms);
    if let Some((ms, at)) = &cool_down {
        check(
            (1..=MAX_BREAKER_COOL_DOWN_MS).contains(ms),
            at,
            "must be between 1 and 3600000",
        );
    }
    let max_cool_down = pick(path, own, inherited, "max_cool_down_ms", |r| {
        r.max_cool_down_ms
    });
    if let Some((ms, at)) = &max_cool_down {
        check(
            (1..=MAX_BREAKER_COOL_DOWN_MS).contains(ms),
            at,
            "must be between 1 and 3600000",
        );
    }
    let probes = pick(path, own, inherited, "half_open_probes", |r| {
        r.half_open_probes
    });
    if let Some((n, at)) = &probes {
        check((1..=100).contains(n), at, "must be between 1 and 100");
    }
    let cool_down_value = cool_down
        .as_ref()
        .map_or(DEFAULT_BREAKER_COOL_DOWN, |(ms, _)| {
            Duration::from_millis(*ms)
        });
    let max_value = max_cool_down.as_ref().map_or(
        DEFAULT_BREAKER_MAX_COOL_DOWN.max(cool_down_value),
        |(ms, _)| Duration::from_millis(*ms),
    );
    if max_value < cool_down_value {
        // Reported where the conflict is written: this section's max, else this section's
        // cool-down; when both come from the defaults, the defaults' own check reports it.
        let at = [&max_cool_down, &cool_down]
            .into_iter()
            .flatten()
            .map(|(_, at)| at.as_str())
            .find(|at| at.starts_with(path))
            .unwrap_or(BREAKER_DEFAULTS_PATH)
            .to_owned();
        let message = if at.ends_with(".cool_down_ms") {
            "must not exceed max_cool_down_ms"
        } else {
            "must be at least cool_down_ms"
        };
        check(false, &at, message);
    }
    valid.then_some(CircuitBreakerConfig {
        consecutive_failures: failures.map_or(DEFAULT_BREAKER_FAILURES, |(n, _)| n),
        cool_down: cool_down_value,
        max_cool_down: max_value,
        half_open_probes: probes.map_or(1, |(n, _)| n),
    })
}

/// One breaker guards each endpoint, so every route that reaches an endpoint must agree on it.
fn check_shared_breakers(doc: &Doc, routes: &[Route], errors: &mut Vec<Diagnostic>) {
    let mut first: BTreeMap<&str, (usize, &str, Option<CircuitBreakerConfig>)> = BTreeMap::new();
    for (i, route) in routes.iter().enumerate() {
        let mut by_stage: Vec<(&String, &String)> = route.integration.endpoints().collect();
        by_stage.sort();
        for (stage, endpoint) in by_stage {
            let mine = route.integration.circuit_breaker;
            match first.get(endpoint.as_str()) {
                None => {
                    first.insert(endpoint, (i, stage, mine));
                }
                Some((j, other_stage, theirs)) if *theirs != mine => {
                    let at = format!("routes[{i}].integration");
                    let at = if doc.get(&format!("{at}.circuit_breaker")).is_some() {
                        format!("{at}.circuit_breaker")
                    } else {
                        format!("{at}.endpoint_name")
                    };
                    errors.push(doc.error(
                        &at,
                        format!(
                            "endpoint `{endpoint}` (stage `{stage}`) has one circuit breaker, but routes[{j}] (stage `{other_stage}`) sets it differently"
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
    }
}

fn valid_stage_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn check_throttle(doc: &Doc, path: &str, t: &ThrottleSpec, errors: &mut Vec<Diagnostic>) {
    if !(t.rate_limit.is_finite() && t.rate_limit > 0.0) {
        errors.push(doc.error(&format!("{path}.rate_limit"), "must be > 0"));
    }
    if t.burst_limit < 1 {
        errors.push(doc.error(&format!("{path}.burst_limit"), "must be >= 1"));
    }
}

fn compile_stages(doc: &Doc, errors: &mut Vec<Diagnostic>) -> BTreeMap<String, Stage> {
    let mut stages = BTreeMap::new();
    let Some(map) = doc.get("stages").and_then(Value::as_object) else {
        errors.push(doc.error(
            "stages",
            "required: a mapping of stage name to settings (e.g. `stages: { prod: {} }`)",
        ));
        return stages;
    };
    if map.is_empty() {
        errors.push(doc.error("stages", "at least one stage is required"));
    }
    for name in map.keys() {
        let path = format!("stages.{name}");
        if !valid_stage_name(name) {
            errors.push(doc.error(
                &path,
                "stage names use letters, digits, `-` and `_` (at most 128)",
            ));
        }
        if name == "healthz" {
            errors.push(doc.error(
                &path,
                "`healthz` is reserved for the load balancer health check",
            ));
        }
        let raw: RawStage = if doc.get(&path).is_none_or(Value::is_null) {
            RawStage {
                variables: BTreeMap::new(),
                throttle: None,
                route_throttles: BTreeMap::new(),
                cache: None,
                canary: None,
            }
        } else {
            match doc.deserialize(&path) {
                Ok(r) => r,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            }
        };
        let check_variable = |vpath: &str, var: &str, value: &str, errors: &mut Vec<Diagnostic>| {
            if var.is_empty()
                || var.len() > 64
                || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                errors.push(doc.error(
                    vpath,
                    "variable names use letters, digits and `_` (at most 64)",
                ));
            }
            if value.len() > 512 {
                errors.push(doc.error(vpath, "values are at most 512 characters"));
            }
        };
        for (var, value) in &raw.variables {
            check_variable(&format!("{path}.variables.{var}"), var, value, errors);
        }
        if let Some(t) = &raw.throttle {
            check_throttle(doc, &format!("{path}.throttle"), t, errors);
        }
        let mut route_throttles = Vec::new();
        for (key, t) in &raw.route_throttles {
            let tpath = format!("{path}.route_throttles.{key}");
            check_throttle(doc, &tpath, t, errors);
            match RouteKey::parse(key) {
                Some(route) => route_throttles.push(RouteThrottle {
                    route,
                    throttle: *t,
                }),
                None => errors.push(doc.error(
                    &tpath,
                    "keys are `METHOD /resource/path`, e.g. `GET /recommended-movies/{user_id}`",
                )),
            }
        }
        let cache = cache::stage_cache(
            doc,
            &format!("{path}.cache"),
            (name, &raw.variables),
            raw.cache,
            errors,
        );
        let mut stage = Stage {
            name: name.clone(),
            variables: raw.variables,
            throttle: raw.throttle,
            route_throttles,
            cache,
            canary: None,
            is_canary: false,
        };
        stage.canary = raw.canary.map(|c| {
            let at = format!("{path}.canary");
            Arc::new(canary::compile(doc, &at, &stage, c, check_variable, errors))
        });
        stages.insert(name.clone(), stage);
    }
    stages
}

/// Parses `"GET /path"` or API Gateway's `"/path/GET"` into (method, path).
/// ([`RouteKey::parse`], taken apart.)
pub fn parse_route_key(key: &str) -> Option<(String, String)> {
    RouteKey::parse(key).map(|k| (k.method, k.path))
}

fn normalize_path(p: &str) -> String {
    let trimmed = p.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".to_owned()
    } else {
        trimmed.to_owned()
    }
}

fn compile_routes(
    doc: &Doc,
    stages: &BTreeMap<String, Stage>,
    models: &Models,
    breaker_defaults: Option<&RawCircuitBreaker>,
    errors: &mut Vec<Diagnostic>,
) -> Vec<Route> {
    let mut routes = Vec::new();
    let Some(list) = doc.get("routes").and_then(Value::as_array) else {
        errors.push(doc.error("routes", "required: a list of routes"));
        return routes;
    };
    for i in 0..list.len() {
        let path = format!("routes[{i}]");
        let mut raw: RawRoute = match doc.deserialize(&path) {
            Ok(r) => r,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let fields = stream::RouteFields {
            timeout_ms: raw.integration.timeout_ms.is_some(),
            responses: raw.integration._responses.is_some(),
            target_model: raw.integration.target_model.is_some(),
            enable_explanations: raw.integration.enable_explanations.is_some(),
            session_id: raw.integration.session_id.as_deref(),
            cache: raw.cache.is_some(),
            shadow: raw.shadow.is_some(),
        };
        let limits = stream::compile(
            doc,
            &path,
            raw.integration.mode,
            raw.integration.stream.take(),
            &fields,
            errors,
        );
        let mut integration = compile_integration(
            doc,
            &format!("{path}.integration"),
            raw.integration,
            stages,
            breaker_defaults,
            errors,
        );
        if let Some(limits) = limits {
            integration.timeout = limits.first_byte;
            integration.stream = Some(limits);
        }
        let body = body_models(
            doc,
            &format!("{path}.validation.body"),
            &raw.validation.body,
            models,
            errors,
        );
        let validation = Validation {
            required_query: raw.validation.required_query,
            required_headers: raw
                .validation
                .required_headers
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            body,
        };
        let mut cache = cache::route_cache(doc, &format!("{path}.cache"), raw.cache, errors);
        if integration.stream.is_some() {
            // A stage cache skips a streaming route (its `cache` block is refused above).
            cache.enabled = Some(false);
        }
        let shadow = raw.shadow.map(|s| {
            let at = format!("{path}.shadow");
            shadow::compile(doc, &at, s, stages, integration.timeout, errors)
        });
        routes.push(Route {
            cache,
            shadow,
            method: raw.method.to_ascii_uppercase(),
            path: normalize_path(&raw.path),
            api_key_required: raw.api_key_required,
            validation,
            integration,
        });
    }
    routes
}

/// `validation.body`: media type → model name.
fn body_models(
    doc: &Doc,
    path: &str,
    raw: &Map<String, Value>,
    models: &Models,
    errors: &mut Vec<Diagnostic>,
) -> Vec<(String, Arc<Model>)> {
    let mut out = Vec::new();
    for (media, name) in raw {
        let mpath = format!("{path}.{media}");
        if media != DEFAULT_MODEL_KEY && !media.contains('/') {
            errors.push(doc.error(
                &mpath,
                format!("keys are media types such as application/json, or {DEFAULT_MODEL_KEY}"),
            ));
            continue;
        }
        let Some(name) = name.as_str() else {
            errors.push(doc.error(&mpath, "a model name (a key of `models`)"));
            continue;
        };
        match models.get(name) {
            Some(model) => out.push((media.to_ascii_lowercase(), model.clone())),
            // A model that failed to compile has its own error already.
            None if doc.get(&format!("models.{name}")).is_some() => {}
            None => errors.push(doc.error(
                &mpath,
                format!("no model `{name}` (models: {})", models.names().join(", ")),
            )),
        }
    }
    out
}

fn compile_integration(
    doc: &Doc,
    path: &str,
    raw: RawIntegration,
    stages: &BTreeMap<String, Stage>,
    breaker_defaults: Option<&RawCircuitBreaker>,
    errors: &mut Vec<Diagnostic>,
) -> Integration {
    let endpoint_by_stage = endpoint_names(
        doc,
        &format!("{path}.endpoint_name"),
        &raw.endpoint_name,
        stages.values().map(|s| (s, "")),
        errors,
    );
    let canary_endpoint_by_stage = endpoint_names(
        doc,
        &format!("{path}.endpoint_name"),
        &raw.endpoint_name,
        stages
            .values()
            .filter_map(|s| s.canary.as_ref().map(|c| (&c.view, " (canary)"))),
        errors,
    );
    let timeout = Duration::from_millis(raw.timeout_ms.unwrap_or(29_000));
    check_timeout(doc, path, timeout, errors);
    let mut source = |field: &str, expr: Option<String>| -> Option<ParamSource> {
        let expr = expr?;
        ParamSource::parse(&expr)
            .map_err(|m| errors.push(doc.error(&format!("{path}.{field}"), m)))
            .ok()
    };
    let custom_attributes = source("custom_attributes", raw.custom_attributes);
    let inference_id = source("inference_id", raw.inference_id);
    let target_variant = source("target_variant", raw.target_variant);
    let target_model = source("target_model", raw.target_model);
    let inference_component_name = source("inference_component_name", raw.inference_component_name);
    let target_container_hostname =
        source("target_container_hostname", raw.target_container_hostname);
    let session_id = source("session_id", raw.session_id);
    let enable_explanations = source("enable_explanations", raw.enable_explanations);
    let request_headers = templates::request_parameters(
        doc,
        &format!("{path}.request_parameters"),
        &raw.request_parameters,
        errors,
    );
    let request_templates = templates::templates(
        doc,
        &format!("{path}.request_templates"),
        &raw.request_templates,
        errors,
    );
    let responses = templates::integration_responses(doc, &format!("{path}.responses"), errors);
    let circuit_breaker = compile_breaker(
        doc,
        &format!("{path}.circuit_breaker"),
        raw.circuit_breaker.as_ref(),
        breaker_defaults,
        errors,
    );
    Integration {
        circuit_breaker,
        stream: None,
        request_headers,
        request_templates,
        passthrough: raw.passthrough_behavior,
        responses,
        endpoint_by_stage,
        canary_endpoint_by_stage,
        content_type: raw
            .content_type
            .unwrap_or_else(|| "application/json".to_owned()),
        accept: raw.accept.unwrap_or_else(|| "application/json".to_owned()),
        timeout,
        custom_attributes,
        inference_id,
        target_variant,
        target_model,
        inference_component_name,
        target_container_hostname,
        session_id,
        enable_explanations,
    }
}

/// A call's `timeout_ms` (under `path`) within [`MIN_ROUTE_TIMEOUT`]..=[`MAX_ROUTE_TIMEOUT`].
pub(super) fn check_timeout(
    doc: &Doc,
    path: &str,
    timeout: Duration,
    errors: &mut Vec<Diagnostic>,
) {
    if !(MIN_ROUTE_TIMEOUT..=MAX_ROUTE_TIMEOUT).contains(&timeout) {
        errors.push(doc.error(
            &format!("{path}.timeout_ms"),
            "must be between 50 and 60000",
        ));
    }
}

/// `template` (an `endpoint_name` at `path`) resolved in each of `stages` (a stage, or a canary view
/// with `which` naming it in errors), each name checked.
pub(super) fn endpoint_names<'a>(
    doc: &Doc,
    path: &str,
    template: &str,
    stages: impl IntoIterator<Item = (&'a Stage, &'static str)>,
    errors: &mut Vec<Diagnostic>,
) -> HashMap<String, String> {
    let mut endpoint_by_stage = HashMap::new();
    for (stage, which) in stages {
        match resolve_stage_variables(template, &stage.variables) {
            Ok(name) if valid_endpoint_name(&name) => {
                endpoint_by_stage.insert(stage.name.clone(), name);
            }
            Ok(name) => errors.push(doc.error(
                path,
                format!("in stage `{}`{which}: `{name}` is not a SageMaker endpoint name (letters, digits and `-`, at most 63)", stage.name),
            )),
            Err(var) => errors.push(doc.error(
                path,
                format!("stage `{}`{which} has no variable `{var}`", stage.name),
            )),
        }
    }
    endpoint_by_stage
}

/// Replaces `${stageVariables.x}`; the error is the name of a missing variable.
pub fn resolve_stage_variables(
    text: &str,
    vars: &BTreeMap<String, String>,
) -> Result<String, String> {
    const OPEN: &str = "${stageVariables.";
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find(OPEN) {
        out.push_str(&rest[..start]);
        let after = &rest[start + OPEN.len()..];
        let end = after.find('}').ok_or_else(|| after.to_owned())?;
        let name = &after[..end];
        out.push_str(vars.get(name).ok_or_else(|| name.to_owned())?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn valid_endpoint_name(name: &str) -> bool {
    crate::message::is_sagemaker_name(name, 63)
}

fn check_stage_route_throttles(
    doc: &Doc,
    stages: &BTreeMap<String, Stage>,
    routes: &[Route],
    errors: &mut Vec<Diagnostic>,
) {
    let keys: BTreeSet<(String, String)> = routes
        .iter()
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect();
    for stage in stages.values() {
        for RouteThrottle { route, .. } in &stage.route_throttles {
            if !keys.contains(&(route.method.clone(), route.path.clone())) {
                errors.push(doc.error(
                    &format!("stages.{}.route_throttles", stage.name),
                    format!("no route `{route}`"),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    const GOOD: &str = r#"
stages:
  prod:
    variables: { endpoint: movie-recommender-prod }
    throttle: { rate_limit: 1000, burst_limit: 2000 }
routes:
  - method: GET
    path: /recommended-movies/{user_id}
    api_key_required: true
    validation: { required_query: [k, inference_type] }
    integration:
      endpoint_name: "${stageVariables.endpoint}"
"#;

    #[test]
    fn good_config_compiles() {
        let c = GatewayConfig::parse("g.yaml", GOOD, &no_env).unwrap();
        assert_eq!(
            c.routes[0].integration.endpoint_by_stage["prod"],
            "movie-recommender-prod"
        );
        assert_eq!(c.routes[0].integration.timeout, Duration::from_secs(29));
        assert_eq!(c.server.keep_alive, Duration::from_secs(75));
        assert_eq!(
            c.routes[0].integration.custom_attributes,
            Some(ParamSource::Context("requestId".into()))
        );
        assert_eq!(c.sagemaker.client, SageMakerClient::Lean);
    }

    #[test]
    fn body_timeout_and_memory_budget() {
        let c = GatewayConfig::parse("g.yaml", GOOD, &no_env).unwrap();
        assert_eq!(
            (c.server.body_timeout, c.server.memory_budget),
            (Duration::from_secs(10), None)
        );
        let with = |server: &str| format!("server:\n{server}{GOOD}");
        let c = GatewayConfig::parse(
            "g.yaml",
            &with("  body_timeout_secs: 3\n  max_body_bytes: 1024\n  memory_budget_bytes: 4096\n"),
            &no_env,
        )
        .unwrap();
        assert_eq!(
            (c.server.body_timeout, c.server.memory_budget),
            (Duration::from_secs(3), Some(4096))
        );
        let errs = GatewayConfig::parse(
            "g.yaml",
            &with("  body_timeout_secs: 0\n  memory_budget_bytes: 1048576\n"),
            &no_env,
        )
        .unwrap_err()
        .to_string();
        assert!(
            errs.contains("server.body_timeout_secs: must be > 0"),
            "{errs}"
        );
        assert!(
            errs.contains("server.memory_budget_bytes: must be at least server.max_body_bytes"),
            "{errs}"
        );
        assert_eq!(c.server.max_requests_in_flight, None);
        let c = GatewayConfig::parse("g.yaml", &with("  max_requests_in_flight: 3\n"), &no_env)
            .unwrap();
        assert_eq!(c.server.max_requests_in_flight, Some(3));
        let errs = GatewayConfig::parse("g.yaml", &with("  max_requests_in_flight: 0\n"), &no_env)
            .unwrap_err()
            .to_string();
        assert!(
            errs.contains("server.max_requests_in_flight: must be > 0"),
            "{errs}"
        );
    }

    #[test]
    fn sagemaker_client_is_lean_or_sdk() {
        let with = |v: &str| format!("sagemaker:\n  client: {v}\n{GOOD}");
        let sdk = GatewayConfig::parse("g.yaml", &with("sdk"), &no_env).unwrap();
        assert_eq!(sdk.sagemaker.client, SageMakerClient::Sdk);
        let errs = GatewayConfig::parse("g.yaml", &with("fast"), &no_env).unwrap_err();
        let text = format!("{errs:?}");
        assert!(text.contains("sagemaker.client"), "{text}");
    }

    #[test]
    fn a_canary_compiles_into_a_view_with_its_own_endpoint_and_cache_scope() {
        let text = GOOD.replace(
            "    throttle: { rate_limit: 1000, burst_limit: 2000 }\n",
            "    throttle: { rate_limit: 1000, burst_limit: 2000 }\n    canary: { percent_traffic: 5, stage_variable_overrides: { endpoint: movie-recommender-v2, extra: x }, sticky: { by: parameter, name: method.request.path.user_id } }\n",
        );
        let c = GatewayConfig::parse("g.yaml", &text, &no_env).unwrap();
        let prod = &c.stages["prod"];
        let canary = prod.canary.as_deref().unwrap();
        assert_eq!(canary.percent_traffic, 5.0);
        assert_eq!(
            canary.sticky,
            Some(canary::Sticky::Parameter(ParamSource::Path(
                "user_id".into()
            )))
        );
        assert!(canary.view.is_canary && !prod.is_canary);
        assert_eq!(canary.view.variables["extra"], "x");
        assert_ne!(canary.view.cache.scope, prod.cache.scope);
        assert!(!canary.view.cache.enabled);
        let integration = &c.routes[0].integration;
        assert_eq!(
            integration.endpoint(prod).unwrap(),
            "movie-recommender-prod"
        );
        assert_eq!(
            integration.endpoint(&canary.view).unwrap(),
            "movie-recommender-v2"
        );
    }

    #[test]
    fn canary_errors_are_located() {
        let text = r#"
stages:
  prod:
    variables: { endpoint: ep }
    canary: { percent_traffic: 150, stage_variable_overrides: { endpoint: "bad name", "a-b": x }, sticky: { by: cookie } }
  temp:
    variables: { endpoint: ep }
    canary: { percent_traffic: 1, sticky: { by: parameter } }
routes:
  - method: GET
    path: /a
    integration: { endpoint_name: "${stageVariables.endpoint}" }
"#;
        let err = GatewayConfig::parse("g.yaml", text, &no_env)
            .unwrap_err()
            .to_string();
        for want in [
            "stages.prod.canary.percent_traffic: must be between 0.0 and 100.0",
            "stages.prod.canary.stage_variable_overrides.a-b: variable names use letters",
            "stages.prod.canary.sticky.by: one of `api_key`, `parameter`",
            "stages.temp.canary.sticky.name: required with `by: parameter`",
            "routes[0].integration.endpoint_name: in stage `prod` (canary): `bad name` is not a SageMaker endpoint name",
        ] {
            assert!(err.contains(want), "{want}\n{err}");
        }
    }

    #[test]
    fn every_error_is_reported_with_its_position() {
        let text = r#"
server:
  keep_alive_secs: 0
stages:
  healthz: {}
  prod:
    throttle: { rate_limit: 0, burst_limit: 1 }
routes:
  - method: GET
    path: /a
    integration: { endpoint_name: "${stageVariables.nope}", timeout_ms: 70000 }
  - method: GET
    path: /b
    integration: { endpoint_name: ok, colour: blue }
"#;
        let err = GatewayConfig::parse("g.yaml", text, &no_env)
            .unwrap_err()
            .to_string();
        let expected = [
            "g.yaml:3:20: server.keep_alive_secs: must be > 0",
            "g.yaml:5:3: stages.healthz: `healthz` is reserved for the load balancer health check",
            "g.yaml:7:29: stages.prod.throttle.rate_limit: must be > 0",
            "g.yaml:11:35: routes[0].integration.endpoint_name: stage `healthz` has no variable `nope`",
            "g.yaml:11:35: routes[0].integration.endpoint_name: stage `prod` has no variable `nope`",
            "g.yaml:11:73: routes[0].integration.timeout_ms: must be between 50 and 60000",
            "g.yaml:14:47: routes[1].integration.colour: unknown field `colour`",
        ];
        for e in expected {
            assert!(err.contains(e), "missing `{e}` in:\n{err}");
        }
        assert!(err.contains("unknown field `colour`"), "{err}");
    }

    #[test]
    fn circuit_breakers_inherit_field_by_field_and_are_off_when_absent() {
        let text = r#"
sagemaker:
  circuit_breaker: { consecutive_failures: 7, cool_down_ms: 2000 }
stages:
  prod: {}
routes:
  - method: GET
    path: /inherits
    integration: { endpoint_name: a }
  - method: GET
    path: /overrides
    integration: { endpoint_name: b, circuit_breaker: { cool_down_ms: 90000, half_open_probes: 3 } }
  - method: GET
    path: /off
    integration: { endpoint_name: c, circuit_breaker: { enabled: false } }
"#;
        let c = GatewayConfig::parse("g.yaml", text, &no_env).unwrap();
        let breaker = |i: usize| c.routes[i].integration.circuit_breaker;
        let expected = CircuitBreakerConfig {
            consecutive_failures: 7,
            cool_down: Duration::from_secs(2),
            max_cool_down: Duration::from_secs(60),
            half_open_probes: 1,
        };
        assert_eq!(c.sagemaker.circuit_breaker, Some(expected));
        assert_eq!(breaker(0), Some(expected));
        assert_eq!(
            breaker(1),
            Some(CircuitBreakerConfig {
                cool_down: Duration::from_secs(90),
                max_cool_down: Duration::from_secs(90),
                half_open_probes: 3,
                ..expected
            })
        );
        assert_eq!(breaker(2), None);
        // Absent everywhere: off. Only on the route: on, with the built-in defaults.
        let c = GatewayConfig::parse("g.yaml", GOOD, &no_env).unwrap();
        assert_eq!(c.routes[0].integration.circuit_breaker, None);
        let on = GOOD.replace(
            "      endpoint_name:",
            "      circuit_breaker: {}\n      endpoint_name:",
        );
        let c = GatewayConfig::parse("g.yaml", &on, &no_env).unwrap();
        assert_eq!(
            c.routes[0].integration.circuit_breaker,
            Some(CircuitBreakerConfig {
                consecutive_failures: DEFAULT_BREAKER_FAILURES,
                cool_down: DEFAULT_BREAKER_COOL_DOWN,
                max_cool_down: DEFAULT_BREAKER_MAX_COOL_DOWN,
                half_open_probes: 1,
            })
        );
    }

    #[test]
    fn circuit_breaker_errors_are_located_where_they_are_written() {
        let text = r#"
sagemaker:
  circuit_breaker: { half_open_probes: 0, max_cool_down_ms: 1000 }
stages:
  prod: {}
routes:
  - method: GET
    path: /a
    integration: { endpoint_name: a, circuit_breaker: { consecutive_failures: 0, cool_down_ms: 500 } }
  - method: GET
    path: /b
    integration: { endpoint_name: b, circuit_breaker: { colour: red } }
  - method: GET
    path: /c
    integration: { endpoint_name: c, circuit_breaker: { cool_down_ms: 5000 } }
"#;
        let err = GatewayConfig::parse("g.yaml", text, &no_env)
            .unwrap_err()
            .to_string();
        let expected = [
            "g.yaml:3:40: sagemaker.circuit_breaker.half_open_probes: must be between 1 and 100",
            // The built-in cool-down (5000) is above the defaults' cap.
            "g.yaml:3:61: sagemaker.circuit_breaker.max_cool_down_ms: must be at least cool_down_ms",
            "g.yaml:9:79: routes[0].integration.circuit_breaker.consecutive_failures: must be between 1 and 1000",
            "g.yaml:12:65: routes[1].integration.circuit_breaker.colour: unknown field `colour`",
            "g.yaml:15:71: routes[2].integration.circuit_breaker.cool_down_ms: must not exceed max_cool_down_ms",
        ];
        for e in expected {
            assert!(err.contains(e), "missing `{e}` in:\n{err}");
        }
        // Reported once, where written, not again for every route that inherits it.
        assert_eq!(err.matches(".half_open_probes:").count(), 1, "{err}");
        assert_eq!(err.lines().count(), expected.len(), "{err}");

        // One endpoint, one breaker: routes reaching it must agree.
        let text = r#"
stages:
  prod: {}
routes:
  - method: GET
    path: /a
    integration: { endpoint_name: a, circuit_breaker: { consecutive_failures: 3 } }
  - method: GET
    path: /b
    integration: { endpoint_name: a }
"#;
        let err = GatewayConfig::parse("g.yaml", text, &no_env)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "g.yaml:10:35: routes[1].integration.endpoint_name: endpoint `a` (stage `prod`) has one circuit breaker, but routes[0] (stage `prod`) sets it differently"
        );
    }

    #[test]
    fn limits_section_compiles_with_defaults_and_environment() {
        let memory = GatewayConfig::parse("g.yaml", GOOD, &no_env).unwrap();
        assert!(memory.limits.redis.is_none(), "memory is the default");
        let text = format!(
            "{GOOD}limits:\n  store: ${{env:STORE:-memory}}\n  on_store_failure: deny\n  redis:\n    url: \"rediss://cache.example:6379\"\n    password: \"${{env:TOKEN:-}}\"\n"
        );
        let env = |name: &str| match name {
            "STORE" => Some("redis".to_owned()),
            "TOKEN" => Some("s3cret-token".to_owned()),
            _ => None,
        };
        let c = GatewayConfig::parse("g.yaml", &text, &env).unwrap();
        let r = c.limits.redis.unwrap();
        assert_eq!(r.url, "rediss://cache.example:6379");
        assert_eq!(r.password.as_deref(), Some("s3cret-token"));
        assert_eq!(r.username, None, "absent");
        assert_eq!(r.timeout, Duration::from_millis(50));
        assert_eq!(r.connections, 2);
        assert_eq!(r.consecutive_failures, 3);
        assert_eq!(r.key_prefix, "sagegate");
        assert_eq!(r.on_failure, FailurePolicy::Deny);
        assert!(!format!("{r:?}").contains("s3cret"), "no secret in Debug");
        // An empty password from `${env:TOKEN:-}` is no password.
        let c = GatewayConfig::parse("g.yaml", &text, &|n| (n == "STORE").then(|| "redis".into()))
            .unwrap();
        assert_eq!(c.limits.redis.unwrap().password, None);
    }

    #[test]
    fn limits_errors_are_located() {
        let text = format!(
            "{GOOD}limits:\n  store: redis\n  on_store_failure: maybe\n  redis:\n    url: \"http://u:pw@h:1\"\n    timeout_ms: 0\n    connections: 65\n    key_prefix: \"a{{b}}\"\n    consecutive_failures: 0\n    colour: blue\n"
        );
        let err = GatewayConfig::parse("g.yaml", &text, &no_env)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("limits.redis.colour: unknown field `colour`"),
            "{err}"
        );
        let text = text.replace("    colour: blue\n", "");
        let err = GatewayConfig::parse("g.yaml", &text, &no_env)
            .unwrap_err()
            .to_string();
        for e in [
            "g.yaml:15:21: limits.on_store_failure: `maybe` is not a policy; expected local or deny",
            "g.yaml:17:10: limits.redis.url: `http://h:1` must start with redis:// or rediss:// (TLS)",
            "g.yaml:18:17: limits.redis.timeout_ms: must be between 1 and 5000",
            "g.yaml:19:18: limits.redis.connections: must be between 1 and 64",
            "g.yaml:20:17: limits.redis.key_prefix: use 1 to 64 letters",
            "g.yaml:21:27: limits.redis.consecutive_failures: must be between 1 and 100",
        ] {
            assert!(err.contains(e), "missing `{e}` in:\n{err}");
        }
        assert!(!err.contains("pw"), "no password in messages: {err}");
        let err = GatewayConfig::parse(
            "g.yaml",
            &format!("{GOOD}limits:\n  store: redis\n"),
            &no_env,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("limits.store: `redis` needs a `limits.redis` section with a `url`"),
            "{err}"
        );
    }

    #[test]
    fn body_models_name_compiled_models_by_media_type() {
        let text = r#"
models:
  Pet: { type: object }
stages:
  prod: {}
routes:
  - method: POST
    path: /a
    validation: { body: { Application/JSON: Pet, $default: Pet } }
    integration: { endpoint_name: a }
  - method: POST
    path: /b
    validation: { body: { json: Pet, text/plain: Cat, application/xml: [Pet] } }
    integration: { endpoint_name: a }
"#;
        let err = GatewayConfig::parse("g.yaml", text, &no_env)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err.lines().collect::<Vec<_>>(),
            [
                "g.yaml:13:33: routes[1].validation.body.json: keys are media types such as application/json, or $default",
                "g.yaml:13:50: routes[1].validation.body.text/plain: no model `Cat` (models: Pet)",
                "g.yaml:13:55: routes[1].validation.body.application/xml: a model name (a key of `models`)",
            ]
        );
        let ok = text
            .split(
                "  - method: POST
    path: /b",
            )
            .next()
            .unwrap();
        let c = GatewayConfig::parse("g.yaml", ok, &no_env).unwrap();
        let body: Vec<(&str, &str)> = c.routes[0]
            .validation
            .body
            .iter()
            .map(|(m, model)| (m.as_str(), model.name.as_str()))
            .collect();
        assert_eq!(body, [("application/json", "Pet"), ("$default", "Pet")]);
    }

    #[test]
    fn route_keys_in_both_spellings() {
        assert_eq!(
            parse_route_key("GET /a/{b}"),
            Some(("GET".into(), "/a/{b}".into()))
        );
        assert_eq!(
            parse_route_key("/a/{b}/GET"),
            Some(("GET".into(), "/a/{b}".into()))
        );
        assert_eq!(parse_route_key("FETCH /a"), None);
    }
}
