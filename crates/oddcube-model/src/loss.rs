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

/// KL divergence of `N(μ, σ²)` from `N(0, 1)`, summed over latent dimensions and averaged over
/// the batch: `−½ Σ (1 + log σ² − μ² − σ²)`.
pub fn kl_divergence(mu: &Tensor, logvar: &Tensor) -> Result<Tensor> {
    let b = mu.dim(0)? as f64;
    let per_elem = ((logvar.affine(1.0, 1.0)? - mu.sqr()?)? - logvar.exp()?)?;
    Ok(per_elem.sum_all()?.affine(-0.5 / b, 0.0)?)
}

/// The training objective of one batch and its parts.
pub struct Objective {
    /// `Σ w (x − x̂)² / Σ w + β·KL`, the tensor to differentiate.
    pub loss: Tensor,
    /// The reconstruction sum `Σ w (x − x̂)²` (host value).
    pub sse: f64,
    /// The KL term before β (0 for the plain autoencoder).
    pub kl: f64,
}

/// Builds the objective for `forward` on a batch `(x, w)` with total weight `weight_sum`.
/// A batch with no weight contributes a zero loss (with zero gradients).
pub fn objective(
    forward: &Forward,
    x: &Tensor,
    w: &Tensor,
    weight_sum: f64,
    beta: f64,
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
    let mut kl = 0.0;
    if let Some((mu, logvar)) = &forward.posterior {
        let kl_t = kl_divergence(mu, logvar)?;
        kl = kl_t.to_scalar::<f32>()? as f64;
        loss = (loss + kl_t.affine(beta, 0.0)?)?;
    }
    Ok(Objective { loss, sse, kl })
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
