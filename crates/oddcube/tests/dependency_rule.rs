//! The workspace's dependency rule, checked on the real dependency graph (`cargo tree`, offline):
//! data ← model, data ← score ← explore, the binary on top; the scoring library never compiles
//! the network (candle), the web server (axum, tokio) or the plotting stack (plotters), and the
//! explorer never compiles candle. See docs/architecture.md.

use std::collections::BTreeSet;
use std::process::Command;

/// The crates `package` depends on (normal dependencies, any depth, itself excluded), by name.
fn dependencies(package: &str) -> BTreeSet<String> {
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml");
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "--manifest-path",
            manifest,
            "-p",
            package,
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo tree -p {package} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("cargo tree prints UTF-8");
    let names: BTreeSet<String> = text
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != package)
        .map(str::to_string)
        .collect();
    // A tree without its root's usual dependencies would make every check below pass vacuously.
    assert!(
        names.contains("serde"),
        "cargo tree -p {package} printed no dependencies:\n{text}"
    );
    names
}

/// The workspace crates (`oddcube-*`, the binary excluded) among `deps`.
fn workspace_crates(deps: &BTreeSet<String>) -> BTreeSet<&str> {
    deps.iter()
        .map(String::as_str)
        .filter(|name| name.starts_with("oddcube-"))
        .collect()
}

#[test]
fn no_crate_depends_upwards() {
    for (package, allowed) in [
        ("oddcube-data", &[][..]),
        ("oddcube-model", &["oddcube-data"][..]),
        ("oddcube-score", &["oddcube-data"][..]),
        ("oddcube-explore", &["oddcube-data", "oddcube-score"][..]),
    ] {
        let deps = dependencies(package);
        let found = workspace_crates(&deps);
        let allowed: BTreeSet<&str> = allowed.iter().copied().collect();
        assert!(
            found.is_subset(&allowed),
            "{package} depends on {:?}; allowed: {allowed:?}",
            found.difference(&allowed).collect::<Vec<_>>()
        );
        assert!(
            !deps.contains("oddcube"),
            "{package} depends on the binary crate"
        );
    }
}

#[test]
fn scoring_compiles_no_network_server_or_plots() {
    let deps = dependencies("oddcube-score");
    for heavy in ["candle-core", "candle-nn", "axum", "tokio", "plotters"] {
        assert!(
            !deps.contains(heavy),
            "oddcube-score depends on {heavy} (through: cargo tree -p oddcube-score -i {heavy})"
        );
    }
}

#[test]
fn the_explorer_compiles_no_network() {
    let deps = dependencies("oddcube-explore");
    let candle: Vec<&String> = deps.iter().filter(|d| d.starts_with("candle")).collect();
    assert!(candle.is_empty(), "oddcube-explore depends on {candle:?}");
    // The check sees the explorer's own heavy dependencies, so it can tell them apart.
    assert!(deps.contains("axum") && deps.contains("plotters"));
}
