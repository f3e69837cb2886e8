//! # oddcube (library part of the binary crate)
//!
//! The glue between the libraries that no single library may own: [`scorer::ModelScorer`]
//! puts the candle network (`oddcube-model`) behind `oddcube-score`'s `Autoencoder` trait, so
//! the scoring library never compiles candle. The `oddcube` binary (`src/main.rs`, `src/cmd/`)
//! and the integration tests and benches of this crate use it. [`report`] words errors
//! (each cause once) and [`build_info`] says what a binary was built with (`--version`);
//! [`training`] trains a model and fits its null in one call, for the CLI and the Python package;
//! [`threads`] runs such work on a worker of a thread pool, where the model's kernels are fastest.

pub mod build_info;
pub mod calibrate;
pub mod report;
pub mod scorer;
pub mod threads;
pub mod training;
