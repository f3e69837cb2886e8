//! `oddcube simulate`: writes a simulated MaNGA survey (DR17 MAPS files + truth.csv).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use oddcube_data::simulate::{GalaxyKind, SurveyConfig, simulate_survey};

use crate::ui::Bar;

/// Arguments of `oddcube simulate`.
#[derive(clap::Args)]
pub struct Args {
    /// Directory to write `manga-{plate}-{ifu}-MAPS-HYB10-MILESHC-MASTARSSP.fits.gz` files and
    /// `truth.csv` into (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Number of galaxies.
    #[arg(long, default_value_t = 100)]
    galaxies: usize,
    /// Seed of the survey: the same seed gives the same files.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Fraction of galaxies that are injected anomalies (the `--anomaly-kinds`, in turn).
    #[arg(long, default_value_t = 0.05)]
    anomaly_fraction: f64,
    /// Anomaly kinds to inject, comma-separated: seyfert, blueberry, eelr, dual_nucleus (the
    /// default mix), and outflow, ring, dust_lane (held out of it: oddcube's scoring was
    /// designed without them, so a survey of these tests it on kinds it has never seen).
    #[arg(long, value_delimiter = ',', value_parser = GalaxyKind::parse_anomaly,
          default_value = "seyfert,blueberry,eelr,dual_nucleus")]
    anomaly_kinds: Vec<GalaxyKind>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    jobs: Option<usize>,
    /// gzip level of the files, 0-9 (1 is fast and nearly as small).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=9))]
    gzip_level: u32,
}

/// Runs `oddcube simulate`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = SurveyConfig {
        galaxies: args.galaxies,
        seed: args.seed,
        anomaly_fraction: args.anomaly_fraction,
        anomaly_kinds: args.anomaly_kinds,
        gzip_level: args.gzip_level,
    };
    let mut pool = rayon::ThreadPoolBuilder::new();
    if let Some(jobs) = args.jobs {
        anyhow::ensure!(jobs > 0, "--jobs must be positive");
        pool = pool.num_threads(jobs);
    }
    let pool = pool.build().context("cannot start worker threads")?;
    let bar = Bar::new(false);
    let summary = pool
        .install(|| simulate_survey(&args.out, &config, &bar))
        .with_context(|| format!("simulating into {}", args.out.display()))?;
    let kinds: Vec<String> = summary
        .kinds
        .iter()
        .map(|(kind, n)| format!("{} {n}", kind.name()))
        .collect();
    println!(
        "wrote {} MAPS files and {} in {:.1} s ({:.0} galaxies/min): {}",
        summary.files.len(),
        summary.truth_path.display(),
        summary.seconds,
        summary.files.len() as f64 / summary.seconds.max(1e-9) * 60.0,
        kinds.join(", ")
    );
    Ok(ExitCode::SUCCESS)
}
