//! One site's learning loop: counts in, decision out, plan installed.

use crate::counters::SiteCounters;
use crate::counts::Counts;
use crate::plan::Plan;
use crate::policy::{Decision, Observation, Policy, PolicyState};

/// What one learning step did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing changed.
    Kept,
    /// Counting started over; the plan stays.
    Reset,
    /// A new plan is installed; `compiled` says whether it took a thunk
    /// build (a bypass does not).
    Installed { compiled: bool },
    /// The new plan could not be installed; the site is a plain indirect
    /// call (the error is in the site's statistics).
    Failed,
}

/// Installs a plan on a site: compile and publish (or bypass). Returns
/// whether code was compiled, or why it failed (the site must then be a
/// plain indirect call).
pub trait Installer {
    fn install(&mut self, plan: &Plan) -> Result<bool, String>;
}

impl<F: FnMut(&Plan) -> Result<bool, String>> Installer for F {
    fn install(&mut self, plan: &Plan) -> Result<bool, String> {
        self(plan)
    }
}

/// A site's policy and what it needs between decisions.
#[derive(Debug)]
pub struct Learner {
    policy: Box<dyn Policy>,
    installed: Plan,
    /// Tick at which `installed` (or the last reset) took effect.
    since: u64,
    /// The snapshot of the previous decision, and its epoch.
    prev: Counts,
    prev_epoch: u64,
    /// The last counts taken under a counting-everything plan, for
    /// statistics (hits per slot of the last profile).
    last_full: Option<(Plan, Counts)>,
    decisions: u64,
}

impl Learner {
    /// A learner for `policy`, starting at `tick`. Returns it and the plan
    /// to install first.
    pub fn new(mut policy: Box<dyn Policy>, tick: u64) -> (Self, Plan) {
        let first = policy.initial_plan(tick);
        let learner = Learner {
            policy,
            installed: Plan::bypass(),
            since: tick,
            prev: Counts::default(),
            prev_epoch: u64::MAX,
            last_full: None,
            decisions: 0,
        };
        (learner, first)
    }

    /// Installs `plan` now (the first plan, or one set from outside).
    pub fn install(
        &mut self,
        plan: Plan,
        tick: u64,
        counters: &SiteCounters,
        installer: &mut dyn Installer,
    ) -> Step {
        counters.begin_epoch(&plan.targets, self.policy.counter_config());
        self.since = tick;
        self.prev = Counts::default();
        self.prev_epoch = counters.epoch();
        match installer.install(&plan) {
            Ok(compiled) => {
                self.installed = plan;
                Step::Installed { compiled }
            }
            Err(_) => {
                self.installed = Plan::bypass();
                counters.begin_epoch(&[], self.policy.counter_config());
                self.prev_epoch = counters.epoch();
                self.policy.install_failed(tick);
                Step::Failed
            }
        }
    }

    /// One decision at `tick`.
    pub fn step(
        &mut self,
        tick: u64,
        counters: &SiteCounters,
        installer: &mut dyn Installer,
    ) -> Step {
        let epoch_counts = counters.snapshot();
        let epoch = counters.epoch();
        let window = if epoch == self.prev_epoch {
            epoch_counts.since(&self.prev)
        } else {
            epoch_counts.clone()
        };
        if self.installed.counting == crate::Counting::All && epoch_counts.calls > 0 {
            self.last_full = Some((self.installed.clone(), epoch_counts.clone()));
        }
        let decision = self.policy.decide(&Observation {
            tick,
            installed: &self.installed,
            ticks_installed: tick.saturating_sub(self.since).max(1),
            window: &window,
            epoch: &epoch_counts,
        });
        self.decisions += 1;
        match decision {
            Decision::Keep => {
                self.prev = epoch_counts;
                self.prev_epoch = epoch;
                Step::Kept
            }
            Decision::Reset => {
                counters.begin_epoch(&self.installed.targets, self.policy.counter_config());
                self.since = tick;
                self.prev = Counts::default();
                self.prev_epoch = counters.epoch();
                Step::Reset
            }
            Decision::Install(plan) => self.install(plan, tick, counters, installer),
        }
    }

    /// Replaces the policy (the site then installs `first`, returned).
    pub fn replace_policy(&mut self, mut policy: Box<dyn Policy>, tick: u64) -> Plan {
        let first = policy.initial_plan(tick);
        self.policy = policy;
        self.last_full = None;
        first
    }

    pub fn policy_name(&self) -> &'static str {
        self.policy.name()
    }

    pub fn state(&self) -> PolicyState {
        self.policy.state()
    }

    pub fn installed(&self) -> &Plan {
        &self.installed
    }

    /// Decisions taken so far.
    pub fn decisions(&self) -> u64 {
        self.decisions
    }

    /// The last profile's plan and counts (hits per slot are known only
    /// while a site counts everything).
    pub fn last_profile(&self) -> Option<&(Plan, Counts)> {
        self.last_full.as_ref()
    }
}
