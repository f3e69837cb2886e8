//! Nearest-×2 upsampling followed by a 3×3 conv ("same" padding), computed on the
//! low-resolution map: output pixel `(2i + a, 2j + b)` only ever reads input rows `{i − 1, i}`
//! (a = 0) or `{i, i + 1}` (a = 1), and likewise columns, so each of the four output parities is
//! a 2×2 conv of the input with tap-summed weights. All four share one patch buffer over the
//! `(H + 1) × (W + 1)` grid of a 2×2 conv with padding 1, and one GEMM with the four weight sets
//! stacked. Same result as upsample-then-conv up to summation order, with 1/8 of the patch
//! gather and about half the multiply-adds (the nominal FLOP count of the bench does not
//! change: it counts the architecture's conv).

use rayon::prelude::*;

use super::patches::{
    ConvGeometry, Mat, Planes, col2im, im2col, images_per_chunk, matmul, par_fill,
    par_image_chunks, sum_partials, with_scratch,
};

/// The geometry this module replaces.
pub fn applies(g: &ConvGeometry) -> bool {
    g.kernel == 3 && g.stride == 1 && g.padding == 1 && g.upsample == 2
}

/// The shared 2×2, padding-1 patch geometry on the low-resolution map.
const PATCH: ConvGeometry = ConvGeometry {
    kernel: 2,
    stride: 1,
    padding: 1,
    upsample: 1,
};

/// 3×3 taps folded into 2×2 tap `d` for output parity `a`: parity 0 reads `{i−1: 0, i: 1+2}`,
/// parity 1 reads `{i: 0+1, i+1: 2}`.
fn taps(a: usize, d: usize) -> &'static [usize] {
    match (a, d) {
        (0, 0) => &[0],
        (0, _) => &[1, 2],
        (_, 0) => &[0, 1],
        _ => &[2],
    }
}

/// The stacked 2×2 weights `[4·Cout, Cin·4]` (row `parity·Cout + co`, parity = 2a + b; column
/// `(ci, dy, dx)`) from 3×3 weights with rows `row_stride` apart.
fn fold(w: &[f32], row_stride: usize, cout: usize, cin: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; 4 * cout * cin * 4];
    for (parity, block) in out.chunks_exact_mut(cout * cin * 4).enumerate() {
        let (a, b) = (parity / 2, parity % 2);
        for co in 0..cout {
            for ci in 0..cin {
                for dy in 0..2 {
                    for dx in 0..2 {
                        let mut sum = 0.0f32;
                        for &ky in taps(a, dy) {
                            for &kx in taps(b, dx) {
                                sum += w[co * row_stride + (ci * 3 + ky) * 3 + kx];
                            }
                        }
                        block[(co * cin + ci) * 4 + dy * 2 + dx] = sum;
                    }
                }
            }
        }
    }
    out
}

/// The transpose of [`fold`]: `[Cout, Cin·9 + 1]` gradients of the 3×3 weights (bias column
/// left for the caller) from gradients of the stacked 2×2 weights.
fn unfold(dw4: &[f32], cout: usize, cin: usize, out: &mut [f32]) {
    let k = cin * 9;
    for parity in 0..4 {
        let (a, b) = (parity / 2, parity % 2);
        for co in 0..cout {
            for ci in 0..cin {
                for dy in 0..2 {
                    for dx in 0..2 {
                        let g = dw4[((parity * cout + co) * cin + ci) * 4 + dy * 2 + dx];
                        for &ky in taps(a, dy) {
                            for &kx in taps(b, dx) {
                                out[co * (k + 1) + (ci * 3 + ky) * 3 + kx] += g;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Grid cell of the `(H + 1) × (W + 1)` patch grid that holds output `(2i + a, 2j + b)`.
#[inline(always)]
fn cell(i: usize, j: usize, a: usize, b: usize, grid_w: usize) -> usize {
    (i + a) * grid_w + j + b
}

/// Forward: `[n, Cout, 2H, 2W]` from the `n` images of `x`.
pub fn forward(x: &Planes, n: usize, w: &[f32], b: &[f32], relu: bool) -> Vec<f32> {
    let (cout, cin, h, wd) = (b.len(), x.channels, x.height, x.width);
    let w4 = fold(w, cin * 9, cout, cin);
    let (gh, gw) = (h + 1, wd + 1);
    let grid = gh * gw;
    let k4 = cin * 4;
    let per = images_per_chunk(n, k4 * grid);
    let image = cout * 4 * h * wd;
    par_fill(n * image, per * image, |chunk, out| {
        let count = out.len() / image;
        let np = count * grid;
        with_scratch(k4 * np + 4 * cout * np, |buf| {
            let (cols, acc) = buf.split_at_mut(k4 * np);
            im2col(&[*x], chunk * per, count, &PATCH, (gh, gw), cols);
            matmul(
                (4 * cout, np, k4),
                acc,
                np,
                false,
                Mat {
                    data: &w4,
                    row_stride: k4,
                    col_stride: 1,
                },
                Mat {
                    data: cols,
                    row_stride: np,
                    col_stride: 1,
                },
            );
            for (img, dst) in out.chunks_exact_mut(image).enumerate() {
                for (co, plane) in dst.chunks_exact_mut(4 * h * wd).enumerate() {
                    for parity in 0..4 {
                        let (a, bb) = (parity / 2, parity % 2);
                        let row = &acc[(parity * cout + co) * np + img * grid..][..grid];
                        for i in 0..h {
                            let line = &mut plane[(2 * i + a) * 2 * wd..][..2 * wd];
                            for j in 0..wd {
                                let v = row[cell(i, j, a, bb, gw)] + b[co];
                                line[2 * j + bb] = if relu && v <= 0.0 { 0.0 } else { v };
                            }
                        }
                    }
                }
            }
        });
    })
}

/// Copies the output gradient `[Cout, 2H, 2W]` of images `first..first + count` into the
/// stacked layout `[4·Cout, count·grid]` (zero where a parity has no output).
fn gather_grad(dz: &Planes, first: usize, count: usize, (h, wd): (usize, usize), out: &mut [f32]) {
    let cout = dz.channels;
    let (gh, gw) = (h + 1, wd + 1);
    let grid = gh * gw;
    let np = count * grid;
    out[..4 * cout * np].fill(0.0);
    for img in 0..count {
        for co in 0..cout {
            let plane = dz.plane(first + img, co);
            for parity in 0..4 {
                let (a, b) = (parity / 2, parity % 2);
                let row = &mut out[(parity * cout + co) * np + img * grid..][..grid];
                for i in 0..h {
                    let line = &plane[(2 * i + a) * 2 * wd..][..2 * wd];
                    for j in 0..wd {
                        row[cell(i, j, a, b, gw)] = line[2 * j + b];
                    }
                }
            }
        }
    }
}

/// `[dW | db]` `[Cout, Cin·9 + 1]` from the output gradient and the input.
pub fn weight_grad(dz: &Planes, n: usize, x: &Planes) -> Vec<f32> {
    let (cout, cin, h, wd) = (dz.channels, x.channels, x.height, x.width);
    let (gh, gw) = (h + 1, wd + 1);
    let grid = gh * gw;
    let k4 = cin * 4;
    let per = images_per_chunk(n, k4 * grid);
    let partials: Vec<Vec<f32>> = (0..n.div_ceil(per))
        .into_par_iter()
        .map(|chunk| {
            let first = chunk * per;
            let count = per.min(n - first);
            let np = count * grid;
            let mut dw4 = vec![0.0f32; 4 * cout * k4];
            let mut bias = vec![0.0f32; cout];
            with_scratch(k4 * np + 4 * cout * np, |buf| {
                let (cols, dz4) = buf.split_at_mut(k4 * np);
                im2col(&[*x], first, count, &PATCH, (gh, gw), cols);
                gather_grad(dz, first, count, (h, wd), dz4);
                matmul(
                    (4 * cout, k4, np),
                    &mut dw4,
                    k4,
                    false,
                    Mat {
                        data: dz4,
                        row_stride: np,
                        col_stride: 1,
                    },
                    Mat {
                        data: cols,
                        row_stride: 1,
                        col_stride: np,
                    },
                );
                for parity in 0..4 {
                    for (co, bv) in bias.iter_mut().enumerate() {
                        *bv += dz4[(parity * cout + co) * np..][..np].iter().sum::<f32>();
                    }
                }
            });
            let mut part = vec![0.0f32; cout * (cin * 9 + 1)];
            unfold(&dw4, cout, cin, &mut part);
            for (co, bv) in bias.iter().enumerate() {
                part[co * (cin * 9 + 1) + cin * 9] = *bv;
            }
            part
        })
        .collect();
    sum_partials(&partials, cout * (cin * 9 + 1))
}

/// The input gradient `[n, Cin, H, W]` from the output gradient and 3×3 weights with rows
/// `w_row_stride` apart.
pub fn input_grad(
    dz: &Planes,
    n: usize,
    w: &[f32],
    w_row_stride: usize,
    cin: usize,
    (h, wd): (usize, usize),
) -> Vec<f32> {
    let cout = dz.channels;
    let w4 = fold(w, w_row_stride, cout, cin);
    let (gh, gw) = (h + 1, wd + 1);
    let grid = gh * gw;
    let k4 = cin * 4;
    let per = images_per_chunk(n, k4 * grid);
    let image = cin * h * wd;
    par_image_chunks(n, image, per, |first, count, dest| {
        let np = count * grid;
        with_scratch(k4 * np + 4 * cout * np, |buf| {
            let (cols, dz4) = buf.split_at_mut(k4 * np);
            gather_grad(dz, first, count, (h, wd), dz4);
            matmul(
                (k4, np, 4 * cout),
                cols,
                np,
                false,
                Mat {
                    data: &w4,
                    row_stride: 1,
                    col_stride: k4,
                },
                Mat {
                    data: dz4,
                    row_stride: np,
                    col_stride: 1,
                },
            );
            col2im(cols, count, &PATCH, (gh, gw), dest, cin, (h, wd));
        });
    })
}
