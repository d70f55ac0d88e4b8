//! hotcall: run-time indirect call promotion on Cranelift-compiled thunks.
//!
//! A host creates an [`Engine`], makes a [`Site`] for each place where it
//! calls callbacks through function pointers, and calls through the site
//! while [pinned](Engine::pin). Sites learn: they count what they call, and
//! the engine's scheduler (a background thread, or [`Engine::tick`])
//! compiles a thunk that compares the incoming pointer against the hot
//! targets and calls a match directly, demotes megamorphic sites to a plain
//! indirect call, and follows phase changes ([`policy`]). [`Site::promote`]
//! sets the targets by hand instead. Republishing is one atomic store, and
//! the old thunk is freed once no thread can be inside it.
//!
//! ```
//! use hotcall::{Engine, EngineConfig, PolicyState};
//!
//! extern "C" fn double(x: i64) -> i64 { x * 2 }
//! extern "C" fn negate(x: i64) -> i64 { -x }
//!
//! let engine = Engine::with_config(EngineConfig::manual());
//! let site = engine.site::<extern "C" fn(i64) -> i64>();
//! let pinned = engine.pin();
//! for i in 0..2000 {
//!     site.call(&pinned, double, (i,)); // counted while the site profiles
//! }
//! drop(pinned);
//! engine.tick(); // one learning round
//! assert_eq!(site.stats().state, PolicyState::Promoted);
//! let pinned = engine.pin();
//! assert_eq!(site.call(&pinned, double, (21,)), 42); // slot 0: direct
//! assert_eq!(site.call(&pinned, negate, (5,)), -5);  // miss
//!
//! site.promote(&[negate, double]).unwrap(); // by hand
//! assert_eq!(site.call(&pinned, negate, (5,)), -5);
//! ```

// The call path (any site), then the engine's public handle and its
// runtime (build, publish, retire), static-stub linking, the statistics
// shared by all sites, and each kind of site as a thin layer on those.
/// What calls cost on the running CPU, for the cost-aware decision.
pub mod calibrate;
mod call;
mod config;
mod engine;
mod error;
mod link;
mod patch;
mod runtime;
mod site;
mod static_site;
mod stats;
mod strategy;
mod symbols;
/// The benchmark call streams (feature `workloads`, on with `cli`).
#[cfg(feature = "workloads")]
pub mod workload;

pub use call::pin::{Pinned, collect_garbage};
pub use call::retpolined as retpoline;
pub use call::signature::{Param, Return, SiteFn};
#[doc(hidden)]
pub use call::static_entry;
pub use call::static_entry::MAX_INT_PARAMS as MAX_STATIC_INT_PARAMS;
pub use config::{EngineConfig, Placement};
pub use engine::Engine;
pub use error::{Error, JitError};
pub use patch::PatchSite;
pub use site::{Site, SiteOptions};
pub use static_site::{StaticSite, StaticStub};
pub use stats::{
    CandidateStats, EngineStats, PatchSiteStats, PatchSlotStats, PromoteReport, RetargetReport,
    SiteMode, SiteStats, SlotStats, StaticMode, StaticSiteStats,
};
pub use strategy::{Strategy, StrategySite};

/// Learning: policies, counters and scheduling.
pub use hotcall_policy as policy;
pub use hotcall_policy::{
    AdaptiveConfig, Counting, PolicyConfig, PolicyState, ScheduleConfig, SeedConfig, TickReport,
};

/// The code-generation types a host meets: signatures, the ISA, and what
/// statistics report. The code-generation crate itself (compilers, code
/// memory, text pokes) is `hotcall-jit`, not part of this API.
pub use hotcall_jit::patch::MissExit;
pub use hotcall_jit::{Arch, CallForm, CodeMemoryStats, ThunkSig, ValType};

/// Items the exported macros expand to; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::call::abi::RegFile;
}
