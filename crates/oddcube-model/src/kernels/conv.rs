//! A 2-D convolution with bias, optional ReLU and optional nearest-neighbour upsampling of its
//! input, as one candle custom op (patch gather + GEMM + fused epilogue) with a GEMM backward.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::direct::{self, DIRECT_MAX_OUT};
use super::patches::{
    ConvGeometry, Mat, Planes, col2im, contiguous, im2col, images_per_chunk, matmul, par_fill,
    par_image_chunks, planes, sum_partials, with_scratch,
};
use super::subpixel;

/// What one conv layer computes: geometry and whether a ReLU follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvSpec {
    /// Kernel, stride, padding and input upsampling.
    pub geometry: ConvGeometry,
    /// Apply `max(0, ·)` to the output.
    pub relu: bool,
}

/// `act(conv(upsample(x), weight) + bias)` for `x` `[N, Cin, H, W]`, `weight`
/// `[Cout, Cin, k, k]`, `bias` `[Cout]`. With `fused` on a CPU f32 tensor this is the fused
/// kernel; otherwise (other devices, or the reference path) the same thing from candle ops.
pub fn conv2d(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    spec: ConvSpec,
    fused: bool,
) -> candle_core::Result<Tensor> {
    if fused && x.device().is_cpu() && x.dtype() == DType::F32 {
        x.apply_op3(weight, bias, FusedConv(spec))
    } else {
        conv2d_reference(x, weight, bias, spec)
    }
}

/// The candle-op composition [`conv2d`] must agree with.
pub fn conv2d_reference(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    spec: ConvSpec,
) -> candle_core::Result<Tensor> {
    let g = spec.geometry;
    let x = if g.upsample > 1 {
        let (_, _, h, w) = x.dims4()?;
        x.upsample_nearest2d(h * g.upsample, w * g.upsample)?
    } else {
        x.clone()
    };
    let cout = weight.dim(0)?;
    let y = x
        .conv2d(weight, g.padding, g.stride, 1, 1)?
        .broadcast_add(&bias.reshape((1, cout, 1, 1))?)?;
    if spec.relu { y.relu() } else { Ok(y) }
}

/// The forward op over `(x, weight, bias)`.
struct FusedConv(ConvSpec);

impl CustomOp3 for FusedConv {
    fn name(&self) -> &'static str {
        "oddcube-fused-conv2d"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = self.0.geometry;
        let (n, x) = planes(xs, xl, "conv input")?;
        let w = contiguous(ws, wl, "conv weight")?;
        let b = contiguous(bs, bl, "conv bias")?;
        let &[cout, cin, kh, kw] = wl.dims() else {
            candle_core::bail!("conv weight must be [Cout, Cin, k, k], got {:?}", wl.dims());
        };
        if cin != x.channels || kh != g.kernel || kw != g.kernel || b.len() != cout {
            candle_core::bail!(
                "conv shapes disagree: input {:?}, weight {:?}, bias {:?}, kernel {}",
                xl.dims(),
                wl.dims(),
                bl.dims(),
                g.kernel
            );
        }
        let (Some(oh), Some(ow)) = (g.out_len(x.height), g.out_len(x.width)) else {
            candle_core::bail!("conv kernel larger than its {:?} input", xl.dims());
        };
        let k = cin * g.kernel * g.kernel;
        let p = oh * ow;
        let per = images_per_chunk(n, k * p);
        let relu = self.0.relu;
        if cout <= DIRECT_MAX_OUT {
            let out = direct::forward(&x, n, w, b, &g, relu, (oh, ow));
            return Ok((CpuStorage::F32(out), Shape::from((n, cout, oh, ow))));
        }
        if subpixel::applies(&g) {
            let out = subpixel::forward(&x, n, w, b, relu);
            return Ok((CpuStorage::F32(out), Shape::from((n, cout, oh, ow))));
        }
        let out = par_fill(n * cout * p, per * cout * p, |chunk, out| {
            let count = out.len() / (cout * p);
            let np = count * p;
            with_scratch(k * np + cout * np, |buf| {
                let (cols, acc) = buf.split_at_mut(k * np);
                im2col(&[x], chunk * per, count, &g, (oh, ow), cols);
                matmul(
                    (cout, np, k),
                    acc,
                    np,
                    false,
                    Mat {
                        data: w,
                        row_stride: k,
                        col_stride: 1,
                    },
                    Mat {
                        data: cols,
                        row_stride: np,
                        col_stride: 1,
                    },
                );
                for (i, image) in out.chunks_exact_mut(cout * p).enumerate() {
                    for (co, dst) in image.chunks_exact_mut(p).enumerate() {
                        let src = &acc[co * np + i * p..co * np + (i + 1) * p];
                        let bias = b[co];
                        for (d, s) in dst.iter_mut().zip(src) {
                            let v = s + bias;
                            *d = if relu && v <= 0.0 { 0.0 } else { v };
                        }
                    }
                }
            });
        });
        Ok((CpuStorage::F32(out), Shape::from((n, cout, oh, ow))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = self.0.geometry;
        let dy = dy.contiguous()?;
        let dz = if self.0.relu {
            dy.apply_op2_no_bwd(y, &ReluGrad)?
        } else {
            dy
        };
        let (_, cin, h, w) = x.dims4()?;
        let dx = if x.track_op() {
            Some(dz.apply_op2_no_bwd(
                weight,
                &InputGrad {
                    geometry: g,
                    channels: cin,
                    input: (h, w),
                },
            )?)
        } else {
            None
        };
        let cout = weight.dim(0)?;
        let k = cin * g.kernel * g.kernel;
        let dwb = dz.apply_op2_no_bwd(x, &WeightGrad { geometry: g })?;
        let dw = dwb.narrow(1, 0, k)?.reshape(weight.shape())?;
        let db = dwb.narrow(1, k, 1)?.reshape(bias.shape())?;
        debug_assert_eq!(dwb.dims(), &[cout, k + 1]);
        Ok((dx, Some(dw), Some(db)))
    }
}

/// `dy · [y > 0]`: the ReLU backward, reading the saved output.
struct ReluGrad;

impl CustomOp2 for ReluGrad {
    fn name(&self) -> &'static str {
        "oddcube-relu-grad"
    }

    fn cpu_fwd(
        &self,
        ds: &CpuStorage,
        dl: &Layout,
        ys: &CpuStorage,
        yl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, d) = planes(ds, dl, "relu gradient")?;
        let (_, y) = planes(ys, yl, "relu output")?;
        let hw = d.height * d.width;
        let per_image = d.channels * hw;
        let out = par_fill(n * per_image, per_image, |i, image| {
            for (c, dst) in image.chunks_exact_mut(hw.max(1)).enumerate() {
                for ((o, g), v) in dst.iter_mut().zip(d.plane(i, c)).zip(y.plane(i, c)) {
                    *o = if *v > 0.0 { *g } else { 0.0 };
                }
            }
        });
        Ok((CpuStorage::F32(out), dl.shape().clone()))
    }
}

/// Copies output-gradient maps of images `first..first + count` into a `[Cout, count·P]`
/// matrix (the layout of the forward GEMM's output).
fn gather_grad(dz: &Planes, first: usize, count: usize, out: &mut [f32]) {
    let p = dz.height * dz.width;
    let np = count * p;
    for co in 0..dz.channels {
        for i in 0..count {
            out[co * np + i * p..co * np + (i + 1) * p].copy_from_slice(dz.plane(first + i, co));
        }
    }
}

/// `[dW | db]` as a row-major `[Cout, K + 1]` matrix: `dW = dZ · colsᵀ` summed over chunks
/// (in chunk order, so the result does not depend on the thread count), `db` the row sums of
/// `dZ`. `sources` are the forward input(s) concatenated along channels.
pub(crate) fn weight_grad(dz: &Planes, n: usize, sources: &[Planes], g: &ConvGeometry) -> Vec<f32> {
    if let [x] = sources {
        if dz.channels <= DIRECT_MAX_OUT {
            return direct::weight_grad(dz, n, x, g);
        }
        if subpixel::applies(g) {
            return subpixel::weight_grad(dz, n, x);
        }
    }
    let cout = dz.channels;
    let (oh, ow) = (dz.height, dz.width);
    let p = oh * ow;
    let cin: usize = sources.iter().map(|s| s.channels).sum();
    let k = cin * g.kernel * g.kernel;
    let per = images_per_chunk(n, k * p);
    let chunks = n.div_ceil(per);
    let partials: Vec<Vec<f32>> = (0..chunks)
        .into_par_iter()
        .map(|chunk| {
            let first = chunk * per;
            let count = per.min(n - first);
            let np = count * p;
            let mut part = vec![0.0f32; cout * (k + 1)];
            with_scratch(k * np + cout * np, |buf| {
                let (cols, dzc) = buf.split_at_mut(k * np);
                im2col(sources, first, count, g, (oh, ow), cols);
                gather_grad(dz, first, count, dzc);
                matmul(
                    (cout, k, np),
                    &mut part,
                    k + 1,
                    false,
                    Mat {
                        data: dzc,
                        row_stride: np,
                        col_stride: 1,
                    },
                    Mat {
                        data: cols,
                        row_stride: 1,
                        col_stride: np,
                    },
                );
                for co in 0..cout {
                    part[co * (k + 1) + k] = dzc[co * np..(co + 1) * np].iter().sum();
                }
            });
            part
        })
        .collect();
    sum_partials(&partials, cout * (k + 1))
}

/// The input gradient `col2im(Wᵀ · dZ)` as `[N, channels, H, W]`; `w` is `[Cout, ≥ K]` with
/// rows `w_row_stride` apart (a bias column after the K weights is skipped).
pub(crate) fn input_grad(
    dz: &Planes,
    n: usize,
    w: &[f32],
    w_row_stride: usize,
    g: &ConvGeometry,
    channels: usize,
    (h, wd): (usize, usize),
) -> Vec<f32> {
    if dz.channels <= DIRECT_MAX_OUT {
        return direct::input_grad(dz, n, w, w_row_stride, g, channels, (h, wd));
    }
    if subpixel::applies(g) {
        return subpixel::input_grad(dz, n, w, w_row_stride, channels, (h, wd));
    }
    let cout = dz.channels;
    let (oh, ow) = (dz.height, dz.width);
    let p = oh * ow;
    let k = channels * g.kernel * g.kernel;
    let per = images_per_chunk(n, k * p);
    let image = channels * h * wd;
    par_image_chunks(n, image, per, |first, count, dest| {
        let np = count * p;
        with_scratch(k * np + cout * np, |buf| {
            let (cols, dzc) = buf.split_at_mut(k * np);
            gather_grad(dz, first, count, dzc);
            matmul(
                (k, np, cout),
                cols,
                np,
                false,
                Mat {
                    data: w,
                    row_stride: 1,
                    col_stride: w_row_stride,
                },
                Mat {
                    data: dzc,
                    row_stride: np,
                    col_stride: 1,
                },
            );
            col2im(cols, count, g, (oh, ow), dest, channels, (h, wd));
        });
    })
}

/// Backward op `(dZ, x) → [dW | db]` of [`FusedConv`].
struct WeightGrad {
    geometry: ConvGeometry,
}

impl CustomOp2 for WeightGrad {
    fn name(&self) -> &'static str {
        "oddcube-conv2d-weight-grad"
    }

    fn cpu_fwd(
        &self,
        ds: &CpuStorage,
        dl: &Layout,
        xs: &CpuStorage,
        xl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, dz) = planes(ds, dl, "conv output gradient")?;
        let (_, x) = planes(xs, xl, "conv input")?;
        let k = x.channels * self.geometry.kernel * self.geometry.kernel;
        let out = weight_grad(&dz, n, &[x], &self.geometry);
        Ok((CpuStorage::F32(out), Shape::from((dz.channels, k + 1))))
    }
}

/// Backward op `(dZ, weight) → dx` of a conv (also the fused ConvLSTM step's, whose packed
/// weight has a bias column after the K weights of each row).
pub(crate) struct InputGrad {
    /// The forward geometry.
    pub geometry: ConvGeometry,
    /// Input channels of the forward conv.
    pub channels: usize,
    /// Input height and width of the forward conv (before upsampling).
    pub input: (usize, usize),
}

impl CustomOp2 for InputGrad {
    fn name(&self) -> &'static str {
        "oddcube-conv2d-input-grad"
    }

    fn cpu_fwd(
        &self,
        ds: &CpuStorage,
        dl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, dz) = planes(ds, dl, "conv output gradient")?;
        let w = contiguous(ws, wl, "conv weight")?;
        let row = w.len() / dz.channels.max(1);
        let out = input_grad(&dz, n, w, row, &self.geometry, self.channels, self.input);
        let (h, wd) = self.input;
        Ok((CpuStorage::F32(out), Shape::from((n, self.channels, h, wd))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_support::{max_abs_diff, probed_backward, random};
    use candle_core::Var;

    /// Forward values and all three gradients of the fused conv against candle's ops, for
    /// strides, upsampling, odd sizes and batch 1. Tolerance: sums of ≤ 450 products of values
    /// in [−1, 1] in a different order, so ~1e-5 relative to their magnitude.
    #[test]
    fn fused_conv_matches_reference_values_and_gradients() {
        let cases = [
            // (n, cin, cout, h, w, kernel, stride, upsample, relu)
            (2, 3, 5, 7, 7, 3, 1, 1, true),
            (1, 2, 4, 9, 5, 3, 2, 1, true),
            (3, 4, 2, 4, 4, 3, 1, 2, false),
            (2, 1, 3, 8, 8, 1, 1, 1, false),
            (5, 6, 7, 3, 3, 5, 1, 1, true),
            // Few output channels: the direct (patch-free) path.
            (2, 16, 1, 9, 9, 3, 1, 1, false),
            (1, 3, 1, 7, 5, 3, 2, 1, true),
            (2, 2, 1, 3, 4, 3, 1, 2, true),
            // Nearest ×2 then 3×3 with more outputs: the sub-pixel path.
            (2, 3, 5, 4, 3, 3, 1, 2, true),
            (1, 2, 4, 5, 5, 3, 1, 2, false),
            (9, 4, 6, 2, 2, 3, 1, 2, true),
        ];
        for (seed, &(n, cin, cout, h, w, kernel, stride, upsample, relu)) in
            cases.iter().enumerate()
        {
            let spec = ConvSpec {
                geometry: ConvGeometry {
                    upsample,
                    ..ConvGeometry::same(kernel, stride)
                },
                relu,
            };
            let seed = seed as u64 * 10;
            let x = Var::from_tensor(&random(&[n, cin, h, w], seed + 1)).unwrap();
            let wt = Var::from_tensor(&random(&[cout, cin, kernel, kernel], seed + 2)).unwrap();
            let b = Var::from_tensor(&random(&[cout], seed + 3)).unwrap();
            let fused = conv2d(&x, &wt, &b, spec, true).unwrap();
            let reference = conv2d_reference(&x, &wt, &b, spec).unwrap();
            assert_eq!(fused.dims(), reference.dims());
            assert!(max_abs_diff(&fused, &reference) < 1e-5);
            let gf = probed_backward(&fused, seed + 4);
            let gr = probed_backward(&reference, seed + 4);
            for var in [&x, &wt, &b] {
                let (a, r) = (gf.get(var).unwrap(), gr.get(var).unwrap());
                let scale = r.abs().unwrap().flatten_all().unwrap().max(0).unwrap();
                let scale = scale.to_scalar::<f32>().unwrap().max(1.0);
                assert!(max_abs_diff(a, r) < 2e-5 * scale, "case {seed}");
            }
        }
    }

    #[test]
    fn input_that_needs_no_gradient_gets_none() {
        let spec = ConvSpec {
            geometry: ConvGeometry::same(3, 1),
            relu: true,
        };
        let x = random(&[1, 1, 4, 4], 1);
        let wt = Var::from_tensor(&random(&[2, 1, 3, 3], 2)).unwrap();
        let b = Var::from_tensor(&random(&[2], 3)).unwrap();
        let grads = conv2d(&x, &wt, &b, spec, true)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        assert!(grads.get(&x).is_none());
        assert!(grads.get(&wt).is_some() && grads.get(&b).is_some());
    }

    #[test]
    fn results_do_not_depend_on_thread_count() {
        let spec = ConvSpec {
            geometry: ConvGeometry::same(3, 1),
            relu: false,
        };
        let x = Var::from_tensor(&random(&[9, 3, 6, 6], 5)).unwrap();
        let wt = Var::from_tensor(&random(&[4, 3, 3, 3], 6)).unwrap();
        let b = Var::from_tensor(&random(&[4], 7)).unwrap();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let y = conv2d(&x, &wt, &b, spec, true).unwrap();
                let g = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
                let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                (
                    flat(&y),
                    flat(g.get(&wt).unwrap()),
                    flat(g.get(&x).unwrap()),
                )
            })
        };
        assert_eq!(run(1), run(3));
    }
}
