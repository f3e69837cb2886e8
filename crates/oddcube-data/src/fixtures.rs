//! Small deterministic synthetic MAPS files for tests, fuzzing seeds and benchmarks: a smooth
//! exponential disc on a square grid in the real DAP layout, written through [`crate::fits::write`].
//! (The survey simulator makes realistic galaxies; these are minimal and exactly predictable.)

use std::path::{Path, PathBuf};

use crate::fits::write::{Card, FitsWriteError, ImageData, ImageHdu, WriteOptions, write_fits};
use crate::lines::DR17_CHANNELS;
use crate::maps::{GFLUX, GFLUX_IVAR, GFLUX_MASK, MapsFile, MapsMeta, SKYCOO, SPEED_OF_LIGHT_KM_S};
use crate::mask::{DONOTUSE, NOCOV};

/// A synthetic galaxy: an `n × n` DR17-layout grid (35 channels) with a circular footprint of
/// radius `0.45 n` spaxels, an exponential disc centred on the grid, σ = 0.05 everywhere, and
/// NOCOV|DONOTUSE with zero flux and IVAR outside the footprint.
pub fn disc(plateifu: &str, n: usize) -> MapsFile {
    let channels: Vec<String> = DR17_CHANNELS.iter().map(|(c, _)| c.to_string()).collect();
    let plane = n * n;
    let centre = (n as f64 - 1.0) / 2.0;
    let radius = 0.45 * n as f64;
    let mut flux = vec![0f32; channels.len() * plane];
    let mut ivar = vec![0f32; channels.len() * plane];
    let mut mask = vec![0i32; channels.len() * plane];
    let mut skycoo = vec![0f32; 2 * plane];
    for y in 0..n {
        for x in 0..n {
            let p = y * n + x;
            let (dx, dy) = (x as f64 - centre, y as f64 - centre);
            skycoo[p] = (-dx * 0.5) as f32;
            skycoo[plane + p] = (dy * 0.5) as f32;
            let r = (dx * dx + dy * dy).sqrt();
            for c in 0..channels.len() {
                let i = c * plane + p;
                if r > radius {
                    mask[i] = NOCOV | DONOTUSE;
                    continue;
                }
                // Each channel a different constant fraction of an Hα-like profile.
                let ratio = 1.0 / (1.0 + (c as f64 - 23.0).abs());
                flux[i] = (20.0 * ratio * (-r / (0.15 * n as f64)).exp()) as f32;
                ivar[i] = 400.0;
            }
        }
    }
    let meta = MapsMeta {
        plateifu: plateifu.to_string(),
        plateifu_from_filename: false,
        mangaid: Some(format!("1-{}", plateifu.len())),
        ra: Some(180.0),
        dec: Some(45.0),
        z: Some(0.03),
        psf_fwhm: Some(2.5),
        ifu_size: plateifu
            .split_once('-')
            .and_then(|(_, i)| i.parse::<u32>().ok())
            .map(|d| d / 100),
        dapqual: Some(0),
        drp3qual: Some(0),
        daptype: Some("HYB10-MILESHC-MASTARSSP".to_string()),
        versdap: Some("fixture".to_string()),
        notices: Vec::new(),
    };
    MapsFile {
        path: PathBuf::from(format!(
            "manga-{plateifu}-MAPS-HYB10-MILESHC-MASTARSSP.fits.gz"
        )),
        meta,
        channels,
        ny: n,
        nx: n,
        flux,
        ivar,
        mask,
        skycoo: Some(skycoo),
        hdus: Vec::new(),
    }
}

/// The primary cards and IMAGE HDUs that represent `maps` in the DAP layout (SPX_SKYCOO when
/// present, EMLINE_GFLUX with `Cnn` channel cards, _IVAR, _MASK), for callers that tamper
/// with them before writing.
pub fn maps_hdus(maps: &MapsFile) -> (Vec<Card>, Vec<ImageHdu>) {
    let m = &maps.meta;
    let mut primary = Vec::new();
    if !m.plateifu_from_filename {
        primary.push(Card::str("PLATEIFU", &m.plateifu, "PLATEID-ifuDesign"));
    }
    if let Some(id) = &m.mangaid {
        primary.push(Card::str("MANGAID", id, "MaNGA ID number"));
    }
    if let Some(ra) = m.ra {
        primary.push(Card::float("OBJRA", ra, "Object R.A. (J2000 deg.)"));
    }
    if let Some(dec) = m.dec {
        primary.push(Card::float("OBJDEC", dec, "Object Dec. (J2000 deg.)"));
    }
    if let Some(z) = m.z {
        primary.push(Card::float(
            "SCINPVEL",
            z * SPEED_OF_LIGHT_KM_S,
            "Initial guess velocity",
        ));
    }
    if let Some(fwhm) = m.psf_fwhm {
        primary.push(Card::float(
            crate::maps::PSF_FWHM_KEYWORD,
            fwhm,
            "Reconstructed FWHM in r-band (arcsec)",
        ));
    }
    if let Some(q) = m.dapqual {
        primary.push(Card::int("DAPQUAL", q, "DAP quality bitmask"));
    }
    if let Some(q) = m.drp3qual {
        primary.push(Card::int("DRP3QUAL", q, "DRP-3d quality bitmask"));
    }
    if let Some(t) = &m.daptype {
        primary.push(Card::str("DAPTYPE", t, "DAP analysis method"));
    }
    if let Some(v) = &m.versdap {
        primary.push(Card::str("VERSDAP", v, "MaNGA DAP version"));
    }
    let shape = [maps.channels.len(), maps.ny, maps.nx];
    let width = if maps.channels.len() >= 10 { 2 } else { 1 };
    let channel_cards: Vec<Card> = maps
        .channels
        .iter()
        .enumerate()
        .map(|(i, c)| {
            Card::str(
                &format!("C{:0width$}", i + 1),
                c,
                &format!("Data in channel {}", i + 1),
            )
        })
        .collect();
    let mut images = Vec::new();
    if let Some(sky) = &maps.skycoo {
        images.push(ImageHdu::new(
            SKYCOO,
            &[2, maps.ny, maps.nx],
            ImageData::F32(sky.clone()),
        ));
    }
    images.push(
        ImageHdu::new(GFLUX, &shape, ImageData::F32(maps.flux.clone()))
            .with_cards(channel_cards.clone()),
    );
    images.push(
        ImageHdu::new(GFLUX_IVAR, &shape, ImageData::F32(maps.ivar.clone()))
            .with_cards(channel_cards.clone()),
    );
    images.push(
        ImageHdu::new(GFLUX_MASK, &shape, ImageData::I32(maps.mask.clone()))
            .with_cards(channel_cards),
    );
    (primary, images)
}

/// Writes `maps` as a MAPS file (`.fits` or `.fits.gz` by the name). Checksums are left out:
/// fixtures are written often and nothing reads them.
pub fn write_maps(maps: &MapsFile, path: &Path) -> Result<(), FitsWriteError> {
    let (primary, images) = maps_hdus(maps);
    write_fits(
        path,
        &primary,
        &images,
        &WriteOptions {
            checksum: false,
            gzip_level: 1,
        },
    )
}
