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
