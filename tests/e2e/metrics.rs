//! Prometheus metrics on the admin listener: enabled by `SAGEGATE_ADMIN_LISTEN` (the kit's config
//! turns the listener off), read by a strict text-format parser (below), counters moving with the
//! requests made, nothing reachable through the stage listener, no key material in any label.
//!
//! The parser is written here because `prometheus-parse` 0.2 splits label sets at the first `}`,
//! and route labels are resource paths such as `/recommended-movies/{user_id}`.

use std::collections::{BTreeMap, HashMap};

use crate::kit::config::{KEY_A, Key, Plan};
use crate::kit::{Gateway, KeysYaml, SageMakerReply, Upstream};

/// One sample line.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Metric name as written (`x_bucket`, `x_count` for histogram parts).
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Value.
    pub value: f64,
}

/// A parsed scrape.
#[derive(Debug, Default)]
pub struct Scrape {
    /// Every sample, in order.
    pub samples: Vec<Sample>,
    /// `# TYPE` of each family.
    pub types: HashMap<String, String>,
}

fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Parses `{a="x",b="y"}` (the braces included) from the start of `s`; returns the labels and the
/// rest of the line.
fn parse_labels(s: &str, line: usize) -> (BTreeMap<String, String>, &str) {
    let mut labels = BTreeMap::new();
    let mut rest = s.strip_prefix('{').unwrap();
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return (labels, after);
        }
        let eq = rest
            .find('=')
            .unwrap_or_else(|| panic!("line {line}: label without `=`"));
        let name = &rest[..eq];
        assert!(valid_name(name), "line {line}: bad label name {name:?}");
        rest = rest[eq + 1..]
            .strip_prefix('"')
            .unwrap_or_else(|| panic!("line {line}: unquoted label value"));
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    other => panic!("line {line}: bad escape {other:?}"),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => panic!("line {line}: unterminated label value"),
            }
        };
        assert!(
            labels.insert(name.to_owned(), value).is_none(),
            "line {line}: label {name} repeated"
        );
        rest = &rest[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

/// Parses the text exposition format strictly: every sample's family has a `# TYPE` line before
/// it, names and labels are well formed, values are numbers, no series repeats, histogram buckets
/// are cumulative and their `+Inf` bucket equals `_count`. Panics with the line number otherwise.
pub fn parse(text: &str) -> Scrape {
    let mut scrape = Scrape::default();
    let mut seen = std::collections::HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix("# ") {
            let mut parts = comment.splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("TYPE"), Some(name), Some(kind)) => {
                    assert!(valid_name(name), "line {n}: bad name");
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                        "line {n}: bad type {kind}"
                    );
                    scrape.types.insert(name.to_owned(), kind.to_owned());
                }
                (Some("HELP"), Some(name), _) => assert!(valid_name(name), "line {n}"),
                _ => panic!("line {n}: unexpected comment {line:?}"),
            }
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = &line[..name_end];
        assert!(valid_name(name), "line {n}: bad metric name {name:?}");
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..], n)
        } else {
            (BTreeMap::new(), &line[name_end..])
        };
        let value: f64 = match rest.trim() {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("line {n}: bad value {v:?}")),
        };
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|f| scrape.types.get(*f).is_some_and(|t| t == "histogram"))
            })
            .unwrap_or(name);
        assert!(
            scrape.types.contains_key(family),
            "line {n}: {name} has no # TYPE"
        );
        assert!(
            seen.insert(format!("{name}{labels:?}")),
            "line {n}: series repeated"
        );
        scrape.samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    check_histograms(&scrape);
    scrape
}

fn check_histograms(scrape: &Scrape) {
    for (family, kind) in &scrape.types {
        if kind != "histogram" {
            continue;
        }
        let bucket_name = format!("{family}_bucket");
        let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for s in scrape.samples.iter().filter(|s| s.name == bucket_name) {
            let mut labels = s.labels.clone();
            let le = labels.remove("le").expect("bucket without le");
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap()
            };
            series
                .entry(format!("{labels:?}"))
                .or_default()
                .push((le, s.value));
        }
        for (labels, buckets) in series {
            assert!(
                buckets
                    .windows(2)
                    .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
                "{family}{labels}: buckets not cumulative"
            );
            let inf = buckets.last().unwrap();
            assert!(inf.0.is_infinite(), "{family}{labels}: no +Inf bucket");
            let count = scrape
                .samples
                .iter()
                .find(|s| {
                    s.name == format!("{family}_count") && format!("{:?}", s.labels) == labels
                })
                .expect("histogram without _count");
            assert_eq!(
                count.value, inf.1,
                "{family}{labels}: +Inf bucket != _count"
            );
        }
    }
}

/// `http://<admin address>` from the gateway's `sagegate admin listening` log line.
pub fn admin_url(gateway: &Gateway) -> String {
    let line = gateway
        .log_lines()
        .into_iter()
        .find(|l| l["message"] == "sagegate admin listening")
        .expect("the admin listener is on (SAGEGATE_ADMIN_LISTEN)");
    format!("http://{}", line["listen"].as_str().unwrap())
}

/// `GET /metrics`, parsed; the content type is the text exposition format.
pub async fn scrape(admin: &str) -> Scrape {
    let resp = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("{admin}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    parse(&resp.text().await.unwrap())
}

/// The value of the sample of family `metric` whose labels include `labels` (at most one may
/// match); for a histogram, its `_count`.
pub fn sample(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let name = match scrape.types.get(metric).map(String::as_str) {
        Some("histogram") => format!("{metric}_count"),
        _ => metric.to_owned(),
    };
    let found: Vec<_> = scrape
        .samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert!(found.len() <= 1, "{metric} {labels:?} is ambiguous");
    found.first().map(|s| s.value)
}

#[test]
fn the_parser_is_strict() {
    let good =
        "# HELP x_total X.\n# TYPE x_total counter\nx_total{route=\"/a/{b}\",q=\"\\\"\"} 3\n";
    let s = parse(good);
    assert_eq!(s.samples[0].labels["route"], "/a/{b}");
    assert_eq!(s.samples[0].labels["q"], "\"");
    for bad in [
        "x_total 1\n",
        "# TYPE x_total counter\nx_total{a=1} 1\n",
        "# TYPE x_total counter\nx_total one\n",
        "# TYPE x_total counter\nx_total 1\nx_total 2\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n",
    ] {
        assert!(std::panic::catch_unwind(|| parse(bad)).is_err(), "{bad:?}");
    }
}

const KEY_TINY: &str = "e2e-key-tiny-plan-0123456789";
const KEY_QUOTA: &str = "e2e-key-quota-plan-0123456789";
const ROUTE: &str = "/recommended-movies/{user_id}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_move_with_requests_and_carry_no_key_material() {
    let upstream = Upstream::start().await;
    let keys = KeysYaml::new()
        .plan(Plan::new("standard", &["temp", "prod"]).throttle(10_000.0, 10_000))
        .plan(Plan::new("tiny", &["temp"]).throttle(0.001, 1))
        .plan(
            Plan::new("small-quota", &["temp"])
                .throttle(10_000.0, 10_000)
                .quota(1, "DAY"),
        )
        .key(Key::new("partner-a", KEY_A, &["standard"]))
        .key(Key::new("tiny-key", KEY_TINY, &["tiny"]))
        .key(Key::new("quota-key", KEY_QUOTA, &["small-quota"]));
    let gateway = Gateway::builder()
        .config_text(&crate::cache::cached_config(
            "{ enabled: true }",
            "{ enabled: true }",
        ))
        .keys(keys)
        .upstream(&upstream)
        .env("SAGEGATE_ADMIN_LISTEN", "127.0.0.1:0")
        .start()
        .await;
    let admin = admin_url(&gateway);

    // Nothing of the admin listener is reachable through the stage listener.
    gateway.get("/metrics").send().await.assert_forbidden();
    gateway
        .get("/temp/metrics")
        .send()
        .await
        .assert_missing_authentication_token();

    let before = scrape(&admin).await;
    let requests = |m: &Scrape, class: &str| {
        sample(
            m,
            "sagegate_requests_total",
            &[("stage", "temp"), ("route", ROUTE), ("status_class", class)],
        )
        .unwrap()
    };
    assert_eq!(requests(&before, "2xx"), 0.0, "pre-registered at zero");
    assert_eq!(
        sample(&before, "sagegate_build_info", &[]),
        Some(1.0),
        "build info"
    );

    let recommend = |key: &str, policy: &str| {
        gateway
            .get(&format!(
                "/temp/recommended-movies/U:1?k=10&inference_type={policy}"
            ))
            .key(key)
            .send()
    };
    for _ in 0..2 {
        recommend(KEY_A, "deterministic").await.assert_ok();
    }
    recommend(KEY_A, "stochastic_plackett_luce")
        .await
        .assert_ok();
    // tiny: burst 1, then throttled.
    recommend(KEY_TINY, "stochastic_plackett_luce")
        .await
        .assert_ok();
    recommend(KEY_TINY, "stochastic_plackett_luce")
        .await
        .assert_too_many_requests();
    // quota 1 per day, then rejected.
    recommend(KEY_QUOTA, "stochastic_plackett_luce")
        .await
        .assert_ok();
    recommend(KEY_QUOTA, "stochastic_plackett_luce")
        .await
        .assert_limit_exceeded();
    // The model's 4xx.
    upstream.reply_with(SageMakerReply::model_error(400, r#"{"error":"k"}"#));
    let model_error = recommend(KEY_A, "stochastic_epsilon_greedy").await;
    assert_eq!(model_error.status, 400);
    // Unknown stage and route: counted without a stage or route label value.
    gateway.get("/nope/x").send().await.assert_forbidden();

    let after = scrape(&admin).await;
    assert_eq!(requests(&after, "2xx"), 5.0);
    assert_eq!(requests(&after, "4xx"), 3.0);
    assert_eq!(
        sample(
            &after,
            "sagegate_requests_total",
            &[("stage", ""), ("route", ""), ("status_class", "4xx")]
        ),
        Some(2.0),
        "/metrics and /nope/x: no stage"
    );
    assert_eq!(
        sample(
            &after,
            "sagegate_requests_total",
            &[("stage", "temp"), ("route", ""), ("status_class", "4xx")]
        ),
        Some(1.0),
        "/temp/metrics: no route"
    );
    assert_eq!(
        sample(
            &after,
            "sagegate_request_duration_seconds",
            &[("stage", "temp"), ("route", ROUTE), ("status_class", "2xx")]
        ),
        Some(5.0),
        "histogram count"
    );
    assert_eq!(
        sample(
            &after,
            "sagegate_integration_duration_seconds",
            &[("stage", "temp"), ("route", ROUTE)]
        ),
        Some(5.0),
        "four upstream successes and the model error; the hit made no call"
    );
    let cache = |result: &str| {
        sample(
            &after,
            "sagegate_cache_lookups_total",
            &[("stage", "temp"), ("result", result)],
        )
    };
    assert_eq!(cache("miss"), Some(1.0));
    assert_eq!(cache("hit"), Some(1.0));
    assert_eq!(cache("bypass"), Some(4.0));
    assert_eq!(
        sample(&after, "sagegate_cache_entries", &[("stage", "temp")]),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &after,
            "sagegate_throttled_total",
            &[("key_id", "tiny-key")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &after,
            "sagegate_quota_rejected_total",
            &[("key_id", "quota-key")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &after,
            "sagegate_upstream_errors_total",
            &[("error_type", "ModelError")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&after, "sagegate_in_flight_requests", &[]),
        Some(0.0)
    );
    assert_eq!(
        sample(&after, "sagegate_key_reloads_total", &[("result", "ok")]),
        Some(0.0)
    );

    // No key value (or any part of one) in any label.
    for s in &after.samples {
        for v in s.labels.values() {
            for key in [KEY_A, KEY_TINY, KEY_QUOTA] {
                assert!(!v.contains(&key[..12]), "key material in {s:?}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_reloads_are_counted() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::builder()
        .upstream(&upstream)
        .env("SAGEGATE_ADMIN_LISTEN", "127.0.0.1:0")
        .start()
        .await;
    let admin = admin_url(&gateway);
    gateway.replace_keys("usage_plans: [\n");
    crate::kit::eventually("a failed reload counted", crate::kit::WAIT, || {
        let admin = admin.clone();
        async move {
            let m = scrape(&admin).await;
            (sample(&m, "sagegate_key_reloads_total", &[("result", "failed")])
                .is_some_and(|n| n >= 1.0))
            .then_some(())
        }
    })
    .await;
}
