//! Where a C caller puts each argument: the register file the harness loads
//! before a call (System V AMD64 and AAPCS64, as far as hotcall's value
//! types go: scalars, at most eight parameters plus the target pointer).
//!
//! Bits an ABI leaves unspecified are filled with junk rather than zeros, so
//! neither a thunk nor a target can silently rely on them: on aarch64 every
//! bit above a narrow argument's width (AAPCS64 leaves them unspecified;
//! the callee extends), on x86-64 the upper 32 bits of 8- and 16-bit
//! arguments (which callers extend to 32 bits, and clang/LLVM callees rely
//! on that) and everything above a `float`.

use hotcall_jit::{Arch, ValType};

use crate::model::SplitMix64;

/// The argument registers and stack words of one call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegFile {
    /// Integer argument registers: x0-x7, or rdi rsi rdx rcx r8 r9 (the
    /// last two unused).
    pub int: [u64; 8],
    /// Low 64 bits of v0-v7 / xmm0-xmm7.
    pub float: [u64; 8],
    /// Stack arguments, from the stack pointer up, one 8-byte slot each.
    pub stack: Vec<u64>,
}

/// Most stack words the harness passes (its `HC_MAX_STACK`).
pub const MAX_STACK_WORDS: usize = 16;

/// Lays out `args` (type and mix) as a C caller on `arch` passes them.
/// `junk` supplies the unspecified bits.
pub fn layout(arch: Arch, args: &[(ValType, u64)], junk: &mut SplitMix64) -> RegFile {
    let (int_regs, float_regs) = match arch {
        Arch::X86_64 => (6, 8),
        Arch::Aarch64 => (8, 8),
    };
    let mut rf = RegFile {
        int: [0; 8],
        float: [0; 8],
        stack: Vec::new(),
    };
    // Registers nobody passes in still hold junk.
    for r in rf.int.iter_mut().chain(rf.float.iter_mut()) {
        *r = junk.next_u64();
    }
    let (mut ngrn, mut nsrn) = (0, 0);
    for &(t, mix) in args {
        let word = with_junk(arch, t, mix, junk.next_u64());
        if t.is_float() {
            if nsrn < float_regs {
                rf.float[nsrn] = word;
                nsrn += 1;
                continue;
            }
        } else if ngrn < int_regs {
            rf.int[ngrn] = word;
            ngrn += 1;
            continue;
        }
        // Both ABIs: the next 8-byte stack slot, value in its low bytes
        // (AAPCS64 as on Linux; Apple's packs narrow arguments instead).
        rf.stack.push(word);
    }
    rf
}

/// The register or stack word for one value: the bits the ABI specifies
/// from `mix`, the rest from `junk`.
fn with_junk(arch: Arch, t: ValType, mix: u64, junk: u64) -> u64 {
    let specified: u64 = match (arch, t) {
        (_, ValType::I64 | ValType::U64 | ValType::Ptr | ValType::F64) => u64::MAX,
        (_, ValType::F32) => 0xFFFF_FFFF,
        (Arch::X86_64, _) => 0xFFFF_FFFF,
        (Arch::Aarch64, ValType::I8 | ValType::U8 | ValType::Bool) => 0xFF,
        (Arch::Aarch64, ValType::I16 | ValType::U16) => 0xFFFF,
        (Arch::Aarch64, ValType::I32 | ValType::U32) => 0xFFFF_FFFF,
    };
    (mix & specified) | (junk & !specified)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aarch64_fills_eight_and_eight_then_the_stack() {
        let mut junk = SplitMix64(3);
        let mut args = vec![(ValType::I64, 1u64); 9];
        args.push((ValType::F64, 2));
        let rf = layout(Arch::Aarch64, &args, &mut junk);
        assert_eq!(rf.int, [1; 8]);
        assert_eq!(rf.float[0], 2);
        assert_eq!(rf.stack, vec![1]);
    }

    #[test]
    fn x86_64_extends_narrow_integers_to_32_bits_only() {
        let mut junk = SplitMix64(3);
        let neg = -2i64 as u64;
        let rf = layout(Arch::X86_64, &[(ValType::I8, neg); 7], &mut junk);
        assert_eq!(rf.int[0] as u32, neg as u32);
        assert_eq!(rf.stack.len(), 1);
        let rf = layout(Arch::Aarch64, &[(ValType::I8, neg)], &mut junk);
        assert_eq!(rf.int[0] as u8, 0xFE);
    }
}
