//! The breaker's state machine on a manual clock: nothing sleeps, every transition is forced by
//! an outcome or by advancing time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use proptest::prelude::*;

use super::*;
use crate::limits::ManualClock;
use crate::upstream::UpstreamReply;

const SICK: &str = "ep-sick";
const OTHER: &str = "ep-other";
const PLAIN: &str = "ep-plain";

/// Two stages whose endpoints have a breaker (3 failures, 1 s doubling to 4 s, `probes` probes),
/// and a route whose endpoint has none.
fn setup(probes: u32) -> (Breakers, ManualClock, Metrics) {
    let config = config(probes, 3);
    let metrics = Metrics::new(&config);
    let clock = ManualClock::new(chrono::Utc::now());
    let breakers = Breakers::new(&config, &metrics, LimitClock::manual(&clock));
    (breakers, clock, metrics)
}

/// [`setup`]'s configuration, with `failures` consecutive failures opening a circuit.
fn config(probes: u32, failures: u32) -> GatewayConfig {
    let text = format!(
        r#"
sagemaker:
  circuit_breaker: {{ consecutive_failures: {failures}, cool_down_ms: 1000, max_cool_down_ms: 4000, half_open_probes: {probes} }}
stages:
  a: {{ variables: {{ ep: {SICK} }} }}
  b: {{ variables: {{ ep: {OTHER} }} }}
routes:
  - method: GET
    path: /x
    integration: {{ endpoint_name: "${{stageVariables.ep}}" }}
  - method: GET
    path: /plain
    integration: {{ endpoint_name: {PLAIN}, circuit_breaker: {{ enabled: false }} }}
"#
    );
    GatewayConfig::parse("g.yaml", &text, &|_| None).unwrap()
}

#[test]
fn a_config_reload_keeps_the_state_of_endpoints_whose_settings_did_not_change() {
    let (b, clock, metrics) = setup(1);
    let calls = AtomicUsize::new(0);
    for _ in 0..3 {
        call(&b, SICK, &calls, unavailable()).unwrap_err();
    }
    assert_eq!(b.state(SICK), Some(CircuitState::Open));
    let same = Breakers::carried(
        &config(1, 3),
        &metrics,
        LimitClock::manual(&clock),
        Some(&b),
    );
    assert_eq!(same.state(SICK), Some(CircuitState::Open));
    assert!(refused_for(&call(&same, SICK, &calls, ok())).is_some());
    // New settings: the endpoint starts closed under them.
    let changed = Breakers::carried(
        &config(1, 4),
        &metrics,
        LimitClock::manual(&clock),
        Some(&b),
    );
    assert_eq!(changed.state(SICK), Some(CircuitState::Closed));
    call(&changed, SICK, &calls, ok()).unwrap();
}

fn ok() -> Result<UpstreamReply, UpstreamFailure> {
    Ok(UpstreamReply {
        status: 200,
        body: Bytes::from_static(b"{}"),
        headers: Vec::new(),
    })
}

fn failed(error: GatewayError, status: Option<u16>) -> Result<UpstreamReply, UpstreamFailure> {
    Err(UpstreamFailure {
        error,
        reply: status.map(|status| UpstreamReply {
            status,
            body: Bytes::new(),
            headers: Vec::new(),
        }),
    })
}

fn unavailable() -> Result<UpstreamReply, UpstreamFailure> {
    failed(GatewayError::IntegrationFailure("503".into()), Some(503))
}

fn throttled() -> Result<UpstreamReply, UpstreamFailure> {
    failed(
        GatewayError::UpstreamThrottled("slow down".into()),
        Some(400),
    )
}

/// Calls through the breaker with a call that returns `result`; counts the calls really made.
fn call(
    b: &Breakers,
    endpoint: &str,
    calls: &AtomicUsize,
    result: Result<UpstreamReply, UpstreamFailure>,
) -> Result<UpstreamReply, UpstreamFailure> {
    let fut = b.call(endpoint, async {
        calls.fetch_add(1, Ordering::SeqCst);
        (result, InvokeStats::default())
    });
    fut.now_or_never().expect("an immediate call completes").0
}

fn refused_for(result: &Result<UpstreamReply, UpstreamFailure>) -> Option<Duration> {
    match result {
        Err(UpstreamFailure {
            error: GatewayError::CircuitOpen { retry_after, .. },
            reply: None,
        }) => Some(*retry_after),
        _ => None,
    }
}

#[test]
fn outcomes_count_failures_of_the_endpoint_not_of_the_request() {
    use Outcome::*;
    let model = |status| GatewayError::ModelError {
        status,
        body: Bytes::new(),
    };
    let integration = || GatewayError::IntegrationFailure(String::new());
    let cases = [
        (ok(), Success),
        // A model's 4xx is the model's answer about one input.
        (failed(model(400), Some(424)), Success),
        (failed(model(404), Some(424)), Success),
        // A model that answered 5xx or nothing.
        (failed(integration(), Some(424)), Failure),
        // SageMaker's answers about this request.
        (failed(integration(), Some(400)), Success),
        (failed(integration(), Some(403)), Success),
        // SageMaker's faults.
        (failed(integration(), Some(500)), Failure),
        (failed(integration(), Some(503)), Failure),
        (failed(integration(), Some(530)), Failure),
        // An unparsable 200, a reset, a refused connection.
        (failed(integration(), Some(200)), Failure),
        (failed(integration(), None), Failure),
        (
            failed(GatewayError::IntegrationTimeout(Duration::ZERO), None),
            Failure,
        ),
        (throttled(), Neutral),
        (
            failed(GatewayError::UpstreamThrottled(String::new()), Some(429)),
            Neutral,
        ),
    ];
    for (i, (result, expected)) in cases.iter().enumerate() {
        assert_eq!(outcome(result), *expected, "case {i}: {result:?}");
    }
}

#[test]
fn consecutive_failures_open_it_and_open_means_no_call() {
    let (b, clock, _) = setup(1);
    let calls = AtomicUsize::new(0);
    for _ in 0..2 {
        assert!(refused_for(&call(&b, SICK, &calls, unavailable())).is_none());
    }
    // A success resets the count; throttling neither counts nor resets.
    call(&b, SICK, &calls, ok()).unwrap();
    call(&b, SICK, &calls, unavailable()).unwrap_err();
    call(&b, SICK, &calls, throttled()).unwrap_err();
    call(&b, SICK, &calls, unavailable()).unwrap_err();
    assert_eq!(b.state(SICK), Some(CircuitState::Closed));
    call(&b, SICK, &calls, unavailable()).unwrap_err();
    assert_eq!(b.state(SICK), Some(CircuitState::Open));
    assert_eq!(calls.load(Ordering::SeqCst), 7);

    // Open: refused without calling, Retry-After counting down.
    let r = call(&b, SICK, &calls, ok());
    assert_eq!(refused_for(&r), Some(Duration::from_millis(1000)));
    clock.advance(Duration::from_millis(600));
    let r = call(&b, SICK, &calls, ok());
    assert_eq!(refused_for(&r), Some(Duration::from_millis(400)));
    assert_eq!(calls.load(Ordering::SeqCst), 7, "no call while open");

    // Other endpoints, and endpoints without a breaker, are not affected.
    call(&b, OTHER, &calls, ok()).unwrap();
    assert_eq!(b.state(OTHER), Some(CircuitState::Closed));
    for _ in 0..5 {
        call(&b, PLAIN, &calls, unavailable()).unwrap_err();
    }
    assert_eq!(b.state(PLAIN), None);
    assert_eq!(calls.load(Ordering::SeqCst), 13);
}

#[test]
fn a_probe_after_the_cool_down_closes_it_on_success() {
    let (b, clock, metrics) = setup(1);
    let calls = AtomicUsize::new(0);
    for _ in 0..3 {
        call(&b, SICK, &calls, unavailable()).unwrap_err();
    }
    clock.advance(Duration::from_millis(1000));
    // The probe is held in flight: half-open, and every other call fails fast.
    let (release, held) = tokio::sync::oneshot::channel::<()>();
    let mut probe = Box::pin(b.call(SICK, async {
        calls.fetch_add(1, Ordering::SeqCst);
        let _ = held.await;
        (ok(), InvokeStats::default())
    }));
    assert!((&mut probe).now_or_never().is_none());
    assert_eq!(b.state(SICK), Some(CircuitState::HalfOpen));
    let r = call(&b, SICK, &calls, ok());
    assert_eq!(refused_for(&r), Some(Duration::ZERO));
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    release.send(()).unwrap();
    probe.now_or_never().unwrap().0.unwrap();
    assert_eq!(b.state(SICK), Some(CircuitState::Closed));
    call(&b, SICK, &calls, ok()).unwrap();

    let text = metrics.render();
    for line in [
        format!("sagegate_circuit_breaker_state{{endpoint=\"{SICK}\"}} 0"),
        format!("sagegate_circuit_breaker_state{{endpoint=\"{OTHER}\"}} 0"),
        format!(
            "sagegate_circuit_breaker_transitions_total{{endpoint=\"{SICK}\",state=\"open\"}} 1"
        ),
        format!(
            "sagegate_circuit_breaker_transitions_total{{endpoint=\"{SICK}\",state=\"half_open\"}} 1"
        ),
        format!(
            "sagegate_circuit_breaker_transitions_total{{endpoint=\"{SICK}\",state=\"closed\"}} 1"
        ),
        format!("sagegate_circuit_breaker_short_circuited_total{{endpoint=\"{SICK}\"}} 1"),
    ] {
        assert!(text.contains(&line), "missing {line} in\n{text}");
    }
    assert!(
        !text.contains(PLAIN),
        "an endpoint without a breaker has no series"
    );
}

#[test]
fn failed_probes_double_the_cool_down_up_to_the_cap_and_a_close_resets_it() {
    let (b, clock, _) = setup(1);
    let calls = AtomicUsize::new(0);
    for _ in 0..3 {
        call(&b, SICK, &calls, unavailable()).unwrap_err();
    }
    let mut cool_downs = Vec::new();
    for _ in 0..4 {
        let r = call(&b, SICK, &calls, ok());
        let wait = refused_for(&r).unwrap();
        cool_downs.push(wait.as_millis());
        clock.advance(wait);
        // The probe fails: open again, for longer.
        assert!(refused_for(&call(&b, SICK, &calls, unavailable())).is_none());
        assert_eq!(b.state(SICK), Some(CircuitState::Open));
    }
    assert_eq!(cool_downs, [1000, 2000, 4000, 4000]);
    // Recovery closes it and the next opening starts from the first cool-down again.
    clock.advance(Duration::from_millis(4000));
    call(&b, SICK, &calls, ok()).unwrap();
    for _ in 0..3 {
        call(&b, SICK, &calls, unavailable()).unwrap_err();
    }
    let r = call(&b, SICK, &calls, ok());
    assert_eq!(refused_for(&r), Some(Duration::from_millis(1000)));
}

#[test]
fn at_most_the_configured_probes_are_in_flight() {
    let (b, clock, _) = setup(2);
    let calls = AtomicUsize::new(0);
    for _ in 0..3 {
        call(&b, SICK, &calls, unavailable()).unwrap_err();
    }
    clock.advance(Duration::from_secs(1));
    let held = |calls: &'static AtomicUsize| async move {
        calls.fetch_add(1, Ordering::SeqCst);
        std::future::pending::<()>().await;
        (ok(), InvokeStats::default())
    };
    static HELD: AtomicUsize = AtomicUsize::new(0);
    let mut first = Box::pin(b.call(SICK, held(&HELD)));
    let mut second = Box::pin(b.call(SICK, held(&HELD)));
    assert!((&mut first).now_or_never().is_none());
    assert!((&mut second).now_or_never().is_none());
    assert_eq!(HELD.load(Ordering::SeqCst), 2);
    assert!(refused_for(&call(&b, SICK, &calls, ok())).is_some());
    // A probe abandoned mid-call (its client went away) gives its slot back...
    drop(first);
    assert_eq!(b.state(SICK), Some(CircuitState::HalfOpen));
    // ...so the next call probes, and its success closes the circuit.
    call(&b, SICK, &calls, ok()).unwrap();
    assert_eq!(b.state(SICK), Some(CircuitState::Closed));
    // The other probe, still in flight, finishes under a newer state: ignored when dropped.
    drop(second);
    assert_eq!(b.state(SICK), Some(CircuitState::Closed));
}

#[test]
fn outcomes_of_calls_admitted_under_an_earlier_state_are_ignored() {
    let (b, clock, _) = setup(1);
    let calls = AtomicUsize::new(0);
    // A slow call admitted while closed...
    let (release, held) = tokio::sync::oneshot::channel::<()>();
    let mut slow = Box::pin(b.call(SICK, async {
        let _ = held.await;
        (ok(), InvokeStats::default())
    }));
    assert!((&mut slow).now_or_never().is_none());
    for _ in 0..3 {
        call(&b, SICK, &calls, unavailable()).unwrap_err();
    }
    // ...succeeds after the circuit opened: it proves nothing about the endpoint now.
    release.send(()).unwrap();
    slow.now_or_never().unwrap().0.unwrap();
    assert_eq!(b.state(SICK), Some(CircuitState::Open));
    clock.advance(Duration::from_secs(1));
    call(&b, SICK, &calls, ok()).unwrap();
    assert_eq!(b.state(SICK), Some(CircuitState::Closed));
}

fn result_of(kind: u8) -> Result<UpstreamReply, UpstreamFailure> {
    match kind % 3 {
        0 => ok(),
        1 => unavailable(),
        _ => throttled(),
    }
}

proptest! {
    /// Without time passing, the circuit is open exactly when 3 failures came with no success
    /// between them (throttling skipped), and from then on no call is made.
    #[test]
    fn opens_exactly_after_three_failures_in_a_row(kinds in proptest::collection::vec(0u8..3, 0..40)) {
        let (b, _clock, _) = setup(1);
        let calls = AtomicUsize::new(0);
        let mut run = 0;
        let mut opened_at = None;
        for (i, kind) in kinds.iter().enumerate() {
            let r = call(&b, SICK, &calls, result_of(*kind));
            if opened_at.is_some() {
                prop_assert!(refused_for(&r).is_some());
                continue;
            }
            match kind % 3 {
                0 => run = 0,
                1 => run += 1,
                _ => {}
            }
            if run == 3 {
                opened_at = Some(i + 1);
            }
        }
        let expected = if opened_at.is_some() { CircuitState::Open } else { CircuitState::Closed };
        prop_assert_eq!(b.state(SICK), Some(expected));
        prop_assert_eq!(calls.load(Ordering::SeqCst), opened_at.unwrap_or(kinds.len()));
    }
}
