//! HTTP bodies of streamed answers (part of the HTTP adapter): JSON Lines over chunked transfer
//! for `/invocations`, and the AWS event stream of `InvokeEndpointWithResponseStream` for the
//! SageMaker Runtime emulation.
//!
//! Input: a [`Stream`] whose up-front work is done (errors were answered before any of this).
//! Output: an actix [`MessageBody`] that draws one position each time actix asks for a chunk, so
//! a slow reader pauses the sampler (actix polls the body only while its write buffer has room)
//! and a client that goes away drops the stream mid-list.
//!
//! - JSON Lines: each line is one chunk. A stream that fails after it began (only the test knob
//!   does that today) ends without the terminating zero-length chunk: the connection closes and
//!   every HTTP client reports an incomplete body; the lines sent before are flushed first.
//!   A stream that completes always ends with the summary line (`"done": true`).
//! - Event stream: each line is one `PayloadPart` event (`:message-type: event`,
//!   `:event-type: PayloadPart`, `:content-type: application/octet-stream`, the line's bytes as
//!   payload); frames are encoded by `aws-smithy-eventstream`, the AWS SDK's own codec. A failure
//!   becomes the exception frame SageMaker sends (`ModelStreamError` with `ErrorCode`
//!   `StreamBroken` or `ModelInvocationTimeExceeded`, or `InternalStreamFailure`), after which the
//!   body ends cleanly, as the SDKs stop reading at the first exception.
//!
//! The streaming test knobs ([`StreamKnobs`]) are applied here: a pause before each line, and a
//! failure in place of line N + 1. Each stream writes one `invocation` log line when it ends, with
//! how it ended (`complete`, `failed`, `client_gone`), lines sent and time to the first line.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_web::body::{BodySize, MessageBody};
use actix_web::web::Bytes;
use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use serde_json::json;

use crate::recommend::Stream;
use crate::request::{StreamFailure, StreamKnobs};
use crate::server::{self, Served, StreamEnd};

/// `Content-Type` of an event-stream response.
pub const EVENT_STREAM: &str = "application/vnd.amazon.eventstream";
/// SageMaker's message for `ModelInvocationTimeExceeded` (observed); the other two are ours.
const TIME_EXCEEDED_MESSAGE: &str =
    "Your model primary did not complete sending the inference response in the allotted time.";
const STREAM_BROKEN_MESSAGE: &str =
    "Your model primary's response stream broke before the inference response was complete.";
const INTERNAL_FAILURE_MESSAGE: &str =
    "An internal failure interrupted the response stream. Try your request again.";

/// What the access log line of a stream says besides the answer.
pub struct LogFields {
    pub request_id: String,
    pub endpoint: Option<String>,
    pub custom_attributes: String,
    pub started: Instant,
}

/// How a stream ended, as logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Complete,
    Failed(StreamFailure),
    ClientGone,
}

/// A [`Stream`] paced by its test knobs; logs one line when dropped.
pub struct Paced {
    stream: Stream,
    knobs: StreamKnobs,
    /// Lines handed to actix.
    sent: usize,
    /// The pause before the next line, once started.
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Whether the pause before line `sent` is over.
    paused: bool,
    /// Whether actix was given a chance to flush before a failure is reported.
    flushed: bool,
    outcome: Option<Outcome>,
    first_line: Option<Duration>,
    kind: &'static str,
    log: LogFields,
}

impl Paced {
    fn new(stream: Stream, kind: &'static str, log: LogFields) -> Self {
        Paced {
            knobs: *stream.knobs(),
            stream,
            sent: 0,
            pause: None,
            paused: false,
            flushed: false,
            outcome: None,
            first_line: None,
            kind,
            log,
        }
    }

    /// The next line, a failure in its place, or the end.
    fn poll_line(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Vec<u8>, StreamFailure>>> {
        if self.outcome.is_some() || self.stream.is_finished() {
            self.outcome.get_or_insert(Outcome::Complete);
            return Poll::Ready(None);
        }
        if !self.paused {
            let delay = self.knobs.delay_before(self.sent);
            if !delay.is_zero() {
                let pause = self
                    .pause
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(delay)));
                if pause.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.pause = None;
            }
            self.paused = true;
        }
        if self.knobs.fail_after_lines == Some(self.sent) {
            // actix drops what it has not written when a body fails: let it flush first.
            if !self.flushed {
                self.flushed = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            self.outcome = Some(Outcome::Failed(self.knobs.fail_with));
            return Poll::Ready(Some(Err(self.knobs.fail_with)));
        }
        match self.stream.next_line() {
            Some(Ok(line)) => {
                self.sent += 1;
                self.paused = false;
                self.first_line
                    .get_or_insert_with(|| self.log.started.elapsed());
                Poll::Ready(Some(Ok(line)))
            }
            Some(Err(e)) => {
                tracing::error!(request_id = %self.log.request_id, error = %e, "serializing a line failed");
                self.outcome = Some(Outcome::Failed(StreamFailure::StreamBroken));
                Poll::Ready(Some(Err(StreamFailure::StreamBroken)))
            }
            None => {
                self.outcome = Some(Outcome::Complete);
                Poll::Ready(None)
            }
        }
    }
}

impl Drop for Paced {
    fn drop(&mut self) {
        let (outcome, failure) = match self.outcome.unwrap_or(Outcome::ClientGone) {
            Outcome::Complete => ("complete", ""),
            Outcome::Failed(f) => ("failed", f.name()),
            Outcome::ClientGone => ("client_gone", ""),
        };
        server::log_invocation(&Served {
            request_id: &self.log.request_id,
            endpoint: self.log.endpoint.as_deref(),
            summary: &self.stream.summary(),
            items: &self.stream.item_ids(),
            cache: self.stream.cache,
            custom_attributes: &self.log.custom_attributes,
            stream: Some(StreamEnd {
                kind: self.kind,
                outcome,
                failure,
                lines: self.sent,
                first_line: self.first_line,
            }),
            elapsed: self.log.started.elapsed(),
        });
    }
}

/// A stream that ended as failed after it began (the JSON Lines body's error).
#[derive(Debug, thiserror::Error)]
#[error("the response stream ended as failed ({})", .0.name())]
pub struct StreamAborted(StreamFailure);

/// A streamed `/invocations` answer: one JSON line per chunk.
pub struct JsonLines(Paced);

impl JsonLines {
    pub fn new(stream: Stream, log: LogFields) -> Self {
        JsonLines(Paced::new(stream, "jsonlines", log))
    }
}

impl MessageBody for JsonLines {
    type Error = StreamAborted;

    fn size(&self) -> BodySize {
        BodySize::Stream
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        self.get_mut()
            .0
            .poll_line(cx)
            .map(|line| line.map(|line| line.map(Bytes::from).map_err(StreamAborted)))
    }
}

/// The body of `invocations-response-stream`: the container's answer as `PayloadPart` events.
pub struct EventStream {
    source: Parts,
}

enum Parts {
    /// A streamed answer: one part per line.
    Lines(Box<Paced>),
    /// A buffered answer: one part, then the end.
    Once(Option<Bytes>),
    /// Nothing more (after an exception frame).
    Done,
}

impl EventStream {
    /// Each line of `stream` as one part.
    pub fn lines(stream: Stream, log: LogFields) -> Self {
        EventStream {
            source: Parts::Lines(Box::new(Paced::new(stream, "eventstream", log))),
        }
    }

    /// A whole buffered answer as one part.
    pub fn once(body: Vec<u8>) -> Self {
        EventStream {
            source: Parts::Once(Some(Bytes::from(body))),
        }
    }
}

impl MessageBody for EventStream {
    type Error = std::convert::Infallible;

    fn size(&self) -> BodySize {
        BodySize::Stream
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.get_mut();
        let next = match &mut this.source {
            Parts::Lines(paced) => match paced.poll_line(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(line))) => Some(payload_part(Bytes::from(line))),
                Poll::Ready(Some(Err(failure))) => {
                    // The exception is the last frame; the stream (and its log line) ends here.
                    this.source = Parts::Done;
                    Some(exception(failure))
                }
                Poll::Ready(None) => None,
            },
            Parts::Once(body) => body.take().map(payload_part),
            Parts::Done => None,
        };
        Poll::Ready(next.map(Ok))
    }
}

/// One `PayloadPart` event frame carrying `bytes`; an exception frame if it cannot be encoded
/// (a payload over the event stream's 24 MiB limit).
pub fn payload_part(bytes: Bytes) -> Bytes {
    let size = bytes.len();
    let message = Message::new(bytes)
        .add_header(string_header(":message-type", "event"))
        .add_header(string_header(":event-type", "PayloadPart"))
        .add_header(string_header(":content-type", "application/octet-stream"));
    encode(&message).unwrap_or_else(|e| {
        tracing::error!(error = %e, size, "encoding a PayloadPart failed");
        exception(StreamFailure::InternalStreamFailure)
    })
}

/// The exception frame SageMaker sends for `failure`.
pub fn exception(failure: StreamFailure) -> Bytes {
    let (kind, payload) = match failure {
        StreamFailure::StreamBroken | StreamFailure::ModelInvocationTimeExceeded => {
            let message = if failure == StreamFailure::StreamBroken {
                STREAM_BROKEN_MESSAGE
            } else {
                TIME_EXCEEDED_MESSAGE
            };
            (
                "ModelStreamError",
                json!({"Message": message, "ErrorCode": failure.name()}),
            )
        }
        StreamFailure::InternalStreamFailure => (
            "InternalStreamFailure",
            json!({"Message": INTERNAL_FAILURE_MESSAGE}),
        ),
    };
    let message = Message::new(Bytes::from(payload.to_string()))
        .add_header(string_header(":message-type", "exception"))
        .add_header(string_header(":exception-type", kind))
        .add_header(string_header(":content-type", "application/json"));
    // A few hundred bytes of fixed headers and JSON: always within the codec's limits.
    encode(&message).unwrap_or_default()
}

fn string_header(name: &'static str, value: &'static str) -> Header {
    Header::new(name, HeaderValue::String(value.into()))
}

fn encode(message: &Message) -> Result<Bytes, aws_smithy_eventstream::error::Error> {
    let mut out = Vec::with_capacity(message.payload().len() + 128);
    write_message_to(message, &mut out)?;
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_eventstream::frame::read_message_from;

    fn header<'a>(message: &'a Message, name: &str) -> Option<&'a str> {
        message
            .headers()
            .iter()
            .find(|h| h.name().as_str() == name)
            .and_then(|h| h.value().as_string().ok())
            .map(|s| s.as_str())
    }

    #[test]
    fn payload_parts_match_the_reference_frame() {
        // The worked frame of reference/sagemaker-streaming.md §3: 110 bytes, both CRCs.
        let frame = payload_part(Bytes::from_static(b"hello"));
        assert_eq!(frame.len(), 110);
        assert_eq!(frame[..8], [0, 0, 0, 0x6e, 0, 0, 0, 0x59]);
        assert_eq!(frame[8..12], [0x51, 0x97, 0xff, 0x15]);
        assert_eq!(frame[106..], [0x36, 0x02, 0x8f, 0x02]);
        let message = read_message_from(frame).expect("decodes");
        assert_eq!(message.payload().as_ref(), b"hello");
        assert_eq!(header(&message, ":event-type"), Some("PayloadPart"));
    }

    #[test]
    fn failures_become_the_exceptions_sagemaker_sends() {
        for (failure, kind, code) in [
            (
                StreamFailure::StreamBroken,
                "ModelStreamError",
                Some("StreamBroken"),
            ),
            (
                StreamFailure::ModelInvocationTimeExceeded,
                "ModelStreamError",
                Some("ModelInvocationTimeExceeded"),
            ),
            (
                StreamFailure::InternalStreamFailure,
                "InternalStreamFailure",
                None,
            ),
        ] {
            let message = read_message_from(exception(failure)).expect("decodes");
            assert_eq!(header(&message, ":message-type"), Some("exception"));
            assert_eq!(header(&message, ":exception-type"), Some(kind));
            let body: serde_json::Value =
                serde_json::from_slice(message.payload()).expect("JSON payload");
            assert_eq!(body["ErrorCode"].as_str(), code);
            assert!(body["Message"].as_str().is_some_and(|m| !m.is_empty()));
        }
    }
}
