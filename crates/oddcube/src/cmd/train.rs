//! `oddcube train`: trains the ConvLSTM autoencoder or VAE on a dataset directory and fits its
//! null: arguments → [`oddcube::training::train_and_calibrate`] → the plan and the report.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use oddcube::threads::on_thread_pool;
use oddcube::training::train_and_calibrate;
use oddcube_data::dataset::Dataset;
use oddcube_model::plan::{Plan, RunChoices, describe_report, describe_start};

use crate::cmd::choices::{DeviceName, KernelArg, KindArg, LossArg, PresetArg};
use crate::cmd::compat;
use crate::ui::{Bar, apply_jobs};

/// Arguments of `oddcube train`.
#[derive(clap::Args)]
pub struct Args {
    /// Dataset directory written by `oddcube ingest`.
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    /// Model directory to write (config.toml, best.safetensors, last.ckpt.safetensors,
    /// history.csv, calibration.json; with restarts also restarts.csv, ensemble.json and the
    /// other runs in members/).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Architecture preset (the grid size always follows the dataset).
    #[arg(long, value_enum, default_value_t = PresetArg::Cpu)]
    preset: PresetArg,
    /// Architecture: autoencoder or variational autoencoder.
    #[arg(long, value_enum, default_value_t = KindArg::Ae)]
    arch: KindArg,
    /// Deprecated spelling of --arch (`--model` names a model directory elsewhere).
    #[arg(long = "model", value_enum, hide = true, conflicts_with = "arch")]
    model_kind: Option<KindArg>,
    /// Maximum number of epochs [default: as many as fit into 8000 galaxy presentations, 1 to
    /// 30: 30 up to 266 training galaxies, 3 for 2542, 1 above 4000]. Longer training on a large
    /// survey teaches the model its anomalies (docs/model.md, "Epochs and survey size").
    #[arg(long)]
    epochs: Option<usize>,
    /// Galaxies per optimiser step [default: 16].
    #[arg(long)]
    batch: Option<usize>,
    /// Peak learning rate (warm-up, then cosine decay) [default: 2e-3].
    #[arg(long)]
    lr: Option<f64>,
    /// Latent dimension D [default: the preset's].
    #[arg(long)]
    latent: Option<usize>,
    /// Weight of the VAE's KL term in ELBO units (1 = the Gaussian ELBO at the data's own
    /// scale; docs/model.md) [default: 1].
    #[arg(long)]
    beta: Option<f64>,
    /// Seed of every random choice [default: 0].
    #[arg(long)]
    seed: Option<u64>,
    /// Train this many models from the seeds --seed, --seed + 1, …: the one with the lowest
    /// validation loss is the model (a label-free choice; every run's loss goes to
    /// restarts.csv), the others within --member-margin of it stay in members/, and `score` is
    /// the mean of their fused scores and the model's. Each costs a full training run; 1 trains
    /// a single model (docs/model.md, "Restarts").
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=100))]
    restarts: u64,
    /// With restarts, a run whose best validation loss is more than this fraction above the
    /// model's is not averaged into `score` (a run stalled on a plateau ranks worse); it is kept
    /// in left-out/. inf averages every run.
    #[arg(long, default_value_t = oddcube::training::MEMBER_LOSS_MARGIN, value_parser = parse_margin)]
    member_margin: f64,
    /// Compute device: cpu, cuda (or cuda:N; needs a CUDA build). wgpu is not available in candle.
    #[arg(long, default_value = "cpu")]
    device: DeviceName,
    /// Continue the model in --out from its last complete epoch (settings come from its
    /// config.toml; only --epochs may change, which reshapes the remaining schedule).
    #[arg(long)]
    resume: bool,
    /// Fraction of galaxies held out for validation, chosen by a hash of plateifu [default: 0.15].
    #[arg(long)]
    val_fraction: Option<f64>,
    /// Loss weights: mse (every unmasked pixel equal) or chi2 (inverse variance) [default: mse].
    #[arg(long, value_enum)]
    loss: Option<LossArg>,
    /// Stop after this many epochs without a better validation loss; 0 never stops [default: 8].
    #[arg(long)]
    patience: Option<usize>,
    /// Add Gaussian noise drawn from the IVAR to training inputs.
    #[arg(long)]
    noise: bool,
    /// Do not apply random flips/rotations to training galaxies.
    #[arg(long)]
    no_augment: bool,
    /// CPU threads (default: all cores).
    #[arg(long)]
    jobs: Option<usize>,
    /// ConvLSTM/conv implementation: fused (fast CPU kernels; the reference composition on
    /// other devices) or reference (plain candle ops). Same numbers up to rounding.
    #[arg(long, value_enum, default_value_t = KernelArg::Fused)]
    kernel: KernelArg,
}

/// `--member-margin`: a fraction ≥ 0, or inf.
fn parse_margin(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(m) if m >= 0.0 => Ok(m),
        _ => Err(format!(
            "{text:?}: expected a fraction ≥ 0 (0.1 = 10 %) or inf"
        )),
    }
}

/// Runs `oddcube train`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    apply_jobs(args.jobs)?;
    on_thread_pool(|| run_on_pool(args))
}

/// [`run`] on a worker of the thread pool ([`on_thread_pool`]).
fn run_on_pool(args: Args) -> anyhow::Result<ExitCode> {
    let kind = compat::either(
        None,
        args.model_kind,
        "train --model ae|vae",
        "--arch ae|vae",
    )
    .unwrap_or(args.arch);
    let dataset = Dataset::open(&args.data)
        .with_context(|| format!("cannot open dataset {}", args.data.display()))?;
    let choices = RunChoices {
        preset: args.preset.into(),
        kind: kind.into(),
        kernel: args.kernel.into(),
        epochs: args.epochs,
        batch: args.batch,
        lr: args.lr,
        latent: args.latent,
        beta: args.beta,
        seed: args.seed,
        val_fraction: args.val_fraction,
        loss: args.loss.map(Into::into),
        patience: args.patience,
        noise: args.noise,
        augment: !args.no_augment,
    };
    let device_name = args.device.to_string();
    let on_plan = |plan: &Plan| {
        plan.notes.iter().for_each(|note| tracing::info!("{note}"));
        println!(
            "{}",
            describe_start(&plan.config.arch, dataset.cubes.n, &device_name)
        );
    };
    let trained = train_and_calibrate(
        &dataset,
        &choices,
        &args.out,
        args.resume,
        args.restarts as usize,
        args.member_margin,
        &device_name,
        &Bar::new(false),
        &on_plan,
    )?;
    print!("{}", describe_report(&trained.report, &args.out));
    if !trained.restarts.is_empty() {
        let runs: Vec<String> = trained
            .restarts
            .iter()
            .map(|r| {
                format!(
                    "seed {} {:.3}×{}",
                    r.seed,
                    r.relative_to_baseline,
                    if r.kept {
                        " (kept)"
                    } else if r.member {
                        ""
                    } else {
                        " (left out)"
                    }
                )
            })
            .collect();
        println!(
            "restarts, best loss against the baseline: {} → {}/{}",
            runs.join(", "),
            args.out.display(),
            oddcube::training::RESTARTS_FILE
        );
    }
    let calibration = &trained.calibration;
    let c = &calibration.null.calibration;
    println!(
        "null of the anomaly score fitted on {} {} galaxies ({}) → {}/calibration.json",
        c.n_calibration,
        c.fitted_on,
        c.describe_covariates(),
        args.out.display()
    );
    if let Some(ensemble) = &calibration.ensemble {
        println!(
            "{}",
            oddcube::calibrate::describe_ensemble(ensemble, &args.out)
        );
    }
    if let Some(warning) = &calibration.warning {
        tracing::warn!("{warning}");
    }
    Ok(ExitCode::SUCCESS)
}
