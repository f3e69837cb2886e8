//! Joining the `part-i-of-n` datasets of a sharded ingest into one dataset, after checking that
//! the parts belong together, that all n are present and that no galaxy appears twice.

use std::path::{Path, PathBuf};

use crate::cubes::Cubes;
use crate::dataset::{self, Dataset, GalaxyRecord, Manifest, SkippedInput};
use crate::error::DataError;
use crate::shard::Shard;

/// The `part-i-of-n` subdirectories of `dir`, sorted by shard index, with their shards parsed
/// from the names. Errors when there are none, when the parts disagree on n, or when a part is
/// missing or repeated.
pub fn find_parts(dir: &Path) -> Result<Vec<(Shard, PathBuf)>, DataError> {
    let err = |reason: String| DataError::Dataset {
        path: dir.to_path_buf(),
        reason,
    };
    let entries = std::fs::read_dir(dir).map_err(|source| DataError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut parts = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(shard) = parse_part_name(&name)
            && entry.path().is_dir()
        {
            parts.push((shard, entry.path()));
        }
    }
    if parts.is_empty() {
        return Err(err(
            "no part-i-of-n directories (made by `--shard i/n --out DIR`)".into(),
        ));
    }
    parts.sort_by_key(|(s, _)| (s.count, s.index));
    let n = parts[0].0.count;
    if let Some((other, _)) = parts.iter().find(|(s, _)| s.count != n) {
        return Err(err(format!(
            "parts of different shard counts: {n} and {}",
            other.count
        )));
    }
    let present: Vec<u32> = parts.iter().map(|(s, _)| s.index).collect();
    let missing: Vec<String> = (0..n)
        .filter(|i| !present.contains(i))
        .map(|i| format!("part-{i}-of-{n}"))
        .collect();
    if !missing.is_empty() {
        return Err(err(format!(
            "incomplete: missing {} (of {n} parts)",
            missing.join(", ")
        )));
    }
    Ok(parts)
}

/// Parses `part-i-of-n` into a shard.
pub fn parse_part_name(name: &str) -> Option<Shard> {
    let rest = name.strip_prefix("part-")?;
    let (i, n) = rest.split_once("-of-")?;
    Shard::new(i.parse().ok()?, n.parse().ok()?).ok()
}

/// What a dataset merge produced.
#[derive(Debug, Clone)]
pub struct MergedDataset {
    /// Galaxies in the merged dataset.
    pub n_galaxies: usize,
    /// Parts joined.
    pub n_parts: usize,
    /// Rows of the merged `skipped.csv`.
    pub n_skipped: usize,
    /// The merged manifest's hash.
    pub manifest_hash: String,
}

/// Merges the dataset parts found in `dir` into `out`. The result is what an unsharded ingest of
/// the same inputs writes: galaxies in plate-ifu order (ingest's order), the same tensors, the
/// union of sources and skipped inputs. Each part must hold exactly the galaxies its shard hash
/// assigns to it, so a part from another run or another split is caught.
pub fn merge_datasets(
    dir: &Path,
    out: &Path,
    created_by: &str,
) -> Result<MergedDataset, DataError> {
    crate::artifact::check_output_dir(out, crate::artifact::ArtifactKind::Dataset)?;
    let parts = find_parts(dir)?;
    let mut opened: Vec<(Shard, Dataset, Vec<SkippedInput>)> = Vec::with_capacity(parts.len());
    for (shard, path) in &parts {
        let ds = Dataset::open(path)?;
        let skipped = dataset::read_skipped(path)?;
        opened.push((*shard, ds, skipped));
    }
    let first = &opened[0].1.manifest;
    for (shard, ds, _) in &opened {
        let m = &ds.manifest;
        let err = |reason: String| DataError::Dataset {
            path: ds.dir.clone(),
            reason,
        };
        if m.shard != *shard {
            return Err(err(format!(
                "manifest says shard {}, directory name says {shard}",
                m.shard
            )));
        }
        if m.lines != first.lines
            || m.size != first.size
            || m.mask_policy != first.mask_policy
            || m.normalisation != first.normalisation
            || m.oddcube_version != first.oddcube_version
        {
            return Err(err(format!(
                "made with different settings than {} (lines, size, mask policy, normalisation or version differ)",
                opened[0].1.dir.display()
            )));
        }
        if let Some(g) = ds.galaxies.iter().find(|g| !shard.contains(&g.plateifu)) {
            return Err(err(format!(
                "{} does not belong to shard {shard}",
                g.plateifu
            )));
        }
    }

    let mut order: Vec<(usize, usize)> = Vec::new();
    for (p, (_, ds, _)) in opened.iter().enumerate() {
        order.extend((0..ds.galaxies.len()).map(|i| (p, i)));
    }
    let record = |&(p, i): &(usize, usize)| &opened[p].1.galaxies[i];
    order.sort_by(|a, b| {
        let (ra, rb) = (record(a), record(b));
        (ra.plateifu.as_str(), ra.source.as_str()).cmp(&(rb.plateifu.as_str(), rb.source.as_str()))
    });
    if let Some(w) = order
        .windows(2)
        .find(|w| record(&w[0]).plateifu == record(&w[1]).plateifu)
    {
        let (a, b) = (record(&w[0]), record(&w[1]));
        return Err(DataError::Dataset {
            path: dir.to_path_buf(),
            reason: format!(
                "galaxy {} appears twice ({} and {})",
                a.plateifu, a.source, b.source
            ),
        });
    }

    let mut cubes = Cubes::zeros(order.len(), first.lines.len(), first.size);
    let mut galaxies: Vec<GalaxyRecord> = Vec::with_capacity(order.len());
    for (k, &(p, i)) in order.iter().enumerate() {
        let (x, w) = opened[p].1.cubes.galaxy(i);
        let (dx, dw) = cubes.galaxy_mut(k);
        dx.copy_from_slice(x);
        dw.copy_from_slice(w);
        galaxies.push(opened[p].1.galaxies[i].clone());
    }
    let mut skipped: Vec<SkippedInput> = opened
        .iter()
        .flat_map(|(_, _, s)| s.iter().cloned())
        .collect();
    skipped.sort_by(|a, b| (&a.path, &a.reason).cmp(&(&b.path, &b.reason)));
    skipped.dedup_by(|a, b| a.path == b.path);
    let mut sources: Vec<_> = opened
        .iter()
        .flat_map(|(_, ds, _)| ds.manifest.sources.iter().cloned())
        .collect();
    sources.sort_by(|a, b| a.path.cmp(&b.path));
    sources.dedup_by(|a, b| a.path == b.path);

    let manifest = Manifest {
        n_galaxies: galaxies.len(),
        shard: Shard::ALL,
        sources,
        n_skipped: skipped.len(),
        created_by: created_by.to_string(),
        ..first.clone()
    };
    let manifest_hash = Dataset::write(out, &cubes, &galaxies, &manifest, &skipped)?;
    Ok(MergedDataset {
        n_galaxies: galaxies.len(),
        n_parts: opened.len(),
        n_skipped: skipped.len(),
        manifest_hash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_names() {
        assert_eq!(
            parse_part_name("part-2-of-3"),
            Some(Shard { index: 2, count: 3 })
        );
        assert_eq!(parse_part_name("part-3-of-3"), None);
        assert_eq!(parse_part_name("part-x-of-3"), None);
        assert_eq!(parse_part_name("results"), None);
    }

    #[test]
    fn incomplete_part_sets_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("part-0-of-3")).unwrap();
        std::fs::create_dir(dir.path().join("part-2-of-3")).unwrap();
        let e = find_parts(dir.path()).unwrap_err().to_string();
        assert!(e.contains("missing part-1-of-3"), "{e}");
        std::fs::create_dir(dir.path().join("part-1-of-2")).unwrap();
        let e = find_parts(dir.path()).unwrap_err().to_string();
        assert!(e.contains("different shard counts"), "{e}");
        let empty = tempfile::tempdir().unwrap();
        assert!(find_parts(empty.path()).is_err());
    }
}
