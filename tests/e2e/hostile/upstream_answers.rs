//! What SageMaker (or anything at the endpoint URL) can send back: an answer longer than the
//! gateway reads, declared up front or close-delimited without end, is cut off with a 502 and never
//! held whole; the gateway keeps serving.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::kit::config::KEY_A;
use crate::kit::{Gateway, SageMakerReply, Upstream};

/// `MAX_ANSWER_BYTES` of `src/upstream/mod.rs`: API Gateway's 10 MB payload limit.
const MAX_ANSWER_BYTES: usize = 10 * 1024 * 1024;

/// An endpoint that answers each request (at most `calls` connections) with a 200 whose body has
/// no length and runs to `bytes` bytes before the connection closes: HTTP/1.1's close-delimited
/// body, which no header announces.
async fn close_delimited_endpoint(calls: usize, bytes: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        for _ in 0..calls {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = conn
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n")
                    .await;
                let chunk = vec![b' '; 64 * 1024];
                for _ in 0..bytes / chunk.len() {
                    if conn.write_all(&chunk).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_longer_than_the_gateway_reads_is_a_502_not_held_whole() {
    // Declared: a Content-Length past the bound is refused before the body is read, and the call
    // is not retried (the same answer would come back).
    let padded = format!(r#"{{"pad":"{}"}}"#, "x".repeat(MAX_ANSWER_BYTES));
    let upstream = Upstream::replying(SageMakerReply::ok(&padded)).await;
    let gateway = Gateway::in_front_of(&upstream).await;
    gateway
        .recommend("temp", "U:1", Some(KEY_A))
        .await
        .assert_bad_gateway();
    assert_eq!(upstream.count(), 1, "not retried");
    // Up to the bound, an answer passes whole.
    let fits = format!(r#"{{"pad":"{}"}}"#, "x".repeat(MAX_ANSWER_BYTES - 100));
    upstream.reply_with(SageMakerReply::ok(&fits));
    let reply = gateway.recommend("temp", "U:1", Some(KEY_A)).await;
    assert_eq!(
        reply.assert_ok()["pad"].as_str().map(str::len),
        Some(MAX_ANSWER_BYTES - 100)
    );

    // Undeclared: a close-delimited body is cut off once it passes the bound (it would otherwise
    // be read until the route timeout, whatever its size).
    let endless = close_delimited_endpoint(2, 3 * MAX_ANSWER_BYTES).await;
    let gateway = Gateway::builder().upstream_url(&endless).start().await;
    gateway
        .recommend("temp", "U:1", Some(KEY_A))
        .await
        .assert_bad_gateway();
    gateway
        .wait_for_log(&format!("answer longer than {MAX_ANSWER_BYTES} bytes"))
        .await;
}
