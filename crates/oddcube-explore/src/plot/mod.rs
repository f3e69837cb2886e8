//! PNG figures (`oddcube plot`) and the map tiles the web explorer serves: shared styling (the
//! embedded DejaVu Sans font, colour maps, percentile stretches), PNG encoding, and one module per
//! figure.
//!
//! Figures are drawn with `plotters` into an in-memory RGB buffer and encoded here with `png`, so
//! the CLI can write them atomically and the server can send them without touching the disk.

pub mod anomaly;
pub mod bpt;
pub mod colouring;
pub mod figures;
pub mod galaxy;
pub mod map;
pub mod scores;
pub mod tiles;

use std::sync::Once;

use plotters::style::{FontStyle, RGBColor};

use oddcube_score::{Error, Result};

/// DejaVu Sans (Bitstream Vera licence, `assets/fonts/LICENSE-DejaVu.txt`), embedded so figures
/// render identically everywhere without fontconfig.
static FONT_REGULAR: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
/// DejaVu Sans Bold.
static FONT_BOLD: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-Bold.ttf");

/// The font family name figures use.
pub const FONT: &str = "sans-serif";

/// Registers the embedded fonts with plotters (once per process).
pub fn register_fonts() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // The bytes are a known-good TTF compiled into the binary; a failure here would be a
        // build defect, and text then simply does not render, so it is not propagated.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, FONT_REGULAR);
        let _ = plotters::style::register_font(FONT, FontStyle::Bold, FONT_BOLD);
    });
}

/// Grey of masked spaxels (no usable measurement).
pub const MASKED: RGBColor = RGBColor(190, 190, 190);

/// A colour map for images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColourMap {
    /// Sequential (flux): perceptually uniform, dark = faint.
    Viridis,
    /// Sequential, for scores on the latent map.
    Plasma,
    /// Diverging (residuals): blue negative, white zero, red positive.
    Diverging,
    /// Sequential, for anomaly maps: black → red → yellow, so a hot spot reads as heat and
    /// stays distinct from the masked grey and from the flux maps' viridis.
    Inferno,
}

impl ColourMap {
    /// The colour at `t` ∈ [0, 1] (clamped; NaN gives the masked grey).
    pub fn at(self, t: f64) -> RGBColor {
        if t.is_nan() {
            return MASKED;
        }
        let t = t.clamp(0.0, 1.0);
        let c = match self {
            ColourMap::Viridis => colorous::VIRIDIS.eval_continuous(t),
            ColourMap::Plasma => colorous::PLASMA.eval_continuous(t),
            ColourMap::Inferno => colorous::INFERNO.eval_continuous(t),
            // colorous RED_BLUE runs red → blue; flip so positive residuals are red.
            ColourMap::Diverging => colorous::RED_BLUE.eval_continuous(1.0 - t),
        };
        RGBColor(c.r, c.g, c.b)
    }
}

/// A linear mapping of data values onto [0, 1].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scale {
    /// Value mapped to 0.
    pub lo: f64,
    /// Value mapped to 1.
    pub hi: f64,
}

impl Scale {
    /// Position of `v` in [lo, hi] (unclamped; a degenerate range maps everything to 0.5).
    pub fn unit(self, v: f64) -> f64 {
        if self.hi > self.lo {
            (v - self.lo) / (self.hi - self.lo)
        } else {
            0.5
        }
    }

    /// The scale between the `lo_q` and `hi_q` percentiles (0–100) of the finite values, or
    /// `None` when there are none.
    pub fn percentile(values: impl Iterator<Item = f64>, lo_q: f64, hi_q: f64) -> Option<Scale> {
        let mut v: Vec<f64> = values.filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let at = |q: f64| oddcube_data::stats::quantile_of_sorted(&v, q / 100.0);
        Some(Scale {
            lo: at(lo_q)?,
            hi: at(hi_q)?,
        })
    }

    /// A symmetric scale ±`half` around zero.
    pub fn symmetric(half: f64) -> Scale {
        Scale {
            lo: -half,
            hi: half,
        }
    }
}

/// Encodes an 8-bit RGB buffer as PNG.
pub fn encode_png(rgb: &[u8], width: u32, height: u32) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(rgb.len() / 4);
    {
        let mut encoder = png::Encoder::new(&mut out, width, height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.set_compression(png::Compression::Fast);
        let mut writer = encoder.write_header().map_err(figure_error)?;
        writer.write_image_data(rgb).map_err(figure_error)?;
        writer.finish().map_err(figure_error)?;
    }
    Ok(out)
}

/// Wraps a drawing or encoding failure (these come from plotters/png, not from user data).
pub(crate) fn figure_error(e: impl std::fmt::Display) -> Error {
    Error::Io {
        path: "<figure>".into(),
        source: std::io::Error::other(e.to_string()),
    }
}

/// A human label with units for a score column.
pub fn score_label(name: &str) -> String {
    match name {
        "recon" => "recon: mean squared error (normalised flux²)".to_string(),
        "chi2" => "χ² per usable pixel (σ²)".to_string(),
        "pooled" => "pooled: summed χ² / summed error budget".to_string(),
        "global" => "global: mean floored z² per measurement".to_string(),
        "local" => "local: peak of the anomaly map (z²)".to_string(),
        "knn_dist" => "kNN distance in latent space".to_string(),
        "lof" => "local outlier factor".to_string(),
        other => other.to_string(),
    }
}

/// Formats a value compactly for axis ticks and captions.
pub fn short_number(v: f64) -> String {
    let a = v.abs();
    // Axis ticks are multiples of a step in floating point: "0" comes out as ±1e-17.
    if a < 1e-12 {
        "0".to_string()
    } else if !(1e-3..1e4).contains(&a) {
        format!("{v:.1e}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_number_writes_floating_point_zeros_as_zero() {
        assert_eq!(short_number(-5.6e-17), "0");
        assert_eq!(short_number(0.0), "0");
        assert_eq!(short_number(2.5e-5), "2.5e-5");
        assert_eq!(short_number(0.25), "0.250");
        assert_eq!(short_number(1234.0), "1234");
    }

    #[test]
    fn percentile_scale_interpolates_and_ignores_nan() {
        let s =
            Scale::percentile([0.0, 1.0, f64::NAN, 2.0, 3.0, 4.0].into_iter(), 0.0, 50.0).unwrap();
        assert_eq!((s.lo, s.hi), (0.0, 2.0));
        let s = Scale::percentile([0.0, 10.0].into_iter(), 25.0, 75.0).unwrap();
        assert_eq!((s.lo, s.hi), (2.5, 7.5));
        assert!(Scale::percentile([f64::NAN].into_iter(), 1.0, 99.0).is_none());
        assert_eq!(Scale { lo: 1.0, hi: 1.0 }.unit(5.0), 0.5);
    }

    #[test]
    fn diverging_map_is_blue_white_red() {
        let neg = ColourMap::Diverging.at(0.0);
        let mid = ColourMap::Diverging.at(0.5);
        let pos = ColourMap::Diverging.at(1.0);
        assert!(neg.2 > neg.0, "negative is blue: {neg:?}");
        assert!(pos.0 > pos.2, "positive is red: {pos:?}");
        assert!(
            mid.0 > 230 && mid.1 > 230 && mid.2 > 230,
            "zero is near white: {mid:?}"
        );
        assert_eq!(ColourMap::Viridis.at(f64::NAN), MASKED);
    }

    #[test]
    fn png_encoding_produces_a_png() {
        let png = encode_png(&[255u8; 2 * 3 * 3], 2, 3).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        assert!(
            encode_png(&[0u8; 5], 2, 3).is_err(),
            "short buffer is an error"
        );
    }
}
