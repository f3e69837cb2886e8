//! Label-to-new-order latency of the explorer over HTTP on loopback (`docs/active-learning.md`):
//! serves a synthetic RESULTS directory of N galaxies on 127.0.0.1, then repeatedly POSTs a
//! label to `/api/labels` (appended to labels.csv with fsync, model refitted) and GETs the first
//! page of the re-ranked table (`/api/galaxies?sort=adjusted`) and `/api/next`, timing the three
//! requests together. Prints start-up time and the median and maximum latency at 1–10, 41–50 and
//! 91–100 labels. `cargo run --release -p oddcube-explore --example relabel_latency -- [N …]`
//! (default 10000 100000). Only 127.0.0.1 is ever contacted.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oddcube_explore::serve::{AppState, ServeSources, router};
use oddcube_score::results::Results;

fn request(address: SocketAddr, head: &str, body: &str) -> Result<String, String> {
    let mut stream = TcpStream::connect(address).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "{head} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    if !response.starts_with("HTTP/1.1 200") {
        return Err(response.lines().next().unwrap_or("").to_string());
    }
    Ok(response)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let sizes = if sizes.is_empty() {
        vec![10_000, 100_000]
    } else {
        sizes
    };
    println!("| galaxies | start-up (s) | labels 1–10: median / max (ms) | 41–50 | 91–100 |");
    println!("|---|---|---|---|---|");
    for n in sizes {
        let dir = std::env::temp_dir().join(format!("oddcube-relabel-{}-{n}", std::process::id()));
        oddcube_explore::serve::synthetic::write_synthetic_results(&dir, n, 7)?;
        let ids = Results::open(&dir)?
            .catalog
            .str("plateifu")
            .unwrap_or(&[])
            .to_vec();
        let started = Instant::now();
        let state = Arc::new(AppState::load(
            &ServeSources {
                results: dir.clone(),
                ..Default::default()
            },
            None,
        )?);
        let startup = started.elapsed().as_secs_f64();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let address = listener.local_addr()?;
        let app = router(state);
        runtime.spawn(async move { axum::serve(listener, app).await });
        let mut times = Vec::new();
        for i in 0..100 {
            // Labels spread over the catalogue, one in five interesting.
            let id = &ids[(i * 7919 + 13) % ids.len()];
            let label = if i % 5 == 0 { "interesting" } else { "normal" };
            let t = Instant::now();
            request(
                address,
                "POST /api/labels",
                &format!(r#"{{"plateifu": "{id}", "label": "{label}"}}"#),
            )?;
            request(address, "GET /api/galaxies?sort=adjusted&limit=50", "")?;
            request(address, "GET /api/next", "")?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let stats = |range: std::ops::Range<usize>| {
            let mut v = times[range].to_vec();
            v.sort_by(f64::total_cmp);
            format!("{:.0} / {:.0}", v[v.len() / 2], v[v.len() - 1])
        };
        println!(
            "| {n} | {startup:.1} | {} | {} | {} |",
            stats(0..10),
            stats(40..50),
            stats(90..100)
        );
        runtime.shutdown_background();
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}
