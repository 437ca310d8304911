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
//!   with the sequential sum-tree sampler: exact PL in O(n + k log n), the cheaper of the two.
//! - The sequential samplers place one position at a time (a later streaming response can emit
//!   each as it is drawn); Gumbel-top-k knows its order once its single pass is done.
//! - ε-greedy is the *whole-list* variant (Open Bandit Pipeline's `EpsilonGreedy`): with probability
//!   ε the whole list is a uniformly random ordered k-subset, otherwise the greedy top-k. It has
//!   closed-form item-position marginals, which makes its logs directly usable by IIPS.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

use rand::Rng;

use crate::simd;

/// Default Plackett–Luce temperature when a request gives none.
pub const DEFAULT_TEMPERATURE: f64 = 1.0;
/// Default exploration probability for ε-greedy when a request gives none.
pub const DEFAULT_EPSILON: f64 = 0.1;

/// When the total remaining weight falls below this, the weights are re-shifted to the remaining
/// maximum logit so that nothing the sampler may still choose has underflowed to 0.
const RESCALE_BELOW: f64 = 1e-200;

thread_local! {
    /// The PL weight tree, reused by every request on this thread so that sampling allocates
    /// nothing n-sized (about 2·n f64 per worker thread once the largest catalogue was seen).
    /// With the number of leaves the last request wrote (padding beyond it is still zero).
    static TREE: RefCell<(Vec<f64>, usize)> = const { RefCell::new((Vec::new(), 0)) };
}

/// Runs `f` with this thread's tree buffer (a fresh one if it is somehow in use: never a panic).
fn with_tree<T>(f: impl FnOnce(&mut Vec<f64>, &mut usize) -> T) -> T {
    TREE.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            let (tree, written) = &mut *buf;
            f(tree, written)
        }
        Err(_) => f(&mut Vec::new(), &mut 0),
    })
}

/// One inference policy with its validated parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Policy {
    /// Greedy top-k by raw score.
    Deterministic,
    /// Sequential Plackett–Luce: k categorical draws over the remaining items.
    PlackettLuce { temperature: f64 },
    /// Plackett–Luce over per-user scores cached across requests (the sequential sampler).
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
        Policy::PlackettLuce { temperature } | Policy::PlackettLuceCached { temperature } => {
            plackett_luce_sequential(scores, temperature, k, rng)
        }
        Policy::GumbelTopK { temperature } => gumbel_top_k(scores, temperature, k, rng),
        Policy::EpsilonGreedy { epsilon } => Ok(epsilon_greedy(scores, epsilon, k, rng)),
    }
}

/// Indices of the `k` largest `keys`, best first; ties by index ascending. O(n + k log k).
pub fn top_k_by_key(keys: &[f32], k: usize) -> Vec<usize> {
    simd::top_k(keys, k)
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

/// Plackett–Luce weights of the items not yet placed, in a sum tree, with exact conditional
/// log-probabilities.
///
/// `tree[m + i] = w_i = exp(z_i − shift)` with `z_i = s_i / T` (m = n rounded up to a power of two,
/// padding leaves 0) and `tree[j] = tree[2j] + tree[2j + 1]`. A draw descends from the root in
/// O(log n) — the same item a cumulative scan in index order would pick. Removing an item zeroes
/// its leaf and recomputes its ancestors from their children: every total is a sum of what remains,
/// never `W − Σ removed`, so nothing cancels. When the remaining total becomes tiny (k close to n
/// under a huge score gap), the shift moves to the remaining maximum and the tree is rebuilt (O(n),
/// rare), so low-scored items placed late still get exact, finite probabilities.
struct PlState<'a> {
    scores: &'a [f32],
    temperature: f64,
    tree: &'a mut Vec<f64>,
    m: usize,
    shift: f64,
    log_normalizer: f64,
    removed: Vec<usize>,
}

impl<'a> PlState<'a> {
    /// Builds the weights of all of `scores` (non-empty, finite) in `tree`. O(n).
    /// `written`: how many leaves an earlier use of this buffer may have left non-zero.
    fn new(
        scores: &'a [f32],
        temperature: f64,
        tree: &'a mut Vec<f64>,
        written: &mut usize,
    ) -> Result<Self, PolicyError> {
        let (min, max) = simd::min_max(scores).unwrap_or((0.0, 0.0));
        let shift = f64::from(max) / temperature;
        if !shift.is_finite() || !(f64::from(min) / temperature).is_finite() {
            return Err(PolicyError::LogitOverflow { temperature });
        }
        let m = scores.len().next_power_of_two();
        // Reused buffer: `fill` rewrites leaves 0..n; padding leaves must be zero, which they are
        // unless an earlier, larger catalogue of the same tree size wrote them.
        let n = scores.len();
        if tree.len() != 2 * m {
            tree.clear();
            tree.resize(2 * m, 0.0);
        } else if *written > n {
            tree[m + n..m + *written].fill(0.0);
        }
        *written = n;
        let mut state = PlState {
            scores,
            temperature,
            tree,
            m,
            shift,
            log_normalizer: 0.0,
            removed: Vec::new(),
        };
        state.fill(shift);
        state.log_normalizer = shift + state.tree[1].ln();
        Ok(state)
    }

    /// The logit of item `i`.
    fn z(&self, i: usize) -> f64 {
        self.scores
            .get(i)
            .map_or(f64::NEG_INFINITY, |&s| f64::from(s) / self.temperature)
    }

    /// Writes the leaves for `shift` (removed items stay 0) and sums the tree bottom-up.
    fn fill(&mut self, shift: f64) {
        self.shift = shift;
        let (m, n) = (self.m, self.scores.len());
        simd::weights(
            self.scores,
            self.temperature,
            shift,
            &mut self.tree[m..m + n],
        );
        for &i in &self.removed {
            self.tree[m + i] = 0.0;
        }
        let mut width = m / 2;
        while width >= 1 {
            let (upper, lower) = self.tree.split_at_mut(2 * width);
            for (parent, pair) in upper[width..].iter_mut().zip(lower.as_chunks::<2>().0) {
                *parent = pair[0] + pair[1];
            }
            width /= 2;
        }
    }

    /// Σ of the remaining weights, after re-shifting if it has become too small to trust.
    fn remaining_total(&mut self) -> f64 {
        if self.tree[1] >= RESCALE_BELOW {
            return self.tree[1];
        }
        let mut removed = self.removed.clone();
        removed.sort_unstable();
        let shift = (0..self.scores.len())
            .filter(|i| removed.binary_search(i).is_err())
            .map(|i| self.z(i))
            .fold(f64::NEG_INFINITY, f64::max);
        if shift.is_finite() {
            self.fill(shift);
        }
        self.tree[1]
    }

    /// Removes item `i` and returns log π(i | items removed before), computed from its logit
    /// (not its possibly-underflowed weight).
    fn take(&mut self, i: usize) -> f64 {
        let total = self.remaining_total();
        let log_p = (self.z(i) - self.shift) - total.ln();
        let mut j = self.m + i;
        if let Some(leaf) = self.tree.get_mut(j) {
            *leaf = 0.0;
        }
        while j > 1 {
            j /= 2;
            self.tree[j] = self.tree[2 * j] + self.tree[2 * j + 1];
        }
        self.removed.push(i);
        log_p
    }

    /// Categorical draw over the remaining items with `u` uniform in [0, 1). O(log n).
    fn draw(&mut self, u: f64) -> usize {
        let mut target = u * self.remaining_total();
        let mut j = 1;
        while j < self.m {
            let (left, right) = (self.tree[2 * j], self.tree[2 * j + 1]);
            // Rounding can leave the target a hair past a subtree's sum: never step into an
            // empty subtree, so the leaf reached always has weight.
            if (target < left && left > 0.0) || right <= 0.0 {
                j *= 2;
            } else {
                target -= left;
                j = 2 * j + 1;
            }
        }
        (j - self.m).min(self.scores.len() - 1)
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
/// still remaining, one position at a time. O(n + k log n) after scoring.
pub fn plackett_luce_sequential<R: Rng + ?Sized>(
    scores: &[f32],
    temperature: f64,
    k: usize,
    rng: &mut R,
) -> Result<Ranking, PolicyError> {
    let k = k.min(scores.len());
    if scores.is_empty() {
        return Ok(empty_pl());
    }
    with_tree(|tree, written| {
        let mut state = PlState::new(scores, temperature, tree, written)?;
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
    })
}

/// A uniform draw in the open interval (0, 1) from 16 + 48 random bits: the top 53 of the 64,
/// plus half a step (so neither 0 nor 1). It is never below `hi · 2⁻¹⁶`, which is what lets the
/// race judge most items from `hi` alone.
#[inline(always)]
fn open01(hi: u16, lo: u64) -> f64 {
    let bits = (u64::from(hi) << 48) | (lo >> 16);
    ((bits >> 11) as f64 + 0.5) * (f64::EPSILON / 2.0)
}

/// A standard exponential draw `E = −ln(1 − V)`, V ~ U(0, 1), exactly as the race draws it.
fn exp1(v: f64) -> f64 {
    -(-v).ln_1p()
}

/// A standard Gumbel(0, 1) draw, `−ln E` with `E ~ Exp(1)` — the identity the race below uses.
pub fn gumbel<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    let hi = (rng.next_u32() >> 16) as u16;
    -exp1(open01(hi, rng.next_u64())).ln()
}

/// Gumbel-top-k: the indices of the k largest keys `z_i + G_i`, in key order. Exactly the PL
/// distribution of [`plackett_luce_sequential`], in O(n + k log k); the propensities use the same
/// weight tree (one log-sum-exp over all n logits, then O(log n) per position).
///
/// Computed as the equivalent exponential race (reference §2.3): with `E_i ~ Exp(1)` and
/// `G_i = −ln E_i`, the key order `z_i + G_i` descending is the arrival order `E_i / w_i`
/// ascending. See [`race_top_k`] for why most items cost one multiply and one compare.
pub fn gumbel_top_k<R: Rng + ?Sized>(
    scores: &[f32],
    temperature: f64,
    k: usize,
    rng: &mut R,
) -> Result<Ranking, PolicyError> {
    if scores.is_empty() {
        return Ok(empty_pl());
    }
    with_tree(|tree, written| {
        let mut state = PlState::new(scores, temperature, tree, written)?;
        let log_normalizer = state.log_normalizer;
        let order = race_top_k(&state, k, rng);
        let (slots, cascade) = pl_slots(&order, &mut state);
        Ok(Ranking {
            slots,
            log_normalizer: Some(log_normalizer),
            log_propensity: cascade,
        })
    })
}

/// Below this weight an arrival time `E / w` would be computed from a denormal or zero `w`, so the
/// item's bound is checked in log space instead.
const LINEAR_RACE_MIN_WEIGHT: f64 = 1e-280;
/// Random words drawn per block of the race (one per item).
const RACE_BLOCK: usize = 256;

/// One arrival of the race: log arrival time `ln E − (z − shift)`; ordered by time, then index.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Arrival {
    log_time: f64,
    index: usize,
}

impl Eq for Arrival {}

impl PartialOrd for Arrival {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Arrival {
    fn cmp(&self, other: &Self) -> Ordering {
        self.log_time
            .total_cmp(&other.log_time)
            .then(self.index.cmp(&other.index))
    }
}

/// The first `k` arrivals of the exponential race, earliest first; ties by index ascending.
///
/// Every item draws a uniform V and arrives at `t = E / w` with `E = −ln(1 − V)`. Since
/// `E > V ≥ hi · 2⁻¹⁶` (`hi` the first 16 random bits of V, drawn in bulk from the request's ChaCha8
/// stream, 256 items at a time), an item with `hi · 2⁻¹⁶ > τ·w` — τ the k-th earliest arrival so
/// far, plus a margin far above rounding — cannot make the top k. A block is screened with that
/// test in one vectorisable pass ([`simd::screen`]); only the few items that pass (about
/// k·ln(n/k) in random order) draw their low 48 bits and pay for two logarithms and a heap
/// insertion, and their exact key decides. The result is the same as computing every key exactly.
fn race_top_k<R: Rng + ?Sized>(state: &PlState<'_>, k: usize, rng: &mut R) -> Vec<usize> {
    let n = state.scores.len();
    let k = k.min(n);
    if k == 0 {
        return Vec::new();
    }
    let weights = &state.tree[state.m..state.m + n];
    let mut heap: BinaryHeap<Arrival> = BinaryHeap::with_capacity(k + 1);
    // The k-th earliest log time so far, and e^that with a relative margin of 1e-6 for the screen.
    let mut worst = f64::INFINITY;
    let mut bound = f64::INFINITY;
    let mut words = [0_u16; RACE_BLOCK];
    let mut pass = [0_u8; RACE_BLOCK];
    for (b, block) in weights.chunks(RACE_BLOCK).enumerate() {
        let words = &mut words[..block.len()];
        rng.fill(words);
        // Screen with the bound at the start of the block: it only shrinks, so this lets through
        // a superset of the items the exact test below would consider.
        let pass = &mut pass[..block.len()];
        simd::screen(block, words, bound * 65_536.0, LINEAR_RACE_MIN_WEIGHT, pass);
        for (c, group) in pass.chunks(16).enumerate() {
            if let Ok(bytes) = <[u8; 16]>::try_from(group)
                && u128::from_ne_bytes(bytes) == 0
            {
                continue;
            }
            for (g, _) in group.iter().enumerate().filter(|(_, p)| **p != 0) {
                let j = c * 16 + g;
                let index = b * RACE_BLOCK + j;
                let w = block[j];
                // The screen used the bound from the start of the block; the k-th may have moved
                // closer since (it does within the first block, which starts unbounded).
                if w >= LINEAR_RACE_MIN_WEIGHT && f64::from(words[j]) > bound * 65_536.0 * w {
                    continue;
                }
                let log_w = state.z(index) - state.shift;
                if w < LINEAR_RACE_MIN_WEIGHT && log_w + worst < -50.0 {
                    // τ·w < e^−50 < 2^−53 < V: this arrival is later than the k-th.
                    continue;
                }
                let log_time = exp1(open01(words[j], rng.next_u64())).ln() - log_w;
                let arrival = Arrival { log_time, index };
                if heap.len() < k {
                    heap.push(arrival);
                } else if heap.peek().is_some_and(|top| arrival < *top) {
                    heap.pop();
                    heap.push(arrival);
                } else {
                    continue;
                }
                if heap.len() == k {
                    worst = heap.peek().map_or(f64::INFINITY, |top| top.log_time);
                    bound = worst.exp() * (1.0 + 1e-6);
                }
            }
        }
    }
    heap.into_sorted_vec()
        .into_iter()
        .map(|a| a.index)
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
