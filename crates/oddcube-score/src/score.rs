//! Anomaly scoring of a dataset with a trained autoencoder — the catalogue of a RESULTS
//! directory. Two passes:
//!
//! 1. Per galaxy ([`score_galaxies`]): the global reconstruction scores (`recon`, `chi2`, per-line
//!    shares), the PSF-smoothed anomaly map with its localized score `local` and region
//!    (`anomaly_map.rs`), and the nuisance covariate `depth` (with `ifu_size` from the dataset,
//!    and `n_pixels`, the covariate of older nulls). A galaxy needs
//!    nothing but itself, so each shard of a sharded run computes these.
//! 2. Per population ([`finalize_population_scores`]): `knn_dist` (against the stored training
//!    latents, or the population when the model has no stored null), `lof`, the fused `score`
//!    and its p-value (`calibration.rs`; the restart ensemble's mean of it, `ensemble.rs`),
//!    Benjamini–Hochberg q-values and `fdr_flag`, and `rank`.
//!    `oddcube score` calls it for an unsharded run and `oddcube merge` after joining the
//!    `part-i-of-n` directories. Until then a part's manifest says `population_final: false`:
//!    with a stored null the part already holds `knn_dist`, `lof`, `score` and `pvalue` (they
//!    need only the galaxy and the null, [`apply_stored_null`]), while `qvalue`, `fdr_flag` and
//!    `rank` (and, without a stored null, every population column) hold NaN / false / 0.
//!
//! docs/scoring.md explains every score and the null model.

use std::path::Path;

use oddcube_data::Progress;
use oddcube_data::cubes::Cubes;
use oddcube_data::dataset::GalaxyRecord;
use rayon::prelude::*;

use crate::anomaly_map::{AnomalyMaps, NO_LINE, map_residuals, pixel_arcsec, psf_fwhm_pixels};
use crate::calibration::{
    Calibration, Covariates, N_COMPONENTS, StoredNull, reference_neighbourhood,
};
use crate::ensemble::EnsembleNull;
use crate::error::{Error, Result, check_len};
use crate::fdr::benjamini_hochberg;
use crate::knn::{LatentView, Metric, all_nearest};
use crate::lof::{knn_distance_scores, local_outlier_factor};
use crate::results::{Catalog, Column, LINE_COLUMN_PREFIX, ResidualsWriter, invalid};

/// The score that orders the catalogue and that p-values are computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RankBy {
    /// The fused anomaly score (calibrated; the default).
    Score,
    /// Peak of the PSF-smoothed anomaly map.
    Local,
    /// Summed χ² over summed error budget (model floor included).
    Pooled,
    /// Mean floored `z²` of all usable measurements.
    Global,
    /// IVAR-weighted mean squared residual (σ units).
    Chi2,
    /// Mean squared residual in normalised units (the paper's score).
    Recon,
    /// Distance to the k-th nearest neighbour in latent space.
    KnnDist,
    /// Local outlier factor in latent space.
    Lof,
}

impl RankBy {
    /// The catalogue column name.
    pub fn column(self) -> &'static str {
        match self {
            RankBy::Score => "score",
            RankBy::Local => "local",
            RankBy::Pooled => "pooled",
            RankBy::Global => "global",
            RankBy::Chi2 => "chi2",
            RankBy::Recon => "recon",
            RankBy::KnnDist => "knn_dist",
            RankBy::Lof => "lof",
        }
    }

    /// True for scores a galaxy has on its own (known inside a shard).
    pub fn is_per_galaxy(self) -> bool {
        matches!(
            self,
            RankBy::Chi2 | RankBy::Recon | RankBy::Local | RankBy::Pooled | RankBy::Global
        )
    }
}

impl std::str::FromStr for RankBy {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "score" => Ok(RankBy::Score),
            "local" => Ok(RankBy::Local),
            "pooled" => Ok(RankBy::Pooled),
            "global" => Ok(RankBy::Global),
            "chi2" => Ok(RankBy::Chi2),
            "recon" => Ok(RankBy::Recon),
            "knn_dist" | "knn" => Ok(RankBy::KnnDist),
            "lof" => Ok(RankBy::Lof),
            _ => Err(Error::InvalidParameter {
                name: "rank-by".to_string(),
                value: s.to_string(),
                reason: "expected score, local, pooled, global, chi2, recon, knn_dist or lof"
                    .to_string(),
            }),
        }
    }
}

impl std::fmt::Display for RankBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.column())
    }
}

/// Which null model the p-values of the fused score come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PValueMethod {
    /// The null stored with the model, fitted on its training dataset (the default);
    /// falls back to `Population`, with a warning, for a model without one.
    Stored,
    /// A null fitted robustly to the scored galaxies themselves: fine for a survey that is
    /// mostly ordinary, wrong for a list that is mostly anomalous.
    Population,
}

impl std::str::FromStr for PValueMethod {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "stored" => Ok(PValueMethod::Stored),
            // `robust` and `empirical` were the population methods of earlier versions.
            "population" | "robust" | "empirical" => Ok(PValueMethod::Population),
            _ => Err(Error::InvalidParameter {
                name: "pvalues".to_string(),
                value: s.to_string(),
                reason: "expected stored or population".to_string(),
            }),
        }
    }
}

impl std::fmt::Display for PValueMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PValueMethod::Stored => "stored",
            PValueMethod::Population => "population",
        })
    }
}

/// Settings of the population-level columns.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreSettings {
    /// The score that orders the catalogue (p-values are always those of the fused `score`).
    pub rank_by: RankBy,
    /// Which null the p-values come from.
    pub pvalues: PValueMethod,
    /// False-discovery level of `fdr_flag`, in (0, 1].
    pub fdr: f64,
    /// Neighbours of `knn_dist` / `lof` (capped at N − 1).
    pub knn_k: usize,
    /// Latent metric.
    pub metric: Metric,
}

impl ScoreSettings {
    /// The settings a RESULTS manifest records (what `oddcube merge` needs to finalise parts).
    pub fn from_manifest(manifest: &crate::results::ResultsManifest) -> Result<ScoreSettings> {
        Ok(ScoreSettings {
            rank_by: manifest.rank_by.parse()?,
            pvalues: manifest.pvalues.parse()?,
            fdr: manifest.fdr,
            knn_k: manifest.knn_k,
            metric: manifest.knn_metric.parse()?,
        })
    }
}

impl Default for ScoreSettings {
    fn default() -> Self {
        Self {
            rank_by: RankBy::Score,
            pvalues: PValueMethod::Stored,
            fdr: 0.05,
            knn_k: 10,
            metric: Metric::Euclidean,
        }
    }
}

/// The reconstruction scores of one galaxy.
#[derive(Debug, Clone, PartialEq)]
pub struct GalaxyScores {
    /// `Σ_{w>0} (x − x̂)² / n_usable` (normalised units; NaN without usable pixels).
    pub recon: f64,
    /// `Σ w (x − x̂)² / n_usable` (σ units; NaN without usable pixels).
    pub chi2: f64,
    /// Each line's share of `Σ w (x − x̂)²`; sums to 1 (all 0 when that sum is 0).
    pub line_shares: Vec<f64>,
}

/// Scores one galaxy from its normalised maps `x`, weights `w` and reconstruction `xhat`
/// (each `n_lines · S · S`, line-major). Only pixels with `w > 0` count.
pub fn galaxy_scores(x: &[f32], w: &[f32], xhat: &[f32], n_lines: usize) -> GalaxyScores {
    let plane = x.len().checked_div(n_lines).unwrap_or(0);
    let mut n_usable = 0usize;
    let mut sq_sum = 0.0f64;
    let mut per_line = vec![0.0f64; n_lines];
    if plane > 0 {
        for (line, chi2_line) in per_line.iter_mut().enumerate() {
            let range = line * plane..(line + 1) * plane;
            for ((&xi, &wi), &fi) in x[range.clone()]
                .iter()
                .zip(&w[range.clone()])
                .zip(&xhat[range])
            {
                if wi > 0.0 {
                    let r = f64::from(xi) - f64::from(fi);
                    n_usable += 1;
                    sq_sum += r * r;
                    *chi2_line += f64::from(wi) * r * r;
                }
            }
        }
    }
    let chi2_sum: f64 = per_line.iter().sum();
    let line_shares = per_line
        .iter()
        .map(|v| if chi2_sum > 0.0 { v / chi2_sum } else { 0.0 })
        .collect();
    let (recon, chi2) = if n_usable == 0 {
        (f64::NAN, f64::NAN)
    } else {
        (sq_sum / n_usable as f64, chi2_sum / n_usable as f64)
    };
    GalaxyScores {
        recon,
        chi2,
        line_shares,
    }
}

/// What scoring needs from a trained model: latents and reconstructions of a batch of cubes.
/// Implemented by the CLI for `oddcube_model::Model`, and by simple stand-ins in tests.
pub trait Autoencoder {
    /// Latent dimension D.
    fn latent_dim(&self) -> usize;

    /// `(latents [n, D], reconstructions [n, L, S, S])` of every galaxy of `cubes`, in order.
    fn encode_reconstruct(
        &self,
        cubes: &Cubes,
    ) -> std::result::Result<(Vec<f32>, Vec<f32>), String>;
}

/// Settings of the per-galaxy anomaly map.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MapSettings {
    /// Per-line fractional error floors `ε_l` (empty: none, the map is in plain χ²).
    pub floors: Vec<f64>,
    /// Other models' maps of the same galaxies, in the order of the rows scored (the other
    /// members of a restart ensemble): the map and region kept are then the consensus of theirs
    /// and this model's ([`crate::anomaly_map::MapResiduals::consensus`]). Empty: this model's
    /// own map.
    pub other_maps: Vec<AnomalyMaps>,
}

/// Per-galaxy scores and latents of some galaxies of a dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    /// Catalogue rows, one per scored galaxy, population columns not yet filled.
    pub catalog: Catalog,
    /// Latents `[n, latent_dim]`, catalogue order.
    pub latents: Vec<f32>,
    /// D.
    pub latent_dim: usize,
    /// Every scored galaxy's anomaly map, catalogue order.
    pub maps: AnomalyMaps,
}

/// Names of the population-level columns, in catalogue order.
pub const POPULATION_COLUMNS: [&str; 7] = [
    "score", "knn_dist", "lof", "pvalue", "qvalue", "fdr_flag", "rank",
];

/// What the map and the covariates add to a galaxy's [`GalaxyScores`].
#[derive(Debug, Clone, PartialEq)]
pub struct LocalScores {
    /// Peak of the smoothed anomaly map.
    pub local: f64,
    /// Mean floored `z²` of all usable measurements (the global, brightness-tempered χ²).
    pub global: f64,
    /// Summed χ² over summed error budget (`MapSummary::pooled`): the fused score's global
    /// component.
    pub pooled: f64,
    /// Pixels with a usable measurement.
    pub n_pixels: u32,
    /// Median inverse variance of the usable measurements in flux units (`w / scale²`).
    pub depth: f64,
    /// Region centre offset from the galaxy centre along the grid's columns and rows, arcsec.
    pub region_dx: f64,
    /// See `region_dx`.
    pub region_dy: f64,
    /// Region area, arcsec².
    pub region_area: f64,
    /// The region's dominant line ("" when the map is empty).
    pub region_line: String,
}

/// Builds catalogue rows (contract column order) for `galaxies` with their `scores`; the
/// population columns are placeholders (NaN, false, rank 0) until [`finalize_population_scores`].
pub fn base_catalog(
    galaxies: &[&GalaxyRecord],
    lines: &[String],
    scores: &[GalaxyScores],
    local: &[LocalScores],
) -> Result<Catalog> {
    check_len("galaxy scores", scores.len(), galaxies.len())?;
    check_len("local scores", local.len(), galaxies.len())?;
    if let Some(s) = scores.iter().find(|s| s.line_shares.len() != lines.len()) {
        return Err(Error::LengthMismatch {
            what: "line shares".to_string(),
            got: s.line_shares.len(),
            expected: lines.len(),
        });
    }
    let n = galaxies.len();
    let mut c = Catalog::default();
    let strs = |f: fn(&GalaxyRecord) -> &str| {
        Column::Str(galaxies.iter().map(|g| f(g).to_string()).collect())
    };
    let f64s = |f: fn(&GalaxyRecord) -> f64| Column::F64(galaxies.iter().map(|g| f(g)).collect());
    let locals = |f: fn(&LocalScores) -> f64| Column::F64(local.iter().map(f).collect());
    c.push("plateifu", strs(|g| &g.plateifu))?;
    c.push("mangaid", strs(|g| &g.mangaid))?;
    c.push("ra", f64s(|g| g.ra))?;
    c.push("dec", f64s(|g| g.dec))?;
    c.push("z", f64s(|g| g.z))?;
    c.push(
        "ifu_size",
        Column::U32(galaxies.iter().map(|g| g.ifu_size).collect()),
    )?;
    c.push(
        "n_good",
        Column::U32(galaxies.iter().map(|g| g.n_good).collect()),
    )?;
    c.push("score", Column::F64(vec![f64::NAN; n]))?;
    c.push(
        "recon",
        Column::F64(scores.iter().map(|s| s.recon).collect()),
    )?;
    c.push("chi2", Column::F64(scores.iter().map(|s| s.chi2).collect()))?;
    c.push("global", locals(|l| l.global))?;
    c.push("pooled", locals(|l| l.pooled))?;
    c.push("local", locals(|l| l.local))?;
    for name in ["knn_dist", "lof", "pvalue", "qvalue"] {
        c.push(name, Column::F64(vec![f64::NAN; n]))?;
    }
    c.push("fdr_flag", Column::Bool(vec![false; n]))?;
    c.push("rank", Column::U32(vec![0; n]))?;
    c.push("region_dx", locals(|l| l.region_dx))?;
    c.push("region_dy", locals(|l| l.region_dy))?;
    c.push("region_area", locals(|l| l.region_area))?;
    c.push(
        "region_line",
        Column::Str(local.iter().map(|l| l.region_line.clone()).collect()),
    )?;
    c.push(
        "n_pixels",
        Column::U32(local.iter().map(|l| l.n_pixels).collect()),
    )?;
    c.push("depth", locals(|l| l.depth))?;
    for (l, line) in lines.iter().enumerate() {
        c.push(
            &format!("{LINE_COLUMN_PREFIX}{line}"),
            Column::F64(scores.iter().map(|s| s.line_shares[l]).collect()),
        )?;
    }
    Ok(c)
}

/// Median inverse variance of a galaxy's usable measurements in flux units (`w / scale²`):
/// how deep it was observed, whatever its lines' brightness.
fn noise_depth(w: &[f32], scale: f64) -> f64 {
    let mut usable: Vec<f64> = w
        .iter()
        .filter(|v| **v > 0.0 && v.is_finite())
        .map(|&v| f64::from(v))
        .collect();
    if usable.is_empty() {
        return f64::NAN;
    }
    let mid = usable.len() / 2;
    let (_, median, _) = usable.select_nth_unstable_by(mid, f64::total_cmp);
    let scale = if scale > 0.0 && scale.is_finite() {
        scale
    } else {
        1.0
    };
    *median / (scale * scale)
}

/// The local scores of one galaxy from its map summary.
fn local_scores(
    summary: &crate::anomaly_map::MapSummary,
    galaxy: &GalaxyRecord,
    lines: &[String],
    size: usize,
    w: &[f32],
) -> LocalScores {
    let pixel = pixel_arcsec(galaxy, size);
    // The galaxy centre is the grid centre (ingest centres the IFU box on it).
    let centre = (size as f64 - 1.0) / 2.0;
    LocalScores {
        local: summary.peak,
        global: summary.mean,
        pooled: summary.pooled,
        n_pixels: summary.n_pixels as u32,
        depth: noise_depth(w, galaxy.scale),
        region_dx: (summary.centre.0 - centre) * pixel,
        region_dy: (summary.centre.1 - centre) * pixel,
        region_area: summary.area as f64 * pixel * pixel,
        region_line: if summary.line == NO_LINE {
            String::new()
        } else {
            lines[usize::from(summary.line)].clone()
        },
    }
}

/// The raw score components (`pooled`, `chi2`, `local`, `knn_dist`) and nuisance covariates of every
/// catalogue row, the latent component `knn_dist` given separately (it is computed with the
/// verdict).
pub fn components_and_covariates(
    catalog: &Catalog,
    knn_dist: &[f64],
) -> Result<(Vec<[f64; N_COMPONENTS]>, Vec<Covariates>)> {
    let column = |name: &str| {
        catalog
            .f64(name)
            .ok_or_else(|| Error::Empty(format!("catalogue column '{name}'")))
    };
    let (pooled, chi2, local) = (column("pooled")?, column("chi2")?, column("local")?);
    let depth = column("depth")?;
    let counts = |name: &str| {
        catalog
            .u32(name)
            .ok_or_else(|| Error::Empty(format!("catalogue column '{name}'")))
    };
    let (ifu_size, pixels) = (counts("ifu_size")?, counts("n_pixels")?);
    check_len("latent distances", knn_dist.len(), catalog.len())?;
    let values = (0..catalog.len())
        .map(|i| [pooled[i], chi2[i], local[i], knn_dist[i]])
        .collect();
    let covariates = (0..catalog.len())
        .map(|i| Covariates {
            ifu_size: f64::from(ifu_size[i]),
            n_pixels: f64::from(pixels[i]),
            depth: depth[i],
        })
        .collect();
    Ok((values, covariates))
}

/// Galaxies per model call: large enough to keep the model's batches full, small enough that a
/// chunk's reconstructions stay a few tens of MB.
pub const CHUNK: usize = 256;

fn model_error(message: String) -> Error {
    invalid(Path::new("model"), message)
}

/// Scores the galaxies at `rows` of `cubes` (dataset order; e.g. one shard's rows): encodes and
/// reconstructs them in chunks, computes [`galaxy_scores`] and the anomaly map (the consensus
/// with [`MapSettings::other_maps`] when it names any), and builds [`base_catalog`] rows.
/// Deterministic given the model and data. Errors when an other model's maps are not of the
/// galaxies at `rows`, in that order, on the dataset's grid.
pub fn score_galaxies(
    model: &dyn Autoencoder,
    cubes: &Cubes,
    galaxies: &[GalaxyRecord],
    lines: &[String],
    rows: &[usize],
    settings: &MapSettings,
    progress: &dyn Progress,
) -> Result<Scored> {
    check_len("galaxy records", galaxies.len(), cubes.n)?;
    check_len("lines", lines.len(), cubes.n_lines)?;
    if let Some(&bad) = rows.iter().find(|&&r| r >= cubes.n) {
        return Err(Error::InvalidParameter {
            name: "galaxy row".to_string(),
            value: bad.to_string(),
            reason: format!("the dataset has {} galaxies", cubes.n),
        });
    }
    let floors = if settings.floors.is_empty() {
        vec![0.0; cubes.n_lines]
    } else {
        settings.floors.clone()
    };
    check_len("line floors", floors.len(), cubes.n_lines)?;
    for other in &settings.other_maps {
        let same_galaxies = other.plateifus.len() == rows.len()
            && other.value.len() == rows.len() * cubes.size * cubes.size
            && other
                .plateifus
                .iter()
                .zip(rows)
                .all(|(p, &r)| *p == galaxies[r].plateifu);
        if !same_galaxies || other.size != cubes.size {
            return Err(Error::InvalidParameter {
                name: "consensus anomaly maps".to_string(),
                value: format!(
                    "{} galaxies on a {} grid",
                    other.plateifus.len(),
                    other.size
                ),
                reason: format!(
                    "must be the {} galaxies scored, in the same order, on the dataset's {} grid",
                    rows.len(),
                    cubes.size
                ),
            });
        }
    }
    let dim = model.latent_dim();
    let galaxy_len = cubes.galaxy_len();
    let mut latents = Vec::with_capacity(rows.len() * dim);
    let mut scores = Vec::with_capacity(rows.len());
    let mut locals = Vec::with_capacity(rows.len());
    let mut maps = AnomalyMaps {
        lines: lines.to_vec(),
        size: cubes.size,
        runs: 1 + settings.other_maps.len(),
        ..AnomalyMaps::default()
    };
    progress.start("score", rows.len() as u64);
    for (chunk_index, chunk_rows) in rows.chunks(CHUNK).enumerate() {
        let chunk = cubes.select(chunk_rows);
        let (z, xhat) = model.encode_reconstruct(&chunk).map_err(model_error)?;
        check_len("model latents", z.len(), chunk_rows.len() * dim)?;
        check_len("model reconstructions", xhat.len(), chunk.x.len())?;
        latents.extend_from_slice(&z);
        let chunk_scores: Vec<_> = (0..chunk.n)
            .into_par_iter()
            .map(|i| {
                let (x, w) = chunk.galaxy(i);
                let rec = &xhat[i * galaxy_len..(i + 1) * galaxy_len];
                let galaxy = &galaxies[chunk_rows[i]];
                let psf = psf_fwhm_pixels(galaxy, cubes.size);
                let residuals = map_residuals(x, w, rec, cubes.n_lines, cubes.size, &floors, psf)?;
                let position = chunk_index * CHUNK + i;
                let others: Vec<&[f32]> = settings
                    .other_maps
                    .iter()
                    .map(|m| m.galaxy(position).0)
                    .collect();
                let (map, summary) = residuals.consensus(&others)?;
                let local = local_scores(&summary, galaxy, lines, cubes.size, w);
                Ok((galaxy_scores(x, w, rec, cubes.n_lines), local, map))
            })
            .collect::<Result<_>>()?;
        for ((global, local, map), &row) in chunk_scores.into_iter().zip(chunk_rows) {
            scores.push(global);
            locals.push(local);
            maps.push(&galaxies[row].plateifu, &map);
        }
        progress.advance(chunk_rows.len() as u64);
    }
    progress.finish();
    let records: Vec<&GalaxyRecord> = rows.iter().map(|&r| &galaxies[r]).collect();
    Ok(Scored {
        catalog: base_catalog(&records, lines, &scores, &locals)?,
        latents,
        latent_dim: dim,
        maps,
    })
}

/// Rank of each score, 1 = highest; ties broken by position (earlier first); non-finite
/// scores rank last.
pub fn ranks(scores: &[f64]) -> Vec<u32> {
    let key = |s: f64| if s.is_finite() { s } else { f64::NEG_INFINITY };
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| key(scores[b]).total_cmp(&key(scores[a])).then(a.cmp(&b)));
    let mut rank = vec![0u32; scores.len()];
    for (r, &i) in order.iter().enumerate() {
        rank[i] = r as u32 + 1;
    }
    rank
}

/// Sets `knn_dist`, `score` and `pvalue` of every row from the raw components (with `knn_dist`
/// as the latent one) and `calibration` (`score` NaN and `pvalue` 1 everywhere without one).
fn fill_verdicts(
    catalog: &mut Catalog,
    knn_dist: Vec<f64>,
    calibration: Option<&Calibration>,
) -> Result<()> {
    let (values, covariates) = components_and_covariates(catalog, &knn_dist)?;
    let verdicts: Vec<_> = match calibration {
        Some(c) => values
            .iter()
            .zip(&covariates)
            .map(|(v, cov)| c.verdict(*v, *cov))
            .collect(),
        None => Vec::new(),
    };
    let n = catalog.len();
    let score = (0..n)
        .map(|i| verdicts.get(i).map_or(f64::NAN, |v| v.score))
        .collect();
    let p_values = (0..n)
        .map(|i| verdicts.get(i).map_or(1.0, |v| v.pvalue))
        .collect();
    catalog.set("knn_dist", Column::F64(knn_dist))?;
    catalog.set("score", Column::F64(score))?;
    catalog.set("pvalue", Column::F64(p_values))
}

/// Fills `knn_dist` and `lof` (against the null's reference latents), `score` and `pvalue` from
/// a stored null. They need only the galaxy and the null, so a shard of a sharded run computes them too
/// (and can then pick its residual maps by `score`); the merge recomputes them identically.
pub fn apply_stored_null(
    catalog: &mut Catalog,
    latents: &[f32],
    null: &StoredNull,
    metric: Metric,
) -> Result<()> {
    let names = catalog
        .str("plateifu")
        .ok_or_else(|| Error::Empty("catalogue column 'plateifu'".to_string()))?
        .to_vec();
    let (knn, lof) =
        reference_neighbourhood(latents, &names, null, null.calibration.knn_k, metric)?;
    catalog.set("lof", Column::F64(lof))?;
    fill_verdicts(catalog, knn, Some(&null.calibration))
}

/// Which null model a finalised catalogue's p-values came from.
#[derive(Debug, Clone, PartialEq)]
pub struct NullUsed {
    /// `training+validation` or `validation` (a stored null, see [`Calibration::fitted_on`]),
    /// `population` (the fallback), or `none` (too few scorable galaxies to fit one).
    pub fitted_on: String,
    /// Galaxies it was fitted on.
    pub n_calibration: usize,
    /// Neighbour rank `knn_dist` and `lof` were computed with: the stored null's own (its
    /// `knn_dist` null was fitted at that k), or `ScoreSettings::knn_k` for the fallback.
    pub knn_k: usize,
    /// Why the stored null was not used, when it was not.
    pub warning: Option<String>,
    /// Why the stored null that was used should be refitted ([`Calibration::superseded`]).
    pub refit_advice: Option<String>,
    /// The seeds of the restart ensemble whose mean `score` is, empty when `score` is one
    /// model's ([`crate::ensemble`]).
    pub ensemble_seeds: Vec<u64>,
}

/// Fills the population columns of `catalog` (see [`POPULATION_COLUMNS`]) from the latents of
/// all its galaxies (`[n, latent_dim]`, catalogue order) and the per-galaxy columns. `knn_dist`
/// and `lof` are the distance to the k-th nearest reference (training) latent of `null` and the
/// local outlier factor against those references, or, without a stored null, against the other
/// galaxies of the population. The fused `score` and `pvalue` come from `null` — or from a null fitted to this
/// population when `null` is `None` or `settings.pvalues` asks for it — then BH q-values and
/// flags at `settings.fdr`, and the rank by `settings.rank_by`. With a stored null and a
/// restart `ensemble`, `score` and `pvalue` are the ensemble's, from the member columns
/// `score_seed_S` the catalogue must already hold for every member but the kept one
/// ([`EnsembleNull::combine`]); the population fallback uses the kept model alone.
///
/// A galaxy without usable pixels has NaN scores, p = 1, is never flagged and ranks last.
/// Call it on a whole population: for a sharded run, after joining the parts (the result is
/// then identical to an unsharded run).
pub fn finalize_population_scores(
    catalog: &mut Catalog,
    latents: &[f32],
    latent_dim: usize,
    settings: &ScoreSettings,
    null: Option<&StoredNull>,
    ensemble: Option<&EnsembleNull>,
    progress: &dyn Progress,
) -> Result<NullUsed> {
    let n = catalog.len();
    let view = LatentView::new(latents, n, latent_dim)?;
    if settings.knn_k == 0 {
        return Err(Error::InvalidK {
            k: 0,
            reason: "knn_k must be at least 1".to_string(),
        });
    }
    // A galaxy is not its own neighbour: at most n − 1 of them.
    let population_k = settings.knn_k.min(n.saturating_sub(1));
    let (population_knn, population_lof) = if n >= 2 {
        let graph = all_nearest(&view, population_k, settings.metric, progress)?;
        (
            knn_distance_scores(&graph, population_k)?,
            local_outlier_factor(&graph, population_k)?,
        )
    } else {
        (vec![f64::NAN; n], vec![f64::NAN; n])
    };
    let stored = match (null, settings.pvalues) {
        (Some(s), PValueMethod::Stored) if s.latent_dim == latent_dim => Ok(s),
        (Some(_), PValueMethod::Stored) => Err(
            "the stored null's reference latents have another dimension than this model's"
                .to_string(),
        ),
        (None, PValueMethod::Stored) => Err(
            "the model has no usable stored null (calibration.json is missing, or was written by \
             an older oddcube: `oddcube calibrate --model MODEL --data DATASET` refits it)"
                .to_string(),
        ),
        (_, PValueMethod::Population) => Err("--pvalues population".to_string()),
    };
    let mut population_null = None;
    let warning = match &stored {
        Ok(s) => {
            apply_stored_null(catalog, latents, s, settings.metric)?;
            if let Some(ensemble) = ensemble {
                ensemble.combine(catalog)?;
            }
            None
        }
        Err(why) => {
            catalog.set("lof", Column::F64(population_lof))?;
            let (values, covariates) = components_and_covariates(catalog, &population_knn)?;
            let fitted = Calibration::fit(
                &values,
                &covariates,
                Vec::new(),
                settings.knn_k,
                "population",
                Vec::new(),
            );
            // Too few scorable galaxies to fit a null: the scores stay NaN and p = 1.
            let calibration = fitted.ok();
            fill_verdicts(catalog, population_knn, calibration.as_ref())?;
            population_null = calibration;
            Some(why.clone())
        }
    };
    let calibration = match &stored {
        Ok(s) => Some(&s.calibration),
        Err(_) => population_null.as_ref(),
    };
    let p_values = catalog
        .f64("pvalue")
        .ok_or_else(|| Error::Empty("catalogue column 'pvalue'".to_string()))?
        .to_vec();
    let bh = benjamini_hochberg(&p_values, settings.fdr)?;
    catalog.set("pvalue", Column::F64(p_values))?;
    catalog.set("qvalue", Column::F64(bh.q_values))?;
    catalog.set("fdr_flag", Column::Bool(bh.discoveries))?;
    let column = settings.rank_by.column();
    let ranked = catalog
        .f64(column)
        .ok_or_else(|| Error::Empty(format!("catalogue column '{column}'")))?
        .to_vec();
    catalog.set("rank", Column::U32(ranks(&ranked)))?;
    Ok(NullUsed {
        fitted_on: calibration
            .as_ref()
            .map_or_else(|| "none".to_string(), |c| c.fitted_on.clone()),
        n_calibration: calibration.as_ref().map_or(0, |c| c.n_calibration),
        knn_k: match &stored {
            Ok(s) => s.calibration.knn_k,
            Err(_) => population_k,
        },
        warning,
        ensemble_seeds: match (&stored, ensemble) {
            (Ok(_), Some(e)) => e.seeds(),
            _ => Vec::new(),
        },
        refit_advice: stored.ok().and_then(|s| s.calibration.superseded()),
    })
}

/// Which galaxies get residual maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResidualSelection {
    /// None.
    None,
    /// The K most anomalous.
    Top(usize),
    /// Every galaxy, in catalogue order.
    All,
}

impl std::str::FromStr for ResidualSelection {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::InvalidParameter {
            name: "residuals".to_string(),
            value: s.to_string(),
            reason: "expected top:K (K a whole number), all or none".to_string(),
        };
        match s {
            "none" => Ok(ResidualSelection::None),
            "all" => Ok(ResidualSelection::All),
            _ => s
                .strip_prefix("top:")
                .and_then(|k| k.parse().ok())
                .map(ResidualSelection::Top)
                .ok_or_else(bad),
        }
    }
}

impl std::fmt::Display for ResidualSelection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResidualSelection::None => f.write_str("none"),
            ResidualSelection::Top(k) => write!(f, "top:{k}"),
            ResidualSelection::All => f.write_str("all"),
        }
    }
}

/// Catalogue rows whose residuals are stored, in file order. `Top(K)` takes the K best ranks
/// when the population columns are final; in a shard part (`population_final == false`) it takes
/// the K highest rank-by scores when the part knows them (per-galaxy columns, and `score` from a
/// stored null), else the K highest chi2 — a superset-safe choice when the rank-by score is known
/// in the parts: the global top K lies inside the union of every part's top K.
pub fn residual_rows(
    catalog: &Catalog,
    selection: ResidualSelection,
    rank_by: RankBy,
    population_final: bool,
) -> Vec<usize> {
    match selection {
        ResidualSelection::None => Vec::new(),
        ResidualSelection::All => (0..catalog.len()).collect(),
        ResidualSelection::Top(k) => {
            let order: Vec<u32> = if population_final {
                catalog.u32("rank").map(<[u32]>::to_vec).unwrap_or_default()
            } else {
                // A part knows its rank-by column when it is per-galaxy, or `score` filled from a
                // stored null (`apply_stored_null`); otherwise chi2 stands in.
                let known = catalog
                    .f64(rank_by.column())
                    .is_some_and(|v| v.iter().any(|x| x.is_finite()));
                let column = if rank_by.is_per_galaxy() || known {
                    rank_by.column()
                } else {
                    "chi2"
                };
                catalog.f64(column).map(ranks).unwrap_or_default()
            };
            let mut rows: Vec<usize> = (0..order.len()).collect();
            rows.sort_by_key(|&r| order[r]);
            rows.truncate(k);
            rows
        }
    }
}

/// Writes `dir/residuals.safetensors` for the galaxies at dataset rows `dataset_rows` (file
/// order), reconstructing them again chunk by chunk so no run holds every reconstruction.
pub fn write_residuals(
    dir: &Path,
    model: &dyn Autoencoder,
    cubes: &Cubes,
    plateifus: &[String],
    lines: &[String],
    dataset_rows: &[usize],
    progress: &dyn Progress,
) -> Result<()> {
    check_len("residual plate-ifus", plateifus.len(), dataset_rows.len())?;
    let mut writer = ResidualsWriter::create(dir, plateifus, lines, cubes.size)?;
    let galaxy_len = cubes.galaxy_len();
    progress.start("residuals", dataset_rows.len() as u64);
    for (c, chunk_rows) in dataset_rows.chunks(CHUNK).enumerate() {
        let chunk = cubes.select(chunk_rows);
        let (_, xhat) = model.encode_reconstruct(&chunk).map_err(model_error)?;
        check_len("model reconstructions", xhat.len(), chunk.x.len())?;
        for i in 0..chunk.n {
            let (x, w) = chunk.galaxy(i);
            writer.write_galaxy(
                c * CHUNK + i,
                x,
                &xhat[i * galaxy_len..(i + 1) * galaxy_len],
                w,
            )?;
        }
        progress.advance(chunk_rows.len() as u64);
    }
    progress.finish();
    writer.finish()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use oddcube_data::NoProgress;
    use oddcube_model::augment::d4_transformed;

    /// A deterministic stand-in model: the reconstruction is each line's mean over usable
    /// pixels (a flat map), the latent is per-line mean and max. It is exactly D4-invariant,
    /// per-galaxy and cheap, so tests can compare runs exactly.
    pub(crate) struct FlatModel {
        pub n_lines: usize,
    }

    impl Autoencoder for FlatModel {
        fn latent_dim(&self) -> usize {
            2 * self.n_lines
        }

        fn encode_reconstruct(
            &self,
            cubes: &Cubes,
        ) -> std::result::Result<(Vec<f32>, Vec<f32>), String> {
            let plane = cubes.size * cubes.size;
            let mut z = Vec::new();
            let mut xhat = Vec::new();
            for i in 0..cubes.n {
                let (x, w) = cubes.galaxy(i);
                for l in 0..cubes.n_lines {
                    let r = l * plane..(l + 1) * plane;
                    let good: Vec<f32> = x[r.clone()]
                        .iter()
                        .zip(&w[r])
                        .filter(|(_, w)| **w > 0.0)
                        .map(|(x, _)| *x)
                        .collect();
                    // Sorted sum: the mean must not depend on pixel order (flipped galaxies).
                    let mut sorted = good.clone();
                    sorted.sort_by(f32::total_cmp);
                    let mean = if sorted.is_empty() {
                        0.0
                    } else {
                        sorted.iter().sum::<f32>() / sorted.len() as f32
                    };
                    let max = sorted.last().copied().unwrap_or(0.0);
                    z.extend([mean, max]);
                    xhat.extend(std::iter::repeat_n(mean, plane));
                }
            }
            Ok((z, xhat))
        }
    }

    /// `n` pseudo-random galaxies of `lines` lines on a `size` grid, some pixels masked.
    pub(crate) fn random_cubes(n: usize, lines: usize, size: usize, seed: u64) -> Cubes {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut cubes = Cubes::zeros(n, lines, size);
        for v in cubes.x.iter_mut() {
            *v = rng.random_range(0.0..1.0f32).powi(3) * 4.0;
        }
        for v in cubes.w.iter_mut() {
            *v = if rng.random_range(0.0..1.0f32) < 0.15 {
                0.0
            } else {
                rng.random_range(0.5..20.0f32)
            };
        }
        cubes
    }

    pub(crate) fn records(n: usize) -> Vec<GalaxyRecord> {
        (0..n)
            .map(|i| GalaxyRecord {
                plateifu: format!("{}-{}", 8000 + i, 1901 + i % 7),
                mangaid: format!("1-{i}"),
                ra: i as f64,
                dec: -(i as f64),
                z: 0.03,
                ifu_size: 19,
                grid_size: 34,
                box_size: 34,
                scale: 1.0,
                n_good: 100,
                source: String::new(),
                notes: String::new(),
                psf_fwhm: 2.5,
                ..GalaxyRecord::default()
            })
            .collect()
    }

    pub(crate) fn line_names(l: usize) -> Vec<String> {
        (0..l).map(|i| format!("L{i}")).collect()
    }

    #[test]
    fn galaxy_scores_by_hand() {
        // Two lines, 2×1 "grid": line 0 residuals 1 (w 4) and masked; line 1 residual 2 (w 1), 0.
        let x = [1.0, 9.0, 2.0, 0.0];
        let xhat = [0.0, 0.0, 0.0, 0.0];
        let w = [4.0, 0.0, 1.0, 1.0];
        let s = galaxy_scores(&x, &w, &xhat, 2);
        assert_eq!(s.recon, (1.0 + 4.0 + 0.0) / 3.0);
        assert_eq!(s.chi2, (4.0 + 4.0) / 3.0);
        assert_eq!(s.line_shares, vec![0.5, 0.5]);
        let none = galaxy_scores(&x, &[0.0; 4], &xhat, 2);
        assert!(none.recon.is_nan() && none.chi2.is_nan());
        assert_eq!(none.line_shares, vec![0.0, 0.0]);
    }

    #[test]
    fn ranks_known_case() {
        assert_eq!(ranks(&[3.0, 1.0, 2.0, 2.0, f64::NAN]), vec![1, 4, 2, 3, 5]);
    }

    /// Local scores of an ordinary galaxy with `local` as its map peak.
    fn local(local: f64) -> LocalScores {
        LocalScores {
            local,
            global: local / 10.0,
            pooled: local / 5.0,
            n_pixels: 500,
            depth: 1.0,
            region_dx: 0.0,
            region_dy: 0.0,
            region_area: 1.0,
            region_line: "L0".to_string(),
        }
    }

    /// `n` galaxies whose recon and local scores scatter log-normally (σ = 0.3) and whose
    /// latents are standard normal in 2-D, except those at `odd`: local scores 100× higher and
    /// latents 20σ away.
    fn population(n: usize, odd: &[usize]) -> (Catalog, Vec<f32>) {
        use rand::{Rng, SeedableRng};
        use rand_distr::StandardNormal;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(n as u64);
        let mut normal = move || -> f64 { rng.sample(StandardNormal) };
        let mut scores = Vec::new();
        let mut locals = Vec::new();
        let mut latents = Vec::new();
        for i in 0..n {
            let shift = if odd.contains(&i) { 100.0 } else { 1.0 };
            scores.push(GalaxyScores {
                recon: 0.01 * (0.3 * normal()).exp(),
                chi2: 1.0,
                line_shares: vec![1.0],
            });
            locals.push(local(shift * (0.3 * normal()).exp()));
            let far = if odd.contains(&i) { 20.0 } else { 0.0 };
            latents.extend([(far + normal()) as f32, normal() as f32]);
        }
        let catalog = base_catalog(
            &records(n).iter().collect::<Vec<_>>(),
            &line_names(1),
            &scores,
            &locals,
        )
        .unwrap();
        (catalog, latents)
    }

    #[test]
    fn population_null_flags_the_planted_outliers() {
        let n = 200;
        let odd: Vec<usize> = (0..10).map(|i| i * 17).collect();
        let (mut catalog, latents) = population(n, &odd);
        let settings = ScoreSettings {
            pvalues: PValueMethod::Population,
            ..ScoreSettings::default()
        };
        let used = finalize_population_scores(
            &mut catalog,
            &latents,
            2,
            &settings,
            None,
            None,
            &NoProgress,
        )
        .unwrap();
        assert_eq!((used.fitted_on.as_str(), used.knn_k), ("population", 10));
        assert!(used.warning.is_some());
        let flags = catalog.bool("fdr_flag").unwrap();
        assert!(odd.iter().all(|&i| flags[i]), "{flags:?}");
        // BH at 5 %: among ~10 discoveries, false ones are rare (expected < 0.5).
        let false_flags = (0..n).filter(|&i| flags[i] && !odd.contains(&i)).count();
        assert!(false_flags <= 1, "{false_flags} false flags");
        // The rank follows the fused score, the outliers first.
        let rank = catalog.u32("rank").unwrap();
        assert!(odd.iter().all(|&i| rank[i] <= 10));
        // q-values are BH of the p-values.
        let bh = benjamini_hochberg(catalog.f64("pvalue").unwrap(), 0.05).unwrap();
        assert_eq!(catalog.f64("qvalue").unwrap(), &bh.q_values[..]);
        // Column order is the contract's.
        let names: Vec<&str> = catalog.columns.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "plateifu",
                "mangaid",
                "ra",
                "dec",
                "z",
                "ifu_size",
                "n_good",
                "score",
                "recon",
                "chi2",
                "global",
                "pooled",
                "local",
                "knn_dist",
                "lof",
                "pvalue",
                "qvalue",
                "fdr_flag",
                "rank",
                "region_dx",
                "region_dy",
                "region_area",
                "region_line",
                "n_pixels",
                "depth",
                "line:L0"
            ]
        );
    }

    #[test]
    fn a_stored_null_scores_a_mostly_anomalous_list_honestly() {
        // Fit the null on 150 ordinary galaxies, keep their latents as the reference, then
        // score a follow-up list of 12 of which 10 are anomalous: the population null would
        // call the anomalies ordinary (they are the majority); the stored one flags them.
        let (ordinary, ordinary_latents) = population(150, &[]);
        let names: Vec<String> = ordinary.str("plateifu").unwrap().to_vec();
        let reference = StoredNull {
            calibration: Calibration {
                format: crate::calibration::CALIBRATION_FORMAT.to_string(),
                fitted_on: "validation".to_string(),
                n_calibration: 0,
                floors: vec![0.0],
                knn_k: 5,
                covariates: Vec::new(),
                covariate_means: Vec::new(),
                components: Vec::new(),
                combined_centre: 0.0,
                combined_scale: 1.0,
                reference_plateifus: names.clone(),
                validation_shift: None,
                null_scores: Vec::new(),
            },
            reference: ordinary_latents.clone(),
            latent_dim: 2,
        };
        let (knn, _) =
            reference_neighbourhood(&ordinary_latents, &names, &reference, 5, Metric::Euclidean)
                .unwrap();
        let (values, covariates) = components_and_covariates(&ordinary, &knn).unwrap();
        let calibration =
            Calibration::fit(&values, &covariates, vec![0.0], 5, "validation", names).unwrap();
        let null = StoredNull {
            calibration,
            ..reference
        };
        let odd: Vec<usize> = (0..10).collect();
        let (mut list, latents) = population(12, &odd);
        // New galaxies: rename them so none is its own reference.
        let renamed: Vec<String> = (0..12).map(|i| format!("9999-{i}")).collect();
        list.set("plateifu", Column::Str(renamed)).unwrap();
        let used = finalize_population_scores(
            &mut list,
            &latents,
            2,
            &ScoreSettings::default(),
            Some(&null),
            None,
            &NoProgress,
        )
        .unwrap();
        // knn_dist used the null's own k (5), not the settings' default (10): its null was
        // fitted at that k.
        assert_eq!(
            (used.fitted_on.as_str(), used.knn_k, used.warning),
            ("validation", 5, None)
        );
        // A current null needs no refit.
        assert_eq!(used.refit_advice, None);
        let flags = list.bool("fdr_flag").unwrap();
        assert!(odd.iter().all(|&i| flags[i]), "{flags:?}");
        assert!(!flags[10] && !flags[11]);
    }

    #[test]
    fn galaxies_without_usable_pixels_are_never_flagged_and_rank_last() {
        let n = 60;
        let (mut catalog, latents) = population(n, &[5]);
        let mut pooled = catalog.f64("pooled").unwrap().to_vec();
        let mut local_col = catalog.f64("local").unwrap().to_vec();
        pooled[7] = f64::NAN;
        local_col[7] = f64::NAN;
        catalog.set("pooled", Column::F64(pooled)).unwrap();
        catalog.set("local", Column::F64(local_col)).unwrap();
        let settings = ScoreSettings {
            pvalues: PValueMethod::Population,
            ..ScoreSettings::default()
        };
        finalize_population_scores(
            &mut catalog,
            &latents,
            2,
            &settings,
            None,
            None,
            &NoProgress,
        )
        .unwrap();
        assert!(catalog.f64("score").unwrap()[7].is_nan());
        assert_eq!(catalog.f64("pvalue").unwrap()[7], 1.0);
        assert!(!catalog.bool("fdr_flag").unwrap()[7]);
        assert_eq!(catalog.u32("rank").unwrap()[7], n as u32);
        assert!(catalog.bool("fdr_flag").unwrap()[5]);
    }

    #[test]
    fn the_fused_score_does_not_depend_on_row_order() {
        let n = 80;
        let (catalog, latents) = population(n, &[3, 40]);
        let settings = ScoreSettings {
            pvalues: PValueMethod::Population,
            ..ScoreSettings::default()
        };
        let mut forward = catalog.clone();
        finalize_population_scores(
            &mut forward,
            &latents,
            2,
            &settings,
            None,
            None,
            &NoProgress,
        )
        .unwrap();
        let order: Vec<usize> = (0..n).rev().collect();
        let mut reversed = catalog.select_rows(&order).unwrap();
        let reversed_latents: Vec<f32> = order
            .iter()
            .flat_map(|&i| latents[2 * i..2 * i + 2].to_vec())
            .collect();
        finalize_population_scores(
            &mut reversed,
            &reversed_latents,
            2,
            &settings,
            None,
            None,
            &NoProgress,
        )
        .unwrap();
        let a = forward.f64("score").unwrap();
        let b = reversed.f64("score").unwrap();
        for (i, &j) in order.iter().enumerate() {
            assert!((b[i] - a[j]).abs() < 1e-9, "row {j}");
        }
    }

    #[test]
    fn the_consensus_map_takes_each_galaxys_own_other_maps() {
        // More galaxies than one model call takes, so the other maps are looked up across
        // chunks: another model whose map of galaxy i is (i + 1) times this one's gives a
        // consensus of √(i + 1) times it.
        let (n, l, s) = (CHUNK + 44, 2, 4);
        let cubes = random_cubes(n, l, s, 3);
        let galaxies = records(n);
        let lines = line_names(l);
        let model = FlatModel { n_lines: l };
        let rows: Vec<usize> = (0..n).collect();
        let own = score_galaxies(
            &model,
            &cubes,
            &galaxies,
            &lines,
            &rows,
            &MapSettings::default(),
            &NoProgress,
        )
        .unwrap();
        let plane = s * s;
        let mut other = own.maps.clone();
        for (k, v) in other.value.iter_mut().enumerate() {
            *v *= (k / plane + 1) as f32;
        }
        let settings = MapSettings {
            floors: Vec::new(),
            other_maps: vec![other.clone()],
        };
        let both = score_galaxies(
            &model,
            &cubes,
            &galaxies,
            &lines,
            &rows,
            &settings,
            &NoProgress,
        )
        .unwrap();
        for (k, (&v, &mine)) in both.maps.value.iter().zip(&own.maps.value).enumerate() {
            if mine.is_nan() {
                assert!(v.is_nan(), "value {k}: {v} where the pixel is unusable");
                continue;
            }
            let expected = f64::from(mine) * ((k / plane + 1) as f64).sqrt();
            assert!(
                (f64::from(v) - expected).abs() <= 1e-5 * expected + 1e-12,
                "value {k}"
            );
        }
        // `local` is this model's own peak; the maps say how many runs they combine.
        assert_eq!(both.catalog.f64("local"), own.catalog.f64("local"));
        assert_eq!((own.maps.runs, both.maps.runs), (1, 2));
        // Maps of other galaxies (here: in another order), or missing some pixels, are refused.
        let mut truncated = other.clone();
        truncated.value.pop();
        other.plateifus.reverse();
        for other in [other, truncated] {
            let settings = MapSettings {
                floors: Vec::new(),
                other_maps: vec![other],
            };
            let err = score_galaxies(
                &model,
                &cubes,
                &galaxies,
                &lines,
                &rows,
                &settings,
                &NoProgress,
            )
            .unwrap_err();
            assert!(err.to_string().contains("consensus"), "{err}");
        }
    }

    #[test]
    fn sharded_then_finalized_equals_unsharded() {
        let (n, l, s) = (37, 3, 6);
        let cubes = random_cubes(n, l, s, 1);
        let galaxies = records(n);
        let lines = line_names(l);
        let model = FlatModel { n_lines: l };
        let settings = ScoreSettings {
            rank_by: RankBy::Lof,
            pvalues: PValueMethod::Population,
            fdr: 0.2,
            knn_k: 4,
            metric: Metric::Cosine,
        };
        let all: Vec<usize> = (0..n).collect();
        let mut whole = score_galaxies(
            &model,
            &cubes,
            &galaxies,
            &lines,
            &all,
            &MapSettings::default(),
            &NoProgress,
        )
        .unwrap();
        finalize_population_scores(
            &mut whole.catalog,
            &whole.latents,
            whole.latent_dim,
            &settings,
            None,
            None,
            &NoProgress,
        )
        .unwrap();

        let shards: Vec<oddcube_data::Shard> = (0..3)
            .map(|i| oddcube_data::Shard::new(i, 3).unwrap())
            .collect();
        let parts: Vec<Scored> = shards
            .iter()
            .map(|shard| {
                let rows: Vec<usize> = (0..n)
                    .filter(|&i| shard.contains(&galaxies[i].plateifu))
                    .collect();
                score_galaxies(
                    &model,
                    &cubes,
                    &galaxies,
                    &lines,
                    &rows,
                    &MapSettings::default(),
                    &NoProgress,
                )
                .unwrap()
            })
            .collect();
        assert!(
            parts.iter().all(|p| !p.catalog.is_empty()),
            "every shard should get galaxies"
        );
        // Join the parts back into dataset order, as merge does.
        let joined =
            Catalog::concat(&parts.iter().map(|p| p.catalog.clone()).collect::<Vec<_>>()).unwrap();
        let joined_latents: Vec<f32> = parts.iter().flat_map(|p| p.latents.clone()).collect();
        let order: Vec<usize> = {
            let names = joined.str("plateifu").unwrap();
            galaxies
                .iter()
                .map(|g| names.iter().position(|p| *p == g.plateifu).unwrap())
                .collect()
        };
        let mut merged = joined.select_rows(&order).unwrap();
        let merged_latents: Vec<f32> = order
            .iter()
            .flat_map(|&r| {
                joined_latents[r * whole.latent_dim..(r + 1) * whole.latent_dim].to_vec()
            })
            .collect();
        finalize_population_scores(
            &mut merged,
            &merged_latents,
            whole.latent_dim,
            &settings,
            None,
            None,
            &NoProgress,
        )
        .unwrap();
        assert_eq!(merged_latents, whole.latents);
        assert_eq!(
            format!("{:?}", merged.columns),
            format!("{:?}", whole.catalog.columns)
        );
    }

    #[test]
    fn scores_are_invariant_under_d4_given_transformed_reconstructions() {
        let (l, s) = (4, 7);
        let cubes = random_cubes(3, l, s, 9);
        let xhat_all = random_cubes(3, l, s, 10).x;
        let len = cubes.galaxy_len();
        for g in 0..3 {
            let (x, w) = cubes.galaxy(g);
            let xhat = &xhat_all[g * len..(g + 1) * len];
            let base = galaxy_scores(x, w, xhat, l);
            for op in 0..8 {
                let t = galaxy_scores(
                    &d4_transformed(op, s, x),
                    &d4_transformed(op, s, w),
                    &d4_transformed(op, s, xhat),
                    l,
                );
                // Only the summation order changes: equal to f64 rounding.
                assert!(
                    (t.recon - base.recon).abs() <= 1e-12 * base.recon,
                    "op {op}"
                );
                assert!((t.chi2 - base.chi2).abs() <= 1e-12 * base.chi2, "op {op}");
                for (a, b) in t.line_shares.iter().zip(&base.line_shares) {
                    assert!((a - b).abs() < 1e-12);
                }
            }
        }
        // With a D4-invariant model the whole catalogue is invariant too.
        let model = FlatModel { n_lines: l };
        let galaxies = records(3);
        let lines = line_names(l);
        let rows = [0, 1, 2];
        let base = score_galaxies(
            &model,
            &cubes,
            &galaxies,
            &lines,
            &rows,
            &MapSettings::default(),
            &NoProgress,
        )
        .unwrap();
        for op in 0..8 {
            let mut t = cubes.clone();
            t.x = (0..3)
                .flat_map(|g| d4_transformed(op, s, cubes.galaxy(g).0))
                .collect();
            t.w = (0..3)
                .flat_map(|g| d4_transformed(op, s, cubes.galaxy(g).1))
                .collect();
            let scored = score_galaxies(
                &model,
                &t,
                &galaxies,
                &lines,
                &rows,
                &MapSettings::default(),
                &NoProgress,
            )
            .unwrap();
            assert_eq!(scored.latents, base.latents);
            for col in ["recon", "chi2"] {
                for (a, b) in scored
                    .catalog
                    .f64(col)
                    .unwrap()
                    .iter()
                    .zip(base.catalog.f64(col).unwrap())
                {
                    assert!((a - b).abs() <= 1e-12 * b.abs());
                }
            }
        }
    }

    #[test]
    fn residual_selection_and_file() {
        assert_eq!(
            "top:5".parse::<ResidualSelection>().unwrap(),
            ResidualSelection::Top(5)
        );
        assert_eq!(
            "all".parse::<ResidualSelection>().unwrap(),
            ResidualSelection::All
        );
        assert!("top:x".parse::<ResidualSelection>().is_err());
        assert!("chi".parse::<RankBy>().is_err());
        let (n, l, s) = (12, 2, 5);
        let cubes = random_cubes(n, l, s, 4);
        let galaxies = records(n);
        let lines = line_names(l);
        let model = FlatModel { n_lines: l };
        let all: Vec<usize> = (0..n).collect();
        let mut scored = score_galaxies(
            &model,
            &cubes,
            &galaxies,
            &lines,
            &all,
            &MapSettings::default(),
            &NoProgress,
        )
        .unwrap();
        let part_rows = residual_rows(
            &scored.catalog,
            ResidualSelection::Top(3),
            RankBy::Lof,
            false,
        );
        finalize_population_scores(
            &mut scored.catalog,
            &scored.latents,
            scored.latent_dim,
            &ScoreSettings {
                rank_by: RankBy::Chi2,
                ..ScoreSettings::default()
            },
            None,
            None,
            &NoProgress,
        )
        .unwrap();
        let rows = residual_rows(
            &scored.catalog,
            ResidualSelection::Top(3),
            RankBy::Chi2,
            true,
        );
        // Chi2-ranked: the part's per-galaxy choice and the final ranks agree.
        assert_eq!(rows, part_rows);
        let rank = scored.catalog.u32("rank").unwrap();
        assert_eq!(
            rows.iter().map(|&r| rank[r]).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        let dir = tempfile::tempdir().unwrap();
        let names: Vec<String> = rows.iter().map(|&r| galaxies[r].plateifu.clone()).collect();
        write_residuals(
            dir.path(),
            &model,
            &cubes,
            &names,
            &lines,
            &rows,
            &NoProgress,
        )
        .unwrap();
        let res = crate::results::Residuals::open(dir.path())
            .unwrap()
            .unwrap();
        assert_eq!(res.plateifus, names);
        let maps = res.galaxy(0).unwrap();
        let (x, w) = cubes.galaxy(rows[0]);
        assert_eq!(maps.x, x);
        // Σ residual² / n_usable is the galaxy's chi2.
        let n_usable = w.iter().filter(|&&v| v > 0.0).count() as f64;
        let chi2: f64 = maps
            .residual
            .iter()
            .map(|r| f64::from(*r).powi(2))
            .sum::<f64>()
            / n_usable;
        let want = scored.catalog.f64("chi2").unwrap()[rows[0]];
        assert!((chi2 - want).abs() < 1e-4 * want, "{chi2} vs {want}");
    }
}
