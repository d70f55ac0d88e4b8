//! A static entry that follows a learning JIT site (`StaticSite::use_jit`):
//! the stub goes to every thunk the site publishes (profiling, promoted)
//! and to the miss stub in a bypass; calls through the stub are counted and
//! correct, also while other threads call and the scheduler republishes
//! (freed code is poisoned, so a caller left in a freed thunk would crash
//! the test).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hotcall::{
    Counting, Engine, EngineConfig, PolicyState, ScheduleConfig, SiteMode, StaticMode, static_site,
};

#[path = "common/learning_load.rs"]
mod learning_load;
use learning_load::*;

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
    // Where the stub goes now: checked below to be the engine's miss stub,
    // where `demote` aims it.
    let bypass_destination = FOLLOWS.jumps_to().unwrap();
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

    FOLLOWS.demote().unwrap();
    assert_eq!(
        FOLLOWS.jumps_to().unwrap(),
        bypass_destination,
        "in the bypass the stub went to the miss stub"
    );
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
    let (mut ticks, mut installs) = (0u64, 0usize);
    let mut stubs_seen = std::collections::HashSet::new();
    let load = under_load(
        &engine,
        CALLERS,
        |pinned, f, x| UNDER_LOAD.call(pinned, f, (x,)),
        |phase| {
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
        },
    );
    let (calls, wrong) = (load.calls, load.wrong);
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
