//! A small progress-reporting interface so libraries report work without choosing a UI.

/// Receives progress from long-running library work. The binary renders it (indicatif on a
/// terminal, plain log lines otherwise); tests pass [`NoProgress`].
pub trait Progress: Sync {
    /// Announces the total amount of work (items) and a short label for the stage.
    fn start(&self, _label: &str, _total: u64) {}
    /// Reports `n` more items done.
    fn advance(&self, _n: u64) {}
    /// Replaces the status message (e.g. running loss).
    fn message(&self, _msg: &str) {}
    /// Marks the stage finished.
    fn finish(&self) {}
}

/// Progress sink that ignores everything.
pub struct NoProgress;

impl Progress for NoProgress {}
