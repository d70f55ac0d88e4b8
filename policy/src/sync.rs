//! The atomics of the publication protocols (`crate::publish`): std's in a
//! normal build, loom's under `--cfg loom`, so the code that runs in the
//! engine is the code the loom model checks (`tests/loom_publish.rs`).
//!
//! crossbeam-epoch switches to loom by itself under `--cfg crossbeam_loom`
//! (with its `loom` feature, which this crate turns on under `cfg(loom)`);
//! the two flags go together.

#[cfg(all(loom, not(crossbeam_loom)))]
compile_error!(
    "--cfg loom needs --cfg crossbeam_loom as well: the model runs crossbeam-epoch under loom \
     (RUSTFLAGS=\"--cfg loom --cfg crossbeam_loom\")"
);

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
