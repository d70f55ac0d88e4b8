//! `hotcall isa-report`: the side-by-side ISA table. For each slot count 0
//! to 8, code bytes per thunk and instructions executed inside the thunk
//! per path (hit on slot k, miss), for x86-64 and aarch64 in one table.
//!
//! Both ISAs run the thunk in the `hotcall-emu` harness under qemu-user
//! (x86-64 too, so both columns are counted the same way: qemu's
//! `-singlestep -d exec` trace), every call is checked against the targets'
//! model, and every count must equal a static walk of the code, or the
//! command fails. Needs qemu-user-static and the C compilers (for aarch64:
//! gcc-aarch64-linux-gnu); the error says what to install.

use clap::Args;
use hotcall::{Arch, ThunkSig};
use hotcall_emu::report::IsaReport;

use super::CliResult;
use super::disasm::{parse_arch, parse_sig};

#[derive(Args, Debug)]
pub struct IsaReportArgs {
    /// Only this ISA (x86_64 or aarch64) [default: both, side by side].
    #[arg(long, value_name = "ISA", value_parser = parse_arch)]
    arch: Option<Arch>,

    /// Signature of the thunk.
    #[arg(long, value_name = "SIG", value_parser = parse_sig, default_value = "(i64)->i64")]
    sig: ThunkSig,

    /// Place the thunks out of direct-call reach of their targets, so every
    /// slot takes the absolute form.
    #[arg(long)]
    far: bool,
}

/// Measures and prints the table (see [`markdown`]).
pub fn run(args: &IsaReportArgs) -> CliResult {
    print!("{}", markdown(args.arch, &args.sig, args.far)?);
    Ok(())
}

/// The table as Markdown, measured now, for `arch` (both ISAs side by side
/// if `None`).
pub fn markdown(arch: Option<Arch>, sig: &ThunkSig, far: bool) -> Result<String, String> {
    let archs: Vec<Arch> = match arch {
        Some(a) => vec![a],
        None => Arch::ALL.to_vec(),
    };
    Ok(measure(&archs, sig, far)?.markdown())
}

/// Measures the table for `archs`, in that order (`hotcall bench --count
/// --arch` includes it in its report).
pub fn measure(archs: &[Arch], sig: &ThunkSig, far: bool) -> Result<IsaReport, String> {
    let cache = std::env::temp_dir().join("hotcall-emu");
    IsaReport::measure(archs, sig, far, &cache).map_err(|e| e.to_string())
}
