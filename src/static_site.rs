//! Static sites: dispatch sites declared at compile time whose entry is a
//! stub in the host binary's text, reached by a true direct call, so that
//! the hit path holds no indirect branch at all (what makes promotion pay
//! in a retpoline-hardened host). Declared with [`crate::static_site!`].
//!
//! ```text
//! host:  call STUB            ; direct (asm! + sym: no GOT)
//! STUB:  jmp rel32 -> thunk   ; retargeted with one aligned 4-byte store
//! thunk: cmp; jne; jmp T0     ; slot 0 falls through to a direct jump
//! ```
//!
//! The stub goes to the current JIT thunk ([`StaticSite::promote`]), to
//! whatever a learning JIT site publishes ([`StaticSite::use_jit`]: each
//! thunk, the miss stub in a bypass), to the site's Patch thunk for its
//! whole life ([`StaticSite::use_patch`], which learns, or
//! [`StaticSite::retarget`] by hand), or to a miss stub (a plain or
//! retpolined indirect call). Aiming it elsewhere is one atomic store of its branch
//! word into a copy of the text page (`hotcall_jit::text_poke`); the old
//! thunk is retired after a grace period, as when a [`crate::Site`]
//! republishes, because a caller that went through the stub just before may
//! still be inside it.

use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hotcall_jit::{Arch, text_poke};

use crate::call::pin::Pinned;
use crate::call::signature::SiteFn;
use crate::call::static_entry::miss_stub;
use crate::engine::Engine;
use crate::error::Error;
use crate::link::{aim_stub_field, branch_field, check_stub_reach};
use crate::patch::PatchSite;
use crate::runtime::{EngineShared, Installed};
use crate::site::Site;
use crate::stats::{PromoteReport, RetargetReport, StaticMode, StaticSiteStats, slot_stats};

/// A static site's entry stub, implemented by [`crate::static_site!`].
///
/// # Safety
/// `stub_address` must be a stub laid out by `__hotcall_stub_body!`, and
/// `enter` must call it with the thunk ABI of `F` (the target first).
#[doc(hidden)]
pub unsafe trait StaticStub<F: SiteFn>: 'static {
    /// The stub's address.
    fn stub_address() -> usize;
    /// Calls the stub with a direct `call` (`bl`).
    fn enter(target: F, args: F::Args) -> F::Ret;
}

enum Mode<F: SiteFn> {
    /// Never bound: the stub goes to the hardened miss stub.
    Unbound,
    /// Bound, no thunk: the stub goes to the engine's miss stub.
    Indirect,
    /// The stub goes to this JIT thunk, promoted by hand.
    Jit(Installed),
    /// The stub follows this learning JIT site: every publish of the site
    /// aims it at the new thunk (or at the miss stub in a bypass).
    Learning(Site<F>),
    /// The stub goes to this Patch site's thunk, for good.
    Patch(Box<PatchSite<F>>),
}

struct StaticState<F: SiteFn> {
    engine: Option<Arc<EngineShared>>,
    mode: Mode<F>,
    stub_writes: u64,
}

/// A dispatch site declared with [`crate::static_site!`]; see the module
/// docs. `S` is the macro-generated stub.
pub struct StaticSite<F: SiteFn, S: StaticStub<F>> {
    name: &'static str,
    state: Mutex<StaticState<F>>,
    _stub: PhantomData<fn() -> S>,
}

impl<F: SiteFn, S: StaticStub<F>> StaticSite<F, S> {
    /// Used by [`crate::static_site!`].
    #[doc(hidden)]
    pub const fn new(name: &'static str) -> Self {
        StaticSite {
            name,
            state: Mutex::new(StaticState {
                engine: None,
                mode: Mode::Unbound,
                stub_writes: 0,
            }),
            _stub: PhantomData,
        }
    }

    /// Calls `target` with `args` through the stub: a direct `call` to the
    /// stub, a direct jump to the thunk (or miss stub).
    ///
    /// `pinned` keeps whatever the stub jumped to alive for the whole call.
    #[inline(always)]
    pub fn call(&self, pinned: &Pinned, target: F, args: F::Args) -> F::Ret {
        let _ = pinned;
        S::enter(target, args)
    }

    /// The stub's address.
    pub fn stub_address(&self) -> usize {
        S::stub_address()
    }

    /// Where the stub jumps now.
    pub fn jumps_to(&self) -> Result<usize, Error> {
        let field = branch_field(S::stub_address())?;
        let backend = Arch::host().expect("checked by branch_field").backend();
        Ok(backend.decode_branch(field as u64, text_poke::load_u32(field)) as usize)
    }

    fn lock(&self) -> MutexGuard<'_, StaticState<F>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn error(&self, why: impl Into<String>) -> Error {
        Error::StaticSite {
            site: self.name,
            why: why.into(),
        }
    }

    /// Binds the site to `engine` on first use (making the stub's page
    /// patchable and aiming it at the engine's miss stub).
    fn bind(&self, state: &mut StaticState<F>, engine: &Engine) -> Result<(), Error> {
        match &state.engine {
            Some(bound) if Arc::ptr_eq(bound, &engine.shared) => Ok(()),
            Some(_) => Err(self.error("already bound to another engine")),
            None => {
                let field = branch_field(S::stub_address())?;
                text_poke::make_patchable(field)?;
                self.aim(state, miss_stub(engine.shared.hardened))?;
                state.engine = Some(Arc::clone(&engine.shared));
                state.mode = Mode::Indirect;
                Ok(())
            }
        }
    }

    /// Aims the stub at `target`: one aligned 32-bit store. Fails, leaving
    /// the stub as it was, if the target is out of direct-branch reach.
    /// A learning Patch or JIT site writes the stub itself (it moves it as
    /// it publishes); it is detached first, so that it cannot write the
    /// stub after this store.
    fn aim(&self, state: &mut StaticState<F>, target: usize) -> Result<(), Error> {
        let field = branch_field(S::stub_address())?;
        if matches!(state.mode, Mode::Patch(_) | Mode::Learning(_)) {
            check_stub_reach(field, target)?;
            Self::detach(&state.mode);
        }
        aim_stub_field(field, target)?;
        state.stub_writes += 1;
        Ok(())
    }

    /// Stops a site that moves the stub itself (a learning Patch or JIT
    /// site) from writing it, before anything else aims it: a tick running
    /// on the scheduler's thread could otherwise aim it back after.
    fn detach(mode: &Mode<F>) {
        match mode {
            Mode::Patch(site) => site.detach_static_stub(),
            Mode::Learning(site) => site.detach_static_stub(),
            Mode::Unbound | Mode::Indirect | Mode::Jit(_) => {}
        }
    }

    /// Retires whatever the stub no longer goes to.
    fn retire(state: &mut StaticState<F>, old: Mode<F>) {
        match old {
            Mode::Jit(installed) => {
                if let Some(engine) = &state.engine {
                    engine.retire(installed);
                }
            }
            // Dropping the Patch site frees its thunk after a grace period.
            Mode::Patch(site) => drop(site),
            // So does dropping the JIT site (its last handle).
            Mode::Learning(site) => drop(site),
            Mode::Unbound | Mode::Indirect => {}
        }
    }

    /// Compiles a JIT thunk promoting `targets` on `engine` (binding the
    /// site to it on first use) and aims the stub at it; the previous
    /// thunk is freed after a grace period. On failure the site keeps
    /// dispatching as before.
    pub fn promote(&self, engine: &Engine, targets: &[F]) -> Result<PromoteReport, Error> {
        let addrs: Vec<u64> = targets.iter().map(|f| f.addr() as u64).collect();
        let mut state = self.lock();
        self.bind(&mut state, engine)?;
        let installed = engine
            .shared
            .build(&F::signature(), &addrs, &hotcall_jit::Hooks::NONE)?;
        if let Err(e) = self.aim(&mut state, installed.code.entry()) {
            // Never published: no thread can be inside it.
            engine.shared.release_unpublished(installed);
            return Err(e);
        }
        let report = PromoteReport {
            entry: installed.code.entry(),
            slots: slot_stats(&installed, None),
            code_bytes: installed.code_bytes,
            compile_time: installed.compile_time,
        };
        let old = std::mem::replace(&mut state.mode, Mode::Jit(installed));
        Self::retire(&mut state, old);
        Ok(report)
    }

    /// Gives the site a Patch thunk with `slots` slots (all disabled) for
    /// good and aims the stub at it. The Patch site learns with the
    /// engine's policy (it moves the stub between its entries and, in a
    /// bypass, to the miss stub); [`StaticSite::retarget`] sets its targets
    /// by hand instead.
    pub fn use_patch(&self, engine: &Engine, slots: usize) -> Result<(), Error> {
        let mut state = self.lock();
        self.bind(&mut state, engine)?;
        let site = engine.named_patch_site::<F>(self.name, slots)?;
        let field = branch_field(S::stub_address())?;
        check_stub_reach(field, site.entry())?;
        Self::detach(&state.mode);
        // From now on the Patch site aims the stub at its current entry.
        site.attach_static_stub(field)?;
        state.stub_writes += 1;
        let old = std::mem::replace(&mut state.mode, Mode::Patch(Box::new(site)));
        Self::retire(&mut state, old);
        Ok(())
    }

    /// Gives the site a JIT site of its own that learns with the engine's
    /// policy, as [`Engine::named_site`] does, and makes the stub follow it:
    /// each thunk the site publishes (profiling, promoted), or the miss
    /// stub in a bypass. The thunks are freed after a grace period, as a
    /// [`Site`]'s are; the caller's [`Pinned`] covers calls through the
    /// stub. [`StaticSite::promote`], [`StaticSite::use_patch`] or
    /// [`StaticSite::demote`] end the learning.
    pub fn use_jit(&self, engine: &Engine) -> Result<(), Error> {
        let mut state = self.lock();
        self.bind(&mut state, engine)?;
        let site = engine.named_site::<F>(self.name);
        let field = branch_field(S::stub_address())?;
        Self::detach(&state.mode);
        site.attach_static_stub(field)?;
        state.stub_writes += 1;
        let old = std::mem::replace(&mut state.mode, Mode::Learning(site));
        Self::retire(&mut state, old);
        Ok(())
    }

    /// The learning JIT site behind the stub ([`StaticSite::use_jit`]), for
    /// its statistics or a change of policy.
    pub fn learning_site(&self) -> Option<Site<F>> {
        match &self.lock().mode {
            Mode::Learning(site) => Some(site.clone()),
            _ => None,
        }
    }

    /// Retargets the site's Patch thunk (see [`PatchSite::retarget`]);
    /// an error unless [`StaticSite::use_patch`] was called.
    pub fn retarget(&self, targets: &[F]) -> Result<RetargetReport, Error> {
        match &self.lock().mode {
            Mode::Patch(site) => site.retarget(targets),
            _ => Err(self.error("retarget needs the Patch strategy (use_patch)")),
        }
    }

    /// Completes a due Patch retarget ([`PatchSite::poll`]).
    pub fn poll(&self) -> bool {
        match &self.lock().mode {
            Mode::Patch(site) => site.poll(),
            _ => false,
        }
    }

    /// Waits for a pending Patch retarget ([`PatchSite::wait`]).
    pub fn wait(&self, timeout: Duration) -> bool {
        match &self.lock().mode {
            Mode::Patch(site) => site.wait(timeout),
            _ => true,
        }
    }

    /// Aims the stub at the engine's miss stub (a plain or retpolined
    /// indirect call) and frees the thunk after a grace period.
    pub fn demote(&self) -> Result<(), Error> {
        let mut state = self.lock();
        let Some(engine) = state.engine.clone() else {
            return Ok(());
        };
        self.aim(&mut state, miss_stub(engine.hardened))?;
        let old = std::mem::replace(&mut state.mode, Mode::Indirect);
        Self::retire(&mut state, old);
        Ok(())
    }

    pub fn stats(&self) -> StaticSiteStats {
        let state = self.lock();
        StaticSiteStats {
            name: self.name,
            stub: S::stub_address(),
            jumps_to: self.jumps_to().unwrap_or(0),
            mode: match &state.mode {
                Mode::Unbound => StaticMode::Unbound,
                Mode::Indirect => StaticMode::Indirect,
                Mode::Jit(i) => StaticMode::Jit {
                    entry: i.code.entry(),
                    slots: slot_stats(i, None),
                },
                Mode::Learning(site) => StaticMode::Learning(Box::new(site.stats())),
                Mode::Patch(site) => StaticMode::Patch(site.stats()),
            },
            stub_writes: state.stub_writes,
        }
    }
}
