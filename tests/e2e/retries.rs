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
