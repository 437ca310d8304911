//! The slots of `server.max_requests_in_flight` under attack: every way a request can end gives its
//! slot back (answers, SageMaker's errors, retries, timeouts, an open circuit, refusals after
//! admission, 413 and 408 while the body is read, cache hits and coalesced misses, streams that end
//! or whose client goes away, a client that resets its connection, reloads in the middle), and only
//! requests past the key check take one, before admission, so that a refusal spends no throttle. `sagegate_memory_slots_taken` must return to
//! 0 after each; the buffered tests end by holding every slot once more, so that a slot leaked or
//! given back twice shows as a 503 too early or one call too many at SageMaker.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{drip, raw, status_and_body};
use crate::kit::config::{KEY_A, KEY_DISABLED, Key, Plan};
use crate::kit::{Gateway, GatewayYaml, KeysYaml, SageMakerReply, Upstream, WAIT, eventually};
use crate::metrics::{admin_url, sample, scrape};

/// The main route with both required parameters, answered by SageMaker (never cached here).
const PATH: &str = "/temp/recommended-movies/U:1?k=1&inference_type=deterministic";

/// The main route with a stochastic policy: never cached, so each request is its own call.
const UNCACHED: &str = "/temp/recommended-movies/U:1?k=1&inference_type=stochastic_plackett_luce";

/// `text` (a gateway.yaml) with `server_extra` added under `server:`.
fn with_server(text: &str, server_extra: &str) -> String {
    let out = text.replacen("server:\n", &format!("server:\n{server_extra}"), 1);
    assert_ne!(out, text, "no `server:` block");
    out
}

/// A gateway on `config` in front of `upstream`, its admin listener on, and the admin URL.
async fn gateway(config: &str, keys: KeysYaml, upstream: &Upstream) -> (Gateway, String) {
    let gateway = Gateway::builder()
        .config_text(config)
        .keys(keys)
        .upstream(upstream)
        .env("SAGEGATE_ADMIN_LISTEN", "127.0.0.1:0")
        .start()
        .await;
    let admin = admin_url(&gateway);
    (gateway, admin)
}

/// `sagegate_memory_slots_taken` now.
async fn taken(admin: &str) -> f64 {
    sample(&scrape(admin).await, "sagegate_memory_slots_taken", &[])
        .expect("sagegate_memory_slots_taken")
}

/// Waits until no slot is taken; `after` names what just ended.
async fn until_free(admin: &str, after: &str) {
    eventually(
        &format!("every slot given back after {after}"),
        WAIT,
        || {
            let admin = admin.to_owned();
            async move { (taken(&admin).await == 0.0).then_some(()) }
        },
    )
    .await;
}

/// Holds `slots` calls at SageMaker, checks that one more gets the 503 without a call, then
/// releases them: the count is exact after everything the test did before.
async fn every_slot_holds_once(gateway: &Gateway, upstream: &Upstream, admin: &str, slots: usize) {
    upstream.reply_with(SageMakerReply::ok_default().held());
    upstream.hold_again();
    let before = upstream.count();
    let held: Vec<_> = (0..slots)
        .map(|_| tokio::spawn(gateway.get(UNCACHED).key(KEY_A).send()))
        .collect();
    eventually("every slot's call at SageMaker", WAIT, || {
        let n = upstream.count() - before;
        async move { (n == slots).then_some(()) }
    })
    .await;
    assert_eq!(taken(admin).await, slots as f64);
    gateway
        .get(UNCACHED)
        .key(KEY_A)
        .send()
        .await
        .assert_service_unavailable();
    assert_eq!(
        upstream.count() - before,
        slots,
        "the refused request made no call"
    );
    upstream.release();
    for reply in held {
        reply.await.unwrap().assert_ok();
    }
    until_free(admin, "the held calls").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_way_a_request_ends_gives_its_slot_back() {
    let upstream = Upstream::replying(SageMakerReply::ok_default()).await;
    let config = GatewayYaml::standard()
        .max_body_bytes(1024)
        .max_attempts(2)
        .timeout_ms(2000)
        .circuit_breaker("{ consecutive_failures: 2, cool_down_ms: 60000 }")
        .render();
    let config = with_server(
        &config,
        "  max_requests_in_flight: 2\n  body_timeout_secs: 1\n",
    );
    let (gateway, admin) = gateway(&config, KeysYaml::standard(), &upstream).await;
    let ok = || async {
        upstream.reply_with(SageMakerReply::ok_default());
        gateway.get(PATH).key(KEY_A).send().await.assert_ok();
        until_free(&admin, "an answer").await;
    };
    ok().await;

    // SageMaker's failures, each after a success so that the circuit stays closed.
    let long = std::time::Duration::from_secs(30);
    for (what, reply, status) in [
        (
            "a model's 4xx",
            SageMakerReply::model_error(400, "bad"),
            400,
        ),
        ("a 5xx, retried", SageMakerReply::internal_failure(), 502),
        ("throttling, retried", SageMakerReply::throttling(), 429),
        ("a reset", SageMakerReply::Reset, 502),
        ("a close", SageMakerReply::Close, 502),
        (
            "the route timeout",
            SageMakerReply::ok_default().after(long),
            504,
        ),
    ] {
        upstream.reply_with(reply);
        let reply = gateway.get(PATH).key(KEY_A).send().await;
        assert_eq!(reply.status, status, "{what}: {reply:?}");
        until_free(&admin, what).await;
        ok().await;
    }

    // Refused after admission, before SageMaker: validation, a chunked body over the limit, a body
    // that does not arrive in time.
    let calls = upstream.count();
    gateway
        .get("/temp/recommended-movies/U:1?k=1")
        .key(KEY_A)
        .send()
        .await
        .assert_gateway_error(
            400,
            r#"{"message": "Missing required request parameters: [inference_type]"}"#,
            "BadRequestException",
        );
    until_free(&admin, "a validation error").await;
    let mut chunked = format!(
        "GET {PATH} HTTP/1.1\r\nhost: gw\r\nx-api-key: {KEY_A}\r\ntransfer-encoding: chunked\r\n\r\n800\r\n"
    )
    .into_bytes();
    chunked.extend_from_slice(&[b'x'; 0x800]);
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    let answer = raw(gateway.addr(), &chunked).await;
    assert_eq!(status_and_body(&answer).0, 413, "{answer}");
    until_free(&admin, "a 413 while the body was read").await;
    let head = format!(
        "GET {PATH} HTTP/1.1\r\nhost: gw\r\nx-api-key: {KEY_A}\r\ncontent-length: 100\r\n\r\n"
    );
    let (cut, answer) = drip(gateway.addr(), head.into_bytes(), vec![b'x'; 100]).await;
    assert!(cut, "the trickled body was never cut off");
    assert_eq!(status_and_body(&answer).0, 408, "{answer}");
    until_free(&admin, "a 408 while the body was read").await;
    assert_eq!(upstream.count(), calls, "none of these reached SageMaker");

    // An open circuit answers at once.
    upstream.reply_with(SageMakerReply::Reset);
    for _ in 0..2 {
        gateway
            .get(PATH)
            .key(KEY_A)
            .send()
            .await
            .assert_bad_gateway();
    }
    let calls = upstream.count();
    let open = gateway.get(PATH).key(KEY_A).send().await;
    open.assert_bad_gateway();
    assert!(open.header("retry-after").is_some(), "{open:?}");
    assert_eq!(upstream.count(), calls, "the open circuit made no call");
    until_free(&admin, "an open circuit's 502").await;

    // After all of it, exactly two slots (the circuit is per endpoint: prod's is closed).
    upstream.reply_with(SageMakerReply::ok_default().held());
    let prod = PATH.replacen("/temp/", "/prod/", 1);
    let held: Vec<_> = (0..2)
        .map(|_| tokio::spawn(gateway.get(&prod).key(KEY_A).send()))
        .collect();
    eventually("both calls at SageMaker", WAIT, || {
        let n = upstream.count() - calls;
        async move { (n == 2).then_some(()) }
    })
    .await;
    gateway
        .get(&prod)
        .key(KEY_A)
        .send()
        .await
        .assert_service_unavailable();
    upstream.release();
    for reply in held {
        reply.await.unwrap().assert_ok();
    }
    until_free(&admin, "the held calls").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_gives_its_slot_back() {
    // The route timeout (60 s) is longer than any wait here: a slot given back before the release
    // was given back because the client went away, not because the call ended.
    let upstream = Upstream::replying(SageMakerReply::ok_default().held()).await;
    let config = GatewayYaml::standard().timeout_ms(60_000).render();
    let config = with_server(&config, "  max_requests_in_flight: 2\n");
    let (gateway, admin) = gateway(&config, KeysYaml::standard(), &upstream).await;
    let request = format!("GET {PATH} HTTP/1.1\r\nhost: gw\r\nx-api-key: {KEY_A}\r\n\r\n");

    // A connection reset while the call is at SageMaker: actix drops the handler, and with it the
    // request's account.
    let mut reset = TcpStream::connect(gateway.addr()).await.unwrap();
    reset.write_all(request.as_bytes()).await.unwrap();
    eventually("the call at SageMaker", WAIT, || {
        let n = upstream.count();
        async move { (n == 1).then_some(()) }
    })
    .await;
    assert_eq!(taken(&admin).await, 1.0);
    reset.set_zero_linger().unwrap();
    drop(reset);
    until_free(&admin, "a client reset its connection").await;

    // A client that closes its side (FIN) may still be reading (HTTP/1.1 half-close): the call
    // goes on and holds its slot until it ends.
    let mut closed = TcpStream::connect(gateway.addr()).await.unwrap();
    closed.write_all(request.as_bytes()).await.unwrap();
    closed.shutdown().await.unwrap();
    eventually("the second call at SageMaker", WAIT, || {
        let n = upstream.count();
        async move { (n == 2).then_some(()) }
    })
    .await;
    upstream.release();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, closed.read_to_end(&mut answer)).await;
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
    until_free(&admin, "a half-closed client's answer").await;

    every_slot_holds_once(&gateway, &upstream, &admin, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_hits_and_coalesced_misses_hold_a_slot_while_in_flight_and_give_it_back() {
    let upstream = Upstream::replying(SageMakerReply::ok_default().held()).await;
    let config = crate::cache::cached_config("{ enabled: true }", "{ enabled: false }");
    let config = with_server(&config, "  max_requests_in_flight: 3\n");
    let (gateway, admin) = gateway(&config, KeysYaml::standard(), &upstream).await;
    let cached = "/temp/recommended-movies/U:7?k=1&inference_type=deterministic";
    let first = tokio::spawn(gateway.get(cached).key(KEY_A).send());
    eventually("the miss at SageMaker", WAIT, || {
        let n = upstream.count();
        async move { (n == 1).then_some(()) }
    })
    .await;
    let second = tokio::spawn(gateway.get(cached).key(KEY_A).send());
    eventually("the coalesced miss holding its slot", WAIT, || {
        let admin = admin.clone();
        async move { (taken(&admin).await == 2.0).then_some(()) }
    })
    .await;
    upstream.release();
    let mut statuses = Vec::new();
    for reply in [first, second] {
        let reply = reply.await.unwrap();
        reply.assert_ok();
        statuses.push(
            reply
                .header("x-sagegate-cache")
                .unwrap_or_default()
                .to_owned(),
        );
    }
    statuses.sort();
    assert_eq!(statuses, ["coalesced", "miss"]);
    assert_eq!(upstream.count(), 1, "one call for both");
    until_free(&admin, "a miss and its coalesced follower").await;
    let hit = gateway.get(cached).key(KEY_A).send().await;
    hit.assert_ok();
    assert_eq!(hit.header("x-sagegate-cache"), Some("hit"));
    until_free(&admin, "a hit").await;

    every_slot_holds_once(&gateway, &upstream, &admin, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_requests_past_the_key_check_take_a_slot_and_a_refusal_spends_no_throttle() {
    // One slot, held. Everything refused before the key check gets its own answer, never the
    // slot's 503. A valid key gets the 503 before admission, so its throttle keeps its token; a
    // public route's request waits for a slot like any other.
    const KEY_TIGHT: &str = "e2e-key-slots-tight-0123456789";
    let upstream = Upstream::replying(SageMakerReply::ok_default()).await;
    let config = with_server(
        &GatewayYaml::standard().render(),
        "  max_requests_in_flight: 1\n",
    );
    let keys = KeysYaml::standard()
        .plan(Plan::new("tight", &["temp"]).throttle(0.001, 1))
        .key(Key::new("tight", KEY_TIGHT, &["tight"]));
    let (gateway, admin) = gateway(&config, keys, &upstream).await;
    upstream.reply_with(SageMakerReply::ok_default().held());
    let held = tokio::spawn(gateway.get(PATH).key(KEY_A).send());
    eventually("the held call at SageMaker", WAIT, || {
        let n = upstream.count();
        async move { (n == 1).then_some(()) }
    })
    .await;
    gateway.get(PATH).send().await.assert_forbidden();
    gateway
        .get(PATH)
        .key("e2e-key-nobody-has-this-0123456789")
        .send()
        .await
        .assert_forbidden();
    gateway
        .get(PATH)
        .key(KEY_DISABLED)
        .send()
        .await
        .assert_forbidden();
    gateway
        .get("/nostage/recommended-movies/U:1")
        .key(KEY_A)
        .send()
        .await
        .assert_forbidden();
    gateway
        .get("/temp/no/such/route")
        .key(KEY_A)
        .send()
        .await
        .assert_missing_authentication_token();
    for method in [reqwest::Method::OPTIONS, reqwest::Method::HEAD] {
        let reply = gateway
            .request(method.clone(), PATH)
            .key(KEY_A)
            .send()
            .await;
        assert_eq!(reply.status, 403, "{method}: {reply:?}");
    }
    assert_eq!(gateway.health().await, Some(200));
    assert_eq!(taken(&admin).await, 1.0);
    let metrics = scrape(&admin).await;
    assert_eq!(
        sample(&metrics, "sagegate_memory_refusals_total", &[]),
        Some(0.0)
    );
    // A valid key is refused for the slot before admission: its one token is not spent.
    gateway
        .get(PATH)
        .key(KEY_TIGHT)
        .send()
        .await
        .assert_service_unavailable();
    // The public route's request needs the slot too.
    gateway
        .get("/temp/open/U:1")
        .send()
        .await
        .assert_service_unavailable();
    let metrics = scrape(&admin).await;
    assert_eq!(
        sample(&metrics, "sagegate_memory_refusals_total", &[]),
        Some(2.0)
    );
    assert_eq!(upstream.count(), 1, "no refused request reached SageMaker");
    upstream.release();
    held.await.unwrap().assert_ok();
    until_free(&admin, "the held call").await;
    // The tight key still has its token, and then none.
    gateway.get(PATH).key(KEY_TIGHT).send().await.assert_ok();
    gateway
        .get(PATH)
        .key(KEY_TIGHT)
        .send()
        .await
        .assert_too_many_requests();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_while_slots_are_held_keep_the_count_and_the_limit() {
    let upstream = Upstream::replying(SageMakerReply::ok_default().held()).await;
    let config = with_server(
        &GatewayYaml::standard().render(),
        "  max_requests_in_flight: 2\n",
    );
    let (gateway, admin) = gateway(&config, KeysYaml::standard(), &upstream).await;
    let held: Vec<_> = (0..2)
        .map(|_| tokio::spawn(gateway.get(PATH).key(KEY_A).send()))
        .collect();
    eventually("both calls at SageMaker", WAIT, || {
        let n = upstream.count();
        async move { (n == 2).then_some(()) }
    })
    .await;
    // New keys (a key added), a new configuration (a stage variable changed), and one that asks
    // for more slots, which only a restart applies.
    let keys = KeysYaml::standard().key(Key::new(
        "later",
        "e2e-key-slots-later-0123456789",
        &["standard"],
    ));
    gateway.replace_keys(&keys.render());
    gateway
        .until_key_gets("e2e-key-slots-later-0123456789", 503)
        .await;
    crate::config_reload::rename_over(&gateway, &config.replace("ep-prod", "ep-prod-2"));
    crate::config_reload::until_generation(&gateway, 1).await;
    crate::config_reload::rename_over(
        &gateway,
        &config.replace("max_requests_in_flight: 2", "max_requests_in_flight: 9"),
    );
    gateway
        .wait_for_log("server.max_requests_in_flight cannot change without a restart")
        .await;
    let metrics = scrape(&admin).await;
    assert_eq!(sample(&metrics, "sagegate_memory_slots", &[]), Some(2.0));
    assert_eq!(
        sample(&metrics, "sagegate_memory_slots_taken", &[]),
        Some(2.0)
    );
    upstream.release();
    for reply in held {
        reply.await.unwrap().assert_ok();
    }
    until_free(&admin, "calls that outlived two reloads").await;
    every_slot_holds_once(&gateway, &upstream, &admin, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_holds_its_slot_until_it_ends_or_its_client_goes_away() {
    const STREAM: &str = "/temp/stream/U:1";
    let limits = "first_byte_timeout_ms: 10000, idle_timeout_ms: 10000, max_duration_ms: 60000";
    let config = with_server(
        &crate::streaming::config("lean", limits, ""),
        "  max_requests_in_flight: 2\n",
    );
    let upstream = Upstream::replying(SageMakerReply::event_stream(b"{\"a\":1}\n", 3)).await;
    let (gateway, admin) = gateway(&config, KeysYaml::standard(), &upstream).await;
    let whole = gateway.get(STREAM).key(KEY_A).send_raw().await.unwrap();
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.text().await.unwrap(), "{\"a\":1}\n".repeat(3));
    until_free(&admin, "a stream that ended").await;

    // 150 MB that SageMaker writes as fast as the gateway reads: the client takes one piece and
    // goes away long before the stream's limits.
    upstream.reply_with(SageMakerReply::event_stream(&[b'.'; 1500], 100_000));
    let mut open = gateway.get(STREAM).key(KEY_A).send_raw().await.unwrap();
    assert_eq!(open.status(), 200);
    assert!(open.chunk().await.unwrap().is_some());
    assert_eq!(taken(&admin).await, 1.0);
    drop(open);
    until_free(&admin, "a stream whose client went away").await;
    eventually("SageMaker's stream dropped", WAIT, || {
        let dropped = upstream.stream_dropped();
        async move { dropped.then_some(()) }
    })
    .await;
}
