//! The type-independent part of a Patch site: the thunk, the retarget
//! protocol, counting, and learning (the scheduler drives it as it drives
//! JIT sites).

use std::sync::{Arc, Mutex, MutexGuard};

use hotcall_jit::patch::{MissExit, PatchThunk};
use hotcall_jit::{JitError, ThunkCompiler, ThunkSig};
use hotcall_policy::publish::{self, EntryCell, Retarget, SlotTable};
use hotcall_policy::{
    CounterConfig, Counting, Learner, Learning, Plan, PolicyConfig, SiteCounters, Step,
};

use super::fit::{Fitted, Reach};
use crate::error::Error;
use crate::runtime::{EngineShared, HookStubs};
use crate::site::SiteOptions;
use crate::stats::{CandidateStats, PatchSiteStats, PatchSlotStats, RetargetReport};
use crate::symbols;

/// The slots, what the thunk counts, and the site's statistics.
struct SiteState {
    /// The slots' retarget protocol (`hotcall_policy::publish::Retarget`):
    /// what each wants, holds and branches to, and the grace periods
    /// waiting slots wait for.
    slots: Retarget,
    /// What the thunk counts now, and whether it is bypassed.
    counting: Counting,
    bypass: bool,
    /// The counter settings of the current policy (a completion starts a
    /// new counting epoch with them).
    counter_config: CounterConfig,
    /// The branch word of a static entry stub that goes to this site (its
    /// current entry), if one is attached.
    static_stub: Option<usize>,
    /// The policy is the `Fixed` one a retarget by hand installed: the next
    /// retarget by hand installs its plan without building a new policy
    /// (a `Fixed` policy only ever keeps what was installed).
    by_hand: bool,
}

impl SiteState {
    /// Whether some slot waits for its grace period.
    fn is_pending(&self) -> bool {
        self.slots.is_pending()
    }
}

/// Everything behind the site's lock. Retargets, learning steps and
/// completions take it; calls never do.
struct Inner {
    learner: Learner,
    site: SiteState,
}

pub(crate) struct PatchCore {
    /// Where calls go: the thunk, its counting entry, or 0 (bypass: a plain
    /// indirect call). The only word the call path reads; switched with
    /// `EntryCell::store` (nothing is freed while the site lives).
    pub(super) entry: EntryCell,
    thunk: Option<PatchThunk>,
    stubs: Option<HookStubs>,
    sig: ThunkSig,
    name: Option<String>,
    engine: Arc<EngineShared>,
    counters: Arc<SiteCounters>,
    reach: Reach,
    inner: Mutex<Inner>,
}

impl PatchCore {
    /// A site with a thunk of `slots` slots whose counting entry calls the
    /// site's entry stub, learning with `options`' policy (or the
    /// engine's), registered with the engine's scheduler.
    pub(super) fn new(
        engine: Arc<EngineShared>,
        sig: ThunkSig,
        slots: usize,
        options: SiteOptions,
    ) -> Result<Arc<Self>, Error> {
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
        let template = super::template(&sig, slots, engine.hardened)?;
        let config = options.policy.unwrap_or_else(|| engine.policy.clone());
        // The first install starts the counting epoch with the policy's
        // settings.
        let counters = SiteCounters::new(CounterConfig::default());
        let backend = memory.backend();
        let built = engine
            .hook_stubs(counters.cookie().value(), &sig)
            .and_then(|stubs| {
                match PatchThunk::install_with(memory, &template, Some(stubs.entry)) {
                    Ok(thunk) => Ok((stubs, thunk)),
                    Err(e) => {
                        // Never reachable: no thread can be in the stubs.
                        engine.retire_code(stubs.code);
                        Err(e.into())
                    }
                }
            });
        let (stubs, thunk) = match built {
            Ok(b) => b,
            Err(e) => {
                counters.retire();
                return Err(e);
            }
        };
        let reach = Reach::new(
            backend,
            (0..thunk.slot_count())
                .map(|k| (thunk.branches()[k].kind, thunk.branch_address(k) as u64))
                .collect(),
        );
        let tick = engine.scheduler.current_tick();
        let policy = Fitted::build(&config, slots, reach.clone());
        let counter_config = policy.counter_config();
        let (learner, first) = Learner::new(policy, tick);
        let core = Arc::new(PatchCore {
            entry: EntryCell::new(thunk.entry()),
            thunk: Some(thunk),
            stubs: Some(stubs),
            sig,
            name: options.name,
            engine,
            counters,
            reach,
            inner: Mutex::new(Inner {
                learner,
                site: SiteState {
                    slots: Retarget::new(slots),
                    counting: Counting::None,
                    bypass: false,
                    counter_config,
                    static_stub: None,
                    by_hand: false,
                },
            }),
        });
        {
            let mut inner = core.lock();
            let Inner { learner, site } = &mut *inner;
            learner.install(first, tick, &core.counters, &mut |p: &Plan| {
                core.install(site, p).map(|_| false)
            });
        }
        let weak = Arc::downgrade(&core);
        core.engine.scheduler.register(weak);
        Ok(core)
    }

    pub(super) fn thunk(&self) -> &PatchThunk {
        self.thunk.as_ref().expect("installed until dropped")
    }

    pub(super) fn sig(&self) -> &ThunkSig {
        &self.sig
    }

    pub(super) fn hardened(&self) -> bool {
        self.engine.hardened
    }

    fn stubs(&self) -> &HookStubs {
        self.stubs.as_ref().expect("installed until dropped")
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Updates are a few stores each; a panic cannot tear them.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Checks a hand-made target list: at most the slot count, no null or
    /// repeated target, every target in direct-branch reach of every slot.
    fn check(&self, targets: &[usize]) -> Result<(), Error> {
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
        for &t in targets {
            for k in 0..thunk.slot_count() {
                thunk.check_reach(k, t)?;
            }
        }
        Ok(())
    }

    /// Promotes `targets` by hand: the site's policy becomes
    /// [`PolicyConfig::Fixed`] (it stops learning), then the retarget
    /// protocol runs (see the module docs of `crate::patch`).
    pub(super) fn retarget_by_hand(&self, targets: &[usize]) -> Result<RetargetReport, Error> {
        self.check(targets)?;
        let tick = self.engine.scheduler.current_tick();
        let mut inner = self.lock();
        let Inner { learner, site } = &mut *inner;
        let as_u64: Vec<u64> = targets.iter().map(|&t| t as u64).collect();
        let plan = if site.by_hand {
            Plan::new(as_u64, Counting::None)
        } else {
            let plan = self.replace_policy(learner, site, &PolicyConfig::Fixed(as_u64), tick);
            site.by_hand = true;
            plan
        };
        let mut result = Ok(RetargetReport::default());
        learner.install(plan, tick, &self.counters, &mut |p: &Plan| {
            result = self.apply(site, p);
            if let Err(e) = &result {
                // Checked above, so this does not happen; if it did, the
                // learner's contract holds: a failed install is a bypass.
                self.bypass(site);
                return Err(e.to_string());
            }
            Ok(false)
        });
        result
    }

    /// Gives the site a new policy, which starts from its initial plan now.
    pub(super) fn set_policy(&self, policy: PolicyConfig) {
        let tick = self.engine.scheduler.current_tick();
        let mut inner = self.lock();
        let Inner { learner, site } = &mut *inner;
        let plan = self.replace_policy(learner, site, &policy, tick);
        learner.install(plan, tick, &self.counters, &mut |p: &Plan| {
            self.install(site, p).map(|_| false)
        });
    }

    /// Gives the learner `config`, fitted to this thunk; returns its first
    /// plan.
    fn replace_policy(
        &self,
        learner: &mut Learner,
        site: &mut SiteState,
        config: &PolicyConfig,
        tick: u64,
    ) -> Plan {
        let policy = Fitted::build(config, site.slots.slot_count(), self.reach.clone());
        site.counter_config = policy.counter_config();
        site.by_hand = false;
        learner.replace_policy(policy, tick)
    }

    /// A learner's installer: [`PatchCore::apply`], and if the plan cannot
    /// be applied (the policy is fitted to the thunk, so it should not
    /// happen), a bypass, as the learner expects of a failed install.
    fn install(&self, site: &mut SiteState, plan: &Plan) -> Result<RetargetReport, String> {
        self.apply(site, plan).map_err(|e| {
            self.bypass(site);
            e.to_string()
        })
    }

    /// Sends calls around the thunk (a plain indirect call) with every slot
    /// disabled and nothing counted.
    fn bypass(&self, site: &mut SiteState) -> RetargetReport {
        let report = self.retarget_locked(site, &[]);
        self.set_counting(site, Counting::None, true);
        report
    }

    /// Makes `plan` what the site runs: retargets the slots (a bypass
    /// disables them all) and sets what the thunk counts and where calls
    /// enter. An invalid plan changes nothing.
    fn apply(&self, site: &mut SiteState, plan: &Plan) -> Result<RetargetReport, Error> {
        if plan.is_bypass() {
            return Ok(self.bypass(site));
        }
        let targets: Vec<usize> = plan.targets.iter().map(|&t| t as usize).collect();
        self.check(&targets)?;
        let report = self.retarget_locked(site, &targets);
        self.set_counting(site, plan.counting, false);
        Ok(report)
    }

    /// Aims the miss exit and the entry for `counting` (`bypass`: no entry
    /// at all). Counting every call is the counting entry (the thunk's own
    /// code does not change); counting misses is the miss exit aimed at
    /// the site's miss stub. Both are single stores of words that threads
    /// may be running, to destinations that are all correct (see
    /// `hotcall_jit::patch`).
    fn set_counting(&self, site: &mut SiteState, counting: Counting, bypass: bool) {
        let thunk = self.thunk();
        let stubs = self.stubs();
        let exit = if counting == Counting::Misses && !bypass {
            match thunk.miss_exit() {
                MissExit::Tail { reg } => stubs.miss_tail[usize::from(reg)] as usize,
                MissExit::Call => stubs.miss as usize,
            }
        } else {
            thunk.miss_fallback()
        };
        debug_assert_ne!(exit, 0, "a tail miss exit's register has a miss stub");
        if thunk.miss_exit_target() != exit {
            // SAFETY: `exit` is the fallback or the site's miss stub of the
            // kind this thunk's miss exit needs (the tail stub for its
            // register, or the returning miss hook stub); the stubs live as
            // long as the thunk (both are freed when the site is dropped,
            // the stubs last).
            unsafe { thunk.aim_miss_exit(exit) }
                .expect("the stubs and the fallback are in reach of the thunk");
        }
        let entry = if bypass {
            0
        } else if counting == Counting::All {
            thunk
                .counting_entry()
                .expect("installed with a counting entry")
        } else {
            thunk.entry()
        };
        self.publish_entry(site, entry);
        site.counting = if bypass { Counting::None } else { counting };
        site.bypass = bypass;
    }

    /// Sends callers to `entry` (0: a plain indirect call): the site's entry
    /// word, and the attached static stub's branch.
    fn publish_entry(&self, site: &SiteState, entry: usize) {
        // Nothing is retired: the thunk lives as long as the site, and the
        // thunk's bytes were written long before, at creation.
        self.entry.store(entry);
        if let Some(field) = site.static_stub {
            let to = if entry == 0 {
                crate::call::static_entry::miss_stub(self.engine.hardened)
            } else {
                entry
            };
            crate::link::aim_stub_field(field, to)
                .expect("the stub reached the thunk when it was attached");
        }
    }

    /// Attaches a static entry stub (its branch word at `field`): from now
    /// on it goes where the site's calls go.
    pub(super) fn attach_static_stub(&self, field: usize) -> Result<(), Error> {
        let mut inner = self.lock();
        let site = &mut inner.site;
        let thunk = self.thunk();
        // Check every destination the stub may get before aiming it at any.
        for to in [
            Some(thunk.entry()),
            thunk.counting_entry(),
            Some(crate::call::static_entry::miss_stub(self.engine.hardened)),
        ]
        .into_iter()
        .flatten()
        {
            crate::link::check_stub_reach(field, to)?;
        }
        site.static_stub = Some(field);
        let entry = self.entry.peek();
        self.publish_entry(site, entry);
        Ok(())
    }

    /// Detaches the static stub: the site no longer writes it.
    pub(super) fn detach_static_stub(&self) {
        self.lock().site.static_stub = None;
    }

    /// The retarget protocol's first half (see `crate::patch`): disables
    /// changed slots, enables at once those whose branch already goes to
    /// their target, starts a grace period for the others. Never blocks.
    fn retarget_locked(&self, site: &mut SiteState, targets: &[usize]) -> RetargetReport {
        // SAFETY: `Slots` is this site's thunk, whose slots were all
        // disabled when `site.slots` was created with it and change only
        // through `site.slots` (under the site's lock). Callers are pinned
        // from before they load the entry until their call returns
        // (`PatchSite::call` borrows their `Pinned`). Targets were checked
        // (`check`: count, distinct, reach) by every caller of this.
        let r = unsafe { site.slots.retarget(&Slots(self.thunk()), targets) };
        RetargetReport {
            enabled_now: r.enabled_now,
            pending: r.pending,
            cleared: r.cleared,
            completed_previous: r.completed_previous,
        }
    }

    /// Completes a pending retarget whose grace period has passed (patches
    /// the branches, serializes the cores, enables the slots) and, if one
    /// completed, starts a new counting epoch: counts then describe the
    /// plan in effect, not the calls that missed while its slots waited.
    /// Returns whether one completed.
    pub(super) fn poll(&self) -> bool {
        // Helps the epoch advance and runs due deferred closures.
        publish::collect();
        let mut inner = self.lock();
        let Inner { learner, site } = &mut *inner;
        let completed = self.complete_if_ready(site);
        if completed {
            self.counters
                .begin_epoch(&learner.installed().targets, site.counter_config);
        }
        completed
    }

    /// Whether some slot waits for its grace period.
    pub(super) fn is_pending(&self) -> bool {
        self.lock().site.is_pending()
    }

    /// Patches, serializes and enables every slot whose grace period has
    /// passed. Returns whether there was one.
    fn complete_if_ready(&self, site: &mut SiteState) -> bool {
        // SAFETY: as in `retarget_locked`.
        unsafe { site.slots.complete(&Slots(self.thunk())) }
    }

    pub(super) fn stats(&self) -> PatchSiteStats {
        let counts = self.counters.snapshot();
        let inner = self.lock();
        let site = &inner.site;
        let thunk = self.thunk();
        let all = site.counting == Counting::All;
        let installed = &inner.learner.installed().targets;
        let hits_of = |t: Option<usize>| {
            let k = installed.iter().position(|&p| Some(p as usize) == t)?;
            all.then(|| counts.hits.get(k).copied()).flatten()
        };
        let entry = self.entry.peek();
        PatchSiteStats {
            name: self.name.clone(),
            signature: self.sig.to_string(),
            entry: thunk.entry(),
            current_entry: (entry != 0).then_some(entry),
            slots: (0..thunk.slot_count())
                .map(|k| {
                    let slot = site.slots.slot(k);
                    PatchSlotStats {
                        wanted: slot.wanted,
                        enabled: slot.enabled,
                        branch: slot.branch,
                        hits: hits_of(slot.wanted),
                    }
                })
                .collect(),
            miss_exit: thunk.miss_exit(),
            policy: inner.learner.policy_name(),
            state: inner.learner.state(),
            counting: site.counting,
            calls: counts.calls,
            misses: counts.misses,
            candidates: counts
                .candidates
                .iter()
                .take(8)
                .map(|c| CandidateStats {
                    target: c.target as usize,
                    symbol: symbols::name_of(c.target as usize),
                    count: c.count,
                })
                .collect(),
            decisions: inner.learner.decisions(),
            retargets: site.slots.retargets(),
            patches: site.slots.patches(),
            completions: site.slots.completions(),
            pending: site.is_pending(),
            serialized: site.slots.serialized(),
        }
    }
}

impl Learning for PatchCore {
    /// Completes what is due (so that a tick makes pending retargets take
    /// effect), then one learning step, whose plan becomes a retarget.
    fn learn(&self, tick: u64) -> Step {
        self.poll();
        let mut inner = self.lock();
        let Inner { learner, site } = &mut *inner;
        if site.is_pending() {
            // A retarget still waits for its grace period: its slots are
            // disabled, so the calls it promotes miss, and those misses
            // would look like a phase change (or churn, to `Adaptive`).
            // The policy decides once the plan is in effect and counted
            // from its own epoch.
            return Step::Kept;
        }
        learner.step(tick, &self.counters, &mut |p: &Plan| {
            self.install(site, p).map(|_| false)
        })
    }
}

/// A Patch thunk's slots as the retarget protocol writes them.
struct Slots<'a>(&'a PatchThunk);

impl SlotTable for Slots<'_> {
    fn disable(&self, slot: usize) {
        self.0.disable(slot);
    }

    unsafe fn patch(&self, slot: usize, target: usize) {
        // SAFETY: forwarded: `SlotTable::patch`'s contract is
        // `write_branch`'s (no thread can take the slot's branch, and the
        // cores are serialized before it is enabled).
        unsafe { self.0.write_branch(slot, target) }
            .expect("reach was checked when the target was requested");
    }

    fn serialize(&self) -> bool {
        PatchThunk::serialize_cores()
    }

    unsafe fn enable(&self, slot: usize, target: usize) {
        // SAFETY: forwarded: `SlotTable::enable`'s contract is `enable`'s
        // (the branch goes to `target`, cores serialized since, `target` in
        // no other enabled slot).
        unsafe { self.0.enable(slot, target) };
    }
}

impl Drop for PatchCore {
    fn drop(&mut self) {
        let Some(thunk) = self.thunk.take() else {
            return;
        };
        // No caller holds the site, but one may still be inside the thunk
        // (or returning into it: miss path, call-form hits) or in its
        // stubs. Unpublish, then free the thunk after a grace period, and
        // the stubs after theirs, which ends no earlier.
        self.entry.replace(0, Some(thunk), |thunk: PatchThunk| {
            // SAFETY: the site is gone, so no thread can enter the thunk,
            // and `replace` runs this only after every thread pinned when
            // the entry was cleared has unpinned (callers stay pinned
            // across their calls).
            unsafe { thunk.release() };
        });
        if let Some(stubs) = self.stubs.take() {
            self.engine.retire_code(stubs.code);
        }
        self.counters.retire();
    }
}
