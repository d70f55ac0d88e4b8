//! Grace periods: crossbeam-epoch's deferred closures, the only place the
//! publication protocols call crossbeam to wait for pinned threads.

use std::sync::Arc;

use crate::sync::{AtomicBool, Ordering};

/// Runs `f` once every thread that is pinned now has unpinned, on
/// whichever thread collects (keep it cheap and non-blocking: crossbeam may
/// run it on a caller's hot path).
pub(super) fn after_grace_period(f: impl FnOnce() + Send + 'static) {
    let guard = crossbeam_epoch::pin();
    guard.defer(f);
    // Hand the deferred closure to the global queue now: left in this
    // thread's bag it would wait for this thread's 64th deferral or its
    // exit.
    guard.flush();
}

/// Helps the epoch advance and runs the deferred closures (frees, grace
/// period flags) whose grace period has passed. A publisher that polls a
/// [`GracePeriod`] calls it first; nothing else needs to.
pub fn collect() {
    crossbeam_epoch::pin().flush();
}

/// A grace period in progress: [`GracePeriod::has_passed`] becomes true
/// once every thread that was pinned when [`GracePeriod::start`] ran has
/// unpinned. A thread that pins later reads every store the starter made
/// before `start` (the pin's `SeqCst` fence orders it after the starter's
/// pin).
///
/// Cheap to clone; clones share the period.
#[derive(Clone, Debug)]
pub struct GracePeriod {
    passed: Arc<AtomicBool>,
}

impl GracePeriod {
    /// Starts a grace period now. Never waits: the period passes in the
    /// background, as pinned threads unpin and collection runs
    /// ([`collect`], or any thread's pin).
    pub fn start() -> Self {
        let passed = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&passed);
        // One store: crossbeam may run this on a caller's hot path.
        after_grace_period(move || flag.store(true, Ordering::Release));
        GracePeriod { passed }
    }

    /// Whether every thread pinned at the start has unpinned. `true` is
    /// final. Acquire: pairs with the deferred closure's Release store, so
    /// once this returns true everything those threads did while pinned
    /// happened before.
    pub fn has_passed(&self) -> bool {
        self.passed.load(Ordering::Acquire)
    }
}
