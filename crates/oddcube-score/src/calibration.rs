//! The null model of ordinary galaxies, fitted once on the model's own dataset and stored with
//! the model: the per-line error floors of the anomaly map, the reference latents of the latent
//! score, and the distribution of every score component and of their fusion — so that a p-value
//! means the same thing whether a whole survey or a short follow-up list is scored.
//!
//! **Components.** Four label-free pieces of evidence, each a positive number per galaxy:
//! `pooled` (the galaxy's summed χ² over its summed error budget, measurement variance plus the
//! model floor, `anomaly_map.rs`), `chi2` (mean χ² of all usable measurements in σ units),
//! `local` (peak of the PSF-smoothed anomaly map) and `knn_dist` (distance to the k-th nearest
//! *training* galaxy in latent space). They see different anomalies: a change the model cannot
//! rebuild anywhere in the galaxy raises `pooled`, a bright change of line ratios raises `chi2`
//! even where the floor excuses part of it, a compact nucleus raises `local`, a galaxy unlike
//! any in the training set raises `knn_dist`. (`global`, the *mean* floored `z²`, stays a
//! catalogue column; it weighs every pixel alike, and the bright, clumpy disks it lifts are the
//! ordinary galaxies that most often topped the fused score when it was a component.)
//!
//! **Standardising.** For each component the log value is regressed, robustly (Huber IRLS,
//! scale from the MAD), on nuisance properties that change ordinary galaxies' scores but are not
//! anomaly signals: the IFU size (fibres in the bundle, fixed by the observation's design) and the
//! noise depth (median inverse variance in flux units, independent of how bright the lines are).
//! Not the number of usable pixels: it follows where lines are detected, so a compact anomaly
//! shrinks it and a regression on it explains part of the anomaly away (nulls of format `/3`
//! were fitted on it and still read and apply it; [`Calibration::covariates`]). The
//! standardised residual `z_k = (log c_k − x·β_k) / s_k` is what "unusual for a galaxy observed
//! like this one" means. With fewer than [`MIN_FOR_COVARIATES`] calibration galaxies only a
//! location and scale are fitted.
//!
//! **Fusion.** `S = mean_k z_k` (averaging standardised scores is the standard unsupervised
//! outlier ensemble, more stable than their maximum), then `score = (S − median S) / σ_S` with
//! the median and [`tail_sigma`] of `S` on the calibration galaxies. The p-value is the share of
//! the calibration galaxies' stored fused scores at least as high below their 90th percentile
//! (and below `z₉₀ = 1.28` at the latest), and `P(Z ≥ score)` for a standard normal `Z` above
//! ([`Calibration::pvalue`]). Medians and upper-tail scales keep the anomalies that are inevitably
//! among the calibration galaxies from widening the null.
//!
//! **Where it is fitted.** On every galaxy of the model's dataset, training and validation
//! split together: a few hundred galaxies instead of the few dozen of the validation split, so
//! the tail the p-values live in is measured rather than extrapolated. This is sound because the
//! model does not rebuild its training galaxies better than new ones: [`calibrate`] measures the
//! validation galaxies' median fused score against the training galaxies' and records it as
//! [`Calibration::validation_shift`] (on the benchmark surveys it is −0.01 on average, −0.19 to
//! +0.19 σ, the spread expected of 30–50 validation galaxies); the caller refits on the
//! validation galaxies alone when it is not. The training galaxies also provide the reference
//! latents (a galaxy is never its own neighbour).

use std::path::Path;

use oddcube_data::Progress;
use oddcube_data::cubes::Cubes;
use oddcube_data::dataset::GalaxyRecord;
use oddcube_data::stats::quantile_of_sorted;
use rayon::prelude::*;

use crate::anomaly_map::floored_z2;
use crate::error::{Error, Result, check_len};
use crate::knn::{LatentView, Metric, all_nearest, nearest};
use crate::latents::{Latents, write_npy_f32};
use crate::lof::{outlier_factor_against, reachability_densities};
use crate::results::{invalid, write_atomic};
use crate::robust::{Z_90, dot, huber_regression, median, normal_upper_tail, tail_sigma};
use crate::score::{Autoencoder, CHUNK};

/// File of the fitted null inside a model (and a RESULTS) directory.
pub const CALIBRATION_FILE: &str = "calibration.json";
/// The training galaxies' latents `[R, D]` (little-endian f32 `.npy`) next to it.
pub const REFERENCE_LATENTS_FILE: &str = "reference_latents.npy";
/// Format tag of [`CALIBRATION_FILE`].
pub const CALIBRATION_FORMAT: &str = "oddcube-calibration/4";
/// The format before the covariates were named (it regressed on the usable pixels and the depth,
/// [`LEGACY_COVARIATES`]): the same components, still read and applied as fitted.
const PREVIOUS_FORMAT: &str = "oddcube-calibration/3";
/// Formats of nulls over other components (`/1`: `global`, `local`, `knn_dist`; `/2`: `chi2`,
/// `global`, `local`, `knn_dist`); read as "no stored null", so the caller falls back and says
/// how to refit.
const STALE_FORMATS: [&str; 2] = ["oddcube-calibration/1", "oddcube-calibration/2"];
/// Number of score components.
pub const N_COMPONENTS: usize = 4;
/// The score components, in the order of [`Calibration::components`].
pub const COMPONENTS: [&str; N_COMPONENTS] = ["pooled", "chi2", "local", "knn_dist"];
/// Calibration galaxies needed before the nuisance covariates are fitted. On the 300-galaxy
/// benchmark surveys the regression (then on the usable pixels and the depth) lowered the fused
/// score's mean AUROC from 0.963 to 0.940 and raised the false flags: with a few hundred
/// galaxies, some of them anomalous, it absorbs part of the anomalies' signal and extrapolates
/// badly to small IFUs. On a few thousand galaxies it keeps the p-values calibrated. Regressing
/// on the IFU size from 100 galaxies on (measured 2026-12-03) removed the 300-galaxy pure nulls'
/// false flags but moved them to small bundles that a large disk overfills, and lifted the real
/// galaxy 7815-3702 past the 90th percentile (docs/scoring.md, "What the pure nulls' top scores
/// share").
pub const MIN_FOR_COVARIATES: usize = 1000;
/// The covariates a new null regresses on, in the order of [`ComponentNull::coef`] after the
/// intercept: log IFU size and log noise depth.
pub const COVARIATES: [&str; 2] = ["ifu_size", "depth"];
/// Share of the calibration galaxies that must have a value of a covariate for it to be fitted
/// (the others stand at the mean, [`Calibration::design_row`]).
const MIN_KNOWN_SHARE: f64 = 0.9;
/// The covariates of a `/3` null, which did not name them: log usable pixels and log depth.
const LEGACY_COVARIATES: [&str; 2] = ["n_pixels", "depth"];

/// Median of `χ²₁`, what the median floored `z²` of a line is fitted to.
const CHI2_1_MEDIAN: f64 = 0.454_936_423_119_572_8;

/// Squared predicted signal-to-noise from which a pixel takes part in fitting the floors.
const FLOOR_MIN_SNR2: f64 = 9.0;

/// Pixels per line used to fit its floor (a deterministic stride over the calibration pixels).
const FLOOR_SAMPLE: usize = 200_000;

/// The null of one component: `z = (log c − β·x) / scale` with `x = [1, log v₁ − m₁, log v₂ −
/// m₂]` for the covariates `v` of [`Calibration::covariates`] (only the intercept when `coef` has
/// one entry).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ComponentNull {
    /// Component name (a catalogue column).
    pub name: String,
    /// Regression coefficients: intercept, then per covariate.
    pub coef: Vec<f64>,
    /// Upper-tail robust σ of the residuals ([`crate::robust::upper_sigma`]).
    pub scale: f64,
}

/// A fitted null model (see the module docs).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Calibration {
    /// [`CALIBRATION_FORMAT`].
    pub format: String,
    /// Which galaxies it was fitted on: `training+validation` (the model's whole dataset, the
    /// default), `validation` (the galaxies the model never trained on, when the training
    /// galaxies scored lower than them) or `population` (the scored galaxies themselves — the
    /// fallback for models without a stored null).
    pub fitted_on: String,
    /// Galaxies it was fitted on.
    pub n_calibration: usize,
    /// Per-line fractional error floors `ε_l` of the anomaly map.
    pub floors: Vec<f64>,
    /// Neighbour rank of `knn_dist` and `lof` against the reference.
    pub knn_k: usize,
    /// The nuisance covariates the components are regressed on, by catalogue column name: those
    /// of [`COVARIATES`] that nine in ten calibration galaxies have a value of, and none with
    /// fewer than [`MIN_FOR_COVARIATES`] galaxies. (A `/3` null, which did not record them,
    /// regressed on the usable pixels and the depth.)
    #[serde(default = "legacy_covariates")]
    pub covariates: Vec<String>,
    /// Means of the log covariates the regressions are centred on (over the calibration
    /// galaxies that have a value).
    pub covariate_means: Vec<f64>,
    /// One null per entry of [`COMPONENTS`].
    pub components: Vec<ComponentNull>,
    /// Median of the mean standardised component on the calibration galaxies.
    pub combined_centre: f64,
    /// Its upper-tail robust σ ([`tail_sigma`]).
    pub combined_scale: f64,
    /// Plate-IFUs of the reference latents (a scored galaxy is never its own neighbour).
    pub reference_plateifus: Vec<String>,
    /// Median fused score of the calibration galaxies the model did not train on minus that of
    /// the ones it trained on, in units of the fused score's σ: how much lower a training
    /// galaxy scores for having been trained on. `None` when either group has fewer than
    /// [`MIN_FOR_SHIFT`] galaxies (or the null was fitted on the scored population). A null
    /// refitted on the validation galaxies keeps the shift measured before, which caused it
    /// (`oddcube::calibrate`).
    #[serde(default)]
    pub validation_shift: Option<f64>,
    /// The calibration galaxies' fused scores, ascending: the empirical body of the null
    /// ([`Calibration::pvalue`]).
    #[serde(default)]
    pub null_scores: Vec<f64>,
}

impl Calibration {
    /// Checks the values a fitted null can hold (what [`calibrate`] writes), so that an edited
    /// or damaged file is an error instead of NaN, infinite or reversed scores: positive finite
    /// scales, finite coefficients and centres, a floor per line that is finite and not negative,
    /// a neighbour rank the reference can serve (a reference galaxy is not its own neighbour;
    /// [`calibrate`] caps the rank at one below the reference's size),
    /// and ascending finite null scores.
    pub fn check_values(&self) -> std::result::Result<(), String> {
        let positive = |v: f64| v.is_finite() && v > 0.0;
        if self.n_calibration == 0 {
            return Err("n_calibration is 0: a null needs calibration galaxies".into());
        }
        if self.floors.is_empty() {
            return Err("floors is empty: a null has one floor per line".into());
        }
        if let Some(f) = self.floors.iter().find(|f| !(f.is_finite() && **f >= 0.0)) {
            return Err(format!(
                "floors hold {f}: each must be finite and not negative"
            ));
        }
        let reference = self.reference_plateifus.len();
        let most = reference.saturating_sub(1).max(1);
        if !(1..=most).contains(&self.knn_k) {
            return Err(format!(
                "knn_k {} is outside 1..={most} for {reference} reference galaxies",
                self.knn_k
            ));
        }
        if !positive(self.combined_scale) || !self.combined_centre.is_finite() {
            return Err(format!(
                "combined_scale {} must be positive and combined_centre {} finite",
                self.combined_scale, self.combined_centre
            ));
        }
        if let Some(bad) = self.components.iter().find(|c| {
            !positive(c.scale) || c.coef.is_empty() || c.coef.iter().any(|v| !v.is_finite())
        }) {
            return Err(format!(
                "component {:?}: its scale ({}) must be positive and its coefficients ({:?}) \
                 finite",
                bad.name, bad.scale, bad.coef
            ));
        }
        if self.covariate_means.iter().any(|m| !m.is_finite()) {
            return Err("covariate_means must be finite".into());
        }
        if self.null_scores.iter().any(|s| !s.is_finite())
            || self.null_scores.windows(2).any(|w| w[0] > w[1])
        {
            return Err("null_scores must be finite and ascending".into());
        }
        Ok(())
    }
}

fn legacy_covariates() -> Vec<String> {
    LEGACY_COVARIATES.iter().map(|c| c.to_string()).collect()
}

/// Quantile of the calibration galaxies' fused scores below which p-values are empirical
/// ([`Calibration::pvalue`]). Above it a handful of galaxies, some of them anomalies, cannot
/// say how rare a score is, and the normal tail with [`tail_sigma`]'s scale takes over.
pub const BODY_QUANTILE: f64 = 0.9;

/// Scores closer than this (σ units) count as tied in the empirical body of the null.
const SCORE_TIE: f64 = 1e-6;

/// Galaxies each group needs before [`Calibration::validation_shift`] is measured.
pub const MIN_FOR_SHIFT: usize = 10;

/// A calibration with its reference latents.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredNull {
    /// The fitted null.
    pub calibration: Calibration,
    /// Reference latents `[R, D]`, row-major.
    pub reference: Vec<f32>,
    /// D.
    pub latent_dim: usize,
}

impl StoredNull {
    /// Writes [`CALIBRATION_FILE`] and [`REFERENCE_LATENTS_FILE`] into `dir` atomically.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(&self.calibration).map_err(|e| Error::Json {
            what: CALIBRATION_FILE.to_string(),
            reason: e.to_string(),
        })?;
        write_npy_f32(
            &dir.join(REFERENCE_LATENTS_FILE),
            &self.reference,
            self.calibration.reference_plateifus.len(),
            self.latent_dim,
        )?;
        write_atomic(&dir.join(CALIBRATION_FILE), text.as_bytes())
    }

    /// Reads the null stored in `dir`; `Ok(None)` when there is none (models trained before
    /// calibration existed) or it is of an older score definition (refit with `oddcube
    /// calibrate`).
    pub fn read(dir: &Path) -> Result<Option<StoredNull>> {
        let path = dir.join(CALIBRATION_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(Error::Io { path, source }),
        };
        let calibration: Calibration = serde_json::from_str(&text)
            .map_err(|e| invalid(&path, format!("not a calibration file: {e}")))?;
        // A null of an older score definition would standardise the wrong components: the
        // caller falls back as for a model without one, and says how to refit it.
        if STALE_FORMATS.contains(&calibration.format.as_str()) {
            return Ok(None);
        }
        if calibration.format == PREVIOUS_FORMAT {
            // Its covariates were the usable pixels and the depth, which serde's default for the
            // missing field already says; a `/3` file naming others was not written by oddcube.
            if calibration.covariates != legacy_covariates() {
                return Err(invalid(
                    &path,
                    "a /3 null regresses on n_pixels and depth only",
                ));
            }
        } else if calibration.format != CALIBRATION_FORMAT {
            return Err(invalid(
                &path,
                format!(
                    "format {:?}, this oddcube reads {CALIBRATION_FORMAT:?}",
                    calibration.format
                ),
            ));
        }
        if calibration.components.len() != COMPONENTS.len() {
            return Err(invalid(&path, "wrong number of score components"));
        }
        if let Some(unknown) = calibration
            .covariates
            .iter()
            .find(|c| Covariates::log_of_name(c).is_none())
        {
            return Err(invalid(&path, format!("unknown covariate {unknown:?}")));
        }
        let slots = 1 + calibration.covariates.len();
        if calibration.covariate_means.len() != calibration.covariates.len()
            || calibration
                .components
                .iter()
                .any(|c| c.coef.len() != 1 && c.coef.len() != slots)
        {
            return Err(invalid(
                &path,
                "the covariate means and coefficients do not match the covariates",
            ));
        }
        calibration
            .check_values()
            .map_err(|reason| invalid(&path, reason))?;
        let latents = Latents::open(&dir.join(REFERENCE_LATENTS_FILE))?;
        if latents.n() != calibration.reference_plateifus.len() {
            return Err(invalid(
                &dir.join(REFERENCE_LATENTS_FILE),
                format!(
                    "{} rows but {CALIBRATION_FILE} names {} reference galaxies",
                    latents.n(),
                    calibration.reference_plateifus.len()
                ),
            ));
        }
        Ok(Some(StoredNull {
            latent_dim: latents.dim(),
            reference: latents.as_slice().to_vec(),
            calibration,
        }))
    }
}

/// Nuisance properties of one galaxy that a null can regress on ([`COVARIATES`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Covariates {
    /// Fibres in the IFU bundle (19–127); 0 when unknown.
    pub ifu_size: f64,
    /// Pixels with at least one usable measurement (the covariate of `/3` nulls).
    pub n_pixels: f64,
    /// Median inverse variance of the usable measurements in flux units (`w / scale²`).
    pub depth: f64,
}

impl Covariates {
    /// The getter of covariate `name`'s log value, `None` for a name this type does not carry.
    /// The getter gives `None` for a galaxy without a value (an unknown IFU size, a depth of 0).
    fn log_of_name(name: &str) -> Option<fn(&Covariates) -> Option<f64>> {
        fn positive_log(v: f64) -> Option<f64> {
            (v > 0.0 && v.is_finite()).then(|| v.ln())
        }
        match name {
            "ifu_size" => Some(|c| positive_log(c.ifu_size)),
            // A galaxy without usable pixels has NaN components and never reaches the fit.
            "n_pixels" => Some(|c| Some(c.n_pixels.max(1.0).ln())),
            "depth" => Some(|c| positive_log(c.depth)),
            _ => None,
        }
    }

    /// The log of covariate `name`; `None` when the galaxy has no value or the name is unknown.
    fn log(&self, name: &str) -> Option<f64> {
        Self::log_of_name(name).and_then(|get| get(self))
    }
}

/// What the calibration says about one galaxy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    /// Standardised components, in [`COMPONENTS`] order.
    pub z: [f64; N_COMPONENTS],
    /// The fused, standardised score (NaN when a component is missing).
    pub score: f64,
    /// The p-value of `score` ([`Calibration::pvalue`]: empirical body, normal tail); 1 when
    /// the score is NaN.
    pub pvalue: f64,
}

impl Calibration {
    /// `[1, log v₁ − m₁, …]`, the first `p` entries. A covariate the galaxy has no value of
    /// stands at the calibration galaxies' mean (a centred 0): the regression then says
    /// nothing about it, rather than something wrong.
    fn design_row(&self, covariates: Covariates, p: usize) -> Vec<f64> {
        let mut row = vec![1.0];
        for (name, mean) in self
            .covariates
            .iter()
            .zip(&self.covariate_means)
            .take(p - 1)
        {
            row.push(covariates.log(name).map_or(0.0, |v| v - mean));
        }
        row
    }

    fn standardise(
        &self,
        values: [f64; N_COMPONENTS],
        covariates: Covariates,
    ) -> [f64; N_COMPONENTS] {
        let mut z = [f64::NAN; N_COMPONENTS];
        for (k, null) in self.components.iter().enumerate() {
            let v = values[k];
            if v.is_finite() && v >= 0.0 {
                let row = self.design_row(covariates, null.coef.len());
                z[k] = (v.max(f64::MIN_POSITIVE).ln() - dot(&null.coef, &row)) / null.scale;
            }
        }
        z
    }

    /// Scores one galaxy from its raw components (in [`COMPONENTS`] order) and covariates.
    pub fn verdict(&self, values: [f64; N_COMPONENTS], covariates: Covariates) -> Verdict {
        let z = self.standardise(values, covariates);
        let mean = z.iter().sum::<f64>() / z.len() as f64;
        let score = (mean - self.combined_centre) / self.combined_scale;
        Verdict {
            z,
            score,
            pvalue: self.pvalue(score),
        }
    }

    /// Whether the component nulls regress on covariates (more than an intercept), as they do
    /// from [`MIN_FOR_COVARIATES`] calibration galaxies.
    fn fits_covariates(&self) -> bool {
        self.components.iter().any(|c| c.coef.len() > 1)
    }

    /// What each component's null was regressed on, for the log: "regressed on ifu_size and
    /// depth", or "location and scale only" when no covariate was fitted.
    pub fn describe_covariates(&self) -> String {
        if self.fits_covariates() && !self.covariates.is_empty() {
            format!("regressed on {}", self.covariates.join(" and "))
        } else {
            "location and scale only".to_string()
        }
    }

    /// Why a usable null should be refitted, when it should: a `/3` null that regressed on the
    /// usable pixels (fitted on 1000 galaxies or more) explains part of compact and extended
    /// anomalies away. `None` for a current null, or a `/3` one that fitted no covariates (it
    /// computes what a refit would).
    pub fn superseded(&self) -> Option<String> {
        (self.format == PREVIOUS_FORMAT && self.fits_covariates()).then(|| {
            format!(
                "{PREVIOUS_FORMAT} regresses on the usable pixels, which \
                 compact and extended anomalies change; `oddcube calibrate --model MODEL --data \
                 DATASET` refits it on the IFU size"
            )
        })
    }

    /// The p-value of a fused score against the calibration galaxies' stored scores
    /// ([`null_pvalue`]).
    pub fn pvalue(&self, score: f64) -> f64 {
        null_pvalue(&self.null_scores, score)
    }

    /// Fits the component nulls and the fusion to the calibration galaxies' raw components and
    /// covariates (floors, reference and `knn_k` are recorded as given).
    pub fn fit(
        values: &[[f64; N_COMPONENTS]],
        covariates: &[Covariates],
        floors: Vec<f64>,
        knn_k: usize,
        fitted_on: &str,
        reference_plateifus: Vec<String>,
    ) -> Result<Calibration> {
        check_len("calibration covariates", covariates.len(), values.len())?;
        let usable: Vec<usize> = (0..values.len())
            .filter(|&i| values[i].iter().all(|v| v.is_finite() && *v >= 0.0))
            .collect();
        if usable.len() < 3 {
            return Err(Error::InvalidParameter {
                name: "calibration galaxies".to_string(),
                value: usable.len().to_string(),
                reason: "at least 3 galaxies with finite scores are needed to fit a null"
                    .to_string(),
            });
        }
        // Each covariate's log values over the calibration galaxies that have one. A covariate
        // most of them lack (IFU sizes of files without IFUDESIGN) is left out rather than
        // fitted to a few.
        let known: Vec<(&str, Vec<f64>)> = if usable.len() >= MIN_FOR_COVARIATES {
            COVARIATES
                .iter()
                .map(|&name| {
                    let values = usable
                        .iter()
                        .filter_map(|&i| covariates[i].log(name))
                        .collect::<Vec<f64>>();
                    (name, values)
                })
                .filter(|(_, values)| values.len() as f64 >= MIN_KNOWN_SHARE * usable.len() as f64)
                .collect()
        } else {
            Vec::new()
        };
        let covariate_means: Vec<f64> = known
            .iter()
            .map(|(_, values)| values.iter().sum::<f64>() / values.len() as f64)
            .collect();
        let p = 1 + known.len();
        let mut calibration = Calibration {
            format: CALIBRATION_FORMAT.to_string(),
            fitted_on: fitted_on.to_string(),
            n_calibration: usable.len(),
            floors,
            knn_k,
            covariates: known.iter().map(|(name, _)| name.to_string()).collect(),
            covariate_means,
            components: Vec::new(),
            combined_centre: 0.0,
            combined_scale: 1.0,
            reference_plateifus,
            validation_shift: None,
            null_scores: Vec::new(),
        };
        let design: Vec<Vec<f64>> = usable
            .iter()
            .map(|&i| calibration.design_row(covariates[i], p))
            .collect();
        for (k, name) in COMPONENTS.iter().enumerate() {
            let y: Vec<f64> = usable
                .iter()
                .map(|&i| values[i][k].max(f64::MIN_POSITIVE).ln())
                .collect();
            let (coef, scale) = huber_regression(&design, &y);
            calibration.components.push(ComponentNull {
                name: name.to_string(),
                coef,
                scale,
            });
        }
        let means: Vec<f64> = usable
            .iter()
            .map(|&i| {
                let z = calibration.standardise(values[i], covariates[i]);
                z.iter().sum::<f64>() / z.len() as f64
            })
            .collect();
        calibration.combined_centre = median(&means);
        calibration.combined_scale = tail_sigma(&means);
        let mut scores: Vec<f64> = means
            .iter()
            .map(|m| (m - calibration.combined_centre) / calibration.combined_scale)
            .filter(|s| s.is_finite())
            .collect();
        scores.sort_by(f64::total_cmp);
        calibration.null_scores = scores;
        Ok(calibration)
    }
}

/// The p-value of a standardised score against a null's stored scores `sorted` (ascending): in
/// the tail (at or above their 90th percentile, or z₉₀ = 1.28 if that is lower) the normal tail
/// `P(Z ≥ score)`; in the body, where the calibration galaxies themselves say how rare a score
/// is, the share of them scoring at least as high (to 10⁻⁶ σ), `(1 + #{sᵢ ≥ score}) / (n + 1)`,
/// but never below the tail's value where the body ends (so p never rises with the score). 1 for
/// a NaN score. Without stored scores (a null written before they were kept) the normal tail
/// everywhere. A single model's null ([`Calibration::pvalue`]) and the restart ensemble's
/// ([`crate::ensemble::EnsembleNull::pvalue`]) both use it.
pub fn null_pvalue(sorted: &[f64], score: f64) -> f64 {
    if !score.is_finite() {
        return 1.0;
    }
    let tail = normal_upper_tail(score);
    if sorted.is_empty() {
        return tail;
    }
    // The body ends at the calibration galaxies' 90th percentile, or at the normal model's
    // own (z₉₀) if that comes first: when a tenth or more of the calibration galaxies are
    // anomalies their 90th percentile lies among them, and a galaxy scoring like those
    // anomalies must get the tail's p-value, not their share.
    let body_end = quantile_of_sorted(sorted, BODY_QUANTILE)
        .unwrap_or(Z_90)
        .min(Z_90);
    if score >= body_end {
        return tail;
    }
    // A calibration galaxy scored again (the usual case: a survey scored by the model
    // trained on it) must count itself whatever the last bits of its score: batch
    // composition moves a score by ~1e-7 σ.
    let at_least = sorted.len() - sorted.partition_point(|v| *v < score - SCORE_TIE);
    let empirical = (1 + at_least) as f64 / (sorted.len() + 1) as f64;
    empirical.max(normal_upper_tail(body_end))
}

/// Fits each line's floor `ε_l` so that the median floored `z²` of its usable pixels predicted
/// at S/N ≥ 3 in the calibration galaxies equals the median of `χ²₁` — what a model that is right up to its
/// stated errors would give. A line whose median is already at or below it keeps `ε = 0` (the
/// model is noise-limited there). `x`, `w`, `xhat` are `[n, L, S, S]`.
pub fn fit_floors(x: &[f32], w: &[f32], xhat: &[f32], n_lines: usize, plane: usize) -> Vec<f64> {
    let n = x.len() / (n_lines * plane).max(1);
    (0..n_lines)
        .into_par_iter()
        .map(|l| {
            let mut triples = Vec::new();
            for g in 0..n {
                let base = (g * n_lines + l) * plane;
                for i in base..base + plane {
                    // Only pixels the model predicts at S/N ≥ 3: where the floor matters. Faint
                    // pixels are noise-limited whatever ε is, and, being most pixels of most
                    // galaxies, would hold the median at χ²₁'s and leave bright ones untempered.
                    let usable = w[i] > 0.0 && w[i].is_finite();
                    if usable
                        && x[i].is_finite()
                        && xhat[i].is_finite()
                        && f64::from(xhat[i]).powi(2) * f64::from(w[i]) >= FLOOR_MIN_SNR2
                    {
                        triples.push((x[i], w[i], xhat[i]));
                    }
                }
            }
            if triples.len() > FLOOR_SAMPLE {
                let stride = triples.len().div_ceil(FLOOR_SAMPLE);
                triples = triples.into_iter().step_by(stride).collect();
            }
            let median_at = |eps: f64| {
                let v: Vec<f64> = triples
                    .iter()
                    .map(|&(x, w, xh)| floored_z2(x, w, xh, eps))
                    .collect();
                median(&v)
            };
            // NaN-safe: a line whose median is not above χ²₁'s needs no floor.
            if triples.is_empty()
                || median_at(0.0).partial_cmp(&CHI2_1_MEDIAN) != Some(std::cmp::Ordering::Greater)
            {
                return 0.0;
            }
            // The median falls monotonically with ε: bisect on a log scale.
            let (mut lo, mut hi) = (1e-6f64, 1.0f64);
            while median_at(hi) > CHI2_1_MEDIAN && hi < 1e6 {
                hi *= 10.0;
            }
            for _ in 0..50 {
                let mid = (lo * hi).sqrt();
                if median_at(mid) > CHI2_1_MEDIAN {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            hi
        })
        .collect()
}

/// Each query latent's distance to its k-th nearest reference latent and its local outlier
/// factor against the references (`lof.rs`), skipping a reference with the same plate-IFU (a
/// galaxy is not its own neighbour). NaN when fewer than k references remain. The LOF compares
/// the query's neighbourhood density with its neighbours' own, so galaxies in a naturally sparse
/// part of latent space (e.g. faint, noisy ones) are not outliers merely for being there.
pub fn reference_neighbourhood(
    queries: &[f32],
    query_plateifus: &[String],
    reference: &StoredNull,
    k: usize,
    metric: Metric,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let dim = reference.latent_dim;
    check_len("query latents", queries.len(), query_plateifus.len() * dim)?;
    let names = &reference.calibration.reference_plateifus;
    let view = LatentView::new(&reference.reference, names.len(), dim)?;
    if k == 0 || names.len() <= k {
        let nan = vec![f64::NAN; query_plateifus.len()];
        return Ok((nan.clone(), nan));
    }
    let graph = all_nearest(&view, k, metric, &oddcube_data::NoProgress)?;
    let (k_distance, lrd) = reachability_densities(&graph, k)?;
    let index: std::collections::HashMap<&str, usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    let pairs: Vec<(f64, f64)> = query_plateifus
        .par_iter()
        .enumerate()
        .map(|(q, name)| {
            let exclude = index.get(name.as_str()).copied();
            let found = nearest(&view, &queries[q * dim..(q + 1) * dim], k, metric, exclude)?;
            let neighbours: Vec<(usize, f64)> = found
                .iter()
                .map(|n| (n.index, f64::from(n.distance)))
                .collect();
            let kth = neighbours.last().map_or(f64::NAN, |n| n.1);
            Ok((kth, outlier_factor_against(&neighbours, &k_distance, &lrd)))
        })
        .collect::<Result<_>>()?;
    Ok(pairs.into_iter().unzip())
}

/// A null fitted by [`calibrate`], with what the fit already computed about its galaxies.
#[derive(Debug, Clone, PartialEq)]
pub struct FittedNull {
    /// The null, as stored in the model directory.
    pub null: StoredNull,
    /// The fused score under `null` of each calibration galaxy, in the order of the
    /// `calibration_rows` given to [`calibrate`] (NaN where a galaxy cannot be scored): what
    /// [`crate::ensemble::member_scores`] would return as `score` for those rows, without
    /// scoring them again.
    pub scores: Vec<f64>,
}

/// Fits the stored null of a model: encodes and reconstructs every galaxy at
/// `calibration_rows` and `reference_rows` of `cubes`, fits the line floors on the calibration
/// galaxies, scores them with those floors, takes the reference galaxies' latents, and fits
/// [`Calibration`]. Each galaxy's PSF, which sets the anomaly map's smoothing, comes from its
/// record in `galaxies`.
#[allow(clippy::too_many_arguments)]
pub fn calibrate(
    model: &dyn Autoencoder,
    cubes: &Cubes,
    galaxies: &[GalaxyRecord],
    lines: &[String],
    calibration_rows: &[usize],
    reference_rows: &[usize],
    fitted_on: &str,
    knn_k: usize,
    progress: &dyn Progress,
) -> Result<FittedNull> {
    let plane = cubes.size * cubes.size;
    // Floors first: they need the calibration galaxies' reconstructions only.
    let mut x = Vec::new();
    let mut w = Vec::new();
    let mut xhat = Vec::new();
    for chunk_rows in calibration_rows.chunks(CHUNK) {
        let chunk = cubes.select(chunk_rows);
        let (_, rec) = model
            .encode_reconstruct(&chunk)
            .map_err(|m| invalid(Path::new("model"), m))?;
        x.extend_from_slice(&chunk.x);
        w.extend_from_slice(&chunk.w);
        xhat.extend(rec);
    }
    let floors = fit_floors(&x, &w, &xhat, cubes.n_lines, plane);
    drop((x, w, xhat));
    let settings = crate::score::MapSettings {
        floors: floors.clone(),
        other_maps: Vec::new(),
    };
    let cal = crate::score::score_galaxies(
        model,
        cubes,
        galaxies,
        lines,
        calibration_rows,
        &settings,
        progress,
    )?;
    let (reference_latents, latent_dim) = match latents_of(
        &cal.latents,
        cal.latent_dim,
        calibration_rows,
        reference_rows,
    ) {
        // The usual case: the reference (training) galaxies are among the calibration
        // galaxies, whose latents are already computed.
        Some(latents) => (latents, cal.latent_dim),
        None => {
            let refs = crate::score::score_galaxies(
                model,
                cubes,
                galaxies,
                lines,
                reference_rows,
                &settings,
                progress,
            )?;
            (refs.latents, refs.latent_dim)
        }
    };
    let reference_plateifus: Vec<String> = reference_rows
        .iter()
        .map(|&r| galaxies[r].plateifu.clone())
        .collect();
    let k = knn_k
        .min(reference_plateifus.len().saturating_sub(1))
        .max(1);
    let mut stored = StoredNull {
        calibration: Calibration {
            format: CALIBRATION_FORMAT.to_string(),
            fitted_on: fitted_on.to_string(),
            n_calibration: 0,
            floors: floors.clone(),
            knn_k: k,
            covariates: Vec::new(),
            covariate_means: Vec::new(),
            components: Vec::new(),
            combined_centre: 0.0,
            combined_scale: 1.0,
            reference_plateifus: reference_plateifus.clone(),
            validation_shift: None,
            null_scores: Vec::new(),
        },
        reference: reference_latents,
        latent_dim,
    };
    let names: Vec<String> = calibration_rows
        .iter()
        .map(|&r| galaxies[r].plateifu.clone())
        .collect();
    let (knn, _) = reference_neighbourhood(&cal.latents, &names, &stored, k, Metric::Euclidean)?;
    let (values, covariates) = crate::score::components_and_covariates(&cal.catalog, &knn)?;
    stored.calibration = Calibration::fit(
        &values,
        &covariates,
        floors,
        k,
        fitted_on,
        reference_plateifus,
    )?;
    let reference: std::collections::HashSet<usize> = reference_rows.iter().copied().collect();
    let trained_on: Vec<bool> = calibration_rows
        .iter()
        .map(|r| reference.contains(r))
        .collect();
    let scores: Vec<f64> = values
        .iter()
        .zip(&covariates)
        .map(|(v, c)| stored.calibration.verdict(*v, *c).score)
        .collect();
    stored.calibration.validation_shift = validation_shift(&scores, &trained_on);
    Ok(FittedNull {
        null: stored,
        scores,
    })
}

/// The latents (`dim` each) of `wanted` rows, taken from `latents` computed for `rows`; `None`
/// when a wanted row is not among them.
fn latents_of(latents: &[f32], dim: usize, rows: &[usize], wanted: &[usize]) -> Option<Vec<f32>> {
    let position: std::collections::HashMap<usize, usize> =
        rows.iter().enumerate().map(|(i, &r)| (r, i)).collect();
    let mut out = Vec::with_capacity(wanted.len() * dim);
    for row in wanted {
        let i = *position.get(row)?;
        out.extend_from_slice(latents.get(i * dim..(i + 1) * dim)?);
    }
    Some(out)
}

/// Median fused score of the galaxies not trained on minus that of the trained-on ones (see
/// [`Calibration::validation_shift`]); `None` when either group has fewer than
/// [`MIN_FOR_SHIFT`] finite scores.
pub fn validation_shift(scores: &[f64], trained_on: &[bool]) -> Option<f64> {
    let group = |trained: bool| -> Vec<f64> {
        scores
            .iter()
            .zip(trained_on)
            .filter(|(s, t)| **t == trained && s.is_finite())
            .map(|(s, _)| *s)
            .collect()
    };
    let (validation, training) = (group(false), group(true));
    (validation.len() >= MIN_FOR_SHIFT && training.len() >= MIN_FOR_SHIFT)
        .then(|| median(&validation) - median(&training))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use rand_distr::StandardNormal;

    /// Ordinary galaxies whose log components depend on the covariates plus correlated noise.
    fn null_galaxies(n: usize, seed: u64) -> (Vec<[f64; N_COMPONENTS]>, Vec<Covariates>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut values = Vec::new();
        let mut covariates = Vec::new();
        for _ in 0..n {
            let ifu_size = [19.0, 37.0, 61.0, 91.0, 127.0][rng.random_range(0..5)];
            // Usable pixels scatter around the bundle's footprint; the components do not
            // depend on them beyond what the IFU size says.
            let n_pixels: f64 = ifu_size * rng.random_range(5.0..9.0);
            let depth: f64 = 10f64.powf(rng.random_range(-1.0..1.0));
            let shared: f64 = rng.sample(StandardNormal);
            let mut v = [0.0; N_COMPONENTS];
            for (k, slot) in v.iter_mut().enumerate() {
                let own: f64 = rng.sample(StandardNormal);
                let log = -2.0
                    + 0.5 * f64::ln(ifu_size) * (k as f64 - 1.0)
                    + 0.3 * depth.ln()
                    + 0.4 * (0.6 * shared + 0.8 * own);
                *slot = log.exp();
            }
            values.push(v);
            covariates.push(Covariates {
                ifu_size,
                n_pixels,
                depth,
            });
        }
        (values, covariates)
    }

    /// Kolmogorov–Smirnov distance of a sample from the uniform distribution on [0, 1].
    fn ks_uniform(mut p: Vec<f64>) -> f64 {
        p.sort_by(f64::total_cmp);
        let n = p.len() as f64;
        p.iter()
            .enumerate()
            .map(|(i, &v)| (v - i as f64 / n).abs().max(((i + 1) as f64 / n - v).abs()))
            .fold(0.0, f64::max)
    }

    #[test]
    fn p_values_of_fresh_null_galaxies_are_uniform() {
        let (values, covariates) = null_galaxies(400, 1);
        let cal = Calibration::fit(&values, &covariates, vec![], 10, "validation", vec![]).unwrap();
        let (fresh, fresh_cov) = null_galaxies(2000, 2);
        let p: Vec<f64> = fresh
            .iter()
            .zip(&fresh_cov)
            .map(|(v, c)| cal.verdict(*v, *c).pvalue)
            .collect();
        // The 1 % critical value of the KS statistic for n = 2000 is 1.63/√n ≈ 0.036; the
        // fitted null adds its own estimation error from 400 galaxies (the empirical body's
        // KS distance from its population, 1.63/√400 ≈ 0.08 at 1 %, and ≈ 0.02 typically).
        let d = ks_uniform(p);
        assert!(d < 0.06, "KS distance {d}");
    }

    #[test]
    fn pvalue_is_empirical_in_the_body_normal_in_the_tail_and_never_rises() {
        let (values, covariates) = null_galaxies(400, 5);
        let cal = Calibration::fit(&values, &covariates, vec![], 10, "validation", vec![]).unwrap();
        let sorted = &cal.null_scores;
        assert_eq!(sorted.len(), 400);
        assert!(sorted.windows(2).all(|w| w[0] <= w[1]));
        // The median calibration galaxy: 200 of 400 score at least as high as the 201st value.
        let middle = sorted[200];
        let expected = (1 + 200) as f64 / 401.0;
        assert!((cal.pvalue(middle) - expected).abs() < 1e-12);
        // Above the 90th percentile: the normal tail.
        let high = sorted[395];
        assert_eq!(cal.pvalue(high), normal_upper_tail(high));
        // Non-increasing over a fine grid across body and tail; 1 for NaN.
        let grid: Vec<f64> = (-400..=800).map(|i| f64::from(i) / 100.0).collect();
        let p: Vec<f64> = grid.iter().map(|&x| cal.pvalue(x)).collect();
        assert!(p.windows(2).all(|w| w[1] <= w[0]), "p rises somewhere");
        assert_eq!(cal.pvalue(f64::NAN), 1.0);
        // The calibration galaxies' own p-values are uniform in the body: the share below
        // 0.5 is a half, to one galaxy.
        let own: Vec<f64> = sorted.iter().map(|&x| cal.pvalue(x)).collect();
        let below_half = own.iter().filter(|&&v| v <= 0.5).count();
        assert!((below_half as i64 - 200).abs() <= 1, "{below_half}");
        // A null without stored scores (written before they were kept) uses the normal tail.
        let mut bare = cal.clone();
        bare.null_scores.clear();
        assert_eq!(bare.pvalue(middle), normal_upper_tail(middle));
    }

    #[test]
    fn a_galaxy_scoring_like_many_calibration_anomalies_gets_the_tail_p_value() {
        // A fifth of the calibration galaxies are gross anomalies: their 90th percentile lies
        // among them. A galaxy scoring like them is far in the normal tail, and its p-value
        // must say so rather than "a fifth of the calibration galaxies score this high".
        let (mut values, covariates) = null_galaxies(300, 6);
        for v in values.iter_mut().take(60) {
            for c in v.iter_mut() {
                *c *= 1e6;
            }
        }
        let cal = Calibration::fit(&values, &covariates, vec![], 10, "population", vec![]).unwrap();
        let anomalous = cal.verdict(values[0], covariates[0]);
        assert!(anomalous.score > 5.0, "{}", anomalous.score);
        assert_eq!(anomalous.pvalue, normal_upper_tail(anomalous.score));
        assert!(anomalous.pvalue < 1e-6, "{}", anomalous.pvalue);
        // Below z₉₀ the body stays empirical, floored at the tail's 0.1 there.
        let ordinary = cal.verdict(values[200], covariates[200]);
        if ordinary.score < Z_90 {
            assert!(ordinary.pvalue >= normal_upper_tail(Z_90));
        }
    }

    #[test]
    fn covariates_are_regressed_out() {
        let (values, covariates) = null_galaxies(MIN_FOR_COVARIATES, 3);
        let cal = Calibration::fit(&values, &covariates, vec![], 10, "validation", vec![]).unwrap();
        assert_eq!(cal.covariates, COVARIATES);
        assert_eq!(cal.describe_covariates(), "regressed on ifu_size and depth");
        // The first component's log grows by -0.5 per log IFU size and 0.3 per log depth.
        let first = &cal.components[0];
        assert!((first.coef[1] + 0.5).abs() < 0.1, "{:?}", first.coef);
        assert!((first.coef[2] - 0.3).abs() < 0.1, "{:?}", first.coef);
        // The residual σ is the 0.4 of the simulated noise.
        assert!((first.scale - 0.4).abs() < 0.06, "{}", first.scale);
        // One galaxy fewer: location and scale only.
        let (fewer, fewer_covariates) = null_galaxies(MIN_FOR_COVARIATES - 1, 3);
        let cal =
            Calibration::fit(&fewer, &fewer_covariates, vec![], 10, "validation", vec![]).unwrap();
        assert!(cal.components.iter().all(|c| c.coef.len() == 1));
        assert_eq!(cal.describe_covariates(), "location and scale only");
    }

    #[test]
    fn an_unknown_ifu_size_stands_at_the_mean_and_a_mostly_unknown_one_is_not_fitted() {
        let (values, mut covariates) = null_galaxies(MIN_FOR_COVARIATES, 8);
        let cal = Calibration::fit(&values, &covariates, vec![], 10, "validation", vec![]).unwrap();
        let known = covariates[0];
        let at_mean = Covariates {
            ifu_size: cal.covariate_means[0].exp(),
            ..known
        };
        let unknown = Covariates {
            ifu_size: 0.0,
            ..known
        };
        let (a, b) = (
            cal.verdict(values[0], at_mean),
            cal.verdict(values[0], unknown),
        );
        for k in 0..N_COMPONENTS {
            assert!((a.z[k] - b.z[k]).abs() < 1e-9, "{a:?} {b:?}");
        }
        // A fifth of the galaxies without an IFU size: only the depth is regressed on.
        for c in covariates.iter_mut().step_by(5) {
            c.ifu_size = 0.0;
        }
        let cal = Calibration::fit(&values, &covariates, vec![], 10, "validation", vec![]).unwrap();
        assert_eq!(cal.covariates, ["depth"]);
        assert_eq!(cal.covariate_means.len(), 1);
        assert!(cal.components.iter().all(|c| c.coef.len() == 2));
        assert!((cal.components[0].coef[1] - 0.3).abs() < 0.1);
    }

    #[test]
    fn a_null_of_the_previous_format_keeps_regressing_on_the_usable_pixels() {
        // A `/3` null as oddcube wrote it: no `covariates` field, coefficients for log usable
        // pixels and log depth.
        let (values, covariates) = null_galaxies(MIN_FOR_COVARIATES, 9);
        let mut cal =
            Calibration::fit(&values, &covariates, vec![], 10, "validation", vec![]).unwrap();
        cal.format = PREVIOUS_FORMAT.to_string();
        cal.covariate_means = vec![6.0, 0.0];
        // What `calibrate` writes for a reference this small (it caps the rank; `fit` records it).
        cal.floors = vec![0.0];
        cal.knn_k = 1;
        let mut json = serde_json::to_value(&cal).unwrap();
        json.as_object_mut().unwrap().remove("covariates");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CALIBRATION_FILE), json.to_string()).unwrap();
        write_npy_f32(&dir.path().join(REFERENCE_LATENTS_FILE), &[], 0, 2).unwrap();
        let read = StoredNull::read(dir.path()).unwrap().unwrap().calibration;
        assert_eq!(read.covariates, LEGACY_COVARIATES);
        let base = covariates[0];
        let z = |c: Covariates| read.verdict(values[0], c).z[0];
        let more_pixels = Covariates {
            n_pixels: base.n_pixels * 2.0,
            ..base
        };
        let other_ifu = Covariates {
            ifu_size: base.ifu_size * 2.0,
            ..base
        };
        let slope = read.components[0].coef[1];
        let expected = z(base) - slope * 2f64.ln() / read.components[0].scale;
        assert!((z(more_pixels) - expected).abs() < 1e-9);
        assert_eq!(z(other_ifu), z(base));
        // It is used, and the scoring run is told to refit it; a current null is not, nor a
        // `/3` one that fitted no covariates (a refit computes the same).
        assert!(read.superseded().unwrap().contains("oddcube calibrate"));
        let fresh = Calibration {
            format: CALIBRATION_FORMAT.to_string(),
            ..read.clone()
        };
        assert_eq!(fresh.superseded(), None);
        let mut small = read.clone();
        for c in &mut small.components {
            c.coef.truncate(1);
        }
        assert_eq!(small.superseded(), None);
        // A `/4` null naming a covariate this oddcube does not know is refused, naming the file.
        let mut current = cal.clone();
        current.format = CALIBRATION_FORMAT.to_string();
        current.covariates = vec!["redshift".to_string(), "depth".to_string()];
        std::fs::write(
            dir.path().join(CALIBRATION_FILE),
            serde_json::to_string(&current).unwrap(),
        )
        .unwrap();
        let err = StoredNull::read(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains(CALIBRATION_FILE) && err.contains("redshift"),
            "{err}"
        );
    }

    #[test]
    fn a_few_anomalies_among_the_calibration_galaxies_barely_move_the_null() {
        let (mut values, covariates) = null_galaxies(300, 4);
        let clean =
            Calibration::fit(&values, &covariates, vec![], 10, "validation", vec![]).unwrap();
        for v in values.iter_mut().take(30) {
            v[1] *= 1000.0;
        }
        let dirty =
            Calibration::fit(&values, &covariates, vec![], 10, "validation", vec![]).unwrap();
        assert!((dirty.components[1].scale / clean.components[1].scale - 1.0).abs() < 0.25);
        let a = clean.verdict(values[100], covariates[100]).score;
        let b = dirty.verdict(values[100], covariates[100]).score;
        assert!((a - b).abs() < 0.5, "{a} vs {b}");
    }

    #[test]
    fn the_fused_score_is_monotone_in_each_component() {
        let (values, covariates) = null_galaxies(200, 5);
        let cal = Calibration::fit(&values, &covariates, vec![], 10, "validation", vec![]).unwrap();
        let base = [1.0, 0.01, 0.02, 0.5];
        let c = covariates[0];
        let s0 = cal.verdict(base, c).score;
        for k in 0..N_COMPONENTS {
            let mut up = base;
            up[k] *= 1.5;
            let v = cal.verdict(up, c);
            assert!(v.score > s0, "component {k}");
            // p is non-increasing, not strictly: the empirical body is a step function.
            assert!(v.pvalue <= cal.verdict(base, c).pvalue);
        }
        let mut missing = base;
        missing[N_COMPONENTS - 1] = f64::NAN;
        let v = cal.verdict(missing, c);
        assert!(v.score.is_nan() && v.pvalue == 1.0);
    }

    #[test]
    fn small_calibration_sets_fit_location_and_scale_only() {
        let (values, covariates) = null_galaxies(MIN_FOR_COVARIATES - 1, 6);
        let cal = Calibration::fit(&values, &covariates, vec![], 10, "validation", vec![]).unwrap();
        assert!(cal.components.iter().all(|c| c.coef.len() == 1));
        assert!(Calibration::fit(&values[..2], &covariates[..2], vec![], 1, "x", vec![]).is_err());
    }

    #[test]
    fn floors_bring_the_median_z2_to_the_chi2_median() {
        // x̂ = 10, w = 1, residuals of 10 % of x̂ (1σ × 1): z² with ε = 0 would be 1 for all.
        // Half the pixels off by +1, half by +3: medians 1 and 9 → a floor is needed.
        let plane = 100;
        let xhat = vec![10.0f32; plane];
        let x: Vec<f32> = (0..plane)
            .map(|i| if i % 2 == 0 { 11.0 } else { 13.0 })
            .collect();
        let w = vec![1.0f32; plane];
        let eps = fit_floors(&x, &w, &xhat, 1, plane)[0];
        let z: Vec<f64> = (0..plane)
            .map(|i| floored_z2(x[i], w[i], xhat[i], eps))
            .collect();
        assert!((median(&z) - CHI2_1_MEDIAN).abs() < 1e-6, "{}", median(&z));
        // A noise-limited line keeps ε = 0.
        let quiet: Vec<f32> = (0..plane).map(|i| 10.0 + 0.1 * (i % 3) as f32).collect();
        assert_eq!(fit_floors(&quiet, &w, &xhat, 1, plane)[0], 0.0);
    }

    #[test]
    fn stored_null_round_trip() {
        let (values, covariates) = null_galaxies(50, 7);
        let names: Vec<String> = (0..4).map(|i| format!("1-{i}")).collect();
        let calibration =
            Calibration::fit(&values, &covariates, vec![0.1, 0.0], 3, "validation", names).unwrap();
        let null = StoredNull {
            calibration,
            reference: (0..8).map(|i| i as f32 * 0.5).collect(),
            latent_dim: 2,
        };
        let dir = tempfile::tempdir().unwrap();
        assert!(StoredNull::read(dir.path()).unwrap().is_none());
        null.write(dir.path()).unwrap();
        assert_eq!(StoredNull::read(dir.path()).unwrap().unwrap(), null);
        // A reference file that disagrees with the names is an error naming the file.
        write_npy_f32(&dir.path().join(REFERENCE_LATENTS_FILE), &[0.0; 6], 3, 2).unwrap();
        let err = StoredNull::read(dir.path()).unwrap_err().to_string();
        assert!(err.contains(REFERENCE_LATENTS_FILE), "{err}");
    }

    #[test]
    fn values_no_fit_can_hold_are_errors_naming_the_file() {
        let (values, covariates) = null_galaxies(50, 7);
        let names: Vec<String> = (0..4).map(|i| format!("1-{i}")).collect();
        let fitted =
            Calibration::fit(&values, &covariates, vec![0.1, 0.0], 3, "validation", names).unwrap();
        assert_eq!(fitted.check_values(), Ok(()));
        type Damage = fn(&mut Calibration);
        let damages: [(&str, Damage); 10] = [
            ("knn_k", |c| c.knn_k = 0),
            ("knn_k", |c| c.knn_k = 4),
            ("combined_scale", |c| c.combined_scale = 0.0),
            ("combined_scale", |c| c.combined_scale = -1.0),
            ("scale", |c| c.components[1].scale = f64::INFINITY),
            ("coefficients", |c| c.components[0].coef[0] = f64::NAN),
            ("floors", |c| c.floors.clear()),
            ("floors", |c| c.floors[0] = -0.1),
            ("null_scores", |c| c.null_scores.reverse()),
            ("n_calibration", |c| c.n_calibration = 0),
        ];
        for (what, damage) in damages {
            let mut damaged = fitted.clone();
            damage(&mut damaged);
            let reason = damaged.check_values().unwrap_err();
            assert!(reason.contains(what), "{what}: {reason}");
            let null = StoredNull {
                calibration: damaged,
                reference: vec![0.0; 8],
                latent_dim: 2,
            };
            let dir = tempfile::tempdir().unwrap();
            null.write(dir.path()).unwrap();
            let err = StoredNull::read(dir.path()).unwrap_err().to_string();
            // JSON has no NaN or infinity: such a file already fails to parse.
            let parse_error = err.contains("not a calibration file");
            assert!(err.contains(CALIBRATION_FILE), "{err}");
            assert!(err.contains(what) || parse_error, "{what}: {err}");
        }
    }

    #[test]
    fn reference_latents_are_taken_from_the_calibration_rows() {
        // Rows 7, 3, 9 with 2-D latents; the reference is rows 9 and 7.
        let latents = [7.0, 7.5, 3.0, 3.5, 9.0, 9.5];
        assert_eq!(
            latents_of(&latents, 2, &[7, 3, 9], &[9, 7]),
            Some(vec![9.0, 9.5, 7.0, 7.5])
        );
        assert_eq!(latents_of(&latents, 2, &[7, 3, 9], &[4]), None);
    }

    #[test]
    fn validation_shift_is_the_difference_of_the_group_medians() {
        let scores: Vec<f64> = (0..40).map(f64::from).collect();
        // Even rows trained on (median 19), odd ones not (median 20).
        let trained_on: Vec<bool> = (0..40).map(|i| i % 2 == 0).collect();
        assert_eq!(validation_shift(&scores, &trained_on), Some(1.0));
        // NaN scores do not count; fewer than MIN_FOR_SHIFT in a group: not measured.
        let mut few = scores.clone();
        for v in few.iter_mut().skip(1).step_by(2).skip(MIN_FOR_SHIFT - 1) {
            *v = f64::NAN;
        }
        assert!(validation_shift(&few, &trained_on).is_none());
        assert!(validation_shift(&scores, &[true; 40]).is_none());
    }
}
