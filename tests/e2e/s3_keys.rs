//! Keys from an S3 object (`--keys s3://bucket/keys.yaml`), against an in-test S3 on loopback
//! ([`crate::kit::s3`]) reached through `AWS_ENDPOINT_URL_S3`: the start-up read serves the demo
//! key; a new upload is picked up by the next poll (new key accepted, removed key refused);
//! 403, 500 and an answer that is not HTTP are logged and keep the keys in force; every request
//! the gateway made was a path-style `GetObject`, conditional after the first, correctly signed
//! for S3.

use crate::kit::config::{Key, Plan};
use crate::kit::s3::{FakeS3, S3Reply};
use crate::kit::{DEMO_KEY, Gateway, GatewayYaml, Upstream, WAIT, eventually, shipped_config_dir};

const KEY_NEW: &str = "e2e-key-s3-new-partner-0123456789";

async fn status(gateway: &Gateway, key: &str) -> u16 {
    gateway.key_status(key).await
}

async fn until_key_gets(gateway: &Gateway, key: &str, want: u16) {
    gateway.until_key_gets(key, want).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_object_is_polled_by_etag_and_failures_keep_the_keys() {
    let shipped = std::fs::read_to_string(shipped_config_dir().join("keys.yaml")).unwrap();
    let s3 = FakeS3::start("keys-bucket", "keys.yaml", &shipped).await;
    let upstream = Upstream::start().await;
    let gateway = Gateway::builder()
        .config(GatewayYaml::standard())
        .keys_source("s3://keys-bucket/keys.yaml")
        .env("AWS_ENDPOINT_URL_S3", &s3.url())
        .env("SAGEGATE_KEYS_POLL_INTERVAL", "0.2")
        .upstream(&upstream)
        .start()
        .await;
    assert_eq!(status(&gateway, DEMO_KEY).await, 200);
    assert_eq!(status(&gateway, KEY_NEW).await, 403);
    // Unchanged object: polls are answered 304.
    eventually("a 304 poll", WAIT, || {
        let seen = s3.received().iter().any(|r| r.status == 304);
        async move { seen.then_some(()) }
    })
    .await;

    // A new upload: the new key works, the removed demo key is refused.
    let v2 = crate::kit::KeysYaml::new()
        .plan(Plan::new("standard", &["temp", "prod"]).throttle(1000.0, 2000))
        .key(Key::new("partner-new", KEY_NEW, &["standard"]))
        .render();
    s3.upload(&v2);
    until_key_gets(&gateway, KEY_NEW, 200).await;
    until_key_gets(&gateway, DEMO_KEY, 403).await;
    gateway.wait_for_log("keys reloaded").await;

    // Failing polls are logged with their cause; the keys in force stay.
    for (reply, needle) in [
        (
            S3Reply::Error(403, "AccessDenied"),
            "cannot get the keys object: HTTP 403 AccessDenied",
        ),
        (
            S3Reply::Error(500, "InternalError"),
            "cannot get the keys object: HTTP 500 InternalError",
        ),
        (
            S3Reply::Garbage,
            "cannot get the keys object: dispatch failure",
        ),
    ] {
        s3.reply_with(reply);
        gateway.wait_for_log(needle).await;
        assert_eq!(status(&gateway, KEY_NEW).await, 200, "after {needle}");
        assert_eq!(status(&gateway, DEMO_KEY).await, 403, "after {needle}");
    }
    assert!(
        gateway.stdout().contains("the previous keys stay in force"),
        "{}",
        gateway.stdout()
    );

    // S3 healthy again with the demo key back: picked up.
    s3.reply_with(S3Reply::Object);
    s3.upload(&shipped);
    until_key_gets(&gateway, DEMO_KEY, 200).await;
    until_key_gets(&gateway, KEY_NEW, 403).await;

    let seen = s3.received();
    assert!(seen.len() >= 6, "{seen:#?}");
    for r in &seen {
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("GET", "/keys-bucket/keys.yaml"),
            "{r:#?}"
        );
        assert_eq!(r.signature, Ok(()), "{r:#?}");
    }
    // The start-up read is unconditional; every poll after it carries the last ETag seen.
    assert_eq!(seen[0].if_none_match, None, "{:#?}", seen[0]);
    assert!(
        seen[1..].iter().all(|r| r.if_none_match.is_some()),
        "{seen:#?}"
    );
    assert!(
        seen.iter()
            .any(|r| r.if_none_match.as_deref() == Some(s3.etag().as_str()))
    );
    // Neither the secret nor a signature reaches the log.
    let log = gateway.stdout();
    assert!(!log.contains("Signature="), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_keys_object_fails_start_with_the_cause() {
    let s3 = FakeS3::start("keys-bucket", "keys.yaml", "keys: []\n").await;
    let mut cmd = std::process::Command::new(crate::kit::sagegate_bin());
    cmd.args(["check-config", "--config"])
        .arg(shipped_config_dir().join("gateway.yaml"))
        .args(["--keys", "s3://keys-bucket/other.yaml"])
        .env_clear()
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .env("AWS_ENDPOINT_URL_S3", s3.url());
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "s3://keys-bucket/other.yaml:0:0: (root): cannot get the keys object: HTTP 404 NoSuchKey"
        ),
        "{stderr}"
    );
    let seen = s3.received();
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert_eq!(seen[0].signature, Ok(()), "{seen:#?}");
}
