//! Calls with an exact C ABI from inline assembly, for the calls Rust
//! cannot emit itself: a `call` to a retpoline with the callee in a
//! scratch register, and a true direct `call` to a static entry stub.
//!
//! Rust calls to an `extern "C"` symbol in a position-independent
//! executable go through the GOT (`call *foo@GOTPCREL(%rip)`), an indirect
//! branch; `asm!("call {f}", f = sym STUB)` is a direct `call rel32` that
//! the linker resolves (measured on this project's machine). The price is that the assembly must
//! place the arguments where the C ABI puts them, for any signature:
//!
//! * the arguments are packed into a [`RegFile`]: integer-class values
//!   (extended to 64 bits as C callers extend them) and floating-point
//!   values each in order, which is how System V and AAPCS64 assign
//!   registers when no argument is an aggregate (hotcall signatures have
//!   none);
//! * one `asm!` block per *shape* passes exactly the first `n` integer
//!   registers (`rdi rsi rdx rcx r8 r9` / `x0`-`x7`), pushes the rest on the
//!   stack in order, keeping the stack 16-byte aligned at the `call` (Rust
//!   guarantees call alignment on entry to an `asm!` block that may use the
//!   stack), and passes all eight vector registers when the signature has
//!   any float (unused ones as zero: cheaper than 9x more shapes);
//! * `clobber_abi("C")` tells the compiler everything the callee may
//!   clobber; the results come back in `rax`/`x0` and `xmm0`/`v0`.
//!
//! The shape is chosen by `match` on constants of the signature, so after
//! monomorphization exactly one `asm!` block remains.

/// Argument registers for an `asm!` call, filled by
/// [`SiteFn::pack`](crate::SiteFn::pack).
#[doc(hidden)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RegFile {
    /// Integer-class arguments in ABI order (a target pointer first, when
    /// calling a thunk, then the site's integer parameters).
    pub int: [u64; MAX_INT_ARGS],
    /// Floating-point arguments in ABI order (bits in the low end).
    pub float: [u64; 8],
    ni: usize,
    nf: usize,
}

/// Most integer-class arguments an `asm!` call passes: a thunk's target
/// pointer and eight integer parameters.
pub const MAX_INT_ARGS: usize = 9;

impl RegFile {
    /// An empty register file.
    #[inline(always)]
    pub fn new() -> Self {
        RegFile {
            int: [0; MAX_INT_ARGS],
            float: [0; 8],
            ni: 0,
            nf: 0,
        }
    }

    /// Appends one argument's register image.
    #[inline(always)]
    pub fn push(&mut self, float: bool, bits: u64) {
        if float {
            self.float[self.nf] = bits;
            self.nf += 1;
        } else {
            self.int[self.ni] = bits;
            self.ni += 1;
        }
    }
}

/// Calls `sym $f` with the arguments of `$regs` (a [`RegFile`]) as a C
/// call: `$ni` integer arguments (a constant, 0 to 9), floats if `$nf`
/// (a constant) is not 0, and any extra operands (such as the callee of a
/// retpoline in its scratch register). Evaluates to `(int, float)`, the
/// two return registers.
#[doc(hidden)]
#[macro_export]
#[cfg(target_arch = "x86_64")]
macro_rules! __hotcall_asm_call {
    ($f:path; $regs:expr; $ni:expr; $nf:expr; $($extra:tt)*) => {{
        let regs: $crate::__private::RegFile = $regs;
        let i = &regs.int;
        let x = &regs.float;
        let (ret_int, ret_float): (u64, u64);
        // SAFETY (for every arm): the caller of this macro guarantees that
        // `$f` is C-ABI code for arguments of this shape.
        match ($ni, $nf != 0) {
            (0, false) => $crate::__hotcall_asm_call!(@x86 $f, i, x, ret_int, ret_float, [$($extra)*], [], [], [], [], ()),
            (1, false) => $crate::__hotcall_asm_call!(@x86 $f, i, x, ret_int, ret_float, [$($extra)*], ["rdi" 0], [], [], [], ()),
            (2, false) => $crate::__hotcall_asm_call!(@x86 $f, i, x, ret_int, ret_float, [$($extra)*], ["rdi" 0 "rsi" 1], [], [], [], ()),
            (3, false) => $crate::__hotcall_asm_call!(@x86 $f, i, x, ret_int, ret_float, [$($extra)*], ["rdi" 0 "rsi" 1 "rdx" 2], [], [], [], ()),
            (4, false) => $crate::__hotcall_asm_call!(@x86 $f, i, x, ret_int, ret_float, [$($extra)*], ["rdi" 0 "rsi" 1 "rdx" 2 "rcx" 3], [], [], [], ()),
            (5, false) => $crate::__hotcall_asm_call!(@x86 $f, i, x, ret_int, ret_float, [$($extra)*], ["rdi" 0 "rsi" 1 "rdx" 2 "rcx" 3 "r8" 4], [], [], [], ()),
            (6, false) => $crate::__hotcall_asm_call!(@x86 $f, i, x, ret_int, ret_float, [$($extra)*], ["rdi" 0 "rsi" 1 "rdx" 2 "rcx" 3 "r8" 4 "r9" 5], [], [], [], ()),
            (7, false) => $crate::__hotcall_asm_call!(@x86 $f, i, x, ret_int, ret_float, [$($extra)*], ["rdi" 0 "rsi" 1 "rdx" 2 "rcx" 3 "r8" 4 "r9" 5], ["sub rsp, 8", "push {s0}"], ["add rsp, 16"], [s0 6], ()),
            (8, false) => $crate::__hotcall_asm_call!(@x86 $f, i, x, ret_int, ret_float, [$($extra)*], ["rdi" 0 "rsi" 1 "rdx" 2 "rcx" 3 "r8" 4 "r9" 5], ["push {s1}", "push {s0}"], ["add rsp, 16"], [s0 6 s1 7], ()),
            (9, false) => $crate::__hotcall_asm_call!(@x86 $f, i, x, ret_int, ret_float, [$($extra)*], ["rdi" 0 "rsi" 1 "rdx" 2 "rcx" 3 "r8" 4 "r9" 5], ["sub rsp, 8", "push {s2}", "push {s1}", "push {s0}"], ["add rsp, 32"], [s0 6 s1 7 s2 8], ()),
            (0, true) => $crate::__hotcall_asm_call!(@x86 $f, i, x, ret_int, ret_float, [$($extra)*], [], [], [], [], floats),
            (1, true) => $crate::__hotcall_asm_call!(@x86 $f, i, x, ret_int, ret_float, [$($extra)*], ["rdi" 0], [], [], [], floats),
            (2, true) => $crate::__hotcall_asm_call!(@x86 $f, i, x, ret_int, ret_float, [$($extra)*], ["rdi" 0 "rsi" 1], [], [], [], floats),
            (3, true) => $crate::__hotcall_asm_call!(@x86 $f, i, x, ret_int, ret_float, [$($extra)*], ["rdi" 0 "rsi" 1 "rdx" 2], [], [], [], floats),
            (4, true) => $crate::__hotcall_asm_call!(@x86 $f, i, x, ret_int, ret_float, [$($extra)*], ["rdi" 0 "rsi" 1 "rdx" 2 "rcx" 3], [], [], [], floats),
            (5, true) => $crate::__hotcall_asm_call!(@x86 $f, i, x, ret_int, ret_float, [$($extra)*], ["rdi" 0 "rsi" 1 "rdx" 2 "rcx" 3 "r8" 4], [], [], [], floats),
            (6, true) => $crate::__hotcall_asm_call!(@x86 $f, i, x, ret_int, ret_float, [$($extra)*], ["rdi" 0 "rsi" 1 "rdx" 2 "rcx" 3 "r8" 4 "r9" 5], [], [], [], floats),
            (7, true) => $crate::__hotcall_asm_call!(@x86 $f, i, x, ret_int, ret_float, [$($extra)*], ["rdi" 0 "rsi" 1 "rdx" 2 "rcx" 3 "r8" 4 "r9" 5], ["sub rsp, 8", "push {s0}"], ["add rsp, 16"], [s0 6], floats),
            (8, true) => $crate::__hotcall_asm_call!(@x86 $f, i, x, ret_int, ret_float, [$($extra)*], ["rdi" 0 "rsi" 1 "rdx" 2 "rcx" 3 "r8" 4 "r9" 5], ["push {s1}", "push {s0}"], ["add rsp, 16"], [s0 6 s1 7], floats),
            (9, true) => $crate::__hotcall_asm_call!(@x86 $f, i, x, ret_int, ret_float, [$($extra)*], ["rdi" 0 "rsi" 1 "rdx" 2 "rcx" 3 "r8" 4 "r9" 5], ["sub rsp, 8", "push {s2}", "push {s1}", "push {s0}"], ["add rsp, 32"], [s0 6 s1 7 s2 8], floats),
            _ => unreachable!("more than 9 integer arguments"),
        }
        (ret_int, ret_float)
    }};
    (@x86 $f:path, $i:ident, $x:ident, $ri:ident, $rf:ident, [$($extra:tt)*], [$($reg:tt $idx:tt)*], [$($pre:tt),*], [$($post:tt),*], [$($s:ident $sidx:tt)*], ()) => {
        // SAFETY: `$f` is C-ABI code for this shape (the macro's caller
        // guarantees it); the operands follow the ABI (module docs).
        unsafe {
            core::arch::asm!(
                $($pre,)*
                "call {f}",
                $($post,)*
                f = sym $f,
                $($s = in(reg) $i[$sidx],)*
                $($extra)*
                $(in($reg) $i[$idx],)*
                lateout("rax") $ri,
                lateout("xmm0") $rf,
                clobber_abi("C"),
            )
        }
    };
    (@x86 $f:path, $i:ident, $x:ident, $ri:ident, $rf:ident, [$($extra:tt)*], [$($reg:tt $idx:tt)*], [$($pre:tt),*], [$($post:tt),*], [$($s:ident $sidx:tt)*], floats) => {
        // SAFETY: as above.
        unsafe {
            core::arch::asm!(
                $($pre,)*
                "call {f}",
                $($post,)*
                f = sym $f,
                $($s = in(reg) $i[$sidx],)*
                $($extra)*
                $(in($reg) $i[$idx],)*
                in("xmm1") $x[1], in("xmm2") $x[2], in("xmm3") $x[3],
                in("xmm4") $x[4], in("xmm5") $x[5], in("xmm6") $x[6], in("xmm7") $x[7],
                inlateout("xmm0") $x[0] => $rf,
                lateout("rax") $ri,
                clobber_abi("C"),
            )
        }
    };
}

/// The aarch64 version: `x0`-`x7`, then one stack slot (16-byte aligned);
/// `v0`-`v7`; `bl`.
#[doc(hidden)]
#[macro_export]
#[cfg(target_arch = "aarch64")]
macro_rules! __hotcall_asm_call {
    ($f:path; $regs:expr; $ni:expr; $nf:expr; $($extra:tt)*) => {{
        let regs: $crate::__private::RegFile = $regs;
        let i = &regs.int;
        let x = &regs.float;
        let (ret_int, ret_float): (u64, u64);
        // SAFETY (for every arm): the caller of this macro guarantees that
        // `$f` is C-ABI code for arguments of this shape.
        match ($ni, $nf != 0) {
            (0, false) => $crate::__hotcall_asm_call!(@a64 $f, i, x, ret_int, ret_float, [$($extra)*], [], [], [], [], ()),
            (1, false) => $crate::__hotcall_asm_call!(@a64 $f, i, x, ret_int, ret_float, [$($extra)*], ["x0" 0], [], [], [], ()),
            (2, false) => $crate::__hotcall_asm_call!(@a64 $f, i, x, ret_int, ret_float, [$($extra)*], ["x0" 0 "x1" 1], [], [], [], ()),
            (3, false) => $crate::__hotcall_asm_call!(@a64 $f, i, x, ret_int, ret_float, [$($extra)*], ["x0" 0 "x1" 1 "x2" 2], [], [], [], ()),
            (4, false) => $crate::__hotcall_asm_call!(@a64 $f, i, x, ret_int, ret_float, [$($extra)*], ["x0" 0 "x1" 1 "x2" 2 "x3" 3], [], [], [], ()),
            (5, false) => $crate::__hotcall_asm_call!(@a64 $f, i, x, ret_int, ret_float, [$($extra)*], ["x0" 0 "x1" 1 "x2" 2 "x3" 3 "x4" 4], [], [], [], ()),
            (6, false) => $crate::__hotcall_asm_call!(@a64 $f, i, x, ret_int, ret_float, [$($extra)*], ["x0" 0 "x1" 1 "x2" 2 "x3" 3 "x4" 4 "x5" 5], [], [], [], ()),
            (7, false) => $crate::__hotcall_asm_call!(@a64 $f, i, x, ret_int, ret_float, [$($extra)*], ["x0" 0 "x1" 1 "x2" 2 "x3" 3 "x4" 4 "x5" 5 "x6" 6], [], [], [], ()),
            (8, false) => $crate::__hotcall_asm_call!(@a64 $f, i, x, ret_int, ret_float, [$($extra)*], ["x0" 0 "x1" 1 "x2" 2 "x3" 3 "x4" 4 "x5" 5 "x6" 6 "x7" 7], [], [], [], ()),
            (9, false) => $crate::__hotcall_asm_call!(@a64 $f, i, x, ret_int, ret_float, [$($extra)*], ["x0" 0 "x1" 1 "x2" 2 "x3" 3 "x4" 4 "x5" 5 "x6" 6 "x7" 7], ["str {s0}, [sp, #-16]!"], ["add sp, sp, #16"], [s0 8], ()),
            (0, true) => $crate::__hotcall_asm_call!(@a64 $f, i, x, ret_int, ret_float, [$($extra)*], [], [], [], [], floats),
            (1, true) => $crate::__hotcall_asm_call!(@a64 $f, i, x, ret_int, ret_float, [$($extra)*], ["x0" 0], [], [], [], floats),
            (2, true) => $crate::__hotcall_asm_call!(@a64 $f, i, x, ret_int, ret_float, [$($extra)*], ["x0" 0 "x1" 1], [], [], [], floats),
            (3, true) => $crate::__hotcall_asm_call!(@a64 $f, i, x, ret_int, ret_float, [$($extra)*], ["x0" 0 "x1" 1 "x2" 2], [], [], [], floats),
            (4, true) => $crate::__hotcall_asm_call!(@a64 $f, i, x, ret_int, ret_float, [$($extra)*], ["x0" 0 "x1" 1 "x2" 2 "x3" 3], [], [], [], floats),
            (5, true) => $crate::__hotcall_asm_call!(@a64 $f, i, x, ret_int, ret_float, [$($extra)*], ["x0" 0 "x1" 1 "x2" 2 "x3" 3 "x4" 4], [], [], [], floats),
            (6, true) => $crate::__hotcall_asm_call!(@a64 $f, i, x, ret_int, ret_float, [$($extra)*], ["x0" 0 "x1" 1 "x2" 2 "x3" 3 "x4" 4 "x5" 5], [], [], [], floats),
            (7, true) => $crate::__hotcall_asm_call!(@a64 $f, i, x, ret_int, ret_float, [$($extra)*], ["x0" 0 "x1" 1 "x2" 2 "x3" 3 "x4" 4 "x5" 5 "x6" 6], [], [], [], floats),
            (8, true) => $crate::__hotcall_asm_call!(@a64 $f, i, x, ret_int, ret_float, [$($extra)*], ["x0" 0 "x1" 1 "x2" 2 "x3" 3 "x4" 4 "x5" 5 "x6" 6 "x7" 7], [], [], [], floats),
            (9, true) => $crate::__hotcall_asm_call!(@a64 $f, i, x, ret_int, ret_float, [$($extra)*], ["x0" 0 "x1" 1 "x2" 2 "x3" 3 "x4" 4 "x5" 5 "x6" 6 "x7" 7], ["str {s0}, [sp, #-16]!"], ["add sp, sp, #16"], [s0 8], floats),
            _ => unreachable!("more than 9 integer arguments"),
        }
        (ret_int, ret_float)
    }};
    (@a64 $f:path, $i:ident, $x:ident, $ri:ident, $rf:ident, [$($extra:tt)*], [$($reg:tt $idx:tt)*], [$($pre:tt),*], [$($post:tt),*], [$($s:ident $sidx:tt)*], ()) => {
        // SAFETY: `$f` is C-ABI code for this shape (the macro's caller
        // guarantees it); the operands follow the ABI (module docs).
        unsafe {
            core::arch::asm!(
                $($pre,)*
                "bl {f}",
                $($post,)*
                f = sym $f,
                $($s = in(reg) $i[$sidx],)*
                $($extra)*
                $(in($reg) $i[$idx],)*
                lateout("x0") $ri,
                lateout("v0") $rf,
                clobber_abi("C"),
            )
        }
    };
    (@a64 $f:path, $i:ident, $x:ident, $ri:ident, $rf:ident, [$($extra:tt)*], [$($reg:tt $idx:tt)*], [$($pre:tt),*], [$($post:tt),*], [$($s:ident $sidx:tt)*], floats) => {
        // SAFETY: as above.
        unsafe {
            core::arch::asm!(
                $($pre,)*
                "bl {f}",
                $($post,)*
                f = sym $f,
                $($s = in(reg) $i[$sidx],)*
                $($extra)*
                $(in($reg) $i[$idx],)*
                in("v1") $x[1], in("v2") $x[2], in("v3") $x[3],
                in("v4") $x[4], in("v5") $x[5], in("v6") $x[6], in("v7") $x[7],
                inlateout("v0") $x[0] => $rf,
                lateout("x0") $ri,
                clobber_abi("C"),
            )
        }
    };
}
