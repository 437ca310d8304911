//! Invocation output: the JSON answer with the logging fields of
//! `shared/reference/stochastic-ranking.md` §4.2.
//!
//! Place in the pipeline: last stage of `recommend`. Input: the validated request, the ranking and
//! the raw scores it was drawn from. Output: a serializable [`Recommendations`].
//!
//! Invariants: `score` is the raw model score (`f32`, widened exactly to `f64` so offline code
//! recomputes the very logits the sampler used), never a perturbed key; the seed is a string
//! because a u64 above 2⁵³ loses precision as a JSON number; `log_propensity` equals the last
//! slot's `log_p_cascade`; fields that do not apply to a policy are `null`, not omitted.

use serde::Serialize;

use crate::model::Model;
use crate::policy::{Policy, Ranking};

/// Name of the per-request RNG algorithm, as logged.
pub const RNG_ALGORITHM: &str = "ChaCha8";

/// The response body of an invocation.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Recommendations {
    pub user_id: String,
    pub request_id: String,
    pub inference_type: &'static str,
    pub model_version: String,
    pub k: usize,
    pub params: Params,
    pub rng: RngLog,
    pub n_candidates: usize,
    pub log_normalizer: Option<f64>,
    pub log_propensity: f64,
    pub recommendations: Vec<Recommendation>,
    /// `"popularity"` when the user is unknown and the fallback scores were ranked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<&'static str>,
}

/// The policy parameters in force (`null` where the policy has none).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Params {
    pub temperature: Option<f64>,
    pub epsilon: Option<f64>,
    /// `"whole_list"` for ε-greedy: with probability ε the whole list is uniformly random.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exploration: Option<&'static str>,
}

/// How to replay the request's randomness.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RngLog {
    pub algorithm: &'static str,
    pub seed: String,
}

/// One recommended item.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Recommendation {
    pub position: usize,
    pub item_id: String,
    pub title: String,
    pub score: f64,
    pub p_conditional: f64,
    pub log_p_cascade: f64,
    pub p_item_position: Option<f64>,
    pub explored: Option<bool>,
}

/// Everything the response is assembled from.
pub struct Parts<'a> {
    pub model: &'a Model,
    pub user_id: String,
    pub request_id: String,
    pub policy: Policy,
    pub seed: u64,
    pub scores: &'a [f32],
    pub ranking: Ranking,
    pub fallback: bool,
}

/// Assembles the response body.
pub fn assemble(parts: Parts<'_>) -> Recommendations {
    let Parts {
        model,
        user_id,
        request_id,
        policy,
        seed,
        scores,
        ranking,
        fallback,
    } = parts;
    let recommendations: Vec<Recommendation> = ranking
        .slots
        .iter()
        .enumerate()
        .map(|(j, slot)| Recommendation {
            position: j + 1,
            item_id: model.item_id(slot.index).to_owned(),
            title: model.item_title(slot.index).to_owned(),
            score: scores.get(slot.index).map_or(f64::NAN, |&s| f64::from(s)),
            p_conditional: slot.p_conditional,
            log_p_cascade: slot.log_p_cascade,
            p_item_position: slot.p_item_position,
            explored: slot.explored,
        })
        .collect();
    Recommendations {
        user_id,
        request_id,
        inference_type: policy.name(),
        model_version: model.version.to_string(),
        k: recommendations.len(),
        params: Params {
            temperature: policy.temperature(),
            epsilon: policy.epsilon(),
            exploration: policy.epsilon().map(|_| "whole_list"),
        },
        rng: RngLog {
            algorithm: RNG_ALGORITHM,
            seed: seed.to_string(),
        },
        n_candidates: scores.len(),
        log_normalizer: ranking.log_normalizer,
        log_propensity: ranking.log_propensity,
        recommendations,
        fallback: fallback.then_some("popularity"),
    }
}
