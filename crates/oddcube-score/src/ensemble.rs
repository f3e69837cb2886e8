//! The restart ensemble: the mean of the fused scores of several models trained on the same
//! dataset from different seeds, with its own null.
//!
//! `oddcube train` trains three runs by default (docs/model.md, "Restarts"). The one with the
//! lowest validation loss is the model (its latents, anomaly maps and component columns fill
//! the catalogue); the others whose loss is within `train --member-margin` of it (10 % by
//! default) are kept as *members* in `members/seed-S/`, each with its own
//! stored null ([`crate::calibration`]). A galaxy's fused score under each member's null is a
//! catalogue column `score_seed_S` ([`member_column`]); the catalogue's `score` is their mean,
//! standardised against the same mean over the model's dataset: `score = (mean_m score_m − c) /
//! σ`, `c` the median and `σ` the [`tail_sigma`] of that mean over the calibration galaxies, and
//! `pvalue` from their stored means exactly as [`crate::calibration::Calibration::pvalue`] does
//! for one model ([`null_pvalue`]).
//!
//! Why: the runs rank alike but their nulls' tails do not — which run has the lowest loss says
//! nothing about how far its null reaches, and on three 3000-galaxy surveys the kept run flagged
//! 5–66 % of the anomalies while the mean of the three flagged 50–76 % at a realized
//! false-discovery proportion of 0–0.06. The runs' errors on ordinary galaxies are partly
//! independent while an anomaly's excess is shared, so the mean separates them by more null σ.
//!
//! Like a single model's score, a galaxy's ensemble score depends on that galaxy alone, so a
//! shard computes it and a merge recomputes it identically from the member columns.

use std::path::Path;

use oddcube_data::Progress;
use oddcube_data::dataset::GalaxyRecord;

use crate::anomaly_map::AnomalyMaps;
use crate::calibration::{StoredNull, null_pvalue};
use crate::error::{Error, Result};
use crate::knn::Metric;
use crate::results::{Catalog, Column, invalid, write_atomic};
use crate::robust::{median, tail_sigma};
use crate::score::{Autoencoder, MapSettings, apply_stored_null, score_galaxies};

/// File of the ensemble's null inside a model (and a RESULTS) directory.
pub const ENSEMBLE_FILE: &str = "ensemble.json";
/// Format tag of [`ENSEMBLE_FILE`].
pub const ENSEMBLE_FORMAT: &str = "oddcube-ensemble/1";
/// Directory inside a model directory holding the members other than the kept model.
pub const MEMBERS_DIR: &str = "members";
/// [`EnsembleMember::dir`] of the kept model: the model directory itself.
pub const KEPT_DIR: &str = ".";

/// The catalogue column holding the fused score of the member trained from `seed`.
pub fn member_column(seed: u64) -> String {
    format!("score_seed_{seed}")
}

/// Where the member trained from `seed` lives, relative to the model directory (unless kept).
pub fn member_dir(seed: u64) -> String {
    format!("{MEMBERS_DIR}/seed-{seed}")
}

/// One model of the ensemble.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EnsembleMember {
    /// The seed it was trained from.
    pub seed: u64,
    /// Its directory relative to the model directory: [`KEPT_DIR`] for the kept model,
    /// [`member_dir`] for the others.
    pub dir: String,
}

impl EnsembleMember {
    /// Whether this is the kept model (the model directory itself).
    pub fn is_kept(&self) -> bool {
        self.dir == KEPT_DIR
    }
}

/// The null of the members' mean fused score (see the module docs).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EnsembleNull {
    /// [`ENSEMBLE_FORMAT`].
    pub format: String,
    /// The members, the kept model among them, in seed order.
    pub members: Vec<EnsembleMember>,
    /// The galaxies it was fitted on, as the kept model's null names them
    /// ([`crate::calibration::Calibration::fitted_on`]).
    pub fitted_on: String,
    /// How many of them had a finite score under every member.
    pub n_calibration: usize,
    /// Median of the members' mean score over the calibration galaxies.
    pub centre: f64,
    /// Its upper-tail robust σ ([`tail_sigma`]).
    pub scale: f64,
    /// The calibration galaxies' ensemble scores, ascending: the empirical body of the null.
    pub null_scores: Vec<f64>,
}

/// The mean of one galaxy's member scores; NaN when any is not finite (a galaxy without usable
/// pixels is NaN under every member).
fn mean_of(scores: impl Iterator<Item = f64>) -> f64 {
    let (mut sum, mut n) = (0.0, 0usize);
    for s in scores {
        if !s.is_finite() {
            return f64::NAN;
        }
        sum += s;
        n += 1;
    }
    if n == 0 { f64::NAN } else { sum / n as f64 }
}

impl EnsembleNull {
    /// Fits the null from each member's fused scores over the same calibration galaxies
    /// (`member_scores[m][i]`, members in the order of `members`). Errors unless there are at
    /// least two members, every member has a score per galaxy, and three galaxies have finite
    /// scores under all of them.
    pub fn fit(
        members: Vec<EnsembleMember>,
        member_scores: &[Vec<f64>],
        fitted_on: &str,
    ) -> Result<EnsembleNull> {
        let invalid_parameter = |value: String, reason: &str| Error::InvalidParameter {
            name: "ensemble".to_string(),
            value,
            reason: reason.to_string(),
        };
        if members.len() < 2 || member_scores.len() != members.len() {
            return Err(invalid_parameter(
                format!(
                    "{} members, {} score lists",
                    members.len(),
                    member_scores.len()
                ),
                "an ensemble needs two members or more, each with its scores",
            ));
        }
        if members.iter().filter(|m| m.is_kept()).count() != 1 {
            return Err(invalid_parameter(
                format!("{members:?}"),
                "exactly one member must be the kept model",
            ));
        }
        let n = member_scores[0].len();
        if member_scores.iter().any(|s| s.len() != n) {
            return Err(invalid_parameter(
                member_scores
                    .iter()
                    .map(|s| s.len().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                "every member must score the same calibration galaxies",
            ));
        }
        let means: Vec<f64> = (0..n)
            .map(|i| mean_of(member_scores.iter().map(|s| s[i])))
            .filter(|m| m.is_finite())
            .collect();
        if means.len() < 3 {
            return Err(invalid_parameter(
                means.len().to_string(),
                "at least 3 galaxies with finite scores are needed to fit a null",
            ));
        }
        let centre = median(&means);
        let scale = tail_sigma(&means);
        let mut null_scores: Vec<f64> = means.iter().map(|m| (m - centre) / scale).collect();
        null_scores.sort_by(f64::total_cmp);
        let ensemble = EnsembleNull {
            format: ENSEMBLE_FORMAT.to_string(),
            members,
            fitted_on: fitted_on.to_string(),
            n_calibration: means.len(),
            centre,
            scale,
            null_scores,
        };
        ensemble
            .check_values()
            .map_err(|reason| invalid_parameter("fitted null".to_string(), &reason))?;
        Ok(ensemble)
    }

    /// The seeds of the members, in their order.
    pub fn seeds(&self) -> Vec<u64> {
        self.members.iter().map(|m| m.seed).collect()
    }

    /// The kept member.
    fn kept(&self) -> &EnsembleMember {
        self.members
            .iter()
            .find(|m| m.is_kept())
            .expect("a read or fitted ensemble has exactly one kept member")
    }

    /// The ensemble score of a galaxy whose members scored `member_scores` (in member order).
    pub fn score(&self, member_scores: &[f64]) -> f64 {
        (mean_of(member_scores.iter().copied()) - self.centre) / self.scale
    }

    /// The p-value of an ensemble score ([`null_pvalue`] over [`EnsembleNull::null_scores`]).
    pub fn pvalue(&self, score: f64) -> f64 {
        null_pvalue(&self.null_scores, score)
    }

    /// Sets `score` and `pvalue` of `catalog` from its member columns. The kept member's column
    /// is first copied from `score`, which must hold the kept model's fused score under its own
    /// null ([`apply_stored_null`]); the other members' columns must be there already.
    pub fn combine(&self, catalog: &mut Catalog) -> Result<()> {
        let kept = catalog
            .f64("score")
            .ok_or_else(|| Error::Empty("catalogue column 'score'".to_string()))?
            .to_vec();
        catalog.set(&member_column(self.kept().seed), Column::F64(kept))?;
        let columns: Vec<Vec<f64>> = self
            .members
            .iter()
            .map(|m| {
                let name = member_column(m.seed);
                catalog.f64(&name).map(<[f64]>::to_vec).ok_or_else(|| {
                    Error::Empty(format!(
                        "catalogue column '{name}' (the score of ensemble member seed {})",
                        m.seed
                    ))
                })
            })
            .collect::<Result<_>>()?;
        let scores: Vec<f64> = (0..catalog.len())
            .map(|i| self.score(&columns.iter().map(|c| c[i]).collect::<Vec<_>>()))
            .collect();
        let pvalues: Vec<f64> = scores.iter().map(|&s| self.pvalue(s)).collect();
        catalog.set("score", Column::F64(scores))?;
        catalog.set("pvalue", Column::F64(pvalues))
    }

    /// Checks what a fitted ensemble can hold, so that an edited or damaged file is an error:
    /// two members or more with distinct seeds, exactly one of them kept, a positive finite
    /// scale, a finite centre and ascending finite null scores.
    pub fn check_values(&self) -> std::result::Result<(), String> {
        if self.members.len() < 2 {
            return Err(format!(
                "{} members: an ensemble has two or more",
                self.members.len()
            ));
        }
        if self.members.iter().filter(|m| m.is_kept()).count() != 1 {
            return Err(format!("exactly one member must have dir {KEPT_DIR:?}"));
        }
        let mut seeds = self.seeds();
        seeds.sort_unstable();
        if seeds.windows(2).any(|w| w[0] == w[1]) {
            return Err("two members have the same seed".to_string());
        }
        if let Some(m) = self
            .members
            .iter()
            .find(|m| !m.is_kept() && m.dir != member_dir(m.seed))
        {
            return Err(format!(
                "member seed {} is in {:?}; members live in {:?}",
                m.seed,
                m.dir,
                member_dir(m.seed)
            ));
        }
        if !(self.scale.is_finite() && self.scale > 0.0 && self.centre.is_finite()) {
            return Err(format!(
                "scale {} must be positive and centre {} finite",
                self.scale, self.centre
            ));
        }
        if self.null_scores.iter().any(|s| !s.is_finite())
            || self.null_scores.windows(2).any(|w| w[0] > w[1])
        {
            return Err("null_scores must be finite and ascending".to_string());
        }
        Ok(())
    }

    /// Writes [`ENSEMBLE_FILE`] into `dir` atomically.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(|e| Error::Json {
            what: ENSEMBLE_FILE.to_string(),
            reason: e.to_string(),
        })?;
        write_atomic(&dir.join(ENSEMBLE_FILE), text.as_bytes())
    }

    /// Reads the ensemble of the model (or RESULTS directory) `dir`; `Ok(None)` for a model
    /// trained as a single run.
    pub fn read(dir: &Path) -> Result<Option<EnsembleNull>> {
        let path = dir.join(ENSEMBLE_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(Error::Io { path, source }),
        };
        let ensemble: EnsembleNull = serde_json::from_str(&text)
            .map_err(|e| invalid(&path, format!("not an ensemble file: {e}")))?;
        if ensemble.format != ENSEMBLE_FORMAT {
            return Err(invalid(
                &path,
                format!(
                    "format {:?}, this oddcube reads {ENSEMBLE_FORMAT:?}",
                    ensemble.format
                ),
            ));
        }
        ensemble
            .check_values()
            .map_err(|reason| invalid(&path, reason))?;
        Ok(Some(ensemble))
    }
}

/// What one ensemble member says about the galaxies it scored: its fused scores under its own
/// null and its anomaly maps (from which the published map is the members' consensus).
#[derive(Debug, Clone, PartialEq)]
pub struct MemberScores {
    /// The fused score of each galaxy, in the order of the rows scored.
    pub score: Vec<f64>,
    /// Each galaxy's anomaly map under the member's own floors, same order.
    pub maps: AnomalyMaps,
}

/// The fused score of every galaxy at `rows` under one model and its own stored null — what
/// the catalogue's `score` column would hold were that model scored alone — and its anomaly
/// maps (catalogue order = `rows`).
#[allow(clippy::too_many_arguments)]
pub fn member_scores(
    model: &dyn Autoencoder,
    null: &StoredNull,
    cubes: &oddcube_data::cubes::Cubes,
    galaxies: &[GalaxyRecord],
    lines: &[String],
    rows: &[usize],
    metric: Metric,
    progress: &dyn Progress,
) -> Result<MemberScores> {
    let settings = MapSettings {
        floors: null.calibration.floors.clone(),
        other_maps: Vec::new(),
    };
    let mut scored = score_galaxies(model, cubes, galaxies, lines, rows, &settings, progress)?;
    apply_stored_null(&mut scored.catalog, &scored.latents, null, metric)?;
    let score = scored
        .catalog
        .f64("score")
        .ok_or_else(|| Error::Empty("catalogue column 'score'".to_string()))?
        .to_vec();
    Ok(MemberScores {
        score,
        maps: scored.maps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `calibrate` hands back the scores the ensemble is fitted on, so `train` need not score
    /// each run again: they must be exactly what [`member_scores`] computes for those rows
    /// under the fitted null — in the order of the rows given, which need not be sorted.
    #[test]
    fn calibration_scores_are_the_member_scores() {
        use crate::score::tests::{FlatModel, line_names, random_cubes, records};
        use oddcube_data::NoProgress;
        let (n, l, s) = (60, 3, 8);
        let cubes = random_cubes(n, l, s, 5);
        let galaxies = records(n);
        let lines = line_names(l);
        let model = FlatModel { n_lines: l };
        let rows: Vec<usize> = (0..n).rev().filter(|r| r % 7 != 3).collect();
        let reference: Vec<usize> = (0..40).collect();
        let fitted = crate::calibration::calibrate(
            &model,
            &cubes,
            &galaxies,
            &lines,
            &rows,
            &reference,
            "training+validation",
            5,
            &NoProgress,
        )
        .unwrap();
        let again = member_scores(
            &model,
            &fitted.null,
            &cubes,
            &galaxies,
            &lines,
            &rows,
            Metric::Euclidean,
            &NoProgress,
        )
        .unwrap();
        assert_eq!(fitted.scores.len(), rows.len());
        assert!(fitted.scores.iter().all(|s| s.is_finite()));
        assert_eq!(fitted.scores, again.score);
        assert_eq!(again.maps.plateifus.len(), rows.len());
    }

    fn members(seeds: &[u64], kept: u64) -> Vec<EnsembleMember> {
        seeds
            .iter()
            .map(|&seed| EnsembleMember {
                seed,
                dir: if seed == kept {
                    KEPT_DIR.to_string()
                } else {
                    member_dir(seed)
                },
            })
            .collect()
    }

    /// Scores of `n` ordinary galaxies: a shared part (the galaxy) plus each member's own error.
    fn ordinary(n: usize, members: usize) -> Vec<Vec<f64>> {
        (0..members)
            .map(|m| {
                (0..n)
                    .map(|i| {
                        let shared = ((i * 37) % 101) as f64 / 101.0 - 0.5;
                        let own = (((i + 13 * m) * 59) % 97) as f64 / 97.0 - 0.5;
                        shared + own
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn the_null_standardises_the_mean_of_the_members() {
        let scores = ordinary(400, 3);
        let null =
            EnsembleNull::fit(members(&[4, 5, 6], 5), &scores, "training+validation").unwrap();
        assert_eq!(null.n_calibration, 400);
        // The calibration galaxies' own ensemble scores have median 0 (the centre is theirs).
        let own: Vec<f64> = (0..400)
            .map(|i| null.score(&[scores[0][i], scores[1][i], scores[2][i]]))
            .collect();
        assert!(median(&own).abs() < 1e-12);
        // And they are the stored body, sorted.
        let mut sorted = own.clone();
        sorted.sort_by(f64::total_cmp);
        assert_eq!(sorted, null.null_scores);
        // The mean's spread is narrower than a member's: half of each score is its own error.
        let member_scale = tail_sigma(&scores[0]);
        assert!(
            null.scale < member_scale,
            "{} vs {member_scale}",
            null.scale
        );
    }

    #[test]
    fn a_score_is_monotone_in_each_member_and_nan_with_any_member_nan() {
        let null = EnsembleNull::fit(members(&[1, 2], 1), &ordinary(50, 2), "validation").unwrap();
        let base = null.score(&[0.5, 0.2]);
        assert!(null.score(&[0.6, 0.2]) > base && null.score(&[0.5, 0.3]) > base);
        assert!(null.pvalue(null.score(&[3.0, 3.0])) < null.pvalue(base));
        assert!(null.score(&[f64::NAN, 0.2]).is_nan());
        assert_eq!(null.pvalue(f64::NAN), 1.0);
    }

    #[test]
    fn combine_fills_the_kept_column_and_is_independent_of_row_order() {
        let scores = ordinary(60, 2);
        let null = EnsembleNull::fit(members(&[7, 8], 7), &scores, "training+validation").unwrap();
        let catalog_of = |rows: &[usize]| {
            let mut c = Catalog::default();
            let take = |m: usize| rows.iter().map(|&i| scores[m][i]).collect::<Vec<_>>();
            c.set("score", Column::F64(take(0))).unwrap();
            c.set(&member_column(8), Column::F64(take(1))).unwrap();
            null.combine(&mut c).unwrap();
            c
        };
        let forward: Vec<usize> = (0..60).collect();
        let backward: Vec<usize> = (0..60).rev().collect();
        let (a, b) = (catalog_of(&forward), catalog_of(&backward));
        let (sa, sb) = (a.f64("score").unwrap(), b.f64("score").unwrap());
        for i in 0..60 {
            assert_eq!(sa[i], sb[59 - i]);
            assert_eq!(sa[i], null.score(&[scores[0][i], scores[1][i]]));
        }
        assert_eq!(a.f64(&member_column(7)).unwrap()[3], scores[0][3]);
        // Combining again (a merge recomputes the kept score first) changes nothing.
        let mut again = a.clone();
        again
            .set(&member_column(7), Column::F64(scores[0].clone()))
            .unwrap();
        again.set("score", Column::F64(scores[0].clone())).unwrap();
        null.combine(&mut again).unwrap();
        assert_eq!(again.f64("score").unwrap(), sa);
    }

    #[test]
    fn a_missing_member_column_is_an_error_that_names_it() {
        let null = EnsembleNull::fit(members(&[1, 2], 1), &ordinary(20, 2), "validation").unwrap();
        let mut c = Catalog::default();
        c.set("score", Column::F64(vec![0.0; 3])).unwrap();
        let err = null.combine(&mut c).unwrap_err().to_string();
        assert!(err.contains("score_seed_2"), "{err}");
    }

    #[test]
    fn round_trip_and_damaged_files() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(EnsembleNull::read(dir.path()).unwrap(), None);
        let null =
            EnsembleNull::fit(members(&[3, 4, 5], 4), &ordinary(30, 3), "validation").unwrap();
        null.write(dir.path()).unwrap();
        assert_eq!(EnsembleNull::read(dir.path()).unwrap(), Some(null.clone()));
        for (edit, why) in [
            (
                {
                    let mut e = null.clone();
                    e.members[0].dir = KEPT_DIR.to_string();
                    e
                },
                "exactly one member",
            ),
            (
                {
                    let mut e = null.clone();
                    e.scale = 0.0;
                    e
                },
                "scale",
            ),
            (
                {
                    let mut e = null.clone();
                    e.members[2].seed = 3;
                    e.members[2].dir = member_dir(3);
                    e
                },
                "same seed",
            ),
        ] {
            edit.write(dir.path()).unwrap();
            let err = EnsembleNull::read(dir.path()).unwrap_err().to_string();
            assert!(err.contains(why) && err.contains(ENSEMBLE_FILE), "{err}");
        }
        // Fitting needs two members, one of them kept.
        assert!(EnsembleNull::fit(members(&[1], 1), &ordinary(20, 1), "validation").is_err());
        assert!(EnsembleNull::fit(members(&[1, 2], 9), &ordinary(20, 2), "validation").is_err());
    }
}
