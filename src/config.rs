//! How an engine is set up: [`EngineConfig`] and [`Placement`].

use hotcall_policy::{PolicyConfig, ScheduleConfig};

/// How an engine is set up. `Default` gives the documented defaults.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Bytes of code memory (default 16 MiB, about 100,000 two-slot thunks).
    pub code_capacity: usize,
    /// Where to place code memory. [`Placement::NearHostText`] (default)
    /// makes calls to functions of the host binary direct.
    pub placement: Placement,
    /// Run Cranelift's verifier on each thunk (default: in debug builds).
    pub verify: bool,
    /// Serialize all cores after writing a thunk (`membarrier SYNC_CORE`).
    /// Default: on for aarch64 (required), off for x86-64 (coherent
    /// instruction fetch; see `hotcall_jit::coherence`).
    pub serialize_cores: bool,
    /// Let promoted hits jump to their target instead of calling it, where
    /// the signature passes everything in registers (default on). Off gives
    /// Cranelift's call-and-return shape, for comparison.
    pub tail_jumps: bool,
    /// Compile one template per thunk shape and patch targets into copies
    /// instead of running Cranelift for every publish (x86-64; default on).
    /// Off compiles every thunk from scratch, for comparison.
    pub templates: bool,
    /// The learning policy of new sites (default [`PolicyConfig::Adaptive`]);
    /// a site may override it ([`SiteOptions::policy`], [`Site::set_policy`]).
    pub policy: PolicyConfig,
    /// When sites learn: a background thread every 20 ms compiling at most
    /// 32 thunks per tick (the default), or only on [`Engine::tick`]
    /// ([`ScheduleConfig::manual`]).
    pub schedule: ScheduleConfig,
    /// Hardened mode (default off): every indirect branch hotcall itself
    /// emits goes through a retpoline, for hosts built with retpolines:
    /// thunks' miss paths (through per-arity trampolines, see
    /// `hotcall_jit::hardened`), sites' calls into their thunks and their
    /// plain indirect calls (`hotcall::retpoline`), static entries' default
    /// target. Promoted hits stay direct.
    pub hardened: bool,
}

/// Where an engine's code memory goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Within direct-call reach of the host binary's text.
    NearHostText,
    /// Within direct-call reach of this address (say, a plugin's text).
    Near(usize),
    /// Wherever the kernel puts it: promoted calls to the host's functions
    /// are then usually absolute (`movabs`+`call reg`). For comparisons.
    Anywhere,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            code_capacity: 16 << 20,
            placement: Placement::NearHostText,
            verify: cfg!(debug_assertions),
            serialize_cores: hotcall_jit::coherence::SERIALIZE_BY_DEFAULT,
            tail_jumps: true,
            templates: true,
            policy: PolicyConfig::default(),
            schedule: ScheduleConfig::default(),
            hardened: false,
        }
    }
}

impl EngineConfig {
    /// The defaults, but learning only on [`Engine::tick`]: deterministic,
    /// for tests and hosts that schedule learning themselves.
    pub fn manual() -> Self {
        EngineConfig {
            schedule: ScheduleConfig::manual(),
            ..Default::default()
        }
    }
}
