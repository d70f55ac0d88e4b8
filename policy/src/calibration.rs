//! What calls cost on the running CPU: the numbers a cost-aware decision
//! needs, measured (by `hotcall::calibrate`, which runs real calls and
//! thunks), loaded from a file a user saved, or the conservative defaults.
//!
//! This crate only holds and checks the numbers; it runs nothing.
//! Measurements are medians of interleaved repetitions; a value outside its
//! sanity bounds (or unordered with the values it must exceed) is replaced
//! by its default and named in [`Calibration::fallbacks`], so a noisy or odd
//! machine never feeds the model nonsense.

use std::fmt;

/// Most thunk slot positions calibrated (hits at positions past this are
/// extrapolated by the last step).
pub const CALIBRATED_SLOTS: usize = 8;

/// Where the numbers of a [`Calibration`] came from.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum CalibrationSource {
    /// Measured on this CPU by this process.
    Measured,
    /// Read from a file (the path).
    Loaded(String),
    /// Nothing measured: the conservative defaults.
    Defaults,
}

/// Costs in nanoseconds per call (see the module docs).
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Calibration {
    /// A plain indirect call whose target the CPU predicts.
    pub indirect_ns: f64,
    /// A plain indirect call whose target the CPU mispredicts.
    pub indirect_mispredicted_ns: f64,
    /// A call through the retpoline (always "mispredicted": it never uses
    /// the branch target buffer).
    pub retpoline_ns: f64,
    /// A thunk hit on slot `k` (the call through the site's entry included).
    pub hit_ns: Vec<f64>,
    /// What one mispredicted compare adds to a thunk path.
    pub compare_mispredict_ns: f64,
    /// A miss through a one-slot thunk (compare, then the plain call).
    pub miss_ns: f64,
    /// A bypassed site: the entry check, then the plain call.
    pub bypass_ns: f64,
    /// The kernel's Spectre v2 status
    /// (`/sys/devices/system/cpu/vulnerabilities/spectre_v2`), if readable.
    pub spectre_v2: Option<String>,
    pub source: CalibrationSource,
    /// Fields replaced by their defaults, with why.
    pub fallbacks: Vec<String>,
    /// Wall time the measurement took, in microseconds (0 unless measured).
    pub took_us: u64,
}

impl Calibration {
    /// Conservative defaults: a thunk barely cheaper than a retpoline and
    /// never cheaper than a plain call, so with no measurement the model
    /// promotes only where retpolines make indirect calls expensive. The
    /// figures are the ones measured on this project's machine (issue 11:
    /// plain 1.26 ns + 5.99 ns per misprediction; a promoted chain 1.39 ns
    /// + 7.79 ns per misprediction; a retpoline about 9 ns).
    pub fn defaults() -> Self {
        Calibration {
            indirect_ns: 1.26,
            indirect_mispredicted_ns: 1.26 + 5.99,
            retpoline_ns: 9.0,
            hit_ns: (0..CALIBRATED_SLOTS)
                .map(|k| 1.39 + 0.55 * k as f64)
                .collect(),
            compare_mispredict_ns: 7.79,
            miss_ns: 1.39 + 1.26 + 0.55,
            bypass_ns: 1.5,
            spectre_v2: None,
            source: CalibrationSource::Defaults,
            fallbacks: Vec::new(),
            took_us: 0,
        }
    }

    /// The cost of a hit on slot `k` (past the calibrated slots, the last
    /// step extrapolated).
    pub fn hit(&self, k: usize) -> f64 {
        let n = self.hit_ns.len();
        match n {
            0 => Self::defaults().hit(k),
            _ if k < n => self.hit_ns[k],
            1 => self.hit_ns[0] * (1 + k) as f64,
            _ => {
                let step = (self.hit_ns[n - 1] - self.hit_ns[n - 2]).max(0.0);
                self.hit_ns[n - 1] + step * (k + 1 - n) as f64
            }
        }
    }

    /// Replaces every value outside its bounds (or unordered with what it
    /// must exceed) by its default, recording each replacement in
    /// [`Self::fallbacks`]. Bounds: 0.05 ns to 1 µs per call; a
    /// mispredicted call costs at least a predicted one; a retpoline at
    /// least a predicted call; hits do not get cheaper with the position
    /// (within 0.3 ns of noise).
    pub fn sanitized(self) -> Self {
        let d = Self::defaults();
        let ok = |v: f64| v.is_finite() && (0.05..=1000.0).contains(&v);
        let mut fallbacks = self.fallbacks.clone();
        let mut fix = |name: &str, v: &mut f64, default: f64, why: &str, bad: bool| {
            if bad {
                fallbacks.push(format!(
                    "{name}: {v:.2} ns {why}; default {default:.2} ns used"
                ));
                *v = default;
            }
        };
        let mut c = self;
        let b = !ok(c.indirect_ns);
        fix(
            "indirect",
            &mut c.indirect_ns,
            d.indirect_ns,
            "out of bounds",
            b,
        );
        let b = !ok(c.indirect_mispredicted_ns) || c.indirect_mispredicted_ns < c.indirect_ns;
        fix(
            "indirect_mispredicted",
            &mut c.indirect_mispredicted_ns,
            d.indirect_mispredicted_ns.max(c.indirect_ns),
            "out of bounds or below a predicted call",
            b,
        );
        let b = !ok(c.retpoline_ns) || c.retpoline_ns < c.indirect_ns;
        fix(
            "retpoline",
            &mut c.retpoline_ns,
            d.retpoline_ns.max(c.indirect_ns),
            "out of bounds or below a predicted call",
            b,
        );
        let b = !ok(c.compare_mispredict_ns);
        fix(
            "compare_mispredict",
            &mut c.compare_mispredict_ns,
            d.compare_mispredict_ns,
            "out of bounds",
            b,
        );
        let b = !ok(c.miss_ns);
        fix("miss", &mut c.miss_ns, d.miss_ns, "out of bounds", b);
        let b = !ok(c.bypass_ns);
        fix("bypass", &mut c.bypass_ns, d.bypass_ns, "out of bounds", b);
        let hits_bad = c.hit_ns.len() != CALIBRATED_SLOTS
            || c.hit_ns.iter().any(|&h| !ok(h))
            || c.hit_ns.windows(2).any(|w| w[1] + 0.3 < w[0]);
        if hits_bad {
            fallbacks.push(format!(
                "hit: {:?} ns out of bounds or decreasing with the slot; defaults used",
                c.hit_ns
            ));
            c.hit_ns = d.hit_ns.clone();
        }
        c.fallbacks = fallbacks;
        c
    }

    /// The calibration a [`Self::to_json`] wrote, checked
    /// ([`Self::sanitized`]); its source becomes `Loaded(origin)`.
    #[cfg(feature = "serde")]
    pub fn from_json(text: &str, origin: &str) -> Result<Self, String> {
        let mut c: Calibration =
            serde_json::from_str(text).map_err(|e| format!("{origin}: not a calibration: {e}"))?;
        c.source = CalibrationSource::Loaded(origin.to_string());
        c.fallbacks.clear();
        Ok(c.sanitized())
    }

    /// Pretty JSON, readable back by [`Self::from_json`].
    #[cfg(feature = "serde")]
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }
}

impl fmt::Display for Calibration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = match &self.source {
            CalibrationSource::Measured => format!("measured in {} us", self.took_us),
            CalibrationSource::Loaded(p) => format!("loaded from {p}"),
            CalibrationSource::Defaults => "defaults (nothing measured)".into(),
        };
        writeln!(f, "calibration ({source}), ns per call:")?;
        writeln!(
            f,
            "  indirect call, predicted      {:7.2}",
            self.indirect_ns
        )?;
        writeln!(
            f,
            "  indirect call, mispredicted   {:7.2}",
            self.indirect_mispredicted_ns
        )?;
        writeln!(
            f,
            "  retpolined call               {:7.2}",
            self.retpoline_ns
        )?;
        for (k, h) in self.hit_ns.iter().enumerate() {
            writeln!(f, "  thunk hit, slot {k}             {h:7.2}")?;
        }
        writeln!(
            f,
            "  mispredicted compare (adds)   {:7.2}",
            self.compare_mispredict_ns
        )?;
        writeln!(f, "  miss (one-slot thunk)         {:7.2}", self.miss_ns)?;
        writeln!(f, "  bypassed site                 {:7.2}", self.bypass_ns)?;
        writeln!(
            f,
            "  spectre_v2: {}",
            self.spectre_v2.as_deref().unwrap_or("(unknown)")
        )?;
        for fb in &self.fallbacks {
            writeln!(f, "  fallback: {fb}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_sane_and_need_no_fallback() {
        let d = Calibration::defaults().sanitized();
        assert!(d.fallbacks.is_empty(), "{:?}", d.fallbacks);
        assert_eq!(d, Calibration::defaults());
    }

    #[test]
    fn nonsense_falls_back_field_by_field_and_says_so() {
        let mut c = Calibration::defaults();
        c.indirect_ns = 2.0;
        c.indirect_mispredicted_ns = 1.0; // below a predicted call
        c.retpoline_ns = f64::NAN;
        c.miss_ns = 5000.0;
        c.hit_ns = vec![3.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]; // decreasing
        let s = c.sanitized();
        assert_eq!(s.indirect_ns, 2.0, "a sane value is kept");
        assert_eq!(s.indirect_mispredicted_ns, 1.26 + 5.99);
        assert_eq!(s.retpoline_ns, 9.0);
        assert_eq!(s.miss_ns, Calibration::defaults().miss_ns);
        assert_eq!(s.hit_ns, Calibration::defaults().hit_ns);
        assert_eq!(s.fallbacks.len(), 4, "{:?}", s.fallbacks);
        for name in ["indirect_mispredicted", "retpoline", "miss", "hit"] {
            assert!(
                s.fallbacks.iter().any(|f| f.starts_with(name)),
                "{name}: {:?}",
                s.fallbacks
            );
        }
    }

    #[test]
    fn hits_past_the_calibrated_slots_extrapolate() {
        let c = Calibration::defaults();
        let step = c.hit(7) - c.hit(6);
        assert!((c.hit(9) - (c.hit(7) + 2.0 * step)).abs() < 1e-9);
        assert!(c.hit(31) > c.hit(8));
    }

    #[cfg(feature = "serde")]
    #[test]
    fn json_round_trips_and_bad_files_are_clear_errors() {
        let mut c = Calibration::defaults();
        c.indirect_ns = 1.1;
        c.source = CalibrationSource::Measured;
        let back = Calibration::from_json(&c.to_json(), "saved.json").unwrap();
        assert_eq!(back.indirect_ns, 1.1);
        assert_eq!(back.source, CalibrationSource::Loaded("saved.json".into()));
        let e = Calibration::from_json("{\"indirect_ns\": 1}", "bad.json").unwrap_err();
        assert!(e.starts_with("bad.json: not a calibration"), "{e}");
        // A file with nonsense loads, sanitized.
        let mut odd = c.clone();
        odd.bypass_ns = -1.0;
        let loaded = Calibration::from_json(&odd.to_json(), "odd.json").unwrap();
        assert_eq!(loaded.bypass_ns, Calibration::defaults().bypass_ns);
        assert_eq!(loaded.fallbacks.len(), 1);
    }
}
