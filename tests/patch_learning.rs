//! Patch sites that learn: driven by the same policies and scheduler as JIT
//! sites, a plan becoming a retarget of the one thunk.
//!
//! * deterministic, tick-driven: a monomorphic site promotes its target
//!   after one decision, the slot takes effect by ticks alone, hits are not
//!   counted (only misses are), and after a phase change the new target is
//!   promoted within two ticks; a megamorphic site is bypassed (no thunk)
//!   and re-probed; retargeting by hand stops the learning;
//! * a static entry whose Patch site learns: the stub follows the site
//!   (counting entry, thunk, miss stub);
//! * under load: threads calling while the scheduler ticks, learns and
//!   retargets through phase changes: zero wrong results.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hotcall::{
    Counting, Engine, EngineConfig, PatchSite, PolicyState, ScheduleConfig, SiteOptions,
    static_site,
};

#[path = "common/learning_load.rs"]
mod learning_load;
use learning_load::*;

/// Makes `n` calls of `f` through `site` (pinned only while calling, so
/// that grace periods can pass between bursts) and checks every result.
fn burst(engine: &Engine, site: &PatchSite<Callback>, f: Callback, n: u64) {
    let pinned = engine.pin();
    for x in 0..n {
        assert_eq!(site.call(&pinned, f, (x,)), f(x), "wrong result");
    }
}

/// Ticks until no retarget is pending (ticks complete them); returns how
/// many ticks it took.
fn tick_until_complete(engine: &Engine, site: &PatchSite<Callback>) -> usize {
    for n in 1..=200 {
        engine.tick();
        if !site.is_pending() {
            return n;
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    panic!("ticks never completed the retarget: {}", site.stats());
}

#[test]
fn a_patch_site_promotes_after_one_decision_and_follows_a_phase_change() {
    let engine = Engine::with_config(EngineConfig::manual());
    let site = engine.named_patch_site::<Callback>("mono", 2).unwrap();
    let s = site.stats();
    assert_eq!((s.policy, s.state), ("adaptive", PolicyState::Profiling));
    assert_eq!(s.counting, Counting::All);
    let counting_entry = site.thunk_code().counting_entry().unwrap();
    assert_eq!(s.current_entry, Some(counting_entry), "{s}");

    // Profiling: every call counted through the counting entry.
    burst(&engine, &site, t0, 2000);
    let s = site.stats();
    assert_eq!((s.calls, s.misses), (2000, 2000), "{s}");

    // One decision promotes t0; the thunk is entered directly again and
    // only misses are counted.
    let r = engine.tick();
    assert_eq!(
        (r.installs, r.compiles),
        (1, 0),
        "a retarget compiles nothing"
    );
    let s = site.stats();
    assert_eq!(s.decisions, 1);
    assert_eq!(
        (s.state, s.counting),
        (PolicyState::Promoted, Counting::Misses)
    );
    assert_eq!(s.slots[0].wanted, Some(addr(t0)), "{s}");
    assert_eq!(s.slots[1].wanted, None, "the other slot stays disabled");
    assert_eq!(s.current_entry, Some(site.entry()));
    // Ticks alone complete it.
    let ticks = tick_until_complete(&engine, &site);
    let s = site.stats();
    assert_eq!(
        s.slots[0].enabled,
        Some(addr(t0)),
        "after {ticks} ticks: {s}"
    );
    assert_eq!(s.slots[0].branch, Some(addr(t0)));
    assert_eq!(s.state, PolicyState::Promoted);

    // Hits go through the patched branch and are not counted; misses are,
    // through the miss exit (exactly, or as an estimate where the miss
    // stubs sample).
    burst(&engine, &site, t0, 3000);
    assert_eq!(site.stats().misses, 0, "{}", site.stats());
    // More misses than the longest sampling period (31), so that sampled
    // miss stubs record at least one.
    burst(&engine, &site, t1, 64);
    let s = site.stats();
    assert!(s.misses > 0, "{s}");
    assert_eq!(s.candidates[0].target, addr(t1));

    // Phase change: t2 only. Within two ticks t2 is promoted.
    let before = s.decisions;
    burst(&engine, &site, t2, 2000);
    engine.tick();
    let s = site.stats();
    assert_eq!(s.state, PolicyState::Profiling, "a surge of misses: {s}");
    assert_eq!(s.current_entry, Some(counting_entry));
    burst(&engine, &site, t2, 2000);
    engine.tick();
    let s = site.stats();
    assert_eq!(s.decisions, before + 2);
    assert_eq!(s.state, PolicyState::Promoted, "{s}");
    assert_eq!(s.slots[0].wanted, Some(addr(t2)), "{s}");
    tick_until_complete(&engine, &site);
    let s = site.stats();
    assert_eq!(s.slots[0].enabled, Some(addr(t2)), "{s}");
    assert!(s.patches >= 2 && s.completions >= 2, "{s}");
    burst(&engine, &site, t2, 3000);
    assert_eq!(site.stats().misses, 0);
    burst(&engine, &site, t0, 64);
    assert!(site.stats().misses > 0, "t0 is no longer promoted");
    eprintln!("{}", site.stats());
}

#[test]
fn a_ninety_ten_site_promotes_both_in_frequency_order() {
    let engine = Engine::with_config(EngineConfig::manual());
    let site = engine.patch_site::<Callback>(4).unwrap();
    {
        let pinned = engine.pin();
        for x in 0..2000u64 {
            let f = if x % 10 == 0 { t5 } else { t4 };
            assert_eq!(site.call(&pinned, f, (x,)), f(x));
        }
    }
    engine.tick();
    tick_until_complete(&engine, &site);
    let s = site.stats();
    let enabled: Vec<_> = s.slots.iter().map(|s| s.enabled).collect();
    assert_eq!(enabled, [Some(addr(t4)), Some(addr(t5)), None, None], "{s}");
}

#[test]
fn a_megamorphic_site_is_bypassed_then_reprobed() {
    let engine = Engine::with_config(EngineConfig::manual());
    let site = engine.patch_site::<Callback>(2).unwrap();
    let uniform = |n: u64| {
        let pinned = engine.pin();
        for x in 0..n {
            let f = TARGETS[(x % 16) as usize];
            assert_eq!(site.call(&pinned, f, (x,)), f(x));
        }
    };
    uniform(3200);
    engine.tick();
    let s = site.stats();
    assert!(matches!(s.state, PolicyState::Bypass { .. }), "{s}");
    assert_eq!(s.current_entry, None, "no thunk on the call path");
    assert_eq!(s.counting, Counting::None);
    assert!(
        s.slots
            .iter()
            .all(|s| s.enabled.is_none() && s.wanted.is_none())
    );
    uniform(1000); // plain indirect calls, still right
    let PolicyState::Bypass { reprobe_at } = s.state else {
        unreachable!()
    };
    while engine.tick().tick < reprobe_at {}
    let s = site.stats();
    assert_eq!(s.state, PolicyState::Profiling, "re-probed: {s}");
    assert_eq!(s.current_entry, site.thunk_code().counting_entry());
    uniform(100);
}

#[test]
fn retarget_by_hand_stops_learning_and_set_policy_resumes_it() {
    let engine = Engine::with_config(EngineConfig::manual());
    let site = engine
        .patch_site_with::<Callback>(2, SiteOptions::new().name("hand"))
        .unwrap();
    site.retarget(&[t6, t7]).unwrap();
    let s = site.stats();
    assert_eq!((s.policy, s.state), ("fixed", PolicyState::Fixed));
    assert_eq!(s.counting, Counting::None);
    assert_eq!(s.current_entry, Some(site.entry()));
    burst(&engine, &site, t8, 5000);
    // Ticks complete the retarget (once the grace period has passed) and
    // decide nothing.
    tick_until_complete(&engine, &site);
    engine.tick();
    let s = site.stats();
    assert_eq!(s.slots[0].enabled, Some(addr(t6)), "ticks completed: {s}");
    assert_eq!((s.state, s.retargets), (PolicyState::Fixed, 1));
    assert_eq!(s.slots[1].enabled, Some(addr(t7)));
    assert_eq!(s.misses, 0, "a fixed site counts nothing");

    site.set_policy(hotcall::PolicyConfig::Adaptive);
    assert_eq!(site.stats().counting, Counting::All);
    burst(&engine, &site, t8, 2000);
    engine.tick();
    tick_until_complete(&engine, &site);
    let s = site.stats();
    assert_eq!(s.slots[0].enabled, Some(addr(t8)), "{s}");
    assert_eq!(s.slots[1].enabled, None);

    site.demote();
    let s = site.stats();
    assert_eq!((s.state, s.current_entry), (PolicyState::Off, None));
    burst(&engine, &site, t8, 10);
}

#[test]
fn learned_plans_fit_the_slot_count() {
    // Five hot targets, two slots: the two most frequent are promoted.
    let engine = Engine::with_config(EngineConfig::manual());
    let site = engine.patch_site::<Callback>(2).unwrap();
    {
        let pinned = engine.pin();
        for x in 0..3000u64 {
            let f = match x % 12 {
                0..=3 => t9,
                4..=6 => t10,
                7 | 8 => t11,
                9 | 10 => t12,
                _ => t13,
            };
            assert_eq!(site.call(&pinned, f, (x,)), f(x));
        }
    }
    engine.tick();
    tick_until_complete(&engine, &site);
    let s = site.stats();
    let wanted: Vec<_> = s.slots.iter().map(|s| s.wanted).collect();
    assert_eq!(wanted, [Some(addr(t9)), Some(addr(t10))], "{s}");
    // Stable: the misses of the three unpromoted targets were predicted,
    // so the next ticks keep the plan (no surge, no re-profile).
    let decisions = s.decisions;
    for _ in 0..5 {
        {
            let pinned = engine.pin();
            for x in 0..1200u64 {
                let f = [t9, t9, t9, t9, t10, t10, t10, t11, t11, t12, t12, t13][(x % 12) as usize];
                assert_eq!(site.call(&pinned, f, (x,)), f(x));
            }
        }
        engine.tick();
    }
    let s = site.stats();
    assert_eq!(s.state, PolicyState::Promoted, "{s}");
    assert_eq!(s.decisions, decisions + 5);
    assert_eq!(s.retargets, 1, "no retarget after the first: {s}");
}

static_site! {
    static LEARNING: extern "C" fn(u64) -> u64;
}

#[test]
fn a_static_entry_follows_its_learning_patch_site() {
    static ENGINE: std::sync::OnceLock<Engine> = std::sync::OnceLock::new();
    let engine = ENGINE.get_or_init(|| Engine::with_config(EngineConfig::manual()));
    LEARNING.use_patch(engine, 2).unwrap();
    let hotcall::StaticMode::Patch(p) = LEARNING.stats().mode else {
        panic!("{}", LEARNING.stats())
    };
    assert_eq!(p.counting, Counting::All);
    assert_eq!(LEARNING.jumps_to().unwrap(), p.current_entry.unwrap());
    assert_ne!(p.current_entry, Some(p.entry), "the counting entry");
    let calls = |f: Callback, n: u64| {
        let pinned = engine.pin();
        for x in 0..n {
            assert_eq!(LEARNING.call(&pinned, f, (x,)), f(x));
        }
    };
    calls(t14, 2000);
    let hotcall::StaticMode::Patch(p) = LEARNING.stats().mode else {
        unreachable!()
    };
    assert_eq!(p.calls, 2000, "counted through the stub: {p}");
    engine.tick();
    for _ in 0..200 {
        engine.tick();
        let hotcall::StaticMode::Patch(p) = LEARNING.stats().mode else {
            unreachable!()
        };
        if !p.pending {
            break;
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    let hotcall::StaticMode::Patch(p) = LEARNING.stats().mode else {
        unreachable!()
    };
    assert_eq!(p.slots[0].enabled, Some(addr(t14)), "{p}");
    assert_eq!(
        LEARNING.jumps_to().unwrap(),
        p.entry,
        "the stub goes to the thunk"
    );
    calls(t14, 1000);
    calls(t15, 10);
    // Back to JIT: the Patch site no longer writes the stub.
    let report = LEARNING.promote(engine, &[t15]).unwrap();
    assert_eq!(LEARNING.jumps_to().unwrap(), report.entry);
    for _ in 0..3 {
        engine.tick();
    }
    assert_eq!(LEARNING.jumps_to().unwrap(), report.entry);
    calls(t15, 100);
}

// ------------------------------------------------------------ under load

const CALLERS: usize = 2;
const RUN: Duration = Duration::from_secs(3);
/// Ticks per phase: each phase has its own two hot targets.
const PHASE_TICKS: u64 = 12;

#[test]
fn callers_survive_learning_and_retargets() {
    learn_under_load(EngineConfig::manual());
}

#[test]
fn callers_survive_learning_and_retargets_hardened() {
    learn_under_load(EngineConfig {
        hardened: true,
        schedule: ScheduleConfig::manual(),
        ..Default::default()
    });
}

fn learn_under_load(config: EngineConfig) {
    let engine = Engine::with_config(config);
    let site = engine
        .named_patch_site::<Callback>("learning under load", 2)
        .unwrap();
    let mut ticks = 0u64;
    let mut installs = 0usize;
    let load = under_load(
        &engine,
        CALLERS,
        |pinned, f, x| site.call(pinned, f, (x,)),
        |phase| {
            let started = Instant::now();
            while started.elapsed() < RUN {
                installs += engine.tick().installs;
                ticks += 1;
                if ticks.is_multiple_of(PHASE_TICKS) {
                    phase.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_micros(500));
            }
        },
    );
    let (calls, wrong) = (load.calls, load.wrong);
    let s = site.stats();
    eprintln!(
        "{ticks} ticks, {} phases, {installs} plans installed; {} retargets, {} completions, \
         {} branch patches; {calls} calls, {wrong} wrong\n{s}",
        ticks / PHASE_TICKS,
        s.retargets,
        s.completions,
        s.patches
    );
    assert_eq!(wrong, 0, "wrong results while learning");
    assert!(calls > 100_000, "callers made too few calls ({calls})");
    assert!(
        s.completions >= 20 && s.patches >= 40,
        "too few retargets took effect under load to mean anything: {s}"
    );
}
