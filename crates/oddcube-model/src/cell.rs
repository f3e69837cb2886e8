//! The ConvLSTM cell as one replaceable unit: the [`CellKernel`] trait, the plain-candle
//! reference kernel, and the layer that owns a cell's weights and unrolls it over a sequence.

use candle_core::{Device, Module, Tensor};

use crate::config::CellKernelKind;
use crate::error::Result;
use crate::kernels::{self, ConvGeometry, ConvSpec, LstmWeights};

/// A ConvLSTM layer's state between steps, in the representation of the kernel that made it.
pub enum CellState {
    /// Separate `h` and `c` maps `[B, H, s, s]`.
    Split {
        /// Hidden map.
        h: Tensor,
        /// Cell map.
        c: Tensor,
    },
    /// The fused kernel's packed `[B, 2H, s, s]` tensor (h, then c).
    Packed {
        /// The packed state.
        state: Tensor,
        /// Hidden channels H.
        hidden: usize,
    },
}

impl CellState {
    /// The hidden map `h` `[B, H, s, s]`.
    pub fn h(&self) -> Result<Tensor> {
        Ok(match self {
            Self::Split { h, .. } => h.clone(),
            Self::Packed { state, hidden } => kernels::lstm::state_h(state, *hidden)?,
        })
    }

    /// The cell map `c` `[B, H, s, s]`.
    pub fn c(&self) -> Result<Tensor> {
        Ok(match self {
            Self::Split { c, .. } => c.clone(),
            Self::Packed { state, hidden } => kernels::lstm::state_c(state, *hidden)?,
        })
    }
}

/// A layer's weights prepared for a sequence (once per forward pass, not per step).
pub enum PreparedWeights {
    /// The parameters as they are: `[4H, Cin + H, k, k]` and `[4H]`.
    Plain {
        /// Gate weights.
        weight: Tensor,
        /// Gate biases.
        bias: Tensor,
    },
    /// Packed for the fused kernel.
    Packed(LstmWeights),
}

/// Computes ConvLSTM steps. Implementations must agree numerically (up to floating-point
/// summation order) with [`ReferenceCell`] and keep autograd working through candle ops or
/// custom ops with a backward pass. Gate order along the weight's output channels: i, f, o, g.
pub trait CellKernel: Send + Sync {
    /// Prepares `weight` `[4H, Cin + H, k, k]` and `bias` `[4H]` for a sequence of steps.
    fn prepare(&self, weight: &Tensor, bias: &Tensor) -> Result<PreparedWeights>;
    /// The zero state for a batch of `batch` maps of side `side`.
    fn zero_state(
        &self,
        batch: usize,
        hidden: usize,
        side: usize,
        device: &Device,
    ) -> Result<CellState>;
    /// One step with input `x` `[B, Cin, s, s]` from `state`.
    fn step(&self, weights: &PreparedWeights, x: &Tensor, state: &CellState) -> Result<CellState>;
}

/// The straightforward kernel: one candle conv over `concat[x_t, h_{t−1}]`, one sigmoid over
/// the i/f/o block, tanh over g, then `c' = f·c + i·g`, `h' = o·tanh(c')`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReferenceCell;

impl ReferenceCell {
    /// One step on plain tensors: returns `(h', c')`.
    pub fn step_plain(
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

impl CellKernel for ReferenceCell {
    fn prepare(&self, weight: &Tensor, bias: &Tensor) -> Result<PreparedWeights> {
        Ok(PreparedWeights::Plain {
            weight: weight.clone(),
            bias: bias.clone(),
        })
    }

    fn zero_state(
        &self,
        batch: usize,
        hidden: usize,
        side: usize,
        device: &Device,
    ) -> Result<CellState> {
        let z = Tensor::zeros((batch, hidden, side, side), candle_core::DType::F32, device)?;
        Ok(CellState::Split { h: z.clone(), c: z })
    }

    fn step(&self, weights: &PreparedWeights, x: &Tensor, state: &CellState) -> Result<CellState> {
        let PreparedWeights::Plain { weight, bias } = weights else {
            return Err(crate::error::ModelError::Config(
                "reference ConvLSTM cell given packed weights".into(),
            ));
        };
        let (h, c) = Self::step_plain(weight, bias, x, &state.h()?, &state.c()?)?;
        Ok(CellState::Split { h, c })
    }
}

/// The fused CPU kernel ([`kernels::lstm`]): one patch gather, one GEMM and one element-wise
/// pass per step, with a GEMM backward that reuses the saved gate activations.
#[derive(Debug, Clone, Copy, Default)]
pub struct FusedCell;

impl CellKernel for FusedCell {
    fn prepare(&self, weight: &Tensor, bias: &Tensor) -> Result<PreparedWeights> {
        Ok(PreparedWeights::Packed(kernels::pack_lstm_weights(
            weight, bias,
        )?))
    }

    fn zero_state(
        &self,
        batch: usize,
        hidden: usize,
        side: usize,
        device: &Device,
    ) -> Result<CellState> {
        Ok(CellState::Packed {
            state: kernels::lstm_zero_state(batch, hidden, side, device)?,
            hidden,
        })
    }

    fn step(&self, weights: &PreparedWeights, x: &Tensor, state: &CellState) -> Result<CellState> {
        let (PreparedWeights::Packed(packed), CellState::Packed { state, hidden }) =
            (weights, state)
        else {
            return Err(crate::error::ModelError::Config(
                "fused ConvLSTM cell given another kernel's weights or state".into(),
            ));
        };
        Ok(CellState::Packed {
            state: kernels::lstm_step(packed, x, state)?,
            hidden: *hidden,
        })
    }
}

/// Whether `kind` can run on `device`: the fused kernels exist for the CPU only, so elsewhere
/// the reference composition runs instead (same numerics up to summation order).
pub fn effective_kernel(kind: CellKernelKind, device: &Device) -> CellKernelKind {
    match kind {
        CellKernelKind::Fused if device.is_cpu() => CellKernelKind::Fused,
        _ => CellKernelKind::Reference,
    }
}

/// The kernel object for a kind (see [`effective_kernel`] for the device fallback).
pub fn kernel_for(kind: CellKernelKind) -> Box<dyn CellKernel> {
    match kind {
        CellKernelKind::Reference => Box::new(ReferenceCell),
        CellKernelKind::Fused => Box::new(FusedCell),
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
    /// A layer over the given weights (`[4H, Cin + H, k, k]` and `[4H]`), computed by the
    /// `kind` kernel where the weights' device supports it.
    pub fn new(weight: Tensor, bias: Tensor, hidden: usize, kind: CellKernelKind) -> Self {
        let kind = effective_kernel(kind, weight.device());
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
    let prepared = layers
        .iter()
        .map(|l| l.kernel.prepare(&l.weight, &l.bias))
        .collect::<Result<Vec<_>>>()?;
    let mut states = layers
        .iter()
        .map(|l| {
            l.kernel
                .zero_state(batch, l.hidden, side, l.weight.device())
        })
        .collect::<Result<Vec<_>>>()?;
    let mut tops = Vec::with_capacity(steps);
    for t in 0..steps {
        let mut x = input(t)?;
        for ((layer, weights), state) in layers.iter().zip(&prepared).zip(states.iter_mut()) {
            *state = layer.kernel.step(weights, &x, state)?;
            x = state.h()?;
        }
        tops.push(x);
    }
    Ok(tops)
}

/// A conv2d with bias and "same"-style padding `k/2`, optionally reading its input through a
/// nearest-neighbour upsampling and followed by a ReLU; the fused CPU kernel where enabled.
pub struct Conv {
    weight: Tensor,
    bias: Tensor,
    spec: ConvSpec,
    fused: bool,
}

impl Conv {
    /// A conv over `weight` `[Cout, Cin, k, k]` and `bias` `[Cout]`.
    pub fn new(
        weight: Tensor,
        bias: Tensor,
        stride: usize,
        upsample: usize,
        relu: bool,
        kind: CellKernelKind,
    ) -> Result<Self> {
        let kernel = weight.dim(2)?;
        let fused = effective_kernel(kind, weight.device()) == CellKernelKind::Fused;
        Ok(Self {
            weight,
            bias,
            spec: ConvSpec {
                geometry: ConvGeometry {
                    upsample,
                    ..ConvGeometry::same(kernel, stride)
                },
                relu,
            },
            fused,
        })
    }
}

impl Module for Conv {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        kernels::conv2d(xs, &self.weight, &self.bias, self.spec, self.fused)
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
    use crate::config::CellKernelKind;
    use crate::kernels::test_support::{max_abs, random};
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
        let (h2, c2) = ReferenceCell::step_plain(&weight, &bias, &t(x), &t(h), &t(c)).unwrap();
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

    /// A scalar that depends on every step's h and on the last c, so the gradient checks see
    /// both outputs and the recurrence.
    fn unrolled_loss(
        kind: CellKernelKind,
        weight: &Tensor,
        bias: &Tensor,
        xs: &[Tensor],
        probe: &Tensor,
    ) -> Tensor {
        let kernel = kernel_for(kind);
        let (b, _, s, _) = xs[0].dims4().unwrap();
        let hidden = bias.dim(0).unwrap() / 4;
        let weights = kernel.prepare(weight, bias).unwrap();
        let mut state = kernel.zero_state(b, hidden, s, &Device::Cpu).unwrap();
        let mut loss = Tensor::zeros((), candle_core::DType::F32, &Device::Cpu).unwrap();
        for x in xs {
            state = kernel.step(&weights, x, &state).unwrap();
            let term = (state.h().unwrap() * probe).unwrap().sum_all().unwrap();
            loss = (loss + term).unwrap();
        }
        let c_term = state.c().unwrap().sqr().unwrap().sum_all().unwrap();
        (loss + c_term).unwrap()
    }

    /// The fused kernel against the reference over a 3-step unroll: the loss and the gradients
    /// of the weight, the bias and every input. Shapes cover batch 1, odd sides, 1×1 and 5×5
    /// kernels. Tolerance: f32 sums of up to ~700 products accumulated over 3 steps in a
    /// different order, plus the fast exp (≤ 3e-7 relative): 1e-4 of the gradient's scale.
    #[test]
    fn fused_cell_matches_reference_values_and_gradients() {
        use candle_core::Var;
        // (batch, cin, hidden, side, kernel)
        let cases = [
            (2, 3, 4, 5, 3),
            (1, 2, 3, 4, 3),
            (3, 1, 2, 3, 1),
            (2, 4, 5, 7, 5),
        ];
        for (n, &(b, cin, hidden, side, k)) in cases.iter().enumerate() {
            let seed = 100 * n as u64;
            let weight =
                Var::from_tensor(&(random(&[4 * hidden, cin + hidden, k, k], seed) * 0.5).unwrap())
                    .unwrap();
            let bias = Var::from_tensor(&random(&[4 * hidden], seed + 1)).unwrap();
            let xs: Vec<Var> = (0..3)
                .map(|t| Var::from_tensor(&random(&[b, cin, side, side], seed + 2 + t)).unwrap())
                .collect();
            let x_tensors: Vec<Tensor> = xs.iter().map(|v| v.as_tensor().clone()).collect();
            let probe = random(&[b, hidden, side, side], seed + 9);
            let fused = unrolled_loss(CellKernelKind::Fused, &weight, &bias, &x_tensors, &probe);
            let reference = unrolled_loss(
                CellKernelKind::Reference,
                &weight,
                &bias,
                &x_tensors,
                &probe,
            );
            let (lf, lr) = (
                fused.to_scalar::<f32>().unwrap(),
                reference.to_scalar::<f32>().unwrap(),
            );
            assert!(
                (lf - lr).abs() < 1e-4 * lr.abs().max(1.0),
                "case {n}: {lf} vs {lr}"
            );
            let gf = fused.backward().unwrap();
            let gr = reference.backward().unwrap();
            let mut vars = vec![weight.as_tensor(), bias.as_tensor()];
            vars.extend(xs.iter().map(|v| v.as_tensor()));
            for (i, var) in vars.into_iter().enumerate() {
                let (a, r) = (gf.get(var).unwrap(), gr.get(var).unwrap());
                let diff = max_abs(&(a - r).unwrap());
                let scale = max_abs(r).max(1.0);
                assert!(
                    diff < 1e-4 * scale,
                    "case {n} tensor {i}: {diff} (scale {scale})"
                );
            }
        }
    }

    /// The fused kernel's gradient against central finite differences of its own forward pass,
    /// for a few weight, bias and input entries. With step 1e-2 the truncation error is
    /// ~1e-5 of the third derivative and the f32 rounding of the loss ~1e-6 / 1e-2 = 1e-4.
    #[test]
    fn fused_cell_gradient_matches_finite_differences() {
        use candle_core::Var;
        let (b, cin, hidden, side, k) = (1, 2, 3, 5, 3);
        let weight = (random(&[4 * hidden, cin + hidden, k, k], 7) * 0.5).unwrap();
        let bias = random(&[4 * hidden], 8);
        let xs: Vec<Tensor> = (0..3)
            .map(|t| random(&[b, cin, side, side], 9 + t))
            .collect();
        let probe = random(&[b, hidden, side, side], 20);
        let loss_of = |w: &Tensor, bb: &Tensor, x0: &Tensor| -> f64 {
            let mut inputs = xs.clone();
            inputs[0] = x0.clone();
            unrolled_loss(CellKernelKind::Fused, w, bb, &inputs, &probe)
                .to_scalar::<f32>()
                .unwrap() as f64
        };
        let wv = Var::from_tensor(&weight).unwrap();
        let bv = Var::from_tensor(&bias).unwrap();
        let xv = Var::from_tensor(&xs[0]).unwrap();
        let mut inputs = xs.clone();
        inputs[0] = xv.as_tensor().clone();
        let grads = unrolled_loss(CellKernelKind::Fused, &wv, &bv, &inputs, &probe)
            .backward()
            .unwrap();
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let bump = |t: &Tensor, i: usize, d: f32| {
            let mut v = flat(t);
            v[i] += d;
            Tensor::from_vec(v, t.dims(), &Device::Cpu).unwrap()
        };
        let h = 1e-2f32;
        let central = |plus: f64, minus: f64| (plus - minus) / (2.0 * h as f64);
        let close = |fd: f64, g: f32| (fd - g as f64).abs() < 2e-3 * fd.abs().max(1.0);
        let gw = flat(grads.get(&wv).unwrap());
        for i in [0, 17, 44, 101, 179] {
            let fd = central(
                loss_of(&bump(&weight, i, h), &bias, &xs[0]),
                loss_of(&bump(&weight, i, -h), &bias, &xs[0]),
            );
            assert!(close(fd, gw[i]), "w[{i}]: {fd} vs {}", gw[i]);
        }
        let gb = flat(grads.get(&bv).unwrap());
        for (i, &g) in gb.iter().enumerate() {
            let fd = central(
                loss_of(&weight, &bump(&bias, i, h), &xs[0]),
                loss_of(&weight, &bump(&bias, i, -h), &xs[0]),
            );
            assert!(close(fd, g), "b[{i}]: {fd} vs {g}");
        }
        let gx = flat(grads.get(&xv).unwrap());
        for i in [0, 12, 24, 31, 49] {
            let fd = central(
                loss_of(&weight, &bias, &bump(&xs[0], i, h)),
                loss_of(&weight, &bias, &bump(&xs[0], i, -h)),
            );
            assert!(close(fd, gx[i]), "x[{i}]: {fd} vs {}", gx[i]);
        }
    }
}
