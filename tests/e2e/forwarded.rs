//! The client address behind proxies: with `trusted_proxy_hops: 1` the access log's
//! `identity.sourceIp` is the last `X-Forwarded-For` entry (what the ALB appended), and entries a
//! client wrote itself are ignored; with 0 the header is ignored and the peer address is used.

use crate::kit::config::KEY_A;
use crate::kit::{Gateway, GatewayYaml, Upstream};

const SEED: &str = "/temp/recommended-movies/U:114521?k=10&inference_type=deterministic";

async fn source_ip(gateway: &Gateway, forwarded_for: Option<&str>) -> String {
    let mut req = gateway.get(SEED).key(KEY_A);
    if let Some(xff) = forwarded_for {
        req = req.header("x-forwarded-for", xff);
    }
    let reply = req.send().await;
    reply.assert_ok();
    let entry = gateway.access_entry(&reply.request_id()).await;
    entry["identity.sourceIp"]
        .as_str()
        .unwrap_or_else(|| panic!("no identity.sourceIp in {entry}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trusted_hop_takes_the_last_forwarded_entry() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::builder()
        .config(GatewayYaml::standard().trusted_proxy_hops(1))
        .upstream(&upstream)
        .start()
        .await;
    assert_eq!(
        source_ip(&gateway, Some("203.0.113.7")).await,
        "203.0.113.7"
    );
    assert_eq!(
        source_ip(&gateway, Some("6.6.6.6, 203.0.113.7")).await,
        "203.0.113.7",
        "a client-supplied leftmost entry is ignored"
    );
    assert_eq!(source_ip(&gateway, None).await, "127.0.0.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_trusted_hops_uses_the_peer_address() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::in_front_of(&upstream).await;
    assert_eq!(source_ip(&gateway, Some("203.0.113.7")).await, "127.0.0.1");
}
