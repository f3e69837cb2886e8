//! `oddcube ingest`: MAPS files, directories or globs → a dataset directory.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use oddcube_data::ingest::{IngestOptions, ingest};
use oddcube_data::preprocess::{DEFAULT_SIZE, PreprocessConfig};
use oddcube_data::{LineSet, Shard};

use crate::cmd::choices::{MaskArg, StretchArg};

use crate::ui::Bar;

/// Arguments of `oddcube ingest`.
#[derive(clap::Args)]
pub struct Args {
    /// MAPS files (`.fits` or `.fits.gz`), directories (searched recursively for them) or
    /// quoted glob patterns.
    #[arg(required = true)]
    inputs: Vec<String>,
    /// Dataset directory to write (created if missing; with a shard other than 0/1 the data go
    /// to DATASET/part-i-of-n).
    #[arg(long, value_name = "DATASET")]
    out: PathBuf,
    /// Lines to read: `dr17` (default), `dr15`, or a comma-separated list of DAP channel names.
    #[arg(long, default_value = "dr17")]
    lines: String,
    /// Side of the square output grid, in pixels.
    #[arg(long, default_value_t = DEFAULT_SIZE as u16, value_parser = clap::value_parser!(u16).range(1..=1024))]
    size: u16,
    /// Pixel mask policy: `strict` rejects DONOTUSE and UNRELIABLE, `lenient` only DONOTUSE.
    #[arg(long, value_enum, default_value_t = MaskArg::Strict)]
    mask_policy: MaskArg,
    /// Stretch after normalisation: `none` or `asinh` (softening 0.1 in normalised units).
    #[arg(long, value_enum, default_value_t = StretchArg::None)]
    stretch: StretchArg,
    /// Ingest only shard i of n (a stable hash of the plateifu decides); default from
    /// SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT, else 0/1.
    #[arg(long, value_name = "i/n")]
    shard: Option<Shard>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    jobs: Option<usize>,
    /// Leave out galaxies the DAP or DRP flagged CRITICAL (DAPQUAL or DRP3QUAL bit 30); they
    /// are listed in skipped.csv. Default: ingest them, keep their flags in galaxies.* and the
    /// catalogue's `critical` column, and warn — nothing is dropped silently.
    #[arg(long)]
    skip_critical: bool,
}

/// Runs `oddcube ingest`: exit 0 when every input was ingested, 3 when some were skipped
/// (listed in `skipped.csv`), an error (exit 1) when none could be.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let lines = LineSet::parse(&args.lines).with_context(|| format!("--lines {:?}", args.lines))?;
    if args.jobs == Some(0) {
        anyhow::bail!("--jobs must be positive");
    }
    let shard = args
        .shard
        .or_else(Shard::from_slurm_env)
        .unwrap_or(Shard::ALL);
    let options = IngestOptions {
        lines,
        preprocess: PreprocessConfig {
            size: usize::from(args.size),
            mask_policy: args.mask_policy.into(),
            stretch: args.stretch.into(),
        },
        shard,
        jobs: args.jobs.unwrap_or(0),
        skip_critical: args.skip_critical,
        created_by: super::command_line(),
    };
    let started = Instant::now();
    let report = ingest(&args.inputs, &args.out, &options, &Bar::new(false))
        .with_context(|| format!("ingesting into {}", args.out.display()))?;
    let seconds = started.elapsed().as_secs_f64().max(1e-9);
    for notice in &report.notices {
        tracing::warn!("{notice}");
    }
    for skip in &report.skipped {
        eprintln!("skipped {}: {}", skip.path, skip.reason);
    }
    if report.n_ingested == 0 && !report.skipped.is_empty() {
        anyhow::bail!(
            "no input could be ingested ({} skipped; reasons in {})",
            report.skipped.len(),
            report
                .out_dir
                .join(oddcube_data::dataset::SKIPPED_FILE)
                .display()
        );
    }
    println!(
        "ingested {} galaxies ({} lines, {}×{}) into {} in {:.1} s ({:.1} files/s, {:.1} MB/s); skipped {}{}",
        report.n_ingested,
        options.lines.len(),
        args.size,
        args.size,
        report.out_dir.display(),
        seconds,
        report.n_files as f64 / seconds,
        report.bytes_read as f64 / 1e6 / seconds,
        report.skipped.len(),
        if report.skipped.is_empty() {
            String::new()
        } else {
            " (see skipped.csv)".to_string()
        },
    );
    if let Some(hash) = &report.manifest_hash {
        println!("manifest hash {hash}");
    }
    Ok(if report.skipped.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}
