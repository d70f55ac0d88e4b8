//! `patch` (pointer entry): one Patch site per workload site (one thunk
//! for life, retargeted in place, never recompiled), learning with the
//! engine's default policy like `jit`: one `Engine::tick` after every chunk
//! of calls, which also completes pending retargets.
//!
//! A Patch thunk's slot count is fixed when it is made: the default
//! policy's `max_slots` (4), so that the policy is never cut short by the
//! thunk (`hotcall`'s plan fitting clamps it anyway).

use hotcall::AdaptiveConfig;
use hotcall::workload::{Callback, Workload};

use super::sites::{SitesCell, manual_engine};
use super::{BuildError, BuildOptions, Cell};

/// Slots of a learning Patch site: the default policy's most promoted.
pub fn learning_slots() -> usize {
    AdaptiveConfig::default().max_slots
}

pub fn build(w: &Workload, o: BuildOptions) -> Result<Box<dyn Cell>, BuildError> {
    let engine = manual_engine(o)?;
    let sites = (0..w.site_count())
        .map(|i| engine.named_patch_site::<Callback>(format!("{}#{i}", w.name()), learning_slots()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Box::new(SitesCell::new(engine, sites, true)))
}
