//! Every row of DESIGN §1's error table, byte for byte, against the real gateway: routing, keys,
//! validation and body size (no upstream call is made), then each upstream outcome, each followed
//! by a good request to show the gateway never goes down.

use std::time::Duration;

use reqwest::Method;

use crate::kit::config::{KEY_A, KEY_DISABLED, KEY_TEMP_ONLY};
use crate::kit::{Gateway, GatewayYaml, Reply, SageMakerReply, Upstream, closed_port};

const SEED: &str = "/temp/recommended-movies/U:114521?k=10&inference_type=deterministic";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_methods_are_missing_authentication_token() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::in_front_of(&upstream).await;
    for path in [
        "/temp/nope",
        "/temp/recommended-movies",
        "/temp/recommended-movies/U:1/extra?k=1&inference_type=x",
        "/temp",
        "/",
    ] {
        let reply = gateway.get(path).key(KEY_A).send().await;
        reply.assert_missing_authentication_token();
    }
    for method in [Method::POST, Method::PUT, Method::DELETE] {
        gateway
            .request(method, SEED)
            .key(KEY_A)
            .send()
            .await
            .assert_missing_authentication_token();
    }
    assert_eq!(upstream.count(), 0, "nothing reached SageMaker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_stage_and_rejected_keys_are_forbidden() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::in_front_of(&upstream).await;
    gateway
        .get("/staging/recommended-movies/U:114521?k=10&inference_type=deterministic")
        .key(KEY_A)
        .send()
        .await
        .assert_forbidden();
    // Missing, empty, unknown, disabled.
    gateway.get(SEED).send().await.assert_forbidden();
    gateway.get(SEED).key("").send().await.assert_forbidden();
    gateway
        .get(SEED)
        .key("e2e-key-nobody-has-this-0000")
        .send()
        .await
        .assert_forbidden();
    gateway
        .get(SEED)
        .key(KEY_DISABLED)
        .send()
        .await
        .assert_forbidden();
    // Stage isolation: a key whose plan covers only `temp` is refused on `prod`.
    gateway
        .recommend("prod", "U:114521", Some(KEY_TEMP_ONLY))
        .await
        .assert_forbidden();
    assert_eq!(upstream.count(), 0, "nothing reached SageMaker");

    // The same keys where they are valid; the header name is case-insensitive.
    gateway
        .recommend("temp", "U:114521", Some(KEY_TEMP_ONLY))
        .await
        .assert_ok();
    gateway
        .get(SEED)
        .header("X-API-Key", KEY_A)
        .send()
        .await
        .assert_ok();
    assert_eq!(upstream.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_required_parameters_are_listed() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::in_front_of(&upstream).await;
    let missing =
        |names: &str| format!(r#"{{"message": "Missing required request parameters: [{names}]"}}"#);
    gateway
        .get("/temp/recommended-movies/U:114521?inference_type=deterministic")
        .key(KEY_A)
        .send()
        .await
        .assert_gateway_error(400, &missing("k"), "BadRequestException");
    gateway
        .get("/temp/recommended-movies/U:114521")
        .key(KEY_A)
        .send()
        .await
        .assert_gateway_error(400, &missing("k, inference_type"), "BadRequestException");
    gateway
        .get("/temp/recommended-movies/U:114521?k=&inference_type=deterministic")
        .key(KEY_A)
        .send()
        .await
        .assert_gateway_error(400, &missing("k"), "BadRequestException");
    assert_eq!(upstream.count(), 0, "nothing reached SageMaker");
}

fn assert_too_long(reply: &Reply) {
    assert_eq!(
        (reply.status, reply.text().as_str()),
        (413, r#"{"message":"Request Too Long"}"#),
        "{reply:?}"
    );
    assert_eq!(reply.header("content-type"), Some("application/json"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_are_refused_before_routing() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::builder()
        .config(GatewayYaml::standard().max_body_bytes(1024))
        .upstream(&upstream)
        .start()
        .await;
    let big = vec![b'x'; 4096];
    for (method, path) in [
        (Method::GET, SEED),
        (Method::POST, SEED),
        (Method::POST, "/temp/no-such-route"),
        (Method::POST, "/no-such-stage/x"),
    ] {
        let reply = gateway
            .request(method, path)
            .key(KEY_A)
            .body(big.clone())
            .send()
            .await;
        assert_too_long(&reply);
    }
    // Without a key, too: the size check comes before everything else.
    assert_too_long(&gateway.get(SEED).body(big.clone()).send().await);
    assert_eq!(upstream.count(), 0, "nothing reached SageMaker");
    // At the limit it passes.
    gateway
        .get(SEED)
        .key(KEY_A)
        .body(vec![b'x'; 1024])
        .send()
        .await
        .assert_ok();
}

/// Scripts `failure` at the upstream, checks the client sees `expect`, then scripts a success and
/// checks the very next request is answered normally.
async fn upstream_failure(failure: SageMakerReply, expect: impl Fn(&Reply)) {
    let upstream = Upstream::replying(failure).await;
    let gateway = Gateway::in_front_of(&upstream).await;
    let reply = gateway.get(SEED).key(KEY_A).send().await;
    expect(&reply);
    assert!(upstream.count() >= 1);
    upstream.reply_with(SageMakerReply::ok_default());
    gateway.get(SEED).key(KEY_A).send().await.assert_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_4xx_reaches_the_client_as_the_model_said_it() {
    upstream_failure(
        SageMakerReply::model_error(400, r#"{"error":"bad k"}"#),
        |r| {
            assert_eq!(
                (r.status, r.text().as_str()),
                (400, r#"{"error":"bad k"}"#),
                "{r:?}"
            );
            assert!(r.header("x-amzn-errortype").is_none(), "{r:?}");
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_404_keeps_its_status() {
    upstream_failure(SageMakerReply::model_error(404, "no such user"), |r| {
        assert_eq!(
            (r.status, r.text().as_str()),
            (404, "no such user"),
            "{r:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_5xx_is_internal_server_error() {
    upstream_failure(
        SageMakerReply::model_error(500, r#"{"error":"boom"}"#),
        Reply::assert_bad_gateway,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sagemaker_throttling_is_too_many_requests() {
    upstream_failure(
        SageMakerReply::throttling(),
        Reply::assert_too_many_requests,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_not_ready_is_too_many_requests() {
    upstream_failure(
        SageMakerReply::model_not_ready(),
        Reply::assert_too_many_requests,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_unavailable_is_internal_server_error() {
    upstream_failure(
        SageMakerReply::service_unavailable(),
        Reply::assert_bad_gateway,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_failure_is_internal_server_error() {
    upstream_failure(
        SageMakerReply::internal_failure(),
        Reply::assert_bad_gateway,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_dependency_530_is_internal_server_error() {
    upstream_failure(
        SageMakerReply::internal_dependency(),
        Reply::assert_bad_gateway,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_reset_is_internal_server_error() {
    upstream_failure(SageMakerReply::Reset, Reply::assert_bad_gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_without_answer_is_internal_server_error() {
    upstream_failure(SageMakerReply::Close, Reply::assert_bad_gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_json_success_is_passed_through() {
    // A 200 whose body is not JSON is the model's business: API Gateway passes it through.
    upstream_failure(SageMakerReply::ok("not json"), |r| {
        assert_eq!((r.status, r.text().as_str()), (200, "not json"), "{r:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_model_is_endpoint_request_timed_out() {
    let upstream =
        Upstream::replying(SageMakerReply::ok_default().after(Duration::from_secs(5))).await;
    let gateway = Gateway::builder()
        .config(GatewayYaml::standard().timeout_ms(300))
        .upstream(&upstream)
        .start()
        .await;
    gateway.get(SEED).key(KEY_A).send().await.assert_timed_out();
    upstream.reply_with(SageMakerReply::ok_default());
    gateway.get(SEED).key(KEY_A).send().await.assert_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connection_is_internal_server_error() {
    let gateway = Gateway::builder()
        .upstream_url(&format!("http://127.0.0.1:{}", closed_port()))
        .start()
        .await;
    for _ in 0..3 {
        gateway
            .get(SEED)
            .key(KEY_A)
            .send()
            .await
            .assert_bad_gateway();
    }
    // Still up: health, and gateway-generated answers.
    gateway
        .get("/temp/nope")
        .send()
        .await
        .assert_missing_authentication_token();
    assert_eq!(gateway.health().await, Some(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_body_over_the_limit_is_refused_while_streaming() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let upstream = Upstream::start().await;
    let gateway = Gateway::builder()
        .config(GatewayYaml::standard().max_body_bytes(1024))
        .upstream(&upstream)
        .start()
        .await;
    // No Content-Length: the limit must hold on the bytes as they arrive (they are read once the
    // request is routed and admitted, so it goes to a route that exists, with a key).
    let mut stream = tokio::net::TcpStream::connect(gateway.addr())
        .await
        .unwrap();
    let head = format!(
        "GET {SEED} HTTP/1.1\r\nHost: gateway\r\nx-api-key: {KEY_A}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = format!("200\r\n{}\r\n", "x".repeat(0x200));
    for _ in 0..4 {
        if stream.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    tokio::time::timeout(crate::kit::WAIT, stream.read_to_end(&mut answer))
        .await
        .expect("an answer")
        .ok();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.ends_with(r#"{"message":"Request Too Long"}"#),
        "{answer}"
    );
    assert_eq!(upstream.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_api_keys_in_one_request_are_forbidden() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::in_front_of(&upstream).await;
    gateway
        .get(SEED)
        .key(KEY_A)
        .key(KEY_TEMP_ONLY)
        .send()
        .await
        .assert_forbidden();
    assert_eq!(upstream.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_guessing_is_throttled_without_blocking_valid_keys() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::in_front_of(&upstream).await;
    // Unknown keys from one address: 403 until the failed-attempt budget (100 a minute by
    // default) is spent, then API Gateway's 429; never anything else.
    let mut statuses = Vec::new();
    for i in 0..130 {
        let reply = gateway
            .get(SEED)
            .key(&format!("e2e-guess-{i:04}-0123456789abcdef"))
            .send()
            .await;
        if reply.status == 403 {
            reply.assert_forbidden();
        } else {
            reply.assert_too_many_requests();
        }
        statuses.push(reply.status);
    }
    // The budget refills slowly (about one attempt every 0.6 s), so a late 403 may still appear
    // after the first 429; what must hold is a run of 403s first, then 429s among the rest.
    let forbidden = statuses.iter().take_while(|s| **s == 403).count();
    assert!(
        forbidden > 0 && statuses[forbidden..].contains(&429),
        "403s, then 429s: {statuses:?}"
    );
    // A valid key from the same address is never blocked by this.
    gateway.get(SEED).key(KEY_A).send().await.assert_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_trace_ids_are_replaced_by_a_generated_one() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::in_front_of(&upstream).await;
    let reply = gateway
        .get(SEED)
        .key(KEY_A)
        .header("x-amzn-trace-id", "Root=1 with spaces")
        .send()
        .await;
    reply.assert_ok();
    let trace = reply.header("x-amzn-trace-id").unwrap();
    assert!(
        crate::kit::client::is_generated_trace_id(trace),
        "{trace:?}"
    );
    assert_eq!(upstream.single().header("x-amzn-trace-id"), Some(trace));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_error_from_sagemaker_is_internal_server_error() {
    // What SageMaker answers for an endpoint that does not exist (or is not InService).
    upstream_failure(
        SageMakerReply::error(
            400,
            "ValidationError",
            r#"{"message":"Endpoint ep-temp of account 123456789012 not found."}"#,
        ),
        Reply::assert_bad_gateway,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_with_another_method_is_missing_authentication_token() {
    // `/healthz` answers GET; any other method is an unknown method, which the contract answers
    // with API Gateway's 403, carrying the request and trace ids like every response.
    let upstream = Upstream::start().await;
    let gateway = Gateway::in_front_of(&upstream).await;
    for method in [Method::POST, Method::DELETE] {
        gateway
            .request(method, "/healthz")
            .send()
            .await
            .assert_missing_authentication_token();
    }
}
