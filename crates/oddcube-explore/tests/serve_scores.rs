//! What the explorer shows of the calibrated scores: the FDR filter against the catalogue's
//! flags and q-values, p/q in the table, the anomaly map with its region and dominant line, and
//! the latent map's per-column colour stretch. On the synthetic RESULTS, which go through the
//! real scoring path (population null, FDR 0.2); older results without anomaly maps must still
//! serve.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use oddcube_explore::plot::anomaly::NO_MAPS_FILE;
use oddcube_explore::plot::galaxy::consensus_note;
use oddcube_explore::plot::tiles::OUTLINE;
use oddcube_explore::project::{ProjectOptions, ProjectionMethod, project};
use oddcube_explore::serve::synthetic::{SIZE, write_synthetic_results};
use oddcube_explore::serve::{AppState, ServeSources, router};
use oddcube_score::anomaly_map::AnomalyMaps;
use oddcube_score::{LatentView, results::Results};
use serde_json::Value;
use tower::ServiceExt;

/// A synthetic RESULTS directory of `n` galaxies with its projection, and the state serving it.
fn fixture(n: usize) -> (tempfile::TempDir, Arc<AppState>) {
    let dir = tempfile::tempdir().unwrap();
    write_synthetic_results(dir.path(), n, 1).unwrap();
    let results = Results::open(dir.path()).unwrap();
    let view = LatentView::new(&results.latents, n, results.latent_dim).unwrap();
    let options = ProjectOptions {
        method: ProjectionMethod::Pca,
        ..Default::default()
    };
    let ids = results.catalog.str("plateifu").unwrap().to_vec();
    project(&view, ids, &options, &oddcube_data::NoProgress)
        .unwrap()
        .write(dir.path())
        .unwrap();
    let state = load(dir.path());
    (dir, state)
}

fn load(dir: &std::path::Path) -> Arc<AppState> {
    let sources = ServeSources {
        results: dir.to_path_buf(),
        dataset: None,
        kinds: None,
    };
    Arc::new(AppState::load(&sources, None).unwrap())
}

async fn get(state: &Arc<AppState>, uri: &str) -> (StatusCode, String, Vec<u8>) {
    let request = Request::get(uri).body(Body::empty()).unwrap();
    let response = router(Arc::clone(state)).oneshot(request).await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, content_type, body.to_vec())
}

async fn get_json(state: &Arc<AppState>, uri: &str) -> (StatusCode, Value) {
    let (status, _, body) = get(state, uri).await;
    (status, serde_json::from_slice(&body).unwrap())
}

/// Width, height and RGB pixels of a PNG.
fn decode(png: &[u8]) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::Cursor::new(png));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

#[tokio::test]
async fn the_fdr_filter_returns_exactly_the_flagged_galaxies_with_p_and_q() {
    let (dir, state) = fixture(60);
    let results = Results::open(dir.path()).unwrap();
    let catalog = &results.catalog;
    let flags = catalog.bool("fdr_flag").unwrap();
    let q = catalog.f64("qvalue").unwrap();
    let p = catalog.f64("pvalue").unwrap();
    let ids = catalog.str("plateifu").unwrap();
    let fdr = results.manifest.fdr;
    let expected: BTreeSet<&str> = (0..ids.len())
        .filter(|&i| flags[i])
        .map(|i| ids[i].as_str())
        .collect();
    assert!(
        !expected.is_empty(),
        "the synthetic survey's nuclei are flagged at FDR {fdr}"
    );
    // The flag is Benjamini–Hochberg on the p-values: q ≤ FDR exactly when flagged, q ≥ p.
    for i in 0..ids.len() {
        assert_eq!(
            flags[i],
            q[i] <= fdr,
            "{}: q = {}, flag {}",
            ids[i],
            q[i],
            flags[i]
        );
        assert!(q[i] >= p[i] - 1e-12, "{}: q {} < p {}", ids[i], q[i], p[i]);
    }

    let (_, summary) = get_json(&state, "/api/summary").await;
    assert_eq!(summary["n_flagged"], expected.len());
    for flag in ["1", "true", "yes"] {
        let (status, page) =
            get_json(&state, &format!("/api/galaxies?flag={flag}&limit=500")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(page["total"], expected.len(), "flag={flag}");
        let rows = page["rows"].as_array().unwrap();
        let got: BTreeSet<&str> = rows
            .iter()
            .map(|r| r["plateifu"].as_str().unwrap())
            .collect();
        assert_eq!(got, expected, "flag={flag}");
        let ranks: Vec<u64> = rows.iter().map(|r| r["rank"].as_u64().unwrap()).collect();
        assert!(
            ranks.windows(2).all(|w| w[0] < w[1]),
            "sorted by rank: {ranks:?}"
        );
        for r in rows {
            let (p, q) = (r["pvalue"].as_f64().unwrap(), r["qvalue"].as_f64().unwrap());
            assert!(q <= fdr && p <= q, "{r}");
            assert!(r["scores"]["score"].is_number(), "{r}");
        }
    }
    // Without the filter every galaxy comes back, most anomalous (rank 1) first.
    let (_, all) = get_json(&state, "/api/galaxies?flag=&limit=500").await;
    assert_eq!(all["total"], 60);
    assert_eq!(all["rows"][0]["rank"], 1);
    assert!(all["rows"][0]["pvalue"].is_number());
    // The filter combines with the others: a search that excludes every flagged galaxy.
    let unflagged = (0..ids.len()).find(|&i| !flags[i]).unwrap();
    let (_, none) = get_json(
        &state,
        &format!("/api/galaxies?flag=1&q={}", ids[unflagged]),
    )
    .await;
    assert_eq!(none["total"], 0);
}

#[tokio::test]
async fn the_galaxy_page_has_the_anomaly_map_region_and_dominant_line() {
    let (dir, state) = fixture(30);
    let results = Results::open(dir.path()).unwrap();
    let (_, top) = get_json(&state, "/api/galaxies?limit=1").await;
    let plateifu = top["rows"][0]["plateifu"].as_str().unwrap().to_string();
    let row = results.catalog.row_of(&plateifu).unwrap();
    let (status, g) = get_json(&state, &format!("/api/galaxy/{plateifu}")).await;
    assert_eq!(status, StatusCode::OK);
    for key in ["pvalue", "qvalue", "fdr_flag"] {
        assert!(!g[key].is_null(), "{key}: {g}");
    }
    let a = &g["anomaly"];
    assert_eq!(a["available"], true, "{a}");
    // One model scored these results: its own map, not a consensus of runs.
    assert_eq!(a["runs"], 1, "{a}");
    assert!(a["consensus_note"].is_null(), "{a}");
    // Maps that are three runs' consensus say so, in the words of `plot galaxy`'s figure;
    // the manifest is not consulted (results scored before consensus maps have its seeds).
    let mut maps = AnomalyMaps::read(dir.path()).unwrap().unwrap();
    maps.runs = 3;
    maps.write(dir.path()).unwrap();
    let (_, g3) = get_json(&load(dir.path()), &format!("/api/galaxy/{plateifu}")).await;
    assert_eq!(g3["anomaly"]["runs"], 3);
    assert_eq!(
        g3["anomaly"]["consensus_note"].as_str(),
        consensus_note(3).as_deref()
    );
    let line = &results.catalog.str("region_line").unwrap()[row];
    assert!(!line.is_empty());
    assert_eq!(a["line"], line.as_str());
    assert_eq!(a["region"]["line"], line.as_str());
    assert_eq!(
        a["region"]["area"].as_f64().unwrap(),
        results.catalog.f64("region_area").unwrap()[row]
    );
    // No dataset is attached, so the pixel scale comes from the map; the synthetic grid is
    // 0.5″ a pixel (box = grid), which the map must give back.
    let outline = &a["outline"];
    assert_eq!(outline["pixel_scale_from"], "map");
    let pixel = outline["pixel_arcsec"].as_f64().unwrap();
    assert!((pixel - 0.5).abs() < 0.01, "pixel scale {pixel}");
    let (col, row_px, radius) = (
        outline["col"].as_f64().unwrap(),
        outline["row"].as_f64().unwrap(),
        outline["radius"].as_f64().unwrap(),
    );
    assert!((0.0..SIZE as f64).contains(&col) && (0.0..SIZE as f64).contains(&row_px));
    assert!(radius > 0.0 && radius < SIZE as f64);
    assert!(a["stretch"]["hi"].as_f64().unwrap() > a["stretch"]["lo"].as_f64().unwrap());

    let zoom = 8;
    let (status, content_type, body) = get(
        &state,
        &format!("/api/galaxy/{plateifu}/tile/anomaly/map.png?zoom={zoom}"),
    )
    .await;
    assert_eq!(
        (status, content_type.as_str()),
        (StatusCode::OK, "image/png")
    );
    let (w, h, rgb) = decode(&body);
    assert_eq!((w as usize, h as usize), (SIZE * zoom, SIZE * zoom));
    let ring = rgb.chunks_exact(3).filter(|c| *c == OUTLINE).count();
    assert!(ring > 20, "the region is outlined ({ring} pixels)");
    // The ring passes through the point `radius` east of the centre (output pixels).
    let x = ((col + radius + 0.5) * zoom as f64) as usize;
    let y = ((SIZE as f64 - 0.5 - row_px) * zoom as f64) as usize;
    let near_ring = (x.saturating_sub(2)..=x + 2)
        .filter(|&xx| xx < w as usize)
        .any(|xx| rgb[(y * w as usize + xx) * 3..][..3] == OUTLINE);
    assert!(near_ring, "ring at ({x}, {y})");
    let grey = oddcube_explore::plot::MASKED;
    assert_eq!(
        &rgb[..3],
        &[grey.0, grey.1, grey.2],
        "the corner outside the footprint is masked grey"
    );
    let (status, _, _) = get(&state, "/api/colourbar/inferno.png").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = get_json(
        &state,
        &format!("/api/galaxy/{plateifu}/tile/anomaly/map.png?zoom=99"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn older_results_without_anomaly_maps_still_serve_and_say_why() {
    let (dir, _) = fixture(20);
    std::fs::remove_file(
        dir.path()
            .join(oddcube_score::anomaly_map::ANOMALY_MAPS_FILE),
    )
    .unwrap();
    let state = load(dir.path());
    let (_, summary) = get_json(&state, "/api/summary").await;
    assert_eq!(summary["has_anomaly_maps"], false);
    let (status, page) = get_json(&state, "/api/galaxies?limit=5").await;
    assert_eq!(status, StatusCode::OK);
    let plateifu = page["rows"][0]["plateifu"].as_str().unwrap().to_string();
    let (status, g) = get_json(&state, &format!("/api/galaxy/{plateifu}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(g["anomaly"]["available"], false);
    assert_eq!(g["anomaly"]["reason"], NO_MAPS_FILE);
    let (status, json) = get_json(
        &state,
        &format!("/api/galaxy/{plateifu}/tile/anomaly/map.png"),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(json["error"], NO_MAPS_FILE);
    let (status, _, _) = get(
        &state,
        &format!("/api/galaxy/{plateifu}/tile/input/Ha-6564.png"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "the line maps are unaffected");
}

#[tokio::test]
async fn the_latent_map_colours_each_column_on_its_own_stretch() {
    let (_dir, state) = fixture(60);
    let bins = |map: &Value| {
        let mut b: Vec<u64> = map["t"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_f64)
            .map(|t| (t * 9.999).floor() as u64)
            .collect();
        b.sort_unstable();
        b.dedup();
        b.len()
    };
    let (status, chi2) = get_json(&state, "/api/map?colour=chi2").await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(
        chi2["stretch"], "linear",
        "χ² is long-tailed: {}",
        chi2["stretch"]
    );
    // The positions keep the values' order and use both ends of the scale.
    let mut pairs: Vec<(f64, f64)> = chi2["c"]
        .as_array()
        .unwrap()
        .iter()
        .zip(chi2["t"].as_array().unwrap())
        .filter_map(|(c, t)| Some((c.as_f64()?, t.as_f64()?)))
        .collect();
    assert_eq!(pairs.len(), 60);
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(pairs.windows(2).all(|w| w[0].1 <= w[1].1), "monotone");
    assert_eq!((pairs[0].1, pairs[59].1), (0.0, 1.0));
    assert!(bins(&chi2) >= 2);
    let (_, score) = get_json(&state, "/api/map?colour=score").await;
    assert_eq!(score["stretch"], "linear");
    assert_eq!(score["reversed"], false);
    let (_, q) = get_json(&state, "/api/map?colour=qvalue").await;
    assert_eq!(q["reversed"], true, "low q is the anomalous end");
    let (_, rank) = get_json(&state, "/api/map?colour=rank").await;
    let t = rank["t"].as_array().unwrap();
    let ranks = rank["rank"].as_array().unwrap();
    let first = ranks.iter().position(|r| r == 1).unwrap();
    assert_eq!(t[first].as_f64(), Some(1.0), "rank 1 is the bright end");
    assert_eq!(t.len(), 60);
}
