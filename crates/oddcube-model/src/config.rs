//! Every size and setting of the network and of training, as serde structs saved to
//! `config.toml`, plus the named presets.

use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// Plain autoencoder or variational autoencoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// Deterministic latent z.
    Ae,
    /// Gaussian latent with μ and log σ² heads and a β-weighted KL term.
    Vae,
}

/// The units of the VAE's KL weight `beta`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KlUnits {
    /// `beta` multiplies the KL as it is: the objective is `Σ w (x − x̂)² / Σ w + β·KL`. The
    /// value of configurations written before `kl_units` existed.
    #[default]
    Absolute,
    /// `beta` is relative to the evidence lower bound of a Gaussian decoder (β = 1: the ELBO;
    /// β < 1: less weight on the prior). The reconstruction term is a per-pixel mean while the
    /// ELBO's is a per-galaxy sum over pixels divided by twice the pixel variance, so the KL
    /// is weighted by `β · 2 s² / W̄` ([`crate::batches::elbo_kl_scale`]) with `W̄` the mean
    /// total loss weight per training galaxy and `s²` the mean-galaxy baseline loss of the
    /// training set (the decoder's variance when it knows nothing about the galaxy). The same
    /// β then means the same trade-off on any grid, line count, loss mode and flux scale.
    Elbo,
}

/// Which implementation computes the ConvLSTM steps and the per-step convs. Both give the same
/// numbers up to floating-point summation order; the choice is about speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CellKernelKind {
    /// Plain candle ops: gates from one candle conv over `concat[x_t, h_{t−1}]`, then candle
    /// element-wise ops; candle's conv2d everywhere else. Runs on every device.
    Reference,
    /// The fused CPU kernels of [`crate::kernels`] (GEMM convs with fused bias/ReLU/upsampling,
    /// a one-pass ConvLSTM step). Falls back to `Reference` on other devices.
    #[default]
    Fused,
}

impl CellKernelKind {
    /// The name used on the command line and in `config.toml`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Reference => "reference",
            Self::Fused => "fused",
        }
    }
}

impl std::str::FromStr for CellKernelKind {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "fused" => Ok(Self::Fused),
            "reference" => Ok(Self::Reference),
            other => Err(ModelError::Config(format!(
                "unknown kernel {other:?} (fused or reference)"
            ))),
        }
    }
}

/// The network's architecture. Shapes: input `[B, T, 1, S, S]`, latent `[B, D]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchConfig {
    /// Autoencoder or VAE.
    pub kind: ModelKind,
    /// Grid side S (must be divisible by `2^downsample`).
    pub size: usize,
    /// Sequence length T: the number of line maps per galaxy.
    pub n_lines: usize,
    /// Number of stride-2 3×3 convs applied to each map before the encoder ConvLSTM (and of
    /// nearest-×2 upsample + conv stages after the decoder ConvLSTM).
    pub downsample: usize,
    /// Channels of the per-step encoder/decoder convs.
    pub conv_channels: usize,
    /// Hidden channels of the stacked encoder ConvLSTM layers (first layer first).
    pub hidden: Vec<usize>,
    /// Hidden channels of the stacked decoder ConvLSTM layers (first layer first).
    pub decoder_hidden: Vec<usize>,
    /// ConvLSTM gate kernel size (odd, "same" padding).
    pub kernel: usize,
    /// Channels of the conv between the final encoder state and the latent, and of the map the
    /// decoder's linear layer produces (the decoder ConvLSTM input at every step).
    pub head_channels: usize,
    /// Latent dimension D.
    pub latent: usize,
    /// Weight of the KL term (VAE only), in the units `kl_units` names. In absolute units it
    /// multiplies a KL summed over latent dimensions against a per-pixel mean reconstruction
    /// loss, so useful values are tiny (about 10⁻⁶ on the demo survey; the 10⁻³ of earlier
    /// presets made the collapsed posterior the optimum). In ELBO units, 1 is the ELBO.
    pub beta: f64,
    /// Units of `beta`. Absolute (the value of configurations written before it existed) or
    /// relative to the Gaussian ELBO (the presets).
    #[serde(default)]
    pub kl_units: KlUnits,
    /// Free bits λ of the KL term (VAE only), nats per latent dimension: the objective uses
    /// `Σ_d max(KL_d, λ)` ([`crate::loss::free_bits_kl`]), so the first λ nats of each
    /// dimension are free. 0 (the value of configurations written before it existed) gives
    /// the plain KL.
    #[serde(default)]
    pub free_bits: f64,
    /// Fraction of all training steps over which the KL weight rises linearly from 0 to
    /// `beta` (VAE only; [`ArchConfig::kl_beta`]). 0 (the value of configurations written
    /// before it existed) applies the full β from the first step.
    #[serde(default)]
    pub kl_warmup: f64,
    /// ConvLSTM cell implementation.
    #[serde(default)]
    pub cell: CellKernelKind,
}

/// The presets' KL weight, in ELBO units ([`KlUnits::Elbo`]).
pub const VAE_BETA: f64 = 1.0;
/// The presets' free bits per latent dimension (nats). Without them one demo seed in five let
/// most of its latent collapse to the prior (20 nats in all where the other four carry 37–48)
/// and reconstructed 1.12× worse than its autoencoder; with 1 nat per dimension it keeps 39 and
/// reconstructs 1.05× worse (docs/model.md, "AE and VAE on the demo dataset").
pub const VAE_FREE_BITS: f64 = 1.0;
/// The presets' KL warm-up, as a fraction of all training steps.
pub const VAE_KL_WARMUP: f64 = 0.5;

/// A named architecture preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// S = 32, 16 conv channels, 32 hidden, D = 32: trains in minutes on two cores.
    Cpu,
    /// S = 64, 64 hidden, D = 128: the paper's scale, meant for a GPU.
    Paper,
}

impl std::str::FromStr for Preset {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cpu" => Ok(Self::Cpu),
            "paper" => Ok(Self::Paper),
            other => Err(ModelError::Config(format!(
                "unknown preset {other:?} (cpu or paper)"
            ))),
        }
    }
}

impl ArchConfig {
    /// The architecture of a preset for `n_lines` lines.
    pub fn preset(preset: Preset, kind: ModelKind, n_lines: usize) -> Self {
        match preset {
            Preset::Cpu => Self {
                kind,
                size: 32,
                n_lines,
                downsample: 2,
                conv_channels: 16,
                hidden: vec![32],
                decoder_hidden: vec![32],
                kernel: 3,
                head_channels: 8,
                latent: 32,
                beta: VAE_BETA,
                kl_units: KlUnits::Elbo,
                free_bits: VAE_FREE_BITS,
                kl_warmup: VAE_KL_WARMUP,
                cell: CellKernelKind::default(),
            },
            Preset::Paper => Self {
                kind,
                size: 64,
                n_lines,
                downsample: 2,
                conv_channels: 32,
                hidden: vec![64],
                decoder_hidden: vec![64],
                kernel: 3,
                head_channels: 16,
                latent: 128,
                beta: VAE_BETA,
                kl_units: KlUnits::Elbo,
                free_bits: VAE_FREE_BITS,
                kl_warmup: VAE_KL_WARMUP,
                cell: CellKernelKind::default(),
            },
        }
    }

    /// The KL weight at optimiser step `step` (0-based) of a run of `total_steps`, in `beta`'s
    /// units: `beta × min(1, (step + 1) / W)` with `W = kl_warmup × total_steps` rounded; `beta`
    /// throughout when W rounds to 0.
    pub fn kl_beta(&self, step: u64, total_steps: u64) -> f64 {
        let warmup = (self.kl_warmup * total_steps as f64).round();
        if warmup < 1.0 {
            return self.beta;
        }
        self.beta * ((step + 1) as f64 / warmup).min(1.0)
    }

    /// Side of the maps the ConvLSTMs work on: `S / 2^downsample`.
    pub fn inner_size(&self) -> usize {
        self.size >> self.downsample
    }

    /// Length of the flattened head map: `head_channels × inner_size²`.
    pub fn head_len(&self) -> usize {
        self.head_channels * self.inner_size() * self.inner_size()
    }

    /// Checks that every size is usable, naming the offending field.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(ModelError::Config(msg));
        if self.size == 0 || self.n_lines == 0 {
            return bad(format!(
                "size ({}) and n_lines ({}) must be positive",
                self.size, self.n_lines
            ));
        }
        if self.downsample > 6 || !self.size.is_multiple_of(1 << self.downsample) {
            return bad(format!(
                "size {} is not divisible by 2^downsample = 2^{}",
                self.size, self.downsample
            ));
        }
        if self.inner_size() == 0 {
            return bad("inner map size is zero".into());
        }
        if self.kernel.is_multiple_of(2) {
            return bad(format!(
                "kernel {} must be odd for \"same\" padding",
                self.kernel
            ));
        }
        if self.hidden.is_empty() || self.decoder_hidden.is_empty() {
            return bad("hidden and decoder_hidden need at least one ConvLSTM layer".into());
        }
        if self
            .hidden
            .iter()
            .chain(&self.decoder_hidden)
            .any(|&h| h == 0)
        {
            return bad("ConvLSTM hidden channels must be positive".into());
        }
        if self.conv_channels == 0 || self.head_channels == 0 || self.latent == 0 {
            return bad("conv_channels, head_channels and latent must be positive".into());
        }
        if !(self.beta.is_finite() && self.beta >= 0.0) {
            return bad(format!(
                "beta {} must be finite and non-negative",
                self.beta
            ));
        }
        if !(self.free_bits.is_finite() && self.free_bits >= 0.0) {
            return bad(format!(
                "free_bits {} must be finite and non-negative",
                self.free_bits
            ));
        }
        if !(0.0..=1.0).contains(&self.kl_warmup) {
            return bad(format!("kl_warmup {} must be in [0, 1]", self.kl_warmup));
        }
        Ok(())
    }
}

/// How pixel weights enter the reconstruction loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LossMode {
    /// Binary weights (w > 0 → 1): the paper's mean squared reconstruction error.
    Mse,
    /// The dataset's inverse-variance weights as given: χ² per unit weight.
    Chi2,
}

impl std::str::FromStr for LossMode {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "mse" => Ok(Self::Mse),
            "chi2" => Ok(Self::Chi2),
            other => Err(ModelError::Config(format!(
                "unknown loss {other:?} (mse or chi2)"
            ))),
        }
    }
}

/// Settings of the training loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Maximum number of epochs. A fresh run that does not choose it gets
    /// [`TrainConfig::default_epochs`] for its number of training galaxies.
    pub epochs: usize,
    /// Galaxies per optimiser step.
    pub batch: usize,
    /// Peak learning rate (after warm-up).
    pub lr: f64,
    /// Decoupled (AdamW) weight decay.
    pub weight_decay: f64,
    /// Fraction of all steps spent warming the learning rate up linearly from 0.
    pub warmup_fraction: f64,
    /// The cosine schedule ends at `lr × min_lr_fraction`.
    pub min_lr_fraction: f64,
    /// Gradients are rescaled so their global L2 norm is at most this (0 disables).
    pub clip_norm: f64,
    /// Approximate fraction of galaxies held out for validation (chosen by plateifu hash).
    pub val_fraction: f64,
    /// Reconstruction loss weights.
    pub loss: LossMode,
    /// Stop after this many epochs without a better validation loss (0 = never stop early).
    pub patience: usize,
    /// Apply a random one of the 8 flips/rotations to every training galaxy.
    pub augment: bool,
    /// Add Gaussian noise drawn from the IVAR weights to training inputs.
    pub noise: bool,
    /// Seed of every random choice (initial weights, shuffling, augmentation, VAE sampling).
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 30,
            batch: 16,
            lr: 2e-3,
            weight_decay: 1e-5,
            warmup_fraction: 0.05,
            min_lr_fraction: 0.02,
            clip_norm: 5.0,
            val_fraction: 0.15,
            loss: LossMode::Mse,
            patience: 8,
            augment: true,
            noise: false,
            seed: 0,
        }
    }
}

/// Galaxy presentations (training galaxies × epochs) a fresh run may spend when it does not
/// choose its epochs. The model learns whatever it is shown often enough, anomalies included: a
/// kind that makes up a fraction `f` of the survey is shown `f × presentations` times whatever
/// the survey's size, so a fixed budget keeps that exposure fixed, where a fixed number of
/// epochs multiplies it by the survey's size. Measured on simulated surveys of 1000 and 3000
/// galaxies (docs/model.md, "Epochs and survey size"): with kinds of 0.5–1.25 % each, 8000
/// ranked them better than 4000–5000 (undertrained) and than 12 000 (the compact bright kinds
/// begin to be learned), and 25 000 or more taught the model all kinds but one; kinds of 2.5 %
/// each are learned already at 8000.
pub const DEFAULT_PRESENTATIONS: usize = 8_000;

impl TrainConfig {
    /// The epochs of a fresh run over `n_train` training galaxies that does not choose them: as
    /// many whole epochs as fit into [`DEFAULT_PRESENTATIONS`], at least 1 and at most the
    /// default 30 (which binds below 267 training galaxies).
    pub fn default_epochs(n_train: usize) -> usize {
        let cap = Self::default().epochs;
        (DEFAULT_PRESENTATIONS / n_train.max(1)).clamp(1, cap)
    }

    /// Checks the settings, naming the offending field.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(ModelError::Config(msg));
        if self.epochs == 0 || self.batch == 0 {
            return bad("epochs and batch must be positive".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!("learning rate {} must be positive", self.lr));
        }
        if !(0.0..1.0).contains(&self.val_fraction) {
            return bad(format!(
                "val_fraction {} must be in [0, 1)",
                self.val_fraction
            ));
        }
        if !(0.0..=1.0).contains(&self.warmup_fraction)
            || !(0.0..=1.0).contains(&self.min_lr_fraction)
        {
            return bad("warmup_fraction and min_lr_fraction must be in [0, 1]".into());
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad("weight_decay must be non-negative".into());
        }
        if !(self.clip_norm.is_finite() && self.clip_norm >= 0.0) {
            return bad("clip_norm must be non-negative".into());
        }
        Ok(())
    }
}

/// What the model was trained on, for provenance.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DataInfo {
    /// Line channel names in sequence order.
    pub lines: Vec<String>,
    /// Hex xxh3-128 of the dataset's manifest.json (empty when trained on in-memory data).
    pub manifest_hash: String,
    /// Training galaxies.
    pub n_train: usize,
    /// Validation galaxies.
    pub n_val: usize,
    /// The flux stretch of the dataset it was trained on (`ingest --stretch`); a model reads
    /// only data stretched the same way. `None` in configurations written before it was recorded.
    #[serde(default)]
    pub stretch: Option<oddcube_data::preprocess::Stretch>,
}

/// The whole `config.toml` of a model directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// oddcube version that wrote it.
    pub version: String,
    /// Network architecture.
    pub arch: ArchConfig,
    /// Training settings.
    pub train: TrainConfig,
    /// Training data provenance.
    pub data: DataInfo,
}

impl ModelConfig {
    /// Serialises to TOML text.
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self)
            .map_err(|e| ModelError::Config(format!("cannot write config: {e}")))
    }

    /// Parses TOML text (`path` only names the file in errors).
    pub fn from_toml(text: &str, path: &std::path::Path) -> Result<Self> {
        let cfg: Self = toml::from_str(text).map_err(|e| ModelError::Corrupt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        cfg.arch.validate()?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_validate_and_roundtrip_through_toml() {
        for preset in [Preset::Cpu, Preset::Paper] {
            let arch = ArchConfig::preset(preset, ModelKind::Vae, 19);
            arch.validate().unwrap();
            let cfg = ModelConfig {
                version: "test".into(),
                arch,
                train: TrainConfig::default(),
                data: DataInfo::default(),
            };
            let text = cfg.to_toml().unwrap();
            let back = ModelConfig::from_toml(&text, std::path::Path::new("x.toml")).unwrap();
            assert_eq!(back, cfg);
        }
    }

    #[test]
    fn kl_warmup_schedule_values() {
        let mut arch = ArchConfig::preset(Preset::Cpu, ModelKind::Vae, 19);
        arch.beta = 2.0;
        arch.kl_warmup = 0.25;
        // 100 steps, 25 of warm-up: step k (0-based) gets β (k + 1) / 25.
        let at = |step| arch.kl_beta(step, 100);
        assert!((at(0) - 2.0 / 25.0).abs() < 1e-12, "{}", at(0));
        assert!((at(11) - 2.0 * 12.0 / 25.0).abs() < 1e-12, "{}", at(11));
        assert_eq!(at(24), 2.0);
        assert_eq!(at(25), 2.0);
        assert_eq!(at(99), 2.0);
        assert!((0..99).all(|k| at(k) <= at(k + 1)));
        // No warm-up, or one shorter than a step: the full β from the first step.
        arch.kl_warmup = 0.0;
        assert_eq!(arch.kl_beta(0, 100), 2.0);
        arch.kl_warmup = 0.004;
        assert_eq!(arch.kl_beta(0, 100), 2.0);
        arch.kl_warmup = 1.5;
        assert!(arch.validate().is_err());
        arch.kl_warmup = 0.3;
        arch.free_bits = -1.0;
        assert!(arch.validate().is_err());
    }

    #[test]
    fn vae_presets_use_elbo_units_and_a_warm_up() {
        for preset in [Preset::Cpu, Preset::Paper] {
            let arch = ArchConfig::preset(preset, ModelKind::Vae, 19);
            assert_eq!(arch.kl_units, KlUnits::Elbo);
            assert!(arch.kl_warmup > 0.0 && arch.beta > 0.0);
        }
    }

    /// A `config.toml` written before the VAE objective fields existed (a real one, from
    /// `oddcube train --model vae` at commit 0fe4c9d) still loads, with the objective it was
    /// trained with: absolute β, no free bits, no warm-up.
    #[test]
    fn configs_without_the_vae_objective_fields_load_with_the_old_objective() {
        let old = r#"version = "0.1.0"

[arch]
kind = "vae"
size = 32
n_lines = 19
downsample = 2
conv_channels = 16
hidden = [32]
decoder_hidden = [32]
kernel = 3
head_channels = 8
latent = 32
beta = 0.001
cell = "fused"

[train]
epochs = 30
batch = 16
lr = 0.002
weight_decay = 0.00001
warmup_fraction = 0.05
min_lr_fraction = 0.02
clip_norm = 5.0
val_fraction = 0.15
loss = "mse"
patience = 8
augment = true
noise = false
seed = 2

[data]
lines = ["Ha-6564", "NII-6585"]
manifest_hash = "1c41e8a0174f818ddd1805bda4aef2d1"
n_train = 167
n_val = 33
"#;
        let cfg = ModelConfig::from_toml(old, std::path::Path::new("config.toml")).unwrap();
        assert_eq!(cfg.arch.beta, 0.001);
        assert_eq!(cfg.arch.kl_units, KlUnits::Absolute);
        assert_eq!(cfg.arch.free_bits, 0.0);
        assert_eq!(cfg.arch.kl_warmup, 0.0);
        assert_eq!(cfg.arch.kl_beta(0, 100), 0.001);
    }

    #[test]
    fn bad_sizes_are_rejected() {
        let mut arch = ArchConfig::preset(Preset::Cpu, ModelKind::Ae, 19);
        arch.size = 30;
        arch.downsample = 2;
        assert!(arch.validate().is_err());
        let mut arch = ArchConfig::preset(Preset::Cpu, ModelKind::Ae, 19);
        arch.kernel = 4;
        assert!(arch.validate().is_err());
    }
}
