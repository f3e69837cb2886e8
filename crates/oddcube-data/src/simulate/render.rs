//! Image-plane numerics of the simulator: the spaxel grid and its on-sky coordinates, the
//! hexagonal IFU footprint, Gaussian PSF convolution and spatially correlated noise.

use rand::Rng;
use rand_distr::StandardNormal;

/// Spaxel size of MaNGA DRP cubes and DAP maps, arcsec (the reader's constant, so simulated
/// and real grids cannot drift apart).
pub const SPAXEL_ARCSEC: f64 = crate::maps::SPAXEL_ARCSEC;

/// A square spaxel grid centred on the IFU.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grid {
    /// Side in spaxels.
    pub size: usize,
}

impl Grid {
    /// Spaxels per map.
    pub fn plane(&self) -> usize {
        self.size * self.size
    }

    /// 0-based pixel index of the IFU centre (the WCS reference pixel is this + 1).
    pub fn centre(&self) -> f64 {
        (self.size / 2) as f64
    }

    /// On-sky offset (arcsec) of spaxel (col, row) from the IFU centre: x positive to the East
    /// (so it falls with column, as RA does in MaNGA cubes), y positive to the North.
    pub fn sky(&self, col: usize, row: usize) -> (f64, f64) {
        let c = self.centre();
        (
            -(col as f64 - c) * SPAXEL_ARCSEC,
            (row as f64 - c) * SPAXEL_ARCSEC,
        )
    }

    /// Pixel position (col, row), fractional, of an on-sky offset.
    pub fn pixel(&self, x: f64, y: f64) -> (f64, f64) {
        let c = self.centre();
        (c - x / SPAXEL_ARCSEC, c + y / SPAXEL_ARCSEC)
    }
}

/// Circumradius (arcsec) of the smallest flat-topped hexagon, vertices on the x axis, that
/// contains the on-sky point: the footprint test of a hexagonal fibre bundle.
pub fn hex_radius(x: f64, y: f64) -> f64 {
    let half_sqrt3 = 3f64.sqrt() / 2.0;
    (y.abs() / half_sqrt3).max(x.abs() + y.abs() / 3f64.sqrt())
}

/// Radius (arcsec) of the covered hexagon of a bundle with `rings` fibre rings: fibre pitch
/// 2.5″ plus fibre radius and dither pattern (37 fibres → 10.3″, as in real cubes).
pub fn coverage_radius(rings: u32) -> f64 {
    2.5 * rings as f64 + 2.8
}

/// 1-D Gaussian kernel with standard deviation `sigma` (pixels), truncated at 4σ, unit sum.
pub fn gaussian_kernel(sigma: f64) -> Vec<f64> {
    let half = (4.0 * sigma).ceil().max(1.0) as i64;
    let mut kernel: Vec<f64> = (-half..=half)
        .map(|i| (-0.5 * (i as f64 / sigma).powi(2)).exp())
        .collect();
    let sum: f64 = kernel.iter().sum();
    kernel.iter_mut().for_each(|k| *k /= sum);
    kernel
}

/// Convolves a `size`×`size` row-major image in place with a separable kernel (zero outside).
///
/// Every output sums its in-range taps in kernel order, so the result does not depend on how
/// the loops are arranged: the column pass runs over whole rows to let the compiler vectorise.
pub fn convolve_separable(image: &mut [f64], size: usize, kernel: &[f64], scratch: &mut Vec<f64>) {
    let half = kernel.len() / 2;
    // Taps k of output index i that land inside 0..size: i + k - half in range.
    let taps = |i: usize| half.saturating_sub(i)..kernel.len().min(size + half - i);
    scratch.clear();
    scratch.resize(image.len(), 0.0);
    for (row, out) in image.chunks_exact(size).zip(scratch.chunks_exact_mut(size)) {
        for (col, value) in out.iter_mut().enumerate() {
            let mut acc = 0.0;
            for k in taps(col) {
                acc += kernel[k] * row[col + k - half];
            }
            *value = acc;
        }
    }
    for (row, out) in image.chunks_exact_mut(size).enumerate() {
        out.fill(0.0);
        for k in taps(row) {
            let w = kernel[k];
            let source = &scratch[(row + k - half) * size..][..size];
            for (acc, x) in out.iter_mut().zip(source) {
                *acc += w * x;
            }
        }
    }
}

/// Unit-variance Gaussian noise correlated over ~`sigma` pixels, as resampling fibre spectra
/// onto the cube grid correlates neighbouring spaxels.
pub fn correlated_noise(
    size: usize,
    sigma: f64,
    rng: &mut impl Rng,
    scratch: &mut Vec<f64>,
) -> Vec<f64> {
    let mut field: Vec<f64> = (0..size * size)
        .map(|_| rng.sample(StandardNormal))
        .collect();
    let kernel = gaussian_kernel(sigma);
    convolve_separable(&mut field, size, &kernel, scratch);
    // A separable smoothing of white noise scales its variance by (Σk²)² in the interior.
    let gain: f64 = kernel.iter().map(|k| k * k).sum::<f64>();
    let norm = 1.0 / gain;
    field.iter_mut().for_each(|v| *v *= norm);
    field
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn hexagon_contains_its_vertices_and_edges() {
        assert!((hex_radius(10.0, 0.0) - 10.0).abs() < 1e-12);
        assert!((hex_radius(0.0, 10.0 * 3f64.sqrt() / 2.0) - 10.0).abs() < 1e-12);
        assert!((hex_radius(5.0, 10.0 * 3f64.sqrt() / 2.0) - 10.0).abs() < 1e-12);
        assert!(
            hex_radius(0.0, 9.0) > 10.0,
            "flat top is closer than the vertices"
        );
        assert_eq!(coverage_radius(3), 10.3);
    }

    #[test]
    fn convolution_conserves_flux_and_spreads_a_point() {
        let size = 31;
        let mut image = vec![0.0; size * size];
        image[15 * size + 15] = 1.0;
        let mut scratch = Vec::new();
        convolve_separable(&mut image, size, &gaussian_kernel(2.0), &mut scratch);
        let total: f64 = image.iter().sum();
        assert!((total - 1.0).abs() < 1e-9);
        // Peak of a unit 2-D Gaussian with sigma 2 px: 1/(2π·4).
        let peak = image[15 * size + 15];
        assert!(
            (peak - 1.0 / (8.0 * std::f64::consts::PI)).abs() < 2e-3,
            "{peak}"
        );
    }

    #[test]
    fn convolution_matches_the_tap_by_tap_definition_bit_for_bit() {
        // The simulated surveys' bytes depend on it: the loop order must not change a sum.
        fn reference(image: &[f64], size: usize, kernel: &[f64]) -> Vec<f64> {
            let half = (kernel.len() / 2) as isize;
            let n = size as isize;
            let pass = |source: &[f64], along_rows: bool| -> Vec<f64> {
                let mut out = vec![0.0; source.len()];
                for row in 0..n {
                    for col in 0..n {
                        let mut acc = 0.0;
                        for (k, w) in kernel.iter().enumerate() {
                            let (r, c) = if along_rows {
                                (row, col + k as isize - half)
                            } else {
                                (row + k as isize - half, col)
                            };
                            if (0..n).contains(&r) && (0..n).contains(&c) {
                                acc += w * source[(r * n + c) as usize];
                            }
                        }
                        out[(row * n + col) as usize] = acc;
                    }
                }
                out
            };
            pass(&pass(image, true), false)
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut scratch = Vec::new();
        for (size, sigma) in [
            (1, 0.5),
            (3, 2.0),
            (17, 0.7),
            (32, 1.9),
            (44, 4.7),
            (9, 6.0),
        ] {
            let image: Vec<f64> = (0..size * size)
                .map(|_| rng.sample::<f64, _>(StandardNormal))
                .collect();
            let kernel = gaussian_kernel(sigma);
            let mut fast = image.clone();
            convolve_separable(&mut fast, size, &kernel, &mut scratch);
            let expected = reference(&image, size, &kernel);
            let same = fast
                .iter()
                .zip(&expected)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "size {size}, sigma {sigma}");
        }
    }

    #[test]
    fn correlated_noise_has_unit_variance_and_correlation() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let size = 64;
        let mut scratch = Vec::new();
        let field = correlated_noise(size, 1.0, &mut rng, &mut scratch);
        let interior: Vec<(f64, f64)> = (8..56)
            .flat_map(|r| (8..55).map(move |c| (r, c)))
            .map(|(r, c)| (field[r * size + c], field[r * size + c + 1]))
            .collect();
        let n = interior.len() as f64;
        let var = interior.iter().map(|(a, _)| a * a).sum::<f64>() / n;
        let cov = interior.iter().map(|(a, b)| a * b).sum::<f64>() / n;
        assert!((var - 1.0).abs() < 0.2, "variance {var}");
        assert!(cov / var > 0.5, "neighbours correlated: {}", cov / var);
    }

    #[test]
    fn sky_and_pixel_are_inverse() {
        let grid = Grid { size: 44 };
        let (x, y) = grid.sky(10, 30);
        let (col, row) = grid.pixel(x, y);
        assert!((col - 10.0).abs() < 1e-12 && (row - 30.0).abs() < 1e-12);
        assert_eq!(grid.sky(22, 22), (0.0, 0.0));
        assert!(grid.sky(21, 22).0 > 0.0, "East is to the left");
    }
}
