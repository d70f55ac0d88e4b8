//! x86-64: `call rel32` reaches ±2 GiB; freed code becomes `int3`.
//!
//! x86-64 keeps instruction fetch coherent with stores in hardware, but the
//! SDM's cross-modifying-code rule asks every core that may execute new code
//! to run a serializing instruction first; `crate::coherence` provides it
//! with `membarrier(SYNC_CORE)`.

use cranelift_codegen::binemit::Reloc;

use super::{Arch, ArgLoc, Branch, BranchKind, IsaBackend, parse_imm_addr};
use crate::error::JitError;

pub mod encode;
pub mod icache;
#[cfg(target_arch = "x86_64")]
pub mod retpoline;

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

    fn direct_call_return_offset(&self) -> u32 {
        4 // the rel32 field ends the instruction
    }

    fn indirect_call_start(&self, code: &[u8], block: usize, ret: usize) -> Option<usize> {
        // `call *reg` is `ff /2` with a register ModRM (`ff d0+r`), after a
        // REX.B prefix (`41`) for r8-r15: 2 or 3 bytes. Cranelift emits no
        // other prefix on it. In the miss block the instruction before the
        // call is an argument move or extension, which ends in a register
        // ModRM byte (`c0`-`ff`) or the disp8 of a stack slot (a multiple
        // of 8), never in `41`: so a `41` before `ff d0+r` is the prefix.
        // (The tests check this against capstone's decoding.)
        let at = ret.checked_sub(2).filter(|&at| at >= block)?;
        let call = code.get(at..ret)?;
        if call[0] != 0xff || call[1] & 0xf8 != 0xd0 {
            return None;
        }
        match at.checked_sub(1).filter(|&p| p >= block).map(|p| code[p]) {
            Some(0x41) => Some(at - 1),
            _ => Some(at),
        }
    }

    fn link_direct_call(
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

    fn arg_registers(&self) -> (usize, usize) {
        // System V: six integer registers, eight vector registers.
        (6, 8)
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

    fn hook_stub(
        &self,
        cookie: u32,
        bridge: u64,
        place: u64,
        target: ArgLoc,
        sample: Option<i32>,
    ) -> Vec<u8> {
        // push imm32 sign-extends: cookies stay below 2^31.
        assert!(
            cookie < 1 << 31,
            "hook cookie {cookie:#x} does not fit push imm32"
        );
        let mut code = Vec::new();
        if let (Some(offset), ArgLoc::Hw(r)) = (sample, target) {
            // dec qword ptr fs:[offset]; jz record; jmp *reg; record:
            code.extend_from_slice(&[0x64, 0x48, 0xff, 0x0c, 0x25]);
            code.extend_from_slice(&offset.to_le_bytes());
            let jmp_reg: &[u8] = if r >= 8 {
                &[0x41, 0xff, 0xe0 | (r & 7)]
            } else {
                &[0xff, 0xe0 | r]
            };
            code.extend_from_slice(&[0x74, jmp_reg.len() as u8]);
            code.extend_from_slice(jmp_reg);
        }
        code.push(0x68);
        code.extend_from_slice(&cookie.to_le_bytes());
        match target {
            ArgLoc::Reg(_) | ArgLoc::Hw(_) => {
                // Integer argument n: rdi, rsi, rdx, rcx, r8, r9.
                const ARG: [u8; 6] = [7, 6, 2, 1, 8, 9];
                let r = match target {
                    ArgLoc::Reg(n) => ARG[n],
                    ArgLoc::Hw(r) => r,
                    ArgLoc::Stack(_) => unreachable!(),
                };
                if r >= 8 {
                    code.push(0x41); // REX.B
                }
                code.push(0x50 + (r & 7)); // push r64
            }
            ArgLoc::Stack(k) => {
                // Stack argument k sits above the return address and the
                // cookie just pushed: push qword [rsp + 16 + 8k].
                let disp = 16 + 8 * k as u32;
                match u8::try_from(disp).ok().filter(|&d| d < 0x80) {
                    Some(d) => code.extend_from_slice(&[0xff, 0x74, 0x24, d]),
                    None => {
                        code.extend_from_slice(&[0xff, 0xb4, 0x24]);
                        code.extend_from_slice(&disp.to_le_bytes());
                    }
                }
            }
        }
        let next = place.wrapping_add(code.len() as u64 + 5) as i64;
        // (code.len() already counts any sampling prefix.)
        match i32::try_from((bridge as i64).wrapping_sub(next)) {
            Ok(rel) => {
                code.push(0xe9); // jmp rel32
                code.extend_from_slice(&rel.to_le_bytes());
            }
            Err(_) => {
                // jmp *0(%rip); .quad bridge
                code.extend_from_slice(&[0xff, 0x25, 0, 0, 0, 0]);
                code.extend_from_slice(&bridge.to_le_bytes());
            }
        }
        code
    }

    fn rewrite_miss_as_tail_jump(
        &self,
        code: &mut [u8],
        at: usize,
        stub: bool,
    ) -> Option<(u8, Option<u32>)> {
        // [REX.B] ff /2 (call *reg); mov %rbp,%rsp; pop %rbp; ret
        //   -> leave; jmp *reg            (no stub)
        //   -> leave; jmp rel32 stub      (counting)
        const EPILOGUE_RET: [u8; 5] = [0x48, 0x89, 0xec, 0x5d, 0xc3];
        let window = code.get(at..)?;
        let (rex, call) = match window.first()? {
            0x41 => (1, window.get(1..3)?),
            _ => (0, window.get(..2)?),
        };
        if call[0] != 0xff || call[1] & 0xf8 != 0xd0 {
            return None;
        }
        let reg = (call[1] & 7) + 8 * rex as u8;
        let len = rex + 2 + EPILOGUE_RET.len();
        if window.get(rex + 2..len)? != EPILOGUE_RET || matches!(reg, 4 | 5) {
            return None;
        }
        if stub && !self.miss_stub_registers().contains(&reg) {
            return None;
        }
        let out = &mut code[at..at + len];
        out.fill(0xcc);
        out[0] = 0xc9; // leave
        if stub {
            out[1] = 0xe9; // jmp rel32
            Some((reg, Some(at as u32 + 2)))
        } else {
            if rex == 1 {
                out[1] = 0x41;
            }
            out[1 + rex] = 0xff;
            out[2 + rex] = 0xe0 | (reg & 7); // jmp *reg
            Some((reg, None))
        }
    }

    fn entry_hook_prefix(&self) -> (Vec<u8>, u32, i64) {
        (vec![0xe8, 0, 0, 0, 0], 1, -4) // call rel32
    }

    fn jump_addend(&self) -> i64 {
        -4
    }

    fn miss_stub_registers(&self) -> &'static [u8] {
        // rax, rcx, rdx, rsi, rdi, r8-r11: the caller-saved registers.
        &[0, 1, 2, 6, 7, 8, 9, 10, 11]
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
        encode::rel32(field, target)
    }

    fn decode_branch(&self, field: u64, word: u32) -> u64 {
        encode::rel32_target(field, word)
    }
}
