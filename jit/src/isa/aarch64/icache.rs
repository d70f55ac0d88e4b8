//! Instruction-cache maintenance on aarch64.
//!
//! Arm ARM (DDI 0487), "Concurrent modification and execution of
//! instructions" and the cache-maintenance rules for instruction caches
//! (section numbers differ between issues; docs/isa/aarch64.md): after writing
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
//! The instructions live in `maintenance.rs` as encoded words, compiled on
//! every host: on aarch64 hosts `flush` calls them (emitted below with
//! `global_asm!`), and the emulated tests (`hotcall-emu`) run the same
//! words under qemu after writing code. qemu does not model incoherent
//! caches, so those tests show the routine runs and returns on aarch64
//! (valid encodings, EL0-accessible `CTR_EL0`, loop bounds), not that a
//! missing step would fail. It follows the sequence of the Linux kernel's
//! `__flush_icache_range` and of LLVM's `__clear_cache`.

// The routine itself: the words of `maintenance::FLUSH_ROUTINE`, so the
// code that runs here is byte for byte the code the emulated tests run.
#[cfg(target_arch = "aarch64")]
macro_rules! emit_flush_routine {
    ($($i:literal)*) => {
        std::arch::global_asm!(
            ".pushsection .text.hotcall_aarch64_flush_icache,\"ax\",%progbits",
            ".balign 4",
            ".globl hotcall_aarch64_flush_icache",
            ".type hotcall_aarch64_flush_icache, %function",
            "hotcall_aarch64_flush_icache:",
            $(concat!(".inst {", stringify!($i), "}"),)*
            ".size hotcall_aarch64_flush_icache, . - hotcall_aarch64_flush_icache",
            ".popsection",
            $(const super::maintenance::FLUSH_ROUTINE[$i],)*
        );
    };
}

#[cfg(target_arch = "aarch64")]
emit_flush_routine!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23);

// Every word is emitted: the list above must cover the whole routine.
const _: () = assert!(super::maintenance::FLUSH_ROUTINE_LEN == 24);

#[cfg(target_arch = "aarch64")]
unsafe extern "C" {
    /// `maintenance::FLUSH_ROUTINE`.
    fn hotcall_aarch64_flush_icache(addr: usize, len: usize);
}

/// Makes `len` bytes written at `addr` visible to instruction fetch.
#[cfg(target_arch = "aarch64")]
pub fn flush(addr: usize, len: usize) {
    // SAFETY: the routine only reads CTR_EL0 (Linux enables EL0 access,
    // SCTLR_EL1.UCT) and runs cache maintenance by virtual address over
    // `[addr, addr + len)`, which the caller has just written, so it is
    // mapped; DC CVAU and IC IVAU cannot fault on a mapped address and
    // change no memory contents. It follows AAPCS64 and clobbers only
    // x0-x6 and the flags.
    unsafe { hotcall_aarch64_flush_icache(addr, len) }
}

/// Off aarch64 hosts there is no aarch64 code to run; nothing to do.
#[cfg(not(target_arch = "aarch64"))]
pub fn flush(_addr: usize, _len: usize) {}
