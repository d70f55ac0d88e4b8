//! A cell that calls through hotcall sites, one per workload site: the
//! shape shared by `jit-fixed` (sites promoted once by hand) and `jit`
//! (sites that learn, one learning round per chunk).

use hotcall::workload::{Call, Callback};
use hotcall::{CallForm, Engine, Site, SiteMode};

use super::Cell;

pub struct SitesCell {
    engine: Engine,
    sites: Vec<Site<Callback>>,
    /// Run `Engine::tick` between chunks.
    learn: bool,
}

impl SitesCell {
    pub fn new(engine: Engine, sites: Vec<Site<Callback>>, learn: bool) -> Self {
        SitesCell {
            engine,
            sites,
            learn,
        }
    }

    /// One site: no per-call lookup, as a host with one call site has.
    #[inline(never)]
    fn run_one(&self, calls: &[Call], x: u64) -> u64 {
        let pinned = self.engine.pin();
        let site = &self.sites[0];
        calls
            .iter()
            .fold(x, |x, c| site.call(&pinned, c.target, (x,)))
    }

    /// Many sites: the call names its site, as an interpreter's bytecode
    /// would.
    #[inline(never)]
    fn run_many(&self, calls: &[Call], x: u64) -> u64 {
        let pinned = self.engine.pin();
        calls.iter().fold(x, |x, c| {
            self.sites[c.site.get()].call(&pinned, c.target, (x,))
        })
    }
}

impl Cell for SitesCell {
    fn run(&self, calls: &[Call], x: u64) -> u64 {
        if self.sites.len() == 1 {
            self.run_one(calls, x)
        } else {
            self.run_many(calls, x)
        }
    }

    fn learns(&self) -> bool {
        self.learn
    }

    fn between_chunks(&self) {
        if self.learn {
            self.engine.tick();
        }
    }

    fn detail(&self) -> String {
        describe(&self.sites)
    }
}

/// What the sites hold now: thunks, slots and their call forms, policies.
fn describe(sites: &[Site<Callback>]) -> String {
    let stats: Vec<_> = sites.iter().map(Site::stats).collect();
    let promoted: Vec<_> = stats.iter().filter(|s| s.mode == SiteMode::Thunk).collect();
    let slots: Vec<_> = promoted.iter().flat_map(|s| &s.slots).collect();
    let direct = slots.iter().filter(|s| s.form == CallForm::Direct).count();
    let tail = slots.iter().filter(|s| s.tail).count();
    let mut policies: Vec<&str> = stats.iter().map(|s| s.policy).collect();
    policies.sort_unstable();
    policies.dedup();
    let publishes: u64 = stats.iter().map(|s| s.publishes).sum();
    format!(
        "{} site(s), policy {}: {} with a thunk ({} slots: {direct} direct, {tail} tail jump, {} absolute), \
         {} plain; {publishes} thunks published",
        sites.len(),
        policies.join("/"),
        promoted.len(),
        slots.len(),
        slots.len() - direct,
        sites.len() - promoted.len(),
    )
}
