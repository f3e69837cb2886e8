//! The error type of oddcube-score, which oddcube-explore shares: each variant names the offending input.

use std::path::PathBuf;

/// Everything that can go wrong in scoring, search and evaluation. Each variant names the
/// offending input so the CLI can print it without extra context.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Two inputs that must describe the same items have different lengths.
    #[error("length mismatch: {what} has {got} entries, expected {expected}")]
    LengthMismatch {
        /// Which input was wrong.
        what: String,
        /// Its length.
        got: usize,
        /// The length it should have had.
        expected: usize,
    },
    /// A matrix buffer does not match its declared shape.
    #[error("shape mismatch: {what}: {len} values cannot be a [{rows}, {cols}] matrix")]
    Shape {
        /// Which matrix.
        what: String,
        /// Number of values supplied.
        len: usize,
        /// Declared rows.
        rows: usize,
        /// Declared columns.
        cols: usize,
    },
    /// A neighbour/component count is out of range for the data.
    #[error("invalid k = {k}: {reason}")]
    InvalidK {
        /// The requested count.
        k: usize,
        /// Why it cannot be used.
        reason: String,
    },
    /// A score or value that must be finite is NaN or infinite.
    #[error("{what} contains a non-finite value at index {index}")]
    NonFinite {
        /// Which input.
        what: String,
        /// First offending index.
        index: usize,
    },
    /// A ranking metric needs both positives and negatives.
    #[error(
        "{what}: need at least one positive and one negative (got {positives} positives, {negatives} negatives)"
    )]
    SingleClass {
        /// Which evaluation.
        what: String,
        /// Number of positives.
        positives: usize,
        /// Number of negatives.
        negatives: usize,
    },
    /// An input that must not be empty is empty.
    #[error("{0} is empty")]
    Empty(String),
    /// A parameter outside its valid range.
    #[error("invalid parameter {name} = {value}: {reason}")]
    InvalidParameter {
        /// Parameter name.
        name: String,
        /// The value given, formatted.
        value: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A file is not a valid .npy array of the expected kind.
    #[error("{path}: {reason}")]
    Npy {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A labels file is malformed or lacks a requested column.
    #[error("{path}: {reason}")]
    Labels {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A JSON document does not have the expected structure.
    #[error("{what}: {reason}")]
    Json {
        /// Which document.
        what: String,
        /// The parser's complaint.
        reason: String,
    },
    /// A dataset (an oddcube-data artifact) could not be read; the error names its file.
    #[error(transparent)]
    Data(#[from] oddcube_data::DataError),
    /// An I/O failure on a named file.
    #[error("{path}: {source}")]
    Io {
        /// The file being read or written.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Fails with [`Error::NonFinite`] at the first NaN/infinite value.
pub fn check_finite(what: &str, values: &[f64]) -> Result<()> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(Error::NonFinite {
            what: what.to_string(),
            index,
        }),
        None => Ok(()),
    }
}

/// Fails with [`Error::LengthMismatch`] unless `got == expected`.
pub fn check_len(what: &str, got: usize, expected: usize) -> Result<()> {
    if got == expected {
        Ok(())
    } else {
        Err(Error::LengthMismatch {
            what: what.to_string(),
            got,
            expected,
        })
    }
}
