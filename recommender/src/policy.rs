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
//! - Every policy hands its ranking out one position at a time through [`Draws`]: the sequential
//!   samplers draw each position when it is asked for (a streamed answer sends it at once);
//!   Gumbel-top-k knows its order once its single pass is done and computes each position's
//!   propensity when it is handed out; deterministic and ε-greedy know the whole list up front.
//!   [`rank`] is the same sequence collected, so a streamed and a buffered answer with the same
//!   seed are the same list with the same propensities.
//! - ε-greedy is the *whole-list* variant (Open Bandit Pipeline's `EpsilonGreedy`): with probability
//!   ε the whole list is a uniformly random ordered k-subset, otherwise the greedy top-k. It has
//!   closed-form item-position marginals, which makes its logs directly usable by IIPS.

use std::cell::Cell;
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

/// A sum-tree buffer and how many of its leaves an earlier use may have left non-zero.
#[derive(Default)]
struct TreeBuf {
    nodes: Vec<f64>,
    written: usize,
}

thread_local! {
    /// A spare PL weight tree per thread, so that sampling allocates nothing n-sized (about 2·n
    /// f64 per worker thread once the largest catalogue was seen). A ranking takes it and gives it
    /// back when done; one taken meanwhile (a concurrent stream) starts from an empty buffer.
    static SPARE_TREE: Cell<TreeBuf> = const {
        Cell::new(TreeBuf {
            nodes: Vec::new(),
            written: 0,
        })
    };
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

/// Ranks `scores` with `policy`, returning `min(k, scores.len())` items: every position of
/// [`Draws`], collected.
pub fn rank<R: Rng + ?Sized>(
    policy: Policy,
    scores: &[f32],
    k: usize,
    rng: &mut R,
) -> Result<Ranking, PolicyError> {
    let mut draws = Draws::start(policy, scores, k, rng)?;
    let slots = std::iter::from_fn(|| draws.next_slot(rng)).collect();
    Ok(Ranking {
        slots,
        log_normalizer: draws.log_normalizer(),
        log_propensity: draws.log_propensity(),
    })
}

/// A ranking being handed out one position at a time, over the scores it owns (`&[f32]` for a
/// buffered answer, an owned or shared buffer for a streamed one).
///
/// Sequential PL (both PL policies) draws each position in [`Draws::next_slot`], from the weight
/// tree built in [`Draws::start`]; Gumbel-top-k runs its race in `start` and computes each
/// position's propensity when it is handed out; deterministic and ε-greedy rank the whole list in
/// `start`. The RNG is consumed in the same order either way, so a seed gives the same list
/// however the positions are collected. Between positions a PL ranking holds its weight tree
/// (16 bytes per item, rounded up to a power of two); the tree goes back to the thread's spare
/// when the ranking is dropped.
pub struct Draws<S> {
    scores: S,
    order: Order,
    /// Positions still to hand out.
    left: usize,
    log_normalizer: Option<f64>,
    /// `log_p_cascade` of the last position handed out (0 before the first).
    cascade: f64,
}

/// Where the next position comes from.
enum Order {
    /// The whole list with its propensities (deterministic, ε-greedy, an empty catalogue).
    Known(std::vec::IntoIter<Slot>),
    /// Sequential PL: a categorical draw over the remaining weights.
    Drawn(PlState),
    /// Gumbel-top-k: the race's order; the weights give each position's propensity.
    Raced(PlState, std::vec::IntoIter<usize>),
}

impl<S: AsRef<[f32]>> Draws<S> {
    /// Validates the logits and does the policy's up-front work (see the type's docs).
    pub fn start<R: Rng + ?Sized>(
        policy: Policy,
        scores: S,
        k: usize,
        rng: &mut R,
    ) -> Result<Self, PolicyError> {
        let all = scores.as_ref();
        let k = k.min(all.len());
        let known = |ranking: Ranking| (Order::Known(ranking.slots.into_iter()), None);
        let (order, log_normalizer) = match policy {
            Policy::Deterministic => known(deterministic(all, k)),
            Policy::EpsilonGreedy { epsilon } => known(epsilon_greedy(all, epsilon, k, rng)),
            _ if all.is_empty() => known(empty_pl()),
            Policy::PlackettLuce { temperature } | Policy::PlackettLuceCached { temperature } => {
                let state = PlState::new(all, temperature)?;
                let log_normalizer = state.log_normalizer;
                (Order::Drawn(state), Some(log_normalizer))
            }
            Policy::GumbelTopK { temperature } => {
                let state = PlState::new(all, temperature)?;
                let log_normalizer = state.log_normalizer;
                let order = race_top_k(&state, all, k, rng);
                (Order::Raced(state, order.into_iter()), Some(log_normalizer))
            }
        };
        Ok(Draws {
            scores,
            order,
            left: k,
            log_normalizer,
            cascade: 0.0,
        })
    }

    /// The next position, or `None` once `min(k, n)` were handed out. O(log n) for PL.
    pub fn next_slot<R: Rng + ?Sized>(&mut self, rng: &mut R) -> Option<Slot> {
        if self.left == 0 {
            return None;
        }
        let scores = self.scores.as_ref();
        let slot = match &mut self.order {
            Order::Known(slots) => slots.next()?,
            Order::Drawn(state) => {
                let index = state.draw(scores, rng.random::<f64>());
                pl_slot(state, scores, index, self.cascade)
            }
            Order::Raced(state, order) => {
                let index = order.next()?;
                pl_slot(state, scores, index, self.cascade)
            }
        };
        self.left -= 1;
        self.cascade = slot.log_p_cascade;
        Some(slot)
    }

    /// The scores being ranked.
    pub fn scores(&self) -> &[f32] {
        self.scores.as_ref()
    }

    /// LSE(s / T) over all candidates, for PL policies; `None` for the others.
    pub fn log_normalizer(&self) -> Option<f64> {
        self.log_normalizer
    }

    /// log π of the positions handed out so far: the whole list's once all are out.
    pub fn log_propensity(&self) -> f64 {
        self.cascade
    }
}

/// Places `index` next under PL and returns its slot, given the prefix's log-probability.
fn pl_slot(state: &mut PlState, scores: &[f32], index: usize, cascade: f64) -> Slot {
    let log_p = state.take(scores, index);
    Slot {
        index,
        p_conditional: log_p.exp(),
        log_p_cascade: cascade + log_p,
        p_item_position: None,
        explored: None,
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
///
/// The state does not keep the scores: every method takes the same `scores` the state was built
/// from ([`Draws`] owns them and passes them in).
struct PlState {
    n: usize,
    temperature: f64,
    tree: TreeBuf,
    m: usize,
    shift: f64,
    log_normalizer: f64,
    removed: Vec<usize>,
}

impl PlState {
    /// Builds the weights of all of `scores` (non-empty, finite) in the thread's spare tree. O(n).
    fn new(scores: &[f32], temperature: f64) -> Result<Self, PolicyError> {
        let (min, max) = simd::min_max(scores).unwrap_or((0.0, 0.0));
        let shift = f64::from(max) / temperature;
        if !shift.is_finite() || !(f64::from(min) / temperature).is_finite() {
            return Err(PolicyError::LogitOverflow { temperature });
        }
        let mut tree = SPARE_TREE.try_with(Cell::take).unwrap_or_default();
        let m = scores.len().next_power_of_two();
        // Reused buffer: `fill` rewrites leaves 0..n; padding leaves must be zero, which they are
        // unless an earlier, larger catalogue of the same tree size wrote them.
        let n = scores.len();
        if tree.nodes.len() != 2 * m {
            tree.nodes.clear();
            tree.nodes.resize(2 * m, 0.0);
        } else if tree.written > n {
            tree.nodes[m + n..m + tree.written].fill(0.0);
        }
        tree.written = n;
        let mut state = PlState {
            n,
            temperature,
            tree,
            m,
            shift,
            log_normalizer: 0.0,
            removed: Vec::new(),
        };
        state.fill(scores, shift);
        state.log_normalizer = shift + state.tree.nodes[1].ln();
        Ok(state)
    }

    /// The logit of item `i`.
    fn z(&self, scores: &[f32], i: usize) -> f64 {
        scores
            .get(i)
            .map_or(f64::NEG_INFINITY, |&s| f64::from(s) / self.temperature)
    }

    /// Writes the leaves for `shift` (removed items stay 0) and sums the tree bottom-up.
    fn fill(&mut self, scores: &[f32], shift: f64) {
        self.shift = shift;
        let (m, n) = (self.m, self.n);
        let tree = &mut self.tree.nodes;
        simd::weights(scores, self.temperature, shift, &mut tree[m..m + n]);
        for &i in &self.removed {
            tree[m + i] = 0.0;
        }
        let mut width = m / 2;
        while width >= 1 {
            let (upper, lower) = tree.split_at_mut(2 * width);
            for (parent, pair) in upper[width..].iter_mut().zip(lower.as_chunks::<2>().0) {
                *parent = pair[0] + pair[1];
            }
            width /= 2;
        }
    }

    /// Σ of the remaining weights, after re-shifting if it has become too small to trust.
    fn remaining_total(&mut self, scores: &[f32]) -> f64 {
        if self.tree.nodes[1] >= RESCALE_BELOW {
            return self.tree.nodes[1];
        }
        let mut removed = self.removed.clone();
        removed.sort_unstable();
        let shift = (0..self.n)
            .filter(|i| removed.binary_search(i).is_err())
            .map(|i| self.z(scores, i))
            .fold(f64::NEG_INFINITY, f64::max);
        if shift.is_finite() {
            self.fill(scores, shift);
        }
        self.tree.nodes[1]
    }

    /// Removes item `i` and returns log π(i | items removed before), computed from its logit
    /// (not its possibly-underflowed weight).
    fn take(&mut self, scores: &[f32], i: usize) -> f64 {
        let total = self.remaining_total(scores);
        let log_p = (self.z(scores, i) - self.shift) - total.ln();
        let tree = &mut self.tree.nodes;
        let mut j = self.m + i;
        if let Some(leaf) = tree.get_mut(j) {
            *leaf = 0.0;
        }
        while j > 1 {
            j /= 2;
            tree[j] = tree[2 * j] + tree[2 * j + 1];
        }
        self.removed.push(i);
        log_p
    }

    /// Categorical draw over the remaining items with `u` uniform in [0, 1). O(log n).
    fn draw(&mut self, scores: &[f32], u: f64) -> usize {
        let mut target = u * self.remaining_total(scores);
        let tree = &self.tree.nodes;
        let mut j = 1;
        while j < self.m {
            let (left, right) = (tree[2 * j], tree[2 * j + 1]);
            // Rounding can leave the target a hair past a subtree's sum: never step into an
            // empty subtree, so the leaf reached always has weight.
            if (target < left && left > 0.0) || right <= 0.0 {
                j *= 2;
            } else {
                target -= left;
                j = 2 * j + 1;
            }
        }
        (j - self.m).min(self.n - 1)
    }
}

impl Drop for PlState {
    /// Gives the tree back as the thread's spare (the larger one, if another came back meanwhile).
    fn drop(&mut self) {
        let mine = std::mem::take(&mut self.tree);
        let _ = SPARE_TREE.try_with(|spare| {
            let other = spare.take();
            spare.set(if other.nodes.len() > mine.nodes.len() {
                other
            } else {
                mine
            });
        });
    }
}

/// Sequential Plackett–Luce sampling with temperature: k categorical draws, each over the items
/// still remaining, one position at a time. O(n + k log n) after scoring.
pub fn plackett_luce_sequential<R: Rng + ?Sized>(
    scores: &[f32],
    temperature: f64,
    k: usize,
    rng: &mut R,
) -> Result<Ranking, PolicyError> {
    rank(Policy::PlackettLuce { temperature }, scores, k, rng)
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
    rank(Policy::GumbelTopK { temperature }, scores, k, rng)
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
fn race_top_k<R: Rng + ?Sized>(
    state: &PlState,
    scores: &[f32],
    k: usize,
    rng: &mut R,
) -> Vec<usize> {
    let n = state.n;
    let k = k.min(n);
    if k == 0 {
        return Vec::new();
    }
    let weights = &state.tree.nodes[state.m..state.m + n];
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
                let log_w = state.z(scores, index) - state.shift;
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
