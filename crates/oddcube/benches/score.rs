//! Throughput of `oddcube score`: galaxies scored per second with the default CPU model
//! (S = 32, 19 lines, D = 32; random weights — speed does not depend on training), split into
//! the per-galaxy pass (encode + reconstruct + scores + anomaly maps) and the population pass (exact kNN
//! graph, LOF, p-values) at 10^3 and 10^4 galaxies. Prints numbers; asserts nothing about time.
//!
//! Run: `cargo bench -p oddcube --bench score` (add `-- --quick` for a smaller run).

use std::time::Instant;

use oddcube::scorer::ModelScorer;
use oddcube_data::NoProgress;
use oddcube_data::dataset::GalaxyRecord;
use oddcube_model::network::init_params;
use oddcube_model::synthetic::synthetic_cubes;
use oddcube_model::{
    ArchConfig, DataInfo, Model, ModelConfig, ModelKind, Preset, TrainConfig, select_device,
};
use oddcube_score::score::{
    MapSettings, ScoreSettings, finalize_population_scores, score_galaxies,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

fn record(name: &str) -> GalaxyRecord {
    GalaxyRecord {
        plateifu: name.to_string(),
        mangaid: String::new(),
        ra: f64::NAN,
        dec: f64::NAN,
        z: f64::NAN,
        ifu_size: 0,
        grid_size: 0,
        box_size: 0,
        scale: 1.0,
        n_good: 0,
        source: String::new(),
        notes: String::new(),
        psf_fwhm: f64::NAN,
        ..Default::default()
    }
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    println!(
        "threads: {}, load average: {}",
        rayon::current_num_threads(),
        load()
    );
    let device = select_device("cpu").expect("the CPU device always exists");
    let n_lines = 19;
    let arch = ArchConfig::preset(Preset::Cpu, ModelKind::Ae, n_lines);
    let config = ModelConfig {
        version: "bench".to_string(),
        arch: arch.clone(),
        train: TrainConfig::default(),
        data: DataInfo {
            lines: Vec::new(),
            manifest_hash: String::new(),
            n_train: 0,
            n_val: 0,
            stretch: None,
        },
    };
    let varmap = init_params(&arch, 0, &device).expect("parameters of a valid preset");
    let model = Model::from_parts(config, varmap, &device).expect("network of a valid preset");
    let adapter = ModelScorer { model, batch: 32 };

    let n = if quick { 64 } else { 256 };
    let (cubes, names) = synthetic_cubes(n, n_lines, arch.size, 1);
    let galaxies: Vec<GalaxyRecord> = names.iter().map(|n| record(n)).collect();
    let lines: Vec<String> = (0..n_lines).map(|l| format!("L{l}")).collect();
    let rows: Vec<usize> = (0..n).collect();
    // Warm-up: first calls allocate candle's buffers.
    let _ = score_galaxies(
        &adapter,
        &cubes.select(&[0, 1]),
        &galaxies[..2],
        &lines,
        &[0, 1],
        &MapSettings::default(),
        &NoProgress,
    );
    let start = Instant::now();
    let scored = score_galaxies(
        &adapter,
        &cubes,
        &galaxies,
        &lines,
        &rows,
        &MapSettings::default(),
        &NoProgress,
    )
    .expect("scoring works");
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "per-galaxy pass  n={n:>6} S={} L={n_lines} D={}: {seconds:.2} s = {:.1} galaxies/s (encode + reconstruct + scores + anomaly maps)",
        arch.size,
        arch.latent,
        n as f64 / seconds
    );
    std::hint::black_box(&scored);

    let sizes: &[usize] = if quick { &[1_000] } else { &[1_000, 10_000] };
    for &n in sizes {
        let dim = arch.latent;
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let latents: Vec<f32> = (0..n * dim)
            .map(|_| rng.sample::<f32, _>(StandardNormal))
            .collect();
        let mut catalog = scored.catalog.clone();
        let pick: Vec<usize> = (0..n).map(|i| i % scored.catalog.len()).collect();
        catalog = catalog.select_rows(&pick).expect("rows in range");
        let start = Instant::now();
        finalize_population_scores(
            &mut catalog,
            &latents,
            dim,
            &ScoreSettings::default(),
            None,
            None,
            &NoProgress,
        )
        .expect("finalisation works");
        println!(
            "population pass  n={n:>6} D={dim}: {:.3} s (kNN graph k=10, LOF, population null, p/q-values, ranks)",
            start.elapsed().as_secs_f64()
        );
    }
    println!("load average after: {}", load());
}
