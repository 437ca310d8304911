//! The relay stage of a streaming route (`mode: stream`): SageMaker's parts to the client as they
//! arrive.
//!
//! Input: the opened stream ([`Opened`]: answer headers, first part, the rest) or the call's
//! failure, the route's [`StreamLimits`], the client's `Accept`, a memory account for the stream
//! and the gateway's stop signal. Output: a 200 [`GatewayResponse`] whose body is a
//! [`BodyStream`], or the failure's [`GatewayError`] (an error before the first part is an
//! ordinary error response, by the usual table).
//!
//! Framing ([`Framing`]):
//! - **chunked** (default): each part's bytes as they are, `Content-Type` the container's. After a
//!   failure (SageMaker's `ModelStreamError` / `InternalStreamFailure`, a broken upstream, a
//!   timeout, shutdown) the connection is cut without the terminating zero-length chunk: every HTTP
//!   client reports an incomplete body (curl exits 18).
//! - **Server-Sent Events**, when the client's `Accept` names `text/event-stream`: each part is one
//!   event, its bytes split at line ends into `data:` lines, so an SSE client joining the data
//!   lines of an event with `\n` and concatenating events gets the part bytes back (`{..}\n`
//!   arrives as `data: {..}` + `data: `; a CR is a line end in SSE, so `\r\n` arrives as `\n`).
//!   A failure ends with `event: error` and `data: {"ErrorCode": …, "Message": …}` (SageMaker's
//!   code and message, or the gateway's `StreamTimeout`, `StreamBroken`, `GatewayShutdown`),
//!   then a clean end.
//!
//! Bounds: a background task reads SageMaker's parts and queues them for the connection, at most
//! [`WINDOW`] bytes ahead of what the connection has taken (a slow reader pauses the upstream
//! reads; a single larger part is queued alone). Queued bytes are charged to the stream's memory
//! account and given back as the connection takes them. The task stops, dropping the upstream
//! call, when the client goes away (the body is dropped), when SageMaker's stream ends or fails,
//! after `idle_timeout_ms` without a part (time spent waiting for a slow reader does not count),
//! at `max_duration_ms` from the call's start, or when the gateway's stop signal fires (SIGTERM,
//! after the drain grace).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::Stream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

use crate::config::stream::{NEW_SESSION, StreamLimits};
use crate::context::{RequestContext, StreamRecord};
use crate::error::GatewayError;
use crate::memory::Held;
use crate::message::{BodyStream, GatewayResponse, Relayed, StreamOutcome};
use crate::upstream::stream::{Opened, PartError, Parts};
use crate::upstream::{InvokeStats, UpstreamFailure};

/// Most bytes queued ahead of a slow reader, per stream.
pub const WINDOW: usize = 64 * 1024;
/// `Content-Type` of a Server-Sent Events answer.
pub const EVENT_STREAM: &str = "text/event-stream";

/// How parts are written to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// HTTP/1.1 chunked transfer, the part bytes as they are.
    Chunked,
    /// Server-Sent Events.
    Sse,
}

impl Framing {
    /// The framing a client's `Accept` asks for: SSE when it names `text/event-stream` with a
    /// quality above 0.
    pub fn of(accept: Option<&str>) -> Framing {
        let asks = accept.unwrap_or("").split(',').any(|range| {
            let mut params = range.split(';');
            let media = params.next().unwrap_or("").trim();
            let refused = params.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            media.eq_ignore_ascii_case(EVENT_STREAM) && !refused
        });
        if asks { Framing::Sse } else { Framing::Chunked }
    }

    /// The name logged.
    pub fn as_str(self) -> &'static str {
        match self {
            Framing::Chunked => "chunked",
            Framing::Sse => "sse",
        }
    }
}

/// SageMaker opens sessions on `InvokeEndpoint` only: a streaming request whose session id is
/// `NEW_SESSION` is the client's error (400), never sent.
pub fn check_session(session_id: Option<&str>) -> Result<(), GatewayError> {
    if session_id == Some(NEW_SESSION) {
        return Err(GatewayError::InvalidRequest(format!(
            "X-Amzn-SageMaker-Session-Id: {NEW_SESSION} opens a session on InvokeEndpoint only; a streaming route can use an open session's id"
        )));
    }
    Ok(())
}

/// What the relay needs besides the call's outcome.
pub struct Relay {
    /// The route's time limits.
    pub limits: StreamLimits,
    /// How to write parts.
    pub framing: Framing,
    /// The stream's memory account (also charged by the upstream decoder).
    pub memory: Arc<Held>,
    /// Fires (`true`) when open streams must end (shutdown).
    pub stop: watch::Receiver<bool>,
    /// When the SageMaker call started (`max_duration_ms` counts from here).
    pub started: Instant,
}

/// The relay stage: records the call in `ctx`, and answers 200 with the stream, or fails with the
/// call's error.
pub fn respond(
    opened: Result<Opened, UpstreamFailure>,
    stats: InvokeStats,
    relay: Relay,
    endpoint: &str,
    ctx: &mut RequestContext,
) -> Result<GatewayResponse, GatewayError> {
    ctx.stream = Some(StreamRecord::new(relay.framing.as_str()));
    if stats.attempts > 0 {
        ctx.endpoint_name = Some(endpoint.to_owned());
        ctx.integration_latency = Some(stats.latency);
        ctx.integration_status = stats.status;
    }
    let header = |headers: &[(String, String)], name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let opened = match opened {
        Ok(opened) => opened,
        Err(failure) => {
            if crate::breaker::is_short_circuit(&failure) {
                ctx.upstream_error = Some(crate::context::CIRCUIT_OPEN);
            } else {
                ctx.upstream_error = Some(failure.error_type());
                ctx.invoked_variant = failure
                    .reply
                    .as_ref()
                    .and_then(|r| r.header(crate::upstream::INVOKED_VARIANT))
                    .map(crate::message::variant_logged);
            }
            return Err(failure.error);
        }
    };
    ctx.invoked_variant = header(&opened.headers, crate::upstream::INVOKED_VARIANT)
        .map(|v| crate::message::variant_logged(&v));
    ctx.aws_endpoint_request_id =
        header(&opened.headers, "x-amzn-requestid").map(|v| crate::message::request_id_logged(&v));
    let content_type = match relay.framing {
        Framing::Sse => EVENT_STREAM.to_owned(),
        Framing::Chunked => header(&opened.headers, "content-type")
            .unwrap_or_else(|| "application/octet-stream".to_owned()),
    };
    let mut headers = vec![("content-type".to_owned(), content_type)];
    if relay.framing == Framing::Sse {
        headers.push(("cache-control".to_owned(), "no-cache".to_owned()));
    }
    let (tx, rx) = mpsc::channel(32);
    let window = Arc::new(Semaphore::new(WINDOW));
    let memory = relay.memory.clone();
    tokio::spawn(pump(opened.first, opened.parts, relay, tx, window));
    Ok(GatewayResponse {
        status: 200,
        headers,
        body: Bytes::new(),
        stream: Some(BodyStream(Box::pin(Queue {
            rx,
            memory,
            taken: None,
        }))),
    })
}

/// One queued item with what it holds: its share of the window and its memory charge.
struct Queued {
    item: Relayed,
    charged: usize,
    _permit: Option<OwnedSemaphorePermit>,
}

/// The connection's side: queued items in order; an item's bytes are given back (window and
/// memory) when the connection asks for the next one, i.e. once it has taken them.
struct Queue {
    rx: mpsc::Receiver<Queued>,
    memory: Arc<Held>,
    taken: Option<Queued>,
}

impl Stream for Queue {
    type Item = Relayed;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Relayed>> {
        if let Some(done) = self.taken.take() {
            self.memory.release(done.charged);
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(mut queued)) => {
                let item = std::mem::replace(&mut queued.item, Relayed::Part(Bytes::new()));
                self.taken = Some(queued);
                Poll::Ready(Some(item))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        if let Some(done) = self.taken.take() {
            self.memory.release(done.charged);
        }
        // What is still queued is given back by the items' own drop below.
        self.rx.close();
        while let Ok(queued) = self.rx.try_recv() {
            self.memory.release(queued.charged);
        }
    }
}

/// Why the pump stopped early.
enum Stop {
    /// The client went away (nothing more to send).
    Gone,
    /// The stream ends.
    End {
        outcome: StreamOutcome,
        /// SageMaker's error type when SageMaker failed it (counted as an upstream error).
        error_type: Option<&'static str>,
        /// SageMaker's or the gateway's error code and message: what the client reads.
        code: &'static str,
        message: String,
        /// What broke, when the gateway saw it: for the log only.
        detail: Option<String>,
    },
}

/// The background task: SageMaker's parts into the queue, until the end.
async fn pump(
    first: Option<Bytes>,
    mut parts: Parts,
    relay: Relay,
    tx: mpsc::Sender<Queued>,
    window: Arc<Semaphore>,
) {
    let Relay {
        limits,
        framing,
        memory,
        mut stop,
        started,
    } = relay;
    let deadline = tokio::time::Instant::from_std(started + limits.max_duration);
    let mut next = first.map(Ok);
    let end = loop {
        let part = match next.take() {
            Some(part) => part,
            None => {
                let read = tokio::time::timeout(limits.idle, parts.next(&memory));
                tokio::select! {
                    biased;
                    () = tx.closed() => break Stop::Gone,
                    _ = stop.wait_for(|s| *s) => break shutdown(),
                    () = tokio::time::sleep_until(deadline) => break max_duration(),
                    read = read => match read {
                        // SageMaker went silent: counted as its `Timeout`, like a buffered call's.
                        Err(_) => break Stop::End {
                            outcome: StreamOutcome::Timeout,
                            error_type: Some("Timeout"),
                            code: "StreamTimeout",
                            message: format!("no part within idle_timeout_ms ({} ms)", limits.idle.as_millis()),
                            detail: None,
                        },
                        Ok(Ok(Some(bytes))) => Ok(bytes),
                        Ok(Ok(None)) => Err(None),
                        Ok(Err(e)) => Err(Some(e)),
                    },
                }
            }
        };
        let bytes = match part {
            Ok(bytes) => bytes,
            Err(None) => {
                break Stop::End {
                    outcome: StreamOutcome::Complete,
                    error_type: None,
                    code: "",
                    message: String::new(),
                    detail: None,
                };
            }
            Err(Some(e)) => break upstream_failed(e),
        };
        if bytes.is_empty() {
            continue;
        }
        let framed = frame(framing, &bytes);
        drop(bytes);
        // Bytes already received: charged, never refused (see crate::memory), also while they
        // wait for room (an early end below leaves them to the account's drop).
        memory.charge(framed.len());
        // Wait for room in the window and a place in the queue (the reader's pace), never for more
        // than the whole window, and never past the stream's limits: a reader that takes nothing
        // while the queue is full of small parts must not hold SageMaker's call open.
        let want = u32::try_from(framed.len().min(WINDOW)).unwrap_or(u32::MAX);
        let (permit, slot) = tokio::select! {
            biased;
            () = tx.closed() => break Stop::Gone,
            _ = stop.wait_for(|s| *s) => break shutdown(),
            () = tokio::time::sleep_until(deadline) => break max_duration(),
            room = room(&tx, &window, want) => match room {
                Some(room) => room,
                None => break Stop::Gone,
            },
        };
        slot.send(Queued {
            charged: framed.len(),
            item: Relayed::Part(framed),
            _permit: permit,
        });
    };
    drop(parts);
    let Stop::End {
        outcome,
        error_type,
        code,
        message,
        detail,
    } = end
    else {
        return;
    };
    let last = match (framing, outcome) {
        (_, StreamOutcome::Complete) => None,
        (Framing::Sse, _) => Some(error_event(code, &message)),
        (Framing::Chunked, _) => None,
    };
    let abort = framing == Framing::Chunked && outcome != StreamOutcome::Complete;
    let cause = (outcome != StreamOutcome::Complete)
        .then(|| format!("{code}: {}", detail.as_deref().unwrap_or(&message)));
    let item = Relayed::End {
        outcome,
        error_type,
        last,
        abort,
        cause,
    };
    let _ = tx
        .send(Queued {
            item,
            charged: 0,
            _permit: None,
        })
        .await;
}

/// Room for one part of `want` bytes: its share of the window, then a place in the queue; `None`
/// once the connection's side is gone.
async fn room<'a>(
    tx: &'a mpsc::Sender<Queued>,
    window: &Arc<Semaphore>,
    want: u32,
) -> Option<(Option<OwnedSemaphorePermit>, mpsc::Permit<'a, Queued>)> {
    let permit = window.clone().acquire_many_owned(want).await.ok();
    let slot = tx.reserve().await.ok()?;
    Some((permit, slot))
}

fn shutdown() -> Stop {
    Stop::End {
        outcome: StreamOutcome::Shutdown,
        error_type: None,
        code: "GatewayShutdown",
        message: "the gateway is shutting down".to_owned(),
        detail: None,
    }
}

fn max_duration() -> Stop {
    Stop::End {
        outcome: StreamOutcome::Timeout,
        error_type: None,
        code: "StreamTimeout",
        message: "the stream reached max_duration_ms".to_owned(),
        detail: None,
    }
}

/// What the client reads when the stream broke on the gateway's side of SageMaker (the connection,
/// a frame): the cause is the gateway's own and goes to the log only, like any internal cause.
pub const BROKEN_MESSAGE: &str = "The response stream from SageMaker broke before it was complete.";

fn upstream_failed(e: PartError) -> Stop {
    let error_type = e.error_type();
    let (code, message, detail) = match e {
        PartError::Model { code, message } => (
            match code.as_deref() {
                Some("ModelInvocationTimeExceeded") => "ModelInvocationTimeExceeded",
                _ => "StreamBroken",
            },
            message,
            None,
        ),
        PartError::Internal { message, .. } => ("InternalStreamFailure", message, None),
        PartError::Broken(detail) => ("StreamBroken", BROKEN_MESSAGE.to_owned(), Some(detail)),
    };
    Stop::End {
        outcome: StreamOutcome::UpstreamError,
        error_type: Some(error_type),
        code,
        message,
        detail,
    }
}

/// A part as the client receives it.
fn frame(framing: Framing, part: &Bytes) -> Bytes {
    match framing {
        Framing::Chunked => part.clone(),
        Framing::Sse => sse_event(None, part),
    }
}

/// One SSE event: `event:` when named, the data split at line ends (CRLF, LF, CR) into `data:`
/// lines, a blank line.
fn sse_event(event: Option<&str>, data: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(data.len() + 16);
    if let Some(name) = event {
        out.put_slice(b"event: ");
        out.put_slice(name.as_bytes());
        out.put_u8(b'\n');
    }
    let mut rest = data;
    loop {
        let end = rest.iter().position(|b| *b == b'\n' || *b == b'\r');
        out.put_slice(b"data: ");
        match end {
            None => {
                out.put_slice(rest);
                out.put_u8(b'\n');
                break;
            }
            Some(i) => {
                out.put_slice(&rest[..i]);
                out.put_u8(b'\n');
                let skip = if rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                rest = &rest[i + skip..];
            }
        }
    }
    out.put_u8(b'\n');
    out.freeze()
}

/// The SSE event that ends a failed stream.
fn error_event(code: &str, message: &str) -> Bytes {
    let data = serde_json::json!({ "ErrorCode": code, "Message": message }).to_string();
    sse_event(Some("error"), data.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_give_the_part_bytes_back() {
        assert_eq!(
            sse_event(None, b"{\"a\":1}\n"),
            Bytes::from_static(b"data: {\"a\":1}\ndata: \n\n")
        );
        assert_eq!(
            sse_event(None, b"a\r\nb\rc"),
            Bytes::from_static(b"data: a\ndata: b\ndata: c\n\n")
        );
        assert_eq!(
            sse_event(None, b"mid-li"),
            Bytes::from_static(b"data: mid-li\n\n")
        );
        assert_eq!(
            error_event("StreamBroken", "gone"),
            Bytes::from_static(
                b"event: error\ndata: {\"ErrorCode\":\"StreamBroken\",\"Message\":\"gone\"}\n\n"
            )
        );
    }

    #[test]
    fn sse_only_when_accept_names_it() {
        assert_eq!(Framing::of(Some("text/event-stream")), Framing::Sse);
        assert_eq!(
            Framing::of(Some("application/json, Text/Event-Stream;q=0.5")),
            Framing::Sse
        );
        assert_eq!(Framing::of(Some("text/event-stream;q=0")), Framing::Chunked);
        assert_eq!(Framing::of(Some("*/*")), Framing::Chunked);
        assert_eq!(Framing::of(None), Framing::Chunked);
    }

    #[test]
    fn a_broken_stream_tells_the_client_a_fixed_sentence_and_the_log_what_broke() {
        let Stop::End {
            outcome,
            error_type,
            code,
            message,
            detail,
        } = upstream_failed(PartError::Broken(
            "message checksum 0x1 didn't match".to_owned(),
        ))
        else {
            panic!("a broken stream ends");
        };
        assert_eq!(outcome, StreamOutcome::UpstreamError);
        assert_eq!(error_type, Some("Transport"));
        assert_eq!((code, message.as_str()), ("StreamBroken", BROKEN_MESSAGE));
        assert_eq!(detail.as_deref(), Some("message checksum 0x1 didn't match"));
    }

    #[test]
    fn new_session_is_refused_on_a_stream() {
        assert!(check_session(Some("NEW_SESSION")).is_err());
        assert!(check_session(Some("abc-123")).is_ok());
        assert!(check_session(None).is_ok());
    }
}
