//! RESULTS are portable: scored with paths relative to the directory `score` ran in, they are
//! read by `similar`, `evaluate`, `project`, `plot` and `serve` from another directory, after the
//! whole tree has moved, and (old manifests) with paths relative to the old working directory.
//! `similar` finds a galaxy by plate-ifu, MaNGA-ID or file name; `--data` overrides the dataset.

mod common;

use std::path::Path;

use common::{Server, oddcube, s, scored_survey};

/// Runs `oddcube args` in `cwd`, asserts success, returns (stdout, stderr).
fn ok_in(cwd: &Path, args: &[&str]) -> (String, String) {
    let out = oddcube().current_dir(cwd).args(args).output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        out.status.success(),
        "oddcube {args:?} in {} failed:\n{stdout}\n{stderr}",
        cwd.display()
    );
    (stdout, stderr)
}

/// Runs `oddcube args` in `cwd`, asserts failure, returns stderr.
fn err_in(cwd: &Path, args: &[&str]) -> String {
    let out = oddcube().current_dir(cwd).args(args).output().unwrap();
    assert!(!out.status.success(), "oddcube {args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn manifest(res: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(res.join("manifest.json")).unwrap()).unwrap()
}

/// Every reader of RESULTS, run in `cwd` on the RESULTS `res` (a path from `cwd`), with the
/// simulator's truth at `truth`.
fn read_everything(cwd: &Path, res: &str, truth: &str, galaxy: &str) {
    let (table, _) = ok_in(cwd, &["similar", res, galaxy, "-k", "3"]);
    assert_eq!(table.lines().count(), 4, "{table}");
    // evaluate opens the scored dataset (the PCA baseline) through the manifest.
    let (report, _) = ok_in(cwd, &["evaluate", res, "--labels", truth]);
    assert!(report.contains("pca_recon"), "{report}");
    ok_in(cwd, &["project", res, "--method", "pca"]);
    ok_in(cwd, &["plot", "map", res]);
    ok_in(cwd, &["plot", "scores", res]);
}

#[test]
fn results_are_read_from_any_directory_and_after_the_tree_moves() {
    let survey = scored_survey();
    let root = survey.tmp.path().canonicalize().unwrap();
    // Score as a user types it: paths relative to the directory the command runs in.
    ok_in(
        &root,
        &[
            "score",
            "--model",
            "model",
            "--data",
            "data",
            "--out",
            "rel",
            "--knn-k",
            "5",
            "--residuals",
            "top:5",
        ],
    );
    // The manifest records them relative to itself.
    let m = manifest(&root.join("rel"));
    assert_eq!(m["dataset_dir"], "../data", "{m}");
    assert_eq!(m["model_dir"], "../model", "{m}");

    let catalog = oddcube_score::results::Results::open(&root.join("rel"))
        .unwrap()
        .catalog;
    let rank = catalog.u32("rank").unwrap();
    let top = rank.iter().position(|&r| r == 1).unwrap();
    let plateifu = catalog.str("plateifu").unwrap()[top].clone();
    let mangaid = catalog.str("mangaid").unwrap()[top].clone();
    assert!(!mangaid.is_empty());

    // From another directory.
    let elsewhere = root.join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let truth = s(&survey.sim.join("truth.csv")).to_string();
    read_everything(&elsewhere, "../rel", &truth, &plateifu);
    // The galaxy figure finds the dataset (for its BPT stretch) without a note.
    let (_, stderr) = ok_in(&elsewhere, &["plot", "galaxy", "../rel", &plateifu]);
    assert!(!stderr.contains("assuming linear flux"), "{stderr}");
    // serve from elsewhere, with the dataset named explicitly.
    let server = Server::start(
        &["--results", "../rel", "--data", "../data", "--port", "0"],
        &elsewhere,
    );
    let summary = server.get("/api/summary");
    assert!(summary.starts_with("HTTP/1.1 200"), "{summary}");
    assert!(summary.contains("\"has_dataset\":true"), "{summary}");
    drop(server);

    // Any identifier: plate-ifu, MaNGA-ID and file names find the same neighbours.
    let by = |id: &str| {
        ok_in(
            &elsewhere,
            &["similar", "../rel", id, "-k", "3", "--format", "csv"],
        )
        .0
    };
    let expected = by(&plateifu);
    for id in [
        mangaid.clone(),
        format!("manga-{plateifu}"),
        format!("manga-{plateifu}-MAPS-HYB10-MILESHC-MASTARSSP.fits.gz"),
    ] {
        assert_eq!(by(&id), expected, "{id}");
    }
    let err = err_in(&elsewhere, &["similar", "../rel", "manga-1-2-MAPS.fits.gz"]);
    assert!(
        err.contains("tried it as a plate-ifu") && err.contains("a file name (plate-ifu 1-2)"),
        "{err}"
    );

    // Move the tree: dataset, model and RESULTS together.
    let moved = root.join("moved");
    std::fs::create_dir(&moved).unwrap();
    for dir in ["data", "model", "rel"] {
        std::fs::rename(root.join(dir), moved.join(dir)).unwrap();
    }
    read_everything(&elsewhere, "../moved/rel", &truth, &plateifu);

    // An old manifest, with paths relative to the directory `score` ran in (`root`): read from
    // there, and from anywhere below it.
    let path = moved.join("rel/manifest.json");
    let mut old = manifest(&moved.join("rel"));
    old["dataset_dir"] = "moved/data".into();
    old["model_dir"] = "moved/model".into();
    std::fs::write(&path, serde_json::to_vec_pretty(&old).unwrap()).unwrap();
    ok_in(&root, &["evaluate", "moved/rel", "--labels", &truth]);
    read_everything(&elsewhere, "../moved/rel", &truth, &plateifu);

    // A dataset that is nowhere to be found: the error says --data, and --data reads it.
    old["dataset_dir"] = "gone/data".into();
    std::fs::write(&path, serde_json::to_vec_pretty(&old).unwrap()).unwrap();
    let err = err_in(
        &elsewhere,
        &["evaluate", "../moved/rel", "--labels", &truth],
    );
    assert!(err.contains("--data"), "{err}");
    ok_in(
        &elsewhere,
        &[
            "evaluate",
            "../moved/rel",
            "--labels",
            &truth,
            "--data",
            "../moved/data",
        ],
    );
    let (_, stderr) = ok_in(
        &elsewhere,
        &[
            "plot",
            "galaxy",
            "../moved/rel",
            &plateifu,
            "--data",
            "../moved/data",
        ],
    );
    assert!(!stderr.contains("assuming linear flux"), "{stderr}");
}
