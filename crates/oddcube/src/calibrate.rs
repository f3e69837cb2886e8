//! Fitting a trained model's null (`oddcube_score::calibration`) on the galaxies of its dataset
//! and storing it in the model directory — run at the end of `oddcube train`, so every new model
//! scores with calibrated p-values.

use std::path::Path;

use anyhow::Context;
use oddcube_data::Progress;
use oddcube_data::dataset::Dataset;
use oddcube_model::batches::is_validation;
use oddcube_model::checkpoint::CONFIG;
use oddcube_score::calibration::{FittedNull, StoredNull, calibrate};
use oddcube_score::ensemble::{
    ENSEMBLE_FILE, EnsembleMember, EnsembleNull, KEPT_DIR, MEMBERS_DIR, member_dir, member_scores,
};
use oddcube_score::knn::Metric;

use crate::scorer::ModelScorer;

/// Validation galaxies needed to refit the null on them alone (see [`calibrate_model`]).
pub const MIN_VALIDATION: usize = 20;

/// Largest [`Calibration::validation_shift`](oddcube_score::calibration::Calibration) (in σ of
/// the fused score) at which the training galaxies stay in the null. On the 21 benchmark models
/// it ranged from −0.19 to +0.19 (mean −0.01), the noise of a median of 30–50 galaxies; a model
/// that rebuilds its training galaxies half a σ better than new ones has overfitted, and its
/// training scores would make the p-values optimistic.
pub const MAX_VALIDATION_SHIFT: f64 = 0.5;

/// Neighbour rank of the stored `knn_dist` reference (the `score --knn-k` default).
pub const REFERENCE_KNN_K: usize = 10;

/// What [`calibrate_model`] fitted.
pub struct CalibrationReport {
    /// The stored null.
    pub null: StoredNull,
    /// The restart ensemble's null, for a model trained with restarts (`ensemble.json`).
    pub ensemble: Option<EnsembleNull>,
    /// Why the null is less trustworthy than usual, when it is (for the log and the caller).
    pub warning: Option<String>,
}

/// Fits the null of the model in `model_dir` on `dataset` (the one it was trained on) and writes
/// `calibration.json` and `reference_latents.npy` into `model_dir`. The null is fitted on every
/// galaxy of the dataset, training and validation split together; the training galaxies are the
/// latent reference. If the validation galaxies score more than [`MAX_VALIDATION_SHIFT`] above
/// the training galaxies (the model rebuilds what it trained on better), it is refitted on the
/// validation galaxies alone, given at least [`MIN_VALIDATION`] of them.
///
/// A model trained with restarts keeps its other averaged runs in `members/seed-S/` (runs left
/// out of the mean, in `left-out/`, are not calibrated): each gets its own
/// null the same way, and then the ensemble's ([`EnsembleNull`]) is fitted on the galaxies the
/// model's own null was fitted on and written as `ensemble.json`.
pub fn calibrate_model(
    model_dir: &Path,
    dataset: &Dataset,
    device: &str,
    progress: &dyn Progress,
) -> anyhow::Result<CalibrationReport> {
    let scorer = ModelScorer::load(model_dir, device, 32)?;
    let fitted = fit_null(&scorer, model_dir, dataset, progress)?;
    let mut warnings: Vec<String> = fitted.warning.clone().into_iter().collect();
    let ensemble = calibrate_ensemble(
        model_dir,
        &scorer,
        &fitted,
        dataset,
        device,
        progress,
        &mut warnings,
    )?;
    let warning = (!warnings.is_empty()).then(|| warnings.join("; "));
    Ok(CalibrationReport {
        null: fitted.null,
        ensemble,
        warning,
    })
}

/// One model's null, written into its directory, with the dataset rows it was fitted on and
/// their fused scores under it.
struct ModelNull {
    null: StoredNull,
    rows: Vec<usize>,
    scores: Vec<f64>,
    warning: Option<String>,
}

/// Fits and writes the null of the loaded model in `model_dir` (see [`calibrate_model`]).
fn fit_null(
    scorer: &ModelScorer,
    model_dir: &Path,
    dataset: &Dataset,
    progress: &dyn Progress,
) -> anyhow::Result<ModelNull> {
    let other_dataset = !scorer.check_dataset(model_dir, dataset)?;
    let fraction = scorer.model.config().train.val_fraction;
    let (validation, training): (Vec<usize>, Vec<usize>) = (0..dataset.galaxies.len())
        .partition(|&i| is_validation(&dataset.galaxies[i].plateifu, fraction));
    let fit = |rows: &[usize], fitted_on: &str| {
        calibrate(
            scorer,
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
    let mut fitted = fit(&all, "training+validation")?;
    let decision = decide(fitted.null.calibration.validation_shift, validation.len());
    let rows = if decision.refit_on_validation {
        let measured = fitted.null.calibration.validation_shift;
        fitted = fit(&validation, "validation")?;
        // The refit has no training galaxies to compare with; keep the shift that caused it.
        fitted.null.calibration.validation_shift = measured;
        validation
    } else {
        all
    };
    let FittedNull { null, scores } = fitted;
    null.write(model_dir)
        .with_context(|| format!("writing the null into {}", model_dir.display()))?;
    let other_dataset = other_dataset.then(|| {
        format!(
            "{} is not the dataset model {} was trained on: its galaxies now make the null and the \
             kNN reference, and those on the training side of the split were not trained on, so \
             the validation shift (the overfitting check) means nothing",
            dataset.dir.display(),
            model_dir.display()
        )
    });
    let warning = match (decision.warning, other_dataset) {
        (Some(a), Some(b)) => Some(format!("{a}; {b}")),
        (a, b) => a.or(b),
    };
    Ok(ModelNull {
        null,
        rows,
        scores,
        warning,
    })
}

/// The line `train` and `calibrate` print for a restart ensemble's null fitted into `model_dir`.
pub fn describe_ensemble(ensemble: &EnsembleNull, model_dir: &Path) -> String {
    let seeds: Vec<String> = ensemble.seeds().iter().map(u64::to_string).collect();
    format!(
        "score is the mean of the {} restarts (seeds {}); its null fitted on {} galaxies → {}/{ENSEMBLE_FILE}",
        ensemble.members.len(),
        seeds.join(", "),
        ensemble.n_calibration,
        model_dir.display()
    )
}

/// The seeds of the members in `model_dir`'s [`MEMBERS_DIR`] (directories `seed-S` holding a
/// model), ascending.
pub fn member_seeds(model_dir: &Path) -> anyhow::Result<Vec<u64>> {
    let dir = model_dir.join(MEMBERS_DIR);
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut seeds = Vec::new();
    for entry in
        std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?
    {
        let path = entry
            .with_context(|| format!("cannot read {}", dir.display()))?
            .path();
        let seed = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("seed-"))
            .and_then(|s| s.parse::<u64>().ok());
        if let Some(seed) = seed
            && path.join(CONFIG).is_file()
        {
            seeds.push(seed);
        }
    }
    seeds.sort_unstable();
    Ok(seeds)
}

/// Fits every member's null and then the ensemble's, on the rows the kept model's null was
/// fitted on (see [`calibrate_model`]); `None`, and any stale `ensemble.json` removed, for a
/// model without members. Member warnings are added to `warnings`, naming the member.
fn calibrate_ensemble(
    model_dir: &Path,
    kept: &ModelScorer,
    kept_null: &ModelNull,
    dataset: &Dataset,
    device: &str,
    progress: &dyn Progress,
    warnings: &mut Vec<String>,
) -> anyhow::Result<Option<EnsembleNull>> {
    let seeds = member_seeds(model_dir)?;
    if seeds.is_empty() {
        let stale = model_dir.join(ENSEMBLE_FILE);
        if stale.exists() {
            std::fs::remove_file(&stale)
                .with_context(|| format!("cannot remove {}", stale.display()))?;
        }
        return Ok(None);
    }
    let kept_seed = kept.model.config().train.seed;
    anyhow::ensure!(
        !seeds.contains(&kept_seed),
        "{} holds a member of seed {kept_seed}, the seed of the model itself",
        model_dir.join(MEMBERS_DIR).display()
    );
    // Each run's scores on the rows the ensemble is fitted on: what fitting its null computed,
    // unless its null was fitted on other rows (refitted on the validation galaxies when the
    // kept model's was not, or the other way round).
    let scores_of = |model: &ModelScorer, fitted: &ModelNull| {
        if fitted.rows == kept_null.rows {
            return Ok(fitted.scores.clone());
        }
        member_scores(
            model,
            &fitted.null,
            &dataset.cubes,
            &dataset.galaxies,
            &dataset.manifest.lines.lines,
            &kept_null.rows,
            Metric::Euclidean,
            progress,
        )
        .map(|scores| scores.score)
    };
    let kept_member = EnsembleMember {
        seed: kept_seed,
        dir: KEPT_DIR.to_string(),
    };
    let mut members = vec![(kept_member, scores_of(kept, kept_null)?)];
    for seed in seeds {
        let dir = model_dir.join(member_dir(seed));
        tracing::info!("calibrating ensemble member seed {seed}");
        let scorer = ModelScorer::load(&dir, device, 32)?;
        let fitted = fit_null(&scorer, &dir, dataset, progress)?;
        if let Some(warning) = &fitted.warning {
            warnings.push(format!("ensemble member seed {seed}: {warning}"));
        }
        let member = EnsembleMember {
            seed,
            dir: member_dir(seed),
        };
        members.push((member, scores_of(&scorer, &fitted)?));
    }
    members.sort_by_key(|(member, _)| member.seed);
    let (members, scores): (Vec<EnsembleMember>, Vec<Vec<f64>>) = members.into_iter().unzip();
    let ensemble = EnsembleNull::fit(members, &scores, &kept_null.null.calibration.fitted_on)
        .with_context(|| format!("fitting the ensemble null of {}", model_dir.display()))?;
    ensemble
        .write(model_dir)
        .with_context(|| format!("writing the ensemble null into {}", model_dir.display()))?;
    Ok(Some(ensemble))
}

/// What [`calibrate_model`] does after fitting on every galaxy.
#[derive(Debug, PartialEq)]
struct Decision {
    /// Refit the null on the validation galaxies alone.
    refit_on_validation: bool,
    /// What to tell the user.
    warning: Option<String>,
}

/// The decision for a measured `shift` (`None`: too few galaxies to measure it) and
/// `n_validation` validation galaxies.
fn decide(shift: Option<f64>, n_validation: usize) -> Decision {
    let overfitted = |shift: f64| {
        format!(
            "the model scores its training galaxies {shift:.2} σ lower than its validation galaxies (it has overfitted)"
        )
    };
    match shift {
        Some(shift) if shift > MAX_VALIDATION_SHIFT && n_validation >= MIN_VALIDATION => Decision {
            refit_on_validation: true,
            warning: Some(format!(
                "{}: the null is fitted on the {n_validation} validation galaxies alone",
                overfitted(shift)
            )),
        },
        Some(shift) if shift > MAX_VALIDATION_SHIFT => Decision {
            refit_on_validation: false,
            warning: Some(format!(
                "{}, and {n_validation} validation galaxies are too few (fewer than {MIN_VALIDATION}) to fit the null on them alone: p-values are optimistic",
                overfitted(shift)
            )),
        },
        Some(_) => Decision {
            refit_on_validation: false,
            warning: None,
        },
        None => Decision {
            refit_on_validation: false,
            warning: Some(format!(
                "too few validation galaxies ({n_validation}) to check that the model does not score its training galaxies lower: p-values may be optimistic"
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn training_galaxies_stay_in_the_null_unless_the_model_overfitted() {
        assert_eq!(
            decide(Some(0.2), 30),
            Decision {
                refit_on_validation: false,
                warning: None
            }
        );
        // A model that scores its training galaxies lower than new ones: refit on validation.
        let overfitted = decide(Some(0.8), 30);
        assert!(overfitted.refit_on_validation);
        assert!(overfitted.warning.unwrap().contains("0.80 σ"));
        // ... unless there are too few validation galaxies, which the warning says.
        let few = decide(Some(0.8), MIN_VALIDATION - 1);
        assert!(!few.refit_on_validation);
        assert!(few.warning.unwrap().contains("optimistic"));
        // Unmeasured: kept, with a warning.
        let unmeasured = decide(None, 5);
        assert!(!unmeasured.refit_on_validation && unmeasured.warning.is_some());
    }
}
