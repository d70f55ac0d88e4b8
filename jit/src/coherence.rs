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
//! only the serialization guarantees no core still holds its bytes.

use std::sync::OnceLock;

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
