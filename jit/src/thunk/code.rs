//! A compiled thunk before placement, and linking it where it is placed.

use std::time::Duration;

use crate::error::JitError;
use crate::isa::{Arch, MissForm};
use crate::thunk::ir::{HookKind, Hooks, SlotPlan};
use crate::types::ThunkSig;

/// The address range the code will be placed in. Call forms are chosen so
/// that a direct call reaches its target from *anywhere* in the range, so
/// the compiled code may be placed at any address inside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    pub lo: u64,
    pub hi: u64,
}

impl Placement {
    /// Whether a direct call from anywhere in the range reaches `target`.
    pub fn reaches(&self, target: u64, reach: u64) -> bool {
        let reach = i128::from(reach);
        let d_lo = i128::from(target) - i128::from(self.lo);
        let d_hi = i128::from(target) - i128::from(self.hi);
        d_lo.abs() < reach && d_hi.abs() < reach
    }
}

/// What a direct call goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelocTo {
    /// The target of this promoted slot.
    Slot(usize),
    /// A counting hook.
    Hook(HookKind),
    /// The miss stub for this register (a counting tail-jumping miss).
    MissStub(u8),
    /// The miss trampoline of a hardened thunk (see [`crate::hardened`]).
    Retpoline,
}

/// A direct-call relocation left for [`CompiledThunk::link`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallReloc {
    pub offset: u32,
    pub to: RelocTo,
    pub addend: i64,
}

/// A compiled, not yet placed thunk.
#[derive(Clone, Debug)]
pub struct CompiledThunk {
    pub(super) arch: Arch,
    pub(super) sig: ThunkSig,
    pub(super) code: Vec<u8>,
    pub(super) relocs: Vec<CallReloc>,
    pub(super) slots: Vec<SlotPlan>,
    pub(super) hooks: Hooks,
    pub(super) miss: MissForm,
    /// The miss trampoline the miss path calls (hardened mode).
    pub(super) retpoline: Option<u64>,
    pub(super) compile_time: Duration,
}

impl CompiledThunk {
    pub fn arch(&self) -> Arch {
        self.arch
    }

    pub fn sig(&self) -> &ThunkSig {
        &self.sig
    }

    /// Code bytes, with direct-call displacements still zero.
    pub fn unlinked_code(&self) -> &[u8] {
        &self.code
    }

    pub fn len(&self) -> usize {
        self.code.len()
    }

    pub fn is_empty(&self) -> bool {
        self.code.is_empty()
    }

    pub fn relocs(&self) -> &[CallReloc] {
        &self.relocs
    }

    /// The promoted slots in order, with the call form each got.
    pub fn slots(&self) -> &[SlotPlan] {
        &self.slots
    }

    /// The counting hooks this thunk calls.
    pub fn hooks(&self) -> &Hooks {
        &self.hooks
    }

    /// How the miss path reaches the target.
    pub fn miss_form(&self) -> MissForm {
        self.miss
    }

    /// Time spent producing the code: Cranelift's IR construction and code
    /// generation, or copying and patching a template.
    pub fn compile_time(&self) -> Duration {
        self.compile_time
    }

    /// The same thunk with other code bytes, slots and hooks (a template
    /// copy).
    pub(crate) fn with_code_and_slots(
        &self,
        code: Vec<u8>,
        slots: Vec<SlotPlan>,
        hooks: Hooks,
    ) -> Self {
        // The template's shape decides whether the miss path uses stubs.
        let hooks = Hooks {
            miss_tail: self.hooks.miss_tail.and(hooks.miss_tail),
            ..hooks
        };
        CompiledThunk {
            code,
            slots,
            hooks,
            ..self.clone()
        }
    }

    /// The code as it must be written to execute at address `place`.
    pub fn link(&self, place: u64) -> Result<Vec<u8>, JitError> {
        let backend = self.arch.backend();
        let mut code = self.code.clone();
        for r in &self.relocs {
            let target = match r.to {
                RelocTo::Slot(k) => self.slots[k].target,
                RelocTo::Hook(kind) => self
                    .hooks
                    .get(kind)
                    .ok_or_else(|| JitError::UnexpectedReloc(format!("no {kind:?} hook")))?,
                RelocTo::MissStub(reg) => self
                    .hooks
                    .miss_tail
                    .map(|t| t[usize::from(reg)])
                    .filter(|&a| a != 0)
                    .ok_or_else(|| JitError::UnexpectedReloc(format!("no miss stub for r{reg}")))?,
                RelocTo::Retpoline => self.retpoline.ok_or_else(|| {
                    JitError::UnexpectedReloc("a retpoline call in an unhardened thunk".into())
                })?,
            };
            backend.link_direct_call(&mut code, r.offset, place, target, r.addend)?;
        }
        Ok(code)
    }
}
