//! Anomaly scoring of a dataset with a trained autoencoder: per-galaxy reconstruction scores
//! (`recon`, `chi2`, per-line shares), then the population-level columns (`knn_dist`, `lof`,
//! leave-one-out p-values, Benjamini–Hochberg q-values and flags, rank) — the catalogue of a
//! RESULTS directory.
//!
//! Sharding: per-galaxy scores and latents need only the galaxy itself, so each shard computes
//! them ([`score_galaxies`]); the population columns need every galaxy, so they are computed
//! once, on the joined catalogue and latents, by [`finalize_population_scores`] — which
//! `oddcube score` calls directly for an unsharded run and `oddcube merge` calls after joining
//! the `part-i-of-n` directories. Until then a part's population columns hold NaN / false / 0 and
//! its manifest says `population_final: false`.

use std::path::Path;

use oddcube_data::Progress;
use oddcube_data::cubes::Cubes;
use oddcube_data::dataset::GalaxyRecord;
use rayon::prelude::*;

use crate::error::{Error, Result, check_len};
use crate::fdr::benjamini_hochberg;
use crate::knn::{LatentView, Metric, all_nearest};
use crate::lof::{knn_distance_scores, local_outlier_factor};
use crate::results::{Catalog, Column, LINE_COLUMN_PREFIX, ResidualsWriter, invalid};

/// The score that orders the catalogue and that p-values are computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RankBy {
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
            RankBy::Chi2 => "chi2",
            RankBy::Recon => "recon",
            RankBy::KnnDist => "knn_dist",
            RankBy::Lof => "lof",
        }
    }

    /// True for scores a galaxy has on its own (known inside a shard).
    pub fn is_per_galaxy(self) -> bool {
        matches!(self, RankBy::Chi2 | RankBy::Recon)
    }
}

impl std::str::FromStr for RankBy {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "chi2" => Ok(RankBy::Chi2),
            "recon" => Ok(RankBy::Recon),
            "knn_dist" | "knn" => Ok(RankBy::KnnDist),
            "lof" => Ok(RankBy::Lof),
            _ => Err(Error::InvalidParameter {
                name: "rank-by".to_string(),
                value: s.to_string(),
                reason: "expected chi2, recon, knn_dist or lof".to_string(),
            }),
        }
    }
}

impl std::fmt::Display for RankBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.column())
    }
}

/// How the `pvalue` column is computed from the rank-by score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PValueMethod {
    /// Upper tail of a normal fitted robustly (median, MAD) to the log scores of the whole
    /// population: the bulk of ordinary galaxies fixes the null, the few anomalies barely move
    /// it, and a far outlier gets a p-value far below 1/N — so BH can make discoveries.
    Robust,
    /// Leave-one-out empirical p-value against all the other galaxies. Assumption-free, but it
    /// is the galaxy's rank / N: the smallest value is 1/N and BH q-values are then all 1, so no
    /// galaxy is ever flagged below FDR 1 (it is a percentile, not a test).
    Empirical,
}

impl std::str::FromStr for PValueMethod {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "robust" => Ok(PValueMethod::Robust),
            "empirical" => Ok(PValueMethod::Empirical),
            _ => Err(Error::InvalidParameter {
                name: "pvalues".to_string(),
                value: s.to_string(),
                reason: "expected robust or empirical".to_string(),
            }),
        }
    }
}

impl std::fmt::Display for PValueMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PValueMethod::Robust => "robust",
            PValueMethod::Empirical => "empirical",
        })
    }
}

/// Settings of the population-level columns.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreSettings {
    /// The score that defines rank and p-values.
    pub rank_by: RankBy,
    /// How p-values are computed.
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
            rank_by: RankBy::Chi2,
            pvalues: PValueMethod::Robust,
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

/// Per-galaxy scores and latents of some galaxies of a dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    /// Catalogue rows, one per scored galaxy, population columns not yet filled.
    pub catalog: Catalog,
    /// Latents `[n, latent_dim]`, catalogue order.
    pub latents: Vec<f32>,
    /// D.
    pub latent_dim: usize,
}

/// Names of the population-level columns, in catalogue order.
pub const POPULATION_COLUMNS: [&str; 6] =
    ["knn_dist", "lof", "pvalue", "qvalue", "fdr_flag", "rank"];

/// Builds catalogue rows (contract column order) for `galaxies` with their `scores`; the
/// population columns are placeholders (NaN, false, rank 0) until [`finalize_population_scores`].
pub fn base_catalog(
    galaxies: &[&GalaxyRecord],
    lines: &[String],
    scores: &[GalaxyScores],
) -> Result<Catalog> {
    check_len("galaxy scores", scores.len(), galaxies.len())?;
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
    c.push(
        "recon",
        Column::F64(scores.iter().map(|s| s.recon).collect()),
    )?;
    c.push("chi2", Column::F64(scores.iter().map(|s| s.chi2).collect()))?;
    for (l, line) in lines.iter().enumerate() {
        c.push(
            &format!("{LINE_COLUMN_PREFIX}{line}"),
            Column::F64(scores.iter().map(|s| s.line_shares[l]).collect()),
        )?;
    }
    for name in ["knn_dist", "lof", "pvalue", "qvalue"] {
        c.push(name, Column::F64(vec![f64::NAN; n]))?;
    }
    c.push("fdr_flag", Column::Bool(vec![false; n]))?;
    c.push("rank", Column::U32(vec![0; n]))?;
    Ok(c)
}

/// Galaxies per model call: large enough to keep the model's batches full, small enough that a
/// chunk's reconstructions stay a few tens of MB.
pub const CHUNK: usize = 256;

fn model_error(message: String) -> Error {
    invalid(Path::new("model"), message)
}

/// Scores the galaxies at `rows` of `cubes` (dataset order; e.g. one shard's rows): encodes and
/// reconstructs them in chunks, computes [`galaxy_scores`] and builds [`base_catalog`] rows.
/// Deterministic given the model and data.
pub fn score_galaxies(
    model: &dyn Autoencoder,
    cubes: &Cubes,
    galaxies: &[GalaxyRecord],
    lines: &[String],
    rows: &[usize],
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
    let dim = model.latent_dim();
    let galaxy_len = cubes.galaxy_len();
    let mut latents = Vec::with_capacity(rows.len() * dim);
    let mut scores = Vec::with_capacity(rows.len());
    progress.start("score", rows.len() as u64);
    for chunk_rows in rows.chunks(CHUNK) {
        let chunk = cubes.select(chunk_rows);
        let (z, xhat) = model.encode_reconstruct(&chunk).map_err(model_error)?;
        check_len("model latents", z.len(), chunk_rows.len() * dim)?;
        check_len("model reconstructions", xhat.len(), chunk.x.len())?;
        latents.extend_from_slice(&z);
        let chunk_scores: Vec<GalaxyScores> = (0..chunk.n)
            .into_par_iter()
            .map(|i| {
                let (x, w) = chunk.galaxy(i);
                galaxy_scores(
                    x,
                    w,
                    &xhat[i * galaxy_len..(i + 1) * galaxy_len],
                    cubes.n_lines,
                )
            })
            .collect();
        scores.extend(chunk_scores);
        progress.advance(chunk_rows.len() as u64);
    }
    progress.finish();
    let records: Vec<&GalaxyRecord> = rows.iter().map(|&r| &galaxies[r]).collect();
    Ok(Scored {
        catalog: base_catalog(&records, lines, &scores)?,
        latents,
        latent_dim: dim,
    })
}

/// Empirical p-value of each score against all the others (leave-one-out; higher = more
/// anomalous): `p_i = (1 + #{j ≠ i : s_j ≥ s_i}) / n`, over the finite scores only (`n` of
/// them). The `+1` counts the galaxy itself, which keeps the p-value valid under exchangeability
/// and strictly positive. Non-finite scores get p = 1.
pub fn leave_one_out_p_values(scores: &[f64]) -> Vec<f64> {
    let mut sorted: Vec<f64> = scores.iter().copied().filter(|s| s.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    scores
        .iter()
        .map(|&s| {
            if !s.is_finite() {
                return 1.0;
            }
            // Counts every finite score ≥ s, the galaxy itself included: that is the 1 + #{j ≠ i}.
            let at_or_above = n - sorted.partition_point(|&r| r < s);
            at_or_above as f64 / n as f64
        })
        .collect()
}

/// Complementary error function (Numerical Recipes' `erfcc`, fractional error < 1.2e-7
/// everywhere, so tail probabilities stay accurate far below machine epsilon).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// Scale factor turning a median absolute deviation into a normal σ.
const MAD_TO_SIGMA: f64 = 1.482_602_218_505_602;

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        0.5 * (sorted[n / 2 - 1] + sorted[n / 2])
    }
}

/// p-values from a normal fitted robustly to `log(score)`: centre = median, σ = 1.4826·MAD
/// (the standard deviation when the MAD is 0), `p = P(Z ≥ z)`. Scores ≤ 0 are clamped to the
/// smallest positive score before the log; non-finite scores get p = 1, as does everything when
/// the population has no spread.
pub fn robust_tail_p_values(scores: &[f64]) -> Vec<f64> {
    let floor = scores
        .iter()
        .copied()
        .filter(|s| s.is_finite() && *s > 0.0)
        .fold(f64::INFINITY, f64::min);
    if !floor.is_finite() {
        return vec![1.0; scores.len()];
    }
    let log = |s: f64| s.max(floor).ln();
    let mut logs: Vec<f64> = scores
        .iter()
        .copied()
        .filter(|s| s.is_finite())
        .map(log)
        .collect();
    logs.sort_by(f64::total_cmp);
    let centre = median(&logs);
    let mut deviations: Vec<f64> = logs.iter().map(|v| (v - centre).abs()).collect();
    deviations.sort_by(f64::total_cmp);
    let mut sigma = MAD_TO_SIGMA * median(&deviations);
    if sigma.is_nan() || sigma <= 0.0 {
        let mean = logs.iter().sum::<f64>() / logs.len() as f64;
        sigma = (logs.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / logs.len() as f64).sqrt();
    }
    scores
        .iter()
        .map(|&s| {
            if !s.is_finite() || sigma.is_nan() || sigma <= 0.0 {
                return 1.0;
            }
            let z = (log(s) - centre) / sigma;
            (0.5 * erfc(z / std::f64::consts::SQRT_2)).clamp(0.0, 1.0)
        })
        .collect()
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

/// Fills the population columns of `catalog` (see [`POPULATION_COLUMNS`]) from the latents of
/// all its galaxies (`[n, latent_dim]`, catalogue order) and the per-galaxy columns: the exact
/// kNN graph in latent space gives `knn_dist` and `lof`; the `settings.rank_by` column gives
/// p-values (`settings.pvalues`), BH q-values and flags at `settings.fdr`, and the rank.
///
/// Call it on a whole population: for a sharded run, after joining the parts (the result is
/// then identical to an unsharded run). With fewer than two galaxies the latent scores are NaN.
pub fn finalize_population_scores(
    catalog: &mut Catalog,
    latents: &[f32],
    latent_dim: usize,
    settings: &ScoreSettings,
    progress: &dyn Progress,
) -> Result<()> {
    let n = catalog.len();
    let view = LatentView::new(latents, n, latent_dim)?;
    if settings.knn_k == 0 {
        return Err(Error::InvalidK {
            k: 0,
            reason: "knn_k must be at least 1".to_string(),
        });
    }
    let (knn_dist, lof) = if n >= 2 {
        let k = settings.knn_k.min(n - 1);
        let graph = all_nearest(&view, k, settings.metric, progress)?;
        (
            knn_distance_scores(&graph, k)?,
            local_outlier_factor(&graph, k)?,
        )
    } else {
        (vec![f64::NAN; n], vec![f64::NAN; n])
    };
    catalog.set("knn_dist", Column::F64(knn_dist))?;
    catalog.set("lof", Column::F64(lof))?;
    let column = settings.rank_by.column();
    let scores = catalog
        .f64(column)
        .ok_or_else(|| Error::Empty(format!("catalogue column '{column}'")))?
        .to_vec();
    let p_values = match settings.pvalues {
        PValueMethod::Robust => robust_tail_p_values(&scores),
        PValueMethod::Empirical => leave_one_out_p_values(&scores),
    };
    let bh = benjamini_hochberg(&p_values, settings.fdr)?;
    catalog.set("pvalue", Column::F64(p_values))?;
    catalog.set("qvalue", Column::F64(bh.q_values))?;
    catalog.set("fdr_flag", Column::Bool(bh.discoveries))?;
    catalog.set("rank", Column::U32(ranks(&scores)))?;
    Ok(())
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
/// the K highest per-galaxy scores (the rank-by score if per-galaxy, else chi2), a superset-safe
/// choice: the global top K by chi2/recon lies inside the union of every part's top K.
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
                let column = if rank_by.is_per_galaxy() {
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
            })
            .collect()
    }

    fn line_names(l: usize) -> Vec<String> {
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
    fn robust_p_values_known_case() {
        // erfc against known values: erfc(0) = 1, erfc(1) = 0.157299207, erfc(3) = 2.20904970e-5.
        assert!((erfc(0.0) - 1.0).abs() < 1e-7);
        assert!((erfc(1.0) / 0.157_299_207 - 1.0).abs() < 2e-7);
        assert!((erfc(3.0) / 2.209_049_70e-5 - 1.0).abs() < 2e-7);
        assert!((erfc(-1.0) - (2.0 - 0.157_299_207)).abs() < 1e-7);
        // log scores 0, ±1 around a median of 0, MAD 1: z = (ln s)/1.4826.
        let e = std::f64::consts::E;
        let p = robust_tail_p_values(&[1.0, e, 1.0 / e, e, 1.0 / e, f64::NAN]);
        assert!((p[0] - 0.5).abs() < 1e-7);
        let z: f64 = 1.0 / MAD_TO_SIGMA;
        assert!((p[1] - 0.5 * erfc(z / std::f64::consts::SQRT_2)).abs() < 1e-12);
        assert!((p[1] + p[2] - 1.0).abs() < 1e-7);
        assert_eq!(p[5], 1.0);
        assert_eq!(robust_tail_p_values(&[2.0, 2.0, 2.0]), vec![1.0; 3]);
        assert_eq!(robust_tail_p_values(&[0.0, f64::NAN]), vec![1.0; 2]);
    }

    #[test]
    fn p_values_and_ranks_known_case() {
        let s = [3.0, 1.0, 2.0, 2.0, f64::NAN];
        let naive: Vec<f64> = (0..4)
            .map(|i| (1 + (0..4).filter(|&j| j != i && s[j] >= s[i]).count()) as f64 / 4.0)
            .collect();
        let p = leave_one_out_p_values(&s);
        assert_eq!(&p[..4], &naive[..]);
        assert_eq!(p, vec![0.25, 1.0, 0.75, 0.75, 1.0]);
        assert_eq!(ranks(&s), vec![1, 4, 2, 3, 5]);
    }

    #[test]
    fn finalize_flags_planted_outlier_via_bh() {
        // 40 ordinary galaxies and one far outlier in both chi2 and latent space.
        let n = 41;
        let mut catalog = base_catalog(
            &records(n).iter().collect::<Vec<_>>(),
            &line_names(1),
            &(0..n)
                .map(|i| GalaxyScores {
                    recon: i as f64,
                    chi2: if i == 40 {
                        1000.0
                    } else {
                        1.0 + (i % 10) as f64 * 0.1
                    },
                    line_shares: vec![1.0],
                })
                .collect::<Vec<_>>(),
        )
        .unwrap();
        let latents: Vec<f32> = (0..n)
            .flat_map(|i| {
                if i == 40 {
                    [50.0, 50.0]
                } else {
                    [(i % 7) as f32, (i / 7) as f32]
                }
            })
            .collect();
        let settings = ScoreSettings {
            rank_by: RankBy::Chi2,
            pvalues: PValueMethod::Empirical,
            fdr: 0.05,
            knn_k: 5,
            metric: Metric::Euclidean,
        };
        finalize_population_scores(&mut catalog, &latents, 2, &settings, &NoProgress).unwrap();
        let p = catalog.f64("pvalue").unwrap();
        // The outlier has the single highest chi2: p = 1/41; BH q = p·41/1 = 1 — not a discovery
        // at 5 %: an empirical p-value against the tested population is a rank.
        assert_eq!(p[40], 1.0 / 41.0);
        assert_eq!(catalog.f64("qvalue").unwrap()[40], 1.0);
        assert!(!catalog.bool("fdr_flag").unwrap()[40]);
        // The robust tail model flags exactly the outlier at 5 %.
        let robust = ScoreSettings {
            pvalues: PValueMethod::Robust,
            ..settings
        };
        finalize_population_scores(&mut catalog, &latents, 2, &robust, &NoProgress).unwrap();
        let flags = catalog.bool("fdr_flag").unwrap();
        assert!(flags[40] && flags.iter().filter(|&&f| f).count() == 1);
        assert!(catalog.f64("pvalue").unwrap()[40] < 1e-10);
        // At FDR 1.0 every galaxy is flagged; rank 1 is the outlier; its latent scores are highest.
        let loose = ScoreSettings {
            fdr: 1.0,
            ..settings
        };
        finalize_population_scores(&mut catalog, &latents, 2, &loose, &NoProgress).unwrap();
        assert!(catalog.bool("fdr_flag").unwrap().iter().all(|&f| f));
        assert_eq!(catalog.u32("rank").unwrap()[40], 1);
        for col in ["knn_dist", "lof"] {
            let v = catalog.f64(col).unwrap();
            assert!((0..40).all(|i| v[i] < v[40]), "{col}");
        }
        // q-values from BH on the p-values.
        let bh = benjamini_hochberg(catalog.f64("pvalue").unwrap(), 1.0).unwrap();
        assert_eq!(catalog.f64("qvalue").unwrap(), &bh.q_values[..]);
        // Column order is the contract's.
        let names: Vec<&str> = catalog.columns.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "plateifu", "mangaid", "ra", "dec", "z", "ifu_size", "n_good", "recon", "chi2",
                "line:L0", "knn_dist", "lof", "pvalue", "qvalue", "fdr_flag", "rank"
            ]
        );
    }

    #[test]
    fn bh_discovers_a_group_of_outliers() {
        // 200 galaxies, 10 with much higher chi2: robust p-values put the 10 far in the tail, so
        // all 10 (and no other) are discoveries at FDR 0.05.
        let n = 200;
        let scores: Vec<GalaxyScores> = (0..n)
            .map(|i| GalaxyScores {
                recon: 0.0,
                chi2: if i < 10 {
                    100.0 + i as f64
                } else {
                    1.0 + (i % 50) as f64 * 0.01
                },
                line_shares: vec![1.0],
            })
            .collect();
        let mut catalog = base_catalog(
            &records(n).iter().collect::<Vec<_>>(),
            &line_names(1),
            &scores,
        )
        .unwrap();
        let latents: Vec<f32> = (0..n).map(|i| i as f32).collect();
        finalize_population_scores(
            &mut catalog,
            &latents,
            1,
            &ScoreSettings::default(),
            &NoProgress,
        )
        .unwrap();
        let flags = catalog.bool("fdr_flag").unwrap();
        assert_eq!(flags.iter().filter(|&&f| f).count(), 10);
        assert!(flags[..10].iter().all(|&f| f));
        // q-values are BH of the p-values.
        let bh = benjamini_hochberg(catalog.f64("pvalue").unwrap(), 0.05).unwrap();
        assert_eq!(catalog.f64("qvalue").unwrap(), &bh.q_values[..]);
        // Empirical p-values of the same population flag nothing: q = 1 throughout.
        let empirical = ScoreSettings {
            pvalues: PValueMethod::Empirical,
            ..ScoreSettings::default()
        };
        finalize_population_scores(&mut catalog, &latents, 1, &empirical, &NoProgress).unwrap();
        assert!(catalog.bool("fdr_flag").unwrap().iter().all(|&f| !f));
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
            pvalues: PValueMethod::Robust,
            fdr: 0.2,
            knn_k: 4,
            metric: Metric::Cosine,
        };
        let all: Vec<usize> = (0..n).collect();
        let mut whole =
            score_galaxies(&model, &cubes, &galaxies, &lines, &all, &NoProgress).unwrap();
        finalize_population_scores(
            &mut whole.catalog,
            &whole.latents,
            whole.latent_dim,
            &settings,
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
                score_galaxies(&model, &cubes, &galaxies, &lines, &rows, &NoProgress).unwrap()
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
        let base = score_galaxies(&model, &cubes, &galaxies, &lines, &rows, &NoProgress).unwrap();
        for op in 0..8 {
            let mut t = cubes.clone();
            t.x = (0..3)
                .flat_map(|g| d4_transformed(op, s, cubes.galaxy(g).0))
                .collect();
            t.w = (0..3)
                .flat_map(|g| d4_transformed(op, s, cubes.galaxy(g).1))
                .collect();
            let scored = score_galaxies(&model, &t, &galaxies, &lines, &rows, &NoProgress).unwrap();
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
        let mut scored =
            score_galaxies(&model, &cubes, &galaxies, &lines, &all, &NoProgress).unwrap();
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
            &ScoreSettings::default(),
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
