//! Cost of the PCA reconstruction-error baseline on survey-shaped input: fit and score time for
//! `N` galaxies of 19 lines × 32 × 32 pixels with ~30 % masked pixels. Prints numbers only.
//!
//! Run: `cargo bench -p oddcube-score --bench pca` (`-- --n 4000` to change N; default 1000).

use std::time::Instant;

use oddcube_data::{Cubes, NoProgress};
use oddcube_score::pca::{PcaModel, PcaOptions};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args
        .windows(2)
        .find(|w| w[0] == "--n")
        .and_then(|w| w[1].parse().ok())
        .unwrap_or(1000);
    let (lines, size, rank) = (19, 32, 24);
    let dim = lines * size * size;
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    // Low-rank structure plus noise, and a circular footprint per galaxy (pixels outside masked).
    let basis: Vec<f32> = (0..rank * dim)
        .map(|_| rng.sample(StandardNormal))
        .collect();
    let mut cubes = Cubes::zeros(n, lines, size);
    for i in 0..n {
        let coef: Vec<f32> = (0..rank)
            .map(|m| rng.sample::<f32, _>(StandardNormal) / (1.0 + m as f32))
            .collect();
        let radius = rng.random_range(10.0..16.0f32);
        let (x, w) = cubes.galaxy_mut(i);
        for j in 0..dim {
            let (py, px) = ((j % (size * size)) / size, j % size);
            let r = ((py as f32 - 15.5).powi(2) + (px as f32 - 15.5).powi(2)).sqrt();
            let signal: f32 = (0..rank).map(|m| coef[m] * basis[m * dim + j]).sum();
            x[j] = signal + 0.05 * rng.sample::<f32, _>(StandardNormal);
            w[j] = if r < radius { 400.0 } else { 0.0 };
        }
    }
    let masked = cubes.w.iter().filter(|&&v| v == 0.0).count() as f64 / cubes.w.len() as f64;
    let load = || {
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    println!(
        "N={n} dim={dim} masked={:.0}% threads={} load: {}",
        masked * 100.0,
        rayon::current_num_threads(),
        load()
    );
    for options in [
        PcaOptions {
            components: 16,
            mask_iterations: 0,
            ..PcaOptions::default()
        },
        PcaOptions {
            components: 16,
            ..PcaOptions::default()
        },
    ] {
        let start = Instant::now();
        let model = PcaModel::fit(&cubes, &options, &NoProgress).expect("valid synthetic input");
        let fit_s = start.elapsed().as_secs_f64();
        let start = Instant::now();
        let scores = model
            .score(&cubes, &NoProgress)
            .expect("valid synthetic input");
        let score_s = start.elapsed().as_secs_f64();
        let mean_recon = scores.iter().map(|s| s.recon).sum::<f64>() / n as f64;
        println!(
            "k=16 mask_iterations={}: fit {fit_s:.2} s, score {score_s:.2} s, mean recon {mean_recon:.4e}",
            options.mask_iterations
        );
    }
    println!("load after: {}", load());
}
