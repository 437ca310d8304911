//! `hold-bodies`: the slow-body memory attack of issue 14, bounded, with the target's RSS sampled.
//!
//! Opens N connections to the gateway; on each sends a request head declaring `Content-Length:
//! <declared>` and then the body one byte short of it (so the request never completes), and holds
//! the connection for `--hold-secs` (plus one second, after the last sample). Meanwhile it samples the target process's RSS from
//! `/proc/<pid>/status`. Output: one JSON object — RSS before, peak and after the hold (KiB), and
//! what each connection got back (a status, `closed`, or `open` if nothing came within the hold).
//!
//! Invariants: loopback targets only (the address must be 127.0.0.1, ::1 or localhost); at most
//! 1 000 connections and 600 s; every connection is closed at the end.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Parser)]
#[command(
    name = "hold-bodies",
    about = "Hold N requests with bodies one byte short and print the target's RSS as JSON"
)]
struct Args {
    /// Gateway address, e.g. 127.0.0.1:8080 (loopback only).
    #[arg(long)]
    addr: String,
    /// Request target.
    #[arg(long, default_value = "/x/y")]
    path: String,
    /// Method.
    #[arg(long, default_value = "POST")]
    method: String,
    /// Extra header `Name: value`; repeatable (e.g. an API key).
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// Connections held at once.
    #[arg(long, short = 'c', default_value_t = 40)]
    connections: usize,
    /// Declared Content-Length.
    #[arg(long, default_value_t = 10 * 1024 * 1024)]
    declared: usize,
    /// Body bytes actually sent (default: declared - 1).
    #[arg(long)]
    send: Option<usize>,
    /// Seconds to hold the connections after the bodies are sent.
    #[arg(long, default_value_t = 15.0)]
    hold_secs: f64,
    /// Process whose RSS is sampled (the gateway).
    #[arg(long)]
    pid: u32,
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Sends the head and `send` body bytes, then waits for an answer until `until`.
async fn hold(
    addr: String,
    head: String,
    send: usize,
    until: Instant,
) -> anyhow::Result<&'static str> {
    let mut stream = TcpStream::connect(&addr).await?;
    stream.write_all(head.as_bytes()).await?;
    let chunk = vec![b'x'; 64 * 1024];
    let mut left = send;
    while left > 0 {
        let n = left.min(chunk.len());
        if stream.write_all(&chunk[..n]).await.is_err() {
            break;
        }
        left -= n;
    }
    let mut buf = [0u8; 512];
    let read = tokio::time::timeout_at(until.into(), stream.read(&mut buf)).await;
    Ok(match read {
        Err(_) => "open",
        Ok(Ok(0)) | Ok(Err(_)) => "closed",
        Ok(Ok(n)) => status_of(&buf[..n]),
    })
}

fn status_of(answer: &[u8]) -> &'static str {
    match answer.get(9..12) {
        Some(b"400") => "400",
        Some(b"403") => "403",
        Some(b"408") => "408",
        Some(b"413") => "413",
        Some(b"429") => "429",
        Some(b"503") => "503",
        Some(b"200") => "200",
        _ => "other",
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let host = args.addr.rsplit_once(':').map_or("", |(h, _)| h);
    if !matches!(host, "127.0.0.1" | "[::1]" | "localhost") {
        bail!("--addr must be a loopback address, got {}", args.addr);
    }
    if args.connections > 1000 || args.hold_secs > 600.0 {
        bail!("at most 1000 connections and 600 s");
    }
    let send = args.send.unwrap_or(args.declared.saturating_sub(1));
    let mut head = format!(
        "{} {} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/octet-stream\r\ncontent-length: {}\r\n",
        args.method, args.path, args.addr, args.declared
    );
    for h in &args.headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");

    let before = rss_kb(args.pid);
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(args.hold_secs);
    // The connections stay a second past the last sample, so it sees them all still open.
    let release = until + Duration::from_secs(1);
    let tasks: Vec<_> = (0..args.connections)
        .map(|_| tokio::spawn(hold(args.addr.clone(), head.clone(), send, release)))
        .collect();
    let mut peak = before;
    while Instant::now() < until {
        peak = peak.max(rss_kb(args.pid));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let at_end = rss_kb(args.pid);
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for task in tasks {
        let outcome = match task.await.context("connection task")? {
            Ok(o) => o.to_owned(),
            Err(e) => format!("error: {e}"),
        };
        *outcomes.entry(outcome).or_default() += 1;
    }
    println!(
        "{}",
        serde_json::json!({
            "connections": args.connections,
            "declared": args.declared,
            "sent": send,
            "hold_secs": args.hold_secs,
            "rss_before_kb": before,
            "rss_peak_kb": peak,
            "rss_end_of_hold_kb": at_end,
            "outcomes": outcomes,
        })
    );
    Ok(())
}
