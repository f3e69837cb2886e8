//! Judging where the anomaly maps point, and what `fdr_flag` delivered, against known truth.
//!
//! Localization needs a truth region per anomalous galaxy — the simulator's `truth.csv` gives
//! `anomaly_col`, `anomaly_row` (centre, in pixels of the input MAPS grid, 0-based) and
//! `anomaly_radius` (pixels). Ingest centres a `box_size`-spaxel box on the MAPS grid's centre and
//! resamples it to the `S × S` dataset grid, so a MAPS pixel coordinate `c` lies at
//! `(c − (grid_size − 1)/2) · S / box_size + (S − 1)/2` on the dataset grid, and a radius scales by
//! `S / box_size`. For each such galaxy: the pixel AUROC of its anomaly map (usable pixels inside
//! the region against those outside: 1 = the map is highest exactly where the anomaly is) and
//! whether the map's peak falls inside the region (within half a grid pixel of its edge).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use oddcube_data::csv::Table;
use oddcube_data::dataset::GalaxyRecord;

use crate::anomaly_map::AnomalyMaps;
use crate::error::{Error, Result};
use crate::metrics::roc_auc;

/// A known anomalous region, in input MAPS pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TruthRegion {
    /// Centre column.
    pub col: f64,
    /// Centre row.
    pub row: f64,
    /// Radius.
    pub radius: f64,
}

/// The truth regions of `path` (columns `plateifu`, `anomaly_col`, `anomaly_row`,
/// `anomaly_radius`), keyed by plate-IFU; rows without a finite positive radius have none. A file
/// without those columns (e.g. BPT labels) has no regions: `Ok(empty)`.
pub fn read_truth_regions(path: &Path) -> Result<BTreeMap<String, TruthRegion>> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |reason: String| Error::Labels {
        path: path.to_path_buf(),
        reason,
    };
    let table = Table::parse(&text).map_err(bad)?;
    let columns: Vec<Option<usize>> = ["plateifu", "anomaly_col", "anomaly_row", "anomaly_radius"]
        .iter()
        .map(|c| table.column(c).ok())
        .collect();
    let [Some(id), Some(col), Some(row), Some(radius)] = columns[..] else {
        return Ok(BTreeMap::new());
    };
    let mut regions = BTreeMap::new();
    for record in &table.records {
        let number = |i: usize| -> Result<f64> {
            let field = record.get(i).map_err(bad)?;
            Ok(field.parse::<f64>().unwrap_or(f64::NAN))
        };
        let region = TruthRegion {
            col: number(col)?,
            row: number(row)?,
            radius: number(radius)?,
        };
        if region.radius > 0.0 && region.col.is_finite() && region.row.is_finite() {
            regions.insert(record.get(id).map_err(bad)?.to_string(), region);
        }
    }
    Ok(regions)
}

/// Localization of one group of galaxies.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LocalizationRow {
    /// Galaxies judged (anomalous, with a region and a usable map on both sides of it).
    pub n: usize,
    /// Mean pixel AUROC of the anomaly map, region against the rest.
    pub mean_pixel_auroc: f64,
    /// Fraction of galaxies whose map peak lies inside the region.
    pub peak_inside: f64,
}

/// Localization per true kind and overall.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Localization {
    /// All judged galaxies.
    pub overall: LocalizationRow,
    /// Per true kind.
    pub per_kind: BTreeMap<String, LocalizationRow>,
}

/// One galaxy's (pixel AUROC, peak inside) for `region` on its map, or `None` when the map has
/// no usable pixel on one side of the region's edge.
pub fn judge_map(
    map: &[f32],
    size: usize,
    galaxy: &GalaxyRecord,
    region: TruthRegion,
) -> Option<(f64, bool)> {
    if galaxy.box_size == 0 || size == 0 {
        return None;
    }
    let scale = size as f64 / f64::from(galaxy.box_size);
    let to_grid = |c: f64| {
        (c - (f64::from(galaxy.grid_size) - 1.0) / 2.0) * scale + (size as f64 - 1.0) / 2.0
    };
    let (cx, cy, r) = (
        to_grid(region.col),
        to_grid(region.row),
        region.radius * scale,
    );
    let mut values = Vec::new();
    let mut inside = Vec::new();
    let mut peak: Option<(f32, bool)> = None;
    for (p, &v) in map.iter().enumerate().take(size * size) {
        if !v.is_finite() {
            continue;
        }
        let d = ((p % size) as f64 - cx).hypot((p / size) as f64 - cy);
        let is_in = d <= r;
        values.push(f64::from(v));
        inside.push(is_in);
        if peak.is_none_or(|(best, _)| v > best) {
            peak = Some((v, d <= r + 0.5));
        }
    }
    let auroc = roc_auc(&values, &inside).ok()?;
    Some((auroc, peak.is_some_and(|(_, i)| i)))
}

/// Judges the maps of every anomalous galaxy (label not in `normal`) that has a truth region.
/// `galaxies` are looked up by plate-IFU for the grid geometry; `labels` align with the maps'
/// plate-IFUs. `None` when no galaxy could be judged.
pub fn localization(
    maps: &AnomalyMaps,
    galaxies: &[GalaxyRecord],
    regions: &BTreeMap<String, TruthRegion>,
    labels: &BTreeMap<String, String>,
    normal: &BTreeSet<String>,
) -> Option<Localization> {
    let by_name: BTreeMap<&str, &GalaxyRecord> =
        galaxies.iter().map(|g| (g.plateifu.as_str(), g)).collect();
    let mut judged: BTreeMap<String, Vec<(f64, bool)>> = BTreeMap::new();
    for (i, name) in maps.plateifus.iter().enumerate() {
        let (Some(kind), Some(region), Some(galaxy)) = (
            labels.get(name),
            regions.get(name),
            by_name.get(name.as_str()),
        ) else {
            continue;
        };
        if normal.contains(kind) {
            continue;
        }
        if let Some(verdict) = judge_map(maps.galaxy(i).0, maps.size, galaxy, *region) {
            judged.entry(kind.clone()).or_default().push(verdict);
        }
    }
    let row = |v: &[(f64, bool)]| LocalizationRow {
        n: v.len(),
        mean_pixel_auroc: v.iter().map(|x| x.0).sum::<f64>() / v.len() as f64,
        peak_inside: v.iter().filter(|x| x.1).count() as f64 / v.len() as f64,
    };
    let all: Vec<(f64, bool)> = judged.values().flatten().copied().collect();
    if all.is_empty() {
        return None;
    }
    Some(Localization {
        overall: row(&all),
        per_kind: judged.iter().map(|(k, v)| (k.clone(), row(v))).collect(),
    })
}

/// What `fdr_flag` delivered against labels.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FlagReport {
    /// Galaxies flagged (among the labelled ones).
    pub flagged: usize,
    /// Flagged galaxies whose label is normal.
    pub false_discoveries: usize,
    /// `false_discoveries / flagged` (0 when nothing is flagged).
    pub false_discovery_proportion: f64,
    /// Labelled anomalies.
    pub anomalies: usize,
    /// Flagged anomalies / labelled anomalies.
    pub recall: f64,
}

/// The realized false-discovery proportion and recall of `flags` given `labels` (unlabelled
/// galaxies are left out).
pub fn flag_report(
    flags: &[bool],
    labels: &[Option<String>],
    normal: &BTreeSet<String>,
) -> FlagReport {
    let (mut flagged, mut false_discoveries, mut anomalies, mut found) = (0, 0, 0, 0);
    for (flag, label) in flags.iter().zip(labels) {
        let Some(label) = label else { continue };
        let is_normal = normal.contains(label);
        anomalies += usize::from(!is_normal);
        if *flag {
            flagged += 1;
            false_discoveries += usize::from(is_normal);
            found += usize::from(!is_normal);
        }
    }
    FlagReport {
        flagged,
        false_discoveries,
        false_discovery_proportion: if flagged > 0 {
            false_discoveries as f64 / flagged as f64
        } else {
            0.0
        },
        anomalies,
        recall: if anomalies > 0 {
            found as f64 / anomalies as f64
        } else {
            f64::NAN
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn galaxy(grid: u32, bx: u32) -> GalaxyRecord {
        let mut g = crate::score::tests::records(1).remove(0);
        g.grid_size = grid;
        g.box_size = bx;
        g
    }

    /// A map that is 1 inside a disc at grid (cx, cy) of radius r, 0 elsewhere.
    fn disc_map(size: usize, cx: f64, cy: f64, r: f64) -> Vec<f32> {
        (0..size * size)
            .map(|p| {
                let d = ((p % size) as f64 - cx).hypot((p / size) as f64 - cy);
                if d <= r { 1.0 } else { 0.0 }
            })
            .collect()
    }

    #[test]
    fn a_map_lit_exactly_at_the_region_scores_one() {
        // MAPS grid 42, box 42 → dataset grid 21: scale 1/2. MAPS pixel (30.5, 20.5) with
        // radius 6 → grid ((30.5 − 20.5)/2 + 10, (20.5 − 20.5)/2 + 10) = (15, 10), radius 3.
        let g = galaxy(42, 42);
        let map = disc_map(21, 15.0, 10.0, 3.0);
        let region = TruthRegion {
            col: 30.5,
            row: 20.5,
            radius: 6.0,
        };
        let (auroc, inside) = judge_map(&map, 21, &g, region).unwrap();
        assert_eq!(auroc, 1.0);
        assert!(inside);
        // The same map judged against a region on the other side: AUROC below one half.
        let elsewhere = TruthRegion {
            col: 10.5,
            ..region
        };
        let (auroc, inside) = judge_map(&map, 21, &g, elsewhere).unwrap();
        assert!(auroc < 0.5 && !inside);
    }

    #[test]
    fn flag_report_counts() {
        let normal = BTreeSet::from(["sf".to_string()]);
        let labels: Vec<Option<String>> = ["sf", "agn", "agn", "sf", ""]
            .iter()
            .map(|s| (!s.is_empty()).then(|| s.to_string()))
            .collect();
        let r = flag_report(&[true, true, false, false, true], &labels, &normal);
        assert_eq!((r.flagged, r.false_discoveries, r.anomalies), (2, 1, 2));
        assert_eq!(r.false_discovery_proportion, 0.5);
        assert_eq!(r.recall, 0.5);
        let none = flag_report(&[false; 5], &labels, &normal);
        assert_eq!((none.flagged, none.false_discovery_proportion), (0, 0.0));
    }

    #[test]
    fn files_without_regions_have_none() {
        let dir = tempfile::tempdir().unwrap();
        let bpt = dir.path().join("bpt.csv");
        std::fs::write(&bpt, "plateifu,class\n1-1,sf\n").unwrap();
        assert!(read_truth_regions(&bpt).unwrap().is_empty());
        let truth = dir.path().join("truth.csv");
        std::fs::write(
            &truth,
            "plateifu,kind,anomaly_col,anomaly_row,anomaly_radius\n1-1,agn,3,4,2\n1-2,sf,nan,nan,nan\n",
        )
        .unwrap();
        let regions = read_truth_regions(&truth).unwrap();
        assert_eq!(regions.len(), 1);
        assert_eq!(
            regions["1-1"],
            TruthRegion {
                col: 3.0,
                row: 4.0,
                radius: 2.0
            }
        );
    }
}
