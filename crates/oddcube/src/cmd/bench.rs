//! `oddcube bench`: times training steps and inference of a model preset on synthetic data.

use std::process::ExitCode;

use anyhow::Context;
use oddcube::threads::on_thread_pool;
use oddcube_model::ArchConfig;
use oddcube_model::bench::bench;
use oddcube_model::flops::forward_flops;
use oddcube_model::network::parameter_count;

use crate::cmd::choices::{DeviceName, KernelArg, KindArg, PresetArg, name};
use crate::cmd::compat;
use crate::ui::{Bar, apply_jobs};

/// Arguments of `oddcube bench`.
#[derive(clap::Args)]
pub struct Args {
    /// Architecture preset.
    #[arg(long, value_enum, default_value_t = PresetArg::Cpu)]
    preset: PresetArg,
    /// Architecture: autoencoder or variational autoencoder.
    #[arg(long, value_enum, default_value_t = KindArg::Ae)]
    arch: KindArg,
    /// Deprecated spelling of --arch (`--model` names a model directory elsewhere).
    #[arg(long = "model", value_enum, hide = true, conflicts_with = "arch")]
    model_kind: Option<KindArg>,
    /// Galaxies per step.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Timed steps of each kind (the median is reported).
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// Untimed warm-up steps of each kind.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Lines per galaxy (the sequence length).
    #[arg(long, default_value_t = 19)]
    n_lines: usize,
    /// Deprecated spelling of --n-lines (`--lines` names a line set in `ingest`).
    #[arg(long, hide = true, conflicts_with = "n_lines")]
    lines: Option<usize>,
    /// Compute device: cpu, cuda (or cuda:N; needs a CUDA build).
    #[arg(long, default_value = "cpu")]
    device: DeviceName,
    /// CPU threads (default: all cores).
    #[arg(long)]
    jobs: Option<usize>,
    /// ConvLSTM/conv implementation: fused (fast CPU kernels) or reference (plain candle ops).
    #[arg(long, value_enum, default_value_t = KernelArg::Fused)]
    kernel: KernelArg,
}

/// Runs `oddcube bench`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    apply_jobs(args.jobs)?;
    on_thread_pool(|| run_on_pool(args))
}

/// [`run`] on a worker of the thread pool ([`on_thread_pool`]).
fn run_on_pool(args: Args) -> anyhow::Result<ExitCode> {
    let kind = compat::either(
        None,
        args.model_kind,
        "bench --model ae|vae",
        "--arch ae|vae",
    )
    .unwrap_or(args.arch);
    let n_lines =
        compat::either(None, args.lines, "bench --lines N", "--n-lines N").unwrap_or(args.n_lines);
    anyhow::ensure!(
        args.batch > 0 && args.steps > 0,
        "--batch and --steps must be positive"
    );
    let mut arch = ArchConfig::preset(args.preset.into(), kind.into(), n_lines);
    arch.cell = args.kernel.into();
    let device = args
        .device
        .open()
        .with_context(|| format!("--device {}", args.device))?;
    let flops = forward_flops(&arch);
    println!(
        "bench: preset {} ({}), S = {}, T = {}, D = {}, {} parameters, {:.3} GFLOP forward per galaxy, batch {}, device {}, kernel {} ({} threads)",
        name(&args.preset),
        name(&kind),
        arch.size,
        arch.n_lines,
        arch.latent,
        parameter_count(&arch),
        flops as f64 / 1e9,
        args.batch,
        args.device,
        oddcube_model::cell::effective_kernel(arch.cell, &device).name(),
        rayon::current_num_threads()
    );
    if oddcube_model::cell::effective_kernel(arch.cell, &device)
        == oddcube_model::config::CellKernelKind::Fused
    {
        println!(
            "bench: GFLOP/s below count the architecture's {:.3} GFLOP; the fused kernels execute {:.3} (sub-pixel up-convs)",
            flops as f64 / 1e9,
            oddcube_model::flops::executed_forward_flops(&arch) as f64 / 1e9
        );
    }
    let report = bench(
        &arch,
        args.batch,
        args.steps,
        args.warmup,
        &device,
        &Bar::new(false),
    )?;
    println!("train: {}", report.train);
    println!("infer: {}", report.infer);
    Ok(ExitCode::SUCCESS)
}
