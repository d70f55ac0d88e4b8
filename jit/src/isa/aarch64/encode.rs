//! The aarch64 words hotcall rewrites while code may run, and the stub and
//! return-trampoline sequences it emits.
//!
//! A patchable branch is a whole `B` or `BL` instruction: the Arm ARM
//! (DDI 0487, "Concurrent modification and execution of instructions")
//! allows one core to replace a `B`, `BL`, `NOP`, `BRK`, `SVC`, `HVC`,
//! `SMC` (and `ISB`) with another instruction of that list while other
//! cores execute it: they then run either the old or the new instruction.
//! Any other instruction may run as an arbitrary mix. So hotcall only ever
//! rewrites `B`/`BL` words, with one aligned 32-bit store.

use crate::error::JitError;

/// `B imm26` with a zero offset.
pub const B: u32 = 0x1400_0000;
/// `BL imm26` with a zero offset.
pub const BL: u32 = 0x9400_0000;
const OPCODE_MASK: u32 = 0xfc00_0000;
const IMM26_MASK: u32 = 0x03ff_ffff;

/// The `B`/`BL` instruction (`opcode` is [`B`] or [`BL`]) at `insn` that
/// branches to `target`: ±128 MiB, word aligned, else an error.
pub fn branch(opcode: u32, insn: u64, target: u64) -> Result<u32, JitError> {
    let diff = (target as i64).wrapping_sub(insn as i64);
    let words = diff >> 2;
    if diff & 3 != 0 || !(-(1 << 25)..(1 << 25)).contains(&words) {
        return Err(JitError::OutOfRange {
            offset: 0,
            place: insn,
            target,
        });
    }
    Ok(opcode | (words as u32 & IMM26_MASK))
}

/// The opcode bits of a `B`/`BL` word, `None` for any other instruction.
pub fn branch_opcode(word: u32) -> Option<u32> {
    let op = word & OPCODE_MASK;
    (op == B || op == BL).then_some(op)
}

/// The target of the `B`/`BL` word `word` at `insn`.
pub fn branch_target(insn: u64, word: u32) -> u64 {
    // Sign-extend imm26, then scale by 4.
    let imm = ((word & IMM26_MASK) << 6) as i32 >> 6;
    insn.wrapping_add((imm as i64 * 4) as u64)
}

/// The static entry stub is a single `B` at the symbol (instructions are
/// always word aligned, so the store is aligned by construction).
pub const STUB_FIELD_OFFSET: u64 = 0;

/// Writes `words` as the bytes of the instruction stream.
pub const fn words_to_bytes<const N: usize, const B: usize>(words: [u32; N]) -> [u8; B] {
    let mut out = [0u8; B];
    let mut i = 0;
    while i < N {
        let w = words[i].to_le_bytes();
        out[4 * i] = w[0];
        out[4 * i + 1] = w[1];
        out[4 * i + 2] = w[2];
        out[4 * i + 3] = w[3];
        i += 1;
    }
    out
}

/// aarch64 has no retpoline in the architecture or in the compilers' stock
/// options (Arm's answer to branch target injection is hardware, `CSV2`,
/// and branch-predictor invalidation by the kernel and firmware). The
/// closest equivalent, proposed for LLVM by Google's SafeSide project
/// ("Retpolines on aarch64", LLVM Discourse, 2020), relies on the return
/// stack predictor as the x86 retpoline does: for `blr x16`,
///
/// ```text
///     mov  x17, x30        ; keep the caller's return address
///     bl   2f              ; push the capture loop on the return stack
/// 1:  dsb  sy              ; speculation of the `ret` lands here ...
///     isb
///     b    1b              ; ... and goes no further
/// 2:  mov  x30, x17        ; the target returns to our caller
///     ret  x16             ; architecturally: branch to x16
/// ```
///
/// `ret x16` is a branch to x16 that the core predicts from its return
/// stack, whose top is the capture loop. x16/x17 are the AAPCS64
/// intra-procedure-call scratch registers (IP0/IP1), free at any call.
/// Entered by `bl` it behaves as `blr x16`, by `b` as `br x16`.
pub const RETPOLINE_X16_WORDS: [u32; 7] = [
    0xaa1e_03f1, // mov x17, x30
    0x9400_0004, // bl 2f (+16)
    0xd503_3f9f, // 1: dsb sy
    0xd503_3fdf, // isb
    0x17ff_fffe, // b 1b (-8)
    0xaa11_03fe, // 2: mov x30, x17
    0xd65f_0200, // ret x16
];

/// [`RETPOLINE_X16_WORDS`] as bytes.
pub const RETPOLINE_X16: [u8; 28] = words_to_bytes(RETPOLINE_X16_WORDS);

/// The first instruction of hardened miss trampoline `k` (see
/// `crate::hardened`): load the target, passed as the integer argument
/// after `k` integer arguments, into x16 (`mov x16, xk` for k < 8, the
/// first stack argument for k = 8). The trampoline then `b`s to the
/// retpoline.
pub const MISS_TRAMPOLINE_LOADS: [u32; 9] = [
    0xaa00_03f0, // mov x16, x0
    0xaa01_03f0, // mov x16, x1
    0xaa02_03f0, // mov x16, x2
    0xaa03_03f0, // mov x16, x3
    0xaa04_03f0, // mov x16, x4
    0xaa05_03f0, // mov x16, x5
    0xaa06_03f0, // mov x16, x6
    0xaa07_03f0, // mov x16, x7
    0xf940_03f0, // ldr x16, [sp]
];

/// `stp x29, x30, [sp, #-16]!`
const STP_FP_LR_PRE: u32 = 0xa9bf_7bfd;
/// `ldp x29, x30, [sp], #16`
const LDP_FP_LR_POST: u32 = 0xa8c1_7bfd;
/// `ret`
pub const RET: u32 = 0xd65f_03c0;
/// `br x0` (the register in bits 5-9).
pub const BR: u32 = 0xd61f_0000;

/// Bytes of [`count_block`].
pub const COUNT_BLOCK_LEN: usize = 16;

/// A Patch thunk's counting entry, placed at `place` after the thunk's
/// code: `stp x29, x30, [sp, #-16]!; bl <entry_stub>; ldp x29, x30, [sp],
/// #16; b <body>` (the frame record is saved around the `bl`, which
/// overwrites the link register; the stub and the recording bridge
/// preserve everything else). Never patched.
pub fn count_block(place: u64, entry_stub: u64, body: u64) -> Result<Vec<u8>, JitError> {
    let words = [
        STP_FP_LR_PRE,
        branch(BL, place + 4, entry_stub)?,
        LDP_FP_LR_POST,
        branch(B, place + 12, body)?,
    ];
    Ok(words.iter().flat_map(|w| w.to_le_bytes()).collect())
}

/// The miss path reaches a Patch thunk's miss exit at the `B` itself, the
/// first word of its 8-byte aligned block.
pub const MISS_EXIT_JUMP_OFFSET: u64 = 0;

/// The instruction after the miss exit's `B`, which a `b +4` falls through
/// to: `br xN` for a tail-jumping miss, `ret` for a miss path that calls
/// the exit (`bl`).
pub fn miss_exit_fallback(tail_reg: Option<u8>) -> Vec<u8> {
    let word = match tail_reg {
        Some(r) => BR | u32::from(r) << 5,
        None => RET,
    };
    word.to_le_bytes().to_vec()
}
