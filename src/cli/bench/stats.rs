//! Summary statistics of timing samples: the median with a
//! distribution-free 95% interval, and Welch's t-test.

use statrs::distribution::{Binomial, ContinuousCDF, DiscreteCDF, StudentsT};

/// The median of sorted values (mean of the middle two for an even count).
pub fn median(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// A confidence interval for the median and the probability that it covers
/// the true median.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MedianInterval {
    pub lo: f64,
    pub hi: f64,
    /// At least the level asked for; exactly `1 - 2 P(B <= k - 1)`.
    pub coverage: f64,
}

/// The order-statistic interval `[x_(k), x_(n+1-k)]` for the median of
/// `sorted` (1-based ranks), with the largest `k` whose coverage is at
/// least `level`: the number of samples below the median is
/// Binomial(n, 1/2), so the interval misses it with probability
/// `2 P(B <= k - 1)`. Assumes only independent samples from a continuous
/// distribution, not normality. `None` when even `[min, max]` covers with
/// less than `level` (n < 6 for 95%).
pub fn median_interval(sorted: &[f64], level: f64) -> Option<MedianInterval> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let b = Binomial::new(0.5, n as u64).ok()?;
    let miss = |k: usize| 2.0 * b.cdf(k as u64 - 1);
    let k = (1..=n.div_ceil(2))
        .take_while(|&k| 1.0 - miss(k) >= level)
        .last()?;
    Some(MedianInterval {
        lo: sorted[k - 1],
        hi: sorted[n - k],
        coverage: 1.0 - miss(k),
    })
}

pub fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// The unbiased sample variance (divides by n - 1).
pub fn variance(xs: &[f64]) -> f64 {
    let m = mean(xs);
    xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (xs.len() as f64 - 1.0)
}

/// Welch's unequal-variances t-test of `a` against `b`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Welch {
    pub t: f64,
    /// Welch-Satterthwaite degrees of freedom.
    pub df: f64,
    /// Two-sided.
    pub p: f64,
}

/// `None` if a side has fewer than two samples or both have zero variance
/// (the statistic is undefined).
pub fn welch(a: &[f64], b: &[f64]) -> Option<Welch> {
    if a.len() < 2 || b.len() < 2 {
        return None;
    }
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (va, vb) = (variance(a) / na, variance(b) / nb);
    let se2 = va + vb;
    if se2 <= 0.0 || !se2.is_finite() {
        return None;
    }
    let t = (mean(a) - mean(b)) / se2.sqrt();
    let df = se2 * se2 / (va * va / (na - 1.0) + vb * vb / (nb - 1.0));
    let dist = StudentsT::new(0.0, 1.0, df).ok()?;
    // The lower tail of -|t| keeps precision for tiny p (1 - cdf would
    // round to 0 below about 1e-16).
    let p = (2.0 * dist.cdf(-t.abs())).min(1.0);
    Some(Welch { t, df, p })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(got: f64, want: f64, rel: f64) -> bool {
        (got - want).abs() <= rel * want.abs().max(f64::MIN_POSITIVE)
    }

    /// References: `scipy.stats.ttest_ind(a, b, equal_var=False)` (SciPy
    /// 1.17.1), which reports `statistic`, `pvalue` and `df`.
    #[test]
    fn welch_matches_scipy() {
        let a = [1.1, 2.3, 1.9, 2.2, 1.7, 2.0];
        let b = [2.9, 3.1, 2.5, 3.6, 2.8, 3.3, 3.0];
        let w = welch(&a, &b).unwrap();
        assert!(close(w.t, -5.245189680786644, 1e-10), "{w:?}");
        assert!(close(w.df, 9.735329532527494, 1e-10), "{w:?}");
        assert!(close(w.p, 0.0004106339981618837, 1e-8), "{w:?}");

        // A tiny p-value, where 1 - cdf would lose every digit.
        let a: Vec<f64> = (0..30).map(|i| 1.0 + 0.001 * f64::from(i)).collect();
        let b: Vec<f64> = (0..30).map(|i| 1.02 + 0.0013 * f64::from(i)).collect();
        let w = welch(&a, &b).unwrap();
        assert!(close(w.t, -9.237035264741134, 1e-10), "{w:?}");
        assert!(close(w.df, 54.419465262830336, 1e-10), "{w:?}");
        assert!(close(w.p, 9.773022103111237e-13, 1e-6), "{w:?}");

        // Equal means: t = 0, p = 1.
        let w = welch(
            &[5.0, 5.1, 4.9, 5.2, 4.8],
            &[5.05, 5.0, 5.1, 4.95, 5.0, 4.9],
        )
        .unwrap();
        assert!(w.t.abs() < 1e-12 && close(w.p, 1.0, 1e-12), "{w:?}");
    }

    #[test]
    fn welch_is_undefined_without_spread_or_samples() {
        assert_eq!(welch(&[1.0, 1.0], &[1.0, 1.0]), None);
        assert_eq!(welch(&[1.0], &[1.0, 2.0]), None);
    }

    /// References: the largest k with `1 - 2 * scipy.stats.binom.cdf(k - 1,
    /// n, 0.5) >= 0.95`, and that coverage (SciPy 1.17.1): n = 30 gives
    /// ranks 10 and 21, coverage 0.9572260547429323; n = 31 gives 10 and
    /// 22, 0.9705506265163422; n = 100 gives 40 and 61,
    /// 0.9647997997822951. The n = 30 and n = 100 ranks agree with the
    /// published tables (e.g. Conover, Practical Nonparametric Statistics).
    #[test]
    fn median_interval_matches_binomial_ranks() {
        for (n, lo_rank, hi_rank, coverage) in [
            (30usize, 10usize, 21usize, 0.9572260547429323),
            (31, 10, 22, 0.9705506265163422),
            (100, 40, 61, 0.9647997997822951),
        ] {
            // Value = rank, so the interval's ends name their ranks.
            let xs: Vec<f64> = (1..=n).map(|r| r as f64).collect();
            let ci = median_interval(&xs, 0.95).unwrap();
            assert_eq!((ci.lo, ci.hi), (lo_rank as f64, hi_rank as f64), "n = {n}");
            assert!(close(ci.coverage, coverage, 1e-9), "n = {n}: {ci:?}");
        }
        // Five samples cannot give 95%: [min, max] covers 1 - 2/32.
        assert_eq!(median_interval(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.95), None);
        let six = median_interval(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 0.95).unwrap();
        assert_eq!((six.lo, six.hi), (1.0, 6.0));
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[1.0, 2.0, 9.0]), 2.0);
        assert_eq!(median(&[1.0, 2.0, 4.0, 9.0]), 3.0);
        assert!(median(&[]).is_nan());
    }
}
