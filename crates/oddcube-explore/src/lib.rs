//! # oddcube-explore
//!
//! The views of a RESULTS directory: the 2-D latent map, figures and the local web explorer.
//! It reads results through `oddcube-score`'s types and computes no score of its own, and it
//! shares that crate's error type ([`oddcube_score::Error`]).
//!
//! ## Where to start
//!
//! - [`project`]: UMAP or PCA projection of the latents to 2-D (`projection.csv`), and placing
//!   new galaxies on an existing map.
//! - [`plot`]: PNG figures — a galaxy's maps, residuals and BPT map ([`plot::galaxy`]), the
//!   latent map ([`plot::map`]), score histograms ([`plot::scores`]).
//! - [`serve`]: the axum router and state of `oddcube serve`, with its JSON API
//!   ([`serve::api`]) and the embedded page; [`serve::synthetic`] writes a small RESULTS
//!   directory for tests and load benchmarks.

pub mod plot;
pub mod project;
pub mod serve;
