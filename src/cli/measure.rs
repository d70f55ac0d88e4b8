//! Interleaved timing: every round runs every variant once, in a freshly
//! shuffled order, and each variant is summarized by its median round, so
//! that drift (frequency, other load) hits all variants alike.

use std::time::{Instant, SystemTime};

/// One thing to time.
pub struct Variant<'a> {
    pub name: &'static str,
    /// Makes `calls` calls on the inputs `0..calls` and returns the wrapping
    /// sum of their results.
    pub run: &'a dyn Fn(u64) -> u64,
    /// The sum `run` must return (from a plain call of the same target).
    pub expected: u64,
}

/// The result for one variant.
pub struct Timing {
    pub name: &'static str,
    pub median_ns: f64,
    pub min_ns: f64,
    pub max_ns: f64,
    /// Rounds whose sum differed from [`Variant::expected`], with the sum.
    pub wrong: Vec<(usize, u64)>,
}

/// Runs one unrecorded warm-up round, then `rounds` rounds of `calls` calls
/// per variant, each round in a new random order.
pub fn interleaved(variants: &[Variant<'_>], rounds: usize, calls: u64) -> Vec<Timing> {
    let mut rng = SplitMix64::from_clock();
    let mut order: Vec<usize> = (0..variants.len()).collect();
    let mut ns: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); variants.len()];
    let mut wrong: Vec<Vec<(usize, u64)>> = vec![Vec::new(); variants.len()];
    for v in variants {
        (v.run)(calls);
    }
    for round in 0..rounds {
        rng.shuffle(&mut order);
        for &i in &order {
            let v = &variants[i];
            let start = Instant::now();
            let sum = (v.run)(calls);
            let elapsed = start.elapsed();
            ns[i].push(elapsed.as_secs_f64() * 1e9 / calls as f64);
            if sum != v.expected {
                wrong[i].push((round, sum));
            }
        }
    }
    variants
        .iter()
        .zip(ns)
        .zip(wrong)
        .map(|((v, mut ns), wrong)| {
            ns.sort_by(f64::total_cmp);
            Timing {
                name: v.name,
                median_ns: median(&ns),
                min_ns: ns.first().copied().unwrap_or(f64::NAN),
                max_ns: ns.last().copied().unwrap_or(f64::NAN),
                wrong,
            }
        })
        .collect()
}

/// The median of sorted values (the mean of the middle two for an even
/// count); NaN for none.
fn median(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// A small, good-enough generator for shuffling (SplitMix64).
struct SplitMix64(u64);

impl SplitMix64 {
    fn from_clock() -> Self {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        SplitMix64(nanos)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Fisher-Yates.
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[1.0, 2.0, 9.0]), 2.0);
        assert_eq!(median(&[1.0, 2.0, 4.0, 9.0]), 3.0);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut rng = SplitMix64(42);
        let mut v: Vec<u32> = (0..50).collect();
        rng.shuffle(&mut v);
        let mut sorted = v.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn interleaved_checks_sums() {
        let good = |n: u64| (0..n).sum::<u64>();
        let bad = |n: u64| (0..n).sum::<u64>() + 1;
        let expected = (0..100u64).sum();
        let t = interleaved(
            &[
                Variant {
                    name: "good",
                    run: &good,
                    expected,
                },
                Variant {
                    name: "bad",
                    run: &bad,
                    expected,
                },
            ],
            3,
            100,
        );
        assert!(t[0].wrong.is_empty());
        assert_eq!(t[1].wrong.len(), 3);
        assert!(t[0].min_ns <= t[0].median_ns && t[0].median_ns <= t[0].max_ns);
    }
}
