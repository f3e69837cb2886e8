//! Direct (patch-free) convolution for layers with very few output channels, such as the
//! decoder's final 16 → 1 conv. There the GEMM formulation spends its time writing and
//! re-reading a `[K, P]` patch buffer to do a single multiply-add per entry; the direct loops
//! below stream each shifted input line once per tap instead (an axpy or a dot product), and
//! parallelise over images.

use rayon::prelude::*;

use super::patches::{
    ConvGeometry, Planes, images_per_chunk, par_fill, par_image_chunks, sum_partials,
};

/// Output channels up to which the direct loops beat patch gather + GEMM.
pub const DIRECT_MAX_OUT: usize = 2;

/// One valid run of a tap over one output row: output columns `lo..hi` of row `oy` read input
/// row `iy` from (upsampled) column `first` on.
struct TapRun {
    row: usize,
    channel: usize,
    oy: usize,
    iy: usize,
    lo: usize,
    hi: usize,
    first: usize,
}

/// Every tap run of a conv over `channels` input maps of `height × width`, in weight-row
/// order. Depends on the geometry only, so it is built once per op and shared by all images
/// (and the per-image loops stay plain loops the compiler vectorises for their target).
fn tap_runs(
    g: &ConvGeometry,
    channels: usize,
    (height, width): (usize, usize),
    (out_h, out_w): (usize, usize),
) -> Vec<TapRun> {
    let k = g.kernel;
    let (h_eff, w_eff) = (height * g.upsample, width * g.upsample);
    let mut runs = Vec::new();
    for channel in 0..channels {
        for ky in 0..k {
            let (oy_lo, oy_hi) = g.valid(ky, h_eff, out_h);
            for kx in 0..k {
                let (lo, hi) = g.valid(kx, w_eff, out_w);
                if lo >= hi {
                    continue;
                }
                let row = (channel * k + ky) * k + kx;
                let first = lo * g.stride + kx - g.padding;
                for oy in oy_lo..oy_hi {
                    runs.push(TapRun {
                        row,
                        channel,
                        oy,
                        iy: g.source(oy, ky),
                        lo,
                        hi,
                        first,
                    });
                }
            }
        }
    }
    runs
}

/// The input values a run reads, contiguous: the line itself for stride 1 without
/// upsampling, otherwise gathered into `tmp`.
#[inline(always)]
fn run_input<'a>(g: &ConvGeometry, line: &'a [f32], run: &TapRun, tmp: &'a mut [f32]) -> &'a [f32] {
    let len = run.hi - run.lo;
    if g.stride == 1 && g.upsample == 1 {
        &line[run.first..run.first + len]
    } else {
        let tmp = &mut tmp[..len];
        for (j, v) in tmp.iter_mut().enumerate() {
            *v = line[(run.first + j * g.stride) / g.upsample];
        }
        tmp
    }
}

/// Forward: `[n, Cout, oh, ow]` from the `n` images of `x`, `w` `[Cout, K]`, `b` `[Cout]`.
pub fn forward(
    x: &Planes,
    n: usize,
    w: &[f32],
    b: &[f32],
    g: &ConvGeometry,
    relu: bool,
    (oh, ow): (usize, usize),
) -> Vec<f32> {
    let per_image = b.len() * oh * ow;
    let runs = tap_runs(g, x.channels, (x.height, x.width), (oh, ow));
    par_fill(n * per_image, per_image, |image, out| {
        forward_image(x, image, &runs, w, b, g, relu, (oh, ow), out)
    })
}

simd_dispatch! {
    /// [`forward`] for one image.
    #[allow(clippy::too_many_arguments)]
    fn forward_image(
        x: &Planes,
        image: usize,
        runs: &[TapRun],
        w: &[f32],
        b: &[f32],
        g: &ConvGeometry,
        relu: bool,
        out_hw: (usize, usize),
        out: &mut [f32],
    ) {
        let (oh, ow) = out_hw;
        let (cout, p) = (b.len(), oh * ow);
        let k = x.channels * g.kernel * g.kernel;
        for (co, plane) in out.chunks_exact_mut(p).enumerate() {
            plane.fill(b[co]);
        }
        let mut tmp = vec![0.0f32; ow];
        for run in runs {
            let plane = x.plane(image, run.channel);
            let line = &plane[run.iy * x.width..(run.iy + 1) * x.width];
            let src = run_input(g, line, run, &mut tmp);
            for co in 0..cout {
                let weight = w[co * k + run.row];
                let start = co * p + run.oy * ow;
                for (o, s) in out[start + run.lo..start + run.hi].iter_mut().zip(src) {
                    *o += weight * s;
                }
            }
        }
        if relu {
            for v in out.iter_mut() {
                *v = v.max(0.0);
            }
        }
    }
}

/// `Σ a·b` with eight independent partial sums, so the compiler can vectorise it (one running
/// f32 sum fixes the order and stays scalar).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `[dW | db]` `[Cout, K + 1]` from the output gradient `dz` and the input `x`, summed over
/// fixed chunks of images in order (thread-count independent).
pub fn weight_grad(dz: &Planes, n: usize, x: &Planes, g: &ConvGeometry) -> Vec<f32> {
    let cout = dz.channels;
    let (oh, ow) = (dz.height, dz.width);
    let k = x.channels * g.kernel * g.kernel;
    let per = images_per_chunk(n, k * oh * ow);
    let runs = tap_runs(g, x.channels, (x.height, x.width), (oh, ow));
    let partials: Vec<Vec<f32>> = (0..n.div_ceil(per))
        .into_par_iter()
        .map(|chunk| {
            let mut part = vec![0.0f32; cout * (k + 1)];
            for image in chunk * per..((chunk + 1) * per).min(n) {
                weight_grad_image(dz, x, image, &runs, g, &mut part);
            }
            part
        })
        .collect();
    sum_partials(&partials, cout * (k + 1))
}

simd_dispatch! {
    /// Adds one image's contribution to `[dW | db]` (`part`, `[Cout, K + 1]`).
    fn weight_grad_image(
        dz: &Planes,
        x: &Planes,
        image: usize,
        runs: &[TapRun],
        g: &ConvGeometry,
        part: &mut [f32],
    ) {
        let (cout, ow) = (dz.channels, dz.width);
        let k = x.channels * g.kernel * g.kernel;
        let mut tmp = vec![0.0f32; ow];
        for run in runs {
            let plane = x.plane(image, run.channel);
            let line = &plane[run.iy * x.width..(run.iy + 1) * x.width];
            let src = run_input(g, line, run, &mut tmp);
            for co in 0..cout {
                let grad = &dz.plane(image, co)[run.oy * ow..(run.oy + 1) * ow];
                part[co * (k + 1) + run.row] += dot(&grad[run.lo..run.hi], src);
            }
        }
        for co in 0..cout {
            part[co * (k + 1) + k] += dz.plane(image, co).iter().sum::<f32>();
        }
    }
}

/// The input gradient `[n, channels, h, w]` from `dz` and `w` (`[Cout, ≥ K]`, rows
/// `w_row_stride` apart).
pub fn input_grad(
    dz: &Planes,
    n: usize,
    w: &[f32],
    w_row_stride: usize,
    g: &ConvGeometry,
    channels: usize,
    (h, wd): (usize, usize),
) -> Vec<f32> {
    let image_len = channels * h * wd;
    let runs = tap_runs(g, channels, (h, wd), (dz.height, dz.width));
    par_image_chunks(n, image_len, 1, |image, _, dest| {
        input_grad_image(dz, image, &runs, w, w_row_stride, g, (h, wd), dest)
    })
}

simd_dispatch! {
    /// [`input_grad`] for one image, added into `dest` `[channels, h, w]` (zeroed by the caller).
    #[allow(clippy::too_many_arguments)]
    fn input_grad_image(
        dz: &Planes,
        image: usize,
        runs: &[TapRun],
        w: &[f32],
        w_row_stride: usize,
        g: &ConvGeometry,
        input: (usize, usize),
        dest: &mut [f32],
    ) {
        let (h, wd) = input;
        let (cout, ow) = (dz.channels, dz.width);
        let mut tmp = vec![0.0f32; ow];
        for run in runs {
            let len = run.hi - run.lo;
            let acc = &mut tmp[..len];
            acc.fill(0.0);
            for co in 0..cout {
                let weight = w[co * w_row_stride + run.row];
                let grad = &dz.plane(image, co)[run.oy * ow + run.lo..run.oy * ow + run.hi];
                for (a, d) in acc.iter_mut().zip(grad) {
                    *a += weight * d;
                }
            }
            let start = run.channel * h * wd + run.iy * wd;
            let line = &mut dest[start..start + wd];
            if g.stride == 1 && g.upsample == 1 {
                for (d, a) in line[run.first..run.first + len].iter_mut().zip(acc.iter()) {
                    *d += a;
                }
            } else {
                for (j, a) in acc.iter().enumerate() {
                    line[(run.first + j * g.stride) / g.upsample] += a;
                }
            }
        }
    }
}
