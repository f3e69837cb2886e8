//! # oddcube-score
//!
//! Everything between a trained model's output and a judged RESULTS directory: per-galaxy
//! anomaly scores and anomaly maps, latent-space scores, the null model behind the p-values,
//! false-discovery control, the user's label feedback, the RESULTS artifact contract, merging
//! shards, latent search, and evaluation against known labels next to a PCA baseline. It never
//! compiles the network (no candle), the web server or the plotting stack: a model is reached
//! through the small [`Autoencoder`] trait, which the `oddcube` crate implements for the candle
//! model (`oddcube::scorer::ModelScorer`). `docs/scoring.md` explains the scores,
//! `docs/architecture.md` where each is computed.
//!
//! ## Where to start
//!
//! - [`score::score_galaxies`] runs an [`Autoencoder`] over a dataset's cubes and returns the
//!   per-galaxy columns (reconstruction errors, the anomaly map's scores and region, per-line
//!   shares `line:*`), the latents and the anomaly maps ([`anomaly_map`]);
//!   [`score::finalize_population_scores`] adds the columns that need every galaxy
//!   ([`score::POPULATION_COLUMNS`]: the fused score, `knn_dist`, `lof`, `pvalue`, `qvalue`,
//!   `fdr_flag`, `rank`). An unsharded `oddcube score` and [`merge::merge_results`] both finish
//!   through it.
//! - [`calibration`] is the null model of ordinary galaxies, fitted at train time and stored with
//!   the model ([`calibration::StoredNull`]), built from the contamination-robust statistics of
//!   [`robust`] (MAD σ, upper-tail σ, Huber regression, the normal tail); [`fdr`] turns p-values
//!   into Benjamini–Hochberg q-values and flags. [`ensemble`] is the restart ensemble: the mean
//!   of several models' fused scores, each under its own null, with the mean's own null
//!   ([`ensemble::EnsembleNull`]), which is `score` for a model trained with restarts.
//! - [`results`] owns the RESULTS directory: [`results::Catalog`] (the catalogue table),
//!   [`results::ResultsManifest`], [`results::Results`] (reading it back) and the residual maps;
//!   [`catalog_fits`] writes the catalogue's FITS copy;
//!   [`provenance`] finds the dataset and model a RESULTS directory came from.
//! - [`evaluate`] judges the score columns ([`evaluate::SCORE_COLUMNS`]) against labels —
//!   [`evaluate::evaluate_results`] is all of `oddcube evaluate` — with [`metrics`] (AUROC, AP,
//!   P@k), [`purity`] (latent neighbour purity) and [`pca`] (the linear baseline).
//! - [`knn`], [`lof`], [`latents`] and [`similar`] are the latent space: exact k-nearest
//!   neighbours, kNN-distance and local-outlier-factor scores, the `latents.npy` file, and
//!   "galaxies like this one" ([`similar::search`]).
//! - [`truth`] reads ground-truth labels (a simulated survey's `truth.csv`, BPT classes);
//!   [`feedback`] holds the labels a person gives in the explorer (`labels.csv`) and how they
//!   re-rank the catalogue; [`relevance`] is the active-learning model fitted to those labels
//!   (relevance over latents and scores, blended with the anomaly percentile) that the explorer
//!   runs live and `score --labels` writes.
//!
//! Every fallible function returns [`Error`], whose variants name the offending input.

pub mod anomaly_map;
pub mod calibration;
pub mod catalog_fits;
pub mod ensemble;
pub mod error;
pub mod evaluate;
pub mod fdr;
pub mod feedback;
pub mod knn;
pub mod latents;
pub mod localization;
pub mod lof;
pub mod merge;
pub mod metrics;
pub mod pca;
pub mod pipeline;
pub mod provenance;
pub mod purity;
pub mod relevance;
pub mod results;
pub mod robust;
pub mod score;
pub mod similar;
pub mod truth;

pub use error::{Error, Result};
pub use knn::{KnnGraph, LatentView, Metric, Neighbour};
pub use latents::Latents;
pub use results::{Catalog, Results, ResultsManifest};
pub use score::{Autoencoder, ScoreSettings};
