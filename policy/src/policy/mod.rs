//! Policies: from a site's counts to what it should promote.
//!
//! A [`Policy`] is a small state machine owned by one site. The scheduler
//! calls [`Policy::decide`] once per tick with what the site counted, and
//! installs the plan it returns. Policies never touch code or counters
//! themselves, which keeps them deterministic and testable without a
//! code generator.

use std::fmt;
use std::sync::Arc;

use crate::counters::CounterConfig;
use crate::counts::Counts;
use crate::plan::Plan;

mod adaptive;
mod fixed;
pub mod predict;
mod seed;

pub use adaptive::{Adaptive, AdaptiveConfig, CostModel};
pub use fixed::{Fixed, Off};
pub use seed::{Seed, SeedConfig};

/// What a policy sees at each decision.
#[derive(Clone, Copy, Debug)]
pub struct Observation<'a> {
    /// The scheduler's tick number.
    pub tick: u64,
    /// The plan the site runs.
    pub installed: &'a Plan,
    /// Ticks since `installed` (or the last reset) took effect, this one
    /// included: 1 at the first decision after an install.
    pub ticks_installed: u64,
    /// Counts since the previous decision.
    pub window: &'a Counts,
    /// Counts since `installed` (or the last reset) took effect.
    pub epoch: &'a Counts,
}

/// What the scheduler should do with a site.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Leave it as it is.
    Keep,
    /// Keep the plan but start counting from zero.
    Reset,
    /// Compile and publish this plan (counting starts from zero).
    Install(Plan),
}

/// Where a policy stands, for statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(tag = "state", rename_all = "snake_case"))]
pub enum PolicyState {
    /// Counting every call to find the hot targets.
    Profiling,
    /// Hot targets promoted; only misses counted.
    Promoted,
    /// Megamorphic: a plain indirect call, nothing counted, until a probe at
    /// `reprobe_at` (a tick number).
    Bypass { reprobe_at: u64 },
    /// Targets set by hand; nothing learned.
    Fixed,
    /// Always a plain indirect call.
    Off,
}

impl fmt::Display for PolicyState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyState::Profiling => f.write_str("profiling"),
            PolicyState::Promoted => f.write_str("promoted"),
            PolicyState::Bypass { reprobe_at } => {
                write!(f, "bypass (re-probe at tick {reprobe_at})")
            }
            PolicyState::Fixed => f.write_str("fixed"),
            PolicyState::Off => f.write_str("off"),
        }
    }
}

/// A site's learning policy.
pub trait Policy: Send + fmt::Debug {
    /// Short name for statistics (`"adaptive"`, `"seed"`, ...).
    fn name(&self) -> &'static str;

    /// How the site's threads should count misses.
    fn counter_config(&self) -> CounterConfig {
        CounterConfig::default()
    }

    /// The plan a new site starts with.
    fn initial_plan(&mut self, tick: u64) -> Plan;

    /// One decision (see [`Observation`]).
    fn decide(&mut self, obs: &Observation<'_>) -> Decision;

    /// The plan returned by the last decision could not be installed (the
    /// site is now a plain indirect call, nothing counted).
    fn install_failed(&mut self, _tick: u64) {}

    /// Where the policy stands.
    fn state(&self) -> PolicyState;
}

/// Which policy a site gets: chosen per engine, overridable per site.
#[derive(Clone, Default)]
pub enum PolicyConfig {
    /// Learn with [`Adaptive`] (the default).
    #[default]
    Adaptive,
    /// [`Adaptive`] with these settings.
    AdaptiveWith(AdaptiveConfig),
    /// The 2019 seed's algorithm ([`Seed`]) with its parameters.
    Seed(SeedConfig),
    /// These targets, promoted by hand, nothing learned or counted.
    Fixed(Vec<u64>),
    /// Always a plain indirect call.
    Off,
    /// A policy of your own, made fresh for each site.
    Custom(Arc<dyn Fn() -> Box<dyn Policy> + Send + Sync>),
}

impl PolicyConfig {
    /// A fresh policy for one site.
    pub fn build(&self) -> Box<dyn Policy> {
        match self {
            PolicyConfig::Adaptive => Box::new(Adaptive::new(AdaptiveConfig::default())),
            PolicyConfig::AdaptiveWith(c) => Box::new(Adaptive::new(c.clone())),
            PolicyConfig::Seed(c) => Box::new(Seed::new(c.clone())),
            PolicyConfig::Fixed(t) => Box::new(Fixed::new(t.clone())),
            PolicyConfig::Off => Box::new(Off),
            PolicyConfig::Custom(make) => make(),
        }
    }
}

impl fmt::Debug for PolicyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyConfig::Adaptive => f.write_str("Adaptive"),
            PolicyConfig::AdaptiveWith(c) => f.debug_tuple("Adaptive").field(c).finish(),
            PolicyConfig::Seed(c) => f.debug_tuple("Seed").field(c).finish(),
            PolicyConfig::Fixed(t) => f.debug_tuple("Fixed").field(t).finish(),
            PolicyConfig::Off => f.write_str("Off"),
            PolicyConfig::Custom(_) => f.write_str("Custom"),
        }
    }
}

/// Calls per target over an epoch: promoted slots' hits and the miss
/// candidates, most frequent first (ties by address).
pub(crate) fn ranked_targets(installed: &Plan, counts: &Counts) -> Vec<(u64, u64)> {
    let mut ranked: Vec<(u64, u64)> = installed
        .targets
        .iter()
        .zip(&counts.hits)
        .map(|(&t, &h)| (t, h + counts.candidate(t)))
        .collect();
    for c in &counts.candidates {
        if !installed.targets.contains(&c.target) {
            ranked.push((c.target, c.count));
        }
    }
    ranked.retain(|&(_, n)| n > 0);
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    ranked
}
