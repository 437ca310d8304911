//! What SageMaker receives: `POST /endpoints/<endpoint of the stage>/invocations`, the route's
//! content type and accept, the request id as custom attributes and inference id, the trace id,
//! the default JSON body (path and query parameters, numbers as numbers), a valid SigV4 signature;
//! and what the client gets back: the model's body and content type, the same trace id.

use crate::kit::client::is_generated_trace_id;
use crate::kit::config::{ENDPOINT_PROD, ENDPOINT_TEMP, KEY_A};
use crate::kit::{Gateway, SageMakerReply, Upstream};

const TRACE: &str = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoke_endpoint_request_is_what_sagemaker_expects() {
    let model_body = r#"{"recommendations":[{"item_id":"M:7","score":1.25}],"user_id":"U:114521"}"#;
    let upstream = Upstream::replying(SageMakerReply::ok(model_body)).await;
    let gateway = Gateway::in_front_of(&upstream).await;

    let reply = gateway
        .get("/temp/recommended-movies/U:114521?k=10&inference_type=deterministic")
        .key(KEY_A)
        .header("x-amzn-trace-id", TRACE)
        .header("authorization", "Bearer client-token-never-forwarded")
        .header("x-client-secret", "never-forwarded")
        .send()
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.text(), model_body, "the model's body, byte for byte");
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(
        reply.header("x-amzn-trace-id"),
        Some(TRACE),
        "trace id propagated"
    );

    let got = upstream.single();
    assert_eq!(got.method, "POST");
    assert_eq!(got.path, format!("/endpoints/{ENDPOINT_TEMP}/invocations"));
    assert_eq!(got.header("content-type"), Some("application/json"));
    assert_eq!(got.header("accept"), Some("application/json"));
    let request_id = reply.request_id();
    assert_eq!(
        got.header("x-amzn-sagemaker-custom-attributes"),
        Some(request_id.as_str())
    );
    assert_eq!(
        got.header("x-amzn-sagemaker-inference-id"),
        Some(request_id.as_str())
    );
    assert_eq!(got.header("x-amzn-trace-id"), Some(TRACE));
    assert_eq!(
        String::from_utf8_lossy(&got.body),
        r#"{"user_id":"U:114521","k":10,"inference_type":"deterministic"}"#
    );
    assert!(
        got.header("x-api-key").is_none(),
        "the API key never reaches SageMaker"
    );
    let auth = got.header("authorization").unwrap_or_default();
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=test/")
            && auth.contains("/us-east-1/sagemaker/aws4_request, SignedHeaders=")
            && auth.contains(";host;")
            && auth.contains("x-amz-date"),
        "Authorization header shape: {auth}"
    );
    got.signature
        .clone()
        .unwrap_or_else(|e| panic!("SigV4: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prod_stage_uses_its_own_endpoint_and_decoded_values() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::in_front_of(&upstream).await;

    let reply = gateway
        .get("/prod/recommended-movies/U%3A114521/?inference_type=stochastic_plackett_luce&k=5&seed=007&temperature=0.5")
        .key(KEY_A)
        .send()
        .await;
    reply.assert_ok();
    let trace = reply.header("x-amzn-trace-id").unwrap().to_owned();
    assert!(
        is_generated_trace_id(&trace),
        "generated trace id {trace:?}"
    );

    let got = upstream.single();
    assert_eq!(got.path, format!("/endpoints/{ENDPOINT_PROD}/invocations"));
    assert_eq!(got.header("x-amzn-trace-id"), Some(trace.as_str()));
    let body = got.json();
    assert_eq!(
        body,
        serde_json::json!({
            "user_id": "U:114521",
            "inference_type": "stochastic_plackett_luce",
            "k": 5,
            "seed": "007",
            "temperature": 0.5,
        }),
        "decoded; JSON numbers as numbers (`007` is not one)"
    );
    got.signature
        .clone()
        .unwrap_or_else(|e| panic!("SigV4: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_are_serialized_into_the_body_never_spliced() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::in_front_of(&upstream).await;
    // user_id = `U","k":99,"x":"` and inference_type = `a\b"c` would break a spliced body.
    gateway
        .get("/temp/recommended-movies/U%22%2C%22k%22%3A99%2C%22x%22%3A%22?k=10&inference_type=a%5Cb%22c")
        .key(KEY_A)
        .send()
        .await
        .assert_ok();
    let body = upstream.single().json();
    assert_eq!(
        body,
        serde_json::json!({
            "user_id": "U\",\"k\":99,\"x\":\"",
            "k": 10,
            "inference_type": "a\\b\"c",
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_each_get_their_own_ids() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::in_front_of(&upstream).await;
    let replies = futures_util::future::join_all((0..40).map(|i| {
        gateway
            .get(&format!(
                "/temp/recommended-movies/U:{i}?k=10&inference_type=deterministic"
            ))
            .key(KEY_A)
            .send()
    }))
    .await;
    let mut ids = std::collections::HashSet::new();
    for r in &replies {
        r.assert_ok();
        assert!(ids.insert(r.request_id()), "duplicate request id");
    }
    let received = upstream.received();
    assert_eq!(received.len(), 40);
    for got in &received {
        let user = got.json()["user_id"].as_str().unwrap().to_owned();
        let id = got.header("x-amzn-sagemaker-inference-id").unwrap();
        assert!(
            ids.contains(id),
            "inference id {id} of {user} is a request id"
        );
        got.signature
            .clone()
            .unwrap_or_else(|e| panic!("SigV4: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_model_answer_arrives_intact() {
    let items: Vec<String> = (0..20_000)
        .map(|i| format!(r#"{{"item_id":"M:{i}","score":{i}.5}}"#))
        .collect();
    let body = format!(r#"{{"recommendations":[{}]}}"#, items.join(","));
    let upstream = Upstream::replying(SageMakerReply::ok(&body)).await;
    let gateway = Gateway::in_front_of(&upstream).await;
    let reply = gateway
        .get("/temp/recommended-movies/U:114521?k=10&inference_type=deterministic")
        .key(KEY_A)
        .send()
        .await;
    assert_eq!(reply.status, 200);
    assert!(
        reply.body == body.as_bytes(),
        "{} bytes, not {}",
        reply.body.len(),
        body.len()
    );
}
