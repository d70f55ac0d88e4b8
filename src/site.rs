//! Dispatch sites: one thunk per site, published with one atomic store, and
//! a policy that decides what the thunk promotes.

use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hotcall_jit::{Hooks, ThunkSig};
use hotcall_policy::publish::EntryCell;
use hotcall_policy::{Counting, Learner, Learning, Plan, PolicyConfig, SiteCounters, Step};

use crate::call::pin::Pinned;
use crate::call::signature::SiteFn;
use crate::error::Error;
use crate::runtime::{EngineShared, HookStubs, Installed};
use crate::stats::{PromoteReport, SiteMode, SiteStats, candidate_stats, slot_stats};

/// Options for a new site ([`crate::Engine::site_with`]).
#[derive(Clone, Debug, Default)]
pub struct SiteOptions {
    pub(crate) name: Option<String>,
    pub(crate) policy: Option<PolicyConfig>,
}

impl SiteOptions {
    pub fn new() -> Self {
        Self::default()
    }

    /// A name shown in statistics.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// A policy for this site instead of the engine's.
    pub fn policy(mut self, policy: PolicyConfig) -> Self {
        self.policy = Some(policy);
        self
    }
}

/// What the site publishes and its build counters.
struct Published {
    current: Option<Installed>,
    /// The site's counting-hook stubs, made when it first counts.
    stubs: Option<HookStubs>,
    publishes: u64,
    failures: u64,
    last_error: Option<Error>,
    last_compile_time: Option<Duration>,
    /// The branch word of a static entry stub that follows this site
    /// ([`crate::StaticSite::use_jit`]): every publish aims it at the new
    /// thunk, or at the engine's miss stub when there is none.
    static_stub: Option<usize>,
}

/// Everything behind the site's lock: publication and learning. Learning
/// steps and hand promotions take it; calls never do.
struct Inner {
    published: Published,
    learner: Learner,
}

/// The type-independent part of a site, shared with the scheduler.
pub(crate) struct SiteCore {
    /// Entry of the current thunk, 0 for a plain indirect call. The only
    /// word the call path reads; published and retired through
    /// `hotcall_policy::publish` (the protocol the loom model checks).
    entry: EntryCell,
    sig: ThunkSig,
    name: Option<String>,
    engine: Arc<EngineShared>,
    counters: Arc<SiteCounters>,
    inner: Mutex<Inner>,
}

/// A dispatch site for functions of type `F` (an `extern "C" fn` type with
/// up to eight parameters; see [`SiteFn`]).
///
/// Calls go through [`Site::call`] with a [`Pinned`] guard. With the
/// engine's default policy, a site counts its calls, and the engine's
/// scheduler promotes the hot targets into a thunk that tests them in order
/// and calls a match directly, demotes megamorphic sites to a plain
/// indirect call, and follows phase changes. [`Site::promote`] sets the
/// targets by hand instead. Sites are `Sync` and cheap to clone (clones
/// share the site).
pub struct Site<F: SiteFn> {
    core: Arc<SiteCore>,
    /// The engine's hardened mode: calls go through the retpoline. Kept in
    /// the handle, next to the pointer the call path loads anyway.
    hardened: bool,
    _fn: PhantomData<F>,
}

impl<F: SiteFn> Clone for Site<F> {
    fn clone(&self) -> Self {
        Site {
            core: Arc::clone(&self.core),
            hardened: self.hardened,
            _fn: PhantomData,
        }
    }
}

impl<F: SiteFn> Site<F> {
    pub(crate) fn new(engine: Arc<EngineShared>, options: SiteOptions) -> Self {
        let policy = options
            .policy
            .unwrap_or_else(|| engine.policy.clone())
            .build();
        let counters = SiteCounters::new(policy.counter_config());
        let tick = engine.scheduler.current_tick();
        let (learner, first) = Learner::new(policy, tick);
        let sig = F::signature();
        let core = Arc::new(SiteCore {
            entry: EntryCell::new(0),
            sig,
            name: options.name,
            engine,
            counters,
            inner: Mutex::new(Inner {
                published: Published {
                    current: None,
                    stubs: None,
                    publishes: 0,
                    failures: 0,
                    last_error: None,
                    last_compile_time: None,
                    static_stub: None,
                },
                learner,
            }),
        });
        if core.engine.is_enabled() {
            core.install_now(first, tick);
            let weak = Arc::downgrade(&core);
            core.engine.scheduler.register(weak);
        }
        let hardened = core.engine.hardened;
        Site {
            core,
            hardened,
            _fn: PhantomData,
        }
    }

    /// Calls `target` with `args` through the site.
    ///
    /// `pinned` keeps the thunk alive for the whole call (the target may
    /// return into it); borrowing it here is what makes the call
    /// memory-safe.
    #[inline(always)]
    pub fn call(&self, pinned: &Pinned, target: F, args: F::Args) -> F::Ret {
        // An Acquire load, pairing with the Release store in `publish`: the
        // thunk's bytes (written before publication) are visible to this
        // thread. Taking the guard makes "pinned before loading" a type
        // requirement.
        let entry = self.core.entry.load(pinned.guard());
        if self.hardened {
            return self.call_hardened(entry, target, args);
        }
        if entry == 0 {
            target.call_indirect(args)
        } else {
            // SAFETY: a non-zero entry is the entry of a thunk compiled for
            // `F::signature()` and installed in the engine's code memory.
            // It is freed only after a grace period that starts after it is
            // unpublished; this thread was pinned (`pinned`, borrowed for
            // the whole call) before loading it, so it stays executable
            // until this call returns.
            unsafe { F::call_thunk(entry, target, args) }
        }
    }

    /// [`Site::call`] in hardened mode: the indirect branches go through
    /// the retpoline (the thunk's own miss path does too).
    #[inline(always)]
    fn call_hardened(&self, entry: usize, target: F, args: F::Args) -> F::Ret {
        if entry == 0 {
            crate::call::retpolined::call(target, args)
        } else {
            // SAFETY: as in `call`: a live thunk for `F::signature()`, kept
            // alive by the caller's pin for the whole call.
            unsafe { crate::call::retpolined::call_thunk(entry, target, args) }
        }
    }

    /// Like [`Site::call`] for a target that may be null (a C host's
    /// nullable function pointer). A null target panics with a clear message
    /// instead of jumping to address 0.
    #[inline(always)]
    pub fn call_nullable(&self, pinned: &Pinned, target: Option<F>, args: F::Args) -> F::Ret {
        match target {
            Some(f) => self.call(pinned, f, args),
            None => self.null_target(),
        }
    }

    #[cold]
    #[inline(never)]
    fn null_target(&self) -> ! {
        panic!(
            "hotcall: null function pointer called through site {} {}",
            self.core.name.as_deref().unwrap_or("<unnamed>"),
            self.core.sig
        )
    }

    /// Pins, calls, unpins. Convenient, but pinning costs several times a
    /// plain indirect call when the thread is not already pinned (see
    /// [`Pinned`]); hot loops should pin once and use [`Site::call`].
    #[inline]
    pub fn call_pinned(&self, target: F, args: F::Args) -> F::Ret {
        let pinned = Pinned::new();
        self.call(&pinned, target, args)
    }

    /// See [`SiteCore::attach_static_stub`].
    pub(crate) fn attach_static_stub(&self, field: usize) -> Result<(), Error> {
        self.core.attach_static_stub(field)
    }

    pub(crate) fn detach_static_stub(&self) {
        self.core.detach_static_stub();
    }

    /// Promotes `targets` by hand (0 to 8, in compare order; slot 0 is the
    /// fall-through path): compiles a thunk and publishes it atomically. The
    /// site stops learning (its policy becomes [`PolicyConfig::Fixed`]; give
    /// it another with [`Site::set_policy`]). The previous thunk is freed
    /// after a grace period.
    ///
    /// * An invalid request (more than 8 targets, a repeated target) is
    ///   rejected and leaves the site as it was.
    /// * If compilation, placement or code memory fails, the site becomes a
    ///   plain indirect call, records the error in its statistics, and the
    ///   error is returned. The host keeps working either way.
    pub fn promote(&self, targets: &[F]) -> Result<PromoteReport, Error> {
        let addrs: Vec<u64> = targets.iter().map(|f| f.addr() as u64).collect();
        self.core.promote_addrs(&addrs)
    }

    /// [`Site::promote`] by address, for targets known only as addresses.
    ///
    /// # Safety
    /// Every address must be a function of type `F`: calls that match it
    /// will be made to it directly.
    pub unsafe fn promote_unchecked(&self, targets: &[usize]) -> Result<PromoteReport, Error> {
        let addrs: Vec<u64> = targets.iter().map(|&a| a as u64).collect();
        self.core.promote_addrs(&addrs)
    }

    /// Makes the site a plain indirect call for good (policy
    /// [`PolicyConfig::Off`]) and frees its thunk after a grace period.
    pub fn demote(&self) {
        self.core.set_policy(PolicyConfig::Off);
    }

    /// Gives the site a new policy, which starts from its initial plan now
    /// (a learning policy starts by counting).
    pub fn set_policy(&self, policy: PolicyConfig) {
        self.core.set_policy(policy);
    }

    /// The signature this site dispatches.
    pub fn signature(&self) -> &ThunkSig {
        &self.core.sig
    }

    pub fn name(&self) -> Option<&str> {
        self.core.name.as_deref()
    }

    /// A snapshot of the site's state and counters.
    pub fn stats(&self) -> SiteStats {
        self.core.stats()
    }
}

impl SiteCore {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the state torn (every
        // update is a few plain stores), so poisoning is ignored.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The hooks a thunk counting `counting` calls (making the site's
    /// stubs the first time).
    fn hooks(&self, published: &mut Published, counting: Counting) -> Result<Hooks, Error> {
        if counting == Counting::None {
            return Ok(Hooks::NONE);
        }
        if published.stubs.is_none() {
            let cookie = self.counters.cookie().value();
            published.stubs = Some(self.engine.hook_stubs(cookie, &self.sig)?);
        }
        let stubs = published.stubs.as_ref().expect("made above");
        Ok(match counting {
            Counting::Misses => Hooks {
                entry: None,
                miss: Some(stubs.miss),
                miss_tail: Some(stubs.miss_tail),
            },
            _ => Hooks {
                entry: Some(stubs.entry),
                miss: None,
                miss_tail: None,
            },
        })
    }

    /// Builds and publishes `plan` (a bypass publishes no thunk). Returns
    /// whether a thunk was compiled.
    fn install(&self, published: &mut Published, plan: &Plan) -> Result<bool, Error> {
        if plan.is_bypass() {
            self.publish(published, None);
            return Ok(false);
        }
        let built = self
            .hooks(published, plan.counting)
            .and_then(|hooks| self.engine.build(&self.sig, &plan.targets, &hooks));
        match built {
            Ok(installed) => {
                published.publishes += 1;
                published.last_error = None;
                published.last_compile_time = Some(installed.compile_time);
                self.publish(published, Some(installed));
                Ok(true)
            }
            Err(e) => {
                published.failures += 1;
                published.last_error = Some(e.clone());
                self.publish(published, None);
                Err(e)
            }
        }
    }

    /// Installs `plan` through the learner (counters start a new epoch).
    fn install_now(&self, plan: Plan, tick: u64) -> Step {
        let mut inner = self.lock();
        let Inner { published, learner } = &mut *inner;
        learner.install(plan, tick, &self.counters, &mut |p: &Plan| {
            self.install(published, p).map_err(|e| e.to_string())
        })
    }

    fn promote_addrs(&self, addrs: &[u64]) -> Result<PromoteReport, Error> {
        hotcall_jit::ThunkCompiler::check_targets(addrs)?;
        self.engine
            .memory()
            .ok_or_else(|| self.engine.disabled_error())?;
        let tick = self.engine.scheduler.current_tick();
        let mut inner = self.lock();
        let Inner { published, learner } = &mut *inner;
        let plan = learner.replace_policy(PolicyConfig::Fixed(addrs.to_vec()).build(), tick);
        let mut result = Ok(false);
        learner.install(plan, tick, &self.counters, &mut |p: &Plan| {
            result = self.install(published, p);
            result.clone().map_err(|e| e.to_string())
        });
        result?;
        let installed = published
            .current
            .as_ref()
            .expect("a successful non-bypass install publishes a thunk");
        Ok(PromoteReport {
            entry: installed.code.entry(),
            slots: slot_stats(installed, None),
            code_bytes: installed.code_bytes,
            compile_time: installed.compile_time,
        })
    }

    fn set_policy(&self, policy: PolicyConfig) {
        let tick = self.engine.scheduler.current_tick();
        let mut inner = self.lock();
        let Inner { published, learner } = &mut *inner;
        let plan = learner.replace_policy(policy.build(), tick);
        if !self.engine.is_enabled() {
            return;
        }
        learner.install(plan, tick, &self.counters, &mut |p: &Plan| {
            self.install(published, p).map_err(|e| e.to_string())
        });
    }

    /// The one atomic step: swap the entry (a Release store: the new
    /// thunk's bytes were written before), then retire the old thunk.
    ///
    /// An attached static stub is aimed first, so that once the entry is
    /// swapped neither way in leads to the old thunk, and its grace period
    /// covers callers that came through the stub too.
    fn publish(&self, published: &mut Published, new: Option<Installed>) {
        let entry = new.as_ref().map_or(0, |i| i.code.entry());
        if let Some(field) = published.static_stub {
            self.aim_static_stub(published, field, entry);
        }
        let old = std::mem::replace(&mut published.current, new);
        self.engine.republish(&self.entry, entry, old);
    }

    /// Aims the static stub's branch word `field` at `entry`, or at the
    /// engine's miss stub if `entry` is 0 or out of the stub's reach (a
    /// plain indirect call: correct, only slower; the error is recorded).
    fn aim_static_stub(&self, published: &mut Published, field: usize, entry: usize) {
        let miss = crate::call::static_entry::miss_stub(self.engine.hardened);
        if entry != 0 {
            match crate::link::aim_stub_field(field, entry) {
                Ok(()) => return,
                Err(e) => published.last_error = Some(e),
            }
        }
        crate::link::aim_stub_field(field, miss)
            .expect("the miss stub was in reach when the stub was attached");
    }

    /// Makes the static stub at `field` follow this site from now on, and
    /// aims it at the current thunk (or the miss stub).
    pub(crate) fn attach_static_stub(&self, field: usize) -> Result<(), Error> {
        let mut inner = self.lock();
        let published = &mut inner.published;
        crate::link::check_stub_reach(
            field,
            crate::call::static_entry::miss_stub(self.engine.hardened),
        )?;
        let entry = published.current.as_ref().map_or(0, |i| i.code.entry());
        if entry != 0 {
            crate::link::check_stub_reach(field, entry)?;
        }
        self.aim_static_stub(published, field, entry);
        published.static_stub = Some(field);
        Ok(())
    }

    /// The site no longer writes the static stub.
    pub(crate) fn detach_static_stub(&self) {
        self.lock().published.static_stub = None;
    }

    fn stats(&self) -> SiteStats {
        let counts = self.counters.snapshot();
        let inner = self.lock();
        let current = inner.published.current.as_ref();
        let installed = inner.learner.installed();
        let profile = inner.learner.last_profile();
        let hits_of = |slot: usize, target: u64| -> Option<u64> {
            if installed.counting == Counting::All {
                return counts.hits.get(slot).copied();
            }
            // The calls the last profile counted for this target: hits if
            // it was promoted then, else its (lower-bound) miss count.
            let (plan, c) = profile?;
            match plan.targets.iter().position(|&t| t == target) {
                Some(k) => c.hits.get(k).copied(),
                None => Some(c.candidate(target)),
            }
        };
        let slots = current
            .map(|i| slot_stats(i, Some(&hits_of)))
            .unwrap_or_default();
        SiteStats {
            name: self.name.clone(),
            signature: self.sig.to_string(),
            mode: if current.is_some() {
                SiteMode::Thunk
            } else {
                SiteMode::PlainIndirect
            },
            policy: inner.learner.policy_name(),
            state: inner.learner.state(),
            counting: installed.counting,
            entry: current.map(|i| i.code.entry()),
            slots,
            calls: counts.calls,
            misses: counts.misses,
            candidates: candidate_stats(&counts),
            code_bytes: current.map_or(0, |i| i.code_bytes),
            publishes: inner.published.publishes,
            failures: inner.published.failures,
            last_error: inner.published.last_error.clone(),
            last_compile_time: inner.published.last_compile_time,
            decisions: inner.learner.decisions(),
        }
    }
}

impl Learning for SiteCore {
    fn learn(&self, tick: u64) -> Step {
        let mut inner = self.lock();
        let Inner { published, learner } = &mut *inner;
        learner.step(tick, &self.counters, &mut |p: &Plan| {
            self.install(published, p).map_err(|e| e.to_string())
        })
    }
}

impl Drop for SiteCore {
    fn drop(&mut self) {
        let inner = self.inner.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = inner.published.current.take() {
            // Unpublish first: no caller holds the site any more, but a
            // caller may still be returning into the thunk.
            self.engine.republish(&self.entry, 0, Some(old));
        }
        // No published thunk leads to the stubs any more; thunks retired
        // above may still call them until their grace period ends, which
        // ends no later than the stubs' own.
        if let Some(stubs) = inner.published.stubs.take() {
            self.engine.retire_code(stubs.code);
        }
        self.counters.retire();
    }
}

impl<F: SiteFn> fmt::Debug for Site<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.stats(), f)
    }
}
