//! oddcube-model: the ConvLSTM autoencoder (or VAE) on candle that learns what ordinary galaxies'
//! line-map cubes look like, how it is trained, saved, loaded and timed.
//!
//! It owns a model directory (`config.toml`, `best.safetensors`, `last.ckpt.safetensors`,
//! `history.csv`) and reads only oddcube-data's [`Cubes`](oddcube_data::Cubes); scoring lives in
//! oddcube-score, which reaches a trained model through its `Autoencoder` trait (the adapter is in
//! the `oddcube` crate), so nothing downstream compiles candle unless it asks for it.
//!
//! Where to start:
//!
//! - [`ModelConfig`] ([`config`]): the architecture ([`ArchConfig`], [`ModelKind`], the `cpu` and
//!   `paper` [`Preset`]s) and the training settings, stored as the model's `config.toml`.
//! - [`train()`] ([`train`](mod@train)): the training loop — validation split, batches,
//!   augmentation, AdamW with a warm-up + cosine schedule, best/last checkpoints, resume.
//! - [`Model`] ([`infer`]): a trained model loaded from its directory; `encode`, `reconstruct`,
//!   `encode_reconstruct` for later stages.
//! - [`network`]: the encoder (convs, then ConvLSTM layers reading the lines in wavelength order),
//!   the latent head and the decoder; [`cell`] the ConvLSTM cell behind the [`cell::CellKernel`]
//!   trait; [`kernels`] the fused CPU kernels (patch gather + GEMM convs, fused ConvLSTM steps).
//! - [`batches`]: from cubes to model batches (validation split, masks, augmentation, loss
//!   weights, the dataset-mean baseline); [`augment`] the D4 symmetries and IVAR noise; [`loss`]
//!   the IVAR-weighted objective; [`optim`] AdamW with inspectable state.
//! - [`plan`]: the configuration of a fresh or resumed run from a preset and overrides, and the
//!   summaries `oddcube train` prints.
//! - [`checkpoint`]: the model directory's files, written atomically; [`device`] ([`DeviceSpec`])
//!   picking CPU or CUDA by name; [`bench`](mod@bench) and [`flops`] timing and FLOP counts for
//!   `oddcube bench`; [`synthetic`] smooth synthetic galaxies for tests and benchmarks.
//!
//! `docs/model.md` describes the network and its training; `docs/kernels.md` the CPU kernels.

pub mod augment;
pub mod batches;
pub mod bench;
pub mod cell;
pub mod checkpoint;
pub mod config;
pub mod device;
pub mod error;
pub mod flops;
pub mod infer;
pub mod kernels;
pub mod loss;
pub mod network;
pub mod optim;
pub mod plan;
pub mod synthetic;
pub mod train;

pub use config::{ArchConfig, DataInfo, LossMode, ModelConfig, ModelKind, Preset, TrainConfig};
pub use device::{DeviceSpec, select_device};
pub use error::ModelError;
pub use infer::Model;
pub use train::{TrainOptions, TrainReport, train};
