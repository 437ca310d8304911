//! The hot loops of a request, compiled for the CPU the server runs on: scoring (f32, f16 and int8
//! item embeddings), Plackett–Luce weights (a vectorisable `exp`), and the top-k scan.
//!
//! Place in the pipeline: called by `model` (scoring) and `policy` (weights, top-k).
//!
//! How: [`pulp`] detects the instruction set once (x86-64-v3: AVX2 + FMA; aarch64: NEON) and runs
//! each kernel inside a function compiled for it, behind a safe API (the workspace forbids
//! `unsafe`). The kernels are plain Rust written so that LLVM vectorises them at that width.
//!
//! Invariants:
//! - **The same bits on every CPU.** A dot product accumulates in sixteen f32 lanes
//!   (`lane = index mod 16`), with separate multiply and add (no FMA, whose single rounding the
//!   scalar fallback cannot reproduce cheaply) and a fixed pairwise reduction. AVX2, SSE2, NEON and
//!   scalar code therefore produce identical scores, so a logged seed replays the same ranking on
//!   any machine, and the served score is exactly the one the propensities were computed from.
//! - [`exp_nonpositive`] is within 2 ulp of `f64::exp` on `[-708, 0]` and 0 below (see its test);
//!   weights below `e^-708` are never needed exactly (the samplers re-shift before they would be).

use std::sync::LazyLock;

use pulp::{Arch, Simd, WithSimd};

/// The instruction set detected once at first use.
static ARCH: LazyLock<Arch> = LazyLock::new(Arch::new);

/// Lanes of f32 accumulators in a dot product (fixed, so results do not depend on the CPU).
const LANES: usize = 16;

/// `x` for `<user, item>` scoring: how the item rows are stored.
#[derive(Debug, Clone, Copy)]
pub enum Rows<'a> {
    /// Row-major f32.
    F32(&'a [f32]),
    /// Row-major IEEE binary16, as raw bits.
    F16(&'a [u16]),
    /// Row-major int8 with one f32 scale per row: item = scale · q.
    I8 { values: &'a [i8], scales: &'a [f32] },
}

/// Writes `<user, row_i>` into `out[i]` for every row (`out.len()` rows of `dim` values; a user
/// shorter than `dim` counts as zero-padded).
pub fn score(rows: Rows<'_>, dim: usize, user: &[f32], out: &mut [f32]) {
    ARCH.dispatch(Score {
        rows,
        dim: dim.max(1),
        user,
        out,
    });
}

struct Score<'a> {
    rows: Rows<'a>,
    dim: usize,
    user: &'a [f32],
    out: &'a mut [f32],
}

impl WithSimd for Score<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let Score {
            rows,
            dim,
            user,
            out,
        } = self;
        // The explicit-SIMD kernel needs whole 16-lane groups (every common dimension: 32, 64,
        // 128…); other dimensions take the scalar kernel, which sums in the same order.
        let explicit = dim % LANES == 0 && user.len() == dim && LANES.is_multiple_of(S::F32_LANES);
        let row_dot = |row: &[f32]| {
            if explicit {
                dot_simd(simd, user, row)
            } else {
                dot(user, row, |x| x)
            }
        };
        match rows {
            Rows::F32(values) => {
                if explicit && S::as_simd_f32s(user).0.len() == 8 {
                    // The common shape (64 dims on AVX2, 32 on NEON): the user's eight vectors
                    // stay in registers across rows.
                    score_eight(simd, user, values, out);
                } else {
                    for (o, row) in out.iter_mut().zip(values.chunks_exact(dim)) {
                        *o = row_dot(row);
                    }
                }
            }
            Rows::F16(values) => {
                // Widen a block of rows at a time (an elementwise loop, which vectorises), then
                // run the f32 kernel on it from L1.
                let mut block = vec![0.0_f32; dim * BLOCK_ROWS];
                for (outs, rows) in out
                    .chunks_mut(BLOCK_ROWS)
                    .zip(values.chunks(dim * BLOCK_ROWS))
                {
                    let block = &mut block[..rows.len()];
                    for (b, &h) in block.iter_mut().zip(rows) {
                        *b = f16_to_f32(h);
                    }
                    for (o, row) in outs.iter_mut().zip(block.chunks_exact(dim)) {
                        *o = row_dot(row);
                    }
                }
            }
            Rows::I8 { values, scales } => {
                let mut block = vec![0.0_f32; dim * BLOCK_ROWS];
                let blocks = out.chunks_mut(BLOCK_ROWS).zip(scales.chunks(BLOCK_ROWS));
                for ((outs, scales), rows) in blocks.zip(values.chunks(dim * BLOCK_ROWS)) {
                    let block = &mut block[..rows.len()];
                    for (b, &q) in block.iter_mut().zip(rows) {
                        *b = f32::from(q);
                    }
                    for ((o, row), scale) in
                        outs.iter_mut().zip(block.chunks_exact(dim)).zip(scales)
                    {
                        *o = row_dot(row) * scale;
                    }
                }
            }
        }
    }
}

/// [`dot_simd`] for every row when the user is exactly eight vectors, with those vectors loaded
/// once: the same lanes, the same order of additions, so the same bits.
#[inline(always)]
fn score_eight<S: Simd + 'static>(simd: S, user: &[f32], rows: &[f32], out: &mut [f32]) {
    let (u, _) = S::as_simd_f32s(user);
    let Ok(u) = <[S::f32s; 8]>::try_from(u) else {
        return;
    };
    let groups = LANES / S::F32_LANES;
    let dim = user.len();
    let zero = simd.splat_f32s(0.0);
    for (o, row) in out.iter_mut().zip(rows.chunks_exact(dim)) {
        let (r, _) = S::as_simd_f32s(row);
        let mut acc = [zero; LANES];
        for (i, (&x, &y)) in u.iter().zip(r).enumerate() {
            acc[i % groups] = simd.add_f32s(acc[i % groups], simd.mul_f32s(x, y));
        }
        *o = finish(simd, acc, groups);
    }
}

/// Rows widened per block for f16 and int8 scoring.
const BLOCK_ROWS: usize = 32;

/// [`dot`] with explicit vectors: the sixteen lanes are `16 / L` vectors of `L` lanes, element `i`
/// always lands in lane `i mod 16`, and the reduction folds vectors pairwise (16 → 8 → … lanes)
/// before the last vector's lanes are folded the same way — bit-identical to [`dot`].
/// Needs `a.len() == b.len()`, a multiple of 16, and `L` dividing 16.
#[inline(always)]
fn dot_simd<S: Simd + 'static>(simd: S, a: &[f32], b: &[f32]) -> f32 {
    let groups = LANES / S::F32_LANES;
    let (a, _) = S::as_simd_f32s(a);
    let (b, _) = S::as_simd_f32s(b);
    let zero = simd.splat_f32s(0.0);
    let mut acc = [zero; LANES];
    for (ca, cb) in a.chunks_exact(groups).zip(b.chunks_exact(groups)) {
        for g in 0..groups {
            acc[g] = simd.add_f32s(acc[g], simd.mul_f32s(ca[g], cb[g]));
        }
    }
    finish(simd, acc, groups)
}

/// The fixed reduction of [`dot_simd`]'s accumulators: vectors pairwise (16 → 8 → … lanes), then
/// the last vector's lanes the same way.
#[inline(always)]
fn finish<S: Simd + 'static>(simd: S, mut acc: [S::f32s; LANES], groups: usize) -> f32 {
    let mut width = groups;
    while width > 1 {
        width /= 2;
        for g in 0..width {
            acc[g] = simd.add_f32s(acc[g], acc[g + width]);
        }
    }
    #[cfg(target_arch = "x86_64")]
    if std::any::TypeId::of::<S>() == std::any::TypeId::of::<pulp::x86::V3>() {
        // x86-64-v3's reduction is (lo + hi), then (l, l + 2), then (0, 1): the same pairs,
        // in three vector instructions (tested against the portable sum).
        return simd.reduce_sum_f32s(acc[0]);
    }
    let mut lanes = [0.0_f32; LANES];
    let last: &[f32] = bytemuck::cast_slice(std::slice::from_ref(&acc[0]));
    lanes[..last.len()].copy_from_slice(last);
    let mut width = last.len();
    while width > 1 {
        width /= 2;
        for l in 0..width {
            lanes[l] += lanes[l + width];
        }
    }
    lanes[0]
}

/// `Σ a_i · widen(b_i)` in sixteen f32 lanes with a fixed reduction order: the portable kernel,
/// and the definition the vector kernel must match bit for bit.
#[inline(always)]
pub fn dot<T: Copy>(a: &[f32], b: &[T], widen: impl Fn(T) -> f32) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let (a16, a_rest) = a.as_chunks::<LANES>();
    let (b16, b_rest) = b.as_chunks::<LANES>();
    let mut acc = [0.0_f32; LANES];
    for (ca, cb) in a16.iter().zip(b16) {
        for l in 0..LANES {
            acc[l] += ca[l] * widen(cb[l]);
        }
    }
    for (l, (x, y)) in a_rest.iter().zip(b_rest).enumerate() {
        acc[l] += x * widen(*y);
    }
    // Pairwise: 16 → 8 → 4 → 2 → 1, the same order on every instruction set.
    let s8: [f32; 8] = std::array::from_fn(|l| acc[l] + acc[l + 8]);
    let s4: [f32; 4] = std::array::from_fn(|l| s8[l] + s8[l + 4]);
    (s4[0] + s4[2]) + (s4[1] + s4[3])
}

/// IEEE binary16 bits → f32, exactly, for finite values (the loader refuses inf and NaN): the
/// exponent and mantissa move into f32 position and one multiplication by 2^112 rebiases the
/// exponent, subnormals included. Branch-free, so it vectorises.
#[inline(always)]
pub fn f16_to_f32(h: u16) -> f32 {
    let h = u32::from(h);
    let magnitude = f32::from_bits((h & 0x7fff) << 13) * f32::from_bits(0x7780_0000); // 2^112
    f32::from_bits(magnitude.to_bits() | ((h & 0x8000) << 16))
}

/// `Σ w_i` after writing `w_i = exp(scores_i / temperature − shift)` into `weights` (same length).
pub fn weights(scores: &[f32], temperature: f64, shift: f64, weights: &mut [f64]) -> f64 {
    ARCH.dispatch(Weights {
        scores,
        temperature,
        shift,
        weights,
    })
}

struct Weights<'a> {
    scores: &'a [f32],
    temperature: f64,
    shift: f64,
    weights: &'a mut [f64],
}

impl WithSimd for Weights<'_> {
    type Output = f64;

    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) -> f64 {
        let Weights {
            scores,
            temperature,
            shift,
            weights,
        } = self;
        // Two elementwise passes (logits, then exp): simple maps are what LLVM vectorises reliably.
        // Dividing by a power of two (T = 1, 0.5, 2, …) is multiplying by its exact reciprocal:
        // the same bits, without the slow vector division.
        let recip = 1.0 / temperature;
        if recip * temperature == 1.0 && recip.to_bits() & ((1 << 52) - 1) == 0 {
            for (w, &s) in weights.iter_mut().zip(scores) {
                *w = f64::from(s) * recip - shift;
            }
        } else {
            for (w, &s) in weights.iter_mut().zip(scores) {
                *w = f64::from(s) / temperature - shift;
            }
        }
        for w in weights.iter_mut() {
            *w = exp_nonpositive(*w);
        }
        // Four partial sums: vectorisable and deterministic.
        let (w4, rest) = weights.as_chunks::<4>();
        let mut acc = [0.0_f64; 4];
        for c in w4 {
            for l in 0..4 {
                acc[l] += c[l];
            }
        }
        (acc[0] + acc[2]) + (acc[1] + acc[3]) + rest.iter().sum::<f64>()
    }
}

/// The smallest and largest score, or `None` for an empty slice.
pub fn min_max(scores: &[f32]) -> Option<(f32, f32)> {
    if scores.is_empty() {
        return None;
    }
    Some(ARCH.dispatch(MinMax { scores }))
}

struct MinMax<'a> {
    scores: &'a [f32],
}

impl WithSimd for MinMax<'_> {
    type Output = (f32, f32);

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> (f32, f32) {
        let (vectors, rest) = S::as_simd_f32s(self.scores);
        let mut lo = simd.splat_f32s(f32::INFINITY);
        let mut hi = simd.splat_f32s(f32::NEG_INFINITY);
        for &v in vectors {
            lo = simd.min_f32s(lo, v);
            hi = simd.max_f32s(hi, v);
        }
        rest.iter().fold(
            (simd.reduce_min_f32s(lo), simd.reduce_max_f32s(hi)),
            |(lo, hi), &x| (lo.min(x), hi.max(x)),
        )
    }
}

/// The exponential race's screen: `pass[i] = 1` unless item i provably arrives after the current
/// k-th — that is, unless its uniform's lower bound `word_i · 2⁻¹⁶` exceeds `limit · w_i / 2¹⁶`
/// (the caller passes `limit = τ·2¹⁶`). Items with a weight below `min_weight` always pass (their
/// bound is checked in log space). One vectorisable pass.
pub fn screen(weights: &[f64], words: &[u16], limit: f64, min_weight: f64, pass: &mut [u8]) {
    ARCH.dispatch(Screen {
        weights,
        words,
        limit,
        min_weight,
        pass,
    });
}

struct Screen<'a> {
    weights: &'a [f64],
    words: &'a [u16],
    limit: f64,
    min_weight: f64,
    pass: &'a mut [u8],
}

impl WithSimd for Screen<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) {
        let Screen {
            weights,
            words,
            limit,
            min_weight,
            pass,
        } = self;
        for ((p, &w), &h) in pass.iter_mut().zip(weights).zip(words) {
            // u16 → i32 → f64: conversions every vector unit has.
            let low = f64::from(i32::from(h));
            *p = u8::from((low <= limit * w) | (w < min_weight));
        }
    }
}

/// `e^x` for `x ≤ 0`, in plain arithmetic LLVM vectorises: Cody–Waite reduction `x = k·ln2 + r`,
/// `|r| ≤ ln2/2`, a degree-13 Taylor polynomial for `e^r` (truncation < 1e-17 relative), and `2^k`
/// built in the exponent bits. Below −708 (where `2^k` would leave the normal range) it returns 0.
#[inline(always)]
pub fn exp_nonpositive(x: f64) -> f64 {
    const LOG2E: f64 = std::f64::consts::LOG2_E;
    // ln 2 split so that k · LN2_HI is exact for |k| < 2^11.
    const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
    const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
    // Adding 1.5·2^52 rounds to an integer and leaves it in the low mantissa bits.
    const ROUND: f64 = 6_755_399_441_055_744.0;
    let clamped = if x >= -708.0 { x } else { -708.0 };
    let t = clamped * LOG2E + ROUND;
    let k = t - ROUND;
    let r = (clamped - k * LN2_HI) - k * LN2_LO;
    let mut p = 1.0 / 6_227_020_800.0; // 1/13!
    for c in [
        1.0 / 479_001_600.0,
        1.0 / 39_916_800.0,
        1.0 / 3_628_800.0,
        1.0 / 362_880.0,
        1.0 / 40_320.0,
        1.0 / 5_040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = p * r + c;
    }
    // t's low bits hold k (two's complement, k ∈ [−1022, 0]); shifted into the exponent field
    // and rebiased they are the bits of 2^k.
    let two_k = f64::from_bits((t.to_bits() << 52).wrapping_add(1023 << 52));
    if x >= -708.0 { p * two_k } else { 0.0 }
}

/// Indices of the `k` largest `keys`, best first; ties by index ascending. O(n + k log k).
///
/// One pass keeps a buffer of at most `2k` candidates and a threshold (the k-th best key of the
/// last compaction); a key enters only if it beats the threshold, so after the first few hundred
/// items almost every key costs one comparison. The scan checks sixteen keys at a time before
/// looking at any one of them, which vectorises.
pub fn top_k(keys: &[f32], k: usize) -> Vec<usize> {
    let k = k.min(keys.len());
    if k == 0 {
        return Vec::new();
    }
    ARCH.dispatch(TopK { keys, k })
}

struct TopK<'a> {
    keys: &'a [f32],
    k: usize,
}

impl WithSimd for TopK<'_> {
    type Output = Vec<usize>;

    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) -> Vec<usize> {
        let TopK { keys, k } = self;
        let cap = (2 * k).max(32);
        let mut buffer: Vec<(f32, usize)> = Vec::with_capacity(cap + LANES);
        let mut threshold = f32::NEG_INFINITY;
        let mut filled = false;
        let (chunks, _) = keys.as_chunks::<LANES>();
        let mut offer = |i: usize, key: f32, threshold: &mut f32, filled: &mut bool| {
            // Before the first compaction every key enters; after it, only those above the k-th
            // best so far (an equal key has a larger index, so it ranks below the k-th: out).
            if !*filled || key > *threshold {
                buffer.push((key, i));
                if buffer.len() >= cap {
                    keep_best(&mut buffer, k);
                    *threshold = buffer[k - 1].0;
                    *filled = true;
                }
            }
        };
        for (c, chunk) in chunks.iter().enumerate() {
            let any = !filled || chunk.iter().fold(false, |a, &x| a | (x > threshold));
            if any {
                for (l, &key) in chunk.iter().enumerate() {
                    offer(c * LANES + l, key, &mut threshold, &mut filled);
                }
            }
        }
        let tail = chunks.len() * LANES;
        for (i, &key) in keys.iter().enumerate().skip(tail) {
            offer(i, key, &mut threshold, &mut filled);
        }
        keep_best(&mut buffer, k);
        buffer.into_iter().map(|(_, i)| i).collect()
    }
}

/// Keeps the `k` best `(key, index)` pairs (key descending, index ascending), sorted.
fn keep_best(buffer: &mut Vec<(f32, usize)>, k: usize) {
    // IEEE order (−0 = +0), matching the scan's `>`; keys are finite, so `Equal` never stands
    // for a NaN.
    let order = |a: &(f32, usize), b: &(f32, usize)| {
        b.0.partial_cmp(&a.0)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.1.cmp(&b.1))
    };
    if buffer.len() > k {
        buffer.select_nth_unstable_by(k - 1, order);
        buffer.truncate(k);
    }
    buffer.sort_unstable_by(order);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_two_ulp_of_std_on_the_whole_range() {
        let mut worst = 0_u64;
        let mut x = -708.0_f64;
        while x <= 0.0 {
            for dx in [0.0, 1e-9, 0.123_456_789, 0.5, std::f64::consts::LN_2] {
                let v = (x + dx).min(0.0);
                let (a, b) = (exp_nonpositive(v), v.exp());
                let d = a.to_bits().abs_diff(b.to_bits());
                assert!(d <= 2, "x = {v}: {a} vs {b}");
                worst = worst.max(d);
            }
            x += 0.013;
        }
        assert!(worst <= 2, "worst error {worst} ulp");
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert_eq!(exp_nonpositive(-708.5), 0.0);
        assert_eq!(exp_nonpositive(f64::NEG_INFINITY), 0.0);
        assert_eq!(exp_nonpositive(-1e300), 0.0);
    }

    #[test]
    fn f16_conversion_is_exact_for_every_finite_value() {
        for bits in 0..=u16::MAX {
            let h = half::f16::from_bits(bits);
            if h.is_finite() {
                assert_eq!(
                    f16_to_f32(bits).to_bits(),
                    h.to_f32().to_bits(),
                    "{bits:#06x}"
                );
            }
        }
    }

    #[test]
    fn scores_are_the_same_bits_as_a_scalar_sixteen_lane_sum() {
        // The reference: the documented order, computed with no vector code at all.
        fn reference(a: &[f32], b: &[f32]) -> f32 {
            let mut acc = [0.0_f32; 16];
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                acc[i % 16] += x * y;
            }
            let s8: Vec<f32> = (0..8).map(|l| acc[l] + acc[l + 8]).collect();
            let s4: Vec<f32> = (0..4).map(|l| s8[l] + s8[l + 4]).collect();
            (s4[0] + s4[2]) + (s4[1] + s4[3])
        }
        for dim in [1, 5, 15, 16, 17, 32, 33, 64, 100, 128] {
            let user: Vec<f32> = (0..dim)
                .map(|i| ((i * 37 % 11) as f32 - 5.0) / 3.0)
                .collect();
            let items: Vec<f32> = (0..dim * 50)
                .map(|i| ((i * 7919 % 103) as f32 - 51.0) / 17.0)
                .collect();
            let mut out = vec![0.0; 50];
            score(Rows::F32(&items), dim, &user, &mut out);
            for (o, row) in out.iter().zip(items.chunks_exact(dim)) {
                assert_eq!(o.to_bits(), reference(&user, row).to_bits(), "dim {dim}");
            }
            // Every lane width pulp may dispatch to (1 = scalar, 4 = NEON/SSE, 8, 16), emulated.
            if dim % LANES == 0 {
                for row in items.chunks_exact(dim) {
                    let want = reference(&user, row).to_bits();
                    assert_eq!(dot_simd(pulp::Scalar::new(), &user, row).to_bits(), want);
                    assert_eq!(dot_simd(pulp::Scalar128b, &user, row).to_bits(), want);
                    assert_eq!(dot_simd(pulp::Scalar256b, &user, row).to_bits(), want);
                    assert_eq!(dot_simd(pulp::Scalar512b, &user, row).to_bits(), want);
                }
                // The eight-vector fast path, at the widths where the user is eight vectors.
                let mut fast = vec![0.0; 50];
                let want: Vec<u32> = items
                    .chunks_exact(dim)
                    .map(|row| reference(&user, row).to_bits())
                    .collect();
                let check =
                    |fast: &[f32]| fast.iter().map(|x| x.to_bits()).eq(want.iter().copied());
                match dim {
                    32 => score_eight(pulp::Scalar128b, &user, &items, &mut fast),
                    64 => score_eight(pulp::Scalar256b, &user, &items, &mut fast),
                    128 => score_eight(pulp::Scalar512b, &user, &items, &mut fast),
                    _ => fast.clone_from(&out),
                }
                assert!(check(&fast), "eight-vector path, dim {dim}");
            }
            // int8 rows with scales are the f32 dot product of the integers, times the scale.
            let q: Vec<i8> = (0..dim * 50).map(|i| (i * 31 % 255) as i8).collect();
            let scales: Vec<f32> = (0..50).map(|i| 0.01 * (i + 1) as f32).collect();
            score(
                Rows::I8 {
                    values: &q,
                    scales: &scales,
                },
                dim,
                &user,
                &mut out,
            );
            for ((o, row), s) in out.iter().zip(q.chunks_exact(dim)).zip(&scales) {
                let widened: Vec<f32> = row.iter().map(|&v| f32::from(v)).collect();
                assert_eq!(o.to_bits(), (reference(&user, &widened) * s).to_bits());
            }
        }
    }

    #[test]
    fn weights_sum_and_max_match_std() {
        let scores: Vec<f32> = (0..1001)
            .map(|i| ((i * 7919) % 2000) as f32 / 100.0 - 10.0)
            .collect();
        let (lo, m) = min_max(&scores).unwrap_or((f32::NAN, f32::NAN));
        assert_eq!(m, scores.iter().copied().fold(f32::MIN, f32::max));
        assert_eq!(lo, scores.iter().copied().fold(f32::MAX, f32::min));
        for t in [0.5, 1.0, 3.0] {
            let shift = f64::from(m) / t;
            let mut w = vec![0.0; scores.len()];
            let total = weights(&scores, t, shift, &mut w);
            let direct: f64 = scores
                .iter()
                .map(|&s| (f64::from(s) / t - shift).exp())
                .sum();
            assert!(
                (total - direct).abs() <= 1e-13 * direct,
                "{total} vs {direct}"
            );
        }
        assert_eq!(min_max(&[]), None);
    }

    #[test]
    fn top_k_equals_a_full_sort_with_index_tie_break() {
        // Tie-heavy keys in several orders, including ascending (every key beats the threshold).
        let base: Vec<f32> = (0..3000).map(|i| ((i * 7919) % 97) as f32 / 7.0).collect();
        let mut ascending = base.clone();
        ascending.sort_by(f32::total_cmp);
        let mut descending = ascending.clone();
        descending.reverse();
        for keys in [base, ascending, descending, vec![1.0; 100], vec![0.5]] {
            let mut expected: Vec<usize> = (0..keys.len()).collect();
            expected.sort_by(|&a, &b| keys[b].total_cmp(&keys[a]).then(a.cmp(&b)));
            for k in [1, 2, 10, 31, 33, 96, 97, 98, 100, 3000, 5000] {
                let k = k.min(keys.len());
                assert_eq!(top_k(&keys, k), expected[..k], "k {k}");
            }
            assert!(top_k(&keys, 0).is_empty());
        }
    }
}
