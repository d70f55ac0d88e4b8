//! `hotcall-policy`: deciding what a dispatch site should promote.
//!
//! * [`calibration`]: what calls cost on the running CPU (measured by
//!   `hotcall`, loaded, or defaults), checked against sanity bounds;
//! * [`counters`]: per-thread counters that generated code feeds through
//!   two hooks, aggregated off the call path;
//! * [`Counts`]: a site's counts, summed over threads;
//! * [`policy`]: the [`Policy`] trait and the policies `Adaptive` (the
//!   default), `Seed` (the 2019 RFC), `Fixed` and `Off`;
//! * [`Learner`]: one site's loop of snapshot, decision and install;
//! * [`Scheduler`]: when sites learn (a background thread or `tick()`);
//! * [`publish`]: the publish/retire protocol the sites' entries follow
//!   (checked under loom).
//!
//! Nothing here generates code: a decision is a [`Plan`] (target addresses
//! in slot order, and how much to count), and the `hotcall` crate turns it
//! into a thunk. That keeps the policies deterministic and testable on
//! their own.

pub mod calibration;
pub mod counters;
mod counts;
mod learner;
mod plan;
pub mod policy;
pub mod publish;
mod scheduler;
mod sync;

pub use calibration::{Calibration, CalibrationSource};
pub use counters::{CounterConfig, MAX_CANDIDATES, Replacement, SiteCookie, SiteCounters};
pub use counts::{Counts, TargetCount};
pub use learner::{Installer, Learner, Step};
pub use plan::{Counting, MAX_SLOTS, Plan};
pub use policy::{
    Adaptive, AdaptiveConfig, CostModel, Decision, Fixed, Observation, Off, Policy, PolicyConfig,
    PolicyState, Seed, SeedConfig,
};
pub use scheduler::{Learning, ScheduleConfig, Scheduler, SchedulerStats, TickReport};
