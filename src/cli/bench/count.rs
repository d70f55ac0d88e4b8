//! `--count`: instruction and simulated misprediction counts per call,
//! which repeat exactly from run to run where times do not.
//!
//! The parent re-runs this binary for one cell at a time under
//! `valgrind --tool=callgrind --branch-sim=yes`, with collection switched on
//! only inside [`hotcall_bench_counted`] (`--toggle-collect`), so engine
//! setup, compilation, stream generation and learning steps between chunks
//! are not counted: only the chunks of calls, including the harness loop
//! around each call (the same for every strategy) and the pin taken per
//! chunk. The child warms up (uncounted), makes the counted passes, and
//! checks its results against plain calls. Several threads run their
//! chunks in lock-step, with one learning step between chunks (see
//! [`child`]).

use std::path::{Path, PathBuf};
use std::process::Command;

use hotcall::workload::{CHAIN_START, Call, STREAM_LEN, Workload, WorkloadKind};

use super::BenchArgs;
use super::strategy::{Build, BuildOptions, CHUNK_LEN, Cell, StrategyDef};
use crate::cli::CliResult;

/// The function whose inclusive cost is counted.
pub const COUNTED_FN: &str = "hotcall_bench_counted";

/// Passes of the stream, per thread, in the child.
#[derive(Clone, Copy, Debug)]
pub struct CountPlan {
    /// Uncounted, first (learning strategies learn here).
    pub warmup_passes: usize,
    pub passes: usize,
}

/// Per-call averages over the counted calls.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Counts {
    pub instructions: f64,
    pub conditional_mispredicts: f64,
    pub indirect_mispredicts: f64,
    /// Indirect calls and jumps executed (callgrind's `Bi`; returns are not
    /// counted): what a retpoline-hardened build would route through the
    /// retpoline.
    pub indirect_branches: f64,
}

impl Counts {
    pub fn mispredicts(&self) -> f64 {
        self.conditional_mispredicts + self.indirect_mispredicts
    }
}

/// One chunk of calls: the only code callgrind counts.
#[unsafe(no_mangle)]
#[inline(never)]
pub fn hotcall_bench_counted(cell: &dyn Cell, calls: &[Call], x: u64) -> u64 {
    cell.run(calls, x)
}

/// Checks that valgrind runs.
pub fn check_valgrind() -> Result<String, String> {
    let out = Command::new("valgrind")
        .arg("--version")
        .output()
        .map_err(|e| format!("--count needs valgrind (apt-get install valgrind): {e}"))?;
    if !out.status.success() {
        return Err("--count needs valgrind: `valgrind --version` failed".into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Counts one cell in a child process under callgrind; `dir` receives the
/// callgrind output file.
pub fn count_cell(
    workload: WorkloadKind,
    strategy: &str,
    entry: &str,
    args: &BenchArgs,
    dir: &Path,
) -> Result<Counts, String> {
    let (seed, plan) = (args.seed, args.count_plan());
    let exe = std::env::current_exe().map_err(|e| format!("finding this binary: {e}"))?;
    let out_file: PathBuf = dir.join(format!(
        "callgrind.{}.{strategy}.{entry}.out",
        workload.name()
    ));
    let output = Command::new("valgrind")
        .args([
            "--tool=callgrind",
            "--branch-sim=yes",
            "--collect-atstart=no",
            &format!("--toggle-collect={COUNTED_FN}"),
            // JIT code: re-check code bytes before running translations, so
            // that memory reused for a new thunk is never run stale.
            "--smc-check=all",
            &format!("--callgrind-out-file={}", out_file.display()),
        ])
        .arg(&exe)
        .args([
            "bench",
            "--count-cell",
            "--workloads",
            workload.name(),
            "--strategies",
            strategy,
            "--entries",
            entry,
            "--seed",
            &seed.to_string(),
            "--count-warmup-passes",
            &plan.warmup_passes.to_string(),
            "--count-passes",
            &plan.passes.to_string(),
        ])
        .args(args.hardened.then_some("--hardened"))
        .output()
        .map_err(|e| format!("running valgrind: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(12).collect();
        return Err(format!(
            "{} / {strategy} ({entry}) under callgrind failed ({}):\n{}",
            workload.name(),
            output.status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ));
    }
    let text = std::fs::read_to_string(&out_file)
        .map_err(|e| format!("reading {}: {e}", out_file.display()))?;
    let calls = (plan.passes * STREAM_LEN * workload.threads()) as f64;
    let totals = parse_totals(&text)?;
    let get = |name: &str| {
        totals
            .iter()
            .find(|(n, _)| n == name)
            .map(|&(_, v)| v as f64 / calls)
            .ok_or_else(|| format!("callgrind output has no {name} event"))
    };
    Ok(Counts {
        instructions: get("Ir")?,
        conditional_mispredicts: get("Bcm")?,
        indirect_mispredicts: get("Bim")?,
        indirect_branches: get("Bi")?,
    })
}

/// The event totals of a callgrind output file: `events:` names them,
/// `totals:` (or the older `summary:`) gives their values.
pub fn parse_totals(text: &str) -> Result<Vec<(String, u64)>, String> {
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(str::split_whitespace)
    };
    let names: Vec<String> = field("events:")
        .ok_or("callgrind output has no events line")?
        .map(String::from)
        .collect();
    let values = field("totals:")
        .or_else(|| field("summary:"))
        .ok_or("callgrind output has no totals line")?
        .map(|v| {
            v.parse::<u64>()
                .map_err(|e| format!("bad total {v:?}: {e}"))
        })
        .collect::<Result<Vec<u64>, String>>()?;
    if values.len() > names.len() {
        return Err("callgrind totals do not match its events".into());
    }
    // Trailing zero totals may be omitted.
    Ok(names
        .into_iter()
        .zip(values.into_iter().chain(std::iter::repeat(0)))
        .collect())
}

/// The child: builds the cell, warms up, runs the counted passes on every
/// thread, checks the results.
pub fn child(
    workload: WorkloadKind,
    def: &StrategyDef,
    seed: u64,
    plan: CountPlan,
    options: BuildOptions,
) -> CliResult {
    let strategy = def.label();
    let Build::Ready(build) = def.build else {
        return Err(format!("strategy {strategy} is missing"));
    };
    let w = Workload::new(workload, seed);
    let cell =
        build(&w, options).map_err(|e| format!("building {} / {strategy}: {e:?}", w.name()))?;
    let cell: &dyn Cell = cell.as_ref();
    // The threads run each chunk in lock-step, and one of them takes the
    // learning step between chunks while the others wait: a learning cell
    // then learns from the same calls in every run (free-running threads
    // interleave their calls and learning steps differently under
    // valgrind's scheduler each time, and the learned thunks, hence the
    // counts, would differ).
    let barrier = std::sync::Barrier::new(w.threads());
    let run_thread = |t: usize| {
        let stream = w.stream(t);
        let mut broken = false;
        let mut chain = |x: u64, passes: usize, counted: bool| {
            let mut y = x;
            for _ in 0..passes {
                for chunk in stream.chunks(CHUNK_LEN) {
                    // A panic must not leave the other threads waiting at
                    // the barrier: report it as a wrong result instead.
                    let run = std::panic::AssertUnwindSafe(|| {
                        if counted {
                            hotcall_bench_counted(cell, chunk, y)
                        } else {
                            cell.run(chunk, y)
                        }
                    });
                    match std::panic::catch_unwind(run) {
                        Ok(v) => y = v,
                        Err(_) => broken = true,
                    }
                    barrier.wait();
                    if t == 0 {
                        cell.between_chunks();
                    }
                    barrier.wait();
                }
            }
            y
        };
        let x = chain(CHAIN_START, plan.warmup_passes, false);
        let y = chain(CHAIN_START, plan.passes, true);
        let ok =
            !broken && x == w.expected(t, plan.warmup_passes) && y == w.expected(t, plan.passes);
        ok.then_some(()).ok_or(t)
    };
    let results: Vec<Result<(), usize>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..w.threads())
            .map(|t| {
                let run_thread = &run_thread;
                s.spawn(move || run_thread(t))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(Err(usize::MAX)))
            .collect()
    });
    match results.into_iter().find_map(Result::err) {
        None => Ok(()),
        Some(t) => Err(format!(
            "WRONG RESULTS: {} / {strategy} thread {t} differs from plain calls",
            w.name()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_callgrind_totals() {
        let text = "version: 1\ncreator: callgrind-3.24.0\nevents: Ir Bc Bcm Bi Bim\n\
                    fn=(1) x\n0 1 2\ntotals: 1000 200 7 50 3\n";
        let t = parse_totals(text).unwrap();
        assert_eq!(
            t,
            [
                ("Ir", 1000),
                ("Bc", 200),
                ("Bcm", 7),
                ("Bi", 50),
                ("Bim", 3)
            ]
            .map(|(n, v)| (n.to_string(), v))
        );
        let short = "events: Ir Bc Bcm Bi Bim\nsummary: 10 2\n";
        assert_eq!(parse_totals(short).unwrap()[4], ("Bim".to_string(), 0));
        assert!(parse_totals("events: Ir\n").is_err());
        assert!(parse_totals("totals: 1\n").is_err());
    }
}
