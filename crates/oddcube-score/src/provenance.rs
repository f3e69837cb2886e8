//! The inputs a RESULTS directory came from: the dataset and the model its manifest names. One
//! place answers "which dataset were these results scored from", so `similar`, `plot` and
//! `evaluate` resolve it (and its overrides) the same way.

use std::path::{Path, PathBuf};

use oddcube_data::dataset::{self, Dataset};

use crate::error::{Error, Result};
use crate::results::{ResultsManifest, invalid};

/// The dataset directory of a RESULTS directory: `explicit` when given (a `--data` option), else
/// the `dataset_dir` its manifest records.
pub fn dataset_dir(manifest: &ResultsManifest, explicit: Option<&Path>) -> PathBuf {
    explicit.map_or_else(|| PathBuf::from(&manifest.dataset_dir), Path::to_path_buf)
}

/// The model directory of a RESULTS directory: `explicit` when given (a `--model` option), else
/// the `model_dir` its manifest records.
pub fn model_dir(manifest: &ResultsManifest, explicit: Option<&Path>) -> PathBuf {
    explicit.map_or_else(|| PathBuf::from(&manifest.model_dir), Path::to_path_buf)
}

/// The manifest of the dataset the results were scored from (see [`dataset_dir`]): its lines,
/// grid and normalisation, without reading the cubes. Errors name the manifest file and say
/// whether it is missing or not a dataset manifest.
pub fn dataset_manifest(
    manifest: &ResultsManifest,
    explicit: Option<&Path>,
) -> Result<(PathBuf, dataset::Manifest)> {
    let dir = dataset_dir(manifest, explicit);
    let path = dir.join(dataset::MANIFEST_FILE);
    let bytes = std::fs::read(&path).map_err(|source| Error::Io {
        path: path.clone(),
        source,
    })?;
    let parsed = serde_json::from_slice(&bytes)
        .map_err(|e| invalid(&path, format!("not a dataset manifest: {e}")))?;
    Ok((dir, parsed))
}

/// The dataset the results were scored from, opened whole.
#[derive(Debug)]
pub struct ScoredDataset {
    /// Its directory.
    pub dir: PathBuf,
    /// The dataset.
    pub dataset: Dataset,
    /// Whether its manifest hash is the one the results recorded (false: a different or
    /// re-ingested dataset, so rows may not line up with the scores).
    pub same_as_scored: bool,
}

/// Opens the dataset the results were scored from (see [`dataset_dir`]).
pub fn open_dataset(manifest: &ResultsManifest, explicit: Option<&Path>) -> Result<ScoredDataset> {
    let dir = dataset_dir(manifest, explicit);
    let dataset = Dataset::open(&dir)?;
    let same_as_scored = dataset.manifest_hash() == manifest.dataset_hash;
    Ok(ScoredDataset {
        dir,
        dataset,
        same_as_scored,
    })
}
