//! The on-disk dataset store: `cubes.safetensors` (x, w), `galaxies.parquet` + `.csv`,
//! `manifest.json` and `skipped.csv` — writing them atomically and opening them again.
//!
//! Every artifact is readable without oddcube (safetensors, parquet, CSV, JSON). Nothing that
//! must be byte-identical between runs on the same inputs carries a timestamp or a hash-map
//! order: the safetensors metadata is a single key, the manifest a struct.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, Float64Array, RecordBatch, StringArray, UInt32Array};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::csv;
use crate::cubes::Cubes;
use crate::error::DataError;
use crate::lines::LineSet;
use crate::maps::SPAXEL_ARCSEC;
use crate::mask::MaskPolicy;
use crate::preprocess::Stretch;
use crate::shard::Shard;

/// Format tag written into every manifest; bumped when an artifact's layout changes.
pub const FORMAT: &str = "oddcube-dataset/1";
/// The tensor file.
pub const CUBES_FILE: &str = "cubes.safetensors";
/// The per-galaxy table (parquet).
pub const GALAXIES_PARQUET: &str = "galaxies.parquet";
/// The per-galaxy table (CSV copy).
pub const GALAXIES_CSV: &str = "galaxies.csv";
/// The manifest.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Inputs that were not ingested, with reasons.
pub const SKIPPED_FILE: &str = "skipped.csv";

/// One galaxy of a dataset: a row of `galaxies.parquet`, in tensor order. `Default` is an
/// all-empty record (zeros, empty strings), for tests and builders that set what they need.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GalaxyRecord {
    /// PLATE-IFUDESIGN (or the file-name fallback, see `notes`).
    pub plateifu: String,
    /// MaNGA ID; empty when the header has none.
    pub mangaid: String,
    /// OBJRA (deg); NaN when unknown.
    pub ra: f64,
    /// OBJDEC (deg); NaN when unknown.
    pub dec: f64,
    /// Redshift SCINPVEL / c; NaN when unknown.
    pub z: f64,
    /// IFU size in fibres (IFUDESIGN / 100); 0 when unknown.
    pub ifu_size: u32,
    /// Side of the input MAPS grid (spaxels, e.g. 42 or 74).
    pub grid_size: u32,
    /// Side of the square input box (spaxels) resampled onto the dataset grid.
    pub box_size: u32,
    /// The flux scale divided out (see docs/preprocessing.md).
    pub scale: f64,
    /// Input spaxels good in at least one line of the line set.
    pub n_good: u32,
    /// The MAPS file it came from, as found by ingest.
    pub source: String,
    /// Fallbacks taken while reading (e.g. plateifu from the file name); empty when none.
    pub notes: String,
    /// FWHM of the galaxy's reconstructed r-band PSF in arcsec (the MAPS primary header's
    /// RFWHM); NaN when the header has none, and in datasets written before the column existed.
    /// [`psf_fwhm_pixels`](Self::psf_fwhm_pixels) gives it on the dataset grid.
    pub psf_fwhm: f64,
    /// The MAPS header's DAPQUAL bitmask (bits named by [`crate::quality`]); 0 when the header
    /// has none, and in datasets written before the column existed.
    #[serde(default)]
    pub dapqual: u32,
    /// The MAPS header's DRP3QUAL bitmask of the analysed cube; 0 when absent (as `dapqual`).
    #[serde(default)]
    pub drp3qual: u32,
    /// The DAPTYPE it was analysed with, e.g. `HYB10-MILESHC-MASTARSSP`; empty when unknown.
    #[serde(default)]
    pub daptype: String,
}

impl GalaxyRecord {
    /// Side of one dataset-grid pixel in arcsec. Ingest resamples a square box of `box_size`
    /// MaNGA spaxels (0.5″ each, [`SPAXEL_ARCSEC`]) onto the `size` × `size` grid, so one grid
    /// pixel spans `box_size / size` spaxels: `0.5″ · box_size / size`. `size` is the dataset's
    /// grid side S, [`Manifest::size`] (= `Cubes::size`), not [`grid_size`](Self::grid_size),
    /// which is the input MAPS side. NaN when `box_size` is 0 (unknown) or `size` is 0.
    pub fn pixel_arcsec(&self, size: usize) -> f64 {
        if self.box_size == 0 || size == 0 {
            return f64::NAN;
        }
        SPAXEL_ARCSEC * f64::from(self.box_size) / size as f64
    }

    /// The PSF FWHM in dataset-grid pixels, [`psf_fwhm`](Self::psf_fwhm) /
    /// [`pixel_arcsec`](Self::pixel_arcsec)`(size)`: the scale at which residual maps on the
    /// `size` × `size` grid are smoothed. NaN when either is unknown.
    pub fn psf_fwhm_pixels(&self, size: usize) -> f64 {
        self.psf_fwhm / self.pixel_arcsec(size)
    }

    /// True when the DAP or the DRP flagged this galaxy CRITICAL
    /// ([`quality::is_critical`](crate::quality::is_critical)).
    pub fn is_critical(&self) -> bool {
        crate::quality::is_critical(self.dapqual, self.drp3qual)
    }
}

/// A source file of a dataset, identified by size and content hash.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SourceFile {
    /// Path as found by ingest.
    pub path: String,
    /// Size in bytes (as stored, i.e. compressed for `.fits.gz`).
    pub bytes: u64,
    /// xxh3-128 of the file's bytes, 32 hex digits.
    pub xxh3: String,
}

/// How flux was normalised.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Normalisation {
    /// `percentile-of-reference`: x = flux / scale, scale per galaxy in `galaxies.scale`.
    pub method: String,
    /// The reference map: a line name, or `sum-of-lines` when Hα is not in the line set.
    pub reference: String,
    /// The percentile of good resampled reference flux used as the scale.
    pub percentile: f64,
    /// Compressive stretch applied after dividing by the scale.
    pub stretch: Stretch,
}

/// `manifest.json`: what a dataset is and how it was made.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    /// Version of oddcube that wrote it.
    pub oddcube_version: String,
    /// The lines, in tensor order.
    pub lines: LineSet,
    /// Grid side S.
    pub size: usize,
    /// Number of galaxies N.
    pub n_galaxies: usize,
    /// Pixel mask policy.
    pub mask_policy: MaskPolicy,
    /// Flux normalisation.
    pub normalisation: Normalisation,
    /// The shard this dataset holds (0/1 = everything).
    pub shard: Shard,
    /// Every file that was read (ingested or skipped for data reasons), sorted by path.
    pub sources: Vec<SourceFile>,
    /// Number of rows in `skipped.csv`.
    pub n_skipped: usize,
    /// The command that made it.
    pub created_by: String,
}

/// An input that was not ingested.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SkippedInput {
    /// The path as given or found.
    pub path: String,
    /// Why it was skipped (one line).
    pub reason: String,
}

/// A dataset read back from disk.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The dataset directory.
    pub dir: PathBuf,
    /// The tensors, `[N, L, S, S]`.
    pub cubes: Cubes,
    /// One record per galaxy, in tensor order.
    pub galaxies: Vec<GalaxyRecord>,
    /// The manifest.
    pub manifest: Manifest,
    manifest_bytes: Vec<u8>,
}

impl Dataset {
    /// Opens a dataset directory and checks that its artifacts agree (N, L, S).
    pub fn open(dir: &Path) -> Result<Dataset, DataError> {
        let err = |reason: String| DataError::Dataset {
            path: dir.to_path_buf(),
            reason,
        };
        let manifest_path = dir.join(MANIFEST_FILE);
        let manifest_bytes = std::fs::read(&manifest_path).map_err(|e| {
            err(format!(
                "cannot read {MANIFEST_FILE}: {e} (is this a dataset made by `oddcube ingest`?)"
            ))
        })?;
        let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
            .map_err(|e| err(format!("{MANIFEST_FILE} is not a valid manifest: {e}")))?;
        if manifest.format != FORMAT {
            return Err(err(format!(
                "format {:?}, this oddcube reads {FORMAT:?}",
                manifest.format
            )));
        }
        let cubes = read_cubes(&dir.join(CUBES_FILE))
            .map_err(|reason| err(format!("{CUBES_FILE}: {reason}")))?;
        let galaxies = read_galaxies(&dir.join(GALAXIES_PARQUET))
            .map_err(|reason| err(format!("{GALAXIES_PARQUET}: {reason}")))?;
        if cubes.n != galaxies.len() || cubes.n != manifest.n_galaxies {
            return Err(err(format!(
                "{} galaxies in {CUBES_FILE}, {} in {GALAXIES_PARQUET}, {} in {MANIFEST_FILE}",
                cubes.n,
                galaxies.len(),
                manifest.n_galaxies
            )));
        }
        if cubes.n_lines != manifest.lines.len() || cubes.size != manifest.size {
            return Err(err(format!(
                "{CUBES_FILE} has {} lines × {}², the manifest says {} × {}²",
                cubes.n_lines,
                cubes.size,
                manifest.lines.len(),
                manifest.size
            )));
        }
        Ok(Dataset {
            dir: dir.to_path_buf(),
            cubes,
            galaxies,
            manifest,
            manifest_bytes,
        })
    }

    /// A dataset held in memory (e.g. arrays handed over from Python), with `manifest`
    /// serialised exactly as [`Dataset::write`] would store it, so that its
    /// [`manifest_hash`](Self::manifest_hash) is the hash the written dataset would have.
    /// Errors when the cubes, records and manifest disagree on N, L or S.
    pub fn from_parts(
        dir: PathBuf,
        cubes: Cubes,
        galaxies: Vec<GalaxyRecord>,
        manifest: Manifest,
    ) -> Result<Dataset, DataError> {
        if cubes.n != galaxies.len()
            || cubes.n != manifest.n_galaxies
            || cubes.n_lines != manifest.lines.len()
            || cubes.size != manifest.size
        {
            return Err(DataError::Invalid(format!(
                "{} cubes of {} lines × {}² for {} galaxy records; the manifest says {} galaxies of {} lines × {}²",
                cubes.n,
                cubes.n_lines,
                cubes.size,
                galaxies.len(),
                manifest.n_galaxies,
                manifest.lines.len(),
                manifest.size
            )));
        }
        let manifest_bytes = manifest_json(&manifest)
            .map_err(|reason| DataError::Invalid(format!("manifest: {reason}")))?;
        Ok(Dataset {
            dir,
            cubes,
            galaxies,
            manifest,
            manifest_bytes,
        })
    }

    /// Hex xxh3-128 of the `manifest.json` bytes: the dataset's identity for models and results.
    pub fn manifest_hash(&self) -> String {
        hash_hex(&self.manifest_bytes)
    }

    /// Writes a dataset into `dir` (created if needed). Each artifact is written to a temporary
    /// name, synced and renamed; the manifest goes last, so a directory with a manifest is
    /// complete. Returns the manifest hash.
    pub fn write(
        dir: &Path,
        cubes: &Cubes,
        galaxies: &[GalaxyRecord],
        manifest: &Manifest,
        skipped: &[SkippedInput],
    ) -> Result<String, DataError> {
        let werr = |path: &Path, reason: String| DataError::Write {
            path: path.to_path_buf(),
            reason,
        };
        if cubes.n != galaxies.len() || cubes.n != manifest.n_galaxies {
            return Err(werr(
                dir,
                format!("{} cubes for {} galaxies", cubes.n, galaxies.len()),
            ));
        }
        std::fs::create_dir_all(dir).map_err(|e| werr(dir, e.to_string()))?;
        write_atomic(&dir.join(CUBES_FILE), &cubes_bytes(cubes, &manifest.lines)?)?;
        write_atomic(&dir.join(GALAXIES_PARQUET), &galaxies_parquet(galaxies)?)?;
        write_atomic(&dir.join(GALAXIES_CSV), galaxies_csv(galaxies).as_bytes())?;
        write_atomic(&dir.join(SKIPPED_FILE), skipped_csv(skipped).as_bytes())?;
        let json = manifest_json(manifest).map_err(|e| werr(&dir.join(MANIFEST_FILE), e))?;
        write_atomic(&dir.join(MANIFEST_FILE), &json)?;
        Ok(hash_hex(&json))
    }
}

/// The bytes of `manifest.json`: pretty JSON and a final newline.
fn manifest_json(manifest: &Manifest) -> Result<Vec<u8>, String> {
    let mut json = serde_json::to_vec_pretty(manifest).map_err(|e| e.to_string())?;
    json.push(b'\n');
    Ok(json)
}

/// Where the `x` and `w` tensors of a dataset's `cubes.safetensors` lie in the file, so that
/// other programs (the Python package) can memory-map them instead of copying: both are
/// little-endian f32 `[N, L, S, S]` in C order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CubesLayout {
    /// The tensor file.
    pub path: PathBuf,
    /// `[N, L, S, S]`.
    pub shape: [usize; 4],
    /// Byte offset of `x` from the start of the file.
    pub x_offset: u64,
    /// Byte offset of `w` from the start of the file.
    pub w_offset: u64,
}

/// Reads only the header of `dir/cubes.safetensors` and checks it against the file's size.
pub fn cubes_layout(dir: &Path) -> Result<CubesLayout, DataError> {
    use std::io::Read;
    let path = dir.join(CUBES_FILE);
    let err = |reason: String| DataError::Dataset {
        path: dir.to_path_buf(),
        reason: format!("{CUBES_FILE}: {reason}"),
    };
    let mut file = File::open(&path).map_err(|e| err(e.to_string()))?;
    let file_len = file.metadata().map_err(|e| err(e.to_string()))?.len();
    let mut len_bytes = [0u8; 8];
    file.read_exact(&mut len_bytes)
        .map_err(|e| err(format!("no safetensors header ({e})")))?;
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > file_len.saturating_sub(8) || header_len > 100_000_000 {
        return Err(err(format!(
            "header length {header_len} does not fit a file of {file_len} bytes"
        )));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header)
        .map_err(|e| err(format!("truncated header ({e})")))?;
    let metadata: safetensors::tensor::Metadata =
        serde_json::from_slice(&header).map_err(|e| err(format!("bad header: {e}")))?;
    let data_start = 8 + header_len;
    let locate = |name: &str| -> Result<([usize; 4], u64), DataError> {
        let info = metadata
            .info(name)
            .ok_or_else(|| err(format!("no tensor {name}")))?;
        if info.dtype != Dtype::F32 {
            return Err(err(format!(
                "tensor {name} is {:?}, expected F32",
                info.dtype
            )));
        }
        let shape: [usize; 4] = info.shape.as_slice().try_into().map_err(|_| {
            err(format!(
                "tensor {name} has shape {:?}, expected [N,L,S,S]",
                info.shape
            ))
        })?;
        let (start, end) = info.data_offsets;
        let expected = shape.iter().product::<usize>() * 4;
        if end.checked_sub(start) != Some(expected) || data_start + end as u64 > file_len {
            return Err(err(format!(
                "tensor {name} spans bytes {start}..{end}, which does not hold {shape:?} f32 in a file of {file_len} bytes"
            )));
        }
        Ok((shape, data_start + start as u64))
    };
    let (shape, x_offset) = locate("x")?;
    let (w_shape, w_offset) = locate("w")?;
    if shape != w_shape || shape[2] != shape[3] {
        return Err(err(format!(
            "x has shape {shape:?} and w {w_shape:?}; expected equal [N,L,S,S]"
        )));
    }
    Ok(CubesLayout {
        path,
        shape,
        x_offset,
        w_offset,
    })
}

/// Reads `dir/galaxies.parquet`, one record per galaxy in tensor order, without the cubes.
pub fn read_galaxy_records(dir: &Path) -> Result<Vec<GalaxyRecord>, DataError> {
    read_galaxies(&dir.join(GALAXIES_PARQUET)).map_err(|reason| DataError::Dataset {
        path: dir.to_path_buf(),
        reason: format!("{GALAXIES_PARQUET}: {reason}"),
    })
}

/// Hex xxh3-128 of some bytes (32 lowercase hex digits).
pub fn hash_hex(bytes: &[u8]) -> String {
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(bytes))
}

/// Writes `bytes` to `path` atomically (see [`crate::atomic`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), DataError> {
    crate::atomic::write_bytes(path, bytes).map_err(|e| DataError::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Reads `skipped.csv` of a dataset (path, reason rows).
pub fn read_skipped(dir: &Path) -> Result<Vec<SkippedInput>, DataError> {
    let path = dir.join(SKIPPED_FILE);
    let text = std::fs::read_to_string(&path).map_err(|source| DataError::Io {
        path: path.clone(),
        source,
    })?;
    let rows = csv::parse(&text);
    Ok(rows
        .into_iter()
        .skip(1)
        .filter(|r| r.len() >= 2)
        .map(|r| SkippedInput {
            path: r[0].clone(),
            reason: r[1].clone(),
        })
        .collect())
}

fn cubes_bytes(cubes: &Cubes, lines: &LineSet) -> Result<Vec<u8>, DataError> {
    let werr = |reason: String| DataError::Write {
        path: PathBuf::from(CUBES_FILE),
        reason,
    };
    let shape = cubes.shape().to_vec();
    let to_le = |v: &[f32]| v.iter().flat_map(|f| f.to_le_bytes()).collect::<Vec<u8>>();
    let (x, w) = (to_le(&cubes.x), to_le(&cubes.w));
    let xv = TensorView::new(Dtype::F32, shape.clone(), &x).map_err(|e| werr(e.to_string()))?;
    let wv = TensorView::new(Dtype::F32, shape, &w).map_err(|e| werr(e.to_string()))?;
    // One metadata key only: safetensors stores metadata as a hash map, whose key order would
    // differ between runs and break byte-identical outputs.
    let info = serde_json::json!({ "format": FORMAT, "lines": lines.lines, "size": cubes.size });
    let metadata = HashMap::from([("oddcube".to_string(), info.to_string())]);
    safetensors::tensor::serialize([("x", xv), ("w", wv)], Some(metadata))
        .map_err(|e| werr(e.to_string()))
}

fn read_cubes(path: &Path) -> Result<Cubes, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let tensors = SafeTensors::deserialize(&bytes).map_err(|e| e.to_string())?;
    let read = |name: &str| -> Result<([usize; 4], Vec<f32>), String> {
        let view = tensors
            .tensor(name)
            .map_err(|e| format!("tensor {name}: {e}"))?;
        if view.dtype() != Dtype::F32 {
            return Err(format!("tensor {name} is {:?}, expected F32", view.dtype()));
        }
        let shape: [usize; 4] = view.shape().try_into().map_err(|_| {
            format!(
                "tensor {name} has shape {:?}, expected [N,L,S,S]",
                view.shape()
            )
        })?;
        let data = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok((shape, data))
    };
    let (xs, x) = read("x")?;
    let (ws, w) = read("w")?;
    if xs != ws || xs[2] != xs[3] {
        return Err(format!(
            "x has shape {xs:?} and w {ws:?}; expected equal [N,L,S,S]"
        ));
    }
    Ok(Cubes {
        n: xs[0],
        n_lines: xs[1],
        size: xs[2],
        x,
        w,
    })
}

fn galaxy_schema() -> Schema {
    let utf8 = |n: &str| Field::new(n, DataType::Utf8, false);
    let f64f = |n: &str| Field::new(n, DataType::Float64, false);
    let u32f = |n: &str| Field::new(n, DataType::UInt32, false);
    Schema::new(vec![
        utf8("plateifu"),
        utf8("mangaid"),
        f64f("ra"),
        f64f("dec"),
        f64f("z"),
        u32f("ifu_size"),
        u32f("grid_size"),
        u32f("box_size"),
        f64f("scale"),
        u32f("n_good"),
        utf8("source"),
        utf8("notes"),
        // Last, so positional readers of older tables keep their column indices.
        f64f("psf_fwhm"),
        u32f("dapqual"),
        u32f("drp3qual"),
        utf8("daptype"),
    ])
}

fn galaxies_parquet(galaxies: &[GalaxyRecord]) -> Result<Vec<u8>, DataError> {
    let werr = |reason: String| DataError::Write {
        path: PathBuf::from(GALAXIES_PARQUET),
        reason,
    };
    let s = |f: fn(&GalaxyRecord) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(galaxies.iter().map(f)))
    };
    let d = |f: fn(&GalaxyRecord) -> f64| -> ArrayRef {
        Arc::new(Float64Array::from_iter_values(galaxies.iter().map(f)))
    };
    let u = |f: fn(&GalaxyRecord) -> u32| -> ArrayRef {
        Arc::new(UInt32Array::from_iter_values(galaxies.iter().map(f)))
    };
    let columns = vec![
        s(|g| &g.plateifu),
        s(|g| &g.mangaid),
        d(|g| g.ra),
        d(|g| g.dec),
        d(|g| g.z),
        u(|g| g.ifu_size),
        u(|g| g.grid_size),
        u(|g| g.box_size),
        d(|g| g.scale),
        u(|g| g.n_good),
        s(|g| &g.source),
        s(|g| &g.notes),
        d(|g| g.psf_fwhm),
        u(|g| g.dapqual),
        u(|g| g.drp3qual),
        s(|g| &g.daptype),
    ];
    let schema = Arc::new(galaxy_schema());
    let batch = RecordBatch::try_new(schema.clone(), columns).map_err(|e| werr(e.to_string()))?;
    let mut out = Vec::new();
    let mut writer =
        ArrowWriter::try_new(&mut out, schema, None).map_err(|e| werr(e.to_string()))?;
    writer.write(&batch).map_err(|e| werr(e.to_string()))?;
    writer.close().map_err(|e| werr(e.to_string()))?;
    Ok(out)
}

fn read_galaxies(path: &Path) -> Result<Vec<GalaxyRecord>, String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| e.to_string())?
        .build()
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| e.to_string())?;
        let col = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| format!("no column {name}"))
        };
        fn typed<'a, T: 'static>(a: &'a ArrayRef, name: &str) -> Result<&'a T, String> {
            a.as_any()
                .downcast_ref::<T>()
                .ok_or_else(|| format!("column {name} has type {}", a.data_type()))
        }
        let strs = |n: &str| col(n).and_then(|a| typed::<StringArray>(a, n).cloned());
        let f64s = |n: &str| col(n).and_then(|a| typed::<Float64Array>(a, n).cloned());
        let u32s = |n: &str| col(n).and_then(|a| typed::<UInt32Array>(a, n).cloned());
        let (plateifu, mangaid, source, notes) = (
            strs("plateifu")?,
            strs("mangaid")?,
            strs("source")?,
            strs("notes")?,
        );
        let (ra, dec, z, scale) = (f64s("ra")?, f64s("dec")?, f64s("z")?, f64s("scale")?);
        // Added after the first datasets were written: an older table has no such column, and
        // its galaxies' PSF is unknown rather than the table unreadable.
        let psf_fwhm = match batch.column_by_name("psf_fwhm") {
            Some(a) => Some(typed::<Float64Array>(a, "psf_fwhm")?.clone()),
            None => None,
        };
        // The quality columns came later still: absent means "no flags known" (0, empty).
        let optional_u32 = |n: &str| -> Result<Option<UInt32Array>, String> {
            batch
                .column_by_name(n)
                .map(|a| typed::<UInt32Array>(a, n).cloned())
                .transpose()
        };
        let (dapqual, drp3qual) = (optional_u32("dapqual")?, optional_u32("drp3qual")?);
        let daptype = batch
            .column_by_name("daptype")
            .map(|a| typed::<StringArray>(a, "daptype").cloned())
            .transpose()?;
        let u32_at = |a: &Option<UInt32Array>, i: usize| match a {
            Some(a) if !a.is_null(i) => a.value(i),
            _ => 0,
        };
        let (ifu_size, grid_size, box_size, n_good) = (
            u32s("ifu_size")?,
            u32s("grid_size")?,
            u32s("box_size")?,
            u32s("n_good")?,
        );
        for i in 0..batch.num_rows() {
            if plateifu.is_null(i) {
                return Err(format!("row {i}: null plateifu"));
            }
            out.push(GalaxyRecord {
                plateifu: plateifu.value(i).to_string(),
                mangaid: mangaid.value(i).to_string(),
                ra: ra.value(i),
                dec: dec.value(i),
                z: z.value(i),
                ifu_size: ifu_size.value(i),
                grid_size: grid_size.value(i),
                box_size: box_size.value(i),
                scale: scale.value(i),
                n_good: n_good.value(i),
                source: source.value(i).to_string(),
                notes: notes.value(i).to_string(),
                psf_fwhm: match &psf_fwhm {
                    Some(a) if !a.is_null(i) => a.value(i),
                    _ => f64::NAN,
                },
                dapqual: u32_at(&dapqual, i),
                drp3qual: u32_at(&drp3qual, i),
                daptype: match &daptype {
                    Some(a) if !a.is_null(i) => a.value(i).to_string(),
                    _ => String::new(),
                },
            });
        }
    }
    Ok(out)
}

fn galaxies_csv(galaxies: &[GalaxyRecord]) -> String {
    let mut out = String::from(
        "plateifu,mangaid,ra,dec,z,ifu_size,grid_size,box_size,scale,n_good,source,notes,psf_fwhm,dapqual,drp3qual,daptype\n",
    );
    for g in galaxies {
        let row = [
            csv::quote(&g.plateifu),
            csv::quote(&g.mangaid),
            csv::float(g.ra),
            csv::float(g.dec),
            csv::float(g.z),
            g.ifu_size.to_string(),
            g.grid_size.to_string(),
            g.box_size.to_string(),
            csv::float(g.scale),
            g.n_good.to_string(),
            csv::quote(&g.source),
            csv::quote(&g.notes),
            csv::float(g.psf_fwhm),
            g.dapqual.to_string(),
            g.drp3qual.to_string(),
            csv::quote(&g.daptype),
        ];
        out.push_str(&row.join(","));
        out.push('\n');
    }
    out
}

/// The text of `skipped.csv` (header `path,reason`).
pub(crate) fn skipped_csv(skipped: &[SkippedInput]) -> String {
    let mut out = String::from("path,reason\n");
    for s in skipped {
        out.push_str(&format!(
            "{},{}\n",
            csv::quote(&s.path),
            csv::quote(&s.reason)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(plateifu: &str, i: u32) -> GalaxyRecord {
        GalaxyRecord {
            plateifu: plateifu.to_string(),
            mangaid: format!("1-{i}"),
            ra: 10.0 + f64::from(i),
            dec: f64::NAN,
            z: 0.03,
            ifu_size: 37,
            grid_size: 42,
            box_size: 40,
            scale: 2.5,
            n_good: 700 + i,
            source: format!("dir with, comma/manga-{plateifu}.fits.gz"),
            notes: String::new(),
            psf_fwhm: 2.5 + 0.125 * f64::from(i),
            dapqual: if i == 2 { 1 << 30 } else { 0 },
            drp3qual: i,
            daptype: "HYB10-MILESHC-MASTARSSP".to_string(),
        }
    }

    fn manifest(n: usize) -> Manifest {
        Manifest {
            format: FORMAT.to_string(),
            oddcube_version: "test".to_string(),
            lines: LineSet::parse("Hb-4862,Ha-6564").unwrap(),
            size: 4,
            n_galaxies: n,
            mask_policy: MaskPolicy::Strict,
            normalisation: Normalisation {
                method: "percentile-of-reference".to_string(),
                reference: "Ha-6564".to_string(),
                percentile: 99.0,
                stretch: Stretch::None,
            },
            shard: Shard::ALL,
            sources: vec![SourceFile {
                path: "a".to_string(),
                bytes: 3,
                xxh3: hash_hex(b"abc"),
            }],
            n_skipped: 1,
            created_by: "oddcube ingest a --out d".to_string(),
        }
    }

    #[test]
    fn layout_offsets_address_the_written_tensors_and_from_parts_hashes_alike() {
        let dir = tempfile::tempdir().unwrap();
        let mut cubes = Cubes::zeros(2, 2, 4);
        for (i, v) in cubes.x.iter_mut().enumerate() {
            *v = i as f32 * 0.25;
        }
        for (i, v) in cubes.w.iter_mut().enumerate() {
            *v = 100.0 - i as f32;
        }
        let galaxies = vec![record("7815-3702", 1), record("8000-1901", 2)];
        let hash = Dataset::write(dir.path(), &cubes, &galaxies, &manifest(2), &[]).unwrap();
        let layout = cubes_layout(dir.path()).unwrap();
        assert_eq!(layout.shape, [2, 2, 4, 4]);
        // Reading little-endian f32 at the offsets, as numpy.memmap does, gives the tensors.
        let bytes = std::fs::read(&layout.path).unwrap();
        let at = |offset: u64, n: usize| -> Vec<f32> {
            bytes[offset as usize..offset as usize + 4 * n]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        };
        assert_eq!(at(layout.x_offset, cubes.x.len()), cubes.x);
        assert_eq!(at(layout.w_offset, cubes.w.len()), cubes.w);
        assert_eq!(read_galaxy_records(dir.path()).unwrap().len(), 2);
        // In memory, the same parts have the hash the written dataset has.
        let in_memory =
            Dataset::from_parts(PathBuf::from("mem"), cubes.clone(), galaxies, manifest(2))
                .unwrap();
        assert_eq!(in_memory.manifest_hash(), hash);
        let short = Dataset::from_parts(PathBuf::from("mem"), cubes, vec![], manifest(2));
        assert!(short.unwrap_err().to_string().contains("0 galaxy records"));
        // A truncated tensor file is an error naming the file, not a bad offset.
        let len = bytes.len();
        std::fs::write(&layout.path, &bytes[..len - 8]).unwrap();
        let err = cubes_layout(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains(CUBES_FILE) && err.contains("does not hold"),
            "{err}"
        );
    }

    #[test]
    fn write_then_open_round_trips_every_artifact() {
        let dir = tempfile::tempdir().unwrap();
        let mut cubes = Cubes::zeros(2, 2, 4);
        for (i, v) in cubes.x.iter_mut().enumerate() {
            *v = i as f32 * 0.5;
        }
        cubes.w[3] = 7.0;
        let mut galaxies = vec![record("7815-3702", 1), record("8000-1901", 2)];
        galaxies[1].psf_fwhm = f64::NAN;
        let skipped = vec![SkippedInput {
            path: "bad, file.fits".to_string(),
            reason: "not \"FITS\"".to_string(),
        }];
        let hash = Dataset::write(dir.path(), &cubes, &galaxies, &manifest(2), &skipped).unwrap();
        let ds = Dataset::open(dir.path()).unwrap();
        assert_eq!(ds.cubes, cubes);
        assert_eq!(ds.manifest, manifest(2));
        assert_eq!(ds.manifest_hash(), hash);
        assert_eq!(ds.manifest_hash().len(), 32);
        assert_eq!(ds.galaxies.len(), 2);
        assert_eq!(ds.galaxies[1].plateifu, "8000-1901");
        assert!(ds.galaxies[0].dec.is_nan());
        assert_eq!(ds.galaxies[0].source, galaxies[0].source);
        assert_eq!(ds.galaxies[0].psf_fwhm, 2.625);
        assert_eq!(
            (ds.galaxies[1].dapqual, ds.galaxies[1].drp3qual),
            (1 << 30, 2)
        );
        assert!(ds.galaxies[1].is_critical() && !ds.galaxies[0].is_critical());
        assert_eq!(ds.galaxies[0].daptype, "HYB10-MILESHC-MASTARSSP");
        assert!(ds.galaxies[1].psf_fwhm.is_nan(), "unknown PSF stays NaN");
        assert_eq!(read_skipped(dir.path()).unwrap(), skipped);
        let csv = std::fs::read_to_string(dir.path().join(GALAXIES_CSV)).unwrap();
        let rows = csv::parse(&csv);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[1][10], galaxies[0].source);
        assert_eq!(rows[0][12], "psf_fwhm");
        assert_eq!(rows[0][13..], ["dapqual", "drp3qual", "daptype"]);
        assert_eq!(
            rows[2][13..],
            ["1073741824", "2", "HYB10-MILESHC-MASTARSSP"]
        );
        assert_eq!(
            (rows[1][12].as_str(), rows[2][12].as_str()),
            ("2.625", "nan")
        );
        // No temporary files are left behind.
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.contains(".tmp-")), "{names:?}");
    }

    #[test]
    fn writing_twice_gives_identical_bytes() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let cubes = Cubes::zeros(1, 2, 4);
        let galaxies = vec![record("7815-3702", 1)];
        for d in [&a, &b] {
            Dataset::write(d.path(), &cubes, &galaxies, &manifest(1), &[]).unwrap();
        }
        for name in [
            CUBES_FILE,
            GALAXIES_PARQUET,
            GALAXIES_CSV,
            MANIFEST_FILE,
            SKIPPED_FILE,
        ] {
            assert_eq!(
                std::fs::read(a.path().join(name)).unwrap(),
                std::fs::read(b.path().join(name)).unwrap(),
                "{name}"
            );
        }
    }

    #[test]
    fn open_rejects_inconsistent_artifacts() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            Dataset::open(dir.path()),
            Err(DataError::Dataset { .. })
        ));
        let cubes = Cubes::zeros(1, 2, 4);
        Dataset::write(dir.path(), &cubes, &[record("1-2", 1)], &manifest(1), &[]).unwrap();
        // A manifest claiming another galaxy count must not open.
        let text = std::fs::read_to_string(dir.path().join(MANIFEST_FILE)).unwrap();
        std::fs::write(
            dir.path().join(MANIFEST_FILE),
            text.replace("\"n_galaxies\": 1", "\"n_galaxies\": 2"),
        )
        .unwrap();
        let err = Dataset::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("galaxies"), "{err}");
    }

    /// A dataset written before `psf_fwhm` and the quality columns existed (its
    /// galaxies.parquet has the first twelve columns only) still opens, with every PSF unknown,
    /// no quality flags and everything else intact.
    #[test]
    fn dataset_without_psf_column_opens_with_unknown_psf() {
        let dir = tempfile::tempdir().unwrap();
        let galaxies = vec![record("7815-3702", 1), record("8000-1901", 2)];
        Dataset::write(
            dir.path(),
            &Cubes::zeros(2, 2, 4),
            &galaxies,
            &manifest(2),
            &[],
        )
        .unwrap();
        let path = dir.path().join(GALAXIES_PARQUET);
        let batch = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap())
            .unwrap()
            .build()
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        let old = batch.project(&(0..12).collect::<Vec<_>>()).unwrap();
        assert!(old.column_by_name("psf_fwhm").is_none());
        let mut bytes = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut bytes, old.schema(), None).unwrap();
        writer.write(&old).unwrap();
        writer.close().unwrap();
        std::fs::write(&path, bytes).unwrap();
        let ds = Dataset::open(dir.path()).unwrap();
        assert!(ds.galaxies.iter().all(|g| g.psf_fwhm.is_nan()));
        // Nor quality columns: no flags known, nothing critical.
        assert!(
            ds.galaxies
                .iter()
                .all(|g| g.dapqual == 0 && g.drp3qual == 0 && g.daptype.is_empty())
        );
        // NaN ≠ NaN: compare with the unknown values (dec, psf_fwhm) set to a number, and
        // without the quality columns the old table lacks.
        let known = |g: &GalaxyRecord| GalaxyRecord {
            dec: 0.0,
            psf_fwhm: 0.0,
            dapqual: 0,
            drp3qual: 0,
            daptype: String::new(),
            ..g.clone()
        };
        let back: Vec<GalaxyRecord> = ds.galaxies.iter().map(known).collect();
        let written: Vec<GalaxyRecord> = galaxies.iter().map(known).collect();
        assert_eq!(back, written);
    }

    /// The grid-pixel size follows from the resampling: flux in spaxel columns 6–8 of a 9×9
    /// grid centred on column 4 has its centroid 3 spaxels (1.5″) from the centre, and on the
    /// dataset grid its centroid, in grid pixels times `pixel_arcsec`, must be 1.5″ too — for
    /// down- and upsampling, integer and non-integer ratios. (The sizes are those for which the
    /// band's edges fall on grid-pixel edges, where the pixel centroid is exact.)
    #[test]
    fn pixel_arcsec_matches_the_resampling_geometry() {
        use crate::preprocess::{PreprocessConfig, preprocess};
        let mut maps = crate::fixtures::disc("8000-1901", 9);
        // The whole grid covered and good, so the box is the grid and no pixel is reweighted.
        maps.mask.fill(0);
        maps.ivar.fill(400.0);
        let ha = maps.channel_index("Ha-6564").unwrap();
        let plane = maps.plane_len();
        let flux = &mut maps.flux[ha * plane..(ha + 1) * plane];
        flux.fill(0.0);
        for x in 6..9 {
            flux[4 * 9 + x] = 10.0;
        }
        let expected_arcsec = (7.0 - 4.0) * SPAXEL_ARCSEC;
        for size in [3, 6, 9, 12, 18, 27] {
            let config = PreprocessConfig {
                size,
                ..Default::default()
            };
            let pre = preprocess(&maps, &[ha], &config).unwrap();
            assert_eq!(pre.box_size, 9, "the box is the 9×9 grid");
            let galaxy = GalaxyRecord {
                box_size: pre.box_size as u32,
                ..record("8000-1901", 1)
            };
            // Flux-weighted column of the resampled band, relative to the grid centre.
            let (mut sum, mut weighted) = (0.0, 0.0);
            for (p, &x) in pre.x.iter().enumerate() {
                sum += f64::from(x);
                weighted += f64::from(x) * (p % size) as f64;
            }
            let offset_pixels = weighted / sum - (size as f64 - 1.0) / 2.0;
            let offset_arcsec = offset_pixels * galaxy.pixel_arcsec(size);
            assert!(
                (offset_arcsec - expected_arcsec).abs() < 1e-5,
                "S = {size}: {offset_arcsec}″"
            );
            assert_eq!(
                galaxy.psf_fwhm_pixels(size),
                galaxy.psf_fwhm / (SPAXEL_ARCSEC * 9.0 / size as f64)
            );
        }
        // A 42-spaxel box on the default 32-pixel grid: 0.65625″ pixels, so the real
        // 7815-3702's 2.59937″ PSF spans 3.96 pixels.
        let real = GalaxyRecord {
            box_size: 42,
            psf_fwhm: 2.59937,
            ..record("7815-3702", 0)
        };
        assert_eq!(real.pixel_arcsec(32), 0.65625);
        assert!((real.psf_fwhm_pixels(32) - 2.59937 / 0.65625).abs() < 1e-12);
        let unknown = GalaxyRecord {
            box_size: 0,
            ..real.clone()
        };
        assert!(unknown.pixel_arcsec(32).is_nan() && unknown.psf_fwhm_pixels(32).is_nan());
        assert!(real.pixel_arcsec(0).is_nan());
        let no_psf = GalaxyRecord {
            psf_fwhm: f64::NAN,
            ..real
        };
        assert!(no_psf.psf_fwhm_pixels(32).is_nan());
    }
}
