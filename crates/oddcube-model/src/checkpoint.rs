//! Model-directory files: atomic writes, weight files (plain safetensors named like the
//! `VarMap`, readable from Python) and the training checkpoint (weights + optimiser moments +
//! loop state in one safetensors file, so a checkpoint is replaced in a single rename).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::network::{NORM_PREFIX, named_vars};
use crate::optim::{AdamW, Moments};

/// Name of the best-validation weights in a model directory.
pub const BEST_WEIGHTS: &str = "best.safetensors";
/// Name of the last complete epoch's checkpoint in a model directory.
pub const LAST_CHECKPOINT: &str = "last.ckpt.safetensors";
/// Name of the configuration in a model directory.
pub const CONFIG: &str = "config.toml";
/// Name of the per-epoch history in a model directory.
pub const HISTORY: &str = "history.csv";

/// Writes `bytes` to `path` so that readers see either the old file or the complete new one
/// (temporary sibling, fsync, rename, directory fsync: [`oddcube_data::atomic`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    oddcube_data::atomic::write_bytes(path, bytes).map_err(|e| ModelError::io(path, e))
}

/// Host (CPU) copies of tensors for serialisation, so any device's tensors can be written.
fn to_host(named: Vec<(String, Tensor)>) -> Result<Vec<(String, Tensor)>> {
    named
        .into_iter()
        .map(|(n, t)| Ok((n, t.to_device(&Device::Cpu)?.contiguous()?)))
        .collect()
}

fn serialize(named: Vec<(String, Tensor)>, metadata: HashMap<String, String>) -> Result<Vec<u8>> {
    let named = to_host(named)?;
    safetensors::serialize(named.iter().map(|(n, t)| (n.as_str(), t)), Some(metadata))
        .map_err(|e| ModelError::Config(format!("cannot serialise tensors: {e}")))
}

/// Saves the parameters of `varmap` (names as in the map) atomically to `path`.
pub fn save_weights(varmap: &VarMap, path: &Path) -> Result<()> {
    let named = named_vars(varmap)?
        .into_iter()
        .map(|(n, v)| (n, v.as_tensor().clone()))
        .collect();
    let meta = HashMap::from([("format".to_string(), "oddcube-weights".to_string())]);
    write_atomic(path, &serialize(named, meta)?)
}

/// Reads a safetensors file into named tensors on `device`, plus its metadata.
fn read_tensors(
    path: &Path,
    device: &Device,
) -> Result<(HashMap<String, Tensor>, HashMap<String, String>)> {
    let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
    let corrupt = |reason: String| ModelError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let (_, header) =
        safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| corrupt(e.to_string()))?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let tensors = candle_core::safetensors::load_buffer(&bytes, device)
        .map_err(|e| corrupt(e.to_string()))?;
    Ok((tensors, metadata))
}

/// Sets every parameter of `varmap` from `tensors[prefix + name]`; missing or misshapen entries
/// are errors naming `path`.
fn assign(
    varmap: &VarMap,
    tensors: &HashMap<String, Tensor>,
    prefix: &str,
    path: &Path,
) -> Result<()> {
    for (name, var) in named_vars(varmap)? {
        let key = format!("{prefix}{name}");
        if name.starts_with(NORM_PREFIX) && !tensors.contains_key(&key) {
            // Saved before normalisation existed: the identity values already in place
            // reproduce that model exactly.
            continue;
        }
        let value = tensors.get(&key).ok_or_else(|| ModelError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("tensor {key} is missing"),
        })?;
        if value.dims() != var.dims() {
            return Err(ModelError::Corrupt {
                path: path.to_path_buf(),
                reason: format!(
                    "tensor {key} has shape {:?}, expected {:?}",
                    value.dims(),
                    var.dims()
                ),
            });
        }
        var.set(value)?;
    }
    Ok(())
}

/// Loads weights written by [`save_weights`] into the existing parameters of `varmap`.
pub fn load_weights(varmap: &VarMap, path: &Path, device: &Device) -> Result<()> {
    let (tensors, _) = read_tensors(path, device)?;
    assign(varmap, &tensors, "", path)
}

/// One row of `history.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean training objective over the epoch (weighted by batch weight).
    #[serde(with = "exact_f64")]
    pub train_loss: f64,
    /// Validation objective after the epoch (NaN without a validation set).
    #[serde(with = "exact_f64")]
    pub val_loss: f64,
    /// Learning rate of the epoch's last step.
    #[serde(with = "exact_f64")]
    pub lr: f64,
    /// Wall-clock seconds of the epoch (training + validation).
    #[serde(with = "exact_f64")]
    pub seconds: f64,
    /// Training reconstruction loss `Σ w (x − x̂)² / Σ w` over the epoch (VAE: of the sampled
    /// latents). NaN in checkpoints written before it was recorded.
    #[serde(default = "nan", with = "exact_f64")]
    pub train_recon: f64,
    /// Mean KL divergence per training galaxy (nats, before β and free bits; 0 for the
    /// autoencoder).
    #[serde(default = "nan", with = "exact_f64")]
    pub train_kl: f64,
    /// Validation reconstruction loss of the deterministic pass (VAE: decoding μ) — the number
    /// to compare with the autoencoder and the mean-galaxy baseline.
    #[serde(default = "nan", with = "exact_f64")]
    pub val_recon: f64,
    /// Mean KL divergence per validation galaxy (nats; 0 for the autoencoder).
    #[serde(default = "nan", with = "exact_f64")]
    pub val_kl: f64,
    /// KL weight of the epoch's last step (after warm-up; 0 for the autoencoder).
    #[serde(default = "nan", with = "exact_f64")]
    pub kl_beta: f64,
    /// Active latent dimensions (Burda et al. 2016): those whose posterior mean (the
    /// autoencoder's latent) varies over the validation galaxies — over the epoch's augmented
    /// training galaxies when there is no validation set — with variance above
    /// [`crate::train::ACTIVE_VARIANCE`]. 0 means a collapsed posterior: the decoder gets the
    /// same latent for every galaxy. 0 also in checkpoints written before it was recorded.
    #[serde(default)]
    pub active_dims: usize,
}

fn nan() -> f64 {
    f64::NAN
}

/// Renders history rows as CSV text.
pub fn history_csv(rows: &[EpochRecord]) -> String {
    // New columns go at the end so readers of the first five keep working.
    let mut out = String::from(
        "epoch,train_loss,val_loss,lr,seconds,train_recon,train_kl,val_recon,val_kl,kl_beta,active_dims\n",
    );
    for r in rows {
        out.push_str(&format!(
            "{},{:.6e},{:.6e},{:.6e},{:.3},{:.6e},{:.6e},{:.6e},{:.6e},{:.6e},{}\n",
            r.epoch,
            r.train_loss,
            r.val_loss,
            r.lr,
            r.seconds,
            r.train_recon,
            r.train_kl,
            r.val_recon,
            r.val_kl,
            r.kl_beta,
            r.active_dims
        ));
    }
    out
}

/// Floats as decimal strings: exact round trips, and JSON can then hold NaN and infinity.
mod exact_f64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Everything about the training loop a resumed run needs besides weights and moments. The
/// random state is not stored: every epoch's RNG is derived from (seed, epoch).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoopState {
    /// Completed epochs.
    pub epoch: usize,
    /// Optimiser steps taken.
    pub adam_step: u64,
    /// Best validation objective so far (infinite before the first epoch).
    #[serde(with = "exact_f64")]
    pub best_val: f64,
    /// Epoch of the best validation objective (0 = none yet).
    pub best_epoch: usize,
    /// Epochs since the best one.
    pub bad_epochs: usize,
    /// Early stopping has ended the run.
    pub stopped: bool,
    /// Per-epoch history so far.
    pub history: Vec<EpochRecord>,
}

impl Default for LoopState {
    fn default() -> Self {
        Self {
            epoch: 0,
            adam_step: 0,
            best_val: f64::INFINITY,
            best_epoch: 0,
            bad_epochs: 0,
            stopped: false,
            history: Vec::new(),
        }
    }
}

const PARAM: &str = "param.";
const ADAM_M: &str = "adam_m.";
const ADAM_V: &str = "adam_v.";
const STATE_KEY: &str = "oddcube_loop_state";

/// Writes weights, optimiser moments and loop state to `path` in one atomic file.
pub fn save_checkpoint(
    path: &Path,
    varmap: &VarMap,
    optimiser: &AdamW,
    state: &LoopState,
) -> Result<()> {
    let mut named: Vec<(String, Tensor)> = named_vars(varmap)?
        .into_iter()
        .map(|(n, v)| (format!("{PARAM}{n}"), v.as_tensor().clone()))
        .collect();
    for (name, moments) in optimiser.state() {
        named.push((format!("{ADAM_M}{name}"), moments.m.clone()));
        named.push((format!("{ADAM_V}{name}"), moments.v.clone()));
    }
    let state_json = serde_json::to_string(state)
        .map_err(|e| ModelError::Config(format!("cannot serialise loop state: {e}")))?;
    let meta = HashMap::from([
        ("format".to_string(), "oddcube-checkpoint".to_string()),
        (STATE_KEY.to_string(), state_json),
    ]);
    write_atomic(path, &serialize(named, meta)?)
}

/// Restores weights and optimiser moments from a checkpoint and returns its loop state.
pub fn load_checkpoint(
    path: &Path,
    varmap: &VarMap,
    optimiser: &mut AdamW,
    device: &Device,
) -> Result<LoopState> {
    let (tensors, meta) = read_tensors(path, device)?;
    let corrupt = |reason: String| ModelError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let state_json = meta
        .get(STATE_KEY)
        .ok_or_else(|| corrupt("not an oddcube checkpoint (no loop state)".into()))?;
    let state: LoopState = serde_json::from_str(state_json).map_err(|e| corrupt(e.to_string()))?;
    assign(varmap, &tensors, PARAM, path)?;
    let step = state.adam_step;
    optimiser.restore(step, |name| {
        Some(Moments {
            m: tensors.get(&format!("{ADAM_M}{name}"))?.clone(),
            v: tensors.get(&format!("{ADAM_V}{name}"))?.clone(),
        })
    })?;
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.txt");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1);
    }

    fn record(epoch: usize, train_loss: f64, val_loss: f64) -> EpochRecord {
        EpochRecord {
            epoch,
            train_loss,
            val_loss,
            lr: 1e-3,
            seconds: 2.0,
            train_recon: 0.25,
            train_kl: 40.0,
            val_recon: val_loss,
            val_kl: 41.5,
            kl_beta: 1.5e-6,
            active_dims: 7,
        }
    }

    #[test]
    fn history_csv_has_the_documented_columns() {
        let text = history_csv(&[record(1, 0.5, f64::NAN)]);
        let mut lines = text.lines();
        assert_eq!(
            lines.next().unwrap(),
            "epoch,train_loss,val_loss,lr,seconds,train_recon,train_kl,val_recon,val_kl,kl_beta,active_dims"
        );
        assert_eq!(
            lines.next().unwrap(),
            "1,5.000000e-1,NaN,1.000000e-3,2.000,2.500000e-1,4.000000e1,NaN,4.150000e1,1.500000e-6,7"
        );
    }

    /// Checkpoints written before the reconstruction/KL columns existed still resume: the
    /// missing values read as NaN (unknown), not as a misleading 0.
    #[test]
    fn old_loop_state_without_the_split_losses_loads() {
        let old = r#"{"epoch":1,"adam_step":11,"best_val":"0.0059","best_epoch":1,"bad_epochs":0,
            "stopped":false,"history":[{"epoch":1,"train_loss":"0.0061","val_loss":"0.0059",
            "lr":"0.002","seconds":"3.5"}]}"#;
        let state: LoopState = serde_json::from_str(old).unwrap();
        let row = &state.history[0];
        assert_eq!(row.val_loss, 0.0059);
        assert!(row.train_recon.is_nan() && row.val_kl.is_nan() && row.kl_beta.is_nan());
        assert_eq!(row.active_dims, 0);
    }

    #[test]
    fn loop_state_survives_json_with_non_finite_values() {
        let state = LoopState {
            history: vec![record(1, 0.1, f64::NAN)],
            ..LoopState::default()
        };
        let back: LoopState =
            serde_json::from_str(&serde_json::to_string(&state).unwrap()).unwrap();
        assert_eq!(back.best_val, f64::INFINITY);
        assert!(back.history[0].val_loss.is_nan());
        assert_eq!(back.history[0].train_loss, 0.1);
        assert_eq!(back.history[0].train_kl, 40.0);
        assert_eq!(back.history[0].kl_beta, 1.5e-6);
        assert_eq!(back.history[0].active_dims, 7);
    }
}
