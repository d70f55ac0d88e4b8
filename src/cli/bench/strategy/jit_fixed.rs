//! `jit-fixed`: one hotcall site per workload site, promoted once by hand
//! with the site's true hot targets ([`Workload::promoted_sites`]) and never
//! changed. What a JIT thunk gives when the hot set is known; the learning
//! strategy `jit` must come close to it. A site with no hot target stays a
//! plain indirect call through the site (policy `Off`).

use hotcall::workload::Workload;
use hotcall::{Engine, EngineConfig};

use super::Cell;
use super::sites::SitesCell;

pub fn build(w: &Workload) -> Result<Box<dyn Cell>, String> {
    // Manual schedule: no background learning thread during measurements.
    let engine = Engine::with_config(EngineConfig::manual());
    if let Some(e) = engine.stats().disabled {
        return Err(format!("code generation is off: {e}"));
    }
    let sites = w.promoted_sites(&engine)?;
    Ok(Box::new(SitesCell::new(engine, sites, false)))
}
