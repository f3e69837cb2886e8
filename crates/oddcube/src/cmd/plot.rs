//! `oddcube plot`: publication PNG figures from a RESULTS directory — one galaxy's maps,
//! reconstruction, residuals and BPT maps; the latent map; the score histograms. The figures are
//! drawn by [`oddcube_explore::plot::figures`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use oddcube_explore::plot::figures::{galaxy_figure, map_figure, scores_figure};
use oddcube_score::results::write_atomic;

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
        /// The dataset the results were scored from, for the BPT maps' flux stretch (default:
        /// the one the results' manifest records).
        #[arg(long)]
        data: Option<PathBuf>,
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

/// The output path: `out`, else `results/figures/name`; its directory is created.
fn output(results: &Path, out: Option<PathBuf>, name: &str) -> anyhow::Result<PathBuf> {
    let path = out.unwrap_or_else(|| results.join("figures").join(name));
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    Ok(path)
}

/// Runs `oddcube plot`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (drawn, path) = match args.figure {
        Figure::Galaxy {
            results,
            plateifu,
            data,
            out,
        } => (
            galaxy_figure(&results, &plateifu, data.as_deref())?,
            output(&results, out, &format!("galaxy-{plateifu}.png"))?,
        ),
        Figure::Map {
            results,
            colour,
            top,
            out,
        } => (
            map_figure(&results, colour.as_deref(), top)?,
            output(&results, out, "map.png")?,
        ),
        Figure::Scores { results, out } => (
            scores_figure(&results)?,
            output(&results, out, "scores.png")?,
        ),
    };
    if let Some(note) = &drawn.note {
        tracing::warn!("{note}");
    }
    write_atomic(&path, &drawn.png)?;
    eprintln!("wrote {}", path.display());
    Ok(ExitCode::SUCCESS)
}
