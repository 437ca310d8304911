//! The caller's API key is a secret: configuration cannot send it to SageMaker.
//!
//! API Gateway lets a mapping read the `x-api-key` header like any other; sagegate does not, as it
//! leaves `$context.identity.apiKey` out of the template context: a key copied into a SageMaker
//! header or body would reach the model container's logs, its captured data, and the traces of
//! everything behind it. The caller is identified by its key id (`context.identity.apiKeyId`).
//!
//! - A mapping expression `method.request.header.x-api-key` feeding the integration request
//!   (`custom_attributes`, `inference_id`, `target_variant`, `request_parameters`) is an error.
//! - Request templates do not see the header at run time (`$input.params()` leaves it out, see
//!   `pipeline::mapping_input`); a request template that names it gets a warning at load, since it
//!   would render an empty value where the operator expected the key.
//!
//! The cache's `key_parameters` may still read it (per-caller caching keeps the key in memory only).

use serde_json::Value;

use super::diag::Diagnostic;
use super::param::ParamSource;
use super::yaml::Doc;

/// The header that carries the API key.
const HEADER: &str = "x-api-key";

/// Integration fields holding one mapping expression each.
const SINGLE_SOURCES: [&str; 3] = ["custom_attributes", "inference_id", "target_variant"];

/// Errors for mappings that send the key to SageMaker; returns warnings for templates naming it.
pub(super) fn check(doc: &Doc, errors: &mut Vec<Diagnostic>) -> Vec<Diagnostic> {
    let mut warnings = Vec::new();
    let count = doc
        .get("routes")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    for i in 0..count {
        let integration = format!("routes[{i}].integration");
        let mut expressions: Vec<(String, &str)> = SINGLE_SOURCES
            .iter()
            .filter_map(|field| {
                let path = format!("{integration}.{field}");
                let expr = doc.get(&path)?.as_str()?;
                Some((path, expr))
            })
            .collect();
        let mappings = format!("{integration}.request_parameters");
        if let Some(map) = doc.get(&mappings).and_then(Value::as_object) {
            expressions.extend(
                map.iter()
                    .filter_map(|(target, v)| Some((format!("{mappings}.{target}"), v.as_str()?))),
            );
        }
        for (path, expr) in expressions {
            if matches!(ParamSource::parse(expr), Ok(ParamSource::Header(h)) if h.eq_ignore_ascii_case(HEADER))
            {
                errors.push(doc.error(
                    &path,
                    "the caller's x-api-key is a secret and never reaches SageMaker; map context.identity.apiKeyId (the key id) instead",
                ));
            }
        }
        let templates = format!("{integration}.request_templates");
        if let Some(map) = doc.get(&templates).and_then(Value::as_object) {
            for (media, text) in map {
                let names_key = text
                    .as_str()
                    .is_some_and(|t| t.to_ascii_lowercase().contains(HEADER));
                if names_key {
                    warnings.push(doc.error(
                        &format!("{templates}.{media}"),
                        "templates do not see the caller's x-api-key (it renders empty); use $context.identity.apiKeyId for the key id",
                    ));
                }
            }
        }
    }
    warnings
}
