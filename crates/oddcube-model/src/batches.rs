//! From `Cubes` to model batches: the deterministic validation split, batch assembly with
//! masking, augmentation and loss weights, and the dataset-mean baseline.

use candle_core::{Device, Tensor};
use oddcube_data::Cubes;
use rand::Rng;
use xxhash_rust::xxh3::xxh3_64;

use crate::augment::{D4_ORDER, add_ivar_noise, d4_apply};
use crate::config::LossMode;
use crate::error::{ModelError, Result};

/// Whether the galaxy `plateifu` belongs to the validation set for `fraction`. Decided by the
/// xxh3 hash of the name, so the split never depends on dataset order, seed or size.
pub fn is_validation(plateifu: &str, fraction: f64) -> bool {
    let unit = xxh3_64(plateifu.as_bytes()) as f64 / (u64::MAX as f64 + 1.0);
    unit < fraction
}

/// Indices of training and validation galaxies.
pub fn split(plateifus: &[String], fraction: f64) -> (Vec<usize>, Vec<usize>) {
    (0..plateifus.len()).partition(|&i| !is_validation(&plateifus[i], fraction))
}

/// The loss weight of a pixel with dataset weight `w`: masked (0, negative or non-finite)
/// pixels get 0; otherwise 1 (`mse`) or `w` (`chi2`).
pub fn loss_weight(w: f32, mode: LossMode) -> f32 {
    if !(w > 0.0 && w.is_finite()) {
        0.0
    } else {
        match mode {
            LossMode::Mse => 1.0,
            LossMode::Chi2 => w,
        }
    }
}

/// How training batches are perturbed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Augment {
    /// A random D4 transform per galaxy.
    pub flips: bool,
    /// IVAR noise on x.
    pub noise: bool,
}

/// A batch on the host: model input (masked pixels zeroed) and loss weights, `[n, T, S, S]`.
#[derive(Debug, Clone)]
pub struct HostBatch {
    /// Galaxies in the batch.
    pub n: usize,
    /// Lines per galaxy.
    pub n_lines: usize,
    /// Grid side.
    pub size: usize,
    /// Input flux; 0 wherever the loss weight is 0, so masked values can never reach the model.
    pub x: Vec<f32>,
    /// Loss weights.
    pub w: Vec<f32>,
}

impl HostBatch {
    /// Assembles galaxies `indices` of `cubes`. With `augment` (and an RNG) each galaxy gets a
    /// random D4 transform (the same for x, w and every line) and/or IVAR noise.
    pub fn assemble(
        cubes: &Cubes,
        indices: &[usize],
        mode: LossMode,
        augment: Augment,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        let len = cubes.galaxy_len();
        let mut x = vec![0.0f32; indices.len() * len];
        let mut w = vec![0.0f32; indices.len() * len];
        for (k, &i) in indices.iter().enumerate() {
            if i >= cubes.n || (i + 1) * len > cubes.x.len().min(cubes.w.len()) {
                return Err(ModelError::Data(format!(
                    "galaxy index {i} is outside the {} cubes",
                    cubes.n
                )));
            }
            let (gx, gw) = cubes.galaxy(i);
            let (bx, bw) = (
                &mut x[k * len..(k + 1) * len],
                &mut w[k * len..(k + 1) * len],
            );
            let transform = if augment.flips {
                rng.random_range(0..D4_ORDER)
            } else {
                0
            };
            d4_apply(transform, cubes.size, gx, bx);
            d4_apply(transform, cubes.size, gw, bw);
            if augment.noise {
                add_ivar_noise(bx, bw, rng);
            }
            for (xv, wv) in bx.iter_mut().zip(bw.iter_mut()) {
                *wv = loss_weight(*wv, mode);
                if *wv == 0.0 || !xv.is_finite() {
                    *xv = 0.0;
                    *wv = 0.0;
                }
            }
        }
        Ok(Self {
            n: indices.len(),
            n_lines: cubes.n_lines,
            size: cubes.size,
            x,
            w,
        })
    }

    /// Total loss weight of the batch.
    pub fn weight_sum(&self) -> f64 {
        self.w.iter().map(|&v| v as f64).sum()
    }

    /// `(x, w)` as `[n, T, S, S]` tensors on `device`.
    pub fn to_device(&self, device: &Device) -> Result<(Tensor, Tensor)> {
        let shape = (self.n, self.n_lines, self.size, self.size);
        Ok((
            Tensor::from_slice(&self.x, shape, device)?,
            Tensor::from_slice(&self.w, shape, device)?,
        ))
    }
}

/// The weighted per-line, per-pixel mean of `cubes` `[T, S, S]` under `mode`'s loss weights
/// (0 where no galaxy has an unmasked pixel).
pub fn mean_map(cubes: &Cubes, mode: LossMode) -> Vec<f32> {
    let len = cubes.galaxy_len();
    let mut sum = vec![0.0f64; len];
    let mut weight = vec![0.0f64; len];
    for i in 0..cubes.n {
        let (x, w) = cubes.galaxy(i);
        for p in 0..len {
            let wv = loss_weight(w[p], mode) as f64;
            if wv > 0.0 && x[p].is_finite() {
                sum[p] += wv * x[p] as f64;
                weight[p] += wv;
            }
        }
    }
    sum.iter()
        .zip(&weight)
        .map(|(s, w)| if *w > 0.0 { (s / w) as f32 } else { 0.0 })
        .collect()
}

/// The network's input normalisation from a training set: the unweighted mean map over
/// unmasked pixels `[T, S, S]`, and per line the RMS departure from it over the same pixels
/// `[T]` (1 for a line with no unmasked pixel or no spread).
pub fn normalisation(cubes: &Cubes) -> (Vec<f32>, Vec<f32>) {
    let mean = mean_map(cubes, LossMode::Mse);
    let plane = cubes.size * cubes.size;
    let mut sum = vec![0.0f64; cubes.n_lines];
    let mut count = vec![0.0f64; cubes.n_lines];
    for i in 0..cubes.n {
        let (x, w) = cubes.galaxy(i);
        for (p, ((xv, wv), m)) in x.iter().zip(w).zip(&mean).enumerate() {
            if *wv > 0.0 && xv.is_finite() {
                let line = p / plane;
                sum[line] += ((xv - m) as f64).powi(2);
                count[line] += 1.0;
            }
        }
    }
    let scale = sum
        .iter()
        .zip(&count)
        .map(|(s, c)| {
            let rms = if *c > 0.0 { (s / c).sqrt() } else { 0.0 };
            if rms > 1e-12 { rms as f32 } else { 1.0 }
        })
        .collect();
    (mean, scale)
}

/// The loss of reconstructing every galaxy of `eval` by the [`mean_map`] of `train`: the floor
/// any useful model must beat. Returns `Σ w (x − mean)² / Σ w` over all of `eval`.
pub fn mean_baseline_loss(train: &Cubes, eval: &Cubes, mode: LossMode) -> Result<f64> {
    if train.galaxy_len() != eval.galaxy_len() {
        return Err(ModelError::Data(
            "train and eval cubes differ in shape".into(),
        ));
    }
    let mean = mean_map(train, mode);
    let len = train.galaxy_len();
    let (mut sse, mut total) = (0.0f64, 0.0f64);
    for i in 0..eval.n {
        let (x, w) = eval.galaxy(i);
        for p in 0..len {
            let wv = loss_weight(w[p], mode) as f64;
            if wv > 0.0 && x[p].is_finite() {
                sse += wv * (x[p] as f64 - mean[p] as f64).powi(2);
                total += wv;
            }
        }
    }
    if total == 0.0 {
        return Err(ModelError::Data(
            "no unmasked pixels to evaluate the baseline on".into(),
        ));
    }
    Ok(sse / total)
}

/// The factor that turns a KL weight in ELBO units into the weight of the training objective
/// ([`crate::config::KlUnits::Elbo`]): `2 s² / W̄`, with `W̄` the mean total loss weight per
/// galaxy of `train` and `s²` its mean-galaxy baseline loss.
///
/// Why: with a Gaussian decoder of pixel variance `s² / w` (w the loss weight), a galaxy's
/// negative ELBO is `Σ w (x − x̂)² / (2 s²) + KL`. The trained objective divides the squared
/// error by the batch's `Σ w ≈ B·W̄` and averages the KL over the batch, i.e. it is the
/// negative ELBO times `2 s² / W̄` when the KL carries the weight `2 s² / W̄`. `s²` is taken as
/// the mean-galaxy baseline, the data's variance around the mean map: in `mse` mode the pixel
/// noise is unknown, and in `chi2` mode the model's errors exceed the IVAR noise by far, so
/// the given variances would make every nat cost almost nothing.
pub fn elbo_kl_scale(train: &Cubes, mode: LossMode) -> Result<f64> {
    let baseline = mean_baseline_loss(train, train, mode)?;
    let total: f64 = (0..train.n)
        .map(|i| {
            let (x, w) = train.galaxy(i);
            x.iter()
                .zip(w)
                .filter(|(xv, _)| xv.is_finite())
                .map(|(_, &wv)| loss_weight(wv, mode) as f64)
                .sum::<f64>()
        })
        .sum();
    let per_galaxy = total / train.n.max(1) as f64;
    if per_galaxy.is_nan() || per_galaxy <= 0.0 {
        return Err(ModelError::Data(
            "no unmasked pixels to scale the KL term by".into(),
        ));
    }
    Ok(2.0 * baseline / per_galaxy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn split_is_deterministic_and_near_the_fraction() {
        let ids: Vec<String> = (0..4000)
            .map(|i| format!("{}-{}", 7000 + i / 10, 1900 + i))
            .collect();
        let (train, val) = split(&ids, 0.2);
        assert_eq!(train.len() + val.len(), ids.len());
        let frac = val.len() as f64 / ids.len() as f64;
        assert!((frac - 0.2).abs() < 0.03, "{frac}");
        // Membership depends on the name only, not on position.
        let mut reversed = ids.clone();
        reversed.reverse();
        let (_, val_rev) = split(&reversed, 0.2);
        let names = |v: &[usize], src: &[String]| {
            let mut n: Vec<String> = v.iter().map(|&i| src[i].clone()).collect();
            n.sort();
            n
        };
        assert_eq!(names(&val, &ids), names(&val_rev, &reversed));
        assert!(split(&ids, 0.0).1.is_empty());
    }

    #[test]
    fn batches_zero_masked_pixels_and_binarise_mse_weights() {
        let mut cubes = Cubes::zeros(1, 1, 2);
        cubes.x = vec![1.0, f32::NAN, 3.0, 4.0];
        cubes.w = vec![2.0, 5.0, 0.0, f32::INFINITY];
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let b =
            HostBatch::assemble(&cubes, &[0], LossMode::Mse, Augment::default(), &mut rng).unwrap();
        assert_eq!(b.x, vec![1.0, 0.0, 0.0, 0.0]);
        assert_eq!(b.w, vec![1.0, 0.0, 0.0, 0.0]);
        let b = HostBatch::assemble(&cubes, &[0], LossMode::Chi2, Augment::default(), &mut rng)
            .unwrap();
        assert_eq!(b.w, vec![2.0, 0.0, 0.0, 0.0]);
        assert!(
            HostBatch::assemble(&cubes, &[1], LossMode::Mse, Augment::default(), &mut rng).is_err()
        );
    }

    #[test]
    fn mean_baseline_on_a_known_case() {
        // Two one-pixel galaxies with x = 1 and 3: mean 2, squared error 1 each.
        let mut train = Cubes::zeros(2, 1, 1);
        train.x = vec![1.0, 3.0];
        train.w = vec![1.0, 1.0];
        assert_eq!(mean_map(&train, LossMode::Mse), vec![2.0]);
        assert!((mean_baseline_loss(&train, &train, LossMode::Mse).unwrap() - 1.0).abs() < 1e-12);
        // χ² weights 1 and 3: weighted mean 2.5; loss (1·2.25 + 3·0.25) / 4 = 0.75.
        train.w = vec![1.0, 3.0];
        assert_eq!(mean_map(&train, LossMode::Chi2), vec![2.5]);
        assert!((mean_baseline_loss(&train, &train, LossMode::Chi2).unwrap() - 0.75).abs() < 1e-12);
    }

    #[test]
    fn elbo_kl_scale_on_a_known_case() {
        // Two galaxies of two pixels; galaxy 1 has one masked pixel. Pixel 0: x = 1, 3 (mean 2,
        // squared errors 1, 1); pixel 1: x = 5 (mean 5) and masked. Baseline 2/3, W̄ = 3/2.
        let mut train = Cubes::zeros(2, 2, 1);
        train.x = vec![1.0, 5.0, 3.0, 7.0];
        train.w = vec![1.0, 1.0, 1.0, 0.0];
        let want = 2.0 * (2.0 / 3.0) / 1.5;
        let got = elbo_kl_scale(&train, LossMode::Mse).unwrap();
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        train.w = vec![0.0; 4];
        assert!(elbo_kl_scale(&train, LossMode::Mse).is_err());
    }
}
