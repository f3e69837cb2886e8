//! `oddcube ingest` and `oddcube inspect` as a user runs them: exit codes, messages, artifacts.

use std::path::{Path, PathBuf};

use assert_cmd::Command;

const REAL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/real/");
const DR15: &str = "manga-7815-3702-MAPS-HYB10-GAU-MILESHC.fits.gz";
const TINY: &str = "tiny-test-MAPS-HYB10-MILESHC-MASTARSSP.fits.gz";

fn real(name: &str) -> PathBuf {
    Path::new(REAL).join(name)
}

fn oddcube() -> Command {
    let mut cmd = Command::cargo_bin("oddcube").unwrap();
    cmd.env_remove("SLURM_ARRAY_TASK_ID")
        .env_remove("SLURM_ARRAY_TASK_COUNT");
    cmd
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn ingest_all_good_exits_zero_and_writes_every_artifact() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ds");
    let result = oddcube()
        .args([
            "ingest", "--lines", "dr15", "--size", "16", "--jobs", "1", "--out",
        ])
        .arg(&out)
        .arg(real(DR15))
        .arg(real(TINY))
        .output()
        .unwrap();
    assert_eq!(result.status.code(), Some(0), "{}", text(&result.stderr));
    assert!(
        text(&result.stdout).contains("ingested 2 galaxies"),
        "{}",
        text(&result.stdout)
    );
    for name in [
        "cubes.safetensors",
        "galaxies.parquet",
        "galaxies.csv",
        "manifest.json",
        "skipped.csv",
    ] {
        assert!(out.join(name).is_file(), "{name}");
    }
    let ds = oddcube_data::dataset::Dataset::open(&out).unwrap();
    assert_eq!(ds.cubes.shape(), [2, 19, 16, 16]);
    assert_eq!(ds.galaxies[0].plateifu, "7815-3702");
    assert!(ds.manifest.created_by.contains("ingest"));
    // The PLATEIFU fallback is reported as a warning.
    assert!(
        text(&result.stderr).contains("tiny-test"),
        "{}",
        text(&result.stderr)
    );
}

#[test]
fn ingest_with_skips_exits_three_and_lists_them() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ds");
    let not_fits = dir.path().join("readme.fits");
    std::fs::write(&not_fits, "hello").unwrap();
    let result = oddcube()
        .args(["ingest", "--out"])
        .arg(&out)
        .arg(real(TINY))
        .arg(&not_fits)
        .arg(dir.path().join("nope.fits.gz"))
        .output()
        .unwrap();
    assert_eq!(result.status.code(), Some(3), "{}", text(&result.stderr));
    let stderr = text(&result.stderr);
    assert!(
        stderr.contains("skipped ") && stderr.contains("readme.fits: not a valid FITS file"),
        "{stderr}"
    );
    assert!(stderr.contains("nope.fits.gz: cannot read"), "{stderr}");
    let skipped = std::fs::read_to_string(out.join("skipped.csv")).unwrap();
    assert_eq!(skipped.lines().count(), 3, "{skipped}");
}

#[test]
fn ingest_with_nothing_usable_exits_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ds");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    // The DR15 file lacks lines of the default dr17 set.
    let result = oddcube()
        .args(["ingest", "--out"])
        .arg(&out)
        .arg(&empty)
        .arg(real(DR15))
        .output()
        .unwrap();
    assert_eq!(result.status.code(), Some(1));
    let stderr = text(&result.stderr);
    assert!(stderr.contains("no input could be ingested"), "{stderr}");
    assert!(
        stderr.contains("line NI-5199 is not in this file"),
        "{stderr}"
    );
    // The error says what the file is and the option that reads it.
    assert!(
        stderr.contains("DR15-layout file") && stderr.contains("--lines dr15"),
        "{stderr}"
    );
    assert!(!out.join("manifest.json").exists());
    assert!(out.join("skipped.csv").exists());
}

#[test]
fn ingest_shard_writes_a_part_directory_and_rejects_bad_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ds");
    let tiny_shard = (0..2)
        .find(|&i| {
            oddcube_data::Shard::new(i, 2)
                .unwrap()
                .contains("tiny-test")
        })
        .unwrap();
    let result = oddcube()
        .args(["ingest", "--shard", &format!("{tiny_shard}/2"), "--out"])
        .arg(&out)
        .arg(real(TINY))
        .output()
        .unwrap();
    assert_eq!(result.status.code(), Some(0), "{}", text(&result.stderr));
    assert!(
        out.join(format!("part-{tiny_shard}-of-2/manifest.json"))
            .is_file()
    );
    for bad in [
        ["--shard", "2/2"],
        ["--lines", "Ha-6564,Halpha"],
        ["--size", "0"],
        ["--mask-policy", "loose"],
    ] {
        let result = oddcube()
            .arg("ingest")
            .args(bad)
            .arg("--out")
            .arg(&out)
            .arg(real(TINY))
            .output()
            .unwrap();
        assert!(!result.status.success(), "{bad:?}");
    }
}

#[test]
fn inspect_prints_text_and_json() {
    let result = oddcube().arg("inspect").arg(real(TINY)).output().unwrap();
    assert!(result.status.success());
    let out = text(&result.stdout);
    assert!(out.contains("tiny-test (from the file name)"), "{out}");
    assert!(out.contains("EMLINE_GFLUX channels (35)"), "{out}");
    assert!(out.contains("HDUs (64)"), "{out}");
    // The DAP's test cube has DAPQUAL bit 5 (BADGEOM) and no DRP3QUAL card; neither is CRITICAL.
    assert!(
        out.contains("quality    DAPQUAL 32 (BADGEOM), DRP3QUAL absent\n"),
        "{out}"
    );
    // Which line presets read the file, with the option that picks them.
    assert!(
        out.contains("layout     DR17 DAP (35 emission-line channels)")
            && out.contains("dr17 (--lines dr17), dr15 (--lines dr15)"),
        "{out}"
    );
    let result = oddcube()
        .args(["inspect", "--json"])
        .arg(real(DR15))
        .output()
        .unwrap();
    assert!(result.status.success());
    let json: serde_json::Value = serde_json::from_slice(&result.stdout).unwrap();
    assert_eq!(json["meta"]["plateifu"], "7815-3702");
    assert_eq!(json["footprint_spaxels"], 1114);
    assert_eq!(json["lines"][18]["name"], "Ha-6564");
    assert_eq!(json["lines"][18]["good_spaxels"], 769);
    assert_eq!(json["layout"], "DR15");
    assert_eq!(json["line_presets"], serde_json::json!(["dr15"]));
    let text_report = oddcube().arg("inspect").arg(real(DR15)).output().unwrap();
    let out = text(&text_report.stdout);
    assert!(
        out.contains("DR15 DAP (22 emission-line channels)") && out.contains("dr15 (--lines dr15)"),
        "{out}"
    );
}

#[test]
fn inspect_bad_file_is_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("broken.fits.gz");
    let bytes = std::fs::read(real(TINY)).unwrap();
    std::fs::write(&bad, &bytes[..1000]).unwrap();
    let result = oddcube().arg("inspect").arg(&bad).output().unwrap();
    assert_eq!(result.status.code(), Some(1));
    let stderr = text(&result.stderr);
    assert!(
        stderr.contains("broken.fits.gz: bad gzip stream: truncated"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

/// A header card whose value is a lone `'` makes fitsrs panic inside the reader; the user sees
/// only the one-line error, not the panic message or (with RUST_BACKTRACE=1) a backtrace.
#[test]
fn inspect_file_that_panics_the_parser_is_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("lone-quote.fits");
    let mut bytes: Vec<u8> = [
        "SIMPLE  =                    T",
        "BITPIX  =                    8",
        "NAXIS   =                    0",
        "DAPTYPE = '",
        "END",
    ]
    .iter()
    .flat_map(|card| format!("{card:<80}").into_bytes())
    .collect();
    bytes.resize(2880, b' ');
    std::fs::write(&bad, bytes).unwrap();
    let result = oddcube()
        .arg("inspect")
        .arg(&bad)
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    assert_eq!(result.status.code(), Some(1));
    let stderr = text(&result.stderr);
    assert!(
        stderr.contains("lone-quote.fits") && stderr.contains("malformed"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}
