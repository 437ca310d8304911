//! End-to-end check of the two benchmark binaries against each other: `fake-sagemaker` on a free
//! loopback port, `loadgen` in count mode. Proves the harness measures what it claims — every answer
//! counted once, non-2xx told apart from 2xx, refused connections reported as errors, and the
//! closed loop really holding N requests in flight.

// Helpers outside `#[test]` functions are test code too; clippy.toml's test allowance does not reach them.
#![allow(clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A running `fake-sagemaker`, killed on drop.
struct Upstream {
    child: Child,
    addr: String,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn upstream(delay_ms: u64) -> Upstream {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fake-sagemaker"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--delay-ms",
            &delay_ms.to_string(),
        ])
        .stderr(Stdio::piped())
        .spawn()
        .expect("start fake-sagemaker");
    // It prints its bound address once listening: reading that line is the readiness poll.
    let stderr = child.stderr.take().expect("stderr");
    let mut line = String::new();
    BufReader::new(stderr).read_line(&mut line).expect("read");
    let addr = line.trim().rsplit(' ').next().expect("address").to_owned();
    Upstream { child, addr }
}

fn loadgen(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .output()
        .expect("run loadgen");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("loadgen prints JSON")
}

#[test]
fn every_invocation_is_answered_and_counted_once() {
    let up = upstream(0);
    let url = format!("http://{}/endpoints/m/invocations", up.addr);
    let r = loadgen(&[
        "--url",
        &url,
        "--method",
        "POST",
        "--body",
        "{}",
        "-c",
        "4",
        "--requests",
        "200",
    ]);
    assert_eq!(r["ok"], 200, "{r}");
    assert_eq!(r["requests"], 200, "{r}");
    assert_eq!(r["errors"], 0, "{r}");
    assert_eq!(r["non_2xx"], 0, "{r}");
}

#[test]
fn wrong_method_or_path_is_counted_as_non_2xx() {
    let up = upstream(0);
    let get = format!("http://{}/endpoints/m/invocations", up.addr);
    let r = loadgen(&["--url", &get, "-c", "2", "--requests", "10"]);
    assert_eq!(r["non_2xx"], 10, "{r}");
    assert_eq!(r["ok"], 0, "{r}");
    let other = format!("http://{}/ping", up.addr);
    let r = loadgen(&["--url", &other, "--method", "POST", "--requests", "3"]);
    assert_eq!(r["non_2xx"], 3, "{r}");
}

#[test]
fn a_closed_port_is_reported_as_errors_not_success() {
    // Bind and drop to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let url = format!("http://127.0.0.1:{port}/x");
    let r = loadgen(&[
        "--url",
        &url,
        "-c",
        "2",
        "--duration-secs",
        "0.3",
        "--warmup-secs",
        "0",
    ]);
    assert_eq!(r["ok"], 0, "{r}");
    assert!(r["errors"].as_u64().expect("errors") > 0, "{r}");
    assert!(
        r["first_error"]
            .as_str()
            .expect("first_error")
            .contains("connect"),
        "{r}"
    );
}

#[test]
fn every_connection_holds_a_request_in_flight_against_a_slow_upstream() {
    let up = upstream(2000);
    let url = format!("http://{}/endpoints/m/invocations", up.addr);
    let r = loadgen(&[
        "--url",
        &url,
        "--method",
        "POST",
        "-c",
        "50",
        "--requests",
        "50",
    ]);
    assert_eq!(r["ok"], 50, "{r}");
    // All 50 connections are open before the start signal and the upstream holds each answer for
    // 2 s (far longer than sending 50 requests takes even on a busy machine), so they all overlap.
    assert_eq!(r["peak_in_flight"], 50, "{r}");
}
