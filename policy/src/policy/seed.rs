//! The 2019 kernel RFC's algorithm ("dynamic indirect call promotion"),
//! reproduced with its parameters as defaults.
//!
//! Every call is counted (its thunks always count, as the RFC's per-CPU
//! statistics did). Per thread: hits on the promoted slots, misses on up to
//! `candidates` first-come-first-served candidate targets, and a catch-all
//! count; a thread with more than `catch_all_limit` catch-all misses
//! discards its candidates (done by the thread itself, in the counters).
//! When some thread has counted more than `relearn_after` candidate misses,
//! the next decision relearns: it sums all threads, ranks the top `ranked`
//! targets (hits and candidates together) and installs the top `slots` only
//! if the leader has more than `min_leader_hits` calls; either way counting
//! starts over.

use crate::counters::{CounterConfig, Replacement};
use crate::plan::{Counting, Plan};

use super::{Decision, Observation, Policy, PolicyState, ranked_targets};

/// The seed's parameters; `Default` gives the RFC's values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeedConfig {
    /// Promoted slots (the RFC: 2).
    pub slots: usize,
    /// First-come-first-served candidates per thread (4).
    pub candidates: usize,
    /// Relearn once a thread has more than this many candidate misses (1000).
    pub relearn_after: u64,
    /// A thread discards its candidates after more than this many catch-all
    /// misses (1000).
    pub catch_all_limit: u64,
    /// Targets ranked at a relearn (4).
    pub ranked: usize,
    /// Install only if the leader has more than this many calls (250).
    pub min_leader_hits: u64,
}

impl Default for SeedConfig {
    fn default() -> Self {
        SeedConfig {
            slots: 2,
            candidates: 4,
            relearn_after: 1000,
            catch_all_limit: 1000,
            ranked: 4,
            min_leader_hits: 250,
        }
    }
}

/// The seed's policy (see the module docs).
#[derive(Debug)]
pub struct Seed {
    config: SeedConfig,
    relearns: u64,
}

impl Seed {
    pub fn new(config: SeedConfig) -> Self {
        Seed {
            config,
            relearns: 0,
        }
    }

    /// Relearns performed so far.
    pub fn relearns(&self) -> u64 {
        self.relearns
    }
}

impl Policy for Seed {
    fn name(&self) -> &'static str {
        "seed"
    }

    fn counter_config(&self) -> CounterConfig {
        CounterConfig {
            candidates: self.config.candidates,
            replacement: Replacement::FirstCome {
                catch_all_limit: self.config.catch_all_limit,
            },
        }
    }

    fn initial_plan(&mut self, _tick: u64) -> Plan {
        Plan::probe()
    }

    fn decide(&mut self, obs: &Observation<'_>) -> Decision {
        if obs.epoch.max_thread_candidates <= self.config.relearn_after {
            return Decision::Keep;
        }
        self.relearns += 1;
        let ranked = ranked_targets(obs.installed, obs.epoch);
        let top = &ranked[..ranked.len().min(self.config.ranked)];
        match top.first() {
            Some(&(_, leader)) if leader > self.config.min_leader_hits => {
                let targets = top
                    .iter()
                    .take(self.config.slots)
                    .map(|&(t, _)| t)
                    .collect();
                Decision::Install(Plan::new(targets, Counting::All))
            }
            _ => Decision::Reset,
        }
    }

    fn state(&self) -> PolicyState {
        PolicyState::Profiling
    }
}
