//! `loadgen`: closed-loop HTTP/1.1 load generator for the benchmark harness.
//!
//! Input: a URL, method, headers and body; N keep-alive connections; a duration (after a warm-up)
//! or a total request count. Each connection sends its next request only when the previous answer
//! has been read completely (closed loop), so concurrency is exactly N and latency is not hidden by
//! queueing in the generator. Output: one JSON object on stdout — requests/s, latency percentiles
//! from an HDR histogram (microseconds, 3 significant digits), 2xx / non-2xx / error counts and the
//! peak number of requests in flight at once.
//!
//! Invariants: all connections are opened (with bounded parallelism, so a 9,000-connection run does
//! not overflow the server's accept backlog) before the first request is sent; every request has a
//! timeout; a failed connection is counted and reopened; the run ends by itself at the deadline or
//! when the count is used up.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Parser;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, watch};

#[derive(Parser)]
#[command(
    name = "loadgen",
    about = "Closed-loop HTTP/1.1 load generator printing JSON"
)]
struct Args {
    /// Target, e.g. http://127.0.0.1:8080/prod/recommended-movies/U1?k=5
    #[arg(long)]
    url: String,
    /// HTTP method.
    #[arg(long, default_value = "GET")]
    method: String,
    /// Extra header `Name: value`; repeatable.
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// Request body (sent with `content-type: application/json` unless a header overrides it).
    #[arg(long)]
    body: Option<String>,
    /// Concurrent connections (= requests in flight).
    #[arg(long, short = 'c', default_value_t = 1)]
    connections: usize,
    /// Measured seconds (after the warm-up). Ignored when --requests is given.
    #[arg(long, default_value_t = 5.0)]
    duration_secs: f64,
    /// Seconds of unmeasured load before the measured window.
    #[arg(long, default_value_t = 1.0)]
    warmup_secs: f64,
    /// Send exactly this many requests in total (no warm-up), then stop.
    #[arg(long)]
    requests: Option<u64>,
    /// Per-request timeout in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    timeout_ms: u64,
    /// Connections opened at once during the connect phase.
    #[arg(long, default_value_t = 128)]
    connect_parallelism: usize,
    /// Runtime worker threads (default: one per CPU the process may run on).
    #[arg(long)]
    threads: Option<usize>,
}

/// Everything a connection task needs to build its requests; shared read-only.
struct Target {
    addr: String,
    method: Method,
    path: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
    timeout: Duration,
}

/// Counters shared by all connection tasks.
#[derive(Default)]
struct Counters {
    ok: AtomicU64,
    non_2xx: AtomicU64,
    errors: AtomicU64,
    connect_errors: AtomicU64,
    in_flight: AtomicI64,
    peak_in_flight: AtomicI64,
    /// Requests still to send in count mode (negative = used up).
    remaining: AtomicI64,
    /// The first error seen, for diagnosis; later ones are only counted.
    first_error: Mutex<Option<String>>,
}

impl Counters {
    fn error(&self, what: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut first) = self.first_error.lock() {
            first.get_or_insert(what);
        }
    }
}

/// When to record and when to stop; set by the main task once every connection is open.
#[derive(Clone, Copy)]
struct Window {
    measure_from: Instant,
    stop_at: Option<Instant>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(n) = args.threads {
        builder.worker_threads(n);
    }
    let runtime = builder.build().context("cannot start the runtime")?;
    let report = runtime.block_on(run(args))?;
    println!("{report}");
    Ok(())
}

fn parse_target(args: &Args) -> anyhow::Result<Target> {
    let uri: Uri = args
        .url
        .parse()
        .with_context(|| format!("bad --url {}", args.url))?;
    if uri.scheme_str() != Some("http") {
        bail!("only http:// URLs are supported");
    }
    let authority = uri.authority().context("--url has no host")?.clone();
    let port = authority.port_u16().unwrap_or(80);
    let addr = format!("{}:{port}", authority.host());
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let mut headers = vec![(
        hyper::header::HOST,
        HeaderValue::from_str(authority.as_str()).context("bad host")?,
    )];
    if args.body.is_some() {
        headers.push((
            hyper::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ));
    }
    for h in &args.headers {
        let (name, value) = h
            .split_once(':')
            .with_context(|| format!("header {h:?} is not `Name: value`"))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes()).context("bad header name")?;
        let value = HeaderValue::from_str(value.trim()).context("bad header value")?;
        headers.retain(|(n, _)| n != name);
        headers.push((name, value));
    }
    Ok(Target {
        addr,
        method: Method::from_bytes(args.method.as_bytes()).context("bad --method")?,
        path,
        headers,
        body: Bytes::from(args.body.clone().unwrap_or_default()),
        timeout: Duration::from_millis(args.timeout_ms),
    })
}

async fn run(args: Args) -> anyhow::Result<String> {
    if args.connections == 0 {
        bail!("--connections must be > 0");
    }
    let target = Arc::new(parse_target(&args)?);
    let counters = Arc::new(Counters::default());
    let count_mode = args.requests.is_some();
    counters.remaining.store(
        i64::try_from(args.requests.unwrap_or(0)).unwrap_or(i64::MAX),
        Ordering::Relaxed,
    );
    let connect_gate = Arc::new(Semaphore::new(args.connect_parallelism.max(1)));
    let (start_tx, start_rx) = watch::channel::<Option<Window>>(None);
    let opened = Arc::new(AtomicUsize::new(0));
    let all_open = Arc::new(tokio::sync::Notify::new());
    let stop = Arc::new(AtomicBool::new(false));

    let empty = new_histogram()?;
    let mut tasks = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        let task = Connection {
            target: target.clone(),
            counters: counters.clone(),
            stop: stop.clone(),
            count_mode,
            empty: empty.clone(),
        };
        let gate = connect_gate.clone();
        let mut start = start_rx.clone();
        let opened = opened.clone();
        let all_open = all_open.clone();
        let total = args.connections;
        tasks.push(tokio::spawn(async move {
            let sender = {
                let _permit = gate.acquire().await;
                task.connect().await
            };
            if opened.fetch_add(1, Ordering::AcqRel) + 1 == total {
                all_open.notify_one();
            }
            let window = loop {
                if let Some(w) = *start.borrow_and_update() {
                    break w;
                }
                if start.changed().await.is_err() {
                    return task.histogram();
                }
            };
            task.drive(sender, window).await
        }));
    }
    // Wait until every connection attempt has finished (a failed one is counted and retried later).
    let notified = all_open.notified();
    if opened.load(Ordering::Acquire) < args.connections {
        notified.await;
    }
    let connect_failures = counters.connect_errors.load(Ordering::Relaxed);
    let began = Instant::now();
    let window = if count_mode {
        Window {
            measure_from: began,
            stop_at: None,
        }
    } else {
        let measure_from = began + Duration::from_secs_f64(args.warmup_secs.max(0.0));
        Window {
            measure_from,
            stop_at: Some(measure_from + Duration::from_secs_f64(args.duration_secs.max(0.1))),
        }
    };
    let _ = start_tx.send(Some(window));

    let mut histogram = empty;
    for t in tasks {
        let h = t.await.context("a connection task failed")?;
        let _ = histogram.add(h);
    }
    stop.store(true, Ordering::Relaxed);
    let elapsed = if count_mode {
        began.elapsed()
    } else {
        window.stop_at.map_or(Duration::ZERO, |s| {
            s.saturating_duration_since(window.measure_from)
        })
    };

    let ok = counters.ok.load(Ordering::Relaxed);
    let non_2xx = counters.non_2xx.load(Ordering::Relaxed);
    let errors = counters.errors.load(Ordering::Relaxed);
    let pct = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    let first_error = counters.first_error.lock().ok().and_then(|e| e.clone());
    let report = serde_json::json!({
        "url": args.url,
        "connections": args.connections,
        "seconds": elapsed.as_secs_f64(),
        "requests": histogram.len(),
        "rps": if elapsed.is_zero() { 0.0 } else { histogram.len() as f64 / elapsed.as_secs_f64() },
        "ok": ok,
        "non_2xx": non_2xx,
        "errors": errors,
        "connect_errors_at_start": connect_failures,
        "peak_in_flight": counters.peak_in_flight.load(Ordering::Relaxed),
        "latency_ms": {
            "p50": pct(0.50),
            "p90": pct(0.90),
            "p99": pct(0.99),
            "p99_9": pct(0.999),
            "max": histogram.max() as f64 / 1000.0,
            "mean": histogram.mean() / 1000.0,
        },
        "first_error": first_error,
    });
    Ok(report.to_string())
}

/// 1 µs .. 10 min at 3 significant digits.
fn new_histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, 600_000_000, 3).context("histogram bounds")
}

/// One closed-loop connection.
struct Connection {
    target: Arc<Target>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    count_mode: bool,
    /// An empty histogram with the run's bounds, cloned per connection.
    empty: Histogram<u64>,
}

type Sender = http1::SendRequest<Full<Bytes>>;

impl Connection {
    fn histogram(&self) -> Histogram<u64> {
        self.empty.clone()
    }

    async fn connect(&self) -> Option<Sender> {
        match self.try_connect().await {
            Ok(s) => Some(s),
            Err(e) => {
                self.counters.connect_errors.fetch_add(1, Ordering::Relaxed);
                self.counters.error(format!("connect: {e:#}"));
                None
            }
        }
    }

    async fn try_connect(&self) -> anyhow::Result<Sender> {
        let stream =
            tokio::time::timeout(self.target.timeout, TcpStream::connect(&self.target.addr))
                .await
                .context("connect timed out")??;
        stream.set_nodelay(true)?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            // The connection's own error also surfaces on the request that hit it.
            let _ = conn.await;
        });
        Ok(sender)
    }

    fn request(&self) -> anyhow::Result<Request<Full<Bytes>>> {
        let mut builder = Request::builder()
            .method(self.target.method.clone())
            .uri(self.target.path.as_str());
        for (name, value) in &self.target.headers {
            builder = builder.header(name, value);
        }
        Ok(builder.body(Full::new(self.target.body.clone()))?)
    }

    fn should_stop(&self, window: &Window) -> bool {
        if self.stop.load(Ordering::Relaxed) {
            return true;
        }
        if self.count_mode {
            return self.counters.remaining.fetch_sub(1, Ordering::AcqRel) <= 0;
        }
        window.stop_at.is_some_and(|s| Instant::now() >= s)
    }

    async fn drive(self, mut sender: Option<Sender>, window: Window) -> Histogram<u64> {
        let mut histogram = self.histogram();
        while !self.should_stop(&window) {
            let mut s = match sender.take() {
                Some(s) => s,
                None => match self.connect().await {
                    Some(s) => s,
                    None => {
                        // Server gone: don't spin; the deadline still ends the run.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                },
            };
            let sent = Instant::now();
            let in_flight = self.counters.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
            self.counters
                .peak_in_flight
                .fetch_max(in_flight, Ordering::AcqRel);
            let outcome = tokio::time::timeout(self.target.timeout, self.exchange(&mut s)).await;
            self.counters.in_flight.fetch_sub(1, Ordering::AcqRel);
            let latency = sent.elapsed();
            match outcome {
                Ok(Ok(status)) => {
                    if (200..300).contains(&status) {
                        self.counters.ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        self.counters.non_2xx.fetch_add(1, Ordering::Relaxed);
                    }
                    if sent >= window.measure_from {
                        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
                        let _ = histogram.record(micros.max(1));
                    }
                    sender = Some(s);
                }
                Ok(Err(e)) => self.counters.error(format!("request: {e:#}")),
                Err(_) => self.counters.error("request timed out".to_owned()),
            }
        }
        histogram
    }

    async fn exchange(&self, sender: &mut Sender) -> anyhow::Result<u16> {
        sender.ready().await?;
        let response = sender.send_request(self.request()?).await?;
        let status = response.status().as_u16();
        response.into_body().collect().await?;
        Ok(status)
    }
}
