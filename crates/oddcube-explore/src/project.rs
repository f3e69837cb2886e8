//! The 2-D latent map (`oddcube project`): UMAP (graph from `umap-rs`, neighbours from `hnsw_rs`
//! or the exact scan, a seeded layout) or PCA, the `projection.csv`/`projection.json` artifact,
//! and placing new galaxies on an existing map without refitting.
//!
//! Determinism: `umap-rs` runs its stochastic gradient descent with an unseeded thread-local
//! generator and Hogwild threads, so two runs never agree. We use it for the deterministic half
//! (the fuzzy simplicial set and the curve parameters a, b) and run the layout optimisation here,
//! single-threaded with a `ChaCha8Rng` seeded from `--seed`: the same latents and seed give the
//! same map bit for bit. The neighbour graph is built by sequential `hnsw_rs` insertion (its
//! level generator has a fixed seed) and parallel, read-only searches, so it is deterministic too.

use std::path::{Path, PathBuf};

use hnsw_rs::anndists::dist::DistL2;
use hnsw_rs::hnsw::Hnsw;
use oddcube_data::Progress;
use oddcube_data::csv::{self, Table};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use oddcube_score::knn::{self, KnnGraph, LatentView, Metric};
use oddcube_score::latents::Latents;
use oddcube_score::results::{Results, write_atomic};
use oddcube_score::{Error, Result};

/// File name of the map coordinates inside a RESULTS directory.
pub const PROJECTION_CSV: &str = "projection.csv";
/// File name of the map's settings inside a RESULTS directory.
pub const PROJECTION_JSON: &str = "projection.json";

/// How the 2-D map is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProjectionMethod {
    /// UMAP on the latent kNN graph, initialised from PCA.
    Umap,
    /// The first two principal components of the latents.
    Pca,
}

impl std::str::FromStr for ProjectionMethod {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "umap" => Ok(ProjectionMethod::Umap),
            "pca" => Ok(ProjectionMethod::Pca),
            other => Err(format!(
                "unknown projection method {other:?} (expected umap or pca)"
            )),
        }
    }
}

impl std::fmt::Display for ProjectionMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProjectionMethod::Umap => "umap",
            ProjectionMethod::Pca => "pca",
        })
    }
}

/// Settings of [`project`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ProjectOptions {
    /// UMAP or PCA.
    pub method: ProjectionMethod,
    /// Seed of the UMAP layout (negative sampling) and of the recall sample.
    pub seed: u64,
    /// Neighbours per galaxy in the UMAP graph, the galaxy itself included (umap-learn's convention).
    pub n_neighbors: usize,
    /// UMAP `min_dist`: how tightly points may pack in the map.
    pub min_dist: f32,
    /// Layout epochs; `None` = umap-learn's default (500 up to 10 000 galaxies, else 200).
    pub n_epochs: Option<usize>,
    /// The neighbour graph comes from the exact scan while `n² · dim` is at most this (the
    /// scan's cost: ~4·10^10 is tens of seconds on two cores), from HNSW above it. At low latent
    /// dimension the exact scan beats HNSW up to surprisingly large maps.
    pub exact_knn_budget: f64,
    /// Galaxies whose HNSW neighbours are checked against the exact scan.
    pub recall_sample: usize,
    /// Below this recall the HNSW search is widened, and if still below, the exact scan is used.
    pub min_recall: f64,
}

impl Default for ProjectOptions {
    fn default() -> Self {
        Self {
            method: ProjectionMethod::Umap,
            seed: 0,
            n_neighbors: 15,
            min_dist: 0.1,
            n_epochs: None,
            exact_knn_budget: 4e10,
            recall_sample: 200,
            min_recall: 0.9,
        }
    }
}

/// How the neighbour graph behind a UMAP map was found.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KnnReport {
    /// `exact` or `hnsw`.
    pub source: String,
    /// Neighbours per galaxy (self excluded).
    pub k: usize,
    /// HNSW recall@k against the exact scan on a sample (absent for the exact scan).
    pub recall: Option<f64>,
    /// HNSW search width used.
    pub ef_search: Option<usize>,
}

/// `projection.json`: what made a map.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ProjectionInfo {
    /// UMAP or PCA.
    pub method: ProjectionMethod,
    /// Seed of the layout.
    pub seed: u64,
    /// Galaxies on the map.
    pub n: usize,
    /// Latent dimension.
    pub latent_dim: usize,
    /// Settings used (UMAP parameters are recorded even for PCA maps, for simplicity).
    pub options: ProjectOptions,
    /// Fraction of latent variance along the two PCA axes (PCA maps and UMAP initialisations).
    pub pca_explained_variance_ratio: [f64; 2],
    /// Neighbour-graph provenance (UMAP only).
    pub knn: Option<KnnReport>,
    /// oddcube version that wrote the map.
    pub oddcube_version: String,
}

/// A 2-D map of galaxies: one `(x, y)` per plate-ifu, in catalogue order.
#[derive(Debug, Clone, PartialEq)]
pub struct Projection {
    /// Plate-ifu of each point.
    pub plateifus: Vec<String>,
    /// Map coordinates, matching `plateifus`.
    pub xy: Vec<[f32; 2]>,
    /// How the map was made.
    pub info: ProjectionInfo,
}

/// Builds the 2-D map of `view`'s rows (labelled by `plateifus`, same order).
///
/// Errors when the lengths disagree, fewer than 3 galaxies are given, or a latent is not finite.
/// UMAP with fewer galaxies than `n_neighbors` shrinks the neighbourhood to `n − 1`.
pub fn project(
    view: &LatentView<'_>,
    plateifus: Vec<String>,
    options: &ProjectOptions,
    progress: &dyn Progress,
) -> Result<Projection> {
    oddcube_score::error::check_len("plate-ifu list", plateifus.len(), view.n())?;
    if view.n() < 3 {
        return Err(Error::InvalidParameter {
            name: "galaxies".to_string(),
            value: view.n().to_string(),
            reason: "a 2-D map needs at least 3 galaxies".to_string(),
        });
    }
    if let Some(index) = view.as_slice().iter().position(|v| !v.is_finite()) {
        // Name the galaxy, not the flat index of one number among N × D.
        let row = index / view.dim().max(1);
        return Err(Error::NonFinite {
            what: format!("the latent vector of {} (row {row})", plateifus[row]),
            index: index % view.dim().max(1),
        });
    }
    let pca = pca_2d(view)?;
    let (xy, knn) = match options.method {
        ProjectionMethod::Pca => (pca.xy.clone(), None),
        ProjectionMethod::Umap => {
            let (xy, report) = umap_layout(view, &pca.xy, options, progress)?;
            (xy, Some(report))
        }
    };
    Ok(Projection {
        plateifus,
        xy,
        info: ProjectionInfo {
            method: options.method,
            seed: options.seed,
            n: view.n(),
            latent_dim: view.dim(),
            options: options.clone(),
            pca_explained_variance_ratio: pca.explained_variance_ratio,
            knn,
            oddcube_version: env!("CARGO_PKG_VERSION").to_string(),
        },
    })
}

/// The first two principal components of a set of vectors.
#[derive(Debug, Clone, PartialEq)]
pub struct Pca2d {
    /// Scores along PC1 and PC2, one pair per row.
    pub xy: Vec<[f32; 2]>,
    /// Fraction of total variance along PC1 and PC2.
    pub explained_variance_ratio: [f64; 2],
}

/// PCA to two dimensions: the `D × D` covariance (D is the latent size, tens to hundreds) and a
/// cyclic Jacobi eigen-solver — no LAPACK. Component signs are fixed so that each axis's largest
/// loading is positive, making the map independent of solver details.
pub fn pca_2d(view: &LatentView<'_>) -> Result<Pca2d> {
    let (n, dim) = (view.n(), view.dim());
    if n == 0 || dim == 0 {
        return Err(Error::Empty("latent matrix".to_string()));
    }
    let mut mean = vec![0f64; dim];
    for row in view.as_slice().chunks_exact(dim) {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += f64::from(v);
        }
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    let covariance = view
        .as_slice()
        .par_chunks(dim * 256)
        .map(|block| {
            let mut c = vec![0f64; dim * dim];
            let mut centred = vec![0f64; dim];
            for row in block.chunks_exact(dim) {
                for ((c, &v), m) in centred.iter_mut().zip(row).zip(&mean) {
                    *c = f64::from(v) - m;
                }
                for a in 0..dim {
                    let ca = centred[a];
                    for b in a..dim {
                        c[a * dim + b] += ca * centred[b];
                    }
                }
            }
            c
        })
        .reduce(
            || vec![0f64; dim * dim],
            |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
                a
            },
        );
    let mut sym = covariance;
    for a in 0..dim {
        for b in 0..a {
            sym[a * dim + b] = sym[b * dim + a];
        }
    }
    let (values, vectors) = oddcube_score::pca::symmetric_eigen(sym, dim);
    let mut order: Vec<usize> = (0..dim).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
    let total: f64 = values.iter().map(|v| v.max(0.0)).sum();
    let mut axes = [vec![0f64; dim], vec![0f64; dim]];
    let mut ratio = [0f64; 2];
    for (slot, axis) in axes.iter_mut().enumerate() {
        let Some(&column) = order.get(slot) else {
            break;
        };
        for (row, value) in axis.iter_mut().enumerate() {
            *value = vectors[row * dim + column];
        }
        let largest = axis
            .iter()
            .copied()
            .fold(0f64, |acc, v| if v.abs() > acc.abs() { v } else { acc });
        if largest < 0.0 {
            axis.iter_mut().for_each(|v| *v = -*v);
        }
        ratio[slot] = if total > 0.0 {
            values[column].max(0.0) / total
        } else {
            0.0
        };
    }
    let xy = view
        .as_slice()
        .par_chunks_exact(dim)
        .map(|row| {
            let mut out = [0f32; 2];
            for (o, axis) in out.iter_mut().zip(&axes) {
                let s: f64 = row
                    .iter()
                    .zip(axis)
                    .zip(&mean)
                    .map(|((&v, a), m)| (f64::from(v) - m) * a)
                    .sum();
                *o = s as f32;
            }
            out
        })
        .collect();
    Ok(Pca2d {
        xy,
        explained_variance_ratio: ratio,
    })
}

/// The neighbour graph UMAP needs (`k` neighbours, self excluded): the exact scan for small
/// maps (`n² · dim` within `options.exact_knn_budget`), HNSW above, with its recall measured on a seeded sample of
/// galaxies against the exact scan; a low recall widens the search, then falls back to exact.
pub fn knn_for_map(
    view: &LatentView<'_>,
    k: usize,
    options: &ProjectOptions,
    progress: &dyn Progress,
) -> Result<(KnnGraph, KnnReport)> {
    let exact = |progress: &dyn Progress| knn::all_nearest(view, k, Metric::Euclidean, progress);
    if (view.n() as f64).powi(2) * view.dim() as f64 <= options.exact_knn_budget {
        let graph = exact(progress)?;
        return Ok((
            graph,
            KnnReport {
                source: "exact".to_string(),
                k,
                recall: None,
                ef_search: None,
            },
        ));
    }
    let (n, dim) = (view.n(), view.dim());
    progress.start("HNSW index", n as u64);
    let (max_connections, ef_construction) = (16, 100);
    let hnsw = Hnsw::<f32, DistL2>::new(max_connections, n, 16, ef_construction, DistL2 {});
    for (i, row) in view.as_slice().chunks_exact(dim).enumerate() {
        hnsw.insert_slice((row, i));
        if i % 1024 == 1023 {
            progress.advance(1024);
        }
    }
    progress.finish();
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed ^ 0x6b6e_6e5f_7265_6361);
    let sample: Vec<usize> = (0..options.recall_sample.min(n))
        .map(|_| rng.random_range(0..n))
        .collect();
    let truth: Vec<Vec<usize>> = sample
        .par_iter()
        .map(|&i| {
            let row = view.row(i).unwrap_or(&[]);
            knn::nearest(view, row, k, Metric::Euclidean, Some(i))
                .map(|r| r.iter().map(|nb| nb.index).collect())
        })
        .collect::<Result<_>>()?;
    let search = |i: usize, ef: usize| -> Vec<(usize, f32)> {
        let row = view.row(i).unwrap_or(&[]);
        let mut found: Vec<(usize, f32)> = hnsw
            .search(row, k + 1, ef)
            .into_iter()
            .filter(|nb| nb.d_id != i)
            .map(|nb| (nb.d_id, nb.distance))
            .collect();
        found.truncate(k);
        found
    };
    let recall_at = |ef: usize| -> f64 {
        let hits: usize = sample
            .par_iter()
            .zip(&truth)
            .map(|(&i, want)| {
                search(i, ef)
                    .iter()
                    .filter(|(j, _)| want.contains(j))
                    .count()
            })
            .sum();
        hits as f64 / (sample.len() * k).max(1) as f64
    };
    let mut ef = (4 * k).max(64);
    let mut recall = recall_at(ef);
    if recall < options.min_recall {
        ef *= 4;
        recall = recall_at(ef);
    }
    if recall < options.min_recall {
        progress.message(&format!(
            "HNSW recall {recall:.3} < {:.2} even at ef = {ef}: using the exact scan",
            options.min_recall
        ));
        let graph = exact(progress)?;
        return Ok((
            graph,
            KnnReport {
                source: "exact (hnsw recall too low)".to_string(),
                k,
                recall: Some(recall),
                ef_search: Some(ef),
            },
        ));
    }
    progress.start("HNSW search", n as u64);
    let rows: Vec<Vec<(usize, f32)>> = (0..n)
        .into_par_iter()
        .map(|i| {
            let found = search(i, ef);
            if i % 1024 == 0 {
                progress.advance(1024.min((n - i) as u64));
            }
            found
        })
        .collect();
    progress.finish();
    let mut indices = Vec::with_capacity(n * k);
    let mut distances = Vec::with_capacity(n * k);
    for (i, row) in rows.into_iter().enumerate() {
        // HNSW may return fewer than k; pad with the farthest found so the shape stays [n, k]
        // (a repeated neighbour only slightly overweights one edge).
        let last = row.last().copied().unwrap_or((i, f32::INFINITY));
        for slot in 0..k {
            let (j, d) = row.get(slot).copied().unwrap_or(last);
            indices.push(j);
            distances.push(d);
        }
    }
    Ok((
        KnnGraph {
            n,
            k,
            metric: Metric::Euclidean,
            indices,
            distances,
        },
        KnnReport {
            source: "hnsw".to_string(),
            k,
            recall: Some(recall),
            ef_search: Some(ef),
        },
    ))
}

/// UMAP: neighbour graph → fuzzy simplicial set (umap-rs) → seeded SGD layout from the PCA
/// initialisation scaled to ±10 (umap-learn's convention).
fn umap_layout(
    view: &LatentView<'_>,
    pca: &[[f32; 2]],
    options: &ProjectOptions,
    progress: &dyn Progress,
) -> Result<(Vec<[f32; 2]>, KnnReport)> {
    let n = view.n();
    if !(2..=1000).contains(&options.n_neighbors) {
        return Err(Error::InvalidParameter {
            name: "n_neighbors".to_string(),
            value: options.n_neighbors.to_string(),
            reason: "must be between 2 and 1000".to_string(),
        });
    }
    if !(options.min_dist >= 0.0 && options.min_dist <= 1.0) {
        return Err(Error::InvalidParameter {
            name: "min_dist".to_string(),
            value: options.min_dist.to_string(),
            reason: "must be in [0, 1]".to_string(),
        });
    }
    let n_neighbors = options.n_neighbors.min(n - 1);
    let (graph, report) = knn_for_map(view, n_neighbors - 1, options, progress)?;
    // umap-learn's kNN convention: column 0 is the point itself at distance 0.
    let mut knn_indices = ndarray::Array2::<u32>::zeros((n, n_neighbors));
    let mut knn_dists = ndarray::Array2::<f32>::zeros((n, n_neighbors));
    for i in 0..n {
        knn_indices[(i, 0)] = i as u32;
        for (slot, (&j, &d)) in graph
            .neighbours(i)
            .iter()
            .zip(graph.neighbour_distances(i))
            .enumerate()
        {
            knn_indices[(i, slot + 1)] = j as u32;
            knn_dists[(i, slot + 1)] = d;
        }
    }
    let data = ndarray::ArrayView2::from_shape((n, view.dim()), view.as_slice()).map_err(|e| {
        Error::Shape {
            what: format!("latents ({e})"),
            len: view.as_slice().len(),
            rows: n,
            cols: view.dim(),
        }
    })?;
    let config = umap_rs::UmapConfig {
        n_components: 2,
        graph: umap_rs::GraphParams {
            n_neighbors,
            ..Default::default()
        },
        manifold: umap_rs::ManifoldParams {
            min_dist: options.min_dist,
            ..Default::default()
        },
        ..Default::default()
    };
    progress.start("UMAP graph", 1);
    let manifold =
        umap_rs::Umap::new(config).learn_manifold(data, knn_indices.view(), knn_dists.view());
    progress.advance(1);
    progress.finish();
    let (a, b) = manifold.curve_params();
    let mut edges: Vec<(u32, u32, f32)> = manifold
        .graph()
        .iter()
        .map(|(&w, (i, j))| (i, j, w))
        .collect();
    edges.sort_by_key(|&(i, j, _)| (i, j));
    let n_epochs = options
        .n_epochs
        .unwrap_or(if n <= 10_000 { 500 } else { 200 });
    let mut xy = scaled_init(pca);
    optimise_layout(&mut xy, &edges, a, b, n_epochs, options.seed, progress);
    Ok((xy, report))
}

/// PCA scores rescaled so the largest coordinate is 10 (umap-learn's spectral/PCA init scale).
fn scaled_init(pca: &[[f32; 2]]) -> Vec<[f32; 2]> {
    let largest = pca
        .iter()
        .flat_map(|p| p.iter())
        .fold(0f32, |m, v| m.max(v.abs()));
    let scale = if largest > 0.0 { 10.0 / largest } else { 1.0 };
    pca.iter().map(|p| [p[0] * scale, p[1] * scale]).collect()
}

/// UMAP's stochastic gradient descent (umap-learn `optimize_layout_euclidean`, move_other =
/// true, 5 negative samples per positive, gradients clipped to ±4, linearly decaying rate),
/// single-threaded with a seeded generator so the map is reproducible.
fn optimise_layout(
    xy: &mut [[f32; 2]],
    edges: &[(u32, u32, f32)],
    a: f32,
    b: f32,
    n_epochs: usize,
    seed: u64,
    progress: &dyn Progress,
) {
    const NEGATIVE_SAMPLE_RATE: f64 = 5.0;
    const GAMMA: f32 = 1.0;
    const INITIAL_ALPHA: f32 = 1.0;
    let n = xy.len();
    let max_weight = edges.iter().map(|e| e.2).fold(0f32, f32::max);
    if n_epochs == 0 || max_weight <= 0.0 || n < 2 {
        return;
    }
    // umap-learn drops edges too weak to be sampled once in the whole run.
    let edges: Vec<&(u32, u32, f32)> = edges
        .iter()
        .filter(|e| e.2 >= max_weight / n_epochs as f32)
        .collect();
    let epochs_per_sample: Vec<f64> = edges
        .iter()
        .map(|e| n_epochs as f64 / (n_epochs as f64 * f64::from(e.2 / max_weight)))
        .collect();
    let epochs_per_negative: Vec<f64> = epochs_per_sample
        .iter()
        .map(|e| e / NEGATIVE_SAMPLE_RATE)
        .collect();
    let mut next_sample = epochs_per_sample.clone();
    let mut next_negative = epochs_per_negative.clone();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let clip = |v: f32| v.clamp(-4.0, 4.0);
    progress.start("UMAP layout", n_epochs as u64);
    for epoch in 0..n_epochs {
        let alpha = INITIAL_ALPHA * (1.0 - epoch as f32 / n_epochs as f32);
        let now = epoch as f64;
        for (e, edge) in edges.iter().enumerate() {
            if next_sample[e] > now {
                continue;
            }
            let (j, k) = (edge.0 as usize, edge.1 as usize);
            let (Some(&head), Some(&tail)) = (xy.get(j), xy.get(k)) else {
                continue;
            };
            let diff = [head[0] - tail[0], head[1] - tail[1]];
            let dist_sq = diff[0] * diff[0] + diff[1] * diff[1];
            let coeff = if dist_sq > 0.0 {
                let pow_b = dist_sq.powf(b);
                -2.0 * a * b * pow_b / dist_sq / (a * pow_b + 1.0)
            } else {
                0.0
            };
            for d in 0..2 {
                let grad = clip(coeff * diff[d]) * alpha;
                xy[j][d] += grad;
                xy[k][d] -= grad;
            }
            next_sample[e] += epochs_per_sample[e];
            let n_negative = ((now - next_negative[e]) / epochs_per_negative[e]).max(0.0) as usize;
            for _ in 0..n_negative {
                let other = rng.random_range(0..n);
                if other == j {
                    continue;
                }
                let head = xy[j];
                let tail = xy[other];
                let diff = [head[0] - tail[0], head[1] - tail[1]];
                let dist_sq = diff[0] * diff[0] + diff[1] * diff[1];
                for d in 0..2 {
                    let grad = if dist_sq > 0.0 {
                        clip(
                            2.0 * GAMMA * b / ((0.001 + dist_sq) * (a * dist_sq.powf(b) + 1.0))
                                * diff[d],
                        )
                    } else {
                        4.0
                    };
                    xy[j][d] += grad * alpha;
                }
            }
            next_negative[e] += n_negative as f64 * epochs_per_negative[e];
        }
        progress.advance(1);
    }
    progress.finish();
}

/// Places new galaxies on an existing map without refitting: each goes to the inverse-distance
/// weighted mean position of its `k` nearest mapped galaxies in latent space (exactly onto a
/// mapped galaxy it coincides with). `map_latents` must be the latents the map was made from, in
/// map order.
pub fn place(
    map_latents: &LatentView<'_>,
    map_xy: &[[f32; 2]],
    new: &LatentView<'_>,
    k: usize,
) -> Result<Vec<[f32; 2]>> {
    oddcube_score::error::check_len("map coordinates", map_xy.len(), map_latents.n())?;
    oddcube_score::error::check_len(
        "latent dimension of the new galaxies",
        new.dim(),
        map_latents.dim(),
    )?;
    let k = k.min(map_latents.n());
    (0..new.n())
        .into_par_iter()
        .map(|i| {
            let row = new.row(i).unwrap_or(&[]);
            let neighbours = knn::nearest(map_latents, row, k, Metric::Euclidean, None)?;
            if let Some(first) = neighbours.first().filter(|nb| nb.distance == 0.0) {
                return Ok(map_xy[first.index]);
            }
            let mut sum = [0f64; 2];
            let mut total = 0f64;
            for nb in &neighbours {
                let weight = 1.0 / f64::from(nb.distance).max(1e-12);
                let p = map_xy[nb.index];
                sum[0] += weight * f64::from(p[0]);
                sum[1] += weight * f64::from(p[1]);
                total += weight;
            }
            Ok([(sum[0] / total) as f32, (sum[1] / total) as f32])
        })
        .collect()
}

/// The columns of `projection.csv`, in order.
const COLUMNS: [&str; 3] = ["plateifu", "x", "y"];

fn malformed(path: &Path, reason: impl Into<String>) -> Error {
    oddcube_score::results::invalid(path, reason)
}

impl Projection {
    /// Writes `projection.csv` (plateifu,x,y) and `projection.json` into `dir`, atomically.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let mut csv = String::with_capacity(self.xy.len() * 32 + 16);
        csv.push_str(&csv::record(COLUMNS));
        for (plateifu, p) in self.plateifus.iter().zip(&self.xy) {
            csv.push_str(&csv::record([
                plateifu.as_str(),
                &p[0].to_string(),
                &p[1].to_string(),
            ]));
        }
        write_atomic(&dir.join(PROJECTION_CSV), csv.as_bytes())?;
        let json = serde_json::to_vec_pretty(&self.info)
            .map_err(|e| malformed(&dir.join(PROJECTION_JSON), e.to_string()))?;
        write_atomic(&dir.join(PROJECTION_JSON), &json)
    }

    /// Reads a map written by [`Projection::write`]; `Ok(None)` when `dir` has none.
    pub fn read(dir: &Path) -> Result<Option<Projection>> {
        let csv_path: PathBuf = dir.join(PROJECTION_CSV);
        let json_path = dir.join(PROJECTION_JSON);
        if !csv_path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&csv_path).map_err(|source| Error::Io {
            path: csv_path.clone(),
            source,
        })?;
        let json = std::fs::read(&json_path).map_err(|source| Error::Io {
            path: json_path.clone(),
            source,
        })?;
        let info: ProjectionInfo =
            serde_json::from_slice(&json).map_err(|e| malformed(&json_path, e.to_string()))?;
        let table = Table::parse(&text).map_err(|reason| malformed(&csv_path, reason))?;
        table
            .expect_columns(&COLUMNS)
            .map_err(|reason| malformed(&csv_path, reason))?;
        let mut plateifus = Vec::with_capacity(table.records.len());
        let mut xy = Vec::with_capacity(table.records.len());
        for record in &table.records {
            let parsed = match record.fields.as_slice() {
                [p, x, y] => x
                    .parse::<f32>()
                    .ok()
                    .zip(y.parse::<f32>().ok())
                    .map(|c| (p.clone(), c)),
                _ => None,
            };
            let Some((plateifu, (x, y))) = parsed else {
                return Err(malformed(
                    &csv_path,
                    format!("line {}: expected plateifu,x,y with numbers", record.line),
                ));
            };
            plateifus.push(plateifu);
            xy.push([x, y]);
        }
        Ok(Some(Projection {
            plateifus,
            xy,
            info,
        }))
    }
}

/// The latent map of the RESULTS directory `dir`: fitted with `options`, written into it as
/// `projection.csv` / `projection.json`, and returned.
pub fn project_results(
    dir: &Path,
    options: &ProjectOptions,
    progress: &dyn Progress,
) -> Result<Projection> {
    let results = Results::open(dir)?;
    let view = LatentView::new(&results.latents, results.catalog.len(), results.latent_dim)?;
    let plateifus = results
        .catalog
        .str("plateifu")
        .ok_or_else(|| malformed(dir, "the catalogue has no plateifu column"))?
        .to_vec();
    let map = project(&view, plateifus, options, progress)?;
    map.write(dir)?;
    Ok(map)
}

/// New galaxies placed on the existing map of a RESULTS directory by [`place_on_results`].
#[derive(Debug, Clone, PartialEq)]
pub struct Placed {
    /// One id per new galaxy.
    pub ids: Vec<String>,
    /// Their map positions.
    pub xy: Vec<[f32; 2]>,
    /// How the map was made.
    pub method: ProjectionMethod,
}

impl Placed {
    /// The positions as CSV (`id,x,y`).
    pub fn to_csv(&self) -> String {
        let mut text = csv::record(["id", "x", "y"]);
        for (id, p) in self.ids.iter().zip(&self.xy) {
            text.push_str(&csv::record([
                id.as_str(),
                &p[0].to_string(),
                &p[1].to_string(),
            ]));
        }
        text
    }
}

/// Places the galaxies of the latents file `new` (`[M, D]` f32 .npy) on the existing map of the
/// RESULTS directory `dir` without refitting it (see [`place`]). `ids` is a text file with one id
/// per line (blank lines ignored); without it the galaxies are `new-0`, `new-1`, ...
///
/// Errors when `dir` has no map yet, the map does not list the catalogue's galaxies in order,
/// or the ids and vectors differ in number.
pub fn place_on_results(dir: &Path, new: &Path, ids: Option<&Path>, k: usize) -> Result<Placed> {
    let results = Results::open(dir)?;
    let view = LatentView::new(&results.latents, results.catalog.len(), results.latent_dim)?;
    let map = Projection::read(dir)?.ok_or_else(|| {
        malformed(
            dir,
            format!(
                "no projection.csv yet: run `oddcube project {}` first",
                dir.display()
            ),
        )
    })?;
    let plateifus = results
        .catalog
        .str("plateifu")
        .ok_or_else(|| malformed(dir, "the catalogue has no plateifu column"))?;
    if map.plateifus.as_slice() != plateifus {
        return Err(malformed(
            dir,
            "projection.csv does not list the catalogue's galaxies in order; re-run `oddcube project`",
        ));
    }
    let new_latents = Latents::read(new)?;
    let ids: Vec<String> = match ids {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|source| Error::Io {
                path: path.to_path_buf(),
                source,
            })?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect(),
        None => (0..new_latents.n()).map(|i| format!("new-{i}")).collect(),
    };
    oddcube_score::error::check_len("ids of the new galaxies", ids.len(), new_latents.n())?;
    let dim = new_latents.dim().max(1);
    if let Some(index) = new_latents.as_slice().iter().position(|v| !v.is_finite()) {
        // A NaN vector has no nearest neighbours: it would be placed at NaN.
        return Err(malformed(
            new,
            format!(
                "the latent vector of {} has a non-finite value in dimension {}",
                ids[index / dim],
                index % dim
            ),
        ));
    }
    let xy = place(&view, &map.xy, &new_latents.view(), k)?;
    Ok(Placed {
        ids,
        xy,
        method: map.info.method,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use oddcube_data::NoProgress;
    use rand_distr::{Distribution, StandardNormal};

    /// `clusters` Gaussian blobs of `per` points in `dim` dimensions, centres 10 apart.
    fn blobs(clusters: usize, per: usize, dim: usize, seed: u64) -> (Vec<f32>, Vec<usize>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut data = Vec::new();
        let mut label = Vec::new();
        for c in 0..clusters {
            for _ in 0..per {
                for d in 0..dim {
                    let centre = if d == c { 10.0 } else { 0.0 };
                    let noise: f32 = StandardNormal.sample(&mut rng);
                    data.push(centre + noise * 0.5);
                }
                label.push(c);
            }
        }
        (data, label)
    }

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("1-{i}")).collect()
    }

    #[test]
    fn pca_finds_the_dominant_axis() {
        // Points along (1, 1, 0) with small noise in the other directions.
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut data = Vec::new();
        for _ in 0..200 {
            let t: f32 = StandardNormal.sample(&mut rng);
            let e: f32 = StandardNormal.sample(&mut rng);
            data.extend_from_slice(&[3.0 * t + 0.01 * e, 3.0 * t, 0.05 * e]);
        }
        let view = LatentView::new(&data, 200, 3).unwrap();
        let pca = pca_2d(&view).unwrap();
        assert!(
            pca.explained_variance_ratio[0] > 0.99,
            "{:?}",
            pca.explained_variance_ratio
        );
        // PC1 score = (x + y)/sqrt(2) up to sign, fixed positive by the sign rule.
        for (p, row) in pca.xy.iter().zip(data.chunks_exact(3)) {
            let expected = (row[0] + row[1]) / 2f32.sqrt();
            let mean_shift = p[0] - expected;
            assert!(mean_shift.abs() < 0.5, "{p:?} vs {expected}");
        }
    }

    #[test]
    fn jacobi_matches_a_known_spectrum() {
        let (values, vectors) = oddcube_score::pca::symmetric_eigen(vec![2.0, 1.0, 1.0, 2.0], 2);
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        assert!((sorted[0] - 1.0).abs() < 1e-12 && (sorted[1] - 3.0).abs() < 1e-12);
        let top = if values[0] > values[1] { 0 } else { 1 };
        assert!((vectors[top].abs() - 0.5f64.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn umap_is_deterministic_and_separates_clusters() {
        let (data, label) = blobs(3, 60, 8, 7);
        let view = LatentView::new(&data, 180, 8).unwrap();
        let options = ProjectOptions {
            seed: 3,
            n_epochs: Some(150),
            ..Default::default()
        };
        let a = project(&view, names(180), &options, &NoProgress).unwrap();
        let b = project(&view, names(180), &options, &NoProgress).unwrap();
        assert_eq!(a.xy, b.xy, "same seed, same map");
        let c = project(
            &view,
            names(180),
            &ProjectOptions {
                seed: 4,
                ..options.clone()
            },
            &NoProgress,
        )
        .unwrap();
        assert_ne!(a.xy, c.xy, "the seed matters");
        // Every point's nearest map neighbour belongs to its own cluster.
        let mut agree = 0;
        for i in 0..180 {
            let nearest = (0..180)
                .filter(|&j| j != i)
                .min_by(|&p, &q| {
                    let d = |j: usize| {
                        (a.xy[i][0] - a.xy[j][0]).powi(2) + (a.xy[i][1] - a.xy[j][1]).powi(2)
                    };
                    d(p).total_cmp(&d(q))
                })
                .unwrap();
            agree += usize::from(label[nearest] == label[i]);
        }
        assert!(
            agree >= 175,
            "{agree}/180 map neighbours in the same cluster"
        );
        assert!(a.xy.iter().all(|p| p[0].is_finite() && p[1].is_finite()));
    }

    #[test]
    fn hnsw_graph_has_high_recall_and_matches_the_exact_scan_closely() {
        let (data, _) = blobs(4, 150, 6, 11);
        let view = LatentView::new(&data, 600, 6).unwrap();
        let options = ProjectOptions {
            exact_knn_budget: 0.0,
            ..Default::default()
        };
        let (graph, report) = knn_for_map(&view, 10, &options, &NoProgress).unwrap();
        assert_eq!(report.source, "hnsw");
        assert!(report.recall.unwrap() >= 0.9, "{report:?}");
        let exact = knn::all_nearest(&view, 10, Metric::Euclidean, &NoProgress).unwrap();
        let hits: usize = (0..600)
            .map(|i| {
                graph
                    .neighbours(i)
                    .iter()
                    .filter(|j| exact.neighbours(i).contains(j))
                    .count()
            })
            .sum();
        assert!(hits as f64 / 6000.0 >= 0.9);
        assert!(
            (0..600).all(|i| !graph.neighbours(i).contains(&i)),
            "self is excluded"
        );
    }

    #[test]
    fn placing_mapped_galaxies_returns_their_own_position_and_new_ones_land_in_their_cluster() {
        let (data, label) = blobs(2, 50, 4, 5);
        let view = LatentView::new(&data, 100, 4).unwrap();
        let map = project(
            &view,
            names(100),
            &ProjectOptions {
                method: ProjectionMethod::Pca,
                ..Default::default()
            },
            &NoProgress,
        )
        .unwrap();
        let placed = place(&view, &map.xy, &view, 5).unwrap();
        assert_eq!(placed, map.xy);
        // A new point near cluster 1's centre lands among cluster-1 points.
        let new = [0.0f32, 10.0, 0.1, 0.0];
        let new_view = LatentView::new(&new, 1, 4).unwrap();
        let p = place(&view, &map.xy, &new_view, 5).unwrap()[0];
        let centre = |c: usize| {
            let pts: Vec<_> = (0..100)
                .filter(|&i| label[i] == c)
                .map(|i| map.xy[i])
                .collect();
            let m = pts.len() as f32;
            [
                pts.iter().map(|p| p[0]).sum::<f32>() / m,
                pts.iter().map(|p| p[1]).sum::<f32>() / m,
            ]
        };
        let d = |c: [f32; 2]| (p[0] - c[0]).powi(2) + (p[1] - c[1]).powi(2);
        assert!(d(centre(1)) < d(centre(0)));
        let wrong = LatentView::new(&new[..3], 1, 3).unwrap();
        assert!(place(&view, &map.xy, &wrong, 5).is_err());
    }

    #[test]
    fn projection_files_round_trip_and_bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let (data, _) = blobs(2, 10, 3, 2);
        let view = LatentView::new(&data, 20, 3).unwrap();
        let map = project(
            &view,
            names(20),
            &ProjectOptions {
                method: ProjectionMethod::Pca,
                ..Default::default()
            },
            &NoProgress,
        )
        .unwrap();
        assert!(Projection::read(dir.path()).unwrap().is_none());
        map.write(dir.path()).unwrap();
        let back = Projection::read(dir.path()).unwrap().unwrap();
        assert_eq!(
            (&back.plateifus, &back.xy),
            (&map.plateifus, &map.xy),
            "coordinates round-trip exactly"
        );
        assert_eq!(back.info.options, map.info.options);
        // serde_json may change the last digit of an f64.
        let ratio_error = (back.info.pca_explained_variance_ratio[0]
            - map.info.pca_explained_variance_ratio[0])
            .abs();
        assert!(ratio_error < 1e-12);
        std::fs::write(dir.path().join(PROJECTION_CSV), "plateifu,x,y\n1-1,abc,2\n").unwrap();
        let err = Projection::read(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("projection.csv") && err.contains("line 2"),
            "{err}"
        );
    }

    #[test]
    fn too_few_galaxies_is_an_error_not_a_panic() {
        let data = [0.0f32, 1.0, 2.0, 3.0];
        let view = LatentView::new(&data, 2, 2).unwrap();
        assert!(project(&view, names(2), &ProjectOptions::default(), &NoProgress).is_err());
        let data = [0.0f32, 1.0, 2.0, 3.0, 4.0, 6.0];
        let view = LatentView::new(&data, 3, 2).unwrap();
        let map = project(&view, names(3), &ProjectOptions::default(), &NoProgress).unwrap();
        assert_eq!(map.xy.len(), 3);
        // A NaN in the third galaxy's second dimension is reported as that galaxy's.
        let data = [0.0f32, 1.0, 2.0, 3.0, 4.0, f32::NAN];
        let view = LatentView::new(&data, 3, 2).unwrap();
        let err = project(&view, names(3), &ProjectOptions::default(), &NoProgress)
            .unwrap_err()
            .to_string();
        let third = &names(3)[2];
        assert!(
            err.contains(&format!("latent vector of {third} (row 2)")) && err.contains("index 1"),
            "{err}"
        );
    }
}
