//! `oddcube score`: encode every galaxy of a dataset with a trained model and write the RESULTS
//! directory (catalogue, latents, optional residual maps, manifest).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use oddcube_data::dataset::{Dataset, hash_hex};
use oddcube_data::{Progress, Shard};
use oddcube_model::checkpoint::{BEST_WEIGHTS, CONFIG};
use oddcube_score::calibration::StoredNull;
use oddcube_score::knn::Metric;
use oddcube_score::results::{RESIDUALS_FILE, RESULTS_FORMAT, Results, ResultsManifest};
use oddcube_score::score::{
    MapSettings, PValueMethod, RankBy, ResidualSelection, ScoreSettings, apply_stored_null,
    finalize_population_scores, residual_rows, score_galaxies, write_residuals,
};

use crate::ui::Bar;
use oddcube::scorer::ModelScorer;

/// Arguments of `oddcube score`.
#[derive(clap::Args)]
pub struct Args {
    /// Model directory written by `oddcube train`.
    #[arg(long)]
    pub model: PathBuf,
    /// Dataset directory written by `oddcube ingest`.
    #[arg(long)]
    pub data: PathBuf,
    /// RESULTS directory to write (created if needed; existing artifacts are replaced).
    #[arg(long)]
    pub out: PathBuf,
    /// Score only shard i of n (default: from SLURM_ARRAY_TASK_ID/COUNT, else 0/1). A shard
    /// other than 0/1 writes OUT/part-i-of-n/ with per-galaxy scores only; `oddcube merge`
    /// computes the population columns.
    #[arg(long)]
    pub shard: Option<Shard>,
    /// Column that orders the catalogue: score (the fused, calibrated anomaly score), local,
    /// chi2, recon, knn_dist or lof. p-values are always those of `score`.
    #[arg(long, default_value = "score")]
    pub rank_by: RankBy,
    /// Null of the p-values: `stored` (fitted at training time on galaxies the model did not
    /// train on; needed for a list that is mostly anomalous) or `population` (fitted robustly
    /// to the scored galaxies). Models without a stored null fall back to `population`.
    #[arg(long, default_value = "stored")]
    pub pvalues: PValueMethod,
    /// False-discovery rate of `fdr_flag` (Benjamini–Hochberg).
    #[arg(long, default_value_t = 0.05)]
    pub fdr: f64,
    /// Neighbours for the latent-space scores knn_dist and lof.
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
    /// interesting / artefact / normal). Galaxies you marked artefact or normal, and galaxies
    /// whose nearest labelled neighbours in latent space are mostly artefact/normal, are
    /// demoted: the rank-by score is scaled down (rule in `oddcube_score::feedback`),
    /// stored as column `adjusted`, and `rank` follows it. p-values stay on the raw score.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Device: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// xxh3-128 of the model's config and best weights: identifies the exact network scored with.
pub(crate) fn model_hash(dir: &Path) -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    for name in [CONFIG, BEST_WEIGHTS] {
        let path = dir.join(name);
        bytes.extend(std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?);
    }
    Ok(hash_hex(&bytes))
}

/// Name of a latent metric as the manifest records it.
pub(crate) fn metric_name(metric: Metric) -> &'static str {
    match metric {
        Metric::Euclidean => "euclidean",
        Metric::Cosine => "cosine",
    }
}

/// Runs `oddcube score`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.fdr > 0.0 && args.fdr <= 1.0,
        "--fdr {} must lie in (0, 1]",
        args.fdr
    );
    anyhow::ensure!(args.knn_k >= 1, "--knn-k must be at least 1");
    let shard = args
        .shard
        .or_else(Shard::from_slurm_env)
        .unwrap_or(Shard::ALL);
    let dataset = Dataset::open(&args.data)
        .with_context(|| format!("opening dataset {}", args.data.display()))?;
    let model = ModelScorer::load(&args.model, &args.device, args.batch)?;
    let config = model.model.config();
    let lines = dataset.manifest.lines.lines.clone();
    if !config.data.lines.is_empty() && config.data.lines != lines {
        anyhow::bail!(
            "model {} was trained on lines [{}] but dataset {} has [{}]",
            args.model.display(),
            config.data.lines.join(", "),
            args.data.display(),
            lines.join(", ")
        );
    }
    if !config.data.manifest_hash.is_empty() && config.data.manifest_hash != dataset.manifest_hash()
    {
        tracing::info!("scoring a dataset other than the one the model was trained on");
    }

    let rows: Vec<usize> = (0..dataset.galaxies.len())
        .filter(|&i| shard.contains(&dataset.galaxies[i].plateifu))
        .collect();
    let sharded = shard.count > 1;
    let out = if sharded {
        args.out.join(shard.part_name())
    } else {
        args.out.clone()
    };
    let settings = ScoreSettings {
        rank_by: args.rank_by,
        pvalues: args.pvalues,
        fdr: args.fdr,
        knn_k: args.knn_k,
        metric: args.knn_metric,
    };
    let null = StoredNull::read(&args.model)
        .with_context(|| format!("reading the null stored in {}", args.model.display()))?;
    let map_settings = MapSettings {
        floors: null
            .as_ref()
            .map(|n| n.calibration.floors.clone())
            .unwrap_or_default(),
    };
    let bar = Bar::new(false);
    let started = std::time::Instant::now();
    let mut scored = score_galaxies(
        &model,
        &dataset.cubes,
        &dataset.galaxies,
        &lines,
        &rows,
        &map_settings,
        &bar,
    )?;
    let seconds = started.elapsed().as_secs_f64();
    let mut null_used = None;
    if !sharded {
        let used = finalize_population_scores(
            &mut scored.catalog,
            &scored.latents,
            scored.latent_dim,
            &settings,
            null.as_ref(),
            &bar,
        )?;
        if let Some(why) = &used.warning {
            tracing::warn!("p-values from a null fitted to the scored galaxies: {why}");
        }
        null_used = Some(used);
        if let Some(path) = &args.labels {
            apply_labels(
                &mut scored.catalog,
                &scored.latents,
                scored.latent_dim,
                args.rank_by,
                path,
            )?;
        }
    } else if let (Some(null), PValueMethod::Stored) = (&null, args.pvalues) {
        // What needs only the galaxy and the stored null, so the part can rank its residuals.
        apply_stored_null(&mut scored.catalog, &scored.latents, null, args.knn_metric)?;
    }
    if sharded && args.labels.is_some() {
        anyhow::bail!(
            "--labels needs the whole population: score without --shard (or re-score after `oddcube merge`)"
        );
    }

    let mut manifest = ResultsManifest {
        format: RESULTS_FORMAT.to_string(),
        oddcube_version: env!("CARGO_PKG_VERSION").to_string(),
        model_dir: args.model.display().to_string(),
        model_hash: model_hash(&args.model)?,
        dataset_dir: args.data.display().to_string(),
        dataset_hash: dataset.manifest_hash(),
        lines: lines.clone(),
        size: dataset.manifest.size,
        latent_dim: scored.latent_dim,
        rank_by: args.rank_by.to_string(),
        fdr: args.fdr,
        knn_k: args.knn_k,
        pvalues: args.pvalues.to_string(),
        null_fitted_on: String::new(),
        null_n_calibration: 0,
        warnings: Vec::new(),
        knn_metric: metric_name(args.knn_metric).to_string(),
        n_galaxies: scored.catalog.len(),
        shard: shard.to_string(),
        population_final: !sharded,
        residuals: args.residuals.to_string(),
        created_by: super::command_line(),
    };
    if let Some(used) = &null_used {
        manifest.set_null(used);
    }
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    // The null travels with the results, so `oddcube merge` finalises parts with it.
    if let Some(null) = &null {
        null.write(&out)?;
    }
    scored.maps.write(&out)?;
    // Residuals first: the manifest, written last, marks the directory complete.
    let picked = residual_rows(&scored.catalog, args.residuals, args.rank_by, !sharded);
    let residuals_path = out.join(RESIDUALS_FILE);
    if picked.is_empty() {
        if residuals_path.exists() {
            std::fs::remove_file(&residuals_path)
                .with_context(|| format!("removing stale {}", residuals_path.display()))?;
        }
    } else {
        let dataset_rows: Vec<usize> = picked.iter().map(|&r| rows[r]).collect();
        let names: Vec<String> = dataset_rows
            .iter()
            .map(|&r| dataset.galaxies[r].plateifu.clone())
            .collect();
        write_residuals(
            &out,
            &model,
            &dataset.cubes,
            &names,
            &lines,
            &dataset_rows,
            &bar,
        )?;
    }
    Results::write(&out, &manifest, &scored.catalog, &scored.latents)?;
    bar.finish();

    let rate = scored.catalog.len() as f64 / seconds.max(1e-9);
    eprintln!(
        "scored {} galaxies in {seconds:.1} s ({rate:.1} galaxies/s) → {}",
        scored.catalog.len(),
        out.display()
    );
    if !sharded {
        print_top(&scored.catalog, args.rank_by, 10);
        let flagged = scored
            .catalog
            .bool("fdr_flag")
            .map_or(0, |f| f.iter().filter(|&&v| v).count());
        let unscored = scored
            .catalog
            .f64("score")
            .map_or(0, |v| v.iter().filter(|s| s.is_nan()).count());
        if unscored > 0 {
            eprintln!(
                "{unscored} galaxies have no usable pixels: NaN scores, ranked last, never flagged"
            );
        }
        eprintln!(
            "{flagged} galaxies flagged at FDR {} (null fitted on {} galaxies: {})",
            args.fdr, manifest.null_n_calibration, manifest.null_fitted_on
        );
    } else {
        eprintln!(
            "shard {shard}: run `oddcube merge {}` when every part is done",
            args.out.display()
        );
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

/// Demotes galaxies by the user's labels: fills column `adjusted` with the demoted rank-by
/// score and re-ranks by it.
fn apply_labels(
    catalog: &mut oddcube_score::results::Catalog,
    latents: &[f32],
    latent_dim: usize,
    rank_by: RankBy,
    path: &Path,
) -> anyhow::Result<()> {
    use oddcube_score::feedback::{DemoteOptions, LabelStore, demote_scores};
    use oddcube_score::results::Column;
    let store = LabelStore::open_file(path)
        .with_context(|| format!("reading labels {}", path.display()))?;
    let names = catalog
        .str("plateifu")
        .context("catalogue has no plateifu column")?
        .to_vec();
    let labels = store.labels_for(&names);
    let known = labels.iter().filter(|l| l.is_some()).count();
    if known == 0 {
        tracing::warn!(
            "{}: none of its labels names a galaxy of this catalogue",
            path.display()
        );
    }
    let scores = catalog
        .f64(rank_by.column())
        .context("catalogue lacks its rank-by column")?
        .to_vec();
    let view = oddcube_score::LatentView::new(latents, names.len(), latent_dim)?;
    let adjusted = demote_scores(&view, &scores, &labels, &DemoteOptions::default())?;
    let rank = oddcube_score::score::ranks(&adjusted);
    catalog.set("adjusted", Column::F64(adjusted))?;
    catalog.set("rank", Column::U32(rank))?;
    eprintln!(
        "applied {known} labels from {}: rank follows the adjusted {} score",
        path.display(),
        rank_by.column()
    );
    Ok(())
}
