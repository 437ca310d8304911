//! `InvokeEndpointWithResponseStream`: the call, and SageMaker's event stream read part by part.
//!
//! Input: an [`Invocation`] of a streaming route (its `timeout` is the route's
//! `stream.first_byte_timeout_ms`). Output: an [`Opened`] stream holding SageMaker's answer headers
//! and its first part, or an [`UpstreamFailure`] classified by the same table as `InvokeEndpoint`
//! ([`super::classify`]): everything that goes wrong before the first part (an error answer, a
//! timeout, an exception frame in place of the first part) is an ordinary error response.
//!
//! - **lean**: `POST /endpoints/{name}/invocations-response-stream`, signed like `InvokeEndpoint`,
//!   the container's type in `X-Amzn-SageMaker-Accept`; retried like `InvokeEndpoint` until
//!   SageMaker answers 2xx, never after. Frames are decoded by `aws-smithy-eventstream`'s
//!   [`MessageFrameDecoder`] (both CRCs checked) as the body arrives; what it holds is charged to
//!   the stream's memory account and bounded by SageMaker's own frame limit ([`MAX_FRAME`]).
//! - **sdk**: the SDK's `invoke_endpoint_with_response_stream` and its event receiver.
//! - **local** (tests): the in-process answer's body decoded as an event stream.
//!
//! After the first part, [`Parts::next`] gives each further `PayloadPart`'s bytes, `None` at a clean
//! end, or a [`PartError`]: SageMaker's `ModelStreamError` / `InternalStreamFailure`, or a broken
//! stream (connection lost, a bad frame, a body that ends inside a frame). Events of other types
//! are skipped, as the SDK skips them. Dropping [`Parts`] drops the upstream connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use aws_sdk_sagemakerruntime::Client;
use aws_sdk_sagemakerruntime::error::{DisplayErrorContext, SdkError};
use aws_sdk_sagemakerruntime::operation::RequestId;
use aws_sdk_sagemakerruntime::primitives::Blob;
use aws_sdk_sagemakerruntime::primitives::event_stream::EventReceiver;
use aws_sdk_sagemakerruntime::types::ResponseStream;
use aws_sdk_sagemakerruntime::types::error::ResponseStreamError;
use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use aws_smithy_types::event_stream::Message;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;

use super::{INVOKED_VARIANT, Invocation, InvokeStats, UpstreamFailure, UpstreamReply, classify};
use crate::error::GatewayError;
use crate::memory::Held;

/// Largest event-stream frame read: SageMaker's 24 MiB payload limit plus its 128 KiB of headers
/// and the 16 bytes of prelude and CRCs. A longer frame (declared, or bytes that never complete
/// one) breaks the stream instead of growing the buffer.
pub const MAX_FRAME: usize = 24 * 1024 * 1024 + 128 * 1024 + 16;

/// Longest message kept from an event stream's exception, or from the SDK's account of a broken
/// stream (which quotes the bytes it could not decode): SageMaker's messages are a sentence, and an
/// answer must not write megabytes into a client's error event or a log line.
pub const MAX_MESSAGE_CHARS: usize = 1024;

/// `text`, cut to [`MAX_MESSAGE_CHARS`] characters.
fn cut(text: &str) -> String {
    text.chars().take(MAX_MESSAGE_CHARS).collect()
}

/// A stream SageMaker opened: its answer headers (names lower case; `content-type` is the
/// container's type), its first part (`None` when the stream ended without any), and the rest.
#[derive(Debug)]
pub struct Opened {
    /// `content-type`, `x-amzn-invoked-production-variant`, `x-amzn-sagemaker-custom-attributes`,
    /// `x-amzn-requestid`, as SageMaker sent them.
    pub headers: Vec<(String, String)>,
    /// The first `PayloadPart`'s bytes.
    pub first: Option<Bytes>,
    /// The parts after the first.
    pub parts: Parts,
}

/// What broke a stream after its first part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartError {
    /// SageMaker's `ModelStreamError` (`ErrorCode` `ModelInvocationTimeExceeded`, `StreamBroken`).
    Model {
        /// `ErrorCode`, when sent.
        code: Option<String>,
        /// `Message`.
        message: String,
    },
    /// SageMaker's `InternalStreamFailure`, or an exception frame of another type (`code`).
    Internal {
        /// The exception type.
        code: String,
        /// `Message`.
        message: String,
    },
    /// The connection broke, a frame was invalid, or the body ended inside a frame.
    Broken(String),
}

impl PartError {
    /// SageMaker's error type for the access log and metrics (a name of
    /// [`classify::ERROR_TYPES`]).
    pub fn error_type(&self) -> &'static str {
        match self {
            PartError::Model { .. } => "ModelStreamError",
            PartError::Internal { .. } => "InternalStreamFailure",
            PartError::Broken(_) => "Transport",
        }
    }
}

/// The parts of an open stream, read one at a time.
#[derive(Debug)]
pub struct Parts(Source);

enum Source {
    /// The lean client's HTTP body, decoded here.
    Lean(Box<Frames<hyper::body::Incoming>>),
    /// The SDK's receiver.
    Sdk(Box<EventReceiver<ResponseStream, ResponseStreamError>>),
    /// An in-process answer's whole body.
    Local(Box<Frames<http_body_util::Full<Bytes>>>),
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Source::Lean(_) => "Lean",
            Source::Sdk(_) => "Sdk",
            Source::Local(_) => "Local",
        })
    }
}

/// An HTTP body of event-stream frames and the decoder's state; `held` bytes of `buf` are charged
/// to the stream's memory account.
struct Frames<B> {
    body: B,
    decoder: MessageFrameDecoder,
    buf: BytesMut,
    held: usize,
}

impl<B> Frames<B>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    fn new(body: B) -> Self {
        Frames {
            body,
            decoder: MessageFrameDecoder::new(),
            buf: BytesMut::new(),
            held: 0,
        }
    }

    /// The next complete frame; `None` at a clean end (between frames).
    async fn frame(&mut self, memory: &Held) -> Result<Option<Message>, PartError> {
        loop {
            match self.decoder.decode_frame(&mut self.buf) {
                Ok(DecodedFrame::Complete(message)) => {
                    // What the frame took out of the buffer is no longer held here.
                    memory.release(self.held.saturating_sub(self.buf.len()));
                    self.held = self.buf.len();
                    return Ok(Some(message));
                }
                Ok(DecodedFrame::Incomplete) => {}
                Err(e) => {
                    return Err(PartError::Broken(format!(
                        "invalid event-stream frame: {e}"
                    )));
                }
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    if self.held + data.len() > MAX_FRAME {
                        return Err(PartError::Broken(format!(
                            "event-stream frame longer than {MAX_FRAME} bytes"
                        )));
                    }
                    // Bytes already received: charged, never refused (see crate::memory).
                    memory.charge(data.len());
                    self.held += data.len();
                    self.buf.extend_from_slice(&data);
                }
                Some(Err(e)) => return Err(PartError::Broken(format!("response error: {e}"))),
                None if self.held == 0 && self.buf.is_empty() => return Ok(None),
                None => {
                    return Err(PartError::Broken(
                        "the event stream ended inside a frame".to_owned(),
                    ));
                }
            }
        }
    }

    /// The next `PayloadPart`'s bytes (other events skipped).
    async fn part(&mut self, memory: &Held) -> Result<Option<Bytes>, PartError> {
        loop {
            let Some(message) = self.frame(memory).await? else {
                return Ok(None);
            };
            if let Some(part) = interpret(&message)? {
                return Ok(Some(part));
            }
        }
    }
}

/// A frame's meaning: a `PayloadPart`'s bytes, `None` for another event, or the error it carries.
fn interpret(message: &Message) -> Result<Option<Bytes>, PartError> {
    let headers = aws_smithy_eventstream::smithy::parse_response_headers(message)
        .map_err(|e| PartError::Broken(format!("invalid event-stream message: {e}")))?;
    let kind = headers.smithy_type.as_str();
    match headers.message_type.as_str() {
        "event" if kind == "PayloadPart" => Ok(Some(message.payload().clone())),
        "event" => Ok(None),
        _ => {
            let doc: serde_json::Value =
                serde_json::from_slice(message.payload()).unwrap_or_default();
            let field = |name: &str| {
                doc.get(name)
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_owned)
            };
            let message = cut(&field("Message")
                .or_else(|| field("message"))
                .unwrap_or_default());
            Err(match kind {
                "ModelStreamError" => PartError::Model {
                    code: field("ErrorCode"),
                    message,
                },
                other => PartError::Internal {
                    code: cut(other),
                    message,
                },
            })
        }
    }
}

impl Parts {
    /// The next part's bytes; `None` once the stream ended cleanly. `memory` is charged with what
    /// the decoder holds (lean and local).
    pub async fn next(&mut self, memory: &Held) -> Result<Option<Bytes>, PartError> {
        match &mut self.0 {
            Source::Lean(frames) => frames.part(memory).await,
            Source::Local(frames) => frames.part(memory).await,
            Source::Sdk(receiver) => loop {
                match receiver.recv().await {
                    Ok(Some(ResponseStream::PayloadPart(part))) => {
                        return Ok(Some(
                            part.bytes.map(Blob::into_inner).unwrap_or_default().into(),
                        ));
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => return Ok(None),
                    Err(SdkError::ServiceError(e)) => {
                        return Err(match e.into_err() {
                            ResponseStreamError::ModelStreamError(m) => PartError::Model {
                                code: m.error_code().map(cut),
                                message: cut(m.message().unwrap_or_default()),
                            },
                            ResponseStreamError::InternalStreamFailure(m) => PartError::Internal {
                                code: "InternalStreamFailure".to_owned(),
                                message: cut(m.message().unwrap_or_default()),
                            },
                            other => PartError::Internal {
                                code: aws_sdk_sagemakerruntime::error::ProvideErrorMetadata::code(
                                    &other,
                                )
                                .unwrap_or("Unknown")
                                .to_owned(),
                                message: cut(&other.to_string()),
                            },
                        });
                    }
                    Err(e) => {
                        return Err(PartError::Broken(cut(&DisplayErrorContext(&e).to_string())));
                    }
                }
            },
        }
    }
}

/// Reads the first part of a freshly opened stream: before it, an exception frame or a broken
/// stream is the call's failure (an ordinary error response), not a stream's.
async fn first_part(
    headers: Vec<(String, String)>,
    mut parts: Parts,
    memory: &Held,
) -> Result<Opened, UpstreamFailure> {
    match parts.next(memory).await {
        Ok(first) => Ok(Opened {
            headers,
            first,
            parts,
        }),
        Err(e) => {
            let (error_type, detail) = match &e {
                PartError::Broken(detail) => {
                    return Err(UpstreamFailure {
                        error: GatewayError::IntegrationFailure(format!(
                            "stream broke before its first part: {detail}"
                        )),
                        reply: None,
                    });
                }
                other => (other.error_type(), format!("{other:?}")),
            };
            // SageMaker's 200 with the error type recorded, so the log, the metrics and the
            // breaker read it like any other answer.
            let mut headers = headers;
            headers.push(("x-amzn-errortype".to_owned(), error_type.to_owned()));
            Err(UpstreamFailure {
                error: GatewayError::IntegrationFailure(format!(
                    "{error_type} before the first part: {detail}"
                )),
                reply: Some(UpstreamReply {
                    status: 200,
                    body: Bytes::new(),
                    headers,
                }),
            })
        }
    }
}

impl super::SageMaker {
    /// Calls `InvokeEndpointWithResponseStream` and reads its first part, all within `inv.timeout`
    /// (the route's first-byte timeout); `memory` is the stream's account.
    pub async fn invoke_stream(
        &self,
        inv: Invocation,
        memory: Arc<Held>,
    ) -> (Result<Opened, UpstreamFailure>, InvokeStats) {
        let started = Instant::now();
        let timeout = inv.timeout;
        let attempts = Arc::new(AtomicU32::new(0));
        let open = async {
            match &self.client {
                super::Calls::Lean(lean) => {
                    let (headers, body) = lean.open_stream(&inv, &attempts).await?;
                    let parts = Parts(Source::Lean(Box::new(Frames::new(body))));
                    first_part(headers, parts, &memory).await
                }
                super::Calls::Sdk(client) => {
                    let (headers, receiver) = open_sdk(client, &inv, attempts.clone()).await?;
                    let parts = Parts(Source::Sdk(Box::new(receiver)));
                    first_part(headers, parts, &memory).await
                }
                super::Calls::Local(super::Local(local)) => {
                    attempts.fetch_add(1, Ordering::Relaxed);
                    let reply = local.invoke(inv.clone()).await;
                    if !(200..300).contains(&reply.status) {
                        return Err(classify::from_reply(reply));
                    }
                    let body = http_body_util::Full::new(reply.body.clone());
                    let parts = Parts(Source::Local(Box::new(Frames::new(body))));
                    first_part(reply.headers, parts, &memory).await
                }
            }
        };
        let result = tokio::time::timeout(timeout, open)
            .await
            .unwrap_or_else(|_| Err(super::timed_out(timeout)));
        let latency = started.elapsed();
        let status = match &result {
            Ok(_) => Some(200),
            Err(failure) => failure.reply.as_ref().map(|r| r.status),
        };
        let stats = InvokeStats {
            latency,
            status,
            attempts: attempts.load(Ordering::Relaxed),
        };
        (result, stats)
    }
}

/// The SDK path's call: the answer headers and the event receiver; the SDK's request mutator
/// counts its attempts into `attempts`.
async fn open_sdk(
    client: &Client,
    inv: &Invocation,
    attempts: Arc<AtomicU32>,
) -> Result<
    (
        Vec<(String, String)>,
        EventReceiver<ResponseStream, ResponseStreamError>,
    ),
    UpstreamFailure,
> {
    let trace_id = inv.trace_id.clone();
    let result = client
        .invoke_endpoint_with_response_stream()
        .endpoint_name(inv.endpoint_name.clone())
        .content_type(inv.content_type.clone())
        .accept(inv.accept.clone())
        .set_custom_attributes(inv.custom_attributes.clone())
        .set_inference_id(inv.inference_id.clone())
        .set_target_variant(inv.target_variant.clone())
        .set_inference_component_name(inv.inference_component_name.clone())
        .set_target_container_hostname(inv.target_container_hostname.clone())
        .set_session_id(inv.session_id.clone())
        .body(Blob::new(inv.body.clone()))
        .customize()
        .mutate_request(move |req| {
            attempts.fetch_add(1, Ordering::Relaxed);
            // Propagate the caller's trace, as on InvokeEndpoint.
            let _ = req
                .headers_mut()
                .try_insert("x-amzn-trace-id", trace_id.clone());
        })
        .send()
        .await;
    match result {
        Ok(out) => {
            let headers = super::reported(&[
                ("content-type", out.content_type()),
                (INVOKED_VARIANT, out.invoked_production_variant()),
                (
                    "x-amzn-sagemaker-custom-attributes",
                    out.custom_attributes(),
                ),
                ("x-amzn-requestid", out.request_id()),
            ]);
            Ok((headers, out.body))
        }
        Err(err) => Err(classify::classify(err, inv.timeout)),
    }
}
