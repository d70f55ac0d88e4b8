//! What sites and engines report: every statistics type, in one place,
//! shared by all kinds of site. Snapshots only: nothing here is on a call
//! path. With feature `serde`, the JIT site's and the engine's statistics
//! also have `to_json`.

use std::fmt;
use std::time::Duration;

use hotcall_jit::patch::MissExit;
use hotcall_jit::{Arch, CallForm, CodeMemoryStats};
use hotcall_policy::{Counting, Counts, PolicyState, SchedulerStats};

use crate::error::Error;
use crate::runtime::Installed;
use crate::symbols;

/// How a site currently dispatches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum SiteMode {
    /// Through its thunk.
    Thunk,
    /// A plain indirect call: nothing promoted, demoted on purpose (bypass),
    /// or the last build failed (see [`SiteStats::last_error`]).
    PlainIndirect,
}

/// One promoted slot as installed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct SlotStats {
    pub target: usize,
    /// The target's symbol, where the host binary has one.
    pub symbol: Option<String>,
    /// Whether the call is a true direct call or the absolute fallback.
    pub form: CallForm,
    /// A direct slot that jumps to its target (`jmp rel32` / `b`) after
    /// tearing down the thunk's frame, so the target returns straight to the
    /// caller.
    pub tail: bool,
    /// Calls to this slot's target: counted while the site counts every
    /// call (this epoch), else as counted by the last profile (a lower
    /// bound if the target was a miss then); `None` if never profiled.
    pub hits: Option<u64>,
}

/// A miss target the counters saw.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct CandidateStats {
    pub target: usize,
    pub symbol: Option<String>,
    pub count: u64,
}

/// A snapshot of a site.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct SiteStats {
    pub name: Option<String>,
    pub signature: String,
    pub mode: SiteMode,
    /// The site's policy (`adaptive`, `seed`, `fixed`, `off`, ...).
    pub policy: &'static str,
    /// Where the policy stands.
    pub state: PolicyState,
    /// What the installed thunk counts.
    pub counting: Counting,
    /// The thunk's entry address, in [`SiteMode::Thunk`].
    pub entry: Option<usize>,
    /// Promoted slots, in compare order.
    pub slots: Vec<SlotStats>,
    /// Calls counted since the current thunk was installed (exact; zero
    /// when only misses are counted).
    pub calls: u64,
    /// Misses since the current thunk was installed (exact while the thunk
    /// counts misses or everything).
    pub misses: u64,
    /// Most frequent miss targets since the current thunk was installed.
    pub candidates: Vec<CandidateStats>,
    /// Bytes of machine code of the current thunk (its allocation is this
    /// rounded up to 32).
    pub code_bytes: usize,
    /// Thunks built and published (successful builds only): every
    /// recompile, by hand or by the policy.
    pub publishes: u64,
    /// Builds that failed (the site fell back to a plain indirect call).
    pub failures: u64,
    /// Why the last build failed, until the next success.
    #[cfg_attr(
        feature = "serde",
        serde(serialize_with = "crate::error::serialize_opt_display")
    )]
    pub last_error: Option<Error>,
    /// Build time of the last successful build.
    #[cfg_attr(feature = "serde", serde(serialize_with = "serialize_opt_duration_ns"))]
    pub last_compile_time: Option<Duration>,
    /// Learning decisions taken.
    pub decisions: u64,
}

#[cfg(feature = "serde")]
fn serialize_opt_duration_ns<S: serde::Serializer>(
    d: &Option<Duration>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&(d.as_nanos() as u64)),
        None => s.serialize_none(),
    }
}

impl SiteStats {
    /// The statistics as JSON (feature `serde`; the same fields, durations in nanoseconds).
    #[cfg(feature = "serde")]
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }
}

fn describe(target: usize, symbol: &Option<String>) -> String {
    match symbol {
        Some(s) => format!("{s} ({target:#x})"),
        None => format!("{target:#x}"),
    }
}

impl fmt::Display for SiteStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "site {} {}: {} policy, {}; ",
            self.name.as_deref().unwrap_or("<unnamed>"),
            self.signature,
            self.policy,
            self.state
        )?;
        match self.mode {
            SiteMode::Thunk => write!(
                f,
                "thunk at {:#x}, {} bytes, {} slots, counting {}",
                self.entry.unwrap_or(0),
                self.code_bytes,
                self.slots.len(),
                self.counting.name()
            )?,
            SiteMode::PlainIndirect => f.write_str("plain indirect call")?,
        }
        write!(
            f,
            "; {} publishes, {} failures, {} decisions",
            self.publishes, self.failures, self.decisions
        )?;
        if let Some(t) = self.last_compile_time {
            write!(f, ", last build {:.1} us", t.as_secs_f64() * 1e6)?;
        }
        for (i, s) in self.slots.iter().enumerate() {
            let tail = if s.tail { ", tail jump" } else { "" };
            let hits = s.hits.map(|h| format!(", {h} hits")).unwrap_or_default();
            write!(
                f,
                "\n  slot {i}: {} ({}{tail}{hits})",
                describe(s.target, &s.symbol),
                s.form.name()
            )?;
        }
        if self.counting != Counting::None {
            write!(
                f,
                "\n  counted: {} calls, {} misses",
                self.calls, self.misses
            )?;
            for c in &self.candidates {
                write!(
                    f,
                    "\n  miss: {} x{}",
                    describe(c.target, &c.symbol),
                    c.count
                )?;
            }
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

/// Candidates shown in statistics.
const SHOWN_CANDIDATES: usize = 8;

pub(crate) fn candidate_stats(counts: &Counts) -> Vec<CandidateStats> {
    counts
        .candidates
        .iter()
        .take(SHOWN_CANDIDATES)
        .map(|c| CandidateStats {
            target: c.target as usize,
            symbol: symbols::name_of(c.target as usize),
            count: c.count,
        })
        .collect()
}

type HitsOf<'a> = &'a dyn Fn(usize, u64) -> Option<u64>;

pub(crate) fn slot_stats(i: &Installed, hits: Option<HitsOf<'_>>) -> Vec<SlotStats> {
    i.slots
        .iter()
        .enumerate()
        .map(|(k, s)| SlotStats {
            target: s.target as usize,
            symbol: symbols::name_of(s.target as usize),
            form: s.form,
            tail: s.tail,
            hits: hits.and_then(|h| h(k, s.target)),
        })
        .collect()
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

/// How a static site dispatches now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StaticMode {
    Unbound,
    Indirect,
    Jit {
        entry: usize,
        slots: Vec<SlotStats>,
    },
    /// A learning JIT site ([`StaticSite::use_jit`]).
    Learning(Box<SiteStats>),
    Patch(PatchSiteStats),
}

/// A snapshot of a static site.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticSiteStats {
    pub name: &'static str,
    /// The stub's address.
    pub stub: usize,
    /// Where the stub jumps now.
    pub jumps_to: usize,
    pub mode: StaticMode,
    /// Stores into the stub by the static site so far (a learning Patch
    /// site also moves it between its entries).
    pub stub_writes: u64,
}

impl fmt::Display for StaticSiteStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "static site {}: stub at {:#x} jumps to {:#x}, {} stub writes; ",
            self.name, self.stub, self.jumps_to, self.stub_writes
        )?;
        match &self.mode {
            StaticMode::Unbound => f.write_str("unbound (hardened miss stub)"),
            StaticMode::Indirect => f.write_str("indirect (miss stub)"),
            StaticMode::Jit { entry, slots } => {
                write!(f, "JIT thunk at {entry:#x}, {} slots", slots.len())
            }
            StaticMode::Learning(s) => write!(f, "learning JIT site\n  {s}"),
            StaticMode::Patch(p) => write!(f, "Patch thunk\n  {p}"),
        }
    }
}

/// One slot as the site sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PatchSlotStats {
    /// The target the slot should promote (`None`: unused).
    pub wanted: Option<usize>,
    /// The target calls currently match (`None`: disabled).
    pub enabled: Option<usize>,
    /// Where the slot's branch goes (`None`: the trap, never patched).
    pub branch: Option<usize>,
    /// Calls of the wanted target counted while the site counts every call
    /// (this counting epoch); `None` otherwise.
    pub hits: Option<u64>,
}

/// A snapshot of a Patch site.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatchSiteStats {
    pub name: Option<String>,
    pub signature: String,
    /// The thunk's entry (fixed for the site's life).
    pub entry: usize,
    /// Where calls go now: the thunk, its counting entry, or `None` in a
    /// bypass (a plain indirect call, no thunk).
    pub current_entry: Option<usize>,
    pub slots: Vec<PatchSlotStats>,
    /// How the thunk's miss path reaches its miss exit.
    pub miss_exit: MissExit,
    /// The site's policy (`adaptive`, `fixed`, ...) and where it stands.
    pub policy: &'static str,
    pub state: PolicyState,
    /// What the site counts now.
    pub counting: Counting,
    /// Calls and misses counted in this counting epoch (exact; `calls` is
    /// zero unless every call is counted).
    pub calls: u64,
    pub misses: u64,
    /// Most frequent miss targets in this counting epoch.
    pub candidates: Vec<CandidateStats>,
    /// Learning decisions taken.
    pub decisions: u64,
    /// Calls to `retarget` (by hand or by the policy) that changed
    /// something.
    pub retargets: u64,
    /// Branch words rewritten (over all completions).
    pub patches: u64,
    /// Completions (each one `membarrier` for any number of slots).
    pub completions: u64,
    /// Whether changed slots wait for a grace period.
    pub pending: bool,
    /// Whether the last completion could serialize the cores (`membarrier`
    /// available).
    pub serialized: bool,
}

impl fmt::Display for PatchSiteStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "patch site {} {}: thunk at {:#x}, {}; {} policy, {}, counting {}; \
             {} retargets, {} completions, {} branch patches, {} decisions{}",
            self.name.as_deref().unwrap_or("<unnamed>"),
            self.signature,
            self.entry,
            match self.current_entry {
                None => "bypassed (plain indirect call)".to_string(),
                Some(e) if e == self.entry => "called directly".to_string(),
                Some(e) => format!("called through its counting entry {e:#x}"),
            },
            self.policy,
            self.state,
            self.counting.name(),
            self.retargets,
            self.completions,
            self.patches,
            self.decisions,
            if self.pending {
                ", completion pending"
            } else {
                ""
            }
        )?;
        let show = |t: Option<usize>| t.map_or("-".to_string(), |t| format!("{t:#x}"));
        for (i, s) in self.slots.iter().enumerate() {
            write!(
                f,
                "\n  slot {i}: wanted {}, enabled {}, branch {}",
                show(s.wanted),
                show(s.enabled),
                show(s.branch)
            )?;
            if let Some(h) = s.hits {
                write!(f, ", {h} hits")?;
            }
        }
        if self.counting != Counting::None {
            write!(
                f,
                "\n  counted: {} calls, {} misses",
                self.calls, self.misses
            )?;
            for c in &self.candidates {
                let name = c.symbol.as_deref().unwrap_or("");
                write!(f, "\n  miss: {name} ({:#x}) x{}", c.target, c.count)?;
            }
        }
        Ok(())
    }
}

/// What one retarget did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetargetReport {
    /// Slots enabled at once (their branch already went to the target).
    pub enabled_now: usize,
    /// Slots disabled until the next completion.
    pub pending: usize,
    /// Slots disabled for good (no target wanted any more).
    pub cleared: usize,
    /// Whether a previous retarget completed at the start of this one.
    pub completed_previous: bool,
}
