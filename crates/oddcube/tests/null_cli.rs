//! The null behind the p-values, through the binary: `train` stores it with the model, `score`
//! copies it into RESULTS and records it in the manifest; a model without one (trained before
//! it existed) still scores, with p-values from the scored population and a warning in the log
//! and the manifest; `oddcube calibrate` brings such a model up to date.

mod common;

use common::{oddcube, s, scored_survey};
use oddcube_score::calibration::{CALIBRATION_FILE, REFERENCE_LATENTS_FILE, StoredNull};
use oddcube_score::results::Results;

#[test]
fn stored_null_round_trip_and_old_model_fallback() {
    let survey = scored_survey();
    // train stored it; score used it and copied it.
    let stored = StoredNull::read(&survey.model)
        .unwrap()
        .expect("train stores a null");
    let copied = StoredNull::read(&survey.res)
        .unwrap()
        .expect("score copies the null");
    assert_eq!(stored, copied);
    let manifest = Results::open(&survey.res).unwrap().manifest;
    assert!(
        manifest.null_fitted_on.starts_with("training") || manifest.null_fitted_on == "validation"
    );
    assert_eq!(
        manifest.null_n_calibration,
        stored.calibration.n_calibration
    );
    assert!(manifest.warnings.is_empty(), "{:?}", manifest.warnings);

    // A null of an older score definition (format 2: `global` where `pooled` is now) is not
    // applied to the new components: the run falls back to the population, saying how to refit.
    let path = survey.model.join(CALIBRATION_FILE);
    let current = std::fs::read_to_string(&path).unwrap();
    let stale = current.replace("oddcube-calibration/4", "oddcube-calibration/2");
    assert_ne!(stale, current);
    std::fs::write(&path, stale).unwrap();
    let stale_out = survey.tmp.path().join("stale");
    let out = oddcube()
        .args(survey.score_args(&stale_out, &[]))
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("oddcube calibrate"), "{stderr}");
    let manifest = Results::open(&stale_out).unwrap().manifest;
    assert_eq!(manifest.null_fitted_on, "population");
    std::fs::write(&path, current).unwrap();

    // An older model: no calibration files. It still scores, with a warning.
    for file in [CALIBRATION_FILE, REFERENCE_LATENTS_FILE] {
        std::fs::remove_file(survey.model.join(file)).unwrap();
    }
    let old = survey.tmp.path().join("old");
    let out = oddcube()
        .args(survey.score_args(&old, &[]))
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no usable stored null"), "{stderr}");
    let manifest = Results::open(&old).unwrap().manifest;
    assert_eq!(manifest.null_fitted_on, "population");
    assert_eq!(manifest.warnings.len(), 1, "{:?}", manifest.warnings);
    assert!(!old.join(CALIBRATION_FILE).exists());

    // calibrate restores exactly what train had stored (same model, same split).
    let cal = oddcube()
        .args([
            "calibrate",
            "--model",
            s(&survey.model),
            "--data",
            s(&survey.data),
        ])
        .output()
        .unwrap();
    assert!(
        cal.status.success(),
        "{}",
        String::from_utf8_lossy(&cal.stderr)
    );
    let again = StoredNull::read(&survey.model).unwrap().unwrap();
    assert_eq!(again, stored);
}
