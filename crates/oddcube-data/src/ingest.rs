//! `ingest`: turns MAPS files (paths, directories, globs) into a dataset — in parallel, with
//! every unusable input recorded in `skipped.csv` instead of stopping the batch.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::cubes::Cubes;
use crate::dataset::{
    self, Dataset, GalaxyRecord, Manifest, Normalisation, SkippedInput, SourceFile,
};
use crate::error::DataError;
use crate::fits::read::read_file;
use crate::lines::LineSet;
use crate::maps::{MapsFile, plateifu_from_file_name};
use crate::preprocess::{PreprocessConfig, REFERENCE_LINE, SCALE_PERCENTILE, preprocess};
use crate::progress::Progress;
use crate::quality;
use crate::shard::Shard;

/// Settings of one ingest run.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Lines to read, in tensor order.
    pub lines: LineSet,
    /// Grid size, mask policy and stretch.
    pub preprocess: PreprocessConfig,
    /// The shard to ingest (others' galaxies are left out).
    pub shard: Shard,
    /// Worker threads (0 = one per core).
    pub jobs: usize,
    /// Leave out galaxies whose DAPQUAL or DRP3QUAL has the CRITICAL bit (listed in
    /// `skipped.csv` with the bits). Off by default: a critical galaxy is ingested, its flags
    /// kept in `galaxies.*` and carried to the catalogue's `critical` column, and a notice
    /// names it — so nothing disappears without a trace, and the user decides.
    pub skip_critical: bool,
    /// The command line, recorded in the manifest.
    pub created_by: String,
}

/// What an ingest run did.
#[derive(Debug, Clone)]
pub struct IngestReport {
    /// Where the dataset was written (`DATASET` or `DATASET/part-i-of-n`).
    pub out_dir: PathBuf,
    /// Galaxies in the dataset.
    pub n_ingested: usize,
    /// Files considered for this shard (ingested + skipped files).
    pub n_files: usize,
    /// Inputs not ingested, with reasons (as in `skipped.csv`).
    pub skipped: Vec<SkippedInput>,
    /// Fallback notes per file (e.g. plateifu from the file name), `path: note`.
    pub notices: Vec<String>,
    /// Bytes of MAPS files read.
    pub bytes_read: u64,
    /// Hash of the written manifest; `None` when nothing was written because no input of this
    /// shard could be ingested.
    pub manifest_hash: Option<String>,
}

/// One ingested galaxy before sorting.
struct Galaxy {
    record: GalaxyRecord,
    x: Vec<f32>,
    w: Vec<f32>,
}

enum Outcome {
    Ingested(Box<Galaxy>, SourceFile, Vec<String>),
    Skipped(SkippedInput, Option<SourceFile>),
    OtherShard,
}

/// Expands command-line inputs into MAPS file paths: files as given, directories searched
/// recursively for `*.fits` / `*.fits.gz`, glob patterns expanded. Inputs that yield nothing
/// (nonexistent path, empty directory, glob without match, unreadable entry) are returned as
/// skipped. Paths are de-duplicated (first occurrence wins).
pub fn collect_inputs(inputs: &[String]) -> (Vec<PathBuf>, Vec<SkippedInput>) {
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    let skip = |path: &str, reason: String| SkippedInput {
        path: path.to_string(),
        reason,
    };
    for input in inputs {
        let path = Path::new(input);
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => {
                let before = files.len();
                walk_dir(path, &mut files, &mut skipped);
                if files.len() == before {
                    skipped.push(skip(
                        input,
                        "directory holds no *.fits or *.fits.gz files".to_string(),
                    ));
                }
            }
            Ok(_) => files.push(path.to_path_buf()),
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound && input.contains(['*', '?', '[']) =>
            {
                match glob::glob(input) {
                    Err(e) => skipped.push(skip(input, format!("bad glob pattern: {e}"))),
                    Ok(paths) => {
                        let before = files.len();
                        for entry in paths {
                            match entry {
                                Ok(p) if p.is_dir() => walk_dir(&p, &mut files, &mut skipped),
                                Ok(p) => files.push(p),
                                Err(e) => skipped.push(skip(
                                    &e.path().display().to_string(),
                                    e.error().to_string(),
                                )),
                            }
                        }
                        if files.len() == before {
                            skipped.push(skip(input, "glob pattern matched no files".to_string()));
                        }
                    }
                }
            }
            Err(e) => skipped.push(skip(input, format!("cannot read: {e}"))),
        }
    }
    let mut seen = HashSet::new();
    files.retain(|p| seen.insert(std::fs::canonicalize(p).unwrap_or_else(|_| p.clone())));
    (files, skipped)
}

fn is_maps_name(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    name.ends_with(".fits") || name.ends_with(".fits.gz")
}

fn walk_dir(dir: &Path, files: &mut Vec<PathBuf>, skipped: &mut Vec<SkippedInput>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            skipped.push(SkippedInput {
                path: dir.display().to_string(),
                reason: format!("cannot read directory: {e}"),
            });
            return;
        }
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    // Sorted so the discovered order (and hence "first" among duplicates) is reproducible.
    paths.sort();
    for path in paths {
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => walk_dir(&path, files, skipped),
            Ok(_) if is_maps_name(&path) => files.push(path),
            Ok(_) => {}
            Err(e) if is_maps_name(&path) => skipped.push(SkippedInput {
                path: path.display().to_string(),
                reason: format!("cannot read: {e}"),
            }),
            Err(_) => {}
        }
    }
}

/// The directory a shard's dataset goes to: `out` for the whole survey, else
/// `out/part-i-of-n`.
pub fn shard_dir(out: &Path, shard: Shard) -> PathBuf {
    if shard.count <= 1 {
        out.to_path_buf()
    } else {
        out.join(shard.part_name())
    }
}

/// Ingests `inputs` into a dataset at [`shard_dir`]`(out, shard)`. Bad inputs are skipped and
/// reported; only a failure to write the dataset is an error. When no input of this shard
/// could be ingested but some were skipped, only `skipped.csv` is written.
pub fn ingest(
    inputs: &[String],
    out: &Path,
    options: &IngestOptions,
    progress: &dyn Progress,
) -> Result<IngestReport, DataError> {
    let out_dir = shard_dir(out, options.shard);
    for dir in [out, out_dir.as_path()] {
        crate::artifact::check_output_dir(dir, crate::artifact::ArtifactKind::Dataset)?;
    }
    let (files, input_skips) = collect_inputs(inputs);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(options.jobs)
        .build()
        .map_err(|e| {
            DataError::Invalid(format!("cannot start {} worker threads: {e}", options.jobs))
        })?;
    progress.start("ingest", files.len() as u64);
    let outcomes: Vec<Outcome> = pool.install(|| {
        files
            .par_iter()
            .map(|path| {
                let outcome = ingest_one(path, options);
                progress.advance(1);
                outcome
            })
            .collect()
    });
    progress.finish();

    let mut galaxies = Vec::new();
    let mut sources = Vec::new();
    let mut notices = Vec::new();
    let mut skipped: Vec<SkippedInput> = input_skips
        .into_iter()
        .filter(|s| {
            options
                .shard
                .contains(&plateifu_from_file_name(Path::new(&s.path)))
        })
        .collect();
    for outcome in outcomes {
        match outcome {
            Outcome::Ingested(galaxy, source, notes) => {
                notices.extend(notes.into_iter().map(|n| format!("{}: {n}", source.path)));
                sources.push(source);
                galaxies.push(*galaxy);
            }
            Outcome::Skipped(skip, source) => {
                sources.extend(source);
                skipped.push(skip);
            }
            Outcome::OtherShard => {}
        }
    }
    // Tensor order: by plateifu, then source path, so re-runs give identical bytes whatever
    // order the workers finished in.
    galaxies.sort_by(|a, b| {
        (&a.record.plateifu, &a.record.source).cmp(&(&b.record.plateifu, &b.record.source))
    });
    let mut kept: Vec<Galaxy> = Vec::with_capacity(galaxies.len());
    for galaxy in galaxies {
        match kept.last() {
            Some(prev) if prev.record.plateifu == galaxy.record.plateifu => {
                skipped.push(SkippedInput {
                    path: galaxy.record.source.clone(),
                    reason: format!(
                        "duplicate plateifu {} (already ingested from {})",
                        galaxy.record.plateifu, prev.record.source
                    ),
                })
            }
            _ => kept.push(galaxy),
        }
    }
    skipped.sort_by(|a, b| (&a.path, &a.reason).cmp(&(&b.path, &b.reason)));
    sources.sort_by(|a, b| a.path.cmp(&b.path));
    let bytes_read = sources.iter().map(|s| s.bytes).sum();
    let n_files = sources.len();

    if kept.is_empty() && !skipped.is_empty() {
        std::fs::create_dir_all(&out_dir).map_err(|e| DataError::Write {
            path: out_dir.clone(),
            reason: e.to_string(),
        })?;
        dataset::write_atomic(
            &out_dir.join(dataset::SKIPPED_FILE),
            dataset::skipped_csv(&skipped).as_bytes(),
        )?;
        return Ok(IngestReport {
            out_dir,
            n_ingested: 0,
            n_files,
            skipped,
            notices,
            bytes_read,
            manifest_hash: None,
        });
    }

    let size = options.preprocess.size;
    let mut cubes = Cubes::zeros(kept.len(), options.lines.len(), size);
    for (i, galaxy) in kept.iter().enumerate() {
        let (x, w) = cubes.galaxy_mut(i);
        x.copy_from_slice(&galaxy.x);
        w.copy_from_slice(&galaxy.w);
    }
    let records: Vec<GalaxyRecord> = kept.into_iter().map(|g| g.record).collect();
    let reference = if options.lines.position(REFERENCE_LINE).is_some() {
        REFERENCE_LINE
    } else {
        "sum-of-lines"
    };
    let manifest = Manifest {
        format: dataset::FORMAT.to_string(),
        oddcube_version: env!("CARGO_PKG_VERSION").to_string(),
        lines: options.lines.clone(),
        size,
        n_galaxies: records.len(),
        mask_policy: options.preprocess.mask_policy,
        normalisation: Normalisation {
            method: "percentile-of-reference".to_string(),
            reference: reference.to_string(),
            percentile: SCALE_PERCENTILE,
            stretch: options.preprocess.stretch,
        },
        shard: options.shard,
        sources,
        n_skipped: skipped.len(),
        created_by: options.created_by.clone(),
    };
    let hash = Dataset::write(&out_dir, &cubes, &records, &manifest, &skipped)?;
    Ok(IngestReport {
        out_dir,
        n_ingested: records.len(),
        n_files,
        skipped,
        notices,
        bytes_read,
        manifest_hash: Some(hash),
    })
}

fn ingest_one(path: &Path, options: &IngestOptions) -> Outcome {
    let path_text = path.display().to_string();
    let skip = |e: DataError, source: Option<SourceFile>| {
        Outcome::Skipped(
            SkippedInput {
                path: path_text.clone(),
                reason: e.reason(),
            },
            source,
        )
    };
    let fallback_in_shard = options.shard.contains(&plateifu_from_file_name(path));
    let raw = match read_file(path) {
        Ok(raw) => raw,
        Err(e) if fallback_in_shard => return skip(e, None),
        Err(_) => return Outcome::OtherShard,
    };
    let source = SourceFile {
        path: path_text.clone(),
        bytes: raw.len() as u64,
        xxh3: dataset::hash_hex(&raw),
    };
    let maps = match MapsFile::from_bytes(raw, path) {
        Ok(maps) => maps,
        Err(e) if fallback_in_shard => return skip(e, Some(source)),
        Err(_) => return Outcome::OtherShard,
    };
    if !options.shard.contains(&maps.meta.plateifu) {
        return Outcome::OtherShard;
    }
    let mut notices = maps.meta.notices.clone();
    let dapqual = quality::header_mask(maps.meta.dapqual, "DAPQUAL", &mut notices);
    let drp3qual = quality::header_mask(maps.meta.drp3qual, "DRP3QUAL", &mut notices);
    if quality::is_critical(dapqual, drp3qual) {
        let flags = quality_text(dapqual, drp3qual);
        if options.skip_critical {
            return Outcome::Skipped(
                SkippedInput {
                    path: path_text,
                    reason: format!("flagged CRITICAL ({flags}); left out by --skip-critical"),
                },
                Some(source),
            );
        }
        notices.push(format!(
            "flagged CRITICAL ({flags}); kept and marked critical (--skip-critical leaves such galaxies out)"
        ));
    }
    let result = maps
        .line_indices(&options.lines)
        .and_then(|idx| preprocess(&maps, &idx, &options.preprocess));
    let pre = match result {
        Ok(pre) => pre,
        Err(e) => return skip(e, Some(source)),
    };
    let meta = &maps.meta;
    let record = GalaxyRecord {
        plateifu: meta.plateifu.clone(),
        mangaid: meta.mangaid.clone().unwrap_or_default(),
        ra: meta.ra.unwrap_or(f64::NAN),
        dec: meta.dec.unwrap_or(f64::NAN),
        z: meta.z.unwrap_or(f64::NAN),
        psf_fwhm: meta.psf_fwhm.unwrap_or(f64::NAN),
        ifu_size: meta.ifu_size.unwrap_or(0),
        grid_size: u32::try_from(maps.nx).unwrap_or(u32::MAX),
        box_size: u32::try_from(pre.box_size).unwrap_or(u32::MAX),
        scale: pre.scale,
        n_good: u32::try_from(pre.n_good).unwrap_or(u32::MAX),
        source: path_text,
        notes: if meta.plateifu_from_filename {
            "plateifu-from-filename".to_string()
        } else {
            String::new()
        },
        dapqual,
        drp3qual,
        daptype: meta.daptype.clone().unwrap_or_default(),
    };
    Outcome::Ingested(
        Box::new(Galaxy {
            record,
            x: pre.x,
            w: pre.w,
        }),
        source,
        notices,
    )
}

/// `DAPQUAL CRITICAL|…; DRP3QUAL …` for the masks that have bits set.
fn quality_text(dapqual: u32, drp3qual: u32) -> String {
    [
        ("DAPQUAL", quality::dapqual_names(dapqual)),
        ("DRP3QUAL", quality::drp3qual_names(drp3qual)),
    ]
    .into_iter()
    .filter(|(_, names)| !names.is_empty())
    .map(|(key, names)| format!("{key} {names}"))
    .collect::<Vec<_>>()
    .join("; ")
}
