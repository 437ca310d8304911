//! Keys file → [`KeySet`]: parse, validate (collecting every problem), compile.
//!
//! Input: the file name (for diagnostics), its text, and a [`KeysContext`] naming the stages and
//! routes of gateway.yaml. Output: a [`KeySet`], or every [`Diagnostic`] found, each located as
//! `file:line:col: path: message` and sorted by position.
//!
//! Each plan and key is deserialized on its own (raw serde structs with `deny_unknown_fields`), so
//! one bad entry does not hide the others; cross-references (plan ids, stages, routes, one plan
//! per stage, duplicate values) are then checked over the entries that parsed. An entry that did
//! not parse still lends its `id` to the cross-reference checks, so one typo does not cascade into
//! "unknown usage plan" errors elsewhere.
//!
//! Security: the keys source is data, often written by automation (an S3 upload), so nothing in it
//! is interpolated: a `${` anywhere is an error at its line and column ([`Doc::parse_data`]), and
//! whoever writes the file cannot make the gateway read its environment into key ids, logs,
//! metrics, traces or `/usage`. Diagnostics never quote a key value or hash, and what they echo
//! of the file (ids, stage and plan names, unknown fields) is cut to [`ECHO_MAX_CHARS`] with control
//! characters escaped, so a bad file can neither flood the error log nor forge terminal output.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{ApiKey, KeySet, Origin, QuotaPeriod, QuotaSpec, ThrottleSpec, UsagePlan};
use crate::config::diag::{Diagnostic, Diagnostics};
use crate::config::yaml::Doc;
use crate::route::{RouteKey, normalize_route_key};

/// What the keys file is checked against, and how it is reloaded.
#[derive(Clone, Debug, Default)]
pub struct KeysContext {
    /// Stage names defined in gateway.yaml; a plan may cover only these.
    pub stages: HashSet<String>,
    /// Route keys of gateway.yaml, normalised `"METHOD /path"` (see [`normalize_route_key`]);
    /// `route_throttles` may name only these.
    pub routes: HashSet<String>,
    /// Reload behaviour.
    pub reload: ReloadOptions,
}

impl KeysContext {
    /// A context from gateway.yaml's stage names and route keys (`"GET /a/{b}"`; normalised here,
    /// so `"get /a/{b}/"` is the same route).
    pub fn new<S, R>(stages: S, routes: R) -> Self
    where
        S: IntoIterator,
        S::Item: Into<String>,
        R: IntoIterator,
        R::Item: Into<String>,
    {
        KeysContext {
            stages: stages.into_iter().map(Into::into).collect(),
            routes: routes
                .into_iter()
                .map(|r| {
                    let r = r.into();
                    normalize_route_key(&r).unwrap_or(r)
                })
                .collect(),
            reload: ReloadOptions::default(),
        }
    }
}

/// How [`spawn_reloader`](super::spawn_reloader) watches the source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReloadOptions {
    /// Watch a file source for changes (in addition to SIGHUP). Default `true`.
    pub watch: bool,
    /// Quiet time after the last file event before reloading, so an editor's write-rename-chmod
    /// burst is one reload. Default 200 ms.
    pub debounce: Duration,
    /// How often an `s3://` source is polled (a conditional GET; unchanged costs one 304).
    /// Default 30 s.
    pub s3_poll_interval: Duration,
}

impl Default for ReloadOptions {
    fn default() -> Self {
        ReloadOptions {
            watch: true,
            debounce: Duration::from_millis(200),
            s3_poll_interval: Duration::from_secs(30),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    // Only the shape and the lengths matter here; each entry is deserialized on its own.
    #[serde(default)]
    usage_plans: Vec<serde::de::IgnoredAny>,
    #[serde(default)]
    keys: Vec<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlan {
    id: String,
    stages: Vec<String>,
    #[serde(default)]
    throttle: Option<RawThrottle>,
    #[serde(default)]
    quota: Option<RawQuota>,
    #[serde(default)]
    route_throttles: BTreeMap<String, RawThrottle>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawThrottle {
    rate_limit: f64,
    // Signed so that `-1` gets our message, not serde's "expected u32".
    burst_limit: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuota {
    limit: i64,
    period: RawPeriod,
    #[serde(default)]
    offset: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "UPPERCASE")]
enum RawPeriod {
    Day,
    Week,
    Month,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    usage_plans: Vec<String>,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    value_sha256: Option<String>,
}

/// Shortest and longest accepted key value (API Gateway: 20–128).
const MIN_KEY_LEN: usize = 20;
const MAX_KEY_LEN: usize = 128;
/// A bucket that takes longer than this to fill is a typo, and overflows the limiter's arithmetic.
const MAX_FILL_SECS: f64 = 100.0 * 365.0 * 24.0 * 3600.0;

/// Parses and compiles a keys file. `file` names it in diagnostics (the path as given, or
/// `s3://bucket/key`).
pub fn parse_keys(file: &str, text: &str, ctx: &KeysContext) -> Result<KeySet, Diagnostics> {
    let tamed = |diags: Vec<Diagnostic>| Diagnostics(diags.into_iter().map(tame).collect());
    let doc = Doc::parse_data(file, text).map_err(tamed)?;
    let mut set = Compiler::new(&doc, ctx)
        .compile()
        .map_err(|Diagnostics(d)| tamed(d))?;
    set.origin = Origin {
        digest: Sha256::digest(text.as_bytes()).into(),
        etag: None,
    };
    Ok(set)
}

/// A plan id seen in the file: compiled, or present but invalid (references to it are not
/// reported again).
enum PlanSlot {
    Valid(Arc<UsagePlan>),
    Broken,
}

struct Compiler<'a> {
    doc: &'a Doc,
    ctx: &'a KeysContext,
    diags: Vec<Diagnostic>,
}

impl<'a> Compiler<'a> {
    fn new(doc: &'a Doc, ctx: &'a KeysContext) -> Self {
        Compiler {
            doc,
            ctx,
            diags: Vec::new(),
        }
    }

    fn err(&mut self, path: &str, message: impl Into<String>) {
        self.diags.push(self.doc.error(path, message));
    }

    fn compile(mut self) -> Result<KeySet, Diagnostics> {
        if self.doc.value.is_null() {
            self.err(
                "",
                "the keys file is empty; expected `usage_plans` and `keys`",
            );
            return Err(Diagnostics(self.diags));
        }
        let raw: RawFile = match self.doc.deserialize("") {
            Ok(raw) => raw,
            Err(d) => return Err(Diagnostics(vec![d])),
        };

        let mut plans: Vec<Arc<UsagePlan>> = Vec::new();
        let mut plan_ids: HashMap<String, (usize, PlanSlot)> = HashMap::new();
        for i in 0..raw.usage_plans.len() {
            let path = format!("usage_plans[{i}]");
            let (id, slot) = match self.doc.deserialize::<RawPlan>(&path) {
                Ok(rp) => {
                    let id = rp.id.clone();
                    match self.plan(&path, rp) {
                        Some(plan) => {
                            let plan = Arc::new(plan);
                            plans.push(Arc::clone(&plan));
                            (Some(id), PlanSlot::Valid(plan))
                        }
                        None => (Some(id), PlanSlot::Broken),
                    }
                }
                Err(d) => {
                    self.diags.push(d);
                    (self.raw_id(&path), PlanSlot::Broken)
                }
            };
            let Some(id) = id else { continue };
            if let Some((first, _)) = plan_ids.get(&id) {
                let msg = format!("duplicate usage plan id `{id}` (first at usage_plans[{first}])");
                self.err(&format!("{path}.id"), msg);
                // Keep the first; drop this one from the compiled set.
                if let PlanSlot::Valid(p) = &slot {
                    plans.retain(|q| !Arc::ptr_eq(q, p));
                }
            } else {
                plan_ids.insert(id, (i, slot));
            }
        }

        let mut keys: Vec<Arc<ApiKey>> = Vec::new();
        let mut by_hash: HashMap<[u8; 32], (usize, Arc<ApiKey>)> = HashMap::new();
        let mut key_ids: HashMap<String, usize> = HashMap::new();
        for i in 0..raw.keys.len() {
            let path = format!("keys[{i}]");
            let rk = match self.doc.deserialize::<RawKey>(&path) {
                Ok(rk) => rk,
                Err(d) => {
                    self.diags.push(d);
                    if let Some(id) = self.raw_id(&path) {
                        key_ids.entry(id).or_insert(i);
                    }
                    continue;
                }
            };
            let duplicate_id = match key_ids.get(&rk.id) {
                Some(first) => {
                    let msg = format!("duplicate key id `{}` (first at keys[{first}])", rk.id);
                    self.err(&format!("{path}.id"), msg);
                    true
                }
                None => {
                    key_ids.insert(rk.id.clone(), i);
                    false
                }
            };
            let Some((hash, hash_path, key)) = self.key(&path, rk, &plan_ids) else {
                continue;
            };
            if let Some((first, other)) = by_hash.get(&hash) {
                let msg = format!(
                    "same key value as keys[{first}] (`{}`); key values must be unique",
                    other.id
                );
                self.err(&hash_path, msg);
                continue;
            }
            if duplicate_id {
                continue;
            }
            let key = Arc::new(key);
            by_hash.insert(hash, (i, Arc::clone(&key)));
            keys.push(key);
        }

        if !self.diags.is_empty() {
            // File order reads best; the sort is stable, so equal positions keep check order.
            self.diags.sort_by_key(|d| (d.line, d.col));
            return Err(Diagnostics(self.diags));
        }
        Ok(KeySet {
            by_hash: by_hash.into_iter().map(|(h, (_, k))| (h, k)).collect(),
            keys,
            plans,
            origin: Origin::default(),
        })
    }

    /// The `id` of an entry that failed to deserialize, if it has a string one.
    fn raw_id(&self, path: &str) -> Option<String> {
        self.doc
            .get(&format!("{path}.id"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    fn plan(&mut self, path: &str, raw: RawPlan) -> Option<UsagePlan> {
        let before = self.diags.len();
        if raw.id.is_empty() {
            self.err(&format!("{path}.id"), "must not be empty");
        }
        let mut seen = HashSet::new();
        for (j, stage) in raw.stages.iter().enumerate() {
            let spath = format!("{path}.stages[{j}]");
            if !seen.insert(stage.as_str()) {
                self.err(&spath, format!("stage `{stage}` listed twice"));
            } else if !self.ctx.stages.contains(stage) {
                let msg = format!(
                    "unknown stage `{stage}` (gateway config stages: {})",
                    sorted_list(&self.ctx.stages)
                );
                self.err(&spath, msg);
            }
        }
        let throttle = raw
            .throttle
            .and_then(|t| self.throttle(&format!("{path}.throttle"), t));
        let quota = raw
            .quota
            .and_then(|q| self.quota(&format!("{path}.quota"), q));
        let mut route_throttles = HashMap::new();
        let mut spelled: HashMap<String, String> = HashMap::new();
        for (key, t) in raw.route_throttles {
            let rpath = format!("{path}.route_throttles.{key}");
            let throttle = self.throttle(&rpath, t);
            let Some(parsed) = RouteKey::parse(&key) else {
                let msg = format!(
                    "route `{key}` must be `METHOD /resource/path` or `/resource/path/METHOD` \
                     (METHOD one of {})",
                    crate::route::METHODS.join(", ")
                );
                self.err(&rpath, msg);
                continue;
            };
            let route = parsed.to_string();
            if !self.ctx.routes.contains(&route) {
                let msg = format!(
                    "unknown route `{route}` (gateway config routes: {})",
                    sorted_list(&self.ctx.routes)
                );
                self.err(&rpath, msg);
                continue;
            }
            if let Some(first) = spelled.get(&route) {
                let msg = format!("route `{route}` already set as `{first}`");
                self.err(&rpath, msg);
                continue;
            }
            spelled.insert(route, key);
            if let Some(throttle) = throttle {
                route_throttles.insert(parsed, throttle);
            }
        }
        (self.diags.len() == before).then_some(UsagePlan {
            id: raw.id,
            stages: raw.stages,
            throttle,
            quota,
            route_throttles,
        })
    }

    fn throttle(&mut self, path: &str, raw: RawThrottle) -> Option<ThrottleSpec> {
        let rate = raw.rate_limit;
        let rate_ok = rate.is_finite() && rate > 0.0;
        if !rate_ok {
            self.err(
                &format!("{path}.rate_limit"),
                "must be a number > 0 (requests per second)",
            );
        }
        let burst = u32::try_from(raw.burst_limit).ok().filter(|b| *b >= 1);
        if burst.is_none() {
            self.err(
                &format!("{path}.burst_limit"),
                format!("must be an integer from 1 to {}", u32::MAX),
            );
        }
        let burst = burst.filter(|_| rate_ok)?;
        if f64::from(burst) / rate > MAX_FILL_SECS {
            self.err(
                path,
                "burst_limit / rate_limit is too large: the bucket would take over 100 years to fill",
            );
            return None;
        }
        Some(ThrottleSpec {
            rate_limit: rate,
            burst_limit: burst,
        })
    }

    fn quota(&mut self, path: &str, raw: RawQuota) -> Option<QuotaSpec> {
        let Some(limit) = u64::try_from(raw.limit).ok().filter(|l| *l >= 1) else {
            self.err(&format!("{path}.limit"), "must be an integer >= 1");
            return None;
        };
        let Some(offset) = u64::try_from(raw.offset).ok().filter(|o| *o <= limit) else {
            self.err(
                &format!("{path}.offset"),
                format!("must be an integer from 0 to the quota limit ({limit})"),
            );
            return None;
        };
        let period = match raw.period {
            RawPeriod::Day => QuotaPeriod::Day,
            RawPeriod::Week => QuotaPeriod::Week,
            RawPeriod::Month => QuotaPeriod::Month,
        };
        Some(QuotaSpec {
            limit,
            period,
            offset,
        })
    }

    /// Validates one key; returns its hash, the path of its value field and the compiled key.
    fn key(
        &mut self,
        path: &str,
        raw: RawKey,
        plan_ids: &HashMap<String, (usize, PlanSlot)>,
    ) -> Option<([u8; 32], String, ApiKey)> {
        let before = self.diags.len();
        if raw.id.is_empty() {
            self.err(&format!("{path}.id"), "must not be empty");
        }
        let mut usage_plans: Vec<Arc<UsagePlan>> = Vec::new();
        let mut plan_for_stage: HashMap<String, Arc<UsagePlan>> = HashMap::new();
        let mut seen = HashSet::new();
        for (j, plan_id) in raw.usage_plans.iter().enumerate() {
            let ppath = format!("{path}.usage_plans[{j}]");
            if !seen.insert(plan_id.as_str()) {
                self.err(&ppath, format!("usage plan `{plan_id}` listed twice"));
                continue;
            }
            let plan = match plan_ids.get(plan_id) {
                None => {
                    self.err(&ppath, format!("unknown usage plan `{plan_id}`"));
                    continue;
                }
                // Already reported where the plan is defined.
                Some((_, PlanSlot::Broken)) => continue,
                Some((_, PlanSlot::Valid(plan))) => plan,
            };
            for stage in &plan.stages {
                if let Some(other) = plan_for_stage.get(stage) {
                    let msg = format!(
                        "usage plans `{}` and `{plan_id}` both cover stage `{stage}`; \
                         a key may be in only one usage plan per stage",
                        other.id
                    );
                    self.err(&ppath, msg);
                } else {
                    plan_for_stage.insert(stage.clone(), Arc::clone(plan));
                }
            }
            usage_plans.push(Arc::clone(plan));
        }
        let hashed = match (raw.value, raw.value_sha256) {
            (Some(_), Some(_)) => {
                self.err(path, "set either `value` or `value_sha256`, not both");
                None
            }
            (None, None) => {
                self.err(path, "missing `value_sha256` (or `value`, for local use)");
                None
            }
            (Some(value), None) => {
                let vpath = format!("{path}.value");
                match check_value(&value) {
                    Ok(()) => Some((Sha256::digest(value.as_bytes()).into(), vpath)),
                    Err(msg) => {
                        self.err(&vpath, msg);
                        None
                    }
                }
                // `value` is dropped here: only its hash is kept.
            }
            (None, Some(hex_digest)) => {
                let hpath = format!("{path}.value_sha256");
                let mut hash = [0u8; 32];
                if hex_digest.len() == 64 && hex::decode_to_slice(&hex_digest, &mut hash).is_ok() {
                    Some((hash, hpath))
                } else {
                    self.err(
                        &hpath,
                        "must be 64 hexadecimal digits (the SHA-256 of the key value)",
                    );
                    None
                }
            }
        };
        let (hash, hash_path) = hashed?;
        if self.diags.len() != before {
            return None;
        }
        Some((
            hash,
            hash_path,
            ApiKey {
                id: raw.id,
                name: raw.name,
                enabled: raw.enabled.unwrap_or(true),
                usage_plans,
                plan_for_stage,
            },
        ))
    }
}

/// Checks a plain key value without ever quoting it.
fn check_value(value: &str) -> Result<(), String> {
    if !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be printable ASCII without spaces".to_owned());
    }
    let len = value.len();
    if len < MIN_KEY_LEN {
        return Err(format!(
            "must be at least {MIN_KEY_LEN} characters (has {len})"
        ));
    }
    if len > MAX_KEY_LEN {
        return Err(format!(
            "must be at most {MAX_KEY_LEN} characters (has {len})"
        ));
    }
    Ok(())
}

/// Longest path or message a keys-file diagnostic carries, in characters.
pub const ECHO_MAX_CHARS: usize = 1024;

/// Bounds what a diagnostic echoes of the file: control characters escaped, path and message cut
/// to [`ECHO_MAX_CHARS`].
fn tame(mut d: Diagnostic) -> Diagnostic {
    fn bound(s: &str) -> String {
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i == ECHO_MAX_CHARS {
                out.push('…');
                break;
            }
            if c.is_control() {
                out.extend(c.escape_default());
            } else {
                out.push(c);
            }
        }
        out
    }
    d.path = bound(&d.path);
    d.message = bound(&d.message);
    d
}

fn sorted_list(set: &HashSet<String>) -> String {
    if set.is_empty() {
        return "none".to_owned();
    }
    let mut v: Vec<&str> = set.iter().map(String::as_str).collect();
    v.sort_unstable();
    v.join(", ")
}
