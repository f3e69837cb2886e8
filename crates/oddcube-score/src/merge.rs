//! Joining the `part-i-of-n` RESULTS of a sharded `oddcube score` into one RESULTS directory and
//! computing the population-level scores (latent kNN, LOF, fused score, p-values, FDR, rank)
//! on the whole.

use std::path::Path;

use oddcube_data::Progress;
use oddcube_data::artifact::{ArtifactKind, check_output_dir};
use oddcube_data::merge::find_parts;

use crate::anomaly_map::AnomalyMaps;
use crate::calibration::StoredNull;
use crate::error::{Error, Result};
use crate::pipeline::{ResultsContent, write_results};
use crate::results::{Residuals, ResidualsWriter, Results, invalid};
use crate::score::{ResidualSelection, ScoreSettings, finalize_population_scores, residual_rows};

/// What a results merge produced.
#[derive(Debug, Clone)]
pub struct MergedResults {
    /// Galaxies in the merged catalogue.
    pub n_galaxies: usize,
    /// Parts joined.
    pub n_parts: usize,
    /// Galaxies whose residual maps were carried over.
    pub n_residuals: usize,
    /// What the merge could not carry over (parts without their residual maps), for the log.
    pub warnings: Vec<String>,
}

/// Merges the RESULTS parts in `dir` into `out`. The parts must come from one model, one dataset
/// and one set of scoring settings; every shard must be present and no galaxy may appear twice.
/// Rows are put back in dataset order (plate-ifu order, the order `ingest` writes), so the merged
/// catalogue equals an unsharded `score` of the same dataset.
pub fn merge_results(
    dir: &Path,
    out: &Path,
    created_by: &str,
    progress: &dyn Progress,
) -> Result<MergedResults> {
    let data_err = |e: oddcube_data::DataError| invalid(dir, e.to_string());
    check_output_dir(out, ArtifactKind::Results)?;
    let parts = find_parts(dir).map_err(data_err)?;
    let mut opened = Vec::with_capacity(parts.len());
    for (shard, path) in &parts {
        let r = Results::open(path)?;
        if r.manifest.shard != shard.to_string() || r.manifest.population_final {
            return Err(invalid(
                path,
                format!(
                    "not the score output of shard {shard} (manifest shard {})",
                    r.manifest.shard
                ),
            ));
        }
        opened.push(r);
    }
    let first = &opened[0].manifest;
    for r in &opened[1..] {
        let m = &r.manifest;
        let same = m.model_hash == first.model_hash
            && m.dataset_hash == first.dataset_hash
            && m.lines == first.lines
            && m.latent_dim == first.latent_dim
            && m.rank_by == first.rank_by
            && m.fdr == first.fdr
            && m.knn_k == first.knn_k
            && m.knn_metric == first.knn_metric
            && m.pvalues == first.pvalues
            && m.residuals == first.residuals;
        if !same {
            return Err(invalid(
                &r.dir,
                format!(
                    "scored with a different model, dataset or settings than {}",
                    opened[0].dir.display()
                ),
            ));
        }
    }

    // (part, row) pairs in plate-ifu order.
    let mut order: Vec<(usize, usize)> = Vec::new();
    for (p, r) in opened.iter().enumerate() {
        order.extend((0..r.catalog.len()).map(|i| (p, i)));
    }
    let plateifu = |&(p, i): &(usize, usize)| -> &str {
        opened[p]
            .catalog
            .str("plateifu")
            .map_or("", |c| c[i].as_str())
    };
    order.sort_by(|a, b| plateifu(a).cmp(plateifu(b)));
    if let Some(w) = order
        .windows(2)
        .find(|w| plateifu(&w[0]) == plateifu(&w[1]))
    {
        return Err(invalid(
            dir,
            format!("galaxy {} appears in two parts", plateifu(&w[0])),
        ));
    }

    let catalogs: Vec<_> = opened.iter().map(|r| r.catalog.clone()).collect();
    let maps_of_parts: Vec<Option<AnomalyMaps>> = opened
        .iter()
        .map(|r| AnomalyMaps::read(&r.dir))
        .collect::<Result<_>>()?;
    let mut offsets = Vec::with_capacity(opened.len());
    let mut total = 0;
    for c in &catalogs {
        offsets.push(total);
        total += c.len();
    }
    let joined = crate::results::Catalog::concat(&catalogs)?;
    let rows: Vec<usize> = order.iter().map(|&(p, i)| offsets[p] + i).collect();
    let mut catalog = joined.select_rows(&rows)?;
    let d = first.latent_dim;
    let mut latents = Vec::with_capacity(total * d);
    for &(p, i) in &order {
        latents.extend_from_slice(&opened[p].latents[i * d..(i + 1) * d]);
    }

    let settings = ScoreSettings::from_manifest(first)?;
    // Every part carries a copy of the model's stored null (when it has one).
    let null = StoredNull::read(&opened[0].dir)?;
    // And of the restart ensemble's, whose member columns each part filled for its galaxies.
    let ensemble = match &null {
        Some(_) => crate::ensemble::EnsembleNull::read(&opened[0].dir)?,
        None => None,
    };
    let used = finalize_population_scores(
        &mut catalog,
        &latents,
        d,
        &settings,
        null.as_ref(),
        ensemble.as_ref(),
        progress,
    )?;

    // Residual maps: each part stored its own top-K by a per-galaxy score, a superset of the
    // global top-K by that score; take the global selection from whatever the parts stored.
    let selection: ResidualSelection = first.residuals.parse()?;
    let wanted = residual_rows(&catalog, selection, settings.rank_by, true);
    let stored: Vec<_> = opened
        .iter()
        .map(|r| Residuals::open(&r.dir))
        .collect::<Result<_>>()?;
    let names = catalog
        .str("plateifu")
        .ok_or_else(|| invalid(dir, "no plateifu column"))?
        .to_vec();
    let mut picked: Vec<(String, usize, usize)> = Vec::new(); // (plateifu, part, tensor index)
    let mut not_found = 0usize;
    for row in &wanted {
        let row = *row;
        let name = &names[row];
        let found = stored
            .iter()
            .enumerate()
            .find_map(|(p, s)| s.as_ref().and_then(|s| s.index_of(name)).map(|i| (p, i)));
        match found {
            Some((p, i)) => picked.push((name.clone(), p, i)),
            None => not_found += 1,
        }
    }
    // Only maps the selection wanted and no part holds are lost; name the parts without a file.
    let mut warnings = Vec::new();
    if not_found > 0 {
        let without: Vec<String> = opened
            .iter()
            .zip(&stored)
            .filter(|(_, s)| s.is_none())
            .map(|(part, _)| part.dir.display().to_string())
            .collect();
        warnings.push(format!(
            "{not_found} of the {} residual maps selected by --residuals {} are in no part{}",
            wanted.len(),
            first.residuals,
            if without.is_empty() {
                String::new()
            } else {
                format!(
                    " (no {} in {})",
                    crate::results::RESIDUALS_FILE,
                    without.join(", ")
                )
            }
        ));
    }

    let mut manifest = first.clone();
    manifest.set_null(&used);
    manifest.n_galaxies = catalog.len();
    manifest.shard = oddcube_data::Shard::ALL.to_string();
    manifest.population_final = true;
    manifest.created_by = created_by.to_string();
    std::fs::create_dir_all(out).map_err(|source| Error::Io {
        path: out.to_path_buf(),
        source,
    })?;
    if picked.is_empty() {
        let _ = std::fs::remove_file(out.join(crate::results::RESIDUALS_FILE));
    } else {
        let plateifus: Vec<String> = picked.iter().map(|(n, _, _)| n.clone()).collect();
        let size = stored
            .iter()
            .flatten()
            .next()
            .map_or(first.size, |s| s.size);
        let mut writer = ResidualsWriter::create(out, &plateifus, &first.lines, size)?;
        for (slot, (name, p, i)) in picked.iter().enumerate() {
            let maps = stored[*p]
                .as_ref()
                .and_then(|s| s.galaxy(*i))
                .ok_or_else(|| {
                    invalid(&opened[*p].dir, format!("residuals of {name} unreadable"))
                })?;
            writer.write_galaxy(slot, maps.x, maps.xhat, maps.w)?;
        }
        writer.finish()?;
    }
    let mut maps = AnomalyMaps::default();
    for &(p, i) in &order {
        let part = maps_of_parts[p].as_ref().ok_or_else(|| {
            invalid(
                &opened[p].dir,
                "no anomaly_maps.safetensors (scored by an older oddcube?)",
            )
        })?;
        let (value, line) = part.galaxy(i);
        maps.lines = part.lines.clone();
        maps.size = part.size;
        // Parts scored with one model and one p-value method combine the same runs.
        maps.runs = part.runs;
        maps.plateifus.push(part.plateifus[i].clone());
        maps.value.extend_from_slice(value);
        maps.line.extend_from_slice(line);
    }
    write_results(
        out,
        &ResultsContent {
            manifest: &manifest,
            catalog: &catalog,
            latents: &latents,
            maps: &maps,
            null: null.as_ref(),
            ensemble: ensemble.as_ref(),
        },
    )?;
    Ok(MergedResults {
        n_galaxies: catalog.len(),
        n_parts: opened.len(),
        n_residuals: picked.len(),
        warnings,
    })
}
