//! Policies that do not learn.

use crate::plan::{Counting, Plan};

use super::{Decision, Observation, Policy, PolicyState};

/// Targets promoted by hand: installed once, never counted or changed.
#[derive(Debug)]
pub struct Fixed {
    targets: Vec<u64>,
}

impl Fixed {
    pub fn new(targets: Vec<u64>) -> Self {
        Fixed { targets }
    }
}

impl Policy for Fixed {
    fn name(&self) -> &'static str {
        "fixed"
    }

    fn initial_plan(&mut self, _tick: u64) -> Plan {
        // No targets is still a thunk (every call a miss): what the host
        // asked for, e.g. to measure the miss path.
        Plan::new(self.targets.clone(), Counting::None)
    }

    fn decide(&mut self, _obs: &Observation<'_>) -> Decision {
        Decision::Keep
    }

    fn state(&self) -> PolicyState {
        PolicyState::Fixed
    }
}

/// Always a plain indirect call.
#[derive(Debug)]
pub struct Off;

impl Policy for Off {
    fn name(&self) -> &'static str {
        "off"
    }

    fn initial_plan(&mut self, _tick: u64) -> Plan {
        Plan::bypass()
    }

    fn decide(&mut self, _obs: &Observation<'_>) -> Decision {
        Decision::Keep
    }

    fn state(&self) -> PolicyState {
        PolicyState::Off
    }
}
