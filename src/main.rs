//! `sagegate`: parse arguments, load configuration, bind, run. Everything else lives in the library.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sagegate::auth::{self, KeySource, KeysContext};
use sagegate::config::GatewayConfig;
use sagegate::limits::LimitClock;
use sagegate::pipeline::Gateway;
use sagegate::upstream;

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
        /// Gateway configuration file.
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
        /// Gateway configuration file.
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
    /// Quota usage per key id and plan (API Gateway's GetUsage), as JSON: from the shared Redis
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
    },
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
    /// Print a fresh random key once, and the hashed entry to paste into the keys file.
    New {
        /// Key id.
        #[arg(long)]
        id: String,
        /// Usage plan id.
        #[arg(long)]
        plan: String,
    },
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
        Command::Keys {
            command: KeysCommand::New { id, plan },
        } => {
            let key = auth::new_key(&id, &plan);
            println!(
                "API key for {id} (shown once; store it now):\n\n    {}\n\nEntry for the keys file:\n\n{}",
                key.value, key.entry_yaml
            );
            ExitCode::SUCCESS
        }
        Command::Usage {
            config,
            keys,
            admin,
            key_id,
            period,
        } => match usage(&config, &keys, admin.as_deref(), key_id.as_deref(), &period) {
            Ok(report) => {
                println!("{report}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("sagegate usage: {e}");
                ExitCode::FAILURE
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

/// Loads gateway.yaml and the keys; returns every diagnostic of both on failure.
fn load(
    config: &PathBuf,
    keys: &str,
) -> Result<(GatewayConfig, KeySource, KeysContext, auth::KeySet), String> {
    let name = config.display().to_string();
    let text = std::fs::read_to_string(config).map_err(|e| format!("{name}: cannot read: {e}"))?;
    let gateway = GatewayConfig::parse(&name, &text, &env);
    let source = KeySource::parse(keys).map_err(|e| format!("{keys}: {e}"))?;
    // Check the keys even when gateway.yaml has errors, against the names it declares, so one run
    // reports the problems of both files.
    let names = match &gateway {
        Ok(g) => Some((g.stage_names(), g.route_keys())),
        Err(_) => GatewayConfig::declared_names(&name, &text, &env),
    };
    let Some((stages, routes)) = names else {
        let errors = gateway.err().map(|d| d.to_string()).unwrap_or_default();
        return Err(format!(
            "{errors}\n{keys}: not checked: {name} does not parse"
        ));
    };
    let ctx = KeysContext::new(stages, routes);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let set = runtime.block_on(auth::load_initial(&source, &ctx));
    match (gateway, set) {
        (Ok(gateway), Ok(set)) => Ok((gateway, source, ctx, set)),
        (gateway, set) => {
            let errors: Vec<String> = [
                gateway.err().map(|d| d.to_string()),
                set.err().map(|d| d.to_string()),
            ]
            .into_iter()
            .flatten()
            .collect();
            Err(errors.join("\n"))
        }
    }
}

fn check_config(config: PathBuf, keys: String) -> ExitCode {
    match load(&config, &keys) {
        Ok((gateway, _, _, set)) => {
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
    config: &PathBuf,
    keys: &str,
    admin: Option<&str>,
    key_id: Option<&str>,
    period: &str,
) -> Result<String, String> {
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
        // The same layout as the direct read-out.
        return serde_json::from_str::<serde_json::Value>(&body)
            .and_then(|v| serde_json::to_string_pretty(&v))
            .map_err(|e| format!("{url}: not JSON: {e}"));
    }
    let (gateway, _, _, set) =
        load(config, keys).map_err(|e| format!("configuration is invalid:\n{e}"))?;
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
        let limiters = sagegate::pipeline::key_limiters(&set, &clock).map_err(|e| e.to_string())?;
        let store =
            sagegate::limits::RedisStore::new(settings, sagegate::limits::MemoryStore::new(clock))
                .map_err(|e| format!("limits.redis: {e}"))?;
        let limiter = sagegate::limits::Limiter::Redis(store);
        let report = sagegate::pipeline::usage_json(&limiter, &limiters, key_id, period).await?;
        serde_json::to_string_pretty(&report).map_err(|e| e.to_string())
    })
}

fn serve(
    config: PathBuf,
    keys: String,
    listen: Option<String>,
    admin_listen: Option<String>,
    keys_poll_interval: Duration,
) -> anyhow::Result<()> {
    let (gateway_config, source, mut ctx, set) =
        load(&config, &keys).map_err(|e| anyhow::anyhow!("configuration is invalid:\n{e}"))?;
    ctx.reload.s3_poll_interval = keys_poll_interval;
    for warning in &gateway_config.warnings {
        tracing::warn!(%warning, "configuration warning");
    }
    let address = listen.unwrap_or_else(|| gateway_config.server.listen.clone());
    let listener =
        TcpListener::bind(&address).with_context(|| format!("cannot listen on {address}"))?;
    let admin_address = match admin_listen {
        Some(a) if a.is_empty() => None,
        Some(a) => Some(a),
        None => gateway_config.server.admin_listen.clone(),
    };
    let admin_listener = admin_address
        .map(|a| {
            TcpListener::bind(&a).with_context(|| format!("cannot listen on {a} (admin listener)"))
        })
        .transpose()?;
    let workers = gateway_config.server.workers;
    let system = actix_web::rt::System::with_tokio_rt(move || {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.enable_all();
        if let Some(n) = workers {
            builder.worker_threads(n);
        }
        builder.build().unwrap_or_else(|e| {
            eprintln!("sagegate: cannot start the runtime: {e}");
            std::process::exit(1)
        })
    });
    system.block_on(async move {
        let sagemaker = &gateway_config.sagemaker;
        match upstream::client::endpoint_override(sagemaker) {
            Some((url, from)) => {
                tracing::info!(endpoint = %url, from, "SageMaker Runtime endpoint override")
            }
            None => tracing::info!("SageMaker Runtime endpoint from the region"),
        }
        let upstream = upstream::client::build(sagemaker).await?;
        let config = Arc::new(gateway_config);
        let store = Arc::new(auth::KeyStore::new(set));
        let otlp = config.telemetry.otlp.clone();
        let limiter = sagegate::pipeline::connect_limiter(&config, LimitClock::system()).await?;
        let mut gateway = Gateway::new(config, store.current(), upstream, limiter)?;
        // OTLP traces (off unless `telemetry.otlp.enabled`): started before the listener opens.
        let exporting = match &otlp {
            Some(otlp) => {
                let (tracer, exporting) = sagegate::otel::start(otlp, &gateway.metrics)?;
                tracing::info!(endpoint = %otlp.traces_url, service = %otlp.service_name, ratio = otlp.sampling.ratio, trust_caller_sampling = otlp.sampling.trust_caller, "OTLP trace export on");
                gateway = gateway.with_tracer(tracer);
                Some(exporting)
            }
            None => None,
        };
        let gateway = Arc::new(gateway);
        let on_reload = {
            let gateway = gateway.clone();
            move |set: &Arc<auth::KeySet>| gateway.install_keys(set.clone())
        };
        auth::spawn_reloader(store.clone(), source, ctx, on_reload);
        sagegate::pipeline::spawn_housekeeping(gateway.clone());
        let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel::<()>();
        let admin = match admin_listener {
            Some(l) => {
                tracing::info!(listen = %l.local_addr()?, "sagegate admin listening");
                let stop = async move {
                    let _ = admin_stopped.await;
                };
                Some(sagegate::server::run_admin(
                    l,
                    gateway.clone(),
                    Some(store),
                    stop,
                )?)
            }
            None => None,
        };
        let admin = admin.map(actix_web::rt::spawn);
        tracing::info!(listen = %listener.local_addr()?, "sagegate listening");
        sagegate::server::run(listener, gateway, sagegate::shutdown_signal())?.await?;
        let _ = stop_admin.send(());
        if let Some(admin) = admin {
            let _ = admin.await;
        }
        // After the drain: every request has finished, so every span is queued.
        if let Some(exporting) = exporting {
            exporting.shutdown(sagegate::otel::FLUSH_BOUND).await;
        }
        tracing::info!("sagegate stopped");
        Ok(())
    })
}
