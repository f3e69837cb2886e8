//! The `latents.npy` artifact: writing a `[N, D]` f32 matrix in NumPy's .npy format and opening
//! one read-only, memory-mapped where possible, so a million latents cost no load time.
//!
//! Format written: version 1.0, `descr '<f4'`, C order, header padded so the data starts on a
//! 64-byte boundary (what NumPy itself does). Read: versions 1.0, 2.0 and 3.0 of the same layout.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;

use memmap2::Mmap;

use crate::error::{Error, Result};
use crate::knn::LatentView;

const MAGIC: &[u8; 6] = b"\x93NUMPY";

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn npy_error(path: &Path, reason: impl Into<String>) -> Error {
    Error::Npy {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// The complete v1.0 header (magic through the newline) for an `[n, dim]` little-endian f32 array.
fn header_bytes(n: usize, dim: usize) -> Vec<u8> {
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({n}, {dim}), }}");
    // magic (6) + version (2) + header length (2) + dict + padding + '\n' ≡ 0 (mod 64).
    let unpadded = MAGIC.len() + 4 + dict.len() + 1;
    let padding = (64 - unpadded % 64) % 64;
    let header_len = dict.len() + padding + 1;
    let mut out = Vec::with_capacity(unpadded + padding);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    // A 2-D shape's dict is well under 65535 bytes, so the v1.0 u16 length always fits.
    out.extend_from_slice(&(header_len as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.extend(std::iter::repeat_n(b' ', padding));
    out.push(b'\n');
    out
}

/// Writes `data` as an `[n, dim]` f32 .npy file, atomically: the bytes go to
/// `<name>.tmp-<pid>` in the same directory, are fsynced, then renamed over `path`.
///
/// Errors if `data.len() != n·dim` or on I/O failure (the temporary file is removed).
pub fn write_npy_f32(path: &Path, data: &[f32], n: usize, dim: usize) -> Result<()> {
    if n.checked_mul(dim) != Some(data.len()) {
        return Err(Error::Shape {
            what: "latents".to_string(),
            len: data.len(),
            rows: n,
            cols: dim,
        });
    }
    oddcube_data::atomic::write_with(path, |file| {
        let mut out = BufWriter::with_capacity(1 << 20, file);
        out.write_all(&header_bytes(n, dim))?;
        for chunk in data.chunks(16_384) {
            let bytes: Vec<u8> = chunk.iter().flat_map(|v| v.to_le_bytes()).collect();
            out.write_all(&bytes)?;
        }
        out.flush()
    })
    .map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Parsed fields of an .npy header that matter here.
struct Header {
    n: usize,
    dim: usize,
    data_offset: usize,
}

/// Value text following `'key':` in a header dict, up to the next top-level comma or brace.
fn dict_value<'h>(dict: &'h str, key: &str) -> Option<&'h str> {
    let pattern = format!("'{key}':");
    let start = dict.find(&pattern)? + pattern.len();
    let rest = dict[start..].trim_start();
    let end = if rest.starts_with('(') {
        rest.find(')')? + 1
    } else {
        rest.find([',', '}'])?
    };
    Some(rest[..end].trim())
}

fn parse_header(path: &Path, bytes: &[u8]) -> Result<Header> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(npy_error(path, "not a .npy file (bad magic bytes)"));
    }
    let (len_size, header_len) = match bytes[6] {
        1 => (2, u16::from_le_bytes([bytes[8], bytes[9]]) as usize),
        2 | 3 if bytes.len() >= 12 => (
            4,
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
        ),
        v => {
            return Err(npy_error(
                path,
                format!("unsupported .npy format version {v}"),
            ));
        }
    };
    let data_offset = 8 + len_size + header_len;
    let dict = bytes
        .get(8 + len_size..data_offset)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| npy_error(path, "truncated or non-text .npy header"))?;
    let descr =
        dict_value(dict, "descr").ok_or_else(|| npy_error(path, "header has no 'descr'"))?;
    if descr != "'<f4'" {
        return Err(npy_error(
            path,
            format!("dtype {descr} is not little-endian float32 ('<f4')"),
        ));
    }
    if dict_value(dict, "fortran_order") != Some("False") {
        return Err(npy_error(
            path,
            "array is not in C order (fortran_order must be False)",
        ));
    }
    let shape =
        dict_value(dict, "shape").ok_or_else(|| npy_error(path, "header has no 'shape'"))?;
    let dims: Vec<usize> = shape
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| npy_error(path, format!("unreadable shape {shape}")))?;
    match dims[..] {
        [n, dim] => Ok(Header {
            n,
            dim,
            data_offset,
        }),
        _ => Err(npy_error(path, format!("shape {shape} is not 2-D [N, D]"))),
    }
}

/// Storage behind [`Latents`]: the mapped file when it can be read in place, else a copy.
#[derive(Debug)]
enum Storage {
    Mapped { map: Mmap, offset: usize },
    Owned(Vec<f32>),
}

/// An `[n, dim]` f32 latent matrix opened from a .npy file.
#[derive(Debug)]
pub struct Latents {
    storage: Storage,
    n: usize,
    dim: usize,
}

impl Latents {
    /// Opens `path` read-only. On a little-endian machine with a 4-byte-aligned data offset (every
    /// file NumPy or [`write_npy_f32`] writes) the data is memory-mapped, not read.
    ///
    /// The mapping assumes nobody truncates or rewrites the file while it is open; oddcube only
    /// ever replaces artifacts by rename, which leaves an open mapping intact.
    ///
    /// Errors name the file: missing, not .npy, not `<f4`, not 2-D, or the wrong size.
    pub fn open(path: &Path) -> Result<Latents> {
        let file = File::open(path).map_err(io_error(path))?;
        // SAFETY: the map is read-only and oddcube replaces files by rename, never in place, so the
        // bytes cannot change under us through oddcube; the doc above states the assumption.
        let map = unsafe { Mmap::map(&file) }.map_err(io_error(path))?;
        let header = parse_header(path, &map)?;
        let dim_ok = header.dim > 0;
        let expected = header
            .n
            .checked_mul(header.dim)
            .and_then(|v| v.checked_mul(4));
        let data_len = map.len().saturating_sub(header.data_offset);
        if !dim_ok || expected != Some(data_len) {
            return Err(npy_error(
                path,
                format!(
                    "shape ({}, {}) needs {:?} data bytes, file has {data_len}",
                    header.n, header.dim, expected
                ),
            ));
        }
        let in_place = cfg!(target_endian = "little") && header.data_offset % 4 == 0;
        let storage = if in_place {
            Storage::Mapped {
                map,
                offset: header.data_offset,
            }
        } else {
            let values = map[header.data_offset..]
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            Storage::Owned(values)
        };
        Ok(Latents {
            storage,
            n: header.n,
            dim: header.dim,
        })
    }

    /// Reads `path` fully into memory (for callers that need to modify the matrix).
    pub fn read(path: &Path) -> Result<Latents> {
        let mut bytes = Vec::new();
        File::open(path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(io_error(path))?;
        let header = parse_header(path, &bytes)?;
        let expected = header
            .n
            .checked_mul(header.dim)
            .and_then(|v| v.checked_mul(4));
        let data = bytes.get(header.data_offset..).unwrap_or(&[]);
        if header.dim == 0 || expected != Some(data.len()) {
            return Err(npy_error(
                path,
                format!(
                    "shape ({}, {}) needs {:?} data bytes, file has {}",
                    header.n,
                    header.dim,
                    expected,
                    data.len()
                ),
            ));
        }
        let values = data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Ok(Latents {
            storage: Storage::Owned(values),
            n: header.n,
            dim: header.dim,
        })
    }

    /// Number of latent vectors (rows).
    pub fn n(&self) -> usize {
        self.n
    }

    /// Latent dimension (columns).
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Whether the data is served straight from the memory-mapped file.
    pub fn is_mapped(&self) -> bool {
        matches!(self.storage, Storage::Mapped { .. })
    }

    /// The values, row-major.
    pub fn as_slice(&self) -> &[f32] {
        match &self.storage {
            Storage::Owned(v) => v,
            Storage::Mapped { map, offset } => {
                let bytes = &map[*offset..];
                // SAFETY: every bit pattern is a valid f32; `open` checked the offset is 4-aligned
                // (mmap bases are page-aligned) and the length is exactly n·dim·4, so the prefix
                // and suffix are empty and the middle is the whole array.
                let (prefix, values, suffix) = unsafe { bytes.align_to::<f32>() };
                debug_assert!(prefix.is_empty() && suffix.is_empty());
                values
            }
        }
    }

    /// A [`LatentView`] for search.
    pub fn view(&self) -> LatentView<'_> {
        LatentView::from_parts(self.as_slice(), self.n, self.dim)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_mapped_and_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("latents.npy");
        let data: Vec<f32> = (0..35).map(|i| i as f32 * 0.5 - 3.0).collect();
        write_npy_f32(&path, &data, 7, 5).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let offset = 10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!(offset % 64, 0);
        assert_eq!(bytes.len(), offset + 35 * 4);
        let latents = Latents::open(&path).unwrap();
        assert!(latents.is_mapped() || cfg!(target_endian = "big"));
        assert_eq!((latents.n(), latents.dim()), (7, 5));
        assert_eq!(latents.as_slice(), &data[..]);
        assert_eq!(latents.view().row(6).unwrap(), &data[30..35]);
        assert_eq!(Latents::read(&path).unwrap().as_slice(), &data[..]);
        // No temporary file left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn reads_numpy_style_v2_header_and_odd_spacing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v2.npy");
        let dict = "{'descr':'<f4','fortran_order':False,'shape':(2,2)}   \n";
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&[2, 0]);
        bytes.extend_from_slice(&(dict.len() as u32).to_le_bytes());
        bytes.extend_from_slice(dict.as_bytes());
        for v in [1.0f32, 2.0, 3.0, 4.0] {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        std::fs::write(&path, bytes).unwrap();
        let latents = Latents::open(&path).unwrap();
        assert_eq!(latents.as_slice(), &[1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn rejects_bad_files_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.npy");
        std::fs::write(&path, b"hello").unwrap();
        let err = Latents::open(&path).unwrap_err().to_string();
        assert!(err.contains("bad.npy") && err.contains("magic"), "{err}");
        // Wrong dtype.
        let mut header = header_bytes(1, 2);
        let pos = header.windows(3).position(|w| w == b"<f4").unwrap();
        header[pos..pos + 3].copy_from_slice(b"<f8");
        header.extend_from_slice(&[0u8; 16]);
        std::fs::write(&path, &header).unwrap();
        assert!(
            Latents::open(&path)
                .unwrap_err()
                .to_string()
                .contains("float32")
        );
        // Truncated data.
        let mut bytes = header_bytes(3, 2);
        bytes.extend_from_slice(&[0u8; 20]);
        std::fs::write(&path, &bytes).unwrap();
        assert!(
            Latents::open(&path)
                .unwrap_err()
                .to_string()
                .contains("data bytes")
        );
        assert!(Latents::read(&path).is_err());
        assert!(matches!(
            Latents::open(&dir.path().join("missing.npy")),
            Err(Error::Io { .. })
        ));
        assert!(write_npy_f32(&path, &[1.0; 5], 2, 2).is_err());
    }
}
