//! Trace export settings: `telemetry.otlp` in `gateway.yaml`, merged with the standard `OTEL_*`
//! environment variables an ADOT or OpenTelemetry user already sets.
//!
//! ```yaml
//! telemetry:
//!   otlp:
//!     enabled: false                       # default false: no span is built, nothing is sent
//!     endpoint: "http://127.0.0.1:4318"    # collector base URL; /v1/traces is appended
//!     protocol: http/protobuf              # the only protocol (no gRPC in the binary)
//!     service_name: sagegate               # resource `service.name`
//!     sample_ratio: 1.0                    # share of requests recorded (see "Sampling" below)
//!     trust_caller_sampling: false         # follow a key holder's sampled flag (default: never)
//!     timeout_ms: 10000                    # bound on one export call
//!     max_queue_size: 2048                 # spans waiting for export; more are dropped and counted
//!     max_export_batch_size: 512           # spans per export call
//!     schedule_delay_ms: 5000              # longest wait before a partial batch is sent
//!     headers: {}                          # extra HTTP headers on every export
//! ```
//!
//! Precedence, per setting: an `OTEL_*` variable wins over the file, which wins over the default
//! (DESIGN §2: the operator's deploy-time setting wins). The variables:
//!
//! | setting | variables, first one set wins |
//! |---|---|
//! | `enabled` | `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` turn export off; nothing turns it on (enabling is the file's `enabled`, which the shipped file reads from `SAGEGATE_OTLP_ENABLED`) |
//! | `endpoint` | `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as is), `OTEL_EXPORTER_OTLP_ENDPOINT` (+ `/v1/traces`) |
//! | `protocol` | `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, `OTEL_EXPORTER_OTLP_PROTOCOL` (must be `http/protobuf`) |
//! | `service_name` | `OTEL_SERVICE_NAME`, `service.name` in `OTEL_RESOURCE_ATTRIBUTES` |
//! | `sample_ratio` | `OTEL_TRACES_SAMPLER` (`always_on`, `always_off`, `traceidratio`, `parentbased_*`) with `OTEL_TRACES_SAMPLER_ARG` |
//! | `timeout_ms` | `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`, `OTEL_EXPORTER_OTLP_TIMEOUT` (milliseconds) |
//! | `max_queue_size`, `max_export_batch_size`, `schedule_delay_ms` | `OTEL_BSP_MAX_QUEUE_SIZE`, `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`, `OTEL_BSP_SCHEDULE_DELAY` |
//! | `headers` | `OTEL_EXPORTER_OTLP_TRACES_HEADERS`, `OTEL_EXPORTER_OTLP_HEADERS` add to and override the file's (applied by the exporter) |
//!
//! Sampling: a request is exported only if it got past authentication (a valid key, or a route
//! without `api_key_required`): a 403 for an unknown route, a missing or bad key, the failed-key
//! 429, and refusals before routing (431, 413, 400) are never sampled, whatever the caller sent or
//! the ratio says (DESIGN "Edge rules": a caller without a valid key controls no cost). Of the
//! rest, `sample_ratio` decides. A caller's own decision (`traceparent` flags, `X-Amzn-Trace-Id`
//! `Sampled=`) is followed only with `trust_caller_sampling: true`, and then only for a caller that
//! presented a valid key; anonymous callers of public routes are sampled by the ratio alone.
//! `OTEL_TRACES_SAMPLER=parentbased_*` sets the ratio and does not imply trust: the caller's trace
//! id is joined either way, its sampling decision is the operator's to trust.
//!
//! Other resource attributes come from `OTEL_RESOURCE_ATTRIBUTES` as the SDK reads it. A bad
//! variable is reported like a bad field, located as `(environment):0:0: NAME: message`.
//!
//! Invariant: when `enabled` is false (the default) nothing else here is looked at beyond
//! validation, and the request path does no tracing work.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::diag::Diagnostic;
use super::yaml::Doc;

/// Default collector base URL: an ADOT or OpenTelemetry collector beside the gateway.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:4318";
/// The path of traces under the collector base URL (OTLP/HTTP).
pub const TRACES_PATH: &str = "/v1/traces";
/// The one protocol this build speaks.
pub const PROTOCOL: &str = "http/protobuf";

/// `telemetry:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTelemetry {
    /// OTLP trace export; see [`RawOtlp`].
    #[serde(default)]
    otlp: Option<RawOtlp>,
}

/// `telemetry.otlp:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOtlp {
    /// Export one span per request with a child per stage (default false).
    #[serde(default)]
    enabled: bool,
    /// Collector base URL, `http://host:port` (default `http://127.0.0.1:4318`); `/v1/traces` is
    /// appended. Only `http://`: the collector is expected on the task's loopback or its network.
    endpoint: Option<String>,
    /// `http/protobuf` (the default and only value).
    protocol: Option<String>,
    /// Resource `service.name` (default `sagegate`).
    service_name: Option<String>,
    /// Share of authenticated requests recorded, 0.0..=1.0 (default 1.0). Requests refused
    /// before or at authentication are never recorded.
    sample_ratio: Option<f64>,
    /// Follow the sampling decision (`traceparent` flags, `X-Amzn-Trace-Id` `Sampled=`) of a
    /// caller with a valid API key (default false: the ratio decides, so no caller chooses what
    /// is exported and billed). Anonymous callers are never trusted.
    #[serde(default)]
    trust_caller_sampling: bool,
    /// Bound on one export call in milliseconds (default 10000).
    timeout_ms: Option<u64>,
    /// Spans held for export at most (default 2048); when full, new spans are dropped and counted.
    max_queue_size: Option<usize>,
    /// Spans per export call at most (default 512).
    max_export_batch_size: Option<usize>,
    /// Milliseconds a partial batch waits before it is sent (default 5000).
    schedule_delay_ms: Option<u64>,
    /// HTTP headers sent with every export (default none).
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// Compiled telemetry settings.
#[derive(Debug, Clone, Default)]
pub struct TelemetryConfig {
    /// OTLP trace export; `None` when off.
    pub otlp: Option<OtlpConfig>,
}

/// How requests are sampled (see the module docs, "Sampling").
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// Share of authenticated requests recorded.
    pub ratio: f64,
    /// Follow the sampled flag of a caller with a valid API key, when it sent one
    /// (`trust_caller_sampling`; never set by `OTEL_TRACES_SAMPLER`).
    pub trust_caller: bool,
}

/// OTLP export, resolved from the file and the environment.
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpConfig {
    /// Full URL the spans are POSTed to (…`/v1/traces`).
    pub traces_url: String,
    /// Resource `service.name`.
    pub service_name: String,
    /// Sampler.
    pub sampling: Sampling,
    /// Bound on one export call.
    pub timeout: Duration,
    /// Spans held for export at most.
    pub max_queue_size: usize,
    /// Spans per export call at most.
    pub max_export_batch_size: usize,
    /// Longest wait of a partial batch.
    pub schedule_delay: Duration,
    /// Headers from the file (the exporter adds `OTEL_EXPORTER_OTLP_*HEADERS`).
    pub headers: BTreeMap<String, String>,
}

const ENV_FILE: &str = "(environment)";

fn env_error(name: &str, message: impl Into<String>) -> Diagnostic {
    Diagnostic {
        file: ENV_FILE.to_owned(),
        line: 0,
        col: 0,
        path: name.to_owned(),
        message: message.into(),
    }
}

/// The first of `names` that is set to a non-empty value, with its name.
fn first_env(
    env: &dyn Fn(&str) -> Option<String>,
    names: &[&'static str],
) -> Option<(&'static str, String)> {
    names.iter().find_map(|n| {
        env(n)
            .filter(|v| !v.trim().is_empty())
            .map(|v| (*n, v.trim().to_owned()))
    })
}

/// Compiles `telemetry:`; `env` is the process environment (injected for tests).
pub(super) fn compile(
    doc: &Doc,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<Diagnostic>,
) -> TelemetryConfig {
    let raw: RawTelemetry = if doc.get("telemetry").is_none_or(Value::is_null) {
        RawTelemetry::default()
    } else {
        match doc.deserialize("telemetry") {
            Ok(r) => r,
            Err(e) => {
                errors.push(e);
                return TelemetryConfig::default();
            }
        }
    };
    let raw = raw.otlp.unwrap_or_default();
    let mut check = |ok: bool, field: &str, message: &str| {
        if !ok {
            errors.push(doc.error(&format!("telemetry.otlp.{field}"), message));
        }
    };
    // The file is validated whether or not export is on, so a typo never waits for the day it is.
    let ratio = raw.sample_ratio.unwrap_or(1.0);
    check(
        ratio.is_finite() && (0.0..=1.0).contains(&ratio),
        "sample_ratio",
        "must be between 0.0 and 1.0",
    );
    check(raw.timeout_ms != Some(0), "timeout_ms", "must be > 0");
    check(
        raw.schedule_delay_ms != Some(0),
        "schedule_delay_ms",
        "must be > 0",
    );
    check(
        raw.max_queue_size != Some(0),
        "max_queue_size",
        "must be > 0",
    );
    check(
        raw.max_export_batch_size != Some(0),
        "max_export_batch_size",
        "must be > 0",
    );
    if let Some(p) = &raw.protocol {
        check(
            p == PROTOCOL,
            "protocol",
            "must be `http/protobuf` (the only OTLP protocol in this build)",
        );
    }
    if let Some(e) = &raw.endpoint {
        check(
            valid_http_url(e),
            "endpoint",
            "must be an http:// URL such as http://127.0.0.1:4318",
        );
    }
    if let Some(n) = &raw.service_name {
        check(!n.trim().is_empty(), "service_name", "must not be empty");
    }
    for name in raw.headers.keys() {
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            errors.push(doc.error(
                &format!("telemetry.otlp.headers.{name}"),
                "header names use letters, digits, `-` and `_`",
            ));
        }
    }

    let disabled_by_env = env("OTEL_SDK_DISABLED")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
        || env("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim().eq_ignore_ascii_case("none"));
    if !raw.enabled || disabled_by_env {
        return TelemetryConfig { otlp: None };
    }

    let traces_url = match first_env(env, &["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]) {
        Some((name, url)) => {
            if !valid_http_url(&url) {
                errors.push(env_error(name, format!("`{url}` must be an http:// URL")));
            }
            url
        }
        None => {
            let (from, base) = match first_env(env, &["OTEL_EXPORTER_OTLP_ENDPOINT"]) {
                Some((name, url)) => (Some(name), url),
                None => (
                    None,
                    raw.endpoint
                        .clone()
                        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned()),
                ),
            };
            if let Some(name) = from
                && !valid_http_url(&base)
            {
                errors.push(env_error(name, format!("`{base}` must be an http:// URL")));
            }
            format!("{}{TRACES_PATH}", base.trim_end_matches('/'))
        }
    };
    if let Some((name, p)) = first_env(
        env,
        &[
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ],
    ) && p != PROTOCOL
    {
        errors.push(env_error(
            name,
            format!("`{p}` is not supported: this build exports `http/protobuf` only"),
        ));
    }
    let service_name = env("OTEL_SERVICE_NAME")
        .filter(|v| !v.trim().is_empty())
        .or_else(|| {
            env("OTEL_RESOURCE_ATTRIBUTES").and_then(|attrs| {
                attrs.split(',').find_map(|kv| {
                    let (k, v) = kv.split_once('=')?;
                    (k.trim() == "service.name" && !v.trim().is_empty())
                        .then(|| v.trim().to_owned())
                })
            })
        })
        .or(raw.service_name)
        .unwrap_or_else(|| "sagegate".to_owned());
    let ratio = match sampler_from_env(env) {
        Ok(from_env) => from_env.unwrap_or(ratio),
        Err(e) => {
            errors.push(e);
            ratio
        }
    };
    let sampling = Sampling {
        ratio,
        trust_caller: raw.trust_caller_sampling,
    };
    let mut number = |names: &[&'static str], file: Option<u64>, default: u64| -> u64 {
        match first_env(env, names) {
            Some((name, v)) => match v.parse::<u64>() {
                Ok(n) if n > 0 => n,
                _ => {
                    errors.push(env_error(name, format!("`{v}` must be a whole number > 0")));
                    default
                }
            },
            None => file.unwrap_or(default),
        }
    };
    let timeout_ms = number(
        &[
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
            "OTEL_EXPORTER_OTLP_TIMEOUT",
        ],
        raw.timeout_ms,
        10_000,
    );
    let max_queue_size = number(
        &["OTEL_BSP_MAX_QUEUE_SIZE"],
        raw.max_queue_size.map(|n| n as u64),
        2048,
    );
    let max_export_batch_size = number(
        &["OTEL_BSP_MAX_EXPORT_BATCH_SIZE"],
        raw.max_export_batch_size.map(|n| n as u64),
        512,
    );
    let schedule_delay_ms = number(&["OTEL_BSP_SCHEDULE_DELAY"], raw.schedule_delay_ms, 5000);
    TelemetryConfig {
        otlp: Some(OtlpConfig {
            traces_url,
            service_name,
            sampling,
            timeout: Duration::from_millis(timeout_ms),
            max_queue_size: max_queue_size as usize,
            // The spec caps the batch at the queue size.
            max_export_batch_size: max_export_batch_size.min(max_queue_size) as usize,
            schedule_delay: Duration::from_millis(schedule_delay_ms),
            headers: raw.headers,
        }),
    }
}

/// The ratio of `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`, when set. The `parentbased_*`
/// samplers read the same as their root sampler: whether a caller's decision is followed is
/// `trust_caller_sampling`'s to say, not the environment's.
fn sampler_from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<f64>, Diagnostic> {
    let Some((_, sampler)) = first_env(env, &["OTEL_TRACES_SAMPLER"]) else {
        return Ok(None);
    };
    let arg = || -> Result<f64, Diagnostic> {
        match first_env(env, &["OTEL_TRACES_SAMPLER_ARG"]) {
            None => Ok(1.0),
            Some((name, v)) => match v.parse::<f64>() {
                Ok(r) if r.is_finite() && (0.0..=1.0).contains(&r) => Ok(r),
                _ => Err(env_error(
                    name,
                    format!("`{v}` must be a number between 0.0 and 1.0"),
                )),
            },
        }
    };
    let ratio = match sampler.as_str() {
        "always_on" | "parentbased_always_on" => 1.0,
        "always_off" | "parentbased_always_off" => 0.0,
        "traceidratio" | "parentbased_traceidratio" => arg()?,
        other => {
            return Err(env_error(
                "OTEL_TRACES_SAMPLER",
                format!(
                    "`{other}` is not supported (always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off, parentbased_traceidratio)"
                ),
            ));
        }
    };
    Ok(Some(ratio))
}

/// `http://host[:port][/path]`, with a host.
fn valid_http_url(url: &str) -> bool {
    url.strip_prefix("http://").is_some_and(|rest| {
        let host = rest.split('/').next().unwrap_or("");
        !host.is_empty() && !rest.bytes().any(|b| b.is_ascii_whitespace())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GatewayConfig;

    const BASE: &str = r#"
stages:
  prod: { variables: { endpoint: ep } }
routes:
  - method: GET
    path: /a
    integration: { endpoint_name: "${stageVariables.endpoint}" }
"#;

    fn parse(extra: &str, vars: &[(&str, &str)]) -> Result<Option<OtlpConfig>, String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let env = move |n: &str| vars.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        GatewayConfig::parse("g.yaml", &format!("{BASE}{extra}"), &env)
            .map(|c| c.telemetry.otlp)
            .map_err(|d| d.to_string())
    }

    #[test]
    fn off_by_default_even_with_otel_variables() {
        assert_eq!(parse("", &[]).unwrap(), None);
        assert_eq!(
            parse(
                "",
                &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://10.0.0.1:4318")]
            )
            .unwrap(),
            None
        );
        assert_eq!(
            parse("telemetry:\n  otlp: { enabled: false }\n", &[]).unwrap(),
            None
        );
    }

    #[test]
    fn defaults_when_enabled() {
        let c = parse("telemetry:\n  otlp: { enabled: true }\n", &[])
            .unwrap()
            .unwrap();
        assert_eq!(c.traces_url, "http://127.0.0.1:4318/v1/traces");
        assert_eq!(c.service_name, "sagegate");
        assert_eq!(
            c.sampling,
            Sampling {
                ratio: 1.0,
                trust_caller: false
            }
        );
        assert_eq!(c.timeout, Duration::from_secs(10));
        assert_eq!((c.max_queue_size, c.max_export_batch_size), (2048, 512));
        assert_eq!(c.schedule_delay, Duration::from_secs(5));
    }

    #[test]
    fn environment_wins_over_the_file() {
        let file = "telemetry:\n  otlp: { enabled: true, endpoint: \"http://file:4318/\", service_name: from-file, sample_ratio: 0.5, timeout_ms: 100 }\n";
        let c = parse(file, &[]).unwrap().unwrap();
        assert_eq!(c.traces_url, "http://file:4318/v1/traces");
        assert_eq!(c.service_name, "from-file");
        assert_eq!(c.sampling.ratio, 0.5);
        let c = parse(
            file,
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://generic:4318"),
                (
                    "OTEL_RESOURCE_ATTRIBUTES",
                    "deployment.environment=prod, service.name=from-attrs",
                ),
                ("OTEL_TRACES_SAMPLER", "traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ],
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.traces_url, "http://generic:4318/v1/traces");
        assert_eq!(c.service_name, "from-attrs");
        assert_eq!(
            c.sampling,
            Sampling {
                ratio: 0.25,
                trust_caller: false
            }
        );
        assert_eq!(c.timeout, Duration::from_millis(2500));
        let c = parse(
            file,
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://generic:4318"),
                (
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "http://signal:4318/custom",
                ),
                ("OTEL_SERVICE_NAME", "from-env"),
                ("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs"),
            ],
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.traces_url, "http://signal:4318/custom");
        assert_eq!(c.service_name, "from-env");
    }

    #[test]
    fn only_the_file_trusts_callers_sampling_decisions() {
        let on = "telemetry:\n  otlp: { enabled: true, sample_ratio: 0.5 }\n";
        let trusted = "telemetry:\n  otlp: { enabled: true, trust_caller_sampling: true }\n";
        let sampling =
            |file: &str, vars: &[(&str, &str)]| parse(file, vars).unwrap().unwrap().sampling;
        // A parent-based sampler from the environment sets the ratio, never the trust.
        for (sampler, arg, ratio) in [
            ("parentbased_always_on", None, 1.0),
            ("parentbased_always_off", None, 0.0),
            ("parentbased_traceidratio", Some("0.01"), 0.01),
        ] {
            let mut vars = vec![("OTEL_TRACES_SAMPLER", sampler)];
            vars.extend(arg.map(|a| ("OTEL_TRACES_SAMPLER_ARG", a)));
            assert_eq!(
                sampling(on, &vars),
                Sampling {
                    ratio,
                    trust_caller: false
                },
                "{sampler}"
            );
        }
        assert_eq!(
            sampling(
                trusted,
                &[
                    ("OTEL_TRACES_SAMPLER", "traceidratio"),
                    ("OTEL_TRACES_SAMPLER_ARG", "0.1")
                ]
            ),
            Sampling {
                ratio: 0.1,
                trust_caller: true
            }
        );
        let err = parse(
            "telemetry:\n  otlp:\n    trust_caller_sampling: maybe\n",
            &[],
        )
        .unwrap_err();
        assert!(
            err.contains("g.yaml:10:28: telemetry.otlp.trust_caller_sampling"),
            "{err}"
        );
    }

    #[test]
    fn standard_variables_turn_export_off() {
        let on = "telemetry:\n  otlp: { enabled: true }\n";
        assert_eq!(parse(on, &[("OTEL_SDK_DISABLED", "true")]).unwrap(), None);
        assert_eq!(
            parse(on, &[("OTEL_TRACES_EXPORTER", "none")]).unwrap(),
            None
        );
        assert!(
            parse(on, &[("OTEL_TRACES_EXPORTER", "otlp")])
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn every_error_is_located() {
        let err = parse(
            "telemetry:\n  otlp:\n    enabled: false\n    endpoint: https://collector:4318\n    protocol: grpc\n    sample_ratio: 2\n    timeout_ms: 0\n    colour: blue\n",
            &[],
        )
        .unwrap_err();
        assert!(
            err.contains("g.yaml:15:13: telemetry.otlp.colour: unknown field `colour`"),
            "{err}"
        );
        let err = parse(
            "telemetry:\n  otlp:\n    enabled: false\n    endpoint: https://collector:4318\n    protocol: grpc\n    sample_ratio: 2\n    timeout_ms: 0\n",
            &[],
        )
        .unwrap_err();
        for e in [
            "g.yaml:11:15: telemetry.otlp.endpoint: must be an http:// URL",
            "g.yaml:12:15: telemetry.otlp.protocol: must be `http/protobuf`",
            "g.yaml:13:19: telemetry.otlp.sample_ratio: must be between 0.0 and 1.0",
            "g.yaml:14:17: telemetry.otlp.timeout_ms: must be > 0",
        ] {
            assert!(err.contains(e), "missing `{e}` in:\n{err}");
        }
    }

    #[test]
    fn bad_variables_are_reported_by_name() {
        let on = "telemetry:\n  otlp: { enabled: true }\n";
        let err = parse(
            on,
            &[
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_TRACES_SAMPLER", "jaeger_remote"),
                ("OTEL_BSP_SCHEDULE_DELAY", "soon"),
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "collector:4318"),
            ],
        )
        .unwrap_err();
        for e in [
            "(environment):0:0: OTEL_EXPORTER_OTLP_PROTOCOL: `grpc` is not supported",
            "(environment):0:0: OTEL_TRACES_SAMPLER: `jaeger_remote` is not supported",
            "(environment):0:0: OTEL_BSP_SCHEDULE_DELAY: `soon` must be a whole number > 0",
            "(environment):0:0: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `collector:4318` must be an http:// URL",
        ] {
            assert!(err.contains(e), "missing `{e}` in:\n{err}");
        }
    }
}
