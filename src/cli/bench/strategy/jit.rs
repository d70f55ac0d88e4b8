//! `jit`: one hotcall site per workload site, learning with the engine's
//! default policy. The engine runs no background thread
//! (`EngineConfig::manual`): the harness takes one learning round
//! (`Engine::tick`) after every chunk of `CHUNK_LEN` calls, so runs are
//! deterministic (and `--count` repeatable), and far more often than the
//! default 20 ms background period. The rounds' time is not in
//! `ns_per_call` (a background thread would spend it on another core); it
//! is reported as `learning_ns_per_call`.

use hotcall::workload::{Callback, Workload};

use super::sites::{SitesCell, manual_engine};
use super::{BuildError, BuildOptions, Cell};

pub fn build(w: &Workload, o: BuildOptions) -> Result<Box<dyn Cell>, BuildError> {
    let engine = manual_engine(o)?;
    let sites = (0..w.site_count())
        .map(|i| engine.named_site::<Callback>(format!("{}#{i}", w.name())))
        .collect();
    Ok(Box::new(SitesCell::new(engine, sites, true)))
}
