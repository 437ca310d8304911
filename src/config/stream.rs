//! Response streaming settings: `routes[i].integration.mode` and `routes[i].integration.stream`
//! in `gateway.yaml`.
//!
//! ```yaml
//! routes:
//!   - method: GET
//!     path: /recommended-movies/{user_id}/stream
//!     integration:
//!       endpoint_name: "${stageVariables.endpoint}"
//!       accept: application/jsonlines        # sent as X-Amzn-SageMaker-Accept
//!       mode: stream                         # buffered (default) | stream
//!       stream:
//!         first_byte_timeout_ms: 29000       # call start to the first part (default 29000)
//!         idle_timeout_ms: 30000             # longest wait between two parts (default 30000)
//!         max_duration_ms: 900000            # whole stream (default 900000: API Gateway's 15 min)
//! ```
//!
//! A streaming route calls `InvokeEndpointWithResponseStream` and relays the parts as they arrive
//! ([`crate::relay`]). What cannot hold for a stream is refused at load, by field name: a route
//! `cache` block (answers are never cached; a stage cache skips the route), integration
//! `responses` (a response template needs the whole answer), a `shadow` block (copies are
//! buffered calls), `timeout_ms` (the stream's own limits replace it), the `target_model` and
//! `enable_explanations` shortcuts (not part of the streaming operation) and a `session_id` that is
//! the literal `NEW_SESSION` (SageMaker opens sessions on `InvokeEndpoint` only; a request value
//! `NEW_SESSION` is refused with 400 at request time).
//!
//! Per-request configuration: a reload may turn a route to streaming or back, or change its
//! limits; a stream already open keeps the limits it started with.

use std::time::Duration;

use serde::Deserialize;

use super::diag::Diagnostic;
use super::yaml::Doc;

/// Defaults and bounds, in milliseconds.
const FIRST_BYTE_DEFAULT: u64 = 29_000;
const IDLE_DEFAULT: u64 = 30_000;
const MAX_DURATION_DEFAULT: u64 = 900_000;
const MIN_MS: u64 = 50;
/// Longest `max_duration_ms` accepted: one hour (API Gateway's own streams stop at 15 minutes).
const MAX_DURATION_CEILING: u64 = 3_600_000;

/// `routes[i].integration.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// `InvokeEndpoint`, the whole answer at once (default).
    #[default]
    Buffered,
    /// `InvokeEndpointWithResponseStream`, parts relayed as they arrive.
    Stream,
}

/// `routes[i].integration.stream:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStream {
    /// From the start of the call to SageMaker's first part, retries included (default 29000).
    first_byte_timeout_ms: Option<u64>,
    /// Longest wait for the next part (default 30000: below the ALB's 60 s idle timeout).
    idle_timeout_ms: Option<u64>,
    /// Longest whole stream, from the start of the call (default 900000).
    max_duration_ms: Option<u64>,
}

/// The time limits of a streaming route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    /// Call start to the first part (the call's own timeout: connect, retries, headers, first part).
    pub first_byte: Duration,
    /// Longest wait between two parts.
    pub idle: Duration,
    /// Longest stream, from the start of the call.
    pub max_duration: Duration,
}

/// What the streaming checks read of a route besides the `stream` block.
pub(super) struct RouteFields<'a> {
    /// `integration.timeout_ms` was written.
    pub timeout_ms: bool,
    /// `integration.responses` was written.
    pub responses: bool,
    /// `integration.target_model` was written.
    pub target_model: bool,
    /// `integration.enable_explanations` was written.
    pub enable_explanations: bool,
    /// `integration.session_id`, as written.
    pub session_id: Option<&'a str>,
    /// The route has a `cache` block.
    pub cache: bool,
    /// The route has a `shadow` block.
    pub shadow: bool,
}

/// Compiles the streaming settings of the route at `route` (`routes[i]`): `Some` for a streaming
/// route, every refusal reported by field name.
pub(super) fn compile(
    doc: &Doc,
    route: &str,
    mode: Mode,
    raw: Option<RawStream>,
    fields: &RouteFields<'_>,
    errors: &mut Vec<Diagnostic>,
) -> Option<StreamLimits> {
    let at = format!("{route}.integration");
    if mode == Mode::Buffered {
        if raw.is_some() {
            errors.push(doc.error(
                &format!("{at}.stream"),
                "applies to `mode: stream` only (this route is buffered)",
            ));
        }
        return None;
    }
    let raw = raw.unwrap_or_default();
    let mut ms = |field: &str, value: Option<u64>, default: u64, max: u64| {
        let v = value.unwrap_or(default);
        if !(MIN_MS..=max).contains(&v) {
            errors.push(doc.error(
                &format!("{at}.stream.{field}"),
                format!("must be between {MIN_MS} and {max}"),
            ));
        }
        Duration::from_millis(v)
    };
    let max_duration = ms(
        "max_duration_ms",
        raw.max_duration_ms,
        MAX_DURATION_DEFAULT,
        MAX_DURATION_CEILING,
    );
    let first_byte = ms(
        "first_byte_timeout_ms",
        raw.first_byte_timeout_ms,
        FIRST_BYTE_DEFAULT,
        MAX_DURATION_CEILING,
    );
    let idle = ms(
        "idle_timeout_ms",
        raw.idle_timeout_ms,
        IDLE_DEFAULT,
        MAX_DURATION_CEILING,
    );
    for (field, value) in [
        ("first_byte_timeout_ms", first_byte),
        ("idle_timeout_ms", idle),
    ] {
        if value > max_duration {
            errors.push(doc.error(
                &format!("{at}.stream.{field}"),
                "must not exceed stream.max_duration_ms",
            ));
        }
    }
    let refused = [
        (
            fields.cache,
            format!("{route}.cache"),
            "a streaming route is never cached (remove the block, or use `mode: buffered`)",
        ),
        (
            fields.responses,
            format!("{at}.responses"),
            "a streaming route relays SageMaker's parts as they arrive: integration responses and their templates need the whole answer",
        ),
        (
            fields.shadow,
            format!("{route}.shadow"),
            "shadow copies are buffered calls; not available on a streaming route",
        ),
        (
            fields.timeout_ms,
            format!("{at}.timeout_ms"),
            "a streaming route is bounded by stream.first_byte_timeout_ms, idle_timeout_ms and max_duration_ms",
        ),
        (
            fields.target_model,
            format!("{at}.target_model"),
            "InvokeEndpointWithResponseStream has no TargetModel",
        ),
        (
            fields.enable_explanations,
            format!("{at}.enable_explanations"),
            "InvokeEndpointWithResponseStream has no EnableExplanations",
        ),
        (
            fields
                .session_id
                .is_some_and(|s| s.trim() == format!("'{NEW_SESSION}'")),
            format!("{at}.session_id"),
            "SageMaker opens a session (NEW_SESSION) on InvokeEndpoint only, not on a stream",
        ),
    ];
    for (bad, path, message) in refused {
        if bad {
            errors.push(doc.error(&path, message));
        }
    }
    Some(StreamLimits {
        first_byte,
        idle,
        max_duration,
    })
}

/// The `X-Amzn-SageMaker-Session-Id` value that asks SageMaker to open a session.
pub const NEW_SESSION: &str = "NEW_SESSION";
