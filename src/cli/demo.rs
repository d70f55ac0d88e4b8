//! `hotcall demo`: one site, two promoted targets, a quick interleaved
//! timing against a direct call and a plain indirect call. The full
//! comparison is `hotcall bench` (what runs without a subcommand).

use std::hint::black_box;

use hotcall::{Engine, EngineConfig, Site};

use super::CliResult;
use super::measure::{self, Timing, Variant};

/// The site's function type.
type Callback = extern "C" fn(u64) -> u64;

/// Rounds of the interleaved timing; the median round is reported.
const ROUNDS: usize = 31;
/// Calls per variant per round.
const CALLS: u64 = 500_000;

// Three targets doing the same small amount of work (one xor, one multiply)
// with different constants, so their results differ but their cost does
// not. `inline(never)` keeps the direct-call baseline a real call.

#[inline(never)]
extern "C" fn hash_a(x: u64) -> u64 {
    (x ^ 0x1234_5678).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

#[inline(never)]
extern "C" fn hash_b(x: u64) -> u64 {
    (x ^ 0x8765_4321).wrapping_mul(0xc2b2_ae3d_27d4_eb4f)
}

#[inline(never)]
extern "C" fn hash_c(x: u64) -> u64 {
    (x ^ 0x0f0f_0f0f).wrapping_mul(0x1656_67b1_9e37_79f9)
}

/// The reference: a plain indirect call of `f` on `0..n`, summed.
fn plain(f: Callback, n: u64) -> u64 {
    let f = black_box(f);
    (0..n).fold(0u64, |s, i| s.wrapping_add(f(black_box(i))))
}

/// Calls `f` through `site` on `0..n`, pinned once for the whole batch.
fn through_site(engine: &Engine, site: &Site<Callback>, f: Callback, n: u64) -> u64 {
    let f = black_box(f);
    let pinned = engine.pin();
    (0..n).fold(0u64, |s, i| {
        s.wrapping_add(site.call(&pinned, f, (black_box(i),)))
    })
}

pub fn run() -> CliResult {
    println!(
        "hotcall demo: one dispatch site for extern \"C\" fn(u64) -> u64, two targets promoted \
         (a quick look; the full comparison is `hotcall bench`)"
    );

    let engine = Engine::new();
    let site = engine.named_site::<Callback>("demo");
    match site.promote(&[hash_a, hash_b]) {
        Ok(r) => {
            println!(
                "promoted hash_a and hash_b: thunk at {:#x}, {} bytes, compiled in {:.1} us",
                r.entry,
                r.code_bytes,
                r.compile_time.as_secs_f64() * 1e6
            );
            for (name, s) in ["hash_a", "hash_b"].iter().zip(&r.slots) {
                println!("  {name} at {:#x}: {} call", s.target, s.form.name());
            }
        }
        // The site keeps working as a plain indirect call; say so and go on.
        Err(e) => println!("promotion failed, timing plain indirect calls instead: {e}"),
    }
    println!(
        "{ROUNDS} rounds x {CALLS} calls per variant, in a new random order each round; \
         median round reported"
    );

    let want_a = plain(hash_a, CALLS);
    let want_b = plain(hash_b, CALLS);
    let want_c = plain(hash_c, CALLS);
    // Distinct sums are what make the check below catch a call to the
    // wrong target.
    if want_a == want_b || want_b == want_c || want_a == want_c {
        return Err("the demo's targets must sum to different results".into());
    }

    let direct = |n: u64| (0..n).fold(0u64, |s, i| s.wrapping_add(hash_a(black_box(i))));
    let indirect = |n: u64| plain(hash_a, n);
    let slot0 = |n: u64| through_site(&engine, &site, hash_a, n);
    let slot1 = |n: u64| through_site(&engine, &site, hash_b, n);
    let miss = |n: u64| through_site(&engine, &site, hash_c, n);
    // The same promotion with Cranelift's call-and-return hit, to show what
    // the tail-jump rewrite buys.
    let call_engine = Engine::with_config(EngineConfig {
        tail_jumps: false,
        ..Default::default()
    });
    let call_site = call_engine.named_site::<Callback>("demo-call-form");
    let call_form_ok = call_site.promote(&[hash_a, hash_b]).is_ok();
    let slot0_call = |n: u64| through_site(&call_engine, &call_site, hash_a, n);
    let pin_per_call = |n: u64| {
        let f = black_box(hash_a as Callback);
        (0..n).fold(0u64, |s, i| {
            s.wrapping_add(site.call_pinned(f, (black_box(i),)))
        })
    };
    // The index of the plain indirect call below, the ratios' baseline.
    const BASELINE: usize = 1;
    let variants = [
        Variant {
            name: "direct call (hash_a)",
            run: &direct,
            expected: want_a,
        },
        Variant {
            name: "plain indirect call (hash_a)",
            run: &indirect,
            expected: want_a,
        },
        Variant {
            name: "site, slot 0 hit (hash_a)",
            run: &slot0,
            expected: want_a,
        },
        Variant {
            name: "slot 0 hit, call form (hash_a)",
            run: &slot0_call,
            expected: want_a,
        },
        Variant {
            name: "site, slot 1 hit (hash_b)",
            run: &slot1,
            expected: want_b,
        },
        Variant {
            name: "site, miss (hash_c)",
            run: &miss,
            expected: want_c,
        },
        Variant {
            name: "call_pinned, slot 0 (hash_a)",
            run: &pin_per_call,
            expected: want_a,
        },
    ];
    if !call_form_ok {
        println!("(the call-form site could not be promoted; its row is a plain indirect call)");
    }
    let timings = measure::interleaved(&variants, ROUNDS, CALLS);
    print_table(&timings, BASELINE);

    let wrong: Vec<String> = timings
        .iter()
        .filter(|t| !t.wrong.is_empty())
        .map(|t| format!("{} ({} of {ROUNDS} rounds)", t.name, t.wrong.len()))
        .collect();
    if !wrong.is_empty() {
        return Err(format!(
            "WRONG RESULTS: summed results differ from the plain indirect call's for: {}",
            wrong.join(", ")
        ));
    }
    println!(
        "results: correct (every variant's sum matches the plain indirect call's, every round)"
    );
    println!();
    println!("{}", engine.stats());
    println!("{}", site.stats());
    Ok(())
}

/// The table, with ratios to `timings[baseline]`.
fn print_table(timings: &[Timing], baseline: usize) {
    let base = timings[baseline].median_ns;
    println!();
    println!(
        "{:<30} {:>14} {:>12}   min .. max over rounds",
        "variant", "median ns/call", "vs indirect"
    );
    for t in timings {
        println!(
            "{:<30} {:>14.2} {:>11.2}x   {:.2} .. {:.2}",
            t.name,
            t.median_ns,
            t.median_ns / base,
            t.min_ns,
            t.max_ns
        );
    }
    println!();
}
