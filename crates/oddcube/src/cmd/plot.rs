//! `oddcube plot`: publication PNG figures from a RESULTS directory — one galaxy's maps,
//! reconstruction, residuals and BPT maps; the latent map; the score histograms. The figures are
//! drawn by [`oddcube_explore::plot::figures`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use oddcube_explore::plot::figures::{galaxy_figure, map_figure, scores_figure};
use oddcube_score::results::write_atomic;

use crate::cmd::compat;

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
        /// RESULTS directory written by `oddcube score`.
        #[arg(long, value_name = "DIR")]
        results: Option<PathBuf>,
        /// `RESULTS PLATEIFU`, or just `PLATEIFU` with --results.
        #[arg(value_name = "RESULTS", required = true)]
        first: Option<String>,
        /// The galaxy's plate-ifu.
        #[arg(value_name = "PLATEIFU")]
        plateifu: Option<String>,
        /// The dataset the results were scored from, for the BPT maps' flux stretch (default:
        /// the one the results' manifest records).
        #[arg(long, value_name = "DIR")]
        data: Option<PathBuf>,
        #[command(flatten)]
        out: OutFile,
    },
    /// The latent map (run `oddcube project` first), coloured by a score, top anomalies labelled.
    Map {
        #[command(flatten)]
        results: Results,
        /// Column that colours the points (default: the ranking score).
        #[arg(long)]
        colour: Option<String>,
        /// How many top-ranked galaxies to ring and label.
        #[arg(long, default_value_t = 10)]
        top: usize,
        #[command(flatten)]
        out: OutFile,
    },
    /// Histograms of every score column, FDR-flagged galaxies and the threshold marked.
    Scores {
        #[command(flatten)]
        results: Results,
        #[command(flatten)]
        out: OutFile,
    },
}

/// The RESULTS directory, as `--results DIR` or as the first word.
#[derive(clap::Args)]
struct Results {
    /// RESULTS directory written by `oddcube score`.
    #[arg(long, value_name = "DIR", required_unless_present = "results_word")]
    results: Option<PathBuf>,
    /// The same RESULTS directory given as the first word.
    #[arg(value_name = "RESULTS", conflicts_with = "results")]
    results_word: Option<PathBuf>,
}

/// The output PNG.
#[derive(clap::Args)]
struct OutFile {
    /// Output PNG (default RESULTS/figures/NAME.png, NAME as the figure's kind: galaxy-PLATEIFU,
    /// map or scores).
    #[arg(long, value_name = "FILE")]
    out_file: Option<PathBuf>,
    /// Deprecated spelling of --out-file.
    #[arg(long, hide = true, conflicts_with = "out_file")]
    out: Option<PathBuf>,
}

impl OutFile {
    fn get(self) -> Option<PathBuf> {
        compat::either(self.out_file, self.out, "plot --out", "--out-file")
    }
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

/// `name` with every character that could leave the figures directory or trouble a shell (path
/// separators, dots, anything but letters, digits, `-` and `_`) replaced by `_`: a PLATEIFU comes
/// from a FITS header and is not trusted as a path.
fn file_name_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Runs `oddcube plot`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (drawn, path) = match args.figure {
        Figure::Galaxy {
            results,
            first,
            plateifu,
            data,
            out,
        } => {
            let (results, plateifu) = compat::results_and_word(results, first, plateifu)?;
            let plateifu = plateifu.context("no galaxy: pass its PLATEIFU")?;
            (
                galaxy_figure(&results, &plateifu, data.as_deref())?,
                output(
                    &results,
                    out.get(),
                    &format!("galaxy-{}.png", file_name_safe(&plateifu)),
                )?,
            )
        }
        Figure::Map {
            results,
            colour,
            top,
            out,
        } => {
            let results = compat::results(results.results, results.results_word)?;
            (
                map_figure(&results, colour.as_deref(), top)?,
                output(&results, out.get(), "map.png")?,
            )
        }
        Figure::Scores { results, out } => {
            let results = compat::results(results.results, results.results_word)?;
            (
                scores_figure(&results)?,
                output(&results, out.get(), "scores.png")?,
            )
        }
    };
    if let Some(note) = &drawn.note {
        tracing::warn!("{note}");
    }
    write_atomic(&path, &drawn.png)?;
    eprintln!("wrote {}", path.display());
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figure_names_cannot_leave_the_figures_directory() {
        assert_eq!(file_name_safe("7815-3702"), "7815-3702");
        assert_eq!(file_name_safe("../../x"), "______x");
        assert_eq!(file_name_safe("a/b\\c d"), "a_b_c_d");
    }
}
