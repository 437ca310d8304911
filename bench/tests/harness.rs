//! End-to-end check of the benchmark binaries against each other: `fake-sagemaker` on a free
//! loopback port, `loadgen` in count mode, `stack-floor` between them. Proves the harness measures
//! what it claims — every answer counted once, non-2xx told apart from 2xx, refused connections
//! reported as errors, the closed loop really holding N requests in flight, and the floor row
//! really forwarding.

// Helpers outside `#[test]` functions are test code too; clippy.toml's test allowance does not reach them.
#![allow(clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A running benchmark server (`fake-sagemaker`, `stack-floor`), killed on drop.
struct Running {
    child: Child,
    addr: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn upstream(delay_ms: u64) -> Running {
    start(
        env!("CARGO_BIN_EXE_fake-sagemaker"),
        &["--delay-ms", &delay_ms.to_string()],
    )
}

/// Starts `binary --listen 127.0.0.1:0 args...`. Each binary prints its bound address once
/// listening: reading that line is the readiness poll.
fn start(binary: &str, args: &[&str]) -> Running {
    let mut child = Command::new(binary)
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the server");
    let stderr = child.stderr.take().expect("stderr");
    let mut line = String::new();
    BufReader::new(stderr).read_line(&mut line).expect("read");
    let addr = line.trim().rsplit(' ').next().expect("address").to_owned();
    Running { child, addr }
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

/// One request on a fresh connection (`Connection: close`), bounded by a 10 s read timeout:
/// the status code, the `content-type` and the body.
fn exchange(addr: &str, method: &str, target: &str, body: &str) -> (u16, Option<String>, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head");
    let status = head
        .split(' ')
        .nth(1)
        .expect("status")
        .parse()
        .expect("code");
    let content_type = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.trim().to_owned());
    (status, content_type, body.to_owned())
}

#[test]
fn the_stack_floor_forwards_to_the_upstream_and_answers_502_without_one() {
    let up = upstream(0);
    let floor = start(env!("CARGO_BIN_EXE_stack-floor"), &["--upstream", &up.addr]);
    let url = format!("http://{}/prod/recommended-movies/U1?k=5", floor.addr);
    let r = loadgen(&["--url", &url, "-c", "2", "--requests", "50"]);
    assert_eq!(r["ok"], 50, "{r}");
    assert_eq!(r["non_2xx"], 0, "{r}");

    // The answer is the upstream's own: status, content type and body as a direct invocation gets them.
    let direct = exchange(
        &up.addr,
        "POST",
        "/endpoints/movie-recommender-prod/invocations",
        "{}",
    );
    assert_eq!(direct.0, 200, "{direct:?}");
    let proxied = exchange(&floor.addr, "GET", "/prod/recommended-movies/U1?k=5", "");
    assert_eq!(proxied, direct);
    // An upstream status other than 200 is passed on too: a floor with an endpoint name the
    // upstream does not serve answers the upstream's 404 and its body.
    let elsewhere = start(
        env!("CARGO_BIN_EXE_stack-floor"),
        &["--upstream", &up.addr, "--endpoint", "a/b"],
    );
    let missing = exchange(&up.addr, "POST", "/endpoints/a/b/invocations", "{}");
    assert_eq!(missing.0, 404, "{missing:?}");
    let proxied = exchange(&elsewhere.addr, "GET", "/prod/recommended-movies/U1", "");
    assert_eq!(proxied, missing);

    // An upstream that is gone: every request is answered, as a 502.
    let gone = up.addr.clone();
    drop(up);
    let floor = start(env!("CARGO_BIN_EXE_stack-floor"), &["--upstream", &gone]);
    let url = format!("http://{}/prod/recommended-movies/U1", floor.addr);
    let r = loadgen(&["--url", &url, "-c", "1", "--requests", "5"]);
    assert_eq!(r["ok"], 0, "{r}");
    assert_eq!(r["non_2xx"], 5, "{r}");
    assert_eq!(r["errors"], 0, "{r}");
}
