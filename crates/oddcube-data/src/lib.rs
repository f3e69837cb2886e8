//! oddcube-data: everything between a MaNGA DAP MAPS file and the tensors a model reads —
//! line sets, mask policy, the MAPS reader, preprocessing to a fixed grid, the on-disk dataset
//! store, sharding, and the simulated survey. No machine learning lives here.

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
pub mod maps;
pub mod mask;
pub mod merge;
pub mod preprocess;
pub mod progress;
pub mod shard;
pub mod simulate;
pub mod stats;

pub use cubes::Cubes;
pub use error::DataError;
pub use lines::LineSet;
pub use mask::MaskPolicy;
pub use progress::{NoProgress, Progress};
pub use shard::Shard;
