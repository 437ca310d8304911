//! `recommender`: parse arguments, then serve, write a sample model, or probe health.
//! SageMaker starts the container as `<image> serve`; see README.md for the artifact format.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use recommender::model::{Model, Precision};
use recommender::recommend::Recommender;
use recommender::sample::{self, SampleSpec};
use recommender::{healthcheck, server};

/// mimalloc, as in the gateway's binary (src/main.rs there): a request's small allocations (the
/// request's JSON, the answer, the log line) cost less (4–6 % of a request at 10,000 items,
/// bench/RESULTS.md §10), and freed memory goes back to the OS as later requests come in.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Movie-recommendation model server (SageMaker bring-your-own-container).
#[derive(Debug, Parser)]
#[command(name = "recommender", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Load the model and serve GET /ping, POST /invocations and the SageMaker Runtime paths.
    Serve {
        /// Model directory (holds model.json).
        #[arg(long, env = "SM_MODEL_DIR", default_value = "/opt/ml/model")]
        model_dir: PathBuf,
        /// Port to bind when --listen is not given.
        #[arg(long, env = "SAGEMAKER_BIND_TO_PORT", default_value_t = 8080)]
        port: u16,
        /// Address to bind with --port when --listen is not given.
        #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
        host: IpAddr,
        /// Exact address to bind instead, e.g. 127.0.0.1:0 (the bound address is printed).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// Byte budget of the per-user score cache of stochastic_plackett_luce_cached, in MiB.
        #[arg(long, env = "RECOMMENDER_SCORE_CACHE_MB", default_value_t = 256)]
        score_cache_mb: u64,
        /// Accept the streaming test knobs in requests (first_line_delay_ms, line_delay_ms,
        /// fail_after_lines, fail_with), for tests and demos; refused with 400 otherwise.
        #[arg(long, env = "RECOMMENDER_STREAM_TEST_KNOBS")]
        stream_test_knobs: bool,
    },
    /// Write a deterministic synthetic model (always includes user U:114521).
    SampleModel {
        /// Output directory (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Number of users.
        #[arg(long, default_value_t = SampleSpec::default().users)]
        users: usize,
        /// Number of movies.
        #[arg(long, default_value_t = SampleSpec::default().items)]
        items: usize,
        /// Embedding dimension.
        #[arg(long, default_value_t = SampleSpec::default().dim)]
        dim: usize,
        /// RNG seed.
        #[arg(long, default_value_t = SampleSpec::default().seed)]
        seed: u64,
        /// Stored precision of the item embeddings (the same values, rounded): f32, f16 or int8.
        #[arg(long, default_value = "f32", value_parser = parse_precision)]
        dtype: Precision,
    },
    /// Exit 0 if GET http://127.0.0.1:PORT/ping answers 200, else 1 (for Docker HEALTHCHECK).
    Healthcheck {
        #[arg(long, env = "SAGEMAKER_BIND_TO_PORT", default_value_t = 8080)]
        port: u16,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve {
            model_dir,
            port,
            host,
            listen,
            score_cache_mb,
            stream_test_knobs,
        } => listen
            .map_or(Ok(SocketAddr::new(host, port)), |a| resolve(&a))
            .and_then(|addr| serve(model_dir, addr, score_cache_mb, stream_test_knobs)),
        Command::SampleModel {
            out,
            users,
            items,
            dim,
            seed,
            dtype,
        } => sample::generate(SampleSpec {
            users,
            items,
            dim,
            seed,
        })
        .and_then(|artifact| artifact.write_as(&out, dtype))
        .map(|()| println!("wrote sample model to {}", out.display())),
        Command::Healthcheck { port } => {
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            healthcheck::check(addr, Duration::from_secs(2)).map_err(anyhow::Error::msg)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("recommender: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `--dtype`: `f32`, `f16` or `int8`.
fn parse_precision(s: &str) -> Result<Precision, String> {
    [Precision::F32, Precision::F16, Precision::Int8]
        .into_iter()
        .find(|p| p.name() == s)
        .ok_or_else(|| format!("expected f32, f16 or int8; got \"{s}\""))
}

/// `--listen` accepts `IP:PORT` or `HOST:PORT` (e.g. `localhost:0`, IPv4 preferred).
fn resolve(listen: &str) -> anyhow::Result<SocketAddr> {
    let addrs: Vec<SocketAddr> = listen
        .to_socket_addrs()
        .with_context(|| format!("--listen {listen}: not an address"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .with_context(|| format!("--listen {listen}: resolves to no address"))
}

fn serve(
    model_dir: PathBuf,
    addr: SocketAddr,
    score_cache_mb: u64,
    stream_test_knobs: bool,
) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never into CloudWatch or a log file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let started = std::time::Instant::now();
    let model = Model::load(&model_dir)?;
    tracing::info!(
        model_dir = %model_dir.display(),
        model_version = %model.version,
        users = model.n_users(),
        items = model.n_items(),
        dim = model.dim,
        item_precision = model.precision().name(),
        fallback = ?model.fallback_source(),
        load_ms = started.elapsed().as_millis() as u64,
        "model loaded"
    );
    if stream_test_knobs {
        tracing::warn!("streaming test knobs on: requests may delay and break their streams");
    }
    let recommender = Arc::new(
        Recommender::new(Arc::new(model), score_cache_mb.saturating_mul(1024 * 1024))
            .with_stream_test_knobs(stream_test_knobs),
    );
    let listener = TcpListener::bind(addr).with_context(|| format!("binding {addr}"))?;
    let bound = listener.local_addr()?;
    // Tests and scripts read this line to learn a port chosen by the OS (--listen 127.0.0.1:0).
    println!("recommender listening on {bound}");
    tracing::info!(addr = %bound, "listening");
    actix_web::rt::System::new().block_on(server::run(listener, recommender, shutdown_signal()))?;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGTERM (SageMaker, Docker, ECS) or Ctrl-C.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
