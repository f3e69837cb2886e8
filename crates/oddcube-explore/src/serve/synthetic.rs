//! A small synthetic RESULTS directory in the exact artifact format, for the explorer's tests,
//! the end-to-end browser test and trying the explorer without training a model.
//!
//! The galaxies are simple but physical: exponential star-forming disks, every fifth with a
//! Seyfert-like nucleus. They are scored by the real scoring path — [`score_galaxies`] with a
//! stand-in [`Autoencoder`], then [`finalize_population_scores`], the anomaly maps, the residual
//! maps and the [`Results`](oddcube_score::results::Results) writer — so the explorer sees exactly
//! what `oddcube score` writes. The stand-in ([`StarFormingModel`]) plays a model that has only
//! seen star-forming galaxies: it rebuilds every line from Hα with star-forming line ratios, so it
//! misses a nucleus's AGN ratios, and its latent vector is a handful of line-ratio and
//! light-profile features.

use std::path::Path;

use oddcube_data::dataset::GalaxyRecord;
use oddcube_data::{Cubes, NoProgress};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use oddcube_score::results::ResultsManifest;
use oddcube_score::score::{
    Autoencoder, MapSettings, PValueMethod, RankBy, ResidualSelection, ScoreSettings,
    finalize_population_scores, residual_rows, score_galaxies, write_residuals,
};
use oddcube_score::{Error, Metric, Result};

/// Grid side of the synthetic maps.
pub const SIZE: usize = 16;
/// Latent dimension of the stand-in model (its features, see [`StarFormingModel`]).
pub const LATENT_DIM: usize = 8;

/// Residual maps are stored for this many top-ranked galaxies (all of a small survey).
pub const STORED_RESIDUALS: usize = 400;

/// Radius (pixels) of the footprint, and of the centre the latent features measure.
const FOOTPRINT_RADIUS: f32 = 7.5;
const CENTRE_RADIUS: f32 = 2.0;

/// Distance of pixel `p` of the S×S grid from the grid centre.
fn radius(p: usize) -> f32 {
    let centre = (SIZE as f32 - 1.0) / 2.0;
    let (row, col) = ((p / SIZE) as f32, (p % SIZE) as f32);
    ((row - centre).powi(2) + (col - centre).powi(2)).sqrt()
}

/// The observed maps `x` and weights `w` (`[L, S, S]` each) of galaxy `g`; deterministic in
/// (`g`, `seed`).
fn galaxy_maps(lines: &[String], g: usize, seed: u64, seyfert: bool) -> (Vec<f32>, Vec<f32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (g as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let pixels = SIZE * SIZE;
    let scale_length: f32 = rng.random_range(2.0..4.0);
    let brightness: f32 = rng.random_range(0.6..1.0);
    let n = lines.len() * pixels;
    let (mut x, mut w) = (vec![0f32; n], vec![0f32; n]);
    for (l, line) in lines.iter().enumerate() {
        for p in 0..pixels {
            let r = radius(p);
            if r > FOOTPRINT_RADIUS {
                continue;
            }
            let disk = brightness * (-r / scale_length).exp();
            let core = if seyfert {
                0.8 * (-(r * r) / 2.0).exp()
            } else {
                0.0
            };
            let truth = disk * line_ratio(line, false) + core * line_ratio(line, true);
            let noise: f32 = StandardNormal.sample(&mut rng);
            let i = l * pixels + p;
            w[i] = 2500.0;
            x[i] = (truth + noise * 0.02).max(0.0);
        }
    }
    (x, w)
}

/// Line flux relative to Hα for a star-forming spaxel and for a Seyfert nucleus.
fn line_ratio(line: &str, seyfert: bool) -> f32 {
    let (sf, agn) = match line {
        "Ha-6564" => (1.0, 1.0),
        "Hb-4862" => (0.35, 0.35),
        "NII-6585" => (0.35, 1.0),
        "OIII-5008" => (0.17, 3.5),
        "SII-6718" => (0.17, 0.35),
        "SII-6732" => (0.13, 0.3),
        "OI-6302" => (0.03, 0.2),
        "HeII-4687" => (0.0, 0.1),
        "NeIII-3869" => (0.02, 0.35),
        "Hgam-4341" => (0.16, 0.16),
        "Hdel-4102" => (0.09, 0.09),
        "HeI-5877" => (0.035, 0.035),
        _ => (0.02, 0.03),
    };
    if seyfert { agn } else { sf }
}

/// The stand-in model: what an autoencoder trained only on star-forming disks would do.
///
/// Reconstruction: every line is Hα times its star-forming ratio to Hα (Hα itself is kept), so a
/// disk is rebuilt up to noise and a Seyfert nucleus's strong \[OIII\], \[NII\], \[SII\] and \[OI\]
/// are missed. Latents: the centre's log line ratios \[OIII\]/Hβ, \[NII\]/Hα, \[SII\]/Hα and
/// \[OI\]/Hα, then Hα's mean radius, log total flux, central concentration and RMS radius.
#[derive(Debug, Clone)]
pub struct StarFormingModel {
    lines: Vec<String>,
}

impl StarFormingModel {
    /// The model for cubes with `lines` (names as in the DR17 line set).
    pub fn new(lines: &[String]) -> Self {
        Self {
            lines: lines.to_vec(),
        }
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.lines.iter().position(|l| l == name)
    }

    /// The latent features of one galaxy's maps `x` (`[L, S, S]`).
    fn features(&self, x: &[f32]) -> [f32; LATENT_DIM] {
        let pixels = SIZE * SIZE;
        let map = |name: &str| self.index(name).map(|l| &x[l * pixels..(l + 1) * pixels]);
        let central = |name: &str| -> f32 {
            map(name).map_or(0.0, |m| {
                (0..pixels)
                    .filter(|&p| radius(p) <= CENTRE_RADIUS)
                    .map(|p| m[p])
                    .sum()
            })
        };
        // A small floor keeps a line that is absent from giving -inf.
        let log_ratio = |a: f32, b: f32| ((a + 1e-3) / (b + 1e-3)).log10();
        let (ha, hb) = (central("Ha-6564"), central("Hb-4862"));
        let ha_map = map("Ha-6564").unwrap_or(&[]);
        let total: f32 = ha_map.iter().sum();
        let moment = |power: i32| -> f32 {
            let weighted: f32 = ha_map
                .iter()
                .enumerate()
                .map(|(p, f)| f * radius(p).powi(power))
                .sum();
            weighted / total.max(1e-6)
        };
        [
            log_ratio(central("OIII-5008"), hb),
            log_ratio(central("NII-6585"), ha),
            log_ratio(central("SII-6718") + central("SII-6732"), ha),
            log_ratio(central("OI-6302"), ha),
            moment(1),
            (total + 1e-3).log10(),
            ha / total.max(1e-6),
            moment(2).sqrt(),
        ]
    }
}

impl Autoencoder for StarFormingModel {
    fn latent_dim(&self) -> usize {
        LATENT_DIM
    }

    fn encode_reconstruct(
        &self,
        cubes: &Cubes,
    ) -> std::result::Result<(Vec<f32>, Vec<f32>), String> {
        let ha = self
            .index("Ha-6564")
            .ok_or_else(|| "the stand-in model needs the Ha-6564 line".to_string())?;
        if cubes.size != SIZE || cubes.n_lines != self.lines.len() {
            return Err(format!(
                "the stand-in model reads {} lines on {SIZE}×{SIZE}, got {} on {}×{}",
                self.lines.len(),
                cubes.n_lines,
                cubes.size,
                cubes.size
            ));
        }
        let pixels = SIZE * SIZE;
        let per_galaxy = cubes.n_lines * pixels;
        let mut latents = Vec::with_capacity(cubes.n * LATENT_DIM);
        let mut recon = vec![0f32; cubes.x.len()];
        for g in 0..cubes.n {
            let x = &cubes.x[g * per_galaxy..(g + 1) * per_galaxy];
            latents.extend(self.features(x));
            let ha_map = &x[ha * pixels..(ha + 1) * pixels];
            let sf_ha = line_ratio("Ha-6564", false);
            for (l, line) in self.lines.iter().enumerate() {
                let ratio = line_ratio(line, false) / sf_ha;
                let out =
                    &mut recon[g * per_galaxy + l * pixels..g * per_galaxy + (l + 1) * pixels];
                for (o, f) in out.iter_mut().zip(ha_map) {
                    *o = f * ratio;
                }
            }
        }
        Ok((latents, recon))
    }
}

/// Writes `n` synthetic galaxies into `dir` (created if needed) and returns each galaxy's kind
/// (`normal` or `seyfert`) by plate-ifu, for a kinds CSV. Every fifth galaxy has a nucleus.
/// The galaxies are scored like `oddcube score` would score them with [`StarFormingModel`] (kNN
/// k = 5, a population null, FDR 0.2, ranked by the fused score); residual maps are stored for
/// the [`STORED_RESIDUALS`] top-ranked galaxies.
///
/// Errors when `n < 8` (kNN/LOF need neighbours) or on a write failure.
pub fn write_synthetic_results(dir: &Path, n: usize, seed: u64) -> Result<Vec<(String, String)>> {
    if n < 8 {
        return Err(Error::InvalidParameter {
            name: "galaxies".to_string(),
            value: n.to_string(),
            reason: "need at least 8".to_string(),
        });
    }
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let lines: Vec<String> = oddcube_data::lines::PRESET_DR17
        .iter()
        .map(|s| s.to_string())
        .collect();
    let kinds: Vec<&str> = (0..n)
        .map(|i| if i % 5 == 2 { "seyfert" } else { "normal" })
        .collect();
    let mut cubes = Cubes::zeros(n, lines.len(), SIZE);
    let per_galaxy = lines.len() * SIZE * SIZE;
    for (g, kind) in kinds.iter().enumerate() {
        let (x, w) = galaxy_maps(&lines, g, seed, *kind == "seyfert");
        cubes.x[g * per_galaxy..(g + 1) * per_galaxy].copy_from_slice(&x);
        cubes.w[g * per_galaxy..(g + 1) * per_galaxy].copy_from_slice(&w);
    }
    let galaxies: Vec<GalaxyRecord> = (0..n).map(galaxy_record).collect();

    let model = StarFormingModel::new(&lines);
    let rows: Vec<usize> = (0..n).collect();
    let settings = ScoreSettings {
        rank_by: RankBy::Score,
        pvalues: PValueMethod::Population,
        fdr: 0.2,
        knn_k: 5,
        metric: Metric::Euclidean,
    };
    let mut scored = score_galaxies(
        &model,
        &cubes,
        &galaxies,
        &lines,
        &rows,
        &MapSettings::default(),
        &NoProgress,
    )?;
    // The maps are drawn with Seyfert or star-forming line ratios (`line_ratio`), so the BPT
    // class of each centre is known by construction.
    let classes: Vec<&str> = kinds
        .iter()
        .map(|k| if *k == "seyfert" { "seyfert" } else { "sf" })
        .collect();
    let refs: Vec<&GalaxyRecord> = galaxies.iter().collect();
    oddcube_score::pipeline::push_galaxy_columns(&mut scored.catalog, &refs, &classes)?;
    let null = finalize_population_scores(
        &mut scored.catalog,
        &scored.latents,
        scored.latent_dim,
        &settings,
        None,
        None,
        &NoProgress,
    )?;
    let selection = if n <= STORED_RESIDUALS {
        ResidualSelection::All
    } else {
        ResidualSelection::Top(STORED_RESIDUALS)
    };
    let picked = residual_rows(&scored.catalog, selection, settings.rank_by, true);
    let names: Vec<String> = picked
        .iter()
        .map(|&r| galaxies[r].plateifu.clone())
        .collect();
    write_residuals(dir, &model, &cubes, &names, &lines, &picked, &NoProgress)?;
    let mut manifest = ResultsManifest {
        model_dir: "(synthetic)".to_string(),
        dataset_dir: "(synthetic)".to_string(),
        lines,
        size: SIZE,
        latent_dim: scored.latent_dim,
        n_galaxies: n,
        shard: oddcube_data::Shard::ALL.to_string(),
        population_final: true,
        residuals: selection.to_string(),
        created_by: "oddcube_explore::serve::synthetic".to_string(),
        ..oddcube_score::pipeline::manifest_for(&settings)
    };
    manifest.set_null(&null);
    oddcube_score::pipeline::write_results(
        dir,
        &oddcube_score::pipeline::ResultsContent {
            manifest: &manifest,
            catalog: &scored.catalog,
            latents: &scored.latents,
            maps: &scored.maps,
            null: None,
            ensemble: None,
        },
    )?;
    Ok(galaxies
        .into_iter()
        .zip(kinds)
        .map(|(g, kind)| (g.plateifu, kind.to_string()))
        .collect())
}

/// The catalogue identity of synthetic galaxy `i`: a MaNGA-like plate-ifu and MaNGA-ID, a sky
/// position, redshift and IFU size that vary over the survey.
fn galaxy_record(i: usize) -> GalaxyRecord {
    GalaxyRecord {
        plateifu: format!("{}-{}", 8000 + i / 10, 1901 + (i % 10) * 100),
        mangaid: format!("1-{}", 100_000 + i),
        ra: 120.0 + i as f64 * 0.37,
        dec: 20.0 + (i % 17) as f64 * 0.5,
        z: 0.02 + (i % 11) as f64 * 0.005,
        ifu_size: [19, 37, 61, 91, 127][i % 5],
        grid_size: SIZE as u32,
        box_size: SIZE as u32,
        scale: 1.0,
        n_good: (0..SIZE * SIZE)
            .filter(|&p| radius(p) <= FOOTPRINT_RADIUS)
            .count() as u32,
        source: "(synthetic)".to_string(),
        notes: String::new(),
        psf_fwhm: f64::NAN,
        // One galaxy the DAP called CRITICAL, so the explorer's quality display has a case.
        dapqual: if i == CRITICAL_GALAXY {
            (1 << 30) | (1 << 29)
        } else {
            0
        },
        drp3qual: 0,
        daptype: "HYB10-MILESHC-MASTARSSP".to_string(),
    }
}

/// The synthetic galaxy flagged DAP CRITICAL (DAPQUAL DAPCRIT|CRITICAL).
pub const CRITICAL_GALAXY: usize = 3;
