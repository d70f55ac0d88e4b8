//! What a Patch site reports: its slots, its retargets, its learning.

use std::fmt;

use hotcall_jit::patch::MissExit;
use hotcall_policy::{Counting, PolicyState};

use crate::site::CandidateStats;

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
