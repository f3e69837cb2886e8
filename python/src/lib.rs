//! `oddcube._oddcube`: the Python extension module over oddcube's crates. Every function here
//! converts arguments, releases the GIL, calls one library function and converts the answer;
//! nothing is computed twice. The Python package (`python/oddcube/`) wraps these in the public
//! API (`read_maps`, `Dataset`, `Model`, `Results`, `train`, …) and builds the DataFrames.
//!
//! - [`errors`]: Rust errors → `oddcube.OddcubeError` (the CLI's wording), shapes → `ValueError`.
//! - [`convert`]: arrays and catalogue columns across the boundary; [`progress`]: a Python
//!   callable as oddcube's [`Progress`](oddcube_data::Progress).
//! - [`maps`]: one MAPS file (`read_maps`) and its preprocessing; [`data`]: dataset, ingest and
//!   simulation; [`model`]: a trained model, training and scoring; [`results`]: a RESULTS
//!   directory (catalogue, latents, neighbours, residual and anomaly maps).

use pyo3::prelude::*;

// The Rust side allocates with mimalloc rather than the host process's malloc: in a Python
// process, glibc's per-thread arenas made scoring ~10 % slower than the same code in the
// `oddcube` binary (python_bench.py; MALLOC_ARENA_MAX=2 removed the gap too). Python's own
// allocations are untouched: this allocator serves only this library's Rust code.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod convert;
mod data;
mod errors;
mod maps;
mod model;
mod progress;
mod results;

/// The extension module.
#[pymodule]
fn _oddcube(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("CORE_VERSION", oddcube::build_info::VERSION)?;
    m.add("OddcubeError", m.py().get_type::<errors::OddcubeError>())?;
    m.add_function(wrap_pyfunction!(maps::read_maps, m)?)?;
    m.add_class::<maps::RawMaps>()?;
    m.add_function(wrap_pyfunction!(data::dataset_layout, m)?)?;
    m.add_function(wrap_pyfunction!(data::dataset_galaxies, m)?)?;
    m.add_function(wrap_pyfunction!(data::ingest, m)?)?;
    m.add_function(wrap_pyfunction!(data::simulate, m)?)?;
    m.add_function(wrap_pyfunction!(model::train, m)?)?;
    m.add_class::<model::RawModel>()?;
    m.add_class::<results::RawResults>()?;
    Ok(())
}
