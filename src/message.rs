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

/// Longest prefix of an invalid variant name the access log keeps.
const VARIANT_LOGGED: usize = 63;

/// The invoked variant as the access log and metrics hold it: a SageMaker variant name as is,
/// anything else (a model container or proxy's header can be as long as an HTTP head) cut to
/// [`VARIANT_LOGGED`] characters and marked with `…`, so one answer cannot write kilobytes into
/// every log line, and the metrics label it `other`.
pub fn variant_logged(v: &str) -> String {
    if is_sagemaker_name(v, VARIANT_LOGGED) {
        return v.to_owned();
    }
    let mut cut: String = v.chars().take(VARIANT_LOGGED).collect();
    cut.push('…');
    cut
}

/// Longest SageMaker request id (`x-amzn-RequestId`, a UUID) the access log keeps: like a variant
/// name, an answer's header could otherwise write kilobytes into every log line.
const REQUEST_ID_LOGGED: usize = 128;

/// SageMaker's request id as the access log holds it (`$context.awsEndpointRequestId`).
pub fn request_id_logged(v: &str) -> String {
    v.chars().take(REQUEST_ID_LOGGED).collect()
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
#[derive(Debug)]
pub struct GatewayResponse {
    /// Status code.
    pub status: u16,
    /// Headers (the adapter adds `x-amzn-RequestId` and `X-Amzn-Trace-Id`).
    pub headers: Vec<(String, String)>,
    /// Body (empty when `stream` is set).
    pub body: Bytes,
    /// A streaming route's body, relayed as SageMaker sends it ([`BodyStream`]); `None` for every
    /// other response.
    pub stream: Option<BodyStream>,
}

/// How a streamed response ended (access log `stream.outcome`, metrics label `outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamOutcome {
    /// SageMaker's stream ended cleanly and every byte was handed to the connection.
    Complete,
    /// SageMaker sent `ModelStreamError` / `InternalStreamFailure`, or its connection broke.
    UpstreamError,
    /// No next part within `idle_timeout_ms`, or `max_duration_ms` reached.
    Timeout,
    /// The client went away before the end.
    ClientGone,
    /// The gateway shut down (SIGTERM) and the drain grace ran out.
    Shutdown,
}

impl StreamOutcome {
    /// Every outcome, for metrics label sets.
    pub const ALL: [StreamOutcome; 5] = [
        StreamOutcome::Complete,
        StreamOutcome::UpstreamError,
        StreamOutcome::Timeout,
        StreamOutcome::ClientGone,
        StreamOutcome::Shutdown,
    ];

    /// The name logged and used as a metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            StreamOutcome::Complete => "complete",
            StreamOutcome::UpstreamError => "upstream_error",
            StreamOutcome::Timeout => "timeout",
            StreamOutcome::ClientGone => "client_gone",
            StreamOutcome::Shutdown => "shutdown",
        }
    }
}

/// One item of a streamed body.
#[derive(Debug)]
pub enum Relayed {
    /// One SageMaker part's bytes, framed for the client (as is, or as an SSE event).
    Part(Bytes),
    /// The end of the stream: how it ended, the last bytes to write (an SSE `event: error`), and
    /// whether the connection must then be cut without the body's proper end (chunked transfer
    /// after a failure: no terminating zero-length chunk, so the client sees an incomplete body).
    End {
        /// How the stream ended.
        outcome: StreamOutcome,
        /// SageMaker's error type when SageMaker failed the stream (a name of the upstream error
        /// list: `ModelStreamError`, `InternalStreamFailure`, `Transport`, `Timeout` for an idle
        /// stream); `None` for a clean end, the gateway's own limit, shutdown, or a client gone.
        error_type: Option<&'static str>,
        /// Bytes to write before ending.
        last: Option<Bytes>,
        /// Cut the connection instead of ending the body.
        abort: bool,
        /// Why a stream that did not complete ended, for the log (never sent to the client).
        cause: Option<String>,
    },
}

/// A streamed body: [`Relayed`] items as they become available, the last one an `End`. Dropping it
/// cancels the SageMaker call behind it.
pub struct BodyStream(pub std::pin::Pin<Box<dyn futures_util::Stream<Item = Relayed> + Send>>);

impl std::fmt::Debug for BodyStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BodyStream")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_upstream_request_id_is_cut_for_the_log() {
        assert_eq!(super::request_id_logged(&"a".repeat(60_000)).len(), 128);
    }
}
