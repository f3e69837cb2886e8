//! The PCA reconstruction-error baseline: a linear model the deep autoencoder must beat, scored
//! exactly like it (`recon`, `chi2`, per-line shares) on the same masked cubes: [`PcaModel`]
//! implements [`Autoencoder`], its latents being the k component coefficients.
//!
//! Fitting works on flattened galaxies (`N × L·S·S`, e.g. 10^4 × 19 456) without LAPACK and
//! without ever forming a `d × d` or `N × N` matrix: randomized subspace iteration on `XᵀX`
//! (each pass streams the data once, computing `Xᵀ(X V)` in blocks of 32 galaxies, two GEMMs
//! each; the masked projections' normal matrices are GEMMs too) followed by a Rayleigh–Ritz
//! step solved with a small Jacobi eigen-solver. Masked pixels (w = 0) are first filled with the
//! per-pixel mean over the galaxies where they are observed, then refined EM-style: each pass
//! refills them with the current model's reconstruction from a masked least-squares projection.

use oddcube_data::{Cubes, Progress};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;

use crate::error::{Error, Result, check_len};
use crate::score::{Autoencoder, GalaxyScores, galaxy_scores};

/// Settings for [`PcaModel::fit`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PcaOptions {
    /// Number of principal components kept (k).
    pub components: usize,
    /// Extra search directions carried by the randomized solver (accuracy of the k-th component).
    pub oversample: usize,
    /// Passes of subspace iteration for the first fit from a random start (each streams the
    /// data once).
    pub power_iterations: usize,
    /// EM refinements of the masked pixels after the mean-filled first fit (0 = mean fill only).
    /// Each shrinks the error from mask filling geometrically (about ×3 on test data).
    pub mask_iterations: usize,
    /// Subspace-iteration passes per EM refinement; few are needed because each refinement starts
    /// from the previous subspace.
    pub refit_iterations: usize,
    /// Seed of the random starting subspace (the fit is deterministic given the seed).
    pub seed: u64,
}

impl Default for PcaOptions {
    fn default() -> Self {
        Self {
            components: 16,
            oversample: 10,
            power_iterations: 6,
            mask_iterations: 4,
            refit_iterations: 2,
            seed: 0,
        }
    }
}

/// A fitted PCA model on flattened galaxies of `dim` values.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PcaModel {
    /// Values per galaxy (`L·S·S`).
    pub dim: usize,
    /// Number of components k.
    pub components: usize,
    /// Mean galaxy (masked pixels counted at their filled values), `dim` values.
    pub mean: Vec<f64>,
    /// Orthonormal components stored pixel-major: `loadings[j·k + m]` is component `m` at pixel
    /// `j` (this layout makes the masked projection touch one contiguous k-vector per pixel).
    pub loadings: Vec<f64>,
    /// Variance along each component (eigenvalues of the sample covariance), descending.
    pub explained_variance: Vec<f64>,
    /// Total variance of the (filled) training data, for explained-variance ratios.
    pub total_variance: f64,
}

/// The masked least-squares fit of one galaxy: coefficients minimising
/// `Σ_{w>0} (x − μ − C a)²`, with a tiny ridge so components living only on masked pixels get 0.
const PROJECTION_RIDGE: f64 = 1e-8;

impl PcaModel {
    /// Fits on every galaxy of `cubes` (flattened `L·S·S`), with `w > 0` as the observed mask.
    pub fn fit(cubes: &Cubes, options: &PcaOptions, progress: &dyn Progress) -> Result<PcaModel> {
        Self::fit_matrix(
            &cubes.x,
            &cubes.w,
            cubes.n,
            cubes.galaxy_len(),
            options,
            progress,
        )
    }

    /// Fits on `n` rows of `dim` values (`x`, weights `w`, both row-major `n·dim`).
    ///
    /// Errors on shape mismatch, non-finite observed values, `components` not in `1..n` or above
    /// `dim`, or `power_iterations == 0`.
    pub fn fit_matrix(
        x: &[f32],
        w: &[f32],
        n: usize,
        dim: usize,
        options: &PcaOptions,
        progress: &dyn Progress,
    ) -> Result<PcaModel> {
        validate_matrix(x, w, n, dim)?;
        let k = options.components;
        if k == 0 || k >= n || k > dim {
            return Err(Error::InvalidK {
                k,
                reason: format!(
                    "PCA needs 1 ≤ components < galaxies ({n}) and ≤ values per galaxy ({dim})"
                ),
            });
        }
        for (name, value) in [
            ("power_iterations", options.power_iterations),
            ("refit_iterations", options.refit_iterations),
        ] {
            if value == 0 {
                return Err(Error::InvalidParameter {
                    name: name.to_string(),
                    value: "0".to_string(),
                    reason: "at least one pass over the data is needed".to_string(),
                });
            }
        }
        let width = (k + options.oversample).min(dim).min(n);
        let has_masked = w.iter().any(|&v| !is_usable(v));
        let outer_iterations = if has_masked {
            options.mask_iterations + 1
        } else {
            1
        };
        let passes = |outer: usize| {
            if outer == 0 {
                options.power_iterations
            } else {
                options.refit_iterations
            }
        };
        let total_passes: usize = (0..outer_iterations).map(|o| passes(o) + 1).sum();
        progress.start("PCA fit", total_passes as u64);

        let data = Rows { x, w, dim };
        let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
        let mut basis: Vec<f64> = (0..dim * width)
            .map(|_| rng.sample(StandardNormal))
            .collect();
        orthonormalize(&mut basis, dim, width, &mut rng);
        let mut fill = Fill::PixelMean(observed_pixel_mean(&data, n));
        let mut model = None;
        for outer in 0..outer_iterations {
            let mean = filled_mean(&data, n, &fill);
            progress.advance(1);
            let mut fitted = None;
            let pass_count = passes(outer);
            for pass in 0..pass_count {
                let (product, total_sq) = gram_times(&data, n, &fill, &mean, &basis, width);
                progress.advance(1);
                if pass + 1 == pass_count {
                    fitted = Some(rayleigh_ritz(
                        &basis, &product, dim, width, k, n, total_sq, &mean,
                    ));
                } else {
                    basis = product;
                    orthonormalize(&mut basis, dim, width, &mut rng);
                }
            }
            let Some((fitted_model, ritz_basis)) = fitted else {
                break;
            };
            basis = ritz_basis;
            if has_masked {
                let coefficients = project_all(&fitted_model, &data, n);
                fill = Fill::Model {
                    model: fitted_model.clone(),
                    coefficients,
                };
            }
            model = Some(fitted_model);
        }
        progress.finish();
        model.ok_or_else(|| Error::Empty("PCA fit passes".to_string()))
    }

    /// The k coefficients of one galaxy by masked least squares (pixels with `w > 0` only).
    ///
    /// A galaxy without usable pixels gets zero coefficients (the mean galaxy). Errors on length
    /// mismatch.
    pub fn project(&self, x: &[f32], w: &[f32]) -> Result<Vec<f64>> {
        check_len("galaxy values", x.len(), self.dim)?;
        check_len("galaxy weights", w.len(), self.dim)?;
        Ok(self.project_unchecked(x, w))
    }

    fn project_unchecked(&self, x: &[f32], w: &[f32]) -> Vec<f64> {
        let k = self.components;
        let n_masked = w.iter().filter(|&&v| !is_usable(v)).count();
        let mut rhs = vec![0.0f64; k];
        // CᵀC = I, so the masked normal matrix is I − Σ_masked c cᵀ; summing whichever pixel set is
        // smaller keeps the cost at min(n_masked, n_good)·k².
        let subtract_masked = n_masked * 2 < self.dim;
        let mut summed = Vec::with_capacity(n_masked.min(self.dim - n_masked) * k);
        for (j, (&xj, &wj)) in x.iter().zip(w).enumerate() {
            let c = &self.loadings[j * k..(j + 1) * k];
            let observed = wj > 0.0;
            if observed {
                let r = xj as f64 - self.mean[j];
                for (acc, cm) in rhs.iter_mut().zip(c) {
                    *acc += cm * r;
                }
            }
            if observed != subtract_masked {
                summed.extend_from_slice(c);
            }
        }
        // Σ c cᵀ over the gathered pixels as one GEMM (Gᵀ G, G being their loading rows).
        let rows = summed.len() / k;
        let mut normal = vec![0.0f64; k * k];
        gemm_f64(
            (k, k, rows),
            &mut normal,
            false,
            (&summed, 1, k),
            (&summed, k, 1),
        );
        if subtract_masked {
            normal.iter_mut().for_each(|v| *v = -*v);
            for m in 0..k {
                normal[m * k + m] += 1.0;
            }
        }
        for m in 0..k {
            normal[m * k + m] += PROJECTION_RIDGE;
        }
        cholesky_solve(&mut normal, &mut rhs, k);
        rhs
    }

    /// The model's reconstruction `μ + C a` of a galaxy from its coefficients.
    pub fn reconstruct(&self, coefficients: &[f64]) -> Result<Vec<f64>> {
        check_len("PCA coefficients", coefficients.len(), self.components)?;
        Ok(self.reconstruct_unchecked(coefficients))
    }

    fn reconstruct_unchecked(&self, coefficients: &[f64]) -> Vec<f64> {
        let k = self.components;
        (0..self.dim)
            .map(|j| self.mean[j] + dot_f64(&self.loadings[j * k..(j + 1) * k], coefficients))
            .collect()
    }

    /// Latents (the k masked least-squares coefficients) and reconstructions `μ + C a` of every
    /// galaxy of `cubes`, as `([n, k], [n, L, S, S])` f32 — the [`Autoencoder`] contract, so the
    /// baseline goes through exactly the scoring path of the deep model.
    ///
    /// Errors if the galaxy size differs from the model's. A galaxy without usable pixels gets
    /// zero coefficients (the mean galaxy); its scores are then NaN, as for the autoencoder.
    pub fn encode_reconstruct(&self, cubes: &Cubes) -> Result<(Vec<f32>, Vec<f32>)> {
        check_len("values per galaxy", cubes.galaxy_len(), self.dim)?;
        validate_matrix(&cubes.x, &cubes.w, cubes.n, cubes.galaxy_len())?;
        let per_galaxy: Vec<(Vec<f64>, Vec<f64>)> = (0..cubes.n)
            .into_par_iter()
            .map(|i| {
                let (x, w) = cubes.galaxy(i);
                let coefficients = self.project_unchecked(x, w);
                let fit = self.reconstruct_unchecked(&coefficients);
                (coefficients, fit)
            })
            .collect();
        let mut latents = Vec::with_capacity(cubes.n * self.components);
        let mut reconstructions = Vec::with_capacity(cubes.x.len());
        for (coefficients, fit) in per_galaxy {
            latents.extend(coefficients.iter().map(|&v| v as f32));
            reconstructions.extend(fit.iter().map(|&v| v as f32));
        }
        Ok((latents, reconstructions))
    }

    /// Scores every galaxy of `cubes` with the autoencoder's definitions
    /// ([`crate::score::galaxy_scores`]: `recon`, `chi2`, per-line shares).
    ///
    /// Errors if the galaxy size differs from the model's.
    pub fn score(&self, cubes: &Cubes, progress: &dyn Progress) -> Result<Vec<GalaxyScores>> {
        progress.start("PCA scores", cubes.n as u64);
        let (_, reconstructions) = self.encode_reconstruct(cubes)?;
        let len = cubes.galaxy_len();
        let scores = (0..cubes.n)
            .into_par_iter()
            .map(|i| {
                let (x, w) = cubes.galaxy(i);
                galaxy_scores(
                    x,
                    w,
                    &reconstructions[i * len..(i + 1) * len],
                    cubes.n_lines,
                )
            })
            .collect();
        progress.advance(cubes.n as u64);
        progress.finish();
        Ok(scores)
    }

    /// Fraction of the training variance captured by each component.
    pub fn explained_variance_ratio(&self) -> Vec<f64> {
        let total = self.total_variance.max(f64::MIN_POSITIVE);
        self.explained_variance.iter().map(|v| v / total).collect()
    }
}

/// A pixel counts as observed when its weight is positive (NaN weights are rejected earlier).
#[inline]
fn is_usable(weight: f32) -> bool {
    weight > 0.0
}

impl Autoencoder for PcaModel {
    fn latent_dim(&self) -> usize {
        self.components
    }

    fn encode_reconstruct(
        &self,
        cubes: &Cubes,
    ) -> std::result::Result<(Vec<f32>, Vec<f32>), String> {
        PcaModel::encode_reconstruct(self, cubes).map_err(|e| e.to_string())
    }
}

fn validate_matrix(x: &[f32], w: &[f32], n: usize, dim: usize) -> Result<()> {
    if dim == 0 || n.checked_mul(dim) != Some(x.len()) {
        return Err(Error::Shape {
            what: "PCA input x".to_string(),
            len: x.len(),
            rows: n,
            cols: dim,
        });
    }
    check_len("PCA weights w", w.len(), x.len())?;
    if let Some(index) = x
        .iter()
        .zip(w)
        .position(|(v, wt)| *wt > 0.0 && !v.is_finite())
    {
        return Err(Error::NonFinite {
            what: "PCA input x (usable pixels)".to_string(),
            index,
        });
    }
    if let Some(index) = w.iter().position(|v| v.is_nan() || v.is_infinite()) {
        return Err(Error::NonFinite {
            what: "PCA weights w".to_string(),
            index,
        });
    }
    Ok(())
}

/// Borrowed training matrix.
struct Rows<'a> {
    x: &'a [f32],
    w: &'a [f32],
    dim: usize,
}

/// How masked pixels are filled while fitting.
enum Fill {
    /// Per-pixel mean over galaxies observing that pixel (0 where none does).
    PixelMean(Vec<f64>),
    /// The previous model's reconstruction of each galaxy (coefficients `n·k`).
    Model {
        model: PcaModel,
        coefficients: Vec<f64>,
    },
}

impl Rows<'_> {
    /// Galaxy `i` with masked pixels filled, minus `center`, into `out`.
    fn centered_row(&self, i: usize, fill: &Fill, center: &[f64], out: &mut [f64]) {
        let range = i * self.dim..(i + 1) * self.dim;
        let (x, w) = (&self.x[range.clone()], &self.w[range]);
        for j in 0..self.dim {
            let value = if w[j] > 0.0 {
                x[j] as f64
            } else {
                match fill {
                    Fill::PixelMean(mean) => mean[j],
                    Fill::Model {
                        model,
                        coefficients,
                    } => {
                        let k = model.components;
                        model.mean[j]
                            + dot_f64(
                                &model.loadings[j * k..(j + 1) * k],
                                &coefficients[i * k..(i + 1) * k],
                            )
                    }
                }
            };
            out[j] = value - center[j];
        }
    }
}

fn observed_pixel_mean(data: &Rows<'_>, n: usize) -> Vec<f64> {
    let dim = data.dim;
    let (sum, count) = (0..n)
        .into_par_iter()
        .fold(
            || (vec![0.0f64; dim], vec![0u32; dim]),
            |(mut sum, mut count), i| {
                let range = i * dim..(i + 1) * dim;
                for ((s, c), (&x, &w)) in sum
                    .iter_mut()
                    .zip(count.iter_mut())
                    .zip(data.x[range.clone()].iter().zip(&data.w[range]))
                {
                    if w > 0.0 {
                        *s += x as f64;
                        *c += 1;
                    }
                }
                (sum, count)
            },
        )
        .reduce(
            || (vec![0.0; dim], vec![0; dim]),
            |(mut s1, mut c1), (s2, c2)| {
                s1.iter_mut().zip(&s2).for_each(|(a, b)| *a += b);
                c1.iter_mut().zip(&c2).for_each(|(a, b)| *a += b);
                (s1, c1)
            },
        );
    sum.iter()
        .zip(&count)
        .map(|(s, &c)| if c > 0 { s / c as f64 } else { 0.0 })
        .collect()
}

fn filled_mean(data: &Rows<'_>, n: usize, fill: &Fill) -> Vec<f64> {
    let dim = data.dim;
    let zero = vec![0.0f64; dim];
    let sum = (0..n)
        .into_par_iter()
        .fold(
            || (vec![0.0f64; dim], vec![0.0f64; dim]),
            |(mut sum, mut row), i| {
                data.centered_row(i, fill, &zero, &mut row);
                sum.iter_mut().zip(&row).for_each(|(s, r)| *s += r);
                (sum, row)
            },
        )
        .map(|(sum, _)| sum)
        .reduce(|| vec![0.0; dim], add_vectors);
    sum.into_iter().map(|s| s / n as f64).collect()
}

fn add_vectors(mut a: Vec<f64>, b: Vec<f64>) -> Vec<f64> {
    a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
    a
}

/// One streaming pass: `Xcᵀ Xc V` (`dim × width`, row-major) and `Σ‖row‖²`, where `Xc` is the
/// filled, centred data and `V` = `basis`.
fn gram_times(
    data: &Rows<'_>,
    n: usize,
    fill: &Fill,
    mean: &[f64],
    basis: &[f64],
    width: usize,
) -> (Vec<f64>, f64) {
    let dim = data.dim;
    let blocks = n.div_ceil(GRAM_ROWS);
    // Few large tasks: each owns a dim × width accumulator (MBs), so splitting finer only adds
    // allocation and reduction cost.
    let min_blocks = blocks.div_ceil(4 * rayon::current_num_threads()).max(1);
    struct Acc {
        product: Vec<f64>,
        total_sq: f64,
        rows: Vec<f64>,
        projected: Vec<f64>,
    }
    let fresh = || Acc {
        product: vec![0.0; dim * width],
        total_sq: 0.0,
        rows: vec![0.0; GRAM_ROWS * dim],
        projected: vec![0.0; GRAM_ROWS * width],
    };
    let acc = (0..blocks)
        .into_par_iter()
        .with_min_len(min_blocks)
        .fold(fresh, |mut acc, block| {
            let first = block * GRAM_ROWS;
            let count = GRAM_ROWS.min(n - first);
            for (r, row) in acc.rows.chunks_exact_mut(dim).take(count).enumerate() {
                data.centered_row(first + r, fill, mean, row);
                acc.total_sq += row.iter().map(|v| v * v).sum::<f64>();
            }
            let rows = &acc.rows[..count * dim];
            // projected (count × width) = rows (count × dim) · basis (dim × width)
            gemm_f64(
                (count, width, dim),
                &mut acc.projected,
                false,
                (rows, dim, 1),
                (basis, width, 1),
            );
            // product (dim × width) += rowsᵀ (dim × count) · projected (count × width)
            gemm_f64(
                (dim, width, count),
                &mut acc.product,
                true,
                (rows, 1, dim),
                (&acc.projected, width, 1),
            );
            acc
        })
        .reduce(fresh, |mut a, b| {
            a.product
                .iter_mut()
                .zip(&b.product)
                .for_each(|(x, y)| *x += y);
            a.total_sq += b.total_sq;
            a
        });
    (acc.product, acc.total_sq)
}

/// Galaxies per block of [`gram_times`]: enough rows for the GEMM kernels to run at speed,
/// few enough that a block (rows × 19 456 values in f64) stays a few MB.
const GRAM_ROWS: usize = 32;

/// `dst (m × n, row-major, packed) (+)= lhs (m × k) · rhs (k × n)` on one thread, each operand
/// given as (values, row stride, column stride); `dst` is overwritten unless `accumulate`.
fn gemm_f64(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f64],
    accumulate: bool,
    (lhs, lhs_row, lhs_col): (&[f64], usize, usize),
    (rhs, rhs_row, rhs_col): (&[f64], usize, usize),
) {
    let last = |rows: usize, cols: usize, row: usize, col: usize| {
        (rows.max(1) - 1) * row + (cols.max(1) - 1) * col
    };
    assert!(
        dst.len() >= m * n
            && (m == 0 || k == 0 || last(m, k, lhs_row, lhs_col) < lhs.len())
            && (k == 0 || n == 0 || last(k, n, rhs_row, rhs_col) < rhs.len()),
        "gemm operands out of bounds"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst[..m * n].fill(0.0);
        }
        return;
    }
    // SAFETY: the assertion keeps every index the kernel reads or writes inside the slices, and
    // `dst` is borrowed mutably, so it aliases neither input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_col as isize,
            lhs_row as isize,
            rhs.as_ptr(),
            rhs_col as isize,
            rhs_row as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[inline]
fn dot_f64(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Rayleigh–Ritz on span(V): with `product = XcᵀXc V`, the small matrix `M = Vᵀ product` has the
/// eigenpairs whose lifts `V w` best approximate the top eigenvectors. Returns the model and the
/// rotated basis (a warm start for the next fit).
#[allow(clippy::too_many_arguments)]
fn rayleigh_ritz(
    basis: &[f64],
    product: &[f64],
    dim: usize,
    width: usize,
    k: usize,
    n: usize,
    total_sq: f64,
    mean: &[f64],
) -> (PcaModel, Vec<f64>) {
    let mut small = vec![0.0f64; width * width];
    for j in 0..dim {
        let v = &basis[j * width..(j + 1) * width];
        let p = &product[j * width..(j + 1) * width];
        for a in 0..width {
            for b in 0..width {
                small[a * width + b] += v[a] * p[b];
            }
        }
    }
    // Symmetrise away rounding so Jacobi sees an exactly symmetric matrix.
    for a in 0..width {
        for b in 0..a {
            let s = 0.5 * (small[a * width + b] + small[b * width + a]);
            small[a * width + b] = s;
            small[b * width + a] = s;
        }
    }
    let (eigenvalues, eigenvectors) = symmetric_eigen(small, width);
    let mut rotated = vec![0.0f64; dim * width];
    for j in 0..dim {
        let v = &basis[j * width..(j + 1) * width];
        for c in 0..width {
            rotated[j * width + c] = (0..width).map(|a| v[a] * eigenvectors[a * width + c]).sum();
        }
    }
    let loadings: Vec<f64> = (0..dim)
        .flat_map(|j| rotated[j * width..j * width + k].iter().copied())
        .collect();
    let scale = 1.0 / (n.saturating_sub(1).max(1)) as f64;
    let model = PcaModel {
        dim,
        components: k,
        mean: mean.to_vec(),
        loadings,
        explained_variance: eigenvalues[..k]
            .iter()
            .map(|&l| l.max(0.0) * scale)
            .collect(),
        total_variance: total_sq * scale,
    };
    (model, rotated)
}

/// Masked least-squares coefficients of every training galaxy (`n·k`). A galaxy with no usable
/// pixel gets zeros, i.e. its masked pixels are refilled with the mean.
fn project_all(model: &PcaModel, data: &Rows<'_>, n: usize) -> Vec<f64> {
    let dim = data.dim;
    let per_row: Vec<Vec<f64>> = (0..n)
        .into_par_iter()
        .map(|i| {
            let range = i * dim..(i + 1) * dim;
            model.project_unchecked(&data.x[range.clone()], &data.w[range])
        })
        .collect();
    per_row.into_iter().flatten().collect()
}

/// Modified Gram–Schmidt on the `width` columns of a row-major `rows × width` matrix (two
/// sweeps, which restores orthogonality lost to rounding). A column that collapses — the data has
/// lower rank than `width` — is replaced by a fresh random direction so the basis stays
/// orthonormal.
fn orthonormalize(matrix: &mut [f64], rows: usize, width: usize, rng: &mut ChaCha8Rng) {
    let column_norm = |m: &[f64], c: usize| {
        (0..rows)
            .map(|r| m[r * width + c].powi(2))
            .sum::<f64>()
            .sqrt()
    };
    for c in 0..width {
        for _attempt in 0..4 {
            let original = column_norm(matrix, c);
            for _sweep in 0..2 {
                for prev in 0..c {
                    let overlap: f64 = (0..rows)
                        .map(|r| matrix[r * width + c] * matrix[r * width + prev])
                        .sum();
                    for r in 0..rows {
                        matrix[r * width + c] -= overlap * matrix[r * width + prev];
                    }
                }
            }
            let norm = column_norm(matrix, c);
            if norm > 0.0 && norm > 1e-8 * original {
                for r in 0..rows {
                    matrix[r * width + c] /= norm;
                }
                break;
            }
            for r in 0..rows {
                matrix[r * width + c] = rng.sample(StandardNormal);
            }
        }
    }
}

/// Eigen-decomposition of a symmetric `n × n` row-major matrix by cyclic Jacobi rotations.
/// Returns eigenvalues in descending order and the matching eigenvectors as the columns of a
/// row-major `n × n` matrix. Meant for the small (≤ a few hundred) Ritz problems here.
pub fn symmetric_eigen(mut a: Vec<f64>, n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut v = vec![0.0f64; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    let scale: f64 = a
        .iter()
        .map(|x| x * x)
        .sum::<f64>()
        .sqrt()
        .max(f64::MIN_POSITIVE);
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|p| (0..n).filter(move |&q| q != p).map(move |q| (p, q)))
            .map(|(p, q)| a[p * n + q].powi(2))
            .sum::<f64>()
            .sqrt();
        if off <= 1e-15 * scale {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq.abs() <= 1e-300 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for r in 0..n {
                    let (arp, arq) = (a[r * n + p], a[r * n + q]);
                    a[r * n + p] = c * arp - s * arq;
                    a[r * n + q] = s * arp + c * arq;
                }
                for r in 0..n {
                    let (apr, aqr) = (a[p * n + r], a[q * n + r]);
                    a[p * n + r] = c * apr - s * aqr;
                    a[q * n + r] = s * apr + c * aqr;
                }
                for r in 0..n {
                    let (vrp, vrq) = (v[r * n + p], v[r * n + q]);
                    v[r * n + p] = c * vrp - s * vrq;
                    v[r * n + q] = s * vrp + c * vrq;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&x, &y| a[y * n + y].total_cmp(&a[x * n + x]));
    let values = order.iter().map(|&i| a[i * n + i]).collect();
    let mut vectors = vec![0.0f64; n * n];
    for (new_col, &old_col) in order.iter().enumerate() {
        for r in 0..n {
            vectors[r * n + new_col] = v[r * n + old_col];
        }
    }
    (values, vectors)
}

/// Solves `A x = b` in place (`b` becomes `x`) for symmetric positive-definite `A` (`n × n`,
/// overwritten by its Cholesky factor). A non-positive pivot — impossible with the ridge on a
/// Gram matrix, barring NaN — zeroes that direction instead of failing.
fn cholesky_solve(a: &mut [f64], b: &mut [f64], n: usize) {
    for j in 0..n {
        let mut d = a[j * n + j];
        for p in 0..j {
            d -= a[j * n + p] * a[j * n + p];
        }
        let pivot = if d > 0.0 { d.sqrt() } else { f64::INFINITY };
        a[j * n + j] = pivot;
        for i in j + 1..n {
            let mut s = a[i * n + j];
            for p in 0..j {
                s -= a[i * n + p] * a[j * n + p];
            }
            a[i * n + j] = s / pivot;
        }
    }
    for i in 0..n {
        let mut s = b[i];
        for p in 0..i {
            s -= a[i * n + p] * b[p];
        }
        b[i] = s / a[i * n + i];
    }
    for i in (0..n).rev() {
        let mut s = b[i];
        for p in i + 1..n {
            s -= a[p * n + i] * b[p];
        }
        b[i] = s / a[i * n + i];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oddcube_data::NoProgress;

    /// `n` galaxies of 2 lines × 5×5 pixels lying exactly in a 3-dimensional affine subspace.
    fn subspace_cubes(n: usize, seed: u64) -> Cubes {
        let (lines, size) = (2, 5);
        let dim = lines * size * size;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let basis: Vec<Vec<f64>> = (0..3)
            .map(|_| (0..dim).map(|_| rng.sample(StandardNormal)).collect())
            .collect();
        let offset: Vec<f64> = (0..dim).map(|j| (j as f64 * 0.1).sin() * 3.0).collect();
        let mut cubes = Cubes::zeros(n, lines, size);
        for i in 0..n {
            let coef: Vec<f64> = (0..3)
                .map(|m| rng.sample::<f64, _>(StandardNormal) * (3.0 - m as f64))
                .collect();
            let (x, w) = cubes.galaxy_mut(i);
            for j in 0..dim {
                x[j] = (offset[j] + (0..3).map(|m| coef[m] * basis[m][j]).sum::<f64>()) as f32;
                w[j] = 4.0;
            }
        }
        cubes
    }

    fn recon(scores: &[GalaxyScores]) -> Vec<f64> {
        scores.iter().map(|s| s.recon).collect()
    }

    fn top(scores: &[f64]) -> usize {
        (0..scores.len())
            .max_by(|&a, &b| scores[a].total_cmp(&scores[b]))
            .unwrap()
    }

    #[test]
    fn subspace_data_reconstructs_exactly_and_outlier_stands_out() {
        let mut cubes = subspace_cubes(60, 1);
        let options = PcaOptions {
            components: 3,
            ..PcaOptions::default()
        };
        let model = PcaModel::fit(&cubes, &options, &NoProgress).unwrap();
        let scores = model.score(&cubes, &NoProgress).unwrap();
        assert!(
            recon(&scores).iter().all(|&r| r < 1e-9),
            "{:?}",
            recon(&scores)
        );
        let ratio: f64 = model.explained_variance_ratio().iter().sum();
        assert!((ratio - 1.0).abs() < 1e-6, "{ratio}");
        // Plant an off-subspace galaxy: a bump on a few pixels of line 1.
        let (x, _) = cubes.galaxy_mut(17);
        x[30..34].iter_mut().for_each(|v| *v += 2.0);
        let model = PcaModel::fit(&cubes, &options, &NoProgress).unwrap();
        let scores = model.score(&cubes, &NoProgress).unwrap();
        assert_eq!(top(&recon(&scores)), 17);
        assert_eq!(top(&scores.iter().map(|s| s.chi2).collect::<Vec<_>>()), 17);
        // chi2 = recon × 4 (every weight is 4); the bump in line 1 dominates its line shares.
        assert!((scores[17].chi2 - 4.0 * scores[17].recon).abs() < 1e-9);
        let shares = &scores[17].line_shares;
        assert!((shares[0] + shares[1] - 1.0).abs() < 1e-12);
        assert!(shares[1] > shares[0]);
        // The Autoencoder view: k-dimensional latents and full-size reconstructions.
        let (latents, reconstructions) = model.encode_reconstruct(&cubes).unwrap();
        assert_eq!(
            (latents.len(), reconstructions.len()),
            (60 * 3, cubes.x.len())
        );
        assert_eq!(Autoencoder::latent_dim(&model), 3);
    }

    #[test]
    fn masked_projection_recovers_coefficients_whichever_pixels_are_summed() {
        // A galaxy exactly in the model's span is fitted exactly from any pixels that determine
        // it: with a fifth masked (the normal matrix is I − Σ_masked c cᵀ) and with four fifths
        // masked (Σ_observed c cᵀ), both built by one GEMM.
        let (dim, k) = (400, 5);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut loadings: Vec<f64> = (0..dim * k).map(|_| rng.sample(StandardNormal)).collect();
        orthonormalize(&mut loadings, dim, k, &mut rng);
        let mean: Vec<f64> = (0..dim).map(|j| (j as f64 * 0.1).sin()).collect();
        let model = PcaModel {
            dim,
            components: k,
            mean: mean.clone(),
            loadings: loadings.clone(),
            explained_variance: vec![1.0; k],
            total_variance: k as f64,
        };
        let truth = [2.0, -1.0, 0.5, 3.0, -0.25];
        let x: Vec<f32> = (0..dim)
            .map(|j| (mean[j] + dot_f64(&loadings[j * k..(j + 1) * k], &truth)) as f32)
            .collect();
        for masked_share in [5, 80] {
            let w: Vec<f32> = (0..dim)
                .map(|j| {
                    if j * 100 / dim < masked_share {
                        0.0
                    } else {
                        1.0
                    }
                })
                .collect();
            let fitted = model.project(&x, &w).unwrap();
            for (a, b) in fitted.iter().zip(truth) {
                // f32 data: the fit is exact to the data's rounding.
                assert!((a - b).abs() < 1e-5, "{masked_share} % masked: {fitted:?}");
            }
        }
    }

    #[test]
    fn masked_pixels_are_filled_and_ignored() {
        let mut cubes = subspace_cubes(80, 2);
        // Mask ~20 % of pixels pseudo-randomly and put garbage under the mask.
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for (x, w) in cubes.x.iter_mut().zip(cubes.w.iter_mut()) {
            if rng.random::<f64>() < 0.2 {
                *w = 0.0;
                *x = 1e6;
            }
        }
        let worst_recon = |mask_iterations| {
            let options = PcaOptions {
                components: 3,
                mask_iterations,
                ..PcaOptions::default()
            };
            let model = PcaModel::fit(&cubes, &options, &NoProgress).unwrap();
            let scores = model.score(&cubes, &NoProgress).unwrap();
            (recon(&scores).into_iter().fold(0.0, f64::max), model)
        };
        // Mean filling alone biases the subspace; EM refinement converges to the exact one
        // (measured: worst recon 0.98 → 1.6e-3 after 4 → 3e-10 after 16; data variance ~650).
        let (mean_fill_worst, _) = worst_recon(0);
        let (worst, model) = worst_recon(12);
        assert!(mean_fill_worst > 0.1, "{mean_fill_worst}");
        assert!(worst < 1e-5, "{worst}");
        let (x, w) = cubes.galaxy_mut(5);
        let j = w.iter().position(|&v| v > 0.0).unwrap();
        x[j] += 5.0;
        let scores = model.score(&cubes, &NoProgress).unwrap();
        assert_eq!(top(&recon(&scores)), 5);
    }

    #[test]
    fn randomized_fit_matches_exact_covariance_eigenvalues() {
        // Full-rank noisy data with a decaying spectrum; the exact answer is the eigen-decomposition
        // of the 50 × 50 sample covariance.
        let (n, dim, k) = (120, 50, 5);
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let x: Vec<f32> = (0..n * dim)
            .map(|i| rng.sample::<f32, _>(StandardNormal) * (1.0 + 10.0 / (1.0 + (i % dim) as f32)))
            .collect();
        let w = vec![1.0f32; n * dim];
        let options = PcaOptions {
            components: k,
            ..PcaOptions::default()
        };
        let model = PcaModel::fit_matrix(&x, &w, n, dim, &options, &NoProgress).unwrap();
        let mean: Vec<f64> = (0..dim)
            .map(|j| (0..n).map(|i| x[i * dim + j] as f64).sum::<f64>() / n as f64)
            .collect();
        let mut cov = vec![0.0f64; dim * dim];
        for i in 0..n {
            for a in 0..dim {
                for b in 0..dim {
                    cov[a * dim + b] += (x[i * dim + a] as f64 - mean[a])
                        * (x[i * dim + b] as f64 - mean[b])
                        / (n - 1) as f64;
                }
            }
        }
        let (exact, vectors) = symmetric_eigen(cov, dim);
        // Subspace iteration converges geometrically; 6 passes reach ~4e-6 on the 5th here.
        for m in 0..k {
            let rel = (model.explained_variance[m] - exact[m]).abs() / exact[m];
            assert!(
                rel < 1e-4,
                "component {m}: {} vs {}",
                model.explained_variance[m],
                exact[m]
            );
            // Same direction up to sign.
            let overlap: f64 = (0..dim)
                .map(|j| model.loadings[j * k + m] * vectors[j * dim + m])
                .sum();
            assert!(
                overlap.abs() > 1.0 - 1e-4,
                "component {m}: overlap {overlap}"
            );
        }
        let total: f64 = exact.iter().sum();
        assert!((model.total_variance - total).abs() / total < 1e-9);
    }

    #[test]
    fn jacobi_recovers_known_eigenpairs() {
        let a = vec![4.0, 1.0, 0.0, 1.0, 3.0, 1.0, 0.0, 1.0, 2.0];
        let (values, vectors) = symmetric_eigen(a.clone(), 3);
        // Eigenvalues of this tridiagonal matrix: 3 ± √3 and 3.
        let expected = [3.0 + 3f64.sqrt(), 3.0, 3.0 - 3f64.sqrt()];
        for (v, e) in values.iter().zip(expected) {
            assert!((v - e).abs() < 1e-12, "{values:?}");
        }
        for c in 0..3 {
            for r in 0..3 {
                let av: f64 = (0..3).map(|m| a[r * 3 + m] * vectors[m * 3 + c]).sum();
                assert!((av - values[c] * vectors[r * 3 + c]).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn bad_input_is_an_error() {
        let cubes = subspace_cubes(5, 4);
        let fit = |components| {
            PcaModel::fit(
                &cubes,
                &PcaOptions {
                    components,
                    ..PcaOptions::default()
                },
                &NoProgress,
            )
        };
        assert!(matches!(fit(0), Err(Error::InvalidK { .. })));
        assert!(matches!(fit(5), Err(Error::InvalidK { .. })));
        let model = fit(2).unwrap();
        let mut empty = cubes.clone();
        empty.galaxy_mut(3).1.fill(0.0);
        // No usable pixel: NaN scores, exactly as the autoencoder path reports it.
        let scores = model.score(&empty, &NoProgress).unwrap();
        assert!(scores[3].recon.is_nan() && scores[3].chi2.is_nan());
        assert!(scores[2].recon.is_finite());
        let other = Cubes::zeros(2, 1, 5);
        assert!(model.score(&other, &NoProgress).is_err());
        let mut nan = cubes.clone();
        nan.x[7] = f32::NAN;
        assert!(fit(2).is_ok());
        assert!(
            PcaModel::fit(
                &nan,
                &PcaOptions {
                    components: 2,
                    ..PcaOptions::default()
                },
                &NoProgress
            )
            .is_err()
        );
        assert!(model.project(&[0.0; 3], &[1.0; 3]).is_err());
    }
}
