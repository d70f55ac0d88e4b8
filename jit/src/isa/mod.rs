//! Everything that differs between instruction sets, behind one trait.
//!
//! Each ISA lives in its own folder with the same shape: `mod.rs` implements
//! [`IsaBackend`] (call reach, relocation patching, poison bytes, decoding of
//! calls for the tests) and `icache.rs` holds the host-only cache
//! maintenance (on aarch64 built from `maintenance.rs`, the same routine as
//! encoded words, compiled on every host for the emulated tests). The thunk IR in [`crate::thunk::ir`] is the same for both; only
//! these details change.

use std::fmt;
use std::str::FromStr;

use cranelift_codegen::binemit::Reloc;

use crate::error::JitError;
use crate::types::ValType;

pub mod aarch64;
pub mod x86_64;

/// An instruction set hotcall can generate code for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum Arch {
    #[cfg_attr(feature = "serde", serde(rename = "x86_64"))]
    X86_64,
    #[cfg_attr(feature = "serde", serde(rename = "aarch64"))]
    Aarch64,
}

impl Arch {
    /// Both supported ISAs, host first when the host is one of them.
    pub const ALL: [Arch; 2] = [Arch::X86_64, Arch::Aarch64];

    /// The ISA of the machine running this code, if hotcall supports it.
    pub fn host() -> Option<Arch> {
        if cfg!(target_arch = "x86_64") {
            Some(Arch::X86_64)
        } else if cfg!(target_arch = "aarch64") {
            Some(Arch::Aarch64)
        } else {
            None
        }
    }

    pub fn name(self) -> &'static str {
        self.backend().name()
    }

    /// The backend describing this ISA.
    pub fn backend(self) -> &'static dyn IsaBackend {
        match self {
            Arch::X86_64 => &x86_64::X86_64,
            Arch::Aarch64 => &aarch64::Aarch64,
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Arch {
    type Err = JitError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "x86_64" | "x86-64" | "x64" | "amd64" => Ok(Arch::X86_64),
            "aarch64" | "arm64" => Ok(Arch::Aarch64),
            other => Err(JitError::UnknownArch(other.to_string())),
        }
    }
}

/// What a decoded instruction does to control flow, as far as the tests care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Branch {
    /// A call with the target encoded in the instruction.
    DirectCall(u64),
    /// A call through a register or memory operand.
    IndirectCall,
    /// A jump through a register or memory operand.
    IndirectJump,
    /// A jump with the target encoded in the instruction.
    Jump { target: u64, conditional: bool },
    /// A return.
    Return,
    /// Anything else.
    Other,
}

/// A direct branch whose target hotcall rewrites in place (the Patch
/// strategy's slots, static entry stubs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BranchKind {
    /// `jmp rel32` / `B`: a tail jump (the target returns to our caller).
    Jump,
    /// `call rel32` / `BL`.
    Call,
}

/// The per-ISA facts the thunk compiler and code memory rely on.
pub trait IsaBackend: Send + Sync {
    /// Which ISA this is.
    fn arch(&self) -> Arch;

    /// Short name, as accepted by `--arch`.
    fn name(&self) -> &'static str;

    /// Target triple given to Cranelift's ISA lookup.
    fn triple(&self) -> &'static str;

    /// How far a direct call reaches from the call instruction, in bytes,
    /// in either direction (a target at exactly this distance is out).
    fn direct_call_reach(&self) -> u64;

    /// The relocation Cranelift emits for a colocated (direct) call.
    fn direct_call_reloc(&self) -> Reloc;

    /// A direct call's return address is its relocation offset plus this
    /// (the call sites Cranelift records are return addresses).
    fn direct_call_return_offset(&self) -> u32;

    /// Where the register-indirect call (`call *reg`, `blr xN`) that
    /// returns to offset `ret` in `code` starts, or `None` if the bytes
    /// before `ret` are not one that starts at or after `block` (the start
    /// of the basic block holding it). `ret` is a call site's return
    /// address as Cranelift records it, so this only needs the encoding's
    /// length.
    fn indirect_call_start(&self, code: &[u8], block: usize, ret: usize) -> Option<usize>;

    /// Writes the displacement of a direct call at `offset` in `code`, which
    /// will execute at address `place + offset`, so that it reaches `target`.
    fn link_direct_call(
        &self,
        code: &mut [u8],
        offset: u32,
        place: u64,
        target: u64,
        addend: i64,
    ) -> Result<(), JitError>;

    /// Whether a call with these parameters (the thunk's, with the target
    /// pointer first) passes everything in registers. Only then may a hit
    /// tail-jump to its target: with stack arguments, the thunk's incoming
    /// stack layout differs from the one the target expects.
    fn args_in_registers(&self, thunk_params: &[ValType]) -> bool {
        let (ints, floats) = count_classes(thunk_params);
        let (int_regs, float_regs) = self.arg_registers();
        ints <= int_regs && floats <= float_regs
    }

    /// Argument registers of the C ABI: `(integer, float)`.
    fn arg_registers(&self) -> (usize, usize);

    /// Rewrites a direct call followed by the frame epilogue and a return
    /// into the epilogue followed by a direct *jump*, in place and at the
    /// same length, so the target returns straight to the thunk's caller
    /// (one call/return pair less on every hit; see DESIGN.md). `offset` is
    /// the call's relocation offset. Returns the relocation offset of the
    /// jump, or `None` (code untouched) if the bytes are not exactly that
    /// pattern.
    fn rewrite_call_as_tail_jump(&self, code: &mut [u8], offset: u32) -> Option<u32>;

    /// The byte range `[start, end)` that [`Self::rewrite_call_as_tail_jump`]
    /// may change for the call relocated at `offset`.
    fn tail_jump_window(&self, offset: u32) -> (u32, u32);

    /// The instruction-sized pattern written over freed code: executing it
    /// traps (`int3`, `brk`), so a stale entry crashes instead of running
    /// whatever is allocated there next.
    fn poison_pattern(&self) -> &'static [u8];

    /// A site's counting-hook stub, to be placed at `place`. Thunks call it
    /// with `preserve_all` (nothing may change but the stack below it) and
    /// the target passed as the argument at `target`; it puts the site's
    /// `cookie` and the target on the stack and jumps to `bridge`, which
    /// records, restores, and returns to the thunk (see
    /// `hotcall_policy::counters::hook` for the bridge's side).
    ///
    /// * x86-64: `push imm32 cookie; push <target>; jmp bridge`. On entry to
    ///   the bridge `[rsp]` is the target, `[rsp+8]` the cookie, `[rsp+16]`
    ///   the return address.
    /// * aarch64: `stp x16, x17, [sp, #-16]!; movz/movk x16, cookie;
    ///   mov/ldr x17, <target>; stp x16, x17, [sp, #-16]!; b bridge`. On
    ///   entry to the bridge `[sp]` is the cookie, `[sp+8]` the target,
    ///   `[sp+16]` and `[sp+24]` the caller's x16 and x17.
    ///
    /// Beyond direct reach the jump goes through a literal address.
    ///
    /// With `sample = Some(offset)` (tail-jumping miss stubs, x86-64 only),
    /// the stub first decrements the calling thread's miss countdown at
    /// `offset` from the thread pointer, and unless it reached zero jumps
    /// straight on to the target in `target` (an [`ArgLoc::Hw`] register);
    /// only selected misses go to `bridge`. Other ISAs ignore `sample`.
    fn hook_stub(
        &self,
        cookie: u32,
        bridge: u64,
        place: u64,
        target: ArgLoc,
        sample: Option<i32>,
    ) -> Vec<u8>;

    /// Rewrites the miss path's `call *reg` followed by the frame epilogue
    /// and `ret`, which starts at `at` in `code`, into the epilogue followed
    /// by a jump to the target, in place (the tail is filled with traps):
    /// `jmp *reg` / `br xN`, or with `stub`, a direct jump to the site's
    /// miss stub for `reg` (whose relocation offset is returned). Returns
    /// the register, or `None` (code untouched) if the bytes are not exactly
    /// that pattern or, with `stub`, if the register has no stub.
    fn rewrite_miss_as_tail_jump(
        &self,
        code: &mut [u8],
        at: usize,
        stub: bool,
    ) -> Option<(u8, Option<u32>)>;

    /// The code a counting thunk starts with: a direct call to the site's
    /// entry stub that leaves every register and the stack as the caller
    /// left them (x86-64: `call rel32`; aarch64: the frame record is saved
    /// around `bl`, which overwrites the link register). Returns the bytes,
    /// the call's relocation offset and addend.
    fn entry_hook_prefix(&self) -> (Vec<u8>, u32, i64);

    /// The relocation addend of a direct jump written by
    /// [`Self::rewrite_miss_as_tail_jump`] (as Cranelift would emit it).
    fn jump_addend(&self) -> i64;

    /// Registers that have miss stubs: caller-saved registers a thunk may
    /// hold the target in at its miss call, which a stub may read before
    /// touching anything.
    fn miss_stub_registers(&self) -> &'static [u8];

    /// Classifies one instruction decoded by capstone.
    fn classify(&self, mnemonic: &str, op_str: &str) -> Branch;

    /// The aligned 32-bit word to store at `field` so that the direct
    /// branch of `kind` it belongs to reaches `target`: the rel32 field of
    /// `jmp`/`call` on x86-64 (the opcode byte before it never changes),
    /// the whole `B`/`BL` instruction on aarch64. Out of reach (or, on
    /// aarch64, a misaligned target) is an error, never a truncation.
    fn encode_branch(&self, kind: BranchKind, field: u64, target: u64) -> Result<u32, JitError>;

    /// The target of the branch whose word at `field` is `word` (the
    /// inverse of [`Self::encode_branch`]).
    fn decode_branch(&self, field: u64, word: u32) -> u64;
}

/// Most bytes [`IsaBackend::hook_stub`] produces on any ISA.
pub const HOOK_STUB_MAX: usize = 48;

/// Where a hook stub finds the target address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgLoc {
    /// The `n`-th integer argument register (x86-64: rdi, rsi, rdx, rcx,
    /// r8, r9; aarch64: x0-x7).
    Reg(usize),
    /// The `n`-th 8-byte stack argument slot.
    Stack(usize),
    /// The general-purpose register with this hardware number (x86-64: 0 is
    /// rax, ..., 15 is r15; aarch64: xN).
    Hw(u8),
}

/// Most general-purpose registers of either ISA: the size of a miss stub
/// table indexed by hardware register number.
pub const GPRS: usize = 32;

/// How a thunk's miss path reaches the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum MissForm {
    /// Cranelift's shape: an indirect call, and the target returns into the
    /// thunk.
    Call,
    /// The frame is torn down and the thunk jumps to the target through the
    /// register holding it: the target returns straight to the caller.
    TailJump,
    /// As `TailJump`, but through the site's miss stub for that register,
    /// which counts the miss on the way (lean counting thunks).
    CountingTailJump,
}

/// Where a thunk's miss hook finds the target: the hook takes the target's
/// own arguments (where the miss path's indirect call wants them) followed
/// by the target address, an integer argument after all the others.
pub fn miss_hook_target(backend: &dyn IsaBackend, sig: &crate::types::ThunkSig) -> ArgLoc {
    let (ints, floats) = count_classes(sig.params());
    let (int_regs, float_regs) = backend.arg_registers();
    if ints < int_regs {
        ArgLoc::Reg(ints)
    } else {
        ArgLoc::Stack((ints - int_regs) + floats.saturating_sub(float_regs))
    }
}

/// Counts integer-class and float-class parameters.
pub(crate) fn count_classes(params: &[ValType]) -> (usize, usize) {
    let floats = params.iter().filter(|t| t.is_float()).count();
    (params.len() - floats, floats)
}

/// Parses capstone's rendering of an immediate address (`0x1234`, `#0x1234`).
pub(crate) fn parse_imm_addr(op: &str) -> Option<u64> {
    let op = op.trim().trim_start_matches('#');
    match op.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        // capstone prints targets below 10 in decimal (a call decoded at
        // base 0 to the next instructions).
        None => op.parse().ok(),
    }
}
