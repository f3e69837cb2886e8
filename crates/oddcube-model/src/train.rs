//! The training loop: split, epochs of augmented mini-batches, AdamW with warm-up + cosine
//! schedule, validation, early stopping, and per-epoch atomic checkpoints that make `resume`
//! continue exactly where an interrupted run stopped.
//!
//! Reproducibility: every random draw (initial weights, shuffling, D4 transforms, IVAR noise,
//! VAE samples) comes from ChaCha RNGs seeded from (seed, epoch) on the host, so a CPU run is
//! a deterministic function of data and configuration, and a resumed run repeats the epochs it
//! missed draw for draw. The remaining nondeterminism is floating-point summation order in
//! parallel kernels: on CPU candle's kernels split work over output elements, not over sums,
//! so runs are bit-identical in practice (the tests check 2 epochs against 1 + resume + 1 to
//! 1e-6); on CUDA, atomics in reductions can change the last bits between runs.

use std::path::Path;
use std::time::Instant;

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use oddcube_data::{Cubes, Progress};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use crate::batches::{
    Augment, HostBatch, elbo_kl_scale, mean_baseline_loss, mean_map, normalisation, split,
};
use crate::checkpoint::{
    BEST_WEIGHTS, CONFIG, EpochRecord, HISTORY, LAST_CHECKPOINT, LoopState, history_csv,
    load_checkpoint, save_checkpoint, save_weights, write_atomic,
};
use crate::config::{ArchConfig, KlUnits, LossMode, ModelConfig, ModelKind};
use crate::error::{ModelError, Result};
use crate::loss::{KlWeight, objective, per_galaxy_sse};
use crate::network::{Network, init_params, trainable_vars};
use crate::optim::{AdamW, Schedule};

/// The RNG of epoch `epoch` (0-based): stream `epoch + 1` of the run's seed (stream 0 draws
/// the initial weights).
pub fn epoch_rng(seed: u64, epoch: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(epoch as u64 + 1);
    rng
}

/// Standard-normal noise `[b, d]` for the VAE's reparameterisation, drawn on the host.
pub fn normal_noise(b: usize, d: usize, rng: &mut impl Rng, device: &Device) -> Result<Tensor> {
    let values: Vec<f32> = (0..b * d).map(|_| rng.sample(StandardNormal)).collect();
    Ok(Tensor::from_vec(values, (b, d), device)?)
}

/// Per-galaxy sums from a deterministic pass (VAE: decode μ).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GalaxySums {
    /// `Σ w (x − x̂)²` with the loss weights.
    pub sse: f64,
    /// `Σ w`.
    pub weight: f64,
    /// The KL term of this galaxy (0 for the plain autoencoder).
    pub kl: f64,
}

/// Variance of a latent dimension's posterior mean over galaxies above which the dimension
/// counts as active (Burda et al. 2016, "activity" `Cov_x(E[z|x]) > 0.01`): a collapsed
/// dimension gives every galaxy the same μ, whatever its KL.
pub const ACTIVE_VARIANCE: f64 = 0.01;

/// Per-dimension statistics of the latents of a deterministic pass over a set of galaxies.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LatentStats {
    /// Mean KL per galaxy of each dimension (nats; empty for the autoencoder).
    pub kl_dims: Vec<f64>,
    /// Variance over galaxies of each dimension's latent (VAE: μ).
    pub mean_var: Vec<f64>,
    /// Mean posterior σ of each dimension (empty for the autoencoder).
    pub sigma: Vec<f64>,
}

/// Running per-dimension sums of latents, for their variance over galaxies.
#[derive(Debug, Clone)]
struct LatentMoments {
    n: f64,
    sum: Vec<f64>,
    sum_sq: Vec<f64>,
}

impl LatentMoments {
    fn new(d: usize) -> Self {
        Self {
            n: 0.0,
            sum: vec![0.0; d],
            sum_sq: vec![0.0; d],
        }
    }

    /// Adds the rows of a `[B, D]` latent tensor.
    fn add(&mut self, z: &Tensor) -> Result<()> {
        for row in z.to_vec2::<f32>()? {
            self.n += 1.0;
            for (k, v) in row.into_iter().enumerate() {
                self.sum[k] += v as f64;
                self.sum_sq[k] += v as f64 * v as f64;
            }
        }
        Ok(())
    }

    /// Per-dimension variance (population) of the rows added so far.
    fn variances(&self) -> Vec<f64> {
        let n = self.n.max(1.0);
        self.sum
            .iter()
            .zip(&self.sum_sq)
            .map(|(a, b)| (b / n - (a / n) * (a / n)).max(0.0))
            .collect()
    }
}

impl LatentStats {
    /// Number of dimensions whose latent varies over the galaxies by more than
    /// [`ACTIVE_VARIANCE`].
    pub fn active_dims(&self) -> usize {
        self.mean_var
            .iter()
            .filter(|&&v| v > ACTIVE_VARIANCE)
            .count()
    }
}

/// Runs the deterministic pass over galaxies `indices` in batches and returns per-galaxy sums.
pub fn evaluate(
    net: &Network,
    cubes: &Cubes,
    indices: &[usize],
    mode: LossMode,
    batch: usize,
    device: &Device,
) -> Result<Vec<GalaxySums>> {
    Ok(evaluate_with_latents(net, cubes, indices, mode, batch, device)?.0)
}

/// [`evaluate`] plus the per-dimension latent statistics of the same pass.
pub fn evaluate_with_latents(
    net: &Network,
    cubes: &Cubes,
    indices: &[usize],
    mode: LossMode,
    batch: usize,
    device: &Device,
) -> Result<(Vec<GalaxySums>, LatentStats)> {
    let mut out = Vec::with_capacity(indices.len());
    let mut no_rng = ChaCha8Rng::seed_from_u64(0);
    let d = net.arch().latent;
    let is_vae = net.arch().kind == ModelKind::Vae;
    // Host sums over galaxies, per dimension: moments of z, KL, σ.
    let mut moments = LatentMoments::new(d);
    let (mut kl_dims, mut sigma) = (vec![0.0f64; d], vec![0.0f64; d]);
    for chunk in indices.chunks(batch.max(1)) {
        let host = HostBatch::assemble(cubes, chunk, mode, Augment::default(), &mut no_rng)?;
        let (x, w) = host.to_device(device)?;
        let fwd = net.forward(&x, None)?;
        let (sse, weight) = per_galaxy_sse(&fwd.recon, &x, &w)?;
        moments.add(&fwd.z)?;
        let kl: Vec<f32> = match &fwd.posterior {
            Some((mu, logvar)) => {
                let per =
                    ((logvar.affine(1.0, 1.0)? - mu.sqr()?)? - logvar.exp()?)?.affine(-0.5, 0.0)?;
                for row in per.to_vec2::<f32>()? {
                    for (k, v) in row.into_iter().enumerate() {
                        kl_dims[k] += v as f64;
                    }
                }
                for row in logvar.affine(0.5, 0.0)?.exp()?.to_vec2::<f32>()? {
                    for (k, v) in row.into_iter().enumerate() {
                        sigma[k] += v as f64;
                    }
                }
                per.sum(1)?.to_vec1()?
            }
            None => vec![0.0; chunk.len()],
        };
        let (sse, weight): (Vec<f32>, Vec<f32>) = (sse.to_vec1()?, weight.to_vec1()?);
        for k in 0..chunk.len() {
            out.push(GalaxySums {
                sse: sse[k] as f64,
                weight: weight[k] as f64,
                kl: kl[k] as f64,
            });
        }
    }
    let n = indices.len().max(1) as f64;
    let stats = LatentStats {
        mean_var: moments.variances(),
        kl_dims: if is_vae {
            kl_dims.iter().map(|v| v / n).collect()
        } else {
            Vec::new()
        },
        sigma: if is_vae {
            sigma.iter().map(|v| v / n).collect()
        } else {
            Vec::new()
        },
    };
    Ok((out, stats))
}

/// Pooled reconstruction loss `Σ sse / Σ w` over a set of galaxies (NaN without weight).
pub fn pooled_recon(sums: &[GalaxySums]) -> f64 {
    let sse: f64 = sums.iter().map(|s| s.sse).sum();
    let weight: f64 = sums.iter().map(|s| s.weight).sum();
    if weight > 0.0 { sse / weight } else { f64::NAN }
}

/// Mean KL per galaxy over a set of galaxies (0 for none).
pub fn mean_kl(sums: &[GalaxySums]) -> f64 {
    sums.iter().map(|s| s.kl).sum::<f64>() / sums.len().max(1) as f64
}

/// `Σ_d max(KL_d, λ)` on host values: the free-bits KL of [`crate::loss::free_bits_kl`].
pub fn free_bits_sum(kl_dims: &[f64], free_bits: f64) -> f64 {
    kl_dims.iter().map(|&k| k.max(free_bits)).sum()
}

/// The factor between `arch.beta` and the weight of the KL term when training on
/// `train` with `mode`'s weights: 1 for [`KlUnits::Absolute`], [`elbo_kl_scale`] for
/// [`KlUnits::Elbo`] (and 0 for the autoencoder, which has no KL term).
pub fn kl_scale(arch: &ArchConfig, train: &Cubes, mode: LossMode) -> Result<f64> {
    Ok(match (arch.kind, arch.kl_units) {
        (ModelKind::Ae, _) => 0.0,
        (ModelKind::Vae, KlUnits::Absolute) => 1.0,
        (ModelKind::Vae, KlUnits::Elbo) => elbo_kl_scale(train, mode)?,
    })
}

/// Options of one call to [`train`].
#[derive(Debug, Clone, Copy, Default)]
pub struct TrainOptions {
    /// Continue from the directory's last checkpoint (fresh start when there is none).
    pub resume: bool,
    /// Run at most this many epochs in this call (the schedule still spans all epochs), e.g. to
    /// fit a batch-queue time limit and `resume` later.
    pub max_epochs_this_call: Option<usize>,
}

/// What a training run reports.
#[derive(Debug, Clone)]
pub struct TrainReport {
    /// Final loop state, including the history.
    pub state: LoopState,
    /// Training galaxies.
    pub n_train: usize,
    /// Validation galaxies.
    pub n_val: usize,
    /// Loss of predicting every validation galaxy (training galaxies without a validation set)
    /// by the training set's weighted per-pixel mean.
    pub mean_baseline: f64,
}

/// Trains the model described by `config` on `cubes` (galaxy names `plateifus`, used for the
/// validation split) into `out_dir`: `config.toml`, `best.safetensors`, `last.ckpt.safetensors`
/// and `history.csv`.
pub fn train(
    config: &ModelConfig,
    cubes: &Cubes,
    plateifus: &[String],
    out_dir: &Path,
    device: &Device,
    options: TrainOptions,
    progress: &dyn Progress,
) -> Result<TrainReport> {
    let (arch, tc) = (&config.arch, &config.train);
    arch.validate()?;
    tc.validate()?;
    if cubes.n_lines != arch.n_lines || cubes.size != arch.size {
        return Err(ModelError::Data(format!(
            "cubes have {} lines on a {}×{} grid, the model expects {} lines on {}×{}",
            cubes.n_lines, cubes.size, cubes.size, arch.n_lines, arch.size, arch.size
        )));
    }
    if plateifus.len() != cubes.n
        || cubes.x.len() != cubes.n * cubes.galaxy_len()
        || cubes.w.len() != cubes.x.len()
    {
        return Err(ModelError::Data(format!(
            "{} galaxy names for {} cubes (or cube arrays of the wrong length)",
            plateifus.len(),
            cubes.n
        )));
    }
    let (train_idx, val_idx) = split(plateifus, tc.val_fraction);
    if train_idx.is_empty() {
        return Err(ModelError::Data(
            "no training galaxies after the validation split".into(),
        ));
    }
    let mut config = config.clone();
    config.data.n_train = train_idx.len();
    config.data.n_val = val_idx.len();

    std::fs::create_dir_all(out_dir).map_err(|e| ModelError::io(out_dir, e))?;
    let config_path = out_dir.join(CONFIG);
    let ckpt_path = out_dir.join(LAST_CHECKPOINT);
    if options.resume && config_path.exists() {
        let text =
            std::fs::read_to_string(&config_path).map_err(|e| ModelError::io(&config_path, e))?;
        let saved = ModelConfig::from_toml(&text, &config_path)?;
        let same_train = crate::config::TrainConfig {
            epochs: tc.epochs,
            ..saved.train.clone()
        } == *tc;
        if saved.arch != *arch
            || !same_train
            || saved.data.manifest_hash != config.data.manifest_hash
        {
            return Err(ModelError::Config(format!(
                "{} was written for a different architecture, training settings or dataset; \
                 resume with the same settings (only the epoch count may change)",
                config_path.display()
            )));
        }
    }
    // A committed epoch leaves best weights, then the checkpoint, then history.csv. Best weights
    // and history without the checkpoint mean it was removed: starting again would silently
    // replace the trained weights it was asked to continue. (Best weights alone are a job
    // stopped inside its first epoch, which starts again, as a requeued batch job expects.)
    if options.resume
        && !ckpt_path.exists()
        && out_dir.join(BEST_WEIGHTS).exists()
        && out_dir.join(HISTORY).exists()
    {
        return Err(ModelError::Config(format!(
            "{} holds a trained model but no {LAST_CHECKPOINT} to resume from; train into \
             another directory, or remove the model to start again",
            out_dir.display()
        )));
    }
    if !options.resume && ckpt_path.exists() {
        return Err(ModelError::Config(format!(
            "{} already holds a trained model; pass --resume to continue it or choose another output",
            out_dir.display()
        )));
    }
    write_atomic(&config_path, config.to_toml()?.as_bytes())?;

    let mut varmap: VarMap = init_params(arch, tc.seed, device)?;
    let net = Network::new(arch, &varmap)?;
    let mut optimiser = AdamW::new(trainable_vars(&varmap)?, tc.weight_decay)?;
    let train_cubes = cubes.select(&train_idx);
    let mut state = if options.resume && ckpt_path.exists() {
        load_checkpoint(&ckpt_path, &varmap, &mut optimiser, device)?
    } else {
        // Start from the mean-galaxy prediction (see `dec.mean` in the network), with inputs
        // and outputs normalised by the training set (see `NORM_PREFIX`).
        let mean = mean_map(&train_cubes, tc.loss);
        let shape = (arch.n_lines, arch.size, arch.size);
        varmap.set_one("dec.mean", Tensor::from_vec(mean, shape, device)?)?;
        let (norm_mean, norm_scale) = normalisation(&train_cubes);
        varmap.set_one("norm.mean", Tensor::from_vec(norm_mean, shape, device)?)?;
        varmap.set_one(
            "norm.scale",
            Tensor::from_vec(norm_scale, arch.n_lines, device)?,
        )?;
        LoopState::default()
    };

    let baseline = {
        let eval_cubes = if val_idx.is_empty() {
            train_cubes.clone()
        } else {
            cubes.select(&val_idx)
        };
        mean_baseline_loss(&train_cubes, &eval_cubes, tc.loss)?
    };
    // Multiplies β (after warm-up) into the weight of the KL term (see `KlUnits`).
    let kl_scale = kl_scale(arch, &train_cubes, tc.loss)?;
    drop(train_cubes);

    let steps_per_epoch = train_idx.len().div_ceil(tc.batch) as u64;
    let total_steps = steps_per_epoch * tc.epochs as u64;
    let schedule = Schedule {
        peak: tc.lr,
        warmup: ((tc.warmup_fraction * total_steps as f64).round() as u64).max(1),
        total: total_steps,
        min_fraction: tc.min_lr_fraction,
    };
    let augment = Augment {
        flips: tc.augment,
        noise: tc.noise,
    };
    let last_epoch = match options.max_epochs_this_call {
        Some(n) => (state.epoch + n).min(tc.epochs),
        None => tc.epochs,
    };

    while state.epoch < last_epoch && !state.stopped {
        let started = Instant::now();
        let epoch = state.epoch;
        let mut rng = epoch_rng(tc.seed, epoch);
        let mut order = train_idx.clone();
        order.shuffle(&mut rng);
        progress.start(
            &format!("epoch {}/{}", epoch + 1, tc.epochs),
            order.len() as u64,
        );
        let (mut sse_sum, mut weight_sum, mut kl_sum, mut lr) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
        // The loss as trained: reconstruction plus each step's (warming-up, free-bits) KL term.
        let mut kl_term_sum = 0.0f64;
        let mut kl_beta = 0.0f64;
        // Posterior means of the epoch's (augmented) training galaxies, for the active-dimension
        // count of a run without a validation set.
        let mut train_moments = LatentMoments::new(arch.latent);
        let mut seen = 0usize;
        for chunk in order.chunks(tc.batch) {
            let host = HostBatch::assemble(cubes, chunk, tc.loss, augment, &mut rng)?;
            let (x, w) = host.to_device(device)?;
            let eps = match arch.kind {
                ModelKind::Vae => Some(normal_noise(chunk.len(), arch.latent, &mut rng, device)?),
                ModelKind::Ae => None,
            };
            let fwd = net.forward(&x, eps.as_ref())?;
            let batch_weight = host.weight_sum();
            kl_beta = match arch.kind {
                ModelKind::Vae => kl_scale * arch.kl_beta(optimiser.step_count(), total_steps),
                ModelKind::Ae => 0.0,
            };
            let kl_weight = KlWeight {
                beta: kl_beta,
                free_bits: arch.free_bits,
            };
            let obj = objective(&fwd, &x, &w, batch_weight, kl_weight)?;
            if !obj.sse.is_finite() || !obj.kl.is_finite() {
                return Err(ModelError::Diverged(format!(
                    "non-finite loss in epoch {} (lower --lr?)",
                    epoch + 1
                )));
            }
            let grads = obj.loss.backward()?;
            let scale = if tc.clip_norm > 0.0 {
                let norm = optimiser.grad_norm(&grads)?;
                if norm > tc.clip_norm {
                    tc.clip_norm / norm
                } else {
                    1.0
                }
            } else {
                1.0
            };
            lr = schedule.lr(optimiser.step_count());
            optimiser.step(&grads, lr, scale)?;
            if val_idx.is_empty() {
                match &fwd.posterior {
                    Some((mu, _)) => train_moments.add(mu)?,
                    None => train_moments.add(&fwd.z)?,
                }
            }
            sse_sum += obj.sse;
            weight_sum += batch_weight;
            kl_sum += obj.kl * chunk.len() as f64;
            kl_term_sum +=
                kl_beta * free_bits_sum(&obj.kl_dims, arch.free_bits) * chunk.len() as f64;
            seen += chunk.len();
            progress.advance(chunk.len() as u64);
            progress.message(&format!(
                "loss {:.4}  {:.1} samples/s",
                sse_sum / weight_sum.max(f64::MIN_POSITIVE) + kl_term_sum / seen.max(1) as f64,
                seen as f64 / started.elapsed().as_secs_f64().max(1e-9)
            ));
        }
        progress.finish();
        let train_recon = sse_sum / weight_sum.max(f64::MIN_POSITIVE);
        let train_kl = kl_sum / order.len() as f64;
        let train_loss = train_recon + kl_term_sum / order.len() as f64;
        let (val_recon, val_kl, active_dims) = if val_idx.is_empty() {
            let active = LatentStats {
                mean_var: train_moments.variances(),
                ..LatentStats::default()
            }
            .active_dims();
            (f64::NAN, f64::NAN, active)
        } else {
            let (sums, latents) =
                evaluate_with_latents(&net, cubes, &val_idx, tc.loss, tc.batch, device)?;
            (pooled_recon(&sums), mean_kl(&sums), latents.active_dims())
        };
        // Model selection and early stopping use the reconstruction of the deterministic pass
        // alone, for the VAE too: it is what the scores are computed from, it is comparable
        // with the autoencoder's and the mean-galaxy baseline, and it stays comparable across
        // epochs while the KL weight warms up (an objective with the current β rises during
        // warm-up however well the model learns). The KL is reported next to it.
        let val_loss = val_recon;
        let selection = if val_idx.is_empty() {
            train_recon
        } else {
            val_loss
        };
        state.epoch += 1;
        state.adam_step = optimiser.step_count();
        if selection < state.best_val {
            state.best_val = selection;
            state.best_epoch = state.epoch;
            state.bad_epochs = 0;
            save_weights(&varmap, &out_dir.join(BEST_WEIGHTS))?;
        } else {
            state.bad_epochs += 1;
            if tc.patience > 0 && state.bad_epochs >= tc.patience {
                state.stopped = true;
            }
        }
        state.history.push(EpochRecord {
            epoch: state.epoch,
            train_loss,
            val_loss,
            lr,
            seconds: started.elapsed().as_secs_f64(),
            train_recon,
            train_kl,
            val_recon,
            val_kl,
            kl_beta,
            active_dims,
        });
        // The checkpoint is the commit point; history.csv is derived from it and rewritten after.
        save_checkpoint(&ckpt_path, &varmap, &optimiser, &state)?;
        write_atomic(
            &out_dir.join(HISTORY),
            history_csv(&state.history).as_bytes(),
        )?;
    }
    Ok(TrainReport {
        state,
        n_train: train_idx.len(),
        n_val: val_idx.len(),
        mean_baseline: baseline,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ArchConfig, CellKernelKind, DataInfo, ModelKind, TrainConfig};
    use crate::network::named_vars;
    use crate::synthetic::synthetic_cubes;
    use oddcube_data::NoProgress;

    pub(crate) fn tiny_arch(kind: ModelKind) -> ArchConfig {
        ArchConfig {
            kind,
            size: 8,
            n_lines: 3,
            downsample: 1,
            conv_channels: 4,
            hidden: vec![6],
            decoder_hidden: vec![6],
            kernel: 3,
            head_channels: 2,
            latent: 4,
            beta: 0.01,
            kl_units: crate::config::KlUnits::Absolute,
            free_bits: 0.0,
            kl_warmup: 0.0,
            cell: CellKernelKind::Reference,
        }
    }

    fn tiny_config(kind: ModelKind, epochs: usize) -> ModelConfig {
        ModelConfig {
            version: "test".into(),
            arch: tiny_arch(kind),
            train: TrainConfig {
                epochs,
                batch: 4,
                lr: 1e-2,
                val_fraction: 0.25,
                ..TrainConfig::default()
            },
            data: DataInfo::default(),
        }
    }

    fn all_weights(varmap: &VarMap) -> Vec<f32> {
        named_vars(varmap)
            .unwrap()
            .iter()
            .flat_map(|(_, v)| {
                v.as_tensor()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn loss_falls_on_a_fixed_batch() {
        for kind in [ModelKind::Ae, ModelKind::Vae] {
            let arch = tiny_arch(kind);
            let (cubes, _) = synthetic_cubes(4, 3, 8, 5);
            let dev = Device::Cpu;
            let vm = init_params(&arch, 3, &dev).unwrap();
            let net = Network::new(&arch, &vm).unwrap();
            let mut opt = AdamW::new(trainable_vars(&vm).unwrap(), 0.0).unwrap();
            let mut rng = ChaCha8Rng::seed_from_u64(0);
            let host = HostBatch::assemble(
                &cubes,
                &[0, 1, 2, 3],
                LossMode::Mse,
                Augment::default(),
                &mut rng,
            )
            .unwrap();
            let (x, w) = host.to_device(&dev).unwrap();
            let mut losses = Vec::new();
            for _ in 0..40 {
                // The VAE decodes μ here so the curve is not noisy; the KL term still counts.
                let fwd = net.forward(&x, None).unwrap();
                let weight = KlWeight {
                    beta: arch.beta,
                    free_bits: 0.0,
                };
                let obj = objective(&fwd, &x, &w, host.weight_sum(), weight).unwrap();
                losses.push(obj.loss.to_scalar::<f32>().unwrap());
                let grads = obj.loss.backward().unwrap();
                opt.step(&grads, 1e-2, 1.0).unwrap();
            }
            let (first, last) = (losses[0], *losses.last().unwrap());
            assert!(last < 0.5 * first, "{kind:?}: loss {first} → {last}");
        }
    }

    #[test]
    fn masked_pixels_change_neither_loss_nor_gradients() {
        let arch = tiny_arch(ModelKind::Vae);
        let (cubes, _) = synthetic_cubes(2, 3, 8, 9);
        let mut altered = cubes.clone();
        let mut changed = 0;
        for (x, w) in altered.x.iter_mut().zip(&altered.w) {
            if *w == 0.0 {
                *x = *x * -3.0 + 1e4;
                changed += 1;
            }
        }
        assert!(changed > 0);
        let dev = Device::Cpu;
        let vm = init_params(&arch, 1, &dev).unwrap();
        let net = Network::new(&arch, &vm).unwrap();
        let run = |c: &Cubes| {
            let mut rng = ChaCha8Rng::seed_from_u64(4);
            let aug = Augment {
                flips: true,
                noise: true,
            };
            let host = HostBatch::assemble(c, &[0, 1], LossMode::Chi2, aug, &mut rng).unwrap();
            let (x, w) = host.to_device(&dev).unwrap();
            let eps = normal_noise(2, arch.latent, &mut rng, &dev).unwrap();
            let obj = objective(
                &net.forward(&x, Some(&eps)).unwrap(),
                &x,
                &w,
                host.weight_sum(),
                KlWeight {
                    beta: arch.beta,
                    free_bits: 0.1,
                },
            )
            .unwrap();
            let grads = obj.loss.backward().unwrap();
            let g: Vec<f32> = trainable_vars(&vm)
                .unwrap()
                .iter()
                .flat_map(|(_, v)| {
                    grads
                        .get(v)
                        .unwrap()
                        .flatten_all()
                        .unwrap()
                        .to_vec1::<f32>()
                        .unwrap()
                })
                .collect();
            (obj.loss.to_scalar::<f32>().unwrap(), g)
        };
        let (loss_a, grad_a) = run(&cubes);
        let (loss_b, grad_b) = run(&altered);
        assert_eq!(loss_a, loss_b);
        assert_eq!(grad_a, grad_b);
        assert!(grad_a.iter().any(|&g| g != 0.0));
    }

    #[test]
    fn resume_matches_an_uninterrupted_run() {
        let (cubes, names) = synthetic_cubes(12, 3, 8, 2);
        let dev = Device::Cpu;
        for kind in [ModelKind::Ae, ModelKind::Vae] {
            let mut config = tiny_config(kind, 2);
            config.train.noise = true;
            // The KL warm-up spans both epochs, so the resumed half must pick up its schedule
            // from the restored step count; free bits and ELBO units take their own paths.
            config.arch.kl_warmup = 1.0;
            config.arch.free_bits = 0.05;
            config.arch.kl_units = KlUnits::Elbo;
            config.arch.beta = 1.0;
            let straight = tempfile::tempdir().unwrap();
            let full = train(
                &config,
                &cubes,
                &names,
                straight.path(),
                &dev,
                TrainOptions::default(),
                &NoProgress,
            )
            .unwrap();
            assert_eq!(full.state.epoch, 2);

            let split_dir = tempfile::tempdir().unwrap();
            let once = TrainOptions {
                resume: false,
                max_epochs_this_call: Some(1),
            };
            let first = train(
                &config,
                &cubes,
                &names,
                split_dir.path(),
                &dev,
                once,
                &NoProgress,
            )
            .unwrap();
            assert_eq!(first.state.epoch, 1);
            // Without --resume an existing model is not overwritten.
            assert!(
                train(
                    &config,
                    &cubes,
                    &names,
                    split_dir.path(),
                    &dev,
                    TrainOptions::default(),
                    &NoProgress
                )
                .is_err()
            );
            let resumed = TrainOptions {
                resume: true,
                max_epochs_this_call: None,
            };
            let second = train(
                &config,
                &cubes,
                &names,
                split_dir.path(),
                &dev,
                resumed,
                &NoProgress,
            )
            .unwrap();
            assert_eq!(second.state.epoch, 2);

            let load = |dir: &Path| {
                let vm = init_params(&config.arch, 99, &dev).unwrap();
                let mut opt = AdamW::new(trainable_vars(&vm).unwrap(), 0.0).unwrap();
                load_checkpoint(&dir.join(LAST_CHECKPOINT), &vm, &mut opt, &dev).unwrap();
                all_weights(&vm)
            };
            let (a, b) = (load(straight.path()), load(split_dir.path()));
            let max_diff = a
                .iter()
                .zip(&b)
                .map(|(p, q)| (p - q).abs())
                .fold(0.0f32, f32::max);
            assert!(
                max_diff <= 1e-6,
                "{kind:?}: resumed weights differ by {max_diff}"
            );
            let losses = |r: &TrainReport| {
                r.state
                    .history
                    .iter()
                    .map(|h| (h.train_loss, h.val_loss))
                    .collect::<Vec<_>>()
            };
            assert_eq!(losses(&full), losses(&second));
            let csv = std::fs::read_to_string(split_dir.path().join(HISTORY)).unwrap();
            assert_eq!(csv.lines().count(), 3, "{csv}");
        }
    }

    #[test]
    fn history_reports_reconstruction_and_kl_separately() {
        let (cubes, names) = synthetic_cubes(12, 3, 8, 2);
        for kind in [ModelKind::Ae, ModelKind::Vae] {
            let config = tiny_config(kind, 2);
            let dir = tempfile::tempdir().unwrap();
            let report = train(
                &config,
                &cubes,
                &names,
                dir.path(),
                &Device::Cpu,
                TrainOptions::default(),
                &NoProgress,
            )
            .unwrap();
            for h in &report.state.history {
                assert!(h.train_recon > 0.0 && h.val_recon > 0.0, "{h:?}");
                // Selection is on the reconstruction alone.
                assert_eq!(h.val_loss, h.val_recon);
                match kind {
                    ModelKind::Ae => {
                        assert_eq!((h.train_kl, h.val_kl, h.kl_beta), (0.0, 0.0, 0.0));
                        assert_eq!(h.train_loss, h.train_recon);
                    }
                    ModelKind::Vae => {
                        assert!(
                            h.train_kl > 0.0 && h.val_kl > 0.0 && h.kl_beta > 0.0,
                            "{h:?}"
                        );
                        // The trained objective adds the weighted KL term to the reconstruction.
                        assert!(h.train_loss > h.train_recon, "{h:?}");
                    }
                }
            }
            assert_eq!(
                report.state.best_val,
                report
                    .state
                    .history
                    .iter()
                    .map(|h| h.val_recon)
                    .fold(f64::INFINITY, f64::min)
            );
        }
    }

    #[test]
    fn mismatched_data_is_an_error() {
        let (cubes, names) = synthetic_cubes(4, 2, 8, 2);
        let config = tiny_config(ModelKind::Ae, 1);
        let dir = tempfile::tempdir().unwrap();
        let err = train(
            &config,
            &cubes,
            &names,
            dir.path(),
            &Device::Cpu,
            TrainOptions::default(),
            &NoProgress,
        );
        assert!(matches!(err, Err(ModelError::Data(_))));
    }
}
