//! The Patch strategy's thunk: compiled once per (signature, slot count),
//! installed once per site, retargeted in place for the site's whole life.
//!
//! ```text
//! thunk(target, a0..an):
//!     if target != table[0] goto check1   ; a data load, not an immediate
//!     tail-jump J0                        ; jmp rel32 / b: the patched word
//! check1:
//!     if target != table[1] goto miss
//!     tail-jump J1
//! miss:
//!     return target(a0..an)               ; or the retpoline (hardened)
//! ...
//! table:  (own cache line(s), after the code)
//!     T0, T1, ...                         ; aligned 8-byte words
//! ```
//!
//! The compare values live in a table of aligned 64-bit *data* words right
//! after the code, loaded PC-relatively (`lea`+`cmp [reg]` on x86-64,
//! `adrp`+`add`+`ldr` on aarch64). Changing one is an atomic data store;
//! an immediate would be an instruction, and aarch64 materializes 64-bit
//! constants with `movz`/`movk` sequences that the Arm ARM forbids changing
//! while another core may execute them. The only instruction that ever
//! changes is each slot's direct branch, a single aligned 32-bit word
//! (`IsaBackend::encode_branch`). A slot is *disabled* when its table word
//! is [`DISABLED`], a value no function can have, so a disabled slot sends
//! every call to the next compare and finally to the miss path, which is
//! always correct.
//!
//! Counting, for sites that learn, changes nothing on the hit paths: the
//! copy has two more pieces after its code (see [`PatchLayout`]):
//!
//! ```text
//! count:  call <site's entry stub>        ; the counting entry: counts the
//!         jmp thunk                       ; call, then runs the thunk
//! exit:   jmp <miss stub> | +0            ; the miss exit: the only word
//!         jmp *reg  (or ret)              ; rewritten while threads run it
//! ```
//!
//! * Counting every call is a second *entry*: callers are sent to the
//!   counting entry instead of the thunk (one atomic store of the site's
//!   entry word or its static stub's branch); the thunk's own code is the
//!   same either way, so the thunk's hits pay nothing when it does not
//!   count (not even a jump over a disabled prefix).
//! * Counting misses goes through the *miss exit* ([`MissExit`]): the miss
//!   path always leaves through it, and its branch word goes either to the
//!   site's miss stub (count, then go on to the target) or to the
//!   instruction right after it (go on to the target). Only misses pay the
//!   one extra direct jump. Both destinations are complete, correct code
//!   for the rest of the miss, so the word is retargeted with one aligned
//!   store while threads run it, as a static entry stub is.
//!
//! This crate provides the pieces (compile, install, and the individual
//! stores); the protocol that orders them against running callers (disable,
//! grace period, patch, serialize cores, enable) needs epochs and lives in
//! the `hotcall` crate (`docs/patching.md`).

mod compiler;
mod ir;
mod template;
mod thunk;

pub use compiler::{PatchCompiler, PatchOptions};
pub use template::{PatchLayout, PatchTemplate, SlotBranch};

/// How a Patch thunk's miss path goes through its miss exit (see the
/// module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MissExit {
    /// The miss path tears down the frame and jumps to the exit, with the
    /// target in hardware register `reg`. The exit goes on to the site's
    /// miss stub for `reg` (which counts and jumps to the target) or falls
    /// through to `jmp *reg` / `br xN`. Every argument in registers,
    /// unhardened, and `reg` one of `IsaBackend::miss_stub_registers`.
    Tail { reg: u8 },
    /// The miss path calls the exit (`preserve_all`, the target's
    /// arguments then the target) before its own indirect or retpolined
    /// call. The exit goes on to the site's miss hook stub (which counts
    /// and returns) or falls through to `ret`. Stack arguments or hardened
    /// mode, as for the JIT thunk's miss hook.
    Call,
}
pub use thunk::PatchThunk;

/// The table word of a disabled slot: no function lives at the top of the
/// address space (it is kernel space on both ISAs), so no call matches it,
/// and a null target (a C host's bug) still misses and faults as it would
/// without hotcall.
pub const DISABLED: u64 = u64::MAX;

/// Bytes of trap instructions between the code and the table. A disabled
/// slot's branch points here, so a slot that ran while disabled would trap
/// instead of calling anything.
pub const TRAP_GAP: usize = 16;

/// The table's alignment: its own cache line, so a table store never
/// invalidates a line the cores are executing (on x86-64 a store to a line
/// in the instruction pipeline clears the pipeline of every core).
pub const TABLE_ALIGN: usize = 64;
