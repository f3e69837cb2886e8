//! Which of oddcube's artifacts a directory already holds, so that no command writes one kind
//! over another: `score --out` pointed at a dataset would replace the dataset's `manifest.json`,
//! `ingest --out` pointed at RESULTS would replace theirs, and neither could be read again.

use std::path::Path;

use crate::error::DataError;

/// The file that marks a model directory (`oddcube train` writes it first).
pub const MODEL_MARKER: &str = "config.toml";

/// The directories oddcube writes, each recognised by its marker file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArtifactKind {
    /// A dataset: `manifest.json` of format `oddcube-dataset/…` (written by `oddcube ingest`).
    Dataset,
    /// RESULTS: `manifest.json` of format `oddcube-results/…` (written by `oddcube score`).
    Results,
    /// A model: `config.toml` with an `[arch]` table (written by `oddcube train`).
    Model,
}

impl ArtifactKind {
    /// What the kind is called in messages, with the command that writes it.
    pub fn describe(self) -> &'static str {
        match self {
            ArtifactKind::Dataset => "a dataset (written by `oddcube ingest`)",
            ArtifactKind::Results => "RESULTS (written by `oddcube score`)",
            ArtifactKind::Model => "a model (written by `oddcube train`)",
        }
    }

    /// What `dir` holds, by its marker files; `None` when it does not exist or holds none of
    /// oddcube's artifacts (another tool's `config.toml`, a `manifest.json` that cannot be read
    /// or names another format: left to the reader to judge).
    pub fn of_dir(dir: &Path) -> Option<ArtifactKind> {
        let is_model = std::fs::read_to_string(dir.join(MODEL_MARKER))
            .is_ok_and(|text| text.lines().any(|l| l.trim() == "[arch]"));
        if is_model {
            return Some(ArtifactKind::Model);
        }
        let bytes = std::fs::read(dir.join(crate::dataset::MANIFEST_FILE)).ok()?;
        let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        match value.get("format").and_then(|f| f.as_str()) {
            Some(f) if f.starts_with("oddcube-dataset") => Some(ArtifactKind::Dataset),
            Some(f) if f.starts_with("oddcube-results") => Some(ArtifactKind::Results),
            Some(_) => None,
            // RESULTS written before the manifest named its format.
            None => (value.get("model_hash").is_some() && value.get("dataset_hash").is_some())
                .then_some(ArtifactKind::Results),
        }
    }
}

/// Errors, naming `dir` and what it holds, when it already holds another kind of artifact than
/// the `writing` one; a missing, empty or foreign directory, or one of the same kind (which is
/// replaced, as a rerun expects), passes.
pub fn check_output_dir(dir: &Path, writing: ArtifactKind) -> Result<(), DataError> {
    match ArtifactKind::of_dir(dir) {
        Some(held) if held != writing => Err(DataError::Write {
            path: dir.to_path_buf(),
            reason: format!(
                "this directory holds {}; writing {} into it would overwrite it — choose another \
                 output directory",
                held.describe(),
                writing.describe()
            ),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(file: &str, text: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(file), text).unwrap();
        dir
    }

    #[test]
    fn each_kind_is_recognised_by_its_marker() {
        let dataset = dir_with("manifest.json", r#"{"format": "oddcube-dataset/1"}"#);
        let results = dir_with("manifest.json", r#"{"format": "oddcube-results/1"}"#);
        let model = dir_with(
            "config.toml",
            "version = \"0.1.0\"\n\n[arch]\nkind = \"ae\"\n",
        );
        let old_results = dir_with(
            "manifest.json",
            r#"{"model_hash": "a", "dataset_hash": "b"}"#,
        );
        let other_tool = dir_with("config.toml", "[tool]\nname = \"x\"\n");
        let foreign = dir_with("manifest.json", r#"{"name": "something else"}"#);
        let broken = dir_with("manifest.json", "{not json");
        let empty = tempfile::tempdir().unwrap();
        let kind = ArtifactKind::of_dir;
        assert_eq!(kind(dataset.path()), Some(ArtifactKind::Dataset));
        assert_eq!(kind(results.path()), Some(ArtifactKind::Results));
        assert_eq!(kind(model.path()), Some(ArtifactKind::Model));
        assert_eq!(kind(old_results.path()), Some(ArtifactKind::Results));
        assert_eq!(kind(other_tool.path()), None);
        assert_eq!(kind(foreign.path()), None);
        assert_eq!(kind(broken.path()), None);
        assert_eq!(kind(empty.path()), None);
        assert_eq!(kind(&empty.path().join("missing")), None);
    }

    #[test]
    fn another_kind_is_refused_and_the_same_kind_passes() {
        let dataset = dir_with("manifest.json", r#"{"format": "oddcube-dataset/1"}"#);
        let err = check_output_dir(dataset.path(), ArtifactKind::Results)
            .unwrap_err()
            .to_string();
        assert!(err.contains(&dataset.path().display().to_string()), "{err}");
        assert!(err.contains("holds a dataset"), "{err}");
        assert!(err.contains("choose another output directory"), "{err}");
        assert!(check_output_dir(dataset.path(), ArtifactKind::Dataset).is_ok());
        let model = dir_with("config.toml", "[arch]\n");
        assert!(check_output_dir(model.path(), ArtifactKind::Results).is_err());
        assert!(check_output_dir(model.path(), ArtifactKind::Dataset).is_err());
        assert!(check_output_dir(model.path(), ArtifactKind::Model).is_ok());
        let fresh = tempfile::tempdir().unwrap();
        assert!(check_output_dir(&fresh.path().join("new"), ArtifactKind::Model).is_ok());
    }
}
