//! Object-level ranking metrics for anomaly scores: ROC AUC, average precision, precision@k,
//! and the per-kind / overall positive–negative splits they are computed on.
//!
//! Convention everywhere: a higher score means "more anomalous", positives are the anomalies.
//! Ties are never broken by input order: every metric here gives the value expected when tied
//! scores are ordered at random, so shuffling the input never changes a result.

use std::collections::BTreeSet;

use crate::error::{Error, Result, check_finite, check_len};

/// Counts positives and negatives, failing unless both are present.
fn class_counts(what: &str, is_positive: &[bool]) -> Result<(usize, usize)> {
    let positives = is_positive.iter().filter(|&&p| p).count();
    let negatives = is_positive.len() - positives;
    if positives == 0 || negatives == 0 {
        return Err(Error::SingleClass {
            what: what.to_string(),
            positives,
            negatives,
        });
    }
    Ok((positives, negatives))
}

fn validate(what: &str, scores: &[f64], is_positive: &[bool]) -> Result<(usize, usize)> {
    check_len(&format!("{what} labels"), is_positive.len(), scores.len())?;
    check_finite(&format!("{what} scores"), scores)?;
    class_counts(what, is_positive)
}

/// Indices of `scores` ordered by descending score (ties in index order; callers group ties).
fn order_descending(scores: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    order
}

/// Groups of equal scores along a descending order: yields (group start, group end) ranges.
fn tie_groups<'a>(
    scores: &'a [f64],
    order: &'a [usize],
) -> impl Iterator<Item = (usize, usize)> + 'a {
    let mut start = 0;
    std::iter::from_fn(move || {
        if start >= order.len() {
            return None;
        }
        let value = scores[order[start]];
        let mut end = start + 1;
        while end < order.len() && scores[order[end]] == value {
            end += 1;
        }
        let group = (start, end);
        start = end;
        Some(group)
    })
}

/// Area under the ROC curve (probability that a random positive outscores a random negative).
///
/// Computed as the Mann–Whitney U statistic with average ranks, so a positive and a negative with
/// equal scores count one half — identical to the trapezoid rule on the ROC curve and to
/// sklearn's `roc_auc_score`. Errors on length mismatch, non-finite scores, or a missing class.
pub fn roc_auc(scores: &[f64], is_positive: &[bool]) -> Result<f64> {
    let (positives, negatives) = validate("ROC AUC", scores, is_positive)?;
    let order = order_descending(scores);
    // Walk from the highest score down: each positive beats every negative below it and ties
    // half of the negatives in its own group.
    let mut negatives_seen = 0usize;
    let mut wins = 0.0f64;
    for (start, end) in tie_groups(scores, &order) {
        let group = &order[start..end];
        let pos_in_group = group.iter().filter(|&&i| is_positive[i]).count();
        let neg_in_group = group.len() - pos_in_group;
        let neg_below = negatives - negatives_seen - neg_in_group;
        wins += pos_in_group as f64 * (neg_below as f64 + 0.5 * neg_in_group as f64);
        negatives_seen += neg_in_group;
    }
    Ok(wins / (positives as f64 * negatives as f64))
}

/// Average precision as sklearn defines it: `Σ_n (R_n − R_{n−1}) P_n` over the distinct score
/// thresholds taken from high to low, with tied scores entering together as one threshold.
///
/// Errors on length mismatch, non-finite scores, or a missing class (AP needs negatives only so
/// that the split is a real ranking problem; the value itself would be 1 without them).
pub fn average_precision(scores: &[f64], is_positive: &[bool]) -> Result<f64> {
    let (positives, _) = validate("average precision", scores, is_positive)?;
    let order = order_descending(scores);
    let mut true_pos = 0usize;
    let mut ap = 0.0f64;
    for (start, end) in tie_groups(scores, &order) {
        let new_pos = order[start..end]
            .iter()
            .filter(|&&i| is_positive[i])
            .count();
        if new_pos == 0 {
            continue;
        }
        true_pos += new_pos;
        let precision = true_pos as f64 / end as f64;
        ap += new_pos as f64 * precision;
    }
    // Dividing once at the end keeps a perfect ranking at exactly 1.
    Ok(ap / positives as f64)
}

/// Precision among the `k` highest scores.
///
/// Ties at the k-th position: when the cut falls inside a group of equal scores, the group
/// contributes its positives in proportion to the places left (`m` places among `g` tied items
/// holding `p` positives add `p·m/g`), i.e. the expectation over random tie-breaking. The result
/// is therefore a fraction that need not be a multiple of `1/k`, and it never depends on input order.
///
/// Errors when `k == 0` or `k > scores.len()`, on length mismatch or on non-finite scores. A
/// ranking with no positives is allowed here (precision 0).
pub fn precision_at_k(scores: &[f64], is_positive: &[bool], k: usize) -> Result<f64> {
    check_len("precision@k labels", is_positive.len(), scores.len())?;
    check_finite("precision@k scores", scores)?;
    if k == 0 || k > scores.len() {
        return Err(Error::InvalidK {
            k,
            reason: format!(
                "precision@k needs 1 ≤ k ≤ {} (the number of ranked items)",
                scores.len()
            ),
        });
    }
    let order = order_descending(scores);
    let mut hits = 0.0f64;
    for (start, end) in tie_groups(scores, &order) {
        let pos_in_group = order[start..end]
            .iter()
            .filter(|&&i| is_positive[i])
            .count() as f64;
        if end <= k {
            hits += pos_in_group;
        } else {
            let places_left = (k - start) as f64;
            hits += pos_in_group * places_left / (end - start) as f64;
        }
        if end >= k {
            break;
        }
    }
    Ok(hits / k as f64)
}

/// Which anomaly split to evaluate: one kind against the normals, or all anomalies against them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Split<'a> {
    /// Positives are galaxies with this label; negatives the normal labels; other anomaly kinds
    /// are left out so they neither help nor hurt the kind being judged.
    Kind(&'a str),
    /// Positives are every non-normal label; negatives the normal labels.
    Overall,
}

/// Selects the galaxies taking part in `split`: returns their indices (in input order) and, for
/// each, whether it is a positive. Galaxies whose label is neither normal nor the judged kind
/// are excluded.
///
/// Errors if `normal_labels` is empty (nothing could be a negative).
pub fn split_indices(
    labels: &[String],
    normal_labels: &BTreeSet<String>,
    split: &Split<'_>,
) -> Result<(Vec<usize>, Vec<bool>)> {
    if normal_labels.is_empty() {
        return Err(Error::Empty("the set of normal labels".to_string()));
    }
    let mut indices = Vec::new();
    let mut positive = Vec::new();
    for (i, label) in labels.iter().enumerate() {
        let is_normal = normal_labels.contains(label);
        let is_positive = match split {
            Split::Kind(kind) => label == kind,
            Split::Overall => !is_normal,
        };
        if is_normal || is_positive {
            indices.push(i);
            positive.push(is_positive && !is_normal);
        }
    }
    Ok((indices, positive))
}

/// The metric set reported for one score on one split.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RankingMetrics {
    /// Number of positives in the split.
    pub n_positive: usize,
    /// Number of negatives in the split.
    pub n_negative: usize,
    /// ROC AUC (ties count one half).
    pub auroc: f64,
    /// Average precision (sklearn's definition).
    pub average_precision: f64,
    /// Precision in the top 10; `None` when the split has fewer than 10 galaxies.
    pub precision_at_10: Option<f64>,
    /// Precision in the top 50; `None` when the split has fewer than 50 galaxies.
    pub precision_at_50: Option<f64>,
    /// Precision in the top 100; `None` when the split has fewer than 100 galaxies.
    pub precision_at_100: Option<f64>,
    /// Precision in the top `n_positive` (R-precision).
    pub precision_at_n_positive: f64,
}

/// Computes every [`RankingMetrics`] field for one score vector on one positive/negative split.
pub fn ranking_metrics(scores: &[f64], is_positive: &[bool]) -> Result<RankingMetrics> {
    let (n_positive, n_negative) = validate("ranking metrics", scores, is_positive)?;
    let at = |k: usize| -> Result<Option<f64>> {
        if k <= scores.len() {
            precision_at_k(scores, is_positive, k).map(Some)
        } else {
            Ok(None)
        }
    };
    Ok(RankingMetrics {
        n_positive,
        n_negative,
        auroc: roc_auc(scores, is_positive)?,
        average_precision: average_precision(scores, is_positive)?,
        precision_at_10: at(10)?,
        precision_at_50: at(50)?,
        precision_at_100: at(100)?,
        precision_at_n_positive: precision_at_k(scores, is_positive, n_positive)?,
    })
}

/// [`ranking_metrics`] on the galaxies of `split` (see [`split_indices`]).
pub fn split_metrics(
    scores: &[f64],
    labels: &[String],
    normal_labels: &BTreeSet<String>,
    split: &Split<'_>,
) -> Result<RankingMetrics> {
    check_len("labels", labels.len(), scores.len())?;
    let (indices, is_positive) = split_indices(labels, normal_labels, split)?;
    let subset: Vec<f64> = indices.iter().map(|&i| scores[i]).collect();
    ranking_metrics(&subset, &is_positive)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn auc_perfect_inverted_and_tied() {
        let labels = [true, true, false, false, false];
        assert!(close(
            roc_auc(&[5.0, 4.0, 3.0, 2.0, 1.0], &labels).unwrap(),
            1.0
        ));
        assert!(close(
            roc_auc(&[1.0, 2.0, 3.0, 4.0, 5.0], &labels).unwrap(),
            0.0
        ));
        // All tied: every positive/negative pair counts one half.
        assert!(close(roc_auc(&[1.0; 5], &labels).unwrap(), 0.5));
        // Hand count: positives 0.8, 0.4; negatives 0.9, 0.4, 0.1.
        // 0.8 beats 0.4 and 0.1 (2); 0.4 ties 0.4 (0.5) and beats 0.1 (1) → 3.5 / 6.
        let scores = [0.8, 0.4, 0.9, 0.4, 0.1];
        assert!(close(roc_auc(&scores, &labels).unwrap(), 3.5 / 6.0));
    }

    #[test]
    fn auc_matches_sklearn_constant() {
        // Hand count: 20.5 winning pairs of 25; sklearn 1.9.1 roc_auc_score agrees (0.82).
        let scores = [0.1, 0.4, 0.35, 0.8, 0.65, 0.4, 0.2, 0.9, 0.55, 0.3];
        let labels = [
            false, false, true, true, false, true, false, true, true, false,
        ];
        let auc = roc_auc(&scores, &labels).unwrap();
        assert!(close(auc, SKLEARN_AUC), "{auc}");
    }

    #[test]
    fn ap_known_example() {
        // sklearn docs example: y = [0, 0, 1, 1], scores = [0.1, 0.4, 0.35, 0.8] → AP 0.8333…
        let ap = average_precision(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]).unwrap();
        assert!(close(ap, 0.8333333333333333), "{ap}");
        let scores = [0.1, 0.4, 0.35, 0.8, 0.65, 0.4, 0.2, 0.9, 0.55, 0.3];
        let labels = [
            false, false, true, true, false, true, false, true, true, false,
        ];
        let ap = average_precision(&scores, &labels).unwrap();
        assert!(close(ap, SKLEARN_AP), "{ap}");
    }

    #[test]
    fn ap_with_ties_groups_threshold() {
        // All four tied: one threshold, recall 1 at precision 2/4.
        let ap = average_precision(&[1.0; 4], &[true, false, true, false]).unwrap();
        assert!(close(ap, 0.5));
        // Perfect ranking gives 1 whatever the number of positives.
        let ap = average_precision(&[3.0, 2.0, 1.0, 0.0], &[true, true, false, false]).unwrap();
        assert!(close(ap, 1.0));
    }

    #[test]
    fn precision_at_k_counts_and_ties() {
        let scores = [0.9, 0.8, 0.7, 0.6, 0.5];
        let labels = [true, false, true, false, false];
        assert!(close(precision_at_k(&scores, &labels, 1).unwrap(), 1.0));
        assert!(close(precision_at_k(&scores, &labels, 2).unwrap(), 0.5));
        assert!(close(
            precision_at_k(&scores, &labels, 3).unwrap(),
            2.0 / 3.0
        ));
        // Cut inside a tie: top item (pos) + 1 of 3 tied places holding 1 positive → (1 + 1/3)/2.
        let scores = [0.9, 0.5, 0.5, 0.5, 0.1];
        let labels = [true, true, false, false, true];
        assert!(close(
            precision_at_k(&scores, &labels, 2).unwrap(),
            (1.0 + 1.0 / 3.0) / 2.0
        ));
        assert!(precision_at_k(&scores, &labels, 0).is_err());
        assert!(precision_at_k(&scores, &labels, 6).is_err());
    }

    #[test]
    fn metrics_are_invariant_to_input_order() {
        let scores = [0.3, 0.3, 0.9, 0.1, 0.3, 0.9, 0.2];
        let labels = [true, false, true, false, false, false, true];
        let mut order: Vec<usize> = (0..scores.len()).rev().collect();
        order.rotate_left(3);
        let s2: Vec<f64> = order.iter().map(|&i| scores[i]).collect();
        let l2: Vec<bool> = order.iter().map(|&i| labels[i]).collect();
        assert!(close(
            roc_auc(&scores, &labels).unwrap(),
            roc_auc(&s2, &l2).unwrap()
        ));
        assert!(close(
            average_precision(&scores, &labels).unwrap(),
            average_precision(&s2, &l2).unwrap()
        ));
        for k in 1..=scores.len() {
            assert!(close(
                precision_at_k(&scores, &labels, k).unwrap(),
                precision_at_k(&s2, &l2, k).unwrap()
            ));
        }
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(matches!(
            roc_auc(&[1.0, 2.0], &[true, true]),
            Err(Error::SingleClass { .. })
        ));
        assert!(matches!(
            roc_auc(&[1.0], &[true, false]),
            Err(Error::LengthMismatch { .. })
        ));
        assert!(matches!(
            average_precision(&[1.0, f64::NAN], &[true, false]),
            Err(Error::NonFinite { index: 1, .. })
        ));
    }

    #[test]
    fn splits_exclude_other_kinds() {
        let labels: Vec<String> = ["normal", "agn", "blueberry", "normal", "agn"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let normals: BTreeSet<String> = ["normal".to_string()].into();
        let (idx, pos) = split_indices(&labels, &normals, &Split::Kind("agn")).unwrap();
        assert_eq!(idx, vec![0, 1, 3, 4]);
        assert_eq!(pos, vec![false, true, false, true]);
        let (idx, pos) = split_indices(&labels, &normals, &Split::Overall).unwrap();
        assert_eq!(idx, vec![0, 1, 2, 3, 4]);
        assert_eq!(pos, vec![false, true, true, false, true]);
        // The blueberry outscores everything but is not part of the AGN split.
        let scores = [0.1, 0.8, 5.0, 0.2, 0.9];
        let m = split_metrics(&scores, &labels, &normals, &Split::Kind("agn")).unwrap();
        assert_eq!((m.n_positive, m.n_negative), (2, 2));
        assert!(close(m.auroc, 1.0) && close(m.average_precision, 1.0));
        assert_eq!(m.precision_at_10, None);
        assert!(close(m.precision_at_n_positive, 1.0));
        assert!(split_indices(&labels, &BTreeSet::new(), &Split::Overall).is_err());
    }

    // Computed once with sklearn 1.9.1 (roc_auc_score, average_precision_score) on the
    // ten-item example above.
    const SKLEARN_AUC: f64 = 0.82;
    const SKLEARN_AP: f64 = 0.8261904761904761;
}
