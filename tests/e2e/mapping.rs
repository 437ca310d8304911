//! Mapping templates end to end (issue 4): request templates selected by `Content-Type`, response
//! templates selected by `Accept`, integration responses chosen by SageMaker's status, response
//! header mappings, `$context.responseOverride`, gateway response overrides, passthrough
//! behaviours, binary media types, run-time template failures, `check-config` positions inside a
//! template, and the shipped seed template under a hostile user id.
//!
//! Each test writes its own `gateway.yaml` (see [`gateway_yaml`]) and checks bytes: what the
//! upstream received and what the client got.

use crate::kit::config::{KEY_A, ROUTE};
use crate::kit::{
    DEMO_KEY, Gateway, KeysYaml, Recommender, SageMakerReply, Upstream, sagegate_bin,
    shipped_config_dir,
};
use crate::kit::{WAIT, eventually};

/// A gateway.yaml with stages `temp` (endpoint `ep-temp`, generous throttles) and `prod` (for the
/// standard keys file), the given top-level
/// `extra` YAML (gateway responses, binary media types) and `routes` (YAML list items).
pub fn gateway_yaml(extra: &str, routes: &str) -> String {
    format!(
        r#"server:
  listen: "127.0.0.1:0"
  admin_listen: ""
  trusted_proxy_hops: 0
  drain_grace_secs: 5
sagemaker:
  region: us-east-1
  max_attempts: 2
  connect_timeout_ms: 1000
stages:
  temp:
    variables: {{ endpoint: ep-temp }}
    throttle: {{ rate_limit: 1000, burst_limit: 2000 }}
  prod:
    variables: {{ endpoint: ep-prod }}
{extra}
routes:
{routes}"#
    )
}

/// The templated route: JSON and CSV request templates, JSON and text response templates.
const TEMPLATED: &str = r#"  - method: POST
    path: /tmpl
    api_key_required: false
    integration:
      endpoint_name: ep-temp
      content_type: application/json
      passthrough_behavior: WHEN_NO_TEMPLATES
      request_templates:
        application/json: |-
          {"user": "$util.escapeJavaScript($input.path('$.user'))", "n": $input.json('$.n'), "stage": "$context.stage", "ct": "json"}
        text/csv: |-
          {"csv": "$util.escapeJavaScript($input.body)", "ct": "csv"}
      responses:
        - status: 200
          response_templates:
            application/json: |-
              {"top": $input.json('$.recommendations[0].item_id'), "status": $context.integration.status}
            text/plain: |-
              top=$input.path('$.recommendations[0].item_id')
  - method: POST
    path: /broken
    api_key_required: false
    integration:
      endpoint_name: ep-temp
      request_templates:
        application/json: |-
          {"x": $input.json('$.x')}
        text/plain: |-
          {"decoded": "$util.base64Decode('!!')"}
"#;

fn post(
    gateway: &Gateway,
    path: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> crate::kit::gateway::Request {
    gateway
        .request(reqwest::Method::POST, path)
        .header("content-type", content_type)
        .body(body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_and_response_templates_are_selected_by_content_type_and_accept() {
    let upstream = Upstream::replying(SageMakerReply::ok(
        r#"{"recommendations":[{"item_id":"M:7","score":0.9},{"item_id":"M:8","score":0.1}]}"#,
    ))
    .await;
    let gateway = Gateway::builder()
        .config_text(&gateway_yaml("", TEMPLATED))
        .upstream(&upstream)
        .start()
        .await;

    // JSON body → the JSON request template, byte for byte; Accept JSON → the JSON response template.
    let reply = post(
        &gateway,
        "/temp/tmpl",
        "application/json; charset=utf-8",
        r#"{"user":"a\"b","n":[1,2]}"#,
    )
    .header("accept", "application/json")
    .send()
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.text(), r#"{"top": "M:7", "status": 200}"#);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let sent = upstream.single();
    assert_eq!(
        String::from_utf8_lossy(&sent.body),
        r#"{"user": "a\"b", "n": [1,2], "stage": "temp", "ct": "json"}"#
    );
    assert_eq!(sent.header("content-type"), Some("application/json"));

    // CSV body → the CSV template; Accept text/plain → the text template and its content type.
    let reply = post(&gateway, "/temp/tmpl", "text/csv", "u1,3\nu2,4")
        .header("accept", "text/plain")
        .send()
        .await;
    assert_eq!((reply.status, reply.text().as_str()), (200, "top=M:7"));
    assert_eq!(reply.header("content-type"), Some("text/plain"));
    let sent = upstream.received().pop().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&sent.body),
        r#"{"csv": "u1,3\nu2,4", "ct": "csv"}"#
    );

    // An Accept without a template falls back to application/json (API Gateway's rule).
    let reply = post(
        &gateway,
        "/temp/tmpl",
        "application/json",
        r#"{"user":"x","n":1}"#,
    )
    .header("accept", "application/xml")
    .send()
    .await;
    assert_eq!(reply.text(), r#"{"top": "M:7", "status": 200}"#);

    // WHEN_NO_TEMPLATES on a route with templates: an unmatched type is 415, nothing sent upstream.
    let before = upstream.count();
    post(
        &gateway,
        "/temp/tmpl",
        "multipart/form-data; boundary=x",
        "--x--",
    )
    .send()
    .await
    .assert_gateway_error(
        415,
        r#"{"message":"Unsupported Media Type"}"#,
        "UnsupportedMediaTypeException",
    );
    assert_eq!(upstream.count(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_failing_at_run_time_is_a_500_logged_with_route_and_cause() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::builder()
        .config_text(&gateway_yaml("", TEMPLATED))
        .upstream(&upstream)
        .start()
        .await;
    // `$input.json('$.x')` on a body that is not JSON.
    let reply = post(
        &gateway,
        "/temp/broken",
        "application/json",
        "this is not json",
    )
    .send()
    .await;
    reply.assert_gateway_error(
        500,
        r#"{"message": "Internal server error"}"#,
        "InternalServerErrorException",
    );
    // `$util.base64Decode('!!')`.
    let reply2 = post(&gateway, "/temp/broken", "text/plain", "hello")
        .send()
        .await;
    reply2.assert_gateway_error(
        500,
        r#"{"message": "Internal server error"}"#,
        "InternalServerErrorException",
    );
    assert_eq!(upstream.count(), 0, "a failed template sends nothing");
    for (reply, cause) in [(&reply, "request template"), (&reply2, "request template")] {
        let id = reply.request_id();
        let line = eventually("the failure log line", WAIT, || {
            let found = gateway
                .log_lines()
                .into_iter()
                .find(|l| l["requestId"] == id.as_str() && l["message"] == "request failed");
            async move { found }
        })
        .await;
        assert_eq!(line["route"], "/broken", "{line}");
        let logged = line["cause"].as_str().unwrap_or_default();
        assert!(logged.contains(cause), "cause names the template: {line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_behaviours_and_binary_media_types() {
    let routes = r#"  - method: POST
    path: /nomatch
    integration:
      endpoint_name: ep-temp
      passthrough_behavior: WHEN_NO_MATCH
      request_templates:
        application/json: '{"t": 1}'
  - method: POST
    path: /notemplates
    integration:
      endpoint_name: ep-temp
      passthrough_behavior: WHEN_NO_TEMPLATES
      request_templates:
        application/json: '{"t": 2}'
  - method: POST
    path: /never
    integration:
      endpoint_name: ep-temp
      passthrough_behavior: NEVER
      request_templates:
        application/json: '{"t": 3}'
"#;
    let upstream = Upstream::start().await;
    let gateway = Gateway::builder()
        .config_text(&gateway_yaml("binary_media_types: [image/png]", routes))
        .upstream(&upstream)
        .start()
        .await;
    let multipart_type = "multipart/form-data; boundary=----e2e";
    let multipart: &[u8] =
        b"------e2e\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.bin\"\r\n\r\n\x00\xff\xfe\r\n------e2e--\r\n";

    // WHEN_NO_MATCH: the bytes and their Content-Type reach SageMaker untouched.
    post(
        &gateway,
        "/temp/nomatch",
        multipart_type,
        multipart.to_vec(),
    )
    .send()
    .await
    .assert_ok();
    let sent = upstream.single();
    assert_eq!(sent.body, multipart);
    assert_eq!(sent.header("content-type"), Some(multipart_type));

    // WHEN_NO_TEMPLATES (route has templates) and NEVER: 415.
    for path in ["/temp/notemplates", "/temp/never"] {
        post(&gateway, path, multipart_type, multipart.to_vec())
            .send()
            .await
            .assert_gateway_error(
                415,
                r#"{"message":"Unsupported Media Type"}"#,
                "UnsupportedMediaTypeException",
            );
    }
    assert_eq!(upstream.count(), 1);

    // The matching template still applies under NEVER.
    post(&gateway, "/temp/never", "application/json", "{}")
        .send()
        .await
        .assert_ok();
    assert_eq!(upstream.received()[1].body, br#"{"t": 3}"#);

    // A binary media type passes through even under NEVER, bytes and type intact.
    let png: Vec<u8> = [
        0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0xff, 0x80,
    ]
    .into_iter()
    .collect();
    post(&gateway, "/temp/never", "image/png", png.clone())
        .send()
        .await
        .assert_ok();
    let sent = upstream.received().pop().unwrap();
    assert_eq!(sent.body, png);
    assert_eq!(sent.header("content-type"), Some("image/png"));
}

/// Integration responses and header mapping in front of the real recommender (its 400 comes back
/// from SageMaker's Runtime path as a 424 `ModelError`).
const RECOMMENDER_ROUTE: &str = r#"  - method: GET
    path: /recommended-movies/{user_id}
    api_key_required: true
    integration:
      endpoint_name: ep-temp
      content_type: application/json
      request_templates:
        application/json: |-
          {"user_id": "$util.escapeJavaScript($input.params('user_id'))", "k": $input.params('k'), "inference_type": "$input.params('inference_type')"}
      responses:
        - selection_pattern: "424"
          status: 400
          response_templates:
            application/json: $input.path('$.OriginalMessage')
        - selection_pattern: '5\d{2}'
          status: 503
          response_parameters:
            method.response.header.x-mapped: "'5xx'"
          response_templates:
            application/json: '{"message": "model unavailable", "upstream": $context.integration.status}'
        - status: 200
          response_parameters:
            method.response.header.x-variant: integration.response.header.x-amzn-invoked-production-variant
            method.response.header.x-fixed: "'yes'"
  - method: GET
    path: /created/{user_id}
    api_key_required: false
    integration:
      endpoint_name: ep-temp
      responses:
        - status: 200
          response_templates:
            application/json: |-
              #set($context.responseOverride.status = 201)
              #set($context.responseOverride.header.x-made = "here")
              {"made": "$input.params('user_id')"}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integration_responses_map_model_errors_and_headers_from_the_real_recommender() {
    let recommender = Recommender::start().await;
    let gateway = Gateway::builder()
        .config_text(&gateway_yaml("", RECOMMENDER_ROUTE))
        .keys(KeysYaml::standard())
        .upstream_url(&recommender.url())
        .start()
        .await;

    // Success: the default response, the variant header mapped from SageMaker's response header.
    let reply = gateway
        .get("/temp/recommended-movies/U:1?k=3&inference_type=deterministic")
        .key(KEY_A)
        .send()
        .await;
    let body = reply.assert_ok();
    assert_eq!(body["recommendations"].as_array().map(Vec::len), Some(3));
    let variant = reply.header("x-variant").expect("x-variant mapped");
    assert!(!variant.is_empty());
    assert_eq!(reply.header("x-fixed"), Some("yes"));

    // The model rejects k=0 with a 400: pattern "424" gives the client a 400 and the model's message.
    let reply = gateway
        .get("/temp/recommended-movies/U:1?k=0&inference_type=deterministic")
        .key(KEY_A)
        .send()
        .await;
    assert_eq!(reply.status, 400, "{reply:?}");
    // The same payload straight to the container: the client got exactly its answer.
    let direct = reqwest::Client::new()
        .post(format!("{}/invocations", recommender.url()))
        .header("content-type", "application/json")
        .body(r#"{"user_id": "U:1", "k": 0, "inference_type": "deterministic"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(direct.status(), 400);
    assert_eq!(reply.text(), direct.text().await.unwrap());
    assert_ne!(reply.text(), r#"{"message": "Internal server error"}"#);

    // $context.responseOverride: status 201 and a header set by the template.
    let reply = gateway
        .get("/temp/created/U:9")
        .header("accept", "application/json")
        .send()
        .await;
    assert_eq!(
        (reply.status, reply.text().as_str()),
        (201, r#"{"made": "U:9"}"#)
    );
    assert_eq!(reply.header("x-made"), Some("here"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5xx_pattern_maps_sagemaker_failures() {
    let upstream = Upstream::replying(SageMakerReply::service_unavailable()).await;
    let gateway = Gateway::builder()
        .config_text(&gateway_yaml("", RECOMMENDER_ROUTE))
        .keys(KeysYaml::standard())
        .upstream(&upstream)
        .start()
        .await;
    let reply = gateway
        .get("/temp/recommended-movies/U:1?k=3&inference_type=deterministic")
        .key(KEY_A)
        .send()
        .await;
    assert_eq!(
        (reply.status, reply.text().as_str()),
        (503, r#"{"message": "model unavailable", "upstream": 503}"#),
        "{reply:?}"
    );
    assert_eq!(reply.header("x-mapped"), Some("5xx"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_responses_are_overridden_per_type_with_a_default_4xx_fallback() {
    let extra = r#"gateway_responses:
  THROTTLED:
    status: 503
    response_parameters:
      gatewayresponse.header.x-slow-down: "'please'"
      gatewayresponse.header.x-req: context.requestId
    response_templates:
      application/json: '{"error": $context.error.messageString, "type": "$context.error.responseType", "id": "$context.requestId"}'
  DEFAULT_4XX:
    response_templates:
      application/json: '{"oops": $context.error.messageString}'
"#;
    let routes = r#"  - method: GET
    path: /recommended-movies/{user_id}
    api_key_required: true
    integration:
      endpoint_name: ep-temp
"#;
    let upstream = Upstream::start().await;
    let keys = KeysYaml::new()
        .plan(crate::kit::config::Plan::new("tiny", &["temp"]).throttle(0.001, 1))
        .key(crate::kit::config::Key::new("partner-a", KEY_A, &["tiny"]));
    let gateway = Gateway::builder()
        .config_text(&gateway_yaml(extra, routes))
        .keys(keys)
        .upstream(&upstream)
        .start()
        .await;
    let path = "/temp/recommended-movies/U:1";
    gateway.get(path).key(KEY_A).send().await.assert_ok();
    let throttled = gateway.get(path).key(KEY_A).send().await;
    assert_eq!(throttled.status, 503, "{throttled:?}");
    let id = throttled.request_id();
    assert_eq!(
        throttled.text(),
        format!(r#"{{"error": "Too Many Requests", "type": "THROTTLED", "id": "{id}"}}"#)
    );
    assert_eq!(throttled.header("x-slow-down"), Some("please"));
    assert_eq!(throttled.header("x-req"), Some(id.as_str()));

    // MISSING_AUTHENTICATION_TOKEN has no override of its own: DEFAULT_4XX applies, status kept.
    let missing = gateway.get("/temp/no/such/route").send().await;
    assert_eq!(
        (missing.status, missing.text().as_str()),
        (403, r#"{"oops": "Missing Authentication Token"}"#)
    );
    assert_eq!(
        missing.header("x-amzn-errortype"),
        Some("MissingAuthenticationTokenException")
    );
    let _ = ROUTE;
}

#[test]
fn check_config_locates_an_error_inside_a_template() {
    let dir = tempfile::tempdir().unwrap();
    let routes = r#"  - method: POST
    path: /bad
    integration:
      endpoint_name: ep-temp
      request_templates:
        application/json: |
          {"a": 1,
           "b": #if($x) 2 #else 3
          }
"#;
    let text = gateway_yaml("", routes);
    let first_template_line = text
        .lines()
        .position(|l| l.contains(r#"{"a": 1,"#))
        .unwrap()
        + 1;
    let if_line = first_template_line + 1;
    let config = dir.path().join("gateway.yaml");
    let keys = dir.path().join("keys.yaml");
    std::fs::write(&config, &text).unwrap();
    std::fs::write(&keys, KeysYaml::standard().render()).unwrap();
    let out = std::process::Command::new(sagegate_bin())
        .arg("check-config")
        .arg("--config")
        .arg(&config)
        .arg("--keys")
        .arg(&keys)
        .env_clear()
        .output()
        .unwrap();
    assert!(!out.status.success(), "{out:?}");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let prefix = format!("{}:", config.display());
    let located: Vec<(usize, usize)> = all
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter(|l| l.contains("template"))
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let line = parts.next()?.trim().parse().ok()?;
            let col = parts.next()?.trim().parse().ok()?;
            Some((line, col))
        })
        .collect();
    assert!(!located.is_empty(), "no file:line:col error: {all}");
    // The unclosed `#if`, on a template line indented one space deeper than the block: the
    // extra space is template text and counts in the column.
    let text_line = text.lines().nth(if_line - 1).unwrap();
    let if_col = text_line.find("#if").unwrap() + 1;
    assert_eq!(located[0], (if_line, if_col), "{all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_seed_template_keeps_a_hostile_user_id_inside_a_json_string() {
    let recommender = Recommender::start().await;
    let upstream = Upstream::start().await;
    let shipped = |name: &str| std::fs::read_to_string(shipped_config_dir().join(name)).unwrap();
    for (url, to_recommender) in [(recommender.url(), true), (upstream.url(), false)] {
        let gateway = Gateway::builder()
            .config_text(&shipped("gateway.yaml"))
            .keys_text(&shipped("keys.yaml"))
            .upstream_url(&url)
            .start()
            .await;
        let reply = gateway
            .get("/temp/recommended-movies/O%27Brien%22%7D?k=2&inference_type=deterministic")
            .key(DEMO_KEY)
            .send()
            .await;
        let body = reply.assert_ok();
        if to_recommender {
            assert_eq!(body["user_id"], "O'Brien\"}", "{body}");
        } else {
            let sent = upstream.single().json();
            assert_eq!(sent["user_id"], "O'Brien\"}", "{sent}");
            assert_eq!(sent["k"], 2);
            assert_eq!(sent.as_object().map(|o| o.len()), Some(3), "{sent}");
        }
    }
}
