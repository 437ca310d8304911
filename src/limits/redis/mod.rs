//! The shared limit store: throttles and quotas kept in Redis / Valkey (ElastiCache on AWS), so
//! every gateway task behind the load balancer enforces the same limits.
//!
//! Place in the pipeline: the `admit` stage's backend when `limits.store: redis`
//! ([`super::Limiter::Redis`]). Input: the same [`AdmitRequest`] the in-process store decides.
//! Output: an [`Admission`], from one round trip: one server-side Lua script (`admit.lua`, sent
//! as `EVALSHA`, and as `EVAL` once when the server answers `NOSCRIPT`, e.g. after a restart)
//! that checks every GCRA layer and the quota and writes only when all pass.
//!
//! Invariants:
//! - Atomic: the script runs alone on the server, so N tasks × M concurrent requests can never
//!   overrun a bucket or a quota (the read-then-increment races of peer-gateways §3.1).
//! - A rejected request consumes nothing (no token, no quota): nothing is written unless every
//!   layer passes, so no refunds are needed.
//! - One clock: the script reads the server's `TIME`; tasks' clocks never enter a decision, and the
//!   quota period (calendar UTC, as in [`super::period_bounds`]) is cut from that time too.
//! - Keys: all under one hash tag, `{<key_prefix>}:…`, so the script is legal on cluster-mode
//!   Redis. Trade-off: every limit key lives in one slot, on one shard; limits do not scale out
//!   across shards (measured: ~50 µs of redis-server CPU per request, ~20k requests a second per
//!   core, docs/limits.md). Quota counters `q:<plan>:<key>:<D|W|M>:<period start, unix s>` expire at period end +
//!   `quota_retention_days` (last period stays readable for billing); GCRA cells expire when
//!   their bucket is full again.
//! - Failure policy: a call never waits longer than `timeout_ms`; a request whose call failed is
//!   decided by [`FailurePolicy`]: `local` (the in-process limits, per task) or `deny` (503).
//!   `consecutive_failures` failed calls in a row (default 3; any success resets the count) mark
//!   the store down (one log line), so one slow call costs one request, not a probe interval of
//!   local limits. While down, requests do not touch Redis at all. A background probe reconnects
//!   and marks it up (one log line), after adding the quota counted locally meanwhile to the
//!   shared counters (`flush.lua`, which adds each batch once, however often it is resent). A local quota continues from the last shared count this task
//!   saw, so an outage costs at most N tasks × the remaining quota.
//! - Counted at most once: a call that failed after it may have reached the server (a timeout, a
//!   dropped connection) may still run there, late (a hung server works off its queue when it
//!   resumes), and count the request. Its local admission is therefore *not* added back: the
//!   request is counted once if the script ran, not at all if it never did. Only calls the server
//!   certainly did not run (connection refused, an error reply) and requests decided while the
//!   store was down are added back. Bound: a task under-counts at most the calls it sent between
//!   the server's end and the store being marked down, if the server lost them (docs/limits.md).
//! - Hot path: no lock; the command is built into one buffer; a std mutex is taken only on a
//!   local fallback admission with a quota (outages only), never across `.await`.
//!
//! Security: the password never appears in `Debug` output or logs (URLs are logged without
//! their user info).

mod usage;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, RedisWrite, ToRedisArgs};

use super::{Admission, AdmitRequest, Bucket, MemoryStore, QuotaCounter, QuotaPeriod};

pub use self::usage::UsagePeriod;

/// The script's source, also sent as `EVAL` when the server does not have it cached.
pub const ADMIT_SCRIPT: &str = include_str!("admit.lua");

/// What happens to a request when the store is down or does not answer in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailurePolicy {
    /// Decide with the in-process limits of this task (fail open, bounded per task).
    Local,
    /// Refuse with 503 Service Unavailable (fail closed).
    Deny,
}

impl FailurePolicy {
    /// The configuration spelling.
    pub fn name(self) -> &'static str {
        match self {
            FailurePolicy::Local => "local",
            FailurePolicy::Deny => "deny",
        }
    }
}

/// Connection settings of the shared store (compiled from `limits.redis` in gateway.yaml).
#[derive(Clone, PartialEq)]
pub struct RedisSettings {
    /// `redis://` or `rediss://` (TLS) URL; may carry user and password.
    pub url: String,
    /// ACL user, when not in the URL.
    pub username: Option<String>,
    /// Password / ElastiCache auth token, when not in the URL.
    pub password: Option<String>,
    /// Multiplexed connections (each pipelines many requests).
    pub connections: usize,
    /// Longest wait for one admission call.
    pub timeout: Duration,
    /// Longest wait for a connection or a probe.
    pub connect_timeout: Duration,
    /// How often a down store is probed.
    pub probe_interval: Duration,
    /// Failed or timed-out calls in a row that mark the store down (at least 1).
    pub consecutive_failures: u32,
    /// Hash tag every key is put under (without braces).
    pub key_prefix: String,
    /// How long a quota counter outlives its period.
    pub quota_retention: Duration,
    /// What happens to requests while the store is down.
    pub on_failure: FailurePolicy,
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &redacted_url(&self.url))
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("connections", &self.connections)
            .field("timeout", &self.timeout)
            .field("consecutive_failures", &self.consecutive_failures)
            .field("key_prefix", &self.key_prefix)
            .field("on_failure", &self.on_failure)
            .finish_non_exhaustive()
    }
}

/// `url` without user info (`rediss://host:6379/0`), for logs.
pub fn redacted_url(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, _)), Some(at)) => format!("{scheme}://{}", &url[at + 1..]),
        _ => url.to_owned(),
    }
}

/// Builds the client for `settings`: the URL, then `username` / `password` when given apart
/// (e.g. the ElastiCache auth token from Secrets Manager through the environment).
pub fn client(settings: &RedisSettings) -> redis::RedisResult<redis::Client> {
    let info = redis::IntoConnectionInfo::into_connection_info(settings.url.as_str())?;
    let mut redis_info = info.redis_settings().clone();
    if let Some(user) = &settings.username {
        redis_info = redis_info.set_username(user);
    }
    if let Some(password) = &settings.password {
        redis_info = redis_info.set_password(password);
    }
    redis::Client::open(info.set_redis_settings(redis_info))
}

/// Counters of the store's health, read by `/metrics` and `/healthz`.
#[derive(Debug, Default)]
pub struct StoreStats {
    /// Calls that failed or timed out.
    pub errors: AtomicU64,
    /// Requests decided by the in-process limits because the store was down.
    pub fallback_local: AtomicU64,
    /// Requests refused (503) because the store was down.
    pub denied: AtomicU64,
    /// Requests admitted locally after a call that may have counted them on the server; their
    /// count is left to that call (never added back, so never counted twice).
    pub uncertain: AtomicU64,
    /// Up → down transitions.
    pub outages: AtomicU64,
}

/// The Redis-backed store. Cheap to clone (an `Arc`).
#[derive(Clone)]
pub struct RedisStore {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("settings", &self.shared.settings)
            .field("up", &self.shared.up.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Adds a batch of locally counted quota to the shared counters, once per batch id.
pub const FLUSH_SCRIPT: &str = include_str!("flush.lua");

/// Quota counted in-process while the store was down: (quota key, period letter, period start).
type PendingKey = (Arc<str>, &'static str, i64);

/// Per counter: (period end, unix seconds; requests admitted locally).
type Counts = HashMap<PendingKey, (i64, u64)>;

/// Quota admitted locally, waiting to be added to the shared counters.
#[derive(Default)]
struct Pending {
    /// Counted since the last batch was cut.
    counts: Counts,
    /// A batch whose flush failed. It is resent as it is, under the same id, because the failed
    /// attempt may still have run: the script adds a batch id once.
    unsent: Option<(String, Counts)>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.counts.is_empty() && self.unsent.is_none()
    }

    /// The batch to send next: the unsent one, else the counts so far under a new id.
    fn next_batch(&mut self) -> Option<(String, Counts)> {
        self.unsent.take().or_else(|| {
            (!self.counts.is_empty()).then(|| {
                let id = format!("{:032x}", rand::random::<u128>());
                (id, std::mem::take(&mut self.counts))
            })
        })
    }
}

struct Shared {
    settings: RedisSettings,
    conns: Vec<ConnectionManager>,
    next: AtomicUsize,
    /// Hex SHA-1 of [`ADMIT_SCRIPT`].
    sha: String,
    /// `{prefix}:`, written before every key.
    prefix: String,
    /// Whether requests go to the store. Cleared after `consecutive_failures` failed calls in a
    /// row, set by the probe.
    up: AtomicBool,
    /// Failed calls since the last success (or since the store came up).
    failures: AtomicU32,
    local: MemoryStore,
    /// Quota admitted locally during an outage, added to the shared counters on recovery. A std
    /// mutex: taken only on a local admission with a quota and by the probe, never across `.await`.
    pending: Mutex<Pending>,
    stats: StoreStats,
}

impl RedisStore {
    /// Creates the connections (lazily: a store that is down at start does not stop the
    /// gateway), probes once (bounded by `connect_timeout`), logs the state and starts the
    /// background probe. `local` decides requests while the store is down (policy `local`).
    pub async fn connect(
        settings: RedisSettings,
        local: MemoryStore,
    ) -> redis::RedisResult<RedisStore> {
        let store = RedisStore::new(settings, local)?;
        match store.shared.probe().await {
            Ok(()) => {
                store.shared.up.store(true, Ordering::Release);
                tracing::info!(
                    url = %redacted_url(&store.shared.settings.url),
                    on_store_failure = store.shared.settings.on_failure.name(),
                    "limit store up"
                );
            }
            Err(e) => tracing::warn!(
                url = %redacted_url(&store.shared.settings.url),
                error = %e,
                on_store_failure = store.shared.settings.on_failure.name(),
                "limit store down at start; probing"
            ),
        }
        tokio::spawn(probe_loop(
            Arc::downgrade(&store.shared),
            store.shared.settings.probe_interval,
        ));
        Ok(store)
    }

    /// The store without probing or a background task (marked down until [`Self::probe_now`]).
    pub fn new(settings: RedisSettings, local: MemoryStore) -> redis::RedisResult<RedisStore> {
        let client = client(&settings)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.connect_timeout))
            .set_response_timeout(Some(settings.timeout.max(settings.connect_timeout)))
            .set_number_of_retries(1)
            .set_max_delay(settings.probe_interval);
        let conns = (0..settings.connections.max(1))
            .map(|_| ConnectionManager::new_lazy_with_config(client.clone(), config.clone()))
            .collect::<redis::RedisResult<Vec<_>>>()?;
        let sha = redis::Script::new(ADMIT_SCRIPT).get_hash().to_owned();
        let prefix = format!("{{{}}}:", settings.key_prefix);
        Ok(RedisStore {
            shared: Arc::new(Shared {
                settings,
                conns,
                next: AtomicUsize::new(0),
                sha,
                prefix,
                up: AtomicBool::new(false),
                failures: AtomicU32::new(0),
                local,
                pending: Mutex::new(Pending::default()),
                stats: StoreStats::default(),
            }),
        })
    }

    /// Probes now; on success adds the pending local quota and marks the store up. Returns
    /// whether it is up.
    pub async fn probe_now(&self) -> bool {
        self.shared.recover().await
    }

    /// Whether requests currently go to the store.
    pub fn is_up(&self) -> bool {
        self.shared.up.load(Ordering::Acquire)
    }

    /// The settings.
    pub fn settings(&self) -> &RedisSettings {
        &self.shared.settings
    }

    /// Health counters.
    pub fn stats(&self) -> &StoreStats {
        &self.shared.stats
    }

    /// The in-process store used while down.
    pub fn local(&self) -> &MemoryStore {
        &self.shared.local
    }

    /// Decides one request: the script when the store is up, the failure policy otherwise.
    pub async fn admit(&self, req: &AdmitRequest<'_>) -> Admission {
        let shared = &self.shared;
        if req.is_empty() {
            // No limit applies (a route without key on an unthrottled stage): no round trip.
            return Admission::Admitted;
        }
        if !shared.up.load(Ordering::Acquire) {
            return shared.fallback(req, Ran::No);
        }
        match tokio::time::timeout(shared.settings.timeout, shared.eval(req, None)).await {
            Ok(Ok(reply)) => match decode(&reply) {
                Some(admission) => {
                    shared.failures.store(0, Ordering::Relaxed);
                    // Admitted with a quota: [0, 0, 0, used, limit, period start, period end].
                    if let (Some(quota), Some(&used), Some(&start)) =
                        (req.quota, reply.get(3), reply.get(5))
                    {
                        quota.observe_shared(start, used.max(0).unsigned_abs());
                    }
                    if let Admission::Throttled { .. } = admission
                        && let Some(layer) = reply.get(2)
                    {
                        tracing::debug!(layer, "throttled (shared)");
                    }
                    admission
                }
                None => shared.failed(
                    req,
                    &format!("unexpected script reply {reply:?}"),
                    Ran::Maybe,
                ),
            },
            Ok(Err(e)) => shared.failed(req, &e.to_string(), Ran::of(&e)),
            Err(_) => shared.failed(req, "timed out", Ran::Maybe),
        }
    }

    /// Runs the script with an injected time (microseconds since the epoch), for tests that
    /// compare its decisions with the in-process limiter's on a manual clock.
    pub async fn admit_at(
        &self,
        req: &AdmitRequest<'_>,
        now_micros: u64,
    ) -> redis::RedisResult<Admission> {
        let reply = self.shared.eval(req, Some(now_micros)).await?;
        decode(&reply).ok_or_else(|| {
            redis::RedisError::from((redis::ErrorKind::Client, "unexpected script reply"))
        })
    }
}

/// Whether a failed call may have run (and counted the request) on the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ran {
    /// Certainly not: no call was made, the connection was refused, or the server answered an
    /// error (a script that fails writes nothing: its only writes come after every check).
    No,
    /// Perhaps: no answer in time, or the connection broke after the call was sent.
    Maybe,
}

impl Ran {
    fn of(e: &redis::RedisError) -> Ran {
        if e.is_connection_refusal()
            || matches!(
                e.kind(),
                redis::ErrorKind::Server(_) | redis::ErrorKind::Extension
            )
        {
            Ran::No
        } else {
            Ran::Maybe
        }
    }
}

/// `[0, …]` admitted, `[1, wait µs, layer]` throttled, `[2, wait µs, 0]` quota exhausted.
fn decode(reply: &[i64]) -> Option<Admission> {
    let wait = || Duration::from_micros(reply.get(1).copied().unwrap_or(0).max(0).unsigned_abs());
    match reply.first()? {
        0 => Some(Admission::Admitted),
        1 => Some(Admission::Throttled {
            retry_after: wait(),
        }),
        2 => Some(Admission::QuotaExceeded {
            retry_after: wait(),
        }),
        _ => None,
    }
}

impl Shared {
    fn conn(&self) -> ConnectionManager {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.conns.len().max(1);
        self.conns[i].clone()
    }

    /// One round trip: `EVALSHA`, or `EVAL` with the source when the server lost its script cache.
    async fn eval(&self, req: &AdmitRequest<'_>, now: Option<u64>) -> redis::RedisResult<Vec<i64>> {
        let mut con = self.conn();
        let cmd = self.command(req, now, true);
        match cmd.query_async::<Vec<i64>>(&mut con).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                self.command(req, now, false)
                    .query_async::<Vec<i64>>(&mut con)
                    .await
            }
            other => other,
        }
    }

    /// `EVALSHA sha n+q keys… now n (T tau)… [limit offset period retention]`.
    fn command(&self, req: &AdmitRequest<'_>, now: Option<u64>, cached: bool) -> Cmd {
        let layers: [Option<&Bucket>; 4] = [
            req.key_route,
            req.key_plan,
            req.stage_route,
            req.stage_default,
        ];
        let n = layers.iter().flatten().count();
        let mut cmd = if cached {
            let mut c = redis::cmd("EVALSHA");
            c.arg(self.sha.as_str());
            c
        } else {
            let mut c = redis::cmd("EVAL");
            c.arg(ADMIT_SCRIPT);
            c
        };
        cmd.arg(n + usize::from(req.quota.is_some()));
        for bucket in layers.iter().flatten() {
            cmd.arg(Key(&self.prefix, bucket.store_key()));
        }
        if let Some(quota) = req.quota {
            cmd.arg(Key(&self.prefix, quota.store_key()));
        }
        match now {
            Some(t) => cmd.arg(t),
            None => cmd.arg(""),
        };
        cmd.arg(n);
        for bucket in layers.iter().flatten() {
            let (t, tau) = bucket.gcra_micros();
            cmd.arg(t).arg(tau);
        }
        if let Some(quota) = req.quota {
            let spec = quota.spec();
            cmd.arg(spec.limit)
                .arg(spec.offset)
                .arg(period_letter(spec.period))
                .arg(self.settings.quota_retention.as_secs());
        }
        cmd
    }

    /// A call for `req` failed: counts it (marking the store down after `consecutive_failures` in
    /// a row) and decides `req` by the failure policy.
    fn failed(&self, req: &AdmitRequest<'_>, why: &str, ran: Ran) -> Admission {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        let in_a_row = self
            .failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        if in_a_row >= self.settings.consecutive_failures {
            self.mark_down(why);
        }
        self.fallback(req, ran)
    }

    /// Decides `req` without the store. `ran` says whether the shared counter may already hold
    /// it: then a local admission is not added back later (counted at most once).
    fn fallback(&self, req: &AdmitRequest<'_>, ran: Ran) -> Admission {
        match self.settings.on_failure {
            FailurePolicy::Deny => {
                self.stats.denied.fetch_add(1, Ordering::Relaxed);
                Admission::StoreUnavailable
            }
            FailurePolicy::Local => {
                self.stats.fallback_local.fetch_add(1, Ordering::Relaxed);
                let admission = self.local.admit_now(req);
                if admission.is_admitted()
                    && let Some(quota) = req.quota
                {
                    match ran {
                        Ran::No => self.remember_local(quota),
                        Ran::Maybe => {
                            self.stats.uncertain.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                admission
            }
        }
    }

    fn remember_local(&self, quota: &QuotaCounter) {
        let spec = quota.spec();
        let (start, end) = super::period_bounds(spec.period, self.local.clock().wall_now());
        let key = (
            Arc::clone(quota.store_key_arc()),
            period_letter(spec.period),
            start.timestamp(),
        );
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        pending.counts.entry(key).or_insert((end.timestamp(), 0)).1 += 1;
    }

    fn mark_down(&self, why: &str) {
        if self.up.swap(false, Ordering::AcqRel) {
            self.stats.outages.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                error = why,
                on_store_failure = self.settings.on_failure.name(),
                "limit store down; deciding by the failure policy until it answers again"
            );
        }
    }

    /// Loads the script on every connection (which is also the liveness check).
    async fn probe(&self) -> redis::RedisResult<()> {
        for con in &self.conns {
            let mut con = con.clone();
            let mut cmd = redis::cmd("SCRIPT");
            cmd.arg("LOAD").arg(ADMIT_SCRIPT);
            let load = cmd.query_async::<String>(&mut con);
            match tokio::time::timeout(self.settings.connect_timeout, load).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    return Err(redis::RedisError::from((
                        redis::ErrorKind::Io,
                        "probe timed out",
                    )));
                }
            }
        }
        Ok(())
    }

    /// Probes; when the store answers, marks it up and adds the quota counted locally meanwhile.
    async fn recover(&self) -> bool {
        if !self.up.load(Ordering::Acquire) {
            if let Err(e) = self.probe().await {
                tracing::debug!(error = %e, "limit store probe failed");
                return false;
            }
            self.failures.store(0, Ordering::Relaxed);
            self.up.store(true, Ordering::Release);
            tracing::info!(
                url = %redacted_url(&self.settings.url),
                "limit store up again; limits are shared"
            );
        }
        // Also when already up: a local admission racing the recovery may have added a count.
        if let Err(e) = self.flush_pending().await {
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
            self.mark_down(&format!("adding local quota counts failed: {e}"));
            return false;
        }
        true
    }

    /// Sends the unsent batch, if any, then what was counted since; each batch counts once.
    async fn flush_pending(&self) -> redis::RedisResult<()> {
        // Two rounds at most: a batch that failed before, then the counts gathered since.
        for _ in 0..2 {
            let batch = self
                .pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .next_batch();
            let Some((id, counts)) = batch else {
                return Ok(());
            };
            match self.flush(&id, &counts).await {
                Ok(added) => {
                    let total: u64 = counts.values().map(|(_, c)| c).sum();
                    tracing::info!(
                        counters = counts.len(),
                        requests = total,
                        already_added = !added,
                        "quota counted locally during the outage added to the shared counters"
                    );
                }
                Err(e) => {
                    let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
                    pending.unsent = Some((id, counts));
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// One batch through `flush.lua`; true when it was added now, false when it had been.
    async fn flush(&self, id: &str, counts: &Counts) -> redis::RedisResult<bool> {
        let retention = i64::try_from(self.settings.quota_retention.as_secs()).unwrap_or(0);
        let script = redis::Script::new(FLUSH_SCRIPT);
        let mut call = script.prepare_invoke();
        // The marker outlives every retry: the batch is resent at each probe until it goes in.
        call.key(format!("{}flush:{id}", self.prefix))
            .arg(self.settings.quota_retention.as_secs().max(86_400));
        for ((key, letter, start), (end, count)) in counts {
            call.key(format!("{}{key}:{letter}:{start}", self.prefix))
                .arg(*count)
                .arg(end.saturating_add(retention));
        }
        let mut con = self.conn();
        match tokio::time::timeout(
            self.settings.connect_timeout,
            call.invoke_async::<i64>(&mut con),
        )
        .await
        {
            Ok(added) => added.map(|n| n == 1),
            Err(_) => Err(redis::RedisError::from((redis::ErrorKind::Io, "timed out"))),
        }
    }
}

async fn probe_loop(shared: Weak<Shared>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let idle = shared.up.load(Ordering::Acquire)
            && shared
                .pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_empty();
        if !idle {
            shared.recover().await;
        }
    }
}

/// `D`, `W`, `M`: the period's letter in counter keys and script arguments.
pub fn period_letter(period: QuotaPeriod) -> &'static str {
    match period {
        QuotaPeriod::Day => "D",
        QuotaPeriod::Week => "W",
        QuotaPeriod::Month => "M",
    }
}

/// One key argument written as prefix + name into the command buffer (no intermediate string).
struct Key<'a>(&'a str, &'a str);

impl ToRedisArgs for Key<'_> {
    fn write_redis_args<W>(&self, out: &mut W)
    where
        W: ?Sized + RedisWrite,
    {
        let mut w = out.writer_for_next_arg();
        // Writing to the command's in-memory buffer cannot fail.
        let _ = w.write_all(self.0.as_bytes());
        let _ = w.write_all(self.1.as_bytes());
    }
}
