//! Writing a FITS binary table (BINTABLE): an empty primary HDU and one table extension, as
//! bytes, for catalogues that astropy's `Table.read`, TOPCAT and cfitsio open.
//!
//! Encoded by hand rather than through cfitsio ([`super::write`]): a table is small (fixed-width
//! rows, big-endian values, 80-byte header cards, 2880-byte blocks), the `fitsio` crate cannot
//! write logical columns, and building the bytes in memory lets the caller replace the file
//! atomically. Nothing time-dependent is written (no DATE card, no checksum), so equal inputs
//! give byte-identical files. cfitsio reads the result back in the tests.
//!
//! Column types: `D` (f64, NaN kept), `K` (i64), `L` (logical `T`/`F`) and `nA` (fixed-width
//! ASCII, space-padded to the longest value; a character outside printable ASCII, which FITS
//! text may not hold, is written as `?`).

use crate::fits::write::{Card, CardValue};

/// FITS block size: headers and data are padded to multiples of it.
pub const BLOCK: usize = 2880;
/// One header card.
const CARD: usize = 80;

/// The values of one table column.
#[derive(Debug, Clone, PartialEq)]
pub enum TableData {
    /// 64-bit floats (`TFORM = 'D'`).
    F64(Vec<f64>),
    /// 64-bit signed integers (`TFORM = 'K'`).
    I64(Vec<i64>),
    /// Logicals (`TFORM = 'L'`).
    Bool(Vec<bool>),
    /// Strings (`TFORM = 'nA'`, n the longest value in bytes, at least 1).
    Str(Vec<String>),
}

impl TableData {
    /// Number of rows.
    pub fn len(&self) -> usize {
        match self {
            TableData::F64(v) => v.len(),
            TableData::I64(v) => v.len(),
            TableData::Bool(v) => v.len(),
            TableData::Str(v) => v.len(),
        }
    }

    /// True when the column has no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes per row and the TFORM code.
    fn form(&self) -> (usize, String) {
        match self {
            TableData::F64(_) => (8, "D".to_string()),
            TableData::I64(_) => (8, "K".to_string()),
            TableData::Bool(_) => (1, "L".to_string()),
            TableData::Str(v) => {
                let width = v
                    .iter()
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
                    .max(1);
                (width, format!("{width}A"))
            }
        }
    }

    /// Appends row `row` (`width` bytes for strings) to `out`, big-endian.
    fn encode(&self, row: usize, width: usize, out: &mut Vec<u8>) {
        match self {
            TableData::F64(v) => out.extend_from_slice(&v[row].to_be_bytes()),
            TableData::I64(v) => out.extend_from_slice(&v[row].to_be_bytes()),
            TableData::Bool(v) => out.push(if v[row] { b'T' } else { b'F' }),
            TableData::Str(v) => {
                let start = out.len();
                out.extend(v[row].chars().map(|c| {
                    if c.is_ascii() && !c.is_ascii_control() {
                        c as u8
                    } else {
                        b'?'
                    }
                }));
                out.resize(start + width, b' ');
            }
        }
    }
}

/// One column: its name (`TTYPE`), unit (`TUNIT`, omitted when `None`) and values.
#[derive(Debug, Clone, PartialEq)]
pub struct TableColumn {
    /// Column name.
    pub name: String,
    /// Unit in the FITS/IAU string convention (`deg`, `arcsec`, `arcsec2`), if the column has one.
    pub unit: Option<String>,
    /// The values.
    pub data: TableData,
}

/// Why a table could not be encoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TableError {
    /// Columns of different lengths.
    #[error("column {name} has {len} rows, the first column {expected}")]
    Length {
        /// The column.
        name: String,
        /// Its rows.
        len: usize,
        /// The first column's rows.
        expected: usize,
    },
    /// A header card that FITS cannot hold (non-ASCII text, a string over 68 characters, a
    /// keyword over 8 characters, a non-finite number).
    #[error("header card {key}: {reason}")]
    BadCard {
        /// Its keyword.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

/// The bytes of a FITS file: a primary HDU without data carrying `primary_cards`, then one
/// BINTABLE extension named `extname` with `columns` and, after the column cards,
/// `table_cards`.
pub fn bintable_file(
    extname: &str,
    columns: &[TableColumn],
    primary_cards: &[Card],
    table_cards: &[Card],
) -> Result<Vec<u8>, TableError> {
    let rows = columns.first().map_or(0, |c| c.data.len());
    if let Some(c) = columns.iter().find(|c| c.data.len() != rows) {
        return Err(TableError::Length {
            name: c.name.clone(),
            len: c.data.len(),
            expected: rows,
        });
    }
    let mut out = Vec::new();
    let mut primary = vec![
        Card::bool("SIMPLE", true, "conforms to FITS standard"),
        Card::int("BITPIX", 8, "array data type"),
        Card::int("NAXIS", 0, "no data in the primary HDU"),
        Card::bool("EXTEND", true, "extensions follow"),
    ];
    primary.extend_from_slice(primary_cards);
    write_header(&primary, &mut out)?;

    let forms: Vec<(usize, String)> = columns.iter().map(|c| c.data.form()).collect();
    let row_bytes: usize = forms.iter().map(|(w, _)| w).sum();
    let mut header = vec![
        Card::str("XTENSION", "BINTABLE", "binary table extension"),
        Card::int("BITPIX", 8, "8-bit bytes"),
        Card::int("NAXIS", 2, "2-dimensional table"),
        Card::int("NAXIS1", row_bytes as i64, "bytes per row"),
        Card::int("NAXIS2", rows as i64, "rows"),
        Card::int("PCOUNT", 0, "no heap"),
        Card::int("GCOUNT", 1, "one data group"),
        Card::int("TFIELDS", columns.len() as i64, "columns"),
    ];
    for (i, (column, (_, form))) in columns.iter().zip(&forms).enumerate() {
        let n = i + 1;
        header.push(Card::str(&format!("TTYPE{n}"), &column.name, ""));
        header.push(Card::str(&format!("TFORM{n}"), form, ""));
        if let Some(unit) = &column.unit {
            header.push(Card::str(&format!("TUNIT{n}"), unit, ""));
        }
    }
    header.push(Card::str("EXTNAME", extname, "extension name"));
    header.extend_from_slice(table_cards);
    write_header(&header, &mut out)?;

    let start = out.len();
    out.reserve(rows * row_bytes + BLOCK);
    for row in 0..rows {
        for (column, (width, _)) in columns.iter().zip(&forms) {
            column.data.encode(row, *width, &mut out);
        }
    }
    let data_len = out.len() - start;
    out.resize(start + data_len.next_multiple_of(BLOCK), 0);
    Ok(out)
}

/// Appends the header `cards` plus `END`, space-padded to whole blocks.
fn write_header(cards: &[Card], out: &mut Vec<u8>) -> Result<(), TableError> {
    let start = out.len();
    for card in cards {
        out.extend_from_slice(format_card(card)?.as_bytes());
    }
    out.extend_from_slice(format!("{:<CARD$}", "END").as_bytes());
    let len = out.len() - start;
    out.resize(start + len.next_multiple_of(BLOCK), b' ');
    Ok(())
}

/// One 80-character card in the FITS fixed format: keyword in columns 1–8, `= ` in 9–10, a
/// number or logical right-aligned to column 30, a string quoted from column 11 (padded to
/// at least 8 characters inside the quotes), then ` / comment` as far as it fits.
fn format_card(card: &Card) -> Result<String, TableError> {
    let bad = |reason: &str| TableError::BadCard {
        key: card.key.clone(),
        reason: reason.to_string(),
    };
    let key = &card.key;
    if key.is_empty()
        || key.len() > 8
        || !key
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        return Err(bad("keyword must be 1–8 characters of A–Z, 0–9, - or _"));
    }
    let value = match &card.value {
        CardValue::Str(s) => {
            if !s.chars().all(|c| c.is_ascii() && !c.is_ascii_control()) {
                return Err(bad("string values must be printable ASCII"));
            }
            let quoted = s.replace('\'', "''");
            if quoted.len() > 68 {
                return Err(bad(
                    "string value longer than one card holds (68 characters)",
                ));
            }
            format!("'{quoted:<8}'")
        }
        CardValue::Int(i) => format!("{i:>20}"),
        CardValue::Bool(b) => format!("{:>20}", if *b { "T" } else { "F" }),
        CardValue::Float(f) => {
            if !f.is_finite() {
                return Err(bad("a FITS header number must be finite"));
            }
            // Rust's shortest round-trip form, with the exponent letter FITS requires.
            let mut text = format!("{f:?}").replace('e', "E");
            if !text.contains(['.', 'E']) {
                text.push_str(".0");
            }
            format!("{text:>20}")
        }
    };
    let mut line = format!("{key:<8}= {value}");
    if let Some(comment) = &card.comment {
        let comment: String = comment
            .chars()
            .map(|c| {
                if c.is_ascii() && !c.is_ascii_control() {
                    c
                } else {
                    '?'
                }
            })
            .collect();
        line.push_str(" / ");
        line.push_str(&comment);
    }
    // A comment that does not fit is cut: it is informational, the value always fits.
    line.truncate(CARD);
    Ok(format!("{line:<CARD$}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fits::read::{CardValue as ReadValue, FitsFile, HduKind};

    fn sample() -> Vec<TableColumn> {
        vec![
            TableColumn {
                name: "plateifu".to_string(),
                unit: None,
                data: TableData::Str(vec![
                    "7815-3702".to_string(),
                    "12-1901".to_string(),
                    "café".to_string(),
                ]),
            },
            TableColumn {
                name: "ra".to_string(),
                unit: Some("deg".to_string()),
                data: TableData::F64(vec![317.903201533, f64::NAN, -0.5]),
            },
            TableColumn {
                name: "rank".to_string(),
                unit: None,
                data: TableData::I64(vec![3, 1, 4_000_000_000]),
            },
            TableColumn {
                name: "fdr_flag".to_string(),
                unit: None,
                data: TableData::Bool(vec![true, false, true]),
            },
            TableColumn {
                name: "line:Ha-6564".to_string(),
                unit: None,
                data: TableData::F64(vec![0.25, 0.5, 0.0]),
            },
        ]
    }

    fn encode() -> Vec<u8> {
        bintable_file(
            "CATALOG",
            &sample(),
            &[Card::str("ORIGIN", "oddcube", "written by")],
            &[Card::float("FDR", 0.05, "false-discovery level")],
        )
        .unwrap()
    }

    #[test]
    fn blocks_header_and_rows_read_back_with_the_project_reader() {
        let bytes = encode();
        assert_eq!(bytes.len() % BLOCK, 0);
        let fits = FitsFile::from_bytes(bytes.clone(), std::path::Path::new("t.fits")).unwrap();
        assert_eq!(fits.hdus().len(), 2);
        assert_eq!(fits.primary().str("ORIGIN"), Some("oddcube"));
        let table = fits.hdu("CATALOG").unwrap();
        assert_eq!(table.kind, HduKind::BinTable);
        // Row: 9A + D + K + L + D = 9 + 8 + 8 + 1 + 8.
        assert_eq!(table.int("NAXIS1"), Some(34));
        assert_eq!(table.int("NAXIS2"), Some(3));
        assert_eq!(table.str("TTYPE5"), Some("line:Ha-6564"));
        assert_eq!(table.str("TFORM1"), Some("9A"));
        assert_eq!(table.str("TUNIT2"), Some("deg"));
        assert_eq!(table.card("TUNIT1"), None, "no unit, no card");
        assert!(matches!(table.card("FDR"), Some(ReadValue::Float(f)) if *f == 0.05));
        let data = fits.raw_data(table);
        let row = |r: usize| &data[r * 34..(r + 1) * 34];
        assert_eq!(&row(0)[..9], b"7815-3702");
        assert_eq!(&row(1)[..9], b"12-1901  ");
        assert_eq!(&row(2)[..9], b"caf?     ", "non-ASCII becomes ?");
        assert_eq!(
            f64::from_be_bytes(row(0)[9..17].try_into().unwrap()),
            317.903201533
        );
        assert!(f64::from_be_bytes(row(1)[9..17].try_into().unwrap()).is_nan());
        assert_eq!(
            i64::from_be_bytes(row(2)[17..25].try_into().unwrap()),
            4_000_000_000
        );
        assert_eq!((row(0)[25], row(1)[25]), (b'T', b'F'));
        assert_eq!(f64::from_be_bytes(row(1)[26..34].try_into().unwrap()), 0.5);
        // The data are zero-padded after the last row.
        assert!(data[3 * 34..].iter().all(|&b| b == 0));
        assert_eq!(encode(), bytes, "byte-identical for equal inputs");
    }

    /// cfitsio, the reference FITS library (and what TOPCAT's readers agree with), reads the
    /// table back: columns by name, units, values.
    #[test]
    fn cfitsio_reads_the_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.fits");
        std::fs::write(&path, encode()).unwrap();
        let mut f = fitsio::FitsFile::open(&path).unwrap();
        let hdu = f.hdu("CATALOG").unwrap();
        let names: Vec<String> = hdu.read_col(&mut f, "plateifu").unwrap();
        assert_eq!(names, ["7815-3702", "12-1901", "caf?"]);
        let ra: Vec<f64> = hdu.read_col(&mut f, "ra").unwrap();
        assert_eq!(ra[0], 317.903201533);
        assert!(ra[1].is_nan());
        let rank: Vec<i64> = hdu.read_col(&mut f, "rank").unwrap();
        assert_eq!(rank, [3, 1, 4_000_000_000]);
        let share: Vec<f64> = hdu.read_col(&mut f, "line:Ha-6564").unwrap();
        assert_eq!(share, [0.25, 0.5, 0.0]);
        let unit: String = hdu.read_key(&mut f, "TUNIT2").unwrap();
        assert_eq!(unit, "deg");
        let fdr: f64 = hdu.read_key(&mut f, "FDR").unwrap();
        assert_eq!(fdr, 0.05);
    }

    #[test]
    fn empty_tables_and_bad_input() {
        let empty = vec![TableColumn {
            name: "x".to_string(),
            unit: None,
            data: TableData::Str(Vec::new()),
        }];
        let bytes = bintable_file("T", &empty, &[], &[]).unwrap();
        assert_eq!(bytes.len(), 2 * BLOCK, "two headers, no data block");
        let fits = FitsFile::from_bytes(bytes, std::path::Path::new("t.fits")).unwrap();
        assert_eq!(fits.hdu("T").unwrap().str("TFORM1"), Some("1A"));

        let mut uneven = sample();
        uneven[1].data = TableData::F64(vec![1.0]);
        assert!(matches!(
            bintable_file("T", &uneven, &[], &[]),
            Err(TableError::Length { .. })
        ));
        let long = Card::str("NOTE", &"x".repeat(69), "");
        assert!(matches!(
            bintable_file("T", &[], &[long], &[]),
            Err(TableError::BadCard { .. })
        ));
        let nan = Card::float("FDR", f64::NAN, "");
        assert!(bintable_file("T", &[], &[], &[nan]).is_err());
        let key = Card::int("lower", 1, "");
        assert!(bintable_file("T", &[], &[key], &[]).is_err());
    }

    #[test]
    fn cards_follow_the_fixed_format() {
        let card = |c: Card| format_card(&c).unwrap();
        assert_eq!(
            card(Card::int("NAXIS", 2, "")),
            format!("{:<80}", "NAXIS   =                    2")
        );
        assert_eq!(
            card(Card::str("TTYPE1", "ra", "")),
            format!("{:<80}", "TTYPE1  = 'ra      '")
        );
        assert_eq!(
            card(Card::str("ORIGIN", "it's", "c")),
            format!("{:<80}", "ORIGIN  = 'it''s   ' / c")
        );
        assert_eq!(
            card(Card::float("X", 1e-7, "")),
            format!("{:<80}", "X       =                 1E-7")
        );
        assert_eq!(
            card(Card::float("Y", 3.0, "")),
            format!("{:<80}", "Y       =                  3.0")
        );
        let long_comment = card(Card::int("N", 1, &"c".repeat(100)));
        assert_eq!(long_comment.len(), 80);
    }
}
