//! `jit-fixed` (pointer entry): one hotcall site per workload site,
//! promoted once by hand with the site's true hot targets
//! ([`Workload::promoted_sites`]) and never changed. What a JIT thunk gives
//! when the hot set is known; the learning strategy `jit` must come close
//! to it. A site with no hot target stays a plain indirect call through the
//! site (policy `Off`).

use hotcall::workload::Workload;

use super::sites::{SitesCell, manual_engine};
use super::{BuildError, BuildOptions, Cell};

pub fn build(w: &Workload, o: BuildOptions) -> Result<Box<dyn Cell>, BuildError> {
    let engine = manual_engine(o)?;
    let sites = w.promoted_sites(&engine)?;
    Ok(Box::new(SitesCell::new(engine, sites, false)))
}
