//! Human labels from the web explorer (`RESULTS/labels.csv`: plateifu,label,time) and the rule
//! that feeds them back into the ranking (`oddcube score --labels`).
//!
//! The demotion rule: a galaxy a person marked `artefact` or `normal` sinks to or below every
//! unlabelled galaxy — its score becomes `(1 − strength) · min(its score, the lowest unlabelled
//! score)`; multiplying alone is not enough, because anomaly scores span orders of magnitude and
//! a marked artefact ten times above the next galaxy would stay first. An unlabelled galaxy looks at its `neighbours` nearest labelled galaxies in
//! latent space that lie within `radius`, and its score is multiplied by
//! `1 − strength · max(0, d − i) / neighbours`, where d counts those labelled artefact/normal and
//! i those labelled interesting. So a galaxy surrounded by confirmed artefacts sinks, one next to
//! confirmed interesting objects keeps its score, and labels far away in latent space have no
//! effect. The default radius is the median distance of galaxies to their `neighbours`-th nearest
//! neighbour (measured on a seeded sample), i.e. "as close as typical neighbours are".

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oddcube_data::{csv, csv::Table, date};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::knn::{self, LatentView, Metric};
use crate::results::write_atomic;

/// File name of the labels inside a RESULTS directory.
pub const LABELS_FILE: &str = "labels.csv";

/// The columns of a labels file, in order.
const COLUMNS: [&str; 3] = ["plateifu", "label", "time"];

/// A person's verdict on a galaxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserLabel {
    /// Worth a closer look: a real anomaly.
    Interesting,
    /// A data problem (bad fit, foreground star, edge effect).
    Artefact,
    /// An ordinary galaxy the model mis-scored.
    Normal,
}

impl UserLabel {
    /// The lowercase name written to labels.csv.
    pub fn name(self) -> &'static str {
        match self {
            UserLabel::Interesting => "interesting",
            UserLabel::Artefact => "artefact",
            UserLabel::Normal => "normal",
        }
    }

    /// True for labels that say "not a real anomaly".
    pub fn demotes(self) -> bool {
        matches!(self, UserLabel::Artefact | UserLabel::Normal)
    }
}

impl std::str::FromStr for UserLabel {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim() {
            "interesting" => Ok(UserLabel::Interesting),
            "artefact" | "artifact" => Ok(UserLabel::Artefact),
            "normal" => Ok(UserLabel::Normal),
            other => Err(format!(
                "unknown label {other:?} (expected interesting, artefact or normal)"
            )),
        }
    }
}

/// One stored label.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LabelEntry {
    /// The verdict.
    pub label: UserLabel,
    /// When it was given, ISO 8601 UTC.
    pub time: String,
}

/// The labels of one RESULTS directory, kept in memory and rewritten atomically on each change.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelStore {
    path: PathBuf,
    labels: BTreeMap<String, LabelEntry>,
}

fn bad(path: &Path, reason: impl Into<String>) -> Error {
    Error::Labels {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Plate-ifus are written unquoted, so only characters that cannot break a CSV line are allowed.
fn valid_plateifu(plateifu: &str) -> bool {
    !plateifu.is_empty()
        && plateifu.len() <= 64
        && plateifu
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

impl LabelStore {
    /// Opens `dir/labels.csv` (an empty store when the file does not exist yet).
    pub fn open(dir: &Path) -> Result<LabelStore> {
        Self::open_file(&dir.join(LABELS_FILE))
    }

    /// Opens a labels file written by the explorer at any path (empty when it does not exist).
    pub fn open_file(path: &Path) -> Result<LabelStore> {
        let path = path.to_path_buf();
        let mut labels = BTreeMap::new();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(LabelStore { path, labels });
            }
            Err(source) => return Err(Error::Io { path, source }),
        };
        let table = Table::parse(&text).map_err(|reason| bad(&path, reason))?;
        table
            .expect_columns(&COLUMNS)
            .map_err(|reason| bad(&path, reason))?;
        for record in &table.records {
            let [plateifu, label, time] = record.fields.as_slice() else {
                return Err(bad(
                    &path,
                    format!(
                        "line {}: expected 3 fields {}",
                        record.line,
                        COLUMNS.join(",")
                    ),
                ));
            };
            let label: UserLabel = label
                .parse()
                .map_err(|e: String| bad(&path, format!("line {}: {e}", record.line)))?;
            labels.insert(
                plateifu.clone(),
                LabelEntry {
                    label,
                    time: time.clone(),
                },
            );
        }
        Ok(LabelStore { path, labels })
    }

    /// The file the store writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The label of `plateifu`, if any.
    pub fn get(&self, plateifu: &str) -> Option<&LabelEntry> {
        self.labels.get(plateifu)
    }

    /// The label of each galaxy of `plateifus` (catalogue order), for [`demote_scores`].
    pub fn labels_for(&self, plateifus: &[String]) -> Vec<Option<UserLabel>> {
        plateifus
            .iter()
            .map(|p| self.labels.get(p).map(|e| e.label))
            .collect()
    }

    /// All labels, by plate-ifu.
    pub fn all(&self) -> &BTreeMap<String, LabelEntry> {
        &self.labels
    }

    /// Sets (or with `None` clears) the label of `plateifu` and rewrites the file atomically.
    /// On a write failure the in-memory store is left unchanged.
    pub fn set(&mut self, plateifu: &str, label: Option<UserLabel>) -> Result<()> {
        if !valid_plateifu(plateifu) {
            return Err(Error::InvalidParameter {
                name: "plateifu".to_string(),
                value: plateifu.chars().take(80).collect(),
                reason: "letters, digits, '-', '_' and '.' only".to_string(),
            });
        }
        let mut next = self.labels.clone();
        match label {
            Some(label) => {
                next.insert(
                    plateifu.to_string(),
                    LabelEntry {
                        label,
                        time: date::utc_now(),
                    },
                );
            }
            None => {
                next.remove(plateifu);
            }
        }
        let mut csv = csv::record(COLUMNS);
        for (plateifu, entry) in &next {
            csv.push_str(&csv::record([
                plateifu.as_str(),
                entry.label.name(),
                &entry.time,
            ]));
        }
        write_atomic(&self.path, csv.as_bytes())?;
        self.labels = next;
        Ok(())
    }
}

/// Settings of [`demote_scores`].
#[derive(Debug, Clone, PartialEq)]
pub struct DemoteOptions {
    /// Labelled galaxies consulted per unlabelled galaxy.
    pub neighbours: usize,
    /// Largest fraction of a score removed (0 = labels ignored, 1 = artefacts go to 0).
    pub strength: f64,
    /// Latent distance beyond which a label has no effect; `None` = estimated (see module doc).
    pub radius: Option<f32>,
    /// Seed of the sample used to estimate the radius.
    pub seed: u64,
}

impl Default for DemoteOptions {
    fn default() -> Self {
        Self {
            neighbours: 5,
            strength: 0.9,
            radius: None,
            seed: 0,
        }
    }
}

/// Scores adjusted by human labels (the rule in the module documentation). `labels[i]` is the
/// label of catalogue row i. Higher score = more anomalous, before and after.
///
/// Errors when lengths disagree, `strength` is outside [0, 1] or `neighbours` is 0.
pub fn demote_scores(
    view: &LatentView<'_>,
    scores: &[f64],
    labels: &[Option<UserLabel>],
    options: &DemoteOptions,
) -> Result<Vec<f64>> {
    crate::error::check_len("scores", scores.len(), view.n())?;
    crate::error::check_len("labels", labels.len(), view.n())?;
    if !(0.0..=1.0).contains(&options.strength) || options.neighbours == 0 {
        return Err(Error::InvalidParameter {
            name: "demotion".to_string(),
            value: format!(
                "strength {}, neighbours {}",
                options.strength, options.neighbours
            ),
            reason: "strength must be in [0, 1] and neighbours ≥ 1".to_string(),
        });
    }
    let labelled: Vec<usize> = (0..view.n()).filter(|&i| labels[i].is_some()).collect();
    if labelled.is_empty() || options.strength == 0.0 {
        return Ok(scores.to_vec());
    }
    let lowest_unlabelled = (0..view.n())
        .filter(|&i| labels[i].is_none())
        .map(|i| scores[i])
        .fold(f64::INFINITY, f64::min);
    let radius = match options.radius {
        Some(r) => r,
        None => typical_neighbour_distance(view, options.neighbours, options.seed)?,
    };
    let labelled_latents: Vec<f32> = labelled
        .iter()
        .flat_map(|&i| view.row(i).unwrap_or(&[]).iter().copied())
        .collect();
    let labelled_view = LatentView::new(&labelled_latents, labelled.len(), view.dim())?;
    let k = options.neighbours.min(labelled.len());
    (0..view.n())
        .into_par_iter()
        .map(|i| {
            if let Some(label) = labels[i] {
                return Ok(if label.demotes() {
                    scores[i].min(lowest_unlabelled) * (1.0 - options.strength)
                } else {
                    scores[i]
                });
            }
            let row = view.row(i).unwrap_or(&[]);
            let near = knn::nearest(&labelled_view, row, k, Metric::Euclidean, None)?;
            let (mut demoting, mut interesting) = (0i64, 0i64);
            for nb in near.iter().filter(|nb| nb.distance <= radius) {
                match labels[labelled[nb.index]] {
                    Some(l) if l.demotes() => demoting += 1,
                    Some(_) => interesting += 1,
                    None => {}
                }
            }
            let fraction = (demoting - interesting).max(0) as f64 / options.neighbours as f64;
            Ok(scores[i] * (1.0 - options.strength * fraction))
        })
        .collect()
}

/// Median distance of up to 200 seeded-sample galaxies to their `k`-th nearest neighbour.
fn typical_neighbour_distance(view: &LatentView<'_>, k: usize, seed: u64) -> Result<f32> {
    let n = view.n();
    if n < 2 {
        return Ok(0.0);
    }
    let k = k.min(n - 1);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let sample: Vec<usize> = (0..200.min(n)).map(|_| rng.random_range(0..n)).collect();
    let mut distances: Vec<f32> = sample
        .par_iter()
        .map(|&i| {
            knn::nearest_to(view, i, k, Metric::Euclidean)
                .map(|r| r.last().map(|nb| nb.distance).unwrap_or(0.0))
        })
        .collect::<Result<_>>()?;
    distances.sort_by(f32::total_cmp);
    Ok(distances[distances.len() / 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_survive_a_reopen_and_clearing_works() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = LabelStore::open(dir.path()).unwrap();
        assert!(store.all().is_empty());
        store.set("8485-1901", Some(UserLabel::Artefact)).unwrap();
        store
            .set("7443-12703", Some(UserLabel::Interesting))
            .unwrap();
        let again = LabelStore::open(dir.path()).unwrap();
        assert_eq!(again.get("8485-1901").unwrap().label, UserLabel::Artefact);
        assert_eq!(again, store);
        let ids = ["7443-12703".to_string(), "1-1".to_string()];
        assert_eq!(
            again.labels_for(&ids),
            vec![Some(UserLabel::Interesting), None]
        );
        assert_eq!(
            LabelStore::open_file(&dir.path().join(LABELS_FILE)).unwrap(),
            store
        );
        store.set("8485-1901", None).unwrap();
        assert!(
            LabelStore::open(dir.path())
                .unwrap()
                .get("8485-1901")
                .is_none()
        );
        assert!(
            store.set("a,b\n", Some(UserLabel::Normal)).is_err(),
            "CSV-breaking ids are refused"
        );
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .collect();
        assert_eq!(leftovers.len(), 1, "no temp files left behind");
    }

    #[test]
    fn malformed_label_files_are_named_with_the_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(LABELS_FILE),
            "plateifu,label,time\n1-1,weird,2026\n",
        )
        .unwrap();
        let err = LabelStore::open(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("labels.csv") && err.contains("line 2") && err.contains("weird"),
            "{err}"
        );
    }

    #[test]
    fn artefact_neighbourhoods_sink_and_interesting_ones_do_not() {
        // Two clusters on a line: 0..10 near x = 0, 10..20 near x = 100.
        let data: Vec<f32> = (0..20)
            .map(|i| {
                if i < 10 {
                    i as f32 * 0.1
                } else {
                    100.0 + i as f32 * 0.1
                }
            })
            .collect();
        let view = LatentView::new(&data, 20, 1).unwrap();
        let scores = vec![1.0; 20];
        let mut labels = vec![None; 20];
        labels[0] = Some(UserLabel::Artefact);
        labels[1] = Some(UserLabel::Artefact);
        labels[10] = Some(UserLabel::Interesting);
        let options = DemoteOptions {
            neighbours: 2,
            strength: 0.5,
            radius: Some(5.0),
            seed: 0,
        };
        let out = demote_scores(&view, &scores, &labels, &options).unwrap();
        assert_eq!(
            out[0], 0.5,
            "a labelled artefact is demoted by the full strength"
        );
        assert_eq!(out[10], 1.0, "an interesting label keeps the score");
        assert_eq!(
            out[5], 0.5,
            "both nearest labels are artefacts within the radius"
        );
        assert_eq!(
            out[15], 1.0,
            "artefacts far away do not count; the interesting one cancels nothing"
        );
        let none = demote_scores(&view, &scores, &[None; 20], &options).unwrap();
        assert_eq!(none, scores);
        assert!(demote_scores(&view, &scores[..3], &labels, &options).is_err());
        let estimated = demote_scores(
            &view,
            &scores,
            &labels,
            &DemoteOptions {
                radius: None,
                ..options
            },
        )
        .unwrap();
        assert!(estimated[0] == 0.5 && estimated[15] == 1.0);
        let typical = typical_neighbour_distance(&view, 2, 0).unwrap();
        assert!(
            (typical - 0.1).abs() < 1e-4,
            "cluster spacing is 0.1: {typical}"
        );

        // A marked artefact far above everything else still sinks below every unlabelled
        // galaxy; strength 0 ignores labels.
        let mut tall = vec![1.0; 20];
        tall[0] = 1000.0;
        let out = demote_scores(&view, &tall, &labels, &options).unwrap();
        let lowest_other = out[2..].iter().copied().fold(f64::INFINITY, f64::min);
        assert!(out[0] <= lowest_other, "{} vs {lowest_other}", out[0]);
        assert!(out[2..].iter().all(|&v| v > 0.0) && out[0] < 1.0);
        let ignored = DemoteOptions {
            strength: 0.0,
            ..options
        };
        assert_eq!(
            demote_scores(&view, &tall, &labels, &ignored).unwrap(),
            tall
        );
    }
}
