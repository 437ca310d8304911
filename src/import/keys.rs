//! Usage plans and API keys (`get-usage-plans`, `get-usage-plan-keys --usage-plan-id ID` for each
//! plan, `get-api-keys --include-values`; reference `apigw-export.md` §4) read into `keys.yaml`.
//!
//! Security: key values are hashed here and never written, printed or kept: the keys file gets
//! `value_sha256` only.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::input::{BadInput, cli_items, pointer};
use super::report::Finding;

/// What a get-usage-plans output is, for [`cli_items`].
pub const PLANS: (&str, &str, &str) = (
    "a get-usage-plans output",
    "aws apigateway get-usage-plans",
    "id",
);

/// A usage plan for `keys.yaml`.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// API Gateway's plan id.
    pub id: String,
    /// Its name (for the comment).
    pub name: Option<String>,
    /// Where it came from.
    pub from: String,
    /// Imported stages it covers.
    pub stages: Vec<String>,
    /// (rate, burst).
    pub throttle: Option<(f64, u64)>,
    /// (limit, period, offset).
    pub quota: Option<(u64, String, u64)>,
    /// Per-route throttles: (`GET /path`, rate, burst).
    pub route_throttles: Vec<(String, f64, u64)>,
}

/// An API key for `keys.yaml`.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    /// API Gateway's key id.
    pub id: String,
    /// Its name.
    pub name: Option<String>,
    /// Where it came from.
    pub from: String,
    /// Whether it is enabled.
    pub enabled: bool,
    /// Plan ids.
    pub plans: Vec<String>,
    /// Hex SHA-256 of the value.
    pub value_sha256: String,
}

/// One input file: its path and content.
pub type Input<'a> = (&'a Path, &'a Value);

/// What the keys files hold.
pub struct Sources<'a> {
    /// `get-usage-plans`.
    pub plans: Option<Input<'a>>,
    /// `get-usage-plan-keys`, each with the plan id it was fetched for.
    pub plan_keys: Vec<(String, Input<'a>)>,
    /// `get-api-keys --include-values`.
    pub api_keys: Option<Input<'a>>,
}

/// Reads the plans and keys for the imported `stages` and `routes` (`GET /path`) of REST API
/// `api_id` (when known, plans' other APIs are skipped).
pub fn read(
    sources: &Sources<'_>,
    api_id: Option<&str>,
    stages: &[String],
    routes: &[String],
    findings: &mut Vec<Finding>,
) -> Result<(Vec<Plan>, Vec<Key>), BadInput> {
    let mut plans = Vec::new();
    if let Some((path, doc)) = sources.plans {
        let items = cli_items(doc, path, PLANS)?;
        for (i, item) in items.iter().enumerate() {
            if let Some(plan) = plan(
                &format!("/items/{i}"),
                item,
                api_id,
                stages,
                routes,
                findings,
            ) {
                plans.push(plan);
            }
        }
    }
    let mut keys: BTreeMap<String, Key> = BTreeMap::new();
    let mut values: BTreeMap<String, String> = BTreeMap::new();
    let plan_keys_file = "get-usage-plan-keys";
    for (plan_id, (path, doc)) in &sources.plan_keys {
        let items = cli_items(
            doc,
            path,
            (
                "a get-usage-plan-keys output",
                "aws apigateway get-usage-plan-keys --usage-plan-id ID",
                "id",
            ),
        )?;
        let known = plans.iter().any(|p| p.id == *plan_id);
        for (i, item) in items.iter().enumerate() {
            let at = format!("/items/{i}");
            let id = item["id"].as_str().unwrap_or_default();
            let key = keys.entry(id.to_owned()).or_insert_with(|| Key {
                id: id.to_owned(),
                name: text(item, "name"),
                from: format!("{plan_keys_file}({plan_id})#{at}"),
                enabled: true,
                plans: Vec::new(),
                value_sha256: String::new(),
            });
            if known && !key.plans.contains(plan_id) {
                key.plans.push(plan_id.clone());
            }
            if let Some(v) = text(item, "value") {
                values.insert(id.to_owned(), v);
            }
        }
    }
    if let Some((path, doc)) = sources.api_keys {
        let items = cli_items(
            doc,
            path,
            (
                "a get-api-keys output",
                "aws apigateway get-api-keys --include-values",
                "id",
            ),
        )?;
        for (i, item) in items.iter().enumerate() {
            let at = format!("/items/{i}");
            let id = item["id"].as_str().unwrap_or_default();
            let key = keys.entry(id.to_owned()).or_insert_with(|| Key {
                id: id.to_owned(),
                name: None,
                from: String::new(),
                enabled: true,
                plans: Vec::new(),
                value_sha256: String::new(),
            });
            key.from = format!("get-api-keys#{at}");
            key.name = text(item, "name").or(key.name.take());
            key.enabled = item.get("enabled").and_then(Value::as_bool).unwrap_or(true);
            if let Some(v) = text(item, "value") {
                values.insert(id.to_owned(), v);
            }
        }
    }
    let mut out = Vec::new();
    for (id, mut key) in keys {
        match values.remove(&id) {
            Some(value) => {
                key.value_sha256 = hex::encode(Sha256::digest(value.as_bytes()));
                out.push(key);
            }
            None => findings.push(Finding::left_out(
                "get-api-keys",
                "",
                format!("API key `{id}`: no value"),
                "export the keys with `aws apigateway get-api-keys --include-values` (values are hashed, never written)",
            )),
        }
    }
    Ok((plans, out))
}

fn text(item: &Value, field: &str) -> Option<String> {
    item.get(field).and_then(Value::as_str).map(str::to_owned)
}

fn plan(
    at: &str,
    item: &Value,
    api_id: Option<&str>,
    stages: &[String],
    routes: &[String],
    findings: &mut Vec<Finding>,
) -> Option<Plan> {
    const FILE: &str = "get-usage-plans";
    let id = text(item, "id")?;
    let mut plan = Plan {
        id: id.clone(),
        name: text(item, "name"),
        from: format!("{FILE}#{at}"),
        stages: Vec::new(),
        throttle: None,
        quota: None,
        route_throttles: Vec::new(),
    };
    for (j, api_stage) in item
        .get("apiStages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let sat = pointer(at, &["apiStages", &j.to_string()]);
        let stage = api_stage.get("stage").and_then(Value::as_str).unwrap_or("");
        let other_api = match (api_id, api_stage.get("apiId").and_then(Value::as_str)) {
            (Some(mine), Some(theirs)) => mine != theirs,
            _ => false,
        };
        if other_api {
            continue;
        }
        if !stages.iter().any(|s| s == stage) {
            findings.push(Finding::note(
                FILE,
                sat,
                format!("usage plan {id}: stage `{stage}` is not imported"),
                "",
            ));
            continue;
        }
        plan.stages.push(stage.to_owned());
        for (key, t) in api_stage
            .get("throttle")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let route = crate::route::normalize_route_key(key).filter(|r| routes.contains(r));
            match (route, throttle(t)) {
                (Some(route), Some((rate, burst))) => {
                    if !plan.route_throttles.iter().any(|(r, _, _)| *r == route) {
                        plan.route_throttles.push((route, rate, burst));
                    }
                }
                _ => findings.push(Finding::left_out(
                    FILE,
                    pointer(&sat, &["throttle", key]),
                    format!("usage plan {id}: throttle `{key}` (no imported route, or not a rate above 0 and a burst of 1 or more)"),
                    "",
                )),
            }
        }
    }
    if plan.stages.is_empty() {
        findings.push(Finding::left_out(
            FILE,
            at,
            format!("usage plan {id}: covers no imported stage"),
            "",
        ));
        return None;
    }
    if let Some(t) = item.get("throttle") {
        plan.throttle = throttle(t);
        if plan.throttle.is_none() {
            findings.push(Finding::left_out(
                FILE,
                pointer(at, &["throttle"]),
                format!("usage plan {id}: throttle {t}"),
                "sagegate throttles need a rate above 0 and a burst of 1 or more",
            ));
        }
    }
    if let Some(q) = item.get("quota") {
        let limit = q.get("limit").and_then(Value::as_u64).filter(|l| *l > 0);
        let period = q
            .get("period")
            .and_then(Value::as_str)
            .filter(|p| matches!(*p, "DAY" | "WEEK" | "MONTH"));
        match (limit, period) {
            (Some(limit), Some(period)) => {
                let offset = q.get("offset").and_then(Value::as_u64).unwrap_or(0);
                plan.quota = Some((limit, period.to_owned(), offset));
            }
            _ => findings.push(Finding::left_out(
                FILE,
                pointer(at, &["quota"]),
                format!("usage plan {id}: quota {q}"),
                "quotas are a limit above 0 per DAY, WEEK or MONTH",
            )),
        }
    }
    Some(plan)
}

fn throttle(t: &Value) -> Option<(f64, u64)> {
    let rate = t.get("rateLimit").and_then(Value::as_f64)?;
    let burst = t.get("burstLimit").and_then(Value::as_u64)?;
    (rate > 0.0 && burst >= 1).then_some((rate, burst))
}
