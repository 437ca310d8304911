//! Ranking policies: the five `inference_type`s, as defined in
//! `shared/reference/stochastic-ranking.md` §2 (not as the Python prototype did them).
//!
//! Place in the pipeline: after scoring, before the response is assembled.
//! Input: the raw scores of every candidate item (`f32`, one per item, finite), the policy with its
//! parameters, `k`, and the request's own RNG. Output: a [`Ranking`] — the chosen item indices in
//! order, with the per-slot and whole-list propensities that off-policy evaluation needs.
//!
//! Invariants:
//! - All probability maths runs in `f64` on logits `z_i = s_i / T`, shifted by their maximum
//!   (log-sum-exp), so no score magnitude overflows `exp`; propensities are reported as logs.
//! - A ranking holds `min(k, n)` distinct indices (the request layer rejects `k > n`).
//! - The same seed gives the same ranking (one `ChaCha8Rng` per request, never a shared one).
//! - Ties in deterministic orders break by score descending, then item index ascending.
//! - `stochastic_plackett_luce`, `stochastic_plackett_luce_cached` and
//!   `stochastic_gumbel_softmax_trick` all draw from the same Plackett–Luce distribution; they differ
//!   in algorithm only. The cached variant's cache lives upstream (see `recommend`); here it samples
//!   with the Gumbel-top-k trick, which is exact PL in O(n + k log k).
//! - ε-greedy is the *whole-list* variant (Open Bandit Pipeline's `EpsilonGreedy`): with probability
//!   ε the whole list is a uniformly random ordered k-subset, otherwise the greedy top-k. It has
//!   closed-form item-position marginals, which makes its logs directly usable by IIPS.

use std::cmp::Ordering;

use rand::Rng;
use rand_distr::Exp1;

/// Default Plackett–Luce temperature when a request gives none.
pub const DEFAULT_TEMPERATURE: f64 = 1.0;
/// Default exploration probability for ε-greedy when a request gives none.
pub const DEFAULT_EPSILON: f64 = 0.1;

/// The subtractive running total of the remaining PL weights is re-summed from the leaves once it
/// falls below this fraction of the last exact sum: past that point `W − Σ removed` has lost too
/// many digits to cancellation (relative error ≈ 2⁻⁵³ / this).
const RESUM_FRACTION: f64 = 1e-3;
/// When the largest remaining weight falls below this, the weights are re-shifted to the
/// remaining maximum logit so that nothing the sampler may still choose has underflowed to 0.
const RESCALE_BELOW: f64 = 1e-200;

/// One inference policy with its validated parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Policy {
    /// Greedy top-k by raw score.
    Deterministic,
    /// Sequential Plackett–Luce: k categorical draws over the remaining items.
    PlackettLuce { temperature: f64 },
    /// Plackett–Luce over per-user scores cached across requests (sampled with Gumbel-top-k).
    PlackettLuceCached { temperature: f64 },
    /// Gumbel-top-k: the k largest of `z_i + G_i`, G ~ Gumbel(0, 1). Same distribution as PL.
    GumbelTopK { temperature: f64 },
    /// Whole-list ε-greedy.
    EpsilonGreedy { epsilon: f64 },
}

impl Policy {
    /// Every accepted `inference_type`, in documentation order.
    pub const NAMES: [&'static str; 5] = [
        "deterministic",
        "stochastic_plackett_luce",
        "stochastic_plackett_luce_cached",
        "stochastic_gumbel_softmax_trick",
        "stochastic_epsilon_greedy",
    ];

    /// The `inference_type` string of this policy.
    pub fn name(&self) -> &'static str {
        match self {
            Policy::Deterministic => Self::NAMES[0],
            Policy::PlackettLuce { .. } => Self::NAMES[1],
            Policy::PlackettLuceCached { .. } => Self::NAMES[2],
            Policy::GumbelTopK { .. } => Self::NAMES[3],
            Policy::EpsilonGreedy { .. } => Self::NAMES[4],
        }
    }

    /// The temperature this policy uses, if any.
    pub fn temperature(&self) -> Option<f64> {
        match *self {
            Policy::PlackettLuce { temperature }
            | Policy::PlackettLuceCached { temperature }
            | Policy::GumbelTopK { temperature } => Some(temperature),
            Policy::Deterministic | Policy::EpsilonGreedy { .. } => None,
        }
    }

    /// The exploration probability this policy uses, if any.
    pub fn epsilon(&self) -> Option<f64> {
        match *self {
            Policy::EpsilonGreedy { epsilon } => Some(epsilon),
            _ => None,
        }
    }
}

/// One position of a ranking, with what off-policy evaluation needs about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    /// Index of the item in the model's item table.
    pub index: usize,
    /// π(a_j | a_<j, x): probability of this item at this slot given the items above it.
    pub p_conditional: f64,
    /// Σ_{l≤j} log p_conditional: log-probability of the prefix down to this slot.
    pub log_p_cascade: f64,
    /// π(a_j at slot j | x), where a closed form exists (deterministic, ε-greedy); `None` for PL.
    pub p_item_position: Option<f64>,
    /// Whether this slot came from exploration (ε-greedy only).
    pub explored: Option<bool>,
}

/// A sampled ranking and its propensities.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranking {
    /// The slots, best first.
    pub slots: Vec<Slot>,
    /// LSE(s / T) over all candidates, for PL policies; `None` for the others.
    pub log_normalizer: Option<f64>,
    /// log π(whole list | x) = the last slot's `log_p_cascade` (0 for an empty list).
    pub log_propensity: f64,
}

impl Ranking {
    /// The chosen item indices, best first.
    pub fn indices(&self) -> Vec<usize> {
        self.slots.iter().map(|s| s.index).collect()
    }
}

/// A ranking that cannot be computed for these scores and parameters.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyError {
    /// `score / temperature` is not finite for some item.
    #[error(
        "temperature: {temperature} is too small for these scores (score / temperature overflows); use a larger temperature"
    )]
    LogitOverflow { temperature: f64 },
}

/// Ranks `scores` with `policy`, returning `min(k, scores.len())` items.
pub fn rank<R: Rng + ?Sized>(
    policy: Policy,
    scores: &[f32],
    k: usize,
    rng: &mut R,
) -> Result<Ranking, PolicyError> {
    let k = k.min(scores.len());
    match policy {
        Policy::Deterministic => Ok(deterministic(scores, k)),
        Policy::PlackettLuce { temperature } => {
            plackett_luce_sequential(scores, temperature, k, rng)
        }
        Policy::PlackettLuceCached { temperature } | Policy::GumbelTopK { temperature } => {
            gumbel_top_k(scores, temperature, k, rng)
        }
        Policy::EpsilonGreedy { epsilon } => Ok(epsilon_greedy(scores, epsilon, k, rng)),
    }
}

/// Indices of the `k` largest `keys`, best first; ties by index ascending. O(n + k log k).
pub fn top_k_by_key<K: PartialOrd + Copy>(keys: &[K], k: usize) -> Vec<usize> {
    let k = k.min(keys.len());
    if k == 0 {
        return Vec::new();
    }
    // Keys are finite (checked at model load / built from finite logits), so partial_cmp never
    // fails; `Equal` is a safe answer for the impossible case and keeps this panic-free.
    let order = |a: &usize, b: &usize| {
        keys[*b]
            .partial_cmp(&keys[*a])
            .unwrap_or(Ordering::Equal)
            .then(a.cmp(b))
    };
    let mut idx: Vec<usize> = (0..keys.len()).collect();
    if k < idx.len() {
        idx.select_nth_unstable_by(k - 1, order);
        idx.truncate(k);
    }
    idx.sort_unstable_by(order);
    idx
}

/// Greedy top-k by raw score. Every slot is certain: p = 1, log-propensity 0.
pub fn deterministic(scores: &[f32], k: usize) -> Ranking {
    let slots = top_k_by_key(scores, k)
        .into_iter()
        .map(|index| Slot {
            index,
            p_conditional: 1.0,
            log_p_cascade: 0.0,
            p_item_position: Some(1.0),
            explored: None,
        })
        .collect();
    Ranking {
        slots,
        log_normalizer: None,
        log_propensity: 0.0,
    }
}

/// `z_i = s_i / T` in f64; errors when a logit overflows (T tiny next to the scores).
fn logits(scores: &[f32], temperature: f64) -> Result<Vec<f64>, PolicyError> {
    let z: Vec<f64> = scores.iter().map(|&s| f64::from(s) / temperature).collect();
    if z.iter().all(|v| v.is_finite()) {
        Ok(z)
    } else {
        Err(PolicyError::LogitOverflow { temperature })
    }
}

/// Plackett–Luce weights over the items not yet placed, with exact conditional log-probabilities.
///
/// Weights are `exp(z_i − shift)`. The running total of remaining weights is kept by subtraction
/// (O(1) per removal) and re-summed from the weights when cancellation could have eaten its digits;
/// when every remaining weight has become tiny, the shift moves to the remaining maximum so that
/// low-scored items placed late (k close to n) still get exact, finite probabilities.
struct PlState<'a> {
    z: &'a [f64],
    w: Vec<f64>,
    remaining: Vec<bool>,
    shift: f64,
    total: f64,
    exact_total: f64,
    log_normalizer: f64,
}

impl<'a> PlState<'a> {
    /// Builds the weights over all of `z` (non-empty, finite).
    fn new(z: &'a [f64]) -> Self {
        let shift = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let w: Vec<f64> = z.iter().map(|&v| (v - shift).exp()).collect();
        let total: f64 = w.iter().sum();
        PlState {
            z,
            w,
            remaining: vec![true; z.len()],
            shift,
            total,
            exact_total: total,
            log_normalizer: shift + total.ln(),
        }
    }

    /// Σ of the remaining weights, re-summed (and re-shifted) when the running total is unreliable.
    fn remaining_total(&mut self) -> f64 {
        if self.total > RESUM_FRACTION * self.exact_total {
            return self.total;
        }
        let max_w = self
            .w
            .iter()
            .zip(&self.remaining)
            .filter(|(_, r)| **r)
            .fold(0.0_f64, |m, (w, _)| m.max(*w));
        if max_w < RESCALE_BELOW {
            let shift = self
                .z
                .iter()
                .zip(&self.remaining)
                .filter(|(_, r)| **r)
                .fold(f64::NEG_INFINITY, |m, (z, _)| m.max(*z));
            if shift.is_finite() {
                self.shift = shift;
                for ((w, z), r) in self.w.iter_mut().zip(self.z).zip(&self.remaining) {
                    if *r {
                        *w = (z - shift).exp();
                    }
                }
            }
        }
        self.total = self
            .w
            .iter()
            .zip(&self.remaining)
            .filter(|(_, r)| **r)
            .map(|(w, _)| *w)
            .sum();
        self.exact_total = self.total;
        self.total
    }

    /// Removes item `i` and returns log π(i | items removed before), computed from its logit
    /// (not its possibly-underflowed weight).
    fn take(&mut self, i: usize) -> f64 {
        let total = self.remaining_total();
        let log_p = (self.z[i] - self.shift) - total.ln();
        self.remaining[i] = false;
        self.total -= self.w[i];
        log_p
    }

    /// Categorical draw over the remaining items with `u` uniform in [0, 1). O(n).
    fn draw(&mut self, u: f64) -> usize {
        let target = u * self.remaining_total();
        let mut cumulative = 0.0;
        let mut last_positive = None;
        for (i, (w, r)) in self.w.iter().zip(&self.remaining).enumerate() {
            if !*r || *w <= 0.0 {
                continue;
            }
            cumulative += *w;
            if cumulative > target {
                return i;
            }
            last_positive = Some(i);
        }
        // Rounding left the cumulative sum a hair under the target: the last item with weight
        // is the one the exact arithmetic would have chosen. `remaining_total` guarantees one
        // positive weight remains, so the final fallback is only for an empty state.
        last_positive
            .or_else(|| self.remaining.iter().position(|r| *r))
            .unwrap_or(0)
    }
}

/// Turns a sequence of conditional log-probabilities into PL slots.
fn pl_slots(order: &[usize], state: &mut PlState<'_>) -> (Vec<Slot>, f64) {
    let mut cascade = 0.0;
    let slots = order
        .iter()
        .map(|&index| {
            let log_p = state.take(index);
            cascade += log_p;
            Slot {
                index,
                p_conditional: log_p.exp(),
                log_p_cascade: cascade,
                p_item_position: None,
                explored: None,
            }
        })
        .collect();
    (slots, cascade)
}

/// Sequential Plackett–Luce sampling with temperature: k categorical draws, each over the items
/// still remaining. O(n·k) after scoring.
pub fn plackett_luce_sequential<R: Rng + ?Sized>(
    scores: &[f32],
    temperature: f64,
    k: usize,
    rng: &mut R,
) -> Result<Ranking, PolicyError> {
    let k = k.min(scores.len());
    let z = logits(scores, temperature)?;
    if z.is_empty() {
        return Ok(empty_pl());
    }
    let mut state = PlState::new(&z);
    let log_normalizer = state.log_normalizer;
    let mut cascade = 0.0;
    let mut slots = Vec::with_capacity(k);
    for _ in 0..k {
        let index = state.draw(rng.random::<f64>());
        let log_p = state.take(index);
        cascade += log_p;
        slots.push(Slot {
            index,
            p_conditional: log_p.exp(),
            log_p_cascade: cascade,
            p_item_position: None,
            explored: None,
        });
    }
    Ok(Ranking {
        slots,
        log_normalizer: Some(log_normalizer),
        log_propensity: cascade,
    })
}

/// A standard Gumbel(0, 1) draw, as `−ln E` with `E ~ Exp(1)` — the identity the race below uses.
pub fn gumbel<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    let e: f64 = rng.sample(Exp1);
    -e.ln()
}

/// Gumbel-top-k: the indices of the k largest keys `z_i + G_i`, in key order. Exactly the PL
/// distribution of [`plackett_luce_sequential`], in O(n + k log k); the propensities still need one
/// log-sum-exp over all n logits.
///
/// Computed as the equivalent exponential race (reference §2.3): with `E_i ~ Exp(1)` and
/// `G_i = −ln E_i`, the key order `z_i + G_i` descending is the arrival order `E_i / w_i` ascending,
/// `w_i = exp(z_i − shift)`. The weights are the ones the propensity needs anyway and `Exp1` is a
/// ziggurat (no logarithm on its fast path), so a key costs a division instead of two logarithms.
/// Items whose weight is tiny (denormal or underflowed, only under extreme temperatures) are raced
/// in log space instead, so the order stays exact there too.
pub fn gumbel_top_k<R: Rng + ?Sized>(
    scores: &[f32],
    temperature: f64,
    k: usize,
    rng: &mut R,
) -> Result<Ranking, PolicyError> {
    let z = logits(scores, temperature)?;
    if z.is_empty() {
        return Ok(empty_pl());
    }
    let mut state = PlState::new(&z);
    let log_normalizer = state.log_normalizer;
    let order = race_top_k(&z, &state.w, state.shift, k, rng);
    let (slots, cascade) = pl_slots(&order, &mut state);
    Ok(Ranking {
        slots,
        log_normalizer: Some(log_normalizer),
        log_propensity: cascade,
    })
}

/// Below this weight an arrival time `E / w` would be computed from a denormal or zero `w`, so the
/// item is raced in log space instead.
const LINEAR_RACE_MIN_WEIGHT: f64 = 1e-280;

/// The first `k` arrivals of the exponential race, earliest first; ties by index ascending.
fn race_top_k<R: Rng + ?Sized>(
    z: &[f64],
    w: &[f64],
    shift: f64,
    k: usize,
    rng: &mut R,
) -> Vec<usize> {
    // Negated arrival times, so "largest key first" reuses `top_k_by_key`.
    let mut neg_times = Vec::with_capacity(w.len());
    let mut tail: Vec<(usize, f64)> = Vec::new();
    for (i, &wi) in w.iter().enumerate() {
        let e: f64 = rng.sample(Exp1);
        if wi >= LINEAR_RACE_MIN_WEIGHT {
            neg_times.push(-(e / wi));
        } else {
            neg_times.push(f64::NEG_INFINITY);
            tail.push((i, e));
        }
    }
    let head = top_k_by_key(&neg_times, k);
    if tail.is_empty() {
        return head;
    }
    // Merge in log space: key = ln w − ln E = (z − shift) − ln E, for the linear winners and every
    // tail item (the k earliest overall are among them). Candidates in index order keep the tie-break.
    let mut candidates: Vec<(usize, f64)> = head
        .into_iter()
        .filter(|&i| w[i] >= LINEAR_RACE_MIN_WEIGHT)
        .map(|i| (i, -(-neg_times[i]).ln()))
        .chain(tail.into_iter().map(|(i, e)| (i, (z[i] - shift) - e.ln())))
        .collect();
    candidates.sort_unstable_by_key(|&(i, _)| i);
    let keys: Vec<f64> = candidates.iter().map(|&(_, key)| key).collect();
    top_k_by_key(&keys, k)
        .into_iter()
        .map(|c| candidates[c].0)
        .collect()
}

fn empty_pl() -> Ranking {
    Ranking {
        slots: Vec::new(),
        log_normalizer: None,
        log_propensity: 0.0,
    }
}

/// log(e^a + e^b), exact for −∞ operands.
fn log_add_exp(a: f64, b: f64) -> f64 {
    let m = a.max(b);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + ((a - m).exp() + (b - m).exp()).ln()
}

/// Whole-list ε-greedy: with probability ε a uniformly random ordered k-subset (every item flagged
/// `explored`), else the greedy top-k.
///
/// Propensities (n items, greedy list g):
/// - prefix j: π(a_1..a_j) = (1−ε)·1[a_1..a_j = g_1..g_j] + ε·(n−j)!/n!, so `log_p_cascade` is its log
///   and `p_conditional` the ratio of consecutive prefixes;
/// - item-position marginal: (1−ε)·1[a_j = g_j] + ε/n.
pub fn epsilon_greedy<R: Rng + ?Sized>(
    scores: &[f32],
    epsilon: f64,
    k: usize,
    rng: &mut R,
) -> Ranking {
    let n = scores.len();
    let k = k.min(n);
    let greedy = top_k_by_key(scores, k);
    // `<` so that ε = 0 never explores and ε = 1 always does.
    let explored = rng.random::<f64>() < epsilon;
    let chosen: Vec<usize> = if explored {
        rand::seq::index::sample(rng, n, k).into_vec()
    } else {
        greedy.clone()
    };
    whole_list_ranking(&chosen, &greedy, n, epsilon, explored)
}

/// Slots and propensities of `chosen` under whole-list ε-greedy with greedy list `greedy`.
fn whole_list_ranking(
    chosen: &[usize],
    greedy: &[usize],
    n: usize,
    epsilon: f64,
    explored: bool,
) -> Ranking {
    let log_eps = epsilon.ln();
    let log_greedy = (1.0 - epsilon).ln();
    let mut log_uniform_prefix = 0.0; // log((n−j)!/n!)
    let mut still_greedy = true;
    let mut previous = 0.0;
    let slots = chosen
        .iter()
        .zip(greedy)
        .enumerate()
        .map(|(j, (&index, &g))| {
            log_uniform_prefix -= ((n - j) as f64).ln();
            still_greedy &= index == g;
            let explore_part = log_eps + log_uniform_prefix;
            let cascade = if still_greedy {
                log_add_exp(log_greedy, explore_part)
            } else {
                explore_part
            };
            let p_conditional = (cascade - previous).exp();
            previous = cascade;
            let greedy_here = if index == g { 1.0 - epsilon } else { 0.0 };
            Slot {
                index,
                p_conditional,
                log_p_cascade: cascade,
                p_item_position: Some(greedy_here + epsilon / n as f64),
                explored: Some(explored),
            }
        })
        .collect();
    Ranking {
        slots,
        log_normalizer: None,
        log_propensity: previous,
    }
}

/// Reference Plackett–Luce log-probability of an ordered list, straight from the definition:
/// log π = Σ_j [ z_{a_j} − LSE(z over the items still remaining at step j) ]. O(n·k); for offline
/// checks and tests, not the request path.
pub fn plackett_luce_log_probability(scores: &[f32], temperature: f64, list: &[usize]) -> f64 {
    let z: Vec<f64> = scores.iter().map(|&s| f64::from(s) / temperature).collect();
    let mut remaining = vec![true; z.len()];
    let mut total = 0.0;
    for &a in list {
        let m = z
            .iter()
            .zip(&remaining)
            .filter(|(_, r)| **r)
            .fold(f64::NEG_INFINITY, |m, (v, _)| m.max(*v));
        let lse = m + z
            .iter()
            .zip(&remaining)
            .filter(|(_, r)| **r)
            .map(|(v, _)| (v - m).exp())
            .sum::<f64>()
            .ln();
        total += z[a] - lse;
        remaining[a] = false;
    }
    total
}

#[cfg(test)]
mod tests;
