//! x86-64: `call rel32` reaches ±2 GiB; freed code becomes `int3`.
//!
//! x86-64 keeps instruction fetch coherent with stores in hardware, but the
//! SDM's cross-modifying-code rule asks every core that may execute new code
//! to run a serializing instruction first; `crate::coherence` provides it
//! with `membarrier(SYNC_CORE)`.

use cranelift_codegen::binemit::Reloc;

use super::{Arch, Branch, BranchKind, IsaBackend, count_classes, parse_imm_addr};
use crate::error::JitError;
use crate::types::ValType;

pub mod icache;
pub mod patch;

/// The x86-64 backend.
pub struct X86_64;

impl IsaBackend for X86_64 {
    fn arch(&self) -> Arch {
        Arch::X86_64
    }

    fn name(&self) -> &'static str {
        "x86_64"
    }

    fn triple(&self) -> &'static str {
        "x86_64-unknown-linux-gnu"
    }

    fn direct_call_reach(&self) -> u64 {
        1 << 31
    }

    fn direct_call_reloc(&self) -> Reloc {
        Reloc::X86CallPCRel4
    }

    fn patch_direct_call(
        &self,
        code: &mut [u8],
        offset: u32,
        place: u64,
        target: u64,
        addend: i64,
    ) -> Result<(), JitError> {
        // S + A - P, where P is the address of the 4-byte field itself.
        let field = place.wrapping_add(u64::from(offset));
        let disp = (target as i64)
            .wrapping_add(addend)
            .wrapping_sub(field as i64);
        let disp = i32::try_from(disp).map_err(|_| JitError::OutOfRange {
            offset,
            place: field,
            target,
        })?;
        let at = offset as usize;
        code[at..at + 4].copy_from_slice(&disp.to_le_bytes());
        Ok(())
    }

    fn args_in_registers(&self, thunk_params: &[ValType]) -> bool {
        // System V: six integer registers, eight vector registers.
        let (ints, floats) = count_classes(thunk_params);
        ints <= 6 && floats <= 8
    }

    fn rewrite_call_as_tail_jump(&self, code: &mut [u8], offset: u32) -> Option<u32> {
        // call rel32; mov %rbp,%rsp; pop %rbp; ret
        //   -> mov %rbp,%rsp; pop %rbp; jmp rel32     (10 bytes both)
        const EPILOGUE: [u8; 4] = [0x48, 0x89, 0xec, 0x5d];
        let call = (offset as usize).checked_sub(1)?;
        let window = code.get(call..call + 10)?;
        if window[0] != 0xe8 || window[5..9] != EPILOGUE || window[9] != 0xc3 {
            return None;
        }
        code[call..call + 4].copy_from_slice(&EPILOGUE);
        code[call + 4] = 0xe9; // jmp rel32
        code[call + 5..call + 9].fill(0);
        code[call + 9] = 0xcc; // never reached: int3
        Some(offset + 4)
    }

    fn tail_jump_window(&self, offset: u32) -> (u32, u32) {
        (offset.saturating_sub(1), offset + 9)
    }

    fn poison_pattern(&self) -> &'static [u8] {
        &[0xCC] // int3
    }

    fn classify(&self, mnemonic: &str, op_str: &str) -> Branch {
        match mnemonic {
            "call" | "callq" => match parse_imm_addr(op_str) {
                Some(addr) => Branch::DirectCall(addr),
                None => Branch::IndirectCall,
            },
            "ret" | "retq" => Branch::Return,
            m if m.starts_with('j') => match parse_imm_addr(op_str) {
                Some(target) => Branch::Jump {
                    target,
                    conditional: m != "jmp" && m != "jmpq",
                },
                None => Branch::IndirectJump,
            },
            _ => Branch::Other,
        }
    }

    fn encode_branch(&self, _kind: BranchKind, field: u64, target: u64) -> Result<u32, JitError> {
        patch::rel32(field, target)
    }

    fn decode_branch(&self, field: u64, word: u32) -> u64 {
        patch::rel32_target(field, word)
    }
}
