//! The key store and its reloader: the current [`KeySet`] behind an atomic pointer, replaced whole
//! when the keys source changes.
//!
//! Input: a [`KeySource`] and a [`KeysContext`]. Output: a [`KeyStore`] read lock-free by every
//! request, and a background task that keeps it current:
//! - a file is re-read on SIGHUP and, when [`ReloadOptions::watch`](super::ReloadOptions) is on,
//!   when its directory reports a change to it. The *directory* is watched, not the file, because
//!   editors and `mv` replace the file (a new inode) and Kubernetes swaps a `..data` symlink; each
//!   burst of events is debounced into one reload.
//! - an S3 object is polled with `If-None-Match: <etag>` every `s3_poll_interval` (and on SIGHUP).
//!
//! Invariants: a bad new file never replaces a good set; it is reported (every diagnostic, at
//! error level) and the old keys stay in force. Text identical to the current set's is not
//! reloaded (a `touch` or a spurious event is not a reload). Swaps are atomic: a request sees the
//! old set or the new one. Logs carry counts and ids, never key values or hashes.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::{ArcSwap, Guard};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::source::{Fetched, Fetcher};
use super::{AuthError, Caller, KeySet, KeySource, KeysContext, parse_keys};
use crate::config::diag::{Diagnostic, Diagnostics};

/// The current keys, swapped atomically on reload, and reload counters for metrics.
pub struct KeyStore {
    // ArcSwap: a request's read is a few atomic operations, never blocked by a reload.
    current: ArcSwap<KeySet>,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    /// Held while a keys file is checked against gateway.yaml's names and swapped in, and while a
    /// gateway.yaml reload checks the keys and swaps the names: neither sees the other half done.
    pub(crate) names_lock: tokio::sync::Mutex<()>,
}

impl KeyStore {
    /// A store holding `initial` (from [`load_initial`]).
    pub fn new(initial: KeySet) -> Self {
        KeyStore {
            current: ArcSwap::from_pointee(initial),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            names_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The current set, cheaply, for the duration of one request.
    pub fn load(&self) -> Guard<Arc<KeySet>> {
        self.current.load()
    }

    /// The current set as an owned `Arc` (to keep beyond a request).
    pub fn current(&self) -> Arc<KeySet> {
        self.current.load_full()
    }

    /// [`KeySet::authenticate`] against the current set.
    pub fn authenticate(&self, presented: Option<&[u8]>, stage: &str) -> Result<Caller, AuthError> {
        self.current.load().authenticate(presented, stage)
    }

    /// Reloads that replaced the keys.
    pub fn reloads_ok(&self) -> u64 {
        self.reloads_ok.load(Ordering::Relaxed)
    }

    /// Reloads that failed (bad file, unreadable source); the old keys stayed in force.
    pub fn reloads_failed(&self) -> u64 {
        self.reloads_failed.load(Ordering::Relaxed)
    }

    fn swap(&self, set: Arc<KeySet>) {
        self.current.store(set);
    }
}

impl fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyStore")
            .field("current", &self.current.load())
            .field("reloads_ok", &self.reloads_ok())
            .field("reloads_failed", &self.reloads_failed())
            .finish()
    }
}

/// What one reload did.
#[derive(Debug)]
pub enum ReloadOutcome {
    /// The new set is in force.
    Reloaded(Arc<KeySet>),
    /// The source is unchanged (304, or the same text); nothing was swapped.
    Unchanged,
    /// The source is unreadable or invalid; the old set stays in force.
    Failed(Diagnostics),
}

/// Loads the keys at start-up. Every problem is returned, so a bad file fails start with all of
/// them (and `check-config` can print them).
pub async fn load_initial(source: &KeySource, ctx: &KeysContext) -> Result<KeySet, Diagnostics> {
    let name = source.name();
    let fetcher = Fetcher::new(source)
        .await
        .map_err(|d| Diagnostics(vec![d]))?;
    match fetcher.fetch(&name, None).await {
        Ok(Fetched::Text { text, etag }) => {
            let mut set = parse_keys(&name, &text, ctx)?;
            set.origin.etag = etag;
            Ok(set)
        }
        // Unreachable without an ETag to match, but not worth a panic.
        Ok(Fetched::NotModified) => Err(Diagnostics(vec![Diagnostic {
            file: name,
            line: 0,
            col: 0,
            path: String::new(),
            message: "the keys source answered 304 Not Modified to an unconditional read"
                .to_owned(),
        }])),
        Err(d) => Err(Diagnostics(vec![d])),
    }
}

/// Reloads once, now, and logs the outcome as the background reloader does. The caller is
/// responsible for anything that must follow a swap (the reloader's `on_reload`).
pub async fn reload_now(store: &KeyStore, source: &KeySource, ctx: &KeysContext) -> ReloadOutcome {
    let name = source.name();
    let fetcher = match Fetcher::new(source).await {
        Ok(f) => f,
        Err(d) => {
            let outcome = ReloadOutcome::Failed(Diagnostics(vec![d]));
            record(store, &name, &outcome);
            return outcome;
        }
    };
    let mut etag = store.load().origin.etag.clone();
    reload(store, &fetcher, &name, ctx, &mut etag).await
}

/// One reload: fetch, compare, compile, swap; counts and logs the outcome. `etag` is the last
/// ETag seen (good or bad object), so an unchanged bad object is not fetched and reported again
/// on every poll.
async fn reload(
    store: &KeyStore,
    fetcher: &Fetcher,
    name: &str,
    ctx: &KeysContext,
    etag: &mut Option<String>,
) -> ReloadOutcome {
    let outcome = match fetcher.fetch(name, etag.as_deref()).await {
        Ok(Fetched::NotModified) => ReloadOutcome::Unchanged,
        Err(d) => ReloadOutcome::Failed(Diagnostics(vec![d])),
        Ok(Fetched::Text {
            text,
            etag: new_etag,
        }) => {
            etag.clone_from(&new_etag);
            // Parsing a large file takes seconds (~70 µs per key measured): keep it off the
            // runtime's worker threads, which serve requests.
            let current = store.load().origin.digest;
            let (file, ctx) = (name.to_owned(), ctx.clone());
            let parsed = tokio::task::spawn_blocking(move || {
                let digest: [u8; 32] = Sha256::digest(text.as_bytes()).into();
                (digest != current).then(|| parse_keys(&file, &text, &ctx))
            })
            .await;
            match parsed {
                Ok(None) => ReloadOutcome::Unchanged,
                Ok(Some(Ok(mut set))) => {
                    set.origin.etag = new_etag;
                    let set = Arc::new(set);
                    store.swap(Arc::clone(&set));
                    ReloadOutcome::Reloaded(set)
                }
                Ok(Some(Err(diags))) => ReloadOutcome::Failed(diags),
                Err(e) => ReloadOutcome::Failed(Diagnostics(vec![Diagnostic {
                    file: name.to_owned(),
                    line: 0,
                    col: 0,
                    path: String::new(),
                    message: format!("internal error while loading the keys: {e}"),
                }])),
            }
        }
    };
    record(store, name, &outcome);
    outcome
}

/// Counts and logs an outcome.
fn record(store: &KeyStore, name: &str, outcome: &ReloadOutcome) {
    match outcome {
        ReloadOutcome::Reloaded(set) => {
            store.reloads_ok.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                file = %name,
                keys = set.len(),
                enabled = set.enabled_count(),
                plans = set.plans().len(),
                "keys reloaded"
            );
        }
        ReloadOutcome::Unchanged => tracing::debug!(file = %name, "keys unchanged"),
        ReloadOutcome::Failed(diags) => {
            store.reloads_failed.fetch_add(1, Ordering::Relaxed);
            for d in &diags.0 {
                tracing::error!(file = %name, "keys reload failed: {d}");
            }
            tracing::error!(
                file = %name,
                errors = diags.0.len(),
                "keys reload failed; the previous keys stay in force"
            );
        }
    }
}

/// Starts the background reloader for `source`; `on_reload` runs after each successful swap
/// (e.g. to reconcile limiter state) and must not panic. Must be called within a Tokio runtime;
/// the SIGHUP handler is installed before this returns, so a SIGHUP sent afterwards reloads
/// instead of terminating the process.
pub fn spawn_reloader(
    store: Arc<KeyStore>,
    source: KeySource,
    ctx: KeysContext,
    on_reload: impl Fn(&Arc<KeySet>) + Send + Sync + 'static,
) -> JoinHandle<()> {
    spawn_reloader_shared(
        store,
        source,
        Arc::new(ArcSwap::from_pointee(ctx)),
        on_reload,
    )
}

/// [`spawn_reloader`] checking each new keys file against the stage and route names `ctx` holds
/// at that moment (a gateway.yaml reload replaces them; its reload options are read once, here).
pub fn spawn_reloader_shared(
    store: Arc<KeyStore>,
    source: KeySource,
    shared: Arc<ArcSwap<KeysContext>>,
    on_reload: impl Fn(&Arc<KeySet>) + Send + Sync + 'static,
) -> JoinHandle<()> {
    let options = shared.load().reload.clone();
    let mut hangup = Hangup::install("keys");
    // The watch, too, is in place before this returns, so no later change can be missed.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut watch = match &source {
        KeySource::Path(path) if options.watch => DirWatch::start("keys", path, tx),
        _ => None,
    };
    tokio::spawn(async move {
        let name = source.name();
        let fetcher = match Fetcher::new(&source).await {
            Ok(f) => f,
            Err(d) => {
                tracing::error!(file = %name, "keys reloader not started: {d}");
                return;
            }
        };
        let mut etag = store.load().origin.etag.clone();
        // The names a refused object was checked against: once a gateway.yaml reload changes
        // them (a stage the object's plans name now exists), the object is read again despite
        // its unchanged ETag, once; otherwise it would stay out until uploaded again.
        let mut failed_under: Option<Arc<KeysContext>> = None;
        let mut reload_and_notify = async |etag: &mut Option<String>| {
            let _names = store.names_lock.lock().await;
            let ctx = shared.load_full();
            if failed_under.as_ref().is_some_and(|f| !Arc::ptr_eq(f, &ctx)) {
                *etag = None;
            }
            match reload(&store, &fetcher, &name, &ctx, etag).await {
                ReloadOutcome::Reloaded(set) => {
                    failed_under = None;
                    on_reload(&set);
                }
                ReloadOutcome::Failed(_) => failed_under = Some(ctx),
                ReloadOutcome::Unchanged => {}
            }
        };
        match &source {
            KeySource::Path(_) => {
                // Catch up with a change made between the initial load and the watch (a no-op
                // when the text is unchanged). `watch` lives as long as this loop.
                reload_and_notify(&mut etag).await;
                loop {
                    tokio::select! {
                        Some(()) = rx.recv() => {
                            // Debounce: wait until the directory has been quiet for a while.
                            while let Ok(Some(())) =
                                tokio::time::timeout(options.debounce, rx.recv()).await
                            {}
                        }
                        () = hangup.recv() => tracing::info!(file = %name, "SIGHUP: reloading keys"),
                    }
                    reload_and_notify(&mut etag).await;
                    if let Some(w) = watch.as_mut() {
                        w.follow_target();
                    }
                }
            }
            KeySource::S3 { .. } => {
                let every = options.s3_poll_interval;
                let mut ticker =
                    tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = ticker.tick() => {}
                        () = hangup.recv() => tracing::info!(file = %name, "SIGHUP: reloading keys"),
                    }
                    reload_and_notify(&mut etag).await;
                }
            }
        }
    })
}

/// SIGHUP as a stream; never fires where signals are unavailable. Every reloader installs its
/// own: one SIGHUP reloads the keys and gateway.yaml.
pub(crate) struct Hangup {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangup {
    /// Listens for SIGHUP; `what` names the reloaded file in the log.
    pub(crate) fn install(what: &str) -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let signal = signal(SignalKind::hangup())
                .inspect_err(|e| {
                    tracing::warn!("cannot listen for SIGHUP, {what} reload on change only: {e}")
                })
                .ok();
            Hangup { signal }
        }
        #[cfg(not(unix))]
        {
            let _ = what;
            Hangup {}
        }
    }

    /// The next SIGHUP.
    pub(crate) async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(signal) = self.signal.as_mut()
            && signal.recv().await.is_some()
        {
            return;
        }
        std::future::pending::<()>().await
    }
}

/// A watch on a file's directory (and on its symlink target's directory, when elsewhere), for the
/// keys file and gateway.yaml.
pub(crate) struct DirWatch {
    watcher: notify::RecommendedWatcher,
    file: PathBuf,
    target_dir: Option<PathBuf>,
}

impl DirWatch {
    /// Sends `()` on `tx` for every event that may have changed `file`; `what` names the file in
    /// the log. `None` (logged) when the platform cannot watch it.
    pub(crate) fn start(
        what: &str,
        file: &Path,
        tx: mpsc::UnboundedSender<()>,
    ) -> Option<DirWatch> {
        use notify::Watcher;

        let dir = parent_dir(file);
        let file_name = file.file_name().map(|n| n.to_owned());
        let target_name = std::fs::canonicalize(file)
            .ok()
            .and_then(|t| t.file_name().map(|n| n.to_owned()));
        let handler = move |res: notify::Result<notify::Event>| {
            let Ok(event) = res else { return };
            if is_relevant(&event, file_name.as_deref(), target_name.as_deref()) {
                // The receiver is gone only when the reloader stopped.
                let _ = tx.send(());
            }
        };
        let mut watcher = match notify::recommended_watcher(handler) {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(
                    file = %file.display(),
                    "cannot watch the {what} file, reload on SIGHUP only: {e}"
                );
                return None;
            }
        };
        if let Err(e) = watcher.watch(&dir, notify::RecursiveMode::NonRecursive) {
            tracing::error!(
                file = %file.display(),
                "cannot watch the {what} file's directory, reload on SIGHUP only: {e}"
            );
            return None;
        }
        let mut watch = DirWatch {
            watcher,
            file: file.to_owned(),
            target_dir: None,
        };
        watch.follow_target();
        Some(watch)
    }

    /// When the file is a symlink into another directory, watches that directory too, following
    /// the link as it changes.
    pub(crate) fn follow_target(&mut self) {
        use notify::Watcher;

        let dir = parent_dir(&self.file);
        let target_dir = std::fs::canonicalize(&self.file)
            .ok()
            .map(|t| parent_dir(&t))
            .filter(|t| std::fs::canonicalize(&dir).ok().as_ref() != Some(t));
        if target_dir == self.target_dir {
            return;
        }
        if let Some(old) = self.target_dir.take() {
            // May already be gone (Kubernetes deletes the old data directory).
            let _ = self.watcher.unwatch(&old);
        }
        if let Some(new) = target_dir
            && self
                .watcher
                .watch(&new, notify::RecursiveMode::NonRecursive)
                .is_ok()
        {
            self.target_dir = Some(new);
        }
    }
}

fn parent_dir(file: &Path) -> PathBuf {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// Whether a directory event may have changed the keys file: it names the file (or its symlink
/// target) or a Kubernetes `..data`-style entry. Reads (`open`, `close` after reading) are not
/// changes: our own read of the file must not trigger another reload.
fn is_relevant(
    event: &notify::Event,
    file_name: Option<&std::ffi::OsStr>,
    target_name: Option<&std::ffi::OsStr>,
) -> bool {
    use notify::EventKind;
    use notify::event::{AccessKind, AccessMode};

    let change = match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    };
    change
        && event.paths.iter().any(|p| {
            p.file_name().is_some_and(|n| {
                Some(n) == file_name
                    || Some(n) == target_name
                    || n.to_string_lossy().starts_with("..")
            })
        })
}
