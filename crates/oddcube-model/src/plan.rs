//! Planning a training run: the [`ModelConfig`] of a fresh run (a preset, the dataset's shape
//! and the caller's overrides) or of a resumed one (the model directory's saved `config.toml`,
//! checked against the dataset), and the one-paragraph summaries `oddcube train` prints before
//! and after. The loop itself is [`crate::train()`].

use std::path::Path;

use crate::checkpoint::CONFIG;
use crate::config::{
    ArchConfig, CellKernelKind, DataInfo, LossMode, ModelConfig, ModelKind, Preset, TrainConfig,
};
use crate::error::{ModelError, Result};
use crate::flops::forward_flops;
use crate::network::parameter_count;
use crate::train::TrainReport;

/// The caller's choices for a run; `None` keeps the preset's or [`TrainConfig`]'s default.
#[derive(Debug, Clone, PartialEq)]
pub struct RunChoices {
    /// Architecture preset (the grid size always follows the dataset).
    pub preset: Preset,
    /// Autoencoder or VAE.
    pub kind: ModelKind,
    /// ConvLSTM/conv implementation (may change on resume: same numbers up to rounding).
    pub kernel: CellKernelKind,
    /// Maximum epochs (the only training setting a resumed run may change).
    pub epochs: Option<usize>,
    /// Galaxies per optimiser step.
    pub batch: Option<usize>,
    /// Peak learning rate.
    pub lr: Option<f64>,
    /// Latent dimension D.
    pub latent: Option<usize>,
    /// Weight of the VAE's KL term.
    pub beta: Option<f64>,
    /// Seed of every random choice.
    pub seed: Option<u64>,
    /// Fraction of galaxies held out for validation.
    pub val_fraction: Option<f64>,
    /// Loss weights.
    pub loss: Option<LossMode>,
    /// Epochs without improvement before stopping (0: never).
    pub patience: Option<usize>,
    /// IVAR noise on training inputs.
    pub noise: bool,
    /// Random flips/rotations of training galaxies.
    pub augment: bool,
}

/// The dataset a run trains on, as the plan needs it.
#[derive(Debug, Clone, Copy)]
pub struct DatasetShape<'a> {
    /// Line names, in tensor order.
    pub lines: &'a [String],
    /// Grid side S.
    pub size: usize,
    /// The dataset manifest's hash (a resumed model must have been trained on it).
    pub manifest_hash: &'a str,
}

/// A planned run: its configuration and notes worth telling the user.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The configuration to train with.
    pub config: ModelConfig,
    /// Things the plan adjusted (e.g. the grid size following the dataset).
    pub notes: Vec<String>,
}

/// The configuration for training into `out`: with `resume` and a saved `config.toml` there,
/// that configuration (only `epochs` and `kernel` from `choices` apply), else a fresh one.
///
/// Errors when the saved configuration cannot be read, was trained on another dataset, or the
/// fresh architecture or training settings are invalid for this dataset.
pub fn plan_run(
    choices: &RunChoices,
    dataset: DatasetShape<'_>,
    out: &Path,
    resume: bool,
) -> Result<Plan> {
    let saved = out.join(CONFIG);
    if resume && saved.exists() {
        let text = std::fs::read_to_string(&saved).map_err(|source| ModelError::Io {
            path: saved.clone(),
            source,
        })?;
        let mut config = ModelConfig::from_toml(&text, &saved)?;
        if let Some(epochs) = choices.epochs {
            config.train.epochs = epochs;
        }
        config.arch.cell = choices.kernel;
        if config.data.manifest_hash != dataset.manifest_hash {
            return Err(ModelError::Data(format!(
                "{} was trained on a different dataset (manifest hash {} ≠ {})",
                out.display(),
                config.data.manifest_hash,
                dataset.manifest_hash
            )));
        }
        return Ok(Plan {
            config,
            notes: Vec::new(),
        });
    }
    fresh_plan(choices, dataset)
}

fn fresh_plan(choices: &RunChoices, dataset: DatasetShape<'_>) -> Result<Plan> {
    let mut notes = Vec::new();
    let mut arch = ArchConfig::preset(choices.preset, choices.kind, dataset.lines.len());
    if arch.size != dataset.size {
        notes.push(format!(
            "dataset grid is {0}×{0}; the {1} preset's default is {2}",
            dataset.size,
            preset_name(choices.preset),
            arch.size
        ));
        arch.size = dataset.size;
    }
    if let Some(latent) = choices.latent {
        arch.latent = latent;
    }
    if let Some(beta) = choices.beta {
        arch.beta = beta;
    }
    arch.cell = choices.kernel;
    arch.validate().map_err(|e| match e {
        ModelError::Config(reason) => ModelError::Config(format!(
            "the architecture does not fit this dataset: {reason}"
        )),
        other => other,
    })?;
    let defaults = TrainConfig::default();
    let train = TrainConfig {
        epochs: choices.epochs.unwrap_or(defaults.epochs),
        batch: choices.batch.unwrap_or(defaults.batch),
        lr: choices.lr.unwrap_or(defaults.lr),
        val_fraction: choices.val_fraction.unwrap_or(defaults.val_fraction),
        loss: choices.loss.unwrap_or(defaults.loss),
        patience: choices.patience.unwrap_or(defaults.patience),
        augment: choices.augment,
        noise: choices.noise,
        seed: choices.seed.unwrap_or(defaults.seed),
        ..defaults
    };
    train.validate()?;
    Ok(Plan {
        config: ModelConfig {
            version: env!("CARGO_PKG_VERSION").to_string(),
            arch,
            train,
            data: DataInfo {
                lines: dataset.lines.to_vec(),
                manifest_hash: dataset.manifest_hash.to_string(),
                n_train: 0,
                n_val: 0,
            },
        },
        notes,
    })
}

fn preset_name(preset: Preset) -> &'static str {
    match preset {
        Preset::Cpu => "cpu",
        Preset::Paper => "paper",
    }
}

/// The line printed before training: galaxies, grid, model kind, size and cost, device.
pub fn describe_start(arch: &ArchConfig, n_galaxies: usize, device: &str) -> String {
    format!(
        "train: {} galaxies, {} lines on {}×{}; {:?} with {} parameters, {:.3} GFLOP forward per galaxy; device {}",
        n_galaxies,
        arch.n_lines,
        arch.size,
        arch.size,
        arch.kind,
        parameter_count(arch),
        forward_flops(arch) as f64 / 1e9,
        device
    )
}

/// The lines printed after training: one per epoch, the split, the baseline and the best loss.
pub fn describe_report(report: &TrainReport, out: &Path) -> String {
    let mut text = String::new();
    for row in &report.state.history {
        text.push_str(&format!(
            "epoch {:>3}: train {:.5}  val {:.5}  lr {:.2e}  {:.1} s\n",
            row.epoch, row.train_loss, row.val_loss, row.lr, row.seconds
        ));
    }
    let set = if report.n_val > 0 {
        "validation"
    } else {
        "training"
    };
    text.push_str(&format!(
        "{} train / {} validation galaxies; mean-galaxy baseline {set} loss {:.5}\n",
        report.n_train, report.n_val, report.mean_baseline
    ));
    text.push_str(&format!(
        "best {set} loss {:.5} at epoch {} ({:.3} × baseline){}; model in {}\n",
        report.state.best_val,
        report.state.best_epoch,
        report.state.best_val / report.mean_baseline,
        if report.state.stopped {
            ", stopped early"
        } else {
            ""
        },
        out.display()
    ));
    text
}
