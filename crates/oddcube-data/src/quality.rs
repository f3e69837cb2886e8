//! Galaxy-level quality flags of MaNGA: the DAP's `DAPQUAL` and the DRP's `DRP3QUAL` bitmasks
//! from a MAPS primary header, their bit names, and the CRITICAL test.
//!
//! The bit definitions are those of `sdssMaskbits.par` (idlutils for SDSS-IV) that the DR17
//! DAP distributes and the SDSS MaNGA bitmask pages list (`MANGA_DAPQUAL`, `MANGA_DRP3QUAL`).
//! A set bit this table does not know is named `BIT<n>`, so no information is dropped when a
//! later data release adds bits.
//!
//! Why oddcube keeps them: a galaxy the pipelines marked CRITICAL (a failed reduction or fit)
//! has maps that are wrong in ways an autoencoder has never seen, so it rises to the top of
//! an anomaly ranking for reasons that are not astrophysical. The flags travel from ingest
//! (`galaxies.*`) to the catalogue (`dapqual`, `drp3qual`, their names, and `critical`).

/// Bit 30 of both `DAPQUAL` and `DRP3QUAL`: a critical failure of the pipeline.
pub const CRITICAL_BIT: u32 = 30;

/// `MANGA_DAPQUAL`: `(bit, name, meaning)`.
pub const DAPQUAL_BITS: &[(u32, &str, &str)] = &[
    (0, "FORESTAR", "a foreground star within the data cube"),
    (
        1,
        "BADZ",
        "NSA redshift does not match the derived redshift",
    ),
    (2, "LINELESS", "no emission lines in the data cube"),
    (3, "PPXFFAIL", "pPXF fails to fit this object"),
    (
        4,
        "SINGLEBIN",
        "Voronoi binning put all spectra in a single bin",
    ),
    (
        5,
        "BADGEOM",
        "invalid input geometry: elliptical coordinates and effective radius are meaningless",
    ),
    (28, "DRPCRIT", "critical failure in the DRP"),
    (29, "DAPCRIT", "critical failure in the DAP"),
    (30, "CRITICAL", "critical failure in the DRP or the DAP"),
];

/// `MANGA_DRP3QUAL`: `(bit, name, meaning)`.
pub const DRP3QUAL_BITS: &[(u32, &str, &str)] = &[
    (0, "RETIRED", "bit retired from use"),
    (1, "BADDEPTH", "IFU does not reach the target depth"),
    (2, "SKYSUBBAD", "bad sky subtraction in one or more frames"),
    (3, "HIGHSCAT", "high scattered light in one or more frames"),
    (4, "BADASTROM", "bad astrometry in one or more frames"),
    (
        5,
        "VARIABLELSF",
        "LSF varies significantly between component spectra",
    ),
    (
        6,
        "BADOMEGA",
        "omega greater than threshold in one or more sets",
    ),
    (7, "BADSET", "one or more sets are bad"),
    (8, "BADFLUX", "bad flux calibration"),
    (9, "BADPSF", "PSF estimate may be bad"),
    (10, "MANYDEAD", "many dead fibres"),
    (11, "RETIRED2", "bit retired (moved into MASTAR_QUAL)"),
    (30, "CRITICAL", "critical failure in one or more frames"),
];

/// The names of the bits set in `mask`, lowest bit first, joined by `|` (`""` when none):
/// known bits by their `table` name, others as `BIT<n>`.
pub fn bit_names(mask: u32, table: &[(u32, &str, &str)]) -> String {
    (0..32)
        .filter(|bit| mask & (1u32 << bit) != 0)
        .map(|bit| match table.iter().find(|(b, _, _)| *b == bit) {
            Some((_, name, _)) => (*name).to_string(),
            None => format!("BIT{bit}"),
        })
        .collect::<Vec<_>>()
        .join("|")
}

/// `DAPQUAL` bit names (see [`bit_names`]).
pub fn dapqual_names(mask: u32) -> String {
    bit_names(mask, DAPQUAL_BITS)
}

/// `DRP3QUAL` bit names (see [`bit_names`]).
pub fn drp3qual_names(mask: u32) -> String {
    bit_names(mask, DRP3QUAL_BITS)
}

/// True when either mask has the CRITICAL bit ([`CRITICAL_BIT`]) set: the DAP or the DRP says
/// the galaxy's data should not be used for science.
pub fn is_critical(dapqual: u32, drp3qual: u32) -> bool {
    (dapqual | drp3qual) & (1u32 << CRITICAL_BIT) != 0
}

/// A header bitmask as the unsigned 32-bit value oddcube stores. The MaNGA masks are 32-bit
/// (bits 0–30 are defined); a value outside `0..2³²` cannot be one, so it is kept as its low
/// 32 bits rather than refused — the header is still readable, and `notices` says so.
pub fn header_mask(value: Option<i64>, key: &str, notices: &mut Vec<String>) -> u32 {
    match value {
        None => 0,
        Some(v) => u32::try_from(v).unwrap_or_else(|_| {
            notices.push(format!(
                "{key} = {v} is not a 32-bit mask; keeping its low 32 bits"
            ));
            v as u32
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_known_and_unknown_bits() {
        assert_eq!(dapqual_names(0), "");
        assert_eq!(
            dapqual_names((1 << 30) | (1 << 29) | 1),
            "FORESTAR|DAPCRIT|CRITICAL"
        );
        assert_eq!(drp3qual_names((1 << 30) | (1 << 1)), "BADDEPTH|CRITICAL");
        assert_eq!(drp3qual_names(1 << 20), "BIT20");
        assert_eq!(dapqual_names(1 << 31), "BIT31");
    }

    #[test]
    fn critical_from_either_mask() {
        assert!(!is_critical(0, 0));
        assert!(!is_critical(1 << 29, 1 << 2));
        assert!(is_critical(1 << 30, 0));
        assert!(is_critical(0, 1 << 30));
    }

    #[test]
    fn header_masks_outside_32_bits_keep_low_bits_with_a_notice() {
        let mut notices = Vec::new();
        assert_eq!(header_mask(None, "DAPQUAL", &mut notices), 0);
        assert_eq!(header_mask(Some(32), "DAPQUAL", &mut notices), 32);
        assert!(notices.is_empty());
        assert_eq!(header_mask(Some(-1), "DRP3QUAL", &mut notices), u32::MAX);
        assert_eq!(notices.len(), 1);
        assert!(notices[0].contains("DRP3QUAL"), "{notices:?}");
    }
}
