//! OpenTelemetry traces through the real binary, exported over OTLP/HTTP to the kit's collector
//! ([`crate::kit::otlp`]), decoded with the official protobuf types: one trace per request with a
//! server span and a child per stage, parent links right, the caller's trace joined (`traceparent`
//! and `X-Amzn-Trace-Id`) but its sampling decision followed only with `trust_caller_sampling`
//! and a valid key, nothing recorded for a request refused at authentication, no key material in
//! any attribute; requests still succeed when the collector is down or hangs; spans queued at SIGTERM
//! are flushed; and without `telemetry.otlp.enabled` nothing is exported even when the `OTEL_*`
//! variables point at a collector.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::cache::cached_config;
use crate::kit::config::{KEY_A, Key, Plan};
use crate::kit::otlp::{Collector, KIND_CLIENT, KIND_INTERNAL, KIND_SERVER, STATUS_ERROR, Span};
use crate::kit::{
    Gateway, GatewayYaml, KeysYaml, SageMakerReply, Upstream, WAIT, closed_port, eventually,
};
use crate::metrics::{admin_url, sample, scrape};

const STAGES: [&str; 9] = [
    "route",
    "authenticate",
    "admit",
    "read body",
    "validate",
    "render request",
    "cache lookup",
    "SageMaker InvokeEndpoint",
    "respond",
];

fn telemetry(endpoint: &str, extra: &str) -> String {
    format!(
        "telemetry:\n  otlp:\n    enabled: true\n    endpoint: \"{endpoint}\"\n    schedule_delay_ms: 50\n{extra}"
    )
}

fn keys() -> KeysYaml {
    KeysYaml::new()
        .plan(Plan::new("standard", &["temp", "prod"]).throttle(10_000.0, 10_000))
        .key(Key::new("partner-a", KEY_A, &["standard"]))
}

async fn start(upstream: &Upstream, telemetry: &str) -> Gateway {
    let config = format!(
        "{}{telemetry}",
        cached_config("{ enabled: true }", "{ enabled: true }")
    );
    Gateway::builder()
        .config_text(&config)
        .keys(keys())
        .upstream(upstream)
        .env("SAGEGATE_ADMIN_LISTEN", "127.0.0.1:0")
        .env("OTEL_SERVICE_NAME", "sagegate-e2e")
        .start()
        .await
}

const DETERMINISTIC: &str = "/temp/recommended-movies/U:7?k=10&inference_type=deterministic";

/// The spans of each trace, by trace id.
fn traces(spans: &[Span]) -> BTreeMap<String, Vec<Span>> {
    let mut out: BTreeMap<String, Vec<Span>> = BTreeMap::new();
    for s in spans {
        out.entry(s.trace_id.clone()).or_default().push(s.clone());
    }
    out
}

/// Checks the shape every trace must have and returns its server span.
fn server_span(trace: &[Span]) -> Span {
    let servers: Vec<&Span> = trace.iter().filter(|s| s.kind == KIND_SERVER).collect();
    assert_eq!(servers.len(), 1, "one server span per trace: {trace:#?}");
    let server = servers[0].clone();
    for s in trace.iter().filter(|s| s.kind != KIND_SERVER) {
        assert!(
            s.parent_span_id == server.span_id
                || trace
                    .iter()
                    .any(|p| p.span_id == s.parent_span_id && p.kind != KIND_SERVER),
            "{} has a parent outside its trace",
            s.name
        );
        assert!(
            s.time.0 >= server.time.0 && s.time.1 <= server.time.1 && s.time.0 <= s.time.1,
            "{} lies outside the server span",
            s.name
        );
    }
    server
}

fn names(trace: &[Span]) -> Vec<&str> {
    trace
        .iter()
        .filter(|s| s.kind != KIND_SERVER)
        .map(|s| s.name.as_str())
        .collect()
}

fn by_name<'a>(trace: &'a [Span], name: &str) -> &'a Span {
    trace
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no span {name} in {trace:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_is_one_trace_with_a_span_per_stage_joining_the_callers_trace() {
    let collector = Collector::start().await;
    let upstream = Upstream::start().await;
    let mut gateway = start(&upstream, &telemetry(&collector.endpoint(), "")).await;

    // W3C caller, sampled: a cache miss that calls SageMaker.
    let w3c_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let w3c = gateway
        .get(DETERMINISTIC)
        .key(KEY_A)
        .header(
            "traceparent",
            &format!("00-{w3c_trace}-00f067aa0ba902b7-01"),
        )
        .send()
        .await;
    w3c.assert_ok();
    // X-Ray caller: the same request again, now a cache hit.
    let xray = gateway
        .get(DETERMINISTIC)
        .key(KEY_A)
        .header(
            "x-amzn-trace-id",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        )
        .send()
        .await;
    xray.assert_ok();
    assert_eq!(xray.header("x-sagegate-cache"), Some("hit"));
    // No trace header: the gateway's new X-Ray root is the trace. A missing `k` ends at validate.
    let fresh = gateway
        .get("/temp/recommended-movies/U:7?inference_type=deterministic")
        .key(KEY_A)
        .send()
        .await;
    assert_eq!(fresh.status, 400);
    // A caller that decided not to sample: its decision is not trusted by default, the ratio (1.0)
    // decides, and the trace still joins the caller's.
    let unsampled_trace = "0af7651916cd43dd8448eb211c80319c";
    gateway
        .get(DETERMINISTIC)
        .key(KEY_A)
        .header(
            "traceparent",
            &format!("00-{unsampled_trace}-b7ad6b7169203331-00"),
        )
        .send()
        .await
        .assert_ok();
    // Refused at authentication: never recorded, whatever the caller asked for and the ratio says.
    let refused_trace = "99998888777766665555444433332222";
    gateway
        .get(DETERMINISTIC)
        .key("not-a-key-0123456789abcdef")
        .header(
            "traceparent",
            &format!("00-{refused_trace}-9999888877776666-01"),
        )
        .send()
        .await
        .assert_forbidden();

    // SageMaker throttles: the SDK's one retry shows as the call's attempt count.
    upstream.reply_with(SageMakerReply::throttling());
    let retried_trace = "11112222333344445555666677778888";
    gateway
        .get("/temp/recommended-movies/U:8?k=10&inference_type=stochastic_plackett_luce")
        .key(KEY_A)
        .header(
            "traceparent",
            &format!("00-{retried_trace}-1111222233334444-01"),
        )
        .send()
        .await
        .assert_too_many_requests();

    let xray_trace = "5759e988bd862e3fe1be46a994272793";
    let fresh_trace: String = fresh
        .header("x-amzn-trace-id")
        .unwrap()
        .strip_prefix("Root=1-")
        .unwrap()
        .replace('-', "");
    eventually("four traces at the collector", WAIT, || {
        let n = traces(&collector.spans()).len();
        async move { (n >= 4).then_some(()) }
    })
    .await;
    // SIGTERM flushes anything still queued; then the collector holds everything there will be.
    gateway.signal("TERM");
    assert!(gateway.wait_exit(WAIT).await.success());
    let spans = collector.spans();
    assert!(
        collector.unexpected().is_empty(),
        "{:?}",
        collector.unexpected()
    );
    let all = traces(&spans);
    assert_eq!(
        all.keys().cloned().collect::<Vec<_>>(),
        {
            let mut ids = vec![
                w3c_trace.to_owned(),
                xray_trace.to_owned(),
                fresh_trace.clone(),
                unsampled_trace.to_owned(),
                retried_trace.to_owned(),
            ];
            ids.sort();
            ids
        },
        "one trace per authenticated request, whatever its caller's flag; none for the bad key"
    );

    // The miss: every stage, the SageMaker call under the cache lookup.
    let miss = &all[w3c_trace];
    let server = server_span(miss);
    assert_eq!(
        server.parent_span_id, "00f067aa0ba902b7",
        "joins the caller's span"
    );
    assert_eq!(server.name, "GET /recommended-movies/{user_id}");
    assert_eq!(server.resource["service.name"], "sagegate-e2e");
    for (k, v) in [
        ("http.request.method", "GET"),
        ("http.route", "/recommended-movies/{user_id}"),
        ("http.response.status_code", "200"),
        ("sagegate.stage", "temp"),
        ("sagegate.api_key_id", "partner-a"),
        ("sagegate.cache", "miss"),
        ("sagegate.request_id", w3c.request_id().as_str()),
    ] {
        assert_eq!(server.attr(k), Some(v), "{k}");
    }
    assert_eq!(names(miss), STAGES);
    let lookup = by_name(miss, "cache lookup");
    let invoke = by_name(miss, "SageMaker InvokeEndpoint");
    assert_eq!(invoke.parent_span_id, lookup.span_id);
    assert_eq!(invoke.kind, KIND_CLIENT);
    assert_eq!(invoke.attr("aws.sagemaker.endpoint_name"), Some("ep-temp"));
    assert_eq!(invoke.attr("sagegate.attempts"), Some("1"));
    assert_eq!(invoke.attr("http.response.status_code"), Some("200"));
    for s in miss
        .iter()
        .filter(|s| s.name != invoke.name && s.kind != KIND_SERVER)
    {
        assert_eq!(s.parent_span_id, server.span_id, "{}", s.name);
        assert_eq!(s.kind, KIND_INTERNAL);
    }

    // The hit: no SageMaker call; joined to the X-Ray caller's trace and parent.
    let hit = &all[xray_trace];
    let server = server_span(hit);
    assert_eq!(server.parent_span_id, "53995c3f42cd8ad8");
    assert_eq!(server.attr("sagegate.cache"), Some("hit"));
    assert_eq!(
        names(hit),
        [
            "route",
            "authenticate",
            "admit",
            "read body",
            "validate",
            "render request",
            "cache lookup",
            "respond"
        ]
    );
    assert_eq!(
        by_name(hit, "cache lookup").attr("sagegate.cache"),
        Some("hit")
    );

    // The refusal after authentication: a new root, stages up to validate, which failed.
    let refused = &all[&fresh_trace];
    let server = server_span(refused);
    assert_eq!(server.parent_span_id, "", "a new trace has no parent");
    assert_eq!(server.attr("http.response.status_code"), Some("400"));
    assert_eq!(server.attr("error.type"), Some("BAD_REQUEST_PARAMETERS"));
    assert_eq!(
        names(refused),
        ["route", "authenticate", "admit", "read body", "validate"]
    );
    let validate = by_name(refused, "validate");
    assert_eq!(validate.status, STATUS_ERROR);
    assert_eq!(validate.attr("error.type"), Some("BAD_REQUEST_PARAMETERS"));

    // The untrusted "not sampled" caller: recorded, joined to its trace and span.
    let joined = &all[unsampled_trace];
    assert_eq!(server_span(joined).parent_span_id, "b7ad6b7169203331");

    // The throttled call: bypassed the cache (stochastic), two attempts, SageMaker's error type.
    let retried = &all[retried_trace];
    let server = server_span(retried);
    assert_eq!(server.attr("http.response.status_code"), Some("429"));
    assert_eq!(server.attr("sagegate.cache"), Some("bypass"));
    let invoke = by_name(retried, "SageMaker InvokeEndpoint");
    assert_eq!(invoke.attr("sagegate.attempts"), Some("2"));
    assert_eq!(invoke.attr("error.type"), Some("ThrottlingException"));
    assert_eq!(invoke.status, STATUS_ERROR);

    // No key material anywhere: neither key value nor its hash.
    let hash = hex::encode(Sha256::digest(KEY_A.as_bytes()));
    for s in &spans {
        for (k, v) in s.attributes.iter().chain(s.resource.iter()) {
            for secret in [KEY_A, "not-a-key-0123456789abcdef", hash.as_str()] {
                assert!(
                    !v.contains(secret),
                    "{} {k}={v} carries key material",
                    s.name
                );
            }
        }
    }
}

/// `traceparent` of trace `id` (32 hex digits), sampled or not.
fn traceparent(id: &str, sampled: bool) -> String {
    format!("00-{id}-{}-0{}", &id[..16], u8::from(sampled))
}

/// The trace ids at the collector once `gateway` stopped (SIGTERM flushes what is queued).
async fn ids_after_exit(mut gateway: Gateway, collector: &Collector) -> Vec<String> {
    gateway.signal("TERM");
    assert!(gateway.wait_exit(WAIT).await.success());
    traces(&collector.spans()).into_keys().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_sampling_decisions_count_only_when_trusted_and_only_for_valid_keys() {
    let upstream = Upstream::start().await;
    // Trusted, ratio 0: only a key holder's own "sampled" gets a request recorded.
    let collector = Collector::start().await;
    let extra = "    sample_ratio: 0.0\n    trust_caller_sampling: true\n";
    let gateway = start(&upstream, &telemetry(&collector.endpoint(), extra)).await;
    let (w3c, xray) = (
        "a0000000000000000000000000000001",
        "5759e988bd862e3fe1be46a994272793",
    );
    gateway
        .get(DETERMINISTIC)
        .key(KEY_A)
        .header("traceparent", &traceparent(w3c, true))
        .send()
        .await
        .assert_ok();
    gateway
        .get(DETERMINISTIC)
        .key(KEY_A)
        .header(
            "x-amzn-trace-id",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1",
        )
        .send()
        .await
        .assert_ok();
    // Not recorded: no decision (ratio 0), an anonymous caller of a public route, a bad key, no
    // key, an unknown route.
    let bad = "not-a-key-0123456789abcdef";
    let xray_forced = "Root=1-5759e988-dddddddddddddddddddddddd;Sampled=1".to_owned();
    for (path, key, header, status) in [
        (DETERMINISTIC, Some(KEY_A), None, 200),
        (
            "/temp/open/U:1",
            None,
            Some(("traceparent", traceparent(&"b".repeat(32), true))),
            200,
        ),
        (
            DETERMINISTIC,
            Some(bad),
            Some(("traceparent", traceparent(&"c".repeat(32), true))),
            403,
        ),
        (
            DETERMINISTIC,
            None,
            Some(("x-amzn-trace-id", xray_forced)),
            403,
        ),
        (
            "/temp/nowhere",
            Some(KEY_A),
            Some(("traceparent", traceparent(&"e".repeat(32), true))),
            403,
        ),
    ] {
        let mut request = gateway.get(path);
        if let Some(key) = key {
            request = request.key(key);
        }
        if let Some((name, value)) = &header {
            request = request.header(name, value);
        }
        assert_eq!(
            request.send().await.status,
            status,
            "{path} {key:?} {header:?}"
        );
    }
    let mut expected = vec![w3c.to_owned(), xray.to_owned()];
    expected.sort();
    assert_eq!(ids_after_exit(gateway, &collector).await, expected);

    // Trusted, ratio 1: a key holder's "not sampled" is followed; an anonymous one's is not.
    let collector = Collector::start().await;
    let extra = "    trust_caller_sampling: true\n";
    let gateway = start(&upstream, &telemetry(&collector.endpoint(), extra)).await;
    gateway
        .get(DETERMINISTIC)
        .key(KEY_A)
        .header("traceparent", &traceparent(&"f".repeat(32), false))
        .send()
        .await
        .assert_ok();
    let public = "a0000000000000000000000000000002";
    gateway
        .get("/temp/open/U:1")
        .header("traceparent", &traceparent(public, false))
        .send()
        .await
        .assert_ok();
    assert_eq!(ids_after_exit(gateway, &collector).await, [public]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_is_down_or_hangs_never_fails_a_request() {
    let upstream = Upstream::start().await;
    let silent = Collector::silent().await;
    for endpoint in [
        format!("http://127.0.0.1:{}", closed_port()),
        silent.endpoint(),
    ] {
        let mut gateway = start(
            &upstream,
            &telemetry(&endpoint, "    timeout_ms: 300\n    max_queue_size: 64\n"),
        )
        .await;
        let admin = admin_url(&gateway);
        for i in 0..40 {
            gateway
                .get(&format!(
                    "/temp/recommended-movies/U:{i}?k=10&inference_type=deterministic"
                ))
                .key(KEY_A)
                .send()
                .await
                .assert_ok();
        }
        // Every span is either waiting, dropped at a full queue, or dropped after a failed export.
        let m = eventually("a failed export to be counted", WAIT, || {
            let admin = admin.clone();
            async move {
                let m = scrape(&admin).await;
                (sample(
                    &m,
                    "sagegate_otel_spans_total",
                    &[("result", "export_failed")],
                )? > 0.0)
                    .then_some(m)
            }
        })
        .await;
        assert_eq!(
            sample(&m, "sagegate_otel_spans_total", &[("result", "exported")]),
            Some(0.0)
        );
        gateway.wait_for_log("OTLP trace export failed").await;
        gateway.signal("TERM");
        assert!(gateway.wait_exit(WAIT).await.success(), "{endpoint}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_still_queued_at_sigterm_are_flushed() {
    let collector = Collector::start().await;
    let upstream = Upstream::start().await;
    // A batch is due only after ten minutes: only the shutdown flush can deliver these spans.
    let otlp = format!(
        "telemetry:\n  otlp:\n    enabled: true\n    endpoint: \"{}\"\n    schedule_delay_ms: 600000\n",
        collector.endpoint()
    );
    let mut gateway = start(&upstream, &otlp).await;
    let reply = gateway.get(DETERMINISTIC).key(KEY_A).send().await;
    reply.assert_ok();
    assert_eq!(collector.posts(), 0);
    gateway.signal("TERM");
    assert!(gateway.wait_exit(WAIT).await.success());
    let spans = collector.spans();
    let server = spans
        .iter()
        .find(|s| s.kind == KIND_SERVER)
        .expect("the server span");
    assert_eq!(
        server.attr("sagegate.request_id"),
        Some(reply.request_id().as_str())
    );
    assert_eq!(spans.len(), 1 + STAGES.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_setting_nothing_is_exported() {
    let collector = Collector::start().await;
    let upstream = Upstream::start().await;
    // The OTEL_* variables alone do not turn export on.
    let mut gateway = Gateway::builder()
        .config(GatewayYaml::standard())
        .keys(keys())
        .upstream(&upstream)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.endpoint())
        .env("OTEL_TRACES_SAMPLER", "always_on")
        .start()
        .await;
    for _ in 0..5 {
        gateway
            .get(DETERMINISTIC)
            .key(KEY_A)
            .send()
            .await
            .assert_ok();
    }
    gateway.signal("TERM");
    assert!(gateway.wait_exit(WAIT).await.success());
    assert_eq!(collector.posts(), 0);
    assert!(!gateway.stdout().contains("OTLP"), "{}", gateway.stdout());
}
