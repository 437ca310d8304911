//! Shadow traffic settings: `routes[i].shadow` in `gateway.yaml`.
//!
//! ```yaml
//! routes:
//!   - method: GET
//!     path: /recommended-movies/{user_id}
//!     integration: { endpoint_name: "${stageVariables.endpoint}", ... }
//!     shadow:
//!       endpoint_name: "movie-recommender-next"   # may use ${stageVariables.x}, like the integration's
//!       percent: 10.0          # share of the route's SageMaker calls copied, 0..=100 (required)
//!       max_concurrent: 16     # shadow calls open at once for this route (default 16, 1..=1024)
//!       timeout_ms: 5000       # bound on one shadow call, retries included (default: the route's timeout)
//!       target_variant: AllTraffic   # X-Amzn-SageMaker-Target-Variant of the copy (default none)
//! ```
//!
//! Per-request configuration: a reload may add, change or remove the block (it is left out of the
//! routes' cache-scope digest, so changing it keeps the stage caches). What a shadow call does is
//! [`crate::shadow`]'s.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::Deserialize;

use super::diag::Diagnostic;
use super::gateway::{Stage, check_timeout, endpoint_names};
use super::yaml::Doc;

/// Default of `max_concurrent`.
pub const DEFAULT_MAX_CONCURRENT: usize = 16;
/// Largest `max_concurrent` accepted.
pub const MAX_MAX_CONCURRENT: usize = 1024;

/// `routes[i].shadow:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawShadow {
    /// The shadow endpoint's name; may use `${stageVariables.x}`.
    endpoint_name: String,
    /// Percent of the route's SageMaker calls copied (0 to 100; required).
    percent: f64,
    /// Shadow calls open at once for this route (default 16, 1 to 1024); more are dropped.
    max_concurrent: Option<usize>,
    /// Bound on one shadow call in milliseconds, retries included (default: the route's timeout;
    /// 50 to 60000).
    timeout_ms: Option<u64>,
    /// `X-Amzn-SageMaker-Target-Variant` of the copy, a variant of the shadow endpoint (default
    /// none: the primary's target variant names a variant of another endpoint and is not copied).
    target_variant: Option<String>,
}

/// A route's shadow traffic, compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct Shadow {
    /// Shadow endpoint name per stage, stage variables resolved.
    pub endpoint_by_stage: HashMap<String, String>,
    /// Percent of the route's SageMaker calls copied, 0 to 100.
    pub percent: f64,
    /// Shadow calls open at once for the route; past it a copy is dropped (and counted).
    pub max_concurrent: usize,
    /// Bound on one shadow call, retries included.
    pub timeout: Duration,
    /// Target variant of the copy.
    pub target_variant: Option<String>,
}

/// Compiles `raw` (at `path`); `route_timeout` is the default of `timeout_ms`.
pub(super) fn compile(
    doc: &Doc,
    path: &str,
    raw: RawShadow,
    stages: &BTreeMap<String, Stage>,
    route_timeout: Duration,
    errors: &mut Vec<Diagnostic>,
) -> Shadow {
    let endpoint_by_stage = endpoint_names(
        doc,
        &format!("{path}.endpoint_name"),
        &raw.endpoint_name,
        stages.values().map(|s| (s, "")),
        errors,
    );
    if !(0.0..=100.0).contains(&raw.percent) {
        errors.push(doc.error(&format!("{path}.percent"), "must be between 0 and 100"));
    }
    let max_concurrent = raw.max_concurrent.unwrap_or(DEFAULT_MAX_CONCURRENT);
    if !(1..=MAX_MAX_CONCURRENT).contains(&max_concurrent) {
        errors.push(doc.error(
            &format!("{path}.max_concurrent"),
            format!("must be between 1 and {MAX_MAX_CONCURRENT}"),
        ));
    }
    let timeout = raw.timeout_ms.map_or(route_timeout, Duration::from_millis);
    check_timeout(doc, path, timeout, errors);
    let bad_variant = |v: &String| !crate::message::is_sagemaker_name(v, 63);
    if raw.target_variant.as_ref().is_some_and(bad_variant) {
        errors.push(doc.error(
            &format!("{path}.target_variant"),
            "a production variant name (letters, digits and `-`, at most 63)",
        ));
    }
    Shadow {
        endpoint_by_stage,
        percent: raw.percent,
        max_concurrent,
        timeout,
        target_variant: raw.target_variant,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GatewayConfig;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    const BASE: &str = r#"
stages:
  temp: { variables: { next: ep-next-temp } }
  prod: { variables: { next: ep-next-prod } }
routes:
  - method: GET
    path: /a
    integration: { endpoint_name: ep-a, timeout_ms: 2000 }
"#;

    fn with_shadow(block: &str) -> String {
        format!("{BASE}    shadow: {block}\n")
    }

    #[test]
    fn a_shadow_resolves_per_stage_and_takes_the_route_timeout_by_default() {
        let text = with_shadow(r#"{ endpoint_name: "${stageVariables.next}", percent: 12.5 }"#);
        let c = GatewayConfig::parse("g.yaml", &text, &no_env).unwrap();
        let s = c.routes[0].shadow.clone().unwrap();
        assert_eq!(s.endpoint_by_stage["temp"], "ep-next-temp");
        assert_eq!(s.endpoint_by_stage["prod"], "ep-next-prod");
        assert_eq!(s.percent, 12.5);
        assert_eq!(s.max_concurrent, DEFAULT_MAX_CONCURRENT);
        assert_eq!(s.timeout, Duration::from_millis(2000));
        assert_eq!(s.target_variant, None);
        let none = GatewayConfig::parse("g.yaml", BASE, &no_env).unwrap();
        assert!(none.routes[0].shadow.is_none());
    }

    #[test]
    fn shadow_errors_are_located() {
        let text = with_shadow(
            r#"{ endpoint_name: "${stageVariables.nope}", percent: 101, max_concurrent: 0, timeout_ms: 10, target_variant: "a b" }"#,
        );
        let err = GatewayConfig::parse("g.yaml", &text, &no_env)
            .unwrap_err()
            .to_string();
        for e in [
            "routes[0].shadow.endpoint_name: stage `temp` has no variable `nope`",
            "routes[0].shadow.percent: must be between 0 and 100",
            "routes[0].shadow.max_concurrent: must be between 1 and 1024",
            "routes[0].shadow.timeout_ms: must be between 50 and 60000",
            "routes[0].shadow.target_variant: a production variant name",
        ] {
            assert!(err.contains(e), "missing `{e}` in:\n{err}");
        }
        let err = GatewayConfig::parse("g.yaml", &with_shadow("{ endpoint_name: x }"), &no_env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing field `percent`"), "{err}");
    }

    #[test]
    fn the_shadow_block_is_outside_the_cache_scope_digest() {
        let a = with_shadow("{ endpoint_name: ep-b, percent: 5 }");
        let b = with_shadow("{ endpoint_name: ep-c, percent: 50 }");
        let digest = |t: &str| {
            GatewayConfig::parse("g.yaml", t, &no_env)
                .unwrap()
                .routes_digest
        };
        assert_eq!(digest(&a), digest(&b));
        assert_eq!(digest(&a), digest(BASE));
        assert_ne!(digest(BASE), digest(&BASE.replace("ep-a", "ep-z")));
    }
}
