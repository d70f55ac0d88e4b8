//! The dispatch strategies `hotcall bench` compares, as one table.
//!
//! Adding a strategy: write a module with a `build` function and put one
//! entry in [`STRATEGIES`]. A strategy whose implementation does not exist
//! yet stays in the table as [`Build::Missing`] with the reason, and every
//! output reports it as missing.

use hotcall::workload::{Call, Workload};

mod indirect;
mod jit;
mod jit_fixed;
mod sites;

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

/// Builds a cell, or says why it could not.
pub type BuildFn = fn(&Workload) -> Result<Box<dyn Cell>, String>;

pub enum Build {
    Ready(BuildFn),
    /// Not implemented yet; the reason is printed.
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
        description: "an indirect call through a retpoline (Spectre v2 hardening)",
        build: Build::Missing("not built yet (the retpoline baseline is issue 4)"),
    },
    StrategyDef {
        name: "listed",
        entry: Entry::None,
        description: "a compiled compare chain over the workload's true hot targets (INDIRECT_CALL_N)",
        build: Build::Missing("not built yet (the listed baseline is issue 4)"),
    },
    StrategyDef {
        name: "jit",
        entry: Entry::Pointer,
        description: "a site per workload site, learning with the default policy; one Engine::tick every 4,096 calls",
        build: Build::Ready(jit::build),
    },
    StrategyDef {
        name: "patch",
        entry: Entry::Static,
        description: "a static_site! direct-call entry patched to the learned thunk",
        build: Build::Missing("not built yet (static_site! and patching are issue 4)"),
    },
    StrategyDef {
        name: "jit-fixed",
        entry: Entry::Pointer,
        description: "a site per workload site, promoted once by hand with its true hot targets (no learning)",
        build: Build::Ready(jit_fixed::build),
    },
];

/// Looks a strategy up by its contract name.
pub fn by_name(name: &str) -> Option<&'static StrategyDef> {
    STRATEGIES.iter().find(|s| s.name == name)
}
