//! The key lifecycle from the command line, `sagegate keys list|new|disable|enable|rotate|remove
//! --keys SOURCE`, against a file and against the signature-checking in-test S3, with a running
//! gateway picking each change up at its reload: a new key answers 200, a disabled or removed key
//! 403, a rotated key's old value 403 and its new value 200. Edits keep the file's comments and
//! layout; bad input (unknown id or plan, duplicate id) exits 2 and changes no byte; two concurrent
//! edits of the S3 object lose neither (the second is refused with exit 75 and succeeds when run
//! again); `list` never shows a value or a hash.

use std::process::Output;

use sha2::{Digest, Sha256};

use crate::kit::config::KEY_A;
use crate::kit::s3::FakeS3;
use crate::kit::{Gateway, GatewayYaml, Upstream, sagegate_bin};

const KEY_C: &str = "e2e-key-flow-c-0123456789";

/// A keys file as operators keep them: comments, a blank line, a flow entry, a plain value.
fn fixture() -> String {
    format!(
        "# Keys of the e2e tests. Comments, blank lines and the flow entry survive every edit.
usage_plans:
  - id: standard   # generous: throttling never interferes
    stages: [temp, prod]
    throttle: {{ rate_limit: 1000, burst_limit: 2000 }}

keys:
  # The first partner.
  - id: partner-a
    name: Partner A
    usage_plans: [standard]
    value: {KEY_A}   # local value

  - {{id: flow-c, usage_plans: [standard], value: \"{KEY_C}\"}}
"
    )
}

/// The lines every edit below must leave as they are.
const KEPT: [&str; 4] = [
    "# Keys of the e2e tests. Comments, blank lines and the flow entry survive every edit.\n",
    "  - id: standard   # generous: throttling never interferes\n",
    "    throttle: { rate_limit: 1000, burst_limit: 2000 }\n",
    "  - {id: flow-c, usage_plans: [standard], value: \"e2e-key-flow-c-0123456789\"}\n",
];

/// Runs `sagegate keys ARGS` (off the runtime's threads: the fake S3 serves on them) with only
/// `env` in its environment.
async fn keys(args: &[&str], env: &[(&str, String)]) -> Output {
    let mut cmd = std::process::Command::new(sagegate_bin());
    cmd.arg("keys").args(args).env_clear();
    for (k, v) in env {
        cmd.env(k, v);
    }
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

/// The environment of a `sagegate` run against the in-test S3.
fn s3_env(s3: &FakeS3) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", "test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ("AWS_CONFIG_FILE", "/nonexistent".to_owned()),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent".to_owned()),
        ("AWS_ENDPOINT_URL_S3", s3.url()),
    ]
}

/// Asserts success and returns stdout.
fn ok(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// The key value a `new` or `rotate` printed (the one indented line of 40 alphanumerics).
fn printed_key(stdout: &str) -> String {
    let values: Vec<&str> = stdout
        .lines()
        .map(str::trim)
        .filter(|l| l.len() == 40 && l.bytes().all(|b| b.is_ascii_alphanumeric()))
        .collect();
    assert_eq!(values.len(), 1, "one key, printed once:\n{stdout}");
    values[0].to_owned()
}

fn sha256(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

async fn status(gateway: &Gateway, key: &str) -> u16 {
    gateway.key_status(key).await
}

async fn until_key_gets(gateway: &Gateway, key: &str, want: u16) {
    gateway.until_key_gets(key, want).await
}

/// Every edit command in turn on `source` (whose text `read` returns), with `gateway` serving
/// from it.
async fn lifecycle(
    gateway: &Gateway,
    source: &str,
    env: &[(&str, String)],
    read: impl Fn() -> String,
) {
    let config = gateway.config_path();
    let config = config.to_str().unwrap();
    let edit = |cmd: &'static str, id: &'static str| {
        [cmd, "--keys", source, "--id", id, "--config", config].map(str::to_owned)
    };
    let run = |args: [String; 7]| async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        keys(&args, env).await
    };
    assert_eq!(status(gateway, KEY_A).await, 200);

    // A new key: printed once, stored as its hash, accepted after the reload.
    let out = keys(
        &[
            "new",
            "--keys",
            source,
            "--id",
            "partner-b",
            "--plan",
            "standard",
            "--name",
            "Partner B",
            "--config",
            config,
        ],
        env,
    )
    .await;
    let key_b = printed_key(&ok(&out));
    let text = read();
    assert!(
        text.contains(&format!("value_sha256: \"{}\"", sha256(&key_b))),
        "{text}"
    );
    assert!(!text.contains(&key_b), "the file holds only the hash");
    until_key_gets(gateway, &key_b, 200).await;

    // Disabled: 403; enabled again: 200.
    ok(&run(edit("disable", "partner-b")).await);
    until_key_gets(gateway, &key_b, 403).await;
    ok(&run(edit("enable", "partner-b")).await);
    until_key_gets(gateway, &key_b, 200).await;

    // Rotated: the old value 403, the new one 200.
    let new_a = printed_key(&ok(&run(edit("rotate", "partner-a")).await));
    until_key_gets(gateway, &new_a, 200).await;
    until_key_gets(gateway, KEY_A, 403).await;

    // Removed: 403.
    ok(&run(edit("remove", "partner-b")).await);
    until_key_gets(gateway, &key_b, 403).await;
    assert_eq!(status(gateway, KEY_C).await, 200, "the other keys stay");

    let text = read();
    for line in KEPT {
        assert!(text.contains(line), "`{line}` lost:\n{text}");
    }
    assert!(!text.contains("partner-b"), "{text}");
    assert!(
        text.contains("  # The first partner.\n  - id: partner-a\n"),
        "{text}"
    );

    // Bad input: exit 2, a clear message, not one byte changed.
    let before = read();
    for (args, says) in [
        (
            edit("disable", "nobody").to_vec(),
            "no key with id `nobody` (keys: partner-a, flow-c)",
        ),
        (
            [
                "new", "--keys", source, "--id", "x", "--plan", "gold", "--config", config,
            ]
            .map(str::to_owned)
            .to_vec(),
            "no usage plan `gold` (usage plans: standard)",
        ),
        (
            [
                "new", "--keys", source, "--id", "flow-c", "--plan", "standard", "--config", config,
            ]
            .map(str::to_owned)
            .to_vec(),
            "a key with id `flow-c` exists already",
        ),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = keys(&args, env).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(says) && stderr.contains("nothing was changed"),
            "{stderr}"
        );
        assert!(out.stdout.is_empty(), "no key printed: {out:?}");
        assert_eq!(read(), before, "{args:?} changed the source");
    }

    // `list`: ids, names, plans, state, how each is stored; never a value or a hash.
    let table = ok(&keys(&["list", "--keys", source], env).await);
    let json: serde_json::Value =
        serde_json::from_str(&ok(&keys(&["list", "--keys", source, "--json"], env).await)).unwrap();
    assert!(table.contains("partner-a  Partner A  yes"), "{table}");
    assert_eq!(json["keys"][0]["id"], "partner-a");
    assert_eq!(json["keys"][0]["stored_as"], "sha256");
    assert_eq!(json["keys"][1]["stored_as"], "plain value");
    for out in [&table, &json.to_string()] {
        for secret in [KEY_C.to_owned(), new_a.clone(), sha256(&new_a)] {
            assert!(!out.contains(&secret), "list shows a value or hash:\n{out}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_commands_edit_a_file_and_a_running_gateway_follows() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::builder()
        .keys_text(&fixture())
        .upstream(&upstream)
        .start()
        .await;
    let path = gateway.keys_path();
    let source = path.to_str().unwrap().to_owned();
    lifecycle(&gateway, &source, &[], || {
        std::fs::read_to_string(&path).unwrap()
    })
    .await;
    // Written by rename: no temporary file is left beside it.
    let names: Vec<String> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("keys.yaml"))
        .collect();
    assert_eq!(names, ["keys.yaml"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_commands_edit_an_s3_object_with_conditional_puts() {
    let s3 = FakeS3::start("keys-bucket", "keys.yaml", &fixture()).await;
    let upstream = Upstream::start().await;
    let gateway = Gateway::builder()
        .config(GatewayYaml::standard())
        .keys_source("s3://keys-bucket/keys.yaml")
        .env("AWS_ENDPOINT_URL_S3", &s3.url())
        .env("SAGEGATE_KEYS_POLL_INTERVAL", "0.2")
        .upstream(&upstream)
        .start()
        .await;
    lifecycle(&gateway, "s3://keys-bucket/keys.yaml", &s3_env(&s3), || {
        s3.body()
    })
    .await;
    // Every write was a signed PutObject conditional on the ETag of a read just before it.
    let seen = s3.received();
    let puts: Vec<_> = seen.iter().filter(|r| r.method == "PUT").collect();
    assert_eq!(puts.len(), 5, "{seen:#?}");
    for put in puts {
        assert_eq!(put.signature, Ok(()), "{put:#?}");
        assert_eq!(put.status, 200, "{put:#?}");
        assert!(put.if_match.is_some(), "{put:#?}");
        assert!(
            seen.iter().any(|r| r.method == "GET" && r.status == 200),
            "{seen:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_edits_of_the_s3_object_lose_neither() {
    let s3 = FakeS3::start("keys-bucket", "keys.yaml", &fixture()).await;
    let env = s3_env(&s3);
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(config.path(), GatewayYaml::standard().render()).unwrap();
    let config = config.path().to_str().unwrap().to_owned();
    let new = |id: &'static str| {
        let (env, config) = (env.clone(), config.clone());
        async move {
            let args = [
                "new",
                "--keys",
                "s3://keys-bucket/keys.yaml",
                "--id",
                id,
                "--plan",
                "standard",
                "--config",
                &config,
            ];
            keys(&args, &env).await
        }
    };
    // Both read the same version before either writes.
    s3.hold_reads_until(2);
    let (one, two) = tokio::join!(new("one"), new("two"));
    let (winner, loser, loser_id) = match (one.status.code(), two.status.code()) {
        (Some(0), Some(75)) => (one, two, "two"),
        (Some(75), Some(0)) => (two, one, "one"),
        other => panic!("one edit must win and one be refused: {other:?}\n{one:?}\n{two:?}"),
    };
    let key = printed_key(&ok(&winner));
    let stderr = String::from_utf8_lossy(&loser.stderr);
    assert!(
        stderr.contains("changed since it was read") && stderr.contains("run the command again"),
        "{stderr}"
    );
    assert!(
        loser.stdout.is_empty(),
        "the refused edit printed no key: {loser:?}"
    );
    let puts: Vec<u16> = s3
        .received()
        .iter()
        .filter(|r| r.method == "PUT")
        .map(|r| r.status)
        .collect();
    assert_eq!(puts.iter().filter(|s| **s == 412).count(), 1, "{puts:?}");
    assert!(s3.body().contains(&sha256(&key)));
    assert!(
        !s3.body().contains(&format!("id: {loser_id}")),
        "{}",
        s3.body()
    );

    // Run again, the refused edit lands on top of the other: both are in the object.
    let again = printed_key(&ok(&new(loser_id).await));
    let body = s3.body();
    for hash in [sha256(&key), sha256(&again)] {
        assert!(body.contains(&hash), "{body}");
    }
    for line in KEPT {
        assert!(body.contains(line), "`{line}` lost:\n{body}");
    }
}
