//! A small synthetic RESULTS directory in the exact artifact format (catalogue, latents,
//! residuals, manifest), for the explorer's tests, the end-to-end browser test and trying the
//! explorer without training a model. The galaxies are simple but physical: exponential
//! star-forming disks, some with a Seyfert-like nucleus the "reconstruction" misses; scores,
//! kNN/LOF, p-values and FDR flags are computed from those maps with the crate's own functions.

use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use oddcube_score::knn::{LatentView, Metric, all_nearest};
use oddcube_score::results::{Catalog, Column, ResidualsWriter, Results, ResultsManifest};
use oddcube_score::{Error, Result};

/// Grid side of the synthetic maps.
pub const SIZE: usize = 16;
/// Latent dimension of the synthetic latents.
pub const LATENT_DIM: usize = 8;

/// Residual maps are stored for this many top-ranked galaxies (all of a small survey).
pub const STORED_RESIDUALS: usize = 400;

/// The maps of galaxy `g` (input, "reconstruction" without the nucleus, weights) and its disk
/// scale length; deterministic in (`g`, `seed`) so maps can be regenerated after ranking.
#[allow(clippy::type_complexity)]
fn galaxy_maps(
    lines: &[String],
    g: usize,
    seed: u64,
    seyfert: bool,
) -> (Vec<f32>, Vec<f32>, Vec<f32>, f32) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (g as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let pixels = SIZE * SIZE;
    let centre = (SIZE as f32 - 1.0) / 2.0;
    let scale_length: f32 = rng.random_range(2.0..4.0);
    let brightness: f32 = rng.random_range(0.6..1.0);
    let n = lines.len() * pixels;
    let (mut x, mut xhat, mut w) = (vec![0f32; n], vec![0f32; n], vec![0f32; n]);
    for (l, line) in lines.iter().enumerate() {
        for p in 0..pixels {
            let (row, col) = ((p / SIZE) as f32, (p % SIZE) as f32);
            let r = ((row - centre).powi(2) + (col - centre).powi(2)).sqrt();
            if r > 7.5 {
                continue;
            }
            let disk = brightness * (-r / scale_length).exp();
            let core = if seyfert {
                0.8 * (-(r * r) / 2.0).exp()
            } else {
                0.0
            };
            let model = disk * line_ratio(line, false);
            let truth = model + core * line_ratio(line, true);
            let noise: f32 = StandardNormal.sample(&mut rng);
            let i = l * pixels + p;
            w[i] = 2500.0;
            x[i] = (truth + noise * 0.02).max(0.0);
            xhat[i] = model;
        }
    }
    (x, xhat, w, scale_length)
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

/// Writes `n` synthetic galaxies into `dir` (created if needed) and returns each galaxy's kind
/// (`normal` or `seyfert`) by plate-ifu, for a kinds CSV. Every fifth galaxy has a nucleus;
/// residual maps are stored for the [`STORED_RESIDUALS`] top-ranked galaxies.
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
    let (l_count, pixels) = (lines.len(), SIZE * SIZE);
    let plateifus: Vec<String> = (0..n)
        .map(|i| format!("{}-{}", 8000 + i / 10, 1901 + (i % 10) * 100))
        .collect();
    let kinds: Vec<&str> = (0..n)
        .map(|i| if i % 5 == 2 { "seyfert" } else { "normal" })
        .collect();
    let (mut recon, mut chi2, mut n_good) = (Vec::new(), Vec::new(), Vec::new());
    let mut shares = vec![Vec::with_capacity(n); l_count];
    let mut latents = Vec::with_capacity(n * LATENT_DIM);
    for (g, kind) in kinds.iter().enumerate() {
        let (x, xhat, w, scale_length) = galaxy_maps(&lines, g, seed, *kind == "seyfert");
        let (mut sq, mut weighted, mut good) = (0f64, vec![0f64; l_count], 0usize);
        for i in 0..x.len() {
            if w[i] > 0.0 {
                let r = f64::from(x[i] - xhat[i]);
                sq += r * r;
                weighted[i / pixels] += f64::from(w[i]) * r * r;
                good += 1;
            }
        }
        let total: f64 = weighted.iter().sum();
        recon.push(sq / good as f64);
        chi2.push(total / good as f64);
        n_good.push((good / l_count) as u32);
        for (l, s) in weighted.iter().enumerate() {
            shares[l].push(if total > 0.0 { s / total } else { 0.0 });
        }
        let mut rng =
            ChaCha8Rng::seed_from_u64(seed ^ (g as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 1);
        for d in 0..LATENT_DIM {
            let offset = if *kind == "seyfert" && d == 0 {
                4.0
            } else {
                0.0
            };
            let spread: f32 = StandardNormal.sample(&mut rng);
            latents.push(offset + spread + if d == 1 { scale_length } else { 0.0 });
        }
    }

    let view = LatentView::new(&latents, n, LATENT_DIM)?;
    let graph = all_nearest(&view, 5, Metric::Euclidean, &oddcube_data::NoProgress)?;
    let knn_dist = oddcube_score::lof::knn_distance_scores(&graph, 5)?;
    let lof = oddcube_score::lof::local_outlier_factor(&graph, 5)?;
    // Empirical p-values against the ordinary galaxies (the reference population a real run
    // calibrates on), so the nuclei get small p-values and FDR flags.
    let mut reference: Vec<f64> = recon
        .iter()
        .zip(&kinds)
        .filter(|(_, k)| **k == "normal")
        .map(|(s, _)| *s)
        .collect();
    reference.sort_by(f64::total_cmp);
    let pvalue: Vec<f64> = recon
        .iter()
        .map(|s| {
            let at_least = reference.len() - reference.partition_point(|r| r < s);
            (1 + at_least) as f64 / (1 + reference.len()) as f64
        })
        .collect();
    let bh = oddcube_score::fdr::benjamini_hochberg(&pvalue, 0.2)?;
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| recon[b].total_cmp(&recon[a]));
    let mut rank = vec![0u32; n];
    for (r, &i) in order.iter().enumerate() {
        rank[i] = r as u32 + 1;
    }
    let stored: Vec<usize> = order.iter().copied().take(STORED_RESIDUALS).collect();
    let stored_ids: Vec<String> = stored.iter().map(|&g| plateifus[g].clone()).collect();
    let mut writer = ResidualsWriter::create(dir, &stored_ids, &lines, SIZE)?;
    for (slot, &g) in stored.iter().enumerate() {
        let (x, xhat, w, _) = galaxy_maps(&lines, g, seed, kinds[g] == "seyfert");
        writer.write_galaxy(slot, &x, &xhat, &w)?;
    }
    writer.finish()?;
    let mut catalog = Catalog::default();
    catalog.push("plateifu", Column::Str(plateifus.clone()))?;
    catalog.push(
        "mangaid",
        Column::Str((0..n).map(|i| format!("1-{}", 100_000 + i)).collect()),
    )?;
    catalog.push(
        "ra",
        Column::F64((0..n).map(|i| 120.0 + i as f64 * 0.37).collect()),
    )?;
    catalog.push(
        "dec",
        Column::F64((0..n).map(|i| 20.0 + (i % 17) as f64 * 0.5).collect()),
    )?;
    catalog.push(
        "z",
        Column::F64((0..n).map(|i| 0.02 + (i % 11) as f64 * 0.005).collect()),
    )?;
    catalog.push(
        "ifu_size",
        Column::U32((0..n).map(|i| [19, 37, 61, 91, 127][i % 5]).collect()),
    )?;
    catalog.push("n_good", Column::U32(n_good))?;
    catalog.push("recon", Column::F64(recon))?;
    catalog.push("chi2", Column::F64(chi2))?;
    for (line, column) in lines.iter().zip(shares) {
        catalog.push(&format!("line:{line}"), Column::F64(column))?;
    }
    catalog.push("knn_dist", Column::F64(knn_dist))?;
    catalog.push("lof", Column::F64(lof))?;
    catalog.push("pvalue", Column::F64(pvalue))?;
    catalog.push("qvalue", Column::F64(bh.q_values))?;
    catalog.push("fdr_flag", Column::Bool(bh.discoveries))?;
    catalog.push("rank", Column::U32(rank))?;
    let manifest: ResultsManifest = serde_json::from_value(serde_json::json!({
        "format": oddcube_score::results::RESULTS_FORMAT,
        "oddcube_version": env!("CARGO_PKG_VERSION"),
        "model_dir": "(synthetic)",
        "model_hash": "",
        "dataset_dir": "(synthetic)",
        "dataset_hash": "",
        "lines": lines,
        "size": SIZE,
        "latent_dim": LATENT_DIM,
        "rank_by": "recon",
        "fdr": 0.2,
        "knn_k": 5,
        "n_galaxies": n,
        "residuals": "all",
        "created_by": "oddcube_explore::serve::synthetic",
    }))
    .map_err(|e| {
        oddcube_score::results::invalid(
            &dir.join(oddcube_score::results::MANIFEST_FILE),
            e.to_string(),
        )
    })?;
    Results::write(dir, &manifest, &catalog, &latents)?;
    Ok(plateifus
        .into_iter()
        .zip(kinds.into_iter().map(str::to_string))
        .collect())
}
