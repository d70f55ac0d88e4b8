//! The aarch64 retpoline equivalent and hardened miss trampolines, as
//! functions of the host binary, reached with a direct `bl`/`b`: the
//! return-stack construction for `x16` ([`super::encode`],
//! `RETPOLINE_X16_WORDS`; aarch64 has no architectural retpoline) and one
//! miss trampoline per integer-argument count (see [`crate::hardened`]).
//! Clobbers nothing but x17 (a scratch register at any call).
//!
//! Compiled on aarch64 hosts only.

/// `blr x16` / `br x16` through the return-stack construction (see
/// `isa::aarch64::encode::RETPOLINE_X16_WORDS`, which these words are).
///
/// # Safety
/// Not a Rust function: reach it with `bl`/`b` and a target in x16.
#[unsafe(naked)]
pub unsafe extern "C" fn retpoline_x16() {
    core::arch::naked_asm!(
        ".inst 0xaa1e03f1", // mov x17, x30
        ".inst 0x94000004", // bl 2f
        ".inst 0xd5033f9f", // dsb sy
        ".inst 0xd5033fdf", // isb
        ".inst 0x17fffffe", // b 1b
        ".inst 0xaa1103fe", // mov x30, x17
        ".inst 0xd65f0200", // ret x16
    )
}

macro_rules! miss_trampoline {
    ($($name:ident: $load:literal;)*) => {$(
        /// A hardened miss trampoline (see `crate::hardened`).
        ///
        /// # Safety
        /// Not a Rust function: only thunks call it.
        #[unsafe(naked)]
        pub unsafe extern "C" fn $name() {
            core::arch::naked_asm!($load, "b {rp}", rp = sym retpoline_x16)
        }
    )*};
}

miss_trampoline! {
    miss_after_0_ints: "mov x16, x0";
    miss_after_1_ints: "mov x16, x1";
    miss_after_2_ints: "mov x16, x2";
    miss_after_3_ints: "mov x16, x3";
    miss_after_4_ints: "mov x16, x4";
    miss_after_5_ints: "mov x16, x5";
    miss_after_6_ints: "mov x16, x6";
    miss_after_7_ints: "mov x16, x7";
    miss_after_8_ints: "ldr x16, [sp]";
}

/// The address of the retpoline for the scratch register (x16).
pub fn scratch() -> usize {
    retpoline_x16 as *const () as usize
}

/// The miss trampolines, by integer-argument count.
pub fn miss_trampolines() -> Option<[usize; 9]> {
    Some([
        miss_after_0_ints as *const () as usize,
        miss_after_1_ints as *const () as usize,
        miss_after_2_ints as *const () as usize,
        miss_after_3_ints as *const () as usize,
        miss_after_4_ints as *const () as usize,
        miss_after_5_ints as *const () as usize,
        miss_after_6_ints as *const () as usize,
        miss_after_7_ints as *const () as usize,
        miss_after_8_ints as *const () as usize,
    ])
}
