//! End-to-end tests of the real `sagegate` binary: each test starts `sagegate serve` on a loopback
//! port with its own `gateway.yaml` and `keys.yaml`, in front of either the real `recommender`
//! binary or an in-test SageMaker Runtime that records what it receives and answers with scripted
//! replies and faults, and speaks HTTP to it. One module per feature; the kit is in [`kit`].
//!
//! Invariants of the suite: loopback only (the AWS SDK in the gateway is pointed at 127.0.0.1 and
//! has no instance metadata or config files), every wait is a bounded poll, no assertion on time,
//! and every process a test starts is killed when the test ends.

// The whole crate is test code: clippy.toml allows unwrap/expect/panic in tests, and the kit's
// helpers sit outside `#[test]` functions, so say it for the crate.
#![cfg(test)]

mod kit;

mod access_log;
mod breaker;
mod cache;
mod canary;
mod chaos;
mod cli;
mod config_reload;
mod dashboards;
mod drain;
mod errors;
mod forwarded;
mod hostile;
mod import;
mod keys;
mod load;
mod mapping;
mod metrics;
mod otel;
mod quota;
mod reload;
mod retries;
mod s3_keys;
mod sagemaker_request;
mod seed;
mod shadow;
mod shared_limits;
mod streaming;
mod throttling;
mod upstream_paths;
