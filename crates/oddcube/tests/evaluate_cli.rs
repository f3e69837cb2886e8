//! `oddcube evaluate` through the binary on a small scored survey: every score column and the PCA
//! baseline judged against the simulator's truth, evaluation.json with the normal labels taken
//! from the truth's is_anomaly column, and latent neighbour purity.

mod common;

use common::{run_ok, s, scored_survey};

#[test]
fn evaluate_judges_every_score_next_to_the_pca_baseline() {
    let survey = scored_survey();
    let (sim, res) = (&survey.sim, &survey.res);
    // evaluate against the simulator's truth: every score, the PCA baseline, evaluation.json.
    let table = run_ok(&["evaluate", s(res), "--labels", s(&sim.join("truth.csv"))]);
    for col in [
        "recon",
        "chi2",
        "knn_dist",
        "lof",
        "pca_recon",
        "overall",
        "seyfert",
    ] {
        assert!(table.contains(col), "{col} missing from\n{table}");
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(res.join("evaluation.json")).unwrap())
            .unwrap();
    assert_eq!(
        report["evaluation"]["normal_labels"],
        serde_json::json!(["retired", "star_forming"])
    );
    assert!(report["purity"]["overall"].as_f64().unwrap() > 0.0);
}
