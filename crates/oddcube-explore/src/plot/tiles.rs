//! Small PNG tiles of single maps (one line's flux, reconstruction or residual, or a BPT class
//! map) for the web explorer, encoded directly with `png` (no plotting library on the hot path).
//!
//! Orientation: row 0 of a map is the southmost row, drawn at the bottom (astronomical
//! convention, like `imshow(origin="lower")`).

use oddcube_data::bpt::BptClass;

use super::anomaly::{AnomalyStretch, RegionOutline};
use super::{ColourMap, MASKED, Scale, encode_png};
use oddcube_score::{Error, Result};

/// Largest accepted magnification (tiles stay under ~1 MB even for a 128² grid).
pub const MAX_ZOOM: usize = 16;

fn check_zoom(zoom: usize) -> Result<()> {
    if (1..=MAX_ZOOM).contains(&zoom) {
        Ok(())
    } else {
        Err(Error::InvalidParameter {
            name: "zoom".to_string(),
            value: zoom.to_string(),
            reason: format!("must be 1..={MAX_ZOOM}"),
        })
    }
}

/// Renders `size × size` pixel colours (row-major, row 0 south) as a PNG magnified `zoom` times.
fn render(size: usize, zoom: usize, colour_of: impl Fn(usize) -> [u8; 3]) -> Result<Vec<u8>> {
    check_zoom(zoom)?;
    let side = size * zoom;
    let mut rgb = vec![0u8; side * side * 3];
    for (out_row, chunk) in rgb.chunks_exact_mut(side * 3).enumerate() {
        let map_row = size - 1 - out_row / zoom;
        for (out_col, px) in chunk.chunks_exact_mut(3).enumerate() {
            px.copy_from_slice(&colour_of(map_row * size + out_col / zoom));
        }
    }
    encode_png(&rgb, side as u32, side as u32)
}

/// A map tile: `values` coloured on `scale` with `cmap`, grey where `weights` is 0.
///
/// Errors on length mismatch or a zoom outside `1..=MAX_ZOOM`.
pub fn map_tile(
    values: &[f32],
    weights: &[f32],
    size: usize,
    scale: Scale,
    cmap: ColourMap,
    zoom: usize,
) -> Result<Vec<u8>> {
    oddcube_score::error::check_len("map", values.len(), size * size)?;
    oddcube_score::error::check_len("weights", weights.len(), size * size)?;
    render(size, zoom, |p| {
        let c = if weights[p] > 0.0 {
            cmap.at(scale.unit(f64::from(values[p])))
        } else {
            MASKED
        };
        [c.0, c.1, c.2]
    })
}

/// Colour of the region outline on anomaly maps: cyan is far from every inferno colour and
/// from the masked grey.
pub const OUTLINE: [u8; 3] = [0, 230, 255];

/// An anomaly-map tile: `map` (NaN = masked, grey) on the logarithmic `stretch` with the
/// inferno colour map, and the anomalous region, when given, outlined as a circle.
///
/// Errors on a length mismatch or a zoom outside `1..=MAX_ZOOM`.
pub fn anomaly_tile(
    map: &[f32],
    size: usize,
    stretch: AnomalyStretch,
    outline: Option<&RegionOutline>,
    zoom: usize,
) -> Result<Vec<u8>> {
    oddcube_score::error::check_len("anomaly map", map.len(), size * size)?;
    check_zoom(zoom)?;
    let side = size * zoom;
    let mut rgb = vec![0u8; side * side * 3];
    for (out_row, chunk) in rgb.chunks_exact_mut(side * 3).enumerate() {
        for (out_col, px) in chunk.chunks_exact_mut(3).enumerate() {
            let p = (size - 1 - out_row / zoom) * size + out_col / zoom;
            let v = f64::from(map[p]);
            let c = if v.is_nan() {
                MASKED
            } else {
                ColourMap::Inferno.at(stretch.unit(v))
            };
            let mut colour = [c.0, c.1, c.2];
            if let Some(o) = outline {
                // This output pixel's centre in map coordinates (column, row; row 0 south).
                let col = (out_col as f64 + 0.5) / zoom as f64 - 0.5;
                let row = size as f64 - 0.5 - (out_row as f64 + 0.5) / zoom as f64;
                let distance = (col - o.col).hypot(row - o.row);
                // A ring about 1.5 output pixels wide, whatever the zoom.
                if ((distance - o.radius) * zoom as f64).abs() <= 0.75 {
                    colour = OUTLINE;
                }
            }
            px.copy_from_slice(&colour);
        }
    }
    encode_png(&rgb, side as u32, side as u32)
}

/// A BPT class tile (grey where masked).
pub fn class_tile(classes: &[Option<BptClass>], size: usize, zoom: usize) -> Result<Vec<u8>> {
    oddcube_score::error::check_len("class map", classes.len(), size * size)?;
    render(size, zoom, |p| {
        let c = classes[p].map(super::bpt::class_colour).unwrap_or(MASKED);
        [c.0, c.1, c.2]
    })
}

/// A horizontal colour-bar strip (`width × height`) of a colour map, for page legends.
pub fn colourbar_tile(cmap: ColourMap, width: usize, height: usize) -> Result<Vec<u8>> {
    let mut rgb = Vec::with_capacity(width * height * 3);
    for _ in 0..height {
        for x in 0..width {
            let c = cmap.at(x as f64 / (width.max(2) - 1) as f64);
            rgb.extend_from_slice(&[c.0, c.1, c.2]);
        }
    }
    encode_png(&rgb, width as u32, height as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(png: &[u8]) -> (u32, u32, Vec<u8>) {
        let decoder = png::Decoder::new(std::io::Cursor::new(png));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }

    #[test]
    fn tiles_are_magnified_flipped_and_grey_where_masked() {
        // 2×2: row 0 (south) = [0, masked], row 1 = [1, 0.5].
        let values = [0.0, 9.0, 1.0, 0.5];
        let weights = [1.0, 0.0, 1.0, 1.0];
        let png = map_tile(
            &values,
            &weights,
            2,
            Scale { lo: 0.0, hi: 1.0 },
            ColourMap::Viridis,
            3,
        )
        .unwrap();
        let (w, h, rgb) = decode(&png);
        assert_eq!((w, h), (6, 6));
        let px = |x: usize, y: usize| &rgb[(y * 6 + x) * 3..(y * 6 + x) * 3 + 3];
        let grey = [MASKED.0, MASKED.1, MASKED.2];
        assert_eq!(
            px(5, 5),
            grey,
            "masked south-east pixel at the bottom right"
        );
        let top = ColourMap::Viridis.at(1.0);
        assert_eq!(
            px(0, 0),
            [top.0, top.1, top.2],
            "north-west value 1 at the top left"
        );
        assert!(
            map_tile(
                &values,
                &weights,
                2,
                Scale { lo: 0.0, hi: 1.0 },
                ColourMap::Viridis,
                0
            )
            .is_err()
        );
        assert!(
            map_tile(
                &values[..3],
                &weights,
                2,
                Scale { lo: 0.0, hi: 1.0 },
                ColourMap::Viridis,
                1
            )
            .is_err()
        );
    }

    #[test]
    fn anomaly_tiles_outline_the_region_and_grey_the_mask() {
        // 8×8 map, NaN at the south-west corner; a circle of radius 2 around (col 5, row 2).
        let mut map = vec![1.0f32; 64];
        map[0] = f32::NAN;
        map[2 * 8 + 5] = 100.0;
        let stretch = AnomalyStretch::of(&map).unwrap();
        let outline = RegionOutline {
            col: 5.0,
            row: 2.0,
            radius: 2.0,
            pixel_arcsec: 1.0,
            source: super::super::anomaly::PixelScaleSource::Dataset,
        };
        let zoom = 4;
        let (w, _, rgb) = decode(&anomaly_tile(&map, 8, stretch, Some(&outline), zoom).unwrap());
        assert_eq!(w, 32);
        let px = |x: usize, y: usize| {
            [
                rgb[(y * 32 + x) * 3],
                rgb[(y * 32 + x) * 3 + 1],
                rgb[(y * 32 + x) * 3 + 2],
            ]
        };
        assert_eq!(
            px(0, 31),
            [MASKED.0, MASKED.1, MASKED.2],
            "masked south-west corner"
        );
        // Map (col 5, row 2) is output column 5·4+2, row (8−1−2)·4+2.
        let (cx, cy) = (22usize, 22usize);
        let hot = ColourMap::Inferno.at(1.0);
        assert_eq!(
            px(cx, cy),
            [hot.0, hot.1, hot.2],
            "the peak is the bright end"
        );
        assert_eq!(px(cx + 8, cy), OUTLINE, "ring 2 pixels east of the centre");
        assert_eq!(px(cx, cy - 8), OUTLINE, "ring 2 pixels north of the centre");
        assert_ne!(px(cx + 4, cy), OUTLINE, "no ring inside");
        let plain = decode(&anomaly_tile(&map, 8, stretch, None, zoom).unwrap()).2;
        assert!(!plain.chunks_exact(3).any(|c| c == OUTLINE));
        assert!(anomaly_tile(&map[..5], 8, stretch, None, 1).is_err());
        assert!(anomaly_tile(&map, 8, stretch, None, 0).is_err());
    }

    #[test]
    fn class_tiles_use_class_colours() {
        let png = class_tile(&[Some(BptClass::Seyfert), None, None, None], 2, 1).unwrap();
        let (_, _, rgb) = decode(&png);
        let c = super::super::bpt::class_colour(BptClass::Seyfert);
        assert_eq!(
            &rgb[6..9],
            &[c.0, c.1, c.2],
            "south-west pixel is at the bottom left"
        );
        assert_eq!(
            decode(&colourbar_tile(ColourMap::Diverging, 10, 2).unwrap()).0,
            10
        );
    }
}
