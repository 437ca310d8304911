//! The in-flight memory budget: one global count of the bytes that requests hold, and a refusal
//! past its limit instead of growth.
//!
//! Place in the pipeline: every request gets a [`Held`] account from the HTTP adapter. The read-body
//! stage charges the body as it arrives, the render stage the rendered integration request, the
//! fetch stage SageMaker's answer, the respond stage a rendered response; the adapter keeps the
//! account alive until the response has been written, then dropping it releases everything.
//!
//! Input: byte counts actually held (buffer capacities), never a declared `Content-Length`. Output:
//! `Ok`, or [`OverBudget`], which the pipeline answers with 503 `{"message":"Service Unavailable"}`
//! and `Retry-After: 1`.
//!
//! Invariants:
//! - [`MemoryBudget::held`] is the sum of the live accounts; an account gives its bytes back when
//!   dropped, also when actix drops the handler of a client that went away.
//! - [`Held::try_grow`] never takes the total past the limit: a refused charge changes nothing.
//!   [`Held::charge`] is for bytes that already exist (an answer SageMaker has sent): it cannot
//!   fail, and while it lives new charges are refused. So the total exceeds the limit only by
//!   answers already received, and new work stops until they are written out.
//! - No lock: a charge is one `fetch_add` on one atomic (and one `fetch_sub` when refused). Two
//!   charges racing near the limit may both be refused where one would have fit, never both admitted
//!   where one does not.
//!
//! Security: the budget bounds what callers with a valid key can make the task hold; callers
//! without one never get past `authenticate`, so their bytes are only actix's bounded buffers.
//!
//! Requests in flight: the bytes above are what a request holds beyond its connection. The
//! connection state itself (actix's buffers and request head, the upstream connection with its
//! buffers, task and TLS) is about 50 KB per SageMaker call in flight, 56 KB over HTTPS
//! (bench/RESULTS.md §11), and grows with concurrency alone. So the budget also has slots: a
//! request takes one once its key is checked, before admission so that the 503 spends none of the
//! caller's throttle or quota ([`Held::take_slot`]), and keeps it until its account is dropped;
//! past `server.max_requests_in_flight` new work gets the same 503. The default keeps every
//! slot's connection state within half of what the default budget gives bytes
//! ([`default_slots`]).
//!
//! A stage that builds something for a moment (the validate stage's parsed body) charges it with
//! `try_grow` and gives it back with [`Held::release`] when done.
//!
//! Template stage (`mapping`): JSON a render parses (`$input.json`/`$input.path`, `$util.parseJson`)
//! is charged through the same account as it is built (`integration::RenderCharge`, a
//! `mapping::Reserve`) and given back with [`Held::release`] when the render returns; a refusal is
//! the same 503.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// Budget used when the cgroup sets no memory limit or it cannot be read: 512 MiB.
pub const FALLBACK_BUDGET: u64 = 512 * 1024 * 1024;

/// The default budget's bytes per default slot: twice the 50–56 KB of connection state measured
/// per SageMaker call in flight (bench/RESULTS.md §11), rounded up to 128 KiB.
pub const BUDGET_BYTES_PER_SLOT: u64 = 128 * 1024;

/// cgroup v2 memory limit of this process's cgroup (`max` = none).
const CGROUP_V2_MAX: &str = "/sys/fs/cgroup/memory.max";
/// cgroup v1 memory limit (a huge number = none).
const CGROUP_V1_LIMIT: &str = "/sys/fs/cgroup/memory/memory.limit_in_bytes";
/// cgroup v1 writes "no limit" as a page-rounded `i64::MAX`; anything this large is no limit.
const UNLIMITED_FROM: u64 = 1 << 60;

/// A charge was refused: the budget is used up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}", OverBudget::REASON)]
pub struct OverBudget;

impl OverBudget {
    /// The log cause of the 503.
    pub const REASON: &'static str = "in-flight memory budget exhausted";
    /// The log cause of the 503 when every slot is taken.
    pub const SLOTS_REASON: &'static str = "requests in flight at server.max_requests_in_flight";
}

impl From<OverBudget> for crate::error::GatewayError {
    fn from(_: OverBudget) -> Self {
        crate::error::GatewayError::Unavailable {
            reason: OverBudget::REASON,
        }
    }
}

#[derive(Debug)]
struct Shared {
    limit: usize,
    held: AtomicUsize,
    refused: AtomicU64,
    /// Requests that may hold a slot at once.
    slots: usize,
    /// Slots held now.
    taken: AtomicUsize,
}

/// The global budget; cheap to clone (one `Arc`).
#[derive(Debug, Clone)]
pub struct MemoryBudget(Arc<Shared>);

impl MemoryBudget {
    /// A budget of `limit` bytes with no bound on requests in flight.
    pub fn new(limit: u64) -> Self {
        Self::with_slots(limit, usize::MAX)
    }

    /// A budget of `limit` bytes and `slots` requests in flight.
    pub fn with_slots(limit: u64, slots: usize) -> Self {
        MemoryBudget(Arc::new(Shared {
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            held: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
            slots,
            taken: AtomicUsize::new(0),
        }))
    }

    /// A new, empty account for one request.
    pub fn account(&self) -> Held {
        Held {
            budget: self.clone(),
            bytes: AtomicUsize::new(0),
            slot: AtomicBool::new(false),
        }
    }

    /// Requests that may be in flight at once (`server.max_requests_in_flight`).
    pub fn slots(&self) -> usize {
        self.0.slots
    }

    /// Slots held now: requests past the key check in flight.
    pub fn taken(&self) -> usize {
        self.0.taken.load(Ordering::Relaxed)
    }

    /// The limit in bytes.
    pub fn limit(&self) -> usize {
        self.0.limit
    }

    /// Bytes held by all live accounts now.
    pub fn held(&self) -> usize {
        self.0.held.load(Ordering::Relaxed)
    }

    /// Charges refused since start.
    pub fn refused(&self) -> u64 {
        self.0.refused.load(Ordering::Relaxed)
    }
}

/// One request's account: what it holds, given back on drop.
#[derive(Debug)]
pub struct Held {
    budget: MemoryBudget,
    /// Atomic so that a stage can charge through a shared reference (`&Held` in a render input).
    bytes: AtomicUsize,
    /// Whether this account holds one of the budget's slots.
    slot: AtomicBool,
}

impl Held {
    /// Charges `n` more bytes unless that would take the total past the limit. Also refuses when
    /// the budget is already spent and `n` is 0: new work waits until memory is given back.
    pub fn try_grow(&self, n: usize) -> Result<(), OverBudget> {
        let grown = self.grow_within(n, self.budget.0.limit);
        if grown.is_err() {
            self.budget.0.refused.fetch_add(1, Ordering::Relaxed);
        }
        grown
    }

    /// [`Held::try_grow`] for optional work (a shadow copy of a SageMaker call): refuses unless the
    /// total stays within `share` of the limit (0.0 to 1.0), and a refusal is not counted as a
    /// client's 503.
    pub fn try_grow_within_share(&self, n: usize, share: f64) -> Result<(), OverBudget> {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let ceiling = (self.budget.0.limit as f64 * share.clamp(0.0, 1.0)) as usize;
        self.grow_within(n, ceiling)
    }

    fn grow_within(&self, n: usize, ceiling: usize) -> Result<(), OverBudget> {
        let shared = &self.budget.0;
        let before = shared.held.fetch_add(n, Ordering::Relaxed);
        let after = before.saturating_add(n);
        if after > ceiling || (n == 0 && before >= ceiling) {
            shared.held.fetch_sub(n, Ordering::Relaxed);
            return Err(OverBudget);
        }
        self.bytes.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }

    /// Charges `n` bytes that are already held (cannot be refused, see the module invariants).
    pub fn charge(&self, n: usize) {
        self.budget.0.held.fetch_add(n, Ordering::Relaxed);
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }

    /// Gives back `n` of this account's bytes before it is dropped (memory a stage held only for a
    /// while, such as JSON a template parsed). Never gives back more than the account holds.
    pub fn release(&self, n: usize) {
        let mut current = self.bytes.load(Ordering::Relaxed);
        loop {
            let given = n.min(current);
            match self.bytes.compare_exchange_weak(
                current,
                current - given,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    self.budget.0.held.fetch_sub(given, Ordering::Relaxed);
                    return;
                }
                Err(now) => current = now,
            }
        }
    }

    /// Bytes this account holds.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Takes one of the budget's slots for this request, kept until the account is dropped;
    /// refused (and counted as a refusal) when every slot is taken. Taking it again is a no-op.
    pub fn take_slot(&self) -> Result<(), OverBudget> {
        if self.slot.load(Ordering::Relaxed) {
            return Ok(());
        }
        let shared = &self.budget.0;
        if shared.taken.fetch_add(1, Ordering::Relaxed) >= shared.slots {
            shared.taken.fetch_sub(1, Ordering::Relaxed);
            shared.refused.fetch_add(1, Ordering::Relaxed);
            return Err(OverBudget);
        }
        self.slot.store(true, Ordering::Relaxed);
        Ok(())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let n = *self.bytes.get_mut();
        self.budget.0.held.fetch_sub(n, Ordering::Relaxed);
        if *self.slot.get_mut() {
            self.budget.0.taken.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Bytes of `produced` that are new, not a view of `source` (a passthrough body, an answer sent on
/// unchanged): these are what a stage adds to the request's memory.
pub fn new_bytes(produced: &bytes::Bytes, source: &bytes::Bytes) -> usize {
    if produced.as_ptr() == source.as_ptr() {
        0
    } else {
        produced.len()
    }
}

/// The default of `server.memory_budget_bytes`: half the cgroup's memory limit (v2 `memory.max`,
/// else v1 `memory.limit_in_bytes`), or [`FALLBACK_BUDGET`] when there is no limit or it cannot be
/// read. The source is returned for the start-up log.
pub fn default_budget() -> (u64, &'static str) {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    match read(CGROUP_V2_MAX).or_else(|| read(CGROUP_V1_LIMIT)) {
        Some(text) => match cgroup_limit(&text) {
            Some(limit) => (limit / 2, "half of the cgroup memory limit"),
            None => (FALLBACK_BUDGET, "no cgroup memory limit"),
        },
        None => (FALLBACK_BUDGET, "cgroup memory limit unreadable"),
    }
}

/// The default of `server.max_requests_in_flight`: the default budget ([`default_budget`], which
/// is not the configured one) over [`BUDGET_BYTES_PER_SLOT`]. A 1 GiB task (512 MiB budget) gets
/// 4096, as does a host without a memory limit. With the budget full and every slot taken, a
/// 1 GiB task holds 512 MiB + 4096 × 56 KB ≈ 736 MiB, leaving room for the process itself, two
/// 64 MiB stage caches and the collector sidecar (8192 slots would not: ≈ 1.2 GiB).
pub fn default_slots() -> usize {
    usize::try_from(default_budget().0 / BUDGET_BYTES_PER_SLOT)
        .unwrap_or(usize::MAX)
        .max(1)
}

/// A cgroup memory limit file's value: `None` for `max`, a huge v1 value, or anything unparsable.
fn cgroup_limit(text: &str) -> Option<u64> {
    text.trim()
        .parse::<u64>()
        .ok()
        .filter(|&n| n > 0 && n < UNLIMITED_FROM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optional_work_stops_at_its_share_and_is_not_counted_as_a_refusal() {
        let budget = MemoryBudget::new(100);
        let client = budget.account();
        client.try_grow(40).unwrap();
        let shadow = budget.account();
        assert_eq!(shadow.try_grow_within_share(11, 0.5), Err(OverBudget));
        assert_eq!(budget.refused(), 0, "no client got a 503");
        shadow.try_grow_within_share(10, 0.5).unwrap();
        assert_eq!(budget.held(), 50);
        // The client's own charges still reach the whole limit.
        client.try_grow(50).unwrap();
        drop(shadow);
        assert_eq!(budget.held(), 90);
    }

    #[test]
    fn slots_are_refused_when_all_are_taken_and_given_back_on_drop() {
        let budget = MemoryBudget::with_slots(1 << 20, 2);
        let (a, b, c) = (budget.account(), budget.account(), budget.account());
        a.take_slot().unwrap();
        a.take_slot().unwrap();
        assert_eq!(budget.taken(), 1, "taking it again holds one slot");
        b.take_slot().unwrap();
        assert_eq!(c.take_slot(), Err(OverBudget));
        assert_eq!((budget.taken(), budget.refused()), (2, 1));
        // Bytes are a separate count: a request without a slot may still be charged.
        c.try_grow(10).unwrap();
        drop(a);
        assert_eq!(budget.taken(), 1);
        c.take_slot().unwrap();
        drop((b, c));
        assert_eq!((budget.taken(), budget.held()), (0, 0));
        // A budget made with `new` has no bound on slots.
        let open = MemoryBudget::new(100);
        let many: Vec<Held> = (0..1000).map(|_| open.account()).collect();
        assert!(many.iter().all(|h| h.take_slot().is_ok()));
    }

    #[test]
    fn default_slots_are_the_default_budget_over_128_kib() {
        assert_eq!(FALLBACK_BUDGET / BUDGET_BYTES_PER_SLOT, 4096);
        let slots = u64::try_from(default_slots()).unwrap();
        assert_eq!(slots, (default_budget().0 / BUDGET_BYTES_PER_SLOT).max(1));
    }

    #[test]
    fn charges_are_refused_past_the_limit_and_given_back_on_drop() {
        let budget = MemoryBudget::new(100);
        let a = budget.account();
        a.try_grow(60).unwrap();
        let b = budget.account();
        assert_eq!(b.try_grow(41), Err(OverBudget));
        assert_eq!(budget.held(), 60, "a refused charge changes nothing");
        b.try_grow(40).unwrap();
        assert_eq!(budget.held(), 100);
        // Spent: even an empty charge (new work) is refused.
        assert_eq!(budget.account().try_grow(0), Err(OverBudget));
        drop(a);
        assert_eq!(budget.held(), 40);
        budget.account().try_grow(0).unwrap();
        drop(b);
        assert_eq!((budget.held(), budget.refused()), (0, 2));
    }

    #[test]
    fn a_release_gives_back_at_most_what_the_account_holds() {
        let budget = MemoryBudget::new(100);
        let a = budget.account();
        a.try_grow(70).unwrap();
        a.release(50);
        assert_eq!((a.bytes(), budget.held()), (20, 20));
        a.release(50);
        assert_eq!((a.bytes(), budget.held()), (0, 0));
        a.try_grow(100).unwrap();
        drop(a);
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn a_forced_charge_counts_and_blocks_new_work_until_released() {
        let budget = MemoryBudget::new(100);
        let answer = budget.account();
        answer.charge(150);
        assert_eq!(budget.held(), 150);
        assert_eq!(budget.account().try_grow(1), Err(OverBudget));
        drop(answer);
        assert_eq!(budget.held(), 0);
        budget.account().try_grow(100).unwrap();
    }

    #[test]
    fn concurrent_accounts_never_admit_past_the_limit() {
        let budget = MemoryBudget::new(1000);
        // Every admitted account is kept until all threads are done, so at most 1000 bytes fit.
        let kept: Vec<Held> = std::thread::scope(|s| {
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        (0..500)
                            .map(|_| budget.account())
                            .filter(|held| held.try_grow(7).is_ok())
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            threads
                .into_iter()
                .flat_map(|t| t.join().unwrap())
                .collect()
        });
        assert!(kept.len() * 7 <= 1000, "{}", kept.len());
        assert_eq!(budget.held(), kept.len() * 7);
        drop(kept);
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn cgroup_limits_are_read_in_both_versions() {
        assert_eq!(cgroup_limit("max\n"), None);
        assert_eq!(cgroup_limit("1073741824\n"), Some(1 << 30));
        assert_eq!(cgroup_limit("9223372036854771712\n"), None, "v1 unlimited");
        assert_eq!(cgroup_limit(""), None);
        assert_eq!(cgroup_limit("0"), None);
        let (budget, _) = default_budget();
        assert!(budget > 0);
    }
}
