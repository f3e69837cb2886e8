//! The ConvLSTM autoencoder / VAE: parameter creation (seeded, device-independent), the
//! encoder and decoder, and the forward pass.

use std::collections::BTreeMap;

use candle_core::{Device, Module, Tensor, Var};
use candle_nn::VarMap;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::cell::{Conv, ConvLstmLayer, Linear, unroll_stack};
use crate::config::{ArchConfig, ModelKind};
use crate::error::{ModelError, Result};

/// The shapes of every parameter, by name, in a fixed order.
pub fn parameter_shapes(arch: &ArchConfig) -> BTreeMap<String, Vec<usize>> {
    let mut shapes = BTreeMap::new();
    let mut add = |name: String, shape: Vec<usize>| {
        shapes.insert(name, shape);
    };
    let (c, k) = (arch.conv_channels, arch.kernel);
    let mut cin = 1;
    for i in 0..arch.downsample {
        add(format!("enc.down{i}.weight"), vec![c, cin, 3, 3]);
        add(format!("enc.down{i}.bias"), vec![c]);
        cin = c;
    }
    for (l, &h) in arch.hidden.iter().enumerate() {
        add(format!("enc.lstm{l}.weight"), vec![4 * h, cin + h, k, k]);
        add(format!("enc.lstm{l}.bias"), vec![4 * h]);
        cin = h;
    }
    add(
        "enc.head.weight".into(),
        vec![arch.head_channels, cin, 3, 3],
    );
    add("enc.head.bias".into(), vec![arch.head_channels]);
    let (flat, d) = (arch.head_len(), arch.latent);
    match arch.kind {
        ModelKind::Ae => {
            add("enc.fc.weight".into(), vec![d, flat]);
            add("enc.fc.bias".into(), vec![d]);
        }
        ModelKind::Vae => {
            add("enc.mu.weight".into(), vec![d, flat]);
            add("enc.mu.bias".into(), vec![d]);
            add("enc.logvar.weight".into(), vec![d, flat]);
            add("enc.logvar.bias".into(), vec![d]);
        }
    }
    add("dec.fc.weight".into(), vec![flat, d]);
    add("dec.fc.bias".into(), vec![flat]);
    let mut cin = arch.head_channels;
    for (l, &h) in arch.decoder_hidden.iter().enumerate() {
        add(format!("dec.lstm{l}.weight"), vec![4 * h, cin + h, k, k]);
        add(format!("dec.lstm{l}.bias"), vec![4 * h]);
        cin = h;
    }
    for i in 0..arch.downsample {
        add(format!("dec.up{i}.weight"), vec![c, cin, 3, 3]);
        add(format!("dec.up{i}.bias"), vec![c]);
        cin = c;
    }
    add("dec.out.weight".into(), vec![1, cin, 3, 3]);
    add("dec.out.bias".into(), vec![1]);
    // A learned per-line, per-pixel output offset, set to the training set's mean map before
    // training: the network starts at the mean-galaxy baseline and learns the departures.
    add("dec.mean".into(), vec![arch.n_lines, arch.size, arch.size]);
    // Frozen input/output normalisation (see `NORM_PREFIX`).
    add("norm.mean".into(), vec![arch.n_lines, arch.size, arch.size]);
    add("norm.scale".into(), vec![arch.n_lines]);
    shapes
}

/// Prefix of the frozen normalisation tensors, set from the training set before training and
/// never optimised: `norm.mean` `[T, S, S]` (the training mean map) and `norm.scale` `[T]`
/// (each line's RMS departure from it). The encoder reads `(x − norm.mean) / norm.scale` and
/// the decoder emits `dec.mean + norm.scale · out`, so every line enters and leaves the network
/// at unit scale — without it the faint lines' ~0.05 signals barely move the encoder and
/// training sits at the mean-galaxy baseline for many epochs. Identity values (0 and 1) give
/// the network of models saved before these tensors existed.
pub const NORM_PREFIX: &str = "norm.";

/// Initial value of the VAE's log-variance bias: the posterior starts with σ ≈ e^{−5} ≈ 0.007.
///
/// Why: early in training μ varies over galaxies with a variance below 10⁻³ (a
/// default-initialised linear layer over small activations), so with the usual log σ² ≈ 0 the
/// sampled latent is at least 30× more noise than signal. The decoder then learns to ignore z,
/// the encoder gets no useful gradient, and on the demo survey the VAE ended at the mean galaxy
/// even with β = 0; with this bias and β = 0 it learns like the autoencoder (docs/model.md).
/// Starting with σ of the order of μ's spread makes the first epochs autoencoder-like; the KL
/// term (warmed up) then widens the posterior where that costs little reconstruction.
pub const LOGVAR_BIAS_INIT: f32 = -10.0;

/// Initial value of one parameter: uniform ±1/√fan_in (PyTorch's default for convs and linears),
/// biases likewise, except the ConvLSTM forget-gate bias which starts at 1 so the cell remembers
/// by default.
fn initial_values(name: &str, shape: &[usize], fan_in: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let len: usize = shape.iter().product();
    let bound = 1.0 / (fan_in.max(1) as f32).sqrt();
    if name == "dec.mean" || name == "norm.mean" {
        return vec![0.0; len];
    }
    if name == "norm.scale" {
        return vec![1.0; len];
    }
    let mut values: Vec<f32> = (0..len).map(|_| rng.random_range(-bound..bound)).collect();
    if name == "enc.logvar.bias" {
        // After the draw, so every other parameter keeps the value it had for this seed.
        return vec![LOGVAR_BIAS_INIT; len];
    }
    if name.contains(".lstm") && name.ends_with(".bias") {
        let hidden = len / 4;
        for v in &mut values[hidden..2 * hidden] {
            *v = 1.0;
        }
    }
    values
}

/// Creates every parameter of `arch` from `seed` in a [`VarMap`] on `device`. The values come
/// from a ChaCha RNG on the host, so they are identical on every device and platform.
pub fn init_params(arch: &ArchConfig, seed: u64, device: &Device) -> Result<VarMap> {
    arch.validate()?;
    let shapes = parameter_shapes(arch);
    let varmap = VarMap::new();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // Fan-in of a bias is its layer's weight fan-in.
    let fan_in = |name: &str| {
        let wname = name.replace(".bias", ".weight");
        shapes
            .get(&wname)
            .map(|s| s[1..].iter().product::<usize>())
            .unwrap_or(1)
    };
    {
        let mut data = varmap
            .data()
            .lock()
            .map_err(|_| ModelError::Config("parameter store lock poisoned".into()))?;
        for (name, shape) in &shapes {
            let values = initial_values(name, shape, fan_in(name), &mut rng);
            let tensor = Tensor::from_vec(values, shape.as_slice(), device)?;
            data.insert(name.clone(), Var::from_tensor(&tensor)?);
        }
    }
    Ok(varmap)
}

/// The parameters of `varmap` as named tensors, sorted by name.
pub fn named_vars(varmap: &VarMap) -> Result<Vec<(String, Var)>> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| ModelError::Config("parameter store lock poisoned".into()))?;
    let mut vars: Vec<(String, Var)> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(vars)
}

/// What a forward pass returns.
pub struct Forward {
    /// Reconstruction `[B, T, S, S]`.
    pub recon: Tensor,
    /// Latent used by the decoder `[B, D]` (VAE: the sample, or μ when no noise was given).
    pub z: Tensor,
    /// VAE only: μ and log σ², each `[B, D]`.
    pub posterior: Option<(Tensor, Tensor)>,
}

/// The network: tensors shared with a [`VarMap`], so optimiser updates show up here.
pub struct Network {
    arch: ArchConfig,
    down: Vec<Conv>,
    enc_lstm: Vec<ConvLstmLayer>,
    head: Conv,
    to_latent: Linear,
    to_logvar: Option<Linear>,
    from_latent: Linear,
    dec_lstm: Vec<ConvLstmLayer>,
    up: Vec<Conv>,
    out: Conv,
    mean: Tensor,
    norm_mean: Tensor,
    /// `norm.scale` as `[1, T, 1, 1]`.
    norm_scale: Tensor,
}

impl Network {
    /// Builds the network over the parameters in `varmap` (created by [`init_params`] or loaded).
    pub fn new(arch: &ArchConfig, varmap: &VarMap) -> Result<Self> {
        arch.validate()?;
        let data = varmap
            .data()
            .lock()
            .map_err(|_| ModelError::Config("parameter store lock poisoned".into()))?;
        let shapes = parameter_shapes(arch);
        let get = |name: &str| -> Result<Tensor> {
            let var = data
                .get(name)
                .ok_or_else(|| ModelError::Config(format!("parameter {name} is missing")))?;
            let want = shapes.get(name).map(|s| s.as_slice()).unwrap_or(&[]);
            if var.dims() != want {
                return Err(ModelError::Config(format!(
                    "parameter {name} has shape {:?}, the configuration needs {want:?}",
                    var.dims()
                )));
            }
            Ok(var.as_tensor().clone())
        };
        let conv = |p: &str, stride, upsample, relu| -> Result<Conv> {
            Conv::new(
                get(&format!("{p}.weight"))?,
                get(&format!("{p}.bias"))?,
                stride,
                upsample,
                relu,
                arch.cell,
            )
        };
        let linear = |p: &str| -> Result<Linear> {
            Ok(Linear::new(
                get(&format!("{p}.weight"))?,
                get(&format!("{p}.bias"))?,
            ))
        };
        let lstm = |p: &str, h: usize| -> Result<ConvLstmLayer> {
            Ok(ConvLstmLayer::new(
                get(&format!("{p}.weight"))?,
                get(&format!("{p}.bias"))?,
                h,
                arch.cell,
            ))
        };
        let down = (0..arch.downsample)
            .map(|i| conv(&format!("enc.down{i}"), 2, 1, true))
            .collect::<Result<_>>()?;
        let enc_lstm = arch
            .hidden
            .iter()
            .enumerate()
            .map(|(l, &h)| lstm(&format!("enc.lstm{l}"), h))
            .collect::<Result<_>>()?;
        let (to_latent, to_logvar) = match arch.kind {
            ModelKind::Ae => (linear("enc.fc")?, None),
            ModelKind::Vae => (linear("enc.mu")?, Some(linear("enc.logvar")?)),
        };
        let dec_lstm = arch
            .decoder_hidden
            .iter()
            .enumerate()
            .map(|(l, &h)| lstm(&format!("dec.lstm{l}"), h))
            .collect::<Result<_>>()?;
        let up = (0..arch.downsample)
            .map(|i| conv(&format!("dec.up{i}"), 1, 2, true))
            .collect::<Result<_>>()?;
        Ok(Self {
            arch: arch.clone(),
            down,
            enc_lstm,
            head: conv("enc.head", 1, 1, true)?,
            to_latent,
            to_logvar,
            from_latent: linear("dec.fc")?,
            dec_lstm,
            up,
            out: conv("dec.out", 1, 1, false)?,
            mean: get("dec.mean")?,
            norm_mean: get("norm.mean")?.detach(),
            norm_scale: get("norm.scale")?
                .detach()
                .reshape((1, arch.n_lines, 1, 1))?,
        })
    }

    /// The architecture.
    pub fn arch(&self) -> &ArchConfig {
        &self.arch
    }

    /// Encodes `x` `[B, T, S, S]` to the latent `[B, D]` (AE) or `(μ, log σ²)` (VAE, second
    /// element `Some`).
    pub fn encode(&self, x: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
        let (b, t, s, s2) = x.dims4()?;
        let a = &self.arch;
        if t != a.n_lines || s != a.size || s2 != a.size {
            return Err(ModelError::Data(format!(
                "input is [{b}, {t}, {s}, {s2}], the model expects [B, {}, {}, {}]",
                a.n_lines, a.size, a.size
            )));
        }
        // The per-step convs run step by step rather than on all steps as one batch: slicing a
        // step out of one big feature tensor would make autograd build a full-size gradient for
        // every slice (O(T²) memory traffic in the backward pass).
        let side = a.inner_size();
        let x = x
            .broadcast_sub(&self.norm_mean)?
            .broadcast_div(&self.norm_scale)?;
        let tops = unroll_stack(&self.enc_lstm, t, b, side, |step| {
            let mut feats = x.narrow(1, step, 1)?;
            for conv in &self.down {
                feats = conv.forward(&feats)?;
            }
            Ok(feats)
        })?;
        let last = tops
            .last()
            .ok_or_else(|| ModelError::Data("sequence of zero lines".into()))?;
        let flat = self.head.forward(last)?.reshape((b, a.head_len()))?;
        let first = self.to_latent.forward(&flat)?;
        let logvar = match &self.to_logvar {
            Some(head) => Some(bounded_logvar(&head.forward(&flat)?)?),
            None => None,
        };
        Ok((first, logvar))
    }

    /// Decodes latents `[B, D]` to reconstructions `[B, T, S, S]`.
    pub fn decode(&self, z: &Tensor) -> Result<Tensor> {
        let a = &self.arch;
        let b = z.dim(0)?;
        let side = a.inner_size();
        let seed_map =
            self.from_latent
                .forward(z)?
                .relu()?
                .reshape((b, a.head_channels, side, side))?;
        let tops = unroll_stack(&self.dec_lstm, a.n_lines, b, side, |_| Ok(seed_map.clone()))?;
        let mut maps = Tensor::stack(&tops, 1)?;
        let hidden = maps.dim(2)?;
        maps = maps.reshape((b * a.n_lines, hidden, side, side))?;
        for conv in &self.up {
            maps = conv.forward(&maps)?;
        }
        let out = self.out.forward(&maps)?;
        Ok(out
            .reshape((b, a.n_lines, a.size, a.size))?
            .broadcast_mul(&self.norm_scale)?
            .broadcast_add(&self.mean)?)
    }

    /// The full pass. `eps` `[B, D]` is the VAE's standard-normal noise; without it the VAE
    /// decodes μ (the deterministic pass used for validation and inference).
    pub fn forward(&self, x: &Tensor, eps: Option<&Tensor>) -> Result<Forward> {
        let (first, logvar) = self.encode(x)?;
        match logvar {
            None => {
                let recon = self.decode(&first)?;
                Ok(Forward {
                    recon,
                    z: first,
                    posterior: None,
                })
            }
            Some(logvar) => {
                let z = match eps {
                    Some(eps) => (&first + (logvar.affine(0.5, 0.0)?.exp()? * eps)?)?,
                    None => first.clone(),
                };
                let recon = self.decode(&z)?;
                Ok(Forward {
                    recon,
                    z,
                    posterior: Some((first, logvar)),
                })
            }
        }
    }
}

/// The VAE's log σ² from its head's output `h`: `−softplus(−h)`, which is ≈ h for h ≪ 0 and
/// approaches 0 from below for h ≫ 0, so σ ≤ 1.
///
/// Why: a posterior wider than the N(0, 1) prior never helps the objective (for a dimension
/// the decoder ignores the best σ is 1, for a used one less), but an unbounded head can
/// overshoot: on the demo survey one dimension's log σ² reached +9 within a few epochs, and
/// with samples of σ ≈ 90 training fell back to the mean galaxy for a few epochs. Computed as
/// `min(h, 0) − ln(1 + e^{−|h|})`, which never overflows.
pub fn bounded_logvar(h: &Tensor) -> Result<Tensor> {
    let min_h0 = h.neg()?.relu()?.neg()?;
    let log1p = h.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?;
    Ok((min_h0 - log1p)?)
}

/// Number of scalar parameters of `arch`.
pub fn parameter_count(arch: &ArchConfig) -> usize {
    parameter_shapes(arch)
        .iter()
        .filter(|(name, _)| !name.starts_with(NORM_PREFIX))
        .map(|(_, s)| s.iter().product::<usize>())
        .sum()
}

/// The parameters the optimiser updates: all but the frozen normalisation tensors.
pub fn trainable_vars(varmap: &VarMap) -> Result<Vec<(String, Var)>> {
    Ok(named_vars(varmap)?
        .into_iter()
        .filter(|(name, _)| !name.starts_with(NORM_PREFIX))
        .collect())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::{CellKernelKind, ModelKind};
    use candle_core::DType;

    pub(crate) fn tiny(kind: ModelKind) -> ArchConfig {
        ArchConfig {
            kind,
            size: 8,
            n_lines: 3,
            downsample: 1,
            conv_channels: 2,
            hidden: vec![3],
            decoder_hidden: vec![3, 2],
            kernel: 3,
            head_channels: 2,
            latent: 4,
            beta: 0.1,
            kl_units: crate::config::KlUnits::Absolute,
            free_bits: 0.0,
            kl_warmup: 0.0,
            cell: CellKernelKind::Reference,
        }
    }

    #[test]
    fn forward_shapes() {
        for kind in [ModelKind::Ae, ModelKind::Vae] {
            let arch = tiny(kind);
            let vm = init_params(&arch, 1, &Device::Cpu).unwrap();
            let net = Network::new(&arch, &vm).unwrap();
            let x = Tensor::zeros((2, 3, 8, 8), DType::F32, &Device::Cpu).unwrap();
            let out = net.forward(&x, None).unwrap();
            assert_eq!(out.recon.dims(), &[2, 3, 8, 8]);
            assert_eq!(out.z.dims(), &[2, 4]);
            assert_eq!(out.posterior.is_some(), kind == ModelKind::Vae);
        }
    }

    #[test]
    fn init_is_seeded() {
        let arch = tiny(ModelKind::Ae);
        let a = init_params(&arch, 7, &Device::Cpu).unwrap();
        let b = init_params(&arch, 7, &Device::Cpu).unwrap();
        let c = init_params(&arch, 8, &Device::Cpu).unwrap();
        let values = |vm: &VarMap| -> Vec<f32> {
            named_vars(vm)
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
        };
        assert_eq!(values(&a), values(&b));
        assert_ne!(values(&a), values(&c));
        let frozen = arch.n_lines * arch.size * arch.size + arch.n_lines;
        assert_eq!(values(&a).len(), parameter_count(&arch) + frozen);
    }

    #[test]
    fn bounded_logvar_values_and_gradient() {
        let dev = Device::Cpu;
        let h_vals = [-30.0f32, -10.0, -3.0, -0.5, 0.5, 3.0, 10.0, 100.0];
        let h = Var::from_tensor(&Tensor::new(&h_vals, &dev).unwrap()).unwrap();
        let lv = bounded_logvar(h.as_tensor()).unwrap();
        let got = lv.to_vec1::<f32>().unwrap();
        for (&hv, &g) in h_vals.iter().zip(&got) {
            // −softplus(−h) = −ln(1 + e^{−h}).
            let want = -(1.0 + (-(hv as f64)).exp()).ln();
            assert!(g.is_finite() && g <= 0.0, "h {hv}: {g}");
            assert!((g as f64 - want).abs() < 1e-5, "h {hv}: {g} vs {want}");
        }
        // Far below 0 it is the identity, so the initial bias sets log σ² directly.
        assert!((got[1] + 10.0).abs() < 1e-4);
        // d/dh = sigmoid(−h): 1 for h ≪ 0, vanishing for h ≫ 0.
        let grads = lv.sum_all().unwrap().backward().unwrap();
        let g = grads.get(&h).unwrap().to_vec1::<f32>().unwrap();
        for (&hv, &gv) in h_vals.iter().zip(&g) {
            let want = 1.0 / (1.0 + (hv as f64).exp());
            assert!((gv as f64 - want).abs() < 1e-5, "h {hv}: {gv} vs {want}");
        }
    }

    /// The collapse this guards against: at initialisation the posterior means of different
    /// galaxies differ by only ~0.005 here, so with σ ≈ 1 (log σ² ≈ 0, as a default-initialised
    /// head gives) the sampled z is ~190× more noise than signal and the decoder learns to
    /// ignore it. A fresh VAE (normalised as training sets it up) must start with σ of the
    /// order of the spread of μ (here ~1.8×).
    #[test]
    fn a_fresh_vae_samples_noise_of_the_order_of_its_signal() {
        use crate::batches::{Augment, HostBatch, normalisation};
        use crate::config::Preset;
        let dev = Device::Cpu;
        let arch = ArchConfig::preset(Preset::Cpu, ModelKind::Vae, 19);
        let (cubes, _) = crate::synthetic::synthetic_cubes(16, 19, 32, 3);
        let mut vm = init_params(&arch, 5, &dev).unwrap();
        let (norm_mean, norm_scale) = normalisation(&cubes);
        vm.set_one(
            "norm.mean",
            Tensor::from_vec(norm_mean, (19, 32, 32), &dev).unwrap(),
        )
        .unwrap();
        vm.set_one(
            "norm.scale",
            Tensor::from_vec(norm_scale, 19, &dev).unwrap(),
        )
        .unwrap();
        let net = Network::new(&arch, &vm).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let all: Vec<usize> = (0..16).collect();
        let host = HostBatch::assemble(
            &cubes,
            &all,
            crate::config::LossMode::Mse,
            Augment::default(),
            &mut rng,
        )
        .unwrap();
        let (x, _) = host.to_device(&dev).unwrap();
        let (mu, lv) = net.encode(&x).unwrap();
        let (mu, lv) = (
            mu.to_vec2::<f32>().unwrap(),
            lv.unwrap().to_vec2::<f32>().unwrap(),
        );
        let mut ratios: Vec<f64> = (0..arch.latent)
            .map(|d| {
                let col: Vec<f64> = mu.iter().map(|r| r[d] as f64).collect();
                let mean = col.iter().sum::<f64>() / col.len() as f64;
                let spread =
                    (col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / col.len() as f64).sqrt();
                let sigma =
                    lv.iter().map(|r| (r[d] as f64 / 2.0).exp()).sum::<f64>() / lv.len() as f64;
                sigma / spread.max(1e-12)
            })
            .collect();
        ratios.sort_by(f64::total_cmp);
        let median = ratios[ratios.len() / 2];
        assert!(
            median < 5.0,
            "σ / spread of μ: median {median} (sorted {ratios:?})"
        );
    }

    #[test]
    fn wrong_input_shape_is_an_error() {
        let arch = tiny(ModelKind::Ae);
        let vm = init_params(&arch, 1, &Device::Cpu).unwrap();
        let net = Network::new(&arch, &vm).unwrap();
        let x = Tensor::zeros((1, 2, 8, 8), DType::F32, &Device::Cpu).unwrap();
        assert!(net.forward(&x, None).is_err());
    }
}
