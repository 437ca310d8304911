//! Mapping templates end to end (issues 4 and 15): request templates selected by `Content-Type`,
//! response templates selected by `Accept`, integration responses chosen by SageMaker's status,
//! response header mappings, `$context.responseOverride` (also set in the request template),
//! gateway response overrides, passthrough behaviours, binary media types, run-time template
//! failures located by line:col, bodies that are not JSON, null and missing values, headers the
//! front door blanks, the template JSON memory bound, `check-config` positions inside a template,
//! and the shipped seed template under a hostile user id.
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
async fn a_template_failing_at_run_time_is_a_500_logged_with_route_template_and_position() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::builder()
        .config_text(&gateway_yaml("", TEMPLATED))
        .upstream(&upstream)
        .start()
        .await;
    // `$util.base64Decode('!!')`, at 1:14 of the text/plain template.
    let reply = post(&gateway, "/temp/broken", "text/plain", "hello")
        .send()
        .await;
    reply.assert_gateway_error(
        500,
        r#"{"message": "Internal server error"}"#,
        "InternalServerErrorException",
    );
    // `$input.json('$.x')` on a body that starts like JSON and is not: the client's error.
    let reply2 = post(&gateway, "/temp/broken", "application/json", r#"{"x": "#)
        .send()
        .await;
    reply2.assert_gateway_error(
        400,
        r#"{"message": "Could not process payload"}"#,
        "BadRequestException",
    );
    assert_eq!(upstream.count(), 0, "a failed template sends nothing");
    for (reply, cause) in [
        (
            &reply,
            "request template text/plain of POST /broken: 1:14: ",
        ),
        (
            &reply2,
            "request template application/json of POST /broken: 1:7: ",
        ),
    ] {
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

/// Routes for what issue 15 fixed: payloads that are not JSON, null and missing values, headers the
/// front door blanks, overrides set in the request template, the template JSON memory bound.
const FIDELITY: &str = r##"  - method: POST
    path: /payload
    api_key_required: false
    integration:
      endpoint_name: ep-temp
      request_templates:
        application/json: |-
          {"x": $input.json('$.x'), "whole": $input.json('$'), "raw": "$util.escapeJavaScript($input.path('$'))", "missing": "$input.path('$.missing')", "stage": "$stageVariables.nope", "gone": #if($input.path('$.gone') == "")"empty"#else"set"#end}
        application/x-www-form-urlencoded: |-
          {#foreach($kv in $input.path('$').split('&'))#set($p = $kv.split('='))"$util.urlDecode($p[0])": "$util.urlDecode($p[1])"#if($foreach.hasNext), #end#end}
  - method: POST
    path: /whole
    api_key_required: false
    integration:
      endpoint_name: ep-temp
      request_templates:
        application/json: $input.json('$')
  - method: GET
    path: /headers
    api_key_required: false
    integration:
      endpoint_name: ep-temp
      request_templates:
        application/json: |-
          {"server": "$input.params('Server')", "max": "$input.params('Max-Forwards')", "md5": "$input.params('Content-MD5')", "www": "$input.params('WWW-Authenticate')", "kept": "$input.params('X-Thing')"}
  - method: GET
    path: /overridden
    api_key_required: false
    integration:
      endpoint_name: ep-temp
      request_templates: &overriding
        application/json: |-
          #set($context.responseOverride.status = 202)
          #set($context.responseOverride.header.x-from-request = "request")
          #set($context.requestOverride.querystring.k = "9")
          {}
  - method: GET
    path: /overridden-mapped
    api_key_required: false
    integration:
      endpoint_name: ep-temp
      request_templates: *overriding
      responses:
        - status: 200
          response_parameters:
            method.response.header.x-from-request: "'parameter'"
  - method: GET
    path: /overridden-again
    api_key_required: false
    integration:
      endpoint_name: ep-temp
      request_templates: *overriding
      responses:
        - status: 200
          response_templates:
            application/json: |-
              #set($context.responseOverride.header.x-from-request = "response")
              {"status": "$context.responseOverride.status", "k": "$context.requestOverride.querystring.k"}
"##;

async fn fidelity_gateway(upstream: &Upstream) -> Gateway {
    Gateway::builder()
        .config_text(&gateway_yaml("", FIDELITY))
        .upstream(upstream)
        .start()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_that_are_not_json_and_missing_values_render_as_api_gateway_renders_them() {
    let upstream = Upstream::start().await;
    let gateway = fidelity_gateway(&upstream).await;
    let sent = |body: &str, content_type: &str| {
        let request = post(&gateway, "/temp/payload", content_type, body.to_owned());
        let upstream = &upstream;
        async move {
            request.send().await.assert_ok();
            String::from_utf8_lossy(&upstream.received().pop().unwrap().body).into_owned()
        }
    };
    // JSON: the values; a missing path, an unknown stage variable and null all render as nothing.
    assert_eq!(
        sent(r#"{"x": [1, "a"], "gone": null}"#, "application/json").await,
        r#"{"x": [1,"a"], "whole": {"x":[1,"a"],"gone":null}, "raw": "{x=[1,\"a\"], gone=null}", "missing": "", "stage": "", "gone": "empty"}"#
    );
    // Text that is not JSON reads as one string; nothing under it.
    assert_eq!(
        sent("a=b&c=d", "application/json").await,
        r#"{"x": "", "whole": "a=b&c=d", "raw": "a=b&c=d", "missing": "", "stage": "", "gone": "empty"}"#
    );
    // No body: no document.
    assert_eq!(
        sent("", "application/json").await,
        r#"{"x": "", "whole": "", "raw": "", "missing": "", "stage": "", "gone": "empty"}"#
    );
    // A form body split with $input.path('$'), as the widely used form templates do.
    assert_eq!(
        sent(
            "name=Marcus&email=email%40example.com&message=",
            "application/x-www-form-urlencoded"
        )
        .await,
        r#"{"name": "Marcus", "email": "email@example.com", "message": ""}"#
    );
    // A body that starts like JSON but is not: 400, nothing sent.
    let before = upstream.count();
    post(
        &gateway,
        "/temp/payload",
        "application/json",
        r#"{"x": [1,"#,
    )
    .send()
    .await
    .assert_gateway_error(
        400,
        r#"{"message": "Could not process payload"}"#,
        "BadRequestException",
    );
    assert_eq!(upstream.count(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_the_front_door_blanks_are_empty_in_templates() {
    let upstream = Upstream::start().await;
    let gateway = fidelity_gateway(&upstream).await;
    gateway
        .get("/temp/headers")
        .header("server", "spoofed")
        .header("max-forwards", "3")
        .header("content-md5", "Q2hlY2sgSW50ZWdyaXR5IQ==")
        .header("www-authenticate", "Basic realm=x")
        .header("x-thing", "kept")
        .send()
        .await
        .assert_ok();
    assert_eq!(
        String::from_utf8_lossy(&upstream.single().body),
        r#"{"server": "", "max": "", "md5": "", "www": "", "kept": "kept"}"#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_overrides_set_in_the_request_template_reach_the_client() {
    let upstream = Upstream::replying(SageMakerReply::ok(r#"{"ok":true}"#)).await;
    let gateway = fidelity_gateway(&upstream).await;
    // No integration responses: the model's answer, with the request template's status and header.
    let reply = gateway.get("/temp/overridden").send().await;
    assert_eq!(
        (reply.status, reply.text().as_str()),
        (202, r#"{"ok":true}"#)
    );
    assert_eq!(reply.header("x-from-request"), Some("request"));
    // An integration response without a template: the override wins over its response parameter.
    let reply = gateway.get("/temp/overridden-mapped").send().await;
    assert_eq!(
        (reply.status, reply.text().as_str()),
        (202, r#"{"ok":true}"#)
    );
    assert_eq!(reply.header("x-from-request"), Some("request"));
    // A response template reads both overrides and sets the header again: its value wins.
    let reply = gateway.get("/temp/overridden-again").send().await;
    assert_eq!(
        (reply.status, reply.text().as_str()),
        (202, r#"{"status": "202", "k": "9"}"#)
    );
    assert_eq!(reply.header("x-from-request"), Some("response"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_whose_json_would_pass_the_template_memory_bound_is_refused() {
    let upstream = Upstream::start().await;
    let gateway = fidelity_gateway(&upstream).await;
    // 2 MB of `0,`: a million values, counted at 144 MB (two 72-byte slots each), over the 128 MiB
    // bound.
    let big = format!("[{}0]", "0,".repeat(1_000_000));
    post(&gateway, "/temp/whole", "application/json", big)
        .send()
        .await
        .assert_gateway_error(
            413,
            r#"{"message":"Request Too Long"}"#,
            "RequestTooLongException",
        );
    assert_eq!(upstream.count(), 0);
    // The same route passes an ordinary body through.
    post(
        &gateway,
        "/temp/whole",
        "application/json",
        r#"{"a": [1, 2]}"#,
    )
    .send()
    .await
    .assert_ok();
    assert_eq!(upstream.single().body, br#"{"a":[1,2]}"#);
}
