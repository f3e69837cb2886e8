//! Helpers shared by the kernel tests: seeded random tensors and max-norm differences.

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor};

/// A `[shape]` tensor of values in [−1, 1) from a xorshift generator seeded by `seed`.
pub fn random(shape: &[usize], seed: u64) -> Tensor {
    let len: usize = shape.iter().product();
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let values: Vec<f32> = (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 20_000) as f32 / 10_000.0 - 1.0
        })
        .collect();
    Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
}

/// `max |t|`.
pub fn max_abs(t: &Tensor) -> f32 {
    t.abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// `max |a − b|`.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    max_abs(&(a - b).unwrap())
}

/// The gradients of `sum(y ⊙ probe)`, with `probe` [`random`] of `y`'s shape from `seed`: a loss
/// that weights every output differently, so no gradient entry hides behind a symmetric one.
pub fn probed_backward(y: &Tensor, seed: u64) -> GradStore {
    let probe = random(y.dims(), seed);
    (y * &probe).unwrap().sum_all().unwrap().backward().unwrap()
}
