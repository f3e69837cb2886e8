//! Fitting a trained model's null (`oddcube_score::calibration`) on the galaxies of its dataset
//! and storing it in the model directory — run at the end of `oddcube train`, so every new model
//! scores with calibrated p-values.

use std::path::Path;

use anyhow::Context;
use oddcube_data::Progress;
use oddcube_data::dataset::Dataset;
use oddcube_model::batches::is_validation;
use oddcube_score::calibration::{StoredNull, calibrate};

use crate::scorer::ModelScorer;

/// Validation galaxies needed to refit the null on them alone (see [`calibrate_model`]).
pub const MIN_VALIDATION: usize = 20;

/// Largest [`Calibration::validation_shift`](oddcube_score::calibration::Calibration) (in σ of
/// the fused score) at which the training galaxies stay in the null. On the 21 benchmark surveys
/// it ranged from −0.21 to +0.20 (mean 0.00), the noise of a median of 30–50 galaxies; a model
/// that rebuilds its training galaxies half a σ better than new ones has overfitted, and its
/// training scores would make the p-values optimistic.
pub const MAX_VALIDATION_SHIFT: f64 = 0.5;

/// Neighbour rank of the stored `knn_dist` reference (the `score --knn-k` default).
pub const REFERENCE_KNN_K: usize = 10;

/// What [`calibrate_model`] fitted.
pub struct CalibrationReport {
    /// The stored null.
    pub null: StoredNull,
    /// Why the null is less trustworthy than usual, when it is (for the log and the caller).
    pub warning: Option<String>,
}

/// Fits the null of the model in `model_dir` on `dataset` (the one it was trained on) and writes
/// `calibration.json` and `reference_latents.npy` into `model_dir`. The null is fitted on every
/// galaxy of the dataset, training and validation split together; the training galaxies are the
/// latent reference. If the validation galaxies score more than [`MAX_VALIDATION_SHIFT`] above
/// the training galaxies (the model rebuilds what it trained on better), it is refitted on the
/// validation galaxies alone, given at least [`MIN_VALIDATION`] of them.
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
    let fit = |rows: &[usize], fitted_on: &str| {
        calibrate(
            &scorer,
            &dataset.cubes,
            &dataset.galaxies,
            &dataset.manifest.lines.lines,
            rows,
            &training,
            fitted_on,
            REFERENCE_KNN_K,
            progress,
        )
        .with_context(|| format!("calibrating model {}", model_dir.display()))
    };
    let all: Vec<usize> = (0..dataset.galaxies.len()).collect();
    let mut null = fit(&all, "training+validation")?;
    let warning = match null.calibration.validation_shift {
        Some(shift) if shift > MAX_VALIDATION_SHIFT && validation.len() >= MIN_VALIDATION => {
            let message = format!(
                "the model scores its training galaxies {shift:.2} σ lower than its validation galaxies (it has overfitted): the null is fitted on the {} validation galaxies alone",
                validation.len()
            );
            null = fit(&validation, "validation")?;
            Some(message)
        }
        Some(shift) if shift > MAX_VALIDATION_SHIFT => Some(format!(
            "the model scores its training galaxies {shift:.2} σ lower than its validation galaxies (it has overfitted), and there are too few validation galaxies ({}, fewer than {MIN_VALIDATION}) to fit the null on them alone: p-values are optimistic",
            validation.len()
        )),
        Some(_) => None,
        None => Some(format!(
            "too few validation galaxies ({}) to check that the model does not score its training galaxies lower: p-values may be optimistic",
            validation.len()
        )),
    };
    null.write(model_dir)
        .with_context(|| format!("writing the null into {}", model_dir.display()))?;
    Ok(CalibrationReport { null, warning })
}
