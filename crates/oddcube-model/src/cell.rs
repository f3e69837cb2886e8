//! The ConvLSTM cell as one replaceable unit: the [`CellKernel`] trait, the plain-candle
//! reference kernel, and the layer that owns a cell's weights and unrolls it over a sequence.

use candle_core::{Module, Tensor};

use crate::config::CellKernelKind;
use crate::error::Result;

/// Computes one ConvLSTM step. Implementations must agree numerically (up to floating-point
/// summation order) with [`ReferenceCell`] and keep autograd working through candle ops or
/// custom ops with a backward pass.
pub trait CellKernel: Send + Sync {
    /// One step: `x` `[B, Cin, s, s]`, `h`/`c` `[B, H, s, s]`; `weight` `[4H, Cin + H, k, k]`
    /// (gate order i, f, o, g along the output channels), `bias` `[4H]`. Returns `(h', c')`.
    fn step(
        &self,
        weight: &Tensor,
        bias: &Tensor,
        x: &Tensor,
        h: &Tensor,
        c: &Tensor,
    ) -> Result<(Tensor, Tensor)>;
}

/// The straightforward kernel: one conv over `concat[x_t, h_{t−1}]`, one sigmoid over the
/// i/f/o block, tanh over g, then `c' = f·c + i·g`, `h' = o·tanh(c')`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReferenceCell;

impl CellKernel for ReferenceCell {
    fn step(
        &self,
        weight: &Tensor,
        bias: &Tensor,
        x: &Tensor,
        h: &Tensor,
        c: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let hidden = h.dim(1)?;
        let padding = weight.dim(2)? / 2;
        let input = Tensor::cat(&[x, h], 1)?;
        let gates = input
            .conv2d(weight, padding, 1, 1, 1)?
            .broadcast_add(&bias.reshape((1, 4 * hidden, 1, 1))?)?;
        let ifo = candle_nn::ops::sigmoid(&gates.narrow(1, 0, 3 * hidden)?)?;
        let g = gates.narrow(1, 3 * hidden, hidden)?.tanh()?;
        let i = ifo.narrow(1, 0, hidden)?;
        let f = ifo.narrow(1, hidden, hidden)?;
        let o = ifo.narrow(1, 2 * hidden, hidden)?;
        let c_next = ((f * c)? + (i * g)?)?;
        let h_next = (o * c_next.tanh()?)?;
        Ok((h_next, c_next))
    }
}

/// The kernel object for a configured kind.
pub fn kernel_for(kind: CellKernelKind) -> Box<dyn CellKernel> {
    match kind {
        CellKernelKind::Reference => Box::new(ReferenceCell),
    }
}

/// One ConvLSTM layer: its weights, its kernel, and its hidden width.
pub struct ConvLstmLayer {
    weight: Tensor,
    bias: Tensor,
    hidden: usize,
    kernel: Box<dyn CellKernel>,
}

impl ConvLstmLayer {
    /// A layer over the given weights (`[4H, Cin + H, k, k]` and `[4H]`).
    pub fn new(weight: Tensor, bias: Tensor, hidden: usize, kind: CellKernelKind) -> Self {
        Self {
            weight,
            bias,
            hidden,
            kernel: kernel_for(kind),
        }
    }

    /// Hidden channels H.
    pub fn hidden(&self) -> usize {
        self.hidden
    }

    /// Zero `(h, c)` for a batch of `b` maps of side `side`, on the weights' device.
    pub fn zero_state(&self, b: usize, side: usize) -> Result<(Tensor, Tensor)> {
        let z = Tensor::zeros(
            (b, self.hidden, side, side),
            self.weight.dtype(),
            self.weight.device(),
        )?;
        Ok((z.clone(), z))
    }

    /// One step from `state` with input `x`.
    pub fn step(&self, x: &Tensor, state: &(Tensor, Tensor)) -> Result<(Tensor, Tensor)> {
        self.kernel
            .step(&self.weight, &self.bias, x, &state.0, &state.1)
    }
}

/// Runs a stack of layers over `steps` inputs produced by `input(t)`; returns the top layer's
/// hidden state after every step. The stack starts from zero states.
pub fn unroll_stack(
    layers: &[ConvLstmLayer],
    steps: usize,
    batch: usize,
    side: usize,
    mut input: impl FnMut(usize) -> Result<Tensor>,
) -> Result<Vec<Tensor>> {
    let mut states = layers
        .iter()
        .map(|l| l.zero_state(batch, side))
        .collect::<Result<Vec<_>>>()?;
    let mut tops = Vec::with_capacity(steps);
    for t in 0..steps {
        let mut x = input(t)?;
        for (layer, state) in layers.iter().zip(states.iter_mut()) {
            *state = layer.step(&x, state)?;
            x = state.0.clone();
        }
        tops.push(x);
    }
    Ok(tops)
}

/// A conv2d with bias and "same"-style padding `k/2`, as used by every non-recurrent conv.
pub struct Conv {
    weight: Tensor,
    bias: Tensor,
    stride: usize,
}

impl Conv {
    /// A conv over `weight` `[Cout, Cin, k, k]` and `bias` `[Cout]`.
    pub fn new(weight: Tensor, bias: Tensor, stride: usize) -> Self {
        Self {
            weight,
            bias,
            stride,
        }
    }
}

impl Module for Conv {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let padding = self.weight.dim(2)? / 2;
        let cout = self.weight.dim(0)?;
        xs.conv2d(&self.weight, padding, self.stride, 1, 1)?
            .broadcast_add(&self.bias.reshape((1, cout, 1, 1))?)
    }
}

/// A fully connected layer `y = x Wᵀ + b` with `W` `[out, in]` (PyTorch layout).
pub struct Linear {
    weight: Tensor,
    bias: Tensor,
}

impl Linear {
    /// A linear layer over `weight` `[out, in]` and `bias` `[out]`.
    pub fn new(weight: Tensor, bias: Tensor) -> Self {
        Self { weight, bias }
    }
}

impl Module for Linear {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        xs.matmul(&self.weight.t()?)?.broadcast_add(&self.bias)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    /// The reference cell against a hand-computed 1×1 case: with one input channel, one hidden
    /// channel and a 1×1 kernel, the gates are scalars.
    #[test]
    fn reference_cell_matches_hand_computation() {
        let dev = Device::Cpu;
        // weight [4, 2, 1, 1]: gate q reads x with wx[q] and h with wh[q].
        let wx = [0.5f32, -0.3, 0.8, 1.2];
        let wh = [0.1f32, 0.4, -0.2, 0.7];
        let b = [0.05f32, 1.0, -0.1, 0.2];
        let mut w = Vec::new();
        for q in 0..4 {
            w.push(wx[q]);
            w.push(wh[q]);
        }
        let weight = Tensor::from_vec(w, (4, 2, 1, 1), &dev).unwrap();
        let bias = Tensor::from_vec(b.to_vec(), 4, &dev).unwrap();
        let (x, h, c) = (0.7f32, -0.4f32, 0.9f32);
        let t = |v: f32| Tensor::from_vec(vec![v], (1, 1, 1, 1), &dev).unwrap();
        let (h2, c2) = ReferenceCell
            .step(&weight, &bias, &t(x), &t(h), &t(c))
            .unwrap();
        let sig = |v: f32| 1.0 / (1.0 + (-v).exp());
        let pre = |q: usize| wx[q] * x + wh[q] * h + b[q];
        let (i, f, o, g) = (sig(pre(0)), sig(pre(1)), sig(pre(2)), pre(3).tanh());
        let c_exp = f * c + i * g;
        let h_exp = o * c_exp.tanh();
        let c_got = c2.flatten_all().unwrap().to_vec1::<f32>().unwrap()[0];
        let h_got = h2.flatten_all().unwrap().to_vec1::<f32>().unwrap()[0];
        assert!((c_got - c_exp).abs() < 1e-6, "{c_got} vs {c_exp}");
        assert!((h_got - h_exp).abs() < 1e-6, "{h_got} vs {h_exp}");
    }
}
