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

use std::time::Duration;

use aws_sdk_sagemakerruntime::config::http::HttpResponse;
use aws_sdk_sagemakerruntime::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sagemakerruntime::operation::invoke_endpoint::InvokeEndpointError;
use bytes::Bytes;

use super::{UpstreamFailure, UpstreamReply};
use crate::error::GatewayError;

/// Classifies `err`, keeping SageMaker's answer (status, body, headers) when there was one.
pub fn classify(
    err: SdkError<InvokeEndpointError, HttpResponse>,
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
            let error = match e {
                InvokeEndpointError::ModelError(m) => match m.original_status_code() {
                    Some(code @ 400..=499) => GatewayError::ModelError {
                        status: code as u16,
                        body: Bytes::from(m.original_message().unwrap_or_default().to_owned()),
                    },
                    other => GatewayError::IntegrationFailure(format!(
                        "model answered {other:?}: {detail}"
                    )),
                },
                InvokeEndpointError::ModelNotReadyException(_) => {
                    GatewayError::UpstreamThrottled(detail)
                }
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
