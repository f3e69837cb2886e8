//! oddcube-model: the ConvLSTM autoencoder / VAE on candle — architecture configuration,
//! network, loss, augmentation, training loop with checkpoints, inference and benchmark.

pub mod augment;
pub mod bench;
pub mod cell;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod device;
pub mod error;
pub mod flops;
pub mod infer;
pub mod kernels;
pub mod loss;
pub mod network;
pub mod optim;
pub mod synthetic;
pub mod train;

pub use config::{ArchConfig, DataInfo, LossMode, ModelConfig, ModelKind, Preset, TrainConfig};
pub use device::select_device;
pub use error::ModelError;
pub use infer::Model;
pub use train::{TrainOptions, TrainReport, train};
