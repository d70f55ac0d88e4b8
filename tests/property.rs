//! The property test of issue 3: random call sequences on random sites,
//! with learning ticks, hand promotions, policy changes, demotions and
//! Patch completions interleaved at random, always return what a plain
//! indirect call returns.
//!
//! Each case builds a manual engine (learning only on `Engine::tick`) with
//! six sites: a JIT site and a Patch site for each of three signatures
//! chosen for the thunk's hard parts (a plain `u64`; floats mixed with
//! narrow integers; eight integers, so that with the target as the
//! thunk's first argument three of them travel on the stack). The engine's
//! policy is `Adaptive` with thresholds small enough that a few hundred
//! calls move a site through profiling, promotion, phase changes and
//! bypass within one case. Every call's result is compared with the plain
//! call's (floats bit for bit); proptest shrinks a failure to a minimal
//! sequence.
//!
//! The oracle could only pass vacuously if the interesting paths never
//! ran, so the run tallies what the calls went through (promoted hits,
//! misses through a thunk, plain calls in bypass, Patch slots enabled,
//! failed requests) and requires each to have happened.
//!
//! `PROPTEST_CASES` sets the number of cases (default 256 here; about a
//! second, debug or release).
//!
//! Negative control, done by hand when this test was written: making the
//! JIT template link slot 0's compare constant to slot 2's target (one
//! changed index in `Template::instantiate`) fails the debug build at once
//! (the template's cross-check against a fresh compile), and the release
//! build, where only this oracle looks, with the minimal sequence "48
//! calls mixing targets 2, 0, 3 on site 0; tick; one call of target 3":
//! the learned 3-slot thunk returned another target's result.

use std::sync::atomic::{AtomicU64, Ordering};

use hotcall::policy::{AdaptiveConfig, PolicyState};
use hotcall::{Engine, EngineConfig, PatchSite, PolicyConfig, SeedConfig, Site, SiteFn, SiteMode};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// Targets of each family: enough that the Patch sites (2 to 4 slots) and
/// the policies' four slots always leave some to miss.
const POOL: usize = 6;

type Word = extern "C" fn(u64) -> u64;
type Mixed = extern "C" fn(f32, i8, f64, u16) -> f64;
type Stacked = extern "C" fn(i64, i8, u16, i32, u64, i64, u8, i16) -> i32;

macro_rules! word_targets {
    ($($name:ident = $k:expr),*) => {
        $(extern "C" fn $name(x: u64) -> u64 { x.wrapping_mul($k).rotate_left($k) ^ $k })*
        const WORD: [Word; POOL] = [$($name),*];
    };
}
word_targets!(w0 = 3, w1 = 5, w2 = 7, w3 = 11, w4 = 13, w5 = 17);

macro_rules! mixed_targets {
    ($($name:ident = $k:expr),*) => {
        $(extern "C" fn $name(a: f32, b: i8, c: f64, d: u16) -> f64 {
            (a as f64) * $k + (b as f64) - c / $k + (d as f64) * 0.5
        })*
        const MIXED: [Mixed; POOL] = [$($name),*];
    };
}
mixed_targets!(m0 = 2.0, m1 = 3.0, m2 = 5.0, m3 = 7.0, m4 = 11.0, m5 = 13.0);

macro_rules! stacked_targets {
    ($($name:ident = $k:expr),*) => {
        $(#[allow(clippy::too_many_arguments)]
        extern "C" fn $name(a: i64, b: i8, c: u16, d: i32, e: u64, f: i64, g: u8, h: i16) -> i32 {
            // Every parameter weighs differently, so a swapped or dropped
            // argument changes the result.
            (a as i32).wrapping_mul($k)
                ^ (b as i32).wrapping_mul(3)
                ^ (c as i32).wrapping_mul(5)
                ^ d.wrapping_mul(7)
                ^ (e as i32).wrapping_mul(11)
                ^ (f as i32).wrapping_mul(13)
                ^ (g as i32).wrapping_mul(17)
                ^ (h as i32).wrapping_mul(19 + $k)
        })*
        const STACKED: [Stacked; POOL] = [$($name),*];
    };
}
stacked_targets!(s0 = 2, s1 = 4, s2 = 6, s3 = 8, s4 = 10, s5 = 12);

/// Arguments from one 64-bit value (a splitmix step per call, so a burst
/// varies its arguments).
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn mixed_args(x: u64) -> (f32, i8, f64, u16) {
    let r = mix(x);
    // Finite values only: a NaN's payload is not a result to compare.
    (
        (r as i16) as f32 / 8.0,
        (r >> 16) as i8,
        ((r >> 24) as i32) as f64 / 1024.0,
        (r >> 56) as u16 | ((r >> 8) as u16 & 0xff00),
    )
}

#[allow(clippy::type_complexity)]
fn stacked_args(x: u64) -> (i64, i8, u16, i32, u64, i64, u8, i16) {
    let (r, s) = (mix(x), mix(!x));
    (
        r as i64,
        (r >> 8) as i8,
        (r >> 16) as u16,
        (r >> 32) as i32,
        s,
        (s >> 3) as i64,
        (s >> 40) as u8,
        (s >> 48) as i16,
    )
}

/// One site of each kind for each family.
struct World {
    engine: Engine,
    word: (Site<Word>, PatchSite<Word>),
    mixed: (Site<Mixed>, PatchSite<Mixed>),
    stacked: (Site<Stacked>, PatchSite<Stacked>),
}

/// Sites in a case: (family 0..3) x (JIT, Patch).
const SITES: usize = 6;

/// Small thresholds, so that a case's few hundred calls per site reach
/// decisions, phase changes and bypasses.
fn quick_adaptive() -> AdaptiveConfig {
    AdaptiveConfig {
        min_samples: 48,
        reprofile_every: 3,
        reprofile_max: 12,
        bypass_backoff: 2,
        bypass_backoff_max: 8,
        ..AdaptiveConfig::default()
    }
}

fn quick_seed() -> SeedConfig {
    SeedConfig {
        relearn_after: 40,
        catch_all_limit: 40,
        min_leader_hits: 10,
        ..SeedConfig::default()
    }
}

impl World {
    fn new() -> World {
        let engine = Engine::with_config(EngineConfig {
            policy: PolicyConfig::AdaptiveWith(quick_adaptive()),
            ..EngineConfig::manual()
        });
        World {
            word: (engine.named_site("word"), patch(&engine, 2)),
            mixed: (engine.named_site("mixed"), patch(&engine, 4)),
            stacked: (engine.named_site("stacked"), patch(&engine, 3)),
            engine,
        }
    }
}

fn patch<F: SiteFn>(engine: &Engine, slots: usize) -> PatchSite<F> {
    engine.patch_site(slots).expect("a Patch site")
}

/// A policy to give a site.
#[derive(Clone, Debug)]
enum PolicyChoice {
    Adaptive,
    Seed,
    Off,
    Fixed(Vec<usize>),
}

#[derive(Clone, Debug)]
enum Op {
    /// `n` calls of one target.
    Burst {
        site: usize,
        target: usize,
        n: u16,
        seed: u64,
    },
    /// `n` calls whose targets cycle through `targets` (a mix).
    Mix {
        site: usize,
        targets: Vec<usize>,
        n: u16,
        seed: u64,
    },
    /// One learning round over every site.
    Tick,
    /// A hand promotion (JIT: compile and publish; Patch: retarget).
    /// Repeated targets or too many for a Patch site must be rejected and
    /// change nothing.
    Promote {
        site: usize,
        targets: Vec<usize>,
    },
    SetPolicy {
        site: usize,
        policy: PolicyChoice,
    },
    Demote {
        site: usize,
    },
    /// Completes a Patch site's pending retarget if its grace period passed.
    Poll {
        site: usize,
    },
}

fn targets(max: usize) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0..POOL, 0..=max)
}

fn op() -> impl Strategy<Value = Op> {
    let site = 0..SITES;
    prop_oneof![
        6 => (site.clone(), 0..POOL, 1..400u16, any::<u64>())
            .prop_map(|(site, target, n, seed)| Op::Burst { site, target, n, seed }),
        4 => (site.clone(), prop::collection::vec(0..POOL, 1..=POOL), 1..400u16, any::<u64>())
            .prop_map(|(site, targets, n, seed)| Op::Mix { site, targets, n, seed }),
        5 => Just(Op::Tick),
        1 => (site.clone(), targets(5)).prop_map(|(site, targets)| Op::Promote { site, targets }),
        1 => (
            site.clone(),
            prop_oneof![
                Just(PolicyChoice::Adaptive),
                Just(PolicyChoice::Seed),
                Just(PolicyChoice::Off),
                targets(4).prop_map(PolicyChoice::Fixed),
            ]
        )
            .prop_map(|(site, policy)| Op::SetPolicy { site, policy }),
        1 => site.clone().prop_map(|site| Op::Demote { site }),
        1 => site.prop_map(|site| Op::Poll { site }),
    ]
}

/// What the calls went through, over the whole run.
#[derive(Default)]
struct Tally {
    cases: AtomicU64,
    promoted_hits: AtomicU64,
    thunk_misses: AtomicU64,
    bypassed: AtomicU64,
    rejected: AtomicU64,
    promoted_by_ticks: AtomicU64,
}

impl Tally {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// How the next calls of `target` will go on a site, from its statistics.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Path {
    Hit,
    Miss,
    Plain,
}

/// What the test does with a site, for both kinds, so that one macro arm
/// per site serves every operation.
trait AnySite<F> {
    /// How the next calls of `target` will go, and the policy's state.
    fn path(&self, target: usize) -> (Path, PolicyState);
    /// A hand promotion; whether it was accepted.
    fn hand(&self, targets: &[F]) -> bool;
    fn give_policy(&self, policy: PolicyConfig);
    fn turn_off(&self);
    fn complete(&self);
}

impl<F: SiteFn> AnySite<F> for Site<F> {
    fn path(&self, target: usize) -> (Path, PolicyState) {
        let s = self.stats();
        let path = match s.mode {
            SiteMode::PlainIndirect => Path::Plain,
            SiteMode::Thunk if s.slots.iter().any(|slot| slot.target == target) => Path::Hit,
            SiteMode::Thunk => Path::Miss,
        };
        (path, s.state)
    }
    fn hand(&self, targets: &[F]) -> bool {
        self.promote(targets).is_ok()
    }
    fn give_policy(&self, policy: PolicyConfig) {
        self.set_policy(policy);
    }
    fn turn_off(&self) {
        self.demote();
    }
    fn complete(&self) {}
}

impl<F: SiteFn> AnySite<F> for PatchSite<F> {
    fn path(&self, target: usize) -> (Path, PolicyState) {
        let s = self.stats();
        let path = match s.current_entry {
            None => Path::Plain,
            Some(_) if s.slots.iter().any(|slot| slot.enabled == Some(target)) => Path::Hit,
            Some(_) => Path::Miss,
        };
        (path, s.state)
    }
    fn hand(&self, targets: &[F]) -> bool {
        self.retarget(targets).is_ok()
    }
    fn give_policy(&self, policy: PolicyConfig) {
        self.set_policy(policy);
    }
    fn turn_off(&self) {
        self.demote();
    }
    fn complete(&self) {
        self.poll();
    }
}

/// Runs `$body` with `$site` bound to the site `$index` names, `$pool` to
/// its family's targets, `$args` to its argument maker and `$same` to its
/// result comparison.
macro_rules! with_site {
    ($world:expr, $index:expr, |$site:ident, $pool:ident, $args:ident, $same:ident| $body:expr) => {{
        let world: &World = $world;
        let word_args = |x: u64| (mix(x),);
        let word_same = |a: u64, b: u64| a == b;
        let mixed_same = |a: f64, b: f64| a.to_bits() == b.to_bits();
        let stacked_same = |a: i32, b: i32| a == b;
        match $index {
            0 => {
                let ($site, $pool, $args, $same) = (&world.word.0, &WORD, word_args, word_same);
                $body
            }
            1 => {
                let ($site, $pool, $args, $same) = (&world.word.1, &WORD, word_args, word_same);
                $body
            }
            2 => {
                let ($site, $pool, $args, $same) = (&world.mixed.0, &MIXED, mixed_args, mixed_same);
                $body
            }
            3 => {
                let ($site, $pool, $args, $same) = (&world.mixed.1, &MIXED, mixed_args, mixed_same);
                $body
            }
            4 => {
                let ($site, $pool, $args, $same) =
                    (&world.stacked.0, &STACKED, stacked_args, stacked_same);
                $body
            }
            5 => {
                let ($site, $pool, $args, $same) =
                    (&world.stacked.1, &STACKED, stacked_args, stacked_same);
                $body
            }
            _ => unreachable!("site index {}", $index),
        }
    }};
}

/// Makes the calls of `plan` (target indices) through the site, checking
/// each against the plain call, and tallies the path each took.
fn calls(
    world: &World,
    index: usize,
    plan: impl Iterator<Item = usize>,
    seed: u64,
) -> Result<(), TestCaseError> {
    with_site!(world, index, |site, pool, args, same| {
        let pinned = world.engine.pin();
        for (i, t) in plan.enumerate() {
            let f = pool[t];
            let x = seed.wrapping_add(i as u64);
            let got = site.call(&pinned, f, args(x));
            let want = f.call_plain(args(x));
            prop_assert!(
                same(got, want),
                "site {index} target {t} call {i}: {got:?} != plain {want:?}"
            );
        }
        Ok(())
    })
}

/// The plain call of a target, spelled out per family so that the oracle
/// does not go through anything of hotcall's.
trait Plain {
    type Args;
    type Ret;
    fn call_plain(self, args: Self::Args) -> Self::Ret;
}

impl Plain for Word {
    type Args = (u64,);
    type Ret = u64;
    fn call_plain(self, (a,): (u64,)) -> u64 {
        self(a)
    }
}

impl Plain for Mixed {
    type Args = (f32, i8, f64, u16);
    type Ret = f64;
    fn call_plain(self, (a, b, c, d): Self::Args) -> f64 {
        self(a, b, c, d)
    }
}

impl Plain for Stacked {
    type Args = (i64, i8, u16, i32, u64, i64, u8, i16);
    type Ret = i32;
    fn call_plain(self, (a, b, c, d, e, f, g, h): Self::Args) -> i32 {
        self(a, b, c, d, e, f, g, h)
    }
}

fn path_of(world: &World, index: usize, target: usize) -> (Path, PolicyState) {
    with_site!(world, index, |site, pool, _args, _same| {
        site.path(pool[target] as *const () as usize)
    })
}

fn policy(choice: &PolicyChoice, pool: &[usize]) -> PolicyConfig {
    match choice {
        PolicyChoice::Adaptive => PolicyConfig::AdaptiveWith(quick_adaptive()),
        PolicyChoice::Seed => PolicyConfig::Seed(quick_seed()),
        PolicyChoice::Off => PolicyConfig::Off,
        PolicyChoice::Fixed(t) => PolicyConfig::Fixed(t.iter().map(|&i| pool[i] as u64).collect()),
    }
}

fn run_case(ops: &[Op], tally: &Tally) -> Result<(), TestCaseError> {
    let world = World::new();
    for op in ops {
        match op {
            Op::Burst {
                site,
                target,
                n,
                seed,
            } => {
                let (path, _) = path_of(&world, *site, *target);
                calls(
                    &world,
                    *site,
                    std::iter::repeat_n(*target, *n as usize),
                    *seed,
                )?;
                count_path(tally, path, u64::from(*n));
            }
            Op::Mix {
                site,
                targets,
                n,
                seed,
            } => {
                for &t in targets {
                    let (path, _) = path_of(&world, *site, t);
                    // Each target of the mix gets about n / len calls.
                    count_path(tally, path, u64::from(*n) / targets.len() as u64);
                }
                let plan = targets.iter().copied().cycle().take(*n as usize);
                calls(&world, *site, plan, *seed)?;
            }
            Op::Tick => {
                let before: Vec<_> = (0..SITES).map(|s| path_of(&world, s, 0).1).collect();
                world.engine.tick();
                for (s, was) in before.iter().enumerate() {
                    let now = path_of(&world, s, 0).1;
                    if now == PolicyState::Promoted && *was != PolicyState::Promoted {
                        Tally::add(&tally.promoted_by_ticks, 1);
                    }
                }
            }
            Op::Promote { site, targets } => {
                let ok = with_site!(&world, *site, |s, pool, _args, _same| {
                    let fs: Vec<_> = targets.iter().map(|&i| pool[i]).collect();
                    s.hand(&fs)
                });
                let repeated = (1..targets.len()).any(|i| targets[..i].contains(&targets[i]));
                if repeated {
                    prop_assert!(
                        !ok,
                        "site {site}: repeated targets {targets:?} were accepted"
                    );
                }
                if !ok {
                    Tally::add(&tally.rejected, 1);
                }
            }
            Op::SetPolicy {
                site,
                policy: choice,
            } => {
                with_site!(&world, *site, |s, pool, _args, _same| {
                    let addrs: Vec<usize> = pool.iter().map(|f| *f as *const () as usize).collect();
                    s.give_policy(policy(choice, &addrs))
                });
            }
            Op::Demote { site } => with_site!(&world, *site, |s, _pool, _args, _same| s.turn_off()),
            Op::Poll { site } => with_site!(&world, *site, |s, _pool, _args, _same| s.complete()),
        }
    }
    Tally::add(&tally.cases, 1);
    Ok(())
}

fn count_path(tally: &Tally, path: Path, n: u64) {
    let counter = match path {
        Path::Hit => &tally.promoted_hits,
        Path::Miss => &tally.thunk_misses,
        Path::Plain => &tally.bypassed,
    };
    Tally::add(counter, n);
}

#[test]
fn random_calls_ticks_and_republishes_always_return_the_plain_calls_result() {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let mut runner = TestRunner::new(Config {
        cases,
        // Failures are saved next to this file and replayed first.
        source_file: Some(file!()),
        ..Config::default()
    });
    let tally = Tally::default();
    let ops = prop::collection::vec(op(), 1..80);
    runner
        .run(&ops, |ops| run_case(&ops, &tally))
        .unwrap_or_else(|e| panic!("{e}"));

    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let seen = [
        ("promoted hits", get(&tally.promoted_hits)),
        ("misses through a thunk", get(&tally.thunk_misses)),
        ("plain calls (bypass, off)", get(&tally.bypassed)),
        ("promotions by ticks", get(&tally.promoted_by_ticks)),
        ("rejected requests", get(&tally.rejected)),
    ];
    eprintln!("{} cases; {seen:?}", get(&tally.cases));
    for (what, n) in seen {
        assert!(
            n > 0,
            "no {what} in the whole run: the oracle was never tested there"
        );
    }
}
