//! Aggregated counts of one site: what the policies decide from.

/// Calls to one target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct TargetCount {
    pub target: u64,
    pub count: u64,
}

/// A site's counts summed over all threads, since the start of the current
/// counting epoch (a new thunk or a reset), or over a window between two
/// snapshots.
///
/// Exact (every call counted, no loss, in any interleaving of threads, as
/// long as no new epoch starts during the counting): `calls`, `hits` and
/// `misses`. Heuristic, as in the seed: `candidates` and `catch_all`, since
/// each thread keeps its own first-come-first-served candidate table and
/// may discard it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Counts {
    /// Calls seen by a counting thunk's entry hook (zero under a lean thunk,
    /// which counts only misses).
    pub calls: u64,
    /// Hits per promoted slot, in slot order. Counted only by counting
    /// thunks ([`crate::Counting::All`]).
    pub hits: Vec<u64>,
    /// Calls that matched no promoted target.
    pub misses: u64,
    /// Misses attributed to specific targets, merged across threads, most
    /// frequent first. Each count is a guaranteed lower bound: under
    /// space-saving, an entry's count minus what it inherited.
    pub candidates: Vec<TargetCount>,
    /// Misses that found every candidate entry of their thread taken.
    pub catch_all: u64,
    /// The largest candidate total of any one thread, as the thread counts
    /// it (the seed's relearn trigger is per CPU).
    pub max_thread_candidates: u64,
}

impl Counts {
    /// Zero counts for a plan with `slots` promoted targets.
    pub fn empty(slots: usize) -> Self {
        Counts {
            hits: vec![0; slots],
            ..Default::default()
        }
    }

    /// Total hits over all slots.
    pub fn total_hits(&self) -> u64 {
        self.hits.iter().sum()
    }

    /// The count of `target` among the candidates.
    pub fn candidate(&self, target: u64) -> u64 {
        self.candidates
            .iter()
            .find(|c| c.target == target)
            .map_or(0, |c| c.count)
    }

    /// Adds a candidate count, merging by target (unsorted until
    /// [`Counts::sort_candidates`]).
    pub(crate) fn add_candidate(&mut self, target: u64, count: u64) {
        if count == 0 {
            return;
        }
        match self.candidates.iter_mut().find(|c| c.target == target) {
            Some(c) => c.count += count,
            None => self.candidates.push(TargetCount { target, count }),
        }
    }

    /// Most frequent first; ties by address, so the order is deterministic.
    pub(crate) fn sort_candidates(&mut self) {
        self.candidates
            .sort_by(|a, b| b.count.cmp(&a.count).then(a.target.cmp(&b.target)));
    }

    /// The counts accumulated since `earlier`, a snapshot of the same epoch
    /// (counters only grow within an epoch, except candidate tables that a
    /// thread discarded, which saturate at zero).
    pub fn since(&self, earlier: &Counts) -> Counts {
        let mut w = Counts {
            calls: self.calls.saturating_sub(earlier.calls),
            hits: self
                .hits
                .iter()
                .enumerate()
                .map(|(i, &h)| h.saturating_sub(earlier.hits.get(i).copied().unwrap_or(0)))
                .collect(),
            misses: self.misses.saturating_sub(earlier.misses),
            candidates: Vec::new(),
            catch_all: self.catch_all.saturating_sub(earlier.catch_all),
            max_thread_candidates: self.max_thread_candidates,
        };
        for c in &self.candidates {
            w.add_candidate(
                c.target,
                c.count.saturating_sub(earlier.candidate(c.target)),
            );
        }
        w.sort_candidates();
        w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_subtracts_and_saturates() {
        let mut a = Counts::empty(2);
        a.calls = 10;
        a.hits = vec![3, 4];
        a.misses = 3;
        a.add_candidate(7, 2);
        a.add_candidate(9, 1);
        let mut b = a.clone();
        b.calls = 25;
        b.hits = vec![10, 6];
        b.misses = 9;
        b.candidates.clear();
        b.add_candidate(9, 5);
        b.add_candidate(11, 1);
        b.sort_candidates();
        let w = b.since(&a);
        assert_eq!(w.calls, 15);
        assert_eq!(w.hits, vec![7, 2]);
        assert_eq!(w.misses, 6);
        assert_eq!(
            w.candidates,
            vec![
                TargetCount {
                    target: 9,
                    count: 4
                },
                TargetCount {
                    target: 11,
                    count: 1
                }
            ]
        );
    }
}
