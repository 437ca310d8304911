//! gateway.yaml reloaded without a restart, from where `--config` names it, as the keys are from
//! `--keys` ([`crate::auth::spawn_reloader`]): a file on SIGHUP and when it changes (its
//! directory watched, events debounced); an S3 object (`s3://bucket/key`, for Fargate, where the
//! image's file cannot change) on SIGHUP and polled with `If-None-Match: <etag>` every
//! `--keys-poll-interval`.
//!
//! Input: the path the gateway started from, the running [`Gateway`], the key store and the
//! names the keys reloader checks keys files against. Output: a background task, and for each
//! reload one [`ConfigOutcome`], counted in `sagegate_config_reloads_total{result}` with the
//! generation in force in `sagegate_config_generation`, and one log line (info when swapped,
//! warn when not, each diagnostic at error).
//!
//! A new file replaces the configuration only after every check passed, in this order:
//! 1. it is read and differs from the text in force (same bytes: nothing to do, not counted);
//! 2. it loads: YAML, `${env:…}`, every validation `check-config` runs (`failed`: the
//!    diagnostics are logged, values read from the environment never quoted);
//! 3. no restart-only field changed ([`restart_only_changes`]: `refused`, naming each field);
//! 4. the keys in force still fit: every stage and route throttle a usage plan names is still
//!    declared (`refused`, naming the plan; edit the keys first, then the file; an S3 object so
//!    refused is read again at the next poll, so it applies once the keys fit);
//! 5. the per-request state is built ([`Gateway::install_config`]) and swapped in at once.
//!
//! Then the keys reloader checks new keys files against the new names. In-flight requests finish
//! on the configuration they started with. What survives a swap (throttle buckets, cache
//! entries, breaker state) is [`crate::pipeline::Live`]'s rule.

use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::auth::{DirWatch, Hangup, KeySet, KeySource, KeyStore, KeysContext};
use crate::config::GatewayConfig;
use crate::config::restart::restart_only_changes;
use crate::pipeline::{Gateway, Live};
use crate::upstream::s3::{GetObject, S3};

/// `--config`: a path, or `s3://bucket/key` (the same forms as `--keys`).
pub fn source(arg: &str) -> Result<KeySource, String> {
    KeySource::parse(arg).map_err(|e| format!("--config {}", e.replace("keys source", "source")))
}

/// The largest gateway.yaml read (file or S3 object): far above any real one, and a path that
/// names `/dev/zero`, a FIFO or a runaway generated file fails the reload instead of growing the
/// gateway's memory until it is killed.
pub const MAX_CONFIG_BYTES: u64 = 16 * 1024 * 1024;

/// The text of `source` at start, with the S3 object's ETag.
pub async fn read_initial(source: &KeySource) -> Result<(String, Option<String>), String> {
    match source {
        KeySource::Path(path) => read_file(path)
            .await
            .map(|text| (text, None))
            .map_err(|e| format!("{source}: cannot read: {e}")),
        KeySource::S3 { .. } => {
            let client = s3_client(source).await?;
            match get(&client, source, None).await? {
                Some(found) => Ok(found),
                None => Err(format!(
                    "{source}: 304 Not Modified to an unconditional read"
                )),
            }
        }
    }
}

/// The file at `path` as UTF-8, at most [`MAX_CONFIG_BYTES`].
async fn read_file(path: &std::path::Path) -> Result<String, String> {
    use tokio::io::AsyncReadExt;
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| e.to_string())?;
    text_of(bytes)
}

/// `bytes` as UTF-8 text of at most [`MAX_CONFIG_BYTES`].
fn text_of(bytes: Vec<u8>) -> Result<String, String> {
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(format!("larger than {MAX_CONFIG_BYTES} bytes"));
    }
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        format!("not UTF-8 (bad byte at offset {at})")
    })
}

async fn s3_client(source: &KeySource) -> Result<S3, String> {
    S3::from_env()
        .await
        .map_err(|e| format!("{source}: cannot set up the S3 client: {e:#}"))
}

/// A (conditional) `GetObject` of an `s3://` source: `None` when it still has `etag`.
async fn get(
    client: &S3,
    source: &KeySource,
    etag: Option<&str>,
) -> Result<Option<(String, Option<String>)>, String> {
    let KeySource::S3 { bucket, key } = source else {
        return Err(format!("{source}: not an S3 object"));
    };
    match client.get_object(bucket, key, etag).await {
        Ok(GetObject::NotModified) => Ok(None),
        Ok(GetObject::Found { body, etag }) => text_of(body.to_vec())
            .map(|text| Some((text, etag)))
            .map_err(|e| format!("{source}: {e}")),
        Err(e) => Err(format!(
            "{source}: cannot get the configuration object: {e}"
        )),
    }
}

/// What one reload did.
#[derive(Debug)]
pub enum ConfigOutcome {
    /// The new configuration is in force.
    Reloaded(Arc<Live>),
    /// The file holds the text in force; nothing was done.
    Unchanged,
    /// The file is unreadable or invalid (every diagnostic); the old configuration stays.
    Failed(Vec<String>),
    /// The file is valid but cannot apply without a restart, or would orphan keys; the old
    /// configuration stays.
    Refused(String),
}

impl ConfigOutcome {
    /// The `result` label of `sagegate_config_reloads_total`; `None` when not counted.
    fn result(&self) -> Option<&'static str> {
        match self {
            ConfigOutcome::Reloaded(_) => Some("ok"),
            ConfigOutcome::Unchanged => None,
            ConfigOutcome::Failed(_) => Some("failed"),
            ConfigOutcome::Refused(_) => Some("refused"),
        }
    }
}

/// Reloads gateway.yaml into a running gateway.
pub struct ConfigReloader {
    source: KeySource,
    /// The S3 client of an `s3://` source.
    s3: Option<S3>,
    /// The last ETag seen (of a good or bad object), so an unchanged bad object is not fetched
    /// and reported again on every poll; forgotten when an object is refused for the keys.
    etag: Mutex<Option<String>>,
    gateway: Arc<Gateway>,
    keys: Arc<KeyStore>,
    keys_context: Arc<ArcSwap<KeysContext>>,
    /// SHA-256 of the text in force.
    digest: Mutex<[u8; 32]>,
}

impl ConfigReloader {
    /// A reloader of `source`, whose text in force has the SHA-256 `digest` (and, from S3, the
    /// ETag `etag`); `keys_context` is the keys reloader's (see
    /// [`crate::auth::spawn_reloader_shared`]). Fails only when the S3 client cannot be set up.
    pub async fn new(
        source: KeySource,
        (digest, etag): ([u8; 32], Option<String>),
        gateway: Arc<Gateway>,
        keys: Arc<KeyStore>,
        keys_context: Arc<ArcSwap<KeysContext>>,
    ) -> anyhow::Result<Self> {
        let s3 = match &source {
            KeySource::Path(_) => None,
            KeySource::S3 { .. } => Some(s3_client(&source).await.map_err(anyhow::Error::msg)?),
        };
        let live = gateway.live();
        let sha256 = hex::encode(digest);
        // The reload line's fields for the file loaded at start, so logs and metrics name the
        // configuration a task runs even when it never reloads (a task started after an upload).
        tracing::info!(
            file = %source,
            generation = live.generation,
            sha256 = %sha256,
            stages = live.config.stages.len(),
            routes = live.config.routes.len(),
            "configuration loaded"
        );
        gateway.metrics.config_in_force(&sha256);
        Ok(ConfigReloader {
            source,
            s3,
            etag: Mutex::new(etag),
            gateway,
            keys,
            keys_context,
            digest: Mutex::new(digest),
        })
    }

    /// The current text; `None` when an S3 object is unchanged (304).
    async fn fetch(&self) -> Result<Option<String>, String> {
        let source = &self.source;
        match (source, &self.s3) {
            (KeySource::S3 { .. }, Some(client)) => {
                let etag = self
                    .etag
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                let Some((text, etag)) = get(client, source, etag.as_deref()).await? else {
                    return Ok(None);
                };
                *self.etag.lock().unwrap_or_else(PoisonError::into_inner) = etag;
                Ok(Some(text))
            }
            _ => read_initial(source).await.map(|(text, _)| Some(text)),
        }
    }

    /// Reloads once, now; counts and logs the outcome.
    pub async fn reload(&self) -> ConfigOutcome {
        let outcome = self.attempt().await;
        self.record(&outcome);
        outcome
    }

    async fn attempt(&self) -> ConfigOutcome {
        let name = self.source.name();
        let text = match self.fetch().await {
            Ok(Some(text)) => text,
            Ok(None) => return ConfigOutcome::Unchanged,
            Err(e) => return ConfigOutcome::Failed(vec![e]),
        };
        let digest: [u8; 32] = Sha256::digest(text.as_bytes()).into();
        if digest == *self.digest.lock().unwrap_or_else(PoisonError::into_inner) {
            return ConfigOutcome::Unchanged;
        }
        // Compiling templates and models is CPU work: off the threads that serve requests.
        let parsed = tokio::task::spawn_blocking(move || {
            GatewayConfig::parse(&name, &text, &|v| std::env::var(v).ok())
        })
        .await;
        let config = match parsed {
            Ok(Ok(config)) => config,
            Ok(Err(diags)) => {
                return ConfigOutcome::Failed(diags.0.iter().map(ToString::to_string).collect());
            }
            Err(e) => return ConfigOutcome::Failed(vec![format!("internal error: {e}")]),
        };
        let current = self.gateway.live();
        let fields = restart_only_changes(&current.config, &config);
        if !fields.is_empty() {
            return ConfigOutcome::Refused(format!(
                "{} cannot change without a restart",
                fields.join(", ")
            ));
        }
        let mut names = KeysContext::new(config.stage_names(), config.route_keys());
        names.reload = self.keys_context.load().reload.clone();
        // No keys reload between this check and the swap of the names it is checked against.
        let _names = self.keys.names_lock.lock().await;
        if let Err(why) = keys_fit(&self.keys.current(), &names) {
            // Refused for the keys in force, not for the object: the next poll reads it again, so
            // it applies once the keys are fixed (on Fargate a poll is the only trigger).
            *self.etag.lock().unwrap_or_else(PoisonError::into_inner) = None;
            return ConfigOutcome::Refused(why);
        }
        for warning in &config.warnings {
            tracing::warn!(%warning, "configuration warning");
        }
        // The new (stage, route) series exist before the first request can record into them.
        self.gateway.metrics.add_routes(&config);
        match self.gateway.install_config(Arc::new(config)) {
            Ok(live) => {
                self.keys_context.store(Arc::new(names));
                *self.digest.lock().unwrap_or_else(PoisonError::into_inner) = digest;
                ConfigOutcome::Reloaded(live)
            }
            Err(e) => ConfigOutcome::Failed(vec![format!("limiter settings: {e}")]),
        }
    }

    fn record(&self, outcome: &ConfigOutcome) {
        let file = &self.source;
        if let Some(result) = outcome.result() {
            let generation = self.gateway.live.load().generation;
            self.gateway.metrics.config_reloaded(result, generation);
        }
        match outcome {
            ConfigOutcome::Reloaded(live) => {
                let digest = *self.digest.lock().unwrap_or_else(PoisonError::into_inner);
                self.gateway.metrics.config_in_force(&hex::encode(digest));
                tracing::info!(
                    %file,
                    generation = live.generation,
                    sha256 = %hex::encode(digest),
                    stages = live.config.stages.len(),
                    routes = live.config.routes.len(),
                    "configuration reloaded"
                );
            }
            ConfigOutcome::Unchanged => tracing::debug!(%file, "configuration unchanged"),
            ConfigOutcome::Failed(diags) => {
                for d in diags {
                    tracing::error!(%file, "configuration reload failed: {d}");
                }
                tracing::warn!(
                    %file,
                    errors = diags.len(),
                    "configuration reload failed; the previous configuration stays in force"
                );
            }
            ConfigOutcome::Refused(why) => tracing::warn!(
                %file,
                "configuration reload refused: {why}; the previous configuration stays in force"
            ),
        }
    }
}

/// Whether every usage plan of `keys` covers only stages, and throttles only routes, that `names`
/// declares: a reload must not leave a key whose plan names a stage that no longer exists.
fn keys_fit(keys: &KeySet, names: &KeysContext) -> Result<(), String> {
    for plan in keys.plans() {
        if let Some(stage) = plan.stages.iter().find(|s| !names.stages.contains(*s)) {
            return Err(format!(
                "usage plan `{}` of the keys covers stage `{stage}`, which the file no longer \
                 declares (remove it from the plan first)",
                plan.id
            ));
        }
        if let Some(route) = plan
            .route_throttles
            .keys()
            .find(|r| !names.routes.contains(&r.to_string()))
        {
            return Err(format!(
                "usage plan `{}` of the keys throttles route `{route}`, which the file no longer \
                 declares (remove it from the plan first)",
                plan.id
            ));
        }
    }
    Ok(())
}

/// Starts reloading on SIGHUP and, for a file, on its change when `watch` is on (events
/// debounced by the keys' `debounce`), for an S3 object every `s3_poll_interval` (the keys' reload
/// options). The SIGHUP handler and the watch are in place when this returns; the task first
/// catches up with a change made since the configuration was loaded.
pub fn spawn(reloader: Arc<ConfigReloader>) -> JoinHandle<()> {
    let options = reloader.keys_context.load().reload.clone();
    let mut hangup = Hangup::install("configuration");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut watch = match &reloader.source {
        KeySource::Path(path) if options.watch => DirWatch::start("configuration", path, tx),
        _ => None,
    };
    let every = options.s3_poll_interval;
    let mut poll = matches!(reloader.source, KeySource::S3 { .. }).then(|| {
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker
    });
    tokio::spawn(async move {
        reloader.reload().await;
        loop {
            tokio::select! {
                Some(()) = rx.recv() => {
                    while let Ok(Some(())) =
                        tokio::time::timeout(options.debounce, rx.recv()).await
                    {}
                }
                () = tick(&mut poll) => {}
                () = hangup.recv() => {
                    tracing::info!(file = %reloader.source, "SIGHUP: reloading the configuration");
                }
            }
            reloader.reload().await;
            if let Some(w) = watch.as_mut() {
                w.follow_target();
            }
        }
    })
}

/// The next tick of an S3 source's poll; never, for a file.
async fn tick(poll: &mut Option<tokio::time::Interval>) {
    match poll {
        Some(ticker) => {
            ticker.tick().await;
        }
        None => std::future::pending().await,
    }
}
