//! Preprocessing of one galaxy's line maps to the fixed S×S grid the model reads: good-pixel
//! selection, centring on the galaxy, cropping to the IFU footprint, flux-conserving
//! resampling with IVAR propagation, one normalisation scale per galaxy, and an optional
//! compressive stretch. The method and its reasons are written up in docs/preprocessing.md.

use crate::error::DataError;
use crate::maps::MapsFile;
use crate::mask::{MaskPolicy, NOCOV};

/// Default grid side S.
pub const DEFAULT_SIZE: usize = 32;

/// The percentile of the reference map's good resampled flux that becomes the scale.
pub const SCALE_PERCENTILE: f64 = 99.0;

/// The line whose flux sets the scale when it is in the line set (Hα: the brightest line in
/// nearly every emission-line galaxy); otherwise the per-pixel sum of all lines is used.
pub const REFERENCE_LINE: &str = "Ha-6564";

/// Largest normalised flux (flux / scale) a usable pixel may hold. Even the brightest lines
/// of the strongest AGN and starbursts are within a few hundred times the 99th percentile of
/// Hα; a value a million times it is a corrupted file (an unmasked fill value, an overflow),
/// and one such pixel would dominate every loss and score it enters. The galaxy is skipped.
pub const MAX_NORMALISED_FLUX: f64 = 1e6;

/// Default softening of the asinh stretch, in normalised units (the 99th-percentile
/// reference flux is 1, so maps stay linear below ~10 % of the bright core).
pub const DEFAULT_ASINH_SOFTENING: f64 = 0.1;

/// A compressive transform applied after normalisation.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize, Default)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Stretch {
    /// Keep normalised flux linear.
    #[default]
    None,
    /// `y = a · asinh(x / a)`: linear for |x| ≪ a, logarithmic above, so bright cores do not
    /// dominate a squared-error loss. Weights become `w · (1 + (x/a)²)`.
    Asinh {
        /// The softening `a`.
        softening: f64,
    },
}

impl Stretch {
    /// Parses `none` or `asinh` (with [`DEFAULT_ASINH_SOFTENING`]).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(Stretch::None),
            "asinh" => Some(Stretch::Asinh {
                softening: DEFAULT_ASINH_SOFTENING,
            }),
            _ => None,
        }
    }

    /// The stretch as `ingest --stretch` names it, with its softening: the inverse of
    /// [`Stretch::parse`] for messages.
    pub fn describe(self) -> String {
        match self {
            Stretch::None => "none (linear)".to_string(),
            Stretch::Asinh { softening } => format!("asinh (softening {softening})"),
        }
    }

    /// Applies the stretch to a normalised value and its weight: `y = f(x)`,
    /// `w_y = w_x / f'(x)²` (error propagation to first order).
    pub fn apply(self, x: f32, w: f32) -> (f32, f32) {
        match self {
            Stretch::None => (x, w),
            Stretch::Asinh { softening } => {
                let t = f64::from(x) / softening;
                (
                    (softening * t.asinh()) as f32,
                    (f64::from(w) * (1.0 + t * t)) as f32,
                )
            }
        }
    }
}

/// Preprocessing settings; part of a dataset's identity (recorded in its manifest).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PreprocessConfig {
    /// Output grid side S.
    pub size: usize,
    /// Which mask bits reject a pixel.
    pub mask_policy: MaskPolicy,
    /// Optional compressive stretch.
    pub stretch: Stretch,
}

impl Default for PreprocessConfig {
    fn default() -> Self {
        Self {
            size: DEFAULT_SIZE,
            mask_policy: MaskPolicy::Strict,
            stretch: Stretch::None,
        }
    }
}

/// One galaxy on the model grid.
#[derive(Debug, Clone, PartialEq)]
pub struct Preprocessed {
    /// Normalised (and stretched) flux, `[line][y][x]` on the S×S grid.
    pub x: Vec<f32>,
    /// Weights, same shape: 0 where no good pixel contributes, else the inverse variance of
    /// `x` times the good-area fraction.
    pub w: Vec<f32>,
    /// The flux scale divided out (1E-17 erg/s/cm²/spaxel of the resampled grid).
    pub scale: f64,
    /// Input spaxels inside the footprint that are good in at least one selected line.
    pub n_good: usize,
    /// The centre used, in input pixel coordinates (x, y) of pixel centres (0-based).
    pub centre: (f64, f64),
    /// Side of the square input box (input pixels) mapped onto the S×S grid.
    pub box_size: usize,
}

/// Preprocesses the lines `line_indices` (channel indices of `maps`, in model order).
pub fn preprocess(
    maps: &MapsFile,
    line_indices: &[usize],
    config: &PreprocessConfig,
) -> Result<Preprocessed, DataError> {
    let no_data = |reason: String| DataError::NoUsableData {
        path: maps.path.clone(),
        reason,
    };
    let size = config.size;
    if size == 0 {
        return Err(DataError::Invalid(
            "grid size must be at least 1".to_string(),
        ));
    }
    let (nx, ny) = (maps.nx, maps.ny);
    let plane = nx * ny;
    let expected = maps.channels.len() * plane;
    if maps.flux.len() != expected || maps.ivar.len() != expected || maps.mask.len() != expected {
        return Err(DataError::BadHdu {
            path: maps.path.clone(),
            extname: crate::maps::GFLUX.to_string(),
            reason: "flux, ivar and mask arrays do not match the grid".to_string(),
        });
    }
    if let Some(&bad) = line_indices.iter().find(|&&c| c >= maps.channels.len()) {
        return Err(DataError::Invalid(format!(
            "channel index {bad} out of range"
        )));
    }
    if line_indices.is_empty() {
        return Err(DataError::Invalid("no lines selected".to_string()));
    }

    // Footprint: spaxels the IFU covered (NOCOV clear); NOCOV is a spaxel property, so any
    // selected line's mask tells.
    let footprint: Vec<bool> = (0..plane)
        .map(|p| {
            line_indices
                .iter()
                .any(|&c| maps.mask[c * plane + p] & NOCOV == 0)
        })
        .collect();
    if !footprint.iter().any(|&f| f) {
        return Err(no_data(
            "no spaxel inside the IFU footprint (every spaxel is NOCOV)".to_string(),
        ));
    }
    let footprint_ref = &footprint;
    let good: Vec<bool> = line_indices
        .iter()
        .flat_map(|&c| {
            (0..plane).map(move |p| {
                let i = c * plane + p;
                footprint_ref[p]
                    && config
                        .mask_policy
                        .is_good(maps.mask[i], maps.flux[i], maps.ivar[i])
            })
        })
        .collect();
    let n_good = (0..plane)
        .filter(|&p| (0..line_indices.len()).any(|l| good[l * plane + p]))
        .count();
    if n_good == 0 {
        return Err(no_data(format!(
            "no good spaxels under the {:?} mask policy (masked, IVAR ≤ 0 or non-finite everywhere)",
            config.mask_policy
        )));
    }

    let (cx2, cy2) = centre_half_pixels(maps, &footprint);
    // Half-width (in half-pixels) of the smallest square around the centre holding every
    // footprint spaxel; its parity equals the centre's, so the box edges are pixel edges.
    let mut h2: i64 = 1;
    for y in 0..ny {
        for x in 0..nx {
            if footprint[y * nx + x] {
                let (x, y) = (x as i64, y as i64);
                for d in [2 * x - cx2, 2 * x + 2 - cx2, 2 * y - cy2, 2 * y + 2 - cy2] {
                    h2 = h2.max(d.abs());
                }
            }
        }
    }
    let box_size = h2 as usize;
    let (x0, y0) = ((cx2 - h2) / 2, (cy2 - h2) / 2);
    let weights = axis_overlaps(box_size, size);

    let n_lines = line_indices.len();
    let out_plane = size * size;
    let mut x_out = vec![0f32; n_lines * out_plane];
    let mut w_out = vec![0f32; n_lines * out_plane];
    // Overlap areas are integers (an input pixel is size² units, an output pixel box_size²),
    // so sums of area are exact.
    let out_area = (box_size * box_size) as f64;
    let unit = (size * size) as f64;
    let mut flux_terms: Vec<f64> = Vec::new();
    let mut var_terms: Vec<f64> = Vec::new();
    for (l, &c) in line_indices.iter().enumerate() {
        for jy in 0..size {
            for jx in 0..size {
                flux_terms.clear();
                var_terms.clear();
                let mut good_area: u64 = 0;
                for &(ky, oy) in &weights[jy] {
                    let iy = y0 + ky as i64;
                    if iy < 0 || iy >= ny as i64 {
                        continue;
                    }
                    for &(kx, ox) in &weights[jx] {
                        let ix = x0 + kx as i64;
                        if ix < 0 || ix >= nx as i64 {
                            continue;
                        }
                        let p = iy as usize * nx + ix as usize;
                        if !good[l * plane + p] {
                            continue;
                        }
                        let area = oy * ox;
                        good_area += area;
                        let a = area as f64 / unit;
                        let i = c * plane + p;
                        flux_terms.push(a * f64::from(maps.flux[i]));
                        var_terms.push(a * a / f64::from(maps.ivar[i]));
                    }
                }
                if good_area == 0 {
                    continue;
                }
                // Fraction of the output pixel covered by good input pixels; flux is scaled up
                // by 1/g so a partly masked pixel estimates the whole pixel's flux.
                let g = good_area as f64 / out_area;
                let flux = order_free_sum(&mut flux_terms) / g;
                let var = order_free_sum(&mut var_terms) / (g * g);
                let o = l * out_plane + jy * size + jx;
                x_out[o] = flux as f32;
                w_out[o] = if var > 0.0 && var.is_finite() {
                    (g / var) as f32
                } else {
                    0.0
                };
            }
        }
    }

    let scale =
        normalisation_scale(maps, line_indices, &x_out, &w_out, out_plane).ok_or_else(|| {
            no_data("no positive flux in any good pixel; cannot normalise".to_string())
        })?;
    let scale2 = scale * scale;
    if let Some((o, &x)) = x_out
        .iter()
        .enumerate()
        .filter(|(o, _)| w_out[*o] > 0.0)
        .find(|(_, x)| {
            let ratio = f64::from(x.abs()) / scale;
            !ratio.is_finite() || ratio > MAX_NORMALISED_FLUX
        })
    {
        let line = &maps.channels[line_indices[o / out_plane]];
        return Err(no_data(format!(
            "{line}: a usable pixel holds {x:.3e}, more than {MAX_NORMALISED_FLUX:.0e} times the \
             galaxy's scale ({scale:.3e}): a corrupted value, not a line flux"
        )));
    }
    for (x, w) in x_out.iter_mut().zip(w_out.iter_mut()) {
        let xn = (f64::from(*x) / scale) as f32;
        let wn = (f64::from(*w) * scale2) as f32;
        let (xs, ws) = config.stretch.apply(xn, wn);
        *x = xs;
        *w = if ws.is_finite() { ws } else { 0.0 };
    }
    Ok(Preprocessed {
        x: x_out,
        w: w_out,
        scale,
        n_good,
        centre: ((cx2 - 1) as f64 / 2.0, (cy2 - 1) as f64 / 2.0),
        box_size,
    })
}

/// Sum that does not depend on the order of its terms (sorted before adding), so a flipped
/// or rotated galaxy, which visits the same terms in another order, gives bit-identical maps.
fn order_free_sum(terms: &mut [f64]) -> f64 {
    terms.sort_unstable_by(f64::total_cmp);
    terms.iter().sum()
}

/// For each output index j of an axis of `n_out` pixels spanning `n_in` input pixels, the
/// input pixels k it overlaps and the overlap length in units of 1/(n_in·n_out) of the box:
/// input k covers [k·n_out, (k+1)·n_out), output j covers [j·n_in, (j+1)·n_in). Integer
/// overlaps make the rebinning exactly mirror-symmetric.
fn axis_overlaps(n_in: usize, n_out: usize) -> Vec<Vec<(usize, u64)>> {
    (0..n_out)
        .map(|j| {
            let (lo, hi) = (j * n_in, (j + 1) * n_in);
            let first = lo / n_out;
            let last = hi.div_ceil(n_out).min(n_in);
            (first..last)
                .filter_map(|k| {
                    let overlap = hi.min((k + 1) * n_out).saturating_sub(lo.max(k * n_out));
                    (overlap > 0).then_some((k, overlap as u64))
                })
                .collect()
        })
        .collect()
}

/// The galaxy centre in half-pixel units (2·coordinate + 1 for a pixel centre, so a pixel
/// edge is even): the spaxel whose sky offset (SPX_SKYCOO) is nearest to (0, 0) — the IFU
/// centre, on the target — or, if several are equally near, the middle of their bounding box;
/// without SPX_SKYCOO, the middle of the footprint's bounding box. Both rules commute with
/// flips and rotations of the grid.
fn centre_half_pixels(maps: &MapsFile, footprint: &[bool]) -> (i64, i64) {
    let (nx, plane) = (maps.nx, maps.plane_len());
    let mut chosen: Vec<usize> = Vec::new();
    if let Some(sky) = maps.skycoo.as_ref().filter(|s| s.len() == 2 * plane) {
        let r2 = |p: usize| {
            let (sx, sy) = (f64::from(sky[p]), f64::from(sky[plane + p]));
            sx * sx + sy * sy
        };
        let best = (0..plane)
            .filter(|&p| footprint[p] && r2(p).is_finite())
            .map(r2)
            .min_by(f64::total_cmp);
        if let Some(best) = best {
            chosen = (0..plane)
                .filter(|&p| footprint[p] && r2(p) == best)
                .collect();
        }
    }
    if chosen.is_empty() {
        chosen = (0..plane).filter(|&p| footprint[p]).collect();
    }
    let xs = chosen.iter().map(|&p| (p % nx) as i64);
    let ys = chosen.iter().map(|&p| (p / nx) as i64);
    let (xmin, xmax) = (xs.clone().min().unwrap_or(0), xs.max().unwrap_or(0));
    let (ymin, ymax) = (ys.clone().min().unwrap_or(0), ys.max().unwrap_or(0));
    (xmin + xmax + 1, ymin + ymax + 1)
}

/// The scale: the 99th percentile (nearest rank) of the good resampled flux of Hα when it is
/// among the lines, else of the per-pixel sum over lines; if that is not positive, the largest
/// good flux of any line. `None` when no good pixel has positive flux.
fn normalisation_scale(
    maps: &MapsFile,
    line_indices: &[usize],
    x: &[f32],
    w: &[f32],
    out_plane: usize,
) -> Option<f64> {
    let reference = line_indices
        .iter()
        .position(|&c| maps.channels.get(c).is_some_and(|n| n == REFERENCE_LINE));
    let values: Vec<f64> = match reference {
        Some(l) => (0..out_plane)
            .filter(|&p| w[l * out_plane + p] > 0.0)
            .map(|p| f64::from(x[l * out_plane + p]))
            .collect(),
        None => (0..out_plane)
            .filter_map(|p| {
                let good: Vec<f64> = (0..line_indices.len())
                    .filter(|&l| w[l * out_plane + p] > 0.0)
                    .map(|l| f64::from(x[l * out_plane + p]))
                    .collect();
                (!good.is_empty()).then(|| good.iter().sum())
            })
            .collect(),
    };
    let positive = |s: f64| (s > 0.0 && s.is_finite()).then_some(s);
    percentile(values, SCALE_PERCENTILE)
        .and_then(positive)
        .or_else(|| {
            x.iter()
                .zip(w)
                .filter(|(_, w)| **w > 0.0)
                .map(|(x, _)| f64::from(*x))
                .max_by(f64::total_cmp)
                .and_then(positive)
        })
}

/// Nearest-rank percentile (`q` in 0–100) of finite values; `None` for no values.
pub fn percentile(mut values: Vec<f64>, q: f64) -> Option<f64> {
    values.retain(|v| v.is_finite());
    if values.is_empty() {
        return None;
    }
    values.sort_unstable_by(f64::total_cmp);
    let rank = ((q / 100.0) * values.len() as f64).ceil() as usize;
    values.get(rank.clamp(1, values.len()) - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;
    use crate::mask::{DONOTUSE, UNRELIABLE};
    use rand::{Rng, SeedableRng};

    /// Where a grid transform sends pixel (y, x) of an n×n grid.
    type GridMap = fn(usize, usize, usize) -> (usize, usize);

    /// A disc with random flux and scattered masked pixels, so no symmetry hides mistakes.
    fn lumpy(n: usize, seed: u64) -> MapsFile {
        let mut m = fixtures::disc("8000-1901", n);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        for i in 0..m.flux.len() {
            if m.mask[i] & NOCOV == 0 {
                m.flux[i] *= rng.random_range(0.5f32..1.5);
                m.ivar[i] = rng.random_range(100f32..1000.0);
                if rng.random_range(0.0..1.0) < 0.1 {
                    m.mask[i] |= DONOTUSE;
                }
            }
        }
        m
    }

    /// Applies a grid transform to every `[plane][y][x]` array of a square MAPS file.
    fn transform_maps(m: &MapsFile, t: GridMap) -> MapsFile {
        let mut out = m.clone();
        let n = m.nx;
        let map = |src: &[f32]| transform(src, n, t);
        out.flux = map(&m.flux);
        out.ivar = map(&m.ivar);
        out.mask = transform(&m.mask, n, t);
        out.skycoo = m.skycoo.as_ref().map(|s| map(s));
        out
    }

    /// `out[t(y, x)] = in[y, x]` for each n×n plane.
    fn transform<T: Copy + Default>(src: &[T], n: usize, t: GridMap) -> Vec<T> {
        let mut out = vec![T::default(); src.len()];
        for (k, plane) in src.chunks(n * n).enumerate() {
            for y in 0..n {
                for x in 0..n {
                    let (ty, tx) = t(n, y, x);
                    out[k * n * n + ty * n + tx] = plane[y * n + x];
                }
            }
        }
        out
    }

    const TRANSFORMS: [(&str, GridMap); 4] = [
        ("flip x", |n, y, x| (y, n - 1 - x)),
        ("flip y", |n, y, x| (n - 1 - y, x)),
        ("transpose", |_, y, x| (x, y)),
        ("rotate 90", |n, y, x| (x, n - 1 - y)),
    ];

    #[test]
    fn flips_and_rotations_commute_exactly() {
        let lines = [5usize, 14, 23, 24];
        // Odd and even grids; even grids put the SPX_SKYCOO origin between four spaxels.
        for (n, size) in [(11, 8), (12, 8), (42, 32), (7, 32), (12, 7)] {
            let m = lumpy(n, n as u64);
            let config = PreprocessConfig {
                size,
                ..Default::default()
            };
            let base = preprocess(&m, &lines, &config).unwrap();
            for (name, t) in TRANSFORMS {
                let moved = preprocess(&transform_maps(&m, t), &lines, &config).unwrap();
                assert_eq!(moved.scale, base.scale, "{name} n={n}");
                assert_eq!(moved.box_size, base.box_size, "{name} n={n}");
                let expect_x = transform(&base.x, size, t);
                let expect_w = transform(&base.w, size, t);
                assert!(
                    moved
                        .x
                        .iter()
                        .zip(&expect_x)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{name} n={n} S={size} x"
                );
                assert!(
                    moved
                        .w
                        .iter()
                        .zip(&expect_w)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{name} n={n} S={size} w"
                );
            }
        }
    }

    /// A grid whose footprint fills it and without SPX_SKYCOO: centre = grid centre and the box
    /// is the grid, so an S×S input maps onto the output one to one.
    fn full_grid(n: usize) -> MapsFile {
        let mut m = lumpy(n, 7);
        m.skycoo = None;
        for i in 0..m.mask.len() {
            m.mask[i] &= !(NOCOV | DONOTUSE);
            if m.ivar[i] == 0.0 {
                m.flux[i] = 1.0;
                m.ivar[i] = 100.0;
            }
        }
        m
    }

    #[test]
    fn identity_grid_masks_scales_and_weights() {
        let mut m = full_grid(16);
        let ha = 23;
        let plane = 16 * 16;
        m.mask[ha * plane + 5] = DONOTUSE;
        m.mask[ha * plane + 6] = UNRELIABLE;
        m.flux[ha * plane + 7] = f32::NAN;
        m.ivar[ha * plane + 8] = f32::INFINITY;
        m.ivar[ha * plane + 9] = 0.0;
        let config = PreprocessConfig {
            size: 16,
            ..Default::default()
        };
        let p = preprocess(&m, &[ha, 14], &config).unwrap();
        assert_eq!(p.box_size, 16);
        for bad in 5..10 {
            assert_eq!(p.w[bad], 0.0, "pixel {bad}");
            assert_eq!(p.x[bad], 0.0, "pixel {bad}");
        }
        // Lenient keeps the UNRELIABLE pixel.
        let lenient = PreprocessConfig {
            mask_policy: MaskPolicy::Lenient,
            ..config
        };
        assert!(preprocess(&m, &[ha, 14], &lenient).unwrap().w[6] > 0.0);
        // The scale is the 99th percentile of good Hα flux; x = flux/scale, w = ivar·scale².
        let good: Vec<f64> = (0..plane)
            .filter(|p| !(5..10).contains(p))
            .map(|p| f64::from(m.flux[ha * plane + p]))
            .collect();
        assert_eq!(p.scale, percentile(good, 99.0).unwrap());
        for q in [0usize, 100, 255] {
            let (f, iv) = (
                f64::from(m.flux[ha * plane + q]),
                f64::from(m.ivar[ha * plane + q]),
            );
            assert!((f64::from(p.x[q]) - f / p.scale).abs() < 1e-6 * (f / p.scale).abs().max(1.0));
            assert!((f64::from(p.w[q]) / (iv * p.scale * p.scale) - 1.0).abs() < 1e-5);
        }
        assert!(p.x.iter().chain(&p.w).all(|v| v.is_finite()));
        assert_eq!(p.n_good, plane);
    }

    #[test]
    fn resampling_conserves_flux_and_propagates_variance() {
        for (n, size) in [(42, 32), (9, 32), (74, 32), (33, 32)] {
            let m = full_grid(n);
            let plane = n * n;
            let p = preprocess(
                &m,
                &[23],
                &PreprocessConfig {
                    size,
                    ..Default::default()
                },
            )
            .unwrap();
            let input: f64 = m.flux[23 * plane..24 * plane]
                .iter()
                .map(|&f| f64::from(f))
                .sum();
            let output: f64 = p.x.iter().map(|&x| f64::from(x)).sum::<f64>() * p.scale;
            assert!(
                (output / input - 1.0).abs() < 1e-5,
                "n={n} S={size}: {output} vs {input}"
            );
            assert!(p.w.iter().all(|&w| w > 0.0));
        }
        // Variance adds with squared area weights: 2×2 equal pixels into one output pixel.
        let mut m = full_grid(2);
        let plane = 4;
        for p in 0..plane {
            m.flux[23 * plane + p] = 1.0;
            m.ivar[23 * plane + p] = 4.0;
        }
        let p = preprocess(
            &m,
            &[23],
            &PreprocessConfig {
                size: 1,
                ..Default::default()
            },
        )
        .unwrap();
        // Flux 4 (scale 4 → x = 1); variance 4 · (1/4) = 1 → w = 1 · scale⁻²·… in units of x: 16.
        assert_eq!(p.scale, 4.0);
        assert_eq!(p.x, [1.0]);
        assert_eq!(p.w, [16.0]);
    }

    #[test]
    fn partially_masked_output_pixel_estimates_whole_pixel() {
        let mut m = full_grid(2);
        for p in 0..4 {
            m.flux[23 * 4 + p] = 1.0;
            m.ivar[23 * 4 + p] = 4.0;
        }
        m.mask[23 * 4] = DONOTUSE;
        let p = preprocess(
            &m,
            &[23],
            &PreprocessConfig {
                size: 1,
                ..Default::default()
            },
        )
        .unwrap();
        // Three good quarter-pixels of flux 1: flux 3 / good fraction 0.75 = 4.
        assert_eq!(p.scale, 4.0);
        assert_eq!(p.x, [1.0]);
        // var = 3·(1/4)/0.75² = 4/3 in flux units → 3/4 ivar → ·16 (scale²) ·0.75 (good fraction) = 9.
        assert!((p.w[0] - 9.0).abs() < 1e-5, "{}", p.w[0]);
    }

    #[test]
    fn galaxies_without_good_pixels_are_rejected() {
        let mut m = fixtures::disc("1-2", 8);
        m.ivar.iter_mut().for_each(|v| *v = 0.0);
        let err = preprocess(&m, &[23], &PreprocessConfig::default()).unwrap_err();
        assert!(matches!(err, DataError::NoUsableData { .. }), "{err}");
        let mut m = fixtures::disc("1-2", 8);
        m.flux.iter_mut().for_each(|v| *v = f32::NAN);
        assert!(preprocess(&m, &[23], &PreprocessConfig::default()).is_err());
        let mut m = fixtures::disc("1-2", 8);
        m.mask.iter_mut().for_each(|v| *v = NOCOV | DONOTUSE);
        let err = preprocess(&m, &[23], &PreprocessConfig::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("footprint"), "{err}");
        let mut m = fixtures::disc("1-2", 8);
        m.flux.iter_mut().for_each(|v| *v = 0.0);
        let err = preprocess(&m, &[23], &PreprocessConfig::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("positive flux"), "{err}");
    }

    #[test]
    fn a_corrupted_flux_far_beyond_the_scale_is_rejected_naming_its_line() {
        let config = PreprocessConfig {
            size: 8,
            ..Default::default()
        };
        let m = fixtures::disc("1-2", 8);
        let clean = preprocess(&m, &[18, 23], &config).unwrap();
        // The brightest usable Hα pixel, in a line that is not the scale's: a million times
        // the scale is refused, a hundred times (an extreme but real line ratio) is kept.
        let plane = m.nx * m.ny;
        let centre = (0..plane)
            .max_by(|&a, &b| m.flux[23 * plane + a].total_cmp(&m.flux[23 * plane + b]))
            .unwrap();
        for (factor, refused) in [(1e7, true), (1e2, false)] {
            let mut bad = m.clone();
            bad.flux[18 * plane + centre] = (factor * clean.scale) as f32;
            let result = preprocess(&bad, &[18, 23], &config);
            assert_eq!(result.is_err(), refused, "factor {factor}");
            if let Err(err) = result {
                let err = err.to_string();
                assert!(
                    err.contains(&m.channels[18]) && err.contains("corrupted value"),
                    "{err}"
                );
            }
        }
    }

    #[test]
    fn without_halpha_the_scale_uses_the_sum_of_lines() {
        let m = full_grid(8);
        let p = preprocess(
            &m,
            &[14, 16],
            &PreprocessConfig {
                size: 8,
                ..Default::default()
            },
        )
        .unwrap();
        let sums: Vec<f64> = (0..64)
            .map(|q| f64::from(m.flux[14 * 64 + q]) + f64::from(m.flux[16 * 64 + q]))
            .collect();
        assert!((p.scale / percentile(sums, 99.0).unwrap() - 1.0).abs() < 1e-6);
    }

    #[test]
    fn asinh_stretch_transforms_values_and_weights() {
        let m = full_grid(8);
        let plain = preprocess(
            &m,
            &[23],
            &PreprocessConfig {
                size: 8,
                ..Default::default()
            },
        )
        .unwrap();
        let stretch = Stretch::Asinh { softening: 0.1 };
        let s = preprocess(
            &m,
            &[23],
            &PreprocessConfig {
                size: 8,
                stretch,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(s.scale, plain.scale);
        for q in 0..64 {
            let x = f64::from(plain.x[q]);
            let y = 0.1 * (x / 0.1).asinh();
            assert!((f64::from(s.x[q]) - y).abs() < 1e-6);
            let w = f64::from(plain.w[q]) * (1.0 + (x / 0.1).powi(2));
            assert!((f64::from(s.w[q]) / w - 1.0).abs() < 1e-5);
        }
        assert_eq!(Stretch::parse("asinh"), Some(stretch));
        assert_eq!(Stretch::parse("log"), None);
    }

    #[test]
    fn percentile_is_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(v.clone(), 99.0), Some(99.0));
        assert_eq!(percentile(v, 100.0), Some(100.0));
        assert_eq!(percentile(vec![5.0], 99.0), Some(5.0));
        assert_eq!(percentile(vec![f64::NAN], 99.0), None);
    }
}
