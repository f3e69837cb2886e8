//! `oddcube merge`: join the `part-i-of-n` artifact sets of a sharded run.

use std::path::PathBuf;
use std::process::ExitCode;

use oddcube_data::merge;

use crate::ui::Bar;

/// Arguments of `oddcube merge`.
#[derive(clap::Args)]
pub struct Args {
    /// Directory holding `part-0-of-n/` … `part-(n-1)-of-n/` (from `ingest` or `score` with
    /// `--shard i/n --out DIR`).
    dir: PathBuf,
    /// Directory the merged dataset (or results) is written to.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

/// Runs `oddcube merge`: refuses incomplete or inconsistent part sets.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let parts = merge::find_parts(&args.dir)?;
    let created_by = crate::cmd::command_line();
    let first = &parts[0].1;
    if first.join(oddcube_data::dataset::MANIFEST_FILE).is_file()
        && first.join(oddcube_data::dataset::CUBES_FILE).is_file()
    {
        let merged = merge::merge_datasets(&args.dir, &args.out, &created_by)?;
        println!(
            "merged {} dataset parts: {} galaxies, {} skipped inputs → {} (manifest {})",
            merged.n_parts,
            merged.n_galaxies,
            merged.n_skipped,
            args.out.display(),
            merged.manifest_hash
        );
        return Ok(ExitCode::SUCCESS);
    }
    if first
        .join(oddcube_score::results::CATALOG_PARQUET)
        .is_file()
    {
        let merged = oddcube_score::merge::merge_results(
            &args.dir,
            &args.out,
            &created_by,
            &Bar::new(false),
        )?;
        merged.warnings.iter().for_each(|w| tracing::warn!("{w}"));
        println!(
            "merged {} results parts: {} galaxies (population scores computed on the whole), {} residual maps → {}",
            merged.n_parts,
            merged.n_galaxies,
            merged.n_residuals,
            args.out.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    anyhow::bail!(
        "{}: neither a dataset part ({} + {}) nor a results part ({}): nothing to merge",
        first.display(),
        oddcube_data::dataset::MANIFEST_FILE,
        oddcube_data::dataset::CUBES_FILE,
        oddcube_score::results::CATALOG_PARQUET
    )
}
