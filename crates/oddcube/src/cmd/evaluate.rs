//! `oddcube evaluate`: judges every score of a RESULTS directory against ground-truth labels
//! (AUROC, AP, precision@k per anomaly kind and overall), next to a PCA reconstruction-error
//! baseline on the same dataset, plus latent neighbour purity; writes RESULTS/evaluation.json.
//! The work is [`oddcube_score::evaluate::evaluate_results`].

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use oddcube_score::evaluate::{EvaluateOptions, NormalSource, evaluate_results};

use crate::cmd::compat;
use crate::ui::Bar;

/// Arguments of `oddcube evaluate`.
#[derive(clap::Args)]
pub struct Args {
    /// RESULTS directory written by `oddcube score`.
    #[arg(long, value_name = "DIR", required_unless_present = "results_word")]
    pub results: Option<PathBuf>,
    /// The same RESULTS directory given as the first word (`oddcube evaluate RESULTS …`).
    #[arg(value_name = "RESULTS", conflicts_with = "results")]
    pub results_word: Option<PathBuf>,
    /// Ground truth: a CSV of plate-ifus and their true labels (e.g. the simulator's truth.csv,
    /// or bpt.csv).
    #[arg(long, value_name = "FILE", required_unless_present = "labels")]
    pub truth: Option<PathBuf>,
    /// Deprecated spelling of --truth.
    #[arg(long, hide = true, conflicts_with = "truth")]
    pub labels: Option<PathBuf>,
    /// Column of the truth file holding the plate-ifu.
    #[arg(long, default_value = "plateifu")]
    pub id_column: String,
    /// Column of the truth file holding the label.
    #[arg(long, default_value = "kind")]
    pub label_column: String,
    /// Comma-separated labels that count as normal (negatives). Default: the labels whose rows
    /// all have is_anomaly = 0/false when the file has that column, else
    /// normal,star_forming,retired,sf,composite.
    #[arg(long, value_delimiter = ',')]
    pub normal: Option<Vec<String>>,
    /// Dataset for the PCA baseline (default: the results manifest's dataset_dir).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Skip the PCA baseline.
    #[arg(long)]
    pub no_baseline: bool,
    /// Principal components of the PCA baseline.
    #[arg(long, default_value_t = 16)]
    pub pca_components: usize,
    /// Neighbours for the neighbour-purity measure (left out when there are no more labelled
    /// galaxies than this).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub purity_k: u32,
}

/// Runs `oddcube evaluate`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let results = compat::results(args.results, args.results_word)?;
    let truth = compat::either(args.truth, args.labels, "evaluate --labels", "--truth")
        .context("no ground truth: pass --truth FILE")?;
    let options = EvaluateOptions {
        labels: truth,
        id_column: args.id_column,
        label_column: args.label_column,
        normal: args.normal,
        data: args.data,
        baseline: !args.no_baseline,
        pca_components: args.pca_components,
        purity_k: args.purity_k as usize,
    };
    let report = evaluate_results(&results, &options, &Bar::new(false))?;
    if report.normal_source == Some(NormalSource::IsAnomalyColumn) {
        tracing::info!(
            "normal labels from the is_anomaly column: {:?}",
            report.evaluation.normal_labels
        );
    }
    if report.baseline_dataset_differs
        && let Some(baseline) = &report.baseline
    {
        tracing::warn!(
            "dataset {} is not the one these results were scored on",
            baseline.dataset
        );
    }
    print!("{}", report.to_text());
    let path = report.write(&results)?;
    eprintln!("wrote {}", path.display());
    Ok(ExitCode::SUCCESS)
}
