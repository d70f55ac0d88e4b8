//! Interleaved timing for the benches' summaries: every round runs every
//! variant once, in a new pseudo-random order, so machine drift (other
//! load, frequency) hits all variants alike; each variant's median round
//! is reported. Ratios of these medians are the numbers to quote.

use std::hint::black_box;
use std::time::Instant;

/// A variant: makes `calls` dependent calls and returns the last result.
pub type Run<'a> = Box<dyn Fn(u64) -> u64 + 'a>;

/// The median ns per call of each variant over `rounds` rounds of `reps`
/// runs of `calls` calls, after one unrecorded warm-up round.
pub fn medians(variants: &[(&str, Run<'_>)], rounds: usize, calls: u64, reps: u64) -> Vec<f64> {
    let mut ns: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); variants.len()];
    let mut order: Vec<usize> = (0..variants.len()).collect();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for (_, run) in variants {
        black_box(run(calls));
    }
    for _ in 0..rounds {
        for i in (1..order.len()).rev() {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            order.swap(i, (seed >> 33) as usize % (i + 1));
        }
        for &i in &order {
            let start = Instant::now();
            for _ in 0..reps {
                black_box(variants[i].1(black_box(calls)));
            }
            ns[i].push(start.elapsed().as_secs_f64() * 1e9 / (calls * reps) as f64);
        }
    }
    ns.into_iter()
        .map(|mut v| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        })
        .collect()
}
