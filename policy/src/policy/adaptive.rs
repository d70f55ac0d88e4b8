//! The default policy: promote what dominates, bypass what is megamorphic,
//! notice phase changes quickly, and never flap.
//!
//! ```text
//!            enough calls counted                 misses surge, or a
//!  Profiling ───────────────────────> Promoted ─── periodic check ───> Profiling
//!   (count all)  hot set found      (count misses)
//!      │
//!      │ no hot set (megamorphic)                 back-off expires
//!      ╰───────────────────────────> Bypass ───────────────────────> Profiling
//!                                   (no thunk, nothing counted)
//! ```
//!
//! **Choosing the hot set.** Targets are ranked by their calls over the
//! profile. A target is promoted (up to `max_slots`, in frequency order, so
//! the most frequent target is the straight-line slot 0) if it has at least
//! `min_share` of all calls. LLVM's indirect-call promotion additionally
//! asks each target for 30% of the calls *remaining* after the slots before
//! it; that rule exists to bound inlined code growth, which hotcall does
//! not have (a slot is one compare and one jump), and it would cut a Zipf
//! site over 8 targets down to a single slot covering 37% of its calls.
//! 5% is LLVM's floor on a target's total share: below it, the compare that
//! every later slot and every miss pays costs more than the rare hit saves.
//!
//! **Megamorphic sites.** If the hot set covers less than `min_coverage` of
//! all calls, most calls would run the whole compare chain and then an
//! indirect call anyway, which costs more than a plain indirect call (a
//! miss costs about 3x one on this project's machine): the site is demoted
//! to a *bypass* (no thunk, no counting, exactly a plain indirect call) and
//! re-probed after `bypass_backoff` ticks, doubling on every probe that
//! finds it still megamorphic, up to `bypass_backoff_max`. With the
//! defaults (16 ticks, doubling) a uniform site compiles three thunks in its
//! first 100 ticks: the first probe, and re-probes at ticks 17 and 50.
//!
//! **No flapping.** A new hot set replaces the installed one only if its
//! expected cost per call under [`CostModel`] is lower by more than
//! `hysteresis` (10%): two near-equal targets trading places leave the site
//! alone.
//!
//! **Phase changes.** A promoted site counts only its misses, exactly. When
//! the misses of one tick exceed `surge_factor` times what the last profile
//! predicted (and at least `min_samples`), the site goes back to profiling
//! for one tick and then installs the new hot set: a new hot set is promoted
//! within two ticks. A promoted site is also re-profiled every
//! `reprofile_every` ticks (doubling while nothing changes), which catches
//! shifts among the promoted targets that misses cannot show.
//!
//! **What learning may cost.** Following a change costs a tick of misses
//! and a tick of counting every call, so a hot set that changes every few
//! ticks is cheaper left alone: when the profile after a surge finds a new
//! hot set for the second time in a row within `churn_ticks` (8) of the
//! last one, the site is bypassed with the bypass back-off instead (the
//! `phase` workload of `hotcall bench` changes every 4 ticks of the
//! harness; a single change, or changes further apart, are still followed
//! within two ticks). And a site with
//! few calls per tick needs many ticks to count `min_samples`: check
//! profiles take at most `max_profile_share` (1/16) of its ticks, so a
//! profile of `p` ticks is followed by at least `15 p` (in `sites-1k`, a
//! thousand sites share the calls of one loop).

use std::sync::Arc;

use crate::calibration::Calibration;
use crate::counts::Counts;
use crate::plan::{Counting, MAX_SLOTS, Plan};

use super::predict::{Prediction, predict};

use super::{Decision, Observation, Policy, PolicyState, ranked_targets};

/// Relative costs of a thunk's paths, in units of a well-predicted plain
/// indirect call. Used only to compare two hot sets (hysteresis), so only
/// the ratios matter.
#[derive(Clone, Debug, PartialEq)]
pub struct CostModel {
    /// A hit on slot `k`.
    pub hit: [f64; MAX_SLOTS],
    /// A miss through a thunk with no slots; each slot adds `per_slot`.
    pub miss: f64,
    /// What each compare adds to a miss.
    pub per_slot: f64,
}

impl Default for CostModel {
    /// Measured on this project's machine (`cargo bench --bench dispatch`):
    /// slot 0 hit 1.23x, slot 1 1.71x, miss after two slots 2.98x a plain
    /// indirect call; later slots extrapolated by the same step.
    fn default() -> Self {
        let mut hit = [0.0; MAX_SLOTS];
        for (k, h) in hit.iter_mut().enumerate() {
            *h = 1.25 + 0.45 * k as f64;
        }
        CostModel {
            hit,
            miss: 2.1,
            per_slot: 0.45,
        }
    }
}

impl CostModel {
    /// Expected cost per call of promoting `targets` (in that order) given
    /// each target's calls in `ranked` and `total` calls.
    pub fn expected(&self, targets: &[u64], ranked: &[(u64, u64)], total: u64) -> f64 {
        if total == 0 {
            return 0.0;
        }
        let total = total as f64;
        let mut covered = 0.0;
        let mut cost = 0.0;
        for (k, t) in targets.iter().enumerate() {
            let calls = ranked.iter().find(|r| r.0 == *t).map_or(0, |r| r.1) as f64;
            let share = calls / total;
            covered += share;
            cost += share * self.hit[k.min(MAX_SLOTS - 1)];
        }
        let miss = self.miss + self.per_slot * targets.len() as f64;
        cost + (1.0 - covered).max(0.0) * miss
    }
}

/// [`Adaptive`]'s settings; `Default` gives the documented defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct AdaptiveConfig {
    /// Most targets promoted (default 4, at most 8).
    pub max_slots: usize,
    /// A target is promoted only with at least this share of all calls (5%).
    pub min_share: f64,
    /// A hot set covering less than this share of calls is megamorphic:
    /// bypass (50%).
    pub min_coverage: f64,
    /// Calls a profile needs before it decides; a tick's misses must reach
    /// it to count as a surge (1000).
    pub min_samples: u64,
    /// A new hot set must be this much cheaper (relative) to replace the
    /// installed one (0.10).
    pub hysteresis: f64,
    /// Misses per tick above this factor times the expected ones trigger a
    /// profile (2.0).
    pub surge_factor: f64,
    /// Ticks between check profiles of a promoted site (64), doubled after
    /// every check that changes nothing, up to `reprofile_max` (4096).
    pub reprofile_every: u64,
    pub reprofile_max: u64,
    /// Ticks in bypass before the first re-probe (16), doubled after every
    /// probe that finds the site still megamorphic, up to
    /// `bypass_backoff_max` (1024).
    pub bypass_backoff: u64,
    pub bypass_backoff_max: u64,
    /// A promotion that a surge of misses ends within this many ticks of
    /// its install, and whose profile then finds another hot set, was
    /// *short* (8). The second short promotion in a row is not followed:
    /// the site is bypassed (with the bypass back-off, which keeps doubling
    /// while the churn goes on), since its hot set changes faster than
    /// learning pays, each change costing a tick of misses and a tick of
    /// counting every call. A surge whose profile finds the same set (say,
    /// a tick that ran long) or a promotion that lasts ends the churn.
    pub churn_ticks: u64,
    /// At most this share of a site's ticks go to check profiles (1/16):
    /// a site whose profile took `p` ticks (a site with few calls per tick
    /// needs many to reach `min_samples`) is checked again no sooner than
    /// `p * (1 / share - 1)` ticks later, whatever `reprofile_every` says.
    pub max_profile_share: f64,
    pub costs: CostModel,
    /// With a calibration, the hot set is chosen by predicted cost
    /// ([`super::predict`]): the cheapest prefix of the ranked targets if
    /// it beats the plain call by [`super::predict::MARGIN`], else bypass.
    /// `None` (the default, for now): the share and coverage rules above.
    /// (Shared: every site's policy holds the engine's one calibration.)
    pub calibration: Option<Arc<Calibration>>,
    /// Whether the site's indirect calls are retpolined (hardened mode),
    /// which the cost prediction prices in.
    pub hardened: bool,
}

impl Default for AdaptiveConfig {
    fn default() -> Self {
        AdaptiveConfig {
            max_slots: 4,
            min_share: 0.05,
            min_coverage: 0.5,
            min_samples: 1000,
            hysteresis: 0.10,
            surge_factor: 2.0,
            reprofile_every: 64,
            reprofile_max: 4096,
            bypass_backoff: 16,
            bypass_backoff_max: 1024,
            churn_ticks: 8,
            max_profile_share: 1.0 / 16.0,
            costs: CostModel::default(),
            calibration: None,
            hardened: false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum State {
    Profiling,
    Promoted { since: u64, next_check: u64 },
    Bypass { reprobe_at: u64 },
}

/// The default policy (see the module docs).
#[derive(Debug)]
pub struct Adaptive {
    config: AdaptiveConfig,
    state: State,
    /// Ticks of the next bypass.
    backoff: u64,
    /// Ticks until the next check profile of a promoted site.
    check_every: u64,
    /// Misses per tick the last profile predicts for the installed set.
    expected_misses: f64,
    /// Hot sets in a row that replaced a promotion within `churn_ticks`
    /// of its install.
    short_promotions: u32,
    /// How long the promotion that a surge just ended had lasted, while
    /// the profile it started runs.
    surge_lived: Option<u64>,
    /// What the cost model predicted at the last concluded profile.
    prediction: Option<Prediction>,
}

impl Adaptive {
    pub fn new(mut config: AdaptiveConfig) -> Self {
        config.max_slots = config.max_slots.clamp(1, MAX_SLOTS);
        Adaptive {
            backoff: config.bypass_backoff.max(1),
            check_every: config.reprofile_every.max(1),
            expected_misses: 0.0,
            short_promotions: 0,
            surge_lived: None,
            prediction: None,
            state: State::Profiling,
            config,
        }
    }

    pub fn config(&self) -> &AdaptiveConfig {
        &self.config
    }

    /// What the cost model predicted at the last concluded profile (only
    /// with a calibration).
    pub fn prediction(&self) -> Option<&Prediction> {
        self.prediction.as_ref()
    }

    /// The hot set of a profile, or `None` if promotion does not pay: by
    /// predicted cost with a calibration, else by share and coverage.
    fn hot_set(&mut self, ranked: &[(u64, u64)], total: u64) -> Option<Vec<u64>> {
        if let Some(cal) = &self.config.calibration {
            let p = predict(
                cal,
                self.config.hardened,
                ranked,
                total,
                self.config.max_slots,
            );
            let slots = p.slots;
            self.prediction = Some(p);
            return (slots > 0).then(|| ranked[..slots].iter().map(|&(t, _)| t).collect());
        }
        self.share_hot_set(ranked, total)
    }

    /// The hot set by share and coverage, or `None` if the site is
    /// megamorphic.
    fn share_hot_set(&self, ranked: &[(u64, u64)], total: u64) -> Option<Vec<u64>> {
        let floor = self.config.min_share * total as f64;
        let hot: Vec<(u64, u64)> = ranked
            .iter()
            .take(self.config.max_slots)
            .take_while(|&&(_, n)| n as f64 >= floor)
            .copied()
            .collect();
        let covered: u64 = hot.iter().map(|&(_, n)| n).sum();
        let enough = !hot.is_empty() && covered as f64 >= self.config.min_coverage * total as f64;
        enough.then(|| hot.into_iter().map(|(t, _)| t).collect())
    }

    fn bypass(&mut self, tick: u64) -> Decision {
        let reprobe_at = tick + self.backoff;
        self.backoff = (self.backoff * 2).min(self.config.bypass_backoff_max.max(1));
        self.state = State::Bypass { reprobe_at };
        Decision::Install(Plan::bypass())
    }

    /// A finished profile: promote, keep, or bypass.
    fn conclude(&mut self, obs: &Observation<'_>, counts: &Counts) -> Decision {
        let total = counts.calls;
        let ranked = ranked_targets(obs.installed, counts);
        let Some(mut targets) = self.hot_set(&ranked, total) else {
            return self.bypass(obs.tick);
        };
        let installed = &obs.installed.targets;
        let unchanged = if !installed.is_empty() && *installed != targets {
            let costs = &self.config.costs;
            let now = costs.expected(installed, &ranked, total);
            let new = costs.expected(&targets, &ranked, total);
            let keep = new > now * (1.0 - self.config.hysteresis)
                && (self.config.calibration.is_some()
                    || self.hot_set_covers(installed, &ranked, total));
            if keep {
                targets = installed.clone();
            }
            keep
        } else {
            *installed == targets
        };
        // Churn: a surge ended a short promotion and its profile found
        // another hot set. Twice in a row: bypass rather than follow (a
        // surge whose profile finds the same set, or a promotion that
        // lasted, ends the churn).
        if let Some(lived) = self.surge_lived.take() {
            if !unchanged && lived < self.config.churn_ticks {
                self.short_promotions += 1;
                if self.short_promotions >= 2 {
                    return self.bypass(obs.tick);
                }
            } else {
                self.short_promotions = 0;
            }
        }
        // A check that changed nothing: check half as often next time.
        self.check_every = if unchanged {
            (self.check_every * 2).min(self.config.reprofile_max.max(1))
        } else {
            self.config.reprofile_every.max(1)
        };
        if self.short_promotions == 0 {
            // Not while churning: its back-off keeps doubling.
            self.backoff = self.config.bypass_backoff.max(1);
        }
        // Profiling at most `max_profile_share` of the time: a profile that
        // took `p` ticks is followed by at least `p * (1/share - 1)`.
        let share = self.config.max_profile_share.clamp(1e-3, 1.0);
        let duty_floor = (obs.ticks_installed as f64 * (1.0 / share - 1.0)).ceil() as u64;
        let covered: u64 = targets
            .iter()
            .map(|t| ranked.iter().find(|r| r.0 == *t).map_or(0, |r| r.1))
            .sum();
        let per_tick = total as f64 / obs.ticks_installed.max(1) as f64;
        self.expected_misses = per_tick * (1.0 - covered as f64 / total.max(1) as f64);
        self.state = State::Promoted {
            since: obs.tick,
            next_check: obs.tick + self.check_every.max(duty_floor),
        };
        Decision::Install(Plan::new(targets, Counting::Misses))
    }

    /// Whether an installed set still meets the coverage floor.
    fn hot_set_covers(&self, targets: &[u64], ranked: &[(u64, u64)], total: u64) -> bool {
        let covered: u64 = targets
            .iter()
            .map(|t| ranked.iter().find(|r| r.0 == *t).map_or(0, |r| r.1))
            .sum();
        covered as f64 >= self.config.min_coverage * total as f64
    }

    fn profile(&mut self, obs: &Observation<'_>) -> Decision {
        self.state = State::Profiling;
        Decision::Install(Plan::new(obs.installed.targets.clone(), Counting::All))
    }
}

impl Policy for Adaptive {
    fn name(&self) -> &'static str {
        "adaptive"
    }

    fn initial_plan(&mut self, _tick: u64) -> Plan {
        self.state = State::Profiling;
        Plan::probe()
    }

    fn decide(&mut self, obs: &Observation<'_>) -> Decision {
        match self.state {
            State::Profiling => {
                if obs.installed.counting != Counting::All {
                    // Installed from outside (say, by hand): profile it.
                    return self.profile(obs);
                }
                if obs.epoch.calls < self.config.min_samples {
                    return Decision::Keep;
                }
                let counts = obs.epoch.clone();
                self.conclude(obs, &counts)
            }
            State::Promoted { since, next_check } => {
                let misses = obs.window.misses as f64;
                let surge = obs.window.misses >= self.config.min_samples
                    && misses > self.config.surge_factor * self.expected_misses;
                if surge {
                    self.surge_lived = Some(obs.tick.saturating_sub(since));
                    self.profile(obs)
                } else if obs.tick >= next_check {
                    // A periodic check: this promotion lasted.
                    self.short_promotions = 0;
                    self.profile(obs)
                } else {
                    Decision::Keep
                }
            }
            State::Bypass { reprobe_at } => {
                if obs.tick >= reprobe_at {
                    self.state = State::Profiling;
                    Decision::Install(Plan::probe())
                } else {
                    Decision::Keep
                }
            }
        }
    }

    fn install_failed(&mut self, tick: u64) {
        // The site is a plain indirect call now; try again after a back-off.
        let _ = self.bypass(tick);
    }

    fn state(&self) -> PolicyState {
        match self.state {
            State::Profiling => PolicyState::Profiling,
            State::Promoted { .. } => PolicyState::Promoted,
            State::Bypass { reprobe_at } => PolicyState::Bypass { reprobe_at },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counts::TargetCount;

    /// Counts of a profile with nothing promoted: every call a candidate.
    fn profile(calls: &[(u64, u64)]) -> Counts {
        let mut c = Counts::empty(0);
        for &(target, count) in calls {
            c.calls += count;
            c.misses += count;
            c.candidates.push(TargetCount { target, count });
        }
        c
    }

    fn decide(a: &mut Adaptive, tick: u64, installed: &Plan, c: &Counts) -> Decision {
        a.decide(&Observation {
            tick,
            installed,
            ticks_installed: 1,
            window: c,
            epoch: c,
        })
    }

    #[test]
    fn the_hot_set_keeps_targets_above_five_percent_in_frequency_order() {
        let mut a = Adaptive::new(AdaptiveConfig::default());
        let c = profile(&[
            (1, 3680),
            (2, 1840),
            (3, 1230),
            (4, 920),
            (5, 740),
            (6, 610),
        ]);
        let d = decide(&mut a, 1, &Plan::probe(), &c);
        assert_eq!(
            d,
            Decision::Install(Plan::new(vec![1, 2, 3, 4], Counting::Misses))
        );
        // Below 5% of all calls: not promoted, even with a free slot.
        let mut a = Adaptive::new(AdaptiveConfig::default());
        let c = profile(&[(1, 900), (2, 60), (3, 40)]);
        assert_eq!(
            decide(&mut a, 1, &Plan::probe(), &c),
            Decision::Install(Plan::new(vec![1, 2], Counting::Misses))
        );
    }

    /// A calibration like this project's machine.
    use crate::policy::predict::tests::this_machine as measured_here;

    #[test]
    fn with_a_calibration_the_decision_is_the_cheapest_predicted_option() {
        let mono = profile(&[(1, 2000)]);
        let bi = profile(&[(1, 1800), (2, 200)]);
        // Not hardened, on a CPU like this one: the plain call is cheapest.
        for c in [&mono, &bi] {
            let mut a = Adaptive::new(AdaptiveConfig {
                calibration: Some(Arc::new(measured_here())),
                ..Default::default()
            });
            assert_eq!(
                decide(&mut a, 1, &Plan::probe(), c),
                Decision::Install(Plan::bypass())
            );
            let p = a.prediction().unwrap();
            assert_eq!(p.slots, 0);
            assert!(p.thunk_ns.iter().all(|&t| t > p.plain_ns), "{p:?}");
        }
        // Hardened: a retpoline per plain call; promotion pays.
        let mut a = Adaptive::new(AdaptiveConfig {
            calibration: Some(Arc::new(measured_here())),
            hardened: true,
            ..Default::default()
        });
        assert_eq!(
            decide(&mut a, 1, &Plan::probe(), &bi),
            Decision::Install(Plan::new(vec![1, 2], Counting::Misses))
        );
        assert_eq!(a.state(), PolicyState::Promoted);
        // Where hits are cheap, the same model promotes without hardening.
        let mut cheap = measured_here();
        cheap.hit_ns = (0..8).map(|k| 1.0 + 0.2 * k as f64).collect();
        let mut a = Adaptive::new(AdaptiveConfig {
            calibration: Some(Arc::new(cheap)),
            ..Default::default()
        });
        assert_eq!(
            decide(&mut a, 1, &Plan::probe(), &mono),
            Decision::Install(Plan::new(vec![1], Counting::Misses))
        );
    }

    #[test]
    fn too_few_calls_keep_profiling() {
        let mut a = Adaptive::new(AdaptiveConfig::default());
        let c = profile(&[(1, 999)]);
        assert_eq!(decide(&mut a, 1, &Plan::probe(), &c), Decision::Keep);
    }

    #[test]
    fn megamorphic_sites_bypass_with_doubling_back_off() {
        let mut a = Adaptive::new(AdaptiveConfig::default());
        let uniform = profile(&(1..=16).map(|t| (t, 100)).collect::<Vec<_>>());
        let mut reprobes = Vec::new();
        let mut tick = 1;
        for _ in 0..4 {
            assert_eq!(
                decide(&mut a, tick, &Plan::probe(), &uniform),
                Decision::Install(Plan::bypass())
            );
            let PolicyState::Bypass { reprobe_at } = a.state() else {
                panic!()
            };
            reprobes.push(reprobe_at - tick);
            // Nothing until the re-probe.
            assert_eq!(
                decide(&mut a, reprobe_at - 1, &Plan::bypass(), &Counts::default()),
                Decision::Keep
            );
            assert_eq!(
                decide(&mut a, reprobe_at, &Plan::bypass(), &Counts::default()),
                Decision::Install(Plan::probe())
            );
            tick = reprobe_at + 1;
        }
        assert_eq!(reprobes, vec![16, 32, 64, 128]);
    }

    #[test]
    fn a_near_equal_reordering_keeps_the_installed_order() {
        let mut a = Adaptive::new(AdaptiveConfig::default());
        let installed = Plan::new(vec![1, 2], Counting::All);
        let mut c = Counts::empty(2);
        c.calls = 1000;
        c.hits = vec![480, 520];
        assert_eq!(
            decide(&mut a, 1, &installed, &c),
            Decision::Install(Plan::new(vec![1, 2], Counting::Misses)),
            "52/48 the other way round is within the hysteresis"
        );
        // A clear reordering is made.
        let mut a = Adaptive::new(AdaptiveConfig::default());
        c.hits = vec![200, 800];
        assert_eq!(
            decide(&mut a, 1, &installed, &c),
            Decision::Install(Plan::new(vec![2, 1], Counting::Misses))
        );
    }

    #[test]
    fn a_surge_of_misses_triggers_a_profile() {
        let mut a = Adaptive::new(AdaptiveConfig::default());
        let c = profile(&[(1, 2000)]);
        let Decision::Install(lean) = decide(&mut a, 1, &Plan::probe(), &c) else {
            panic!()
        };
        let mut quiet = Counts::empty(1);
        quiet.misses = 10;
        assert_eq!(decide(&mut a, 2, &lean, &quiet), Decision::Keep);
        let mut surge = Counts::empty(1);
        surge.misses = 1500;
        assert_eq!(
            decide(&mut a, 3, &lean, &surge),
            Decision::Install(Plan::new(vec![1], Counting::All))
        );
    }

    /// The decision at `tick` for the installed `plan`, with `misses` in
    /// the last tick's window.
    fn promoted_tick(a: &mut Adaptive, tick: u64, plan: &Plan, misses: u64) -> Decision {
        let mut w = Counts::empty(plan.targets.len());
        w.misses = misses;
        decide(a, tick, plan, &w)
    }

    #[test]
    fn hot_sets_that_change_faster_than_learning_pays_end_in_bypass() {
        let mut a = Adaptive::new(AdaptiveConfig::default());
        let set = |p: u64| profile(&[(p, 3000), (p + 1, 1000)]);
        // Promote {1, 2} at tick 1; a new hot set every 4 ticks: a surge,
        // then the profile's conclusion a tick later.
        let Decision::Install(mut plan) = decide(&mut a, 1, &Plan::probe(), &set(1)) else {
            panic!()
        };
        let mut tick = 1;
        let mut concluded = Vec::new();
        for p in [11, 21, 31] {
            tick += 1;
            assert_eq!(promoted_tick(&mut a, tick, &plan, 0), Decision::Keep);
            tick += 1;
            assert_eq!(promoted_tick(&mut a, tick, &plan, 0), Decision::Keep);
            tick += 1;
            let Decision::Install(profiling) = promoted_tick(&mut a, tick, &plan, 4000) else {
                panic!()
            };
            assert_eq!(profiling.counting, Counting::All);
            tick += 1;
            let Decision::Install(next) = decide(&mut a, tick, &profiling, &set(p)) else {
                panic!()
            };
            concluded.push((tick, next.clone()));
            if next.is_bypass() {
                break;
            }
            plan = next;
        }
        // The first change is followed, the second (again within 8 ticks)
        // is not: bypass at its profile's conclusion, tick 9.
        assert_eq!(concluded[0].1.targets, vec![11, 12]);
        assert_eq!(concluded.len(), 2, "{concluded:?}");
        assert_eq!(concluded[1], (9, Plan::bypass()));
        let PolicyState::Bypass { reprobe_at } = a.state() else {
            panic!()
        };
        assert_eq!(reprobe_at, 9 + 16);
        // Still churning after the re-probe: the back-off doubles.
        assert_eq!(
            decide(&mut a, reprobe_at, &Plan::bypass(), &Counts::default()),
            Decision::Install(Plan::probe())
        );
        let Decision::Install(d) = decide(&mut a, reprobe_at + 1, &Plan::probe(), &set(41)) else {
            panic!()
        };
        let Decision::Install(profiling) = promoted_tick(&mut a, reprobe_at + 3, &d, 4000) else {
            panic!()
        };
        assert_eq!(
            decide(&mut a, reprobe_at + 4, &profiling, &set(51)),
            Decision::Install(Plan::bypass())
        );
        let PolicyState::Bypass { reprobe_at: next } = a.state() else {
            panic!()
        };
        assert_eq!(next, reprobe_at + 4 + 32);
    }

    #[test]
    fn a_surge_whose_profile_finds_the_same_set_is_not_churn() {
        // Ticks of uneven length make a miss count surge without any
        // change; the profile finds the same set, and that ends any churn.
        let mut a = Adaptive::new(AdaptiveConfig::default());
        let c = profile(&[(1, 3000), (2, 1000)]);
        let Decision::Install(plan) = decide(&mut a, 1, &Plan::probe(), &c) else {
            panic!()
        };
        // The profiles count the same calls as hits of the installed slots.
        let mut same = Counts::empty(2);
        same.calls = 4000;
        same.hits = vec![3000, 1000];
        let mut tick = 1;
        for _ in 0..5 {
            tick += 1;
            let Decision::Install(profiling) = promoted_tick(&mut a, tick, &plan, 4000) else {
                panic!()
            };
            tick += 1;
            assert_eq!(
                decide(&mut a, tick, &profiling, &same),
                Decision::Install(plan.clone())
            );
        }
        assert_eq!(a.state(), PolicyState::Promoted);
    }

    #[test]
    fn a_long_profile_is_followed_by_a_long_wait() {
        // A site with few calls per tick: its profile took 100 ticks to
        // count `min_samples`; with at most 1/16 of the time profiling, the
        // next check comes no sooner than 1,500 ticks later.
        let mut a = Adaptive::new(AdaptiveConfig::default());
        let c = profile(&[(1, 900), (2, 100)]);
        let obs = Observation {
            tick: 100,
            installed: &Plan::probe(),
            ticks_installed: 100,
            window: &c,
            epoch: &c,
        };
        let Decision::Install(plan) = a.decide(&obs) else {
            panic!()
        };
        assert_eq!(promoted_tick(&mut a, 1599, &plan, 0), Decision::Keep);
        assert_eq!(
            promoted_tick(&mut a, 1600, &plan, 0),
            Decision::Install(Plan::new(vec![1, 2], Counting::All))
        );
        // A one-tick profile keeps the usual 64 ticks.
        let mut a = Adaptive::new(AdaptiveConfig::default());
        let Decision::Install(plan) = decide(&mut a, 1, &Plan::probe(), &c) else {
            panic!()
        };
        assert_eq!(promoted_tick(&mut a, 64, &plan, 0), Decision::Keep);
        assert_eq!(
            promoted_tick(&mut a, 65, &plan, 0),
            Decision::Install(Plan::new(vec![1, 2], Counting::All))
        );
    }
}
