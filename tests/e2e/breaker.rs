//! The circuit breaker per SageMaker endpoint (src/breaker.rs) in the real binary: failures open
//! it, an open circuit answers 502 with `Retry-After` without reaching the upstream (counted at
//! the upstream), a probe after the cool-down closes it, other endpoints and cache hits are not
//! affected, answers about one request never open it, and the metrics show every state.
//!
//! No assertion depends on timing: where a request may land before or after a cool-down ends,
//! the test checks the books instead (requests that reached the upstream = probes the metrics
//! counted; requests refused = the short-circuit counter).

use std::time::Duration;

use crate::cache::cached_config;
use crate::kit::chaos::{ChaosProxy, Fault};
use crate::kit::config::{ENDPOINT_PROD, ENDPOINT_TEMP, KEY_A};
use crate::kit::{
    Gateway, GatewayYaml, Recommender, Reply, SageMakerReply, Upstream, WAIT, eventually,
};
use crate::metrics::{Scrape, admin_url, sample, scrape};

/// Opens after 3 failures, for 1 s doubling up to 3 s, one probe at a time.
const BREAKER: &str =
    "{ consecutive_failures: 3, cool_down_ms: 1000, max_cool_down_ms: 3000, half_open_probes: 1 }";

async fn start(config_text: &str, upstream_url: &str) -> (Gateway, String) {
    let gateway = Gateway::builder()
        .config_text(config_text)
        .upstream_url(upstream_url)
        .env("SAGEGATE_ADMIN_LISTEN", "127.0.0.1:0")
        .start()
        .await;
    let admin = admin_url(&gateway);
    (gateway, admin)
}

fn state(m: &Scrape, endpoint: &str) -> f64 {
    sample(
        m,
        "sagegate_circuit_breaker_state",
        &[("endpoint", endpoint)],
    )
    .unwrap_or_else(|| panic!("no breaker state for {endpoint}"))
}

fn entered(m: &Scrape, endpoint: &str, to: &str) -> f64 {
    sample(
        m,
        "sagegate_circuit_breaker_transitions_total",
        &[("endpoint", endpoint), ("state", to)],
    )
    .unwrap()
}

fn short_circuited(m: &Scrape, endpoint: &str) -> f64 {
    sample(
        m,
        "sagegate_circuit_breaker_short_circuited_total",
        &[("endpoint", endpoint)],
    )
    .unwrap()
}

/// The `Retry-After` of a fast-failed 502, `None` for a 502 of a real call.
fn refused(r: &Reply) -> Option<u64> {
    r.assert_bad_gateway();
    r.header("retry-after").map(|v| v.parse().unwrap())
}

async fn temp(gateway: &Gateway) -> Reply {
    gateway.recommend("temp", "U:1", Some(KEY_A)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_open_it_an_open_circuit_fails_fast_and_a_probe_closes_it() {
    let upstream = Upstream::replying(SageMakerReply::service_unavailable()).await;
    let config = GatewayYaml::standard()
        .max_attempts(2)
        .circuit_breaker(BREAKER)
        .render();
    let (gateway, admin) = start(&config, &upstream.url()).await;
    let m = scrape(&admin).await;
    assert_eq!(
        (state(&m, ENDPOINT_TEMP), state(&m, ENDPOINT_PROD)),
        (0.0, 0.0)
    );

    // Three failed requests, each tried twice by the SDK, count three failures: the circuit opens.
    for _ in 0..3 {
        assert_eq!(refused(&temp(&gateway).await), None);
    }
    assert_eq!(upstream.count(), 6);
    let m = scrape(&admin).await;
    assert_eq!(state(&m, ENDPOINT_TEMP), 1.0, "open");
    assert_eq!(entered(&m, ENDPOINT_TEMP, "open"), 1.0);

    // Open: the same 502, with Retry-After, and no upstream call. A request that arrives after a
    // cool-down ends is a probe (which fails and re-opens it); the books must balance either way.
    let at_open = upstream.count();
    let mut fast = Vec::new();
    for _ in 0..5 {
        let r = temp(&gateway).await;
        if let Some(secs) = refused(&r) {
            assert!((1..=3).contains(&secs), "Retry-After {secs}");
            fast.push(r.request_id());
        }
    }
    let m = scrape(&admin).await;
    let probes = entered(&m, ENDPOINT_TEMP, "half_open") as usize;
    assert!(!fast.is_empty(), "five requests, none within a cool-down");
    assert_eq!(fast.len() + probes, 5);
    assert_eq!(short_circuited(&m, ENDPOINT_TEMP) as usize, fast.len());
    assert_eq!(
        upstream.count() - at_open,
        2 * probes,
        "only probes reach it"
    );
    assert_eq!(state(&m, ENDPOINT_TEMP), 1.0);

    // The access log says why, with the request id; no integration call is logged.
    let line = gateway.access_entry(&fast[0]).await;
    assert_eq!(line["status"], 502);
    assert_eq!(line["upstreamErrorType"], "CircuitOpen");
    assert_eq!(line["error.responseType"], "INTEGRATION_FAILURE");
    assert!(line.get("integrationLatency").is_none_or(|v| v.is_null()));
    let cause = eventually("the failure log line", WAIT, || {
        let found = gateway
            .log_lines()
            .into_iter()
            .find(|l| l["requestId"] == fast[0].as_str() && l["message"] == "request failed");
        async move { found }
    })
    .await;
    assert!(
        cause["cause"]
            .as_str()
            .unwrap()
            .contains("circuit breaker open for endpoint `ep-temp`"),
        "{cause}"
    );

    // Another stage's endpoint has its own circuit: its request reaches the upstream.
    let before = upstream.count();
    let r = gateway.recommend("prod", "U:1", Some(KEY_A)).await;
    assert_eq!(refused(&r), None);
    assert_eq!(upstream.count(), before + 2);
    assert_eq!(
        upstream.received().last().unwrap().path,
        format!("/endpoints/{ENDPOINT_PROD}/invocations")
    );
    assert_eq!(state(&scrape(&admin).await, ENDPOINT_PROD), 0.0);

    // Recovery: the next probe is held at the upstream, so half-open can be seen; meanwhile
    // every other request fails fast.
    upstream.reply_with(SageMakerReply::ok_default().held());
    let before = upstream.count();
    let probe = async {
        loop {
            let r = temp(&gateway).await;
            if r.status != 502 || r.header("retry-after").is_none() {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    };
    let observe = async {
        eventually("a probe at the upstream", WAIT, || {
            let n = upstream.count();
            async move { (n > before).then_some(()) }
        })
        .await;
        let m = scrape(&admin).await;
        assert_eq!(state(&m, ENDPOINT_TEMP), 2.0, "half-open");
        let r = temp(&gateway).await;
        assert_eq!(refused(&r), Some(1), "the one probe slot is taken");
        assert_eq!(upstream.count(), before + 1);
        upstream.release();
    };
    let (probe, ()) = tokio::join!(probe, observe);
    probe.assert_ok();
    let m = scrape(&admin).await;
    assert_eq!(state(&m, ENDPOINT_TEMP), 0.0, "closed");
    assert_eq!(entered(&m, ENDPOINT_TEMP, "closed"), 1.0);
    for _ in 0..3 {
        temp(&gateway).await.assert_ok();
    }
    assert_eq!(upstream.count(), before + 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_about_one_request_never_open_it_and_throttling_does_not_reset_it() {
    let upstream =
        Upstream::replying(SageMakerReply::model_error(400, r#"{"error":"bad k"}"#)).await;
    let config = GatewayYaml::standard()
        .max_attempts(1)
        .circuit_breaker("{ consecutive_failures: 2, cool_down_ms: 60000 }")
        .render();
    let (gateway, admin) = start(&config, &upstream.url()).await;
    // A model's 4xx, SageMaker's ValidationError and throttling, many times over: still closed.
    for _ in 0..4 {
        assert_eq!(temp(&gateway).await.status, 400);
    }
    upstream.reply_with(SageMakerReply::error(
        400,
        "ValidationError",
        r#"{"message":"Endpoint ep-temp of account 123456789012 not found."}"#,
    ));
    for _ in 0..4 {
        assert_eq!(refused(&temp(&gateway).await), None);
    }
    upstream.reply_with(SageMakerReply::throttling());
    for _ in 0..4 {
        temp(&gateway).await.assert_too_many_requests();
    }
    assert_eq!(upstream.count(), 12);
    let m = scrape(&admin).await;
    assert_eq!(state(&m, ENDPOINT_TEMP), 0.0);
    assert_eq!(entered(&m, ENDPOINT_TEMP, "open"), 0.0);

    // A failure, throttling (which neither counts nor resets), a failure: two in a row, open.
    upstream.reply_with(SageMakerReply::internal_failure());
    assert_eq!(refused(&temp(&gateway).await), None);
    upstream.reply_with(SageMakerReply::throttling());
    temp(&gateway).await.assert_too_many_requests();
    upstream.reply_with(SageMakerReply::internal_dependency());
    assert_eq!(refused(&temp(&gateway).await), None);
    assert!(refused(&temp(&gateway).await).is_some());
    assert_eq!(upstream.count(), 15);
    assert_eq!(state(&scrape(&admin).await, ENDPOINT_TEMP), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_hit_never_touches_an_open_circuit() {
    let upstream = Upstream::start().await;
    let config = cached_config("{ enabled: true }", "{ enabled: true }").replacen(
        "sagemaker:\n",
        "sagemaker:\n  circuit_breaker: { consecutive_failures: 2, cool_down_ms: 60000 }\n",
        1,
    );
    let (gateway, admin) = start(&config, &upstream.url()).await;
    let cached = || {
        gateway
            .get("/temp/recommended-movies/U:1?k=10&inference_type=deterministic")
            .key(KEY_A)
            .send()
    };
    let uncached = || {
        gateway
            .get("/temp/recommended-movies/U:1?k=10&inference_type=stochastic_plackett_luce")
            .key(KEY_A)
            .send()
    };
    let r = cached().await;
    r.assert_ok();
    assert_eq!(r.header("x-sagegate-cache"), Some("miss"));

    // The endpoint fails; requests the cache does not serve open the circuit.
    upstream.reply_with(SageMakerReply::service_unavailable());
    for _ in 0..2 {
        assert_eq!(refused(&uncached().await), None);
    }
    assert!(refused(&uncached().await).is_some());
    let calls = upstream.count();
    let m = scrape(&admin).await;
    assert_eq!(state(&m, ENDPOINT_TEMP), 1.0);
    let refusals = short_circuited(&m, ENDPOINT_TEMP);

    // The cached answer is still served, and the breaker neither saw nor counted it.
    for _ in 0..3 {
        let r = cached().await;
        r.assert_ok();
        assert_eq!(r.header("x-sagegate-cache"), Some("hit"));
    }
    assert_eq!(upstream.count(), calls);
    let m = scrape(&admin).await;
    assert_eq!(short_circuited(&m, ENDPOINT_TEMP), refusals);
    assert_eq!(state(&m, ENDPOINT_TEMP), 1.0);
}

/// Through the fault proxy in front of the real recommender: `fault` opens the circuit after two
/// requests (`status` each), then requests fail fast; once the fault is gone a probe closes it.
async fn opens_on_and_recovers_from(fault: Fault, status: u16) {
    let recommender = Recommender::start().await;
    let proxy = ChaosProxy::start(&recommender.url()).await;
    let config = GatewayYaml::standard()
        .max_attempts(2)
        .timeout_ms(500)
        .circuit_breaker("{ consecutive_failures: 2, cool_down_ms: 300, max_cool_down_ms: 600 }")
        .render();
    let (gateway, admin) = start(&config, &proxy.url()).await;
    temp(&gateway).await.assert_ok();

    proxy.set(fault.clone());
    for _ in 0..2 {
        let r = temp(&gateway).await;
        assert_eq!(r.status, status, "{fault:?}: {r:?}");
        assert!(r.header("retry-after").is_none());
    }
    assert_eq!(
        state(&scrape(&admin).await, ENDPOINT_TEMP),
        1.0,
        "{fault:?}"
    );
    let r = temp(&gateway).await;
    let m = scrape(&admin).await;
    // Unless the cool-down already ended (then it was a probe and failed like the others).
    if entered(&m, ENDPOINT_TEMP, "half_open") == 0.0 {
        assert!(refused(&r).is_some(), "{fault:?}: {r:?}");
        assert_eq!(short_circuited(&m, ENDPOINT_TEMP), 1.0);
    }

    // The fault clears: within a few cool-downs a probe gets through and closes the circuit.
    proxy.set(Fault::Pass);
    let (g, f) = (&gateway, &fault);
    eventually("a probe closes the circuit", WAIT, || async move {
        let r = temp(g).await;
        if r.status == 200 {
            Some(())
        } else {
            assert!(refused(&r).is_some(), "{f:?}: {r:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
            None
        }
    })
    .await;
    let m = scrape(&admin).await;
    assert_eq!(state(&m, ENDPOINT_TEMP), 0.0);
    assert_eq!(entered(&m, ENDPOINT_TEMP, "closed"), 1.0);
    let before = proxy.attempts();
    temp(&gateway).await.assert_ok();
    assert_eq!(proxy.attempts(), before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections_open_it() {
    opens_on_and_recovers_from(Fault::Refuse, 502).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_open_it() {
    opens_on_and_recovers_from(Fault::Hang, 504).await;
}
