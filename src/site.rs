//! Dispatch sites: one thunk per site, published with one atomic store.

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hotcall_jit::{CallForm, ThunkSig};

use crate::engine::{EngineShared, Installed};
use crate::error::Error;
use crate::pin::Pinned;
use crate::signature::SiteFn;

/// How a site currently dispatches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SiteMode {
    /// Through its thunk.
    Thunk,
    /// A plain indirect call: nothing promoted yet, demoted on purpose, or
    /// the last build failed (see [`SiteStats::last_error`]).
    PlainIndirect,
}

/// One promoted slot as installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotStats {
    pub target: usize,
    /// Whether the call is a true direct call or the absolute fallback.
    pub form: CallForm,
    /// A direct slot that jumps to its target (`jmp rel32` / `b`) after
    /// tearing down the thunk's frame, so the target returns straight to the
    /// caller.
    pub tail: bool,
}

/// A snapshot of a site.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiteStats {
    pub name: Option<String>,
    pub signature: String,
    pub mode: SiteMode,
    /// The thunk's entry address, in [`SiteMode::Thunk`].
    pub entry: Option<usize>,
    /// Promoted slots, in compare order.
    pub slots: Vec<SlotStats>,
    /// Bytes of machine code of the current thunk (its allocation is this
    /// rounded up to 16).
    pub code_bytes: usize,
    /// Thunks published, successful builds only.
    pub publishes: u64,
    /// Builds that failed (the site fell back to a plain indirect call).
    pub failures: u64,
    /// Why the last build failed, until the next success.
    pub last_error: Option<Error>,
    /// Cranelift time of the last successful build.
    pub last_compile_time: Option<Duration>,
}

impl fmt::Display for SiteStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "site {} {}: ",
            self.name.as_deref().unwrap_or("<unnamed>"),
            self.signature
        )?;
        match self.mode {
            SiteMode::Thunk => write!(
                f,
                "thunk at {:#x}, {} bytes, {} slots",
                self.entry.unwrap_or(0),
                self.code_bytes,
                self.slots.len()
            )?,
            SiteMode::PlainIndirect => f.write_str("plain indirect call")?,
        }
        write!(
            f,
            "; {} publishes, {} failures",
            self.publishes, self.failures
        )?;
        if let Some(t) = self.last_compile_time {
            write!(f, ", last compile {:.1} us", t.as_secs_f64() * 1e6)?;
        }
        for (i, s) in self.slots.iter().enumerate() {
            let tail = if s.tail { ", tail jump" } else { "" };
            write!(f, "\n  slot {i}: {:#x} ({}{tail})", s.target, s.form.name())?;
        }
        if let Some(e) = &self.last_error {
            write!(f, "\n  last error: {e}")?;
        }
        Ok(())
    }
}

/// What a successful [`Site::promote`] installed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PromoteReport {
    pub entry: usize,
    pub slots: Vec<SlotStats>,
    pub code_bytes: usize,
    pub compile_time: Duration,
}

struct SiteState {
    current: Option<Installed>,
    publishes: u64,
    failures: u64,
    last_error: Option<Error>,
    last_compile_time: Option<Duration>,
}

/// A dispatch site for functions of type `F` (an `extern "C" fn` type with
/// up to eight parameters; see [`SiteFn`]).
///
/// Calls go through [`Site::call`] with a [`Pinned`] guard. The site starts
/// as a plain indirect call; [`Site::promote`] compiles a thunk that tests
/// the given targets in order and calls a match directly, and publishes it
/// atomically. Sites are `Sync`: share them by reference or in an `Arc`.
pub struct Site<F: SiteFn> {
    /// Entry of the current thunk, 0 for a plain indirect call. The only
    /// word the call path reads.
    entry: AtomicUsize,
    state: Mutex<SiteState>,
    engine: Arc<EngineShared>,
    sig: ThunkSig,
    name: Option<String>,
    /// The engine's hardened mode: calls go through the retpoline.
    hardened: bool,
    _fn: PhantomData<F>,
}

impl<F: SiteFn> Site<F> {
    pub(crate) fn new(engine: Arc<EngineShared>, name: Option<String>) -> Self {
        Site {
            entry: AtomicUsize::new(0),
            state: Mutex::new(SiteState {
                current: None,
                publishes: 0,
                failures: 0,
                last_error: None,
                last_compile_time: None,
            }),
            hardened: engine.hardened,
            engine,
            sig: F::signature(),
            name,
            _fn: PhantomData,
        }
    }

    /// Calls `target` with `args` through the site.
    ///
    /// `pinned` keeps the thunk alive for the whole call (the target returns
    /// into it); borrowing it here is what makes the call memory-safe.
    #[inline(always)]
    pub fn call(&self, pinned: &Pinned, target: F, args: F::Args) -> F::Ret {
        let _ = pinned;
        // Acquire pairs with the Release in `publish`: the thunk's bytes
        // (written before publication) are visible to this thread.
        let entry = self.entry.load(Ordering::Acquire);
        if self.hardened {
            return self.call_hardened(entry, target, args);
        }
        if entry == 0 {
            target.call_indirect(args)
        } else {
            // SAFETY: a non-zero entry is the entry of a thunk compiled for
            // `F::signature()` and installed in the engine's code memory.
            // It is freed only after a grace period that starts after it is
            // unpublished; this thread was pinned (`pinned`, borrowed for
            // the whole call) before loading it, so it stays executable
            // until this call returns.
            unsafe { F::call_thunk(entry, target, args) }
        }
    }

    /// [`Site::call`] in hardened mode: the indirect branches go through
    /// the retpoline (the thunk's own miss path does too).
    #[inline(always)]
    fn call_hardened(&self, entry: usize, target: F, args: F::Args) -> F::Ret {
        if entry == 0 {
            crate::retpoline::call(target, args)
        } else {
            // SAFETY: as in `call`: a live thunk for `F::signature()`, kept
            // alive by the caller's pin for the whole call.
            unsafe { crate::retpoline::call_thunk(entry, target, args) }
        }
    }

    /// Like [`Site::call`] for a target that may be null (a C host's
    /// nullable function pointer). A null target panics with a clear message
    /// instead of jumping to address 0.
    #[inline(always)]
    pub fn call_nullable(&self, pinned: &Pinned, target: Option<F>, args: F::Args) -> F::Ret {
        match target {
            Some(f) => self.call(pinned, f, args),
            None => self.null_target(),
        }
    }

    #[cold]
    #[inline(never)]
    fn null_target(&self) -> ! {
        panic!(
            "hotcall: null function pointer called through site {} {}",
            self.name.as_deref().unwrap_or("<unnamed>"),
            self.sig
        )
    }

    /// Pins, calls, unpins. Convenient, but pinning costs several times a
    /// plain indirect call when the thread is not already pinned (see
    /// [`Pinned`]); hot loops should pin once and use [`Site::call`].
    #[inline]
    pub fn call_pinned(&self, target: F, args: F::Args) -> F::Ret {
        let pinned = Pinned::new();
        self.call(&pinned, target, args)
    }

    /// Compiles a thunk promoting `targets` (0 to 8, in compare order; slot
    /// 0 is the fall-through path) and publishes it atomically. The previous
    /// thunk is freed after a grace period.
    ///
    /// * An invalid request (more than 8 targets, a repeated target) is
    ///   rejected and leaves the site as it was.
    /// * If compilation, placement or code memory fails, the site becomes a
    ///   plain indirect call, records the error in its statistics, and the
    ///   error is returned. The host keeps working either way.
    pub fn promote(&self, targets: &[F]) -> Result<PromoteReport, Error> {
        let addrs: Vec<u64> = targets.iter().map(|f| f.addr() as u64).collect();
        self.promote_addrs(&addrs)
    }

    /// [`Site::promote`] by address, for targets known only as addresses.
    ///
    /// # Safety
    /// Every address must be a function of type `F`: calls that match it
    /// will be made to it directly.
    pub unsafe fn promote_unchecked(&self, targets: &[usize]) -> Result<PromoteReport, Error> {
        let addrs: Vec<u64> = targets.iter().map(|&a| a as u64).collect();
        self.promote_addrs(&addrs)
    }

    fn promote_addrs(&self, addrs: &[u64]) -> Result<PromoteReport, Error> {
        hotcall_jit::ThunkCompiler::check_targets(addrs)?;
        let mut state = self.lock_state();
        match self.engine.build(&self.sig, addrs) {
            Ok(installed) => {
                let report = PromoteReport {
                    entry: installed.code.entry(),
                    slots: slot_stats(&installed),
                    code_bytes: installed.code_bytes,
                    compile_time: installed.compile_time,
                };
                state.publishes += 1;
                state.last_error = None;
                state.last_compile_time = Some(installed.compile_time);
                self.publish(&mut state, Some(installed));
                Ok(report)
            }
            Err(e) => {
                state.failures += 1;
                state.last_error = Some(e.clone());
                self.publish(&mut state, None);
                Err(e)
            }
        }
    }

    /// Makes the site a plain indirect call and frees its thunk after a
    /// grace period.
    pub fn demote(&self) {
        let mut state = self.lock_state();
        self.publish(&mut state, None);
    }

    /// The one atomic step: swap the entry, then retire the old thunk.
    fn publish(&self, state: &mut SiteState, new: Option<Installed>) {
        let entry = new.as_ref().map_or(0, |i| i.code.entry());
        // Release: the new thunk's bytes were written before this store.
        self.entry.store(entry, Ordering::Release);
        if let Some(old) = std::mem::replace(&mut state.current, new) {
            self.engine.retire(old);
        }
    }

    fn lock_state(&self) -> MutexGuard<'_, SiteState> {
        // A panic while holding the lock cannot leave the state torn (every
        // update is a few plain stores), so poisoning is ignored.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The signature this site dispatches.
    pub fn signature(&self) -> &ThunkSig {
        &self.sig
    }

    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// A snapshot of the site's state and counters.
    pub fn stats(&self) -> SiteStats {
        let state = self.lock_state();
        let current = state.current.as_ref();
        SiteStats {
            name: self.name.clone(),
            signature: self.sig.to_string(),
            mode: if current.is_some() {
                SiteMode::Thunk
            } else {
                SiteMode::PlainIndirect
            },
            entry: current.map(|i| i.code.entry()),
            slots: current.map(slot_stats).unwrap_or_default(),
            code_bytes: current.map_or(0, |i| i.code_bytes),
            publishes: state.publishes,
            failures: state.failures,
            last_error: state.last_error.clone(),
            last_compile_time: state.last_compile_time,
        }
    }
}

fn slot_stats(i: &Installed) -> Vec<SlotStats> {
    i.slots
        .iter()
        .map(|s| SlotStats {
            target: s.target as usize,
            form: s.form,
            tail: s.tail,
        })
        .collect()
}

impl<F: SiteFn> Drop for Site<F> {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = state.current.take() {
            // Unpublish first: `&mut self` means no caller holds the site,
            // but a caller may still be returning into the thunk.
            self.entry.store(0, Ordering::Release);
            self.engine.retire(old);
        }
    }
}

impl<F: SiteFn> fmt::Debug for Site<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.stats(), f)
    }
}
