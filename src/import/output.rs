//! The two files an import writes, as text: `gateway.yaml` (the deployment settings as shipped,
//! then the API) and `keys.yaml`. Every piece has a comment naming where it came from
//! (`file#JSON pointer`), so an operator can review the result against the export.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::export::{Api, Route};
use super::keys::{Key, Plan};
use super::stages::{Stage, Stages};
use super::yaml::{Entry, Node, document};

/// The shipped configuration; its deployment sections (listener, telemetry, SageMaker client,
/// limit store) read the environment variables the deployment sets, so an imported file runs in
/// the same deployment unchanged.
const SHIPPED: &str = include_str!("../../config/gateway.yaml");
/// The shipped sections copied into every imported `gateway.yaml`.
const DEPLOYMENT_SECTIONS: [&str; 4] = ["server", "telemetry", "sagemaker", "limits"];
/// The region default the shipped file writes, replaced by the integrations' region.
const SHIPPED_REGION: &str = "${env:AWS_REGION:-us-east-1}";

/// What the gap analysis added to each route's cache key (route index → (part, why)), and the
/// routes whose caching it turned off.
#[derive(Debug, Clone, Default)]
pub struct KeyChanges {
    /// Key parameters added, by route index.
    pub added: BTreeMap<usize, Vec<(String, String)>>,
    /// Routes no key can cover, by index, with why.
    pub uncached: BTreeMap<usize, String>,
}

/// The text of `gateway.yaml`.
pub fn gateway(api: &Api, stages: &Stages, changes: &KeyChanges, header: &[String]) -> String {
    let mut text = document(header, &[]);
    text.push('\n');
    text.push_str(&deployment_sections(api.region.as_deref()));
    text.push('\n');
    let mut entries = vec![
        Entry::new(
            "stages",
            Node::Map(stages.stages.iter().map(stage).collect()),
        )
        .comment("The API, imported."),
    ];
    if !api.models.is_empty() {
        entries.push(
            Entry::new(
                "models",
                Node::Map(
                    api.models
                        .iter()
                        .map(|(name, schema)| {
                            Entry::new(name, Node::from_value(schema)).comment(format!(
                                "export#{}/{}",
                                models_pointer(api),
                                super::input::escape(name)
                            ))
                        })
                        .collect(),
                ),
            )
            .comment("JSON Schema draft 4, for validation.body of the routes."),
        );
    }
    let any_cache = stages.stages.iter().any(|s| s.cache.is_some());
    entries.push(Entry::new(
        "routes",
        Node::List(
            api.routes
                .iter()
                .enumerate()
                .map(|(i, r)| route(r, i, stages, any_cache, changes))
                .collect(),
        ),
    ));
    if !api.gateway_responses.is_empty() {
        entries.push(Entry::new(
            "gateway_responses",
            Node::Map(
                api.gateway_responses
                    .iter()
                    .map(|(kind, v)| {
                        Entry::new(kind, Node::from_value(v)).comment(format!(
                            "export#/x-amazon-apigateway-gateway-responses/{kind}"
                        ))
                    })
                    .collect(),
            ),
        ));
    }
    if !api.binary_media_types.is_empty() {
        entries.push(
            Entry::new(
                "binary_media_types",
                Node::from_value(&json!(api.binary_media_types)),
            )
            .comment("export#/x-amazon-apigateway-binary-media-types"),
        );
    }
    text.push_str(&document(&[], &entries));
    text
}

fn models_pointer(api: &Api) -> &'static str {
    match api.version {
        super::export::Version::Swagger2 => "/definitions",
        super::export::Version::OpenApi3 => "/components/schemas",
    }
}

/// The deployment sections of the shipped `gateway.yaml`, comments and all, with `region` as the
/// SageMaker region's default.
pub fn deployment_sections(region: Option<&str>) -> String {
    let lines: Vec<&str> = SHIPPED.lines().collect();
    let top_level =
        |l: &str| l.chars().next().is_some_and(|c| c.is_ascii_lowercase()) && l.contains(':');
    // Each section starts at its key, or at the comment lines right above it.
    let mut starts: Vec<(usize, &str)> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if top_level(line) {
            let mut start = i;
            while start > 0 && lines[start - 1].starts_with('#') {
                start -= 1;
            }
            let key = line.split(':').next().unwrap_or("");
            starts.push((start, key));
        }
    }
    let mut out = String::from(
        "# Deployment settings, as shipped with sagegate (config/gateway.yaml): they read the\n\
         # environment variables the deployment (deploy/) sets.\n",
    );
    for (n, (start, key)) in starts.iter().enumerate() {
        if !DEPLOYMENT_SECTIONS.contains(key) {
            continue;
        }
        let end = starts.get(n + 1).map_or(lines.len(), |(s, _)| *s);
        for line in &lines[*start..end] {
            let line = match region {
                Some(r) => line.replace(SHIPPED_REGION, &format!("${{env:AWS_REGION:-{r}}}")),
                None => (*line).to_owned(),
            };
            out.push_str(&line);
            out.push('\n');
        }
    }
    out.trim_end().to_owned() + "\n"
}

fn stage(s: &Stage) -> Entry {
    let mut entries = Vec::new();
    if !s.variables.is_empty() {
        entries.push(Entry::new(
            "variables",
            Node::from_value(&json!(s.variables)),
        ));
    }
    if let Some((rate, burst)) = s.throttle {
        entries.push(Entry::new("throttle", throttle(rate, burst)).comment("methodSettings */*"));
    }
    if !s.route_throttles.is_empty() {
        let map: Map<String, Value> = s
            .route_throttles
            .iter()
            .map(|(r, rate, burst)| (r.clone(), json!({"rate_limit": rate, "burst_limit": burst})))
            .collect();
        entries.push(
            Entry::new("route_throttles", Node::from_value(&Value::Object(map)))
                .comment("per-method settings"),
        );
    }
    if let Some(cache) = &s.cache {
        let mut c = json!({"enabled": true, "ttl_secs": cache.ttl_secs});
        if let Some(r) = cache.require_authorization {
            c["require_authorization"] = json!(r);
        }
        if let Some(u) = &cache.unauthorized_strategy {
            c["unauthorized_strategy"] = json!(u);
        }
        let size = cache.cluster_size.as_deref().map_or_else(String::new, |s| {
            format!("API Gateway's cluster held {s} GB; ")
        });
        entries.push(Entry::new("cache", Node::from_value(&c)).comment(format!(
            "{size}this cache lives in the task's memory, bounded by max_bytes (default 64 MiB)"
        )));
    }
    if let Some(canary) = &s.canary {
        entries.push(Entry::new("canary", Node::from_value(canary)).comment("canarySettings"));
    }
    let node = if entries.is_empty() {
        Node::Flow(json!({}))
    } else {
        Node::Map(entries)
    };
    Entry::new(&s.name, node).comment(s.from.clone())
}

fn throttle(rate: f64, burst: u64) -> Node {
    Node::from_value(&json!({"rate_limit": rate, "burst_limit": burst}))
}

fn route(r: &Route, index: usize, stages: &Stages, any_cache: bool, changes: &KeyChanges) -> Node {
    let mut entries = vec![
        Entry::new("method", Node::text(&r.method)).comment(format!(
            "{} <- export#{}",
            r.key(),
            r.from
        )),
        Entry::new("path", Node::text(&r.path)),
        Entry::new("api_key_required", Node::Scalar(json!(r.api_key_required))),
    ];
    let mut validation = Vec::new();
    if !r.required_query.is_empty() {
        validation.push(Entry::new(
            "required_query",
            Node::from_value(&json!(r.required_query)),
        ));
    }
    if !r.required_headers.is_empty() {
        validation.push(Entry::new(
            "required_headers",
            Node::from_value(&json!(r.required_headers)),
        ));
    }
    if !r.body_models.is_empty() {
        let map: Map<String, Value> = r
            .body_models
            .iter()
            .map(|(m, n)| (m.clone(), json!(n)))
            .collect();
        validation.push(Entry::new("body", Node::from_value(&Value::Object(map))));
    }
    if !validation.is_empty() {
        let name = r.validator.as_deref().unwrap_or("");
        entries.push(
            Entry::new("validation", Node::Map(validation))
                .comment(format!("request validator `{name}`")),
        );
    }
    if any_cache {
        entries.push(route_cache(r, index, stages, changes));
    }
    entries.push(Entry::new("integration", integration(r)));
    Node::Map(entries)
}

fn route_cache(r: &Route, index: usize, stages: &Stages, changes: &KeyChanges) -> Entry {
    let caching = stages.caching.get(&r.key());
    if let Some(why) = changes.uncached.get(&index) {
        return Entry::new("cache", Node::from_value(&json!({"enabled": false}))).comment(format!(
            "cached in API Gateway, but it reads {why}, which no cache key can hold"
        ));
    }
    let Some(caching) = caching else {
        return Entry::new("cache", Node::from_value(&json!({"enabled": false})))
            .comment("not cached in API Gateway");
    };
    let mut entries = vec![Entry::new("enabled", Node::Scalar(json!(caching.enabled)))];
    if let Some(ttl) = caching.ttl_secs {
        entries.push(Entry::new("ttl_secs", Node::Scalar(json!(ttl))));
    }
    let mut keys: Vec<String> = r.integration.cache_key_parameters.clone();
    let added = changes.added.get(&index).cloned().unwrap_or_default();
    keys.extend(added.iter().map(|(p, _)| p.clone()));
    if !keys.is_empty() {
        let mut entry = Entry::new(
            "key_parameters",
            Node::List(keys.iter().map(Node::text).collect()),
        );
        if !r.integration.cache_key_parameters.is_empty() {
            entry = entry.comment("cacheKeyParameters");
        }
        for (part, why) in &added {
            entry = entry.comment(format!("added by sagegate import: {part}, for {why}"));
        }
        entries.push(entry);
    }
    Entry::new("cache", Node::Map(entries)).comment(
        "API Gateway caches every request of a cached method; `when:` can narrow it (README \"Cache\")",
    )
}

fn integration(r: &Route) -> Node {
    let i = &r.integration;
    let mut entries = vec![Entry::new("endpoint_name", Node::text(&i.endpoint_name))];
    if let Some(ct) = &i.content_type {
        entries.push(Entry::new("content_type", Node::text(ct)));
    }
    if let Some(a) = &i.accept {
        entries.push(Entry::new("accept", Node::text(a)));
    }
    if let Some(ms) = i.timeout_ms {
        entries.push(Entry::new("timeout_ms", Node::Scalar(json!(ms))));
    }
    if let Some(p) = i.passthrough {
        entries.push(Entry::new("passthrough_behavior", Node::text(p)));
    }
    if !i.request_parameters.is_empty() {
        let map: Map<String, Value> = i
            .request_parameters
            .iter()
            .map(|(t, s)| (t.clone(), json!(s)))
            .collect();
        entries.push(Entry::new(
            "request_parameters",
            Node::from_value(&Value::Object(map)),
        ));
    }
    if !i.request_templates.is_empty() {
        entries.push(Entry::new(
            "request_templates",
            Node::Map(
                i.request_templates
                    .iter()
                    .map(|(m, t)| Entry::new(m, Node::from_value(t)))
                    .collect(),
            ),
        ));
    }
    if !i.responses.is_empty() {
        entries.push(Entry::new(
            "responses",
            Node::List(i.responses.iter().map(Node::from_value).collect()),
        ));
    }
    Node::Map(entries)
}

/// The text of `keys.yaml`.
pub fn keys(plans: &[Plan], keys: &[Key], header: &[String]) -> String {
    let plan_nodes = plans
        .iter()
        .map(|p| {
            let mut entries = vec![
                Entry::new("id", Node::text(&p.id)).comment(match &p.name {
                    Some(n) => format!("{n} <- {}", p.from),
                    None => p.from.clone(),
                }),
                Entry::new("stages", Node::from_value(&json!(p.stages))),
            ];
            if let Some((rate, burst)) = p.throttle {
                entries.push(Entry::new("throttle", throttle(rate, burst)));
            }
            if let Some((limit, period, offset)) = &p.quota {
                let mut q = json!({"limit": limit, "period": period});
                if *offset > 0 {
                    q["offset"] = json!(offset);
                }
                entries.push(Entry::new("quota", Node::from_value(&q)));
            }
            if !p.route_throttles.is_empty() {
                let map: Map<String, Value> = p
                    .route_throttles
                    .iter()
                    .map(|(r, rate, burst)| {
                        (r.clone(), json!({"rate_limit": rate, "burst_limit": burst}))
                    })
                    .collect();
                entries.push(Entry::new(
                    "route_throttles",
                    Node::from_value(&Value::Object(map)),
                ));
            }
            Node::Map(entries)
        })
        .collect();
    let key_nodes = keys
        .iter()
        .map(|k| {
            let mut entries = vec![Entry::new("id", Node::text(&k.id)).comment(k.from.clone())];
            if let Some(n) = &k.name {
                // The keys file is data and refuses `${` anywhere; a name is only a label.
                entries.push(Entry::new("name", Node::text(n.replace("${", "$ {"))));
            }
            entries.push(Entry::new("enabled", Node::Scalar(json!(k.enabled))));
            entries.push(Entry::new("usage_plans", Node::from_value(&json!(k.plans))));
            entries.push(Entry::new("value_sha256", Node::text(&k.value_sha256)));
            Node::Map(entries)
        })
        .collect();
    document(
        header,
        &[
            Entry::new("usage_plans", Node::List(plan_nodes)),
            Entry::new("keys", Node::List(key_nodes)),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::yaml::Doc;

    #[test]
    fn deployment_sections_are_the_shipped_ones() {
        let text = deployment_sections(None);
        let ours = Doc::parse("import.yaml", &text, &|_| None).unwrap().value;
        let shipped = Doc::parse("gateway.yaml", SHIPPED, &|_| None)
            .unwrap()
            .value;
        for section in DEPLOYMENT_SECTIONS {
            assert_eq!(ours[section], shipped[section], "{section}");
        }
        assert_eq!(ours.as_object().unwrap().len(), DEPLOYMENT_SECTIONS.len());
        assert!(
            text.contains("# 1 behind an ALB"),
            "comments come along:\n{text}"
        );
        let text = deployment_sections(Some("eu-west-1"));
        assert!(text.contains("\"${env:AWS_REGION:-eu-west-1}\""), "{text}");
    }
}
