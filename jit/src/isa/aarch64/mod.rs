//! aarch64: `bl` reaches ±128 MiB; freed code becomes `brk #0xc0de`.
//!
//! aarch64 instruction caches are not coherent with data stores: written
//! code must be cleaned to the point of unification and the instruction
//! cache invalidated (`icache.rs`) before any core may run it.

use cranelift_codegen::binemit::Reloc;

use super::{Arch, Branch, BranchKind, IsaBackend, count_classes, parse_imm_addr};
use crate::error::JitError;
use crate::types::ValType;

pub mod icache;
pub mod patch;

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

    fn args_in_registers(&self, thunk_params: &[ValType]) -> bool {
        // AAPCS64: x0-x7 and v0-v7.
        let (ints, floats) = count_classes(thunk_params);
        ints <= 8 && floats <= 8
    }

    fn rewrite_call_as_tail_jump(&self, code: &mut [u8], offset: u32) -> Option<u32> {
        // bl T; ldp x29, x30, [sp], #16; ret
        //   -> ldp x29, x30, [sp], #16; b T; brk    (12 bytes both)
        const LDP_FP_LR: u32 = 0xa8c1_7bfd;
        const RET: u32 = 0xd65f_03c0;
        const BL: u32 = 0x9400_0000;
        const B: u32 = 0x1400_0000;
        let at = offset as usize;
        let word = |i: usize| -> Option<u32> {
            Some(u32::from_le_bytes(
                code.get(at + 4 * i..at + 4 * i + 4)?.try_into().ok()?,
            ))
        };
        let (bl, ldp, ret) = (word(0)?, word(1)?, word(2)?);
        if bl & 0xfc00_0000 != BL || ldp != LDP_FP_LR || ret != RET {
            return None;
        }
        code[at..at + 4].copy_from_slice(&LDP_FP_LR.to_le_bytes());
        code[at + 4..at + 8].copy_from_slice(&B.to_le_bytes());
        code[at + 8..at + 12].copy_from_slice(&BRK_POISON_BYTES);
        Some(offset + 4)
    }

    fn tail_jump_window(&self, offset: u32) -> (u32, u32) {
        (offset, offset + 12)
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

    fn encode_branch(&self, kind: BranchKind, field: u64, target: u64) -> Result<u32, JitError> {
        let opcode = match kind {
            BranchKind::Jump => patch::B,
            BranchKind::Call => patch::BL,
        };
        patch::branch(opcode, field, target)
    }

    fn decode_branch(&self, field: u64, word: u32) -> u64 {
        patch::branch_target(field, word)
    }
}
