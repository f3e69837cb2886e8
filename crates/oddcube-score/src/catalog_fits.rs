//! `catalog.fits`: the catalogue as a FITS binary table, for astropy (`Table.read`) and
//! TOPCAT, written next to `catalog.parquet` / `catalog.csv` with the same columns in the same
//! order (one row per galaxy, dataset order).
//!
//! Column types: floats as `D` (NaN kept), unsigned integers as `K` (64-bit, so a u32 bitmask
//! never looks negative), booleans as `L`, strings as fixed-width `A`. Columns with a physical
//! unit carry `TUNIT` ([`column_unit`]); everything else is dimensionless or a count. The file
//! holds no timestamp: the RESULTS `manifest.json` is the provenance.

use oddcube_data::fits::table::{TableColumn, TableData, bintable_file};
use oddcube_data::fits::write::Card;

use crate::error::Result;
use crate::results::{CATALOG_FITS, Catalog, Column, invalid};

/// EXTNAME of the table HDU.
pub const CATALOG_EXTNAME: &str = "CATALOG";

/// The FITS unit string of a catalogue column, `None` when it has none (dimensionless scores,
/// counts, flags, names). Units follow the FITS/IAU convention astropy parses.
pub fn column_unit(name: &str) -> Option<&'static str> {
    match name {
        "ra" | "dec" => Some("deg"),
        "region_dx" | "region_dy" => Some("arcsec"),
        "region_area" => Some("arcsec2"),
        _ => None,
    }
}

impl Catalog {
    /// The bytes of `catalog.fits` (see the module docs).
    pub fn to_fits(&self) -> Result<Vec<u8>> {
        let columns: Vec<TableColumn> = self
            .columns
            .iter()
            .map(|(name, column)| TableColumn {
                name: name.clone(),
                unit: column_unit(name).map(str::to_string),
                data: match column {
                    Column::F64(v) => TableData::F64(v.clone()),
                    Column::U32(v) => TableData::I64(v.iter().map(|&u| i64::from(u)).collect()),
                    Column::Str(v) => TableData::Str(v.clone()),
                    Column::Bool(v) => TableData::Bool(v.clone()),
                },
            })
            .collect();
        let primary = [
            Card::str("ORIGIN", "oddcube", "MaNGA emission-line anomaly catalogue"),
            Card::str(
                "ODDCVER",
                env!("CARGO_PKG_VERSION"),
                "oddcube version that wrote it",
            ),
        ];
        bintable_file(CATALOG_EXTNAME, &columns, &primary, &[])
            .map_err(|e| invalid(std::path::Path::new(CATALOG_FITS), e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oddcube_data::fits::read::FitsFile;

    #[test]
    fn every_column_in_order_with_units() {
        let mut c = Catalog::default();
        c.push("plateifu", Column::Str(vec!["1-2".into(), "3-4".into()]))
            .unwrap();
        c.push("ra", Column::F64(vec![1.5, f64::NAN])).unwrap();
        c.push("rank", Column::U32(vec![2, u32::MAX])).unwrap();
        c.push("fdr_flag", Column::Bool(vec![true, false])).unwrap();
        c.push("region_area", Column::F64(vec![0.0, 2.0])).unwrap();
        let bytes = c.to_fits().unwrap();
        let fits = FitsFile::from_bytes(bytes, std::path::Path::new("catalog.fits")).unwrap();
        let hdu = fits.hdu(CATALOG_EXTNAME).unwrap();
        let names: Vec<&str> = (1..=5)
            .map(|i| hdu.str(&format!("TTYPE{i}")).unwrap())
            .collect();
        assert_eq!(names, ["plateifu", "ra", "rank", "fdr_flag", "region_area"]);
        assert_eq!(hdu.str("TUNIT2"), Some("deg"));
        assert_eq!(hdu.str("TUNIT5"), Some("arcsec2"));
        assert_eq!(hdu.str("TFORM3"), Some("K"));
        assert_eq!(hdu.int("NAXIS2"), Some(2));
    }
}
