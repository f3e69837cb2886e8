//! `oddcube score`: arguments → `oddcube_score::pipeline::score_dataset` → the top of the
//! catalogue and the flag count.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use oddcube::scorer::{ModelScorer, load_members, member_refs, model_hash};
use oddcube::threads::on_thread_pool;
use oddcube_data::dataset::Dataset;
use oddcube_data::{Progress, Shard};
use oddcube_score::knn::Metric;
use oddcube_score::pipeline::{ScoreJob, score_dataset};
use oddcube_score::score::{PValueMethod, RankBy, ResidualSelection, ScoreSettings};

use crate::ui::Bar;

/// Arguments of `oddcube score`.
#[derive(clap::Args)]
pub struct Args {
    /// Model directory written by `oddcube train`.
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// Dataset directory written by `oddcube ingest`.
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// RESULTS directory to write (created if needed; existing artifacts are replaced).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Score only shard i of n (default: from SLURM_ARRAY_TASK_ID/COUNT, else 0/1). A shard
    /// other than 0/1 writes OUT/part-i-of-n/ with per-galaxy scores only; `oddcube merge`
    /// computes the population columns.
    #[arg(long)]
    pub shard: Option<Shard>,
    /// Column that orders the catalogue: score (the fused, calibrated anomaly score), local,
    /// pooled, global, chi2, recon, knn_dist or lof. p-values are always those of `score`.
    #[arg(long, default_value = "score")]
    pub rank_by: RankBy,
    /// Null of the p-values: `stored` (fitted at training time on the model's dataset; needed
    /// for a list that is mostly anomalous) or `population` (fitted robustly
    /// to the scored galaxies). Models without a stored null fall back to `population`.
    #[arg(long, default_value = "stored")]
    pub pvalues: PValueMethod,
    /// False-discovery rate of `fdr_flag` (Benjamini–Hochberg).
    #[arg(long, default_value_t = 0.05)]
    pub fdr: f64,
    /// Neighbours for the latent-space scores knn_dist and lof when the null is fitted to the
    /// scored galaxies (--pvalues population, or a model without a stored null); a stored null
    /// keeps the k it was fitted with (10), and manifest.json records the k used.
    #[arg(long, default_value_t = 10)]
    pub knn_k: usize,
    /// Latent metric for knn_dist and lof: euclidean or cosine.
    #[arg(long, default_value = "euclidean")]
    pub knn_metric: Metric,
    /// Galaxies per model batch.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Residual maps to store: top:K (K most anomalous), all, or none.
    #[arg(long, default_value = "top:50")]
    pub residuals: ResidualSelection,
    /// Your labels (`labels.csv` as `oddcube serve` saves it: plateifu,label,time with labels
    /// interesting / artefact / normal, or a relevance 0–5). A relevance model fitted to them (over latents and
    /// scores) is blended with the rank-by score exactly as the explorer shows it
    /// (docs/active-learning.md): column `adjusted` = anomaly percentile² × relevance lift,
    /// column `relevance`, and `rank` follows `adjusted`. p-values stay on the raw score.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Device: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// Runs `oddcube score`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    on_thread_pool(|| run_on_pool(args))
}

/// [`run`] on a worker of the thread pool ([`on_thread_pool`]).
fn run_on_pool(args: Args) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.knn_k >= 1, "--knn-k must be at least 1");
    let shard = args
        .shard
        .or_else(Shard::from_slurm_env)
        .unwrap_or(Shard::ALL);
    let dataset = Dataset::open(&args.data)
        .with_context(|| format!("opening dataset {}", args.data.display()))?;
    let model = ModelScorer::load(&args.model, &args.device, args.batch)?;
    let members = load_members(&args.model, &args.device, args.batch)?;
    let member_refs = member_refs(&members);
    if !model.check_dataset(&args.model, &dataset)? {
        tracing::info!("scoring a dataset other than the one the model was trained on");
    }
    let bar = Bar::new(false);
    let started = std::time::Instant::now();
    let job = ScoreJob {
        model: &model,
        members: &member_refs,
        model_dir: &args.model,
        model_hash: model_hash(&args.model)?,
        dataset: &dataset,
        dataset_dir: &args.data,
        out: &args.out,
        shard,
        settings: ScoreSettings {
            rank_by: args.rank_by,
            pvalues: args.pvalues,
            fdr: args.fdr,
            knn_k: args.knn_k,
            metric: args.knn_metric,
        },
        residuals: args.residuals,
        labels: args.labels.as_deref(),
        created_by: super::command_line(),
    };
    let report = score_dataset(&job, &bar)?;
    bar.finish();
    let seconds = started.elapsed().as_secs_f64();

    let n = report.catalog.len();
    eprintln!(
        "scored {n} galaxies in {seconds:.1} s ({:.1} galaxies/s) → {}",
        n as f64 / seconds.max(1e-9),
        report.out.display()
    );
    for warning in &report.manifest.warnings {
        tracing::warn!("{warning}");
    }
    if report.sharded {
        eprintln!(
            "shard {shard}: run `oddcube merge {}` when every part is done",
            args.out.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    if let (Some(applied), Some(path)) = (&report.labels_applied, &args.labels) {
        for warning in &applied.warnings {
            tracing::warn!("{warning}");
        }
        let known = applied.known;
        if known == 0 {
            tracing::warn!(
                "{}: none of its labels names a galaxy of this catalogue",
                path.display()
            );
        }
        eprintln!(
            "applied {known} labels from {}: rank follows `adjusted` (anomaly percentile of {} × relevance)",
            path.display(),
            args.rank_by.column()
        );
    }
    print_top(&report.catalog, args.rank_by, 10);
    if report.unscored > 0 {
        eprintln!(
            "{} galaxies have no usable pixels: NaN scores, ranked last, never flagged",
            report.unscored
        );
    }
    let flagged = report
        .catalog
        .bool("fdr_flag")
        .map_or(0, |f| f.iter().filter(|&&v| v).count());
    let ensemble = match report.manifest.ensemble_seeds.len() {
        0 => String::new(),
        n => format!("; score is the mean of the {n} restarts' scores"),
    };
    eprintln!(
        "{flagged} galaxies flagged at FDR {} (null fitted on {} galaxies: {}{ensemble})",
        args.fdr, report.manifest.null_n_calibration, report.manifest.null_fitted_on
    );
    // A CRITICAL galaxy's maps failed the DAP or DRP: it is scored like the others, but a flag
    // on it is more likely a pipeline failure than an astrophysical anomaly — say so.
    if let (Some(flags), Some(critical)) = (
        report.catalog.bool("fdr_flag"),
        report.catalog.bool("critical"),
    ) {
        let flagged_critical = flags
            .iter()
            .zip(critical)
            .filter(|(f, c)| **f && **c)
            .count();
        if flagged_critical > 0 {
            tracing::warn!(
                "{flagged_critical} of the flagged galaxies are DAP/DRP CRITICAL (column `critical`, bits in dapqual_bits/drp3qual_bits); ingest --skip-critical leaves such galaxies out"
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints the `n` best-ranked galaxies.
fn print_top(catalog: &oddcube_score::results::Catalog, rank_by: RankBy, n: usize) {
    let (Some(names), Some(rank), Some(score), Some(q)) = (
        catalog.str("plateifu"),
        catalog.u32("rank"),
        catalog.f64(rank_by.column()),
        catalog.f64("qvalue"),
    ) else {
        return;
    };
    let mut rows: Vec<usize> = (0..catalog.len()).collect();
    rows.sort_by_key(|&r| rank[r]);
    println!(
        "{:>5}  {:<14} {:>12} {:>10}",
        "rank",
        "plateifu",
        rank_by.column(),
        "qvalue"
    );
    for &r in rows.iter().take(n) {
        println!(
            "{:>5}  {:<14} {:>12.5} {:>10.3e}",
            rank[r], names[r], score[r], q[r]
        );
    }
}
