//! Interleaved timing for the benches' summaries: every round runs every
//! variant once, in a new pseudo-random order, so machine drift (other
//! load, frequency) hits all variants alike; each variant's median round
//! is reported. Ratios of these medians are the numbers to quote.

use std::hint::black_box;
use std::time::Instant;

/// A variant: makes `calls` dependent calls and returns the last result.
pub type Run<'a> = Box<dyn Fn(u64) -> u64 + 'a>;

/// Which clock times a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(dead_code)] // each bench uses the clocks it needs
pub enum Clock {
    /// Elapsed time.
    Wall,
    /// The calling thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`): time the
    /// thread spends descheduled (other load on this shared machine) does
    /// not count.
    ThreadCpu,
}

impl Clock {
    fn now_ns(self) -> f64 {
        match self {
            Clock::Wall => {
                static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
                START.get_or_init(Instant::now).elapsed().as_secs_f64() * 1e9
            }
            Clock::ThreadCpu => {
                let mut ts = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                // SAFETY: `ts` is a valid, writable timespec, and
                // CLOCK_THREAD_CPUTIME_ID exists on every Linux.
                let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
                assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
                ts.tv_sec as f64 * 1e9 + ts.tv_nsec as f64
            }
        }
    }
}

/// The median ns per call of each variant over `rounds` rounds of `reps`
/// runs of `calls` calls, after one unrecorded warm-up round, by wall time.
pub fn medians(variants: &[(&str, Run<'_>)], rounds: usize, calls: u64, reps: u64) -> Vec<f64> {
    medians_by(Clock::Wall, variants, rounds, calls, reps)
}

/// [`medians`] by `clock`.
pub fn medians_by(
    clock: Clock,
    variants: &[(&str, Run<'_>)],
    rounds: usize,
    calls: u64,
    reps: u64,
) -> Vec<f64> {
    let mut ns: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); variants.len()];
    let mut order: Vec<usize> = (0..variants.len()).collect();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for (_, run) in variants {
        black_box(run(calls));
    }
    for _ in 0..rounds {
        for i in (1..order.len()).rev() {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            order.swap(i, (seed >> 33) as usize % (i + 1));
        }
        for &i in &order {
            let start = clock.now_ns();
            for _ in 0..reps {
                black_box(variants[i].1(black_box(calls)));
            }
            ns[i].push((clock.now_ns() - start) / (calls * reps) as f64);
        }
    }
    ns.into_iter()
        .map(|mut v| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        })
        .collect()
}

/// The padding before each copy of a loop in a layout sweep, in bytes:
/// four copies of the same loop at other addresses (LLVM still aligns the
/// loop header, so the copies' offsets within a 64-byte block are not
/// simply these; the disassembly shows where each loop landed).
#[allow(dead_code)] // each bench uses the helpers it needs
pub const PADS: [usize; 4] = [0, 16, 32, 48];

/// A loop of `n` dependent calls, for [`padded`]. Implementations mark
/// `run` `#[inline(always)]`, so that the loop is laid out inside each
/// `padded` copy rather than shared by all of them.
#[allow(dead_code)]
pub trait Body: Clone {
    fn run(&self, n: u64) -> u64;
}

/// Runs `body` (a loop of `n` calls) inlined into a function of its own,
/// after `PAD` bytes of `nop`s: the same loop at another offset within a
/// 64-byte block. On this machine the cost of a 4-cycle call loop moves by
/// a whole cycle with the loop's placement, which decides ratios of 1.00x
/// against 1.25x between builds; running each variant at every placement
/// shows that spread instead of one build's draw.
#[allow(dead_code)]
#[inline(never)]
pub fn padded<const PAD: usize, B: Body>(body: &B, n: u64) -> u64 {
    // SAFETY: `PAD` bytes of `nop`s, run once per call: no memory, stack
    // or flags touched.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        std::arch::asm!(".skip {pad}, 0x90", pad = const PAD, options(nomem, nostack, preserves_flags));
    }
    // SAFETY: as above, in 4-byte `nop`s.
    #[cfg(target_arch = "aarch64")]
    unsafe {
        std::arch::asm!(".rept {n}", "nop", ".endr", n = const PAD / 4, options(nomem, nostack, preserves_flags));
    }
    body.run(n)
}

/// A plain indirect call loop through `self.0` (hidden from the optimizer),
/// each result the next call's argument: the baseline of the sweeps.
#[allow(dead_code)]
#[derive(Clone)]
pub struct IndirectLoop(pub extern "C" fn(u64) -> u64);

impl Body for IndirectLoop {
    #[inline(always)]
    fn run(&self, n: u64) -> u64 {
        let f = black_box(self.0);
        let mut x = 1u64;
        for _ in 0..n {
            x = f(x);
        }
        x
    }
}

/// `body` at each of [`PADS`], as variants named `"{name} @+{pad}"`.
#[allow(dead_code)]
pub fn at_every_pad<'a, B: Body + 'a>(name: &str, body: B) -> Vec<(String, Run<'a>)> {
    let runs: [Run<'a>; 4] = [
        {
            let b = body.clone();
            Box::new(move |n| padded::<0, B>(&b, n))
        },
        {
            let b = body.clone();
            Box::new(move |n| padded::<16, B>(&b, n))
        },
        {
            let b = body.clone();
            Box::new(move |n| padded::<32, B>(&b, n))
        },
        Box::new(move |n| padded::<48, B>(&body, n)),
    ];
    PADS.iter()
        .zip(runs)
        .map(|(pad, run)| (format!("{name} @+{pad}"), run))
        .collect()
}

/// The medians of a sweep's variants ([`at_every_pad`]'s), 31 interleaved
/// rounds of one run of 100,000 calls each.
#[allow(dead_code)]
pub fn sweep_medians(variants: &[(String, Run<'_>)]) -> Vec<f64> {
    let named: Vec<(&str, Run<'_>)> = variants
        .iter()
        .map(|(name, run)| (name.as_str(), Box::new(run) as Run<'_>))
        .collect();
    medians(&named, 31, 100_000, 1)
}
