//! Loading tests: the sample model round-trips, and each broken artifact is refused with a
//! message that names the file and the fault (table-driven).

use std::path::Path;

use safetensors::Dtype;
use safetensors::tensor::TensorView;

use super::*;
use crate::sample::{self, Artifact, SEED_USER, SampleSpec};

fn small() -> Artifact {
    sample::generate(SampleSpec {
        users: 20,
        items: 30,
        dim: 5,
        seed: 3,
    })
    .expect("generate")
}

fn load_err(dir: &Path) -> String {
    format!("{:#}", Model::load(dir).expect_err("load must fail"))
}

#[test]
fn sample_model_round_trips_and_scores_are_dot_products() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = small();
    a.write(dir.path()).expect("write");
    let m = Model::load(dir.path()).expect("load");
    assert_eq!((m.n_users(), m.n_items(), m.dim), (20, 30, 5));
    assert!(
        m.version.starts_with("sample-s3-u20-i30-d5+sha256:"),
        "{}",
        m.version
    );
    assert_eq!(m.version.len(), "sample-s3-u20-i30-d5+sha256:".len() + 16);
    assert_eq!(m.resolve(SEED_USER), UserRef::Known(19));
    assert_eq!(m.resolve("U:1"), UserRef::Known(0));
    assert_eq!(m.resolve("U:20"), UserRef::Unknown);
    assert_eq!(m.item_id(0), "M:1");
    assert!(m.item_title(0).contains('('));
    let scores = m.score_user(2);
    for (i, s) in scores.iter().enumerate() {
        let direct: f64 = (0..5)
            .map(|d| {
                f64::from(a.user_embeddings[2 * 5 + d]) * f64::from(a.item_embeddings[i * 5 + d])
            })
            .sum();
        assert!((f64::from(*s) - direct).abs() < 1e-5);
    }
    assert_eq!(m.fallback_source(), FallbackSource::PopularityTensor);
    assert_eq!(
        &*m.fallback_scores(),
        a.item_popularity.as_deref().expect("popularity")
    );
}

#[test]
fn sample_model_is_deterministic_and_the_version_tracks_content() {
    let (d1, d2, d3) = (
        tempfile::tempdir().expect("t"),
        tempfile::tempdir().expect("t"),
        tempfile::tempdir().expect("t"),
    );
    small().write(d1.path()).expect("write");
    small().write(d2.path()).expect("write");
    for name in [
        "model.json",
        "embeddings.safetensors",
        "user_ids.json",
        "item_ids.json",
        "item_titles.json",
    ] {
        assert_eq!(
            std::fs::read(d1.path().join(name)).expect("read"),
            std::fs::read(d2.path().join(name)).expect("read"),
            "{name}"
        );
    }
    let v1 = Model::load(d1.path()).expect("load").version;
    assert_eq!(v1, Model::load(d2.path()).expect("load").version);
    // Same manifest version label, one changed title: a different served version.
    let mut changed = small();
    changed.item_titles[0] = "Another Title (2001)".into();
    changed.write(d3.path()).expect("write");
    let v3 = Model::load(d3.path()).expect("load").version;
    assert_ne!(v1, v3);
    assert_eq!(v1.split('+').next(), v3.split('+').next());
}

#[test]
fn a_large_sample_includes_the_seed_user_naturally() {
    let a = sample::generate(SampleSpec {
        users: 114_521,
        items: 2,
        dim: 1,
        seed: 1,
    })
    .expect("generate");
    assert_eq!(a.user_ids.last().map(String::as_str), Some(SEED_USER));
    assert_eq!(a.user_ids[0], "U:1");
    let single = sample::generate(SampleSpec {
        users: 1,
        items: 1,
        dim: 1,
        seed: 1,
    })
    .expect("generate");
    assert_eq!(single.user_ids, [SEED_USER]);
}

#[test]
fn without_a_popularity_tensor_the_mean_user_is_the_fallback() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut a = small();
    a.item_popularity = None;
    a.write(dir.path()).expect("write");
    let m = Model::load(dir.path()).expect("load");
    assert_eq!(m.fallback_source(), FallbackSource::MeanUser);
    let mean: Vec<f32> = (0..5)
        .map(|d| {
            let s: f64 = (0..20)
                .map(|u| f64::from(a.user_embeddings[u * 5 + d]))
                .sum();
            (s / 20.0) as f32
        })
        .collect();
    let expected = score_rows(&a.item_embeddings, 5, &mean);
    for (x, y) in m.fallback_scores().iter().zip(&expected) {
        assert!((x - y).abs() < 1e-5);
    }
}

/// Writes `small()` after `edit`, then returns the load error.
fn broken(edit: impl FnOnce(&mut Artifact, &Path)) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut a = small();
    a.write(dir.path()).expect("write");
    edit(&mut a, dir.path());
    load_err(dir.path())
}

fn rewrite(a: &Artifact, dir: &Path) {
    a.write(dir).expect("rewrite");
}

fn write_raw_tensors(dir: &Path, tensors: Vec<(&str, Dtype, Vec<usize>, Vec<u8>)>) {
    let views: Vec<(&str, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, dt, shape, bytes)| {
            (
                *n,
                TensorView::new(*dt, shape.clone(), bytes).expect("view"),
            )
        })
        .collect();
    let bytes = safetensors::serialize(views, None).expect("serialize");
    std::fs::write(dir.join("embeddings.safetensors"), bytes).expect("write");
}

fn f32_bytes(n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| (i as f32 * 0.01).to_le_bytes())
        .collect()
}

#[test]
fn broken_artifacts_are_refused_with_the_file_named() {
    type Edit = Box<dyn FnOnce(&mut Artifact, &Path)>;
    let cases: Vec<(&str, Edit, &[&str])> = vec![
        (
            "non-finite user embedding",
            Box::new(|a, d| {
                a.user_embeddings[7] = f32::NAN;
                rewrite(a, d);
            }),
            &[
                "embeddings.safetensors",
                "user_embeddings",
                "non-finite",
                "row 1, column 2",
            ],
        ),
        (
            "infinite item embedding",
            Box::new(|a, d| {
                a.item_embeddings[0] = f32::INFINITY;
                rewrite(a, d);
            }),
            &[
                "embeddings.safetensors",
                "item_embeddings",
                "non-finite",
                "row 0, column 0",
            ],
        ),
        (
            "non-finite popularity",
            Box::new(|a, d| {
                if let Some(p) = a.item_popularity.as_mut() {
                    p[3] = f32::NEG_INFINITY;
                }
                rewrite(a, d);
            }),
            &["item_popularity", "non-finite"],
        ),
        (
            "scores could overflow",
            Box::new(|a, d| {
                a.user_embeddings[0] = 1e30;
                a.item_embeddings[0] = 1e30;
                rewrite(a, d);
            }),
            &["embeddings.safetensors", "overflows f32"],
        ),
        (
            "missing manifest",
            Box::new(|_, d| std::fs::remove_file(d.join("model.json")).expect("rm")),
            &["model.json", "cannot read"],
        ),
        (
            "unknown manifest field",
            Box::new(|_, d| {
                std::fs::write(
                    d.join("model.json"),
                    r#"{"format":"sagegate-recommender/v1","version":"v","embeddings":"embeddings.safetensors","user_ids":"user_ids.json","item_ids":"item_ids.json","item_titles":"item_titles.json","typo":1}"#,
                )
                .expect("write")
            }),
            &["model.json", "unknown field `typo`"],
        ),
        (
            "wrong format",
            Box::new(|_, d| {
                std::fs::write(
                    d.join("model.json"),
                    r#"{"format":"v0","version":"v","embeddings":"embeddings.safetensors","user_ids":"user_ids.json","item_ids":"item_ids.json","item_titles":"item_titles.json"}"#,
                )
                .expect("write")
            }),
            &["model.json", "format"],
        ),
        (
            "path traversal",
            Box::new(|_, d| {
                std::fs::write(
                    d.join("model.json"),
                    r#"{"format":"sagegate-recommender/v1","version":"v","embeddings":"../etc/passwd","user_ids":"user_ids.json","item_ids":"item_ids.json","item_titles":"item_titles.json"}"#,
                )
                .expect("write")
            }),
            &["model.json", "embeddings", "plain file name"],
        ),
        (
            "missing ids file",
            Box::new(|_, d| std::fs::remove_file(d.join("item_ids.json")).expect("rm")),
            &["item_ids.json", "cannot read"],
        ),
        (
            "ids not strings",
            Box::new(|_, d| std::fs::write(d.join("user_ids.json"), "[1,2]").expect("w")),
            &["user_ids.json", "JSON array of strings"],
        ),
        (
            "too few user ids",
            Box::new(|a, d| {
                std::fs::write(
                    d.join("user_ids.json"),
                    serde_json::to_vec(&a.user_ids[1..]).expect("json"),
                )
                .expect("w")
            }),
            &["user_ids.json", "19 ids for 20 rows"],
        ),
        (
            "duplicate item id",
            Box::new(|a, d| {
                a.item_ids[4] = "M:1".into();
                rewrite(a, d);
            }),
            &["item_ids.json", "duplicate id \"M:1\""],
        ),
        (
            "titles short",
            Box::new(|a, d| {
                a.item_titles.pop();
                rewrite(a, d);
            }),
            &["item_titles.json", "29 titles for 30 items"],
        ),
        (
            "not safetensors",
            Box::new(|_, d| std::fs::write(d.join("embeddings.safetensors"), b"npy?").expect("w")),
            &["embeddings.safetensors", "not a safetensors file"],
        ),
        (
            "float64 tensor",
            Box::new(|_, d| {
                write_raw_tensors(
                    d,
                    vec![
                        ("user_embeddings", Dtype::F64, vec![20, 5], vec![0; 800]),
                        ("item_embeddings", Dtype::F32, vec![30, 5], f32_bytes(150)),
                    ],
                )
            }),
            &[
                "embeddings.safetensors",
                "user_embeddings",
                "F64",
                "float32",
            ],
        ),
        (
            "missing item tensor",
            Box::new(|_, d| {
                write_raw_tensors(
                    d,
                    vec![("user_embeddings", Dtype::F32, vec![20, 5], f32_bytes(100))],
                )
            }),
            &[
                "embeddings.safetensors",
                "missing tensor \"item_embeddings\"",
            ],
        ),
        (
            "dimension mismatch",
            Box::new(|_, d| {
                write_raw_tensors(
                    d,
                    vec![
                        ("user_embeddings", Dtype::F32, vec![20, 5], f32_bytes(100)),
                        ("item_embeddings", Dtype::F32, vec![30, 4], f32_bytes(120)),
                    ],
                )
            }),
            &["embeddings.safetensors", "dimension 5", "has 4"],
        ),
        (
            "wrong rank",
            Box::new(|_, d| {
                write_raw_tensors(
                    d,
                    vec![
                        ("user_embeddings", Dtype::F32, vec![100], f32_bytes(100)),
                        ("item_embeddings", Dtype::F32, vec![30, 5], f32_bytes(150)),
                    ],
                )
            }),
            &["user_embeddings", "expected 2 dimensions"],
        ),
        (
            "unexpected tensor",
            Box::new(|_, d| {
                write_raw_tensors(
                    d,
                    vec![
                        ("users", Dtype::F32, vec![20, 5], f32_bytes(100)),
                        ("item_embeddings", Dtype::F32, vec![30, 5], f32_bytes(150)),
                    ],
                )
            }),
            &["embeddings.safetensors", "unexpected tensor \"users\""],
        ),
        (
            "popularity length",
            Box::new(|_, d| {
                write_raw_tensors(
                    d,
                    vec![
                        ("user_embeddings", Dtype::F32, vec![20, 5], f32_bytes(100)),
                        ("item_embeddings", Dtype::F32, vec![30, 5], f32_bytes(150)),
                        ("item_popularity", Dtype::F32, vec![29], f32_bytes(29)),
                    ],
                )
            }),
            &["item_popularity", "29 entries for 30 items"],
        ),
        (
            "empty catalogue",
            Box::new(|_, d| {
                write_raw_tensors(
                    d,
                    vec![
                        ("user_embeddings", Dtype::F32, vec![20, 5], f32_bytes(100)),
                        ("item_embeddings", Dtype::F32, vec![0, 5], Vec::new()),
                    ],
                )
            }),
            &["embeddings.safetensors", "at least one user, one item"],
        ),
        (
            "int8 items without scales",
            Box::new(|_, d| {
                write_raw_tensors(
                    d,
                    vec![
                        ("user_embeddings", Dtype::F32, vec![20, 5], f32_bytes(100)),
                        ("item_embeddings", Dtype::I8, vec![30, 5], vec![1; 150]),
                    ],
                )
            }),
            &[
                "embeddings.safetensors",
                "I8 item_embeddings",
                "item_scales",
            ],
        ),
        (
            "scales beside f32 items",
            Box::new(|_, d| {
                write_raw_tensors(
                    d,
                    vec![
                        ("user_embeddings", Dtype::F32, vec![20, 5], f32_bytes(100)),
                        ("item_embeddings", Dtype::F32, vec![30, 5], f32_bytes(150)),
                        ("item_scales", Dtype::F32, vec![30], f32_bytes(30)),
                    ],
                )
            }),
            &["embeddings.safetensors", "item_scales is only for I8"],
        ),
        (
            "negative int8 scale",
            Box::new(|_, d| {
                let mut scales = f32_bytes(30);
                scales[8..12].copy_from_slice(&(-1.0_f32).to_le_bytes());
                write_raw_tensors(
                    d,
                    vec![
                        ("user_embeddings", Dtype::F32, vec![20, 5], f32_bytes(100)),
                        ("item_embeddings", Dtype::I8, vec![30, 5], vec![1; 150]),
                        ("item_scales", Dtype::F32, vec![30], scales),
                    ],
                )
            }),
            &["item_scales", "negative scale (-1) at row 2"],
        ),
        (
            "scales of the wrong length",
            Box::new(|_, d| {
                write_raw_tensors(
                    d,
                    vec![
                        ("user_embeddings", Dtype::F32, vec![20, 5], f32_bytes(100)),
                        ("item_embeddings", Dtype::I8, vec![30, 5], vec![1; 150]),
                        ("item_scales", Dtype::F32, vec![29], f32_bytes(29)),
                    ],
                )
            }),
            &["item_scales has 29 entries for 30 items"],
        ),
        (
            "f16 infinity",
            Box::new(|_, d| {
                let mut items: Vec<u8> = vec![0; 300];
                items[2 * 12..2 * 12 + 2].copy_from_slice(&0x7c00_u16.to_le_bytes());
                write_raw_tensors(
                    d,
                    vec![
                        ("user_embeddings", Dtype::F32, vec![20, 5], f32_bytes(100)),
                        ("item_embeddings", Dtype::F16, vec![30, 5], items),
                    ],
                )
            }),
            &[
                "item_embeddings",
                "non-finite value (inf) at row 2, column 2",
            ],
        ),
        (
            "int8 users",
            Box::new(|_, d| {
                write_raw_tensors(
                    d,
                    vec![
                        ("user_embeddings", Dtype::I8, vec![20, 5], vec![1; 100]),
                        ("item_embeddings", Dtype::F32, vec![30, 5], f32_bytes(150)),
                    ],
                )
            }),
            &["user_embeddings", "I8", "F32 (numpy float32) or F16"],
        ),
    ];
    for (what, edit, fragments) in cases {
        let msg = broken(edit);
        for f in fragments {
            assert!(msg.contains(f), "{what}: {msg:?} lacks {f:?}");
        }
    }
}

/// A larger sample model written in `precision`, loaded; with the f32 artifact it came from.
fn reduced(precision: Precision) -> (Model, Artifact) {
    let a = sample::generate(SampleSpec {
        users: 100,
        items: 3000,
        dim: 64,
        seed: 11,
    })
    .expect("generate");
    let dir = tempfile::tempdir().expect("tempdir");
    a.write_as(dir.path(), precision).expect("write");
    (Model::load(dir.path()).expect("load"), a)
}

#[test]
fn reduced_precision_scores_are_the_f32_sums_of_the_stored_values() {
    for precision in [Precision::F16, Precision::Int8] {
        let (m, a) = reduced(precision);
        assert_eq!(m.precision(), precision);
        assert!(
            m.version
                .contains(&format!("-{}+sha256:", precision.name()))
        );
        let (q, scales) = sample::quantize_rows(&a.item_embeddings, 64);
        for row in [0, 17, 99] {
            let user = &a.user_embeddings[row * 64..(row + 1) * 64];
            let served = m.score_user(row);
            for (i, s) in served.iter().enumerate() {
                let item = &a.item_embeddings[i * 64..(i + 1) * 64];
                // The stored values, widened exactly, then the serving kernel's sum.
                let expected = match precision {
                    Precision::F16 => {
                        crate::simd::dot(user, item, |v| half::f16::from_f32(v).to_f32())
                    }
                    _ => {
                        crate::simd::dot(user, &q[i * 64..(i + 1) * 64], |b| f32::from(b as i8))
                            * scales[i]
                    }
                };
                assert_eq!(
                    s.to_bits(),
                    expected.to_bits(),
                    "{precision:?} user {row} item {i}"
                );
            }
        }
    }
}

/// Fraction of the exact (f64) top-10 that the served top-10 recovers, over every user.
fn recall_at_10(m: &Model, a: &Artifact) -> f64 {
    let mut hits = 0;
    for row in 0..a.user_ids.len() {
        let user = &a.user_embeddings[row * 64..(row + 1) * 64];
        let exact: Vec<f32> = a
            .item_embeddings
            .chunks_exact(64)
            .map(|v| {
                user.iter()
                    .zip(v)
                    .map(|(x, y)| f64::from(*x) * f64::from(*y))
                    .sum::<f64>() as f32
            })
            .collect();
        let truth = crate::policy::top_k_by_key(&exact, 10);
        let served = crate::policy::top_k_by_key(&m.score_user(row), 10);
        hits += served.iter().filter(|i| truth.contains(i)).count();
    }
    hits as f64 / (10 * a.user_ids.len()) as f64
}

#[test]
fn reduced_precision_keeps_recall_at_10_against_f32() {
    // Measured on this sample model (3,000 items × 64, 100 users): f16 1.000, int8 0.986.
    let (m, a) = reduced(Precision::F16);
    let f16 = recall_at_10(&m, &a);
    assert!(f16 >= 0.99, "f16 recall@10 {f16}");
    let (m, a) = reduced(Precision::Int8);
    let int8 = recall_at_10(&m, &a);
    assert!(int8 >= 0.9, "int8 recall@10 {int8}");
    eprintln!("recall@10: f16 {f16}, int8 {int8}");
}

#[test]
fn dot_matches_a_plain_sum_for_every_length() {
    for len in 0..40 {
        let a: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..len).map(|i| (i as f32 * 0.11).cos()).collect();
        let plain: f64 = a
            .iter()
            .zip(&b)
            .map(|(x, y)| f64::from(*x) * f64::from(*y))
            .sum();
        assert!((f64::from(dot(&a, &b)) - plain).abs() < 1e-4, "len {len}");
    }
}
