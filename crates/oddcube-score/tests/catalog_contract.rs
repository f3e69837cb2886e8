//! The catalogue as a user receives it: a survey with one galaxy the DAP flagged CRITICAL,
//! ingested and scored through `pipeline::score_dataset` with a stand-in model. Checks that
//! the CRITICAL galaxy is scored, flagged like any other anomaly and marked `critical` beside
//! `fdr_flag` (as docs/results.md documents), that the Marvin-user columns are there, that
//! `catalog.fits` holds the same table with units (read back here, and by astropy when it is
//! installed), and that every column the catalogue has is documented in docs/results.md.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use oddcube_data::cubes::Cubes;
use oddcube_data::dataset::Dataset;
use oddcube_data::fits::read::FitsFile;
use oddcube_data::ingest::{IngestOptions, ingest};
use oddcube_data::preprocess::PreprocessConfig;
use oddcube_data::{LineSet, NoProgress, Shard, fixtures};
use oddcube_score::catalog_fits::{CATALOG_EXTNAME, column_unit};
use oddcube_score::pipeline::{GALAXY_COLUMNS, ScoreJob, score_dataset};
use oddcube_score::results::{CATALOG_FITS, Catalog, Column, LINE_COLUMN_PREFIX, Results};
use oddcube_score::score::ResidualSelection;
use oddcube_score::{Autoencoder, ScoreSettings};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

const GALAXIES: usize = 40;
const CRITICAL: &str = "9101-1902";
const LATENT: usize = 4;
const DOCS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/results.md");

/// Reconstructs every cube up to Gaussian noise of one σ per measurement (what a good model
/// leaves), except the galaxy at `odd`, which it misses by eight σ; latents are a tight cloud
/// with that galaxy far outside it.
struct StandIn {
    odd: usize,
}

impl Autoencoder for StandIn {
    fn latent_dim(&self) -> usize {
        LATENT
    }

    fn encode_reconstruct(&self, cubes: &Cubes) -> Result<(Vec<f32>, Vec<f32>), String> {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut latents = Vec::new();
        let mut recon = Vec::new();
        for g in 0..cubes.n {
            let miss = if g == self.odd { 8.0 } else { 1.0 };
            for _ in 0..LATENT {
                let z: f32 = StandardNormal.sample(&mut rng);
                latents.push(z * 0.1 + if g == self.odd { 5.0 } else { 0.0 });
            }
            let (x, w) = cubes.galaxy(g);
            for (&x, &w) in x.iter().zip(w) {
                let e: f32 = StandardNormal.sample(&mut rng);
                recon.push(if w > 0.0 { x + miss * e / w.sqrt() } else { x });
            }
        }
        Ok((latents, recon))
    }
}

/// `GALAXIES` fixture discs (one of them CRITICAL), ingested into `dir/dataset`.
fn dataset(dir: &Path) -> PathBuf {
    let maps_dir = dir.join("maps");
    std::fs::create_dir_all(&maps_dir).unwrap();
    for i in 0..GALAXIES {
        let plateifu = format!("{}-{}", 9100 + i, 1901 + i % 3);
        let mut maps = fixtures::disc(&plateifu, 12);
        if plateifu == CRITICAL {
            maps.meta.dapqual = Some((1 << 30) | (1 << 29));
            maps.meta.drp3qual = Some(1 << 9);
        }
        let name = maps.path.file_name().unwrap().to_owned();
        fixtures::write_maps(&maps, &maps_dir.join(name)).unwrap();
    }
    let out = dir.join("dataset");
    let options = IngestOptions {
        lines: LineSet::dr17(),
        preprocess: PreprocessConfig {
            size: 8,
            ..Default::default()
        },
        shard: Shard::ALL,
        jobs: 1,
        skip_critical: false,
        created_by: "test".to_string(),
    };
    let report = ingest(
        &[maps_dir.display().to_string()],
        &out,
        &options,
        &NoProgress,
    )
    .unwrap();
    assert_eq!(report.n_ingested, GALAXIES);
    out
}

fn scored(dir: &Path) -> Results {
    let data_dir = dataset(dir);
    let data = Dataset::open(&data_dir).unwrap();
    let odd = data
        .galaxies
        .iter()
        .position(|g| g.plateifu == CRITICAL)
        .unwrap();
    let model_dir = dir.join("model");
    std::fs::create_dir_all(&model_dir).unwrap();
    let out = dir.join("results");
    let job = ScoreJob {
        members: &[],
        model: &StandIn { odd },
        model_dir: &model_dir,
        model_hash: "stand-in".to_string(),
        dataset: &data,
        dataset_dir: &data_dir,
        out: &out,
        shard: Shard::ALL,
        settings: ScoreSettings::default(),
        residuals: ResidualSelection::None,
        labels: None,
        created_by: "test".to_string(),
    };
    score_dataset(&job, &NoProgress).unwrap();
    Results::open(&out).unwrap()
}

#[test]
fn critical_galaxy_is_flagged_and_marked_and_catalog_fits_matches() {
    let dir = tempfile::tempdir().unwrap();
    let results = scored(dir.path());
    let catalog = &results.catalog;
    let row = catalog.row_of(CRITICAL).unwrap();

    // Scored and flagged like any anomaly — and marked, beside the flag, as CRITICAL.
    let flag = catalog.bool("fdr_flag").unwrap();
    let critical = catalog.bool("critical").unwrap();
    assert!(flag[row], "the missed galaxy is flagged");
    assert!(critical[row]);
    assert_eq!(critical.iter().filter(|&&c| c).count(), 1);
    assert_eq!(catalog.u32("rank").unwrap()[row], 1);
    assert_eq!(catalog.u32("dapqual").unwrap()[row], (1 << 30) | (1 << 29));
    assert_eq!(
        catalog.str("dapqual_bits").unwrap()[row],
        "DAPCRIT|CRITICAL"
    );
    assert_eq!(catalog.u32("drp3qual").unwrap()[row], 1 << 9);
    assert_eq!(catalog.str("drp3qual_bits").unwrap()[row], "BADPSF");
    let clean = (row + 1) % GALAXIES;
    assert_eq!(catalog.str("dapqual_bits").unwrap()[clean], "");

    // What a Marvin user expects.
    assert!(
        catalog
            .str("daptype")
            .unwrap()
            .iter()
            .all(|t| t == "HYB10-MILESHC-MASTARSSP")
    );
    assert_eq!(
        catalog.str("marvin_url").unwrap()[row],
        format!("https://dr17.sdss.org/marvin/galaxy/{CRITICAL}/")
    );
    let classes = [
        "sf",
        "composite",
        "seyfert",
        "liner",
        "ambiguous",
        "unclassified",
    ];
    assert!(
        catalog
            .str("bpt_class")
            .unwrap()
            .iter()
            .all(|c| classes.contains(&c.as_str()))
    );
    // The new columns come after every score column, so older column positions hold.
    let names: Vec<&str> = catalog.columns.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names[names.len() - GALAXY_COLUMNS.len()..], GALAXY_COLUMNS);

    check_fits(&results.dir.join(CATALOG_FITS), catalog);
    check_with_astropy(&results.dir.join(CATALOG_FITS), catalog);
    check_documented(catalog);
}

/// `catalog.fits` has the catalogue's columns in order, every value, and the units.
fn check_fits(path: &Path, catalog: &Catalog) {
    let fits = FitsFile::open(path).unwrap();
    let table = fits.hdu(CATALOG_EXTNAME).unwrap();
    assert_eq!(table.int("NAXIS2"), Some(catalog.len() as i64));
    assert_eq!(table.int("TFIELDS"), Some(catalog.columns.len() as i64));
    let mut offset = 0;
    let row_bytes = table.int("NAXIS1").unwrap() as usize;
    let data = fits.raw_data(table);
    for (i, (name, column)) in catalog.columns.iter().enumerate() {
        let n = i + 1;
        assert_eq!(table.str(&format!("TTYPE{n}")), Some(name.as_str()));
        assert_eq!(
            table.str(&format!("TUNIT{n}")),
            column_unit(name),
            "unit of {name}"
        );
        let form = table.str(&format!("TFORM{n}")).unwrap().to_string();
        let width = match column {
            Column::F64(_) | Column::U32(_) => 8,
            Column::Bool(_) => 1,
            Column::Str(_) => form.trim_end_matches('A').parse().unwrap(),
        };
        for r in 0..catalog.len() {
            let cell = &data[r * row_bytes + offset..r * row_bytes + offset + width];
            match column {
                Column::F64(v) => {
                    let back = f64::from_be_bytes(cell.try_into().unwrap());
                    assert!(back == v[r] || (back.is_nan() && v[r].is_nan()), "{name}");
                }
                Column::U32(v) => {
                    assert_eq!(
                        i64::from_be_bytes(cell.try_into().unwrap()),
                        i64::from(v[r])
                    )
                }
                Column::Bool(v) => assert_eq!(cell[0], if v[r] { b'T' } else { b'F' }),
                Column::Str(v) => {
                    assert_eq!(
                        std::str::from_utf8(cell).unwrap().trim_end(),
                        v[r],
                        "{name}"
                    )
                }
            }
        }
        offset += width;
    }
    assert_eq!(offset, row_bytes);
    assert_eq!(column_unit("ra"), Some("deg"));
}

/// A Python with astropy: `ODDCUBE_PYTHON`, else `python3`, else Debian's `/usr/bin/python3`.
fn astropy_python() -> Option<String> {
    let candidates = std::env::var("ODDCUBE_PYTHON")
        .into_iter()
        .chain(["python3".to_string(), "/usr/bin/python3".to_string()]);
    candidates.into_iter().find(|python| {
        std::process::Command::new(python)
            .args(["-c", "import astropy"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// astropy's `Table.read` opens `catalog.fits`: same columns, units as quantities, values.
/// Skipped (with a note) where no astropy is installed, except in CI (`CI` set), whose
/// `.ci/run` installs it: there a missing astropy is a failure.
fn check_with_astropy(path: &Path, catalog: &Catalog) {
    let Some(python) = astropy_python() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have astropy (.ci/run installs it) to check catalog.fits"
        );
        eprintln!("note: no python3 with astropy; catalog.fits not checked with astropy");
        return;
    };
    let names: Vec<&str> = catalog.columns.iter().map(|(n, _)| n.as_str()).collect();
    let row = catalog.row_of(CRITICAL).unwrap();
    let script = format!(
        r#"
import sys, math, warnings
warnings.simplefilter("error")  # a unit astropy cannot parse, a bad card: fail, not warn
from astropy.io import fits
from astropy.table import Table
with fits.open(sys.argv[1]) as hdus:
    hdus.verify("exception")  # the FITS standard, as astropy checks it
t = Table.read(sys.argv[1], hdu="{CATALOG_EXTNAME}")
assert t.colnames == {names:?}, t.colnames
assert str(t["ra"].unit) == "deg", t["ra"].unit
assert str(t["region_area"].unit) == "arcsec2", t["region_area"].unit
assert t["plateifu"][{row}] == "{CRITICAL}", t["plateifu"][{row}]
assert bool(t["critical"][{row}]) and bool(t["fdr_flag"][{row}])
assert int(t["dapqual"][{row}]) == {dapqual}
assert t["dapqual_bits"][{row}] == "DAPCRIT|CRITICAL"
assert int(t["rank"][{row}]) == 1
assert math.isclose(float(t["score"][{row}]), {score:?}, rel_tol=1e-12)
print("astropy ok", len(t))
"#,
        dapqual = (1u32 << 30) | (1 << 29),
        score = catalog.f64("score").unwrap()[row],
    );
    let out = std::process::Command::new(&python)
        .args(["-c", &script, &path.display().to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "astropy could not read catalog.fits as expected:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprint!("{}", String::from_utf8_lossy(&out.stdout));
}

/// The column names in docs/results.md's catalogue section: the first cell of each table row
/// that starts with a backticked name.
fn documented_columns() -> BTreeSet<String> {
    let text = std::fs::read_to_string(DOCS).expect("docs/results.md");
    let section = text
        .split("\n## ")
        .find(|s| s.starts_with("The catalogue columns"))
        .expect("docs/results.md has a section '## The catalogue columns'");
    section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_string)
        .collect()
}

/// Every column the catalogue writes is documented, and nothing is documented that the
/// catalogue does not write (`adjusted` and `relevance` appear only with `score --labels`,
/// `score_seed_<S>` only for a model trained with restarts).
fn check_documented(catalog: &Catalog) {
    let documented = documented_columns();
    let written: BTreeSet<String> = catalog
        .columns
        .iter()
        .map(|(n, _)| {
            if n.starts_with(LINE_COLUMN_PREFIX) {
                format!("{LINE_COLUMN_PREFIX}<name>")
            } else if n.starts_with("score_seed_") {
                "score_seed_<S>".to_string()
            } else {
                n.clone()
            }
        })
        .collect();
    let undocumented: Vec<&String> = written.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "catalogue columns missing from docs/results.md: {undocumented:?}"
    );
    let optional = BTreeSet::from([
        "adjusted".to_string(),
        "relevance".to_string(),
        "score_seed_<S>".to_string(),
    ]);
    let stale: Vec<&String> = documented
        .difference(&written)
        .filter(|n| !optional.contains(*n))
        .collect();
    assert!(
        stale.is_empty(),
        "docs/results.md documents columns the catalogue no longer writes: {stale:?}"
    );
}
