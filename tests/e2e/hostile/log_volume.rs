//! Log volume a caller without a valid key controls: one line per request (DESIGN "Edge rules"),
//! the access line, which carries the cause of the refusal. Before, every refusal wrote a second
//! line (`request failed`), doubling what anyone on the internet could write into the operator's
//! logs.

use crate::kit::config::{KEY_A, KEY_DISABLED};
use crate::kit::{Gateway, Upstream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_without_a_valid_key_costs_one_log_line() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::in_front_of(&upstream).await;
    let route = "/temp/recommended-movies/U:1?k=1&inference_type=deterministic";
    let refusals = [
        (
            "unknown key",
            gateway.get(route).key("e2e-unknown-key-0123456789"),
        ),
        ("disabled key", gateway.get(route).key(KEY_DISABLED)),
        ("missing key", gateway.get(route)),
        (
            "unknown stage",
            gateway.get("/nostage/recommended-movies/U:1"),
        ),
        ("unknown route", gateway.get("/temp/nothing-here")),
        (
            "dot segment",
            gateway.get("/temp/recommended-movies/x%2F..%2Fy"),
        ),
    ];
    let mut refused = Vec::new();
    for (what, request) in refusals {
        let reply = request.send().await;
        assert!(reply.status >= 400, "{what}: {}", reply.status);
        refused.push((what, reply.request_id()));
    }
    // Lines are written in order, each before its answer: once a later request's line is out,
    // every line of the refusals is.
    let later = gateway.get(route).key(KEY_A).send().await;
    later.assert_ok();
    gateway.access_entry(&later.request_id()).await;
    let lines = gateway.log_lines();
    for (what, id) in refused {
        let mine: Vec<_> = lines
            .iter()
            .filter(|l| l["requestId"] == id.as_str())
            .collect();
        assert_eq!(mine.len(), 1, "{what}: one log line: {mine:?}");
        assert!(
            mine[0]["cause"].as_str().is_some_and(|c| !c.is_empty()),
            "{what}: the access line names the cause: {}",
            mine[0]
        );
    }

    // A caller with a valid key whose request fails still gets its warning with the cause.
    upstream.reply_with(crate::kit::SageMakerReply::internal_failure());
    let failed = gateway.get(route).key(KEY_A).send().await;
    failed.assert_bad_gateway();
    let id = failed.request_id();
    gateway.access_entry(&id).await;
    crate::kit::eventually("the warning of a failed call", crate::kit::WAIT, || {
        let warned = gateway
            .log_lines()
            .into_iter()
            .any(|l| l["requestId"] == id.as_str() && l["message"] == "request failed");
        async move { warned.then_some(()) }
    })
    .await;
    assert!(upstream.count() >= 1);
}
