//! The Patch strategy under fire: threads calling through one Patch site
//! while another thread retargets it at least 100,000 times among targets
//! that return different results. A torn slot (a compare that says A with a
//! branch that goes to B) would return B's result for A: zero wrong
//! results, no crash.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hotcall::{Engine, EngineConfig};

type Callback = extern "C" fn(u64) -> u64;

macro_rules! targets {
    ($($name:ident = $k:expr),*) => {
        $(extern "C" fn $name(x: u64) -> u64 {
            x.wrapping_mul($k).rotate_left($k as u32 % 64) ^ $k
        })*
        const TARGETS: &[Callback] = &[$($name),*];
    };
}
targets!(t0 = 3, t1 = 5, t2 = 7, t3 = 11, t4 = 13, t5 = 17);

const RETARGETS: u64 = 100_000;
const CALLERS: usize = 2;
const SLOTS: usize = 3;

#[test]
fn callers_survive_100k_retargets() {
    retarget_under_load(EngineConfig::default());
}

#[test]
fn callers_survive_100k_retargets_hardened() {
    retarget_under_load(EngineConfig {
        hardened: true,
        ..Default::default()
    });
}

fn retarget_under_load(config: EngineConfig) {
    let engine = Engine::with_config(config);
    let site = engine
        .named_patch_site::<Callback>("stress", SLOTS)
        .expect("patch site");
    let stop = AtomicBool::new(false);
    let calls = AtomicU64::new(0);
    let wrong = AtomicU64::new(0);
    let mut enabled_now = 0u64;
    let mut waited = 0u64;
    let mut wait_times: Vec<Duration> = Vec::new();

    std::thread::scope(|s| {
        for id in 0..CALLERS {
            let (site, stop, calls, wrong) = (&site, &stop, &calls, &wrong);
            let engine = engine.clone();
            s.spawn(move || {
                let mut pinned = engine.pin();
                let mut x = id as u64 + 1;
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let f = TARGETS[(x % TARGETS.len() as u64) as usize];
                    let got = site.call(&pinned, f, (x,));
                    if got != f(x) {
                        wrong.fetch_add(1, Ordering::Relaxed);
                    }
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(got | 1);
                    n += 1;
                    // Callers unpin now and then, or no grace period would
                    // ever end.
                    if n.is_multiple_of(32) {
                        pinned.quiesce();
                    }
                }
                calls.fetch_add(n, Ordering::Relaxed);
            });
        }

        let started = Instant::now();
        for i in 0..RETARGETS {
            // 0 to 3 distinct targets, in rotating order.
            let n = (i % (SLOTS as u64 + 1)) as usize;
            let set: Vec<Callback> = (0..n)
                .map(|k| TARGETS[(i as usize * 7 + k) % TARGETS.len()])
                .collect();
            let report = site.retarget(&set).expect("retarget");
            enabled_now += report.enabled_now as u64;
            // Every 64th retarget (one of three targets) waits for
            // completion, so branches really get patched under the callers'
            // feet; others poll now and then, completing what is due.
            if i % 64 == 63 {
                assert!(site.is_pending() || report.pending == 0);
                let start = Instant::now();
                waited += u64::from(site.wait(Duration::from_secs(10)));
                wait_times.push(start.elapsed());
            } else if i % 4 == 2 {
                site.poll();
            }
            assert!(
                started.elapsed() < Duration::from_secs(300),
                "retargeting too slow: {i} in {:?}",
                started.elapsed()
            );
        }
        stop.store(true, Ordering::Relaxed);
    });

    let calls = calls.load(Ordering::Relaxed);
    let wrong = wrong.load(Ordering::Relaxed);
    wait_times.sort();
    eprintln!(
        "retarget to effect under load (wait after a retarget): median {:?}, p90 {:?}, max {:?}",
        wait_times[wait_times.len() / 2],
        wait_times[wait_times.len() * 9 / 10],
        wait_times[wait_times.len() - 1]
    );
    let stats = site.stats();
    eprintln!(
        "{RETARGETS} retargets ({} effective), {} completions, {} branch patches, {enabled_now} immediate enables, {waited} waits; {calls} calls, {wrong} wrong; serialized: {}",
        stats.retargets, stats.completions, stats.patches, stats.serialized
    );
    assert_eq!(wrong, 0, "wrong results while retargeting");
    assert!(calls > 100_000, "callers made too few calls ({calls})");
    assert!(
        stats.patches >= 1_000,
        "too few branch patches ({}) to mean anything",
        stats.patches
    );
    assert_eq!(waited, RETARGETS / 64, "every wait completed");
}
