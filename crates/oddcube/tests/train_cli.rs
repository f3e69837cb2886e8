//! `oddcube train` and `oddcube bench` end to end on a tiny synthetic dataset.

use std::path::Path;

mod common;

use common::oddcube;
use oddcube_data::dataset::{Dataset, FORMAT, GalaxyRecord, Manifest, Normalisation};
use oddcube_data::preprocess::Stretch;
use oddcube_data::{LineSet, MaskPolicy, Shard};
use oddcube_model::synthetic::synthetic_cubes;

/// Writes a 16-galaxy, 3-line, 8×8 dataset built from synthetic discs.
fn write_dataset(dir: &Path) {
    let lines = LineSet::parse("Hb-4862,OIII-5008,Ha-6564").unwrap();
    let (cubes, names) = synthetic_cubes(16, lines.len(), 8, 21);
    let galaxies: Vec<GalaxyRecord> = names
        .iter()
        .map(|name| GalaxyRecord {
            plateifu: name.clone(),
            mangaid: String::new(),
            ra: f64::NAN,
            dec: f64::NAN,
            z: f64::NAN,
            ifu_size: 19,
            grid_size: 32,
            box_size: 32,
            scale: 1.0,
            n_good: 40,
            source: format!("synthetic/{name}.fits.gz"),
            notes: String::new(),
            psf_fwhm: f64::NAN,
            ..Default::default()
        })
        .collect();
    let manifest = Manifest {
        format: FORMAT.to_string(),
        oddcube_version: "test".to_string(),
        lines,
        size: 8,
        n_galaxies: cubes.n,
        mask_policy: MaskPolicy::Strict,
        normalisation: Normalisation {
            method: "percentile-of-reference".to_string(),
            reference: "Ha-6564".to_string(),
            percentile: 99.0,
            stretch: Stretch::None,
        },
        shard: Shard::ALL,
        sources: Vec::new(),
        n_skipped: 0,
        created_by: "train_cli test".to_string(),
    };
    Dataset::write(dir, &cubes, &galaxies, &manifest, &[]).unwrap();
}

/// Fails with the command's stderr unless it succeeded.
fn assert_ok(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn train_writes_a_model_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("dataset");
    let model = tmp.path().join("model");
    write_dataset(&data);
    let args = |extra: &[&str]| {
        let mut v = vec![
            "train",
            "--data",
            data.to_str().unwrap(),
            "--out",
            model.to_str().unwrap(),
        ];
        v.extend_from_slice(extra);
        v.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let out = oddcube()
        .args(args(&[
            "--epochs",
            "2",
            "--batch",
            "4",
            "--model",
            "vae",
            "--val-fraction",
            "0.25",
            "--jobs",
            "1",
        ]))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("baseline"), "{stdout}");
    for file in [
        "config.toml",
        "best.safetensors",
        "last.ckpt.safetensors",
        "history.csv",
    ] {
        assert!(model.join(file).exists(), "{file} missing");
    }
    let history = std::fs::read_to_string(model.join("history.csv")).unwrap();
    assert_eq!(history.lines().count(), 3, "{history}");
    assert!(history.starts_with("epoch,train_loss,val_loss,lr,seconds"));
    let config = std::fs::read_to_string(model.join("config.toml")).unwrap();
    assert!(
        config.contains("Ha-6564") && config.contains("manifest_hash"),
        "{config}"
    );

    // Training into an existing model needs --resume.
    let again = oddcube().args(args(&["--epochs", "2"])).output().unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--resume"));

    // Resuming with a larger epoch budget adds one epoch.
    let resumed = oddcube()
        .args(args(&["--resume", "--epochs", "3"]))
        .output()
        .unwrap();
    assert_ok(&resumed);
    let history = std::fs::read_to_string(model.join("history.csv")).unwrap();
    assert_eq!(history.lines().count(), 4, "{history}");
}

#[test]
fn unavailable_devices_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("dataset");
    write_dataset(&data);
    let model = tmp.path().join("model");
    let run = |device: &str| {
        oddcube()
            .args([
                "train",
                "--data",
                data.to_str().unwrap(),
                "--out",
                model.to_str().unwrap(),
                "--device",
                device,
            ])
            .output()
            .unwrap()
    };
    let wgpu = run("wgpu");
    assert!(!wgpu.status.success());
    assert!(String::from_utf8_lossy(&wgpu.stderr).contains("no wgpu backend"));
    if !cfg!(feature = "cuda") {
        let cuda = run("cuda");
        assert!(!cuda.status.success());
        assert!(String::from_utf8_lossy(&cuda.stderr).contains("without CUDA"));
    }
    let missing = oddcube()
        .args([
            "train",
            "--data",
            tmp.path().join("nope").to_str().unwrap(),
            "--out",
            model.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("nope"));
}

#[test]
fn bench_prints_train_and_infer_lines() {
    let out = oddcube()
        .args([
            "bench", "--lines", "2", "--batch", "1", "--steps", "1", "--warmup", "0", "--jobs", "1",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for kind in ["train: ", "infer: "] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(kind))
            .unwrap_or_else(|| panic!("no {kind} in {stdout}"));
        assert!(
            line.contains("samples/s") && line.contains("ms/step") && line.contains("GFLOP/s"),
            "{line}"
        );
    }
}

/// `--kernel reference` and `--kernel fused` train the same model: the same seed gives the same
/// losses up to float rounding, and `config.toml` records which kernel trained it.
#[test]
fn both_kernels_train_the_same_model() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("dataset");
    write_dataset(&data);
    let losses = |kernel: &str| -> Vec<f64> {
        let model = tmp.path().join(kernel);
        let out = oddcube()
            .args([
                "train",
                "--data",
                data.to_str().unwrap(),
                "--out",
                model.to_str().unwrap(),
                "--epochs",
                "2",
                "--batch",
                "4",
                "--jobs",
                "1",
                "--no-augment",
                "--kernel",
                kernel,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let config = std::fs::read_to_string(model.join("config.toml")).unwrap();
        assert!(config.contains(&format!("cell = \"{kernel}\"")), "{config}");
        let history = std::fs::read_to_string(model.join("history.csv")).unwrap();
        oddcube_data::csv::parse(&history)
            .into_iter()
            .skip(1)
            .flat_map(|row| {
                row.into_iter()
                    .skip(1)
                    .take(2)
                    .map(|v| v.parse::<f64>().unwrap())
            })
            .collect()
    };
    let (fused, reference) = (losses("fused"), losses("reference"));
    assert_eq!(fused.len(), 4);
    for (f, r) in fused.iter().zip(&reference) {
        assert!(
            (f - r).abs() <= 1e-3 * r.abs(),
            "{fused:?} vs {reference:?}"
        );
    }
    let bad = oddcube()
        .args(["bench", "--kernel", "fastest"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("fastest"));
}

#[test]
fn restarts_keep_the_run_with_the_lowest_validation_loss() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("dataset");
    let model = tmp.path().join("model");
    write_dataset(&data);
    let train = |epochs: &str, extra: &[&str]| {
        oddcube()
            .args(["train", "--data"])
            .arg(&data)
            .arg("--out")
            .arg(&model)
            .args(["--epochs", epochs, "--batch", "4", "--val-fraction", "0.25"])
            .args(["--jobs", "1", "--seed", "7"])
            .args(extra)
            .output()
            .unwrap()
    };
    // Every run a member whatever its loss (after two epochs on 16 galaxies the losses may
    // differ by more than the default margin; the margin has its own test below).
    let out = train("2", &["--restarts", "3", "--member-margin", "inf"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("restarts, best loss against the baseline"),
        "{stdout}"
    );

    // One row per seed, exactly one kept, and it is the lowest loss.
    let table = std::fs::read_to_string(model.join("restarts.csv")).unwrap();
    let rows: Vec<Vec<String>> = oddcube_data::csv::parse(&table)
        .into_iter()
        .skip(1)
        .collect();
    let seeds: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(seeds, ["7", "8", "9"], "{table}");
    let loss = |r: &Vec<String>| r[1].parse::<f64>().unwrap();
    let kept: Vec<&Vec<String>> = rows.iter().filter(|r| r[4] == "true").collect();
    assert_eq!(kept.len(), 1, "{table}");
    assert!(rows.iter().all(|r| loss(kept[0]) <= loss(r)), "{table}");

    // The model directory is the kept run, and the others are gone.
    let config = std::fs::read_to_string(model.join("config.toml")).unwrap();
    assert!(
        config.contains(&format!("seed = {}", kept[0][0])),
        "{config}"
    );
    let history = std::fs::read_to_string(model.join("history.csv")).unwrap();
    let best_val = oddcube_data::csv::parse(&history)
        .into_iter()
        .skip(1)
        .map(|r| r[2].parse::<f64>().unwrap())
        .fold(f64::INFINITY, f64::min);
    // history.csv keeps 7 significant digits.
    assert!(
        (best_val - loss(kept[0])).abs() <= 1e-6 * best_val,
        "{history}\n{table}"
    );
    for file in [
        "best.safetensors",
        "last.ckpt.safetensors",
        "calibration.json",
        "ensemble.json",
    ] {
        assert!(model.join(file).exists(), "{file} missing");
    }
    // The other runs are the restart ensemble's members, each with its own null and without
    // its resume checkpoint; no run directory is left.
    let leftovers: Vec<_> = std::fs::read_dir(&model)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(leftovers, ["members"], "{leftovers:?}");
    let others: Vec<&str> = seeds
        .iter()
        .copied()
        .filter(|s| *s != kept[0][0].as_str())
        .collect();
    for seed in &others {
        let member = model.join(format!("members/seed-{seed}"));
        for file in ["config.toml", "best.safetensors", "calibration.json"] {
            assert!(
                member.join(file).exists(),
                "{} missing",
                member.join(file).display()
            );
        }
        assert!(!member.join("last.ckpt.safetensors").exists());
    }
    assert!(
        stdout.contains("score is the mean of the 3 restarts (seeds 7, 8, 9)"),
        "{stdout}"
    );

    // Scored, `score` is the standardised mean of the three runs' scores, each run's a column.
    let results = tmp.path().join("results");
    assert_ok(&score_into(&model, &data, &results));
    let r = oddcube_score::results::Results::open(&results).unwrap();
    assert_eq!(r.manifest.ensemble_seeds, [7, 8, 9]);
    let ensemble = oddcube_score::ensemble::EnsembleNull::read(&results)
        .unwrap()
        .expect("ensemble.json copied beside the catalogue");
    let members: Vec<&[f64]> = ["7", "8", "9"]
        .iter()
        .map(|s| r.catalog.f64(&format!("score_seed_{s}")).unwrap())
        .collect();
    let (score, pvalue) = (
        r.catalog.f64("score").unwrap(),
        r.catalog.f64("pvalue").unwrap(),
    );
    for i in 0..r.catalog.len() {
        let mean = members.iter().map(|m| m[i]).sum::<f64>() / 3.0;
        let expected = (mean - ensemble.centre) / ensemble.scale;
        assert!(
            (score[i] - expected).abs() < 1e-9,
            "row {i}: {} vs {expected}",
            score[i]
        );
        assert_eq!(pvalue[i], ensemble.pvalue(score[i]));
    }
    // The runs disagree (their errors differ), so the mean is not any one of them.
    assert!(members[0] != members[1] && members[1] != members[2]);

    // The map is the runs' consensus: pixel by pixel the geometric mean of each run's own map
    // (the kept one scored alone with population p-values, the others from their directories),
    // while `local`, a component of the kept run's fused score, stays the kept run's own peak.
    let alone: Vec<oddcube_score::anomaly_map::AnomalyMaps> = seeds
        .iter()
        .map(|seed| {
            let out = tmp.path().join(format!("alone-{seed}"));
            let scored = if *seed == kept[0][0].as_str() {
                let mut command = oddcube();
                command.args(["score", "--pvalues", "population", "--model"]);
                command
                    .arg(&model)
                    .arg("--data")
                    .arg(&data)
                    .arg("--out")
                    .arg(&out);
                command.output().unwrap()
            } else {
                score_into(&model.join(format!("members/seed-{seed}")), &data, &out)
            };
            assert_ok(&scored);
            if *seed == kept[0][0].as_str() {
                let own = oddcube_score::results::Results::open(&out).unwrap();
                assert_eq!(own.catalog.f64("local"), r.catalog.f64("local"));
            }
            oddcube_score::anomaly_map::AnomalyMaps::read(&out)
                .unwrap()
                .unwrap()
        })
        .collect();
    let consensus = oddcube_score::anomaly_map::AnomalyMaps::read(&results)
        .unwrap()
        .unwrap();
    assert_eq!(consensus.plateifus, alone[0].plateifus);
    assert_eq!(
        (
            consensus.runs,
            alone.iter().map(|m| m.runs).collect::<Vec<_>>()
        ),
        (3, vec![1, 1, 1])
    );
    let mut differs_from_kept = false;
    for (p, &v) in consensus.value.iter().enumerate() {
        let runs: Vec<f64> = alone.iter().map(|m| f64::from(m.value[p])).collect();
        if runs.iter().any(|r| r.is_nan()) {
            assert!(v.is_nan(), "pixel {p}: {v} where a run has none");
            continue;
        }
        let expected = (runs.iter().map(|r| r.ln()).sum::<f64>() / 3.0).exp();
        // Every stored map is f16: relative precision 2⁻¹¹, but an absolute 2⁻²⁴ for the
        // subnormals below 2⁻¹⁴, where the relative error of a run's value grows. A geometric
        // mean averages its factors' relative errors, and the consensus is rounded once more;
        // twice that, with 6e-8 for the rounding of the result near zero.
        let relative = |r: f64| (1.0 / 2048.0f64).max(6e-8 / r.abs().max(1e-30));
        let runs_error = runs.iter().map(|&r| relative(r)).sum::<f64>() / 3.0;
        let bound = 2.0 * (expected * (runs_error + 1.0 / 2048.0) + 6e-8);
        assert!(
            (f64::from(v) - expected).abs() <= bound,
            "pixel {p}: {v} vs {expected} from {runs:?}"
        );
        let kept_run = seeds
            .iter()
            .position(|s| *s == kept[0][0].as_str())
            .unwrap();
        differs_from_kept |= v != alone[kept_run].value[p];
    }
    assert!(differs_from_kept, "the consensus map is the kept run's own");

    // Like a single run, it is not overwritten without --resume.
    let again = train("2", &["--restarts", "3"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--resume"));

    // A job stopped while the kept run's files moved up (restarts.csv is written first), with a
    // stale run directory beside it: resuming finishes the move, clears the runs and continues
    // the kept model.
    let kept_dir = model.join(format!("restart-seed-{}", kept[0][0]));
    std::fs::create_dir(&kept_dir).unwrap();
    for file in ["config.toml", "last.ckpt.safetensors"] {
        std::fs::rename(model.join(file), kept_dir.join(file)).unwrap();
    }
    std::fs::create_dir(model.join("restart-seed-99")).unwrap();
    let resumed = train("3", &["--restarts", "3", "--resume"]);
    assert_ok(&resumed);
    let history = std::fs::read_to_string(model.join("history.csv")).unwrap();
    assert_eq!(history.lines().count(), 4, "{history}");
    assert!(!kept_dir.exists() && !model.join("restart-seed-99").exists());
    // The members stay, and the ensemble's null is refitted with the kept model's.
    assert!(model.join(format!("members/seed-{}", others[0])).is_dir());
    assert!(model.join("ensemble.json").exists());
}

#[test]
fn an_ensemble_member_without_its_null_is_named_and_calibrate_restores_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("dataset");
    let model = tmp.path().join("model");
    write_dataset(&data);
    let run = |args: &[&str]| {
        oddcube()
            .args(args)
            .arg("--data")
            .arg(&data)
            .arg(if args[0] == "train" {
                "--out"
            } else {
                "--model"
            })
            .arg(&model)
            .output()
            .unwrap()
    };
    assert_ok(&run(&[
        "train",
        "--epochs",
        "1",
        "--batch",
        "4",
        "--val-fraction",
        "0.25",
        "--seed",
        "2",
        "--restarts",
        "2",
        "--member-margin",
        "inf",
    ]));
    let table = std::fs::read_to_string(model.join("restarts.csv")).unwrap();
    let member = oddcube_data::csv::parse(&table)
        .into_iter()
        .skip(1)
        .find(|row| row[4] == "false")
        .unwrap()[0]
        .clone();
    let null = model.join(format!("members/seed-{member}/calibration.json"));
    std::fs::remove_file(&null).unwrap();
    let score = |out: &str| {
        oddcube()
            .args(["score", "--model"])
            .arg(&model)
            .arg("--data")
            .arg(&data)
            .arg("--out")
            .arg(tmp.path().join(out))
            .output()
            .unwrap()
    };
    let refused = score("results");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains(&format!("seed-{member}"))
            && stderr.contains(&format!("ensemble member seed {member}"))
            && stderr.contains("oddcube calibrate"),
        "{stderr}"
    );
    // `oddcube calibrate` refits every member's null and the ensemble's.
    let calibrated = run(&["calibrate"]);
    assert_ok(&calibrated);
    let stdout = String::from_utf8_lossy(&calibrated.stdout);
    assert!(
        stdout.contains("score is the mean of the 2 restarts (seeds 2, 3)"),
        "{stdout}"
    );
    assert!(null.exists());
    assert_ok(&score("results"));
    // A model directory copied without its members is refused with what to do.
    std::fs::rename(model.join("members"), tmp.path().join("elsewhere")).unwrap();
    let copied = score("results-2");
    assert!(!copied.status.success());
    let stderr = String::from_utf8_lossy(&copied.stderr);
    assert!(
        stderr.contains("copy its members/ directory") && stderr.contains("ensemble.json"),
        "{stderr}"
    );
}

#[test]
fn a_single_run_resumes_under_the_default_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("dataset");
    let model = tmp.path().join("model");
    write_dataset(&data);
    let train = |extra: &[&str]| {
        oddcube()
            .args(["train", "--data"])
            .arg(&data)
            .arg("--out")
            .arg(&model)
            .args(["--batch", "4", "--val-fraction", "0.25", "--jobs", "1"])
            .args(extra)
            .output()
            .unwrap()
    };
    let single = train(&["--epochs", "1", "--restarts", "1"]);
    assert_ok(&single);
    assert!(!model.join("restarts.csv").exists());
    // Without --restarts (3 by default), as a requeued batch job passes it.
    let resumed = train(&["--epochs", "2", "--resume"]);
    assert_ok(&resumed);
    let history = std::fs::read_to_string(model.join("history.csv")).unwrap();
    assert_eq!(history.lines().count(), 3, "{history}");
    assert!(!model.join("restarts.csv").exists());
}

#[test]
fn a_run_beyond_the_member_margin_is_kept_aside_and_not_averaged() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("dataset");
    let model = tmp.path().join("model");
    write_dataset(&data);
    let train = |margin: &str, out: &std::path::Path| {
        oddcube()
            .args(["train", "--data"])
            .arg(&data)
            .arg("--out")
            .arg(out)
            .args(["--epochs", "1", "--batch", "4", "--val-fraction", "0.25"])
            .args(["--jobs", "1", "--seed", "4", "--restarts", "2"])
            .arg(format!("--member-margin={margin}"))
            .output()
            .unwrap()
    };
    let refused = train("-0.1", &tmp.path().join("refused"));
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("expected a fraction"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // A margin of 0 leaves out every run whose loss is above the kept one's: two seeds never
    // train to the same loss, so the other run is left out.
    let out = train("0", &model);
    assert_ok(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let table = std::fs::read_to_string(model.join("restarts.csv")).unwrap();
    let rows: Vec<Vec<String>> = oddcube_data::csv::parse(&table)
        .into_iter()
        .skip(1)
        .collect();
    assert!(table.starts_with("seed,best_loss,best_epoch,relative_to_baseline,kept,member\n"));
    let (kept, other): (Vec<_>, Vec<_>) = rows.iter().partition(|r| r[4] == "true");
    assert_eq!((kept.len(), other.len()), (1, 1), "{table}");
    assert_eq!(kept[0][5], "true", "{table}");
    assert_eq!(other[0][5], "false", "{table}");
    assert!(stdout.contains("(left out)"), "{stdout}");

    // It is kept for inspection without its resume checkpoint, is not a member, and the model
    // scores as a single run.
    let aside = model.join(format!("left-out/seed-{}", other[0][0]));
    assert!(aside.join("best.safetensors").exists() && aside.join("config.toml").exists());
    assert!(!aside.join("last.ckpt.safetensors").exists());
    assert!(!aside.join("calibration.json").exists());
    assert!(!model.join("members").exists() && !model.join("ensemble.json").exists());
    let results = tmp.path().join("results");
    assert_ok(&score_into(&model, &data, &results));
    let r = oddcube_score::results::Results::open(&results).unwrap();
    assert!(r.manifest.ensemble_seeds.is_empty());
    assert!(
        r.catalog
            .f64(&format!("score_seed_{}", other[0][0]))
            .is_none()
    );
}

/// Runs `oddcube score` of `model` on `data` into `results`.
fn score_into(
    model: &std::path::Path,
    data: &std::path::Path,
    results: &std::path::Path,
) -> std::process::Output {
    oddcube()
        .args(["score", "--model"])
        .arg(model)
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(results)
        .output()
        .unwrap()
}
