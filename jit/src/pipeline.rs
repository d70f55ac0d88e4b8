//! The one Cranelift compile pipeline of both thunk compilers
//! ([`crate::thunk::compiler::ThunkCompiler`] and
//! [`crate::patch::PatchCompiler`]).
//!
//! [`Pipeline::compile`] fills a function with the caller's IR builder,
//! runs Cranelift, and maps each relocation to what it means for the
//! caller; a Cranelift panic becomes [`JitError::Compile`] and the contexts
//! start over, so the compiler stays usable. The result, [`Compiled`], is
//! the code with what Cranelift itself reports about it (basic-block
//! starts, call sites), which the two post-codegen rewrites both compilers
//! share need: a direct hit's call becoming a tail jump
//! ([`Compiled::rewrite_tail_jump`]) and the miss path's indirect call
//! becoming a jump ([`Compiled::rewrite_miss`]).

use std::panic::{AssertUnwindSafe, catch_unwind};

use cranelift_codegen::binemit::Reloc;
use cranelift_codegen::control::ControlPlane;
use cranelift_codegen::ir::{ExternalName, Function, UserExternalName};
use cranelift_codegen::isa::{OwnedTargetIsa, TargetFrontendConfig};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::{Context, FinalizedRelocTarget, isa};
use cranelift_frontend::FunctionBuilderContext;

use crate::error::JitError;
use crate::isa::{Arch, IsaBackend};
use crate::types::{ThunkSig, ValType};

/// Builds the Cranelift ISA object for `arch`, with the settings every
/// hotcall thunk is compiled with (`verify`: Cranelift's IR verifier).
pub(crate) fn build_isa(arch: Arch, verify: bool) -> Result<OwnedTargetIsa, JitError> {
    let backend = arch.backend();
    let err = |e: String| JitError::Isa(backend.name(), e);
    let mut flags = settings::builder();
    for (name, value) in [
        // A thunk is a compare chain with nothing to optimize: `speed`
        // (the e-graph pass) produces byte-identical code for every
        // in-range thunk in the golden tests and worse code for far slots
        // on aarch64 (it rematerializes the address instead of reusing the
        // compare's register), and costs compile time.
        ("opt_level", "none"),
        ("enable_verifier", if verify { "true" } else { "false" }),
        // The thunk makes calls; a frame pointer keeps it walkable by
        // debuggers and profilers (no unwind info is registered).
        ("preserve_frame_pointers", "true"),
        ("is_pic", "false"),
        // Basic-block offsets, so the tail-jump rewrite can prove nothing
        // jumps into the bytes it changes.
        ("machine_code_cfg_info", "true"),
    ] {
        flags.set(name, value).map_err(|e| err(e.to_string()))?;
    }
    let builder = isa::lookup_by_name(backend.triple()).map_err(|e| err(e.to_string()))?;
    builder
        .finish(settings::Flags::new(flags))
        .map_err(|e| err(e.to_string()))
}

/// The thunk's parameter types: the target pointer, then the target's.
pub(crate) fn thunk_params(sig: &ThunkSig) -> Vec<ValType> {
    let mut params = vec![ValType::Ptr];
    params.extend_from_slice(sig.params());
    params
}

/// Whether the thunk for `sig` may leave by a jump (a hit's tail jump, the
/// miss path's jump): every argument travels in registers (see
/// [`IsaBackend::args_in_registers`]).
pub(crate) fn may_jump(backend: &dyn IsaBackend, sig: &ThunkSig) -> bool {
    backend.args_in_registers(&thunk_params(sig))
}

/// One relocation Cranelift left, with what the caller's mapping made of
/// its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Mapped<T> {
    pub offset: u32,
    pub kind: Reloc,
    pub addend: i64,
    pub to: T,
}

/// Cranelift's output for one thunk, before any rewrite.
pub(crate) struct Compiled<T> {
    pub backend: &'static dyn IsaBackend,
    pub code: Vec<u8>,
    pub relocs: Vec<Mapped<T>>,
    /// Offsets where basic blocks start.
    pub bb_starts: Vec<u32>,
    /// Return-address offsets of every call Cranelift emitted, direct or
    /// indirect (`MachBufferFinalized::call_sites`), in code order.
    pub call_returns: Vec<u32>,
}

impl<T> Compiled<T> {
    /// Rewrites the direct call relocated at `offset` (a hit's call, followed
    /// by the epilogue and `ret`) into the epilogue and a direct jump, if no
    /// basic block starts inside the bytes that change (nothing else jumps
    /// into that epilogue) and the bytes are exactly that pattern
    /// ([`IsaBackend::rewrite_call_as_tail_jump`]). Returns the jump's
    /// relocation offset; the caller moves its relocation there.
    pub fn rewrite_tail_jump(&mut self, offset: u32) -> Option<u32> {
        let (lo, hi) = self.backend.tail_jump_window(offset);
        if self.bb_starts.iter().any(|&b| b > lo && b < hi) {
            return None;
        }
        self.backend
            .rewrite_call_as_tail_jump(&mut self.code, offset)
    }

    /// The offset of the miss path's indirect call: the first call of the
    /// last basic block (the miss block is laid out last) that Cranelift
    /// recorded as a call site and that has no direct-call relocation,
    /// found from its return address and the backend's encoding of
    /// register-indirect calls ([`IsaBackend::indirect_call_start`]).
    pub fn miss_call_offset(&self) -> Option<usize> {
        let last = *self.bb_starts.iter().max()?;
        let direct = self.backend.direct_call_reloc();
        let to_ret = self.backend.direct_call_return_offset();
        let at = self
            .call_returns
            .iter()
            .filter(|&&ret| ret > last)
            .find(|&&ret| {
                !self
                    .relocs
                    .iter()
                    .any(|r| r.kind == direct && r.offset + to_ret == ret)
            })
            .and_then(|&ret| {
                self.backend
                    .indirect_call_start(&self.code, last as usize, ret as usize)
            });
        #[cfg(all(debug_assertions, feature = "disasm"))]
        debug_assert_eq!(
            at,
            crate::disasm::miss_call_offset(self.backend.arch(), &self.code, &self.bb_starts),
            "the miss call from Cranelift's call sites differs from capstone's decoding"
        );
        at
    }

    /// Rewrites the miss path's `call *reg; epilogue; ret` into `epilogue;
    /// jmp *reg`, or with `stub` into `epilogue; jmp <stub>` (see
    /// [`IsaBackend::rewrite_miss_as_tail_jump`]). Returns the register and,
    /// with `stub`, the jump's relocation offset; `None` (code untouched)
    /// where the miss call is not found or not in that shape.
    pub fn rewrite_miss(&mut self, stub: bool) -> Option<(u8, Option<u32>)> {
        let at = self.miss_call_offset()?;
        self.backend
            .rewrite_miss_as_tail_jump(&mut self.code, at, stub)
    }
}

/// Cranelift's ISA object and reusable contexts for one ISA.
pub(crate) struct Pipeline {
    backend: &'static dyn IsaBackend,
    isa: OwnedTargetIsa,
    ctx: Context,
    fctx: FunctionBuilderContext,
    /// Test hook: make the next compilation panic inside Cranelift's place.
    #[cfg(test)]
    pub(crate) inject_panic: bool,
}

impl Pipeline {
    pub fn new(arch: Arch, verify: bool) -> Result<Self, JitError> {
        Ok(Pipeline {
            backend: arch.backend(),
            isa: build_isa(arch, verify)?,
            ctx: Context::new(),
            fctx: FunctionBuilderContext::new(),
            #[cfg(test)]
            inject_panic: false,
        })
    }

    /// Builds a function with `build`, compiles it, and maps every
    /// relocation with `map` (its kind and, for a user external name, its
    /// `(namespace, index)`); a relocation `map` does not recognize is
    /// [`JitError::UnexpectedReloc`]. Cranelift reports some failures by
    /// panicking; those are caught and returned as [`JitError::Compile`],
    /// and the contexts start over.
    pub fn compile<T>(
        &mut self,
        build: impl FnOnce(&mut Function, &mut FunctionBuilderContext, TargetFrontendConfig),
        map: impl FnMut(Reloc, Option<(u32, u32)>) -> Option<T>,
    ) -> Result<Compiled<T>, JitError> {
        let result = catch_unwind(AssertUnwindSafe(|| self.compile_inner(build, map)));
        match result {
            Ok(r) => r,
            Err(panic) => {
                // The contexts may be half-way through a function: start over.
                self.ctx = Context::new();
                self.fctx = FunctionBuilderContext::new();
                let msg = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                Err(JitError::Compile(format!("panicked: {msg}")))
            }
        }
    }

    fn compile_inner<T>(
        &mut self,
        build: impl FnOnce(&mut Function, &mut FunctionBuilderContext, TargetFrontendConfig),
        mut map: impl FnMut(Reloc, Option<(u32, u32)>) -> Option<T>,
    ) -> Result<Compiled<T>, JitError> {
        self.ctx.clear();
        #[cfg(test)]
        if std::mem::take(&mut self.inject_panic) {
            panic!("injected failure");
        }
        build(
            &mut self.ctx.func,
            &mut self.fctx,
            self.isa.frontend_config(),
        );
        let names = self.ctx.func.params.user_named_funcs().clone();
        let compiled = self
            .ctx
            .compile(&*self.isa, &mut ControlPlane::default())
            .map_err(|e| JitError::Compile(format!("{:?}", e.inner)))?;
        let mut relocs = Vec::new();
        for r in compiled.buffer.relocs() {
            let name = match &r.target {
                FinalizedRelocTarget::ExternalName(ExternalName::User(name)) => {
                    let UserExternalName { namespace, index } = names[*name].clone();
                    Some((namespace, index))
                }
                _ => None,
            };
            let Some(to) = map(r.kind, name) else {
                return Err(JitError::UnexpectedReloc(format!(
                    "{} at {} to {:?}",
                    r.kind, r.offset, r.target
                )));
            };
            relocs.push(Mapped {
                offset: r.offset,
                kind: r.kind,
                addend: r.addend,
                to,
            });
        }
        Ok(Compiled {
            backend: self.backend,
            code: compiled.code_buffer().to_vec(),
            relocs,
            bb_starts: compiled.bb_starts.clone(),
            call_returns: compiled.buffer.call_sites().map(|c| c.ret_addr).collect(),
        })
    }
}
