//! Latency of exact latent-space search (`oddcube similar`): single-query kNN at 10^4 and 10^6
//! random latents (D = 32, 128; k = 10), median over repeated queries, and the all-points graph
//! at 10^4. Prints numbers; asserts nothing about time.
//!
//! Run: `cargo bench -p oddcube-score --bench knn` (add `-- --quick` to skip the 10^6 cases).

use std::time::Instant;

use oddcube_data::NoProgress;
use oddcube_data::stats::median;
use oddcube_score::knn::{LatentView, Metric, all_nearest, nearest_to};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

const K: usize = 10;
const QUERIES: usize = 25;

fn random_latents(n: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n * dim)
        .map(|_| rng.sample::<f32, _>(StandardNormal))
        .collect()
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
    let sizes: &[usize] = if quick {
        &[10_000]
    } else {
        &[10_000, 1_000_000]
    };
    for &n in sizes {
        for dim in [32, 128] {
            let data = random_latents(n, dim, 42);
            let view = LatentView::new(&data, n, dim).expect("shape is consistent by construction");
            let mut rng = ChaCha8Rng::seed_from_u64(7);
            for metric in [Metric::Euclidean, Metric::Cosine] {
                let mut times = Vec::with_capacity(QUERIES);
                for _ in 0..QUERIES {
                    let q = rng.random_range(0..n);
                    let start = Instant::now();
                    let result = nearest_to(&view, q, K, metric).expect("valid query");
                    times.push(start.elapsed().as_secs_f64() * 1e3);
                    std::hint::black_box(result);
                }
                println!(
                    "single query  n={n:>8} D={dim:>3} k={K} {metric:?}: median {:.3} ms over {QUERIES} queries",
                    median(&times).unwrap_or(f64::NAN)
                );
            }
            if n <= 10_000 {
                for metric in [Metric::Euclidean, Metric::Cosine] {
                    let start = Instant::now();
                    let graph = all_nearest(&view, K, metric, &NoProgress).expect("valid graph");
                    println!(
                        "all points    n={n:>8} D={dim:>3} k={K} {metric:?}: {:.3} s",
                        start.elapsed().as_secs_f64()
                    );
                    std::hint::black_box(graph);
                }
            }
        }
    }
    println!("load average after: {}", load());
}
