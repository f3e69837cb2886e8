//! `oddcube evaluate`: judges every score of a RESULTS directory against ground-truth labels
//! (AUROC, AP, precision@k per anomaly kind and overall), next to a PCA reconstruction-error
//! baseline on the same dataset, plus latent neighbour purity; writes RESULTS/evaluation.json.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use oddcube_data::dataset::Dataset;
use oddcube_score::evaluate::{Evaluation, evaluate};
use oddcube_score::knn::{LatentView, Metric, all_nearest};
use oddcube_score::pca::{PcaModel, PcaOptions};
use oddcube_score::purity::{PurityReport, neighbour_purity};
use oddcube_score::results::{Results, write_atomic};
use oddcube_score::truth::{align_labels, read_labels_csv};

use crate::ui::Bar;

/// Labels treated as normal when neither --normal nor an `is_anomaly` column says otherwise:
/// the simulator's ordinary kinds and the non-AGN BPT classes.
const DEFAULT_NORMAL: &str = "normal,star_forming,retired,sf,composite";

/// The score columns of a catalogue that are judged (higher = more anomalous).
const SCORE_COLUMNS: [&str; 4] = ["recon", "chi2", "knn_dist", "lof"];

/// Arguments of `oddcube evaluate`.
#[derive(clap::Args)]
pub struct Args {
    /// RESULTS directory written by `oddcube score`.
    pub results: PathBuf,
    /// CSV of labels (e.g. the simulator's truth.csv, or bpt.csv).
    #[arg(long)]
    pub labels: PathBuf,
    /// Column of the labels file holding the plate-ifu.
    #[arg(long, default_value = "plateifu")]
    pub id_column: String,
    /// Column of the labels file holding the label.
    #[arg(long, default_value = "kind")]
    pub label_column: String,
    /// Comma-separated labels that count as normal (negatives). Default: the labels whose rows
    /// all have is_anomaly = 0/false when the file has that column, else
    /// normal,star_forming,retired,sf,composite.
    #[arg(long, value_delimiter = ',')]
    pub normal: Option<Vec<String>>,
    /// Dataset for the PCA baseline (default: the results manifest's dataset_dir).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Skip the PCA baseline.
    #[arg(long)]
    pub no_baseline: bool,
    /// Principal components of the PCA baseline.
    #[arg(long, default_value_t = 16)]
    pub pca_components: usize,
    /// Neighbours for the neighbour-purity measure.
    #[arg(long, default_value_t = 10)]
    pub purity_k: usize,
}

/// What `evaluation.json` holds.
#[derive(serde::Serialize)]
struct Report {
    results: String,
    labels: String,
    label_column: String,
    baseline: Option<Baseline>,
    evaluation: Evaluation,
    purity: Option<PurityReport>,
}

#[derive(serde::Serialize)]
struct Baseline {
    method: &'static str,
    dataset: String,
    components: usize,
    explained_variance_ratio: Vec<f64>,
}

/// The normal labels: --normal, else those whose rows are all `is_anomaly` false, else defaults.
fn normal_labels(
    args: &Args,
    labels: &BTreeMap<String, String>,
) -> anyhow::Result<BTreeSet<String>> {
    if let Some(normal) = &args.normal {
        return Ok(normal
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect());
    }
    if let Ok(flags) = read_labels_csv(&args.labels, &args.id_column, "is_anomaly") {
        let mut anomalous: BTreeMap<&str, bool> = BTreeMap::new();
        for (id, label) in labels {
            let flag = flags
                .get(id)
                .map(|f| matches!(f.to_ascii_lowercase().as_str(), "1" | "true" | "yes"));
            let entry = anomalous.entry(label.as_str()).or_insert(false);
            *entry |= flag.unwrap_or(false);
        }
        let normal: BTreeSet<String> = anomalous
            .iter()
            .filter(|(_, a)| !**a)
            .map(|(l, _)| l.to_string())
            .collect();
        if !normal.is_empty() {
            tracing::info!("normal labels from the is_anomaly column: {normal:?}");
            return Ok(normal);
        }
    }
    Ok(DEFAULT_NORMAL.split(',').map(str::to_string).collect())
}

/// Runs `oddcube evaluate`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let results = Results::open(&args.results)?;
    let catalog = &results.catalog;
    let plateifus = catalog
        .str("plateifu")
        .context("catalogue has no plateifu column")?
        .to_vec();
    let label_map = read_labels_csv(&args.labels, &args.id_column, &args.label_column)?;
    let labels = align_labels(&plateifus, &label_map);
    let n_labelled = labels.iter().filter(|l| l.is_some()).count();
    anyhow::ensure!(
        n_labelled > 0,
        "no galaxy of {} has a label in {} (column {})",
        args.results.display(),
        args.labels.display(),
        args.id_column
    );
    let normal = normal_labels(&args, &label_map)?;

    let mut columns: Vec<(String, Vec<f64>)> = SCORE_COLUMNS
        .iter()
        .filter_map(|&name| catalog.f64(name).map(|v| (name.to_string(), v.to_vec())))
        .filter(|(_, v)| v.iter().any(|x| x.is_finite()))
        .collect();
    let bar = Bar::new(false);
    let mut baseline = None;
    if !args.no_baseline {
        let data_dir = args
            .data
            .clone()
            .unwrap_or_else(|| PathBuf::from(&results.manifest.dataset_dir));
        let dataset = Dataset::open(&data_dir).with_context(|| {
            format!(
                "opening dataset {} for the PCA baseline (use --data DIR or --no-baseline)",
                data_dir.display()
            )
        })?;
        if dataset.manifest_hash() != results.manifest.dataset_hash {
            tracing::warn!(
                "dataset {} is not the one these results were scored on",
                data_dir.display()
            );
        }
        let options = PcaOptions {
            components: args.pca_components,
            ..PcaOptions::default()
        };
        let pca =
            PcaModel::fit(&dataset.cubes, &options, &bar).context("fitting the PCA baseline")?;
        let scores = pca
            .score(&dataset.cubes, &bar)
            .context("scoring the PCA baseline")?;
        let row_of: BTreeMap<&str, usize> = dataset
            .galaxies
            .iter()
            .enumerate()
            .map(|(i, g)| (g.plateifu.as_str(), i))
            .collect();
        let pick = |values: &[f64]| -> Vec<f64> {
            plateifus
                .iter()
                .map(|p| row_of.get(p.as_str()).map_or(f64::NAN, |&i| values[i]))
                .collect()
        };
        let recon: Vec<f64> = scores.iter().map(|s| s.recon).collect();
        let chi2: Vec<f64> = scores.iter().map(|s| s.chi2).collect();
        columns.push(("pca_recon".to_string(), pick(&recon)));
        columns.push(("pca_chi2".to_string(), pick(&chi2)));
        baseline = Some(Baseline {
            method: "pca",
            dataset: data_dir.display().to_string(),
            components: pca.components,
            explained_variance_ratio: pca.explained_variance_ratio(),
        });
    }
    let evaluation = evaluate(&columns, &labels, &normal)?;

    // Purity among the labelled galaxies only: an unlabelled neighbour says nothing either way.
    let labelled_rows: Vec<usize> = (0..labels.len()).filter(|&i| labels[i].is_some()).collect();
    let purity = if labelled_rows.len() > args.purity_k && args.purity_k > 0 {
        let dim = results.latent_dim;
        let sub: Vec<f32> = labelled_rows
            .iter()
            .flat_map(|&r| results.latents[r * dim..(r + 1) * dim].iter().copied())
            .collect();
        let view = LatentView::new(&sub, labelled_rows.len(), dim)?;
        let graph = all_nearest(&view, args.purity_k, Metric::Euclidean, &bar)?;
        let sub_labels: Vec<String> = labelled_rows
            .iter()
            .filter_map(|&r| labels[r].clone())
            .collect();
        Some(neighbour_purity(&graph, &sub_labels, args.purity_k)?)
    } else {
        None
    };

    println!("{}", evaluation.to_table());
    if let Some(p) = &purity {
        println!(
            "neighbour purity (k = {}, labelled galaxies, euclidean latents): overall {:.3}",
            p.k, p.overall
        );
        for (label, lp) in &p.per_label {
            println!(
                "  {label:<16} n = {:>5}  purity {:.3}  (chance {:.3})",
                lp.count, lp.purity, lp.chance
            );
        }
    }
    let report = Report {
        results: args.results.display().to_string(),
        labels: args.labels.display().to_string(),
        label_column: args.label_column.clone(),
        baseline,
        evaluation,
        purity,
    };
    let path = args.results.join("evaluation.json");
    let mut json = serde_json::to_vec_pretty(&report).context("serialising the evaluation")?;
    json.push(b'\n');
    write_atomic(&path, &json)?;
    eprintln!("wrote {}", path.display());
    Ok(ExitCode::SUCCESS)
}
