//! Requests to a gateway and the checks every gateway response must pass.
//!
//! [`Reply`] is a response read whole. Building one checks the headers API Gateway puts on every
//! response (reference §1.5): `x-amzn-RequestId` is a UUID and `X-Amzn-Trace-Id` is present. The
//! `assert_*` methods state the expected status, exact body bytes and `x-amzn-ErrorType`.

use reqwest::header::HeaderMap;

/// Whether `s` is a hyphenated UUID (8-4-4-4-12 hex digits).
pub fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether `s` is an X-Ray root trace id as the gateway generates it.
pub fn is_generated_trace_id(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("Root=1-") else {
        return false;
    };
    let rest = rest.split(';').next().unwrap_or_default();
    match rest.split_once('-') {
        Some((time, random)) => {
            time.len() == 8
                && random.len() == 24
                && (time.bytes().chain(random.bytes())).all(|b| b.is_ascii_hexdigit())
        }
        None => false,
    }
}

/// A response from the gateway, read whole.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: HeaderMap,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Reply {
    /// Reads `resp` and checks the headers every gateway response carries.
    pub async fn read(resp: reqwest::Response) -> Reply {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.expect("read body").to_vec();
        let reply = Reply {
            status,
            headers,
            body,
        };
        let id = reply.request_id();
        assert!(
            is_uuid(&id),
            "x-amzn-RequestId {id:?} is not a UUID: {reply:?}"
        );
        assert!(
            reply.header("x-amzn-trace-id").is_some(),
            "no X-Amzn-Trace-Id: {reply:?}"
        );
        reply
    }

    /// Header `name`, when present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `x-amzn-RequestId`.
    pub fn request_id(&self) -> String {
        self.header("x-amzn-requestid")
            .unwrap_or_default()
            .to_owned()
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {self:?}"))
    }

    /// Status 200 with a JSON body; returns the body.
    pub fn assert_ok(&self) -> serde_json::Value {
        assert_eq!(
            self.status,
            200,
            "expected 200, got {} {}",
            self.status,
            self.text()
        );
        self.json()
    }

    /// A gateway response: `status`, exactly `body`, `x-amzn-ErrorType: error_type`, JSON.
    pub fn assert_gateway_error(&self, status: u16, body: &str, error_type: &str) {
        assert_eq!(
            (self.status, self.text().as_str()),
            (status, body),
            "unexpected response {self:?}"
        );
        assert_eq!(
            self.header("x-amzn-errortype"),
            Some(error_type),
            "x-amzn-ErrorType of {self:?}"
        );
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "content-type of {self:?}"
        );
        assert_eq!(
            self.header("content-length"),
            Some(body.len().to_string().as_str()),
            "content-length of {self:?}"
        );
        if status == 429 {
            let retry = self.header("retry-after").unwrap_or_else(|| {
                panic!("429 without Retry-After: {self:?}");
            });
            let secs: u64 = retry
                .parse()
                .unwrap_or_else(|_| panic!("Retry-After {retry:?} is not delta-seconds"));
            assert!(secs >= 1, "Retry-After {secs}");
        }
    }

    /// 403 Missing Authentication Token.
    pub fn assert_missing_authentication_token(&self) {
        self.assert_gateway_error(
            403,
            r#"{"message":"Missing Authentication Token"}"#,
            "MissingAuthenticationTokenException",
        );
    }

    /// 403 Forbidden.
    pub fn assert_forbidden(&self) {
        self.assert_gateway_error(403, r#"{"message":"Forbidden"}"#, "ForbiddenException");
    }

    /// 415 Unsupported Media Type (no request template for the Content-Type, no passthrough).
    pub fn assert_unsupported_media_type(&self) {
        self.assert_gateway_error(
            415,
            r#"{"message":"Unsupported Media Type"}"#,
            "UnsupportedMediaTypeException",
        );
    }

    /// 429 Too Many Requests.
    pub fn assert_too_many_requests(&self) {
        self.assert_gateway_error(
            429,
            r#"{"message":"Too Many Requests"}"#,
            "TooManyRequestsException",
        );
    }

    /// 429 Limit Exceeded.
    pub fn assert_limit_exceeded(&self) {
        self.assert_gateway_error(
            429,
            r#"{"message":"Limit Exceeded"}"#,
            "LimitExceededException",
        );
    }

    /// 502 Internal server error.
    pub fn assert_bad_gateway(&self) {
        self.assert_gateway_error(
            502,
            r#"{"message": "Internal server error"}"#,
            "InternalServerErrorException",
        );
    }

    /// 503 Service Unavailable (the memory budget or its slots, a limit store down with `deny`),
    /// with `Retry-After`.
    pub fn assert_service_unavailable(&self) {
        self.assert_gateway_error(
            503,
            r#"{"message":"Service Unavailable"}"#,
            "ServiceUnavailableException",
        );
        assert!(self.header("retry-after").is_some(), "{self:?}");
    }

    /// 504 Endpoint request timed out.
    pub fn assert_timed_out(&self) {
        self.assert_gateway_error(
            504,
            r#"{"message": "Endpoint request timed out"}"#,
            "InternalServerErrorException",
        );
    }

    /// Whether this is the throttling 429.
    pub fn is_too_many_requests(&self) -> bool {
        self.status == 429 && self.body == br#"{"message":"Too Many Requests"}"#
    }
}
