//! `sagegate test-invoke`: API Gateway's console "Test" button as a command.
//!
//! Input: the compiled configuration, one request (stage, method, resource path, query, headers,
//! body) and optionally what SageMaker answers (status, body, headers). Output: one JSON object —
//! `endpoint`, `headers` and `body` of the SageMaker call the gateway would make, and with an answer,
//! `response` (`status`, `headers`, `body`) the client would get — or an [`Refused`] naming the
//! route, the template and its line:col.
//!
//! It runs the gateway's own stages, in the gateway's order ([`crate::pipeline`]): route, decode the
//! query, take the body (refused over `server.max_body_bytes`, as the gateway does), validate,
//! select and render the request template, assemble SageMaker's headers; then
//! classify the answer as the lean client does ([`crate::upstream::classify`]), select the
//! integration response, render the response template and shape gateway responses. Like the
//! console's Test, it skips the API key, throttling, quotas and the stage cache, and calls nothing.

use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::config::GatewayConfig;
use crate::context::RequestContext;
use crate::error::GatewayError;
use crate::integration;
use crate::message::{GatewayRequest, GatewayResponse};
use crate::upstream::{UpstreamReply, classify};

/// The request to try.
#[derive(Debug, Clone, Default)]
pub struct TestRequest {
    /// Stage name (the first path segment).
    pub stage: String,
    /// HTTP method.
    pub method: String,
    /// Resource path after the stage, e.g. `/recommended-movies/U:114521`.
    pub path: String,
    /// Raw query string, with or without the leading `?`.
    pub query: String,
    /// Request headers, in order.
    pub headers: Vec<(String, String)>,
    /// Request body.
    pub body: Bytes,
}

/// What SageMaker answers, to try the response side.
#[derive(Debug, Clone)]
pub struct TestAnswer {
    /// SageMaker's HTTP status (200; 424 for a model error; 429; 5xx).
    pub status: u16,
    /// Its body.
    pub body: Bytes,
    /// Its headers (names compared case-insensitively).
    pub headers: Vec<(String, String)>,
}

/// Why the gateway would not make the call, or could not shape the answer: the request or the
/// configuration is wrong. The message names the route, the template and its line:col when a
/// template failed, and what a client would get.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(String);

/// Runs `request` (and `answer`, if any) through the gateway's stages.
pub fn run(
    config: &GatewayConfig,
    request: &TestRequest,
    answer: Option<TestAnswer>,
) -> Result<Value, Refused> {
    let path = format!(
        "/{}/{}",
        request.stage.trim_matches('/'),
        request.path.trim_start_matches('/')
    );
    let req = GatewayRequest {
        method: request.method.to_ascii_uppercase(),
        path,
        query: request.query.trim_start_matches('?').to_owned(),
        headers: request
            .headers
            .iter()
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect(),
    };
    let mut ctx = RequestContext::new(
        uuid::Uuid::new_v4().to_string(),
        crate::server::new_trace_id(),
        std::net::IpAddr::from([127, 0, 0, 1]),
        &req.method,
        &req.path,
    );
    ctx.user_agent = req.header("user-agent").unwrap_or_default().to_owned();
    let refused = |e: GatewayError| refusal(&req, e);

    // route
    let (stage, route, path_params) = config.route(&req, &mut ctx).map_err(refused)?;
    let query = crate::route::decode_query(&req.query, config.server.decode_parameters)
        .map_err(|e| refused(GatewayError::InvalidRequest(e.to_string())))?;
    // Like the console's Test, no budget applies: an account of an unlimited one.
    let memory = crate::memory::MemoryBudget::new(u64::MAX).account();
    let mut input = integration::mapping_input(stage, &req, path_params, query, &memory);
    // read body
    if request.body.len() > config.server.max_body_bytes {
        return Err(refused(GatewayError::RequestTooLarge));
    }
    input.body = request.body.clone();
    // validate
    crate::validate::request(route, &input, &mut ctx).map_err(refused)?;
    // render request
    let (invocation, overrides) =
        integration::invocation(config, stage, route, &input, &ctx).map_err(refused)?;

    // A streaming route calls InvokeEndpointWithResponseStream, whose accept header is
    // SageMaker's own, and refuses to open a session.
    let streaming = route.integration.stream.is_some();
    if streaming {
        crate::relay::check_session(invocation.session_id.as_deref()).map_err(refused)?;
    }
    let accept = if streaming {
        "X-Amzn-SageMaker-Accept"
    } else {
        "Accept"
    };
    let mut headers = Map::new();
    let named = [
        ("Content-Type", Some(invocation.content_type.as_str())),
        (accept, Some(invocation.accept.as_str())),
    ]
    .into_iter()
    .chain(invocation.optional_headers());
    for (name, value) in named {
        if let Some(v) = value {
            headers.insert(name.to_owned(), Value::String(v.to_owned()));
        }
    }
    let mut out = Map::new();
    out.insert("endpoint".into(), json!(invocation.endpoint_name));
    if streaming {
        out.insert(
            "operation".into(),
            json!("InvokeEndpointWithResponseStream"),
        );
    }
    out.insert("headers".into(), Value::Object(headers));
    body_fields(&mut out, &invocation.body);

    if let Some(answer) = answer {
        if streaming && (200..300).contains(&answer.status) {
            return Err(Refused(format!(
                "{} {}: a streaming route (mode: stream) relays SageMaker's parts as they arrive \
                 (chunked, or Server-Sent Events when Accept names text/event-stream), with no \
                 integration response or template to try; leave out --upstream-status to see \
                 the call, or give an error status to see the error response",
                req.method, req.path
            )));
        }
        let reply = UpstreamReply {
            status: answer.status,
            body: answer.body,
            headers: answer
                .headers
                .into_iter()
                .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
                .collect(),
        };
        let result = if (200..300).contains(&reply.status) {
            Ok(reply)
        } else {
            Err(classify::from_reply(reply))
        };
        // select integration response + render response
        let response = match integration::response(route, result, &input, &mut ctx, &overrides) {
            Ok(r) => r,
            // A template or selection that fails is the configuration's fault, not an answer.
            Err(e @ GatewayError::ApiConfiguration(_)) => return Err(refused(e)),
            Err(e) => {
                integration::gateway_response(&e, &config.gateway_responses, Some(&input), &ctx)
            }
        };
        out.insert("response".into(), response_json(&response));
    }
    Ok(Value::Object(out))
}

/// `body` as text, or `body_base64` when it is not UTF-8.
fn body_fields(out: &mut Map<String, Value>, body: &[u8]) {
    match std::str::from_utf8(body) {
        Ok(text) => out.insert("body".into(), json!(text)),
        Err(_) => {
            use base64::Engine as _;
            out.insert(
                "body_base64".into(),
                json!(base64::engine::general_purpose::STANDARD.encode(body)),
            )
        }
    };
}

fn response_json(resp: &GatewayResponse) -> Value {
    let mut headers = Map::new();
    for (name, value) in &resp.headers {
        headers.insert(name.clone(), Value::String(value.clone()));
    }
    let mut out = Map::new();
    out.insert("status".into(), json!(resp.status));
    out.insert("headers".into(), Value::Object(headers));
    body_fields(&mut out, &resp.body);
    Value::Object(out)
}

fn refusal(req: &GatewayRequest, e: GatewayError) -> Refused {
    let answer = e.default_response();
    Refused(format!(
        "{} {}: {e}; a client would get {} {}",
        req.method,
        req.path,
        answer.status,
        String::from_utf8_lossy(&answer.body)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"stages:
  temp:
    variables: { endpoint: ep-temp }
routes:
  - method: POST
    path: /items/{id}
    validation: { required_query: [k] }
    integration:
      endpoint_name: "${stageVariables.endpoint}"
      custom_attributes: method.request.header.x-attrs
      request_templates:
        application/json: |-
          #set($context.responseOverride.header.x-req = "yes")
          {"id": "$input.params('id')", "k": $input.params('k'), "n": $input.json('$.n')}
      responses:
        - selection_pattern: "424"
          status: 400
          response_templates:
            application/json: '{"model": $input.json(''$.OriginalMessage'')}'
        - status: 200
          response_templates:
            application/json: |-
              {"top": $input.json('$.top'), "bad": $util.base64Decode('!!')}
"#;

    fn config() -> GatewayConfig {
        GatewayConfig::parse("test.yaml", CONFIG, &|_| None).unwrap()
    }

    fn request(query: &str, body: &str) -> TestRequest {
        TestRequest {
            stage: "temp".into(),
            method: "post".into(),
            path: "/items/A:1".into(),
            query: query.into(),
            headers: vec![
                ("Content-Type".into(), "application/json".into()),
                ("X-Attrs".into(), "a=b".into()),
            ],
            body: Bytes::from(body.to_owned()),
        }
    }

    #[test]
    fn prints_the_call_the_gateway_would_make() {
        let mut out = run(&config(), &request("?k=3", r#"{"n": [1]}"#), None).unwrap();
        // The inference id defaults to the request's id, new on every run.
        let id = out["headers"]
            .as_object_mut()
            .and_then(|h| h.remove("X-Amzn-SageMaker-Inference-Id"));
        assert!(id.is_some_and(|id| uuid::Uuid::parse_str(id.as_str().unwrap()).is_ok()));
        assert_eq!(
            out,
            json!({
                "endpoint": "ep-temp",
                "headers": {
                    "Content-Type": "application/json",
                    "Accept": "application/json",
                    "X-Amzn-SageMaker-Custom-Attributes": "a=b",
                },
                "body": r#"{"id": "A:1", "k": 3, "n": [1]}"#,
            })
        );
    }

    #[test]
    fn refusals_name_the_route_the_template_and_the_position() {
        let e = run(&config(), &request("", "{}"), None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("Missing required request parameters: [k]"),
            "{e}"
        );
        let mut bad_route = request("k=1", "{}");
        bad_route.path = "/nope".into();
        let e = run(&config(), &bad_route, None).unwrap_err().to_string();
        assert!(e.contains("403"), "{e}");
        let answer = TestAnswer {
            status: 200,
            body: Bytes::from_static(br#"{"top": 1}"#),
            headers: vec![],
        };
        let e = run(&config(), &request("k=1", "{}"), Some(answer))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("response template application/json of POST /items/{id}: 1:38: "),
            "{e}"
        );
    }

    #[test]
    fn answers_go_through_integration_responses_and_overrides() {
        let model_error = TestAnswer {
            status: 424,
            body: Bytes::from_static(
                br#"{"ErrorCode":"CLIENT_ERROR_FROM_MODEL","OriginalStatusCode":400,"OriginalMessage":"bad k"}"#,
            ),
            headers: vec![("X-Amzn-ErrorType".into(), "ModelError".into())],
        };
        let out = run(&config(), &request("k=1", "{}"), Some(model_error)).unwrap();
        assert_eq!(out["response"]["status"], 400);
        assert_eq!(out["response"]["body"], r#"{"model": "bad k"}"#);
        assert_eq!(out["response"]["headers"]["x-req"], "yes");
    }
}
