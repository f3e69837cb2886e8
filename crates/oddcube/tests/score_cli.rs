//! `oddcube score` end to end through the binary on a small simulated survey: the RESULTS
//! artifacts per their contract, two shards joined by the library's merge equal to the unsharded
//! run, and the scores' behaviour under the 8 flips/rotations of the input.

mod common;

use common::{SURVEY_GALAXIES, SURVEY_LATENT, run_ok, scored_survey};
use oddcube::scorer::ModelScorer;
use oddcube_data::NoProgress;
use oddcube_data::dataset::Dataset;
use oddcube_model::Model;
use oddcube_model::augment::d4_transformed;
use oddcube_score::merge::merge_results;
use oddcube_score::results::{Residuals, Results};
use oddcube_score::score::score_galaxies;

/// Spearman rank correlation (no ties expected in continuous scores).
fn spearman(a: &[f64], b: &[f64]) -> f64 {
    let ranks = |v: &[f64]| {
        let mut order: Vec<usize> = (0..v.len()).collect();
        order.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
        let mut r = vec![0.0; v.len()];
        for (k, &i) in order.iter().enumerate() {
            r[i] = k as f64;
        }
        r
    };
    let (ra, rb) = (ranks(a), ranks(b));
    let n = a.len() as f64;
    let d2: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - y).powi(2)).sum();
    1.0 - 6.0 * d2 / (n * (n * n - 1.0))
}

#[test]
fn score_writes_the_results_contract_and_merged_shards_equal_it() {
    let survey = scored_survey();
    let (tmp, res) = (&survey.tmp, &survey.res);
    // The artifacts, per the contract.
    let stdout = &survey.score_stdout;
    assert!(stdout.contains("rank"), "{stdout}");
    let results = Results::open(res).unwrap();
    let catalog = &results.catalog;
    assert_eq!(catalog.len(), SURVEY_GALAXIES);
    assert_eq!(results.latent_dim, SURVEY_LATENT);
    assert!(results.manifest.population_final);
    let names: Vec<&str> = catalog.columns.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names[..24],
        [
            "plateifu",
            "mangaid",
            "ra",
            "dec",
            "z",
            "ifu_size",
            "n_good",
            "score",
            "recon",
            "chi2",
            "global",
            "pooled",
            "local",
            "knn_dist",
            "lof",
            "pvalue",
            "qvalue",
            "fdr_flag",
            "rank",
            "region_dx",
            "region_dy",
            "region_area",
            "region_line",
            "n_pixels"
        ]
    );
    assert_eq!(catalog.line_columns().len(), 19);
    for row in 0..SURVEY_GALAXIES {
        let share: f64 = catalog.line_columns().iter().map(|(_, v)| v[row]).sum();
        assert!(
            (share - 1.0).abs() < 1e-9,
            "row {row}: line shares sum to {share}"
        );
    }
    let mut ranks = catalog.u32("rank").unwrap().to_vec();
    ranks.sort_unstable();
    assert_eq!(ranks, (1..=SURVEY_GALAXIES as u32).collect::<Vec<u32>>());
    let (q, flag) = (
        catalog.f64("qvalue").unwrap(),
        catalog.bool("fdr_flag").unwrap(),
    );
    assert!(q.iter().zip(flag).all(|(q, f)| (*q <= 0.05) == *f));
    let residuals = Residuals::open(res).unwrap().unwrap();
    assert_eq!(residuals.len(), 5);
    for (i, p) in residuals.plateifus.iter().enumerate() {
        assert_eq!(
            catalog.u32("rank").unwrap()[catalog.row_of(p).unwrap()],
            i as u32 + 1
        );
    }

    // Sharded scoring joined by the library's merge reproduces the unsharded catalogue.
    let parts_dir = tmp.path().join("parts");
    for shard in ["0/2", "1/2"] {
        run_ok(&survey.score_args(&parts_dir, &["--shard", shard, "--residuals", "none"]));
    }
    let parts: Vec<Results> = ["part-0-of-2", "part-1-of-2"]
        .iter()
        .map(|p| Results::open(&parts_dir.join(p)).unwrap())
        .collect();
    assert!(
        parts.iter().all(|p| !p.manifest.population_final
            && p.catalog.u32("rank").unwrap().iter().all(|&r| r == 0))
    );
    let merged_dir = tmp.path().join("merged");
    let report = merge_results(&parts_dir, &merged_dir, "test", &NoProgress).unwrap();
    assert_eq!((report.n_galaxies, report.n_parts), (SURVEY_GALAXIES, 2));
    let merged = Results::open(&merged_dir).unwrap();
    assert!(merged.manifest.population_final);
    assert_eq!(merged.latents, results.latents);
    assert_eq!(
        format!("{:?}", merged.catalog.columns),
        format!("{:?}", catalog.columns)
    );

    // Residual maps: a clean merge carries the global top 3 over and warns about nothing; when
    // the part holding one of them lost its file, the merge still succeeds and names that part.
    let parts_dir = tmp.path().join("parts-with-residuals");
    for shard in ["0/2", "1/2"] {
        run_ok(&survey.score_args(&parts_dir, &["--shard", shard, "--residuals", "top:3"]));
    }
    let clean_dir = tmp.path().join("merged-2");
    let clean = merge_results(&parts_dir, &clean_dir, "test", &NoProgress).unwrap();
    assert_eq!(clean.n_residuals, 3);
    assert!(clean.warnings.is_empty(), "{:?}", clean.warnings);
    let top = Residuals::open(&clean_dir).unwrap().unwrap().plateifus[0].clone();
    let lost = ["part-0-of-2", "part-1-of-2"]
        .iter()
        .map(|p| parts_dir.join(p))
        .find(|p| {
            Residuals::open(p)
                .unwrap()
                .is_some_and(|r| r.index_of(&top).is_some())
        })
        .unwrap();
    std::fs::remove_file(lost.join(oddcube_score::results::RESIDUALS_FILE)).unwrap();
    let report = merge_results(
        &parts_dir,
        &tmp.path().join("merged-3"),
        "test",
        &NoProgress,
    )
    .unwrap();
    assert!(report.n_residuals < 3);
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    assert!(
        report.warnings[0].contains(&lost.display().to_string())
            && report.warnings[0].contains("in no part"),
        "{:?}",
        report.warnings
    );
}

#[test]
fn scores_survive_flips_and_rotations() {
    let survey = scored_survey();
    let (data, model) = (&survey.data, &survey.model);
    // D4: the network is not exactly equivariant (its convolutions and learnt weights have no
    // built-in symmetry; training only sees flipped copies), so scores of flipped/rotated
    // galaxies differ a little. A galaxy's anomaly must not hinge on its orientation, so the
    // ranking must survive: Spearman > 0.98 (measured ≥ 0.999 here; the exact invariance of the
    // scoring arithmetic itself is a unit test in oddcube-score's score.rs).
    let dataset = Dataset::open(data).unwrap();
    let device = oddcube_model::select_device("cpu").unwrap();
    let adapter = ModelScorer {
        model: Model::load(model, &device).unwrap(),
        batch: 16,
    };
    let rows: Vec<usize> = (0..dataset.galaxies.len()).collect();
    let lines = dataset.manifest.lines.lines.clone();
    let base = score_galaxies(
        &adapter,
        &dataset.cubes,
        &dataset.galaxies,
        &lines,
        &rows,
        &oddcube_score::score::MapSettings::default(),
        &oddcube_data::NoProgress,
    )
    .unwrap();
    let size = dataset.cubes.size;
    for op in 1..8 {
        let mut cubes = dataset.cubes.clone();
        cubes.x = d4_transformed(op, size, &dataset.cubes.x);
        cubes.w = d4_transformed(op, size, &dataset.cubes.w);
        let t = score_galaxies(
            &adapter,
            &cubes,
            &dataset.galaxies,
            &lines,
            &rows,
            &oddcube_score::score::MapSettings::default(),
            &oddcube_data::NoProgress,
        )
        .unwrap();
        for col in ["recon", "chi2"] {
            let rho = spearman(base.catalog.f64(col).unwrap(), t.catalog.f64(col).unwrap());
            println!("D4 op {op}: Spearman({col}) = {rho:.4}");
            assert!(
                rho > 0.98,
                "op {op}: {col} ranking changed under a flip/rotation (Spearman {rho})"
            );
        }
    }
}
