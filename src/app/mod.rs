//! Builds and runs the gateway from a configuration: everything `sagegate serve` does between
//! parsing its arguments and exiting. `main` parses arguments, binds the listeners and calls
//! [`serve`]; tests build the same [`Gateway`] with [`gateway`] around an in-process
//! [`crate::upstream::Invoke`] and drive it directly.
//!
//! Input: the files ([`load`]: gateway.yaml and the keys source, every error of both reported at
//! once), the bound listeners and a shutdown future. Output: a gateway that serves until the
//! future resolves, then drains (`/healthz` 503, in-flight requests finish within the grace),
//! stops the admin listener and flushes the traces.
//!
//! Start-up order: SageMaker client (credentials and region from the AWS chain), keys, limit
//! store ([`connect_limiter`]), the gateway's shared state, OTLP export (before the listener
//! opens), the keys reloader, the gateway.yaml reloader ([`reload`]), housekeeping, the admin
//! listener, then the main listener.

use std::future::Future;
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};

use crate::auth::{self, KeySet, KeySource, KeysContext};
use crate::config::GatewayConfig;
use crate::limits::{LimitClock, Limiter, MemoryStore, RedisStore};
use crate::pipeline::Gateway;
use crate::upstream::{self, SageMaker};
use crate::{otel, server};

pub mod reload;
#[cfg(test)]
mod tests;

/// gateway.yaml and the keys, loaded and checked.
#[derive(Debug)]
pub struct Loaded {
    /// The compiled gateway.yaml.
    pub config: GatewayConfig,
    /// Where gateway.yaml was read: a path or `s3://bucket/key` (reloaded from there, [`reload`]).
    pub config_source: KeySource,
    /// The S3 object's ETag at start (polls are conditional on it).
    pub config_etag: Option<String>,
    /// SHA-256 of the text `config` was compiled from.
    pub config_digest: [u8; 32],
    /// Where the keys come from (reloaded from there).
    pub source: KeySource,
    /// What a keys file is checked against (gateway.yaml's stages and routes), and reload settings.
    pub keys_context: KeysContext,
    /// The keys as loaded at start.
    pub keys: KeySet,
}

/// Loads gateway.yaml from `config` and the keys from `keys` (each a path or `s3://bucket/key`);
/// returns every diagnostic of both on failure. `env` reads the environment for `${env:…}`.
pub fn load(
    config: &Path,
    keys: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded, String> {
    let name = config.display().to_string();
    let config_source = reload::source(&name)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let (text, config_etag) = runtime.block_on(reload::read_initial(&config_source))?;
    let gateway = GatewayConfig::parse(&name, &text, env);
    let config_digest = Sha256::digest(text.as_bytes()).into();
    let source = KeySource::parse(keys).map_err(|e| format!("{keys}: {e}"))?;
    // Check the keys even when gateway.yaml has errors, against the names it declares, so one run
    // reports the problems of both files.
    let names = match &gateway {
        Ok(g) => Some((g.stage_names(), g.route_keys())),
        Err(_) => GatewayConfig::declared_names(&name, &text, env),
    };
    let Some((stages, routes)) = names else {
        let errors = gateway.err().map(|d| d.to_string()).unwrap_or_default();
        return Err(format!(
            "{errors}\n{keys}: not checked: {name} does not parse"
        ));
    };
    let keys_context = KeysContext::new(stages, routes);
    let set = runtime.block_on(auth::load_initial(&source, &keys_context));
    match (gateway, set) {
        (Ok(config), Ok(keys)) => Ok(Loaded {
            config,
            config_source,
            config_etag,
            config_digest,
            source,
            keys_context,
            keys,
        }),
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

/// The limit store `config` asks for on `clock`: in-process, or Redis (connected and probed once,
/// bounded by its connect timeout; a store that is down at start does not stop the gateway, its
/// failure policy applies until the background probe reaches it).
pub async fn connect_limiter(config: &GatewayConfig, clock: LimitClock) -> anyhow::Result<Limiter> {
    let local = MemoryStore::new(clock.clone());
    match &config.limits.redis {
        None => Ok(Limiter::memory(clock)),
        Some(settings) => {
            let store = RedisStore::connect(settings.clone(), local)
                .await
                .map_err(|e| anyhow::anyhow!("limits.redis: {e}"))?;
            Ok(Limiter::Redis(store))
        }
    }
}

/// The gateway's shared state for `config` and `keys`, calling SageMaker through `upstream`, with
/// every limiter, cache and breaker on `clock` (what `serve` runs; tests pass a manual clock and an
/// in-process upstream).
pub async fn gateway(
    config: Arc<GatewayConfig>,
    keys: Arc<KeySet>,
    upstream: SageMaker,
    clock: LimitClock,
) -> anyhow::Result<Gateway> {
    let limiter = connect_limiter(&config, clock).await?;
    Gateway::new(config, keys, upstream, limiter)
}

/// Periodic upkeep of limiter state (forgetting quiet addresses of the failed-key limiter).
pub fn spawn_housekeeping(gateway: Arc<Gateway>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            gateway.failed_attempts.housekeeping();
        }
    });
}

/// Runs the gateway of `loaded` on `listener` (and the admin endpoints on `admin`) until
/// `shutdown` resolves, then drains; blocks on its own runtime (`server.workers` threads).
pub fn serve(
    listener: TcpListener,
    admin: Option<TcpListener>,
    loaded: Loaded,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let workers = loaded.config.server.workers;
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
    system.block_on(run(listener, admin, loaded, shutdown))
}

/// [`serve`] on the current actix runtime.
pub async fn run(
    listener: TcpListener,
    admin_listener: Option<TcpListener>,
    loaded: Loaded,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let Loaded {
        config: gateway_config,
        config_source,
        config_etag,
        config_digest,
        source,
        keys_context,
        keys: set,
    } = loaded;
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
    let mut gateway = gateway(config, store.current(), upstream, LimitClock::system()).await?;
    // OTLP traces (off unless `telemetry.otlp.enabled`): started before the listener opens.
    let exporting = match &otlp {
        Some(otlp) => {
            let (tracer, exporting) = otel::start(otlp, &gateway.metrics)?;
            tracing::info!(endpoint = %otlp.traces_url, service = %otlp.service_name, ratio = otlp.sampling.ratio, trust_caller_sampling = otlp.sampling.trust_caller, "OTLP trace export on");
            gateway = gateway.with_tracer(tracer);
            Some(exporting)
        }
        None => None,
    };
    let gateway = Arc::new(gateway);
    let on_reload = {
        let gateway = gateway.clone();
        move |set: &Arc<KeySet>| gateway.install_keys(set.clone())
    };
    let keys_context = Arc::new(ArcSwap::from_pointee(keys_context));
    auth::spawn_reloader_shared(store.clone(), source, keys_context.clone(), on_reload);
    let reloader = reload::ConfigReloader::new(
        config_source,
        (config_digest, config_etag),
        gateway.clone(),
        store.clone(),
        keys_context,
    )
    .await?;
    reload::spawn(Arc::new(reloader));
    spawn_housekeeping(gateway.clone());
    let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let admin = match admin_listener {
        Some(l) => {
            tracing::info!(listen = %l.local_addr()?, "sagegate admin listening");
            let stop = async move {
                let _ = admin_stopped.await;
            };
            Some(server::run_admin(l, gateway.clone(), Some(store), stop)?)
        }
        None => None,
    };
    let admin = admin.map(actix_web::rt::spawn);
    tracing::info!(listen = %listener.local_addr()?, "sagegate listening");
    server::run(listener, gateway, shutdown)?.await?;
    let _ = stop_admin.send(());
    if let Some(admin) = admin {
        let _ = admin.await;
    }
    // After the drain: every request has finished, so every span is queued.
    if let Some(exporting) = exporting {
        exporting.shutdown(otel::FLUSH_BOUND).await;
    }
    tracing::info!("sagegate stopped");
    Ok(())
}
