//! The hooks' way to their thread's table: a thread-local vector indexed by
//! the site's cookie.

use std::cell::{Cell, RefCell};
use std::sync::Arc;

use super::{ThreadTable, registry};

thread_local! {
    /// This thread's table for each site it has counted for, by cookie.
    static TABLES: RefCell<Vec<Option<Arc<ThreadTable>>>> = const { RefCell::new(Vec::new()) };
}

/// Runs `count` on this thread's table for the site with `cookie`.
///
/// Never panics and never blocks on the scheduler (it is called from
/// generated code through `extern "C"`): a thread that is exiting, a
/// re-entrant call, an unknown or dead site or a plan that is being
/// changed simply drop the record.
#[inline]
fn with_table(cookie: u64, count: impl FnOnce(&ThreadTable)) {
    let _ = TABLES.try_with(|tables| {
        let Ok(mut tables) = tables.try_borrow_mut() else {
            return;
        };
        let Some(index) = super::SiteCookie::index_of(cookie) else {
            return;
        };
        if let Some(Some(t)) = tables.get(index)
            && t.site.is_alive()
        {
            if t.sync() {
                count(t);
            }
            return;
        }
        let Some(t) = attach(cookie) else {
            return;
        };
        if tables.len() <= index {
            tables.resize(index + 1, None);
        }
        if t.sync() {
            count(&t);
        }
        tables[index] = Some(t);
    });
}

/// Creates this thread's table for a site and hands it to the site.
#[cold]
fn attach(cookie: u64) -> Option<Arc<ThreadTable>> {
    let site = registry::lookup(cookie)?;
    let table = Arc::new(ThreadTable::new(Arc::clone(&site)));
    site.new_tables.push(Arc::clone(&table));
    Some(table)
}

/// Records a call to `target` at the site with `cookie` (hit or miss): the
/// entry hook of counting thunks.
pub extern "C" fn record_call(cookie: u64, target: u64) {
    with_table(cookie, |t| t.on_call(target));
    clobber_for_tests();
}

/// Records a miss to `target` at the site with `cookie`: the miss-path
/// hook of lean thunks that count every miss.
pub extern "C" fn record_miss(cookie: u64, target: u64) {
    with_table(cookie, |t| t.on_miss(target, 1));
    clobber_for_tests();
}

/// Mean number of misses per recorded sample when misses are sampled.
pub const MISS_SAMPLE_PERIOD: u64 = 16;

thread_local! {
    /// Misses this thread may still skip before the next one is recorded.
    /// Sampling miss stubs decrement it in place (`dec qword ptr fs:[..]`,
    /// see [`sampling_tls_offset`]) and call the recorder when it reaches
    /// zero. Starts at 1: a thread's first miss is recorded.
    static MISS_COUNTDOWN: Cell<u64> = const { Cell::new(1) };
    /// The countdown's value when it was last set: the misses the next
    /// sample stands for.
    static MISS_PERIOD: Cell<u64> = const { Cell::new(1) };
    /// xorshift state for the sampling periods.
    static MISS_RNG: Cell<u64> = const { Cell::new(0x9e37_79b9_7f4a_7c15) };
}

/// Records a sampled miss: it stands for the misses since the previous
/// sample of this thread (the period drawn then), so the counts are
/// unbiased estimates. The next period is drawn uniformly from
/// `1..2*MISS_SAMPLE_PERIOD`, so that sampling cannot lock onto a periodic
/// pattern of calls.
pub extern "C" fn record_sampled_miss(cookie: u64, target: u64) {
    let weight = MISS_PERIOD.with(Cell::get);
    with_table(cookie, |t| t.on_miss(target, weight));
    let mut x = MISS_RNG.with(Cell::get);
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    MISS_RNG.with(|r| r.set(x));
    let period = 1 + x % (2 * MISS_SAMPLE_PERIOD - 1);
    MISS_PERIOD.with(|p| p.set(period));
    MISS_COUNTDOWN.with(|c| c.set(period));
    clobber_for_tests();
}

/// The offset of this thread's miss countdown from the thread pointer (x86-64:
/// the `fs` base), if it is the same on every thread, which holds for
/// variables in the static TLS block of the executable and its initially
/// loaded libraries. `None` if it is not (then misses are not sampled).
pub fn sampling_tls_offset() -> Option<i32> {
    #[cfg(target_arch = "x86_64")]
    {
        fn here() -> Option<i64> {
            let var = MISS_COUNTDOWN.with(|c| c.as_ptr() as i64);
            let tp: i64;
            // SAFETY: on x86-64 Linux the word at fs:0 is the thread
            // pointer itself (the TCB's self pointer, required by the ABI);
            // reading it has no side effects.
            unsafe {
                core::arch::asm!("mov {}, fs:0", out(reg) tp, options(nostack, readonly, preserves_flags));
            }
            var.checked_sub(tp)
        }
        static OFFSET: std::sync::OnceLock<Option<i32>> = std::sync::OnceLock::new();
        *OFFSET.get_or_init(|| {
            let mine = here()?;
            let other = std::thread::spawn(here).join().ok()??;
            (mine == other).then(|| i32::try_from(mine).ok()).flatten()
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
}

/// In this crate's tests, the recorders overwrite every register a C
/// function may clobber, so that the bridge test sees any register the
/// bridge forgets to save (the recorders alone happen to leave most of
/// them untouched).
#[inline(always)]
fn clobber_for_tests() {
    #[cfg(all(test, target_arch = "x86_64"))]
    // SAFETY: writes only registers declared clobbered by `clobber_abi`.
    unsafe {
        core::arch::asm!(
            "mov rax, -1",
            "mov rcx, -1",
            "mov rdx, -1",
            "mov rsi, -1",
            "mov rdi, -1",
            "mov r8, -1",
            "mov r9, -1",
            "mov r10, -1",
            "mov r11, -1",
            "pcmpeqd xmm0, xmm0",
            "pcmpeqd xmm1, xmm1",
            "pcmpeqd xmm2, xmm2",
            "pcmpeqd xmm3, xmm3",
            "pcmpeqd xmm4, xmm4",
            "pcmpeqd xmm5, xmm5",
            "pcmpeqd xmm6, xmm6",
            "pcmpeqd xmm7, xmm7",
            "pcmpeqd xmm8, xmm8",
            "pcmpeqd xmm9, xmm9",
            "pcmpeqd xmm10, xmm10",
            "pcmpeqd xmm11, xmm11",
            "pcmpeqd xmm12, xmm12",
            "pcmpeqd xmm13, xmm13",
            "pcmpeqd xmm14, xmm14",
            "pcmpeqd xmm15, xmm15",
            clobber_abi("C"),
            options(nostack, nomem),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::{CounterConfig, SiteCounters};

    /// What a sampling miss stub does, in Rust: decrement the countdown and
    /// record when it reaches zero. The weights of the samples add up to
    /// exactly the misses up to the last sample.
    #[test]
    fn sampled_weights_add_up_to_the_misses_between_samples() {
        let config = CounterConfig::default();
        let site = SiteCounters::new(config);
        site.begin_epoch(&[], config);
        let cookie = site.cookie().value();
        let mut at_last_sample = 0u64;
        let mut samples = 0;
        for miss in 1..=100_000u64 {
            let left = MISS_COUNTDOWN.with(|c| {
                c.set(c.get() - 1);
                c.get()
            });
            if left == 0 {
                record_sampled_miss(cookie, 0x1000 + miss % 3);
                at_last_sample = miss;
                samples += 1;
            }
        }
        let c = site.snapshot();
        assert_eq!(c.misses, at_last_sample);
        let per_sample = at_last_sample as f64 / samples as f64;
        assert!(
            (per_sample - MISS_SAMPLE_PERIOD as f64).abs() < 1.0,
            "mean period {per_sample}"
        );
        // Three targets in turn: each gets about a third.
        for t in 0x1000..0x1003 {
            let share = c.candidate(t) as f64 / c.misses as f64;
            assert!((share - 1.0 / 3.0).abs() < 0.03, "{t:#x}: {share}");
        }
    }

    #[test]
    fn the_countdown_has_one_offset_from_the_thread_pointer() {
        #[cfg(target_arch = "x86_64")]
        assert!(
            sampling_tls_offset().is_some(),
            "a test binary's thread-locals are in the static TLS block"
        );
    }
}
