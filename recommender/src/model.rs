//! Model artifacts: loading, validation and scoring.
//!
//! Place in the pipeline: loaded once at start-up from `SM_MODEL_DIR`; at request time it resolves a
//! user id to an embedding row and scores every item (`score_i = <user, item_i>`, f32).
//! Input: a directory holding `model.json` (the manifest), one safetensors file and JSON sidecars —
//! the format is documented in `recommender/README.md` and [`Manifest`].
//! Output: a [`Model`] whose embeddings are all finite and whose scores cannot overflow `f32`.
//!
//! Invariants, checked at load so the request path never meets them:
//! - `user_embeddings` is `[n_users, d]` (F32 or F16), `item_embeddings` is `[n_items, d]`, n ≥ 1,
//!   d ≥ 1, in the precision the file chose: F32, F16 (half the bytes to stream per request), or I8
//!   with an `item_scales` F32 `[n_items]` tensor (a quarter; item_i = scale_i · q_i). The optional
//!   `item_popularity` is `[n_items]` F32. No other tensor names are accepted.
//! - Scores are computed in f32 from the stored values (f16 and int8 widened exactly), so the score
//!   served is the one the propensities were computed from, whatever the precision.
//! - Sidecar lengths match the tensors' rows; ids are unique and non-empty.
//! - Every value is finite, and ‖u‖·‖v‖ ≤ f32::MAX for every user (and the mean user) and item, so no
//!   dot product — nor any partial sum inside it (Cauchy–Schwarz) — can overflow (for int8 rows the
//!   unscaled ‖u‖·‖q‖ too, since the scale is applied after the sum).
//! - `version` is `<manifest version>+sha256:<16 hex>` over every artifact byte, so a changed
//!   artifact changes the served `model_version`.
//!
//! Security: manifest file names must be plain names inside the model directory (no separators,
//! no `..`), so a manifest cannot make the server read files elsewhere. No memory mapping (unsafe
//! code is forbidden): files are read into memory, which is fine at MovieLens scale (tens of MB).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail, ensure};
use safetensors::{Dtype, SafeTensors};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::simd::{self, Rows};

/// The manifest file name inside the model directory.
pub const MANIFEST_FILE: &str = "model.json";
/// The only `format` value this server reads.
pub const FORMAT: &str = "sagegate-recommender/v1";
/// Tensor names inside the safetensors file.
pub const USER_TENSOR: &str = "user_embeddings";
pub const ITEM_TENSOR: &str = "item_embeddings";
pub const POPULARITY_TENSOR: &str = "item_popularity";
/// Per-row scales of int8 item embeddings (required with I8 `item_embeddings`, refused otherwise).
pub const SCALES_TENSOR: &str = "item_scales";

/// `model.json`: what a data scientist writes next to the tensors.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always `"sagegate-recommender/v1"`.
    pub format: String,
    /// Human version label, e.g. `"mf-20240901"`; the served version appends a content hash.
    pub version: String,
    /// Safetensors file with `user_embeddings`, `item_embeddings` and optionally `item_popularity`.
    pub embeddings: String,
    /// JSON array of user id strings, row i of `user_embeddings` ↔ element i.
    pub user_ids: String,
    /// JSON array of item id strings, row i of `item_embeddings` ↔ element i.
    pub item_ids: String,
    /// JSON array of item titles, same order as `item_ids`.
    pub item_titles: String,
}

/// Where the scores of an unknown user come from (documented in the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FallbackSource {
    /// The `item_popularity` tensor of the artifact.
    PopularityTensor,
    /// `<mean user embedding, item>`: the average user's taste, a popularity proxy.
    MeanUser,
}

/// A loaded, validated model.
#[derive(Debug)]
pub struct Model {
    /// Served model version: manifest version + content hash.
    pub version: Arc<str>,
    /// Embedding dimension d.
    pub dim: usize,
    user_rows: HashMap<String, usize>,
    user_embeddings: Vec<f32>,
    item_ids: Vec<String>,
    item_titles: Vec<String>,
    item_embeddings: ItemRows,
    fallback_scores: Arc<[f32]>,
    fallback_source: FallbackSource,
}

/// The stored precision of the item embeddings, chosen by the artifact's safetensors dtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    F32,
    F16,
    Int8,
}

impl Precision {
    /// As logged: `f32`, `f16`, `int8`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Int8 => "int8",
        }
    }
}

/// Item embeddings as stored: row-major `[n_items, d]`.
#[derive(Debug)]
enum ItemRows {
    F32(Vec<f32>),
    /// IEEE binary16 bits.
    F16(Vec<u16>),
    /// item_i = scales[i] · values[i·d..(i+1)·d].
    I8 {
        values: Vec<i8>,
        scales: Vec<f32>,
    },
}

impl ItemRows {
    fn rows(&self) -> Rows<'_> {
        match self {
            ItemRows::F32(v) => Rows::F32(v),
            ItemRows::F16(v) => Rows::F16(v),
            ItemRows::I8 { values, scales } => Rows::I8 { values, scales },
        }
    }

    /// The largest row norm of the widened values (before scaling, for int8) and after scaling.
    fn max_norms(&self, dim: usize) -> (f64, f64) {
        let sq = |it: &mut dyn Iterator<Item = f32>| {
            it.map(|x| f64::from(x) * f64::from(x)).sum::<f64>().sqrt()
        };
        match self {
            ItemRows::F32(v) => {
                let m = v.chunks_exact(dim).map(norm).fold(0.0, f64::max);
                (m, m)
            }
            ItemRows::F16(v) => {
                let m = v
                    .chunks_exact(dim)
                    .map(|r| sq(&mut r.iter().map(|&h| simd::f16_to_f32(h))))
                    .fold(0.0, f64::max);
                (m, m)
            }
            ItemRows::I8 { values, scales } => {
                values
                    .chunks_exact(dim)
                    .zip(scales)
                    .fold((0.0, 0.0), |(raw, scaled), (r, &s)| {
                        let n = sq(&mut r.iter().map(|&q| f32::from(q)));
                        (f64::max(raw, n), f64::max(scaled, n * f64::from(s)))
                    })
            }
        }
    }
}

/// A resolved user: a known embedding row, or the documented fallback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserRef {
    Known(usize),
    Unknown,
}

impl Model {
    /// Loads and validates the model in `dir`; every error names the file it concerns.
    pub fn load(dir: &Path) -> anyhow::Result<Model> {
        let manifest_path = dir.join(MANIFEST_FILE);
        let manifest_bytes = read(&manifest_path)?;
        let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
            .with_context(|| format!("{}: invalid manifest", manifest_path.display()))?;
        ensure!(
            manifest.format == FORMAT,
            "{}: format: expected \"{FORMAT}\", got \"{}\"",
            manifest_path.display(),
            manifest.format
        );

        let mut hasher = Sha256::new();
        hash_part(&mut hasher, MANIFEST_FILE, &manifest_bytes);

        let tensors_path = artifact_path(dir, &manifest_path, "embeddings", &manifest.embeddings)?;
        let tensor_bytes = read(&tensors_path)?;
        hash_part(&mut hasher, &manifest.embeddings, &tensor_bytes);
        let tensors = Tensors::parse(&tensors_path, &tensor_bytes)?;

        let user_ids_path = artifact_path(dir, &manifest_path, "user_ids", &manifest.user_ids)?;
        let item_ids_path = artifact_path(dir, &manifest_path, "item_ids", &manifest.item_ids)?;
        let titles_path = artifact_path(dir, &manifest_path, "item_titles", &manifest.item_titles)?;
        let (user_ids, bytes) = read_strings(&user_ids_path)?;
        hash_part(&mut hasher, &manifest.user_ids, &bytes);
        let (item_ids, bytes) = read_strings(&item_ids_path)?;
        hash_part(&mut hasher, &manifest.item_ids, &bytes);
        let (item_titles, bytes) = read_strings(&titles_path)?;
        hash_part(&mut hasher, &manifest.item_titles, &bytes);

        let Tensors {
            users,
            items,
            popularity,
            n_users,
            n_items,
            dim,
        } = tensors;
        ensure!(
            user_ids.len() == n_users,
            "{}: {} ids for {n_users} rows of {USER_TENSOR}",
            user_ids_path.display(),
            user_ids.len()
        );
        ensure!(
            item_ids.len() == n_items,
            "{}: {} ids for {n_items} rows of {ITEM_TENSOR}",
            item_ids_path.display(),
            item_ids.len()
        );
        ensure!(
            item_titles.len() == n_items,
            "{}: {} titles for {n_items} items",
            titles_path.display(),
            item_titles.len()
        );
        let user_rows = index_ids(&user_ids_path, user_ids)?;
        index_ids(&item_ids_path, item_ids.clone())?;

        let mean_user = mean_rows(&users, dim);
        let max_user_norm = users
            .chunks_exact(dim)
            .chain(std::iter::once(mean_user.as_slice()))
            .map(norm)
            .fold(0.0, f64::max);
        let (max_raw_norm, max_item_norm) = items.max_norms(dim);
        ensure!(
            max_user_norm * max_raw_norm.max(max_item_norm) <= f64::from(f32::MAX),
            "{}: embeddings too large: max ‖user‖·‖item‖ = {:e} overflows f32 scores",
            tensors_path.display(),
            max_user_norm * max_raw_norm.max(max_item_norm)
        );

        let (fallback_scores, fallback_source) = match popularity {
            Some(p) => (p, FallbackSource::PopularityTensor),
            None => {
                let mut scores = vec![0.0; n_items];
                simd::score(items.rows(), dim, &mean_user, &mut scores);
                (scores, FallbackSource::MeanUser)
            }
        };

        let digest = hasher.finalize();
        let hash: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        Ok(Model {
            version: format!("{}+sha256:{hash}", manifest.version).into(),
            dim,
            user_rows,
            user_embeddings: users,
            item_ids,
            item_titles,
            item_embeddings: items,
            fallback_scores: fallback_scores.into(),
            fallback_source,
        })
    }

    /// Number of candidate items.
    pub fn n_items(&self) -> usize {
        self.item_ids.len()
    }

    /// Number of known users.
    pub fn n_users(&self) -> usize {
        self.user_rows.len()
    }

    /// Item id of row `i`.
    pub fn item_id(&self, i: usize) -> &str {
        self.item_ids.get(i).map_or("", String::as_str)
    }

    /// Title of item row `i`.
    pub fn item_title(&self, i: usize) -> &str {
        self.item_titles.get(i).map_or("", String::as_str)
    }

    /// Where unknown users' scores come from.
    pub fn fallback_source(&self) -> FallbackSource {
        self.fallback_source
    }

    /// Resolves a user id.
    pub fn resolve(&self, user_id: &str) -> UserRef {
        self.user_rows
            .get(user_id)
            .map_or(UserRef::Unknown, |&row| UserRef::Known(row))
    }

    /// The stored precision of the item embeddings.
    pub fn precision(&self) -> Precision {
        match self.item_embeddings {
            ItemRows::F32(_) => Precision::F32,
            ItemRows::F16(_) => Precision::F16,
            ItemRows::I8 { .. } => Precision::Int8,
        }
    }

    /// Raw scores of every item for a known user row. O(n_items · d).
    pub fn score_user(&self, row: usize) -> Vec<f32> {
        let mut scores = vec![0.0; self.n_items()];
        self.score_user_into(row, &mut scores);
        scores
    }

    /// Writes the raw score of every item for a known user row into `out`, resized to
    /// `n_items` (a buffer reused across requests: no allocation once it is large enough).
    pub fn score_user_into(&self, row: usize, out: &mut Vec<f32>) {
        out.clear();
        out.resize(self.n_items(), 0.0);
        let user = self
            .user_embeddings
            .get(row * self.dim..(row + 1) * self.dim)
            .unwrap_or(&[]);
        if user.is_empty() {
            return;
        }
        simd::score(self.item_embeddings.rows(), self.dim, user, out);
    }

    /// Scores served to unknown users (precomputed at load).
    pub fn fallback_scores(&self) -> Arc<[f32]> {
        Arc::clone(&self.fallback_scores)
    }
}

/// `<user, row>` for every row of a row-major f32 `[n, d]` matrix (the serving kernel).
pub fn score_rows(matrix: &[f32], dim: usize, user: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0; matrix.len() / dim.max(1)];
    simd::score(Rows::F32(matrix), dim, user, &mut out);
    out
}

/// Dot product in the serving kernel's summation order (sixteen lanes, fixed reduction).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    simd::dot(a, b, |x| x)
}

fn norm(row: &[f32]) -> f64 {
    row.iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt()
}

fn mean_rows(matrix: &[f32], dim: usize) -> Vec<f32> {
    let mut sum = vec![0.0_f64; dim];
    let mut n = 0_usize;
    for row in matrix.chunks_exact(dim) {
        for (s, &x) in sum.iter_mut().zip(row) {
            *s += f64::from(x);
        }
        n += 1;
    }
    sum.iter().map(|s| (s / n.max(1) as f64) as f32).collect()
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))
}

/// Feeds one named artifact into the content hash, length-prefixed so boundaries cannot shift.
fn hash_part(hasher: &mut Sha256, name: &str, bytes: &[u8]) {
    hasher.update((name.len() as u64).to_le_bytes());
    hasher.update(name.as_bytes());
    hasher.update((bytes.len() as u64).to_le_bytes());
    hasher.update(bytes);
}

/// Resolves a manifest file name inside `dir`, refusing anything that could leave it.
fn artifact_path(dir: &Path, manifest: &Path, field: &str, name: &str) -> anyhow::Result<PathBuf> {
    let plain = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.contains('\\');
    ensure!(
        plain,
        "{}: {field}: \"{name}\" must be a plain file name inside the model directory",
        manifest.display()
    );
    Ok(dir.join(name))
}

fn read_strings(path: &Path) -> anyhow::Result<(Vec<String>, Vec<u8>)> {
    let bytes = read(path)?;
    let strings: Vec<String> = serde_json::from_slice(&bytes)
        .with_context(|| format!("{}: expected a JSON array of strings", path.display()))?;
    Ok((strings, bytes))
}

fn index_ids(path: &Path, ids: Vec<String>) -> anyhow::Result<HashMap<String, usize>> {
    let mut rows = HashMap::with_capacity(ids.len());
    for (row, id) in ids.into_iter().enumerate() {
        ensure!(
            !id.is_empty(),
            "{}: element {row} is an empty id",
            path.display()
        );
        if let Some(first) = rows.insert(id.clone(), row) {
            bail!(
                "{}: duplicate id \"{id}\" at elements {first} and {row}",
                path.display()
            );
        }
    }
    Ok(rows)
}

/// The decoded tensors of the safetensors file.
struct Tensors {
    users: Vec<f32>,
    items: ItemRows,
    popularity: Option<Vec<f32>>,
    n_users: usize,
    n_items: usize,
    dim: usize,
}

impl Tensors {
    fn parse(path: &Path, bytes: &[u8]) -> anyhow::Result<Tensors> {
        let file = SafeTensors::deserialize(bytes)
            .map_err(|e| anyhow::anyhow!("{}: not a safetensors file: {e:?}", path.display()))?;
        for name in file.names() {
            ensure!(
                [USER_TENSOR, ITEM_TENSOR, POPULARITY_TENSOR, SCALES_TENSOR].contains(&name),
                "{}: unexpected tensor \"{name}\"; expected {USER_TENSOR}, {ITEM_TENSOR} and optionally {POPULARITY_TENSOR} (and {SCALES_TENSOR} with I8 {ITEM_TENSOR})",
                path.display()
            );
        }
        const FLOAT: &[Dtype] = &[Dtype::F32, Dtype::F16];
        const ANY: &[Dtype] = &[Dtype::F32, Dtype::F16, Dtype::I8];
        let (users, user_shape) = tensor(path, &file, USER_TENSOR, 2, FLOAT)?;
        let (items, item_shape) = tensor(path, &file, ITEM_TENSOR, 2, ANY)?;
        let [n_users, user_dim] = [user_shape[0], user_shape[1]];
        let [n_items, dim] = [item_shape[0], item_shape[1]];
        ensure!(
            n_users >= 1 && n_items >= 1 && dim >= 1,
            "{}: need at least one user, one item and one dimension; got {USER_TENSOR} {user_shape:?}, {ITEM_TENSOR} {item_shape:?}",
            path.display()
        );
        ensure!(
            user_dim == dim,
            "{}: {USER_TENSOR} has dimension {user_dim} but {ITEM_TENSOR} has {dim}",
            path.display()
        );
        let vector = |name: &str| -> anyhow::Result<Option<Vec<f32>>> {
            if !file.names().contains(&name) {
                return Ok(None);
            }
            let (v, shape) = tensor(path, &file, name, 1, &[Dtype::F32])?;
            ensure!(
                shape[0] == n_items,
                "{}: {name} has {} entries for {n_items} items",
                path.display(),
                shape[0]
            );
            Ok(Some(v.into_f32()))
        };
        let popularity = vector(POPULARITY_TENSOR)?;
        let items = match (items, vector(SCALES_TENSOR)?) {
            (Values::I8(values), Some(scales)) => {
                if let Some(row) = scales.iter().position(|s| *s < 0.0) {
                    bail!(
                        "{}: {SCALES_TENSOR} has a negative scale ({}) at row {row}",
                        path.display(),
                        scales[row]
                    );
                }
                ItemRows::I8 { values, scales }
            }
            (Values::I8(_), None) => bail!(
                "{}: I8 {ITEM_TENSOR} need an {SCALES_TENSOR} F32 [{n_items}] tensor (item_i = scale_i · q_i)",
                path.display()
            ),
            (_, Some(_)) => bail!(
                "{}: {SCALES_TENSOR} is only for I8 {ITEM_TENSOR}",
                path.display()
            ),
            (Values::F32(v), None) => ItemRows::F32(v),
            (Values::F16(v), None) => ItemRows::F16(v),
        };
        Ok(Tensors {
            users: users.into_f32(),
            items,
            popularity,
            n_users,
            n_items,
            dim,
        })
    }
}

/// A decoded tensor in its stored precision.
enum Values {
    F32(Vec<f32>),
    /// IEEE binary16 bits.
    F16(Vec<u16>),
    I8(Vec<i8>),
}

impl Values {
    /// Widened to f32 (exact for F16 and I8).
    fn into_f32(self) -> Vec<f32> {
        match self {
            Values::F32(v) => v,
            Values::F16(v) => v.into_iter().map(simd::f16_to_f32).collect(),
            Values::I8(v) => v.into_iter().map(f32::from).collect(),
        }
    }
}

/// Decodes a little-endian tensor of the given rank and one of the `accepted` dtypes, rejecting any
/// non-finite value.
fn tensor(
    path: &Path,
    file: &SafeTensors<'_>,
    name: &str,
    rank: usize,
    accepted: &[Dtype],
) -> anyhow::Result<(Values, Vec<usize>)> {
    let view = file
        .tensor(name)
        .map_err(|_| anyhow::anyhow!("{}: missing tensor \"{name}\"", path.display()))?;
    ensure!(
        accepted.contains(&view.dtype()),
        "{}: tensor \"{name}\" has dtype {:?}; expected {}",
        path.display(),
        view.dtype(),
        accepted
            .iter()
            .map(|d| match d {
                Dtype::F32 => "F32 (numpy float32)",
                Dtype::F16 => "F16 (numpy float16)",
                _ => "I8 (numpy int8, with item_scales)",
            })
            .collect::<Vec<_>>()
            .join(" or ")
    );
    let shape = view.shape().to_vec();
    ensure!(
        shape.len() == rank,
        "{}: tensor \"{name}\" has shape {shape:?}; expected {rank} dimensions",
        path.display()
    );
    let data = view.data();
    let (values, non_finite) = match view.dtype() {
        Dtype::F16 => {
            let v: Vec<u16> = data
                .chunks_exact(2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]))
                .collect();
            // Exponent bits all ones: inf or NaN.
            let bad = v.iter().position(|h| h & 0x7c00 == 0x7c00);
            let shown = bad.map(|at| half::f16::from_bits(v[at]).to_f32());
            (Values::F16(v), bad.zip(shown))
        }
        Dtype::I8 => (Values::I8(data.iter().map(|&b| b as i8).collect()), None),
        _ => {
            let v: Vec<f32> = data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            let bad = v.iter().position(|x| !x.is_finite());
            let shown = bad.map(|at| v[at]);
            (Values::F32(v), bad.zip(shown))
        }
    };
    if let Some((at, value)) = non_finite {
        let cols = if rank == 2 { shape[1].max(1) } else { 1 };
        bail!(
            "{}: tensor \"{name}\" has a non-finite value ({value}) at row {}, column {}",
            path.display(),
            at / cols,
            at % cols
        );
    }
    Ok((values, shape))
}

#[cfg(test)]
mod tests;
