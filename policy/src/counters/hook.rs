//! The bridges generated code reaches to count: `preserve_all` on the
//! outside, the C ABI on the inside.
//!
//! A thunk's hook call must not disturb the thunk: its arguments are live
//! in registers around the call, and its hit paths must keep their shape.
//! So the thunk declares the hook with Cranelift's `preserve_all` calling
//! convention (call sites clobber nothing) and passes arguments where they
//! already are. The call goes to a per-site *stub* in code memory
//! (`hotcall_jit::IsaBackend::hook_stub`) that knows where that site's
//! thunks pass the target, puts the site's cookie and the target on the
//! stack, and jumps here:
//!
//! * x86-64: on entry `[rsp]` is the target, `[rsp+8]` the cookie and
//!   `[rsp+16]` the return address into the thunk. The bridge drops the
//!   two words before returning.
//! * aarch64: on entry `[sp]` is the cookie, `[sp+8]` the target, and
//!   `[sp+16]`, `[sp+24]` the caller's x16 and x17, which the stub used;
//!   the bridge drops the two words and restores x16 and x17.
//!
//! The bridges save every register a C function may clobber (integer and
//! all 128 bits of every vector register), call the Rust recorder with
//! `(cookie, target)`, restore everything and return to the thunk.
//!
//! x86-64 runs here; the aarch64 bridge is compiled only on aarch64 hosts.

use super::local::{record_call, record_miss, record_sampled_miss, sampling_tls_offset};

/// Bridge to [`record_call`] (the counting thunk's entry hook).
///
/// # Safety
/// Reached only by a jump from a hook stub, in the stub's state (see the
/// module docs).
#[cfg(target_arch = "x86_64")]
#[unsafe(naked)]
pub unsafe extern "C" fn record_call_bridge() {
    core::arch::naked_asm!(x86_64_bridge!(), recorder = sym record_call)
}

/// Bridge to [`record_miss`] (the lean thunk's miss hook).
///
/// # Safety
/// As for [`record_call_bridge`].
#[cfg(target_arch = "x86_64")]
#[unsafe(naked)]
pub unsafe extern "C" fn record_miss_bridge() {
    core::arch::naked_asm!(x86_64_bridge!(), recorder = sym record_miss)
}

/// Saves rax, rcx, rdx, rsi, rdi, r8-r11 and xmm0-15 (everything SysV lets
/// a callee clobber), aligns the stack, calls `{recorder}(cookie, target)`
/// with the two words the stub pushed, restores, drops those words and
/// returns (or, `tail`, jumps to the target).
#[cfg(target_arch = "x86_64")]
macro_rules! x86_64_bridge {
    () => {
        concat!(
            x86_64_bridge!(body),
            "
         lea rsp, [rsp + 16]
         ret"
        )
    };
    (body) => {
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
         mov rsi, [rbp + 8]
         mov rdi, [rbp + 16]
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
         pop rbp"
    };
}
#[cfg(target_arch = "x86_64")]
use x86_64_bridge;

/// Bridge to [`record_miss`] for a miss that tail-jumps: after recording
/// it jumps to the target (the frame of the thunk is already gone, so the
/// target returns to the thunk's caller). Only the registers that carry
/// arguments into the target are saved (rdi, rsi, rdx, rcx, r8, r9, rax,
/// which carries a variadic callee's vector count, and xmm0-7): everything
/// else is dead at a call boundary. It jumps through r11, which the C ABI
/// lets any call clobber and passes nothing in.
///
/// # Safety
/// Reached only by a jump from a miss stub, in the stub's state (see the
/// module docs), with the thunk's frame torn down.
#[cfg(target_arch = "x86_64")]
#[unsafe(naked)]
pub unsafe extern "C" fn record_miss_tail_bridge() {
    core::arch::naked_asm!(x86_64_tail_bridge!(), recorder = sym record_miss)
}

/// [`record_miss_tail_bridge`] for sampling miss stubs, which reach it only
/// for the misses their thread's countdown selects: records the sample.
///
/// # Safety
/// As for [`record_miss_tail_bridge`].
#[cfg(target_arch = "x86_64")]
#[unsafe(naked)]
pub unsafe extern "C" fn record_sampled_miss_tail_bridge() {
    core::arch::naked_asm!(x86_64_tail_bridge!(), recorder = sym record_sampled_miss)
}

#[cfg(target_arch = "x86_64")]
macro_rules! x86_64_tail_bridge {
    () => {
        "push rbp
         mov rbp, rsp
         push rdi
         push rsi
         push rdx
         push rcx
         push r8
         push r9
         push rax
         and rsp, -16
         sub rsp, 128
         movaps [rsp + 0], xmm0
         movaps [rsp + 16], xmm1
         movaps [rsp + 32], xmm2
         movaps [rsp + 48], xmm3
         movaps [rsp + 64], xmm4
         movaps [rsp + 80], xmm5
         movaps [rsp + 96], xmm6
         movaps [rsp + 112], xmm7
         mov rsi, [rbp + 8]
         mov rdi, [rbp + 16]
         call {recorder}
         movaps xmm0, [rsp + 0]
         movaps xmm1, [rsp + 16]
         movaps xmm2, [rsp + 32]
         movaps xmm3, [rsp + 48]
         movaps xmm4, [rsp + 64]
         movaps xmm5, [rsp + 80]
         movaps xmm6, [rsp + 96]
         movaps xmm7, [rsp + 112]
         lea rsp, [rbp - 56]
         pop rax
         pop r9
         pop r8
         pop rcx
         pop rdx
         pop rsi
         pop rdi
         pop rbp
         mov r11, [rsp]
         lea rsp, [rsp + 16]
         jmp r11"
    };
}
#[cfg(target_arch = "x86_64")]
use x86_64_tail_bridge;

/// Bridge to [`record_call`] on aarch64.
///
/// # Safety
/// Reached only by a branch from a hook stub, in the stub's state (see the
/// module docs).
#[cfg(target_arch = "aarch64")]
#[unsafe(naked)]
pub unsafe extern "C" fn record_call_bridge() {
    core::arch::naked_asm!(aarch64_bridge!(), recorder = sym record_call)
}

/// Bridge to [`record_miss`] on aarch64.
///
/// # Safety
/// As for [`record_call_bridge`].
#[cfg(target_arch = "aarch64")]
#[unsafe(naked)]
pub unsafe extern "C" fn record_miss_bridge() {
    core::arch::naked_asm!(aarch64_bridge!(), recorder = sym record_miss)
}

/// Saves the frame record, x0-x18 and q0-q31, calls `{recorder}(cookie,
/// target)` with the two words the stub pushed, restores, drops those words
/// and restores the x16/x17 the stub saved. The stack stays 16-byte aligned
/// throughout.
#[cfg(target_arch = "aarch64")]
macro_rules! aarch64_bridge {
    () => {
        concat!(
            aarch64_bridge!(body),
            "
         add sp, sp, #16
         ldp x16, x17, [sp], #16
         ret"
        )
    };
    (tail) => {
        concat!(
            aarch64_bridge!(body),
            "
         ldr x16, [sp, #8]
         add sp, sp, #32
         br x16"
        )
    };
    (body) => {
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
         ldp x0, x1, [x29, #16]
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
         ldp x29, x30, [sp], #16"
    };
}
#[cfg(target_arch = "aarch64")]
use aarch64_bridge;

/// Bridge to [`record_miss`] for a miss that tail-jumps, on aarch64: after
/// recording it branches to the target through x16 (an intra-procedure-call
/// scratch register, which AAPCS64 lets any call clobber); x17 is not
/// restored either.
///
/// # Safety
/// Reached only by a branch from a miss stub, in the stub's state (see the
/// module docs), with the thunk's frame torn down.
#[cfg(target_arch = "aarch64")]
#[unsafe(naked)]
pub unsafe extern "C" fn record_miss_tail_bridge() {
    core::arch::naked_asm!(aarch64_bridge!(tail), recorder = sym record_miss)
}

/// Addresses of the bridges hook stubs jump to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bridges {
    /// Counts a call, returns to the thunk.
    pub entry: u64,
    /// Counts a miss, returns to the thunk.
    pub miss: u64,
    /// Counts a miss, jumps on to the target.
    pub miss_tail: u64,
    /// Sampled misses: the offset of the thread's miss countdown from the
    /// thread pointer, which the miss stubs decrement, and the bridge that
    /// records a sample and jumps on to the target. `None`: every miss is
    /// counted (aarch64, or TLS without a fixed offset).
    pub sampled_miss_tail: Option<(i32, u64)>,
}

/// The bridges of this ISA, or `None` on an ISA without them.
pub fn bridge_addresses() -> Option<Bridges> {
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    {
        #[cfg(target_arch = "x86_64")]
        let sampled_miss_tail = sampling_tls_offset()
            .map(|off| (off, record_sampled_miss_tail_bridge as *const () as u64));
        #[cfg(not(target_arch = "x86_64"))]
        let sampled_miss_tail = {
            let _ = sampling_tls_offset;
            let _ = record_sampled_miss;
            None
        };
        Some(Bridges {
            entry: record_call_bridge as *const () as u64,
            miss: record_miss_bridge as *const () as u64,
            miss_tail: record_miss_tail_bridge as *const () as u64,
            sampled_miss_tail,
        })
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

    /// Calls a bridge through a stub with every caller-saved register
    /// holding a distinct value and checks that every one comes back
    /// unchanged (what `preserve_all` call sites in generated code rely
    /// on), that the stack is balanced (the asm would crash otherwise), and
    /// that the call was counted for the cookie's site.
    #[test]
    fn the_bridges_preserve_every_register() {
        let config = CounterConfig::default();
        let site = SiteCounters::new(config);
        site.begin_epoch(&[0xaaaa], config);
        for (bridge, hit) in [(0, true), (1, false)] {
            let cookie = site.cookie().value();
            let target = 0xaaaa_u64;
            let gpr_in = [
                0x1111_u64, 0x2222, 0x3333, 0x4444, 0x5555, 0x8888, 0x9999, 0xa0a0, 0xb0b0,
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
                    // SAFETY: the asm calls a local copy of a hook stub
                    // (push the cookie and the target, jump to the bridge)
                    // as generated code does; every register the bridge
                    // could touch is an in/out operand, and the stack is
                    // aligned for a call (no `nostack`).
                    unsafe {
                        core::arch::asm!(
                            "call 2f",
                            "jmp 3f",
                            "2:",
                            "push r12",
                            "push r13",
                            "jmp {f}",
                            "3:",
                            f = sym $f,
                            in("r12") cookie,
                            in("r13") target,
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
                call_bridge!(record_call_bridge);
            } else {
                call_bridge!(record_miss_bridge);
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

    /// A target that returns at once and touches nothing.
    #[unsafe(naked)]
    extern "C" fn ret_only() {
        core::arch::naked_asm!("ret")
    }

    /// The tail bridge: through a stub entered with the thunk's frame gone,
    /// it counts the miss and jumps to the target with every argument
    /// register (and rax) as the thunk left them.
    #[test]
    fn the_tail_bridge_counts_and_jumps_on_with_registers_intact() {
        let config = CounterConfig::default();
        let site = SiteCounters::new(config);
        site.begin_epoch(&[], config);
        let cookie = site.cookie().value();
        let target = ret_only as *const () as u64;
        let gpr_in = [0x11_u64, 0x22, 0x33, 0x44, 0x55, 0x88, 0x99];
        let [mut rax, mut rcx, mut rdx, mut rsi, mut rdi, mut r8, mut r9] = gpr_in;
        // SAFETY: SSE2 is part of the x86-64 baseline.
        let x = |k: i64| unsafe { _mm_set_epi64x(k * 0x0303_0303 + 1, -k - 9) };
        let xmm_in: [__m128i; 8] = core::array::from_fn(|k| x(k as i64));
        let [
            mut x0,
            mut x1,
            mut x2,
            mut x3,
            mut x4,
            mut x5,
            mut x6,
            mut x7,
        ] = xmm_in;
        // SAFETY: a local copy of a miss stub (push the cookie and the
        // target, jump to the bridge), entered by a call as if the thunk had
        // torn down its frame and jumped; the bridge jumps to `ret_only`,
        // which returns to the `jmp 3f`. Every register the bridge could
        // touch is an operand or clobbered; the stack is aligned for a call.
        unsafe {
            core::arch::asm!(
                "call 2f",
                "jmp 3f",
                "2:",
                "push r12",
                "push r13",
                "jmp {f}",
                "3:",
                f = sym record_miss_tail_bridge,
                in("r12") cookie,
                in("r13") target,
                inout("rax") rax, inout("rcx") rcx, inout("rdx") rdx,
                inout("rsi") rsi, inout("rdi") rdi, inout("r8") r8,
                inout("r9") r9, out("r10") _, out("r11") _,
                inout("xmm0") x0, inout("xmm1") x1, inout("xmm2") x2,
                inout("xmm3") x3, inout("xmm4") x4, inout("xmm5") x5,
                inout("xmm6") x6, inout("xmm7") x7,
                out("xmm8") _, out("xmm9") _, out("xmm10") _, out("xmm11") _,
                out("xmm12") _, out("xmm13") _, out("xmm14") _, out("xmm15") _,
            )
        }
        assert_eq!([rax, rcx, rdx, rsi, rdi, r8, r9], gpr_in);
        for (k, (o, i)) in [x0, x1, x2, x3, x4, x5, x6, x7]
            .iter()
            .zip(&xmm_in)
            .enumerate()
        {
            assert_eq!(lanes(*o), lanes(*i), "xmm{k}");
        }
        let c = site.snapshot();
        assert_eq!(
            (c.misses, c.candidate(target)),
            (1, 1),
            "the miss was counted"
        );
    }
}
