//! The command-line conventions of docs/cli.md: every subcommand's `--help` uses the shared option
//! names for the shared concepts (RESULTS, dataset, model directory, architecture, ground truth,
//! output directory or file, output format) and lists its own options before the global ones;
//! the old spellings still work for one release and print a deprecation note.

mod common;

use std::path::Path;

use common::{oddcube, run_err, s};
use oddcube_explore::serve::synthetic::write_synthetic_results;

/// Every subcommand, as words (plot's figures are subcommands of their own).
const COMMANDS: &[&[&str]] = &[
    &["demo"],
    &["inspect"],
    &["fetch"],
    &["ingest"],
    &["simulate"],
    &["train"],
    &["calibrate"],
    &["score"],
    &["similar"],
    &["evaluate"],
    &["bpt"],
    &["merge"],
    &["bench"],
    &["project"],
    &["plot", "galaxy"],
    &["plot", "map"],
    &["plot", "scores"],
    &["serve"],
];

/// Commands that read a RESULTS directory: `--results DIR`.
const TAKE_RESULTS: &[&str] = &[
    "similar",
    "evaluate",
    "project",
    "plot galaxy",
    "plot map",
    "plot scores",
    "serve",
];
/// Commands that read a dataset: `--data DIR`.
const TAKE_DATA: &[&str] = &[
    "train",
    "calibrate",
    "score",
    "similar",
    "evaluate",
    "bpt",
    "plot galaxy",
    "serve",
];
/// Commands that read a model directory: `--model DIR`.
const TAKE_MODEL: &[&str] = &["calibrate", "score", "similar", "serve"];
/// Commands that choose an architecture: `--arch ae|vae`.
const TAKE_ARCH: &[&str] = &["train", "bench"];
/// Commands that read ground truth: `--truth FILE`.
const TAKE_TRUTH: &[&str] = &["evaluate", "serve"];
/// Commands that write one file: `--out-file FILE` (and no `--out`).
const WRITE_FILE: &[&str] = &["bpt", "project", "plot galaxy", "plot map", "plot scores"];
/// Commands that write into a directory: `--out DIR`.
const WRITE_DIR: &[&str] = &[
    "demo", "fetch", "ingest", "simulate", "train", "score", "merge",
];
/// Commands with a choice of output format: `--format`.
const TAKE_FORMAT: &[&str] = &["inspect", "similar"];

/// `oddcube WORDS --help`.
fn help(words: &[&str]) -> String {
    let out = oddcube()
        .args(words)
        .arg("--help")
        .output()
        .expect("oddcube runs");
    assert!(out.status.success(), "{words:?} --help failed");
    String::from_utf8(out.stdout).expect("UTF-8 help")
}

/// The options a help text lists (`--name`), each with its description (the text up to the next
/// option).
fn options(help: &str) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = Vec::new();
    for line in help.lines() {
        let trimmed = line.trim_start();
        let starts_option = trimmed.starts_with('-') && line.starts_with("  ");
        if starts_option
            && let Some(long) = trimmed.split_whitespace().find(|w| w.starts_with("--"))
        {
            let name = long
                .trim_end_matches(',')
                .trim_end_matches("...")
                .to_string();
            found.push((name, trimmed.to_string()));
        } else if let Some(last) = found.last_mut() {
            last.1.push(' ');
            last.1.push_str(trimmed);
        }
    }
    found
}

fn description<'a>(opts: &'a [(String, String)], name: &str) -> Option<&'a str> {
    opts.iter()
        .find(|(n, _)| n == name)
        .map(|(_, d)| d.as_str())
}

#[test]
fn every_subcommand_is_walked() {
    let top = help(&[]);
    let listed: Vec<&str> = top
        .split("Commands:")
        .nth(1)
        .expect("a Commands section")
        .split("\n\n")
        .next()
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| *w != "help")
        .collect();
    let mut walked: Vec<&str> = COMMANDS.iter().map(|c| c[0]).collect();
    walked.dedup();
    assert_eq!(listed, walked, "a new subcommand must be added to COMMANDS");
    let figures = help(&["plot"]);
    for figure in ["galaxy", "map", "scores"] {
        assert!(figures.contains(&format!("  {figure} ")), "{figures}");
    }
}

#[test]
fn help_uses_the_shared_option_names() {
    for words in COMMANDS {
        let cmd = words.join(" ");
        let text = help(words);
        let opts = options(&text);
        let has = |name: &str| description(&opts, name).is_some();
        let is = |list: &[&str]| list.contains(&cmd.as_str());

        // Own options first, then the globals under their own heading.
        let own = text
            .find("\nOptions:")
            .unwrap_or_else(|| panic!("{cmd}: {text}"));
        let global = text
            .find("\nGlobal options:")
            .unwrap_or_else(|| panic!("{cmd}: no Global options heading\n{text}"));
        assert!(own < global, "{cmd}: globals before own options\n{text}");
        let verbose = text.find("--verbose").unwrap();
        let quiet = text.find("--quiet").unwrap();
        assert!(verbose > global && quiet > global, "{cmd}:\n{text}");

        assert_eq!(
            has("--results"),
            is(TAKE_RESULTS),
            "{cmd}: --results\n{text}"
        );
        if is(TAKE_DATA) {
            assert!(has("--data"), "{cmd}: --data\n{text}");
            let d = description(&opts, "--data").unwrap().to_lowercase();
            assert!(d.contains("dataset"), "{cmd}: --data is a dataset: {d}");
        }
        assert_eq!(has("--model"), is(TAKE_MODEL), "{cmd}: --model\n{text}");
        if let Some(d) = description(&opts, "--model") {
            assert!(
                d.to_lowercase().contains("model directory"),
                "{cmd}: --model is a model directory: {d}"
            );
        }
        assert_eq!(has("--arch"), is(TAKE_ARCH), "{cmd}: --arch\n{text}");
        assert_eq!(has("--truth"), is(TAKE_TRUTH), "{cmd}: --truth\n{text}");
        assert!(!has("--kinds"), "{cmd}: --kinds is --truth\n{text}");
        // `--labels` is only ever the user's own labels (score's feedback), never ground truth.
        if let Some(d) = description(&opts, "--labels") {
            assert!(
                !d.to_lowercase().contains("truth"),
                "{cmd}: --labels must not mean ground truth: {d}"
            );
            assert!(["score", "serve"].contains(&cmd.as_str()), "{cmd}: {d}");
        }
        assert!(cmd != "evaluate" || !has("--labels"), "{text}");
        // `--lines` is a line set; a count is `--n-lines`.
        if let Some(d) = description(&opts, "--lines") {
            assert!(d.contains("dr17"), "{cmd}: --lines is a line set: {d}");
        }
        assert_eq!(has("--n-lines"), cmd == "bench", "{cmd}: --n-lines");
        // `--out` is a directory; one file is `--out-file`.
        assert_eq!(has("--out"), is(WRITE_DIR), "{cmd}: --out\n{text}");
        assert_eq!(
            has("--out-file"),
            is(WRITE_FILE),
            "{cmd}: --out-file\n{text}"
        );
        if let Some(d) = description(&opts, "--out") {
            assert!(
                d.to_lowercase().contains("directory"),
                "{cmd}: --out is a directory: {d}"
            );
        }
        assert_eq!(has("--format"), is(TAKE_FORMAT), "{cmd}: --format\n{text}");
        // Every directory option shows the same placeholder.
        for name in ["--results", "--data", "--model"] {
            if has(name) {
                assert!(
                    text.contains(&format!("{name} <DIR>")),
                    "{cmd}: {name} <DIR>\n{text}"
                );
            }
        }
        // Nothing deprecated is shown.
        assert!(
            !text.contains("Deprecated"),
            "{cmd}: shows a deprecated option\n{text}"
        );
    }
}

/// Runs `oddcube args` in the test, asserts success, returns stderr.
fn ok_stderr(args: &[&str]) -> String {
    let out = oddcube().args(args).output().expect("oddcube runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "oddcube {args:?} failed:\n{}\n{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    stderr
}

/// Asserts that `stderr` carries the deprecation note for `old` naming `new`.
fn assert_note(stderr: &str, old: &str, new: &str) {
    let line = stderr
        .lines()
        .find(|l| l.contains(old) && l.contains("deprecated"))
        .unwrap_or_else(|| panic!("no deprecation note for {old} in:\n{stderr}"));
    assert!(line.contains(new), "{line}");
}

fn assert_no_note(stderr: &str) {
    assert!(!stderr.contains("deprecated"), "{stderr}");
}

/// A synthetic RESULTS directory and a truth CSV for it.
fn synthetic(dir: &Path) -> (String, String, String) {
    let res = dir.join("res");
    let kinds = write_synthetic_results(&res, 30, 4).unwrap();
    let truth = dir.join("truth.csv");
    let mut text = String::from("plateifu,kind\n");
    for (plateifu, kind) in &kinds {
        text.push_str(&format!("{plateifu},{kind}\n"));
    }
    std::fs::write(&truth, text).unwrap();
    (
        s(&res).to_string(),
        s(&truth).to_string(),
        kinds[0].0.clone(),
    )
}

#[test]
fn results_truth_and_out_file_old_and_new_spellings() {
    let tmp = tempfile::tempdir().unwrap();
    let (res, truth, first) = synthetic(tmp.path());
    let p = |name: &str| s(&tmp.path().join(name)).to_string();

    // evaluate: --results/--truth; the positional RESULTS still accepted, --labels deprecated.
    let new = ok_stderr(&[
        "evaluate",
        "--results",
        &res,
        "--truth",
        &truth,
        "--no-baseline",
    ]);
    assert_no_note(&new);
    let old = ok_stderr(&["evaluate", &res, "--labels", &truth, "--no-baseline"]);
    assert_note(&old, "evaluate --labels", "--truth");
    let err = run_err(&["evaluate", &res, "--labels", &truth, "--truth", &truth]);
    assert!(err.contains("cannot be used with"), "{err}");
    let err = run_err(&["evaluate", &res, "--results", &res, "--truth", &truth]);
    assert!(err.contains("cannot be used with"), "{err}");
    let err = run_err(&["evaluate", "--truth", &truth]);
    assert!(err.contains("--results"), "{err}");

    // similar: --results with the galaxy as the only word, or both as words.
    let a = oddcube()
        .args(["similar", "--results", &res, &first, "--format", "csv"])
        .output()
        .unwrap();
    let b = oddcube()
        .args(["similar", &res, &first, "--format", "csv"])
        .output()
        .unwrap();
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    assert_eq!(a.stdout, b.stdout);
    let err = run_err(&["similar", "--results", &res, &res, &first]);
    assert!(err.contains("RESULTS given twice"), "{err}");
    let err = run_err(&["similar", "--results", &res]);
    assert!(err.contains("give one query"), "{err}");

    // project: --results; --place writes --out-file (old --out deprecated).
    assert_no_note(&ok_stderr(&[
        "project",
        "--results",
        &res,
        "--method",
        "pca",
    ]));
    let latents = format!("{res}/latents.npy");
    let placed = p("placed.csv");
    assert_no_note(&ok_stderr(&[
        "project",
        &res,
        "--place",
        &latents,
        "--out-file",
        &placed,
    ]));
    let placed_text = std::fs::read_to_string(&placed).unwrap();
    std::fs::remove_file(&placed).unwrap();
    let old = ok_stderr(&["project", &res, "--place", &latents, "--out", &placed]);
    assert_note(&old, "project --out", "--out-file");
    assert_eq!(std::fs::read_to_string(&placed).unwrap(), placed_text);

    // plot: --results and --out-file; old --out deprecated.
    let scores = p("scores.png");
    assert_no_note(&ok_stderr(&[
        "plot",
        "scores",
        "--results",
        &res,
        "--out-file",
        &scores,
    ]));
    assert!(Path::new(&scores).exists());
    let old_png = p("old.png");
    let old = ok_stderr(&["plot", "map", &res, "--out", &old_png]);
    assert_note(&old, "plot --out", "--out-file");
    assert!(Path::new(&old_png).exists());
    let galaxy = p("galaxy.png");
    let plateifu = "8000-1901";
    assert_no_note(&ok_stderr(&[
        "plot",
        "galaxy",
        "--results",
        &res,
        plateifu,
        "--out-file",
        &galaxy,
    ]));
    assert!(Path::new(&galaxy).exists());
    ok_stderr(&["plot", "galaxy", &res, plateifu]);
    assert!(
        tmp.path()
            .join(format!("res/figures/galaxy-{plateifu}.png"))
            .exists()
    );
}

/// `oddcube serve ARGS --port 0` until it prints its address; its stderr up to then.
fn serve_stderr(args: &[&str]) -> String {
    use std::io::{BufRead, Read};
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("oddcube"))
        .arg("serve")
        .args(args)
        .args(["--port", "0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("oddcube serve starts");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("http://"), "serve did not start: {line:?}");
    child.kill().unwrap();
    child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    stderr
}

#[test]
fn serve_takes_truth_and_still_kinds() {
    let tmp = tempfile::tempdir().unwrap();
    let (res, truth, _) = synthetic(tmp.path());
    assert_no_note(&serve_stderr(&["--results", &res, "--truth", &truth]));
    assert_note(
        &serve_stderr(&["--results", &res, "--kinds", &truth]),
        "serve --kinds",
        "--truth",
    );
    let err = run_err(&[
        "serve",
        "--results",
        &res,
        "--kinds",
        &truth,
        "--truth",
        &truth,
    ]);
    assert!(err.contains("cannot be used with"), "{err}");
}

#[test]
fn dataset_arch_and_counts_old_and_new_spellings() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |name: &str| s(&tmp.path().join(name)).to_string();
    let (sim, data) = (p("sim"), p("data"));
    ok_stderr(&[
        "simulate",
        "--out",
        &sim,
        "--galaxies",
        "12",
        "--seed",
        "5",
        "--jobs",
        "1",
    ]);
    ok_stderr(&[
        "ingest", &sim, "--out", &data, "--size", "16", "--jobs", "1",
    ]);

    // bpt: --data and --out-file; the positional dataset and --out deprecated.
    let bpt = p("bpt.csv");
    assert_no_note(&ok_stderr(&["bpt", "--data", &data, "--out-file", &bpt]));
    let new = std::fs::read_to_string(&bpt).unwrap();
    let old = ok_stderr(&["bpt", &data]);
    assert_note(&old, "bpt DATASET", "--data");
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("data/bpt.csv")).unwrap(),
        new
    );
    let old = ok_stderr(&["bpt", "--data", &data, "--out", &p("old.csv")]);
    assert_note(&old, "bpt --out", "--out-file");
    let err = run_err(&["bpt", &data, "--data", &data]);
    assert!(err.contains("cannot be used with"), "{err}");

    // inspect: --format json, and --json for short.
    let file = std::fs::read_dir(&sim)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|f| f.to_string_lossy().ends_with(".fits.gz"))
        .unwrap();
    let json = |flags: &[&str]| {
        let out = oddcube()
            .args(["inspect", s(&file)])
            .args(flags)
            .output()
            .unwrap();
        assert!(out.status.success());
        out.stdout
    };
    let by_format = json(&["--format", "json"]);
    assert!(serde_json::from_slice::<serde_json::Value>(&by_format).is_ok());
    assert_eq!(json(&["--json"]), by_format);

    // train: --arch; --model ae|vae deprecated.
    let old = ok_stderr(&[
        "train",
        "--data",
        &data,
        "--out",
        &p("model"),
        "--model",
        "vae",
        "--epochs",
        "1",
        "--latent",
        "4",
        "--jobs",
        "1",
    ]);
    assert_note(&old, "train --model ae|vae", "--arch ae|vae");
    let config = std::fs::read_to_string(tmp.path().join("model/config.toml")).unwrap();
    assert!(config.contains("vae"), "{config}");
    let err = run_err(&[
        "train",
        "--data",
        &data,
        "--out",
        &p("m2"),
        "--model",
        "vae",
        "--arch",
        "ae",
    ]);
    assert!(err.contains("cannot be used with"), "{err}");

    // bench: --arch and --n-lines; --model and --lines deprecated.
    let bench = [
        "bench", "--steps", "1", "--warmup", "0", "--batch", "1", "--jobs", "1",
    ];
    let new = ok_stderr(&[&bench[..], &["--arch", "vae", "--n-lines", "3"]].concat());
    assert_no_note(&new);
    let old = ok_stderr(&[&bench[..], &["--model", "vae", "--lines", "3"]].concat());
    assert_note(&old, "bench --model ae|vae", "--arch ae|vae");
    assert_note(&old, "bench --lines N", "--n-lines N");
}
