//! The scoring run from a dataset to a RESULTS directory, and the one writer both a run and
//! `merge` finish with: what `oddcube score` does between parsing its arguments and printing.
//!
//! [`compute_scores`] scores a dataset (or one shard of it) with an [`Autoencoder`] in memory:
//! per-galaxy scores and maps, the population columns from the stored null (or a population
//! null), the user's label feedback. [`write_scores`] adds the residual maps and then
//! [`write_results`]; [`score_dataset`] (all of `oddcube score`) does both, and the Python
//! package calls them apart so that it can score without writing. A shard's part gets everything
//! a galaxy has on its own — with a stored null that includes `score` and `pvalue` — and
//! `oddcube merge` ([`crate::merge::merge_results`]) finishes the population columns and writes
//! through the same [`write_results`], so merged = unsharded is promised from one place.

use std::path::{Path, PathBuf};

use oddcube_data::artifact::{ArtifactKind, check_output_dir};
use oddcube_data::bpt_survey::{BptSurveyOptions, classify_rows};
use oddcube_data::dataset::{Dataset, GalaxyRecord};
use oddcube_data::{Progress, Shard};
use oddcube_data::{links, quality};

use crate::anomaly_map::AnomalyMaps;
use crate::calibration::StoredNull;
use crate::ensemble::{
    ENSEMBLE_FILE, EnsembleMember, EnsembleNull, MemberScores, member_column, member_scores,
};
use crate::error::{Error, Result};
use crate::feedback::LabelStore;
use crate::knn::Metric;
use crate::relevance::{RelevanceOptions, blend};
use crate::results::{
    Catalog, Column, RESIDUALS_FILE, RESULTS_FORMAT, Results, ResultsManifest, invalid,
};
use crate::score::{
    Autoencoder, MapSettings, NullUsed, PValueMethod, ResidualSelection, ScoreSettings, Scored,
    apply_stored_null, finalize_population_scores, residual_rows, score_galaxies, write_residuals,
};

/// Everything a RESULTS directory holds except the residual maps (written before, by whoever
/// has them: a run reconstructs them, a merge copies them from the parts).
pub struct ResultsContent<'a> {
    /// Its manifest (written last: a directory with a manifest is complete).
    pub manifest: &'a ResultsManifest,
    /// The catalogue.
    pub catalog: &'a Catalog,
    /// Latents `[n, D]`, catalogue order.
    pub latents: &'a [f32],
    /// Anomaly maps, catalogue order.
    pub maps: &'a AnomalyMaps,
    /// The stored null the scores used, copied so that a merge of parts finds it.
    pub null: Option<&'a StoredNull>,
    /// The restart ensemble's null, when `score` is the ensemble's (copied likewise).
    pub ensemble: Option<&'a EnsembleNull>,
}

/// Writes a RESULTS directory's anomaly maps, null and then catalogue, latents and manifest.
pub fn write_results(out: &Path, content: &ResultsContent<'_>) -> Result<()> {
    check_output_dir(out, ArtifactKind::Results)?;
    std::fs::create_dir_all(out).map_err(|source| Error::Io {
        path: out.to_path_buf(),
        source,
    })?;
    content.maps.write(out)?;
    if let Some(null) = content.null {
        null.write(out)?;
    }
    match content.ensemble {
        Some(ensemble) => ensemble.write(out)?,
        None => remove_if_present(&out.join(ENSEMBLE_FILE))?,
    }
    Results::write(out, content.manifest, content.catalog, content.latents)
}

/// Removes `path` unless it does not exist (a file a re-run must not leave stale).
fn remove_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::Io {
            path: path.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// One `oddcube score` run.
pub struct ScoreJob<'a> {
    /// The model, behind the scoring trait (with restarts, the kept run).
    pub model: &'a dyn Autoencoder,
    /// The other members of its restart ensemble ([`crate::ensemble`]), by seed: one for every
    /// member that `ensemble.json` in `model_dir` names besides the kept model, none for a
    /// model trained as a single run.
    pub members: &'a [(u64, &'a dyn Autoencoder)],
    /// Its directory (for the stored null and the manifest).
    pub model_dir: &'a Path,
    /// Identifies the exact network (the manifest's `model_hash`).
    pub model_hash: String,
    /// The dataset to score.
    pub dataset: &'a Dataset,
    /// Its directory (for the manifest).
    pub dataset_dir: &'a Path,
    /// The RESULTS directory (a shard writes `out/part-i-of-n/`).
    pub out: &'a Path,
    /// The shard to score.
    pub shard: Shard,
    /// Population settings.
    pub settings: ScoreSettings,
    /// Residual maps to store.
    pub residuals: ResidualSelection,
    /// The user's labels (`labels.csv`) to re-rank by (the active-learning blend).
    pub labels: Option<&'a Path>,
    /// The command line, for provenance.
    pub created_by: String,
}

/// What a scoring run did.
pub struct ScoreReport {
    /// Where the RESULTS went.
    pub out: PathBuf,
    /// The catalogue written.
    pub catalog: Catalog,
    /// Its manifest.
    pub manifest: ResultsManifest,
    /// Whether this was one shard of several (population columns left to `merge`).
    pub sharded: bool,
    /// What the labels did, when labels were applied.
    pub labels_applied: Option<LabelsApplied>,
    /// Galaxies without usable pixels (NaN scores, never flagged, ranked last).
    pub unscored: usize,
}

/// The manifest of a scoring run with `settings`: this oddcube's format and version, the
/// settings, no null yet ([`ResultsManifest::set_null`]) and no warnings. The caller sets where
/// the model and dataset came from, the shape, the shard and the provenance (the fields left
/// empty here) with struct-update syntax, so the settings are written one way everywhere.
pub fn manifest_for(settings: &ScoreSettings) -> ResultsManifest {
    ResultsManifest {
        format: RESULTS_FORMAT.to_string(),
        oddcube_version: env!("CARGO_PKG_VERSION").to_string(),
        model_dir: String::new(),
        model_hash: String::new(),
        dataset_dir: String::new(),
        dataset_hash: String::new(),
        lines: Vec::new(),
        size: 0,
        latent_dim: 0,
        rank_by: settings.rank_by.to_string(),
        fdr: settings.fdr,
        knn_k: settings.knn_k,
        pvalues: settings.pvalues.to_string(),
        null_fitted_on: String::new(),
        null_n_calibration: 0,
        ensemble_seeds: Vec::new(),
        warnings: Vec::new(),
        knn_metric: metric_name(settings.metric).to_string(),
        n_galaxies: 0,
        shard: String::new(),
        population_final: false,
        residuals: String::new(),
        created_by: String::new(),
    }
}

/// Name of a latent metric as the manifest records it.
pub fn metric_name(metric: Metric) -> &'static str {
    match metric {
        Metric::Euclidean => "euclidean",
        Metric::Cosine => "cosine",
    }
}

/// What a scoring job computed, before anything is written: [`compute_scores`]' answer, which
/// [`write_scores`] writes and the Python package hands over as arrays.
pub struct ComputedScores {
    /// The catalogue (population columns final unless sharded), latents and anomaly maps.
    pub scored: Scored,
    /// The manifest the RESULTS directory gets.
    pub manifest: ResultsManifest,
    /// Dataset rows scored, in catalogue order (all rows, or one shard's).
    pub rows: Vec<usize>,
    /// The model's stored null, when it has one.
    pub null: Option<StoredNull>,
    /// The restart ensemble's null, when `score` is the ensemble's.
    pub ensemble: Option<EnsembleNull>,
    /// Whether this was one shard of several (population columns left to `merge`).
    pub sharded: bool,
    /// What the labels did, when labels were applied.
    pub labels_applied: Option<LabelsApplied>,
    /// Galaxies without usable pixels (NaN scores, never flagged, ranked last); 0 for a shard.
    pub unscored: usize,
}

/// Computes everything a scoring job writes (see the module docs), writing nothing; `job.out`
/// is not used.
pub fn compute_scores(job: &ScoreJob<'_>, progress: &dyn Progress) -> Result<ComputedScores> {
    let settings = &job.settings;
    if !(settings.fdr > 0.0 && settings.fdr <= 1.0) {
        return Err(Error::InvalidParameter {
            name: "fdr".to_string(),
            value: settings.fdr.to_string(),
            reason: "must lie in (0, 1]".to_string(),
        });
    }
    let dataset = job.dataset;
    let sharded = job.shard.count > 1;
    if sharded && job.labels.is_some() {
        return Err(Error::InvalidParameter {
            name: "labels".to_string(),
            value: job.shard.to_string(),
            reason: "labels need the whole population: score without --shard (or re-score after `oddcube merge`)".to_string(),
        });
    }
    if let Some(path) = job.labels {
        require_labels_file(path)?;
    }
    let lines = dataset.manifest.lines.lines.clone();
    let rows: Vec<usize> = (0..dataset.galaxies.len())
        .filter(|&i| job.shard.contains(&dataset.galaxies[i].plateifu))
        .collect();
    let null = StoredNull::read(job.model_dir)?;
    // The ensemble's score needs each member's stored null, so without the kept model's own
    // (or with population p-values) the kept model scores alone.
    let ensemble = match (&null, settings.pvalues) {
        (Some(_), PValueMethod::Stored) => EnsembleNull::read(job.model_dir)?,
        _ => None,
    };
    // The other members score first: the kept model's map is their consensus with its own.
    let mut member_columns = Vec::new();
    let mut other_maps = Vec::new();
    if let Some(ensemble) = &ensemble {
        // In seed order; the kept model's column is filled from its `score` when the ensemble
        // combines them ([`EnsembleNull::combine`]).
        for member in &ensemble.members {
            let column = if member.is_kept() {
                vec![f64::NAN; rows.len()]
            } else {
                let scores = member_scores_of(job, member, &rows, progress)?;
                other_maps.push(scores.maps);
                scores.score
            };
            member_columns.push((member_column(member.seed), column));
        }
    }
    let map_settings = MapSettings {
        floors: null
            .as_ref()
            .map(|n| n.calibration.floors.clone())
            .unwrap_or_default(),
        other_maps,
    };
    let mut scored = score_galaxies(
        job.model,
        &dataset.cubes,
        &dataset.galaxies,
        &lines,
        &rows,
        &map_settings,
        progress,
    )?;
    {
        let galaxies: Vec<&GalaxyRecord> = rows.iter().map(|&r| &dataset.galaxies[r]).collect();
        // The BPT class of the centre, as `oddcube bpt` computes it, so that the catalogue
        // has it without a separate run; a shard classifies only its own galaxies.
        let bpt = classify_rows(dataset, &rows, &BptSurveyOptions::default())?;
        let classes: Vec<&str> = bpt.iter().map(|b| b.class.name()).collect();
        push_galaxy_columns(&mut scored.catalog, &galaxies, &classes)?;
    }
    for (name, column) in member_columns {
        scored.catalog.set(&name, Column::F64(column))?;
    }
    let mut used: Option<NullUsed> = None;
    let mut labels_applied = None;
    if !sharded {
        used = Some(finalize_population_scores(
            &mut scored.catalog,
            &scored.latents,
            scored.latent_dim,
            settings,
            null.as_ref(),
            ensemble.as_ref(),
            progress,
        )?);
        if let Some(path) = job.labels {
            labels_applied = Some(apply_labels(
                &mut scored.catalog,
                &scored.latents,
                scored.latent_dim,
                settings,
                path,
            )?);
        }
    } else if let (Some(null), PValueMethod::Stored) = (&null, settings.pvalues) {
        // What needs only the galaxy and the stored null, so the part can rank its residuals.
        apply_stored_null(&mut scored.catalog, &scored.latents, null, settings.metric)?;
        if let Some(ensemble) = &ensemble {
            ensemble.combine(&mut scored.catalog)?;
        }
    }

    let mut manifest = ResultsManifest {
        model_dir: job.model_dir.display().to_string(),
        model_hash: job.model_hash.clone(),
        dataset_dir: job.dataset_dir.display().to_string(),
        dataset_hash: dataset.manifest_hash(),
        lines,
        size: dataset.manifest.size,
        latent_dim: scored.latent_dim,
        n_galaxies: scored.catalog.len(),
        shard: job.shard.to_string(),
        population_final: !sharded,
        residuals: job.residuals.to_string(),
        created_by: job.created_by.clone(),
        ..manifest_for(settings)
    };
    if let Some(used) = &used {
        manifest.set_null(used);
    }
    // A shard's `score` is already the ensemble's; its manifest says so before the merge does.
    manifest.ensemble_seeds = ensemble.as_ref().map_or_else(Vec::new, EnsembleNull::seeds);
    let unscored = if sharded {
        0
    } else {
        scored
            .catalog
            .f64("score")
            .map_or(0, |v| v.iter().filter(|s| s.is_nan()).count())
    };
    Ok(ComputedScores {
        scored,
        manifest,
        rows,
        null,
        ensemble,
        sharded,
        labels_applied,
        unscored,
    })
}

/// The fused scores and anomaly maps of one non-kept ensemble member over `rows`: its model
/// from `job.members`, its stored null from its directory inside the model directory.
fn member_scores_of(
    job: &ScoreJob<'_>,
    member: &EnsembleMember,
    rows: &[usize],
    progress: &dyn Progress,
) -> Result<MemberScores> {
    let ensemble_file = job.model_dir.join(ENSEMBLE_FILE);
    let model = job
        .members
        .iter()
        .find(|(seed, _)| *seed == member.seed)
        .map(|(_, model)| *model)
        .ok_or_else(|| {
            invalid(
                &ensemble_file,
                format!(
                    "names member seed {} ({}), but no model was loaded for it",
                    member.seed, member.dir
                ),
            )
        })?;
    let dir = job.model_dir.join(&member.dir);
    let null = StoredNull::read(&dir)?.ok_or_else(|| {
        invalid(
            &dir,
            format!(
                "ensemble member seed {} has no usable stored null: `oddcube calibrate --model \
                 {} --data DATASET` refits every member's",
                member.seed,
                job.model_dir.display()
            ),
        )
    })?;
    let dataset = job.dataset;
    member_scores(
        model,
        &null,
        &dataset.cubes,
        &dataset.galaxies,
        &dataset.manifest.lines.lines,
        rows,
        job.settings.metric,
        progress,
    )
}

/// Runs a scoring job (see the module docs): [`compute_scores`], then [`write_scores`].
pub fn score_dataset(job: &ScoreJob<'_>, progress: &dyn Progress) -> Result<ScoreReport> {
    // Before the work, not after it: `--out` naming a dataset or a model is a typo to catch.
    check_output_dir(job.out, ArtifactKind::Results)?;
    let computed = compute_scores(job, progress)?;
    let out = write_scores(job, &computed, progress)?;
    let ComputedScores {
        scored,
        manifest,
        sharded,
        labels_applied,
        unscored,
        ..
    } = computed;
    Ok(ScoreReport {
        out,
        catalog: scored.catalog,
        manifest,
        sharded,
        labels_applied,
        unscored,
    })
}

/// Writes what [`compute_scores`] computed for `job`: the residual maps, then
/// [`write_results`], into `job.out` (a shard into `job.out/part-i-of-n/`). Returns that
/// directory.
pub fn write_scores(
    job: &ScoreJob<'_>,
    computed: &ComputedScores,
    progress: &dyn Progress,
) -> Result<PathBuf> {
    let ComputedScores {
        scored,
        manifest,
        rows,
        null,
        ensemble,
        sharded,
        ..
    } = computed;
    let dataset = job.dataset;
    let out = if *sharded {
        job.out.join(job.shard.part_name())
    } else {
        job.out.to_path_buf()
    };
    check_output_dir(&out, ArtifactKind::Results)?;
    std::fs::create_dir_all(&out).map_err(|source| Error::Io {
        path: out.clone(),
        source,
    })?;
    // Residuals first: the manifest, written last, marks the directory complete.
    let picked = residual_rows(
        &scored.catalog,
        job.residuals,
        job.settings.rank_by,
        !sharded,
    );
    let residuals_path = out.join(RESIDUALS_FILE);
    if picked.is_empty() {
        if residuals_path.exists() {
            std::fs::remove_file(&residuals_path).map_err(|source| Error::Io {
                path: residuals_path.clone(),
                source,
            })?;
        }
    } else {
        let dataset_rows: Vec<usize> = picked.iter().map(|&r| rows[r]).collect();
        let names: Vec<String> = dataset_rows
            .iter()
            .map(|&r| dataset.galaxies[r].plateifu.clone())
            .collect();
        write_residuals(
            &out,
            job.model,
            &dataset.cubes,
            &names,
            &manifest.lines,
            &dataset_rows,
            progress,
        )?;
    }
    write_results(
        &out,
        &ResultsContent {
            manifest,
            catalog: &scored.catalog,
            latents: &scored.latents,
            maps: &scored.maps,
            null: null.as_ref(),
            ensemble: ensemble.as_ref(),
        },
    )?;
    Ok(out)
}

/// The catalogue columns that describe a galaxy rather than score it, appended after the
/// scores (so the columns before them keep their positions), in [`GALAXY_COLUMNS`] order:
/// the DAP/DRP quality flags of `galaxies` (catalogue order), `critical` beside `fdr_flag` (a
/// CRITICAL galaxy is scored and may be flagged like any other; this column says that its data
/// failed the pipeline), the DAPTYPE, `bpt_class` (the BPT class of each galaxy's centre, one
/// per galaxy) and the Marvin URL.
pub fn push_galaxy_columns(
    catalog: &mut Catalog,
    galaxies: &[&GalaxyRecord],
    bpt_class: &[&str],
) -> Result<()> {
    if bpt_class.len() != galaxies.len() {
        return Err(Error::LengthMismatch {
            what: "BPT classes".to_string(),
            got: bpt_class.len(),
            expected: galaxies.len(),
        });
    }
    let strs =
        |f: &dyn Fn(&GalaxyRecord) -> String| Column::Str(galaxies.iter().map(|g| f(g)).collect());
    let u32s = |f: fn(&GalaxyRecord) -> u32| Column::U32(galaxies.iter().map(|g| f(g)).collect());
    catalog.push(
        "critical",
        Column::Bool(galaxies.iter().map(|g| g.is_critical()).collect()),
    )?;
    catalog.push("dapqual", u32s(|g| g.dapqual))?;
    catalog.push("dapqual_bits", strs(&|g| quality::dapqual_names(g.dapqual)))?;
    catalog.push("drp3qual", u32s(|g| g.drp3qual))?;
    catalog.push(
        "drp3qual_bits",
        strs(&|g| quality::drp3qual_names(g.drp3qual)),
    )?;
    catalog.push("daptype", strs(&|g| g.daptype.clone()))?;
    catalog.push(
        "bpt_class",
        Column::Str(bpt_class.iter().map(|c| c.to_string()).collect()),
    )?;
    catalog.push("marvin_url", strs(&|g| links::marvin_url(&g.plateifu)))?;
    Ok(())
}

/// The columns [`push_galaxy_columns`] appends, in order.
pub const GALAXY_COLUMNS: [&str; 8] = [
    "critical",
    "dapqual",
    "dapqual_bits",
    "drp3qual",
    "drp3qual_bits",
    "daptype",
    "bpt_class",
    "marvin_url",
];

/// Errors, naming `path`, when the labels file does not exist: the explorer's store starts from
/// a missing file, but a labels file named on the command line must be there.
fn require_labels_file(path: &Path) -> Result<()> {
    std::fs::metadata(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(())
}

/// What [`apply_labels`] did with a labels file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelsApplied {
    /// Labels that named a catalogue galaxy.
    pub known: usize,
    /// Skipped lines (with their numbers) and labels of plate-ifus not in the catalogue (kept
    /// in the file, ignored).
    pub warnings: Vec<String>,
}

/// Re-ranks the catalogue by the user's labels with the active-learning blend
/// ([`crate::relevance`]), exactly as the explorer shows it: fills `adjusted` (anomaly percentile
/// × relevance lift) and `relevance`, and `rank` follows `adjusted`.
pub fn apply_labels(
    catalog: &mut Catalog,
    latents: &[f32],
    latent_dim: usize,
    settings: &ScoreSettings,
    path: &Path,
) -> Result<LabelsApplied> {
    require_labels_file(path)?;
    let store = LabelStore::open_file(path)?;
    let names = catalog
        .str("plateifu")
        .ok_or_else(|| invalid(path, "the catalogue has no plateifu column"))?
        .to_vec();
    let labels = store.labels_for(&names);
    let known = labels.iter().filter(|l| l.is_some()).count();
    let mut warnings = store.warnings().to_vec();
    let unknown = store.unknown(&names);
    if !unknown.is_empty() {
        let shown: Vec<&str> = unknown.iter().take(5).copied().collect();
        warnings.push(format!(
            "{}: {} labelled plate-ifus are not in this catalogue and are ignored ({}{})",
            path.display(),
            unknown.len(),
            shown.join(", "),
            if unknown.len() > shown.len() {
                ", …"
            } else {
                ""
            }
        ));
    }
    let column = settings.rank_by.column();
    let scores = catalog
        .f64(column)
        .ok_or_else(|| Error::Empty(format!("catalogue column '{column}'")))?
        .to_vec();
    let blended = blend(
        catalog,
        latents,
        latent_dim,
        &scores,
        &labels,
        &RelevanceOptions::default(),
    )?;
    catalog.set("adjusted", Column::F64(blended.adjusted))?;
    catalog.set("relevance", Column::F64(blended.relevance))?;
    catalog.set("rank", Column::U32(blended.rank))?;
    Ok(LabelsApplied { known, warnings })
}
