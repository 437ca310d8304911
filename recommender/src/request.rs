//! Invocation input: content-type check, JSON parsing and validation.
//!
//! Place in the pipeline: first stage of `recommend`. Input: the request's `Content-Type` and raw
//! body bytes. Output: an [`Invocation`] with a validated [`Policy`], or a [`RequestError`] that
//! names the offending field and its allowed values (answered as 400).
//!
//! Accepted body: `{"user_id": string, "k"?: integer (default 10), "inference_type"?: string
//! (default "deterministic"), "seed"?: integer or string of digits (u64), "temperature"?: number > 0,
//! "epsilon"?: number in [0, 1]}`. Unknown fields are ignored (SageMaker clients may add some), and
//! `null` counts as absent. `temperature`/`epsilon` are validated whenever present, even for a
//! policy that does not use them, so a typo'd value never passes silently.
//!
//! The streaming test knobs (`first_line_delay_ms`, `line_delay_ms`, `fail_after_lines`,
//! `fail_with`: see [`StreamKnobs`]) are refused unless the server enables them: in production a
//! client must not be able to hold a stream open for free or make it fail.
//!
//! [`wants_jsonlines`] reads an `Accept` header: JSON Lines (a streamed answer) or JSON.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::policy::{DEFAULT_EPSILON, DEFAULT_TEMPERATURE, Policy};

/// Upper bound on `k` regardless of catalogue size.
pub const MAX_K: usize = 100;
/// `k` when the request gives none.
pub const DEFAULT_K: usize = 10;

/// Longest accepted streaming test delay (per line).
pub const MAX_LINE_DELAY_MS: u64 = 60_000;
/// The media type of a streamed answer, as SageMaker names JSON Lines.
pub const JSONLINES: &str = "application/jsonlines";

/// A validated invocation.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    pub user_id: String,
    pub k: usize,
    pub policy: Policy,
    pub seed: Option<u64>,
    /// Streaming test knobs (all absent unless the server enables them).
    pub knobs: StreamKnobs,
}

/// Test and demo knobs of a streamed answer; a buffered answer ignores them.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StreamKnobs {
    /// Pause before the first line (`first_line_delay_ms`; default: `line_delay`).
    pub first_line_delay: Option<Duration>,
    /// Pause before every later line, the summary line included (`line_delay_ms`; default 0).
    pub line_delay: Duration,
    /// End the stream as failed once this many lines were sent, if it has more
    /// (`fail_after_lines`; 0 fails before the first line, after the 200 and headers).
    pub fail_after_lines: Option<usize>,
    /// What the SageMaker Runtime emulation reports for that failure (`fail_with`).
    pub fail_with: StreamFailure,
}

impl StreamKnobs {
    /// The pause before line `index` (0-based).
    pub fn delay_before(&self, index: usize) -> Duration {
        match (index, self.first_line_delay) {
            (0, Some(first)) => first,
            _ => self.line_delay,
        }
    }
}

/// How SageMaker reports a response stream that broke after it began: `ModelStreamError` with
/// one of its two `ErrorCode`s, or `InternalStreamFailure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StreamFailure {
    /// `ModelStreamError`, `ErrorCode: StreamBroken` (the model's stream broke off).
    #[default]
    StreamBroken,
    /// `ModelStreamError`, `ErrorCode: ModelInvocationTimeExceeded`.
    ModelInvocationTimeExceeded,
    /// `InternalStreamFailure` (SageMaker's own fault).
    InternalStreamFailure,
}

impl StreamFailure {
    /// Every failure, in documentation order.
    pub const ALL: [StreamFailure; 3] = [
        StreamFailure::StreamBroken,
        StreamFailure::ModelInvocationTimeExceeded,
        StreamFailure::InternalStreamFailure,
    ];

    /// The `fail_with` string of this failure (SageMaker's name for it).
    pub fn name(self) -> &'static str {
        match self {
            StreamFailure::StreamBroken => "StreamBroken",
            StreamFailure::ModelInvocationTimeExceeded => "ModelInvocationTimeExceeded",
            StreamFailure::InternalStreamFailure => "InternalStreamFailure",
        }
    }
}

/// A rejected request: the field at fault (if one) and a message naming what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RequestError {
    pub field: Option<&'static str>,
    pub message: String,
}

impl RequestError {
    fn field(field: &'static str, message: String) -> Self {
        RequestError {
            field: Some(field),
            message: format!("{field}: {message}"),
        }
    }

    fn body(message: String) -> Self {
        RequestError {
            field: None,
            message,
        }
    }
}

/// Checks that a `Content-Type` (absent is accepted) is JSON: `application/json` or `*/*+json`.
pub fn check_content_type(content_type: Option<&str>) -> Result<(), RequestError> {
    let Some(raw) = content_type else {
        return Ok(());
    };
    let essence = raw
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json" || (essence.contains('/') && essence.ends_with("+json")) {
        Ok(())
    } else {
        Err(RequestError::field(
            "content-type",
            format!("must be application/json; got \"{raw}\""),
        ))
    }
}

/// Whether an `Accept` header asks for a streamed JSON Lines answer: `application/jsonlines` is
/// listed with a quality above 0 and at least that of `application/json`. Wildcards (`*/*`,
/// `application/*`) and every other type get the buffered JSON answer, as before streaming.
pub fn wants_jsonlines(accept: Option<&str>) -> bool {
    let Some(accept) = accept else {
        return false;
    };
    let (mut jsonlines, mut json) = (0.0_f64, 0.0_f64);
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim();
        // An unreadable quality counts as 0: the range is ignored.
        let q = parts
            .filter_map(|p| p.split_once('='))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("q"))
            .map_or(Some(1.0), |(_, v)| {
                v.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|q| (0.0..=1.0).contains(q))
            })
            .unwrap_or(0.0);
        if media.eq_ignore_ascii_case(JSONLINES) {
            jsonlines = jsonlines.max(q);
        } else if media.eq_ignore_ascii_case("application/json") {
            json = json.max(q);
        }
    }
    jsonlines > 0.0 && jsonlines >= json
}

/// Parses and validates a body. `n_items` bounds `k` (with [`MAX_K`]); `knobs_allowed` says
/// whether the streaming test knobs are accepted.
pub fn parse(body: &[u8], n_items: usize, knobs_allowed: bool) -> Result<Invocation, RequestError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| RequestError::body(format!("body: invalid JSON: {e}")))?;
    let Value::Object(fields) = value else {
        return Err(RequestError::body(format!(
            "body: expected a JSON object like {{\"user_id\": \"U:1\", \"k\": 10, \"inference_type\": \"deterministic\"}}; got {}",
            kind(&value)
        )));
    };

    let user_id = match present(&fields, "user_id") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::String(_)) => {
            return Err(RequestError::field(
                "user_id",
                "must be a non-empty string".into(),
            ));
        }
        Some(other) => {
            return Err(RequestError::field(
                "user_id",
                format!("must be a string; got {}", kind(other)),
            ));
        }
        None => {
            return Err(RequestError::field(
                "user_id",
                "is required (a string such as \"U:114521\")".into(),
            ));
        }
    };

    let max_k = MAX_K.min(n_items);
    let k_rule = format!(
        "must be an integer from 1 to {max_k} (at most {MAX_K} and at most the number of items, {n_items})"
    );
    let k = match present(&fields, "k") {
        None => DEFAULT_K.min(max_k),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(k) if (1..=max_k as u64).contains(&k) => k as usize,
            _ => return Err(RequestError::field("k", format!("{k_rule}; got {n}"))),
        },
        Some(other) => {
            return Err(RequestError::field(
                "k",
                format!("{k_rule}; got {}", kind(other)),
            ));
        }
    };

    let temperature = number(&fields, "temperature")?;
    if let Some(t) = temperature
        && !(t > 0.0 && t.is_finite())
    {
        return Err(RequestError::field(
            "temperature",
            format!("must be a finite number greater than 0; got {t}"),
        ));
    }
    let temperature = temperature.unwrap_or(DEFAULT_TEMPERATURE);
    let epsilon = number(&fields, "epsilon")?;
    if let Some(e) = epsilon
        && !(0.0..=1.0).contains(&e)
    {
        return Err(RequestError::field(
            "epsilon",
            format!("must be a number from 0 to 1; got {e}"),
        ));
    }
    let epsilon = epsilon.unwrap_or(DEFAULT_EPSILON);

    let policy = match present(&fields, "inference_type") {
        None => Policy::Deterministic,
        Some(Value::String(name)) => match name.as_str() {
            "deterministic" => Policy::Deterministic,
            "stochastic_plackett_luce" => Policy::PlackettLuce { temperature },
            "stochastic_plackett_luce_cached" => Policy::PlackettLuceCached { temperature },
            "stochastic_gumbel_softmax_trick" => Policy::GumbelTopK { temperature },
            "stochastic_epsilon_greedy" => Policy::EpsilonGreedy { epsilon },
            other => {
                return Err(RequestError::field(
                    "inference_type",
                    format!(
                        "unknown value \"{}\"; allowed: {}",
                        short(other),
                        allowed_policies()
                    ),
                ));
            }
        },
        Some(other) => {
            return Err(RequestError::field(
                "inference_type",
                format!(
                    "must be a string, one of {}; got {}",
                    allowed_policies(),
                    kind(other)
                ),
            ));
        }
    };

    let seed_rule = "must be an unsigned 64-bit integer (a JSON integer or a string of digits)";
    let seed = match present(&fields, "seed") {
        None => None,
        Some(Value::Number(n)) => Some(
            n.as_u64()
                .ok_or_else(|| RequestError::field("seed", format!("{seed_rule}; got {n}")))?,
        ),
        Some(Value::String(s)) => {
            let parsed = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                s.parse::<u64>().ok()
            } else {
                None
            };
            Some(parsed.ok_or_else(|| {
                RequestError::field("seed", format!("{seed_rule}; got \"{}\"", short(s)))
            })?)
        }
        Some(other) => {
            return Err(RequestError::field(
                "seed",
                format!("{seed_rule}; got {}", kind(other)),
            ));
        }
    };

    let knobs = stream_knobs(&fields, knobs_allowed)?;

    Ok(Invocation {
        user_id,
        k,
        policy,
        seed,
        knobs,
    })
}

/// The streaming test knobs of a request body, each refused unless `allowed`.
fn stream_knobs(fields: &Map<String, Value>, allowed: bool) -> Result<StreamKnobs, RequestError> {
    const KNOBS: [&str; 4] = [
        "first_line_delay_ms",
        "line_delay_ms",
        "fail_after_lines",
        "fail_with",
    ];
    if let Some(name) = KNOBS.into_iter().find(|k| present(fields, k).is_some()) {
        if !allowed {
            return Err(RequestError::field(
                name,
                "is a streaming test knob, off on this server (start it with --stream-test-knobs or RECOMMENDER_STREAM_TEST_KNOBS=true)".into(),
            ));
        }
    } else {
        return Ok(StreamKnobs::default());
    }
    let delay = |name: &'static str| -> Result<Option<Duration>, RequestError> {
        integer(fields, name, MAX_LINE_DELAY_MS).map(|ms| ms.map(Duration::from_millis))
    };
    let first_line_delay = delay("first_line_delay_ms")?;
    let line_delay = delay("line_delay_ms")?.unwrap_or_default();
    let fail_after_lines = integer(fields, "fail_after_lines", u64::from(u32::MAX))?
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX));
    let fail_with = match present(fields, "fail_with") {
        None => StreamFailure::default(),
        Some(value) => {
            let names: Vec<&str> = StreamFailure::ALL.map(StreamFailure::name).to_vec();
            let rule = format!("must be one of {}", names.join(", "));
            let found = match value {
                Value::String(name) => StreamFailure::ALL
                    .into_iter()
                    .find(|f| f.name() == name)
                    .ok_or_else(|| format!("{rule}; got \"{}\"", short(name))),
                other => Err(format!("{rule}; got {}", kind(other))),
            };
            found.map_err(|m| RequestError::field("fail_with", m))?
        }
    };
    if fail_after_lines.is_none() && present(fields, "fail_with").is_some() {
        return Err(RequestError::field(
            "fail_with",
            "needs fail_after_lines (the number of lines sent before the failure)".into(),
        ));
    }
    Ok(StreamKnobs {
        first_line_delay,
        line_delay,
        fail_after_lines,
        fail_with,
    })
}

/// An optional integer field from 0 to `max`.
fn integer(
    fields: &Map<String, Value>,
    name: &'static str,
    max: u64,
) -> Result<Option<u64>, RequestError> {
    match present(fields, name) {
        None => Ok(None),
        Some(Value::Number(n)) if n.as_u64().is_some_and(|v| v <= max) => Ok(n.as_u64()),
        Some(other) => Err(RequestError::field(
            name,
            format!("must be an integer from 0 to {max}; got {}", kind(other)),
        )),
    }
}

fn allowed_policies() -> String {
    Policy::NAMES.join(", ")
}

/// A field's value, with JSON `null` treated as absent.
fn present<'a>(fields: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    fields.get(name).filter(|v| !v.is_null())
}

fn number(fields: &Map<String, Value>, name: &'static str) -> Result<Option<f64>, RequestError> {
    match present(fields, name) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .map(Some)
            .ok_or_else(|| RequestError::field(name, format!("must be a finite number; got {n}"))),
        Some(other) => Err(RequestError::field(
            name,
            format!("must be a number; got {}", kind(other)),
        )),
    }
}

/// At most 40 characters of a client's string, so an error message never echoes a huge input.
fn short(s: &str) -> String {
    let mut out: String = s.chars().take(40).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

/// A short description of a JSON value for error messages.
fn kind(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => format!("string \"{}\"", short(s)),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(body: &str) -> Invocation {
        parse(body.as_bytes(), 50, true).expect("valid request")
    }

    fn err(body: &str) -> RequestError {
        parse(body.as_bytes(), 50, true).expect_err("invalid request")
    }

    #[test]
    fn defaults_apply_when_fields_are_absent() {
        let inv = ok(r#"{"user_id": "U:1"}"#);
        assert_eq!(inv.k, 10);
        assert_eq!(inv.policy, Policy::Deterministic);
        assert_eq!(inv.seed, None);
        let inv = ok(r#"{"user_id": "U:1", "inference_type": "stochastic_plackett_luce"}"#);
        assert_eq!(inv.policy, Policy::PlackettLuce { temperature: 1.0 });
        let inv = ok(r#"{"user_id": "U:1", "inference_type": "stochastic_epsilon_greedy"}"#);
        assert_eq!(inv.policy, Policy::EpsilonGreedy { epsilon: 0.1 });
        // Default k is capped by a tiny catalogue.
        assert_eq!(
            parse(br#"{"user_id": "U:1"}"#, 6, false).map(|i| i.k),
            Ok(6)
        );
    }

    #[test]
    fn every_policy_and_parameter_parses() {
        let inv = ok(
            r#"{"user_id":"U:1","k":5,"inference_type":"stochastic_gumbel_softmax_trick","temperature":0.5,"seed":"18446744073709551615"}"#,
        );
        assert_eq!(inv.policy, Policy::GumbelTopK { temperature: 0.5 });
        assert_eq!(inv.seed, Some(u64::MAX));
        assert_eq!(inv.k, 5);
        let inv = ok(
            r#"{"user_id":"U:1","inference_type":"stochastic_plackett_luce_cached","temperature":2,"seed":7}"#,
        );
        assert_eq!(inv.policy, Policy::PlackettLuceCached { temperature: 2.0 });
        assert_eq!(inv.seed, Some(7));
        let inv = ok(
            r#"{"user_id":"U:1","inference_type":"stochastic_epsilon_greedy","epsilon":0,"extra":true}"#,
        );
        assert_eq!(inv.policy, Policy::EpsilonGreedy { epsilon: 0.0 });
        let inv = ok(r#"{"user_id":"U:1","k":null,"seed":null}"#);
        assert_eq!((inv.k, inv.seed), (10, None));
    }

    #[test]
    fn bad_input_names_the_field_and_allowed_values() {
        let cases: [(&str, &str, &str); 16] = [
            (
                r#"{"user_id":"U:1","inference_type":"greedy"}"#,
                "inference_type",
                "stochastic_plackett_luce_cached",
            ),
            (
                r#"{"user_id":"U:1","inference_type":3}"#,
                "inference_type",
                "deterministic",
            ),
            (r#"{"user_id":"U:1","k":0}"#, "k", "from 1 to 50"),
            (r#"{"user_id":"U:1","k":51}"#, "k", "from 1 to 50"),
            (r#"{"user_id":"U:1","k":-1}"#, "k", "integer"),
            (r#"{"user_id":"U:1","k":2.5}"#, "k", "integer"),
            (r#"{"user_id":"U:1","k":"10"}"#, "k", "string \"10\""),
            (r#"{"k":10}"#, "user_id", "required"),
            (r#"{"user_id":114521}"#, "user_id", "must be a string"),
            (r#"{"user_id":""}"#, "user_id", "non-empty"),
            (
                r#"{"user_id":"U:1","temperature":0}"#,
                "temperature",
                "greater than 0",
            ),
            (
                r#"{"user_id":"U:1","temperature":"hot"}"#,
                "temperature",
                "number",
            ),
            (
                r#"{"user_id":"U:1","epsilon":1.5}"#,
                "epsilon",
                "from 0 to 1",
            ),
            (r#"{"user_id":"U:1","seed":-3}"#, "seed", "unsigned 64-bit"),
            (
                r#"{"user_id":"U:1","seed":"12a"}"#,
                "seed",
                "string of digits",
            ),
            (
                r#"{"user_id":"U:1","seed":"18446744073709551616"}"#,
                "seed",
                "unsigned 64-bit",
            ),
        ];
        for (body, field, mentions) in cases {
            let e = err(body);
            assert_eq!(e.field, Some(field), "{body}: {e}");
            assert!(e.message.starts_with(&format!("{field}: ")), "{e}");
            assert!(e.message.contains(mentions), "{body}: {e}");
        }
        let e = parse(br#"{"user_id":"U:1","k":7}"#, 6, false).expect_err("k > n_items");
        assert!(e.message.contains("from 1 to 6"), "{e}");
        assert!(err("{not json").message.starts_with("body: invalid JSON"));
        assert!(err("[1,2]").message.contains("expected a JSON object"));
        assert!(err("").message.starts_with("body: invalid JSON"));
        let long = format!(
            r#"{{"user_id":"U:1","inference_type":"{}"}}"#,
            "x".repeat(10_000)
        );
        assert!(err(&long).message.len() < 400);
    }

    #[test]
    fn content_type_must_be_json() {
        assert!(check_content_type(None).is_ok());
        assert!(check_content_type(Some("application/json")).is_ok());
        assert!(check_content_type(Some("Application/JSON; charset=utf-8")).is_ok());
        assert!(check_content_type(Some("application/vnd.api+json")).is_ok());
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "text/csv",
            "",
        ] {
            let e = check_content_type(Some(bad)).expect_err(bad);
            assert_eq!(e.field, Some("content-type"));
            assert!(e.message.contains("application/json"));
        }
    }

    #[test]
    fn jsonlines_is_chosen_by_quality_and_never_by_a_wildcard() {
        for (accept, streams) in [
            (None, false),
            (Some("application/jsonlines"), true),
            (Some("Application/JSONLines; charset=utf-8"), true),
            (Some("application/json"), false),
            (Some("*/*"), false),
            (Some("application/*"), false),
            (Some("text/csv"), false),
            (Some("application/json, application/jsonlines"), true),
            (Some("application/json;q=0.9, application/jsonlines"), true),
            (Some("application/jsonlines;q=0.5, application/json"), false),
            (Some("application/jsonlines;q=0"), false),
            (Some("application/jsonlines;q=high"), false),
            (Some("application/jsonlines ; Q=0.2, */*"), true),
            (Some("application/x-ndjson"), false),
        ] {
            assert_eq!(wants_jsonlines(accept), streams, "{accept:?}");
        }
    }

    #[test]
    fn stream_knobs_parse_within_bounds_and_need_the_server_flag() {
        let inv = ok(r#"{"user_id":"U:1"}"#);
        assert_eq!(inv.knobs, StreamKnobs::default());
        let inv = ok(
            r#"{"user_id":"U:1","line_delay_ms":250,"fail_after_lines":3,"fail_with":"InternalStreamFailure"}"#,
        );
        let knobs = inv.knobs;
        assert_eq!(knobs.line_delay, Duration::from_millis(250));
        assert_eq!(knobs.fail_after_lines, Some(3));
        assert_eq!(knobs.fail_with, StreamFailure::InternalStreamFailure);
        // The first line waits line_delay unless told otherwise.
        assert_eq!(knobs.delay_before(0), Duration::from_millis(250));
        assert_eq!(knobs.delay_before(4), Duration::from_millis(250));
        let knobs = ok(r#"{"user_id":"U:1","first_line_delay_ms":0,"line_delay_ms":60000}"#).knobs;
        assert_eq!(knobs.delay_before(0), Duration::ZERO);
        assert_eq!(knobs.delay_before(1), Duration::from_secs(60));
        assert_eq!(knobs.fail_with, StreamFailure::StreamBroken);
        for (body, field, mentions) in [
            (
                r#"{"user_id":"U:1","line_delay_ms":60001}"#,
                "line_delay_ms",
                "0 to 60000",
            ),
            (
                r#"{"user_id":"U:1","first_line_delay_ms":-1}"#,
                "first_line_delay_ms",
                "0 to",
            ),
            (
                r#"{"user_id":"U:1","line_delay_ms":"5"}"#,
                "line_delay_ms",
                "integer",
            ),
            (
                r#"{"user_id":"U:1","fail_after_lines":1.5}"#,
                "fail_after_lines",
                "integer",
            ),
            (
                r#"{"user_id":"U:1","fail_after_lines":1,"fail_with":"Boom"}"#,
                "fail_with",
                "StreamBroken, ModelInvocationTimeExceeded, InternalStreamFailure",
            ),
            (
                r#"{"user_id":"U:1","fail_with":"StreamBroken"}"#,
                "fail_with",
                "needs fail_after_lines",
            ),
        ] {
            let e = err(body);
            assert_eq!(e.field, Some(field), "{body}: {e}");
            assert!(e.message.contains(mentions), "{body}: {e}");
        }
        // Off: any knob is refused by name, even one that would be ignored.
        for knob in [
            "first_line_delay_ms",
            "line_delay_ms",
            "fail_after_lines",
            "fail_with",
        ] {
            let body = format!(r#"{{"user_id":"U:1","{knob}":1}}"#);
            let e = parse(body.as_bytes(), 50, false).expect_err("knobs off");
            assert_eq!(e.field, Some(knob));
            assert!(e.message.contains("--stream-test-knobs"), "{e}");
        }
        // `null` is absent, as for every field.
        assert!(parse(br#"{"user_id":"U:1","line_delay_ms":null}"#, 50, false).is_ok());
    }
}
