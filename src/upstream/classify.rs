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

use crate::error::GatewayError;

/// Classifies `err`; also returns the upstream HTTP status when one was received.
pub fn classify(
    err: SdkError<InvokeEndpointError, HttpResponse>,
    timeout: Duration,
) -> (GatewayError, Option<u16>) {
    let detail = DisplayErrorContext(&err).to_string();
    match &err {
        SdkError::TimeoutError(_) => (GatewayError::IntegrationTimeout(timeout), None),
        SdkError::ServiceError(service) => {
            let status = raw_status(service.raw());
            let e = service.err();
            let gateway = match e {
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
                _ if e.code() == Some("ThrottlingException") || status == Some(429) => {
                    GatewayError::UpstreamThrottled(detail)
                }
                _ => GatewayError::IntegrationFailure(detail),
            };
            (gateway, status)
        }
        SdkError::ResponseError(r) => (
            GatewayError::IntegrationFailure(detail),
            raw_status(r.raw()),
        ),
        _ => (GatewayError::IntegrationFailure(detail), None),
    }
}

fn raw_status(raw: &HttpResponse) -> Option<u16> {
    Some(raw.status().as_u16())
}
