//! Calibrated anomaly calls: empirical p-values against a reference population and
//! Benjamini–Hochberg false-discovery-rate control.

use crate::error::{Error, Result, check_finite};

/// Empirical p-value of each score against a reference population (higher score = more
/// anomalous): `p = (1 + #{ref ≥ s}) / (1 + n_ref)`.
///
/// The `+1` terms count the scored galaxy itself as a member of the reference, which makes the
/// p-value valid (never anti-conservative) for a galaxy drawn from the reference distribution
/// and keeps it strictly positive. Errors on an empty reference or non-finite values.
pub fn empirical_p_values(scores: &[f64], reference: &[f64]) -> Result<Vec<f64>> {
    if reference.is_empty() {
        return Err(Error::Empty("the reference population".to_string()));
    }
    check_finite("reference scores", reference)?;
    check_finite("scores", scores)?;
    let mut sorted = reference.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n_ref = sorted.len();
    Ok(scores
        .iter()
        .map(|&s| {
            let below = sorted.partition_point(|&r| r < s);
            (1 + n_ref - below) as f64 / (1 + n_ref) as f64
        })
        .collect())
}

/// The outcome of a Benjamini–Hochberg procedure.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BhResult {
    /// Whether each hypothesis is rejected (the galaxy is called anomalous) at the chosen level.
    pub discoveries: Vec<bool>,
    /// BH-adjusted p-values ("q-values"): the smallest FDR level at which each would be rejected.
    pub q_values: Vec<f64>,
}

/// Benjamini–Hochberg step-up procedure at FDR level `level` (e.g. 0.05).
///
/// Adjusted values follow R's `p.adjust(method = "BH")`: `q_(i) = min_{j ≥ i} p_(j)·n/j`, capped
/// at 1; a hypothesis is a discovery iff `q ≤ level`, which is the same set as the classic
/// "largest i with p_(i) ≤ i·level/n" rule. Errors on p-values outside [0, 1] or NaN, and on a
/// level outside (0, 1].
pub fn benjamini_hochberg(p_values: &[f64], level: f64) -> Result<BhResult> {
    if !(level > 0.0 && level <= 1.0) {
        return Err(Error::InvalidParameter {
            name: "FDR level".to_string(),
            value: level.to_string(),
            reason: "must lie in (0, 1]".to_string(),
        });
    }
    if let Some(index) = p_values.iter().position(|p| !(0.0..=1.0).contains(p)) {
        return Err(Error::InvalidParameter {
            name: format!("p-value #{index}"),
            value: p_values[index].to_string(),
            reason: "p-values must lie in [0, 1]".to_string(),
        });
    }
    let n = p_values.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| p_values[a].total_cmp(&p_values[b]));
    let mut q_values = vec![0.0; n];
    let mut running_min = 1.0f64;
    for (rank0, &i) in order.iter().enumerate().rev() {
        let adjusted = p_values[i] * n as f64 / (rank0 + 1) as f64;
        running_min = running_min.min(adjusted);
        q_values[i] = running_min;
    }
    let discoveries = q_values.iter().map(|&q| q <= level).collect();
    Ok(BhResult {
        discoveries,
        q_values,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p_values_count_reference_at_or_above() {
        let reference = [1.0, 2.0, 3.0, 4.0];
        let p = empirical_p_values(&[0.0, 2.0, 2.5, 4.0, 9.0], &reference).unwrap();
        // #{ref ≥ s} = 4, 3, 2, 1, 0 → (1 + c) / 5.
        assert_eq!(p, vec![1.0, 0.8, 0.6, 0.4, 0.2]);
        assert!(empirical_p_values(&[1.0], &[]).is_err());
        assert!(empirical_p_values(&[f64::NAN], &reference).is_err());
    }

    #[test]
    fn bh_matches_r_p_adjust() {
        // R: p.adjust(c(0.01, 0.04, 0.03, 0.005, 0.2, 0.9), "BH")
        //    = 0.03 0.06 0.06 0.03 0.24 0.90 (hand-checked: n = 6).
        let p = [0.01, 0.04, 0.03, 0.005, 0.2, 0.9];
        let bh = benjamini_hochberg(&p, 0.05).unwrap();
        let expected = [0.03, 0.06, 0.06, 0.03, 0.24, 0.9];
        for (q, e) in bh.q_values.iter().zip(expected) {
            assert!((q - e).abs() < 1e-12, "{:?}", bh.q_values);
        }
        assert_eq!(bh.discoveries, vec![true, false, false, true, false, false]);
        let bh = benjamini_hochberg(&p, 0.07).unwrap();
        assert_eq!(bh.discoveries, vec![true, true, true, true, false, false]);
    }

    #[test]
    fn bh_rejects_bad_input() {
        assert!(benjamini_hochberg(&[0.5], 0.0).is_err());
        assert!(benjamini_hochberg(&[1.5], 0.05).is_err());
        assert!(benjamini_hochberg(&[f64::NAN], 0.05).is_err());
        assert_eq!(
            benjamini_hochberg(&[], 0.05).unwrap().q_values,
            Vec::<f64>::new()
        );
    }
}
