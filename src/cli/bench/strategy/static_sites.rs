//! `jit-fixed` and `patch-fixed` through a static entry: the caller makes a
//! direct `call` to a stub in this binary's text (`hotcall::static_site!`),
//! which jumps to a JIT thunk or to a Patch thunk promoting the workload's
//! true hot targets, set once by hand. No indirect branch on a hit's path.
//!
//! A static site is declared at compile time, so there is one per strategy
//! variant, shared by every workload in turn (the harness builds a
//! workload's cells, measures them and drops them before the next
//! workload); a claim makes sure two cells never use one stub at once. A
//! static site binds to one engine for life, so these cells share one
//! process-wide engine. `sites-1k` has no static cell: its 1,000 sites are
//! bytecode positions served by one native call instruction of the
//! interpreter loop, and reaching 1,000 stubs from it would need a dispatch
//! on the site number (itself an indirect branch or a 1,000-way branch).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use hotcall::workload::{Call, Callback, SiteIndex, Workload};
use hotcall::{CallForm, Engine, StaticMode, StaticSite, StaticStub};

use super::patch_fixed::{COMPLETION_TIMEOUT, slots_for};
use super::sites::{Dispatch, describe_patch, manual_engine};
use super::{BuildError, BuildOptions, Cell};

hotcall::static_site! {
    /// `jit-fixed` (static entry).
    static JIT_FIXED: extern "C" fn(u64) -> u64;
}

hotcall::static_site! {
    /// `patch-fixed` (static entry).
    static PATCH_FIXED: extern "C" fn(u64) -> u64;
}

hotcall::static_site! {
    /// `jit` (static entry): a learning JIT site.
    static JIT: extern "C" fn(u64) -> u64;
}

hotcall::static_site! {
    /// `patch` (static entry): a learning Patch site.
    static PATCH: extern "C" fn(u64) -> u64;
}

static JIT_FIXED_CLAIM: AtomicBool = AtomicBool::new(false);
static PATCH_FIXED_CLAIM: AtomicBool = AtomicBool::new(false);
static PATCH_CLAIM: AtomicBool = AtomicBool::new(false);
static JIT_CLAIM: AtomicBool = AtomicBool::new(false);

/// The engine every static site of the harness binds to (a static site
/// binds once, so a process uses the plain or the hardened one).
fn engine(o: BuildOptions) -> Result<&'static Engine, BuildError> {
    static PLAIN: OnceLock<Engine> = OnceLock::new();
    static HARDENED: OnceLock<Engine> = OnceLock::new();
    let cell = if o.hardened { &HARDENED } else { &PLAIN };
    if let Some(e) = cell.get() {
        return Ok(e);
    }
    let engine = manual_engine(o)?;
    Ok(cell.get_or_init(|| engine))
}

/// Exclusive use of one static site; released on drop.
struct Claim(&'static AtomicBool);

impl Claim {
    fn take(flag: &'static AtomicBool, what: &str) -> Result<Self, BuildError> {
        if flag.swap(true, Ordering::AcqRel) {
            return Err(BuildError::Failed(format!(
                "the static site of {what} is in use by another cell"
            )));
        }
        Ok(Claim(flag))
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

fn one_site(w: &Workload) -> Result<Vec<Callback>, BuildError> {
    if w.site_count() != 1 {
        return Err(BuildError::NotApplicable(format!(
            "a static entry is one stub declared at compile time; {}'s {} sites are bytecode positions \
             served by one call instruction, which could reach {} stubs only through a dispatch on the \
             site number",
            w.name(),
            w.site_count(),
            w.site_count()
        )));
    }
    Ok(w.hot_targets(SiteIndex(0)))
}

struct StaticCell<S: StaticStub<Callback>> {
    site: &'static StaticSite<Callback, S>,
    engine: &'static Engine,
    /// Whether the site learns: a learning round between chunks (the
    /// shared static engine holds no other live site while a cell runs).
    learn: bool,
    // Dropped after `Drop::drop` below has demoted the site.
    _claim: Claim,
}

impl<S: StaticStub<Callback>> Cell for StaticCell<S> {
    #[inline(never)]
    fn run(&self, calls: &[Call], x: u64) -> u64 {
        let pinned = self.engine.pin();
        calls
            .iter()
            .fold(x, |x, c| self.site.call(&pinned, c.target, (x,)))
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
        let stats = self.site.stats();
        let what = match stats.mode {
            StaticMode::Jit { slots, .. } => {
                let direct = slots.iter().filter(|s| s.form == CallForm::Direct).count();
                let tail = slots.iter().filter(|s| s.tail).count();
                format!(
                    "a JIT thunk with {} slots ({direct} direct, {tail} tail jump)",
                    slots.len()
                )
            }
            StaticMode::Learning(_) => match self.site.learning_site() {
                Some(site) => format!("a learning JIT site: {}", Dispatch::describe(&[site])),
                None => "a learning JIT site, replaced meanwhile".into(),
            },
            StaticMode::Patch(p) => describe_patch(std::iter::once(p)),
            StaticMode::Indirect => {
                "the miss stub (no hot target: a plain indirect call after the direct call)".into()
            }
            StaticMode::Unbound => "nothing (unbound)".into(),
        };
        format!(
            "static stub {} (direct call, {} stub writes) jumps to {what}",
            stats.name, stats.stub_writes
        )
    }
}

impl<S: StaticStub<Callback>> Drop for StaticCell<S> {
    fn drop(&mut self) {
        // Frees the thunk (or Patch site) after a grace period and leaves
        // the stub at the plain miss stub for the next cell.
        if let Err(e) = self.site.demote() {
            eprintln!(
                "hotcall bench: demoting static site {}: {e}",
                self.site.stats().name
            );
        }
    }
}

/// `jit-fixed` (static): the stub jumps to a JIT thunk of the hot targets,
/// or to the miss stub when there are none.
pub fn build_jit_fixed(w: &Workload, o: BuildOptions) -> Result<Box<dyn Cell>, BuildError> {
    let hot = one_site(w)?;
    let engine = engine(o)?;
    let claim = Claim::take(&JIT_FIXED_CLAIM, "jit-fixed")?;
    // Binds the site to the engine on first use, which aims the stub at the
    // engine's miss stub (plain or hardened, as the engine is).
    JIT_FIXED.promote(engine, &hot)?;
    if hot.is_empty() {
        // No thunk at all: the stub jumps to the miss stub.
        JIT_FIXED.demote()?;
    }
    Ok(Box::new(StaticCell {
        site: &JIT_FIXED,
        engine,
        learn: false,
        _claim: claim,
    }))
}

/// `patch-fixed` (static): the stub jumps to a Patch thunk retargeted to
/// the hot targets (one disabled slot when there are none).
pub fn build_patch_fixed(w: &Workload, o: BuildOptions) -> Result<Box<dyn Cell>, BuildError> {
    let hot = one_site(w)?;
    let engine = engine(o)?;
    let claim = Claim::take(&PATCH_FIXED_CLAIM, "patch-fixed")?;
    PATCH_FIXED.use_patch(engine, slots_for(&hot))?;
    PATCH_FIXED.retarget(&hot)?;
    if !PATCH_FIXED.wait(COMPLETION_TIMEOUT) {
        return Err(BuildError::Failed(format!(
            "the static Patch site did not complete its retarget in {COMPLETION_TIMEOUT:?}"
        )));
    }
    Ok(Box::new(StaticCell {
        site: &PATCH_FIXED,
        engine,
        learn: false,
        _claim: claim,
    }))
}

/// `patch` (static): the stub follows a learning Patch site (it moves the
/// stub itself as it retargets and demotes).
pub fn build_patch(w: &Workload, o: BuildOptions) -> Result<Box<dyn Cell>, BuildError> {
    one_site(w)?;
    let engine = engine(o)?;
    let claim = Claim::take(&PATCH_CLAIM, "patch")?;
    PATCH.use_patch(engine, super::patch::learning_slots())?;
    Ok(Box::new(StaticCell {
        site: &PATCH,
        engine,
        learn: true,
        _claim: claim,
    }))
}

/// `jit` (static): the stub follows a learning JIT site (each thunk the
/// site publishes, or the miss stub in a bypass).
pub fn build_jit(w: &Workload, o: BuildOptions) -> Result<Box<dyn Cell>, BuildError> {
    one_site(w)?;
    let engine = engine(o)?;
    let claim = Claim::take(&JIT_CLAIM, "jit")?;
    JIT.use_jit(engine)?;
    Ok(Box::new(StaticCell {
        site: &JIT,
        engine,
        learn: true,
        _claim: claim,
    }))
}
