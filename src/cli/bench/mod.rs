//! `hotcall bench`: every workload through every dispatch strategy, timed
//! in interleaved rounds, optionally counted under callgrind, reported as a
//! table, JSON, Markdown and an SVG plot. Without a subcommand, `hotcall`
//! runs the quick preset and writes all three files (see [`run_default`]).

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use hotcall::Arch;
use hotcall::workload::{PHASE_LEN, STREAM_LEN, SplitMix64, Workload, WorkloadKind};

use super::CliResult;

mod clock;
mod count;
mod isa;
mod plot;
mod report;
mod stats;
mod strategy;
mod table;
mod timing;

use clock::Clock;
use count::CountPlan;
use report::{CellResult, Config, Host, MissingCell, Report, StrategyInfo, WorkloadInfo};
use strategy::{Build, BuildError, BuildOptions, CHUNK_LEN, Cell, Entry, STRATEGIES, StrategyDef};
use timing::TimingPlan;

/// The seed of the call streams unless `--seed` says otherwise.
pub(crate) const DEFAULT_SEED: u64 = 0x5eed;
/// The level of the median intervals.
const CONFIDENCE: f64 = 0.95;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Preset {
    /// 30 samples of 8 passes (524,288 calls) per cell.
    Quick,
    /// 100 samples of 16 passes per cell.
    Full,
}

impl Preset {
    fn name(self) -> &'static str {
        match self {
            Preset::Quick => "quick",
            Preset::Full => "full",
        }
    }

    fn timing(self) -> TimingPlan {
        match self {
            Preset::Quick => TimingPlan {
                warmup_rounds: 3,
                samples: 30,
                passes: 8,
            },
            Preset::Full => TimingPlan {
                warmup_rounds: 5,
                samples: 100,
                passes: 16,
            },
        }
    }

    fn count(self) -> CountPlan {
        match self {
            Preset::Quick => CountPlan {
                warmup_passes: 2,
                passes: 1,
            },
            Preset::Full => CountPlan {
                warmup_passes: 4,
                passes: 2,
            },
        }
    }
}

/// Compare dispatch strategies on the standard workloads.
#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// How much to measure.
    #[arg(long, value_enum, default_value = "quick")]
    preset: Preset,
    /// Timed samples per cell (default from the preset; at least 6 for a
    /// 95% interval).
    #[arg(long)]
    samples: Option<usize>,
    /// Unrecorded rounds before the samples (default from the preset).
    #[arg(long)]
    warmup_rounds: Option<usize>,
    /// Passes over the stream per sample (default from the preset).
    #[arg(long)]
    passes: Option<usize>,
    /// Workloads to run, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    workloads: Vec<String>,
    /// Strategies to run, comma-separated (default: all), each with every
    /// entry it has unless `--entries` says otherwise.
    #[arg(long, value_delimiter = ',')]
    strategies: Vec<String>,
    /// Entries to run (pointer, static, none), comma-separated (default:
    /// all).
    #[arg(long, value_delimiter = ',')]
    entries: Vec<String>,
    /// Seed of the call streams.
    #[arg(long, default_value_t = DEFAULT_SEED)]
    seed: u64,
    /// The clock of `ns_per_call`: the thread's CPU time (default; time
    /// spent descheduled by other load does not count) or wall time. Both
    /// are in the JSON.
    #[arg(long, value_enum, default_value = "cpu")]
    clock: Clock,
    /// Measure a retpoline-hardened host: hotcall's engines in hardened
    /// mode (pointer entries, thunks' misses and static miss stubs through
    /// the retpoline) and `listed`'s misses through the retpoline;
    /// `indirect` stays a plain call.
    #[arg(long)]
    hardened: bool,
    /// Write the report as JSON (schema hotcall-bench/1).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write an SVG chart.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// Write the table as Markdown.
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,
    /// Also count instructions and simulated mispredictions per call under
    /// valgrind's callgrind (repeatable where times are not).
    #[arg(long)]
    count: bool,
    /// Counted passes per thread (default from the preset).
    #[arg(long)]
    count_passes: Option<usize>,
    /// Uncounted warm-up passes before them (default from the preset).
    #[arg(long)]
    count_warmup_passes: Option<usize>,
    /// With `--count`: also the side-by-side ISA table (code bytes per
    /// thunk, instructions executed per path, 0 to 8 slots) of the host's
    /// ISA and this one (x86_64 or aarch64; comma-separated for several),
    /// counted under qemu-user.
    #[arg(long, value_name = "ISA", value_delimiter = ',', value_parser = crate::cli::disasm::parse_arch, requires = "count")]
    arch: Vec<Arch>,
    /// Internal: run one cell as the child of `--count`.
    #[arg(long, hide = true)]
    count_cell: bool,
}

impl BenchArgs {
    fn quick_with_outputs(dir: &Path) -> Self {
        BenchArgs {
            preset: Preset::Quick,
            samples: None,
            warmup_rounds: None,
            passes: None,
            workloads: Vec::new(),
            strategies: Vec::new(),
            entries: Vec::new(),
            seed: DEFAULT_SEED,
            clock: Clock::Cpu,
            hardened: false,
            json: Some(dir.join("report.json")),
            plot: Some(dir.join("report.svg")),
            markdown: Some(dir.join("report.md")),
            count: false,
            count_passes: None,
            count_warmup_passes: None,
            arch: Vec::new(),
            count_cell: false,
        }
    }

    fn timing(&self) -> TimingPlan {
        let p = self.preset.timing();
        TimingPlan {
            warmup_rounds: self.warmup_rounds.unwrap_or(p.warmup_rounds),
            samples: self.samples.unwrap_or(p.samples),
            passes: self.passes.unwrap_or(p.passes),
        }
    }

    fn build_options(&self) -> BuildOptions {
        BuildOptions {
            hardened: self.hardened,
        }
    }

    fn count_plan(&self) -> CountPlan {
        let p = self.preset.count();
        CountPlan {
            warmup_passes: self.count_warmup_passes.unwrap_or(p.warmup_passes),
            passes: self.count_passes.unwrap_or(p.passes),
        }
    }

    fn selected_workloads(&self) -> Result<Vec<WorkloadKind>, String> {
        if self.workloads.is_empty() {
            return Ok(WorkloadKind::ALL.to_vec());
        }
        self.workloads
            .iter()
            .map(|n| {
                WorkloadKind::from_name(n).ok_or_else(|| {
                    let all: Vec<&str> = WorkloadKind::ALL.iter().map(|k| k.name()).collect();
                    format!(
                        "unknown workload {n:?}; the workloads are {}",
                        all.join(", ")
                    )
                })
            })
            .collect()
    }

    /// The rows of `table` that `--strategies` and `--entries` select, in
    /// table order.
    fn selected_strategies(
        &self,
        table: &'static [StrategyDef],
    ) -> Result<Vec<&'static StrategyDef>, String> {
        for n in &self.strategies {
            if !table.iter().any(|s| s.name == n) {
                let mut all: Vec<&str> = table.iter().map(|s| s.name).collect();
                all.dedup();
                return Err(format!(
                    "unknown strategy {n:?}; the strategies are {}",
                    all.join(", ")
                ));
            }
        }
        let entries = self
            .entries
            .iter()
            .map(|n| {
                Entry::from_name(n).ok_or_else(|| {
                    format!("unknown entry {n:?}; the entries are pointer, static, none")
                })
            })
            .collect::<Result<Vec<Entry>, String>>()?;
        let selected: Vec<&'static StrategyDef> = table
            .iter()
            .filter(|s| self.strategies.is_empty() || self.strategies.iter().any(|n| n == s.name))
            .filter(|s| entries.is_empty() || entries.contains(&s.entry))
            .collect();
        if selected.is_empty() {
            return Err("no strategy has the selected entries".into());
        }
        Ok(selected)
    }
}

/// `hotcall` without a subcommand: the quick preset, writing
/// `report.{json,svg,md}` under `target/hotcall-report/`.
pub fn run_default() -> CliResult {
    let dir = default_report_dir();
    run(&BenchArgs::quick_with_outputs(&dir))
}

/// `target/hotcall-report` of the cargo target directory this binary was
/// built in (`target/release/hotcall` -> `target/`), else under the current
/// directory.
fn default_report_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            let exe = std::env::current_exe().ok()?;
            let profile_dir = exe.parent()?;
            matches!(profile_dir.file_name()?.to_str()?, "release" | "debug")
                .then(|| profile_dir.parent().map(Path::to_path_buf))?
        })
        .unwrap_or_else(|| PathBuf::from("target"));
    target.join("hotcall-report")
}

pub fn run(args: &BenchArgs) -> CliResult {
    run_with(args, STRATEGIES)
}

/// [`run`] over the strategies of `table` (tests pass their own).
fn run_with(args: &BenchArgs, table: &'static [StrategyDef]) -> CliResult {
    let workloads = args.selected_workloads()?;
    let strategies = args.selected_strategies(table)?;
    if args.count_cell {
        let ([w], [s]) = (workloads.as_slice(), strategies.as_slice()) else {
            return Err("--count-cell takes one workload and one strategy".into());
        };
        return count::child(*w, s, args.seed, args.count_plan(), args.build_options());
    }
    let plan = args.timing();
    if plan.samples < 6 {
        return Err(format!(
            "--samples {} is too few: a 95% interval of the median needs at least 6",
            plan.samples
        ));
    }
    if plan.passes == 0 || args.count_plan().passes == 0 {
        return Err("--passes and --count-passes must be at least 1".into());
    }
    let mut host = Host::detect();
    if args.count {
        host.valgrind = Some(count::check_valgrind()?);
    }

    println!(
        "hotcall bench, {} preset: {} workload(s) x {} strategies, {} samples per cell of {} calls \
         (plus {} warm-up rounds), strategies in a new random order each round; {} time{}",
        args.preset.name(),
        workloads.len(),
        strategies.len(),
        plan.samples,
        plan.passes * STREAM_LEN,
        plan.warmup_rounds,
        if args.clock == Clock::Cpu {
            "thread CPU"
        } else {
            "wall"
        },
        if args.hardened {
            "; HARDENED: hotcall's indirect branches and listed's misses through the retpoline"
        } else {
            ""
        }
    );
    let mut report = Report {
        schema: report::SCHEMA,
        host,
        config: Config {
            preset: args.preset.name().into(),
            samples: plan.samples,
            warmup_rounds: plan.warmup_rounds,
            calls_per_sample: plan.passes * STREAM_LEN,
            stream_len: STREAM_LEN,
            phase_len: PHASE_LEN,
            chunk_len: CHUNK_LEN,
            seed: args.seed,
            clock: args.clock.name(),
            hardened: args.hardened,
            confidence: CONFIDENCE,
            count: args.count,
            count_warmup_passes: args.count_plan().warmup_passes,
            count_passes: args.count_plan().passes,
            method: "median with a distribution-free 95% interval (binomial order statistics); \
                     Welch's two-sided t-test on per-sample ns per call",
        },
        results: Vec::new(),
        missing: Vec::new(),
        workloads: workloads
            .iter()
            .map(|k| WorkloadInfo {
                name: k.name(),
                description: k.description(),
                sites: k.site_count(),
                threads: k.threads(),
            })
            .collect(),
        isa_table: None,
        strategies: strategies
            .iter()
            .map(|s| StrategyInfo {
                name: s.name,
                entry: s.entry.name(),
                description: s.description,
                missing: match s.build {
                    Build::Missing(why) => Some(why),
                    Build::Ready(_) => None,
                },
            })
            .collect(),
    };
    let mut failures: Vec<String> = Vec::new();
    measure_all(
        &workloads,
        &strategies,
        args,
        plan,
        &mut report,
        &mut failures,
    );
    report.host.loadavg_after = report::loadavg();
    report::add_comparisons(&mut report.results);
    if args.count {
        count_all(args, &mut report, &mut failures);
    }
    if !args.arch.is_empty() {
        let archs = isa::isas(&args.arch);
        let names: Vec<&str> = archs.iter().map(|a| a.name()).collect();
        eprintln!(
            "measuring the ISA table ({}) under qemu-user",
            names.join(", ")
        );
        match isa::measure(&archs) {
            Ok(t) => report.isa_table = Some(t),
            Err(e) => failures.push(e),
        }
    }

    println!();
    print!("{}", table::terminal(&report));
    if let Some(t) = &report.isa_table {
        println!();
        print!("{}", t.markdown);
    }
    write_outputs(args, &report)?;

    let wrong: Vec<String> = report
        .incorrect()
        .iter()
        .map(|r| {
            format!(
                "{} / {} ({} samples)",
                r.workload,
                strategy::label(r.strategy, r.entry),
                r.wrong_samples
            )
        })
        .collect();
    if !wrong.is_empty() {
        failures.push(format!(
            "WRONG RESULTS (results differ from plain calls): {}",
            wrong.join(", ")
        ));
    }
    if failures.is_empty() {
        println!(
            "all {} measured cells correct (every sample's result equals plain calls')",
            report.results.len()
        );
        Ok(())
    } else {
        Err(failures.join("\n"))
    }
}

/// Times every workload, one workload at a time: its cells are built, timed
/// in interleaved rounds, and dropped.
fn measure_all(
    workloads: &[WorkloadKind],
    strategies: &[&'static StrategyDef],
    args: &BenchArgs,
    plan: TimingPlan,
    report: &mut Report,
    failures: &mut Vec<String>,
) {
    let ready = strategies.iter().filter(|s| s.is_ready()).count();
    let total = (workloads.len() * ready * (plan.warmup_rounds + plan.samples)) as u64;
    let bar = progress_bar(
        total,
        "{spinner} timing {msg:<11} [{wide_bar}] {pos}/{len} samples {elapsed}",
    );
    // The shuffles vary from run to run on purpose; the streams do not.
    let mut rng = SplitMix64::new(clock_seed());
    for &kind in workloads {
        bar.set_message(kind.name());
        let w = Workload::new(kind, args.seed);
        let mut cells: Vec<(&'static StrategyDef, Box<dyn Cell>)> = Vec::new();
        for &s in strategies {
            match s.build {
                Build::Missing(why) => report.missing.push(MissingCell {
                    workload: kind.name(),
                    strategy: s.name,
                    entry: s.entry.name(),
                    reason: why.into(),
                }),
                Build::Ready(build) => {
                    let reason = match build(&w, args.build_options()) {
                        Ok(cell) => {
                            cells.push((s, cell));
                            continue;
                        }
                        Err(BuildError::NotApplicable(why)) => format!("not applicable: {why}"),
                        Err(BuildError::Failed(e)) => {
                            let reason = format!("failed to build: {e}");
                            failures.push(format!("{} / {}: {reason}", kind.name(), s.label()));
                            reason
                        }
                    };
                    bar.inc((plan.warmup_rounds + plan.samples) as u64);
                    report.missing.push(MissingCell {
                        workload: kind.name(),
                        strategy: s.name,
                        entry: s.entry.name(),
                        reason,
                    });
                }
            }
        }
        let refs: Vec<&dyn Cell> = cells.iter().map(|(_, c)| c.as_ref()).collect();
        let samples = timing::measure(&w, &refs, plan, &mut rng, &|| bar.inc(1));
        for ((s, cell), samples) in cells.iter().zip(samples) {
            report.results.push(CellResult::new(
                kind.name(),
                s.name,
                s.entry.name(),
                w.threads(),
                &samples,
                cell.detail(),
                args.clock,
                CONFIDENCE,
            ));
        }
        if bar.is_hidden() {
            eprintln!("timed {}", kind.name());
        }
    }
    bar.finish_and_clear();
}

/// Counts every measured cell under callgrind, one child process each.
fn count_all(args: &BenchArgs, report: &mut Report, failures: &mut Vec<String>) {
    let dir = std::env::temp_dir().join(format!("hotcall-count-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        failures.push(format!("--count: creating {}: {e}", dir.display()));
        return;
    }
    let bar = progress_bar(
        report.results.len() as u64,
        "{spinner} counting {msg:<24} [{wide_bar}] {pos}/{len} cells {elapsed}",
    );
    for r in &mut report.results {
        let label = strategy::label(r.strategy, r.entry);
        bar.set_message(format!("{} / {label}", r.workload));
        let kind = WorkloadKind::from_name(r.workload).expect("a measured workload");
        match count::count_cell(kind, r.strategy, r.entry, args, &dir) {
            Ok(c) => r.set_counts(c),
            Err(e) => failures.push(format!("--count: {e}")),
        }
        bar.inc(1);
        if bar.is_hidden() {
            eprintln!("counted {} / {label}", r.workload);
        }
    }
    bar.finish_and_clear();
    let _ = std::fs::remove_dir_all(&dir);
}

fn progress_bar(total: u64, template: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn write_outputs(args: &BenchArgs, report: &Report) -> CliResult {
    let create = |path: &Path| -> CliResult {
        match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => {
                std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))
            }
            _ => Ok(()),
        }
    };
    let mut written = Vec::new();
    if let Some(path) = &args.json {
        create(path)?;
        let json = serde_json::to_string_pretty(report).map_err(|e| format!("JSON: {e}"))?;
        std::fs::write(path, json + "\n")
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        written.push(path);
    }
    if let Some(path) = &args.plot {
        create(path)?;
        plot::write_svg(report, path)?;
        written.push(path);
    }
    if let Some(path) = &args.markdown {
        create(path)?;
        std::fs::write(path, table::markdown(report))
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        written.push(path);
    }
    if !written.is_empty() {
        println!();
        for path in written {
            println!("wrote {}", path.display());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use hotcall::workload::{Call, POOL, Workload, run_plain};

    use super::strategy::{Build, Cell, Entry, StrategyDef};
    use super::*;

    /// Calls the right targets except that every 1000th call goes to
    /// another pool function: what a miscompiled thunk would do.
    struct Broken;

    impl Cell for Broken {
        fn run(&self, calls: &[Call], mut x: u64) -> u64 {
            for (i, c) in calls.iter().enumerate() {
                let f = if i % 1000 == 999 {
                    POOL.iter()
                        .copied()
                        .find(|&p| p as usize != c.target as usize)
                        .unwrap()
                } else {
                    c.target
                };
                x = f(x);
            }
            x
        }

        fn detail(&self) -> String {
            "wrong on purpose".into()
        }
    }

    struct Plain;

    impl Cell for Plain {
        fn run(&self, calls: &[Call], x: u64) -> u64 {
            run_plain(calls, x)
        }

        fn detail(&self) -> String {
            "plain".into()
        }
    }

    fn broken(_: &Workload, _: BuildOptions) -> Result<Box<dyn Cell>, BuildError> {
        Ok(Box::new(Broken))
    }

    fn plain(_: &Workload, _: BuildOptions) -> Result<Box<dyn Cell>, BuildError> {
        Ok(Box::new(Plain))
    }

    static TABLE: [StrategyDef; 3] = [
        StrategyDef {
            name: "indirect",
            entry: Entry::None,
            description: "plain",
            build: Build::Ready(plain),
        },
        StrategyDef {
            name: "broken",
            entry: Entry::Pointer,
            description: "calls a wrong target now and then",
            build: Build::Ready(broken),
        },
        StrategyDef {
            name: "later",
            entry: Entry::Static,
            description: "not written yet",
            build: Build::Missing("not built yet (test)"),
        },
    ];

    fn args(dir: &Path) -> BenchArgs {
        BenchArgs {
            samples: Some(6),
            warmup_rounds: Some(1),
            passes: Some(1),
            workloads: vec!["mono".into(), "zipf-8".into()],
            ..BenchArgs::quick_with_outputs(dir)
        }
    }

    /// A strategy that returns wrong results cannot look fast: its cells
    /// say `correct: false`, the command fails, and the outputs are still
    /// written so the failure can be inspected.
    #[test]
    fn a_broken_strategy_fails_the_run_and_is_marked_incorrect() {
        let dir = std::env::temp_dir().join(format!("hotcall-bench-broken-{}", std::process::id()));
        let err = run_with(&args(&dir), &TABLE).unwrap_err();
        assert!(err.contains("WRONG RESULTS"), "{err}");
        assert!(
            err.contains("mono / broken") && err.contains("zipf-8 / broken"),
            "{err}"
        );
        assert!(!err.contains("/ indirect"), "{err}");
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap())
                .unwrap();
        let results = json["results"].as_array().unwrap();
        assert_eq!(results.len(), 4);
        for r in results {
            let broken = r["strategy"] == "broken";
            assert_eq!(r["correct"], !broken, "{r}");
            // 6 samples and 1 warm-up round, every one of them wrong.
            assert_eq!(r["wrong_samples"], if broken { 7 } else { 0 }, "{r}");
        }
        // The missing strategy is reported as missing, with its reason.
        let missing = json["missing"].as_array().unwrap();
        assert_eq!(missing.len(), 2);
        assert!(
            missing
                .iter()
                .all(|m| m["strategy"] == "later" && m["reason"] == "not built yet (test)")
        );
        let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
        assert!(
            md.contains("| mono | broken | pointer |") && md.contains("| NO |"),
            "{md}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unknown_names_are_clear_errors() {
        let dir = std::env::temp_dir();
        let mut a = args(&dir);
        a.workloads = vec!["zipf-9".into()];
        let err = run_with(&a, &TABLE).unwrap_err();
        assert!(
            err.contains("unknown workload \"zipf-9\"") && err.contains("sites-1k"),
            "{err}"
        );
        let mut a = args(&dir);
        a.strategies = vec!["jitt".into()];
        let err = run_with(&a, &TABLE).unwrap_err();
        assert!(
            err.contains("unknown strategy \"jitt\"") && err.contains("broken"),
            "{err}"
        );
        let mut a = args(&dir);
        a.samples = Some(5);
        assert!(run_with(&a, &TABLE).unwrap_err().contains("at least 6"));
    }
}
