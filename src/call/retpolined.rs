//! Calls through the retpoline: the `Retpoline` baseline, and what
//! hardened mode makes of every indirect branch hotcall emits.
//!
//! x86-64: the classic retpoline (`hotcall_jit::hardened::host::retpoline_r11`,
//! Intel's "Retpoline: A Branch Target Injection Mitigation"), reached by a
//! direct `call` with the callee in r11, so that the only prediction used is
//! the return stack buffer's, never the (trainable) branch target buffer.
//! aarch64 has no architectural retpoline; the closest equivalent is the
//! return-stack construction in `hotcall_jit::isa::aarch64::encode` (callee
//! in x16).
//!
//! Both calls below are direct `call`/`bl`s made from `asm!` with the C ABI
//! placed by hand (`crate::call::abi`).

use crate::call::abi::RegFile;
use crate::call::signature::{Return, SiteFn};

/// `target(args)` through the retpoline: what a retpoline-hardened
/// compiler makes of a plain indirect call.
#[inline(always)]
pub fn call<F: SiteFn>(target: F, args: F::Args) -> F::Ret {
    let mut regs = RegFile::new();
    F::pack(args, &mut regs);
    let callee = target.addr();
    #[cfg(target_arch = "x86_64")]
    let (int, float) = crate::__hotcall_asm_call!(
        hotcall_jit::hardened::host::retpoline_r11; regs; F::INT_PARAMS; F::FLOAT_PARAMS;
        in("r11") callee,
    );
    #[cfg(target_arch = "aarch64")]
    let (int, float) = crate::__hotcall_asm_call!(
        hotcall_jit::hardened::host::retpoline_x16; regs; F::INT_PARAMS; F::FLOAT_PARAMS;
        in("x16") callee,
    );
    <F::Ret as Return>::from_regs(int, float)
}

/// Calls the thunk at `entry` (the thunk ABI: `target` first, then `args`)
/// through the retpoline: hardened mode's entry into a thunk.
///
/// # Safety
/// As [`SiteFn::call_thunk`]: `entry` is live code compiled for
/// `F::signature()` that stays executable until this call returns.
#[inline(always)]
pub unsafe fn call_thunk<F: SiteFn>(entry: usize, target: F, args: F::Args) -> F::Ret {
    let mut regs = RegFile::new();
    regs.push(false, target.addr() as u64);
    F::pack(args, &mut regs);
    #[cfg(target_arch = "x86_64")]
    let (int, float) = crate::__hotcall_asm_call!(
        hotcall_jit::hardened::host::retpoline_r11; regs; F::INT_PARAMS + 1; F::FLOAT_PARAMS;
        in("r11") entry,
    );
    #[cfg(target_arch = "aarch64")]
    let (int, float) = crate::__hotcall_asm_call!(
        hotcall_jit::hardened::host::retpoline_x16; regs; F::INT_PARAMS + 1; F::FLOAT_PARAMS;
        in("x16") entry,
    );
    <F::Ret as Return>::from_regs(int, float)
}
