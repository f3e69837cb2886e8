//! oddcube-explore: everything downstream of a trained model that does not need the model itself —
//! ranking metrics, false-discovery control, exact latent-space search, latent-space anomaly
//! scores, the PCA baseline, neighbour purity, and the latents artifact.

pub mod bpt_survey;
pub mod error;
pub mod evaluate;
pub mod fdr;
pub mod knn;
pub mod labels;
pub mod latents;
pub mod lof;
pub mod merge;
pub mod metrics;
pub mod pca;
pub mod plot;
pub mod project;
pub mod purity;
pub mod results;
pub mod score;
pub mod serve;
pub mod similar;

pub use error::{ExploreError, Result};
pub use knn::{KnnGraph, LatentView, Metric, Neighbour};
pub use latents::Latents;
