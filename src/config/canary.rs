//! `stages.<name>.canary:` — API Gateway's stage canary (`canarySettings`): a share of the stage's
//! requests served with the canary's stage-variable overrides (so a different endpoint name,
//! variant or template variable), flagged `$context.isCanaryRequest`.
//!
//! Compiled into [`Canary`], which holds the *canary view* of the stage: the same stage (name,
//! throttles, cache settings) with the overrides merged into its variables and its own cache
//! scope, so a canary request reads the overridden variables wherever a stage's variables are read
//! and never shares a cache entry with the primary (see [`super::cache::scope`]).
//!
//! Assignment ([`Canary::is_canary`]): by chance, `percent_traffic / 100` of the requests; or,
//! with `sticky`, by a hash of the sticky value (the caller's API key id, or a request parameter
//! such as a user id), so one user sees one model. The hash is the first 8 bytes, big-endian, of
//! SHA-256 over `stage name, 0x00, value`, its top 53 bits as a fraction of 2^53, canary when
//! `fraction * 100 < percent_traffic`: the same on every gateway task and after a restart, and
//! monotone in the percentage (a user in the canary at 5% stays in it at 50%).
//! A request without the sticky value (no key, a missing parameter) is assigned by chance.
//!
//! Changing any of it is a reload, not a restart ([`crate::pipeline::Live`]).

use std::collections::BTreeMap;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::cache::{self, StageCacheConfig};
use super::diag::Diagnostic;
use super::gateway::Stage;
use super::param::ParamSource;
use super::yaml::Doc;

/// The suffix of a canary's cache scope name (API Gateway's log group suffix).
const CANARY_SCOPE: &str = "/Canary";

/// `stages.<name>.canary:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCanary {
    /// Percent of the stage's requests sent to the canary, 0.0 to 100.0 (required).
    percent_traffic: f64,
    /// Stage variables the canary overrides or adds (default none).
    #[serde(default)]
    stage_variable_overrides: BTreeMap<String, String>,
    /// Whether canary requests use the stage cache (default false: they neither read nor write
    /// it). When true, canary entries are keyed apart from the primary's.
    #[serde(default)]
    use_stage_cache: bool,
    /// Sticky assignment (default none: each request by chance).
    sticky: Option<RawSticky>,
}

/// `stages.<name>.canary.sticky:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSticky {
    /// `api_key` (the caller's key id) or `parameter` (the request parameter `name`).
    by: String,
    /// With `by: parameter`: `method.request.path.NAME`, `method.request.querystring.NAME` or
    /// `method.request.header.NAME`.
    name: Option<String>,
}

/// What a sticky assignment hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sticky {
    /// The caller's API key id (`$context.identity.apiKeyId`).
    ApiKey,
    /// A request parameter (path, query string or header).
    Parameter(ParamSource),
}

/// A stage's compiled canary.
#[derive(Debug, Clone)]
pub struct Canary {
    /// Percent of requests assigned to the canary (0.0 to 100.0).
    pub percent_traffic: f64,
    /// The overrides as written (the view holds them merged).
    pub stage_variable_overrides: BTreeMap<String, String>,
    /// Whether canary requests use the stage cache.
    pub use_stage_cache: bool,
    /// Sticky assignment, if any.
    pub sticky: Option<Sticky>,
    /// The stage as a canary request sees it: overridden variables, its own cache scope, the
    /// cache off unless `use_stage_cache`, `is_canary` set.
    pub view: Stage,
}

impl Canary {
    /// Whether a request goes to the canary: by the hash of `sticky_value` when there is one,
    /// else by `chance` (a uniform draw in `[0, 1)`, called only then).
    pub fn is_canary(
        &self,
        stage: &str,
        sticky_value: Option<&str>,
        chance: impl FnOnce() -> f64,
    ) -> bool {
        let fraction = match sticky_value {
            Some(value) => sticky_fraction(stage, value),
            None => chance(),
        };
        fraction * 100.0 < self.percent_traffic
    }
}

/// The sticky hash of `value` on `stage` as a fraction in `[0, 1)` (module docs).
pub fn sticky_fraction(stage: &str, value: &str) -> f64 {
    let mut digest = Sha256::new();
    digest.update(stage.as_bytes());
    digest.update([0]);
    digest.update(value.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.finalize()[..8]);
    // The top 53 bits over 2^53: exact in an f64, and always below 1.
    (u64::from_be_bytes(first) >> 11) as f64 / (1u64 << 53) as f64
}

/// Compiles `stages.<name>.canary` (at `path`) of `primary`; the variable names and values of the
/// overrides are checked by `check_variable`, as the stage's own are.
pub(super) fn compile(
    doc: &Doc,
    path: &str,
    primary: &Stage,
    raw: RawCanary,
    mut check_variable: impl FnMut(&str, &str, &str, &mut Vec<Diagnostic>),
    errors: &mut Vec<Diagnostic>,
) -> Canary {
    if !(raw.percent_traffic.is_finite() && (0.0..=100.0).contains(&raw.percent_traffic)) {
        errors.push(doc.error(
            &format!("{path}.percent_traffic"),
            "must be between 0.0 and 100.0",
        ));
    }
    for (var, value) in &raw.stage_variable_overrides {
        check_variable(
            &format!("{path}.stage_variable_overrides.{var}"),
            var,
            value,
            errors,
        );
    }
    let sticky = raw.sticky.and_then(|s| {
        let at = format!("{path}.sticky");
        match (s.by.as_str(), s.name) {
            ("api_key", None) => Some(Sticky::ApiKey),
            ("api_key", Some(_)) => {
                errors.push(doc.error(&format!("{at}.name"), "only with `by: parameter`"));
                None
            }
            ("parameter", Some(name)) => match ParamSource::parse(&name) {
                Ok(p @ (ParamSource::Path(_) | ParamSource::Query(_) | ParamSource::Header(_))) => {
                    Some(Sticky::Parameter(p))
                }
                Ok(_) => {
                    errors.push(doc.error(
                        &format!("{at}.name"),
                        "a request parameter: method.request.path.NAME, method.request.querystring.NAME or method.request.header.NAME",
                    ));
                    None
                }
                Err(m) => {
                    errors.push(doc.error(&format!("{at}.name"), m));
                    None
                }
            },
            ("parameter", None) => {
                errors.push(doc.error(
                    &format!("{at}.name"),
                    "required with `by: parameter` (e.g. `method.request.path.user_id`)",
                ));
                None
            }
            _ => {
                errors.push(doc.error(&format!("{at}.by"), "one of `api_key`, `parameter`"));
                None
            }
        }
    });
    let mut variables = primary.variables.clone();
    variables.extend(raw.stage_variable_overrides.clone());
    let cache = StageCacheConfig {
        enabled: primary.cache.enabled && raw.use_stage_cache,
        scope: cache::scope(&format!("{}{CANARY_SCOPE}", primary.name), &variables),
        ..primary.cache.clone()
    };
    let view = Stage {
        variables,
        cache,
        canary: None,
        is_canary: true,
        ..primary.clone()
    };
    Canary {
        percent_traffic: raw.percent_traffic,
        stage_variable_overrides: raw.stage_variable_overrides,
        use_stage_cache: raw.use_stage_cache,
        sticky,
        view,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn canary(percent: f64) -> Canary {
        let view = Stage {
            name: "prod".into(),
            variables: BTreeMap::new(),
            throttle: None,
            route_throttles: Vec::new(),
            cache: StageCacheConfig::default(),
            canary: None,
            is_canary: true,
        };
        Canary {
            percent_traffic: percent,
            stage_variable_overrides: BTreeMap::new(),
            use_stage_cache: false,
            sticky: None,
            view,
        }
    }

    #[test]
    fn the_sticky_hash_is_sha256_of_stage_nul_value() {
        // python3 -c "import hashlib;print(int.from_bytes(hashlib.sha256(b'prod\0U:1').digest()[:8],'big')>>11)"
        let mut d = Sha256::new();
        d.update(b"prod\0U:1");
        let top = u64::from_be_bytes(d.finalize()[..8].try_into().unwrap()) >> 11;
        assert_eq!(sticky_fraction("prod", "U:1"), top as f64 / 2f64.powi(53));
        assert_ne!(
            sticky_fraction("prod", "U:1"),
            sticky_fraction("temp", "U:1")
        );
    }

    #[test]
    fn zero_and_hundred_percent_are_absolute() {
        assert!(!canary(0.0).is_canary("prod", None, || 0.0));
        assert!(canary(100.0).is_canary("prod", None, || 0.999_999));
        assert!(canary(100.0).is_canary("prod", Some("anyone"), || unreachable!()));
    }

    proptest! {
        /// A sticky user in the canary at one percentage stays in it at any larger one.
        #[test]
        fn sticky_assignment_is_monotone(user in ".{0,40}", low in 0.0f64..100.0, extra in 0.0f64..100.0) {
            let high = (low + extra).min(100.0);
            if canary(low).is_canary("prod", Some(&user), || unreachable!()) {
                prop_assert!(canary(high).is_canary("prod", Some(&user), || unreachable!()));
            }
        }

        #[test]
        fn the_fraction_is_in_the_unit_interval(stage in "[a-z]{1,8}", user in ".{0,40}") {
            let f = sticky_fraction(&stage, &user);
            prop_assert!((0.0..1.0).contains(&f));
        }
    }
}
