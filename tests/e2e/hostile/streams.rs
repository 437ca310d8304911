//! Streaming routes (`mode: stream`) against a hostile reader or a broken event stream: a client
//! that takes nothing must not hold SageMaker's call past `max_duration_ms`, and what broke a
//! stream on the gateway's side of SageMaker (a frame with a bad checksum, a body that ends inside
//! a frame, which the SDK reports by quoting every byte it could not decode) reaches the log, cut
//! short, never the client's error event.

use serde_json::Value;

use super::slow_readers::never_reading;
use crate::kit::config::KEY_A;
use crate::kit::upstream::{exception_frame, payload_part};
use crate::kit::{Gateway, KeysYaml, SageMakerReply, Upstream, WAIT, eventually};

/// The one request path of these tests.
const PATH: &str = "/temp/stream/U:1";

/// The streaming tests' gateway (`GET /{stage}/stream/{user_id}`) on `client` with stream limits
/// `limits`, in front of `upstream`.
async fn streaming_gateway(upstream: &Upstream, client: &str, limits: &str) -> Gateway {
    Gateway::builder()
        .config_text(&crate::streaming::config(client, limits, ""))
        .keys(KeysYaml::standard())
        .upstream(upstream)
        .start()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_takes_nothing_does_not_hold_the_call_past_max_duration() {
    // Parts under 2 KiB fill the relay's 32-place queue before its 64 KiB window (once the
    // connection's buffers, a few MiB on loopback, are full): before the fix the relay waited for
    // a place in the queue without looking at the clock, so a client that never read held
    // SageMaker's call (and its connection) open for as long as it kept its own.
    let upstream = Upstream::replying(SageMakerReply::event_stream(&[b'.'; 1500], 100_000)).await;
    let limits = "first_byte_timeout_ms: 3000, idle_timeout_ms: 3000, max_duration_ms: 3000";
    let gateway = streaming_gateway(&upstream, "lean", limits).await;
    let request = format!("GET {PATH} HTTP/1.1\r\nhost: gw\r\nx-api-key: {KEY_A}\r\n\r\n");
    let reader = never_reading(&gateway, request.as_bytes()).await;
    eventually(
        "the gateway to drop SageMaker's stream at max_duration_ms",
        WAIT,
        || {
            let dropped = upstream.stream_dropped();
            async move { dropped.then_some(()) }
        },
    )
    .await;
    drop(reader);
    eventually("the stream's access line", WAIT, || {
        let line = gateway.access_log().into_iter().find(|l| l["path"] == PATH);
        async move { line }
    })
    .await;
}

/// The SSE body of `GET /temp/stream`, whole.
async fn sse_body(gateway: &Gateway) -> String {
    let resp = gateway
        .get(PATH)
        .key(KEY_A)
        .header("accept", "text/event-stream")
        .send_raw()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap()
}

/// A frame of 4 KiB of `x` after the first part, broken by `breaking`.
/// The data of the `event: error` that ends an SSE `body`.
fn error_event(body: &str) -> Value {
    let error = body
        .split_terminator("\n\n")
        .last()
        .and_then(|e| e.strip_prefix("event: error\ndata: "))
        .unwrap_or_else(|| panic!("an error event last: {body}"));
    serde_json::from_str(error).unwrap()
}

async fn a_broken_frame_is_told_in_the_log_not_to_the_client(
    client: &str,
    breaking: fn(&mut Vec<u8>),
    told: &str,
) {
    let mut bad = payload_part(&[b'x'; 4096]);
    breaking(&mut bad);
    let upstream =
        Upstream::replying(SageMakerReply::event_stream(b"{\"a\":1}\n", 1).then_raw(bad)).await;
    let limits = "first_byte_timeout_ms: 10000, idle_timeout_ms: 10000, max_duration_ms: 60000";
    let gateway = streaming_gateway(&upstream, client, limits).await;
    let body = sse_body(&gateway).await;
    let error = error_event(&body);
    assert_eq!(error["ErrorCode"], "StreamBroken");
    assert_eq!(
        error["Message"],
        "The response stream from SageMaker broke before it was complete."
    );
    assert!(!body.contains("xxxx"), "the undecoded bytes quoted: {body}");
    let cause = eventually("the stream's warning with its cause", WAIT, || {
        let cause = gateway
            .log_lines()
            .into_iter()
            .find(|l| l["message"] == "request failed")
            .and_then(|l| l["cause"].as_str().map(str::to_owned));
        async move { cause }
    })
    .await;
    assert!(
        cause.starts_with("stream ended: upstream_error: StreamBroken: ") && cause.contains(told),
        "{cause}"
    );
    assert!(cause.chars().count() < 1200, "{cause}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_with_a_bad_checksum_is_told_in_the_log_not_to_the_client_lean() {
    let flip_last = |frame: &mut Vec<u8>| {
        if let Some(b) = frame.last_mut() {
            *b ^= 1;
        }
    };
    a_broken_frame_is_told_in_the_log_not_to_the_client("lean", flip_last, "checksum").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_ending_inside_a_frame_is_told_in_the_log_not_to_the_client_sdk() {
    let halve = |frame: &mut Vec<u8>| frame.truncate(frame.len() / 2);
    a_broken_frame_is_told_in_the_log_not_to_the_client("sdk", halve, "end of stream").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exception_with_a_huge_message_writes_no_huge_line_or_event() {
    // Before the first part (an ordinary 502) and after it (the SSE error event): the message is
    // cut to 1024 characters in both, as a buffered answer's detail is.
    let huge = "M".repeat(1024 * 1024);
    let upstream = Upstream::replying(
        SageMakerReply::event_stream(b"", 0).then_raw(exception_frame("ModelStreamError", &huge)),
    )
    .await;
    let limits = "first_byte_timeout_ms: 10000, idle_timeout_ms: 10000, max_duration_ms: 60000";
    let gateway = streaming_gateway(&upstream, "lean", limits).await;
    let reply = gateway.get(PATH).key(KEY_A).send().await;
    assert_eq!(reply.status, 502);
    assert_eq!(reply.text(), r#"{"message": "Internal server error"}"#);
    let line = eventually("the 502's warning", WAIT, || {
        let line = gateway
            .stdout()
            .lines()
            .find(|l| l.contains("request failed"))
            .map(str::to_owned);
        async move { line }
    })
    .await;
    assert!(line.contains("ModelStreamError"), "{line}");
    assert!(line.len() < 2048, "a {} byte log line", line.len());

    upstream.reply_with(
        SageMakerReply::event_stream(b"{\"a\":1}\n", 1)
            .then_raw(exception_frame("ModelStreamError", &huge)),
    );
    let body = sse_body(&gateway).await;
    let error = error_event(&body);
    assert_eq!(error["ErrorCode"], "StreamBroken");
    assert_eq!(error["Message"].as_str().map(str::len), Some(1024));
}
