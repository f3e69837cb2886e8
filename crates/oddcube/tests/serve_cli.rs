//! `oddcube project`, `oddcube plot` and `oddcube serve` run as a user would, on a synthetic
//! RESULTS directory.

mod common;

use common::{Server, oddcube, stderr_of};
use oddcube_explore::serve::synthetic::write_synthetic_results;

fn results(n: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_synthetic_results(dir.path(), n, 4).unwrap();
    dir
}

#[test]
fn project_is_deterministic_for_a_seed_and_places_new_galaxies() {
    let dir = results(40);
    let path = dir.path().to_str().unwrap();
    oddcube()
        .args(["project", path, "--seed", "3", "--epochs", "60"])
        .assert()
        .success();
    let first = std::fs::read_to_string(dir.path().join("projection.csv")).unwrap();
    assert_eq!(first.lines().count(), 41);
    assert!(first.starts_with("plateifu,x,y\n"));
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("projection.json")).unwrap())
            .unwrap();
    assert_eq!(info["method"], "umap");
    assert_eq!(info["seed"], 3);
    oddcube()
        .args(["project", path, "--seed", "3", "--epochs", "60"])
        .assert()
        .success();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("projection.csv")).unwrap(),
        first,
        "same seed, same map"
    );

    // The mapped galaxies' own latents land exactly on their map positions.
    let placed = dir.path().join("placed.csv");
    let latents = dir.path().join("latents.npy");
    oddcube()
        .args([
            "project",
            path,
            "--place",
            latents.to_str().unwrap(),
            "--out",
            placed.to_str().unwrap(),
        ])
        .assert()
        .success();
    let placed_text = std::fs::read_to_string(&placed).unwrap();
    let coords = |text: &str| -> Vec<String> {
        text.lines()
            .skip(1)
            .map(|l| l.split_once(',').unwrap().1.to_string())
            .collect()
    };
    assert_eq!(coords(&placed_text), coords(&first));
    // A new galaxy whose latent vector holds a NaN has no place: an error naming it.
    let dim = oddcube_score::latents::Latents::open(&latents)
        .unwrap()
        .dim();
    let mut bad = vec![0.0f32; 2 * dim];
    bad[dim + 1] = f32::NAN;
    let bad_path = dir.path().join("bad-latents.npy");
    oddcube_score::latents::write_npy_f32(&bad_path, &bad, 2, dim).unwrap();
    let err = stderr_of(
        oddcube()
            .args(["project", path, "--place", bad_path.to_str().unwrap()])
            .assert()
            .failure(),
    );
    assert!(
        err.contains("bad-latents.npy") && err.contains("new-1") && err.contains("dimension 1"),
        "{err}"
    );

    oddcube()
        .args(["project", path, "--method", "pca"])
        .assert()
        .success();
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("projection.json")).unwrap())
            .unwrap();
    assert_eq!(info["method"], "pca");

    let err = stderr_of(
        oddcube()
            .args(["project", "/nonexistent/results"])
            .assert()
            .failure(),
    );
    assert!(err.contains("/nonexistent/results"), "{err}");
    oddcube()
        .args(["project", path, "--method", "tsne"])
        .assert()
        .failure();
}

#[test]
fn plot_writes_pngs_and_explains_missing_inputs() {
    let dir = results(30);
    let path = dir.path().to_str().unwrap();
    let galaxy_png = dir.path().join("g.png");
    oddcube()
        .args([
            "plot",
            "galaxy",
            path,
            "8000-1901",
            "--out",
            galaxy_png.to_str().unwrap(),
        ])
        .assert()
        .success();
    assert_eq!(&std::fs::read(&galaxy_png).unwrap()[1..4], b"PNG");
    oddcube().args(["plot", "scores", path]).assert().success();
    assert!(dir.path().join("figures/scores.png").exists());

    let err = stderr_of(oddcube().args(["plot", "map", path]).assert().failure());
    assert!(err.contains("oddcube project"), "{err}");
    oddcube()
        .args(["project", path, "--method", "pca"])
        .assert()
        .success();
    oddcube()
        .args(["plot", "map", path, "--colour", "lof", "--top", "5"])
        .assert()
        .success();
    assert!(dir.path().join("figures/map.png").exists());

    let err = stderr_of(
        oddcube()
            .args(["plot", "galaxy", path, "1-1"])
            .assert()
            .failure(),
    );
    assert!(err.contains("1-1 is not in"), "{err}");
    std::fs::remove_file(dir.path().join("residuals.safetensors")).unwrap();
    let err = stderr_of(
        oddcube()
            .args(["plot", "galaxy", path, "8000-1901"])
            .assert()
            .failure(),
    );
    assert!(err.contains("--residuals all"), "{err}");
}

#[test]
fn serve_listens_on_loopback_by_default_and_answers() {
    let dir = results(20);
    let server = Server::start(
        &["--results", dir.path().to_str().unwrap(), "--port", "0"],
        dir.path(),
    );
    assert!(
        server.address.starts_with("127.0.0.1:"),
        "{}",
        server.address
    );
    let response = server.get("/api/summary");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"n\":20"), "{response}");
}

#[test]
fn serve_refuses_a_directory_that_is_not_results() {
    let dir = tempfile::tempdir().unwrap();
    let err = stderr_of(
        oddcube()
            .args([
                "serve",
                "--results",
                dir.path().to_str().unwrap(),
                "--port",
                "0",
            ])
            .assert()
            .failure(),
    );
    assert!(err.contains("manifest.json"), "{err}");
}
