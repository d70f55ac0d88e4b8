//! Timing: warm-up rounds, then interleaved rounds in which every cell of a
//! workload takes one sample, in a freshly shuffled order, so that drift
//! (frequency, other load on the machine) hits every strategy alike.

use std::sync::Barrier;

use hotcall::workload::{CHAIN_START, Call, STREAM_LEN, SplitMix64, Workload};

use super::clock::{Elapsed, Stopwatch};
use super::strategy::{CHUNK_LEN, Cell};

/// How much to measure per workload.
#[derive(Clone, Copy, Debug)]
pub struct TimingPlan {
    pub warmup_rounds: usize,
    pub samples: usize,
    /// Passes over the stream per sample (per thread).
    pub passes: usize,
}

/// One cell's samples.
#[derive(Clone, Debug, Default)]
pub struct Samples {
    /// Nanoseconds per call by the thread CPU-time clock, one value per
    /// sample, in round order.
    pub cpu_ns_per_call: Vec<f64>,
    /// The same samples by the wall clock.
    pub wall_ns_per_call: Vec<f64>,
    /// Time in learning rounds (`between_chunks` of a learning cell), per
    /// call, by each clock; not included above. Empty for other cells.
    pub learning_cpu_ns_per_call: Vec<f64>,
    pub learning_wall_ns_per_call: Vec<f64>,
    /// Samples (warm-up included) whose result differed from plain calls.
    pub wrong: usize,
}

/// Runs one pass of `stream` through `cell` in chunks, with the learning
/// hook between chunks. Returns the last result and the time spent in the
/// hook of a learning cell.
pub fn run_pass(cell: &dyn Cell, stream: &[Call], mut x: u64) -> (u64, Elapsed) {
    let mut learning = Elapsed::default();
    let learns = cell.learns();
    for chunk in stream.chunks(CHUNK_LEN) {
        x = cell.run(chunk, x);
        if learns {
            let sw = Stopwatch::start();
            cell.between_chunks();
            learning += sw.elapsed();
        } else {
            cell.between_chunks();
        }
    }
    (x, learning)
}

/// Measures every cell on `w`. `on_sample` runs after each sample
/// (progress).
pub fn measure(
    w: &Workload,
    cells: &[&dyn Cell],
    plan: TimingPlan,
    rng: &mut SplitMix64,
    on_sample: &dyn Fn(),
) -> Vec<Samples> {
    let expected: Vec<u64> = (0..w.threads())
        .map(|t| w.expected(t, plan.passes))
        .collect();
    let mut out = vec![Samples::default(); cells.len()];
    let mut order: Vec<usize> = (0..cells.len()).collect();
    for round in 0..plan.warmup_rounds + plan.samples {
        rng.shuffle(&mut order);
        for &i in &order {
            let (elapsed, learning, correct) = sample(cells[i], w, plan.passes, &expected);
            if !correct {
                out[i].wrong += 1;
            }
            if round >= plan.warmup_rounds {
                let calls = (plan.passes * STREAM_LEN) as f64;
                let ns = |d: std::time::Duration| d.as_secs_f64() * 1e9 / calls;
                out[i].cpu_ns_per_call.push(ns(elapsed.cpu));
                out[i].wall_ns_per_call.push(ns(elapsed.wall));
                if cells[i].learns() {
                    out[i].learning_cpu_ns_per_call.push(ns(learning.cpu));
                    out[i].learning_wall_ns_per_call.push(ns(learning.wall));
                }
            }
            on_sample();
        }
    }
    out
}

/// One sample: `passes` passes of each thread's stream, all threads at
/// once. Returns the slowest thread's call time (learning excluded) and
/// learning time, by each clock, and whether every thread's result matched
/// plain calls.
fn sample(
    cell: &dyn Cell,
    w: &Workload,
    passes: usize,
    expected: &[u64],
) -> (Elapsed, Elapsed, bool) {
    let run = |t: usize| {
        let start = Stopwatch::start();
        let mut x = CHAIN_START;
        let mut learning = Elapsed::default();
        for _ in 0..passes {
            let (y, l) = run_pass(cell, w.stream(t), x);
            x = y;
            learning += l;
        }
        (start.elapsed().minus(learning), learning, x == expected[t])
    };
    if w.threads() == 1 {
        return run(0);
    }
    let barrier = Barrier::new(w.threads());
    let results: Vec<(Elapsed, Elapsed, bool)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..w.threads())
            .map(|t| {
                let (barrier, run) = (&barrier, &run);
                s.spawn(move || {
                    barrier.wait();
                    run(t)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a benchmark thread panicked"))
            .collect()
    });
    let slowest = Elapsed {
        cpu: results.iter().map(|r| r.0.cpu).max().unwrap_or_default(),
        wall: results.iter().map(|r| r.0.wall).max().unwrap_or_default(),
    };
    let learning = Elapsed {
        cpu: results.iter().map(|r| r.1.cpu).max().unwrap_or_default(),
        wall: results.iter().map(|r| r.1.wall).max().unwrap_or_default(),
    };
    (slowest, learning, results.iter().all(|r| r.2))
}
