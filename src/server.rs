//! The HTTP adapter: actix-web in, [`pipeline`](crate::pipeline) in the middle, actix-web out.
//!
//! Actix types stop here. This module enforces what must hold on the request head, before routing
//! (header size → 431, then a declared `Content-Length` over the limit → 413; client header
//! timeout, keep-alive), hands the pipeline the body as a stream it reads only once the request is
//! admitted, assigns the request id and trace id, derives the client address
//! from the trusted `X-Forwarded-For` hops, serves `/healthz` outside the stage namespace, and drains on
//! shutdown: `/healthz` turns 503, the listener closes, in-flight requests finish within the grace.
//! Each finished request is written to the access log and the metrics, and, when OTLP export is on,
//! its trace is started here (from `traceparent` / `X-Amzn-Trace-Id`) and finished here.
//!
//! A request answered before its body was read to the end (refused on the head, by routing, the
//! key check or admission, or cut off while reading: 413, 408, 503) is answered with
//! `Connection: close`, and the connection is closed after the answer: the unread bytes are never
//! parsed as a next request, nor drained at the client's pace. The request's memory account
//! ([`crate::memory`]) lives until its response has been written, which is handed to actix in
//! pieces so that a client that stops reading never makes it copy a whole answer.
//!
//! The admin listener ([`run_admin`]) is a second server on its own address (default
//! 127.0.0.1:9090), serving `GET /metrics`; nothing of it is reachable through the stage routes.

use std::future::Future;
use std::net::TcpListener;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::body::{BodySize, MessageBody};
use actix_web::dev::Server;
use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use bytes::Bytes;
use futures_util::Stream;

use crate::auth::KeyStore;
use crate::body;
use crate::config::gateway::ServerConfig;
use crate::context::RequestContext;
use crate::error::GatewayError;
use crate::memory::Held;
use crate::message::{GatewayRequest, GatewayResponse};
use crate::pipeline::Gateway;

pub use crate::message::{HEALTH_PATH, REQUEST_ID_HEADER, TRACE_ID_HEADER};

/// State shared by the workers.
pub struct AppState {
    /// The pipeline and its state.
    pub gateway: Arc<Gateway>,
    /// Set once shutdown starts: `/healthz` answers 503 from then on.
    pub draining: AtomicBool,
    settings: ServerConfig,
}

/// Builds the actix app; shared by `main` and tests so both run the same middleware and routes.
pub fn create_app(
    state: web::Data<AppState>,
) -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(state)
        // Other methods on /healthz are unknown routes, answered by the pipeline like any other.
        .service(
            web::resource(HEALTH_PATH)
                .route(web::get().to(health))
                .default_service(web::to(proxy)),
        )
        .default_service(web::to(proxy))
}

/// Starts serving on `listener` until `shutdown` resolves, then drains for `settings.drain_grace`.
pub fn run(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<Server> {
    let settings = gateway.live().config.server.clone();
    let state = web::Data::new(AppState {
        gateway,
        draining: AtomicBool::new(false),
        settings: settings.clone(),
    });
    let app_state = state.clone();
    let mut server = HttpServer::new(move || create_app(app_state.clone()))
        .keep_alive(settings.keep_alive)
        .client_request_timeout(settings.client_header_timeout)
        .client_disconnect_timeout(std::time::Duration::from_secs(1))
        .shutdown_timeout(settings.drain_grace.as_secs())
        .disable_signals();
    if let Some(n) = settings.workers {
        server = server.workers(n);
    }
    let server = server.listen(listener)?.run();
    let handle = server.handle();
    actix_web::rt::spawn(async move {
        shutdown.await;
        state.draining.store(true, Ordering::SeqCst);
        tracing::info!(
            grace_secs = settings.drain_grace.as_secs(),
            "shutdown requested: draining in-flight requests"
        );
        // Open streams get the grace, then end as failed, a moment before actix stops waiting,
        // so that their last bytes (an SSE error event, or the cut) still reach the clients.
        let streams = state.gateway.clone();
        let grace = settings.drain_grace;
        actix_web::rt::spawn(async move {
            let margin = grace.min(std::time::Duration::from_secs(1)) / 2;
            actix_web::rt::time::sleep(grace.saturating_sub(margin)).await;
            streams.stop_streams.send_replace(true);
        });
        handle.stop(true).await;
    });
    Ok(server)
}

/// Path of the Prometheus metrics on the admin listener.
pub const METRICS_PATH: &str = "/metrics";
/// Path of the usage read-out on the admin listener.
pub const USAGE_PATH: &str = "/usage";

struct AdminState {
    gateway: Arc<Gateway>,
    keys: Option<Arc<KeyStore>>,
}

/// Serves the admin endpoints (`GET /metrics`) on `listener` until `shutdown` resolves. `keys`
/// supplies the key-reload counts. One worker: scrapes are rare and must not take request threads.
pub fn run_admin(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    keys: Option<Arc<KeyStore>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<Server> {
    let state = web::Data::new(AdminState { gateway, keys });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .service(web::resource(METRICS_PATH).route(web::get().to(metrics)))
            .service(web::resource(USAGE_PATH).route(web::get().to(usage)))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)?
    .run();
    let handle = server.handle();
    actix_web::rt::spawn(async move {
        shutdown.await;
        handle.stop(true).await;
    });
    Ok(server)
}

async fn metrics(state: web::Data<AdminState>) -> HttpResponse {
    let gateway = &state.gateway;
    let live = gateway.live();
    for (stage, cache) in &live.caches {
        let (entries, bytes) = cache.size().await;
        let c = &cache.counters;
        gateway.metrics.set_cache(
            stage,
            entries,
            bytes,
            (
                c.evicted_size.load(Ordering::Relaxed),
                c.evicted_expired.load(Ordering::Relaxed),
            ),
        );
    }
    if let Some(keys) = &state.keys {
        gateway
            .metrics
            .set_key_reloads(keys.reloads_ok(), keys.reloads_failed());
    }
    gateway.metrics.set_limit_store(&gateway.limiter.status());
    gateway.metrics.set_memory(&gateway.memory);
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(gateway.metrics.render())
}

/// `GET /usage[?key_id=ID][&period=current|previous]`: quota usage per key id and plan (API
/// Gateway's GetUsage), from the shared counters with the Redis store. Key ids only, never keys.
async fn usage(req: HttpRequest, state: web::Data<AdminState>) -> HttpResponse {
    let mut key_id = None;
    let mut period = crate::limits::UsagePeriod::Current;
    for (name, value) in crate::route::decode_query(req.query_string(), true).unwrap_or_default() {
        match (name.as_str(), value.as_str()) {
            ("key_id", _) => key_id = Some(value),
            ("period", "current") => period = crate::limits::UsagePeriod::Current,
            ("period", "previous") => period = crate::limits::UsagePeriod::Previous,
            _ => {
                return HttpResponse::BadRequest()
                    .content_type("application/json")
                    .body(r#"{"message":"query parameters: key_id=ID, period=current|previous"}"#);
            }
        }
    }
    let keys = state.gateway.keys.load();
    let limiter = &state.gateway.limiter;
    match crate::limits::usage_json(limiter, &keys.limiters, key_id.as_deref(), period).await {
        Ok(report) => HttpResponse::Ok()
            .content_type("application/json")
            .body(report.to_string()),
        Err(e) => {
            tracing::warn!(error = %e, "usage read-out failed");
            HttpResponse::ServiceUnavailable()
                .content_type("application/json")
                .body(r#"{"message":"limit store unavailable"}"#)
        }
    }
}

async fn health(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let draining = state.draining.load(Ordering::SeqCst);
    let mut builder = if draining {
        HttpResponse::ServiceUnavailable()
    } else {
        HttpResponse::Ok()
    };
    // Every response carries the request and trace ids, the health check's too.
    let trace_id = req
        .headers()
        .get("x-amzn-trace-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| valid_trace_id(v))
        .map_or_else(new_trace_id, str::to_owned);
    builder
        .insert_header((REQUEST_ID_HEADER, new_request_id()))
        .insert_header((TRACE_ID_HEADER, trace_id))
        .content_type("application/json");
    let status = if draining { "draining" } else { "ok" };
    // A shared limit store's state is detail only: the status code stays the ALB's contract
    // (200 unless draining), so an outage of Redis never takes the tasks out of service.
    let store = state.gateway.limiter.status();
    match store.on_store_failure {
        None => builder.body(format!(r#"{{"status":"{status}"}}"#)),
        Some(policy) => builder.body(format!(
            r#"{{"status":"{status}","limit_store":{{"backend":"{}","state":"{}","on_store_failure":"{policy}"}}}}"#,
            store.backend,
            if store.up { "up" } else { "down" },
        )),
    }
}

async fn proxy(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let settings = &state.settings;
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let forwarded: Vec<&str> = headers
        .iter()
        .filter(|(n, _)| n == "x-forwarded-for")
        .map(|(_, v)| v.as_str())
        .collect();
    let peer = req
        .peer_addr()
        .map_or(std::net::IpAddr::from([127, 0, 0, 1]), |a| a.ip());
    let source_ip = client_ip(peer, &forwarded, settings.trusted_proxy_hops);
    let trace_id = headers
        .iter()
        .find(|(n, _)| n == "x-amzn-trace-id")
        .map(|(_, v)| v.as_str())
        .filter(|v| valid_trace_id(v))
        .map_or_else(new_trace_id, str::to_owned);
    let mut ctx = RequestContext::new(
        new_request_id(),
        trace_id,
        source_ip,
        req.method().as_str(),
        req.path(),
    );
    ctx.user_agent = headers
        .iter()
        .find(|(n, _)| n == "user-agent")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    if let Some(tracer) = &state.gateway.tracer {
        let traceparent = headers
            .iter()
            .find(|(n, _)| n == "traceparent")
            .map(|(_, v)| v.as_str());
        ctx.trace = tracer.start(traceparent, &ctx.trace_id);
    }

    // The request head, as in API Gateway: header size, then the declared body size, before routing.
    let header_bytes: usize = headers.iter().map(|(n, v)| n.len() + v.len()).sum();
    let header_value = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let content_length = header_value("content-length");
    let declared = body::declared_length(content_length);
    let refused = if header_bytes > settings.max_header_bytes {
        Some(GatewayError::HeadersTooLarge)
    } else if declared.is_some_and(|n| n > settings.max_body_bytes as u64) {
        Some(GatewayError::RequestTooLarge)
    } else {
        None
    };
    let has_body = body::has_body(content_length, header_value("transfer-encoding"));
    let mut chunks = RequestBody {
        payload,
        ended: !has_body,
    };
    let memory = state.gateway.memory.account();
    let in_flight = InFlight::enter(&state.gateway.metrics.in_flight);
    let mut response = match refused {
        Some(e) => state.gateway.refuse(e, None, &mut ctx),
        None => {
            let greq = GatewayRequest {
                method: req.method().as_str().to_owned(),
                path: req.path().to_owned(),
                query: req.query_string().to_owned(),
                headers,
            };
            state
                .gateway
                .handle(&greq, &mut chunks, &memory, &mut ctx)
                .await
        }
    };
    drop(in_flight);
    let unread = (!chunks.ended).then_some(chunks);
    if let Some(stream) = response.stream.take() {
        // Logged and counted when the stream ends (see `StreamBody`).
        let gateway = state.gateway.clone();
        let status = response.status;
        let mut builder = head(status, response.headers, &ctx, unread.is_some());
        let open = gateway.metrics.stream_open.clone();
        open.inc();
        return builder.body(StreamBody {
            stream,
            ctx,
            gateway,
            status,
            open,
            state: Streaming::Open,
            flushed: false,
            _memory: memory,
            _unread: unread,
        });
    }
    finish(
        &state.gateway,
        &mut ctx,
        response.status,
        response.body.len(),
    );
    write(response, &ctx, memory, unread)
}

/// The access log line, the metrics and the trace of a finished request of `status` whose body
/// was `length` bytes.
fn finish(gateway: &Gateway, ctx: &mut RequestContext, status: u16, length: usize) {
    ctx.log_access(status, length);
    gateway.metrics.observe(ctx, status, ctx.started.elapsed());
    if let (Some(trace), Some(tracer)) = (ctx.trace.take(), &gateway.tracer) {
        tracer.finish(*trace, ctx, status);
    }
}

/// Counts a request in flight until dropped (also when actix drops the handler of a client that
/// went away).
struct InFlight<'a>(&'a prometheus::IntGauge);

impl<'a> InFlight<'a> {
    fn enter(gauge: &'a prometheus::IntGauge) -> Self {
        gauge.inc();
        InFlight(gauge)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The request body as the pipeline reads it, remembering whether it was read to the end.
struct RequestBody {
    payload: web::Payload,
    ended: bool,
}

impl Stream for RequestBody {
    type Item = Result<Bytes, actix_web::error::PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let next = Pin::new(&mut self.payload).poll_next(cx);
        if let Poll::Ready(None) = next {
            self.ended = true;
        }
        next
    }
}

/// Largest piece of a response body handed to actix at once. actix copies each piece into the
/// connection's write buffer and asks for the next only once that buffer is below 32 KiB, so a
/// client that does not read holds about this much plus 32 KiB of copies, never a copy of the whole
/// answer: a cached answer stays one shared buffer however many callers read it slowly, and the
/// request's memory account lives until the last piece has been taken.
const WRITE_PIECE: usize = 16 * 1024;

/// A response body that keeps, until it has been written, the request's memory account and, for a
/// request answered before its body was read, the unread body: while actix sees it unread it
/// closes the connection after the answer instead of draining a chunked body at the client's pace.
/// It hands the bytes over in pieces of at most [`WRITE_PIECE`].
struct ResponseBody {
    bytes: Bytes,
    _memory: Held,
    _unread: Option<RequestBody>,
}

impl MessageBody for ResponseBody {
    type Error = std::convert::Infallible;

    fn size(&self) -> BodySize {
        BodySize::Sized(self.bytes.len() as u64)
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        if self.bytes.is_empty() {
            Poll::Ready(None)
        } else {
            let piece = self.bytes.len().min(WRITE_PIECE);
            Poll::Ready(Some(Ok(self.bytes.split_to(piece))))
        }
    }
}

/// Where a streamed body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Streaming {
    /// Parts still coming.
    Open,
    /// The end's last bytes were handed over; then the body ends, or the connection is cut.
    Ending { abort: bool },
    /// Nothing more.
    Done,
}

/// A streaming route's body ([`crate::relay`]): the relayed items as they come, the request's
/// context until the stream ends, when it writes the access log line and the metrics (also when
/// actix drops it because the client went away: `client_gone`). A failed stream is ended by an
/// error, which makes actix close the connection without the terminating chunk, after one pause
/// that lets it flush what it holds (actix drops unwritten bytes when a body fails).
struct StreamBody {
    stream: crate::message::BodyStream,
    ctx: RequestContext,
    gateway: Arc<Gateway>,
    status: u16,
    open: prometheus::IntGauge,
    state: Streaming,
    flushed: bool,
    _memory: Held,
    _unread: Option<RequestBody>,
}

/// The error that cuts a failed stream's connection.
#[derive(Debug)]
struct StreamCut(&'static str);

impl std::fmt::Display for StreamCut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stream ended: {}", self.0)
    }
}

impl std::error::Error for StreamCut {}

impl StreamBody {
    fn record(&mut self) -> &mut crate::context::StreamRecord {
        self.ctx.stream.get_or_insert_with(Default::default)
    }

    /// Ends the body: cut (after one flush) or clean.
    fn end(&mut self, abort: bool, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, StreamCut>>> {
        if !abort {
            self.state = Streaming::Done;
            return Poll::Ready(None);
        }
        if !self.flushed {
            self.flushed = true;
            self.state = Streaming::Ending { abort };
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.state = Streaming::Done;
        let outcome = self.record().outcome.unwrap_or("upstream_error");
        Poll::Ready(Some(Err(StreamCut(outcome))))
    }
}

impl MessageBody for StreamBody {
    type Error = StreamCut;

    fn size(&self) -> BodySize {
        BodySize::Stream
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        use crate::message::{Relayed, StreamOutcome};
        match self.state {
            Streaming::Done => return Poll::Ready(None),
            Streaming::Ending { abort } => return self.end(abort, cx),
            Streaming::Open => {}
        }
        match self.stream.0.as_mut().poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Relayed::Part(bytes))) => {
                let elapsed = self.ctx.started.elapsed();
                let record = self.record();
                record.first_byte.get_or_insert(elapsed);
                record.bytes += bytes.len() as u64;
                record.parts += 1;
                Poll::Ready(Some(Ok(bytes)))
            }
            Poll::Ready(Some(Relayed::End {
                outcome,
                error_type,
                last,
                abort,
                cause,
            })) => {
                self.record().outcome = Some(outcome.as_str());
                // Counted like a buffered call's failure (access log and upstream error metric).
                if error_type.is_some() {
                    self.ctx.upstream_error = error_type;
                }
                if let Some(cause) = cause {
                    self.ctx.error_cause =
                        Some(format!("stream ended: {}: {cause}", outcome.as_str()));
                }
                if let Some(last) = last {
                    self.record().bytes += last.len() as u64;
                    self.state = Streaming::Ending { abort };
                    return Poll::Ready(Some(Ok(last)));
                }
                self.end(abort, cx)
            }
            // The relay task ended without saying how (it cannot, short of a panic).
            Poll::Ready(None) => {
                self.record().outcome = Some(StreamOutcome::UpstreamError.as_str());
                self.end(true, cx)
            }
        }
    }
}

impl Drop for StreamBody {
    fn drop(&mut self) {
        self.open.dec();
        let record = self.record();
        let outcome = *record
            .outcome
            .get_or_insert(crate::message::StreamOutcome::ClientGone.as_str());
        let bytes = usize::try_from(record.bytes).unwrap_or(usize::MAX);
        if outcome != "complete" && self.ctx.error_cause.is_none() {
            self.ctx.error_cause = Some(format!("stream ended: {outcome}"));
        }
        self.gateway.metrics.observe_stream(&self.ctx);
        let (gateway, status) = (self.gateway.clone(), self.status);
        finish(&gateway, &mut self.ctx, status, bytes);
    }
}

/// The status line and headers of `resp`, with the request and trace ids; `close` when the
/// request's body was left unread.
fn head(
    status: u16,
    headers: Vec<(String, String)>,
    ctx: &RequestContext,
    close: bool,
) -> actix_web::HttpResponseBuilder {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut builder = HttpResponse::build(status);
    if close {
        builder.force_close();
    }
    for (name, value) in headers {
        if let (Ok(n), Ok(v)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            builder.insert_header((n, v));
        }
    }
    builder.insert_header((REQUEST_ID_HEADER, ctx.request_id.as_str()));
    if let Ok(v) = HeaderValue::try_from(ctx.trace_id.as_str()) {
        builder.insert_header((TRACE_ID_HEADER, v));
    }
    builder
}

fn write(
    resp: GatewayResponse,
    ctx: &RequestContext,
    memory: Held,
    unread: Option<RequestBody>,
) -> HttpResponse {
    let GatewayResponse {
        status,
        headers,
        body,
        ..
    } = resp;
    head(status, headers, ctx, unread.is_some()).body(ResponseBody {
        bytes: body,
        _memory: memory,
        _unread: unread,
    })
}

/// Picks the client address: the TCP peer, or with `trusted_hops` proxies in front, the address
/// the outermost trusted proxy saw (the `trusted_hops`-th entry from the right of
/// `X-Forwarded-For`). Entries left of it are client-supplied and never trusted.
pub fn client_ip(
    peer: std::net::IpAddr,
    forwarded_for: &[&str],
    trusted_hops: usize,
) -> std::net::IpAddr {
    if trusted_hops == 0 {
        return peer;
    }
    let entries: Vec<&str> = forwarded_for
        .iter()
        .flat_map(|h| h.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if entries.is_empty() {
        return peer;
    }
    let idx = entries.len().saturating_sub(trusted_hops);
    entries[idx].parse().unwrap_or(peer)
}

fn valid_trace_id(v: &str) -> bool {
    !v.is_empty() && v.len() <= 256 && v.bytes().all(|b| (0x21..0x7f).contains(&b))
}

/// A new X-Ray root: `Root=1-<8 hex epoch seconds>-<24 hex random>`.
pub(crate) fn new_trace_id() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // `Root=1-{8 hex digits of the time}-{24 random hex digits}`, written without `format!`.
    let mut hex = [0u8; 32];
    let time = u32::try_from(secs).unwrap_or(u32::MAX).to_be_bytes();
    let random: [u8; 12] = rand::random();
    let _ = hex::encode_to_slice(time, &mut hex[..8]);
    let _ = hex::encode_to_slice(random, &mut hex[8..]);
    let mut id = String::with_capacity(40);
    id.push_str("Root=1-");
    id.push_str(std::str::from_utf8(&hex[..8]).unwrap_or_default());
    id.push('-');
    id.push_str(std::str::from_utf8(&hex[8..]).unwrap_or_default());
    id
}

/// A new `$context.requestId`: a UUID v4 from the thread's fast random generator (`Uuid::new_v4`
/// asks the kernel for each one).
fn new_request_id() -> String {
    let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    id.hyphenated().encode_lower(&mut text).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_have_their_formats() {
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let (a, b) = (new_trace_id(), new_trace_id());
        assert_ne!(a, b);
        for id in [a, b] {
            // Written into a buffer of exactly its size: no reallocation on the request path.
            assert_eq!((id.len(), id.capacity()), (40, 40), "{id}");
            let parts: Vec<&str> = id.split('-').collect();
            assert_eq!(parts.len(), 3, "{id}");
            assert_eq!(parts[0], "Root=1");
            assert_eq!(parts[1].len(), 8, "{id}");
            assert_eq!(parts[2].len(), 24, "{id}");
            let hex = |p: &str| p.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
            assert!(hex(parts[1]) && hex(parts[2]), "{id}");
            let secs = u64::from_str_radix(parts[1], 16).unwrap();
            assert!((before..=before + 5).contains(&secs), "{id}");
            assert!(valid_trace_id(&id));
        }
        let (a, b) = (new_request_id(), new_request_id());
        assert_ne!(a, b);
        for id in [a, b] {
            let parsed = uuid::Uuid::parse_str(&id).unwrap();
            assert_eq!(parsed.get_version_num(), 4, "{id}");
            assert_eq!(parsed.hyphenated().to_string(), id);
        }
    }

    #[test]
    fn forwarded_for_trusts_only_configured_hops() {
        let peer: std::net::IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(client_ip(peer, &["1.2.3.4"], 0), peer);
        assert_eq!(
            client_ip(peer, &["6.6.6.6, 1.2.3.4"], 1),
            "1.2.3.4".parse::<std::net::IpAddr>().unwrap()
        );
        assert_eq!(
            client_ip(peer, &["6.6.6.6", "1.2.3.4, 10.0.0.9"], 2),
            "1.2.3.4".parse::<std::net::IpAddr>().unwrap()
        );
        assert_eq!(client_ip(peer, &[], 1), peer);
        assert_eq!(client_ip(peer, &["garbage"], 1), peer);
    }
}
