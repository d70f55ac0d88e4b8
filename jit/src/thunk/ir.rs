//! The thunk as Cranelift IR, identical for every ISA.
//!
//! ```text
//! thunk(target, a0..an):
//!     if target != T0 goto check1     ; slot 0: the hit falls through
//!     return T0(a0..an)               ; direct call (or absolute, if far)
//! check1:
//!     if target != T1 goto check2
//!     return T1(a0..an)
//! ...
//! miss:
//!     return target(a0..an)           ; plain indirect call
//! ```
//!
//! The compare branches to the *next check* on inequality so that the hit
//! block is the `else` successor of `brif`, which Cranelift lays out as the
//! fall-through: slot 0's hit path is a straight line with no taken branch
//! (measured on this project's machine: 1.73 ns against 2.31 ns for a taken `je`).
//!
//! A thunk may also *count*, through the site's hook stubs
//! ([`crate::IsaBackend::hook_stub`]), which add the site's cookie and jump
//! to a recording bridge that preserves every register. None of this is in
//! the IR where it can be avoided, because any call in the IR constrains
//! the register allocator on every path:
//! * counting every call: the compiler puts one call to the entry stub in
//!   front of the finished code (`IsaBackend::entry_hook_prefix`), where
//!   every argument is still where the caller put it;
//! * counting misses: the miss path, rewritten into a tail jump, jumps to
//!   the site's miss stub for the register that holds the target instead
//!   of to the target; the stub counts and jumps on. The code is that of a
//!   thunk that does not count, but for that jump's destination.
//!
//! Where the miss cannot tail-jump (stack arguments), the miss block calls
//! the miss stub in the IR, with Cranelift's `preserve_all` convention
//! (call sites clobber nothing) and the target's own arguments, where the
//! indirect call after it wants them, followed by the target.
//!
//! The calls are not tail calls in the IR: `return_call` requires the
//! `tail` calling convention on both sides, and the targets are ordinary C
//! functions. The compiler turns direct hits into jumps after code
//! generation where that is sound (`ThunkCompiler::make_tail_jumps`); the
//! miss path and absolute calls keep the call, so the callee may return
//! into the thunk, which is why reclamation must cover the whole call.

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{
    AbiParam, ExtFuncData, ExternalName, Function, InstBuilder, Signature, UserExternalName,
    UserFuncName, types,
};
use cranelift_codegen::isa::{CallConv, TargetFrontendConfig};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};

use crate::types::{ThunkSig, ValType};

/// How a promoted slot calls its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum CallForm {
    /// A true direct call: `call rel32` (x86-64) or `bl` (aarch64).
    Direct,
    /// The target is out of direct-call range: its address is materialized
    /// in a register and called through it (`movabs`+`call reg`,
    /// `movz/movk`+`blr`). Correct, but an indirect branch.
    Absolute,
}

impl CallForm {
    pub fn name(self) -> &'static str {
        match self {
            CallForm::Direct => "direct",
            CallForm::Absolute => "absolute",
        }
    }
}

/// One promoted target and the call form chosen for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SlotPlan {
    pub target: u64,
    pub form: CallForm,
    /// A direct slot whose hit *jumps* to the target after tearing down the
    /// thunk's frame (the target returns straight to the thunk's caller).
    /// Set after code generation, where the pattern allows it.
    pub tail: bool,
}

/// Which counting hook a call goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HookKind {
    /// Called on entry, for every call.
    Entry,
    /// Called at the start of the miss path.
    Miss,
}

/// The counting hooks a thunk calls: addresses of the site's hook stubs
/// (see [`crate::IsaBackend::hook_stub`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Hooks {
    /// The entry hook, if the thunk counts every call (called
    /// `preserve_all` with the thunk's register arguments).
    pub entry: Option<u64>,
    /// The miss hook, if the thunk counts misses (called `preserve_all`
    /// with the target's arguments and the target). Used when the miss
    /// path cannot tail-jump through a miss stub.
    pub miss: Option<u64>,
    /// Miss stubs by hardware register number (0: none), for a thunk that
    /// counts misses: its miss path tail-jumps to the stub of the register
    /// holding the target, which counts and jumps on to the target. The
    /// thunk's code is then exactly that of a thunk that does not count
    /// but for the miss jump's destination.
    pub miss_tail: Option<[u64; crate::isa::GPRS]>,
}

impl Hooks {
    /// No counting.
    pub const NONE: Hooks = Hooks {
        entry: None,
        miss: None,
        miss_tail: None,
    };

    /// The hook of `kind`, if any.
    pub fn get(&self, kind: HookKind) -> Option<u64> {
        match kind {
            HookKind::Entry => self.entry,
            HookKind::Miss => self.miss,
        }
    }

    pub fn is_none(&self) -> bool {
        self.entry.is_none() && self.miss.is_none() && self.miss_tail.is_none()
    }
}

/// A hook call as planned: where it goes and how it is called.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct HookPlan {
    pub address: u64,
    pub form: CallForm,
}

/// The user external name namespaces of the thunk's direct calls.
pub(crate) const NS_SLOT: u32 = 0;
pub(crate) const NS_HOOK: u32 = 2;

/// The Cranelift parameter for one value type, with the extension the C ABI
/// expects of callers (see [`ValType`]).
fn abi_param(t: ValType) -> AbiParam {
    match t {
        ValType::I8 => AbiParam::new(types::I8).sext(),
        ValType::I16 => AbiParam::new(types::I16).sext(),
        ValType::U8 | ValType::Bool => AbiParam::new(types::I8).uext(),
        ValType::U16 => AbiParam::new(types::I16).uext(),
        ValType::I32 | ValType::U32 => AbiParam::new(types::I32),
        ValType::I64 | ValType::U64 | ValType::Ptr => AbiParam::new(types::I64),
        ValType::F32 => AbiParam::new(types::F32),
        ValType::F64 => AbiParam::new(types::F64),
    }
}

/// The signature of the targets.
pub(crate) fn target_signature(sig: &ThunkSig, cc: CallConv) -> Signature {
    let mut s = Signature::new(cc);
    s.params.extend(sig.params().iter().map(|&t| abi_param(t)));
    s.returns.extend(sig.ret().map(abi_param));
    s
}

/// The signature of the thunk: the target address, then the target's.
pub(crate) fn thunk_signature(sig: &ThunkSig, cc: CallConv) -> Signature {
    let mut s = target_signature(sig, cc);
    s.params.insert(0, AbiParam::new(types::I64));
    s
}

/// Fills `func` with the thunk for `sig` and `slots` (see the module docs),
/// calling the planned hooks.
///
/// Direct slots call a user external name `(NS_SLOT, slot index)`, direct
/// hooks `(NS_HOOK, 0 for entry / 1 for miss)`; the compiler turns the
/// resulting relocations into displacements once the code's address is
/// known.
pub(crate) fn build_thunk(
    func: &mut Function,
    fctx: &mut FunctionBuilderContext,
    sig: &ThunkSig,
    frontend: TargetFrontendConfig,
    slots: &[SlotPlan],
    miss_hook: Option<HookPlan>,
    hardened: bool,
) {
    let cc = frontend.default_call_conv;
    func.signature = thunk_signature(sig, cc);
    func.name = UserFuncName::user(1, slots.len() as u32);
    let mut b = FunctionBuilder::new(func, fctx);
    let target_sig = b.import_signature(target_signature(sig, cc));

    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    let params = b.block_params(entry).to_vec();
    let (target, args) = (params[0], &params[1..]);
    // The miss hook takes the target's arguments where the indirect call
    // right after it wants them, followed by the target address, so that
    // the register allocator has no reason to move anything on the hit
    // paths. The site's miss stub knows where the target is and passes only
    // it on. (Used only where the miss path cannot tail-jump through a
    // stub: see the module docs.)
    let mut miss_hook_sig = target_signature(sig, CallConv::PreserveAll);
    miss_hook_sig.returns.clear(); // `preserve_all` returns nothing
    miss_hook_sig.params.push(AbiParam::new(types::I64));
    let mut miss_args = args.to_vec();
    miss_args.push(target);
    for (index, slot) in slots.iter().enumerate() {
        let hit = b.create_block();
        let next = b.create_block();
        let promoted = b.ins().iconst(types::I64, slot.target as i64);
        let differs = b.ins().icmp(IntCC::NotEqual, target, promoted);
        b.ins().brif(differs, next, &[], hit, &[]);

        // Switching to `hit` first places it right after the compare.
        b.switch_to_block(hit);
        let call = match slot.form {
            CallForm::Direct => {
                let name = b
                    .func
                    .declare_imported_user_function(UserExternalName::new(NS_SLOT, index as u32));
                let callee = b.import_function(ExtFuncData {
                    name: ExternalName::user(name),
                    signature: target_sig,
                    // Colocated is what makes Cranelift emit `call rel32`
                    // / `bl`; the compiler checked the target is in range.
                    colocated: true,
                    patchable: false,
                });
                b.ins().call(callee, args)
            }
            // The compare constant is the callee's address. Hardened, a far
            // slot calls it through the retpoline, exactly as the miss path
            // does (so it saves no retpoline: what it still gives is its
            // hit count), never with a bare `call *reg`.
            CallForm::Absolute if hardened => {
                crate::hardened::miss_call(&mut b, target_sig, promoted, args, true)
            }
            CallForm::Absolute => b.ins().call_indirect(target_sig, promoted, args),
        };
        let results = b.inst_results(call).to_vec();
        b.ins().return_(&results);
        b.switch_to_block(next);
    }

    if let Some(hook) = miss_hook {
        let miss_hook_sig = b.import_signature(miss_hook_sig);
        match hook.form {
            CallForm::Direct => {
                let name = b
                    .func
                    .declare_imported_user_function(UserExternalName::new(NS_HOOK, 1));
                let callee = b.import_function(ExtFuncData {
                    name: ExternalName::user(name),
                    signature: miss_hook_sig,
                    colocated: true,
                    patchable: false,
                });
                b.ins().call(callee, &miss_args);
            }
            CallForm::Absolute => {
                let addr = b.ins().iconst(types::I64, hook.address as i64);
                b.ins().call_indirect(miss_hook_sig, addr, &miss_args);
            }
        }
    }
    // Hardened mode calls through a retpoline instead (crate::hardened).
    let call = crate::hardened::miss_call(&mut b, target_sig, target, args, hardened);
    let results = b.inst_results(call).to_vec();
    b.ins().return_(&results);
    b.seal_all_blocks();
    b.finalize(frontend);
}
