//! Fitting a learning policy to a Patch thunk: a fixed number of slots, and
//! only targets within direct-branch reach of the thunk.
//!
//! A JIT thunk takes any number of targets up to eight and calls a far
//! target through an absolute call; a Patch thunk has the slot count it was
//! created with, and each slot exits through one direct branch word. So a
//! Patch site's policy must not plan what the thunk cannot run, *and must
//! know it*: a policy that believes a target promoted while its calls in
//! fact miss sees more misses than it predicted, takes that for a phase
//! change and profiles again, over and over. Hence two measures:
//!
//! * the built-in policies are configured for the slot count
//!   ([`for_slots`]: `Adaptive`'s `max_slots`, `Seed`'s `slots`);
//! * every policy is wrapped in [`Fitted`], which hides the calls of
//!   unreachable targets from the candidates it shows the policy (they stay
//!   in the call and miss totals: misses that no plan can remove, which is
//!   what they are) and trims any plan to reachable targets and the slot
//!   count (a `Custom` policy that wants more slots loses the extra ones).

use std::fmt;

use hotcall_jit::{BranchKind, IsaBackend};
use hotcall_policy::{
    AdaptiveConfig, CounterConfig, Counts, Decision, Observation, Plan, Policy, PolicyConfig,
    PolicyState,
};

/// Which targets every slot of one thunk can branch to directly.
#[derive(Clone)]
pub(crate) struct Reach {
    backend: &'static dyn IsaBackend,
    /// Each slot's branch: its kind and the address of its word.
    branches: Vec<(BranchKind, u64)>,
}

impl Reach {
    pub(crate) fn new(backend: &'static dyn IsaBackend, branches: Vec<(BranchKind, u64)>) -> Self {
        Reach { backend, branches }
    }

    /// Whether every slot can branch to `target` (a plan may put it in any
    /// slot).
    pub(crate) fn reaches(&self, target: u64) -> bool {
        self.branches
            .iter()
            .all(|&(kind, field)| self.backend.encode_branch(kind, field, target).is_ok())
    }
}

/// The policy configuration `config` with at most `slots` slots where the
/// policy has a setting for it.
pub(crate) fn for_slots(config: &PolicyConfig, slots: usize) -> PolicyConfig {
    match config {
        PolicyConfig::Adaptive => {
            let c = AdaptiveConfig::default();
            PolicyConfig::AdaptiveWith(AdaptiveConfig {
                max_slots: c.max_slots.min(slots),
                ..c
            })
        }
        PolicyConfig::AdaptiveWith(c) => PolicyConfig::AdaptiveWith(AdaptiveConfig {
            max_slots: c.max_slots.min(slots),
            ..c.clone()
        }),
        PolicyConfig::Seed(c) => {
            let mut c = c.clone();
            c.slots = c.slots.min(slots);
            PolicyConfig::Seed(c)
        }
        other => other.clone(),
    }
}

/// A policy whose plans fit one Patch thunk (see the module docs).
pub(crate) struct Fitted {
    inner: Box<dyn Policy>,
    slots: usize,
    reach: Reach,
}

impl Fitted {
    /// `config` fitted to `slots` slots reachable by `reach`.
    pub(crate) fn build(config: &PolicyConfig, slots: usize, reach: Reach) -> Box<dyn Policy> {
        Box::new(Fitted {
            inner: for_slots(config, slots).build(),
            slots,
            reach,
        })
    }

    fn fit(&self, mut plan: Plan) -> Plan {
        if !plan.is_bypass() {
            plan.targets.retain(|&t| self.reach.reaches(t));
            plan.targets.truncate(self.slots);
        }
        plan
    }

    /// `counts` without the candidates the thunk cannot promote.
    fn promotable(&self, counts: &Counts) -> Option<Counts> {
        if counts
            .candidates
            .iter()
            .all(|c| self.reach.reaches(c.target))
        {
            return None;
        }
        let mut c = counts.clone();
        c.candidates.retain(|c| self.reach.reaches(c.target));
        Some(c)
    }
}

impl Policy for Fitted {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn counter_config(&self) -> CounterConfig {
        self.inner.counter_config()
    }

    fn initial_plan(&mut self, tick: u64) -> Plan {
        let plan = self.inner.initial_plan(tick);
        self.fit(plan)
    }

    fn decide(&mut self, obs: &Observation<'_>) -> Decision {
        let window = self.promotable(obs.window);
        let epoch = self.promotable(obs.epoch);
        let seen = Observation {
            window: window.as_ref().unwrap_or(obs.window),
            epoch: epoch.as_ref().unwrap_or(obs.epoch),
            ..*obs
        };
        match self.inner.decide(&seen) {
            Decision::Install(plan) => Decision::Install(self.fit(plan)),
            other => other,
        }
    }

    fn install_failed(&mut self, tick: u64) {
        self.inner.install_failed(tick);
    }

    fn state(&self) -> PolicyState {
        self.inner.state()
    }
}

impl fmt::Debug for Fitted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fitted")
            .field("inner", &self.inner)
            .field("slots", &self.slots)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hotcall_jit::Arch;
    use hotcall_policy::{Counting, TargetCount};

    /// One slot at 0x1000_0000 on x86-64: ±2 GiB.
    fn reach() -> Reach {
        Reach::new(
            Arch::X86_64.backend(),
            vec![(BranchKind::Jump, 0x1000_0000)],
        )
    }

    const NEAR: u64 = 0x1000_4000;
    const FAR: u64 = 0x7f00_0000_0000;

    fn counts(candidates: &[(u64, u64)]) -> Counts {
        let total = candidates.iter().map(|c| c.1).sum();
        Counts {
            calls: total,
            misses: total,
            candidates: candidates
                .iter()
                .map(|&(target, count)| TargetCount { target, count })
                .collect(),
            ..Counts::default()
        }
    }

    #[test]
    fn built_in_policies_get_the_slot_count() {
        let PolicyConfig::AdaptiveWith(c) = for_slots(&PolicyConfig::Adaptive, 2) else {
            panic!("adaptive stays adaptive");
        };
        assert_eq!(c.max_slots, 2);
        let PolicyConfig::AdaptiveWith(c) = for_slots(&PolicyConfig::Adaptive, 8) else {
            panic!();
        };
        assert_eq!(
            c.max_slots,
            AdaptiveConfig::default().max_slots,
            "never more"
        );
        let PolicyConfig::Seed(c) = for_slots(&PolicyConfig::Seed(Default::default()), 1) else {
            panic!();
        };
        assert_eq!(c.slots, 1);
    }

    /// A profile dominated by a target the thunk cannot reach: the policy
    /// sees it as misses nothing can remove, so it promotes the reachable
    /// one only if that one alone is worth it, here not (bypass), and it
    /// never plans the far one.
    #[test]
    fn unreachable_targets_are_never_planned() {
        let mut p = Fitted::build(&PolicyConfig::Adaptive, 4, reach());
        let probe = p.initial_plan(0);
        assert_eq!(probe, Plan::probe());
        for (profile, want) in [
            (counts(&[(FAR, 900), (NEAR, 100)]), Plan::bypass()),
            (
                counts(&[(FAR, 300), (NEAR, 700)]),
                Plan::new(vec![NEAR], Counting::Misses),
            ),
        ] {
            let mut p = Fitted::build(&PolicyConfig::Adaptive, 4, reach());
            let installed = p.initial_plan(0);
            let d = p.decide(&Observation {
                tick: 1,
                installed: &installed,
                ticks_installed: 1,
                window: &profile,
                epoch: &profile,
            });
            assert_eq!(d, Decision::Install(want), "{profile:?}");
        }
    }

    #[test]
    fn plans_are_trimmed_to_the_slots() {
        let targets = vec![NEAR, NEAR + 16, FAR, NEAR + 32];
        let mut p = Fitted::build(&PolicyConfig::Fixed(targets), 2, reach());
        assert_eq!(p.initial_plan(0).targets, vec![NEAR, NEAR + 16]);
        let mut p = Fitted::build(&PolicyConfig::Off, 2, reach());
        assert!(p.initial_plan(0).is_bypass());
    }
}
