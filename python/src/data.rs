//! The dataset artifact (its memory-mappable layout and its galaxy table), ingest and the
//! simulated survey.

use std::path::PathBuf;

use oddcube_data::Shard;
use oddcube_data::dataset::{cubes_layout, read_galaxy_records};
use oddcube_data::ingest::{IngestOptions, ingest as ingest_files};
use oddcube_data::simulate::{GalaxyKind, SurveyConfig, simulate_survey};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::{lib, value};
use crate::maps::{parse_lines, preprocess_config};
use crate::progress::PyProgress;

/// Where `x` and `w` lie in `dir/cubes.safetensors`: a dict with `path`, `shape`
/// (`[N, L, S, S]`), `x_offset` and `w_offset` (bytes; little-endian float32, C order), for
/// `numpy.memmap`.
#[pyfunction]
pub fn dataset_layout<'py>(py: Python<'py>, dir: PathBuf) -> PyResult<Bound<'py, PyDict>> {
    let layout = py.detach(|| cubes_layout(&dir)).map_err(lib)?;
    let out = PyDict::new(py);
    out.set_item("path", layout.path)?;
    out.set_item("shape", layout.shape.to_vec())?;
    out.set_item("x_offset", layout.x_offset)?;
    out.set_item("w_offset", layout.w_offset)?;
    Ok(out)
}

/// `dir/galaxies.parquet` as JSON: a list of records (the columns of `galaxies.csv`), plus the
/// dataset's `manifest.json` text.
#[pyfunction]
pub fn dataset_galaxies(py: Python<'_>, dir: PathBuf) -> PyResult<(String, String)> {
    py.detach(|| {
        let records = read_galaxy_records(&dir).map_err(lib)?;
        let json = serde_json::to_string(&records).map_err(lib)?;
        let manifest_path = dir.join(oddcube_data::dataset::MANIFEST_FILE);
        let manifest = std::fs::read_to_string(&manifest_path).map_err(|e| {
            crate::errors::OddcubeError::new_err(format!("{}: {e}", manifest_path.display()))
        })?;
        Ok((json, manifest))
    })
}

/// Ingests MAPS files, directories or glob patterns into the dataset directory `out`, as
/// `oddcube ingest` does. Returns a dict: out_dir, n_ingested, n_files, skipped (list of
/// (path, reason)), notices, manifest_hash.
#[pyfunction]
#[pyo3(signature = (inputs, out, lines, size, mask_policy, stretch, jobs, skip_critical, progress))]
#[allow(clippy::too_many_arguments)]
pub fn ingest<'py>(
    py: Python<'py>,
    inputs: Vec<String>,
    out: PathBuf,
    lines: &str,
    size: usize,
    mask_policy: &str,
    stretch: &str,
    jobs: usize,
    skip_critical: bool,
    progress: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let options = IngestOptions {
        lines: parse_lines(lines)?,
        preprocess: preprocess_config(size, mask_policy, stretch)?,
        shard: Shard::ALL,
        jobs,
        skip_critical,
        created_by: "python: oddcube.ingest".to_string(),
    };
    let reporter = PyProgress::new(progress);
    let report = py.detach(|| ingest_files(&inputs, &out, &options, &reporter));
    reporter.finish_call()?;
    let report = report.map_err(lib)?;
    let dict = PyDict::new(py);
    dict.set_item("out_dir", report.out_dir)?;
    dict.set_item("n_ingested", report.n_ingested)?;
    dict.set_item("n_files", report.n_files)?;
    let skipped: Vec<(String, String)> = report
        .skipped
        .into_iter()
        .map(|s| (s.path, s.reason))
        .collect();
    dict.set_item("skipped", skipped)?;
    dict.set_item("notices", report.notices)?;
    dict.set_item("manifest_hash", report.manifest_hash)?;
    Ok(dict)
}

/// Writes a simulated survey (DR17-format MAPS files and `truth.csv`) into `out`, as
/// `oddcube simulate` does; `anomaly_kinds` names the anomaly kinds to inject (None: the default mix).
/// Returns a dict: files, truth_path, kinds (name → count), seconds.
#[pyfunction]
#[pyo3(signature = (out, galaxies, seed, anomaly_fraction, anomaly_kinds, gzip_level, progress))]
#[allow(clippy::too_many_arguments)]
pub fn simulate<'py>(
    py: Python<'py>,
    out: PathBuf,
    galaxies: usize,
    seed: u64,
    anomaly_fraction: f64,
    anomaly_kinds: Option<Vec<String>>,
    gzip_level: u32,
    progress: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    if gzip_level > 9 {
        return Err(value(format!("gzip_level {gzip_level}: expected 0 to 9")));
    }
    let anomaly_kinds = match anomaly_kinds {
        Some(names) => names
            .iter()
            .map(|name| GalaxyKind::parse_anomaly(name).map_err(value))
            .collect::<PyResult<Vec<_>>>()?,
        None => SurveyConfig::default().anomaly_kinds,
    };
    let config = SurveyConfig {
        galaxies,
        seed,
        anomaly_fraction,
        anomaly_kinds,
        gzip_level,
    };
    let reporter = PyProgress::new(progress);
    let summary = py.detach(|| simulate_survey(&out, &config, &reporter));
    reporter.finish_call()?;
    let summary = summary.map_err(lib)?;
    let dict = PyDict::new(py);
    dict.set_item("files", summary.files)?;
    dict.set_item("truth_path", summary.truth_path)?;
    let kinds = PyDict::new(py);
    for (kind, n) in &summary.kinds {
        kinds.set_item(kind.name(), n)?;
    }
    dict.set_item("kinds", kinds)?;
    dict.set_item("seconds", summary.seconds)?;
    Ok(dict)
}
