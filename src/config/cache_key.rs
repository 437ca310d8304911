//! The rule that nothing outside a cached route's key reaches its cached answer (DESIGN "Edge
//! rules"): checked once, when the configuration is compiled.
//!
//! Input: every route some stage caches, with its request templates (their reads, computed from the
//! parsed template by [`crate::mapping::Template::reads`]), its integration parameters, its
//! passthrough behaviour, and the binary media types. Output: one diagnostic per input the route's
//! key does not hold, at the template reference or the setting that reads it (`file:line:col`),
//! naming the key parameter to add. The configuration is refused until the key covers every input
//! or caching is turned off for the route.
//!
//! What a cached answer can depend on, and what covers it:
//!
//! | input | read by | covered by |
//! |---|---|---|
//! | path parameter `p` | `$input.params('p')`, `$input.params().path`, the default body | `method.request.path.p` |
//! | query parameter `q` | `$input.params('q')` (unless `q` is a path parameter), `.querystring.q` | `method.request.querystring.q` or `.querystring.*` |
//! | every query parameter | `.querystring` whole or by a computed name, the default body | `method.request.querystring.*` |
//! | header `h` | `$input.params('h')` unless `h` is a path parameter, a required query parameter or one a `when` condition tests; `.header.h` | `method.request.header.h` |
//! | every header; `x-api-key` | `$input.params()`, `.header` whole, a computed name | nothing: refused |
//! | body | `$input.body`, `$input.json`, `$input.path`, passthrough | `method.request.body` (its SHA-256) |
//! | `Content-Type` | passthrough (sent on), two or more request templates (it selects one) | `method.request.header.content-type` |
//! | caller | `$context.identity.{apiKeyId,sourceIp,userAgent}` | `context.identity.*` of that name |
//! | other caller fields, `$context.authorizer.*` | templates | nothing: refused (sagegate has no authorizers) |
//! | `$context.path` (the raw path) | templates | `context.path` |
//! | `$context.xrayTraceId` (the caller's `X-Amzn-Trace-Id`) | templates, integration parameters | nothing: refused |
//! | stage, its variables, resource path, method | templates, `${stageVariables.x}` | always in the key |
//!
//! Exempt: per-request ids ([`PER_REQUEST`]), which differ on every request, and everything
//! rendered after the lookup (integration responses, response templates, gateway responses).
//! `$context` fields sagegate does not provide render as null, the same for every request; the
//! test `every_context_field_is_classified` keeps that list honest.

use std::collections::BTreeMap;

use serde_json::Value;

use super::cache::KeyPart;
use super::diag::Diagnostic;
use super::gateway::{Route, Stage};
use super::param::ParamSource;
use super::templates::Passthrough;
use super::yaml::Doc;
use crate::mapping::{Input, Name};

/// `$context` values a key can hold (after `context.`).
pub const KEYABLE_CONTEXT: [&str; 4] = [
    "identity.apiKeyId",
    "identity.sourceIp",
    "identity.userAgent",
    "path",
];
/// Per-request ids: exempt (an answer stored with one of them is not another caller's input).
pub const PER_REQUEST: [&str; 4] = [
    "requestId",
    "extendedRequestId",
    "requestTime",
    "requestTimeEpoch",
];
/// `$context` fields the caller writes, which no key can hold: `xrayTraceId` is the caller's own
/// `X-Amzn-Trace-Id` when it sent one (any visible ASCII up to 256 characters), so it is not a
/// per-request id but free text an attacker would store in everyone's answer.
pub const CALLER_CHOSEN: [&str; 1] = ["xrayTraceId"];
/// `$context` fields every key already holds: its stage (the scope), the route's resource path,
/// the request's method; the protocol, always `HTTP/1.1`; and `isCanaryRequest`: a canary
/// request runs on its canary's view of the stage, whose scope is its own (`config::canary`).
pub const HELD_BY_KEY: [&str; 5] = [
    "stage",
    "resourcePath",
    "httpMethod",
    "protocol",
    "isCanaryRequest",
];
/// `$context.identity` fields sagegate provides.
const IDENTITY: [&str; 3] = ["apiKeyId", "sourceIp", "userAgent"];

/// One input of a cached answer and what would cover it.
struct Need {
    /// The key part that covers it, or why none can.
    part: Result<KeyPart, &'static str>,
    /// The input, in words (`header \`seed\``).
    what: String,
    /// Another way out, when there is one.
    hint: Option<String>,
}

impl Need {
    fn key(part: KeyPart, what: impl Into<String>) -> Need {
        Need {
            part: Ok(part),
            what: what.into(),
            hint: None,
        }
    }

    fn refused(why: &'static str, what: impl Into<String>) -> Need {
        Need {
            part: Err(why),
            what: what.into(),
            hint: None,
        }
    }

    fn hint(mut self, hint: impl Into<String>) -> Need {
        self.hint = Some(hint.into());
        self
    }
}

/// An input a cached route reads that its key does not hold: what `check` refuses the file for,
/// and what `sagegate import` adds to the key instead.
#[derive(Debug, Clone)]
pub struct KeyGap {
    /// Index of the route in `routes`.
    pub route: usize,
    /// The key part that would cover the input, or why no key part can.
    pub part: Result<KeyPart, &'static str>,
    /// The input, in words (`header \`seed\``).
    pub what: String,
    /// The located error `check` reports for it.
    pub diagnostic: Diagnostic,
}

/// Where a need comes from: a position inside a template, or a setting.
enum At {
    Template(String, u32, u32),
    Node(String),
}

/// Checks every cached route of `routes`; `routes[i]` is at `routes[i]` in `doc`. Each gap is one
/// error of the file.
pub(super) fn check(
    doc: &Doc,
    stages: &BTreeMap<String, Stage>,
    routes: &[Route],
    binary_media_types: &[String],
) -> Vec<KeyGap> {
    let mut gaps = Vec::new();
    for (i, route) in routes.iter().enumerate() {
        let cached = stages
            .values()
            .any(|s| route.cache.ttl_on(&s.cache, &route.method).is_some());
        if cached {
            let path = format!("routes[{i}]");
            gaps.extend(check_route(doc, &path, i, route, binary_media_types));
        }
    }
    gaps
}

fn check_route(
    doc: &Doc,
    path: &str,
    index: usize,
    route: &Route,
    binary_media_types: &[String],
) -> Vec<KeyGap> {
    let mut gaps = Vec::new();
    let mut needs = template_reads(doc, path, route);
    needs.extend(parameter_reads(doc, path, route));
    needs.extend(integration_reads(doc, path, route, binary_media_types));
    // Each missing part once per route, where it is first read.
    let mut reported: Vec<String> = Vec::new();
    for (at, need) in needs {
        let (covered, id) = match &need.part {
            Ok(part) => (route.cache.holds(part), part.to_string()),
            Err(_) => (false, need.what.clone()),
        };
        if covered || reported.contains(&id) {
            continue;
        }
        reported.push(id);
        let message = message(path, &need);
        let diagnostic = match at {
            At::Template(p, line, col) => {
                doc.error_in_scalar(&p, line as usize, col as usize, message)
            }
            At::Node(p) => doc.error(&p, message),
        };
        gaps.push(KeyGap {
            route: index,
            part: need.part,
            what: need.what,
            diagnostic,
        });
    }
    gaps
}

/// The keys of the mapping at `path` in the file, as written.
fn keys_at(doc: &Doc, path: &str) -> Vec<String> {
    doc.get(path)
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// What the route's request templates read, at each first reading reference.
fn template_reads(doc: &Doc, path: &str, route: &Route) -> Vec<(At, Need)> {
    let tpath = format!("{path}.integration.request_templates");
    let mut needs = Vec::new();
    for media in keys_at(doc, &tpath) {
        let Some(template) = route.integration.request_templates.get(&media) else {
            continue;
        };
        for read in template.reads() {
            for need in template_needs(route, &read.input) {
                let at = At::Template(format!("{tpath}.{media}"), read.line, read.col);
                needs.push((at, need));
            }
        }
    }
    needs
}

/// What the identifier headers and `request_parameters` copy from the request.
fn parameter_reads(doc: &Doc, path: &str, route: &Route) -> Vec<(At, Need)> {
    let integration = &route.integration;
    let ipath = format!("{path}.integration");
    let mut needs = Vec::new();
    for (field, _, source) in integration.header_sources() {
        for need in source.iter().flat_map(|s| source_needs(route, s)) {
            needs.push((At::Node(format!("{ipath}.{field}")), need));
        }
    }
    let ppath = format!("{ipath}.request_parameters");
    let targets = keys_at(doc, &ppath);
    for (header, source) in &integration.request_headers {
        let target = targets
            .iter()
            .find(|t| t.to_ascii_lowercase().ends_with(&format!(".{header}")))
            .map_or_else(|| ppath.clone(), |t| format!("{ppath}.{t}"));
        for need in source_needs(route, source) {
            needs.push((At::Node(target.clone()), need));
        }
    }
    needs
}

/// What the integration reads on its own: a body passed through with its content type, the
/// Content-Type choosing a template, the default body's parameters.
fn integration_reads(
    doc: &Doc,
    path: &str,
    route: &Route,
    binary_media_types: &[String],
) -> Vec<(At, Need)> {
    let ipath = format!("{path}.integration");
    let tpath = format!("{ipath}.request_templates");
    let templates = route.integration.request_templates.0.len();
    let passthrough = route.integration.passthrough;
    let mut needs = Vec::new();
    let passes_through = match templates {
        0 => passthrough != Passthrough::Never,
        _ => passthrough == Passthrough::WhenNoMatch,
    };
    if passes_through {
        let written = |p: &str| doc.get(p).is_some().then(|| p.to_owned());
        let setting = written(&format!("{ipath}.passthrough_behavior"))
            .or_else(|| written(&tpath))
            .unwrap_or_else(|| ipath.clone());
        let hint = if templates == 0 {
            "or add a request template with passthrough_behavior: NEVER"
        } else {
            "or set passthrough_behavior: NEVER (415 for other content types)"
        };
        for need in body_and_type("passed through to SageMaker when no request template matches") {
            needs.push((At::Node(setting.clone()), need.hint(hint)));
        }
    }
    if !binary_media_types.is_empty() {
        for need in body_and_type("passed through for the binary media types") {
            needs.push((At::Node("binary_media_types".to_owned()), need));
        }
    }
    if templates > 1 {
        let need = Need::key(
            KeyPart::Param(ParamSource::Header("content-type".to_owned())),
            "header `content-type`, which selects the request template",
        );
        needs.push((At::Node(tpath), need));
    }
    if templates == 0 && passthrough != Passthrough::Never {
        let default_body = "(without request templates the body is a JSON object of them)";
        for name in path_params(&route.path) {
            let need = Need::key(
                KeyPart::Param(ParamSource::Path(name.to_owned())),
                format!("path parameter `{name}` {default_body}"),
            );
            needs.push((At::Node(ipath.clone()), need));
        }
        let need = Need::key(
            KeyPart::AllQuery,
            format!("every query parameter {default_body}"),
        );
        needs.push((At::Node(ipath), need));
    }
    needs
}

fn message(path: &str, need: &Need) -> String {
    let off = format!("or turn caching off for this route ({path}.cache.enabled: false)");
    let hint = need
        .hint
        .as_ref()
        .map(|h| format!("; {h}"))
        .unwrap_or_default();
    match &need.part {
        Ok(part) => format!(
            "the cached answer depends on {}, which the cache key does not hold: add `{part}` to \
             {path}.cache.key_parameters{hint}, {off}",
            need.what
        ),
        Err(why) => format!(
            "the cached answer depends on {}, which no cache key can hold ({why}){hint}; {off}",
            need.what
        ),
    }
}

fn body_and_type(how: &str) -> [Need; 2] {
    [
        Need::key(KeyPart::Body, format!("the request body ({how})")),
        Need::key(
            KeyPart::Param(ParamSource::Header("content-type".to_owned())),
            format!("header `content-type` (sent with the body {how})"),
        ),
    ]
}

/// Names of the `{param}` / `{param+}` segments of a resource path.
fn path_params(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter_map(|seg| {
        let name = seg.strip_prefix('{')?.strip_suffix('}')?;
        Some(name.strip_suffix('+').unwrap_or(name))
    })
}

fn has_path_param(route: &Route, name: &str) -> bool {
    path_params(&route.path).any(|p| p == name)
}

fn path_need(route: &Route, name: &str) -> Option<Need> {
    has_path_param(route, name).then(|| {
        Need::key(
            KeyPart::Param(ParamSource::Path(name.to_owned())),
            format!("path parameter `{name}`"),
        )
    })
}

fn header_need(name: &str, what: String) -> Need {
    let lower = name.to_ascii_lowercase();
    if lower == crate::message::API_KEY_HEADER {
        return Need::refused("the API key is never kept in a cache key", what)
            .hint("key by caller with context.identity.apiKeyId instead of reading the key");
    }
    Need::key(KeyPart::Param(ParamSource::Header(lower)), what)
}

/// What a template read needs from the key of `route`.
fn template_needs(route: &Route, input: &Input) -> Vec<Need> {
    let every_header = || {
        Need::refused(
            "headers include per-request ids and the API key",
            "every request header",
        )
        .hint("read headers by name ($input.params().header.get('name'))")
    };
    match input {
        Input::Param(Name::One(n)) => {
            if let Some(need) = path_need(route, n) {
                return vec![need];
            }
            let query = Need::key(
                KeyPart::Param(ParamSource::Query(n.clone())),
                format!("query parameter `{n}`"),
            );
            let present = route.validation.required_query.contains(n)
                || route
                    .cache
                    .when
                    .iter()
                    .any(|(p, _)| *p == ParamSource::Query(n.clone()));
            if present {
                // Required, or a `when` condition on it: every cached request has the query
                // parameter, so `$input.params(n)` never reaches the headers.
                return vec![query];
            }
            let header = header_need(
                n,
                format!("header `{n}` ($input.params('{n}') reads it when the query string has no `{n}`)"),
            )
            .hint(format!(
                "read the query string only with \"$!input.params().querystring.get('{n}')\""
            ));
            vec![query, header]
        }
        Input::Param(Name::All) => {
            let mut needs = template_needs(route, &Input::Path(Name::All));
            needs.push(Need::key(
                KeyPart::AllQuery,
                "every query parameter ($input.params with a name known only at run time)",
            ));
            needs.push(every_header());
            needs
        }
        Input::Path(Name::One(n)) => path_need(route, n).into_iter().collect(),
        Input::Path(Name::All) => path_params(&route.path)
            .filter_map(|n| path_need(route, n))
            .collect(),
        Input::Query(Name::One(n)) => vec![Need::key(
            KeyPart::Param(ParamSource::Query(n.clone())),
            format!("query parameter `{n}`"),
        )],
        Input::Query(Name::All) => vec![Need::key(KeyPart::AllQuery, "every query parameter")],
        Input::Header(Name::One(n)) => vec![header_need(n, format!("header `{n}`"))],
        Input::Header(Name::All) => vec![every_header()],
        Input::Body(_) => vec![Need::key(KeyPart::Body, "the request body")],
        Input::Identity(Name::One(f)) => context_needs(&format!("identity.{f}")),
        Input::Identity(Name::All) => context_needs("identity"),
        Input::Authorizer(Name::One(f)) => context_needs(&format!("authorizer.{f}")),
        Input::Authorizer(Name::All) => context_needs("authorizer"),
        Input::Context(Name::One(c)) => context_needs(c),
        Input::Context(Name::All) => ["path", "identity"]
            .into_iter()
            .flat_map(context_needs)
            .collect(),
        Input::StageVariable(_) => Vec::new(),
    }
}

/// What a `$context` field (dotted, without `context.`) needs from the key.
fn context_needs(field: &str) -> Vec<Need> {
    let keyed = |f: &str| {
        Need::key(
            KeyPart::Param(ParamSource::Context(f.to_owned())),
            format!("`$context.{f}`"),
        )
    };
    let refused = |why| vec![Need::refused(why, format!("`$context.{field}`"))];
    match field
        .split_once('.')
        .map_or((field, None), |(t, f)| (t, Some(f)))
    {
        ("identity", None) => IDENTITY
            .iter()
            .map(|f| keyed(&format!("identity.{f}")))
            .collect(),
        ("identity", Some(f)) if IDENTITY.contains(&f) => vec![keyed(field)],
        ("identity", Some(_)) => refused("sagegate does not provide it"),
        ("authorizer", _) => refused("sagegate has no authorizers"),
        _ if CALLER_CHOSEN.contains(&field) => vec![
            Need::refused(
                "the caller chooses it with its X-Amzn-Trace-Id header",
                format!("`$context.{field}`"),
            )
            .hint("use `$context.requestId` for a per-request id"),
        ],
        _ if KEYABLE_CONTEXT.contains(&field) => vec![keyed(field)],
        // Per-request ids, fields the key holds, and fields sagegate does not provide (null).
        _ => Vec::new(),
    }
}

/// What an integration parameter (`custom_attributes: method.request.header.x`...) needs.
fn source_needs(route: &Route, source: &ParamSource) -> Vec<Need> {
    match source {
        ParamSource::Header(n) => vec![header_need(n, format!("header `{n}`"))],
        ParamSource::Query(n) => template_needs(route, &Input::Query(Name::One(n.clone()))),
        ParamSource::Path(n) => path_need(route, n).into_iter().collect(),
        ParamSource::Context(c) => context_needs(c),
        ParamSource::StageVariable(_) | ParamSource::Literal(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests;
