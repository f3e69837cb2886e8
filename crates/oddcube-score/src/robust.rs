//! Robust statistics the null model is built from: σ from the median absolute deviation, its
//! upper-tail variants, Huber regression and the standard normal's upper tail. Each copes with
//! the anomalies that are always among the calibration galaxies (medians, not means; a clipped
//! tail), and none knows what a galaxy is: `calibration` decides what they are applied to.

use oddcube_data::stats::quantile_of_sorted;

/// Scale factor turning a median absolute deviation into a normal σ.
pub const MAD_TO_SIGMA: f64 = 1.482_602_218_505_602;

/// The standard normal's 90th percentile: a tenth of a standard normal lies above it.
pub const Z_90: f64 = 1.281_551_565_544_600_5;

/// Median of the finite values (NaN when there are none).
pub(crate) fn median(values: &[f64]) -> f64 {
    oddcube_data::stats::median(values).unwrap_or(f64::NAN)
}

/// Robust σ: 1.4826 × MAD about the median, the standard deviation when the MAD is 0, and 1
/// when that is 0 too (a constant sample carries no spread to standardise by).
pub fn robust_sigma(values: &[f64]) -> f64 {
    let centre = median(values);
    let deviations: Vec<f64> = values.iter().map(|v| (v - centre).abs()).collect();
    let mad = MAD_TO_SIGMA * median(&deviations);
    if mad > 0.0 {
        return mad;
    }
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let n = finite.len().max(1) as f64;
    let mean = finite.iter().sum::<f64>() / n;
    let sd = (finite.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
    if sd > 0.0 { sd } else { 1.0 }
}

/// Robust σ of the upper tail: 1.4826 × the median of the deviations above the median (what
/// the MAD would be for a normal), [`robust_sigma`] when fewer than 3 values lie above. The
/// p-values live in the upper tail, and ordinary galaxies' scores are right-skewed (a survey
/// mixes quiescent galaxies, whose reconstructions are noise-limited, with star-forming ones
/// whose clumps no model rebuilds exactly): the symmetric MAD, set by the narrower lower
/// side, would understate the upper tail and flag ordinary galaxies.
pub fn upper_sigma(values: &[f64]) -> f64 {
    let centre = median(values);
    let above: Vec<f64> = values
        .iter()
        .filter(|v| **v > centre)
        .map(|v| v - centre)
        .collect();
    let sigma = MAD_TO_SIGMA * median(&above);
    if above.len() >= 3 && sigma > 0.0 {
        sigma
    } else {
        robust_sigma(values)
    }
}

/// Upper-tail quantiles [`tail_sigma`] reads, with their standard-normal quantiles and the
/// values each needs: the 90th percentile from 10 values, the 95th from 100 (five or more above
/// it, so that it is a measured quantile of the tail, not its last value).
const TAIL_QUANTILES: [(f64, f64, usize); 2] =
    [(0.90, Z_90, 10), (0.95, 1.644_853_626_951_472_2, 100)];

/// Values further above the median than this many upper-half σ are left out of the quantile
/// estimates of [`tail_sigma`]: they are the anomalies among the calibration galaxies, not the
/// ordinary tail (astronomers' σ-clipping, one pass).
const DECILE_CLIP: f64 = 4.0;

/// The σ the fused score's p-values use: the largest of [`upper_sigma`] (set by the upper quartile)
/// and `(q − median) / z_q` for the 90th and 95th percentiles (linearly interpolated, of the values
/// within 4 upper-half σ of the median), each where there are enough values to estimate it (10 and
/// 100). For a normal sample all estimate σ; when ordinary galaxies' scores have a heavier upper
/// tail than their body suggests — on the benchmark surveys they do, from star-forming galaxies the
/// model rebuilds poorly — the higher quantiles see it and the quartile does not, and a p-value
/// from the quartile alone would flag ordinary galaxies. The clip keeps gross anomalies among the
/// calibration galaxies (a tenth or more of them) from taking over the quantiles and hiding every
/// anomaly.
pub fn tail_sigma(values: &[f64]) -> f64 {
    let mut finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    finite.sort_by(f64::total_cmp);
    let quartile = upper_sigma(&finite);
    let centre = oddcube_data::stats::median_of_sorted(&finite).unwrap_or(f64::NAN);
    let kept: Vec<f64> = finite
        .iter()
        .copied()
        .filter(|v| *v <= centre + DECILE_CLIP * quartile)
        .collect();
    let mut sigma = quartile;
    for (q, z_q, needed) in TAIL_QUANTILES {
        if kept.len() < needed {
            continue;
        }
        let estimate = (quantile_of_sorted(&kept, q).unwrap_or(f64::NAN) - centre) / z_q;
        if estimate.is_finite() {
            sigma = sigma.max(estimate);
        }
    }
    sigma
}

/// Solves the small symmetric positive system `a x = b` (n ≤ 3) by Gaussian elimination with
/// partial pivoting; `None` when singular.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    for col in 0..n {
        let pivot = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        let (upper, lower) = a.split_at_mut(col + 1);
        let pivot_row = &upper[col];
        for (offset, row) in lower.iter_mut().enumerate() {
            let f = row[col] / pivot_row[col];
            for (target, source) in row[col..].iter_mut().zip(&pivot_row[col..]) {
                *target -= f * source;
            }
            b[col + 1 + offset] -= f * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let s: f64 = (row + 1..n).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - s) / a[row][row];
    }
    Some(x)
}

/// Huber regression of `y` on the rows of `design` by iteratively reweighted least squares
/// (tuning 1.345 σ, σ from the MAD of the residuals). Returns the coefficients and the upper-tail
/// σ of the residuals ([`upper_sigma`]). Rows with a non-finite `y` are ignored.
pub fn huber_regression(design: &[Vec<f64>], y: &[f64]) -> (Vec<f64>, f64) {
    let rows: Vec<usize> = (0..y.len()).filter(|&i| y[i].is_finite()).collect();
    let p = design.first().map_or(1, Vec::len);
    let mut weights = vec![1.0; y.len()];
    let mut coef = vec![0.0; p];
    coef[0] = median(y);
    for _ in 0..50 {
        let mut ata = vec![vec![0.0; p]; p];
        let mut atb = vec![0.0; p];
        for &i in &rows {
            for a in 0..p {
                atb[a] += weights[i] * design[i][a] * y[i];
                for b in 0..p {
                    ata[a][b] += weights[i] * design[i][a] * design[i][b];
                }
            }
        }
        let Some(next) = solve(ata, atb) else { break };
        let residuals: Vec<f64> = rows
            .iter()
            .map(|&i| y[i] - dot(&next, &design[i]))
            .collect();
        let sigma = robust_sigma(&residuals);
        let converged = next.iter().zip(&coef).all(|(a, b)| (a - b).abs() < 1e-10);
        coef = next;
        for (&i, r) in rows.iter().zip(&residuals) {
            let limit = 1.345 * sigma;
            weights[i] = if r.abs() <= limit {
                1.0
            } else {
                limit / r.abs()
            };
        }
        if converged {
            break;
        }
    }
    let residuals: Vec<f64> = rows
        .iter()
        .map(|&i| y[i] - dot(&coef, &design[i]))
        .collect();
    (coef, upper_sigma(&residuals))
}

pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Upper tail of the standard normal, `P(Z ≥ z)`, accurate far into the tail.
pub fn normal_upper_tail(z: f64) -> f64 {
    (0.5 * erfc(z / std::f64::consts::SQRT_2)).clamp(0.0, 1.0)
}

/// Complementary error function (Numerical Recipes' `erfcc`, fractional error < 1.2e-7
/// everywhere, so tail probabilities stay accurate far below machine epsilon).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huber_regression_recovers_a_line_through_outliers() {
        let design: Vec<Vec<f64>> = (0..50).map(|i| vec![1.0, i as f64]).collect();
        let mut y: Vec<f64> = (0..50).map(|i| 2.0 + 0.5 * i as f64).collect();
        y[10] += 100.0;
        y[40] -= 80.0;
        let (coef, _) = huber_regression(&design, &y);
        assert!(
            (coef[0] - 2.0).abs() < 0.05 && (coef[1] - 0.5).abs() < 0.01,
            "{coef:?}"
        );
    }

    #[test]
    fn upper_sigma_follows_the_upper_tail() {
        // Symmetric: equal to the MAD-σ. Right-skewed (upper side twice as wide): twice it.
        let sym: Vec<f64> = (-50..=50).map(f64::from).collect();
        assert!((upper_sigma(&sym) / robust_sigma(&sym) - 1.0).abs() < 0.05);
        let skew: Vec<f64> = (-50..=50)
            .map(|i| {
                if i > 0 {
                    2.0 * f64::from(i)
                } else {
                    f64::from(i)
                }
            })
            .collect();
        assert!((upper_sigma(&skew) / (MAD_TO_SIGMA * 50.0) - 1.0).abs() < 0.05);
        // Too few values above the median: the symmetric estimate.
        assert_eq!(
            upper_sigma(&[1.0, 1.0, 1.0, 2.0]),
            robust_sigma(&[1.0, 1.0, 1.0, 2.0])
        );
    }

    #[test]
    fn tail_sigma_reads_the_95th_percentile_from_100_values() {
        // Standard normal quantiles with everything above the 92nd percentile (z = 1.405)
        // stretched ×1.5: the quartile and the decile (z = 1.28) do not see it; the 95th
        // percentile, 1.645 → 2.47, implies σ = 1.5.
        let stretched = |n: usize| -> Vec<f64> {
            (1..=n)
                .map(|i| inverse_normal(i as f64 / (n + 1) as f64))
                .map(|v| if v > 1.405 { 1.5 * v } else { v })
                .collect()
        };
        // (The 4σ clip drops the 4 values stretched beyond 4, which moves the percentile
        // down by about 0.4 % of the sample: ≈ 1.47.)
        let many = tail_sigma(&stretched(999));
        assert!((many - 1.5).abs() < 0.05, "{many}");
        // With 99 values the 95th percentile would rest on its top 5 values: not read.
        let few = tail_sigma(&stretched(99));
        assert!((few - 1.0).abs() < 0.1, "{few}");
    }

    #[test]
    fn tail_sigma_sees_a_heavy_upper_decile() {
        // Normal quantiles: both estimates agree with σ = 2 (to the sample's resolution).
        let n = 999;
        let normal: Vec<f64> = (1..=n)
            .map(|i| 2.0 * inverse_normal(i as f64 / (n + 1) as f64))
            .collect();
        assert!((tail_sigma(&normal) / 2.0 - 1.0).abs() < 0.02);
        // The same body with the top 15 % stretched ×1.8 (a heavier ordinary tail, mostly within
        // the clip): the quartile does not move, the decile (and so the scale) does, by ≈ 1.8.
        let mut heavy = normal.clone();
        for v in heavy.iter_mut().filter(|v| **v > 2.0 * 1.036) {
            *v *= 1.8;
        }
        assert!((upper_sigma(&heavy) - upper_sigma(&normal)).abs() < 1e-9);
        assert!(tail_sigma(&heavy) > 1.5 * tail_sigma(&normal));
        // A tenth of gross outliers (anomalies far beyond the ordinary tail) is clipped before
        // the decile is taken: unclipped, the decile would sit among them (σ ≈ 100 / 1.28); the
        // scale stays near the ordinary galaxies' (the median and quartile shift a little).
        let mut contaminated = normal.clone();
        for v in contaminated.iter_mut().step_by(10) {
            *v = 100.0 + v.abs();
        }
        let clean = tail_sigma(&normal);
        assert!(
            tail_sigma(&contaminated) < 1.3 * clean,
            "{}",
            tail_sigma(&contaminated)
        );
        // Below 10 values only the quartile estimate is used.
        assert_eq!(
            tail_sigma(&[0.0, 1.0, 2.0, 3.0]),
            upper_sigma(&[0.0, 1.0, 2.0, 3.0])
        );
    }

    /// Inverse of the standard normal CDF by bisection on [`normal_upper_tail`].
    fn inverse_normal(p: f64) -> f64 {
        let (mut lo, mut hi) = (-10.0, 10.0);
        for _ in 0..100 {
            let mid = 0.5 * (lo + hi);
            if 1.0 - normal_upper_tail(mid) < p {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        0.5 * (lo + hi)
    }

    #[test]
    fn normal_tail_values() {
        assert!((normal_upper_tail(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_upper_tail(1.959_964) - 0.025).abs() < 1e-6);
        assert!((normal_upper_tail(-1.959_964) - 0.975).abs() < 1e-6);
        // Deep tail: P(Z ≥ 8) = 6.22e-16.
        assert!((normal_upper_tail(8.0) / 6.220_960_574_271_78e-16 - 1.0).abs() < 1e-5);
    }
}
