//! Micro costs of the dispatch paths, in one run (criterion): a hit in each
//! slot of a 4-slot thunk, a miss, the bypass of an unpromoted site, and the
//! cost of publishing and retargeting a thunk. The targets are the shared
//! workload pool (`hotcall::workload::POOL`), the same functions `hotcall
//! bench` calls.
//!
//! Each benchmark runs a latency chain: the result of one call feeds the
//! argument of the next, so calls cannot overlap and the figure is the cost
//! of one call, as in FACTS.md. Ratios to `indirect` are the numbers to
//! quote; absolute nanoseconds drift with the machine's load.
//!
//! Paths of strategies that do not exist yet (the patched static entry, the
//! retpoline and listed baselines, learning) are left out until they land.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use hotcall::workload::{Callback, POOL};
use hotcall::{Engine, EngineConfig, PolicyConfig, SiteOptions};
use hotcall_jit::{Arch, CompilerOptions, Placement, ThunkCompiler};

/// Engines learn only when told (`Engine::tick`), so no background thread
/// runs during measurements; every site here is promoted by hand or off.
fn engine() -> Engine {
    Engine::with_config(EngineConfig::manual())
}

/// The promoted targets (slots 0 to 3) and a target no thunk promotes.
const SLOTS: usize = 4;
const MISS: usize = SLOTS;

/// The same promotion compiled by rustc: a compare chain with tail jumps,
/// the best a compiler can do for a site promoted at compile time. The
/// reference for what the thunk's shape costs on this CPU.
#[inline(never)]
extern "C" fn compiled_chain(f: Callback, x: u64) -> u64 {
    let (t0, t1) = (POOL[0], POOL[1]);
    if f as usize == t0 as usize {
        t0(x)
    } else if f as usize == t1 as usize {
        t1(x)
    } else {
        f(x)
    }
}

const CHAIN: u64 = 1000;

fn dispatch(c: &mut Criterion) {
    let engine = engine();
    let site = engine.named_site::<Callback>("bench");
    site.promote(&POOL[..SLOTS]).expect("promote");
    let (t0, t1) = (POOL[0], POOL[1]);
    let mut g = c.benchmark_group("dispatch");
    g.throughput(criterion::Throughput::Elements(CHAIN));

    g.bench_function("direct", |b| {
        b.iter(|| {
            let mut x = black_box(1u64);
            for _ in 0..CHAIN {
                x = t0(x);
            }
            x
        })
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
    let names = [
        "thunk_slot0",
        "thunk_slot1",
        "thunk_slot2",
        "thunk_slot3",
        "thunk_miss",
    ];
    for (name, target) in names.into_iter().zip(&POOL[..=MISS]) {
        let target = *target;
        g.bench_function(name, |b| {
            let f: Callback = black_box(target);
            // One pin for the whole measurement, as a host would hold it.
            let pinned = engine.pin();
            b.iter(|| {
                let mut x = black_box(1u64);
                for _ in 0..CHAIN {
                    x = site.call(&pinned, f, (x,));
                }
                x
            })
        });
    }
    // A site with nothing promoted: the caller's check of the entry word,
    // then a plain indirect call.
    let bypass = engine.site_with::<Callback>(
        SiteOptions::new()
            .name("bench-bypass")
            .policy(PolicyConfig::Off),
    );
    g.bench_function("site_bypass", |b| {
        let f: Callback = black_box(t0);
        let pinned = engine.pin();
        b.iter(|| {
            let mut x = black_box(1u64);
            for _ in 0..CHAIN {
                x = bypass.call(&pinned, f, (x,));
            }
            x
        })
    });
    // The same thunk with Cranelift's call-and-return hit (no tail jump).
    let call_form = Engine::with_config(EngineConfig {
        tail_jumps: false,
        ..EngineConfig::manual()
    });
    let call_site = call_form.named_site::<Callback>("bench-call-form");
    call_site.promote(&[t0, t1]).expect("promote");
    g.bench_function("thunk_slot0_call_form", |b| {
        let f: Callback = black_box(t0);
        let pinned = call_form.pin();
        b.iter(|| {
            let mut x = black_box(1u64);
            for _ in 0..CHAIN {
                x = call_site.call(&pinned, f, (x,));
            }
            x
        })
    });
    g.bench_function("rustc_chain_slot0", |b| {
        let f: Callback = black_box(t0);
        let chain: extern "C" fn(Callback, u64) -> u64 = black_box(compiled_chain);
        b.iter(|| {
            let mut x = black_box(1u64);
            for _ in 0..CHAIN {
                x = chain(f, x);
            }
            x
        })
    });
    // No outer pin: each call pins and unpins the thread (the convenience
    // path's real cost).
    g.bench_function("thunk_slot0_pin_per_call", |b| {
        let f: Callback = black_box(t0);
        b.iter(|| {
            let mut x = black_box(1u64);
            for _ in 0..CHAIN {
                x = site.call_pinned(f, (x,));
            }
            x
        })
    });
    g.finish();
}

fn publish(c: &mut Criterion) {
    let (t0, t1) = (POOL[0], POOL[1]);
    let engine = engine();
    let site = engine.named_site::<Callback>("publish");
    let mut g = c.benchmark_group("publish");
    // Publish: the first thunk of a fresh site (compile, install, one
    // store; nothing to retire). The site's creation is set-up.
    g.bench_function("publish_2_slots_fresh_site", |b| {
        b.iter_batched(
            || engine.named_site::<Callback>("fresh"),
            |fresh| {
                fresh.promote(&[t0, t1]).expect("promote");
                fresh
            },
            criterion::BatchSize::SmallInput,
        )
    });
    // Retarget: replace a live thunk with one for other targets (compile,
    // install, swap, retire the old one for a deferred free).
    let mut flip = false;
    g.bench_function("retarget_2_slots", |b| {
        b.iter(|| {
            flip = !flip;
            let targets = if flip { &POOL[2..4] } else { &POOL[4..6] };
            site.promote(targets).expect("promote")
        })
    });
    // Alternate the slot order so every iteration really compiles anew.
    g.bench_function("compile_install_2_slots", |b| {
        b.iter(|| {
            flip = !flip;
            let order: [Callback; 2] = if flip { [t0, t1] } else { [t1, t0] };
            site.promote(&order).expect("promote")
        })
    });
    // The same with the membarrier that serializes all cores (the aarch64
    // default; optional on x86-64).
    let serializing = Engine::with_config(EngineConfig {
        serialize_cores: true,
        ..EngineConfig::manual()
    });
    let serializing_site = serializing.named_site::<Callback>("publish-membarrier");
    g.bench_function("compile_install_2_slots_membarrier", |b| {
        b.iter(|| {
            flip = !flip;
            let order: [Callback; 2] = if flip { [t0, t1] } else { [t1, t0] };
            serializing_site.promote(&order).expect("promote")
        })
    });
    // The compiler alone, without code memory: a copy of the shape's
    // template with the targets patched in (the default), and a full
    // Cranelift compile (templates off), which is what every publish would
    // cost without templates.
    let sig = <Callback as hotcall::SiteFn>::signature();
    let placement = Placement {
        lo: t0 as usize as u64,
        hi: t0 as usize as u64 + 4096,
    };
    let orders = [
        [t0 as usize as u64, t1 as usize as u64],
        [t1 as usize as u64, t0 as usize as u64],
    ];
    for (name, templates) in [
        ("template_instantiate_2_slots", true),
        ("cranelift_compile_2_slots", false),
    ] {
        let mut compiler = ThunkCompiler::new(
            Arch::host().unwrap(),
            CompilerOptions {
                templates,
                ..CompilerOptions::default()
            },
        )
        .unwrap();
        g.bench_function(name, |b| {
            b.iter(|| {
                flip = !flip;
                compiler
                    .compile(&sig, &orders[usize::from(flip)], placement)
                    .expect("compile")
            })
        });
    }
    g.finish();
    let stats = site.stats();
    eprintln!(
        "2-slot thunk: {} bytes of code, {} bytes allocated; {}",
        stats.code_bytes,
        stats.code_bytes.div_ceil(16) * 16,
        engine.stats()
    );
}

criterion_group!(benches, dispatch, publish);
criterion_main!(benches);
