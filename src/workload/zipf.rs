//! Zipf's law over a finite set of ranks, sampled by inverse transform.

use super::rng::SplitMix64;

/// Zipf's distribution on ranks `1..=n` with exponent `s`:
/// `P(rank = k) = k^-s / H(n, s)`, `H(n, s) = sum_{i=1..n} i^-s` (SciPy's
/// `zipfian(a = s, n)`). A table of the cumulative distribution, so a draw
/// is one uniform number and a binary search, and the probabilities are
/// exact rather than those of a rejection sampler.
#[derive(Clone, Debug)]
pub struct Zipf {
    /// `cdf[k - 1] = P(rank <= k)`; the last entry is exactly 1.
    cdf: Vec<f64>,
}

impl Zipf {
    /// # Panics
    /// If `n` is 0 or `s` is not finite.
    pub fn new(n: usize, s: f64) -> Self {
        assert!(n > 0, "Zipf needs at least one rank");
        assert!(s.is_finite(), "Zipf exponent must be finite");
        let weights: Vec<f64> = (1..=n).map(|k| (k as f64).powf(-s)).collect();
        let total: f64 = weights.iter().sum();
        let mut acc = 0.0;
        let mut cdf: Vec<f64> = weights
            .iter()
            .map(|w| {
                acc += w;
                acc / total
            })
            .collect();
        // Rounding must not leave a gap above the last rank.
        *cdf.last_mut().expect("n > 0") = 1.0;
        Zipf { cdf }
    }

    pub fn ranks(&self) -> usize {
        self.cdf.len()
    }

    /// `P(rank = k)`, `k` in `1..=n`.
    pub fn pmf(&self, k: usize) -> f64 {
        assert!(
            (1..=self.ranks()).contains(&k),
            "rank {k} out of 1..={}",
            self.ranks()
        );
        let below = if k == 1 { 0.0 } else { self.cdf[k - 2] };
        self.cdf[k - 1] - below
    }

    /// A rank in `1..=n`.
    pub fn sample(&self, rng: &mut SplitMix64) -> usize {
        let u = rng.next_f64();
        // The first rank whose cumulative probability exceeds u.
        self.cdf.partition_point(|&c| c <= u) + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `scipy.stats.zipfian(a=1.0, n=8).pmf(k)` for k = 1..8 (SciPy 1.17.1,
    /// printed with `repr`). By hand: H(8, 1) = 761/280, P(1) = 280/761.
    const SCIPY_ZIPF_8: [f64; 8] = [
        0.3679369250985546,
        0.1839684625492773,
        0.12264564169951818,
        0.09198423127463864,
        0.07358738501971092,
        0.06132282084975909,
        0.05256241787122208,
        0.04599211563731932,
    ];

    /// `scipy.stats.zipfian(a=1.0, n=64).pmf([1, 2, 10, 64])`.
    const SCIPY_ZIPF_64: [(usize, f64); 4] = [
        (1, 0.21079742774414006),
        (2, 0.10539871387207003),
        (10, 0.021079742774414007),
        (64, 0.0032937098085021885),
    ];

    #[test]
    fn probabilities_match_scipy() {
        let z = Zipf::new(8, 1.0);
        for (k, want) in (1..=8).zip(SCIPY_ZIPF_8) {
            assert!(
                (z.pmf(k) - want).abs() < 1e-12,
                "rank {k}: {} vs {want}",
                z.pmf(k)
            );
        }
        let z = Zipf::new(64, 1.0);
        for (k, want) in SCIPY_ZIPF_64 {
            assert!(
                (z.pmf(k) - want).abs() < 1e-12,
                "rank {k}: {} vs {want}",
                z.pmf(k)
            );
        }
    }

    /// Draws follow the distribution: with 200,000 draws the chi-square
    /// statistic over 8 ranks (7 degrees of freedom) stays below 24.32, its
    /// 0.999 quantile (`scipy.stats.chi2.ppf(0.999, 7)`). The seed is fixed,
    /// so the test is deterministic; a sampler off by one rank gives a
    /// statistic in the tens of thousands.
    #[test]
    fn draws_follow_the_distribution() {
        const DRAWS: usize = 200_000;
        let z = Zipf::new(8, 1.0);
        let mut rng = SplitMix64::new(7);
        let mut counts = [0usize; 8];
        for _ in 0..DRAWS {
            counts[z.sample(&mut rng) - 1] += 1;
        }
        let chi2: f64 = counts
            .iter()
            .zip(SCIPY_ZIPF_8)
            .map(|(&c, p)| {
                let e = p * DRAWS as f64;
                (c as f64 - e).powi(2) / e
            })
            .sum();
        assert!(chi2 < 24.32, "chi-square {chi2}, counts {counts:?}");
    }

    #[test]
    fn one_rank_is_always_drawn() {
        let z = Zipf::new(1, 1.0);
        let mut rng = SplitMix64::new(1);
        assert!((0..100).all(|_| z.sample(&mut rng) == 1));
        assert_eq!(z.pmf(1), 1.0);
    }
}
