//! The `invoke` stage: one SageMaker `InvokeEndpoint` call, signed with AWS's SigV4 signer and
//! credentials from the default AWS chain.
//!
//! Input: an [`Invocation`] (endpoint, body, content type, identifier headers, timeout). Output: an
//! [`UpstreamReply`] or an [`UpstreamFailure`] already classified the way API Gateway reports it.
//! This is the only stage that does I/O.
//!
//! Layout, shaped like a vector sink: [`client`] builds the client once at start from the default
//! AWS chain (config, credentials, region, endpoint override), choosing by `sagemaker.client`:
//! [`lean`] (default: `aws-sigv4` + hyper, a pool per worker, credentials kept fresh by
//! [`credentials`]) or the full SDK client (`sdk`). [`classify`] maps every outcome of either onto
//! the error table. [`signed`] holds what every signed AWS call shares (the pooled HTTPS client,
//! SigV4 signing, transport error rules), also used by [`s3`], the keys source's `GetObject`;
//! [`sigv4`] signs the invoke calls with aws-sigv4's primitives and a signing key kept for the day.
//! Retries, on both: the SDK's standard rule (throttling and transient 5xx/IO errors, never a
//! model's 4xx), bounded by `sagemaker.max_attempts`; the whole call including retries is bounded
//! by the route's timeout.
//!
//! Security: requests are SigV4-signed with credentials from the chain; credentials and upstream
//! bodies of non-model errors are never logged verbatim at info level or returned to clients.

pub mod classify;
pub mod client;
pub mod credentials;
pub mod lean;
pub mod s3;
pub mod signed;
pub mod sigv4;
pub mod stream;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_sagemakerruntime::Client;
use aws_sdk_sagemakerruntime::operation::RequestId;
use aws_sdk_sagemakerruntime::primitives::Blob;
use bytes::Bytes;
use futures_util::future::BoxFuture;

use crate::error::GatewayError;

/// Largest SageMaker answer read, in bytes: API Gateway's 10 MB payload limit (SageMaker's own is
/// 6 MB). A longer answer, declared or as it arrives, is an upstream failure (502, not retried) and
/// is never held whole: without the bound an endpoint (or anything at `endpoint_url`) answering
/// without end would grow the task until it is killed, outside the memory budget.
pub const MAX_ANSWER_BYTES: usize = 10 * 1024 * 1024;

/// One call to make.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// SageMaker endpoint name (stage variables already resolved).
    pub endpoint_name: String,
    /// Request body.
    pub body: Bytes,
    /// `Content-Type` of the body.
    pub content_type: String,
    /// `Accept`.
    pub accept: String,
    /// `X-Amzn-SageMaker-Custom-Attributes`.
    pub custom_attributes: Option<String>,
    /// `X-Amzn-SageMaker-Inference-Id`.
    pub inference_id: Option<String>,
    /// `X-Amzn-SageMaker-Target-Variant`.
    pub target_variant: Option<String>,
    /// `X-Amzn-SageMaker-Target-Model` (a multi-model endpoint's model).
    pub target_model: Option<String>,
    /// `X-Amzn-SageMaker-Inference-Component`.
    pub inference_component_name: Option<String>,
    /// `X-Amzn-SageMaker-Target-Container-Hostname` (a multi-container endpoint's container).
    pub target_container_hostname: Option<String>,
    /// `X-Amzn-SageMaker-Session-Id` (`NEW_SESSION` or an open session's id).
    pub session_id: Option<String>,
    /// `X-Amzn-SageMaker-Enable-Explanations` (a JMESPath expression for Clarify).
    pub enable_explanations: Option<String>,
    /// `X-Amzn-Trace-Id` passed on to SageMaker.
    pub trace_id: String,
    /// Bound on the whole call, retries included.
    pub timeout: Duration,
}

impl Invocation {
    /// SageMaker's optional request headers (names as the SDK writes them) and their values, in the
    /// SDK serializer's order; both clients send exactly these (e2e `upstream_paths.rs`).
    pub fn optional_headers(&self) -> [(&'static str, Option<&str>); 8] {
        [
            (
                "X-Amzn-SageMaker-Custom-Attributes",
                self.custom_attributes.as_deref(),
            ),
            (
                "X-Amzn-SageMaker-Target-Model",
                self.target_model.as_deref(),
            ),
            (
                "X-Amzn-SageMaker-Target-Variant",
                self.target_variant.as_deref(),
            ),
            (
                "X-Amzn-SageMaker-Target-Container-Hostname",
                self.target_container_hostname.as_deref(),
            ),
            (
                "X-Amzn-SageMaker-Inference-Id",
                self.inference_id.as_deref(),
            ),
            (
                "X-Amzn-SageMaker-Enable-Explanations",
                self.enable_explanations.as_deref(),
            ),
            (
                "X-Amzn-SageMaker-Inference-Component",
                self.inference_component_name.as_deref(),
            ),
            ("X-Amzn-SageMaker-Session-Id", self.session_id.as_deref()),
        ]
    }
}

/// The answer headers the two clients report on success (lower case): what the SDK's
/// `InvokeEndpointOutput` models besides the body.
pub const REPLY_HEADERS: [&str; 6] = [
    "content-type",
    INVOKED_VARIANT,
    "x-amzn-sagemaker-custom-attributes",
    NEW_SESSION_ID,
    CLOSED_SESSION_ID,
    "x-amzn-requestid",
];
/// The production variant that answered.
pub const INVOKED_VARIANT: &str = "x-amzn-invoked-production-variant";
/// A session SageMaker opened for `Session-Id: NEW_SESSION`: `<id>; Expires=<time>`.
pub const NEW_SESSION_ID: &str = "x-amzn-sagemaker-new-session-id";
/// A session SageMaker closed.
pub const CLOSED_SESSION_ID: &str = "x-amzn-sagemaker-closed-session-id";

/// An HTTP answer from SageMaker: the model's output on success, SageMaker's error document otherwise.
#[derive(Debug, Clone)]
pub struct UpstreamReply {
    /// SageMaker's status (200; 424 for a model error; 429; 5xx...).
    pub status: u16,
    /// Body as received.
    pub body: Bytes,
    /// Response headers, names lower-cased (`content-type`, `x-amzn-invoked-production-variant`,
    /// `x-amzn-sagemaker-custom-attributes`, `x-amzn-requestid`).
    pub headers: Vec<(String, String)>,
}

impl UpstreamReply {
    /// The value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A failed call: the client-visible classification, and SageMaker's answer when there was one
/// (integration responses can select on it).
#[derive(Debug)]
pub struct UpstreamFailure {
    /// The outcome per DESIGN §1.
    pub error: GatewayError,
    /// SageMaker's HTTP answer, absent for timeouts and transport failures.
    pub reply: Option<UpstreamReply>,
}

/// The SageMaker Runtime integration.
#[derive(Debug, Clone)]
pub struct SageMaker {
    client: Calls,
}

/// Which code makes the call (`sagemaker.client`, or an in-process [`Invoke`]).
#[derive(Debug, Clone)]
enum Calls {
    Sdk(Client),
    Lean(Arc<lean::Lean>),
    Local(Local),
}

/// SageMaker in process: answers an [`Invocation`] with SageMaker's HTTP answer, without a
/// network. The seam that lets the assembled pipeline run in tests (under Tokio's paused clock);
/// [`SageMaker::local`] wraps it with what every client does around a call: the route timeout
/// (504) and the classification of non-2xx answers ([`classify::from_reply`], as the lean
/// client's). Any `Fn(Invocation) -> impl Future<Output = UpstreamReply>` is one.
pub trait Invoke: Send + Sync + 'static {
    /// SageMaker's answer to `inv` (any status; a 424 with `x-amzn-ErrorType: ModelError` is a
    /// model's error, as SageMaker sends it).
    fn invoke(&self, inv: Invocation) -> BoxFuture<'static, UpstreamReply>;
}

impl<F, Fut> Invoke for F
where
    F: Fn(Invocation) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = UpstreamReply> + Send + 'static,
{
    fn invoke(&self, inv: Invocation) -> BoxFuture<'static, UpstreamReply> {
        Box::pin(self(inv))
    }
}

#[derive(Clone)]
struct Local(Arc<dyn Invoke>);

impl std::fmt::Debug for Local {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Local")
    }
}

/// What an invocation did, for the access log.
#[derive(Debug, Clone, Copy, Default)]
pub struct InvokeStats {
    /// Wall time of the call, retries included.
    pub latency: Duration,
    /// Upstream HTTP status when one was received.
    pub status: Option<u16>,
    /// HTTP attempts the SDK made (1, or more after retries); 0 before the first was sent.
    pub attempts: u32,
}

impl InvokeStats {
    /// The stats of a finished call (`result` already carries a timeout as a failure): the status
    /// SageMaker answered with, if it answered.
    pub fn of(
        result: &Result<UpstreamReply, UpstreamFailure>,
        latency: Duration,
        attempts: u32,
    ) -> Self {
        let status = match result {
            Ok(reply) => Some(reply.status),
            Err(failure) => failure.reply.as_ref().map(|r| r.status),
        };
        InvokeStats {
            latency,
            status,
            attempts,
        }
    }
}

/// The failure of a call that outlived its route timeout.
fn timed_out(timeout: Duration) -> UpstreamFailure {
    UpstreamFailure {
        error: GatewayError::IntegrationTimeout(timeout),
        reply: None,
    }
}

impl SageMaker {
    /// Calls through the SDK client `client`.
    pub fn new(client: Client) -> Self {
        SageMaker {
            client: Calls::Sdk(client),
        }
    }

    /// Calls through the lean client.
    pub fn lean(client: lean::Lean) -> Self {
        SageMaker {
            client: Calls::Lean(Arc::new(client)),
        }
    }

    /// Answers from `invoke`, in process (see [`Invoke`]).
    pub fn local(invoke: impl Invoke) -> Self {
        SageMaker {
            client: Calls::Local(Local(Arc::new(invoke))),
        }
    }

    /// Calls `InvokeEndpoint`, bounded by `inv.timeout`.
    pub async fn invoke(
        &self,
        inv: &Invocation,
    ) -> (Result<UpstreamReply, UpstreamFailure>, InvokeStats) {
        match &self.client {
            Calls::Lean(lean) => lean.invoke(inv).await,
            // Boxed: the SDK's call future is several KB, and every in-flight request through the
            // lean path would otherwise reserve that much too. The SDK's builder takes owned
            // values: its call gets a copy (the lean one borrows).
            Calls::Sdk(client) => Box::pin(invoke_sdk(client, inv.clone())).await,
            Calls::Local(Local(local)) => {
                let started = tokio::time::Instant::now();
                let timeout = inv.timeout;
                let result = match tokio::time::timeout(timeout, local.invoke(inv.clone())).await {
                    Err(_) => Err(timed_out(timeout)),
                    Ok(reply) if (200..300).contains(&reply.status) => Ok(reply),
                    Ok(reply) => Err(classify::from_reply(reply)),
                };
                let stats = InvokeStats::of(&result, started.elapsed(), 1);
                (result, stats)
            }
        }
    }
}

/// The answer headers an SDK operation's output reports: those that are set.
fn reported(values: &[(&str, Option<&str>)]) -> Vec<(String, String)> {
    values
        .iter()
        .filter_map(|(name, value)| Some(((*name).to_owned(), (*value)?.to_owned())))
        .collect()
}

/// The SDK path: `InvokeEndpoint` through `aws-sdk-sagemakerruntime`.
async fn invoke_sdk(
    client: &Client,
    inv: Invocation,
) -> (Result<UpstreamReply, UpstreamFailure>, InvokeStats) {
    let started = Instant::now();
    let trace_id = inv.trace_id;
    // The request mutator runs once per attempt (the SDK signs each attempt anew).
    let attempts = Arc::new(AtomicU32::new(0));
    let counted = attempts.clone();
    let call = client
        .invoke_endpoint()
        .endpoint_name(inv.endpoint_name)
        .content_type(inv.content_type)
        .accept(inv.accept)
        .set_custom_attributes(inv.custom_attributes)
        .set_inference_id(inv.inference_id)
        .set_target_variant(inv.target_variant)
        .set_target_model(inv.target_model)
        .set_inference_component_name(inv.inference_component_name)
        .set_target_container_hostname(inv.target_container_hostname)
        .set_session_id(inv.session_id)
        .set_enable_explanations(inv.enable_explanations)
        .body(Blob::new(inv.body))
        .customize()
        .mutate_request(move |req| {
            counted.fetch_add(1, Ordering::Relaxed);
            // Propagate the caller's trace so SageMaker's logs and X-Ray join the same trace.
            let _ = req
                .headers_mut()
                .try_insert("x-amzn-trace-id", trace_id.clone());
        })
        .send();
    let result = tokio::time::timeout(inv.timeout, call).await;
    let latency = started.elapsed();
    let attempts = attempts.load(Ordering::Relaxed);
    let result = match result {
        Err(_) => Err(timed_out(inv.timeout)),
        Ok(Ok(out)) => {
            let headers = reported(&[
                ("content-type", out.content_type()),
                (INVOKED_VARIANT, out.invoked_production_variant()),
                (
                    "x-amzn-sagemaker-custom-attributes",
                    out.custom_attributes(),
                ),
                (NEW_SESSION_ID, out.new_session_id()),
                (CLOSED_SESSION_ID, out.closed_session_id()),
                ("x-amzn-requestid", out.request_id()),
            ]);
            let body = out
                .body
                .map(|b| Bytes::from(b.into_inner()))
                .unwrap_or_default();
            Ok(UpstreamReply {
                status: 200,
                body,
                headers,
            })
        }
        Ok(Err(err)) => Err(classify::classify(err, inv.timeout)),
    };
    let stats = InvokeStats::of(&result, latency, attempts);
    (result, stats)
}
