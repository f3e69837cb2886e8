//! Latent-space anomaly scores from a k-nearest-neighbour graph: the distance to the k-th
//! neighbour and the local outlier factor (Breunig et al. 2000). Higher = more anomalous.

use crate::error::{Error, Result};
use crate::knn::KnnGraph;

/// Added to mean reachability distances before inverting them, as scikit-learn does, so that
/// duplicated latents (reachability 0) give a large finite density instead of infinity.
const DENSITY_EPSILON: f64 = 1e-10;

/// Checks that `graph` is internally consistent and can supply `k` neighbours per point.
fn check_graph(graph: &KnnGraph, k: usize) -> Result<()> {
    if graph.indices.len() != graph.n * graph.k || graph.distances.len() != graph.n * graph.k {
        return Err(Error::Shape {
            what: "kNN graph".to_string(),
            len: graph.indices.len(),
            rows: graph.n,
            cols: graph.k,
        });
    }
    if k == 0 || k > graph.k {
        return Err(Error::InvalidK {
            k,
            reason: format!("the kNN graph holds {} neighbours per point", graph.k),
        });
    }
    if let Some(&bad) = graph.indices.iter().find(|&&j| j >= graph.n) {
        return Err(Error::InvalidParameter {
            name: "kNN graph neighbour index".to_string(),
            value: bad.to_string(),
            reason: format!("only {} points", graph.n),
        });
    }
    Ok(())
}

/// Distance from each point to its k-th nearest neighbour, using the first `k` columns of
/// `graph` (so one graph built with the largest k serves every smaller k).
///
/// Errors if `k` is 0 or larger than the graph's k, or the graph is inconsistent.
pub fn knn_distance_scores(graph: &KnnGraph, k: usize) -> Result<Vec<f64>> {
    check_graph(graph, k)?;
    Ok((0..graph.n)
        .map(|i| graph.neighbour_distances(i)[k - 1] as f64)
        .collect())
}

/// Local outlier factor of every point with `k` neighbours (the first `k` columns of `graph`).
///
/// Standard definition: `reach(p, o) = max(k-distance(o), d(p, o))`,
/// `lrd(p) = 1 / mean_{o ∈ N_k(p)} reach(p, o)`, `LOF(p) = mean_{o ∈ N_k(p)} lrd(o) / lrd(p)`.
/// `N_k(p)` is exactly the k graph neighbours (ties at the k-distance are not expanded, as in
/// scikit-learn). About 1 inside a cluster, well above 1 for a point in a sparser region than its
/// neighbours.
///
/// Errors if `k` is 0 or larger than the graph's k, or the graph is inconsistent.
pub fn local_outlier_factor(graph: &KnnGraph, k: usize) -> Result<Vec<f64>> {
    let (_, lrd) = reachability_densities(graph, k)?;
    Ok((0..graph.n)
        .map(|p| {
            let neighbour_lrd = graph.neighbours(p)[..k]
                .iter()
                .map(|&o| lrd[o])
                .sum::<f64>()
                / k as f64;
            neighbour_lrd / lrd[p]
        })
        .collect())
}

/// The k-distance and the local reachability density of every point of `graph` (see
/// [`local_outlier_factor`]): what a new point's LOF against these points needs
/// ([`outlier_factor_against`]).
pub fn reachability_densities(graph: &KnnGraph, k: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    let k_distance = knn_distance_scores(graph, k)?;
    let lrd: Vec<f64> = (0..graph.n)
        .map(|p| {
            let neighbours = &graph.neighbours(p)[..k];
            let distances = &graph.neighbour_distances(p)[..k];
            let mean_reach = neighbours
                .iter()
                .zip(distances)
                .map(|(&o, &d)| k_distance[o].max(d as f64))
                .sum::<f64>()
                / k as f64;
            1.0 / (mean_reach + DENSITY_EPSILON)
        })
        .collect();
    Ok((k_distance, lrd))
}

/// LOF of a new point against reference points whose k-distances and densities are
/// `k_distance` and `lrd` ([`reachability_densities`]), given the point's k nearest references
/// `neighbours` as (reference index, distance): the same formula as [`local_outlier_factor`],
/// with the point itself outside the reference set.
pub fn outlier_factor_against(neighbours: &[(usize, f64)], k_distance: &[f64], lrd: &[f64]) -> f64 {
    if neighbours.is_empty() {
        return f64::NAN;
    }
    let k = neighbours.len() as f64;
    let mean_reach = neighbours
        .iter()
        .map(|&(o, d)| k_distance[o].max(d))
        .sum::<f64>()
        / k;
    let own = 1.0 / (mean_reach + DENSITY_EPSILON);
    neighbours.iter().map(|&(o, _)| lrd[o]).sum::<f64>() / k / own
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lof_against_a_reference_matches_the_graph_formula() {
        // For a point of the graph, its LOF from its own graph neighbours equals the in-graph LOF.
        use crate::knn::{LatentView, Metric, all_nearest};
        let data: Vec<f32> = (0..40).map(|i| ((i * 37) % 23) as f32 * 0.3).collect();
        let view = LatentView::new(&data, 20, 2).unwrap();
        let graph = all_nearest(&view, 4, Metric::Euclidean, &oddcube_data::NoProgress).unwrap();
        let lof = local_outlier_factor(&graph, 4).unwrap();
        let (kd, lrd) = reachability_densities(&graph, 4).unwrap();
        for (p, &expected) in lof.iter().enumerate() {
            let nb: Vec<(usize, f64)> = graph.neighbours(p)[..4]
                .iter()
                .zip(&graph.neighbour_distances(p)[..4])
                .map(|(&o, &d)| (o, f64::from(d)))
                .collect();
            assert!((outlier_factor_against(&nb, &kd, &lrd) - expected).abs() < 1e-9);
        }
        assert!(outlier_factor_against(&[], &kd, &lrd).is_nan());
    }
    use crate::knn::{LatentView, Metric, all_nearest};
    use oddcube_data::NoProgress;

    fn line_graph(points: &[f32], k: usize) -> KnnGraph {
        let view = LatentView::new(points, points.len(), 1).unwrap();
        all_nearest(&view, k, Metric::Euclidean, &NoProgress).unwrap()
    }

    #[test]
    fn hand_computed_lof_on_a_line() {
        // Points 0, 1, 2, 3 and an outlier at 10, k = 2 (worked by hand):
        // k-distances 2, 1, 1, 2, 8; mean reachabilities 1.5 (×4) and 7.5 → lrd 2/3 and 2/15;
        // LOF = 1 for the cluster and (2/3)/(2/15) = 5 for the outlier. scikit-learn's
        // LocalOutlierFactor(n_neighbors=2) gives negative_outlier_factor_ = -[1, 1, 1, 1, 5].
        let graph = line_graph(&[0.0, 1.0, 2.0, 3.0, 10.0], 2);
        let kd = knn_distance_scores(&graph, 2).unwrap();
        assert_eq!(kd, vec![2.0, 1.0, 1.0, 2.0, 8.0]);
        let lof = local_outlier_factor(&graph, 2).unwrap();
        for (got, want) in lof.iter().zip([1.0, 1.0, 1.0, 1.0, 5.0]) {
            assert!((got - want).abs() < 1e-8, "{lof:?}");
        }
    }

    #[test]
    fn planted_outlier_scores_highest_in_2d() {
        // A 6×6 grid with one point far off in a corner.
        let mut points = Vec::new();
        for i in 0..6 {
            for j in 0..6 {
                points.extend_from_slice(&[i as f32, j as f32]);
            }
        }
        points.extend_from_slice(&[20.0, 20.0]);
        let view = LatentView::new(&points, 37, 2).unwrap();
        let graph = all_nearest(&view, 5, Metric::Euclidean, &NoProgress).unwrap();
        for scores in [
            local_outlier_factor(&graph, 5).unwrap(),
            knn_distance_scores(&graph, 3).unwrap(),
        ] {
            let top = (0..37)
                .max_by(|&a, &b| scores[a].total_cmp(&scores[b]))
                .unwrap();
            assert_eq!(top, 36);
        }
    }

    #[test]
    fn duplicates_stay_finite_and_bad_k_errors() {
        let graph = line_graph(&[1.0, 1.0, 1.0, 5.0], 2);
        assert!(
            local_outlier_factor(&graph, 2)
                .unwrap()
                .iter()
                .all(|v| v.is_finite())
        );
        assert!(local_outlier_factor(&graph, 3).is_err());
        assert!(knn_distance_scores(&graph, 0).is_err());
        let mut broken = graph.clone();
        broken.indices[0] = 99;
        assert!(local_outlier_factor(&broken, 1).is_err());
    }
}
