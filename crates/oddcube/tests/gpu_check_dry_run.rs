//! `examples/gpu/check.sh --dry-run`: the GPU check's every stage but CUDA, on the CPU with the
//! binary under test and a tiny survey — it exits 0 and prints the summary (stage table, time per
//! epoch, AUROCs, flags); a failing stage stops it at once with the table and exit status 1.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// Runs `bash examples/gpu/check.sh --dry-run --bin BIN --work WORK`, or `None` (the test is
/// skipped) where bash or python3, which the script needs, are missing.
fn check(bin: &Path, work: &Path) -> Option<Output> {
    for tool in ["bash", "python3"] {
        let found = Command::new(tool).arg("--version").output().is_ok();
        if !found {
            eprintln!("skipped: {tool} is not installed");
            return None;
        }
    }
    let root = repo_root();
    let out = Command::new("bash")
        .arg(root.join("examples/gpu/check.sh"))
        .arg("--dry-run")
        .arg("--bin")
        .arg(bin)
        .arg("--work")
        .arg(work)
        .current_dir(&root)
        .env_remove("SLURM_ARRAY_TASK_ID")
        .env_remove("SLURM_ARRAY_TASK_COUNT")
        .env_remove("ODDCUBE_BIN")
        .output()
        .expect("bash runs");
    Some(out)
}

/// The summary line that starts with `label` (padded as the script pads it).
fn line<'a>(stdout: &'a str, label: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.starts_with(label))
        .unwrap_or_else(|| panic!("no line starting {label:?} in:\n{stdout}"))
}

#[test]
fn dry_run_runs_every_stage_and_prints_the_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let Some(out) = check(Path::new(env!("CARGO_BIN_EXE_oddcube")), &work) else {
        return;
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "check.sh --dry-run failed ({}):\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    let summary = stdout
        .split("== oddcube GPU check: summary — dry run (CPU) ==")
        .nth(1)
        .unwrap_or_else(|| panic!("no summary in:\n{stdout}"));

    // One row per stage: the build skipped, every other stage ok, timed.
    assert!(line(summary, "build ").contains("skipped (dry run"));
    for stage in [
        "preflight",
        "bench-cpu",
        "bench-paper",
        "simulate",
        "ingest",
        "train",
        "score",
        "evaluate",
    ] {
        let row = line(summary, &format!("{stage} "));
        let fields: Vec<&str> = row.split_whitespace().collect();
        assert!(fields.len() >= 4, "short row {row:?}");
        let seconds: f64 = fields[2]
            .parse()
            .unwrap_or_else(|_| panic!("no time in {row:?}"));
        assert!(seconds >= 0.0, "{row:?}");
        assert!(fields[3].starts_with("ok"), "stage not ok: {row:?}");
    }
    assert!(line(summary, "total ").contains("(deadline 540 s)"));

    // Bench of both presets, time per epoch, AUROCs and flags.
    for preset in ["bench cpu ", "bench paper "] {
        let row = line(summary, preset);
        assert!(
            row.contains("train ") && row.contains("samples/s") && row.contains("infer "),
            "{row:?}"
        );
    }
    let epochs = line(summary, "epochs ");
    assert!(
        epochs.contains("1 run; time per epoch: mean "),
        "{epochs:?}"
    );
    let auroc = line(summary, "AUROC        score ");
    for score in ["global ", "local ", "chi2 ", "pca_chi2 "] {
        assert!(auroc.contains(score), "no {score}in {auroc:?}");
    }
    let value: f64 = auroc.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!((0.0..=1.0).contains(&value), "{auroc:?}");
    assert!(line(summary, "AUROC score ").contains("(n="));

    // "flags        F of 40 galaxies flagged at FDR 0.05; T of them true anomalies (…); A anomalies …"
    let flags = line(summary, "flags ");
    let words: Vec<&str> = flags.split_whitespace().collect();
    let flagged: usize = words[1].parse().unwrap();
    assert_eq!(&words[2..4], ["of", "40"], "{flags:?}");
    assert!(flags.contains("flagged at FDR 0.05; "), "{flags:?}");
    let true_pos: usize = flags
        .split("FDR 0.05; ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no true-anomaly count in {flags:?}"));
    assert!(true_pos <= flagged, "{flags:?}");
    assert!(flags.contains("4 anomalies in the survey"), "{flags:?}");

    assert!(
        stdout
            .lines()
            .last()
            .unwrap_or("")
            .starts_with("check: PASS"),
        "{stdout}"
    );
    for artifact in [
        "model/history.csv",
        "results/evaluation.json",
        "results/catalog.csv",
    ] {
        assert!(work.join(artifact).is_file(), "{artifact} missing");
    }
}

#[cfg(unix)]
#[test]
fn a_failing_stage_stops_the_check_with_the_table() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(out) = check(Path::new("/bin/false"), &tmp.path().join("work")) else {
        return;
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("stage 'bench-cpu' FAILED: exit status 1"),
        "{stderr}"
    );
    assert!(
        line(&stdout, "bench-cpu ").contains("FAILED (exit 1)"),
        "{stdout}"
    );
    for stage in ["bench-paper", "simulate", "train", "evaluate"] {
        assert!(
            line(&stdout, &format!("{stage} ")).ends_with("not run"),
            "{stdout}"
        );
    }
    assert!(
        stdout
            .lines()
            .last()
            .unwrap_or("")
            .starts_with("check: FAIL (bench-cpu: exit status 1"),
        "{stdout}"
    );
}
