//! `oddcube ingest` (being written).

use std::process::ExitCode;

/// Arguments of `oddcube ingest`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `oddcube ingest`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("oddcube ingest is not built yet")
}
