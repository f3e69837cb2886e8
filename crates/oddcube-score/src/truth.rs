//! Ground-truth labels for evaluation: reading a labels CSV (an id column and a label column
//! chosen by name) and lining the labels up with the catalogue order.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Error, Result};

fn labels_error(path: &Path, reason: impl Into<String>) -> Error {
    Error::Labels {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Splits one CSV record into fields: comma-separated, fields optionally wrapped in double quotes
/// with `""` for a literal quote (RFC 4180; records do not span lines). Unquoted fields are
/// trimmed of surrounding spaces. Returns `None` on an unterminated quote.
fn split_record(line: &str) -> Option<Vec<String>> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    '"' => break,
                    c => field.push(c),
                }
            }
            while chars.peek().is_some_and(|&c| c != ',') {
                chars.next();
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                field.push(c);
                chars.next();
            }
            field = field.trim().to_string();
        }
        fields.push(field);
        match chars.next() {
            Some(_) => continue,
            None => return Some(fields),
        }
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
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.trim_end_matches('\r')))
        .filter(|(_, line)| !line.trim().is_empty() && !line.starts_with('#'));
    let (header_line, header) = lines
        .next()
        .ok_or_else(|| labels_error(path, "file is empty (no header row)"))?;
    let columns = split_record(header).ok_or_else(|| {
        labels_error(
            path,
            format!("line {header_line}: unterminated quote in the header"),
        )
    })?;
    let find = |name: &str| {
        columns.iter().position(|c| c == name).ok_or_else(|| {
            labels_error(
                path,
                format!(
                    "no column named '{name}' (columns present: {})",
                    columns.join(", ")
                ),
            )
        })
    };
    let id_index = find(id_column)?;
    let label_index = find(label_column)?;
    let mut labels = BTreeMap::new();
    for (line_number, line) in lines {
        let fields = split_record(line)
            .ok_or_else(|| labels_error(path, format!("line {line_number}: unterminated quote")))?;
        let (Some(id), Some(label)) = (fields.get(id_index), fields.get(label_index)) else {
            return Err(labels_error(
                path,
                format!(
                    "line {line_number}: {} fields, but the header has {}",
                    fields.len(),
                    columns.len()
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
