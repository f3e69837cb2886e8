//! `oddcube plot`: publication PNG figures from a RESULTS directory — one galaxy's maps,
//! reconstruction, residuals and BPT maps; the latent map; the score histograms.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use oddcube_data::preprocess::Stretch;
use oddcube_explore::plot::galaxy::{GalaxyFigure, galaxy_png};
use oddcube_explore::plot::map::{MapFigure, map_png};
use oddcube_explore::plot::scores::{ScorePanel, ScoresFigure, scores_png};
use oddcube_explore::plot::{score_columns, score_label};
use oddcube_explore::project::Projection;
use oddcube_score::results::{Residuals, Results, write_atomic};

/// Arguments of `oddcube plot`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    figure: Figure,
}

#[derive(clap::Subcommand)]
enum Figure {
    /// One galaxy: input, reconstruction and residual (σ) of every line, and BPT class maps.
    /// Needs the galaxy among the stored residuals (`oddcube score --residuals all` or `top:K`).
    Galaxy {
        /// RESULTS directory.
        results: PathBuf,
        /// The galaxy's plate-ifu.
        plateifu: String,
        /// Output PNG (default RESULTS/figures/galaxy-PLATEIFU.png).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The latent map (run `oddcube project` first), coloured by a score, top anomalies labelled.
    Map {
        /// RESULTS directory.
        results: PathBuf,
        /// Column that colours the points (default: the ranking score).
        #[arg(long)]
        colour: Option<String>,
        /// How many top-ranked galaxies to ring and label.
        #[arg(long, default_value_t = 10)]
        top: usize,
        /// Output PNG (default RESULTS/figures/map.png).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Histograms of every score column, FDR-flagged galaxies and the threshold marked.
    Scores {
        /// RESULTS directory.
        results: PathBuf,
        /// Output PNG (default RESULTS/figures/scores.png).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn output(results: &Path, out: Option<PathBuf>, name: &str) -> anyhow::Result<PathBuf> {
    let path = out.unwrap_or_else(|| results.join("figures").join(name));
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    Ok(path)
}

/// The dataset's flux stretch, read from the dataset manifest the results point at; `None`
/// (linear) when that dataset is not reachable, with a note, since only BPT ratios depend on it.
fn dataset_stretch(results: &Results) -> Stretch {
    let path = Path::new(&results.manifest.dataset_dir).join(oddcube_data::dataset::MANIFEST_FILE);
    let manifest = std::fs::read(&path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<oddcube_data::dataset::Manifest>(&bytes).ok());
    match manifest {
        Some(m) => m.normalisation.stretch,
        None => {
            tracing::warn!(
                "{} not readable: assuming linear flux for the BPT maps",
                path.display()
            );
            Stretch::None
        }
    }
}

fn row_value(results: &Results, column: &str, row: usize) -> Option<f64> {
    results
        .catalog
        .f64(column)
        .and_then(|v| v.get(row))
        .copied()
}

/// Runs `oddcube plot`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.figure {
        Figure::Galaxy {
            results: dir,
            plateifu,
            out,
        } => {
            let results = Results::open(&dir)?;
            let row = results
                .catalog
                .row_of(&plateifu)
                .with_context(|| format!("{plateifu} is not in {}", dir.display()))?;
            let residuals = Residuals::open(&dir)?.with_context(|| {
                format!(
                    "{} has no residuals.safetensors: re-run `oddcube score ... --residuals all` (or top:K) to store maps",
                    dir.display()
                )
            })?;
            let maps = residuals.galaxy_by_plateifu(&plateifu).with_context(|| {
                format!(
                    "{plateifu} is not among the {} galaxies whose residuals are stored in {}: re-run `oddcube score ... --residuals all`",
                    residuals.len(),
                    dir.display()
                )
            })?;
            let rank = results
                .catalog
                .u32("rank")
                .and_then(|r| r.get(row))
                .copied();
            let mut parts = vec![format!(
                "rank {}",
                rank.map(|r| r.to_string()).unwrap_or_else(|| "–".into())
            )];
            for column in score_columns(&results.catalog) {
                if let Some(v) = row_value(&results, &column, row) {
                    parts.push(format!(
                        "{column} = {}",
                        oddcube_explore::plot::short_number(v)
                    ));
                }
            }
            if let Some(q) = row_value(&results, "qvalue", row) {
                parts.push(format!("q = {}", oddcube_explore::plot::short_number(q)));
            }
            if let Some(z) = row_value(&results, "z", row) {
                parts.push(format!("z = {z:.4}"));
            }
            let subtitle = parts.join("   ");
            let figure = GalaxyFigure {
                plateifu: &plateifu,
                lines: &residuals.lines,
                size: residuals.size,
                maps,
                stretch: dataset_stretch(&results),
                subtitle: &subtitle,
            };
            let png = galaxy_png(&figure)?;
            let path = output(&dir, out, &format!("galaxy-{plateifu}.png"))?;
            write_atomic(&path, &png)?;
            eprintln!("wrote {}", path.display());
        }
        Figure::Map {
            results: dir,
            colour,
            top,
            out,
        } => {
            let results = Results::open(&dir)?;
            let map = Projection::read(&dir)?.with_context(|| {
                format!(
                    "{} has no projection.csv: run `oddcube project {}` first",
                    dir.display(),
                    dir.display()
                )
            })?;
            let colour = colour.unwrap_or_else(|| results.manifest.rank_by.clone());
            let values = results.catalog.f64(&colour).with_context(|| {
                format!(
                    "no numeric column {colour:?}; score columns: {}",
                    score_columns(&results.catalog).join(", ")
                )
            })?;
            let ranks = results.catalog.u32("rank");
            let mut colour_by = Vec::with_capacity(map.plateifus.len());
            let mut rank_of_point = Vec::with_capacity(map.plateifus.len());
            for id in &map.plateifus {
                let row = results.catalog.row_of(id).with_context(|| {
                    format!("projection.csv lists {id}, which is not in the catalogue: re-run `oddcube project`")
                })?;
                colour_by.push(values.get(row).copied().unwrap_or(f64::NAN));
                rank_of_point.push(ranks.and_then(|r| r.get(row)).copied().unwrap_or(u32::MAX));
            }
            let mut highlight: Vec<usize> = (0..map.plateifus.len()).collect();
            highlight.sort_by_key(|&i| rank_of_point[i]);
            highlight.truncate(top);
            let label = score_label(&colour);
            let title = format!(
                "Latent map of {} galaxies ({}), coloured by {colour}",
                map.plateifus.len(),
                map.info.method.to_string().to_uppercase()
            );
            let png = map_png(&MapFigure {
                xy: &map.xy,
                plateifus: &map.plateifus,
                colour_by: &colour_by,
                colour_label: &label,
                highlight: &highlight,
                method: map.info.method,
                explained: map.info.pca_explained_variance_ratio,
                title: &title,
            })?;
            let path = output(&dir, out, "map.png")?;
            write_atomic(&path, &png)?;
            eprintln!("wrote {}", path.display());
        }
        Figure::Scores { results: dir, out } => {
            let results = Results::open(&dir)?;
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
            let path = output(&dir, out, "scores.png")?;
            write_atomic(&path, &png)?;
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
