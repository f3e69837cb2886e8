//! The three figures of a RESULTS directory that `oddcube plot` draws — a galaxy, the latent map,
//! the score histograms — each from the directory alone: these functions find the rows, columns,
//! residual maps and dataset settings the figure modules ([`super::galaxy`], [`super::map`],
//! [`super::scores`]) need, and return PNG bytes.

use std::path::Path;

use oddcube_data::preprocess::Stretch;
use oddcube_score::anomaly_map::AnomalyMaps;
use oddcube_score::evaluate::score_columns;
use oddcube_score::provenance::dataset_manifest;
use oddcube_score::results::{Residuals, Results, invalid};
use oddcube_score::{Error, Result};

use super::anomaly::{AnomalyView, NO_MAPS_FILE};
use super::galaxy::{GalaxyFigure, galaxy_png};
use super::map::{MapFigure, map_png};
use super::scores::{ScorePanel, ScoresFigure, scores_png};
use super::{score_label, short_number};
use crate::project::Projection;

/// A drawn figure, with a note for the reader when it had to assume something.
#[derive(Debug, Clone)]
pub struct Drawn {
    /// PNG bytes.
    pub png: Vec<u8>,
    /// What was assumed (e.g. linear flux when the dataset is not reachable), if anything.
    pub note: Option<String>,
}

fn row_value(results: &Results, column: &str, row: usize) -> Option<f64> {
    results
        .catalog
        .f64(column)
        .and_then(|v| v.get(row))
        .copied()
}

/// One galaxy of the RESULTS directory `dir`: input, reconstruction and residual of every line,
/// its BPT class maps and its anomaly map with the region outlined, titled with its rank,
/// scores, p- and q-value, FDR flag, redshift and the region's dominant line. Needs the galaxy
/// among the stored residuals; errors say how to store them. The BPT maps need the dataset's
/// flux stretch: from `data` when given (a `--data` option), else from the dataset the
/// results' manifest records; when neither can be read the figure assumes linear flux and its
/// note says so.
pub fn galaxy_figure(dir: &Path, plateifu: &str, data: Option<&Path>) -> Result<Drawn> {
    let results = Results::open(dir)?;
    let row = results
        .catalog
        .row_of(plateifu)
        .ok_or_else(|| invalid(dir, format!("{plateifu} is not in the catalogue")))?;
    let residuals = Residuals::open(dir)?.ok_or_else(|| {
        invalid(
            dir,
            "no residuals.safetensors: re-run `oddcube score ... --residuals all` (or top:K) to store maps",
        )
    })?;
    let maps = residuals.galaxy_by_plateifu(plateifu).ok_or_else(|| {
        invalid(
            dir,
            format!(
                "{plateifu} is not among the {} galaxies whose residuals are stored: re-run `oddcube score ... --residuals all`",
                residuals.len()
            ),
        )
    })?;
    let rank = results.catalog.u32("rank").and_then(|r| r.get(row));
    let mut parts = vec![format!(
        "rank {}",
        rank.map_or_else(|| "–".to_string(), u32::to_string)
    )];
    for column in score_columns(&results.catalog) {
        if let Some(v) = row_value(&results, &column, row) {
            parts.push(format!("{column} = {}", short_number(v)));
        }
    }
    if let Some(p) = row_value(&results, "pvalue", row) {
        parts.push(format!("p = {p:.2e}"));
    }
    if let Some(q) = row_value(&results, "qvalue", row) {
        parts.push(format!("q = {q:.2e}"));
    }
    if let Some(flag) = results.catalog.bool("fdr_flag").and_then(|f| f.get(row)) {
        parts.push(if *flag {
            format!("FDR-flagged at {}", results.manifest.fdr)
        } else {
            "not flagged".to_string()
        });
    }
    if let Some(z) = row_value(&results, "z", row) {
        parts.push(format!("z = {z:.4}"));
    }
    // Only the BPT ratios depend on the stretch, so an unreachable dataset is a note, not an
    // error — unless the user named it.
    let (stretch, note) = match dataset_manifest(&results.manifest, data) {
        Ok((_, manifest)) => (manifest.normalisation.stretch, None),
        Err(e) if data.is_some() => return Err(e),
        Err(e) => (
            Stretch::None,
            Some(format!("{e}: assuming linear flux for the BPT maps")),
        ),
    };
    let subtitle = parts.join("   ");
    // Results scored before the maps existed have no anomaly_maps.safetensors: the figure is
    // drawn without the map and says why. No dataset is opened for the pixel scale (it would
    // read every cube): the region's own area in pixels on the map gives it.
    let anomaly_maps = AnomalyMaps::read(dir)?;
    let map = anomaly_maps.as_ref().and_then(|m| {
        let i = m.plateifus.iter().position(|p| p == plateifu)?;
        (m.size == residuals.size).then(|| m.galaxy(i).0)
    });
    let view =
        map.and_then(|map| AnomalyView::new(map, residuals.size, &results.catalog, row, None));
    let no_anomaly = if anomaly_maps.is_none() {
        NO_MAPS_FILE
    } else {
        "no anomaly map for this galaxy"
    };
    let png = galaxy_png(&GalaxyFigure {
        plateifu,
        lines: &residuals.lines,
        size: residuals.size,
        maps,
        stretch,
        subtitle: &subtitle,
        anomaly: view.as_ref(),
        no_anomaly,
        map_runs: anomaly_maps.as_ref().map_or(1, |m| m.runs),
    })?;
    Ok(Drawn { png, note })
}

/// The latent map of `dir` (written by `oddcube project`), coloured by the column `colour`
/// (default: the ranking score), the `top` best-ranked galaxies ringed and labelled.
pub fn map_figure(dir: &Path, colour: Option<&str>, top: usize) -> Result<Drawn> {
    let results = Results::open(dir)?;
    let map = Projection::read(dir)?.ok_or_else(|| {
        invalid(
            dir,
            format!(
                "no projection.csv: run `oddcube project {}` first",
                dir.display()
            ),
        )
    })?;
    let colour = colour.unwrap_or(&results.manifest.rank_by);
    let values = results
        .catalog
        .f64(colour)
        .ok_or_else(|| Error::InvalidParameter {
            name: "colour".to_string(),
            value: colour.to_string(),
            reason: format!(
                "no numeric column {colour:?}; score columns: {}",
                score_columns(&results.catalog).join(", ")
            ),
        })?;
    let ranks = results.catalog.u32("rank");
    let mut colour_by = Vec::with_capacity(map.plateifus.len());
    let mut rank_of_point = Vec::with_capacity(map.plateifus.len());
    for id in &map.plateifus {
        let row = results.catalog.row_of(id).ok_or_else(|| {
            invalid(
                dir,
                format!("projection.csv lists {id}, which is not in the catalogue: re-run `oddcube project`"),
            )
        })?;
        colour_by.push(values.get(row).copied().unwrap_or(f64::NAN));
        rank_of_point.push(ranks.and_then(|r| r.get(row)).copied().unwrap_or(u32::MAX));
    }
    let mut highlight: Vec<usize> = (0..map.plateifus.len()).collect();
    highlight.sort_by_key(|&i| rank_of_point[i]);
    highlight.truncate(top);
    let label = score_label(colour);
    let title = format!(
        "Latent map of {} galaxies ({}), coloured by {colour}",
        map.plateifus.len(),
        map.info.method.to_string().to_uppercase()
    );
    let png = map_png(&MapFigure {
        xy: &map.xy,
        plateifus: &map.plateifus,
        colour_by: &colour_by,
        column: colour,
        colour_label: &label,
        highlight: &highlight,
        method: map.info.method,
        explained: map.info.pca_explained_variance_ratio,
        title: &title,
    })?;
    Ok(Drawn { png, note: None })
}

/// Histograms of every score column of `dir`, FDR-flagged galaxies and the threshold marked.
pub fn scores_figure(dir: &Path) -> Result<Drawn> {
    let results = Results::open(dir)?;
    let columns = score_columns(&results.catalog);
    let panels: Vec<ScorePanel<'_>> = columns
        .iter()
        .filter_map(|c| {
            results
                .catalog
                .f64(c)
                .map(|values| ScorePanel { name: c, values })
        })
        .collect();
    let no_flags = vec![false; results.catalog.len()];
    let flagged = results.catalog.bool("fdr_flag").unwrap_or(&no_flags);
    let png = scores_png(&ScoresFigure {
        panels,
        flagged,
        rank_by: &results.manifest.rank_by,
        fdr: results.manifest.fdr,
    })?;
    Ok(Drawn { png, note: None })
}
