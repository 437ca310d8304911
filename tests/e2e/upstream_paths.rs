//! The two SageMaker clients (`sagemaker.client: lean`, the default, and `sdk`) are
//! interchangeable: the same request through each reaches the same upstream as the same bytes
//! (method, path and query, every signed header, body), each with a valid SigV4 signature over the
//! same signed-header list (session token included), and every scripted SageMaker answer gives the
//! client the same status and body after the same number of attempts.
//!
//! What may differ, by design: `x-amz-date` (signing time), the user agents (each names its
//! client), the SDK's own unsigned bookkeeping headers (`amz-sdk-invocation-id`,
//! `amz-sdk-request`), and the request id each gateway assigns (sent as custom attributes and
//! inference id, so checked against each gateway's own answer).

use crate::kit::config::KEY_A;
use crate::kit::upstream::Received;
use crate::kit::{Gateway, GatewayYaml, SageMakerReply, Upstream};

const TRACE: &str = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
const SESSION_TOKEN: &str = "e2e-session-token/with+odd=characters";

/// Headers whose values legitimately differ between the two clients.
const PER_CLIENT: [&str; 5] = [
    "x-amz-date",
    "x-amz-user-agent",
    "user-agent",
    "authorization",
    "amz-sdk-invocation-id",
];

async fn gateway(client: &'static str, upstream: &Upstream) -> Gateway {
    Gateway::builder()
        .config(GatewayYaml::standard().client(client).max_attempts(2))
        .upstream(upstream)
        .env("AWS_SESSION_TOKEN", SESSION_TOKEN)
        .start()
        .await
}

fn signed_headers(got: &Received) -> Vec<String> {
    let auth = got.header("authorization").unwrap_or_default();
    let list = auth
        .split(", ")
        .find_map(|p| p.strip_prefix("SignedHeaders="))
        .unwrap_or_else(|| panic!("no SignedHeaders in {auth:?}"));
    list.split(';').map(str::to_owned).collect()
}

/// Sends `path` through `gw`; returns the gateway's request id and what the upstream received.
async fn through(gw: &Gateway, upstream: &Upstream, path: &str) -> (String, Received) {
    let before = upstream.count();
    let reply = gw
        .get(path)
        .key(KEY_A)
        .header("x-amzn-trace-id", TRACE)
        .send()
        .await;
    reply.assert_ok();
    let received = upstream.received();
    assert_eq!(received.len(), before + 1, "one attempt");
    (reply.request_id(), received[before].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_clients_send_the_same_signed_request() {
    let upstream = Upstream::start().await;
    let sdk = gateway("sdk", &upstream).await;
    let lean = gateway("lean", &upstream).await;
    for path in [
        "/temp/recommended-movies/U:114521?k=10&inference_type=deterministic",
        "/prod/recommended-movies/U%3A7/?inference_type=stochastic_plackett_luce&k=5&seed=007",
    ] {
        let (sdk_id, a) = through(&sdk, &upstream, path).await;
        let (lean_id, b) = through(&lean, &upstream, path).await;
        for (got, id, client) in [(&a, &sdk_id, "sdk"), (&b, &lean_id, "lean")] {
            got.signature
                .clone()
                .unwrap_or_else(|e| panic!("{client}: SigV4: {e}"));
            assert_eq!(
                got.header("x-amzn-sagemaker-custom-attributes"),
                Some(id.as_str()),
                "{client}"
            );
            assert_eq!(
                got.header("x-amzn-sagemaker-inference-id"),
                Some(id.as_str()),
                "{client}"
            );
            assert_eq!(
                got.header("x-amz-security-token"),
                Some(SESSION_TOKEN),
                "{client}"
            );
            assert!(
                got.header("x-amz-user-agent")
                    .is_some_and(|v| !v.is_empty()),
                "{client}"
            );
        }
        assert_eq!(a.method, b.method, "{path}");
        assert_eq!(a.path, b.path, "{path}: path and query");
        assert_eq!(a.body, b.body, "{path}: body");
        let (sa, sb) = (signed_headers(&a), signed_headers(&b));
        assert_eq!(sa, sb, "{path}: signed header lists");
        for name in &sa {
            if PER_CLIENT.contains(&name.as_str())
                || name == "x-amzn-sagemaker-custom-attributes"
                || name == "x-amzn-sagemaker-inference-id"
            {
                continue;
            }
            assert_eq!(
                a.header(name),
                b.header(name),
                "{path}: signed header {name}"
            );
        }
        // Unsigned headers that carry meaning: the trace id.
        assert_eq!(a.header("x-amzn-trace-id"), Some(TRACE));
        assert_eq!(b.header("x-amzn-trace-id"), Some(TRACE));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_clients_answer_every_sagemaker_outcome_alike() {
    let upstream = Upstream::start().await;
    let sdk = gateway("sdk", &upstream).await;
    let lean = gateway("lean", &upstream).await;
    let replies = [
        SageMakerReply::ok(r#"{"recommendations":[]}"#),
        SageMakerReply::model_error(400, r#"{"error":"bad k"}"#),
        SageMakerReply::model_error(404, r#"{"error":"no user"}"#),
        SageMakerReply::model_error(500, r#"{"error":"boom"}"#),
        SageMakerReply::throttling(),
        SageMakerReply::model_not_ready(),
        SageMakerReply::service_unavailable(),
        SageMakerReply::internal_failure(),
        SageMakerReply::internal_dependency(),
        SageMakerReply::error(400, "ValidationError", r#"{"message":"bad"}"#),
        SageMakerReply::Close,
        SageMakerReply::Reset,
    ];
    for reply in replies {
        upstream.reply_with(reply.clone());
        let mut seen = Vec::new();
        for gw in [&sdk, &lean] {
            let before = upstream.count();
            let r = gw.recommend("temp", "U:1", Some(KEY_A)).await;
            seen.push((
                r.status,
                r.text(),
                r.header("content-type").map(str::to_owned),
                upstream.count() - before,
            ));
        }
        assert_eq!(
            seen[0], seen[1],
            "{reply:?}: sdk vs lean (status, body, type, attempts)"
        );
    }
}

/// An `https://` endpoint that accepts TCP connections and never answers the TLS handshake: the
/// connect timeout (1 s in the test config) bounds TCP *and* TLS set-up, the timed-out connection
/// is retried once like any transport failure, and the client gets 502 well inside the route's
/// 10 s timeout — with either client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_clients_bound_the_tls_handshake_by_the_connect_timeout() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            held.push(stream); // read nothing, answer nothing, close nothing
        }
    });
    for client in ["sdk", "lean"] {
        let gw = Gateway::builder()
            .config(GatewayYaml::standard().client(client).max_attempts(2))
            .upstream_url(&format!("https://127.0.0.1:{port}"))
            .start()
            .await;
        let before = accepted.load(Ordering::SeqCst);
        let r = gw.recommend("temp", "U:1", Some(KEY_A)).await;
        assert_eq!(
            (r.status, r.text().as_str()),
            (502, r#"{"message": "Internal server error"}"#),
            "{client}"
        );
        assert_eq!(
            accepted.load(Ordering::SeqCst) - before,
            2,
            "{client}: one connection per attempt"
        );
    }
    silent.abort();
}

/// SageMaker's routing headers, each from a different kind of source.
fn routed(client: &'static str) -> GatewayYaml {
    GatewayYaml::standard()
        .client(client)
        .max_attempts(2)
        .integration_field("target_model", "method.request.header.x-model")
        .integration_field(
            "inference_component_name",
            "method.request.querystring.component",
        )
        .integration_field("target_container_hostname", "\"'container-2'\"")
        .integration_field("session_id", "method.request.header.x-session")
        .integration_field("enable_explanations", "\"'`true`'\"")
}

const ROUTED: &str =
    "/temp/recommended-movies/U:1?k=3&inference_type=deterministic&component=ic-blue-2";

async fn routed_gateway(client: &'static str, upstream: &Upstream) -> Gateway {
    Gateway::builder()
        .config(routed(client))
        .upstream(upstream)
        .env("SAGEGATE_ADMIN_LISTEN", "127.0.0.1:0")
        .start()
        .await
}

/// Every routing header reaches SageMaker from both clients, signed, with the same value; SageMaker's
/// session answer comes back to the client; the variant that answered is in the access log line
/// and labels the integration latency on /metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_clients_send_the_routing_headers_and_return_the_session() {
    use crate::metrics::{admin_url, sample, scrape};
    let upstream = Upstream::start().await;
    let new_session = "sess-7f3a; Expires=2026-12-05T08:00:00Z";
    upstream.reply_with(
        SageMakerReply::ok(r#"{"recommendations":[]}"#)
            .with_header("x-Amzn-Invoked-Production-Variant", "blue-2")
            .with_header("X-Amzn-SageMaker-New-Session-Id", new_session)
            .with_header("X-Amzn-SageMaker-Closed-Session-Id", "sess-old"),
    );
    let expected = [
        ("x-amzn-sagemaker-target-model", "models/m-2.tar.gz"),
        ("x-amzn-sagemaker-inference-component", "ic-blue-2"),
        ("x-amzn-sagemaker-target-container-hostname", "container-2"),
        ("x-amzn-sagemaker-session-id", "NEW_SESSION"),
        ("x-amzn-sagemaker-enable-explanations", "`true`"),
    ];
    let mut seen = Vec::new();
    for client in ["sdk", "lean"] {
        let gw = routed_gateway(client, &upstream).await;
        let before = upstream.count();
        let reply = gw
            .get(ROUTED)
            .key(KEY_A)
            .header("x-model", "models/m-2.tar.gz")
            .header("x-session", "NEW_SESSION")
            .send()
            .await;
        reply.assert_ok();
        assert_eq!(
            reply.header("x-amzn-sagemaker-new-session-id"),
            Some(new_session),
            "{client}"
        );
        assert_eq!(
            reply.header("x-amzn-sagemaker-closed-session-id"),
            Some("sess-old"),
            "{client}"
        );
        let got = upstream.received()[before].clone();
        got.signature
            .clone()
            .unwrap_or_else(|e| panic!("{client}: SigV4: {e}"));
        let signed = signed_headers(&got);
        for (name, value) in expected {
            assert_eq!(got.header(name), Some(value), "{client}: {name}");
            assert!(signed.iter().any(|s| s == name), "{client}: {name} signed");
        }
        let line = gw.access_entry(&reply.request_id()).await;
        assert_eq!(
            line["invokedProductionVariant"], "blue-2",
            "{client}: {line}"
        );
        let metrics = scrape(&admin_url(&gw)).await;
        assert_eq!(
            sample(
                &metrics,
                "sagegate_integration_duration_seconds",
                &[
                    ("stage", "temp"),
                    ("route", "/recommended-movies/{user_id}"),
                    ("variant", "blue-2"),
                ],
            ),
            Some(1.0),
            "{client}"
        );
        seen.push(signed);
    }
    assert_eq!(seen[0], seen[1], "signed header lists, sdk vs lean");
}

/// A routing header SageMaker would refuse is the client's 400, naming the header, before any call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_routing_header_is_refused_before_the_call() {
    let upstream = Upstream::start().await;
    let gw = routed_gateway("lean", &upstream).await;
    let long_model = "m".repeat(1025);
    for (session, model, named) in [
        (
            "abc; Expires=never",
            "m.tar.gz",
            "X-Amzn-SageMaker-Session-Id",
        ),
        ("a_b", "m.tar.gz", "X-Amzn-SageMaker-Session-Id"),
        (
            "NEW_SESSION",
            long_model.as_str(),
            "X-Amzn-SageMaker-Target-Model",
        ),
    ] {
        let value = (session, model.len());
        let r = gw
            .get(ROUTED)
            .key(KEY_A)
            .header("x-session", session)
            .header("x-model", model)
            .send()
            .await;
        assert_eq!(r.status, 400, "{value:?}: {}", r.text());
        assert!(r.text().contains(named), "{value:?}: {}", r.text());
    }
    // From the query string, decoded: an underscore, and a CR LF that would splice a header.
    for component in ["ic_blue", "ic%0D%0AX-Injected:%201"] {
        let r = gw
            .get(&ROUTED.replace("ic-blue-2", component))
            .key(KEY_A)
            .header("x-model", "m.tar.gz")
            .send()
            .await;
        assert_eq!(r.status, 400, "{component}: {}", r.text());
        assert!(
            r.text().contains("X-Amzn-SageMaker-Inference-Component"),
            "{component}: {}",
            r.text()
        );
    }
    assert_eq!(upstream.count(), 0, "no call was made");
}

/// The local stack opens a stateful session as SageMaker does: `NEW_SESSION` sent through either
/// client reaches the real recommender's Runtime path, and its `New-Session-Id` comes back to the
/// client; a request in the session gets none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_opened_at_the_recommender_reaches_the_client() {
    let recommender = crate::kit::Recommender::start().await;
    for client in ["sdk", "lean"] {
        let gw = Gateway::builder()
            .config(
                GatewayYaml::standard()
                    .client(client)
                    .integration_field("session_id", "method.request.header.x-session"),
            )
            .upstream_url(&recommender.url())
            .start()
            .await;
        let path = "/temp/recommended-movies/U:1?k=2&inference_type=deterministic";
        let opened = gw
            .get(path)
            .key(KEY_A)
            .header("x-session", "NEW_SESSION")
            .send()
            .await;
        opened.assert_ok();
        let session = opened
            .header("x-amzn-sagemaker-new-session-id")
            .unwrap_or_else(|| panic!("{client}: no New-Session-Id: {opened:?}"));
        let (id, expires) = session
            .split_once("; Expires=")
            .unwrap_or_else(|| panic!("{client}: {session}"));
        assert!(expires.ends_with('Z'), "{client}: {session}");
        let within = gw.get(path).key(KEY_A).header("x-session", id).send().await;
        within.assert_ok();
        assert_eq!(
            within.header("x-amzn-sagemaker-new-session-id"),
            None,
            "{client}"
        );
    }
}

/// What a model container (or anything posing as SageMaker) sends back is bounded before it reaches
/// the client, the access log and /metrics: a `New-Session-Id` past SageMaker's 256 bytes is not
/// passed on (the answer still is), a variant that is not a variant name is logged cut to 63
/// characters and labelled `other`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_session_id_or_variant_from_the_upstream_is_bounded() {
    use crate::metrics::{admin_url, sample, scrape};
    let upstream = Upstream::start().await;
    let huge_session = format!("s{}; Expires=2026-12-05T08:00:00Z", "a".repeat(60_000));
    let huge_variant = "v".repeat(20_000);
    upstream.reply_with(
        SageMakerReply::ok(r#"{"recommendations":[]}"#)
            .with_header("x-Amzn-Invoked-Production-Variant", &huge_variant)
            .with_header("X-Amzn-SageMaker-New-Session-Id", &huge_session),
    );
    for client in ["sdk", "lean"] {
        let gw = routed_gateway(client, &upstream).await;
        let reply = gw
            .get(ROUTED)
            .key(KEY_A)
            .header("x-session", "NEW_SESSION")
            .send()
            .await;
        reply.assert_ok();
        assert_eq!(
            reply.header("x-amzn-sagemaker-new-session-id"),
            None,
            "{client}"
        );
        let line = gw.access_entry(&reply.request_id()).await;
        let logged = line["invokedProductionVariant"]
            .as_str()
            .unwrap_or_default();
        assert_eq!(logged, format!("{}…", "v".repeat(63)), "{client}");
        let s = scrape(&admin_url(&gw)).await;
        let other = sample(
            &s,
            "sagegate_integration_duration_seconds_count",
            &[("variant", "other")],
        );
        assert_eq!(other, Some(1.0), "{client}");
    }
}
