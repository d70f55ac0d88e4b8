//! A static entry that follows a learning JIT site (`StaticSite::use_jit`):
//! the stub goes to every thunk the site publishes (profiling, promoted)
//! and to the miss stub in a bypass; calls through the stub are counted and
//! correct, also while other threads call and the scheduler republishes
//! (freed code is poisoned, so a caller left in a freed thunk would crash
//! the test).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hotcall::{
    Counting, Engine, EngineConfig, PolicyState, ScheduleConfig, SiteMode, StaticMode, static_site,
};

type Callback = extern "C" fn(u64) -> u64;

macro_rules! targets {
    ($($name:ident = $k:expr),*) => {
        $(extern "C" fn $name(x: u64) -> u64 {
            x.wrapping_mul($k).rotate_left($k as u32 % 64) ^ $k
        })*
        const TARGETS: &[Callback] = &[$($name),*];
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

fn addr(f: Callback) -> usize {
    f as *const () as usize
}

static_site! {
    static FOLLOWS: extern "C" fn(u64) -> u64;
}

#[test]
fn a_static_entry_follows_its_learning_jit_site() {
    static ENGINE: std::sync::OnceLock<Engine> = std::sync::OnceLock::new();
    let engine = ENGINE.get_or_init(|| Engine::with_config(EngineConfig::manual()));
    let calls = |f: Callback, n: u64| {
        let pinned = engine.pin();
        for x in 0..n {
            assert_eq!(FOLLOWS.call(&pinned, f, (x,)), f(x));
        }
    };
    let site_stats = || match FOLLOWS.stats().mode {
        StaticMode::Learning(s) => *s,
        other => panic!("not learning: {other:?}"),
    };

    FOLLOWS.use_jit(engine).unwrap();
    let s = site_stats();
    assert_eq!(s.counting, Counting::All, "{s}");
    assert_eq!(
        Some(FOLLOWS.jumps_to().unwrap()),
        s.entry,
        "the profiling thunk"
    );

    calls(t14, 2000);
    assert_eq!(site_stats().calls, 2000, "counted through the stub");
    engine.tick();
    let s = site_stats();
    assert_eq!(s.state, PolicyState::Promoted, "{s}");
    assert_eq!(s.slots[0].target, addr(t14), "{s}");
    assert_eq!(
        Some(FOLLOWS.jumps_to().unwrap()),
        s.entry,
        "the promoted thunk"
    );
    calls(t14, 1000);
    calls(t3, 10);

    // Megamorphic: the site goes to a bypass, the stub to the miss stub.
    let mut bypassed = false;
    for round in 0..6 {
        let pinned = engine.pin();
        for x in 0..4000u64 {
            let f = TARGETS[(x as usize * 7 + round) % TARGETS.len()];
            assert_eq!(FOLLOWS.call(&pinned, f, (x,)), f(x));
        }
        drop(pinned);
        engine.tick();
        let s = site_stats();
        if matches!(s.state, PolicyState::Bypass { .. }) {
            assert_eq!(s.mode, SiteMode::PlainIndirect, "{s}");
            assert_eq!(s.entry, None);
            bypassed = true;
            break;
        }
    }
    assert!(bypassed, "never bypassed: {}", site_stats());
    let previous = site_stats();
    let miss_stub = FOLLOWS.jumps_to().unwrap();
    assert!(
        previous.slots.is_empty() && miss_stub != 0,
        "the stub goes somewhere, and not to a thunk: {previous}"
    );
    calls(t5, 100);

    // Promoting by hand ends the learning: ticks no longer move the stub.
    let report = FOLLOWS.promote(engine, &[t15]).unwrap();
    assert_eq!(FOLLOWS.jumps_to().unwrap(), report.entry);
    assert!(matches!(FOLLOWS.stats().mode, StaticMode::Jit { .. }));
    for _ in 0..3 {
        engine.tick();
    }
    assert_eq!(FOLLOWS.jumps_to().unwrap(), report.entry);
    calls(t15, 100);
    calls(t0, 100);
}

// ------------------------------------------------------------ under load

static_site! {
    static UNDER_LOAD: extern "C" fn(u64) -> u64;
}

const CALLERS: usize = 2;
const RUN: Duration = Duration::from_secs(2);
/// Ticks per phase: each phase has its own two hot targets.
const PHASE_TICKS: u64 = 10;

#[test]
fn callers_through_the_stub_survive_learning_and_republishes() {
    let engine = Engine::with_config(EngineConfig {
        schedule: ScheduleConfig::manual(),
        ..Default::default()
    });
    UNDER_LOAD.use_jit(&engine).unwrap();
    let stop = AtomicBool::new(false);
    let phase = AtomicU64::new(0);
    let calls = AtomicU64::new(0);
    let wrong = AtomicU64::new(0);
    let (mut ticks, mut installs) = (0u64, 0usize);
    let mut stubs_seen = std::collections::HashSet::new();

    std::thread::scope(|s| {
        for id in 0..CALLERS {
            let (stop, phase, calls, wrong) = (&stop, &phase, &calls, &wrong);
            let engine = engine.clone();
            s.spawn(move || {
                let mut pinned = engine.pin();
                let mut x = id as u64 + 1;
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    // Mostly the phase's two targets (60/30), some others.
                    let p = phase.load(Ordering::Relaxed) as usize;
                    let k = match x % 10 {
                        0..=5 => 2 * p,
                        6..=8 => 2 * p + 1,
                        _ => (x >> 8) as usize,
                    } % TARGETS.len();
                    let f = TARGETS[k];
                    let got = UNDER_LOAD.call(&pinned, f, (x,));
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
        while started.elapsed() < RUN {
            installs += engine.tick().installs;
            ticks += 1;
            stubs_seen.insert(UNDER_LOAD.jumps_to().unwrap());
            if ticks.is_multiple_of(PHASE_TICKS) {
                phase.fetch_add(1, Ordering::Relaxed);
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        stop.store(true, Ordering::Relaxed);
    });
    let (calls, wrong) = (calls.into_inner(), wrong.into_inner());
    eprintln!(
        "{calls} calls, {ticks} ticks, {installs} installs, {} stub destinations seen",
        stubs_seen.len()
    );
    assert_eq!(wrong, 0, "wrong results through the stub");
    assert!(calls > 10_000, "the callers barely ran: {calls}");
    assert!(
        installs >= 5 && stubs_seen.len() >= 5,
        "the stub hardly moved: {installs} installs, {} destinations",
        stubs_seen.len()
    );
    UNDER_LOAD.demote().unwrap();
}
