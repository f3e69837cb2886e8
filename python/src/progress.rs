//! A Python callable as oddcube's [`Progress`]: `callback(stage, done, total, message)`.

use std::sync::Mutex;

use oddcube_data::Progress;
use pyo3::prelude::*;

/// Reports to a Python callable (or nowhere). The callable runs with the GIL taken back, from
/// whichever thread reports; its first exception is kept and raised when the work is done
/// ([`PyProgress::finish_call`]), since the Rust work cannot be unwound from inside it.
pub struct PyProgress {
    callback: Option<Py<PyAny>>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    stage: String,
    done: u64,
    total: u64,
    error: Option<PyErr>,
}

impl PyProgress {
    /// Reports to `callback` when given.
    pub fn new(callback: Option<Py<PyAny>>) -> Self {
        PyProgress {
            callback,
            state: Mutex::new(State::default()),
        }
    }

    /// The callback's first exception, if it raised one.
    pub fn finish_call(self) -> PyResult<()> {
        let state = self.state.into_inner().unwrap_or_else(|p| p.into_inner());
        state.error.map_or(Ok(()), Err)
    }

    fn call(&self, message: Option<&str>) {
        let Some(callback) = &self.callback else {
            return;
        };
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        if state.error.is_some() {
            return;
        }
        let args = (
            state.stage.clone(),
            state.done,
            state.total,
            message.map(str::to_owned),
        );
        if let Err(err) = Python::attach(|py| callback.call1(py, args).map(drop)) {
            state.error = Some(err);
        }
    }
}

impl Progress for PyProgress {
    fn start(&self, label: &str, total: u64) {
        if let Ok(mut state) = self.state.lock() {
            state.stage = label.to_string();
            state.done = 0;
            state.total = total;
        }
        self.call(None);
    }

    fn advance(&self, n: u64) {
        if let Ok(mut state) = self.state.lock() {
            state.done += n;
        }
        self.call(None);
    }

    fn message(&self, msg: &str) {
        self.call(Some(msg));
    }
}
