//! The fused ConvLSTM step: gate GEMM plus the whole sigmoid/tanh and c/h update in one op,
//! with a backward that reads the gate activations the forward saved.
//!
//! The op threads one *state* tensor `[B, 2H, s, s]` from step to step: channels `[h | c]`,
//! the new hidden and cell maps; callers read them through [`state_h`] and [`state_c`]. The
//! step's four gate activations `[i, f, o, g]` stay with the op (`CellStep::acts`) for its
//! backward, which so skips recomputing the gate GEMM. They are not part of the state: candle's
//! autograd gives every tensor a gradient of its full shape, made as zeros and then added into,
//! so activations carried in the state cost three zero channels in four on every gradient that
//! reaches the state, at every step.

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp3, Device, Layout, Shape, Storage, Tensor};

use super::conv::{InputGrad, weight_grad};
use super::math::{sigmoid, tanh};
use super::patches::{
    ConvGeometry, Mat, contiguous, im2col, images_per_chunk, matmul, par_fill, par_fill_pair,
    planes, with_scratch,
};

/// State channels per hidden channel: h and c.
const BLOCKS: usize = 2;

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

/// The all-zero state `[B, 2H, s, s]` a sequence starts from.
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
    state.narrow(1, 0, hidden)
}

/// The cell map `c` `[B, H, s, s]` of a state (a view, no copy).
pub fn state_c(state: &Tensor, hidden: usize) -> candle_core::Result<Tensor> {
    state.narrow(1, hidden, hidden)
}

/// One step from `state` with input `x` `[B, Cin, s, s]`; returns the next state. CPU, f32.
pub fn lstm_step(weights: &LstmWeights, x: &Tensor, state: &Tensor) -> candle_core::Result<Tensor> {
    x.apply_op3(
        state,
        &weights.packed,
        CellStep {
            hidden: weights.hidden,
            kernel: weights.kernel,
            acts: Mutex::new(None),
        },
    )
}

/// The forward op over `(x, state, packed weights)`.
struct CellStep {
    hidden: usize,
    kernel: usize,
    /// The gate activations `[B, 4H, s, s]` of this op's forward, for its backward. Each step
    /// applies a fresh op, so this holds one step's; candle keeps the op (and them) only while
    /// a graph that needs its gradient does.
    acts: Mutex<Option<Tensor>>,
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
        let h_prev = state.channels(0, hidden);
        let c_prev = state.channels(hidden, hidden);
        let per = images_per_chunk(n, k * p);
        let image = BLOCKS * hidden * p;
        let acts_image = 4 * hidden * p;
        let (out, acts) = par_fill_pair(n, per, (image, acts_image), |chunk, out, acts| {
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
                let images = out
                    .chunks_exact_mut(image)
                    .zip(acts.chunks_exact_mut(acts_image));
                for (i, (img, img_acts)) in images.enumerate() {
                    let mut blocks = img_acts
                        .chunks_exact_mut(hidden * p)
                        .chain(img.chunks_exact_mut(hidden * p));
                    let mut next = || blocks.next().unwrap_or_default();
                    // [i, f, o, g] into the activations, then [h, c] into the state.
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
        let acts = Tensor::from_vec(acts, (n, 4 * hidden, side_h, side_w), &Device::Cpu)?;
        *self.acts.lock().map_err(|_| poisoned())? = Some(acts);
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
        let (_, cin, side_h, side_w) = x.dims4()?;
        let grad = grad.contiguous()?;
        let acts = self.acts.lock().map_err(|_| poisoned())?.clone();
        let Some(acts) = acts else {
            candle_core::bail!("ConvLSTM step: backward without the forward's gate activations");
        };
        // [dpre (4H) | dc_prev (H)]
        let dpre_dc = state.apply_op3_no_bwd(res, &grad, &GateGrad { hidden, acts })?;
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
            Some(Tensor::cat(
                &[
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

/// Backward of the element-wise update: `(previous state, this state, its gradient)` and the
/// step's gate activations → `[dpre_i, dpre_f, dpre_o, dpre_g | dc_prev]`, `[B, 5H, s, s]`.
struct GateGrad {
    hidden: usize,
    /// The step's `[i, f, o, g]`, `[B, 4H, s, s]`.
    acts: Tensor,
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
        let (acts_storage, al) = self.acts.storage_and_layout();
        let Storage::Cpu(acts_storage) = &*acts_storage else {
            candle_core::bail!("ConvLSTM gate activations: not on the CPU");
        };
        let (_, acts) = planes(acts_storage, al, "ConvLSTM gate activations")?;
        let want_acts = [n, 4 * hidden, res.height, res.width];
        if pl.dims() != rl.dims() || rl.dims() != gl.dims() || al.dims() != want_acts {
            candle_core::bail!(
                "ConvLSTM backward shapes disagree: {:?}, {:?}, {:?}, activations {:?}",
                pl.dims(),
                rl.dims(),
                gl.dims(),
                al.dims()
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
                        acts.plane(img, q),
                        acts.plane(img, hidden + q),
                        acts.plane(img, 2 * hidden + q),
                        acts.plane(img, 3 * hidden + q),
                    ],
                    res.plane(img, hidden + q),
                    prev.plane(img, hidden + q),
                    grad.plane(img, q),
                    grad.plane(img, hidden + q),
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
        let h_prev = state.channels(0, self.hidden);
        let g = ConvGeometry::same(self.kernel, 1);
        let k = (x.channels + self.hidden) * self.kernel * self.kernel;
        let out = weight_grad(&dpre, n, &[x, h_prev], &g);
        Ok((CpuStorage::F32(out), Shape::from((4 * self.hidden, k + 1))))
    }
}

/// The error of a lock whose holder panicked (a kernel bug, not bad input).
fn poisoned() -> candle_core::Error {
    candle_core::Error::Msg("ConvLSTM step: its gate activations' lock was poisoned".into())
}
