//! `oddcube project`: the 2-D latent map of a RESULTS directory (UMAP or PCA), or placing new
//! galaxies on an existing map without refitting.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use oddcube_explore::project::{ProjectOptions, Projection, ProjectionMethod, place, project};
use oddcube_score::LatentView;
use oddcube_score::latents::Latents;
use oddcube_score::results::{Results, write_atomic};

/// Arguments of `oddcube project`.
#[derive(clap::Args)]
pub struct Args {
    /// RESULTS directory written by `oddcube score` (projection.csv/json are written into it).
    pub results: PathBuf,
    /// `umap` (neighbour graph + seeded layout from a PCA start) or `pca` (first two components).
    #[arg(long, default_value = "umap")]
    pub method: ProjectionMethod,
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
    /// With --place: output CSV (id,x,y); default RESULTS/placed.csv.
    #[arg(long, requires = "place")]
    pub out: Option<PathBuf>,
}

/// Runs `oddcube project`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let results = Results::open(&args.results)?;
    let n = results.catalog.len();
    let view = LatentView::new(&results.latents, n, results.latent_dim).with_context(|| {
        format!(
            "{}: latents do not match the catalogue",
            args.results.display()
        )
    })?;
    if let Some(new_path) = &args.place {
        let map = Projection::read(&args.results)?.with_context(|| {
            format!(
                "{} has no projection.csv yet: run `oddcube project {}` first",
                args.results.display(),
                args.results.display()
            )
        })?;
        let plateifus = results
            .catalog
            .str("plateifu")
            .context("catalogue has no plateifu column")?;
        anyhow::ensure!(
            map.plateifus.as_slice() == plateifus,
            "{}: projection.csv does not list the catalogue's galaxies in order; re-run `oddcube project`",
            args.results.display()
        );
        let new = Latents::read(new_path)?;
        let ids: Vec<String> = match &args.ids {
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect(),
            None => (0..new.n()).map(|i| format!("new-{i}")).collect(),
        };
        anyhow::ensure!(
            ids.len() == new.n(),
            "{} ids for {} new latent vectors",
            ids.len(),
            new.n()
        );
        let placed = place(&view, &map.xy, &new.view(), args.place_k)?;
        let mut csv = String::from("id,x,y\n");
        for (id, p) in ids.iter().zip(&placed) {
            csv.push_str(&format!("{id},{},{}\n", p[0], p[1]));
        }
        let out = args
            .out
            .clone()
            .unwrap_or_else(|| args.results.join("placed.csv"));
        write_atomic(&out, csv.as_bytes())?;
        eprintln!(
            "placed {} galaxies on the {} map → {}",
            placed.len(),
            map.info.method,
            out.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let options = ProjectOptions {
        method: args.method,
        seed: args.seed,
        n_neighbors: args.neighbours,
        min_dist: args.min_dist,
        n_epochs: args.epochs,
        ..ProjectOptions::default()
    };
    let plateifus = results
        .catalog
        .str("plateifu")
        .context("catalogue has no plateifu column")?
        .to_vec();
    let bar = crate::ui::Bar::new(false);
    let started = std::time::Instant::now();
    let map = project(&view, plateifus, &options, &bar)?;
    map.write(&args.results)?;
    let knn = map.info.knn.as_ref().map(|k| match k.recall {
        Some(r) => format!(", neighbours: {} (recall {r:.3})", k.source),
        None => format!(", neighbours: {}", k.source),
    });
    eprintln!(
        "{} map of {} galaxies in {:.1} s{} → {}",
        map.info.method,
        n,
        started.elapsed().as_secs_f64(),
        knn.unwrap_or_default(),
        args.results
            .join(oddcube_explore::project::PROJECTION_CSV)
            .display()
    );
    Ok(ExitCode::SUCCESS)
}
