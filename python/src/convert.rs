//! Arrays and tables across the boundary: numpy arrays in and out, catalogue columns out.

use numpy::{Element, PyArray1, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use oddcube_data::Cubes;
use oddcube_score::results::{Catalog, Column};
use pyo3::prelude::*;
use pyo3::types::PyList;

use crate::errors::value;

/// `data` as a numpy array of `shape` (C order), without copying `data` again.
pub fn array<'py, T: Element>(
    py: Python<'py>,
    data: Vec<T>,
    shape: &[usize],
) -> PyResult<Bound<'py, PyAny>> {
    let flat = PyArray1::from_vec(py, data);
    Ok(flat.reshape(shape.to_vec())?.into_any())
}

/// The catalogue as `[(name, values)]` in column order: numpy arrays for numbers and flags,
/// lists of `str` for text, so that pandas keeps the dtypes and the order.
pub fn catalog<'py>(py: Python<'py>, catalog: &Catalog) -> PyResult<Bound<'py, PyList>> {
    let columns = PyList::empty(py);
    for (name, column) in &catalog.columns {
        let values: Bound<'py, PyAny> = match column {
            Column::F64(v) => PyArray1::from_slice(py, v).into_any(),
            Column::U32(v) => PyArray1::from_slice(py, v).into_any(),
            Column::Bool(v) => PyArray1::from_slice(py, v).into_any(),
            Column::Str(v) => PyList::new(py, v)?.into_any(),
        };
        columns.append((name.as_str(), values))?;
    }
    Ok(columns)
}

/// Two `float32` arrays `x`, `w` of shape `[N, L, S, S]` (C-contiguous; the Python wrapper
/// converts and checks first) as [`Cubes`], checked against the model's `lines` and `size`.
pub fn cubes(
    x: &PyReadonlyArrayDyn<'_, f32>,
    w: &PyReadonlyArrayDyn<'_, f32>,
    n_lines: usize,
    size: usize,
) -> PyResult<Cubes> {
    let expected = format!("[N, {n_lines}, {size}, {size}]");
    for (name, a) in [("x", x), ("w", w)] {
        let shape = a.shape();
        if shape.len() != 4 || shape[1] != n_lines || shape[2] != size || shape[3] != size {
            return Err(value(format!(
                "{name} has shape {shape:?}; the model expects {expected} (galaxies, lines, rows, columns)"
            )));
        }
    }
    if x.shape() != w.shape() {
        return Err(value(format!(
            "x has shape {:?} but w has {:?}; they must be equal",
            x.shape(),
            w.shape()
        )));
    }
    let slice = |name: &str, a: &PyReadonlyArrayDyn<'_, f32>| -> PyResult<Vec<f32>> {
        a.as_slice()
            .map(<[f32]>::to_vec)
            .map_err(|_| value(format!("{name} must be C-contiguous")))
    };
    Ok(Cubes {
        n: x.shape()[0],
        n_lines,
        size,
        x: slice("x", x)?,
        w: slice("w", w)?,
    })
}
