//! `hotcall-jit`: the code-generation half of hotcall.
//!
//! * [`types`]: value types and site signatures;
//! * [`thunk`]: the JIT strategy's thunk (IR, compiler, templates);
//! * `pipeline`: the one Cranelift compile both kinds of thunk go through;
//! * [`isa`]: one folder per ISA behind [`isa::IsaBackend`];
//! * [`code_memory`]: executable memory near the host text, W^X, poisoned
//!   on release;
//! * [`coherence`]: instruction-cache maintenance and core serialization;
//! * `disasm` (feature `disasm`): capstone decoding for the CLI and the
//!   tests;
//! * [`patch`]: the Patch strategy's thunk, compiled once and retargeted
//!   in place;
//! * [`text_poke`]: rewriting branch words in the host binary's own text
//!   (static entry stubs);
//! * [`hardened`]: hardened mode's retpolined miss path (the retpolines
//!   themselves are in each ISA's `retpoline.rs`).

pub mod code_memory;
pub mod coherence;
#[cfg(feature = "disasm")]
pub mod disasm;
pub mod error;
pub mod hardened;
pub mod isa;
pub mod patch;
mod pipeline;
pub mod text_poke;
pub mod thunk;
pub mod types;

pub use code_memory::{
    CodeMemory, CodeMemoryOptions, CodeMemoryStats, ExecutableCode, WritableCode,
};
pub use error::JitError;
pub use isa::{
    Arch, ArgLoc, Branch, BranchKind, GPRS, HOOK_STUB_MAX, IsaBackend, MissForm, miss_hook_target,
};
pub use thunk::code::{CallReloc, CompiledThunk, Placement, RelocTo};
pub use thunk::compiler::{CompilerOptions, MAX_SLOTS, ThunkCompiler};
pub use thunk::ir::{CallForm, HookKind, Hooks, SlotPlan};
pub use types::{MAX_PARAMS, ThunkSig, ValType};
