//! An in-test OTLP/HTTP collector: `POST /v1/traces` on a loopback port, protobuf bodies decoded
//! with the official OpenTelemetry proto types (`opentelemetry-proto`, prost), answered 200 with an
//! empty `ExportTraceServiceResponse`, the way an ADOT or OpenTelemetry collector answers.
//!
//! [`Collector::silent`] accepts connections and never answers: a collector that hangs.
//! Every received span is kept, flattened with its resource's attributes, for assertions.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// OTLP span kinds (`opentelemetry.proto.trace.v1.Span.SpanKind`).
pub const KIND_INTERNAL: i32 = 1;
/// Server span.
pub const KIND_SERVER: i32 = 2;
/// Client span.
pub const KIND_CLIENT: i32 = 3;
/// `Status.code` of an error.
pub const STATUS_ERROR: i32 = 2;

/// One span as received.
#[derive(Clone, Debug)]
pub struct Span {
    /// Trace id, lower-case hex.
    pub trace_id: String,
    /// Span id, hex.
    pub span_id: String,
    /// Parent span id, hex; empty for a root.
    pub parent_span_id: String,
    /// Name.
    pub name: String,
    /// Kind (see the constants).
    pub kind: i32,
    /// Attributes, values rendered as text.
    pub attributes: BTreeMap<String, String>,
    /// Status code (0 unset, 1 ok, 2 error).
    pub status: i32,
    /// Start and end, Unix nanoseconds.
    pub time: (u64, u64),
    /// The resource's attributes.
    pub resource: BTreeMap<String, String>,
}

impl Span {
    /// Attribute `key`.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

#[derive(Default)]
struct State {
    spans: Vec<Span>,
    posts: usize,
    other_requests: Vec<String>,
}

/// A running collector; stops when dropped.
pub struct Collector {
    port: u16,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Collector {
    /// Starts on `127.0.0.1:0`.
    pub async fn start() -> Collector {
        Collector::run(true).await
    }

    /// Starts on `127.0.0.1:0`, reads requests and never answers.
    pub async fn silent() -> Collector {
        Collector::run(false).await
    }

    async fn run(answer: bool) -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let accept_state = state.clone();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                if answer {
                    tokio::spawn(serve(stream, accept_state.clone()));
                } else {
                    held.push(stream);
                }
            }
        });
        Collector { port, state, task }
    }

    /// The base URL (`telemetry.otlp.endpoint`, `OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Span> {
        self.state.lock().unwrap().spans.clone()
    }

    /// Export requests received (any path).
    pub fn posts(&self) -> usize {
        let s = self.state.lock().unwrap();
        s.posts + s.other_requests.len()
    }

    /// Requests that were not `POST /v1/traces` with a protobuf body.
    pub fn unexpected(&self) -> Vec<String> {
        self.state.lock().unwrap().other_requests.clone()
    }
}

async fn serve(mut stream: TcpStream, state: Arc<Mutex<State>>) {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 8192];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap_or("").to_owned();
        let mut length = 0usize;
        let mut content_type = String::new();
        for line in lines {
            if let Some((n, v)) = line.split_once(':') {
                match n.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = v.trim().parse().unwrap_or(0),
                    "content-type" => content_type = v.trim().to_owned(),
                    _ => {}
                }
            }
        }
        while buf.len() < head_end + length {
            let mut chunk = [0u8; 65536];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body: Vec<u8> = buf.drain(..head_end + length).skip(head_end).collect();
        let ok = request_line.starts_with("POST /v1/traces ")
            && content_type == "application/x-protobuf";
        {
            let mut s = state.lock().unwrap();
            match ok
                .then(|| ExportTraceServiceRequest::decode(body.as_slice()).ok())
                .flatten()
            {
                Some(req) => {
                    s.posts += 1;
                    s.spans.extend(flatten(req));
                }
                None => s
                    .other_requests
                    .push(format!("{request_line} ({content_type})")),
            }
        }
        let status = if ok { "200 OK" } else { "400 Bad Request" };
        let answer = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n"
        );
        if stream.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

fn text(v: &Option<AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attrs(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), text(&kv.value)))
        .collect()
}

fn flatten(req: ExportTraceServiceRequest) -> Vec<Span> {
    let mut out = Vec::new();
    for rs in req.resource_spans {
        let resource = rs
            .resource
            .as_ref()
            .map(|r| attrs(&r.attributes))
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for s in ss.spans {
                out.push(Span {
                    trace_id: hex::encode(&s.trace_id),
                    span_id: hex::encode(&s.span_id),
                    parent_span_id: hex::encode(&s.parent_span_id),
                    name: s.name.clone(),
                    kind: s.kind,
                    attributes: attrs(&s.attributes),
                    status: s.status.as_ref().map_or(0, |st| st.code),
                    time: (s.start_time_unix_nano, s.end_time_unix_nano),
                    resource: resource.clone(),
                });
            }
        }
    }
    out
}
