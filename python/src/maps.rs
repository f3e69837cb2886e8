//! One MAPS file as `ingest` reads it (`oddcube.read_maps`), and its preprocessing.

use std::path::PathBuf;

use oddcube_data::LineSet;
use oddcube_data::MaskPolicy;
use oddcube_data::maps::MapsFile;
use oddcube_data::preprocess::{PreprocessConfig, Stretch, preprocess};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::convert::array;
use crate::errors::{lib, value};

/// A MAPS file read with oddcube's reader: every channel kept, the chosen lines selected.
#[pyclass(frozen, module = "oddcube._oddcube")]
pub struct RawMaps {
    maps: MapsFile,
    lines: LineSet,
    indices: Vec<usize>,
}

/// Reads the MAPS file `path` (`.fits` or `.fits.gz`) for the lines `lines` (`dr17`, `dr15` or
/// comma-separated DAP channel names). Raises `OddcubeError` naming the file and the reason for
/// the files `ingest` skips.
#[pyfunction]
pub fn read_maps(py: Python<'_>, path: PathBuf, lines: &str) -> PyResult<RawMaps> {
    let lines = parse_lines(lines)?;
    py.detach(|| {
        let maps = MapsFile::read(&path).map_err(lib)?;
        let indices = maps.line_indices(&lines).map_err(lib)?;
        Ok(RawMaps {
            maps,
            lines,
            indices,
        })
    })
}

/// Parses a `lines` option (`dr17`, `dr15` or channel names); a bad one is a `ValueError`.
pub fn parse_lines(lines: &str) -> PyResult<LineSet> {
    LineSet::parse(lines).map_err(|e| value(format!("lines={lines:?}: {e}")))
}

fn parse_mask_policy(mask_policy: &str) -> PyResult<MaskPolicy> {
    MaskPolicy::parse(mask_policy).ok_or_else(|| {
        value(format!(
            "mask_policy={mask_policy:?}: expected 'strict' or 'lenient'"
        ))
    })
}

/// `ingest`'s preprocessing options (`--size`, `--mask-policy`, `--stretch`); a bad one is a
/// `ValueError` naming it.
pub fn preprocess_config(
    size: usize,
    mask_policy: &str,
    stretch: &str,
) -> PyResult<PreprocessConfig> {
    if size == 0 || size > 1024 {
        return Err(value(format!("size={size}: expected 1 to 1024 pixels")));
    }
    Ok(PreprocessConfig {
        size,
        mask_policy: parse_mask_policy(mask_policy)?,
        stretch: Stretch::parse(stretch)
            .ok_or_else(|| value(format!("stretch={stretch:?}: expected 'none' or 'asinh'")))?,
    })
}

impl RawMaps {
    /// The selected lines' planes of a `[channel][y][x]` array, as `[line, y, x]`.
    fn select<T: Copy>(&self, all: &[T]) -> Vec<T> {
        let plane = self.maps.plane_len();
        self.indices
            .iter()
            .flat_map(|&c| all[c * plane..(c + 1) * plane].iter().copied())
            .collect()
    }

    fn shape(&self) -> [usize; 3] {
        [self.indices.len(), self.maps.ny, self.maps.nx]
    }
}

#[pymethods]
impl RawMaps {
    /// EMLINE_GFLUX of the selected lines, `[line, y, x]`, 1e-17 erg/s/cm²/spaxel.
    fn flux<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        array(py, self.select(&self.maps.flux), &self.shape())
    }

    /// EMLINE_GFLUX_IVAR, same shape.
    fn ivar<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        array(py, self.select(&self.maps.ivar), &self.shape())
    }

    /// EMLINE_GFLUX_MASK (MANGA_DAPPIXMASK bits), same shape.
    fn mask<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        array(py, self.select(&self.maps.mask), &self.shape())
    }

    /// The selected lines' channel names, in model (wavelength) order.
    fn lines(&self) -> Vec<String> {
        self.lines.lines.clone()
    }

    /// Every channel of the file's EMLINE_GFLUX, in file order.
    fn channels(&self) -> Vec<String> {
        self.maps.channels.clone()
    }

    /// The file read.
    fn path(&self) -> PathBuf {
        self.maps.path.clone()
    }

    /// The primary-header metadata oddcube uses (plateifu, mangaid, ra, dec, z, psf_fwhm,
    /// ifu_size, dapqual, drp3qual, daptype, versdap, notices) as JSON.
    fn header_json(&self) -> PyResult<String> {
        serde_json::to_string(&self.maps.meta).map_err(lib)
    }

    /// SPX_SKYCOO `[2, y, x]` (arcsec from the IFU centre), or None.
    fn skycoo<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.maps
            .skycoo
            .clone()
            .map(|s| array(py, s, &[2, self.maps.ny, self.maps.nx]))
            .transpose()
    }

    /// Which spaxels of the selected lines `ingest` would use under `mask_policy` (`strict` or
    /// `lenient`): a bool array `[line, y, x]`, False where masked, IVAR ≤ 0 or not finite.
    fn usable<'py>(&self, py: Python<'py>, mask_policy: &str) -> PyResult<Bound<'py, PyAny>> {
        let policy = parse_mask_policy(mask_policy)?;
        let plane = self.maps.plane_len();
        let good: Vec<bool> = self
            .indices
            .iter()
            .flat_map(|&c| {
                (c * plane..(c + 1) * plane).map(|i| {
                    policy.is_good(self.maps.mask[i], self.maps.flux[i], self.maps.ivar[i])
                })
            })
            .collect();
        array(py, good, &self.shape())
    }

    /// The `(x, w, info)` of `ingest`'s preprocessing on a `size`×`size` grid: `x` and `w`
    /// `[line, size, size]` float32, `info` a dict (scale, n_good, centre, box_size).
    #[pyo3(signature = (size, mask_policy, stretch))]
    fn preprocess<'py>(
        &self,
        py: Python<'py>,
        size: usize,
        mask_policy: &str,
        stretch: &str,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>, Bound<'py, PyDict>)> {
        let config = preprocess_config(size, mask_policy, stretch)?;
        let pre = py
            .detach(|| preprocess(&self.maps, &self.indices, &config))
            .map_err(lib)?;
        let shape = [self.indices.len(), size, size];
        let info = PyDict::new(py);
        info.set_item("scale", pre.scale)?;
        info.set_item("n_good", pre.n_good)?;
        info.set_item("centre", pre.centre)?;
        info.set_item("box_size", pre.box_size)?;
        Ok((array(py, pre.x, &shape)?, array(py, pre.w, &shape)?, info))
    }
}
