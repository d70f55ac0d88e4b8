//! Measuring what calls cost on the running CPU ([`measure`]), for the
//! cost-aware decision: real plain and retpolined calls, and real thunks of
//! a private engine, timed in interleaved rounds (every quantity once per
//! round, so a burst of noise from another process spreads over all of
//! them instead of skewing one), medians taken, then checked against sanity
//! bounds ([`Calibration::sanitized`]). About 10-20 ms.
//!
//! Each quantity is timed as a dependent chain of calls through a stream
//! of targets read from memory, the way a host's dispatch loop calls:
//!
//! * `indirect`: one target; `indirect_mispredicted`: a random choice of two
//!   targets per call, which a predictor gets wrong half the time, so the
//!   full misprediction is twice the difference;
//! * `retpoline`: one target through `hotcall::retpoline::call`;
//! * `hit[k]`: a thunk over eight targets, always called with the `k`-th;
//! * `compare_mispredict`: a two-slot thunk called with a random choice of
//!   its two targets, against the mean of its two hits (again doubled);
//! * `miss`: a one-slot thunk called with another target;
//! * `bypass`: a demoted site (no thunk), one target.

use std::hint::black_box;
use std::sync::OnceLock;
use std::time::Instant;

use hotcall_policy::calibration::CALIBRATED_SLOTS;
pub use hotcall_policy::{Calibration, CalibrationSource};

use crate::{Engine, EngineConfig, Error, Site};

type Target = extern "C" fn(u64) -> u64;

macro_rules! targets {
    ($($name:ident = $k:literal),*) => {
        $(
            #[inline(never)]
            extern "C" fn $name(x: u64) -> u64 {
                black_box(x.wrapping_mul(0x9e37_79b9).wrapping_add($k))
            }
        )*
        const TARGETS: [Target; 9] = [$($name),*];
    };
}
targets!(
    t0 = 1,
    t1 = 2,
    t2 = 3,
    t3 = 4,
    t4 = 5,
    t5 = 6,
    t6 = 7,
    t7 = 8,
    t8 = 9
);

/// Streams are this long (a power of two): long enough that no predictor
/// learns a random one by heart over the repetitions.
const STREAM: usize = 1 << 16;
/// Calls per timed batch, and rounds (each quantity once per round).
const BATCH: usize = 8192;
const ROUNDS: usize = 9;

/// A stream of `STREAM` targets: `a` only, or a random choice of `a` and `b`.
fn stream(a: Target, b: Option<Target>, seed: u64) -> Vec<Target> {
    let mut x = seed | 1;
    (0..STREAM)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            match b {
                Some(b) if x & (1 << 20) != 0 => b,
                _ => a,
            }
        })
        .collect()
}

/// What one timed batch calls.
enum Kind<'a> {
    Indirect,
    Retpoline,
    Site(&'a Site<Target>),
}

/// Nanoseconds per call of `BATCH` calls of `kind` over `targets`.
fn batch(kind: &Kind<'_>, targets: &[Target], start: usize, pinned: &crate::Pinned) -> f64 {
    let mask = targets.len() - 1;
    let targets = black_box(targets);
    let mut acc = black_box(start as u64);
    let t = Instant::now();
    match kind {
        Kind::Indirect => {
            for i in start..start + BATCH {
                acc = (targets[i & mask])(acc);
            }
        }
        Kind::Retpoline => {
            for i in start..start + BATCH {
                acc = crate::retpoline::call::<Target>(targets[i & mask], (acc,));
            }
        }
        Kind::Site(site) => {
            for i in start..start + BATCH {
                acc = site.call(pinned, targets[i & mask], (acc,));
            }
        }
    }
    let ns = t.elapsed().as_nanos() as f64 / BATCH as f64;
    black_box(acc);
    ns
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The kernel's Spectre v2 mitigation status, if readable.
pub fn spectre_v2_status() -> Option<String> {
    std::fs::read_to_string("/sys/devices/system/cpu/vulnerabilities/spectre_v2")
        .ok()
        .map(|s| s.trim().to_string())
}

/// Measures the costs on this CPU (see the module docs). Never fails: what
/// cannot be measured (no code generation on this host, say) or comes out
/// of bounds is a default, named in `fallbacks`.
pub fn measure() -> Calibration {
    let started = Instant::now();
    let mut c = Calibration::defaults();
    c.spectre_v2 = spectre_v2_status();
    c.source = CalibrationSource::Measured;
    let engine = Engine::with_config(EngineConfig::manual());
    let sites = || -> Result<[Site<Target>; 4], Error> {
        let hits = engine.site::<Target>();
        hits.promote(&TARGETS[..CALIBRATED_SLOTS])?;
        let pair = engine.site::<Target>();
        pair.promote(&TARGETS[..2])?;
        let one = engine.site::<Target>();
        one.promote(&TARGETS[1..2])?;
        let bypass = engine.site::<Target>();
        bypass.promote(&TARGETS[..1])?;
        bypass.demote();
        Ok([hits, pair, one, bypass])
    };
    let fixed: Vec<Vec<Target>> = TARGETS.iter().map(|&t| stream(t, None, 1)).collect();
    let random = stream(TARGETS[0], Some(TARGETS[1]), 0x5eed);
    let pinned = engine.pin();

    // (label, kind, stream); the sites' rows only if the engine compiles.
    let plain: Vec<(&str, Kind<'_>, &[Target])> = vec![
        ("indirect", Kind::Indirect, &fixed[0]),
        ("indirect_random", Kind::Indirect, &random),
        ("retpoline", Kind::Retpoline, &fixed[0]),
    ];
    let built = sites();
    let mut rows = plain;
    match &built {
        Ok([hits, pair, one, bypass]) => {
            for s in &fixed[..CALIBRATED_SLOTS] {
                rows.push(("hit", Kind::Site(hits), s));
            }
            rows.push(("pair_0", Kind::Site(pair), &fixed[0]));
            rows.push(("pair_1", Kind::Site(pair), &fixed[1]));
            rows.push(("pair_random", Kind::Site(pair), &random));
            rows.push(("miss", Kind::Site(one), &fixed[0]));
            rows.push(("bypass", Kind::Site(bypass), &fixed[0]));
        }
        Err(e) => c.fallbacks.push(format!(
            "thunk costs: no thunk could be built ({e}); defaults used"
        )),
    }
    // Warm up every row once, then the interleaved rounds.
    let mut samples = vec![Vec::with_capacity(ROUNDS); rows.len()];
    for (_, kind, s) in &rows {
        batch(kind, s, 0, &pinned);
    }
    for round in 0..ROUNDS {
        for (i, (_, kind, s)) in rows.iter().enumerate() {
            samples[i].push(batch(kind, s, (round * BATCH) % STREAM, &pinned));
        }
    }
    let med: Vec<f64> = samples.iter_mut().map(|s| median(s)).collect();
    let get = |label: &str, med: &[f64]| -> Vec<f64> {
        rows.iter()
            .zip(med.iter())
            .filter(|((l, _, _), _)| *l == label)
            .map(|(_, &m)| m)
            .collect()
    };
    c.indirect_ns = get("indirect", &med)[0];
    let random = get("indirect_random", &med)[0];
    c.indirect_mispredicted_ns = c.indirect_ns + 2.0 * (random - c.indirect_ns);
    c.retpoline_ns = get("retpoline", &med)[0];
    if built.is_ok() {
        c.hit_ns = get("hit", &med);
        let both = (get("pair_0", &med)[0] + get("pair_1", &med)[0]) / 2.0;
        c.compare_mispredict_ns = 2.0 * (get("pair_random", &med)[0] - both);
        c.miss_ns = get("miss", &med)[0];
        c.bypass_ns = get("bypass", &med)[0];
    }
    drop(pinned);
    drop(built);
    c.took_us = started.elapsed().as_micros() as u64;
    c.sanitized()
}

/// A calibration saved with `hotcall calibrate --json` (or
/// [`Calibration::to_json`]), checked against the sanity bounds.
#[cfg(feature = "serde")]
pub fn load(path: &std::path::Path) -> Result<Calibration, String> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{origin}: {e}"))?;
    Calibration::from_json(&text, &origin)
}

static CURRENT: OnceLock<Calibration> = OnceLock::new();

/// The process's calibration, made on first use: the file named by
/// `HOTCALL_CALIBRATION` if set (feature `serde`; a file that cannot be
/// read gives the defaults, with the reason in `fallbacks`), otherwise
/// [`measure`].
pub fn current() -> &'static Calibration {
    CURRENT.get_or_init(|| match std::env::var_os("HOTCALL_CALIBRATION") {
        #[cfg(feature = "serde")]
        Some(path) => load(std::path::Path::new(&path)).unwrap_or_else(|e| {
            let mut d = Calibration::defaults();
            d.fallbacks.push(format!("HOTCALL_CALIBRATION: {e}"));
            d
        }),
        #[cfg(not(feature = "serde"))]
        Some(_) => {
            let mut d = Calibration::defaults();
            d.fallbacks
                .push("HOTCALL_CALIBRATION: loading a file needs the feature `serde`".to_string());
            d
        }
        None => measure(),
    })
}
