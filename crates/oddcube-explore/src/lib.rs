//! # oddcube-explore
//!
//! The views of a RESULTS directory: the 2-D latent map, figures and the local web explorer.
//! It reads results through `oddcube-score`'s types and computes no score of its own (even its
//! synthetic test results go through `oddcube-score`'s scoring path), never compiles the
//! network (no candle), and shares `oddcube-score`'s error type ([`oddcube_score::Error`]).
//!
//! ## Where to start
//!
//! - [`project`]: UMAP or PCA projection of the latents to 2-D (`projection.csv`) —
//!   [`project::project_results`] for a RESULTS directory — and placing new galaxies on an
//!   existing map ([`project::place_on_results`]).
//! - [`plot`]: PNG figures — a galaxy's maps, residuals and BPT map ([`plot::galaxy`]), the
//!   latent map ([`plot::map`]), score histograms ([`plot::scores`]), each drawn from a RESULTS
//!   directory alone by [`plot::figures`]; [`plot::tiles`] are the explorer's map images.
//! - [`serve`]: the axum router and state of `oddcube serve`, with its JSON API
//!   ([`serve::api`]) and the embedded page; [`serve::synthetic`] writes a small RESULTS
//!   directory for tests and load benchmarks.

pub mod plot;
pub mod project;
pub mod serve;
