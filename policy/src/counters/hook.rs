//! The bridges generated code calls to count: `preserve_all` on the outside,
//! the C ABI on the inside.
//!
//! A thunk's hook call must not disturb the thunk: its arguments are live
//! in registers around the call, and its hit paths must keep their shape
//! (no callee-saved registers to restore before a tail jump). So the thunk
//! declares the hooks with Cranelift's `preserve_all` calling convention,
//! whose call sites clobber nothing, and these naked bridges keep that
//! promise: they save every register a C function may clobber (integer and
//! vector), call the Rust recorder with the two arguments still in place,
//! restore everything and return. They are also valid C functions (they
//! take their arguments in the C registers and preserve a superset).
//!
//! x86-64 runs here; the aarch64 bridge is compiled only on aarch64 hosts.

use super::local::{record_call, record_miss};

/// `preserve_all` bridge to [`record_call`] (the counting thunk's entry
/// hook). Generated code calls it with `(cookie, target)`.
///
/// # Safety
/// Callable like `extern "C" fn(u64, u64)` with a 16-byte aligned stack at
/// the call; preserves every general-purpose and vector register.
#[cfg(target_arch = "x86_64")]
#[unsafe(naked)]
pub unsafe extern "C" fn record_call_preserve_all(cookie: u64, target: u64) {
    core::arch::naked_asm!(
        x86_64_bridge!(),
        recorder = sym record_call,
    )
}

/// `preserve_all` bridge to [`record_miss`] (the lean thunk's miss hook).
///
/// # Safety
/// As for [`record_call_preserve_all`].
#[cfg(target_arch = "x86_64")]
#[unsafe(naked)]
pub unsafe extern "C" fn record_miss_preserve_all(cookie: u64, target: u64) {
    core::arch::naked_asm!(
        x86_64_bridge!(),
        recorder = sym record_miss,
    )
}

/// Saves rax, rcx, rdx, rsi, rdi, r8-r11 and xmm0-15 (everything SysV lets
/// a callee clobber), aligns the stack, calls `{recorder}` with rdi/rsi
/// untouched, and restores.
#[cfg(target_arch = "x86_64")]
macro_rules! x86_64_bridge {
    () => {
        "push rbp
         mov rbp, rsp
         push rax
         push rcx
         push rdx
         push rsi
         push rdi
         push r8
         push r9
         push r10
         push r11
         and rsp, -16
         sub rsp, 256
         movaps [rsp + 0], xmm0
         movaps [rsp + 16], xmm1
         movaps [rsp + 32], xmm2
         movaps [rsp + 48], xmm3
         movaps [rsp + 64], xmm4
         movaps [rsp + 80], xmm5
         movaps [rsp + 96], xmm6
         movaps [rsp + 112], xmm7
         movaps [rsp + 128], xmm8
         movaps [rsp + 144], xmm9
         movaps [rsp + 160], xmm10
         movaps [rsp + 176], xmm11
         movaps [rsp + 192], xmm12
         movaps [rsp + 208], xmm13
         movaps [rsp + 224], xmm14
         movaps [rsp + 240], xmm15
         call {recorder}
         movaps xmm0, [rsp + 0]
         movaps xmm1, [rsp + 16]
         movaps xmm2, [rsp + 32]
         movaps xmm3, [rsp + 48]
         movaps xmm4, [rsp + 64]
         movaps xmm5, [rsp + 80]
         movaps xmm6, [rsp + 96]
         movaps xmm7, [rsp + 112]
         movaps xmm8, [rsp + 128]
         movaps xmm9, [rsp + 144]
         movaps xmm10, [rsp + 160]
         movaps xmm11, [rsp + 176]
         movaps xmm12, [rsp + 192]
         movaps xmm13, [rsp + 208]
         movaps xmm14, [rsp + 224]
         movaps xmm15, [rsp + 240]
         lea rsp, [rbp - 72]
         pop r11
         pop r10
         pop r9
         pop r8
         pop rdi
         pop rsi
         pop rdx
         pop rcx
         pop rax
         pop rbp
         ret"
    };
}
#[cfg(target_arch = "x86_64")]
use x86_64_bridge;

/// `preserve_all` bridge to [`record_call`] on aarch64.
///
/// # Safety
/// Callable like `extern "C" fn(u64, u64)`; preserves x0-x18, x29, x30 and
/// all 128 bits of v0-v31.
#[cfg(target_arch = "aarch64")]
#[unsafe(naked)]
pub unsafe extern "C" fn record_call_preserve_all(cookie: u64, target: u64) {
    core::arch::naked_asm!(aarch64_bridge!(), recorder = sym record_call)
}

/// `preserve_all` bridge to [`record_miss`] on aarch64.
///
/// # Safety
/// As for [`record_call_preserve_all`].
#[cfg(target_arch = "aarch64")]
#[unsafe(naked)]
pub unsafe extern "C" fn record_miss_preserve_all(cookie: u64, target: u64) {
    core::arch::naked_asm!(aarch64_bridge!(), recorder = sym record_miss)
}

/// Saves the frame record, x0-x18 and q0-q31, calls `{recorder}` with x0/x1
/// untouched, restores. The stack stays 16-byte aligned throughout.
#[cfg(target_arch = "aarch64")]
macro_rules! aarch64_bridge {
    () => {
        "stp x29, x30, [sp, #-16]!
         mov x29, sp
         stp x0, x1, [sp, #-16]!
         stp x2, x3, [sp, #-16]!
         stp x4, x5, [sp, #-16]!
         stp x6, x7, [sp, #-16]!
         stp x8, x9, [sp, #-16]!
         stp x10, x11, [sp, #-16]!
         stp x12, x13, [sp, #-16]!
         stp x14, x15, [sp, #-16]!
         stp x16, x17, [sp, #-16]!
         stp x18, xzr, [sp, #-16]!
         sub sp, sp, #512
         stp q0, q1, [sp, #0]
         stp q2, q3, [sp, #32]
         stp q4, q5, [sp, #64]
         stp q6, q7, [sp, #96]
         stp q8, q9, [sp, #128]
         stp q10, q11, [sp, #160]
         stp q12, q13, [sp, #192]
         stp q14, q15, [sp, #224]
         stp q16, q17, [sp, #256]
         stp q18, q19, [sp, #288]
         stp q20, q21, [sp, #320]
         stp q22, q23, [sp, #352]
         stp q24, q25, [sp, #384]
         stp q26, q27, [sp, #416]
         stp q28, q29, [sp, #448]
         stp q30, q31, [sp, #480]
         bl {recorder}
         ldp q0, q1, [sp, #0]
         ldp q2, q3, [sp, #32]
         ldp q4, q5, [sp, #64]
         ldp q6, q7, [sp, #96]
         ldp q8, q9, [sp, #128]
         ldp q10, q11, [sp, #160]
         ldp q12, q13, [sp, #192]
         ldp q14, q15, [sp, #224]
         ldp q16, q17, [sp, #256]
         ldp q18, q19, [sp, #288]
         ldp q20, q21, [sp, #320]
         ldp q22, q23, [sp, #352]
         ldp q24, q25, [sp, #384]
         ldp q26, q27, [sp, #416]
         ldp q28, q29, [sp, #448]
         ldp q30, q31, [sp, #480]
         add sp, sp, #512
         ldp x18, xzr, [sp], #16
         ldp x16, x17, [sp], #16
         ldp x14, x15, [sp], #16
         ldp x12, x13, [sp], #16
         ldp x10, x11, [sp], #16
         ldp x8, x9, [sp], #16
         ldp x6, x7, [sp], #16
         ldp x4, x5, [sp], #16
         ldp x2, x3, [sp], #16
         ldp x0, x1, [sp], #16
         ldp x29, x30, [sp], #16
         ret"
    };
}
#[cfg(target_arch = "aarch64")]
use aarch64_bridge;

/// Addresses of the two bridges for the code generator: `(entry hook, miss
/// hook)`, or `None` on an ISA without bridges.
pub fn hook_addresses() -> Option<(u64, u64)> {
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    {
        Some((
            record_call_preserve_all as *const () as u64,
            record_miss_preserve_all as *const () as u64,
        ))
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        None
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use core::arch::x86_64::{__m128i, _mm_set_epi64x, _mm_storeu_si128};

    use super::*;
    use crate::counters::{CounterConfig, SiteCounters};

    fn lanes(v: __m128i) -> [u64; 2] {
        let mut out = [0u64; 2];
        // SAFETY: `out` is 16 writable bytes; unaligned store.
        unsafe { _mm_storeu_si128(out.as_mut_ptr().cast(), v) };
        out
    }

    /// Calls a bridge with every caller-saved register holding a distinct
    /// value and checks that every one comes back unchanged (what
    /// `preserve_all` call sites in generated code rely on), and that the
    /// call was counted.
    #[test]
    fn the_bridges_preserve_every_register() {
        let config = CounterConfig::default();
        let site = SiteCounters::new(config);
        site.begin_epoch(&[0xaaaa], config);
        for (bridge, hit) in [(0, true), (1, false)] {
            let cookie = site.cookie().value();
            let target = 0xaaaa_u64;
            let gpr_in = [
                0x1111_u64, 0x2222, 0x3333, target, cookie, 0x8888, 0x9999, 0xa0a0, 0xb0b0,
            ];
            let [
                mut rax,
                mut rcx,
                mut rdx,
                mut rsi,
                mut rdi,
                mut r8,
                mut r9,
                mut r10,
                mut r11,
            ] = gpr_in;
            // SAFETY: SSE2 is part of the x86-64 baseline.
            let x = |k: i64| unsafe { _mm_set_epi64x(k * 0x0101_0101 + 7, -k - 3) };
            let xmm_in: [__m128i; 16] = core::array::from_fn(|k| x(k as i64));
            let [
                mut x0,
                mut x1,
                mut x2,
                mut x3,
                mut x4,
                mut x5,
                mut x6,
                mut x7,
                mut x8,
                mut x9,
                mut x10,
                mut x11,
                mut x12,
                mut x13,
                mut x14,
                mut x15,
            ] = xmm_in;
            macro_rules! call_bridge {
                ($f:path) => {
                    // SAFETY: the bridge takes (cookie, target) in rdi/rsi
                    // like a C function, and every register it could
                    // touch is declared as an in/out operand; the stack is
                    // aligned for a call (no `nostack`).
                    unsafe {
                        core::arch::asm!(
                            "call {f}",
                            f = sym $f,
                            inout("rax") rax, inout("rcx") rcx, inout("rdx") rdx,
                            inout("rsi") rsi, inout("rdi") rdi, inout("r8") r8,
                            inout("r9") r9, inout("r10") r10, inout("r11") r11,
                            inout("xmm0") x0, inout("xmm1") x1, inout("xmm2") x2,
                            inout("xmm3") x3, inout("xmm4") x4, inout("xmm5") x5,
                            inout("xmm6") x6, inout("xmm7") x7, inout("xmm8") x8,
                            inout("xmm9") x9, inout("xmm10") x10, inout("xmm11") x11,
                            inout("xmm12") x12, inout("xmm13") x13, inout("xmm14") x14,
                            inout("xmm15") x15,
                        )
                    }
                };
            }
            if bridge == 0 {
                call_bridge!(record_call_preserve_all);
            } else {
                call_bridge!(record_miss_preserve_all);
            }
            assert_eq!([rax, rcx, rdx, rsi, rdi, r8, r9, r10, r11], gpr_in);
            let out = [
                x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11, x12, x13, x14, x15,
            ];
            for (k, (o, i)) in out.iter().zip(&xmm_in).enumerate() {
                assert_eq!(lanes(*o), lanes(*i), "xmm{k}");
            }
            let c = site.snapshot();
            if hit {
                assert_eq!(
                    (c.calls, c.hits.clone()),
                    (1, vec![1]),
                    "record_call counted"
                );
            } else {
                assert_eq!(c.misses, 1, "record_miss counted");
            }
        }
    }
}
