//! oddcube-data: everything between a MaNGA DAP MAPS file and the tensors a model reads. No
//! machine learning lives here; every other oddcube crate builds on this one.
//!
//! It owns the `dataset/` artifact (`cubes.safetensors`, `galaxies.parquet` + `.csv`,
//! `manifest.json`, `skipped.csv`) and the file formats and tables shared by all stages.
//!
//! Where to start:
//!
//! - Reading: [`maps::MapsFile`] reads one MAPS file (on the FITS reader in [`fits`]);
//!   [`inspect`] reports what one holds; [`lines`] names the emission lines ([`LineSet`]) and
//!   [`mask`] decides which pixels are usable ([`MaskPolicy`]).
//! - Building a dataset: [`preprocess`] puts one galaxy's line maps on the fixed S×S grid
//!   (centring, cropping, normalisation, weights); [`ingest::ingest`] does it for many files in
//!   parallel, sharded by [`Shard`], and writes a [`dataset::Dataset`] — the store that
//!   [`dataset::Dataset::open`] reads back as [`Cubes`] plus one [`dataset::GalaxyRecord`] per
//!   galaxy; [`merge`] joins the parts of a sharded ingest.
//! - Getting data: [`fetch`] downloads DR17 MAPS files from the SDSS Science Archive Server;
//!   [`simulate`] writes a simulated survey in the same format with known anomalies and
//!   `truth.csv`; [`fixtures`] makes tiny MAPS files for tests.
//! - Physics on the maps: [`bpt`] (BPT demarcation lines and spaxel classes) and [`bpt_survey`]
//!   (the class of every galaxy's centre, `oddcube bpt`); [`quality`] names the DAPQUAL and
//!   DRP3QUAL bits and decides what is CRITICAL; [`links`] builds the Marvin and SkyServer URLs.
//! - Shared utilities: [`csv`] (the one CSV reader and writer of every artifact and input list),
//!   [`atomic`] (whole-file replacement), [`artifact`] (which artifact a directory holds, so
//!   none is written over another), [`date`] (calendar dates), [`stats`] (median),
//!   [`progress`] ([`Progress`], reporting without choosing a UI) and [`error`] ([`DataError`],
//!   whose variants name the file and the reason).
//!
//! `docs/preprocessing.md`, `docs/dataset.md` and `docs/simulation.md` describe the grid, the
//! dataset files and the simulator.

pub mod artifact;
pub mod atomic;
pub mod bpt;
pub mod bpt_survey;
pub mod csv;
pub mod cubes;
pub mod dataset;
pub mod date;
pub mod error;
pub mod fetch;
pub mod fits;
pub mod fixtures;
pub mod ingest;
pub mod inspect;
pub mod lines;
pub mod links;
pub mod maps;
pub mod mask;
pub mod merge;
pub mod preprocess;
pub mod progress;
pub mod quality;
pub mod shard;
pub mod simulate;
pub mod stats;

pub use cubes::Cubes;
pub use error::DataError;
pub use lines::LineSet;
pub use mask::MaskPolicy;
pub use progress::{NoProgress, Progress};
pub use shard::Shard;
