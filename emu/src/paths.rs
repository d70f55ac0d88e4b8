//! Instructions a thunk executes on each path, by a static walk of its
//! code; the emulated tests cross-check it against qemu's trace.

use std::collections::BTreeMap;
use std::fmt;

use hotcall_jit::Arch;
use hotcall_jit::disasm::disassemble_reachable;
use hotcall_jit::isa::Branch;

use crate::error::EmuError;

/// A way through a thunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ThunkPath {
    /// The incoming target is promoted slot `k`.
    Hit(usize),
    /// The incoming target is none of the slots.
    Miss,
}

impl fmt::Display for ThunkPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ThunkPath::Hit(k) => write!(f, "hit slot {k}"),
            ThunkPath::Miss => f.write_str("miss"),
        }
    }
}

/// Instructions of the thunk (code `code` placed at `base`) executed on
/// `path`, from the entry until control leaves it for good (a tail jump or
/// a return); calls out of the thunk count as one instruction and the walk
/// goes on after them. The thunk's compare chain branches away on
/// inequality (docs/DESIGN.md), so the i-th conditional branch on the way
/// is slot i's test: taken for slots before the hit, not taken at it.
pub fn static_count(arch: Arch, code: &[u8], base: u64, path: ThunkPath) -> Result<u64, EmuError> {
    let insns: BTreeMap<u64, _> = disassemble_reachable(arch, code, base)?
        .into_iter()
        .map(|i| (i.addr, i))
        .collect();
    let end = base + code.len() as u64;
    let (mut pc, mut count, mut slot) = (base, 0u64, 0usize);
    loop {
        let i = insns.get(&pc).ok_or_else(|| {
            EmuError::Trace(format!("the walk reached {pc:#x}, not an instruction"))
        })?;
        count += 1;
        if count > 10_000 {
            return Err(EmuError::Trace("the walk does not end".into()));
        }
        let next = pc + i.bytes.len() as u64;
        pc = match i.branch {
            Branch::Jump {
                target,
                conditional: true,
            } => {
                let taken = match path {
                    ThunkPath::Hit(k) => slot < k,
                    ThunkPath::Miss => true,
                };
                slot += 1;
                if taken { target } else { next }
            }
            Branch::Jump {
                target,
                conditional: false,
            } if (base..end).contains(&target) => target,
            Branch::Jump { .. } | Branch::Return | Branch::IndirectJump => break,
            Branch::DirectCall(_) | Branch::IndirectCall | Branch::Other => next,
        };
    }
    if let ThunkPath::Hit(k) = path
        && k >= slot
    {
        return Err(EmuError::Trace(format!(
            "{path} walked past only {slot} slot tests"
        )));
    }
    Ok(count)
}
