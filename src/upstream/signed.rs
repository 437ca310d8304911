//! What every signed AWS call of the gateway shares: the pooled HTTPS client (a pool per thread),
//! SigV4 signing of one request with AWS's own signer, and the SDK's rule for which transport
//! failures are transient.
//!
//! Input: a built `http::Request` (method, URI, headers, body), a signing [`Identity`], region,
//! signing name and [`SigningSettings`]. Output: the request with `Authorization`, `X-Amz-Date`
//! (and for S3 `X-Amz-Content-SHA256`, and the session token when there is one) added.
//!
//! Used by [`super::lean`] (SageMaker `InvokeEndpoint`, signed by [`super::sigv4`], which leaves
//! shapes it does not build to [`sign_request_at`]) and [`super::s3`] (S3 `GetObject` for the keys
//! source). Invariants: the secret and the signature never reach a log line; connection
//! set-up (TCP and TLS together) is bounded by the connect timeout, as the SDK's is.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;
use http::header::HeaderValue;
use http_body_util::Full;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use thread_local::ThreadLocal;

/// The connector: TCP, then TLS for `https`, with the whole set-up bounded.
pub type Connector = ConnectTimeout<hyper_rustls::HttpsConnector<HttpConnector>>;
/// One thread's pool.
type Pool = HyperClient<Connector, Full<Bytes>>;

/// The pooled client every signed call goes through: one pool per calling thread, all built on
/// one connector (one TLS configuration).
///
/// A connection's task runs on the runtime of the thread that opened it, and each actix worker has
/// its own runtime. With one pool shared by every worker, a worker handed a connection another
/// worker had opened woke that worker's thread to write the call and was woken back for the
/// answer: two cross-thread wake-ups per call, whenever the pool happened to hand out such a
/// connection. The stack floor measured 76–79 µs of CPU per request at one connection in that
/// case against 41–46 µs otherwise, and 29–33 against 25–27 µs at 16 connections (issue #19).
/// With a pool per thread a call never leaves its worker, as each nginx worker keeps its own
/// keepalive connections.
///
/// The cost: the traffic is split over the workers' pools, so at a low rate each connection
/// waits longer between calls and more of them reach an upstream's idle timeout. Against an
/// upstream closing connections idle for 100 ms, 600 calls at ≈ 40/s on two workers saw 48–58
/// closes instead of 13–22, and 2–3 calls sent on a connection as the upstream closed it (a
/// transport failure, retried when `sagemaker.max_attempts` allows, as by default).
pub struct HttpClient {
    connector: Connector,
    pools: ThreadLocal<Pool>,
}

impl HttpClient {
    /// Sends `request` on a connection of the calling thread's pool.
    pub fn request(
        &self,
        request: http::Request<Full<Bytes>>,
    ) -> hyper_util::client::legacy::ResponseFuture {
        self.pool().request(request)
    }

    /// The calling thread's pool, built on first use.
    fn pool(&self) -> &Pool {
        self.pools.get_or(|| {
            HyperClient::builder(TokioExecutor::new())
                .pool_timer(TokioTimer::new())
                .timer(TokioTimer::new())
                .build(self.connector.clone())
        })
    }
}

/// A pooled HTTP/1.1 client for `http` and `https` URLs (native roots, rustls with aws-lc-rs).
/// Fails only when TLS cannot be set up at all.
pub fn http_client(connect_timeout: Duration) -> anyhow::Result<HttpClient> {
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?;
    let tls = {
        use hyper_rustls::ConfigBuilderExt;
        match builder.clone().with_native_roots() {
            Ok(b) => b,
            Err(e) => {
                // As the SDK's client does: start anyway; an https endpoint then fails per call.
                tracing::warn!(error = %e, "no usable root certificates; https calls will fail");
                builder.with_root_certificates(rustls::RootCertStore::empty())
            }
        }
    }
    .with_no_client_auth();
    let connector = ConnectTimeout {
        inner: hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp),
        timeout: connect_timeout,
    };
    Ok(HttpClient {
        connector,
        pools: ThreadLocal::new(),
    })
}

/// Where a signature is computed: region, signing name, and the service's signer settings.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// Signing region.
    pub region: &'a str,
    /// Signing name (`sagemaker`, `s3`).
    pub name: &'a str,
}

/// Signs `request` (whose body is `body`) for `scope` at the current time and adds the signature
/// headers. The request's headers must already hold every header to sign, `Host` included.
pub fn sign_request(
    request: &mut http::Request<Full<Bytes>>,
    body: &[u8],
    identity: &Identity,
    scope: Scope<'_>,
    settings: SigningSettings,
) -> Result<(), String> {
    sign_request_at(request, body, identity, scope, settings, SystemTime::now())
}

/// [`sign_request`] at `time`: aws-sigv4's full signer, the reference [`super::sigv4`] is proven
/// equal to.
pub fn sign_request_at(
    request: &mut http::Request<Full<Bytes>>,
    body: &[u8],
    identity: &Identity,
    scope: Scope<'_>,
    settings: SigningSettings,
    time: SystemTime,
) -> Result<(), String> {
    let uri = request.uri().to_string();
    let signable = SignableRequest::new(
        request.method().as_str(),
        &uri,
        request
            .headers()
            .iter()
            .filter_map(|(n, v)| Some((n.as_str(), v.to_str().ok()?))),
        SignableBody::Bytes(body),
    )
    .map_err(|e| format!("cannot sign: {e}"))?;
    let params = v4::SigningParams::builder()
        .identity(identity)
        .region(scope.region)
        .name(scope.name)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| format!("cannot sign: {e}"))?;
    let (headers, query) = sign(signable, &params.into())
        .map_err(|e| format!("cannot sign: {e}"))?
        .into_parts()
        .0
        .into_parts();
    if !query.is_empty() {
        return Err("cannot sign: a signature in the query string is not supported".to_owned());
    }
    // As `apply_to_request_http1x` does, without its panic on a value that is not a header value
    // (an access key id read from the environment can hold anything).
    for header in headers {
        let mut value = HeaderValue::from_str(header.value())
            .map_err(|_| format!("cannot sign: {} is not a valid header value", header.name()))?;
        value.set_sensitive(header.sensitive());
        request.headers_mut().insert(header.name(), value);
    }
    Ok(())
}

/// A connector whose whole connection set-up (TCP and TLS) is bounded, like the SDK's
/// `connect_timeout`; the timeout surfaces as an I/O `TimedOut` connect error.
#[derive(Clone)]
pub struct ConnectTimeout<C> {
    inner: C,
    timeout: Duration,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<C> tower_service::Service<http::Uri> for ConnectTimeout<C>
where
    C: tower_service::Service<http::Uri>,
    C::Future: Send + 'static,
    C::Error: Into<BoxError>,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<C::Response, BoxError>> + Send>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let limit = self.timeout;
        Box::pin(async move {
            match tokio::time::timeout(limit, connecting).await {
                Ok(result) => result.map_err(Into::into),
                Err(_) => Err(Box::new(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("connect (TCP + TLS) timed out after {limit:?}"),
                )) as BoxError),
            }
        })
    }
}

/// The `Host` value of an endpoint URL: its authority, as hyper would send it.
pub fn host_of(base: &str) -> anyhow::Result<HeaderValue> {
    let uri: http::Uri = base.parse()?;
    let authority = uri
        .authority()
        .ok_or_else(|| anyhow::anyhow!("endpoint {base} has no host"))?;
    Ok(HeaderValue::from_str(authority.as_str())?)
}

/// The SDK's rule for a failed dispatch (aws-smithy-http-client's error mapping + the transient
/// classifier): connect failures, closed or cancelled connections, I/O errors and messages cut
/// short are retried; an answer that is not HTTP is not.
pub fn is_transient(e: &hyper_util::client::legacy::Error) -> bool {
    if e.is_connect() {
        return true;
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<std::io::Error>() {
            return true;
        }
        if let Some(h) = s.downcast_ref::<hyper::Error>()
            && (h.is_closed() || h.is_canceled() || h.is_incomplete_message() || h.is_timeout())
        {
            return true;
        }
        source = s.source();
    }
    false
}

/// An error and its sources, as one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::BodyExt;

    use super::*;

    /// A loopback HTTP/1.1 server answering every request `200 ok` on kept-alive connections;
    /// returns its URL and the number of connections accepted so far.
    fn counting_server() -> (String, Arc<AtomicUsize>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            for mut tcp in listener.incoming().map_while(Result::ok) {
                count.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || {
                    let (mut head, mut buf) = (Vec::new(), [0u8; 1024]);
                    while let Ok(n @ 1..) = tcp.read(&mut buf) {
                        head.extend_from_slice(&buf[..n]);
                        while let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                            head.drain(..end + 4);
                            let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            if tcp.write_all(ok).is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (url, accepted)
    }

    /// One GET on `client`, its answer read whole; then a pause, in which the connection goes
    /// back to the pool (a task on the calling thread's runtime returns it once it is ready).
    async fn call(client: &HttpClient, url: &str) {
        let request = http::Request::get(url)
            .body(Full::new(Bytes::new()))
            .unwrap();
        let answer = client.request(request).await.unwrap();
        assert_eq!(answer.status(), 200);
        answer.into_body().collect().await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    /// Runs `work` on a new thread with a current-thread runtime of its own, as an actix worker.
    fn worker(work: impl Future<Output = ()> + Send + 'static) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(work);
        })
    }

    #[test]
    fn each_thread_calls_on_connections_of_its_own() {
        let (url, accepted) = counting_server();
        let client = Arc::new(http_client(Duration::from_secs(5)).unwrap());
        let (a_idle, b_may_call) = tokio::sync::oneshot::channel();
        let (b_done, a_may_call) = tokio::sync::oneshot::channel();
        // Worker A calls, and keeps its runtime (and its idle connection's task) running while
        // worker B calls: with one shared pool B would be handed A's idle connection.
        let a = worker({
            let (client, url) = (client.clone(), url.clone());
            async move {
                call(&client, &url).await;
                call(&client, &url).await;
                a_idle.send(()).unwrap();
                a_may_call.await.unwrap();
                call(&client, &url).await;
            }
        });
        let b = worker(async move {
            b_may_call.await.unwrap();
            call(&client, &url).await;
            call(&client, &url).await;
            b_done.send(()).unwrap();
        });
        a.join().unwrap();
        b.join().unwrap();
        // One connection per thread, each kept alive for that thread's later calls.
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    /// Thread ids are recycled, so a new thread may be handed the pool of one that exited. That
    /// pool's idle connections died with the exited thread's runtime (their tasks ran there): they
    /// are never handed a call, which would wait for a task nobody runs.
    #[test]
    fn a_pool_left_by_an_exited_thread_hands_out_no_dead_connection() {
        let (url, accepted) = counting_server();
        let client = Arc::new(http_client(Duration::from_secs(5)).unwrap());
        for _ in 0..3 {
            let (client, url) = (client.clone(), url.clone());
            worker(async move {
                let bounded = tokio::time::timeout(Duration::from_secs(10), call(&client, &url));
                assert!(bounded.await.is_ok(), "the call hung");
            })
            .join()
            .unwrap();
        }
        // Each thread's connection closed with its runtime; each call opened its own.
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    /// Background tasks (the keys and gateway.yaml reloaders) run on the System's multi-thread
    /// runtime and move between its threads: their calls keep at most one connection per thread.
    #[test]
    fn a_task_moving_between_threads_keeps_a_connection_per_thread_at_most() {
        let (url, accepted) = counting_server();
        let client = Arc::new(http_client(Duration::from_secs(5)).unwrap());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let task = tokio::spawn(async move {
                for _ in 0..20 {
                    call(&client, &url).await;
                }
            });
            task.await.unwrap();
        });
        assert!((1..=2).contains(&accepted.load(Ordering::SeqCst)));
    }

    #[test]
    fn host_is_the_authority() {
        assert_eq!(host_of("http://127.0.0.1:8081").unwrap(), "127.0.0.1:8081");
        assert_eq!(
            host_of("https://runtime.sagemaker.eu-west-1.amazonaws.com").unwrap(),
            "runtime.sagemaker.eu-west-1.amazonaws.com"
        );
    }
}
