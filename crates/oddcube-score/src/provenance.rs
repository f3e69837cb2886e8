//! The inputs a RESULTS directory came from: the dataset and the model its manifest names. One
//! place answers "which dataset were these results scored from", so `similar`, `plot` and
//! `evaluate` resolve it (and its overrides) the same way.
//!
//! ## Paths in a manifest
//!
//! A RESULTS `manifest.json` records `dataset_dir` and `model_dir` relative to the manifest's own
//! directory (`../dataset`), so a RESULTS directory can be read from any working directory and
//! the whole tree can be moved; a path with no common ancestor but `/` is stored absolute
//! ([`recorded_path`]). oddcube before this rule stored the path as typed, relative to the
//! directory the command ran in, so reading tries, in order ([`resolve_recorded`]): the manifest's
//! directory, the current directory (the old meaning), then each directory above the manifest's
//! (old artifacts read from elsewhere: `oddcube-demo/dataset` recorded in
//! `oddcube-demo/results` is found from any directory). A candidate counts only when it holds
//! the artifact's marker file (`manifest.json` for a dataset, `config.toml` for a model), so an
//! unrelated directory of the same name is not taken. In memory (after
//! [`ResultsManifest::read`]) the paths are usable as they stand.

use std::path::{Component, Path, PathBuf};

use oddcube_data::dataset::{self, Dataset};

use crate::error::{Error, Result};
use crate::results::{ResultsManifest, invalid};

/// The file that marks a dataset directory.
pub const DATASET_MARKER: &str = dataset::MANIFEST_FILE;
/// The file that marks a model directory.
pub const MODEL_MARKER: &str = oddcube_data::artifact::MODEL_MARKER;

/// What a manifest in `manifest_dir` should record for the directory `target` (a path usable
/// from the current directory): relative to `manifest_dir` when both exist and share an ancestor
/// below `/`, absolute when they share only `/`, and `target` as given when either does not
/// exist (e.g. a placeholder such as `(synthetic)`), since nothing can be computed then.
pub fn recorded_path(manifest_dir: &Path, target: &Path) -> String {
    let as_given = || target.display().to_string();
    let (Ok(base), Ok(target_abs)) = (manifest_dir.canonicalize(), target.canonicalize()) else {
        return as_given();
    };
    let base_parts: Vec<Component> = base.components().collect();
    let target_parts: Vec<Component> = target_abs.components().collect();
    let common = base_parts
        .iter()
        .zip(&target_parts)
        .take_while(|(a, b)| a == b)
        .count();
    // Only the root (and on Windows a prefix) in common: a relative path would climb to `/` and
    // break as soon as either side moves, so the absolute path is the better record.
    let shared_below_root = base_parts[..common]
        .iter()
        .any(|c| matches!(c, Component::Normal(_)));
    if !shared_below_root {
        return target_abs.display().to_string();
    }
    let mut relative = PathBuf::new();
    for _ in common..base_parts.len() {
        relative.push("..");
    }
    for part in &target_parts[common..] {
        relative.push(part.as_os_str());
    }
    if relative.as_os_str().is_empty() {
        ".".to_string()
    } else {
        relative.display().to_string()
    }
}

/// `path` with `.` dropped and each `..` cancelling the component before it, without touching
/// the file system. Only used on paths whose base is canonical (no symbolic links), where this
/// is what the operating system would resolve.
fn lexically_normal(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                if !matches!(out.components().next_back(), Some(Component::Normal(_))) || !out.pop()
                {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// The places a path `recorded` in the manifest of `manifest_dir` may mean, in the order they are
/// tried (see the module notes): relative to the manifest's directory, to the current directory,
/// then to each directory above the manifest's. An absolute path means only itself.
pub fn candidates(manifest_dir: &Path, recorded: &str) -> Vec<PathBuf> {
    let path = Path::new(recorded);
    if recorded.is_empty() {
        return Vec::new();
    }
    if path.is_absolute() {
        return vec![path.to_path_buf()];
    }
    // Relative to the canonical directory, so `..` means what it meant when it was written.
    let base = manifest_dir
        .canonicalize()
        .unwrap_or_else(|_| manifest_dir.to_path_buf());
    let mut out = vec![lexically_normal(&base.join(path)), path.to_path_buf()];
    out.extend(
        base.ancestors()
            .skip(1)
            .map(|above| lexically_normal(&above.join(path))),
    );
    out.dedup();
    out
}

/// The directory a path `recorded` in the manifest of `manifest_dir` names: the first of
/// [`candidates`] that holds `marker`, or `recorded` as given when none does (so an error about
/// it names what the manifest says).
pub fn resolve_recorded(manifest_dir: &Path, recorded: &str, marker: &str) -> String {
    candidates(manifest_dir, recorded)
        .into_iter()
        .find(|c| c.join(marker).is_file())
        .map_or_else(|| recorded.to_string(), |c| c.display().to_string())
}

/// The dataset directory of a RESULTS directory: `explicit` when given (a `--data` option), else
/// the `dataset_dir` its manifest records (resolved by [`ResultsManifest::read`]).
pub fn dataset_dir(manifest: &ResultsManifest, explicit: Option<&Path>) -> PathBuf {
    explicit.map_or_else(|| PathBuf::from(&manifest.dataset_dir), Path::to_path_buf)
}

/// The model directory of a RESULTS directory: `explicit` when given (a `--model` option), else
/// the `model_dir` its manifest records (resolved by [`ResultsManifest::read`]).
pub fn model_dir(manifest: &ResultsManifest, explicit: Option<&Path>) -> PathBuf {
    explicit.map_or_else(|| PathBuf::from(&manifest.model_dir), Path::to_path_buf)
}

/// The manifest of the dataset the results were scored from (see [`dataset_dir`]): its lines,
/// grid and normalisation, without reading the cubes. Errors name the manifest file and say
/// whether it is missing (and that `--data` names the dataset) or not a dataset manifest.
pub fn dataset_manifest(
    manifest: &ResultsManifest,
    explicit: Option<&Path>,
) -> Result<(PathBuf, dataset::Manifest)> {
    let dir = dataset_dir(manifest, explicit);
    let path = dir.join(dataset::MANIFEST_FILE);
    let bytes = std::fs::read(&path).map_err(|e| {
        let hint = if explicit.is_none() && e.kind() == std::io::ErrorKind::NotFound {
            " (the dataset the RESULTS manifest records is not there; pass --data DIR)"
        } else {
            ""
        };
        Error::Io {
            path: path.clone(),
            source: std::io::Error::new(e.kind(), format!("{e}{hint}")),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::MANIFEST_FILE;

    /// `root/demo/{results,dataset,model}` with the dataset's and model's marker files.
    fn tree() -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let demo = tmp.path().canonicalize().unwrap().join("demo");
        for (dir, marker) in [
            ("results", None),
            ("dataset", Some(DATASET_MARKER)),
            ("model", Some(MODEL_MARKER)),
        ] {
            std::fs::create_dir_all(demo.join(dir)).unwrap();
            if let Some(marker) = marker {
                std::fs::write(demo.join(dir).join(marker), "{}").unwrap();
            }
        }
        (tmp, demo)
    }

    #[test]
    fn paths_are_recorded_relative_to_the_manifest() {
        let (_tmp, demo) = tree();
        let results = demo.join("results");
        assert_eq!(recorded_path(&results, &demo.join("dataset")), "../dataset");
        assert_eq!(recorded_path(&results, &results), ".");
        assert_eq!(
            recorded_path(&demo, &demo.join("results/../model")),
            "model"
        );
        // Nothing to compute from a path that does not exist: kept as given.
        assert_eq!(
            recorded_path(&results, Path::new("(synthetic)")),
            "(synthetic)"
        );
        assert_eq!(
            recorded_path(&demo.join("missing"), &demo.join("dataset")),
            demo.join("dataset").display().to_string()
        );
        // Only `/` in common: absolute.
        assert_eq!(recorded_path(&results, Path::new("/")), "/");
    }

    #[test]
    fn recorded_paths_resolve_from_anywhere_and_old_ones_still_do() {
        let (_tmp, demo) = tree();
        let results = demo.join("results");
        let dataset = demo.join("dataset").display().to_string();
        // The new record, relative to the manifest.
        assert_eq!(
            resolve_recorded(&results, "../dataset", DATASET_MARKER),
            dataset
        );
        // An old record, relative to the directory `score` ran in (the one above `demo`): found
        // by walking up from the manifest.
        assert_eq!(
            resolve_recorded(&results, "demo/dataset", DATASET_MARKER),
            dataset
        );
        // Absolute records mean themselves.
        assert_eq!(
            resolve_recorded(&results, &dataset, DATASET_MARKER),
            dataset
        );
        // A directory without the marker is not taken: `model` is not a dataset.
        assert_eq!(
            resolve_recorded(&results, "../model", DATASET_MARKER),
            "../model"
        );
        assert_eq!(
            resolve_recorded(&results, "../model", MODEL_MARKER),
            demo.join("model").display().to_string()
        );
        // Unresolvable records stay as written, so errors name what the manifest says.
        assert_eq!(resolve_recorded(&results, "gone", DATASET_MARKER), "gone");
        assert_eq!(resolve_recorded(&results, "", DATASET_MARKER), "");
        let tried = candidates(&results, "d");
        assert_eq!(tried[0], results.join("d"));
        assert_eq!(tried[1], PathBuf::from("d"));
        assert_eq!(tried[2], demo.join("d"));
    }

    #[test]
    fn a_results_manifest_survives_moving_the_tree() {
        let (tmp, demo) = tree();
        let results = demo.join("results");
        let mut manifest: ResultsManifest = serde_json::from_value(serde_json::json!({
            "format": crate::results::RESULTS_FORMAT,
            "oddcube_version": "test",
            "model_dir": demo.join("model"),
            "model_hash": "h",
            "dataset_dir": demo.join("dataset"),
            "dataset_hash": "dh",
            "lines": ["Ha-6564"],
            "size": 2,
            "latent_dim": 2,
            "rank_by": "chi2",
            "fdr": 0.05,
            "knn_k": 1,
            "created_by": "test",
        }))
        .unwrap();
        manifest.write(&results).unwrap();
        let on_disk: serde_json::Value =
            serde_json::from_slice(&std::fs::read(results.join(MANIFEST_FILE)).unwrap()).unwrap();
        assert_eq!(on_disk["dataset_dir"], "../dataset");
        assert_eq!(on_disk["model_dir"], "../model");
        let moved = tmp.path().canonicalize().unwrap().join("moved");
        std::fs::rename(&demo, &moved).unwrap();
        let back = ResultsManifest::read(&moved.join("results")).unwrap();
        assert_eq!(
            back.dataset_dir,
            moved.join("dataset").display().to_string()
        );
        assert_eq!(back.model_dir, moved.join("model").display().to_string());
        assert_eq!(dataset_dir(&back, None), moved.join("dataset"));
        assert_eq!(dataset_dir(&back, Some(Path::new("x"))), PathBuf::from("x"));
        // The dataset's manifest is found (it is `{}`, so not a valid one: the error says so).
        let err = dataset_manifest(&back, None).unwrap_err().to_string();
        assert!(err.contains("not a dataset manifest"), "{err}");
        // A dataset that is gone: the error points at --data.
        manifest.dataset_dir = "nowhere".to_string();
        let err = dataset_manifest(&manifest, None).unwrap_err().to_string();
        assert!(err.contains("--data DIR"), "{err}");
    }

    #[test]
    fn other_directories_given_as_results_are_named() {
        let (_tmp, demo) = tree();
        // A dataset: its manifest has the dataset format tag.
        std::fs::write(
            demo.join("dataset").join(MANIFEST_FILE),
            format!(r#"{{"format": "{}", "lines": []}}"#, dataset::FORMAT),
        )
        .unwrap();
        let err = ResultsManifest::read(&demo.join("dataset"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("this is a dataset directory") && err.contains("oddcube score"),
            "{err}"
        );
        assert!(!err.contains("missing field"), "{err}");
        // A model: no manifest, but a config.toml.
        let err = ResultsManifest::read(&demo.join("model"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("this is a model directory"), "{err}");
        // Anything else: the generic hint, said once.
        let err = ResultsManifest::read(&demo.join("results"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("is this a RESULTS directory"), "{err}");
        // Sharded parts.
        for part in ["part-0-of-2", "part-1-of-2"] {
            std::fs::create_dir(demo.join("results").join(part)).unwrap();
        }
        let err = ResultsManifest::read(&demo.join("results"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("oddcube merge"), "{err}");
    }
}
