//! The survey simulator: writes a MaNGA-like survey of DR17 DAP MAPS files whose anomalies are
//! known, plus `truth.csv` with each galaxy's kind and drawn parameters.
//!
//! Geometry (bundle size, shape, size, redshift, sky position) comes from real MaNGA galaxies
//! ([`catalogue`]); line emission from physical line ratios ([`spectra`]) rendered on the DRP grid
//! with PSF, dust, noise and DAP masks ([`galaxy`], [`render`]); files follow the real DR17
//! layout ([`layout`]). Every galaxy has its own random stream seeded from (seed, index), so a
//! survey is identical whatever the thread count.

pub mod catalogue;
pub mod galaxy;
pub mod layout;
pub mod render;
pub mod spectra;

use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::error::DataError;
use crate::fits::write::{WriteOptions, release_write_buffers, write_fits};
use crate::progress::Progress;
pub use catalogue::Geometry;
pub use galaxy::{GalaxyKind, GalaxyMaps, GalaxyTruth};

/// The DAPTYPE of simulated files (the DR17 default for emission lines).
pub const DAPTYPE: &str = "HYB10-MILESHC-MASTARSSP";

/// What survey to simulate.
#[derive(Debug, Clone, PartialEq)]
pub struct SurveyConfig {
    /// Number of galaxies.
    pub galaxies: usize,
    /// Seed of the whole survey.
    pub seed: u64,
    /// Fraction of galaxies that are injected anomalies (rounded to a whole number).
    pub anomaly_fraction: f64,
    /// The anomaly kinds injected, in turn (default [`GalaxyKind::ANOMALIES`]).
    pub anomaly_kinds: Vec<GalaxyKind>,
    /// gzip level of the written files (1 = fast).
    pub gzip_level: u32,
}

impl Default for SurveyConfig {
    fn default() -> Self {
        Self {
            galaxies: 100,
            seed: 0,
            anomaly_fraction: 0.05,
            anomaly_kinds: GalaxyKind::ANOMALIES.to_vec(),
            gzip_level: 1,
        }
    }
}

/// One galaxy of a planned survey: identity, kind and the real geometry it is modelled on.
#[derive(Debug, Clone, PartialEq)]
pub struct GalaxyPlan {
    /// Index within the survey (also selects its random stream).
    pub index: usize,
    /// Plate number.
    pub plate: u32,
    /// IFU design number.
    pub ifudesign: u32,
    /// MaNGA-ID.
    pub mangaid: String,
    /// Kind.
    pub kind: GalaxyKind,
    /// Geometry drawn from the real catalogue.
    pub geometry: Geometry,
    /// Galactic E(B−V) toward the galaxy.
    pub ebv_gal: f64,
    /// MJD of the simulated observation.
    pub mjd: u32,
}

impl GalaxyPlan {
    /// `plate-ifudesign`.
    pub fn plateifu(&self) -> String {
        format!("{}-{}", self.plate, self.ifudesign)
    }

    /// File name in the SDSS convention.
    pub fn file_name(&self) -> String {
        format!(
            "manga-{}-{}-MAPS-{DAPTYPE}.fits.gz",
            self.plate, self.ifudesign
        )
    }
}

/// The random stream of galaxy `index` in a survey with `seed`: independent of every other
/// galaxy's, so results do not depend on scheduling.
pub fn galaxy_rng(seed: u64, index: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(index as u64 + 1);
    rng
}

/// Plans a survey: kinds (exactly round(F·N) anomalies, the configured kinds in turn, at
/// shuffled positions), geometries sampled from the real catalogue, unique names. Cheap and
/// sequential.
pub fn plan_survey(config: &SurveyConfig) -> Result<Vec<GalaxyPlan>, DataError> {
    if config.galaxies == 0 {
        return Err(DataError::Invalid("--galaxies must be at least 1".into()));
    }
    if !(0.0..=1.0).contains(&config.anomaly_fraction) {
        return Err(DataError::Invalid(format!(
            "--anomaly-fraction must be between 0 and 1, got {}",
            config.anomaly_fraction
        )));
    }
    if config.anomaly_kinds.is_empty() && config.anomaly_fraction > 0.0 {
        return Err(DataError::Invalid(
            "no anomaly kinds to inject: name at least one, or set the anomaly fraction to 0"
                .into(),
        ));
    }
    if let Some(kind) = config.anomaly_kinds.iter().find(|k| !k.is_anomaly()) {
        return Err(DataError::Invalid(format!(
            "{} is an ordinary kind, not an anomaly to inject",
            kind.name()
        )));
    }
    let table = catalogue::geometry_table();
    if table.is_empty() {
        return Err(DataError::Invalid(
            "the embedded geometry table is empty".into(),
        ));
    }
    // Stream 0 plans the survey; streams 1.. render galaxies.
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let n = config.galaxies;
    let n_anomalies = (config.anomaly_fraction * n as f64).round() as usize;
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rng);
    let mut kinds = vec![GalaxyKind::StarForming; n];
    for (rank, &index) in order.iter().enumerate() {
        kinds[index] = if rank < n_anomalies {
            config.anomaly_kinds[rank % config.anomaly_kinds.len()]
        } else if rng.random_bool(0.35) {
            GalaxyKind::Retired
        } else {
            GalaxyKind::StarForming
        };
    }
    let mut namer = catalogue::Namer::new(&mut rng);
    let plans = kinds
        .into_iter()
        .enumerate()
        .map(|(index, kind)| {
            let mut geometry = table[rng.random_range(0..table.len())];
            // Offset the position a little so no simulated galaxy sits on a real one.
            geometry.ra_deg = (geometry.ra_deg + rng.random_range(-0.05..0.05)).rem_euclid(360.0);
            geometry.dec_deg =
                (geometry.dec_deg + rng.random_range(-0.05..0.05)).clamp(-90.0, 90.0);
            let (plate, ifudesign) = namer.plate_ifu(geometry.ifu_size, &mut rng);
            GalaxyPlan {
                index,
                plate,
                ifudesign,
                mangaid: namer.mangaid(index),
                kind,
                geometry,
                ebv_gal: -0.04 * (1.0 - rng.random::<f64>()).ln(),
                mjd: rng.random_range(56_700..58_900),
            }
        })
        .collect();
    Ok(plans)
}

/// Simulates one planned galaxy (deterministic for (seed, plan)).
pub fn simulate_planned(plan: &GalaxyPlan, seed: u64) -> (GalaxyTruth, GalaxyMaps) {
    let mut rng = galaxy_rng(seed, plan.index);
    galaxy::simulate_galaxy(plan.kind, plan.geometry, &mut rng)
}

/// Writes one galaxy's MAPS file into `dir`; returns its path.
pub fn write_galaxy(
    dir: &Path,
    plan: &GalaxyPlan,
    truth: &GalaxyTruth,
    maps: &GalaxyMaps,
    seed: u64,
    gzip_level: u32,
) -> Result<PathBuf, DataError> {
    let info = layout::HeaderInfo {
        plate: plan.plate,
        ifudesign: plan.ifudesign,
        mangaid: &plan.mangaid,
        seed,
        index: plan.index,
        mjd: plan.mjd,
        ebv_gal: plan.ebv_gal,
    };
    let path = dir.join(plan.file_name());
    let primary = layout::primary_cards(&info, truth, maps);
    let hdus = layout::extension_hdus(&info, truth, maps);
    write_fits(
        &path,
        &primary,
        &hdus,
        &WriteOptions {
            checksum: true,
            gzip_level,
        },
    )?;
    Ok(path)
}

/// What a survey run produced.
#[derive(Debug, Clone)]
pub struct SurveySummary {
    /// MAPS files written, in galaxy order.
    pub files: Vec<PathBuf>,
    /// The ground-truth table.
    pub truth_path: PathBuf,
    /// Galaxies per kind, in [`GalaxyKind`] order of first appearance.
    pub kinds: Vec<(GalaxyKind, usize)>,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// Simulates a survey into `out_dir` (created if needed) on the current rayon pool:
/// one MAPS file per galaxy and `truth.csv`.
pub fn simulate_survey(
    out_dir: &Path,
    config: &SurveyConfig,
    progress: &dyn Progress,
) -> Result<SurveySummary, DataError> {
    let started = Instant::now();
    let plans = plan_survey(config)?;
    std::fs::create_dir_all(out_dir).map_err(|e| DataError::Write {
        path: out_dir.to_path_buf(),
        reason: format!("cannot create the output directory: {e}"),
    })?;
    progress.start("simulate", plans.len() as u64);
    let results: Vec<Result<(PathBuf, GalaxyTruth), DataError>> = plans
        .par_iter()
        .map(|plan| {
            let (truth, maps) = simulate_planned(plan, config.seed);
            let path = write_galaxy(out_dir, plan, &truth, &maps, config.seed, config.gzip_level)?;
            progress.advance(1);
            Ok((path, truth))
        })
        .collect();
    release_write_buffers();
    progress.finish();
    let mut files = Vec::with_capacity(plans.len());
    let mut truths = Vec::with_capacity(plans.len());
    for result in results {
        let (path, truth) = result?;
        files.push(path);
        truths.push(truth);
    }
    let truth_path = out_dir.join("truth.csv");
    write_truth(&truth_path, &plans, &truths)?;
    let mut kinds: Vec<(GalaxyKind, usize)> = Vec::new();
    for plan in &plans {
        match kinds.iter_mut().find(|(k, _)| *k == plan.kind) {
            Some((_, count)) => *count += 1,
            None => kinds.push((plan.kind, 1)),
        }
    }
    Ok(SurveySummary {
        files,
        truth_path,
        kinds,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Columns of `truth.csv`.
pub const TRUTH_COLUMNS: &str = "plateifu,mangaid,kind,is_anomaly,ifu,grid,file,ra,dec,z,ell,pa,\
reff_arcsec,psf_fwhm_arcsec,noise_scale,ebv,ha_amplitude,log_nii_ha,nii_gradient,log_oiii_hb,\
n_clumps,vmax_kms,continuum_snr,anomaly_col,anomaly_row,anomaly_radius,anomaly_contrast";

fn number(value: f64) -> String {
    if value.is_finite() {
        format!("{value:.5}")
    } else {
        String::new()
    }
}

/// Writes the ground-truth table atomically (temp file, fsync, rename).
pub fn write_truth(
    path: &Path,
    plans: &[GalaxyPlan],
    truths: &[GalaxyTruth],
) -> Result<(), DataError> {
    let mut text = String::from(TRUTH_COLUMNS);
    text.push('\n');
    for (plan, t) in plans.iter().zip(truths) {
        let g = &t.geometry;
        let row = [
            plan.plateifu(),
            plan.mangaid.clone(),
            t.kind.name().to_string(),
            u8::from(t.kind.is_anomaly()).to_string(),
            g.ifu_size.to_string(),
            t.grid.to_string(),
            plan.file_name(),
            format!("{:.6}", g.ra_deg),
            format!("{:.6}", g.dec_deg),
            format!("{:.5}", g.z),
            number(g.ell),
            number(g.pa_deg),
            number(g.reff_arcsec),
            number(t.psf_fwhm),
            number(t.noise_scale),
            number(t.ebv),
            number(t.ha_amplitude),
            number(t.log_nii_ha),
            number(t.nii_gradient),
            number(t.log_oiii_hb),
            t.n_clumps.to_string(),
            number(t.vmax),
            number(t.continuum_snr),
            number(t.anomaly_col),
            number(t.anomaly_row),
            number(t.anomaly_radius),
            number(t.anomaly_contrast),
        ];
        text.push_str(&crate::csv::record(row));
    }
    let write_err = |source: std::io::Error| DataError::Write {
        path: path.to_path_buf(),
        reason: source.to_string(),
    };
    crate::atomic::write_bytes(path, text.as_bytes()).map_err(write_err)
}

#[cfg(test)]
mod tests;
