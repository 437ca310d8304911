//! Streamed answers against the real binary: JSON Lines on `/invocations` (chunked, one position
//! per line, the buffered answer's information exactly), the Runtime emulation's
//! `invocations-response-stream` read by the AWS SDK's own event-stream parser, errors before and
//! after the first line, the test knobs, and a client that goes away.

use aws_sdk_sagemakerruntime::error::SdkError;
use aws_sdk_sagemakerruntime::operation::invoke_endpoint_with_response_stream::InvokeEndpointWithResponseStreamError;
use aws_sdk_sagemakerruntime::primitives::Blob;
use aws_sdk_sagemakerruntime::types::ResponseStream;
use aws_sdk_sagemakerruntime::types::error::ResponseStreamError;

use super::*;

const JSONLINES: &str = "application/jsonlines";
/// Upper bound on waiting for one line that is due at once (the next one is a minute away).
const FIRST_LINE_WAIT: Duration = Duration::from_secs(30);

/// A stream read to its end: status, headers, the lines, and whether the body ended cleanly.
struct Read {
    status: u16,
    headers: reqwest::header::HeaderMap,
    lines: Vec<String>,
    clean_end: bool,
}

impl Read {
    fn json_lines(&self) -> Vec<Value> {
        self.lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("line {l:?}: {e}")))
            .collect()
    }

    fn bytes(&self) -> String {
        self.lines.iter().map(|l| format!("{l}\n")).collect()
    }
}

/// POSTs `body` to `/invocations` asking for JSON Lines, with `inference_id` as the request id.
async fn stream(server: &Server, body: &Value, inference_id: &str) -> Read {
    let mut r = server
        .http
        .post(server.url("/invocations"))
        .header("content-type", "application/json")
        .header("accept", JSONLINES)
        .header("x-amzn-sagemaker-inference-id", inference_id)
        .body(body.to_string())
        .send()
        .await
        .expect("send");
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    let mut text = Vec::new();
    let clean_end = loop {
        match r.chunk().await {
            Ok(Some(chunk)) => {
                // One line per HTTP chunk: a frame never holds the end of one line and more.
                if let Some(nl) = chunk.iter().position(|&b| b == b'\n') {
                    assert_eq!(nl, chunk.len() - 1, "a chunk spans lines: {chunk:?}");
                }
                text.extend_from_slice(&chunk);
            }
            Ok(None) => break true,
            Err(_) => break false,
        }
    };
    let text = String::from_utf8(text).expect("UTF-8");
    let complete = text.strip_suffix('\n').unwrap_or(&text);
    let lines = if text.is_empty() {
        Vec::new()
    } else {
        complete.split('\n').map(str::to_owned).collect()
    };
    Read {
        status,
        headers,
        lines,
        clean_end,
    }
}

/// The buffered answer the lines hold: the last line's fields (without `done`) plus
/// `recommendations`, the other lines (without `done`) in order.
fn reassemble(lines: &[Value]) -> Value {
    let (last, items) = lines.split_last().expect("a summary line");
    assert_eq!(last["done"], true, "{last}");
    let mut whole = last.clone();
    let whole_map = whole.as_object_mut().expect("object");
    whole_map.remove("done");
    let recommendations: Vec<Value> = items
        .iter()
        .map(|item| {
            assert_eq!(item["done"], false, "{item}");
            let mut item = item.clone();
            item.as_object_mut().expect("object").remove("done");
            item
        })
        .collect();
    whole_map.insert("recommendations".into(), Value::Array(recommendations));
    whole
}

/// The buffered answer of `/invocations` with `inference_id` as the request id.
async fn buffered(server: &Server, body: &Value, inference_id: &str) -> Value {
    let r = server
        .http
        .post(server.url("/invocations"))
        .header("content-type", "application/json")
        .header("x-amzn-sagemaker-inference-id", inference_id)
        .body(body.to_string())
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    r.json().await.expect("JSON")
}

fn knobs_server_args() -> [&'static str; 4] {
    ["serve", "--listen", "127.0.0.1:0", "--stream-test-knobs"]
}

#[tokio::test]
async fn a_jsonlines_stream_is_the_buffered_answer_one_position_per_line() {
    let model = SampleModel::new(&["--items", "300", "--users", "50"]);
    let server = Server::start(&model.dir).await;
    let mut cases: Vec<Value> = [
        "deterministic",
        "stochastic_plackett_luce",
        "stochastic_plackett_luce_cached",
        "stochastic_gumbel_softmax_trick",
        "stochastic_epsilon_greedy",
    ]
    .iter()
    .map(|policy| {
        json!({"user_id": "U:7", "k": 8, "inference_type": policy, "seed": "18446744073709551557",
               "temperature": 0.5, "epsilon": 0.3})
    })
    .collect();
    // Unknown user (the summary carries `fallback`), ε-greedy that explores (ε = 1), k = 1.
    cases.push(json!({"user_id": "U:404", "k": 3, "inference_type": "stochastic_plackett_luce", "seed": 1}));
    cases.push(json!({"user_id": "U:7", "k": 4, "inference_type": "stochastic_epsilon_greedy", "epsilon": 1, "seed": 2}));
    cases.push(json!({"user_id": "U:7", "k": 1, "inference_type": "stochastic_gumbel_softmax_trick", "seed": 3}));
    for (n, req) in cases.iter().enumerate() {
        let id = format!("stream-case-{n}");
        let read = stream(&server, req, &id).await;
        assert_eq!(read.status, 200, "{req}");
        assert!(read.clean_end, "{req}");
        assert_eq!(read.headers["content-type"], JSONLINES);
        assert_eq!(read.headers["transfer-encoding"], "chunked");
        let lines = read.json_lines();
        let k = req["k"].as_u64().expect("k") as usize;
        assert_eq!(lines.len(), k + 1, "{req}");
        for (j, line) in lines[..k].iter().enumerate() {
            assert_eq!(line["position"], j + 1, "positions arrive in order: {line}");
        }
        // Exactly the buffered answer's information, field for field.
        let whole = reassemble(&lines);
        assert_eq!(whole, buffered(&server, req, &id).await, "{req}");
        // The same seed replays the same stream, byte for byte.
        assert_eq!(stream(&server, req, &id).await.lines, read.lines, "{req}");
        // InvokeEndpoint asking for JSON Lines gets the same lines, buffered.
        let r = server
            .http
            .post(server.url("/endpoints/rec/invocations"))
            .header("content-type", "application/json")
            .header("accept", JSONLINES)
            .header("x-amzn-sagemaker-inference-id", &id)
            .body(req.to_string())
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], JSONLINES);
        assert_eq!(r.text().await.expect("body"), read.bytes(), "{req}");
    }
    let fallback = reassemble(&stream(&server, &cases[5], "x").await.json_lines());
    assert_eq!(fallback["fallback"], "popularity");
    // JSON preferred by quality: the buffered answer.
    let r = server
        .http
        .post(server.url("/invocations"))
        .header("accept", "application/jsonlines;q=0.5, application/json")
        .body(cases[0].to_string())
        .send()
        .await
        .expect("send");
    assert_eq!(r.headers()["content-type"], "application/json");
}

#[tokio::test]
async fn each_line_is_sent_when_drawn_not_when_the_list_is_complete() {
    let model = SampleModel::new(&["--items", "100", "--users", "5"]);
    let server = Server::start_with(&model.dir, &knobs_server_args(), &[]).await;
    // The first line is due at once, every later one a minute after the one before: a server that
    // sent the list when complete would send nothing for six minutes.
    let req = json!({"user_id": "U:2", "k": 5, "inference_type": "stochastic_plackett_luce",
                     "seed": 9, "first_line_delay_ms": 0, "line_delay_ms": 60000});
    let mut r = server
        .http
        .post(server.url("/invocations"))
        .header("accept", JSONLINES)
        .body(req.to_string())
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let first = tokio::time::timeout(FIRST_LINE_WAIT, r.chunk())
        .await
        .expect("the first line arrived while the second was not yet drawn")
        .expect("body")
        .expect("a chunk");
    let line: Value = serde_json::from_slice(&first).expect("one whole JSON line");
    assert_eq!(
        (line["position"].clone(), line["done"].clone()),
        (json!(1), json!(false))
    );

    // The same through the Runtime emulation, read by the SDK: the first PayloadPart.
    let mut out = server
        .sdk()
        .invoke_endpoint_with_response_stream()
        .endpoint_name("rec")
        .accept(JSONLINES)
        .content_type("application/json")
        .body(Blob::new(req.to_string()))
        .send()
        .await
        .expect("stream starts");
    let part = tokio::time::timeout(FIRST_LINE_WAIT, out.body.recv())
        .await
        .expect("the first part arrived while the second was not yet drawn")
        .expect("a valid frame");
    let Some(ResponseStream::PayloadPart(part)) = part else {
        panic!("expected a PayloadPart, got {part:?}");
    };
    let bytes = part.bytes().expect("bytes").as_ref().to_vec();
    assert_eq!(
        String::from_utf8(bytes).expect("UTF-8"),
        String::from_utf8(first.to_vec()).expect("UTF-8"),
        "the same seed gives the same first line on both paths"
    );
}

#[tokio::test]
async fn errors_before_the_first_line_are_plain_statuses_and_knobs_need_the_flag() {
    let model = SampleModel::new(&["--items", "20", "--users", "5"]);
    let server = Server::start(&model.dir).await;
    for (req, field, mentions) in [
        (json!({"user_id": "U:1", "k": 21}), "k", "from 1 to 20"),
        (
            json!({"user_id": "U:1", "inference_type": "stochastic_plackett_luce", "temperature": 1e-320}),
            "temperature",
            "too small",
        ),
        (
            json!({"user_id": "U:1", "line_delay_ms": 10}),
            "line_delay_ms",
            "--stream-test-knobs",
        ),
        (
            json!({"user_id": "U:1", "fail_after_lines": 1}),
            "fail_after_lines",
            "RECOMMENDER_STREAM_TEST_KNOBS",
        ),
    ] {
        let read = stream(&server, &req, "err").await;
        assert_eq!(read.status, 400, "{req}");
        assert_eq!(read.headers["content-type"], "application/json");
        let body = &read.json_lines()[0];
        assert_eq!(body["field"], field, "{body}");
        assert!(
            body["error"].as_str().is_some_and(|m| m.contains(mentions)),
            "{body}"
        );
    }
    // The knobs are refused on buffered answers too, so a test never forgets the flag silently.
    let (status, body) = server
        .invoke(&json!({"user_id": "U:1", "first_line_delay_ms": 10}))
        .await;
    assert_eq!(
        (status, &body["field"]),
        (400, &json!("first_line_delay_ms"))
    );
    // The Runtime path's own validation.
    let r = server
        .http
        .post(server.url("/endpoints/bad_name/invocations-response-stream"))
        .body("{}")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["x-amzn-errortype"], "ValidationError");
}

#[tokio::test]
async fn a_stream_that_breaks_ends_without_the_final_chunk() {
    let model = SampleModel::new(&["--items", "50", "--users", "5"]);
    let server = Server::start_with(&model.dir, &knobs_server_args(), &[]).await;
    let req = json!({"user_id": "U:1", "k": 6, "inference_type": "stochastic_gumbel_softmax_trick", "seed": 4});
    let whole = stream(&server, &req, "whole").await;
    assert_eq!(whole.lines.len(), 7);
    for after in [0, 2, 6] {
        let mut broken = req.clone();
        broken["fail_after_lines"] = json!(after);
        let read = stream(&server, &broken, "whole").await;
        assert_eq!(read.status, 200);
        assert!(
            !read.clean_end,
            "fail_after_lines {after}: the body ended cleanly"
        );
        assert_eq!(
            read.lines,
            whole.lines[..after],
            "the lines before the break arrive"
        );
    }
    // A failure due after the last line never happens.
    let mut late = req.clone();
    late["fail_after_lines"] = json!(7);
    let read = stream(&server, &late, "whole").await;
    assert!(read.clean_end);
    assert_eq!(read.lines, whole.lines);
}

#[tokio::test]
async fn the_aws_sdk_reads_the_response_stream() {
    let model = SampleModel::new(&["--items", "200", "--users", "20"]);
    let server = Server::start_with(&model.dir, &knobs_server_args(), &[]).await;
    let client = server.sdk();
    let req = json!({"user_id": "U:114521", "k": 10, "inference_type": "stochastic_plackett_luce",
                     "temperature": 0.8, "seed": 77});
    let direct = stream(&server, &req, "sdk-stream").await;

    // JSON Lines: one PayloadPart per line, the same bytes as /invocations streams.
    let mut out = client
        .invoke_endpoint_with_response_stream()
        .endpoint_name("recommender-local")
        .content_type("application/json")
        .accept(JSONLINES)
        .custom_attributes("tenant=7")
        .inference_id("sdk-stream")
        .body(Blob::new(req.to_string()))
        .send()
        .await
        .expect("stream starts");
    assert_eq!(out.content_type(), Some(JSONLINES));
    assert_eq!(out.invoked_production_variant(), Some("AllTraffic"));
    assert_eq!(out.custom_attributes(), Some("tenant=7"));
    let mut parts = Vec::new();
    while let Some(event) = out.body.recv().await.expect("valid frames") {
        let ResponseStream::PayloadPart(part) = event else {
            panic!("unexpected event {event:?}");
        };
        parts.push(
            String::from_utf8(part.bytes().expect("bytes").as_ref().to_vec()).expect("UTF-8"),
        );
    }
    let expected: Vec<String> = direct.lines.iter().map(|l| format!("{l}\n")).collect();
    assert_eq!(parts, expected);

    // JSON: the buffered answer in one part.
    let mut out = client
        .invoke_endpoint_with_response_stream()
        .endpoint_name("recommender-local")
        .content_type("application/json")
        .inference_id("sdk-stream")
        .body(Blob::new(req.to_string()))
        .send()
        .await
        .expect("stream starts");
    assert_eq!(out.content_type(), Some("application/json"));
    let Some(ResponseStream::PayloadPart(part)) = out.body.recv().await.expect("a frame") else {
        panic!("expected one PayloadPart");
    };
    let answer: Value =
        serde_json::from_slice(part.bytes().expect("bytes").as_ref()).expect("JSON");
    assert_eq!(answer, reassemble(&direct.json_lines()));
    assert!(out.body.recv().await.expect("clean end").is_none());

    // Bad input before the first part: the typed ModelError, as InvokeEndpoint gives.
    let err = client
        .invoke_endpoint_with_response_stream()
        .endpoint_name("recommender-local")
        .content_type("application/json")
        .accept(JSONLINES)
        .body(Blob::new(r#"{"user_id":"U:1","k":0}"#))
        .send()
        .await
        .expect_err("k out of range");
    let InvokeEndpointWithResponseStreamError::ModelError(model_error) = err.into_service_error()
    else {
        panic!("expected ModelError");
    };
    assert_eq!(model_error.original_status_code(), Some(400));
    let original: Value =
        serde_json::from_str(model_error.original_message().expect("original")).expect("JSON");
    assert_eq!(original["field"], "k");

    // A break after two parts: the exception SageMaker sends, typed by the SDK.
    for (fail_with, kind, code) in [
        ("StreamBroken", "ModelStreamError", Some("StreamBroken")),
        (
            "ModelInvocationTimeExceeded",
            "ModelStreamError",
            Some("ModelInvocationTimeExceeded"),
        ),
        ("InternalStreamFailure", "InternalStreamFailure", None),
    ] {
        let mut broken = req.clone();
        broken["fail_after_lines"] = json!(2);
        broken["fail_with"] = json!(fail_with);
        let mut out = client
            .invoke_endpoint_with_response_stream()
            .endpoint_name("recommender-local")
            .content_type("application/json")
            .accept(JSONLINES)
            .body(Blob::new(broken.to_string()))
            .send()
            .await
            .expect("stream starts");
        for _ in 0..2 {
            let event = out.body.recv().await.expect("a part before the break");
            assert!(
                matches!(event, Some(ResponseStream::PayloadPart(_))),
                "{event:?}"
            );
        }
        let err = out.body.recv().await.expect_err("the break");
        let SdkError::ServiceError(service) = err else {
            panic!("{fail_with}: expected a modelled exception, got {err:?}");
        };
        match (service.err(), kind) {
            (ResponseStreamError::ModelStreamError(e), "ModelStreamError") => {
                assert_eq!(e.error_code(), code);
                assert!(e.message().is_some_and(|m| !m.is_empty()));
            }
            (ResponseStreamError::InternalStreamFailure(e), "InternalStreamFailure") => {
                assert!(e.message().is_some_and(|m| !m.is_empty()));
            }
            (other, _) => panic!("{fail_with}: expected {kind}, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_client_that_goes_away_stops_the_stream() {
    let model = SampleModel::new(&["--items", "200", "--users", "5"]);
    let server =
        Server::start_with(&model.dir, &knobs_server_args(), &[("RUST_LOG", "info")]).await;
    // 101 lines 50 ms apart: about five seconds if nobody left.
    let req = json!({"user_id": "U:1", "k": 100, "inference_type": "stochastic_plackett_luce",
                     "line_delay_ms": 50, "first_line_delay_ms": 0});
    let mut r = server
        .http
        .post(server.url("/invocations"))
        .header("accept", JSONLINES)
        .header("x-amzn-sagemaker-inference-id", "leaver")
        .body(req.to_string())
        .send()
        .await
        .expect("send");
    let first = r.chunk().await.expect("body").expect("a line");
    assert!(first.ends_with(b"\n"));
    drop(r);
    // The server notices when it next writes, stops drawing and logs how the stream ended.
    let deadline = Instant::now() + WAIT;
    let line = loop {
        let logs = server.logs();
        if let Some(line) = logs
            .lines()
            .find(|l| l.contains("request_id=\"leaver\"") && l.contains("outcome="))
        {
            break line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no end-of-stream log line:\n{logs}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(line.contains("outcome=\"client_gone\""), "{line}");
    let lines: usize = line
        .split_whitespace()
        .find_map(|f| f.strip_prefix("lines="))
        .and_then(|n| n.parse().ok())
        .expect("lines=N");
    assert!((1..101).contains(&lines), "{line}");
}
