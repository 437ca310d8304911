//! Client-visible outcomes of a failed request: one enum, one table, one writer.
//!
//! Every variant is named after the API Gateway gateway-response type a client would have seen, and
//! [`GatewayError::default_response`] is the table of API Gateway's defaults, byte for byte (status,
//! body, `x-amzn-ErrorType`; `reference/apigw-sagemaker.md` §1.4). Internal causes ride along for the
//! log only: a client never sees an upstream body, a file name or a key, except the model's own error
//! message on a model 4xx, which is what API Gateway passes through too.

use std::time::Duration;

use bytes::Bytes;

/// A request that ends without a successful integration response.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// Unknown route or method: API Gateway's MISSING_AUTHENTICATION_TOKEN.
    #[error("no route for this method and path")]
    MissingAuthenticationToken,
    /// The first path segment is not a stage: 403 Forbidden.
    #[error("unknown stage")]
    UnknownStage,
    /// Missing, unknown, disabled key, or a key whose plans do not cover the stage: INVALID_API_KEY.
    #[error("API key rejected: {reason}")]
    InvalidApiKey {
        /// Which check failed (for the log).
        reason: &'static str,
    },
    /// A caller the stage does not allow asked for something only some callers may do (a
    /// `Cache-Control: max-age=0` invalidation under FAIL_WITH_403): ACCESS_DENIED, 403 Forbidden.
    #[error("access denied: {reason}")]
    AccessDenied {
        /// What was refused (for the log).
        reason: &'static str,
    },
    /// Too many failed key attempts from one address: THROTTLED for unknown keys only.
    #[error("too many failed API key attempts from this address")]
    KeyAttemptsThrottled,
    /// A throttle layer (plan, route or stage) was empty: THROTTLED.
    #[error("throttled")]
    Throttled {
        /// Until a retry can succeed.
        retry_after: Duration,
    },
    /// The usage plan's quota is used up: QUOTA_EXCEEDED.
    #[error("quota exceeded")]
    QuotaExceeded {
        /// Until the quota period resets.
        retry_after: Duration,
    },
    /// Route validation failed: BAD_REQUEST_PARAMETERS.
    #[error("missing required request parameters: {0:?}")]
    MissingParameters(Vec<String>),
    /// The body does not match the route's model ([`crate::validate`]): BAD_REQUEST_BODY.
    #[error("invalid request body: {0}")]
    InvalidBody(String),
    /// Malformed request line or parameter values (bad escapes, `..`, control characters).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// Body over the limit: REQUEST_TOO_LARGE.
    #[error("request body too large")]
    RequestTooLarge,
    /// Headers over the limit.
    #[error("request headers too large")]
    HeadersTooLarge,
    /// The body did not arrive within `server.body_timeout_secs`: 408, a DEFAULT_4XX response.
    #[error("request body not complete within the body timeout")]
    RequestTimeout,
    /// No template for the Content-Type under a strict passthrough behaviour: UNSUPPORTED_MEDIA_TYPE.
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// A request template read the body as JSON and it starts like JSON but is not: BAD_REQUEST_BODY.
    #[error("request body is not valid JSON: {0}")]
    BadRequestBody(String),
    /// The model answered 4xx: its status and body reach the client as they are.
    #[error("model error {status}")]
    ModelError {
        /// The container's status (`OriginalStatusCode`).
        status: u16,
        /// The container's body (`OriginalMessage`).
        body: Bytes,
    },
    /// SageMaker throttled the call or the model is not ready: 429 like THROTTLED.
    #[error("upstream throttled: {0}")]
    UpstreamThrottled(String),
    /// The integration did not answer within the route's timeout: INTEGRATION_TIMEOUT.
    #[error("integration timed out after {0:?}")]
    IntegrationTimeout(Duration),
    /// Any other upstream failure (5xx, 530, reset, refused, unparsable answer): INTEGRATION_FAILURE.
    #[error("integration failed: {0}")]
    IntegrationFailure(String),
    /// The endpoint's circuit breaker is open: the call was not made ([`crate::breaker`]). The
    /// client sees what a failing SageMaker call gives (INTEGRATION_FAILURE, 502), plus
    /// `Retry-After` with the rest of the cool-down; the access log says `CircuitOpen`.
    #[error("circuit breaker open for endpoint `{endpoint}`: failing fast for {retry_after:?}")]
    CircuitOpen {
        /// The SageMaker endpoint whose circuit is open.
        endpoint: String,
        /// Rest of the cool-down (zero while half-open probes are in flight).
        retry_after: Duration,
    },
    /// A mapping template or configuration failed at run time: API_CONFIGURATION_ERROR.
    #[error("configuration error: {0}")]
    ApiConfiguration(String),
    /// The gateway cannot decide the request now (the shared limit store is down under the `deny`
    /// policy): 503 like API Gateway's DEFAULT_5XX.
    #[error("service unavailable: {reason}")]
    Unavailable {
        /// Why (for the log).
        reason: &'static str,
    },
}

/// The gateway-response type names of API Gateway (configuration keys for overrides).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResponseType {
    /// MISSING_AUTHENTICATION_TOKEN
    MissingAuthenticationToken,
    /// ACCESS_DENIED
    AccessDenied,
    /// INVALID_API_KEY
    InvalidApiKey,
    /// THROTTLED
    Throttled,
    /// QUOTA_EXCEEDED
    QuotaExceeded,
    /// BAD_REQUEST_PARAMETERS
    BadRequestParameters,
    /// BAD_REQUEST_BODY
    BadRequestBody,
    /// REQUEST_TOO_LARGE
    RequestTooLarge,
    /// UNSUPPORTED_MEDIA_TYPE
    UnsupportedMediaType,
    /// INTEGRATION_TIMEOUT
    IntegrationTimeout,
    /// INTEGRATION_FAILURE
    IntegrationFailure,
    /// API_CONFIGURATION_ERROR
    ApiConfigurationError,
    /// DEFAULT_4XX (the body timeout's 408; the fallback of every 4xx type without an override)
    Default4xx,
    /// DEFAULT_5XX (used for the draining 503)
    Default5xx,
}

impl ResponseType {
    /// Every type with its configuration name.
    pub const ALL: [(ResponseType, &'static str); 14] = [
        (
            ResponseType::MissingAuthenticationToken,
            "MISSING_AUTHENTICATION_TOKEN",
        ),
        (ResponseType::AccessDenied, "ACCESS_DENIED"),
        (ResponseType::InvalidApiKey, "INVALID_API_KEY"),
        (ResponseType::Throttled, "THROTTLED"),
        (ResponseType::QuotaExceeded, "QUOTA_EXCEEDED"),
        (ResponseType::BadRequestParameters, "BAD_REQUEST_PARAMETERS"),
        (ResponseType::BadRequestBody, "BAD_REQUEST_BODY"),
        (ResponseType::RequestTooLarge, "REQUEST_TOO_LARGE"),
        (ResponseType::UnsupportedMediaType, "UNSUPPORTED_MEDIA_TYPE"),
        (ResponseType::IntegrationTimeout, "INTEGRATION_TIMEOUT"),
        (ResponseType::IntegrationFailure, "INTEGRATION_FAILURE"),
        (
            ResponseType::ApiConfigurationError,
            "API_CONFIGURATION_ERROR",
        ),
        (ResponseType::Default4xx, "DEFAULT_4XX"),
        (ResponseType::Default5xx, "DEFAULT_5XX"),
    ];

    /// The configuration name, e.g. `THROTTLED`.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(t, _)| *t == self)
            .map_or("DEFAULT_5XX", |(_, n)| n)
    }
}

/// A fully formed error response, before the common headers (request id, trace id) are added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorResponse {
    /// HTTP status.
    pub status: u16,
    /// Body bytes.
    pub body: Bytes,
    /// `Content-Type` of the body.
    pub content_type: &'static str,
    /// `x-amzn-ErrorType`, absent for the model's own errors.
    pub error_type: Option<&'static str>,
    /// `Retry-After` in seconds, on 429s and on 502s of an open circuit breaker.
    pub retry_after: Option<u64>,
    /// The gateway-response type (for overrides and the access log); `None` for model errors.
    pub response_type: Option<ResponseType>,
    /// `$context.error.message`.
    pub message: &'static str,
}

/// A `Retry-After` value in whole seconds: the wait rounded up, at least 1 (a client told "0"
/// would retry at once and be refused again). The one rounding every `Retry-After` uses.
pub fn retry_after_secs(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

impl GatewayError {
    /// API Gateway's response type of this outcome (`INVALID_API_KEY`, `THROTTLED`, …;
    /// `DEFAULT_5XX` for an outcome without its own), as traces name a failed stage.
    pub fn response_type_name(&self) -> &'static str {
        self.default_response()
            .response_type
            .map_or("DEFAULT_5XX", ResponseType::name)
    }

    /// API Gateway's default response for this outcome (the table).
    pub fn default_response(&self) -> ErrorResponse {
        use GatewayError as E;
        use ResponseType as T;
        let r = |status, body: &'static str, error_type, rt, message| ErrorResponse {
            status,
            body: Bytes::from_static(body.as_bytes()),
            content_type: "application/json",
            error_type: Some(error_type),
            retry_after: None,
            response_type: Some(rt),
            message,
        };
        match self {
            E::MissingAuthenticationToken => r(
                403,
                r#"{"message":"Missing Authentication Token"}"#,
                "MissingAuthenticationTokenException",
                T::MissingAuthenticationToken,
                "Missing Authentication Token",
            ),
            E::UnknownStage => r(
                403,
                r#"{"message":"Forbidden"}"#,
                "ForbiddenException",
                T::AccessDenied,
                "Forbidden",
            ),
            E::AccessDenied { .. } => r(
                403,
                r#"{"message":"Forbidden"}"#,
                "ForbiddenException",
                T::AccessDenied,
                "Forbidden",
            ),
            E::InvalidApiKey { .. } => r(
                403,
                r#"{"message":"Forbidden"}"#,
                "ForbiddenException",
                T::InvalidApiKey,
                "Forbidden",
            ),
            // One THROTTLED response, with the wait that fits each cause.
            E::KeyAttemptsThrottled | E::Throttled { .. } | E::UpstreamThrottled(_) => {
                let wait = match self {
                    E::Throttled { retry_after } => retry_after_secs(*retry_after),
                    E::KeyAttemptsThrottled => 60,
                    _ => 1,
                };
                ErrorResponse {
                    retry_after: Some(wait),
                    ..r(
                        429,
                        r#"{"message":"Too Many Requests"}"#,
                        "TooManyRequestsException",
                        T::Throttled,
                        "Too Many Requests",
                    )
                }
            }
            E::QuotaExceeded { retry_after } => ErrorResponse {
                retry_after: Some(retry_after_secs(*retry_after)),
                ..r(
                    429,
                    r#"{"message":"Limit Exceeded"}"#,
                    "LimitExceededException",
                    T::QuotaExceeded,
                    "Limit Exceeded",
                )
            },
            E::MissingParameters(names) => ErrorResponse {
                body: Bytes::from(format!(
                    "{{\"message\": {}}}",
                    json_string(&format!(
                        "Missing required request parameters: [{}]",
                        names.join(", ")
                    ))
                )),
                ..r(
                    400,
                    "",
                    "BadRequestException",
                    T::BadRequestParameters,
                    "Missing required request parameters",
                )
            },
            E::InvalidBody(_) => r(
                400,
                r#"{"message": "Invalid request body"}"#,
                "BadRequestException",
                T::BadRequestBody,
                "Invalid request body",
            ),
            E::InvalidRequest(why) => ErrorResponse {
                body: Bytes::from(format!(
                    "{{\"message\": {}}}",
                    json_string(&format!("Invalid request: {why}"))
                )),
                ..r(
                    400,
                    "",
                    "BadRequestException",
                    T::BadRequestParameters,
                    "Invalid request",
                )
            },
            E::RequestTooLarge => r(
                413,
                r#"{"message":"Request Too Long"}"#,
                "RequestTooLongException",
                T::RequestTooLarge,
                "Request Too Long",
            ),
            E::HeadersTooLarge => r(
                431,
                r#"{"message":"Request Header Fields Too Large"}"#,
                "RequestHeaderFieldsTooLargeException",
                T::RequestTooLarge,
                "Request Header Fields Too Large",
            ),
            E::RequestTimeout => r(
                408,
                r#"{"message":"Request Timeout"}"#,
                "RequestTimeoutException",
                T::Default4xx,
                "Request Timeout",
            ),
            E::UnsupportedMediaType => r(
                415,
                r#"{"message":"Unsupported Media Type"}"#,
                "UnsupportedMediaTypeException",
                T::UnsupportedMediaType,
                "Unsupported Media Type",
            ),
            E::BadRequestBody(_) => r(
                400,
                r#"{"message": "Could not process payload"}"#,
                "BadRequestException",
                T::BadRequestBody,
                "Could not process payload",
            ),
            E::ModelError { status, body } => ErrorResponse {
                status: *status,
                body: body.clone(),
                content_type: "application/json",
                error_type: None,
                retry_after: None,
                response_type: None,
                message: "Model error",
            },
            E::IntegrationTimeout(_) => r(
                504,
                r#"{"message": "Endpoint request timed out"}"#,
                "InternalServerErrorException",
                T::IntegrationTimeout,
                "Endpoint request timed out",
            ),
            E::IntegrationFailure(_) => r(
                502,
                r#"{"message": "Internal server error"}"#,
                "InternalServerErrorException",
                T::IntegrationFailure,
                "Internal server error",
            ),
            // Same bytes as any failed SageMaker call: a client cannot tell (and need not care)
            // whether the endpoint failed just now or a moment ago. `Retry-After` says when to
            // come back.
            E::CircuitOpen { retry_after, .. } => ErrorResponse {
                retry_after: Some(retry_after_secs(*retry_after)),
                ..r(
                    502,
                    r#"{"message": "Internal server error"}"#,
                    "InternalServerErrorException",
                    T::IntegrationFailure,
                    "Internal server error",
                )
            },
            E::ApiConfiguration(_) => r(
                500,
                r#"{"message": "Internal server error"}"#,
                "InternalServerErrorException",
                T::ApiConfigurationError,
                "Internal server error",
            ),
            E::Unavailable { .. } => ErrorResponse {
                retry_after: Some(1),
                ..r(
                    503,
                    r#"{"message":"Service Unavailable"}"#,
                    "ServiceUnavailableException",
                    T::Default5xx,
                    "Service Unavailable",
                )
            },
        }
    }
}

/// `s` as a JSON string literal.
pub fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(e: GatewayError) -> (u16, String, Option<&'static str>) {
        let r = e.default_response();
        (
            r.status,
            String::from_utf8(r.body.to_vec()).unwrap(),
            r.error_type,
        )
    }

    #[test]
    fn api_gateway_defaults_byte_for_byte() {
        assert_eq!(
            body(GatewayError::MissingAuthenticationToken),
            (
                403,
                r#"{"message":"Missing Authentication Token"}"#.into(),
                Some("MissingAuthenticationTokenException")
            )
        );
        assert_eq!(
            body(GatewayError::InvalidApiKey { reason: "x" }).1.len(),
            23
        );
        assert_eq!(
            body(GatewayError::MissingParameters(vec!["k".into()])).1,
            r#"{"message": "Missing required request parameters: [k]"}"#
        );
        assert_eq!(
            body(GatewayError::InvalidBody("[detail]".into())),
            (
                400,
                r#"{"message": "Invalid request body"}"#.into(),
                Some("BadRequestException")
            )
        );
        assert_eq!(
            body(GatewayError::IntegrationTimeout(Duration::ZERO))
                .1
                .len(),
            41
        );
        assert_eq!(
            body(GatewayError::IntegrationFailure(String::new()))
                .1
                .len(),
            36
        );
        assert_eq!(
            body(GatewayError::RequestTimeout),
            (
                408,
                r#"{"message":"Request Timeout"}"#.into(),
                Some("RequestTimeoutException")
            )
        );
        assert_eq!(
            GatewayError::RequestTimeout
                .default_response()
                .response_type,
            Some(ResponseType::Default4xx)
        );
        let throttled = GatewayError::Throttled {
            retry_after: Duration::from_millis(1500),
        }
        .default_response();
        assert_eq!(throttled.retry_after, Some(2));
    }

    #[test]
    fn an_open_circuit_looks_like_a_failed_call_with_retry_after() {
        let open = GatewayError::CircuitOpen {
            endpoint: "ep".into(),
            retry_after: Duration::from_millis(2500),
        }
        .default_response();
        let failed = GatewayError::IntegrationFailure(String::new()).default_response();
        assert_eq!(
            (open.status, &open.body, open.error_type, open.response_type),
            (
                failed.status,
                &failed.body,
                failed.error_type,
                failed.response_type
            )
        );
        assert_eq!(open.retry_after, Some(3));
        let probing = GatewayError::CircuitOpen {
            endpoint: "ep".into(),
            retry_after: Duration::ZERO,
        };
        assert_eq!(probing.default_response().retry_after, Some(1));
    }
}
