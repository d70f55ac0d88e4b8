//! `--count --arch ISA`: the side-by-side ISA table of `hotcall isa-report`
//! for the workloads' signature, in the bench report. For each slot count 0
//! to 8, the code bytes of a thunk and the instructions executed inside it
//! per path (hit on slot k, miss), for the host's ISA and each `--arch`,
//! every thunk run under qemu-user and checked (`hotcall_emu::report`).
//! The workloads themselves run natively; this is how the same thunks
//! compare on the other ISA.

use hotcall::workload::Callback;
use hotcall::{Arch, SiteFn};
use serde::Serialize;

/// The table, as the JSON (`isa_table`) and `report.md` carry it.
#[derive(Clone, Debug, Serialize)]
pub struct IsaTable {
    /// The thunks' signature: the workloads' callback.
    pub signature: String,
    /// Whether the targets were out of direct-call reach (never, here:
    /// `hotcall isa-report --far` has that table).
    pub far: bool,
    pub method: &'static str,
    pub isas: Vec<IsaColumn>,
    /// The table as Markdown (cells `x86_64 / aarch64`).
    #[serde(skip)]
    pub markdown: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct IsaColumn {
    pub arch: &'static str,
    /// One per slot count, 0 to 8.
    pub thunks: Vec<IsaRow>,
}

#[derive(Clone, Debug, Serialize)]
pub struct IsaRow {
    pub slots: usize,
    pub code_bytes: usize,
    /// Instructions executed inside the thunk on a hit of slot k.
    pub hit_instructions: Vec<u64>,
    pub miss_instructions: u64,
    pub tail_jump_slots: usize,
    pub far_slots: usize,
}

/// The ISAs of the table: the host's first, then each of `asked` not
/// already there.
pub fn isas(asked: &[Arch]) -> Vec<Arch> {
    let mut archs: Vec<Arch> = Arch::host().into_iter().collect();
    for &a in asked {
        if !archs.contains(&a) {
            archs.push(a);
        }
    }
    archs
}

/// Measures the table for `archs` (needs qemu-user-static and the C
/// compilers; the error says what to install).
pub fn measure(archs: &[Arch]) -> Result<IsaTable, String> {
    let sig = <Callback as SiteFn>::signature();
    let report = crate::cli::isa_report::measure(archs, &sig, false)
        .map_err(|e| format!("--arch: the ISA table: {e}"))?;
    Ok(IsaTable {
        signature: sig.to_string(),
        far: report.far,
        method: "each thunk runs in the hotcall-emu harness under qemu-user; instructions counted from qemu's \
                 -singlestep -d exec trace inside the thunk, from its entry until control leaves it (a call out \
                 counts as one), checked against the targets' results and a static walk of the code",
        isas: report
            .isas
            .iter()
            .map(|(arch, rows)| IsaColumn {
                arch: arch.name(),
                thunks: rows
                    .iter()
                    .map(|r| IsaRow {
                        slots: r.slots,
                        code_bytes: r.code_bytes,
                        hit_instructions: r.hits.clone(),
                        miss_instructions: r.miss,
                        tail_jump_slots: r.tail_slots,
                        far_slots: r.far_slots,
                    })
                    .collect(),
            })
            .collect(),
        markdown: report.markdown(),
    })
}
