//! Upstream faults through [`ChaosProxy`](crate::kit::chaos::ChaosProxy) in front of the real
//! recommender: for each fault, the exact client answer, the cause logged with the request id,
//! the number of attempts the gateway made (counted at the proxy), and service afterwards.
//!
//! Retry rule under test (src/upstream, the SDK's standard retry classifier with
//! `sagemaker.max_attempts: 2`), as measured at the proxy:
//!
//! | fault | client | attempts |
//! |---|---|---|
//! | ModelError 424 | the model's status and body | 1 (never retried) |
//! | ThrottlingException | 429 Too Many Requests | 2 |
//! | ServiceUnavailable 503, InternalFailure 500 | 502 | 2 |
//! | connection reset (mid-body or on a request) | 502 | 2 |
//! | bytes that are not HTTP | 502 | 1 (the SDK does not retry a response it cannot parse) |
//! | hang or delay past the route timeout (1.5 s here) | 504 | 1 (the timeout bounds the whole call) |

use std::time::Duration;

use crate::kit::chaos::{ChaosProxy, Fault};
use crate::kit::config::KEY_A;
use crate::kit::{Gateway, GatewayYaml, Recommender, WAIT, eventually};

const INTERNAL: &str = r#"{"message": "Internal server error"}"#;
const TIMED_OUT: &str = r#"{"message": "Endpoint request timed out"}"#;
const TOO_MANY: &str = r#"{"message":"Too Many Requests"}"#;

/// Sends the seed request under `fault`; checks status, body, attempts, the log, and recovery.
async fn under(fault: Fault, status: u16, body: &str, attempts: std::ops::RangeInclusive<usize>) {
    let recommender = Recommender::start().await;
    let proxy = ChaosProxy::start(&recommender.url()).await;
    let gateway = Gateway::builder()
        .config(GatewayYaml::standard().timeout_ms(1500).max_attempts(2))
        .upstream_url(&proxy.url())
        .start()
        .await;
    // Healthy first: the proxy relays the recommender's answer.
    gateway
        .recommend("temp", "U:1", Some(KEY_A))
        .await
        .assert_ok();
    let before = proxy.attempts();
    proxy.set(fault.clone());
    let reply = gateway.recommend("temp", "U:1", Some(KEY_A)).await;
    let made = proxy.attempts() - before;
    assert_eq!(
        (reply.status, reply.text().as_str()),
        (status, body),
        "{fault:?}: {reply:?}"
    );
    assert!(
        attempts.contains(&made),
        "{fault:?}: {made} attempts, expected {attempts:?}"
    );
    if status != 200 {
        let id = reply.request_id();
        let line = eventually("the failure log line", WAIT, || {
            let found = gateway
                .log_lines()
                .into_iter()
                .find(|l| l["requestId"] == id.as_str() && l["message"] == "request failed");
            async move { found }
        })
        .await;
        assert!(
            line["cause"].as_str().is_some_and(|c| !c.is_empty()),
            "{fault:?}: {line}"
        );
    }
    // And it keeps serving.
    proxy.set(Fault::Pass);
    gateway
        .recommend("temp", "U:1", Some(KEY_A))
        .await
        .assert_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_error_reaches_the_client_and_is_never_retried() {
    let message = r#"{"error":"k must be positive"}"#;
    under(Fault::model_error(400, message), 400, message, 1..=1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_429_after_one_retry() {
    under(Fault::throttling(), 429, TOO_MANY, 2..=2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_unavailable_is_502_after_one_retry() {
    under(Fault::service_unavailable(), 502, INTERNAL, 2..=2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_failure_is_502_after_one_retry() {
    under(Fault::internal_failure(), 502, INTERNAL, 2..=2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_mid_body_is_502_after_one_retry() {
    under(Fault::ResetMidBody, 502, INTERNAL, 2..=2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_502_and_not_retried() {
    under(Fault::Garbage, 502, INTERNAL, 1..=1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_connections_are_502_after_one_retry() {
    under(Fault::Refuse, 502, INTERNAL, 2..=2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_upstream_is_504_within_the_route_timeout() {
    under(Fault::Hang, 504, TIMED_OUT, 1..=1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upstream_is_504_without_a_retry_past_the_timeout() {
    under(Fault::Delay(Duration::from_secs(5)), 504, TIMED_OUT, 1..=1).await;
}
