//! Keys reload without a restart: a new file (written, then renamed over the old one) takes
//! effect; a broken file is reported in the log and the old keys stay in force; fixing it works;
//! SIGHUP reloads too and does not stop the process; a `${` in the keys file is refused where it
//! stands (the file is data, never interpolated), on reload and at start.

use crate::kit::config::{KEY_A, Key, Plan};
use crate::kit::{Gateway, KeysYaml, Upstream, sagegate_bin};

const KEY_NEW: &str = "e2e-key-new-partner-0123456789";

fn keys(with_new: bool) -> KeysYaml {
    let keys = KeysYaml::new()
        .plan(Plan::new("standard", &["temp", "prod"]).throttle(1000.0, 2000))
        .key(Key::new("partner-a", KEY_A, &["standard"]));
    if with_new {
        keys.key(Key::new("partner-new", KEY_NEW, &["standard"]))
    } else {
        keys
    }
}

async fn status(gateway: &Gateway, key: &str) -> u16 {
    gateway.key_status(key).await
}

async fn until_key_gets(gateway: &Gateway, key: &str, want: u16) {
    gateway.until_key_gets(key, want).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renamed_keys_file_is_reloaded_and_a_broken_one_is_refused() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::builder()
        .keys(keys(false))
        .upstream(&upstream)
        .start()
        .await;
    assert_eq!(status(&gateway, KEY_NEW).await, 403);

    // A new key appears.
    gateway.replace_keys(&keys(true).render());
    until_key_gets(&gateway, KEY_NEW, 200).await;
    assert_eq!(status(&gateway, KEY_A).await, 200);

    // Bad YAML: reported, old keys stay.
    let broken = "usage_plans:\n  - id: standard\n    stages: [temp, prod\nkeys: []\n";
    gateway.replace_keys(broken);
    gateway.wait_for_log("invalid YAML").await;
    let path = gateway.keys_path().display().to_string();
    assert!(
        gateway.log_lines().iter().any(|l| l["message"]
            .as_str()
            .is_some_and(|m| m.contains(&format!("{path}:4:")))),
        "the log names the file and line:\n{}",
        gateway.stdout()
    );
    assert_eq!(status(&gateway, KEY_A).await, 200);
    assert_eq!(status(&gateway, KEY_NEW).await, 200);

    // An invalid rate: reported with its position, old keys stay, the removed key still works.
    let invalid = keys(false)
        .render()
        .replace("rate_limit: 1000", "rate_limit: 0");
    gateway.replace_keys(&invalid);
    gateway
        .wait_for_log("usage_plans[0].throttle.rate_limit: must be a number > 0")
        .await;
    assert!(
        gateway.stdout().contains(&format!("{path}:4:")),
        "{}",
        gateway.stdout()
    );
    assert_eq!(status(&gateway, KEY_NEW).await, 200);

    // Fixed: the file without the new key takes effect.
    gateway.replace_keys(&keys(false).render());
    until_key_gets(&gateway, KEY_NEW, 403).await;
    assert_eq!(status(&gateway, KEY_A).await, 200);
    let output = gateway.stdout() + &gateway.stderr();
    assert!(
        !output.contains(KEY_A) && !output.contains(KEY_NEW),
        "a key value was logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_keys_and_keeps_serving() {
    let upstream = Upstream::start().await;
    let mut gateway = Gateway::builder()
        .keys(keys(false))
        .upstream(&upstream)
        .start()
        .await;
    gateway.signal("HUP");
    gateway.wait_for_log("SIGHUP: reloading keys").await;
    assert!(
        gateway.exited().is_none(),
        "SIGHUP must not stop the gateway"
    );
    assert_eq!(status(&gateway, KEY_A).await, 200);

    // Write the file in place (no rename) and signal: the new key works.
    std::fs::write(gateway.keys_path(), keys(true).render()).unwrap();
    gateway.signal("HUP");
    until_key_gets(&gateway, KEY_NEW, 200).await;
    assert!(gateway.exited().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_placeholder_in_the_keys_file_is_refused_on_reload_and_at_start() {
    const SECRET: &str = "e2e-secret-from-the-environment-77";
    let upstream = Upstream::start().await;
    let gateway = Gateway::builder()
        .keys(keys(false))
        .env("SAGEGATE_E2E_SECRET", SECRET)
        .upstream(&upstream)
        .start()
        .await;
    let planted = keys(true)
        .render()
        .replace("id: partner-new", "id: \"${env:SAGEGATE_E2E_SECRET}\"");
    let (line, text) = planted
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains("${"))
        .expect("the placeholder is planted");
    let at = format!(
        "{}:{}:{}: keys[1].id: `${{` is not allowed",
        gateway.keys_path().display(),
        line + 1,
        text.find("${").unwrap() + 1
    );
    gateway.replace_keys(&planted);
    gateway.wait_for_log(&at).await;
    assert_eq!(status(&gateway, KEY_NEW).await, 403);
    assert_eq!(status(&gateway, KEY_A).await, 200);

    // At start (`check-config`, as `serve` loads it): the same error, and exit 1.
    let out = std::process::Command::new(sagegate_bin())
        .arg("check-config")
        .arg("--config")
        .arg(gateway.config_path())
        .arg("--keys")
        .arg(gateway.keys_path())
        .env_clear()
        .env("SAGEGATE_E2E_SECRET", SECRET)
        .output()
        .unwrap();
    let printed =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{printed}");
    assert!(printed.contains(&at), "{printed}");
    let output = printed + &gateway.stdout() + &gateway.stderr();
    assert!(!output.contains(SECRET), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_keys_file_keeps_the_old_keys() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::builder()
        .keys(keys(false))
        .upstream(&upstream)
        .start()
        .await;
    std::fs::remove_file(gateway.keys_path()).unwrap();
    gateway.wait_for_log("keys reload failed").await;
    assert_eq!(status(&gateway, KEY_A).await, 200);
    gateway.replace_keys(&keys(true).render());
    until_key_gets(&gateway, KEY_NEW, 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_used_before_a_reload_stays_used_for_unchanged_keys() {
    let upstream = Upstream::start().await;
    let metered = |extra: bool| {
        let k = KeysYaml::new()
            .plan(Plan::new("metered", &["temp"]).quota(2, "DAY"))
            .key(Key::new("metered-a", KEY_A, &["metered"]));
        if extra {
            k.key(Key::new("partner-new", KEY_NEW, &["metered"]))
        } else {
            k
        }
    };
    let gateway = Gateway::builder()
        .keys(metered(false))
        .upstream(&upstream)
        .start()
        .await;
    assert_eq!(status(&gateway, KEY_A).await, 200);
    assert_eq!(status(&gateway, KEY_A).await, 200);
    gateway
        .recommend("temp", "U:114521", Some(KEY_A))
        .await
        .assert_limit_exceeded();
    // Reload with another key added: KEY_A's plan is unchanged, so its quota stays spent.
    gateway.replace_keys(&metered(true).render());
    until_key_gets(&gateway, KEY_NEW, 200).await;
    gateway
        .recommend("temp", "U:114521", Some(KEY_A))
        .await
        .assert_limit_exceeded();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_keep_succeeding_while_keys_are_reloaded() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::builder()
        .keys(keys(false))
        .upstream(&upstream)
        .start()
        .await;
    let load = async {
        let mut statuses = Vec::new();
        for _ in 0..150 {
            statuses.push(status(&gateway, KEY_A).await);
        }
        statuses
    };
    let reloads = async {
        for round in 0..4 {
            let with_new = round % 2 == 0;
            gateway.replace_keys(&keys(with_new).render());
            until_key_gets(&gateway, KEY_NEW, if with_new { 200 } else { 403 }).await;
        }
    };
    let (statuses, ()) = tokio::join!(load, reloads);
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
}
