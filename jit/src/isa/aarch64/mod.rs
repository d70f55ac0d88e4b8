//! aarch64: `bl` reaches ±128 MiB; freed code becomes `brk #0xc0de`.
//!
//! aarch64 instruction caches are not coherent with data stores: written
//! code must be cleaned to the point of unification and the instruction
//! cache invalidated (`icache.rs`) before any core may run it.

use cranelift_codegen::binemit::Reloc;

use super::{Arch, ArgLoc, Branch, BranchKind, IsaBackend, parse_imm_addr};
use crate::error::JitError;

pub mod encode;
pub mod icache;
pub mod maintenance;
#[cfg(target_arch = "aarch64")]
pub mod retpoline;

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

    fn direct_call_return_offset(&self) -> u32 {
        4 // the relocation is at the `bl` itself
    }

    fn indirect_call_start(&self, code: &[u8], block: usize, ret: usize) -> Option<usize> {
        // `blr xN`: one word, `d63f0000 | N << 5`.
        let at = ret.checked_sub(4).filter(|&at| at >= block)?;
        let word = u32::from_le_bytes(code.get(at..ret)?.try_into().ok()?);
        (word & 0xffff_fc1f == 0xd63f_0000).then_some(at)
    }

    fn link_direct_call(
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

    fn arg_registers(&self) -> (usize, usize) {
        // AAPCS64: x0-x7 and v0-v7.
        (8, 8)
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

    fn hook_stub(
        &self,
        cookie: u32,
        bridge: u64,
        place: u64,
        target: ArgLoc,
        _sample: Option<i32>,
    ) -> Vec<u8> {
        // No sampling on aarch64: every miss goes to the bridge.
        const STP_X16_X17_PRE: u32 = 0xa9bf_47f0; // stp x16, x17, [sp, #-16]!
        const MOVZ_X16: u32 = 0xd280_0010; // movz x16, #imm16
        const MOVK_X16_16: u32 = 0xf2a0_0010; // movk x16, #imm16, lsl #16
        const MOV_X17: u32 = 0xaa00_03f1; // orr x17, xzr, xN (N in bits 16..21)
        const LDR_X17_SP: u32 = 0xf940_03f1; // ldr x17, [sp, #8*imm12]
        const B: u32 = 0x1400_0000;
        const LDR_X16_LIT8: u32 = 0x5800_0050; // ldr x16, #8
        const BR_X16: u32 = 0xd61f_0200; // br x16
        let load_target = match target {
            ArgLoc::Reg(n) => MOV_X17 | (n as u32) << 16,
            ArgLoc::Hw(r) => MOV_X17 | u32::from(r) << 16,
            // After the first stp, stack argument k is at sp + 16 + 8k.
            ArgLoc::Stack(k) => LDR_X17_SP | (2 + k as u32) << 10,
        };
        let mut words = vec![
            STP_X16_X17_PRE,
            MOVZ_X16 | (cookie & 0xffff) << 5,
            MOVK_X16_16 | (cookie >> 16) << 5,
            load_target,
            STP_X16_X17_PRE, // [sp] = cookie, [sp+8] = target
        ];
        let b_at = place.wrapping_add(4 * words.len() as u64) as i64;
        let diff = (bridge as i64).wrapping_sub(b_at);
        let near = diff & 3 == 0 && (-(1 << 27)..(1 << 27)).contains(&diff);
        if near {
            words.push(B | ((diff >> 2) as u32 & 0x03ff_ffff));
        } else {
            // x16 and x17 are saved and their values on the stack: free.
            words.extend([LDR_X16_LIT8, BR_X16]);
        }
        let mut code: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        if !near {
            code.extend_from_slice(&bridge.to_le_bytes());
        }
        code
    }

    fn rewrite_miss_as_tail_jump(
        &self,
        code: &mut [u8],
        at: usize,
        stub: bool,
    ) -> Option<(u8, Option<u32>)> {
        // blr xN; ldp x29, x30, [sp], #16; ret
        //   -> ldp x29, x30, [sp], #16; br xN; brk     (no stub)
        //   -> ldp x29, x30, [sp], #16; b stub; brk    (counting)
        const LDP_FP_LR: u32 = 0xa8c1_7bfd;
        const RET: u32 = 0xd65f_03c0;
        const BLR: u32 = 0xd63f_0000;
        const BR: u32 = 0xd61f_0000;
        const B: u32 = 0x1400_0000;
        let word = |i: usize| -> Option<u32> {
            Some(u32::from_le_bytes(
                code.get(at + 4 * i..at + 4 * i + 4)?.try_into().ok()?,
            ))
        };
        let (blr, ldp, ret) = (word(0)?, word(1)?, word(2)?);
        if blr & 0xffff_fc1f != BLR || ldp != LDP_FP_LR || ret != RET {
            return None;
        }
        let reg = ((blr >> 5) & 31) as u8;
        if matches!(reg, 29 | 30) || (stub && !self.miss_stub_registers().contains(&reg)) {
            return None;
        }
        let jump = if stub { B } else { BR | u32::from(reg) << 5 };
        code[at..at + 4].copy_from_slice(&LDP_FP_LR.to_le_bytes());
        code[at + 4..at + 8].copy_from_slice(&jump.to_le_bytes());
        code[at + 8..at + 12].copy_from_slice(&BRK_POISON_BYTES);
        Some((reg, stub.then_some(at as u32 + 4)))
    }

    fn entry_hook_prefix(&self) -> (Vec<u8>, u32, i64) {
        const STP_FP_LR_PRE: u32 = 0xa9bf_7bfd; // stp x29, x30, [sp, #-16]!
        const BL: u32 = 0x9400_0000;
        const LDP_FP_LR_POST: u32 = 0xa8c1_7bfd; // ldp x29, x30, [sp], #16
        let code = [STP_FP_LR_PRE, BL, LDP_FP_LR_POST]
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect();
        (code, 4, 0)
    }

    fn jump_addend(&self) -> i64 {
        0
    }

    fn miss_stub_registers(&self) -> &'static [u8] {
        // x0-x15: caller-saved, and not x16/x17, which the stub itself uses.
        &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]
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
            BranchKind::Jump => encode::B,
            BranchKind::Call => encode::BL,
        };
        encode::branch(opcode, field, target)
    }

    fn decode_branch(&self, field: u64, word: u32) -> u64 {
        encode::branch_target(field, word)
    }
}
