//! Instruction-cache maintenance on aarch64.
//!
//! Arm ARM (DDI 0487), B2.4.4 "Concurrent modification and execution of
//! instructions" and the cache-maintenance rules: after writing
//! instructions through the data side, software must
//!
//! 1. `DC CVAU` every data-cache line of the range (clean to the point of
//!    unification, where the instruction side can see it),
//! 2. `DSB ISH` so the cleans complete before the invalidations,
//! 3. `IC IVAU` every instruction-cache line of the range (invalidate to the
//!    point of unification, broadcast to the inner-shareable domain),
//! 4. `DSB ISH` so the invalidations complete,
//! 5. `ISB` on every core that will execute the code, so none runs stale
//!    prefetched instructions. For this core the `ISB` below does it; for
//!    the others `crate::coherence::serialize_all_cores` issues
//!    `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE)`, which runs
//!    a context-synchronizing event on every core running this process.
//!
//! The line sizes come from `CTR_EL0` (readable at EL0 on Linux). hotcall
//! writes code through a second, writable mapping of the same memory; the
//! maintenance is by virtual address, so it is applied to the *executable*
//! addresses, which is what `IC IVAU` needs (the data cache is physically
//! tagged, so cleaning through either alias is equivalent).
//!
//! This machine has no aarch64 hardware: the code compiles only for aarch64
//! hosts, and emulators (qemu) do not model incoherent caches, so a missing
//! step would not show in emulated tests. It follows the sequence of the
//! Linux kernel's `__flush_icache_range` and of LLVM's `__clear_cache`.

/// Makes `len` bytes written at `addr` visible to instruction fetch.
#[cfg(target_arch = "aarch64")]
pub fn flush(addr: usize, len: usize) {
    use std::arch::asm;
    if len == 0 {
        return;
    }
    let ctr: u64;
    // SAFETY: reading CTR_EL0 has no side effects and Linux enables EL0
    // access to it (SCTLR_EL1.UCT) on every supported kernel.
    unsafe { asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack)) };
    let dline = 4usize << ((ctr >> 16) & 0xf);
    let iline = 4usize << (ctr & 0xf);
    let end = addr + len;
    let mut p = addr & !(dline - 1);
    while p < end {
        // SAFETY: `p` is within a mapped range (the caller's code); DC CVAU
        // only cleans cache lines and cannot fault on a mapped address.
        unsafe { asm!("dc cvau, {}", in(reg) p, options(nostack)) };
        p += dline;
    }
    // SAFETY: barriers have no memory-safety preconditions.
    unsafe { asm!("dsb ish", options(nostack)) };
    let mut p = addr & !(iline - 1);
    while p < end {
        // SAFETY: as for DC CVAU above; IC IVAU only invalidates.
        unsafe { asm!("ic ivau, {}", in(reg) p, options(nostack)) };
        p += iline;
    }
    // SAFETY: barriers have no memory-safety preconditions.
    unsafe { asm!("dsb ish", "isb", options(nostack)) };
}

/// Off aarch64 hosts there is no aarch64 code to run; nothing to do.
#[cfg(not(target_arch = "aarch64"))]
pub fn flush(_addr: usize, _len: usize) {}
