//! The report: what `--json` writes (schema `hotcall-bench/1`) and what the
//! table, the Markdown and the plot are drawn from.
//!
//! Contract fields (never renamed): `schema`, `host.{arch,cpu,cores}`,
//! `config.{preset,samples}`, and per result `workload`, `strategy`,
//! `entry`, `threads`, `ns_per_call.{median,ci95,samples}`,
//! `vs_indirect.{ratio,p_value}`, `vs_retpoline.{ratio,p_value}`,
//! `instructions_per_call`, `mispredicts_per_call`, `correct`. Everything
//! else is added.

use serde::Serialize;

use super::clock::Clock;
use super::count::Counts;
use super::isa::IsaTable;
use super::stats::{self, MedianInterval};
use super::timing::Samples;

pub const SCHEMA: &str = "hotcall-bench/1";

/// The level of the paired ratios' intervals.
const CONFIDENCE_OF_RATIO: f64 = 0.95;

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub schema: &'static str,
    pub host: Host,
    pub config: Config,
    /// One per measured cell.
    pub results: Vec<CellResult>,
    /// Cells that could not be measured, and why.
    pub missing: Vec<MissingCell>,
    pub workloads: Vec<WorkloadInfo>,
    pub strategies: Vec<StrategyInfo>,
    /// `--count --arch`: code bytes and instructions per path of thunks
    /// on each ISA, side by side; null otherwise.
    pub isa_table: Option<IsaTable>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Host {
    pub arch: &'static str,
    pub cpu: String,
    pub cores: usize,
    pub os: &'static str,
    /// `valgrind --version`, when `--count` ran.
    pub valgrind: Option<String>,
    /// `/proc/loadavg` before and after the timing: other load on a shared
    /// machine widens the intervals.
    pub loadavg_before: Option<String>,
    pub loadavg_after: Option<String>,
}

impl Host {
    pub fn detect() -> Self {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        Host {
            arch: std::env::consts::ARCH,
            cpu,
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            os: std::env::consts::OS,
            valgrind: None,
            loadavg_before: loadavg(),
            loadavg_after: None,
        }
    }
}

/// The first three fields of `/proc/loadavg` (1, 5, 15 minutes).
pub fn loadavg() -> Option<String> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

#[derive(Clone, Debug, Serialize)]
pub struct Config {
    pub preset: String,
    /// Timed samples per cell.
    pub samples: usize,
    /// Unrecorded rounds before them.
    pub warmup_rounds: usize,
    /// Calls per sample and thread.
    pub calls_per_sample: usize,
    pub stream_len: usize,
    /// `phase`: calls between hot-set changes.
    pub phase_len: usize,
    /// Calls between learning steps.
    pub chunk_len: usize,
    pub seed: u64,
    /// Which clock `ns_per_call` uses: `cpu` (the thread's CPU time) or
    /// `wall`.
    pub clock: &'static str,
    /// `--hardened`: hotcall's engines hardened and `listed`'s misses
    /// through the retpoline (a retpoline-hardened host); `indirect` is a
    /// plain call either way.
    pub hardened: bool,
    pub confidence: f64,
    /// Whether `--count` ran, and its passes (warm-up, counted) per thread.
    pub count: bool,
    pub count_warmup_passes: usize,
    pub count_passes: usize,
    /// `ci95` of the median: order statistics of Binomial(n, 1/2);
    /// `p_value`: Welch's two-sided t-test on the per-sample ns per call.
    pub method: &'static str,
}

#[derive(Clone, Debug, Serialize)]
pub struct WorkloadInfo {
    pub name: &'static str,
    pub description: &'static str,
    pub sites: usize,
    pub threads: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct StrategyInfo {
    pub name: &'static str,
    pub entry: &'static str,
    pub description: &'static str,
    /// Why it is not measured, if it is not.
    pub missing: Option<&'static str>,
}

#[derive(Clone, Debug, Serialize)]
pub struct NsPerCall {
    pub median: f64,
    pub ci95: [f64; 2],
    pub samples: usize,
    /// The interval's exact coverage (at least 0.95).
    pub ci_coverage: f64,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    /// This cell's median over the baseline's.
    pub ratio: f64,
    /// Welch's two-sided p-value; null where undefined (no spread).
    pub p_value: Option<f64>,
    /// The median of the per-round ratios (this cell's sample over the
    /// baseline's sample of the same round, taken moments apart), and its
    /// 95% interval. Robust to load that comes and goes during the run,
    /// which shifts both samples of a round alike.
    pub paired_ratio: f64,
    pub paired_ratio_ci95: [f64; 2],
}

#[derive(Clone, Debug, Serialize)]
pub struct CellResult {
    pub workload: &'static str,
    pub strategy: &'static str,
    pub entry: &'static str,
    pub threads: usize,
    /// By the clock named in `config.clock`.
    pub ns_per_call: NsPerCall,
    /// The same samples by each clock.
    pub cpu_ns_per_call: NsPerCall,
    pub wall_ns_per_call: NsPerCall,
    /// Null when the workload has no `indirect` cell.
    pub vs_indirect: Option<Comparison>,
    /// Null while the `retpoline` strategy is missing.
    pub vs_retpoline: Option<Comparison>,
    pub instructions_per_call: Option<f64>,
    /// Conditional plus indirect, from callgrind's branch simulator.
    pub mispredicts_per_call: Option<f64>,
    pub conditional_mispredicts_per_call: Option<f64>,
    pub indirect_mispredicts_per_call: Option<f64>,
    /// Indirect calls and jumps executed per call (callgrind's `Bi`;
    /// returns not counted), including the harness's one call of the cell
    /// per chunk of 4,096 calls.
    pub indirect_branches_per_call: Option<f64>,
    /// Every sample's result equalled plain calls'.
    pub correct: bool,
    pub wrong_samples: usize,
    /// What the strategy built for this workload.
    pub detail: String,
    /// A learning strategy's time in learning rounds per call (median, by
    /// `config.clock`), not included in `ns_per_call`; null for others.
    pub learning_ns_per_call: Option<f64>,
    /// Raw samples of `ns_per_call`, in round order.
    pub raw_ns_per_call: Vec<f64>,
}

impl NsPerCall {
    fn of(samples: &[f64], confidence: f64) -> Self {
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let ci = stats::median_interval(&sorted, confidence).unwrap_or(MedianInterval {
            lo: sorted.first().copied().unwrap_or(f64::NAN),
            hi: sorted.last().copied().unwrap_or(f64::NAN),
            coverage: f64::NAN,
        });
        NsPerCall {
            median: stats::median(&sorted),
            ci95: [ci.lo, ci.hi],
            samples: sorted.len(),
            ci_coverage: ci.coverage,
            mean: stats::mean(&sorted),
            min: sorted.first().copied().unwrap_or(f64::NAN),
            max: sorted.last().copied().unwrap_or(f64::NAN),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct MissingCell {
    pub workload: &'static str,
    pub strategy: &'static str,
    pub entry: &'static str,
    /// Starts with `not applicable: ` (the strategy cannot serve this
    /// workload), `failed to build: ` (the run fails), or is the reason the
    /// strategy does not exist yet.
    pub reason: String,
}

impl MissingCell {
    pub fn is_failure(&self) -> bool {
        self.reason.starts_with("failed to build")
    }
}

impl CellResult {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        workload: &'static str,
        strategy: &'static str,
        entry: &'static str,
        threads: usize,
        samples: &Samples,
        detail: String,
        clock: Clock,
        confidence: f64,
    ) -> Self {
        let (raw, learning) = match clock {
            Clock::Cpu => (&samples.cpu_ns_per_call, &samples.learning_cpu_ns_per_call),
            Clock::Wall => (
                &samples.wall_ns_per_call,
                &samples.learning_wall_ns_per_call,
            ),
        };
        let mut learning = learning.clone();
        learning.sort_by(f64::total_cmp);
        CellResult {
            workload,
            strategy,
            entry,
            threads,
            ns_per_call: NsPerCall::of(raw, confidence),
            cpu_ns_per_call: NsPerCall::of(&samples.cpu_ns_per_call, confidence),
            wall_ns_per_call: NsPerCall::of(&samples.wall_ns_per_call, confidence),
            vs_indirect: None,
            vs_retpoline: None,
            instructions_per_call: None,
            mispredicts_per_call: None,
            conditional_mispredicts_per_call: None,
            indirect_mispredicts_per_call: None,
            indirect_branches_per_call: None,
            correct: samples.wrong == 0,
            wrong_samples: samples.wrong,
            detail,
            learning_ns_per_call: (!learning.is_empty()).then(|| stats::median(&learning)),
            raw_ns_per_call: raw.clone(),
        }
    }

    /// This cell against `base` (same workload).
    pub fn compare(&self, base: &CellResult) -> Comparison {
        let mut paired: Vec<f64> = self
            .raw_ns_per_call
            .iter()
            .zip(&base.raw_ns_per_call)
            .map(|(a, b)| a / b)
            .collect();
        paired.sort_by(f64::total_cmp);
        let ci = stats::median_interval(&paired, CONFIDENCE_OF_RATIO)
            .map_or([f64::NAN; 2], |c| [c.lo, c.hi]);
        Comparison {
            ratio: self.ns_per_call.median / base.ns_per_call.median,
            p_value: stats::welch(&self.raw_ns_per_call, &base.raw_ns_per_call).map(|w| w.p),
            paired_ratio: stats::median(&paired),
            paired_ratio_ci95: ci,
        }
    }

    pub fn set_counts(&mut self, c: Counts) {
        self.instructions_per_call = Some(c.instructions);
        self.mispredicts_per_call = Some(c.mispredicts());
        self.conditional_mispredicts_per_call = Some(c.conditional_mispredicts);
        self.indirect_mispredicts_per_call = Some(c.indirect_mispredicts);
        self.indirect_branches_per_call = Some(c.indirect_branches);
    }
}

/// Fills `vs_indirect` and `vs_retpoline` of every result from the
/// baseline cells of its workload.
pub fn add_comparisons(results: &mut [CellResult]) {
    let find = |results: &[CellResult], w: &str, s: &str| {
        results
            .iter()
            .find(|r| r.workload == w && r.strategy == s)
            .cloned()
    };
    let snapshot = results.to_vec();
    for r in results.iter_mut() {
        r.vs_indirect = find(&snapshot, r.workload, "indirect").map(|b| r.compare(&b));
        r.vs_retpoline = find(&snapshot, r.workload, "retpoline").map(|b| r.compare(&b));
    }
}

impl Report {
    pub fn incorrect(&self) -> Vec<&CellResult> {
        self.results.iter().filter(|r| !r.correct).collect()
    }
}
