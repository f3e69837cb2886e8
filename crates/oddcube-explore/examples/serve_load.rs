//! A bounded load test of the explorer on loopback: serves a synthetic RESULTS directory on
//! 127.0.0.1 (random port) and sends REQUESTS requests over CONCURRENCY connections at once,
//! cycling through the table, galaxy, tile, map and summary endpoints; prints error counts and
//! latency percentiles. `cargo run --release -p oddcube-explore --example serve_load --
//! [GALAXIES=20000] [REQUESTS=1000] [CONCURRENCY=50]`. Only 127.0.0.1 is ever contacted.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use oddcube_explore::project::{ProjectOptions, ProjectionMethod, project};
use oddcube_explore::serve::{AppState, ServeSources, router};
use oddcube_score::results::Results;

fn get(address: SocketAddr, path: &str) -> Result<(u16, usize), String> {
    let mut stream = TcpStream::connect(address).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| e.to_string())?;
    let head = String::from_utf8_lossy(&response[..response.len().min(16)]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or(format!("bad response {head:?}"))?;
    Ok((status, response.len()))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>());
    let galaxies = args.next().transpose()?.unwrap_or(20_000);
    let requests = args.next().transpose()?.unwrap_or(1000);
    let concurrency = args.next().transpose()?.unwrap_or(50).max(1);

    let dir = std::env::temp_dir().join(format!("oddcube-load-{}", std::process::id()));
    let started = Instant::now();
    oddcube_explore::serve::synthetic::write_synthetic_results(&dir, galaxies, 7)?;
    let results = Results::open(&dir)?;
    let view = oddcube_score::LatentView::new(&results.latents, galaxies, results.latent_dim)?;
    let ids = results.catalog.str("plateifu").unwrap_or(&[]).to_vec();
    let options = ProjectOptions {
        method: ProjectionMethod::Pca,
        ..Default::default()
    };
    project(&view, ids.clone(), &options, &oddcube_data::NoProgress)?.write(&dir)?;
    // Tiles exist for the galaxies whose residuals are stored (the top-ranked ones).
    let ranks = results.catalog.u32("rank").unwrap_or(&[]);
    let mapped: Vec<String> = ids
        .iter()
        .zip(ranks)
        .filter(|(_, r)| (**r as usize) <= oddcube_explore::serve::synthetic::STORED_RESIDUALS)
        .map(|(id, _)| id.clone())
        .collect();
    let state = Arc::new(AppState::load(
        &ServeSources {
            results: dir.clone(),
            ..Default::default()
        },
        None,
    )?);
    println!(
        "fixture: {galaxies} galaxies in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let address = listener.local_addr()?;
    let app = router(state);
    runtime.spawn(async move { axum::serve(listener, app).await });

    let paths: Vec<String> = (0..requests)
        .map(|i| {
            let id = &ids[(i * 7919) % ids.len()];
            let mapped_id = &mapped[(i * 104_729) % mapped.len()];
            match i % 6 {
                0 => format!(
                    "/api/galaxies?sort=recon&order=desc&offset={}&limit=50",
                    (i * 50) % galaxies
                ),
                1 => format!("/api/galaxies?sort=lof&q={}&flag=1", &id[..4]),
                2 => format!("/api/galaxy/{id}"),
                3 => format!("/api/galaxy/{mapped_id}/tile/residual/Ha-6564.png?zoom=4"),
                4 => "/api/summary".to_string(),
                _ => format!("/api/galaxy/{mapped_id}/tile/bpt-input/all.png"),
            }
        })
        .collect();
    let paths = Arc::new(paths);
    let next = Arc::new(AtomicUsize::new(0));
    let wall = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (paths, next) = (Arc::clone(&paths), Arc::clone(&next));
            std::thread::spawn(move || {
                let mut out = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(path) = paths.get(i) else { break };
                    let t = Instant::now();
                    let result = get(address, path);
                    out.push((i % 6, t.elapsed(), result));
                }
                out
            })
        })
        .collect();
    let mut samples = Vec::new();
    for worker in workers {
        samples.extend(worker.join().map_err(|_| "worker panicked")?);
    }
    let total = wall.elapsed();
    let errors: Vec<String> = samples
        .iter()
        .filter_map(|(_, _, r)| match r {
            Ok((200, _)) => None,
            Ok((status, _)) => Some(format!("HTTP {status}")),
            Err(e) => Some(e.clone()),
        })
        .collect();
    let percentile = |mut v: Vec<Duration>, q: f64| -> f64 {
        v.sort();
        v.get(((v.len() as f64 - 1.0) * q).round() as usize)
            .map(|d| d.as_secs_f64() * 1e3)
            .unwrap_or(f64::NAN)
    };
    let all: Vec<Duration> = samples.iter().map(|s| s.1).collect();
    println!(
        "{} requests, {concurrency} concurrent, {:.2} s wall ({:.0} req/s); errors: {}",
        samples.len(),
        total.as_secs_f64(),
        samples.len() as f64 / total.as_secs_f64(),
        errors.len()
    );
    println!(
        "latency ms: p50 {:.2}  p95 {:.2}  p99 {:.2}  max {:.2}",
        percentile(all.clone(), 0.5),
        percentile(all.clone(), 0.95),
        percentile(all.clone(), 0.99),
        percentile(all, 1.0)
    );
    let names = [
        "table page (sorted)",
        "table search+filter",
        "galaxy detail + kNN",
        "residual tile",
        "summary",
        "BPT tile",
    ];
    for (kind, name) in names.iter().enumerate() {
        let d: Vec<Duration> = samples
            .iter()
            .filter(|s| s.0 == kind)
            .map(|s| s.1)
            .collect();
        println!(
            "  {name:<22} n={:<4} p50 {:.2}  p95 {:.2}",
            d.len(),
            percentile(d.clone(), 0.5),
            percentile(d, 0.95)
        );
    }
    for e in errors.iter().take(5) {
        println!("  error: {e}");
    }
    let _ = std::fs::remove_dir_all(&dir);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!("{} errors", errors.len()).into())
    }
}
