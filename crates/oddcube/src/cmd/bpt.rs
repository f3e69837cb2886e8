//! `oddcube bpt`: BPT class of every galaxy's centre in a dataset, written as bpt.csv — the
//! ground truth for `oddcube evaluate --truth bpt.csv --label-column class --normal sf,composite`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use oddcube_data::bpt_survey::{BptSurveyOptions, bpt_csv, classify_dataset};
use oddcube_data::dataset::Dataset;
use oddcube_score::results::write_atomic;

use crate::cmd::compat;

/// Arguments of `oddcube bpt`.
#[derive(clap::Args)]
pub struct Args {
    /// Dataset directory written by `oddcube ingest`.
    #[arg(long, value_name = "DIR", required_unless_present = "dataset")]
    pub data: Option<PathBuf>,
    /// Deprecated: the dataset as the first word; use --data.
    #[arg(value_name = "DATASET", hide = true, conflicts_with = "data")]
    pub dataset: Option<PathBuf>,
    /// Central aperture diameter (arcsec) in which line fluxes are summed.
    #[arg(long, default_value_t = 2.5)]
    pub aperture: f64,
    /// Minimum S/N of every line a diagram uses.
    #[arg(long, default_value_t = 3.0)]
    pub snr: f64,
    /// Output CSV (default: DATASET/bpt.csv).
    #[arg(long, value_name = "FILE")]
    pub out_file: Option<PathBuf>,
    /// Deprecated spelling of --out-file.
    #[arg(long, hide = true, conflicts_with = "out_file")]
    pub out: Option<PathBuf>,
}

/// Runs `oddcube bpt`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.aperture > 0.0,
        "--aperture {} must be a positive diameter in arcsec",
        args.aperture
    );
    anyhow::ensure!(args.snr >= 0.0, "--snr {} must not be negative", args.snr);
    let dir = compat::either(args.data, args.dataset, "bpt DATASET", "bpt --data DATASET")
        .context("no dataset: pass --data DIR")?;
    let dataset =
        Dataset::open(&dir).with_context(|| format!("opening dataset {}", dir.display()))?;
    let options = BptSurveyOptions {
        aperture_arcsec: args.aperture,
        min_snr: args.snr,
    };
    let rows = classify_dataset(&dataset, &options)?;
    let out = compat::either(args.out_file, args.out, "bpt --out", "--out-file")
        .unwrap_or_else(|| dir.join("bpt.csv"));
    write_atomic(&out, bpt_csv(&rows).as_bytes())?;
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &rows {
        *counts.entry(r.class.name()).or_default() += 1;
    }
    let summary: Vec<String> = counts.iter().map(|(c, n)| format!("{c} {n}")).collect();
    println!("{} galaxies: {}", rows.len(), summary.join(", "));
    if let Some(note) = rows
        .iter()
        .map(|r| r.note.as_str())
        .find(|n| n.contains("lacks"))
    {
        println!("note: {note}");
    }
    eprintln!("wrote {}", out.display());
    Ok(ExitCode::SUCCESS)
}
