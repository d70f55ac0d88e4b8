//! Instruction-cache maintenance on x86-64: nothing to flush.
//!
//! Intel SDM vol. 3, 8.1.3 ("Handling Self- and Cross-Modifying Code"): the
//! processor snoops stores against its instruction caches and prefetch
//! queues, so new bytes become visible to fetch without explicit flushes.
//! The only remaining requirement for cross-modifying code is that each
//! executing processor serialize before running the new code, which
//! `crate::coherence::serialize_all_cores` provides for the whole process.

/// Makes `len` bytes written at `addr` visible to instruction fetch on this
/// core. A no-op on x86-64 (see the module docs).
pub fn flush(_addr: usize, _len: usize) {}
