//! `oddcube project`: the 2-D latent map of a RESULTS directory (UMAP or PCA), or placing new
//! galaxies on an existing map without refitting — [`oddcube_explore::project::project_results`]
//! and [`oddcube_explore::project::place_on_results`].

use std::path::PathBuf;
use std::process::ExitCode;

use oddcube_explore::project::{
    PROJECTION_CSV, ProjectOptions, ProjectionMethod, place_on_results, project_results,
};
use oddcube_score::results::write_atomic;

use crate::cmd::compat;

/// `--method`: how the map is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MethodArg {
    /// UMAP on the latent kNN graph, initialised from PCA.
    Umap,
    /// The first two principal components.
    Pca,
}

impl From<MethodArg> for ProjectionMethod {
    fn from(m: MethodArg) -> ProjectionMethod {
        match m {
            MethodArg::Umap => ProjectionMethod::Umap,
            MethodArg::Pca => ProjectionMethod::Pca,
        }
    }
}

/// Arguments of `oddcube project`.
#[derive(clap::Args)]
pub struct Args {
    /// RESULTS directory written by `oddcube score` (projection.csv/json are written into it).
    #[arg(long, value_name = "DIR", required_unless_present = "results_word")]
    pub results: Option<PathBuf>,
    /// The same RESULTS directory given as the first word (`oddcube project RESULTS`).
    #[arg(value_name = "RESULTS", conflicts_with = "results")]
    pub results_word: Option<PathBuf>,
    /// `umap` (neighbour graph + seeded layout from a PCA start) or `pca` (first two components);
    /// any letter case.
    #[arg(long, value_enum, ignore_case = true, default_value_t = MethodArg::Umap)]
    pub method: MethodArg,
    /// Seed of the layout: the same latents and seed give the same map.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// UMAP neighbourhood size (the galaxy itself included).
    #[arg(long, default_value_t = 15)]
    pub neighbours: usize,
    /// UMAP minimum distance between points in the map.
    #[arg(long, default_value_t = 0.1)]
    pub min_dist: f32,
    /// UMAP layout epochs (default: 500 up to 10 000 galaxies, else 200).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Place the galaxies of this latents .npy ([M, D] f32) on the existing map instead of
    /// refitting: each goes to the distance-weighted mean position of its nearest mapped galaxies.
    #[arg(long, value_name = "LATENTS.npy")]
    pub place: Option<PathBuf>,
    /// With --place: a text file with one id per line for the new galaxies (default new-0, new-1, ...).
    #[arg(long, requires = "place")]
    pub ids: Option<PathBuf>,
    /// With --place: mapped neighbours averaged per new galaxy.
    #[arg(long, default_value_t = 10, requires = "place")]
    pub place_k: usize,
    /// With --place: the output CSV (id,x,y); default RESULTS/placed.csv.
    #[arg(long, value_name = "FILE", requires = "place")]
    pub out_file: Option<PathBuf>,
    /// Deprecated spelling of --out-file.
    #[arg(long, hide = true, requires = "place", conflicts_with = "out_file")]
    pub out: Option<PathBuf>,
}

/// Runs `oddcube project`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let results = compat::results(args.results, args.results_word)?;
    let out_file = compat::either(args.out_file, args.out, "project --out", "--out-file");
    if let Some(new) = &args.place {
        let placed = place_on_results(&results, new, args.ids.as_deref(), args.place_k)?;
        let out = out_file.unwrap_or_else(|| results.join("placed.csv"));
        write_atomic(&out, placed.to_csv().as_bytes())?;
        eprintln!(
            "placed {} galaxies on the {} map → {}",
            placed.xy.len(),
            placed.method,
            out.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let options = ProjectOptions {
        method: args.method.into(),
        seed: args.seed,
        n_neighbors: args.neighbours,
        min_dist: args.min_dist,
        n_epochs: args.epochs,
        ..ProjectOptions::default()
    };
    let started = std::time::Instant::now();
    let map = project_results(&results, &options, &crate::ui::Bar::new(false))?;
    let knn = map.info.knn.as_ref().map(|k| match k.recall {
        Some(r) => format!(", neighbours: {} (recall {r:.3})", k.source),
        None => format!(", neighbours: {}", k.source),
    });
    eprintln!(
        "{} map of {} galaxies in {:.1} s{} → {}",
        map.info.method,
        map.plateifus.len(),
        started.elapsed().as_secs_f64(),
        knn.unwrap_or_default(),
        results.join(PROJECTION_CSV).display()
    );
    Ok(ExitCode::SUCCESS)
}
