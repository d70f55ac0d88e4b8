//! The benchmark workloads: call streams that `hotcall bench` and the
//! criterion benches in `benches/` replay through each dispatch strategy.
//!
//! A workload is a precomputed stream of calls (a target and the site that
//! makes the call) drawn once from a seed, so every strategy replays exactly
//! the same calls. Streams hold [`STREAM_LEN`] random draws: far more than a
//! branch predictor's history can memorize, so a strategy sees the
//! workload's distribution, not a pattern it could learn (only `mono` is
//! learnable, by design). The names are part of the `hotcall bench` output
//! contract.
//!
//! Calls form a latency chain: each call's argument is the previous call's
//! result ([`run_plain`]), so calls cannot overlap, a wrong target changes
//! the final result, and the final result of a stream is the check that a
//! strategy called the right functions.

mod rng;
mod targets;
mod zipf;

use crate::{Engine, PolicyConfig, Site, SiteOptions};

pub use rng::SplitMix64;
pub use targets::{Callback, POOL, POOL_SIZE, target as pool_target};
pub use zipf::Zipf;

/// Calls in one pass of a workload's stream (per thread).
pub const STREAM_LEN: usize = 1 << 16;
/// `phase`: calls between changes of the hot set. A pass holds
/// `STREAM_LEN / PHASE_LEN` = 4 phases, each with its own 8 targets.
pub const PHASE_LEN: usize = 16_384;
/// `sites-1k`: how many sites.
pub const SITES_1K: usize = 1000;
/// A target is *hot* at a site if it gets at least this share of the
/// site's calls (see [`Workload::hot_targets`]).
pub const HOT_SHARE: f64 = 0.10;
/// At most this many hot targets per site.
pub const MAX_HOT: usize = 4;
/// The argument of a chain's first call.
pub const CHAIN_START: u64 = 0x0123_4567_89ab_cdef;

/// The Zipf exponent of every Zipf-shaped mix.
const ZIPF_S: f64 = 1.0;
/// `phase`: targets per phase.
const PHASE_TARGETS: usize = 8;
/// `sites-1k`: a site calls between 1 and this many targets.
const SITE_MAX_TARGETS: usize = 8;

/// Which site of a workload makes a call (`0..site_count`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SiteIndex(pub u32);

impl SiteIndex {
    pub fn get(self) -> usize {
        self.0 as usize
    }
}

/// One call of a stream.
#[derive(Clone, Copy, Debug)]
pub struct Call {
    pub target: Callback,
    pub site: SiteIndex,
}

/// A target's share of a site's calls.
#[derive(Clone, Copy, Debug)]
pub struct Share {
    pub target: Callback,
    pub share: f64,
}

/// The workloads, by their contract names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WorkloadKind {
    Mono,
    Bi9010,
    Zipf8,
    Zipf64,
    Uniform16,
    Phase,
    Sites1k,
    Threads2,
}

impl WorkloadKind {
    pub const ALL: [WorkloadKind; 8] = [
        WorkloadKind::Mono,
        WorkloadKind::Bi9010,
        WorkloadKind::Zipf8,
        WorkloadKind::Zipf64,
        WorkloadKind::Uniform16,
        WorkloadKind::Phase,
        WorkloadKind::Sites1k,
        WorkloadKind::Threads2,
    ];

    /// The contract name.
    pub fn name(self) -> &'static str {
        match self {
            WorkloadKind::Mono => "mono",
            WorkloadKind::Bi9010 => "bi-90-10",
            WorkloadKind::Zipf8 => "zipf-8",
            WorkloadKind::Zipf64 => "zipf-64",
            WorkloadKind::Uniform16 => "uniform-16",
            WorkloadKind::Phase => "phase",
            WorkloadKind::Sites1k => "sites-1k",
            WorkloadKind::Threads2 => "threads-2",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// One line for reports.
    pub fn description(self) -> &'static str {
        match self {
            WorkloadKind::Mono => "one site, one target",
            WorkloadKind::Bi9010 => "one site, two targets at 90/10",
            WorkloadKind::Zipf8 => "one site, 8 targets, Zipf s=1",
            WorkloadKind::Zipf64 => "one site, 64 targets, Zipf s=1",
            WorkloadKind::Uniform16 => "one site, 16 targets uniformly at random",
            WorkloadKind::Phase => {
                "one site, Zipf s=1 over 8 targets; all 8 change every 16,384 calls"
            }
            WorkloadKind::Sites1k => {
                "1,000 sites visited at random, each with its own Zipf mix of 1-8 of 64 shared targets"
            }
            WorkloadKind::Threads2 => "zipf-8 on two threads at once, through the same site",
        }
    }

    /// Threads calling at once.
    pub fn threads(self) -> usize {
        match self {
            WorkloadKind::Threads2 => 2,
            _ => 1,
        }
    }

    pub fn site_count(self) -> usize {
        match self {
            WorkloadKind::Sites1k => SITES_1K,
            _ => 1,
        }
    }
}

/// A workload drawn from a seed: one stream per thread and each site's mix.
#[derive(Clone, Debug)]
pub struct Workload {
    kind: WorkloadKind,
    streams: Vec<Vec<Call>>,
    /// Each site's targets with their true shares over a whole pass,
    /// largest first.
    mixes: Vec<Vec<Share>>,
}

impl Workload {
    /// Draws the workload's streams from `seed`. The same seed gives the
    /// same streams on every machine.
    pub fn new(kind: WorkloadKind, seed: u64) -> Self {
        let mut rng = SplitMix64::new(seed ^ kind_salt(kind));
        // Which pool function plays rank 1, 2, ...: varies with the seed so
        // that no result hinges on one function's address.
        let mut order: Vec<usize> = (0..POOL_SIZE).collect();
        rng.shuffle(&mut order);
        let ranked = |n: usize| -> Vec<Callback> { order[..n].iter().map(|&i| POOL[i]).collect() };
        let site0 = SiteIndex(0);
        let single = |targets: Vec<Callback>,
                      draw: &mut dyn FnMut(&mut SplitMix64) -> usize,
                      rng: &mut SplitMix64|
         -> Vec<Call> {
            (0..STREAM_LEN)
                .map(|_| Call {
                    target: targets[draw(rng)],
                    site: site0,
                })
                .collect()
        };
        let (streams, mixes) = match kind {
            WorkloadKind::Mono => {
                let t = ranked(1);
                let mix = shares(&t, &[1.0]);
                (vec![single(t, &mut |_| 0, &mut rng)], vec![mix])
            }
            WorkloadKind::Bi9010 => {
                let t = ranked(2);
                let mix = shares(&t, &[0.9, 0.1]);
                let mut draw = |r: &mut SplitMix64| usize::from(r.next_f64() >= 0.9);
                (vec![single(t, &mut draw, &mut rng)], vec![mix])
            }
            WorkloadKind::Zipf8 | WorkloadKind::Zipf64 | WorkloadKind::Threads2 => {
                let n = if kind == WorkloadKind::Zipf64 { 64 } else { 8 };
                let t = ranked(n);
                let zipf = Zipf::new(n, ZIPF_S);
                let probs: Vec<f64> = (1..=n).map(|k| zipf.pmf(k)).collect();
                let mix = shares(&t, &probs);
                let mut draw = |r: &mut SplitMix64| zipf.sample(r) - 1;
                let streams = (0..kind.threads())
                    .map(|_| single(t.clone(), &mut draw, &mut rng))
                    .collect();
                (streams, vec![mix])
            }
            WorkloadKind::Uniform16 => {
                let t = ranked(16);
                let mix = shares(&t, &[1.0 / 16.0; 16]);
                let mut draw = |r: &mut SplitMix64| r.below(16);
                (vec![single(t, &mut draw, &mut rng)], vec![mix])
            }
            WorkloadKind::Phase => phase(&ranked(POOL_SIZE), &mut rng),
            WorkloadKind::Sites1k => sites_1k(&ranked(POOL_SIZE), &mut rng),
        };
        Workload {
            kind,
            streams,
            mixes,
        }
    }

    pub fn kind(&self) -> WorkloadKind {
        self.kind
    }

    pub fn name(&self) -> &'static str {
        self.kind.name()
    }

    pub fn threads(&self) -> usize {
        self.streams.len()
    }

    pub fn site_count(&self) -> usize {
        self.mixes.len()
    }

    /// The calls thread `thread` makes in one pass.
    pub fn stream(&self, thread: usize) -> &[Call] {
        &self.streams[thread]
    }

    /// A site's targets and their true shares of its calls over a pass,
    /// largest first.
    pub fn mix(&self, site: SiteIndex) -> &[Share] {
        &self.mixes[site.get()]
    }

    /// The targets a programmer who knows the workload would promote at a
    /// site: those with at least [`HOT_SHARE`] of its calls, largest first,
    /// at most [`MAX_HOT`]. Empty where no target is that hot (`uniform-16`,
    /// and `phase`, whose hot set is spread over four phases).
    pub fn hot_targets(&self, site: SiteIndex) -> Vec<Callback> {
        self.mix(site)
            .iter()
            .take_while(|s| s.share >= HOT_SHARE)
            .take(MAX_HOT)
            .map(|s| s.target)
            .collect()
    }

    /// The targets with at least [`HOT_SHARE`] of *all* the workload's
    /// calls, largest first, at most [`MAX_HOT`]: what a programmer would
    /// list at one call instruction that makes every site's calls (an
    /// interpreter's call-native instruction). The same as
    /// [`hot_targets`](Self::hot_targets) for one-site workloads; for
    /// `sites-1k`, whose sites are visited uniformly, each target's share is
    /// the mean of its shares at the sites (none reaches 10%).
    pub fn hot_targets_of_all_calls(&self) -> Vec<Callback> {
        if self.site_count() == 1 {
            return self.hot_targets(SiteIndex(0));
        }
        let sites = self.site_count() as f64;
        let mut total: Vec<Share> = Vec::new();
        for s in self.mixes.iter().flatten() {
            match total
                .iter_mut()
                .find(|t| t.target as usize == s.target as usize)
            {
                Some(t) => t.share += s.share / sites,
                None => total.push(Share {
                    target: s.target,
                    share: s.share / sites,
                }),
            }
        }
        total.sort_by(|a, b| b.share.total_cmp(&a.share));
        total
            .iter()
            .take_while(|s| s.share >= HOT_SHARE)
            .take(MAX_HOT)
            .map(|s| s.target)
            .collect()
    }

    /// One hotcall site per workload site, each promoted once with its
    /// [`hot_targets`](Self::hot_targets) (policy `Fixed`), or left a plain
    /// indirect call where there are none (policy `Off`): nothing is learned.
    /// The `jit-fixed` strategy of `hotcall bench`.
    pub fn promoted_sites(&self, engine: &Engine) -> Result<Vec<Site<Callback>>, String> {
        (0..self.site_count())
            .map(|i| {
                let options = SiteOptions::new()
                    .name(format!("{}#{i}", self.name()))
                    .policy(PolicyConfig::Off);
                let site = engine.site_with::<Callback>(options);
                let hot = self.hot_targets(SiteIndex(i as u32));
                if !hot.is_empty() {
                    // Promoting by hand makes the policy Fixed.
                    site.promote(&hot)
                        .map_err(|e| format!("promoting site {i} of {}: {e}", self.name()))?;
                }
                Ok(site)
            })
            .collect()
    }

    /// The result of `passes` passes of thread `thread`'s stream made with
    /// plain calls, starting at [`CHAIN_START`]: what every strategy must
    /// return.
    pub fn expected(&self, thread: usize, passes: usize) -> u64 {
        (0..passes).fold(CHAIN_START, |x, _| run_plain(self.stream(thread), x))
    }
}

/// The reference: the calls made with plain indirect calls, chained from
/// `x`.
pub fn run_plain(calls: &[Call], x: u64) -> u64 {
    calls.iter().fold(x, |x, c| (c.target)(x))
}

/// Different workloads drawn from one seed get unrelated streams.
fn kind_salt(kind: WorkloadKind) -> u64 {
    let i = WorkloadKind::ALL
        .iter()
        .position(|&k| k == kind)
        .unwrap_or(0) as u64;
    (i + 1).wrapping_mul(0xa076_1d64_78bd_642f)
}

fn shares(targets: &[Callback], probs: &[f64]) -> Vec<Share> {
    let mut mix: Vec<Share> = targets
        .iter()
        .zip(probs)
        .map(|(&target, &share)| Share { target, share })
        .collect();
    mix.sort_by(|a, b| b.share.total_cmp(&a.share));
    mix
}

/// `phase`: pass-long stream of `STREAM_LEN / PHASE_LEN` phases; phase `p`
/// draws Zipf(8) over its own 8 targets, so the whole hot set changes at
/// each boundary.
fn phase(ranked: &[Callback], rng: &mut SplitMix64) -> (Vec<Vec<Call>>, Vec<Vec<Share>>) {
    let phases = STREAM_LEN / PHASE_LEN;
    let zipf = Zipf::new(PHASE_TARGETS, ZIPF_S);
    let group = |p: usize| &ranked[p * PHASE_TARGETS..(p + 1) * PHASE_TARGETS];
    let stream = (0..STREAM_LEN)
        .map(|i| Call {
            target: group(i / PHASE_LEN)[zipf.sample(rng) - 1],
            site: SiteIndex(0),
        })
        .collect();
    let mut targets = Vec::new();
    let mut probs = Vec::new();
    for p in 0..phases {
        for (k, &t) in group(p).iter().enumerate() {
            targets.push(t);
            probs.push(zipf.pmf(k + 1) / phases as f64);
        }
    }
    (vec![stream], vec![shares(&targets, &probs)])
}

/// `sites-1k`: each site calls its own 1..=8 targets of the pool with a
/// Zipf mix; each call goes to a site drawn uniformly at random, like an
/// interpreter whose call-native instruction runs with whatever callback the
/// current bytecode names.
fn sites_1k(ranked: &[Callback], rng: &mut SplitMix64) -> (Vec<Vec<Call>>, Vec<Vec<Share>>) {
    let sites: Vec<(Vec<Callback>, Zipf)> = (0..SITES_1K)
        .map(|_| {
            let n = 1 + rng.below(SITE_MAX_TARGETS);
            let mut pool = ranked.to_vec();
            rng.shuffle(&mut pool);
            pool.truncate(n);
            (pool, Zipf::new(n, ZIPF_S))
        })
        .collect();
    let stream = (0..STREAM_LEN)
        .map(|_| {
            let s = rng.below(SITES_1K);
            let (targets, zipf) = &sites[s];
            Call {
                target: targets[zipf.sample(rng) - 1],
                site: SiteIndex(s as u32),
            }
        })
        .collect();
    let mixes = sites
        .iter()
        .map(|(targets, zipf)| {
            let probs: Vec<f64> = (1..=targets.len()).map(|k| zipf.pmf(k)).collect();
            shares(targets, &probs)
        })
        .collect();
    (vec![stream], mixes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(f: Callback) -> usize {
        f as usize
    }

    #[test]
    fn names_round_trip_and_are_the_contract_names() {
        let names: Vec<&str> = WorkloadKind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(
            names,
            [
                "mono",
                "bi-90-10",
                "zipf-8",
                "zipf-64",
                "uniform-16",
                "phase",
                "sites-1k",
                "threads-2"
            ]
        );
        for k in WorkloadKind::ALL {
            assert_eq!(WorkloadKind::from_name(k.name()), Some(k));
        }
        assert_eq!(WorkloadKind::from_name("zipf-9"), None);
    }

    #[test]
    fn same_seed_same_stream_other_seed_other_stream() {
        for k in WorkloadKind::ALL {
            let a = Workload::new(k, 1);
            let b = Workload::new(k, 1);
            assert_eq!(a.expected(0, 1), b.expected(0, 1), "{}", k.name());
            assert_eq!(a.threads(), k.threads());
            assert_eq!(a.site_count(), k.site_count());
            for t in 0..a.threads() {
                assert_eq!(a.stream(t).len(), STREAM_LEN);
            }
        }
        let a = Workload::new(WorkloadKind::Zipf8, 1);
        let c = Workload::new(WorkloadKind::Zipf8, 2);
        assert_ne!(a.expected(0, 1), c.expected(0, 1));
    }

    /// The streams' empirical shares match the declared mixes.
    #[test]
    fn streams_follow_their_mixes() {
        for k in [
            WorkloadKind::Bi9010,
            WorkloadKind::Zipf8,
            WorkloadKind::Uniform16,
            WorkloadKind::Phase,
        ] {
            let w = Workload::new(k, 3);
            for s in w.mix(SiteIndex(0)) {
                let n = w
                    .stream(0)
                    .iter()
                    .filter(|c| addr(c.target) == addr(s.target))
                    .count();
                let got = n as f64 / STREAM_LEN as f64;
                // 5 standard deviations of a binomial proportion.
                let tol = 5.0 * (s.share * (1.0 - s.share) / STREAM_LEN as f64).sqrt();
                assert!(
                    (got - s.share).abs() < tol,
                    "{}: {got} vs {}",
                    k.name(),
                    s.share
                );
            }
        }
    }

    #[test]
    fn phase_changes_its_whole_hot_set_every_phase_len_calls() {
        let w = Workload::new(WorkloadKind::Phase, 5);
        let set = |p: usize| {
            let mut v: Vec<usize> = w.stream(0)[p * PHASE_LEN..(p + 1) * PHASE_LEN]
                .iter()
                .map(|c| addr(c.target))
                .collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        for p in 0..STREAM_LEN / PHASE_LEN {
            assert_eq!(set(p).len(), PHASE_TARGETS);
            if p > 0 {
                assert!(set(p).iter().all(|t| !set(p - 1).contains(t)));
            }
        }
    }

    #[test]
    fn hot_targets_follow_the_rule() {
        let hot = |k| Workload::new(k, 9).hot_targets(SiteIndex(0)).len();
        // Zipf(8): 0.368, 0.184, 0.123 are >= 10%, 0.092 is not.
        assert_eq!(hot(WorkloadKind::Mono), 1);
        assert_eq!(hot(WorkloadKind::Bi9010), 2);
        assert_eq!(hot(WorkloadKind::Zipf8), 3);
        // Zipf(64): 0.211, 0.105.
        assert_eq!(hot(WorkloadKind::Zipf64), 2);
        assert_eq!(hot(WorkloadKind::Uniform16), 0);
        // Each phase's leader has 0.368 / 4 of the pass.
        assert_eq!(hot(WorkloadKind::Phase), 0);
    }

    #[test]
    fn hot_targets_of_all_calls() {
        for k in WorkloadKind::ALL {
            let w = Workload::new(k, 9);
            let all: Vec<usize> = w.hot_targets_of_all_calls().into_iter().map(addr).collect();
            if k == WorkloadKind::Sites1k {
                // 1,000 sites over 64 targets: each target has about 1/64
                // of the calls; the stream agrees that none has 10%.
                assert!(all.is_empty());
                let most = POOL
                    .iter()
                    .map(|&t| {
                        w.stream(0)
                            .iter()
                            .filter(|c| addr(c.target) == addr(t))
                            .count()
                    })
                    .max()
                    .unwrap();
                assert!((most as f64) < 0.05 * STREAM_LEN as f64, "{most}");
            } else {
                let one: Vec<usize> = w.hot_targets(SiteIndex(0)).into_iter().map(addr).collect();
                assert_eq!(all, one, "{}", k.name());
            }
        }
    }

    #[test]
    fn sites_1k_uses_every_site_and_only_each_sites_targets() {
        let w = Workload::new(WorkloadKind::Sites1k, 11);
        let mut seen = vec![false; SITES_1K];
        for c in w.stream(0) {
            seen[c.site.get()] = true;
            assert!(
                w.mix(c.site)
                    .iter()
                    .any(|s| addr(s.target) == addr(c.target))
            );
        }
        assert!(seen.iter().all(|&s| s));
    }
}
