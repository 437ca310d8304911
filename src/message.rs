//! The request/response vocabulary every layer shares: a framework-free request head, the response
//! to write, and the names of the headers and paths that are part of the public contract.
//!
//! A leaf: it imports nothing from the crate, so the HTTP adapter, the pipeline, the stages and
//! `test-invoke` can all speak it without importing each other (see docs/architecture.md).

use bytes::Bytes;

/// Header carrying the API key (matched case-insensitively, as all header names).
pub const API_KEY_HEADER: &str = "x-api-key";
/// `x-amzn-RequestId`, on every response.
pub const REQUEST_ID_HEADER: &str = "x-amzn-RequestId";
/// `X-Amzn-Trace-Id`, propagated or generated.
pub const TRACE_ID_HEADER: &str = "X-Amzn-Trace-Id";
/// Path of the load balancer health check.
pub const HEALTH_PATH: &str = "/healthz";

/// SageMaker's name pattern `^[a-zA-Z0-9](-*[a-zA-Z0-9])*$` (endpoint, production variant,
/// container and inference component names; session ids) within `max` characters.
pub fn is_sagemaker_name(v: &str, max: usize) -> bool {
    let alnum = |b: Option<&u8>| b.is_some_and(u8::is_ascii_alphanumeric);
    let bytes = v.as_bytes();
    v.len() <= max
        && alnum(bytes.first())
        && alnum(bytes.last())
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
}

/// A request head as the pipeline sees it (the body is streamed to the `read body` stage).
#[derive(Debug, Clone)]
pub struct GatewayRequest {
    /// Method as received.
    pub method: String,
    /// Raw path, without the query string.
    pub path: String,
    /// Raw query string, without `?`.
    pub query: String,
    /// Headers in order, names lower-cased.
    pub headers: Vec<(String, String)>,
}

impl GatewayRequest {
    /// All values of header `name` (lower case).
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The single value of header `name`, the last one when repeated.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A response to write.
#[derive(Debug, Clone)]
pub struct GatewayResponse {
    /// Status code.
    pub status: u16,
    /// Headers (the adapter adds `x-amzn-RequestId` and `X-Amzn-Trace-Id`).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Bytes,
}
