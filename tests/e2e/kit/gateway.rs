//! A running `sagegate serve`, started from a temp dir holding its `gateway.yaml` and `keys.yaml`.
//!
//! Start-up: the gateway binds `127.0.0.1:0`; the kit reads the bound address from its
//! `sagegate listening` log line (stdout is captured to a file) and polls `/healthz` until it
//! answers 200. The process gets a clean environment: test credentials, region `us-east-1`, no
//! instance metadata, no AWS config files, and the SageMaker Runtime endpoint on loopback, so no
//! SDK call can leave the machine. The process is killed when the handle drops.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::client::Reply;
use super::config::{GatewayYaml, KeysYaml};
use super::upstream::Upstream;
use super::{WAIT, eventually, sagegate_bin};

/// How to start a gateway.
#[derive(Debug)]
pub struct GatewayBuilder {
    config: String,
    keys: String,
    upstream_url: Option<String>,
    keys_source: Option<String>,
    config_source: Option<String>,
    env: Vec<(String, String)>,
}

/// A running gateway; killed on drop.
pub struct Gateway {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Gateway {
    /// A gateway with [`GatewayYaml::standard`] and [`KeysYaml::standard`], no upstream yet.
    pub fn builder() -> GatewayBuilder {
        GatewayBuilder {
            config: GatewayYaml::standard().render(),
            keys: KeysYaml::standard().render(),
            upstream_url: None,
            keys_source: None,
            config_source: None,
            env: Vec::new(),
        }
    }

    /// The standard gateway in front of `upstream`.
    pub async fn in_front_of(upstream: &Upstream) -> Gateway {
        Gateway::builder().upstream(upstream).start().await
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A GET of `path` (stage included, query allowed).
    pub fn get(&self, path: &str) -> Request {
        self.request(reqwest::Method::GET, path)
    }

    /// A request of `method` to `path`.
    pub fn request(&self, method: reqwest::Method, path: &str) -> Request {
        Request {
            builder: self.http.request(method, self.url(path)),
        }
    }

    /// The seed request on `stage` for `user` (as written in the URL), with `key` when given.
    pub async fn recommend(&self, stage: &str, user: &str, key: Option<&str>) -> Reply {
        let mut req = self.get(&format!(
            "/{stage}/recommended-movies/{user}?k=10&inference_type=deterministic"
        ));
        if let Some(k) = key {
            req = req.key(k);
        }
        req.send().await
    }

    /// Status of `GET /healthz` on a new connection; `None` when the connection fails.
    pub async fn health(&self) -> Option<u16> {
        let fresh = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(0)
            .timeout(WAIT)
            .build()
            .unwrap();
        let resp = fresh.get(self.url("/healthz")).send().await.ok()?;
        Some(resp.status().as_u16())
    }

    /// Path of the gateway.yaml the gateway reads.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("gateway.yaml")
    }

    /// Path of the keys file the gateway reads.
    pub fn keys_path(&self) -> PathBuf {
        self.dir.path().join("keys.yaml")
    }

    /// Replaces the keys file the way deploy tools do: write a temp file, then rename over.
    pub fn replace_keys(&self, text: &str) {
        let tmp = self.dir.path().join(".keys.yaml.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.keys_path()).unwrap();
    }

    /// Everything written to stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout.log")).unwrap_or_default()
    }

    /// Everything written to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// Every stdout line that is a JSON object.
    pub fn log_lines(&self) -> Vec<Value> {
        parse_lines(&self.stdout())
    }

    /// The access-log lines (target `access`).
    pub fn access_log(&self) -> Vec<Value> {
        self.log_lines()
            .into_iter()
            .filter(|l| l["target"] == "access")
            .collect()
    }

    /// The access-log line of request `request_id` (polls briefly: the line may trail the reply).
    pub async fn access_entry(&self, request_id: &str) -> Value {
        eventually(&format!("access log line of {request_id}"), WAIT, || {
            let found = self
                .access_log()
                .into_iter()
                .find(|l| l["requestId"] == request_id);
            async move { found }
        })
        .await
    }

    /// The status `GET /temp/recommended-movies/U:114521` gets with `key`.
    pub async fn key_status(&self, key: &str) -> u16 {
        self.recommend("temp", "U:114521", Some(key)).await.status
    }

    /// Polls (bounded, gently: a refused key counts against the failed-key limiter) until `key`
    /// gets `want`, e.g. after a change of the keys source.
    pub async fn until_key_gets(&self, key: &str, want: u16) {
        eventually(&format!("key to get {want}"), WAIT, || async {
            let got = self.key_status(key).await;
            if got != want {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            (got == want).then_some(())
        })
        .await;
    }

    /// Polls until stdout contains `needle`.
    pub async fn wait_for_log(&self, needle: &str) {
        eventually(&format!("`{needle}` in the gateway log"), WAIT, || {
            let found = self.stdout().contains(needle).then_some(());
            async move { found }
        })
        .await;
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends signal `name` (`TERM`, `HUP`) with kill(1).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args(["-s", name, &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -s {name} failed");
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Waits (bounded) for the process to exit.
    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "gateway did not exit within {within:?}; stdout:\n{}",
                self.stdout()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn parse_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(Value::is_object)
        .collect()
}

impl GatewayBuilder {
    /// Uses `config` as gateway.yaml.
    pub fn config(mut self, config: GatewayYaml) -> Self {
        self.config = config.render();
        self
    }

    /// Uses `text` as gateway.yaml.
    pub fn config_text(mut self, text: &str) -> Self {
        text.clone_into(&mut self.config);
        self
    }

    /// Uses `keys` as keys.yaml.
    pub fn keys(mut self, keys: KeysYaml) -> Self {
        self.keys = keys.render();
        self
    }

    /// Uses `text` as keys.yaml.
    pub fn keys_text(mut self, text: &str) -> Self {
        text.clone_into(&mut self.keys);
        self
    }

    /// Sends SageMaker calls to `upstream`.
    pub fn upstream(mut self, upstream: &Upstream) -> Self {
        self.upstream_url = Some(upstream.url());
        self
    }

    /// Sends SageMaker calls to `url` (e.g. the recommender, or a closed port).
    pub fn upstream_url(mut self, url: &str) -> Self {
        self.upstream_url = Some(url.to_owned());
        self
    }

    /// Passes `source` (e.g. `s3://bucket/gateway.yaml`) as `--config` instead of the written file.
    pub fn config_source(mut self, source: &str) -> Self {
        self.config_source = Some(source.to_owned());
        self
    }

    /// Passes `source` (e.g. `s3://bucket/keys.yaml`) as `--keys` instead of the keys file.
    pub fn keys_source(mut self, source: &str) -> Self {
        self.keys_source = Some(source.to_owned());
        self
    }

    /// Sets an environment variable of the process.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Starts the gateway and waits until `/healthz` answers 200.
    pub async fn start(self) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("gateway.yaml");
        let keys = dir.path().join("keys.yaml");
        std::fs::write(&config, &self.config).unwrap();
        std::fs::write(&keys, &self.keys).unwrap();
        let stdout = std::fs::File::create(dir.path().join("stdout.log")).unwrap();
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
        let upstream = self
            .upstream_url
            .expect("a gateway under test needs an upstream (never a real AWS endpoint)");
        let nowhere = dir.path().join("no-aws-config");
        let mut cmd = Command::new(sagegate_bin());
        cmd.arg("serve")
            .arg("--config")
            .arg(
                self.config_source
                    .as_deref()
                    .map_or(config.as_os_str(), |s| s.as_ref()),
            )
            .arg("--keys")
            .arg(
                self.keys_source
                    .as_deref()
                    .map_or(keys.as_os_str(), |s| s.as_ref()),
            )
            .args(["--listen", "127.0.0.1:0"])
            .env_clear()
            .env("HOME", dir.path())
            .env("RUST_LOG", "info")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", &nowhere)
            .env("AWS_SHARED_CREDENTIALS_FILE", &nowhere)
            .env("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", &upstream)
            // The admin listener is off unless a test turns it on (with port 0): configs that name
            // a fixed admin port, like the shipped one, would otherwise collide between tests.
            .env("SAGEGATE_ADMIN_LISTEN", "")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        let child = cmd.spawn().unwrap();
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(WAIT)
            .build()
            .unwrap();
        let mut gateway = Gateway {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            dir,
            http,
        };
        let deadline = Instant::now() + WAIT;
        gateway.addr = loop {
            let listening = gateway
                .log_lines()
                .into_iter()
                .find(|l| l["message"] == "sagegate listening")
                .and_then(|l| l["listen"].as_str().and_then(|a| a.parse().ok()));
            if let Some(addr) = listening {
                break addr;
            }
            if let Some(status) = gateway.exited() {
                panic!(
                    "gateway exited with {status} before listening\nstdout:\n{}\nstderr:\n{}",
                    gateway.stdout(),
                    gateway.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "gateway never logged its address"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let health = gateway.url("/healthz");
        let http = gateway.http.clone();
        eventually("gateway /healthz to answer 200", WAIT, || {
            let req = http.get(&health).send();
            async move { req.await.ok().filter(|r| r.status() == 200).map(|_| ()) }
        })
        .await;
        gateway
    }
}

/// A request being built.
pub struct Request {
    builder: reqwest::RequestBuilder,
}

impl Request {
    /// Sends `x-api-key: key`.
    pub fn key(self, key: &str) -> Self {
        self.header("x-api-key", key)
    }

    /// Adds a header.
    pub fn header(self, name: &str, value: &str) -> Self {
        Request {
            builder: self.builder.header(name, value),
        }
    }

    /// Gives up after `d` (instead of the kit's generous default).
    pub fn timeout(self, d: Duration) -> Self {
        Request {
            builder: self.builder.timeout(d),
        }
    }

    /// Sets the body.
    pub fn body(self, body: impl Into<reqwest::Body>) -> Self {
        Request {
            builder: self.builder.body(body),
        }
    }

    /// Sends it; the transport outcome without any check (for requests expected to fail).
    pub async fn send_raw(self) -> reqwest::Result<reqwest::Response> {
        self.builder.send().await
    }

    /// Sends it and reads the reply (checking the headers every response carries).
    pub async fn send(self) -> Reply {
        Reply::read(self.builder.send().await.expect("request to the gateway")).await
    }
}
