//! `oddcube train`: trains the ConvLSTM autoencoder or VAE on a dataset directory.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use oddcube_data::dataset::Dataset;
use oddcube_model::checkpoint::CONFIG;
use oddcube_model::flops::forward_flops;
use oddcube_model::network::parameter_count;
use oddcube_model::{
    ArchConfig, DataInfo, LossMode, ModelConfig, ModelKind, Preset, TrainConfig, TrainOptions,
    select_device, train,
};

use crate::ui::Bar;

/// Arguments of `oddcube train`.
#[derive(clap::Args)]
pub struct Args {
    /// Dataset directory written by `oddcube ingest`.
    #[arg(long)]
    data: PathBuf,
    /// Model directory to write (config.toml, best.safetensors, last.ckpt.safetensors,
    /// history.csv).
    #[arg(long)]
    out: PathBuf,
    /// Architecture preset (the grid size always follows the dataset).
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "paper"])]
    preset: String,
    /// Autoencoder or variational autoencoder.
    #[arg(long, default_value = "ae", value_parser = ["ae", "vae"])]
    model: String,
    /// Maximum number of epochs [default: 30].
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
    /// Weight of the VAE's KL term [default: 1e-3].
    #[arg(long)]
    beta: Option<f64>,
    /// Seed of every random choice [default: 0].
    #[arg(long)]
    seed: Option<u64>,
    /// Compute device: cpu, cuda (or cuda:N; needs a CUDA build). wgpu is not available in candle.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Continue the model in --out from its last complete epoch (settings come from its
    /// config.toml; only --epochs may change, which reshapes the remaining schedule).
    #[arg(long)]
    resume: bool,
    /// Fraction of galaxies held out for validation, chosen by a hash of plateifu [default: 0.15].
    #[arg(long)]
    val_fraction: Option<f64>,
    /// Loss weights: mse (every unmasked pixel equal) or chi2 (inverse variance) [default: mse].
    #[arg(long, value_parser = ["mse", "chi2"])]
    loss: Option<String>,
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
    #[arg(long, default_value = "fused", value_parser = ["fused", "reference"])]
    kernel: String,
}

/// Sets the CPU thread count for candle's pools before any of them start.
pub fn apply_jobs(jobs: Option<usize>) -> anyhow::Result<()> {
    if let Some(jobs) = jobs {
        anyhow::ensure!(jobs > 0, "--jobs must be positive");
        // SAFETY: called at the start of a subcommand, before this process starts any thread
        // that could read the environment concurrently. candle sizes its pools from these.
        unsafe {
            std::env::set_var("CANDLE_NUM_THREADS", jobs.to_string());
            std::env::set_var("RAYON_NUM_THREADS", jobs.to_string());
        }
    }
    Ok(())
}

/// `ae` or `vae`.
pub fn parse_kind(name: &str) -> anyhow::Result<ModelKind> {
    match name {
        "ae" => Ok(ModelKind::Ae),
        "vae" => Ok(ModelKind::Vae),
        other => anyhow::bail!("unknown --model {other:?} (ae or vae)"),
    }
}

/// The configuration of a fresh run: preset, dataset shape and command-line overrides.
fn fresh_config(
    args: &Args,
    lines: Vec<String>,
    size: usize,
    manifest_hash: String,
) -> anyhow::Result<ModelConfig> {
    let preset: Preset = args.preset.parse()?;
    let mut arch = ArchConfig::preset(preset, parse_kind(&args.model)?, lines.len());
    if arch.size != size {
        tracing::info!(
            "dataset grid is {size}×{size}; the {} preset's default is {}",
            args.preset,
            arch.size
        );
        arch.size = size;
    }
    if let Some(latent) = args.latent {
        arch.latent = latent;
    }
    if let Some(beta) = args.beta {
        arch.beta = beta;
    }
    arch.cell = args.kernel.parse()?;
    arch.validate()
        .context("the architecture does not fit this dataset")?;
    let defaults = TrainConfig::default();
    let train = TrainConfig {
        epochs: args.epochs.unwrap_or(defaults.epochs),
        batch: args.batch.unwrap_or(defaults.batch),
        lr: args.lr.unwrap_or(defaults.lr),
        val_fraction: args.val_fraction.unwrap_or(defaults.val_fraction),
        loss: match &args.loss {
            Some(l) => l.parse::<LossMode>()?,
            None => defaults.loss,
        },
        patience: args.patience.unwrap_or(defaults.patience),
        augment: !args.no_augment,
        noise: args.noise,
        seed: args.seed.unwrap_or(defaults.seed),
        ..defaults
    };
    train.validate()?;
    Ok(ModelConfig {
        version: env!("CARGO_PKG_VERSION").to_string(),
        arch,
        train,
        data: DataInfo {
            lines,
            manifest_hash,
            n_train: 0,
            n_val: 0,
        },
    })
}

/// Runs `oddcube train`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    apply_jobs(args.jobs)?;
    let device =
        select_device(&args.device).with_context(|| format!("--device {}", args.device))?;
    let dataset = Dataset::open(&args.data)
        .with_context(|| format!("cannot open dataset {}", args.data.display()))?;
    let lines = dataset.manifest.lines.lines.clone();
    let plateifus: Vec<String> = dataset
        .galaxies
        .iter()
        .map(|g| g.plateifu.clone())
        .collect();
    let manifest_hash = dataset.manifest_hash();

    let saved_config = args.out.join(CONFIG);
    let config = if args.resume && saved_config.exists() {
        let text = std::fs::read_to_string(&saved_config)
            .with_context(|| format!("cannot read {}", saved_config.display()))?;
        let mut config = ModelConfig::from_toml(&text, &saved_config)?;
        if let Some(epochs) = args.epochs {
            config.train.epochs = epochs;
        }
        config.arch.cell = args.kernel.parse()?;
        anyhow::ensure!(
            config.data.manifest_hash == manifest_hash,
            "{} was trained on a different dataset (manifest hash {} ≠ {})",
            args.out.display(),
            config.data.manifest_hash,
            manifest_hash
        );
        config
    } else {
        fresh_config(&args, lines, dataset.manifest.size, manifest_hash)?
    };

    let arch = &config.arch;
    println!(
        "train: {} galaxies, {} lines on {}×{}; {:?} with {} parameters, {:.3} GFLOP forward per galaxy; device {}",
        dataset.cubes.n,
        arch.n_lines,
        arch.size,
        arch.size,
        arch.kind,
        parameter_count(arch),
        forward_flops(arch) as f64 / 1e9,
        args.device
    );
    let options = TrainOptions {
        resume: args.resume,
        max_epochs_this_call: None,
    };
    let report = train(
        &config,
        &dataset.cubes,
        &plateifus,
        &args.out,
        &device,
        options,
        &Bar::new(false),
    )
    .with_context(|| format!("training into {}", args.out.display()))?;

    for row in &report.state.history {
        println!(
            "epoch {:>3}: train {:.5}  val {:.5}  lr {:.2e}  {:.1} s",
            row.epoch, row.train_loss, row.val_loss, row.lr, row.seconds
        );
    }
    let set = if report.n_val > 0 {
        "validation"
    } else {
        "training"
    };
    println!(
        "{} train / {} validation galaxies; mean-galaxy baseline {set} loss {:.5}",
        report.n_train, report.n_val, report.mean_baseline
    );
    println!(
        "best {set} loss {:.5} at epoch {} ({:.3} × baseline){}; model in {}",
        report.state.best_val,
        report.state.best_epoch,
        report.state.best_val / report.mean_baseline,
        if report.state.stopped {
            ", stopped early"
        } else {
            ""
        },
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
