//! The publication protocols: how `hotcall` changes what running callers
//! reach without stopping them, and when it may free or rewrite what they
//! reached before. Both kinds of site use them, and the loom model in
//! `tests/loom_publish.rs` checks this same code under loom
//! ([`crate::sync`]).
//!
//! Every atomic and every crossbeam-epoch call of the protocols is in this
//! module; the sites only say what a word leads to and what freeing or
//! patching means (closures and the [`SlotTable`] trait). Nothing here
//! knows about code.
//!
//! * [`EntryCell`] ([`entry`](self)): the one word a site's call path
//!   reads, published with one `Release` store; [`EntryCell::replace`]
//!   retires what the old word led to through [`retire`]. JIT sites publish
//!   every new thunk this way; Patch sites switch between their thunk's
//!   entries and a bypass with [`EntryCell::store`] (nothing is freed) and
//!   unpublish the thunk with [`EntryCell::replace`] when they are dropped.
//! * [`GracePeriod`]: a flag that becomes true once every thread pinned
//!   when it was started has unpinned. [`retire`] and [`GracePeriod`] are
//!   the two uses of crossbeam-epoch's deferred closures.
//! * [`Retarget`] over a [`SlotTable`]: the Patch sequence of one thunk's
//!   slots (disable, grace period, patch, serialize, enable), with its
//!   invariants kept in one place.
//!
//! # What every protocol relies on
//!
//! A caller pins (a crossbeam-epoch [`Guard`](crossbeam_epoch::Guard))
//! before it reads anything a publisher writes ([`EntryCell::load`] takes
//! the guard), and stays pinned until it is done with what it read: for a
//! thunk, until its call through the thunk has returned, the target's
//! return into the thunk included. A grace period started after a word was
//! changed therefore outlasts every caller that could have read the old
//! word.

mod entry;
mod grace;
mod retarget;

pub use self::entry::{EntryCell, retire};
pub use self::grace::{GracePeriod, collect};
pub use self::retarget::{Retarget, Retargeted, SlotState, SlotTable};
