//! The RESULTS directory written by `oddcube score` and read by every later stage: the
//! catalogue (`catalog.parquet` + `catalog.csv` + `catalog.fits`), `latents.npy`, the optional
//! `anomaly_maps.safetensors`, `residuals.safetensors` and `manifest.json` — their layout, writing
//! (atomic) and reading.
//!
//! Layout (the contract other stages code against; `docs/results.md` documents every column,
//! and a test keeps it complete):
//! - `catalog.parquet` / `catalog.csv` / `catalog.fits`: one row per galaxy in dataset (tensor)
//!   order, the same columns in each; parquet is authoritative. Higher score = more anomalous.
//! - `latents.npy`: `[N, D]` little-endian f32 in catalogue order.
//! - `anomaly_maps.safetensors`: f16 `map` and u8 `line`, each `[N, S, S]`, in catalogue order.
//! - `residuals.safetensors`: f32 tensors `x`, `xhat`, `w`, `residual` (σ units), each
//!   `[K, L, S, S]`; metadata `plateifus` and `lines` are JSON arrays.
//! - `calibration.json` + `reference_latents.npy`: the model's stored null, copied when it has one.
//! - `manifest.json`: provenance and the scoring settings; written last, so a directory with a
//!   manifest is complete.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray, UInt32Array,
};
use arrow_schema::{DataType, Field, Schema};
use memmap2::Mmap;
use oddcube_data::csv;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::error::{Error, Result};
use crate::latents::{Latents, write_npy_f32};

/// Format tag of `manifest.json`; bumped when the layout of a RESULTS directory changes.
pub const RESULTS_FORMAT: &str = "oddcube-results/1";
/// The catalogue (parquet, authoritative).
pub const CATALOG_PARQUET: &str = "catalog.parquet";
/// The catalogue (CSV copy for spreadsheets and shell tools).
pub const CATALOG_CSV: &str = "catalog.csv";
/// The catalogue (FITS binary table copy for astropy and TOPCAT, see [`crate::catalog_fits`]).
pub const CATALOG_FITS: &str = "catalog.fits";
/// The latent vectors.
pub const LATENTS_FILE: &str = "latents.npy";
/// Per-spaxel residual maps of selected galaxies.
pub const RESIDUALS_FILE: &str = "residuals.safetensors";
/// Provenance and settings.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Prefix of the per-line share columns: `line:Ha-6564`.
pub const LINE_COLUMN_PREFIX: &str = "line:";

/// An I/O-flavoured error for a malformed artifact: the crate's error type has no dedicated
/// variant, and `Io` with `InvalidData` prints as "path: reason".
pub fn invalid(path: &Path, reason: impl Into<String>) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, reason.into()),
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` to `path` atomically (see [`oddcube_data::atomic`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    oddcube_data::atomic::write_bytes(path, bytes).map_err(io_err(path))
}

/// One catalogue column.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    /// Float64 values (NaN = unknown).
    F64(Vec<f64>),
    /// UInt32 values.
    U32(Vec<u32>),
    /// UTF-8 strings.
    Str(Vec<String>),
    /// Booleans.
    Bool(Vec<bool>),
}

impl Column {
    /// Number of rows.
    pub fn len(&self) -> usize {
        match self {
            Column::F64(v) => v.len(),
            Column::U32(v) => v.len(),
            Column::Str(v) => v.len(),
            Column::Bool(v) => v.len(),
        }
    }

    /// True when the column has no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The column restricted to `rows` (in that order). Indices must be in range.
    fn select(&self, rows: &[usize]) -> Column {
        match self {
            Column::F64(v) => Column::F64(rows.iter().map(|&i| v[i]).collect()),
            Column::U32(v) => Column::U32(rows.iter().map(|&i| v[i]).collect()),
            Column::Str(v) => Column::Str(rows.iter().map(|&i| v[i].clone()).collect()),
            Column::Bool(v) => Column::Bool(rows.iter().map(|&i| v[i]).collect()),
        }
    }

    /// Appends `other` when it has the same type; returns false otherwise.
    fn extend_from(&mut self, other: &Column) -> bool {
        match (self, other) {
            (Column::F64(a), Column::F64(b)) => a.extend_from_slice(b),
            (Column::U32(a), Column::U32(b)) => a.extend_from_slice(b),
            (Column::Str(a), Column::Str(b)) => a.extend_from_slice(b),
            (Column::Bool(a), Column::Bool(b)) => a.extend_from_slice(b),
            _ => return false,
        }
        true
    }

    fn data_type(&self) -> DataType {
        match self {
            Column::F64(_) => DataType::Float64,
            Column::U32(_) => DataType::UInt32,
            Column::Str(_) => DataType::Utf8,
            Column::Bool(_) => DataType::Boolean,
        }
    }

    fn to_arrow(&self) -> ArrayRef {
        match self {
            Column::F64(v) => Arc::new(Float64Array::from(v.clone())),
            Column::U32(v) => Arc::new(UInt32Array::from(v.clone())),
            Column::Str(v) => Arc::new(StringArray::from_iter_values(v.iter())),
            Column::Bool(v) => Arc::new(BooleanArray::from(v.clone())),
        }
    }

    fn csv_cell(&self, row: usize) -> String {
        match self {
            Column::F64(v) => csv::float(v[row]),
            Column::U32(v) => v[row].to_string(),
            Column::Str(v) => csv::quote(&v[row]),
            Column::Bool(v) => v[row].to_string(),
        }
    }
}

/// The per-galaxy catalogue: named, typed columns of equal length, in dataset order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catalog {
    /// Columns in file order.
    pub columns: Vec<(String, Column)>,
}

impl Catalog {
    /// Number of rows (galaxies); 0 without columns.
    pub fn len(&self) -> usize {
        self.columns.first().map_or(0, |(_, c)| c.len())
    }

    /// True when the catalogue has no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The column called `name`.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|(n, _)| n == name).map(|(_, c)| c)
    }

    /// A float column's values (`None` if absent or another type).
    pub fn f64(&self, name: &str) -> Option<&[f64]> {
        match self.column(name) {
            Some(Column::F64(v)) => Some(v),
            _ => None,
        }
    }

    /// An unsigned-integer column's values.
    pub fn u32(&self, name: &str) -> Option<&[u32]> {
        match self.column(name) {
            Some(Column::U32(v)) => Some(v),
            _ => None,
        }
    }

    /// A string column's values.
    pub fn str(&self, name: &str) -> Option<&[String]> {
        match self.column(name) {
            Some(Column::Str(v)) => Some(v),
            _ => None,
        }
    }

    /// A boolean column's values.
    pub fn bool(&self, name: &str) -> Option<&[bool]> {
        match self.column(name) {
            Some(Column::Bool(v)) => Some(v),
            _ => None,
        }
    }

    /// Row of the galaxy `plateifu` (exact match), by linear scan.
    pub fn row_of(&self, plateifu: &str) -> Option<usize> {
        self.str("plateifu")?.iter().position(|p| p == plateifu)
    }

    /// The `(line name, shares)` of every `line:<name>` column, in column order.
    pub fn line_columns(&self) -> Vec<(&str, &[f64])> {
        self.columns
            .iter()
            .filter_map(
                |(name, col)| match (name.strip_prefix(LINE_COLUMN_PREFIX), col) {
                    (Some(line), Column::F64(v)) => Some((line, v.as_slice())),
                    _ => None,
                },
            )
            .collect()
    }

    /// Appends a column. Errors if the name is taken or its length differs from the others.
    pub fn push(&mut self, name: &str, column: Column) -> Result<()> {
        if self.column(name).is_some() {
            return Err(Error::InvalidParameter {
                name: "catalog column".to_string(),
                value: name.to_string(),
                reason: "a column with this name already exists".to_string(),
            });
        }
        if !self.columns.is_empty() && column.len() != self.len() {
            return Err(Error::LengthMismatch {
                what: format!("column {name}"),
                got: column.len(),
                expected: self.len(),
            });
        }
        self.columns.push((name.to_string(), column));
        Ok(())
    }

    /// Replaces the column `name` in place (keeping its position), or appends it when absent.
    /// Errors if the length differs from the other columns.
    pub fn set(&mut self, name: &str, column: Column) -> Result<()> {
        let others = self
            .columns
            .iter()
            .filter(|(n, _)| n != name)
            .map(|(_, c)| c.len())
            .next();
        if let Some(expected) = others
            && expected != column.len()
        {
            return Err(Error::LengthMismatch {
                what: format!("column {name}"),
                got: column.len(),
                expected,
            });
        }
        match self.columns.iter_mut().find(|(n, _)| n == name) {
            Some((_, slot)) => *slot = column,
            None => self.columns.push((name.to_string(), column)),
        }
        Ok(())
    }

    /// The catalogue restricted to `rows`, in that order. Errors on an out-of-range row.
    pub fn select_rows(&self, rows: &[usize]) -> Result<Catalog> {
        if let Some(&bad) = rows.iter().find(|&&r| r >= self.len()) {
            return Err(Error::InvalidParameter {
                name: "catalog row".to_string(),
                value: bad.to_string(),
                reason: format!("the catalogue has {} rows", self.len()),
            });
        }
        Ok(Catalog {
            columns: self
                .columns
                .iter()
                .map(|(n, c)| (n.clone(), c.select(rows)))
                .collect(),
        })
    }

    /// Concatenates catalogues with identical column names and types (e.g. the parts of a
    /// sharded run), rows of `parts[0]` first. Errors if the schemas differ.
    pub fn concat(parts: &[Catalog]) -> Result<Catalog> {
        let Some(first) = parts.first() else {
            return Ok(Catalog::default());
        };
        let mut out = first.clone();
        for (p, part) in parts.iter().enumerate().skip(1) {
            let names_match = part.columns.len() == out.columns.len()
                && part
                    .columns
                    .iter()
                    .zip(&out.columns)
                    .all(|((a, _), (b, _))| a == b);
            if !names_match {
                return Err(Error::InvalidParameter {
                    name: format!("catalog part {p}"),
                    value: part
                        .columns
                        .iter()
                        .map(|(n, _)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                    reason: "its columns differ from the first part's".to_string(),
                });
            }
            for ((name, dst), (_, src)) in out.columns.iter_mut().zip(&part.columns) {
                if !dst.extend_from(src) {
                    return Err(Error::InvalidParameter {
                        name: format!("catalog part {p}"),
                        value: name.clone(),
                        reason: "column type differs from the first part's".to_string(),
                    });
                }
            }
        }
        Ok(out)
    }

    fn check_lengths(&self, path: &Path) -> Result<()> {
        let n = self.len();
        match self.columns.iter().find(|(_, c)| c.len() != n) {
            Some((name, c)) => Err(invalid(
                path,
                format!("column {name} has {} rows, expected {n}", c.len()),
            )),
            None => Ok(()),
        }
    }

    /// The parquet bytes of the catalogue.
    pub fn to_parquet(&self) -> Result<Vec<u8>> {
        let path = Path::new(CATALOG_PARQUET);
        self.check_lengths(path)?;
        let werr = |e: String| invalid(path, e);
        let schema = Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|(n, c)| Field::new(n, c.data_type(), false))
                .collect::<Vec<_>>(),
        ));
        let arrays: Vec<ArrayRef> = self.columns.iter().map(|(_, c)| c.to_arrow()).collect();
        let batch =
            RecordBatch::try_new(schema.clone(), arrays).map_err(|e| werr(e.to_string()))?;
        let mut out = Vec::new();
        let mut writer =
            ArrowWriter::try_new(&mut out, schema, None).map_err(|e| werr(e.to_string()))?;
        writer.write(&batch).map_err(|e| werr(e.to_string()))?;
        writer.close().map_err(|e| werr(e.to_string()))?;
        Ok(out)
    }

    /// The CSV text of the catalogue (header row, then one row per galaxy; `nan` for NaN).
    pub fn to_csv(&self) -> String {
        let mut out = self
            .columns
            .iter()
            .map(|(n, _)| csv::quote(n))
            .collect::<Vec<_>>()
            .join(",");
        out.push('\n');
        for row in 0..self.len() {
            let cells: Vec<String> = self.columns.iter().map(|(_, c)| c.csv_cell(row)).collect();
            out.push_str(&cells.join(","));
            out.push('\n');
        }
        out
    }

    /// Writes `catalog.parquet`, `catalog.csv` and `catalog.fits` into `dir` (which must
    /// exist), each atomically.
    pub fn write(&self, dir: &Path) -> Result<()> {
        write_atomic(&dir.join(CATALOG_PARQUET), &self.to_parquet()?)?;
        write_atomic(&dir.join(CATALOG_CSV), self.to_csv().as_bytes())?;
        write_atomic(&dir.join(CATALOG_FITS), &self.to_fits()?)
    }

    /// Reads a catalogue parquet file (any of the four column types; others are an error).
    pub fn read_parquet(path: &Path) -> Result<Catalog> {
        let file = File::open(path).map_err(io_err(path))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|b| b.build())
            .map_err(|e| invalid(path, format!("not a readable parquet file: {e}")))?;
        let mut catalog: Option<Catalog> = None;
        for batch in reader {
            let batch = batch.map_err(|e| invalid(path, e.to_string()))?;
            let schema = batch.schema();
            let mut part = Catalog::default();
            for (field, array) in schema.fields().iter().zip(batch.columns()) {
                let name = field.name();
                if array.null_count() > 0 {
                    return Err(invalid(path, format!("column {name} has null values")));
                }
                let any = array.as_any();
                let column = if let Some(a) = any.downcast_ref::<Float64Array>() {
                    Column::F64(a.values().to_vec())
                } else if let Some(a) = any.downcast_ref::<UInt32Array>() {
                    Column::U32(a.values().to_vec())
                } else if let Some(a) = any.downcast_ref::<StringArray>() {
                    Column::Str((0..a.len()).map(|i| a.value(i).to_string()).collect())
                } else if let Some(a) = any.downcast_ref::<BooleanArray>() {
                    Column::Bool((0..a.len()).map(|i| a.value(i)).collect())
                } else {
                    return Err(invalid(
                        path,
                        format!("column {name} has unsupported type {}", field.data_type()),
                    ));
                };
                part.columns.push((name.clone(), column));
            }
            catalog = Some(match catalog {
                None => part,
                Some(acc) => {
                    Catalog::concat(&[acc, part]).map_err(|e| invalid(path, e.to_string()))?
                }
            });
        }
        let catalog = catalog.unwrap_or_default();
        catalog.check_lengths(path)?;
        Ok(catalog)
    }
}

/// `manifest.json` of a RESULTS directory: where the scores came from and how they were made.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ResultsManifest {
    /// [`RESULTS_FORMAT`].
    #[serde(default)]
    pub format: String,
    /// Version of oddcube that wrote it.
    pub oddcube_version: String,
    /// The model directory used. On disk it is recorded relative to the RESULTS directory where
    /// it can be ([`crate::provenance::recorded_path`]), so a moved tree still resolves.
    pub model_dir: String,
    /// xxh3-128 of the model's `config.toml` and weights (see `score::model_hash`).
    pub model_hash: String,
    /// The dataset directory scored, recorded as `model_dir` is.
    pub dataset_dir: String,
    /// The dataset's manifest hash.
    pub dataset_hash: String,
    /// Line names, in tensor order.
    pub lines: Vec<String>,
    /// Grid side S.
    pub size: usize,
    /// Latent dimension D.
    pub latent_dim: usize,
    /// Column the rank follows (`score`, `pooled`, `global`, `local`, `chi2`, `recon`,
    /// `knn_dist`, `lof`).
    pub rank_by: String,
    /// Benjamini–Hochberg false-discovery level of `fdr_flag`.
    pub fdr: f64,
    /// Neighbours used by `knn_dist` and `lof`: the stored null's k when the p-values came from
    /// it (its `knn_dist` null was fitted at that k), else the `--knn-k` asked for, at most the
    /// population size − 1 ([`ResultsManifest::set_null`] records it).
    pub knn_k: usize,
    /// Which null was asked for (`stored` or `population`, see `score::PValueMethod`).
    #[serde(default = "default_pvalues")]
    pub pvalues: String,
    /// Which galaxies the null actually used was fitted on: `training+validation` or
    /// `validation` (stored with the model, see `Calibration::fitted_on`), `population` (the
    /// scored galaxies: the fallback), or `none` (too few scorable galaxies to fit one).
    #[serde(default)]
    pub null_fitted_on: String,
    /// How many galaxies that null was fitted on.
    #[serde(default)]
    pub null_n_calibration: usize,
    /// The seeds of the restart ensemble whose members' mean `score` is (`ensemble.json`, copied
    /// beside the catalogue; the member columns are `score_seed_S`); empty when `score` is one
    /// model's.
    #[serde(default)]
    pub ensemble_seeds: Vec<u64>,
    /// Things a reader of these results must know (e.g. a fallback that was taken).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Latent metric of `knn_dist`/`lof` (`euclidean` or `cosine`).
    #[serde(default = "default_metric")]
    pub knn_metric: String,
    /// Galaxies in the catalogue.
    #[serde(default)]
    pub n_galaxies: usize,
    /// The shard scored, `i/n` (`0/1` = the whole dataset).
    #[serde(default = "default_shard")]
    pub shard: String,
    /// Whether the population columns (score, knn_dist, lof, pvalue, qvalue, fdr_flag, rank) are
    /// final; false in the part of a sharded run until `oddcube merge` finalises them.
    #[serde(default = "default_true")]
    pub population_final: bool,
    /// Residual selection (`none`, `top:K`, `all`).
    #[serde(default)]
    pub residuals: String,
    /// The command line that made it.
    pub created_by: String,
}

/// What a directory without a RESULTS manifest is instead, as a hint for the error: a model, the
/// parts of a sharded run, or (the fallback) not oddcube's at all.
fn not_results_hint(dir: &Path, e: &std::io::Error) -> String {
    if e.kind() != std::io::ErrorKind::NotFound {
        return String::new();
    }
    if dir.join(crate::provenance::MODEL_MARKER).is_file() {
        return format!(
            " (this is a model directory, written by `oddcube train`, not RESULTS; run \
             `oddcube score --model {} --data DATASET --out RESULTS`)",
            dir.display()
        );
    }
    if oddcube_data::merge::find_parts(dir).is_ok() {
        return format!(
            " (this directory holds the parts of a sharded run; join them with \
             `oddcube merge {} --out RESULTS`)",
            dir.display()
        );
    }
    " (is this a RESULTS directory written by `oddcube score`?)".to_string()
}

fn default_metric() -> String {
    "euclidean".to_string()
}
fn default_pvalues() -> String {
    "population".to_string()
}
fn default_shard() -> String {
    "0/1".to_string()
}
fn default_true() -> bool {
    true
}

impl ResultsManifest {
    /// Reads `dir/manifest.json`, with `dataset_dir` and `model_dir` resolved to paths usable
    /// from the current directory (see [`crate::provenance`]). A directory that is not RESULTS —
    /// a dataset, a model, the parts of a sharded run — is named as such, with the command that
    /// makes RESULTS from it.
    pub fn read(dir: &Path) -> Result<ResultsManifest> {
        let path = dir.join(MANIFEST_FILE);
        let bytes = std::fs::read(&path).map_err(|e| Error::Io {
            path: path.clone(),
            source: std::io::Error::new(e.kind(), format!("{e}{}", not_results_hint(dir, &e))),
        })?;
        let value: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| invalid(&path, format!("not a results manifest: {e}")))?;
        let format = value.get("format").and_then(|f| f.as_str()).unwrap_or("");
        if format.starts_with("oddcube-dataset") {
            return Err(invalid(
                &path,
                format!(
                    "this is a dataset directory (written by `oddcube ingest`), not RESULTS; \
                     run `oddcube score --model MODEL --data {} --out RESULTS` to score it",
                    dir.display()
                ),
            ));
        }
        if !format.is_empty() && !format.starts_with("oddcube-results") {
            return Err(invalid(
                &path,
                format!("format {format:?} is not a RESULTS manifest ({RESULTS_FORMAT})"),
            ));
        }
        let mut manifest: ResultsManifest = serde_json::from_value(value)
            .map_err(|e| invalid(&path, format!("not a results manifest: {e}")))?;
        manifest.dataset_dir = crate::provenance::resolve_recorded(
            dir,
            &manifest.dataset_dir,
            crate::provenance::DATASET_MARKER,
        );
        manifest.model_dir = crate::provenance::resolve_recorded(
            dir,
            &manifest.model_dir,
            crate::provenance::MODEL_MARKER,
        );
        Ok(manifest)
    }

    /// Records which null the p-values came from, the neighbour rank `knn_dist` and `lof` used,
    /// and the warning when the stored null was not used or should be refitted.
    pub fn set_null(&mut self, used: &crate::score::NullUsed) {
        self.null_fitted_on = used.fitted_on.clone();
        self.null_n_calibration = used.n_calibration;
        self.ensemble_seeds = used.ensemble_seeds.clone();
        self.knn_k = used.knn_k;
        self.warnings.retain(|w| !w.starts_with("p-values"));
        if let Some(why) = &used.warning {
            self.warnings.push(format!(
                "p-values from a null fitted to the scored galaxies themselves ({why})"
            ));
        }
        if let Some(advice) = &used.refit_advice {
            self.warnings.push(format!(
                "p-values from an out-of-date stored null: {advice}"
            ));
        }
    }

    /// Writes `dir/manifest.json` atomically (pretty JSON, trailing newline), with `dataset_dir`
    /// and `model_dir` recorded relative to `dir` (see [`crate::provenance::recorded_path`]), so
    /// the RESULTS can be read from any directory.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join(MANIFEST_FILE);
        let mut on_disk = self.clone();
        on_disk.dataset_dir = crate::provenance::recorded_path(dir, Path::new(&self.dataset_dir));
        on_disk.model_dir = crate::provenance::recorded_path(dir, Path::new(&self.model_dir));
        let mut json =
            serde_json::to_vec_pretty(&on_disk).map_err(|e| invalid(&path, e.to_string()))?;
        json.push(b'\n');
        write_atomic(&path, &json)
    }
}

/// A RESULTS directory read back: manifest, catalogue and latents.
#[derive(Debug, Clone)]
pub struct Results {
    /// The directory.
    pub dir: PathBuf,
    /// `manifest.json`.
    pub manifest: ResultsManifest,
    /// `catalog.parquet`.
    pub catalog: Catalog,
    /// `latents.npy`, row-major `[N, latent_dim]`, catalogue order.
    pub latents: Vec<f32>,
    /// Latent dimension D.
    pub latent_dim: usize,
}

impl Results {
    /// Opens a RESULTS directory and checks that catalogue, latents and manifest agree.
    ///
    /// (The latents alone, checked the same way: [`open_latents`].)
    pub fn open(dir: &Path) -> Result<Results> {
        let manifest = ResultsManifest::read(dir)?;
        let catalog = Catalog::read_parquet(&dir.join(CATALOG_PARQUET))?;
        let latents = open_latents(dir, &manifest, catalog.len())?;
        if catalog.str("plateifu").is_none() {
            return Err(invalid(
                &dir.join(CATALOG_PARQUET),
                "no utf8 column plateifu",
            ));
        }
        let latent_dim = latents.dim();
        Ok(Results {
            dir: dir.to_path_buf(),
            manifest,
            catalog,
            latents: latents.as_slice().to_vec(),
            latent_dim,
        })
    }

    /// Writes catalogue, latents and (last) the manifest into `dir`, creating it if needed.
    pub fn write(
        dir: &Path,
        manifest: &ResultsManifest,
        catalog: &Catalog,
        latents: &[f32],
    ) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let n = catalog.len();
        if latents.len() != n * manifest.latent_dim {
            return Err(Error::Shape {
                what: "latents".to_string(),
                len: latents.len(),
                rows: n,
                cols: manifest.latent_dim,
            });
        }
        catalog.write(dir)?;
        write_npy_f32(&dir.join(LATENTS_FILE), latents, n, manifest.latent_dim)?;
        manifest.write(dir)
    }
}

/// `dir/latents.npy`, checked against the RESULTS manifest (its latent dimension) and the
/// catalogue (one row per galaxy), as [`Results::open`] checks it.
pub fn open_latents(dir: &Path, manifest: &ResultsManifest, n_rows: usize) -> Result<Latents> {
    let path = dir.join(LATENTS_FILE);
    let latents = Latents::open(&path)?;
    if latents.n() != n_rows {
        return Err(invalid(
            &path,
            format!("{} latent vectors for {n_rows} catalogue rows", latents.n()),
        ));
    }
    if latents.dim() != manifest.latent_dim {
        return Err(invalid(
            &path,
            format!(
                "latent dimension {} but the manifest says {}",
                latents.dim(),
                manifest.latent_dim
            ),
        ));
    }
    Ok(latents)
}

/// Names of the four residual tensors, in file order.
pub const RESIDUAL_TENSORS: [&str; 4] = ["x", "xhat", "w", "residual"];

/// `(x − x̂)·sqrt(w)`, 0 where `w` is not positive: the residual in units of the measurement error.
pub fn sigma_residual(x: f32, xhat: f32, w: f32) -> f32 {
    if w > 0.0 { (x - xhat) * w.sqrt() } else { 0.0 }
}

/// Streams `residuals.safetensors`: the header is fixed up front (the galaxies are known), then
/// galaxies are written at their slots in any order, so reconstructions never need to be held
/// in memory all at once. The file appears under its final name only in [`ResidualsWriter::finish`].
pub struct ResidualsWriter {
    path: PathBuf,
    tmp: PathBuf,
    file: File,
    data_start: u64,
    galaxy_len: usize,
    count: usize,
}

impl ResidualsWriter {
    /// Starts `dir/residuals.safetensors` for `plateifus` (tensor order) with `lines` on an S×S grid.
    pub fn create(
        dir: &Path,
        plateifus: &[String],
        lines: &[String],
        size: usize,
    ) -> Result<ResidualsWriter> {
        let path = dir.join(RESIDUALS_FILE);
        let galaxy_len = lines.len() * size * size;
        let count = plateifus.len();
        let tensor_bytes = count * galaxy_len * 4;
        // Hand-written header: safetensors' own serializer emits metadata from a HashMap, whose
        // order changes between runs; sorted keys keep the file byte-identical for equal inputs.
        let mut header = serde_json::Map::new();
        let mut meta = serde_json::Map::new();
        let to_json = |v: &[String]| serde_json::to_string(v).unwrap_or_else(|_| "[]".to_string());
        meta.insert(
            "lines".to_string(),
            serde_json::Value::String(to_json(lines)),
        );
        meta.insert(
            "plateifus".to_string(),
            serde_json::Value::String(to_json(plateifus)),
        );
        header.insert("__metadata__".to_string(), serde_json::Value::Object(meta));
        for (t, name) in RESIDUAL_TENSORS.iter().enumerate() {
            header.insert(
                name.to_string(),
                serde_json::json!({
                    "dtype": "F32",
                    "shape": [count, lines.len(), size, size],
                    "data_offsets": [t * tensor_bytes, (t + 1) * tensor_bytes],
                }),
            );
        }
        let mut header_bytes = serde_json::to_vec(&serde_json::Value::Object(header))
            .map_err(|e| invalid(&path, e.to_string()))?;
        header_bytes.resize(header_bytes.len().next_multiple_of(8), b' ');
        let tmp = oddcube_data::atomic::temp_path(&path);
        let file = File::create(&tmp).map_err(io_err(&tmp))?;
        let data_start = 8 + header_bytes.len() as u64;
        let result = (|| -> std::io::Result<()> {
            let mut f = &file;
            f.write_all(&(header_bytes.len() as u64).to_le_bytes())?;
            f.write_all(&header_bytes)?;
            file.set_len(data_start + 4 * tensor_bytes as u64)
        })();
        if let Err(source) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::Io { path: tmp, source });
        }
        Ok(ResidualsWriter {
            path,
            tmp,
            file,
            data_start,
            galaxy_len,
            count,
        })
    }

    /// Writes galaxy `slot`'s maps (`x`, `xhat`, `w`, each `L·S·S`); the residual is derived.
    pub fn write_galaxy(&mut self, slot: usize, x: &[f32], xhat: &[f32], w: &[f32]) -> Result<()> {
        use std::os::unix::fs::FileExt;
        if slot >= self.count {
            return Err(Error::InvalidParameter {
                name: "residual slot".to_string(),
                value: slot.to_string(),
                reason: format!("the file holds {} galaxies", self.count),
            });
        }
        for (what, v) in [("x", x), ("xhat", xhat), ("w", w)] {
            crate::error::check_len(what, v.len(), self.galaxy_len)?;
        }
        let residual: Vec<f32> = x
            .iter()
            .zip(xhat)
            .zip(w)
            .map(|((&a, &b), &c)| sigma_residual(a, b, c))
            .collect();
        let tensor_bytes = (self.count * self.galaxy_len * 4) as u64;
        for (t, values) in [x, xhat, w, &residual].into_iter().enumerate() {
            let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            let offset =
                self.data_start + t as u64 * tensor_bytes + (slot * self.galaxy_len * 4) as u64;
            self.file
                .write_all_at(&bytes, offset)
                .map_err(io_err(&self.tmp))?;
        }
        Ok(())
    }

    /// Syncs and renames the file into place.
    pub fn finish(self) -> Result<()> {
        let result = self
            .file
            .sync_all()
            .and_then(|()| std::fs::rename(&self.tmp, &self.path));
        // On failure `Drop` removes the temporary file.
        result.map_err(|source| Error::Io {
            path: self.path.clone(),
            source,
        })
    }
}

/// A writer dropped before [`ResidualsWriter::finish`] (a failed write, a full disk) removes its
/// temporary file; after `finish` it has been renamed away and there is nothing to remove.
impl Drop for ResidualsWriter {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.tmp);
    }
}

/// One galaxy's residual maps, each `[L, S, S]` row-major.
#[derive(Debug, Clone, Copy)]
pub struct ResidualMaps<'a> {
    /// Normalised input flux.
    pub x: &'a [f32],
    /// Reconstruction.
    pub xhat: &'a [f32],
    /// Weights (0 = masked).
    pub w: &'a [f32],
    /// `(x − x̂)·sqrt(w)`, 0 where masked.
    pub residual: &'a [f32],
}

/// `residuals.safetensors` opened read-only (memory-mapped).
#[derive(Debug)]
pub struct Residuals {
    /// Galaxies in tensor order.
    pub plateifus: Vec<String>,
    /// Line names in tensor order.
    pub lines: Vec<String>,
    /// Grid side S.
    pub size: usize,
    map: Mmap,
    /// Byte offset in `map` of each tensor of [`RESIDUAL_TENSORS`].
    offsets: [usize; 4],
}

impl Residuals {
    /// Opens `dir/residuals.safetensors`; `Ok(None)` when the run stored no residuals.
    pub fn open(dir: &Path) -> Result<Option<Residuals>> {
        let path = dir.join(RESIDUALS_FILE);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(Error::Io { path, source }),
        };
        // SAFETY: oddcube replaces artifacts only by rename, never rewrites them in place, so the
        // mapped bytes do not change while mapped.
        let map = unsafe { Mmap::map(&file) }.map_err(io_err(&path))?;
        let (header_len, metadata) = safetensors::SafeTensors::read_metadata(&map)
            .map_err(|e| invalid(&path, format!("not safetensors: {e}")))?;
        let data_start = 8 + header_len;
        let info: BTreeMap<String, String> = metadata
            .metadata()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        let json_list = |key: &str| -> Result<Vec<String>> {
            let text = info
                .get(key)
                .ok_or_else(|| invalid(&path, format!("metadata has no `{key}`")))?;
            serde_json::from_str(text).map_err(|e| {
                invalid(
                    &path,
                    format!("metadata `{key}` is not a JSON string array: {e}"),
                )
            })
        };
        let plateifus = json_list("plateifus")?;
        let lines = json_list("lines")?;
        let tensors = metadata.tensors();
        let mut offsets = [0usize; 4];
        let mut size = None;
        for (slot, name) in RESIDUAL_TENSORS.iter().enumerate() {
            let t = tensors
                .get(*name)
                .ok_or_else(|| invalid(&path, format!("no tensor `{name}`")))?;
            if t.dtype != safetensors::Dtype::F32 {
                return Err(invalid(
                    &path,
                    format!("tensor `{name}` is {:?}, expected F32", t.dtype),
                ));
            }
            let s = match t.shape[..] {
                [k, l, s1, s2] if k == plateifus.len() && l == lines.len() && s1 == s2 => s1,
                _ => {
                    return Err(invalid(
                        &path,
                        format!(
                            "tensor `{name}` has shape {:?}, expected [{}, {}, S, S]",
                            t.shape,
                            plateifus.len(),
                            lines.len()
                        ),
                    ));
                }
            };
            if size.is_some_and(|prev| prev != s) {
                return Err(invalid(&path, "tensors disagree on the grid size"));
            }
            size = Some(s);
            offsets[slot] = data_start + t.data_offsets.0;
        }
        let size = size.unwrap_or(0);
        if !cfg!(target_endian = "little") || offsets.iter().any(|o| o % 4 != 0) {
            return Err(invalid(
                &path,
                "tensor data is not 4-byte aligned little-endian f32",
            ));
        }
        Ok(Some(Residuals {
            plateifus,
            lines,
            size,
            map,
            offsets,
        }))
    }

    /// Number of galaxies stored.
    pub fn len(&self) -> usize {
        self.plateifus.len()
    }

    /// True when no galaxy is stored.
    pub fn is_empty(&self) -> bool {
        self.plateifus.is_empty()
    }

    /// Tensor index of `plateifu`.
    pub fn index_of(&self, plateifu: &str) -> Option<usize> {
        self.plateifus.iter().position(|p| p == plateifu)
    }

    fn tensor(&self, slot: usize) -> &[f32] {
        let n = self.len() * self.lines.len() * self.size * self.size;
        let bytes = &self.map[self.offsets[slot]..self.offsets[slot] + 4 * n];
        // SAFETY: every bit pattern is a valid f32; `open` checked 4-byte alignment of the offset
        // (mmap bases are page-aligned) and safetensors validated that the data lies in the file.
        let (prefix, values, suffix) = unsafe { bytes.align_to::<f32>() };
        debug_assert!(prefix.is_empty() && suffix.is_empty());
        values
    }

    /// The maps of the galaxy at tensor index `i`.
    pub fn galaxy(&self, i: usize) -> Option<ResidualMaps<'_>> {
        let len = self.lines.len() * self.size * self.size;
        if i >= self.len() {
            return None;
        }
        let part = |slot: usize| &self.tensor(slot)[i * len..(i + 1) * len];
        Some(ResidualMaps {
            x: part(0),
            xhat: part(1),
            w: part(2),
            residual: part(3),
        })
    }

    /// The maps of `plateifu`, if stored.
    pub fn galaxy_by_plateifu(&self, plateifu: &str) -> Option<ResidualMaps<'_>> {
        self.galaxy(self.index_of(plateifu)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_catalog() -> Catalog {
        let mut c = Catalog::default();
        c.push(
            "plateifu",
            Column::Str(vec![
                "8485-1901".into(),
                "7443-12703".into(),
                "a,\"b\"".into(),
            ]),
        )
        .unwrap();
        c.push("ra", Column::F64(vec![1.5, f64::NAN, -0.25]))
            .unwrap();
        c.push("ifu_size", Column::U32(vec![19, 127, 0])).unwrap();
        c.push("line:Ha-6564", Column::F64(vec![0.5, 1.0, 0.0]))
            .unwrap();
        c.push("fdr_flag", Column::Bool(vec![true, false, true]))
            .unwrap();
        c
    }

    fn same(a: &Catalog, b: &Catalog) -> bool {
        a.columns.len() == b.columns.len()
            && a.columns
                .iter()
                .zip(&b.columns)
                .all(|((na, ca), (nb, cb))| {
                    na == nb
                        && match (ca, cb) {
                            // NaN != NaN, so compare bit patterns.
                            (Column::F64(x), Column::F64(y)) => x
                                .iter()
                                .map(|v| v.to_bits())
                                .eq(y.iter().map(|v| v.to_bits())),
                            _ => ca == cb,
                        }
                })
    }

    #[test]
    fn results_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = sample_catalog();
        let manifest = ResultsManifest {
            format: RESULTS_FORMAT.into(),
            oddcube_version: "test".into(),
            model_dir: "m".into(),
            model_hash: "h".into(),
            dataset_dir: "d".into(),
            dataset_hash: "dh".into(),
            lines: vec!["Ha-6564".into()],
            size: 2,
            latent_dim: 2,
            rank_by: "chi2".into(),
            fdr: 0.05,
            knn_k: 1,
            pvalues: "stored".into(),
            null_fitted_on: "validation".into(),
            null_n_calibration: 30,
            ensemble_seeds: vec![4, 5, 6],
            warnings: vec!["a warning".into()],
            knn_metric: "euclidean".into(),
            n_galaxies: 3,
            shard: "0/1".into(),
            population_final: true,
            residuals: "top:2".into(),
            created_by: "oddcube score".into(),
        };
        let latents = [0.0f32, 1.0, 2.0, 3.0, 4.0, 5.0];
        Results::write(dir.path(), &manifest, &catalog, &latents).unwrap();
        let back = Results::open(dir.path()).unwrap();
        assert!(same(&back.catalog, &catalog));
        assert_eq!(back.manifest, manifest);
        assert_eq!(back.latents, latents);
        assert_eq!(back.latent_dim, 2);
        assert_eq!(back.catalog.row_of("7443-12703"), Some(1));
        assert_eq!(
            back.catalog.line_columns(),
            vec![("Ha-6564", &[0.5, 1.0, 0.0][..])]
        );
        let csv = std::fs::read_to_string(dir.path().join(CATALOG_CSV)).unwrap();
        assert_eq!(
            csv.lines().next(),
            Some("plateifu,ra,ifu_size,line:Ha-6564,fdr_flag")
        );
        assert_eq!(csv.lines().nth(2), Some("7443-12703,nan,127,1,false"));
        assert_eq!(csv.lines().nth(3), Some("\"a,\"\"b\"\"\",-0.25,0,0,true"));
        assert!(Residuals::open(dir.path()).unwrap().is_none());
        // No temporary files left behind.
        assert!(
            std::fs::read_dir(dir.path()).unwrap().all(|e| !e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".tmp-"))
        );
    }

    #[test]
    fn residuals_round_trip_and_byte_identical() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["a".to_string(), "b".to_string()];
        let lines = vec!["Hb-4862".to_string(), "Ha-6564".to_string()];
        let len = 2 * 3 * 3;
        let x: Vec<f32> = (0..len).map(|i| i as f32).collect();
        let xhat: Vec<f32> = (0..len).map(|i| i as f32 * 0.5).collect();
        let w: Vec<f32> = (0..len)
            .map(|i| if i % 5 == 0 { 0.0 } else { 4.0 })
            .collect();
        let write = || {
            let mut writer = ResidualsWriter::create(dir.path(), &names, &lines, 3).unwrap();
            // Out of order on purpose: slots are positional.
            writer.write_galaxy(1, &xhat, &x, &w).unwrap();
            writer.write_galaxy(0, &x, &xhat, &w).unwrap();
            assert!(writer.write_galaxy(2, &x, &xhat, &w).is_err());
            writer.finish().unwrap();
            std::fs::read(dir.path().join(RESIDUALS_FILE)).unwrap()
        };
        let first = write();
        assert_eq!(first, write());
        // Any safetensors reader accepts it.
        let st = safetensors::SafeTensors::deserialize(&first).unwrap();
        assert_eq!(st.tensor("residual").unwrap().shape(), &[2, 2, 3, 3]);
        let r = Residuals::open(dir.path()).unwrap().unwrap();
        assert_eq!((r.len(), r.size), (2, 3));
        assert_eq!(r.lines, lines);
        let g = r.galaxy_by_plateifu("a").unwrap();
        assert_eq!(g.x, &x[..]);
        assert_eq!(g.xhat, &xhat[..]);
        assert_eq!(g.w, &w[..]);
        assert_eq!(g.residual[0], 0.0);
        assert_eq!(g.residual[1], 0.5 * 2.0);
        let b = r.galaxy(1).unwrap();
        assert_eq!(b.x, &xhat[..]);
        assert_eq!(b.residual[3], (1.5 - 3.0) * 2.0);
        assert!(r.galaxy(2).is_none());
        // Finished, then abandoned: only the finished file is left, and no temporary.
        let abandoned = ResidualsWriter::create(dir.path(), &names, &lines, 3).unwrap();
        drop(abandoned);
        let left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, vec![RESIDUALS_FILE.to_string()]);
        assert_eq!(
            std::fs::read(dir.path().join(RESIDUALS_FILE)).unwrap(),
            first
        );
    }

    #[test]
    fn catalog_edits_and_errors() {
        let mut c = sample_catalog();
        assert!(c.push("ra", Column::F64(vec![0.0; 3])).is_err());
        assert!(c.push("dec", Column::F64(vec![0.0; 2])).is_err());
        c.set("ra", Column::F64(vec![9.0; 3])).unwrap();
        assert_eq!(c.f64("ra"), Some(&[9.0; 3][..]));
        assert!(c.set("ra", Column::F64(vec![9.0; 4])).is_err());
        let picked = c.select_rows(&[2, 0]).unwrap();
        assert_eq!(picked.str("plateifu").unwrap()[1], "8485-1901");
        assert!(c.select_rows(&[3]).is_err());
        let both = Catalog::concat(&[c.clone(), picked]).unwrap();
        assert_eq!(both.len(), 5);
        let mut other = c.clone();
        other.columns.pop();
        assert!(Catalog::concat(&[c, other]).is_err());
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CATALOG_PARQUET), b"not parquet").unwrap();
        let err = Catalog::read_parquet(&dir.path().join(CATALOG_PARQUET))
            .unwrap_err()
            .to_string();
        assert!(err.contains("catalog.parquet"), "{err}");
        let err = Results::open(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("manifest.json") && err.contains("oddcube score"),
            "{err}"
        );
    }

    #[test]
    fn set_null_records_a_fallback_and_refit_advice_once() {
        let mut manifest = crate::pipeline::manifest_for(&crate::score::ScoreSettings::default());
        let used = crate::score::NullUsed {
            fitted_on: "training+validation".to_string(),
            n_calibration: 1200,
            knn_k: 10,
            warning: None,
            refit_advice: Some("refit it".to_string()),
            ensemble_seeds: Vec::new(),
        };
        // Set twice, as a merge does after the parts were scored: one warning, not two.
        manifest.set_null(&used);
        manifest.set_null(&used);
        assert_eq!(
            manifest.warnings,
            ["p-values from an out-of-date stored null: refit it"]
        );
        let fallback = crate::score::NullUsed {
            fitted_on: "population".to_string(),
            warning: Some("no stored null".to_string()),
            refit_advice: None,
            ..used
        };
        manifest.set_null(&fallback);
        assert_eq!(manifest.null_fitted_on, "population");
        assert_eq!(
            manifest.warnings,
            ["p-values from a null fitted to the scored galaxies themselves (no stored null)"]
        );
    }
}
