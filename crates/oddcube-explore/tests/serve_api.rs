//! The explorer's HTTP API, exercised through the router without a socket
//! (`tower::ServiceExt::oneshot`), on a synthetic RESULTS directory.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use oddcube_explore::project::{ProjectOptions, ProjectionMethod, project};
use oddcube_explore::serve::synthetic::write_synthetic_results;
use oddcube_explore::serve::{AppState, ServeSources, router};
use oddcube_score::{LatentView, results::Results};
use serde_json::Value;
use tower::ServiceExt;

struct Fixture {
    dir: tempfile::TempDir,
    state: Arc<AppState>,
}

fn fixture(n: usize, with_map: bool) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let kinds = write_synthetic_results(dir.path(), n, 1).unwrap();
    let kinds_csv = dir.path().join("kinds.csv");
    let mut text = String::from("plateifu,kind\n");
    for (p, k) in &kinds {
        text.push_str(&format!("{p},{k}\n"));
    }
    std::fs::write(&kinds_csv, text).unwrap();
    if with_map {
        let results = Results::open(dir.path()).unwrap();
        let view = LatentView::new(&results.latents, n, results.latent_dim).unwrap();
        let ids = results.catalog.str("plateifu").unwrap().to_vec();
        let options = ProjectOptions {
            method: ProjectionMethod::Pca,
            ..Default::default()
        };
        project(&view, ids, &options, &oddcube_data::NoProgress)
            .unwrap()
            .write(dir.path())
            .unwrap();
    }
    let sources = ServeSources {
        results: dir.path().to_path_buf(),
        dataset: None,
        kinds: Some(kinds_csv),
    };
    let state = Arc::new(AppState::load(&sources, None).unwrap());
    Fixture { dir, state }
}

async fn send(state: &Arc<AppState>, request: Request<Body>) -> (StatusCode, String, Vec<u8>) {
    let response = router(Arc::clone(state)).oneshot(request).await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, content_type, body)
}

async fn get(state: &Arc<AppState>, uri: &str) -> (StatusCode, String, Vec<u8>) {
    send(state, Request::get(uri).body(Body::empty()).unwrap()).await
}

async fn get_json(state: &Arc<AppState>, uri: &str) -> (StatusCode, Value) {
    let (status, content_type, body) = get(state, uri).await;
    assert!(
        content_type.starts_with("application/json"),
        "{uri}: {content_type}"
    );
    (status, serde_json::from_slice(&body).unwrap())
}

async fn post_label(state: &Arc<AppState>, body: &str) -> (StatusCode, Value) {
    let request = Request::post("/api/labels")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let (status, _, bytes) = send(state, request).await;
    (status, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn page_and_assets_are_embedded_and_nothing_else_is_served() {
    let f = fixture(20, false);
    let (status, content_type, body) = get(&f.state, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/html"));
    assert!(String::from_utf8(body).unwrap().contains("/assets/app.js"));
    let (status, content_type, _) = get(&f.state, "/assets/app.js").await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/javascript"));
    for uri in [
        "/assets/../Cargo.toml",
        "/assets/..%2F..%2FCargo.toml",
        "/assets/%2e%2e%2fsrc%2flib.rs",
        "/assets/.hidden",
        "/../../etc/passwd",
        "/etc/passwd",
        "/assets/nothing.js",
        "/catalog.csv",
        "/labels.csv",
    ] {
        let (status, _, body) = get(&f.state, uri).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        let text = String::from_utf8_lossy(&body);
        assert!(
            !text.contains("[package]") && !text.contains("root:"),
            "{uri} leaked a file"
        );
    }
    let (status, json) = get_json(&f.state, "/api/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .contains("no such API endpoint")
    );
}

#[tokio::test]
async fn table_sorts_filters_searches_and_paginates() {
    let f = fixture(60, false);
    let (status, summary) = get_json(&f.state, "/api/summary").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(summary["n"], 60);
    let columns: Vec<&str> = summary["score_columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    // The synthetic results come out of the real scoring path, so they carry every score column.
    assert_eq!(columns, oddcube_score::evaluate::SCORE_COLUMNS);
    assert_eq!(summary["kinds"], serde_json::json!(["normal", "seyfert"]));

    let (_, page) = get_json(&f.state, "/api/galaxies?limit=10").await;
    assert_eq!(page["total"], 60);
    let ranks: Vec<u64> = page["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["rank"].as_u64().unwrap())
        .collect();
    assert_eq!(
        ranks,
        (1..=10).collect::<Vec<_>>(),
        "default sort is by rank"
    );
    let (_, second) = get_json(&f.state, "/api/galaxies?limit=10&offset=10").await;
    assert_eq!(second["rows"][0]["rank"], 11);

    for column in columns {
        for order in ["asc", "desc"] {
            let (status, page) = get_json(
                &f.state,
                &format!("/api/galaxies?sort={column}&order={order}&limit=500"),
            )
            .await;
            assert_eq!(status, StatusCode::OK);
            let values: Vec<f64> = page["rows"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["scores"][column].as_f64().unwrap())
                .collect();
            assert_eq!(values.len(), 60);
            let sorted = values.windows(2).all(|w| {
                if order == "asc" {
                    w[0] <= w[1]
                } else {
                    w[0] >= w[1]
                }
            });
            assert!(sorted, "{column} {order}");
        }
    }
    let (_, kinds) = get_json(&f.state, "/api/galaxies?kind=seyfert&limit=500").await;
    assert_eq!(kinds["total"], 12);
    assert!(
        kinds["rows"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["kind"] == "seyfert")
    );
    // The quality filter: the synthetic survey's one CRITICAL galaxy, or all the others.
    let (_, critical) = get_json(&f.state, "/api/galaxies?quality=critical&limit=500").await;
    assert_eq!(critical["total"], 1);
    assert_eq!(critical["rows"][0]["plateifu"], "8000-2201");
    let (_, ok) = get_json(&f.state, "/api/galaxies?quality=ok&limit=500").await;
    let (_, all) = get_json(&f.state, "/api/galaxies?limit=500").await;
    assert_eq!(
        ok["total"].as_u64().unwrap() + 1,
        all["total"].as_u64().unwrap()
    );
    let (status, _, body) = get(&f.state, "/api/galaxies?quality=bad").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&body).contains("quality must be critical, ok or any"));
    let (_, flagged) = get_json(&f.state, "/api/galaxies?flag=1&limit=500").await;
    assert!(
        flagged["rows"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["fdr_flag"] == true)
    );
    let (_, ifu) = get_json(&f.state, "/api/galaxies?ifu=127&limit=500").await;
    assert_eq!(ifu["total"], 12);
    let (_, found) = get_json(&f.state, "/api/galaxies?q=8003-2101").await;
    assert_eq!(found["total"], 1);
    assert_eq!(found["rows"][0]["plateifu"], "8003-2101");
    let (_, by_mangaid) = get_json(&f.state, "/api/galaxies?q=1-100007").await;
    assert_eq!(by_mangaid["rows"][0]["plateifu"], "8000-2601");

    for bad in [
        "/api/galaxies?sort=nope",
        "/api/galaxies?order=up",
        "/api/galaxies?limit=0",
        "/api/galaxies?limit=100000",
        "/api/galaxies?label=weird",
    ] {
        let (status, json) = get_json(&f.state, bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(json["error"].is_string(), "{bad}");
    }
    let (status, _) = get_json(&f.state, "/api/galaxies?offset=-1").await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "axum's query rejection is JSON too"
    );
}

#[tokio::test]
async fn galaxy_page_data_tiles_and_neighbours() {
    let f = fixture(30, true);
    let (_, top) = get_json(&f.state, "/api/galaxies?limit=1").await;
    let plateifu = top["rows"][0]["plateifu"].as_str().unwrap().to_string();
    let (status, g) = get_json(&f.state, &format!("/api/galaxy/{plateifu}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(g["rank"], 1);
    assert_eq!(
        g["kind"], "seyfert",
        "the top anomaly of the synthetic survey has a nucleus"
    );
    assert_eq!(g["maps"]["source"], "residuals");
    assert_eq!(g["neighbours"].as_array().unwrap().len(), 8);
    assert!(
        g["neighbours"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["plateifu"] != plateifu.as_str())
    );
    let shares: f64 = g["line_shares"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["share"].as_f64().unwrap())
        .sum();
    assert!((shares - 1.0).abs() < 1e-9);
    assert!(
        g["links"]["marvin"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/marvin/galaxy/{plateifu}/"))
    );
    assert!(g["links"]["skyserver"].as_str().unwrap().contains("ra="));
    // The catalogue's quality and identity columns reach the page.
    assert_eq!(g["quality"]["critical"], false);
    assert_eq!(g["quality"]["dapqual"], 0);
    assert_eq!(g["bpt_class"], "seyfert");
    assert_eq!(g["daptype"], "HYB10-MILESHC-MASTARSSP");
    let (_, critical) = get_json(&f.state, "/api/galaxy/8000-2201").await;
    assert_eq!(critical["quality"]["critical"], true, "synthetic galaxy 3");
    assert_eq!(critical["quality"]["dapqual_bits"], "DAPCRIT|CRITICAL");
    assert_eq!(critical["quality"]["drp3qual_bits"], "");
    assert!(
        g["bpt"]["input"]["seyfert"].as_u64().unwrap() > 0,
        "the nucleus is classified Seyfert: {}",
        g["bpt"]
    );
    assert_eq!(
        g["bpt"]["recon"]["seyfert"], 0,
        "the reconstruction misses it"
    );

    for kind in ["input", "recon", "residual"] {
        let (status, content_type, body) = get(
            &f.state,
            &format!("/api/galaxy/{plateifu}/tile/{kind}/Ha-6564.png?zoom=2"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{kind}");
        assert_eq!(content_type, "image/png");
        assert_eq!(&body[1..4], b"PNG");
    }
    let (status, _, body) = get(
        &f.state,
        &format!("/api/galaxy/{plateifu}/tile/bpt-input/all.png"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[1..4], b"PNG");
    for (uri, want) in [
        (
            format!("/api/galaxy/{plateifu}/tile/input/Xx-1.png"),
            StatusCode::NOT_FOUND,
        ),
        (
            format!("/api/galaxy/{plateifu}/tile/weird/Ha-6564.png"),
            StatusCode::NOT_FOUND,
        ),
        (
            format!("/api/galaxy/{plateifu}/tile/input/Ha-6564.png?zoom=99"),
            StatusCode::BAD_REQUEST,
        ),
        ("/api/galaxy/0000-0000".to_string(), StatusCode::NOT_FOUND),
        (
            "/api/galaxy/..%2F..%2Fetc/tile/input/x.png".to_string(),
            StatusCode::NOT_FOUND,
        ),
    ] {
        let (status, json) = get_json(&f.state, &uri).await;
        assert_eq!(status, want, "{uri}");
        assert!(json["error"].is_string());
    }
    let (status, map) = get_json(&f.state, "/api/map?colour=lof").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(map["x"].as_array().unwrap().len(), 30);
    assert_eq!(map["colour"], "lof");
    let (status, _) = get_json(&f.state, "/api/map?colour=nope").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, content_type, _) = get(&f.state, "/api/colourbar/diverging.png").await;
    assert_eq!(
        (status, content_type.as_str()),
        (StatusCode::OK, "image/png")
    );
    drop(f.dir);
}

#[tokio::test]
async fn labels_are_saved_shown_in_the_table_and_survive_a_restart() {
    let f = fixture(20, false);
    let (status, json) = get_json(&f.state, "/api/map").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no projection yet");
    assert!(json["error"].as_str().unwrap().contains("oddcube project"));

    let (status, saved) = post_label(
        &f.state,
        r#"{"plateifu": "8000-1901", "label": "artefact"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(saved["label"], "artefact");
    post_label(
        &f.state,
        r#"{"plateifu": "8001-1901", "label": "interesting"}"#,
    )
    .await;
    let (_, table) = get_json(&f.state, "/api/galaxies?label=artefact").await;
    assert_eq!(table["total"], 1);
    assert_eq!(table["rows"][0]["label"], "artefact");
    // A relevance grade on Astronomaly's 0–5 scale is a label like the words.
    let (status, graded) = post_label(&f.state, r#"{"plateifu": "8000-2001", "label": "4"}"#).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(graded["label"], "4");
    let (_, four) = get_json(&f.state, "/api/galaxies?label=4").await;
    assert_eq!(four["total"], 1);
    assert_eq!(four["rows"][0]["plateifu"], "8000-2001");
    let (_, labelled) = get_json(&f.state, "/api/galaxies?label=labelled").await;
    assert_eq!(labelled["total"], 3);

    // A fresh server over the same directory sees the labels (labels.csv on disk).
    let again = Arc::new(
        AppState::load(
            &ServeSources {
                results: f.dir.path().to_path_buf(),
                ..Default::default()
            },
            None,
        )
        .unwrap(),
    );
    let (_, g) = get_json(&again, "/api/galaxy/8000-1901").await;
    assert_eq!(g["label"], "artefact");
    let csv = std::fs::read_to_string(f.dir.path().join("labels.csv")).unwrap();
    assert!(
        csv.starts_with("plateifu,label,time\n") && csv.contains("8000-1901,artefact,20"),
        "{csv}"
    );

    let (status, cleared) = post_label(&again, r#"{"plateifu": "8000-1901", "label": null}"#).await;
    assert_eq!(status, StatusCode::OK);
    assert!(cleared["label"].is_null());

    for (body, want) in [
        (
            r#"{"plateifu": "9999-1", "label": "normal"}"#,
            StatusCode::NOT_FOUND,
        ),
        (
            r#"{"plateifu": "8000-1901", "label": "great"}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            r#"{"plateifu": "8000-1901", "label": "6"}"#,
            StatusCode::BAD_REQUEST,
        ),
        (r#"not json"#, StatusCode::BAD_REQUEST),
    ] {
        let (status, json) = post_label(&again, body).await;
        assert_eq!(status, want, "{body}");
        assert!(json["error"].is_string());
    }
    // Oversized bodies are refused before they are read.
    let big = format!(
        r#"{{"plateifu": "{}", "label": "normal"}}"#,
        "x".repeat(64 * 1024)
    );
    let request = Request::post("/api/labels")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(big))
        .unwrap();
    let (status, _, _) = send(&again, request).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn next_follows_the_blend_and_labels_re_rank_live() {
    let f = fixture(60, true);
    let (_, top) = get_json(&f.state, "/api/galaxies?sort=rank&limit=3").await;
    let first = top["rows"][0]["plateifu"].as_str().unwrap().to_string();
    let (status, next) = get_json(&f.state, "/api/next").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        next["plateifu"], first,
        "without labels, next is the top anomaly"
    );
    let (_, plain) = get_json(&f.state, "/api/galaxies?sort=adjusted&limit=60").await;
    let before: Vec<String> = plain["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["plateifu"].as_str().unwrap().to_string())
        .collect();
    let (_, by_rank) = get_json(&f.state, "/api/galaxies?sort=rank&limit=60").await;
    let ranked: Vec<&str> = by_rank["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["plateifu"].as_str().unwrap())
        .collect();
    assert_eq!(
        before, ranked,
        "no labels: the blend is the anomaly ranking"
    );

    // Label the next three: the queue moves on, never to a labelled galaxy, and the order changes.
    let mut seen = Vec::new();
    for label in ["interesting", "normal", "normal"] {
        let (_, next) = get_json(&f.state, "/api/next").await;
        let id = next["plateifu"].as_str().unwrap().to_string();
        assert!(!seen.contains(&id), "{id} suggested twice");
        let (status, saved) = post_label(
            &f.state,
            &format!(r#"{{"plateifu": "{id}", "label": "{label}"}}"#),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_ne!(saved["next"]["plateifu"], id.as_str());
        seen.push(id);
    }
    let (_, after) = get_json(&f.state, "/api/galaxies?sort=adjusted&limit=60").await;
    let after: Vec<String> = after["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["plateifu"].as_str().unwrap().to_string())
        .collect();
    assert_ne!(before, after, "labels re-rank the table");
    assert_eq!(after[0], seen[0], "the galaxy labelled interesting leads");
    let (_, g) = get_json(&f.state, &format!("/api/galaxy/{}", seen[1])).await;
    assert!(g["live"]["relevance"].as_f64().unwrap() < 0.5);
    let (status, map) = get_json(&f.state, "/api/map?colour=relevance").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(map["colour"], "relevance");
    let (status, explored) = get_json(&f.state, "/api/next?explore=2").await;
    assert_eq!(status, StatusCode::OK);
    assert!(explored["plateifu"].is_string());
    let (status, _) = get_json(&f.state, "/api/next?explore=-1").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = get_json(&f.state, "/api/next?explore=x").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // score --labels computes the same blend from the file the explorer wrote.
    let results = Results::open(f.dir.path()).unwrap();
    let store = oddcube_score::feedback::LabelStore::open(f.dir.path()).unwrap();
    let ids = results.catalog.str("plateifu").unwrap().to_vec();
    let blend = oddcube_score::relevance::blend(
        &results.catalog,
        &results.latents,
        results.latent_dim,
        results.catalog.f64(&results.manifest.rank_by).unwrap(),
        &store.labels_for(&ids),
        &Default::default(),
    )
    .unwrap();
    let (_, live) = get_json(&f.state, &format!("/api/galaxy/{}", after[1])).await;
    let row = results.catalog.row_of(&after[1]).unwrap();
    assert_eq!(live["live"]["review_rank"], blend.rank[row]);
}

#[tokio::test]
async fn two_explorers_keep_every_label_and_bad_lines_are_warnings() {
    let f = fixture(20, false);
    let path = f.dir.path().join("labels.csv");
    std::fs::write(
        &path,
        "plateifu,label,time\n8000-1901,normal,2026\nnot-here,interesting,2026\n8001-1901,bogus,2026\n",
    )
    .unwrap();
    let load = || {
        Arc::new(
            AppState::load(
                &ServeSources {
                    results: f.dir.path().to_path_buf(),
                    ..Default::default()
                },
                None,
            )
            .unwrap(),
        )
    };
    let (a, b) = (load(), load());
    let (_, summary) = get_json(&a, "/api/summary").await;
    let warnings = summary["label_warnings"].to_string();
    assert!(
        warnings.contains("line 4") && warnings.contains("not-here"),
        "{warnings}"
    );
    let (_, table) = get_json(&a, "/api/galaxies?sort=rank&label=unlabelled&limit=2").await;
    let id = |i: usize| table["rows"][i]["plateifu"].as_str().unwrap().to_string();
    let body = |id: String, label: &str| format!(r#"{{"plateifu": "{id}", "label": "{label}"}}"#);
    let (status, _) = post_label(&a, &body(id(0), "interesting")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = post_label(&b, &body(id(1), "normal")).await;
    assert_eq!(status, StatusCode::OK);
    let (_, labelled) = get_json(&b, "/api/galaxies?label=labelled").await;
    assert_eq!(labelled["total"], 3, "b sees a's label after its own write");
    let store = oddcube_score::feedback::LabelStore::open(f.dir.path()).unwrap();
    assert_eq!(
        store.all().len(),
        4,
        "the unknown plate-ifu stays in the file"
    );
}
