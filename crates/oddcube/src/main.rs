//! The `oddcube` command line: parses arguments and hands each subcommand to the libraries.

mod cmd;

mod ui;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

// mimalloc instead of glibc's malloc: ingest (many short-lived FITS/gzip buffers on every
// thread) runs ~16 % faster with it; scoring and training are unchanged (docs/kernels.md,
// "Allocator"). The Python extension uses it too, where glibc made scoring ~10 % slower.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay`: its place in `mimalloc.h`'s `mi_option_e` (the Rust
/// binding names no constant for it; the test `purge_delay_is_the_option_the_environment_sets`
/// checks the number against the `MIMALLOC_PURGE_DELAY` variable mimalloc reads).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps freed memory in the process instead of handing it back to the OS a second later.
///
/// A training step frees and reallocates tens of megabytes of activations; with mimalloc's default
/// purge (1 s) the pages went back to the OS between uses and every reuse faulted in freshly zeroed
/// pages: 6 % of a training run's profile in the kernel's page clearing, and steps 8 % slower
/// (docs/kernels.md, "Allocator"). The price is a larger peak resident set (a tenth to a third
/// more, bounded by the threads' working sets), paid by batch commands that exit when done;
/// `serve` idles for hours after loading, and gives back what it freed.
/// `MIMALLOC_PURGE_DELAY` in the environment still decides when it is set.
fn hold_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one integer option of the allocator; mimalloc reads options atomically.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    }
}

/// The help heading of the options every subcommand takes, shown after the command's own.
const GLOBAL: &str = "Global options";

/// Find the galaxies that are not like the others in MaNGA integral-field spectroscopy.
#[derive(Parser)]
#[command(name = "oddcube", version, about, long_about = None)]
struct Cli {
    /// More log output (-v info, -vv debug); `RUST_LOG` overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, help_heading = GLOBAL)]
    verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true, help_heading = GLOBAL)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The whole chain on a simulated survey: simulate → ingest → train → score → evaluate →
    /// project → figures, with a summary (re-running reuses finished stages).
    Demo(cmd::demo::Args),
    /// Show what a MaNGA DAP MAPS file holds: HDUs, line channels, grid, good spaxels, metadata.
    Inspect(cmd::inspect::Args),
    /// Download DR17 MAPS files from the SDSS Science Archive Server (resumable, retried).
    Fetch(cmd::fetch::Args),
    /// Read MAPS files into a dataset of fixed-size normalised line-map cubes.
    Ingest(cmd::ingest::Args),
    /// Write a simulated MaNGA survey (real-format DR17 MAPS files) with known anomalies.
    Simulate(cmd::simulate::Args),
    /// Train the ConvLSTM autoencoder (or VAE) on a dataset.
    Train(cmd::train::Args),
    /// Fit a trained model's null (calibrated p-values) on the galaxies of its dataset; `train`
    /// does this itself, this brings older models (and nulls of an older format) up to date.
    Calibrate(cmd::calibrate::Args),
    /// Score every galaxy of a dataset with a trained model: anomaly catalogue, latents, residuals.
    Score(cmd::score::Args),
    /// Galaxies nearest in latent space to a catalogue galaxy, a vector or a new MAPS file.
    Similar(cmd::similar::Args),
    /// Judge the scores of a RESULTS directory against labels (AUROC, AP, P@k) next to a PCA baseline.
    Evaluate(cmd::evaluate::Args),
    /// BPT class of every galaxy's centre in a dataset (bpt.csv).
    Bpt(cmd::bpt::Args),
    /// Join the `part-i-of-n` outputs of a sharded ingest or score into one artifact set.
    Merge(cmd::merge::Args),
    /// Time training and inference of a model preset on random data.
    Bench(cmd::bench::Args),
    /// 2-D latent map (UMAP or PCA) of a RESULTS directory; place new galaxies on it.
    Project(cmd::project::Args),
    /// PNG figures: one galaxy's maps/residuals/BPT, the latent map, score histograms.
    Plot(cmd::plot::Args),
    /// Local web explorer over a RESULTS directory (binds 127.0.0.1 by default).
    Serve(cmd::serve::Args),
}

fn main() -> ExitCode {
    // Before any thread exists (see the function's safety note).
    oddcube_model::device::limit_candle_spinning();
    // The version text is computed at run time (it names the CPU features detected), and clap
    // takes a `'static` string: leaked once per process.
    let version: &'static str = Box::leak(oddcube::build_info::version_text().into_boxed_str());
    let cli = Cli::from_arg_matches(&Cli::command().version(version).get_matches())
        .unwrap_or_else(|e| e.exit());
    ui::init_logging(cli.verbose, cli.quiet);
    if !matches!(cli.command, Command::Serve(_)) {
        hold_freed_memory();
    }
    let result = match cli.command {
        Command::Demo(args) => cmd::demo::run(args),
        Command::Inspect(args) => cmd::inspect::run(args),
        Command::Fetch(args) => cmd::fetch::run(args),
        Command::Ingest(args) => cmd::ingest::run(args),
        Command::Simulate(args) => cmd::simulate::run(args),
        Command::Train(args) => cmd::train::run(args),
        Command::Bench(args) => cmd::bench::run(args),
        Command::Calibrate(args) => cmd::calibrate::run(args),
        Command::Score(args) => cmd::score::run(args),
        Command::Similar(args) => cmd::similar::run(args),
        Command::Evaluate(args) => cmd::evaluate::run(args),
        Command::Bpt(args) => cmd::bpt::run(args),
        Command::Merge(args) => cmd::merge::run(args),
        Command::Project(args) => cmd::project::run(args),
        Command::Plot(args) => cmd::plot::run(args),
        Command::Serve(args) => cmd::serve::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", oddcube::report::error_message(&err));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value mimalloc read from `MIMALLOC_PURGE_DELAY` at start-up must be what option
    /// `MI_OPTION_PURGE_DELAY` holds. Runs this test binary again with the variable set (mimalloc
    /// reads its environment once, before `main`), where the branch below checks it.
    #[test]
    fn purge_delay_is_the_option_the_environment_sets() {
        const MARKER: &str = "ODDCUBE_TEST_PURGE_DELAY_CHILD";
        if std::env::var_os(MARKER).is_some() {
            // SAFETY: reads one integer option.
            let value = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
            assert_eq!(
                value, 4321,
                "option {MI_OPTION_PURGE_DELAY} is not the purge delay"
            );
            return;
        }
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "tests::purge_delay_is_the_option_the_environment_sets",
            ])
            .env(MARKER, "1")
            .env("MIMALLOC_PURGE_DELAY", "4321")
            .status()
            .unwrap();
        assert!(status.success(), "the child test failed: {status}");
    }
}
