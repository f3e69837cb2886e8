//! `oddcube fetch`: download DR17 MAPS files from the SDSS Science Archive Server layout.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use oddcube_data::fetch::{self, FetchOptions, PlateIfu};

use crate::ui::Bar;

/// Arguments of `oddcube fetch`.
#[derive(clap::Args)]
pub struct Args {
    /// Galaxies: a comma-separated list (`8485-1901,7443-12701`) or a file with one plate-ifu per
    /// line (a CSV whose first column holds plate-ifus works too).
    #[arg(long, value_name = "LIST|FILE")]
    plateifu: String,
    /// Directory the MAPS files are written to.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// DAP analysis type.
    #[arg(long, default_value = fetch::DEFAULT_DAPTYPE)]
    daptype: String,
    /// Base URL of the archive (a mirror, or a local copy of the SAS tree).
    #[arg(long, env = "ODDCUBE_SAS_URL", default_value = fetch::DEFAULT_BASE_URL)]
    base_url: String,
    /// Simultaneous downloads (be kind to the archive).
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Retries per file after the first attempt (exponential backoff from 2 s).
    #[arg(long, default_value_t = 4)]
    retries: u32,
    /// Connect / read timeout in seconds.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
}

/// Runs `oddcube fetch`: exit 0 when every file is present afterwards, 3 when some failed.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let list_path = PathBuf::from(&args.plateifu);
    let (text, origin) = if list_path.is_file() {
        let text = std::fs::read_to_string(&list_path)
            .with_context(|| format!("{}: cannot read plate-ifu list", list_path.display()))?;
        (text, list_path.display().to_string())
    } else {
        (args.plateifu.clone(), "--plateifu".to_string())
    };
    let targets: Vec<PlateIfu> =
        fetch::parse_plateifu_list(&text).map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
    let opts = FetchOptions {
        base_url: args.base_url,
        daptype: args.daptype,
        out_dir: args.out.clone(),
        concurrency: args.concurrency,
        retries: args.retries,
        backoff: Duration::from_secs(2),
        timeout: Duration::from_secs(args.timeout),
    };
    let report = fetch::fetch_all(&targets, &opts, &Bar::new(false))
        .with_context(|| format!("{}: cannot create output directory", args.out.display()))?;
    let (downloaded, present, failed) = report.counts();
    println!(
        "fetched {downloaded}, already present {present}, failed {failed} (of {}) into {}",
        targets.len(),
        args.out.display()
    );
    for (p, reason) in report.failures() {
        println!("  failed {p}: {reason}");
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}
