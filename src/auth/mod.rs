//! The `authenticate` stage: API keys and usage plans from the keys source, checked per request,
//! reloaded without a restart.
//!
//! Place in the pipeline: `route → **authenticate** → admit → validate → …`. It runs for routes
//! with `api_key_required`, after the stage and route are known.
//!
//! Input: the `x-api-key` header value (raw bytes, if any) and the stage name. Output: a [`Caller`]
//! (the key and the usage plan that covers this stage, which `admit` turns into limits), or an
//! [`AuthError`] saying why not — missing, unknown, disabled, or no plan for this stage. All four are
//! API Gateway's 403 `{"message":"Forbidden"}` to the client; only the log tells them apart.
//!
//! The keys file (DESIGN.md §2, reference/apigw-sagemaker.md §2.1) is compiled by [`parse_keys`]
//! into a [`KeySet`]: every problem is collected and located as `file:line:col: path: message`.
//! A [`KeyStore`] holds the current set behind an atomic pointer ([`arc_swap::ArcSwap`]), so a
//! request reads it without a lock and a reload ([`spawn_reloader`]) swaps it whole: a request sees
//! the old set or the new one, never a mix. A bad new file keeps the old set in force.
//!
//! Invariants:
//! - API Gateway's association rule holds in every [`KeySet`]: a key is in at most one usage plan
//!   per stage, so "the plan of this key on this stage" is a single answer.
//! - Key values are not kept: plain `value:` entries are hashed at load and only the SHA-256 is
//!   stored. The lookup is by hash, and the match is confirmed with a constant-time comparison.
//!
//! Security: never log a key value or its hash; log the key id. `Debug` of every type here omits
//! hashes. The lookup's timing depends only on the SHA-256 of what the client sent, never on how
//! many bytes of a real key it got right (a prefix of a key says nothing about its digest).
//! Throttling repeated failed-key attempts (unknown, disabled or wrong-stage keys alike) is part of
//! the stage ([`authenticate`], with `limits::FailedAttemptLimiter`).
//!
//! The stage function over a request ([`authenticate`]) and the keys as the pipeline holds them,
//! with their limiter state ([`KeysSnapshot`]), live in `stage.rs`. Plans speak the limits'
//! vocabulary ([`ThrottleSpec`], [`QuotaSpec`], [`RouteKey`]), so nothing translates between them.

pub mod edit;
mod load;
mod newkey;
mod reload;
mod source;
mod stage;
pub mod write;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub use self::load::{KeysContext, ReloadOptions, parse_keys};
pub use self::newkey::{NewKey, new_key, new_value};
#[cfg(feature = "aws")]
pub(crate) use self::reload::{DirWatch, Hangup};
pub use self::reload::{
    KeyStore, ReloadOutcome, load_initial, reload_now, spawn_reloader, spawn_reloader_shared,
};
pub use self::source::KeySource;
pub use self::stage::{KeysSnapshot, authenticate};
pub use crate::route::{RouteKey, normalize_route_key};

pub use crate::message::API_KEY_HEADER;

/// The keys file speaks the limits' own vocabulary (one set of types for the keys file,
/// gateway.yaml and the limiter). The old names stay as aliases for one step.
pub use crate::limits::{QuotaPeriod, QuotaSpec, ThrottleSpec};
/// Former name of [`ThrottleSpec`].
pub type Throttle = ThrottleSpec;
/// Former name of [`QuotaSpec`].
pub type Quota = QuotaSpec;

/// A usage plan: which stages it covers and the limits it sets per key.
#[derive(Clone, Debug, PartialEq)]
pub struct UsagePlan {
    /// Plan id, unique in the file.
    pub id: String,
    /// Stages covered, in file order, each defined in gateway.yaml.
    pub stages: Vec<String>,
    /// Per-key throttle (applied after the per-route overrides); `None` = no per-key throttle.
    pub throttle: Option<ThrottleSpec>,
    /// Per-key quota; `None` = unlimited.
    pub quota: Option<QuotaSpec>,
    /// Per-key, per-route throttle overrides; every key is a route of gateway.yaml.
    pub route_throttles: HashMap<RouteKey, ThrottleSpec>,
}

/// An API key, without its value.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiKey {
    /// Key id, unique in the file; what logs and limiter state are keyed by.
    pub id: String,
    /// Display name; `None` when the file has none.
    pub name: Option<String>,
    /// A disabled key is rejected (403) like an unknown one, but logged with its id.
    pub enabled: bool,
    /// The key's usage plans in file order, each once (for building limiter state per plan).
    pub usage_plans: Vec<Arc<UsagePlan>>,
    /// The one plan covering each stage the key can use.
    pub plan_for_stage: HashMap<String, Arc<UsagePlan>>,
}

/// Who is calling: the authenticated key and the usage plan that covers the request's stage.
#[derive(Clone, Debug, PartialEq)]
pub struct Caller {
    /// The key.
    pub key: Arc<ApiKey>,
    /// The plan of `key` covering this stage.
    pub plan: Arc<UsagePlan>,
}

/// Why a request was not authenticated. The client gets 403 `{"message":"Forbidden"}` for every
/// variant; the variant (and key id, when known) goes to the log. Never carries the key value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `x-api-key` header, or an empty one.
    #[error("missing API key")]
    Missing,
    /// The value matches no key.
    #[error("unknown API key")]
    Unknown,
    /// The key exists but is disabled.
    #[error("API key {key_id} is disabled")]
    Disabled {
        /// The key's id.
        key_id: String,
    },
    /// The key is in no usage plan covering this stage.
    #[error("API key {key_id} has no usage plan for stage {stage}")]
    StageNotCovered {
        /// The key's id.
        key_id: String,
        /// The request's stage.
        stage: String,
    },
}

impl AuthError {
    /// The key id, when the key was recognised (for the access log).
    pub fn key_id(&self) -> Option<&str> {
        match self {
            AuthError::Missing | AuthError::Unknown => None,
            AuthError::Disabled { key_id } | AuthError::StageNotCovered { key_id, .. } => {
                Some(key_id)
            }
        }
    }
}

/// Where a [`KeySet`] came from, so a reload can tell "unchanged" from "changed".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Origin {
    /// SHA-256 of the file text (not secret: it hashes the whole file).
    pub(crate) digest: [u8; 32],
    /// The S3 object's ETag, for `If-None-Match`.
    pub(crate) etag: Option<String>,
}

/// A compiled keys file: usage plans and keys, looked up by the SHA-256 of the key value.
#[derive(Clone, Default)]
pub struct KeySet {
    by_hash: HashMap<[u8; 32], Arc<ApiKey>>,
    keys: Vec<Arc<ApiKey>>,
    plans: Vec<Arc<UsagePlan>>,
    pub(crate) origin: Origin,
}

impl KeySet {
    /// Checks the presented `x-api-key` value for `stage`.
    ///
    /// Timing: one SHA-256 of the input, one hash-map probe keyed by that digest, then a
    /// constant-time comparison of the 32 digest bytes; nothing depends on how much of a real key
    /// the input shares.
    pub fn authenticate(&self, presented: Option<&[u8]>, stage: &str) -> Result<Caller, AuthError> {
        let presented = match presented {
            Some(v) if !v.is_empty() => v,
            _ => return Err(AuthError::Missing),
        };
        let digest: [u8; 32] = Sha256::digest(presented).into();
        let key = self
            .by_hash
            .get_key_value(&digest)
            .filter(|(stored, _)| bool::from(stored.ct_eq(&digest)))
            .map(|(_, key)| key)
            .ok_or(AuthError::Unknown)?;
        if !key.enabled {
            return Err(AuthError::Disabled {
                key_id: key.id.clone(),
            });
        }
        let plan = key
            .plan_for_stage
            .get(stage)
            .ok_or_else(|| AuthError::StageNotCovered {
                key_id: key.id.clone(),
                stage: stage.to_owned(),
            })?;
        Ok(Caller {
            key: Arc::clone(key),
            plan: Arc::clone(plan),
        })
    }

    /// Keys in file order.
    pub fn keys(&self) -> &[Arc<ApiKey>] {
        &self.keys
    }

    /// Usage plans in file order.
    pub fn plans(&self) -> &[Arc<UsagePlan>] {
        &self.plans
    }

    /// The key with this id.
    pub fn key(&self, id: &str) -> Option<&Arc<ApiKey>> {
        self.keys.iter().find(|k| k.id == id)
    }

    /// The usage plan with this id.
    pub fn plan(&self, id: &str) -> Option<&Arc<UsagePlan>> {
        self.plans.iter().find(|p| p.id == id)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are no keys (every key-protected route answers 403).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Number of enabled keys (for the reload log line).
    pub fn enabled_count(&self) -> usize {
        self.keys.iter().filter(|k| k.enabled).count()
    }
}

// Hand-written so that hashes never reach a log through `{:?}`.
impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet")
            .field(
                "keys",
                &self.keys.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(),
            )
            .field(
                "plans",
                &self.plans.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}
