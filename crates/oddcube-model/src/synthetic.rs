//! Synthetic galaxies for tests and benchmarks: smooth exponential discs with per-line ratios,
//! a circular footprint (pixels outside are masked) and inverse-variance weights.

use oddcube_data::Cubes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// `n` synthetic galaxies of `n_lines` maps on a `size × size` grid, and plateifu-like names.
/// Each galaxy is a tilted exponential disc with a random centre offset, scale length and
/// per-line amplitude (a fixed "spectrum" times a random excitation factor), plus noise
/// matching its weights. Pixels outside a circular footprint have w = 0 and random x.
pub fn synthetic_cubes(n: usize, n_lines: usize, size: usize, seed: u64) -> (Cubes, Vec<String>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut cubes = Cubes::zeros(n, n_lines, size);
    let base: Vec<f32> = (0..n_lines)
        .map(|l| 0.2 + 0.8 * ((l * 37 % 11) as f32 / 10.0))
        .collect();
    let mut names = Vec::with_capacity(n);
    let centre = (size as f32 - 1.0) / 2.0;
    for g in 0..n {
        names.push(format!(
            "{}-{}",
            7443 + g / 20,
            1901 + g % 20 * 100 + g / 400
        ));
        let (dx, dy) = (
            rng.random_range(-1.5f32..1.5),
            rng.random_range(-1.5f32..1.5),
        );
        let scale = rng.random_range(0.12f32..0.3) * size as f32;
        let (cos_t, sin_t) = {
            let t: f32 = rng.random_range(0.0..std::f32::consts::PI);
            (t.cos(), t.sin())
        };
        let axis = rng.random_range(0.4f32..1.0);
        let excitation = rng.random_range(0.5f32..1.5);
        let footprint = rng.random_range(0.35f32..0.5) * size as f32;
        let (x, w) = cubes.galaxy_mut(g);
        for (l, &line_amp) in base.iter().enumerate() {
            let amp = line_amp * if l % 3 == 0 { excitation } else { 1.0 };
            for py in 0..size {
                for px in 0..size {
                    let (u, v) = (px as f32 - centre - dx, py as f32 - centre - dy);
                    let (a, b) = (u * cos_t + v * sin_t, (-u * sin_t + v * cos_t) / axis);
                    let r = (a * a + b * b).sqrt();
                    let i = (l * size + py) * size + px;
                    let inside = ((px as f32 - centre).powi(2) + (py as f32 - centre).powi(2))
                        .sqrt()
                        < footprint;
                    if inside {
                        let ivar = 400.0 * (1.0 + 4.0 * (-r / scale).exp());
                        let noise: f32 = rng.random_range(-1.0f32..1.0) * 1.7 / ivar.sqrt();
                        x[i] = amp * (-r / scale).exp() + noise;
                        w[i] = ivar;
                    } else {
                        x[i] = rng.random_range(-50.0f32..50.0);
                        w[i] = 0.0;
                    }
                }
            }
        }
    }
    (cubes, names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_masks_and_determinism() {
        let (a, names) = synthetic_cubes(3, 4, 8, 1);
        let (b, _) = synthetic_cubes(3, 4, 8, 1);
        assert_eq!(a, b);
        assert_eq!(a.shape(), [3, 4, 8, 8]);
        assert_eq!(names.len(), 3);
        assert!(a.w.contains(&0.0) && a.w.iter().any(|&v| v > 0.0));
    }
}
