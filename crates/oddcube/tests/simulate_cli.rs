//! `oddcube simulate` end to end: files and truth table written, readable by oddcube's MAPS
//! reader, identical for a seed whatever the thread count, bad settings rejected.

use std::path::Path;

mod common;

use common::oddcube;
use oddcube_data::maps::MapsFile;

fn simulate(out: &Path, jobs: &str) {
    oddcube()
        .args(["simulate", "--out"])
        .arg(out)
        .args([
            "--galaxies",
            "6",
            "--seed",
            "3",
            "--anomaly-fraction",
            "0.5",
            "--jobs",
            jobs,
        ])
        .assert()
        .success();
}

fn truth_rows(dir: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(dir.join("truth.csv")).unwrap();
    oddcube_data::csv::parse(&text)
        .into_iter()
        .skip(1)
        .collect()
}

#[test]
fn simulated_survey_is_complete_readable_and_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    simulate(&a, "2");
    simulate(&b, "1");

    let rows = truth_rows(&a);
    assert_eq!(rows.len(), 6);
    let anomalies = rows.iter().filter(|r| r[3] == "1").count();
    assert_eq!(anomalies, 3, "round(0.5 × 6) anomalies");
    assert_eq!(
        std::fs::read(a.join("truth.csv")).unwrap(),
        std::fs::read(b.join("truth.csv")).unwrap(),
        "truth does not depend on --jobs"
    );
    for row in &rows {
        let (plateifu, file) = (&row[0], &row[6]);
        assert!(file.starts_with(&format!("manga-{plateifu}-MAPS-HYB10-MILESHC-MASTARSSP")));
        let maps_a = MapsFile::read(&a.join(file)).unwrap();
        let maps_b = MapsFile::read(&b.join(file)).unwrap();
        assert_eq!(&maps_a.meta.plateifu, plateifu);
        assert_eq!(maps_a.channels.len(), 35);
        assert_eq!(maps_a.hdus.len(), 64);
        let grid: usize = row[5].parse().unwrap();
        assert_eq!((maps_a.ny, maps_a.nx), (grid, grid));
        assert_eq!(
            maps_a.flux, maps_b.flux,
            "{plateifu}: data do not depend on --jobs"
        );
        assert_eq!(maps_a.mask, maps_b.mask);
        assert!(maps_a.flux.iter().all(|f| *f >= 0.0));
    }
}

#[test]
fn bad_settings_fail_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let output = oddcube()
        .args(["simulate", "--out"])
        .arg(dir.path())
        .args(["--galaxies", "3", "--anomaly-fraction", "1.5"])
        .assert()
        .failure()
        .code(1)
        .get_output()
        .clone();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--anomaly-fraction"), "{stderr}");
    assert!(!dir.path().join("truth.csv").exists());
}

#[test]
fn kinds_choose_the_injected_anomalies() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("held-out");
    oddcube()
        .args(["simulate", "--out"])
        .arg(&out)
        .args([
            "--galaxies",
            "6",
            "--seed",
            "3",
            "--anomaly-fraction",
            "0.5",
        ])
        .args(["--anomaly-kinds", "outflow,dust_lane"])
        .assert()
        .success();
    let mut kinds: Vec<String> = truth_rows(&out)
        .into_iter()
        .filter(|r| r[3] == "1")
        .map(|r| r[2].clone())
        .collect();
    kinds.sort();
    // round(0.5 × 6) = 3 anomalies, the kinds in turn: outflow, dust_lane, outflow.
    assert_eq!(kinds, ["dust_lane", "outflow", "outflow"]);

    for (kinds, reason) in [
        ("retired", "retired is an ordinary kind"),
        ("seyfert,quasar", "unknown kind \"quasar\""),
    ] {
        let output = oddcube()
            .args(["simulate", "--out"])
            .arg(dir.path().join("bad"))
            .args(["--galaxies", "3", "--anomaly-kinds", kinds])
            .assert()
            .failure()
            .code(2)
            .get_output()
            .clone();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(reason), "{stderr}");
        assert!(stderr.contains("outflow, ring, dust_lane"), "{stderr}");
        assert!(!dir.path().join("bad").exists());
    }
}
