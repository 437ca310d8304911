//! The caller's API key is a secret: configuration cannot send it to SageMaker.
//!
//! API Gateway lets a mapping read the `x-api-key` header like any other; sagegate does not, as it
//! leaves `$context.identity.apiKey` out of the template context: a key copied into a SageMaker
//! header or body would reach the model container's logs, its captured data, and the traces of
//! everything behind it. The caller is identified by its key id (`context.identity.apiKeyId`).
//!
//! - A mapping expression `method.request.header.x-api-key` feeding the integration request
//!   (`custom_attributes`, `inference_id`, `target_variant` and the other header sources,
//!   `request_parameters`) is an error.
//! - Request templates do not see the header at run time (`$input.params()` leaves it out, see
//!   `integration::mapping_input`); a request template that names it gets a warning at load, since it
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
const SINGLE_SOURCES: [&str; 8] = [
    "custom_attributes",
    "inference_id",
    "target_variant",
    "target_model",
    "inference_component_name",
    "target_container_hostname",
    "session_id",
    "enable_explanations",
];

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

#[cfg(test)]
mod tests {
    use crate::config::GatewayConfig;

    fn config(integration: &str) -> String {
        format!(
            "stages:\n  prod: {{}}\nroutes:\n  - method: GET\n    path: /a\n    integration:\n      endpoint_name: ep\n{integration}"
        )
    }

    #[test]
    fn a_mapping_that_sends_the_key_to_sagemaker_is_refused_where_it_is() {
        for integration in [
            "      custom_attributes: method.request.header.x-api-key\n",
            "      inference_id: method.request.header.X-API-Key\n",
            "      request_parameters:\n        integration.request.header.x-amzn-sagemaker-target-variant: method.request.header.x-api-key\n",
        ] {
            let errs = GatewayConfig::parse("g.yaml", &config(integration), &|_| None)
                .unwrap_err()
                .to_string();
            assert!(
                errs.starts_with("g.yaml:") && errs.contains("routes[0].integration."),
                "{errs}"
            );
            assert!(errs.contains("never reaches SageMaker"), "{errs}");
        }
        // The key id is fine, and so is another header.
        let ok = "      custom_attributes: context.identity.apiKeyId\n      inference_id: method.request.header.x-tenant\n";
        let c = GatewayConfig::parse("g.yaml", &config(ok), &|_| None).unwrap();
        assert!(c.warnings.is_empty());
    }

    #[test]
    fn a_template_naming_the_key_is_warned_about() {
        let template = "      request_templates:\n        application/json: '{\"k\": \"$input.params(''X-Api-Key'')\"}'\n";
        let c = GatewayConfig::parse("g.yaml", &config(template), &|_| None).unwrap();
        let warnings: Vec<String> = c.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("routes[0].integration.request_templates.application/json"),
            "{warnings:?}"
        );
    }
}
