//! An in-test SageMaker Runtime answering `InvokeEndpointWithResponseStream` with as many bytes as
//! a test asks for: the real event-stream framing (`aws-smithy-eventstream`, as SageMaker and the
//! SDKs), over chunked HTTP/1.1 on a loopback port.
//!
//! Input: the request body is JSON `{"parts": N, "size": S, "fail_after": K}` (a streaming route's
//! default body carries a query string's numbers): N `PayloadPart`s of S bytes each, the bytes of
//! [`part`]; with `fail_after`, a `ModelStreamError` exception frame after K parts instead of the
//! rest. `POST …/invocations` (a buffered route) answers 200 `{"ok":true}`.
//!
//! Output besides the answer: [`EventStreamUpstream::written`], the payload bytes whose frames the
//! kernel has accepted so far, to see when a paused reader stops the writes (back-pressure). The
//! listening socket's send buffer is small (accepted sockets inherit it), so what the kernel holds
//! for a paused stream is tens of KiB, not the megabytes autotuning would allow.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;

/// The send buffer of the upstream's sockets (the kernel doubles it).
const SEND_BUFFER: u32 = 16 * 1024;

/// Part `index`'s `size` bytes: a pattern that changes with the index, so a part out of place, lost
/// or repeated shows in the concatenation.
pub fn part(index: usize, size: usize) -> Vec<u8> {
    (0..size)
        .map(|j| u8::try_from((index * 7 + j) % 251).unwrap())
        .collect()
}

/// The body a client must read for `parts` parts of `size` bytes.
pub fn whole(parts: usize, size: usize) -> Vec<u8> {
    (0..parts).flat_map(|i| part(i, size)).collect()
}

/// The running upstream; stops when dropped.
pub struct EventStreamUpstream {
    url: String,
    written: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl EventStreamUpstream {
    /// Listens on `127.0.0.1:0`.
    pub async fn start() -> EventStreamUpstream {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_send_buffer_size(SEND_BUFFER).unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(64).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let written = Arc::new(AtomicU64::new(0));
        let counter = written.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(serve(tcp, counter.clone()));
            }
        });
        EventStreamUpstream { url, written, task }
    }

    /// `http://127.0.0.1:port`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Payload bytes of the parts written so far, over all streams.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }
}

impl Drop for EventStreamUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One connection: one request, one answer, then close.
async fn serve(mut tcp: TcpStream, written: Arc<AtomicU64>) {
    let Some((path, body)) = read_request(&mut tcp).await else {
        return;
    };
    if !path.ends_with("/invocations-response-stream") {
        let _ = tcp
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\nconnection: close\r\n\r\n{\"ok\":true}")
            .await;
        return;
    }
    let script: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let number = |name: &str| {
        script
            .get(name)
            .and_then(serde_json::Value::as_u64)
            .map(|n| usize::try_from(n).unwrap())
    };
    let (parts, size) = (number("parts").unwrap_or(1), number("size").unwrap_or(1));
    let head = "HTTP/1.1 200 OK\r\ncontent-type: application/vnd.amazon.eventstream\r\n\
        x-amzn-sagemaker-content-type: application/octet-stream\r\n\
        x-amzn-invoked-production-variant: AllTraffic\r\n\
        x-amzn-requestid: 00000000-0000-4000-8000-000000000000\r\n\
        transfer-encoding: chunked\r\nconnection: close\r\n\r\n";
    if tcp.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    for i in 0..parts {
        if number("fail_after") == Some(i) {
            let error = serde_json::json!({"ErrorCode": "StreamBroken", "Message": "the model's stream broke"});
            let frame = Message::new(error.to_string())
                .add_header(header(":message-type", "exception"))
                .add_header(header(":exception-type", "ModelStreamError"))
                .add_header(header(":content-type", "application/json"));
            let _ = write_chunk(&mut tcp, &frame).await;
            return;
        }
        let frame = Message::new(part(i, size))
            .add_header(header(":message-type", "event"))
            .add_header(header(":event-type", "PayloadPart"))
            .add_header(header(":content-type", "application/octet-stream"));
        if write_chunk(&mut tcp, &frame).await.is_err() {
            return;
        }
        written.fetch_add(size as u64, Ordering::Relaxed);
    }
    let _ = tcp.write_all(b"0\r\n\r\n").await;
}

fn header(name: &'static str, value: &'static str) -> Header {
    Header::new(name, HeaderValue::String(value.into()))
}

/// One frame as one HTTP chunk.
async fn write_chunk(tcp: &mut TcpStream, message: &Message) -> std::io::Result<()> {
    let mut frame = Vec::new();
    write_message_to(message, &mut frame).unwrap();
    let mut chunk = format!("{:x}\r\n", frame.len()).into_bytes();
    chunk.extend_from_slice(&frame);
    chunk.extend_from_slice(b"\r\n");
    tcp.write_all(&chunk).await
}

/// The request's path and its `Content-Length` body.
async fn read_request(tcp: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = tcp.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let path = head.split_whitespace().nth(1)?.to_owned();
    let length = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = buf[end..].to_vec();
    while body.len() < length {
        let n = tcp.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        body.extend_from_slice(&chunk[..n]);
    }
    Some((path, body))
}
