//! The evaluation table: every score column judged against ground-truth labels, per anomaly kind
//! and overall (AUROC, AP, P@10/50/100/P@n_pos), ready to serialise as `evaluation.json` and to
//! print as a text table.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::error::{Error, Result, check_len};
use crate::metrics::{RankingMetrics, Split, split_metrics};

/// Name of the split that pools every anomaly kind.
pub const OVERALL: &str = "overall";

/// One line of the table: one score column on one split.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EvaluationRow {
    /// Score column name (e.g. `recon`, `chi2`, `pca_recon`, `lof`).
    pub score: String,
    /// The anomaly kind judged, or [`OVERALL`].
    pub split: String,
    /// The metrics.
    #[serde(flatten)]
    pub metrics: RankingMetrics,
}

/// The whole evaluation, serialisable as `evaluation.json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Evaluation {
    /// Labels treated as normal (the negatives).
    pub normal_labels: Vec<String>,
    /// Anomaly kinds found among the labels (each one a split).
    pub anomaly_kinds: Vec<String>,
    /// Galaxies per label.
    pub label_counts: BTreeMap<String, usize>,
    /// Galaxies with no label, left out of every split.
    pub n_unlabelled: usize,
    /// One row per score column and split: for each score, the kinds in order, then [`OVERALL`].
    pub rows: Vec<EvaluationRow>,
}

/// Evaluates each `(name, scores)` column against `labels` (one per galaxy, `None` = unlabelled;
/// higher score = more anomalous). Splits: each anomaly kind alone against the normals (other
/// kinds excluded), then all anomalies against the normals.
///
/// Errors if a column's length differs from `labels`, a column holds a non-finite score for a
/// labelled galaxy, there are no score columns, none of `normal_labels` occurs among the labels,
/// or no galaxy carries an anomaly label.
pub fn evaluate(
    scores: &[(String, Vec<f64>)],
    labels: &[Option<String>],
    normal_labels: &BTreeSet<String>,
) -> Result<Evaluation> {
    if scores.is_empty() {
        return Err(Error::Empty("the list of score columns".to_string()));
    }
    let labelled: Vec<usize> = (0..labels.len()).filter(|&i| labels[i].is_some()).collect();
    let present: Vec<String> = labelled.iter().filter_map(|&i| labels[i].clone()).collect();
    let mut label_counts = BTreeMap::new();
    for label in &present {
        *label_counts.entry(label.clone()).or_insert(0usize) += 1;
    }
    if !normal_labels.iter().any(|l| label_counts.contains_key(l)) {
        return Err(Error::InvalidParameter {
            name: "normal labels".to_string(),
            value: normal_labels.iter().cloned().collect::<Vec<_>>().join(","),
            reason: format!(
                "none occurs among the labels (present: {})",
                label_counts.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        });
    }
    let anomaly_kinds: Vec<String> = label_counts
        .keys()
        .filter(|l| !normal_labels.contains(*l))
        .cloned()
        .collect();
    if anomaly_kinds.is_empty() {
        return Err(Error::Empty(
            "the set of anomaly labels (every labelled galaxy is normal)".to_string(),
        ));
    }
    let mut rows = Vec::new();
    for (name, column) in scores {
        check_len(
            &format!("score column '{name}'"),
            column.len(),
            labels.len(),
        )?;
        if let Some(&index) = labelled.iter().find(|&&i| !column[i].is_finite()) {
            return Err(Error::NonFinite {
                what: format!("score column '{name}'"),
                index,
            });
        }
        let values: Vec<f64> = labelled.iter().map(|&i| column[i]).collect();
        let splits = anomaly_kinds
            .iter()
            .map(|k| (k.as_str(), Split::Kind(k)))
            .chain([(OVERALL, Split::Overall)]);
        for (split_name, split) in splits {
            let metrics = split_metrics(&values, &present, normal_labels, &split)?;
            rows.push(EvaluationRow {
                score: name.clone(),
                split: split_name.to_string(),
                metrics,
            });
        }
    }
    Ok(Evaluation {
        normal_labels: normal_labels.iter().cloned().collect(),
        anomaly_kinds,
        label_counts,
        n_unlabelled: labels.len() - labelled.len(),
        rows,
    })
}

/// The headline of an `evaluation.json` document for one score column (see
/// [`Evaluation::headline`]). Accepts a bare [`Evaluation`] or a report object that holds one
/// under an `"evaluation"` key (what `oddcube evaluate` writes). Errors only if `text` is neither.
pub fn headline_from_json(text: &str, score: &str) -> Result<String> {
    let json_error = |reason: String| Error::Json {
        what: "evaluation.json".to_string(),
        reason,
    };
    let mut document: serde_json::Value =
        serde_json::from_str(text).map_err(|e| json_error(e.to_string()))?;
    let body = match document.get_mut("evaluation") {
        Some(inner) => inner.take(),
        None => document,
    };
    let evaluation: Evaluation =
        serde_json::from_value(body).map_err(|e| json_error(e.to_string()))?;
    Ok(evaluation.headline(score))
}

impl Evaluation {
    /// A few lines summarising how well `score` ranks the labelled anomalies: overall first, then
    /// each kind (AUROC, AP, precision in the top n_pos). If the evaluation has no rows for
    /// `score`, says so and lists the scores it has, rather than failing.
    pub fn headline(&self, score: &str) -> String {
        let rows: Vec<&EvaluationRow> = self.rows.iter().filter(|r| r.score == score).collect();
        if rows.is_empty() {
            let mut names: Vec<&str> = self.rows.iter().map(|r| r.score.as_str()).collect();
            names.dedup();
            return format!(
                "evaluation.json has no rows for score '{score}' (it has: {})",
                names.join(", ")
            );
        }
        let n_normal: usize = self
            .normal_labels
            .iter()
            .filter_map(|l| self.label_counts.get(l))
            .sum();
        let n_anomalous: usize = self
            .anomaly_kinds
            .iter()
            .filter_map(|k| self.label_counts.get(k))
            .sum();
        let mut out = format!(
            "How well '{score}' ranks the true anomalies ({n_anomalous} anomalous vs {n_normal} normal galaxies):"
        );
        let width = rows
            .iter()
            .map(|r| r.split.chars().count())
            .max()
            .unwrap_or(0);
        let overall_first = rows
            .iter()
            .filter(|r| r.split == OVERALL)
            .chain(rows.iter().filter(|r| r.split != OVERALL));
        for row in overall_first {
            let m = &row.metrics;
            let _ = write!(
                out,
                "\n  {:<width$}  AUROC {:.3}  AP {:.3}  top-{} precision {:.3}",
                row.split, m.auroc, m.average_precision, m.n_positive, m.precision_at_n_positive
            );
        }
        // Baselines (columns named `pca_*`) in one line each, so the deep model's margin shows.
        for row in self
            .rows
            .iter()
            .filter(|r| r.split == OVERALL && r.score != score && r.score.starts_with("pca_"))
        {
            let m = &row.metrics;
            let _ = write!(
                out,
                "\n  baseline {}: overall AUROC {:.3}  AP {:.3}  top-{} precision {:.3}",
                row.score, m.auroc, m.average_precision, m.n_positive, m.precision_at_n_positive
            );
        }
        out
    }

    /// A fixed-width text table of every row (`—` where P@k is undefined for a small split).
    pub fn to_table(&self) -> String {
        let header = [
            "score", "split", "n_pos", "n_neg", "AUROC", "AP", "P@10", "P@50", "P@100", "P@npos",
        ];
        let optional = |v: Option<f64>| v.map_or_else(|| "—".to_string(), |v| format!("{v:.3}"));
        let body: Vec<[String; 10]> = self
            .rows
            .iter()
            .map(|r| {
                let m = &r.metrics;
                [
                    r.score.clone(),
                    r.split.clone(),
                    m.n_positive.to_string(),
                    m.n_negative.to_string(),
                    format!("{:.3}", m.auroc),
                    format!("{:.3}", m.average_precision),
                    optional(m.precision_at_10),
                    optional(m.precision_at_50),
                    optional(m.precision_at_100),
                    format!("{:.3}", m.precision_at_n_positive),
                ]
            })
            .collect();
        let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
        for row in &body {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let mut push_row = |cells: &mut dyn Iterator<Item = &str>| {
            let line: Vec<String> = cells
                .zip(&widths)
                .enumerate()
                .map(|(c, (cell, &w))| {
                    let pad = w - cell.chars().count();
                    // Text columns left-aligned, numbers right-aligned.
                    if c < 2 {
                        format!("{cell}{}", " ".repeat(pad))
                    } else {
                        format!("{}{cell}", " ".repeat(pad))
                    }
                })
                .collect();
            let _ = writeln!(out, "{}", line.join("  ").trim_end());
        };
        push_row(&mut header.iter().copied());
        for row in &body {
            push_row(&mut row.iter().map(String::as_str));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(names: &[&str]) -> Vec<Option<String>> {
        names
            .iter()
            .map(|s| {
                if s.is_empty() {
                    None
                } else {
                    Some(s.to_string())
                }
            })
            .collect()
    }

    #[test]
    fn table_per_kind_and_overall() {
        let labels = labels(&["normal", "agn", "blueberry", "normal", "agn", "", "normal"]);
        let normals: BTreeSet<String> = ["normal".to_string()].into();
        let perfect = vec![0.1, 0.8, 0.9, 0.2, 0.7, 99.0, 0.3];
        let inverted: Vec<f64> = perfect.iter().map(|v| -v).collect();
        let scores = vec![
            ("recon".to_string(), perfect),
            ("chi2".to_string(), inverted),
        ];
        let eval = evaluate(&scores, &labels, &normals).unwrap();
        assert_eq!(eval.anomaly_kinds, vec!["agn", "blueberry"]);
        assert_eq!(eval.n_unlabelled, 1);
        assert_eq!(eval.label_counts["normal"], 3);
        let splits: Vec<(&str, &str)> = eval
            .rows
            .iter()
            .map(|r| (r.score.as_str(), r.split.as_str()))
            .collect();
        assert_eq!(
            splits,
            vec![
                ("recon", "agn"),
                ("recon", "blueberry"),
                ("recon", OVERALL),
                ("chi2", "agn"),
                ("chi2", "blueberry"),
                ("chi2", OVERALL)
            ]
        );
        assert_eq!(eval.rows[0].metrics.n_positive, 2);
        assert_eq!(eval.rows[0].metrics.n_negative, 3);
        assert!(eval.rows.iter().take(3).all(|r| r.metrics.auroc == 1.0));
        assert!(eval.rows.iter().skip(3).all(|r| r.metrics.auroc == 0.0));
        let json = serde_json::to_value(&eval).unwrap();
        assert_eq!(json["rows"][2]["split"], "overall");
        assert_eq!(json["rows"][2]["n_positive"], 3);
        assert!(json["rows"][2]["precision_at_10"].is_null());
        let headline = headline_from_json(&serde_json::to_string(&eval).unwrap(), "recon").unwrap();
        let lines: Vec<&str> = headline.lines().collect();
        assert_eq!(lines.len(), 4, "{headline}");
        assert!(lines[0].contains("3 anomalous vs 3 normal"), "{headline}");
        assert!(
            lines[1].trim_start().starts_with("overall") && lines[1].contains("AUROC 1.000"),
            "{headline}"
        );
        assert!(
            headline_from_json(&serde_json::to_string(&eval).unwrap(), "lof")
                .unwrap()
                .contains("recon, chi2")
        );
        assert!(headline_from_json("{}", "recon").is_err());
        assert!(headline_from_json("not json", "recon").is_err());
        // The report shape `oddcube evaluate` writes, with a baseline column.
        let mut with_baseline = eval.clone();
        let mut baseline_row = eval.rows[2].clone();
        baseline_row.score = "pca_recon".to_string();
        with_baseline.rows.push(baseline_row);
        let report = serde_json::json!({ "results": "r", "evaluation": with_baseline });
        let headline = headline_from_json(&report.to_string(), "recon").unwrap();
        assert_eq!(headline.lines().count(), 5, "{headline}");
        assert!(
            headline
                .lines()
                .last()
                .unwrap()
                .contains("baseline pca_recon: overall AUROC 1.000")
        );
        let table = eval.to_table();
        assert_eq!(table.lines().count(), 7);
        assert!(table.lines().next().unwrap().starts_with("score"));
        assert!(table.contains("blueberry") && table.contains('—'));
    }

    #[test]
    fn errors_are_specific() {
        let labels = labels(&["normal", "agn", "normal"]);
        let normals: BTreeSet<String> = ["normal".to_string()].into();
        let col = |v: Vec<f64>| vec![("recon".to_string(), v)];
        assert!(evaluate(&[], &labels, &normals).is_err());
        let err = evaluate(&col(vec![1.0, 2.0]), &labels, &normals)
            .unwrap_err()
            .to_string();
        assert!(err.contains("recon"), "{err}");
        let err = evaluate(&col(vec![1.0, f64::NAN, 0.0]), &labels, &normals)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("recon") && err.contains("non-finite") && err.contains("index 1"),
            "{err}"
        );
        let others: BTreeSet<String> = ["quiet".to_string()].into();
        let err = evaluate(&col(vec![1.0, 2.0, 0.0]), &labels, &others)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("none occurs") && err.contains("agn, normal"),
            "{err}"
        );
        let only_normal = self::labels(&["normal", "normal"]);
        assert!(evaluate(&col(vec![1.0, 2.0]), &only_normal, &normals).is_err());
    }
}
