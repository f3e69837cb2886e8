//! The candle network behind `oddcube_score`'s [`Autoencoder`] trait: the one place where the
//! scoring library meets the model, so `oddcube-score` itself never compiles candle.

use std::path::Path;

use anyhow::Context;
use oddcube_data::Cubes;
use oddcube_model::Model;
use oddcube_score::score::Autoencoder;

/// A trained [`Model`] as an [`Autoencoder`], run `batch` galaxies at a time.
pub struct ModelScorer {
    /// The network.
    pub model: Model,
    /// Galaxies per forward pass.
    pub batch: usize,
}

impl ModelScorer {
    /// Loads the model directory `dir` on `device` (`cpu`, `cuda`, `cuda:N`) with a readable error.
    pub fn load(dir: &Path, device: &str, batch: usize) -> anyhow::Result<ModelScorer> {
        anyhow::ensure!(batch > 0, "--batch must be at least 1");
        let device =
            oddcube_model::select_device(device).with_context(|| format!("device {device:?}"))?;
        let model = Model::load(dir, &device)
            .with_context(|| format!("loading model {}", dir.display()))?;
        Ok(ModelScorer { model, batch })
    }
}

impl Autoencoder for ModelScorer {
    fn latent_dim(&self) -> usize {
        self.model.latent_dim()
    }

    fn encode_reconstruct(
        &self,
        cubes: &Cubes,
    ) -> std::result::Result<(Vec<f32>, Vec<f32>), String> {
        let (z, xhat) = self
            .model
            .encode_reconstruct(cubes, self.batch)
            .map_err(|e| e.to_string())?;
        Ok((z, xhat.x))
    }
}
