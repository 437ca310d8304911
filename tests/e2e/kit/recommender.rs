//! The real `recommender` binary on a small sample model, as the SageMaker endpoint of the stack.
//!
//! The binary is another workspace package, so it sits beside `sagegate` in the target directory;
//! when it is missing it is built once (`cargo build -p recommender`), guarded so parallel tests
//! build it only once. `sample-model --items 200` keeps start-up quick. The server binds
//! `127.0.0.1:0` and prints its address on the first stdout line; it is killed on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{WAIT, eventually, sagegate_bin};

/// The `recommender` binary, built on first use if it is not there yet.
pub fn recommender_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let sagegate = sagegate_bin();
        let profile_dir = sagegate.parent().unwrap().to_path_buf();
        let bin = profile_dir.join(format!("recommender{}", std::env::consts::EXE_SUFFIX));
        if !bin.exists() {
            let target_dir = profile_dir.parent().unwrap();
            let mut cmd = Command::new(option_env!("CARGO").unwrap_or("cargo"));
            cmd.args(["build", "-p", "recommender", "--bin", "recommender"])
                .arg("--manifest-path")
                .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
                .arg("--target-dir")
                .arg(target_dir);
            if profile_dir.file_name().is_some_and(|n| n == "release") {
                cmd.arg("--release");
            }
            let status = cmd.status().unwrap();
            assert!(status.success(), "cargo build -p recommender failed");
        }
        assert!(bin.exists(), "no recommender binary at {}", bin.display());
        bin
    })
    .clone()
}

/// A running `recommender serve`; killed on drop.
pub struct Recommender {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Recommender {
    /// Writes a 200-item sample model and serves it on a loopback port, ready (`/ping` 200).
    pub async fn start() -> Recommender {
        Recommender::start_with(false).await
    }

    /// [`Recommender::start`] with `--stream-test-knobs` (slow or broken streams on request) and
    /// its `invocation` log lines kept ([`Recommender::stdout`]).
    pub async fn start_streaming() -> Recommender {
        Recommender::start_with(true).await
    }

    /// Its log so far (with `start_streaming`; empty otherwise).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn start_with(knobs: bool) -> Recommender {
        let bin = recommender_bin();
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("model");
        let out = Command::new(&bin)
            .arg("sample-model")
            .arg("--out")
            .arg(&model)
            .args(["--items", "200"])
            .output()
            .unwrap();
        assert!(out.status.success(), "sample-model failed: {out:?}");
        let stdout_path = dir.path().join("stdout.log");
        let log_path = dir.path().join("stderr.log");
        let mut command = Command::new(&bin);
        command.args(["serve", "--listen", "127.0.0.1:0"]);
        if knobs {
            command.arg("--stream-test-knobs");
        }
        let child = command
            .env("SM_MODEL_DIR", &model)
            .env("RUST_LOG", if knobs { "info" } else { "warn" })
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout_path).unwrap())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .unwrap();
        let mut server = Recommender {
            child,
            port: 0,
            log: log_path,
            _dir: dir,
        };
        let deadline = Instant::now() + WAIT;
        server.port = loop {
            // First line: `recommender listening on ADDR`.
            let text = std::fs::read_to_string(&stdout_path).unwrap_or_default();
            let port = text
                .lines()
                .next()
                .filter(|l| text.contains('\n') && l.contains("listening"))
                .and_then(|l| l.rsplit(':').next())
                .and_then(|p| p.trim().parse().ok());
            if let Some(p) = port {
                break p;
            }
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!("recommender exited with {status}: {text}");
            }
            assert!(
                Instant::now() < deadline,
                "recommender never printed its address"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let ping = format!("{}/ping", server.url());
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        eventually("recommender /ping to answer 200", WAIT, || {
            let req = http.get(&ping).send();
            async move { req.await.ok().filter(|r| r.status() == 200).map(|_| ()) }
        })
        .await;
        server
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Recommender {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
