//! The `hotcall bench` workloads under criterion: one pass of each
//! workload's call stream (`hotcall::workload`, the same streams the
//! harness replays) through a plain indirect call and through sites
//! promoted with the workload's true hot targets (`jit-fixed`). Criterion
//! gives its own estimates and change detection; `hotcall bench` is the
//! interleaved, multi-strategy comparison.
//!
//! Single-threaded workloads only (`threads-2` needs the harness's
//! barrier-synchronized threads). Strategies that do not exist yet
//! (`jit` learning, `patch`, `retpoline`, `listed`) are left out until they
//! land.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hotcall::workload::{CHAIN_START, STREAM_LEN, Workload, WorkloadKind, run_plain};
use hotcall::{Engine, EngineConfig};

/// The harness's default seed, so both replay the same streams.
const SEED: u64 = 0x5eed;

fn workloads(c: &mut Criterion) {
    let mut g = c.benchmark_group("workload");
    g.throughput(Throughput::Elements(STREAM_LEN as u64));
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for kind in WorkloadKind::ALL.into_iter().filter(|k| k.threads() == 1) {
        let w = Workload::new(kind, SEED);
        let calls = w.stream(0);
        let expected = w.expected(0, 1);
        g.bench_function(format!("{}/indirect", kind.name()), |b| {
            b.iter(|| run_plain(black_box(calls), CHAIN_START))
        });
        let engine = Engine::with_config(EngineConfig::manual());
        let sites = w.promoted_sites(&engine).expect("promote");
        let through_sites = || {
            let pinned = engine.pin();
            calls.iter().fold(CHAIN_START, |x, c| {
                sites[c.site.get()].call(&pinned, c.target, (x,))
            })
        };
        // A wrong target would make the timing meaningless.
        assert_eq!(through_sites(), expected, "{}", kind.name());
        g.bench_function(format!("{}/jit-fixed", kind.name()), |b| {
            b.iter(through_sites)
        });
    }
    g.finish();
}

criterion_group!(benches, workloads);
criterion_main!(benches);
