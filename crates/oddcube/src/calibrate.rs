//! Fitting a trained model's null (`oddcube_score::calibration`) on the galaxies of its dataset
//! that it did not train on, and storing it in the model directory — run at the end of
//! `oddcube train`, so every new model scores with calibrated p-values.

use std::path::Path;

use anyhow::Context;
use oddcube_data::Progress;
use oddcube_data::dataset::Dataset;
use oddcube_model::batches::is_validation;
use oddcube_score::calibration::{StoredNull, calibrate};

use crate::scorer::ModelScorer;

/// Validation galaxies below which the null is fitted on every galaxy of the dataset.
pub const MIN_VALIDATION: usize = 20;

/// Neighbour rank of the stored `knn_dist` reference (the `score --knn-k` default).
pub const REFERENCE_KNN_K: usize = 10;

/// What [`calibrate_model`] fitted.
pub struct CalibrationReport {
    /// The stored null.
    pub null: StoredNull,
    /// True when the model has fewer than [`MIN_VALIDATION`] validation galaxies and the null
    /// was fitted on its training galaxies too (p-values are then optimistic).
    pub on_training: bool,
}

/// Fits the null of the model in `model_dir` on `dataset` (the one it was trained on): the
/// validation galaxies (by the model's own split) calibrate, the training galaxies are the
/// latent reference. Writes `calibration.json` and `reference_latents.npy` into `model_dir`.
pub fn calibrate_model(
    model_dir: &Path,
    dataset: &Dataset,
    device: &str,
    progress: &dyn Progress,
) -> anyhow::Result<CalibrationReport> {
    let scorer = ModelScorer::load(model_dir, device, 32)?;
    let fraction = scorer.model.config().train.val_fraction;
    let (validation, training): (Vec<usize>, Vec<usize>) = (0..dataset.galaxies.len())
        .partition(|&i| is_validation(&dataset.galaxies[i].plateifu, fraction));
    // A null fitted on a handful of galaxies is noise: a 40-galaxy survey's 6 validation
    // galaxies flagged 24 of 40. Below MIN_VALIDATION the training galaxies join in; their scores
    // are biased low, so the p-values are then optimistic, and the caller says so.
    let on_training = validation.len() < MIN_VALIDATION;
    let (calibration_rows, fitted_on) = if on_training {
        ((0..dataset.galaxies.len()).collect(), "training+validation")
    } else {
        (validation, "validation")
    };
    let null = calibrate(
        &scorer,
        &dataset.cubes,
        &dataset.galaxies,
        &dataset.manifest.lines.lines,
        &calibration_rows,
        &training,
        fitted_on,
        REFERENCE_KNN_K,
        progress,
    )
    .with_context(|| format!("calibrating model {}", model_dir.display()))?;
    null.write(model_dir)
        .with_context(|| format!("writing the null into {}", model_dir.display()))?;
    Ok(CalibrationReport { null, on_training })
}
