//! Drain on SIGTERM: `/healthz` stops answering 200, new connections are refused, the request in
//! flight still completes with 200, and the process exits 0 within the grace.

use std::time::Duration;

use crate::kit::config::KEY_A;
use crate::kit::{Gateway, GatewayYaml, SageMakerReply, Upstream, WAIT, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_then_exits_zero() {
    let upstream = Upstream::replying(SageMakerReply::ok_default().held()).await;
    let mut gateway = Gateway::builder()
        .config(GatewayYaml::standard().drain_grace_secs(5))
        .upstream(&upstream)
        .start()
        .await;
    let in_flight = {
        let req = gateway
            .get("/temp/recommended-movies/U:114521?k=10&inference_type=deterministic")
            .key(KEY_A);
        tokio::spawn(req.send())
    };
    eventually("the request to reach the upstream", WAIT, || {
        let n = upstream.count();
        async move { (n == 1).then_some(()) }
    })
    .await;

    gateway.signal("TERM");
    eventually("/healthz to stop answering 200", WAIT, || async {
        gateway
            .health()
            .await
            .is_none_or(|s| s == 503)
            .then_some(())
    })
    .await;
    let addr = gateway.addr();
    eventually("new connections to be refused", WAIT, || async move {
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1))
            .is_err()
            .then_some(())
    })
    .await;
    assert!(
        gateway.exited().is_none(),
        "exited with a request in flight"
    );

    upstream.release();
    let reply = tokio::time::timeout(WAIT, in_flight)
        .await
        .expect("in-flight request completed")
        .unwrap();
    reply.assert_ok();
    let status = gateway.wait_exit(WAIT).await;
    assert_eq!(status.code(), Some(0), "stdout:\n{}", gateway.stdout());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_stuck_past_the_grace_does_not_keep_the_process_alive() {
    let upstream = Upstream::replying(SageMakerReply::ok_default().held()).await;
    let mut gateway = Gateway::builder()
        .config(GatewayYaml::standard().drain_grace_secs(1))
        .upstream(&upstream)
        .start()
        .await;
    let stuck = tokio::spawn(
        gateway
            .get("/temp/recommended-movies/U:114521?k=10&inference_type=deterministic")
            .key(KEY_A)
            .send_raw(),
    );
    eventually("the request to reach the upstream", WAIT, || {
        let n = upstream.count();
        async move { (n == 1).then_some(()) }
    })
    .await;
    gateway.signal("TERM");
    // The upstream never answers; the process still ends once the grace is over.
    let status = gateway.wait_exit(WAIT).await;
    assert!(
        status.code().is_some(),
        "exited by itself, not killed: {status}"
    );
    let outcome = tokio::time::timeout(WAIT, stuck)
        .await
        .expect("client unblocked");
    assert!(
        outcome.unwrap().is_err(),
        "the stuck request cannot have been answered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_do_not_hold_up_shutdown() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let upstream = Upstream::start().await;
    // A grace longer than the wait below: exiting within the wait means idle connections were
    // closed at once rather than waited for (an ALB always holds some open).
    let mut gateway = Gateway::builder()
        .config(GatewayYaml::standard().drain_grace_secs(120))
        .upstream(&upstream)
        .start()
        .await;
    let mut idle = tokio::net::TcpStream::connect(gateway.addr())
        .await
        .unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    gateway.signal("TERM");
    let status = gateway.wait_exit(WAIT).await;
    assert_eq!(status.code(), Some(0));
}
