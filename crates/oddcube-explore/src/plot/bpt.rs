//! Spatially resolved BPT class maps from normalised line maps (input or reconstruction), with
//! the class colours shared by the PNG figures and the web explorer.
//!
//! Ratios of normalised fluxes equal ratios of physical fluxes because every line of a galaxy is
//! divided by the same scale; an asinh stretch is undone first. The reconstruction has no noise
//! of its own, so its S/N uses the input's weights: "would this reconstructed flux be detected at
//! S/N ≥ 3 with the measured errors".

use oddcube_data::bpt::{BptClass, BptLines, BptOptions, classify};
use oddcube_data::preprocess::Stretch;
use plotters::style::RGBColor;

use oddcube_score::{Error, Result};

/// The lines the \[NII\]/\[SII\] BPT classification needs.
pub const REQUIRED: [&str; 6] = [
    "Hb-4862",
    "OIII-5008",
    "Ha-6564",
    "NII-6585",
    "SII-6718",
    "SII-6732",
];

/// Display colour of a class (colour-blind-safe Okabe–Ito hues).
pub fn class_colour(class: BptClass) -> RGBColor {
    match class {
        BptClass::StarForming => RGBColor(0, 114, 178),
        BptClass::Composite => RGBColor(0, 158, 115),
        BptClass::Seyfert => RGBColor(213, 94, 0),
        BptClass::Liner => RGBColor(230, 159, 0),
        BptClass::Ambiguous => RGBColor(204, 121, 167),
        BptClass::Unclassified => RGBColor(245, 245, 245),
    }
}

/// Human name of a class for legends.
pub fn class_label(class: BptClass) -> &'static str {
    match class {
        BptClass::StarForming => "star-forming",
        BptClass::Composite => "composite",
        BptClass::Seyfert => "Seyfert",
        BptClass::Liner => "LINER",
        BptClass::Ambiguous => "ambiguous",
        BptClass::Unclassified => "S/N < 3",
    }
}

/// Undoes the dataset's compressive stretch on one value and its weight (first-order error
/// propagation, the inverse of [`Stretch::apply`]).
pub fn unstretch(stretch: Stretch, y: f32, w: f32) -> (f64, f64) {
    match stretch {
        Stretch::None => (f64::from(y), f64::from(w)),
        Stretch::Asinh { softening } => {
            let x = softening * (f64::from(y) / softening).sinh();
            let t = x / softening;
            (x, f64::from(w) / (1.0 + t * t))
        }
    }
}

/// The BPT class of every spaxel of one galaxy: `flux` and `w` are `[L, S, S]` row-major in the
/// order of `lines`. `None` marks spaxels with no usable measurement in any required line.
/// Uses the \[NII\] and \[SII\] diagrams (Kewley+06 classes, S/N ≥ 3 per line).
///
/// Errors when a required line is not in `lines` or the maps have the wrong length.
pub fn class_map(
    flux: &[f32],
    w: &[f32],
    lines: &[String],
    size: usize,
    stretch: Stretch,
) -> Result<Vec<Option<BptClass>>> {
    let pixels = size * size;
    oddcube_score::error::check_len("line maps", flux.len(), lines.len() * pixels)?;
    oddcube_score::error::check_len("weight maps", w.len(), lines.len() * pixels)?;
    let mut index = [0usize; 6];
    for (slot, name) in REQUIRED.iter().enumerate() {
        index[slot] =
            lines
                .iter()
                .position(|l| l == name)
                .ok_or_else(|| Error::InvalidParameter {
                    name: "lines".to_string(),
                    value: lines.join(","),
                    reason: format!("the BPT map needs {name}, which this line set lacks"),
                })?;
    }
    let options = BptOptions {
        min_snr: 3.0,
        use_oi: false,
    };
    Ok((0..pixels)
        .map(|p| {
            if index
                .iter()
                .all(|&l| w[l * pixels + p].is_nan() || w[l * pixels + p] <= 0.0)
            {
                return None;
            }
            let lookup = |name: &str| {
                let l = index[REQUIRED.iter().position(|r| *r == name)?];
                Some(unstretch(stretch, flux[l * pixels + p], w[l * pixels + p]))
            };
            Some(classify(&BptLines::from_lookup(lookup), &options))
        })
        .collect())
}

/// Counts of each class in a map (masked spaxels not counted), in [`BptClass::ALL`] order.
pub fn class_counts(map: &[Option<BptClass>]) -> [usize; 6] {
    let mut counts = [0usize; 6];
    for class in map.iter().flatten() {
        if let Some(slot) = BptClass::ALL.iter().position(|c| c == class) {
            counts[slot] += 1;
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines() -> Vec<String> {
        oddcube_data::lines::PRESET_DR17
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    /// A 2×2 galaxy: pixel 0 star-forming, 1 Seyfert, 2 too faint, 3 masked.
    fn galaxy() -> (Vec<f32>, Vec<f32>) {
        let names = lines();
        let pixels = 4;
        let mut x = vec![0f32; names.len() * pixels];
        let mut w = vec![0f32; names.len() * pixels];
        let set = |x: &mut Vec<f32>, w: &mut Vec<f32>, name: &str, p: usize, flux: f32| {
            let l = names.iter().position(|n| n == name).unwrap();
            x[l * pixels + p] = flux;
            w[l * pixels + p] = 1e4;
        };
        // Star-forming: log NII/Ha = -0.5, log OIII/Hb = -0.3, log SII/Ha = -0.5.
        for (name, f) in [
            ("Ha-6564", 3.0),
            ("Hb-4862", 1.0),
            ("NII-6585", 0.95),
            ("OIII-5008", 0.5),
            ("SII-6718", 0.5),
            ("SII-6732", 0.45),
        ] {
            set(&mut x, &mut w, name, 0, f);
        }
        // Seyfert: NII/Ha = 1, OIII/Hb = 10, SII/Ha = 0.6.
        for (name, f) in [
            ("Ha-6564", 3.0),
            ("Hb-4862", 1.0),
            ("NII-6585", 3.0),
            ("OIII-5008", 10.0),
            ("SII-6718", 1.0),
            ("SII-6732", 0.8),
        ] {
            set(&mut x, &mut w, name, 1, f);
        }
        // Faint: S/N = 0.001 × 100 < 3.
        for name in REQUIRED {
            set(&mut x, &mut w, name, 2, 0.001);
        }
        (x, w)
    }

    #[test]
    fn classes_follow_the_line_ratios() {
        let (x, w) = galaxy();
        let map = class_map(&x, &w, &lines(), 2, Stretch::None).unwrap();
        assert_eq!(
            map,
            vec![
                Some(BptClass::StarForming),
                Some(BptClass::Seyfert),
                Some(BptClass::Unclassified),
                None
            ]
        );
        assert_eq!(class_counts(&map), [1, 0, 1, 0, 0, 1]);
    }

    #[test]
    fn the_asinh_stretch_is_undone_before_taking_ratios() {
        let (x, w) = galaxy();
        let stretch = Stretch::Asinh { softening: 0.1 };
        let (xs, ws): (Vec<f32>, Vec<f32>) =
            x.iter().zip(&w).map(|(&a, &b)| stretch.apply(a, b)).unzip();
        let map = class_map(&xs, &ws, &lines(), 2, stretch).unwrap();
        assert_eq!(map[0], Some(BptClass::StarForming));
        assert_eq!(map[1], Some(BptClass::Seyfert));
        let (back, wb) = unstretch(stretch, xs[5], ws[5]);
        assert!(
            (back - f64::from(x[5])).abs() < 1e-4
                && (wb - f64::from(w[5])).abs() / f64::from(w[5]).max(1.0) < 1e-3
        );
    }

    #[test]
    fn a_missing_line_is_an_error() {
        let names: Vec<String> = lines().into_iter().filter(|l| l != "NII-6585").collect();
        let x = vec![0f32; names.len()];
        let err = class_map(&x, &x, &names, 1, Stretch::None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("NII-6585"), "{err}");
    }
}
