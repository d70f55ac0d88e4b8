//! Sites that learn, driven deterministically by `Engine::tick`: the
//! behaviours issue 3 promises, on real sites, real thunks and real calls.

use hotcall::policy::{AdaptiveConfig, Counting, PolicyState};
use hotcall::{Engine, EngineConfig, PolicyConfig, SeedConfig, Site, SiteMode, SiteOptions};

type Callback = extern "C" fn(u64) -> u64;

macro_rules! targets {
    ($($name:ident = $k:expr),* $(,)?) => {
        $(#[inline(never)] extern "C" fn $name(x: u64) -> u64 { x.wrapping_mul($k) ^ $k })*
    };
}
targets!(
    t0 = 3,
    t1 = 5,
    t2 = 7,
    t3 = 9,
    t4 = 11,
    t5 = 13,
    t6 = 15,
    t7 = 17,
    t8 = 19,
    t9 = 21,
    t10 = 23,
    t11 = 25,
    t12 = 27,
    t13 = 29,
    t14 = 31,
    t15 = 33
);
const POOL: [Callback; 16] = [
    t0, t1, t2, t3, t4, t5, t6, t7, t8, t9, t10, t11, t12, t13, t14, t15,
];

fn addr(f: Callback) -> usize {
    f as usize
}

fn engine() -> Engine {
    Engine::with_config(EngineConfig::manual())
}

/// Calls `site` once per entry of `stream`, checking every result against
/// the plain call.
fn run(engine: &Engine, site: &Site<Callback>, stream: &[Callback]) {
    let pinned = engine.pin();
    for (i, &f) in stream.iter().enumerate() {
        let x = i as u64;
        assert_eq!(site.call(&pinned, f, (x,)), f(x), "call {i}");
    }
}

/// `n` calls in which each `(target, weight)` appears in proportion to its
/// weight, interleaved (a deterministic round-robin by weight).
fn mix(parts: &[(Callback, usize)], n: usize) -> Vec<Callback> {
    let total: usize = parts.iter().map(|p| p.1).sum();
    let mut out = Vec::with_capacity(n);
    let mut credit = vec![0usize; parts.len()];
    while out.len() < n {
        for (k, &(f, w)) in parts.iter().enumerate() {
            credit[k] += w;
            while credit[k] >= total && out.len() < n {
                credit[k] -= total;
                out.push(f);
            }
        }
    }
    out
}

fn slots(site: &Site<Callback>) -> Vec<usize> {
    site.stats().slots.iter().map(|s| s.target).collect()
}

#[test]
fn a_monomorphic_site_promotes_its_target_after_one_decision() {
    let engine = engine();
    let site = engine.named_site::<Callback>("mono");
    let s = site.stats();
    assert_eq!(
        (s.state, s.counting),
        (PolicyState::Profiling, Counting::All)
    );
    run(&engine, &site, &[t3 as Callback; 2000]);
    assert_eq!(site.stats().calls, 2000, "the probe counted every call");
    engine.tick();
    let s = site.stats();
    assert_eq!(s.decisions, 1);
    assert_eq!(s.state, PolicyState::Promoted, "{s}");
    assert_eq!(slots(&site), vec![addr(t3)]);
    // Stable: only misses are counted, hits cost what they cost uncounted.
    assert_eq!(s.counting, Counting::Misses);
    run(&engine, &site, &[t3 as Callback; 2000]);
    assert_eq!(site.stats().misses, 0);
}

#[test]
fn a_ninety_ten_site_promotes_both_most_frequent_first() {
    let engine = engine();
    let site = engine.named_site::<Callback>("bi");
    run(&engine, &site, &mix(&[(t1, 10), (t0, 90)], 4000));
    engine.tick();
    assert_eq!(slots(&site), vec![addr(t0), addr(t1)], "{}", site.stats());
}

#[test]
fn after_a_phase_change_the_new_hot_targets_are_promoted_within_two_ticks() {
    let engine = engine();
    let site = engine.named_site::<Callback>("phase");
    let first = mix(&[(t0, 70), (t1, 30)], 4000);
    run(&engine, &site, &first);
    engine.tick();
    for _ in 0..3 {
        run(&engine, &site, &first);
        engine.tick();
    }
    assert_eq!(slots(&site), vec![addr(t0), addr(t1)]);
    // The hot set switches.
    let second = mix(&[(t5, 60), (t6, 40)], 4000);
    let mut ticks = 0;
    while slots(&site) != vec![addr(t5), addr(t6)] {
        run(&engine, &site, &second);
        engine.tick();
        ticks += 1;
        assert!(
            ticks <= 2,
            "not promoted after {ticks} ticks: {}",
            site.stats()
        );
    }
    eprintln!("new hot set promoted after {ticks} ticks");
}

/// The `phase` workload's shape: two Zipf-like sets of eight targets, the
/// change on a tick boundary, so that the tick that sees the surge also
/// sees more distinct miss targets than a thread has candidate entries.
/// (The profile after it once found no hot set and bypassed the site: a
/// new epoch kept what space-saving entries had inherited in the old one.)
#[test]
fn a_phase_change_among_many_targets_is_promoted_not_bypassed() {
    let engine = engine();
    let site = engine.named_site::<Callback>("eight and eight");
    let zipf8 = |set: &[Callback]| -> Vec<(Callback, usize)> {
        set.iter()
            .enumerate()
            .map(|(k, &f)| (f, 840 / (k + 1)))
            .collect()
    };
    let first = mix(&zipf8(&POOL[..8]), 4096);
    let second = mix(&zipf8(&POOL[8..]), 4096);
    for _ in 0..4 {
        run(&engine, &site, &first);
        engine.tick();
    }
    assert_eq!(slots(&site)[..2], [addr(t0), addr(t1)], "{}", site.stats());
    let mut ticks = 0;
    while slots(&site).first() != Some(&addr(t8)) {
        run(&engine, &site, &second);
        engine.tick();
        ticks += 1;
        let s = site.stats();
        assert!(
            !matches!(s.state, PolicyState::Bypass { .. }),
            "bypassed after the phase change: {s}"
        );
        assert!(ticks <= 2, "not promoted after {ticks} ticks: {s}");
    }
    assert_eq!(slots(&site)[..2], [addr(t8), addr(t9)], "{}", site.stats());
}

#[test]
fn a_uniform_site_ends_in_bypass_and_stays_there_with_backed_off_probes() {
    let engine = engine();
    let site = engine.named_site::<Callback>("uniform");
    let stream = mix(&POOL.map(|f| (f, 1)), 3200);
    let mut probes = Vec::new();
    let mut reprobe_ats = Vec::new();
    for tick in 1..=100u64 {
        let before = site.stats();
        run(&engine, &site, &stream);
        engine.tick();
        let after = site.stats();
        if after.publishes > before.publishes {
            probes.push(tick);
        }
        if let PolicyState::Bypass { reprobe_at } = after.state
            && reprobe_ats.last() != Some(&reprobe_at)
        {
            reprobe_ats.push(reprobe_at);
        }
    }
    let s = site.stats();
    assert!(
        matches!(s.state, PolicyState::Bypass { .. }),
        "ends in bypass: {s}"
    );
    assert_eq!(s.mode, SiteMode::PlainIndirect, "a bypass has no thunk");
    // One build for the first probe at creation, then the re-probes.
    assert!(s.publishes <= 3, "{} builds over 100 ticks", s.publishes);
    // Demoted at tick 1; re-probes 16, then 32 ticks after each demotion.
    assert_eq!(reprobe_ats, vec![17, 50, 115], "{s}");
    assert_eq!(probes, vec![17, 50], "probes happen at the re-probe ticks");
}

#[test]
fn near_equal_shares_trading_places_do_not_recompile() {
    // Profiling every tick would re-decide every tick; the hysteresis must
    // keep the installed order anyway.
    let engine = engine();
    let config = AdaptiveConfig {
        reprofile_every: 1,
        reprofile_max: 1,
        ..Default::default()
    };
    let site = engine.site_with::<Callback>(
        SiteOptions::new()
            .name("alternating")
            .policy(PolicyConfig::AdaptiveWith(config)),
    );
    let even = mix(&[(t0, 52), (t1, 48)], 4000);
    let odd = mix(&[(t1, 52), (t0, 48)], 4000);
    run(&engine, &site, &even);
    engine.tick();
    let order = slots(&site);
    assert_eq!(order, vec![addr(t0), addr(t1)]);
    for tick in 0..40 {
        run(&engine, &site, if tick % 2 == 0 { &odd } else { &even });
        engine.tick();
        assert_eq!(slots(&site), order, "tick {tick}: the order flapped");
    }
    // Each check profile is a build and so is going back to the lean thunk:
    // that is the price of checking every tick (the default checks after 64
    // ticks, then less and less often); what must not happen is a new order.
    eprintln!("{}", site.stats());
}

#[test]
fn with_default_checks_a_stable_alternating_site_rarely_recompiles() {
    let engine = engine();
    let site = engine.named_site::<Callback>("alternating-default");
    let even = mix(&[(t0, 52), (t1, 48)], 4000);
    let odd = mix(&[(t1, 52), (t0, 48)], 4000);
    for tick in 0..100 {
        run(&engine, &site, if tick % 2 == 0 { &even } else { &odd });
        engine.tick();
    }
    let s = site.stats();
    assert_eq!(slots(&site), vec![addr(t0), addr(t1)]);
    // The probe, the first promotion, and one check (profile + back).
    assert!(s.publishes <= 4, "{} builds in 100 ticks: {s}", s.publishes);
}

fn seed_site(engine: &Engine, config: SeedConfig) -> Site<Callback> {
    engine.site_with::<Callback>(
        SiteOptions::new()
            .name("seed")
            .policy(PolicyConfig::Seed(config)),
    )
}

#[test]
fn seed_relearns_after_more_than_1000_candidate_misses_on_a_thread() {
    let engine = engine();
    let site = seed_site(&engine, SeedConfig::default());
    // 1000 misses over the 4 candidate entries: not more than 1000.
    run(
        &engine,
        &site,
        &mix(&[(t0, 1), (t1, 1), (t2, 1), (t3, 1)], 1000),
    );
    engine.tick();
    let s = site.stats();
    assert_eq!(
        (s.publishes, s.slots.len()),
        (1, 0),
        "no relearn at 1000: {s}"
    );
    // One more: 1001, and the leader t0 has 251 > 250.
    run(&engine, &site, &[t0]);
    engine.tick();
    let s = site.stats();
    assert_eq!(s.publishes, 2, "relearn at 1001: {s}");
    assert_eq!(s.slots.len(), 2, "the top two are installed");
    assert_eq!(s.slots[0].target, addr(t0));
    assert_eq!(s.counting, Counting::All, "the seed always counts");
}

#[test]
fn seed_installs_only_if_the_leader_has_more_than_250() {
    // Five candidate entries so that more than 1000 misses fit under a
    // leader of 250.
    let config = SeedConfig {
        candidates: 5,
        ..Default::default()
    };
    let engine = engine();
    let site = seed_site(&engine, config.clone());
    let at_250 = mix(&[(t0, 250), (t1, 250), (t2, 250), (t3, 250), (t4, 1)], 1001);
    run(&engine, &site, &at_250);
    engine.tick();
    let s = site.stats();
    assert_eq!(
        (s.publishes, s.slots.len()),
        (1, 0),
        "leader 250: no install: {s}"
    );
    assert_eq!(s.calls, 0, "the relearn reset the counts");

    let site = seed_site(&engine, config);
    let at_251 = mix(&[(t0, 251), (t1, 250), (t2, 250), (t3, 249), (t4, 1)], 1001);
    run(&engine, &site, &at_251);
    engine.tick();
    let s = site.stats();
    assert_eq!(s.publishes, 2, "leader 251: installed: {s}");
    assert_eq!(s.slots[0].target, addr(t0));
}

#[test]
fn seed_discards_a_threads_candidates_after_more_than_1000_catch_all_misses() {
    let engine = engine();
    let site = seed_site(&engine, SeedConfig::default());
    // Four candidates take the entries, then 1000 misses of a fifth target
    // go to the catch-all: at 1000 the candidates stay.
    run(&engine, &site, &[t0, t1, t2, t3]);
    run(&engine, &site, &[t9 as Callback; 1000]);
    let s = site.stats();
    assert_eq!(s.candidates.len(), 4, "{s}");
    // At 1001 they are discarded, and the next misses get entries again.
    run(&engine, &site, &[t9 as Callback; 1]);
    assert!(site.stats().candidates.is_empty());
    run(&engine, &site, &[t9 as Callback; 3]);
    let s = site.stats();
    assert_eq!(
        (
            s.candidates.len(),
            s.candidates[0].target,
            s.candidates[0].count
        ),
        (1, addr(t9), 3)
    );
    assert_eq!(s.misses, 4 + 1001 + 3, "total misses stay exact");
}

#[test]
fn counts_from_several_threads_add_up_exactly() {
    let engine = engine();
    let site = engine.named_site::<Callback>("threads");
    const THREADS: usize = 4;
    const N: usize = 20_000;
    let handles: Vec<_> = (0..THREADS)
        .map(|id| {
            let (engine, site) = (engine.clone(), site.clone());
            std::thread::spawn(move || {
                // Each thread: N calls over its own mix of 6 targets.
                let parts: Vec<(Callback, usize)> = (0..6).map(|k| (POOL[id + k], k + 1)).collect();
                run(&engine, &site, &mix(&parts, N));
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    // The probe counted every call (all misses: nothing is promoted), per
    // target exactly (fewer distinct targets per thread than entries).
    let s = site.stats();
    assert_eq!(s.calls, (THREADS * N) as u64, "{s}");
    assert_eq!(s.misses, (THREADS * N) as u64);
    let mut expected = std::collections::HashMap::new();
    for id in 0..THREADS {
        let parts: Vec<(Callback, usize)> = (0..6).map(|k| (POOL[id + k], k + 1)).collect();
        for f in mix(&parts, N) {
            *expected.entry(addr(f)).or_insert(0u64) += 1;
        }
    }
    // Statistics show the eight most frequent miss targets.
    let mut want: Vec<(usize, u64)> = expected.into_iter().collect();
    want.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let got: Vec<(usize, u64)> = s.candidates.iter().map(|c| (c.target, c.count)).collect();
    assert_eq!(got, want[..got.len()].to_vec());
    assert_eq!(got.len(), 8);
}

#[test]
fn statistics_are_readable_and_serialize_to_json() {
    let engine = engine();
    let site = engine.named_site::<Callback>("stats");
    run(&engine, &site, &mix(&[(t0, 3), (t1, 1)], 2000));
    engine.tick();
    let s = site.stats();
    let text = s.to_string();
    assert!(text.contains("adaptive policy, promoted"), "{text}");
    assert!(
        text.contains("learning::t0"),
        "targets by symbol name: {text}"
    );
    let json: serde_json::Value = serde_json::from_str(&s.to_json()).expect("valid JSON");
    assert_eq!(json["policy"], "adaptive");
    assert_eq!(json["state"]["state"], "promoted");
    assert_eq!(json["slots"][0]["form"], "direct");
    assert_eq!(json["slots"][0]["hits"], 1500, "hits from the profile");
    assert!(
        json["slots"][0]["symbol"]
            .as_str()
            .is_some_and(|n| n.ends_with("t0"))
    );
    let e = engine.stats();
    assert_eq!(e.scheduler.ticks, 1);
    let json: serde_json::Value = serde_json::from_str(&e.to_json()).expect("valid JSON");
    assert_eq!(json["scheduler"]["ticks"], 1);
    assert_eq!(json["arch"], "x86_64");
}

#[test]
fn a_tick_compiles_at_most_its_budget_and_the_rest_follow() {
    let engine = Engine::with_config(EngineConfig {
        schedule: hotcall::ScheduleConfig {
            period: None,
            budget: 2,
        },
        ..Default::default()
    });
    let sites: Vec<Site<Callback>> = (0..5).map(|_| engine.site::<Callback>()).collect();
    for (k, site) in sites.iter().enumerate() {
        run(&engine, site, &vec![POOL[k]; 1500]);
    }
    let mut promoted_per_tick = Vec::new();
    for _ in 0..3 {
        let report = engine.tick();
        assert!(report.compiles <= 2, "{report:?}");
        promoted_per_tick.push(
            sites
                .iter()
                .filter(|s| s.stats().state == PolicyState::Promoted)
                .count(),
        );
    }
    assert_eq!(
        promoted_per_tick,
        vec![2, 4, 5],
        "two per tick, none starved"
    );
}

#[test]
fn the_background_scheduler_promotes_without_help() {
    // The default engine learns on its own thread (every 20 ms).
    let engine = Engine::new();
    let site = engine.named_site::<Callback>("background");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while site.stats().state != PolicyState::Promoted {
        run(&engine, &site, &[t7 as Callback; 2000]);
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(std::time::Instant::now() < deadline, "{}", site.stats());
    }
    assert_eq!(slots(&site), vec![addr(t7)]);
    assert!(engine.stats().scheduler.background);
}

#[test]
fn a_stable_sites_sampled_miss_counts_estimate_the_misses() {
    let engine = engine();
    let site = engine.named_site::<Callback>("sampled");
    run(&engine, &site, &[t0 as Callback; 2000]);
    engine.tick();
    assert_eq!(site.stats().counting, Counting::Misses);
    // 20,000 misses over two targets, 3:1, between hits.
    let stream = mix(&[(t0, 2), (t1, 3), (t2, 1)], 30_000);
    run(&engine, &site, &stream);
    let s = site.stats();
    let est = s.misses as f64;
    assert!(
        (est - 20_000.0).abs() < 2_000.0,
        "estimated {est} misses: {s}"
    );
    let by = |f: Callback| {
        s.candidates
            .iter()
            .find(|c| c.target == addr(f))
            .map_or(0, |c| c.count)
    };
    let ratio = by(t1) as f64 / by(t2).max(1) as f64;
    assert!(
        (2.4..3.6).contains(&ratio),
        "t1:t2 about 3:1, got {ratio}: {s}"
    );
}
