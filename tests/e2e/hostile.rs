//! Hostile input (issues 7 and 14): limits that hold on the request head, before routing (header
//! and body size, header timeout), bodies read only after routing, the key check and admission
//! (an unread body closes the connection and is never parsed as a request), the body timeout, the
//! in-flight memory budget, paths that must not be guessed at (invalid UTF-8, bad
//! percent-encoding, `..`, also behind an escaped `/`), ambiguous keys, header injection through
//! values copied into SageMaker's custom attributes, key enumeration (without telling unknown keys
//! from disabled ones), the key kept from templates, secrets in the gateway's own output, trace
//! sampling forced by callers, a keys source that asks for the gateway's environment, answers
//! from SageMaker longer than the gateway reads, and callers that stop reading their answers.
//!
//! Requests a well-formed client cannot send go over a raw TCP connection ([`raw`]); every read
//! is bounded, and each test checks that the gateway keeps serving afterwards.

mod cache_poisoning;
mod log_volume;
mod slots;
pub(crate) mod slow_readers;
mod streams;
mod upstream_answers;

use std::net::SocketAddr;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::kit::config::{KEY_A, KEY_DISABLED, KEY_TEMP_ONLY, Key, Plan};
use crate::kit::otlp::Collector;
use crate::kit::s3::FakeS3;
use crate::kit::{
    DEMO_KEY, Gateway, GatewayYaml, KeysYaml, SageMakerReply, Upstream, WAIT, eventually,
    shipped_config_dir,
};
use crate::metrics::{admin_url, sample, scrape};

/// The standard config with hostile-input settings added to `server:`.
fn config_with(server_extra: &str, route_extra: &str) -> String {
    let text = GatewayYaml::standard().max_body_bytes(1024).render();
    let text = text.replacen("server:\n", &format!("server:\n{server_extra}"), 1);
    // The `/other/{user_id}` route copies header x-tenant into the custom attributes.
    text.replacen(
        "path: /other/{user_id}\n    api_key_required: true\n    validation: { required_query: [] }\n    integration:\n      endpoint_name: \"${stageVariables.endpoint}\"\n      content_type: application/json\n      accept: application/json\n      timeout_ms: 10000\n      custom_attributes: context.requestId\n",
        &format!("path: /other/{{user_id}}\n    api_key_required: true\n    validation: {{ required_query: [] }}\n    integration:\n      endpoint_name: \"${{stageVariables.endpoint}}\"\n      content_type: application/json\n      accept: application/json\n      timeout_ms: 10000\n{route_extra}"),
        1,
    )
}

async fn hostile_gateway(upstream: &Upstream) -> Gateway {
    let config = config_with(
        "  max_header_bytes: 4096\n  client_header_timeout_secs: 2\n",
        "      custom_attributes: method.request.header.x-tenant\n",
    );
    assert!(
        config.contains("method.request.header.x-tenant"),
        "{config}"
    );
    Gateway::builder()
        .config_text(&config)
        .upstream(upstream)
        .start()
        .await
}

/// Sends `bytes` on a fresh connection and reads until the gateway closes it or `WAIT` passes.
async fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    read_all(&mut stream).await
}

async fn read_all(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Sends `sent` at once, then `dripped` one byte every 250 ms, until the gateway answers or closes
/// the connection. Returns whether it did (before `dripped` ran out) and what it answered.
async fn drip(addr: SocketAddr, sent: Vec<u8>, dripped: Vec<u8>) -> (bool, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(&sent).await.unwrap();
    for b in dripped {
        if stream.write_all(&[b]).await.is_err() {
            break;
        }
        let mut buf = [0u8; 1024];
        match tokio::time::timeout(Duration::from_millis(250), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (true, String::new()),
            Ok(Ok(n)) => {
                let mut answer = buf[..n].to_vec();
                let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut answer)).await;
                return (true, String::from_utf8_lossy(&answer).into_owned());
            }
            Err(_) => {}
        }
    }
    (false, String::new())
}

/// The seed request with a valid key still gets its answer.
async fn still_serves(gateway: &Gateway) {
    gateway
        .recommend("temp", "U:1", Some(KEY_A))
        .await
        .assert_ok();
}

/// The status and body of a raw HTTP/1.1 answer.
fn status_and_body(answer: &str) -> (u16, &str) {
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"));
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body)
}

/// A GET of `target` with `Connection: close` and `extra` header lines.
fn get(target: &[u8], extra: &[u8]) -> Vec<u8> {
    let mut req = b"GET ".to_vec();
    req.extend_from_slice(target);
    req.extend_from_slice(b" HTTP/1.1\r\nhost: gw\r\nconnection: close\r\n");
    req.extend_from_slice(extra);
    req.extend_from_slice(b"\r\n");
    req
}

fn assert_json_400(answer: &str, what: &str) {
    let (status, body) = status_and_body(answer);
    assert_eq!(status, 400, "{what}: {answer}");
    let v: serde_json::Value = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("{what}: body not JSON ({e}): {answer}"));
    assert!(v["message"].is_string(), "{what}: {answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{what}: {answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_and_bodies_are_refused() {
    let upstream = Upstream::start().await;
    let gateway = hostile_gateway(&upstream).await;

    // Headers over max_header_bytes (4096): 431 JSON, even on a path no route matches.
    gateway
        .get("/nostage/nothing")
        .header("x-padding", &"a".repeat(5000))
        .send()
        .await
        .assert_gateway_error(
            431,
            r#"{"message":"Request Header Fields Too Large"}"#,
            "RequestHeaderFieldsTooLargeException",
        );

    // Body over max_body_bytes (1024) with Content-Length: 413 before routing (not 403).
    gateway
        .request(reqwest::Method::POST, "/nostage/nothing")
        .body(vec![b'x'; 2048])
        .send()
        .await
        .assert_gateway_error(
            413,
            r#"{"message":"Request Too Long"}"#,
            "RequestTooLongException",
        );

    // The same without a length (chunked): counted while read, which happens only once the
    // request is routed, its key checked and admitted (before that it is refused unread).
    let mut chunked = format!(
        "GET /temp/recommended-movies/U:1?k=1&inference_type=deterministic HTTP/1.1\r\nhost: gw\r\nconnection: close\r\nx-api-key: {KEY_A}\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    for _ in 0..8 {
        chunked.extend_from_slice(b"200\r\n");
        chunked.extend_from_slice(&[b'y'; 512]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let answer = raw(gateway.addr(), &chunked).await;
    assert_eq!(
        status_and_body(&answer),
        (413, r#"{"message":"Request Too Long"}"#),
        "{answer}"
    );
    assert_eq!(upstream.count(), 0);
    still_serves(&gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_client_is_cut_off_and_others_are_served() {
    let upstream = Upstream::start().await;
    let gateway = hostile_gateway(&upstream).await;
    let addr = gateway.addr();
    let head = b"GET /temp/recommended-movies/U:1?k=1&inference_type=deterministic HTTP/1.1\r\nhost: gw\r\nx-api-key: whatever-key-0123456789\r\n\r\n";
    // One byte every 250 ms: the whole head would take ~30 s, far over the 2 s header timeout.
    let slow = tokio::spawn(drip(addr, Vec::new(), head.to_vec()));
    // Meanwhile, others are served.
    for _ in 0..3 {
        gateway
            .recommend("temp", "U:1", Some(KEY_A))
            .await
            .assert_ok();
    }
    let (cut, answer) = tokio::time::timeout(Duration::from_secs(60), slow)
        .await
        .expect("slowloris task bounded")
        .unwrap();
    assert!(cut, "the gateway never cut the slow client off");
    if !answer.is_empty() {
        assert_eq!(status_and_body(&answer).0, 408, "{answer}");
    }
    assert_eq!(
        upstream.count(),
        3,
        "the slow request never reached SageMaker"
    );
    still_serves(&gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_paths_are_400_json_and_never_routed() {
    let upstream = Upstream::start().await;
    let gateway = hostile_gateway(&upstream).await;
    let addr = gateway.addr();
    let key = format!("x-api-key: {KEY_A}\r\n");
    for (what, target) in [
        (
            "invalid UTF-8",
            &b"/temp/recommended-movies/%FF%FE?k=1&inference_type=deterministic"[..],
        ),
        (
            "bad percent-encoding",
            b"/temp/recommended-movies/U%ZZ1?k=1&inference_type=deterministic",
        ),
        (
            "truncated percent-encoding",
            b"/temp/recommended-movies/U%3?k=1&inference_type=deterministic",
        ),
        (
            "dot-dot segment",
            b"/temp/other/../recommended-movies/U:1?k=1&inference_type=deterministic",
        ),
        (
            "encoded dot-dot",
            b"/temp/recommended-movies/%2e%2e?k=1&inference_type=deterministic",
        ),
        (
            "dot-dot behind escaped slashes inside a parameter",
            b"/temp/recommended-movies/x%2F..%2Fy?k=1&inference_type=deterministic",
        ),
    ] {
        let answer = raw(addr, &get(target, key.as_bytes())).await;
        assert_json_400(&answer, what);
    }
    assert_eq!(upstream.count(), 0);

    // Two keys in one request: refused, whichever is valid.
    gateway
        .get("/temp/recommended-movies/U:1?k=1&inference_type=deterministic")
        .key(KEY_A)
        .key(KEY_TEMP_ONLY)
        .send()
        .await
        .assert_forbidden();
    let answer = raw(
        addr,
        &get(
            b"/temp/recommended-movies/U:1?k=1&inference_type=deterministic",
            format!("x-api-key: {KEY_A}\r\nX-API-Key: {KEY_A}\r\n").as_bytes(),
        ),
    )
    .await;
    assert_eq!(
        status_and_body(&answer),
        (403, r#"{"message":"Forbidden"}"#),
        "{answer}"
    );
    assert_eq!(upstream.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_values_copied_into_custom_attributes_cannot_inject_headers() {
    let upstream = Upstream::start().await;
    let gateway = hostile_gateway(&upstream).await;
    let addr = gateway.addr();
    let path = "/temp/other/U:1";

    // A fine value reaches SageMaker as the custom attributes.
    gateway
        .get(path)
        .key(KEY_A)
        .header("x-tenant", "tenant-7")
        .send()
        .await
        .assert_ok();
    assert_eq!(
        upstream
            .single()
            .header("x-amzn-sagemaker-custom-attributes"),
        Some("tenant-7")
    );

    // CR/LF inside a header value: actix refuses the head itself.
    let key = format!("x-api-key: {KEY_A}\r\n");
    for injected in [
        &b"x-tenant: a\rx-evil: 1\r\n"[..],
        b"x-tenant: a\nx-evil: 1\r\n",
        b"x-tenant: a\r\n\r\nGET /temp/other/U:2 HTTP/1.1\r\nx-evil: 1\r\n",
    ] {
        let mut extra = key.as_bytes().to_vec();
        extra.extend_from_slice(injected);
        let answer = raw(addr, &get(path.as_bytes(), &extra)).await;
        // Either the head is refused, or a bare LF ends the line (HTTP/1.1 parsers accept it)
        // and `x-evil` is a header of its own, which the gateway never forwards.
        let (status, _) = status_and_body(&answer);
        assert!([200, 400, 403].contains(&status), "{answer}");
    }
    // Over 1024 characters, and non-ASCII: 400 JSON, nothing sent.
    let long = format!("x-tenant: {}\r\n", "t".repeat(1025));
    let answer = raw(
        addr,
        &get(path.as_bytes(), format!("{key}{long}").as_bytes()),
    )
    .await;
    assert_json_400(&answer, "over 1024 characters");
    let mut extra = key.as_bytes().to_vec();
    extra.extend_from_slice("x-tenant: caf\u{e9}\r\n".as_bytes());
    let answer = raw(addr, &get(path.as_bytes(), &extra)).await;
    assert_json_400(&answer, "non-ASCII");

    let received = upstream.received();
    assert!(
        received
            .iter()
            .all(|r| r.headers.iter().all(|(n, _)| n != "x-evil")),
        "an injected header reached SageMaker: {received:?}"
    );
    assert!(
        received
            .iter()
            .filter_map(|r| r.header("x-amzn-sagemaker-custom-attributes"))
            .all(|v| v.bytes().all(|b| (0x20..0x7f).contains(&b))),
        "{received:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_enumeration_is_throttled_but_a_valid_key_never_is_and_no_secret_is_logged() {
    let upstream = Upstream::start().await;
    let gateway = hostile_gateway(&upstream).await;
    let path = "/temp/recommended-movies/U:1?k=1&inference_type=deterministic";
    let mut tried = Vec::new();
    let mut statuses = Vec::new();
    let started = std::time::Instant::now();
    for i in 0..130 {
        let guess = format!("guess-{i:04}-abcdefghijklmnopqrstuvwxyz");
        let reply = gateway.get(path).key(&guess).send().await;
        statuses.push(reply.status);
        tried.push(guess);
        if i % 10 == 0 {
            // A valid key from the same address is never blocked.
            gateway.get(path).key(KEY_A).send().await.assert_ok();
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let refused = statuses.iter().filter(|s| **s == 403).count();
    let throttled = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(refused + throttled, statuses.len(), "{statuses:?}");
    // The first 100 failures are plain 403s; beyond that, at most the refill (100 a minute).
    assert!(statuses[..100].iter().all(|s| *s == 403), "{statuses:?}");
    let budget = 100.0 + elapsed * 100.0 / 60.0 + 1.0;
    assert!(
        (refused as f64) <= budget,
        "{refused} > {budget}: {statuses:?}"
    );
    assert!(throttled > 0, "{statuses:?}");
    gateway.get(path).key(KEY_A).send().await.assert_ok();
    gateway
        .get(path)
        .key(KEY_TEMP_ONLY)
        .send()
        .await
        .assert_ok();
    // Past the limit a disabled key, and a valid key on a stage its plans do not cover, get the
    // same 429 as an unknown key: the answers do not tell which keys exist. (The bucket refills
    // one attempt every 0.6 s, so each probe first spends what refilled; a refill landing between
    // the two requests may still let one probe through as a 403.)
    let on_prod = "/prod/recommended-movies/U:1?k=1&inference_type=deterministic";
    let mut probes = Vec::new();
    for round in 0..5 {
        for (path, key) in [(path, KEY_DISABLED), (on_prod, KEY_TEMP_ONLY)] {
            let mut spent = false;
            for i in 0..20 {
                let guess = format!("spend-{round}-{i:02}-abcdefghijklmnopqrstuvwxyz");
                if gateway.get(path).key(&guess).send().await.status == 429 {
                    spent = true;
                    break;
                }
            }
            assert!(spent, "unknown keys are throttled again after a refill");
            let reply = gateway.get(path).key(key).send().await;
            assert!([403, 429].contains(&reply.status), "{reply:?}");
            if reply.status == 429 {
                reply.assert_too_many_requests();
            }
            probes.push(reply.status);
        }
    }
    assert!(
        probes.iter().filter(|s| **s == 429).count() >= 7,
        "disabled and wrong-stage keys are throttled like unknown ones: {probes:?}"
    );
    // A missing key guesses nothing: still a plain 403.
    gateway.get(path).send().await.assert_forbidden();

    // Nothing the gateway wrote names a key value or its SHA-256.
    let output = format!("{}\n{}", gateway.stdout(), gateway.stderr());
    assert!(
        output.contains("partner-a"),
        "the log identifies keys by id"
    );
    for secret in [KEY_A, KEY_TEMP_ONLY, KEY_DISABLED]
        .into_iter()
        .map(str::to_owned)
        .chain(tried)
    {
        let hash = hex::encode(Sha256::digest(secret.as_bytes()));
        assert!(
            !output.contains(&secret),
            "key value {secret} in the gateway output"
        );
        assert!(
            !output.to_ascii_lowercase().contains(&hash),
            "sha256 of {secret} in the gateway output"
        );
    }
}

/// Sends `bytes` on a fresh connection and reads everything until the gateway closes it; panics
/// if it is still open after `WAIT` (with what arrived).
async fn answered_then_closed(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let closed = tokio::time::timeout(WAIT, stream.read_to_end(&mut out)).await;
    let answer = String::from_utf8_lossy(&out).into_owned();
    assert!(
        matches!(closed, Ok(Ok(_))),
        "the gateway kept the connection open after: {answer:?}"
    );
    answer
}

/// Every answer on a raw connection: its status line count and whether it said `Connection: close`.
fn responses(answer: &str) -> usize {
    answer.matches("HTTP/1.1 ").count()
}

fn says_close(answer: &str) -> bool {
    answer
        .to_ascii_lowercase()
        .contains("\r\nconnection: close\r\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_is_read_only_after_routing_the_key_and_admission() {
    let upstream = Upstream::start().await;
    let gateway = hostile_gateway(&upstream).await;
    let addr = gateway.addr();
    let seed = "/temp/recommended-movies/U:1?k=1&inference_type=deterministic";
    // Issue 14's attack, scaled to the 1 KiB limit: a declared length within the limit and a body
    // one byte short of it, so it never completes. Each refusal comes at once, without the body,
    // and closes the connection.
    for (what, target, key, expected) in [
        ("unknown stage", "/x/y", None, 403),
        ("unknown route", "/temp/nothing/here", Some(KEY_A), 403),
        ("no key", seed, None, 403),
        (
            "unknown key",
            seed,
            Some("unknown-key-0123456789abcdef"),
            403,
        ),
        ("disabled key", seed, Some(KEY_DISABLED), 403),
    ] {
        let mut req = format!(
            "POST {target} HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n"
        );
        if let Some(key) = key {
            req.push_str(&format!("x-api-key: {key}\r\n"));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(&[b'x'; 999]);
        let answer = answered_then_closed(addr, &bytes).await;
        assert_eq!(status_and_body(&answer).0, expected, "{what}: {answer}");
        assert!(says_close(&answer), "{what}: {answer}");
    }
    assert_eq!(upstream.count(), 0);
    still_serves(&gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unread_body_is_never_parsed_as_the_next_request() {
    let upstream = Upstream::start().await;
    let gateway = hostile_gateway(&upstream).await;
    let addr = gateway.addr();
    let smuggled = format!(
        "GET /temp/recommended-movies/U:2?k=1&inference_type=deterministic HTTP/1.1\r\nhost: gw\r\nx-api-key: {KEY_A}\r\n\r\n"
    );
    let refused = "GET /temp/recommended-movies/U:1?k=1&inference_type=deterministic HTTP/1.1\r\nhost: gw\r\n";

    // A body with a length: refused without a key, answered once, closed.
    let mut bytes = format!("{refused}content-length: {}\r\n\r\n", smuggled.len()).into_bytes();
    bytes.extend_from_slice(smuggled.as_bytes());
    let answer = answered_then_closed(addr, &bytes).await;
    assert_eq!(responses(&answer), 1, "{answer}");
    assert_eq!(status_and_body(&answer).0, 403, "{answer}");
    assert!(says_close(&answer), "{answer}");

    // A chunked body that never ends: not drained at the client's pace either.
    let mut bytes = format!("{refused}transfer-encoding: chunked\r\n\r\n").into_bytes();
    bytes.extend_from_slice(format!("{:x}\r\n{smuggled}\r\n", smuggled.len()).as_bytes());
    let answer = answered_then_closed(addr, &bytes).await;
    assert_eq!(responses(&answer), 1, "{answer}");
    assert!(says_close(&answer), "{answer}");

    // Content-Length and Transfer-Encoding together (a request-smuggling classic): one answer,
    // whatever the framing chosen, and the request hidden in the body never reaches SageMaker.
    let hidden = format!("0\r\n\r\n{smuggled}");
    let mut bytes = format!(
        "GET /temp/recommended-movies/U:1?k=1&inference_type=deterministic HTTP/1.1\r\nhost: gw\r\nx-api-key: {KEY_A}\r\ncontent-length: {}\r\ntransfer-encoding: chunked\r\n\r\n",
        hidden.len()
    )
    .into_bytes();
    bytes.extend_from_slice(hidden.as_bytes());
    let answer = raw(addr, &bytes).await;
    assert_eq!(responses(&answer), 1, "{answer}");
    assert!(
        upstream
            .received()
            .iter()
            .all(|r| !String::from_utf8_lossy(&r.body).contains("U:2")),
        "{:?}",
        upstream.received()
    );
    still_serves(&gateway).await;
}

/// A gateway with `server_extra` settings and `gateway_responses` overriding the REQUEST_TOO_LARGE
/// type (413 and 431) and DEFAULT_4XX (which the body timeout's 408 falls under).
async fn overriding_gateway(upstream: &Upstream, server_extra: &str) -> Gateway {
    let config = config_with(server_extra, "      custom_attributes: context.requestId\n");
    let config = format!(
        r#"{config}gateway_responses:
  REQUEST_TOO_LARGE:
    response_templates:
      application/json: '{{"too_large": $context.error.messageString}}'
  DEFAULT_4XX:
    response_parameters:
      gatewayresponse.header.x-edge: "'default-4xx'"
"#
    );
    Gateway::builder()
        .config_text(&config)
        .upstream(upstream)
        .start()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_trickling_in_slower_than_the_timeout_gets_408() {
    let upstream = Upstream::start().await;
    let gateway = overriding_gateway(&upstream, "  body_timeout_secs: 1\n").await;
    let addr = gateway.addr();
    let head = format!(
        "GET /temp/recommended-movies/U:1?k=1&inference_type=deterministic HTTP/1.1\r\nhost: gw\r\nx-api-key: {KEY_A}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n"
    );
    // One byte every 250 ms: the whole body would take 25 s, far over the 1 s body timeout.
    let trickle = tokio::spawn(drip(addr, head.into_bytes(), vec![b'x'; 100]));
    // Meanwhile, others are served.
    still_serves(&gateway).await;
    let (cut, answer) = tokio::time::timeout(Duration::from_secs(60), trickle)
        .await
        .expect("trickling task bounded")
        .unwrap();
    assert!(cut, "the gateway never cut the trickling body off");
    assert_eq!(
        status_and_body(&answer),
        (408, r#"{"message":"Request Timeout"}"#),
        "{answer}"
    );
    let lower = answer.to_ascii_lowercase();
    assert!(
        lower.contains("x-amzn-errortype: requesttimeoutexception"),
        "{answer}"
    );
    assert!(
        lower.contains("x-edge: default-4xx"),
        "DEFAULT_4XX applies: {answer}"
    );
    assert!(says_close(&answer), "{answer}");
    assert_eq!(
        upstream.count(),
        1,
        "the trickled request never reached SageMaker"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_on_the_request_head_go_through_the_gateway_response_overrides() {
    let upstream = Upstream::start().await;
    let gateway = overriding_gateway(&upstream, "  max_header_bytes: 4096\n").await;
    let too_large = |what: &str, reply: &crate::kit::Reply, status: u16, message: &str| {
        assert_eq!(reply.status, status, "{what}: {reply:?}");
        assert_eq!(
            reply.text(),
            format!(r#"{{"too_large": "{message}"}}"#),
            "{what}: {reply:?}"
        );
    };
    let headers = gateway
        .get("/nostage/nothing")
        .header("x-padding", &"a".repeat(5000))
        .send()
        .await;
    too_large("headers", &headers, 431, "Request Header Fields Too Large");
    let declared = gateway
        .request(reqwest::Method::POST, "/nostage/nothing")
        .body(vec![b'x'; 2048])
        .send()
        .await;
    too_large("declared length", &declared, 413, "Request Too Long");
    assert_eq!(upstream.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_memory_budget_new_work_gets_503_with_retry_after() {
    // 1 KiB bodies and a 2 KiB budget: two requests holding 1000-byte bodies at a held SageMaker
    // call fit; a third does not until they finish.
    let upstream = Upstream::replying(SageMakerReply::ok_default().held()).await;
    let config = config_with(
        "  memory_budget_bytes: 2048\n",
        "      custom_attributes: context.requestId\n",
    );
    let gateway = Gateway::builder()
        .config_text(&config)
        .upstream(&upstream)
        .env("SAGEGATE_ADMIN_LISTEN", "127.0.0.1:0")
        .start()
        .await;
    let path = "/temp/recommended-movies/U:1?k=1&inference_type=deterministic";
    let body = vec![b'{'; 1000];
    let held: Vec<_> = (0..2)
        .map(|_| {
            let req = gateway.get(path).key(KEY_A).body(body.clone());
            tokio::spawn(req.send())
        })
        .collect();
    eventually("both bodies at SageMaker", WAIT, || {
        let n = upstream.count();
        async move { (n == 2).then_some(()) }
    })
    .await;
    let refused = gateway.get(path).key(KEY_A).body(body.clone()).send().await;
    refused.assert_gateway_error(
        503,
        r#"{"message":"Service Unavailable"}"#,
        "ServiceUnavailableException",
    );
    assert_eq!(refused.header("retry-after"), Some("1"));
    let admin = admin_url(&gateway);
    let metrics = scrape(&admin).await;
    assert_eq!(
        sample(&metrics, "sagegate_memory_refusals_total", &[]),
        Some(1.0)
    );
    assert!(
        sample(&metrics, "sagegate_memory_held_bytes", &[]).is_some_and(|b| b >= 2000.0),
        "{metrics:?}"
    );
    assert_eq!(upstream.count(), 2, "the refused request made no call");

    upstream.release();
    for reply in held {
        reply.await.unwrap().assert_ok();
    }
    // The bytes are given back once the answers are written: new work is admitted again.
    gateway
        .get(path)
        .key(KEY_A)
        .body(body)
        .send()
        .await
        .assert_ok();
    eventually("the budget empty again", WAIT, || {
        let admin = admin.clone();
        async move {
            let held = sample(&scrape(&admin).await, "sagegate_memory_held_bytes", &[]);
            (held == Some(0.0)).then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_requests_in_flight_new_work_gets_503_and_callers_without_a_key_take_no_slot() {
    // Two slots, a held SageMaker call: two requests fit, a third gets the budget's 503 however
    // small it is; a request without a key is refused as always and takes no slot.
    let upstream = Upstream::replying(SageMakerReply::ok_default().held()).await;
    let config = config_with(
        "  max_requests_in_flight: 2\n",
        "      custom_attributes: context.requestId\n",
    );
    let gateway = Gateway::builder()
        .config_text(&config)
        .upstream(&upstream)
        .env("SAGEGATE_ADMIN_LISTEN", "127.0.0.1:0")
        .start()
        .await;
    let path = "/temp/recommended-movies/U:1?k=1&inference_type=deterministic";
    let held: Vec<_> = (0..2)
        .map(|_| tokio::spawn(gateway.get(path).key(KEY_A).send()))
        .collect();
    eventually("both calls at SageMaker", WAIT, || {
        let n = upstream.count();
        async move { (n == 2).then_some(()) }
    })
    .await;
    let refused = gateway.get(path).key(KEY_A).send().await;
    refused.assert_gateway_error(
        503,
        r#"{"message":"Service Unavailable"}"#,
        "ServiceUnavailableException",
    );
    assert_eq!(refused.header("retry-after"), Some("1"));
    gateway.get(path).send().await.assert_gateway_error(
        403,
        r#"{"message":"Forbidden"}"#,
        "ForbiddenException",
    );
    let admin = admin_url(&gateway);
    let metrics = scrape(&admin).await;
    for (name, value) in [
        ("sagegate_memory_slots", 2.0),
        ("sagegate_memory_slots_taken", 2.0),
        ("sagegate_memory_refusals_total", 1.0),
    ] {
        assert_eq!(sample(&metrics, name, &[]), Some(value), "{name}");
    }
    assert_eq!(upstream.count(), 2, "the refused request made no call");

    upstream.release();
    for reply in held {
        reply.await.unwrap().assert_ok();
    }
    // The slots are given back once the answers are written: new work is admitted again.
    gateway.get(path).key(KEY_A).send().await.assert_ok();
    eventually("every slot free again", WAIT, || {
        let admin = admin.clone();
        async move {
            let taken = sample(&scrape(&admin).await, "sagegate_memory_slots_taken", &[]);
            (taken == Some(0.0)).then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_a_template_parses_is_charged_to_the_memory_budget() {
    // `[0,0,…]` of 1000 bytes parses into about 72 KB of values: more than the second 64 KiB step
    // of a 100 KB budget. A small document fits; the budget is empty again after each.
    let upstream = Upstream::start().await;
    let config = config_with(
        "  memory_budget_bytes: 100000\n",
        "      request_templates:\n        application/json: '{\"doc\": $input.json(''$'')}'\n",
    );
    let gateway = Gateway::builder()
        .config_text(&config)
        .upstream(&upstream)
        .env("SAGEGATE_ADMIN_LISTEN", "127.0.0.1:0")
        .start()
        .await;
    let path = "/temp/other/U:1";
    let big = format!("[{}0]", "0,".repeat(499)).into_bytes();
    let refused = gateway.get(path).key(KEY_A).body(big).send().await;
    refused.assert_gateway_error(
        503,
        r#"{"message":"Service Unavailable"}"#,
        "ServiceUnavailableException",
    );
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(upstream.count(), 0, "the refused request made no call");
    gateway
        .get(path)
        .key(KEY_A)
        .body(br#"{"a": [1, 2, 3]}"#.to_vec())
        .send()
        .await
        .assert_ok();
    assert_eq!(upstream.single().body, br#"{"doc": {"a":[1,2,3]}}"#);
    let admin = admin_url(&gateway);
    eventually("the budget empty again", WAIT, || {
        let admin = admin.clone();
        async move {
            let metrics = scrape(&admin).await;
            let held = sample(&metrics, "sagegate_memory_held_bytes", &[]);
            let refusals = sample(&metrics, "sagegate_memory_refusals_total", &[]);
            (held == Some(0.0) && refusals == Some(1.0)).then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_never_see_the_callers_key() {
    let upstream = Upstream::start().await;
    let template = r#"      request_templates:
        application/json: '{"key": "$input.params(''x-api-key'')", "headers": "$input.params().header", "tenant": "$input.params(''x-tenant'')"}'
"#;
    let config = config_with("", template);
    let gateway = Gateway::builder()
        .config_text(&config)
        .upstream(&upstream)
        .start()
        .await;
    gateway
        .get("/temp/other/U:1")
        .key(KEY_A)
        .header("x-tenant", "tenant-7")
        .send()
        .await
        .assert_ok();
    let sent = String::from_utf8_lossy(&upstream.single().body).into_owned();
    assert!(sent.contains("tenant-7"), "{sent}");
    assert!(!sent.contains(KEY_A), "the key reached SageMaker: {sent}");
    assert!(
        gateway
            .stdout()
            .contains("templates do not see the caller's x-api-key"),
        "a template naming x-api-key is warned about at load"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_caller_can_force_its_request_to_be_traced() {
    // The deployed sampler: parent-based, with a ratio (0 here, so any recorded span is forced).
    let collector = Collector::start().await;
    let upstream = Upstream::start().await;
    let config = format!(
        "{}telemetry:\n  otlp:\n    enabled: true\n    endpoint: \"{}\"\n    schedule_delay_ms: 50\n",
        GatewayYaml::standard().render(),
        collector.endpoint()
    );
    let mut gateway = Gateway::builder()
        .config_text(&config)
        .upstream(&upstream)
        .env("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
        .env("OTEL_TRACES_SAMPLER_ARG", "0")
        .start()
        .await;
    let ok = "/temp/recommended-movies/U:1?k=1&inference_type=deterministic";
    // Anyone (no key, a guessed, disabled or wrong-stage key, an unknown route or stage) and a
    // key holder alike ask for sampling, through both trace headers.
    let attempts: [(&str, Option<&str>, u16); 7] = [
        (ok, None, 403),
        (ok, Some("guess-0000-abcdefghijklmnopqrstuvwxyz"), 403),
        (ok, Some(KEY_DISABLED), 403),
        (
            "/prod/recommended-movies/U:1?k=1&inference_type=deterministic",
            Some(KEY_TEMP_ONLY),
            403,
        ),
        ("/temp/nowhere", Some(KEY_A), 403),
        ("/nostage/recommended-movies/U:1", None, 403),
        (ok, Some(KEY_A), 200),
    ];
    for (i, (path, key, status)) in attempts.into_iter().enumerate() {
        let trace = format!("{:032x}", 0xf00d_0000 + i);
        for header in [
            ("traceparent", format!("00-{trace}-00f067aa0ba902b7-01")),
            (
                "x-amzn-trace-id",
                format!("Root=1-{}-{};Sampled=1", &trace[..8], &trace[8..]),
            ),
        ] {
            let mut request = gateway.get(path).header(header.0, &header.1);
            if let Some(key) = key {
                request = request.key(key);
            }
            assert_eq!(request.send().await.status, status, "{path} {key:?}");
        }
    }
    // SIGTERM flushes whatever was queued: nothing may have been.
    gateway.signal("TERM");
    assert!(gateway.wait_exit(WAIT).await.success());
    let spans = collector.spans();
    assert!(
        spans.is_empty(),
        "{} spans exported for forced requests, e.g. {:?}",
        spans.len(),
        spans.first()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keys_object_cannot_read_the_gateways_environment() {
    const SECRET: &str = "redis-auth-token-e2e-4242-do-not-leak";
    const KEY_NEW: &str = "e2e-key-s3-attacker-0123456789";
    let shipped = std::fs::read_to_string(shipped_config_dir().join("keys.yaml")).unwrap();
    let s3 = FakeS3::start("keys-bucket", "keys.yaml", &shipped).await;
    let upstream = Upstream::start().await;
    let gateway = Gateway::builder()
        .config(GatewayYaml::standard())
        .keys_source("s3://keys-bucket/keys.yaml")
        .env("AWS_ENDPOINT_URL_S3", &s3.url())
        .env("SAGEGATE_KEYS_POLL_INTERVAL", "0.2")
        .env("SAGEGATE_REDIS_PASSWORD", SECRET)
        .env("SAGEGATE_ADMIN_LISTEN", "127.0.0.1:0")
        .upstream(&upstream)
        .start()
        .await;
    let status = async |key: &str| gateway.recommend("temp", "U:1", Some(key)).await.status;
    assert_eq!(status(DEMO_KEY).await, 200);

    // Whoever writes the object names a key after the secret, to read it back from the access
    // log, metrics, traces and /usage; then a stage, to read it from the reload error.
    let by_key_id = KeysYaml::new()
        .plan(Plan::new("standard", &["temp", "prod"]).throttle(1000.0, 2000))
        .key(Key::new(
            "${env:SAGEGATE_REDIS_PASSWORD}",
            KEY_NEW,
            &["standard"],
        ))
        .key(Key::new("demo", DEMO_KEY, &["standard"]));
    let by_stage = KeysYaml::new()
        .plan(Plan::new(
            "standard",
            &["temp", "\"${env:SAGEGATE_REDIS_PASSWORD}\""],
        ))
        .key(Key::new("demo", DEMO_KEY, &["standard"]));
    for (attack, expected) in [
        (
            by_key_id.render(),
            "keys.yaml:6:9: keys[0].id: `${` is not allowed",
        ),
        (
            by_stage.render(),
            "keys.yaml:3:21: usage_plans[0].stages[1]: `${` is not allowed",
        ),
    ] {
        assert!(
            attack.contains("${env:SAGEGATE_REDIS_PASSWORD}"),
            "{attack}"
        );
        s3.upload(&attack);
        gateway
            .wait_for_log(&format!("s3://keys-bucket/{expected}"))
            .await;
        // The previous keys stay in force: the attacker's key is refused, the demo key works.
        assert_eq!(status(KEY_NEW).await, 403);
        assert_eq!(status(DEMO_KEY).await, 200);
    }

    let admin = admin_url(&gateway);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut seen = gateway.stdout() + &gateway.stderr();
    for path in ["/metrics", "/usage"] {
        let resp = http.get(format!("{admin}{path}")).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        seen.push_str(&resp.text().await.unwrap());
    }
    assert!(seen.contains("keys reload failed"), "{seen}");
    assert!(
        !seen.contains(SECRET),
        "the secret reached the output:\n{seen}"
    );
}
