//! Ground-truth labels for evaluation: reading a labels CSV (an id column and a label column
//! chosen by name) and lining the labels up with the catalogue order.

use std::collections::BTreeMap;
use std::path::Path;

use oddcube_data::csv::Table;

use crate::error::{Error, Result};

fn labels_error(path: &Path, reason: impl Into<String>) -> Error {
    Error::Labels {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Reads `path`, a CSV file with a header row, and returns `id → label` from the columns named
/// `id_column` and `label_column`.
///
/// Blank lines and lines starting with `#` are skipped; a UTF-8 byte-order mark and CRLF line ends
/// are accepted. Rows with an empty id are errors; rows with an empty label are kept out (the
/// galaxy is treated as unlabelled). Errors name the file and, as relevant, the missing column
/// (listing the columns present), the line number of a short or malformed row, or a galaxy given
/// two different labels.
pub fn read_labels_csv(
    path: &Path,
    id_column: &str,
    label_column: &str,
) -> Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let table = Table::parse(&text).map_err(|reason| labels_error(path, reason))?;
    let id_index = table
        .column(id_column)
        .map_err(|reason| labels_error(path, reason))?;
    let label_index = table
        .column(label_column)
        .map_err(|reason| labels_error(path, reason))?;
    let mut labels = BTreeMap::new();
    for record in &table.records {
        let line_number = record.line;
        let (Some(id), Some(label)) = (record.fields.get(id_index), record.fields.get(label_index))
        else {
            return Err(labels_error(
                path,
                format!(
                    "line {line_number}: {} fields, but the header has {}",
                    record.fields.len(),
                    table.columns.len()
                ),
            ));
        };
        if id.is_empty() {
            return Err(labels_error(
                path,
                format!("line {line_number}: empty '{id_column}'"),
            ));
        }
        if label.is_empty() {
            continue;
        }
        if let Some(previous) = labels.insert(id.clone(), label.clone())
            && previous != *label
        {
            return Err(labels_error(
                path,
                format!("line {line_number}: '{id}' is labelled both '{previous}' and '{label}'"),
            ));
        }
    }
    Ok(labels)
}

/// The label of each catalogue galaxy (in `ids` order), `None` where the labels lack it.
pub fn align_labels(ids: &[String], labels: &BTreeMap<String, String>) -> Vec<Option<String>> {
    ids.iter().map(|id| labels.get(id).cloned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &tempfile::TempDir, text: &str) -> std::path::PathBuf {
        let path = dir.path().join("labels.csv");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn reads_named_columns_with_quotes_bom_and_crlf() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            &dir,
            "\u{feff}# simulated truth\r\nplateifu,kind,note\r\n7443-12703,normal,\"a, b\"\r\n\r\n\"8485-1901\",\"sey\"\"fert\",x\r\n8000-1,,unlabelled\r\n",
        );
        let labels = read_labels_csv(&path, "plateifu", "kind").unwrap();
        assert_eq!(labels.len(), 2);
        assert_eq!(labels["7443-12703"], "normal");
        assert_eq!(labels["8485-1901"], "sey\"fert");
        let aligned = align_labels(&["8000-1".to_string(), "7443-12703".to_string()], &labels);
        assert_eq!(aligned, vec![None, Some("normal".to_string())]);
    }

    #[test]
    fn errors_name_file_and_problem() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "plateifu,kind\n1-1,normal\n");
        let err = read_labels_csv(&path, "plateifu", "label")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("labels.csv") && err.contains("'label'") && err.contains("plateifu, kind"),
            "{err}"
        );
        let path = write(&dir, "plateifu,kind\n1-1\n");
        let err = read_labels_csv(&path, "plateifu", "kind")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2"), "{err}");
        let path = write(&dir, "plateifu,kind\n1-1,a\n1-1,b\n");
        assert!(
            read_labels_csv(&path, "plateifu", "kind")
                .unwrap_err()
                .to_string()
                .contains("both")
        );
        let path = write(&dir, "plateifu,kind\n\"1-1,a\n");
        assert!(
            read_labels_csv(&path, "plateifu", "kind")
                .unwrap_err()
                .to_string()
                .contains("unterminated")
        );
        let path = write(&dir, "");
        assert!(
            read_labels_csv(&path, "plateifu", "kind")
                .unwrap_err()
                .to_string()
                .contains("empty")
        );
        assert!(matches!(
            read_labels_csv(&dir.path().join("nope.csv"), "a", "b"),
            Err(Error::Io { .. })
        ));
    }
}
