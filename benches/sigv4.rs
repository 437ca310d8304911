//! SigV4 signing cost of one `InvokeEndpoint` request (`sagegate::upstream::sigv4`), paid on every
//! upstream attempt.
//!
//! `cargo bench --bench sigv4`. The request is the bench gateway's (`bench/config/gateway.yaml`:
//! endpoint `movie-recommender-prod`, a 60-byte JSON body, the lean client's headers), signed:
//! - `full`: aws-sigv4's full signer (`signed::sign_request_at`), the baseline: it derives the
//!   signing key on every call;
//! - `fast`: the fast signer with its key cached (every request after the first of the day);
//! - `fast_cold`: the fast signer with an empty cache (the first request of a day, or after a
//!   credential rotation): the key derivation on top of `fast`.
//!
//! Unlike `bench/profile.sh` under valgrind, this runs SHA-256 with the CPU's SHA extensions when
//! it has them.

// A benchmark's fixtures are constants; failing loudly on a broken one is the point.
#![allow(clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::SigningSettings;
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::header::HeaderValue;
use http_body_util::Full;
use sagegate::upstream::signed::{self, Scope};
use sagegate::upstream::sigv4::Signer;

const BODY: &[u8] = br#"{"user_id": "U1", "k": 5, "inference_type": "PL"}"#;

fn request() -> http::Request<Full<Bytes>> {
    let mut request = http::Request::builder()
        .method(http::Method::POST)
        .uri("http://127.0.0.1:8081/endpoints/movie-recommender-prod/invocations")
        .body(Full::new(Bytes::from_static(BODY)))
        .expect("request");
    let headers = request.headers_mut();
    for (name, value) in [
        ("host", "127.0.0.1:8081"),
        ("content-type", "application/json"),
        ("accept", "application/json"),
        (
            "x-amzn-sagemaker-custom-attributes",
            "c0ffee00-0000-4000-8000-000000000001",
        ),
        (
            "x-amzn-sagemaker-inference-id",
            "c0ffee00-0000-4000-8000-000000000001",
        ),
        ("content-length", "50"),
        ("x-amz-user-agent", "sagegate/0.1.0 md/aws-sigv4-lean"),
        ("user-agent", "sagegate/0.1.0 md/aws-sigv4-lean"),
        (
            "x-amzn-trace-id",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    request
}

fn bench_invoke(c: &mut Criterion) {
    let identity: Arc<Identity> = Arc::new(
        Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            None,
            None,
            "bench",
        )
        .into(),
    );
    let scope = Scope {
        region: "us-east-1",
        name: "sagemaker",
    };
    let now = SystemTime::now();
    let mut g = c.benchmark_group("invoke");
    g.bench_function("full", |b| {
        b.iter_batched_ref(
            request,
            |r| {
                signed::sign_request_at(
                    r,
                    black_box(BODY),
                    &identity,
                    scope,
                    SigningSettings::default(),
                    now,
                )
                .expect("signs")
            },
            BatchSize::SmallInput,
        )
    });
    let signer = Signer::new();
    g.bench_function("fast", |b| {
        b.iter_batched_ref(
            request,
            |r| {
                signer
                    .sign(r, black_box(BODY), &identity, scope, now)
                    .expect("signs")
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("fast_cold", |b| {
        b.iter_batched_ref(
            || (request(), Signer::new()),
            |(r, cold)| {
                cold.sign(r, black_box(BODY), &identity, scope, now)
                    .expect("signs")
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench_invoke);
criterion_main!(benches);
