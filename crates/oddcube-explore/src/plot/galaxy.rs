//! The one-galaxy figure (`oddcube plot galaxy`): for every line the input map, the
//! reconstruction and the residual in σ, then the spatially resolved BPT class maps of input and
//! reconstruction, and the anomaly map with its region outlined, with colour bars, line names
//! and the galaxy's scores; the title names the region's dominant line.
//!
//! Stretches: each line's input and reconstruction share one linear 1–99.5 percentile scale of
//! the input's usable spaxels (so brightness differences between the two are real); residuals
//! share one symmetric scale across all lines (so a strong line residual stands out).

use oddcube_data::bpt::BptClass;
use oddcube_data::preprocess::Stretch;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::anomaly::{AnomalyView, PixelScaleSource, line_caption};
use super::{
    ColourMap, FONT, MASKED, Scale, bpt, encode_png, figure_error, register_fonts, short_number,
};
use oddcube_score::Result;
use oddcube_score::results::ResidualMaps;

/// Everything the galaxy figure shows.
#[derive(Debug, Clone, Copy)]
pub struct GalaxyFigure<'a> {
    /// Plate-ifu, for the title.
    pub plateifu: &'a str,
    /// Line names in tensor order.
    pub lines: &'a [String],
    /// Grid side S.
    pub size: usize,
    /// Input, reconstruction, weights and residual maps, `[L, S, S]` each.
    pub maps: ResidualMaps<'a>,
    /// The dataset's flux stretch (undone for the BPT ratios).
    pub stretch: Stretch,
    /// A second title line (rank and scores), may be empty.
    pub subtitle: &'a str,
    /// The anomaly map with its region, when the results have one for the galaxy.
    pub anomaly: Option<&'a AnomalyView<'a>>,
    /// What the anomaly panel says instead when `anomaly` is `None`.
    pub no_anomaly: &'a str,
    /// How many runs' maps the anomaly map is the consensus of: 1 for a single model, the
    /// averaged runs of a restart ensemble otherwise (said under the map, since `local` is
    /// then the kept run's own peak, not this map's).
    pub map_runs: usize,
}

/// Side of one map panel in pixels.
const PANEL: i32 = 112;
/// Gap between panels.
const GAP: i32 = 8;
/// Width of the row-label column on the left.
const LEFT: i32 = 190;
/// Width of the colour-bar column on the right.
const RIGHT: i32 = 170;
/// Side of a BPT panel.
const BPT_PANEL: i32 = 300;

fn text_style(size: f64, pos: Pos) -> TextStyle<'static> {
    TextStyle::from((FONT, size).into_font()).pos(pos)
}

fn bold_style(size: f64, pos: Pos) -> TextStyle<'static> {
    TextStyle::from((FONT, size).into_font().style(FontStyle::Bold)).pos(pos)
}

/// Draws a `size × size` map into the square at (x0, y0) of side `side` (row 0 at the bottom).
fn draw_map(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    (x0, y0, side): (i32, i32, i32),
    size: usize,
    colour_of: impl Fn(usize) -> RGBColor,
) -> Result<()> {
    let s = size as i32;
    for row in 0..s {
        for col in 0..s {
            let c = colour_of((row * s + col) as usize);
            let left = x0 + col * side / s;
            let right = x0 + (col + 1) * side / s;
            let top = y0 + (s - 1 - row) * side / s;
            let bottom = y0 + (s - row) * side / s;
            area.draw(&Rectangle::new([(left, top), (right, bottom)], c.filled()))
                .map_err(figure_error)?;
        }
    }
    area.draw(&Rectangle::new(
        [(x0, y0), (x0 + side, y0 + side)],
        BLACK.mix(0.6).stroke_width(1),
    ))
    .map_err(figure_error)?;
    Ok(())
}

/// A vertical colour bar at (x, y) of height `h`, with tick labels from `ticks` (value, label).
fn draw_colourbar(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    (x, y, h): (i32, i32, i32),
    cmap: ColourMap,
    ticks: &[(f64, String)],
    title: &str,
) -> Result<()> {
    let width = 18;
    for i in 0..h {
        let c = cmap.at(1.0 - f64::from(i) / f64::from(h - 1));
        area.draw(&Rectangle::new(
            [(x, y + i), (x + width, y + i + 1)],
            c.filled(),
        ))
        .map_err(figure_error)?;
    }
    area.draw(&Rectangle::new(
        [(x, y), (x + width, y + h)],
        BLACK.stroke_width(1),
    ))
    .map_err(figure_error)?;
    for (t, label) in ticks {
        let ty = y + ((1.0 - t) * f64::from(h - 1)).round() as i32;
        area.draw(&PathElement::new(
            vec![(x + width, ty), (x + width + 5, ty)],
            BLACK,
        ))
        .map_err(figure_error)?;
        area.draw(&Text::new(
            label.clone(),
            (x + width + 8, ty),
            text_style(15.0, Pos::new(HPos::Left, VPos::Center)),
        ))
        .map_err(figure_error)?;
    }
    area.draw(&Text::new(
        title.to_string(),
        (x - 4, y - 10),
        text_style(15.0, Pos::new(HPos::Left, VPos::Bottom)),
    ))
    .map_err(figure_error)?;
    Ok(())
}

/// What to say under a map that is the consensus of several runs' maps; `None` for one run.
pub fn consensus_note(runs: usize) -> Option<String> {
    (runs > 1).then(|| {
        format!(
            "the geometric mean of the {runs} averaged runs' maps; local is the kept run's own peak"
        )
    })
}

/// Colour of the region outline (as on the explorer's tiles).
const OUTLINE: RGBColor = RGBColor(0, 230, 255);

/// The anomaly-map panel at (x, top): the map on its log stretch, the region outlined, a
/// colour bar and the region in words; or the reason there is no map.
fn draw_anomaly(
    root: &DrawingArea<BitMapBackend<'_>, Shift>,
    figure: &GalaxyFigure<'_>,
    x: i32,
    top: i32,
) -> Result<()> {
    let Some(view) = figure.anomaly else {
        root.draw(&Text::new(
            "Anomaly map",
            (x, top - 10),
            bold_style(18.0, Pos::new(HPos::Left, VPos::Bottom)),
        ))
        .map_err(figure_error)?;
        root.draw(&Text::new(
            figure.no_anomaly.to_string(),
            (x, top + 20),
            text_style(16.0, Pos::new(HPos::Left, VPos::Top)),
        ))
        .map_err(figure_error)?;
        return Ok(());
    };
    root.draw(&Text::new(
        format!(
            "Anomaly map — dominant line {}",
            line_caption(view.region.as_ref())
        ),
        (x, top - 10),
        bold_style(18.0, Pos::new(HPos::Left, VPos::Bottom)),
    ))
    .map_err(figure_error)?;
    let size = figure.size;
    draw_map(root, (x, top, BPT_PANEL), size, |p| {
        let v = f64::from(view.map[p]);
        if v.is_nan() {
            MASKED
        } else {
            ColourMap::Inferno.at(view.stretch.unit(v))
        }
    })?;
    if let Some(o) = view.outline {
        let px = f64::from(BPT_PANEL) / size as f64;
        let cx = f64::from(x) + (o.col + 0.5) * px;
        let cy = f64::from(top) + (size as f64 - 0.5 - o.row) * px;
        root.draw(&Circle::new(
            (cx.round() as i32, cy.round() as i32),
            (o.radius * px).round().max(2.0) as i32,
            OUTLINE.stroke_width(3),
        ))
        .map_err(figure_error)?;
    }
    draw_colourbar(
        root,
        (x + BPT_PANEL + 24, top, BPT_PANEL),
        ColourMap::Inferno,
        &view.stretch.ticks(),
        "mean z² (log)",
    )?;
    let mut notes = Vec::new();
    if let Some(r) = &view.region {
        notes.push(format!(
            "region: Δx {:+.1}″, Δy {:+.1}″ from the centre, {} arcsec²",
            r.dx,
            r.dy,
            short_number(r.area)
        ));
    }
    notes.push(match view.outline {
        Some(o) => format!(
            "cyan: circle of the region's area ({:.2}″/pixel{})",
            o.pixel_arcsec,
            if o.source == PixelScaleSource::Map {
                ", scale from the map"
            } else {
                ""
            }
        ),
        None => "region not drawn (no region or pixel scale)".to_string(),
    });
    if let Some(note) = consensus_note(figure.map_runs) {
        notes.push(note);
    }
    for (i, note) in notes.iter().enumerate() {
        root.draw(&Text::new(
            note.clone(),
            (x, top + BPT_PANEL + 10 + 22 * i as i32),
            text_style(15.0, Pos::new(HPos::Left, VPos::Top)),
        ))
        .map_err(figure_error)?;
    }
    Ok(())
}

/// Renders the figure as PNG bytes.
///
/// Errors when the maps do not match `lines`/`size`, or the line set lacks a BPT line (the BPT
/// panels then say so instead of failing the whole figure — only shape errors are fatal).
pub fn galaxy_png(figure: &GalaxyFigure<'_>) -> Result<Vec<u8>> {
    register_fonts();
    let n_lines = figure.lines.len();
    let pixels = figure.size * figure.size;
    let maps = figure.maps;
    for (what, m) in [
        ("input", maps.x),
        ("reconstruction", maps.xhat),
        ("weights", maps.w),
        ("residual", maps.residual),
    ] {
        oddcube_score::error::check_len(what, m.len(), n_lines * pixels)?;
    }
    let columns = n_lines as i32;
    let width = LEFT + columns * (PANEL + GAP) + RIGHT;
    let title_h = 96;
    let header_h = 30;
    let range_h = 26;
    let rows_top = title_h + header_h;
    let row_y = [
        rows_top,
        rows_top + PANEL + range_h,
        rows_top + 2 * (PANEL + range_h),
    ];
    let bpt_top = row_y[2] + PANEL + 70;
    // Room under the BPT panel for its notes: a third line when the map is a consensus.
    let notes_room = if consensus_note(figure.map_runs).is_some() {
        92
    } else {
        70
    };
    let height = bpt_top + BPT_PANEL + notes_room;
    let (w_px, h_px) = (width as u32, height as u32);
    let mut rgb = vec![255u8; (w_px * h_px * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w_px, h_px)).into_drawing_area();
        root.fill(&WHITE).map_err(figure_error)?;
        let title = match figure.anomaly {
            Some(view) => format!(
                "{} — line maps, residuals and anomaly map (dominant line {})",
                figure.plateifu,
                line_caption(view.region.as_ref())
            ),
            None => format!(
                "{} — line maps, reconstruction and residuals",
                figure.plateifu
            ),
        };
        root.draw(&Text::new(
            title,
            (LEFT, 18),
            bold_style(28.0, Pos::new(HPos::Left, VPos::Top)),
        ))
        .map_err(figure_error)?;
        if !figure.subtitle.is_empty() {
            root.draw(&Text::new(
                figure.subtitle.to_string(),
                (LEFT, 56),
                text_style(19.0, Pos::new(HPos::Left, VPos::Top)),
            ))
            .map_err(figure_error)?;
        }

        // Per-line scales from the input's usable spaxels; one symmetric residual scale.
        let mut scales = Vec::with_capacity(n_lines);
        for l in 0..n_lines {
            let range = l * pixels..(l + 1) * pixels;
            let good = maps.x[range.clone()]
                .iter()
                .zip(&maps.w[range])
                .filter(|(_, w)| **w > 0.0)
                .map(|(x, _)| f64::from(*x));
            let scale = Scale::percentile(good, 1.0, 99.5).unwrap_or(Scale { lo: 0.0, hi: 1.0 });
            scales.push(if scale.hi > scale.lo {
                scale
            } else {
                Scale {
                    lo: scale.lo,
                    hi: scale.lo + 1.0,
                }
            });
        }
        let residual_abs = maps
            .residual
            .iter()
            .zip(maps.w)
            .filter(|(_, w)| **w > 0.0)
            .map(|(r, _)| f64::from(r.abs()));
        let half = Scale::percentile(residual_abs, 0.0, 99.0)
            .map(|s| s.hi)
            .unwrap_or(3.0)
            .max(3.0)
            .ceil();
        let residual_scale = Scale::symmetric(half);

        let labels = ["input", "reconstruction", "residual (σ)"];
        for (r, label) in labels.iter().enumerate() {
            root.draw(&Text::new(
                label.to_string(),
                (LEFT - 14, row_y[r] + PANEL / 2),
                bold_style(19.0, Pos::new(HPos::Right, VPos::Center)),
            ))
            .map_err(figure_error)?;
        }
        for (l, &scale) in scales.iter().enumerate() {
            let x0 = LEFT + l as i32 * (PANEL + GAP);
            let name = figure.lines[l].clone();
            root.draw(&Text::new(
                name,
                (x0 + PANEL / 2, rows_top - 6),
                text_style(15.0, Pos::new(HPos::Center, VPos::Bottom)),
            ))
            .map_err(figure_error)?;
            let base = l * pixels;
            let masked = |p: usize| maps.w[base + p].is_nan() || maps.w[base + p] <= 0.0;
            draw_map(&root, (x0, row_y[0], PANEL), figure.size, |p| {
                if masked(p) {
                    MASKED
                } else {
                    ColourMap::Viridis.at(scale.unit(f64::from(maps.x[base + p])))
                }
            })?;
            root.draw(&Text::new(
                format!("{} – {}", short_number(scale.lo), short_number(scale.hi)),
                (x0 + PANEL / 2, row_y[0] + PANEL + 4),
                text_style(13.0, Pos::new(HPos::Center, VPos::Top)),
            ))
            .map_err(figure_error)?;
            draw_map(&root, (x0, row_y[1], PANEL), figure.size, |p| {
                if masked(p) {
                    MASKED
                } else {
                    ColourMap::Viridis.at(scale.unit(f64::from(maps.xhat[base + p])))
                }
            })?;
            let chi2: f64 = (0..pixels)
                .filter(|&p| !masked(p))
                .map(|p| f64::from(maps.residual[base + p]).powi(2))
                .sum();
            let usable = (0..pixels).filter(|&p| !masked(p)).count().max(1);
            root.draw(&Text::new(
                format!("χ²/n = {}", short_number(chi2 / usable as f64)),
                (x0 + PANEL / 2, row_y[1] + PANEL + 4),
                text_style(13.0, Pos::new(HPos::Center, VPos::Top)),
            ))
            .map_err(figure_error)?;
            draw_map(&root, (x0, row_y[2], PANEL), figure.size, |p| {
                if masked(p) {
                    MASKED
                } else {
                    ColourMap::Diverging.at(residual_scale.unit(f64::from(maps.residual[base + p])))
                }
            })?;
        }
        let bar_x = LEFT + columns * (PANEL + GAP) + 24;
        draw_colourbar(
            &root,
            (bar_x, row_y[0], row_y[1] + PANEL - row_y[0]),
            ColourMap::Viridis,
            &[
                (0.0, "1st pct".to_string()),
                (1.0, "99.5th pct".to_string()),
            ],
            "flux (per line)",
        )?;
        draw_colourbar(
            &root,
            (bar_x, row_y[2], PANEL),
            ColourMap::Diverging,
            &[
                (0.0, format!("−{half:.0} σ")),
                (0.5, "0".to_string()),
                (1.0, format!("+{half:.0} σ")),
            ],
            "(x − x̂)/σ",
        )?;
        root.draw(&Text::new(
            "Normalised flux (galaxy flux / its Hα scale); range under each input panel, shared with the reconstruction. Grey: masked spaxels. North up.",
            (LEFT, row_y[2] + PANEL + 14),
            text_style(15.0, Pos::new(HPos::Left, VPos::Top)),
        ))
        .map_err(figure_error)?;

        // BPT maps.
        let input_classes =
            bpt::class_map(maps.x, maps.w, figure.lines, figure.size, figure.stretch);
        let recon_classes =
            bpt::class_map(maps.xhat, maps.w, figure.lines, figure.size, figure.stretch);
        let bpt_x = [LEFT, LEFT + BPT_PANEL + 60];
        for (i, (title, classes)) in [
            ("BPT class: input", &input_classes),
            ("BPT class: reconstruction", &recon_classes),
        ]
        .iter()
        .enumerate()
        {
            root.draw(&Text::new(
                title.to_string(),
                (bpt_x[i], bpt_top - 10),
                bold_style(18.0, Pos::new(HPos::Left, VPos::Bottom)),
            ))
            .map_err(figure_error)?;
            match classes {
                Ok(map) => draw_map(&root, (bpt_x[i], bpt_top, BPT_PANEL), figure.size, |p| {
                    map.get(p)
                        .copied()
                        .flatten()
                        .map(bpt::class_colour)
                        .unwrap_or(MASKED)
                })?,
                Err(e) => {
                    root.draw(&Text::new(
                        e.to_string(),
                        (bpt_x[i], bpt_top + 20),
                        text_style(14.0, Pos::new(HPos::Left, VPos::Top)),
                    ))
                    .map_err(figure_error)?;
                }
            }
        }
        let legend_x = bpt_x[1] + BPT_PANEL + 50;
        root.draw(&Text::new(
            "[NII] + [SII] BPT, Kewley+06 classes, S/N ≥ 3 per line",
            (legend_x, bpt_top),
            bold_style(16.0, Pos::new(HPos::Left, VPos::Top)),
        ))
        .map_err(figure_error)?;
        let counts_in = input_classes
            .as_ref()
            .map(|m| bpt::class_counts(m))
            .unwrap_or_default();
        let counts_re = recon_classes
            .as_ref()
            .map(|m| bpt::class_counts(m))
            .unwrap_or_default();
        root.draw(&Text::new(
            "spaxels: input / reconstruction",
            (legend_x + 250, bpt_top + 30),
            text_style(14.0, Pos::new(HPos::Left, VPos::Top)),
        ))
        .map_err(figure_error)?;
        for (i, class) in BptClass::ALL.iter().enumerate() {
            let y = bpt_top + 56 + i as i32 * 30;
            root.draw(&Rectangle::new(
                [(legend_x, y), (legend_x + 22, y + 22)],
                bpt::class_colour(*class).filled(),
            ))
            .map_err(figure_error)?;
            root.draw(&Rectangle::new(
                [(legend_x, y), (legend_x + 22, y + 22)],
                BLACK.stroke_width(1),
            ))
            .map_err(figure_error)?;
            root.draw(&Text::new(
                bpt::class_label(*class),
                (legend_x + 32, y + 11),
                text_style(16.0, Pos::new(HPos::Left, VPos::Center)),
            ))
            .map_err(figure_error)?;
            root.draw(&Text::new(
                format!("{} / {}", counts_in[i], counts_re[i]),
                (legend_x + 250, y + 11),
                text_style(16.0, Pos::new(HPos::Left, VPos::Center)),
            ))
            .map_err(figure_error)?;
        }
        let y = bpt_top + 56 + 6 * 30;
        root.draw(&Rectangle::new(
            [(legend_x, y), (legend_x + 22, y + 22)],
            MASKED.filled(),
        ))
        .map_err(figure_error)?;
        root.draw(&Text::new(
            "no usable data",
            (legend_x + 32, y + 11),
            text_style(16.0, Pos::new(HPos::Left, VPos::Center)),
        ))
        .map_err(figure_error)?;
        draw_anomaly(&root, figure, legend_x + 430, bpt_top)?;
        root.present().map_err(figure_error)?;
    }
    encode_png(&rgb, w_px, h_px)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_figure_of_the_expected_size_and_rejects_bad_shapes() {
        let lines: Vec<String> = oddcube_data::lines::PRESET_DR17
            .iter()
            .map(|s| s.to_string())
            .collect();
        let size = 8;
        let n = lines.len() * size * size;
        let x: Vec<f32> = (0..n).map(|i| (i % 17) as f32 / 17.0).collect();
        let xhat: Vec<f32> = x.iter().map(|v| v * 0.9).collect();
        let w: Vec<f32> = (0..n)
            .map(|i| if i % 11 == 0 { 0.0 } else { 100.0 })
            .collect();
        let residual: Vec<f32> = x
            .iter()
            .zip(&xhat)
            .zip(&w)
            .map(|((a, b), w)| (a - b) * w.sqrt())
            .collect();
        let maps = ResidualMaps {
            x: &x,
            xhat: &xhat,
            w: &w,
            residual: &residual,
        };
        let figure = GalaxyFigure {
            plateifu: "1-1",
            lines: &lines,
            size,
            maps,
            stretch: Stretch::None,
            subtitle: "rank 1",
            anomaly: None,
            no_anomaly: "no anomaly map",
            map_runs: 1,
        };
        let png = galaxy_png(&figure).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        let short = ResidualMaps {
            x: &x[..10],
            ..maps
        };
        assert!(
            galaxy_png(&GalaxyFigure {
                maps: short,
                ..figure
            })
            .is_err()
        );
    }

    #[test]
    fn a_consensus_map_says_how_many_runs_it_averages() {
        assert_eq!(consensus_note(1), None);
        assert_eq!(consensus_note(0), None);
        let note = consensus_note(3).unwrap();
        assert!(
            note.contains("3 averaged runs") && note.contains("kept run"),
            "{note}"
        );
    }

    #[test]
    fn the_anomaly_panel_outlines_the_region() {
        let lines: Vec<String> = oddcube_data::lines::PRESET_DR17
            .iter()
            .map(|s| s.to_string())
            .collect();
        let size = 8;
        let n = lines.len() * size * size;
        let x = vec![1.0f32; n];
        let w = vec![1.0f32; n];
        let zero = vec![0.0f32; n];
        let maps = ResidualMaps {
            x: &x,
            xhat: &x,
            w: &w,
            residual: &zero,
        };
        let mut map = vec![1.0f32; size * size];
        map[3 * size + 4] = 80.0;
        let region = crate::plot::anomaly::Region {
            dx: 0.5,
            dy: -0.5,
            area: 3.0,
            line: "OIII-5008".to_string(),
        };
        let view = AnomalyView {
            map: &map,
            stretch: crate::plot::anomaly::AnomalyStretch::of(&map).unwrap(),
            outline: crate::plot::anomaly::region_outline(&region, &map, size, Some(1.0)),
            region: Some(region),
        };
        let outline_pixels = |png: &[u8]| {
            let decoder = png::Decoder::new(std::io::Cursor::new(png));
            let mut reader = decoder.read_info().unwrap();
            let mut buf = vec![0; reader.output_buffer_size().unwrap()];
            let info = reader.next_frame(&mut buf).unwrap();
            buf[..info.buffer_size()]
                .chunks_exact(3)
                .filter(|c| *c == [OUTLINE.0, OUTLINE.1, OUTLINE.2])
                .count()
        };
        let figure = GalaxyFigure {
            plateifu: "1-1",
            lines: &lines,
            size,
            maps,
            stretch: Stretch::None,
            subtitle: "",
            anomaly: Some(&view),
            no_anomaly: "",
            map_runs: 1,
        };
        let single = galaxy_png(&figure).unwrap();
        let with = outline_pixels(&single);
        assert!(with > 100, "the region is outlined ({with} pixels)");
        // A consensus map carries one more line of text under it.
        let consensus = galaxy_png(&GalaxyFigure {
            map_runs: 3,
            ..figure
        })
        .unwrap();
        assert_ne!(consensus, single);
        let without = galaxy_png(&GalaxyFigure {
            anomaly: None,
            no_anomaly: super::super::anomaly::NO_MAPS_FILE,
            ..figure
        })
        .unwrap();
        assert_eq!(outline_pixels(&without), 0);
    }
}
