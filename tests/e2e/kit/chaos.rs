//! A fault-injecting TCP proxy between the gateway and a real upstream (the recommender).
//!
//! Input: HTTP/1.1 requests from the gateway's SDK (keep-alive, `Content-Length` bodies). Each
//! request is counted (an *attempt*), then handled by the [`Fault`] in force: passed to the target
//! on a fresh connection and its answer relayed, or delayed, held forever, cut mid-body with a TCP
//! reset, answered with bytes that are not HTTP, refused (reset on accept), or answered with one
//! of SageMaker's own error replies without reaching the target. The fault can be changed at any
//! time; a request keeps the fault it started with.
//!
//! Invariant: loopback only; the proxy stops when its handle drops.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// What the proxy does with the next request.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Relay to the target unchanged.
    Pass,
    /// Wait, then relay.
    Delay(Duration),
    /// Read the request and never answer.
    Hang,
    /// Relay the head and half the body, then reset the connection.
    ResetMidBody,
    /// Answer bytes that are not HTTP, then close.
    Garbage,
    /// Reset every connection as soon as it is accepted.
    Refuse,
    /// Answer as SageMaker would: status, `x-amzn-ErrorType`, body.
    SageMaker(u16, &'static str, String),
}

impl Fault {
    /// 424 `ModelError` wrapping a container answer of `status` with `message`.
    pub fn model_error(status: u16, message: &str) -> Fault {
        let body = serde_json::json!({
            "ErrorCode": "CLIENT_ERROR_FROM_MODEL",
            "Message": format!("Received client error ({status}) from primary with message \"{message}\"."),
            "OriginalMessage": message,
            "OriginalStatusCode": status,
        });
        Fault::SageMaker(424, "ModelError", body.to_string())
    }

    /// 400 `ThrottlingException`.
    pub fn throttling() -> Fault {
        Fault::SageMaker(
            400,
            "ThrottlingException",
            r#"{"message":"Rate exceeded"}"#.into(),
        )
    }

    /// 503 `ServiceUnavailable`.
    pub fn service_unavailable() -> Fault {
        Fault::SageMaker(
            503,
            "ServiceUnavailable",
            r#"{"Message":"Service Unavailable"}"#.into(),
        )
    }

    /// 500 `InternalFailure`.
    pub fn internal_failure() -> Fault {
        Fault::SageMaker(
            500,
            "InternalFailure",
            r#"{"Message":"Internal failure"}"#.into(),
        )
    }
}

struct State {
    target: SocketAddr,
    fault: Mutex<Fault>,
    attempts: AtomicUsize,
}

/// A running proxy; stops when dropped.
pub struct ChaosProxy {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl ChaosProxy {
    /// Starts on `127.0.0.1:0` in front of `target` (`http://127.0.0.1:PORT`), passing requests.
    pub async fn start(target: &str) -> ChaosProxy {
        let target: SocketAddr = target
            .trim_start_matches("http://")
            .parse()
            .expect("target is http://IP:PORT");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            target,
            fault: Mutex::new(Fault::Pass),
            attempts: AtomicUsize::new(0),
        });
        let s = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                if matches!(*s.fault.lock().unwrap(), Fault::Refuse) {
                    s.attempts.fetch_add(1, Ordering::SeqCst);
                    let _ = stream.set_zero_linger();
                    drop(stream);
                    continue;
                }
                tokio::spawn(serve(stream, s.clone()));
            }
        });
        ChaosProxy { addr, state, task }
    }

    /// `http://127.0.0.1:PORT` of the proxy.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sets the fault for requests from now on.
    pub fn set(&self, fault: Fault) {
        *self.state.fault.lock().unwrap() = fault;
    }

    /// Requests (or refused connections) seen so far.
    pub fn attempts(&self) -> usize {
        self.state.attempts.load(Ordering::SeqCst)
    }
}

impl Drop for ChaosProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one HTTP/1.1 message (head + `Content-Length` body) from `stream`; `None` at EOF.
async fn read_message(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            let total = end + 4 + len;
            while buf.len() < total {
                let mut chunk = [0u8; 8192];
                let n = stream.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Some(buf.drain(..total).collect());
        }
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn relay(state: &State, request: &[u8]) -> Option<Vec<u8>> {
    let mut up = TcpStream::connect(state.target).await.ok()?;
    up.write_all(request).await.ok()?;
    let mut buf = Vec::new();
    read_message(&mut up, &mut buf).await
}

async fn serve(mut stream: TcpStream, state: Arc<State>) {
    let mut buf = Vec::new();
    while let Some(request) = read_message(&mut stream, &mut buf).await {
        state.attempts.fetch_add(1, Ordering::SeqCst);
        let fault = state.fault.lock().unwrap().clone();
        let answer = match fault {
            Fault::Pass => relay(&state, &request).await,
            // A pooled connection opened before the fault: reset it, as a dead peer would.
            Fault::Refuse => None,
            Fault::Delay(d) => {
                tokio::time::sleep(d).await;
                relay(&state, &request).await
            }
            Fault::Hang => {
                std::future::pending::<()>().await;
                None
            }
            Fault::ResetMidBody => {
                if let Some(answer) = relay(&state, &request).await {
                    let end = answer
                        .windows(4)
                        .position(|w| w == b"\r\n\r\n")
                        .map_or(0, |e| e + 4);
                    let cut = end + (answer.len() - end) / 2;
                    let _ = stream.write_all(&answer[..cut]).await;
                    let _ = stream.flush().await;
                }
                let _ = stream.set_zero_linger();
                return;
            }
            Fault::Garbage => {
                let _ = stream
                    .write_all(b"\x00\x13\x37 this is not HTTP at all\r\n\r\n\xff\xfe")
                    .await;
                let _ = stream.shutdown().await;
                return;
            }
            Fault::SageMaker(status, error_type, body) => Some(
                format!(
                    "HTTP/1.1 {status} Fault\r\ncontent-type: application/json\r\nx-amzn-errortype: {error_type}\r\nx-amzn-requestid: {}\r\ncontent-length: {}\r\n\r\n{body}",
                    uuid::Uuid::new_v4(),
                    body.len()
                )
                .into_bytes(),
            ),
        };
        let Some(answer) = answer else {
            let _ = stream.set_zero_linger();
            return;
        };
        if stream.write_all(&answer).await.is_err() {
            return;
        }
    }
}
