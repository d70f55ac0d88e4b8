//! The dispatch strategies `hotcall bench` compares, as one table.
//!
//! A row of the table is a strategy (its contract name) with the entry
//! callers use to reach it; one name may have several entries (`jit-fixed`
//! through a function pointer and through a static stub), and a cell is
//! (workload, strategy, entry).
//!
//! Adding a strategy: write a module with a `build` function and put one
//! entry in [`STRATEGIES`]. A strategy whose implementation does not exist
//! yet stays in the table as [`Build::Missing`] with the reason, and every
//! output reports it as missing; a strategy that exists but cannot serve one
//! workload says so from `build` ([`BuildError::NotApplicable`]).

use hotcall::workload::{Call, Workload};

mod indirect;
mod jit;
mod jit_fixed;
mod listed;
mod listed_targets;
mod patch;
mod patch_fixed;
mod retpoline;
mod sites;
mod static_sites;

/// How callers reach a strategy's dispatch code (part of the output
/// contract).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// The caller loads the site's current entry and calls it.
    Pointer,
    /// The caller makes a direct call to a fixed stub that is patched.
    Static,
    /// No dispatch code of hotcall's: the call is made in place.
    None,
}

impl Entry {
    pub const ALL: [Entry; 3] = [Entry::Pointer, Entry::Static, Entry::None];

    pub fn from_name(name: &str) -> Option<Entry> {
        Entry::ALL.into_iter().find(|e| e.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Entry::Pointer => "pointer",
            Entry::Static => "static",
            Entry::None => "none",
        }
    }
}

/// One strategy prepared for one workload: its sites, thunks, learner.
///
/// `Sync` because `threads-2` calls one cell from two threads at once.
pub trait Cell: Sync {
    /// Makes `calls` through the strategy as a latency chain starting at
    /// `x` (each call's argument is the previous call's result) and returns
    /// the last result; it must equal [`hotcall::workload::run_plain`]'s.
    /// The harness passes chunks of [`CHUNK_LEN`] calls or fewer.
    fn run(&self, calls: &[Call], x: u64) -> u64;

    /// Runs after each chunk, outside the counted region of `--count` and,
    /// for a cell that [`learns`](Cell::learns), outside the timed one:
    /// where a learning strategy takes its learning step.
    fn between_chunks(&self) {}

    /// Whether `between_chunks` does work worth timing on its own.
    fn learns(&self) -> bool {
        false
    }

    /// What was built, for the report (slots, forms, fallbacks).
    fn detail(&self) -> String;
}

/// Calls per chunk; see [`Cell::run`].
pub const CHUNK_LEN: usize = 4096;

/// Why a strategy has no cell for a workload.
#[derive(Debug)]
pub enum BuildError {
    /// The strategy cannot serve this workload (or these options); the
    /// reason is reported with the missing cell, and the run goes on.
    NotApplicable(String),
    /// It should have been built and was not: the run fails.
    Failed(String),
}

impl From<String> for BuildError {
    fn from(e: String) -> Self {
        BuildError::Failed(e)
    }
}

impl From<hotcall::Error> for BuildError {
    fn from(e: hotcall::Error) -> Self {
        BuildError::Failed(e.to_string())
    }
}

/// What every cell of a run is built with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BuildOptions {
    /// A retpoline-hardened host (`--hardened`): hotcall's engines run
    /// with `EngineConfig::hardened` (pointer entries, thunks' misses and
    /// static sites' miss stubs go through the retpoline) and `listed`
    /// makes its misses through the retpoline. `indirect` stays a plain
    /// call, the unhardened reference.
    pub hardened: bool,
}

/// Builds a cell, or says why it could not.
pub type BuildFn = fn(&Workload, BuildOptions) -> Result<Box<dyn Cell>, BuildError>;

pub enum Build {
    Ready(BuildFn),
    /// Not implemented yet; the reason is printed, and the report lists the
    /// cell as missing rather than leaving it out. Every strategy of the
    /// contract exists now; the variant stays for the next one (the report
    /// code and its tests use it).
    #[cfg_attr(not(test), allow(dead_code))]
    Missing(&'static str),
}

pub struct StrategyDef {
    /// The contract name.
    pub name: &'static str,
    pub entry: Entry,
    pub description: &'static str,
    pub build: Build,
}

impl StrategyDef {
    pub fn is_ready(&self) -> bool {
        matches!(self.build, Build::Ready(_))
    }

    /// The name, with the entry where it is one of hotcall's: what plots
    /// and progress messages show.
    pub fn label(&self) -> String {
        label(self.name, self.entry.name())
    }
}

/// [`StrategyDef::label`] from the names in a report.
pub fn label(name: &str, entry: &str) -> String {
    if entry == Entry::None.name() {
        name.to_string()
    } else {
        format!("{name} ({entry})")
    }
}

/// Every strategy, in report order. The ratios' baselines are `indirect`
/// and `retpoline`.
pub static STRATEGIES: &[StrategyDef] = &[
    StrategyDef {
        name: "indirect",
        entry: Entry::None,
        description: "a plain indirect call through the function pointer",
        build: Build::Ready(indirect::build),
    },
    StrategyDef {
        name: "retpoline",
        entry: Entry::None,
        description: "an indirect call through a retpoline (Spectre v2 hardening): a direct call to hotcall's retpoline with the callee in r11",
        build: Build::Ready(retpoline::build),
    },
    StrategyDef {
        name: "listed",
        entry: Entry::None,
        description: "the compare chain of listed_call! over the workload's true hot targets, compiled in (INDIRECT_CALL_N): compares and direct calls (asm call rel32) inline",
        build: Build::Ready(listed::build),
    },
    StrategyDef {
        name: "jit",
        entry: Entry::Pointer,
        description: "a site per workload site, learning with the default policy; one Engine::tick every 4,096 calls",
        build: Build::Ready(jit::build),
    },
    StrategyDef {
        name: "jit",
        entry: Entry::Static,
        description: "a static_site! stub that follows a learning site (StaticSite::use_jit): each thunk it publishes, the miss stub in a bypass; one Engine::tick every 4,096 calls",
        build: Build::Ready(static_sites::build_jit),
    },
    StrategyDef {
        name: "patch",
        entry: Entry::Pointer,
        description: "a Patch site (4 slots) per workload site, learning with the default policy; one Engine::tick every 4,096 calls",
        build: Build::Ready(patch::build),
    },
    StrategyDef {
        name: "patch",
        entry: Entry::Static,
        description: "a static_site! stub aimed at a learning Patch site's thunk (4 slots); one Engine::tick every 4,096 calls",
        build: Build::Ready(static_sites::build_patch),
    },
    StrategyDef {
        name: "jit-fixed",
        entry: Entry::Pointer,
        description: "a site per workload site, promoted once by hand with its true hot targets (no learning)",
        build: Build::Ready(jit_fixed::build),
    },
    StrategyDef {
        name: "jit-fixed",
        entry: Entry::Static,
        description: "a static_site! stub aimed at a JIT thunk of the true hot targets, promoted once by hand",
        build: Build::Ready(static_sites::build_jit_fixed),
    },
    StrategyDef {
        name: "patch-fixed",
        entry: Entry::Pointer,
        description: "a Patch site per workload site, retargeted once by hand to its true hot targets",
        build: Build::Ready(patch_fixed::build),
    },
    StrategyDef {
        name: "patch-fixed",
        entry: Entry::Static,
        description: "a static_site! stub aimed at a Patch thunk retargeted once by hand to the true hot targets",
        build: Build::Ready(static_sites::build_patch_fixed),
    },
];
