//! The publish/retire protocol: one word that the call path reads, replaced
//! with one atomic store, and whatever the old word led to freed only after
//! an epoch grace period.
//!
//! `hotcall`'s JIT sites publish thunks through it (the word is the
//! thunk's entry address, the retired object its code); Patch sites switch
//! their entry with [`EntryCell::store`] and unpublish their thunk with
//! [`EntryCell::replace`]. The loom model in `tests/loom_publish.rs` checks
//! it with a caller inside the old object during the swap.
//!
//! Nothing here knows about code: the retired object is any `T`, and what
//! "free" means is the publisher's closure.
//!
//! # The protocol
//!
//! Caller: pin (a crossbeam-epoch [`Guard`]), [`EntryCell::load`], use what
//! the word leads to, for as long as it needs it (a thunk: until the
//! target has returned into it and the thunk has returned), then unpin.
//!
//! Publisher (one at a time, under the owner's lock):
//! [`EntryCell::replace`], which stores the new word (`Release`: what it
//! leads to was written before) and then [`retire`]s the old object: pin,
//! defer its free, flush. crossbeam runs the free only once every thread
//! that was pinned when it was deferred has unpinned; a thread that pins
//! later reads the new word.

use crossbeam_epoch::Guard;

use crate::sync::{AtomicUsize, Ordering};

/// The published word: 0 or the address of what the caller should use.
#[derive(Debug)]
pub struct EntryCell {
    word: AtomicUsize,
}

impl EntryCell {
    pub fn new(word: usize) -> Self {
        EntryCell {
            word: AtomicUsize::new(word),
        }
    }

    /// The call path's read. `_pinned` must be held until the caller is
    /// done with whatever the word leads to; taking it here makes the
    /// "pin before you load" half of the protocol a type requirement.
    #[inline(always)]
    pub fn load(&self, _pinned: &Guard) -> usize {
        // Acquire pairs with the Release in `store`: what the word leads
        // to was written before it was published.
        self.word.load(Ordering::Acquire)
    }

    /// The current word, for the publisher (under its lock) and for
    /// statistics; not a licence to use what it leads to.
    pub fn peek(&self) -> usize {
        self.word.load(Ordering::Acquire)
    }

    /// Publishes `word` without retiring anything. Whatever the word leads
    /// to must be fully written (and, for code, made executable) first.
    pub fn store(&self, word: usize) {
        self.word.store(word, Ordering::Release);
    }

    /// The publisher's step: publishes `word`, then retires `old`, the
    /// object the previous word led to (if any), so that `free(old)` runs
    /// after a grace period (see [`retire`]).
    ///
    /// `old` must be unreachable once `word` is stored: the previous word
    /// was the only published way to it.
    pub fn replace<T: Send + 'static>(
        &self,
        word: usize,
        old: Option<T>,
        free: impl FnOnce(T) + Send + 'static,
    ) {
        self.store(word);
        if let Some(old) = old {
            retire(old, free);
        }
    }
}

/// Runs `free(old)` once every thread that is pinned now has unpinned (on
/// whichever thread collects: keep `free` cheap and non-blocking). The
/// caller must already have unpublished `old`: a thread that pins after
/// this call must have no way left to reach it.
///
/// This is the guarantee that `free` may rely on to release memory that
/// callers used: a caller that read the old word was pinned before it read
/// it, and stays pinned while it uses what the word led to.
pub fn retire<T: Send + 'static>(old: T, free: impl FnOnce(T) + Send + 'static) {
    super::grace::after_grace_period(move || free(old));
}
