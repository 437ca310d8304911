//! Maps an SDK outcome onto the client-visible error table (DESIGN §1).
//!
//! | SageMaker / transport outcome | client sees |
//! |---|---|
//! | `ModelError` with `OriginalStatusCode` 4xx | that status, the model's `OriginalMessage` as the body |
//! | `ModelError` with a 5xx (or no) original status | 502 Internal server error |
//! | `ThrottlingException`, `ModelNotReadyException` | 429 Too Many Requests |
//! | SDK timeout | 504 Endpoint request timed out |
//! | anything else: `ValidationError`, 5xx, 530, reset, refused, unparsable | 502 Internal server error |
//!
//! The detail (SDK error chain, upstream body) goes into the error's `String` for the log only.
//!
//! Two entry points with one table: [`classify`] for the SDK path's typed errors, [`from_reply`] for
//! the lean path's HTTP answers (error code parsed the way the SDK's restJson1 protocol does).
//!
//! This is the one classification of a failed call: the client's error is
//! [`UpstreamFailure::error`], and the two other readers derive from the same failure here, never
//! on their own: the circuit breaker reads [`outcome`] (failure, success or neither: see
//! [`crate::breaker`]), the metrics, the access log (`upstreamErrorType`) and the trace span read
//! [`UpstreamFailure::error_type`] (SageMaker's error type, from the fixed list [`ERROR_TYPES`]).

use std::time::Duration;

use aws_sdk_sagemakerruntime::config::http::HttpResponse;
use aws_sdk_sagemakerruntime::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sagemakerruntime::operation::invoke_endpoint::InvokeEndpointError;
use aws_sdk_sagemakerruntime::operation::invoke_endpoint_with_response_stream::InvokeEndpointWithResponseStreamError;
use bytes::Bytes;

use super::{UpstreamFailure, UpstreamReply};
use crate::error::GatewayError;

/// SageMaker Runtime error types counted by name (metrics label `error_type`, access log
/// `upstreamErrorType`); anything else is `Other`. A fixed list keeps the label set bounded.
pub const ERROR_TYPES: &[&str] = &[
    "ModelError",
    "ThrottlingException",
    "ModelNotReadyException",
    "ServiceUnavailable",
    "InternalFailure",
    "InternalDependencyException",
    "ValidationError",
    "AccessDeniedException",
    "ModelStreamError",
    "InternalStreamFailure",
    "Timeout",
    "Transport",
    "Other",
];

impl UpstreamFailure {
    /// The SageMaker error type of this failure, from [`ERROR_TYPES`]: the answer's
    /// `x-amzn-ErrorType`, `ModelError` for a model's 4xx, `Timeout` or `Transport` when nothing
    /// answered. (The breaker's own refusal is recorded as [`crate::context::CIRCUIT_OPEN`] by the
    /// pipeline, which knows no call was made.)
    pub fn error_type(&self) -> &'static str {
        match &self.reply {
            Some(reply) => {
                let raw = reply.header("x-amzn-errortype").unwrap_or("");
                let name = raw.split(':').next().unwrap_or("");
                match &self.error {
                    GatewayError::ModelError { .. } => "ModelError",
                    _ => ERROR_TYPES
                        .iter()
                        .find(|t| **t == name)
                        .copied()
                        .unwrap_or("Other"),
                }
            }
            None => match self.error {
                GatewayError::IntegrationTimeout(_) => "Timeout",
                _ => "Transport",
            },
        }
    }
}

/// What a finished call says about the endpoint's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The endpoint answered.
    Success,
    /// The endpoint did not answer, or answered that it is broken.
    Failure,
    /// Says nothing either way (throttling).
    Neutral,
}

/// What a finished call says about the endpoint's health, for the circuit breaker (the reasons
/// are in [`crate::breaker`]'s module doc).
pub fn outcome<T>(result: &Result<T, UpstreamFailure>) -> Outcome {
    let failure = match result {
        Ok(_) => return Outcome::Success,
        Err(f) => f,
    };
    match &failure.error {
        GatewayError::ModelError { .. } => Outcome::Success,
        GatewayError::UpstreamThrottled(_) => Outcome::Neutral,
        GatewayError::IntegrationTimeout(_) => Outcome::Failure,
        GatewayError::IntegrationFailure(_) => match &failure.reply {
            // 424 here is a model that answered 5xx or nothing; other 4xx are SageMaker's
            // answers about this request (ValidationError, AccessDenied).
            Some(reply) if (400..500).contains(&reply.status) && reply.status != 424 => {
                Outcome::Success
            }
            _ => Outcome::Failure,
        },
        _ => Outcome::Neutral,
    }
}

/// The SDK's error of either invoke operation, as [`classify`] reads it.
pub trait InvokeError: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static {
    /// A `ModelError`'s `OriginalStatusCode` and `OriginalMessage`; `None` for other errors.
    fn model_error(&self) -> Option<(Option<i32>, Option<&str>)>;
    /// Whether SageMaker said the model is not ready (throttling, 429).
    fn not_ready(&self) -> bool;
}

impl InvokeError for InvokeEndpointError {
    fn model_error(&self) -> Option<(Option<i32>, Option<&str>)> {
        match self {
            InvokeEndpointError::ModelError(m) => {
                Some((m.original_status_code(), m.original_message()))
            }
            _ => None,
        }
    }

    fn not_ready(&self) -> bool {
        matches!(self, InvokeEndpointError::ModelNotReadyException(_))
    }
}

impl InvokeError for InvokeEndpointWithResponseStreamError {
    fn model_error(&self) -> Option<(Option<i32>, Option<&str>)> {
        match self {
            InvokeEndpointWithResponseStreamError::ModelError(m) => {
                Some((m.original_status_code(), m.original_message()))
            }
            _ => None,
        }
    }

    fn not_ready(&self) -> bool {
        false
    }
}

/// Classifies `err`, keeping SageMaker's answer (status, body, headers) when there was one.
pub fn classify<E: InvokeError>(
    err: SdkError<E, HttpResponse>,
    timeout: Duration,
) -> UpstreamFailure {
    let detail = DisplayErrorContext(&err).to_string();
    match &err {
        SdkError::TimeoutError(_) => UpstreamFailure {
            error: GatewayError::IntegrationTimeout(timeout),
            reply: None,
        },
        SdkError::ServiceError(service) => {
            let reply = reply(service.raw());
            let e = service.err();
            let error = match e.model_error() {
                Some((status, message)) => match status {
                    Some(code @ 400..=499) => GatewayError::ModelError {
                        status: code as u16,
                        body: Bytes::from(message.unwrap_or_default().to_owned()),
                    },
                    other => GatewayError::IntegrationFailure(format!(
                        "model answered {other:?}: {detail}"
                    )),
                },
                None if e.not_ready() => GatewayError::UpstreamThrottled(detail),
                _ if e.code() == Some("ThrottlingException") || reply.status == 429 => {
                    GatewayError::UpstreamThrottled(detail)
                }
                _ => GatewayError::IntegrationFailure(detail),
            };
            UpstreamFailure {
                error,
                reply: Some(reply),
            }
        }
        SdkError::ResponseError(r) => UpstreamFailure {
            error: GatewayError::IntegrationFailure(detail),
            reply: Some(reply(r.raw())),
        },
        _ => UpstreamFailure {
            error: GatewayError::IntegrationFailure(detail),
            reply: None,
        },
    }
}

fn reply(raw: &HttpResponse) -> UpstreamReply {
    let headers = raw
        .headers()
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.to_owned()))
        .collect();
    let body = raw
        .body()
        .bytes()
        .map(Bytes::copy_from_slice)
        .unwrap_or_default();
    UpstreamReply {
        status: raw.status().as_u16(),
        body,
        headers,
    }
}

/// The error code of a SageMaker error answer, as the SDK's restJson1 protocol reads it: the
/// `x-amzn-ErrorType` header, else the body's `code` or `__type`; a `:`-suffix (URL) and a
/// `#`-prefix (namespace) are dropped.
pub fn error_code(header: Option<&str>, body: &[u8]) -> Option<String> {
    let from_body = || {
        let doc: serde_json::Value = serde_json::from_slice(body).ok()?;
        ["code", "__type"].iter().find_map(|k| {
            doc.get(k)
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        })
    };
    let raw = header.map(str::to_owned).or_else(from_body)?;
    let code = raw.split(':').next().unwrap_or_default();
    let code = code.rsplit_once('#').map_or(code, |(_, c)| c);
    Some(code.to_owned())
}

/// Classifies a SageMaker error answer (any non-2xx) of the lean path, by the table above.
pub fn from_reply(reply: UpstreamReply) -> UpstreamFailure {
    let code = error_code(reply.header("x-amzn-errortype"), &reply.body);
    let detail = format!(
        "{} (HTTP {}): {}",
        code.as_deref().unwrap_or("unknown error"),
        reply.status,
        String::from_utf8_lossy(&reply.body[..reply.body.len().min(1024)])
    );
    let error = match code.as_deref() {
        Some("ModelError") => {
            let doc: serde_json::Value = serde_json::from_slice(&reply.body).unwrap_or_default();
            let original = doc
                .get("OriginalStatusCode")
                .and_then(serde_json::Value::as_i64);
            match original {
                Some(code @ 400..=499) => GatewayError::ModelError {
                    status: code as u16,
                    body: Bytes::from(
                        doc.get("OriginalMessage")
                            .and_then(serde_json::Value::as_str)
                            .unwrap_or_default()
                            .to_owned(),
                    ),
                },
                other => {
                    GatewayError::IntegrationFailure(format!("model answered {other:?}: {detail}"))
                }
            }
        }
        Some("ModelNotReadyException") => GatewayError::UpstreamThrottled(detail),
        Some("ThrottlingException") => GatewayError::UpstreamThrottled(detail),
        _ if reply.status == 429 => GatewayError::UpstreamThrottled(detail),
        _ => GatewayError::IntegrationFailure(detail),
    };
    UpstreamFailure {
        error,
        reply: Some(reply),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, error_type: Option<&str>, body: &str) -> UpstreamReply {
        UpstreamReply {
            status,
            body: Bytes::from(body.to_owned()),
            headers: error_type
                .map(|t| vec![("x-amzn-errortype".to_owned(), t.to_owned())])
                .unwrap_or_default(),
        }
    }

    fn failure(error: GatewayError, error_type: Option<&str>) -> UpstreamFailure {
        UpstreamFailure {
            error,
            reply: error_type.map(|t| UpstreamReply {
                status: 500,
                body: bytes::Bytes::new(),
                headers: vec![("x-amzn-errortype".into(), t.into())],
            }),
        }
    }

    #[test]
    fn upstream_error_types_come_from_a_fixed_list() {
        let f = |e, t| failure(e, t).error_type();
        let failed = || GatewayError::IntegrationFailure("x".into());
        assert_eq!(f(failed(), Some("InternalFailure")), "InternalFailure");
        assert_eq!(
            f(
                failed(),
                Some("ServiceUnavailable:http://internal.amazon.com/")
            ),
            "ServiceUnavailable"
        );
        assert_eq!(f(failed(), Some("<script>")), "Other");
        assert_eq!(f(failed(), None), "Transport");
        assert_eq!(
            f(
                GatewayError::IntegrationTimeout(std::time::Duration::from_secs(1)),
                None
            ),
            "Timeout"
        );
    }

    #[test]
    fn error_codes_are_read_like_the_sdk() {
        assert_eq!(
            error_code(Some("ServiceUnavailable:http://internal.amazon.com/"), b"").as_deref(),
            Some("ServiceUnavailable")
        );
        assert_eq!(
            error_code(
                None,
                br#"{"__type":"com.amazon.sagemaker#ValidationError"}"#
            )
            .as_deref(),
            Some("ValidationError")
        );
        assert_eq!(
            error_code(None, br#"{"code":"ThrottlingException"}"#).as_deref(),
            Some("ThrottlingException")
        );
        assert_eq!(error_code(None, b"not json"), None);
    }

    #[test]
    fn the_table_holds_for_http_answers() {
        let model = r#"{"OriginalStatusCode":404,"OriginalMessage":"{\"error\":\"no user\"}"}"#;
        match from_reply(reply(424, Some("ModelError"), model)).error {
            GatewayError::ModelError { status, body } => {
                assert_eq!((status, &body[..]), (404, &br#"{"error":"no user"}"#[..]))
            }
            other => panic!("{other:?}"),
        }
        let model_5xx = r#"{"OriginalStatusCode":500,"OriginalMessage":"boom"}"#;
        assert!(matches!(
            from_reply(reply(424, Some("ModelError"), model_5xx)).error,
            GatewayError::IntegrationFailure(_)
        ));
        for (status, t) in [
            (400, "ThrottlingException"),
            (429, "ModelNotReadyException"),
        ] {
            assert!(matches!(
                from_reply(reply(status, Some(t), "{}")).error,
                GatewayError::UpstreamThrottled(_)
            ));
        }
        assert!(matches!(
            from_reply(reply(429, None, "")).error,
            GatewayError::UpstreamThrottled(_)
        ));
        for (status, t) in [(400, Some("ValidationError")), (503, None), (530, None)] {
            let f = from_reply(reply(status, t, "{}"));
            assert!(matches!(f.error, GatewayError::IntegrationFailure(_)));
            assert_eq!(f.reply.map(|r| r.status), Some(status));
        }
    }
}
