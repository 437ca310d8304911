//! The seed request through the real recommender, with the shipped `config/` files (copied), on
//! both stages and with the user id raw (`U:114521`) and percent-encoded (`U%3A114521`).

use crate::kit::{DEMO_KEY, Gateway, Recommender, Upstream, shipped_config_dir};

fn shipped(name: &str) -> String {
    std::fs::read_to_string(shipped_config_dir().join(name)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_request_reaches_the_recommender_on_both_stages_with_the_shipped_config() {
    let recommender = Recommender::start().await;
    let gateway = Gateway::builder()
        .config_text(&shipped("gateway.yaml"))
        .keys_text(&shipped("keys.yaml"))
        .upstream_url(&recommender.url())
        .env("SAGEGATE_ENDPOINT_TEMP", "e2e-recommender-temp")
        .start()
        .await;
    let mut answers = Vec::new();
    for stage in ["temp", "prod"] {
        for user in ["U:114521", "U%3A114521"] {
            let reply = gateway
                .get(&format!(
                    "/{stage}/recommended-movies/{user}?k=10&inference_type=deterministic"
                ))
                .header("accept", "application/json")
                .header("content-type", "application/json")
                .key(DEMO_KEY)
                .send()
                .await;
            let body = reply.assert_ok();
            assert_eq!(reply.header("content-type"), Some("application/json"));
            assert_eq!(body["user_id"], "U:114521", "{stage} {user}: {body}");
            assert_eq!(body["inference_type"], "deterministic", "{body}");
            let recs = body["recommendations"].as_array().expect("recommendations");
            assert_eq!(recs.len(), 10, "k=10 reached the model: {body}");
            assert!(
                recs.iter()
                    .all(|r| r["item_id"].is_string() && r["score"].is_number())
            );
            answers.push(body["recommendations"].clone());
        }
    }
    // Deterministic ranking of the same user: every spelling and stage gives the same list.
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:#?}");

    // The model's own 4xx (SageMaker's ModelError) reaches the client as the container said it:
    // the same status and body the container gives on its plain `/invocations` path.
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    for (query, body) in [
        (
            "k=10&inference_type=bogus",
            r#"{"user_id":"U:114521","k":10,"inference_type":"bogus"}"#,
        ),
        (
            "k=ten&inference_type=deterministic",
            r#"{"user_id":"U:114521","k":"ten","inference_type":"deterministic"}"#,
        ),
    ] {
        let direct = http
            .post(format!("{}/invocations", recommender.url()))
            .header("content-type", "application/json")
            .header("accept", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let direct_status = direct.status().as_u16();
        let direct_body = direct.bytes().await.unwrap();
        assert!((400..500).contains(&direct_status), "{direct_status}");
        let reply = gateway
            .get(&format!("/temp/recommended-movies/U:114521?{query}"))
            .key(DEMO_KEY)
            .send()
            .await;
        assert_eq!(
            (reply.status, reply.text()),
            (
                direct_status,
                String::from_utf8_lossy(&direct_body).into_owned()
            ),
            "{query}"
        );
    }

    // Without the key the shipped route refuses.
    gateway
        .recommend("temp", "U:114521", None)
        .await
        .assert_forbidden();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_config_takes_endpoint_names_from_the_environment() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::builder()
        .config_text(&shipped("gateway.yaml"))
        .keys_text(&shipped("keys.yaml"))
        .upstream(&upstream)
        .env("SAGEGATE_ENDPOINT_TEMP", "e2e-recommender-temp")
        .start()
        .await;
    for stage in ["temp", "prod"] {
        gateway
            .recommend(stage, "U:114521", Some(DEMO_KEY))
            .await
            .assert_ok();
    }
    let paths: Vec<String> = upstream.received().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        [
            "/endpoints/e2e-recommender-temp/invocations",
            "/endpoints/movie-recommender-prod/invocations"
        ],
        "temp from SAGEGATE_ENDPOINT_TEMP, prod from the file's default"
    );
}
