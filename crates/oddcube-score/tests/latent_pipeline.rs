//! End-to-end check of the model-independent scoring chain as the CLI wires it: latents written
//! to `latents.npy`, reopened memory-mapped, kNN graph, LOF / kNN-distance scores, p-values and
//! BH calls, neighbour purity, and the evaluation table against a labels CSV.

use std::collections::BTreeSet;

use oddcube_data::NoProgress;
use oddcube_score::evaluate::evaluate;
use oddcube_score::fdr::{benjamini_hochberg, empirical_p_values};
use oddcube_score::knn::{Metric, all_nearest, nearest_to};
use oddcube_score::latents::{Latents, write_npy_f32};
use oddcube_score::lof::{knn_distance_scores, local_outlier_factor};
use oddcube_score::purity::neighbour_purity;
use oddcube_score::truth::{align_labels, read_labels_csv};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

const DIM: usize = 8;
const NORMAL: usize = 300;
const ODD: usize = 6;

#[test]
fn planted_anomalies_are_found_and_evaluated() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    // 300 normal galaxies in one Gaussian cloud; 6 "odd" ones scattered far outside it.
    let mut data = Vec::new();
    let mut ids = Vec::new();
    for i in 0..NORMAL + ODD {
        let offset = if i < NORMAL {
            0.0
        } else {
            8.0 + 2.0 * (i - NORMAL) as f32
        };
        for d in 0..DIM {
            let sign = if (i + d) % 2 == 0 { 1.0 } else { -1.0 };
            data.push(rng.sample::<f32, _>(StandardNormal) + sign * offset);
        }
        ids.push(format!("9000-{i}"));
    }
    let npy = dir.path().join("latents.npy");
    write_npy_f32(&npy, &data, ids.len(), DIM).unwrap();
    let latents = Latents::open(&npy).unwrap();
    let view = latents.view();
    assert_eq!((view.n(), view.dim()), (NORMAL + ODD, DIM));

    let graph = all_nearest(&view, 10, Metric::Euclidean, &NoProgress).unwrap();
    let lof = local_outlier_factor(&graph, 10).unwrap();
    let kdist = knn_distance_scores(&graph, 5).unwrap();
    assert_eq!(
        nearest_to(&view, 0, 10, Metric::Euclidean).unwrap().len(),
        10
    );

    // Conformal-style calls: p-values of held-out galaxies (the last 50 normals and the six odd
    // ones) against a calibration set of 250 normals; BH at 5 % flags the planted six. (With
    // n_ref calibration scores no p-value is below 1/(n_ref + 1), so BH can only call r of N
    // tests when r/N·q ≥ 1/(n_ref + 1): the calibration set must not be small next to N.)
    let calibration = &lof[..250];
    let tested = &lof[250..];
    let p = empirical_p_values(tested, calibration).unwrap();
    let bh = benjamini_hochberg(&p, 0.05).unwrap();
    let flagged: Vec<usize> = (0..p.len())
        .filter(|&i| bh.discoveries[i])
        .map(|i| i + 250)
        .collect();
    assert_eq!(flagged, (NORMAL..NORMAL + ODD).collect::<Vec<_>>());

    // Labels from CSV: a few normals left unlabelled, the odd ones split into two kinds.
    let mut csv = String::from("plateifu,truth\n");
    for (i, id) in ids.iter().enumerate() {
        let label = if i < NORMAL {
            if i % 50 == 0 { "" } else { "normal" }
        } else if i % 2 == 0 {
            "seyfert"
        } else {
            "blueberry"
        };
        csv.push_str(&format!("{id},{label}\n"));
    }
    let csv_path = dir.path().join("labels.csv");
    std::fs::write(&csv_path, csv).unwrap();
    let labels = align_labels(
        &ids,
        &read_labels_csv(&csv_path, "plateifu", "truth").unwrap(),
    );
    let normals: BTreeSet<String> = ["normal".to_string()].into();
    let columns = vec![
        ("lof".to_string(), lof.clone()),
        ("knn_distance".to_string(), kdist),
    ];
    let evaluation = evaluate(&columns, &labels, &normals).unwrap();
    assert_eq!(evaluation.n_unlabelled, 6);
    assert_eq!(evaluation.rows.len(), 6);
    for row in &evaluation.rows {
        assert_eq!(row.metrics.auroc, 1.0, "{row:?}");
        assert_eq!(row.metrics.average_precision, 1.0);
        assert_eq!(row.metrics.precision_at_n_positive, 1.0);
    }

    // Purity: normals' neighbours are normal; the odd galaxies sit apart from each other.
    let purity_labels: Vec<String> = labels
        .iter()
        .map(|l| l.clone().unwrap_or_else(|| "normal".into()))
        .collect();
    let purity = neighbour_purity(&graph, &purity_labels, 5).unwrap();
    assert!(purity.per_label["normal"].purity > 0.99);
    assert!(purity.per_label["seyfert"].purity < 0.5);
}
