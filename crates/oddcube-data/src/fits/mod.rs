//! FITS input/output: reading on `fitsrs` ([`read`]), for fixtures and the simulator a small
//! writer on `fitsio` ([`write`](mod@write)), and binary tables for catalogues ([`table`]).

pub mod read;
pub mod table;
pub mod write;

pub use read::{FitsFile, Hdu, HduKind};
