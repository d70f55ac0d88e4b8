//! Command-line parsing and dispatch to one module per subcommand.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod calibrate;
mod demo;
mod disasm;
mod isa_report;
mod listing;
mod measure;

/// Run-time indirect call promotion on Cranelift-compiled thunks.
///
/// Without a subcommand, runs `bench --preset quick` and writes
/// `report.json`, `report.svg` and `report.md` under `target/hotcall-report/`.
#[derive(Parser, Debug)]
#[command(name = "hotcall", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Compile a thunk for either ISA at a virtual address and disassemble it.
    Disasm(disasm::DisasmArgs),
    /// Compare dispatch strategies on the standard workloads: timing with
    /// confidence intervals, optional callgrind counts, JSON, SVG, Markdown.
    Bench(Box<bench::BenchArgs>),
    /// Bytes and instructions per path of thunks with 0 to 8 slots, x86-64
    /// and aarch64 side by side (executed under qemu-user).
    IsaReport(isa_report::IsaReportArgs),
    /// Measure what calls cost on this CPU (plain, mispredicted,
    /// retpolined, thunk hits per slot, mispredicted compares, misses,
    /// bypass), as the cost-aware decision uses them.
    Calibrate(calibrate::CalibrateArgs),
    /// A quick timing of one promoted site against direct and plain
    /// indirect calls.
    Demo,
}

/// Parses the command line and runs the subcommand. Usage errors exit with
/// code 2 (clap's convention), failures while running with code 1.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => bench::run_default(),
        Some(Command::Bench(args)) => bench::run(&args),
        Some(Command::Disasm(args)) => disasm::run(&args),
        Some(Command::IsaReport(args)) => isa_report::run(&args),
        Some(Command::Calibrate(args)) => calibrate::run(&args),
        Some(Command::Demo) => demo::run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hotcall: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What a subcommand fails with: a message for stderr.
pub type CliResult = Result<(), String>;
