//! Ingest over good and bad inputs: every bad input is skipped with a one-line reason naming
//! it, the rest is ingested, and re-running gives byte-identical artifacts.

use std::io::Read;
use std::path::{Path, PathBuf};

use oddcube_data::dataset::{self, Dataset};
use oddcube_data::fits::write::{ImageData, WriteOptions, write_fits};
use oddcube_data::fixtures;
use oddcube_data::ingest::{IngestOptions, ingest};
use oddcube_data::preprocess::PreprocessConfig;
use oddcube_data::{LineSet, NoProgress, Shard};

const REAL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/real/");
const DR15: &str = "manga-7815-3702-MAPS-HYB10-GAU-MILESHC.fits.gz";
const TINY: &str = "tiny-test-MAPS-HYB10-MILESHC-MASTARSSP.fits.gz";

fn options(lines: LineSet, jobs: usize) -> IngestOptions {
    IngestOptions {
        lines,
        preprocess: PreprocessConfig::default(),
        shard: Shard::ALL,
        jobs,
        skip_critical: false,
        created_by: "test".to_string(),
    }
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn inflate(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// Writes one file per kind of bad input into `dir/bad` and returns the directory.
fn bad_inputs(dir: &Path) -> PathBuf {
    let bad = dir.join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    // Truncated gzip: the first half of a real file.
    let real = std::fs::read(Path::new(REAL).join(TINY)).unwrap();
    std::fs::write(bad.join("truncated.fits.gz"), &real[..real.len() / 2]).unwrap();
    // Not a FITS file.
    std::fs::write(
        bad.join("notes.fits"),
        b"these are my notes, not a FITS file\n",
    )
    .unwrap();
    // A real file whose EMLINE_GFLUX_MASK header is patched from BITPIX 32 to −32 (same byte
    // size, so the file stays a valid FITS file but the mask is no longer integer).
    let mut plain = inflate(&Path::new(REAL).join(TINY));
    let name = b"EXTNAME = 'EMLINE_GFLUX_MASK'";
    let at_name = plain.windows(name.len()).position(|w| w == name).unwrap();
    let xtension = b"XTENSION=";
    let header_start = plain[..at_name]
        .windows(xtension.len())
        .rposition(|w| w == xtension)
        .unwrap();
    let from = b"BITPIX  =                   32";
    let at = header_start
        + plain[header_start..]
            .windows(from.len())
            .position(|w| w == from)
            .unwrap();
    assert!(at < at_name);
    plain[at..at + from.len()].copy_from_slice(b"BITPIX  =                  -32");
    std::fs::write(bad.join("patched-bitpix.fits"), plain).unwrap();
    let maps = fixtures::disc("9000-1901", 12);
    let write = |name: &str, tamper: &dyn Fn(&mut Vec<oddcube_data::fits::write::ImageHdu>)| {
        let (primary, mut images) = fixtures::maps_hdus(&maps);
        tamper(&mut images);
        write_fits(&bad.join(name), &primary, &images, &WriteOptions::default()).unwrap();
    };
    write("no-gflux.fits.gz", &|im| {
        im.retain(|h| h.extname != "EMLINE_GFLUX")
    });
    write("float-mask.fits", &|im| {
        let h = im
            .iter_mut()
            .find(|h| h.extname == "EMLINE_GFLUX_MASK")
            .unwrap();
        h.data = ImageData::F32(vec![0.0; 35 * 144]);
    });
    write("shape-mismatch.fits", &|im| {
        let h = im
            .iter_mut()
            .find(|h| h.extname == "EMLINE_GFLUX_IVAR")
            .unwrap();
        h.shape = vec![35, 16, 9];
    });
    // Every value NaN: nothing good left.
    let mut nan = fixtures::disc("9001-1901", 12);
    nan.flux.iter_mut().for_each(|v| *v = f32::NAN);
    fixtures::write_maps(&nan, &bad.join("all-nan.fits")).unwrap();
    // No good spaxel: IVAR zero everywhere.
    let mut dark = fixtures::disc("9002-1901", 12);
    dark.ivar.iter_mut().for_each(|v| *v = 0.0);
    fixtures::write_maps(&dark, &bad.join("no-good.fits")).unwrap();
    // An unreadable entry: a symbolic link that points to itself (root can read any
    // permission-denied file, but no one can follow a link loop).
    std::os::unix::fs::symlink(bad.join("loop.fits"), bad.join("loop.fits")).unwrap();
    bad
}

#[test]
fn bad_inputs_are_skipped_and_good_ones_ingested() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good");
    std::fs::create_dir_all(good.join("sub")).unwrap();
    // NaN and Inf pixels are masked, not fatal.
    let mut spotty = fixtures::disc("8001-1902", 20);
    spotty.flux[23 * 400 + 210] = f32::NAN;
    spotty.ivar[23 * 400 + 211] = f32::INFINITY;
    fixtures::write_maps(&spotty, &good.join("sub/manga-8001-1902-MAPS.fits.gz")).unwrap();
    fixtures::write_maps(
        &fixtures::disc("8000-1901", 16),
        &good.join("manga-8000-1901-MAPS.fits"),
    )
    .unwrap();
    // The same galaxy again under another name: a duplicate.
    fixtures::write_maps(&fixtures::disc("8000-1901", 16), &good.join("zz-copy.fits")).unwrap();
    std::fs::copy(Path::new(REAL).join(TINY), good.join(TINY)).unwrap();
    let bad = bad_inputs(dir.path());
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let missing = dir.path().join("missing.fits");
    let glob = format!("{}/nothing-*.fits", dir.path().display());
    let out = dir.path().join("ds");
    let inputs = vec![s(&good), s(&bad), s(&empty), s(&missing), glob.clone()];
    let report = ingest(&inputs, &out, &options(LineSet::dr17(), 2), &NoProgress).unwrap();

    let ds = Dataset::open(&out).unwrap();
    let names: Vec<&str> = ds.galaxies.iter().map(|g| g.plateifu.as_str()).collect();
    assert_eq!(names, ["8000-1901", "8001-1902", "tiny-test"]);
    assert_eq!(report.n_ingested, 3);
    assert_eq!(ds.galaxies[2].notes, "plateifu-from-filename");
    // The DAP test file has no RFWHM: its PSF is unknown (NaN), not 0.
    assert!(ds.galaxies[2].psf_fwhm.is_nan());
    assert!(report.notices.iter().any(|n| n.contains("RFWHM")));
    assert!(report.notices.iter().any(|n| n.contains("PLATEIFU")));
    assert_eq!(ds.cubes.shape(), [3, 19, 32, 32]);
    assert!(ds.cubes.x.iter().chain(&ds.cubes.w).all(|v| v.is_finite()));

    let skipped = dataset::read_skipped(&out).unwrap();
    let reason_of = |needle: &str| -> String {
        let hits: Vec<_> = skipped.iter().filter(|s| s.path.contains(needle)).collect();
        assert_eq!(hits.len(), 1, "{needle}: {skipped:#?}");
        hits[0].reason.clone()
    };
    assert!(reason_of("truncated.fits.gz").contains("truncated"));
    assert!(reason_of("notes.fits").contains("not a valid FITS file"));
    assert!(reason_of("patched-bitpix.fits").contains("EMLINE_GFLUX_MASK: BITPIX -32"));
    assert!(reason_of("no-gflux.fits.gz").contains("EMLINE_GFLUX"));
    assert!(reason_of("float-mask.fits").contains("BITPIX -32"));
    assert!(reason_of("shape-mismatch.fits").contains("does not match"));
    assert!(reason_of("all-nan.fits").contains("no good spaxels"));
    assert!(reason_of("no-good.fits").contains("no good spaxels"));
    assert!(reason_of("loop.fits").contains("cannot read"));
    assert!(reason_of("empty").contains("no *.fits"));
    assert!(reason_of("missing.fits").contains("No such file"));
    assert!(reason_of("nothing-").contains("matched no files"));
    assert!(reason_of("zz-copy.fits").contains("duplicate plateifu 8000-1901"));
    assert_eq!(skipped.len(), 13);
    assert!(skipped.iter().all(|s| !s.reason.contains('\n')));
    assert_eq!(ds.manifest.n_skipped, 13);
    // Every file read is listed with its size and hash; unreadable ones are not.
    assert!(
        ds.manifest
            .sources
            .iter()
            .any(|f| f.path.ends_with(TINY) && f.bytes == 42224)
    );
    assert!(
        !ds.manifest
            .sources
            .iter()
            .any(|f| f.path.contains("loop.fits"))
    );
}

#[test]
fn rerunning_gives_identical_bytes_whatever_the_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let inputs: Vec<String> = (0..6)
        .map(|i| {
            let p = dir
                .path()
                .join(format!("manga-{}-1901-MAPS.fits.gz", 8100 + i));
            fixtures::write_maps(&fixtures::disc(&format!("{}-1901", 8100 + i), 14 + i), &p)
                .unwrap();
            s(&p)
        })
        .chain([s(&Path::new(REAL).join(DR15))])
        .collect();
    let lines = LineSet::dr15();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    ingest(&inputs, &a, &options(lines.clone(), 1), &NoProgress).unwrap();
    let mut reversed = inputs.clone();
    reversed.reverse();
    ingest(&reversed, &b, &options(lines, 2), &NoProgress).unwrap();
    for name in [
        dataset::CUBES_FILE,
        dataset::GALAXIES_PARQUET,
        dataset::GALAXIES_CSV,
        dataset::MANIFEST_FILE,
    ] {
        assert_eq!(
            std::fs::read(a.join(name)).unwrap(),
            std::fs::read(b.join(name)).unwrap(),
            "{name} differs"
        );
    }
    let ds = Dataset::open(&a).unwrap();
    assert_eq!(ds.galaxies.len(), 7);
    let real = ds
        .galaxies
        .iter()
        .find(|g| g.plateifu == "7815-3702")
        .unwrap();
    assert_eq!(
        (real.ifu_size, real.grid_size, real.mangaid.as_str()),
        (37, 42, "1-113540")
    );
    assert!(real.scale > 0.0 && real.n_good >= 769);
    // RFWHM from the primary header, through galaxies.parquet and galaxies.csv.
    assert_eq!(real.psf_fwhm, 2.59937);
    assert!(
        ds.galaxies
            .iter()
            .filter(|g| g.plateifu != "7815-3702")
            .all(|g| g.psf_fwhm == 2.5),
        "the fixtures' RFWHM"
    );
    let csv = std::fs::read_to_string(a.join(dataset::GALAXIES_CSV)).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let column = header.iter().position(|&c| c == "psf_fwhm").unwrap();
    let row = csv.lines().find(|l| l.starts_with("7815-3702,")).unwrap();
    assert_eq!(row.split(',').nth(column), Some("2.59937"));
}

#[test]
fn missing_line_is_skipped_with_the_lines_the_file_has() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ds");
    let inputs = vec![s(&Path::new(REAL).join(DR15))];
    let report = ingest(&inputs, &out, &options(LineSet::dr17(), 1), &NoProgress).unwrap();
    assert_eq!(report.n_ingested, 0);
    assert!(report.manifest_hash.is_none());
    let skipped = dataset::read_skipped(&out).unwrap();
    assert_eq!(skipped.len(), 1);
    assert!(
        skipped[0].reason.contains("NI-5199") && skipped[0].reason.contains("OII-3727,OII-3729"),
        "{skipped:?}"
    );
    assert!(
        !out.join(dataset::MANIFEST_FILE).exists(),
        "no dataset when nothing was ingested"
    );
}

#[test]
fn shards_partition_the_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let inputs: Vec<String> = (0..8)
        .map(|i| {
            let p = dir
                .path()
                .join(format!("manga-{}-3701-MAPS.fits", 8200 + i));
            fixtures::write_maps(&fixtures::disc(&format!("{}-3701", 8200 + i), 10), &p).unwrap();
            s(&p)
        })
        .collect();
    let out = dir.path().join("ds");
    let mut all = Vec::new();
    for i in 0..2 {
        let opts = IngestOptions {
            shard: Shard::new(i, 2).unwrap(),
            ..options(LineSet::dr17(), 1)
        };
        let report = ingest(&inputs, &out, &opts, &NoProgress).unwrap();
        assert_eq!(report.out_dir, out.join(format!("part-{i}-of-2")));
        let ds = Dataset::open(&report.out_dir).unwrap();
        assert!(ds.galaxies.iter().all(|g| opts.shard.contains(&g.plateifu)));
        all.extend(ds.galaxies.into_iter().map(|g| g.plateifu));
    }
    all.sort();
    assert_eq!(all.len(), 8);
    all.dedup();
    assert_eq!(all.len(), 8);
}

/// A MAPS file the DAP flagged CRITICAL (DAPQUAL bit 30) next to a clean one: by default both
/// are ingested, the critical one's flags are kept in `galaxies.*` (and named in a notice);
/// with `skip_critical` it is left out and listed in `skipped.csv` with its bits.
#[test]
fn critical_galaxies_are_kept_and_marked_or_skipped_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let maps_dir = dir.path().join("maps");
    std::fs::create_dir_all(&maps_dir).unwrap();
    let clean = fixtures::disc("9000-1901", 12);
    let mut critical = fixtures::disc("9001-1902", 12);
    critical.meta.dapqual = Some((1 << 30) | (1 << 29));
    critical.meta.drp3qual = Some(1 << 1);
    for m in [&clean, &critical] {
        let name = m.path.file_name().unwrap();
        fixtures::write_maps(m, &maps_dir.join(name)).unwrap();
    }

    let out = dir.path().join("kept");
    let report = ingest(
        &[s(&maps_dir)],
        &out,
        &options(LineSet::dr17(), 1),
        &NoProgress,
    )
    .unwrap();
    assert_eq!((report.n_ingested, report.skipped.len()), (2, 0));
    assert!(
        report
            .notices
            .iter()
            .any(|n| n.contains("9001-1902") && n.contains("CRITICAL") && n.contains("kept")),
        "{:?}",
        report.notices
    );
    let ds = Dataset::open(&out).unwrap();
    let by_name = |p: &str| ds.galaxies.iter().find(|g| g.plateifu == p).unwrap();
    let (c, k) = (by_name("9001-1902"), by_name("9000-1901"));
    assert_eq!((c.dapqual, c.drp3qual), ((1 << 30) | (1 << 29), 2));
    assert!(c.is_critical() && !k.is_critical());
    assert_eq!(c.daptype, "HYB10-MILESHC-MASTARSSP");
    let csv = std::fs::read_to_string(out.join(dataset::GALAXIES_CSV)).unwrap();
    assert!(
        csv.lines()
            .next()
            .unwrap()
            .ends_with(",dapqual,drp3qual,daptype")
    );

    let out = dir.path().join("skipped");
    let opts = IngestOptions {
        skip_critical: true,
        ..options(LineSet::dr17(), 1)
    };
    let report = ingest(&[s(&maps_dir)], &out, &opts, &NoProgress).unwrap();
    assert_eq!((report.n_ingested, report.skipped.len()), (1, 1));
    let reason = &report.skipped[0].reason;
    assert!(
        report.skipped[0].path.contains("9001-1902")
            && reason.contains("DAPQUAL DAPCRIT|CRITICAL")
            && reason.contains("DRP3QUAL BADDEPTH")
            && reason.contains("--skip-critical"),
        "{reason}"
    );
    let ds = Dataset::open(&out).unwrap();
    assert_eq!(ds.galaxies.len(), 1);
    assert_eq!(dataset::read_skipped(&out).unwrap(), report.skipped);
}
