//! The engine's runtime, shared by every kind of site: code memory and the
//! compiler (build), publication of a new entry and retirement of the code
//! it replaces (publish, retire), and the sites' counting-hook stubs.
//! Sites hold an `Arc<EngineShared>`; the public [`crate::Engine`] is a
//! handle to one.

use std::sync::{Arc, Mutex};

use hotcall_jit::hardened::MissTrampolines;
use hotcall_jit::{
    Arch, ArgLoc, CodeMemory, CodeMemoryOptions, CompilerOptions, ExecutableCode, GPRS,
    HOOK_STUB_MAX, Hooks, JitError, SlotPlan, ThunkCompiler, ThunkSig, miss_hook_target,
};
use hotcall_policy::publish::EntryCell;
use hotcall_policy::{PolicyConfig, ScheduleConfig, Scheduler};

use crate::config::{EngineConfig, Placement};
use crate::error::Error;

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

pub(crate) struct Codegen {
    memory: Arc<CodeMemory>,
    compiler: Mutex<ThunkCompiler>,
}

pub(crate) struct EngineShared {
    pub(crate) codegen: Result<Codegen, JitError>,
    pub(crate) scheduler: Arc<Scheduler>,
    pub(crate) policy: PolicyConfig,
    /// `EngineConfig::hardened`.
    pub(crate) hardened: bool,
}

impl Codegen {
    /// Code memory and a compiler for `config`.
    pub(crate) fn new(config: &EngineConfig) -> Result<Codegen, JitError> {
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
}

impl EngineShared {
    pub(crate) fn new(config: &EngineConfig, codegen: Result<Codegen, JitError>) -> Arc<Self> {
        // Without code generation nothing can be promoted: no scheduler
        // thread either.
        let schedule = if codegen.is_ok() {
            config.schedule
        } else {
            ScheduleConfig::manual()
        };
        Arc::new(EngineShared {
            codegen,
            scheduler: Scheduler::new(schedule),
            policy: config.policy.clone(),
            hardened: config.hardened,
        })
    }

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
        // Hardened thunks never tail-jump their miss (it goes through the
        // retpoline trampoline), so they get no miss stubs: those end in
        // `jmp *reg` (sampled) or jump to a bridge that does.
        let regs: &[u8] = if self.hardened {
            &[]
        } else {
            backend.miss_stub_registers()
        };
        wanted.extend(regs.iter().map(|&r| (tail_bridge, ArgLoc::Hw(r), sample)));
        // Every stub takes HOOK_STUB_MAX bytes at most; lay them out at
        // 16-byte steps, each generated for its final address.
        let poison = backend.poison_pattern();
        let writable = cg.memory.alloc(wanted.len() * HOOK_STUB_MAX)?;
        let base = writable.address() as u64;
        // A stub reaches a far bridge with `jmp *0(%rip)` / `br x16`: an
        // indirect branch, which a hardened engine never emits.
        let span = hotcall_jit::Placement {
            lo: base,
            hi: base + (wanted.len() * HOOK_STUB_MAX) as u64,
        };
        if self.hardened
            && let Some(&(far, _, _)) = wanted
                .iter()
                .find(|(bridge, _, _)| !span.reaches(*bridge, backend.direct_call_reach()))
        {
            return Err(JitError::HookOutOfReach { hook: far }.into());
        }
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
