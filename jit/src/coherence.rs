//! Making freshly written code safe to execute on every core.
//!
//! Two steps, in this order, before the code's address is published:
//! 1. [`flush_icache`] on the writing core: a no-op on x86-64 (coherent
//!    instruction fetch), the `DC CVAU`/`IC IVAU` dance on aarch64 (see the
//!    ISA folders' `icache.rs`).
//! 2. [`serialize_all_cores`]: every core that runs a thread of this process
//!    executes a context-synchronizing event, so no core can run stale,
//!    already-fetched bytes at that address. This is the serializing
//!    instruction that the Intel SDM asks of cross-modifying code, and the
//!    `ISB` the Arm ARM asks of every executing core. Linux provides it as
//!    `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE)`, after a
//!    one-time registration.
//!
//! Why this matters even for "new" code: hotcall reuses freed thunk memory,
//! and thunks share cache lines with their neighbours, so a core may have
//! fetched the old bytes (or the poison) at an address that now holds a new
//! thunk. The grace period guarantees no thread is *inside* the old code;
//! on aarch64 only the serialization guarantees no core still holds its
//! bytes.
//!
//! On x86-64 step 2 is off by default ([`SERIALIZE_BY_DEFAULT`]). hotcall
//! writes code only where no thread can be executing (never-used memory, or
//! memory freed after a grace period), and x86 instruction fetch snoops
//! stores: a store to a line held in any core's instruction cache or
//! pipeline invalidates it (the SDM's self-modifying-code detection, which
//! applies across cores). The SDM's serializing-instruction rule for
//! cross-modifying code covers code a core may be running *while* it is
//! modified, which hotcall never does. wasmtime makes the same choice (its
//! `pipeline_flush_mt` issues the membarrier on aarch64 only). The
//! membarrier costs about 15 us per publish on this project's 2-vCPU VM
//! (IPIs are VM exits), a quarter of the publish budget; engines can turn
//! it back on (`EngineConfig::serialize_cores`).

use std::sync::OnceLock;

/// Whether code memory serializes all cores after each write by default:
/// required on aarch64, not needed on x86-64 (see the module docs).
pub const SERIALIZE_BY_DEFAULT: bool = cfg!(target_arch = "aarch64");

use rustix::thread::{MembarrierCommand, membarrier};

/// Makes `len` bytes at executable address `addr` visible to instruction
/// fetch on this core.
pub fn flush_icache(addr: usize, len: usize) {
    #[cfg(target_arch = "aarch64")]
    crate::isa::aarch64::icache::flush(addr, len);
    #[cfg(not(target_arch = "aarch64"))]
    crate::isa::x86_64::icache::flush(addr, len);
}

/// Whether this process is registered for `SYNC_CORE` membarriers (the
/// registration is attempted once, on first use).
pub fn sync_core_available() -> bool {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    *REGISTERED
        .get_or_init(|| membarrier(MembarrierCommand::RegisterPrivateExpeditedSyncCore).is_ok())
}

/// Runs a serializing instruction on every core currently running a thread
/// of this process. Returns `false` if the kernel does not offer it (Linux
/// before 4.16, or a sandbox that filters `membarrier`), in which case the
/// caller relies on the hardware's coherence alone (sound in practice on
/// x86-64; on aarch64 a thread's next exception return or `ISB` does it).
pub fn serialize_all_cores() -> bool {
    sync_core_available() && membarrier(MembarrierCommand::PrivateExpeditedSyncCore).is_ok()
}
