//! Scale-out: a pipeline split into 3 shards (`--shard i/3`) and joined with `oddcube merge`
//! gives the same dataset and the same results as the unsharded run; incomplete part sets are
//! refused.

use std::path::Path;

mod common;

use assert_cmd::Command;

/// The binary without Slurm variables (see `common::oddcube`), quiet.
fn oddcube() -> Command {
    let mut cmd = common::oddcube();
    cmd.arg("--quiet");
    cmd
}

/// Runs a quiet `oddcube` and asserts success.
fn run(args: &[&str]) {
    let mut words = vec!["--quiet"];
    words.extend_from_slice(args);
    common::run_ok(&words);
}

fn bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Asserts two values agree to `rel` relative (or 1e-9 absolute) precision.
fn close(a: f64, b: f64, rel: f64, what: &str) {
    let ok = (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-9 + rel * a.abs().max(b.abs());
    assert!(ok, "{what}: {a} vs {b}");
}

/// Sharded and unsharded scoring must agree. Ranks, flags, names and the set of stored residual
/// maps must be identical; floating-point values may differ in the last bits, because candle's
/// CPU matrix kernels block the work by batch size, and a shard's batches hold different
/// galaxies. 1e-5 relative is far below any difference that could change a ranking decision
/// (the values themselves agree to ~1e-8 here).
fn assert_same_results(whole: &Path, merged: &Path) {
    use oddcube_score::results::{Column, Residuals, Results};
    let (a, b) = (
        Results::open(whole).unwrap(),
        Results::open(merged).unwrap(),
    );
    assert_eq!(a.catalog.len(), b.catalog.len());
    assert_eq!(a.catalog.columns.len(), b.catalog.columns.len());
    for ((name_a, col_a), (name_b, col_b)) in a.catalog.columns.iter().zip(&b.catalog.columns) {
        assert_eq!(name_a, name_b);
        match (col_a, col_b) {
            // `score` (and each restart's `score_seed_S`, which it averages) is a z-score: a
            // difference of latents in the 8th digit moves it by ~1e-7 wherever it is,
            // including near 0, so it gets an absolute tolerance in σ units.
            (Column::F64(x), Column::F64(y)) if name_a.starts_with("score") => {
                for (i, (u, v)) in x.iter().zip(y).enumerate() {
                    let ok = (u.is_nan() && v.is_nan()) || (u - v).abs() <= 1e-5;
                    assert!(ok, "score row {i}: {u} vs {v}");
                }
            }
            (Column::F64(x), Column::F64(y)) => {
                for (i, (u, v)) in x.iter().zip(y).enumerate() {
                    close(*u, *v, 1e-5, &format!("{name_a} row {i}"));
                }
            }
            _ => assert_eq!(col_a, col_b, "column {name_a}"),
        }
    }
    for (i, (u, v)) in a.latents.iter().zip(&b.latents).enumerate() {
        close(f64::from(*u), f64::from(*v), 1e-4, &format!("latent {i}"));
    }
    let (ra, rb) = (
        Residuals::open(whole).unwrap().unwrap(),
        Residuals::open(merged).unwrap().unwrap(),
    );
    assert_eq!(
        ra.plateifus, rb.plateifus,
        "residual maps stored for different galaxies"
    );
    for i in 0..ra.len() {
        let (ga, gb) = (ra.galaxy(i).unwrap(), rb.galaxy(i).unwrap());
        assert_eq!(ga.x, gb.x);
        assert_eq!(ga.w, gb.w);
        for (u, v) in ga.xhat.iter().zip(gb.xhat) {
            close(f64::from(*u), f64::from(*v), 1e-4, "reconstruction");
        }
    }
}

#[test]
fn sharded_pipeline_equals_unsharded() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |name: &str| tmp.path().join(name).display().to_string();
    run(&[
        "simulate",
        "--out",
        &p("survey"),
        "--galaxies",
        "18",
        "--seed",
        "7",
        "--anomaly-fraction",
        "0.2",
    ]);

    // Ingest: whole vs 3 shards + merge.
    run(&[
        "ingest",
        &p("survey"),
        "--out",
        &p("dataset"),
        "--size",
        "16",
    ]);
    for i in 0..3 {
        run(&[
            "ingest",
            &p("survey"),
            "--out",
            &p("dataset-parts"),
            "--size",
            "16",
            "--shard",
            &format!("{i}/3"),
        ]);
    }
    run(&["merge", &p("dataset-parts"), "--out", &p("dataset-merged")]);
    for file in [
        "cubes.safetensors",
        "galaxies.csv",
        "galaxies.parquet",
        "skipped.csv",
    ] {
        assert!(
            bytes(&tmp.path().join("dataset").join(file))
                == bytes(&tmp.path().join("dataset-merged").join(file)),
            "{file} differs between the unsharded and the merged dataset"
        );
    }

    // Score: whole vs 3 shards + merge, with one model (trained with the default three
    // restarts, every run a member whatever its loss after one epoch: `score` is their
    // ensemble's, which each shard computes and the merge rebuilds).
    run(&[
        "train",
        "--data",
        &p("dataset"),
        "--out",
        &p("model"),
        "--epochs",
        "1",
        "--seed",
        "3",
        "--member-margin",
        "inf",
    ]);
    run(&[
        "score",
        "--model",
        &p("model"),
        "--data",
        &p("dataset"),
        "--out",
        &p("results"),
        "--residuals",
        "top:4",
    ]);
    for i in 0..3 {
        run(&[
            "score",
            "--model",
            &p("model"),
            "--data",
            &p("dataset"),
            "--out",
            &p("results-parts"),
            "--residuals",
            "top:4",
            "--shard",
            &format!("{i}/3"),
        ]);
    }
    run(&["merge", &p("results-parts"), "--out", &p("results-merged")]);
    assert_same_results(
        &tmp.path().join("results"),
        &tmp.path().join("results-merged"),
    );
    let merged = oddcube_score::results::Results::open(&tmp.path().join("results-merged")).unwrap();
    assert_eq!(merged.manifest.ensemble_seeds, [3, 4, 5]);
    assert!(merged.catalog.f64("score_seed_4").is_some());
    // The merged maps are the three runs' consensus, as scored whole (same galaxies, same
    // order, f16 values bit for bit or within one f16 step where a latent's last digits moved).
    let read_maps = |name: &str| {
        oddcube_score::anomaly_map::AnomalyMaps::read(&tmp.path().join(name))
            .unwrap()
            .unwrap()
    };
    let (whole_maps, merged_maps) = (read_maps("results"), read_maps("results-merged"));
    assert_eq!((whole_maps.runs, merged_maps.runs), (3, 3));
    assert_eq!(whole_maps.plateifus, merged_maps.plateifus);
    for (p, (u, v)) in whole_maps.value.iter().zip(&merged_maps.value).enumerate() {
        let ok = (u.is_nan() && v.is_nan()) || (u - v).abs() <= u.abs() / 1024.0 + 6e-8;
        assert!(ok, "map value {p}: {u} vs {v}");
    }

    // Labels feed back: the top galaxy marked as an artefact is demoted below rank 1.
    let top = {
        let r = oddcube_score::results::Results::open(&tmp.path().join("results")).unwrap();
        let rank = r.catalog.u32("rank").unwrap().to_vec();
        let names = r.catalog.str("plateifu").unwrap().to_vec();
        names[rank.iter().position(|&k| k == 1).unwrap()].clone()
    };
    std::fs::write(
        tmp.path().join("labels.csv"),
        format!("plateifu,label,time\n{top},artefact,2026-11-28T00:00:00Z\n"),
    )
    .unwrap();
    run(&[
        "score",
        "--model",
        &p("model"),
        "--data",
        &p("dataset"),
        "--out",
        &p("results-labelled"),
        "--labels",
        &p("labels.csv"),
    ]);
    let r = oddcube_score::results::Results::open(&tmp.path().join("results-labelled")).unwrap();
    let row = r.catalog.row_of(&top).unwrap();
    assert!(
        r.catalog.u32("rank").unwrap()[row] > 1,
        "{top} marked artefact is still ranked first"
    );
    assert!(r.catalog.f64("adjusted").unwrap()[row] < r.catalog.f64("chi2").unwrap()[row]);

    // A missing part is refused with a message that names it.
    std::fs::remove_dir_all(tmp.path().join("results-parts/part-1-of-3")).unwrap();
    let out = oddcube()
        .args(["merge", &p("results-parts"), "--out", &p("x")])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("missing part-1-of-3"), "{stderr}");
}

#[test]
fn shard_defaults_come_from_slurm_array_variables() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |name: &str| tmp.path().join(name).display().to_string();
    run(&[
        "simulate",
        "--out",
        &p("survey"),
        "--galaxies",
        "6",
        "--seed",
        "1",
    ]);
    let out = oddcube()
        .args(["ingest", &p("survey"), "--out", &p("parts"), "--size", "16"])
        .env("SLURM_ARRAY_TASK_ID", "1")
        .env("SLURM_ARRAY_TASK_COUNT", "2")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(tmp.path().join("parts/part-1-of-2/manifest.json").is_file());
    assert!(!tmp.path().join("parts/part-0-of-2").exists());
}
