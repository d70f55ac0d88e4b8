//! The side-by-side ISA table: for each slot count, code bytes per thunk
//! and instructions executed per path (hit on slot k, miss), measured from
//! qemu's execution trace of the thunk running in the harness, checked
//! against the expected results and against a static walk of the code.

use std::fmt::Write as _;
use std::path::Path;

use hotcall_jit::{Arch, CompilerOptions, MAX_SLOTS, Placement, ThunkCompiler, ThunkSig};

use crate::error::EmuError;
use crate::harness::Harness;
use crate::model::{SplitMix64, edge_tuple};
use crate::paths::{ThunkPath, static_count};
use crate::program::Program;
use crate::thunks::{Publisher, call_layouts, expected, returned};
use crate::toolchain::Toolchain;

/// Fixed addresses in the harness process. The static harness's text
/// starts at 4 MiB: `NEAR` is 60 MiB above it, in `bl` reach (±128 MiB)
/// and `call rel32` reach (±2 GiB); `FAR` (64 GiB) is out of both.
pub const PUBLISHER_PAGE: u64 = 0x03F0_0000;
pub const NEAR: u64 = 0x0400_0000;
pub const FAR: u64 = 0x10_0000_0000;
/// Bytes reserved per thunk in the report's code area.
const THUNK_STRIDE: u64 = 0x400;

/// One thunk's row: its size and the instructions each path executed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathCounts {
    pub slots: usize,
    pub code_bytes: usize,
    /// Instructions executed inside the thunk on a hit of slot `k`.
    pub hits: Vec<u64>,
    pub miss: u64,
    /// Slots whose hit tail-jumps to the target.
    pub tail_slots: usize,
    /// Slots with the absolute (far) form.
    pub far_slots: usize,
}

/// Measures every slot count 0 to 8 of `sig` on `toolchain`'s ISA, with the
/// thunk near the targets (`far == false`: direct calls) or far from them.
/// Fails if any call returns a wrong result or if the trace and the static
/// walk disagree on any path.
pub fn measure(
    toolchain: &Toolchain,
    sig: &ThunkSig,
    far: bool,
    cache_dir: &Path,
) -> Result<Vec<PathCounts>, EmuError> {
    let arch = toolchain.arch;
    let pool = MAX_SLOTS + 1;
    let harness = Harness::build(toolchain, std::slice::from_ref(sig), pool, cache_dir)?;
    let area = if far { FAR } else { NEAR };
    let area_len = THUNK_STRIDE * (MAX_SLOTS as u64 + 1);
    let placement = Placement {
        lo: area,
        hi: area + area_len,
    };
    let mut compiler = ThunkCompiler::new(arch, CompilerOptions::default())?;
    let mut program = Program::new();
    let (publisher, _) = Publisher::install(&mut program, arch, PUBLISHER_PAGE);
    program.map(area, area_len);
    let mixes = edge_tuple(sig.params(), 3);
    let (_, thunk_regs) = call_layouts(arch, sig, &mixes, &mut SplitMix64(17));
    let layout = program.layout(&thunk_regs)?;
    let mut thunks = Vec::new();
    for n in 0..=MAX_SLOTS {
        let targets: Vec<u64> = (0..n).map(|k| harness.target(0, k)).collect();
        let thunk = compiler.compile(sig, &targets, placement)?;
        let addr = area + THUNK_STRIDE * n as u64;
        let bytes = thunk.link(addr)?;
        publisher.publish(&mut program, addr, &bytes)?;
        let mut calls = Vec::new();
        for k in 0..=n {
            // k == n: target `n` is not promoted, a miss.
            calls.push((k, program.call(addr, layout, Some(harness.target(0, k)))));
        }
        thunks.push((n, addr, thunk, bytes, calls));
    }
    let ranges: Vec<_> = thunks
        .iter()
        .map(|(_, addr, t, ..)| *addr..*addr + t.len() as u64)
        .collect();
    let outcome = harness.run_traced(&program, &ranges)?;
    let mut rows = Vec::new();
    for (n, addr, thunk, bytes, calls) in thunks {
        let mut hits = Vec::new();
        let mut miss = 0;
        for (k, op) in calls {
            let r = outcome.call(op);
            let (h, ret) = expected(sig, k as u64, &mixes);
            let path = if k < n {
                ThunkPath::Hit(k)
            } else {
                ThunkPath::Miss
            };
            if !r.clean() || r.last_call != Some((k as u64, h)) || returned(sig, r) != ret {
                return Err(EmuError::Harness(format!(
                    "{arch} {sig}, {n} slots, {path}: wrong result {r:?}"
                )));
            }
            let traced = outcome
                .traced(op)
                .ok_or_else(|| EmuError::Trace("a call has no count".into()))?;
            let walked = static_count(arch, &bytes, addr, path)?;
            if traced != walked {
                return Err(EmuError::Trace(format!(
                    "{arch} {sig}, {n} slots, {path}: qemu executed {traced} instructions in the thunk, the static walk counts {walked}"
                )));
            }
            match path {
                ThunkPath::Hit(_) => hits.push(traced),
                ThunkPath::Miss => miss = traced,
            }
        }
        rows.push(PathCounts {
            slots: n,
            code_bytes: thunk.len(),
            hits,
            miss,
            tail_slots: thunk.slots().iter().filter(|s| s.tail).count(),
            far_slots: thunk
                .slots()
                .iter()
                .filter(|s| s.form == hotcall_jit::CallForm::Absolute)
                .count(),
        });
    }
    Ok(rows)
}

/// Measurements of several ISAs for one signature.
#[derive(Clone, Debug)]
pub struct IsaReport {
    pub sig: ThunkSig,
    pub far: bool,
    pub isas: Vec<(Arch, Vec<PathCounts>)>,
}

impl IsaReport {
    /// Measures `archs` (each needs its toolchain).
    pub fn measure(
        archs: &[Arch],
        sig: &ThunkSig,
        far: bool,
        cache_dir: &Path,
    ) -> Result<Self, EmuError> {
        let mut isas = Vec::new();
        for &arch in archs {
            let tc = Toolchain::find(arch)?;
            isas.push((arch, measure(&tc, sig, far, cache_dir)?));
        }
        Ok(IsaReport {
            sig: sig.clone(),
            far,
            isas,
        })
    }

    /// The table as Markdown: one row per slot count; each cell lists the
    /// ISAs in the header's order, separated by `/`.
    pub fn markdown(&self) -> String {
        let names: Vec<&str> = self.isas.iter().map(|(a, _)| a.name()).collect();
        let join = |f: &dyn Fn(&PathCounts) -> String, n: usize| -> String {
            self.isas
                .iter()
                .map(|(_, rows)| f(&rows[n]))
                .collect::<Vec<_>>()
                .join(" / ")
        };
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Thunk `{}`, targets {} (cells: {}). Bytes of code per thunk; instructions executed inside the thunk per path, counted by qemu (`-singlestep -d exec`) and equal to a static walk of the code.\n",
            self.sig,
            if self.far {
                "out of direct-call reach (absolute calls)"
            } else {
                "in direct-call reach"
            },
            names.join(" / ")
        );
        let _ = write!(s, "| slots | bytes |");
        for k in 0..MAX_SLOTS {
            let _ = write!(s, " hit {k} |");
        }
        let _ = writeln!(s, " miss | tail-jump slots |");
        let _ = write!(s, "|---:|---:|");
        for _ in 0..MAX_SLOTS {
            let _ = write!(s, "---:|");
        }
        let _ = writeln!(s, "---:|---:|");
        for n in 0..=MAX_SLOTS {
            let _ = write!(s, "| {n} | {} |", join(&|r| r.code_bytes.to_string(), n));
            for k in 0..MAX_SLOTS {
                if k < n {
                    let _ = write!(s, " {} |", join(&|r| r.hits[k].to_string(), n));
                } else {
                    let _ = write!(s, " |");
                }
            }
            let _ = writeln!(
                s,
                " {} | {} |",
                join(&|r| r.miss.to_string(), n),
                join(&|r| r.tail_slots.to_string(), n)
            );
        }
        s
    }
}
