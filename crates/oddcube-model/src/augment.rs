//! The 8 symmetries of the square grid (the dihedral group D4) applied to line maps, and IVAR
//! noise. A galaxy has no preferred orientation on the sky, so every transform is equally valid
//! training data; x and w are always transformed together so weights stay on their pixels.

use rand::Rng;
use rand_distr::StandardNormal;

/// Number of distinct D4 transforms.
pub const D4_ORDER: usize = 8;

/// Where pixel `(y, x)` of an `size × size` map lands under transform `k` (0..8):
/// first a flip of x when `k ≥ 4`, then `k mod 4` quarter turns.
fn d4_target(k: usize, size: usize, y: usize, x: usize) -> (usize, usize) {
    let last = size - 1;
    let (mut y, mut x) = if k >= 4 { (y, last - x) } else { (y, x) };
    for _ in 0..k % 4 {
        (y, x) = (x, last - y);
    }
    (y, x)
}

/// The transform that undoes `k`: reflections are their own inverses, rotations by r quarter
/// turns are undone by 4 − r.
pub fn d4_inverse(k: usize) -> usize {
    if k >= 4 { k } else { (4 - k) % 4 }
}

/// Applies transform `k` to every `size × size` map in `src` (a whole number of maps), writing
/// `dst`.
pub fn d4_apply(k: usize, size: usize, src: &[f32], dst: &mut [f32]) {
    let plane = size * size;
    for (s_map, d_map) in src.chunks_exact(plane).zip(dst.chunks_exact_mut(plane)) {
        for y in 0..size {
            for x in 0..size {
                let (ty, tx) = d4_target(k, size, y, x);
                d_map[ty * size + tx] = s_map[y * size + x];
            }
        }
    }
}

/// [`d4_apply`] into a new vector.
pub fn d4_transformed(k: usize, size: usize, src: &[f32]) -> Vec<f32> {
    let mut dst = vec![0.0; src.len()];
    d4_apply(k, size, src, &mut dst);
    dst
}

/// Adds Gaussian noise with the pixel's measurement error, `N(0, 1/√w)`, wherever `w > 0`.
pub fn add_ivar_noise(x: &mut [f32], w: &[f32], rng: &mut impl Rng) {
    for (xv, &wv) in x.iter_mut().zip(w) {
        if wv > 0.0 && wv.is_finite() {
            let z: f32 = rng.sample(StandardNormal);
            *xv += z / wv.sqrt();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn image(size: usize, maps: usize) -> Vec<f32> {
        (0..size * size * maps)
            .map(|i| (i * 7 % 23) as f32 + 0.25 * i as f32)
            .collect()
    }

    fn apply(k: usize, size: usize, src: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0; src.len()];
        d4_apply(k, size, src, &mut out);
        out
    }

    #[test]
    fn inverse_restores_the_input() {
        for size in [1, 4, 5] {
            let img = image(size, 3);
            for k in 0..D4_ORDER {
                assert_eq!(
                    apply(d4_inverse(k), size, &apply(k, size, &img)),
                    img,
                    "k={k} size={size}"
                );
            }
        }
    }

    #[test]
    fn the_eight_transforms_are_distinct_and_closed_under_composition() {
        let size = 5;
        let img = image(size, 1);
        let all: Vec<Vec<f32>> = (0..D4_ORDER).map(|k| apply(k, size, &img)).collect();
        for a in 0..D4_ORDER {
            for b in a + 1..D4_ORDER {
                assert_ne!(all[a], all[b], "transforms {a} and {b} coincide");
            }
        }
        for a in 0..D4_ORDER {
            for b in 0..D4_ORDER {
                let composed = apply(a, size, &apply(b, size, &img));
                assert!(all.contains(&composed), "{a}∘{b} is not one of the 8");
            }
        }
        // A quarter turn moves the top-left corner to the top-right.
        let turned = apply(1, size, &img);
        assert_eq!(turned[size - 1], img[0]);
    }

    #[test]
    fn x_and_w_stay_aligned() {
        let size = 6;
        let x = image(size, 2);
        let w: Vec<f32> = x.iter().map(|v| v + 0.5).collect();
        for k in 0..D4_ORDER {
            let (tx, tw) = (apply(k, size, &x), apply(k, size, &w));
            assert!(tx.iter().zip(&tw).all(|(a, b)| b - a == 0.5), "k={k}");
        }
    }

    #[test]
    fn noise_only_touches_weighted_pixels_with_the_right_scale() {
        let n = 20000;
        let w: Vec<f32> = (0..n).map(|i| if i % 2 == 0 { 0.0 } else { 4.0 }).collect();
        let mut x = vec![1.0f32; n];
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        add_ivar_noise(&mut x, &w, &mut rng);
        assert!(x.iter().step_by(2).all(|&v| v == 1.0));
        let noisy: Vec<f64> = x
            .iter()
            .skip(1)
            .step_by(2)
            .map(|&v| v as f64 - 1.0)
            .collect();
        let var = noisy.iter().map(|v| v * v).sum::<f64>() / noisy.len() as f64;
        // σ = 1/√4 = 0.5 → variance 0.25; 10⁴ samples put the estimate within a few percent.
        assert!((var - 0.25).abs() < 0.02, "variance {var}");
    }
}
