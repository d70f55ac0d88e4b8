//! Hardened mode: the miss path of a thunk calls its target through a
//! retpoline instead of an indirect `call`.
//!
//! A retpoline is reached by a direct call with the target in a known
//! register (r11 on x86-64, x16 on aarch64). Cranelift cannot put a value
//! in a register of our choosing at a call, but it follows the C ABI. So
//! the miss path passes the target as one *extra, last* integer argument to
//! a direct call of a small trampoline; by the ABI that argument lands in
//! the integer register (or stack slot) right after the target's own
//! integer arguments, and there is one trampoline per position:
//!
//! ```text
//! miss:                                    miss_trampoline_k:  (k integer args)
//!     call miss_trampoline_k(a0..an, target)   mov r11, <int arg k>   ; rdi.. r9, or
//!     return                                                          ; [rsp+8+8(k-6)]
//!                                              jmp retpoline_r11      ; "call *%r11"
//! ```
//!
//! The target receives its arguments exactly where the thunk put them, plus
//! one argument it does not declare (harmless in the C ABI: the caller owns
//! the outgoing argument area), and returns to the thunk. Unlike carrying
//! the target in Cranelift's pinned register (r15 / x21, callee-saved in the
//! C ABI, so the thunk would have to save and restore it around the call),
//! this needs no callee-saved register: the frame stays `push rbp` /
//! `pop rbp`, and the hits keep their tail jumps.

#[cfg(target_arch = "aarch64")]
pub use crate::isa::aarch64::retpoline as host;
/// The host's retpoline and miss trampolines: functions of the host binary
/// (the host ISA's `retpoline.rs`), which thunks and Rust code reach by a
/// direct call.
#[cfg(target_arch = "x86_64")]
pub use crate::isa::x86_64::retpoline as host;
/// No retpoline off x86-64 and aarch64.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub mod host {
    /// No trampolines off x86-64 and aarch64.
    pub fn miss_trampolines() -> Option<[usize; 9]> {
        None
    }
}

use cranelift_codegen::ir::{
    AbiParam, ExtFuncData, ExternalName, Inst, InstBuilder, SigRef, UserExternalName, Value, types,
};
use cranelift_frontend::FunctionBuilder;

use crate::types::ThunkSig;

/// The user-name namespace of the trampoline call's relocation.
/// (Distinct from the slots' 0, the Patch table's 3 and main's hook namespace 2.)
pub(crate) const RETPOLINE_NAMESPACE: u32 = 5;

/// Most integer-class arguments a site has (all 8 parameters).
pub const MAX_INT_ARGS: usize = crate::types::MAX_PARAMS;

/// The addresses of the miss trampolines, indexed by the number of integer
/// class parameters of the target signature (0 to 8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MissTrampolines {
    pub by_int_args: [u64; MAX_INT_ARGS + 1],
}

impl MissTrampolines {
    /// The host's trampolines (functions of this binary, see
    /// [`host`]); `None` off x86-64 and aarch64.
    pub fn host() -> Option<Self> {
        host::miss_trampolines().map(|t| MissTrampolines {
            by_int_args: t.map(|a| a as u64),
        })
    }

    /// The trampoline for targets of signature `sig`.
    pub fn for_sig(&self, sig: &ThunkSig) -> u64 {
        let ints = sig.params().iter().filter(|t| !t.is_float()).count();
        self.by_int_args[ints]
    }
}

/// Emits the call of the miss path: a plain `call_indirect`, or with
/// `hardened`, the direct call of the miss trampoline with the target as
/// the extra last argument.
pub(crate) fn miss_call(
    b: &mut FunctionBuilder<'_>,
    target_sig: SigRef,
    target: Value,
    args: &[Value],
    hardened: bool,
) -> Inst {
    if !hardened {
        return b.ins().call_indirect(target_sig, target, args);
    }
    let mut sig = b.func.dfg.signatures[target_sig].clone();
    sig.params.push(AbiParam::new(types::I64));
    let sig = b.import_signature(sig);
    let name = b
        .func
        .declare_imported_user_function(UserExternalName::new(RETPOLINE_NAMESPACE, 0));
    let callee = b.import_function(ExtFuncData {
        name: ExternalName::user(name),
        signature: sig,
        colocated: true,
        patchable: false,
    });
    let mut with_target = args.to_vec();
    with_target.push(target);
    b.ins().call(callee, &with_target)
}
