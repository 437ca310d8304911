//! The dashboards shipped in deploy/dashboards/ (Grafana for the Prometheus endpoint, CloudWatch for
//! what the ADOT collector ships) query only metrics the real gateway serves: every metric name in
//! every query is in `/metrics` of a running gateway after some traffic, and every CloudWatch
//! dimension is a label of that metric. A renamed metric or label fails here, not on a dashboard.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::kit::config::{KEY_A, Key, Plan};
use crate::kit::{Gateway, KeysYaml, SageMakerReply, Upstream};

const KEY_TINY: &str = "e2e-key-dash-tiny-0123456789";
const KEY_QUOTA: &str = "e2e-key-dash-quota-0123456789";
use crate::metrics::{admin_url, scrape};

fn dashboard(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/dashboards")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Every string value under `key` anywhere in `v`.
fn strings_under(v: &Value, key: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match v {
                    Value::String(s) if k == key => out.push(s.clone()),
                    _ => strings_under(v, key, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| strings_under(v, key, out)),
        _ => {}
    }
}

fn names_in(query: &str) -> Vec<String> {
    regex::Regex::new(r"sagegate_[a-z0-9_]+")
        .unwrap()
        .find_iter(query)
        .map(|m| m.as_str().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_reads_a_metric_the_gateway_serves() {
    // Cache, circuit breaker and admin listener on, so every family has series.
    let config = crate::cache::cached_config("{ enabled: true }", "{ enabled: true }").replacen(
        "  connect_timeout_ms: 1000\n",
        "  connect_timeout_ms: 1000\n  circuit_breaker: { consecutive_failures: 5, cool_down_ms: 60000 }\n",
        1,
    );
    let upstream = Upstream::start().await;
    let gateway = Gateway::builder()
        .config_text(&config)
        .keys(
            KeysYaml::new()
                .plan(Plan::new("standard", &["temp", "prod"]).throttle(1000.0, 2000))
                .plan(Plan::new("tiny", &["temp"]).throttle(0.001, 1))
                .plan(Plan::new("one-a-day", &["temp"]).quota(1, "DAY"))
                .key(Key::new("partner-a", KEY_A, &["standard"]))
                .key(Key::new("tiny", KEY_TINY, &["tiny"]))
                .key(Key::new("metered", KEY_QUOTA, &["one-a-day"])),
        )
        .upstream(&upstream)
        .env("SAGEGATE_ADMIN_LISTEN", "127.0.0.1:0")
        .start()
        .await;
    // Answered, cached, refused without a key, throttled, over quota, a SageMaker error: the
    // per-key and per-error-type series exist once such a request happened.
    for key in [KEY_A, KEY_A, KEY_TINY, KEY_TINY, KEY_QUOTA, KEY_QUOTA] {
        gateway.recommend("temp", "U:114521", Some(key)).await;
    }
    gateway.recommend("temp", "U:114521", None).await;
    upstream.reply_with(SageMakerReply::model_error(400, r#"{"error":"k"}"#));
    gateway.recommend("prod", "U:1", Some(KEY_A)).await;
    let scraped = scrape(&admin_url(&gateway)).await;
    let mut labels: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in &scraped.samples {
        labels
            .entry(s.name.clone())
            .or_default()
            .extend(s.labels.keys().cloned());
    }
    let family = |name: &str| -> Option<&BTreeSet<String>> {
        labels
            .get(name)
            .or_else(|| labels.get(&format!("{name}_bucket")))
    };

    let mut grafana = Vec::new();
    strings_under(&dashboard("grafana.json"), "expr", &mut grafana);
    strings_under(&dashboard("grafana.json"), "definition", &mut grafana);
    let mut checked = BTreeSet::new();
    for query in &grafana {
        for name in names_in(query) {
            assert!(
                labels.contains_key(&name),
                "Grafana queries `{name}`, which /metrics lacks: {query}"
            );
            checked.insert(name);
        }
    }
    assert!(checked.len() >= 15, "only {checked:?}");

    let mut searches = Vec::new();
    strings_under(&dashboard("cloudwatch.json"), "expression", &mut searches);
    let schema = regex::Regex::new(r"^SEARCH\('\{Sagegate((?:,[a-z_]+)*)\}").unwrap();
    let mut checked = BTreeSet::new();
    for search in searches.iter().filter(|s| s.starts_with("SEARCH(")) {
        let captured = schema
            .captures(search)
            .unwrap_or_else(|| panic!("not a search of the Sagegate namespace: {search}"));
        let dims: Vec<&str> = captured[1].split(',').filter(|d| !d.is_empty()).collect();
        // A counter is searched as `x_total` and `x` (the collector may drop the suffix): at
        // least the served spelling must be there.
        let names = names_in(search);
        let served: Vec<&String> = names.iter().filter(|n| family(n).is_some()).collect();
        assert!(
            !served.is_empty(),
            "CloudWatch searches {names:?}, which /metrics lacks: {search}"
        );
        for name in served {
            let have = family(name).unwrap();
            for dim in &dims {
                assert!(
                    have.contains(*dim),
                    "{name} has no label `{dim}` ({have:?}): {search}"
                );
            }
            checked.insert(name.clone());
        }
    }
    assert!(checked.len() >= 12, "only {checked:?}");
}
