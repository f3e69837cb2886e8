//! Real MaNGA galaxy geometry (IFU size, shape, size, redshift, sky position) for the simulator,
//! and the MaNGA-like names (plate-IFU, MaNGA-ID) of simulated galaxies.
//!
//! The table is derived once from the DRPall-like catalogue `drpcomplete_v2_7_1.fits` by
//! `scripts/derive_geometry_table.py` and compiled into the binary, so simulated surveys inherit
//! the real survey's mix of bundle sizes, inclinations and redshifts without any download.

use rand::Rng;

use crate::csv::Table;

/// The compact geometry table (CSV; first line a `#` provenance comment, then a header).
const GEOMETRY_CSV: &str = include_str!("../../assets/manga_geometry.csv");

/// One real galaxy's geometry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Geometry {
    /// Fibres in the IFU bundle: 19, 37, 61, 91 or 127.
    pub ifu_size: u32,
    /// Ellipticity 1 − b/a.
    pub ell: f64,
    /// Position angle of the major axis, degrees East of North.
    pub pa_deg: f64,
    /// Effective radius, arcsec.
    pub reff_arcsec: f64,
    /// Redshift.
    pub z: f64,
    /// Right ascension, degrees.
    pub ra_deg: f64,
    /// Declination, degrees.
    pub dec_deg: f64,
}

/// The columns [`geometry_table`] reads, in the order of [`Geometry`]'s fields.
const COLUMNS: [&str; 7] = [
    "ifu_size",
    "ell",
    "pa_deg",
    "reff_arcsec",
    "z",
    "ra_deg",
    "dec_deg",
];

/// Parses the embedded table. The table ships with the binary and is checked by a unit test,
/// so a malformed row is a build defect; such rows are skipped rather than aborting a survey.
pub fn geometry_table() -> Vec<Geometry> {
    let Ok(table) = Table::parse(GEOMETRY_CSV) else {
        return Vec::new();
    };
    let Ok(columns) = COLUMNS
        .iter()
        .map(|name| table.column(name))
        .collect::<Result<Vec<usize>, String>>()
    else {
        return Vec::new();
    };
    table
        .records
        .iter()
        .filter_map(|record| {
            let values = columns
                .iter()
                .map(|&i| record.fields.get(i)?.parse::<f64>().ok())
                .collect::<Option<Vec<f64>>>()?;
            let [ifu, ell, pa_deg, reff_arcsec, z, ra_deg, dec_deg] = values[..] else {
                return None;
            };
            Some(Geometry {
                ifu_size: ifu as u32,
                ell,
                pa_deg,
                reff_arcsec,
                z,
                ra_deg,
                dec_deg,
            })
        })
        .collect()
}

/// Side of the square spaxel grid (0.5″ spaxels) the DRP uses for a bundle of `ifu_size` fibres.
pub fn grid_size(ifu_size: u32) -> usize {
    match ifu_size {
        0..=19 => 34,
        20..=37 => 44,
        38..=61 => 54,
        62..=91 => 64,
        _ => 74,
    }
}

/// Number of hexagonal fibre rings around the central fibre (19 → 2, ..., 127 → 6).
pub fn fibre_rings(ifu_size: u32) -> u32 {
    match ifu_size {
        0..=19 => 2,
        20..=37 => 3,
        38..=61 => 4,
        62..=91 => 5,
        _ => 6,
    }
}

/// Radius (arcsec) of the hexagon a bundle of `ifu_size` fibres covers.
pub fn coverage_radius_for(ifu_size: u32) -> f64 {
    super::render::coverage_radius(fibre_rings(ifu_size))
}

/// IFU designs per plate: MaNGA plates carry 2×19, 4×37, 4×61, 2×91 and 5×127-fibre bundles.
fn designs_per_plate(ifu_size: u32) -> u32 {
    match ifu_size {
        19 | 91 => 2,
        37 | 61 => 4,
        _ => 5,
    }
}

/// Assigns unique, real-looking plate-IFU names and MaNGA IDs to a survey's galaxies, in index
/// order, so names depend only on the seed and the IFU sizes drawn.
pub struct Namer {
    plates: Vec<u32>,
    next_plate: u32,
    used_per_size: [u32; 5],
    mangaid_base: u32,
}

impl Namer {
    /// A namer whose first plate and MaNGA-ID range depend on `rng`.
    pub fn new(rng: &mut impl Rng) -> Self {
        Self {
            plates: Vec::new(),
            next_plate: 7443 + rng.random_range(0..400),
            used_per_size: [0; 5],
            mangaid_base: rng.random_range(10_000..400_000),
        }
    }

    fn size_slot(ifu_size: u32) -> usize {
        match ifu_size {
            19 => 0,
            37 => 1,
            61 => 2,
            91 => 3,
            _ => 4,
        }
    }

    /// The next (plate, ifudesign) for a bundle of this size: bundles of one size fill plate
    /// after plate (e.g. 12701..12705 on a plate), and plates are shared across sizes.
    pub fn plate_ifu(&mut self, ifu_size: u32, rng: &mut impl Rng) -> (u32, u32) {
        let slot = Self::size_slot(ifu_size);
        let per_plate = designs_per_plate(ifu_size);
        let used = self.used_per_size[slot];
        self.used_per_size[slot] += 1;
        let plate_index = (used / per_plate) as usize;
        while self.plates.len() <= plate_index {
            self.plates.push(self.next_plate);
            // Real plate numbers are sparse: skip a few now and then.
            self.next_plate += 1 + rng.random_range(0..3);
        }
        let size = if slot == 4 { 127 } else { ifu_size };
        (self.plates[plate_index], size * 100 + 1 + used % per_plate)
    }

    /// MaNGA-ID of the galaxy with this index (`1-NNNNNN`, unique within the survey).
    pub fn mangaid(&self, index: usize) -> String {
        format!("1-{}", self.mangaid_base as usize + index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn embedded_table_is_complete_and_plausible() {
        let table = geometry_table();
        let data_rows = GEOMETRY_CSV.lines().filter(|l| !l.starts_with('#')).count() - 1;
        assert_eq!(table.len(), data_rows, "every row parses");
        assert!(table.len() > 8000);
        for g in &table {
            assert!([19, 37, 61, 91, 127].contains(&g.ifu_size), "{g:?}");
            assert!((0.0..0.95).contains(&g.ell), "{g:?}");
            assert!((0.0..=180.0).contains(&g.pa_deg), "{g:?}");
            assert!(g.reff_arcsec > 0.0 && g.z > 0.0 && g.z < 0.3, "{g:?}");
        }
        for size in [19, 37, 61, 91, 127] {
            assert!(
                table.iter().filter(|g| g.ifu_size == size).count() > 500,
                "{size}"
            );
        }
    }

    #[test]
    fn names_are_unique_and_real_looking() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut namer = Namer::new(&mut rng);
        let mut seen = std::collections::HashSet::new();
        for i in 0..3000 {
            let size = [19, 37, 61, 91, 127][i % 5];
            let (plate, ifu) = namer.plate_ifu(size, &mut rng);
            assert!(plate >= 7443, "{plate}");
            assert_eq!(ifu / 100, size);
            assert!((1..=5).contains(&(ifu % 100)));
            assert!(
                seen.insert(format!("{plate}-{ifu}")),
                "duplicate {plate}-{ifu}"
            );
        }
        assert_ne!(namer.mangaid(0), namer.mangaid(1));
    }

    #[test]
    fn grid_sizes_follow_bundle_sizes() {
        let sizes: Vec<usize> = [19, 37, 61, 91, 127]
            .iter()
            .map(|&s| grid_size(s))
            .collect();
        assert_eq!(sizes, [34, 44, 54, 64, 74]);
    }
}
