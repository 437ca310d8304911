//! `sagegate import`, end to end: the real binary imports the fixtures of `src/import/fixtures/`
//! (the seed API as AWS would export it, with its stages, usage plan and key; AWS's request
//! validation sample with SageMaker integrations; an export of what cannot come over), then
//! `check-config` accepts the result and `serve` runs it:
//! - the imported seed API answers every request with the same bytes as the hand-written shipped
//!   config, and sends SageMaker the same requests;
//! - an imported request validator refuses bad bodies with API Gateway's bytes (or the export's
//!   gateway response override) before SageMaker is called, and logs why;
//! - exit statuses: 2 for bad input, 1 for `--strict` with something left out, nothing written.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::kit::{DEMO_KEY, Gateway, SageMakerReply, Upstream, sagegate_bin, shipped_config_dir};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/import/fixtures")
        .join(name)
}

fn sagegate(args: &[&str]) -> Output {
    Command::new(sagegate_bin())
        .args(args)
        .env_clear()
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// Imports the seed fixtures into `out` with the real binary.
fn import_seed(out: &Path) -> Output {
    let f = |n: &str| fixture(n).display().to_string();
    sagegate(&[
        "import",
        "--openapi",
        &f("seed/export.oas30.json"),
        "--stages",
        &f("seed/stages.json"),
        "--usage-plans",
        &f("seed/usage-plans.json"),
        "--usage-plan-keys",
        &f("seed/plan-keys-u7v8w9.json"),
        "--api-keys",
        &f("seed/api-keys.json"),
        "--out",
        out.to_str().unwrap(),
    ])
}

fn check_config(dir: &Path) -> Output {
    sagegate(&[
        "check-config",
        "--config",
        dir.join("gateway.yaml").to_str().unwrap(),
        "--keys",
        dir.join("keys.yaml").to_str().unwrap(),
    ])
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

/// What a client can tell apart in an answer.
fn seen(reply: &crate::kit::Reply) -> (u16, String, Vec<Option<String>>) {
    let headers = [
        "content-type",
        "x-amzn-errortype",
        "retry-after",
        "x-sagegate-cache",
        "warning",
    ]
    .iter()
    .map(|h| reply.header(h).map(str::to_owned))
    .collect();
    (reply.status, reply.text(), headers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_imported_seed_api_answers_like_the_hand_written_config() {
    let dir = tempfile::tempdir().unwrap();
    let out = import_seed(dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let report = text(&out);
    assert!(
        report.contains("added method.request.querystring.seed (query parameter `seed`)"),
        "{report}"
    );
    let checked = check_config(dir.path());
    assert!(checked.status.success(), "{}", text(&checked));

    let (to_hand, to_imported) = (Upstream::start().await, Upstream::start().await);
    let hand = Gateway::builder()
        .config_text(&read(&shipped_config_dir().join("gateway.yaml")))
        .keys_text(&read(&shipped_config_dir().join("keys.yaml")))
        .upstream(&to_hand)
        .start()
        .await;
    let imported = Gateway::builder()
        .config_text(&read(&dir.path().join("gateway.yaml")))
        .keys_text(&read(&dir.path().join("keys.yaml")))
        .upstream(&to_imported)
        .start()
        .await;
    let ok = SageMakerReply::ok(
        r#"{"user_id":"U:114521","recommendations":[{"item_id":"M:1","score":0.5}]}"#,
    );
    let seed = "k=10&inference_type=deterministic";
    let cases: Vec<(String, Option<&str>, SageMakerReply)> = vec![
        (
            format!("/prod/recommended-movies/U:114521?{seed}"),
            Some(DEMO_KEY),
            ok.clone(),
        ),
        // A cache hit in both.
        (
            format!("/prod/recommended-movies/U:114521?{seed}"),
            Some(DEMO_KEY),
            ok.clone(),
        ),
        (
            format!("/temp/recommended-movies/U%3A114521?{seed}&seed=7"),
            Some(DEMO_KEY),
            ok.clone(),
        ),
        (
            "/prod/recommended-movies/U:2?k=ten&inference_type=deterministic".to_owned(),
            Some(DEMO_KEY),
            SageMakerReply::model_error(400, "k must be an integer"),
        ),
        (
            format!("/prod/recommended-movies/U:3?{seed}"),
            Some(DEMO_KEY),
            SageMakerReply::service_unavailable(),
        ),
        (
            format!("/prod/recommended-movies/U:4?{seed}"),
            Some(DEMO_KEY),
            SageMakerReply::throttling(),
        ),
        (
            "/prod/recommended-movies/U:5?inference_type=deterministic".to_owned(),
            Some(DEMO_KEY),
            ok.clone(),
        ),
        (
            format!("/prod/recommended-movies/U:6?{seed}"),
            None,
            ok.clone(),
        ),
        (
            format!("/prod/recommended-movies/U:6?{seed}"),
            Some("not-a-key-of-anyone-0123456"),
            ok.clone(),
        ),
        (
            format!("/staging/recommended-movies/U:6?{seed}"),
            Some(DEMO_KEY),
            ok.clone(),
        ),
        (
            format!("/prod/recommended-movies?{seed}"),
            Some(DEMO_KEY),
            ok.clone(),
        ),
        (
            format!("/prod/recommended-movies/..%2F..?{seed}"),
            Some(DEMO_KEY),
            ok.clone(),
        ),
    ];
    for (path, key, reply) in &cases {
        to_hand.reply_with(reply.clone());
        to_imported.reply_with(reply.clone());
        let send = |g: &Gateway| {
            let mut req = g
                .get(path)
                .header("accept", "application/json")
                .header("content-type", "application/json");
            if let Some(k) = key {
                req = req.key(k);
            }
            req.send()
        };
        let (a, b) = (send(&hand).await, send(&imported).await);
        assert_eq!(seen(&a), seen(&b), "{path}");
    }
    // SageMaker got the same calls: endpoint, body and headers (the request id differs).
    let (sent_a, sent_b) = (to_hand.received(), to_imported.received());
    assert_eq!(sent_a.len(), sent_b.len());
    assert!(sent_a.len() >= 5, "{sent_a:#?}");
    for (a, b) in sent_a.iter().zip(&sent_b) {
        assert_eq!((&a.method, &a.path, &a.body), (&b.method, &b.path, &b.body));
        for h in ["content-type", "accept"] {
            assert_eq!(a.header(h), b.header(h), "{h}");
        }
        for h in [
            "x-amzn-sagemaker-custom-attributes",
            "x-amzn-sagemaker-inference-id",
        ] {
            assert_eq!(a.header(h).is_some(), b.header(h).is_some(), "{h}");
        }
    }

    // The one difference, stated in the imported file: API Gateway cached every inference type;
    // the hand-written config narrows the cache to deterministic answers with `when:`.
    let stochastic =
        "/prod/recommended-movies/U:7?k=10&inference_type=stochastic_plackett_luce&seed=3";
    let a = hand.get(stochastic).key(DEMO_KEY).send().await;
    let b = imported.get(stochastic).key(DEMO_KEY).send().await;
    assert_eq!((a.status, a.text()), (b.status, b.text()));
    assert_eq!(
        (a.header("x-sagegate-cache"), b.header("x-sagegate-cache")),
        (Some("bypass"), Some("miss"))
    );
    assert!(read(&dir.path().join("gateway.yaml")).contains("`when:` can narrow it"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_validator_refuses_bad_bodies_before_sagemaker_and_logs_why() {
    let dir = tempfile::tempdir().unwrap();
    let out = sagegate(&[
        "import",
        "--openapi",
        fixture("validation.oas30.json").to_str().unwrap(),
        "--out",
        dir.path().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(check_config(dir.path()).status.success());
    let config = read(&dir.path().join("gateway.yaml"));
    let upstream = Upstream::start().await;
    let gateway = Gateway::builder()
        .config_text(&config)
        .keys_text(&read(&dir.path().join("keys.yaml")))
        .upstream(&upstream)
        .start()
        .await;
    let post = |body: &str, h1: Option<&str>, content_type: &str| {
        let mut req = gateway
            .request(reqwest::Method::POST, "/testStage/validation")
            .header("content-type", content_type)
            .body(body.to_owned());
        if let Some(h) = h1 {
            req = req.header("h1", h);
        }
        req.send()
    };
    let good = r#"{"name": "Marco", "type": "dog", "price": 260}"#;
    post(good, Some("v1"), "application/json").await.assert_ok();
    assert_eq!(
        upstream.single().body,
        good.as_bytes(),
        "passed through as sent"
    );

    // AWS's own examples: a bird, a price over 500; then a body that is not JSON.
    for (body, why) in [
        (
            r#"{"name": "Molly", "type": "bird", "price": 269}"#,
            "[/type: ",
        ),
        (
            r#"{"name": "Molly", "type": "dog", "price": 501}"#,
            "[/price: ",
        ),
        (
            r#"{"name": "Molly""#,
            "[the body is not JSON: it ends too early",
        ),
    ] {
        let reply = post(body, Some("v1"), "application/json").await;
        // The export's BAD_REQUEST_BODY override: its status, header and template.
        assert_eq!(reply.status, 400, "{reply:?}");
        assert_eq!(reply.header("x-request-validation"), Some("failed"));
        assert_eq!(
            reply.header("x-amzn-errortype"),
            Some("BadRequestException")
        );
        let text = reply.text();
        assert!(
            text.starts_with(&format!(
                r#"{{"message": "Invalid request body", "validation": "{why}"#
            )),
            "{text}"
        );
        let entry = gateway.access_entry(&reply.request_id()).await;
        assert_eq!(entry["error.responseType"], "BAD_REQUEST_BODY", "{entry}");
        let logged = entry["error.validationErrorString"]
            .as_str()
            .unwrap_or_default();
        assert!(logged.starts_with(why), "{entry}");
        assert!(
            !logged.contains("Molly") && !logged.contains("bird"),
            "no caller values: {logged}"
        );
    }
    // A required header missing: API Gateway's default bytes (BAD_REQUEST_PARAMETERS is not
    // overridden), checked before the body.
    let reply = post("not json", None, "application/json").await;
    reply.assert_gateway_error(
        400,
        r#"{"message": "Missing required request parameters: [h1]"}"#,
        "BadRequestException",
    );
    let entry = gateway.access_entry(&reply.request_id()).await;
    assert_eq!(
        entry["error.validationErrorString"],
        "Missing required request parameters: [h1]"
    );
    // No model for the media type: not checked, passed through (WHEN_NO_MATCH), as in API Gateway.
    post("<pet/>", Some("v1"), "application/xml")
        .await
        .assert_ok();
    // The GET method inherits the API's `params-only` validator.
    gateway
        .get("/testStage/validation")
        .send()
        .await
        .assert_gateway_error(
            400,
            r#"{"message": "Missing required request parameters: [q1]"}"#,
            "BadRequestException",
        );
    gateway
        .get("/testStage/validation?q1=cat")
        .send()
        .await
        .assert_ok();
    assert_eq!(
        upstream.count(),
        3,
        "refused requests never reached SageMaker"
    );

    // Without the override: API Gateway's default BAD_REQUEST_BODY bytes.
    let plain = &config[..config.find("gateway_responses:").unwrap()];
    let gateway = Gateway::builder()
        .config_text(plain)
        .keys_text(&read(&dir.path().join("keys.yaml")))
        .upstream(&upstream)
        .start()
        .await;
    gateway
        .request(reqwest::Method::POST, "/testStage/validation")
        .header("h1", "v1")
        .header("content-type", "application/json")
        .body(r#"{"type": "cat"}"#)
        .send()
        .await
        .assert_gateway_error(
            400,
            r#"{"message": "Invalid request body"}"#,
            "BadRequestException",
        );
    assert_eq!(upstream.count(), 3);
}

#[test]
fn bad_input_exits_2_and_strict_exits_1_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let out = out_dir.to_str().unwrap();
    let txt = dir.path().join("export.txt");
    std::fs::write(&txt, "{}").unwrap();
    let gateway = shipped_config_dir().join("gateway.yaml");
    let mixed = fixture("mixed.oas30.json");
    let mixed_stages = fixture("mixed-stages.json");
    for (args, status, message) in [
        (
            vec!["--openapi", "/nonexistent/export.json"],
            2,
            "/nonexistent/export.json: cannot read the export",
        ),
        (
            vec!["--openapi", txt.to_str().unwrap()],
            2,
            "unknown extension `.txt`",
        ),
        (
            vec!["--openapi", gateway.to_str().unwrap()],
            2,
            "not an API Gateway export",
        ),
        (
            vec![
                "--openapi",
                mixed.to_str().unwrap(),
                "--stages",
                mixed_stages.to_str().unwrap(),
                "--strict",
            ],
            1,
            "--strict: not everything can be carried over; nothing written",
        ),
    ] {
        let mut all = vec!["import", "--out", out];
        all.extend(args);
        let result = sagegate(&all);
        assert_eq!(result.status.code(), Some(status), "{}", text(&result));
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert!(stderr.contains(message), "{stderr}");
        assert!(!out_dir.exists(), "nothing written");
    }
    // Without --strict the rest imports, and the report names each left-out piece's pointer.
    let import_mixed = || {
        sagegate(&[
            "import",
            "--openapi",
            mixed.to_str().unwrap(),
            "--stages",
            mixed_stages.to_str().unwrap(),
            "--out",
            out,
        ])
    };
    let result = import_mixed();
    assert_eq!(result.status.code(), Some(0), "{}", text(&result));
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(stdout.contains("not carried over (16):"), "{stdout}");
    assert!(
        stdout.contains("export#/paths/~1predict/post/security: POST /predict: a token authorizer"),
        "{stdout}"
    );
    assert!(check_config(&out_dir).status.success());
    // A second run keeps what is there.
    let again = import_mixed();
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
}
