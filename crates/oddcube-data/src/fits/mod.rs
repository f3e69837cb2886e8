//! FITS input/output: reading on `fitsrs` ([`read`]) and, for fixtures and the simulator, a
//! small writer on `fitsio` ([`write`]).

pub mod read;
pub mod write;

pub use read::{FitsFile, Hdu, HduKind};
