//! The lean `InvokeEndpoint` call: AWS's own SigV4 signer (`aws-sigv4`) and credentials from
//! `aws-config`'s default chain, sent on hyper with a connection pool per worker thread
//! ([`signed::HttpClient`]).
//!
//! Input: an [`Invocation`]. Output: the same `(Result<UpstreamReply, UpstreamFailure>, InvokeStats)`
//! as the SDK path, classified by the same table ([`super::classify`]).
//!
//! Why it exists: the SDK's orchestrator (config-bag layers, a dozen interceptor hooks, a retry
//! strategy object, user-agent formatting, boxed futures) cost about as much CPU per call as the
//! signature itself, and its call future dominated memory per in-flight request (bench/RESULTS.md).
//! This path keeps what SageMaker needs and what the gateway promises, and nothing else:
//!
//! - **Endpoint**: resolved once at start by the SDK's own endpoint resolver from the region, FIPS
//!   and dual-stack settings, or the override (`AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME`,
//!   `AWS_ENDPOINT_URL`, `sagemaker.endpoint_url`, in that order: [`super::client::endpoint_override`]).
//! - **Request**: `POST {endpoint}/endpoints/{name}/invocations` with `Content-Type`, `Accept`,
//!   `Content-Length`, the `X-Amzn-SageMaker-*` headers that are set, `X-Amzn-Trace-Id`, user
//!   agents; signed per attempt for signing name `sagemaker` with the SDK's default signing settings
//!   (the same signed headers as the SDK: e2e `upstream_paths.rs` compares them) by
//!   [`super::sigv4`], which keeps the day's signing key.
//! - **Retries**: the SDK's standard strategy as configured for the SDK path: at most
//!   `sagemaker.max_attempts` attempts; retried only for the SDK's throttling and transient error
//!   codes, HTTP 500/502/503/504, transport failures and responses cut short, never a model error or
//!   an answer that is not HTTP; full-jitter exponential backoff from 50 ms; the standard retry quota
//!   (500 tokens, 5 per throttling retry, 10 per other retry, returned on success).
//! - **Timeouts**: the route's timeout bounds the whole call, retries and backoff included; the
//!   connect timeout bounds each new connection, TCP connect and TLS handshake together, as the
//!   SDK's does (a connection that times out is retried like any transport failure).
//!
//! Invariants: credentials are read from [`CredentialCache`] (never fetched on the request path);
//! the secret and the signature never reach a log line; an answer is read up to
//! [`MAX_ANSWER_BYTES`] and no further (a longer one fails the call, without a retry).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};

use aws_runtime::retries::classifiers::{THROTTLING_ERRORS, TRANSIENT_ERRORS};
use bytes::Bytes;
use http::header::{
    ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderMap, HeaderName, HeaderValue, USER_AGENT,
};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};

use super::credentials::CredentialCache;
use super::signed::{self, HttpClient, Scope, error_chain, host_of};
use super::sigv4::Signer;
use super::{
    Invocation, InvokeStats, MAX_ANSWER_BYTES, REPLY_HEADERS, UpstreamFailure, UpstreamReply,
    classify,
};
use crate::error::GatewayError;

/// SageMaker Runtime's SigV4 signing name (not `runtime.sagemaker`).
pub const SIGNING_NAME: &str = "sagemaker";
/// First retry's backoff ceiling (the SDK path is configured with the same).
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(50);
/// The SDK's backoff ceiling.
const MAX_BACKOFF: Duration = Duration::from_secs(20);
/// The SDK's standard retry quota.
const QUOTA_CAPACITY: u32 = 500;
const QUOTA_THROTTLING_COST: u32 = 5;
const QUOTA_TRANSIENT_COST: u32 = 10;

const TRACE_ID: HeaderName = HeaderName::from_static("x-amzn-trace-id");
const AMZ_USER_AGENT: HeaderName = HeaderName::from_static("x-amz-user-agent");
const AGENT: &str = concat!("sagegate/", env!("CARGO_PKG_VERSION"), " md/aws-sigv4-lean");

/// Where calls go, resolved once at start.
#[derive(Debug, Clone)]
pub struct Target {
    /// Endpoint URL without a trailing `/` (`https://runtime.sagemaker.us-east-1.amazonaws.com`).
    pub base: String,
    /// Signing region.
    pub region: String,
}

/// Settings of the lean client.
#[derive(Debug, Clone)]
pub struct LeanSettings {
    /// The endpoint, or why none could be resolved (every call then fails with that reason).
    pub target: Result<Target, String>,
    /// Total attempts per call (1 to 3).
    pub max_attempts: u32,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
}

/// The lean SageMaker Runtime client; one per process, shared by every worker.
pub struct Lean {
    http: HttpClient,
    /// The target and its `Host` value, or why there is none.
    target: Result<(Target, HeaderValue), String>,
    credentials: Arc<CredentialCache>,
    /// Signs each attempt; keeps the day's signing key.
    signer: Signer,
    max_attempts: u32,
    quota: AtomicU32,
}

impl std::fmt::Debug for Lean {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lean")
            .field("target", &self.target)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

/// One attempt's outcome before classification.
enum Attempt {
    /// SageMaker (or something speaking HTTP) answered.
    Answered {
        status: u16,
        headers: HeaderMap,
        body: Bytes,
    },
    /// No complete answer; `retry` says whether the SDK would try again, and how it would charge
    /// the retry quota.
    Failed { retry: Option<u32>, detail: String },
    /// A 2xx answer to `InvokeEndpointWithResponseStream`: its event stream, unread.
    Open {
        headers: HeaderMap,
        body: hyper::body::Incoming,
    },
}

/// Which operation a call makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    /// `InvokeEndpoint`: the whole answer.
    Invoke,
    /// `InvokeEndpointWithResponseStream`: the answer's event stream, read by the caller.
    Stream,
}

impl Operation {
    fn path(self) -> &'static str {
        match self {
            Operation::Invoke => "invocations",
            Operation::Stream => "invocations-response-stream",
        }
    }
}

/// `InvokeEndpointWithResponseStream`'s name for the container's Accept.
const SAGEMAKER_ACCEPT: HeaderName = HeaderName::from_static("x-amzn-sagemaker-accept");
/// The container's Content-Type on a stream's answer.
const STREAM_CONTENT_TYPE: &str = "x-amzn-sagemaker-content-type";
/// Request headers `InvokeEndpointWithResponseStream` does not have (the SDK cannot send them).
const NOT_STREAMED: [&str; 2] = [
    "X-Amzn-SageMaker-Target-Model",
    "X-Amzn-SageMaker-Enable-Explanations",
];

impl Lean {
    /// Builds the client. Fails only when TLS cannot be set up at all.
    pub fn new(settings: LeanSettings, credentials: Arc<CredentialCache>) -> anyhow::Result<Lean> {
        let http = signed::http_client(settings.connect_timeout)?;
        let target = settings.target.and_then(|t| {
            let host = host_of(&t.base).map_err(|e| e.to_string())?;
            Ok((t, host))
        });
        Ok(Lean {
            http,
            target,
            credentials,
            signer: Signer::new(),
            max_attempts: settings.max_attempts.clamp(1, 3),
            quota: AtomicU32::new(QUOTA_CAPACITY),
        })
    }

    /// Calls `InvokeEndpoint`, bounded by `inv.timeout`.
    pub async fn invoke(
        &self,
        inv: &Invocation,
    ) -> (Result<UpstreamReply, UpstreamFailure>, InvokeStats) {
        let started = Instant::now();
        // Counted by `call` as each attempt starts; read after a timeout too.
        let attempts = AtomicU32::new(0);
        let call = self.call(inv, &attempts, Operation::Invoke);
        let result = tokio::time::timeout(inv.timeout, call).await;
        let latency = started.elapsed();
        let attempts = attempts.into_inner();
        let result = result.map_or_else(|_| Err(super::timed_out(inv.timeout)), finish);
        let stats = InvokeStats::of(&result, latency, attempts);
        (result, stats)
    }

    /// Calls `InvokeEndpointWithResponseStream` (retried like `InvokeEndpoint` until SageMaker
    /// answers 2xx), counting attempts into `attempts`; unbounded in time (the caller bounds it).
    /// Output: the answer's headers (those [`REPLY_HEADERS`] names) and its unread event stream.
    pub async fn open_stream(
        &self,
        inv: &Invocation,
        attempts: &AtomicU32,
    ) -> Result<(Vec<(String, String)>, hyper::body::Incoming), UpstreamFailure> {
        match self.call(inv, attempts, Operation::Stream).await {
            Attempt::Open { headers, body } => {
                // The client's type is the container's (`X-Amzn-SageMaker-Content-Type`), as the
                // SDK's `content_type()` reports it; the HTTP one is the event stream's.
                let mut kept = kept_headers(&headers);
                kept.retain(|(n, _)| n != "content-type");
                if let Some(v) = headers
                    .get(STREAM_CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                {
                    kept.push(("content-type".to_owned(), v.to_owned()));
                }
                Ok((kept, body))
            }
            other => finish(other).and_then(|reply| {
                // Only a 2xx opens a stream; `finish` turned everything else into a failure.
                Err(transport_failure(format!(
                    "SageMaker answered {} without an event stream",
                    reply.status
                )))
            }),
        }
    }

    /// Attempts and retries, unbounded in time (the caller bounds it); the last attempt's outcome.
    async fn call(&self, inv: &Invocation, attempts: &AtomicU32, op: Operation) -> Attempt {
        let (target, host) = match &self.target {
            Ok((t, h)) => (t, h),
            Err(why) => {
                return Attempt::Failed {
                    retry: None,
                    detail: format!("SageMaker endpoint unavailable: {why}"),
                };
            }
        };
        let mut uri = String::with_capacity(target.base.len() + inv.endpoint_name.len() + 64);
        uri.push_str(&target.base);
        uri.push_str("/endpoints/");
        uri.extend(percent_encoding::utf8_percent_encode(
            &inv.endpoint_name,
            LABEL,
        ));
        uri.push('/');
        uri.push_str(op.path());
        let mut attempt = 1;
        let mut held: Option<u32> = None;
        loop {
            attempts.fetch_add(1, Ordering::Relaxed);
            let outcome = self.attempt(inv, target, host, &uri, op).await;
            let retry = match &outcome {
                Attempt::Answered {
                    status,
                    headers,
                    body,
                } if !(200..300).contains(status) => retry_cost(*status, headers, body),
                Attempt::Answered { .. } | Attempt::Open { .. } => None,
                Attempt::Failed { retry, .. } => *retry,
            };
            let succeeded = match &outcome {
                Attempt::Answered { status, .. } => (200..300).contains(status),
                Attempt::Open { .. } => true,
                Attempt::Failed { .. } => false,
            };
            if succeeded {
                // The SDK returns a held retry permit on success, or earns one token back.
                self.refund(held.take().unwrap_or(1));
            }
            match retry {
                Some(cost) if attempt < self.max_attempts && self.take(cost) => {
                    held = Some(cost);
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
                _ => return outcome,
            }
        }
    }

    /// One signed request and its whole answer.
    async fn attempt(
        &self,
        inv: &Invocation,
        target: &Target,
        host: &HeaderValue,
        uri: &str,
        op: Operation,
    ) -> Attempt {
        let fail = |detail: String| Attempt::Failed {
            retry: None,
            detail,
        };
        let Some(identity) = self.credentials.current() else {
            return fail("no AWS credentials loaded (see the credential log lines)".to_owned());
        };
        let mut headers = HeaderMap::with_capacity(12);
        headers.insert(HOST, host.clone());
        let accept = match op {
            Operation::Invoke => ACCEPT,
            Operation::Stream => SAGEMAKER_ACCEPT,
        };
        let values = [
            (CONTENT_TYPE, Some(inv.content_type.as_str())),
            (accept, Some(inv.accept.as_str())),
        ]
        .into_iter()
        .chain(inv.optional_headers().into_iter().filter_map(|(name, v)| {
            if op == Operation::Stream && NOT_STREAMED.contains(&name) {
                return None;
            }
            // Only the headers that are set (the value checked first: a parsed name is an
            // allocation); the names are constants, valid header names.
            let v = v?;
            Some((HeaderName::from_bytes(name.as_bytes()).ok()?, Some(v)))
        }));
        for (name, value) in values {
            if let Some(v) = value {
                match HeaderValue::from_str(v) {
                    Ok(v) => {
                        headers.insert(name, v);
                    }
                    Err(_) => return fail(format!("{name} is not a valid header value")),
                }
            }
        }
        headers.insert(CONTENT_LENGTH, HeaderValue::from(inv.body.len()));
        headers.insert(AMZ_USER_AGENT, HeaderValue::from_static(AGENT));
        headers.insert(USER_AGENT, HeaderValue::from_static(AGENT));
        // Like the SDK path's `try_insert`: a trace id that is not a header value is left out.
        if let Ok(v) = HeaderValue::from_str(&inv.trace_id) {
            headers.insert(TRACE_ID, v);
        }
        let mut request = match http::Request::builder()
            .method(http::Method::POST)
            .uri(uri)
            .body(Full::new(inv.body.clone()))
        {
            Ok(r) => r,
            Err(e) => return fail(format!("cannot build the request: {e}")),
        };
        *request.headers_mut() = headers;
        let scope = Scope {
            region: &target.region,
            name: SIGNING_NAME,
        };
        if let Err(e) =
            self.signer
                .sign(&mut request, &inv.body, &identity, scope, SystemTime::now())
        {
            return fail(e);
        }
        let response = match self.http.request(request).await {
            Ok(r) => r,
            Err(e) => {
                return Attempt::Failed {
                    retry: signed::is_transient(&e).then_some(QUOTA_TRANSIENT_COST),
                    detail: format!("dispatch failure: {}", error_chain(&e)),
                };
            }
        };
        let (parts, body) = response.into_parts();
        if op == Operation::Stream && parts.status.is_success() {
            return Attempt::Open {
                headers: parts.headers,
                body,
            };
        }
        let declared = parts
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        let too_long = || fail(format!("answer longer than {MAX_ANSWER_BYTES} bytes"));
        if declared.is_some_and(|n| n > MAX_ANSWER_BYTES as u64) {
            return too_long();
        }
        match Limited::new(body, MAX_ANSWER_BYTES).collect().await {
            Ok(collected) => Attempt::Answered {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body: collected.to_bytes(),
            },
            Err(e) if e.is::<LengthLimitError>() => too_long(),
            // A response cut short is a response error, which the SDK retries.
            Err(e) => Attempt::Failed {
                retry: Some(QUOTA_TRANSIENT_COST),
                detail: format!("response error: {}", error_chain(e.as_ref())),
            },
        }
    }

    fn take(&self, cost: u32) -> bool {
        self.quota
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| t.checked_sub(cost))
            .is_ok()
    }

    fn refund(&self, n: u32) {
        let _ = self
            .quota
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                Some((t + n).min(QUOTA_CAPACITY))
            });
    }
}

/// SigV4 and SageMaker path label encoding: everything but unreserved characters.
const LABEL: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The SDK's backoff before retry number `attempt` (1 = first retry): a uniform random fraction of
/// `50 ms × 2^(attempt-1)`, at most 20 s.
fn backoff(attempt: u32) -> Duration {
    let ceiling = INITIAL_BACKOFF
        .saturating_mul(1 << (attempt - 1).min(16))
        .min(MAX_BACKOFF);
    ceiling.mul_f64(rand::random::<f64>())
}

/// The SDK's retry classifiers for an HTTP error answer; `Some(quota cost)` when it retries.
fn retry_cost(status: u16, headers: &HeaderMap, body: &[u8]) -> Option<u32> {
    let code = classify::error_code(
        headers
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok()),
        body,
    );
    match code.as_deref() {
        Some(c) if THROTTLING_ERRORS.contains(&c) => Some(QUOTA_THROTTLING_COST),
        Some(c) if TRANSIENT_ERRORS.contains(&c) => Some(QUOTA_TRANSIENT_COST),
        _ if matches!(status, 500 | 502 | 503 | 504) => Some(QUOTA_TRANSIENT_COST),
        _ => None,
    }
}

fn transport_failure(detail: String) -> UpstreamFailure {
    UpstreamFailure {
        error: GatewayError::IntegrationFailure(detail),
        reply: None,
    }
}

/// The last attempt's outcome as the pipeline sees it.
fn finish(outcome: Attempt) -> Result<UpstreamReply, UpstreamFailure> {
    match outcome {
        Attempt::Answered {
            status,
            headers,
            body,
        } if (200..300).contains(&status) => Ok(UpstreamReply {
            status: 200,
            body,
            headers: kept_headers(&headers),
        }),
        Attempt::Answered {
            status,
            headers,
            body,
        } => {
            let headers = headers
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            Err(classify::from_reply(UpstreamReply {
                status,
                body,
                headers,
            }))
        }
        Attempt::Failed { detail, .. } => Err(transport_failure(detail)),
        // Only `open_stream` asks for a stream, and it takes this variant itself.
        Attempt::Open { .. } => Err(transport_failure(
            "an event stream where a whole answer was expected".to_owned(),
        )),
    }
}

/// The answer headers the SDK path reports (from the operation's output), as received.
fn kept_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    // One pass over the (few) received headers instead of a hashed lookup per kept name; the
    // first value of a repeated name, as `HeaderMap::get` gives.
    let mut found: [Option<&HeaderValue>; REPLY_HEADERS.len()] = [None; REPLY_HEADERS.len()];
    for (name, value) in headers {
        if let Some(i) = REPLY_HEADERS.iter().position(|k| *k == name.as_str()) {
            found[i].get_or_insert(value);
        }
    }
    REPLY_HEADERS
        .iter()
        .zip(found)
        .filter_map(|(name, v)| Some(((*name).to_owned(), v?.to_str().ok()?.to_owned())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(error_type: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(t) = error_type {
            h.insert("x-amzn-errortype", HeaderValue::from_str(t).unwrap());
        }
        h
    }

    #[test]
    fn kept_headers_are_the_reported_ones_in_their_order_first_value_each() {
        let mut h = HeaderMap::new();
        h.append("x-amzn-requestid", HeaderValue::from_static("r1"));
        h.append("x-other", HeaderValue::from_static("o"));
        h.append("content-type", HeaderValue::from_static("application/json"));
        h.append("content-type", HeaderValue::from_static("text/csv"));
        h.append(
            super::super::INVOKED_VARIANT,
            HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
        );
        assert_eq!(
            kept_headers(&h),
            vec![
                ("content-type".to_owned(), "application/json".to_owned()),
                ("x-amzn-requestid".to_owned(), "r1".to_owned()),
            ]
        );
    }

    #[test]
    fn retried_exactly_where_the_sdk_retries() {
        let none = headers(None);
        assert_eq!(
            retry_cost(400, &headers(Some("ThrottlingException")), b"{}"),
            Some(5)
        );
        assert_eq!(retry_cost(503, &none, b"{}"), Some(10));
        assert_eq!(
            retry_cost(500, &headers(Some("InternalFailure")), b""),
            Some(10)
        );
        assert_eq!(
            retry_cost(408, &none, br#"{"__type":"com.amazon#RequestTimeout"}"#),
            Some(10)
        );
        // Never: a model error (424), a validation error, an unknown 4xx, 501.
        assert_eq!(retry_cost(424, &headers(Some("ModelError")), b"{}"), None);
        assert_eq!(
            retry_cost(400, &headers(Some("ValidationError")), b"{}"),
            None
        );
        assert_eq!(
            retry_cost(429, &headers(Some("ModelNotReadyException")), b""),
            None
        );
        assert_eq!(retry_cost(501, &none, b""), None);
    }

    #[test]
    fn backoff_is_jittered_under_an_exponential_ceiling() {
        for _ in 0..200 {
            assert!(backoff(1) < Duration::from_millis(50));
            assert!(backoff(2) < Duration::from_millis(100));
            assert!(backoff(30) <= MAX_BACKOFF);
        }
    }

    #[tokio::test]
    async fn quota_is_spent_by_retries_and_refilled_by_success() {
        let creds = aws_credential_types::Credentials::new("a", "b", None, None, "t");
        let lean = Lean::new(
            LeanSettings {
                target: Err("none".into()),
                max_attempts: 2,
                connect_timeout: Duration::from_secs(1),
            },
            CredentialCache::fixed(creds.into()),
        )
        .unwrap();
        let mut retries = 0;
        while lean.take(QUOTA_TRANSIENT_COST) {
            retries += 1;
        }
        assert_eq!(retries, QUOTA_CAPACITY / QUOTA_TRANSIENT_COST);
        assert!(!lean.take(QUOTA_THROTTLING_COST));
        lean.refund(QUOTA_THROTTLING_COST);
        assert!(lean.take(QUOTA_THROTTLING_COST));
        lean.refund(10_000);
        assert_eq!(lean.quota.load(Ordering::Relaxed), QUOTA_CAPACITY);
    }
}
