//! Convolution geometry, the patch gather (`im2col`) and its transpose (`col2im`), the GEMM
//! wrapper, and the helpers that turn candle storages into plane views.

use std::cell::RefCell;
use std::mem::MaybeUninit;

use candle_core::{CpuStorage, Layout};
use rayon::prelude::*;

/// Geometry of a square-kernel 2-D convolution, optionally reading its input through a
/// nearest-neighbour upsampling by an integer factor (so "upsample ×2 then conv" never
/// materialises the upsampled map).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeometry {
    /// Kernel side k.
    pub kernel: usize,
    /// Stride (≥ 1).
    pub stride: usize,
    /// Zero padding on every side, in upsampled pixels.
    pub padding: usize,
    /// Nearest-neighbour upsampling factor applied to the input first (1 = none).
    pub upsample: usize,
}

impl ConvGeometry {
    /// "Same"-style geometry: padding k/2, the given stride, no upsampling.
    pub fn same(kernel: usize, stride: usize) -> Self {
        Self {
            kernel,
            stride,
            padding: kernel / 2,
            upsample: 1,
        }
    }

    /// Output length along one axis for an input of `len`, or `None` if the kernel does not
    /// fit or the geometry is degenerate.
    pub fn out_len(&self, len: usize) -> Option<usize> {
        if self.stride == 0 || self.upsample == 0 || self.kernel == 0 {
            return None;
        }
        let eff = len * self.upsample + 2 * self.padding;
        (eff >= self.kernel).then(|| (eff - self.kernel) / self.stride + 1)
    }

    /// Output coordinates `o` whose kernel tap `tap` reads inside the (upsampled) input of
    /// length `len_eff`: `0 ≤ o·stride + tap − padding < len_eff`, clipped to `[0, out_len)`.
    pub(crate) fn valid(&self, tap: usize, len_eff: usize, out_len: usize) -> (usize, usize) {
        let lo = self.padding.saturating_sub(tap).div_ceil(self.stride);
        let hi = if len_eff + self.padding > tap {
            ((len_eff - 1 + self.padding - tap) / self.stride + 1).min(out_len)
        } else {
            0
        };
        (lo.min(hi), hi)
    }

    /// Input index (in original pixels) read by output `o` at tap `tap`; only valid inside
    /// [`Self::valid`]'s range.
    #[inline]
    pub(crate) fn source(&self, o: usize, tap: usize) -> usize {
        (o * self.stride + tap - self.padding) / self.upsample
    }
}

/// Read access to `channels` maps of `height × width` per image inside a flat buffer: image
/// `n`, channel `c` starts at `offset + n·image_stride + c·height·width`.
#[derive(Debug, Clone, Copy)]
pub struct Planes<'a> {
    /// The whole storage.
    pub data: &'a [f32],
    /// Start of image 0, channel 0.
    pub offset: usize,
    /// Distance between images.
    pub image_stride: usize,
    /// Channels visible through this view.
    pub channels: usize,
    /// Map height.
    pub height: usize,
    /// Map width.
    pub width: usize,
}

impl<'a> Planes<'a> {
    /// One channel map of one image.
    #[inline]
    pub fn plane(&self, image: usize, channel: usize) -> &'a [f32] {
        let hw = self.height * self.width;
        let start = self.offset + image * self.image_stride + channel * hw;
        &self.data[start..start + hw]
    }

    /// The same buffer seen from channel `first` on, with `channels` channels.
    pub fn channels(&self, first: usize, channels: usize) -> Planes<'a> {
        Planes {
            offset: self.offset + first * self.height * self.width,
            channels,
            ..*self
        }
    }
}

/// A `[N, C, H, W]` f32 view of a candle storage whose per-image part is contiguous (any image
/// stride, e.g. a slice of a larger sequence tensor).
pub fn planes<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    what: &str,
) -> candle_core::Result<(usize, Planes<'a>)> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("{what}: the fused CPU kernels need f32 tensors");
    };
    let (dims, stride) = (layout.dims(), layout.stride());
    let &[n, c, h, w] = dims else {
        candle_core::bail!("{what}: expected a 4-D tensor, got shape {dims:?}");
    };
    let inner_ok =
        (w <= 1 || stride[3] == 1) && (h <= 1 || stride[2] == w) && (c <= 1 || stride[1] == h * w);
    if !inner_ok {
        candle_core::bail!("{what}: each image must be contiguous (strides {stride:?})");
    }
    let view = Planes {
        data: data.as_slice(),
        offset: layout.start_offset(),
        image_stride: if n <= 1 { c * h * w } else { stride[0] },
        channels: c,
        height: h,
        width: w,
    };
    let last = view.offset + n.saturating_sub(1) * view.image_stride + c * h * w;
    if n > 0 && last > data.len() {
        candle_core::bail!("{what}: layout reaches past the storage");
    }
    Ok((n, view))
}

/// A contiguous f32 slice of a candle storage.
pub fn contiguous<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    what: &str,
) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("{what}: the fused CPU kernels need f32 tensors");
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("{what}: must be contiguous"),
    }
}

/// Column-buffer floats per chunk that keep a chunk's working set in a core's L2 cache.
const CHUNK_FLOATS: usize = 1 << 18;
/// Chunks a batch is split into at least, so two or more cores have work even for one small
/// batch. Fixed (not the thread count) so summation order, and hence every result, does not
/// depend on how many threads run.
const MIN_CHUNKS: usize = 4;

/// Images per chunk for `n` images whose column buffers take `floats_per_image` each.
pub fn images_per_chunk(n: usize, floats_per_image: usize) -> usize {
    let fit = (CHUNK_FLOATS / floats_per_image.max(1)).max(1);
    fit.min(n.div_ceil(MIN_CHUNKS)).max(1)
}

/// Element-wise sum of per-chunk partial results, in chunk order (a fixed order, so the total
/// does not depend on how many threads computed the parts).
pub fn sum_partials(partials: &[Vec<f32>], len: usize) -> Vec<f32> {
    let mut total = vec![0.0f32; len];
    for part in partials {
        for (t, v) in total.iter_mut().zip(part) {
            *t += v;
        }
    }
    total
}

/// A buffer of `len` floats filled in parallel chunks of `chunk_len` floats (the last may be
/// shorter) by `fill(chunk index, chunk)`, each chunk zeroed by the thread that fills it, just
/// before `fill` sees it.
///
/// Kernel outputs are made this way rather than with `vec![0.0; len]`: the allocator reuses
/// freed memory (docs/kernels.md, "Allocator"), so a zeroed allocation is a `memset` of the
/// whole buffer on the calling thread while the others wait, and then a second pass over memory
/// that has left the cache. Zeroing chunk by chunk spreads that pass over the threads and leaves
/// each chunk in the cache of the thread that writes it. Zeroing, not leaving the memory
/// uninitialised, keeps it sound and lets accumulating kernels start from zero. Fresh pages are
/// first touched by that write, never by a read (a read would map the shared zero page and make
/// every later write a copy-on-write fault).
pub fn par_fill(len: usize, chunk_len: usize, fill: impl Fn(usize, &mut [f32]) + Sync) -> Vec<f32> {
    let mut out: Vec<f32> = Vec::with_capacity(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(chunk_len.max(1))
        .enumerate()
        .for_each(|(chunk, dest)| fill(chunk, zeroed(dest)));
    // SAFETY: the chunks cover `0..len`, `zeroed` initialised every one before `fill` ran, and
    // `for_each` returns only after all of them (a panic in `fill` propagates before this).
    unsafe { out.set_len(len) };
    out
}

/// Two buffers of `n` images each, `image.0` and `image.1` floats an image, filled in parallel
/// chunks of `per` images by `fill(chunk index, chunk of the first, chunk of the second)`: the
/// [`par_fill`] of an op with two outputs (the ConvLSTM step's state and its gate activations).
pub fn par_fill_pair(
    n: usize,
    per: usize,
    image: (usize, usize),
    fill: impl Fn(usize, &mut [f32], &mut [f32]) + Sync,
) -> (Vec<f32>, Vec<f32>) {
    let per = per.max(1);
    let (len_a, len_b) = (n * image.0, n * image.1);
    // An image of either output without floats would split into no chunks and leave the other
    // unfilled; every caller's images hold floats (a layer has at least one channel).
    assert!(
        image.0 > 0 && image.1 > 0,
        "par_fill_pair: an image of {image:?} floats"
    );
    let (mut a, mut b): (Vec<f32>, Vec<f32>) =
        (Vec::with_capacity(len_a), Vec::with_capacity(len_b));
    // Both split into `n.div_ceil(per)` chunks of `per` images (the last shorter), so the zip
    // pairs every chunk of one with the chunk of the other that holds the same images.
    a.spare_capacity_mut()[..len_a]
        .par_chunks_mut(per * image.0)
        .zip(b.spare_capacity_mut()[..len_b].par_chunks_mut(per * image.1))
        .enumerate()
        .for_each(|(chunk, (da, db))| fill(chunk, zeroed(da), zeroed(db)));
    // SAFETY: as in `par_fill`: the chunks of each buffer cover its whole length and every one
    // was zeroed before `fill` saw it.
    unsafe {
        a.set_len(len_a);
        b.set_len(len_b);
    }
    (a, b)
}

/// Zeroes a chunk of uninitialised floats and returns it as initialised.
fn zeroed(dest: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    dest.fill(MaybeUninit::new(0.0));
    // SAFETY: every element was initialised on the line above, and `MaybeUninit<f32>` has the
    // layout of `f32`.
    unsafe { &mut *(dest as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// A zeroed gradient of `n` images of `image` floats each, filled in parallel chunks of `per`
/// images by `fill(first image, image count, chunk)` ([`par_fill`]).
pub fn par_image_chunks(
    n: usize,
    image: usize,
    per: usize,
    fill: impl Fn(usize, usize, &mut [f32]) + Sync,
) -> Vec<f32> {
    par_fill(n * image, per * image, |chunk, dest| {
        fill(chunk * per, dest.len() / image.max(1), dest)
    })
}

thread_local! {
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on a per-thread scratch buffer of `len` floats (contents unspecified), reused
/// across calls so the hot loops do not page-fault fresh allocations.
pub fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            if buf.len() < len {
                buf.resize(len, 0.0);
            }
            f(&mut buf[..len])
        }
        // Re-entered on the same thread (never in these kernels): use a fresh buffer.
        Err(_) => f(&mut vec![0.0; len]),
    })
}

simd_dispatch! {
/// Gathers the patches of images `first..first + count` of the channel-wise concatenation of
/// `sources` into `cols`, a row-major `[K, count·P]` matrix: row `(c, ky, kx)` (c counted across
/// sources, the weight layout `[Cout, Cin, k, k]`), column `(image, oy, ox)`. Taps outside the
/// input are zero.
pub fn im2col(
    sources: &[Planes],
    first: usize,
    count: usize,
    g: &ConvGeometry,
    out: (usize, usize),
    cols: &mut [f32],
) {
    let (out_h, out_w) = out;
    let p = out_h * out_w;
    let np = count * p;
    let k = g.kernel;
    let mut rows = cols.chunks_exact_mut(np);
    let rows_of = source_rows(g, out_h);
    for src in sources {
        let (h_eff, w_eff) = (src.height * g.upsample, src.width * g.upsample);
        for c in 0..src.channels {
            for ky in 0..k {
                let (oy_lo, oy_hi) = g.valid(ky, h_eff, out_h);
                for kx in 0..k {
                    let (ox_lo, ox_hi) = g.valid(kx, w_eff, out_w);
                    let Some(row) = rows.next() else { return };
                    for (i, dst) in row.chunks_exact_mut(p).enumerate() {
                        let plane = src.plane(first + i, c);
                        for (oy, d) in dst.chunks_exact_mut(out_w).enumerate() {
                            if oy < oy_lo || oy >= oy_hi {
                                d.fill(0.0);
                                continue;
                            }
                            let iy = rows_of[ky * out_h + oy];
                            let line = &plane[iy * src.width..(iy + 1) * src.width];
                            zero_small(&mut d[..ox_lo]);
                            zero_small(&mut d[ox_hi..]);
                            let first = ox_lo * g.stride + kx - g.padding;
                            let run = &mut d[ox_lo..ox_hi];
                            match (g.stride, g.upsample) {
                                (1, 1) => copy_small(run, &line[first..first + run.len()]),
                                (2, 1) => gather::<2, 1>(run, line, first),
                                (1, 2) => gather::<1, 2>(run, line, first),
                                _ => {
                                    for (j, v) in run.iter_mut().enumerate() {
                                        *v = line[(first + j * g.stride) / g.upsample];
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
}

/// Input row read by output row `oy` at tap `ky`, as a `[k, out_h]` table (entries outside
/// the valid range are unused): keeps a runtime division out of the per-row loops.
fn source_rows(g: &ConvGeometry, out_h: usize) -> Vec<usize> {
    let mut table = vec![0; g.kernel * out_h];
    for ky in 0..g.kernel {
        for oy in 0..out_h {
            if oy * g.stride + ky >= g.padding {
                table[ky * out_h + oy] = (oy * g.stride + ky - g.padding) / g.upsample;
            }
        }
    }
    table
}

/// `dst = src` for short runs: fixed 8-float blocks the compiler turns into vector moves
/// (a `memcpy` call per 8-pixel map row costs more than the copy).
#[inline(always)]
fn copy_small(dst: &mut [f32], src: &[f32]) {
    let mut d = dst.chunks_exact_mut(8);
    let mut s = src.chunks_exact(8);
    for (a, b) in (&mut d).zip(&mut s) {
        let a: &mut [f32; 8] = a.try_into().expect("8-float block");
        let b: &[f32; 8] = b.try_into().expect("8-float block");
        *a = *b;
    }
    for (a, b) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *a = *b;
    }
}

/// `dst += src` for short runs, in 8-float blocks.
#[inline(always)]
fn add_small(dst: &mut [f32], src: &[f32]) {
    let mut d = dst.chunks_exact_mut(8);
    let mut s = src.chunks_exact(8);
    for (a, b) in (&mut d).zip(&mut s) {
        let a: &mut [f32; 8] = a.try_into().expect("8-float block");
        let b: &[f32; 8] = b.try_into().expect("8-float block");
        for (x, y) in a.iter_mut().zip(b) {
            *x += y;
        }
    }
    for (a, b) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *a += b;
    }
}

/// Zeroes a run that is at most a few floats long (the padding columns) without a `memset`.
#[inline(always)]
fn zero_small(dst: &mut [f32]) {
    for v in dst {
        *v = 0.0;
    }
}

/// `dst[j] = line[(first + j·S) / U]` with the stride and upsampling factor known at compile
/// time (a runtime division per pixel would dominate the gather).
#[inline(always)]
fn gather<const S: usize, const U: usize>(dst: &mut [f32], line: &[f32], first: usize) {
    if S == 1 && U == 2 {
        // Nearest ×2: each source pixel fills two neighbours; peel an odd start, then pairs.
        let (mut dst, mut src) = (dst, first / 2);
        if first % 2 == 1 && !dst.is_empty() {
            dst[0] = line[src];
            dst = &mut dst[1..];
            src += 1;
        }
        let mut blocks = dst.chunks_exact_mut(8);
        let mut sources = line[src..].chunks_exact(4);
        for (block, s) in (&mut blocks).zip(&mut sources) {
            let block: &mut [f32; 8] = block.try_into().expect("8-float block");
            *block = [s[0], s[0], s[1], s[1], s[2], s[2], s[3], s[3]];
        }
        let done = dst.len() / 8 * 8;
        for (j, v) in dst[done..].iter_mut().enumerate() {
            *v = line[src + (done + j) / 2];
        }
        return;
    }
    for (j, v) in dst.iter_mut().enumerate() {
        *v = line[(first + j * S) / U];
    }
}

/// `line[(first + j·S) / U] += src[j]`, the transpose of [`gather`].
#[inline(always)]
fn scatter_add<const S: usize, const U: usize>(line: &mut [f32], src: &[f32], first: usize) {
    for (j, v) in src.iter().enumerate() {
        line[(first + j * S) / U] += v;
    }
}

simd_dispatch! {
/// The transpose of [`im2col`]: adds column-buffer entries back onto the input pixels they
/// were gathered from. `dest` holds `count` images of `channels × height × width` (the
/// original, not upsampled, size), contiguous.
pub fn col2im(
    cols: &[f32],
    count: usize,
    g: &ConvGeometry,
    out: (usize, usize),
    dest: &mut [f32],
    channels: usize,
    input: (usize, usize),
) {
    let (height, width) = input;
    let (out_h, out_w) = out;
    let p = out_h * out_w;
    let np = count * p;
    let k = g.kernel;
    let hw = height * width;
    let (h_eff, w_eff) = (height * g.upsample, width * g.upsample);
    let mut rows = cols.chunks_exact(np);
    let rows_of = source_rows(g, out_h);
    for c in 0..channels {
        for ky in 0..k {
            let (oy_lo, oy_hi) = g.valid(ky, h_eff, out_h);
            for kx in 0..k {
                let (ox_lo, ox_hi) = g.valid(kx, w_eff, out_w);
                let Some(row) = rows.next() else { return };
                for (i, src) in row.chunks_exact(p).enumerate() {
                    let start = (i * channels + c) * hw;
                    let plane = &mut dest[start..start + hw];
                    for oy in oy_lo..oy_hi {
                        let s = &src[oy * out_w..(oy + 1) * out_w];
                        let iy = rows_of[ky * out_h + oy];
                        let line = &mut plane[iy * width..(iy + 1) * width];
                        let first = ox_lo * g.stride + kx - g.padding;
                        let run = &s[ox_lo..ox_hi];
                        match (g.stride, g.upsample) {
                            (1, 1) => add_small(&mut line[first..first + run.len()], run),
                            (2, 1) => scatter_add::<2, 1>(line, run, first),
                            (1, 2) => scatter_add::<1, 2>(line, run, first),
                            _ => {
                                for (j, v) in run.iter().enumerate() {
                                    line[(first + j * g.stride) / g.upsample] += v;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
}

/// A strided read-only matrix for [`matmul`].
#[derive(Debug, Clone, Copy)]
pub struct Mat<'a> {
    /// Backing slice.
    pub data: &'a [f32],
    /// Distance between rows.
    pub row_stride: usize,
    /// Distance between columns.
    pub col_stride: usize,
}

impl Mat<'_> {
    fn fits(&self, rows: usize, cols: usize) -> bool {
        rows == 0
            || cols == 0
            || (rows - 1) * self.row_stride + (cols - 1) * self.col_stride < self.data.len()
    }
}

/// `dst[m×n] (+)= lhs[m×k] · rhs[k×n]` on one thread (callers parallelise over chunks);
/// `dst` is row-major with row stride `dst_row_stride`, and is overwritten unless
/// `accumulate`.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    dst_row_stride: usize,
    accumulate: bool,
    lhs: Mat,
    rhs: Mat,
) {
    assert!(
        lhs.fits(m, k)
            && rhs.fits(k, n)
            && (m == 0 || n == 0 || (m - 1) * dst_row_stride + n <= dst.len()),
        "matmul operands out of bounds"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                dst[r * dst_row_stride..r * dst_row_stride + n].fill(0.0);
            }
        }
        return;
    }
    // SAFETY: the assertion above keeps every index the kernel touches inside the slices;
    // `dst` is borrowed mutably and does not alias the inputs.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_row_stride as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct convolution of one-channel-per-source inputs, the definition im2col must match.
    fn direct_patch(
        x: &[f32],
        (h, w): (usize, usize),
        g: &ConvGeometry,
        oy: usize,
        ox: usize,
        ky: usize,
        kx: usize,
    ) -> f32 {
        let iy = (oy * g.stride + ky) as isize - g.padding as isize;
        let ix = (ox * g.stride + kx) as isize - g.padding as isize;
        let (he, we) = ((h * g.upsample) as isize, (w * g.upsample) as isize);
        if iy < 0 || ix < 0 || iy >= he || ix >= we {
            0.0
        } else {
            x[(iy as usize / g.upsample) * w + ix as usize / g.upsample]
        }
    }

    fn geometries() -> Vec<ConvGeometry> {
        let mut out = Vec::new();
        for kernel in [1, 3, 5] {
            for stride in [1, 2] {
                for upsample in [1, 2] {
                    for padding in [0, kernel / 2, kernel] {
                        out.push(ConvGeometry {
                            kernel,
                            stride,
                            padding,
                            upsample,
                        });
                    }
                }
            }
        }
        out
    }

    #[test]
    fn im2col_matches_direct_indexing_and_col2im_is_its_transpose() {
        for g in geometries() {
            for (h, w) in [(5, 7), (4, 4), (1, 3)] {
                let (Some(oh), Some(ow)) = (g.out_len(h), g.out_len(w)) else {
                    continue;
                };
                let count = 2;
                let x: Vec<f32> = (0..count * h * w).map(|v| v as f32 * 0.37 - 3.0).collect();
                let src = Planes {
                    data: &x,
                    offset: 0,
                    image_stride: h * w,
                    channels: 1,
                    height: h,
                    width: w,
                };
                let kk = g.kernel * g.kernel;
                let np = count * oh * ow;
                let mut cols = vec![f32::NAN; kk * np];
                im2col(&[src], 0, count, &g, (oh, ow), &mut cols);
                for ky in 0..g.kernel {
                    for kx in 0..g.kernel {
                        for i in 0..count {
                            for oy in 0..oh {
                                for ox in 0..ow {
                                    let want = direct_patch(
                                        &x[i * h * w..(i + 1) * h * w],
                                        (h, w),
                                        &g,
                                        oy,
                                        ox,
                                        ky,
                                        kx,
                                    );
                                    let got = cols
                                        [(ky * g.kernel + kx) * np + i * oh * ow + oy * ow + ox];
                                    assert_eq!(got, want, "{g:?} {h}x{w}");
                                }
                            }
                        }
                    }
                }
                // <im2col(x), y> == <x, col2im(y)> for any y.
                let y: Vec<f32> = (0..kk * np).map(|v| ((v * 7) % 11) as f32 - 5.0).collect();
                let mut back = vec![0.0f32; count * h * w];
                col2im(&y, count, &g, (oh, ow), &mut back, 1, (h, w));
                let lhs: f64 = cols.iter().zip(&y).map(|(a, b)| (a * b) as f64).sum();
                let rhs: f64 = x.iter().zip(&back).map(|(a, b)| (a * b) as f64).sum();
                assert!((lhs - rhs).abs() < 1e-3 * lhs.abs().max(1.0), "{g:?}");
            }
        }
    }

    #[test]
    fn matmul_handles_strides_and_accumulation() {
        // lhs 2×3 read transposed from a 3×2 buffer, rhs 3×2 row-major.
        let lhs_t = [1.0f32, 4.0, 2.0, 5.0, 3.0, 6.0];
        let rhs = [1.0f32, 0.5, -1.0, 2.0, 0.0, 1.0];
        let mut dst = [10.0f32, 10.0, 99.0, 10.0, 10.0, 99.0];
        let lhs = Mat {
            data: &lhs_t,
            row_stride: 1,
            col_stride: 2,
        };
        let rhs = Mat {
            data: &rhs,
            row_stride: 2,
            col_stride: 1,
        };
        matmul((2, 2, 3), &mut dst, 3, true, lhs, rhs);
        // [[1,2,3],[4,5,6]] · [[1,.5],[-1,2],[0,1]] = [[-1, 7.5], [-1, 18]]
        assert_eq!(dst, [9.0, 17.5, 99.0, 9.0, 28.0, 99.0]);
        matmul((2, 2, 3), &mut dst, 3, false, lhs, rhs);
        assert_eq!(dst, [-1.0, 7.5, 99.0, -1.0, 18.0, 99.0]);
    }

    #[test]
    fn par_fill_hands_out_zeroed_chunks_that_cover_the_buffer_once() {
        // Reused memory first: a freed buffer of non-zero floats is the allocation most likely
        // to come back, and `par_fill` must zero it before `fill` reads it.
        drop(vec![7.0f32; 10_000]);
        for (len, chunk_len) in [(0, 4), (10, 3), (12, 4), (10_000, 997), (5, 0)] {
            let seen = std::sync::Mutex::new(Vec::new());
            let out = par_fill(len, chunk_len, |chunk, dest| {
                assert!(dest.iter().all(|&v| v == 0.0), "chunk {chunk} not zeroed");
                // An accumulation, as the gradient kernels do, then a mark of the chunk.
                for (i, v) in dest.iter_mut().enumerate() {
                    *v += (chunk * 100_000 + i) as f32;
                }
                seen.lock().unwrap().push((chunk, dest.len()));
            });
            assert_eq!(out.len(), len);
            let step = chunk_len.max(1);
            let mut seen = seen.into_inner().unwrap();
            seen.sort_unstable();
            let expected: Vec<(usize, usize)> = (0..len.div_ceil(step))
                .map(|c| (c, step.min(len - c * step)))
                .collect();
            assert_eq!(seen, expected, "len {len}, chunk {chunk_len}");
            for (at, v) in out.iter().enumerate() {
                let (chunk, i) = (at / step, at % step);
                assert_eq!(*v, (chunk * 100_000 + i) as f32, "element {at}");
            }
        }
    }

    #[test]
    fn par_fill_pair_pairs_the_chunks_that_hold_the_same_images() {
        drop(vec![7.0f32; 10_000]);
        for (n, per) in [(0, 2), (1, 3), (7, 2), (9, 3)] {
            let (a, b) = par_fill_pair(n, per, (3, 5), |chunk, da, db| {
                assert!(
                    da.iter().chain(db.iter()).all(|&v| v == 0.0),
                    "chunk {chunk}"
                );
                assert_eq!((da.len() / 3, da.len() % 3), (db.len() / 5, db.len() % 5));
                // Each float records its image, so a mispaired chunk shows in the output.
                for (i, v) in da.iter_mut().enumerate() {
                    *v += (chunk * per + i / 3) as f32;
                }
                for (i, v) in db.iter_mut().enumerate() {
                    *v += (chunk * per + i / 5) as f32;
                }
            });
            assert_eq!((a.len(), b.len()), (3 * n, 5 * n));
            for image in 0..n {
                assert!(
                    a[3 * image..3 * image + 3]
                        .iter()
                        .all(|&v| v == image as f32)
                );
                assert!(
                    b[5 * image..5 * image + 5]
                        .iter()
                        .all(|&v| v == image as f32)
                );
            }
        }
    }

    #[test]
    fn chunking_does_not_depend_on_threads_and_keeps_cores_busy() {
        assert_eq!(images_per_chunk(8, 27_648), 2);
        assert_eq!(images_per_chunk(152, 147_456), 1);
        assert_eq!(images_per_chunk(1, 10), 1);
        assert_eq!(images_per_chunk(1000, 1), 250);
    }
}
