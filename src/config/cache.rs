//! Stage cache settings: `stages.<name>.cache` and `routes[i].cache` in `gateway.yaml`.
//!
//! API Gateway's stage cache (reference §3.4), in the file instead of method settings:
//!
//! ```yaml
//! stages:
//!   prod:
//!     cache:
//!       enabled: true                 # default false
//!       ttl_secs: 300                 # default 300, 0..=3600, 0 = nothing is cached
//!       max_bytes: 67108864           # whole cache of this stage, bytes (default 64 MiB)
//!       max_entry_bytes: 1048576      # larger answers are not cached (default 1 MiB, API Gateway's)
//!       require_authorization: true   # Cache-Control: max-age=0 only from `invalidators` (default true)
//!       unauthorized_strategy: SUCCEED_WITH_RESPONSE_HEADER   # or FAIL_WITH_403, SUCCEED_WITHOUT_RESPONSE_HEADER
//!       invalidators: { keys: [ops], usage_plans: [internal] } # who may invalidate (default nobody)
//! routes:
//!   - method: GET
//!     path: /recommended-movies/{user_id}
//!     cache:
//!       enabled: true                 # default: true for GET, false otherwise (API Gateway's rule)
//!       ttl_secs: 60                  # default: the stage's
//!       key_parameters: [method.request.path.user_id, method.request.querystring.k]
//!       when: { method.request.querystring.inference_type: [deterministic] }
//! ```
//!
//! Key parameters ([`KeyPart`]): `method.request.{path,querystring,header}.NAME` (API Gateway's),
//! and sagegate's own `method.request.querystring.*` (every query parameter), `method.request.body`
//! (the body's SHA-256), `context.identity.{apiKeyId,sourceIp,userAgent}` and `context.path`.
//!
//! Invariants: a request is cached only when its stage cache is on, its route's cache is on, the
//! TTL is above zero and every `when` condition holds; anything else bypasses the cache entirely.
//! A cached route's key covers every input its request templates and integration read, or the
//! configuration is refused ([`super::cache_key`]). Every key starts with its stage's
//! [`StageCacheConfig::scope`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::cache_key::KEYABLE_CONTEXT;
use super::diag::Diagnostic;
use super::param::ParamSource;
use super::yaml::Doc;

/// API Gateway's default TTL.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);
/// API Gateway's largest TTL.
pub const MAX_TTL_SECS: u64 = 3600;
/// Default byte bound of one stage's cache (64 MiB).
pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// API Gateway's largest cacheable response (1 MiB).
pub const DEFAULT_MAX_ENTRY_BYTES: u64 = 1024 * 1024;
/// Largest `max_entry_bytes` accepted (the cache weighs entries in `u32`).
pub const MAX_ENTRY_BYTES_LIMIT: u64 = 256 * 1024 * 1024;

/// `stages.<name>.cache:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStageCache {
    /// Whether the stage caches at all (default false).
    #[serde(default)]
    enabled: bool,
    /// Seconds an answer stays fresh (default 300, at most 3600; 0 turns caching off).
    ttl_secs: Option<u64>,
    /// Byte bound of the whole stage cache: keys, bodies and headers (default 67108864 = 64 MiB).
    max_bytes: Option<u64>,
    /// Answers larger than this many bytes are not cached (default 1048576, API Gateway's).
    max_entry_bytes: Option<u64>,
    /// Whether `Cache-Control: max-age=0` needs an authorized caller (default true, API Gateway's
    /// `requireAuthorizationForCacheControl`); false lets any caller invalidate.
    require_authorization: Option<bool>,
    /// What an unauthorized `max-age=0` gets (default SUCCEED_WITH_RESPONSE_HEADER).
    #[serde(default)]
    unauthorized_strategy: UnauthorizedStrategy,
    /// Callers allowed to invalidate: key ids and usage-plan ids from the keys file (default none).
    #[serde(default)]
    invalidators: RawInvalidators,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInvalidators {
    /// Key ids (never key values).
    #[serde(default)]
    keys: BTreeSet<String>,
    /// Usage-plan ids.
    #[serde(default)]
    usage_plans: BTreeSet<String>,
}

/// `routes[i].cache:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRouteCache {
    /// Cache this route when the stage caches (default: true for GET, false for other methods).
    enabled: Option<bool>,
    /// TTL override in seconds (default: the stage's; 0..=3600).
    ttl_secs: Option<u64>,
    /// What makes up the cache key beside stage, method and resource path
    /// (`method.request.{path,querystring,header}.NAME`, `method.request.querystring.*`,
    /// `method.request.body`, `context.identity.{apiKeyId,sourceIp,userAgent}`, `context.path`;
    /// default none: one entry per route). Must cover what the route's templates read.
    #[serde(default)]
    key_parameters: Vec<String>,
    /// Conditions that must all hold for a request to use the cache: parameter → accepted values
    /// (default none: every request of the route).
    #[serde(default)]
    when: serde_json::Map<String, Value>,
}

/// API Gateway's `unauthorizedCacheControlHeaderStrategy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UnauthorizedStrategy {
    /// 403 `{"message":"Forbidden"}`.
    #[serde(rename = "FAIL_WITH_403")]
    FailWith403,
    /// Served as if the header were absent, with a `Warning` response header.
    #[default]
    SucceedWithResponseHeader,
    /// Served as if the header were absent.
    SucceedWithoutResponseHeader,
}

/// A stage's cache, compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct StageCacheConfig {
    /// Whether the stage caches (false also when the TTL is 0).
    pub enabled: bool,
    /// The start of every key of this stage: its name and a digest of its variables, so no entry
    /// is ever shared across stages, or across a change of the stage's variables.
    pub scope: String,
    /// Default freshness.
    pub ttl: Duration,
    /// Byte bound of the whole stage cache.
    pub max_bytes: u64,
    /// Largest cached answer in bytes.
    pub max_entry_bytes: u64,
    /// Whether invalidation needs an authorized caller.
    pub require_authorization: bool,
    /// What an unauthorized invalidation gets.
    pub unauthorized_strategy: UnauthorizedStrategy,
    /// Key ids allowed to invalidate.
    pub invalidator_keys: BTreeSet<String>,
    /// Usage-plan ids allowed to invalidate.
    pub invalidator_plans: BTreeSet<String>,
}

impl Default for StageCacheConfig {
    fn default() -> Self {
        StageCacheConfig {
            enabled: false,
            scope: String::new(),
            ttl: DEFAULT_TTL,
            max_bytes: DEFAULT_MAX_BYTES,
            max_entry_bytes: DEFAULT_MAX_ENTRY_BYTES,
            require_authorization: true,
            unauthorized_strategy: UnauthorizedStrategy::default(),
            invalidator_keys: BTreeSet::new(),
            invalidator_plans: BTreeSet::new(),
        }
    }
}

/// A route's cache settings, compiled.
#[derive(Debug, Clone, Default)]
pub struct RouteCacheConfig {
    /// Explicit on/off; `None` = API Gateway's default (GET only).
    pub enabled: Option<bool>,
    /// TTL override.
    pub ttl: Option<Duration>,
    /// What the key holds, in file order.
    pub key_parameters: Vec<KeyPart>,
    /// Conditions: the parameter's value must be one of the listed ones.
    pub when: Vec<(ParamSource, Vec<String>)>,
    /// The key's fixed part: the spelling of every `when` parameter that is not a key parameter,
    /// then of every key parameter, each as [`push_key_part`] writes it. Computed at load, so a request's
    /// key formats no parameter names ([`crate::cache::key`]); it keeps keys of differently keyed
    /// configurations apart across a reload that carries the cache over.
    pub labels: String,
}

/// Appends `part` to a cache key as `{length}:{part};` (so no two sequences of parts give one key).
pub fn push_key_part(key: &mut String, part: &str) {
    key.push_str(itoa::Buffer::new().format(part.len()));
    key.push(':');
    key.push_str(part);
    key.push(';');
}

/// The [`RouteCacheConfig::labels`] of `key_parameters` and `when`.
fn key_labels(key_parameters: &[KeyPart], when: &[(ParamSource, Vec<String>)]) -> String {
    let mut labels = String::new();
    for (param, _) in when {
        if !names(key_parameters, param) {
            push_key_part(&mut labels, &param.to_string());
        }
    }
    for part in key_parameters {
        push_key_part(&mut labels, &part.to_string());
    }
    labels
}

/// Whether `param` itself is one of `key_parameters`.
fn names(key_parameters: &[KeyPart], param: &ParamSource) -> bool {
    key_parameters
        .iter()
        .any(|k| matches!(k, KeyPart::Param(p) if p == param))
}

impl RouteCacheConfig {
    /// How long answers of a `method` route stay fresh on a stage with `stage` cache settings;
    /// `None` when they are not cached there.
    pub fn ttl_on(&self, stage: &StageCacheConfig, method: &str) -> Option<Duration> {
        let enabled = stage.enabled && self.enabled.unwrap_or(method == "GET");
        let ttl = self.ttl.unwrap_or(stage.ttl);
        (enabled && !ttl.is_zero()).then_some(ttl)
    }

    /// Whether `param` itself is one of the key parameters (a `when` parameter that is not is
    /// keyed on its own, before them).
    pub fn names(&self, param: &ParamSource) -> bool {
        names(&self.key_parameters, param)
    }

    /// Whether the key holds `part` (a `when` parameter is in the key too).
    pub fn holds(&self, part: &KeyPart) -> bool {
        let held = |p: &KeyPart| {
            p == part
                || (*p == KeyPart::AllQuery
                    && matches!(part, KeyPart::Param(ParamSource::Query(_))))
        };
        self.key_parameters.iter().any(held)
            || self
                .when
                .iter()
                .any(|(p, _)| held(&KeyPart::Param(p.clone())))
    }
}

/// One part of a route's cache key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPart {
    /// A request parameter (`method.request.{path,querystring,header}.NAME`, header names lower
    /// case) or a caller value (`context.identity.apiKeyId`, ... see [`KEYABLE_CONTEXT`]).
    Param(ParamSource),
    /// `method.request.querystring.*`: every query parameter, names and values in request order.
    AllQuery,
    /// `method.request.body`: the body's SHA-256, never the body itself.
    Body,
}

/// Spelling of [`KeyPart::AllQuery`].
pub const ALL_QUERY: &str = "method.request.querystring.*";
/// Spelling of [`KeyPart::Body`].
pub const BODY: &str = "method.request.body";

impl std::fmt::Display for KeyPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyPart::Param(p) => p.fmt(f),
            KeyPart::AllQuery => f.write_str(ALL_QUERY),
            KeyPart::Body => f.write_str(BODY),
        }
    }
}

/// The [`StageCacheConfig::scope`] of stage `name` with `variables`.
pub fn scope(name: &str, variables: &BTreeMap<String, String>) -> String {
    let mut digest = Sha256::new();
    for (k, v) in variables {
        for part in [k, v] {
            digest.update((part.len() as u64).to_be_bytes());
            digest.update(part.as_bytes());
        }
    }
    format!("{name}#{}", hex::encode(&digest.finalize()[..16]))
}

fn check_ttl(doc: &Doc, path: &str, secs: u64, errors: &mut Vec<Diagnostic>) -> Duration {
    if secs > MAX_TTL_SECS {
        errors.push(doc.error(path, format!("must be at most {MAX_TTL_SECS}")));
    }
    Duration::from_secs(secs)
}

/// Compiles `stages.<name>.cache` (at `path`) of stage `name` with `variables`.
pub(super) fn stage_cache(
    doc: &Doc,
    path: &str,
    (name, variables): (&str, &BTreeMap<String, String>),
    raw: Option<RawStageCache>,
    errors: &mut Vec<Diagnostic>,
) -> StageCacheConfig {
    let scope = scope(name, variables);
    let Some(raw) = raw else {
        return StageCacheConfig {
            scope,
            ..StageCacheConfig::default()
        };
    };
    let ttl = check_ttl(
        doc,
        &format!("{path}.ttl_secs"),
        raw.ttl_secs.unwrap_or(DEFAULT_TTL.as_secs()),
        errors,
    );
    let max_bytes = raw.max_bytes.unwrap_or(DEFAULT_MAX_BYTES);
    if max_bytes == 0 {
        errors.push(doc.error(&format!("{path}.max_bytes"), "must be > 0"));
    }
    let max_entry_bytes = raw.max_entry_bytes.unwrap_or(DEFAULT_MAX_ENTRY_BYTES);
    if max_entry_bytes == 0 || max_entry_bytes > MAX_ENTRY_BYTES_LIMIT {
        errors.push(doc.error(
            &format!("{path}.max_entry_bytes"),
            format!("must be between 1 and {MAX_ENTRY_BYTES_LIMIT}"),
        ));
    } else if max_entry_bytes > max_bytes {
        errors.push(doc.error(
            &format!("{path}.max_entry_bytes"),
            "must not exceed max_bytes",
        ));
    }
    StageCacheConfig {
        enabled: raw.enabled && !ttl.is_zero(),
        scope,
        ttl,
        max_bytes,
        max_entry_bytes,
        require_authorization: raw.require_authorization.unwrap_or(true),
        unauthorized_strategy: raw.unauthorized_strategy,
        invalidator_keys: raw.invalidators.keys,
        invalidator_plans: raw.invalidators.usage_plans,
    }
}

/// Parses a `method.request.{path,querystring,header}.NAME` expression (the only kinds a key or a
/// condition may use: they are what the client sent).
fn request_param(expr: &str) -> Result<ParamSource, String> {
    match ParamSource::parse(expr)? {
        ParamSource::Header(n) => Ok(ParamSource::Header(n.to_ascii_lowercase())),
        p @ (ParamSource::Query(_) | ParamSource::Path(_)) => Ok(p),
        _ => Err(format!(
            "`{expr}`: use method.request.path.NAME, method.request.querystring.NAME or method.request.header.NAME"
        )),
    }
}

/// Parses one `key_parameters` entry.
fn key_part(expr: &str) -> Result<KeyPart, String> {
    let refused = || {
        format!(
            "`{expr}`: use method.request.path.NAME, method.request.querystring.NAME, {ALL_QUERY}, \
             method.request.header.NAME, {BODY} or {}",
            KEYABLE_CONTEXT.map(|c| format!("context.{c}")).join(", ")
        )
    };
    match expr.trim() {
        ALL_QUERY => return Ok(KeyPart::AllQuery),
        BODY => return Ok(KeyPart::Body),
        _ => {}
    }
    match ParamSource::parse(expr).map_err(|_| refused())? {
        ParamSource::Header(n) if n.eq_ignore_ascii_case(crate::message::API_KEY_HEADER) => {
            Err(format!(
                "`{expr}`: the API key is never kept in a cache key; use context.identity.apiKeyId"
            ))
        }
        ParamSource::Context(n) if KEYABLE_CONTEXT.contains(&n.as_str()) => {
            Ok(KeyPart::Param(ParamSource::Context(n)))
        }
        ParamSource::Context(_) | ParamSource::StageVariable(_) | ParamSource::Literal(_) => {
            Err(refused())
        }
        _ => request_param(expr).map(KeyPart::Param),
    }
}

/// Compiles `routes[i].cache` (at `path`).
pub(super) fn route_cache(
    doc: &Doc,
    path: &str,
    raw: Option<RawRouteCache>,
    errors: &mut Vec<Diagnostic>,
) -> RouteCacheConfig {
    let Some(raw) = raw else {
        return RouteCacheConfig::default();
    };
    let ttl = raw
        .ttl_secs
        .map(|s| check_ttl(doc, &format!("{path}.ttl_secs"), s, errors));
    let mut key_parameters = Vec::new();
    for (i, expr) in raw.key_parameters.iter().enumerate() {
        match key_part(expr) {
            Ok(p) if key_parameters.contains(&p) => errors.push(doc.error(
                &format!("{path}.key_parameters[{i}]"),
                format!("`{expr}` is listed twice"),
            )),
            Ok(p) => key_parameters.push(p),
            Err(m) => errors.push(doc.error(&format!("{path}.key_parameters[{i}]"), m)),
        }
    }
    let mut when = Vec::new();
    for (expr, values) in &raw.when {
        let cpath = format!("{path}.when.{expr}");
        let param = match request_param(expr) {
            Ok(p) => p,
            Err(m) => {
                errors.push(doc.error(&cpath, m));
                continue;
            }
        };
        let accepted: Option<Vec<String>> = values.as_array().and_then(|list| {
            list.iter()
                .map(|v| match v {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    Value::Bool(b) => Some(b.to_string()),
                    _ => None,
                })
                .collect()
        });
        match accepted {
            Some(list) if !list.is_empty() => when.push((param, list)),
            _ => errors.push(doc.error(
                &cpath,
                "expected a non-empty list of accepted values, e.g. [deterministic]",
            )),
        }
    }
    RouteCacheConfig {
        enabled: raw.enabled,
        ttl,
        labels: key_labels(&key_parameters, &when),
        key_parameters,
        when,
    }
}
