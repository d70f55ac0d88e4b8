//! The public engine: every constructor of engines and sites, ticks,
//! pinning and statistics. The machinery behind it is `runtime.rs`.

use std::fmt;
use std::sync::Arc;

use hotcall_jit::CodeMemoryStats;
use hotcall_policy::TickReport;

use crate::call::pin::Pinned;
use crate::call::signature::SiteFn;
use crate::config::EngineConfig;
use crate::error::Error;
use crate::patch::PatchSite;
use crate::runtime::{Codegen, EngineShared};
use crate::site::{Site, SiteOptions};
use crate::stats::EngineStats;

/// The entry point: owns code memory and the compiler; makes sites.
///
/// Cloning is cheap and shares the engine.
#[derive(Clone)]
pub struct Engine {
    pub(crate) shared: Arc<EngineShared>,
}

impl Engine {
    /// An engine with the default configuration. Never fails: if code
    /// generation cannot be set up, the engine works with plain indirect
    /// calls and says why in [`Engine::stats`].
    pub fn new() -> Self {
        Self::with_config(EngineConfig::default())
    }

    /// An engine with `config`; infallible like [`Engine::new`].
    pub fn with_config(config: EngineConfig) -> Self {
        let codegen = Codegen::new(&config);
        Engine {
            shared: EngineShared::new(&config, codegen),
        }
    }

    /// Like [`Engine::with_config`], but fails if code generation is not
    /// available.
    pub fn try_with_config(config: EngineConfig) -> Result<Self, Error> {
        let codegen = Codegen::new(&config).map_err(Error::EngineDisabled)?;
        Ok(Engine {
            shared: EngineShared::new(&config, Ok(codegen)),
        })
    }

    /// A new site for `F` that learns with the engine's policy (with the
    /// default policy, it starts by counting its calls).
    pub fn site<F: SiteFn>(&self) -> Site<F> {
        self.site_with(SiteOptions::default())
    }

    /// A new site with a name shown in its statistics.
    pub fn named_site<F: SiteFn>(&self, name: impl Into<String>) -> Site<F> {
        self.site_with(SiteOptions::default().name(name))
    }

    /// A new site with a name and a policy of its own.
    pub fn site_with<F: SiteFn>(&self, options: SiteOptions) -> Site<F> {
        Site::new(Arc::clone(&self.shared), options)
    }

    /// A new Patch site for `F` with `slots` slots (1 to 8), all disabled,
    /// that learns with the engine's policy, as [`Engine::site`] does. With
    /// the default policy it starts by counting every call and the
    /// scheduler promotes what it finds; [`PatchSite::retarget`] sets the
    /// targets by hand instead. Compiles the template for (signature, slot
    /// count) on first use in the process; later sites of that shape copy
    /// it.
    pub fn patch_site<F: SiteFn>(&self, slots: usize) -> Result<PatchSite<F>, Error> {
        self.patch_site_with(slots, SiteOptions::default())
    }

    /// [`Engine::patch_site`] with a name shown in its statistics.
    pub fn named_patch_site<F: SiteFn>(
        &self,
        name: impl Into<String>,
        slots: usize,
    ) -> Result<PatchSite<F>, Error> {
        self.patch_site_with(slots, SiteOptions::default().name(name))
    }

    /// [`Engine::patch_site`] with a name and a policy of its own
    /// ([`SiteOptions`]). The policy is fitted to the slot count (see `PatchSite`).
    pub fn patch_site_with<F: SiteFn>(
        &self,
        slots: usize,
        options: SiteOptions,
    ) -> Result<PatchSite<F>, Error> {
        PatchSite::new(Arc::clone(&self.shared), slots, options)
    }

    /// One learning round, synchronously: every site aggregates its
    /// counters, asks its policy, and installs what it decides (at most the
    /// schedule's budget of compiles). Callers of sites are never blocked
    /// by it. With a background schedule this runs by itself as well.
    pub fn tick(&self) -> TickReport {
        self.shared.scheduler.tick()
    }

    /// Pins the current thread; see [`Pinned`].
    #[inline]
    pub fn pin(&self) -> Pinned {
        Pinned::new()
    }

    /// Whether the engine is in hardened mode ([`EngineConfig::hardened`]).
    pub fn is_hardened(&self) -> bool {
        self.shared.hardened
    }

    /// Whether code generation is available.
    pub fn is_enabled(&self) -> bool {
        self.shared.is_enabled()
    }

    pub fn stats(&self) -> EngineStats {
        let scheduler = self.shared.scheduler.stats();
        match self.shared.memory() {
            Some(memory) => EngineStats {
                arch: Some(memory.backend().arch()),
                disabled: None,
                code: memory.stats(),
                scheduler,
            },
            None => EngineStats {
                arch: None,
                disabled: Some(self.shared.disabled_error()),
                code: CodeMemoryStats::default(),
                scheduler,
            },
        }
    }

    /// Reads `len` bytes of this engine's code at `addr`, for inspection
    /// (tests, disassembly of installed thunks).
    ///
    /// # Safety
    /// The range must be inside this engine's code memory and nothing may
    /// install or free code overlapping it during the read.
    pub unsafe fn read_code(&self, addr: usize, len: usize) -> Option<Vec<u8>> {
        let mem = self.shared.memory()?;
        // SAFETY: forwarded from the caller.
        mem.contains(addr)
            .then(|| unsafe { mem.read_code(addr, len) })
    }
}

impl Default for Engine {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("stats", &self.stats())
            .finish()
    }
}
