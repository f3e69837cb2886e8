//! Terminal presentation: logging setup and the indicatif-backed progress sink.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use oddcube_data::Progress;

/// Set once from `--quiet`: progress sinks stay silent.
static QUIET: AtomicBool = AtomicBool::new(false);

/// Sets up `tracing` output on stderr: warnings by default, more with `-v`, none but errors with
/// `-q`; `RUST_LOG` wins when set.
pub fn init_logging(verbose: u8, quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
    // The FITS reader logs its own errors without naming the file (in a batch ingest nobody can
    // tell which file they belong to); oddcube's error for the same failure names it, so the
    // reader is heard only at -vv.
    let default = match (quiet, verbose) {
        (true, _) => "error,fitsrs=off",
        (false, 0) => {
            "warn,oddcube=info,oddcube_data=info,oddcube_model=info,oddcube_score=info,oddcube_explore=info,fitsrs=off"
        }
        (false, 1) => "info,fitsrs=off",
        (false, _) => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .try_init();
}

/// Progress shown as an indicatif bar on a terminal, or as a plain log line every few seconds
/// (and at the end) when stderr is not a terminal, so batch logs stay readable.
pub struct Bar {
    bar: ProgressBar,
    plain: Option<Mutex<PlainState>>,
    quiet: bool,
}

struct PlainState {
    label: String,
    total: u64,
    done: u64,
    message: String,
    last: Instant,
    started: Instant,
    /// The count at the last line printed, so `finish` does not repeat it.
    logged_done: Option<u64>,
}

impl Bar {
    /// A progress sink for the current stderr; `quiet` (or the global `--quiet`) suppresses all
    /// output.
    pub fn new(quiet: bool) -> Self {
        let quiet = quiet || QUIET.load(Ordering::Relaxed);
        let terminal = std::io::stderr().is_terminal() && !quiet;
        let bar = ProgressBar::with_draw_target(
            None,
            if terminal {
                ProgressDrawTarget::stderr()
            } else {
                ProgressDrawTarget::hidden()
            },
        );
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>10.bold} [{bar:30.cyan/blue}] {pos}/{len} {elapsed_precise} eta {eta} {msg}",
            )
            .expect("static template")
            .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        let plain = (!terminal).then(|| {
            Mutex::new(PlainState {
                label: String::new(),
                total: 0,
                done: 0,
                message: String::new(),
                last: Instant::now(),
                started: Instant::now(),
                logged_done: None,
            })
        });
        Self { bar, plain, quiet }
    }

    fn log_plain(&self, force: bool) {
        if self.quiet {
            return;
        }
        if let Some(state) = &self.plain {
            let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
            let due = s.last.elapsed() >= Duration::from_secs(5);
            let already_final = force && s.logged_done == Some(s.done);
            if (force || due) && !already_final {
                s.last = Instant::now();
                s.logged_done = Some(s.done);
                eprintln!(
                    "{}: {}/{} ({:.0} s) {}",
                    s.label,
                    s.done,
                    s.total,
                    s.started.elapsed().as_secs_f64(),
                    s.message
                );
            }
        }
    }
}

impl Progress for Bar {
    fn start(&self, label: &str, total: u64) {
        self.bar.reset();
        self.bar.set_prefix(label.to_string());
        self.bar.set_length(total);
        self.bar.set_position(0);
        if let Some(state) = &self.plain {
            let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
            s.label = label.to_string();
            s.total = total;
            s.done = 0;
            s.message.clear();
            s.started = Instant::now();
            s.last = Instant::now();
            s.logged_done = None;
        }
    }

    fn advance(&self, n: u64) {
        self.bar.inc(n);
        if let Some(state) = &self.plain {
            state.lock().unwrap_or_else(|e| e.into_inner()).done += n;
        }
        self.log_plain(false);
    }

    fn message(&self, msg: &str) {
        self.bar.set_message(msg.to_string());
        if let Some(state) = &self.plain {
            state.lock().unwrap_or_else(|e| e.into_inner()).message = msg.to_string();
        }
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
        self.log_plain(true);
    }
}

/// Sets the CPU thread count for candle's pools before any of them start.
pub fn apply_jobs(jobs: Option<usize>) -> anyhow::Result<()> {
    if let Some(jobs) = jobs {
        anyhow::ensure!(jobs > 0, "--jobs must be positive");
        // SAFETY: called at the start of a subcommand, before this process starts any thread
        // that could read the environment concurrently. candle sizes its pools from these.
        unsafe {
            std::env::set_var("CANDLE_NUM_THREADS", jobs.to_string());
            std::env::set_var("RAYON_NUM_THREADS", jobs.to_string());
        }
    }
    Ok(())
}
