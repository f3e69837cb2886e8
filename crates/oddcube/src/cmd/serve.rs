//! `oddcube serve`: the local web explorer over a RESULTS directory (ranked table, galaxy
//! pages with maps and neighbours, the latent map, labels).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use oddcube_explore::serve::{AppState, Reconstructor, ServeSources, serve};

/// Arguments of `oddcube serve`.
#[derive(clap::Args)]
pub struct Args {
    /// RESULTS directory written by `oddcube score` (labels are saved into it as labels.csv).
    #[arg(long, value_name = "DIR")]
    pub results: PathBuf,
    /// The dataset the results were scored on: input maps for galaxies without stored residuals.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// A trained model directory: reconstructions for galaxies without stored residuals (needs --data).
    #[arg(long, requires = "data", value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// Ground truth: a CSV with plateifu and kind columns (e.g. a simulated survey's truth.csv)
    /// for the kind filter.
    #[arg(long, value_name = "FILE")]
    pub truth: Option<PathBuf>,
    /// Deprecated spelling of --truth.
    #[arg(long, hide = true, conflicts_with = "truth")]
    pub kinds: Option<PathBuf>,
    /// TCP port (0 = any free port; the address is printed).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Address to listen on. The default serves this machine only; anything else exposes your
    /// results to the network.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: IpAddr,
}

/// Loads `--model` as a reconstructor on the CPU (one galaxy at a time, serialised).
fn load_model(dir: &std::path::Path) -> anyhow::Result<Reconstructor> {
    let device = oddcube_model::device::select_device("cpu")?;
    let model = oddcube_model::infer::Model::load(dir, &device)
        .with_context(|| format!("cannot load model {}", dir.display()))?;
    let model = Mutex::new(model);
    Ok(Box::new(move |cubes| {
        let model = model.lock().map_err(|e| e.to_string())?;
        model.reconstruct(cubes, 1).map_err(|e| e.to_string())
    }))
}

/// Runs `oddcube serve` until interrupted.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let sources = ServeSources {
        results: args.results.clone(),
        dataset: args.data.clone(),
        kinds: crate::cmd::compat::either(
            args.truth.clone(),
            args.kinds.clone(),
            "serve --kinds",
            "--truth",
        ),
    };
    let reconstructor = args.model.as_deref().map(load_model).transpose()?;
    let state = Arc::new(AppState::load(&sources, reconstructor)?);
    for warning in state.label_warnings() {
        tracing::warn!("{warning}");
    }
    if !args.bind.is_loopback() {
        tracing::warn!(
            "listening on {}: anyone who can reach this address can read the results and change labels",
            args.bind
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let address = SocketAddr::new(args.bind, args.port);
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen on {address}"))?;
        let local = listener.local_addr().context("listener has no address")?;
        let host = if local.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            local.ip().to_string()
        };
        println!(
            "oddcube explorer: http://{host}:{}/  ({} galaxies; Ctrl-C to stop)",
            local.port(),
            state.len()
        );
        use std::io::Write;
        let _ = std::io::stdout().flush();
        serve(state, listener).await.context("server failed")
    })?;
    Ok(ExitCode::SUCCESS)
}
