//! Where a galaxy is anomalous: the per-spaxel anomaly map, smoothed at the PSF scale, its
//! localized score and the anomalous region.
//!
//! For every usable measurement (line `l`, pixel `p`, weight `w > 0`) the squared residual is
//! expressed in units of an error that includes the model's own uncertainty,
//! `z² = w·r² / (1 + w·ε_l²·x̂²)`: the measurement variance `1/w` plus a fraction `ε_l` of the
//! reconstructed flux. Without the second term χ² grows with signal-to-noise wherever the model
//! is not noise-limited, so bright ordinary galaxies would top every ranking; with it a bright
//! pixel's error saturates at its fractional model error while faint pixels stay in σ units.
//! `ε_l` is fitted per line on the calibration galaxies (`calibration.rs`). The
//! reconstruction `x̂` (not the data `x`) sets the floor, so flux the model did not expect is not
//! excused by its own brightness.
//!
//! The map at pixel `p` is the mean `z²` of the measurements within a PSF-sized Gaussian
//! neighbourhood (normalised convolution: `G∗Σ_l z² / G∗n`, so masked pixels neither count nor
//! dilute). A compact anomaly — a nucleus, a knot — covers about one PSF, so this is the scale at
//! which it is seen whole and noise is averaged down. The localized score is the map's peak; the
//! region is the connected set of pixels around the peak whose excess over the galaxy's median
//! level is at least half the peak's excess.
//!
//! When several models score a galaxy (the runs of a restart ensemble), the map kept and its
//! region are their consensus, the pixelwise geometric mean ([`MapResiduals::consensus`]):
//! where one run alone misplaces a compact source, the others outvote it. The localized score
//! and the galaxy-wide scores stay each model's own: they are components of its fused score.

use std::path::Path;

use oddcube_data::dataset::GalaxyRecord;

use crate::error::{Error, Result, check_len};
use crate::results::invalid;

/// PSF FWHM assumed when a galaxy's header does not record one: MaNGA's typical reconstructed
/// r-band FWHM (≈ 2.5″, Law et al. 2016).
pub const DEFAULT_PSF_FWHM_ARCSEC: f64 = 2.5;

/// Marks a pixel without a dominant line (no usable measurement) in [`AnomalyMap::line`].
pub const NO_LINE: u8 = u8::MAX;

/// Size of one of `galaxy`'s dataset-grid pixels in arcsec; a grid pixel is taken as one
/// 0.5″ spaxel when the box it was resampled from is unknown.
pub fn pixel_arcsec(galaxy: &GalaxyRecord, size: usize) -> f64 {
    let pixel = galaxy.pixel_arcsec(size);
    if pixel.is_finite() && pixel > 0.0 {
        pixel
    } else {
        oddcube_data::maps::SPAXEL_ARCSEC
    }
}

/// `galaxy`'s PSF FWHM in dataset-grid pixels; an unknown PSF takes
/// [`DEFAULT_PSF_FWHM_ARCSEC`].
pub fn psf_fwhm_pixels(galaxy: &GalaxyRecord, size: usize) -> f64 {
    let fwhm = if galaxy.psf_fwhm.is_finite() && galaxy.psf_fwhm > 0.0 {
        galaxy.psf_fwhm
    } else {
        DEFAULT_PSF_FWHM_ARCSEC
    };
    fwhm / pixel_arcsec(galaxy, size)
}

/// One galaxy's anomaly map on the dataset grid (`size × size`, row-major).
#[derive(Debug, Clone, PartialEq)]
pub struct AnomalyMap {
    /// Side of the grid.
    pub size: usize,
    /// PSF-smoothed mean `z²` per measurement; NaN where the pixel has no usable measurement.
    /// A consensus map ([`MapResiduals::consensus`]) holds the models' geometric mean, NaN
    /// where any of them has no usable measurement.
    pub value: Vec<f32>,
    /// Index of the line with the largest `z²` at the pixel (unsmoothed); [`NO_LINE`] where none.
    pub line: Vec<u8>,
}

/// What the map says about the galaxy as a whole.
#[derive(Debug, Clone, PartialEq)]
pub struct MapSummary {
    /// Peak of the smoothed map (the localized score); NaN without usable pixels.
    pub peak: f64,
    /// Mean `z²` over all usable measurements (the global, floor-tempered χ²).
    pub mean: f64,
    /// `Σ w·r² / Σ (1 + w·ε_l²·x̂²)` over all usable measurements: how many times the galaxy's
    /// total error budget (measurement variance plus model floor) its residuals use. Unlike
    /// [`MapSummary::mean`], a ratio of sums, so each measurement weighs by its own budget and
    /// the many faint, noise-limited pixels of a galaxy do not dilute a bright anomaly.
    pub pooled: f64,
    /// Pixels with at least one usable measurement.
    pub n_pixels: usize,
    /// Region centre, pixel coordinates (column, row), excess-weighted.
    pub centre: (f64, f64),
    /// Region area in pixels.
    pub area: usize,
    /// Line with the largest summed `z²` inside the region; [`NO_LINE`] when the map is empty.
    pub line: u8,
}

/// Squared residual of one measurement in units of its total error (see the module docs).
#[inline]
pub fn floored_z2(x: f32, w: f32, xhat: f32, floor: f64) -> f64 {
    let (chi2, budget) = chi2_and_budget(x, w, xhat, floor);
    chi2 / budget
}

/// One measurement's `w·r²` (its χ²) and its error budget in measurement-variance units,
/// `1 + w·ε²·x̂²`; [`floored_z2`] is their ratio, [`MapSummary::pooled`] the ratio of their sums.
#[inline]
pub fn chi2_and_budget(x: f32, w: f32, xhat: f32, floor: f64) -> (f64, f64) {
    let (x, w, xhat) = (f64::from(x), f64::from(w), f64::from(xhat));
    let r = x - xhat;
    (w * r * r, 1.0 + w * floor * floor * xhat * xhat)
}

/// Normalised 1-D Gaussian kernel of the given FWHM (pixels), truncated at 3σ; a single tap
/// when the FWHM is below a tenth of a pixel (nothing to smooth).
fn gaussian_kernel(fwhm: f64) -> Vec<f64> {
    let sigma = fwhm / (8.0 * std::f64::consts::LN_2).sqrt();
    // NaN or a FWHM under a tenth of a pixel: nothing to smooth.
    if sigma.is_nan() || sigma < 0.1 / 2.3548 {
        return vec![1.0];
    }
    let half = (3.0 * sigma).ceil() as i64;
    let taps: Vec<f64> = (-half..=half)
        .map(|i| (-0.5 * (i as f64 / sigma).powi(2)).exp())
        .collect();
    let sum: f64 = taps.iter().sum();
    taps.into_iter().map(|t| t / sum).collect()
}

/// Separable convolution of a `size × size` map with `kernel` (zero outside the grid).
fn convolve(map: &[f64], size: usize, kernel: &[f64]) -> Vec<f64> {
    let half = (kernel.len() / 2) as isize;
    let pass = |src: &[f64], along_rows: bool| {
        let mut out = vec![0.0; src.len()];
        for r in 0..size {
            for c in 0..size {
                let mut acc = 0.0;
                for (k, &t) in kernel.iter().enumerate() {
                    let o = k as isize - half;
                    let (rr, cc) = if along_rows {
                        (r as isize, c as isize + o)
                    } else {
                        (r as isize + o, c as isize)
                    };
                    if rr >= 0 && cc >= 0 && (rr as usize) < size && (cc as usize) < size {
                        acc += t * src[rr as usize * size + cc as usize];
                    }
                }
                out[r * size + c] = acc;
            }
        }
        out
    };
    pass(&pass(map, true), false)
}

/// The anomaly map of one galaxy from its maps `x`, weights `w` and reconstruction `xhat`
/// (`n_lines · size · size`, line-major), per-line fractional floors `floors` (one per line,
/// 0 = pure χ²) and the PSF FWHM in pixels. Returns the map and its summary.
pub fn anomaly_map(
    x: &[f32],
    w: &[f32],
    xhat: &[f32],
    n_lines: usize,
    size: usize,
    floors: &[f64],
    psf_fwhm_px: f64,
) -> Result<(AnomalyMap, MapSummary)> {
    let residuals = map_residuals(x, w, xhat, n_lines, size, floors, psf_fwhm_px)?;
    let summary = residuals.summary(&residuals.map.value);
    Ok((residuals.map, summary))
}

/// One model's anomaly map of one galaxy together with what its summary needs: the unsmoothed
/// per-line `z²` and the galaxy-wide sums. [`anomaly_map`] summarises it on its own map;
/// [`MapResiduals::consensus`] on the consensus of several models' maps.
#[derive(Debug, Clone, PartialEq)]
pub struct MapResiduals {
    /// The model's own smoothed map.
    pub map: AnomalyMap,
    /// Unsmoothed `z²` per line and pixel (`n_lines · size · size`, 0 where unusable).
    per_line: Vec<f64>,
    n_lines: usize,
    /// Summed `z²` over every usable measurement.
    total: f64,
    /// Number of usable measurements.
    measurements: f64,
    /// [`MapSummary::pooled`] of this model's residuals.
    pooled: f64,
}

/// [`MapResiduals`] of one galaxy (arguments as for [`anomaly_map`]).
pub fn map_residuals(
    x: &[f32],
    w: &[f32],
    xhat: &[f32],
    n_lines: usize,
    size: usize,
    floors: &[f64],
    psf_fwhm_px: f64,
) -> Result<MapResiduals> {
    let plane = size * size;
    check_len("maps", x.len(), n_lines * plane)?;
    check_len("weights", w.len(), n_lines * plane)?;
    check_len("reconstruction", xhat.len(), n_lines * plane)?;
    check_len("line floors", floors.len(), n_lines)?;
    if n_lines > usize::from(NO_LINE) {
        return Err(Error::InvalidParameter {
            name: "lines".to_string(),
            value: n_lines.to_string(),
            reason: format!("anomaly maps index at most {NO_LINE} lines"),
        });
    }
    let mut sum = vec![0.0f64; plane];
    let mut count = vec![0.0f64; plane];
    let mut best = vec![(f64::NEG_INFINITY, NO_LINE); plane];
    let mut per_line = vec![0.0f64; n_lines * plane];
    let (mut chi2_total, mut budget_total) = (0.0f64, 0.0f64);
    for (l, &floor) in floors.iter().enumerate() {
        for p in 0..plane {
            let i = l * plane + p;
            if w[i] > 0.0 && w[i].is_finite() && x[i].is_finite() && xhat[i].is_finite() {
                let (chi2, budget) = chi2_and_budget(x[i], w[i], xhat[i], floor);
                let z2 = chi2 / budget;
                chi2_total += chi2;
                budget_total += budget;
                sum[p] += z2;
                count[p] += 1.0;
                per_line[i] = z2;
                if z2 > best[p].0 {
                    best[p] = (z2, l as u8);
                }
            }
        }
    }
    let kernel = gaussian_kernel(psf_fwhm_px);
    let smooth_sum = convolve(&sum, size, &kernel);
    let smooth_count = convolve(&count, size, &kernel);
    let value: Vec<f32> = (0..plane)
        .map(|p| {
            if count[p] > 0.0 && smooth_count[p] > 0.0 {
                (smooth_sum[p] / smooth_count[p]) as f32
            } else {
                f32::NAN
            }
        })
        .collect();
    let line: Vec<u8> = best.iter().map(|&(_, l)| l).collect();
    let pooled = if budget_total > 0.0 {
        chi2_total / budget_total
    } else {
        f64::NAN
    };
    Ok(MapResiduals {
        map: AnomalyMap { size, value, line },
        per_line,
        n_lines,
        total: sum.iter().sum(),
        measurements: count.iter().sum(),
        pooled,
    })
}

impl MapResiduals {
    /// The map shown for a galaxy that several models scored (a restart ensemble), with its
    /// summary: pixel by pixel the geometric mean of this model's map and `others` (the other
    /// models' maps of the same galaxy), so a pixel stands out only where every model leaves
    /// residuals there, and a region one model alone misplaces is damped. The region, its
    /// centre and area are the consensus map's; its line is read from this model's per-line
    /// residuals inside that region; the peak ([`MapSummary::peak`]), mean and pooled scores
    /// and the usable pixels stay this model's own, since they are components of its fused
    /// score under its own null.
    /// The pixel's dominant line ([`AnomalyMap::line`]) stays this model's. Errors unless every
    /// other map has this one's size.
    pub fn consensus(self, others: &[&[f32]]) -> Result<(AnomalyMap, MapSummary)> {
        if others.is_empty() {
            let summary = self.summary(&self.map.value);
            return Ok((self.map, summary));
        }
        let plane = self.map.value.len();
        for other in others {
            check_len("consensus anomaly map", other.len(), plane)?;
        }
        let models = (others.len() + 1) as f64;
        let value: Vec<f32> = (0..plane)
            .map(|p| {
                let logs: f64 = std::iter::once(self.map.value[p])
                    .chain(others.iter().map(|o| o[p]))
                    .map(|v| f64::from(v).ln())
                    .sum();
                // ln 0 = −∞ makes a pixel that one model rebuilds exactly 0; NaN (unusable in
                // any map) stays NaN.
                (logs / models).exp() as f32
            })
            .collect();
        let summary = self.summary(&value);
        let map = AnomalyMap { value, ..self.map };
        Ok((map, summary))
    }

    /// The summary: the scores (peak, mean, pooled, usable pixels) from this model's own map
    /// and residuals, the region (centre, area, line) from `region_map` (this model's own map,
    /// or a consensus of several on the same grid). A consensus that has no usable pixel
    /// therefore leaves the region empty but never this model's scores.
    fn summary(&self, region_map: &[f32]) -> MapSummary {
        let size = self.map.size;
        let mut summary = MapSummary {
            peak: own_peak(&self.map.value),
            mean: if self.measurements > 0.0 {
                self.total / self.measurements
            } else {
                f64::NAN
            },
            pooled: self.pooled,
            n_pixels: self.map.value.iter().filter(|v| v.is_finite()).count(),
            centre: (f64::NAN, f64::NAN),
            area: 0,
            line: NO_LINE,
        };
        let Some(RegionMask {
            peak_pixel,
            peak,
            background,
            inside,
            ..
        }) = region_mask(region_map, size)
        else {
            return summary;
        };
        let (mut wsum, mut cx, mut cy, mut area) = (0.0, 0.0, 0.0, 0usize);
        let mut line_sums = vec![0.0f64; self.n_lines];
        let plane = size * size;
        for p in (0..plane).filter(|&p| inside[p]) {
            let excess = (f64::from(region_map[p]) - background).max(0.0);
            // A flat map has no excess anywhere: fall back to equal weights.
            let weight = if peak > background { excess } else { 1.0 };
            wsum += weight;
            cx += weight * (p % size) as f64;
            cy += weight * (p / size) as f64;
            area += 1;
            for (l, s) in line_sums.iter_mut().enumerate() {
                *s += self.per_line[l * plane + p];
            }
        }
        let centre = if wsum > 0.0 {
            (cx / wsum, cy / wsum)
        } else {
            ((peak_pixel % size) as f64, (peak_pixel / size) as f64)
        };
        summary.line = line_sums
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0)))
            .map_or(NO_LINE, |(l, _)| l as u8);
        summary.centre = centre;
        summary.area = area;
        summary
    }
}

/// The largest finite value of a map (NaN when it has none): [`RegionMask::peak`] without the
/// region.
fn own_peak(value: &[f32]) -> f64 {
    value
        .iter()
        .filter(|v| v.is_finite())
        .map(|&v| f64::from(v))
        .fold(f64::NAN, f64::max)
}

/// The anomalous region of a smoothed map (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct RegionMask {
    /// The peak pixel (ties go to the lower index, so a flipped galaxy picks a deterministic one).
    pub peak_pixel: usize,
    /// The map's peak value.
    pub peak: f64,
    /// The median over usable pixels: the galaxy's typical level.
    pub background: f64,
    /// Pixels in the region: 4-connected to the peak, at least `background + (peak −
    /// background)/2`.
    pub inside: Vec<bool>,
    /// Usable (finite) pixels of the map.
    pub n_usable: usize,
}

/// The region of a `size × size` map (NaN = unusable); `None` without a usable pixel or when
/// the map is not `size²` long. The one rule the scorer and the explorer's views both use.
pub fn region_mask(value: &[f32], size: usize) -> Option<RegionMask> {
    if value.len() != size * size {
        return None;
    }
    let usable: Vec<usize> = (0..value.len()).filter(|&p| value[p].is_finite()).collect();
    let &peak_pixel = usable
        .iter()
        .max_by(|&&a, &&b| value[a].total_cmp(&value[b]).then(b.cmp(&a)))?;
    let peak = f64::from(value[peak_pixel]);
    let mut levels: Vec<f64> = usable.iter().map(|&p| f64::from(value[p])).collect();
    levels.sort_by(f64::total_cmp);
    let background = oddcube_data::stats::median_of_sorted(&levels).unwrap_or(f64::NAN);
    // Half the peak's excess over the galaxy's typical level; a flat map's region is its peak.
    let threshold = background + 0.5 * (peak - background);
    let mut inside = vec![false; value.len()];
    let mut stack = vec![peak_pixel];
    inside[peak_pixel] = true;
    while let Some(p) = stack.pop() {
        let (r, c) = (p / size, p % size);
        let neighbours = [
            (r > 0).then(|| p - size),
            (r + 1 < size).then(|| p + size),
            (c > 0).then(|| p - 1),
            (c + 1 < size).then(|| p + 1),
        ];
        for q in neighbours.into_iter().flatten() {
            if !inside[q] && value[q].is_finite() && f64::from(value[q]) >= threshold {
                inside[q] = true;
                stack.push(q);
            }
        }
    }
    Some(RegionMask {
        peak_pixel,
        peak,
        background,
        inside,
        n_usable: usable.len(),
    })
}

/// File name of the anomaly maps inside a RESULTS directory.
pub const ANOMALY_MAPS_FILE: &str = "anomaly_maps.safetensors";

/// IEEE half-precision bits of `v` (round to nearest even; NaN stays NaN, overflow → ∞). The
/// maps are stored in f16: 2 bytes a pixel keeps every galaxy's map at 2 KB on a 32×32 grid,
/// and a map needs 3 significant digits, not 7.
pub fn f32_to_f16_bits(v: f32) -> u16 {
    let bits = v.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let mant = bits & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if mant != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        let m = mant | 0x80_0000;
        let shift = (14 - e) as u32;
        let half = 1u32 << (shift - 1);
        let rounded = (m + half - 1 + ((m >> shift) & 1)) >> shift;
        return sign | rounded as u16;
    }
    let half = 0x1000u32;
    let rounded = mant + half - 1 + ((mant >> 13) & 1);
    let (e, m) = if rounded & 0x80_0000 != 0 {
        (e + 1, 0)
    } else {
        (e, rounded >> 13)
    };
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    sign | ((e as u16) << 10) | m as u16
}

/// `f32` value of IEEE half-precision bits.
pub fn f16_bits_to_f32(h: u16) -> f32 {
    let sign = u32::from(h & 0x8000) << 16;
    let exp = u32::from((h >> 10) & 0x1f);
    let mant = u32::from(h & 0x3ff);
    let bits = match (exp, mant) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: normalise.
            let shift = m.leading_zeros() - 21;
            let m = (m << shift) & 0x3ff;
            sign | ((113 - shift) << 23) | (m << 13)
        }
        (0x1f, 0) => sign | 0x7f80_0000,
        (0x1f, m) => sign | 0x7fc0_0000 | (m << 13),
        (e, m) => sign | ((e + 112) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

/// Anomaly maps of a set of galaxies, as `anomaly_maps.safetensors` stores them: tensors
/// `map` (`[N, S, S]` f16, NaN where unusable) and `line` (`[N, S, S]` u8, 255 = none);
/// metadata `plateifus` and `lines` (JSON arrays), `runs` (how many models' consensus the maps
/// are; absent in files written before consensus maps, which are one model's) and `units`.
#[derive(Debug, Clone, PartialEq)]
pub struct AnomalyMaps {
    /// Galaxies, in file order (the catalogue's).
    pub plateifus: Vec<String>,
    /// The line set (indices of `line` refer to it).
    pub lines: Vec<String>,
    /// Grid side.
    pub size: usize,
    /// `[N, S, S]` smoothed maps.
    pub value: Vec<f32>,
    /// `[N, S, S]` dominant-line indices.
    pub line: Vec<u8>,
    /// How many models' maps each map is the consensus of ([`MapResiduals::consensus`]): 1 for
    /// one model's own maps, the averaged runs of a restart ensemble otherwise.
    pub runs: usize,
}

impl Default for AnomalyMaps {
    fn default() -> Self {
        AnomalyMaps {
            plateifus: Vec::new(),
            lines: Vec::new(),
            size: 0,
            value: Vec::new(),
            line: Vec::new(),
            runs: 1,
        }
    }
}

impl AnomalyMaps {
    /// Galaxy `i`'s map and dominant lines.
    pub fn galaxy(&self, i: usize) -> (&[f32], &[u8]) {
        let plane = self.size * self.size;
        (
            &self.value[i * plane..(i + 1) * plane],
            &self.line[i * plane..(i + 1) * plane],
        )
    }

    /// Appends one galaxy's map.
    pub fn push(&mut self, plateifu: &str, map: &AnomalyMap) {
        self.plateifus.push(plateifu.to_string());
        self.size = map.size;
        self.value.extend_from_slice(&map.value);
        self.line.extend_from_slice(&map.line);
    }

    /// Writes `dir/anomaly_maps.safetensors` atomically.
    pub fn write(&self, dir: &Path) -> Result<()> {
        use safetensors::tensor::{Dtype, TensorView};
        let path = dir.join(ANOMALY_MAPS_FILE);
        let n = self.plateifus.len();
        let shape = vec![n, self.size, self.size];
        let half: Vec<u8> = self
            .value
            .iter()
            .flat_map(|&v| f32_to_f16_bits(v).to_le_bytes())
            .collect();
        let bad = |e: safetensors::SafeTensorError| invalid(&path, e.to_string());
        let tensors = vec![
            (
                "line",
                TensorView::new(Dtype::U8, shape.clone(), &self.line).map_err(bad)?,
            ),
            (
                "map",
                TensorView::new(Dtype::F16, shape, &half).map_err(bad)?,
            ),
        ];
        let mut meta = std::collections::HashMap::new();
        meta.insert(
            "plateifus".to_string(),
            serde_json::to_string(&self.plateifus).unwrap_or_default(),
        );
        meta.insert(
            "lines".to_string(),
            serde_json::to_string(&self.lines).unwrap_or_default(),
        );
        meta.insert("runs".to_string(), self.runs.to_string());
        meta.insert(
            "units".to_string(),
            "map: PSF-smoothed mean z² per measurement, the geometric mean over `runs` models' maps (docs/scoring.md); line: index into lines (the kept model's), 255 = none".to_string(),
        );
        let bytes = safetensors::serialize(tensors, Some(meta)).map_err(bad)?;
        crate::results::write_atomic(&path, &bytes)
    }

    /// Reads `dir/anomaly_maps.safetensors`; `Ok(None)` when the directory has none.
    pub fn read(dir: &Path) -> Result<Option<AnomalyMaps>> {
        let path = dir.join(ANOMALY_MAPS_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(Error::Io { path, source }),
        };
        let bad = |reason: String| invalid(&path, reason);
        let (_, meta) =
            safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
        let tensors =
            safetensors::SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
        let meta = meta.metadata().clone().unwrap_or_default();
        let list = |key: &str| -> Result<Vec<String>> {
            let text = meta
                .get(key)
                .ok_or_else(|| bad(format!("metadata lacks '{key}'")))?;
            serde_json::from_str(text).map_err(|e| bad(format!("metadata '{key}': {e}")))
        };
        let plateifus = list("plateifus")?;
        let lines = list("lines")?;
        let runs = match meta.get("runs") {
            None => 1,
            Some(text) => match text.parse::<usize>() {
                Ok(runs) if runs >= 1 => runs,
                _ => {
                    return Err(bad(format!(
                        "metadata 'runs' is {text:?}, expected a count ≥ 1"
                    )));
                }
            },
        };
        let map = tensors.tensor("map").map_err(|e| bad(e.to_string()))?;
        let line = tensors.tensor("line").map_err(|e| bad(e.to_string()))?;
        let shape = map.shape().to_vec();
        if shape.len() != 3 || shape[0] != plateifus.len() || shape[1] != shape[2] {
            return Err(bad(format!(
                "tensor 'map' has shape {shape:?}, expected [{}, S, S]",
                plateifus.len()
            )));
        }
        if line.shape() != shape.as_slice() {
            return Err(bad("tensors 'map' and 'line' differ in shape".to_string()));
        }
        let value = map
            .data()
            .chunks_exact(2)
            .map(|b| f16_bits_to_f32(u16::from_le_bytes([b[0], b[1]])))
            .collect();
        Ok(Some(AnomalyMaps {
            plateifus,
            lines,
            size: shape[1],
            value,
            line: line.data().to_vec(),
            runs,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A flat galaxy (x = x̂ = 1, w = 1 everywhere) with one line brightened by `bump` in a
    /// disc of radius `radius` around (col, row).
    fn galaxy(
        size: usize,
        lines: usize,
        bump: f32,
        col: f64,
        row: f64,
        radius: f64,
    ) -> [Vec<f32>; 3] {
        let plane = size * size;
        let x: Vec<f32> = (0..lines * plane)
            .map(|i| {
                let (l, p) = (i / plane, i % plane);
                let (r, c) = ((p / size) as f64, (p % size) as f64);
                let inside = (c - col).hypot(r - row) <= radius;
                1.0 + if l == 2 && inside { bump } else { 0.0 }
            })
            .collect();
        [x, vec![1.0; lines * plane], vec![1.0; lines * plane]]
    }

    #[test]
    fn perfect_reconstruction_gives_a_zero_map() {
        let [x, w, _] = galaxy(16, 4, 0.0, 5.0, 5.0, 2.0);
        let (map, s) = anomaly_map(&x, &w, &x, 4, 16, &[0.0; 4], 3.0).unwrap();
        assert!(map.value.iter().all(|&v| v == 0.0));
        assert_eq!(s.peak, 0.0);
        assert_eq!(s.n_pixels, 256);
    }

    #[test]
    fn a_compact_bump_is_found_where_it_is_with_its_line() {
        // A bump of 3σ in line 2 within radius 2 of (10, 4): z² = 9 in that line there.
        let [x, w, xhat] = galaxy(24, 4, 3.0, 10.0, 4.0, 2.0);
        let (map, s) = anomaly_map(&x, &w, &xhat, 4, 24, &[0.0; 4], 3.0).unwrap();
        assert!((s.centre.0 - 10.0).abs() < 0.5, "{:?}", s.centre);
        assert!((s.centre.1 - 4.0).abs() < 0.5, "{:?}", s.centre);
        assert_eq!(s.line, 2);
        assert_eq!(map.line[4 * 24 + 10], 2);
        // The disc holds 13 pixels; smoothing spreads it, the half-excess region stays compact.
        assert!(s.area >= 5 && s.area <= 60, "area {}", s.area);
        // The smoothed peak is below the unsmoothed per-pixel mean (9/4) and above the floor 0.
        assert!(s.peak > 0.5 && s.peak < 9.0 / 4.0, "peak {}", s.peak);
        // Global mean: 13 pixels × 9 over 24²·4 measurements.
        assert!((s.mean - 13.0 * 9.0 / (24.0 * 24.0 * 4.0)).abs() < 1e-12);
    }

    #[test]
    fn alone_the_consensus_is_the_models_own_map() {
        let [x, w, xhat] = galaxy(16, 3, 2.0, 5.0, 9.0, 2.0);
        let own = anomaly_map(&x, &w, &xhat, 3, 16, &[0.0; 3], 3.0).unwrap();
        let residuals = map_residuals(&x, &w, &xhat, 3, 16, &[0.0; 3], 3.0).unwrap();
        assert_eq!(residuals.consensus(&[]).unwrap(), own);
    }

    #[test]
    fn the_consensus_region_is_where_every_model_leaves_residuals() {
        // This model leaves residuals at A = (4, 4) in line 2 and, stronger, at B = (18, 16)
        // in line 1 (say, a nucleus it misplaced); the other model only at A. The geometric
        // mean keeps A (√(a·a') > 0) and damps B to √(b·0) = 0, so the region, its centre and
        // its line are A's — read from this model's residuals — while the peak stays this
        // model's own (B's), the component of its fused score.
        let (size, lines) = (24, 3);
        let plane = size * size;
        let [mut x, w, xhat] = galaxy(size, lines, 3.0, 4.0, 4.0, 2.0);
        for p in 0..plane {
            let (r, c) = ((p / size) as f64, (p % size) as f64);
            if (c - 18.0).hypot(r - 16.0) <= 2.0 {
                x[plane + p] += 5.0;
            }
        }
        let [other_x, ..] = galaxy(size, lines, 3.0, 4.0, 4.0, 2.0);
        let (other, _) = anomaly_map(&other_x, &w, &xhat, lines, size, &[0.0; 3], 3.0).unwrap();
        let residuals = map_residuals(&x, &w, &xhat, lines, size, &[0.0; 3], 3.0).unwrap();
        let own = residuals.map.clone();
        let (_, alone) = anomaly_map(&x, &w, &xhat, lines, size, &[0.0; 3], 3.0).unwrap();
        assert!(
            (alone.centre.0 - 18.0).abs() < 0.5 && alone.line == 1,
            "{alone:?}"
        );
        let (map, s) = residuals.consensus(&[&other.value]).unwrap();
        for p in 0..plane {
            let expected = (f64::from(own.value[p]) * f64::from(other.value[p])).sqrt();
            assert!(
                (f64::from(map.value[p]) - expected).abs() <= 1e-6 * expected.max(1e-6),
                "pixel {p}"
            );
        }
        assert!((s.centre.0 - 4.0).abs() < 0.5, "{:?}", s.centre);
        assert!((s.centre.1 - 4.0).abs() < 0.5, "{:?}", s.centre);
        assert_eq!(s.line, 2);
        assert_eq!(s.peak, alone.peak);
        assert_eq!(
            (s.mean, s.pooled, s.n_pixels),
            (alone.mean, alone.pooled, 576)
        );
        // The pixel's dominant line stays this model's.
        assert_eq!(map.line, own.line);
        // A map of another grid is refused.
        let residuals = map_residuals(&x, &w, &xhat, lines, size, &[0.0; 3], 3.0).unwrap();
        assert!(residuals.consensus(&[&other.value[..10]]).is_err());
    }

    #[test]
    fn an_unusable_pixel_stays_unusable_in_the_consensus() {
        let [x, mut w, xhat] = galaxy(8, 1, 1.0, 3.0, 3.0, 1.5);
        w[0] = 0.0;
        let residuals = map_residuals(&x, &w, &xhat, 1, 8, &[0.0], 2.0).unwrap();
        let other = residuals.map.value.clone();
        let (map, _) = residuals.consensus(&[&other]).unwrap();
        assert!(map.value[0].is_nan());
        assert!(map.value[1..].iter().all(|v| v.is_finite()));
    }

    #[test]
    fn a_consensus_without_usable_pixels_keeps_the_models_own_scores() {
        // Another run whose reconstruction of this galaxy failed (NaN everywhere) leaves the
        // consensus no usable pixel: no region, but the peak, mean, pooled score and usable
        // pixels of this run — components of its fused score — must be those it has alone.
        let [x, w, xhat] = galaxy(8, 3, 1.5, 3.0, 3.0, 1.5);
        let (_, alone) = anomaly_map(&x, &w, &xhat, 3, 8, &[0.0; 3], 2.0).unwrap();
        let residuals = map_residuals(&x, &w, &xhat, 3, 8, &[0.0; 3], 2.0).unwrap();
        let failed = vec![f32::NAN; 64];
        let (map, s) = residuals.consensus(&[&failed]).unwrap();
        assert!(map.value.iter().all(|v| v.is_nan()));
        assert!(alone.peak > 0.0 && alone.n_pixels == 64, "{alone:?}");
        assert_eq!(
            (s.peak, s.mean, s.pooled, s.n_pixels),
            (alone.peak, alone.mean, alone.pooled, alone.n_pixels)
        );
        assert!(
            s.centre.0.is_nan() && s.area == 0 && s.line == NO_LINE,
            "{s:?}"
        );
    }

    #[test]
    fn pooled_is_the_ratio_of_summed_chi2_to_summed_error_budget() {
        // One line on a 4×4 grid, w = 1, floor 0.1. Fifteen pixels are reconstructed exactly at
        // x̂ = 1 (χ² 0, budget 1 + 0.1²·1² = 1.01); one is x̂ = 10 with x = 16 (χ² 36, budget
        // 1 + 0.1²·10² = 2).
        let mut xhat = vec![1.0f32; 16];
        xhat[5] = 10.0;
        let mut x = xhat.clone();
        x[5] = 16.0;
        let w = vec![1.0f32; 16];
        let (_, s) = anomaly_map(&x, &w, &xhat, 1, 4, &[0.1], 1.0).unwrap();
        let pooled = 36.0 / (2.0 + 15.0 * 1.01);
        assert!((s.pooled - pooled).abs() < 1e-12, "{}", s.pooled);
        // The mean of ratios divides the bright pixel's 18 by all 16 pixels: a third of pooled.
        assert!((s.mean - 18.0 / 16.0).abs() < 1e-12, "{}", s.mean);
        // Without a floor every budget is 1, and the ratio of sums is the mean.
        let (_, plain) = anomaly_map(&x, &w, &xhat, 1, 4, &[0.0], 1.0).unwrap();
        assert!((plain.pooled - plain.mean).abs() < 1e-12);
        // No usable pixel: NaN, like the other scores.
        let (_, empty) = anomaly_map(&x, &[0.0; 16], &xhat, 1, 4, &[0.1], 1.0).unwrap();
        assert!(empty.pooled.is_nan());
    }

    #[test]
    fn smoothing_concentrates_compact_residuals_more_than_the_mean_does() {
        // The same total χ² as one compact patch vs spread evenly: the peak tells them apart,
        // the mean does not.
        let size = 32;
        let [x, w, xhat] = galaxy(size, 3, 2.0, 16.0, 16.0, 2.0);
        let (_, compact) = anomaly_map(&x, &w, &xhat, 3, size, &[0.0; 3], 4.0).unwrap();
        let total: f64 = x
            .iter()
            .zip(&xhat)
            .map(|(a, b)| f64::from(a - b).powi(2))
            .sum();
        let spread = (total / x.len() as f64).sqrt() as f32;
        let flat: Vec<f32> = xhat.iter().map(|v| v + spread).collect();
        let (_, even) = anomaly_map(&flat, &w, &xhat, 3, size, &[0.0; 3], 4.0).unwrap();
        assert!((compact.mean - even.mean).abs() < 1e-4 * even.mean);
        assert!(
            compact.peak > 5.0 * even.peak,
            "{} vs {}",
            compact.peak,
            even.peak
        );
    }

    #[test]
    fn the_floor_tempers_bright_pixels_only() {
        // z² = w r² / (1 + w ε² x̂²): with ε = 0.1, a faint pixel barely changes, a bright one
        // saturates near (r/x̂)²/ε².
        assert!((floored_z2(1.0, 100.0, 0.0, 0.1) - 100.0).abs() < 1e-9);
        let bright = floored_z2(110.0, 100.0, 100.0, 0.1);
        assert!((bright - 100.0 * 100.0 / (1.0 + 100.0 * 0.01 * 1e4)).abs() < 1e-9);
        assert!(bright < 1.0);
    }

    #[test]
    fn masked_pixels_neither_count_nor_dilute() {
        let size = 12;
        let [x, mut w, xhat] = galaxy(size, 2, 0.0, 0.0, 0.0, 0.0);
        // A residual of exactly 1σ everywhere: every usable measurement has z² = 1.
        let x: Vec<f32> = x.iter().map(|v| v + 1.0).collect();
        for p in 0..size * size / 2 {
            w[p] = 0.0;
            w[size * size + p] = 0.0;
        }
        let (map, s) = anomaly_map(&x, &w, &xhat, 2, size, &[0.0; 2], 3.0).unwrap();
        for p in 0..size * size {
            if p < size * size / 2 {
                assert!(map.value[p].is_nan());
                assert_eq!(map.line[p], NO_LINE);
            } else {
                assert!(
                    (map.value[p] - 1.0).abs() < 1e-6,
                    "pixel {p}: {}",
                    map.value[p]
                );
            }
        }
        assert_eq!(s.n_pixels, size * size / 2);
    }

    #[test]
    fn an_empty_galaxy_has_nan_scores() {
        let [x, _, xhat] = galaxy(8, 2, 0.0, 0.0, 0.0, 0.0);
        let w = vec![0.0; x.len()];
        let (_, s) = anomaly_map(&x, &w, &xhat, 2, 8, &[0.0; 2], 2.0).unwrap();
        assert!(s.peak.is_nan() && s.mean.is_nan());
        assert_eq!((s.n_pixels, s.area, s.line), (0, 0, NO_LINE));
    }

    #[test]
    fn unknown_psf_and_box_take_the_defaults() {
        let mut g = crate::score::tests::records(1).remove(0);
        g.box_size = 42;
        g.psf_fwhm = f64::NAN;
        // A 42-spaxel box on a 32 grid: 0.5 × 42 / 32 = 0.65625″ per pixel; 2.5″ → 3.81 px.
        assert!((psf_fwhm_pixels(&g, 32) - 2.5 / 0.65625).abs() < 1e-12);
        g.psf_fwhm = 2.0;
        g.box_size = 16;
        assert!((psf_fwhm_pixels(&g, 32) - 8.0).abs() < 1e-12);
        g.box_size = 0;
        assert!((pixel_arcsec(&g, 32) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn half_precision_round_trips_within_its_precision() {
        for v in [
            0.0f32, 1.0, -2.5, 1e-3, 6.1e-5, 3.0e-7, 1234.5, 65504.0, 1e6,
        ] {
            let back = f16_bits_to_f32(f32_to_f16_bits(v));
            if v.abs() > 65504.0 {
                assert!(back.is_infinite());
            } else if v.abs() >= 6.1e-5 {
                assert!((back - v).abs() <= v.abs() / 1024.0, "{v} → {back}");
            } else {
                assert!((back - v).abs() <= 6.0e-8, "{v} → {back}");
            }
        }
        assert!(f16_bits_to_f32(f32_to_f16_bits(f32::NAN)).is_nan());
    }

    #[test]
    fn maps_file_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let [x, w, xhat] = galaxy(8, 3, 2.0, 3.0, 3.0, 1.5);
        let (map, _) = anomaly_map(&x, &w, &xhat, 3, 8, &[0.0; 3], 2.0).unwrap();
        let mut maps = AnomalyMaps {
            lines: vec!["a".into(), "b".into(), "c".into()],
            runs: 3,
            ..Default::default()
        };
        maps.push("1-1", &map);
        maps.push("1-2", &map);
        maps.write(dir.path()).unwrap();
        let back = AnomalyMaps::read(dir.path()).unwrap().unwrap();
        assert_eq!(back.plateifus, maps.plateifus);
        assert_eq!(back.line, maps.line);
        assert_eq!(back.runs, 3);
        for (a, b) in back.value.iter().zip(&maps.value) {
            // Relative precision 2⁻¹¹ for normal f16, absolute 2⁻²⁴ near zero (subnormals).
            assert!((a.is_nan() && b.is_nan()) || (a - b).abs() <= (b.abs() / 1024.0).max(6e-8));
        }
        assert!(
            AnomalyMaps::read(&dir.path().join("missing"))
                .unwrap()
                .is_none()
        );
    }

    /// Rewrites `dir`'s maps file with its metadata `runs` set to `runs` (`None`: removed).
    fn set_runs_metadata(dir: &Path, runs: Option<&str>) {
        let path = dir.join(ANOMALY_MAPS_FILE);
        let bytes = std::fs::read(&path).unwrap();
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let mut meta = meta.metadata().clone().unwrap();
        match runs {
            Some(runs) => meta.insert("runs".to_string(), runs.to_string()),
            None => meta.remove("runs"),
        };
        let views: Vec<_> = ["line", "map"]
            .into_iter()
            .map(|name| (name, tensors.tensor(name).unwrap()))
            .collect();
        std::fs::write(&path, safetensors::serialize(views, Some(meta)).unwrap()).unwrap();
    }

    #[test]
    fn maps_written_before_consensus_are_one_models_and_a_bad_run_count_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let [x, w, xhat] = galaxy(8, 3, 2.0, 3.0, 3.0, 1.5);
        let (map, _) = anomaly_map(&x, &w, &xhat, 3, 8, &[0.0; 3], 2.0).unwrap();
        let mut maps = AnomalyMaps {
            lines: vec!["a".into(), "b".into(), "c".into()],
            runs: 2,
            ..Default::default()
        };
        maps.push("1-1", &map);
        maps.write(dir.path()).unwrap();
        set_runs_metadata(dir.path(), None);
        assert_eq!(AnomalyMaps::read(dir.path()).unwrap().unwrap().runs, 1);
        set_runs_metadata(dir.path(), Some("0"));
        let message = AnomalyMaps::read(dir.path()).unwrap_err().to_string();
        assert!(
            message.contains(ANOMALY_MAPS_FILE) && message.contains("runs"),
            "{message}"
        );
    }
}
