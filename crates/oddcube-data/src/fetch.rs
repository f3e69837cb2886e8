//! Downloading DR17 MAPS files from the SDSS Science Archive Server layout: resumable, retried,
//! verified before they get their final name.
//!
//! A download goes to `NAME.part`; only once the bytes are all there (Content-Length) and the
//! gzip stream decodes to its end with a correct CRC is it renamed to `NAME`. So a file with the
//! final name is always complete, an interrupted run leaves a `.part` that the next run resumes
//! with an HTTP `Range` request, and existing complete files are skipped without a request.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::progress::Progress;

/// Default base URL of the SDSS Science Archive Server.
pub const DEFAULT_BASE_URL: &str = "https://data.sdss.org/sas";
/// Default DAP analysis type (lines fitted per spaxel, the emission-line default).
pub const DEFAULT_DAPTYPE: &str = "HYB10-MILESHC-MASTARSSP";
/// The DR17 DRP and DAP versions whose layout is fetched.
pub const DR17_VERSIONS: (&str, &str) = ("v3_1_1", "3.1.0");

/// A MaNGA plate and IFU design, e.g. `8485-1901`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PlateIfu {
    /// Plate number.
    pub plate: u32,
    /// IFU design number (IFU size × 100 + bundle index).
    pub ifu: u32,
}

impl std::fmt::Display for PlateIfu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.plate, self.ifu)
    }
}

impl std::str::FromStr for PlateIfu {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not a plate-ifu such as 8485-1901");
        let (plate, ifu) = s.trim().split_once('-').ok_or_else(bad)?;
        Ok(PlateIfu {
            plate: plate.parse().map_err(|_| bad())?,
            ifu: ifu.parse().map_err(|_| bad())?,
        })
    }
}

impl PlateIfu {
    /// The MAPS file name for a DAP type.
    pub fn maps_file_name(&self, daptype: &str) -> String {
        format!("manga-{}-{}-MAPS-{daptype}.fits.gz", self.plate, self.ifu)
    }

    /// The archive path below the base URL (`dr17/manga/spectro/analysis/...`).
    pub fn archive_path(&self, daptype: &str) -> String {
        let (drp, dap) = DR17_VERSIONS;
        format!(
            "dr17/manga/spectro/analysis/{drp}/{dap}/{daptype}/{}/{}/{}",
            self.plate,
            self.ifu,
            self.maps_file_name(daptype)
        )
    }
}

/// Parses plate-ifus from a list: comma- or whitespace-separated, `#` starts a comment. A CSV
/// whose header row does not start with a plate-ifu (e.g. `truth.csv`, `bpt.csv`) is read by its
/// first column (through [`crate::csv::Table`]). Duplicates are dropped, order is kept.
pub fn parse_plateifu_list(text: &str) -> Result<Vec<PlateIfu>, String> {
    let rows: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.split('#').next().unwrap_or("").trim()))
        .filter(|(_, l)| !l.is_empty())
        .collect();
    let csv_header = rows.first().is_some_and(|(_, l)| {
        l.contains(',')
            && l.split(',')
                .next()
                .is_some_and(|t| t.trim().parse::<PlateIfu>().is_err())
    });
    let tokens: Vec<(usize, String)> = if csv_header {
        crate::csv::Table::parse(text)?
            .records
            .into_iter()
            .filter_map(|r| Some((r.line, r.fields.into_iter().next()?)))
            .collect()
    } else {
        rows.iter()
            .flat_map(|&(lineno, line)| {
                line.split([',', ' ', '\t', ';'])
                    .filter(|t| !t.trim().is_empty())
                    .map(move |t| (lineno, t.to_string()))
            })
            .collect()
    };
    let mut out = Vec::new();
    for (lineno, token) in tokens {
        let p = token
            .trim()
            .parse::<PlateIfu>()
            .map_err(|e| format!("line {lineno}: {e}"))?;
        if !out.contains(&p) {
            out.push(p);
        }
    }
    if out.is_empty() {
        return Err("no plate-ifu found".to_string());
    }
    Ok(out)
}

/// How to fetch.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Base URL; the archive path is appended after a `/`.
    pub base_url: String,
    /// DAP analysis type.
    pub daptype: String,
    /// Directory the files are written to (flat: one file per galaxy).
    pub out_dir: PathBuf,
    /// Simultaneous downloads.
    pub concurrency: usize,
    /// Attempts per file after the first.
    pub retries: u32,
    /// Wait before the first retry; doubled each time.
    pub backoff: Duration,
    /// Connect and per-read timeout.
    pub timeout: Duration,
}

impl Default for FetchOptions {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_string(),
            daptype: DEFAULT_DAPTYPE.to_string(),
            out_dir: PathBuf::from("."),
            concurrency: 4,
            retries: 4,
            backoff: Duration::from_secs(2),
            timeout: Duration::from_secs(60),
        }
    }
}

/// What happened to one galaxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchOutcome {
    /// Downloaded (or resumed) and verified; bytes written this run.
    Downloaded(u64),
    /// A complete file was already there.
    AlreadyPresent,
    /// Gave up; the reason names the URL.
    Failed(String),
}

/// The outcome of a batch, in input order.
#[derive(Debug, Clone)]
pub struct FetchReport {
    /// One entry per requested galaxy.
    pub items: Vec<(PlateIfu, FetchOutcome)>,
}

impl FetchReport {
    /// The galaxies that could not be fetched, with reasons.
    pub fn failures(&self) -> impl Iterator<Item = (&PlateIfu, &str)> {
        self.items.iter().filter_map(|(p, o)| match o {
            FetchOutcome::Failed(r) => Some((p, r.as_str())),
            _ => None,
        })
    }

    /// Counts of (downloaded, already present, failed).
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for (_, o) in &self.items {
            match o {
                FetchOutcome::Downloaded(_) => c.0 += 1,
                FetchOutcome::AlreadyPresent => c.1 += 1,
                FetchOutcome::Failed(_) => c.2 += 1,
            }
        }
        c
    }
}

/// Why one attempt failed, and whether trying again can help.
enum AttemptError {
    Retry(String),
    Permanent(String),
}

/// Fetches every galaxy into `opts.out_dir`, `opts.concurrency` at a time. Never stops the batch
/// for one bad galaxy: each gets an outcome.
pub fn fetch_all(
    targets: &[PlateIfu],
    opts: &FetchOptions,
    progress: &dyn Progress,
) -> io::Result<FetchReport> {
    fs::create_dir_all(&opts.out_dir)?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(opts.timeout))
        .timeout_per_read(Some(opts.timeout))
        .user_agent(concat!("oddcube/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let results: Mutex<Vec<Option<FetchOutcome>>> = Mutex::new(vec![None; targets.len()]);
    let next = AtomicUsize::new(0);
    progress.start("fetch", targets.len() as u64);
    std::thread::scope(|scope| {
        for _ in 0..opts.concurrency.clamp(1, 64).min(targets.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(target) = targets.get(i) else { break };
                    let outcome = fetch_one(&agent, *target, opts);
                    if let FetchOutcome::Failed(reason) = &outcome {
                        tracing::warn!("{target}: {reason}");
                    }
                    results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(outcome);
                    progress.advance(1);
                }
            });
        }
    });
    progress.finish();
    let results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    let items = targets
        .iter()
        .zip(results)
        .map(|(t, o)| {
            (
                *t,
                o.unwrap_or(FetchOutcome::Failed("not attempted".into())),
            )
        })
        .collect();
    Ok(FetchReport { items })
}

/// Fetches one galaxy with retries and exponential backoff.
fn fetch_one(agent: &ureq::Agent, target: PlateIfu, opts: &FetchOptions) -> FetchOutcome {
    let name = target.maps_file_name(&opts.daptype);
    let final_path = opts.out_dir.join(&name);
    if final_path.is_file() {
        return FetchOutcome::AlreadyPresent;
    }
    let part_path = opts.out_dir.join(format!("{name}.part"));
    let url = format!(
        "{}/{}",
        opts.base_url.trim_end_matches('/'),
        target.archive_path(&opts.daptype)
    );
    let mut wait = opts.backoff;
    let mut last_reason = String::new();
    for attempt in 0..=opts.retries {
        if attempt > 0 {
            std::thread::sleep(wait);
            wait = wait.saturating_mul(2);
        }
        match attempt_download(agent, &url, &part_path) {
            Ok(written) => match verify_gzip(&part_path) {
                Ok(()) => {
                    return match fs::rename(&part_path, &final_path) {
                        Ok(()) => FetchOutcome::Downloaded(written),
                        Err(e) => FetchOutcome::Failed(format!(
                            "{}: rename failed: {e}",
                            final_path.display()
                        )),
                    };
                }
                Err(e) => {
                    // Complete by length but not a valid gzip: the bytes are wrong, start over.
                    let _ = fs::remove_file(&part_path);
                    last_reason = format!("{url}: downloaded file is corrupt ({e})");
                }
            },
            Err(AttemptError::Permanent(reason)) => return FetchOutcome::Failed(reason),
            Err(AttemptError::Retry(reason)) => last_reason = reason,
        }
    }
    FetchOutcome::Failed(format!(
        "{last_reason} (gave up after {} attempts)",
        opts.retries + 1
    ))
}

/// One HTTP request: resumes `part_path` with a Range request when it has bytes. Returns the
/// bytes written by this attempt once the body is complete.
fn attempt_download(agent: &ureq::Agent, url: &str, part_path: &Path) -> Result<u64, AttemptError> {
    let have = fs::metadata(part_path).map(|m| m.len()).unwrap_or(0);
    let mut request = agent.get(url);
    if have > 0 {
        request = request.header("Range", format!("bytes={have}-"));
    }
    let response = request
        .call()
        .map_err(|e| AttemptError::Retry(format!("{url}: {e}")))?;
    let status = response.status().as_u16();
    let (append, expected_total) = match status {
        200 => (false, content_length(&response)),
        206 => (true, content_length(&response).map(|n| n + have)),
        416 if have > 0 => {
            // The part may already hold everything; verification decides.
            return Ok(0);
        }
        404 | 410 => {
            return Err(AttemptError::Permanent(format!(
                "{url}: not found (HTTP {status})"
            )));
        }
        400..=499 => return Err(AttemptError::Permanent(format!("{url}: HTTP {status}"))),
        _ => return Err(AttemptError::Retry(format!("{url}: HTTP {status}"))),
    };
    let io_err = |e: io::Error| AttemptError::Retry(format!("{}: {e}", part_path.display()));
    let mut file = if append {
        OpenOptions::new()
            .append(true)
            .open(part_path)
            .map_err(io_err)?
    } else {
        File::create(part_path).map_err(io_err)?
    };
    let mut body = response.into_body().into_reader();
    let mut buf = vec![0u8; 1 << 16];
    let mut written = 0u64;
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                let _ = file.flush();
                let got = if append { have + written } else { written };
                let of = expected_total
                    .map(|t| format!(" of {t}"))
                    .unwrap_or_default();
                return Err(AttemptError::Retry(format!(
                    "{url}: truncated, connection lost after {got}{of} bytes ({e})"
                )));
            }
        };
        file.write_all(&buf[..n]).map_err(io_err)?;
        written += n as u64;
    }
    file.sync_all().map_err(io_err)?;
    let total = if append { have + written } else { written };
    if let Some(expected) = expected_total
        && total < expected
    {
        return Err(AttemptError::Retry(format!(
            "{url}: truncated ({total} of {expected} bytes)"
        )));
    }
    Ok(written)
}

fn content_length(response: &ureq::http::Response<ureq::Body>) -> Option<u64> {
    response
        .headers()
        .get("content-length")?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Decodes the whole gzip stream, which checks its CRC-32 and length trailer.
pub fn verify_gzip(path: &Path) -> io::Result<()> {
    let file = File::open(path)?;
    let mut decoder = flate2::read::MultiGzDecoder::new(BufReader::new(file));
    io::copy(&mut decoder, &mut io::sink())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_layout() {
        let p: PlateIfu = "7443-12701".parse().unwrap();
        assert_eq!(
            p.archive_path(DEFAULT_DAPTYPE),
            "dr17/manga/spectro/analysis/v3_1_1/3.1.0/HYB10-MILESHC-MASTARSSP/7443/12701/\
             manga-7443-12701-MAPS-HYB10-MILESHC-MASTARSSP.fits.gz"
        );
        assert!("7443".parse::<PlateIfu>().is_err());
        assert!("7443-x".parse::<PlateIfu>().is_err());
    }

    #[test]
    fn plateifu_lists() {
        let l =
            parse_plateifu_list("8485-1901, 7443-12701\n# comment\n8485-1901 9000-3701\n").unwrap();
        assert_eq!(l.len(), 3);
        let csv = parse_plateifu_list("plateifu,kind\n8485-1901,sf\n7443-12701,seyfert\n").unwrap();
        assert_eq!(
            csv.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            ["8485-1901", "7443-12701"]
        );
        assert!(parse_plateifu_list("# nothing\n").is_err());
        assert!(parse_plateifu_list("8485-1901\nbogus\n").is_err());
    }
}
