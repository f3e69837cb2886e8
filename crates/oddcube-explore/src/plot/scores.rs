//! Score histograms (`oddcube plot scores`): one panel per score column, all galaxies in grey and
//! the FDR-flagged ones in red, with the threshold of the ranking score marked.
//!
//! Scores are heavy-tailed, so strictly positive columns are binned in log10; counts are on a
//! log axis so the few anomalies in the tail stay visible next to the bulk.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{FONT, encode_png, figure_error, register_fonts, score_label, short_number};
use oddcube_score::{Error, Result};

/// One histogram panel's data.
#[derive(Debug, Clone)]
pub struct ScorePanel<'a> {
    /// Column name.
    pub name: &'a str,
    /// Score of every galaxy.
    pub values: &'a [f64],
}

/// What the score figure shows.
#[derive(Debug, Clone)]
pub struct ScoresFigure<'a> {
    /// One panel per score column.
    pub panels: Vec<ScorePanel<'a>>,
    /// FDR flag of every galaxy.
    pub flagged: &'a [bool],
    /// The column galaxies were ranked and flagged by (its panel gets the threshold line).
    pub rank_by: &'a str,
    /// The false-discovery rate of the flag.
    pub fdr: f64,
}

const BINS: usize = 40;

/// Renders the histograms as PNG bytes. Errors when a column's length differs from the flags or
/// there is no panel.
pub fn scores_png(figure: &ScoresFigure<'_>) -> Result<Vec<u8>> {
    register_fonts();
    if figure.panels.is_empty() {
        return Err(Error::Empty("score columns".to_string()));
    }
    for panel in &figure.panels {
        oddcube_score::error::check_len(panel.name, panel.values.len(), figure.flagged.len())?;
    }
    let columns = figure.panels.len().min(2);
    let rows = figure.panels.len().div_ceil(columns);
    let (width, height) = (760 * columns as u32, 560 * rows as u32 + 70);
    let mut rgb = vec![255u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(figure_error)?;
        let n_flagged = figure.flagged.iter().filter(|f| **f).count();
        let title = format!(
            "Anomaly score distributions — {} galaxies, {} flagged at FDR {} by {}",
            figure.flagged.len(),
            n_flagged,
            figure.fdr,
            figure.rank_by
        );
        let (top, body) = root.split_vertically(70);
        top.draw(&Text::new(
            title,
            (width as i32 / 2, 20),
            TextStyle::from((FONT, 26).into_font().style(FontStyle::Bold))
                .pos(Pos::new(HPos::Center, VPos::Top)),
        ))
        .map_err(figure_error)?;
        for (panel, area) in figure.panels.iter().zip(body.split_evenly((rows, columns))) {
            draw_panel(&area, panel, figure)?;
        }
        root.present().map_err(figure_error)?;
    }
    encode_png(&rgb, width, height)
}

fn draw_panel(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    panel: &ScorePanel<'_>,
    figure: &ScoresFigure<'_>,
) -> Result<()> {
    let finite: Vec<f64> = panel
        .values
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    let log = !finite.is_empty() && finite.iter().all(|v| *v > 0.0);
    let transform = |v: f64| if log { v.log10() } else { v };
    let mut lo = finite
        .iter()
        .copied()
        .map(transform)
        .fold(f64::INFINITY, f64::min);
    let mut hi = finite
        .iter()
        .copied()
        .map(transform)
        .fold(f64::NEG_INFINITY, f64::max);
    if !(lo.is_finite() && hi.is_finite()) {
        lo = 0.0;
        hi = 1.0;
    }
    if hi <= lo {
        hi = lo + 1.0;
    }
    let width = (hi - lo) / BINS as f64;
    let bin_of = |v: f64| (((transform(v) - lo) / width) as usize).min(BINS - 1);
    let mut all = [0u64; BINS];
    let mut flagged = [0u64; BINS];
    for (v, f) in panel.values.iter().zip(figure.flagged) {
        if v.is_finite() {
            let b = bin_of(*v);
            all[b] += 1;
            if *f {
                flagged[b] += 1;
            }
        }
    }
    let max_count = all.iter().copied().max().unwrap_or(1).max(1) as f64;
    let x_desc = if log {
        format!("log10 {}", score_label(panel.name))
    } else {
        score_label(panel.name)
    };
    let mut chart = ChartBuilder::on(area)
        .margin(18)
        .caption(panel.name, (FONT, 22).into_font().style(FontStyle::Bold))
        .x_label_area_size(56)
        .y_label_area_size(70)
        .build_cartesian_2d(
            lo - 0.5 * width..hi + 0.5 * width,
            (0.8f64..max_count * 2.0).log_scale(),
        )
        .map_err(figure_error)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(WHITE)
        .bold_line_style(RGBColor(225, 225, 225))
        .x_desc(x_desc)
        .y_desc("galaxies per bin")
        .axis_desc_style((FONT, 18))
        .label_style((FONT, 15))
        .x_label_formatter(&|v| short_number(*v))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(figure_error)?;
    let grey = RGBColor(150, 150, 150);
    let red = RGBColor(200, 30, 30);
    for (counts, colour, label) in [(&all, grey, "all galaxies"), (&flagged, red, "FDR-flagged")] {
        chart
            .draw_series(
                counts
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| **c > 0)
                    .map(|(b, c)| {
                        let x0 = lo + b as f64 * width;
                        Rectangle::new(
                            [(x0, 0.8), (x0 + width, *c as f64)],
                            colour.mix(0.85).filled(),
                        )
                    }),
            )
            .map_err(figure_error)?
            .label(label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], colour.filled()));
    }
    if panel.name == figure.rank_by {
        let threshold = panel
            .values
            .iter()
            .zip(figure.flagged)
            .filter(|(v, f)| **f && v.is_finite())
            .map(|(v, _)| *v)
            .fold(f64::INFINITY, f64::min);
        if threshold.is_finite() {
            let x = transform(threshold);
            let dashes: Vec<(f64, f64)> = (0..24)
                .map(|k| (x, 0.8 * (max_count * 2.5).powf(f64::from(k) / 24.0)))
                .collect();
            chart
                .draw_series(
                    dashes
                        .chunks(2)
                        .map(|pair| PathElement::new(pair.to_vec(), BLACK.stroke_width(2))),
                )
                .map_err(figure_error)?
                .label(format!(
                    "FDR {} threshold = {}",
                    figure.fdr,
                    short_number(threshold)
                ))
                .legend(|(x, y)| {
                    PathElement::new(vec![(x, y), (x + 14, y)], BLACK.stroke_width(2))
                });
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font((FONT, 15))
        .draw()
        .map_err(figure_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_validates() {
        let recon: Vec<f64> = (1..=200).map(|i| f64::from(i).powi(2) * 1e-4).collect();
        let lof: Vec<f64> = (0..200).map(|i| f64::from(i) / 100.0 - 1.0).collect();
        let flagged: Vec<bool> = (0..200).map(|i| i >= 190).collect();
        let figure = ScoresFigure {
            panels: vec![
                ScorePanel {
                    name: "recon",
                    values: &recon,
                },
                ScorePanel {
                    name: "lof",
                    values: &lof,
                },
            ],
            flagged: &flagged,
            rank_by: "recon",
            fdr: 0.05,
        };
        assert_eq!(&scores_png(&figure).unwrap()[1..4], b"PNG");
        let bad = ScoresFigure {
            panels: vec![ScorePanel {
                name: "recon",
                values: &recon[..5],
            }],
            ..figure.clone()
        };
        assert!(scores_png(&bad).is_err());
        assert!(
            scores_png(&ScoresFigure {
                panels: vec![],
                ..figure
            })
            .is_err()
        );
    }
}
