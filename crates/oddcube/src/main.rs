//! The `oddcube` command line: parses arguments and hands each subcommand to the libraries.

mod cmd;
mod ui;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Find the galaxies that are not like the others in MaNGA integral-field spectroscopy.
#[derive(Parser)]
#[command(name = "oddcube", version, about, long_about = None)]
struct Cli {
    /// More log output (-v info, -vv debug); `RUST_LOG` overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show what a MaNGA DAP MAPS file holds: HDUs, line channels, grid, good spaxels, metadata.
    Inspect(cmd::inspect::Args),
    /// Read MAPS files into a dataset of fixed-size normalised line-map cubes.
    Ingest(cmd::ingest::Args),
    /// Write a simulated MaNGA survey (real-format DR17 MAPS files) with known anomalies.
    Simulate(cmd::simulate::Args),
    /// Train the ConvLSTM autoencoder (or VAE) on a dataset.
    Train(cmd::train::Args),
    /// Time training and inference of a model preset on random data.
    Bench(cmd::bench::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    ui::init_logging(cli.verbose, cli.quiet);
    let result = match cli.command {
        Command::Inspect(args) => cmd::inspect::run(args),
        Command::Ingest(args) => cmd::ingest::run(args),
        Command::Simulate(args) => cmd::simulate::run(args),
        Command::Train(args) => cmd::train::run(args),
        Command::Bench(args) => cmd::bench::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
