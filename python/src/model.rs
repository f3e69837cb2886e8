//! A trained model (`oddcube.Model`): encoding, reconstruction and scoring; and training
//! (`oddcube.train`).

use std::path::{Path, PathBuf};

use numpy::PyReadonlyArrayDyn;
use oddcube::scorer::{ModelScorer, load_members, member_refs, model_hash};
use oddcube::threads::on_thread_pool;
use oddcube::training::train_and_calibrate;
use oddcube_data::dataset::{Dataset, FORMAT, GalaxyRecord, Manifest, Normalisation};
use oddcube_data::preprocess::{REFERENCE_LINE, SCALE_PERCENTILE, Stretch};
use oddcube_data::{Cubes, LineSet, MaskPolicy, Shard};
use oddcube_model::config::CellKernelKind;
use oddcube_model::plan::{RunChoices, describe_report};
use oddcube_model::{LossMode, ModelKind, Preset};
use oddcube_score::knn::Metric;
use oddcube_score::pipeline::{ScoreJob, compute_scores, write_scores};
use oddcube_score::score::{PValueMethod, RankBy, ResidualSelection, ScoreSettings};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::convert::{array, catalog, cubes};
use crate::errors::{lib, parse, to_py, value};
use crate::progress::PyProgress;

/// A trained model directory loaded on a device.
#[pyclass(frozen, module = "oddcube._oddcube")]
pub struct RawModel {
    scorer: ModelScorer,
    /// The other members of its restart ensemble (empty for a single run).
    members: Vec<(u64, ModelScorer)>,
    dir: PathBuf,
}

/// The scoring settings of `oddcube score`'s options.
fn settings(
    rank_by: &str,
    pvalues: &str,
    fdr: f64,
    knn_k: usize,
    metric: &str,
) -> PyResult<ScoreSettings> {
    if knn_k == 0 {
        return Err(value("knn_k must be at least 1"));
    }
    Ok(ScoreSettings {
        rank_by: parse::<RankBy>("rank_by", rank_by)?,
        pvalues: parse::<PValueMethod>("pvalues", pvalues)?,
        fdr,
        knn_k,
        metric: parse::<Metric>("metric", metric)?,
    })
}

impl RawModel {
    fn lines(&self) -> &[String] {
        &self.scorer.model.config().data.lines
    }

    fn size(&self) -> usize {
        self.scorer.model.config().arch.size
    }

    fn input(
        &self,
        x: &PyReadonlyArrayDyn<'_, f32>,
        w: &PyReadonlyArrayDyn<'_, f32>,
    ) -> PyResult<Cubes> {
        cubes(x, w, self.scorer.model.config().arch.n_lines, self.size())
    }

    /// Scores `dataset` (read from `data_dir`, or in memory) and answers what the Python side
    /// turns into a DataFrame: catalogue columns, the manifest as JSON, the latents.
    #[allow(clippy::too_many_arguments)]
    fn run<'py>(
        &self,
        py: Python<'py>,
        dataset: &Dataset,
        data_dir: &Path,
        out: Option<PathBuf>,
        settings: ScoreSettings,
        residuals: ResidualSelection,
        labels: Option<PathBuf>,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<(Bound<'py, PyList>, String, Bound<'py, PyAny>)> {
        // Another dataset with the same lines may be scored (the CLI only notes it).
        self.scorer
            .check_dataset(&self.dir, dataset)
            .map_err(to_py)?;
        let reporter = PyProgress::new(progress);
        let model_hash = model_hash(&self.dir).map_err(to_py)?;
        let result = py.detach(|| {
            on_thread_pool(|| {
                // Without `out` nothing is written and `job.out` is never read.
                let scratch = std::env::temp_dir();
                let members = member_refs(&self.members);
                let job = ScoreJob {
                    model: &self.scorer,
                    members: &members,
                    model_dir: &self.dir,
                    model_hash,
                    dataset,
                    dataset_dir: data_dir,
                    out: out.as_deref().unwrap_or(&scratch),
                    shard: Shard::ALL,
                    settings,
                    residuals,
                    labels: labels.as_deref(),
                    created_by: "python: oddcube.Model.score".to_string(),
                };
                let computed = compute_scores(&job, &reporter)?;
                if out.is_some() {
                    write_scores(&job, &computed, &reporter)?;
                }
                Ok(computed)
            })
        });
        reporter.finish_call()?;
        let computed = result.map_err(to_py)?;
        let manifest_json = serde_json::to_string(&computed.manifest).map_err(lib)?;
        let dim = computed.manifest.latent_dim;
        let latents = computed.scored.latents;
        let n = latents.len() / dim.max(1);
        Ok((
            catalog(py, &computed.scored.catalog)?,
            manifest_json,
            array(py, latents, &[n, dim])?,
        ))
    }
}

#[pymethods]
impl RawModel {
    /// Loads the model directory `dir` (written by `oddcube train`) on `device`.
    #[new]
    #[pyo3(signature = (dir, device, batch))]
    fn new(py: Python<'_>, dir: PathBuf, device: &str, batch: usize) -> PyResult<Self> {
        let (scorer, members) = py
            .detach(|| {
                let scorer = ModelScorer::load(&dir, device, batch)?;
                let members = load_members(&dir, device, batch)?;
                Ok::<_, anyhow::Error>((scorer, members))
            })
            .map_err(to_py)?;
        Ok(RawModel {
            scorer,
            members,
            dir,
        })
    }

    /// Latent dimension D.
    #[getter]
    fn latent_dim(&self) -> usize {
        self.scorer.model.latent_dim()
    }

    /// The lines the model reads, in order.
    #[getter(lines)]
    fn py_lines(&self) -> Vec<String> {
        self.lines().to_vec()
    }

    /// Number of lines L the network reads.
    #[getter]
    fn n_lines(&self) -> usize {
        self.scorer.model.config().arch.n_lines
    }

    /// Grid side S.
    #[getter(size)]
    fn py_size(&self) -> usize {
        self.size()
    }

    /// `ae` or `vae`.
    #[getter]
    fn kind(&self) -> &'static str {
        match self.scorer.model.config().arch.kind {
            ModelKind::Ae => "ae",
            ModelKind::Vae => "vae",
        }
    }

    /// The model's `config.toml`.
    fn config_toml(&self) -> PyResult<String> {
        self.scorer.model.config().to_toml().map_err(lib)
    }

    /// Latent vectors `[N, D]` of `x`, `w` (`[N, L, S, S]` float32).
    fn encode<'py>(
        &self,
        py: Python<'py>,
        x: PyReadonlyArrayDyn<'py, f32>,
        w: PyReadonlyArrayDyn<'py, f32>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let input = self.input(&x, &w)?;
        let n = input.n;
        let z = py
            .detach(|| self.scorer.model.encode(&input, self.scorer.batch))
            .map_err(lib)?;
        array(py, z, &[n, self.latent_dim()])
    }

    /// Reconstructions `[N, L, S, S]` of `x`, `w`.
    fn reconstruct<'py>(
        &self,
        py: Python<'py>,
        x: PyReadonlyArrayDyn<'py, f32>,
        w: PyReadonlyArrayDyn<'py, f32>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let input = self.input(&x, &w)?;
        let shape = input.shape();
        let xhat = py
            .detach(|| self.scorer.model.reconstruct(&input, self.scorer.batch))
            .map_err(lib)?;
        array(py, xhat.x, &shape)
    }

    /// Scores the dataset directory `data` as `oddcube score` does; with `out`, writes the
    /// RESULTS directory too. Returns (catalogue columns, manifest JSON, latents).
    #[pyo3(signature = (data, out, rank_by, pvalues, fdr, knn_k, metric, residuals, labels, progress))]
    #[allow(clippy::too_many_arguments)]
    fn score_dataset<'py>(
        &self,
        py: Python<'py>,
        data: PathBuf,
        out: Option<PathBuf>,
        rank_by: &str,
        pvalues: &str,
        fdr: f64,
        knn_k: usize,
        metric: &str,
        residuals: &str,
        labels: Option<PathBuf>,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<(Bound<'py, PyList>, String, Bound<'py, PyAny>)> {
        let settings = settings(rank_by, pvalues, fdr, knn_k, metric)?;
        let residuals = parse::<ResidualSelection>("residuals", residuals)?;
        let dataset = py.detach(|| Dataset::open(&data)).map_err(lib)?;
        self.run(
            py, &dataset, &data, out, settings, residuals, labels, progress,
        )
    }

    /// Scores arrays `x`, `w` (`[N, L, S, S]`, preprocessed as `ingest` does) named
    /// `plateifus`. Galaxy metadata the arrays lack takes the defaults a dataset record has when
    /// unknown: 0.5″ grid pixels, the default PSF, no quality bits.
    #[pyo3(signature = (x, w, plateifus, rank_by, pvalues, fdr, knn_k, metric, progress))]
    #[allow(clippy::too_many_arguments)]
    fn score_arrays<'py>(
        &self,
        py: Python<'py>,
        x: PyReadonlyArrayDyn<'py, f32>,
        w: PyReadonlyArrayDyn<'py, f32>,
        plateifus: Vec<String>,
        rank_by: &str,
        pvalues: &str,
        fdr: f64,
        knn_k: usize,
        metric: &str,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<(Bound<'py, PyList>, String, Bound<'py, PyAny>)> {
        let settings = settings(rank_by, pvalues, fdr, knn_k, metric)?;
        let input = self.input(&x, &w)?;
        if plateifus.len() != input.n {
            return Err(value(format!(
                "{} plateifus for {} galaxies",
                plateifus.len(),
                input.n
            )));
        }
        let lines = LineSet::parse(&self.lines().join(",")).map_err(lib)?;
        let size = self.size();
        let galaxies: Vec<GalaxyRecord> = plateifus
            .into_iter()
            .map(|plateifu| GalaxyRecord {
                plateifu,
                ra: f64::NAN,
                dec: f64::NAN,
                z: f64::NAN,
                psf_fwhm: f64::NAN,
                grid_size: size as u32,
                scale: f64::NAN,
                source: "python arrays".to_string(),
                ..GalaxyRecord::default()
            })
            .collect();
        let reference = if lines.position(REFERENCE_LINE).is_some() {
            REFERENCE_LINE
        } else {
            "sum-of-lines"
        };
        let manifest = Manifest {
            format: FORMAT.to_string(),
            oddcube_version: env!("CARGO_PKG_VERSION").to_string(),
            lines,
            size,
            n_galaxies: input.n,
            mask_policy: MaskPolicy::Strict,
            normalisation: Normalisation {
                method: "percentile-of-reference".to_string(),
                reference: reference.to_string(),
                percentile: SCALE_PERCENTILE,
                stretch: Stretch::None,
            },
            shard: Shard::ALL,
            sources: Vec::new(),
            n_skipped: 0,
            created_by: "python: oddcube.Model.score (arrays)".to_string(),
        };
        let dataset = Dataset::from_parts(PathBuf::from("<arrays>"), input, galaxies, manifest)
            .map_err(lib)?;
        self.run(
            py,
            &dataset,
            Path::new("<arrays>"),
            None,
            settings,
            ResidualSelection::None,
            None,
            progress,
        )
    }
}

/// Trains a model on the dataset directory `data` into `out` and fits its null, as
/// `oddcube train` does. Options left `None` take the preset's defaults. Returns a dict:
/// model_dir, summary (the CLI's epoch table), n_train, n_val, notes, null_fitted_on,
/// null_n_calibration, null_validation_shift (the validation galaxies' median fused score minus
/// the training galaxies', σ; None when not measured) and null_warning (None when all is well).
#[pyfunction]
#[pyo3(signature = (data, out, preset, arch, epochs, batch, lr, latent, beta, seed, val_fraction, loss, patience, noise, augment, resume, restarts, member_margin, device, kernel, progress))]
#[allow(clippy::too_many_arguments)]
pub fn train<'py>(
    py: Python<'py>,
    data: PathBuf,
    out: PathBuf,
    preset: &str,
    arch: &str,
    epochs: Option<usize>,
    batch: Option<usize>,
    lr: Option<f64>,
    latent: Option<usize>,
    beta: Option<f64>,
    seed: Option<u64>,
    val_fraction: Option<f64>,
    loss: Option<&str>,
    patience: Option<usize>,
    noise: bool,
    augment: bool,
    resume: bool,
    restarts: usize,
    member_margin: f64,
    device: &str,
    kernel: &str,
    progress: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    if restarts == 0 {
        return Err(value("restarts=0: expected at least 1"));
    }
    let kind = match arch {
        "ae" => ModelKind::Ae,
        "vae" => ModelKind::Vae,
        other => return Err(value(format!("arch={other:?}: expected 'ae' or 'vae'"))),
    };
    let choices = RunChoices {
        preset: parse::<Preset>("preset", preset)?,
        kind,
        kernel: parse::<CellKernelKind>("kernel", kernel)?,
        epochs,
        batch,
        lr,
        latent,
        beta,
        seed,
        val_fraction,
        loss: loss.map(|l| parse::<LossMode>("loss", l)).transpose()?,
        patience,
        noise,
        augment,
    };
    let reporter = PyProgress::new(progress);
    let trained = py.detach(|| {
        on_thread_pool(|| {
            let dataset = Dataset::open(&data).map_err(anyhow::Error::new)?;
            train_and_calibrate(
                &dataset,
                &choices,
                &out,
                resume,
                restarts,
                member_margin,
                device,
                &reporter,
                &|_| {},
            )
        })
    });
    reporter.finish_call()?;
    let trained = trained.map_err(to_py)?;
    let dict = PyDict::new(py);
    dict.set_item("model_dir", &out)?;
    dict.set_item("summary", describe_report(&trained.report, &out))?;
    dict.set_item("n_train", trained.report.n_train)?;
    dict.set_item("n_val", trained.report.n_val)?;
    dict.set_item("notes", trained.plan.notes)?;
    let restarts: Vec<(u64, f64, usize, f64, bool, bool)> = trained
        .restarts
        .iter()
        .map(|r| {
            (
                r.seed,
                r.best_loss,
                r.best_epoch,
                r.relative_to_baseline,
                r.kept,
                r.member,
            )
        })
        .collect();
    dict.set_item("restarts", restarts)?;
    let null = &trained.calibration.null.calibration;
    dict.set_item("null_fitted_on", null.fitted_on.clone())?;
    dict.set_item("null_n_calibration", null.n_calibration)?;
    dict.set_item("null_validation_shift", null.validation_shift)?;
    dict.set_item("null_warning", trained.calibration.warning.clone())?;
    let ensemble_seeds: Vec<u64> = trained
        .calibration
        .ensemble
        .as_ref()
        .map_or_else(Vec::new, |e| e.seeds());
    dict.set_item("ensemble_seeds", ensemble_seeds)?;
    Ok(dict)
}
