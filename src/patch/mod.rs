//! The Patch strategy: one thunk for a site's whole life, retargeted in
//! place while other threads call through it.
//!
//! The thunk (`hotcall_jit::patch`) compares the incoming target against
//! aligned 8-byte *table words* and exits each slot through one direct
//! branch word. Retargeting runs this protocol (docs/patching.md has the
//! architecture rules behind each step):
//!
//! 1. **disable** every slot whose target changes: store `DISABLED` (no
//!    function has that address) in its table word. Calls that load the
//!    word from now on fall through to the next compare or the miss path,
//!    which is always correct;
//! 2. **grace period**: `crossbeam_epoch` defers a closure that only sets a
//!    flag. It runs once every thread pinned at the time of step 1 has
//!    unpinned, so no thread can still be between loading the old table
//!    word and taking the old branch. `retarget` returns here: it never
//!    waits, and callers never block;
//! 3. **patch** (on completion, see below): rewrite each such slot's
//!    branch word (one aligned 32-bit store where aligned);
//! 4. **serialize**: `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE)`
//!    makes every core running a thread of the process execute a
//!    serializing instruction (the Intel SDM's cross-modifying-code
//!    requirement; the `ISB` the Arm ARM asks of every executing core);
//! 5. **enable**: store the new target in the table word.
//!
//! Steps 3-5 run on *completion*: in [`PatchSite::poll`] (a scheduler's
//! tick), at the start of the next [`PatchSite::retarget`], or in
//! [`PatchSite::wait`]. Until then the changed slots are disabled and
//! their calls take the miss path: correct, just slower. A slot whose
//! branch already goes to its new target (say, retargeted back) is enabled
//! at once, without a grace period.

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hotcall_jit::hardened::MissTrampolines;
use hotcall_jit::patch::{PatchCompiler, PatchOptions, PatchTemplate, PatchThunk};
use hotcall_jit::{Arch, JitError, ThunkCompiler, ThunkSig};

use crate::engine::{Engine, EngineShared};
use crate::error::Error;
use crate::pin::Pinned;
use crate::signature::SiteFn;

/// One compiler per hardening setting for the whole process: templates do
/// not depend on where they are placed, so every engine shares them.
static COMPILERS: Mutex<[Option<PatchCompiler>; 2]> = Mutex::new([None, None]);

fn template(sig: &ThunkSig, slots: usize, hardened: bool) -> Result<Arc<PatchTemplate>, Error> {
    let arch = Arch::host()
        .ok_or_else(|| JitError::Isa("host", "hotcall runs on x86_64 and aarch64".into()))?;
    let mut compilers = COMPILERS.lock().unwrap_or_else(|p| p.into_inner());
    let slot = &mut compilers[usize::from(hardened)];
    if slot.is_none() {
        let tramps = if hardened {
            Some(
                MissTrampolines::host()
                    .ok_or_else(|| JitError::Isa("host", "no retpoline for this ISA".into()))?,
            )
        } else {
            None
        };
        *slot = Some(PatchCompiler::new(
            arch,
            PatchOptions {
                hardened: tramps,
                ..PatchOptions::default()
            },
        )?);
    }
    Ok(slot.as_mut().expect("created above").template(sig, slots)?)
}

/// One slot as the site sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PatchSlotStats {
    /// The target the slot should promote (`None`: unused).
    pub wanted: Option<usize>,
    /// The target calls currently match (`None`: disabled).
    pub enabled: Option<usize>,
    /// Where the slot's branch goes (`None`: the trap, never patched).
    pub branch: Option<usize>,
}

/// A snapshot of a Patch site.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatchSiteStats {
    pub name: Option<String>,
    pub signature: String,
    pub entry: usize,
    pub slots: Vec<PatchSlotStats>,
    /// Calls to `retarget` that changed something.
    pub retargets: u64,
    /// Branch words rewritten (over all completions).
    pub patches: u64,
    /// Completions (each one `membarrier` for any number of slots).
    pub completions: u64,
    /// Whether changed slots wait for a grace period.
    pub pending: bool,
    /// Whether the last completion could serialize the cores (`membarrier`
    /// available).
    pub serialized: bool,
}

impl fmt::Display for PatchSiteStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "patch site {} {}: thunk at {:#x}; {} retargets, {} completions, {} branch patches{}",
            self.name.as_deref().unwrap_or("<unnamed>"),
            self.signature,
            self.entry,
            self.retargets,
            self.completions,
            self.patches,
            if self.pending {
                ", completion pending"
            } else {
                ""
            }
        )?;
        for (i, s) in self.slots.iter().enumerate() {
            let show = |t: Option<usize>| t.map_or("-".to_string(), |t| format!("{t:#x}"));
            write!(
                f,
                "\n  slot {i}: wanted {}, enabled {}, branch {}",
                show(s.wanted),
                show(s.enabled),
                show(s.branch)
            )?;
        }
        Ok(())
    }
}

/// What one [`PatchSite::retarget`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetargetReport {
    /// Slots enabled at once (their branch already went to the target).
    pub enabled_now: usize,
    /// Slots disabled until the next completion.
    pub pending: usize,
    /// Slots disabled for good (no target wanted any more).
    pub cleared: usize,
    /// Whether a previous retarget completed at the start of this one.
    pub completed_previous: bool,
}

/// A grace period in progress: set by an epoch-deferred closure once every
/// thread pinned when it was started has unpinned.
type Grace = Arc<AtomicBool>;

struct PatchState {
    /// The target each slot should promote.
    wanted: Vec<Option<usize>>,
    /// What each slot's table word holds (`None`: `DISABLED`).
    enabled: Vec<Option<usize>>,
    /// Where each slot's branch goes (`None`: the trap gap). Updated only
    /// after the cores were serialized, so `enabled[k] == Some(t)` implies
    /// `branch[k] == Some(t)`.
    branch: Vec<Option<usize>>,
    /// For each slot waiting to be patched, the grace period that started
    /// after it was disabled. A slot retargeted again while it waits keeps
    /// its grace period (it has been disabled since before it started), so
    /// frequent retargets cannot starve completions.
    grace: Vec<Option<Grace>>,
    retargets: u64,
    patches: u64,
    completions: u64,
    serialized: bool,
}

/// A dispatch site with the Patch strategy: one [`PatchThunk`] with a fixed
/// number of slots for the site's whole life. Retargeting rewrites table
/// words and branch words in place; it never compiles and never blocks
/// (see the module docs for the protocol). Calls go through
/// [`PatchSite::call`] with a [`Pinned`] guard, as for [`crate::Site`].
pub struct PatchSite<F: SiteFn> {
    thunk: Option<PatchThunk>,
    entry: usize,
    state: Mutex<PatchState>,
    engine: Arc<EngineShared>,
    hardened: bool,
    sig: ThunkSig,
    name: Option<String>,
    _fn: PhantomData<F>,
}

impl Engine {
    /// A new Patch site for `F` with `slots` slots (1 to 8), all disabled
    /// (every call takes the miss path until [`PatchSite::retarget`]).
    /// Compiles the template for (signature, slot count) on first use in
    /// the process; later sites of that shape copy it.
    pub fn patch_site<F: SiteFn>(&self, slots: usize) -> Result<PatchSite<F>, Error> {
        PatchSite::new(Arc::clone(&self.shared), slots, None)
    }

    /// [`Engine::patch_site`] with a name shown in its statistics.
    pub fn named_patch_site<F: SiteFn>(
        &self,
        name: impl Into<String>,
        slots: usize,
    ) -> Result<PatchSite<F>, Error> {
        PatchSite::new(Arc::clone(&self.shared), slots, Some(name.into()))
    }
}

impl<F: SiteFn> PatchSite<F> {
    fn new(engine: Arc<EngineShared>, slots: usize, name: Option<String>) -> Result<Self, Error> {
        let memory = engine
            .memory()
            .cloned()
            .ok_or_else(|| Error::EngineDisabled(JitError::Map("no code memory".into())))?;
        // aarch64 must serialize cores before enabling a patched slot;
        // without membarrier there is no way to, so no Patch sites there.
        if cfg!(target_arch = "aarch64") && !hotcall_jit::coherence::sync_core_available() {
            return Err(JitError::Isa(
                "aarch64",
                "the Patch strategy needs membarrier(SYNC_CORE), which this kernel refuses".into(),
            )
            .into());
        }
        let sig = F::signature();
        let template = template(&sig, slots, engine.hardened)?;
        let thunk = PatchThunk::install(memory, &template)?;
        Ok(PatchSite {
            entry: thunk.entry(),
            thunk: Some(thunk),
            state: Mutex::new(PatchState {
                wanted: vec![None; slots],
                enabled: vec![None; slots],
                branch: vec![None; slots],
                grace: vec![None; slots],
                retargets: 0,
                patches: 0,
                completions: 0,
                serialized: false,
            }),
            hardened: engine.hardened,
            engine,
            sig,
            name,
            _fn: PhantomData,
        })
    }

    fn thunk(&self) -> &PatchThunk {
        self.thunk.as_ref().expect("installed until dropped")
    }

    /// Calls `target` with `args` through the site's thunk.
    ///
    /// `pinned` must be held across the call: the retarget protocol's grace
    /// period waits for it, which is what makes a slot's compare and its
    /// branch agree for this call.
    #[inline(always)]
    pub fn call(&self, pinned: &Pinned, target: F, args: F::Args) -> F::Ret {
        let _ = pinned;
        if self.hardened {
            // SAFETY: as below, through the retpoline.
            return unsafe { crate::retpoline::call_thunk(self.entry, target, args) };
        }
        // SAFETY: `entry` is this site's thunk, compiled for
        // `F::signature()` and installed for the site's whole life (freed
        // only after a grace period once the site is dropped, and the site
        // is borrowed here). The caller is pinned for the whole call.
        unsafe { F::call_thunk(self.entry, target, args) }
    }

    /// Asks the site to promote `targets` (at most its slot count, in
    /// compare order). Never blocks and never compiles: changed slots are
    /// disabled now and patched at the next completion (see the module
    /// docs), slots already aimed at their target are enabled at once.
    ///
    /// Invalid requests (too many, null or repeated targets, a target out
    /// of direct-branch reach of the thunk) are rejected before anything
    /// changes.
    pub fn retarget(&self, targets: &[F]) -> Result<RetargetReport, Error> {
        let addrs: Vec<usize> = targets.iter().map(|f| f.addr()).collect();
        self.retarget_addrs(&addrs)
    }

    /// [`PatchSite::retarget`] by address.
    ///
    /// # Safety
    /// Every address must be a function of type `F`.
    pub unsafe fn retarget_unchecked(&self, targets: &[usize]) -> Result<RetargetReport, Error> {
        self.retarget_addrs(targets)
    }

    fn retarget_addrs(&self, targets: &[usize]) -> Result<RetargetReport, Error> {
        let thunk = self.thunk();
        if targets.len() > thunk.slot_count() {
            return Err(JitError::TooManySlots {
                requested: targets.len(),
                max: thunk.slot_count(),
            }
            .into());
        }
        let as_u64: Vec<u64> = targets.iter().map(|&t| t as u64).collect();
        ThunkCompiler::check_targets(&as_u64)?;
        for (k, &t) in targets.iter().enumerate() {
            thunk.check_reach(k, t)?;
        }

        let mut state = self.lock_state();
        let completed_previous = self.complete_if_ready(&mut state);
        let mut report = RetargetReport {
            enabled_now: 0,
            pending: 0,
            cleared: 0,
            completed_previous,
        };
        let wanted: Vec<Option<usize>> = (0..thunk.slot_count())
            .map(|k| targets.get(k).copied())
            .collect();
        if wanted == state.wanted {
            // Nothing new; slots still waiting keep waiting.
            return Ok(report);
        }
        state.retargets += 1;
        // Disables first, so that no two enabled slots ever hold the same
        // target with different branches.
        for (k, &want) in wanted.iter().enumerate() {
            if state.enabled[k] != want && state.enabled[k].is_some() {
                thunk.disable(k);
                state.enabled[k] = None;
            }
        }
        let mut new_grace: Option<Grace> = None;
        for (k, &want) in wanted.iter().enumerate() {
            match want {
                None => {
                    report.cleared += usize::from(state.wanted[k].is_some());
                    state.grace[k] = None;
                }
                Some(t) if state.enabled[k] == Some(t) => {}
                Some(t) if state.branch[k] == Some(t) => {
                    // The branch was aimed at `t` and the cores serialized
                    // when it was: consistent, enable without waiting.
                    // SAFETY: see above; `t` is in no other enabled slot
                    // (targets are distinct, other slots were disabled).
                    unsafe { thunk.enable(k, t) };
                    state.enabled[k] = Some(t);
                    state.grace[k] = None;
                    report.enabled_now += 1;
                }
                Some(_) => {
                    report.pending += 1;
                    if state.grace[k].is_none() {
                        // A grace period that starts after the disable
                        // above (one for all slots of this retarget).
                        let grace = new_grace.get_or_insert_with(start_grace_period);
                        state.grace[k] = Some(Arc::clone(grace));
                    }
                }
            }
        }
        state.wanted = wanted;
        Ok(report)
    }

    /// Completes a pending retarget if its grace period has passed: patches
    /// the branches, serializes the cores, enables the slots. Returns
    /// whether it completed one. Cheap when nothing is pending; a
    /// scheduler's tick calls it.
    pub fn poll(&self) -> bool {
        // Helps the epoch advance and runs due deferred closures.
        crossbeam_epoch::pin().flush();
        let mut state = self.lock_state();
        self.complete_if_ready(&mut state)
    }

    /// Polls until no retarget is pending or `timeout` passes; returns
    /// whether the site is complete. It waits for every pinned thread of
    /// the process to unpin, so a thread that holds a pin forever keeps it
    /// waiting (the slots stay disabled; calls stay correct).
    pub fn wait(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            self.poll();
            if !self.is_pending() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            // A short sleep, not `yield_now`: on a loaded machine a yield
            // waits for a whole time slice, a sleeper is woken promptly.
            std::thread::sleep(Duration::from_micros(20));
        }
    }

    /// Whether some slot waits for its grace period.
    pub fn is_pending(&self) -> bool {
        self.lock_state().grace.iter().any(Option::is_some)
    }

    /// Patches, serializes and enables every slot whose grace period has
    /// passed. Returns whether there was one.
    fn complete_if_ready(&self, state: &mut PatchState) -> bool {
        let thunk = self.thunk();
        let mut patched = Vec::new();
        for k in 0..state.wanted.len() {
            let ready = state.grace[k]
                .as_ref()
                .is_some_and(|g| g.load(Ordering::Acquire));
            if !ready {
                continue;
            }
            state.grace[k] = None;
            let t = state.wanted[k].expect("a slot waits only for a wanted target");
            debug_assert_eq!(state.enabled[k], None, "patching an enabled slot");
            debug_assert_ne!(state.branch[k], Some(t), "nothing to patch");
            // SAFETY: slot k has been disabled since before its grace
            // period started (a slot waits only while disabled), and that
            // grace period has passed: no thread can be between the slot's
            // compare and its branch.
            unsafe { thunk.write_branch(k, t) }
                .expect("reach was checked when the target was requested");
            patched.push((k, t));
        }
        if patched.is_empty() {
            return false;
        }
        state.serialized = PatchThunk::serialize_cores();
        for &(k, t) in &patched {
            state.branch[k] = Some(t);
            // SAFETY: the branch goes to `t` and every core was serialized
            // since it was written; `t` is in no other enabled slot.
            unsafe { thunk.enable(k, t) };
            state.enabled[k] = Some(t);
        }
        state.patches += patched.len() as u64;
        state.completions += 1;
        true
    }

    fn lock_state(&self) -> MutexGuard<'_, PatchState> {
        // Updates are a few stores each; a panic cannot tear them.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The thunk's entry (fixed for the site's life).
    pub fn entry(&self) -> usize {
        self.entry
    }

    /// The installed thunk, for inspection.
    pub fn thunk_code(&self) -> &PatchThunk {
        self.thunk()
    }

    pub fn signature(&self) -> &ThunkSig {
        &self.sig
    }

    pub fn stats(&self) -> PatchSiteStats {
        let state = self.lock_state();
        let thunk = self.thunk();
        PatchSiteStats {
            name: self.name.clone(),
            signature: self.sig.to_string(),
            entry: self.entry,
            slots: (0..thunk.slot_count())
                .map(|k| PatchSlotStats {
                    wanted: state.wanted[k],
                    enabled: state.enabled[k],
                    branch: state.branch[k],
                })
                .collect(),
            retargets: state.retargets,
            patches: state.patches,
            completions: state.completions,
            pending: state.grace.iter().any(Option::is_some),
            serialized: state.serialized,
        }
    }
}

/// Starts a grace period: a flag that an epoch-deferred closure sets once
/// every thread pinned now has unpinned. The closure is a single store:
/// crossbeam may run it on a caller's hot path.
fn start_grace_period() -> Grace {
    let ready = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&ready);
    let guard = crossbeam_epoch::pin();
    guard.defer(move || flag.store(true, Ordering::Release));
    guard.flush();
    ready
}

impl<F: SiteFn> Drop for PatchSite<F> {
    fn drop(&mut self) {
        let Some(thunk) = self.thunk.take() else {
            return;
        };
        // `&mut self`: no caller holds the site, but one may still be
        // returning into the thunk (miss path, call-form hits). Free it
        // after a grace period, as a retired JIT thunk.
        let _ = &self.engine;
        let guard = crossbeam_epoch::pin();
        guard.defer(move || {
            // SAFETY: the site is gone, so no thread can enter the thunk,
            // and crossbeam runs this only after every thread pinned now
            // has unpinned (callers stay pinned across their calls).
            unsafe { thunk.release() };
        });
        guard.flush();
    }
}

impl<F: SiteFn> fmt::Debug for PatchSite<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.stats(), f)
    }
}
