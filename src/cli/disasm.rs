//! `hotcall disasm`: one thunk, compiled for either ISA, as text.

use std::io::{ErrorKind, Write as _};

use clap::Args;
use hotcall::{Arch, Counting, ThunkSig};
use hotcall_jit::{Branch, MAX_SLOTS};

use super::CliResult;
use super::listing::{CODE_BASE, ThunkListing};

#[derive(Args, Debug)]
pub struct DisasmArgs {
    /// Target ISA, whatever the host is: x86_64 or aarch64 [default: the
    /// host's].
    #[arg(long, value_name = "ISA", value_parser = parse_arch)]
    arch: Option<Arch>,

    /// Signature of the targets, e.g. `(i64,f64)->i64`, `(ptr)`, `()->()`.
    #[arg(long, value_name = "SIG", value_parser = parse_sig)]
    sig: ThunkSig,

    /// Number of promoted targets (0 to 8).
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = parse_slots)]
    slots: usize,

    /// Place the promoted targets out of direct-call range, so that the
    /// absolute form shows (address in a register, indirect call; with
    /// `--hardened`, a call through the retpoline trampoline).
    #[arg(long)]
    far: bool,

    /// Hardened mode: the miss path, and far slots, call their target
    /// through the retpoline (a per-arity trampoline) instead of an
    /// indirect call.
    #[arg(long)]
    hardened: bool,

    /// Keep Cranelift's call-and-return for hits (`call rel32` / `bl`)
    /// instead of tail-jumping to the target (`jmp rel32` / `b`).
    #[arg(long)]
    no_tail_jumps: bool,

    /// Counting hooks, as learning sites use them: `none`, `misses` (a
    /// stable site's lean thunk) or `all` (a site being profiled).
    #[arg(long, value_name = "WHAT", default_value = "none", value_parser = parse_counting)]
    count: Counting,
}

fn parse_counting(s: &str) -> Result<Counting, String> {
    match s {
        "none" => Ok(Counting::None),
        "misses" => Ok(Counting::Misses),
        "all" => Ok(Counting::All),
        _ => Err(format!("`{s}`: expected none, misses or all")),
    }
}

pub(super) fn parse_arch(s: &str) -> Result<Arch, String> {
    s.parse()
        .map_err(|_| format!("unknown architecture `{s}` (expected x86_64 or aarch64)"))
}

pub(super) fn parse_sig(s: &str) -> Result<ThunkSig, String> {
    s.parse().map_err(|e: hotcall::JitError| e.to_string())
}

fn parse_slots(s: &str) -> Result<usize, String> {
    let n: usize = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of slots"))?;
    if n > MAX_SLOTS {
        return Err(format!(
            "a thunk holds at most {MAX_SLOTS} promoted targets"
        ));
    }
    Ok(n)
}

pub fn run(args: &DisasmArgs) -> CliResult {
    let arch = match args.arch {
        Some(a) => a,
        None => Arch::host().ok_or("the host is not x86_64 or aarch64: pass --arch")?,
    };
    let listing = ThunkListing::build(
        arch,
        &args.sig,
        args.slots,
        args.far,
        !args.no_tail_jumps,
        args.count,
        args.hardened,
    )
    .map_err(|e| format!("cannot build the thunk: {e}"))?;
    let out = format!("{}\n{}\n", listing.text(), summary(&listing));
    // A closed pipe (`| head`) is not an error worth a message.
    match std::io::stdout().lock().write_all(out.as_bytes()) {
        Err(e) if e.kind() != ErrorKind::BrokenPipe => Err(format!("writing the listing: {e}")),
        _ => Ok(()),
    }
}

/// The calls as the decoder classifies them, to check the header by.
fn summary(listing: &ThunkListing) -> String {
    let direct: Vec<String> = listing
        .direct_exits()
        .iter()
        .map(|to| format!("{to:#x}"))
        .collect();
    let indirect = listing
        .insns
        .iter()
        .filter(|i| matches!(i.branch, Branch::IndirectCall | Branch::IndirectJump))
        .count();
    format!(
        "calls: {} direct (call or tail jump){}, {indirect} indirect (call or tail jump) (code linked at {CODE_BASE:#x}; targets are virtual)",
        direct.len(),
        if direct.is_empty() {
            String::new()
        } else {
            format!(" (to {})", direct.join(", "))
        },
    )
}
