//! The Patch sequence: retargeting the slots of a thunk that threads are
//! running, one slot = a *table word* (the value the thunk compares the
//! incoming target with) and a *branch* (where the slot exits when the
//! compare is equal).
//!
//! Per changed slot:
//!
//! 1. **disable**: store a value no target has in its table word; a caller
//!    that loads it from then on goes on to the next compare or the miss
//!    path, which is always correct;
//! 2. **grace period** ([`GracePeriod`]), started after the disables: once
//!    it has passed, no thread can be between loading the old table word
//!    and taking the old branch (callers are pinned across their whole
//!    call). [`Retarget::retarget`] returns here; it never waits;
//! 3. **patch** (on *completion*, [`Retarget::complete`], once the grace
//!    period has passed): rewrite the branch;
//! 4. **serialize** the cores, once for all slots patched in a completion;
//! 5. **enable**: store the target in the table word.
//!
//! The invariant, for callers: **a slot is enabled for `t` only if its
//! branch goes to `t` and the cores were serialized after the branch was
//! written**, so a caller that compares equal with `t` branches to `t`.
//! And for the writer: **a branch is rewritten only while its slot is
//! disabled and after a grace period that started after the disable**.
//!
//! A slot whose branch already goes to its new target (retargeted back) is
//! enabled at once. A slot retargeted again while it waits keeps its grace
//! period: it has been disabled since before that period started, so the
//! period still covers it, and frequent retargets cannot starve
//! completion.
//!
//! What the words are and how they are written is the [`SlotTable`]'s:
//! the real one is a Patch thunk in code memory, the loom model's is a
//! pair of cells per slot.

use super::grace::GracePeriod;

/// The writes of the Patch sequence on one thunk's slots. [`Retarget`]
/// decides when each runs; an implementation only performs it.
pub trait SlotTable {
    /// Stores "matches no target" in slot `slot`'s table word. Always
    /// sound: a caller that loads it does not take the slot's branch.
    fn disable(&self, slot: usize);

    /// Aims slot `slot`'s branch at `target`.
    ///
    /// # Safety
    /// No thread may be able to take the slot's branch: it has been
    /// disabled since before a grace period that has passed. The slot must
    /// not be enabled before [`SlotTable::serialize`] has run.
    unsafe fn patch(&self, slot: usize, target: usize);

    /// Makes every core that runs a thread of the process execute a
    /// serializing instruction (after it, no core executes a branch older
    /// than the last [`SlotTable::patch`]). Returns whether it could.
    fn serialize(&self) -> bool;

    /// Stores `target` in slot `slot`'s table word.
    ///
    /// # Safety
    /// The slot's branch goes to `target`, the cores were serialized after
    /// it was written, and no other enabled slot holds `target`.
    unsafe fn enable(&self, slot: usize, target: usize);
}

/// One slot as the writer knows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlotState {
    /// The target the slot should promote.
    pub wanted: Option<usize>,
    /// What its table word holds (`None`: disabled).
    pub enabled: Option<usize>,
    /// Where its branch goes (`None`: where the table put it first).
    /// Updated only once the cores were serialized after the patch, so
    /// `enabled == Some(t)` implies `branch == Some(t)`.
    pub branch: Option<usize>,
}

/// What one [`Retarget::retarget`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retargeted {
    /// Slots enabled at once (their branch already went to the target).
    pub enabled_now: usize,
    /// Slots disabled until a completion.
    pub pending: usize,
    /// Slots disabled for good (no target wanted any more).
    pub cleared: usize,
    /// Whether a previous retarget completed at the start of this one.
    pub completed_previous: bool,
}

#[derive(Debug)]
struct Slot {
    state: SlotState,
    /// For a slot waiting to be patched, the grace period that started
    /// after it was disabled.
    grace: Option<GracePeriod>,
}

/// The writer's side of the Patch sequence for one table: the state of
/// every slot and the grace periods they wait for, and counts of what it
/// did. One writer at a time (`&mut self`: the owner's lock).
#[derive(Debug)]
pub struct Retarget {
    slots: Vec<Slot>,
    retargets: u64,
    patches: u64,
    completions: u64,
    serialized: bool,
}

impl Retarget {
    /// `slots` slots, all disabled, no branch aimed at any target.
    pub fn new(slots: usize) -> Self {
        Retarget {
            slots: (0..slots)
                .map(|_| Slot {
                    state: SlotState::default(),
                    grace: None,
                })
                .collect(),
            retargets: 0,
            patches: 0,
            completions: 0,
            serialized: false,
        }
    }

    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// Slot `k`'s state.
    pub fn slot(&self, k: usize) -> SlotState {
        self.slots[k].state
    }

    /// Whether some slot waits for its grace period.
    pub fn is_pending(&self) -> bool {
        self.slots.iter().any(|s| s.grace.is_some())
    }

    /// Retargets that changed what some slot wants.
    pub fn retargets(&self) -> u64 {
        self.retargets
    }

    /// Branches patched.
    pub fn patches(&self) -> u64 {
        self.patches
    }

    /// Completions that patched something.
    pub fn completions(&self) -> u64 {
        self.completions
    }

    /// Whether the last completion could serialize the cores.
    pub fn serialized(&self) -> bool {
        self.serialized
    }

    /// Makes slot `k` promote `targets[k]` (slots past the list: nothing).
    /// First completes what is due (a completion here belongs to the
    /// previous retarget), then disables every slot whose enabled target
    /// changes, enables at once those whose branch already goes to their
    /// target, and starts one grace period for the slots that need a patch
    /// and were not already waiting. Never waits.
    ///
    /// # Safety
    /// `table` is the table this `Retarget` was created for: its slots were
    /// all disabled then, and they change only through this `Retarget`.
    /// Every caller that loads a table word is pinned from before the load
    /// until it has left the branch. `targets` holds at most
    /// [`Retarget::slot_count`] distinct targets that every slot's branch
    /// can reach.
    pub unsafe fn retarget<S: SlotTable + ?Sized>(
        &mut self,
        table: &S,
        targets: &[usize],
    ) -> Retargeted {
        debug_assert!(targets.len() <= self.slots.len(), "more targets than slots");
        // SAFETY: forwarded from this function's contract.
        let completed_previous = unsafe { self.complete(table) };
        let mut report = Retargeted {
            completed_previous,
            ..Retargeted::default()
        };
        let wanted: Vec<Option<usize>> = (0..self.slots.len())
            .map(|k| targets.get(k).copied())
            .collect();
        if self
            .slots
            .iter()
            .map(|s| s.state.wanted)
            .eq(wanted.iter().copied())
        {
            // Nothing new; slots still waiting keep waiting.
            return report;
        }
        self.retargets += 1;
        // Disables first, so that no two enabled slots ever hold the same
        // target with different branches, and so that the grace period
        // below starts after every disable.
        for (k, &want) in wanted.iter().enumerate() {
            let state = &mut self.slots[k].state;
            if state.enabled != want && state.enabled.is_some() {
                table.disable(k);
                state.enabled = None;
            }
        }
        let mut new_grace: Option<GracePeriod> = None;
        for (k, &want) in wanted.iter().enumerate() {
            let slot = &mut self.slots[k];
            match want {
                None => {
                    report.cleared += usize::from(slot.state.wanted.is_some());
                    slot.grace = None;
                }
                Some(t) if slot.state.enabled == Some(t) => {}
                Some(t) if slot.state.branch == Some(t) => {
                    // SAFETY: the branch was aimed at `t` and the cores
                    // serialized when it was (`branch` is updated only
                    // then); `t` is in no other enabled slot (targets are
                    // distinct, and every slot that held another target was
                    // disabled above).
                    unsafe { table.enable(k, t) };
                    slot.state.enabled = Some(t);
                    slot.grace = None;
                    report.enabled_now += 1;
                }
                Some(_) => {
                    report.pending += 1;
                    if slot.grace.is_none() {
                        // One grace period for all slots of this retarget,
                        // started after the disables above. A slot that
                        // already waits keeps its own: it has been disabled
                        // since before that one started.
                        let grace = new_grace.get_or_insert_with(GracePeriod::start);
                        slot.grace = Some(grace.clone());
                    }
                }
            }
            slot.state.wanted = want;
        }
        report
    }

    /// Completes every waiting slot whose grace period has passed: patches
    /// its branch, serializes the cores once, then enables it. Returns
    /// whether there was one. Polling again before a grace period passes
    /// does nothing; a slot is patched once per wait.
    ///
    /// # Safety
    /// As [`Retarget::retarget`].
    pub unsafe fn complete<S: SlotTable + ?Sized>(&mut self, table: &S) -> bool {
        let mut patched = Vec::new();
        for (k, slot) in self.slots.iter_mut().enumerate() {
            if !slot.grace.as_ref().is_some_and(GracePeriod::has_passed) {
                continue;
            }
            slot.grace = None;
            let t = slot
                .state
                .wanted
                .expect("a slot waits only for a wanted target");
            debug_assert_eq!(slot.state.enabled, None, "patching an enabled slot");
            debug_assert_ne!(slot.state.branch, Some(t), "nothing to patch");
            // SAFETY: the slot has been disabled since before its grace
            // period started (a slot waits only while disabled, and
            // `retarget` starts the period after the disables), and that
            // period has passed: every caller that could have loaded an
            // enabled table word of this slot has left the branch (callers
            // are pinned until then, this function's contract). It is
            // enabled below, after `serialize`.
            unsafe { table.patch(k, t) };
            patched.push((k, t));
        }
        if patched.is_empty() {
            return false;
        }
        self.serialized = table.serialize();
        for &(k, t) in &patched {
            let state = &mut self.slots[k].state;
            state.branch = Some(t);
            // SAFETY: the branch goes to `t` (patched above) and the cores
            // were serialized since; `t` is in no other enabled slot (an
            // enabled slot holds its `wanted` target, `retarget` disables
            // the others, and wanted targets are distinct).
            unsafe { table.enable(k, t) };
            state.enabled = Some(t);
        }
        self.patches += patched.len() as u64;
        self.completions += 1;
        true
    }
}
