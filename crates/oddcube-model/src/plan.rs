//! Planning a training run: the [`ModelConfig`] of a fresh run (a preset, the dataset's shape
//! and the caller's overrides) or of a resumed one (the model directory's saved `config.toml`,
//! checked against the dataset), and the one-paragraph summaries `oddcube train` prints before
//! and after. The loop itself is [`crate::train()`].

use std::path::Path;

use crate::batches::split;
use crate::checkpoint::CONFIG;
use crate::config::{
    ArchConfig, CellKernelKind, DEFAULT_PRESENTATIONS, DataInfo, LossMode, ModelConfig, ModelKind,
    Preset, TrainConfig,
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
    /// Maximum epochs (the only training setting a resumed run may change); `None` on a fresh
    /// run: [`TrainConfig::default_epochs`] for the dataset's training galaxies.
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
    /// Plate-IFUs of its galaxies, in dataset order (the validation split follows them).
    pub plateifus: &'a [String],
    /// Its flux stretch (recorded in the model: scoring needs data stretched alike).
    pub stretch: oddcube_data::preprocess::Stretch,
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
    let mut plan = fresh_plan(choices, dataset)?;
    if resume {
        // Not an error: a batch job that always passes --resume starts its first call this way.
        plan.notes.push(format!(
            "nothing to resume in {} (no {CONFIG}): starting a new run",
            out.display()
        ));
    }
    Ok(plan)
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
            "the architecture's settings (with this dataset's {} lines on {}×{}) are invalid: \
             {reason}",
            dataset.lines.len(),
            dataset.size,
            dataset.size
        )),
        other => other,
    })?;
    let defaults = TrainConfig::default();
    let val_fraction = choices.val_fraction.unwrap_or(defaults.val_fraction);
    let epochs = match choices.epochs {
        Some(epochs) => epochs,
        None => {
            let n_train = split(dataset.plateifus, val_fraction).0.len();
            let epochs = TrainConfig::default_epochs(n_train);
            if epochs < defaults.epochs {
                notes.push(format!(
                    "{epochs} epochs: the default budget of {DEFAULT_PRESENTATIONS} galaxy \
                     presentations over {n_train} training galaxies (longer training on a large \
                     survey teaches the model its anomalies; --epochs overrides)"
                ));
            }
            epochs
        }
    };
    let train = TrainConfig {
        epochs,
        batch: choices.batch.unwrap_or(defaults.batch),
        lr: choices.lr.unwrap_or(defaults.lr),
        val_fraction,
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
                stretch: Some(dataset.stretch),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn choices(epochs: Option<usize>) -> RunChoices {
        RunChoices {
            preset: Preset::Cpu,
            kind: ModelKind::Ae,
            kernel: CellKernelKind::Fused,
            epochs,
            batch: None,
            lr: None,
            latent: None,
            beta: None,
            seed: None,
            val_fraction: None,
            loss: None,
            patience: None,
            noise: false,
            augment: true,
        }
    }

    fn plateifus(n_galaxies: usize) -> Vec<String> {
        (0..n_galaxies).map(|i| format!("{i}-1901")).collect()
    }

    fn plan_for(n_galaxies: usize, epochs: Option<usize>) -> Plan {
        let lines: Vec<String> = (0..19).map(|l| format!("line{l}")).collect();
        let plateifus = plateifus(n_galaxies);
        let shape = DatasetShape {
            lines: &lines,
            size: 32,
            manifest_hash: "hash",
            plateifus: &plateifus,
            stretch: oddcube_data::preprocess::Stretch::None,
        };
        fresh_plan(&choices(epochs), shape).unwrap()
    }

    #[test]
    fn default_epochs_spend_a_fixed_budget_of_presentations() {
        // The cap (30) binds up to 266 training galaxies: ⌊8000 / 266⌋ = 30, ⌊8000 / 267⌋ = 29.
        assert_eq!(TrainConfig::default_epochs(255), 30);
        assert_eq!(TrainConfig::default_epochs(266), 30);
        assert_eq!(TrainConfig::default_epochs(267), 29);
        // The demo's 340, and 850, 2542 and 8500 training galaxies (1000, 3000, 10 000 in all).
        assert_eq!(TrainConfig::default_epochs(340), 23);
        assert_eq!(TrainConfig::default_epochs(850), 9);
        assert_eq!(TrainConfig::default_epochs(2542), 3);
        assert_eq!(TrainConfig::default_epochs(8500), 1);
        assert_eq!(TrainConfig::default_epochs(0), 30);
        for n in 1..20_000 {
            let e = TrainConfig::default_epochs(n);
            // Within the budget unless held up by the floor of one epoch; one more epoch
            // would exceed it unless held down by the cap.
            assert!(e * n <= DEFAULT_PRESENTATIONS || e == 1, "{n}: {e}");
            assert!((e + 1) * n > DEFAULT_PRESENTATIONS || e == 30, "{n}: {e}");
        }
    }

    #[test]
    fn a_fresh_plan_sizes_its_epochs_to_the_training_split_unless_told() {
        let small = plan_for(300, None);
        assert_eq!(small.config.train.epochs, 30);
        assert!(small.notes.iter().all(|n| !n.contains("presentations")));

        let large = plan_for(3000, None);
        let n_train = split(&plateifus(3000), TrainConfig::default().val_fraction)
            .0
            .len();
        assert_eq!(large.config.train.epochs, DEFAULT_PRESENTATIONS / n_train);
        assert!(large.config.train.epochs < 30);
        let note = large.notes.iter().find(|n| n.contains("presentations"));
        assert!(
            note.is_some_and(|n| n.contains(&n_train.to_string())),
            "{:?}",
            large.notes
        );

        let told = plan_for(3000, Some(30));
        assert_eq!(told.config.train.epochs, 30);
        assert!(told.notes.iter().all(|n| !n.contains("presentations")));
    }
}
