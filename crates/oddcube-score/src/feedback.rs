//! Human labels from the web explorer (`RESULTS/labels.csv`: plateifu,label,time, an
//! append-only log, see [`LabelStore`]; a label is `interesting`, `artefact`, `normal` or a
//! relevance grade 0–5) and the older demotion rule. The ranking that labels give in the
//! explorer and in `oddcube score --labels` is the active-learning blend of
//! [`crate::relevance`]; [`demote_scores`] is kept as a library function.
//!
//! The demotion rule: a galaxy a person marked `artefact` or `normal` sinks to or below every
//! unlabelled galaxy — its score becomes `(1 − strength) · min(its score, the lowest unlabelled
//! score)`; multiplying alone is not enough, because anomaly scores span orders of magnitude and
//! a marked artefact ten times above the next galaxy would stay first. An unlabelled galaxy looks
//! at its `neighbours` nearest labelled galaxies in latent space that lie within `radius`, and
//! its score is multiplied by `1 − strength · max(0, d − i) / neighbours`, where d counts those
//! labelled artefact/normal and i those labelled interesting. So a galaxy surrounded by confirmed
//! artefacts sinks, one next to confirmed interesting objects keeps its score, and labels far
//! away in latent space have no effect. The default radius is the median distance of galaxies to
//! their `neighbours`-th nearest neighbour (measured on a seeded sample), i.e. "as close as
//! typical neighbours are".

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oddcube_data::{csv, date};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::knn::{self, LatentView, Metric};

/// File name of the labels inside a RESULTS directory.
pub const LABELS_FILE: &str = "labels.csv";

/// The columns of a labels file, in order.
const COLUMNS: [&str; 3] = ["plateifu", "label", "time"];

/// A person's verdict on a galaxy: a word, or a relevance on Astronomaly's 0–5 scale.
///
/// Stored in `labels.csv` as its [`name`](Self::name): `interesting`, `artefact`, `normal`, or
/// the digit `0`…`5` (0 = of no interest, 5 = as interesting as it gets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UserLabel {
    /// Worth a closer look: a real anomaly.
    Interesting,
    /// A data problem (bad fit, foreground star, edge effect).
    Artefact,
    /// An ordinary galaxy the model mis-scored.
    Normal,
    /// A graded relevance, 0 to [`UserLabel::MAX_RELEVANCE`].
    Relevance(u8),
}

/// The digits a graded label is written as.
const RELEVANCE_NAMES: [&str; 6] = ["0", "1", "2", "3", "4", "5"];

impl UserLabel {
    /// The top of the graded scale.
    pub const MAX_RELEVANCE: u8 = 5;

    /// The name written to labels.csv (lowercase word, or the grade's digit).
    pub fn name(self) -> &'static str {
        match self {
            UserLabel::Interesting => "interesting",
            UserLabel::Artefact => "artefact",
            UserLabel::Normal => "normal",
            UserLabel::Relevance(grade) => {
                RELEVANCE_NAMES[usize::from(grade.min(Self::MAX_RELEVANCE))]
            }
        }
    }

    /// How relevant the label says the galaxy is, in [0, 1]: interesting 1, artefact and
    /// normal 0, a grade g of 0–5 g/5.
    pub fn relevance(self) -> f64 {
        match self {
            UserLabel::Interesting => 1.0,
            UserLabel::Artefact | UserLabel::Normal => 0.0,
            UserLabel::Relevance(grade) => {
                f64::from(grade.min(Self::MAX_RELEVANCE)) / f64::from(Self::MAX_RELEVANCE)
            }
        }
    }

    /// True for labels that say "not worth a look": artefact, normal, and grades 0–2 (below the
    /// middle of the scale).
    pub fn demotes(self) -> bool {
        self.relevance() < 0.5
    }
}

impl std::str::FromStr for UserLabel {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim() {
            "interesting" => Ok(UserLabel::Interesting),
            "artefact" | "artifact" => Ok(UserLabel::Artefact),
            "normal" => Ok(UserLabel::Normal),
            other => match RELEVANCE_NAMES.iter().position(|d| *d == other) {
                Some(grade) => Ok(UserLabel::Relevance(grade as u8)),
                None => Err(format!(
                    "unknown label {other:?} (expected interesting, artefact, normal or a relevance 0–5)"
                )),
            },
        }
    }
}

impl serde::Serialize for UserLabel {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for UserLabel {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
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

/// The labels of one RESULTS directory, kept in memory; the file is an append-only log.
///
/// `labels.csv` holds one line per change (`plateifu,label,time`; an empty label clears), and
/// the last line of a galaxy wins. Each change is appended with a single `write` on a file
/// opened in append mode while holding an exclusive lock on it ([`std::fs::File::lock`]), after
/// re-reading what other writers appended: two explorers on the same file each keep every
/// label, and a crash mid-write can at worst leave an incomplete last line, which reading
/// reports and skips (the next append starts on a fresh line). Malformed lines are reported
/// with their line numbers ([`LabelStore::warnings`]) and skipped, never fatal.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelStore {
    path: PathBuf,
    labels: BTreeMap<String, LabelEntry>,
    warnings: Vec<String>,
}

fn bad(path: &Path, reason: impl Into<String>) -> Error {
    Error::Labels {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn io_error(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source,
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

/// The labels (last line per galaxy wins) and the warnings for the lines skipped.
type Parsed = (BTreeMap<String, LabelEntry>, Vec<String>);

/// Parses the text of a labels file (see [`LabelStore`]). Only a wrong header is an error.
fn parse_labels(path: &Path, text: &str) -> Result<Parsed> {
    let mut labels = BTreeMap::new();
    let mut warnings = Vec::new();
    let name = path.display();
    let mut lines = text.split_inclusive('\n').enumerate();
    let header = loop {
        match lines.next() {
            None => return Ok((labels, warnings)),
            Some((_, l)) if l.trim().is_empty() => continue,
            Some((_, l)) => break l.trim(),
        }
    };
    let header = header.trim_start_matches('\u{feff}');
    if header != COLUMNS.join(",") {
        return Err(bad(
            path,
            format!(
                "line 1: expected the header {:?}, found {header:?}",
                COLUMNS.join(",")
            ),
        ));
    }
    for (index, raw) in lines {
        let number = index + 1;
        if !raw.ends_with('\n') {
            warnings.push(format!(
                "{name}: line {number}: incomplete last line (an interrupted write?), skipped"
            ));
            continue;
        }
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let [plateifu, label, time] = fields.as_slice() else {
            warnings.push(format!(
                "{name}: line {number}: expected 3 fields {}, found {}; skipped",
                COLUMNS.join(","),
                fields.len()
            ));
            continue;
        };
        if !valid_plateifu(plateifu) {
            warnings.push(format!(
                "{name}: line {number}: {plateifu:?} is not a plate-ifu; skipped"
            ));
            continue;
        }
        if label.is_empty() || *label == "none" {
            labels.remove(*plateifu);
            continue;
        }
        match label.parse::<UserLabel>() {
            Ok(label) => {
                labels.insert(
                    plateifu.to_string(),
                    LabelEntry {
                        label,
                        time: time.to_string(),
                    },
                );
            }
            Err(e) => warnings.push(format!("{name}: line {number}: {e}; skipped")),
        }
    }
    Ok((labels, warnings))
}

impl LabelStore {
    /// Opens `dir/labels.csv` (an empty store when the file does not exist yet).
    pub fn open(dir: &Path) -> Result<LabelStore> {
        Self::open_file(&dir.join(LABELS_FILE))
    }

    /// Opens a labels file written by the explorer at any path (empty when it does not exist).
    /// Malformed lines are skipped and reported in [`LabelStore::warnings`]; only a file that
    /// cannot be read or has the wrong header is an error.
    pub fn open_file(path: &Path) -> Result<LabelStore> {
        let path = path.to_path_buf();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => return Err(io_error(&path, source)),
        };
        let (labels, warnings) = parse_labels(&path, &String::from_utf8_lossy(&bytes))?;
        Ok(LabelStore {
            path,
            labels,
            warnings,
        })
    }

    /// The file the store writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What was skipped when the file was last read, one message per line, with its number.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The label of `plateifu`, if any.
    pub fn get(&self, plateifu: &str) -> Option<&LabelEntry> {
        self.labels.get(plateifu)
    }

    /// The label of each galaxy of `plateifus` (catalogue order), for [`demote_scores`] and
    /// the relevance model.
    pub fn labels_for(&self, plateifus: &[String]) -> Vec<Option<UserLabel>> {
        plateifus
            .iter()
            .map(|p| self.labels.get(p).map(|e| e.label))
            .collect()
    }

    /// The labelled plate-ifus that are not in `plateifus` (kept in the file, ignored).
    pub fn unknown<'a>(&'a self, plateifus: &[String]) -> Vec<&'a str> {
        let known: std::collections::HashSet<&str> = plateifus.iter().map(String::as_str).collect();
        self.labels
            .keys()
            .map(String::as_str)
            .filter(|p| !known.contains(p))
            .collect()
    }

    /// All labels, by plate-ifu.
    pub fn all(&self) -> &BTreeMap<String, LabelEntry> {
        &self.labels
    }

    /// Sets (or with `None` clears) the label of `plateifu`: appends one line to the file
    /// under its lock and takes in whatever other writers appended meanwhile. On a write
    /// failure the in-memory store is left unchanged.
    pub fn set(&mut self, plateifu: &str, label: Option<UserLabel>) -> Result<()> {
        use std::io::{Read, Seek, Write};
        if !valid_plateifu(plateifu) {
            return Err(Error::InvalidParameter {
                name: "plateifu".to_string(),
                value: plateifu.chars().take(80).collect(),
                reason: "letters, digits, '-', '_' and '.' only".to_string(),
            });
        }
        let path = self.path.clone();
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)
            .map_err(|e| io_error(&path, e))?;
        // Held until `file` is dropped: other explorers wait rather than interleave.
        file.lock().map_err(|e| io_error(&path, e))?;
        let mut bytes = Vec::new();
        file.seek(std::io::SeekFrom::Start(0))
            .and_then(|_| file.read_to_end(&mut bytes))
            .map_err(|e| io_error(&path, e))?;
        let mut text = String::from_utf8_lossy(&bytes).into_owned();
        let mut out = String::new();
        if text.trim().is_empty() {
            out.push_str(&csv::record(COLUMNS));
        } else if !text.ends_with('\n') {
            // A torn last line from a crash: start ours on a fresh line.
            out.push('\n');
        }
        out.push_str(&csv::record([
            plateifu,
            label.map_or("", UserLabel::name),
            &date::utc_now(),
        ]));
        // One write of the whole line: with O_APPEND it lands after every other writer's.
        file.write_all(out.as_bytes())
            .and_then(|_| file.sync_data())
            .map_err(|e| io_error(&path, e))?;
        drop(file);
        text.push_str(&out);
        let (labels, warnings) = parse_labels(&path, &text)?;
        self.labels = labels;
        self.warnings = warnings;
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
    fn graded_relevance_labels_round_trip_and_order_with_the_words() {
        for grade in 0..=UserLabel::MAX_RELEVANCE {
            let label = UserLabel::Relevance(grade);
            assert_eq!(label.name().parse::<UserLabel>().unwrap(), label);
            assert_eq!(label.relevance(), f64::from(grade) / 5.0);
            let json = serde_json::to_string(&label).unwrap();
            assert_eq!(json, format!("\"{grade}\""));
            assert_eq!(serde_json::from_str::<UserLabel>(&json).unwrap(), label);
        }
        for word in ["interesting", "artefact", "normal"] {
            let label: UserLabel = word.parse().unwrap();
            assert_eq!(
                serde_json::to_string(&label).unwrap(),
                format!("\"{word}\"")
            );
        }
        let err = "6".parse::<UserLabel>().unwrap_err();
        assert!(err.contains("relevance 0–5"), "{err}");
        assert!("-1".parse::<UserLabel>().is_err() && "2.5".parse::<UserLabel>().is_err());
        // Grades below the middle demote like normal; the top grade is as relevant as
        // interesting.
        assert!(UserLabel::Relevance(2).demotes() && !UserLabel::Relevance(3).demotes());
        assert_eq!(
            UserLabel::Relevance(5).relevance(),
            UserLabel::Interesting.relevance()
        );
        assert_eq!(
            UserLabel::Relevance(0).relevance(),
            UserLabel::Normal.relevance()
        );
        // And they go through labels.csv like the words.
        let dir = tempfile::tempdir().unwrap();
        let mut store = LabelStore::open(dir.path()).unwrap();
        store
            .set("8485-1901", Some(UserLabel::Relevance(4)))
            .unwrap();
        let again = LabelStore::open(dir.path()).unwrap();
        assert_eq!(
            again.get("8485-1901").unwrap().label,
            UserLabel::Relevance(4)
        );
        assert!(again.warnings().is_empty());
    }

    #[test]
    fn malformed_lines_are_reported_with_their_number_and_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LABELS_FILE);
        std::fs::write(
            &path,
            "plateifu,label,time\n1-1,weird,2026\n1-2,normal,2026\nonly,two\n1-3,interesting,2026\n1-4,artef",
        )
        .unwrap();
        let store = LabelStore::open(dir.path()).unwrap();
        let w = store.warnings().join("\n");
        assert!(w.contains("line 2") && w.contains("weird"), "{w}");
        assert!(w.contains("line 4") && w.contains("3 fields"), "{w}");
        assert!(w.contains("line 6") && w.contains("incomplete"), "{w}");
        assert_eq!(store.all().len(), 2);
        // Appending after a torn line starts a fresh line: nothing glues onto the fragment.
        let mut store = store;
        store.set("1-5", Some(UserLabel::Artefact)).unwrap();
        let again = LabelStore::open(dir.path()).unwrap();
        assert_eq!(again.get("1-5").unwrap().label, UserLabel::Artefact);
        assert_eq!(again.all().len(), 3);
        assert!(again.warnings().iter().any(|w| w.contains("line 6")));
        // A wrong header is the one fatal error.
        std::fs::write(&path, "id,verdict\n1-1,normal\n").unwrap();
        let err = LabelStore::open(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("labels.csv") && err.contains("line 1"),
            "{err}"
        );
    }

    #[test]
    fn two_writers_on_one_file_lose_no_label_and_unknown_ids_are_listed() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = LabelStore::open(dir.path()).unwrap();
        let mut b = LabelStore::open(dir.path()).unwrap();
        a.set("1-1", Some(UserLabel::Interesting)).unwrap();
        b.set("1-2", Some(UserLabel::Normal)).unwrap();
        a.set("1-3", Some(UserLabel::Normal)).unwrap();
        assert_eq!(a.all().len(), 3, "a sees b's label after its own write");
        let merged = LabelStore::open(dir.path()).unwrap();
        assert_eq!(merged.all().len(), 3);
        let text = std::fs::read_to_string(dir.path().join(LABELS_FILE)).unwrap();
        assert_eq!(
            text.lines().count(),
            4,
            "one header and one line per change: {text}"
        );
        // Threads writing at once: every label lands.
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let dir = dir.path().to_path_buf();
                std::thread::spawn(move || {
                    let mut s = LabelStore::open(&dir).unwrap();
                    for i in 0..10 {
                        s.set(&format!("9-{t}{i}"), Some(UserLabel::Normal))
                            .unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let all = LabelStore::open(dir.path()).unwrap();
        assert_eq!(all.all().len(), 43);
        assert!(all.warnings().is_empty(), "{:?}", all.warnings());
        let ids = vec!["1-1".to_string(), "1-2".to_string()];
        assert_eq!(all.unknown(&ids).len(), 41);
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
