//! End-to-end tests of the real `recommender` binary: build a sample model with
//! `recommender sample-model`, start `recommender serve` on a loopback port, poll `/ping`, and speak
//! HTTP to it — the container contract, the SageMaker Runtime path (checked with the AWS SDK the
//! gateway uses), bad input, the unknown-user fallback, distributions over HTTP, shutdown and the
//! health probe. Every wait is bounded; servers are killed when a test ends.

// This whole crate is test code (clippy.toml allows unwrap/expect/panic in tests; the harness
// helpers here are outside `#[test]` functions, so say it for the crate).
#![cfg(test)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[path = "e2e/streaming.rs"]
mod streaming;

const BIN: &str = env!("CARGO_BIN_EXE_recommender");
/// Upper bound for start-up and shutdown waits (debug builds on a busy 2-core machine).
const WAIT: Duration = Duration::from_secs(60);
/// Chi-square critical values at α = 1e-4 (df = 5 for six cells).
const CHI2_DF5: f64 = 25.745;

// ---- harness ---------------------------------------------------------------------------------

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(BIN)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run recommender")
}

/// A model directory written by the real `sample-model` subcommand.
struct SampleModel {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl SampleModel {
    fn new(args: &[&str]) -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("model");
        let out = dir.to_str().expect("utf-8 path");
        let mut all = vec!["sample-model", "--out", out];
        all.extend_from_slice(args);
        let o = run(&all, &[]);
        assert!(o.status.success(), "sample-model failed: {o:?}");
        SampleModel { _tmp: tmp, dir }
    }
}

/// A running `recommender serve`, killed on drop; its stderr (the logs) goes to a file.
struct Server {
    child: Child,
    addr: SocketAddr,
    http: reqwest::Client,
    logs: tempfile::NamedTempFile,
}

impl Server {
    /// Starts `serve --listen 127.0.0.1:0` on `model` and waits until `/ping` answers 200.
    async fn start(model: &Path) -> Server {
        Self::start_with(model, &["serve", "--listen", "127.0.0.1:0"], &[]).await
    }

    /// Starts `serve` with `args` and `env` (which may set `RUST_LOG`; default `warn`).
    async fn start_with(model: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        let logs = tempfile::NamedTempFile::new().expect("log file");
        let mut child = Command::new(BIN)
            .args(args)
            .env("SM_MODEL_DIR", model)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(logs.reopen().expect("log file"))
            .spawn()
            .expect("spawn serve");
        // The server prints `recommender listening on ADDR` once bound; read it off-thread so a
        // silent server cannot hang the test.
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(WAIT).expect("server printed its address");
        let addr: SocketAddr = line
            .trim()
            .rsplit(' ')
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        let addr = SocketAddr::from(([127, 0, 0, 1], addr.port()));
        let server = Server {
            child,
            addr,
            http: reqwest::Client::new(),
            logs,
        };
        server.wait_ready().await;
        server
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(r) = self.http.get(self.url("/ping")).send().await
                && r.status() == 200
            {
                return;
            }
            assert!(Instant::now() < deadline, "server never became ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The AWS SDK's SageMaker Runtime client, pointed at this server with static credentials.
    fn sdk(&self) -> aws_sdk_sagemakerruntime::Client {
        use aws_sdk_sagemakerruntime::config::{BehaviorVersion, Credentials, Region};
        let config = aws_sdk_sagemakerruntime::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(self.url(""))
            .credentials_provider(Credentials::new(
                "AKIDLOCAL",
                "local-secret",
                None,
                None,
                "e2e",
            ))
            .build();
        aws_sdk_sagemakerruntime::Client::from_conf(config)
    }

    /// What the server has logged so far.
    fn logs(&self) -> String {
        std::fs::read_to_string(self.logs.path()).unwrap_or_default()
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// POST JSON to `/invocations`; returns status and parsed body.
    async fn invoke(&self, body: &Value) -> (u16, Value) {
        self.post("/invocations", "application/json", body.to_string())
            .await
    }

    async fn post(&self, path: &str, content_type: &str, body: String) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(path))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        let text = r.text().await.expect("body");
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("non-JSON body {text:?} ({status})"));
        (status, value)
    }

    /// Sends SIGTERM and waits for the process to exit.
    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let killed = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(killed.success());
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "server ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn items(body: &Value) -> Vec<&Value> {
    body["recommendations"]
        .as_array()
        .expect("recommendations")
        .iter()
        .collect()
}

fn item_ids(body: &Value) -> Vec<String> {
    items(body)
        .iter()
        .map(|r| r["item_id"].as_str().expect("item_id").to_owned())
        .collect()
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn log_sum_exp(xs: &[f64]) -> f64 {
    let m = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    m + xs.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

/// Recomputes the Plackett–Luce log-probability of a returned list from its scores alone
/// (k = n, so every candidate's score is in the response).
fn pl_log_probability_from_response(body: &Value, temperature: f64) -> f64 {
    let z: Vec<f64> = items(body)
        .iter()
        .map(|r| f(&r["score"]) / temperature)
        .collect();
    (0..z.len()).map(|j| z[j] - log_sum_exp(&z[j..])).sum()
}

/// Every item's score for user row `row`, recomputed in f64 from the artifact's files as stored
/// (f32, f16, or int8 × `item_scales`): an independent reading of what the server should score.
fn scores_from_files(dir: &Path, row: usize) -> Vec<f64> {
    let bytes = std::fs::read(dir.join("embeddings.safetensors")).expect("read tensors");
    let file = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    let widen = |name: &str| -> (Vec<f64>, Vec<usize>) {
        let t = file.tensor(name).expect(name);
        let v = match t.dtype() {
            safetensors::Dtype::F32 => t
                .data()
                .chunks_exact(4)
                .map(|b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
                .collect(),
            safetensors::Dtype::F16 => t
                .data()
                .chunks_exact(2)
                .map(|b| f64::from(half::f16::from_le_bytes([b[0], b[1]]).to_f32()))
                .collect(),
            safetensors::Dtype::I8 => t.data().iter().map(|&b| f64::from(b as i8)).collect(),
            other => panic!("{name}: unexpected dtype {other:?}"),
        };
        (v, t.shape().to_vec())
    };
    let (users, shape) = widen("user_embeddings");
    let dim = shape[1];
    let user = &users[row * dim..(row + 1) * dim];
    let (items, _) = widen("item_embeddings");
    let scales = file
        .names()
        .contains(&"item_scales")
        .then(|| widen("item_scales").0);
    items
        .chunks_exact(dim)
        .enumerate()
        .map(|(i, v)| {
            let dot: f64 = user.iter().zip(v).map(|(a, b)| a * b).sum();
            dot * scales.as_ref().map_or(1.0, |s| s[i])
        })
        .collect()
}

fn item_index(r: &Value) -> usize {
    let id = r["item_id"].as_str().expect("item_id");
    id[2..].parse::<usize>().expect("M:n") - 1
}

// ---- reduced-precision embeddings -------------------------------------------------------------

#[tokio::test]
async fn reduced_precision_models_serve_their_own_scores_and_propensities() {
    let shape = [
        "--items", "2000", "--users", "20", "--dim", "64", "--seed", "5",
    ];
    let full = SampleModel::new(&shape);
    let exact = scores_from_files(&full.dir, 2);
    let mut truth: Vec<usize> = (0..exact.len()).collect();
    truth.sort_by(|&a, &b| exact[b].total_cmp(&exact[a]));
    for dtype in ["f16", "int8"] {
        let mut args = shape.to_vec();
        args.extend(["--dtype", dtype]);
        let model = SampleModel::new(&args);
        let stored = scores_from_files(&model.dir, 2);
        let server = Server::start(&model.dir).await;

        // Deterministic: the served scores are the stored embeddings' scores (not the f32 ones),
        // and the list keeps most of the f32 top-10.
        let (status, det) = server
            .invoke(&json!({"user_id": "U:3", "k": 10, "inference_type": "deterministic"}))
            .await;
        assert_eq!(status, 200, "{det}");
        let mut differs = false;
        for r in items(&det) {
            let i = item_index(r);
            assert!((f(&r["score"]) - stored[i]).abs() < 1e-5, "{dtype}: {r}");
            differs |= f(&r["score"]) != exact[i];
        }
        assert!(
            differs,
            "{dtype}: every score equals the f32 one; reduced values not served?"
        );
        let hits = items(&det)
            .iter()
            .filter(|r| truth[..10].contains(&item_index(r)))
            .count();
        assert!(hits >= 8, "{dtype}: recall@10 {hits}/10");

        // Plackett–Luce: the normaliser and every propensity are those of the served scores.
        for policy in [
            "stochastic_plackett_luce",
            "stochastic_gumbel_softmax_trick",
        ] {
            let req = json!({"user_id": "U:3", "k": 10, "inference_type": policy,
                             "temperature": 0.5, "seed": 11});
            let (status, body) = server.invoke(&req).await;
            assert_eq!(status, 200, "{body}");
            let z: Vec<f64> = stored.iter().map(|s| s / 0.5).collect();
            assert!((f(&body["log_normalizer"]) - log_sum_exp(&z)).abs() < 1e-5);
            // Normalisers from the stored values (independent), each item's logit from its served
            // score: agreement to 1e-5 while f16/int8 and f32 scores differ by ~1e-3.
            let mut remaining = z.clone();
            let mut cascade = 0.0;
            for r in items(&body) {
                let i = item_index(r);
                cascade += f(&r["score"]) / 0.5 - log_sum_exp(&remaining);
                remaining[i] = f64::NEG_INFINITY;
                assert!(
                    (f(&r["log_p_cascade"]) - cascade).abs() < 1e-5,
                    "{dtype} {policy}"
                );
            }
        }
    }
}

// ---- the container contract ------------------------------------------------------------------

#[tokio::test]
async fn ping_and_a_deterministic_invocation_for_the_seed_user() {
    let model = SampleModel::new(&[]);
    let server = Server::start(&model.dir).await;
    let ping: Value = server
        .http
        .get(server.url("/ping"))
        .send()
        .await
        .expect("ping")
        .json()
        .await
        .expect("json");
    let version = ping["model_version"].as_str().expect("version").to_owned();
    assert!(version.contains("+sha256:"), "{version}");

    let (status, body) = server
        .invoke(&json!({"user_id": "U:114521", "k": 10, "inference_type": "deterministic"}))
        .await;
    assert_eq!(status, 200, "{body}");
    for field in [
        "user_id",
        "request_id",
        "inference_type",
        "model_version",
        "k",
        "params",
        "rng",
        "n_candidates",
        "log_normalizer",
        "log_propensity",
        "recommendations",
    ] {
        assert!(body.get(field).is_some(), "missing {field}: {body}");
    }
    assert_eq!(body["user_id"], "U:114521");
    assert_eq!(body["model_version"], version.as_str());
    assert_eq!(body["k"], 10);
    assert_eq!(body["n_candidates"], 5000);
    assert_eq!(body["rng"]["algorithm"], "ChaCha8");
    assert!(
        body["rng"]["seed"]
            .as_str()
            .is_some_and(|s| s.parse::<u64>().is_ok())
    );
    assert!(body.get("fallback").is_none());
    let recs = items(&body);
    assert_eq!(recs.len(), 10);
    for (j, r) in recs.iter().enumerate() {
        assert_eq!(r["position"], j + 1);
        assert!(r["item_id"].as_str().is_some_and(|id| id.starts_with("M:")));
        assert!(r["title"].as_str().is_some_and(|t| !t.is_empty()));
        assert_eq!(f(&r["p_conditional"]), 1.0);
        assert_eq!(f(&r["p_item_position"]), 1.0);
        if j > 0 {
            assert!(f(&recs[j - 1]["score"]) >= f(&r["score"]), "not sorted");
        }
    }
    // Defaults: k = 10 and deterministic when absent.
    let (status, defaulted) = server.invoke(&json!({"user_id": "U:114521"})).await;
    assert_eq!(status, 200);
    assert_eq!(defaulted["inference_type"], "deterministic");
    assert_eq!(item_ids(&defaulted), item_ids(&body));
}

#[tokio::test]
async fn every_policy_answers_with_its_logging_fields() {
    let model = SampleModel::new(&["--items", "300", "--users", "50"]);
    let server = Server::start(&model.dir).await;
    for policy in [
        "deterministic",
        "stochastic_plackett_luce",
        "stochastic_plackett_luce_cached",
        "stochastic_gumbel_softmax_trick",
        "stochastic_epsilon_greedy",
    ] {
        let req = json!({"user_id": "U:7", "k": 8, "inference_type": policy, "seed": "42",
                         "temperature": 0.5, "epsilon": 0.2});
        let (status, body) = server.invoke(&req).await;
        assert_eq!(status, 200, "{policy}: {body}");
        assert_eq!(body["inference_type"], policy);
        assert_eq!(body["rng"]["seed"], "42");
        assert_eq!(items(&body).len(), 8);
        // The same seed replays the same answer.
        let (_, again) = server.invoke(&req).await;
        assert_eq!(item_ids(&again), item_ids(&body), "{policy}");
        let last = f(&items(&body)[7]["log_p_cascade"]);
        assert!((last - f(&body["log_propensity"])).abs() < 1e-12);
        let pl = policy.contains("plackett") || policy.contains("gumbel");
        assert_eq!(body["log_normalizer"].is_number(), pl, "{policy}");
        assert_eq!(body["params"]["temperature"].is_number(), pl, "{policy}");
        let eg = policy == "stochastic_epsilon_greedy";
        assert_eq!(body["params"]["epsilon"].is_number(), eg, "{policy}");
        assert!(
            items(&body)
                .iter()
                .all(|r| r["explored"].is_boolean() == eg)
        );
        if pl {
            assert_eq!(f(&body["params"]["temperature"]), 0.5);
            assert!(items(&body).iter().all(|r| r["p_item_position"].is_null()));
        }
        if eg {
            assert_eq!(f(&body["params"]["epsilon"]), 0.2);
            assert_eq!(body["params"]["exploration"], "whole_list");
        }
    }
}

#[tokio::test]
async fn unknown_users_get_the_popularity_fallback() {
    let model = SampleModel::new(&["--items", "100", "--users", "10"]);
    let server = Server::start(&model.dir).await;
    for policy in [
        "deterministic",
        "stochastic_plackett_luce_cached",
        "stochastic_epsilon_greedy",
    ] {
        let (status, body) = server
            .invoke(&json!({"user_id": "U:999999", "k": 5, "inference_type": policy}))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["fallback"], "popularity");
        assert_eq!(items(&body).len(), 5);
    }
}

#[tokio::test]
async fn bad_input_is_a_400_naming_the_field() {
    let model = SampleModel::new(&["--items", "6", "--users", "3"]);
    let server = Server::start(&model.dir).await;
    let cases: [(Value, &str, &str); 12] = [
        (
            json!({"user_id": "U:1", "inference_type": "random"}),
            "inference_type",
            "stochastic_gumbel_softmax_trick",
        ),
        (json!({"user_id": "U:1", "k": 0}), "k", "from 1 to 6"),
        (json!({"user_id": "U:1", "k": 7}), "k", "from 1 to 6"),
        (json!({"user_id": "U:1", "k": "3"}), "k", "integer"),
        (json!({"user_id": "U:1", "k": 1.5}), "k", "integer"),
        (json!({"k": 3}), "user_id", "required"),
        (json!({"user_id": 1}), "user_id", "string"),
        (
            json!({"user_id": "U:1", "temperature": -1}),
            "temperature",
            "greater than 0",
        ),
        (
            json!({"user_id": "U:1", "temperature": 0}),
            "temperature",
            "greater than 0",
        ),
        (
            json!({"user_id": "U:1", "epsilon": 2}),
            "epsilon",
            "from 0 to 1",
        ),
        (json!({"user_id": "U:1", "seed": "abc"}), "seed", "digits"),
        (json!({"user_id": "U:1", "seed": -1}), "seed", "unsigned"),
    ];
    for (req, field, mentions) in cases {
        let (status, body) = server.invoke(&req).await;
        assert_eq!(status, 400, "{req}: {body}");
        assert_eq!(body["field"], field, "{req}: {body}");
        let msg = body["error"].as_str().expect("error message");
        assert!(
            msg.contains(field) && msg.contains(mentions),
            "{req}: {msg}"
        );
    }
    let (status, body) = server
        .post("/invocations", "application/json", "{\"user_id\":".into())
        .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|m| m.contains("invalid JSON"))
    );
    let (status, body) = server
        .post("/invocations", "text/plain", r#"{"user_id":"U:1"}"#.into())
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["field"], "content-type");
    // The tiny model serves k up to its 6 items.
    let (status, body) = server
        .invoke(&json!({"user_id": "U:1", "k": 6, "inference_type": "stochastic_plackett_luce"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(items(&body).len(), 6);
}

// ---- the SageMaker Runtime path ----------------------------------------------------------------

#[tokio::test]
async fn runtime_path_wraps_like_sagemaker() {
    let model = SampleModel::new(&["--items", "50", "--users", "5"]);
    let server = Server::start(&model.dir).await;
    let r = server
        .http
        .post(server.url("/endpoints/recommender-local/invocations"))
        .header("content-type", "application/json")
        .header("X-Amzn-SageMaker-Custom-Attributes", "trace=abc; tenant=7")
        .body(r#"{"user_id":"U:114521","k":3,"inference_type":"stochastic_gumbel_softmax_trick"}"#)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h["x-amzn-invoked-production-variant"], "AllTraffic");
    assert_eq!(
        h["x-amzn-sagemaker-custom-attributes"],
        "trace=abc; tenant=7"
    );
    let request_id = h["x-amzn-requestid"].to_str().expect("ascii").to_owned();
    assert_eq!(request_id.len(), 36);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["request_id"], request_id.as_str());

    // A container error becomes a 424 ModelError carrying the container's status and body.
    let r = server
        .http
        .post(server.url("/endpoints/recommender-local/invocations"))
        .header("content-type", "application/json")
        .body(r#"{"user_id":"U:114521","k":3,"inference_type":"bogus"}"#)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 424);
    assert_eq!(r.headers()["x-amzn-errortype"], "ModelError");
    assert!(r.headers().contains_key("x-amzn-requestid"));
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["ErrorCode"], "CLIENT_ERROR_FROM_MODEL");
    assert_eq!(body["OriginalStatusCode"], 400);
    assert_eq!(
        body["LogStreamArn"],
        "arn:aws:logs:local:000000000000:log-group:/aws/sagemaker/Endpoints/recommender-local"
    );
    let original = body["OriginalMessage"].as_str().expect("original");
    let inner: Value = serde_json::from_str(original).expect("original is the container's JSON");
    assert_eq!(inner["field"], "inference_type");
    let message = body["Message"].as_str().expect("message");
    assert!(message.starts_with(&format!(
        "Received client error (400) from primary with message \"{original}\". See "
    )));
    // The plain container path answers the same error unwrapped.
    let (status, plain) = server
        .invoke(&json!({"user_id": "U:114521", "k": 3, "inference_type": "bogus"}))
        .await;
    assert_eq!((status, plain), (400, inner));
}

#[tokio::test]
async fn the_aws_sdk_parses_answers_and_typed_model_errors() {
    use aws_sdk_sagemakerruntime::operation::invoke_endpoint::InvokeEndpointError;
    use aws_sdk_sagemakerruntime::primitives::Blob;

    let model = SampleModel::new(&["--items", "20", "--users", "5"]);
    let server = Server::start(&model.dir).await;
    let client = server.sdk();

    let out = client
        .invoke_endpoint()
        .endpoint_name("recommender")
        .content_type("application/json")
        .custom_attributes("ab=1")
        .body(Blob::new(
            r#"{"user_id":"U:114521","k":4,"inference_type":"stochastic_plackett_luce"}"#,
        ))
        .send()
        .await
        .expect("invoke");
    assert_eq!(out.custom_attributes(), Some("ab=1"));
    assert_eq!(out.invoked_production_variant(), Some("AllTraffic"));
    let body: Value =
        serde_json::from_slice(out.body().as_ref().expect("body").as_ref()).expect("json");
    assert_eq!(items(&body).len(), 4);

    let err = client
        .invoke_endpoint()
        .endpoint_name("recommender")
        .content_type("application/json")
        .body(Blob::new(r#"{"user_id":"U:114521","k":99}"#))
        .send()
        .await
        .expect_err("k out of range");
    let service = err.into_service_error();
    let InvokeEndpointError::ModelError(model_error) = service else {
        panic!("expected ModelError, got {service:?}");
    };
    assert_eq!(model_error.original_status_code(), Some(400));
    let original: Value =
        serde_json::from_str(model_error.original_message().expect("original")).expect("json");
    assert_eq!(original["field"], "k");
    assert!(
        model_error
            .log_stream_arn()
            .is_some_and(|a| a.ends_with("/aws/sagemaker/Endpoints/recommender"))
    );
    assert!(
        model_error
            .message()
            .is_some_and(|m| m.contains("client error (400)"))
    );
}

// ---- distributions over HTTP, from the response fields only ------------------------------------

/// Draws `n` answers with seeds 0..n (so the test is reproducible) and k = 6 on the 6-item model.
async fn draw_all(server: &Server, req: Value, n: u64) -> Vec<Value> {
    let mut out = Vec::with_capacity(n as usize);
    for seed in 0..n {
        let mut r = req.clone();
        r["seed"] = json!(seed);
        let (status, body) = server.invoke(&r).await;
        assert_eq!(status, 200, "{body}");
        out.push(body);
    }
    out
}

fn chi_square(observed: &HashMap<String, u64>, expected: &HashMap<String, f64>, n: u64) -> f64 {
    expected
        .iter()
        .map(|(id, p)| {
            let o = observed.get(id).copied().unwrap_or(0) as f64;
            let e = p * n as f64;
            (o - e).powi(2) / e
        })
        .sum()
}

#[tokio::test]
async fn plackett_luce_policies_match_their_logged_distribution_over_http() {
    let model = SampleModel::new(&["--items", "6", "--users", "4"]);
    let server = Server::start(&model.dir).await;
    let n = 1500;
    for (policy, temperature) in [
        ("stochastic_plackett_luce", 0.7),
        ("stochastic_gumbel_softmax_trick", 0.7),
        ("stochastic_plackett_luce_cached", 1.3),
    ] {
        let answers = draw_all(
            &server,
            json!({"user_id": "U:114521", "k": 6, "inference_type": policy, "temperature": temperature}),
            n,
        )
        .await;
        // The first slot's p_conditional is softmax(score / T) of that item, whatever was drawn.
        let mut expected: HashMap<String, f64> = HashMap::new();
        let mut observed: HashMap<String, u64> = HashMap::new();
        for a in &answers {
            assert_eq!(f(&a["params"]["temperature"]), temperature);
            assert_eq!(a["n_candidates"], 6);
            // Logged propensity = PL probability recomputed from the returned raw scores and T.
            let recomputed = pl_log_probability_from_response(a, temperature);
            assert!(
                (recomputed - f(&a["log_propensity"])).abs() < 1e-9,
                "{policy}: {recomputed} vs {}",
                a["log_propensity"]
            );
            let z: Vec<f64> = items(a)
                .iter()
                .map(|r| f(&r["score"]) / temperature)
                .collect();
            assert!((log_sum_exp(&z) - f(&a["log_normalizer"])).abs() < 1e-9);
            for r in items(a) {
                let id = r["item_id"].as_str().expect("id").to_owned();
                let p_first = (f(&r["score"]) / temperature - f(&a["log_normalizer"])).exp();
                expected.insert(id, p_first);
            }
            let first = items(a)[0];
            let p_logged = f(&first["p_conditional"]);
            let id = first["item_id"].as_str().expect("id").to_owned();
            assert!((expected[&id] - p_logged).abs() < 1e-12);
            *observed.entry(id).or_insert(0) += 1;
        }
        assert_eq!(expected.len(), 6);
        assert!((expected.values().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(
            expected.values().all(|p| p * n as f64 >= 5.0),
            "{expected:?}"
        );
        let x2 = chi_square(&observed, &expected, n);
        assert!(
            x2 < CHI2_DF5,
            "{policy}: X² = {x2}, {observed:?} vs {expected:?}"
        );
    }
}

#[tokio::test]
async fn epsilon_greedy_matches_its_logged_distribution_over_http() {
    let model = SampleModel::new(&["--items", "6", "--users", "4"]);
    let server = Server::start(&model.dir).await;
    let n = 1500;
    let epsilon = 0.3;
    let answers = draw_all(
        &server,
        json!({"user_id": "U:114521", "k": 6, "inference_type": "stochastic_epsilon_greedy", "epsilon": epsilon}),
        n,
    )
    .await;
    let mut greedy: Option<Vec<String>> = None;
    let mut explored = 0;
    let mut observed: HashMap<String, u64> = HashMap::new();
    for a in &answers {
        assert_eq!(f(&a["params"]["epsilon"]), epsilon);
        let flags: Vec<bool> = items(a).iter().map(|r| r["explored"] == true).collect();
        assert!(flags.iter().all(|x| *x == flags[0]));
        if flags[0] {
            explored += 1;
        } else {
            // Unexplored lists are the greedy list: raw scores in descending order.
            let ids = item_ids(a);
            let scores: Vec<f64> = items(a).iter().map(|r| f(&r["score"])).collect();
            assert!(scores.windows(2).all(|w| w[0] >= w[1]));
            assert!(greedy.get_or_insert_with(|| ids.clone()) == &ids);
        }
        // Logged whole-list propensity: (1−ε)·1[greedy] + ε/6!.
        let p = f(&a["log_propensity"]).exp();
        let uniform = epsilon / 720.0;
        let is_greedy_list = items(a)
            .iter()
            .all(|r| (f(&r["p_item_position"]) - (1.0 - epsilon + epsilon / 6.0)).abs() < 1e-12);
        let expected_p = if is_greedy_list {
            1.0 - epsilon + uniform
        } else {
            uniform
        };
        assert!((p - expected_p).abs() < 1e-12, "{p} vs {expected_p}");
        *observed
            .entry(items(a)[0]["item_id"].as_str().expect("id").to_owned())
            .or_insert(0) += 1;
    }
    let greedy = greedy.expect("some greedy lists");
    // First position: (1−ε) on the greedy head plus ε/6 on every item.
    let expected: HashMap<String, f64> = greedy
        .iter()
        .map(|id| {
            let head = if *id == greedy[0] { 1.0 - epsilon } else { 0.0 };
            (id.clone(), head + epsilon / 6.0)
        })
        .collect();
    let x2 = chi_square(&observed, &expected, n);
    assert!(x2 < CHI2_DF5, "X² = {x2}");
    // Explored share: binomial(n, ε), 6σ band.
    let sigma = (epsilon * (1.0 - epsilon) / n as f64).sqrt();
    let share = explored as f64 / n as f64;
    assert!(
        (share - epsilon).abs() < 6.0 * sigma,
        "explored share {share}"
    );
}

// ---- process contract -------------------------------------------------------------------------

#[tokio::test]
async fn serve_reads_the_sagemaker_port_and_the_healthcheck_probes_it() {
    let model = SampleModel::new(&["--items", "10", "--users", "2"]);
    let port = free_port().to_string();
    let env = [("SAGEMAKER_BIND_TO_PORT", port.as_str())];
    // `--host` keeps the test on loopback; the port comes from the environment, as on SageMaker.
    let server = Server::start_with(&model.dir, &["serve", "--host", "127.0.0.1"], &env).await;
    assert_eq!(server.addr.port().to_string(), port);
    let probe = run(&["healthcheck"], &env);
    assert!(probe.status.success(), "{probe:?}");
    // SIGTERM: graceful stop with exit status 0.
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
    let probe = run(&["healthcheck"], &env);
    assert_eq!(probe.status.code(), Some(1), "{probe:?}");
}

#[test]
fn help_lists_the_subcommands() {
    let o = run(&["--help"], &[]);
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    for word in ["serve", "sample-model", "healthcheck"] {
        assert!(text.contains(word), "{text}");
    }
    let o = run(&["sample-model", "--help"], &[]);
    let text = String::from_utf8_lossy(&o.stdout);
    for flag in ["--out", "--users", "--items", "--dim", "--seed"] {
        assert!(text.contains(flag), "{text}");
    }
}

#[test]
fn a_broken_model_stops_start_up_with_the_file_named() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let o = run(
        &["serve", "--listen", "127.0.0.1:0"],
        &[("SM_MODEL_DIR", tmp.path().to_str().expect("utf-8"))],
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("model.json") && err.contains("cannot read"),
        "{err}"
    );
}
