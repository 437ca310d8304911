//! The access log: one JSON line per request on stdout, in API Gateway's `$context` names, with
//! the key id and never a key value (nor any other secret) anywhere in the output.

use std::collections::HashSet;

use crate::kit::config::{KEY_A, KEY_DISABLED};
use crate::kit::{Gateway, GatewayYaml, SageMakerReply, Upstream, is_uuid};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_line_per_request_with_context_fields_and_no_key_values() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::builder()
        .config(GatewayYaml::standard().max_body_bytes(1024))
        .upstream(&upstream)
        .start()
        .await;
    let unknown = "e2e-key-guessed-by-someone-0000";
    let mut replies = vec![
        gateway.recommend("temp", "U:114521", Some(KEY_A)).await,
        gateway.recommend("prod", "U:114521", Some(unknown)).await,
        gateway
            .recommend("temp", "U:114521", Some(KEY_DISABLED))
            .await,
        gateway.recommend("temp", "U:114521", None).await,
        gateway.get("/temp/nope").send().await,
        // Refused before routing: logged too.
        gateway
            .get("/temp/nope")
            .body(vec![b'x'; 2048])
            .send()
            .await,
    ];
    upstream.reply_with(SageMakerReply::service_unavailable());
    replies.push(gateway.recommend("temp", "U:114521", Some(KEY_A)).await);

    let ids: HashSet<String> = replies.iter().map(|r| r.request_id()).collect();
    assert_eq!(ids.len(), replies.len(), "request ids are unique");
    for reply in &replies {
        gateway.access_entry(&reply.request_id()).await;
    }
    let log = gateway.access_log();
    let logged: Vec<String> = log
        .iter()
        .map(|l| l["requestId"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        logged.len(),
        replies.len(),
        "one line per request: {log:#?}"
    );
    assert_eq!(logged.iter().cloned().collect::<HashSet<_>>(), ids);

    for reply in &replies {
        let line = log
            .iter()
            .find(|l| l["requestId"] == reply.request_id().as_str())
            .unwrap();
        assert!(is_uuid(line["requestId"].as_str().unwrap()));
        assert_eq!(line["identity.sourceIp"], "127.0.0.1", "{line}");
        assert_eq!(line["httpMethod"], "GET", "{line}");
        assert_eq!(line["status"], reply.status, "{line}");
        assert_eq!(line["responseLength"], reply.body.len(), "{line}");
        assert!(line["responseLatency"].is_u64(), "{line}");
        let time = line["requestTime"].as_str().unwrap_or_default();
        assert!(
            chrono::DateTime::parse_from_str(time, "%d/%b/%Y:%H:%M:%S %z").is_ok(),
            "requestTime {time:?} in CLF"
        );
    }
    let ok = &log[logged
        .iter()
        .position(|id| *id == replies[0].request_id())
        .unwrap()];
    assert_eq!(ok["stage"], "temp", "{ok}");
    assert_eq!(ok["resourcePath"], "/recommended-movies/{user_id}", "{ok}");
    assert_eq!(ok["identity.apiKeyId"], "partner-a", "{ok}");
    assert!(ok["integrationLatency"].is_u64(), "{ok}");
    let disabled = &log[logged
        .iter()
        .position(|id| *id == replies[2].request_id())
        .unwrap()];
    assert_eq!(disabled["identity.apiKeyId"], "partner-off", "{disabled}");
    let unknown_line = &log[logged
        .iter()
        .position(|id| *id == replies[1].request_id())
        .unwrap()];
    assert_eq!(unknown_line["stage"], "prod");
    assert!(
        unknown_line["identity.apiKeyId"].is_null(),
        "{unknown_line}"
    );

    let output = gateway.stdout() + &gateway.stderr();
    for secret in [KEY_A, KEY_DISABLED, unknown] {
        assert!(!output.contains(secret), "key value {secret} in the output");
    }
    assert!(
        !output.contains("AWS4-HMAC-SHA256"),
        "a signature in the output"
    );
}
