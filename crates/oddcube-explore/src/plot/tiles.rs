//! Small PNG tiles of single maps (one line's flux, reconstruction or residual, or a BPT class
//! map) for the web explorer, encoded directly with `png` (no plotting library on the hot path).
//!
//! Orientation: row 0 of a map is the southmost row, drawn at the bottom (astronomical
//! convention, like `imshow(origin="lower")`).

use oddcube_data::bpt::BptClass;

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
