//! What a static entry stub jumps to when its site has no thunk: a *miss
//! stub* that turns the thunk ABI (`target, a0..an`) into a call of the
//! target, plain or through the retpoline (hardened mode).
//!
//! ```text
//! x86-64:                         aarch64:
//!     mov r11, rdi  ; target          mov x16, x0   ; target
//!     mov rdi, rsi  ; shift the       mov x0, x1    ; shift the
//!     ...           ; integer args    ...           ; integer args
//!     mov r8, r9                      mov x6, x7
//!     jmp r11       ; or jmp retpoline_r11            br x16 ; or b retpoline_x16
//! ```
//!
//! Float arguments stay where they are (the target pointer is an integer),
//! and the stack is untouched, which is why static sites take only
//! signatures whose thunk ABI passes everything in registers
//! ([`MAX_INT_PARAMS`] integer parameters; floats always fit). The values
//! moved keep the extension the caller gave them. Registers beyond the
//! signature's are moved too: harmless, they are scratch at a call.

/// Most integer-class parameters a static site's signature may have: the
/// thunk ABI's target pointer takes one of the integer argument registers
/// (6 on x86-64, 8 on aarch64).
#[cfg(target_arch = "x86_64")]
pub const MAX_INT_PARAMS: usize = 5;
#[cfg(not(target_arch = "x86_64"))]
pub const MAX_INT_PARAMS: usize = 7;

#[cfg(target_arch = "x86_64")]
mod host {
    /// The plain miss stub (see the module docs).
    ///
    /// # Safety
    /// Not a Rust function: static entry stubs jump here with the thunk
    /// ABI's arguments in place.
    #[unsafe(naked)]
    pub unsafe extern "C" fn miss_plain() {
        core::arch::naked_asm!(
            "mov r11, rdi",
            "mov rdi, rsi",
            "mov rsi, rdx",
            "mov rdx, rcx",
            "mov rcx, r8",
            "mov r8, r9",
            "jmp r11",
        )
    }

    /// The hardened miss stub: as [`miss_plain`], through the retpoline.
    ///
    /// # Safety
    /// As [`miss_plain`].
    #[unsafe(naked)]
    pub unsafe extern "C" fn miss_hardened() {
        core::arch::naked_asm!(
            "mov r11, rdi",
            "mov rdi, rsi",
            "mov rsi, rdx",
            "mov rdx, rcx",
            "mov rcx, r8",
            "mov r8, r9",
            "jmp {rp}",
            rp = sym hotcall_jit::hardened::host::retpoline_r11,
        )
    }
}

#[cfg(target_arch = "aarch64")]
mod host {
    /// The plain miss stub (see the module docs).
    ///
    /// # Safety
    /// Not a Rust function: static entry stubs branch here with the thunk
    /// ABI's arguments in place.
    #[unsafe(naked)]
    pub unsafe extern "C" fn miss_plain() {
        core::arch::naked_asm!(
            "mov x16, x0",
            "mov x0, x1",
            "mov x1, x2",
            "mov x2, x3",
            "mov x3, x4",
            "mov x4, x5",
            "mov x5, x6",
            "mov x6, x7",
            "br x16",
        )
    }

    /// The hardened miss stub: as [`miss_plain`], through the retpoline.
    ///
    /// # Safety
    /// As [`miss_plain`].
    #[unsafe(naked)]
    pub unsafe extern "C" fn miss_hardened() {
        core::arch::naked_asm!(
            "mov x16, x0",
            "mov x0, x1",
            "mov x1, x2",
            "mov x2, x3",
            "mov x3, x4",
            "mov x4, x5",
            "mov x5, x6",
            "mov x6, x7",
            "b {rp}",
            rp = sym hotcall_jit::hardened::host::retpoline_x16,
        )
    }
}

pub use host::{miss_hardened, miss_plain};

/// The miss stub for an engine's hardening.
pub fn miss_stub(hardened: bool) -> usize {
    if hardened {
        miss_hardened as *const () as usize
    } else {
        miss_plain as *const () as usize
    }
}

/// Declares a static dispatch site whose entry is a stub in the host
/// binary's text, reached by a true direct `call` (`bl`).
///
/// ```
/// hotcall::static_site! {
///     /// Shapes drawn per frame.
///     pub static DRAW: extern "C" fn(u64, f64) -> u64;
/// }
///
/// extern "C" fn circle(n: u64, r: f64) -> u64 { n + r as u64 }
///
/// let engine = hotcall::Engine::new();
/// DRAW.promote(&engine, &[circle]).unwrap();   // the stub now jumps to a thunk
/// let pinned = engine.pin();
/// assert_eq!(DRAW.call(&pinned, circle, (1, 2.0)), 3);
/// ```
///
/// The stub is a naked function (`jmp rel32` on x86-64 with its
/// displacement 4-byte aligned, `b` on aarch64), initially aimed at the
/// hardened miss stub; binding the site to an engine aims it at the plain
/// miss stub, at a JIT thunk ([`StaticSite::promote`]), at whatever a
/// learning JIT site publishes ([`StaticSite::use_jit`]) or at a Patch
/// thunk ([`StaticSite::use_patch`]). Retargeting it is one aligned 32-bit
/// store into the host's text (`hotcall_jit::text_poke`).
///
/// Signatures must pass every argument of the thunk ABI in registers: at
/// most [`MAX_INT_PARAMS`] integer parameters (5 on x86-64); more is a
/// compile-time error:
///
/// ```compile_fail
/// hotcall::static_site! {
///     static TOO_MANY: extern "C" fn(u64, u64, u64, u64, u64, u64, u64, u64) -> u64;
/// }
/// ```
///
/// [`StaticSite::promote`]: crate::StaticSite::promote
/// [`StaticSite::use_patch`]: crate::StaticSite::use_patch
/// [`StaticSite::use_jit`]: crate::StaticSite::use_jit
#[macro_export]
macro_rules! static_site {
    ($(#[$attr:meta])* $vis:vis static $name:ident : extern "C" fn($($arg:ty),* $(,)?) $(-> $ret:ty)? ;) => {
        $crate::static_site!(@expand [$(#[$attr])*] $vis $name, [$($arg),*], ($($ret)?), [] [$($arg),*] [a0 a1 a2 a3 a4 a5 a6 a7]);
    };
    // Pair each argument type with a parameter name, then emit.
    (@expand [$($attr:tt)*] $vis:vis $name:ident, [$($arg:ty),*], ($($ret:ty)?), [$(($a:ident: $t:ty))*] [$T:ty $(, $rest:ty)*] [$n:ident $($more:ident)*]) => {
        $crate::static_site!(@expand [$($attr)*] $vis $name, [$($arg),*], ($($ret)?), [$(($a: $t))* ($n: $T)] [$($rest),*] [$($more)*]);
    };
    (@expand [$($attr:tt)*] $vis:vis $name:ident, [$($arg:ty),*], ($($ret:ty)?), [$(($a:ident: $t:ty))*] [] [$($unused:ident)*]) => {
        #[doc(hidden)]
        #[allow(non_snake_case)]
        $vis mod $name {
            #[allow(unused_imports)]
            use super::*;

            /// The site's function-pointer type.
            pub type __HotcallFn = extern "C" fn($($arg),*) $(-> $ret)?;

            const _: () = ::core::assert!(
                <__HotcallFn as $crate::SiteFn>::INT_PARAMS <= $crate::MAX_STATIC_INT_PARAMS,
                "static_site!: too many integer parameters; the thunk ABI must pass every argument in registers (at most 5 integer parameters on x86-64, 7 on aarch64)"
            );

            /// The entry stub, in the host's text.
            #[unsafe(naked)]
            pub unsafe extern "C" fn __hotcall_stub() {
                $crate::__hotcall_stub_body!()
            }

            /// Marker type naming this site's stub.
            pub struct __HotcallStub;

            // SAFETY: `__hotcall_stub` is laid out by `__hotcall_stub_body`
            // (the documented stub shape) and `enter` calls it with the
            // thunk ABI of `__HotcallFn`.
            unsafe impl $crate::StaticStub<__HotcallFn> for __HotcallStub {
                fn stub_address() -> usize {
                    __hotcall_stub as *const () as usize
                }

                #[inline(always)]
                fn enter(
                    target: __HotcallFn,
                    ($($a,)*): <__HotcallFn as $crate::SiteFn>::Args,
                ) -> <__HotcallFn as $crate::SiteFn>::Ret {
                    let mut regs = $crate::__private::RegFile::new();
                    regs.push(false, target as usize as u64);
                    <__HotcallFn as $crate::SiteFn>::pack(($($a,)*), &mut regs);
                    let (int, float) = $crate::__hotcall_asm_call!(
                        __hotcall_stub;
                        regs;
                        <__HotcallFn as $crate::SiteFn>::INT_PARAMS + 1;
                        <__HotcallFn as $crate::SiteFn>::FLOAT_PARAMS;
                    );
                    <<__HotcallFn as $crate::SiteFn>::Ret as $crate::Return>::from_regs(int, float)
                }
            }
        }

        $($attr)*
        $vis static $name: $crate::StaticSite<$name::__HotcallFn, $name::__HotcallStub> =
            $crate::StaticSite::new(::core::stringify!($name));
    };
}

/// The body of a static entry stub (see [`static_site!`]).
#[doc(hidden)]
#[macro_export]
#[cfg(target_arch = "x86_64")]
macro_rules! __hotcall_stub_body {
    () => {
        ::core::arch::naked_asm!(
            // 8-byte block: `nopl (%rax)` then `jmp rel32` whose field is
            // 4-byte aligned and whose bytes stay in the block.
            ".p2align 3",
            ".byte 0x0f, 0x1f, 0x00",
            ".byte 0xe9",
            ".long {miss} - . - 4",
            miss = sym $crate::static_entry::miss_hardened,
        )
    };
}

/// The body of a static entry stub (see [`static_site!`]).
#[doc(hidden)]
#[macro_export]
#[cfg(target_arch = "aarch64")]
macro_rules! __hotcall_stub_body {
    () => {
        ::core::arch::naked_asm!("b {miss}", miss = sym $crate::static_entry::miss_hardened)
    };
}
