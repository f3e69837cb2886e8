//! The FITS reader's panic guard keeps a caught fitsrs panic off stderr, and leaves every other
//! panic printing as before. stderr is process-wide and the panic hook too, so the check runs
//! in a child process: this test binary re-run with only `child_reads_bad_file_then_panics`.

use std::path::Path;
use std::process::Command;

use oddcube_data::fits::FitsFile;

/// Set in the child's environment; the child test does nothing without it.
const CHILD_ENV: &str = "ODDCUBE_QUIET_PANICS_CHILD";
/// The message of the one panic the child lets through (outside the guard).
const VISIBLE: &str = "a panic outside the reader must still be reported";

/// An 80-column header card.
fn card(text: &str) -> String {
    format!("{text:<80}")
}

/// A one-HDU FITS file whose PLATEIFU value is a lone opening quote: fitsrs 0.4.1 panics on
/// it (slice 1..0 in card.rs), and the reader turns that into an error.
fn lone_quote_file() -> Vec<u8> {
    let mut bytes: Vec<u8> = [
        "SIMPLE  =                    T",
        "BITPIX  =                    8",
        "NAXIS   =                    0",
        "PLATEIFU= '",
        "END",
    ]
    .iter()
    .flat_map(|c| card(c).into_bytes())
    .collect();
    bytes.resize(2880, b' ');
    bytes
}

#[test]
fn child_reads_bad_file_then_panics() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let err = FitsFile::from_bytes(lone_quote_file(), Path::new("lone-quote.fits"))
        .expect_err("a lone quote must be an error");
    // What a user sees instead of the panic: one line naming the file and the reason.
    eprintln!("error: {err}");
    // A panic outside the guard, caught here so the child passes: the hook must print it.
    let outside = std::panic::catch_unwind(|| panic!("{VISIBLE}"));
    assert!(outside.is_err());
}

#[test]
fn caught_reader_panic_prints_nothing_and_other_panics_still_print() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "child_reads_bad_file_then_panics",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        // With backtraces on, an unsilenced fitsrs panic would also print a whole backtrace.
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed: {stderr}");
    assert!(
        stderr.contains("lone-quote.fits") && stderr.contains("malformed"),
        "the clean error is printed: {stderr}"
    );
    // Exactly one panic report, and it is the one outside the guard.
    assert_eq!(stderr.matches("panicked").count(), 1, "{stderr}");
    assert!(stderr.contains(VISIBLE), "{stderr}");
    assert!(
        !stderr.contains("card.rs"),
        "fitsrs's panic leaked: {stderr}"
    );
    let panic_at = stderr.find("panicked").unwrap();
    let error_at = stderr.find("lone-quote.fits").unwrap();
    assert!(
        error_at < panic_at,
        "the only panic report comes after the reader's error: {stderr}"
    );
}
