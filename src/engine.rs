//! The engine: code memory, the thunk compiler and the sites built on them.

use std::fmt;
use std::sync::{Arc, Mutex};

use hotcall_jit::hardened::MissTrampolines;
use hotcall_jit::{
    Arch, ArgLoc, CodeMemory, CodeMemoryOptions, CodeMemoryStats, CompilerOptions, ExecutableCode,
    GPRS, HOOK_STUB_MAX, Hooks, JitError, SlotPlan, ThunkCompiler, ThunkSig, miss_hook_target,
};
use hotcall_policy::publish::EntryCell;
use hotcall_policy::{PolicyConfig, ScheduleConfig, Scheduler, SchedulerStats, TickReport};

use crate::error::Error;
use crate::pin::Pinned;
use crate::signature::SiteFn;
use crate::site::{Site, SiteOptions};

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

/// Engine-wide counters.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct EngineStats {
    /// The host ISA, if code generation works.
    pub arch: Option<Arch>,
    /// Why code generation is off, if it is.
    #[cfg_attr(
        feature = "serde",
        serde(serialize_with = "crate::error::serialize_opt_display")
    )]
    pub disabled: Option<Error>,
    pub code: CodeMemoryStats,
    /// The learning scheduler: ticks, sites, compiles.
    pub scheduler: SchedulerStats,
}

impl EngineStats {
    /// The statistics as JSON (feature `serde`; the same fields).
    #[cfg(feature = "serde")]
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }
}

impl fmt::Display for EngineStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.arch, &self.disabled) {
            (_, Some(e)) => writeln!(f, "engine: code generation disabled: {e}")?,
            (Some(a), None) => writeln!(f, "engine: {a}")?,
            (None, None) => writeln!(f, "engine")?,
        }
        let c = &self.code;
        let t = &self.scheduler;
        writeln!(
            f,
            "  learning: {} site(s), {} tick(s) ({}), {} thunk(s) compiled by policies, {} failure(s); \
             last tick {:.1} us",
            t.sites,
            t.ticks,
            if t.background {
                "background thread"
            } else {
                "manual ticks"
            },
            t.compiles,
            t.failures,
            t.last_tick.elapsed_ns as f64 / 1e3
        )?;
        write!(
            f,
            "  code memory: {} of {} bytes in use (peak {}), {} live thunk(s), {} installed, {} freed, {}",
            c.in_use,
            c.capacity,
            c.peak_in_use,
            c.live,
            c.allocated_total,
            c.released_total,
            if c.near_host_text {
                "near the host text"
            } else {
                "far from the host text"
            }
        )
    }
}

/// A site's counting-hook stubs in code memory.
pub(crate) struct HookStubs {
    pub entry: u64,
    pub miss: u64,
    /// Miss stubs by register number (0: none).
    pub miss_tail: [u64; GPRS],
    pub code: ExecutableCode,
}

/// A thunk installed for a site.
pub(crate) struct Installed {
    pub code: ExecutableCode,
    pub slots: Vec<SlotPlan>,
    pub code_bytes: usize,
    pub compile_time: std::time::Duration,
}

struct Codegen {
    memory: Arc<CodeMemory>,
    compiler: Mutex<ThunkCompiler>,
}

pub(crate) struct EngineShared {
    codegen: Result<Codegen, JitError>,
    pub(crate) scheduler: Arc<Scheduler>,
    pub(crate) policy: PolicyConfig,
    /// `EngineConfig::hardened`.
    pub(crate) hardened: bool,
}

impl EngineShared {
    /// Compiles and installs a thunk calling `hooks`; does not publish it.
    pub(crate) fn build(
        &self,
        sig: &ThunkSig,
        targets: &[u64],
        hooks: &Hooks,
    ) -> Result<Installed, Error> {
        let cg = self
            .codegen
            .as_ref()
            .map_err(|e| Error::EngineDisabled(e.clone()))?;
        ThunkCompiler::check_targets(targets)?;
        let compiled = {
            let mut compiler = cg.compiler.lock().unwrap_or_else(|p| p.into_inner());
            compiler.compile_with_hooks(sig, targets, hooks, cg.memory.placement())?
        };
        let writable = cg.memory.alloc(compiled.len())?;
        let bytes = compiled.link(writable.address() as u64)?;
        let code = writable.finish(&bytes);
        Ok(Installed {
            code,
            slots: compiled.slots().to_vec(),
            code_bytes: compiled.len(),
            compile_time: compiled.compile_time(),
        })
    }

    /// Frees a thunk that was never published (no thread can be inside it).
    pub(crate) fn release_unpublished(&self, code: Installed) {
        if let Ok(cg) = &self.codegen {
            // SAFETY: never published, so no thread can be executing it.
            unsafe { cg.memory.release(code.code) };
        }
    }

    /// Frees `old` once no thread can be inside it.
    ///
    /// The caller must have unpublished `old` (no site entry points at it
    /// any more) before calling this.
    pub(crate) fn retire(&self, old: Installed) {
        self.retire_code(old.code);
    }

    /// Frees `code` once no thread can be inside it.
    ///
    /// The caller must have made `code` unreachable for new callers (no
    /// published entry leads to it any more) before calling this.
    pub(crate) fn retire_code(&self, code: ExecutableCode) {
        let Ok(cg) = &self.codegen else {
            return;
        };
        let memory = Arc::clone(&cg.memory);
        hotcall_policy::publish::retire(code, move |code| {
            // SAFETY: the code was made unreachable before `retire_code`
            // (caller's contract), and `retire` runs this only after every
            // thread pinned at that time has unpinned. Callers stay pinned
            // for their whole call through a site (`Site::call` borrows
            // their `Pinned`), returns from targets and hooks included, so
            // no thread is inside this code or can enter it.
            unsafe { memory.release(code) };
        });
    }

    /// Publishes `entry` in `cell` and frees `old`, the thunk the previous
    /// entry led to, once no thread can be inside it
    /// (`hotcall_policy::publish`: the store is `Release`, so `entry`'s
    /// code must be finished before this call).
    pub(crate) fn republish(&self, cell: &EntryCell, entry: usize, old: Option<Installed>) {
        // A thunk exists only where code generation works.
        let old = old.map(|o| o.code).zip(self.memory().cloned());
        cell.replace(entry, old, |(code, memory)| {
            // SAFETY: the previous entry was the only published way into
            // `code`, and `replace` stores the new entry first, then runs
            // this only after every thread pinned at that time has
            // unpinned. Callers are pinned from before they load the entry
            // until their call returns (`Site::call` borrows their
            // `Pinned`), returns into the thunk included, so no thread is
            // inside this code or can enter it.
            unsafe { memory.release(code) };
        });
    }

    /// Installs the counting-hook stubs of a site with signature `sig`: the
    /// entry stub, the miss stub for thunks whose miss path calls the hook,
    /// and one miss stub per register for thunks whose miss path
    /// tail-jumps (see `hotcall_jit::ir`). Each adds the site's `cookie`
    /// and jumps to a recording bridge.
    pub(crate) fn hook_stubs(&self, cookie: u64, sig: &ThunkSig) -> Result<HookStubs, Error> {
        let cg = self
            .codegen
            .as_ref()
            .map_err(|e| Error::EngineDisabled(e.clone()))?;
        let no_bridges = || JitError::Isa("host", "no counting bridges for this ISA".into());
        let bridges = hotcall_policy::counters::hook::bridge_addresses().ok_or_else(no_bridges)?;
        let cookie = u32::try_from(cookie)
            .ok()
            .filter(|&c| c < 1 << 31)
            .ok_or_else(|| JitError::Isa("host", format!("site cookie {cookie} too large")))?;
        let backend = cg.memory.backend();
        // The entry hook gets the thunk's own arguments (target first), the
        // miss hook the target's arguments followed by the target, a miss
        // stub for register r the target in r.
        let mut wanted = vec![
            (bridges.entry, ArgLoc::Reg(0), None),
            (bridges.miss, miss_hook_target(backend, sig), None),
        ];
        // Tail-jumping misses are sampled where the ISA and the TLS layout
        // allow (see `hotcall_policy::counters::record_sampled_miss`).
        let (tail_bridge, sample) = match bridges.sampled_miss_tail {
            Some((offset, bridge)) => (bridge, Some(offset)),
            None => (bridges.miss_tail, None),
        };
        let regs = backend.miss_stub_registers();
        wanted.extend(regs.iter().map(|&r| (tail_bridge, ArgLoc::Hw(r), sample)));
        // Every stub takes HOOK_STUB_MAX bytes at most; lay them out at
        // 16-byte steps, each generated for its final address.
        let poison = backend.poison_pattern();
        let writable = cg.memory.alloc(wanted.len() * HOOK_STUB_MAX)?;
        let base = writable.address() as u64;
        let mut bytes = Vec::with_capacity(wanted.len() * HOOK_STUB_MAX);
        let mut addresses = Vec::with_capacity(wanted.len());
        for (bridge, target, sample) in wanted {
            let place = base + bytes.len() as u64;
            let stub = backend.hook_stub(cookie, bridge, place, target, sample);
            assert!(
                stub.len() <= HOOK_STUB_MAX,
                "hook stub larger than its slot"
            );
            addresses.push(place);
            bytes.extend_from_slice(&stub);
            let end = bytes.len().next_multiple_of(16);
            while bytes.len() < end {
                bytes.extend_from_slice(&poison[..poison.len().min(end - bytes.len())]);
            }
        }
        let code = writable.finish(&bytes);
        let mut miss_tail = [0u64; GPRS];
        for (&r, &addr) in regs.iter().zip(&addresses[2..]) {
            miss_tail[usize::from(r)] = addr;
        }
        Ok(HookStubs {
            entry: addresses[0],
            miss: addresses[1],
            miss_tail,
            code,
        })
    }

    pub(crate) fn memory(&self) -> Option<&Arc<CodeMemory>> {
        self.codegen.as_ref().ok().map(|cg| &cg.memory)
    }

    pub(crate) fn is_enabled(&self) -> bool {
        self.codegen.is_ok()
    }

    /// Why this engine cannot compile, if it cannot.
    pub(crate) fn disabled_error(&self) -> Error {
        match &self.codegen {
            Err(e) => Error::EngineDisabled(e.clone()),
            Ok(_) => Error::EngineDisabled(JitError::Isa("host", "code generation is on".into())),
        }
    }
}

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
        let codegen = Self::codegen(&config);
        Self::assemble(config, codegen)
    }

    /// Like [`Engine::with_config`], but fails if code generation is not
    /// available.
    pub fn try_with_config(config: EngineConfig) -> Result<Self, Error> {
        let codegen = Self::codegen(&config).map_err(Error::EngineDisabled)?;
        Ok(Self::assemble(config, Ok(codegen)))
    }

    fn assemble(config: EngineConfig, codegen: Result<Codegen, JitError>) -> Self {
        // Without code generation nothing can be promoted: no scheduler
        // thread either.
        let schedule = if codegen.is_ok() {
            config.schedule
        } else {
            ScheduleConfig::manual()
        };
        Engine {
            shared: Arc::new(EngineShared {
                codegen,
                scheduler: Scheduler::new(schedule),
                policy: config.policy,
                hardened: config.hardened,
            }),
        }
    }

    fn codegen(config: &EngineConfig) -> Result<Codegen, JitError> {
        let arch = Arch::host()
            .ok_or_else(|| JitError::Isa("host", "hotcall runs on x86_64 and aarch64".into()))?;
        let near = match config.placement {
            Placement::NearHostText => None,
            Placement::Near(addr) => Some(addr),
            // Zero is never near anything mappable for code.
            Placement::Anywhere => Some(usize::MAX / 2),
        };
        let memory = CodeMemory::new(&CodeMemoryOptions {
            capacity: config.code_capacity,
            near,
            serialize_cores: config.serialize_cores,
        })?;
        let compiler =
            ThunkCompiler::new(
                arch,
                CompilerOptions {
                    verify: config.verify,
                    tail_jumps: config.tail_jumps,
                    templates: config.templates,
                    hardened: if config.hardened {
                        Some(MissTrampolines::host().ok_or_else(|| {
                            JitError::Isa("host", "no retpoline for this ISA".into())
                        })?)
                    } else {
                        None
                    },
                },
            )?;
        Ok(Codegen {
            memory: Arc::new(memory),
            compiler: Mutex::new(compiler),
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
        self.shared.codegen.is_ok()
    }

    pub fn stats(&self) -> EngineStats {
        let scheduler = self.shared.scheduler.stats();
        match &self.shared.codegen {
            Ok(cg) => EngineStats {
                arch: Some(cg.memory.backend().arch()),
                disabled: None,
                code: cg.memory.stats(),
                scheduler,
            },
            Err(e) => EngineStats {
                arch: None,
                disabled: Some(Error::EngineDisabled(e.clone())),
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
