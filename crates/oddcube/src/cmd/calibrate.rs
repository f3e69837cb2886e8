//! `oddcube calibrate`: fit (or refit) the null of a trained model's anomaly score on the
//! galaxies of its dataset and store it in the model directory. `train` does this
//! itself; this command brings models trained by older versions up to date.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use oddcube::threads::on_thread_pool;
use oddcube_data::dataset::Dataset;

use crate::ui::Bar;

/// Arguments of `oddcube calibrate`.
#[derive(clap::Args)]
pub struct Args {
    /// Model directory written by `oddcube train`.
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// The dataset the model was trained on (its galaxies calibrate).
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// Device: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// Runs `oddcube calibrate`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    on_thread_pool(|| run_on_pool(args))
}

/// [`run`] on a worker of the thread pool ([`on_thread_pool`]).
fn run_on_pool(args: Args) -> anyhow::Result<ExitCode> {
    let dataset = Dataset::open(&args.data)
        .with_context(|| format!("opening dataset {}", args.data.display()))?;
    let report =
        oddcube::calibrate::calibrate_model(&args.model, &dataset, &args.device, &Bar::new(false))?;
    let c = &report.null.calibration;
    println!(
        "null fitted on {} {} galaxies ({}), {} reference latents → {}/calibration.json",
        c.n_calibration,
        c.fitted_on,
        c.describe_covariates(),
        c.reference_plateifus.len(),
        args.model.display()
    );
    if let Some(ensemble) = &report.ensemble {
        println!(
            "{}",
            oddcube::calibrate::describe_ensemble(ensemble, &args.model)
        );
    }
    if let Some(warning) = &report.warning {
        tracing::warn!("{warning}");
    }
    Ok(ExitCode::SUCCESS)
}
