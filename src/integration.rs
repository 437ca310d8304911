//! The mapping stages around `invoke`: validate the method request ([`validate`]), render the
//! integration request and assemble SageMaker's headers ([`invocation`]), select the integration
//! response and render the response ([`response`]), and shape gateway responses
//! ([`gateway_response`]) (API Gateway's non-proxy integration).
//!
//! Input: the request, its decoded parameters and the per-request context; output: the SageMaker
//! payload and headers, or the client response. Rules (reference §4.5–4.7):
//! - Request template selected by the MIME part of `Content-Type` (missing → `application/json`).
//!   Without a match: WHEN_NO_MATCH passes the body through, WHEN_NO_TEMPLATES passes through only when
//!   the route has no templates, NEVER answers 415. A route without templates and without a body sends
//!   the default JSON object of path and query parameters. Binary media types always pass through.
//! - Integration responses: `selection_pattern` full-matches SageMaker's status (`200`, `424` for a
//!   model error, `429`, `5\d{2}`); the response without a pattern is the default for successful calls.
//!   An upstream failure no pattern selects keeps DESIGN §1's answer (safer than API Gateway, whose
//!   default would turn a model error into a 200).
//! - Response template selected by `Accept`; without templates the body passes through.
//! - `$context.responseOverride.status`/`.header.*` set in the request template reach the client's
//!   response unless the response template sets them again (it starts from them and reads them, as
//!   it reads `$context.requestOverride.*`); overrides win over `response_parameters`, as AWS's
//!   "instead of the default mapping" says.
//! - A template that fails at run time is API Gateway's 500 `{"message": "Internal server error"}`,
//!   logged with the route, the template and the line:col. Two failures are the client's: a request
//!   body a request template reads as JSON that starts like JSON but is not (400 `Could not process
//!   payload`), and one whose parsed form would pass the template memory bound (413).
//! - JSON a request or response template parses is charged to the request's memory account as it
//!   is built ([`RenderCharge`]) and given back when the render returns; a refusal is the budget's
//!   503 `Service Unavailable`.
//!
//! Security: `$context.identity.apiKey` (the key value) is deliberately absent from template context.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use serde_json::{Value, json};

use crate::config::GatewayConfig;
use crate::config::gateway::{Route, Stage};
use crate::config::param::ParamSource;
use crate::config::templates::{IntegrationResponse, Passthrough, ResponseSource, TemplateSet};
use crate::context::RequestContext;
use crate::error::{ErrorResponse, GatewayError, json_string};
use crate::mapping::{self, Bounds, Overrides, RenderInput, Reserve, Template};
use crate::memory::{Held, OverBudget};
use crate::message::API_KEY_HEADER;
use crate::message::{GatewayRequest, GatewayResponse};
use crate::upstream::{
    CLOSED_SESSION_ID, Invocation, NEW_SESSION_ID, UpstreamFailure, UpstreamReply,
};

/// Request data a template or mapping expression reads.
pub struct MappingInput<'a> {
    /// `$input.params()`.
    pub params: mapping::Params,
    /// The stage.
    pub stage: &'a Stage,
    /// The client request's head.
    pub req: &'a GatewayRequest,
    /// Its body (empty until the `read body` stage has read it).
    pub body: Bytes,
    /// The request's in-flight memory account, which template renders charge their parsed JSON to.
    pub memory: &'a Held,
}

impl MappingInput<'_> {
    /// The value of a mapping expression, if present.
    pub fn value(&self, source: &ParamSource, ctx: &RequestContext) -> Option<String> {
        let last = |list: &[(String, String)], name: &str| {
            list.iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        match source {
            ParamSource::Literal(v) => Some(v.clone()),
            ParamSource::StageVariable(n) => self.stage.variables.get(n).cloned(),
            ParamSource::Header(n) => self.req.header(&n.to_ascii_lowercase()).map(str::to_owned),
            ParamSource::Query(n) => last(&self.params.querystring, n),
            ParamSource::Path(n) => last(&self.params.path, n),
            // The identifier headers read these per request (custom attributes and inference id
            // default to the request id): answered directly instead of building the whole
            // `$context` document (≈22k instructions each in the bench profile).
            ParamSource::Context(n) if n == "requestId" || n == "extendedRequestId" => {
                Some(ctx.request_id.clone())
            }
            ParamSource::Context(n) if n == "xrayTraceId" => Some(ctx.trace_id.clone()),
            ParamSource::Context(n) => context_value(&template_context(self.stage, ctx, None), n),
        }
    }
}

/// The integration request body and content type.
#[derive(Debug)]
pub struct Payload {
    /// Bytes for SageMaker.
    pub body: Bytes,
    /// Their content type.
    pub content_type: String,
    /// `$context.requestOverride.*` set by the template.
    pub overrides: Overrides,
}

/// MIME part of a `Content-Type`/`Accept` value, lower case (`application/json; charset=utf-8` →
/// `application/json`; first entry of a list).
pub fn media_type(value: Option<&str>) -> String {
    let v = value
        .unwrap_or("")
        .split(',')
        .next()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim();
    if v.is_empty() || v == "*/*" {
        "application/json".to_owned()
    } else {
        v.to_ascii_lowercase()
    }
}

/// Renders (or passes through) the integration request body.
pub fn render_request(
    route: &Route,
    input: &MappingInput<'_>,
    ctx: &RequestContext,
    binary_types: &[String],
    default_body: impl FnOnce() -> Vec<u8>,
) -> Result<Payload, GatewayError> {
    let integration = &route.integration;
    let client_type = input.req.header("content-type");
    let media = media_type(client_type);
    let passthrough = || Payload {
        body: input.body.clone(),
        content_type: client_type.map_or_else(|| integration.content_type.clone(), str::to_owned),
        overrides: Overrides::default(),
    };
    if binary_types.contains(&media) {
        return Ok(passthrough());
    }
    let templates = &integration.request_templates;
    if templates.is_empty() {
        return match integration.passthrough {
            Passthrough::Never => Err(GatewayError::UnsupportedMediaType),
            _ if input.body.is_empty() => Ok(Payload {
                body: Bytes::from(default_body()),
                content_type: integration.content_type.clone(),
                overrides: Overrides::default(),
            }),
            _ => Ok(passthrough()),
        };
    }
    let Some(template) = templates.get(&media) else {
        return match integration.passthrough {
            Passthrough::WhenNoMatch => Ok(passthrough()),
            Passthrough::WhenNoTemplates | Passthrough::Never => {
                Err(GatewayError::UnsupportedMediaType)
            }
        };
    };
    let context = template_context(input.stage, ctx, None);
    let rendered = render(
        route,
        Which::Request(&media),
        template,
        &input.body,
        input,
        &context,
        &Overrides::default(),
    )?;
    Ok(Payload {
        body: Bytes::from(rendered.body),
        content_type: integration.content_type.clone(),
        overrides: rendered.overrides,
    })
}

/// Which template of a route renders, with its media type (for error messages).
#[derive(Clone, Copy)]
enum Which<'a> {
    Request(&'a str),
    Response(&'a str),
}

fn render(
    route: &Route,
    which: Which<'_>,
    template: &Template,
    body: &[u8],
    input: &MappingInput<'_>,
    context: &Value,
    prior: &Overrides,
) -> Result<mapping::Rendered, GatewayError> {
    let render_input = RenderInput {
        body,
        params: &input.params,
        context,
        stage_variables: &input.stage.variables,
    };
    let charge = RenderCharge::new(input.memory);
    let failure = match template.render_with(&render_input, &Bounds::default(), prior, &charge) {
        Ok(rendered) => return Ok(rendered),
        Err(f) => f,
    };
    if failure.error == mapping::RenderError::OverBudget {
        return Err(OverBudget.into());
    }
    let (kind, media) = match which {
        Which::Request(m) => ("request", m),
        Which::Response(m) => ("response", m),
    };
    let located = format!(
        "{kind} template {media} of {} {}: {failure}",
        route.method, route.path
    );
    Err(match (which, failure.error) {
        (Which::Request(_), mapping::RenderError::BadPayload(_)) => {
            GatewayError::BadRequestBody(located)
        }
        (Which::Request(_), mapping::RenderError::JsonTooLarge) => GatewayError::RequestTooLarge,
        _ => GatewayError::ApiConfiguration(located),
    })
}

/// What one render's parsed JSON holds, charged to the request's memory account while the render
/// runs and given back when it returns (the values die with the render).
struct RenderCharge<'a> {
    held: &'a Held,
    granted: std::cell::Cell<usize>,
}

impl<'a> RenderCharge<'a> {
    fn new(held: &'a Held) -> Self {
        RenderCharge {
            held,
            granted: std::cell::Cell::new(0),
        }
    }
}

impl Reserve for RenderCharge<'_> {
    fn try_reserve(&self, bytes: usize) -> bool {
        let granted = self.held.try_grow(bytes).is_ok();
        if granted {
            self.granted.set(self.granted.get().saturating_add(bytes));
        }
        granted
    }
}

impl Drop for RenderCharge<'_> {
    fn drop(&mut self) {
        self.held.release(self.granted.get());
    }
}

/// Applies `$context.responseOverride.*` to a response.
fn apply_overrides(resp: &mut GatewayResponse, overrides: &Overrides) {
    if let Some(status) = overrides.status {
        resp.status = status;
    }
    for (name, value) in &overrides.response_headers {
        set_header(&mut resp.headers, name, value.clone());
    }
}

/// The response for a successful call, through the integration responses when there are any.
/// `prior`: the request template's overrides.
pub fn respond(
    route: &Route,
    reply: &UpstreamReply,
    input: &MappingInput<'_>,
    ctx: &RequestContext,
    prior: &Overrides,
) -> Result<GatewayResponse, GatewayError> {
    let mut resp = respond_mapped(route, reply, input, ctx, prior)?;
    pass_session_ids(reply, &mut resp);
    Ok(resp)
}

/// The longest `New-Session-Id` / `Closed-Session-Id` passed to the client (SageMaker's bound).
const MAX_SESSION_HEADER: usize = 256;

/// SageMaker's session answer (`X-Amzn-SageMaker-New-Session-Id: <id>; Expires=<time>`,
/// `X-Amzn-SageMaker-Closed-Session-Id`) reaches the client as is: without it a client that asked
/// for `NEW_SESSION` could never send its next request to the session. A header the integration
/// response or the template already set wins.
fn pass_session_ids(reply: &UpstreamReply, resp: &mut GatewayResponse) {
    for name in [NEW_SESSION_ID, CLOSED_SESSION_ID] {
        let Some(v) = reply.header(name) else {
            continue;
        };
        // SageMaker's bound (reference/apigw-sagemaker.md §5.2); a longer value is a model
        // container's bug (the container writes it) that would otherwise reach the client and
        // every proxy in between, up to the size of an HTTP head: left out, with a warning.
        if v.len() > MAX_SESSION_HEADER {
            tracing::warn!(
                header = name,
                bytes = v.len(),
                "SageMaker answer header over {MAX_SESSION_HEADER} bytes not passed to the client"
            );
            continue;
        }
        if !resp
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            resp.headers.push((name.to_owned(), v.to_owned()));
        }
    }
}

fn respond_mapped(
    route: &Route,
    reply: &UpstreamReply,
    input: &MappingInput<'_>,
    ctx: &RequestContext,
    prior: &Overrides,
) -> Result<GatewayResponse, GatewayError> {
    match select(&route.integration.responses, reply.status, true) {
        Some(ir) => map_response(route, ir, reply, input, ctx, prior),
        None if route.integration.responses.is_empty() => {
            let content_type = reply
                .header("content-type")
                .unwrap_or("application/json")
                .to_owned();
            let mut resp = GatewayResponse {
                status: 200,
                headers: vec![("content-type".into(), content_type)],
                body: reply.body.clone(),
                stream: None,
            };
            apply_overrides(&mut resp, prior);
            Ok(resp)
        }
        None => Err(GatewayError::ApiConfiguration(format!(
            "no integration response matches status {} and there is no default (route {} {})",
            reply.status, route.method, route.path
        ))),
    }
}

/// The response for a failed call that an integration response selects; `None` keeps DESIGN §1's.
pub fn respond_failure(
    route: &Route,
    reply: &UpstreamReply,
    input: &MappingInput<'_>,
    ctx: &RequestContext,
    prior: &Overrides,
) -> Option<Result<GatewayResponse, GatewayError>> {
    let ir = select(&route.integration.responses, reply.status, false)?;
    Some(map_response(route, ir, reply, input, ctx, prior))
}

fn select(
    responses: &[IntegrationResponse],
    status: u16,
    success: bool,
) -> Option<&IntegrationResponse> {
    let code = status.to_string();
    responses
        .iter()
        .find(|r| {
            r.selection_pattern
                .as_ref()
                .is_some_and(|p| p.is_match(&code))
        })
        .or_else(|| {
            if success {
                responses.iter().find(|r| r.selection_pattern.is_none())
            } else {
                None
            }
        })
}

fn map_response(
    route: &Route,
    ir: &IntegrationResponse,
    reply: &UpstreamReply,
    input: &MappingInput<'_>,
    ctx: &RequestContext,
    prior: &Overrides,
) -> Result<GatewayResponse, GatewayError> {
    let accept = media_type(input.req.header("accept"));
    let mut resp = GatewayResponse {
        status: ir.status,
        headers: Vec::new(),
        body: reply.body.clone(),
        stream: None,
    };
    let overrides = match select_template(&ir.templates, &accept) {
        Some((media, template)) => {
            let context = template_context(input.stage, ctx, Some(reply));
            let rendered = render(
                route,
                Which::Response(media),
                template,
                &reply.body,
                input,
                &context,
                prior,
            )?;
            resp.headers.push(("content-type".into(), media.to_owned()));
            resp.body = Bytes::from(rendered.body);
            rendered.overrides
        }
        None => {
            resp.headers.push((
                "content-type".into(),
                reply
                    .header("content-type")
                    .unwrap_or("application/json")
                    .to_owned(),
            ));
            prior.clone()
        }
    };
    for (name, source) in &ir.headers {
        let value = match source {
            ResponseSource::UpstreamHeader(h) => reply.header(h).map(str::to_owned),
            ResponseSource::UpstreamBody => Some(String::from_utf8_lossy(&reply.body).into_owned()),
            ResponseSource::Request(s) => input.value(s, ctx),
        };
        if let Some(v) = value {
            set_header(&mut resp.headers, name, v);
        }
    }
    apply_overrides(&mut resp, &overrides);
    Ok(resp)
}

fn select_template<'a>(set: &'a TemplateSet, accept: &str) -> Option<(&'a str, &'a Template)> {
    let template = set.select_for_accept(accept)?;
    let media = set
        .0
        .iter()
        .find(|(_, t)| std::ptr::eq(t, template))
        .map_or("application/json", |(m, _)| m.as_str());
    Some((media, template))
}

fn set_header(headers: &mut Vec<(String, String)>, name: &str, value: String) {
    headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    headers.push((name.to_owned(), value));
}

/// Shapes a gateway response: API Gateway's default, or the operator's override for its type.
pub fn gateway_response(
    err: &GatewayError,
    overrides: &crate::config::templates::GatewayResponses,
    input: Option<&MappingInput<'_>>,
    ctx: &RequestContext,
) -> GatewayResponse {
    let default = err.default_response();
    let mut resp = default_gateway_response(&default);
    let Some(rt) = default.response_type else {
        return resp;
    };
    let Some(over) = overrides.get(rt, default.status) else {
        return resp;
    };
    if let Some(s) = over.status {
        resp.status = s;
    }
    let stage_context = input.map(|i| i.stage);
    let mut context = match stage_context {
        Some(stage) => template_context(stage, ctx, None),
        None => {
            json!({"requestId": ctx.request_id, "httpMethod": ctx.http_method, "path": ctx.path, "identity": {"sourceIp": ctx.source_ip.to_string()}})
        }
    };
    context["error"] = json!({
        "message": default.message,
        "messageString": json_string(default.message),
        "responseType": rt.name(),
        "validationErrorString": ctx.validation_error,
    });
    let accept = media_type(input.and_then(|i| i.req.header("accept")));
    if let Some((media, template)) = select_template(&over.templates, &accept) {
        let params = mapping::Params::default();
        let vars = Default::default();
        let render_input = RenderInput {
            body: b"",
            params: input.map_or(&params, |i| &i.params),
            context: &context,
            stage_variables: input.map_or(&vars, |i| &i.stage.variables),
        };
        match template.render(&render_input, &Bounds::default()) {
            Ok(r) => {
                resp.body = Bytes::from(r.body);
                set_header(&mut resp.headers, "content-type", media.to_owned());
            }
            Err(e) => {
                tracing::error!(requestId = %ctx.request_id, error = %e, "gateway response template failed; default body sent")
            }
        }
    }
    for (name, source) in &over.headers {
        let value = match (source, input) {
            (ParamSource::Literal(v), _) => Some(v.clone()),
            (s, Some(i)) => i.value(s, ctx),
            (ParamSource::Context(n), None) => context_value(&context, n),
            _ => None,
        };
        if let Some(v) = value {
            set_header(&mut resp.headers, name, v);
        }
    }
    resp
}

/// The default gateway response as headers and body.
pub fn default_gateway_response(r: &ErrorResponse) -> GatewayResponse {
    let mut headers = vec![("content-type".to_owned(), r.content_type.to_owned())];
    if let Some(t) = r.error_type {
        headers.push(("x-amzn-errortype".to_owned(), t.to_owned()));
    }
    if let Some(s) = r.retry_after {
        headers.push(("retry-after".to_owned(), s.to_string()));
    }
    GatewayResponse {
        status: r.status,
        headers,
        body: r.body.clone(),
        stream: None,
    }
}

/// `$context` for templates (API Gateway's names, nested as `identity.sourceIp`).
pub fn template_context(
    stage: &Stage,
    ctx: &RequestContext,
    reply: Option<&UpstreamReply>,
) -> Value {
    let mut v = json!({
        "requestId": ctx.request_id,
        "extendedRequestId": ctx.request_id,
        "stage": stage.name,
        "resourcePath": ctx.resource_path,
        "httpMethod": ctx.http_method,
        "path": ctx.path,
        "protocol": "HTTP/1.1",
        "requestTime": ctx.request_time_clf(),
        "requestTimeEpoch": ctx.request_time.timestamp_millis(),
        "xrayTraceId": ctx.trace_id,
        "isCanaryRequest": stage.is_canary,
        "identity": {
            "sourceIp": ctx.source_ip.to_string(),
            "userAgent": ctx.user_agent,
            "apiKeyId": ctx.api_key_id,
        },
    });
    if let Some(r) = reply {
        v["integration"] = json!({"status": r.status});
        v["awsEndpointRequestId"] = json!(r.header("x-amzn-requestid"));
    }
    v
}

fn context_value(context: &Value, dotted: &str) -> Option<String> {
    let mut v = context;
    for part in dotted.split('.') {
        v = v.get(part)?;
    }
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// The render-request stage (also `sagegate test-invoke`'s): the SageMaker call to make (body from
/// the request template, SageMaker's headers assembled and checked), and the overrides the request
/// template set (the response stages read them).
pub fn invocation(
    config: &GatewayConfig,
    stage: &Stage,
    route: &Route,
    input: &MappingInput<'_>,
    ctx: &RequestContext,
) -> Result<(Invocation, mapping::Overrides), GatewayError> {
    let integration = &route.integration;
    let endpoint_name = integration.endpoint(stage).cloned().ok_or_else(|| {
        GatewayError::ApiConfiguration(format!("no endpoint for stage {}", stage.name))
    })?;
    let payload = render_request(route, input, ctx, &config.binary_media_types, || {
        default_body(&input.params.path, &input.params.querystring)
    })?;
    // Every header a mapping may set (config::templates::REQUEST_HEADER_TARGETS), from its shortcut.
    let shortcuts = integration
        .header_sources()
        .into_iter()
        .map(|(_, header, s)| (header, s.and_then(|s| input.value(s, ctx))));
    let mut headers: Vec<(&str, Option<String>)> = [
        ("content-type", Some(payload.content_type)),
        ("accept", Some(integration.accept.clone())),
    ]
    .into_iter()
    .chain(shortcuts)
    .collect();
    // Explicit `request_parameters` mappings, then the template's `requestOverride.header`, win.
    let mapped = integration
        .request_headers
        .iter()
        .map(|(h, s)| (h.clone(), input.value(s, ctx)));
    let overridden = payload
        .overrides
        .request_headers
        .iter()
        .map(|(h, v)| (h.to_ascii_lowercase(), Some(v.clone())));
    for (name, value) in mapped.chain(overridden) {
        if let Some(slot) = headers.iter_mut().find(|(h, _)| *h == name) {
            slot.1 = value;
        }
    }
    let mut take = |name: &str| {
        headers
            .iter_mut()
            .find(|(h, _)| *h == name)
            .and_then(|(_, v)| v.take())
    };
    let content_type = take("content-type").unwrap_or_else(|| integration.content_type.clone());
    let accept = take("accept").unwrap_or_else(|| integration.accept.clone());
    let invocation = Invocation {
        endpoint_name,
        body: payload.body,
        content_type,
        accept,
        custom_attributes: take("x-amzn-sagemaker-custom-attributes"),
        inference_id: take("x-amzn-sagemaker-inference-id"),
        target_variant: take("x-amzn-sagemaker-target-variant"),
        target_model: take("x-amzn-sagemaker-target-model"),
        inference_component_name: take("x-amzn-sagemaker-inference-component"),
        target_container_hostname: take("x-amzn-sagemaker-target-container-hostname"),
        session_id: take("x-amzn-sagemaker-session-id"),
        enable_explanations: take("x-amzn-sagemaker-enable-explanations"),
        trace_id: ctx.trace_id.clone(),
        timeout: integration.timeout,
    };
    check_header_value("Content-Type", Some(&invocation.content_type), 1024)?;
    check_header_value("Accept", Some(&invocation.accept), 1024)?;
    for (name, value) in invocation.optional_headers() {
        check_sagemaker_header(name, value)?;
    }
    Ok((invocation, payload.overrides))
}

/// The select-integration-response and render-response stages over what the cache lookup and
/// invoke stages returned (also `sagegate test-invoke`'s); `overrides` are the request template's.
pub fn response(
    route: &Route,
    result: Result<UpstreamReply, UpstreamFailure>,
    input: &MappingInput<'_>,
    ctx: &mut RequestContext,
    overrides: &mapping::Overrides,
) -> Result<GatewayResponse, GatewayError> {
    match result {
        Ok(reply) => {
            ctx.aws_endpoint_request_id = reply
                .header("x-amzn-requestid")
                .map(crate::message::request_id_logged);
            respond(route, &reply, input, ctx, overrides)
        }
        Err(failure) => match failure
            .reply
            .as_ref()
            .and_then(|r| respond_failure(route, r, input, ctx, overrides))
        {
            Some(mapped) => {
                ctx.error_cause = Some(failure.error.to_string());
                mapped
            }
            None => Err(failure.error),
        },
    }
}

pub use crate::config::resolve::Routed;

/// What templates and mapping expressions read of a routed request (headers API Gateway's front
/// door blanks are blank: [`mapping::BLANKED_HEADERS`]).
pub fn mapping_input<'a>(
    stage: &'a Stage,
    req: &'a GatewayRequest,
    path: Vec<(String, String)>,
    query: Vec<(String, String)>,
    memory: &'a Held,
) -> MappingInput<'a> {
    let params = mapping::Params {
        path,
        querystring: query,
        // The caller's key is a secret, never template input: `$input.params()` does not show it
        // (the key id is `$context.identity.apiKeyId`). Front-door headers are blank.
        header: mapping::template_headers(
            &req.headers
                .iter()
                .filter(|(name, _)| name != API_KEY_HEADER)
                .cloned()
                .collect::<Vec<_>>(),
        ),
    };
    MappingInput {
        params,
        stage,
        req,
        body: Bytes::new(),
        memory,
    }
}

/// SageMaker's rules for its optional request headers (botocore model `sagemaker-runtime`, see
/// /work/shared/reference/apigw-sagemaker.md §5.2), checked before the call: a value SageMaker
/// would refuse is the client's error (400 with the header named), never a 500 from SageMaker's
/// `ValidationError`, and never a header injection.
fn check_sagemaker_header(name: &str, value: Option<&str>) -> Result<(), GatewayError> {
    let Some(v) = value else { return Ok(()) };
    match name {
        "X-Amzn-SageMaker-Target-Variant"
        | "X-Amzn-SageMaker-Target-Container-Hostname"
        | "X-Amzn-SageMaker-Inference-Component" => check_name(name, v, 63, false),
        "X-Amzn-SageMaker-Session-Id" => check_name(name, v, 256, true),
        "X-Amzn-SageMaker-Inference-Id" => check_printable(name, v, 64),
        "X-Amzn-SageMaker-Target-Model" => check_printable(name, v, 1024),
        "X-Amzn-SageMaker-Enable-Explanations" => check_header_value(name, Some(v), 64),
        _ => check_header_value(name, Some(v), 1024),
    }
}

/// SageMaker's name pattern `^[a-zA-Z0-9](-*[a-zA-Z0-9])*$` within `max` characters (and
/// `NEW_SESSION` where a session may be opened).
fn check_name(name: &str, v: &str, max: usize, new_session: bool) -> Result<(), GatewayError> {
    if crate::message::is_sagemaker_name(v, max) || (new_session && v == "NEW_SESSION") {
        return Ok(());
    }
    let also = if new_session { ", or NEW_SESSION" } else { "" };
    Err(GatewayError::InvalidRequest(format!(
        "{name} must be 1 to {max} letters, digits and hyphens, starting and ending with a letter or digit{also}"
    )))
}

/// SageMaker's `\A\S[\p{Print}]*\z` within `max` characters, as a header value: visible ASCII,
/// not starting with a space.
fn check_printable(name: &str, v: &str, max: usize) -> Result<(), GatewayError> {
    check_header_value(name, Some(v), max)?;
    if v.starts_with(' ') {
        return Err(GatewayError::InvalidRequest(format!(
            "{name} must not start with a space"
        )));
    }
    Ok(())
}

/// SageMaker's header rule: visible US-ASCII, within the length limit. A value copied from a client
/// header that breaks it is the client's error (400), never a header injection.
fn check_header_value(name: &str, value: Option<&str>, max: usize) -> Result<(), GatewayError> {
    match value {
        Some(v)
            if v.is_empty() || v.len() > max || !v.bytes().all(|b| (0x20..0x7f).contains(&b)) =>
        {
            Err(GatewayError::InvalidRequest(format!(
                "{name} must be 1 to {max} visible ASCII characters"
            )))
        }
        _ => Ok(()),
    }
}

/// The body sent when a route has no request template: a JSON object of the path and query
/// parameters (path wins on a name clash; for a repeated query key the last value counts, at the
/// first one's place), values that are JSON numbers sent as numbers, digit for digit. Serialized,
/// never spliced (a number is written as it came only once it is known to be one JSON number), so
/// any value is safe; written straight out, without a map and a value per parameter.
pub fn default_body(path: &[(String, String)], query: &[(String, String)]) -> Vec<u8> {
    let fields = path.iter().chain(
        query
            .iter()
            .filter(|(k, _)| !path.iter().any(|(p, _)| p == k)),
    );
    let fields: Vec<&(String, String)> = fields.collect();
    // Each name once, where it first came, with the last value it had: by scanning when there
    // are few (no allocation), through a map when there are many (linear in a hostile count).
    let mut last: HashMap<&str, &str> = HashMap::new();
    let mut written: HashSet<&str> = HashSet::new();
    let small = fields.len() <= 16;
    if !small {
        last.extend(fields.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    }
    let size = fields
        .iter()
        .map(|(k, v)| k.len() + v.len() + 6)
        .sum::<usize>();
    let mut out = Vec::with_capacity(2 + size);
    out.push(b'{');
    for (i, (k, _)) in fields.iter().enumerate() {
        let value = if small {
            if fields[..i].iter().any(|(seen, _)| seen == k) {
                continue;
            }
            fields
                .iter()
                .rev()
                .find(|(name, _)| name == k)
                .map(|(_, v)| v.as_str())
        } else {
            if !written.insert(k.as_str()) {
                continue;
            }
            last.get(k.as_str()).copied()
        };
        if out.len() > 1 {
            out.push(b',');
        }
        // Writing to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, k);
        out.push(b':');
        match value {
            // A number exactly as the client wrote it: through a double, a 30-digit id or a long
            // decimal would reach the model rounded.
            Some(v) if is_json_number(v) => out.extend_from_slice(v.as_bytes()),
            v => {
                let _ = serde_json::to_writer(&mut out, v.unwrap_or_default());
            }
        }
    }
    out.push(b'}');
    out
}

/// Whether `v` is, whole, a JSON number (no sign but `-`, no leading zero, no surrounding space;
/// within a double's range).
fn is_json_number(v: &str) -> bool {
    let looks_numeric = v
        .bytes()
        .next()
        .is_some_and(|b| b == b'-' || b.is_ascii_digit())
        && !v.bytes().any(|b| b.is_ascii_whitespace());
    looks_numeric && serde_json::from_str::<serde_json::Number>(v).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types() {
        assert_eq!(media_type(None), "application/json");
        assert_eq!(
            media_type(Some("Application/JSON; charset=UTF-8")),
            "application/json"
        );
        assert_eq!(media_type(Some("text/csv, application/json")), "text/csv");
        assert_eq!(media_type(Some("*/*")), "application/json");
    }

    #[test]
    fn every_context_field_is_classified() {
        use crate::config::GatewayConfig;
        use crate::config::cache_key::{CALLER_CHOSEN, HELD_BY_KEY, KEYABLE_CONTEXT, PER_REQUEST};
        use crate::context::RequestContext;
        // The config of config/cache_key/tests.rs with an empty template (the test moved here).
        let text = r#"stages:
  prod:
    variables: { endpoint: ep }
    cache: { enabled: true }
routes:
  - method: GET
    path: /r/{id}
    validation: { required_query: [k] }
    cache:
      key_parameters: []
    integration:
      endpoint_name: ep
      passthrough_behavior: NEVER
      request_templates:
        application/json: |
          {}
"#;
        let c = GatewayConfig::parse("g.yaml", text, &|_| None).unwrap();
        let ctx = RequestContext::new(
            "id".into(),
            "trace".into(),
            std::net::IpAddr::from([127, 0, 0, 1]),
            "GET",
            "/prod/r/1",
        );
        let context = template_context(&c.stages["prod"], &ctx, None);
        let mut leaves = Vec::new();
        let mut stack = vec![(String::new(), &context)];
        while let Some((prefix, v)) = stack.pop() {
            match v.as_object() {
                Some(map) => {
                    for (k, child) in map {
                        let name = if prefix.is_empty() {
                            k.clone()
                        } else {
                            format!("{prefix}.{k}")
                        };
                        stack.push((name, child));
                    }
                }
                None => leaves.push(prefix),
            }
        }
        assert!(leaves.len() >= 13, "{leaves:?}");
        for leaf in leaves {
            let classified = PER_REQUEST.contains(&leaf.as_str())
                || CALLER_CHOSEN.contains(&leaf.as_str())
                || HELD_BY_KEY.contains(&leaf.as_str())
                || KEYABLE_CONTEXT.contains(&leaf.as_str());
            assert!(
                classified,
                "`$context.{leaf}` is new: classify it in config/cache_key.rs (per request, held by every key, or keyable)"
            );
        }
    }

    #[test]
    fn default_body_types_numbers() {
        let path = vec![("user_id".to_owned(), "U:114521".to_owned())];
        let query = vec![
            ("k".to_owned(), "10".to_owned()),
            ("t".to_owned(), "0.5".to_owned()),
            ("s".to_owned(), "007".to_owned()),
            ("x".to_owned(), "1 ".to_owned()),
        ];
        assert_eq!(
            String::from_utf8(default_body(&path, &query)).unwrap(),
            r#"{"user_id":"U:114521","k":10,"t":0.5,"s":"007","x":"1 "}"#
        );
    }

    /// The default body as it was built before it was written straight out: a JSON object (in
    /// insertion order) of the parameters, printed. The same bytes for numbers in their canonical
    /// form, which is what the property test below generates.
    fn default_body_by_map(path: &[(String, String)], query: &[(String, String)]) -> String {
        let scalar = |v: &str| match serde_json::from_str::<serde_json::Number>(v) {
            Ok(n) if is_json_number(v) => Value::Number(n),
            _ => Value::String(v.to_owned()),
        };
        let mut map = serde_json::Map::new();
        for (k, v) in path {
            map.insert(k.clone(), scalar(v));
        }
        for (k, v) in query {
            if !path.iter().any(|(p, _)| p == k) {
                map.insert(k.clone(), scalar(v));
            }
        }
        Value::Object(map).to_string()
    }

    /// Parameter values: text, and numbers as a double or an integer prints them.
    fn value() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            "\\PC{0,6}|\"\\\\\n",
            any::<i64>().prop_map(|n| n.to_string()),
            "(0|[1-9][0-9]{0,3})\\.[0-9]{0,2}[1-9]",
        ]
    }

    proptest::proptest! {
        #[test]
        fn default_body_is_the_printed_map(
            path in proptest::collection::vec(("[a-d]{1,2}", value()), 0..3),
            query in proptest::collection::vec(("[a-d]{1,2}", value()), 0..40),
        ) {
            let written = String::from_utf8(default_body(&path, &query)).unwrap();
            proptest::prop_assert_eq!(written, default_body_by_map(&path, &query));
        }
    }

    #[test]
    fn default_body_numbers_keep_every_digit() {
        let query: Vec<(String, String)> = [
            ("id", "123456789012345678901234567890"),
            ("p", "0.12345678901234567890123"),
            ("e", "1e5"),
            ("z", "-0"),
            ("t", "1.50"),
            ("big", "1e400"),
            ("lead", "007"),
            ("plus", "+1"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let body = String::from_utf8(default_body(&[], &query)).unwrap();
        assert_eq!(
            body,
            r#"{"id":123456789012345678901234567890,"p":0.12345678901234567890123,"e":1e5,"z":-0,"t":1.50,"big":"1e400","lead":"007","plus":"+1"}"#
        );
        // Still one valid JSON document.
        let parsed: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(parsed["lead"], "007");
    }

    #[test]
    fn header_values_are_checked() {
        assert!(check_header_value("X", Some("a=b;c=d"), 1024).is_ok());
        assert!(check_header_value("X", Some("a\r\nInjected: 1"), 1024).is_err());
        assert!(check_header_value("X", Some("é"), 1024).is_err());
        assert!(check_header_value("X", Some(&"a".repeat(1025)), 1024).is_err());
        assert!(check_header_value("X", None, 1024).is_ok());
    }

    #[test]
    fn sagemaker_header_rules() {
        let ok = |name: &str, v: &str| check_sagemaker_header(name, Some(v)).is_ok();
        for name in [
            "X-Amzn-SageMaker-Target-Variant",
            "X-Amzn-SageMaker-Target-Container-Hostname",
            "X-Amzn-SageMaker-Inference-Component",
        ] {
            assert!(ok(name, "AllTraffic"), "{name}");
            assert!(ok(name, "blue--2"), "{name}");
            assert!(ok(name, &"a".repeat(63)), "{name}");
            for bad in ["", "-a", "a-", "a_b", "a b", "a\r\nX: 1", &"a".repeat(64)] {
                assert!(!ok(name, bad), "{name}: {bad:?}");
            }
            assert!(!ok(name, "NEW_SESSION"), "{name}");
        }
        let session = "X-Amzn-SageMaker-Session-Id";
        assert!(ok(session, "NEW_SESSION"));
        assert!(ok(session, &"a".repeat(256)));
        assert!(!ok(session, &"a".repeat(257)));
        assert!(!ok(session, "abc; Expires=2026-12-05T00:00:00Z"));
        let model = "X-Amzn-SageMaker-Target-Model";
        assert!(ok(model, "models/model-a.tar.gz"));
        assert!(ok(model, &"m".repeat(1024)));
        assert!(!ok(model, &"m".repeat(1025)));
        assert!(!ok(model, " leading"));
        assert!(!ok(model, "é.tar.gz"));
        let explain = "X-Amzn-SageMaker-Enable-Explanations";
        assert!(ok(explain, "`true`"));
        assert!(ok(explain, "[0]>`0.5`"));
        assert!(!ok(explain, &"x".repeat(65)));
        assert!(!ok(explain, ""));
        assert!(!ok("X-Amzn-SageMaker-Inference-Id", " id"));
        assert!(check_sagemaker_header(session, None).is_ok());
    }
}
