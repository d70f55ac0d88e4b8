//! `hotcall-jit`: the code-generation half of hotcall.
//!
//! * [`types`]: value types and site signatures;
//! * [`ir`]: the thunk as Cranelift IR (the same for every ISA);
//! * [`compiler`]: IR to relocatable code, for the host or the other ISA;
//! * [`isa`]: one folder per ISA behind [`isa::IsaBackend`];
//! * [`code_memory`]: executable memory near the host text, W^X, poisoned
//!   on release;
//! * [`coherence`]: instruction-cache maintenance and core serialization;
//! * [`disasm`]: capstone decoding for the CLI and the tests;
//! * [`patch`]: the Patch strategy's thunk, compiled once and retargeted
//!   in place;
//! * [`text_patch`]: rewriting branches in the host binary's own text
//!   (static entry stubs);
//! * [`hardened`], [`retpoline`]: hardened mode's retpolined miss path;
//! * `template`: one compiled template per thunk shape, patched per use.

pub mod code_memory;
pub mod coherence;
pub mod compiler;
#[cfg(feature = "disasm")]
pub mod disasm;
pub mod error;
pub mod hardened;
pub mod ir;
pub mod isa;
pub mod patch;
mod pipeline;
pub mod retpoline;
mod template;
pub mod text_patch;
pub mod types;

pub use code_memory::{
    CodeMemory, CodeMemoryOptions, CodeMemoryStats, ExecutableCode, WritableCode,
};
pub use compiler::{
    CallReloc, CompiledThunk, CompilerOptions, MAX_SLOTS, Placement, RelocTo, ThunkCompiler,
};
pub use error::JitError;
pub use ir::{CallForm, HookKind, Hooks, SlotPlan};
pub use isa::{
    Arch, ArgLoc, Branch, BranchKind, GPRS, HOOK_STUB_MAX, IsaBackend, MissForm, miss_hook_target,
};
pub use types::{MAX_PARAMS, ThunkSig, ValType};
