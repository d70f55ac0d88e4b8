//! The Patch strategy: one thunk for a site's whole life, retargeted in
//! place while other threads call through it, and able to learn.
//!
//! The thunk (`hotcall_jit::patch`) compares the incoming target against
//! aligned 8-byte *table words* and exits each slot through one direct
//! branch word. Retargeting runs this protocol, which
//! `hotcall_policy::publish::Retarget` encodes (this site only performs
//! its steps on the thunk; the loom model `policy/tests/loom_publish.rs`
//! checks it) and docs/patching.md explains step by step:
//!
//! 1. **disable** every slot whose target changes: store `DISABLED` (no
//!    function has that address) in its table word. Calls that load the
//!    word from now on fall through to the next compare or the miss path,
//!    which is always correct;
//! 2. **grace period** (`hotcall_policy::publish::GracePeriod`): an
//!    epoch-deferred closure that only sets a flag. It runs once every thread pinned at the time of step 1 has
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
//! Steps 3-5 run on *completion*: in [`PatchSite::poll`], in every
//! scheduler tick ([`crate::Engine::tick`] or the background thread), at
//! the start of the next retarget, or in [`PatchSite::wait`]. Until then
//! the changed slots are disabled and their calls take the miss path:
//! correct, just slower. A slot whose branch already goes to its new
//! target (say, retargeted back) is enabled at once, without a grace
//! period.
//!
//! **Learning.** A Patch site learns as a [`crate::Site`] does: it has a
//! policy (the engine's, unless [`crate::SiteOptions::policy`] says
//! otherwise), counters, and hook stubs, and the engine's scheduler drives
//! it. A policy's plan becomes a retarget: its targets in slot order (the
//! other slots disabled), its counting set on the thunk, and a bypass
//! sends calls around the thunk (a plain indirect call) with every slot
//! disabled. The policy is fitted to the thunk (`fit.rs`): no more targets
//! than slots, and only targets its branches reach. Counting costs the
//! thunk's hits nothing when they are not counted: counting every call is
//! a second entry into the same thunk (`hotcall_jit::patch`), counting
//! misses is the miss exit's branch word. A completed retarget starts a
//! new counting epoch, so the policy judges the plan in effect, not the
//! misses of slots that were still waiting. [`PatchSite::retarget`] by
//! hand stops the learning (the policy becomes
//! [`crate::PolicyConfig::Fixed`]); [`PatchSite::set_policy`] resumes it.

mod fit;
mod site_core;

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hotcall_jit::hardened::MissTrampolines;
use hotcall_jit::patch::{PatchCompiler, PatchOptions, PatchTemplate, PatchThunk};
use hotcall_jit::{Arch, JitError, ThunkSig};
use hotcall_policy::PolicyConfig;

use self::site_core::PatchCore;
use crate::call::pin::Pinned;
use crate::call::signature::SiteFn;
use crate::error::Error;
use crate::runtime::EngineShared;
use crate::site::SiteOptions;
use crate::stats::{PatchSiteStats, RetargetReport};

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

/// A dispatch site with the Patch strategy: one [`PatchThunk`] with a fixed
/// number of slots for the site's whole life. Retargeting rewrites table
/// words and branch words in place; it never compiles and never blocks
/// (see the module docs for the protocol). Calls go through
/// [`PatchSite::call`] with a [`Pinned`] guard, as for [`crate::Site`].
/// Cheap to clone (clones share the site).
pub struct PatchSite<F: SiteFn> {
    core: Arc<PatchCore>,
    hardened: bool,
    _fn: PhantomData<F>,
}

impl<F: SiteFn> Clone for PatchSite<F> {
    fn clone(&self) -> Self {
        PatchSite {
            core: Arc::clone(&self.core),
            hardened: self.hardened,
            _fn: PhantomData,
        }
    }
}

impl<F: SiteFn> PatchSite<F> {
    /// See [`Engine::patch_site_with`](crate::Engine::patch_site_with).
    pub(crate) fn new(
        engine: Arc<EngineShared>,
        slots: usize,
        options: SiteOptions,
    ) -> Result<Self, Error> {
        let core = PatchCore::new(engine, F::signature(), slots, options)?;
        Ok(PatchSite {
            hardened: core.hardened(),
            core,
            _fn: PhantomData,
        })
    }

    /// Calls `target` with `args` through the site's thunk (or, in a
    /// bypass, directly).
    ///
    /// `pinned` must be held across the call: the retarget protocol's grace
    /// period waits for it, which is what makes a slot's compare and its
    /// branch agree for this call.
    #[inline(always)]
    pub fn call(&self, pinned: &Pinned, target: F, args: F::Args) -> F::Ret {
        // Acquire (`EntryCell::load`) pairs with the Release that published
        // the entry; taking the guard makes "pinned before loading" a type
        // requirement, as for `Site::call`.
        let entry = self.core.entry.load(pinned.guard());
        if self.hardened {
            return self.call_hardened(entry, target, args);
        }
        if entry == 0 {
            return target.call_indirect(args);
        }
        // SAFETY: a non-zero entry is this site's thunk or its counting
        // entry, compiled for `F::signature()` and installed for the site's
        // whole life (freed only after a grace period once the site is
        // dropped, and the site is borrowed here). The caller is pinned for
        // the whole call.
        unsafe { F::call_thunk(entry, target, args) }
    }

    /// [`PatchSite::call`] in hardened mode: through the retpoline.
    #[inline(always)]
    fn call_hardened(&self, entry: usize, target: F, args: F::Args) -> F::Ret {
        if entry == 0 {
            return crate::call::retpolined::call(target, args);
        }
        // SAFETY: as in `call`, through the retpoline.
        unsafe { crate::call::retpolined::call_thunk(entry, target, args) }
    }

    /// Promotes `targets` by hand (at most its slot count, in compare
    /// order) and stops the site's learning (its policy becomes
    /// [`PolicyConfig::Fixed`]; [`PatchSite::set_policy`] resumes it).
    /// Never blocks and never compiles: changed slots are disabled now and
    /// patched at the next completion (see the module docs), slots already
    /// aimed at their target are enabled at once.
    ///
    /// Invalid requests (too many, null or repeated targets, a target out
    /// of direct-branch reach of the thunk) are rejected before anything
    /// changes.
    pub fn retarget(&self, targets: &[F]) -> Result<RetargetReport, Error> {
        let addrs: Vec<usize> = targets.iter().map(|f| f.addr()).collect();
        self.core.retarget_by_hand(&addrs)
    }

    /// [`PatchSite::retarget`] by address.
    ///
    /// # Safety
    /// Every address must be a function of type `F`.
    pub unsafe fn retarget_unchecked(&self, targets: &[usize]) -> Result<RetargetReport, Error> {
        self.core.retarget_by_hand(targets)
    }

    /// Gives the site a new policy, which starts from its initial plan now
    /// (a learning policy starts by counting). Fitted to the thunk: a
    /// [`PolicyConfig::Fixed`] list longer than the slot count keeps its
    /// first targets, unreachable targets are dropped.
    pub fn set_policy(&self, policy: PolicyConfig) {
        self.core.set_policy(policy);
    }

    /// Sends every call around the thunk for good (policy
    /// [`PolicyConfig::Off`]: a plain indirect call), with every slot
    /// disabled. The thunk stays installed for the site's life.
    pub fn demote(&self) {
        self.core.set_policy(PolicyConfig::Off);
    }

    /// Completes a pending retarget if its grace period has passed: patches
    /// the branches, serializes the cores, enables the slots, and starts a
    /// new counting epoch. Returns whether it completed one. Cheap when
    /// nothing is pending; every scheduler tick does it.
    pub fn poll(&self) -> bool {
        self.core.poll()
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
        self.core.is_pending()
    }

    /// The thunk's entry (fixed for the site's life). Calls may go through
    /// its counting entry instead, or around it (see
    /// [`PatchSiteStats::current_entry`]).
    pub fn entry(&self) -> usize {
        self.core.thunk().entry()
    }

    /// The installed thunk, for inspection.
    pub fn thunk_code(&self) -> &PatchThunk {
        self.core.thunk()
    }

    pub fn signature(&self) -> &ThunkSig {
        self.core.sig()
    }

    pub fn stats(&self) -> PatchSiteStats {
        self.core.stats()
    }

    /// Makes the static stub whose branch word is at `field` go wherever
    /// this site's calls go, from now on (it is aimed now).
    pub(crate) fn attach_static_stub(&self, field: usize) -> Result<(), Error> {
        self.core.attach_static_stub(field)
    }

    /// Stops this site from writing its static stub.
    pub(crate) fn detach_static_stub(&self) {
        self.core.detach_static_stub();
    }
}

impl<F: SiteFn> fmt::Debug for PatchSite<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.stats(), f)
    }
}
