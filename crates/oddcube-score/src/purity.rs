//! Retrieval quality of the latent space: neighbour purity, the fraction of a galaxy's k nearest
//! neighbours that share its label (precision@k of same-kind neighbours), averaged per label.

use std::collections::BTreeMap;

use crate::error::{Error, Result, check_len};
use crate::knn::KnnGraph;

/// Purity of one label's galaxies.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LabelPurity {
    /// Galaxies carrying the label.
    pub count: usize,
    /// Mean over those galaxies of the fraction of their k neighbours with the same label.
    pub purity: f64,
    /// The purity expected from random neighbours: `(count − 1) / (n − 1)`.
    pub chance: f64,
}

/// Neighbour purity for every label and overall.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PurityReport {
    /// Neighbours considered per galaxy.
    pub k: usize,
    /// Per-label purity, keyed by label.
    pub per_label: BTreeMap<String, LabelPurity>,
    /// Mean purity over all galaxies (dominated by the common labels).
    pub overall: f64,
}

/// Neighbour purity of `graph` (its first `k` neighbours) under `labels` (one per graph point).
///
/// Errors if `labels` does not match the graph, is empty, `k` is 0 or above the graph's k, or a
/// neighbour index is out of range.
pub fn neighbour_purity(graph: &KnnGraph, labels: &[String], k: usize) -> Result<PurityReport> {
    check_len("labels", labels.len(), graph.n)?;
    if labels.is_empty() {
        return Err(Error::Empty("labels".to_string()));
    }
    if k == 0 || k > graph.k {
        return Err(Error::InvalidK {
            k,
            reason: format!("the kNN graph holds {} neighbours per point", graph.k),
        });
    }
    let mut sums: BTreeMap<&str, (usize, f64)> = BTreeMap::new();
    let mut total = 0.0;
    for (i, label) in labels.iter().enumerate() {
        let neighbours = graph.neighbours(i);
        if neighbours.len() < k {
            return Err(Error::Shape {
                what: "kNN graph".to_string(),
                len: graph.indices.len(),
                rows: graph.n,
                cols: graph.k,
            });
        }
        let mut same = 0usize;
        for &j in &neighbours[..k] {
            let other = labels.get(j).ok_or_else(|| Error::InvalidParameter {
                name: "kNN graph neighbour index".to_string(),
                value: j.to_string(),
                reason: format!("only {} points", labels.len()),
            })?;
            same += usize::from(other == label);
        }
        let fraction = same as f64 / k as f64;
        let entry = sums.entry(label).or_insert((0, 0.0));
        entry.0 += 1;
        entry.1 += fraction;
        total += fraction;
    }
    let n = labels.len();
    let per_label = sums
        .into_iter()
        .map(|(label, (count, sum))| {
            let chance = if n > 1 {
                (count - 1) as f64 / (n - 1) as f64
            } else {
                0.0
            };
            (
                label.to_string(),
                LabelPurity {
                    count,
                    purity: sum / count as f64,
                    chance,
                },
            )
        })
        .collect();
    Ok(PurityReport {
        k,
        per_label,
        overall: total / n as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::knn::{LatentView, Metric, all_nearest};
    use oddcube_data::NoProgress;

    #[test]
    fn two_clusters_and_one_stray() {
        // Cluster a at 0..=3, cluster b at 100..=102, and one "b" sitting inside cluster a.
        let points = [0.0f32, 1.0, 2.0, 3.0, 100.0, 101.0, 102.0, 1.5];
        let labels: Vec<String> = ["a", "a", "a", "a", "b", "b", "b", "b"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let view = LatentView::new(&points, 8, 1).unwrap();
        let graph = all_nearest(&view, 2, Metric::Euclidean, &NoProgress).unwrap();
        let report = neighbour_purity(&graph, &labels, 2).unwrap();
        // Neighbours (k = 2, ties by index), worked by hand:
        // a: 0 {1,7} ½, 1 {7,0} ½, 2 {7,1} ½, 3 {2,7} ½ → 0.5.
        // b: 100 {101,102} 1, 101 {100,102} 1, 102 {101,100} 1, 1.5 {1,2} 0 → 0.75.
        assert!(
            (report.per_label["a"].purity - 0.5).abs() < 1e-12,
            "{report:?}"
        );
        assert!((report.per_label["b"].purity - 0.75).abs() < 1e-12);
        assert!((report.overall - 0.625).abs() < 1e-12);
        assert_eq!(report.per_label["b"].count, 4);
        assert!((report.per_label["a"].chance - 3.0 / 7.0).abs() < 1e-12);
        assert!(neighbour_purity(&graph, &labels[..3], 2).is_err());
        assert!(neighbour_purity(&graph, &labels, 3).is_err());
    }
}
