//! Training a model and fitting its null in one call: what `oddcube train` does between parsing
//! its arguments and printing, shared with the Python package's `oddcube.train`.

use std::path::Path;

use anyhow::Context;
use oddcube_data::Progress;
use oddcube_data::artifact::{ArtifactKind, check_output_dir};
use oddcube_data::dataset::Dataset;
use oddcube_model::plan::{DatasetShape, Plan, RunChoices, plan_run};
use oddcube_model::{TrainOptions, TrainReport, train};

use crate::calibrate::{CalibrationReport, calibrate_model};

/// What [`train_and_calibrate`] did.
pub struct Trained {
    /// The configuration trained with and the notes of its planning.
    pub plan: Plan,
    /// The training run (epochs, losses, timings).
    pub report: TrainReport,
    /// The null fitted afterwards and stored in the model directory.
    pub calibration: CalibrationReport,
}

/// Plans a run from `choices` (or resumes the one in `out`), trains it on `dataset` into `out`
/// on `device` (`cpu`, `cuda`, `cuda:N`), then fits and stores the null
/// ([`calibrate_model`]), so every trained model scores with calibrated p-values. `on_plan`
/// sees the plan before training starts (the CLI prints it).
pub fn train_and_calibrate(
    dataset: &Dataset,
    choices: &RunChoices,
    out: &Path,
    resume: bool,
    device: &str,
    progress: &dyn Progress,
    on_plan: &dyn Fn(&Plan),
) -> anyhow::Result<Trained> {
    let candle_device =
        oddcube_model::select_device(device).with_context(|| format!("device {device:?}"))?;
    let plateifus: Vec<String> = dataset
        .galaxies
        .iter()
        .map(|g| g.plateifu.clone())
        .collect();
    let shape = DatasetShape {
        lines: &dataset.manifest.lines.lines,
        size: dataset.manifest.size,
        manifest_hash: &dataset.manifest_hash(),
        plateifus: &plateifus,
        stretch: dataset.manifest.normalisation.stretch,
    };
    check_output_dir(out, ArtifactKind::Model)?;
    let plan = plan_run(choices, shape, out, resume)?;
    on_plan(&plan);
    let options = TrainOptions {
        resume,
        max_epochs_this_call: None,
    };
    let report = train(
        &plan.config,
        &dataset.cubes,
        &plateifus,
        out,
        &candle_device,
        options,
        progress,
    )
    .with_context(|| format!("training into {}", out.display()))?;
    let calibration = calibrate_model(out, dataset, device, progress)?;
    Ok(Trained {
        plan,
        report,
        calibration,
    })
}
