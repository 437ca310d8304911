//! Callers that do not read their answers: a connection whose client stops reading must not make
//! the gateway hold a copy of the whole answer. Before this test, 150 such connections to one cached
//! 4 MiB answer took the gateway from 42 MB to 654 MB RSS, none of it in the memory budget (a hit
//! charges nothing: the answer is the cache's), because the whole body was copied into each
//! connection's write buffer.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

use crate::cache::cached_config;
use crate::kit::config::KEY_A;
use crate::kit::{Gateway, KeysYaml, SageMakerReply, Upstream, WAIT, eventually};

/// Resident memory of process `pid` in bytes (Linux).
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status");
    kb * 1024
}

/// A connection that sends `request` and never reads (a 4 KiB receive buffer).
pub(super) async fn never_reading(gateway: &Gateway, request: &[u8]) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(gateway.addr()).await.unwrap();
    stream.write_all(request).await.unwrap();
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_that_stop_reading_hold_no_copy_of_a_cached_answer() {
    const ANSWER: usize = 4 * 1024 * 1024;
    const READERS: usize = 40;
    let answer = format!(r#"{{"pad":"{}"}}"#, "x".repeat(ANSWER));
    let upstream = Upstream::replying(SageMakerReply::ok(&answer)).await;
    let gateway = Gateway::builder()
        .config_text(&cached_config(
            "{ enabled: true, max_entry_bytes: 8388608 }",
            "{ enabled: false }",
        ))
        .keys(KeysYaml::standard())
        .upstream(&upstream)
        .start()
        .await;
    let path = "/temp/recommended-movies/U:1?k=1&inference_type=deterministic";
    for expected in ["miss", "hit"] {
        let reply = gateway.get(path).key(KEY_A).send().await;
        reply.assert_ok();
        assert_eq!(reply.header("x-sagegate-cache"), Some(expected));
    }
    let before = rss(gateway.pid());

    let request = format!("GET {path} HTTP/1.1\r\nhost: gw\r\nx-api-key: {KEY_A}\r\n\r\n");
    let mut readers = Vec::new();
    for _ in 0..READERS {
        readers.push(never_reading(&gateway, request.as_bytes()).await);
    }
    // Every answer has been handed to its connection once its access-log line is out.
    eventually("every slow reader answered", WAIT, || {
        let hits = gateway
            .access_log()
            .iter()
            .filter(|l| l["cacheStatus"] == "hit")
            .count();
        async move { (hits > READERS).then_some(()) }
    })
    .await;
    let mut peak = 0;
    for _ in 0..20 {
        peak = peak.max(rss(gateway.pid()));
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let grown = peak.saturating_sub(before);
    // A whole copy per connection would be READERS × 4 MiB = 160 MiB; pieces are 16 KiB.
    assert!(
        grown < (READERS * ANSWER / 4) as u64,
        "{READERS} callers not reading a cached {ANSWER}-byte answer grew the gateway by {grown} bytes"
    );
    assert_eq!(
        upstream.count(),
        1,
        "one call, every other answer from the cache"
    );
    drop(readers);
    gateway
        .recommend("temp", "U:1", Some(KEY_A))
        .await
        .assert_ok();
}
