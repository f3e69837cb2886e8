//! Helpers the CLI tests share: running the binary, paths as arguments, and a small scored
//! survey (simulate → ingest → train → score) for the tests of the commands that read RESULTS.
//!
//! Each test file is its own crate and uses only some of these, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use assert_cmd::Command;

/// The `oddcube` binary, with the Slurm array variables removed: under a Slurm job they would
/// silently shard `ingest` and `score`.
pub fn oddcube() -> Command {
    let mut cmd = Command::cargo_bin("oddcube").expect("binary built");
    cmd.env_remove("SLURM_ARRAY_TASK_ID")
        .env_remove("SLURM_ARRAY_TASK_COUNT");
    cmd
}

/// Runs the binary with `args`, asserts success (showing both streams otherwise), returns stdout.
pub fn run_ok<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> String {
    let out = oddcube().args(args).output().expect("oddcube runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "oddcube {:?} failed:\n{stdout}\n{}",
        args.iter().map(|a| a.as_ref()).collect::<Vec<_>>(),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Runs the binary with `args`, asserts that it fails, returns stderr.
pub fn run_err<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> String {
    let out = oddcube().args(args).output().expect("oddcube runs");
    assert!(
        !out.status.success(),
        "oddcube {:?} succeeded but should not have",
        args.iter().map(|a| a.as_ref()).collect::<Vec<_>>()
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A path as a command-line word (test paths are UTF-8).
pub fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 test path")
}

/// stderr of a finished `assert_cmd` run.
pub fn stderr_of(assert: assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&assert.get_output().stderr).into_owned()
}

/// Galaxies in the [`scored_survey`].
pub const SURVEY_GALAXIES: usize = 40;
/// Latent dimension of the [`scored_survey`]'s model.
pub const SURVEY_LATENT: usize = 8;

/// A simulated survey taken through the chain up to `score`, in a temporary directory.
pub struct ScoredSurvey {
    /// Keeps the directory alive.
    pub tmp: tempfile::TempDir,
    /// The simulated MAPS files and `truth.csv`.
    pub sim: PathBuf,
    /// The ingested dataset.
    pub data: PathBuf,
    /// The trained model (one epoch).
    pub model: PathBuf,
    /// The RESULTS directory (residuals of the top 5 stored).
    pub res: PathBuf,
    /// What `oddcube score` printed.
    pub score_stdout: String,
}

impl ScoredSurvey {
    /// The words of `oddcube score` on this survey into `out`, then `extra`.
    pub fn score_args(&self, out: &Path, extra: &[&str]) -> Vec<String> {
        let mut words: Vec<String> = [
            "score",
            "--model",
            s(&self.model),
            "--data",
            s(&self.data),
            "--out",
            s(out),
            "--knn-k",
            "5",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        words.extend(extra.iter().map(|a| a.to_string()));
        words
    }
}

/// Simulates 40 galaxies (seed 3, 20 % anomalous), ingests them on a 16×16 grid, trains one
/// epoch with D = 8 and scores them with kNN k = 5, storing the top 5 residual maps.
pub fn scored_survey() -> ScoredSurvey {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let (sim, data, model, res) = (
        tmp.path().join("sim"),
        tmp.path().join("data"),
        tmp.path().join("model"),
        tmp.path().join("res"),
    );
    let galaxies = SURVEY_GALAXIES.to_string();
    let latent = SURVEY_LATENT.to_string();
    run_ok(&[
        "simulate",
        "--out",
        s(&sim),
        "--galaxies",
        &galaxies,
        "--seed",
        "3",
        "--anomaly-fraction",
        "0.2",
        "--jobs",
        "1",
    ]);
    run_ok(&[
        "ingest",
        s(&sim),
        "--out",
        s(&data),
        "--size",
        "16",
        "--jobs",
        "1",
    ]);
    run_ok(&[
        "train",
        "--data",
        s(&data),
        "--out",
        s(&model),
        "--epochs",
        "1",
        "--latent",
        &latent,
        "--jobs",
        "1",
    ]);
    let mut survey = ScoredSurvey {
        tmp,
        sim,
        data,
        model,
        res,
        score_stdout: String::new(),
    };
    survey.score_stdout = run_ok(&survey.score_args(&survey.res, &["--residuals", "top:5"]));
    survey
}

/// A running `oddcube serve`, killed when dropped (pass or fail).
pub struct Server {
    child: std::process::Child,
    /// `host:port` it listens on.
    pub address: String,
}

impl Server {
    /// Starts `oddcube serve` with `args` (which should include `--port 0`) in `cwd` and waits
    /// for the line that prints its URL.
    pub fn start<S: AsRef<std::ffi::OsStr>>(args: &[S], cwd: &Path) -> Server {
        use std::io::BufRead;
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("oddcube"))
            .arg("serve")
            .args(args)
            .current_dir(cwd)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("oddcube serve starts");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut line)
            .expect("serve prints its address");
        let mut server = Server {
            child,
            address: String::new(),
        };
        server.address = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL in {line:?}"))
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        server
    }

    /// The whole HTTP response (status line, headers, body) to `GET path`.
    pub fn get(&self, path: &str) -> String {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&self.address).expect("connect");
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.address
        )
        .expect("send request");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read response");
        response
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
