//! # oddcube-score
//!
//! Everything between a trained model's output and a judged RESULTS directory: per-galaxy
//! anomaly scores, latent-space scores, p-values with false-discovery control, the user's label
//! feedback, the RESULTS artifact contract, merging shards, latent search, and evaluation
//! against known labels next to a PCA baseline. It never compiles the network (no candle), the
//! web server or the plotting stack: a model is reached through the small [`Autoencoder`]
//! trait, which the `oddcube` binary implements for the candle model.
//!
//! ## Where to start
//!
//! - [`score::score_galaxies`] runs an [`Autoencoder`] over a dataset's cubes and returns the
//!   per-galaxy columns (`recon`, `chi2`, `line:*`) and latents; [`score::finalize_population_scores`]
//!   adds the columns that need every galaxy (`knn_dist`, `lof`, `pvalue`, `qvalue`, `fdr_flag`,
//!   `rank`). An unsharded `oddcube score` and [`merge::merge_results`] both finish through it.
//! - [`results`] owns the RESULTS directory: [`results::Catalog`] (the catalogue table),
//!   [`results::ResultsManifest`], [`results::Results`] (reading it back) and the residual maps.
//! - [`fdr`] turns p-values into Benjamini–Hochberg q-values and flags; [`metrics`] and
//!   [`evaluate`] judge a score column against labels; [`pca`] is the linear baseline.
//! - [`knn`], [`lof`], [`latents`] and [`similar`] are the latent space: exact k-nearest
//!   neighbours, kNN-distance and local-outlier-factor scores, the `latents.npy` file, and
//!   "galaxies like this one".
//! - [`truth`] reads ground-truth labels (a simulated survey's `truth.csv`, BPT classes);
//!   [`feedback`] holds the labels a person gives in the explorer (`labels.csv`) and how they
//!   re-rank the catalogue.
//!
//! Every fallible function returns [`Error`], whose variants name the offending input.

pub mod error;
pub mod evaluate;
pub mod anomaly_map;
pub mod calibration;
pub mod fdr;
pub mod feedback;
pub mod knn;
pub mod latents;
pub mod lof;
pub mod merge;
pub mod metrics;
pub mod pca;
pub mod provenance;
pub mod purity;
pub mod results;
pub mod score;
pub mod similar;
pub mod truth;

pub use error::{Error, Result};
pub use knn::{KnnGraph, LatentView, Metric, Neighbour};
pub use latents::Latents;
pub use results::{Catalog, Results, ResultsManifest};
pub use score::{Autoencoder, ScoreSettings};
