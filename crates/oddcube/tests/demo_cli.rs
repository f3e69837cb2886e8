//! `oddcube demo` with small settings, run twice in one directory: the first run does every
//! stage; the second reuses every stage, says so, and leaves every artifact untouched.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use common::{oddcube, s};

/// Every file under `dir` (recursively) with its modification time.
fn mtimes(dir: &Path) -> BTreeMap<PathBuf, SystemTime> {
    let mut found = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.unwrap().path();
            let meta = std::fs::metadata(&path).unwrap();
            if meta.is_dir() {
                pending.push(path);
            } else {
                found.insert(path, meta.modified().unwrap());
            }
        }
    }
    found
}

/// Runs the demo into `out`, asserts success, returns stderr (where the stage log goes).
fn demo(out: &Path) -> String {
    let output = oddcube()
        .args([
            "demo",
            "--out",
            s(out),
            "--galaxies",
            "30",
            "--anomaly-fraction",
            "0.2",
            "--epochs",
            "1",
        ])
        .output()
        .expect("oddcube runs");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "demo failed:\n{stdout}\n{stderr}");
    // The `oddcube serve` command the demo suggests uses only options `serve --help` lists
    // (deprecated spellings are hidden from it).
    let suggested = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("oddcube serve"))
        .unwrap_or_else(|| panic!("no serve command suggested:\n{stdout}"));
    let help = oddcube().args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for option in suggested.split_whitespace().filter(|w| w.starts_with("--")) {
        assert!(
            help.contains(option),
            "{option} of {suggested:?} is not in serve --help"
        );
    }
    stderr
}

/// Stage-log lines (`[i/n] name: ...`) that end one stage, by how they ended.
fn stage_lines<'a>(log: &'a str, ending: &str) -> Vec<&'a str> {
    log.lines()
        .filter(|l| l.starts_with('[') && l.contains(ending))
        .collect()
}

#[test]
fn a_second_demo_run_reuses_every_stage() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("demo");

    let first = demo(&out);
    let done = stage_lines(&first, ": done in ");
    assert!(!done.is_empty(), "no stage ran:\n{first}");
    assert!(
        stage_lines(&first, ": up to date, reused").is_empty(),
        "a fresh directory had nothing to reuse:\n{first}"
    );
    // Every stage announced as [i/n] ran: n is the number of stages.
    let total: usize = done[0]
        .split_once('/')
        .and_then(|(_, rest)| rest.split_once(']'))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("no stage count in {:?}", done[0]));
    assert_eq!(done.len(), total, "{first}");
    for name in [
        "results/catalog.parquet",
        "results/evaluation.json",
        "figures/map.png",
    ] {
        assert!(out.join(name).is_file(), "{name} missing");
    }
    let before = mtimes(&out);

    let second = demo(&out);
    assert_eq!(
        stage_lines(&second, ": up to date, reused").len(),
        total,
        "not every stage was reused:\n{second}"
    );
    assert!(
        stage_lines(&second, ": done in ").is_empty(),
        "a stage ran again:\n{second}"
    );
    let after = mtimes(&out);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "the second run added or removed files"
    );
    for (path, time) in &before {
        assert_eq!(
            after[path],
            *time,
            "{} was rewritten by the second run",
            path.display()
        );
    }
}
