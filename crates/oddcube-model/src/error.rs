//! The error type of the model crate: everything that can go wrong building, training, saving or
//! loading a network.

use std::path::PathBuf;

/// Errors from model construction, training, checkpoints and inference.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A tensor operation failed inside candle.
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A configuration value is unusable (names the field and the reason).
    #[error("invalid model configuration: {0}")]
    Config(String),
    /// The data does not fit the model (grid size, line count, empty set).
    #[error("data does not fit the model: {0}")]
    Data(String),
    /// A saved file exists but cannot be understood.
    #[error("{path}: {reason}")]
    Corrupt {
        /// The file involved.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The requested compute device is not available in this build or on this machine.
    #[error("device unavailable: {0}")]
    Device(String),
    /// Training produced a non-finite loss.
    #[error("training diverged: {0}")]
    Diverged(String),
}

impl ModelError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result alias for the model crate.
pub type Result<T> = std::result::Result<T, ModelError>;
