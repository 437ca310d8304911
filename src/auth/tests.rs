//! Tests for the `auth` stage: the keys file (valid and table-driven invalid fixtures),
//! authentication outcomes, `keys new`, and reloads from a file (change, bad change, editor
//! replace, symlink swap, SIGHUP) and from S3 (a loopback server speaking enough of GetObject).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::Digest as _;
use tokio::sync::mpsc;

use super::*;
use crate::config::diag::Diagnostics;

const ROUTES: [&str; 2] = ["GET /recommended-movies/{user_id}", "POST /things"];

fn ctx() -> KeysContext {
    let mut ctx = KeysContext::new(["temp", "prod"], ROUTES);
    ctx.reload.debounce = Duration::from_millis(50);
    ctx
}

/// `src/auth/fixtures`, found from this file's path (relative to the package root in the
/// gateway's own build, absolute when built through a `#[path]` include).
fn fixtures() -> PathBuf {
    Path::new(file!())
        .parent()
        .map(|p| p.join("fixtures"))
        .unwrap_or_default()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn valid_set() -> KeySet {
    let text = read(&fixtures().join("valid.yaml"));
    parse_keys("valid.yaml", &text, &ctx()).unwrap_or_else(|d| panic!("{d}"))
}

const A: &[u8] = b"partner-a-test-key-0000000001";
const A_HASH: &str = "7a65fd610089b7d16af2099f4f0cb4fff26dcbd059fca10cd2fd3c1992010fcf";
const B: &[u8] = b"partner-b-test-key-0000000002";

fn throttle(rate_limit: f64, burst_limit: u32) -> Throttle {
    Throttle {
        rate_limit,
        burst_limit,
    }
}

// ---------------------------------------------------------------------------------------------
// The keys file

#[test]
fn valid_fixture_compiles_to_the_model() {
    let set = valid_set();
    assert_eq!(
        set.keys().iter().map(|k| k.id.as_str()).collect::<Vec<_>>(),
        ["partner-a", "partner-b", "retired", "no-plan"]
    );
    let standard = UsagePlan {
        id: "standard".into(),
        stages: vec!["temp".into(), "prod".into()],
        throttle: Some(throttle(10.0, 20)),
        quota: Some(Quota {
            limit: 10_000,
            period: QuotaPeriod::Day,
            offset: 0,
        }),
        route_throttles: HashMap::from([(
            crate::route::RouteKey::parse("GET /recommended-movies/{user_id}").unwrap(),
            throttle(5.0, 10),
        )]),
    };
    assert_eq!(set.plan("standard").map(|p| &**p), Some(&standard));
    let gold = UsagePlan {
        id: "gold-temp".into(),
        stages: vec!["temp".into()],
        throttle: Some(throttle(0.5, 1)),
        quota: Some(Quota {
            limit: 100,
            period: QuotaPeriod::Month,
            offset: 40,
        }),
        // API Gateway's "/path/METHOD" spelling, normalised.
        route_throttles: HashMap::from([(
            crate::route::RouteKey::parse("POST /things").unwrap(),
            throttle(2.0, 4),
        )]),
    };
    assert_eq!(set.plan("gold-temp").map(|p| &**p), Some(&gold));
    let prod_only = set.plan("prod-only").unwrap();
    assert_eq!((prod_only.throttle, prod_only.quota), (None, None));

    let a = set.key("partner-a").unwrap();
    assert_eq!(a.name.as_deref(), Some("Partner A"));
    assert!(a.enabled);
    assert_eq!(a.usage_plans.len(), 1);
    let b = set.key("partner-b").unwrap();
    assert_eq!(b.name, None);
    assert!(b.enabled, "enabled defaults to true");
    assert_eq!(
        b.usage_plans
            .iter()
            .map(|p| p.id.as_str())
            .collect::<Vec<_>>(),
        ["gold-temp", "prod-only"]
    );
    assert_eq!(b.plan_for_stage["temp"].id, "gold-temp");
    assert_eq!(b.plan_for_stage["prod"].id, "prod-only");
    assert!(!set.key("retired").unwrap().enabled);
    assert_eq!(set.len(), 4);
    assert_eq!(set.enabled_count(), 3);
}

/// Every `fixtures/invalid/NAME.yaml` fails with exactly the lines of `NAME.expected`.
/// `BLESS=1` rewrites the expectations (review the diff before committing).
#[test]
fn invalid_fixtures_report_every_error_located() {
    let dir = fixtures().join("invalid");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    names.sort();
    assert!(names.len() >= 8, "fixtures missing in {}", dir.display());
    let bless = std::env::var_os("BLESS").is_some();
    let mut failures = Vec::new();
    for path in &names {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = read(path);
        let got = match parse_keys(&file, &text, &ctx()) {
            Ok(set) => format!("unexpectedly valid: {set:?}"),
            Err(d) => format!("{d}\n"),
        };
        // A diagnostic never quotes a key value.
        for line in text.lines() {
            if let Some(v) = line.trim().strip_prefix("value: ") {
                let v = v.trim_matches('"');
                assert!(!got.contains(v), "{file}: diagnostics quote a key value");
            }
        }
        let expected_path = path.with_extension("expected");
        if bless {
            std::fs::write(&expected_path, &got).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if got != expected {
            failures.push(format!("--- {file}\nexpected:\n{expected}got:\n{got}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_keys_source_never_reads_the_environment() {
    // The variable is set in every process (the fixture `placeholders.yaml` covers the rest):
    // were it interpolated, the file would be valid and the key id would be the path.
    let text = "usage_plans:\n  - id: p\n    stages: [temp]\nkeys:\n  - id: ${env:PATH}\n    usage_plans: [p]\n    value: partner-a-test-key-0000000001\n";
    let err = parse_keys("k.yaml", text, &ctx()).unwrap_err();
    assert_eq!(err.0.len(), 1, "{err}");
    assert!(
        err.to_string()
            .starts_with("k.yaml:5:9: keys[0].id: `${` is not allowed"),
        "{err}"
    );
    let path = std::env::var("PATH").unwrap_or_default();
    assert!(!err.to_string().contains(&path), "{err}");
}

#[test]
fn route_keys_normalise_both_spellings() {
    let cases = [
        ("GET /a/{b}", Some("GET /a/{b}")),
        ("get /a/{b}/", Some("GET /a/{b}")),
        ("GET /a//", Some("GET /a")),
        ("  POST   /a ", Some("POST /a")),
        ("/a/{b}/GET", Some("GET /a/{b}")),
        ("/a/{b}/delete", Some("DELETE /a/{b}")),
        ("//GET", Some("GET /")),
        ("GET /", Some("GET /")),
        ("ANY /{proxy+}", Some("ANY /{proxy+}")),
        ("FETCH /a", None),
        ("GET a", None),
        ("/a/b", None),
        ("GET /a b", None),
        ("", None),
    ];
    for (input, want) in cases {
        assert_eq!(normalize_route_key(input).as_deref(), want, "{input:?}");
    }
}

#[test]
fn key_sources_parse() {
    assert_eq!(
        KeySource::parse("config/keys.yaml"),
        Ok(KeySource::Path("config/keys.yaml".into()))
    );
    assert_eq!(
        KeySource::parse("s3://my-bucket/sagegate/keys.yaml"),
        Ok(KeySource::S3 {
            bucket: "my-bucket".into(),
            key: "sagegate/keys.yaml".into()
        })
    );
    for bad in ["s3://", "s3://bucket", "s3://bucket/", "s3:///key", ""] {
        assert!(KeySource::parse(bad).is_err(), "{bad:?}");
    }
    let s3 = KeySource::parse("s3://b/k/x.yaml").unwrap();
    assert_eq!(s3.name(), "s3://b/k/x.yaml");
}

#[cfg(not(feature = "aws"))]
#[tokio::test]
async fn s3_source_without_aws_feature_is_a_clear_start_error() {
    let source = KeySource::parse("s3://b/k.yaml").unwrap();
    let err = load_initial(&source, &ctx()).await.unwrap_err();
    assert!(err.to_string().contains("`aws` feature"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Authentication

#[test]
fn authentication_outcomes() {
    let set = valid_set();
    let ok = |key: &[u8], stage: &str| {
        let caller = set.authenticate(Some(key), stage).unwrap();
        (caller.key.id.clone(), caller.plan.id.clone())
    };
    // A key stored as an (upper-case) hash, and one stored as a plain value.
    assert_eq!(ok(A, "temp"), ("partner-a".into(), "standard".into()));
    assert_eq!(ok(A, "prod"), ("partner-a".into(), "standard".into()));
    assert_eq!(ok(B, "temp"), ("partner-b".into(), "gold-temp".into()));
    assert_eq!(ok(B, "prod"), ("partner-b".into(), "prod-only".into()));

    assert_eq!(set.authenticate(None, "temp"), Err(AuthError::Missing));
    assert_eq!(set.authenticate(Some(b""), "temp"), Err(AuthError::Missing));
    let mut near = A.to_vec();
    *near.last_mut().unwrap() ^= 1;
    assert_eq!(
        set.authenticate(Some(&near), "temp"),
        Err(AuthError::Unknown)
    );
    assert_eq!(
        set.authenticate(Some(&A[..A.len() - 1]), "temp"),
        Err(AuthError::Unknown)
    );
    // The hash itself is not a key.
    assert_eq!(
        set.authenticate(Some(A_HASH.as_bytes()), "temp"),
        Err(AuthError::Unknown)
    );
    let disabled = set.authenticate(Some(b"retired-test-key-00000000003"), "temp");
    assert_eq!(
        disabled,
        Err(AuthError::Disabled {
            key_id: "retired".into()
        })
    );
    assert_eq!(disabled.unwrap_err().key_id(), Some("retired"));
    // A key in a plan for other stages only, and a key in no plan at all.
    assert_eq!(
        set.authenticate(Some(B), "staging"),
        Err(AuthError::StageNotCovered {
            key_id: "partner-b".into(),
            stage: "staging".into()
        })
    );
    assert_eq!(
        set.authenticate(Some(b"no-plan-test-key-00000000004"), "temp"),
        Err(AuthError::StageNotCovered {
            key_id: "no-plan".into(),
            stage: "temp".into()
        })
    );
    assert_eq!(AuthError::Unknown.key_id(), None);
}

#[test]
fn a_key_in_a_plan_for_another_stage_is_not_let_in() {
    let text = "usage_plans:\n  - id: p\n    stages: [prod]\nkeys:\n  - id: k\n    usage_plans: [p]\n    value: prod-only-key-0000000000000\n";
    let set = parse_keys("k.yaml", text, &ctx()).unwrap();
    let key = b"prod-only-key-0000000000000";
    assert!(set.authenticate(Some(key), "prod").is_ok());
    assert_eq!(
        set.authenticate(Some(key), "temp"),
        Err(AuthError::StageNotCovered {
            key_id: "k".into(),
            stage: "temp".into()
        })
    );
}

#[test]
fn debug_output_never_shows_hashes_or_values() {
    let set = valid_set();
    let b_hash = hex::encode(sha2::Sha256::digest(B));
    let mut shown = format!("{set:?}");
    for key in set.keys() {
        shown.push_str(&format!("{key:?}"));
    }
    let caller = set.authenticate(Some(A), "temp").unwrap();
    shown.push_str(&format!("{caller:?}"));
    let store = KeyStore::new(set);
    shown.push_str(&format!("{store:?}"));
    assert!(shown.contains("partner-a"), "{shown}");
    for secret in [
        A_HASH.to_owned(),
        A_HASH.to_uppercase(),
        b_hash,
        String::from_utf8_lossy(A).into_owned(),
        String::from_utf8_lossy(B).into_owned(),
    ] {
        assert!(!shown.contains(&secret), "Debug leaks {secret}");
    }
}

// ---------------------------------------------------------------------------------------------
// keys new

#[test]
fn new_key_is_random_and_its_entry_authenticates_it() {
    let k1 = new_key("partner-z", "standard");
    let k2 = new_key("partner-z", "standard");
    assert_eq!(k1.value.len(), 40);
    assert!(k1.value.bytes().all(|b| b.is_ascii_alphanumeric()));
    assert_ne!(k1.value, k2.value);
    assert!(!k1.entry_yaml.contains(&k1.value));
    assert!(!format!("{k1:?}").contains(&k1.value));

    let file = format!(
        "usage_plans:\n  - id: standard\n    stages: [temp]\nkeys:\n{}",
        k1.entry_yaml
    );
    let set = parse_keys("k.yaml", &file, &ctx()).unwrap_or_else(|d| panic!("{d}\n{file}"));
    let caller = set.authenticate(Some(k1.value.as_bytes()), "temp").unwrap();
    assert_eq!(caller.key.id, "partner-z");
    assert_eq!(caller.key.name.as_deref(), Some("partner-z"));
    assert_eq!(caller.plan.id, "standard");
    assert_eq!(
        set.authenticate(Some(k2.value.as_bytes()), "temp"),
        Err(AuthError::Unknown)
    );

    // Ids that need quoting in YAML still paste correctly.
    let odd = new_key("a: #b", "std\"plan");
    let file = format!(
        "usage_plans:\n  - id: \"std\\\"plan\"\n    stages: [temp]\nkeys:\n{}",
        odd.entry_yaml
    );
    let set = parse_keys("k.yaml", &file, &ctx()).unwrap_or_else(|d| panic!("{d}\n{file}"));
    assert_eq!(
        set.authenticate(Some(odd.value.as_bytes()), "temp")
            .unwrap()
            .key
            .id,
        "a: #b"
    );
}

// ---------------------------------------------------------------------------------------------
// Reload from a file

const V1: &str = "usage_plans:\n  - id: p\n    stages: [temp]\nkeys:\n  - id: a\n    usage_plans: [p]\n    value: partner-a-test-key-0000000001\n";
const V2: &str = "usage_plans:\n  - id: p\n    stages: [temp]\nkeys:\n  - id: a\n    usage_plans: [p]\n    value: partner-a-test-key-0000000001\n  - id: b\n    usage_plans: [p]\n    value: partner-b-test-key-0000000002\n";
const V3: &str = "usage_plans:\n  - id: p\n    stages: [temp]\nkeys:\n  - id: b\n    usage_plans: [p]\n    value: partner-b-test-key-0000000002\n";
const BAD: &str = "usage_plans:\n  - id: p\n    stages: [temp]\n    throttle: { rate_limit: 0, burst_limit: 1 }\nkeys:\n  - id: c\n    usage_plans: [p]\n    value: partner-c-test-key-0000000003\n";

fn knows(store: &KeyStore, key: &[u8]) -> bool {
    store.authenticate(Some(key), "temp").is_ok()
}

/// Polls `cond` until it holds; fails after a generous bound (never a timed assertion).
async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Writes like an editor or `kubectl cp`: a temporary file in the same directory, renamed over.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

struct Running {
    store: Arc<KeyStore>,
    reloaded: mpsc::UnboundedReceiver<Vec<String>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn start(path: &Path, ctx: KeysContext) -> Running {
        let source = KeySource::Path(path.to_owned());
        let set = load_initial(&source, &ctx)
            .await
            .unwrap_or_else(|d| panic!("{d}"));
        let store = Arc::new(KeyStore::new(set));
        let (tx, reloaded) = mpsc::unbounded_channel();
        let task = spawn_reloader(Arc::clone(&store), source, ctx, move |set| {
            let _ = tx.send(set.keys().iter().map(|k| k.id.clone()).collect());
        });
        Running {
            store,
            reloaded,
            task,
        }
    }

    /// The key ids of the next successful reload.
    async fn next_reload(&mut self) -> Vec<String> {
        tokio::time::timeout(Duration::from_secs(20), self.reloaded.recv())
            .await
            .expect("no reload within 20 s")
            .expect("reloader stopped")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn file_changes_swap_bad_changes_keep_the_old_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.yaml");
    replace(&path, V1);
    let mut run = Running::start(&path, ctx()).await;
    assert!(knows(&run.store, A) && !knows(&run.store, B));

    // A good change (editor-style replace) swaps.
    replace(&path, V2);
    assert_eq!(run.next_reload().await, ["a", "b"]);
    assert!(knows(&run.store, A) && knows(&run.store, B));
    assert_eq!(run.store.reloads_ok(), 1);

    // A bad change is reported and the old keys stay in force.
    replace(&path, BAD);
    let store = Arc::clone(&run.store);
    wait_until("failed reload counted", || store.reloads_failed() >= 1).await;
    assert!(knows(&run.store, A) && knows(&run.store, B));
    assert!(!knows(&run.store, b"partner-c-test-key-0000000003"));

    // Fixing the file recovers; an in-place write (no rename) is seen too.
    std::fs::write(&path, V3).unwrap();
    // An in-place write may be read half-written (a failed reload) before the final one.
    loop {
        if run.next_reload().await == ["b"] {
            break;
        }
    }
    assert!(!knows(&run.store, A) && knows(&run.store, B));

    // Deleting the file keeps the keys; recreating it reloads.
    std::fs::remove_file(&path).unwrap();
    let failed = run.store.reloads_failed();
    wait_until("deletion reported", || store.reloads_failed() > failed).await;
    assert!(knows(&run.store, B));
    replace(&path, V1);
    assert_eq!(run.next_reload().await, ["a"]);
}

#[tokio::test]
async fn kubernetes_style_symlink_swap_is_followed() {
    // The layout kubelet gives a mounted ConfigMap or Secret:
    //   keys.yaml -> ..data/keys.yaml, ..data -> ..v1 (swapped atomically by a rename).
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir(root.join("..v1")).unwrap();
    std::fs::write(root.join("..v1/keys.yaml"), V1).unwrap();
    std::os::unix::fs::symlink("..v1", root.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/keys.yaml", root.join("keys.yaml")).unwrap();
    let mut run = Running::start(&root.join("keys.yaml"), ctx()).await;
    assert!(knows(&run.store, A));

    std::fs::create_dir(root.join("..v2")).unwrap();
    std::fs::write(root.join("..v2/keys.yaml"), V3).unwrap();
    std::os::unix::fs::symlink("..v2", root.join("..data_tmp")).unwrap();
    std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
    std::fs::remove_dir_all(root.join("..v1")).unwrap();
    assert_eq!(run.next_reload().await, ["b"]);
    assert!(!knows(&run.store, A) && knows(&run.store, B));
}

#[tokio::test]
async fn a_file_behind_a_symlink_elsewhere_is_watched_in_its_own_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("real")).unwrap();
    std::fs::create_dir(dir.path().join("link")).unwrap();
    let target = dir.path().join("real/keys.yaml");
    std::fs::write(&target, V1).unwrap();
    let link = dir.path().join("link/keys.yaml");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let mut run = Running::start(&link, ctx()).await;
    replace(&target, V3);
    assert_eq!(run.next_reload().await, ["b"]);
}

#[tokio::test]
async fn sighup_reloads_without_a_watch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.yaml");
    std::fs::write(&path, V1).unwrap();
    let mut ctx = ctx();
    ctx.reload.watch = false;
    // `spawn_reloader` installs the SIGHUP handler before returning, so the signal below cannot
    // terminate the test process.
    let mut run = Running::start(&path, ctx).await;
    std::fs::write(&path, V2).unwrap();
    let pid = std::process::id().to_string();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(run.next_reload().await, ["a", "b"]);
    assert!(knows(&run.store, B));
}

#[tokio::test]
async fn reload_now_reports_every_diagnostic_and_skips_unchanged_text() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.yaml");
    std::fs::write(&path, V1).unwrap();
    let source = KeySource::Path(path.clone());
    let store = KeyStore::new(load_initial(&source, &ctx()).await.unwrap());

    assert!(matches!(
        reload_now(&store, &source, &ctx()).await,
        ReloadOutcome::Unchanged
    ));
    std::fs::write(&path, BAD.replace("burst_limit: 1", "burst_limit: 0")).unwrap();
    let ReloadOutcome::Failed(Diagnostics(diags)) = reload_now(&store, &source, &ctx()).await
    else {
        panic!("bad file accepted");
    };
    let name = path.display().to_string();
    assert_eq!(
        diags.iter().map(ToString::to_string).collect::<Vec<_>>(),
        [
            format!(
                "{name}:4:29: usage_plans[0].throttle.rate_limit: must be a number > 0 (requests per second)"
            ),
            format!(
                "{name}:4:45: usage_plans[0].throttle.burst_limit: must be an integer from 1 to 4294967295"
            ),
        ]
    );
    assert!(knows(&store, A));
    assert_eq!((store.reloads_ok(), store.reloads_failed()), (0, 1));

    std::fs::write(&path, V2).unwrap();
    let ReloadOutcome::Reloaded(set) = reload_now(&store, &source, &ctx()).await else {
        panic!("good file rejected");
    };
    assert_eq!(set.len(), 2);
    assert!(Arc::ptr_eq(&set, &store.current()));
    assert_eq!((store.reloads_ok(), store.reloads_failed()), (1, 1));
}

const LOG_CHILD_ENV: &str = "SAGEGATE_TEST_LOG_CHILD";
const LOG_CHILD_DONE: &str = "LOG CHILD: all checks passed";

/// Runs `name` (an ignored test of this binary) alone in a child process with `envs` added to a
/// cleared environment; returns whether it passed and printed `marker`, and its output.
fn run_child_test(name: &str, envs: &[(&str, String)], marker: &str) -> (bool, String) {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", name, "--ignored", "--nocapture"])
        .env_clear()
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let passed = out.status.success() && stdout.contains(marker);
    (passed, format!("{stdout}\n{stderr}"))
}

/// The reload log names each problem and the counts, and never a key value or hash. Checked in a
/// child process: tracing caches per-callsite interest process-wide, and a thread-local capture
/// races with other tests' first log events (an event can be missed), so it runs alone.
#[test]
fn reload_logs_diagnostics_and_counts_never_keys() {
    let (passed, output) = run_child_test(
        "auth::tests::reload_logs_child",
        &[(LOG_CHILD_ENV, "1".to_owned())],
        LOG_CHILD_DONE,
    );
    assert!(passed, "child failed:\n{output}");
}

/// The body of [`reload_logs_diagnostics_and_counts_never_keys`].
#[tokio::test]
#[ignore = "run in a child process by reload_logs_diagnostics_and_counts_never_keys"]
async fn reload_logs_child() {
    if std::env::var_os(LOG_CHILD_ENV).is_none() {
        return;
    }
    use std::io::Write;
    use std::sync::Mutex;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    // The test runtime is single-threaded, so a thread-local default sees every event.
    let _guard = tracing::subscriber::set_default(subscriber);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.yaml");
    std::fs::write(&path, V1).unwrap();
    let source = KeySource::Path(path.clone());
    let store = KeyStore::new(load_initial(&source, &ctx()).await.unwrap());
    std::fs::write(&path, BAD).unwrap();
    reload_now(&store, &source, &ctx()).await;
    std::fs::write(&path, V2).unwrap();
    reload_now(&store, &source, &ctx()).await;

    let log = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(
        log.contains("keys reload failed: ")
            && log.contains("usage_plans[0].throttle.rate_limit: must be a number > 0"),
        "{log}"
    );
    assert!(
        log.contains("keys reloaded") && log.contains("keys=2"),
        "{log}"
    );
    for key in [A, B, b"partner-c-test-key-0000000003"] {
        let hash = hex::encode(sha2::Sha256::digest(key));
        let key = String::from_utf8_lossy(key);
        assert!(!log.contains(&*key) && !log.contains(&hash), "{log}");
    }
    println!("{LOG_CHILD_DONE}");
}

// ---------------------------------------------------------------------------------------------
// Reload from S3, against a loopback server that speaks enough of GetObject

#[cfg(feature = "aws")]
mod s3 {
    use std::io::{BufRead, BufReader, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;

    const CHILD_ENV: &str = "SAGEGATE_TEST_S3_SOURCE";
    const CHILD_DONE: &str = "S3 CHILD: all checks passed";

    /// One request as the server saw it.
    #[derive(Debug, Clone)]
    struct Seen {
        method: String,
        path: String,
        if_none_match: Option<String>,
        authorization: Option<String>,
    }

    /// Serves `versions` (ETag, body) of one object at `/bucket/key`: a request whose
    /// `If-None-Match` equals the current ETag gets a 304 and moves the object to the next
    /// version, as if someone uploaded it right after; any other request gets the current one.
    struct FakeS3 {
        addr: std::net::SocketAddr,
        seen: Arc<Mutex<Vec<Seen>>>,
        stop: Arc<AtomicBool>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl FakeS3 {
        fn start(object_path: &'static str, versions: Vec<(&'static str, &'static str)>) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            let addr = listener.local_addr().unwrap();
            let seen = Arc::new(Mutex::new(Vec::new()));
            let stop = Arc::new(AtomicBool::new(false));
            let (seen2, stop2) = (Arc::clone(&seen), Arc::clone(&stop));
            let thread = std::thread::spawn(move || {
                let mut current = 0;
                while !stop2.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            stream.set_nonblocking(false).unwrap();
                            serve(stream, object_path, &versions, &mut current, &seen2);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            });
            FakeS3 {
                addr,
                seen,
                stop,
                thread: Some(thread),
            }
        }
    }

    impl Drop for FakeS3 {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    fn serve(
        stream: TcpStream,
        object_path: &str,
        versions: &[(&str, &str)],
        current: &mut usize,
        seen: &Mutex<Vec<Seen>>,
    ) {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let target = parts.next().unwrap_or_default();
        let path = target.split('?').next().unwrap_or_default().to_owned();
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
            }
        }
        let request = Seen {
            method,
            path,
            if_none_match: headers.get("if-none-match").cloned(),
            authorization: headers.get("authorization").cloned(),
        };
        let (etag, body) = versions[*current];
        let response = if request.method != "GET" || request.path != object_path {
            let body = "<Error><Code>NoSuchKey</Code><Message>no such key</Message></Error>";
            format!(
                "HTTP/1.1 404 Not Found\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
        } else if request.if_none_match.as_deref() == Some(etag) {
            *current = (*current + 1).min(versions.len() - 1);
            format!("HTTP/1.1 304 Not Modified\r\nETag: {etag}\r\nConnection: close\r\n\r\n")
        } else {
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/yaml\r\nContent-Length: {}\r\nETag: {etag}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
        };
        seen.lock().unwrap().push(request);
        let mut stream = stream;
        let _ = stream.write_all(response.as_bytes());
        let _ = stream.flush();
    }

    /// Runs the S3 client in a child process (this test binary, running [`s3_child`]) whose whole
    /// environment is set here: loopback endpoint, static credentials, no instance metadata, no
    /// profile files. The environment cannot be changed in-process without `unsafe`.
    #[test]
    fn s3_source_is_polled_by_etag_through_the_s3_client() {
        let server = FakeS3::start(
            "/keys-bucket/sagegate/keys.yaml",
            vec![("\"v1\"", V1), ("\"v2\"", BAD), ("\"v3\"", V2)],
        );
        let envs = [
            (CHILD_ENV, "s3://keys-bucket/sagegate/keys.yaml".to_owned()),
            ("AWS_ENDPOINT_URL_S3", format!("http://{}", server.addr)),
            ("AWS_ACCESS_KEY_ID", "AKIDSAGEGATETEST".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "sagegate-test-secret".to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
            ("AWS_CONFIG_FILE", "/nonexistent/aws/config".to_owned()),
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                "/nonexistent/aws/credentials".to_owned(),
            ),
        ];
        let (passed, output) = run_child_test("auth::tests::s3::s3_child", &envs, CHILD_DONE);
        assert!(passed, "child failed:\n{output}");

        let seen = server.seen.lock().unwrap().clone();
        assert!(seen.len() >= 5, "{seen:#?}");
        // Path-style GetObject, signed with the static test credentials.
        for s in &seen {
            assert_eq!(
                (s.method.as_str(), s.path.as_str()),
                ("GET", "/keys-bucket/sagegate/keys.yaml")
            );
            let auth = s.authorization.as_deref().unwrap_or_default();
            assert!(
                auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDSAGEGATETEST/"),
                "{auth}"
            );
        }
        // The start-up read is unconditional; then polls carry the last ETag seen, including the
        // bad object's, so a bad upload is fetched (and reported) once.
        let inm: Vec<Option<&str>> = seen.iter().map(|s| s.if_none_match.as_deref()).collect();
        assert_eq!(
            &inm[..5],
            [
                None,
                Some("\"v1\""),
                Some("\"v1\""),
                Some("\"v2\""),
                Some("\"v2\"")
            ],
            "{seen:#?}"
        );
        assert!(inm[5..].iter().all(|e| *e == Some("\"v3\"")), "{seen:#?}");
    }

    /// The client side of [`s3_source_is_polled_by_etag_through_the_s3_client`]; does nothing unless
    /// started by it.
    #[tokio::test]
    #[ignore = "run in a child process by s3_source_is_polled_by_etag_through_the_s3_client"]
    async fn s3_child() {
        let Ok(source) = std::env::var(CHILD_ENV) else {
            return;
        };
        let source = KeySource::parse(&source).unwrap();
        let mut ctx = ctx();
        ctx.reload.s3_poll_interval = Duration::from_millis(50);
        let set = load_initial(&source, &ctx)
            .await
            .unwrap_or_else(|d| panic!("{d}"));
        let store = Arc::new(KeyStore::new(set));
        assert!(knows(&store, A) && !knows(&store, B));
        let (tx, mut rx) = mpsc::unbounded_channel();
        let _task = spawn_reloader(Arc::clone(&store), source, ctx, move |set| {
            let _ = tx.send(set.len());
        });
        let reloaded = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .expect("no reload within 30 s");
        assert_eq!(reloaded, Some(2));
        assert!(knows(&store, A) && knows(&store, B));
        // The bad version in between was fetched, reported once, and never swapped in.
        assert_eq!((store.reloads_ok(), store.reloads_failed()), (1, 1));
        // A few more polls see only 304s.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!((store.reloads_ok(), store.reloads_failed()), (1, 1));
        println!("{CHILD_DONE}");
    }
}
