//! Loss terms: the weighted squared reconstruction error and the VAE's KL divergence.

use candle_core::Tensor;

use crate::error::Result;
use crate::network::Forward;

/// `Σ w (x − x̂)²` over the whole batch, as a scalar tensor (differentiable in `recon`).
pub fn weighted_sse(recon: &Tensor, x: &Tensor, w: &Tensor) -> Result<Tensor> {
    Ok((w * (recon - x)?.sqr()?)?.sum_all()?)
}

/// Per-galaxy `Σ w (x − x̂)²` and `Σ w`, each `[B]`.
pub fn per_galaxy_sse(recon: &Tensor, x: &Tensor, w: &Tensor) -> Result<(Tensor, Tensor)> {
    let b = recon.dim(0)?;
    let sse = (w * (recon - x)?.sqr()?)?.reshape((b, ()))?.sum(1)?;
    let weight = w.reshape((b, ()))?.sum(1)?;
    Ok((sse, weight))
}

/// KL divergence of `N(μ, σ²)` from `N(0, 1)` for each latent dimension, averaged over the
/// batch: `[D]` with entries `−½ mean_b (1 + log σ² − μ² − σ²)`.
pub fn kl_per_dim(mu: &Tensor, logvar: &Tensor) -> Result<Tensor> {
    let b = mu.dim(0)? as f64;
    let per_elem = ((logvar.affine(1.0, 1.0)? - mu.sqr()?)? - logvar.exp()?)?;
    Ok(per_elem.sum(0)?.affine(-0.5 / b, 0.0)?)
}

/// KL divergence of `N(μ, σ²)` from `N(0, 1)`, summed over latent dimensions and averaged over
/// the batch: `−½ Σ (1 + log σ² − μ² − σ²)`.
pub fn kl_divergence(mu: &Tensor, logvar: &Tensor) -> Result<Tensor> {
    Ok(kl_per_dim(mu, logvar)?.sum_all()?)
}

/// The free-bits KL of Kingma et al. 2016 (the IAF paper): `Σ_d max(KL_d, λ)` over the
/// batch-averaged per-dimension KL `kl_dims` `[D]`, with `λ = free_bits` nats per dimension.
/// A dimension carrying less than λ nats is not pushed further towards the prior (its
/// gradient is zero), so the encoder can put information into it without paying for the
/// first λ nats; above λ the term is the plain KL. `free_bits = 0` gives the plain KL.
pub fn free_bits_kl(kl_dims: &Tensor, free_bits: f64) -> Result<Tensor> {
    if free_bits <= 0.0 {
        return Ok(kl_dims.sum_all()?);
    }
    // max(KL, λ) = relu(KL − λ) + λ: relu's gradient is 0 below the threshold and 1 above.
    let d = kl_dims.elem_count() as f64;
    Ok(kl_dims
        .affine(1.0, -free_bits)?
        .relu()?
        .sum_all()?
        .affine(1.0, d * free_bits)?)
}

/// The weights of the VAE's KL term in one step's objective.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KlWeight {
    /// β of this step (after any warm-up), multiplying the (free-bits) KL.
    pub beta: f64,
    /// Free bits λ, nats per latent dimension (0 = plain KL).
    pub free_bits: f64,
}

/// The training objective of one batch and its parts.
pub struct Objective {
    /// `Σ w (x − x̂)² / Σ w + β·KL_λ`, the tensor to differentiate (`KL_λ`: [`free_bits_kl`]).
    pub loss: Tensor,
    /// The reconstruction sum `Σ w (x − x̂)²` (host value).
    pub sse: f64,
    /// The plain KL term before β and free bits (0 for the plain autoencoder), so that what is
    /// reported is the divergence itself, not the objective's clipped version.
    pub kl: f64,
    /// The plain KL of each latent dimension, batch-averaged (empty for the autoencoder).
    pub kl_dims: Vec<f64>,
}

/// Builds the objective for `forward` on a batch `(x, w)` with total weight `weight_sum`.
/// A batch with no weight contributes a zero loss (with zero gradients).
pub fn objective(
    forward: &Forward,
    x: &Tensor,
    w: &Tensor,
    weight_sum: f64,
    kl_weight: KlWeight,
) -> Result<Objective> {
    let sse_t = weighted_sse(&forward.recon, x, w)?;
    let sse = sse_t.to_scalar::<f32>()? as f64;
    let mut loss = sse_t.affine(
        if weight_sum > 0.0 {
            1.0 / weight_sum
        } else {
            0.0
        },
        0.0,
    )?;
    let (mut kl, mut kl_dims) = (0.0, Vec::new());
    if let Some((mu, logvar)) = &forward.posterior {
        let dims_t = kl_per_dim(mu, logvar)?;
        kl_dims = dims_t
            .to_vec1::<f32>()?
            .into_iter()
            .map(f64::from)
            .collect();
        kl = kl_dims.iter().sum();
        if kl_weight.beta > 0.0 {
            let kl_t = free_bits_kl(&dims_t, kl_weight.free_bits)?;
            loss = (loss + kl_t.affine(kl_weight.beta, 0.0)?)?;
        }
    }
    Ok(Objective {
        loss,
        sse,
        kl,
        kl_dims,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn kl_on_known_cases() {
        let dev = Device::Cpu;
        let zeros = Tensor::zeros((2, 3), candle_core::DType::F32, &dev).unwrap();
        let ones = Tensor::ones((2, 3), candle_core::DType::F32, &dev).unwrap();
        let kl0 = kl_divergence(&zeros, &zeros)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(kl0, 0.0);
        // μ = 1, log σ² = 0: ½ per dimension, 3 dimensions, averaged over the batch.
        let kl1 = kl_divergence(&ones, &zeros)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((kl1 - 1.5).abs() < 1e-6, "{kl1}");
        // μ = 0, log σ² = 1: ½ (e − 2) per dimension.
        let kl2 = kl_divergence(&zeros, &ones)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let want = 3.0 * 0.5 * (std::f32::consts::E - 2.0);
        assert!((kl2 - want).abs() < 1e-5, "{kl2} vs {want}");
    }

    /// KL of one dimension with mean μ and log-variance `lv`: ½ (μ² + e^lv − 1 − lv).
    fn kl1(mu: f64, lv: f64) -> f64 {
        0.5 * (mu * mu + lv.exp() - 1.0 - lv)
    }

    #[test]
    fn kl_per_dim_averages_over_the_batch_and_sums_to_the_kl() {
        let dev = Device::Cpu;
        let mu = Tensor::new(&[[1.0f32, 0.0], [3.0, 0.0]], &dev).unwrap();
        let lv = Tensor::new(&[[0.0f32, 1.0], [0.0, -1.0]], &dev).unwrap();
        let dims = kl_per_dim(&mu, &lv).unwrap().to_vec1::<f32>().unwrap();
        let want = [
            (kl1(1.0, 0.0) + kl1(3.0, 0.0)) / 2.0,
            (kl1(0.0, 1.0) + kl1(0.0, -1.0)) / 2.0,
        ];
        for (g, w) in dims.iter().zip(want) {
            assert!((*g as f64 - w).abs() < 1e-6, "{dims:?} vs {want:?}");
        }
        let total = kl_divergence(&mu, &lv).unwrap().to_scalar::<f32>().unwrap();
        assert!((total as f64 - want.iter().sum::<f64>()).abs() < 1e-6);
    }

    /// Value and gradient of the free-bits KL on one galaxy with three latent dimensions whose
    /// KLs are 0.045, 0.574 and 2.053 nats: with λ = 0.25 the first is below the threshold, so
    /// it counts λ and its μ and log σ² get no gradient; the others count and differentiate
    /// like the plain KL (∂/∂μ = μ, ∂/∂ log σ² = ½ (σ² − 1)).
    #[test]
    fn free_bits_value_and_gradient_on_a_hand_made_case() {
        let dev = Device::Cpu;
        let (mu_v, lv_v) = ([0.3f64, 1.0, -2.0], [0.0f64, 0.5, -0.5]);
        let lambda = 0.25;
        let kls: Vec<f64> = mu_v.iter().zip(&lv_v).map(|(&m, &l)| kl1(m, l)).collect();
        assert!(
            kls[0] < lambda && kls[1] > lambda && kls[2] > lambda,
            "{kls:?}"
        );
        let to_var = |v: &[f64; 3]| {
            let row: Vec<f32> = v.iter().map(|&x| x as f32).collect();
            candle_core::Var::from_tensor(&Tensor::new(&[[row[0], row[1], row[2]]], &dev).unwrap())
                .unwrap()
        };
        let (mu, lv) = (to_var(&mu_v), to_var(&lv_v));
        let dims = kl_per_dim(mu.as_tensor(), lv.as_tensor()).unwrap();
        let fb = free_bits_kl(&dims, lambda).unwrap();
        let value = fb.to_scalar::<f32>().unwrap() as f64;
        assert!(
            (value - (lambda + kls[1] + kls[2])).abs() < 1e-5,
            "{value} vs {}",
            lambda + kls[1] + kls[2]
        );
        let grads = fb.backward().unwrap();
        let g = |v: &candle_core::Var| -> Vec<f64> {
            grads
                .get(v)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
                .into_iter()
                .map(f64::from)
                .collect()
        };
        let (g_mu, g_lv) = (g(&mu), g(&lv));
        let want_mu = [0.0, mu_v[1], mu_v[2]];
        let want_lv = [
            0.0,
            0.5 * (lv_v[1].exp() - 1.0),
            0.5 * (lv_v[2].exp() - 1.0),
        ];
        for k in 0..3 {
            assert!(
                (g_mu[k] - want_mu[k]).abs() < 1e-5,
                "∂/∂μ {g_mu:?} vs {want_mu:?}"
            );
            assert!(
                (g_lv[k] - want_lv[k]).abs() < 1e-5,
                "∂/∂lv {g_lv:?} vs {want_lv:?}"
            );
        }
        // λ = 0 is the plain KL, gradient included.
        let plain = free_bits_kl(&dims, 0.0).unwrap();
        let total: f64 = kls.iter().sum();
        assert!((plain.to_scalar::<f32>().unwrap() as f64 - total).abs() < 1e-5);
        let grads = plain.backward().unwrap();
        let g0 = grads
            .get(&mu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert!((g0[0] as f64 - mu_v[0]).abs() < 1e-6, "{g0:?}");
    }

    #[test]
    fn objective_reports_the_plain_kl_and_trains_the_weighted_free_bits_term() {
        let dev = Device::Cpu;
        let x = Tensor::new(&[[[[1.0f32, 2.0]]]], &dev).unwrap();
        let w = Tensor::ones((1, 1, 1, 2), candle_core::DType::F32, &dev).unwrap();
        let recon = Tensor::new(&[[[[1.0f32, 4.0]]]], &dev).unwrap();
        let mu = Tensor::new(&[[0.3f32, 2.0]], &dev).unwrap();
        let lv = Tensor::zeros((1, 2), candle_core::DType::F32, &dev).unwrap();
        let forward = Forward {
            recon,
            z: mu.clone(),
            posterior: Some((mu, lv)),
        };
        let (k0, k1) = (kl1(0.3, 0.0), kl1(2.0, 0.0));
        let weight = KlWeight {
            beta: 0.1,
            free_bits: 0.5,
        };
        let obj = objective(&forward, &x, &w, 2.0, weight).unwrap();
        assert_eq!(obj.sse, 4.0);
        assert!((obj.kl - (k0 + k1)).abs() < 1e-6, "{}", obj.kl);
        assert_eq!(obj.kl_dims.len(), 2);
        let loss = obj.loss.to_scalar::<f32>().unwrap() as f64;
        let want = 4.0 / 2.0 + 0.1 * (0.5 + k1);
        assert!((loss - want).abs() < 1e-6, "{loss} vs {want}");
        // β = 0 (the first warm-up steps at most) trains the reconstruction alone.
        let none = KlWeight {
            beta: 0.0,
            free_bits: 0.5,
        };
        let obj = objective(&forward, &x, &w, 2.0, none).unwrap();
        assert_eq!(obj.loss.to_scalar::<f32>().unwrap(), 2.0);
        assert!(obj.kl > 0.0);
    }

    #[test]
    fn weighted_sse_ignores_zero_weights() {
        let dev = Device::Cpu;
        let recon = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], (1, 1, 2, 2), &dev).unwrap();
        let x = Tensor::from_vec(vec![0.0f32, 2.0, 100.0, 5.0], (1, 1, 2, 2), &dev).unwrap();
        let w = Tensor::from_vec(vec![1.0f32, 1.0, 0.0, 2.0], (1, 1, 2, 2), &dev).unwrap();
        let sse = weighted_sse(&recon, &x, &w)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(sse, 1.0 + 0.0 + 2.0);
        let (per, weight) = per_galaxy_sse(&recon, &x, &w).unwrap();
        assert_eq!(per.to_vec1::<f32>().unwrap(), vec![3.0]);
        assert_eq!(weight.to_vec1::<f32>().unwrap(), vec![4.0]);
    }
}
