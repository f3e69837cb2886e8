//! A RESULTS directory (`oddcube.Results`): catalogue, latents, latent neighbours, residual
//! maps and anomaly maps.

use std::path::PathBuf;

use numpy::{PyArrayMethods, PyReadonlyArray1};
use oddcube_score::anomaly_map::AnomalyMaps;
use oddcube_score::knn::Metric;
use oddcube_score::results::{Residuals, Results};
use oddcube_score::similar::{Query, SimilarRow, resolve_galaxy, search};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::convert::{array, catalog};
use crate::errors::{OddcubeError, lib, parse, value};

/// An opened RESULTS directory.
#[pyclass(frozen, module = "oddcube._oddcube")]
pub struct RawResults {
    results: Results,
}

/// Neighbour rows as `[(column, values)]`, the columns of `oddcube similar --format csv`.
fn rows<'py>(py: Python<'py>, rows: &[SimilarRow]) -> PyResult<Bound<'py, PyList>> {
    let out = PyList::empty(py);
    let positions: Vec<u64> = rows.iter().map(|r| r.position as u64).collect();
    let names: Vec<&str> = rows.iter().map(|r| r.plateifu.as_str()).collect();
    let distances: Vec<f32> = rows.iter().map(|r| r.distance).collect();
    let ranks: Vec<u32> = rows.iter().map(|r| r.rank).collect();
    let chi2: Vec<f64> = rows.iter().map(|r| r.chi2).collect();
    out.append(("position", array(py, positions, &[rows.len()])?))?;
    out.append(("plateifu", PyList::new(py, names)?))?;
    out.append(("distance", array(py, distances, &[rows.len()])?))?;
    out.append(("rank", array(py, ranks, &[rows.len()])?))?;
    out.append(("chi2", array(py, chi2, &[rows.len()])?))?;
    Ok(out)
}

impl RawResults {
    /// `oddcube similar`'s search of this directory for the query `query()` makes, as neighbour
    /// rows. (A [`Query`] may hold a model, which cannot cross threads; the closure can.)
    fn neighbours<'py, 'q>(
        &self,
        py: Python<'py>,
        query: impl FnOnce() -> Query<'q> + Send,
        k: usize,
        metric: &str,
    ) -> PyResult<Bound<'py, PyList>> {
        let metric = parse::<Metric>("metric", metric)?;
        let dir = &self.results.dir;
        let found = py
            .detach(move || search(dir, query(), k, metric))
            .map_err(lib)?;
        rows(py, &found)
    }

    /// The catalogue row of `galaxy` (plate-ifu, MaNGA-ID or file name), with suggestions
    /// when unknown.
    fn plateifu(&self, galaxy: &str) -> PyResult<String> {
        let row = resolve_galaxy(&self.results.catalog, galaxy).map_err(lib)?;
        let names = self.results.catalog.str("plateifu").unwrap_or_default();
        Ok(names[row].clone())
    }
}

#[pymethods]
impl RawResults {
    /// Opens the RESULTS directory `dir` written by `oddcube score` (or `merge`).
    #[new]
    fn new(py: Python<'_>, dir: PathBuf) -> PyResult<Self> {
        let results = py.detach(|| Results::open(&dir)).map_err(lib)?;
        Ok(RawResults { results })
    }

    /// The catalogue as `[(column, values)]`.
    fn catalog<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        catalog(py, &self.results.catalog)
    }

    /// `manifest.json` as JSON text.
    fn manifest_json(&self) -> PyResult<String> {
        serde_json::to_string(&self.results.manifest).map_err(lib)
    }

    /// The latents `[N, D]`, catalogue order.
    fn latents<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let n = self.results.catalog.len();
        array(
            py,
            self.results.latents.clone(),
            &[n, self.results.latent_dim],
        )
    }

    /// The `k` galaxies nearest to catalogue galaxy `galaxy` (not itself), as
    /// `oddcube similar` finds them.
    fn similar_galaxy<'py>(
        &self,
        py: Python<'py>,
        galaxy: &str,
        k: usize,
        metric: &str,
    ) -> PyResult<Bound<'py, PyList>> {
        self.neighbours(py, || Query::Galaxy(galaxy), k, metric)
    }

    /// The `k` galaxies nearest to the latent vector `vector` (length D).
    fn similar_vector<'py>(
        &self,
        py: Python<'py>,
        vector: PyReadonlyArray1<'py, f32>,
        k: usize,
        metric: &str,
    ) -> PyResult<Bound<'py, PyList>> {
        let vector = vector
            .to_vec()
            .map_err(|_| value("vector must be contiguous"))?;
        self.neighbours(py, || Query::Latent(&vector), k, metric)
    }

    /// The stored residual maps of `galaxy`: a dict of `x`, `xhat`, `w`, `residual`
    /// (`[L, S, S]`; residual = (x − x̂)·√w) and `lines`. Raises when the run did not store
    /// this galaxy's maps (`score --residuals all` stores every galaxy's).
    fn residuals<'py>(&self, py: Python<'py>, galaxy: &str) -> PyResult<Bound<'py, PyDict>> {
        let plateifu = self.plateifu(galaxy)?;
        let dir = &self.results.dir;
        let stored = py.detach(|| Residuals::open(dir)).map_err(lib)?.ok_or_else(|| {
            OddcubeError::new_err(format!(
                "{}: no residuals.safetensors (the run stored none; re-score with --residuals top:K or all)",
                dir.display()
            ))
        })?;
        let maps = stored.galaxy_by_plateifu(&plateifu).ok_or_else(|| {
            OddcubeError::new_err(format!(
                "{}: residual maps of {plateifu} were not stored (this run kept {}; re-score with --residuals all)",
                dir.display(),
                self.results.manifest.residuals
            ))
        })?;
        let shape = [stored.lines.len(), stored.size, stored.size];
        let dict = PyDict::new(py);
        dict.set_item("x", array(py, maps.x.to_vec(), &shape)?)?;
        dict.set_item("xhat", array(py, maps.xhat.to_vec(), &shape)?)?;
        dict.set_item("w", array(py, maps.w.to_vec(), &shape)?)?;
        dict.set_item("residual", array(py, maps.residual.to_vec(), &shape)?)?;
        dict.set_item("lines", stored.lines.clone())?;
        Ok(dict)
    }

    /// The anomaly map of `galaxy`: (value `[S, S]` float32, dominant-line index `[S, S]`
    /// uint8 with 255 = none, line names).
    fn anomaly_map<'py>(
        &self,
        py: Python<'py>,
        galaxy: &str,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>, Vec<String>)> {
        let plateifu = self.plateifu(galaxy)?;
        let dir = &self.results.dir;
        let maps: AnomalyMaps = py
            .detach(|| AnomalyMaps::read(dir))
            .map_err(lib)?
            .ok_or_else(|| {
                OddcubeError::new_err(format!("{}: no anomaly_maps.safetensors", dir.display()))
            })?;
        let i = maps
            .plateifus
            .iter()
            .position(|p| *p == plateifu)
            .ok_or_else(|| {
                OddcubeError::new_err(format!("{}: no anomaly map of {plateifu}", dir.display()))
            })?;
        let (value_map, line) = maps.galaxy(i);
        let shape = [maps.size, maps.size];
        Ok((
            array(py, value_map.to_vec(), &shape)?,
            array(py, line.to_vec(), &shape)?,
            maps.lines.clone(),
        ))
    }
}
