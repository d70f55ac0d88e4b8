//! `jit-fixed`: one hotcall site per workload site, promoted once by hand
//! with the site's true hot targets ([`Workload::hot_targets`]) and never
//! changed. What a JIT thunk gives when the hot set is known; the learning
//! strategy `jit` must come close to it. A site with no hot target stays a
//! plain indirect call through the site (entry 0).

use hotcall::workload::{Call, Callback, Workload};
use hotcall::{Engine, Site, SiteMode};

use super::Cell;

struct OneSite {
    engine: Engine,
    site: Site<Callback>,
}

struct ManySites {
    engine: Engine,
    sites: Vec<Site<Callback>>,
}

impl Cell for OneSite {
    #[inline(never)]
    fn run(&self, calls: &[Call], x: u64) -> u64 {
        let pinned = self.engine.pin();
        calls
            .iter()
            .fold(x, |x, c| self.site.call(&pinned, c.target, (x,)))
    }

    fn detail(&self) -> String {
        describe(std::slice::from_ref(&self.site))
    }
}

impl Cell for ManySites {
    #[inline(never)]
    fn run(&self, calls: &[Call], x: u64) -> u64 {
        let pinned = self.engine.pin();
        calls.iter().fold(x, |x, c| {
            self.sites[c.site.get()].call(&pinned, c.target, (x,))
        })
    }

    fn detail(&self) -> String {
        describe(&self.sites)
    }
}

/// "N sites: k with a thunk (slots: ...), m plain".
fn describe(sites: &[Site<Callback>]) -> String {
    let stats: Vec<_> = sites.iter().map(Site::stats).collect();
    let promoted: Vec<_> = stats.iter().filter(|s| s.mode == SiteMode::Thunk).collect();
    let slots: usize = promoted.iter().map(|s| s.slots.len()).sum();
    let direct = promoted
        .iter()
        .flat_map(|s| &s.slots)
        .filter(|s| s.form == hotcall::CallForm::Direct)
        .count();
    let tail = promoted
        .iter()
        .flat_map(|s| &s.slots)
        .filter(|s| s.tail)
        .count();
    if sites.len() == 1 {
        match promoted.first() {
            Some(s) => format!(
                "thunk with {} slot(s): {direct} direct ({tail} tail jump), {} absolute",
                s.slots.len(),
                s.slots.len() - direct
            ),
            None => "no hot target: the site stays a plain indirect call".into(),
        }
    } else {
        format!(
            "{} sites: {} with a thunk ({slots} slots, {direct} direct, {tail} tail jump), {} plain",
            sites.len(),
            promoted.len(),
            sites.len() - promoted.len()
        )
    }
}

pub fn build(w: &Workload) -> Result<Box<dyn Cell>, String> {
    let engine = Engine::new();
    if let Some(e) = engine.stats().disabled {
        return Err(format!("code generation is off: {e}"));
    }
    let sites = w.promoted_sites(&engine)?;
    Ok(if sites.len() == 1 {
        let site = sites.into_iter().next().expect("one site");
        Box::new(OneSite { engine, site })
    } else {
        Box::new(ManySites { engine, sites })
    })
}
