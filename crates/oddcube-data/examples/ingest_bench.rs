//! Ingest throughput benchmark: files/s and MB/s of reading MAPS files (inflate + parse +
//! decode of EMLINE_GFLUX/_IVAR/_MASK), of the direct big-endian decoder against fitsrs's
//! per-pixel iterator, and of the whole `ingest` (read + preprocess + write) with 1 and N
//! threads. Prints numbers; asserts nothing.
//!
//! Usage: `cargo run --release -p oddcube-data --example ingest_bench -- DIR [JOBS]`
//! (DIR: MAPS files, e.g. from `oddcube simulate`; compare with `bench/astropy_read.py DIR`).

use std::time::Instant;

use oddcube_data::fits::FitsFile;
use oddcube_data::ingest::{IngestOptions, collect_inputs, ingest};
use oddcube_data::preprocess::PreprocessConfig;
use oddcube_data::{LineSet, NoProgress, Shard};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = args.first().ok_or("usage: ingest_bench DIR [JOBS]")?;
    let jobs: usize = args.get(1).map(|j| j.parse()).transpose()?.unwrap_or(2);
    let (files, skipped) = collect_inputs(std::slice::from_ref(dir));
    if files.is_empty() {
        return Err(format!("no MAPS files in {dir}: {skipped:?}").into());
    }
    let n = files.len() as f64;
    let on_disk: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum();
    println!(
        "{} files, {:.1} MB on disk",
        files.len(),
        on_disk as f64 / 1e6
    );

    // 1. Read: inflate + headers + decode of the three cubes, one thread.
    let start = Instant::now();
    let mut inflated = 0usize;
    let mut parsed = Vec::new();
    for f in &files {
        let fits = FitsFile::open(f)?;
        inflated += fits.len_bytes();
        let flux = fits.read_f32(fits.require("EMLINE_GFLUX")?)?;
        let ivar = fits.read_f32(fits.require("EMLINE_GFLUX_IVAR")?)?;
        let mask = fits.read_i32(fits.require("EMLINE_GFLUX_MASK")?)?;
        std::hint::black_box((flux, ivar, mask));
        parsed.push(fits);
    }
    let t = start.elapsed().as_secs_f64();
    println!(
        "read (1 thread)      {:7.2} files/s  {:7.1} MB/s on disk  {:7.1} MB/s inflated",
        n / t,
        on_disk as f64 / 1e6 / t,
        inflated as f64 / 1e6 / t
    );

    // 2. Decoding GFLUX + IVAR from memory: direct decoder vs fitsrs per-pixel iterator.
    let mut cube_bytes = 0usize;
    let start = Instant::now();
    for fits in &parsed {
        for name in ["EMLINE_GFLUX", "EMLINE_GFLUX_IVAR"] {
            let hdu = fits.require(name)?;
            cube_bytes += hdu.data_len();
            std::hint::black_box(fits.read_f32(hdu)?);
        }
    }
    let direct = start.elapsed().as_secs_f64();
    let start = Instant::now();
    for fits in &parsed {
        for name in ["EMLINE_GFLUX", "EMLINE_GFLUX_IVAR"] {
            std::hint::black_box(fits.read_f32_via_iterator(fits.require(name)?)?);
        }
    }
    let iterator = start.elapsed().as_secs_f64();
    println!(
        "decode direct        {:7.1} MB/s;  fitsrs iterator {:7.1} MB/s  (direct is {:.1}× faster)",
        cube_bytes as f64 / 1e6 / direct,
        cube_bytes as f64 / 1e6 / iterator,
        iterator / direct
    );
    drop(parsed);

    // 3. Whole ingest (read + preprocess to 19×32×32 + write the dataset).
    let out = std::env::temp_dir().join(format!("oddcube-ingest-bench-{}", std::process::id()));
    for threads in [1, jobs] {
        let options = IngestOptions {
            lines: LineSet::dr17(),
            preprocess: PreprocessConfig::default(),
            shard: Shard::ALL,
            jobs: threads,
            skip_critical: false,
            created_by: "ingest_bench".to_string(),
        };
        let start = Instant::now();
        let report = ingest(std::slice::from_ref(dir), &out, &options, &NoProgress)?;
        let t = start.elapsed().as_secs_f64();
        println!(
            "ingest ({threads} thread{}) {:7.2} files/s  {:7.1} MB/s on disk  ({} ingested, {} skipped)",
            if threads == 1 { " " } else { "s" },
            n / t,
            on_disk as f64 / 1e6 / t,
            report.n_ingested,
            report.skipped.len()
        );
        if threads == jobs {
            break;
        }
    }
    std::fs::remove_dir_all(&out)?;
    Ok(())
}
