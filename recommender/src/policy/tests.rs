//! Oracle tests of the ranking policies against the exact numbers of
//! `shared/reference/stochastic-ranking.md` §3 (fixed seeds; chi-square at α = 1e-4; per-cell 6σ).
//! Thresholds are the reference's; seeds are fixed and were not re-rolled to turn a test green.

use std::collections::HashMap;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::*;

/// The reference fixture: scores for items 0..4.
const FIXTURE: [f32; 5] = [2.0, 1.0, 0.5, 0.0, -1.0];
/// Draws per distribution test (the reference's budget: ~10⁶ RNG calls, fast in debug).
const N: u64 = 100_000;
/// Chi-square critical values at α = 1e-4.
const CHI2_DF4: f64 = 23.513;
const CHI2_DF19: f64 = 50.795;

const PL_POLICIES: [fn(f64) -> Policy; 3] = [
    |temperature| Policy::PlackettLuce { temperature },
    |temperature| Policy::PlackettLuceCached { temperature },
    |temperature| Policy::GumbelTopK { temperature },
];

fn all_policies() -> [Policy; 5] {
    [
        Policy::Deterministic,
        Policy::PlackettLuce { temperature: 1.0 },
        Policy::PlackettLuceCached { temperature: 1.0 },
        Policy::GumbelTopK { temperature: 1.0 },
        Policy::EpsilonGreedy { epsilon: 0.1 },
    ]
}

/// One ranking per draw, each from its own `ChaCha8Rng` seeded like a request's.
fn draw(policy: Policy, scores: &[f32], k: usize, seed: u64) -> Ranking {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rank(policy, scores, k, &mut rng).expect("rank")
}

/// Counts of each distinct list over `n` draws from one `ChaCha8Rng` stream seeded with `seed`.
/// (One stream rather than one RNG per draw: a fresh ChaCha8 fills a 256-byte block on first use,
/// which dominates unoptimised test builds; per-request seeding is covered by the reproducibility
/// tests and by the end-to-end distribution tests, which pass one seed per request.)
fn sample_lists(
    policy: Policy,
    scores: &[f32],
    k: usize,
    n: u64,
    seed: u64,
) -> HashMap<Vec<usize>, u64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut counts = HashMap::new();
    for _ in 0..n {
        let ranking = rank(policy, scores, k, &mut rng).expect("rank");
        *counts.entry(ranking.indices()).or_insert(0) += 1;
    }
    counts
}

fn chi_square(observed: &[u64], expected_p: &[f64], n: u64) -> f64 {
    observed
        .iter()
        .zip(expected_p)
        .map(|(&o, &p)| {
            let e = p * n as f64;
            (o as f64 - e).powi(2) / e
        })
        .sum()
}

fn assert_within_6_sigma(observed: u64, p: f64, n: u64, what: &str) {
    let p_hat = observed as f64 / n as f64;
    let sigma = (p * (1.0 - p) / n as f64).sqrt();
    assert!(
        (p_hat - p).abs() <= 6.0 * sigma,
        "{what}: p̂ = {p_hat}, p = {p}, 6σ = {}",
        6.0 * sigma
    );
}

fn first_position_counts(counts: &HashMap<Vec<usize>, u64>, n_items: usize) -> Vec<u64> {
    let mut first = vec![0; n_items];
    for (list, c) in counts {
        first[list[0]] += c;
    }
    first
}

/// Ordered top-2 cells, T = 1, from the reference (§3.2).
const TOP2: [((usize, usize), f64); 20] = [
    ((0, 1), 0.266867),
    ((0, 2), 0.161863),
    ((1, 0), 0.147079),
    ((0, 3), 0.098175),
    ((2, 0), 0.080893),
    ((3, 0), 0.046439),
    ((0, 4), 0.036117),
    ((1, 2), 0.032818),
    ((2, 1), 0.029759),
    ((1, 3), 0.019905),
    ((3, 1), 0.017084),
    ((4, 0), 0.016237),
    ((2, 3), 0.010948),
    ((3, 2), 0.010362),
    ((1, 4), 0.007323),
    ((4, 1), 0.005973),
    ((2, 4), 0.004027),
    ((4, 2), 0.003623),
    ((3, 4), 0.002312),
    ((4, 3), 0.002197),
];

fn top2_counts(counts: &HashMap<Vec<usize>, u64>) -> Vec<u64> {
    TOP2.iter()
        .map(|((a, b), _)| counts.get(&vec![*a, *b]).copied().unwrap_or(0))
        .collect()
}

// ---- 1. deterministic = argsort ---------------------------------------------------------------

#[test]
fn deterministic_is_argsort_with_index_tie_break() {
    for seed in 0..100 {
        assert_eq!(
            draw(Policy::Deterministic, &FIXTURE, 3, seed).indices(),
            [0, 1, 2]
        );
    }
    assert_eq!(deterministic(&[1.0, 1.0, 0.5], 3).indices(), [0, 1, 2]);
    assert_eq!(deterministic(&[0.5, 1.0, 1.0], 3).indices(), [1, 2, 0]);
    // The prototype's fixture: scores 14, 20, 26 for M:1..M:3 give [M:3, M:2].
    assert_eq!(deterministic(&[14.0, 20.0, 26.0], 2).indices(), [2, 1]);
    // Against a full sort on a larger, tie-heavy vector.
    let scores: Vec<f32> = (0..1000).map(|i| ((i * 7919) % 97) as f32 / 7.0).collect();
    let mut expected: Vec<usize> = (0..scores.len()).collect();
    expected.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    for k in [1, 10, 96, 97, 98, 1000] {
        assert_eq!(deterministic(&scores, k).indices(), expected[..k]);
    }
    let r = deterministic(&FIXTURE, 3);
    assert!(r.slots.iter().all(|s| s.p_conditional == 1.0
        && s.log_p_cascade == 0.0
        && s.p_item_position == Some(1.0)));
    assert_eq!(r.log_propensity, 0.0);
}

// ---- 2. invariants ---------------------------------------------------------------------------

#[test]
fn every_policy_returns_k_distinct_valid_items_reproducibly() {
    for policy in all_policies() {
        for seed in 0..1000 {
            for k in [1, 3, 5] {
                let r = draw(policy, &FIXTURE, k, seed);
                let ids = r.indices();
                assert_eq!(ids.len(), k, "{policy:?}");
                let mut sorted = ids.clone();
                sorted.sort_unstable();
                sorted.dedup();
                assert_eq!(sorted.len(), k, "{policy:?} repeated an item: {ids:?}");
                assert!(ids.iter().all(|&i| i < FIXTURE.len()));
                assert_eq!(r, draw(policy, &FIXTURE, k, seed), "{policy:?} seed {seed}");
                assert!(r.log_propensity.is_finite() && r.log_propensity <= 1e-12);
                let mut cascade = 0.0;
                for s in &r.slots {
                    assert!(s.p_conditional > 0.0 && s.p_conditional <= 1.0 + 1e-12);
                    cascade += s.p_conditional.ln();
                    assert!((cascade - s.log_p_cascade).abs() < 1e-9);
                }
                assert_eq!(
                    r.slots.last().map(|s| s.log_p_cascade),
                    Some(r.log_propensity)
                );
            }
        }
        // k > n gives n items (the request layer rejects it first); k = 0 gives none.
        assert_eq!(draw(policy, &FIXTURE, 9, 1).slots.len(), 5);
        assert!(draw(policy, &FIXTURE, 0, 1).slots.is_empty());
        assert_eq!(draw(policy, &FIXTURE, 0, 1).log_propensity, 0.0);
    }
}

#[test]
fn different_seeds_give_different_stochastic_lists() {
    for policy in &all_policies()[1..] {
        let lists = sample_lists(*policy, &FIXTURE, 5, 200, 7);
        assert!(lists.len() > 1, "{policy:?} ignored its seed");
    }
}

// ---- 3. PL first-position marginal -------------------------------------------------------------

#[test]
fn pl_first_position_marginal_is_softmax_at_each_temperature() {
    let table = [
        (1.0, [0.563021, 0.207124, 0.125627, 0.076197, 0.028031]),
        (0.5, [0.829245, 0.112226, 0.041286, 0.015188, 0.002055]),
        (2.0, [0.374545, 0.227173, 0.176922, 0.137787, 0.083572]),
    ];
    for (p_index, make) in PL_POLICIES.iter().enumerate() {
        for (t, expected) in table {
            let policy = make(t);
            let counts = sample_lists(policy, &FIXTURE, 1, N, 1_000 * p_index as u64);
            let first = first_position_counts(&counts, 5);
            let x2 = chi_square(&first, &expected, N);
            assert!(x2 < CHI2_DF4, "{policy:?}: X² = {x2}");
            for (i, (&o, &p)) in first.iter().zip(&expected).enumerate() {
                assert_within_6_sigma(o, p, N, &format!("{policy:?} item {i}"));
            }
        }
    }
}

// ---- 4. PL top-2 joint ------------------------------------------------------------------------

#[test]
fn pl_top2_joint_matches_exact_distribution() {
    let expected: Vec<f64> = TOP2.iter().map(|(_, p)| *p).collect();
    for (p_index, make) in PL_POLICIES.iter().enumerate() {
        let policy = make(1.0);
        let counts = sample_lists(policy, &FIXTURE, 2, N, 50_000_000 + p_index as u64 * N);
        let observed = top2_counts(&counts);
        assert_eq!(observed.iter().sum::<u64>(), N);
        let x2 = chi_square(&observed, &expected, N);
        assert!(x2 < CHI2_DF19, "{policy:?}: X² = {x2}");
    }
}

// ---- 5. PL pairwise order ---------------------------------------------------------------------

#[test]
fn pl_pairwise_order_in_full_ranking() {
    let pairs = [
        ((0, 1), 0.731059),
        ((1, 2), 0.622459),
        ((0, 4), 0.952574),
        ((3, 4), 0.731059),
    ];
    for (p_index, make) in PL_POLICIES.iter().enumerate() {
        let policy = make(1.0);
        let counts = sample_lists(policy, &FIXTURE, 5, N, 90_000_000 + p_index as u64 * N);
        for ((a, b), p) in pairs {
            let before: u64 = counts
                .iter()
                .filter(|(list, _)| {
                    list.iter().position(|&x| x == a) < list.iter().position(|&x| x == b)
                })
                .map(|(_, c)| c)
                .sum();
            let p_hat = before as f64 / N as f64;
            assert!(
                (p_hat - p).abs() < 0.01,
                "{policy:?} P({a} before {b}) = {p_hat}"
            );
        }
    }
}

// ---- 6. Gumbel-top-k against the sequential sampler ------------------------------------------

#[test]
fn gumbel_and_sequential_pl_are_homogeneous_on_top2_cells() {
    let seq = top2_counts(&sample_lists(
        Policy::PlackettLuce { temperature: 1.0 },
        &FIXTURE,
        2,
        N,
        123_000_000,
    ));
    let gum = top2_counts(&sample_lists(
        Policy::GumbelTopK { temperature: 1.0 },
        &FIXTURE,
        2,
        N,
        456_000_000,
    ));
    // Two samples of equal size: X² = Σ (a − b)² / (a + b), df = cells − 1.
    let x2: f64 = seq
        .iter()
        .zip(&gum)
        .map(|(&a, &b)| (a as f64 - b as f64).powi(2) / (a + b) as f64)
        .sum();
    assert!(x2 < CHI2_DF19, "X² = {x2}");
}

#[test]
fn gumbel_noise_has_the_standard_moments() {
    let mut rng = ChaCha8Rng::seed_from_u64(2024);
    let n = 1_000_000;
    let draws: Vec<f64> = (0..n).map(|_| gumbel(&mut rng)).collect();
    assert!(draws.iter().all(|g| g.is_finite()));
    let mean = draws.iter().sum::<f64>() / n as f64;
    let var = draws.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / n as f64;
    let below_zero = draws.iter().filter(|g| **g <= 0.0).count() as f64 / n as f64;
    let below_median = draws.iter().filter(|g| **g <= 0.366513).count() as f64 / n as f64;
    assert!((mean - 0.577216).abs() < 0.01, "mean {mean}");
    assert!((var - 1.644934).abs() < 0.01, "variance {var}");
    assert!(
        (below_zero - 0.367879).abs() < 0.01,
        "P(G ≤ 0) {below_zero}"
    );
    assert!(
        (below_median - 0.5).abs() < 0.01,
        "P(G ≤ median) {below_median}"
    );
}

// ---- 7. propensity function --------------------------------------------------------------------

/// Log-probability of `list` through the serving code path (the same `PlState` the samplers log).
fn served_log_probability(scores: &[f32], t: f64, list: &[usize]) -> f64 {
    let mut state = PlState::new(scores, t).expect("finite logits");
    list.iter().map(|&i| state.take(scores, i)).sum()
}

#[test]
fn pl_list_probabilities_are_exact() {
    let cases: [(&[usize], f64, f64); 6] = [
        (&[0, 1], 1.0, 0.2668669101),
        (&[0, 1, 2], 1.0, 0.1458559462),
        (&[0, 1, 2, 3, 4], 1.0, 0.1066292407),
        (&[4, 3, 2], 1.0, 3.081841e-4),
        (&[0, 1, 2], 0.5, 0.3844394718),
        (&[0, 1, 2], 2.0, 0.0604305629),
    ];
    for (list, t, p) in cases {
        let reference = plackett_luce_log_probability(&FIXTURE, t, list).exp();
        let served = served_log_probability(&FIXTURE, t, list).exp();
        assert!((reference - p).abs() < 1e-9, "{list:?} T={t}: {reference}");
        assert!(
            (served - reference).abs() < 1e-12,
            "{list:?} T={t}: {served}"
        );
    }
    let log_p = plackett_luce_log_probability(&FIXTURE, 1.0, &[0, 1, 2]);
    assert!((log_p - -1.9251358141).abs() < 1e-9);
}

fn all_ordered_lists(n: usize, k: usize) -> Vec<Vec<usize>> {
    let mut out = vec![Vec::new()];
    for _ in 0..k {
        out = out
            .into_iter()
            .flat_map(|prefix: Vec<usize>| {
                (0..n)
                    .filter(|i| !prefix.contains(i))
                    .map(|i| {
                        let mut l = prefix.clone();
                        l.push(i);
                        l
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
    }
    out
}

#[test]
fn propensities_sum_to_one_over_all_top3_lists() {
    let lists = all_ordered_lists(5, 3);
    assert_eq!(lists.len(), 60);
    for t in [0.5, 1.0, 2.0] {
        let reference: f64 = lists
            .iter()
            .map(|l| plackett_luce_log_probability(&FIXTURE, t, l).exp())
            .sum();
        let served: f64 = lists
            .iter()
            .map(|l| served_log_probability(&FIXTURE, t, l).exp())
            .sum();
        assert!((reference - 1.0).abs() < 1e-12, "T={t}: {reference}");
        assert!((served - 1.0).abs() < 1e-12, "T={t}: {served}");
    }
    // Full rankings too (all 120 permutations).
    let full = all_ordered_lists(5, 5);
    let total: f64 = full
        .iter()
        .map(|l| served_log_probability(&FIXTURE, 1.0, l).exp())
        .sum();
    assert!((total - 1.0).abs() < 1e-12, "{total}");
    let greedy = top_k_by_key(&FIXTURE, 3);
    for epsilon in [0.0, 0.1, 0.5, 1.0] {
        let total: f64 = lists
            .iter()
            .map(|l| {
                whole_list_ranking(l, &greedy, 5, epsilon, false)
                    .log_propensity
                    .exp()
            })
            .sum();
        assert!((total - 1.0).abs() < 1e-12, "ε={epsilon}: {total}");
    }
}

#[test]
fn logged_propensity_equals_recomputed_pl_probability() {
    for make in PL_POLICIES {
        for t in [0.5, 1.0, 2.0] {
            let policy = make(t);
            for seed in 0..500 {
                for k in [1, 3, 5] {
                    let r = draw(policy, &FIXTURE, k, seed);
                    let expected = plackett_luce_log_probability(&FIXTURE, t, &r.indices());
                    assert!(
                        (r.log_propensity - expected).abs() < 1e-12,
                        "{policy:?} seed {seed}: {} vs {expected}",
                        r.log_propensity
                    );
                    for (j, slot) in r.slots.iter().enumerate() {
                        let prefix = plackett_luce_log_probability(&FIXTURE, t, &r.indices()[..=j]);
                        assert!((slot.log_p_cascade - prefix).abs() < 1e-12);
                    }
                    let lse = r.log_normalizer.expect("PL logs its normalizer");
                    let direct = FIXTURE
                        .iter()
                        .map(|&s| (f64::from(s) / t).exp())
                        .sum::<f64>()
                        .ln();
                    assert!((lse - direct).abs() < 1e-12);
                }
            }
        }
    }
}

// ---- 8. ε-greedy -----------------------------------------------------------------------------

#[test]
fn epsilon_greedy_whole_list_matches_reference() {
    let policy = Policy::EpsilonGreedy { epsilon: 0.1 };
    let mut counts: HashMap<Vec<usize>, u64> = HashMap::new();
    let mut explored_lists = 0;
    let mut positions = [[0u64; 5]; 3];
    let mut rng = ChaCha8Rng::seed_from_u64(777);
    for _ in 0..N {
        let r = rank(policy, &FIXTURE, 3, &mut rng).expect("rank");
        let flags: Vec<bool> = r.slots.iter().map(|s| s.explored == Some(true)).collect();
        assert!(
            flags.iter().all(|f| *f == flags[0]),
            "whole-list flag differs per slot"
        );
        explored_lists += u64::from(flags[0]);
        for (j, s) in r.slots.iter().enumerate() {
            positions[j][s.index] += 1;
        }
        // Logged propensity equals the closed form for this list.
        let closed = whole_list_ranking(&r.indices(), &[0, 1, 2], 5, 0.1, flags[0]);
        assert!((closed.log_propensity - r.log_propensity).abs() < 1e-12);
        *counts.entry(r.indices()).or_insert(0) += 1;
    }
    let p = |l: &[usize]| counts.get(l).copied().unwrap_or(0) as f64 / N as f64;
    assert!(
        (p(&[0, 1, 2]) - 0.901667).abs() < 0.005,
        "{}",
        p(&[0, 1, 2])
    );
    assert!((p(&[1, 0, 2]) - 0.001667).abs() < 0.001);
    assert!((p(&[1, 2, 3]) - 0.001667).abs() < 0.001);
    assert!((explored_lists as f64 / N as f64 - 0.1).abs() < 0.005);
    let marginals = [
        [0.92, 0.02, 0.02, 0.02, 0.02],
        [0.02, 0.92, 0.02, 0.02, 0.02],
        [0.02, 0.02, 0.92, 0.02, 0.02],
    ];
    for j in 0..3 {
        for i in 0..5 {
            let p_hat = positions[j][i] as f64 / N as f64;
            assert!(
                (p_hat - marginals[j][i]).abs() < 0.005,
                "pos {j} item {i}: {p_hat}"
            );
        }
    }
    // Logged fields of the greedy list, exactly.
    let greedy = whole_list_ranking(&[0, 1, 2], &[0, 1, 2], 5, 0.1, false);
    assert!((greedy.log_propensity.exp() - (0.9 + 0.1 / 60.0)).abs() < 1e-12);
    assert!(
        greedy
            .slots
            .iter()
            .all(|s| (s.p_item_position.unwrap_or(0.0) - 0.92).abs() < 1e-12)
    );
    let off = whole_list_ranking(&[1, 0, 2], &[0, 1, 2], 5, 0.1, true);
    assert!((off.log_propensity.exp() - 0.1 / 60.0).abs() < 1e-15);
    assert_eq!(off.slots[0].p_item_position, Some(0.02));
    assert!((off.slots[2].p_item_position.unwrap_or(0.0) - 0.92).abs() < 1e-12);
}

#[test]
fn epsilon_zero_is_deterministic_and_one_is_uniform() {
    for seed in 0..1000 {
        let r = draw(Policy::EpsilonGreedy { epsilon: 0.0 }, &FIXTURE, 3, seed);
        assert_eq!(r.indices(), [0, 1, 2]);
        assert_eq!(r.log_propensity, 0.0);
        assert!(r.slots.iter().all(|s| s.explored == Some(false)));
    }
    let counts = sample_lists(Policy::EpsilonGreedy { epsilon: 1.0 }, &FIXTURE, 3, N, 31);
    let first = first_position_counts(&counts, 5);
    let x2 = chi_square(&first, &[0.2; 5], N);
    assert!(x2 < CHI2_DF4, "X² = {x2}");
    // All 60 ordered lists are equally likely: each logs log(1/60).
    let r = draw(Policy::EpsilonGreedy { epsilon: 1.0 }, &FIXTURE, 3, 5);
    assert!((r.log_propensity - (1.0_f64 / 60.0).ln()).abs() < 1e-12);
}

// ---- 9. numerical stability -------------------------------------------------------------------

#[test]
fn extreme_scores_stay_finite_and_exact() {
    let scores = [1000.0_f32, 999.0, 998.0, 0.0, -1000.0];
    let reference = plackett_luce_log_probability(&scores, 1.0, &[3]);
    assert!((reference - -1000.407606).abs() < 1e-6);
    for make in PL_POLICIES {
        let policy = make(1.0);
        let counts = sample_lists(policy, &scores, 1, 10_000, 99);
        let first = first_position_counts(&counts, 5);
        assert_eq!(first[3] + first[4], 0, "{policy:?}");
        let p0 = first[0] as f64 / 10_000.0;
        assert!((p0 - 0.665241).abs() < 0.03, "{policy:?}: {p0}");
        for seed in 0..200 {
            let r = draw(policy, &scores, 5, seed);
            let lse = r.log_normalizer.expect("normalizer");
            assert!((lse - 1000.407606).abs() < 1e-6);
            assert!(r.log_propensity.is_finite(), "{policy:?}");
            let expected = plackett_luce_log_probability(&scores, 1.0, &r.indices());
            assert!((r.log_propensity - expected).abs() < 1e-9, "{policy:?}");
            assert!(
                r.slots
                    .iter()
                    .all(|s| s.p_conditional.is_finite() && s.log_p_cascade.is_finite())
            );
        }
    }
    // Logged probability of a list that puts item 3 first (e.g. served by another policy).
    let served = served_log_probability(&scores, 1.0, &[3, 4, 0]);
    let expected = plackett_luce_log_probability(&scores, 1.0, &[3, 4, 0]);
    assert!((served - expected).abs() < 1e-9 && served.is_finite());
}

#[test]
fn tiny_temperature_overflow_is_an_error_not_a_nan() {
    let scores = [3.0e38_f32, 1.0];
    let err = rank(
        Policy::PlackettLuce {
            temperature: 1e-300,
        },
        &scores,
        1,
        &mut ChaCha8Rng::seed_from_u64(1),
    );
    assert!(matches!(err, Err(PolicyError::LogitOverflow { .. })));
    // A small but workable temperature is effectively deterministic, and finite.
    let r = draw(Policy::GumbelTopK { temperature: 1e-3 }, &FIXTURE, 5, 3);
    assert_eq!(r.indices(), [0, 1, 2, 3, 4]);
    assert!(r.log_propensity.is_finite());
}

#[test]
fn items_far_below_the_top_keep_their_relative_odds() {
    // exp(−800) underflows f64: these items are raced in log space and sampled by re-shifted
    // weights; their relative PL odds must survive. Item 0 is first with probability ≈ 1; the second
    // slot is softmax([−800, −801, −802] − max) = [0.665241, 0.244728, 0.090031] over items 1..3.
    let scores = [0.0_f32, -800.0, -801.0, -802.0];
    let expected = [0.665241, 0.244728, 0.090031];
    let chi2_df2 = 18.421; // α = 1e-4
    let n = 20_000;
    for make in PL_POLICIES {
        let policy = make(1.0);
        let counts = sample_lists(policy, &scores, 4, n, 4242);
        let mut second = [0_u64; 3];
        for (list, c) in &counts {
            assert_eq!(list[0], 0, "{policy:?}");
            second[list[1] - 1] += c;
        }
        let x2 = chi_square(&second, &expected, n);
        assert!(x2 < chi2_df2, "{policy:?}: X² = {x2}, {second:?}");
        for (list, _) in counts {
            let r = plackett_luce_log_probability(&scores, 1.0, &list);
            assert!(r.is_finite());
        }
    }
}

// ---- positions handed out one at a time ---------------------------------------------------------

#[test]
fn rankings_in_progress_at_once_on_one_thread_match_their_solo_runs() {
    // Three catalogues: 50 and 40 items share a tree size (64 leaves), so a tree handed from one
    // to the other carries leaves the next must clear; 700 items needs a larger tree.
    let wave =
        |n: usize, f: f32| -> Vec<f32> { (0..n).map(|i| (i as f32 * f).sin() * 3.0).collect() };
    let catalogues = [wave(50, 0.37), wave(40, 0.11), wave(700, 0.013)];
    let k = 30;
    for policy in [
        Policy::PlackettLuce { temperature: 0.7 },
        Policy::GumbelTopK { temperature: 0.7 },
        Policy::EpsilonGreedy { epsilon: 0.5 },
    ] {
        for seed in 0..20 {
            let solo: Vec<Ranking> = catalogues
                .iter()
                .map(|s| draw(policy, s, k, seed))
                .collect();
            let mut rngs: Vec<ChaCha8Rng> =
                (0..3).map(|_| ChaCha8Rng::seed_from_u64(seed)).collect();
            let mut open: Vec<Draws<&[f32]>> = catalogues
                .iter()
                .zip(&mut rngs)
                .map(|(s, rng)| Draws::start(policy, &s[..], k, rng).expect("finite"))
                .collect();
            let mut slots: Vec<Vec<Slot>> = vec![Vec::new(); 3];
            for _ in 0..k {
                for (j, d) in open.iter_mut().enumerate() {
                    slots[j].extend(d.next_slot(&mut rngs[j]));
                }
                // A buffered ranking in between, on whichever tree is spare now.
                assert_eq!(draw(policy, &catalogues[1], k, seed), solo[1]);
            }
            for (j, d) in open.iter().enumerate() {
                assert_eq!(
                    slots[j], solo[j].slots,
                    "{policy:?} seed {seed} catalogue {j}"
                );
                assert_eq!(d.log_propensity(), solo[j].log_propensity);
                assert_eq!(d.log_normalizer(), solo[j].log_normalizer);
            }
            // Handing the 50-item tree back, then ranking 40 items on it.
            drop(open);
            assert_eq!(draw(policy, &catalogues[1], k, seed), solo[1]);
        }
    }
}

#[test]
fn a_ranking_hands_out_min_k_n_positions_then_none() {
    for policy in all_policies() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut d = Draws::start(policy, &FIXTURE[..], 9, &mut rng).expect("finite");
        let slots: Vec<Slot> = std::iter::from_fn(|| d.next_slot(&mut rng)).collect();
        assert_eq!(slots.len(), FIXTURE.len(), "{policy:?}");
        assert!(d.next_slot(&mut rng).is_none());
        assert_eq!(d.log_propensity(), slots[4].log_p_cascade);
        let mut none = Draws::start(policy, &[][..], 3, &mut rng).expect("empty");
        assert!(none.next_slot(&mut rng).is_none(), "{policy:?}");
        assert_eq!((none.log_propensity(), none.log_normalizer()), (0.0, None));
    }
}
