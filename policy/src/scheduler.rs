//! When sites learn: a background thread, or `tick()` by hand.
//!
//! Each tick visits every live site once, in a rotating order, and lets it
//! take one learning step (aggregate, decide, install). Compiling is the
//! expensive part, so a tick builds at most `budget` thunks; sites not
//! reached are visited first on the next tick. All of this runs on the
//! scheduler's thread (or the caller of `tick`), never on a call path:
//! callers keep calling whatever is published meanwhile.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use crate::learner::Step;

/// A site the scheduler drives.
pub trait Learning: Send + Sync {
    /// One learning step at `tick`.
    fn learn(&self, tick: u64) -> Step;
}

/// How an engine schedules learning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScheduleConfig {
    /// Period of the background thread; `None`: no thread, the host calls
    /// `tick()` itself. Default 20 ms: a phase change is acted on within
    /// about two periods, and an idle engine wakes 50 times a second.
    pub period: Option<Duration>,
    /// Most thunks compiled per tick (default 32). With templates a build is
    /// a few microseconds, a fresh Cranelift compile about 25-60 µs, so a
    /// tick stays around a millisecond or two even at the limit.
    pub budget: usize,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            period: Some(Duration::from_millis(20)),
            budget: 32,
        }
    }
}

impl ScheduleConfig {
    /// No background thread: learning happens only in `tick()`.
    pub fn manual() -> Self {
        ScheduleConfig {
            period: None,
            ..Default::default()
        }
    }
}

/// What one tick did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct TickReport {
    pub tick: u64,
    /// Sites visited.
    pub visited: usize,
    /// Sites left for the next tick because the budget ran out.
    pub deferred: usize,
    pub installs: usize,
    pub compiles: usize,
    pub resets: usize,
    pub failures: usize,
    pub elapsed_ns: u64,
}

/// Counters over the scheduler's life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct SchedulerStats {
    pub ticks: u64,
    pub sites: usize,
    pub compiles: u64,
    pub failures: u64,
    /// Ticks whose site steps panicked (caught; the scheduler goes on).
    pub panics: u64,
    pub last_tick: TickReport,
    pub background: bool,
}

struct Registry {
    sites: Vec<Weak<dyn Learning>>,
    cursor: usize,
}

/// Drives the learning of an engine's sites.
pub struct Scheduler {
    config: ScheduleConfig,
    registry: Mutex<Registry>,
    /// Serializes ticks (background and manual).
    ticking: Mutex<SchedulerStats>,
    ticks: AtomicU64,
    stopping: AtomicBool,
    thread: Mutex<Option<Thread>>,
}

impl Scheduler {
    /// A scheduler; with a period, its background thread starts now.
    pub fn new(config: ScheduleConfig) -> Arc<Self> {
        let scheduler = Arc::new(Scheduler {
            config,
            registry: Mutex::new(Registry {
                sites: Vec::new(),
                cursor: 0,
            }),
            ticking: Mutex::new(SchedulerStats::default()),
            ticks: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            thread: Mutex::new(None),
        });
        if let Some(period) = config.period {
            let weak = Arc::downgrade(&scheduler);
            let spawned = thread::Builder::new()
                .name("hotcall-scheduler".into())
                .spawn(move || background(weak, period));
            // Without a thread the engine still works; ticks are manual.
            if let Ok(handle) = spawned {
                *lock(&scheduler.thread) = Some(handle.thread().clone());
                lock(&scheduler.ticking).background = true;
            }
        }
        scheduler
    }

    pub fn config(&self) -> &ScheduleConfig {
        &self.config
    }

    /// Adds a site; it is visited from the next tick on, and forgotten once
    /// dropped.
    pub fn register(&self, site: Weak<dyn Learning>) {
        lock(&self.registry).sites.push(site);
    }

    /// Ticks done so far (a new site's plan takes effect at this tick).
    pub fn current_tick(&self) -> u64 {
        self.ticks.load(Ordering::Acquire)
    }

    /// One round, synchronously.
    pub fn tick(&self) -> TickReport {
        let mut stats = lock(&self.ticking);
        let start = Instant::now();
        let tick = self.ticks.load(Ordering::Relaxed) + 1;
        let (sites, cursor) = {
            let mut reg = lock(&self.registry);
            reg.sites.retain(|s| s.strong_count() > 0);
            let n = reg.sites.len();
            (reg.sites.clone(), if n == 0 { 0 } else { reg.cursor % n })
        };
        let n = sites.len();
        let mut report = TickReport {
            tick,
            ..Default::default()
        };
        let mut next_cursor = cursor;
        for i in 0..n {
            if report.compiles >= self.config.budget {
                report.deferred = n - i;
                next_cursor = (cursor + i) % n;
                break;
            }
            let Some(site) = sites[(cursor + i) % n].upgrade() else {
                continue;
            };
            report.visited += 1;
            match catch_unwind(AssertUnwindSafe(|| site.learn(tick))) {
                Ok(Step::Kept) => {}
                Ok(Step::Reset) => report.resets += 1,
                Ok(Step::Installed { compiled }) => {
                    report.installs += 1;
                    report.compiles += usize::from(compiled);
                }
                Ok(Step::Failed) => report.failures += 1,
                Err(_) => stats.panics += 1,
            }
        }
        lock(&self.registry).cursor = next_cursor;
        report.elapsed_ns = start.elapsed().as_nanos() as u64;
        stats.ticks = tick;
        stats.sites = n;
        stats.compiles += report.compiles as u64;
        stats.failures += report.failures as u64;
        stats.last_tick = report;
        self.ticks.store(tick, Ordering::Release);
        report
    }

    pub fn stats(&self) -> SchedulerStats {
        *lock(&self.ticking)
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::Release);
        if let Some(t) = lock(&self.thread).take() {
            t.unpark();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update under these locks leaves the state consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The background thread: a tick per period until the scheduler is gone.
/// It holds the scheduler only during a tick, so dropping the engine ends
/// it at its next wake-up.
fn background(scheduler: Weak<Scheduler>, period: Duration) {
    loop {
        // Parking may wake early (spuriously, or on drop): sleep out the
        // period unless the scheduler is going away.
        let deadline = Instant::now() + period;
        loop {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            thread::park_timeout(deadline - now);
            match scheduler.upgrade() {
                Some(s) if !s.stopping.load(Ordering::Acquire) => {}
                _ => return,
            }
        }
        let Some(s) = scheduler.upgrade() else {
            return;
        };
        if s.stopping.load(Ordering::Acquire) {
            return;
        }
        s.tick();
    }
}
