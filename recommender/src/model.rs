//! Model artifacts: loading, validation and scoring.
//!
//! Place in the pipeline: loaded once at start-up from `SM_MODEL_DIR`; at request time it resolves a
//! user id to an embedding row and scores every item (`score_i = <user, item_i>`, f32).
//! Input: a directory holding `model.json` (the manifest), one safetensors file and JSON sidecars —
//! the format is documented in `recommender/README.md` and [`Manifest`].
//! Output: a [`Model`] whose embeddings are all finite and whose scores cannot overflow `f32`.
//!
//! Invariants, checked at load so the request path never meets them:
//! - `user_embeddings` is `[n_users, d]`, `item_embeddings` is `[n_items, d]`, both F32, n ≥ 1, d ≥ 1;
//!   the optional `item_popularity` is `[n_items]` F32. No other tensor names are accepted.
//! - Sidecar lengths match the tensors' rows; ids are unique and non-empty.
//! - Every value is finite, and ‖u‖·‖v‖ ≤ f32::MAX for every user (and the mean user) and item, so no
//!   dot product — nor any partial sum inside it (Cauchy–Schwarz) — can overflow.
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

/// The manifest file name inside the model directory.
pub const MANIFEST_FILE: &str = "model.json";
/// The only `format` value this server reads.
pub const FORMAT: &str = "sagegate-recommender/v1";
/// Tensor names inside the safetensors file.
pub const USER_TENSOR: &str = "user_embeddings";
pub const ITEM_TENSOR: &str = "item_embeddings";
pub const POPULARITY_TENSOR: &str = "item_popularity";

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
    item_embeddings: Vec<f32>,
    fallback_scores: Arc<[f32]>,
    fallback_source: FallbackSource,
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
        let max_item_norm = items.chunks_exact(dim).map(norm).fold(0.0, f64::max);
        ensure!(
            max_user_norm * max_item_norm <= f64::from(f32::MAX),
            "{}: embeddings too large: max ‖user‖·‖item‖ = {:e} overflows f32 scores",
            tensors_path.display(),
            max_user_norm * max_item_norm
        );

        let (fallback_scores, fallback_source) = match popularity {
            Some(p) => (p, FallbackSource::PopularityTensor),
            None => (
                score_rows(&items, dim, &mean_user),
                FallbackSource::MeanUser,
            ),
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

    /// Raw scores of every item for a known user row. O(n_items · d).
    pub fn score_user(&self, row: usize) -> Vec<f32> {
        let user = self
            .user_embeddings
            .get(row * self.dim..(row + 1) * self.dim)
            .unwrap_or(&[]);
        score_rows(&self.item_embeddings, self.dim, user)
    }

    /// Scores served to unknown users (precomputed at load).
    pub fn fallback_scores(&self) -> Arc<[f32]> {
        Arc::clone(&self.fallback_scores)
    }
}

/// `<user, row>` for every row of a row-major `[n, d]` matrix.
pub fn score_rows(matrix: &[f32], dim: usize, user: &[f32]) -> Vec<f32> {
    matrix.chunks_exact(dim).map(|row| dot(user, row)).collect()
}

/// Dot product with sixteen f32 lanes of accumulators: on SSE2 that is four independent add chains,
/// so the loop is not bound by add latency, and it auto-vectorises on x86_64 and aarch64 alike
/// without arch-specific code. An 8-lane step and a scalar tail cover any dimension.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let (a16, rest_a) = a.as_chunks::<16>();
    let (b16, rest_b) = b.as_chunks::<16>();
    let mut acc = [0.0_f32; 16];
    for (ca, cb) in a16.iter().zip(b16) {
        for l in 0..16 {
            acc[l] += ca[l] * cb[l];
        }
    }
    let (a8, tail_a) = rest_a.as_chunks::<8>();
    let (b8, tail_b) = rest_b.as_chunks::<8>();
    for (ca, cb) in a8.iter().zip(b8) {
        for l in 0..8 {
            acc[l] += ca[l] * cb[l];
        }
    }
    let tail: f32 = tail_a.iter().zip(tail_b).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
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
    items: Vec<f32>,
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
                [USER_TENSOR, ITEM_TENSOR, POPULARITY_TENSOR].contains(&name),
                "{}: unexpected tensor \"{name}\"; expected {USER_TENSOR}, {ITEM_TENSOR} and optionally {POPULARITY_TENSOR}",
                path.display()
            );
        }
        let (users, user_shape) = f32_tensor(path, &file, USER_TENSOR, 2)?;
        let (items, item_shape) = f32_tensor(path, &file, ITEM_TENSOR, 2)?;
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
        let popularity = if file.names().contains(&POPULARITY_TENSOR) {
            let (p, shape) = f32_tensor(path, &file, POPULARITY_TENSOR, 1)?;
            ensure!(
                shape[0] == n_items,
                "{}: {POPULARITY_TENSOR} has {} entries for {n_items} items",
                path.display(),
                shape[0]
            );
            Some(p)
        } else {
            None
        };
        Ok(Tensors {
            users,
            items,
            popularity,
            n_users,
            n_items,
            dim,
        })
    }
}

/// Decodes a little-endian F32 tensor of the given rank, rejecting any non-finite value.
fn f32_tensor(
    path: &Path,
    file: &SafeTensors<'_>,
    name: &str,
    rank: usize,
) -> anyhow::Result<(Vec<f32>, Vec<usize>)> {
    let view = file
        .tensor(name)
        .map_err(|_| anyhow::anyhow!("{}: missing tensor \"{name}\"", path.display()))?;
    ensure!(
        view.dtype() == Dtype::F32,
        "{}: tensor \"{name}\" has dtype {:?}; expected F32 (numpy float32)",
        path.display(),
        view.dtype()
    );
    let shape = view.shape().to_vec();
    ensure!(
        shape.len() == rank,
        "{}: tensor \"{name}\" has shape {shape:?}; expected {rank} dimensions",
        path.display()
    );
    let values: Vec<f32> = view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    if let Some(at) = values.iter().position(|v| !v.is_finite()) {
        let cols = if rank == 2 { shape[1].max(1) } else { 1 };
        bail!(
            "{}: tensor \"{name}\" has a non-finite value ({}) at row {}, column {}",
            path.display(),
            values[at],
            at / cols,
            at % cols
        );
    }
    Ok((values, shape))
}

#[cfg(test)]
mod tests;
