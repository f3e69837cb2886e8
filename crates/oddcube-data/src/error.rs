//! `DataError`: every way reading, preprocessing or storing galaxy data can fail.
//!
//! Each variant that concerns an input file carries its path so a batch run can print one line
//! per bad file ("PATH: reason") and record the same text in `skipped.csv`.

use std::path::PathBuf;

/// Errors of the oddcube-data crate.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be opened or read.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating-system error.
        #[source]
        source: std::io::Error,
    },
    /// The file starts with the gzip magic bytes but does not inflate (truncated or corrupt).
    #[error("{path}: bad gzip stream: {reason}")]
    Gzip {
        /// The file.
        path: PathBuf,
        /// What inflating reported.
        reason: String,
    },
    /// The bytes are not a FITS file, or its structure is broken (bad header, truncated data).
    #[error("{path}: not a valid FITS file: {reason}")]
    Fits {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A required HDU is absent.
    #[error("{path}: no HDU with EXTNAME {extname} (a MaNGA DAP MAPS file has one)")]
    MissingHdu {
        /// The file.
        path: PathBuf,
        /// The EXTNAME looked for.
        extname: String,
    },
    /// An HDU exists but its shape, type or cards are not what a MAPS file holds.
    #[error("{path}: HDU {extname}: {reason}")]
    BadHdu {
        /// The file.
        path: PathBuf,
        /// The HDU's EXTNAME.
        extname: String,
        /// What is wrong.
        reason: String,
    },
    /// A line of the requested line set is not among the file's channels.
    #[error(
        "{path}: line {line} is not in this file{}; it has: {available}",
        crate::lines::missing_line_hint(&available.split(',').map(str::to_string).collect::<Vec<_>>())
    )]
    MissingLine {
        /// The file.
        path: PathBuf,
        /// The missing line.
        line: String,
        /// Comma-separated channel names the file has.
        available: String,
    },
    /// Preprocessing left nothing usable (no good spaxel, no positive flux).
    #[error("{path}: {reason}")]
    NoUsableData {
        /// The file.
        path: PathBuf,
        /// Why nothing is usable.
        reason: String,
    },
    /// An input path given on the command line is unusable (nonexistent, empty directory,
    /// glob without matches, not a regular file).
    #[error("{path}: {reason}")]
    BadInput {
        /// The path as given.
        path: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },
    /// A dataset directory is missing an artifact or its artifacts disagree.
    #[error("dataset {path}: {reason}")]
    Dataset {
        /// The dataset directory or artifact.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Writing an artifact failed.
    #[error("cannot write {path}: {reason}")]
    Write {
        /// The artifact being written.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// A setting is out of range (e.g. grid size 0).
    #[error("invalid setting: {0}")]
    Invalid(String),
}

impl DataError {
    /// The reason alone, without the leading path, for tables that have a path column.
    pub fn reason(&self) -> String {
        let text = self.to_string();
        let path = match self {
            DataError::Io { path, .. }
            | DataError::Gzip { path, .. }
            | DataError::Fits { path, .. }
            | DataError::MissingHdu { path, .. }
            | DataError::BadHdu { path, .. }
            | DataError::MissingLine { path, .. }
            | DataError::NoUsableData { path, .. }
            | DataError::BadInput { path, .. } => path.display().to_string(),
            _ => return text,
        };
        text.strip_prefix(&format!("{path}: "))
            .map(str::to_string)
            .unwrap_or(text)
    }
}
