//! Writing FITS files (a primary header plus IMAGE extensions) through cfitsio, plain or gzipped.
//!
//! Built on the `fitsio` crate (bundled cfitsio) so the bytes on disk come from the reference
//! FITS implementation, not from a hand-rolled encoder. cfitsio assembles the file in memory;
//! it is then written as is, or gzip-compressed with flate2 for a `.gz` target. Either way the
//! final name appears only when the file is complete (temp name in the same directory, fsync,
//! rename).
//!
//! Data are stored exactly as given: header cards are written verbatim (a `BSCALE`/`BZERO`
//! card does not make cfitsio rescale the values), which lets tests build files that a reader
//! must de-scale, and files that are deliberately wrong.

use std::cell::Cell;
use std::ffi::CString;
use std::ffi::c_void;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::raw::c_int;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use fitsio::images::{ImageDescription, ImageType};
use fitsio::{FileOpenMode, FitsFile};

use crate::error::DataError;

/// The value of a header card.
#[derive(Debug, Clone, PartialEq)]
pub enum CardValue {
    /// A string (written with CONTINUE cards when longer than one card holds).
    Str(String),
    /// An integer.
    Int(i64),
    /// A floating-point number (written with up to 15 significant digits).
    Float(f64),
    /// A logical `T`/`F`.
    Bool(bool),
}

/// One header card: keyword, value and optional comment.
#[derive(Debug, Clone, PartialEq)]
pub struct Card {
    /// Keyword (up to 8 characters for a standard card; longer ones become HIERARCH cards).
    pub key: String,
    /// Value.
    pub value: CardValue,
    /// Comment after the `/`, if any.
    pub comment: Option<String>,
}

impl Card {
    /// A string card.
    pub fn str(key: &str, value: &str, comment: &str) -> Self {
        Self::new(key, CardValue::Str(value.to_string()), comment)
    }

    /// An integer card.
    pub fn int(key: &str, value: i64, comment: &str) -> Self {
        Self::new(key, CardValue::Int(value), comment)
    }

    /// A floating-point card.
    pub fn float(key: &str, value: f64, comment: &str) -> Self {
        Self::new(key, CardValue::Float(value), comment)
    }

    /// A logical card.
    pub fn bool(key: &str, value: bool, comment: &str) -> Self {
        Self::new(key, CardValue::Bool(value), comment)
    }

    /// A card of any value; an empty comment means no comment.
    pub fn new(key: &str, value: CardValue, comment: &str) -> Self {
        let comment = (!comment.is_empty()).then(|| comment.to_string());
        Self {
            key: key.to_string(),
            value,
            comment,
        }
    }
}

/// Pixel values of an IMAGE HDU; the variant decides BITPIX.
#[derive(Debug, Clone, PartialEq)]
pub enum ImageData {
    /// BITPIX −32.
    F32(Vec<f32>),
    /// BITPIX −64.
    F64(Vec<f64>),
    /// BITPIX 32.
    I32(Vec<i32>),
    /// BITPIX 16.
    I16(Vec<i16>),
    /// BITPIX 8 (unsigned bytes).
    U8(Vec<u8>),
}

impl ImageData {
    /// Number of pixel values.
    pub fn len(&self) -> usize {
        match self {
            ImageData::F32(v) => v.len(),
            ImageData::F64(v) => v.len(),
            ImageData::I32(v) => v.len(),
            ImageData::I16(v) => v.len(),
            ImageData::U8(v) => v.len(),
        }
    }

    /// True when there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The FITS BITPIX this data is stored with.
    pub fn bitpix(&self) -> i32 {
        match self {
            ImageData::F32(_) => -32,
            ImageData::F64(_) => -64,
            ImageData::I32(_) => 32,
            ImageData::I16(_) => 16,
            ImageData::U8(_) => 8,
        }
    }

    fn image_type(&self) -> ImageType {
        match self {
            ImageData::F32(_) => ImageType::Float,
            ImageData::F64(_) => ImageType::Double,
            ImageData::I32(_) => ImageType::Long,
            ImageData::I16(_) => ImageType::Short,
            ImageData::U8(_) => ImageType::UnsignedByte,
        }
    }
}

/// One IMAGE extension to write.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageHdu {
    /// EXTNAME of the extension.
    pub extname: String,
    /// Shape in row-major order, slowest axis first (`[channel, y, x]` is written as
    /// NAXIS1 = x, NAXIS2 = y, NAXIS3 = channel, as FITS orders axes).
    pub shape: Vec<usize>,
    /// Pixel values, row-major, `shape.iter().product()` of them.
    pub data: ImageData,
    /// Extra header cards, written after EXTNAME in the given order.
    pub cards: Vec<Card>,
}

impl ImageHdu {
    /// An extension with no extra cards.
    pub fn new(extname: &str, shape: &[usize], data: ImageData) -> Self {
        Self {
            extname: extname.to_string(),
            shape: shape.to_vec(),
            data,
            cards: Vec::new(),
        }
    }

    /// Adds header cards (builder style).
    pub fn with_cards(mut self, cards: Vec<Card>) -> Self {
        self.cards.extend(cards);
        self
    }
}

/// How a file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOptions {
    /// Add CHECKSUM/DATASUM cards to every HDU (as the MaNGA DAP does).
    pub checksum: bool,
    /// gzip level 0–9 for `.gz` targets; 1 is fast and, for maps full of exact zeros, nearly
    /// as small as 9.
    pub gzip_level: u32,
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self {
            checksum: true,
            gzip_level: 1,
        }
    }
}

/// Why a FITS file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum FitsWriteError {
    /// An HDU's data do not fill its declared shape.
    #[error("{path}: HDU {extname}: {len} values do not fill shape {shape:?} ({expected} values)")]
    ShapeMismatch {
        /// Target file.
        path: PathBuf,
        /// EXTNAME of the offending HDU.
        extname: String,
        /// Declared shape.
        shape: Vec<usize>,
        /// Values the shape needs.
        expected: usize,
        /// Values given.
        len: usize,
    },
    /// A keyword, value or comment cannot be put in a FITS card.
    #[error("{path}: header card {key:?}: {reason}")]
    BadCard {
        /// Target file.
        path: PathBuf,
        /// Keyword of the card.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// cfitsio reported an error.
    #[error("{path}: cfitsio: {source}")]
    Fits {
        /// Target file.
        path: PathBuf,
        /// The cfitsio error.
        #[source]
        source: fitsio::errors::Error,
    },
    /// Creating, compressing or renaming the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Write failures become [`DataError::Write`] naming the file, like every other data-crate error.
impl From<FitsWriteError> for DataError {
    fn from(err: FitsWriteError) -> Self {
        let path = match &err {
            FitsWriteError::ShapeMismatch { path, .. }
            | FitsWriteError::BadCard { path, .. }
            | FitsWriteError::Fits { path, .. }
            | FitsWriteError::Io { path, .. } => path.clone(),
        };
        let text = err.to_string();
        let prefix = format!("{}: ", path.display());
        let reason = text
            .strip_prefix(&prefix)
            .map(str::to_string)
            .unwrap_or(text);
        DataError::Write { path, reason }
    }
}

/// Writes a FITS file: a primary HDU with no data (NAXIS = 0) carrying `primary` cards, then
/// one IMAGE extension per entry of `images`, in order. A path ending in `.gz` is written
/// gzip-compressed. The final file appears atomically; on error no partial file is left.
pub fn write_fits(
    path: &Path,
    primary: &[Card],
    images: &[ImageHdu],
    options: &WriteOptions,
) -> Result<(), FitsWriteError> {
    for image in images {
        let expected: usize = image.shape.iter().product();
        if expected != image.data.len() || image.shape.is_empty() {
            return Err(FitsWriteError::ShapeMismatch {
                path: path.to_path_buf(),
                extname: image.extname.clone(),
                shape: image.shape.clone(),
                expected,
                len: image.data.len(),
            });
        }
    }
    let gzip = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gz"));
    let tmp = temp_sibling(path);
    let level = gzip.then_some(options.gzip_level);
    let result = with_assembled_file(path, primary, images, options, |bytes| {
        store(&tmp, bytes, level)
    })
    .and_then(|()| {
        std::fs::rename(&tmp, path).map_err(|source| FitsWriteError::Io {
            path: path.to_path_buf(),
            source,
        })
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `dir/name.tmp-<pid>`: unique per target and process, in the target's directory so the
/// final rename never crosses file systems.
fn temp_sibling(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".tmp-{}", std::process::id()));
    path.with_file_name(name)
}

/// A `malloc`ed buffer that cfitsio assembles files in (its `memkeep` driver,
/// `fits_create_memfile`), kept in [`SPARE_BUFFERS`] between files.
///
/// Building a file in memory instead of in a temporary file spares writing every file twice
/// and reading it back to compress it. Reusing the buffer matters as much: a survey writes
/// thousands of 5–30 MB files, and handing each buffer back to the system and mapping a new
/// one (page zeroing, TLB shootdowns between cores) made the simulator twice as slow.
struct AssemblyBuffer {
    start: *mut c_void,
    capacity: usize,
}

// SAFETY: the buffer is plain memory owned by whichever thread took it from the pool.
unsafe impl Send for AssemblyBuffer {}

/// Buffers of finished writes, for the next ones; emptied by [`release_write_buffers`].
static SPARE_BUFFERS: Mutex<Vec<AssemblyBuffer>> = Mutex::new(Vec::new());

thread_local! {
    /// The buffer this thread's open memory file lives in, and its allocated capacity: what
    /// [`grow_assembly`] needs to know that cfitsio's "realloc" fits without moving.
    static ASSEMBLING: Cell<(*mut c_void, usize)> = const { Cell::new((std::ptr::null_mut(), 0)) };
}

/// The `realloc` cfitsio calls to grow or truncate a memory file: a no-op while the request
/// fits the buffer's capacity, libc `realloc` beyond it.
unsafe extern "C" fn grow_assembly(start: *mut c_void, size: usize) -> *mut c_void {
    ASSEMBLING.with(|assembling| {
        let (current, capacity) = assembling.get();
        if start == current && size <= capacity {
            return start;
        }
        // SAFETY: `start` came from libc malloc/realloc (pool or this function).
        let moved = unsafe { libc::realloc(start, size) };
        if !moved.is_null() {
            assembling.set((moved, size));
        }
        moved
    })
}

/// Frees the buffers kept for FITS writing (about one per thread that wrote, each as large as
/// the largest file that thread wrote). Call it after a batch of writes.
pub fn release_write_buffers() {
    let spare = std::mem::take(&mut *SPARE_BUFFERS.lock().unwrap_or_else(|e| e.into_inner()));
    for buffer in spare {
        // SAFETY: pooled buffers came from libc malloc/realloc and nothing else refers to them.
        unsafe { libc::free(buffer.start) }
    }
}

/// Bytes the finished file will take, or a little more: the data, padded, plus a few header
/// blocks per HDU. Growing a new buffer by this much at once copies it only once.
fn size_estimate(primary: &[Card], images: &[ImageHdu]) -> usize {
    let header_blocks = |cards: usize| (cards + 40) * 80 / FITS_BLOCK + 2;
    let mut bytes = header_blocks(primary.len()) * FITS_BLOCK;
    for image in images {
        let data = image.data.len() * (image.data.bitpix().unsigned_abs() as usize / 8);
        bytes += (header_blocks(image.cards.len()) + data.div_ceil(FITS_BLOCK)) * FITS_BLOCK;
    }
    bytes
}

/// Has cfitsio assemble the file in a pooled buffer and hands its bytes to `consume`.
fn with_assembled_file(
    target: &Path,
    primary: &[Card],
    images: &[ImageHdu],
    options: &WriteOptions,
    consume: impl FnOnce(&[u8]) -> Result<(), FitsWriteError>,
) -> Result<(), FitsWriteError> {
    let fits_err = |source| FitsWriteError::Fits {
        path: target.to_path_buf(),
        source,
    };
    let spare = SPARE_BUFFERS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .pop();
    let mut buffer = match spare {
        Some(buffer) => buffer,
        None => AssemblyBuffer {
            // SAFETY: plain allocation; checked for null below.
            start: unsafe { libc::malloc(FITS_BLOCK) },
            capacity: FITS_BLOCK,
        },
    };
    if buffer.start.is_null() {
        return Err(FitsWriteError::Io {
            path: target.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::OutOfMemory,
                "no memory to assemble the file in",
            ),
        });
    }
    // cfitsio takes the size it is given for the file's current length, so it is told one
    // block, as its own examples do, and the rest of the capacity is used through
    // `grow_assembly`. It reads that block before writing the primary header over it in full;
    // zeroing it anyway means no earlier file's bytes are there to read.
    // SAFETY: the buffer holds at least one block.
    unsafe { std::ptr::write_bytes(buffer.start.cast::<u8>(), 0, FITS_BLOCK) };
    ASSEMBLING.with(|a| a.set((buffer.start, buffer.capacity)));
    // Boxed so that the two addresses cfitsio keeps until the file is closed never move.
    let mut memory: Box<(*mut c_void, usize)> = Box::new((buffer.start, FITS_BLOCK));
    let mut fptr = std::ptr::null_mut();
    let mut status: c_int = 0;
    // SAFETY: `memory` outlives the file (closed below, before `memory` is read or dropped);
    // `grow_assembly` reallocates with the allocator the buffer came from.
    unsafe {
        fitsio::sys::ffimem(
            &mut fptr,
            &mut memory.0,
            &mut memory.1,
            size_estimate(primary, images),
            Some(grow_assembly),
            &mut status,
        );
    }
    let length = fitsio::errors::check_status(status)
        .map_err(fits_err)
        .and_then(|()| {
            // SAFETY: ffimem succeeded, so `fptr` is an open, writable cfitsio file that the
            // FitsFile now owns and closes on drop.
            let mut file =
                unsafe { FitsFile::from_raw(fptr, FileOpenMode::READWRITE) }.map_err(fits_err)?;
            let length = write_hdus(&mut file, target, primary, images, options)
                .and_then(|()| file_length(&mut file, target));
            // Closing flushes cfitsio's own buffers into ours; memkeep leaves it allocated.
            drop(file);
            length
        });
    buffer.start = memory.0;
    buffer.capacity = ASSEMBLING.with(|a| a.replace((std::ptr::null_mut(), 0))).1;
    let result = length.and_then(|length| {
        if length > memory.1 || length % FITS_BLOCK != 0 {
            return Err(FitsWriteError::Io {
                path: target.to_path_buf(),
                source: std::io::Error::other(format!(
                    "cfitsio reported a file of {length} bytes in a buffer of {}",
                    memory.1
                )),
            });
        }
        // SAFETY: cfitsio wrote `length` bytes (checked against what it reports having) into
        // the buffer, which stays allocated and unaliased until it returns to the pool.
        consume(unsafe { std::slice::from_raw_parts(buffer.start.cast::<u8>(), length) })
    });
    if !buffer.start.is_null() {
        SPARE_BUFFERS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(buffer);
    }
    result
}

/// Bytes in a FITS block: every header and data unit is padded to a multiple of it.
const FITS_BLOCK: usize = 2880;

/// Length of the file up to the end of its current (last) HDU, padding included.
fn file_length(file: &mut FitsFile, target: &Path) -> Result<usize, FitsWriteError> {
    let mut data_end: i64 = 0;
    raw_call(file, target, |fptr, status| unsafe {
        fitsio::sys::ffghadll(
            fptr,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            &mut data_end,
            status,
        )
    })?;
    Ok(usize::try_from(data_end).unwrap_or(usize::MAX))
}

fn write_hdus(
    file: &mut FitsFile,
    target: &Path,
    primary: &[Card],
    images: &[ImageHdu],
    options: &WriteOptions,
) -> Result<(), FitsWriteError> {
    let fits_err = |source| FitsWriteError::Fits {
        path: target.to_path_buf(),
        source,
    };
    // The primary HDU: a header with no data, as `FitsFile::create` writes it.
    raw_call(file, target, |fptr, status| unsafe {
        fitsio::sys::ffphps(fptr, 8, 0, std::ptr::null_mut(), status)
    })?;
    for card in primary {
        write_card(file, card, target)?;
    }
    if options.checksum {
        checksum_current_hdu(file, target)?;
    }
    for image in images {
        let description = ImageDescription {
            data_type: image.data.image_type(),
            dimensions: &image.shape,
        };
        let hdu = file
            .create_image(image.extname.as_str(), &description)
            .map_err(fits_err)?;
        for card in &image.cards {
            write_card(file, card, target)?;
        }
        // Store values verbatim even when the cards include BSCALE/BZERO.
        raw_call(file, target, |fptr, status| unsafe {
            fitsio::sys::ffpscl(fptr, 1.0, 0.0, status)
        })?;
        match &image.data {
            ImageData::F32(v) => hdu.write_image(file, v),
            ImageData::F64(v) => hdu.write_image(file, v),
            ImageData::I32(v) => hdu.write_image(file, v),
            ImageData::I16(v) => hdu.write_image(file, v),
            ImageData::U8(v) => hdu.write_image(file, v),
        }
        .map_err(fits_err)?;
        if options.checksum {
            checksum_current_hdu(file, target)?;
        }
    }
    Ok(())
}

/// Runs one raw cfitsio call on the current HDU and turns a non-zero status into an error.
fn raw_call(
    file: &mut FitsFile,
    target: &Path,
    call: impl FnOnce(*mut fitsio::sys::fitsfile, *mut c_int) -> c_int,
) -> Result<(), FitsWriteError> {
    let mut status: c_int = 0;
    // SAFETY: the pointer comes from a live, open FitsFile that we hold mutably for the call;
    // cfitsio does not keep it.
    let fptr = unsafe { file.as_raw() };
    call(fptr, &mut status);
    fitsio::errors::check_status(status).map_err(|source| FitsWriteError::Fits {
        path: target.to_path_buf(),
        source,
    })
}

fn checksum_current_hdu(file: &mut FitsFile, target: &Path) -> Result<(), FitsWriteError> {
    raw_call(file, target, |fptr, status| unsafe {
        fitsio::sys::ffpcks(fptr, status)
    })
}

fn write_card(file: &mut FitsFile, card: &Card, target: &Path) -> Result<(), FitsWriteError> {
    let c_string = |text: &str| {
        CString::new(text).map_err(|_| FitsWriteError::BadCard {
            path: target.to_path_buf(),
            key: card.key.clone(),
            reason: "contains a NUL byte".to_string(),
        })
    };
    if card.key.is_empty() || !card.key.is_ascii() {
        return Err(FitsWriteError::BadCard {
            path: target.to_path_buf(),
            key: card.key.clone(),
            reason: "keyword must be non-empty ASCII".to_string(),
        });
    }
    let key = c_string(&card.key)?;
    let comment = match &card.comment {
        Some(c) => Some(c_string(c)?),
        None => None,
    };
    let comment_ptr = comment.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
    let key_ptr = key.as_ptr();
    // SAFETY (all calls below): key/comment/value are NUL-terminated strings that outlive the
    // call; cfitsio copies them into the header.
    match &card.value {
        CardValue::Str(value) => {
            let value = c_string(value)?;
            // Short strings as ordinary cards (like the DAP writes them); long ones need the
            // CONTINUE convention.
            if value.as_bytes().len() <= 68 {
                raw_call(file, target, |fptr, status| unsafe {
                    fitsio::sys::ffpkys(fptr, key_ptr, value.as_ptr(), comment_ptr, status)
                })
            } else {
                raw_call(file, target, |fptr, status| unsafe {
                    fitsio::sys::ffpkls(fptr, key_ptr, value.as_ptr(), comment_ptr, status)
                })
            }
        }
        CardValue::Int(value) => raw_call(file, target, |fptr, status| unsafe {
            fitsio::sys::ffpkyj(fptr, key_ptr, *value, comment_ptr, status)
        }),
        CardValue::Float(value) => {
            if !value.is_finite() {
                return Err(FitsWriteError::BadCard {
                    path: target.to_path_buf(),
                    key: card.key.clone(),
                    reason: format!("{value} cannot be written as a FITS number"),
                });
            }
            // Negative decimals = %G with that many significant digits: exact-looking values
            // such as 0.000138889 stay short.
            raw_call(file, target, |fptr, status| unsafe {
                fitsio::sys::ffpkyd(fptr, key_ptr, *value, -15, comment_ptr, status)
            })
        }
        CardValue::Bool(value) => raw_call(file, target, |fptr, status| unsafe {
            fitsio::sys::ffpkyl(fptr, key_ptr, c_int::from(*value), comment_ptr, status)
        }),
    }
}

/// Writes `bytes` to `tmp` (gzip-compressed at `gzip_level` when given) and syncs it to disk.
fn store(tmp: &Path, bytes: &[u8], gzip_level: Option<u32>) -> Result<(), FitsWriteError> {
    let io_err = |source| FitsWriteError::Io {
        path: tmp.to_path_buf(),
        source,
    };
    let output = File::create(tmp).map_err(io_err)?;
    let output = match gzip_level {
        Some(level) => {
            let mut encoder = flate2::write::GzEncoder::new(
                BufWriter::with_capacity(1 << 20, output),
                flate2::Compression::new(level.min(9)),
            );
            encoder.write_all(bytes).map_err(io_err)?;
            let writer = encoder.finish().map_err(io_err)?;
            writer.into_inner().map_err(|e| io_err(e.into_error()))?
        }
        None => {
            let mut output = output;
            output.write_all(bytes).map_err(io_err)?;
            output
        }
    };
    output.sync_all().map_err(io_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufReader, Read};

    fn sample_images() -> Vec<ImageHdu> {
        vec![
            ImageHdu::new(
                "FLUX",
                &[2, 3, 4],
                ImageData::F32((0..24).map(|i| i as f32).collect()),
            )
            .with_cards(vec![
                Card::str("C01", "Ha-6564", "Data in channel 1"),
                Card::str("BUNIT", "1E-17 erg/s/cm^2/spaxel", "Unit of pixel value"),
            ]),
            ImageHdu::new(
                "MASK",
                &[3, 4],
                ImageData::I32((0..12).map(|i| i - 6).collect()),
            ),
        ]
    }

    /// Reads back the raw bytes of the file (inflating .gz) to check FITS structure.
    fn raw_bytes(path: &Path) -> Vec<u8> {
        let mut bytes = Vec::new();
        let file = File::open(path).unwrap();
        if path.extension().is_some_and(|e| e == "gz") {
            flate2::read::GzDecoder::new(file)
                .read_to_end(&mut bytes)
                .unwrap();
        } else {
            BufReader::new(file).read_to_end(&mut bytes).unwrap();
        }
        bytes
    }

    fn header_cards(bytes: &[u8]) -> Vec<String> {
        bytes
            .chunks(80)
            .map(|c| String::from_utf8_lossy(c).to_string())
            .collect()
    }

    #[test]
    fn a_reused_buffer_writes_the_same_bytes_as_a_fresh_one() {
        // A file assembled in a buffer that held a larger file must not carry any of its bytes.
        let dir = tempfile::tempdir().unwrap();
        let options = WriteOptions {
            checksum: false, // CHECKSUM comments carry the time of writing
            gzip_level: 1,
        };
        let small = dir.path().join("small.fits");
        release_write_buffers();
        write_fits(&small, &[], &sample_images(), &options).unwrap();
        let fresh = std::fs::read(&small).unwrap();
        assert_eq!(fresh.len(), 5 * FITS_BLOCK); // a header block per HDU, a data block per image
        let large = vec![
            ImageHdu::new("BIG", &[300, 300], ImageData::F64(vec![-1.5; 90_000])).with_cards(vec![
                Card::str("BUNIT", "filler", "many blocks of non-zero bytes"),
            ]),
        ];
        let big = dir.path().join("big.fits.gz");
        for _ in 0..3 {
            write_fits(&big, &[Card::int("NFILL", 7, "")], &large, &options).unwrap();
            write_fits(&small, &[], &sample_images(), &options).unwrap();
            assert_eq!(std::fs::read(&small).unwrap(), fresh);
        }
        release_write_buffers();
    }

    #[test]
    fn writes_plain_and_gz_that_cfitsio_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let primary = vec![
            Card::str("PLATEIFU", "7443-12703", "PLATEID-ifuDesign"),
            Card::int("DRP3QUAL", 0, "DRP-3d quality bitmask"),
            Card::float("SCINPVEL", 8808.5919386934, "Initial guess velocity"),
            Card::bool("SICORR", true, ""),
        ];
        for name in ["a.fits", "a.fits.gz"] {
            let path = dir.path().join(name);
            write_fits(&path, &primary, &sample_images(), &WriteOptions::default()).unwrap();
            let plain = if name.ends_with(".gz") {
                let plain = dir.path().join("inflated.fits");
                std::fs::write(&plain, raw_bytes(&path)).unwrap();
                plain
            } else {
                path.clone()
            };
            let mut f = FitsFile::open(&plain).unwrap();
            assert_eq!(f.num_hdus().unwrap(), 3);
            let hdu = f.primary_hdu().unwrap();
            assert_eq!(
                hdu.read_key::<String>(&mut f, "PLATEIFU").unwrap(),
                "7443-12703"
            );
            assert_eq!(hdu.read_key::<i64>(&mut f, "DRP3QUAL").unwrap(), 0);
            assert_eq!(
                hdu.read_key::<f64>(&mut f, "SCINPVEL").unwrap(),
                8808.5919386934
            );
            let flux = f.hdu("FLUX").unwrap();
            let values: Vec<f32> = flux.read_image(&mut f).unwrap();
            assert_eq!(values, (0..24).map(|i| i as f32).collect::<Vec<_>>());
            assert_eq!(flux.read_key::<String>(&mut f, "C01").unwrap(), "Ha-6564");
            let mask = f.hdu("MASK").unwrap();
            let values: Vec<i32> = mask.read_image(&mut f).unwrap();
            assert_eq!(values, (0..12).map(|i| i - 6).collect::<Vec<_>>());
            // No temp files left behind.
            let leftovers: Vec<_> = std::fs::read_dir(dir.path())
                .unwrap()
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
                .collect();
            assert!(leftovers.is_empty(), "{leftovers:?}");
        }
    }

    #[test]
    fn axis_order_bitpix_and_checksums_follow_fits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.fits");
        write_fits(&path, &[], &sample_images(), &WriteOptions::default()).unwrap();
        let cards = header_cards(&raw_bytes(&path));
        let find = |hdu_key: &str| cards.iter().filter(|c| c.starts_with(hdu_key)).count();
        assert_eq!(find("CHECKSUM="), 3);
        assert_eq!(find("DATASUM ="), 3);
        let flux_start = cards
            .iter()
            .position(|c| c.starts_with("XTENSION= 'IMAGE"))
            .unwrap();
        let flux = &cards[flux_start..flux_start + 8];
        assert!(
            flux[1].starts_with("BITPIX  =                  -32"),
            "{flux:?}"
        );
        assert!(
            flux[3].starts_with("NAXIS1  =                    4"),
            "{flux:?}"
        );
        assert!(
            flux[4].starts_with("NAXIS2  =                    3"),
            "{flux:?}"
        );
        assert!(
            flux[5].starts_with("NAXIS3  =                    2"),
            "{flux:?}"
        );
        let mask_start = flux_start
            + 1
            + cards[flux_start + 1..]
                .iter()
                .position(|c| c.starts_with("XTENSION="))
                .unwrap();
        assert!(cards[mask_start + 1].starts_with("BITPIX  =                   32"));
        // cfitsio verifies the checksums it wrote.
        let mut f = FitsFile::open(&path).unwrap();
        for index in 0..3 {
            f.hdu(index).unwrap();
            let (mut data_ok, mut hdu_ok, mut status) = (0, 0, 0);
            unsafe {
                fitsio::sys::ffvcks(f.as_raw(), &mut data_ok, &mut hdu_ok, &mut status);
            }
            assert_eq!((status, data_ok, hdu_ok), (0, 1, 1), "HDU {index}");
        }
    }

    #[test]
    fn values_are_stored_verbatim_despite_bscale() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scaled.fits");
        let image = ImageHdu::new("RAW", &[3], ImageData::I16(vec![-1, 0, 7])).with_cards(vec![
            Card::float("BSCALE", 2.0, ""),
            Card::float("BZERO", 10.0, ""),
        ]);
        write_fits(
            &path,
            &[],
            &[image],
            &WriteOptions {
                checksum: false,
                gzip_level: 1,
            },
        )
        .unwrap();
        let bytes = raw_bytes(&path);
        // Data start at the second 2880-byte block of the extension: header of primary is one
        // block, the extension header one block.
        let data = &bytes[2 * 2880..2 * 2880 + 6];
        assert_eq!(data, &[0xff, 0xff, 0, 0, 0, 7]);
    }

    #[test]
    fn long_strings_use_continue_cards() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("long.fits");
        let long = "x".repeat(150);
        write_fits(
            &path,
            &[Card::str("LONGKEY", &long, "")],
            &[],
            &WriteOptions::default(),
        )
        .unwrap();
        let cards = header_cards(&raw_bytes(&path));
        assert!(cards.iter().any(|c| c.starts_with("CONTINUE")));
        let mut f = FitsFile::open(&path).unwrap();
        let hdu = f.primary_hdu().unwrap();
        // fitsio's read_key truncates CONTINUE strings; check the start only.
        assert!(
            hdu.read_key::<String>(&mut f, "LONGKEY")
                .unwrap()
                .starts_with("xxxx")
        );
    }

    #[test]
    fn bad_input_is_an_error_not_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.fits.gz");
        let image = ImageHdu::new("X", &[2, 2], ImageData::F32(vec![0.0; 3]));
        let err = write_fits(&path, &[], &[image], &WriteOptions::default()).unwrap_err();
        assert!(matches!(
            err,
            FitsWriteError::ShapeMismatch {
                expected: 4,
                len: 3,
                ..
            }
        ));
        let nan_card = Card::float("BAD", f64::NAN, "");
        let err = write_fits(&path, &[nan_card], &[], &WriteOptions::default()).unwrap_err();
        assert!(matches!(err, FitsWriteError::BadCard { .. }), "{err}");
        assert!(err.to_string().contains("bad.fits.gz"));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn nan_pixels_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nan.fits");
        let image = ImageHdu::new("X", &[2], ImageData::F32(vec![f32::NAN, 1.0]));
        write_fits(&path, &[], &[image], &WriteOptions::default()).unwrap();
        let mut f = FitsFile::open(&path).unwrap();
        let hdu = f.hdu("X").unwrap();
        let values: Vec<f32> = hdu.read_image(&mut f).unwrap();
        assert!(values[0].is_nan() && values[1] == 1.0);
    }
}
