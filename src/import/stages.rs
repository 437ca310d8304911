//! `aws apigateway get-stages` read into `stages:` (reference `apigw-export.md` §4): stage variables,
//! the `*/*` and per-method settings (throttles, cache), the stage cache. Without the file, the one
//! stage the export was made from, with no variables or settings.
//!
//! API Gateway turns caching on per method and per stage; sagegate per route (`routes[].cache`)
//! and per stage (`stages.NAME.cache`). A route is cached where its stage's cache cluster is on
//! and its method settings cache; when two such stages disagree about a route, the route is cached
//! on both and the disagreement is a note.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value};

use super::input::{BadInput, cli_items, pointer};
use super::report::Finding;

const FILE: &str = "get-stages";

/// One stage for `stages:`.
#[derive(Debug, Clone, Default)]
pub struct Stage {
    /// Stage name.
    pub name: String,
    /// Where it came from (`get-stages#/item/0`, or the export's base path).
    pub from: String,
    /// Stage variables.
    pub variables: BTreeMap<String, String>,
    /// The `*/*` throttle: (rate, burst).
    pub throttle: Option<(f64, u64)>,
    /// Per-method throttles: (`GET /path`, rate, burst).
    pub route_throttles: Vec<(String, f64, u64)>,
    /// The stage cache, when some route is cached on this stage.
    pub cache: Option<StageCache>,
    /// `canary:` from `canarySettings` (percent, overrides, cache use), as written to the file.
    pub canary: Option<Value>,
}

/// `stages.NAME.cache`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StageCache {
    /// The `*/*` TTL.
    pub ttl_secs: u64,
    /// `requireAuthorizationForCacheControl`.
    pub require_authorization: Option<bool>,
    /// `unauthorizedCacheControlHeaderStrategy`.
    pub unauthorized_strategy: Option<String>,
    /// The API Gateway cache cluster's size in GB (for the comment).
    pub cluster_size: Option<String>,
}

/// Whether and how long a route is cached (over all stages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteCache {
    /// Cached on some stage.
    pub enabled: bool,
    /// A TTL of its own (a per-method setting differing from its stage's).
    pub ttl_secs: Option<u64>,
}

/// The stages and, by `GET /path`, the caching of every route some stage caches.
#[derive(Debug, Clone, Default)]
pub struct Stages {
    /// In file order.
    pub stages: Vec<Stage>,
    /// Routes with caching settings; absent = not cached anywhere.
    pub caching: BTreeMap<String, RouteCache>,
}

/// The one stage of an export, when there is no get-stages output.
pub fn from_export(name: &str) -> Stages {
    Stages {
        stages: vec![Stage {
            name: name.to_owned(),
            from: "the export's base path".to_owned(),
            ..Stage::default()
        }],
        caching: BTreeMap::new(),
    }
}

/// Reads a get-stages output; `routes` are the `GET /path` keys imported.
pub fn read(
    doc: &Value,
    path: &Path,
    routes: &[String],
    findings: &mut Vec<Finding>,
) -> Result<Stages, BadInput> {
    let items = cli_items(
        doc,
        path,
        (
            "a get-stages output",
            "aws apigateway get-stages --rest-api-id ID",
            "stageName",
        ),
    )?;
    let list = if doc.get("item").is_some() {
        "/item"
    } else {
        "/items"
    };
    let mut out = Stages::default();
    // (route, stage) pairs cached, and routes left uncached on a stage whose cluster is on.
    let mut cached_on: BTreeMap<String, Vec<(String, Option<u64>)>> = BTreeMap::new();
    let mut uncached_on: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        let at = format!("{list}/{i}");
        let name = item["stageName"].as_str().unwrap_or_default();
        if !valid_stage_name(name) {
            findings.push(Finding::left_out(
                FILE,
                pointer(&at, &["stageName"]),
                format!("stage `{name}`: sagegate stage names use letters, digits, `-` and `_`, and `healthz` is the health check"),
                "rename the stage",
            ));
            continue;
        }
        let mut stage = Stage {
            name: name.to_owned(),
            from: format!("get-stages#{at}"),
            ..Stage::default()
        };
        for (var, value) in item
            .get("variables")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            match value.as_str() {
                Some(v) => {
                    stage.variables.insert(var.clone(), v.to_owned());
                }
                None => findings.push(Finding::left_out(
                    FILE,
                    pointer(&at, &["variables", var]),
                    format!("stage {name}: variable `{var}` is not a string"),
                    "",
                )),
            }
        }
        stage_extras(&at, name, item, findings);
        stage.canary = canary(&at, name, item, findings);
        let settings = item.get("methodSettings").and_then(Value::as_object);
        let empty = Map::new();
        let defaults = settings
            .and_then(|s| s.get("*/*"))
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        stage.throttle = throttle(defaults);
        let cluster = item
            .get("cacheClusterEnabled")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let stage_ttl = defaults
            .get("cacheTtlInSeconds")
            .and_then(Value::as_u64)
            .unwrap_or(300);
        let default_caching = flag(defaults, "cachingEnabled");
        let mut overrides: BTreeMap<String, &Map<String, Value>> = BTreeMap::new();
        for (key, setting) in settings.into_iter().flatten() {
            if key == "*/*" {
                continue;
            }
            let sat = pointer(&at, &["methodSettings", key]);
            let route = method_setting_route(key);
            match (route, setting.as_object()) {
                (Some(route), Some(setting)) if routes.contains(&route) => {
                    if let Some((rate, burst)) = throttle(setting) {
                        stage.route_throttles.push((route.clone(), rate, burst));
                    }
                    overrides.insert(route, setting);
                }
                _ => findings.push(Finding::left_out(
                    FILE,
                    sat,
                    format!("stage {name}: method settings `{key}` for no imported route"),
                    "",
                )),
            }
        }
        if cluster {
            for route in routes {
                let own = overrides.get(route);
                let caching = own.map_or(default_caching, |s| {
                    s.get("cachingEnabled")
                        .and_then(Value::as_bool)
                        .unwrap_or(default_caching)
                });
                if caching {
                    let ttl = own
                        .and_then(|s| s.get("cacheTtlInSeconds"))
                        .and_then(Value::as_u64)
                        .filter(|t| *t != stage_ttl);
                    cached_on
                        .entry(route.clone())
                        .or_default()
                        .push((name.to_owned(), ttl));
                } else {
                    uncached_on
                        .entry(route.clone())
                        .or_default()
                        .push(name.to_owned());
                }
            }
            let some_cached = cached_on
                .values()
                .any(|stages| stages.iter().any(|(s, _)| s == name));
            if some_cached {
                stage.cache = Some(StageCache {
                    ttl_secs: stage_ttl.min(crate::config::cache::MAX_TTL_SECS),
                    require_authorization: defaults
                        .get("requireAuthorizationForCacheControl")
                        .and_then(Value::as_bool),
                    unauthorized_strategy: defaults
                        .get("unauthorizedCacheControlHeaderStrategy")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    cluster_size: item
                        .get("cacheClusterSize")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                });
            }
        }
        out.stages.push(stage);
    }
    for (route, stages) in cached_on {
        let ttl = stages.iter().find_map(|(_, t)| *t);
        if let Some(other) = uncached_on.get(&route) {
            findings.push(Finding::note(
                FILE,
                list,
                format!(
                    "{route} is cached on {} but not on {}",
                    names(stages.iter().map(|(s, _)| s.as_str())),
                    names(other.iter().map(String::as_str))
                ),
                "sagegate caches a route on every stage whose cache is on: it is cached on all of them",
            ));
        }
        out.caching.insert(
            route,
            RouteCache {
                enabled: true,
                ttl_secs: ttl,
            },
        );
    }
    Ok(out)
}

fn names<'a>(list: impl Iterator<Item = &'a str>) -> String {
    list.collect::<Vec<_>>().join(", ")
}

fn flag(settings: &Map<String, Value>, key: &str) -> bool {
    settings.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// (rate, burst) of a method setting, when it throttles (API Gateway writes -1 or 0 for "unset").
fn throttle(settings: &Map<String, Value>) -> Option<(f64, u64)> {
    let rate = settings
        .get("throttlingRateLimit")
        .and_then(Value::as_f64)?;
    let burst = settings
        .get("throttlingBurstLimit")
        .and_then(Value::as_u64)?;
    (rate > 0.0 && burst >= 1).then_some((rate, burst))
}

/// `~1recommended-movies~1{user_id}/GET` → `GET /recommended-movies/{user_id}`.
pub fn method_setting_route(key: &str) -> Option<String> {
    let (path, method) = key.rsplit_once('/')?;
    if path == "*" || method == "*" {
        return None;
    }
    let path = path.replace("~1", "/").replace("~0", "~");
    path.starts_with('/')
        .then(|| format!("{} {path}", method.to_ascii_uppercase()))
}

fn valid_stage_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name != "healthz"
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The stage settings sagegate does not take from the file, each a finding: (field, left out,
/// what, what to do instead).
const STAGE_EXTRAS: [(&str, bool, &str, &str); 4] = [
    (
        "webAclArn",
        true,
        "an AWS WAF web ACL",
        "attach the web ACL to the load balancer (deploy/: enableWaf)",
    ),
    (
        "clientCertificateId",
        false,
        "a client certificate for HTTP backends",
        "SageMaker calls are signed with SigV4; nothing to do",
    ),
    (
        "accessLogSettings",
        false,
        "an access log format",
        "sagegate writes one JSON line per request with API Gateway's $context names (README)",
    ),
    (
        "tracingEnabled",
        false,
        "X-Ray tracing",
        "turn on telemetry.otlp (SAGEGATE_OTLP_ENABLED=true) with an ADOT collector",
    ),
];

/// `canarySettings` as `stages.NAME.canary`: its share, variable overrides and cache use. Its
/// `deploymentId` (another version of the API) is a note: the canary serves the routes imported.
fn canary(at: &str, name: &str, item: &Value, findings: &mut Vec<Finding>) -> Option<Value> {
    let settings = item.get("canarySettings")?.as_object()?;
    let mut canary = serde_json::json!({
        "percent_traffic": settings.get("percentTraffic").and_then(Value::as_f64).unwrap_or(0.0),
    });
    let overrides: Map<String, Value> = settings
        .get("stageVariableOverrides")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(_, v)| v.is_string())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !overrides.is_empty() {
        canary["stage_variable_overrides"] = Value::Object(overrides);
    }
    if let Some(true) = settings.get("useStageCache").and_then(Value::as_bool) {
        canary["use_stage_cache"] = Value::Bool(true);
    }
    if let Some(deployment) = settings.get("deploymentId").and_then(Value::as_str) {
        findings.push(Finding::note(
            FILE,
            pointer(at, &["canarySettings", "deploymentId"]),
            format!("stage {name}: the canary's deployment `{deployment}`"),
            "the canary serves the routes imported here with its variable overrides; to try other routes or templates, import that deployment's export and compare",
        ));
    }
    Some(canary)
}

fn stage_extras(at: &str, name: &str, item: &Value, findings: &mut Vec<Finding>) {
    for (field, left_out, what, instead) in STAGE_EXTRAS {
        if item.get(field).is_some_and(|v| !v.is_null() && *v != false) {
            let finding = Finding {
                left_out,
                ..Finding::note(
                    FILE,
                    pointer(at, &[field]),
                    format!("stage {name}: {what}"),
                    instead,
                )
            };
            findings.push(finding);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_setting_keys_decode_to_routes() {
        assert_eq!(
            method_setting_route("~1recommended-movies~1{user_id}/GET").as_deref(),
            Some("GET /recommended-movies/{user_id}")
        );
        assert_eq!(method_setting_route("~1/post").as_deref(), Some("POST /"));
        assert_eq!(method_setting_route("*/*"), None);
        assert_eq!(method_setting_route("pets/GET"), None);
    }
}
