//! Shared by the learning tests that drive a site under load
//! (`tests/patch_learning.rs`, `tests/static_learning.rs`): sixteen
//! `(u64) -> u64` targets with different results, and callers that make a
//! phase-shifting mix of calls while the test thread drives learning.
//!
//! Included with `#[path]` (not through `common/mod.rs`, whose case list
//! these tests do not use); each includer uses part of it.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use hotcall::{Engine, Pinned};

pub type Callback = extern "C" fn(u64) -> u64;

macro_rules! targets {
    ($($name:ident = $k:expr),*) => {
        $(pub extern "C" fn $name(x: u64) -> u64 {
            x.wrapping_mul($k).rotate_left($k as u32 % 64) ^ $k
        })*
        pub const TARGETS: &[Callback] = &[$($name),*];
    };
}
targets!(
    t0 = 3,
    t1 = 5,
    t2 = 7,
    t3 = 11,
    t4 = 13,
    t5 = 17,
    t6 = 19,
    t7 = 23,
    t8 = 29,
    t9 = 31,
    t10 = 37,
    t11 = 41,
    t12 = 43,
    t13 = 47,
    t14 = 53,
    t15 = 59
);

pub fn addr(f: Callback) -> usize {
    f as *const () as usize
}

/// What the callers of [`under_load`] did.
pub struct Load {
    pub calls: u64,
    pub wrong: u64,
}

/// Runs `callers` threads that call `call(pinned, f, x)` in a loop and
/// check each result against `f(x)`, while `drive` runs on this thread;
/// stops them when `drive` returns. In phase `p` (`drive` advances it), 60%
/// of the calls go to `TARGETS[2p]`, 30% to `TARGETS[2p + 1]`, the rest
/// anywhere. Callers unpin every 32 calls, or no grace period would ever
/// end.
pub fn under_load(
    engine: &Engine,
    callers: usize,
    call: impl Fn(&Pinned, Callback, u64) -> u64 + Sync,
    drive: impl FnOnce(&AtomicU64),
) -> Load {
    let stop = AtomicBool::new(false);
    let phase = AtomicU64::new(0);
    let calls = AtomicU64::new(0);
    let wrong = AtomicU64::new(0);
    std::thread::scope(|s| {
        for id in 0..callers {
            let (stop, phase, calls, wrong, call) = (&stop, &phase, &calls, &wrong, &call);
            let engine = engine.clone();
            s.spawn(move || {
                let mut pinned = engine.pin();
                let mut x = id as u64 + 1;
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let p = phase.load(Ordering::Relaxed) as usize;
                    let k = match x % 10 {
                        0..=5 => 2 * p,
                        6..=8 => 2 * p + 1,
                        _ => (x >> 8) as usize,
                    } % TARGETS.len();
                    let f = TARGETS[k];
                    let got = call(&pinned, f, x);
                    if got != f(x) {
                        wrong.fetch_add(1, Ordering::Relaxed);
                    }
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(got | 1);
                    n += 1;
                    if n.is_multiple_of(32) {
                        pinned.quiesce();
                    }
                }
                calls.fetch_add(n, Ordering::Relaxed);
            });
        }
        drive(&phase);
        stop.store(true, Ordering::Relaxed);
    });
    Load {
        calls: calls.into_inner(),
        wrong: wrong.into_inner(),
    }
}
