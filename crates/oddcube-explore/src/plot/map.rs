//! The latent-map figure (`oddcube plot map`): every galaxy on the UMAP/PCA plane coloured by a
//! score, the top anomalies ringed and labelled with their plate-ifu.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::colouring::{ColourStretch, colour_positions};
use super::{ColourMap, FONT, encode_png, figure_error, register_fonts, short_number};
use crate::project::ProjectionMethod;
use oddcube_score::{Error, Result};

/// What the map figure shows.
#[derive(Debug, Clone, Copy)]
pub struct MapFigure<'a> {
    /// Map coordinates, one per galaxy.
    pub xy: &'a [[f32; 2]],
    /// Plate-ifu of each point (labels of the highlighted ones).
    pub plateifus: &'a [String],
    /// Colour value of each point.
    pub colour_by: &'a [f64],
    /// The column `colour_by` came from: it picks the colour stretch
    /// ([`colour_rule`](super::colouring::colour_rule)).
    pub column: &'a str,
    /// Label of the colour bar (with units).
    pub colour_label: &'a str,
    /// Indices of the points to ring and label (the top anomalies), most anomalous first.
    pub highlight: &'a [usize],
    /// How the map was made (axis names).
    pub method: ProjectionMethod,
    /// PCA explained-variance ratios (for PCA axis labels).
    pub explained: [f64; 2],
    /// Figure title.
    pub title: &'a str,
}

/// Figure size in pixels.
const WIDTH: u32 = 1400;
const HEIGHT: u32 = 1100;

/// Renders the map as PNG bytes. Errors when the inputs disagree in length or the map is empty.
pub fn map_png(figure: &MapFigure<'_>) -> Result<Vec<u8>> {
    register_fonts();
    let n = figure.xy.len();
    oddcube_score::error::check_len("plate-ifus", figure.plateifus.len(), n)?;
    oddcube_score::error::check_len("colour values", figure.colour_by.len(), n)?;
    if n == 0 {
        return Err(Error::Empty("latent map".to_string()));
    }
    if let Some(&bad) = figure.highlight.iter().find(|&&i| i >= n) {
        return Err(Error::InvalidParameter {
            name: "highlight".to_string(),
            value: bad.to_string(),
            reason: format!("only {n} galaxies on the map"),
        });
    }
    let (mut x_lo, mut x_hi, mut y_lo, mut y_hi) = (
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::INFINITY,
        f32::NEG_INFINITY,
    );
    for p in figure
        .xy
        .iter()
        .filter(|p| p[0].is_finite() && p[1].is_finite())
    {
        x_lo = x_lo.min(p[0]);
        x_hi = x_hi.max(p[0]);
        y_lo = y_lo.min(p[1]);
        y_hi = y_hi.max(p[1]);
    }
    if !(x_lo.is_finite() && y_lo.is_finite()) {
        return Err(Error::NonFinite {
            what: "map coordinates".to_string(),
            index: 0,
        });
    }
    let pad_x = ((x_hi - x_lo) * 0.05).max(1e-3);
    let pad_y = ((y_hi - y_lo) * 0.05).max(1e-3);
    // Anomaly scores have long tails: a linear colour scale paints all but a handful of galaxies
    // the same colour. The stretch is chosen per column (log, rank or linear; see
    // plot::colouring), the same rule the explorer's map uses.
    let positions = colour_positions(figure.column, figure.colour_by);
    let t_of = |i: usize| positions.t[i].unwrap_or(f64::NAN);
    let radius = if n <= 2_000 {
        4
    } else if n <= 30_000 {
        2
    } else {
        1
    };
    let axis = |i: usize| match figure.method {
        ProjectionMethod::Umap => format!("UMAP {} (arbitrary units)", i + 1),
        ProjectionMethod::Pca => format!(
            "PC{} ({:.0} % of latent variance)",
            i + 1,
            figure.explained[i] * 100.0
        ),
    };
    let mut rgb = vec![255u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(figure_error)?;
        let (plot_area, bar_area) = root.split_horizontally(WIDTH - 230);
        let mut chart = ChartBuilder::on(&plot_area)
            .caption(figure.title, (FONT, 30).into_font().style(FontStyle::Bold))
            .margin(20)
            .x_label_area_size(60)
            .y_label_area_size(80)
            .build_cartesian_2d(
                (x_lo - pad_x)..(x_hi + pad_x),
                (y_lo - pad_y)..(y_hi + pad_y),
            )
            .map_err(figure_error)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc(axis(0))
            .y_desc(axis(1))
            .axis_desc_style((FONT, 22))
            .label_style((FONT, 18))
            .draw()
            .map_err(figure_error)?;
        // Least anomalous first, so anomalous galaxies are drawn on top.
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| t_of(a).total_cmp(&t_of(b)));
        chart
            .draw_series(
                order
                    .iter()
                    .filter(|&&i| figure.xy[i][0].is_finite() && figure.xy[i][1].is_finite())
                    .map(|&i| {
                        let c = ColourMap::Plasma.at(t_of(i));
                        Circle::new(
                            (figure.xy[i][0], figure.xy[i][1]),
                            radius,
                            c.mix(0.85).filled(),
                        )
                    }),
            )
            .map_err(figure_error)?;
        let ring = RGBColor(0, 160, 60);
        chart
            .draw_series(figure.highlight.iter().map(|&i| {
                Circle::new(
                    (figure.xy[i][0], figure.xy[i][1]),
                    radius + 7,
                    ring.stroke_width(3),
                )
            }))
            .map_err(figure_error)?;
        // Labels sit beside their ring on a translucent white box, so they stay readable over
        // dense regions of the map; where anomalies crowd together each takes the first corner
        // that neither covers an earlier label nor leaves the plot.
        let label_font = (FONT, 17).into_font().style(FontStyle::Bold);
        let label_style = TextStyle::from(label_font.clone()).color(&BLACK);
        let texts: Vec<String> = figure
            .highlight
            .iter()
            .enumerate()
            .map(|(r, &i)| format!("{} {}", r + 1, figure.plateifus[i]))
            .collect();
        let boxes: Vec<(i32, i32)> = texts
            .iter()
            .map(|text| {
                let (w, h) = label_font.box_size(text).unwrap_or((120, 17));
                (w as i32 + 6, h as i32 + 6)
            })
            .collect();
        let anchors: Vec<(i32, i32)> = figure
            .highlight
            .iter()
            .map(|&i| chart.backend_coord(&(figure.xy[i][0], figure.xy[i][1])))
            .collect();
        let (x_range, y_range) = chart.plotting_area().get_pixel_range();
        let bounds = (x_range.start, y_range.start, x_range.end, y_range.end);
        let offsets = place_labels(&anchors, &boxes, bounds);
        chart
            .draw_series(
                figure
                    .highlight
                    .iter()
                    .zip(&texts)
                    .zip(boxes.iter().zip(&offsets))
                    .map(|((&i, text), (&(w, h), &(dx, dy)))| {
                        // A label moved away from its ring points back to it from its nearest
                        // corner.
                        let near = (
                            if dx > 0 { dx } else { dx + w },
                            if dy > 0 { dy } else { dy + h },
                        );
                        let leader = if near.0.abs().max(near.1.abs()) > 2 * h {
                            vec![(0, 0), near]
                        } else {
                            vec![]
                        };
                        EmptyElement::at((figure.xy[i][0], figure.xy[i][1]))
                            + PathElement::new(leader, BLACK.mix(0.6).stroke_width(1))
                            + Rectangle::new([(dx, dy), (dx + w, dy + h)], WHITE.mix(0.8).filled())
                            + Text::new(text.clone(), (dx + 3, dy + 3), label_style.clone())
                    }),
            )
            .map_err(figure_error)?;

        // Colour bar.
        let (bx, by, bh, bw) = (40i32, 120i32, (HEIGHT as i32) - 320, 28i32);
        for i in 0..bh {
            let c = ColourMap::Plasma.at(1.0 - f64::from(i) / f64::from(bh - 1));
            bar_area
                .draw(&Rectangle::new(
                    [(bx, by + i), (bx + bw, by + i + 1)],
                    c.filled(),
                ))
                .map_err(figure_error)?;
        }
        bar_area
            .draw(&Rectangle::new(
                [(bx, by), (bx + bw, by + bh)],
                BLACK.stroke_width(1),
            ))
            .map_err(figure_error)?;
        for k in 0..=4 {
            let t = f64::from(k) / 4.0;
            let ty = by + ((1.0 - t) * f64::from(bh - 1)) as i32;
            let value = positions.value_at(t, figure.colour_by);
            bar_area
                .draw(&PathElement::new(
                    vec![(bx + bw, ty), (bx + bw + 6, ty)],
                    BLACK,
                ))
                .map_err(figure_error)?;
            bar_area
                .draw(&Text::new(
                    short_number(value),
                    (bx + bw + 10, ty),
                    TextStyle::from((FONT, 17)).pos(Pos::new(HPos::Left, VPos::Center)),
                ))
                .map_err(figure_error)?;
        }
        // The label is long: wrap it over lines above the bar.
        let mut lines: Vec<String> = vec![String::new()];
        for word in figure.colour_label.split_whitespace() {
            let current = lines.last_mut().map(|l| l.len()).unwrap_or(0);
            if current + word.len() > 18 {
                lines.push(String::new());
            }
            if let Some(last) = lines.last_mut() {
                if !last.is_empty() {
                    last.push(' ');
                }
                last.push_str(word);
            }
        }
        for (k, line) in lines.iter().enumerate() {
            bar_area
                .draw(&Text::new(
                    line.clone(),
                    (10, 30 + 22 * k as i32),
                    TextStyle::from((FONT, 18)).pos(Pos::new(HPos::Left, VPos::Top)),
                ))
                .map_err(figure_error)?;
        }
        bar_area
            .draw(&Text::new(
                match (positions.rule.stretch, positions.rule.reversed) {
                    (ColourStretch::Log, false) => "(1st–99th pct, log scale)",
                    (ColourStretch::Log, true) => "(1st–99th pct, log scale, low = bright)",
                    (ColourStretch::Rank, _) => "(rank scale)",
                    (ColourStretch::Linear, false) => "(1st–99th pct)",
                    (ColourStretch::Linear, true) => "(1st–99th pct, low = bright)",
                },
                (10, by + bh + 20),
                TextStyle::from((FONT, 16)).pos(Pos::new(HPos::Left, VPos::Top)),
            ))
            .map_err(figure_error)?;
        bar_area
            .draw(&Text::new(
                "○ top anomalies",
                (10, by + bh + 50),
                TextStyle::from((FONT, 16))
                    .color(&ring)
                    .pos(Pos::new(HPos::Left, VPos::Top)),
            ))
            .map_err(figure_error)?;
        root.present().map_err(figure_error)?;
    }
    encode_png(&rgb, WIDTH, HEIGHT)
}

/// How far, in label heights, a crowded label may move away from its point.
const MAX_LABEL_STEPS: i32 = 8;

/// Where each label box goes, as its top-left corner relative to its point (pixels). Labels are
/// placed in order (most anomalous first): each takes the first of the four corners around its
/// ring — up-right, up-left, down-right, down-left — whose box lies inside `bounds` (left, top,
/// right, bottom) and covers no earlier label's box; failing those, the same corners moved away
/// from the point by one to [`MAX_LABEL_STEPS`] label heights (drawn with a leader line). When
/// none is free it takes the corner inside the plot that covers the least of the earlier labels
/// (up-right if none is inside), so a crowded label is partly hidden rather than printed over
/// another.
fn place_labels(
    anchors: &[(i32, i32)],
    boxes: &[(i32, i32)],
    bounds: (i32, i32, i32, i32),
) -> Vec<(i32, i32)> {
    const GAP: i32 = 9;
    let mut placed: Vec<[i32; 4]> = Vec::with_capacity(anchors.len());
    let mut offsets = Vec::with_capacity(anchors.len());
    for (&(ax, ay), &(w, h)) in anchors.iter().zip(boxes) {
        let corner = |step: i32| {
            let shift = step * (h + 2);
            [
                (GAP, -h - GAP - shift),
                (-w - GAP, -h - GAP - shift),
                (GAP, GAP + shift),
                (-w - GAP, GAP + shift),
            ]
        };
        let corners = (0..=MAX_LABEL_STEPS).flat_map(corner);
        let rect = |(dx, dy): (i32, i32)| [ax + dx, ay + dy, ax + dx + w, ay + dy + h];
        let fits = |r: &[i32; 4]| {
            r[0] >= bounds.0 && r[1] >= bounds.1 && r[2] <= bounds.2 && r[3] <= bounds.3
        };
        // Pixels of earlier labels this box would cover (0: free).
        let covered = |r: &[i32; 4]| -> i64 {
            placed
                .iter()
                .map(|p| {
                    let w = (r[2].min(p[2]) - r[0].max(p[0])).max(0);
                    let h = (r[3].min(p[3]) - r[1].max(p[1])).max(0);
                    i64::from(w) * i64::from(h)
                })
                .sum()
        };
        let inside: Vec<((i32, i32), i64)> = corners
            .filter_map(|c| {
                let r = rect(c);
                fits(&r).then(|| (c, covered(&r)))
            })
            .collect();
        let offset = inside
            .iter()
            .find(|(_, cover)| *cover == 0)
            .or_else(|| inside.iter().min_by_key(|(_, cover)| *cover))
            .map_or(corner(0)[0], |&(c, _)| c);
        placed.push(rect(offset));
        offsets.push(offset);
    }
    offsets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crowded_labels_take_free_corners_inside_the_plot() {
        let bounds = (0, 0, 1000, 800);
        // A lone label goes up-right.
        assert_eq!(
            place_labels(&[(500, 400)], &[(100, 20)], bounds),
            [(9, -29)]
        );
        // Two points a few pixels apart: the second label moves to a corner that does not
        // cover the first.
        let offsets = place_labels(&[(500, 400), (505, 402)], &[(100, 20), (100, 20)], bounds);
        let rect = |(ax, ay): (i32, i32), (dx, dy): (i32, i32)| {
            [ax + dx, ay + dy, ax + dx + 100, ay + dy + 20]
        };
        let (a, b) = (rect((500, 400), offsets[0]), rect((505, 402), offsets[1]));
        assert!(
            a[2] <= b[0] || b[2] <= a[0] || a[3] <= b[1] || b[3] <= a[1],
            "{offsets:?}"
        );
        // At the right edge the label turns left rather than leave the plot.
        let offset = place_labels(&[(990, 400)], &[(100, 20)], bounds)[0];
        assert!(
            990 + offset.0 + 100 <= 1000 && 990 + offset.0 >= 0,
            "{offset:?}"
        );
    }

    #[test]
    fn a_label_with_no_free_corner_covers_as_little_as_it_can() {
        // In a top-left corner only the down-right corners fit (up and left leave the plot):
        // MAX_LABEL_STEPS + 1 of them. Labels of points 2 px apart fill those; the next one
        // finds none free. Printed up-right it would leave the plot; it must stay inside and
        // cover less than a whole earlier label (its candidates are offset by 2 px per point).
        let bounds = (0, 0, 1000, 800);
        let n = (MAX_LABEL_STEPS + 2) as usize;
        let anchors: Vec<(i32, i32)> = (0..n as i32).map(|i| (5, 5 + 2 * i)).collect();
        let boxes = vec![(100, 20); n];
        let offsets = place_labels(&anchors, &boxes, bounds);
        let rects: Vec<[i32; 4]> = anchors
            .iter()
            .zip(&offsets)
            .map(|(&(ax, ay), &(dx, dy))| [ax + dx, ay + dy, ax + dx + 100, ay + dy + 20])
            .collect();
        for r in &rects {
            assert!(
                r[0] >= 0 && r[1] >= 0 && r[2] <= 1000 && r[3] <= 800,
                "{rects:?}"
            );
        }
        let last = rects[n - 1];
        for earlier in &rects[..n - 1] {
            let w = (last[2].min(earlier[2]) - last[0].max(earlier[0])).max(0);
            let h = (last[3].min(earlier[3]) - last[1].max(earlier[1])).max(0);
            assert!(w * h < 100 * 20, "the last label hides another: {rects:?}");
        }
    }

    #[test]
    fn renders_and_validates() {
        let xy: Vec<[f32; 2]> = (0..50).map(|i| [i as f32, (i * i) as f32 / 50.0]).collect();
        let names: Vec<String> = (0..50).map(|i| format!("1-{i}")).collect();
        let scores: Vec<f64> = (0..50).map(f64::from).collect();
        let fig = MapFigure {
            xy: &xy,
            plateifus: &names,
            colour_by: &scores,
            column: "recon",
            colour_label: "recon",
            highlight: &[49, 48],
            method: ProjectionMethod::Umap,
            explained: [0.5, 0.2],
            title: "map",
        };
        assert_eq!(&map_png(&fig).unwrap()[1..4], b"PNG");
        assert!(
            map_png(&MapFigure {
                highlight: &[50],
                ..fig
            })
            .is_err()
        );
        assert!(
            map_png(&MapFigure {
                colour_by: &scores[..3],
                ..fig
            })
            .is_err()
        );
    }
}
