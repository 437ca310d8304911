//! `sagegate`: parse arguments, load configuration, bind, run ([`sagegate::app`]). Everything else
//! lives in the library.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sagegate::app::Loaded;
use sagegate::auth;
use sagegate::config::GatewayConfig;
use sagegate::limits::LimitClock;

/// mimalloc (v3) instead of glibc's malloc: a request makes about a hundred small allocations, and
/// mimalloc's thread-local free lists cut the uncached request from 202.7k to 184.6k instructions
/// (`bench/profile.sh`; jemalloc measured 190.8k). The peak with 9,000 requests in flight is within
/// 3 % of glibc's, and freed memory goes back to the OS as later requests come in (glibc kept its
/// peak). Built with `no_thp`: mimalloc otherwise asks for transparent huge pages on its arenas,
/// which raised that peak to 668–697 MB against glibc's 459–462 MB (bench/RESULTS.md §10). On a
/// host whose THP setting is `always`, `MIMALLOC_ALLOW_THP=0` turns them off for the process.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "sagegate",
    version,
    about = "API Gateway (REST) stand-in in front of a SageMaker endpoint"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// Gateway configuration: a file path or s3://bucket/key (reloaded from there).
        #[arg(long, env = "SAGEGATE_CONFIG", default_value = "config/gateway.yaml")]
        config: PathBuf,
        /// Keys source: a file path or s3://bucket/key.
        #[arg(long, env = "SAGEGATE_KEYS", default_value = "config/keys.yaml")]
        keys: String,
        /// Listen address; overrides `server.listen`.
        #[arg(long, env = "SAGEGATE_LISTEN")]
        listen: Option<String>,
        /// Admin listener address (metrics); overrides `server.admin_listen`; "" disables it.
        #[arg(long, env = "SAGEGATE_ADMIN_LISTEN")]
        admin_listen: Option<String>,
        /// Seconds between two polls of an s3:// keys source (a conditional GET each).
        #[arg(long, env = "SAGEGATE_KEYS_POLL_INTERVAL", default_value = "30", value_parser = seconds)]
        keys_poll_interval: Duration,
    },
    /// Validate the configuration and keys; print every error; exit non-zero on any.
    CheckConfig {
        /// Gateway configuration: a file path or s3://bucket/key.
        #[arg(long, env = "SAGEGATE_CONFIG", default_value = "config/gateway.yaml")]
        config: PathBuf,
        /// Keys source: a file path or s3://bucket/key.
        #[arg(long, env = "SAGEGATE_KEYS", default_value = "config/keys.yaml")]
        keys: String,
    },
    /// API key management.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Quota usage per key id and plan (API Gateway's GetUsage), a table (`--json`: JSON): from the shared Redis
    /// counters of `--config` (`limits.store: redis`) for the keys of `--keys`, or, with
    /// `--admin`, from a running gateway's admin listener (`GET /usage`; any store). Key ids only,
    /// never key values.
    Usage {
        /// Gateway configuration file (its `limits.redis` is read).
        #[arg(long, env = "SAGEGATE_CONFIG", default_value = "config/gateway.yaml")]
        config: PathBuf,
        /// Keys source: a file path or s3://bucket/key.
        #[arg(long, env = "SAGEGATE_KEYS", default_value = "config/keys.yaml")]
        keys: String,
        /// Ask a running gateway instead, e.g. http://127.0.0.1:9090 (its admin listener).
        #[arg(long)]
        admin: Option<String>,
        /// Only this key id.
        #[arg(long)]
        key_id: Option<String>,
        /// `current` or `previous` period.
        #[arg(long, default_value = "current", value_parser = ["current", "previous"])]
        period: String,
        /// JSON (what scripts parse) instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// API Gateway's console "Test" for one request, calling nothing: prints the SageMaker call the
    /// gateway would make as one JSON object (`endpoint`, `headers`, `body`), and with
    /// `--upstream-status` also the `response` a client would get for that answer. Runs the
    /// gateway's own stages; skips the API key, throttling and the cache. Exit 2 on bad input,
    /// naming the route, the template and its line:col.
    TestInvoke(TestInvokeArgs),
    /// Import an API Gateway REST API (its export, stages, usage plans and keys) into
    /// gateway.yaml and keys.yaml; exit 1 when refused, 2 on bad input.
    Import(sagegate::import::ImportArgs),
    /// Probe `/healthz` (for container health checks; the image has no curl). Exit 0 when healthy.
    Healthcheck {
        /// URL to probe.
        #[arg(long, default_value = "http://127.0.0.1:8080/healthz")]
        url: String,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// List the keys of a source (ids, names, plans, enabled; never values or hashes).
    List {
        /// Keys source: a file path or s3://bucket/key.
        #[arg(long)]
        keys: String,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// A fresh random key, printed once. With --keys, appended to that source (as its SHA-256);
    /// without, printed with the hashed entry to paste.
    New {
        /// Key id.
        #[arg(long)]
        id: String,
        /// Usage plan id.
        #[arg(long)]
        plan: String,
        /// Display name (default: the id).
        #[arg(long)]
        name: Option<String>,
        /// Keys source to add the key to: a file path or s3://bucket/key.
        #[arg(long)]
        keys: Option<String>,
        /// Gateway configuration the edited keys are checked against.
        #[arg(long, env = "SAGEGATE_CONFIG", default_value = "config/gateway.yaml")]
        config: PathBuf,
    },
    /// Disable a key (403 from the next reload on).
    Disable(KeyTarget),
    /// Enable a disabled key.
    Enable(KeyTarget),
    /// A new value for a key, printed once; the old value stops working at the next reload.
    Rotate(KeyTarget),
    /// Remove a key's entry.
    Remove(KeyTarget),
}

/// The key an edit is about, and where it lives.
#[derive(clap::Args)]
struct KeyTarget {
    /// Key id.
    #[arg(long)]
    id: String,
    /// Keys source: a file path or s3://bucket/key.
    #[arg(long)]
    keys: String,
    /// Gateway configuration the edited keys are checked against.
    #[arg(long, env = "SAGEGATE_CONFIG", default_value = "config/gateway.yaml")]
    config: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            config,
            keys,
            listen,
            admin_listen,
            keys_poll_interval,
        } => {
            sagegate::telemetry::init();
            match serve(config, keys, listen, admin_listen, keys_poll_interval) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("sagegate: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::CheckConfig { config, keys } => check_config(config, keys),
        Command::Keys { command } => keys(command),
        Command::Usage {
            config,
            keys,
            admin,
            key_id,
            period,
            json,
        } => match usage(&config, &keys, admin.as_deref(), key_id.as_deref(), &period) {
            Ok(report) => {
                println!("{}", sagegate::cli::usage::render(&report, json));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("sagegate usage: {e}");
                ExitCode::FAILURE
            }
        },
        Command::TestInvoke(args) => match test_invoke(args) {
            Ok(out) => {
                println!("{out}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("sagegate test-invoke: {e}");
                ExitCode::from(2)
            }
        },
        Command::Import(args) => sagegate::import::run(&args),
        Command::Healthcheck { url } => match sagegate::healthcheck::probe(&url) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("unhealthy: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn keys(command: KeysCommand) -> ExitCode {
    use sagegate::cli::keys::{Command, run};
    let (keys, config, command) = match command {
        KeysCommand::New {
            id,
            plan,
            keys: None,
            ..
        } => {
            let key = auth::new_key(&id, &plan);
            println!(
                "API key for {id} (shown once; store it now):\n\n    {}\n\nEntry for the keys file:\n\n{}",
                key.value, key.entry_yaml
            );
            return ExitCode::SUCCESS;
        }
        KeysCommand::New {
            id,
            plan,
            name,
            keys: Some(keys),
            config,
        } => (keys, config, Command::New { id, plan, name }),
        KeysCommand::List { keys, json } => (keys, PathBuf::new(), Command::List { json }),
        KeysCommand::Disable(t) => (t.keys, t.config, Command::Disable { id: t.id }),
        KeysCommand::Enable(t) => (t.keys, t.config, Command::Enable { id: t.id }),
        KeysCommand::Rotate(t) => (t.keys, t.config, Command::Rotate { id: t.id }),
        KeysCommand::Remove(t) => (t.keys, t.config, Command::Remove { id: t.id }),
    };
    run(&keys, &config, command).into()
}

/// A positive number of seconds (fractions allowed).
fn seconds(arg: &str) -> Result<Duration, String> {
    match arg.trim().parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 && s <= 86_400.0 => Ok(Duration::from_secs_f64(s)),
        _ => Err(format!("`{arg}` is not a number of seconds in (0, 86400]")),
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Loads gateway.yaml and the keys ([`sagegate::app::load`]).
fn load(config: &Path, keys: &str) -> Result<Loaded, String> {
    sagegate::app::load(config, keys, &env)
}

fn check_config(config: PathBuf, keys: String) -> ExitCode {
    match load(&config, &keys) {
        Ok(Loaded {
            config: gateway,
            keys: set,
            ..
        }) => {
            for warning in &gateway.warnings {
                eprintln!("warning: {warning}");
            }
            println!(
                "{}: ok ({} stages, {} routes); {keys}: ok ({} keys)",
                config.display(),
                gateway.stages.len(),
                gateway.routes.len(),
                set.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            ExitCode::FAILURE
        }
    }
}

fn usage(
    config: &Path,
    keys: &str,
    admin: Option<&str>,
    key_id: Option<&str>,
    period: &str,
) -> Result<serde_json::Value, String> {
    if let Some(admin) = admin {
        let mut url = format!("{}/usage?period={period}", admin.trim_end_matches('/'));
        if let Some(id) = key_id {
            url.push_str("&key_id=");
            url.extend(percent_encoding::utf8_percent_encode(
                id,
                percent_encoding::NON_ALPHANUMERIC,
            ));
        }
        let (status, body) = sagegate::healthcheck::get(&url)?;
        if status != 200 {
            return Err(format!("{url} answered {status}: {body}"));
        }
        return serde_json::from_str(&body).map_err(|e| format!("{url}: not JSON: {e}"));
    }
    let Loaded {
        config: gateway,
        keys: set,
        ..
    } = load(config, keys).map_err(|e| format!("configuration is invalid:\n{e}"))?;
    let Some(settings) = gateway.limits.redis.clone() else {
        return Err(format!(
            "{}: limits.store is memory: the counts live in the running gateway; ask it with --admin http://127.0.0.1:9090",
            config.display()
        ));
    };
    let period = match period {
        "previous" => sagegate::limits::UsagePeriod::Previous,
        _ => sagegate::limits::UsagePeriod::Current,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let clock = LimitClock::system();
        let limiters = set
            .limiters(&Default::default(), &clock)
            .map_err(|e| e.to_string())?;
        let store =
            sagegate::limits::RedisStore::new(settings, sagegate::limits::MemoryStore::new(clock))
                .map_err(|e| format!("limits.redis: {e}"))?;
        let limiter = sagegate::limits::Limiter::Redis(store);
        sagegate::limits::usage_json(&limiter, &limiters, key_id, period).await
    })
}

/// The flags of `test-invoke`.
#[derive(clap::Args)]
struct TestInvokeArgs {
    /// Gateway configuration file.
    #[arg(long, env = "SAGEGATE_CONFIG", default_value = "config/gateway.yaml")]
    config: PathBuf,
    /// Stage name.
    #[arg(long)]
    stage: String,
    /// HTTP method.
    #[arg(long)]
    method: String,
    /// Resource path after the stage, e.g. /recommended-movies/U:114521.
    #[arg(long)]
    path: String,
    /// Query string, e.g. 'k=3&inference_type=deterministic'.
    #[arg(long, default_value = "")]
    query: String,
    /// A request header, 'Name: value' (repeatable).
    #[arg(long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// Request body: a file, or - for standard input.
    #[arg(long, value_name = "FILE|-")]
    body: Option<String>,
    /// SageMaker's HTTP status to answer with (200; 424 for a model error; 429; 5xx).
    #[arg(long, value_name = "N")]
    upstream_status: Option<u16>,
    /// SageMaker's answer body: a file, or - for standard input.
    #[arg(long, value_name = "FILE|-", requires = "upstream_status")]
    upstream_body: Option<String>,
    /// A header of SageMaker's answer, 'Name: value' (repeatable; a 424 without
    /// X-Amzn-ErrorType is a ModelError, as SageMaker sends it).
    #[arg(
        long = "upstream-header",
        value_name = "NAME: VALUE",
        requires = "upstream_status"
    )]
    upstream_headers: Vec<String>,
}

fn test_invoke(args: TestInvokeArgs) -> Result<String, String> {
    use sagegate::test_invoke::{TestAnswer, TestRequest};
    let name = args.config.display().to_string();
    let text =
        std::fs::read_to_string(&args.config).map_err(|e| format!("{name}: cannot read: {e}"))?;
    let gateway = GatewayConfig::parse(&name, &text, &env)
        .map_err(|d| format!("configuration is invalid:\n{d}"))?;
    let header_list = |list: &[String], flag: &str| -> Result<Vec<(String, String)>, String> {
        list.iter()
            .map(|h| {
                h.split_once(':')
                    .filter(|(n, _)| !n.trim().is_empty())
                    .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
                    .ok_or_else(|| format!("{flag} `{h}`: expected 'Name: value'"))
            })
            .collect()
    };
    if args.body.as_deref() == Some("-") && args.upstream_body.as_deref() == Some("-") {
        return Err("only one of --body and --upstream-body can read standard input".into());
    }
    let request = TestRequest {
        stage: args.stage,
        method: args.method,
        path: args.path,
        query: args.query,
        headers: header_list(&args.headers, "--header")?,
        body: read_input(args.body.as_deref(), "--body")?,
    };
    let answer = match args.upstream_status {
        None => None,
        Some(status) => {
            let mut headers = header_list(&args.upstream_headers, "--upstream-header")?;
            let has = |headers: &[(String, String)], name: &str| {
                headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name))
            };
            if !has(&headers, "content-type") {
                headers.push(("content-type".into(), "application/json".into()));
            }
            if status == 424 && !has(&headers, "x-amzn-errortype") {
                headers.push(("x-amzn-errortype".into(), "ModelError".into()));
            }
            Some(TestAnswer {
                status,
                body: read_input(args.upstream_body.as_deref(), "--upstream-body")?,
                headers,
            })
        }
    };
    let out = sagegate::test_invoke::run(&gateway, &request, answer).map_err(|e| e.to_string())?;
    serde_json::to_string_pretty(&out).map_err(|e| e.to_string())
}

/// The bytes of a `FILE|-` argument (empty when absent).
fn read_input(arg: Option<&str>, flag: &str) -> Result<bytes::Bytes, String> {
    match arg {
        None => Ok(bytes::Bytes::new()),
        Some("-") => {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
                .map_err(|e| format!("{flag} -: cannot read standard input: {e}"))?;
            Ok(buf.into())
        }
        Some(file) => std::fs::read(file)
            .map(Into::into)
            .map_err(|e| format!("{flag} {file}: cannot read: {e}")),
    }
}

fn serve(
    config: PathBuf,
    keys: String,
    listen: Option<String>,
    admin_listen: Option<String>,
    keys_poll_interval: Duration,
) -> anyhow::Result<()> {
    let mut loaded =
        load(&config, &keys).map_err(|e| anyhow::anyhow!("configuration is invalid:\n{e}"))?;
    loaded.keys_context.reload.s3_poll_interval = keys_poll_interval;
    for warning in &loaded.config.warnings {
        tracing::warn!(%warning, "configuration warning");
    }
    let address = listen.unwrap_or_else(|| loaded.config.server.listen.clone());
    let listener =
        TcpListener::bind(&address).with_context(|| format!("cannot listen on {address}"))?;
    let admin_address = match admin_listen {
        Some(a) if a.is_empty() => None,
        Some(a) => Some(a),
        None => loaded.config.server.admin_listen.clone(),
    };
    let admin_listener = admin_address
        .map(|a| {
            TcpListener::bind(&a).with_context(|| format!("cannot listen on {a} (admin listener)"))
        })
        .transpose()?;
    sagegate::app::serve(
        listener,
        admin_listener,
        loaded,
        sagegate::shutdown_signal(),
    )
}
