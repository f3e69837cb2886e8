//! A trained model loaded from its directory, and the inference calls later stages use:
//! latents, reconstructions and per-galaxy losses.

use std::path::Path;

use candle_core::Device;
use candle_nn::VarMap;
use oddcube_data::Cubes;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::batches::{Augment, HostBatch};
use crate::checkpoint::{BEST_WEIGHTS, CONFIG, load_weights};
use crate::config::{CellKernelKind, LossMode, ModelConfig};
use crate::error::{ModelError, Result};
use crate::network::{Network, init_params};
use crate::train::evaluate;

/// A trained network with its configuration, on one device.
pub struct Model {
    config: ModelConfig,
    varmap: VarMap,
    net: Network,
    device: Device,
}

impl Model {
    /// Loads `dir/config.toml` and the best-validation weights `dir/best.safetensors`.
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        Self::load_with_kernel(dir, device, CellKernelKind::default())
    }

    /// [`Self::load`] computing with the `kernel` implementation, whatever kernel trained the
    /// model (they agree up to rounding; the one in `config.toml` records the training run's).
    pub fn load_with_kernel(dir: &Path, device: &Device, kernel: CellKernelKind) -> Result<Self> {
        let config_path = dir.join(CONFIG);
        let text =
            std::fs::read_to_string(&config_path).map_err(|e| ModelError::io(&config_path, e))?;
        let mut config = ModelConfig::from_toml(&text, &config_path)?;
        config.arch.cell = kernel;
        // The initial values are overwritten; the seed only fixes the parameter set.
        let varmap = init_params(&config.arch, 0, device)?;
        load_weights(&varmap, &dir.join(BEST_WEIGHTS), device)?;
        Self::from_parts(config, varmap, device)
    }

    /// Wraps parameters already in memory (e.g. straight after training).
    pub fn from_parts(config: ModelConfig, varmap: VarMap, device: &Device) -> Result<Self> {
        let net = Network::new(&config.arch, &varmap)?;
        Ok(Self {
            config,
            varmap,
            net,
            device: device.clone(),
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The parameters.
    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    /// Latent dimension D.
    pub fn latent_dim(&self) -> usize {
        self.config.arch.latent
    }

    fn check(&self, cubes: &Cubes) -> Result<()> {
        let a = &self.config.arch;
        if cubes.n_lines != a.n_lines || cubes.size != a.size {
            return Err(ModelError::Data(format!(
                "cubes have {} lines on a {}×{} grid, the model expects {} lines on {}×{}",
                cubes.n_lines, cubes.size, cubes.size, a.n_lines, a.size, a.size
            )));
        }
        if cubes.x.len() != cubes.n * cubes.galaxy_len() || cubes.w.len() != cubes.x.len() {
            return Err(ModelError::Data(
                "cube arrays do not match their stated shape".into(),
            ));
        }
        Ok(())
    }

    /// Latents `[N, D]` row-major (VAE: the posterior mean μ).
    pub fn encode(&self, cubes: &Cubes, batch: usize) -> Result<Vec<f32>> {
        self.check(cubes)?;
        let mut out = Vec::with_capacity(cubes.n * self.latent_dim());
        for host in input_batches(cubes, batch) {
            let (x, _) = host?.to_device(&self.device)?;
            let (z, _) = self.net.encode(&x)?;
            out.extend(z.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(out)
    }

    /// Reconstructions with the input's shape: `x` = x̂ (every pixel, masked ones included),
    /// `w` copied from the input.
    pub fn reconstruct(&self, cubes: &Cubes, batch: usize) -> Result<Cubes> {
        self.check(cubes)?;
        let mut x = Vec::with_capacity(cubes.x.len());
        for host in input_batches(cubes, batch) {
            let (input, _) = host?.to_device(&self.device)?;
            let fwd = self.net.forward(&input, None)?;
            x.extend(fwd.recon.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(Cubes {
            n: cubes.n,
            n_lines: cubes.n_lines,
            size: cubes.size,
            x,
            w: cubes.w.clone(),
        })
    }

    /// Latents `[N, D]` (VAE: μ) and reconstructions from one forward pass per batch — what
    /// scoring needs, without running the encoder twice.
    pub fn encode_reconstruct(&self, cubes: &Cubes, batch: usize) -> Result<(Vec<f32>, Cubes)> {
        self.check(cubes)?;
        let mut z = Vec::with_capacity(cubes.n * self.latent_dim());
        let mut x = Vec::with_capacity(cubes.x.len());
        for host in input_batches(cubes, batch) {
            let (input, _) = host?.to_device(&self.device)?;
            let fwd = self.net.forward(&input, None)?;
            z.extend(fwd.z.flatten_all()?.to_vec1::<f32>()?);
            x.extend(fwd.recon.flatten_all()?.to_vec1::<f32>()?);
        }
        let recon = Cubes {
            n: cubes.n,
            n_lines: cubes.n_lines,
            size: cubes.size,
            x,
            w: cubes.w.clone(),
        };
        Ok((z, recon))
    }

    /// Per-galaxy reconstruction loss `Σ w (x − x̂)² / Σ w` with `mode`'s weights (NaN for a
    /// galaxy without unmasked pixels).
    pub fn galaxy_losses(&self, cubes: &Cubes, batch: usize, mode: LossMode) -> Result<Vec<f64>> {
        self.check(cubes)?;
        let all: Vec<usize> = (0..cubes.n).collect();
        let sums = evaluate(&self.net, cubes, &all, mode, batch, &self.device)?;
        Ok(sums
            .iter()
            .map(|s| {
                if s.weight > 0.0 {
                    s.sse / s.weight
                } else {
                    f64::NAN
                }
            })
            .collect())
    }
}

/// Unaugmented input batches of all galaxies in order (masked pixels zeroed).
fn input_batches(cubes: &Cubes, batch: usize) -> impl Iterator<Item = Result<HostBatch>> + '_ {
    let all: Vec<usize> = (0..cubes.n).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let chunks: Vec<Vec<usize>> = all.chunks(batch.max(1)).map(<[usize]>::to_vec).collect();
    chunks
        .into_iter()
        .map(move |c| HostBatch::assemble(cubes, &c, LossMode::Mse, Augment::default(), &mut rng))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::save_weights;
    use crate::config::{DataInfo, ModelKind, TrainConfig};
    use crate::synthetic::synthetic_cubes;
    use crate::train::{TrainOptions, train};
    use oddcube_data::NoProgress;

    /// A one-epoch model of `arch` (no validation split) trained on `cubes` into a fresh
    /// temporary directory.
    fn trained(
        arch: crate::config::ArchConfig,
        batch: usize,
        cubes: &Cubes,
        names: &[String],
    ) -> tempfile::TempDir {
        let config = ModelConfig {
            version: "test".into(),
            arch,
            train: TrainConfig {
                epochs: 1,
                batch,
                val_fraction: 0.0,
                ..TrainConfig::default()
            },
            data: DataInfo::default(),
        };
        let dir = tempfile::tempdir().unwrap();
        train(
            &config,
            cubes,
            names,
            dir.path(),
            &Device::Cpu,
            TrainOptions::default(),
            &NoProgress,
        )
        .unwrap();
        dir
    }

    #[test]
    fn saved_model_reloads_to_bit_identical_outputs() {
        let (cubes, names) = synthetic_cubes(6, 3, 8, 4);
        let dev = Device::Cpu;
        for kind in [ModelKind::Ae, ModelKind::Vae] {
            let mut arch = crate::network::tests::tiny(kind);
            arch.decoder_hidden = vec![3];
            let dir = trained(arch.clone(), 3, &cubes, &names);
            let model = Model::load(dir.path(), &dev).unwrap();
            let again = Model::load(dir.path(), &dev).unwrap();
            // Saving the loaded weights again reproduces the file byte for byte.
            let resaved = dir.path().join("again.safetensors");
            save_weights(model.varmap(), &resaved).unwrap();
            assert_eq!(
                std::fs::read(&resaved).unwrap(),
                std::fs::read(dir.path().join(BEST_WEIGHTS)).unwrap()
            );
            let (z1, z2) = (
                model.encode(&cubes, 4).unwrap(),
                again.encode(&cubes, 4).unwrap(),
            );
            assert_eq!(z1.len(), 6 * arch.latent);
            assert_eq!(z1, z2);
            let (r1, r2) = (
                model.reconstruct(&cubes, 4).unwrap(),
                again.reconstruct(&cubes, 4).unwrap(),
            );
            assert_eq!(r1.x, r2.x);
            let (z_both, r_both) = model.encode_reconstruct(&cubes, 4).unwrap();
            assert_eq!(z_both, z1, "one-pass latents differ from encode()");
            assert_eq!(
                r_both.x, r1.x,
                "one-pass reconstructions differ from reconstruct()"
            );
            assert_eq!(r1.shape(), cubes.shape());
            let losses = model.galaxy_losses(&cubes, 2, LossMode::Mse).unwrap();
            assert_eq!(losses.len(), 6);
            assert!(losses.iter().all(|l| l.is_finite() && *l >= 0.0));
            // Batch size does not change results beyond summation order.
            let z3 = model.encode(&cubes, 1).unwrap();
            assert!(z1.iter().zip(&z3).all(|(a, b)| (a - b).abs() < 1e-5));
        }
    }

    /// A model directory whose config.toml predates the VAE objective fields (`kl_units`,
    /// `free_bits`, `kl_warmup`) loads and computes exactly what it did.
    #[test]
    fn model_directories_from_before_the_vae_objective_fields_load() {
        let (cubes, names) = synthetic_cubes(6, 3, 8, 4);
        let dev = Device::Cpu;
        let mut arch = crate::network::tests::tiny(ModelKind::Vae);
        arch.decoder_hidden = vec![3];
        let dir = trained(arch, 3, &cubes, &names);
        let before = Model::load(dir.path(), &dev).unwrap();
        let path = dir.path().join(CONFIG);
        let text = std::fs::read_to_string(&path).unwrap();
        let old: String = text
            .lines()
            .filter(|l| {
                !(l.starts_with("kl_units")
                    || l.starts_with("free_bits")
                    || l.starts_with("kl_warmup"))
            })
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(text.lines().count(), old.lines().count() + 3, "{text}");
        std::fs::write(&path, old).unwrap();
        let after = Model::load(dir.path(), &dev).unwrap();
        assert_eq!(after.config().arch.free_bits, 0.0);
        assert_eq!(
            before.encode_reconstruct(&cubes, 4).unwrap().1.x,
            after.encode_reconstruct(&cubes, 4).unwrap().1.x
        );
    }

    #[test]
    fn wrong_shape_is_an_error() {
        let (cubes, names) = synthetic_cubes(3, 3, 8, 4);
        let dir = trained(
            crate::network::tests::tiny(ModelKind::Ae),
            TrainConfig::default().batch,
            &cubes,
            &names,
        );
        let model = Model::load(dir.path(), &Device::Cpu).unwrap();
        let (other, _) = synthetic_cubes(2, 2, 8, 4);
        assert!(model.encode(&other, 4).is_err());
        assert!(Model::load(&dir.path().join("nope"), &Device::Cpu).is_err());
    }
}
