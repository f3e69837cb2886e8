//! The candle network behind `oddcube_score`'s [`Autoencoder`] trait: the one place where the
//! scoring library meets the model, so `oddcube-score` itself never compiles candle.

use std::path::Path;

use anyhow::Context;
use oddcube_data::Cubes;
use oddcube_data::dataset::{Dataset, hash_hex};
use oddcube_model::Model;
use oddcube_model::checkpoint::{BEST_WEIGHTS, CONFIG};
use oddcube_score::ensemble::{ENSEMBLE_FILE, EnsembleNull};
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

impl ModelScorer {
    /// Errors when `dataset` has another line set or flux stretch than the model was trained on
    /// (a model that did not record its stretch is not checked for it). Returns whether
    /// it is the dataset the model was trained on (the same manifest; `true` for a model that
    /// does not record one).
    pub fn check_dataset(&self, model_dir: &Path, dataset: &Dataset) -> anyhow::Result<bool> {
        let config = self.model.config();
        let lines = &dataset.manifest.lines.lines;
        if !config.data.lines.is_empty() && &config.data.lines != lines {
            anyhow::bail!(
                "model {} was trained on lines [{}] but dataset {} has [{}]",
                model_dir.display(),
                config.data.lines.join(", "),
                dataset.dir.display(),
                lines.join(", ")
            );
        }
        let stretch = dataset.manifest.normalisation.stretch;
        if let Some(trained) = config.data.stretch.filter(|&s| s != stretch) {
            anyhow::bail!(
                "model {} was trained on flux stretched as {} but dataset {} is stretched as {} \
                 (re-ingest it with the model's --stretch)",
                model_dir.display(),
                trained.describe(),
                dataset.dir.display(),
                stretch.describe()
            );
        }
        Ok(config.data.manifest_hash.is_empty()
            || config.data.manifest_hash == dataset.manifest_hash())
    }
}

/// The members of the model's restart ensemble other than the model itself, loaded as
/// [`ModelScorer::load`] loads it, by seed (`ensemble.json`, [`oddcube_score::ensemble`]); empty
/// for a model trained as a single run.
pub fn load_members(
    dir: &Path,
    device: &str,
    batch: usize,
) -> anyhow::Result<Vec<(u64, ModelScorer)>> {
    let Some(ensemble) = EnsembleNull::read(dir)? else {
        return Ok(Vec::new());
    };
    ensemble
        .members
        .iter()
        .filter(|m| !m.is_kept())
        .map(|m| {
            let member = dir.join(&m.dir);
            ModelScorer::load(&member, device, batch)
                .with_context(|| {
                    format!(
                        "loading ensemble member seed {} ({}): a model trained with restarts is \
                         scored with all of its runs, so copy its members/ directory with it (or \
                         remove {ENSEMBLE_FILE} to score with the kept run alone)",
                        m.seed,
                        member.display()
                    )
                })
                .map(|scorer| (m.seed, scorer))
        })
        .collect()
}

/// The members of [`load_members`] as the scoring pipeline takes them.
pub fn member_refs(members: &[(u64, ModelScorer)]) -> Vec<(u64, &dyn Autoencoder)> {
    members
        .iter()
        .map(|(seed, scorer)| (*seed, scorer as &dyn Autoencoder))
        .collect()
}

/// xxh3-128 of the model's config and best weights — and, for a restart ensemble, of
/// `ensemble.json` and every member's config and weights: identifies the exact networks scored
/// with.
pub fn model_hash(dir: &Path) -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    let mut read = |path: std::path::PathBuf| -> anyhow::Result<()> {
        bytes.extend(std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?);
        Ok(())
    };
    for name in [CONFIG, BEST_WEIGHTS] {
        read(dir.join(name))?;
    }
    if let Some(ensemble) = EnsembleNull::read(dir)? {
        read(dir.join(ENSEMBLE_FILE))?;
        for member in ensemble.members.iter().filter(|m| !m.is_kept()) {
            for name in [CONFIG, BEST_WEIGHTS] {
                read(dir.join(&member.dir).join(name))?;
            }
        }
    }
    Ok(hash_hex(&bytes))
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
