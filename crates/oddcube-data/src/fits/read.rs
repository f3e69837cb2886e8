//! FITS reading on `fitsrs`: gzip detection, the HDU list with header cards, and decoding of
//! image data units to physical values.
//!
//! `fitsrs` parses headers and walks the HDU chain (including BINTABLE heaps); the data of an
//! image HDU is then decoded here straight from the in-memory big-endian bytes, which is several
//! times faster than `fitsrs`'s per-pixel iterator (see [`FitsFile::read_f32_via_iterator`] and
//! the `ingest` benchmark for the measurement).

use std::cell::Cell;
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};
use std::sync::Once;

use fitsrs::card::Value;
use fitsrs::hdu::header::Bitpix;
use fitsrs::{Fits, HDU, Pixels};

use crate::error::DataError;

/// Largest inflated size accepted from a `.fits.gz` (a DR17 MAPS file inflates to ≤ 40 MB); a
/// cap keeps a corrupt or hostile file from exhausting memory.
pub const MAX_INFLATED_BYTES: u64 = 2 << 30;

/// The two magic bytes every gzip member starts with.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// What kind of header-data unit an HDU is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HduKind {
    /// The primary HDU (an image, often with NAXIS = 0).
    Primary,
    /// An IMAGE extension.
    Image,
    /// A BINTABLE extension (skipped by the MAPS reader).
    BinTable,
    /// A TABLE (ASCII table) extension (skipped by the MAPS reader).
    AsciiTable,
}

/// A header card value, with FITS's four value types.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum CardValue {
    /// Integer.
    Int(i64),
    /// Real number.
    Float(f64),
    /// Character string, trailing blanks removed (they are not significant in FITS).
    Str(String),
    /// Logical.
    Bool(bool),
}

/// One header-data unit: its header cards and where its data lie in the file.
#[derive(Debug, Clone)]
pub struct Hdu {
    /// Zero-based position in the file.
    pub index: usize,
    /// EXTNAME (trimmed), or `PRIMARY` for a primary HDU without one.
    pub name: String,
    /// Primary, image or table.
    pub kind: HduKind,
    /// BITPIX: 8, 16, 32, 64, −32 or −64.
    pub bitpix: i32,
    /// Axis lengths in row-major order (NAXISn first … NAXIS1 last), so a MAPS cube is
    /// `[channel][y][x]`. Empty when NAXIS = 0.
    pub shape: Vec<usize>,
    /// Value cards in header order (keyword, value); COMMENT/HISTORY/blank cards are left out.
    pub cards: Vec<(String, CardValue)>,
    data_offset: usize,
    data_len: usize,
}

impl Hdu {
    /// The value of a keyword, if present.
    pub fn card(&self, keyword: &str) -> Option<&CardValue> {
        self.cards
            .iter()
            .rev()
            .find(|(k, _)| k == keyword)
            .map(|(_, v)| v)
    }

    /// A string keyword, trimmed.
    pub fn str(&self, keyword: &str) -> Option<&str> {
        match self.card(keyword)? {
            CardValue::Str(s) => Some(s.trim()),
            _ => None,
        }
    }

    /// An integer keyword (a real value with no fractional part is accepted too).
    pub fn int(&self, keyword: &str) -> Option<i64> {
        match self.card(keyword)? {
            CardValue::Int(i) => Some(*i),
            CardValue::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(*f as i64),
            _ => None,
        }
    }

    /// A numeric keyword as f64 (integers included).
    pub fn float(&self, keyword: &str) -> Option<f64> {
        match self.card(keyword)? {
            CardValue::Int(i) => Some(*i as f64),
            CardValue::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// Number of pixels (product of the axis lengths; 0 when NAXIS = 0).
    pub fn n_pixels(&self) -> usize {
        if self.shape.is_empty() {
            0
        } else {
            self.shape.iter().product()
        }
    }

    /// Size of the data unit in bytes (without the padding to 2880).
    pub fn data_len(&self) -> usize {
        self.data_len
    }

    /// BSCALE and BZERO (1 and 0 when absent).
    pub fn scaling(&self) -> (f64, f64) {
        (
            self.float("BSCALE").unwrap_or(1.0),
            self.float("BZERO").unwrap_or(0.0),
        )
    }
}

/// A FITS file held in memory (inflated if it was gzip-compressed), with its HDU list.
#[derive(Debug, Clone)]
pub struct FitsFile {
    path: PathBuf,
    bytes: Vec<u8>,
    hdus: Vec<Hdu>,
}

impl FitsFile {
    /// Reads and parses a `.fits` or `.fits.gz` file (compression is detected from the magic
    /// bytes, not the name).
    pub fn open(path: &Path) -> Result<Self, DataError> {
        let raw = read_file(path)?;
        Self::from_bytes(raw, path)
    }

    /// Parses file contents already in memory; `path` only labels errors.
    pub fn from_bytes(raw: Vec<u8>, path: &Path) -> Result<Self, DataError> {
        let bytes = inflate_if_gzip(raw, path)?;
        let hdus = parse_hdus(&bytes, path)?;
        Ok(Self {
            path: path.to_path_buf(),
            bytes,
            hdus,
        })
    }

    /// The path the file was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size of the (inflated) FITS byte stream.
    pub fn len_bytes(&self) -> usize {
        self.bytes.len()
    }

    /// All HDUs in file order.
    pub fn hdus(&self) -> &[Hdu] {
        &self.hdus
    }

    /// The primary HDU (always present in a parsed file).
    pub fn primary(&self) -> &Hdu {
        // parse_hdus rejects a file without a primary HDU, so the list is never empty.
        &self.hdus[0]
    }

    /// The first HDU with this EXTNAME.
    pub fn hdu(&self, extname: &str) -> Option<&Hdu> {
        self.hdus.iter().find(|h| h.name == extname)
    }

    /// The first HDU with this EXTNAME, or [`DataError::MissingHdu`].
    pub fn require(&self, extname: &str) -> Result<&Hdu, DataError> {
        self.hdu(extname).ok_or_else(|| DataError::MissingHdu {
            path: self.path.clone(),
            extname: extname.to_string(),
        })
    }

    /// The raw (big-endian, unscaled) bytes of an HDU's data unit.
    pub fn raw_data(&self, hdu: &Hdu) -> &[u8] {
        // parse_hdus checked that every data unit lies inside `bytes`.
        &self.bytes[hdu.data_offset..hdu.data_offset + hdu.data_len]
    }

    /// The physical values (`BZERO + BSCALE · raw`) of an image HDU as f32, row-major.
    pub fn read_f32(&self, hdu: &Hdu) -> Result<Vec<f32>, DataError> {
        self.check_image(hdu)?;
        let raw = self.raw_data(hdu);
        let (scale, zero) = hdu.scaling();
        let identity = scale == 1.0 && zero == 0.0;
        let out = match hdu.bitpix {
            -32 => {
                let v = decode::<4, f32>(raw, f32::from_be_bytes);
                if identity {
                    v
                } else {
                    v.into_iter()
                        .map(|r| (zero + scale * f64::from(r)) as f32)
                        .collect()
                }
            }
            -64 => decode::<8, f64>(raw, f64::from_be_bytes)
                .into_iter()
                .map(|r| (zero + scale * r) as f32)
                .collect(),
            8 => raw
                .iter()
                .map(|&r| (zero + scale * f64::from(r)) as f32)
                .collect(),
            16 => decode::<2, i16>(raw, i16::from_be_bytes)
                .into_iter()
                .map(|r| (zero + scale * f64::from(r)) as f32)
                .collect(),
            32 => decode::<4, i32>(raw, i32::from_be_bytes)
                .into_iter()
                .map(|r| (zero + scale * f64::from(r)) as f32)
                .collect(),
            64 => decode::<8, i64>(raw, i64::from_be_bytes)
                .into_iter()
                .map(|r| (zero + scale * r as f64) as f32)
                .collect(),
            other => return Err(self.bad(hdu, format!("unsupported BITPIX {other}"))),
        };
        Ok(out)
    }

    /// The values of an integer image HDU (BITPIX 8/16/32, with an integral BZERO such as the
    /// unsigned-integer convention) as i32. Floating-point or 64-bit data, a fractional BSCALE,
    /// or values outside the i32 range are errors: a bit mask must not be rounded.
    pub fn read_i32(&self, hdu: &Hdu) -> Result<Vec<i32>, DataError> {
        self.check_image(hdu)?;
        let raw = self.raw_data(hdu);
        let (scale, zero) = hdu.scaling();
        if scale != 1.0 || zero.fract() != 0.0 {
            return Err(self.bad(
                hdu,
                format!("integer data with BSCALE={scale} BZERO={zero}"),
            ));
        }
        let wide: Vec<i64> = match hdu.bitpix {
            8 => raw.iter().map(|&r| i64::from(r)).collect(),
            16 => decode::<2, i16>(raw, i16::from_be_bytes)
                .into_iter()
                .map(i64::from)
                .collect(),
            32 => decode::<4, i32>(raw, i32::from_be_bytes)
                .into_iter()
                .map(i64::from)
                .collect(),
            other => {
                return Err(self.bad(
                    hdu,
                    format!("BITPIX {other}, expected an integer type (8, 16 or 32)"),
                ));
            }
        };
        let zero = zero as i64;
        wide.into_iter()
            .map(|v| {
                i32::try_from(v + zero).map_err(|_| {
                    self.bad(hdu, format!("value {} does not fit in 32 bits", v + zero))
                })
            })
            .collect()
    }

    /// The same values as [`read_f32`](Self::read_f32) for a BITPIX −32 HDU, decoded by
    /// `fitsrs`'s per-pixel iterator. Kept as the reference path for cross-checks and the
    /// benchmark; ingest uses the direct decoder.
    pub fn read_f32_via_iterator(&self, hdu: &Hdu) -> Result<Vec<f32>, DataError> {
        self.check_image(hdu)?;
        let mut fits = Fits::from_reader(Cursor::new(self.bytes.as_slice()));
        for index in 0..=hdu.index {
            let next = fits
                .next()
                .ok_or_else(|| self.bad(hdu, "HDU vanished on re-reading".to_string()))?
                .map_err(|e| self.bad(hdu, e.to_string()))?;
            if index < hdu.index {
                continue;
            }
            let image = match &next {
                HDU::Primary(h) | HDU::XImage(h) => fits.get_data(h),
                _ => return Err(self.bad(hdu, "not an image HDU".to_string())),
            };
            return match image.pixels() {
                Pixels::F32(it) => Ok(it.collect()),
                _ => Err(self.bad(hdu, "BITPIX is not -32".to_string())),
            };
        }
        Err(self.bad(hdu, "HDU not found on re-reading".to_string()))
    }

    fn check_image(&self, hdu: &Hdu) -> Result<(), DataError> {
        match hdu.kind {
            HduKind::Primary | HduKind::Image => Ok(()),
            HduKind::BinTable | HduKind::AsciiTable => {
                Err(self.bad(hdu, "is a table, not an image".to_string()))
            }
        }
    }

    fn bad(&self, hdu: &Hdu, reason: String) -> DataError {
        DataError::BadHdu {
            path: self.path.clone(),
            extname: hdu.name.clone(),
            reason,
        }
    }
}

/// Reads a whole file, mapping the OS error to [`DataError::Io`] with the path.
pub fn read_file(path: &Path) -> Result<Vec<u8>, DataError> {
    let io = |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.is_dir() {
        return Err(DataError::BadInput {
            path: path.to_path_buf(),
            reason: "is a directory, not a file".to_string(),
        });
    }
    std::fs::read(path).map_err(io)
}

/// Inflates `raw` when it starts with the gzip magic bytes (one gzip member, as MaNGA writes
/// them), else returns it unchanged.
pub fn inflate_if_gzip(raw: Vec<u8>, path: &Path) -> Result<Vec<u8>, DataError> {
    if !raw.starts_with(&GZIP_MAGIC) {
        return Ok(raw);
    }
    let mut out = Vec::with_capacity(inflated_size_hint(&raw));
    let mut decoder = flate2::read::GzDecoder::new(raw.as_slice()).take(MAX_INFLATED_BYTES + 1);
    decoder.read_to_end(&mut out).map_err(|e| DataError::Gzip {
        path: path.to_path_buf(),
        reason: match e.kind() {
            std::io::ErrorKind::UnexpectedEof => "truncated (unexpected end of stream)".to_string(),
            _ => e.to_string(),
        },
    })?;
    if out.len() as u64 > MAX_INFLATED_BYTES {
        return Err(DataError::Gzip {
            path: path.to_path_buf(),
            reason: format!("inflates to more than {MAX_INFLATED_BYTES} bytes"),
        });
    }
    Ok(out)
}

/// Room to reserve for inflating a gzip stream: the size its trailer records (ISIZE, the
/// inflated length modulo 2³²), so the output is never copied to grow. A trailer is only a
/// claim — of the last member, and possibly damaged — so it is bounded by deflate's largest
/// possible ratio (1032:1) and by [`MAX_INFLATED_BYTES`]; the inflating itself checks the rest.
fn inflated_size_hint(raw: &[u8]) -> usize {
    const DEFLATE_MAX_RATIO: usize = 1032;
    let claimed = raw
        .last_chunk::<4>()
        .map_or(0, |trailer| u32::from_le_bytes(*trailer) as usize);
    let plausible = raw.len().saturating_mul(DEFLATE_MAX_RATIO);
    claimed.min(plausible).min(MAX_INFLATED_BYTES as usize + 1)
}

/// Decodes big-endian fixed-size values; a trailing partial value cannot occur because data
/// lengths are whole multiples of the value size.
fn decode<const N: usize, T>(raw: &[u8], from_be: fn([u8; N]) -> T) -> Vec<T> {
    raw.chunks_exact(N)
        .map(|c| {
            let mut b = [0u8; N];
            b.copy_from_slice(c);
            from_be(b)
        })
        .collect()
}

fn parse_hdus(bytes: &[u8], path: &Path) -> Result<Vec<Hdu>, DataError> {
    let fits_err = |reason: String| DataError::Fits {
        path: path.to_path_buf(),
        reason,
    };
    if !bytes.starts_with(b"SIMPLE  =") {
        return Err(fits_err(
            "does not start with SIMPLE (not a FITS file)".to_string(),
        ));
    }
    // fitsrs is third-party code fed with untrusted bytes: a panic inside it becomes an error
    // for this file instead of aborting a batch, and prints nothing (the error says it all).
    let walked = catch_quietly(|| walk_hdus(bytes, path));
    let hdus = match walked {
        Ok(result) => result?,
        Err(_) => {
            return Err(fits_err(
                "header parser failed on malformed input".to_string(),
            ));
        }
    };
    if hdus.is_empty() {
        return Err(fits_err("no HDU found".to_string()));
    }
    Ok(hdus)
}

thread_local! {
    /// True while this thread runs inside [`catch_quietly`]: the panic hook then stays silent.
    /// Per thread, so a panic on another thread (another file of a parallel batch, or a real
    /// bug elsewhere) is still reported while one thread parses a malformed file.
    static QUIET_PANICS: Cell<bool> = const { Cell::new(false) };
}

/// Installs, once per process, a panic hook that says nothing while the panicking thread is
/// inside [`catch_quietly`] and otherwise hands the panic to the hook that was in place before
/// (the default one prints the message and, with `RUST_BACKTRACE`, a backtrace). A hook set
/// later by someone else replaces this one, which then only makes caught fitsrs panics print
/// again; nothing else changes.
fn install_quiet_panic_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // `try_with` fails only while the thread is being torn down; print then.
            if !QUIET_PANICS.try_with(Cell::get).unwrap_or(false) {
                previous(info);
            }
        }));
    });
}

/// Restores the thread's previous quiet flag when dropped, also when the guarded call panics,
/// so nested guards and later panics outside the guard behave as before.
struct QuietScope {
    was_quiet: bool,
}

impl QuietScope {
    fn enter() -> Self {
        Self {
            was_quiet: QUIET_PANICS.with(|q| q.replace(true)),
        }
    }
}

impl Drop for QuietScope {
    fn drop(&mut self) {
        QUIET_PANICS.with(|q| q.set(self.was_quiet));
    }
}

/// Runs `f`, turning a panic into `Err(())` without printing anything: the caller reports a
/// clean one-line error instead of the panic message (and backtrace) that the default hook
/// would write to stderr before it.
fn catch_quietly<R>(f: impl FnOnce() -> R + std::panic::UnwindSafe) -> Result<R, ()> {
    install_quiet_panic_hook();
    let _scope = QuietScope::enter();
    std::panic::catch_unwind(f).map_err(|_| ())
}

/// The FITS reader's error in words: its I/O variant displays as a debug name (`Io(UnexpectedEof)`).
fn describe_reader_error(e: &fitsrs::error::Error) -> String {
    match e {
        fitsrs::error::Error::Io(std::io::ErrorKind::UnexpectedEof) => {
            "the file ends inside a header, before its END card (truncated?)".to_string()
        }
        fitsrs::error::Error::Io(kind) => format!("read error: {}", std::io::Error::from(*kind)),
        other => other.to_string(),
    }
}

fn walk_hdus(bytes: &[u8], path: &Path) -> Result<Vec<Hdu>, DataError> {
    let fits_err = |reason: String| DataError::Fits {
        path: path.to_path_buf(),
        reason,
    };
    let fits = Fits::from_reader(Cursor::new(bytes));
    let mut hdus = Vec::new();
    for next in fits {
        let index = hdus.len();
        let hdu =
            next.map_err(|e| fits_err(format!("HDU {index}: {}", describe_reader_error(&e))))?;
        let (kind, bitpix, naxis, values, offset, len) = match &hdu {
            HDU::Primary(h) | HDU::XImage(h) => {
                let x = h.get_header().get_xtension();
                let kind = if matches!(hdu, HDU::Primary(_)) {
                    HduKind::Primary
                } else {
                    HduKind::Image
                };
                (
                    kind,
                    bitpix_value(x.get_bitpix()),
                    x.get_naxis().to_vec(),
                    collect_cards(h.get_header().iter()),
                    h.get_data_unit_byte_offset(),
                    h.get_data_unit_byte_size(),
                )
            }
            HDU::XBinaryTable(h) => {
                let values = collect_cards(h.get_header().iter());
                let naxis = table_naxis(&values);
                (
                    HduKind::BinTable,
                    8,
                    naxis,
                    values,
                    h.get_data_unit_byte_offset(),
                    h.get_data_unit_byte_size(),
                )
            }
            HDU::XASCIITable(h) => {
                let values = collect_cards(h.get_header().iter());
                let naxis = table_naxis(&values);
                (
                    HduKind::AsciiTable,
                    8,
                    naxis,
                    values,
                    h.get_data_unit_byte_offset(),
                    h.get_data_unit_byte_size(),
                )
            }
        };
        let shape: Vec<usize> = naxis
            .iter()
            .rev()
            .map(|&n| usize::try_from(n).unwrap_or(usize::MAX))
            .collect();
        let offset = usize::try_from(offset)
            .map_err(|_| fits_err(format!("HDU {index}: data offset overflows")))?;
        let len = usize::try_from(len)
            .map_err(|_| fits_err(format!("HDU {index}: data size overflows")))?;
        if matches!(kind, HduKind::Primary | HduKind::Image) {
            let expected = shape
                .iter()
                .try_fold(if shape.is_empty() { 0usize } else { 1usize }, |acc, &n| {
                    acc.checked_mul(n)
                })
                .and_then(|n| n.checked_mul(bitpix.unsigned_abs() as usize / 8));
            if expected != Some(len) {
                return Err(fits_err(format!(
                    "HDU {index}: data size does not match NAXIS/BITPIX"
                )));
            }
        }
        let end = offset
            .checked_add(len)
            .ok_or_else(|| fits_err(format!("HDU {index}: data size overflows")))?;
        let name = match values.iter().rev().find(|(k, _)| k == "EXTNAME") {
            Some((_, CardValue::Str(s))) => s.trim().to_string(),
            _ if kind == HduKind::Primary => "PRIMARY".to_string(),
            _ => String::new(),
        };
        if end > bytes.len() {
            return Err(fits_err(format!(
                "HDU {index} ({name}): truncated, data unit needs {end} bytes but the file has {}",
                bytes.len()
            )));
        }
        hdus.push(Hdu {
            index,
            name,
            kind,
            bitpix,
            shape,
            cards: values,
            data_offset: offset,
            data_len: len,
        });
        // Stop when no room is left for another header: asking fitsrs for one more HDU at the
        // end of the file makes it log a spurious "no END card" error.
        if end.div_ceil(2880).saturating_mul(2880) >= bytes.len() {
            break;
        }
    }
    Ok(hdus)
}

fn table_naxis(values: &[(String, CardValue)]) -> Vec<u64> {
    ["NAXIS1", "NAXIS2"]
        .iter()
        .filter_map(|k| match values.iter().find(|(key, _)| key == k) {
            Some((_, CardValue::Int(n))) => u64::try_from(*n).ok(),
            _ => None,
        })
        .collect()
}

fn bitpix_value(bitpix: Bitpix) -> i32 {
    match bitpix {
        Bitpix::U8 => 8,
        Bitpix::I16 => 16,
        Bitpix::I32 => 32,
        Bitpix::I64 => 64,
        Bitpix::F32 => -32,
        Bitpix::F64 => -64,
    }
}

fn collect_cards<'a>(iter: impl Iterator<Item = (&'a str, &'a Value)>) -> Vec<(String, CardValue)> {
    iter.filter_map(|(k, v)| {
        let value = match v {
            Value::Integer { value, .. } => CardValue::Int(*value),
            Value::Float { value, .. } => CardValue::Float(*value),
            Value::Logical { value, .. } => CardValue::Bool(*value),
            Value::String { value, .. } => CardValue::Str(value.trim_end().to_string()),
            Value::Undefined | Value::Invalid(_) => return None,
        };
        Some((k.to_string(), value))
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fits::write::{Card, ImageData, ImageHdu, WriteOptions, write_fits};

    const DR15: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/data/real/manga-7815-3702-MAPS-HYB10-GAU-MILESHC.fits.gz"
    );
    const DRPCOMPLETE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/data/real/drpcomplete_v2_7_1.fits"
    );

    #[test]
    fn the_gzip_trailer_sizes_the_output_but_is_not_trusted() {
        // A real DR15 file: the trailer records exactly what it inflates to.
        let raw = std::fs::read(DR15).unwrap();
        let inflated = inflate_if_gzip(raw.clone(), Path::new(DR15)).unwrap();
        assert_eq!(inflated_size_hint(&raw), inflated.len());
        // A forged trailer claiming 4 GB on a tiny stream is held to deflate's 1032:1 ratio.
        let mut forged = raw[..100].to_vec();
        forged.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(inflated_size_hint(&forged), 104 * 1032);
        assert_eq!(inflated_size_hint(&[0x1f, 0x8b]), 0);
    }

    #[test]
    fn a_header_without_its_end_card_is_described_in_words() {
        // One 80-character card, then nothing: the reader runs out of bytes inside the header.
        let card = format!("{:<80}", "SIMPLE  =                    T");
        let err = walk_hdus(card.as_bytes(), Path::new("cut.fits"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cut.fits") && err.contains("END card"),
            "{err}"
        );
        assert!(!err.contains("Io("), "{err}");
    }

    /// An 80-column card; `text` is the whole card content.
    fn card(text: &str) -> String {
        format!("{text:<80}")
    }

    /// A header block (cards + END, padded to 2880 bytes).
    fn header(cards: &[String]) -> Vec<u8> {
        let mut h: Vec<u8> = cards.iter().flat_map(|c| c.bytes()).collect();
        h.extend(card("END").bytes());
        h.resize(h.len().div_ceil(2880) * 2880, b' ');
        h
    }

    fn pad_data(mut d: Vec<u8>) -> Vec<u8> {
        d.resize(d.len().div_ceil(2880) * 2880, 0);
        d
    }

    fn kv(key: &str, value: &str) -> String {
        card(&format!("{key:<8}= {value:>20}"))
    }

    fn primary() -> Vec<u8> {
        header(&[
            kv("SIMPLE", "T"),
            kv("BITPIX", "8"),
            kv("NAXIS", "0"),
            kv("EXTEND", "T"),
        ])
    }

    fn image(name: &str, bitpix: i32, naxis: &[usize], extra: &[String], data: Vec<u8>) -> Vec<u8> {
        let mut cards = vec![
            kv("XTENSION", "'IMAGE   '"),
            kv("BITPIX", &bitpix.to_string()),
            kv("NAXIS", &naxis.len().to_string()),
        ];
        for (i, n) in naxis.iter().enumerate() {
            cards.push(kv(&format!("NAXIS{}", i + 1), &n.to_string()));
        }
        cards.extend([
            kv("PCOUNT", "0"),
            kv("GCOUNT", "1"),
            kv("EXTNAME", &format!("'{name}'")),
        ]);
        cards.extend(extra.iter().cloned());
        let mut out = header(&cards);
        out.extend(pad_data(data));
        out
    }

    #[test]
    fn reads_real_dr15_file_like_astropy() {
        let fits = FitsFile::open(Path::new(DR15)).unwrap();
        assert_eq!(fits.hdus().len(), 48);
        assert_eq!(fits.primary().str("PLATEIFU"), Some("7815-3702"));
        let gflux = fits.require("EMLINE_GFLUX").unwrap();
        assert_eq!(
            (gflux.bitpix, gflux.shape.as_slice()),
            (-32, &[22usize, 42, 42][..])
        );
        assert_eq!(gflux.str("C12"), Some("Hb-4862"), "padding is trimmed");
        let flux = fits.read_f32(gflux).unwrap();
        let ivar = fits
            .read_f32(fits.require("EMLINE_GFLUX_IVAR").unwrap())
            .unwrap();
        let mask = fits
            .read_i32(fits.require("EMLINE_GFLUX_MASK").unwrap())
            .unwrap();
        // Values read once with astropy 8 / numpy (channel 18 = Ha-6564).
        let at = |c: usize, y: usize, x: usize| c * 42 * 42 + y * 42 + x;
        assert_eq!(flux[at(18, 21, 21)], 86.12515);
        assert_eq!(flux[at(18, 10, 30)], 0.8181817);
        assert_eq!(ivar[at(18, 21, 21)], 29.478645);
        assert_eq!(mask[at(18, 21, 21)], 0);
        assert_eq!(mask[at(18, 0, 0)], 1073741827);
        assert_eq!(
            mask.iter().map(|&m| i64::from(m)).sum::<i64>(),
            23_625_541_467_472
        );
        let total: f64 = flux.iter().map(|&f| f64::from(f)).sum();
        assert!(
            (total - -70829.92166867884).abs() < 1e-6 * 70829.9,
            "{total}"
        );
        // The fitsrs per-pixel iterator decodes the same values.
        assert_eq!(fits.read_f32_via_iterator(gflux).unwrap(), flux);
        // A mask must not be read as floats by mistake, nor floats as a mask.
        assert!(fits.read_i32(gflux).is_err());
    }

    #[test]
    fn skips_bintable_with_heap_and_reads_catalogue_header() {
        let cat = FitsFile::open(Path::new(DRPCOMPLETE)).unwrap();
        let drpc = cat.require("DRPC").unwrap();
        assert_eq!(drpc.kind, HduKind::BinTable);
        assert!(cat.read_f32(drpc).is_err(), "a table is not an image");
        // Hand-made: primary, BINTABLE with a 10-byte heap (PCOUNT), then an image.
        let mut bytes = primary();
        let table_cards = [
            kv("XTENSION", "'BINTABLE'"),
            kv("BITPIX", "8"),
            kv("NAXIS", "2"),
            kv("NAXIS1", "4"),
            kv("NAXIS2", "3"),
            kv("PCOUNT", "10"),
            kv("GCOUNT", "1"),
            kv("TFIELDS", "1"),
            kv("TTYPE1", "'A'"),
            kv("TFORM1", "'J'"),
            kv("EXTNAME", "'TAB'"),
        ];
        bytes.extend(header(&table_cards));
        bytes.extend(pad_data(vec![7u8; 12 + 10]));
        let values: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect();
        bytes.extend(image("AFTER", -32, &[2], &[], values));
        let fits = FitsFile::from_bytes(bytes, Path::new("t.fits")).unwrap();
        let names: Vec<&str> = fits.hdus().iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["PRIMARY", "TAB", "AFTER"]);
        assert_eq!(fits.require("TAB").unwrap().data_len(), 22);
        assert_eq!(
            fits.read_f32(fits.require("AFTER").unwrap()).unwrap(),
            [1.5, -2.0]
        );
    }

    #[test]
    fn every_bitpix_with_bscale_bzero() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("types.fits.gz");
        let scaled = |extname: &str, data: ImageData, scale: f64, zero: f64| {
            ImageHdu::new(extname, &[2, 2], data).with_cards(vec![
                Card::float("BSCALE", scale, ""),
                Card::float("BZERO", zero, ""),
            ])
        };
        let images = vec![
            scaled("U8", ImageData::U8(vec![0, 1, 200, 255]), 0.5, 1.0),
            scaled("I16", ImageData::I16(vec![-3, 0, 7, 32767]), 2.0, -1.0),
            scaled("I32", ImageData::I32(vec![-5, 0, 5, 1 << 20]), 0.25, 0.0),
            scaled("F32", ImageData::F32(vec![1.0, -2.5, 0.0, 1e-3]), 1.0, 0.0),
            scaled("F64", ImageData::F64(vec![1.25, 2.0, -8.0, 0.5]), 4.0, 1.0),
            ImageHdu::new("U16", &[2, 2], ImageData::I16(vec![-32768, -1, 0, 32767]))
                .with_cards(vec![Card::int("BZERO", 32768, "unsigned convention")]),
        ];
        write_fits(
            &path,
            &[Card::str("PLATEIFU", "1-2", "")],
            &images,
            &WriteOptions::default(),
        )
        .unwrap();
        let fits = FitsFile::open(&path).unwrap();
        let f = |n: &str| fits.read_f32(fits.require(n).unwrap()).unwrap();
        assert_eq!(f("U8"), [1.0, 1.5, 101.0, 128.5]);
        assert_eq!(f("I16"), [-7.0, -1.0, 13.0, 65533.0]);
        assert_eq!(f("I32"), [-1.25, 0.0, 1.25, 262144.0]);
        assert_eq!(f("F32"), [1.0, -2.5, 0.0, 1e-3]);
        assert_eq!(f("F64"), [6.0, 9.0, -31.0, 3.0]);
        assert_eq!(
            fits.read_i32(fits.require("U16").unwrap()).unwrap(),
            [0, 32767, 32768, 65535]
        );
        assert!(
            fits.read_i32(fits.require("I16").unwrap()).is_err(),
            "fractional BZERO/BSCALE on a mask"
        );
        assert_eq!(fits.primary().str("PLATEIFU"), Some("1-2"));
    }

    #[test]
    fn malformed_bytes_are_errors_not_panics() {
        let p = Path::new("bad.fits");
        assert!(matches!(
            FitsFile::from_bytes(b"hello world".to_vec(), p),
            Err(DataError::Fits { .. })
        ));
        assert!(matches!(
            FitsFile::from_bytes(Vec::new(), p),
            Err(DataError::Fits { .. })
        ));
        // gzip magic followed by garbage.
        assert!(matches!(
            FitsFile::from_bytes(vec![0x1f, 0x8b, 8, 0, 1, 2, 3], p),
            Err(DataError::Gzip { .. })
        ));
        // Unsupported BITPIX.
        let mut bytes = primary();
        bytes.extend(image("X", 12, &[2], &[], vec![0; 4]));
        assert!(matches!(
            FitsFile::from_bytes(bytes, p),
            Err(DataError::Fits { .. })
        ));
        // Data unit shorter than NAXIS says.
        let mut bytes = primary();
        let mut img = image("X", -32, &[1000], &[], vec![0; 4000]);
        img.truncate(2880 + 100);
        bytes.extend(img);
        let err = FitsFile::from_bytes(bytes, p).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
        // Header without END.
        let mut bytes = primary();
        bytes.truncate(160);
        assert!(FitsFile::from_bytes(bytes, p).is_err());
        // A lone opening quote as a string value makes fitsrs 0.4.1 panic (slice 1..0 in
        // card.rs, found by the fuzzer); the reader turns that into an error for the file.
        let mut bytes = header(&[
            kv("SIMPLE", "T"),
            kv("BITPIX", "8"),
            kv("NAXIS", "0"),
            card("PLATEIFU= '"),
        ]);
        bytes.extend(image("X", -32, &[1], &[], vec![0; 4]));
        let err = FitsFile::from_bytes(bytes, p).unwrap_err().to_string();
        assert!(err.contains("malformed"), "{err}");
        assert!(
            !QUIET_PANICS.with(Cell::get),
            "the guard is left after a caught panic"
        );
        // Every prefix of a small valid file fails cleanly or parses.
        let mut bytes = primary();
        bytes.extend(image("X", 16, &[3, 2], &[], vec![1; 12]));
        for cut in (0..bytes.len()).step_by(97) {
            let _ = FitsFile::from_bytes(bytes[..cut].to_vec(), p);
        }
    }

    /// The quiet flag is set exactly while a guarded call runs and is restored afterwards —
    /// after a normal return, after a caught panic, and for nested guards — so panics outside
    /// the guard reach the previous hook again. (tests/quiet_panics.rs checks stderr itself.)
    #[test]
    fn quiet_flag_is_scoped_to_the_guard() {
        let quiet = || QUIET_PANICS.with(Cell::get);
        assert!(!quiet());
        assert_eq!(catch_quietly(quiet), Ok(true));
        assert!(!quiet());
        assert_eq!(catch_quietly(|| -> u8 { panic!("caught") }), Err(()));
        assert!(!quiet(), "restored after a panic");
        let nested = catch_quietly(|| {
            let inner = catch_quietly(|| -> u8 { panic!("inner") });
            (inner, quiet())
        });
        assert_eq!(nested, Ok((Err(()), true)), "the outer guard stays quiet");
        assert!(!quiet());
        // Another thread is not quiet while this one is inside the guard.
        let other = catch_quietly(|| std::thread::scope(|s| s.spawn(quiet).join().unwrap()));
        assert_eq!(other, Ok(false));
    }
}
