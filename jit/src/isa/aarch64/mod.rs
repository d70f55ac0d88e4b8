//! aarch64: `bl` reaches ±128 MiB; freed code becomes `brk #0xc0de`.
//!
//! aarch64 instruction caches are not coherent with data stores: written
//! code must be cleaned to the point of unification and the instruction
//! cache invalidated (`icache.rs`) before any core may run it.

use cranelift_codegen::binemit::Reloc;

use super::{Arch, Branch, IsaBackend, parse_imm_addr};
use crate::error::JitError;

pub mod icache;

/// The aarch64 backend.
pub struct Aarch64;

/// `brk #0xc0de`, little-endian.
const BRK_POISON: u32 = 0xd420_0000 | (0xc0de << 5);
const BRK_POISON_BYTES: [u8; 4] = BRK_POISON.to_le_bytes();

impl IsaBackend for Aarch64 {
    fn arch(&self) -> Arch {
        Arch::Aarch64
    }

    fn name(&self) -> &'static str {
        "aarch64"
    }

    fn triple(&self) -> &'static str {
        "aarch64-unknown-linux-gnu"
    }

    fn direct_call_reach(&self) -> u64 {
        128 << 20
    }

    fn direct_call_reloc(&self) -> Reloc {
        Reloc::Arm64Call
    }

    fn patch_direct_call(
        &self,
        code: &mut [u8],
        offset: u32,
        place: u64,
        target: u64,
        addend: i64,
    ) -> Result<(), JitError> {
        // BL imm26: the word offset from the instruction itself.
        let insn_addr = place.wrapping_add(u64::from(offset));
        let diff = (target as i64)
            .wrapping_add(addend)
            .wrapping_sub(insn_addr as i64);
        let words = diff >> 2;
        if diff & 3 != 0 || !(-(1 << 25)..(1 << 25)).contains(&words) {
            return Err(JitError::OutOfRange {
                offset,
                place: insn_addr,
                target,
            });
        }
        let at = offset as usize;
        let mut insn = u32::from_le_bytes(code[at..at + 4].try_into().expect("4 bytes"));
        insn = (insn & !0x03ff_ffff) | (words as u32 & 0x03ff_ffff);
        code[at..at + 4].copy_from_slice(&insn.to_le_bytes());
        Ok(())
    }

    fn poison_pattern(&self) -> &'static [u8] {
        &BRK_POISON_BYTES
    }

    fn classify(&self, mnemonic: &str, op_str: &str) -> Branch {
        match mnemonic {
            "bl" => parse_imm_addr(op_str).map_or(Branch::Other, Branch::DirectCall),
            "blr" | "blraa" | "blrab" | "blraaz" | "blrabz" => Branch::IndirectCall,
            "br" | "braa" | "brab" | "braaz" | "brabz" => Branch::IndirectJump,
            "ret" | "retaa" | "retab" => Branch::Return,
            "b" => parse_imm_addr(op_str).map_or(Branch::Other, |target| Branch::Jump {
                target,
                conditional: false,
            }),
            m if m.starts_with("b.") || matches!(m, "cbz" | "cbnz" | "tbz" | "tbnz") => {
                // The target is the last operand.
                let last = op_str.rsplit(',').next().unwrap_or("");
                parse_imm_addr(last).map_or(Branch::Other, |target| Branch::Jump {
                    target,
                    conditional: true,
                })
            }
            _ => Branch::Other,
        }
    }
}
