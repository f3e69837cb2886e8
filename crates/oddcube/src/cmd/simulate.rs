//! `oddcube simulate` (being written).

use std::process::ExitCode;

/// Arguments of `oddcube simulate`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `oddcube simulate`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("oddcube simulate is not built yet")
}
