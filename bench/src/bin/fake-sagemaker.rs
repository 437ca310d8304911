//! `fake-sagemaker`: the benchmark's upstream. It speaks just enough of the SageMaker Runtime
//! protocol for sagegate's SDK call and nginx's `proxy_pass` to succeed: `POST
//! /endpoints/{name}/invocations` gets `200` with a fixed JSON body after an optional fixed delay;
//! anything else gets `404`.
//!
//! Place: the floor row of the benchmark and the far end of every proxied row. Invariants: the body
//! and the delay never depend on the request, so the upstream costs the same per request in every
//! row and the difference between rows is the proxy. It reads the request body fully (the SDK
//! sends one) and never parses it, so it stays cheap enough not to be the bottleneck.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// A recommender-shaped answer of fixed size (what the real model returns for k=5).
const BODY: &str = r#"{"user_id":"U1","inference_type":"PL","recommendations":[{"item_id":"M10","score":0.91},{"item_id":"M22","score":0.87},{"item_id":"M31","score":0.66},{"item_id":"M47","score":0.52},{"item_id":"M58","score":0.41}]}"#;

#[derive(Parser)]
#[command(
    name = "fake-sagemaker",
    about = "Fixed-latency SageMaker Runtime stand-in for benchmarks"
)]
struct Args {
    /// Address to listen on (loopback only in the harness).
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    /// Milliseconds to wait before answering each invocation.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// Runtime worker threads (default: one per CPU the process may run on).
    #[arg(long)]
    threads: Option<usize>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(n) = args.threads {
        builder.worker_threads(n);
    }
    let runtime = builder.build().context("cannot start the runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    eprintln!("fake-sagemaker listening on {}", listener.local_addr()?);
    let delay = Duration::from_millis(args.delay_ms);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(conn) => conn,
            // Out of file descriptors or a reset during accept: keep serving the others.
            Err(e) => {
                eprintln!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = service_fn(move |req| answer(req, delay));
            // Errors here are client disconnects; the load generator counts its own failures.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(
    req: Request<Incoming>,
    delay: Duration,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let is_invocation = req.method() == Method::POST && is_invocations_path(req.uri().path());
    // Drain the body so keep-alive connections stay usable.
    let _ = req.into_body().collect().await;
    if !is_invocation {
        return Ok(status(StatusCode::NOT_FOUND, r#"{"message":"not found"}"#));
    }
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    Ok(status(StatusCode::OK, BODY))
}

fn status(code: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = code;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

/// `/endpoints/{name}/invocations` with a non-empty name without slashes.
fn is_invocations_path(path: &str) -> bool {
    path.strip_prefix("/endpoints/")
        .and_then(|rest| rest.strip_suffix("/invocations"))
        .is_some_and(|name| !name.is_empty() && !name.contains('/'))
}

#[cfg(test)]
mod tests {
    use super::is_invocations_path;

    #[test]
    fn only_the_invocations_path_matches() {
        assert!(is_invocations_path(
            "/endpoints/movie-recommender-prod/invocations"
        ));
        assert!(!is_invocations_path("/endpoints//invocations"));
        assert!(!is_invocations_path("/endpoints/a/b/invocations"));
        assert!(!is_invocations_path("/endpoints/a/invocation"));
        assert!(!is_invocations_path("/ping"));
    }
}
