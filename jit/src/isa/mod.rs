//! Everything that differs between instruction sets, behind one trait.
//!
//! Each ISA lives in its own folder with the same shape: `mod.rs` implements
//! [`IsaBackend`] (call reach, relocation patching, poison bytes, decoding of
//! calls for the tests) and `icache.rs` holds the host-only cache
//! maintenance. The thunk IR in [`crate::ir`] is the same for both; only
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
pub enum Arch {
    X86_64,
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

    /// Writes the displacement of a direct call at `offset` in `code`, which
    /// will execute at address `place + offset`, so that it reaches `target`.
    fn patch_direct_call(
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
    fn args_in_registers(&self, thunk_params: &[ValType]) -> bool;

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

/// Counts integer-class and float-class parameters.
pub(crate) fn count_classes(params: &[ValType]) -> (usize, usize) {
    let floats = params.iter().filter(|t| t.is_float()).count();
    (params.len() - floats, floats)
}

/// Parses capstone's rendering of an immediate address (`0x1234`, `#0x1234`).
pub(crate) fn parse_imm_addr(op: &str) -> Option<u64> {
    let op = op.trim().trim_start_matches('#');
    let hex = op.strip_prefix("0x")?;
    u64::from_str_radix(hex, 16).ok()
}
