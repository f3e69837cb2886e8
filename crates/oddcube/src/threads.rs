//! Where the CPU work runs: [`on_thread_pool`] puts a command's work on a worker of a rayon
//! pool, for the CLI's `train`, `score`, `calibrate` and `bench` and the Python package's
//! training and scoring.

/// Runs `f` on a worker of a new rayon thread pool, sized as the global one would be
/// (`RAYON_NUM_THREADS`, which `--jobs` sets, else one thread per core), so that the model's
/// parallel kernels are called from inside the pool.
///
/// Called from a thread outside any pool, each parallel call parks its caller until the workers
/// are done and then wakes it again, and a training step makes thousands of such calls; from a
/// worker the caller takes its own share of the work instead (docs/kernels.md, "Threads"). The
/// kernels split their work the same way on any thread, so the results do not change.
pub fn on_thread_pool<T: Send>(f: impl FnOnce() -> anyhow::Result<T> + Send) -> anyhow::Result<T> {
    let pool = rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("oddcube-worker-{i}"))
        .build()
        .map_err(|e| anyhow::anyhow!("could not start the CPU thread pool: {e}"))?;
    pool.install(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_runs_on_a_pool_worker_and_its_result_comes_back() {
        assert_eq!(
            rayon::current_thread_index(),
            None,
            "the test thread is in no pool"
        );
        let (index, threads) =
            on_thread_pool(|| Ok((rayon::current_thread_index(), rayon::current_num_threads())))
                .unwrap();
        assert!(index.is_some(), "ran outside the pool");
        assert!(threads >= 1);
        let err = on_thread_pool(|| -> anyhow::Result<()> { anyhow::bail!("bad input") });
        assert_eq!(err.unwrap_err().to_string(), "bad input");
    }
}
