//! `oddcube inspect` (being written).

use std::process::ExitCode;

/// Arguments of `oddcube inspect`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `oddcube inspect`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("oddcube inspect is not built yet")
}
