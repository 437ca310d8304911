//! An in-test SageMaker Runtime: HTTP/1.1 on a loopback port, answering `InvokeEndpoint` the way
//! the real service does, with the reply the test scripts.
//!
//! Input: requests from the gateway's AWS SDK (keep-alive connections, `Content-Length` bodies).
//! Output: the scripted [`SageMakerReply`]; every request is recorded (method, path, headers,
//! body) together with the result of recomputing its SigV4 signature ([`super::sigv4`]) for the
//! test credentials (`test`/`test`, `us-east-1`, service `sagemaker`).
//!
//! Two endpoints: [`Upstream::reply_for`] scripts the answer of one endpoint name (a shadow's, say)
//! apart from the rest, since a gateway has one SageMaker endpoint URL.
//!
//! Faults: a delay, a TCP reset (zero linger), a close without an answer, a close after the
//! answer (a kept-alive connection the server ends), and a hold that keeps the request open until
//! the test calls [`Upstream::release`]. For `InvokeEndpointWithResponseStream` it can answer an
//! event stream of many parts with raw bytes after them (a broken frame), and reports whether the
//! gateway dropped the connection before the end ([`Upstream::stream_dropped`]). The reply in
//! force can be changed at any time; requests already being answered keep the reply they started
//! with.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::sigv4;

/// What the upstream answers.
#[derive(Clone, Debug)]
pub enum SageMakerReply {
    /// A status, an optional `x-amzn-ErrorType`, and a JSON body.
    Answer {
        /// HTTP status.
        status: u16,
        /// `x-amzn-ErrorType` header.
        error_type: Option<&'static str>,
        /// Body bytes.
        body: String,
        /// More response headers (SageMaker's `x-Amzn-Invoked-Production-Variant`, session ids).
        headers: Vec<(String, String)>,
    },
    /// Waits, then answers with the inner reply.
    Delay(Duration, Box<SageMakerReply>),
    /// Waits until [`Upstream::release`], then answers with the inner reply.
    Hold(Box<SageMakerReply>),
    /// Resets the connection (RST) after reading the request.
    Reset,
    /// Closes the connection (FIN) after reading the request, without an answer.
    Close,
    /// Answers with the inner reply, then closes the kept-alive connection (FIN), as a server
    /// does with a connection it considers idle: the client's pool holds it, closed.
    ThenClose(Box<SageMakerReply>),
    /// A 200 event stream, chunked: `parts` `PayloadPart` frames carrying `part`, then `tail` as
    /// raw bytes (a frame with a bad checksum, say), then the end. Written as fast as the gateway
    /// reads; a failed write (the gateway dropped the call) is recorded.
    EventStream {
        /// Each part's payload.
        part: Vec<u8>,
        /// Number of parts.
        parts: usize,
        /// Raw bytes after the parts.
        tail: Vec<u8>,
    },
}

impl SageMakerReply {
    /// 200 with `body` as `application/json`.
    pub fn ok(body: &str) -> Self {
        SageMakerReply::Answer {
            status: 200,
            error_type: None,
            body: body.to_owned(),
            headers: Vec::new(),
        }
    }

    /// A success echoing nothing in particular (the default reply).
    pub fn ok_default() -> Self {
        SageMakerReply::ok(r#"{"recommendations":[{"item_id":"M:1","score":0.5}]}"#)
    }

    /// 424 `ModelError`: the container answered `original_status` with `original_message`.
    pub fn model_error(original_status: u16, original_message: &str) -> Self {
        let body = serde_json::json!({
            "ErrorCode": if original_status < 500 { "CLIENT_ERROR_FROM_MODEL" } else { "SERVER_ERROR_FROM_MODEL" },
            "Message": format!("Received client error ({original_status}) from primary with message \"{original_message}\". See https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1#logEventViewer:group=/aws/sagemaker/Endpoints/ep-temp in account 123456789012 for more information."),
            "OriginalMessage": original_message,
            "OriginalStatusCode": original_status,
            "LogStreamArn": "arn:aws:logs:us-east-1:123456789012:log-group:/aws/sagemaker/Endpoints/ep-temp",
        });
        SageMakerReply::error(424, "ModelError", &body.to_string())
    }

    /// 400 `ThrottlingException`.
    pub fn throttling() -> Self {
        SageMakerReply::error(400, "ThrottlingException", r#"{"message":"Rate exceeded"}"#)
    }

    /// 429 `ModelNotReadyException`.
    pub fn model_not_ready() -> Self {
        SageMakerReply::error(
            429,
            "ModelNotReadyException",
            r#"{"Message":"Model is still loading"}"#,
        )
    }

    /// 503 `ServiceUnavailable`.
    pub fn service_unavailable() -> Self {
        SageMakerReply::error(
            503,
            "ServiceUnavailable",
            r#"{"Message":"Service Unavailable"}"#,
        )
    }

    /// 500 `InternalFailure`.
    pub fn internal_failure() -> Self {
        SageMakerReply::error(500, "InternalFailure", r#"{"Message":"Internal failure"}"#)
    }

    /// 530 `InternalDependencyException`.
    pub fn internal_dependency() -> Self {
        SageMakerReply::error(
            530,
            "InternalDependencyException",
            r#"{"Message":"Internal dependency failed"}"#,
        )
    }

    /// An error answer with `x-amzn-ErrorType: error_type`.
    pub fn error(status: u16, error_type: &'static str, body: &str) -> Self {
        SageMakerReply::Answer {
            status,
            error_type: Some(error_type),
            body: body.to_owned(),
            headers: Vec::new(),
        }
    }

    /// This answer with header `name: value` too.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        if let SageMakerReply::Answer { headers, .. } = &mut self {
            headers.push((name.to_owned(), value.to_owned()));
        }
        self
    }

    /// An event stream of `parts` parts carrying `part` (see [`SageMakerReply::EventStream`]).
    pub fn event_stream(part: &[u8], parts: usize) -> Self {
        SageMakerReply::EventStream {
            part: part.to_vec(),
            parts,
            tail: Vec::new(),
        }
    }

    /// This event stream with `tail` written raw after its parts.
    pub fn then_raw(mut self, raw: Vec<u8>) -> Self {
        if let SageMakerReply::EventStream { tail, .. } = &mut self {
            *tail = raw;
        }
        self
    }

    /// This reply after `d`.
    pub fn after(self, d: Duration) -> Self {
        SageMakerReply::Delay(d, Box::new(self))
    }

    /// This reply once the test releases it.
    pub fn held(self) -> Self {
        SageMakerReply::Hold(Box::new(self))
    }

    /// This reply, then a close of the connection (see [`SageMakerReply::ThenClose`]).
    pub fn then_close(self) -> Self {
        SageMakerReply::ThenClose(Box::new(self))
    }
}

/// One request as the upstream received it.
#[derive(Clone, Debug)]
pub struct Received {
    /// Method.
    pub method: String,
    /// Request target as sent (path and query).
    pub path: String,
    /// Headers in order, names lower-cased, values trimmed.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
    /// `Ok` when the SigV4 signature recomputes for the test credentials; else why not.
    pub signature: Result<(), String>,
}

impl Received {
    /// The value of header `name` (lower case), when sent once.
    pub fn header(&self, name: &str) -> Option<&str> {
        let mut values = self
            .headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str());
        let first = values.next();
        assert!(values.next().is_none(), "header {name} sent twice");
        first
    }

    /// The endpoint name of an `InvokeEndpoint` path (`/endpoints/{name}/invocations`).
    pub fn endpoint(&self) -> &str {
        self.path.split('/').nth(2).unwrap_or("")
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "upstream body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

struct State {
    received: Mutex<Vec<Received>>,
    reply: Mutex<SageMakerReply>,
    /// Replies for one endpoint name (`/endpoints/{name}/invocations`), over `reply`: two
    /// SageMaker endpoints behind the one endpoint URL a gateway has.
    by_endpoint: Mutex<Vec<(String, SageMakerReply)>>,
    release: watch::Sender<bool>,
    /// The gateway dropped an event stream before its end.
    stream_dropped: AtomicBool,
}

/// A running in-test SageMaker; stops when dropped.
pub struct Upstream {
    port: u16,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl Upstream {
    /// Starts on `127.0.0.1:0`, answering [`SageMakerReply::ok_default`].
    pub async fn start() -> Upstream {
        Upstream::replying(SageMakerReply::ok_default()).await
    }

    /// Starts on `127.0.0.1:0`, answering `reply` to every request.
    pub async fn replying(reply: SageMakerReply) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State {
            received: Mutex::new(Vec::new()),
            reply: Mutex::new(reply),
            by_endpoint: Mutex::new(Vec::new()),
            release: watch::channel(false).0,
            stream_dropped: AtomicBool::new(false),
        });
        let accept_state = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_connection(stream, accept_state.clone()));
            }
        });
        Upstream { port, state, task }
    }

    /// `http://127.0.0.1:<port>`, for `AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Answers `reply` from now on.
    pub fn reply_with(&self, reply: SageMakerReply) {
        *self.state.reply.lock().unwrap() = reply;
    }

    /// Answers `reply` to calls of endpoint `name` from now on (other endpoints keep theirs).
    pub fn reply_for(&self, name: &str, reply: SageMakerReply) {
        let mut by = self.state.by_endpoint.lock().unwrap();
        by.retain(|(n, _)| n != name);
        by.push((name.to_owned(), reply));
    }

    /// The requests received for endpoint `name`.
    pub fn received_by(&self, name: &str) -> Vec<Received> {
        let all = self.received();
        all.into_iter().filter(|r| r.endpoint() == name).collect()
    }

    /// Lets every held request (and every later one) answer.
    pub fn release(&self) {
        self.state.release.send_replace(true);
    }

    /// Holds requests with a held reply again, until the next [`Upstream::release`].
    pub fn hold_again(&self) {
        self.state.release.send_replace(false);
    }

    /// Whether the gateway dropped an event stream ([`SageMakerReply::EventStream`]) before its end.
    pub fn stream_dropped(&self) -> bool {
        self.state.stream_dropped.load(Ordering::SeqCst)
    }

    /// Every request received so far.
    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// Number of requests received so far.
    pub fn count(&self) -> usize {
        self.state.received.lock().unwrap().len()
    }

    /// The only request received; panics unless exactly one arrived.
    pub fn single(&self) -> Received {
        let all = self.received();
        assert_eq!(
            all.len(),
            1,
            "expected exactly one upstream request: {all:#?}"
        );
        all.into_iter().next().unwrap()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

async fn serve_connection(mut stream: TcpStream, state: Arc<State>) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let head_end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let mut request_line = lines.next().unwrap_or_default().split(' ');
        let method = request_line.next().unwrap_or_default().to_owned();
        let path = request_line.next().unwrap_or_default().to_owned();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let body_start = head_end + 4;
        while buf.len() < body_start + length {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = buf[body_start..body_start + length].to_vec();
        buf.drain(..body_start + length);
        let signature = sigv4::verify(&method, &path, &headers, &body, "test", "test");
        let received = Received {
            method,
            path,
            headers,
            body,
            signature,
        };
        let own = state
            .by_endpoint
            .lock()
            .unwrap()
            .iter()
            .find(|(n, _)| n == received.endpoint())
            .map(|(_, r)| r.clone());
        state.received.lock().unwrap().push(received);
        let mut reply = own.unwrap_or_else(|| state.reply.lock().unwrap().clone());
        let mut close_after = false;
        loop {
            match reply {
                SageMakerReply::ThenClose(next) => {
                    close_after = true;
                    reply = *next;
                }
                SageMakerReply::Delay(d, next) => {
                    tokio::time::sleep(d).await;
                    reply = *next;
                }
                SageMakerReply::Hold(next) => {
                    let mut rx = state.release.subscribe();
                    while !*rx.borrow_and_update() {
                        if rx.changed().await.is_err() {
                            return;
                        }
                    }
                    reply = *next;
                }
                SageMakerReply::Reset => {
                    let _ = stream.set_zero_linger();
                    return;
                }
                SageMakerReply::Close => {
                    let _ = stream.shutdown().await;
                    return;
                }
                SageMakerReply::EventStream { part, parts, tail } => {
                    if write_event_stream(&mut stream, &part, parts, &tail)
                        .await
                        .is_err()
                    {
                        state.stream_dropped.store(true, Ordering::SeqCst);
                    }
                    return;
                }
                SageMakerReply::Answer {
                    status,
                    error_type,
                    body,
                    headers,
                } => {
                    let mut head = format!(
                        "HTTP/1.1 {status} Answer\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-amzn-requestid: {}\r\n",
                        body.len(),
                        uuid::Uuid::new_v4()
                    );
                    if let Some(t) = error_type {
                        head.push_str(&format!("x-amzn-errortype: {t}\r\n"));
                    }
                    for (name, value) in headers {
                        head.push_str(&format!("{name}: {value}\r\n"));
                    }
                    head.push_str("\r\n");
                    if stream.write_all(head.as_bytes()).await.is_err()
                        || stream.write_all(body.as_bytes()).await.is_err()
                    {
                        return;
                    }
                    break;
                }
            }
        }
        if close_after {
            let _ = stream.shutdown().await;
            return;
        }
    }
}

/// The frame of one `PayloadPart` carrying `payload`, as SageMaker encodes it.
pub fn payload_part(payload: &[u8]) -> Vec<u8> {
    let headers = [
        (":message-type", "event"),
        (":event-type", "PayloadPart"),
        (":content-type", "application/octet-stream"),
    ];
    event_frame(&headers, payload.to_vec())
}

/// The frame of an exception of type `kind` (`ModelStreamError`, `InternalStreamFailure`) whose
/// JSON payload carries `message`.
pub fn exception_frame(kind: &str, message: &str) -> Vec<u8> {
    let payload = serde_json::json!({ "Message": message, "ErrorCode": "StreamBroken" });
    let headers = [
        (":message-type", "exception"),
        (":exception-type", kind),
        (":content-type", "application/json"),
    ];
    event_frame(&headers, payload.to_string().into_bytes())
}

/// One event-stream frame with string `headers` and `payload`.
fn event_frame(headers: &[(&str, &str)], payload: Vec<u8>) -> Vec<u8> {
    use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
    let message = headers
        .iter()
        .fold(Message::new(payload), |m, (name, value)| {
            m.add_header(Header::new(
                (*name).to_owned(),
                HeaderValue::String((*value).to_owned().into()),
            ))
        });
    let mut out = Vec::new();
    aws_smithy_eventstream::frame::write_message_to(&message, &mut out).unwrap();
    out
}

/// Writes an `InvokeEndpointWithResponseStream` answer: the head, `parts` frames of `part` in
/// chunks of about 16 KiB, `tail`, the last chunk.
async fn write_event_stream(
    stream: &mut TcpStream,
    part: &[u8],
    parts: usize,
    tail: &[u8],
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/vnd.amazon.eventstream\r\nx-amzn-sagemaker-content-type: application/jsonlines\r\nx-amzn-invoked-production-variant: AllTraffic\r\nx-amzn-requestid: {}\r\ntransfer-encoding: chunked\r\n\r\n",
        uuid::Uuid::new_v4()
    );
    stream.write_all(head.as_bytes()).await?;
    let frame = payload_part(part);
    let per_chunk = (16 * 1024 / frame.len()).max(1);
    let mut left = parts;
    while left > 0 {
        let n = left.min(per_chunk);
        let mut chunk = format!("{:x}\r\n", n * frame.len()).into_bytes();
        for _ in 0..n {
            chunk.extend_from_slice(&frame);
        }
        chunk.extend_from_slice(b"\r\n");
        stream.write_all(&chunk).await?;
        left -= n;
    }
    if !tail.is_empty() {
        let mut chunk = format!("{:x}\r\n", tail.len()).into_bytes();
        chunk.extend_from_slice(tail);
        chunk.extend_from_slice(b"\r\n");
        stream.write_all(&chunk).await?;
    }
    stream.write_all(b"0\r\n\r\n").await?;
    stream.flush().await
}
