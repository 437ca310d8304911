//! The assembled pipeline in process: [`super::gateway`] over the real configuration code, keys,
//! limiters, cache, breaker and templates, with SageMaker an in-process [`Invoke`] and time under
//! control (Tokio's clock paused, the limiters' and cache's [`ManualClock`] advanced by hand).
//! Nothing listens on a socket and nothing sleeps for real.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chrono::{TimeZone, Utc};

use super::gateway;
use crate::auth::{KeySet, KeysContext, parse_keys};
use crate::config::GatewayConfig;
use crate::context::RequestContext;
use crate::limits::{LimitClock, ManualClock};
use crate::message::{GatewayRequest, GatewayResponse};
use crate::pipeline::Gateway;
use crate::upstream::{Invocation, SageMaker, UpstreamReply};

const SHIPPED_CONFIG: &str = include_str!("../../config/gateway.yaml");
const SHIPPED_KEYS: &str = include_str!("../../config/keys.yaml");
const DEMO_KEY: &str = "sagegate-demo-key-0123456789";

/// A stage that caches for 60 s, a route with a 1 s timeout, and two plans: `tight` (burst 2, one
/// request a second) and `counted` (a quota of 2 a day).
const CONFIG: &str = r#"
stages:
  t:
    variables: { endpoint: ep-t }
    cache: { enabled: true, ttl_secs: 60 }
routes:
  - method: GET
    path: /r/{id}
    api_key_required: true
    cache:
      key_parameters: [method.request.path.id]
    integration:
      endpoint_name: "${stageVariables.endpoint}"
      timeout_ms: 1000
      passthrough_behavior: NEVER
      request_templates:
        application/json: '{"id": "$util.escapeJavaScript($input.params().path.get(''id''))"}'
"#;
const KEYS: &str = r#"
usage_plans:
  - id: tight
    stages: [t]
    throttle: { rate_limit: 1, burst_limit: 2 }
  - id: counted
    stages: [t]
    quota: { limit: 2, period: DAY }
keys:
  - id: tight-key
    usage_plans: [tight]
    value: tight-key-value-0123456789
  - id: counted-key
    usage_plans: [counted]
    value: counted-key-value-0123456789
"#;
const TIGHT: &str = "tight-key-value-0123456789";
const COUNTED: &str = "counted-key-value-0123456789";

/// What the in-process SageMaker was asked, and answers with.
#[derive(Clone, Default)]
struct Model {
    calls: Arc<Mutex<Vec<Invocation>>>,
}

impl Model {
    /// A SageMaker whose every call is recorded and answered by `answer` (after `delay`).
    fn sagemaker(&self, delay: Duration, answer: fn(&Invocation) -> UpstreamReply) -> SageMaker {
        let calls = self.calls.clone();
        SageMaker::local(move |inv: Invocation| {
            let reply = answer(&inv);
            calls.lock().unwrap().push(inv);
            async move {
                tokio::time::sleep(delay).await;
                reply
            }
        })
    }

    fn count(&self) -> usize {
        self.calls.lock().unwrap().len()
    }

    fn last(&self) -> Invocation {
        self.calls.lock().unwrap().last().cloned().unwrap()
    }
}

fn reply(status: u16, headers: &[(&str, &str)], body: &str) -> UpstreamReply {
    UpstreamReply {
        status,
        body: Bytes::from(body.to_owned()),
        headers: headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

fn recommendations(inv: &Invocation) -> UpstreamReply {
    let body = format!(
        r#"{{"echo":{},"recommendations":[{{"item_id":"I1"}}]}}"#,
        String::from_utf8_lossy(&inv.body)
    );
    reply(200, &[("content-type", "application/json")], &body)
}

fn model_error(_: &Invocation) -> UpstreamReply {
    reply(
        424,
        &[
            ("content-type", "application/json"),
            ("x-amzn-errortype", "ModelError"),
        ],
        r#"{"OriginalStatusCode":404,"OriginalMessage":"{\"error\":\"unknown user\"}"}"#,
    )
}

/// 2026-12-05 23:59:00 UTC: a minute before the quota's day ends.
fn clock() -> ManualClock {
    ManualClock::new(Utc.with_ymd_and_hms(2026, 12, 5, 23, 59, 0).unwrap())
}

/// The gateway of [`CONFIG`] and [`KEYS`] on a fresh manual clock, SageMaker answering with
/// `answer` after `delay`.
async fn small(
    delay: Duration,
    answer: fn(&Invocation) -> UpstreamReply,
) -> (Model, ManualClock, Gateway) {
    let model = Model::default();
    let time = clock();
    let gateway = start(CONFIG, KEYS, model.sagemaker(delay, answer), &time).await;
    (model, time, gateway)
}

async fn start(config: &str, keys: &str, upstream: SageMaker, clock: &ManualClock) -> Gateway {
    let config = GatewayConfig::parse("gateway.yaml", config, &|_| None).unwrap();
    let ctx = KeysContext::new(config.stage_names(), config.route_keys());
    let keys: KeySet = parse_keys("keys.yaml", keys, &ctx).unwrap();
    gateway(
        Arc::new(config),
        Arc::new(keys),
        upstream,
        LimitClock::manual(clock),
    )
    .await
    .unwrap()
}

/// One request without a body, as the HTTP adapter hands it over.
async fn get(gateway: &Gateway, target: &str, key: Option<&str>) -> GatewayResponse {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers = vec![("accept".to_owned(), "application/json".to_owned())];
    if let Some(key) = key {
        headers.push(("x-api-key".to_owned(), key.to_owned()));
    }
    let req = GatewayRequest {
        method: "GET".into(),
        path: path.into(),
        query: query.into(),
        headers,
    };
    let mut ctx = RequestContext::new(
        "request-id".into(),
        "Root=1-00000000-000000000000000000000000".into(),
        std::net::IpAddr::from([127, 0, 0, 1]),
        "GET",
        path,
    );
    let memory = gateway.memory.account();
    let mut body = futures_util::stream::empty::<Result<Bytes, std::convert::Infallible>>();
    gateway.handle(&req, &mut body, &memory, &mut ctx).await
}

fn header<'a>(resp: &'a GatewayResponse, name: &str) -> Option<&'a str> {
    resp.headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn text(resp: &GatewayResponse) -> &str {
    std::str::from_utf8(&resp.body).unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_seed_request_reaches_the_model_through_the_shipped_config() {
    let model = Model::default();
    let upstream = model.sagemaker(Duration::ZERO, recommendations);
    let gateway = start(SHIPPED_CONFIG, SHIPPED_KEYS, upstream, &clock()).await;
    let seed = "/temp/recommended-movies/U:114521?k=10&inference_type=deterministic";
    let resp = get(&gateway, seed, Some(DEMO_KEY)).await;
    assert_eq!(resp.status, 200, "{}", text(&resp));
    let call = model.last();
    assert_eq!(call.endpoint_name, "movie-recommender-temp");
    assert_eq!(
        &call.body[..],
        b"{\"user_id\": \"U:114521\", \"k\": 10, \"inference_type\": \"deterministic\"}\n"
            .as_slice(),
        "{:?}",
        call.body
    );
    assert_eq!(
        text(&resp),
        "{\"echo\":{\"user_id\": \"U:114521\", \"k\": 10, \"inference_type\": \"deterministic\"}\n,\"recommendations\":[{\"item_id\":\"I1\"}]}"
    );
    assert_eq!(call.custom_attributes.as_deref(), Some("request-id"));
    // Without the key: API Gateway's 403, and no call.
    let refused = get(&gateway, seed, None).await;
    assert_eq!(
        (refused.status, text(&refused)),
        (403, r#"{"message":"Forbidden"}"#)
    );
    assert_eq!(model.count(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_cached_answer_is_served_until_its_ttl_passes() {
    let (model, time, gateway) = small(Duration::ZERO, recommendations).await;
    let first = get(&gateway, "/t/r/1", Some(COUNTED)).await;
    assert_eq!(first.status, 200, "{}", text(&first));
    assert_eq!(header(&first, "x-sagegate-cache"), Some("miss"));
    time.advance(Duration::from_secs(59));
    let hit = get(&gateway, "/t/r/1", Some(TIGHT)).await;
    assert_eq!(header(&hit, "x-sagegate-cache"), Some("hit"));
    assert_eq!(hit.body, first.body);
    assert_eq!(model.count(), 1, "a hit calls nothing");
    time.advance(Duration::from_secs(2));
    let expired = get(&gateway, "/t/r/1", Some(TIGHT)).await;
    assert_eq!(header(&expired, "x-sagegate-cache"), Some("miss"));
    assert_eq!(model.count(), 2, "past the TTL the model is asked again");
}

#[tokio::test(start_paused = true)]
async fn past_the_burst_a_key_is_throttled_with_retry_after() {
    let (model, time, gateway) = small(Duration::ZERO, recommendations).await;
    for id in ["1", "2"] {
        let resp = get(&gateway, &format!("/t/r/{id}"), Some(TIGHT)).await;
        assert_eq!(resp.status, 200, "{}", text(&resp));
    }
    let throttled = get(&gateway, "/t/r/3", Some(TIGHT)).await;
    assert_eq!(
        (throttled.status, text(&throttled)),
        (429, r#"{"message":"Too Many Requests"}"#)
    );
    assert_eq!(header(&throttled, "retry-after"), Some("1"));
    assert_eq!(model.count(), 2, "a throttled request calls nothing");
    // One token a second: a second later the key gets one more request.
    time.advance(Duration::from_secs(1));
    let again = get(&gateway, "/t/r/3", Some(TIGHT)).await;
    assert_eq!(again.status, 200, "{}", text(&again));
}

#[tokio::test(start_paused = true)]
async fn a_used_up_quota_resets_when_its_day_ends() {
    let (model, time, gateway) = small(Duration::ZERO, recommendations).await;
    for id in ["1", "2"] {
        let resp = get(&gateway, &format!("/t/r/{id}"), Some(COUNTED)).await;
        assert_eq!(resp.status, 200, "{}", text(&resp));
    }
    let over = get(&gateway, "/t/r/3", Some(COUNTED)).await;
    assert_eq!(
        (over.status, text(&over)),
        (429, r#"{"message":"Limit Exceeded"}"#)
    );
    // The day ends at 00:00 UTC, 60 s after the clock's start.
    assert_eq!(header(&over, "retry-after"), Some("60"));
    time.advance(Duration::from_secs(60));
    let next_day = get(&gateway, "/t/r/3", Some(COUNTED)).await;
    assert_eq!(next_day.status, 200, "{}", text(&next_day));
    assert_eq!(model.count(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_models_error_is_passed_through_with_its_status_and_body() {
    let (model, _, gateway) = small(Duration::ZERO, model_error).await;
    let resp = get(&gateway, "/t/r/404", Some(COUNTED)).await;
    assert_eq!(
        (resp.status, text(&resp)),
        (404, r#"{"error":"unknown user"}"#)
    );
    assert_eq!(model.count(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_model_slower_than_the_route_timeout_gives_504() {
    // The route's timeout is 1 s; the model takes 5 s (of paused time: the test does not wait).
    let (model, _, gateway) = small(Duration::from_secs(5), recommendations).await;
    let started = tokio::time::Instant::now();
    let resp = get(&gateway, "/t/r/1", Some(COUNTED)).await;
    assert_eq!(
        (resp.status, text(&resp)),
        (504, r#"{"message": "Endpoint request timed out"}"#)
    );
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    assert_eq!(model.count(), 1);
}

#[tokio::test(start_paused = true)]
async fn overrides_apply_to_the_head_refusals_too() {
    let config = format!(
        "{CONFIG}gateway_responses:\n  REQUEST_TOO_LARGE:\n    status: 400\n    response_templates:\n      application/json: '{{\"too_large\": $context.error.messageString}}'\n"
    );
    let gateway = start(
        &config,
        KEYS,
        Model::default().sagemaker(Duration::ZERO, recommendations),
        &clock(),
    )
    .await;
    for (err, message) in [
        (
            crate::error::GatewayError::RequestTooLarge,
            "Request Too Long",
        ),
        (
            crate::error::GatewayError::HeadersTooLarge,
            "Request Header Fields Too Large",
        ),
    ] {
        let mut ctx = RequestContext::new(
            "id".into(),
            "trace".into(),
            std::net::IpAddr::from([127, 0, 0, 1]),
            "GET",
            "/t/r/1",
        );
        let resp = gateway.refuse(err, None, &mut ctx);
        assert_eq!(
            (resp.status, text(&resp)),
            (400, format!(r#"{{"too_large": "{message}"}}"#).as_str())
        );
        assert_eq!(ctx.error_type, Some("REQUEST_TOO_LARGE"));
    }
}

/// Two throttled stages (burst 1), `a` caching; `{template}` is the request template's version,
/// `{endpoint}` stage `a`'s endpoint, `{burst}` stage `b`'s burst, `{respond}` an integration
/// response block (or nothing).
const RELOADED: &str = r#"
stages:
  a:
    variables: { endpoint: {endpoint} }
    throttle: { rate_limit: 1, burst_limit: 1 }
    cache: { enabled: true, ttl_secs: 60 }
  b:
    variables: { endpoint: ep-b }
    throttle: { rate_limit: 1, burst_limit: {burst} }
routes:
  - method: GET
    path: /r/{id}
    cache:
      key_parameters: [method.request.path.id]
    integration:
      endpoint_name: "${stageVariables.endpoint}"
      passthrough_behavior: NEVER
      request_templates:
        application/json: '{"v": {template}}'
{respond}"#;
const NO_KEYS: &str = "usage_plans: []\nkeys: []\n";

fn reloaded_yaml(endpoint: &str, burst: u32, template: u32, respond: &str) -> String {
    RELOADED
        .replace("{endpoint}", endpoint)
        .replace("{burst}", &burst.to_string())
        .replace("{template}", &template.to_string())
        .replace("{respond}", respond)
}

fn reloaded(endpoint: &str, burst: u32, template: u32, respond: &str) -> Arc<GatewayConfig> {
    let yaml = reloaded_yaml(endpoint, burst, template, respond);
    Arc::new(GatewayConfig::parse("gateway.yaml", &yaml, &|_| None).unwrap())
}

#[tokio::test(start_paused = true)]
async fn a_config_reload_keeps_the_state_it_does_not_change() {
    let model = Model::default();
    let time = clock();
    let upstream = model.sagemaker(Duration::ZERO, recommendations);
    let gateway = start(&reloaded_yaml("ep-a", 1, 1, ""), NO_KEYS, upstream, &time).await;
    for target in ["/a/r/1", "/b/r/1"] {
        assert_eq!(get(&gateway, target, None).await.status, 200);
    }
    // Stage b's throttle changes: it applies at once (new buckets); stage a keeps its count.
    gateway.install_config(reloaded("ep-a", 5, 1, "")).unwrap();
    assert_eq!(get(&gateway, "/b/r/2", None).await.status, 200);
    assert_eq!(get(&gateway, "/a/r/1", None).await.status, 429);
    // Nothing stage a's answers depend on changed: its cache entry is still served.
    time.advance(Duration::from_secs(1));
    let hit = get(&gateway, "/a/r/1", None).await;
    assert_eq!(header(&hit, "x-sagegate-cache"), Some("hit"));
    // A new template: stage a keeps its (empty) bucket, but its cache starts empty, so no answer
    // rendered from the old template is served under the new one.
    gateway.install_config(reloaded("ep-a", 5, 2, "")).unwrap();
    assert_eq!(get(&gateway, "/a/r/1", None).await.status, 429);
    time.advance(Duration::from_secs(1));
    let miss = get(&gateway, "/a/r/1", None).await;
    assert_eq!(header(&miss, "x-sagegate-cache"), Some("miss"));
    assert!(
        text(&miss).contains(r#""echo":{"v": 2}"#),
        "{}",
        text(&miss)
    );
    // A new endpoint variable: a new cache scope, and the call goes to the new endpoint.
    let live = gateway.install_config(reloaded("ep-a2", 5, 2, "")).unwrap();
    assert_eq!(live.generation, 3);
    time.advance(Duration::from_secs(1));
    let miss = get(&gateway, "/a/r/1", None).await;
    assert_eq!(header(&miss, "x-sagegate-cache"), Some("miss"));
    assert_eq!(model.last().endpoint_name, "ep-a2");
    assert_eq!(model.count(), 5, "a1, b1, b2, and two misses");
}

#[tokio::test(start_paused = true)]
async fn a_request_in_flight_finishes_on_the_config_it_started_with() {
    let model = Model::default();
    let time = clock();
    let respond = "      responses:\n        - selection_pattern: \"200\"\n          status: 200\n          \
                   response_templates:\n            application/json: '{\"new\": true}'\n";
    let upstream = model.sagemaker(Duration::from_secs(5), recommendations);
    let gateway = start(&reloaded_yaml("ep-a", 5, 1, ""), NO_KEYS, upstream, &time).await;
    let (in_flight, ()) = tokio::join!(get(&gateway, "/b/r/1", None), async {
        // The call takes 5 s (paused time); the reload lands during it.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(model.count(), 1, "the request is at the model");
        gateway
            .install_config(reloaded("ep-a", 5, 1, respond))
            .unwrap();
    });
    assert_eq!(in_flight.status, 200);
    assert!(
        text(&in_flight).contains("recommendations"),
        "{}",
        text(&in_flight)
    );
    let after = get(&gateway, "/b/r/2", None).await;
    assert_eq!(text(&after), r#"{"new": true}"#);
}
