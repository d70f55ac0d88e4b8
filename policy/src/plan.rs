//! What a site should run: the promoted targets and how much it counts.

use std::fmt;

/// Most promoted targets one thunk holds (the code generator's limit too).
pub const MAX_SLOTS: usize = 8;

/// How much a site's code counts.
///
/// Counting costs a call into the recording hook, so a site counts
/// everything only while it is being profiled and counts only its misses
/// (which are slow anyway) once it is stable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Counting {
    /// Nothing: the lean thunk of a fixed site, or a plain indirect call.
    None,
    /// Misses only: the thunk's miss path calls the recording hook before
    /// its indirect call. Hits cost exactly what they cost without counting.
    Misses,
    /// Every call: the thunk calls the recording hook on entry.
    All,
}

impl Counting {
    pub fn name(self) -> &'static str {
        match self {
            Counting::None => "none",
            Counting::Misses => "misses",
            Counting::All => "all",
        }
    }
}

/// A site's dispatch plan: promoted targets in compare order, and counting.
///
/// The *bypass* has no thunk on the call path at all: a plain indirect
/// call, nothing counted. Any other plan is a thunk, possibly with no
/// targets: with counting, that is a *probe*, which only counts and calls
/// the target indirectly.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Plan {
    pub targets: Vec<u64>,
    pub counting: Counting,
    /// No thunk (then `targets` is empty and nothing is counted).
    pub bypass: bool,
}

impl Plan {
    /// A plain indirect call, nothing counted.
    pub fn bypass() -> Self {
        Plan {
            targets: Vec::new(),
            counting: Counting::None,
            bypass: true,
        }
    }

    /// Nothing promoted, every call counted: how a learning site starts.
    pub fn probe() -> Self {
        Plan::new(Vec::new(), Counting::All)
    }

    /// A thunk promoting `targets` (in order) and counting `counting`.
    pub fn new(targets: Vec<u64>, counting: Counting) -> Self {
        Plan {
            targets,
            counting,
            bypass: false,
        }
    }

    /// Whether this plan runs without any thunk.
    pub fn is_bypass(&self) -> bool {
        self.bypass
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_bypass() {
            return f.write_str("bypass");
        }
        f.write_str("[")?;
        for (i, t) in self.targets.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{t:#x}")?;
        }
        write!(f, "] counting {}", self.counting.name())
    }
}
