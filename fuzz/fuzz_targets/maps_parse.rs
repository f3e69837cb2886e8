//! Fuzz target: arbitrary bytes (plain or gzip) through the FITS parser, the MAPS reader, the
//! inspect report and preprocessing. Any panic or abort is a bug: bad input must be an error.
//!
//! Run: `cd fuzz && cargo +nightly fuzz run -O -a maps_parse corpus/maps_parse -- -max_len=65536`
//! (seed the corpus with small MAPS files, e.g. the real tiny-test file and a 4×4 fixture).

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use oddcube_data::maps::MapsFile;
use oddcube_data::preprocess::{PreprocessConfig, preprocess};
use oddcube_data::{LineSet, MaskPolicy};

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.fits");
    let Ok(maps) = MapsFile::from_bytes(data.to_vec(), path) else {
        return;
    };
    let _ = oddcube_data::inspect::report(&maps, data.len() as u64, MaskPolicy::Strict);
    // Preprocess whatever lines the file has (a fixed set would reject most inputs early).
    let lines = match LineSet::parse(&maps.channels.join(",")) {
        Ok(lines) => lines,
        Err(_) => return,
    };
    if let Ok(indices) = maps.line_indices(&lines) {
        let _ = preprocess(
            &maps,
            &indices,
            &PreprocessConfig {
                size: 8,
                ..Default::default()
            },
        );
    }
});
