//! What learning costs on the call path, in one run (criterion).
//!
//! * `stable_*`: a site whose policy has promoted its target and now counts
//!   only misses (the lean thunk), against the same promotion fixed by hand
//!   with no counting at all. Goal: at most 5% more.
//! * `threads_*`: one site called by this thread alone, and while a second
//!   thread calls the same site flat out; the figure is this thread's time
//!   per call. Goal: within 10%.
//! * `bypass` vs `indirect`: a megamorphic site demoted to a plain indirect
//!   call, against a plain indirect call. Goal: within 5%.
//!
//! Latency chains, as in `dispatch`: quote the ratios, not the nanoseconds.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use criterion::Criterion;
use hotcall::{Engine, EngineConfig, PolicyConfig, PolicyState, Site, SiteOptions};

type Callback = extern "C" fn(u64) -> u64;

macro_rules! targets {
    ($($name:ident = $k:expr),* $(,)?) => {
        $(#[inline(never)] extern "C" fn $name(x: u64) -> u64 { x.wrapping_mul($k).wrapping_add(1) })*
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
const SIXTEEN: [Callback; 16] = [
    t0, t1, t2, t3, t4, t5, t6, t7, t8, t9, t10, t11, t12, t13, t14, t15,
];

const CHAIN: u64 = 1000;

/// A target with about ten cycles of dependent work (two multiplies, a
/// rotate, a shift), for overheads relative to a callback that does
/// something.
#[inline(never)]
extern "C" fn heavy(x: u64) -> u64 {
    (x.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17) ^ (x >> 7)).wrapping_mul(3)
}

fn chain(engine: &Engine, site: &Site<Callback>, f: Callback) -> u64 {
    let pinned = engine.pin();
    let mut x = black_box(1u64);
    for _ in 0..CHAIN {
        x = site.call(&pinned, f, (x,));
    }
    x
}

/// Drives `site` with `stream` and ticks until its policy is in `state`.
fn learn(
    engine: &Engine,
    site: &Site<Callback>,
    stream: &[Callback],
    want: fn(PolicyState) -> bool,
) {
    for _ in 0..64 {
        let pinned = engine.pin();
        for (i, f) in stream.iter().cycle().take(4096).enumerate() {
            black_box(site.call(&pinned, *f, (i as u64,)));
        }
        drop(pinned);
        engine.tick();
        if want(site.stats().state) {
            return;
        }
    }
    panic!("the site never reached the wanted state: {}", site.stats());
}

fn counting(c: &mut Criterion) {
    let engine = Engine::with_config(EngineConfig::manual());
    let learned = engine.named_site::<Callback>("learned");
    learn(&engine, &learned, &[t0], |s| s == PolicyState::Promoted);
    let fixed = engine.named_site::<Callback>("fixed");
    fixed.promote(&[t0]).expect("promote");
    eprintln!("{}\n{}", learned.stats(), fixed.stats());

    let mut g = c.benchmark_group("learning");
    g.throughput(criterion::Throughput::Elements(CHAIN));
    g.bench_function("stable_counting_misses", |b| {
        b.iter(|| chain(&engine, &learned, black_box(t0)))
    });
    g.bench_function("stable_no_counting", |b| {
        b.iter(|| chain(&engine, &fixed, black_box(t0)))
    });
    // Misses of the same two sites: the lean thunk's miss jumps through the
    // site's miss stub and the recording bridge; the fixed one's does not.
    g.bench_function("miss_counting", |b| {
        b.iter(|| chain(&engine, &learned, black_box(t1)))
    });
    g.bench_function("miss_no_counting", |b| {
        b.iter(|| chain(&engine, &fixed, black_box(t1)))
    });

    // Megamorphic: 16 targets uniformly; the policy demotes to a bypass.
    let mega = engine.named_site::<Callback>("megamorphic");
    learn(&engine, &mega, &SIXTEEN, |s| {
        matches!(s, PolicyState::Bypass { .. })
    });
    g.bench_function("bypass", |b| {
        b.iter(|| chain(&engine, &mega, black_box(t0)))
    });
    g.bench_function("indirect", |b| {
        let f: Callback = black_box(t0);
        b.iter(|| {
            let mut x = black_box(1u64);
            for _ in 0..CHAIN {
                x = f(x);
            }
            x
        })
    });
    g.finish();
}

fn threads(c: &mut Criterion) {
    let engine = Engine::with_config(EngineConfig::manual());
    let site = engine.site_with::<Callback>(SiteOptions::new().name("shared"));
    learn(&engine, &site, &[t0, t0, t0, t1], |s| {
        s == PolicyState::Promoted
    });
    let mut g = c.benchmark_group("learning");
    g.throughput(criterion::Throughput::Elements(CHAIN));
    // The same mix on both threads: three hits on slot 0 for one on slot 1.
    let mix = |i: u64| if i % 4 == 3 { t1 as Callback } else { t0 };
    let run = |n: u64| {
        let pinned = engine.pin();
        let mut x = 1u64;
        for i in 0..n {
            x = site.call(&pinned, mix(i), (x,));
        }
        x
    };
    g.bench_function("threads_alone", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                black_box(run(CHAIN));
            }
            start.elapsed()
        })
    });
    g.bench_function("threads_with_a_second_caller", |b| {
        b.iter_custom(|iters| {
            let stop = AtomicBool::new(false);
            std::thread::scope(|s| {
                s.spawn(|| {
                    while !stop.load(Ordering::Relaxed) {
                        black_box(run(CHAIN));
                    }
                });
                // Let the other thread get going.
                std::thread::sleep(Duration::from_millis(1));
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(run(CHAIN));
                }
                let t = start.elapsed();
                stop.store(true, Ordering::Relaxed);
                t
            })
        })
    });
    g.finish();
    let _ = PolicyConfig::Off;
}

#[path = "common/interleave.rs"]
mod interleave;

/// The goals' ratios, timed interleaved in one run (criterion times each
/// benchmark in its own stretch of time, and this machine's load drifts).
fn summary() {
    let engine = Engine::with_config(EngineConfig::manual());
    let learned = engine.named_site::<Callback>("learned");
    learn(&engine, &learned, &[t0], |s| s == PolicyState::Promoted);
    let fixed = engine.named_site::<Callback>("fixed");
    fixed.promote(&[t0]).expect("promote");
    let mega = engine.named_site::<Callback>("megamorphic");
    learn(&engine, &mega, &SIXTEEN, |s| {
        matches!(s, PolicyState::Bypass { .. })
    });
    let shared = engine.named_site::<Callback>("shared");
    learn(&engine, &shared, &[t0, t0, t0, t1], |s| {
        s == PolicyState::Promoted
    });

    let on = |site: &Site<Callback>, f: Callback| {
        let site = site.clone();
        let engine = engine.clone();
        Box::new(move |n: u64| {
            let pinned = engine.pin();
            let mut x = 1u64;
            for _ in 0..n {
                x = site.call(&pinned, f, (x,));
            }
            x
        }) as interleave::Run<'_>
    };
    let mix_run = |n: u64| {
        let pinned = engine.pin();
        let mut x = 1u64;
        for i in 0..n {
            let f = if i % 4 == 3 { t1 as Callback } else { t0 };
            x = shared.call(&pinned, f, (x,));
        }
        x
    };
    // `run` on this thread while a second thread runs it flat out.
    let with_second_caller = |run: &(dyn Fn(u64) -> u64 + Sync), n: u64| {
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    black_box(run(1000));
                }
            });
            std::thread::sleep(Duration::from_micros(200));
            let x = run(n);
            stop.store(true, Ordering::Relaxed);
            x
        })
    };
    // The control: the same two threads making plain indirect calls, which
    // share nothing at all. Whatever they lose is the machine's (two vCPUs
    // that may be hyperthreads of one core), not hotcall's.
    let plain_mix = |n: u64| {
        let (f0, f1): (Callback, Callback) = (black_box(t0), black_box(t1));
        let mut x = 1u64;
        for i in 0..n {
            x = if i % 4 == 3 { f1(x) } else { f0(x) };
        }
        x
    };
    let indirect_to = |f: Callback| {
        move |n: u64| {
            let f: Callback = black_box(f);
            let mut x = 1u64;
            for _ in 0..n {
                x = f(x);
            }
            x
        }
    };
    let variants: Vec<(&str, interleave::Run<'_>)> = vec![
        ("stable site, counting misses", on(&learned, t0)),
        ("same thunk, no counting", on(&fixed, t0)),
        ("stable site, a miss", on(&learned, t1)),
        ("same thunk, a miss, no counting", on(&fixed, t1)),
        ("bypassed site", on(&mega, t0)),
        ("plain indirect call", Box::new(indirect_to(t0))),
        ("bypassed site, ~10-cycle target", on(&mega, heavy)),
        (
            "plain indirect, ~10-cycle target",
            Box::new(indirect_to(heavy)),
        ),
    ];
    let m = interleave::medians(&variants, 31, 100_000, 1);
    println!("\ninterleaved (31 rounds x 100,000 dependent calls, median round):");
    for ((name, _), ns) in variants.iter().zip(&m) {
        println!("  {name:<34} {ns:6.2} ns/call");
    }
    // Two threads: the measured thread's CPU time, so that time it spends
    // descheduled by other load on this 2-vCPU machine does not count.
    let threads: Vec<(&str, interleave::Run<'_>)> = vec![
        ("one thread alone", Box::new(mix_run)),
        (
            "one thread of two",
            Box::new(|n| with_second_caller(&mix_run, n)),
        ),
        ("plain calls, one thread alone", Box::new(plain_mix)),
        (
            "plain calls, one thread of two",
            Box::new(|n| with_second_caller(&plain_mix, n)),
        ),
    ];
    let t = interleave::medians_by(interleave::Clock::ThreadCpu, &threads, 31, 100_000, 1);
    for ((name, _), ns) in threads.iter().zip(&t) {
        println!("  {name:<34} {ns:6.2} ns/call (thread CPU time)");
    }
    println!(
        "  goals: counting on a stable site {:.3}x (<= 1.05); one of two threads {:.3}x alone (<= 1.10; plain calls on the same two threads: {:.3}x); bypass {:.3}x indirect (<= 1.05)",
        m[0] / m[1],
        t[1] / t[0],
        t[3] / t[2],
        m[4] / m[5]
    );
    println!(
        "  a miss on a stable site: {:.2}x the same miss without counting; bypass with a ~10-cycle target {:.3}x indirect",
        m[2] / m[3],
        m[6] / m[7]
    );
    bypass_by_placement(&engine, &mega);
}

/// The bypass against a plain indirect call, each loop at the four
/// placements of `interleave::PADS`, interleaved in one run: at a 4-cycle
/// target one cycle is 25%, and which loop pays it moves with placement.
fn bypass_by_placement(engine: &Engine, mega: &Site<Callback>) {
    #[derive(Clone)]
    struct Bypass(Engine, Site<Callback>);
    impl interleave::Body for Bypass {
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
    let bypass = Bypass(engine.clone(), mega.clone());
    let mut variants = interleave::at_every_pad("bypassed site", bypass);
    variants.extend(interleave::at_every_pad(
        "plain indirect call",
        interleave::IndirectLoop(t0),
    ));
    let m = interleave::sweep_medians(&variants);
    let pads = interleave::PADS.len();
    println!("\nbypass by loop placement (31 rounds x 100,000 dependent calls, median round):");
    let mut ratios = Vec::new();
    for (k, pad) in interleave::PADS.iter().enumerate() {
        let (b, i) = (m[k], m[pads + k]);
        ratios.push(b / i);
        println!(
            "  +{pad:<2} bytes: bypassed {b:5.2} ns, indirect {i:5.2} ns, ratio {:.3}",
            b / i
        );
    }
    let best = m[..pads].iter().cloned().fold(f64::INFINITY, f64::min)
        / m[pads..].iter().cloned().fold(f64::INFINITY, f64::min);
    println!(
        "  bypass / indirect per placement: {}; best placement of each: {best:.3}x (goal <= 1.05)",
        ratios
            .iter()
            .map(|r| format!("{r:.3}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    counting(&mut c);
    threads(&mut c);
    c.final_summary();
    summary();
}
