//! The test kit: start the real binaries and speak HTTP to them, in sentences.
//!
//! - [`gateway`]: writes `gateway.yaml` and `keys.yaml` into a temp dir, starts the real
//!   `sagegate serve` on `127.0.0.1:0`, reads the bound address from its log, polls `/healthz`,
//!   captures stdout and stderr to files, and kills the process on drop.
//! - [`upstream`]: an in-test SageMaker Runtime stand-in speaking HTTP/1.1 on loopback: it records
//!   every request (and checks its SigV4 signature) and answers with the reply the test scripts —
//!   success, each SageMaker error, a delay, a reset, a close, or a hold until released.
//! - [`recommender`]: the real `recommender` binary on a sample model.
//! - [`event_stream`]: an in-test SageMaker answering `InvokeEndpointWithResponseStream` with as
//!   many event-stream bytes as a test asks for, counting what it has written.
//! - [`otlp`]: an in-test OTLP/HTTP trace collector decoding spans with the official protobuf types.
//! - [`client`]: requests to the gateway and assertions every response must satisfy.
//! - [`s3`]: an in-test S3 serving the keys object (ETag, 304 on `If-None-Match`, scripted
//!   errors), checking every request's SigV4 signature as S3 does.
//! - [`sigv4`]: recomputes an AWS Signature Version 4 from what the upstream received.
//! - [`tcp_queues`]: the bytes the kernel queues on a loopback connection, to tell socket buffers
//!   from what a process holds.
//! - [`redis`]: a real `redis-server` on loopback for the shared limit store, which a test can
//!   stop, start again empty, or pause.
//!
//! Every wait is a bounded poll; every process started here is killed when its handle drops.

pub mod chaos;
pub mod client;
pub mod config;
pub mod event_stream;
pub mod gateway;
pub mod otlp;
pub mod recommender;
pub mod redis;
pub mod s3;
pub mod sigv4;
pub mod tcp_queues;
pub mod upstream;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use client::{Reply, is_uuid};
pub use config::{GatewayYaml, KeysYaml};
pub use gateway::Gateway;
pub use recommender::Recommender;
pub use redis::RedisServer;
pub use upstream::{SageMakerReply, Upstream};

/// Upper bound of every start-up, reload or shutdown wait (debug builds on a busy 2-core box).
pub const WAIT: Duration = Duration::from_secs(30);

/// The demo key of the shipped `config/keys.yaml` (documented in the README).
pub const DEMO_KEY: &str = "sagegate-demo-key-0123456789";

/// The `sagegate` binary under test.
pub fn sagegate_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sagegate"))
}

/// The shipped configuration directory.
pub fn shipped_config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config")
}

/// Polls `check` every 25 ms until it returns `Some`, at most `within`; panics with `what` after.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A loopback port nobody listens on (bound, then released).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}
