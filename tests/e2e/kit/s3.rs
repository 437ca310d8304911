//! An in-test S3: HTTP/1.1 on a loopback port serving one object to `GetObject` and taking
//! conditional `PutObject`s of it, the way S3 does.
//!
//! Input: requests from the gateway's keys source and from `sagegate keys` (keep-alive
//! connections). Output: the object with its `ETag` (200), `304 Not Modified` when `If-None-Match`
//! carries the current ETag; for a `PUT`, 200 with the new ETag, or S3's 412 `PreconditionFailed`
//! when `If-Match` names another ETag (the write is dropped);
//! S3's XML error document for any other path (404 `NoSuchKey`), or the fault the test scripts (an
//! error status with its code, or bytes that are not HTTP). Every request is recorded together
//! with the result of recomputing its SigV4 signature as S3 does ([`super::sigv4::verify_s3`]) for
//! the test credentials (`test`/`test`, `us-east-1`).

use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::sigv4;

/// What the fake S3 answers to a `GetObject` of the object.
#[derive(Clone, Debug)]
pub enum S3Reply {
    /// The object (200 or 304).
    Object,
    /// An S3 error: status and `<Code>`.
    Error(u16, &'static str),
    /// Bytes that are not an HTTP response, then a close.
    Garbage,
}

/// One request as the fake S3 received it.
#[derive(Clone, Debug)]
pub struct S3Request {
    /// Method.
    pub method: String,
    /// Request target as sent.
    pub path: String,
    /// `If-None-Match`, when sent.
    pub if_none_match: Option<String>,
    /// `If-Match`, when sent.
    pub if_match: Option<String>,
    /// `Ok` when the SigV4 signature recomputes as S3 would; else why not.
    pub signature: Result<(), String>,
    /// The status answered (0 for garbage).
    pub status: u16,
}

struct State {
    object_path: String,
    body: Mutex<String>,
    reply: Mutex<S3Reply>,
    received: Mutex<Vec<S3Request>>,
    /// While set, each `GET` waits here (bounded) until this many `GET`s are waiting.
    hold_reads: Mutex<Option<Arc<tokio::sync::Barrier>>>,
}

/// A running fake S3 serving `s3://<bucket>/<key>` path-style; stops when dropped.
pub struct FakeS3 {
    port: u16,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl FakeS3 {
    /// Starts on `127.0.0.1:0` with `body` as the object at `/bucket/key`.
    pub async fn start(bucket: &str, key: &str, body: &str) -> FakeS3 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State {
            object_path: format!("/{bucket}/{key}"),
            body: Mutex::new(body.to_owned()),
            reply: Mutex::new(S3Reply::Object),
            received: Mutex::new(Vec::new()),
            hold_reads: Mutex::new(None),
        });
        let accept_state = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_connection(stream, accept_state.clone()));
            }
        });
        FakeS3 { port, state, task }
    }

    /// `http://127.0.0.1:<port>`, for `AWS_ENDPOINT_URL_S3`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Replaces the object (a new upload: new ETag).
    pub fn upload(&self, body: &str) {
        body.clone_into(&mut self.state.body.lock().unwrap());
    }

    /// Answers `reply` from now on.
    pub fn reply_with(&self, reply: S3Reply) {
        *self.state.reply.lock().unwrap() = reply;
    }

    /// Holds the next `n` `GET`s until all `n` have arrived, then answers them together (each
    /// waits at most [`super::WAIT`]): `n` clients then read the same version of the object.
    pub fn hold_reads_until(&self, n: usize) {
        *self.state.hold_reads.lock().unwrap() = Some(Arc::new(tokio::sync::Barrier::new(n)));
    }

    /// The object's current text.
    pub fn body(&self) -> String {
        self.state.body.lock().unwrap().clone()
    }

    /// Every request received so far.
    pub fn received(&self) -> Vec<S3Request> {
        self.state.received.lock().unwrap().clone()
    }

    /// The ETag of the current object (quoted, as S3 sends it: an MD5 of the bytes for a simple
    /// upload; a SHA-256 prefix serves the same purpose here).
    pub fn etag(&self) -> String {
        etag_of(&self.state.body.lock().unwrap())
    }
}

impl Drop for FakeS3 {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn etag_of(body: &str) -> String {
    format!(
        "\"{}\"",
        &hex::encode(Sha256::digest(body.as_bytes()))[..32]
    )
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn error_document(code: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{code} (fake S3)</Message><RequestId>FAKE</RequestId></Error>"
    )
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
        buf.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let mut request_line = lines.next().unwrap_or_default().split(' ');
        let method = request_line.next().unwrap_or_default().to_owned();
        let path = request_line.next().unwrap_or_default().to_owned();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        let length: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        assert!(
            length == 0 || method == "PUT",
            "{method} with a body: {headers:?}"
        );
        while buf.len() < length {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let payload: Vec<u8> = buf.drain(..length).collect();
        let signature = sigv4::verify_s3(&method, &path, &headers, &payload, "test", "test");
        let if_none_match = header("if-none-match");
        let if_match = header("if-match");
        if method == "GET" {
            let hold = state.hold_reads.lock().unwrap().clone();
            if let Some(barrier) = hold {
                let _ = tokio::time::timeout(super::WAIT, barrier.wait()).await;
                *state.hold_reads.lock().unwrap() = None;
            }
        }
        let reply = state.reply.lock().unwrap().clone();
        if matches!(reply, S3Reply::Garbage) {
            state.received.lock().unwrap().push(S3Request {
                method,
                path,
                if_none_match,
                if_match,
                signature,
                status: 0,
            });
            let _ = stream.write_all(b"\x00\x13garbage, not HTTP\r\n\r\n").await;
            let _ = stream.shutdown().await;
            return;
        }
        // The object stays locked until the answer is decided: a conditional PUT checks and
        // replaces it in one step, as S3 does (two racing PUTs with one `If-Match` never both win).
        let (status, extra, payload) = {
            let mut object = state.body.lock().unwrap();
            let etag = etag_of(&object);
            match reply {
                _ if !matches!(method.as_str(), "GET" | "PUT") || path != state.object_path => {
                    (404, String::new(), error_document("NoSuchKey"))
                }
                S3Reply::Error(status, code) => (status, String::new(), error_document(code)),
                // S3's conditional write: the ETag must still be the object's.
                S3Reply::Object
                    if method == "PUT" && if_match.as_deref().is_some_and(|m| m != etag) =>
                {
                    (412, String::new(), error_document("PreconditionFailed"))
                }
                S3Reply::Object if method == "PUT" => {
                    let text = String::from_utf8(payload).unwrap();
                    let new_etag = etag_of(&text);
                    *object = text;
                    (200, format!("etag: {new_etag}\r\n"), String::new())
                }
                S3Reply::Object | S3Reply::Garbage
                    if if_none_match.as_deref() == Some(etag.as_str()) =>
                {
                    (304, format!("etag: {etag}\r\n"), String::new())
                }
                S3Reply::Object | S3Reply::Garbage => (
                    200,
                    format!("etag: {etag}\r\ncontent-type: application/yaml\r\n"),
                    object.clone(),
                ),
            }
        };
        state.received.lock().unwrap().push(S3Request {
            method,
            path,
            if_none_match,
            if_match,
            signature,
            status,
        });
        let content_type = if status >= 400 {
            "content-type: application/xml\r\n"
        } else {
            ""
        };
        let length = if status == 304 {
            String::new()
        } else {
            format!("content-length: {}\r\n", payload.len())
        };
        let head = format!(
            "HTTP/1.1 {status} Answer\r\n{extra}{content_type}{length}x-amz-request-id: FAKE\r\n\r\n"
        );
        if stream.write_all(head.as_bytes()).await.is_err()
            || stream.write_all(payload.as_bytes()).await.is_err()
        {
            return;
        }
    }
}
