//! The DR17 DAP MAPS file layout: the primary header and the 63 image extensions (EXTNAME,
//! BITPIX, channel cards, units) copied from a genuine DR17-layout file, filled with a
//! simulated galaxy's maps and per-galaxy WCS and metadata cards.

use std::sync::OnceLock;

use serde::Deserialize;

use super::galaxy::{GalaxyMaps, GalaxyTruth};
use super::spectra::N_CHANNELS;
use crate::date::mjd_to_date;
use crate::fits::write::{Card, CardValue, ImageData, ImageHdu};
use crate::lines::DR17_CHANNELS;

/// Layout derived by `scripts/derive_maps_layout.py` from the real DR17-layout file
/// `tiny-test-MAPS-HYB10-MILESHC-MASTARSSP.fits.gz`.
const LAYOUT_JSON: &str = include_str!("../../assets/dr17_maps_layout.json");

/// Speed of light, km/s.
pub const C_KM_S: f64 = 299_792.458;

/// Per-pixel noise of the g-band-weighted mean continuum flux (1e-17 erg/s/cm²/Å/spaxel): the
/// continuum S/N map times this is SPX_MFLUX.
const MFLUX_SIGMA: f64 = 0.025;

#[derive(Debug, Deserialize)]
struct Layout {
    primary: Vec<(String, serde_json::Value, String)>,
    extensions: Vec<Extension>,
}

/// One extension of the layout.
#[derive(Debug, Deserialize)]
pub struct Extension {
    /// EXTNAME.
    pub extname: String,
    /// BITPIX (−32 maps, 32 masks and BINID).
    pub bitpix: i32,
    /// Channels (NAXIS3), 0 for a single map.
    pub channels: usize,
    cards: Vec<(String, serde_json::Value, String)>,
}

fn layout() -> &'static Layout {
    static LAYOUT: OnceLock<Layout> = OnceLock::new();
    // The JSON is compiled in and parsed by a unit test, so a failure here is a build defect.
    LAYOUT.get_or_init(|| {
        serde_json::from_str(LAYOUT_JSON).expect("embedded dr17_maps_layout.json is valid")
    })
}

/// The extensions of a DR17 MAPS file, in file order.
pub fn extensions() -> &'static [Extension] {
    &layout().extensions
}

fn card_from_json(key: &str, value: &serde_json::Value, comment: &str) -> Card {
    let value = match value {
        serde_json::Value::Bool(b) => CardValue::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => CardValue::Int(i),
            None => CardValue::Float(n.as_f64().unwrap_or(0.0)),
        },
        serde_json::Value::String(s) => CardValue::Str(s.clone()),
        _ => CardValue::Str(String::new()),
    };
    Card::new(key, value, comment)
}

/// Identity and bookkeeping of a simulated galaxy that go into its header.
#[derive(Debug, Clone)]
pub struct HeaderInfo<'a> {
    /// Plate number.
    pub plate: u32,
    /// IFU design (e.g. 12703).
    pub ifudesign: u32,
    /// MaNGA-ID.
    pub mangaid: &'a str,
    /// Survey seed.
    pub seed: u64,
    /// Index of the galaxy within the survey.
    pub index: usize,
    /// Modified Julian date of the (simulated) observation.
    pub mjd: u32,
    /// Galactic E(B−V).
    pub ebv_gal: f64,
}

/// The primary header: DRP identity cards (as in real MAPS files) followed by the DAP cards of
/// the layout, with the per-galaxy values replaced.
pub fn primary_cards(info: &HeaderInfo, truth: &GalaxyTruth, maps: &GalaxyMaps) -> Vec<Card> {
    let g = &truth.geometry;
    let date = mjd_to_date(info.mjd);
    let analysed = (0..maps.grid.plane()).filter(|&p| maps.analysed(p)).count() as i64;
    let snr_median = median_snr(maps);
    let mut cards = vec![
        Card::str("VERSDRP2", "v3_1_1", "MaNGA DRP version (2d processing)"),
        Card::str("VERSDRP3", "v3_1_1", "MaNGA DRP Version (3d processing)"),
        Card::str("TELESCOP", "SDSS 2.5-M", "Sloan Digital Sky Survey"),
        Card::str("INSTRUME", "MaNGA", "SDSS-IV MaNGA IFU"),
        Card::str(
            "SRVYMODE",
            "MaNGA dither",
            "Survey leading this observation and its mode",
        ),
        Card::str("OBJSYS", "ICRS", "The TCC objSys"),
        Card::float("EQUINOX", 2000.0, ""),
        Card::str("RADESYS", "FK5", ""),
        Card::int("NEXP", 9, "Total number of exposures"),
        Card::float("EXPTIME", 8100.9, "Total exposure time (seconds)"),
        Card::int("MJDMED", i64::from(info.mjd), "MJD of median exposure"),
        Card::str("DATE-OBS", &date, "Date of median exposure"),
        Card::float("IFURA", g.ra_deg, "IFU R.A. (J2000 deg.)"),
        Card::float("IFUDEC", g.dec_deg, "IFU Dec. (J2000 deg.)"),
        Card::float("OBJRA", g.ra_deg, "Object R.A. (J2000 deg.)"),
        Card::float("OBJDEC", g.dec_deg, "Object Dec. (J2000 deg.)"),
        Card::int("PLATEID", i64::from(info.plate), "Current plate"),
        Card::int("IFUDSGN", i64::from(info.ifudesign), "ifuDesign"),
        Card::str(
            "PLATEIFU",
            &format!("{}-{}", info.plate, info.ifudesign),
            "PLATEID-ifuDesign",
        ),
        Card::str("MANGAID", info.mangaid, "MaNGA ID number"),
        Card::int("DRP3QUAL", 0, "DRP-3d quality bitmask"),
        Card::float(
            "GFWHM",
            round(truth.psf_fwhm * 1.03, 4),
            "Reconstructed FWHM in g-band (arcsec)",
        ),
        Card::float(
            "RFWHM",
            round(truth.psf_fwhm, 4),
            "Reconstructed FWHM in r-band (arcsec)",
        ),
        Card::float(
            "IFWHM",
            round(truth.psf_fwhm * 0.99, 4),
            "Reconstructed FWHM in i-band (arcsec)",
        ),
        Card::float(
            "ZFWHM",
            round(truth.psf_fwhm * 0.985, 4),
            "Reconstructed FWHM in z-band (arcsec)",
        ),
    ];
    for (key, value, comment) in &layout().primary {
        let card = match key.as_str() {
            "VERSDAP" => Card::str(key, "3.1.0", comment),
            "EBVGAL" => Card::float(key, round(info.ebv_gal, 4), comment),
            "SCINPVEL" => Card::float(key, round(C_KM_S * g.z, 4), comment),
            "NBINS" | "NSCMOD" | "NELMOD" => Card::int(key, analysed, comment),
            "SNRGMED" | "SNRRMED" | "SNRIMED" | "SNRZMED" => {
                let band = match key.as_str() {
                    "SNRGMED" => 0.8,
                    "SNRRMED" => 1.0,
                    "SNRIMED" => 1.1,
                    _ => 0.9,
                };
                Card::float(key, round(snr_median * band, 4), comment)
            }
            "DAPQUAL" => Card::int(key, 0, comment),
            _ => card_from_json(key, value, comment),
        };
        cards.push(card);
    }
    cards.push(Card::bool(
        "SIMULATD",
        true,
        "oddcube simulated galaxy, not an observation",
    ));
    cards.push(Card::int(
        "SIMSEED",
        info.seed as i64,
        "oddcube simulate --seed",
    ));
    cards.push(Card::int(
        "SIMINDEX",
        info.index as i64,
        "Galaxy index within the survey",
    ));
    cards
}

fn round(value: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (value * f).round() / f
}

fn median_snr(maps: &GalaxyMaps) -> f64 {
    let mut values: Vec<f32> = (0..maps.grid.plane())
        .filter(|&p| maps.analysed(p))
        .map(|p| maps.continuum_snr[p])
        .collect();
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f32::total_cmp);
    f64::from(values[values.len() / 2])
}

/// The spatial WCS cards every MAPS extension carries (TAN projection, 0.5″ spaxels).
fn wcs_cards(size: usize, ra: f64, dec: f64, three_d: bool, mjd: u32) -> Vec<Card> {
    let crpix = (size / 2 + 1) as f64;
    let mut cards = vec![Card::int(
        "WCSAXES",
        if three_d { 3 } else { 2 },
        "Number of coordinate axes",
    )];
    cards.push(Card::float(
        "CRPIX1",
        crpix,
        "Pixel coordinate of reference point",
    ));
    cards.push(Card::float(
        "CRPIX2",
        crpix,
        "Pixel coordinate of reference point",
    ));
    if three_d {
        cards.push(Card::float(
            "CRPIX3",
            1.0,
            "Pixel coordinate of reference point",
        ));
    }
    cards.push(Card::float(
        "PC1_1",
        -0.000138889,
        "Coordinate transformation matrix element",
    ));
    cards.push(Card::float(
        "PC2_2",
        0.000138889,
        "Coordinate transformation matrix element",
    ));
    cards.push(Card::float(
        "CDELT1",
        1.0,
        "[deg] Coordinate increment at reference point",
    ));
    cards.push(Card::float(
        "CDELT2",
        1.0,
        "[deg] Coordinate increment at reference point",
    ));
    if three_d {
        cards.push(Card::float(
            "CDELT3",
            1.0,
            "Coordinate increment at reference point",
        ));
    }
    cards.push(Card::str(
        "CUNIT1",
        "deg",
        "Units of coordinate increment and value",
    ));
    cards.push(Card::str(
        "CUNIT2",
        "deg",
        "Units of coordinate increment and value",
    ));
    cards.push(Card::str(
        "CTYPE1",
        "RA---TAN",
        "Right ascension, gnomonic projection",
    ));
    cards.push(Card::str(
        "CTYPE2",
        "DEC--TAN",
        "Declination, gnomonic projection",
    ));
    cards.push(Card::float(
        "CRVAL1",
        ra,
        "[deg] Coordinate value at reference point",
    ));
    cards.push(Card::float(
        "CRVAL2",
        dec,
        "[deg] Coordinate value at reference point",
    ));
    if three_d {
        cards.push(Card::float(
            "CRVAL3",
            1.0,
            "Coordinate value at reference point",
        ));
    }
    cards.push(Card::float(
        "LONPOLE",
        180.0,
        "[deg] Native longitude of celestial pole",
    ));
    cards.push(Card::float(
        "LATPOLE",
        dec,
        "[deg] Native latitude of celestial pole",
    ));
    cards.push(Card::str("RADESYS", "FK5", "Equatorial coordinate system"));
    cards.push(Card::float(
        "EQUINOX",
        2000.0,
        "[yr] Equinox of equatorial coordinates",
    ));
    cards.push(Card::float(
        "MJD-OBS",
        f64::from(mjd),
        "[d] MJD for DATE-OBS",
    ));
    cards.push(Card::str(
        "DATE-OBS",
        &mjd_to_date(mjd),
        "Date of median exposure",
    ));
    if three_d {
        cards.push(Card::str("CTYPE3", "", "Undefined type"));
        cards.push(Card::str("CUNIT3", "", "Undefined units"));
    }
    cards
}

/// Instrumental dispersion (km/s) of MaNGA at a rest wavelength, interpolated from the
/// EMLINE_INSTSIGMA of the real DR17-layout file.
fn instrumental_sigma(wave: f64) -> f64 {
    const ANCHORS: [(f64, f64); 5] = [
        (3700.0, 81.0),
        (4862.0, 69.8),
        (6564.0, 65.6),
        (7750.0, 56.2),
        (9550.0, 58.8),
    ];
    let (mut lo, mut hi) = (ANCHORS[0], ANCHORS[ANCHORS.len() - 1]);
    for pair in ANCHORS.windows(2) {
        if wave >= pair[0].0 && wave <= pair[1].0 {
            (lo, hi) = (pair[0], pair[1]);
        }
    }
    if wave <= ANCHORS[0].0 {
        return ANCHORS[0].1;
    }
    if wave >= hi.0 {
        return hi.1;
    }
    lo.1 + (hi.1 - lo.1) * (wave - lo.0) / (hi.0 - lo.0)
}

/// Builds all 63 image extensions of the galaxy's MAPS file, in DR17 order.
pub fn extension_hdus(info: &HeaderInfo, truth: &GalaxyTruth, maps: &GalaxyMaps) -> Vec<ImageHdu> {
    extensions()
        .iter()
        .map(|ext| {
            let size = maps.grid.size;
            let shape = if ext.channels == 0 {
                vec![size, size]
            } else {
                vec![ext.channels, size, size]
            };
            let mut cards = wcs_cards(
                size,
                truth.geometry.ra_deg,
                truth.geometry.dec_deg,
                ext.channels > 0,
                info.mjd,
            );
            cards.extend(ext.cards.iter().map(|(k, v, c)| card_from_json(k, v, c)));
            ImageHdu {
                extname: ext.extname.clone(),
                shape,
                data: extension_data(ext, truth, maps),
                cards,
            }
        })
        .collect()
}

fn extension_data(ext: &Extension, truth: &GalaxyTruth, maps: &GalaxyMaps) -> ImageData {
    let plane = maps.grid.plane();
    let size = maps.grid.size;
    let channels = ext.channels.max(1);
    let analysed = |p: usize| maps.analysed(p);
    let covered = |p: usize| maps.spaxel_mask[p] & crate::mask::NOCOV == 0;
    let per_spaxel = |f: &dyn Fn(usize) -> f32| -> Vec<f32> { (0..plane).map(f).collect() };
    let broadcast =
        |v: Vec<f32>| -> Vec<f32> { (0..channels).flat_map(|_| v.iter().copied()).collect() };
    let per_line = |f: &dyn Fn(usize, usize) -> f32| -> Vec<f32> {
        (0..channels)
            .flat_map(|c| (0..plane).map(move |p| (c, p)))
            .map(|(c, p)| f(c, p))
            .collect()
    };
    let z = truth.geometry.z;
    let wave = |c: usize| DR17_CHANNELS.get(c).map_or(5000.0, |(_, w)| *w);
    // The continuum's colour, once per channel: it is asked for at every spaxel of four maps.
    let colour: Vec<f64> = (0..channels)
        .map(|c| (wave(c) / 4700.0).powf(-0.7))
        .collect();
    let continuum = |c: usize, p: usize| f64::from(maps.continuum_snr[p]) * MFLUX_SIGMA * colour[c];
    let line_snr = |i: usize| f64::from(maps.flux[i]) * f64::from(maps.ivar[i]).sqrt();
    let kinematic_ivar = |i: usize, floor: f64| {
        let snr = line_snr(i);
        if snr > 0.0 {
            (1.0 / (floor + 60.0 / snr).powi(2)) as f32
        } else {
            0.0
        }
    };
    // kpc per arcsec for h = 1 (H0 = 100 km/s/Mpc), small-z angular-diameter distance.
    let kpc_per_arcsec = C_KM_S * z / 100.0 * 1000.0 / 206_264.8 / (1.0 + z).powi(2);
    let mut bin_id = 0i32;
    let bin_ids: Vec<i32> = (0..plane)
        .map(|p| {
            if analysed(p) {
                bin_id += 1;
                bin_id - 1
            } else {
                -1
            }
        })
        .collect();
    let f32s = |v: Vec<f32>| ImageData::F32(v);
    let name = ext.extname.as_str();
    match name {
        "SPX_SKYCOO" | "BIN_LWSKYCOO" => f32s(
            (0..2)
                .flat_map(|axis| {
                    (0..plane).map(move |p| {
                        let (x, y) = maps.grid.sky(p % size, p / size);
                        (if axis == 0 { x } else { y }) as f32
                    })
                })
                .collect(),
        ),
        "SPX_ELLCOO" | "BIN_LWELLCOO" => f32s(per_line(&|c, p| {
            let r = f64::from(maps.r_ell[p]);
            match c {
                0 => r as f32,
                1 => (r / truth.geometry.reff_arcsec) as f32,
                2 => (r * kpc_per_arcsec) as f32,
                _ => maps.azimuth[p],
            }
        })),
        "SPX_MFLUX" => f32s(per_spaxel(&|p| {
            (f64::from(maps.continuum_snr[p]) * MFLUX_SIGMA) as f32
        })),
        "SPX_MFLUX_IVAR" => f32s(per_spaxel(&|p| {
            if covered(p) {
                (1.0 / MFLUX_SIGMA.powi(2)) as f32
            } else {
                0.0
            }
        })),
        "SPX_SNR" => f32s(maps.continuum_snr.clone()),
        "BINID" => ImageData::I32(
            (0..channels)
                .flat_map(|_| bin_ids.iter().copied())
                .collect(),
        ),
        "BIN_AREA" => f32s(per_spaxel(&|p| if analysed(p) { 0.25 } else { 0.0 })),
        "BIN_FAREA" => f32s(per_spaxel(&|p| if analysed(p) { 1.0 } else { 0.0 })),
        "BIN_MFLUX" => f32s(per_spaxel(&|p| {
            if analysed(p) {
                (f64::from(maps.continuum_snr[p]) * MFLUX_SIGMA) as f32
            } else {
                0.0
            }
        })),
        "BIN_MFLUX_IVAR" => f32s(per_spaxel(&|p| {
            if analysed(p) {
                (1.0 / MFLUX_SIGMA.powi(2)) as f32
            } else {
                0.0
            }
        })),
        "BIN_SNR" => f32s(per_spaxel(&|p| {
            if analysed(p) {
                maps.continuum_snr[p]
            } else {
                0.0
            }
        })),
        "STELLAR_VEL" => f32s(per_spaxel(&|p| {
            if analysed(p) {
                maps.stellar_velocity[p]
            } else {
                0.0
            }
        })),
        "STELLAR_SIGMA" => f32s(per_spaxel(&|p| {
            if analysed(p) {
                maps.stellar_sigma[p]
            } else {
                0.0
            }
        })),
        "STELLAR_VEL_IVAR" | "STELLAR_SIGMA_IVAR" => f32s(per_spaxel(&|p| {
            if analysed(p) {
                (1.0 / (3.0 + 150.0 / f64::from(maps.continuum_snr[p]).max(1.0)).powi(2)) as f32
            } else {
                0.0
            }
        })),
        "STELLAR_SIGMACORR" => f32s(per_line(&|_, p| if analysed(p) { 23.0 } else { 0.0 })),
        "EMLINE_GFLUX" => f32s(maps.flux.clone()),
        "EMLINE_GFLUX_IVAR" => f32s(maps.ivar.clone()),
        "EMLINE_GFLUX_MASK" | "EMLINE_GEW_MASK" | "EMLINE_GVEL_MASK" | "EMLINE_GSIGMA_MASK" => {
            ImageData::I32(maps.mask.clone())
        }
        "EMLINE_SFLUX" => f32s(maps.sflux.clone()),
        "EMLINE_SFLUX_IVAR" => f32s(maps.sflux_ivar.clone()),
        "EMLINE_SFLUX_MASK" | "EMLINE_SEW_MASK" => ImageData::I32(maps.sflux_mask.clone()),
        "EMLINE_SEW_CNT" | "EMLINE_GEW_CNT" => f32s(per_line(&|c, p| {
            if analysed(p) {
                continuum(c, p) as f32
            } else {
                0.0
            }
        })),
        "EMLINE_SEW" | "EMLINE_GEW" => {
            let source = if name == "EMLINE_SEW" {
                &maps.sflux
            } else {
                &maps.flux
            };
            f32s(per_line(&|c, p| {
                let cnt = continuum(c, p);
                if analysed(p) && cnt > 0.0 {
                    (f64::from(source[c * plane + p]) / cnt) as f32
                } else {
                    0.0
                }
            }))
        }
        "EMLINE_SEW_IVAR" | "EMLINE_GEW_IVAR" => {
            let source = if name == "EMLINE_SEW_IVAR" {
                &maps.sflux_ivar
            } else {
                &maps.ivar
            };
            f32s(per_line(&|c, p| {
                (f64::from(source[c * plane + p]) * continuum(c, p).powi(2)) as f32
            }))
        }
        "EMLINE_GVEL" => f32s(per_line(&|_, p| {
            if analysed(p) {
                maps.gas_velocity[p]
            } else {
                0.0
            }
        })),
        "EMLINE_GVEL_IVAR" => f32s(per_line(&|c, p| kinematic_ivar(c * plane + p, 2.0))),
        "EMLINE_GSIGMA" => f32s(per_line(&|_, p| {
            if analysed(p) { maps.gas_sigma[p] } else { 0.0 }
        })),
        "EMLINE_GSIGMA_IVAR" => f32s(per_line(&|c, p| kinematic_ivar(c * plane + p, 3.0))),
        "EMLINE_INSTSIGMA" => f32s(per_line(&|c, p| {
            if analysed(p) {
                instrumental_sigma(wave(c)) as f32
            } else {
                0.0
            }
        })),
        "EMLINE_TPLSIGMA" => f32s(per_line(&|c, p| {
            if analysed(p) {
                (0.9 * instrumental_sigma(wave(c)) - 18.0) as f32
            } else {
                0.0
            }
        })),
        "EMLINE_GA" | "EMLINE_GANR" => f32s(per_line(&|c, p| {
            let i = c * plane + p;
            if !analysed(p) || c >= N_CHANNELS {
                return 0.0;
            }
            let sigma_kms = f64::from(maps.gas_sigma[p]).hypot(instrumental_sigma(wave(c)));
            let sigma_aa = wave(c) * (1.0 + z) * sigma_kms / C_KM_S;
            let amplitude =
                f64::from(maps.flux[i]) / ((2.0 * std::f64::consts::PI).sqrt() * sigma_aa);
            // Amplitude over the per-pixel noise: the flux S/N spread over the ~2.5σ pixels
            // (69 km/s each) the line covers.
            let pixels = (2.5 * sigma_kms / 69.0).max(1.0);
            if name == "EMLINE_GA" {
                amplitude as f32
            } else {
                (line_snr(i) / pixels.sqrt()) as f32
            }
        })),
        "EMLINE_LFOM" => f32s(per_line(&|_, p| if analysed(p) { 1.0 } else { 0.0 })),
        "STELLAR_FOM" | "EMLINE_FOM" => {
            // rms, frms, rchi2, and six fractional-residual percentiles, typical of good fits.
            const TYPICAL: [f32; 9] = [0.04, 0.02, 1.1, 0.015, 0.06, 0.1, 1.4, 3.9, 6.5];
            f32s(per_line(&|c, p| {
                if analysed(p) {
                    TYPICAL.get(c).copied().unwrap_or(0.0)
                } else {
                    0.0
                }
            }))
        }
        _ if ext.bitpix == 32 => {
            // Other quality maps (stellar kinematics, binned flux, spectral indices) carry the
            // coverage / analysis bits of each spaxel.
            ImageData::I32(
                (0..channels)
                    .flat_map(|_| maps.spaxel_mask.iter().copied())
                    .collect(),
            )
        }
        // Spectral indices and their corrections are not simulated: zeros, masked as above.
        _ => f32s(broadcast(vec![0.0; plane])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_has_the_64_hdus_of_dr17() {
        let exts = extensions();
        assert_eq!(exts.len(), 63);
        assert_eq!(exts[0].extname, "SPX_SKYCOO");
        let gflux = exts
            .iter()
            .find(|e| e.extname == "EMLINE_GFLUX")
            .expect("GFLUX");
        assert_eq!((gflux.bitpix, gflux.channels), (-32, 35));
        let names: Vec<String> = (1..=35)
            .map(|i| {
                let key = format!("C{i:02}");
                let card = gflux
                    .cards
                    .iter()
                    .find(|(k, _, _)| *k == key)
                    .expect("channel card");
                card.1.as_str().unwrap_or_default().to_string()
            })
            .collect();
        let expected: Vec<&str> = DR17_CHANNELS.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, expected);
        let mask = exts
            .iter()
            .find(|e| e.extname == "EMLINE_GFLUX_MASK")
            .expect("mask");
        assert_eq!(mask.bitpix, 32);
        assert!(layout().primary.iter().any(|(k, _, _)| k == "DAPTYPE"));
    }

    #[test]
    fn instrumental_sigma_interpolates() {
        assert_eq!(instrumental_sigma(3000.0), 81.0);
        assert!((instrumental_sigma(6564.0) - 65.6).abs() < 1e-9);
        assert_eq!(instrumental_sigma(10_000.0), 58.8);
    }
}
