//! What the binary says about itself and about mistakes: `--version` names the features and CPU
//! kernels built in; an error's causes are printed once each; a directory of the wrong kind
//! passed as RESULTS is named for what it is, with the command that makes RESULTS.

mod common;

use common::{run_err, run_ok, s};

#[test]
fn version_names_features_and_cpu_kernels() {
    for flag in ["--version", "-V"] {
        let out = run_ok(&[flag]);
        assert!(
            out.starts_with(&format!("oddcube {}", env!("CARGO_PKG_VERSION"))),
            "{out}"
        );
        assert!(out.contains("\nfeatures: "), "{out}");
        // This test binary is built without CUDA unless the feature is on.
        assert_eq!(
            out.contains("features: cuda"),
            cfg!(feature = "cuda"),
            "{out}"
        );
        let kernels = out
            .lines()
            .find(|l| l.starts_with("cpu kernels: "))
            .unwrap_or_else(|| panic!("no cpu kernels line in {out}"));
        assert!(kernels.contains(std::env::consts::ARCH), "{kernels}");
        assert!(
            kernels.contains("compiled for") && kernels.contains("use "),
            "{kernels}"
        );
        if cfg!(target_arch = "x86_64") && std::is_x86_feature_detected!("avx2") {
            assert!(kernels.contains("avx2"), "{kernels}");
        }
    }
}

#[test]
fn error_causes_are_printed_once() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing-here");
    let err = run_err(&["similar", s(&missing), "1-1"]);
    assert_eq!(err.matches("No such file").count(), 1, "{err}");
    assert!(err.contains("is this a RESULTS directory"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn a_dataset_or_model_given_as_results_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = dir.path().join("dataset");
    std::fs::create_dir(&dataset).unwrap();
    std::fs::write(
        dataset.join("manifest.json"),
        format!(
            r#"{{"format": "{}", "oddcube_version": "0", "lines": {{}}}}"#,
            oddcube_data::dataset::FORMAT
        ),
    )
    .unwrap();
    for args in [
        vec!["similar", s(&dataset), "1-1"],
        vec!["project", s(&dataset)],
        vec!["plot", "scores", s(&dataset)],
        vec!["evaluate", s(&dataset), "--labels", "truth.csv"],
    ] {
        let err = run_err(&args);
        assert!(
            err.contains("this is a dataset directory") && err.contains("oddcube score"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("missing field"), "{args:?}: {err}");
    }
    let model = dir.path().join("model");
    std::fs::create_dir(&model).unwrap();
    std::fs::write(model.join("config.toml"), "").unwrap();
    let err = run_err(&["similar", s(&model), "1-1"]);
    assert!(err.contains("this is a model directory"), "{err}");
}
