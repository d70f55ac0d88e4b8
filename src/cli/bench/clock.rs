//! Which clock times a sample.
//!
//! On a shared machine a sample's wall time includes the time the thread
//! spent descheduled while other processes ran: with the load average
//! above the core count, samples split into two modes a factor of two
//! apart, and medians jump between them. The thread's CPU time
//! (`CLOCK_THREAD_CPUTIME_ID`) counts only time on a core, so it is the
//! default. It still includes what sharing a core costs while running
//! (caches, a busy hyperthread sibling); `--clock wall` gives wall time.

use std::time::{Duration, Instant};

use clap::ValueEnum;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Clock {
    /// CPU time of the calling thread.
    Cpu,
    /// Elapsed time.
    Wall,
}

impl Clock {
    pub fn name(self) -> &'static str {
        match self {
            Clock::Cpu => "cpu",
            Clock::Wall => "wall",
        }
    }
}

/// Both clocks, started together.
pub struct Stopwatch {
    wall: Instant,
    cpu: Duration,
}

/// Both clocks' readings of one interval.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Elapsed {
    pub cpu: Duration,
    pub wall: Duration,
}

impl std::ops::AddAssign for Elapsed {
    fn add_assign(&mut self, other: Elapsed) {
        self.cpu += other.cpu;
        self.wall += other.wall;
    }
}

impl Elapsed {
    /// `self - other`, clamped at zero.
    pub fn minus(self, other: Elapsed) -> Elapsed {
        Elapsed {
            cpu: self.cpu.saturating_sub(other.cpu),
            wall: self.wall.saturating_sub(other.wall),
        }
    }
}

impl Stopwatch {
    pub fn start() -> Self {
        Stopwatch {
            cpu: thread_cpu_time(),
            wall: Instant::now(),
        }
    }

    pub fn elapsed(&self) -> Elapsed {
        let wall = self.wall.elapsed();
        Elapsed {
            cpu: thread_cpu_time().saturating_sub(self.cpu),
            wall,
        }
    }
}

/// CPU time consumed by the calling thread (nanosecond resolution on
/// Linux). Read through libc rather than rustix: rustix reads clocks via
/// the vDSO, which valgrind does not map (see `--count`).
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the
    // call, and CLOCK_THREAD_CPUTIME_ID is a clock every Linux supports.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sleeping takes wall time but no CPU time; spinning takes both.
    #[test]
    fn cpu_time_excludes_sleep_and_counts_work() {
        let sw = Stopwatch::start();
        std::thread::sleep(Duration::from_millis(30));
        let slept = sw.elapsed();
        assert!(slept.wall >= Duration::from_millis(30), "{slept:?}");
        assert!(slept.cpu < Duration::from_millis(15), "{slept:?}");
        let sw = Stopwatch::start();
        let mut x = 1u64;
        while sw.wall.elapsed() < Duration::from_millis(30) {
            x = std::hint::black_box(x.wrapping_mul(3));
        }
        let spun = sw.elapsed();
        assert!(
            spun.cpu > Duration::ZERO && spun.cpu <= spun.wall + Duration::from_millis(1),
            "{spun:?}"
        );
    }
}
