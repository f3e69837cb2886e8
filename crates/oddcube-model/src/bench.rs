//! Timing of training steps and inference for an architecture on synthetic data, reported as
//! medians with achieved GFLOP/s from the FLOP count.

use std::time::Instant;

use candle_core::Device;
use oddcube_data::Progress;
use oddcube_data::stats::median;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::batches::{Augment, HostBatch};
use crate::config::{ArchConfig, LossMode, ModelKind};
use crate::error::Result;
use crate::flops::forward_flops;
use crate::loss::{KlWeight, objective};
use crate::network::{Network, init_params, trainable_vars};
use crate::optim::AdamW;
use crate::synthetic::synthetic_cubes;
use crate::train::{kl_scale, normal_noise};

/// Median timing of one kind of step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    /// Median seconds per step.
    pub seconds_per_step: f64,
    /// Galaxies per second at the median.
    pub samples_per_second: f64,
    /// Achieved GFLOP/s at the median (a training step counts 3× the forward FLOPs).
    pub gflops: f64,
}

impl std::fmt::Display for Timing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.1} samples/s, {:.1} ms/step, {:.2} GFLOP/s",
            self.samples_per_second,
            self.seconds_per_step * 1e3,
            self.gflops
        )
    }
}

/// Training and inference timings.
#[derive(Debug, Clone, Copy)]
pub struct BenchReport {
    /// Forward + backward + AdamW step.
    pub train: Timing,
    /// Deterministic forward pass.
    pub infer: Timing,
    /// Forward FLOPs per galaxy.
    pub forward_flops: u64,
}

fn timing(times: Vec<f64>, batch: usize, flops_per_step: f64) -> Timing {
    // NaN when no step was timed: the report then says so instead of inventing a time.
    let t = median(&times).unwrap_or(f64::NAN);
    Timing {
        seconds_per_step: t,
        samples_per_second: batch as f64 / t,
        gflops: flops_per_step / t / 1e9,
    }
}

/// Times `steps` training steps and `steps` inference passes of batch `batch` after `warmup`
/// untimed ones of each.
pub fn bench(
    arch: &ArchConfig,
    batch: usize,
    steps: usize,
    warmup: usize,
    device: &Device,
    progress: &dyn Progress,
) -> Result<BenchReport> {
    arch.validate()?;
    let (cubes, _) = synthetic_cubes(batch.max(1), arch.n_lines, arch.size, 11);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let indices: Vec<usize> = (0..cubes.n).collect();
    let host = HostBatch::assemble(
        &cubes,
        &indices,
        LossMode::Mse,
        Augment::default(),
        &mut rng,
    )?;
    let (x, w) = host.to_device(device)?;
    let varmap = init_params(arch, 0, device)?;
    let net = Network::new(arch, &varmap)?;
    let mut optimiser = AdamW::new(trainable_vars(&varmap)?, 0.0)?;
    // The full KL weight, as training uses it after warm-up (it does not change the timing).
    let kl_weight = KlWeight {
        beta: arch.beta * kl_scale(arch, &cubes, LossMode::Mse)?,
        free_bits: arch.free_bits,
    };
    let fwd_flops = forward_flops(arch) as f64 * batch as f64;

    progress.start("bench train", (warmup + steps) as u64);
    let mut train_times = Vec::with_capacity(steps);
    for i in 0..warmup + steps {
        let started = Instant::now();
        let eps = match arch.kind {
            ModelKind::Vae => Some(normal_noise(batch, arch.latent, &mut rng, device)?),
            ModelKind::Ae => None,
        };
        let fwd = net.forward(&x, eps.as_ref())?;
        let obj = objective(&fwd, &x, &w, host.weight_sum(), kl_weight)?;
        let grads = obj.loss.backward()?;
        optimiser.step(&grads, 1e-4, 1.0)?;
        device.synchronize()?;
        if i >= warmup {
            train_times.push(started.elapsed().as_secs_f64());
        }
        progress.advance(1);
    }
    progress.finish();

    progress.start("bench infer", (warmup + steps) as u64);
    let mut infer_times = Vec::with_capacity(steps);
    for i in 0..warmup + steps {
        let started = Instant::now();
        let fwd = net.forward(&x, None)?;
        // Bring the result to the host so lazy devices finish the work inside the timing.
        let _sum = fwd.recon.sum_all()?.to_scalar::<f32>()?;
        if i >= warmup {
            infer_times.push(started.elapsed().as_secs_f64());
        }
        progress.advance(1);
    }
    progress.finish();
    Ok(BenchReport {
        train: timing(train_times, batch, 3.0 * fwd_flops),
        infer: timing(infer_times, batch, fwd_flops),
        forward_flops: forward_flops(arch),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CellKernelKind;
    use oddcube_data::NoProgress;

    #[test]
    fn bench_runs_on_a_tiny_model() {
        let arch = ArchConfig {
            kind: ModelKind::Vae,
            size: 8,
            n_lines: 2,
            downsample: 1,
            conv_channels: 2,
            hidden: vec![2],
            decoder_hidden: vec![2],
            kernel: 3,
            head_channels: 1,
            latent: 2,
            beta: 0.1,
            kl_units: crate::config::KlUnits::Absolute,
            free_bits: 0.0,
            kl_warmup: 0.0,
            cell: CellKernelKind::Reference,
        };
        let report = bench(&arch, 2, 2, 1, &Device::Cpu, &NoProgress).unwrap();
        assert!(report.train.seconds_per_step > 0.0 && report.infer.gflops > 0.0);
        assert_eq!(report.forward_flops, forward_flops(&arch));
    }
}
