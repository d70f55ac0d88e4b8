//! The x86-64 words hotcall rewrites while code may run, and the stub and
//! retpoline sequences it emits.
//!
//! Every patchable direct branch is `call rel32` (`e8`) or `jmp rel32`
//! (`e9`): only the 4-byte displacement changes, never the opcode. The
//! displacement counts from the end of the instruction, which is the end of
//! the field itself: `rel32 = target - (field + 4)`.

use crate::error::JitError;

/// `call rel32` opcode.
pub const CALL_REL32: u8 = 0xe8;
/// `jmp rel32` opcode.
pub const JMP_REL32: u8 = 0xe9;

/// The displacement that makes the branch whose rel32 field is at `field`
/// reach `target`, or `OutOfRange` (never a truncation).
pub fn rel32(field: u64, target: u64) -> Result<u32, JitError> {
    let next = field.wrapping_add(4);
    let disp = (target as i64).wrapping_sub(next as i64);
    i32::try_from(disp)
        .map(|d| d as u32)
        .map_err(|_| JitError::OutOfRange {
            offset: 0,
            place: field,
            target,
        })
}

/// The target of a rel32 branch whose field at `field` holds `word`.
pub fn rel32_target(field: u64, word: u32) -> u64 {
    field
        .wrapping_add(4)
        .wrapping_add(word as i32 as i64 as u64)
}

/// The static entry stub, as `static_site!` lays it out: an 8-byte
/// aligned block `0f 1f 00` (a 3-byte `nop`) + `e9 rel32`, so the rel32
/// field is 4-byte aligned (one aligned store rewrites it) and the whole
/// `jmp` lies inside one 8-byte block (it never straddles a cache line).
/// The symbol itself may start up to 4 bytes earlier, with a 4-byte `nop`
/// the assembler inserts to reach the alignment.
pub const STUB_PREFIX: [u8; 4] = [0x0f, 0x1f, 0x00, JMP_REL32];

/// Offset of the rel32 field from the 8-byte aligned block.
pub const STUB_FIELD_OFFSET: u64 = 4;

/// The retpoline for `jmp *%r11` / `call *%r11` (Intel's "Retpoline: A
/// Branch Target Injection Mitigation", the construction GCC's
/// `-mindirect-branch=thunk` emits as `__x86_indirect_thunk_r11`):
///
/// ```text
///     call 2f              ; pushes the address of the capture loop
/// 1:  pause                ; speculation of the `ret` lands here ...
///     lfence
///     jmp 1b               ; ... and spins harmlessly
/// 2:  mov %r11, (%rsp)     ; architecturally: replace the return address
///     ret                  ; with the target and "return" to it
/// ```
///
/// `call`ing it behaves as `call *%r11`, `jmp`ing to it as `jmp *%r11`, but
/// the only prediction the `ret` can use is the return stack buffer, which
/// the `call 2f` filled with the capture loop: an attacker-trained branch
/// target buffer is never consulted.
pub const RETPOLINE_R11: [u8; 17] = [
    0xe8, 0x07, 0x00, 0x00, 0x00, // call 2f
    0xf3, 0x90, // 1: pause
    0x0f, 0xae, 0xe8, // lfence
    0xeb, 0xf9, // jmp 1b
    0x4c, 0x89, 0x1c, 0x24, // 2: mov %r11, (%rsp)
    0xc3, // ret
];

/// The first instruction of hardened miss trampoline `k` (see
/// `crate::hardened`): load the target, passed as the integer argument
/// after `k` integer arguments, into r11. The trampoline then `jmp`s to
/// the retpoline. Arguments 0-5 are rdi, rsi, rdx, rcx, r8, r9; later ones
/// are on the stack above the return address.
pub const MISS_TRAMPOLINE_LOADS: [&[u8]; 9] = [
    &[0x49, 0x89, 0xfb],             // mov %rdi, %r11
    &[0x49, 0x89, 0xf3],             // mov %rsi, %r11
    &[0x49, 0x89, 0xd3],             // mov %rdx, %r11
    &[0x49, 0x89, 0xcb],             // mov %rcx, %r11
    &[0x4d, 0x89, 0xc3],             // mov %r8, %r11
    &[0x4d, 0x89, 0xcb],             // mov %r9, %r11
    &[0x4c, 0x8b, 0x5c, 0x24, 0x08], // mov 0x8(%rsp), %r11
    &[0x4c, 0x8b, 0x5c, 0x24, 0x10], // mov 0x10(%rsp), %r11
    &[0x4c, 0x8b, 0x5c, 0x24, 0x18], // mov 0x18(%rsp), %r11
];

/// Bytes of [`count_block`].
pub const COUNT_BLOCK_LEN: usize = 10;

/// A Patch thunk's counting entry, placed at `place` after the thunk's
/// code: `call rel32 <entry_stub>; jmp rel32 <body>`. The call leaves every
/// register and the stack as the caller left them (the stub and the
/// recording bridge preserve everything), then the jump runs the thunk
/// itself. Never patched: calls reach it only while the site counts every
/// call (see `crate::patch`).
pub fn count_block(place: u64, entry_stub: u64, body: u64) -> Result<Vec<u8>, JitError> {
    let mut code = vec![CALL_REL32];
    code.extend_from_slice(&rel32(place + 1, entry_stub)?.to_le_bytes());
    code.push(JMP_REL32);
    code.extend_from_slice(&rel32(place + 6, body)?.to_le_bytes());
    Ok(code)
}

/// A Patch thunk's miss exit has the static stub's layout ([`STUB_PREFIX`]
/// at an 8-byte aligned block, the rel32 field 4-byte aligned at
/// [`STUB_FIELD_OFFSET`]), so that one aligned store retargets it while
/// threads run it. The miss path jumps (or calls) straight to the `jmp`,
/// past the `nop`: this is its offset in the block.
pub const MISS_EXIT_JUMP_OFFSET: u64 = 3;

/// The instruction after the miss exit's `jmp`, which a zero displacement
/// falls through to: `jmp *reg` for a tail-jumping miss (hardware register
/// number `reg`, not rsp or rbp), `ret` for a miss path that calls the
/// exit.
pub fn miss_exit_fallback(tail_reg: Option<u8>) -> Vec<u8> {
    match tail_reg {
        Some(r) if r >= 8 => vec![0x41, 0xff, 0xe0 | (r & 7)],
        Some(r) => vec![0xff, 0xe0 | r],
        None => vec![0xc3],
    }
}
