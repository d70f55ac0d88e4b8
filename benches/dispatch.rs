//! Micro costs of the dispatch paths, in one run (criterion).
//!
//! Each benchmark runs a latency chain: the result of one call feeds the
//! argument of the next, so calls cannot overlap and the figure is the cost
//! of one call, as in FACTS.md. Ratios to `indirect` are the numbers to
//! quote; absolute nanoseconds drift with the machine's load.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use hotcall::Engine;
use hotcall::jit::{Arch, CompilerOptions, Placement, ThunkCompiler};

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

/// The same promotion compiled by rustc: a compare chain with tail jumps,
/// the best a compiler can do for a site promoted at compile time. The
/// reference for what the thunk's shape costs on this CPU.
#[inline(never)]
extern "C" fn compiled_chain(f: Callback, x: u64) -> u64 {
    if f as usize == t0 as *const () as usize {
        t0(x)
    } else if f as usize == t1 as *const () as usize {
        t1(x)
    } else {
        f(x)
    }
}

const CHAIN: u64 = 1000;

fn dispatch(c: &mut Criterion) {
    let engine = Engine::new();
    let site = engine.named_site::<Callback>("bench");
    site.promote(&[t0, t1]).expect("promote");
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
    for (name, target) in [
        ("thunk_slot0", t0 as Callback),
        ("thunk_slot1", t1),
        ("thunk_miss", t2),
    ] {
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
    // The same thunk with Cranelift's call-and-return hit (no tail jump).
    let call_form = Engine::with_config(hotcall::EngineConfig {
        tail_jumps: false,
        ..Default::default()
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
    let engine = Engine::new();
    let site = engine.named_site::<Callback>("publish");
    let mut g = c.benchmark_group("publish");
    // Alternate the slot order so every iteration really compiles anew.
    let mut flip = false;
    g.bench_function("compile_install_2_slots", |b| {
        b.iter(|| {
            flip = !flip;
            let order: [Callback; 2] = if flip { [t0, t1] } else { [t1, t0] };
            site.promote(&order).expect("promote")
        })
    });
    // The same with the membarrier that serializes all cores (the aarch64
    // default; optional on x86-64).
    let serializing = Engine::with_config(hotcall::EngineConfig {
        serialize_cores: true,
        ..Default::default()
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
        lo: t0 as Callback as usize as u64,
        hi: t0 as Callback as usize as u64 + 4096,
    };
    let orders = [
        [
            t0 as Callback as usize as u64,
            t1 as Callback as usize as u64,
        ],
        [
            t1 as Callback as usize as u64,
            t0 as Callback as usize as u64,
        ],
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
