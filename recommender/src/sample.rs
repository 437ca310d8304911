//! Artifact writer and the deterministic synthetic model of `recommender sample-model`.
//!
//! Place in the pipeline: offline, before serving. Input: sizes and a seed. Output: a model
//! directory in the artifact format that [`crate::model::Model::load`] reads (manifest, one
//! safetensors file, JSON sidecars).
//!
//! Invariants: the same `(users, items, dim, seed)` writes byte-identical files, so the served
//! `model_version` (which hashes them) is stable too; the seed request's user `U:114521` is always
//! present; every value is finite. Catalogues of 1,000+ items get up to eight "genres": a user's
//! scores are about 4 for their genre's items and near 0 for the rest, so the stochastic policies at
//! T = 1 are visibly random yet on taste. A smaller catalogue is one genre whose scores lie within
//! about ±1 of each other, so every item keeps a fair share of probability (distribution checks).

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, ensure};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use safetensors::Dtype;
use safetensors::tensor::TensorView;

use crate::model::{
    FORMAT, ITEM_TENSOR, MANIFEST_FILE, Manifest, POPULARITY_TENSOR, Precision, SCALES_TENSOR,
    USER_TENSOR,
};

/// The user of the project's seed request; every sample model contains it.
pub const SEED_USER: &str = "U:114521";

/// Sizes and seed of a synthetic model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleSpec {
    /// Number of users (≥ 1), `U:1`, `U:2`, … plus `U:114521`.
    pub users: usize,
    /// Number of movies (≥ 1), `M:1`, `M:2`, …
    pub items: usize,
    /// Embedding dimension (≥ 1).
    pub dim: usize,
    /// RNG seed; the same seed writes the same files.
    pub seed: u64,
}

impl Default for SampleSpec {
    fn default() -> Self {
        SampleSpec {
            users: 1000,
            items: 5000,
            dim: 32,
            seed: 42,
        }
    }
}

/// A model in memory, ready to be written in the artifact format.
#[derive(Debug, Clone, PartialEq)]
pub struct Artifact {
    /// Manifest version label.
    pub version: String,
    /// Embedding dimension d.
    pub dim: usize,
    pub user_ids: Vec<String>,
    /// Row-major `[user_ids.len(), dim]`.
    pub user_embeddings: Vec<f32>,
    pub item_ids: Vec<String>,
    pub item_titles: Vec<String>,
    /// Row-major `[item_ids.len(), dim]`.
    pub item_embeddings: Vec<f32>,
    /// Optional per-item popularity score `[item_ids.len()]`, used for unknown users.
    pub item_popularity: Option<Vec<f32>>,
}

impl Artifact {
    /// Writes `model.json`, `embeddings.safetensors`, `user_ids.json`, `item_ids.json` and
    /// `item_titles.json` into `dir` (created if missing), with f32 item embeddings.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        self.write_as(dir, Precision::F32)
    }

    /// [`Artifact::write`] with the item embeddings stored in `precision`: F16 rounds each value to
    /// nearest even; int8 stores `q = round(v / s)` with one scale per row, `s = max|v| / 127`,
    /// in an `item_scales` tensor. A reduced-precision model is labelled `<version>-f16` / `-int8`.
    pub fn write_as(&self, dir: &Path, precision: Precision) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create directory", dir.display()))?;
        let version = match precision {
            Precision::F32 => self.version.clone(),
            other => format!("{}-{}", self.version, other.name()),
        };
        let manifest = Manifest {
            format: FORMAT.to_owned(),
            version,
            embeddings: "embeddings.safetensors".to_owned(),
            user_ids: "user_ids.json".to_owned(),
            item_ids: "item_ids.json".to_owned(),
            item_titles: "item_titles.json".to_owned(),
        };
        let n_items = self.item_ids.len();
        let users = le_bytes(&self.user_embeddings);
        let (items, item_dtype, scales) = match precision {
            Precision::F32 => (le_bytes(&self.item_embeddings), Dtype::F32, None),
            Precision::F16 => (
                self.item_embeddings
                    .iter()
                    .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                    .collect(),
                Dtype::F16,
                None,
            ),
            Precision::Int8 => {
                let (q, scales) = quantize_rows(&self.item_embeddings, self.dim);
                (q, Dtype::I8, Some(le_bytes(&scales)))
            }
        };
        let popularity = self.item_popularity.as_deref().map(le_bytes);
        let mut views = vec![
            (
                USER_TENSOR,
                view(Dtype::F32, &users, vec![self.user_ids.len(), self.dim])?,
            ),
            (
                ITEM_TENSOR,
                view(item_dtype, &items, vec![n_items, self.dim])?,
            ),
        ];
        if let Some(p) = &popularity {
            views.push((POPULARITY_TENSOR, view(Dtype::F32, p, vec![n_items])?));
        }
        if let Some(s) = &scales {
            views.push((SCALES_TENSOR, view(Dtype::F32, s, vec![n_items])?));
        }
        let metadata =
            HashMap::from([("writer".to_owned(), "recommender sample-model".to_owned())]);
        let tensors = safetensors::serialize(views, Some(metadata))
            .map_err(|e| anyhow::anyhow!("serializing tensors: {e:?}"))?;
        write(dir, &manifest.embeddings, &tensors)?;
        write(
            dir,
            &manifest.user_ids,
            &serde_json::to_vec(&self.user_ids)?,
        )?;
        write(
            dir,
            &manifest.item_ids,
            &serde_json::to_vec(&self.item_ids)?,
        )?;
        write(
            dir,
            &manifest.item_titles,
            &serde_json::to_vec(&self.item_titles)?,
        )?;
        write(dir, MANIFEST_FILE, &serde_json::to_vec_pretty(&manifest)?)?;
        Ok(())
    }
}

/// Symmetric per-row int8 quantisation: `q = round(v / s)`, `s = max|v| / 127` (0 for a zero row).
/// Returns the int8 bytes and the scales.
pub fn quantize_rows(values: &[f32], dim: usize) -> (Vec<u8>, Vec<f32>) {
    let mut q = Vec::with_capacity(values.len());
    let mut scales = Vec::with_capacity(values.len() / dim.max(1));
    for row in values.chunks_exact(dim.max(1)) {
        let max = row.iter().fold(0.0_f32, |m, v| m.max(v.abs()));
        let scale = max / 127.0;
        scales.push(scale);
        q.extend(row.iter().map(|&v| {
            let level = if scale > 0.0 {
                (v / scale).round()
            } else {
                0.0
            };
            (level.clamp(-127.0, 127.0) as i8).to_le_bytes()[0]
        }));
    }
    (q, scales)
}

fn view(dtype: Dtype, bytes: &[u8], shape: Vec<usize>) -> anyhow::Result<TensorView<'_>> {
    TensorView::new(dtype, shape, bytes).map_err(|e| anyhow::anyhow!("tensor view: {e:?}"))
}

fn le_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, bytes).with_context(|| format!("{}: cannot write", path.display()))
}

/// Generates the synthetic model: items cluster around a few "genre" directions, each user leans
/// to one genre, and popularity follows a Zipf-like curve.
pub fn generate(spec: SampleSpec) -> anyhow::Result<Artifact> {
    ensure!(spec.users >= 1, "--users must be at least 1");
    ensure!(spec.items >= 1, "--items must be at least 1");
    ensure!(spec.dim >= 1, "--dim must be at least 1");
    let SampleSpec {
        users,
        items,
        dim,
        seed,
    } = spec;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // About 500 movies per genre, so a tiny catalogue is one genre and its scores stay close.
    let genres = (items / 500).clamp(1, 8);
    let scale = 1.0 / (dim as f64).sqrt();
    let centers: Vec<Vec<f64>> = (0..genres)
        .map(|_| (0..dim).map(|_| normal(&mut rng) * scale).collect())
        .collect();
    let around = |rng: &mut ChaCha8Rng, g: usize, weight: f64, noise: f64| -> Vec<f32> {
        centers[g]
            .iter()
            .map(|c| (weight * (c + noise * normal(rng) * scale)) as f32)
            .collect()
    };

    let item_ids: Vec<String> = (1..=items).map(|i| format!("M:{i}")).collect();
    let mut item_embeddings = Vec::with_capacity(items * dim);
    let mut item_titles = Vec::with_capacity(items);
    for i in 0..items {
        let g = i % genres;
        item_embeddings.extend(around(&mut rng, g, 1.0, 0.5));
        item_titles.push(title(&mut rng));
    }
    // Zipf-like popularity over a random permutation of the catalogue: log(1 + 1000 / rank).
    let mut ranks: Vec<usize> = (1..=items).collect();
    for i in (1..ranks.len()).rev() {
        ranks.swap(i, rng.random_range(0..=i));
    }
    let item_popularity: Vec<f32> = ranks
        .iter()
        .map(|&r| (1.0 + 1000.0 / r as f64).ln() as f32)
        .collect();

    let seed_user_number: usize = 114_521;
    let user_ids: Vec<String> = if users >= seed_user_number {
        (1..=users).map(|u| format!("U:{u}")).collect()
    } else {
        (1..users)
            .map(|u| format!("U:{u}"))
            .chain(std::iter::once(SEED_USER.to_owned()))
            .collect()
    };
    let mut user_embeddings = Vec::with_capacity(users * dim);
    for _ in 0..users {
        let g = rng.random_range(0..genres);
        user_embeddings.extend(around(&mut rng, g, 4.0, 0.5));
    }

    Ok(Artifact {
        version: format!("sample-s{seed}-u{users}-i{items}-d{dim}"),
        dim,
        user_ids,
        user_embeddings,
        item_ids,
        item_titles,
        item_embeddings,
        item_popularity: Some(item_popularity),
    })
}

/// Standard normal draw (Box–Muller on open-interval uniforms, so `ln` never sees 0).
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = rng.sample(rand::distr::Open01);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

const ADJECTIVES: [&str; 32] = [
    "Silent",
    "Crimson",
    "Electric",
    "Forgotten",
    "Golden",
    "Hidden",
    "Last",
    "Lonely",
    "Midnight",
    "Broken",
    "Burning",
    "Distant",
    "Endless",
    "Frozen",
    "Gentle",
    "Haunted",
    "Iron",
    "Lost",
    "Northern",
    "Paper",
    "Quiet",
    "Restless",
    "Secret",
    "Shattered",
    "Silver",
    "Stolen",
    "Summer",
    "Twisted",
    "Velvet",
    "Wild",
    "Winter",
    "Wandering",
];
const NOUNS: [&str; 32] = [
    "Harbor",
    "Kingdom",
    "Garden",
    "River",
    "Empire",
    "Signal",
    "Horizon",
    "Orchard",
    "Station",
    "Voyage",
    "Lighthouse",
    "Frontier",
    "Carnival",
    "Detective",
    "Engine",
    "Forest",
    "Galaxy",
    "Island",
    "Journey",
    "Letter",
    "Machine",
    "Mountain",
    "Ocean",
    "Promise",
    "Road",
    "Shadow",
    "Storm",
    "Symphony",
    "Tower",
    "Valley",
    "Witness",
    "Heart",
];

/// A readable generated title such as "The Midnight Harbor (1987)".
fn title(rng: &mut ChaCha8Rng) -> String {
    let adjective = ADJECTIVES[rng.random_range(0..ADJECTIVES.len())];
    let noun = NOUNS[rng.random_range(0..NOUNS.len())];
    let year = rng.random_range(1950..=2024);
    let article = if rng.random_bool(0.5) { "The " } else { "" };
    format!("{article}{adjective} {noun} ({year})")
}
