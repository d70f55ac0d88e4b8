//! Predicted nanoseconds per call of a site's options, from a profile and
//! a [`Calibration`]: the plain call (what a bypassed site runs) and a
//! thunk promoting each prefix of the ranked targets. The cheapest wins if
//! it beats the plain call by a margin; otherwise the site steps aside.
//!
//! Branch prediction is estimated from frequencies, as if calls were
//! independent draws from the profile's distribution `q` (what a profile of
//! counts can say): the plain indirect call mispredicts when consecutive
//! calls differ (`1 - sum q_i^2`, a last-target predictor; the unranked
//! rest counted as all different), and the compare of slot `k`, reached by
//! the share `r_k` of calls not taken by an earlier slot and then equal
//! with probability `p = q_k / r_k`, mispredicts `2 p (1 - p)` of the time
//! (a last-outcome predictor). A stream that a history-based predictor
//! learns (a fixed cycle of targets) is cheaper than this says for both
//! options; that estimate needs the history of the stream, which the
//! counters do not record yet.
//!
//! Hardened, every indirect call is a retpoline: the plain call and a
//! thunk's miss cost one, and prediction does not help them.

use crate::calibration::Calibration;

/// A promotion must be predicted at least this much cheaper than the plain
/// call (5%), so that calibration noise does not make a site flap between
/// two near-equal options.
pub const MARGIN: f64 = 0.05;

/// What the model predicted for one profile.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    /// The plain (bypassed) call, ns per call.
    pub plain_ns: f64,
    /// A thunk promoting the first `k + 1` ranked targets, ns per call.
    pub thunk_ns: Vec<f64>,
    /// The slots to promote (0: step aside, the plain call).
    pub slots: usize,
}

impl Prediction {
    /// The predicted cost of what was chosen.
    pub fn chosen_ns(&self) -> f64 {
        match self.slots {
            0 => self.plain_ns,
            k => self.thunk_ns[k - 1],
        }
    }
}

/// The cost of a plain indirect call (`hardened`: a retpoline) over a
/// stream whose consecutive calls differ with probability `switch`.
fn call_ns(cal: &Calibration, hardened: bool, switch: f64) -> f64 {
    if hardened {
        cal.retpoline_ns
    } else {
        cal.indirect_ns + switch * (cal.indirect_mispredicted_ns - cal.indirect_ns)
    }
}

/// Predicts every option for the targets `ranked` (address, calls; most
/// called first) out of `total` calls, promoting at most `max_slots`.
pub fn predict(
    cal: &Calibration,
    hardened: bool,
    ranked: &[(u64, u64)],
    total: u64,
    max_slots: usize,
) -> Prediction {
    let total = total.max(1) as f64;
    let q: Vec<f64> = ranked.iter().map(|&(_, n)| n as f64 / total).collect();
    let same: f64 = q.iter().map(|x| x * x).sum();
    let switch = (1.0 - same).clamp(0.0, 1.0);
    // A bypassed site: its entry check, then the plain call; the check's
    // cost is what `bypass_ns` adds to a predicted indirect call.
    let check = (cal.bypass_ns - cal.indirect_ns).max(0.0);
    let plain_ns = check + call_ns(cal, hardened, switch);

    let mut thunk_ns = Vec::new();
    let mut hits = 0.0; // sum of q_i * hit(i) over the promoted slots
    let mut mispredicts = 0.0; // compare mispredictions per call
    let mut reached = 1.0; // share of calls reaching slot k's compare
    let mut same_rest = same; // sum q_i^2 over the targets left to the miss
    for (k, &qk) in q.iter().enumerate().take(max_slots) {
        let p = if reached > 0.0 {
            (qk / reached).min(1.0)
        } else {
            0.0
        };
        mispredicts += reached * 2.0 * p * (1.0 - p);
        hits += qk * cal.hit(k);
        reached = (reached - qk).max(0.0);
        same_rest -= qk * qk;
        // The miss: the chain of k + 1 compares (a one-slot miss, plus a
        // compare step per further slot), then the plain call of the
        // remaining targets, which switch among themselves.
        let steps = (cal.hit(k) - cal.hit(0)).max(0.0);
        let rest_switch = if reached > 0.0 {
            (1.0 - same_rest.max(0.0) / (reached * reached)).clamp(0.0, 1.0)
        } else {
            0.0
        };
        let miss = cal.miss_ns - cal.indirect_ns + steps + call_ns(cal, hardened, rest_switch);
        thunk_ns.push(hits + reached * miss + mispredicts * cal.compare_mispredict_ns);
    }
    let best = thunk_ns
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.total_cmp(b.1))
        .filter(|&(_, &ns)| ns < plain_ns * (1.0 - MARGIN))
        .map_or(0, |(k, _)| k + 1);
    Prediction {
        plain_ns,
        thunk_ns,
        slots: best,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Shares in thousandths.
    fn ranked(shares: &[u64]) -> (Vec<(u64, u64)>, u64) {
        let r: Vec<(u64, u64)> = shares
            .iter()
            .enumerate()
            .map(|(i, &n)| (0x1000 + i as u64, n))
            .collect();
        (r, 1000)
    }

    /// Roughly what `hotcall calibrate` measures on this project's machine:
    /// a thunk hit costs more than a predicted plain call, and a
    /// mispredicted compare about as much as a mispredicted call.
    pub(crate) fn this_machine() -> Calibration {
        let mut c = Calibration::defaults();
        c.indirect_ns = 1.7;
        c.indirect_mispredicted_ns = 8.2;
        c.retpoline_ns = 8.1;
        c.hit_ns = (0..8).map(|k| 2.4 + 0.24 * k as f64).collect();
        c.compare_mispredict_ns = 7.2;
        c.miss_ns = 2.4;
        c.bypass_ns = 1.7;
        c
    }

    /// A CPU where promotion pays without hardening: hits as cheap as a
    /// direct call, compares that mispredict cheaply, expensive indirect
    /// mispredictions.
    fn promotion_pays() -> Calibration {
        let mut c = this_machine();
        c.hit_ns = (0..8).map(|k| 1.0 + 0.2 * k as f64).collect();
        c.compare_mispredict_ns = 2.0;
        c.indirect_mispredicted_ns = 20.0;
        c
    }

    #[test]
    fn on_this_machine_unhardened_sites_step_aside() {
        let cal = this_machine();
        for shares in [
            &[1000][..],
            &[900, 100],
            &[500, 500],
            &[370, 185, 123, 92, 74, 62, 53, 41],
        ] {
            let (r, total) = ranked(shares);
            let p = predict(&cal, false, &r, total, 8);
            assert_eq!(p.slots, 0, "{shares:?}: {p:?}");
        }
    }

    #[test]
    fn hardened_sites_promote_what_pays() {
        let cal = this_machine();
        let (r, t) = ranked(&[1000]);
        let p = predict(&cal, true, &r, t, 8);
        assert_eq!(p.slots, 1, "{p:?}");
        assert!(p.chosen_ns() < 0.5 * p.plain_ns, "{p:?}");
        let (r, t) = ranked(&[900, 100]);
        assert_eq!(predict(&cal, true, &r, t, 8).slots, 2);
        // Uniform over 64 (each 1/64): no slot saves a retpoline often
        // enough to pay for its compare.
        let (r, t) = ranked(&[15; 64]);
        let p = predict(&cal, true, &r, t, 8);
        assert_eq!(p.slots, 0, "{p:?}");
    }

    #[test]
    fn the_same_model_promotes_where_the_calibration_says_it_pays() {
        let cal = promotion_pays();
        let (r, t) = ranked(&[900, 100]);
        let p = predict(&cal, false, &r, t, 8);
        assert!(p.slots >= 1, "{p:?}");
        let (r, t) = ranked(&[1000]);
        assert_eq!(predict(&cal, false, &r, t, 8).slots, 1);
    }

    #[test]
    fn max_slots_bounds_the_options() {
        let (r, t) = ranked(&[200; 5]);
        let p = predict(&this_machine(), true, &r, t, 3);
        assert_eq!(p.thunk_ns.len(), 3);
        assert!(p.slots <= 3);
        let p = predict(&this_machine(), true, &[], 0, 8);
        assert!(p.thunk_ns.is_empty());
        assert_eq!(p.slots, 0);
    }
}
