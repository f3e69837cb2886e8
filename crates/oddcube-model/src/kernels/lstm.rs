//! The fused ConvLSTM step: gate GEMM plus the whole sigmoid/tanh and c/h update in one op,
//! with a backward that reads the gate activations saved in the forward output.
//!
//! The op threads one *state* tensor `[B, 6H, s, s]` from step to step: channels
//! `[i, f, o, g | h | c]` — the four gate activations of the step that produced it, then the
//! new hidden and cell maps. Keeping the activations in the output is what lets the backward
//! skip recomputing the gate GEMM; callers read `h` and `c` through [`state_h`] and
//! [`state_c`]. Gradients reaching the activation channels are ignored: only this op's own
//! backward reads them.

use candle_core::{CpuStorage, CustomOp3, Device, Layout, Shape, Tensor};

use super::conv::{InputGrad, weight_grad};
use super::math::{sigmoid, tanh};
use super::patches::{
    ConvGeometry, Mat, contiguous, im2col, images_per_chunk, matmul, par_fill, planes, with_scratch,
};

/// State channels per hidden channel: four gate activations, h and c.
const BLOCKS: usize = 6;

/// A ConvLSTM layer's gate weights packed once per sequence as `[4H, K + 1]` (the `[4H, Cin+H,
/// k, k]` weight flattened per row, then the bias), so each step reads one matrix. Built with
/// candle ops, so gradients reach the original weight and bias.
pub struct LstmWeights {
    packed: Tensor,
    hidden: usize,
    kernel: usize,
}

/// Packs `weight` `[4H, Cin + H, k, k]` and `bias` `[4H]` for [`lstm_step`].
pub fn pack_lstm_weights(weight: &Tensor, bias: &Tensor) -> candle_core::Result<LstmWeights> {
    let (gates, inputs, kernel, _) = weight.dims4()?;
    let packed = Tensor::cat(
        &[
            weight.reshape((gates, inputs * kernel * kernel))?,
            bias.reshape((gates, 1))?,
        ],
        1,
    )?;
    Ok(LstmWeights {
        packed,
        hidden: gates / 4,
        kernel,
    })
}

/// The all-zero state `[B, 6H, s, s]` a sequence starts from.
pub fn lstm_zero_state(
    batch: usize,
    hidden: usize,
    side: usize,
    device: &Device,
) -> candle_core::Result<Tensor> {
    Tensor::zeros(
        (batch, BLOCKS * hidden, side, side),
        candle_core::DType::F32,
        device,
    )
}

/// The hidden map `h` `[B, H, s, s]` of a state (a view, no copy).
pub fn state_h(state: &Tensor, hidden: usize) -> candle_core::Result<Tensor> {
    state.narrow(1, 4 * hidden, hidden)
}

/// The cell map `c` `[B, H, s, s]` of a state (a view, no copy).
pub fn state_c(state: &Tensor, hidden: usize) -> candle_core::Result<Tensor> {
    state.narrow(1, 5 * hidden, hidden)
}

/// One step from `state` with input `x` `[B, Cin, s, s]`; returns the next state. CPU, f32.
pub fn lstm_step(weights: &LstmWeights, x: &Tensor, state: &Tensor) -> candle_core::Result<Tensor> {
    x.apply_op3(
        state,
        &weights.packed,
        CellStep {
            hidden: weights.hidden,
            kernel: weights.kernel,
        },
    )
}

/// The forward op over `(x, state, packed weights)`.
struct CellStep {
    hidden: usize,
    kernel: usize,
}

simd_dispatch! {
/// The element-wise part of a step for one hidden channel of one image: pre-activations of
/// the four gates (before bias), the previous c, and the six output maps.
fn cell_update(pre: [&[f32]; 4], bias: [f32; 4], c_prev: &[f32], out: [&mut [f32]; 6]) {
    let n = c_prev.len();
    let [ai, af, ao, ag, h, c] = out;
    let (ai, af, ao, ag, h, c) = (
        &mut ai[..n],
        &mut af[..n],
        &mut ao[..n],
        &mut ag[..n],
        &mut h[..n],
        &mut c[..n],
    );
    let (pi, pf, po, pg) = (&pre[0][..n], &pre[1][..n], &pre[2][..n], &pre[3][..n]);
    for p in 0..n {
        let i = sigmoid(pi[p] + bias[0]);
        let f = sigmoid(pf[p] + bias[1]);
        let o = sigmoid(po[p] + bias[2]);
        let g = tanh(pg[p] + bias[3]);
        let cn = f * c_prev[p] + i * g;
        ai[p] = i;
        af[p] = f;
        ao[p] = o;
        ag[p] = g;
        c[p] = cn;
        h[p] = o * tanh(cn);
    }
}
}

impl CustomOp3 for CellStep {
    fn name(&self) -> &'static str {
        "oddcube-fused-convlstm-step"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ss: &CpuStorage,
        sl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let hidden = self.hidden;
        let (n, x) = planes(xs, xl, "ConvLSTM input")?;
        let (ns, state) = planes(ss, sl, "ConvLSTM state")?;
        let w = contiguous(ws, wl, "ConvLSTM weights")?;
        let g = ConvGeometry::same(self.kernel, 1);
        let k = (x.channels + hidden) * self.kernel * self.kernel;
        if ns != n
            || state.channels != BLOCKS * hidden
            || (state.height, state.width) != (x.height, x.width)
            || wl.dims() != [4 * hidden, k + 1]
        {
            candle_core::bail!(
                "ConvLSTM step shapes disagree: input {:?}, state {:?}, weights {:?}",
                xl.dims(),
                sl.dims(),
                wl.dims()
            );
        }
        let (side_h, side_w) = (x.height, x.width);
        let p = side_h * side_w;
        let h_prev = state.channels(4 * hidden, hidden);
        let c_prev = state.channels(5 * hidden, hidden);
        let per = images_per_chunk(n, k * p);
        let image = BLOCKS * hidden * p;
        let out = par_fill(n * image, per * image, |chunk, out| {
            let first = chunk * per;
            let count = out.len() / image;
            let np = count * p;
            with_scratch(k * np + 4 * hidden * np, |buf| {
                let (cols, gates) = buf.split_at_mut(k * np);
                im2col(&[x, h_prev], first, count, &g, (side_h, side_w), cols);
                matmul(
                    (4 * hidden, np, k),
                    gates,
                    np,
                    false,
                    Mat {
                        data: w,
                        row_stride: k + 1,
                        col_stride: 1,
                    },
                    Mat {
                        data: cols,
                        row_stride: np,
                        col_stride: 1,
                    },
                );
                let gates: &[f32] = gates;
                for (i, img) in out.chunks_exact_mut(image).enumerate() {
                    let mut blocks = img.chunks_exact_mut(hidden * p);
                    let mut next = || blocks.next().unwrap_or_default();
                    let mut maps: [&mut [f32]; 6] =
                        [next(), next(), next(), next(), next(), next()];
                    for q in 0..hidden {
                        let row = |gate: usize| {
                            let r = (gate * hidden + q) * np + i * p;
                            &gates[r..r + p]
                        };
                        let bias = |gate: usize| w[(gate * hidden + q) * (k + 1) + k];
                        let [a, b, c, d, e, f] = &mut maps;
                        let span = q * p..(q + 1) * p;
                        cell_update(
                            [row(0), row(1), row(2), row(3)],
                            [bias(0), bias(1), bias(2), bias(3)],
                            c_prev.plane(first + i, q),
                            [
                                &mut a[span.clone()],
                                &mut b[span.clone()],
                                &mut c[span.clone()],
                                &mut d[span.clone()],
                                &mut e[span.clone()],
                                &mut f[span],
                            ],
                        );
                    }
                }
            });
        });
        Ok((
            CpuStorage::F32(out),
            Shape::from((n, BLOCKS * hidden, side_h, side_w)),
        ))
    }

    fn bwd(
        &self,
        x: &Tensor,
        state: &Tensor,
        packed: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let hidden = self.hidden;
        let (b, cin, side_h, side_w) = x.dims4()?;
        let grad = grad.contiguous()?;
        // [dpre (4H) | dc_prev (H)]
        let dpre_dc = state.apply_op3_no_bwd(res, &grad, &GateGrad { hidden })?;
        let dpre = dpre_dc.narrow(1, 0, 4 * hidden)?;
        let dw = dpre.apply_op3_no_bwd(
            x,
            state,
            &WeightGradOp {
                hidden,
                kernel: self.kernel,
            },
        )?;
        let needs_x = x.track_op();
        let needs_state = state.track_op();
        if !needs_x && !needs_state {
            return Ok((None, None, Some(dw)));
        }
        let dxh = dpre.apply_op2_no_bwd(
            packed,
            &InputGrad {
                geometry: ConvGeometry::same(self.kernel, 1),
                channels: cin + hidden,
                input: (side_h, side_w),
            },
        )?;
        let dx = if needs_x {
            Some(dxh.narrow(1, 0, cin)?)
        } else {
            None
        };
        let dstate = if needs_state {
            let zeros = Tensor::zeros(
                (b, 4 * hidden, side_h, side_w),
                candle_core::DType::F32,
                x.device(),
            )?;
            Some(Tensor::cat(
                &[
                    zeros,
                    dxh.narrow(1, cin, hidden)?,
                    dpre_dc.narrow(1, 4 * hidden, hidden)?,
                ],
                1,
            )?)
        } else {
            None
        };
        Ok((dx, dstate, Some(dw)))
    }
}

/// Backward of the element-wise update: `(previous state, this state, its gradient)` →
/// `[dpre_i, dpre_f, dpre_o, dpre_g | dc_prev]`, `[B, 5H, s, s]`.
struct GateGrad {
    hidden: usize,
}

simd_dispatch! {
/// The element-wise backward for one hidden channel of one image.
fn cell_update_grad(
    acts: [&[f32]; 4],
    c: &[f32],
    c_prev: &[f32],
    dh: &[f32],
    dc_in: &[f32],
    out: [&mut [f32]; 5],
) {
    let n = c.len();
    let [di, df, d_o, dg, dcp] = out;
    let (di, df, d_o, dg, dcp) = (
        &mut di[..n],
        &mut df[..n],
        &mut d_o[..n],
        &mut dg[..n],
        &mut dcp[..n],
    );
    let (ai, af, ao, ag) = (&acts[0][..n], &acts[1][..n], &acts[2][..n], &acts[3][..n]);
    let (c_prev, dh, dc_in) = (&c_prev[..n], &dh[..n], &dc_in[..n]);
    for p in 0..n {
        let (i, f, o, g) = (ai[p], af[p], ao[p], ag[p]);
        let tc = tanh(c[p]);
        let dc = dc_in[p] + dh[p] * o * (1.0 - tc * tc);
        di[p] = dc * g * i * (1.0 - i);
        df[p] = dc * c_prev[p] * f * (1.0 - f);
        d_o[p] = dh[p] * tc * o * (1.0 - o);
        dg[p] = dc * i * (1.0 - g * g);
        dcp[p] = dc * f;
    }
}
}

impl CustomOp3 for GateGrad {
    fn name(&self) -> &'static str {
        "oddcube-convlstm-gate-grad"
    }

    fn cpu_fwd(
        &self,
        ps: &CpuStorage,
        pl: &Layout,
        rs: &CpuStorage,
        rl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let hidden = self.hidden;
        let (n, prev) = planes(ps, pl, "ConvLSTM previous state")?;
        let (_, res) = planes(rs, rl, "ConvLSTM state")?;
        let (_, grad) = planes(gs, gl, "ConvLSTM state gradient")?;
        if pl.dims() != rl.dims() || rl.dims() != gl.dims() {
            candle_core::bail!(
                "ConvLSTM backward shapes disagree: {:?}, {:?}, {:?}",
                pl.dims(),
                rl.dims(),
                gl.dims()
            );
        }
        let p = res.height * res.width;
        let image = 5 * hidden * p;
        let out = par_fill(n * image, image, |img, out| {
            let mut blocks = out.chunks_exact_mut(hidden * p);
            let mut next = || blocks.next().unwrap_or_default();
            let mut maps: [&mut [f32]; 5] = [next(), next(), next(), next(), next()];
            for q in 0..hidden {
                let [a, b, c, d, e] = &mut maps;
                let span = q * p..(q + 1) * p;
                cell_update_grad(
                    [
                        res.plane(img, q),
                        res.plane(img, hidden + q),
                        res.plane(img, 2 * hidden + q),
                        res.plane(img, 3 * hidden + q),
                    ],
                    res.plane(img, 5 * hidden + q),
                    prev.plane(img, 5 * hidden + q),
                    grad.plane(img, 4 * hidden + q),
                    grad.plane(img, 5 * hidden + q),
                    [
                        &mut a[span.clone()],
                        &mut b[span.clone()],
                        &mut c[span.clone()],
                        &mut d[span.clone()],
                        &mut e[span],
                    ],
                );
            }
        });
        Ok((
            CpuStorage::F32(out),
            Shape::from((n, 5 * hidden, res.height, res.width)),
        ))
    }
}

/// Backward op `(dpre, x, previous state) → [dW | db]` `[4H, K + 1]`, the packed weights'
/// gradient: the gate conv's weight gradient over the patches of `[x, h_prev]`.
struct WeightGradOp {
    hidden: usize,
    kernel: usize,
}

impl CustomOp3 for WeightGradOp {
    fn name(&self) -> &'static str {
        "oddcube-convlstm-weight-grad"
    }

    fn cpu_fwd(
        &self,
        ds: &CpuStorage,
        dl: &Layout,
        xs: &CpuStorage,
        xl: &Layout,
        ss: &CpuStorage,
        sl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, dpre) = planes(ds, dl, "ConvLSTM gate gradient")?;
        let (_, x) = planes(xs, xl, "ConvLSTM input")?;
        let (_, state) = planes(ss, sl, "ConvLSTM previous state")?;
        let h_prev = state.channels(4 * self.hidden, self.hidden);
        let g = ConvGeometry::same(self.kernel, 1);
        let k = (x.channels + self.hidden) * self.kernel * self.kernel;
        let out = weight_grad(&dpre, n, &[x, h_prev], &g);
        Ok((CpuStorage::F32(out), Shape::from((4 * self.hidden, k + 1))))
    }
}
