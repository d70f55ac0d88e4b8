//! Per-thread counters of what each site really calls.
//!
//! The call path never writes a cache line that another thread writes:
//! every thread counts into its own [`ThreadTable`] per site (aligned to
//! 128 bytes, so two threads' tables never share a line, adjacent-line
//! prefetch included), with plain single-writer increments (a load and a
//! store, no `lock` prefix). The scheduler reads the tables with atomic
//! loads and sums them ([`SiteCounters::snapshot`]).
//!
//! Generated code reaches the counters through two hooks
//! ([`hook::RECORD_CALL`], [`hook::RECORD_MISS`]) that it calls with the
//! site's *cookie* (its registry index) and the target; the hooks find the
//! calling thread's table through a thread-local vector indexed by cookie.
//!
//! # Epochs
//!
//! Counts belong to one *epoch* of a site: what it promoted and how it
//! counts. [`SiteCounters::begin_epoch`] starts a new one (a new thunk, or a
//! policy's reset). Tables are not reset from outside (that would race with
//! their owner's increments): the owner notices the new epoch on its next
//! record, zeroes its own table and copies the new promoted list, then
//! publishes the epoch it counts for with a `Release` store. A snapshot
//! counts only tables whose epoch is the site's current one. The site's
//! plan is published to the owners through a sequence lock, and an owner
//! that reads it mid-change drops that one record rather than wait: callers
//! never block on the scheduler.
//!
//! # Exactness
//!
//! Within one epoch, `calls`, `hits` and `misses` are exact: every recorded
//! call of every thread is in the next snapshot, also for threads that have
//! exited (their tables are folded into the site's totals once the thread's
//! reference is gone). Records that race with the start of a new epoch may
//! be attributed to either side or dropped. Candidate tables are the seed's
//! first-come-first-served heuristic and may be discarded by their owner.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::{Arc, Mutex, MutexGuard};

use crossbeam_queue::SegQueue;

use crate::counts::Counts;
use crate::plan::MAX_SLOTS;

pub mod hook;
mod local;
mod registry;

pub use local::{
    MISS_SAMPLE_PERIOD, record_call, record_miss, record_sampled_miss, sampling_tls_offset,
};

/// Most first-come-first-served miss candidates a thread keeps per site.
pub const MAX_CANDIDATES: usize = 8;

/// How a site's threads count misses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CounterConfig {
    /// Candidate entries per thread (the seed: 4), at most
    /// [`MAX_CANDIDATES`].
    pub candidates: usize,
    /// What a miss does when every candidate entry holds another target.
    pub replacement: Replacement,
}

/// What happens to a miss whose target has no candidate entry and finds
/// none free.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replacement {
    /// The seed's scheme: the miss goes to the catch-all count; a thread
    /// whose catch-all count exceeds `catch_all_limit` discards its
    /// candidates and starts over (`u64::MAX`: never).
    FirstCome { catch_all_limit: u64 },
    /// Space-saving (Metwally, Agrawal, El Abbadi 2005): the entry with the
    /// smallest count takes the new target and counts on from that count
    /// plus one. Every target with more than `1/candidates` of a thread's
    /// misses is guaranteed an entry, and no count is under its true value
    /// (each over-estimates by at most the replaced minimum). Nothing goes
    /// to the catch-all.
    SpaceSaving,
}

impl Replacement {
    /// The catch-all limit as stored in the tables (`0` marks space-saving,
    /// which never uses the catch-all).
    fn encode(self) -> u64 {
        match self {
            Replacement::FirstCome { catch_all_limit } => catch_all_limit.max(1),
            Replacement::SpaceSaving => 0,
        }
    }
}

impl Default for CounterConfig {
    fn default() -> Self {
        CounterConfig {
            candidates: MAX_CANDIDATES,
            replacement: Replacement::SpaceSaving,
        }
    }
}

/// The cookie generated code passes to the hooks: the site's index in the
/// process-wide registry. Indexes are reused only after a grace period (see
/// [`SiteCounters::retire`]), so a stale thunk never counts for a new site.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SiteCookie(u32);

impl SiteCookie {
    /// The value passed in the hook's first argument: the index plus one,
    /// so that it is never zero (code generators encode a zero constant
    /// differently from other small ones, which would give counting thunks
    /// of the first site a shape of their own).
    pub fn value(self) -> u64 {
        u64::from(self.0) + 1
    }

    /// The registry index of a cookie value.
    pub(crate) fn index_of(value: u64) -> Option<usize> {
        usize::try_from(value.checked_sub(1)?).ok()
    }
}

/// Single-writer increment: the owner thread is the only writer, so a
/// plain load and store (no read-modify-write) cannot lose counts.
#[inline(always)]
fn bump(counter: &AtomicU64) {
    add(counter, 1);
}

/// Single-writer addition (see [`bump`]).
#[inline(always)]
fn add(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Relaxed);
}

/// The shared, read-mostly half of a site's counters.
pub struct SiteCounters {
    cookie: SiteCookie,
    alive: AtomicBool,
    /// Sequence lock over the plan below: odd while it changes; the epoch
    /// number is `seq / 2`.
    seq: AtomicU64,
    n_promoted: AtomicUsize,
    promoted: [AtomicU64; MAX_SLOTS],
    candidates: AtomicUsize,
    catch_all_limit: AtomicU64,
    /// Tables created by threads since the last snapshot (lock-free, so a
    /// thread's first record never waits for the scheduler).
    new_tables: SegQueue<Arc<ThreadTable>>,
    agg: Mutex<Aggregation>,
}

/// The scheduler's side: every table, and what exited threads counted.
struct Aggregation {
    tables: Vec<Arc<ThreadTable>>,
    departed: Counts,
    departed_seq: u64,
}

impl SiteCounters {
    /// Registers a new site with no promoted targets.
    pub fn new(config: CounterConfig) -> Arc<Self> {
        registry::register(|cookie| SiteCounters {
            cookie,
            alive: AtomicBool::new(true),
            seq: AtomicU64::new(0),
            n_promoted: AtomicUsize::new(0),
            promoted: Default::default(),
            candidates: AtomicUsize::new(config.candidates.min(MAX_CANDIDATES)),
            catch_all_limit: AtomicU64::new(config.replacement.encode()),
            new_tables: SegQueue::new(),
            agg: Mutex::new(Aggregation {
                tables: Vec::new(),
                departed: Counts::default(),
                departed_seq: u64::MAX,
            }),
        })
    }

    pub fn cookie(&self) -> SiteCookie {
        self.cookie
    }

    /// The current epoch number (starts at 0; one more per
    /// [`Self::begin_epoch`]).
    pub fn epoch(&self) -> u64 {
        self.seq.load(Ordering::Acquire) / 2
    }

    fn lock_agg(&self) -> MutexGuard<'_, Aggregation> {
        // Every update under this lock leaves the state consistent.
        self.agg.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a new epoch: `promoted` (at most [`MAX_SLOTS`]) are the
    /// targets whose calls count as hits from now on; every thread's counts
    /// start again from zero.
    pub fn begin_epoch(&self, promoted: &[u64], config: CounterConfig) {
        let _writer = self.lock_agg();
        let n = promoted.len().min(MAX_SLOTS);
        self.seq.fetch_add(1, Ordering::Relaxed); // odd: changing
        fence(Ordering::Release);
        for (slot, &t) in self.promoted.iter().zip(promoted) {
            slot.store(t, Ordering::Relaxed);
        }
        self.n_promoted.store(n, Ordering::Relaxed);
        self.candidates
            .store(config.candidates.min(MAX_CANDIDATES), Ordering::Relaxed);
        self.catch_all_limit
            .store(config.replacement.encode(), Ordering::Relaxed);
        self.seq.fetch_add(1, Ordering::Release); // even: stable
    }

    /// Reads the plan for a thread's table, if it is not changing right now.
    fn read_plan(&self) -> Option<PlanCopy> {
        let s1 = self.seq.load(Ordering::Acquire);
        if s1 % 2 == 1 {
            return None;
        }
        let n = self.n_promoted.load(Ordering::Relaxed);
        let mut promoted = [0u64; MAX_SLOTS];
        for (p, slot) in promoted.iter_mut().zip(&self.promoted).take(n) {
            *p = slot.load(Ordering::Relaxed);
        }
        let candidates = self.candidates.load(Ordering::Relaxed);
        let catch_all_limit = self.catch_all_limit.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        (self.seq.load(Ordering::Relaxed) == s1).then_some(PlanCopy {
            seq: s1,
            n,
            promoted,
            candidates,
            catch_all_limit,
        })
    }

    /// Sums every thread's counts for the current epoch.
    pub fn snapshot(&self) -> Counts {
        let mut agg = self.lock_agg();
        // Stable: epochs change only under the lock we hold.
        let seq = self.seq.load(Ordering::Acquire);
        let n = self.n_promoted.load(Ordering::Relaxed);
        while let Some(t) = self.new_tables.pop() {
            agg.tables.push(t);
        }
        if agg.departed_seq != seq {
            agg.departed = Counts::empty(n);
            agg.departed_seq = seq;
        }
        let mut total = Counts::empty(n);
        let Aggregation {
            tables, departed, ..
        } = &mut *agg;
        tables.retain(|t| {
            // Only this vector holds the table: its thread has exited (or
            // never keeps it). The fence pairs with the release decrement
            // of the thread's reference, so its last counts are visible.
            let gone = Arc::strong_count(t) == 1;
            if gone {
                fence(Ordering::Acquire);
            }
            if t.seq.load(Ordering::Acquire) == seq {
                t.add_to(if gone { &mut *departed } else { &mut total });
            }
            !gone
        });
        total.merge(departed);
        total.sort_candidates();
        total
    }

    /// Marks the site dead: from now on its hooks count nothing. The
    /// registry index is freed after a crossbeam-epoch grace period, so no
    /// thread that may still run one of the site's thunks can count into a
    /// new site that reuses the index.
    pub fn retire(self: &Arc<Self>) {
        self.alive.store(false, Ordering::Release);
        let cookie = self.cookie;
        let guard = crossbeam_epoch::pin();
        guard.defer(move || registry::free(cookie));
        guard.flush();
    }

    fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    /// Tables of threads that have counted for this site and still hold
    /// them, plus those not yet folded (for tests and statistics).
    pub fn thread_tables(&self) -> usize {
        let agg = self.lock_agg();
        agg.tables.len() + self.new_tables.len()
    }
}

impl Counts {
    /// Adds `other` (same epoch) into `self`.
    fn merge(&mut self, other: &Counts) {
        self.calls += other.calls;
        for (h, o) in self.hits.iter_mut().zip(&other.hits) {
            *h += o;
        }
        self.misses += other.misses;
        for c in &other.candidates {
            self.add_candidate(c.target, c.count);
        }
        self.catch_all += other.catch_all;
        self.max_thread_candidates = self.max_thread_candidates.max(other.max_thread_candidates);
    }
}

/// A consistent copy of the site's plan, taken by a table's owner.
struct PlanCopy {
    seq: u64,
    n: usize,
    promoted: [u64; MAX_SLOTS],
    candidates: usize,
    catch_all_limit: u64,
}

/// One thread's counters for one site. Written only by its thread.
#[repr(align(128))]
pub(crate) struct ThreadTable {
    site: Arc<SiteCounters>,
    /// The site sequence number these counts belong to (`u64::MAX`: none).
    seq: AtomicU64,
    n_promoted: AtomicUsize,
    promoted: [AtomicU64; MAX_SLOTS],
    candidates_cap: AtomicUsize,
    catch_all_limit: AtomicU64,
    calls: AtomicU64,
    hits: [AtomicU64; MAX_SLOTS],
    misses: AtomicU64,
    cand_target: [AtomicU64; MAX_CANDIDATES],
    cand_count: [AtomicU64; MAX_CANDIDATES],
    /// Space-saving's over-estimate of each entry (the count it inherited).
    cand_error: [AtomicU64; MAX_CANDIDATES],
    catch_all: AtomicU64,
}

impl ThreadTable {
    fn new(site: Arc<SiteCounters>) -> Self {
        ThreadTable {
            site,
            seq: AtomicU64::new(u64::MAX),
            n_promoted: AtomicUsize::new(0),
            promoted: Default::default(),
            candidates_cap: AtomicUsize::new(0),
            catch_all_limit: AtomicU64::new(u64::MAX),
            calls: AtomicU64::new(0),
            hits: Default::default(),
            misses: AtomicU64::new(0),
            cand_target: Default::default(),
            cand_count: Default::default(),
            cand_error: Default::default(),
            catch_all: AtomicU64::new(0),
        }
    }

    /// Makes sure this table counts for the site's current epoch; `false`
    /// if the plan is changing right now (the record is dropped).
    #[inline]
    fn sync(&self) -> bool {
        let site_seq = self.site.seq.load(Ordering::Acquire);
        if site_seq == self.seq.load(Ordering::Relaxed) {
            return true;
        }
        self.restart()
    }

    #[cold]
    fn restart(&self) -> bool {
        let Some(plan) = self.site.read_plan() else {
            return false;
        };
        for c in [&self.calls, &self.misses, &self.catch_all] {
            c.store(0, Ordering::Relaxed);
        }
        // `cand_error` too: an entry's inheritance belongs to its epoch, and
        // a stale one would cut the next epoch's lower bounds down (a
        // profile after a phase change then saw no hot set and bypassed).
        for c in self
            .hits
            .iter()
            .chain(&self.cand_count)
            .chain(&self.cand_target)
            .chain(&self.cand_error)
        {
            c.store(0, Ordering::Relaxed);
        }
        for (slot, &t) in self.promoted.iter().zip(&plan.promoted) {
            slot.store(t, Ordering::Relaxed);
        }
        self.n_promoted.store(plan.n, Ordering::Relaxed);
        self.candidates_cap
            .store(plan.candidates, Ordering::Relaxed);
        self.catch_all_limit
            .store(plan.catch_all_limit, Ordering::Relaxed);
        // Release: a snapshot that sees this epoch sees the zeroed counts.
        self.seq.store(plan.seq, Ordering::Release);
        true
    }

    /// A call seen by a counting thunk's entry hook.
    #[inline]
    fn on_call(&self, target: u64) {
        bump(&self.calls);
        let n = self.n_promoted.load(Ordering::Relaxed);
        for (slot, hits) in self.promoted.iter().zip(&self.hits).take(n) {
            if slot.load(Ordering::Relaxed) == target {
                bump(hits);
                return;
            }
        }
        self.on_miss(target, 1);
    }

    /// `weight` misses to `target` (one, or a sample standing for several):
    /// the target's candidate entry, a free entry, or the catch-all.
    #[inline]
    fn on_miss(&self, target: u64, weight: u64) {
        add(&self.misses, weight);
        let cap = self.candidates_cap.load(Ordering::Relaxed);
        for (t, c) in self.cand_target.iter().zip(&self.cand_count).take(cap) {
            let held = t.load(Ordering::Relaxed);
            if held == target {
                add(c, weight);
                return;
            }
            if held == 0 {
                // Count first: a snapshot that sees the target sees a count.
                c.store(weight, Ordering::Relaxed);
                t.store(target, Ordering::Release);
                return;
            }
        }
        let limit = self.catch_all_limit.load(Ordering::Relaxed);
        if limit == 0 {
            self.replace_minimum(target, cap, weight);
            return;
        }
        let n = self.catch_all.load(Ordering::Relaxed) + weight;
        if n > limit {
            // The seed: the candidates were unlucky or the site is
            // unpredictable; forget them and let new ones in.
            for (t, c) in self.cand_target.iter().zip(&self.cand_count) {
                t.store(0, Ordering::Relaxed);
                c.store(0, Ordering::Relaxed);
            }
            self.catch_all.store(0, Ordering::Relaxed);
        } else {
            self.catch_all.store(n, Ordering::Relaxed);
        }
    }

    /// Space-saving: the least counted candidate gives its entry to
    /// `target`, which inherits its count plus one; the inherited count is
    /// the entry's possible over-estimate.
    fn replace_minimum(&self, target: u64, cap: usize, weight: u64) {
        let Some(k) = (0..cap.min(MAX_CANDIDATES))
            .min_by_key(|&k| self.cand_count[k].load(Ordering::Relaxed))
        else {
            return; // no candidate entries at all
        };
        let min = self.cand_count[k].load(Ordering::Relaxed);
        self.cand_error[k].store(min, Ordering::Relaxed);
        self.cand_count[k].store(min + weight, Ordering::Relaxed);
        self.cand_target[k].store(target, Ordering::Release);
    }

    fn add_to(&self, total: &mut Counts) {
        total.calls += self.calls.load(Ordering::Relaxed);
        for (h, t) in total.hits.iter_mut().zip(&self.hits) {
            *h += t.load(Ordering::Relaxed);
        }
        total.misses += self.misses.load(Ordering::Relaxed);
        let mut mine = 0;
        for k in 0..MAX_CANDIDATES {
            let target = self.cand_target[k].load(Ordering::Acquire);
            if target != 0 {
                let count = self.cand_count[k].load(Ordering::Relaxed);
                mine += count;
                // What the entry certainly counted for this target (its
                // count minus what it inherited under space-saving).
                let error = self.cand_error[k].load(Ordering::Relaxed);
                total.add_candidate(target, count.saturating_sub(error));
            }
        }
        total.catch_all += self.catch_all.load(Ordering::Relaxed);
        total.max_thread_candidates = total.max_thread_candidates.max(mine);
    }
}

#[cfg(test)]
mod tests;
