//! Mistakes a user makes on the command line, run through the binary on a small scored survey:
//! each is a clear error naming the file or directory and the reason, and none destroys work
//! already done (a dataset, RESULTS or a trained model) or panics.

mod common;

use std::path::Path;

use common::{oddcube, run_err, run_ok, s, scored_survey};

/// Bytes of every file directly in `dir`, sorted by name: what "left untouched" compares.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

#[test]
fn outputs_never_overwrite_another_kind_of_artifact_and_inputs_are_checked() {
    let survey = scored_survey();

    // `score --out` naming the dataset, or the model; `ingest --out` naming RESULTS or the
    // model; `train --out` naming the dataset: refused before any work, nothing changed.
    let (data_before, res_before, model_before) = (
        snapshot(&survey.data),
        snapshot(&survey.res),
        snapshot(&survey.model),
    );
    for (out, holds) in [(&survey.data, "a dataset"), (&survey.model, "a model")] {
        let err = run_err(&survey.score_args(out, &[]));
        assert!(
            err.contains(s(out)) && err.contains(&format!("holds {holds}")),
            "{err}"
        );
    }
    for (out, holds) in [(&survey.res, "RESULTS"), (&survey.model, "a model")] {
        let err = run_err(&["ingest", s(&survey.sim), "--out", s(out), "--jobs", "1"]);
        assert!(
            err.contains(s(out)) && err.contains(&format!("holds {holds}")),
            "{err}"
        );
    }
    let err = run_err(&[
        "train",
        "--data",
        s(&survey.data),
        "--out",
        s(&survey.data),
        "--epochs",
        "1",
    ]);
    assert!(err.contains("holds a dataset"), "{err}");
    assert_eq!(snapshot(&survey.data), data_before);
    assert_eq!(snapshot(&survey.res), res_before);
    assert_eq!(snapshot(&survey.model), model_before);

    // A labels file that does not exist is an error, not "0 labels applied".
    let out = survey.tmp.path().join("res-labels");
    let missing = survey.tmp.path().join("no-labels.csv");
    let err = run_err(&survey.score_args(&out, &["--labels", s(&missing)]));
    assert!(
        err.contains(s(&missing)) && err.contains("No such file"),
        "{err}"
    );

    // A dataset named for `plot galaxy` must exist (left out, an unreachable one is a note);
    // `evaluate --purity-k 0` is refused by the parser.
    let stored = oddcube_score::results::Residuals::open(&survey.res)
        .unwrap()
        .unwrap();
    let galaxy = stored.plateifus[0].as_str();
    let err = run_err(&[
        "plot",
        "galaxy",
        "--results",
        s(&survey.res),
        galaxy,
        "--data",
        s(&missing),
    ]);
    assert!(err.contains(s(&missing)), "{err}");
    let out = oddcube()
        .args(["evaluate", "--results", s(&survey.res), "--purity-k", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));

    // The survey ingested again as `name`, on its grid, with one setting changed.
    let ingest_with = |name: &str, option: &str, value: &str| {
        let out = survey.tmp.path().join(name);
        run_ok(&[
            "ingest",
            s(&survey.sim),
            "--out",
            s(&out),
            "--size",
            "16",
            option,
            value,
            "--jobs",
            "1",
        ]);
        out
    };

    // `calibrate` on a dataset of other lines refuses, as `score` does, and keeps the null.
    let dr15 = ingest_with("data-dr15", "--lines", "dr15");
    let err = run_err(&["calibrate", "--model", s(&survey.model), "--data", s(&dr15)]);
    assert!(
        err.contains("was trained on lines") && err.contains(s(&dr15)),
        "{err}"
    );
    assert_eq!(snapshot(&survey.model), model_before);

    // A model reads only flux stretched as it was trained on: scoring an asinh-stretched dataset
    // with a model of linear flux is refused, naming both.
    let asinh = ingest_with("data-asinh", "--stretch", "asinh");
    let out = survey.tmp.path().join("res-asinh");
    let mut words = survey.score_args(&out, &[]);
    let at = words.iter().position(|w| w == "--data").unwrap() + 1;
    words[at] = s(&asinh).to_string();
    let err = run_err(&words);
    assert!(
        err.contains("stretched as none") && err.contains("stretched as asinh"),
        "{err}"
    );

    // `--resume` of a model whose checkpoint is gone would retrain over its weights: refused.
    let copy = survey.tmp.path().join("model-copy");
    std::fs::create_dir(&copy).unwrap();
    for (name, bytes) in &model_before {
        std::fs::write(copy.join(name), bytes).unwrap();
    }
    std::fs::remove_file(copy.join("last.ckpt.safetensors")).unwrap();
    let err = run_err(&[
        "train",
        "--data",
        s(&survey.data),
        "--out",
        s(&copy),
        "--resume",
    ]);
    assert!(
        err.contains("no last.ckpt.safetensors to resume from"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(copy.join("best.safetensors")).unwrap(),
        std::fs::read(survey.model.join("best.safetensors")).unwrap()
    );
    // Best weights without history are a job stopped inside its first epoch: it starts again.
    std::fs::remove_file(copy.join("history.csv")).unwrap();
    run_ok(&[
        "train",
        "--data",
        s(&survey.data),
        "--out",
        s(&copy),
        "--resume",
    ]);
    assert!(copy.join("last.ckpt.safetensors").is_file());
}

#[test]
fn paths_that_are_not_utf8_work_or_are_errors_never_panics() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let odd = dir
        .path()
        .join(std::ffi::OsStr::from_bytes(b"x\xff"))
        .join("survey");
    let out = oddcube()
        .arg("simulate")
        .arg("--out")
        .arg(&odd)
        .args(["--galaxies", "2", "--jobs", "1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // cfitsio assembles the files in memory and never sees their names, so any path the
    // file system takes will do.
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let written = std::fs::read_dir(&odd)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .ends_with("-MAPS-HYB10-MILESHC-MASTARSSP.fits.gz")
        })
        .count();
    assert_eq!(written, 2);
    assert!(odd.join("truth.csv").is_file());
    // Ingest writes no FITS: it succeeds, and the command line it records (provenance) keeps
    // the path lossily instead of panicking on it.
    let survey = dir.path().join("survey");
    run_ok(&[
        "simulate",
        "--out",
        s(&survey),
        "--galaxies",
        "2",
        "--jobs",
        "1",
    ]);
    let dataset = dir
        .path()
        .join(std::ffi::OsStr::from_bytes(b"d\xff"))
        .join("dataset");
    let out = oddcube()
        .arg("ingest")
        .arg(&survey)
        .arg("--out")
        .arg(&dataset)
        .args(["--size", "16", "--jobs", "1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let manifest = std::fs::read_to_string(dataset.join("manifest.json")).unwrap();
    assert!(manifest.contains("d\u{fffd}"), "{manifest}");
}
