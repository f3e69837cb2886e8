//! `oddcube similar`: the galaxies nearest in latent space to a catalogue galaxy, a latent
//! vector from a file, or a new MAPS file encoded with the results' model.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use oddcube_data::cubes::Cubes;
use oddcube_data::dataset::Manifest as DatasetManifest;
use oddcube_data::maps::MapsFile;
use oddcube_data::preprocess::{PreprocessConfig, preprocess};
use oddcube_score::knn::Metric;
use oddcube_score::latents::Latents;
use oddcube_score::results::{CATALOG_PARQUET, Catalog, LATENTS_FILE, ResultsManifest};
use oddcube_score::similar::{OutputFormat, format_rows, read_vector, resolve_plateifu, similar};

use oddcube::scorer::ModelScorer;

/// Arguments of `oddcube similar`.
#[derive(clap::Args)]
pub struct Args {
    /// RESULTS directory written by `oddcube score`.
    pub results: PathBuf,
    /// Plate-ifu of the query galaxy (must be in the catalogue).
    #[arg(required_unless_present_any = ["vector", "maps"], conflicts_with_all = ["vector", "maps"])]
    pub plateifu: Option<String>,
    /// Query with a latent vector: a .npy file with one D-vector, or a text file of D numbers.
    #[arg(long, conflicts_with = "maps")]
    pub vector: Option<PathBuf>,
    /// Query with a MAPS file: preprocessed with the dataset's settings, encoded with the model.
    #[arg(long)]
    pub maps: Option<PathBuf>,
    /// Model directory for --maps (default: the results manifest's model_dir).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Dataset directory whose preprocessing settings --maps uses (default: the manifest's).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Number of neighbours.
    #[arg(short, long, default_value_t = 10)]
    pub k: usize,
    /// Latent metric: euclidean or cosine.
    #[arg(long, default_value = "euclidean")]
    pub metric: Metric,
    /// Output: table, csv or json.
    #[arg(long, default_value = "table")]
    pub format: OutputFormat,
    /// Device for --maps: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// Runs `oddcube similar`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let manifest = ResultsManifest::read(&args.results)?;
    let catalog = Catalog::read_parquet(&args.results.join(CATALOG_PARQUET))?;
    let latents = Latents::open(&args.results.join(LATENTS_FILE))?;
    anyhow::ensure!(
        latents.n() == catalog.len(),
        "{}: {} latent vectors for {} catalogue rows",
        args.results.display(),
        latents.n(),
        catalog.len()
    );
    let view = latents.view();
    let (query, exclude): (Vec<f32>, Option<usize>) = if let Some(plateifu) = &args.plateifu {
        let row = resolve_plateifu(&catalog, plateifu)
            .with_context(|| format!("in {}", args.results.display()))?;
        let vector = view.row(row).context("latent row out of range")?.to_vec();
        (vector, Some(row))
    } else if let Some(path) = &args.vector {
        (read_vector(path, latents.dim())?, None)
    } else if let Some(path) = &args.maps {
        let (vector, plateifu) = encode_maps(&args, &manifest, path)?;
        // The same galaxy already in the catalogue is not its own neighbour.
        (vector, catalog.row_of(&plateifu))
    } else {
        anyhow::bail!("give a PLATEIFU, --vector FILE or --maps FILE");
    };
    let rows = similar(&catalog, &view, &query, args.k, args.metric, exclude)?;
    print!("{}", format_rows(&rows, args.format));
    Ok(ExitCode::SUCCESS)
}

/// Preprocesses a MAPS file exactly as the scored dataset was, and encodes it. Returns the latent
/// vector and the file's plate-ifu.
fn encode_maps(
    args: &Args,
    manifest: &ResultsManifest,
    path: &Path,
) -> anyhow::Result<(Vec<f32>, String)> {
    let data_dir = args
        .data
        .clone()
        .unwrap_or_else(|| PathBuf::from(&manifest.dataset_dir));
    let manifest_path = data_dir.join(oddcube_data::dataset::MANIFEST_FILE);
    let bytes = std::fs::read(&manifest_path).with_context(|| {
        format!(
            "reading {} (use --data to point at the dataset)",
            manifest_path.display()
        )
    })?;
    let dataset: DatasetManifest = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a dataset manifest", manifest_path.display()))?;
    let maps = MapsFile::read(path).with_context(|| format!("reading {}", path.display()))?;
    let indices = maps
        .line_indices(&dataset.lines)
        .with_context(|| format!("{}", path.display()))?;
    let config = PreprocessConfig {
        size: dataset.size,
        mask_policy: dataset.mask_policy,
        stretch: dataset.normalisation.stretch,
    };
    let pre = preprocess(&maps, &indices, &config)
        .with_context(|| format!("preprocessing {}", path.display()))?;
    let model_dir = args
        .model
        .clone()
        .unwrap_or_else(|| PathBuf::from(&manifest.model_dir));
    let model = ModelScorer::load(&model_dir, &args.device, 1)?;
    let cubes = Cubes {
        n: 1,
        n_lines: dataset.lines.len(),
        size: dataset.size,
        x: pre.x,
        w: pre.w,
    };
    let z = model
        .model
        .encode(&cubes, 1)
        .with_context(|| format!("encoding {}", path.display()))?;
    anyhow::ensure!(
        z.len() == manifest.latent_dim,
        "model {} has latent dimension {}, the results have {}",
        model_dir.display(),
        z.len(),
        manifest.latent_dim
    );
    Ok((z, maps.meta.plateifu.clone()))
}
