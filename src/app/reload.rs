//! gateway.yaml reloaded without a restart, on SIGHUP and when the file changes (the keys file's
//! watch: its directory, debounced; see [`crate::auth::spawn_reloader`]).
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
//!    declared (`refused`, naming the plan; edit the keys first, then the file);
//! 5. the per-request state is built ([`Gateway::install_config`]) and swapped in at once.
//!
//! Then the keys reloader checks new keys files against the new names. In-flight requests finish
//! on the configuration they started with. What survives a swap (throttle buckets, cache
//! entries, breaker state) is [`crate::pipeline::Live`]'s rule.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::auth::{DirWatch, Hangup, KeySet, KeyStore, KeysContext};
use crate::config::GatewayConfig;
use crate::config::restart::restart_only_changes;
use crate::pipeline::{Gateway, Live};

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
    path: PathBuf,
    gateway: Arc<Gateway>,
    keys: Arc<KeyStore>,
    keys_context: Arc<ArcSwap<KeysContext>>,
    /// SHA-256 of the text in force.
    digest: Mutex<[u8; 32]>,
}

impl ConfigReloader {
    /// A reloader of `path`, whose text in force has the SHA-256 `digest`; `keys_context` is
    /// the keys reloader's (see [`crate::auth::spawn_reloader_shared`]).
    pub fn new(
        path: PathBuf,
        digest: [u8; 32],
        gateway: Arc<Gateway>,
        keys: Arc<KeyStore>,
        keys_context: Arc<ArcSwap<KeysContext>>,
    ) -> Self {
        ConfigReloader {
            path,
            gateway,
            keys,
            keys_context,
            digest: Mutex::new(digest),
        }
    }

    /// Reloads once, now; counts and logs the outcome.
    pub async fn reload(&self) -> ConfigOutcome {
        let outcome = self.attempt().await;
        self.record(&outcome);
        outcome
    }

    async fn attempt(&self) -> ConfigOutcome {
        let name = self.path.display().to_string();
        let text = match tokio::fs::read_to_string(&self.path).await {
            Ok(text) => text,
            Err(e) => return ConfigOutcome::Failed(vec![format!("{name}: cannot read: {e}")]),
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
        if let Err(why) = keys_fit(&self.keys.current(), &names) {
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
        let file = self.path.display();
        if let Some(result) = outcome.result() {
            let generation = self.gateway.live.load().generation;
            self.gateway.metrics.config_reloaded(result, generation);
        }
        match outcome {
            ConfigOutcome::Reloaded(live) => {
                let digest = *self.digest.lock().unwrap_or_else(PoisonError::into_inner);
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

/// Starts reloading on SIGHUP and, when `watch` is on, on a change of the file (events
/// debounced by the keys' `debounce`). The SIGHUP handler and the watch are in place when this
/// returns; the task first catches up with a change made since the file was loaded.
pub fn spawn(reloader: Arc<ConfigReloader>) -> JoinHandle<()> {
    let options = reloader.keys_context.load().reload.clone();
    let mut hangup = Hangup::install("configuration");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut watch = options
        .watch
        .then(|| DirWatch::start("configuration", &reloader.path, tx))
        .flatten();
    tokio::spawn(async move {
        reloader.reload().await;
        loop {
            tokio::select! {
                Some(()) = rx.recv() => {
                    while let Ok(Some(())) =
                        tokio::time::timeout(options.debounce, rx.recv()).await
                    {}
                }
                () = hangup.recv() => {
                    tracing::info!(file = %reloader.path.display(), "SIGHUP: reloading the configuration");
                }
            }
            reloader.reload().await;
            if let Some(w) = watch.as_mut() {
                w.follow_target();
            }
        }
    })
}
