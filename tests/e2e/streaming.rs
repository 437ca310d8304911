//! Response streaming (`mode: stream`): the real gateway in front of the real recommender (its
//! `invocations-response-stream` emulation, slowed or broken by its test knobs), on both clients.
//! Raw TCP reads prove how a chunked body ends (with or without the zero-length chunk).

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::hostile::slow_readers::{never_reading, rss};
use crate::kit::config::KEY_A;
use crate::kit::event_stream::{self, EventStreamUpstream};
use crate::kit::tcp_queues::queued_on;
use crate::kit::{Gateway, KeysYaml, Recommender, WAIT, eventually};
use crate::metrics::{admin_url, sample, scrape};

/// A gateway.yaml with one streaming route, `GET /temp/stream/{user_id}` (default body: the path
/// and query parameters, so the recommender's knobs come from the query string).
pub(crate) fn config(client: &str, stream: &str, extra: &str) -> String {
    format!(
        r#"server:
  listen: "127.0.0.1:0"
  admin_listen: ""
  drain_grace_secs: 2
sagemaker:
  region: us-east-1
  max_attempts: 1
  client: {client}
stages:
  temp:
    variables: {{ endpoint: e2e-stream }}
  prod:
    variables: {{ endpoint: e2e-stream }}
routes:
  - method: GET
    path: /stream/{{user_id}}
    api_key_required: true
    integration:
      endpoint_name: "${{stageVariables.endpoint}}"
      accept: application/jsonlines
      mode: stream
      stream: {{ {stream} }}
{extra}"#
    )
}

async fn stack(client: &str, stream: &str, keys: KeysYaml) -> (Recommender, Gateway) {
    let recommender = Recommender::start_streaming().await;
    let gateway = Gateway::builder()
        .config_text(&config(client, stream, ""))
        .keys(keys)
        .upstream_url(&recommender.url())
        .start()
        .await;
    (recommender, gateway)
}

/// What a raw HTTP/1.1 read saw: the head, the decoded chunked body, and whether the body ended
/// with the zero-length chunk.
struct Raw {
    head: String,
    body: Vec<u8>,
    terminated: bool,
}

/// `GET path` with `Connection: close`, read to EOF over raw TCP.
async fn raw_get(gateway: &Gateway, path: &str, accept: &str) -> Raw {
    let mut tcp = tokio::net::TcpStream::connect(gateway.addr())
        .await
        .unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nx-api-key: {KEY_A}\r\naccept: {accept}\r\nconnection: close\r\n\r\n"
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut all))
        .await
        .expect("the gateway ends the response")
        .unwrap();
    let split = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&all[..split]).into_owned();
    let (body, terminated) = dechunk(&all[split..]);
    Raw {
        head,
        body,
        terminated,
    }
}

/// A chunked body's bytes, and whether its zero-length last chunk arrived.
fn dechunk(mut raw: &[u8]) -> (Vec<u8>, bool) {
    let mut body = Vec::new();
    loop {
        let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") else {
            return (body, false);
        };
        let size =
            usize::from_str_radix(std::str::from_utf8(&raw[..eol]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return (body, true);
        }
        let start = eol + 2;
        if raw.len() < start + size + 2 {
            body.extend_from_slice(&raw[start.min(raw.len())..]);
            return (body, false);
        }
        body.extend_from_slice(&raw[start..start + size]);
        raw = &raw[start + size + 2..];
    }
}

fn lines(body: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(body)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The access-log line of the request whose path is `path` (polls: it is written at the end).
async fn access_line(gateway: &Gateway, path: &str) -> Value {
    eventually(&format!("access line of {path}"), WAIT, || {
        let found = gateway
            .access_log()
            .into_iter()
            .find(|l| l["path"] == path.split('?').next().unwrap());
        async move { found }
    })
    .await
}

const LIMITS: &str = "first_byte_timeout_ms: 10000, idle_timeout_ms: 10000, max_duration_ms: 60000";

async fn parts_arrive_as_they_are_produced(client: &str) {
    let (recommender, gateway) = stack(client, LIMITS, KeysYaml::standard()).await;
    let path = "/temp/stream/U:1?k=3&inference_type=deterministic&first_line_delay_ms=0&line_delay_ms=1500";
    let mut resp = gateway.get(path).key(KEY_A).send_raw().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/jsonlines");
    assert!(resp.headers().get("content-length").is_none());
    let first = resp.chunk().await.unwrap().unwrap();
    let first = lines(&first);
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0]["position"], 1);
    // The recommender has not finished the stream (it logs the end): the first part was relayed
    // before the last one was produced.
    assert!(
        !recommender.log().contains("outcome"),
        "{}",
        recommender.log()
    );
    let mut rest = Vec::new();
    while let Some(c) = resp.chunk().await.unwrap() {
        rest.extend_from_slice(&c);
    }
    let rest = lines(&rest);
    assert_eq!(rest.len(), 3, "positions 2, 3 and the summary");
    assert_eq!(rest[2]["done"], true);
    let line = access_line(&gateway, path).await;
    assert_eq!(line["status"], 200);
    assert_eq!(line["stream.outcome"], "complete");
    assert_eq!(line["stream.framing"], "chunked");
    assert_eq!(line["stream.parts"], 4);
    assert!(line["stream.timeToFirstByte"].as_u64().is_some());
    assert_eq!(line["stream.bytes"], line["responseLength"]);
    assert_eq!(line["endpointName"], "e2e-stream");
    assert_eq!(line["invokedProductionVariant"], "AllTraffic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_arrive_as_they_are_produced_lean() {
    parts_arrive_as_they_are_produced("lean").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_arrive_as_they_are_produced_sdk() {
    parts_arrive_as_they_are_produced("sdk").await;
}

async fn a_failure_after_the_first_part_cuts_chunked_and_ends_sse(client: &str) {
    let (_recommender, gateway) = stack(client, LIMITS, KeysYaml::standard()).await;
    let path = "/temp/stream/U:1?k=5&inference_type=deterministic&fail_after_lines=2";
    let raw = raw_get(&gateway, path, "application/jsonlines").await;
    assert!(raw.head.starts_with("HTTP/1.1 200"), "{}", raw.head);
    assert!(!raw.terminated, "no zero-length chunk after a failure");
    assert_eq!(lines(&raw.body).len(), 2, "the parts before the failure");
    assert_eq!(
        access_line(&gateway, path).await["stream.outcome"],
        "upstream_error"
    );

    let sse_path = "/temp/stream/U:2?k=5&inference_type=deterministic&fail_after_lines=2";
    let raw = raw_get(&gateway, sse_path, "text/event-stream").await;
    assert!(
        raw.head.contains("content-type: text/event-stream"),
        "{}",
        raw.head
    );
    assert!(
        raw.terminated,
        "an SSE stream ends cleanly after its error event"
    );
    let text = String::from_utf8(raw.body).unwrap();
    let events: Vec<&str> = text.split_terminator("\n\n").collect();
    assert_eq!(events.len(), 3, "{text}");
    for event in &events[..2] {
        let data: String = event
            .lines()
            .map(|l| l.strip_prefix("data: ").unwrap())
            .collect::<Vec<_>>()
            .join("\n");
        let line: Value = serde_json::from_str(data.trim_end()).unwrap();
        assert_eq!(line["done"], false);
        assert!(data.ends_with('\n'), "the part's own newline comes back");
    }
    let error = events[2].strip_prefix("event: error\ndata: ").unwrap();
    let error: Value = serde_json::from_str(error).unwrap();
    assert_eq!(error["ErrorCode"], "StreamBroken");
    assert!(error["Message"].as_str().is_some_and(|m| !m.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_after_the_first_part_cuts_chunked_and_ends_sse_lean() {
    a_failure_after_the_first_part_cuts_chunked_and_ends_sse("lean").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_after_the_first_part_cuts_chunked_and_ends_sse_sdk() {
    a_failure_after_the_first_part_cuts_chunked_and_ends_sse("sdk").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_before_the_first_part_are_ordinary_error_responses() {
    let limits = "first_byte_timeout_ms: 300, idle_timeout_ms: 300, max_duration_ms: 60000";
    let (_recommender, gateway) = stack("lean", limits, KeysYaml::standard()).await;
    // The model's stream breaks before its first line: the usual 502.
    let reply = gateway
        .get("/temp/stream/U:1?k=3&inference_type=deterministic&fail_after_lines=0")
        .key(KEY_A)
        .send()
        .await;
    assert_eq!(reply.status, 502);
    assert_eq!(reply.text(), r#"{"message": "Internal server error"}"#);
    // No first part within first_byte_timeout_ms: 504.
    let reply = gateway
        .get("/temp/stream/U:1?k=3&inference_type=deterministic&first_line_delay_ms=5000")
        .key(KEY_A)
        .send()
        .await;
    assert_eq!(reply.status, 504);
    assert_eq!(reply.text(), r#"{"message": "Endpoint request timed out"}"#);
    // The model's own 400 (a bad k) passes through, as on buffered routes.
    let reply = gateway
        .get("/temp/stream/U:1?k=oops&inference_type=deterministic")
        .key(KEY_A)
        .send()
        .await;
    assert_eq!(reply.status, 400);
    // No part within idle_timeout_ms after the first: the chunked body is cut.
    let path = "/temp/stream/U:9?k=3&inference_type=deterministic&first_line_delay_ms=0&line_delay_ms=5000";
    let raw = raw_get(&gateway, path, "*/*").await;
    assert!(raw.head.starts_with("HTTP/1.1 200"));
    assert!(!raw.terminated);
    assert_eq!(lines(&raw.body).len(), 1);
    let line = access_line(&gateway, path).await;
    assert_eq!(line["stream.outcome"], "timeout");
    assert_eq!(
        line["upstreamErrorType"], "Timeout",
        "SageMaker went silent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_cancels_the_upstream_call() {
    let (recommender, gateway) = stack("lean", LIMITS, KeysYaml::standard()).await;
    let path = "/temp/stream/U:1?k=50&inference_type=deterministic&first_line_delay_ms=0&line_delay_ms=200";
    let mut resp = gateway.get(path).key(KEY_A).send_raw().await.unwrap();
    assert!(resp.chunk().await.unwrap().is_some());
    drop(resp);
    eventually("the recommender to see the gateway leave", WAIT, || {
        let log = recommender.log();
        async move { log.contains("client_gone").then_some(()) }
    })
    .await;
    assert_eq!(
        access_line(&gateway, path).await["stream.outcome"],
        "client_gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_takes_one_throttle_token_and_new_session_is_refused() {
    let keys = KeysYaml::new()
        .plan(crate::kit::config::Plan::new("one", &["temp"]).throttle(0.001, 1))
        .key(crate::kit::config::Key::new("partner-a", KEY_A, &["one"]));
    let recommender = Recommender::start_streaming().await;
    let extra = "      session_id: method.request.header.x-session\n";
    let gateway = Gateway::builder()
        .config_text(&config("lean", LIMITS, extra))
        .keys(keys)
        .upstream_url(&recommender.url())
        .start()
        .await;
    let path = "/temp/stream/U:1?k=5&inference_type=deterministic&line_delay_ms=50";
    let mut resp = gateway.get(path).key(KEY_A).send_raw().await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = Vec::new();
    while let Some(c) = resp.chunk().await.unwrap() {
        body.extend_from_slice(&c);
    }
    assert_eq!(lines(&body).len(), 6, "six parts on one token");
    let reply = gateway.get(path).key(KEY_A).send().await;
    assert_eq!(reply.status, 429);

    let other = Gateway::builder()
        .config_text(&config("lean", LIMITS, extra))
        .keys(KeysYaml::standard())
        .upstream_url(&recommender.url())
        .start()
        .await;
    let reply = other
        .get("/temp/stream/U:1?k=2&inference_type=deterministic")
        .key(KEY_A)
        .header("x-session", "NEW_SESSION")
        .send()
        .await;
    assert_eq!(reply.status, 400);
    assert!(reply.text().contains("NEW_SESSION"), "{}", reply.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_open_streams_after_the_grace() {
    let (_recommender, mut gateway) = stack("lean", LIMITS, KeysYaml::standard()).await;
    let path = "/temp/stream/U:1?k=100&inference_type=deterministic&first_line_delay_ms=0&line_delay_ms=300";
    let mut resp = gateway
        .get(path)
        .key(KEY_A)
        .header("accept", "text/event-stream")
        .send_raw()
        .await
        .unwrap();
    let mut text = String::from_utf8(resp.chunk().await.unwrap().unwrap().to_vec()).unwrap();
    gateway.signal("TERM");
    // The grace is 2 s; the stream (100 lines, 300 ms apart) would take 30 s.
    while let Some(c) = tokio::time::timeout(WAIT, resp.chunk())
        .await
        .unwrap()
        .unwrap()
    {
        text.push_str(std::str::from_utf8(&c).unwrap());
    }
    assert!(text.contains("event: error"), "{text}");
    assert!(text.contains("GatewayShutdown"), "{text}");
    gateway.wait_exit(WAIT).await;
    assert_eq!(
        access_line(&gateway, path).await["stream.outcome"],
        "shutdown"
    );
}

#[test]
fn streaming_routes_refuse_what_cannot_hold_for_a_stream() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"stages:
  temp: { variables: { endpoint: e } }
routes:
  - method: GET
    path: /s
    cache: { enabled: true }
    shadow: { endpoint_name: other, percent: 5 }
    integration:
      endpoint_name: e
      mode: stream
      timeout_ms: 1000
      session_id: "'NEW_SESSION'"
      target_model: "'m.tar.gz'"
      stream: { first_byte_timeout_ms: 10, idle_timeout_ms: 70000, max_duration_ms: 60000 }
      responses:
        - status: 200
          templates: { application/json: "x" }
  - method: GET
    path: /b
    integration:
      endpoint_name: e
      stream: { idle_timeout_ms: 1000 }
"#;
    let config = dir.path().join("g.yaml");
    std::fs::write(&config, text).unwrap();
    let keys = dir.path().join("k.yaml");
    std::fs::write(&keys, KeysYaml::standard().render()).unwrap();
    let out = std::process::Command::new(crate::kit::sagegate_bin())
        .arg("check-config")
        .arg("--config")
        .arg(&config)
        .arg("--keys")
        .arg(&keys)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    for needle in [
        "routes[0].cache: a streaming route is never cached",
        "routes[0].shadow:",
        "routes[0].integration.timeout_ms:",
        "routes[0].integration.session_id:",
        "routes[0].integration.target_model:",
        "routes[0].integration.responses:",
        "routes[0].integration.stream.first_byte_timeout_ms: must be between 50",
        "routes[0].integration.stream.idle_timeout_ms: must not exceed stream.max_duration_ms",
        "routes[1].integration.stream: applies to `mode: stream` only",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
}

/// [`config`] for the byte-counting upstream ([`EventStreamUpstream`]): `GET /stream/{user_id}`
/// streams what its query asks for (`parts`, `size`, `fail_after`), `GET /ping` is a buffered
/// route; a 1 MiB memory budget.
fn big_config(client: &str) -> String {
    let ping = "  - method: GET\n    path: /ping\n    api_key_required: true\n    integration:\n      endpoint_name: \"${stageVariables.endpoint}\"\n";
    config(client, LIMITS, ping).replace(
        "  drain_grace_secs: 2\n",
        "  drain_grace_secs: 2\n  memory_budget_bytes: 1048576\n  max_body_bytes: 65536\n",
    )
}

async fn big_stack(client: &str) -> (EventStreamUpstream, Gateway, String) {
    let upstream = EventStreamUpstream::start().await;
    let gateway = Gateway::builder()
        .config_text(&big_config(client))
        .keys(KeysYaml::standard())
        .upstream_url(&upstream.url())
        .env("SAGEGATE_ADMIN_LISTEN", "127.0.0.1:0")
        .start()
        .await;
    let admin = admin_url(&gateway);
    (upstream, gateway, admin)
}

/// `sagegate_memory_held_bytes` now.
async fn held(admin: &str) -> u64 {
    let held = sample(&scrape(admin).await, "sagegate_memory_held_bytes", &[]).unwrap();
    held as u64
}

/// Reads a response's head from a raw connection (a few bytes at a time, so that a paused reader
/// takes nothing more); returns the head and the body bytes read with it.
async fn read_head(tcp: &mut tokio::net::TcpStream) -> (String, Vec<u8>) {
    let mut all = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        if let Some(i) = all.windows(4).position(|w| w == b"\r\n\r\n") {
            let body = all.split_off(i + 4);
            return (String::from_utf8_lossy(&all).into_owned(), body);
        }
        let n = tokio::time::timeout(WAIT, tcp.read(&mut buf))
            .await
            .expect("a response head")
            .unwrap();
        assert!(n > 0, "connection closed before the head: {all:?}");
        all.extend_from_slice(&buf[..n]);
    }
}

const PARTS: usize = 1024;
const PART: usize = 16 * 1024;
/// What one paused stream may hold in the budget: the 64 KiB window, the part waiting for room
/// in it, and the frame being decoded.
const PER_STREAM: u64 = (64 * 1024 + 2 * (PART + 256)) as u64;
/// What a paused stream holds besides, outside the budget: the upstream connection's read buffer
/// and the client connection's write buffer.
const IO_BUFFERS: u64 = 64 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_pauses_the_upstream_within_the_window_and_loses_nothing() {
    let (upstream, gateway, admin) = big_stack("lean").await;
    // Warm up (the first stream's allocations), then the resident size to compare with.
    let warm = gateway
        .get("/temp/stream/0?parts=8&size=16384")
        .key(KEY_A)
        .send()
        .await;
    assert_eq!(warm.status, 200);
    let rss_before = rss(gateway.pid());

    // 16 MiB to a client that reads nothing (4 KiB receive buffer).
    let request = format!(
        "GET /temp/stream/1?parts={PARTS}&size={PART} HTTP/1.1\r\nhost: gw\r\nx-api-key: {KEY_A}\r\nconnection: close\r\n\r\n"
    );
    let mut slow = never_reading(&gateway, request.as_bytes()).await;
    let warm_bytes = 8 * PART as u64;
    // The upstream's writes stop: polled until two looks a quarter second apart see the same count.
    let (mut last, mut most_held) = (u64::MAX, 0);
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        most_held = most_held.max(held(&admin).await);
        let now = upstream.written();
        if now == last && now > warm_bytes {
            break;
        }
        last = now;
        assert!(
            std::time::Instant::now() < deadline,
            "the upstream never paused"
        );
    }
    // What the upstream wrote, less what the kernel's socket buffers hold, is what the gateway
    // holds. Those buffers autotune to megabytes on loopback (the send buffer to the client up to
    // `tcp_wmem`'s maximum), so they are read from the kernel, not assumed.
    let total = (PARTS * PART) as u64;
    let sent = upstream.written() - warm_bytes;
    let upstream_port = upstream.url().rsplit_once(':').unwrap().1.parse().unwrap();
    let in_kernel = queued_on(upstream_port) + queued_on(slow.local_addr().unwrap().port());
    let in_gateway = sent.saturating_sub(in_kernel);
    assert!(
        sent < total && in_gateway <= PER_STREAM + IO_BUFFERS,
        "the upstream wrote {sent} of {total} bytes to a reader that took none; \
         the kernel queues {in_kernel}, so the gateway holds {in_gateway}"
    );
    assert!(
        most_held <= PER_STREAM,
        "one paused stream held {most_held} bytes"
    );
    assert!(
        most_held >= 32 * 1024,
        "the queued parts are charged: {most_held}"
    );
    let grown = rss(gateway.pid()).saturating_sub(rss_before);
    assert!(grown < 8 << 20, "RSS grew by {grown} bytes");
    // Others are served meanwhile.
    assert_eq!(
        gateway.get("/temp/ping").key(KEY_A).send().await.status,
        200
    );

    // Paused streams past the budget: new requests get 503 + Retry-After, nothing grows.
    let more = format!(
        "GET /temp/stream/2?parts=256&size={PART} HTTP/1.1\r\nhost: gw\r\nx-api-key: {KEY_A}\r\nconnection: close\r\n\r\n"
    );
    let mut paused = Vec::new();
    let refused = loop {
        assert!(
            paused.len() < 40,
            "no refusal with {} paused streams",
            paused.len()
        );
        let mut tcp = never_reading(&gateway, more.as_bytes()).await;
        let (head, _) = read_head(&mut tcp).await;
        if head.starts_with("HTTP/1.1 503") {
            break head;
        }
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        paused.push(tcp);
        // This stream has filled its window before the next one asks.
        let streams = paused.len() as u64 + 1;
        eventually("the new stream to fill its window", WAIT, || {
            let admin = admin.clone();
            async move {
                let now = held(&admin).await;
                (now >= streams * (64 * 1024 - PART as u64)).then_some(())
            }
        })
        .await;
    };
    assert!(
        refused.to_ascii_lowercase().contains("retry-after: 1"),
        "{refused}"
    );
    let now = held(&admin).await;
    let streams = paused.len() as u64 + 1;
    assert!(now >= 1 << 20, "refused while {now} bytes were held");
    assert!(
        now <= streams * PER_STREAM,
        "{streams} paused streams hold {now} bytes"
    );
    assert_eq!(
        gateway.get("/temp/ping").key(KEY_A).send().await.status,
        503
    );
    drop(paused);

    // The first reader resumes: every byte, in order, and the terminating chunk.
    let (head, mut raw) = read_head(&mut slow).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    tokio::time::timeout(WAIT, slow.read_to_end(&mut raw))
        .await
        .expect("the stream ends")
        .unwrap();
    let (body, terminated) = dechunk(&raw);
    assert!(terminated);
    assert!(body == event_stream::whole(PARTS, PART), "the body differs");
    eventually("the budget to be given back", WAIT, || {
        let admin = admin.clone();
        async move { (held(&admin).await == 0).then_some(()) }
    })
    .await;
    assert_eq!(
        gateway.get("/temp/ping").key(KEY_A).send().await.status,
        200
    );
}

async fn a_model_stream_error_after_the_first_part_counts_as_an_upstream_error(client: &str) {
    let (_upstream, gateway, admin) = big_stack(client).await;
    let path = "/temp/stream/3?parts=4&size=100&fail_after=2";
    let raw = raw_get(&gateway, path, "*/*").await;
    assert!(raw.head.starts_with("HTTP/1.1 200"), "{}", raw.head);
    assert!(!raw.terminated);
    assert_eq!(raw.body, event_stream::whole(2, 100));
    let line = access_line(&gateway, path).await;
    assert_eq!(line["stream.outcome"], "upstream_error");
    assert_eq!(line["upstreamErrorType"], "ModelStreamError");
    let errors = sample(
        &scrape(&admin).await,
        "sagegate_upstream_errors_total",
        &[("error_type", "ModelStreamError")],
    );
    assert_eq!(errors, Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_stream_error_after_the_first_part_counts_as_an_upstream_error_lean() {
    a_model_stream_error_after_the_first_part_counts_as_an_upstream_error("lean").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_stream_error_after_the_first_part_counts_as_an_upstream_error_sdk() {
    a_model_stream_error_after_the_first_part_counts_as_an_upstream_error("sdk").await;
}

#[test]
fn test_invoke_shows_a_streaming_call_and_refuses_to_try_its_answer() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.yaml");
    std::fs::write(&config, big_config("lean")).unwrap();
    let request = [
        "--stage",
        "temp",
        "--method",
        "GET",
        "--path",
        "/stream/7",
        "--query",
        "parts=2",
    ];
    let out = crate::cli::test_invoke(&config, &request, b"");
    assert!(out.status.success(), "{out:?}");
    let call: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(call["operation"], "InvokeEndpointWithResponseStream");
    assert_eq!(call["endpoint"], "e2e-stream");
    assert_eq!(
        call["headers"]["X-Amzn-SageMaker-Accept"],
        "application/jsonlines"
    );
    assert!(call["headers"].get("Accept").is_none(), "{call}");
    let body: Value = serde_json::from_str(call["body"].as_str().unwrap()).unwrap();
    assert_eq!(body, serde_json::json!({"user_id": 7, "parts": 2}));

    let answered = [&request[..], &["--upstream-status", "200"]].concat();
    let out = crate::cli::test_invoke(&config, &answered, b"");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("GET /temp/stream/7: a streaming route (mode: stream)"),
        "{err}"
    );
    // An error answer (before any part) goes through the usual table: a bare 500 is a 502.
    let failed = [&request[..], &["--upstream-status", "500"]].concat();
    let out = crate::cli::test_invoke(&config, &failed, b"");
    assert!(out.status.success(), "{out:?}");
    let call: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(call["response"]["status"], 502, "{call}");
    assert_eq!(
        call["response"]["body"],
        r#"{"message": "Internal server error"}"#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caching_stage_never_serves_a_stream_from_its_cache() {
    // Stage `temp` caches, and a GET route is cached by default on a caching stage: the streaming
    // route must still call SageMaker for every request.
    let text = config("lean", LIMITS, "").replacen(
        "    variables: { endpoint: e2e-stream }\n",
        "    variables: { endpoint: e2e-stream }\n    cache: { enabled: true, ttl_secs: 300 }\n",
        1,
    );
    assert!(
        text.contains("ttl_secs: 300"),
        "the test turns the stage cache on"
    );
    let recommender = Recommender::start_streaming().await;
    let gateway = Gateway::builder()
        .config_text(&text)
        .keys(KeysYaml::standard())
        .upstream_url(&recommender.url())
        .start()
        .await;
    let path = "/temp/stream/U:7?k=2&inference_type=deterministic";
    for _ in 0..2 {
        let reply = gateway.get(path).key(KEY_A).send().await;
        assert_eq!(reply.status, 200);
        let body = lines(reply.text().as_bytes());
        assert_eq!(body.last().unwrap()["done"], true, "{body:?}");
    }
    eventually(
        "two streamed invocations in the recommender's log",
        WAIT,
        || {
            let ended = recommender.log().matches("outcome=\"complete\"").count();
            async move { (ended == 2).then_some(()) }
        },
    )
    .await;
    for line in gateway.access_log() {
        assert_ne!(line["cacheStatus"], "hit", "{line}");
    }
}
