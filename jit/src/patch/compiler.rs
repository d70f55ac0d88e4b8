//! Compiling Patch templates: once per (signature, slot count).

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Instant;

use cranelift_codegen::control::ControlPlane;
use cranelift_codegen::ir::{ExternalName, UserExternalName};
use cranelift_codegen::isa::OwnedTargetIsa;
use cranelift_codegen::{Context, FinalizedRelocTarget};
use cranelift_frontend::FunctionBuilderContext;

use super::MissExit;
use super::ir::{MISS_EXIT_NAMESPACE, SLOT_NAMESPACE, TABLE_NAMESPACE, build_patch_thunk};
use super::template::{PatchReloc, PatchTemplate, RelocTarget, SlotBranch};
use crate::compiler::{CompilerOptions, MAX_SLOTS, build_isa};
use crate::error::JitError;
use crate::hardened::{MissTrampolines, RETPOLINE_NAMESPACE};
use crate::isa::{Arch, Branch, BranchKind, IsaBackend};
use crate::types::{ThunkSig, ValType};

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
    isa: OwnedTargetIsa,
    ctx: Context,
    fctx: FunctionBuilderContext,
    options: PatchOptions,
    templates: HashMap<(ThunkSig, usize), Arc<PatchTemplate>>,
}

impl PatchCompiler {
    /// A compiler for `arch` (any supported ISA, whatever the host is).
    pub fn new(arch: Arch, options: PatchOptions) -> Result<Self, JitError> {
        let isa = build_isa(
            arch,
            &CompilerOptions {
                verify: options.verify,
                ..CompilerOptions::default()
            },
        )?;
        Ok(PatchCompiler {
            backend: arch.backend(),
            isa,
            ctx: Context::new(),
            fctx: FunctionBuilderContext::new(),
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
        let result = catch_unwind(AssertUnwindSafe(|| self.compile(sig, slots)));
        let mut template = match result {
            Ok(t) => t?,
            Err(panic) => {
                self.ctx = Context::new();
                self.fctx = FunctionBuilderContext::new();
                let msg = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                return Err(JitError::Compile(format!("panicked: {msg}")));
            }
        };
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
        self.ctx.clear();
        let hardened = self.options.hardened.is_some();
        build_patch_thunk(
            &mut self.ctx.func,
            &mut self.fctx,
            sig,
            self.isa.frontend_config(),
            slots,
            hardened,
            miss_exit_call,
        );
        let names = self.ctx.func.params.user_named_funcs().clone();
        let compiled = self
            .ctx
            .compile(&*self.isa, &mut ControlPlane::default())
            .map_err(|e| JitError::Compile(format!("{:?}", e.inner)))?;
        let mut code = compiled.code_buffer().to_vec();
        let bb_starts = compiled.bb_starts.clone();
        let mut relocs = Vec::new();
        for r in compiled.buffer.relocs() {
            let target = match &r.target {
                FinalizedRelocTarget::ExternalName(ExternalName::User(name)) => {
                    let UserExternalName { namespace, index } = names[*name].clone();
                    match namespace {
                        SLOT_NAMESPACE if (index as usize) < slots => {
                            Some(RelocTarget::Slot(index as usize))
                        }
                        TABLE_NAMESPACE => Some(RelocTarget::Table),
                        MISS_EXIT_NAMESPACE if miss_exit_call => Some(RelocTarget::MissExit),
                        RETPOLINE_NAMESPACE if hardened => Some(RelocTarget::Retpoline),
                        _ => None,
                    }
                }
                _ => None,
            };
            let Some(target) = target else {
                return Err(JitError::UnexpectedReloc(format!(
                    "{} at {} to {:?}",
                    r.kind, r.offset, r.target
                )));
            };
            relocs.push(PatchReloc {
                offset: r.offset,
                kind: r.kind,
                addend: r.addend,
                target,
            });
        }

        // Each slot has exactly one direct call; where sound, it becomes a
        // tail jump exactly as in the JIT thunk (same backend rewrite).
        let mut thunk_params = vec![ValType::Ptr];
        thunk_params.extend_from_slice(sig.params());
        let may_jump = self.backend.args_in_registers(&thunk_params);
        let mut branches = Vec::with_capacity(slots);
        for k in 0..slots {
            let mut calls = relocs.iter_mut().filter(|r| {
                r.target == RelocTarget::Slot(k) && r.kind == self.backend.direct_call_reloc()
            });
            let (Some(r), None) = (calls.next(), calls.next()) else {
                return Err(JitError::UnexpectedReloc(format!(
                    "slot {k} has no single direct call"
                )));
            };
            let mut kind = BranchKind::Call;
            if may_jump {
                let (lo, hi) = self.backend.tail_jump_window(r.offset);
                let clear = !bb_starts.iter().any(|&b| b > lo && b < hi);
                if clear
                    && let Some(new) = self.backend.rewrite_call_as_tail_jump(&mut code, r.offset)
                {
                    r.offset = new;
                    kind = BranchKind::Jump;
                }
            }
            branches.push(SlotBranch {
                offset: r.offset,
                kind,
            });
        }
        let miss = if miss_exit_call {
            let exits = relocs
                .iter()
                .filter(|r| r.target == RelocTarget::MissExit)
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
            let Some(at) = miss_call_offset(self.backend, &code, &bb_starts) else {
                return Ok(None);
            };
            let Some((reg, Some(offset))) = may_jump
                .then(|| self.backend.rewrite_miss_as_tail_jump(&mut code, at, true))
                .flatten()
            else {
                return Ok(None);
            };
            relocs.push(PatchReloc {
                offset,
                kind: self.backend.direct_call_reloc(),
                addend: self.backend.jump_addend(),
                target: RelocTarget::MissExit,
            });
            MissExit::Tail { reg }
        };
        Ok(Some(PatchTemplate {
            arch: self.backend.arch(),
            sig: sig.clone(),
            code,
            relocs,
            branches,
            miss,
            retpoline: self.options.hardened.map(|t| t.for_sig(sig)),
            compile_time: Default::default(),
        }))
    }
}

/// The offset of the miss path's indirect call: the first indirect call of
/// the last basic block (the miss block is laid out last), as in the JIT
/// compiler.
fn miss_call_offset(backend: &dyn IsaBackend, code: &[u8], bb_starts: &[u32]) -> Option<usize> {
    let last = *bb_starts.iter().max()? as usize;
    let insns = crate::disasm::disassemble(backend.arch(), code.get(last..)?, 0).ok()?;
    insns
        .iter()
        .take_while(|i| i.branch != Branch::Return)
        .find(|i| i.branch == Branch::IndirectCall)
        .map(|i| last + i.addr as usize)
}
