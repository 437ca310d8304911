//! The export (`aws apigateway get-export --export-type oas30|swagger --parameters
//! extensions='apigateway'`, reference `apigw-export.md` §1–3) read into what `gateway.yaml` holds:
//! routes with their SageMaker integrations ([`super::sagemaker`]), API keys, request validators and
//! models, gateway responses, binary media types.
//!
//! A method whose caller check sagegate cannot do (a Lambda or Cognito authorizer, IAM) is left out
//! whole, never imported open: a route is either carried over with the same protection or not at
//! all. Everything else that does not map is left out alone, listed with its JSON pointer.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::input::{BadInput, pointer};
use super::report::Finding;
use super::sagemaker::{self, Integration};
use crate::config::models;

const FILE: &str = "export";
/// The prefix of every API Gateway extension.
const EXT: &str = "x-amazon-apigateway-";
/// Operation keys of a path item, with the method each one is.
const METHODS: [(&str, &str); 8] = [
    ("get", "GET"),
    ("put", "PUT"),
    ("post", "POST"),
    ("delete", "DELETE"),
    ("options", "OPTIONS"),
    ("head", "HEAD"),
    ("patch", "PATCH"),
    ("x-amazon-apigateway-any-method", "ANY"),
];

/// Which OpenAPI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `swagger: "2.0"` (`--export-type swagger`).
    Swagger2,
    /// `openapi: 3.0.x` (`--export-type oas30`).
    OpenApi3,
}

/// What the export holds that `gateway.yaml` can.
#[derive(Debug, Clone)]
pub struct Api {
    /// Which OpenAPI it was.
    pub version: Version,
    /// `info.title`.
    pub title: Option<String>,
    /// The REST API id, from the invoke URL.
    pub api_id: Option<String>,
    /// The stage the export was made from (its base path).
    pub stage: Option<String>,
    /// The SageMaker routes, in export order.
    pub routes: Vec<Route>,
    /// Models by name, as exported.
    pub models: Vec<(String, Value)>,
    /// `gateway_responses` entries: type → sagegate's form.
    pub gateway_responses: Vec<(String, Value)>,
    /// Binary media types.
    pub binary_media_types: Vec<String>,
    /// The region of the SageMaker integrations, when they agree on one.
    pub region: Option<String>,
}

/// One method carried over.
#[derive(Debug, Clone)]
pub struct Route {
    /// JSON pointer of the operation in the export.
    pub from: String,
    /// Upper-case method or ANY.
    pub method: String,
    /// Resource path.
    pub path: String,
    /// Whether an API key is required.
    pub api_key_required: bool,
    /// The request validator's name, when one applies.
    pub validator: Option<String>,
    /// Required query parameters (when the validator checks parameters).
    pub required_query: Vec<String>,
    /// Required headers (idem).
    pub required_headers: Vec<String>,
    /// Body models by media type (when the validator checks the body).
    pub body_models: Vec<(String, String)>,
    /// The SageMaker call.
    pub integration: Integration,
}

impl Route {
    /// `GET /path`.
    pub fn key(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// Reads `doc`; `findings` gets what is left out or changes meaning.
pub fn read(doc: &Value, findings: &mut Vec<Finding>) -> Result<Api, BadInput> {
    let version = version(doc)?;
    let root = doc.as_object().ok_or_else(not_an_export)?;
    let paths = root
        .get("paths")
        .and_then(Value::as_object)
        .ok_or_else(|| BadInput("the export has no `paths` mapping".to_owned()))?;
    let mut reader = Reader {
        doc,
        version,
        findings,
        api_key_schemes: Vec::new(),
        other_schemes: BTreeMap::new(),
        validators: BTreeMap::new(),
        regions: Vec::new(),
        model_names: Vec::new(),
    };
    reader.security_schemes();
    reader.validators();
    reader.root_extensions();
    let models = reader.models();
    let mut routes = Vec::new();
    for (path, item) in paths {
        routes.extend(reader.path_item(path, item));
    }
    let gateway_responses = reader.gateway_responses();
    let binary_media_types = reader.binary_media_types();
    let (api_id, stage) = reader.invoke_url();
    let region = match reader.regions.as_slice() {
        [first, rest @ ..] if rest.iter().all(|r| r == first) => Some(first.clone()),
        _ => None,
    };
    Ok(Api {
        version,
        title: doc
            .pointer("/info/title")
            .and_then(Value::as_str)
            .map(str::to_owned),
        api_id,
        stage,
        routes,
        models,
        gateway_responses,
        binary_media_types,
        region,
    })
}

fn not_an_export() -> BadInput {
    BadInput(
        "not an API Gateway export: expected `openapi: 3.0.x` or `swagger: \"2.0\"` at the top, as \
         `aws apigateway get-export --export-type oas30 --parameters extensions='apigateway'` writes"
            .to_owned(),
    )
}

fn version(doc: &Value) -> Result<Version, BadInput> {
    if doc.get("swagger").and_then(Value::as_str) == Some("2.0") {
        return Ok(Version::Swagger2);
    }
    match doc.get("openapi").and_then(Value::as_str) {
        Some(v) if v.starts_with("3.0") => Ok(Version::OpenApi3),
        Some(v) => Err(BadInput(format!(
            "OpenAPI {v} is not an API Gateway REST export (those are 3.0.x or Swagger 2.0)"
        ))),
        None => Err(not_an_export()),
    }
}

struct Reader<'a> {
    doc: &'a Value,
    version: Version,
    findings: &'a mut Vec<Finding>,
    /// Security schemes that are API Gateway's API key.
    api_key_schemes: Vec<String>,
    /// Other schemes: name → what they are (an authorizer, IAM).
    other_schemes: BTreeMap<String, String>,
    /// Request validators: name → (body, parameters).
    validators: BTreeMap<String, (bool, bool)>,
    /// Regions of the SageMaker integrations seen.
    regions: Vec<String>,
    /// The models carried over.
    model_names: Vec<String>,
}

impl Reader<'_> {
    fn left_out(&mut self, at: impl Into<String>, what: impl Into<String>, instead: &str) {
        self.findings
            .push(Finding::left_out(FILE, at, what, instead));
    }

    fn note(&mut self, at: impl Into<String>, what: impl Into<String>, instead: &str) {
        self.findings.push(Finding::note(FILE, at, what, instead));
    }

    fn schemes_pointer(&self) -> &'static str {
        match self.version {
            Version::Swagger2 => "/securityDefinitions",
            Version::OpenApi3 => "/components/securitySchemes",
        }
    }

    fn security_schemes(&mut self) {
        let at = self.schemes_pointer();
        let Some(schemes) = self.doc.pointer(at).and_then(Value::as_object) else {
            return;
        };
        for (name, scheme) in schemes {
            let field = |k: &str| scheme.get(k).and_then(Value::as_str).unwrap_or("");
            let authorizer = scheme.get("x-amazon-apigateway-authorizer");
            let authtype = field("x-amazon-apigateway-authtype");
            if field("type") == "apiKey"
                && field("in") == "header"
                && field("name").eq_ignore_ascii_case(crate::message::API_KEY_HEADER)
                && authorizer.is_none()
                && authtype.is_empty()
            {
                self.api_key_schemes.push(name.clone());
                continue;
            }
            let what = match authorizer {
                Some(a) => format!(
                    "a {} authorizer",
                    a.get("type").and_then(Value::as_str).unwrap_or("custom")
                ),
                None if authtype.to_ascii_lowercase().starts_with("aws") => {
                    "IAM (SigV4) authorization".to_owned()
                }
                None => format!("the `{name}` security scheme"),
            };
            self.other_schemes.insert(name.clone(), what);
        }
    }

    fn validators(&mut self) {
        let Some(map) = self
            .doc
            .get("x-amazon-apigateway-request-validators")
            .and_then(Value::as_object)
        else {
            return;
        };
        for (name, v) in map {
            let flag = |k: &str| v.get(k).and_then(Value::as_bool).unwrap_or(false);
            self.validators.insert(
                name.clone(),
                (
                    flag("validateRequestBody"),
                    flag("validateRequestParameters"),
                ),
            );
        }
    }

    /// Root-level extensions other than those read elsewhere.
    fn root_extensions(&mut self) {
        let Some(root) = self.doc.as_object() else {
            return;
        };
        for (key, value) in root {
            let Some(name) = key.strip_prefix(EXT) else {
                continue;
            };
            let at = pointer("", &[key]);
            match name {
                "request-validators" | "request-validator" | "gateway-responses"
                | "binary-media-types" => {}
                "api-key-source" => match value.as_str() {
                    Some("HEADER") | None => {}
                    Some(other) => self.left_out(
                        at,
                        format!("API keys from `{other}` (a Lambda authorizer's usageIdentifierKey)"),
                        "clients send their key in x-api-key; sagegate has no authorizers",
                    ),
                },
                "policy" => self.left_out(
                    at,
                    "a resource policy",
                    "restrict who reaches the load balancer instead: security groups, an internal ALB, or AWS WAF on the ALB (deploy/: enableWaf)",
                ),
                "endpoint-configuration" => self.endpoint_configuration(&at, value),
                "minimum-compression-size" => self.left_out(
                    at,
                    "response compression",
                    "sagegate answers uncompressed; compress in front of it (CloudFront) if clients need it",
                ),
                "documentation" => self.note(at, "documentation parts are not imported", ""),
                _ => self.left_out(
                    at,
                    format!("`{key}`: an extension sagegate does not know (or an HTTP API one)"),
                    "check what it did in API Gateway and configure the equivalent by hand",
                ),
            }
        }
        if let Some(servers) = self.doc.get("servers").and_then(Value::as_array) {
            for (i, server) in servers.iter().enumerate() {
                if let Some(ec) = server.get("x-amazon-apigateway-endpoint-configuration") {
                    let at = pointer(
                        "",
                        &[
                            "servers",
                            &i.to_string(),
                            "x-amazon-apigateway-endpoint-configuration",
                        ],
                    );
                    self.endpoint_configuration(&at, ec);
                }
            }
        }
    }

    fn endpoint_configuration(&mut self, at: &str, value: &Value) {
        let private = value
            .get("vpcEndpointIds")
            .and_then(Value::as_array)
            .is_some_and(|ids| !ids.is_empty());
        if private {
            self.left_out(
                at,
                "a private API (VPC endpoints)",
                "deploy sagegate behind an internal ALB (deploy/: internal) reachable from those VPCs",
            );
        }
    }

    fn models(&mut self) -> Vec<(String, Value)> {
        let at = match self.version {
            Version::Swagger2 => "/definitions",
            Version::OpenApi3 => "/components/schemas",
        };
        let Some(map) = self.doc.pointer(at).and_then(Value::as_object) else {
            return Vec::new();
        };
        let mut usable = Map::new();
        for (name, schema) in map {
            if !models::valid_name(name) || !schema.is_object() {
                self.left_out(
                    format!("{at}/{}", super::input::escape(name)),
                    format!("model `{name}`: not a usable model name or schema"),
                    "rename it (letters, digits, `_`, `-`, `.`) and add it under `models` by hand",
                );
                continue;
            }
            usable.insert(name.clone(), schema.clone());
        }
        // What gateway.yaml would refuse, model by model, until the rest compiles (a model that
        // refers to one left out fails in the next round).
        while !usable.is_empty() {
            let problems = models::problems(&usable);
            if problems.is_empty() {
                break;
            }
            for (path, message) in problems {
                let rest = path.strip_prefix("models.").unwrap_or(&path);
                let name = usable
                    .keys()
                    .filter(|n| {
                        rest == n.as_str()
                            || rest
                                .strip_prefix(n.as_str())
                                .is_some_and(|r| r.starts_with(['.', '[']))
                    })
                    .max_by_key(|n| n.len())
                    .cloned();
                if let Some(name) = name {
                    usable.remove(&name);
                    self.left_out(
                        format!("{at}/{}", super::input::escape(&name)),
                        format!("model `{name}`: {path}: {message}"),
                        "fix the schema and add it under `models` by hand",
                    );
                }
            }
        }
        self.model_names = usable.keys().cloned().collect();
        usable.into_iter().collect()
    }

    /// The REST API id and the stage, from the export's invoke URL.
    fn invoke_url(&self) -> (Option<String>, Option<String>) {
        let (host, base) = match self.version {
            Version::Swagger2 => (
                self.doc
                    .get("host")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                self.doc
                    .get("basePath")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            ),
            Version::OpenApi3 => {
                let server = self.doc.pointer("/servers/0");
                let url = server
                    .and_then(|s| s.get("url"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let base = server
                    .and_then(|s| s.pointer("/variables/basePath/default"))
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                let rest = url.split_once("://").map_or(url, |(_, r)| r);
                let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
                let path = base.unwrap_or_else(|| path.replace("{basePath}", ""));
                (Some(host.to_owned()), Some(path))
            }
        };
        let api_id = host.and_then(|h| h.split_once(".execute-api.").map(|(id, _)| id.to_owned()));
        let stage = base
            .map(|b| b.trim_matches('/').to_owned())
            .filter(|b| !b.is_empty() && !b.contains('/'));
        (api_id, stage)
    }

    fn path_item(&mut self, path: &str, item: &Value) -> Vec<Route> {
        let at = pointer("", &["paths", path]);
        let Some(item) = item.as_object() else {
            self.left_out(at, "a path item that is not a mapping", "");
            return Vec::new();
        };
        if !path.starts_with('/') {
            self.left_out(at, format!("path `{path}` does not start with /"), "");
            return Vec::new();
        }
        let shared = item.get("parameters").and_then(Value::as_array);
        let mut routes = Vec::new();
        for (key, op) in item {
            let method = METHODS.iter().find(|(k, _)| k == key).map(|(_, m)| *m);
            match method {
                Some(method) => {
                    let at = pointer(&at, &[key]);
                    if let Some(route) = self.operation(&at, method, path, op, shared) {
                        routes.push(route);
                    }
                }
                None if key == "parameters" || !key.starts_with("x-") => {}
                None => self.left_out(pointer(&at, &[key]), format!("`{key}` on a path"), ""),
            }
        }
        routes
    }

    fn operation(
        &mut self,
        at: &str,
        method: &str,
        path: &str,
        op: &Value,
        shared: Option<&Vec<Value>>,
    ) -> Option<Route> {
        let route_name = format!("{method} {path}");
        let Some(integration) = op.get("x-amazon-apigateway-integration") else {
            self.left_out(
                at,
                format!("{route_name}: no x-amazon-apigateway-integration"),
                "export with --parameters extensions='apigateway' (plain exports leave integrations out)",
            );
            return None;
        };
        // The caller check first: a method sagegate cannot protect as API Gateway did is left out.
        let api_key_required = self.caller_check(at, &route_name, op)?;
        let iat = pointer(at, &["x-amazon-apigateway-integration"]);
        let integration = sagemaker::read(
            &iat,
            &route_name,
            integration,
            self.findings,
            &mut self.regions,
        )?;
        for (key, _) in op.as_object().into_iter().flatten() {
            let known = [
                "x-amazon-apigateway-integration",
                "x-amazon-apigateway-request-validator",
                "x-amazon-apigateway-auth",
            ];
            if key.starts_with(EXT) && !known.contains(&key.as_str()) {
                self.left_out(
                    pointer(at, &[key]),
                    format!("{route_name}: `{key}`"),
                    "an extension sagegate does not know: configure its equivalent by hand",
                );
            }
        }
        let validator = op
            .get("x-amazon-apigateway-request-validator")
            .or_else(|| self.doc.get("x-amazon-apigateway-request-validator"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let (validate_body, validate_params) = match &validator {
            None => (false, false),
            Some(name) => match self.validators.get(name) {
                Some(flags) => *flags,
                None => {
                    self.left_out(
                        pointer(at, &["x-amazon-apigateway-request-validator"]),
                        format!("{route_name}: request validator `{name}` is not in x-amazon-apigateway-request-validators"),
                        "add the validation under routes[].validation by hand",
                    );
                    (false, false)
                }
            },
        };
        let params = self.parameters(at, op, shared);
        let (mut required_query, mut required_headers) = (Vec::new(), Vec::new());
        if validate_params {
            for p in &params {
                if !p.get("required").and_then(Value::as_bool).unwrap_or(false) {
                    continue;
                }
                let name = p
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                match p.get("in").and_then(Value::as_str) {
                    Some("query") => required_query.push(name),
                    Some("header") => required_headers.push(name),
                    _ => {}
                }
            }
        }
        let body_models = if validate_body {
            self.body_models(at, &route_name, op, &params)
        } else {
            Vec::new()
        };
        Some(Route {
            from: at.to_owned(),
            method: method.to_owned(),
            path: path.to_owned(),
            api_key_required,
            validator: validator.filter(|_| validate_body || validate_params),
            required_query,
            required_headers,
            body_models,
            integration,
        })
    }

    /// `Some(api_key_required)`, or `None` when the method needs a check sagegate cannot do.
    fn caller_check(&mut self, at: &str, route_name: &str, op: &Value) -> Option<bool> {
        if let Some(auth) = op.get("x-amazon-apigateway-auth") {
            let kind = auth.get("type").and_then(Value::as_str).unwrap_or("none");
            if !kind.eq_ignore_ascii_case("none") {
                self.left_out(
                    pointer(at, &["x-amazon-apigateway-auth"]),
                    format!("{route_name}: {kind} authorization; the method is left out rather than served unprotected"),
                    "sagegate checks API keys only: require a key (api_key_required) and issue keys, or keep the method in API Gateway",
                );
                return None;
            }
        }
        let (security, sat) = match op.get("security") {
            Some(s) => (s, pointer(at, &["security"])),
            None => match self.doc.get("security") {
                Some(s) => (s, "/security".to_owned()),
                None => return Some(false),
            },
        };
        let requirements = security.as_array().cloned().unwrap_or_default();
        let mut api_key = false;
        for requirement in &requirements {
            for scheme in requirement
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, _)| k)
            {
                if self.api_key_schemes.contains(scheme) {
                    api_key = true;
                } else {
                    let what = self
                        .other_schemes
                        .get(scheme)
                        .cloned()
                        .unwrap_or_else(|| format!("security scheme `{scheme}`"));
                    self.left_out(
                        sat,
                        format!("{route_name}: {what}; the method is left out rather than served unprotected"),
                        "sagegate checks API keys only: require a key and issue keys (sagegate keys new), or keep the method in API Gateway",
                    );
                    return None;
                }
            }
        }
        Some(api_key)
    }

    /// The operation's parameters after the path item's (an operation's own win), `$ref`s resolved.
    fn parameters(&mut self, at: &str, op: &Value, shared: Option<&Vec<Value>>) -> Vec<Value> {
        let mut out: Vec<Value> = Vec::new();
        let own = op.get("parameters").and_then(Value::as_array);
        for p in shared
            .into_iter()
            .flatten()
            .chain(own.into_iter().flatten())
        {
            let p = match p.get("$ref").and_then(Value::as_str) {
                Some(r) => match r.strip_prefix('#').and_then(|ptr| self.doc.pointer(ptr)) {
                    Some(target) => target.clone(),
                    None => {
                        self.left_out(
                            pointer(at, &["parameters"]),
                            format!("parameter `{r}` cannot be resolved"),
                            "",
                        );
                        continue;
                    }
                },
                None => p.clone(),
            };
            let id = |v: &Value| (v.get("name").cloned(), v.get("in").cloned());
            out.retain(|q| id(q) != id(&p));
            out.push(p);
        }
        out
    }

    /// The body models by media type: OpenAPI 3's `requestBody`, Swagger's `in: body` parameter
    /// with the operation's (or the API's) `consumes`.
    fn body_models(
        &mut self,
        at: &str,
        route_name: &str,
        op: &Value,
        params: &[Value],
    ) -> Vec<(String, String)> {
        let mut found: Vec<(String, Value, String)> = Vec::new();
        match self.version {
            Version::OpenApi3 => {
                let mut body = op.get("requestBody");
                if let Some(r) = body.and_then(|b| b.get("$ref")).and_then(Value::as_str) {
                    body = r.strip_prefix('#').and_then(|p| self.doc.pointer(p));
                }
                let content = body
                    .and_then(|b| b.get("content"))
                    .and_then(Value::as_object);
                for (media, entry) in content.into_iter().flatten() {
                    let sat = pointer(at, &["requestBody", "content", media, "schema"]);
                    let schema = entry.get("schema").cloned().unwrap_or(Value::Null);
                    found.push((media.clone(), schema, sat));
                }
            }
            Version::Swagger2 => {
                let consumes = op
                    .get("consumes")
                    .or_else(|| self.doc.get("consumes"))
                    .and_then(Value::as_array)
                    .map(|c| {
                        c.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_owned)
                            .collect::<Vec<_>>()
                    })
                    .filter(|c| !c.is_empty())
                    .unwrap_or_else(|| vec!["application/json".to_owned()]);
                for (i, p) in params.iter().enumerate() {
                    if p.get("in").and_then(Value::as_str) != Some("body") {
                        continue;
                    }
                    let sat = pointer(at, &["parameters", &i.to_string(), "schema"]);
                    let schema = p.get("schema").cloned().unwrap_or(Value::Null);
                    for media in &consumes {
                        found.push((media.clone(), schema.clone(), sat.clone()));
                    }
                }
            }
        }
        let mut out: Vec<(String, String)> = Vec::new();
        for (media, schema, sat) in found {
            let name = schema
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(models::referenced_model);
            match name {
                Some(name) if !self.model_names.iter().any(|n| n == name) => self.left_out(
                    sat,
                    format!(
                        "{route_name}: body validation against model `{name}`, which is left out"
                    ),
                    "fix the model, then add it to the route's validation.body",
                ),
                Some(name) if !out.iter().any(|(m, _)| *m == media) => {
                    out.push((media, name.to_owned()));
                }
                Some(_) => {}
                None => self.left_out(
                    sat,
                    format!("{route_name}: a request body schema that is not a model ($ref)"),
                    "add it under `models` and name it in the route's validation.body",
                ),
            }
        }
        out
    }

    fn gateway_responses(&mut self) -> Vec<(String, Value)> {
        let Some(map) = self
            .doc
            .get("x-amazon-apigateway-gateway-responses")
            .and_then(Value::as_object)
        else {
            return Vec::new();
        };
        let known: Vec<&str> = crate::error::ResponseType::ALL
            .iter()
            .map(|(_, n)| *n)
            .collect();
        let mut out = Vec::new();
        for (kind, response) in map {
            let at = pointer("", &["x-amazon-apigateway-gateway-responses", kind]);
            if !known.contains(&kind.as_str()) {
                self.left_out(
                    at,
                    format!("gateway response {kind}: sagegate never answers with it (it has no authorizers, IAM or WAF of its own)"),
                    "",
                );
                continue;
            }
            let mut entry = Map::new();
            if let Some(status) = sagemaker::status_code(response.get("statusCode")) {
                entry.insert("status".to_owned(), Value::from(status));
            }
            let params = response
                .get("responseParameters")
                .and_then(Value::as_object);
            let mut headers = Map::new();
            for (target, source) in params.into_iter().flatten() {
                let pat = pointer(&at, &["responseParameters", target]);
                let ok = target.starts_with("gatewayresponse.header.")
                    && source
                        .as_str()
                        .is_some_and(|s| crate::config::param::ParamSource::parse(s).is_ok());
                if ok {
                    headers.insert(target.clone(), source.clone());
                } else {
                    self.left_out(
                        pat,
                        format!("gateway response {kind}: `{target}: {source}`"),
                        "gateway responses set headers only, from 'literals', method.request.*, context.* or stageVariables.*",
                    );
                }
            }
            if !headers.is_empty() {
                entry.insert("response_parameters".to_owned(), Value::Object(headers));
            }
            let templates = sagemaker::templates(
                &pointer(&at, &["responseTemplates"]),
                &format!("gateway response {kind}"),
                response.get("responseTemplates"),
                self.findings,
            );
            if !templates.is_empty() {
                entry.insert("response_templates".to_owned(), Value::Object(templates));
            }
            out.push((kind.clone(), Value::Object(entry)));
        }
        out
    }

    fn binary_media_types(&mut self) -> Vec<String> {
        let Some(list) = self
            .doc
            .get("x-amazon-apigateway-binary-media-types")
            .and_then(Value::as_array)
        else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, t) in list.iter().enumerate() {
            let at = pointer(
                "",
                &["x-amazon-apigateway-binary-media-types", &i.to_string()],
            );
            match t.as_str() {
                Some(t) if !t.contains('*') && t.contains('/') => out.push(t.to_owned()),
                _ => self.left_out(
                    at,
                    format!("binary media type {t}: sagegate matches binary media types exactly"),
                    "list the exact types clients send under binary_media_types",
                ),
            }
        }
        out
    }
}
