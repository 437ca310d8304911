//! Invocation output: the JSON answer with the logging fields of
//! `shared/reference/stochastic-ranking.md` §4.2.
//!
//! Place in the pipeline: last stage of `recommend`. Input: the validated request, the ranking and
//! the raw scores it was drawn from. Output: a serializable [`Recommendations`], or for a streamed
//! answer its JSON Lines: one [`Recommendation`] per line with `"done": false`, then the
//! [`Summary`] (every other field of the buffered answer) with `"done": true`.
//!
//! Invariants: `score` is the raw model score (`f32`, widened exactly to `f64` so offline code
//! recomputes the very logits the sampler used), never a perturbed key; the seed is a string
//! because a u64 above 2⁵³ loses precision as a JSON number; `log_propensity` equals the last
//! slot's `log_p_cascade`; fields that do not apply to a policy are `null`, not omitted.

use serde::Serialize;

use crate::model::Model;
use crate::policy::{Policy, Ranking, Slot};

/// Name of the per-request RNG algorithm, as logged.
pub const RNG_ALGORITHM: &str = "ChaCha8";

/// The response body of an invocation: the whole-list fields, then the list.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Recommendations {
    #[serde(flatten)]
    pub summary: Summary,
    pub recommendations: Vec<Recommendation>,
}

/// The whole-list fields of an answer (the last line of a streamed one).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    pub user_id: String,
    pub request_id: String,
    pub inference_type: &'static str,
    pub model_version: String,
    /// Number of recommendations.
    pub k: usize,
    pub params: Params,
    pub rng: RngLog,
    pub n_candidates: usize,
    pub log_normalizer: Option<f64>,
    pub log_propensity: f64,
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

/// What the request fixes about an answer, before any position is drawn.
#[derive(Debug, Clone)]
pub struct Context {
    pub user_id: String,
    pub request_id: String,
    pub policy: Policy,
    pub seed: u64,
    /// The user is unknown: the popularity fallback scores are ranked.
    pub fallback: bool,
}

/// The line of one ranked position: item, raw score and propensities.
pub fn recommendation(
    model: &Model,
    scores: &[f32],
    position: usize,
    slot: &Slot,
) -> Recommendation {
    Recommendation {
        position,
        item_id: model.item_id(slot.index).to_owned(),
        title: model.item_title(slot.index).to_owned(),
        score: scores.get(slot.index).map_or(f64::NAN, |&s| f64::from(s)),
        p_conditional: slot.p_conditional,
        log_p_cascade: slot.log_p_cascade,
        p_item_position: slot.p_item_position,
        explored: slot.explored,
    }
}

/// The whole-list fields once `k` positions were ranked, with their log-probability.
pub fn summary(
    model: &Model,
    context: &Context,
    n_candidates: usize,
    log_normalizer: Option<f64>,
    log_propensity: f64,
    k: usize,
) -> Summary {
    let policy = context.policy;
    Summary {
        user_id: context.user_id.clone(),
        request_id: context.request_id.clone(),
        inference_type: policy.name(),
        model_version: model.version.to_string(),
        k,
        params: Params {
            temperature: policy.temperature(),
            epsilon: policy.epsilon(),
            exploration: policy.epsilon().map(|_| "whole_list"),
        },
        rng: RngLog {
            algorithm: RNG_ALGORITHM,
            seed: context.seed.to_string(),
        },
        n_candidates,
        log_normalizer,
        log_propensity,
        fallback: context.fallback.then_some("popularity"),
    }
}

/// Assembles the buffered response body.
pub fn assemble(
    model: &Model,
    context: &Context,
    scores: &[f32],
    ranking: Ranking,
) -> Recommendations {
    let recommendations: Vec<Recommendation> = ranking
        .slots
        .iter()
        .enumerate()
        .map(|(j, slot)| recommendation(model, scores, j + 1, slot))
        .collect();
    Recommendations {
        summary: summary(
            model,
            context,
            scores.len(),
            ranking.log_normalizer,
            ranking.log_propensity,
            recommendations.len(),
        ),
        recommendations,
    }
}

/// One line of a streamed answer: `body`'s fields plus `done`.
#[derive(Serialize)]
struct Line<'a, T> {
    #[serde(flatten)]
    body: &'a T,
    done: bool,
}

/// `body` as one JSON Lines line (`\n`-terminated), with `"done": done`.
pub fn line<T: Serialize>(body: &T, done: bool) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(320);
    serde_json::to_writer(&mut out, &Line { body, done })?;
    out.push(b'\n');
    Ok(out)
}

/// A buffered answer as the JSON Lines a stream sends: each recommendation, then the summary.
pub fn lines(answer: &Recommendations) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(512 + 320 * answer.recommendations.len());
    for item in &answer.recommendations {
        out.extend(line(item, false)?);
    }
    out.extend(line(&answer.summary, true)?);
    Ok(out)
}
