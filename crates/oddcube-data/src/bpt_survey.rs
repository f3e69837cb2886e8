//! BPT classification of every galaxy's centre in a dataset (`oddcube bpt`): line fluxes summed
//! in a central aperture of the un-normalised maps, then the Kewley+06 scheme of
//! `crate::bpt` on the \[NII\], \[SII\] and \[OI\] diagrams. The labels the AGN test needs on
//! real data (`oddcube evaluate --labels bpt.csv --label-column class`).

use crate::bpt::{
    BptClass, BptLines, BptOptions, LineFlux, classify, kauffmann03_nii, kewley01_nii, kewley01_oi,
    kewley01_sii, kewley06_oi, kewley06_sii,
};
use crate::dataset::Dataset;
use crate::preprocess::Stretch;

use crate::csv;
use crate::error::DataError;

/// Side of a MaNGA spaxel on the original grid (arcsec).
pub const SPAXEL_ARCSEC: f64 = 0.5;

/// Sub-samples per output-pixel side when measuring how much of a pixel lies in the aperture.
const SUBSAMPLES: usize = 8;

/// Settings of the survey classification.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BptSurveyOptions {
    /// Aperture diameter (arcsec), centred on the galaxy centre (the grid centre).
    pub aperture_arcsec: f64,
    /// Minimum S/N of every line a diagram uses.
    pub min_snr: f64,
}

impl Default for BptSurveyOptions {
    fn default() -> Self {
        Self {
            aperture_arcsec: 2.5,
            min_snr: 3.0,
        }
    }
}

/// One galaxy's classification.
#[derive(Debug, Clone, PartialEq)]
pub struct BptRow {
    /// Plate-ifu.
    pub plateifu: String,
    /// Overall class (Kewley+06 over the diagrams available).
    pub class: BptClass,
    /// \[NII\] diagram alone: `sf`, `composite`, `agn` or `unclassified`.
    pub nii_class: &'static str,
    /// \[SII\] diagram alone: `sf`, `seyfert`, `liner` or `unclassified`.
    pub sii_class: &'static str,
    /// \[OI\] diagram alone: `sf`, `seyfert`, `liner` or `unclassified`.
    pub oi_class: &'static str,
    /// log \[NII\]/Hα (NaN when a flux is not positive).
    pub log_nii_ha: f64,
    /// log \[SII\]/Hα.
    pub log_sii_ha: f64,
    /// log \[OI\]/Hα.
    pub log_oi_ha: f64,
    /// log \[OIII\]/Hβ.
    pub log_oiii_hb: f64,
    /// Aperture fluxes (1e-17 erg/s/cm²) and S/N, in [`BptLines::CHANNELS`] order.
    pub lines: BptLines,
    /// Why something is unclassified (missing lines, low S/N); empty otherwise.
    pub note: String,
}

/// Inverts the dataset normalisation of one pixel: normalised (stretched) value and weight →
/// flux (1e-17 erg/s/cm² in the resampled pixel) and its variance. The variance ignores the
/// good-area fraction folded into the weight, so it is an upper bound (conservative S/N).
pub fn unnormalise(x: f32, w: f32, scale: f64, stretch: Stretch) -> Option<(f64, f64)> {
    if w.is_nan() || w <= 0.0 {
        return None;
    }
    let (xn, wn) = match stretch {
        Stretch::None => (f64::from(x), f64::from(w)),
        Stretch::Asinh { softening } => {
            let xn = softening * (f64::from(x) / softening).sinh();
            (xn, f64::from(w) / (1.0 + (xn / softening).powi(2)))
        }
    };
    (wn > 0.0 && wn.is_finite()).then(|| (xn * scale, scale * scale / wn))
}

/// Fraction of each pixel of a `size`×`size` grid inside a circle of `radius` pixels centred on
/// the grid centre, row-major.
pub fn aperture_fractions(size: usize, radius: f64) -> Vec<f64> {
    let centre = size as f64 / 2.0;
    let step = 1.0 / SUBSAMPLES as f64;
    let mut out = vec![0.0; size * size];
    for y in 0..size {
        for x in 0..size {
            let mut inside = 0usize;
            for sy in 0..SUBSAMPLES {
                for sx in 0..SUBSAMPLES {
                    let dx = x as f64 + (sx as f64 + 0.5) * step - centre;
                    let dy = y as f64 + (sy as f64 + 0.5) * step - centre;
                    inside += usize::from(dx * dx + dy * dy <= radius * radius);
                }
            }
            out[y * size + x] = inside as f64 / (SUBSAMPLES * SUBSAMPLES) as f64;
        }
    }
    out
}

fn ratio(a: LineFlux, b: LineFlux) -> f64 {
    if a.flux > 0.0 && b.flux > 0.0 {
        (a.flux / b.flux).log10()
    } else {
        f64::NAN
    }
}

fn usable(lines: &[LineFlux], min_snr: f64) -> bool {
    lines.iter().all(|l| l.flux > 0.0 && l.snr() >= min_snr)
}

/// Side of the diagram a point (x, y) falls on for a hyperbolic limit that exists only left of
/// its asymptote.
fn below(curve: fn(f64) -> Option<f64>, x: f64, y: f64) -> bool {
    curve(x).is_some_and(|limit| y < limit)
}

/// Classifies the galaxies of `dataset` (all of them, dataset order).
pub fn classify_dataset(
    dataset: &Dataset,
    options: &BptSurveyOptions,
) -> Result<Vec<BptRow>, DataError> {
    let all: Vec<usize> = (0..dataset.galaxies.len()).collect();
    classify_rows(dataset, &all, options)
}

/// Classifies the galaxies at dataset rows `rows`, in that order (a shard classifies only its
/// own galaxies). Errors on a row outside the dataset.
pub fn classify_rows(
    dataset: &Dataset,
    rows: &[usize],
    options: &BptSurveyOptions,
) -> Result<Vec<BptRow>, DataError> {
    if let Some(&bad) = rows.iter().find(|&&r| r >= dataset.galaxies.len()) {
        return Err(DataError::Invalid(format!(
            "row {bad} is outside the dataset's {} galaxies",
            dataset.galaxies.len()
        )));
    }
    if options.aperture_arcsec.is_nan() || options.aperture_arcsec <= 0.0 {
        return Err(DataError::Invalid(format!(
            "aperture {} arcsec: the diameter must be positive",
            options.aperture_arcsec
        )));
    }
    let lines = &dataset.manifest.lines;
    let positions: Vec<Option<usize>> = BptLines::CHANNELS
        .iter()
        .map(|c| lines.position(c))
        .collect();
    let missing = |names: &[&str]| -> Vec<String> {
        names
            .iter()
            .filter(|n| lines.position(n).is_none())
            .map(|n| n.to_string())
            .collect()
    };
    let stretch = dataset.manifest.normalisation.stretch;
    let size = dataset.cubes.size;
    let plane = size * size;
    let mut out = Vec::with_capacity(rows.len());
    for &g in rows {
        let record = &dataset.galaxies[g];
        let (x, w) = dataset.cubes.galaxy(g);
        let mut notes = Vec::new();
        // An output pixel spans box_size/size original spaxels.
        let pixel_arcsec = SPAXEL_ARCSEC * f64::from(record.box_size) / size as f64;
        let fluxes: Vec<LineFlux> = if record.box_size == 0 {
            notes.push("unknown box size".to_string());
            vec![LineFlux::default(); positions.len()]
        } else {
            let fractions = aperture_fractions(size, options.aperture_arcsec / 2.0 / pixel_arcsec);
            positions
                .iter()
                .map(|pos| {
                    let Some(l) = *pos else {
                        return LineFlux::default();
                    };
                    let (mut flux, mut var) = (0.0, 0.0);
                    for (p, &f) in fractions.iter().enumerate() {
                        if f > 0.0
                            && let Some((fx, vx)) = unnormalise(
                                x[l * plane + p],
                                w[l * plane + p],
                                record.scale,
                                stretch,
                            )
                        {
                            flux += f * fx;
                            var += f * f * vx;
                        }
                    }
                    LineFlux::new(flux, if var > 0.0 { 1.0 / var } else { 0.0 })
                })
                .collect()
        };
        let get = |name: &str| {
            BptLines::CHANNELS
                .iter()
                .position(|c| *c == name)
                .map(|i| (fluxes[i].flux, fluxes[i].ivar))
        };
        let bpt = BptLines::from_lookup(get);
        let (hb, oiii, ha, nii, sii, oi) = (bpt.hb, bpt.oiii, bpt.ha, bpt.nii, bpt.sii(), bpt.oi);
        let y = ratio(oiii, hb);
        let (x_nii, x_sii, x_oi) = (ratio(nii, ha), ratio(sii, ha), ratio(oi, ha));
        let snr = options.min_snr;

        let core = ["Hb-4862", "OIII-5008", "Ha-6564"];
        let diagram = |extra: &[&str], flux: LineFlux, name: &str| -> (bool, Option<String>) {
            let mut needed: Vec<&str> = core.to_vec();
            needed.extend_from_slice(extra);
            let absent = missing(&needed);
            if !absent.is_empty() {
                return (
                    false,
                    Some(format!("{name}: dataset lacks {}", absent.join("+"))),
                );
            }
            if !usable(&[hb, oiii, ha, flux], snr) {
                return (false, Some(format!("{name}: S/N < {snr}")));
            }
            (true, None)
        };
        let (nii_ok, nii_note) = diagram(&["NII-6585"], nii, "[NII]");
        let (sii_ok, sii_note) = diagram(&["SII-6718", "SII-6732"], sii, "[SII]");
        let (oi_ok, oi_note) = diagram(&["OI-6302"], oi, "[OI]");
        notes.extend([nii_note, sii_note, oi_note].into_iter().flatten());
        let nii_class = if !nii_ok {
            "unclassified"
        } else if below(kauffmann03_nii, x_nii, y) {
            "sf"
        } else if below(kewley01_nii, x_nii, y) {
            "composite"
        } else {
            "agn"
        };
        let agn_side = |ok: bool, curve: fn(f64) -> Option<f64>, split: fn(f64) -> f64, x: f64| {
            if !ok {
                "unclassified"
            } else if below(curve, x, y) {
                "sf"
            } else if y > split(x) {
                "seyfert"
            } else {
                "liner"
            }
        };
        let sii_class = agn_side(sii_ok, kewley01_sii, kewley06_sii, x_sii);
        let oi_class = agn_side(oi_ok, kewley01_oi, kewley06_oi, x_oi);
        // The overall class needs [NII] and [SII]; [OI] joins when the dataset has it.
        let has_oi = lines.position("OI-6302").is_some();
        let class = if nii_ok && sii_ok && (oi_ok || !has_oi) {
            classify(
                &bpt,
                &BptOptions {
                    min_snr: snr,
                    use_oi: has_oi,
                },
            )
        } else {
            BptClass::Unclassified
        };
        out.push(BptRow {
            plateifu: record.plateifu.clone(),
            class,
            nii_class,
            sii_class,
            oi_class,
            log_nii_ha: x_nii,
            log_sii_ha: x_sii,
            log_oi_ha: x_oi,
            log_oiii_hb: y,
            lines: bpt,
            note: notes.join("; "),
        });
    }
    Ok(out)
}

/// `bpt.csv`: plateifu, class, per-diagram classes, the log ratios, per-line flux and S/N, note.
pub fn bpt_csv(rows: &[BptRow]) -> String {
    let mut out = String::from(
        "plateifu,class,nii_class,sii_class,oi_class,log_nii_ha,log_sii_ha,log_oi_ha,log_oiii_hb,\
         snr_hb,snr_oiii,snr_oi,snr_ha,snr_nii,snr_sii,flux_hb,flux_oiii,flux_oi,flux_ha,flux_nii,flux_sii,note\n",
    );
    let num = |v: f64| {
        if v.is_finite() {
            format!("{v:.5}")
        } else {
            "nan".to_string()
        }
    };
    for r in rows {
        let l = &r.lines;
        let cells = [
            csv::quote(&r.plateifu),
            r.class.name().to_string(),
            r.nii_class.to_string(),
            r.sii_class.to_string(),
            r.oi_class.to_string(),
            num(r.log_nii_ha),
            num(r.log_sii_ha),
            num(r.log_oi_ha),
            num(r.log_oiii_hb),
            num(l.hb.snr()),
            num(l.oiii.snr()),
            num(l.oi.snr()),
            num(l.ha.snr()),
            num(l.nii.snr()),
            num(l.sii().snr()),
            num(l.hb.flux),
            num(l.oiii.flux),
            num(l.oi.flux),
            num(l.ha.flux),
            num(l.nii.flux),
            num(l.sii().flux),
            csv::quote(&r.note),
        ];
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unnormalise_inverts_the_stretch() {
        let stretch = Stretch::Asinh { softening: 0.1 };
        for (xn, wn) in [(0.05f32, 100.0f32), (2.0, 4.0), (0.0, 9.0)] {
            let (xs, ws) = stretch.apply(xn, wn);
            let (flux, var) = unnormalise(xs, ws, 3.0, stretch).unwrap();
            assert!(
                (flux - 3.0 * f64::from(xn)).abs() < 1e-5 * (1.0 + flux.abs()),
                "{flux}"
            );
            assert!((var - 9.0 / f64::from(wn)).abs() < 1e-4 * var, "{var}");
        }
        assert_eq!(unnormalise(1.0, 4.0, 2.0, Stretch::None), Some((2.0, 1.0)));
        assert_eq!(unnormalise(1.0, 0.0, 2.0, Stretch::None), None);
    }

    /// Writes and reopens a dataset of flat maps: each line constant (`levels`, normalised) with
    /// weight 10⁴ on an 8×8 grid covering 16 original spaxels (1″ pixels), scale 2.
    fn flat_dataset(dir: &std::path::Path, lines: &str, levels: &[f32]) -> Dataset {
        use crate::dataset::{FORMAT, GalaxyRecord, Manifest, Normalisation};
        let lines = crate::LineSet::parse(lines).unwrap();
        let mut cubes = crate::Cubes::zeros(1, lines.len(), 8);
        for (l, level) in levels.iter().enumerate() {
            cubes.x[l * 64..(l + 1) * 64].fill(*level);
            cubes.w[l * 64..(l + 1) * 64].fill(1.0e4);
        }
        let galaxy = GalaxyRecord {
            plateifu: "1-1".to_string(),
            mangaid: String::new(),
            ra: 0.0,
            dec: 0.0,
            z: 0.0,
            ifu_size: 19,
            grid_size: 20,
            box_size: 16,
            scale: 2.0,
            n_good: 64,
            source: String::new(),
            notes: String::new(),
            psf_fwhm: f64::NAN,
            ..Default::default()
        };
        let manifest = Manifest {
            format: FORMAT.to_string(),
            oddcube_version: "test".to_string(),
            lines,
            size: 8,
            n_galaxies: 1,
            mask_policy: crate::MaskPolicy::Strict,
            normalisation: Normalisation {
                method: "percentile-of-reference".to_string(),
                reference: "Ha-6564".to_string(),
                percentile: 99.0,
                stretch: Stretch::None,
            },
            shard: crate::Shard::ALL,
            sources: Vec::new(),
            n_skipped: 0,
            created_by: "test".to_string(),
        };
        Dataset::write(dir, &cubes, &[galaxy], &manifest, &[]).unwrap();
        Dataset::open(dir).unwrap()
    }

    #[test]
    fn classify_rows_is_classify_dataset_restricted_to_those_rows() {
        let dir = tempfile::tempdir().unwrap();
        let dataset = flat_dataset(
            dir.path(),
            "Hb-4862,OIII-5008,Ha-6564,NII-6585",
            &[0.2, 0.1, 0.6, 0.18],
        );
        let options = BptSurveyOptions::default();
        let all = classify_dataset(&dataset, &options).unwrap();
        // Debug, not ==: the missing diagrams' log ratios are NaN.
        let one = classify_rows(&dataset, &[0], &options).unwrap();
        assert_eq!(format!("{one:?}"), format!("{all:?}"));
        assert!(classify_rows(&dataset, &[], &options).unwrap().is_empty());
        let err = classify_rows(&dataset, &[1], &options).unwrap_err();
        assert!(err.to_string().contains("row 1 is outside"), "{err}");
    }

    #[test]
    fn classifies_known_flat_maps_and_reports_missing_lines() {
        let dir = tempfile::tempdir().unwrap();
        // [NII]/Hα = 0.3 (log −0.52), [OIII]/Hβ = 0.5 (log −0.30): star-forming on [NII].
        let dataset = flat_dataset(
            dir.path(),
            "Hb-4862,OIII-5008,Ha-6564,NII-6585",
            &[0.2, 0.1, 0.6, 0.18],
        );
        let rows = classify_dataset(&dataset, &BptSurveyOptions::default()).unwrap();
        let r = &rows[0];
        assert!((r.log_nii_ha - 0.3f64.log10()).abs() < 1e-6);
        assert!((r.log_oiii_hb - 0.5f64.log10()).abs() < 1e-6);
        assert_eq!(
            (r.nii_class, r.sii_class, r.oi_class),
            ("sf", "unclassified", "unclassified")
        );
        // No [SII] in the dataset: the overall class cannot be decided, and the note says why.
        assert_eq!(r.class, BptClass::Unclassified);
        assert!(
            r.note.contains("[SII]: dataset lacks SII-6718+SII-6732"),
            "{}",
            r.note
        );
        // Aperture 2.5″ on 1″ pixels: flux = area (π·1.25², to sub-sampling accuracy) × x × scale.
        let area = std::f64::consts::PI * 1.25 * 1.25;
        assert!(
            (r.lines.ha.flux / (area * 0.6 * 2.0) - 1.0).abs() < 0.05,
            "{}",
            r.lines.ha.flux
        );
        // S/N = Σf·x·scale / sqrt(Σf²·scale²/w) and Σf² ≤ Σf, so at least x·sqrt(w·area).
        assert!(r.lines.ha.snr() >= 0.6 * (1.0e4 * area).sqrt() * 0.95);
        let csv = bpt_csv(&rows);
        assert_eq!(csv.lines().count(), 2);
        assert!(
            csv.lines()
                .nth(1)
                .unwrap()
                .starts_with("1-1,unclassified,sf,unclassified,unclassified,-0.52288,")
        );
    }

    #[test]
    fn full_line_set_gives_an_overall_class() {
        let dir = tempfile::tempdir().unwrap();
        // Seyfert-like: [OIII]/Hβ = 10, [NII]/Hα = 1, [SII]/Hα = 0.6, [OI]/Hα = 0.2.
        let dataset = flat_dataset(
            dir.path(),
            "Hb-4862,OIII-5008,OI-6302,Ha-6564,NII-6585,SII-6718,SII-6732",
            &[0.05, 0.5, 0.03, 0.15, 0.15, 0.05, 0.04],
        );
        let rows = classify_dataset(&dataset, &BptSurveyOptions::default()).unwrap();
        assert_eq!(rows[0].class, BptClass::Seyfert, "{:?}", rows[0]);
        assert_eq!(
            (rows[0].nii_class, rows[0].sii_class, rows[0].oi_class),
            ("agn", "seyfert", "seyfert")
        );
        assert!(rows[0].note.is_empty());
        // A huge S/N threshold leaves it unclassified.
        let strict = BptSurveyOptions {
            min_snr: 1e9,
            ..BptSurveyOptions::default()
        };
        assert_eq!(
            classify_dataset(&dataset, &strict).unwrap()[0].class,
            BptClass::Unclassified
        );
        assert!(
            classify_dataset(
                &dataset,
                &BptSurveyOptions {
                    aperture_arcsec: 0.0,
                    min_snr: 3.0
                }
            )
            .is_err()
        );
    }

    #[test]
    fn aperture_fractions_cover_the_circle_area() {
        let f = aperture_fractions(32, 5.0);
        let area: f64 = f.iter().sum();
        assert!((area - std::f64::consts::PI * 25.0).abs() < 0.5, "{area}");
        // Symmetric about the centre, full in the middle, empty in the corner.
        assert_eq!(f[15 * 32 + 15], 1.0);
        assert_eq!(f[0], 0.0);
        assert_eq!(f[10 * 32 + 13], f[(31 - 10) * 32 + (31 - 13)]);
    }
}
