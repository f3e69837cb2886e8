//! `fetch` against a local HTTP server on 127.0.0.1 that serves the SAS layout and misbehaves on
//! purpose: a 404, a connection dropped mid-body, a body truncated on every attempt, a corrupt
//! gzip, and Range requests for resuming.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oddcube_data::NoProgress;
use oddcube_data::fetch::{FetchOptions, FetchOutcome, PlateIfu, fetch_all};

const REAL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/data/real/tiny-test-MAPS-HYB10-MILESHC-MASTARSSP.fits.gz"
);

struct Server {
    base_url: String,
    requests: Arc<Mutex<Vec<String>>>,
}

/// Behaviour by plate number: 1 normal, 2 missing, 3 drops the first connection halfway,
/// 4 always truncated, 5 corrupt bytes.
fn start_server(content: Vec<u8>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base_url = format!("http://{}/sas", listener.local_addr().unwrap());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let log = requests.clone();
    let flaky_hits = Arc::new(AtomicUsize::new(0));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (content, log, flaky_hits) = (content.clone(), log.clone(), flaky_hits.clone());
            std::thread::spawn(move || serve(stream, &content, &log, &flaky_hits));
        }
    });
    Server { base_url, requests }
}

fn serve(
    mut stream: TcpStream,
    content: &[u8],
    log: &Mutex<Vec<String>>,
    flaky_hits: &AtomicUsize,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    reader.read_line(&mut request_line).unwrap();
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .to_string();
    let mut range_start: Option<usize> = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
            range_start = v.trim().trim_end_matches('-').parse().ok();
        }
    }
    log.lock()
        .unwrap()
        .push(format!("{path} range={range_start:?}"));
    assert!(
        path.starts_with("/sas/dr17/manga/spectro/analysis/v3_1_1/3.1.0/HYB10-MILESHC-MASTARSSP/")
    );
    let plate: u32 = path.split('/').nth(9).unwrap().parse().unwrap();
    let send = |stream: &mut TcpStream, status: &str, headers: &str, body: &[u8]| {
        let _ = write!(
            stream,
            "HTTP/1.1 {status}\r\nConnection: close\r\n{headers}\r\n"
        );
        let _ = stream.write_all(body);
        let _ = stream.flush();
    };
    let full = |stream: &mut TcpStream, body: &[u8]| match range_start {
        Some(start) if start < body.len() => send(
            stream,
            "206 Partial Content",
            &format!(
                "Content-Length: {}\r\nContent-Range: bytes {start}-{}/{}\r\n",
                body.len() - start,
                body.len() - 1,
                body.len()
            ),
            &body[start..],
        ),
        Some(_) => send(
            stream,
            "416 Range Not Satisfiable",
            "Content-Length: 0\r\n",
            b"",
        ),
        None => send(
            stream,
            "200 OK",
            &format!("Content-Length: {}\r\n", body.len()),
            body,
        ),
    };
    match plate {
        1 => full(&mut stream, content),
        2 => send(
            &mut stream,
            "404 Not Found",
            "Content-Length: 9\r\n",
            b"not found",
        ),
        3 if flaky_hits.fetch_add(1, Ordering::SeqCst) == 0 => {
            // Promise everything, deliver half, hang up.
            let half = &content[..content.len() / 2];
            send(
                &mut stream,
                "200 OK",
                &format!("Content-Length: {}\r\n", content.len()),
                half,
            );
        }
        3 => full(&mut stream, content),
        4 => {
            let half = &content[..content.len() / 2];
            send(
                &mut stream,
                "200 OK",
                &format!("Content-Length: {}\r\n", content.len()),
                half,
            );
        }
        5 => {
            let mut bad = content.to_vec();
            let mid = bad.len() / 2;
            bad[mid] ^= 0xff;
            send(
                &mut stream,
                "200 OK",
                &format!("Content-Length: {}\r\n", bad.len()),
                &bad,
            );
        }
        _ => send(
            &mut stream,
            "500 Internal Server Error",
            "Content-Length: 0\r\n",
            b"",
        ),
    }
}

fn options(base_url: &str, out: &Path) -> FetchOptions {
    FetchOptions {
        base_url: base_url.to_string(),
        out_dir: out.to_path_buf(),
        concurrency: 3,
        retries: 2,
        backoff: Duration::from_millis(10),
        timeout: Duration::from_secs(10),
        ..FetchOptions::default()
    }
}

fn read(path: &Path) -> Vec<u8> {
    let mut v = Vec::new();
    std::fs::File::open(path)
        .unwrap()
        .read_to_end(&mut v)
        .unwrap();
    v
}

#[test]
fn fetch_survives_a_misbehaving_server() {
    let content = read(Path::new(REAL));
    let server = start_server(content.clone());
    let out = tempfile::tempdir().unwrap();
    let targets: Vec<PlateIfu> = ["1-1901", "2-1902", "3-3701", "4-3702", "5-6101"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    let report = fetch_all(
        &targets,
        &options(&server.base_url, out.path()),
        &NoProgress,
    )
    .unwrap();
    let outcome = |i: usize| &report.items[i].1;
    let file = |p: &PlateIfu| out.path().join(p.maps_file_name("HYB10-MILESHC-MASTARSSP"));

    assert_eq!(outcome(0), &FetchOutcome::Downloaded(content.len() as u64));
    assert_eq!(read(&file(&targets[0])), content);

    assert!(
        matches!(outcome(1), FetchOutcome::Failed(r) if r.contains("404") && r.contains("/2/1902/"))
    );
    assert!(!file(&targets[1]).exists());

    // The dropped connection is resumed with a Range request for the missing half.
    assert_eq!(
        outcome(2),
        &FetchOutcome::Downloaded((content.len() - content.len() / 2) as u64)
    );
    assert_eq!(read(&file(&targets[2])), content);
    let log = server.requests.lock().unwrap().clone();
    assert!(log.iter().any(
        |l| l.contains("/3/3701/") && l.contains(&format!("range=Some({})", content.len() / 2))
    ));

    // Truncated every time: gives up, and nothing with the final name exists.
    assert!(
        matches!(outcome(3), FetchOutcome::Failed(r) if r.contains("truncated") && r.contains("gave up"))
    );
    assert!(!file(&targets[3]).exists());

    assert!(matches!(outcome(4), FetchOutcome::Failed(r) if r.contains("corrupt")));
    assert!(!file(&targets[4]).exists());
    assert_eq!(report.counts(), (2, 0, 3));

    // A second run skips the complete files without asking the server for them.
    let before = server.requests.lock().unwrap().len();
    let again = fetch_all(
        &targets[..1],
        &options(&server.base_url, out.path()),
        &NoProgress,
    )
    .unwrap();
    assert_eq!(again.items[0].1, FetchOutcome::AlreadyPresent);
    assert_eq!(server.requests.lock().unwrap().len(), before);
}

#[test]
fn a_leftover_part_file_is_resumed() {
    let content = read(Path::new(REAL));
    let server = start_server(content.clone());
    let out = tempfile::tempdir().unwrap();
    let target: PlateIfu = "1-12701".parse().unwrap();
    let name = target.maps_file_name("HYB10-MILESHC-MASTARSSP");
    let third = content.len() / 3;
    std::fs::write(out.path().join(format!("{name}.part")), &content[..third]).unwrap();
    let report = fetch_all(
        &[target],
        &options(&server.base_url, out.path()),
        &NoProgress,
    )
    .unwrap();
    assert_eq!(
        report.items[0].1,
        FetchOutcome::Downloaded((content.len() - third) as u64)
    );
    assert_eq!(read(&out.path().join(&name)), content);
    assert!(!out.path().join(format!("{name}.part")).exists());
}
