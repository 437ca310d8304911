//! `stack-floor`: the least a proxy built on sagegate's own stack can cost. It serves sagegate's
//! public route shape, `GET /{stage}/recommended-movies/{user_id}?…`, with actix-web (same version,
//! same server settings as the gateway), and forwards each request as `POST
//! /endpoints/{endpoint}/invocations` through hyper-util's pooled HTTP/1.1 client (the one the
//! gateway's lean SageMaker client uses, a pool per worker as there), allocating with mimalloc as the gateway does. It answers
//! the upstream's status, content type and body.
//!
//! Like the gateway, it takes every request in actix's default service and finds its route itself
//! (here: splitting the path), so actix's pattern router — a regex per request for a pattern with
//! `{…}` segments, about 20k instructions, which the gateway never runs — is not counted as the
//! stack's cost; and it writes the small JSON body straight into one buffer.
//!
//! Place: a row of `bench/run.sh` between `direct` and `sagegate`. What sagegate costs above this
//! row is the gateway's own work (keys, limits, mapping, cache key, signing, access log); what this
//! row costs above nginx is actix-web, hyper and tokio. Invariants: no API key, no limit, no
//! signature, no log line, so nothing here can be cut without leaving the stack; an upstream failure
//! is a 502, never a crash.

use std::net::SocketAddr;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// The gateway's allocator, so the two rows differ by the gateway's work only.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "stack-floor",
    about = "actix-web + hyper proxy with none of sagegate's work: the benchmark's stack floor"
)]
struct Args {
    /// Address to listen on (loopback only in the harness).
    #[arg(long, default_value = "127.0.0.1:8082")]
    listen: SocketAddr,
    /// The SageMaker stand-in (`fake-sagemaker`).
    #[arg(long)]
    upstream: SocketAddr,
    /// Endpoint name put in the invocation path.
    #[arg(long, default_value = "movie-recommender-prod")]
    endpoint: String,
    /// Seconds a request head may take to arrive (the gateway's `client_header_timeout_secs`).
    #[arg(long, default_value_t = 10)]
    client_header_timeout_secs: u64,
}

/// What a worker's requests share: its pooled client and the invocation URL.
struct Upstream {
    client: Client<HttpConnector, Full<Bytes>>,
    url: String,
}

impl Upstream {
    /// A pool of its own for the worker that calls this, as the gateway keeps one per worker
    /// (src/upstream/signed.rs says why).
    fn new(url: String) -> Upstream {
        let mut tcp = HttpConnector::new();
        tcp.set_nodelay(true);
        Upstream {
            client: Client::builder(TokioExecutor::new())
                .pool_timer(TokioTimer::new())
                .timer(TokioTimer::new())
                .build(tcp),
            url,
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let url = format!(
        "http://{}/endpoints/{}/invocations",
        args.upstream, args.endpoint
    );
    actix_web::rt::System::new().block_on(async move {
        // The gateway's settings (src/server.rs with the shipped defaults): 75 s keep-alive, the
        // head timeout, 1 s to flush on disconnect; workers left to actix, as the gateway does.
        // The factory runs on each worker's thread, so each worker gets its own pool.
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(Upstream::new(url.clone())))
                .default_service(web::to(forward))
        })
        .keep_alive(Duration::from_secs(75))
        .client_request_timeout(Duration::from_secs(args.client_header_timeout_secs))
        .client_disconnect_timeout(Duration::from_secs(1))
        .bind(args.listen)
        .with_context(|| format!("cannot listen on {}", args.listen))?;
        // The bound address (a port of 0 is chosen by the OS): the harness reads this line.
        if let Some(addr) = server.addrs().first() {
            eprintln!("stack-floor listening on {addr}");
        }
        server.run().await.context("server")
    })
}

/// The user id of `GET /{stage}/recommended-movies/{user_id}`, or `None` for any other request.
fn user_id(req: &HttpRequest) -> Option<&str> {
    if req.method() != actix_web::http::Method::GET {
        return None;
    }
    let mut segments = req.path().strip_prefix('/')?.split('/');
    let (stage, resource, user_id) = (segments.next()?, segments.next()?, segments.next()?);
    let shape = !stage.is_empty() && resource == "recommended-movies" && !user_id.is_empty();
    (shape && segments.next().is_none()).then_some(user_id)
}

/// `{"user_id":…,"query":…}`, written into one buffer (strings escaped by serde_json).
fn invocation_body(user_id: &str, query: &str) -> Bytes {
    let mut body = Vec::with_capacity(32 + user_id.len() + query.len());
    body.extend_from_slice(b"{\"user_id\":");
    // Writing a `&str` into a `Vec` cannot fail.
    let _ = serde_json::to_writer(&mut body, user_id);
    body.extend_from_slice(b",\"query\":");
    let _ = serde_json::to_writer(&mut body, query);
    body.push(b'}');
    Bytes::from(body)
}

/// One call: the user id and the query string become a small JSON body (what the gateway's default
/// body carries), the upstream's answer goes back as it came.
async fn forward(req: HttpRequest, upstream: web::Data<Upstream>) -> HttpResponse {
    let Some(user_id) = user_id(&req) else {
        return HttpResponse::NotFound().finish();
    };
    let body = invocation_body(user_id, req.query_string());
    let call = http::Request::post(upstream.url.as_str())
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(body));
    let Ok(call) = call else {
        return HttpResponse::InternalServerError().finish();
    };
    let answer = match upstream.client.request(call).await {
        Ok(answer) => answer,
        Err(_) => return HttpResponse::BadGateway().finish(),
    };
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = answer
        .headers()
        .get(http::header::CONTENT_TYPE)
        .map(|v| v.as_bytes().to_vec());
    let Ok(body) = answer.into_body().collect().await else {
        return HttpResponse::BadGateway().finish();
    };
    let mut response = HttpResponse::build(status);
    if let Some(content_type) = content_type {
        response.insert_header((actix_web::http::header::CONTENT_TYPE, content_type));
    }
    response.body(body.to_bytes())
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::{invocation_body, user_id};

    #[test]
    fn only_the_route_shape_is_forwarded() {
        let id = |req: TestRequest| user_id(&req.to_http_request()).map(str::to_owned);
        let get = |uri: &str| id(TestRequest::get().uri(uri));
        assert_eq!(
            get("/prod/recommended-movies/U1?k=5").as_deref(),
            Some("U1")
        );
        assert_eq!(get("/prod/recommended-movies/U1"), Some("U1".to_owned()));
        assert_eq!(get("/prod/recommended-movies/"), None);
        assert_eq!(get("/prod/recommended-movies/U1/x"), None);
        assert_eq!(get("//recommended-movies/U1"), None);
        assert_eq!(get("/prod/other/U1"), None);
        assert_eq!(get("/healthz"), None);
        assert_eq!(
            id(TestRequest::post().uri("/prod/recommended-movies/U1")),
            None
        );
    }

    #[test]
    fn the_body_is_json_with_both_values_escaped() {
        let body = invocation_body("U\"1", "k=5&q=\\");
        let value: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(
            value,
            serde_json::json!({ "user_id": "U\"1", "query": "k=5&q=\\" })
        );
    }
}
