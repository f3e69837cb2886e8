//! The local web explorer (`oddcube serve`): the state loaded from a RESULTS directory (and
//! optionally its dataset and model), the axum router with the JSON API under `/api/`, and the
//! embedded page assets (`web/`, plain JS + canvas, no build step).
//!
//! Security posture: the CLI binds 127.0.0.1 unless told otherwise; the router serves only the
//! embedded assets (looked up by exact name, never by filesystem path) and images it renders
//! itself; request bodies are capped at [`MAX_BODY_BYTES`].

pub mod api;
pub mod synthetic;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use oddcube_data::Cubes;
use oddcube_data::dataset::Dataset;
use oddcube_data::preprocess::Stretch;
use tower_http::limit::RequestBodyLimitLayer;

use crate::plot::anomaly::AnomalyView;
use crate::project::Projection;
use oddcube_score::anomaly_map::{ANOMALY_MAPS_FILE, AnomalyMaps};
use oddcube_score::feedback::{LabelStore, UserLabel};
use oddcube_score::relevance::{Features, RelevanceModel, RelevanceOptions};
use oddcube_score::results::{Residuals, Results};
use oddcube_score::{Error, Result};

/// Largest accepted request body (labels are a few dozen bytes).
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Reconstructs galaxies with a trained model (wired by the CLI when `--model` is given), so
/// galaxies without stored residuals still show a reconstruction. Input and output are cubes of
/// one galaxy; errors are messages for the page.
pub type Reconstructor = Box<dyn Fn(&Cubes) -> std::result::Result<Cubes, String> + Send + Sync>;

/// A table sort: column name and whether it is descending.
type SortKey = (String, bool);

/// Reconstructions kept in memory when a model is attached.
const RECON_CACHE: usize = 64;

/// The embedded page: `index.html`, `app.js`, `style.css`.
#[derive(rust_embed::RustEmbed)]
#[folder = "web/"]
struct Assets;

/// Everything the explorer serves, loaded once at start-up (labels change at run time).
pub struct AppState {
    /// The scored catalogue and latents.
    pub results: Results,
    residuals: Option<Residuals>,
    dataset: Option<Dataset>,
    /// Dataset tensor index of each catalogue row (by plate-ifu), when a dataset is attached.
    dataset_rows: Vec<Option<usize>>,
    projection: Option<Projection>,
    /// Catalogue row of each projection point.
    projection_rows: Vec<Option<usize>>,
    labels: Mutex<LabelStore>,
    /// The active-learning model, refitted on every label change (lock after `labels`).
    relevance: Mutex<RelevanceModel>,
    /// What loading the labels skipped or ignored (malformed lines, unknown plate-ifus).
    label_warnings: Vec<String>,
    /// The anomaly maps (`None`: results scored before the maps existed).
    anomaly_maps: Option<AnomalyMaps>,
    /// Index into `anomaly_maps` of each catalogue row (by plate-ifu).
    anomaly_rows: Vec<Option<usize>>,
    score_columns: Vec<String>,
    lines: Vec<String>,
    size: usize,
    stretch: Stretch,
    kinds: Option<Vec<Option<String>>>,
    search_keys: Vec<String>,
    reconstructor: Option<Reconstructor>,
    recon_cache: Mutex<HashMap<usize, Arc<Vec<f32>>>>,
    /// Row order per (sort column, descending), filled on first use.
    sort_cache: Mutex<HashMap<SortKey, Arc<Vec<usize>>>>,
}

/// One galaxy's maps as the pages need them (`[L, S, S]` each).
#[derive(Debug, Clone)]
pub struct GalaxyMaps {
    /// Normalised input flux.
    pub x: Vec<f32>,
    /// Weights (0 = masked).
    pub w: Vec<f32>,
    /// Reconstruction, when stored or computable.
    pub xhat: Option<Vec<f32>>,
    /// Residual in σ, when a reconstruction exists.
    pub residual: Option<Vec<f32>>,
    /// Where the maps came from: `residuals`, `model` or `dataset`.
    pub source: &'static str,
}

/// Where to load an explorer's state from.
#[derive(Debug, Clone, Default)]
pub struct ServeSources {
    /// The RESULTS directory (required).
    pub results: PathBuf,
    /// The dataset the results were scored on (for input maps of galaxies without stored residuals).
    pub dataset: Option<PathBuf>,
    /// A CSV with `plateifu` and `kind` columns (e.g. a simulated survey's `truth.csv`) for the
    /// kind filter.
    pub kinds: Option<PathBuf>,
}

fn data_error(path: &Path, e: impl std::fmt::Display) -> Error {
    oddcube_score::results::invalid(path, e.to_string())
}

impl AppState {
    /// Loads RESULTS (catalogue, latents, residuals, projection, labels) and the optional dataset.
    ///
    /// Errors name the file at fault: a missing or malformed artifact, a dataset whose lines or
    /// grid differ from the results.
    pub fn load(sources: &ServeSources, reconstructor: Option<Reconstructor>) -> Result<AppState> {
        let results = Results::open(&sources.results)?;
        let residuals = Residuals::open(&sources.results)?;
        let projection = Projection::read(&sources.results)?;
        let labels = LabelStore::open(&sources.results)?;
        // Absent in results scored before the maps existed: they serve without them.
        let anomaly_maps = AnomalyMaps::read(&sources.results)?;
        let dataset = match &sources.dataset {
            Some(dir) => Some(Dataset::open(dir).map_err(|e| data_error(dir, e))?),
            None => None,
        };
        let lines = results.manifest.lines.clone();
        let size = results.manifest.size;
        let plateifus = results
            .catalog
            .str("plateifu")
            .map(<[String]>::to_vec)
            .unwrap_or_default();
        let mut stretch = Stretch::None;
        let mut dataset_rows = vec![None; plateifus.len()];
        if let (Some(ds), Some(dir)) = (&dataset, &sources.dataset) {
            if ds.manifest.lines.lines != lines || ds.manifest.size != size {
                return Err(data_error(
                    dir,
                    format!(
                        "dataset has {} lines at {}², the results {} lines at {}²",
                        ds.manifest.lines.len(),
                        ds.manifest.size,
                        lines.len(),
                        size
                    ),
                ));
            }
            stretch = ds.manifest.normalisation.stretch;
            let index: HashMap<&str, usize> = ds
                .galaxies
                .iter()
                .enumerate()
                .map(|(i, g)| (g.plateifu.as_str(), i))
                .collect();
            dataset_rows = plateifus
                .iter()
                .map(|p| index.get(p.as_str()).copied())
                .collect();
        }
        if let Some(res) = &residuals
            && (res.lines != lines || res.size != size)
        {
            return Err(data_error(
                &sources.results.join(oddcube_score::results::RESIDUALS_FILE),
                "lines or grid differ from manifest.json",
            ));
        }
        if let Some(maps) = &anomaly_maps
            && (maps.lines != lines || maps.size != size)
        {
            return Err(data_error(
                &sources.results.join(ANOMALY_MAPS_FILE),
                "lines or grid differ from manifest.json",
            ));
        }
        let anomaly_rows = anomaly_maps
            .as_ref()
            .map(|maps| {
                let index: HashMap<&str, usize> = maps
                    .plateifus
                    .iter()
                    .enumerate()
                    .map(|(i, p)| (p.as_str(), i))
                    .collect();
                plateifus
                    .iter()
                    .map(|p| index.get(p.as_str()).copied())
                    .collect()
            })
            .unwrap_or_else(|| vec![None; plateifus.len()]);
        let row_index: HashMap<&str, usize> = plateifus
            .iter()
            .enumerate()
            .map(|(i, p)| (p.as_str(), i))
            .collect();
        let projection_rows = projection
            .as_ref()
            .map(|p| {
                p.plateifus
                    .iter()
                    .map(|id| row_index.get(id.as_str()).copied())
                    .collect()
            })
            .unwrap_or_default();
        let kinds = match (&sources.kinds, results.catalog.str("kind")) {
            (Some(path), _) => {
                let map = oddcube_score::truth::read_labels_csv(path, "plateifu", "kind")?;
                Some(oddcube_score::truth::align_labels(&plateifus, &map))
            }
            (None, Some(column)) => Some(column.iter().map(|k| Some(k.clone())).collect()),
            (None, None) => None,
        };
        let mangaids = results.catalog.str("mangaid");
        let search_keys = plateifus
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let mangaid = mangaids
                    .and_then(|m| m.get(i))
                    .map(String::as_str)
                    .unwrap_or("");
                format!("{} {}", p.to_lowercase(), mangaid.to_lowercase())
            })
            .collect();
        let score_columns = oddcube_score::evaluate::score_columns(&results.catalog);
        // Everything the live re-ranking needs is computed here once: the standardised
        // features and the kernel scale; a label change then costs O(n·labels).
        let rank_by = &results.manifest.rank_by;
        let ranking = results
            .catalog
            .f64(rank_by)
            .or_else(|| results.catalog.f64("score"))
            .map(<[f64]>::to_vec)
            .unwrap_or_else(|| vec![f64::NAN; plateifus.len()]);
        let features = Features::build(&results.catalog, &results.latents, results.latent_dim)?;
        let mut relevance = RelevanceModel::new(features, &ranking, RelevanceOptions::default())?;
        relevance.set_labels(&labels.labels_for(&plateifus))?;
        let mut label_warnings = labels.warnings().to_vec();
        let unknown = labels.unknown(&plateifus);
        if !unknown.is_empty() {
            label_warnings.push(format!(
                "{}: {} labelled plate-ifus are not in this catalogue: kept in the file, ignored ({})",
                labels.path().display(),
                unknown.len(),
                unknown.iter().take(5).copied().collect::<Vec<_>>().join(", ")
            ));
        }
        Ok(AppState {
            results,
            residuals,
            dataset,
            dataset_rows,
            projection,
            projection_rows,
            labels: Mutex::new(labels),
            relevance: Mutex::new(relevance),
            label_warnings,
            anomaly_maps,
            anomaly_rows,
            score_columns,
            lines,
            size,
            stretch,
            kinds,
            search_keys,
            reconstructor,
            recon_cache: Mutex::new(HashMap::new()),
            sort_cache: Mutex::new(HashMap::new()),
        })
    }

    /// What loading the labels skipped or ignored, one message each (for the CLI and the page).
    pub fn label_warnings(&self) -> &[String] {
        &self.label_warnings
    }

    /// Sets (or clears) a galaxy's label: appends it to `labels.csv` and re-ranks the live
    /// blend with every label now in the file (including other explorers' labels).
    pub fn set_label(
        &self,
        plateifu: &str,
        label: Option<UserLabel>,
    ) -> Result<Option<oddcube_score::feedback::LabelEntry>> {
        let mut store = self
            .labels
            .lock()
            .map_err(|_| Error::Empty("label store (poisoned lock)".to_string()))?;
        store.set(plateifu, label)?;
        let plateifus = self.results.catalog.str("plateifu").unwrap_or(&[]);
        let all = store.labels_for(plateifus);
        self.relevance
            .lock()
            .map_err(|_| Error::Empty("relevance model (poisoned lock)".to_string()))?
            .set_labels(&all)?;
        Ok(store.get(plateifu).cloned())
    }

    /// Runs `f` on the live relevance model.
    pub fn with_relevance<T>(&self, f: impl FnOnce(&RelevanceModel) -> T) -> Result<T> {
        let model = self
            .relevance
            .lock()
            .map_err(|_| Error::Empty("relevance model (poisoned lock)".to_string()))?;
        Ok(f(&model))
    }

    /// Number of galaxies in the catalogue.
    pub fn len(&self) -> usize {
        self.results.catalog.len()
    }

    /// True when the catalogue is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The maps of catalogue row `row`: stored residuals first, else the dataset (with a model
    /// reconstruction when a model is attached); `None` when neither has the galaxy.
    pub fn galaxy_maps(&self, row: usize) -> Option<GalaxyMaps> {
        let plateifu = self.results.catalog.str("plateifu")?.get(row)?;
        if let Some(maps) = self
            .residuals
            .as_ref()
            .and_then(|r| r.galaxy_by_plateifu(plateifu))
        {
            return Some(GalaxyMaps {
                x: maps.x.to_vec(),
                w: maps.w.to_vec(),
                xhat: Some(maps.xhat.to_vec()),
                residual: Some(maps.residual.to_vec()),
                source: "residuals",
            });
        }
        let dataset = self.dataset.as_ref()?;
        let ds_row = (*self.dataset_rows.get(row)?)?;
        let (x, w) = dataset.cubes.galaxy(ds_row);
        let xhat = self.reconstruct(row, x, w);
        let residual = xhat.as_ref().map(|xh| {
            x.iter()
                .zip(xh.iter())
                .zip(w)
                .map(|((&a, &b), &wt)| oddcube_score::results::sigma_residual(a, b, wt))
                .collect()
        });
        let source = if xhat.is_some() { "model" } else { "dataset" };
        Some(GalaxyMaps {
            x: x.to_vec(),
            w: w.to_vec(),
            xhat: xhat.map(|v| v.as_ref().clone()),
            residual,
            source,
        })
    }

    /// True when the RESULTS directory has anomaly maps at all (older results do not).
    pub fn has_anomaly_maps(&self) -> bool {
        self.anomaly_maps.is_some()
    }

    /// How many runs' maps each anomaly map is the consensus of (1: one model's own, or no
    /// maps at all).
    pub fn map_runs(&self) -> usize {
        self.anomaly_maps.as_ref().map_or(1, |m| m.runs)
    }

    /// The anomaly map of catalogue row `row` (`size²` values, NaN = unusable), or `None` when
    /// the results have no maps or none for this galaxy.
    pub fn anomaly_map(&self, row: usize) -> Option<&[f32]> {
        let maps = self.anomaly_maps.as_ref()?;
        let i = (*self.anomaly_rows.get(row)?)?;
        Some(maps.galaxy(i).0)
    }

    /// The grid's pixel scale (arcsec) of catalogue row `row` from the attached dataset, when
    /// the dataset has the galaxy and records its box.
    pub fn pixel_arcsec(&self, row: usize) -> Option<f64> {
        let dataset = self.dataset.as_ref()?;
        let galaxy = dataset.galaxies.get((*self.dataset_rows.get(row)?)?)?;
        let pixel = galaxy.pixel_arcsec(self.size);
        (pixel.is_finite() && pixel > 0.0).then_some(pixel)
    }

    /// Catalogue row `row`'s anomaly map with its stretch and region outline; `None` when
    /// there is no map for it.
    pub fn anomaly_view(&self, row: usize) -> Option<AnomalyView<'_>> {
        AnomalyView::new(
            self.anomaly_map(row)?,
            self.size,
            &self.results.catalog,
            row,
            self.pixel_arcsec(row),
        )
    }

    fn reconstruct(&self, row: usize, x: &[f32], w: &[f32]) -> Option<Arc<Vec<f32>>> {
        let model = self.reconstructor.as_ref()?;
        if let Some(hit) = self.recon_cache.lock().ok()?.get(&row) {
            return Some(Arc::clone(hit));
        }
        let cubes = Cubes {
            n: 1,
            n_lines: self.lines.len(),
            size: self.size,
            x: x.to_vec(),
            w: w.to_vec(),
        };
        let out = Arc::new(model(&cubes).ok()?.x);
        if out.len() != x.len() {
            return None;
        }
        let mut cache = self.recon_cache.lock().ok()?;
        if cache.len() >= RECON_CACHE {
            cache.clear();
        }
        cache.insert(row, Arc::clone(&out));
        Some(out)
    }
}

/// The explorer's router: page, assets, and the JSON API.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/assets/{name}", get(asset))
        .route("/api/summary", get(api::summary))
        .route("/api/galaxies", get(api::galaxies))
        .route("/api/galaxy/{plateifu}", get(api::galaxy))
        .route("/api/galaxy/{plateifu}/tile/{kind}/{line}", get(api::tile))
        .route("/api/map", get(api::map))
        .route("/api/labels", get(api::list_labels).post(api::set_label))
        .route("/api/next", get(api::next))
        .route("/api/colourbar/{name}", get(api::colourbar))
        .route("/api/{*rest}", get(api::not_found).post(api::not_found))
        .fallback(fallback)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .with_state(state)
}

/// Serves the router on `addr` until the process ends.
pub async fn serve(state: Arc<AppState>, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    axum::serve(listener, router(state)).await
}

fn embedded(name: &str) -> Response {
    // Only plain file names of the embedded folder: no separators, no dot-dot, no hidden files.
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        && !name.contains("..");
    let Some(file) = plain.then(|| Assets::get(name)).flatten() else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let mime = match name.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    };
    let mut response = file.data.into_owned().into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

async fn index() -> Response {
    embedded("index.html")
}

async fn asset(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    embedded(&name)
}

async fn fallback() -> Response {
    (StatusCode::NOT_FOUND, "not found").into_response()
}
