//! Judging scores against ground-truth labels (`oddcube evaluate`): which catalogue columns are
//! scores ([`SCORE_COLUMNS`]), which labels count as normal ([`normal_labels`]), the evaluation
//! table — every score column per anomaly kind and overall (AUROC, AP, P@10/50/100/P@n_pos) —
//! and [`evaluate_results`], which runs the whole judgement of a RESULTS directory next to a PCA
//! baseline and latent neighbour purity, written as `evaluation.json`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use oddcube_data::Progress;
use oddcube_data::dataset::Dataset;

use crate::anomaly_map::AnomalyMaps;
use crate::error::{Error, Result, check_len};
use crate::knn::{LatentView, Metric, all_nearest};
use crate::localization::{
    FlagReport, Localization, flag_report, localization, read_truth_regions,
};
use crate::metrics::{RankingMetrics, Split, split_metrics};
use crate::pca::{PcaModel, PcaOptions};
use crate::provenance::{dataset_dir, open_dataset};
use crate::purity::{PurityReport, neighbour_purity};
use crate::results::{Catalog, Results, invalid, write_atomic};
use crate::truth::{align_labels, read_labels_csv};

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

/// The catalogue columns that are anomaly scores (higher = more anomalous), in the order they
/// are judged, plotted and listed. A column is a score by being named here, not by its type: the
/// catalogue also holds floats that are not scores (coordinates, p- and q-values, per-line
/// shares). Whoever adds a score column to the catalogue adds its name here.
pub const SCORE_COLUMNS: [&str; 8] = [
    "score", "pooled", "global", "local", "recon", "chi2", "knn_dist", "lof",
];

/// The score columns [`SCORE_COLUMNS`] lists that `catalog` has as float columns, in that order.
pub fn score_columns(catalog: &Catalog) -> Vec<String> {
    SCORE_COLUMNS
        .iter()
        .filter(|name| catalog.f64(name).is_some())
        .map(|name| name.to_string())
        .collect()
}

/// Labels treated as normal when neither the caller nor an `is_anomaly` column says otherwise:
/// the simulator's ordinary kinds and the non-AGN BPT classes.
pub const DEFAULT_NORMAL_LABELS: [&str; 5] =
    ["normal", "star_forming", "retired", "sf", "composite"];

/// Where the normal labels of an evaluation came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormalSource {
    /// Given by the caller (`--normal`).
    Given,
    /// The labels whose rows all have `is_anomaly` false in the labels file.
    IsAnomalyColumn,
    /// [`DEFAULT_NORMAL_LABELS`].
    Defaults,
}

/// The labels that count as normal: `given` when there is one (blank entries dropped), else the
/// labels of `labels` (id → label) whose rows all have a false `is_anomaly` (`0`, `false`, `no`,
/// or blank) in the labels file at `path` when it has that column, else
/// [`DEFAULT_NORMAL_LABELS`]. An `is_anomaly` value that is none of those nor `1`, `true`,
/// `yes` is an error naming the file, the galaxy and the value.
pub fn normal_labels(
    given: Option<&[String]>,
    path: &Path,
    id_column: &str,
    labels: &BTreeMap<String, String>,
) -> Result<(BTreeSet<String>, NormalSource)> {
    if let Some(given) = given {
        let normal = given
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        return Ok((normal, NormalSource::Given));
    }
    // A file without the column (or unreadable a second time) simply falls through.
    if let Ok(flags) = read_labels_csv(path, id_column, "is_anomaly") {
        let mut anomalous: BTreeMap<&str, bool> = BTreeMap::new();
        for (id, label) in labels {
            let flag = match flags.get(id).map(|f| f.trim().to_ascii_lowercase()) {
                None => false,
                Some(f) => match f.as_str() {
                    "1" | "true" | "yes" => true,
                    "0" | "false" | "no" | "" => false,
                    _ => {
                        return Err(invalid(
                            path,
                            format!(
                                "is_anomaly of {id} is {:?}: expected 1/0, true/false or yes/no",
                                flags[id]
                            ),
                        ));
                    }
                },
            };
            *anomalous.entry(label.as_str()).or_insert(false) |= flag;
        }
        let normal: BTreeSet<String> = anomalous
            .iter()
            .filter(|(_, a)| !**a)
            .map(|(l, _)| l.to_string())
            .collect();
        if !normal.is_empty() {
            return Ok((normal, NormalSource::IsAnomalyColumn));
        }
    }
    let defaults = DEFAULT_NORMAL_LABELS
        .iter()
        .map(|s| s.to_string())
        .collect();
    Ok((defaults, NormalSource::Defaults))
}

/// A named score column: one score per catalogue galaxy.
pub type ScoreColumn = (String, Vec<f64>);

/// What `oddcube evaluate` is asked to do.
#[derive(Debug, Clone)]
pub struct EvaluateOptions {
    /// CSV of labels (e.g. the simulator's `truth.csv`, or `bpt.csv`).
    pub labels: PathBuf,
    /// Column of the labels file holding the plate-ifu.
    pub id_column: String,
    /// Column of the labels file holding the label.
    pub label_column: String,
    /// Labels that count as normal; `None`: see [`normal_labels`].
    pub normal: Option<Vec<String>>,
    /// Dataset for the PCA baseline; `None`: the one the results were scored from.
    pub data: Option<PathBuf>,
    /// Whether to fit and judge the PCA baseline.
    pub baseline: bool,
    /// Principal components of the PCA baseline.
    pub pca_components: usize,
    /// Neighbours for the neighbour-purity measure (none when 0, or when there are no more
    /// labelled galaxies than this).
    pub purity_k: usize,
}

/// The PCA baseline an evaluation was judged next to.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Baseline {
    /// Always `pca`.
    pub method: &'static str,
    /// The dataset it was fitted on.
    pub dataset: String,
    /// Principal components kept.
    pub components: usize,
    /// Fraction of the variance each component explains.
    pub explained_variance_ratio: Vec<f64>,
}

/// An evaluation of a RESULTS directory, as `evaluation.json` holds it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EvaluationReport {
    /// The RESULTS directory judged.
    pub results: String,
    /// The labels file.
    pub labels: String,
    /// The labels file's label column.
    pub label_column: String,
    /// The PCA baseline, when one was fitted.
    pub baseline: Option<Baseline>,
    /// The metrics table.
    pub evaluation: Evaluation,
    /// Latent neighbour purity among the labelled galaxies, when there are enough.
    pub purity: Option<PurityReport>,
    /// What `fdr_flag` delivered: realized false-discovery proportion and recall.
    pub flags: Option<FlagReport>,
    /// Where the anomaly maps point, for anomalous galaxies with a truth region (`truth.csv`'s
    /// anomaly_col/row/radius) — absent when the labels have no regions or the results no maps.
    pub localization: Option<Localization>,
    /// Where the normal labels came from (not written; for the caller's log).
    #[serde(skip)]
    pub normal_source: Option<NormalSource>,
    /// Whether the baseline's dataset differs from the one the results were scored from (not
    /// written; for the caller's warning).
    #[serde(skip)]
    pub baseline_dataset_differs: bool,
}

/// File name of the evaluation inside a RESULTS directory.
pub const EVALUATION_FILE: &str = "evaluation.json";

/// Judges every score column of the RESULTS directory `dir` against the labels of `options`,
/// next to a PCA reconstruction-error baseline on the dataset (aligned to the catalogue by
/// plate-ifu; a galaxy the dataset lacks gets no baseline score), plus the latent neighbour
/// purity among labelled galaxies.
///
/// Errors when the results or labels cannot be read, no catalogue galaxy has a label, the
/// baseline's dataset cannot be opened, or [`evaluate`]'s conditions fail.
pub fn evaluate_results(
    dir: &Path,
    options: &EvaluateOptions,
    progress: &dyn Progress,
) -> Result<EvaluationReport> {
    let results = Results::open(dir)?;
    let catalog = &results.catalog;
    let plateifus = catalog
        .str("plateifu")
        .ok_or_else(|| invalid(dir, "the catalogue has no plateifu column"))?
        .to_vec();
    let label_map = read_labels_csv(&options.labels, &options.id_column, &options.label_column)?;
    let labels = align_labels(&plateifus, &label_map);
    if labels.iter().all(Option::is_none) {
        return Err(Error::Labels {
            path: options.labels.clone(),
            reason: format!(
                "no galaxy of {} has a label (column {})",
                dir.display(),
                options.id_column
            ),
        });
    }
    let (normal, normal_source) = normal_labels(
        options.normal.as_deref(),
        &options.labels,
        &options.id_column,
        &label_map,
    )?;

    let mut columns: Vec<ScoreColumn> = score_columns(catalog)
        .into_iter()
        .filter_map(|name| catalog.f64(&name).map(|v| (name.clone(), v.to_vec())))
        .filter(|(_, v)| v.iter().any(|x| x.is_finite()))
        .collect();
    let mut baseline = None;
    let mut baseline_dataset_differs = false;
    let mut scored_dataset = None;
    if options.baseline {
        let scored = open_dataset(&results.manifest, options.data.as_deref()).map_err(|e| {
            let dir = dataset_dir(&results.manifest, options.data.as_deref());
            invalid(
                &dir,
                format!(
                    "cannot open the dataset for the PCA baseline (use --data DIR or --no-baseline): {e}"
                ),
            )
        })?;
        baseline_dataset_differs = !scored.same_as_scored;
        let (pca_columns, fitted) = pca_baseline(
            &scored.dataset,
            &plateifus,
            options.pca_components,
            progress,
        )
        .map_err(|e| match e {
            Error::InvalidK { .. } => invalid(
                &scored.dir,
                format!("PCA baseline: {e} (use --pca-components N or --no-baseline)"),
            ),
            other => other,
        })?;
        columns.extend(pca_columns);
        baseline = Some(Baseline {
            dataset: scored.dir.display().to_string(),
            ..fitted
        });
        scored_dataset = Some(scored);
    }
    let evaluation = evaluate(&columns, &labels, &normal)?;
    let purity = labelled_purity(&results, &labels, options.purity_k, progress)?;
    let flags = catalog
        .bool("fdr_flag")
        .map(|f| flag_report(f, &labels, &normal));
    let localization = match (
        AnomalyMaps::read(dir)?,
        read_truth_regions(&options.labels)?,
    ) {
        (Some(maps), regions) if !regions.is_empty() => {
            let galaxies = match &scored_dataset {
                Some(d) => d.dataset.galaxies.clone(),
                None => {
                    open_dataset(&results.manifest, options.data.as_deref())?
                        .dataset
                        .galaxies
                }
            };
            localization(&maps, &galaxies, &regions, &label_map, &normal)
        }
        _ => None,
    };
    Ok(EvaluationReport {
        results: dir.display().to_string(),
        labels: options.labels.display().to_string(),
        label_column: options.label_column.clone(),
        baseline,
        evaluation,
        purity,
        flags,
        localization,
        normal_source: Some(normal_source),
        baseline_dataset_differs,
    })
}

/// The PCA baseline's `pca_recon` and `pca_chi2` columns, in the order of `plateifus` (NaN for a
/// galaxy the dataset lacks), and the fitted baseline's description (dataset left blank).
fn pca_baseline(
    dataset: &Dataset,
    plateifus: &[String],
    components: usize,
    progress: &dyn Progress,
) -> Result<(Vec<ScoreColumn>, Baseline)> {
    let options = PcaOptions {
        components,
        ..PcaOptions::default()
    };
    let pca = PcaModel::fit(&dataset.cubes, &options, progress)?;
    let scores = pca.score(&dataset.cubes, progress)?;
    let row_of: BTreeMap<&str, usize> = dataset
        .galaxies
        .iter()
        .enumerate()
        .map(|(i, g)| (g.plateifu.as_str(), i))
        .collect();
    let pick = |value: &dyn Fn(usize) -> f64| -> Vec<f64> {
        plateifus
            .iter()
            .map(|p| row_of.get(p.as_str()).map_or(f64::NAN, |&i| value(i)))
            .collect()
    };
    let columns = vec![
        ("pca_recon".to_string(), pick(&|i| scores[i].recon)),
        ("pca_chi2".to_string(), pick(&|i| scores[i].chi2)),
    ];
    let baseline = Baseline {
        method: "pca",
        dataset: String::new(),
        components: pca.components,
        explained_variance_ratio: pca.explained_variance_ratio(),
    };
    Ok((columns, baseline))
}

/// Neighbour purity among the labelled galaxies only (an unlabelled neighbour says nothing either
/// way), in Euclidean latent space; `None` when `k` is 0 or not below the labelled count.
fn labelled_purity(
    results: &Results,
    labels: &[Option<String>],
    k: usize,
    progress: &dyn Progress,
) -> Result<Option<PurityReport>> {
    let labelled_rows: Vec<usize> = (0..labels.len()).filter(|&i| labels[i].is_some()).collect();
    if k == 0 || labelled_rows.len() <= k {
        return Ok(None);
    }
    let dim = results.latent_dim;
    let sub: Vec<f32> = labelled_rows
        .iter()
        .flat_map(|&r| results.latents[r * dim..(r + 1) * dim].iter().copied())
        .collect();
    let view = LatentView::new(&sub, labelled_rows.len(), dim)?;
    let graph = all_nearest(&view, k, Metric::Euclidean, progress)?;
    let sub_labels: Vec<String> = labelled_rows
        .iter()
        .filter_map(|&r| labels[r].clone())
        .collect();
    neighbour_purity(&graph, &sub_labels, k).map(Some)
}

impl EvaluationReport {
    /// The metrics table followed by the purity lines, as `oddcube evaluate` prints them.
    pub fn to_text(&self) -> String {
        let mut out = self.evaluation.to_table();
        out.push('\n');
        if let Some(f) = &self.flags {
            let _ = writeln!(
                out,
                "fdr_flag: {} flagged, {} of them normal (realized false-discovery proportion {:.3}); recall {:.3} of {} anomalies",
                f.flagged, f.false_discoveries, f.false_discovery_proportion, f.recall, f.anomalies
            );
        }
        if let Some(l) = &self.localization {
            let _ = writeln!(
                out,
                "localization (anomaly map vs truth region): {} galaxies, mean pixel AUROC {:.3}, peak inside {:.0} %",
                l.overall.n,
                l.overall.mean_pixel_auroc,
                100.0 * l.overall.peak_inside
            );
            for (kind, r) in &l.per_kind {
                let _ = writeln!(
                    out,
                    "  {kind:<16} n = {:>4}  pixel AUROC {:.3}  peak inside {:.0} %",
                    r.n,
                    r.mean_pixel_auroc,
                    100.0 * r.peak_inside
                );
            }
        }
        if let Some(p) = &self.purity {
            let _ = writeln!(
                out,
                "neighbour purity (k = {}, labelled galaxies, euclidean latents): overall {:.3}",
                p.k, p.overall
            );
            for (label, lp) in &p.per_label {
                let _ = writeln!(
                    out,
                    "  {label:<16} n = {:>5}  purity {:.3}  (chance {:.3})",
                    lp.count, lp.purity, lp.chance
                );
            }
        }
        out
    }

    /// Writes the report as `dir/evaluation.json` (pretty JSON, atomically); returns the path.
    pub fn write(&self, dir: &Path) -> Result<PathBuf> {
        let path = dir.join(EVALUATION_FILE);
        let mut json = serde_json::to_vec_pretty(self).map_err(|e| Error::Json {
            what: path.display().to_string(),
            reason: e.to_string(),
        })?;
        json.push(b'\n');
        write_atomic(&path, &json)?;
        Ok(path)
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

    #[test]
    fn the_is_anomaly_column_names_the_normal_labels_or_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("truth.csv");
        let kinds: BTreeMap<String, String> = [("1-1", "disk"), ("1-2", "agn"), ("1-3", "disk")]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        std::fs::write(
            &path,
            "plateifu,kind,is_anomaly\n1-1,disk,0\n1-2,agn,True\n1-3,disk,no\n",
        )
        .unwrap();
        let (normal, source) = normal_labels(None, &path, "plateifu", &kinds).unwrap();
        assert_eq!(normal, ["disk".to_string()].into());
        assert_eq!(source, NormalSource::IsAnomalyColumn);
        std::fs::write(
            &path,
            "plateifu,kind,is_anomaly\n1-1,disk,0\n1-2,agn,maybe\n",
        )
        .unwrap();
        let err = normal_labels(None, &path, "plateifu", &kinds)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("truth.csv") && err.contains("1-2") && err.contains("\"maybe\""),
            "{err}"
        );
    }
}
