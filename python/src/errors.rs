//! How Rust errors reach Python: one exception class, `oddcube.OddcubeError`, whose message is
//! the CLI's (each cause once, naming the file and the reason); wrong shapes are `ValueError`.

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::{PyErr, PyResult};

create_exception!(
    oddcube,
    OddcubeError,
    PyException,
    "An oddcube operation failed; the message names the file or setting and the reason."
);

/// An `anyhow` error (with its causes) as an `OddcubeError`.
pub fn to_py(err: anyhow::Error) -> PyErr {
    OddcubeError::new_err(oddcube::report::error_message(&err))
}

/// Any library error as an `OddcubeError`.
pub fn lib<E: std::error::Error + Send + Sync + 'static>(err: E) -> PyErr {
    to_py(anyhow::Error::new(err))
}

/// A `ValueError` (wrong shapes, unknown option values).
pub fn value(message: impl Into<String>) -> PyErr {
    PyValueError::new_err(message.into())
}

/// Parses an option value with its `FromStr`; a bad one is a `ValueError` naming the option.
pub fn parse<T: std::str::FromStr>(name: &str, text: &str) -> PyResult<T>
where
    T::Err: std::fmt::Display,
{
    text.parse::<T>()
        .map_err(|e| value(format!("{name}={text:?}: {e}")))
}
