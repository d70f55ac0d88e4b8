//! Threads calling through one site while another thread republishes it
//! tens of thousands of times: no wrong result, no crash, and code memory
//! bounded by a constant rather than by the number of publishes.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hotcall::{Engine, EngineConfig, collect_garbage};

type Callback = extern "C" fn(u64) -> u64;

/// Slow enough (a few hundred ns) that callers are often inside a thunk,
/// i.e. inside the target the thunk called, when it is replaced.
fn slow(x: u64, k: u64) -> u64 {
    let mut acc = x;
    for i in 0..64 {
        acc = black_box(acc.rotate_left(5) ^ (i + k));
    }
    acc.wrapping_mul(k)
}

extern "C" fn t0(x: u64) -> u64 {
    slow(x, 11)
}
extern "C" fn t1(x: u64) -> u64 {
    slow(x, 13)
}
extern "C" fn t2(x: u64) -> u64 {
    slow(x, 17)
}
extern "C" fn t3(x: u64) -> u64 {
    slow(x, 19)
}

const TARGETS: [Callback; 4] = [t0, t1, t2, t3];
const PUBLISHES: u64 = 10_000;
const CALLERS: usize = 2;

#[test]
fn callers_survive_republishing() {
    republish_under_load(EngineConfig::default());
}

/// The same with `membarrier(SYNC_CORE)` after every write (the aarch64
/// default, optional on x86-64).
#[test]
fn callers_survive_republishing_with_core_serialization() {
    republish_under_load(EngineConfig {
        serialize_cores: true,
        ..Default::default()
    });
}

fn republish_under_load(config: EngineConfig) {
    let engine = Engine::with_config(config);
    let site = engine.named_site::<Callback>("stress");
    let stop = AtomicBool::new(false);
    let calls = AtomicU64::new(0);
    let wrong = AtomicU64::new(0);
    let mut peak_live = 0usize;
    let mut peak_bytes = 0usize;
    let mut published = 0u64;

    std::thread::scope(|s| {
        for id in 0..CALLERS {
            let (site, stop, calls, wrong) = (&site, &stop, &calls, &wrong);
            let engine = engine.clone();
            s.spawn(move || {
                let mut pinned = engine.pin();
                let mut x = id as u64 + 1;
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let f = TARGETS[(x % 4) as usize];
                    let got = site.call(&pinned, f, (x,));
                    if got != f(x) {
                        wrong.fetch_add(1, Ordering::Relaxed);
                    }
                    x = got | 1;
                    n += 1;
                    if n.is_multiple_of(64) {
                        pinned.quiesce();
                    }
                }
                calls.fetch_add(n, Ordering::Relaxed);
            });
        }

        let started = Instant::now();
        // Rotate through slot counts 0..=4 and orders, with an occasional
        // demotion to a plain indirect call.
        while published < PUBLISHES {
            let i = published as usize;
            if i.is_multiple_of(97) {
                site.demote();
            }
            let n = i % 5;
            let set: Vec<Callback> = (0..n).map(|k| TARGETS[(i + k) % 4]).collect();
            site.promote(&set).expect("promote");
            published += 1;
            let st = engine.stats().code;
            peak_live = peak_live.max(st.live);
            peak_bytes = peak_bytes.max(st.in_use);
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "republishing too slow"
            );
        }
        stop.store(true, Ordering::Relaxed);
    });

    let calls = calls.load(Ordering::Relaxed);
    let wrong = wrong.load(Ordering::Relaxed);
    eprintln!(
        "{published} publishes, {calls} calls, {wrong} wrong, peak {peak_live} live thunks / {peak_bytes} bytes"
    );
    assert_eq!(wrong, 0, "wrong results under republishing");
    assert!(
        calls > 10_000,
        "callers made too few calls ({calls}) to mean anything"
    );
    // Retired thunks wait for a grace period, so a few hundred may be in
    // flight; what must not happen is growth with the publish count.
    assert!(
        peak_live <= 1024,
        "code memory grew with publishes: {peak_live} live thunks"
    );
    drop(site);
    // Reclamation needs every pinned thread of the process to move on,
    // including those of tests running in parallel: wait by time, not by a
    // count of rounds.
    let deadline = Instant::now() + Duration::from_secs(30);
    while engine.stats().code.live > 0 && Instant::now() < deadline {
        collect_garbage();
        std::thread::sleep(Duration::from_millis(1));
    }
    let st = engine.stats().code;
    assert_eq!(st.live, 0, "every thunk is freed in the end: {st:?}");
    assert_eq!(st.in_use, 0);
}
