//! One method's `x-amazon-apigateway-integration` read into a sagegate integration (reference
//! `apigw-export.md` §2.1): a SageMaker `InvokeEndpoint` call carries over with its templates,
//! header mappings, passthrough behaviour, timeout, integration responses and cache key; any other
//! integration (Lambda, HTTP, mock, another AWS service) leaves the method out.

use serde_json::{Map, Value};

use super::input::pointer;
use super::report::Finding;
use crate::config::param::ParamSource;
use crate::config::templates::REQUEST_HEADER_TARGETS;

const FILE: &str = "export";

/// The sagegate side of a SageMaker integration.
#[derive(Debug, Clone, Default)]
pub struct Integration {
    /// The endpoint name, possibly with `${stageVariables.x}`.
    pub endpoint_name: String,
    /// A static `Content-Type` mapping.
    pub content_type: Option<String>,
    /// A static `Accept` mapping.
    pub accept: Option<String>,
    /// `timeoutInMillis`.
    pub timeout_ms: Option<u64>,
    /// `passthroughBehavior`, upper case.
    pub passthrough: Option<&'static str>,
    /// Other `integration.request.header.X` mappings.
    pub request_parameters: Vec<(String, String)>,
    /// Request templates by media type.
    pub request_templates: Map<String, Value>,
    /// Integration responses in sagegate's form.
    pub responses: Vec<Value>,
    /// `cacheKeyParameters`.
    pub cache_key_parameters: Vec<String>,
    /// The role API Gateway assumed, if any (sagegate uses the task role).
    pub credentials: Option<String>,
}

/// Reads the integration at `at` of method `route`; `None` (with a finding) leaves the method out.
pub fn read(
    at: &str,
    route: &str,
    v: &Value,
    findings: &mut Vec<Finding>,
    regions: &mut Vec<String>,
) -> Option<Integration> {
    let mut left_out = |p: String, what: String, instead: &str| {
        findings.push(Finding::left_out(FILE, p, what, instead));
    };
    let kind = v
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_ascii_lowercase();
    let uri = v.get("uri").and_then(Value::as_str).unwrap_or("");
    let instead = match kind.as_str() {
        "aws" => None,
        "aws_proxy" => Some((
            "a Lambda proxy integration",
            "serve the function behind the load balancer (an ALB Lambda target group) or keep it in API Gateway",
        )),
        "http" | "http_proxy" => Some((
            "an HTTP integration",
            "route this path to that backend with an ALB listener rule",
        )),
        "mock" => Some((
            "a mock integration",
            "sagegate has no mock integrations: answer it elsewhere (CORS preflights at the ALB or in the client's origin)",
        )),
        _ => Some((
            "an integration of an unknown type",
            "configure the equivalent by hand",
        )),
    };
    if let Some((what, instead)) = instead {
        left_out(
            at.to_owned(),
            format!(
                "{route}: {what} ({})",
                if uri.is_empty() { kind.as_str() } else { uri }
            ),
            instead,
        );
        return None;
    }
    let endpoint_name = match sagemaker_endpoint(uri) {
        Ok((region, name)) => {
            regions.push(region);
            name
        }
        Err(what) => {
            left_out(
                pointer(at, &["uri"]),
                format!("{route}: {what} (`{uri}`)"),
                "sagegate calls SageMaker's InvokeEndpoint only (runtime.sagemaker:path/endpoints/NAME/invocations)",
            );
            return None;
        }
    };
    let mut integration = Integration {
        endpoint_name,
        ..Integration::default()
    };
    let mut ok = true;
    for (key, value) in v.as_object().into_iter().flatten() {
        let kat = pointer(at, &[key]);
        match key.as_str() {
            "type" | "uri" | "cacheNamespace" => {}
            "httpMethod" => {
                if !value
                    .as_str()
                    .is_some_and(|m| m.eq_ignore_ascii_case("POST"))
                {
                    findings.push(Finding::note(
                        FILE,
                        kat,
                        format!("{route}: integration method {value}"),
                        "InvokeEndpoint is a POST, which sagegate always sends",
                    ));
                }
            }
            "credentials" => {
                let role = value.as_str().unwrap_or("").to_owned();
                let what = if role.contains(":user/*") {
                    format!("{route}: the caller's own credentials ({role})")
                } else {
                    format!("{route}: API Gateway assumed {role} to call SageMaker")
                };
                findings.push(Finding::note(
                    FILE,
                    kat,
                    what,
                    "sagegate signs with its task role: allow it sagemaker:InvokeEndpoint on this endpoint (deploy/ does)",
                ));
                integration.credentials = Some(role);
            }
            "requestParameters" => {
                request_parameters(&kat, route, value, &mut integration, findings)
            }
            "requestTemplates" => {
                let before = findings.len();
                integration.request_templates = templates(&kat, route, Some(value), findings);
                // A request template that does not parse would send SageMaker something else:
                // leave the method out.
                ok &= findings.len() == before;
            }
            "passthroughBehavior" => {
                integration.passthrough =
                    match value.as_str().map(str::to_ascii_lowercase).as_deref() {
                        Some("when_no_match") => Some("WHEN_NO_MATCH"),
                        Some("when_no_templates") => Some("WHEN_NO_TEMPLATES"),
                        Some("never") => Some("NEVER"),
                        _ => {
                            findings.push(Finding::note(
                                FILE,
                                kat,
                                format!("{route}: passthrough behaviour {value}"),
                                "read as WHEN_NO_MATCH, API Gateway's default",
                            ));
                            None
                        }
                    }
            }
            "timeoutInMillis" => {
                let ms = value.as_u64().unwrap_or(29_000);
                let clamped = ms.clamp(50, 60_000);
                if clamped != ms {
                    findings.push(Finding::note(
                        FILE,
                        kat,
                        format!("{route}: timeout {ms} ms"),
                        format!("written as {clamped} ms (sagegate allows 50 to 60000, SageMaker's own limit)"),
                    ));
                }
                integration.timeout_ms = Some(clamped);
            }
            "responses" => integration.responses = responses(&kat, route, value, findings),
            "cacheKeyParameters" => {
                for (i, p) in value.as_array().into_iter().flatten().enumerate() {
                    let p = p.as_str().unwrap_or("");
                    let keyable = [
                        "method.request.path.",
                        "method.request.querystring.",
                        "method.request.header.",
                    ]
                    .iter()
                    .any(|prefix| p.strip_prefix(prefix).is_some_and(|n| !n.is_empty()));
                    if keyable {
                        integration.cache_key_parameters.push(p.to_owned());
                    } else {
                        findings.push(Finding::left_out(
                            FILE,
                            pointer(&kat, &[&i.to_string()]),
                            format!("{route}: cache key parameter `{p}`"),
                            "key parameters are method.request.{path,querystring,header}.NAME",
                        ));
                    }
                }
            }
            "contentHandling"
            | "connectionType"
            | "connectionId"
            | "tlsConfig"
            | "responseTransferMode"
            | "integrationTarget" => {
                let harmless = (key == "connectionType" && value == "INTERNET")
                    || (key == "responseTransferMode" && value == "BUFFERED");
                if !harmless {
                    findings.push(Finding::left_out(
                        FILE,
                        kat,
                        format!("{route}: {key} {value}"),
                        "sagegate sends and answers bodies as bytes, buffered, over the public SageMaker endpoint",
                    ));
                }
            }
            _ => findings.push(Finding::left_out(
                FILE,
                kat,
                format!("{route}: integration field `{key}`"),
                "a field sagegate does not know: configure its equivalent by hand",
            )),
        }
    }
    ok.then_some(integration)
}

/// (region, endpoint name) of a SageMaker `InvokeEndpoint` integration URI, or what it is instead.
fn sagemaker_endpoint(uri: &str) -> Result<(String, String), String> {
    let parts: Vec<&str> = uri.splitn(6, ':').collect();
    let [arn, _partition, "apigateway", region, service, rest] = parts.as_slice() else {
        return Err("not an AWS service integration URI".to_owned());
    };
    if *arn != "arn" {
        return Err("not an AWS service integration URI".to_owned());
    }
    if *service != "runtime.sagemaker" {
        return Err(format!("an integration with the AWS service `{service}`"));
    }
    let Some(path) = rest.strip_prefix("path/") else {
        return Err("an action-style SageMaker URI".to_owned());
    };
    let path = path.trim_start_matches('/');
    let Some(inner) = path.strip_prefix("endpoints/") else {
        return Err("a SageMaker path other than endpoints/NAME/invocations".to_owned());
    };
    let (name, call) = inner
        .split_once('/')
        .ok_or_else(|| "a SageMaker path other than endpoints/NAME/invocations".to_owned())?;
    match call {
        "invocations" => {}
        "async-invocations" => {
            return Err("asynchronous inference (InvokeEndpointAsync)".to_owned());
        }
        "invocations-response-stream" => {
            return Err("a streaming call (InvokeEndpointWithResponseStream)".to_owned());
        }
        _ => return Err("a SageMaker path other than endpoints/NAME/invocations".to_owned()),
    }
    let placeholder = name.replace("${stageVariables.", "");
    if name.is_empty() || placeholder.contains('{') {
        return Err("an endpoint name taken from the request".to_owned());
    }
    Ok(((*region).to_owned(), name.to_owned()))
}

fn request_parameters(
    at: &str,
    route: &str,
    value: &Value,
    integration: &mut Integration,
    findings: &mut Vec<Finding>,
) {
    for (target, source) in value.as_object().into_iter().flatten() {
        let pat = pointer(at, &[target]);
        let expr = source.as_str().unwrap_or("").trim_start_matches('$');
        let header = target
            .strip_prefix("integration.request.header.")
            .map(str::to_ascii_lowercase);
        let refuse = |why: &str, findings: &mut Vec<Finding>| {
            findings.push(Finding::left_out(
                FILE,
                pat.clone(),
                format!("{route}: `{target}: {source}`"),
                why,
            ));
        };
        let Some(header) = header.filter(|h| REQUEST_HEADER_TARGETS.contains(&h.as_str())) else {
            refuse(
                "SageMaker takes no query string or path parameters and only the headers Content-Type, Accept and X-Amzn-SageMaker-{Custom-Attributes,Inference-Id,Target-Variant,Target-Model,Inference-Component,Target-Container-Hostname,Session-Id,Enable-Explanations}",
                findings,
            );
            continue;
        };
        match ParamSource::parse(expr) {
            Ok(ParamSource::Literal(v)) if header == "content-type" => {
                integration.content_type = Some(v);
            }
            Ok(ParamSource::Literal(v)) if header == "accept" => integration.accept = Some(v),
            Ok(_) => integration
                .request_parameters
                .push((target.clone(), expr.to_owned())),
            Err(_) => refuse(
                "sources are 'literals', method.request.{header,querystring,path}.NAME, context.NAME or stageVariables.NAME",
                findings,
            ),
        }
    }
}

/// The `{media type: template}` mapping at `at` (of `what`): the templates that parse; each that
/// does not is a finding.
pub fn templates(
    at: &str,
    what: &str,
    value: Option<&Value>,
    findings: &mut Vec<Finding>,
) -> Map<String, Value> {
    let mut out = Map::new();
    for (media, template) in value.and_then(Value::as_object).into_iter().flatten() {
        let tat = pointer(at, &[media]);
        let Some(text) = template.as_str() else {
            findings.push(Finding::left_out(
                FILE,
                tat,
                format!("{what}: a template that is not a string"),
                "",
            ));
            continue;
        };
        match crate::mapping::parse(text) {
            Ok(_) => {
                out.insert(media.clone(), Value::String(text.to_owned()));
            }
            Err(e) => findings.push(Finding::left_out(
                FILE,
                tat,
                format!("{what}: the {media} template does not parse: line {} column {}: {}", e.line, e.col, e.message),
                "fix the template and add it by hand; the method is left out rather than sent to SageMaker without it",
            )),
        }
    }
    out
}

/// An HTTP status written as `"200"` or `200`.
pub fn status_code(v: Option<&Value>) -> Option<u16> {
    match v? {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        _ => None,
    }
    .filter(|s| (100..=599).contains(s))
}

/// The integration responses in sagegate's form, in export order.
fn responses(at: &str, route: &str, value: &Value, findings: &mut Vec<Finding>) -> Vec<Value> {
    let mut out = Vec::new();
    for (pattern, response) in value.as_object().into_iter().flatten() {
        let rat = pointer(at, &[pattern]);
        let mut entry = Map::new();
        if pattern != "default" {
            if let Err(e) = regex::Regex::new(&format!("^(?:{pattern})$")) {
                findings.push(Finding::left_out(
                    FILE,
                    rat,
                    format!(
                        "{route}: selection pattern `{pattern}` is not a regex sagegate reads: {e}"
                    ),
                    "rewrite it without Java-only regex features",
                ));
                continue;
            }
            entry.insert(
                "selection_pattern".to_owned(),
                Value::String(pattern.clone()),
            );
        }
        let status = status_code(response.get("statusCode")).unwrap_or(200);
        entry.insert("status".to_owned(), Value::from(status));
        let mut headers = Map::new();
        for (target, source) in response
            .get("responseParameters")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let expr = source.as_str().unwrap_or("");
            let ok = target.starts_with("method.response.header.")
                && (expr == "integration.response.body"
                    || expr
                        .strip_prefix("integration.response.header.")
                        .is_some_and(|h| !h.is_empty())
                    || (!expr.starts_with("integration.") && ParamSource::parse(expr).is_ok()));
            if ok {
                headers.insert(target.clone(), source.clone());
            } else {
                findings.push(Finding::left_out(
                    FILE,
                    pointer(&rat, &["responseParameters", target]),
                    format!("{route}: response header mapping `{target}: {source}`"),
                    "sources are integration.response.header.NAME, integration.response.body, 'literals', context.* or method.request.*",
                ));
            }
        }
        if !headers.is_empty() {
            entry.insert("response_parameters".to_owned(), Value::Object(headers));
        }
        let tat = pointer(&rat, &["responseTemplates"]);
        let templates = templates(&tat, route, response.get("responseTemplates"), findings);
        if !templates.is_empty() {
            entry.insert("response_templates".to_owned(), Value::Object(templates));
        }
        if let Some(ch) = response.get("contentHandling") {
            findings.push(Finding::left_out(
                FILE,
                pointer(&rat, &["contentHandling"]),
                format!("{route}: response contentHandling {ch}"),
                "sagegate sends SageMaker's answer as bytes",
            ));
        }
        out.push(Value::Object(entry));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sagemaker_uris_in_the_forms_seen() {
        let ok = |uri: &str| sagemaker_endpoint(uri).unwrap();
        assert_eq!(
            ok(
                "arn:aws:apigateway:eu-west-1:runtime.sagemaker:path//endpoints/movie-recommender/invocations"
            ),
            ("eu-west-1".into(), "movie-recommender".into())
        );
        assert_eq!(
            ok("arn:aws:apigateway:us-east-1:runtime.sagemaker:path/endpoints/${stageVariables.endpoint}/invocations").1,
            "${stageVariables.endpoint}"
        );
        for (uri, what) in [
            (
                "arn:aws:apigateway:us-east-1:kinesis:action/PutRecords",
                "the AWS service `kinesis`",
            ),
            (
                "arn:aws:apigateway:us-east-1:runtime.sagemaker:path/endpoints/ep/async-invocations",
                "asynchronous",
            ),
            (
                "arn:aws:apigateway:us-east-1:runtime.sagemaker:path/endpoints/{ep}/invocations",
                "taken from the request",
            ),
            (
                "arn:aws:apigateway:us-east-1:runtime.sagemaker:action/InvokeEndpoint",
                "action-style",
            ),
            ("https://example.com", "not an AWS service"),
        ] {
            let err = sagemaker_endpoint(uri).unwrap_err();
            assert!(err.contains(what), "{uri}: {err}");
        }
    }

    #[test]
    fn status_codes_as_strings_or_numbers() {
        assert_eq!(status_code(Some(&Value::from("400"))), Some(400));
        assert_eq!(status_code(Some(&Value::from(200))), Some(200));
        assert_eq!(status_code(Some(&Value::from("2xx"))), None);
        assert_eq!(status_code(Some(&Value::from(99))), None);
    }
}
