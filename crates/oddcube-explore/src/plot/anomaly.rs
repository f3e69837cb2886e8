//! One galaxy's anomaly map as the explorer and `oddcube plot galaxy` show it: the colour
//! stretch, the anomalous region as an outline on the grid, and the words around it.
//!
//! The map itself (PSF-smoothed mean `z²` per measurement, NaN where unusable) and the region
//! columns (`region_dx`, `region_dy` in arcsec from the galaxy centre along the grid's columns
//! and rows, `region_area` in arcsec², `region_line`) come from `oddcube score`
//! (`docs/scoring.md`); this module only draws them.

use oddcube_score::results::Catalog;

/// What pages say when a RESULTS directory has no `anomaly_maps.safetensors`: results scored
/// before the maps existed still serve and plot, without the map.
pub const NO_MAPS_FILE: &str = "no anomaly map (scored by an older oddcube)";

/// The colour stretch of an anomaly map: `log10` of the value between `lo` and `hi` (map units).
///
/// Logarithmic because the map spans decades: ≈ 1 where the model is right to within its
/// errors, ≈ 10 over an ordinary star-forming disk, hundreds at a Seyfert nucleus; a linear
/// stretch would show only the peak pixel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnomalyStretch {
    /// Value at the dark end.
    pub lo: f64,
    /// Value at the bright end.
    pub hi: f64,
}

/// Smallest `lo` of a stretch (a perfect reconstruction has a map of zeros).
const MIN_LEVEL: f64 = 1e-3;

impl AnomalyStretch {
    /// The stretch of one map: from `min(1st percentile, 1)` to `max(peak, 10)`.
    ///
    /// The anchors keep maps comparable between galaxies: `z² = 1` (as expected from the
    /// errors) is never brighter than the dark end, and a map whose peak is below 10 stays dim
    /// instead of having its noise stretched over the whole colour range. `None` when the map
    /// has no finite pixel.
    pub fn of(map: &[f32]) -> Option<AnomalyStretch> {
        let mut v: Vec<f64> = map
            .iter()
            .filter(|x| x.is_finite())
            .map(|&x| f64::from(x))
            .collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let p1 = v[((v.len() - 1) as f64 * 0.01).round() as usize];
        let peak = v[v.len() - 1];
        let lo = p1.clamp(MIN_LEVEL, 1.0);
        let hi = peak.max(10.0).max(lo * 10.0);
        Some(AnomalyStretch { lo, hi })
    }

    /// Position of `v` on the stretch, clamped to [0, 1] (NaN stays NaN: masked).
    pub fn unit(self, v: f64) -> f64 {
        if v.is_nan() {
            return f64::NAN;
        }
        let (a, b) = (self.lo.log10(), self.hi.log10());
        ((v.max(self.lo).log10() - a) / (b - a)).clamp(0.0, 1.0)
    }

    /// Colour-bar ticks (position in [0, 1], label): both ends and every power of ten between.
    pub fn ticks(self) -> Vec<(f64, String)> {
        let mut ticks = vec![(0.0, tick_label(self.lo))];
        let mut decade = self.lo.log10().floor() as i32 + 1;
        while 10f64.powi(decade) < self.hi {
            let v = 10f64.powi(decade);
            let t = self.unit(v);
            // Skip decades that would print on top of an end label.
            if t > 0.08 && t < 0.92 {
                ticks.push((t, tick_label(v)));
            }
            decade += 1;
        }
        ticks.push((1.0, tick_label(self.hi)));
        ticks
    }
}

/// A colour-bar label: whole numbers from 1 up without decimals ("10", not "10.00").
fn tick_label(v: f64) -> String {
    if (1.0..1e4).contains(&v) && ((v - v.round()).abs() < 1e-9 || v >= 100.0) {
        format!("{v:.0}")
    } else {
        super::short_number(v)
    }
}

/// A galaxy's anomalous region as the catalogue records it.
#[derive(Debug, Clone, PartialEq)]
pub struct Region {
    /// Centre offset from the galaxy centre along the grid's columns, arcsec.
    pub dx: f64,
    /// Centre offset along the grid's rows (row 0 south), arcsec.
    pub dy: f64,
    /// Area, arcsec².
    pub area: f64,
    /// Line with the largest summed `z²` in the region; empty when unknown.
    pub line: String,
}

impl Region {
    /// The region of catalogue row `row`; `None` when the catalogue has no region columns
    /// (older results) or the region is not finite (a galaxy without usable pixels).
    pub fn of(catalog: &Catalog, row: usize) -> Option<Region> {
        let f = |name: &str| catalog.f64(name).and_then(|v| v.get(row)).copied();
        let (dx, dy, area) = (f("region_dx")?, f("region_dy")?, f("region_area")?);
        if !(dx.is_finite() && dy.is_finite() && area.is_finite() && area > 0.0) {
            return None;
        }
        let line = catalog
            .str("region_line")
            .and_then(|v| v.get(row))
            .cloned()
            .unwrap_or_default();
        Some(Region { dx, dy, area, line })
    }
}

/// Where the grid's pixel scale came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelScaleSource {
    /// The dataset's galaxy record (`GalaxyRecord::pixel_arcsec`).
    Dataset,
    /// The map: the region's area in arcsec² over its area in pixels (see [`region_pixels`]).
    Map,
}

/// The region drawn on the grid: a circle of the region's area at its centre.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RegionOutline {
    /// Centre column (0 = west edge pixel).
    pub col: f64,
    /// Centre row (0 = south edge pixel).
    pub row: f64,
    /// Radius of the circle with the region's area, pixels.
    pub radius: f64,
    /// The pixel scale used, arcsec per pixel.
    pub pixel_arcsec: f64,
    /// Where the pixel scale came from.
    pub source: PixelScaleSource,
}

/// The outline of `region` on a `size × size` grid. The pixel scale is `pixel_arcsec` (the
/// dataset's, when known and positive); without a dataset it is recovered from the map, since
/// `region_area` is the region's pixel count times the pixel area. `None` when neither gives a
/// scale.
pub fn region_outline(
    region: &Region,
    map: &[f32],
    size: usize,
    pixel_arcsec: Option<f64>,
) -> Option<RegionOutline> {
    let (pixel, source) = match pixel_arcsec.filter(|p| p.is_finite() && *p > 0.0) {
        Some(p) => (p, PixelScaleSource::Dataset),
        None => {
            let n = region_pixels(map, size)?;
            ((region.area / n as f64).sqrt(), PixelScaleSource::Map)
        }
    };
    if !(pixel.is_finite() && pixel > 0.0) {
        return None;
    }
    // The galaxy centre is the grid centre (ingest centres the IFU box on it), as in scoring.
    let centre = (size as f64 - 1.0) / 2.0;
    Some(RegionOutline {
        col: centre + region.dx / pixel,
        row: centre + region.dy / pixel,
        radius: (region.area / std::f64::consts::PI).sqrt() / pixel,
        pixel_arcsec: pixel,
        source,
    })
}

/// One galaxy's anomaly map ready to draw: the map, its stretch, the catalogue's region and
/// its outline on the grid.
#[derive(Debug, Clone, PartialEq)]
pub struct AnomalyView<'a> {
    /// The map (`size²`, row 0 south, NaN = unusable).
    pub map: &'a [f32],
    /// Its colour stretch.
    pub stretch: AnomalyStretch,
    /// The catalogue's region, when it has one for the galaxy.
    pub region: Option<Region>,
    /// The region on the grid, when its pixel scale is known.
    pub outline: Option<RegionOutline>,
}

impl<'a> AnomalyView<'a> {
    /// The view of catalogue row `row`'s `map` on a `size × size` grid, with the dataset's pixel
    /// scale when known; `None` when the map has no finite pixel.
    pub fn new(
        map: &'a [f32],
        size: usize,
        catalog: &Catalog,
        row: usize,
        pixel_arcsec: Option<f64>,
    ) -> Option<AnomalyView<'a>> {
        let stretch = AnomalyStretch::of(map)?;
        let region = Region::of(catalog, row);
        let outline = region
            .as_ref()
            .and_then(|r| region_outline(r, map, size, pixel_arcsec));
        Some(AnomalyView {
            map,
            stretch,
            region,
            outline,
        })
    }
}

/// Pixels in the map's anomalous region by the scorer's rule (`docs/scoring.md`): the
/// 4-connected pixels around the peak whose value is at least the median plus half the peak's
/// excess over it. Used only to recover the pixel scale when no dataset is attached; `None`
/// for a map without finite pixels or of the wrong length.
pub fn region_pixels(map: &[f32], size: usize) -> Option<usize> {
    oddcube_score::anomaly_map::region_mask(map, size)
        .map(|region| region.inside.iter().filter(|&&inside| inside).count())
}

/// The dominant line of the region for a caption: the catalogue's `region_line`, or "unknown".
pub fn line_caption(region: Option<&Region>) -> String {
    match region.map(|r| r.line.as_str()) {
        Some(line) if !line.is_empty() => line.to_string(),
        _ => "unknown".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 16×16 map: level 1 everywhere, 50 in a 3×3 block centred on (col 11, row 4), one
    /// masked corner.
    fn map_with_block() -> Vec<f32> {
        let size = 16;
        (0..size * size)
            .map(|p| {
                let (r, c) = (p / size, p % size);
                if p == 0 {
                    f32::NAN
                } else if (10..=12).contains(&c) && (3..=5).contains(&r) {
                    50.0
                } else {
                    1.0
                }
            })
            .collect()
    }

    #[test]
    fn the_region_rule_counts_the_block_and_recovers_the_pixel_scale() {
        let map = map_with_block();
        assert_eq!(region_pixels(&map, 16), Some(9));
        // 9 pixels of 0.75″: 5.0625 arcsec²; centre (11, 4) is (3.5, -3.5) pixels from the
        // grid centre (7.5, 7.5).
        let region = Region {
            dx: 3.5 * 0.75,
            dy: -3.5 * 0.75,
            area: 9.0 * 0.75 * 0.75,
            line: "OIII-5008".to_string(),
        };
        let from_map = region_outline(&region, &map, 16, None).unwrap();
        assert_eq!(from_map.source, PixelScaleSource::Map);
        assert!((from_map.pixel_arcsec - 0.75).abs() < 1e-12);
        assert!((from_map.col - 11.0).abs() < 1e-9 && (from_map.row - 4.0).abs() < 1e-9);
        assert!((from_map.radius - (9.0 / std::f64::consts::PI).sqrt()).abs() < 1e-9);
        let from_dataset = region_outline(&region, &map, 16, Some(0.75)).unwrap();
        assert_eq!(from_dataset.source, PixelScaleSource::Dataset);
        assert_eq!(from_dataset.col, from_map.col);
        // A NaN or zero dataset scale falls back to the map.
        let fallback = region_outline(&region, &map, 16, Some(f64::NAN)).unwrap();
        assert_eq!(fallback.source, PixelScaleSource::Map);
        assert!(region_outline(&region, &[f32::NAN; 256], 16, None).is_none());
        assert!(region_pixels(&map[..10], 16).is_none());
        assert_eq!(line_caption(Some(&region)), "OIII-5008");
        assert_eq!(line_caption(None), "unknown");
    }

    #[test]
    fn stretch_is_logarithmic_anchored_and_masks_nan() {
        let map = map_with_block();
        let s = AnomalyStretch::of(&map).unwrap();
        assert_eq!((s.lo, s.hi), (1.0, 50.0));
        assert_eq!(s.unit(1.0), 0.0);
        assert_eq!(s.unit(50.0), 1.0);
        // log: √50 ≈ 7.07 sits half-way.
        assert!((s.unit(50f64.sqrt()) - 0.5).abs() < 1e-12);
        assert!(s.unit(f64::NAN).is_nan());
        assert_eq!(
            s.unit(0.01),
            0.0,
            "below the stretch clamps to the dark end"
        );
        // A quiet map (peak 3) keeps the bright end at 10: its noise is not stretched.
        let quiet = AnomalyStretch::of(&[0.5, 1.0, 3.0]).unwrap();
        assert_eq!((quiet.lo, quiet.hi), (0.5, 10.0));
        assert!(quiet.unit(3.0) < 0.7);
        let zeros = AnomalyStretch::of(&[0.0; 4]).unwrap();
        assert!(zeros.lo > 0.0 && zeros.hi > zeros.lo);
        assert!(AnomalyStretch::of(&[f32::NAN]).is_none());
        let ticks = s.ticks();
        assert_eq!(ticks.first().unwrap().0, 0.0);
        assert_eq!(ticks.last().unwrap().0, 1.0);
        assert!(ticks.iter().any(|(_, l)| l == "10"), "{ticks:?}");
        assert_eq!(ticks[0].1, "1");
        assert_eq!(tick_label(0.25), "0.250");
    }
}
