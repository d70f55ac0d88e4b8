//! Dispatch strategies, side by side, so a harness (or a user) can switch
//! between them by configuration.
//!
//! | strategy | hit path | retarget | wins when |
//! |---|---|---|---|
//! | [`Strategy::Indirect`] | `call *reg` | nothing to do | the indirect predictor is right (one hot target per site, or a learnable pattern), retpolines off |
//! | [`Strategy::Retpoline`] | `call` retpoline, `ret` to the target | nothing | never on speed; the baseline of a hardened host |
//! | [`Strategy::Jit`] | compare chain, direct jump | compile (template copy) + one store + grace-period free | targets change rarely; any slot count; no bound on history |
//! | [`Strategy::Patch`] | table compare, direct jump | a few stores, no allocation; completion after a grace period (learning sites: each plan is a retarget) | targets change often; one fixed thunk per site |
//! | `listed_call!` | compile-time compare chain | impossible (recompile) | the targets are known when the host is built |
//!
//! `docs/strategies.md` has the measurements behind the last column.

use crate::call::pin::Pinned;
use crate::call::signature::SiteFn;
use crate::engine::Engine;
use crate::error::Error;
use crate::patch::PatchSite;
use crate::site::Site;

/// How a site dispatches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// A plain call through the function pointer.
    Indirect,
    /// The same call through the retpoline (what a retpoline-hardened
    /// compiler emits): x86-64's classic retpoline, aarch64's return-stack
    /// equivalent (see `hotcall::retpoline`).
    Retpoline,
    /// A thunk compiled (from a template) for each set of promoted targets
    /// and republished with one atomic store ([`Site`]).
    Jit,
    /// One thunk with `slots` slots for the site's life, retargeted in
    /// place ([`PatchSite`]); it learns with the engine's policy until
    /// promoted by hand.
    Patch { slots: usize },
}

impl Strategy {
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Indirect => "indirect",
            Strategy::Retpoline => "retpoline",
            Strategy::Jit => "jit",
            Strategy::Patch { .. } => "patch",
        }
    }
}

/// A site whose strategy is chosen at run time. Calls cost one predictable
/// branch on the strategy more than the strategy's own site type.
pub enum StrategySite<F: SiteFn> {
    Indirect,
    Retpoline,
    Jit(Site<F>),
    Patch(Box<PatchSite<F>>),
}

impl<F: SiteFn> StrategySite<F> {
    /// A site of `strategy` on `engine`.
    pub fn new(engine: &Engine, strategy: Strategy) -> Result<Self, Error> {
        Ok(match strategy {
            Strategy::Indirect => StrategySite::Indirect,
            Strategy::Retpoline => StrategySite::Retpoline,
            Strategy::Jit => StrategySite::Jit(engine.site()),
            Strategy::Patch { slots } => StrategySite::Patch(Box::new(engine.patch_site(slots)?)),
        })
    }

    pub fn strategy(&self) -> Strategy {
        match self {
            StrategySite::Indirect => Strategy::Indirect,
            StrategySite::Retpoline => Strategy::Retpoline,
            StrategySite::Jit(_) => Strategy::Jit,
            StrategySite::Patch(p) => Strategy::Patch {
                slots: p.thunk_code().slot_count(),
            },
        }
    }

    /// Calls `target` with `args` the strategy's way.
    #[inline(always)]
    pub fn call(&self, pinned: &Pinned, target: F, args: F::Args) -> F::Ret {
        match self {
            StrategySite::Indirect => target.call_indirect(args),
            StrategySite::Retpoline => crate::call::retpolined::call(target, args),
            StrategySite::Jit(site) => site.call(pinned, target, args),
            StrategySite::Patch(site) => site.call(pinned, target, args),
        }
    }

    /// Promotes `targets` (JIT: compile and publish; Patch: retarget, to
    /// complete later); the baselines ignore it.
    pub fn promote(&self, targets: &[F]) -> Result<(), Error> {
        match self {
            StrategySite::Indirect | StrategySite::Retpoline => Ok(()),
            StrategySite::Jit(site) => site.promote(targets).map(|_| ()),
            StrategySite::Patch(site) => site.retarget(targets).map(|_| ()),
        }
    }

    /// Completes pending work (a Patch retarget whose grace period passed).
    pub fn poll(&self) -> bool {
        match self {
            StrategySite::Patch(site) => site.poll(),
            _ => false,
        }
    }
}

/// Calls `$f` with `$args`, comparing it first against each of the listed
/// functions and calling a match *directly*: Linux's `INDIRECT_CALL_1..4`,
/// with any number of candidates. Each argument expression is evaluated
/// once (only one branch runs).
///
/// ```
/// extern "C" fn double(x: i64) -> i64 { x * 2 }
/// extern "C" fn negate(x: i64) -> i64 { -x }
/// let f: extern "C" fn(i64) -> i64 = std::hint::black_box(negate);
/// assert_eq!(hotcall::listed_call!(f, (5), [double, negate]), -5);
/// ```
#[macro_export]
macro_rules! listed_call {
    ($f:expr, ($($arg:expr),* $(,)?), [$($listed:path),+ $(,)?]) => {{
        let f = $f;
        $crate::listed_call!(@chain f, ($($arg),*), $($listed),+)
    }};
    (@chain $f:ident, ($($arg:expr),*), $first:path $(, $rest:path)*) => {
        if $f as *const () as usize == $first as *const () as usize {
            $first($($arg),*)
        } else {
            $crate::listed_call!(@chain $f, ($($arg),*) $(, $rest)*)
        }
    };
    (@chain $f:ident, ($($arg:expr),*)) => {
        $f($($arg),*)
    };
}
