//! The strategies against each other, in one run (criterion), then the
//! same hit paths timed *interleaved* (every round runs every variant once,
//! in a new random order; median round) with the ratios the goals
//! are stated in, and the retarget/republish latency distributions.
//!
//! * hits: a latency chain (each result feeds the next call's argument) of
//!   slot-0 hits, as in `dispatch.rs`: direct, plain indirect, retpoline,
//!   `listed_call!`, JIT and Patch sites (pointer entry), static entries to
//!   a JIT and a Patch thunk, and a hardened pointer-entry site;
//! * Patch counting: slot-0 hits of a Patch site whose plan counts misses
//!   (the miss exit aimed at the miss stub) and one whose plan counts every
//!   call (its counting entry), against the same site counting nothing;
//!   the alternatives to a second entry, measured as what they would add
//!   (a `jmp` before the thunk, as an entry prefix jumping over itself
//!   would; a `call` of a `ret` before it, x86-64 only); and misses through
//!   the Patch thunk's miss exit, counted and not, against the JIT thunk's
//!   miss;
//! * retarget: `PatchSite::retarget` (the non-blocking call; completions
//!   run in an untimed `poll` between calls), JIT republish
//!   (`Site::promote`: template copy, install, publish, retire), a static
//!   site's republish (the same plus the stub store), and a Patch
//!   retarget's time to effect (retarget, then wait for completion).
//!
//! `cargo bench --bench strategies`; the summary at the end prints the
//! ratios. `docs/strategies.md` quotes a run.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use hotcall::policy::{Decision, Observation, Plan, Policy, PolicyState};
use hotcall::{
    Counting, Engine, EngineConfig, PatchSite, PolicyConfig, Site, SiteOptions, listed_call,
    static_site,
};

type Callback = extern "C" fn(u64) -> u64;

#[inline(never)]
extern "C" fn t0(x: u64) -> u64 {
    x.wrapping_mul(3).wrapping_add(1)
}
#[inline(never)]
extern "C" fn t1(x: u64) -> u64 {
    x.wrapping_mul(5).wrapping_add(2)
}
#[inline(never)]
extern "C" fn t2(x: u64) -> u64 {
    x.wrapping_mul(7).wrapping_add(3)
}
#[inline(never)]
extern "C" fn t3(x: u64) -> u64 {
    x.wrapping_mul(11).wrapping_add(4)
}

static_site! {
    static STATIC_JIT: extern "C" fn(u64) -> u64;
}
static_site! {
    static STATIC_PATCH: extern "C" fn(u64) -> u64;
}
static_site! {
    static STATIC_REPUBLISH: extern "C" fn(u64) -> u64;
}
static_site! {
    static STATIC_HEAVY: extern "C" fn(u64) -> u64;
}

/// Targets with a longer dependency chain (about 10 cycles instead of 4),
/// to show how the dispatch overhead's share depends on the target's work.
#[inline(never)]
extern "C" fn heavy0(x: u64) -> u64 {
    (x.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17) ^ (x >> 7)).wrapping_mul(3)
}
#[inline(never)]
extern "C" fn heavy1(x: u64) -> u64 {
    (x.wrapping_mul(0xc2b2_ae3d_27d4_eb4f).rotate_left(23) ^ (x >> 9)).wrapping_mul(5)
}

const CHAIN: u64 = 1000;

/// A policy that installs `targets` counting `counting` and never changes
/// its mind: a site held in one counting mode for measuring.
#[derive(Debug)]
struct Hold {
    targets: Vec<u64>,
    counting: Counting,
}

impl Policy for Hold {
    fn name(&self) -> &'static str {
        "hold"
    }
    fn initial_plan(&mut self, _tick: u64) -> Plan {
        Plan::new(self.targets.clone(), self.counting)
    }
    fn decide(&mut self, _obs: &Observation<'_>) -> Decision {
        Decision::Keep
    }
    fn state(&self) -> PolicyState {
        PolicyState::Fixed
    }
}

/// A site held at `[t0, t1]` counting `counting`.
struct Held(Counting);

impl Held {
    fn policy_config(&self) -> PolicyConfig {
        let targets = vec![t0 as *const () as u64, t1 as *const () as u64];
        let counting = self.0;
        PolicyConfig::Custom(std::sync::Arc::new(move || {
            Box::new(Hold {
                targets: targets.clone(),
                counting,
            })
        }))
    }

    fn options(&self) -> SiteOptions {
        SiteOptions::new().policy(self.policy_config())
    }
}

fn hold(counting: Counting) -> Held {
    Held(counting)
}

/// The thunk ABI of `Callback` sites: the target first.
type ThunkFn = extern "C" fn(Callback, u64) -> u64;

/// Code placed in front of a Patch thunk, to measure what an entry prefix
/// would cost instead of a second entry (x86-64): `jmp thunk` (what a
/// prefix that jumps over itself adds: one taken direct jump), and `call
/// r; jmp thunk; r: ret` (a prefix that calls a `ret`).
struct Prefixes {
    _mem: hotcall_jit::CodeMemory,
    jump: ThunkFn,
    call_ret: ThunkFn,
}

#[cfg(target_arch = "x86_64")]
fn prefixes(thunk: usize) -> Option<Prefixes> {
    use hotcall_jit::isa::x86_64::encode::{CALL_REL32, JMP_REL32, rel32};
    use hotcall_jit::{CodeMemory, CodeMemoryOptions, code_memory::host_text_anchor};
    let mem = CodeMemory::new(&CodeMemoryOptions {
        capacity: 1 << 16,
        near: Some(host_text_anchor()),
        serialize_cores: false,
    })
    .ok()?;
    let place = |len: usize, f: &dyn Fn(u64) -> Vec<u8>| {
        let w = mem.alloc(len).ok()?;
        let bytes = f(w.address() as u64);
        Some(w.finish(&bytes).entry())
    };
    let thunk = thunk as u64;
    let jump = place(5, &|at| {
        let mut b = vec![JMP_REL32];
        b.extend(rel32(at + 1, thunk).unwrap().to_le_bytes());
        b
    })?;
    let call_ret = place(11, &|at| {
        let mut b = vec![CALL_REL32];
        b.extend(rel32(at + 1, at + 10).unwrap().to_le_bytes());
        b.push(JMP_REL32);
        b.extend(rel32(at + 6, thunk).unwrap().to_le_bytes());
        b.push(0xc3); // r: ret
        b
    })?;
    // SAFETY: both are complete code for the thunk ABI of `Callback` (they
    // end in a jump to the Patch thunk, which outlives the fixture), in
    // code memory that the fixture keeps.
    let as_fn = |a: usize| unsafe { std::mem::transmute::<usize, ThunkFn>(a) };
    Some(Prefixes {
        jump: as_fn(jump),
        call_ret: as_fn(call_ret),
        _mem: mem,
    })
}

#[cfg(not(target_arch = "x86_64"))]
fn prefixes(_thunk: usize) -> Option<Prefixes> {
    None
}

/// Everything the hit benchmarks call through, set up once.
struct Fixture {
    engine: Engine,
    hardened: Engine,
    site: Site<Callback>,
    patch: PatchSite<Callback>,
    patch_misses: PatchSite<Callback>,
    patch_all: PatchSite<Callback>,
    prefixes: Option<Prefixes>,
    hardened_site: Site<Callback>,
}

fn fixture() -> Fixture {
    let engine = Engine::new();
    let hardened = Engine::with_config(EngineConfig {
        hardened: true,
        ..Default::default()
    });
    let site = engine.named_site::<Callback>("jit");
    site.promote(&[t0, t1]).expect("promote");
    let patch = engine
        .named_patch_site::<Callback>("patch", 2)
        .expect("patch site");
    patch.retarget(&[t0, t1]).expect("retarget");
    assert!(patch.wait(Duration::from_secs(10)), "patch completes");
    let held = |counting| {
        let p = engine
            .patch_site_with::<Callback>(2, hold(counting).options())
            .expect("patch site");
        assert!(p.wait(Duration::from_secs(10)), "patch completes");
        let s = p.stats();
        assert_eq!(s.counting, counting, "{s}");
        assert_eq!(s.slots[0].enabled, Some(t0 as *const () as usize), "{s}");
        p
    };
    let patch_misses = held(Counting::Misses);
    let patch_all = held(Counting::All);
    let prefixes = prefixes(patch.entry());
    let hardened_site = hardened.named_site::<Callback>("hardened");
    hardened_site.promote(&[t0, t1]).expect("promote");
    STATIC_JIT
        .promote(&engine, &[t0, t1])
        .expect("static promote");
    STATIC_HEAVY
        .promote(&engine, &[heavy0, heavy1])
        .expect("static promote");
    STATIC_PATCH.use_patch(&engine, 2).expect("static patch");
    STATIC_PATCH.retarget(&[t0, t1]).expect("static retarget");
    assert!(STATIC_PATCH.wait(Duration::from_secs(10)));
    Fixture {
        engine,
        hardened,
        site,
        patch,
        patch_misses,
        patch_all,
        prefixes,
        hardened_site,
    }
}

/// The hit variants: name and a chain of `n` calls from `x`.
/// A chain of `n` calls from `x`.
type Chain<'a> = Box<dyn Fn(u64, u64) -> u64 + 'a>;

/// A chain of `n` calls of `call`, each result the next argument.
fn chain<'a>(call: impl Fn(u64) -> u64 + 'a) -> Chain<'a> {
    Box::new(move |mut x, n| {
        for _ in 0..n {
            x = call(x);
        }
        x
    })
}

/// [`chain`] pinned on `engine` for the whole chain, as hosts call sites.
fn pinned_chain<'a>(
    engine: &'a Engine,
    call: impl Fn(&hotcall::Pinned, u64) -> u64 + 'a,
) -> Chain<'a> {
    Box::new(move |mut x, n| {
        let pinned = engine.pin();
        for _ in 0..n {
            x = call(&pinned, x);
        }
        x
    })
}

fn variants(fx: &Fixture) -> Vec<(&'static str, Chain<'_>)> {
    let f: Callback = black_box(t0);
    let mut v: Vec<(&'static str, Chain<'_>)> = vec![
        ("direct", chain(move |x| t0(x))),
        ("indirect", chain(move |x| f(x))),
        (
            "retpoline",
            chain(move |x| hotcall::retpoline::call(f, (x,))),
        ),
        (
            "listed_slot0",
            chain(move |x| listed_call!(f, (x), [t0, t1])),
        ),
        (
            "site_jit_slot0",
            pinned_chain(&fx.engine, move |pinned, x| fx.site.call(pinned, f, (x,))),
        ),
        (
            "site_patch_slot0",
            pinned_chain(&fx.engine, move |pinned, x| fx.patch.call(pinned, f, (x,))),
        ),
        (
            "site_patch_slot0_counting_misses",
            pinned_chain(&fx.engine, move |pinned, x| {
                fx.patch_misses.call(pinned, f, (x,))
            }),
        ),
        (
            "site_patch_slot0_counting_all",
            pinned_chain(&fx.engine, move |pinned, x| {
                fx.patch_all.call(pinned, f, (x,))
            }),
        ),
        ("site_patch_miss", {
            let g: Callback = black_box(t3);
            pinned_chain(&fx.engine, move |pinned, x| fx.patch.call(pinned, g, (x,)))
        }),
        ("site_patch_miss_counted", {
            let g: Callback = black_box(t3);
            pinned_chain(&fx.engine, move |pinned, x| {
                fx.patch_misses.call(pinned, g, (x,))
            })
        }),
        ("site_jit_miss", {
            let g: Callback = black_box(t3);
            pinned_chain(&fx.engine, move |pinned, x| fx.site.call(pinned, g, (x,)))
        }),
        (
            "static_jit_slot0",
            pinned_chain(&fx.engine, move |pinned, x| {
                STATIC_JIT.call(pinned, f, (x,))
            }),
        ),
        (
            "static_patch_slot0",
            pinned_chain(&fx.engine, move |pinned, x| {
                STATIC_PATCH.call(pinned, f, (x,))
            }),
        ),
        (
            "hardened_site_jit_slot0",
            pinned_chain(&fx.hardened, move |pinned, x| {
                fx.hardened_site.call(pinned, f, (x,))
            }),
        ),
        ("indirect_heavy_target", {
            let h: Callback = black_box(heavy0);
            chain(move |x| h(x))
        }),
        ("static_jit_slot0_heavy_target", {
            let h: Callback = black_box(heavy0);
            pinned_chain(&fx.engine, move |pinned, x| {
                STATIC_HEAVY.call(pinned, h, (x,))
            })
        }),
        ("static_jit_miss", {
            let g: Callback = black_box(t3);
            pinned_chain(&fx.engine, move |pinned, x| {
                STATIC_JIT.call(pinned, g, (x,))
            })
        }),
    ];
    if let Some(p) = &fx.prefixes {
        // Called as `PatchSite::call` calls its entry, pinned.
        for (name, entry) in [
            ("site_patch_slot0_jump_prefix", p.jump),
            ("site_patch_slot0_call_ret_prefix", p.call_ret),
        ] {
            v.push((
                name,
                Box::new(move |mut x, n| {
                    let entry = black_box(entry);
                    let _pinned = fx.engine.pin();
                    for _ in 0..n {
                        x = entry(f, x);
                    }
                    x
                }),
            ));
        }
    }
    v
}

fn hits(c: &mut Criterion, fx: &Fixture) {
    let mut g = c.benchmark_group("hit");
    g.throughput(Throughput::Elements(CHAIN));
    for (name, run) in variants(fx) {
        g.bench_function(name, |b| b.iter(|| run(black_box(1), CHAIN)));
    }
    g.finish();
}

const SETS: [[Callback; 2]; 2] = [[t0, t1], [t2, t3]];

fn retargets(c: &mut Criterion, fx: &Fixture) {
    let mut g = c.benchmark_group("retarget");
    let patch = fx
        .engine
        .named_patch_site::<Callback>("bench-retarget", 2)
        .expect("patch site");
    g.bench_function("patch_retarget", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for i in 0..iters {
                patch.poll();
                let set = &SETS[(i % 2) as usize];
                let start = Instant::now();
                black_box(patch.retarget(set).expect("retarget"));
                total += start.elapsed();
            }
            total
        })
    });
    let site = fx.engine.named_site::<Callback>("bench-republish");
    let mut flip = 0usize;
    g.bench_function("jit_republish", |b| {
        b.iter(|| {
            flip ^= 1;
            site.promote(&SETS[flip]).expect("promote")
        })
    });
    g.bench_function("static_jit_republish", |b| {
        b.iter(|| {
            flip ^= 1;
            STATIC_REPUBLISH
                .promote(&fx.engine, &SETS[flip])
                .expect("promote")
        })
    });
    g.sample_size(20);
    g.bench_function("patch_retarget_to_effect", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for i in 0..iters {
                let set = &SETS[(i % 2) as usize];
                let start = Instant::now();
                patch.retarget(set).expect("retarget");
                assert!(patch.wait(Duration::from_secs(10)));
                total += start.elapsed();
            }
            total
        })
    });
    g.finish();
}

/// Interleaved: every round runs every variant once, in a new random
/// order; each variant's median round is reported. Each run is `reps`
/// chains of `calls` dependent calls.
fn interleaved(fx: &Fixture, rounds: usize, calls: u64, reps: u64) {
    let vs = variants(fx);
    let mut ns: Vec<Vec<f64>> = vec![Vec::new(); vs.len()];
    let mut order: Vec<usize> = (0..vs.len()).collect();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for (_, run) in &vs {
        run(1, calls);
    }
    for _ in 0..rounds {
        for i in (1..order.len()).rev() {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            order.swap(i, (seed >> 33) as usize % (i + 1));
        }
        for &i in &order {
            let start = Instant::now();
            for _ in 0..reps {
                black_box(vs[i].1(black_box(1), calls));
            }
            ns[i].push(start.elapsed().as_secs_f64() * 1e9 / (calls * reps) as f64);
        }
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let medians: Vec<f64> = ns.iter_mut().map(med).collect();
    let get = |name: &str| medians[vs.iter().position(|(n, _)| *n == name).unwrap()];
    println!(
        "\ninterleaved hit latency ({rounds} rounds of {reps} chains x {calls} calls, median round):"
    );
    let indirect = get("indirect");
    for ((name, _), m) in vs.iter().zip(&medians) {
        println!("  {name:<30} {m:6.2} ns  {:5.2}x indirect", m / indirect);
    }
    let static_hit = get("static_jit_slot0");
    println!(
        "  goal: static entry slot-0 hit / indirect = {:.2} (<= 1.15); retpoline / static hit = {:.1} (>= 7)",
        static_hit / indirect,
        get("retpoline") / static_hit
    );
    println!(
        "  with a ~10-cycle target: static entry slot-0 hit / indirect = {:.2}",
        get("static_jit_slot0_heavy_target") / get("indirect_heavy_target")
    );
    let plain = get("site_patch_slot0");
    println!(
        "  Patch sites held in a counting mode (other sites, so other addresses), slot-0 hit / \
         not counting: misses counted {:.3}, every call counted {:.2}",
        get("site_patch_slot0_counting_misses") / plain,
        get("site_patch_slot0_counting_all") / plain
    );
    println!(
        "  misses: Patch (through the miss exit) / JIT = {:.2}; counted / not counted = {:.2}",
        get("site_patch_miss") / get("site_jit_miss"),
        get("site_patch_miss_counted") / get("site_patch_miss")
    );
}

/// Times `REPS` chains of `CHAIN` calls of `call` (monomorphized: no
/// indirect call around it); ns per call.
fn time_chains<C: Fn(u64) -> u64>(call: C) -> f64 {
    const REPS: u64 = 200;
    let start = Instant::now();
    for _ in 0..REPS {
        let mut x = black_box(1);
        for _ in 0..CHAIN {
            x = call(x);
        }
        black_box(x);
    }
    start.elapsed().as_secs_f64() * 1e9 / (CHAIN * REPS) as f64
}

/// What counting costs a Patch thunk's slot-0 hits, on one site: every
/// round switches the site `fx.patch` between its counting modes (only the
/// entry word and the miss exit's word change; the thunk stays where it
/// is) and calls the same thunk by function pointer directly and through
/// the entry-prefix alternatives, in a new random order; median round of
/// each. Modes are compared through `PatchSite::call`, the prefixes with
/// the thunk called by pointer (the same loop shape).
fn counting_ab(fx: &Fixture, rounds: usize) {
    let f: Callback = black_box(t0);
    // Pinned for the whole measurement, as a hot loop is: switching the
    // counting mode waits for nothing.
    let pinned = fx.engine.pin();
    // SAFETY: the Patch thunk's entry, with the thunk ABI of `Callback`;
    // the site outlives this function and the caller is pinned.
    let thunk = unsafe { std::mem::transmute::<usize, ThunkFn>(fx.patch.entry()) };
    let mut names = vec![
        "not counting",
        "counting misses",
        "counting every call",
        "the thunk by pointer",
    ];
    if fx.prefixes.is_some() {
        names.extend([
            "a jump, then the thunk",
            "a call of a `ret`, then the thunk",
        ]);
    }
    let mut ns: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    let mut order: Vec<usize> = (0..names.len()).collect();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..rounds {
        for i in (1..order.len()).rev() {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            order.swap(i, (seed >> 33) as usize % (i + 1));
        }
        for &i in &order {
            let mode = match i {
                1 => Counting::Misses,
                2 => Counting::All,
                _ => Counting::None,
            };
            fx.patch.set_policy(hold(mode).policy_config());
            assert_eq!(fx.patch.stats().counting, mode);
            let t = match (i, &fx.prefixes) {
                (3, _) => time_chains(|x| thunk(f, x)),
                (4, Some(p)) => time_chains(|x| (p.jump)(f, x)),
                (5, Some(p)) => time_chains(|x| (p.call_ret)(f, x)),
                _ => time_chains(|x| fx.patch.call(&pinned, f, (x,))),
            };
            ns[i].push(t);
        }
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let m: Vec<f64> = ns.iter_mut().map(med).collect();
    println!(
        "\nPatch counting on one site ({rounds} rounds of 200 chains x {CHAIN} calls, median round):"
    );
    for (name, v) in names.iter().zip(&m) {
        println!("  {name:<36} {v:6.2} ns");
    }
    println!(
        "  slot-0 hit / not counting: counting misses {:.3} (the same code), counting every call {:.2}",
        m[1] / m[0],
        m[2] / m[0]
    );
    if fx.prefixes.is_some() {
        println!(
            "  an entry prefix instead of a second entry, / the thunk by pointer: a jump {:.3}, \
             a call of a `ret` {:.3}",
            m[4] / m[3],
            m[5] / m[3]
        );
    }
}

/// The interleaved hit ratios, with chains of 1000 calls (as criterion
/// and `dispatch.rs` measure) and with single chains of 200,000 calls
/// (on this loaded 2-vCPU machine the static entry measured slower in
/// long chains; both are printed so that the difference stays visible);
/// then the retarget and republish latency distributions.
fn interleaved_summary(fx: &Fixture) {
    interleaved(fx, 31, 1000, 200);
    interleaved(fx, 31, 200_000, 1);
    counting_ab(fx, 31);

    // Retarget and republish latency distributions, single calls.
    let patch = fx
        .engine
        .named_patch_site::<Callback>("summary-retarget", 2)
        .expect("patch site");
    let mut retarget = Vec::new();
    for i in 0..20_000 {
        patch.poll();
        let start = Instant::now();
        black_box(patch.retarget(&SETS[i % 2]).expect("retarget"));
        retarget.push(start.elapsed().as_secs_f64() * 1e6);
    }
    let site = fx.engine.named_site::<Callback>("summary-republish");
    let mut republish = Vec::new();
    for i in 0..20_000 {
        let start = Instant::now();
        black_box(site.promote(&SETS[i % 2]).expect("promote"));
        republish.push(start.elapsed().as_secs_f64() * 1e6);
    }
    let mut effect = Vec::new();
    for i in 0..300 {
        let start = Instant::now();
        patch.retarget(&SETS[i % 2]).expect("retarget");
        assert!(patch.wait(Duration::from_secs(10)));
        effect.push(start.elapsed().as_secs_f64() * 1e6);
    }
    let pct = |v: &mut Vec<f64>, p: f64| {
        v.sort_by(f64::total_cmp);
        v[((v.len() - 1) as f64 * p) as usize]
    };
    println!("retarget / republish latency (single calls, us: median, p90, p99, max):");
    for (name, v) in [
        ("patch retarget (call)", &mut retarget),
        ("jit republish", &mut republish),
        ("patch retarget to effect", &mut effect),
    ] {
        println!(
            "  {name:<26} {:8.2} {:8.2} {:8.2} {:8.2}",
            pct(v, 0.5),
            pct(v, 0.9),
            pct(v, 0.99),
            pct(v, 1.0)
        );
    }
    println!(
        "  goal: patch retarget median {:.2} us (<= 2)",
        pct(&mut retarget, 0.5)
    );
}

#[path = "common/interleave.rs"]
mod interleave;

/// The static entry's slot-0 hit, the pointer entry's and a plain indirect
/// call, each loop in four copies at other addresses
/// (`interleave::at_every_pad`), interleaved in one run: at a 4-cycle
/// target a cycle is 25%, and whether a loop pays it moves with where the
/// loop lands, which is why single builds disagree.
fn hits_by_placement(fx: &Fixture) {
    #[derive(Clone)]
    struct StaticHit(Engine);
    impl interleave::Body for StaticHit {
        #[inline(always)]
        fn run(&self, n: u64) -> u64 {
            let pinned = self.0.pin();
            let f: Callback = black_box(t0);
            let mut x = 1u64;
            for _ in 0..n {
                x = STATIC_JIT.call(&pinned, f, (x,));
            }
            x
        }
    }
    #[derive(Clone)]
    struct PointerHit(Engine, Site<Callback>);
    impl interleave::Body for PointerHit {
        #[inline(always)]
        fn run(&self, n: u64) -> u64 {
            let pinned = self.0.pin();
            let f: Callback = black_box(t0);
            let mut x = 1u64;
            for _ in 0..n {
                x = self.1.call(&pinned, f, (x,));
            }
            x
        }
    }
    let mut variants =
        interleave::at_every_pad("static entry, slot 0", StaticHit(fx.engine.clone()));
    variants.extend(interleave::at_every_pad(
        "pointer entry, slot 0",
        PointerHit(fx.engine.clone(), fx.site.clone()),
    ));
    variants.extend(interleave::at_every_pad(
        "plain indirect call",
        interleave::IndirectLoop(t0),
    ));
    let m = interleave::sweep_medians(&variants);
    let k = interleave::PADS.len();
    println!(
        "\nslot-0 hits by loop placement (31 rounds x 100,000 dependent calls, median round):"
    );
    for (i, pad) in interleave::PADS.iter().enumerate() {
        println!(
            "  copy +{pad:<2}: static {:5.2} ns, pointer {:5.2} ns, indirect {:5.2} ns; static / indirect {:.3}, pointer / indirect {:.3}",
            m[i],
            m[k + i],
            m[2 * k + i],
            m[i] / m[2 * k + i],
            m[k + i] / m[2 * k + i]
        );
    }
    let min = |r: std::ops::Range<usize>| m[r].iter().cloned().fold(f64::INFINITY, f64::min);
    let max = |r: std::ops::Range<usize>| m[r].iter().cloned().fold(0.0, f64::max);
    println!(
        "  static entry / indirect: best copies {:.3}x, worst copies {:.3}x (goal <= 1.15)",
        min(0..k) / min(2 * k..3 * k),
        max(0..k) / max(2 * k..3 * k)
    );
}

fn main() {
    let fx = fixture();
    let mut c = Criterion::default().configure_from_args();
    hits(&mut c, &fx);
    retargets(&mut c, &fx);
    c.final_summary();
    interleaved_summary(&fx);
    hits_by_placement(&fx);
}
