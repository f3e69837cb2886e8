//! `oddcube similar`: the galaxies nearest in latent space to a catalogue galaxy (by plate-ifu,
//! MaNGA-ID or file name, [`oddcube_score::similar::resolve_galaxy`]), a latent
//! vector from a file, or a new MAPS file encoded with the results' model. The search is
//! [`oddcube_score::similar::search`].

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use oddcube_score::provenance::model_dir;
use oddcube_score::results::ResultsManifest;
use oddcube_score::similar::{Query, format_rows, search};

use oddcube::scorer::ModelScorer;

use crate::cmd::choices::{DeviceName, LatentMetric, SimilarFormat};
use crate::cmd::compat;

/// Arguments of `oddcube similar`.
#[derive(clap::Args)]
pub struct Args {
    /// RESULTS directory written by `oddcube score`.
    #[arg(long, value_name = "DIR")]
    pub results: Option<PathBuf>,
    /// `RESULTS GALAXY`, or just `GALAXY` with --results.
    #[arg(value_name = "RESULTS")]
    pub first: Option<String>,
    /// The query galaxy, one of the catalogue's: a plate-ifu (7815-3702), a MaNGA-ID (1-109997)
    /// or a MAPS file name or prefix (manga-7815-3702-MAPS-….fits.gz, manga-7815-3702).
    #[arg(value_name = "GALAXY")]
    pub galaxy: Option<String>,
    /// Query with a latent vector: a .npy file with one D-vector, or a text file of D numbers.
    #[arg(long, conflicts_with = "maps")]
    pub vector: Option<PathBuf>,
    /// Query with a MAPS file: preprocessed with the dataset's settings, encoded with the model.
    #[arg(long)]
    pub maps: Option<PathBuf>,
    /// Model directory for --maps (default: the results manifest's model_dir).
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// Dataset directory whose preprocessing settings --maps uses (default: the manifest's).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Number of neighbours.
    #[arg(short, long, default_value_t = 10)]
    pub k: usize,
    /// Latent metric (`l2` is euclidean; any letter case).
    #[arg(long, value_enum, ignore_case = true, default_value_t = LatentMetric::Euclidean)]
    pub metric: LatentMetric,
    /// Output format.
    #[arg(long, value_enum, default_value_t = SimilarFormat::Table)]
    pub format: SimilarFormat,
    /// Device for --maps: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceName,
}

/// Runs `oddcube similar`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (results, galaxy) = compat::results_and_word(args.results, args.first, args.galaxy)?;
    let queries = [galaxy.is_some(), args.vector.is_some(), args.maps.is_some()];
    anyhow::ensure!(
        queries.iter().filter(|&&q| q).count() == 1,
        "give one query: a GALAXY, --vector FILE or --maps FILE"
    );
    let dir = &results;
    let in_dir = || format!("in {}", dir.display());
    let rows = if let Some(galaxy) = &galaxy {
        search(dir, Query::Galaxy(galaxy), args.k, args.metric.into()).with_context(in_dir)?
    } else if let Some(path) = &args.vector {
        search(dir, Query::Vector(path), args.k, args.metric.into()).with_context(in_dir)?
    } else if let Some(path) = &args.maps {
        let manifest = ResultsManifest::read(dir)?;
        let model = ModelScorer::load(
            &model_dir(&manifest, args.model.as_deref()),
            &args.device.to_string(),
            1,
        )?;
        let query = Query::Maps {
            path,
            model: &model,
            data: args.data.as_deref(),
        };
        search(dir, query, args.k, args.metric.into()).with_context(in_dir)?
    } else {
        anyhow::bail!("give a GALAXY, --vector FILE or --maps FILE");
    };
    print!("{}", format_rows(&rows, args.format.into()));
    Ok(ExitCode::SUCCESS)
}
