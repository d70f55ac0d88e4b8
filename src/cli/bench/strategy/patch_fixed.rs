//! `patch-fixed` (pointer entry): one Patch site per workload site (one
//! thunk for life, retargeted in place), retargeted once by hand to the
//! site's true hot targets ([`Workload::hot_targets`]) and completed before
//! any measurement; never changed afterwards. The Patch counterpart of
//! `jit-fixed`; not the contract's `patch`, which learns.
//!
//! A Patch site has at least one slot, so a site with no hot target
//! (`uniform-16`, `phase`) keeps one disabled slot: every call passes its
//! compare and takes the thunk's miss path (an indirect call), which is
//! what a Patch site with nothing promoted costs.

use std::time::Duration;

use hotcall::workload::{Callback, SiteIndex, Workload};
use hotcall::{Engine, PatchSite};

use super::sites::{SitesCell, manual_engine};
use super::{BuildError, BuildOptions, Cell};

/// Longer than any grace period with no other thread pinned.
pub const COMPLETION_TIMEOUT: Duration = Duration::from_secs(10);

/// Slots of a site's Patch thunk: one per hot target, at least one.
pub fn slots_for(hot: &[Callback]) -> usize {
    hot.len().max(1)
}

pub fn build(w: &Workload, o: BuildOptions) -> Result<Box<dyn Cell>, BuildError> {
    let engine = manual_engine(o)?;
    let sites = patch_sites(&engine, w)?;
    Ok(Box::new(SitesCell::new(engine, sites, false)))
}

fn patch_sites(engine: &Engine, w: &Workload) -> Result<Vec<PatchSite<Callback>>, BuildError> {
    let sites = (0..w.site_count())
        .map(|i| {
            let hot = w.hot_targets(SiteIndex(i as u32));
            let site = engine
                .named_patch_site::<Callback>(format!("{}#{i}", w.name()), slots_for(&hot))?;
            site.retarget(&hot)?;
            Ok(site)
        })
        .collect::<Result<Vec<_>, BuildError>>()?;
    // Retargets complete after a grace period; measure only complete sites.
    for (i, site) in sites.iter().enumerate() {
        if !site.wait(COMPLETION_TIMEOUT) {
            return Err(BuildError::Failed(format!(
                "Patch site {i} of {} did not complete its retarget in {COMPLETION_TIMEOUT:?}",
                w.name()
            )));
        }
    }
    Ok(sites)
}
