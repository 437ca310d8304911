//! Mapping settings of `gateway.yaml`, compiled: request templates with their passthrough behaviour,
//! header mappings, integration responses and gateway responses. Templates are parsed here, once;
//! a template that does not parse is a diagnostic located inside the template.

use std::collections::HashMap;

use regex::Regex;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::diag::Diagnostic;
use super::param::ParamSource;
use super::yaml::Doc;
use crate::error::ResponseType;
use crate::mapping::{self, Template};

/// Templates keyed by media type, in file order (the first one is the fallback of response selection).
#[derive(Debug, Clone, Default)]
pub struct TemplateSet(pub Vec<(String, Template)>);

impl TemplateSet {
    /// The template for `media_type` exactly.
    pub fn get(&self, media_type: &str) -> Option<&Template> {
        self.0
            .iter()
            .find(|(m, _)| m.eq_ignore_ascii_case(media_type))
            .map(|(_, t)| t)
    }

    /// Response selection by the client's `Accept`: the exact type, else `application/json`, else the
    /// first template (API Gateway's rule).
    pub fn select_for_accept(&self, accept: &str) -> Option<&Template> {
        self.get(accept)
            .or_else(|| self.get("application/json"))
            .or_else(|| self.0.first().map(|(_, t)| t))
    }

    /// Whether no template is defined.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// API Gateway's `passthroughBehavior`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Passthrough {
    /// Pass the body through when no template matches the Content-Type (the default).
    #[default]
    WhenNoMatch,
    /// Pass through only when the route has no templates at all; otherwise 415.
    WhenNoTemplates,
    /// Never pass through: 415 without a matching template.
    Never,
}

/// One integration response: which upstream statuses it handles and what the client gets.
#[derive(Debug, Clone)]
pub struct IntegrationResponse {
    /// Full-match regex on SageMaker's HTTP status (`200`, `424` for a model error, `429`, `5\d{2}`);
    /// `None` = the default response for successful calls.
    pub selection_pattern: Option<Regex>,
    /// Status sent to the client.
    pub status: u16,
    /// `method.response.header.X` ← source.
    pub headers: Vec<(String, ResponseSource)>,
    /// Response templates by media type.
    pub templates: TemplateSet,
}

/// Right-hand side of a response header mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseSource {
    /// `integration.response.header.<name>`.
    UpstreamHeader(String),
    /// `integration.response.body`.
    UpstreamBody,
    /// Any request-side source (`context.*`, `stageVariables.*`, `'literal'`, `method.request.*`).
    Request(ParamSource),
}

/// An operator's override of a gateway response type.
#[derive(Debug, Clone, Default)]
pub struct GatewayResponseOverride {
    /// Status to send instead of the default.
    pub status: Option<u16>,
    /// `gatewayresponse.header.X` ← source.
    pub headers: Vec<(String, ParamSource)>,
    /// Body templates by media type (selected by `Accept`).
    pub templates: TemplateSet,
}

/// Gateway response overrides by type, with `DEFAULT_4XX` / `DEFAULT_5XX` fallbacks.
#[derive(Debug, Clone, Default)]
pub struct GatewayResponses {
    by_type: HashMap<String, GatewayResponseOverride>,
}

impl GatewayResponses {
    /// The override for `rt` whose default status is `status`: its own, else DEFAULT_4XX/DEFAULT_5XX.
    pub fn get(&self, rt: ResponseType, status: u16) -> Option<&GatewayResponseOverride> {
        self.by_type.get(rt.name()).or_else(|| match status {
            400..=499 => self.by_type.get("DEFAULT_4XX"),
            500..=599 => self.by_type.get("DEFAULT_5XX"),
            _ => None,
        })
    }
}

/// SageMaker request headers a mapping may set, and the field each one sets.
pub const REQUEST_HEADER_TARGETS: [&str; 10] = [
    "content-type",
    "accept",
    "x-amzn-sagemaker-custom-attributes",
    "x-amzn-sagemaker-inference-id",
    "x-amzn-sagemaker-target-variant",
    "x-amzn-sagemaker-target-model",
    "x-amzn-sagemaker-inference-component",
    "x-amzn-sagemaker-target-container-hostname",
    "x-amzn-sagemaker-session-id",
    "x-amzn-sagemaker-enable-explanations",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIntegrationResponse {
    /// Regex on SageMaker's status code; absent = default response.
    selection_pattern: Option<String>,
    /// Status sent to the client (default 200).
    #[serde(default = "default_status")]
    status: u16,
    /// `method.response.header.X: integration.response.header.Y | integration.response.body | context.* | 'literal'`.
    #[serde(default)]
    response_parameters: Map<String, Value>,
    /// Templates by media type.
    #[serde(default)]
    response_templates: Map<String, Value>,
}

fn default_status() -> u16 {
    200
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGatewayResponse {
    /// Status override.
    status: Option<u16>,
    /// `gatewayresponse.header.X: 'value' | context.* | method.request.header.*`.
    #[serde(default)]
    response_parameters: Map<String, Value>,
    /// Templates by media type; `$context.error.messageString` is the quoted default message.
    #[serde(default)]
    response_templates: Map<String, Value>,
}

/// Parses the templates of a `{media/type: template}` mapping at `path`.
pub fn templates(
    doc: &Doc,
    path: &str,
    map: &Map<String, Value>,
    errors: &mut Vec<Diagnostic>,
) -> TemplateSet {
    let mut set = Vec::new();
    for (media, value) in map {
        let tpath = format!("{path}.{media}");
        let Some(source) = value.as_str() else {
            errors.push(doc.error(&tpath, "a template is a string"));
            continue;
        };
        if !media.contains('/') {
            errors.push(doc.error(&tpath, "keys are media types such as application/json"));
        }
        if source.len() > 300 * 1024 {
            errors.push(doc.error(&tpath, "templates are at most 300 KB (API Gateway's limit)"));
            continue;
        }
        match mapping::parse(source) {
            Ok(t) => set.push((media.to_ascii_lowercase(), t)),
            Err(e) => errors.push(doc.error_in_scalar(
                &tpath,
                e.line as usize,
                e.col as usize,
                format!("template: {}", e.message),
            )),
        }
    }
    TemplateSet(set)
}

/// `integration.request.header.X: source` mappings, restricted to headers SageMaker accepts.
pub fn request_parameters(
    doc: &Doc,
    path: &str,
    map: &Map<String, Value>,
    errors: &mut Vec<Diagnostic>,
) -> Vec<(String, ParamSource)> {
    let mut out = Vec::new();
    for (target, value) in map {
        let ppath = format!("{path}.{target}");
        let header = target
            .strip_prefix("integration.request.header.")
            .map(str::to_ascii_lowercase);
        let Some(header) = header.filter(|h| REQUEST_HEADER_TARGETS.contains(&h.as_str())) else {
            errors.push(doc.error(
                &ppath,
                format!(
                    "targets are integration.request.header.NAME with NAME one of {}",
                    REQUEST_HEADER_TARGETS.join(", ")
                ),
            ));
            continue;
        };
        match value.as_str().map(ParamSource::parse) {
            Some(Ok(source)) => out.push((header, source)),
            Some(Err(m)) => errors.push(doc.error(&ppath, m)),
            None => errors.push(doc.error(&ppath, "a mapping expression is a string")),
        }
    }
    out
}

/// The `responses:` list of an integration.
pub fn integration_responses(
    doc: &Doc,
    path: &str,
    errors: &mut Vec<Diagnostic>,
) -> Vec<IntegrationResponse> {
    let Some(list) = doc.get(path).and_then(Value::as_array) else {
        if doc.get(path).is_some_and(|v| !v.is_null()) {
            errors.push(doc.error(path, "a list of integration responses"));
        }
        return Vec::new();
    };
    let mut out = Vec::new();
    for i in 0..list.len() {
        let rpath = format!("{path}[{i}]");
        let raw: RawIntegrationResponse = match doc.deserialize(&rpath) {
            Ok(r) => r,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        if !(100..=599).contains(&raw.status) {
            errors.push(doc.error(
                &format!("{rpath}.status"),
                "must be an HTTP status (100-599)",
            ));
        }
        let selection_pattern = raw.selection_pattern.and_then(|p| {
            Regex::new(&format!("^(?:{p})$"))
                .map_err(|e| {
                    errors.push(doc.error(
                        &format!("{rpath}.selection_pattern"),
                        format!("invalid regex: {e}"),
                    ))
                })
                .ok()
        });
        let mut headers = Vec::new();
        for (target, value) in &raw.response_parameters {
            let ppath = format!("{rpath}.response_parameters.{target}");
            let Some(name) = target.strip_prefix("method.response.header.") else {
                errors.push(doc.error(&ppath, "targets are method.response.header.NAME"));
                continue;
            };
            let Some(expr) = value.as_str() else {
                errors.push(doc.error(&ppath, "a mapping expression is a string"));
                continue;
            };
            let source = if let Some(h) = expr.strip_prefix("integration.response.header.") {
                Ok(ResponseSource::UpstreamHeader(h.to_ascii_lowercase()))
            } else if expr == "integration.response.body" {
                Ok(ResponseSource::UpstreamBody)
            } else {
                ParamSource::parse(expr).map(ResponseSource::Request)
            };
            match source {
                Ok(s) => headers.push((name.to_owned(), s)),
                Err(m) => errors.push(doc.error(&ppath, m)),
            }
        }
        let templates = templates(
            doc,
            &format!("{rpath}.response_templates"),
            &raw.response_templates,
            errors,
        );
        out.push(IntegrationResponse {
            selection_pattern,
            status: raw.status,
            headers,
            templates,
        });
    }
    if out.iter().filter(|r| r.selection_pattern.is_none()).count() > 1 {
        errors.push(doc.error(
            path,
            "at most one response may omit selection_pattern (the default)",
        ));
    }
    out
}

/// The top-level `gateway_responses:` mapping.
pub fn gateway_responses(doc: &Doc, errors: &mut Vec<Diagnostic>) -> GatewayResponses {
    let mut by_type = HashMap::new();
    let Some(map) = doc.get("gateway_responses").and_then(Value::as_object) else {
        return GatewayResponses::default();
    };
    let known: Vec<&str> = ResponseType::ALL.iter().map(|(_, n)| *n).collect();
    for name in map.keys() {
        let path = format!("gateway_responses.{name}");
        if !known.contains(&name.as_str()) {
            errors.push(doc.error(
                &path,
                format!("unknown gateway response type; known: {}", known.join(", ")),
            ));
            continue;
        }
        let raw: RawGatewayResponse = match doc.deserialize(&path) {
            Ok(r) => r,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        if raw.status.is_some_and(|s| !(100..=599).contains(&s)) {
            errors.push(doc.error(
                &format!("{path}.status"),
                "must be an HTTP status (100-599)",
            ));
        }
        let mut headers = Vec::new();
        for (target, value) in &raw.response_parameters {
            let ppath = format!("{path}.response_parameters.{target}");
            let Some(h) = target.strip_prefix("gatewayresponse.header.") else {
                errors.push(doc.error(&ppath, "targets are gatewayresponse.header.NAME"));
                continue;
            };
            match value.as_str().map(ParamSource::parse) {
                Some(Ok(s)) => headers.push((h.to_owned(), s)),
                Some(Err(m)) => errors.push(doc.error(&ppath, m)),
                None => errors.push(doc.error(&ppath, "a mapping expression is a string")),
            }
        }
        let templates = templates(
            doc,
            &format!("{path}.response_templates"),
            &raw.response_templates,
            errors,
        );
        by_type.insert(
            name.clone(),
            GatewayResponseOverride {
                status: raw.status,
                headers,
                templates,
            },
        );
    }
    GatewayResponses { by_type }
}
