//! Decoding thunks with capstone, for the CLI, the golden tests and the
//! tests that prove promoted calls are direct.

use std::fmt::Write as _;

use capstone::Capstone;

use crate::error::JitError;
use crate::isa::{Arch, Branch};

/// One decoded instruction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Insn {
    pub addr: u64,
    pub bytes: Vec<u8>,
    pub mnemonic: String,
    pub op_str: String,
    pub branch: Branch,
}

impl Insn {
    /// The target of a direct transfer that leaves the code `[base, end)`:
    /// a direct call, or a direct unconditional jump to outside the code (a
    /// promoted hit's tail jump). Conditional branches and jumps inside the
    /// code are control flow within the thunk.
    pub fn direct_exit(&self, base: u64, end: u64) -> Option<u64> {
        match self.branch {
            Branch::DirectCall(t) => Some(t),
            Branch::Jump {
                target,
                conditional: false,
            } if !(base..end).contains(&target) => Some(target),
            _ => None,
        }
    }
}

/// A decoder set up as Cranelift's own `to_capstone` sets it up (AT&T
/// syntax on x86-64; on aarch64 `skipdata`, so an inline constant prints as
/// `.byte` and decoding goes on), built here so that decoding needs neither
/// Cranelift's `disas` feature nor a compiled ISA.
fn capstone_for(arch: Arch) -> Result<Capstone, JitError> {
    use capstone::prelude::*;
    let err = |e: capstone::Error| JitError::Disasm(e.to_string());
    match arch {
        Arch::X86_64 => Capstone::new()
            .x86()
            .mode(arch::x86::ArchMode::Mode64)
            .syntax(arch::x86::ArchSyntax::Att)
            .detail(true)
            .build()
            .map_err(err),
        Arch::Aarch64 => {
            let mut cs = Capstone::new()
                .arm64()
                .mode(arch::arm64::ArchMode::Arm)
                .detail(true)
                .build()
                .map_err(err)?;
            cs.set_skipdata(true).map_err(err)?;
            Ok(cs)
        }
    }
}

/// Decodes `code` linearly as if it executed at `base`, stopping at the
/// first byte sequence that is not an instruction. On x86-64 the constant
/// pool after a thunk's code decodes as junk instructions here; use
/// [`disassemble_reachable`] for an exact listing of a thunk.
pub fn disassemble(arch: Arch, code: &[u8], base: u64) -> Result<Vec<Insn>, JitError> {
    let cs = capstone_for(arch)?;
    let insns = cs
        .disasm_all(code, base)
        .map_err(|e| JitError::Disasm(e.to_string()))?;
    let backend = arch.backend();
    Ok(insns
        .iter()
        .map(|i| {
            let mnemonic = i.mnemonic().unwrap_or("").to_string();
            let op_str = i.op_str().unwrap_or("").to_string();
            Insn {
                addr: i.address(),
                bytes: i.bytes().to_vec(),
                branch: backend.classify(&mnemonic, &op_str),
                mnemonic,
                op_str,
            }
        })
        .collect())
}

/// Decodes only the instructions reachable from `base` by following
/// fall-through and direct jumps, stopping paths at returns and indirect
/// jumps, and lists them in address order. Data after the code (the x86-64
/// constant pool) is never decoded as instructions, so the result is exact.
pub fn disassemble_reachable(arch: Arch, code: &[u8], base: u64) -> Result<Vec<Insn>, JitError> {
    let cs = capstone_for(arch)?;
    let backend = arch.backend();
    let end = base + code.len() as u64;
    let mut seen = std::collections::BTreeMap::new();
    let mut work = vec![base];
    while let Some(mut pc) = work.pop() {
        while (base..end).contains(&pc) && !seen.contains_key(&pc) {
            let off = (pc - base) as usize;
            let decoded = cs
                .disasm_count(&code[off..], pc, 1)
                .map_err(|e| JitError::Disasm(e.to_string()))?;
            let Some(i) = decoded.iter().next() else {
                return Err(JitError::Disasm(format!("undecodable bytes at {pc:#x}")));
            };
            let mnemonic = i.mnemonic().unwrap_or("").to_string();
            let op_str = i.op_str().unwrap_or("").to_string();
            let branch = backend.classify(&mnemonic, &op_str);
            let next = pc + i.bytes().len() as u64;
            seen.insert(
                pc,
                Insn {
                    addr: pc,
                    bytes: i.bytes().to_vec(),
                    mnemonic,
                    op_str,
                    branch,
                },
            );
            match branch {
                Branch::Return | Branch::IndirectJump => break,
                Branch::Jump {
                    target,
                    conditional,
                } => {
                    work.push(target);
                    if !conditional {
                        break;
                    }
                }
                _ => {}
            }
            pc = next;
        }
    }
    Ok(seen.into_values().collect())
}

/// The instructions a thunk executes for one call, in execution order: a
/// hit on slot `hit` (`None`: a miss), up to the tail jump out of the code
/// or the return. Calls are listed but not followed.
///
/// It relies on the thunk's layout (`crate::thunk::ir`): the `j`-th conditional
/// branch executed is slot `j`'s "not this target" branch, taken for every
/// slot before the hit and, on a miss, for every slot.
pub fn path(arch: Arch, code: &[u8], base: u64, hit: Option<usize>) -> Result<Vec<Insn>, JitError> {
    let insns = disassemble_reachable(arch, code, base)?;
    let end = base + code.len() as u64;
    let at = |pc: u64| insns.iter().position(|i| i.addr == pc);
    let mut out = Vec::new();
    let mut pc = base;
    let mut branches = 0;
    while let Some(k) = at(pc) {
        let i = &insns[k];
        out.push(i.clone());
        if out.len() > insns.len() {
            return Err(JitError::Disasm("the path loops".into()));
        }
        let next = i.addr + i.bytes.len() as u64;
        pc = match i.branch {
            Branch::Return | Branch::IndirectJump => return Ok(out),
            Branch::Jump {
                target,
                conditional: false,
            } if !(base..end).contains(&target) => return Ok(out),
            Branch::Jump {
                target,
                conditional: false,
            } => target,
            Branch::Jump {
                target,
                conditional: true,
            } => {
                let taken = hit.is_none_or(|k| branches < k);
                branches += 1;
                if taken { target } else { next }
            }
            _ => next,
        };
    }
    Err(JitError::Disasm(format!(
        "the path leaves the code at {pc:#x}"
    )))
}

/// The offset of a thunk's miss call as decoded: the first indirect call of
/// the last basic block (`bb_starts`: where basic blocks start), before any
/// return. The compilers find it from Cranelift's call sites instead; this
/// is the oracle the tests (and debug builds with this feature) check them
/// against.
pub fn miss_call_offset(arch: Arch, code: &[u8], bb_starts: &[u32]) -> Option<usize> {
    let last = *bb_starts.iter().max()? as usize;
    let insns = disassemble(arch, code.get(last..)?, 0).ok()?;
    insns
        .iter()
        .take_while(|i| i.branch != Branch::Return)
        .find(|i| i.branch == Branch::IndirectCall)
        .map(|i| last + i.addr as usize)
}

/// One line per instruction: address, bytes, text.
pub fn render(insns: &[Insn]) -> String {
    let mut out = String::new();
    for i in insns {
        let bytes: String = i.bytes.iter().map(|b| format!("{b:02x}")).collect();
        let _ = writeln!(
            out,
            "{:#010x}  {:<22} {} {}",
            i.addr, bytes, i.mnemonic, i.op_str
        );
    }
    out
}
