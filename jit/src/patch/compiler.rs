//! Compiling Patch templates: once per (signature, slot count).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::MissExit;
use super::ir::{MISS_EXIT_NAMESPACE, SLOT_NAMESPACE, TABLE_NAMESPACE, build_patch_thunk};
use super::template::{PatchReloc, PatchTemplate, RelocTarget, SlotBranch};
use crate::error::JitError;
use crate::hardened::{MissTrampolines, RETPOLINE_NAMESPACE};
use crate::isa::{Arch, BranchKind, IsaBackend};
use crate::pipeline::{Pipeline, may_jump};
use crate::thunk::compiler::MAX_SLOTS;
use crate::types::ThunkSig;

/// Settings of a [`PatchCompiler`].
#[derive(Clone, Debug)]
pub struct PatchOptions {
    /// Run Cranelift's verifier (default: in debug builds).
    pub verify: bool,
    /// Hardened mode: the miss trampolines through which the miss path
    /// calls its target (see [`crate::hardened`]); `None` for a plain
    /// indirect call.
    pub hardened: Option<MissTrampolines>,
}

impl Default for PatchOptions {
    fn default() -> Self {
        PatchOptions {
            verify: cfg!(debug_assertions),
            hardened: None,
        }
    }
}

/// Compiles Patch thunk templates for one ISA and keeps one per shape.
pub struct PatchCompiler {
    backend: &'static dyn IsaBackend,
    pipeline: Pipeline,
    options: PatchOptions,
    templates: HashMap<(ThunkSig, usize), Arc<PatchTemplate>>,
}

impl PatchCompiler {
    /// A compiler for `arch` (any supported ISA, whatever the host is).
    pub fn new(arch: Arch, options: PatchOptions) -> Result<Self, JitError> {
        Ok(PatchCompiler {
            backend: arch.backend(),
            pipeline: Pipeline::new(arch, options.verify)?,
            options,
            templates: HashMap::new(),
        })
    }

    pub fn arch(&self) -> Arch {
        self.backend.arch()
    }

    /// Templates compiled so far (one per shape).
    pub fn template_count(&self) -> usize {
        self.templates.len()
    }

    /// The template for `sig` with `slots` slots (1 to [`MAX_SLOTS`]),
    /// compiled on first use. Cranelift panics are caught and returned as
    /// [`JitError::Compile`].
    pub fn template(
        &mut self,
        sig: &ThunkSig,
        slots: usize,
    ) -> Result<Arc<PatchTemplate>, JitError> {
        if slots == 0 || slots > MAX_SLOTS {
            return Err(JitError::TooManySlots {
                requested: slots,
                max: MAX_SLOTS,
            });
        }
        let key = (sig.clone(), slots);
        if let Some(t) = self.templates.get(&key) {
            return Ok(Arc::clone(t));
        }
        let start = Instant::now();
        let mut template = self.compile(sig, slots)?;
        template.compile_time = start.elapsed();
        let template = Arc::new(template);
        self.templates.insert(key, Arc::clone(&template));
        Ok(template)
    }

    /// Compiles the thunk whose miss path tail-jumps through the miss exit
    /// where it can ([`MissExit::Tail`]: unhardened, every argument in
    /// registers, the target in a register that has a miss stub), else the
    /// one whose miss path calls the exit ([`MissExit::Call`]).
    fn compile(&mut self, sig: &ThunkSig, slots: usize) -> Result<PatchTemplate, JitError> {
        if self.options.hardened.is_none()
            && let Some(t) = self.compile_once(sig, slots, false)?
        {
            return Ok(t);
        }
        Ok(self
            .compile_once(sig, slots, true)?
            .expect("a thunk whose miss calls the exit needs no rewrite"))
    }

    /// One Cranelift compile. Without `miss_exit_call`, returns `None` if
    /// the miss path cannot be rewritten into a tail jump to the exit.
    fn compile_once(
        &mut self,
        sig: &ThunkSig,
        slots: usize,
        miss_exit_call: bool,
    ) -> Result<Option<PatchTemplate>, JitError> {
        let hardened = self.options.hardened.is_some();
        let mut out = self.pipeline.compile(
            |func, fctx, frontend| {
                build_patch_thunk(func, fctx, sig, frontend, slots, hardened, miss_exit_call);
            },
            |_, name| match name? {
                (SLOT_NAMESPACE, index) if (index as usize) < slots => {
                    Some(RelocTarget::Slot(index as usize))
                }
                (TABLE_NAMESPACE, _) => Some(RelocTarget::Table),
                (MISS_EXIT_NAMESPACE, _) if miss_exit_call => Some(RelocTarget::MissExit),
                (RETPOLINE_NAMESPACE, _) if hardened => Some(RelocTarget::Retpoline),
                _ => None,
            },
        )?;

        // Each slot has exactly one direct call; where sound, it becomes a
        // tail jump exactly as in the JIT thunk (same backend rewrite).
        let may_jump = may_jump(self.backend, sig);
        let direct = self.backend.direct_call_reloc();
        let mut branches = Vec::with_capacity(slots);
        for k in 0..slots {
            let mut calls = (0..out.relocs.len()).filter(|&i| {
                out.relocs[i].to == RelocTarget::Slot(k) && out.relocs[i].kind == direct
            });
            let (Some(i), None) = (calls.next(), calls.next()) else {
                return Err(JitError::UnexpectedReloc(format!(
                    "slot {k} has no single direct call"
                )));
            };
            let mut kind = BranchKind::Call;
            if may_jump && let Some(new) = out.rewrite_tail_jump(out.relocs[i].offset) {
                out.relocs[i].offset = new;
                kind = BranchKind::Jump;
            }
            branches.push(SlotBranch {
                offset: out.relocs[i].offset,
                kind,
            });
        }
        let miss = if miss_exit_call {
            let exits = out
                .relocs
                .iter()
                .filter(|r| r.to == RelocTarget::MissExit)
                .count();
            if exits != 1 {
                return Err(JitError::UnexpectedReloc(format!(
                    "{exits} calls of the miss exit"
                )));
            }
            MissExit::Call
        } else {
            // The miss path's `call *reg; epilogue; ret` becomes `epilogue;
            // jmp <exit>`: the JIT thunk's counting miss, aimed at the exit
            // instead of a stub.
            if !may_jump {
                return Ok(None);
            }
            let Some((reg, Some(offset))) = out.rewrite_miss(true) else {
                return Ok(None);
            };
            out.relocs.push(PatchReloc {
                offset,
                kind: direct,
                addend: self.backend.jump_addend(),
                to: RelocTarget::MissExit,
            });
            MissExit::Tail { reg }
        };
        Ok(Some(PatchTemplate {
            arch: self.backend.arch(),
            sig: sig.clone(),
            code: out.code,
            relocs: out.relocs,
            branches,
            miss,
            retpoline: self.options.hardened.map(|t| t.for_sig(sig)),
            compile_time: Default::default(),
        }))
    }
}
