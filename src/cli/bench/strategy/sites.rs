//! A cell that calls through one hotcall site per workload site: the shape
//! shared by `jit` (sites that learn, one learning round per chunk),
//! `jit-fixed` (sites promoted once by hand) and `patch-fixed` (Patch sites
//! retargeted once by hand), all reached through a function pointer.

use hotcall::workload::{Call, Callback};
use hotcall::{CallForm, Engine, EngineConfig, PatchSite, Pinned, Site, SiteMode};

use super::{BuildError, BuildOptions, Cell};

/// An engine that learns only when the harness calls `Engine::tick`: no
/// background thread runs during measurements. Hardened with `--hardened`.
pub fn manual_engine(o: BuildOptions) -> Result<Engine, BuildError> {
    let engine = Engine::with_config(EngineConfig {
        hardened: o.hardened,
        ..EngineConfig::manual()
    });
    match engine.stats().disabled {
        Some(e) => Err(BuildError::Failed(format!("code generation is off: {e}"))),
        None => Ok(engine),
    }
}

/// A site type the cell can call through.
pub trait Dispatch: Sync {
    fn call(&self, pinned: &Pinned, target: Callback, x: u64) -> u64;

    /// What the sites hold now, for the report.
    fn describe(sites: &[Self]) -> String
    where
        Self: Sized;
}

pub struct SitesCell<S: Dispatch> {
    engine: Engine,
    sites: Vec<S>,
    /// Run `Engine::tick` between chunks.
    learn: bool,
}

impl<S: Dispatch> SitesCell<S> {
    pub fn new(engine: Engine, sites: Vec<S>, learn: bool) -> Self {
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
        calls.iter().fold(x, |x, c| site.call(&pinned, c.target, x))
    }

    /// Many sites: the call names its site, as an interpreter's bytecode
    /// would.
    #[inline(never)]
    fn run_many(&self, calls: &[Call], x: u64) -> u64 {
        let pinned = self.engine.pin();
        calls.iter().fold(x, |x, c| {
            self.sites[c.site.get()].call(&pinned, c.target, x)
        })
    }
}

impl<S: Dispatch> Cell for SitesCell<S> {
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
        S::describe(&self.sites)
    }
}

impl Dispatch for Site<Callback> {
    #[inline(always)]
    fn call(&self, pinned: &Pinned, target: Callback, x: u64) -> u64 {
        Site::call(self, pinned, target, (x,))
    }

    /// Thunks, slots and their call forms, policies.
    fn describe(sites: &[Self]) -> String {
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
}

impl Dispatch for PatchSite<Callback> {
    #[inline(always)]
    fn call(&self, pinned: &Pinned, target: Callback, x: u64) -> u64 {
        PatchSite::call(self, pinned, target, (x,))
    }

    /// Slots, how many are enabled, pending completions.
    fn describe(sites: &[Self]) -> String {
        describe_patch(sites.iter().map(PatchSite::stats))
    }
}

/// Patch sites' slots: enabled (compare and direct branch) or disabled
/// (every call passes them to the thunk's miss path).
pub fn describe_patch(stats: impl Iterator<Item = hotcall::PatchSiteStats>) -> String {
    let (mut sites, mut slots, mut enabled, mut idle, mut pending) = (0, 0, 0, 0, 0);
    let mut serialized = true;
    for s in stats {
        sites += 1;
        slots += s.slots.len();
        let on = s.slots.iter().filter(|k| k.enabled.is_some()).count();
        enabled += on;
        idle += usize::from(on == 0);
        pending += usize::from(s.pending);
        serialized &= s.serialized || s.patches == 0;
    }
    format!(
        "{sites} Patch site(s), {slots} slots: {enabled} enabled, {} disabled; {idle} site(s) with no hot \
         target (every call takes the thunk's miss path); {pending} completion(s) pending; cores {}serialized \
         after patching",
        slots - enabled,
        if serialized { "" } else { "NOT " }
    )
}
