//! "Galaxies like this one" (`oddcube similar`): resolving the query (a galaxy of the catalogue
//! by plate-ifu, MaNGA-ID or file name, with suggestions when it is unknown, a latent vector from a file, or a new MAPS file
//! encoded with the results' model), the exact latent-space search ([`search`]), and the result
//! rows in table / CSV / JSON form.

use std::path::Path;

use oddcube_data::Cubes;
use oddcube_data::csv;
use oddcube_data::maps::MapsFile;
use oddcube_data::preprocess::{PreprocessConfig, preprocess};

use crate::error::{Error, Result};
use crate::knn::{LatentView, Metric, Neighbour, nearest};
use crate::provenance::dataset_manifest;
use crate::results::{CATALOG_PARQUET, Catalog, ResultsManifest, invalid};
use crate::score::Autoencoder;

/// Levenshtein distance between two strings (by characters).
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        current[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitute.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

/// Up to `max` names closest to `query`: by edit distance, ties broken by a longer common prefix
/// (plate-ifus share their plate), then alphabetically. Only names within half the query's
/// length in edit distance (at least 2), or sharing a prefix of at least 4 characters, are
/// offered.
pub fn suggestions(names: &[String], query: &str, max: usize) -> Vec<String> {
    let common_prefix = |a: &str| {
        a.chars()
            .zip(query.chars())
            .take_while(|(x, y)| x == y)
            .count()
    };
    let limit = (query.chars().count() / 2).max(2);
    let mut scored: Vec<(usize, usize, &String)> = names
        .iter()
        .map(|n| (edit_distance(n, query), common_prefix(n), n))
        .filter(|(d, p, _)| *d <= limit || *p >= 4)
        .collect();
    scored.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)).then(a.2.cmp(b.2)));
    scored.dedup_by(|a, b| a.2 == b.2);
    scored
        .into_iter()
        .take(max)
        .map(|(_, _, n)| n.clone())
        .collect()
}

/// Row of `plateifu` in the catalogue, or an error that lists close matches.
pub fn resolve_plateifu(catalog: &Catalog, plateifu: &str) -> Result<usize> {
    let names = catalog
        .str("plateifu")
        .ok_or_else(|| Error::Empty("catalogue column plateifu".to_string()))?;
    if let Some(row) = names.iter().position(|p| p == plateifu) {
        return Ok(row);
    }
    let close = suggestions(names, plateifu, 5);
    let hint = if close.is_empty() {
        format!("no similar name among the {} galaxies", names.len())
    } else {
        format!("did you mean {}?", close.join(", "))
    };
    Err(Error::InvalidParameter {
        name: "plateifu".to_string(),
        value: plateifu.to_string(),
        reason: format!("not in the catalogue; {hint}"),
    })
}

/// The plate-ifu a MaNGA file name carries: `manga-7815-3702-MAPS-HYB10-….fits.gz`,
/// `manga-7802-12702`, a path to such a file, or `7815-3702-LOGCUBE` give `7815-3702`. `None`
/// when the name (after an optional directory and `manga-` prefix) does not start with two
/// dash-separated numbers.
pub fn plateifu_from_file_name(name: &str) -> Option<String> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let base = base
        .get(..6)
        .filter(|p| p.eq_ignore_ascii_case("manga-"))
        .map_or(base, |_| &base[6..]);
    let mut parts = base.split(['-', '.']);
    let (plate, ifu) = (parts.next()?, parts.next()?);
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (numeric(plate) && numeric(ifu)).then(|| format!("{plate}-{ifu}"))
}

/// Row of the galaxy `id` names in the catalogue. `id` may be a plate-ifu (`7815-3702`), a
/// MaNGA-ID (`1-109997`, the `mangaid` column) or a MaNGA file name or prefix
/// (`manga-7815-3702-MAPS-HYB10-MILESHC-MASTARSSP.fits.gz`, `manga-7802-12702`), tried in that
/// order. A MaNGA-ID observed more than once is an error that lists its plate-ifus; an unknown
/// `id` is an error that says what it was tried as and suggests close names.
pub fn resolve_galaxy(catalog: &Catalog, id: &str) -> Result<usize> {
    let id = id.trim();
    let plateifus = catalog
        .str("plateifu")
        .ok_or_else(|| Error::Empty("catalogue column plateifu".to_string()))?;
    if let Some(row) = plateifus.iter().position(|p| p == id) {
        return Ok(row);
    }
    let mangaids = catalog.str("mangaid");
    if let Some(ids) = mangaids {
        let rows: Vec<usize> = (0..ids.len()).filter(|&i| ids[i] == id).collect();
        match rows[..] {
            [row] => return Ok(row),
            [] => {}
            _ => {
                let names: Vec<&str> = rows.iter().map(|&i| plateifus[i].as_str()).collect();
                return Err(Error::InvalidParameter {
                    name: "galaxy".to_string(),
                    value: id.to_string(),
                    reason: format!(
                        "MaNGA-ID {id} was observed {} times: {}; give one plate-ifu",
                        rows.len(),
                        names.join(", ")
                    ),
                });
            }
        }
    }
    let from_name = plateifu_from_file_name(id).filter(|p| p != id);
    if let Some(p) = &from_name
        && let Some(row) = plateifus.iter().position(|q| q == p)
    {
        return Ok(row);
    }
    let mut tried = vec![format!("a plate-ifu ({id})")];
    if mangaids.is_some() {
        tried.push(format!("a MaNGA-ID ({id})"));
    }
    if let Some(p) = &from_name {
        tried.push(format!("a file name (plate-ifu {p})"));
    }
    let key = from_name.as_deref().unwrap_or(id);
    let mut close = suggestions(plateifus, key, 5);
    if let Some(ids) = mangaids {
        let ids: Vec<String> = ids.iter().filter(|m| !m.is_empty()).cloned().collect();
        close.extend(suggestions(&ids, id, 5 - close.len().min(5)));
    }
    let hint = if close.is_empty() {
        format!("no similar name among the {} galaxies", plateifus.len())
    } else {
        format!("did you mean {}?", close.join(", "))
    };
    let file_hint = if std::path::Path::new(id).is_file() {
        "; to search with a MAPS file that is not in the catalogue, use --maps FILE"
    } else {
        ""
    };
    Err(Error::InvalidParameter {
        name: "galaxy".to_string(),
        value: id.to_string(),
        reason: format!(
            "not in the catalogue; tried it as {}; {hint}{file_hint}",
            tried.join(", as ")
        ),
    })
}

/// Reads one latent vector of dimension `dim` from `path`: a `.npy` file (little-endian f4 or
/// f8, shape `(D,)` or `(1, D)`), or a text file of `D` numbers separated by whitespace or commas.
pub fn read_vector(path: &Path, dim: usize) -> Result<Vec<f32>> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let values = if bytes.starts_with(b"\x93NUMPY") {
        parse_npy_vector(path, &bytes)?
    } else {
        parse_text_vector(path, &bytes)?
    };
    if values.len() != dim {
        return Err(invalid(
            path,
            format!(
                "holds {} numbers, the latent space has D = {dim}",
                values.len()
            ),
        ));
    }
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(invalid(path, format!("value #{i} is not finite")));
    }
    Ok(values)
}

fn parse_text_vector(path: &Path, bytes: &[u8]) -> Result<Vec<f32>> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| invalid(path, "neither a .npy file nor UTF-8 text"))?;
    text.split(|c: char| c.is_whitespace() || c == ',')
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<f32>()
                .map_err(|_| invalid(path, format!("{t:?} is not a number")))
        })
        .collect()
}

fn parse_npy_vector(path: &Path, bytes: &[u8]) -> Result<Vec<f32>> {
    let (len_size, header_len) = match bytes.get(6) {
        Some(1) if bytes.len() >= 10 => (2, u16::from_le_bytes([bytes[8], bytes[9]]) as usize),
        Some(2 | 3) if bytes.len() >= 12 => (
            4,
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
        ),
        _ => return Err(invalid(path, "unsupported or truncated .npy header")),
    };
    let start = 8 + len_size + header_len;
    let header = bytes
        .get(8 + len_size..start)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| invalid(path, "truncated .npy header"))?;
    let compact: String = header.chars().filter(|c| !c.is_whitespace()).collect();
    let width = if compact.contains("'descr':'<f4'") {
        4
    } else if compact.contains("'descr':'<f8'") {
        8
    } else {
        return Err(invalid(
            path,
            "the .npy dtype must be little-endian float32 or float64",
        ));
    };
    if compact.contains("'fortran_order':True") {
        return Err(invalid(path, "Fortran-ordered .npy is not supported"));
    }
    let shape = compact
        .split("'shape':(")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| invalid(path, ".npy header has no shape"))?;
    let dims: Vec<usize> = shape
        .split(',')
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect();
    let count = match dims[..] {
        [d] | [1, d] => d,
        _ => {
            return Err(invalid(
                path,
                format!("shape ({shape}) is not one vector: expected (D,) or (1, D)"),
            ));
        }
    };
    let data = bytes
        .get(start..start + count * width)
        .ok_or_else(|| invalid(path, ".npy data is truncated"))?;
    Ok(if width == 4 {
        data.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    } else {
        data.chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect()
    })
}

/// One result of a similarity search, with the neighbour's catalogue context.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SimilarRow {
    /// 1 = nearest.
    pub position: usize,
    /// The neighbour's plate-ifu.
    pub plateifu: String,
    /// Its latent distance to the query.
    pub distance: f32,
    /// Its catalogue row.
    pub row: usize,
    /// Its anomaly rank in the catalogue (0 when not finalised).
    pub rank: u32,
    /// Its chi2 score (NaN when absent).
    pub chi2: f64,
}

/// The `k` nearest catalogue galaxies to `query` (excluding row `exclude`), with context.
pub fn similar(
    catalog: &Catalog,
    view: &LatentView<'_>,
    query: &[f32],
    k: usize,
    metric: Metric,
    exclude: Option<usize>,
) -> Result<Vec<SimilarRow>> {
    crate::error::check_len("catalogue rows", catalog.len(), view.n())?;
    let names = catalog
        .str("plateifu")
        .ok_or_else(|| Error::Empty("catalogue column plateifu".to_string()))?;
    let neighbours: Vec<Neighbour> = nearest(view, query, k, metric, exclude)?;
    Ok(neighbours
        .iter()
        .enumerate()
        .map(|(i, nb)| SimilarRow {
            position: i + 1,
            plateifu: names[nb.index].clone(),
            distance: nb.distance,
            row: nb.index,
            rank: catalog.u32("rank").map_or(0, |r| r[nb.index]),
            chi2: catalog.f64("chi2").map_or(f64::NAN, |c| c[nb.index]),
        })
        .collect())
}

/// Output format of `oddcube similar`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// Aligned text columns.
    Table,
    /// CSV with a header row.
    Csv,
    /// A JSON array of objects.
    Json,
}

impl std::str::FromStr for OutputFormat {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "table" => Ok(OutputFormat::Table),
            "csv" => Ok(OutputFormat::Csv),
            "json" => Ok(OutputFormat::Json),
            _ => Err(Error::InvalidParameter {
                name: "format".to_string(),
                value: s.to_string(),
                reason: "expected table, csv or json".to_string(),
            }),
        }
    }
}

/// Renders result rows in `format` (ending with a newline).
pub fn format_rows(rows: &[SimilarRow], format: OutputFormat) -> String {
    match format {
        OutputFormat::Json => {
            let mut s = serde_json::to_string_pretty(rows).unwrap_or_else(|_| "[]".to_string());
            s.push('\n');
            s
        }
        OutputFormat::Csv => {
            let mut s = String::from("position,plateifu,distance,rank,chi2\n");
            for r in rows {
                s.push_str(&format!(
                    "{},{},{},{},{}\n",
                    r.position,
                    csv::quote(&r.plateifu),
                    r.distance,
                    r.rank,
                    r.chi2
                ));
            }
            s
        }
        OutputFormat::Table => {
            let width = rows
                .iter()
                .map(|r| r.plateifu.chars().count())
                .max()
                .unwrap_or(8)
                .max(8);
            let mut s = format!(
                "{:>3}  {:<width$}  {:>10}  {:>6}  {:>10}\n",
                "#", "plateifu", "distance", "rank", "chi2"
            );
            for r in rows {
                s.push_str(&format!(
                    "{:>3}  {:<width$}  {:>10.5}  {:>6}  {:>10.4}\n",
                    r.position, r.plateifu, r.distance, r.rank, r.chi2
                ));
            }
            s
        }
    }
}

/// What to search neighbours of.
pub enum Query<'a> {
    /// A galaxy of the catalogue, by plate-ifu, MaNGA-ID or file name (see [`resolve_galaxy`];
    /// suggestions when unknown).
    Galaxy(&'a str),
    /// A latent vector from a file (see [`read_vector`]).
    Vector(&'a Path),
    /// A latent vector in memory (its length must be the results' latent dimension).
    Latent(&'a [f32]),
    /// A MAPS file, preprocessed as the scored dataset was and encoded with `model`.
    Maps {
        /// The MAPS file.
        path: &'a Path,
        /// The results' model (see [`crate::provenance::model_dir`]).
        model: &'a dyn Autoencoder,
        /// The dataset whose preprocessing settings apply; `None`: the one scored.
        data: Option<&'a Path>,
    },
}

/// The `k` galaxies of the RESULTS directory `dir` nearest to `query` in latent space under
/// `metric`. The query galaxy itself — by plate-ifu, or a MAPS file of a catalogue galaxy — is
/// not its own neighbour.
pub fn search(dir: &Path, query: Query<'_>, k: usize, metric: Metric) -> Result<Vec<SimilarRow>> {
    let manifest = ResultsManifest::read(dir)?;
    let catalog = Catalog::read_parquet(&dir.join(CATALOG_PARQUET))?;
    let latents = crate::results::open_latents(dir, &manifest, catalog.len())?;
    let view = latents.view();
    let (vector, exclude) = match query {
        Query::Galaxy(id) => {
            let row = resolve_galaxy(&catalog, id)?;
            let vector = view
                .row(row)
                .ok_or_else(|| invalid(dir, format!("latent row {row} out of range")))?
                .to_vec();
            (vector, Some(row))
        }
        Query::Vector(path) => (read_vector(path, latents.dim())?, None),
        Query::Latent(vector) => {
            if vector.len() != latents.dim() {
                return Err(Error::InvalidParameter {
                    name: "latent vector".to_string(),
                    value: format!("{} values", vector.len()),
                    reason: format!("the results' latent dimension is {}", latents.dim()),
                });
            }
            (vector.to_vec(), None)
        }
        Query::Maps { path, model, data } => {
            let (vector, plateifu) = encode_maps(path, &manifest, data, model)?;
            (vector, catalog.row_of(&plateifu))
        }
    };
    similar(&catalog, &view, &vector, k, metric, exclude)
}

/// Preprocesses the MAPS file `path` exactly as the scored dataset was (its lines, grid, mask
/// policy and stretch) and encodes it with `model`. Returns the latent vector and the file's
/// plate-ifu.
pub fn encode_maps(
    path: &Path,
    manifest: &ResultsManifest,
    data: Option<&Path>,
    model: &dyn Autoencoder,
) -> Result<(Vec<f32>, String)> {
    let (_, dataset) = dataset_manifest(manifest, data)?;
    let maps = MapsFile::read(path)?;
    let indices = maps.line_indices(&dataset.lines)?;
    let config = PreprocessConfig {
        size: dataset.size,
        mask_policy: dataset.mask_policy,
        stretch: dataset.normalisation.stretch,
    };
    let pre = preprocess(&maps, &indices, &config)?;
    let cubes = Cubes {
        n: 1,
        n_lines: dataset.lines.len(),
        size: dataset.size,
        x: pre.x,
        w: pre.w,
    };
    let (z, _) = model
        .encode_reconstruct(&cubes)
        .map_err(|reason| invalid(path, format!("encoding: {reason}")))?;
    if z.len() != manifest.latent_dim {
        return Err(invalid(
            path,
            format!(
                "the model gives a latent dimension of {}, the results have {}",
                z.len(),
                manifest.latent_dim
            ),
        ));
    }
    Ok((z, maps.meta.plateifu.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::Column;

    #[test]
    fn edit_distance_and_suggestions() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("8485-1901", "8485-1901"), 0);
        let names: Vec<String> = [
            "8485-1901",
            "8485-1902",
            "8485-12701",
            "7443-12703",
            "10001-3701",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let s = suggestions(&names, "8485-1910", 3);
        assert_eq!(s[..2], ["8485-1901".to_string(), "8485-1902".to_string()]);
        assert!(suggestions(&names, "zzzzzzzzzzzzzzzzzzzzzz", 3).is_empty());
        let mut catalog = Catalog::default();
        catalog.push("plateifu", Column::Str(names)).unwrap();
        assert_eq!(resolve_plateifu(&catalog, "7443-12703").unwrap(), 3);
        let err = resolve_plateifu(&catalog, "7443-1270")
            .unwrap_err()
            .to_string();
        assert!(err.contains("did you mean 7443-12703"), "{err}");
    }

    #[test]
    fn file_names_give_their_plate_ifu() {
        for (name, want) in [
            (
                "manga-7815-3702-MAPS-HYB10-MILESHC-MASTARSSP.fits.gz",
                Some("7815-3702"),
            ),
            ("manga-7802-12702", Some("7802-12702")),
            ("MANGA-7802-12702", Some("7802-12702")),
            ("maps/sub/manga-8485-1901-MAPS.fits", Some("8485-1901")),
            ("7443-12703-LOGCUBE", Some("7443-12703")),
            ("7443-12703", Some("7443-12703")),
            ("manga-7443", None),
            ("tiny-test-MAPS.fits.gz", None),
            ("", None),
        ] {
            assert_eq!(plateifu_from_file_name(name).as_deref(), want, "{name}");
        }
    }

    #[test]
    fn any_identifier_resolves_to_its_galaxy() {
        let mut catalog = Catalog::default();
        let strings = |v: &[&str]| Column::Str(v.iter().map(|s| s.to_string()).collect());
        catalog
            .push(
                "plateifu",
                strings(&["7815-3702", "7802-12702", "8485-1901", "8486-1901"]),
            )
            .unwrap();
        catalog
            .push("mangaid", strings(&["1-109997", "1-55555", "12-1", "12-1"]))
            .unwrap();
        let row = |id: &str| resolve_galaxy(&catalog, id);
        assert_eq!(row("7815-3702").unwrap(), 0);
        assert_eq!(row(" 7802-12702 ").unwrap(), 1);
        assert_eq!(row("1-109997").unwrap(), 0);
        assert_eq!(row("1-55555").unwrap(), 1);
        assert_eq!(row("manga-7802-12702").unwrap(), 1);
        assert_eq!(
            row("manga-7815-3702-MAPS-HYB10-MILESHC-MASTARSSP.fits.gz").unwrap(),
            0
        );
        assert_eq!(row("/data/maps/manga-8485-1901-LOGCUBE.fits").unwrap(), 2);
        // One MaNGA-ID, two observations: ambiguous, both named.
        let err = row("12-1").unwrap_err().to_string();
        assert!(
            err.contains("8485-1901") && err.contains("8486-1901") && err.contains("plate-ifu"),
            "{err}"
        );
        // Unknown: what was tried, and close names.
        let err = row("manga-7815-3703-MAPS.fits.gz").unwrap_err().to_string();
        assert!(
            err.contains("a plate-ifu")
                && err.contains("a MaNGA-ID")
                && err.contains("a file name (plate-ifu 7815-3703)")
                && err.contains("did you mean 7815-3702"),
            "{err}"
        );
        let err = row("1-109998").unwrap_err().to_string();
        assert!(
            err.contains("did you mean") && err.contains("1-109997"),
            "{err}"
        );
        // Without a mangaid column, only plate-ifus and file names are tried.
        let mut plain = Catalog::default();
        plain.push("plateifu", strings(&["7815-3702"])).unwrap();
        let err = resolve_galaxy(&plain, "zz").unwrap_err().to_string();
        assert!(!err.contains("MaNGA-ID"), "{err}");
    }

    #[test]
    fn vectors_from_npy_and_text() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("v.txt");
        std::fs::write(&text, "1.5, -2\n3e-1\n").unwrap();
        assert_eq!(read_vector(&text, 3).unwrap(), vec![1.5, -2.0, 0.3]);
        assert!(
            read_vector(&text, 4)
                .unwrap_err()
                .to_string()
                .contains("D = 4")
        );
        std::fs::write(&text, "1 two 3").unwrap();
        assert!(
            read_vector(&text, 3)
                .unwrap_err()
                .to_string()
                .contains("\"two\"")
        );
        // A 1-D float64 array as numpy.save writes it.
        let dict = "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }";
        let mut header = dict.to_string();
        while !(10 + header.len() + 1).is_multiple_of(64) {
            header.push(' ');
        }
        header.push('\n');
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        for v in [1.0f64, 2.0, -4.0] {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        let npy = dir.path().join("v.npy");
        std::fs::write(&npy, &bytes).unwrap();
        assert_eq!(read_vector(&npy, 3).unwrap(), vec![1.0, 2.0, -4.0]);
        // A [1, D] f32 latents file from this crate's writer.
        crate::latents::write_npy_f32(&npy, &[0.5, 0.25], 1, 2).unwrap();
        assert_eq!(read_vector(&npy, 2).unwrap(), vec![0.5, 0.25]);
        crate::latents::write_npy_f32(&npy, &[0.5, 0.25, 1.0, 1.0], 2, 2).unwrap();
        assert!(
            read_vector(&npy, 2)
                .unwrap_err()
                .to_string()
                .contains("not one vector")
        );
    }

    #[test]
    fn similar_rows_and_formats() {
        let mut catalog = Catalog::default();
        catalog
            .push(
                "plateifu",
                Column::Str(vec!["a".into(), "b".into(), "c".into()]),
            )
            .unwrap();
        catalog
            .push("chi2", Column::F64(vec![1.0, 2.0, 3.0]))
            .unwrap();
        catalog.push("rank", Column::U32(vec![3, 2, 1])).unwrap();
        let latents = [0.0f32, 0.0, 1.0, 0.0, 5.0, 0.0];
        let view = LatentView::new(&latents, 3, 2).unwrap();
        let rows = similar(&catalog, &view, &[0.0, 0.0], 2, Metric::Euclidean, Some(0)).unwrap();
        assert_eq!(
            rows.iter().map(|r| r.plateifu.as_str()).collect::<Vec<_>>(),
            ["b", "c"]
        );
        assert_eq!(
            (rows[1].distance, rows[1].rank, rows[1].chi2),
            (5.0, 1, 3.0)
        );
        let csv = format_rows(&rows, OutputFormat::Csv);
        assert_eq!(csv.lines().nth(1), Some("1,b,1,2,2"));
        let json: serde_json::Value =
            serde_json::from_str(&format_rows(&rows, OutputFormat::Json)).unwrap();
        assert_eq!(json[1]["plateifu"], "c");
        assert!(format_rows(&rows, OutputFormat::Table).lines().count() == 3);
        assert!("yaml".parse::<OutputFormat>().is_err());
    }

    #[test]
    fn search_by_latent_vector_excludes_nothing_and_checks_its_length() {
        let dir = tempfile::tempdir().unwrap();
        let mut catalog = Catalog::default();
        catalog
            .push(
                "plateifu",
                Column::Str(vec!["a".into(), "b".into(), "c".into()]),
            )
            .unwrap();
        let latents = [0.0f32, 0.0, 1.0, 0.0, 5.0, 0.0];
        let manifest = ResultsManifest {
            latent_dim: 2,
            n_galaxies: 3,
            ..crate::pipeline::manifest_for(&crate::score::ScoreSettings::default())
        };
        crate::results::Results::write(dir.path(), &manifest, &catalog, &latents).unwrap();
        // A vector equal to galaxy b's finds b itself first (a vector query excludes no row).
        let rows = search(dir.path(), Query::Latent(&[1.0, 0.0]), 2, Metric::Euclidean).unwrap();
        let names: Vec<&str> = rows.iter().map(|r| r.plateifu.as_str()).collect();
        assert_eq!(names, ["b", "a"]);
        assert_eq!(rows[0].distance, 0.0);
        let err = search(dir.path(), Query::Latent(&[1.0]), 2, Metric::Euclidean)
            .unwrap_err()
            .to_string();
        assert!(err.contains("latent dimension is 2"), "{err}");
        // Latents whose width disagrees with the manifest are refused, naming the file.
        let path = dir.path().join(crate::results::LATENTS_FILE);
        crate::latents::write_npy_f32(&path, &[0.0, 1.0, 5.0], 3, 1).unwrap();
        let err = search(dir.path(), Query::Galaxy("a"), 1, Metric::Euclidean)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("latents.npy") && err.contains("manifest says 2"),
            "{err}"
        );
    }
}
