//! Retries are bounded by `sagemaker.max_attempts` and happen only where they can help: a 5xx is
//! tried again, a model's 4xx never (counted at the in-test upstream).

use crate::kit::config::KEY_A;
use crate::kit::{Gateway, GatewayYaml, SageMakerReply, Upstream};

async fn attempts(max_attempts: u32, reply: SageMakerReply) -> (u16, usize) {
    let upstream = Upstream::replying(reply).await;
    let gateway = Gateway::builder()
        .config(GatewayYaml::standard().max_attempts(max_attempts))
        .upstream(&upstream)
        .start()
        .await;
    let r = gateway.recommend("temp", "U:114521", Some(KEY_A)).await;
    (r.status, upstream.count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_unavailable_is_tried_exactly_max_attempts_times() {
    assert_eq!(
        attempts(2, SageMakerReply::service_unavailable()).await,
        (502, 2)
    );
    assert_eq!(
        attempts(1, SageMakerReply::service_unavailable()).await,
        (502, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_errors_are_never_retried() {
    let reply = SageMakerReply::model_error(400, r#"{"error":"bad k"}"#);
    assert_eq!(attempts(2, reply.clone()).await, (400, 1));
    let reply = SageMakerReply::model_error(500, r#"{"error":"boom"}"#);
    assert_eq!(attempts(2, reply).await, (502, 1));
}

/// An HTTP/1.1 server may close a kept-alive connection whenever it considers it idle, so the
/// gateway's pools (one per worker) hold connections the upstream has closed. Such a connection is
/// never handed a call: with no retry allowed, every call answers 200, on either client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_connection_the_upstream_closed_costs_no_call() {
    const CALLS: usize = 20;
    for client in ["lean", "sdk"] {
        let upstream = Upstream::replying(SageMakerReply::ok_default().then_close()).await;
        let gateway = Gateway::builder()
            .config(GatewayYaml::standard().client(client).max_attempts(1))
            .upstream(&upstream)
            .start()
            .await;
        for call in 0..CALLS {
            let r = gateway.recommend("temp", "U:114521", Some(KEY_A)).await;
            assert_eq!(r.status, 200, "{client}, call {call}: {}", r.text());
        }
        assert_eq!(upstream.count(), CALLS, "{client}: one attempt per call");
    }
}
