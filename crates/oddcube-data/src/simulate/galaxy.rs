//! One simulated galaxy: its kind, the physical parameters drawn for it, and the rendered
//! emission-line maps (noise-free model, observed GFLUX/IVAR/MASK, summed fluxes, continuum S/N,
//! kinematics) on the DRP spaxel grid, with the masks the DAP would set.

use rand::Rng;
use rand_distr::{Distribution, LogNormal, StandardNormal};

use super::catalogue::{Geometry, coverage_radius_for, grid_size};
use super::render::{self, Grid, SPAXEL_ARCSEC};
use super::spectra::{self, CASE_B_HA_HB, FIXED_RATIOS, N_CHANNELS, ch};
use crate::mask::{DONOTUSE, LOWCOV, MATHERROR, NEARBOUND, NOCOV, NOVALUE};

/// What a simulated galaxy is. The first two are the ordinary population; the rest are the
/// injected anomalies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GalaxyKind {
    /// Star-forming disk: exponential Hα with HII-region clumps, a metallicity gradient in
    /// \[NII\]/Hα, its own offset under the star-forming sequence and ionisation gradient in
    /// \[OIII\]/Hβ, region-to-region ratio scatter, diffuse ionised gas where the surface
    /// brightness is low, dust falling outward.
    StarForming,
    /// Retired / early-type galaxy: faint, smooth, centrally concentrated LINER-like gas.
    Retired,
    /// A Seyfert 2 nucleus (PSF-sized, \[OIII\]/Hβ ≈ 10, strong HeII and \[NeIII\]) on an
    /// ordinary host.
    Seyfert,
    /// A blueberry: a compact, metal-poor, extreme starburst dominating the field.
    Blueberry,
    /// An extended emission-line region: an off-nuclear cloud photo-ionised by an AGN
    /// ("Voorwerpje"), bright in \[OIII\] and HeII, on an ordinary host.
    Eelr,
    /// A late-stage merger with two dust-buried star-forming nuclei a few arcsec apart.
    DualNucleus,
    /// A galactic wind: a shock-excited bicone along the disk's minor axis with LINER-like
    /// ratios, on a star-forming disk. Held out of the default mix.
    Outflow,
    /// A collisional ring galaxy: star formation in a ring, faint LINER-like gas inside it.
    /// Held out of the default mix.
    Ring,
    /// A star-forming disk crossed by an opaque dust lane that dims and reddens the lines along
    /// a band. Held out of the default mix.
    DustLane,
}

impl GalaxyKind {
    /// The anomaly kinds, in the order they are assigned.
    pub const ANOMALIES: [GalaxyKind; 4] = [
        GalaxyKind::Seyfert,
        GalaxyKind::Blueberry,
        GalaxyKind::Eelr,
        GalaxyKind::DualNucleus,
    ];

    /// Anomaly kinds that `simulate` injects only when asked (`--anomaly-kinds`): no part of oddcube's
    /// scoring was designed or chosen on them, so a survey of these tests the score on kinds
    /// it has never seen.
    pub const HELD_OUT: [GalaxyKind; 3] =
        [GalaxyKind::Outflow, GalaxyKind::Ring, GalaxyKind::DustLane];

    /// Every kind, ordinary first.
    pub const ALL: [GalaxyKind; 9] = [
        GalaxyKind::StarForming,
        GalaxyKind::Retired,
        GalaxyKind::Seyfert,
        GalaxyKind::Blueberry,
        GalaxyKind::Eelr,
        GalaxyKind::DualNucleus,
        GalaxyKind::Outflow,
        GalaxyKind::Ring,
        GalaxyKind::DustLane,
    ];

    /// The kind with this `truth.csv` name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The anomaly kind with this `truth.csv` name, or a sentence saying why there is none that
    /// names every anomaly kind.
    pub fn parse_anomaly(name: &str) -> Result<Self, String> {
        let anomalies = || {
            Self::ALL
                .iter()
                .filter(|k| k.is_anomaly())
                .map(|k| k.name())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match Self::parse(name.trim()) {
            Some(kind) if kind.is_anomaly() => Ok(kind),
            Some(kind) => Err(format!(
                "{} is an ordinary kind; anomaly kinds are {}",
                kind.name(),
                anomalies()
            )),
            None => Err(format!(
                "unknown kind {name:?}; anomaly kinds are {}",
                anomalies()
            )),
        }
    }

    /// Name used in `truth.csv`.
    pub fn name(self) -> &'static str {
        match self {
            GalaxyKind::StarForming => "star_forming",
            GalaxyKind::Retired => "retired",
            GalaxyKind::Seyfert => "seyfert",
            GalaxyKind::Blueberry => "blueberry",
            GalaxyKind::Eelr => "eelr",
            GalaxyKind::DualNucleus => "dual_nucleus",
            GalaxyKind::Outflow => "outflow",
            GalaxyKind::Ring => "ring",
            GalaxyKind::DustLane => "dust_lane",
        }
    }

    /// True for the injected anomaly kinds.
    pub fn is_anomaly(self) -> bool {
        !matches!(self, GalaxyKind::StarForming | GalaxyKind::Retired)
    }
}

/// The physical parameters drawn for one galaxy (the ground truth written to `truth.csv`).
#[derive(Debug, Clone, PartialEq)]
pub struct GalaxyTruth {
    /// Kind.
    pub kind: GalaxyKind,
    /// Real-galaxy geometry the galaxy was modelled on (Re replaced for blueberries).
    pub geometry: Geometry,
    /// Grid side, spaxels.
    pub grid: usize,
    /// PSF FWHM, arcsec.
    pub psf_fwhm: f64,
    /// Noise level relative to the survey median.
    pub noise_scale: f64,
    /// Central E(B−V) of the (host) gas, mag.
    pub ebv: f64,
    /// Peak intrinsic Hα surface brightness of the host gas (1e-17 erg/s/cm²/spaxel).
    pub ha_amplitude: f64,
    /// Central log \[NII\]/Hα of the host gas.
    pub log_nii_ha: f64,
    /// Change of log \[NII\]/Hα per Re (metallicity gradient; 0 for retired gas).
    pub nii_gradient: f64,
    /// Central log \[OIII\]/Hβ of the host gas.
    pub log_oiii_hb: f64,
    /// HII-region clumps added to a star-forming disk.
    pub n_clumps: usize,
    /// Rotation amplitude, km/s.
    pub vmax: f64,
    /// Peak continuum S/N per spaxel.
    pub continuum_snr: f64,
    /// Anomalous region: centre (col, row, 0-based spaxels) and radius (spaxels); NaN for
    /// ordinary galaxies.
    pub anomaly_col: f64,
    /// See `anomaly_col`.
    pub anomaly_row: f64,
    /// See `anomaly_col`.
    pub anomaly_radius: f64,
    /// Peak observed Hα (Blueberry, nuclei) or \[OIII\] (EELR) of the anomalous component over
    /// that of the host at the same place, noise-free; NaN for ordinary galaxies.
    pub anomaly_contrast: f64,
}

/// All maps of one simulated galaxy; every array is row-major, `[channel][row][col]` or
/// `[row][col]`, on a `grid × grid` grid.
#[derive(Debug, Clone)]
pub struct GalaxyMaps {
    /// Grid.
    pub grid: Grid,
    /// Noise-free observed-frame (dusty, PSF-convolved) line fluxes, 35 channels.
    pub model: Vec<f32>,
    /// EMLINE_GFLUX: Gaussian-fit fluxes (≥ 0, exact zeros where the fit found no line).
    pub flux: Vec<f32>,
    /// EMLINE_GFLUX_IVAR.
    pub ivar: Vec<f32>,
    /// EMLINE_GFLUX_MASK.
    pub mask: Vec<i32>,
    /// EMLINE_SFLUX: summed fluxes (can be negative); channel 0 holds the \[OII\] doublet.
    pub sflux: Vec<f32>,
    /// EMLINE_SFLUX_IVAR.
    pub sflux_ivar: Vec<f32>,
    /// EMLINE_SFLUX_MASK.
    pub sflux_mask: Vec<i32>,
    /// Per-spaxel coverage / analysis bits (NOCOV, LOWCOV, NOVALUE with DONOTUSE), one plane.
    pub spaxel_mask: Vec<i32>,
    /// g-band continuum S/N per spaxel (SPX_SNR), 0 outside the footprint.
    pub continuum_snr: Vec<f32>,
    /// Elliptical radius (arcsec) per spaxel.
    pub r_ell: Vec<f32>,
    /// Elliptical azimuth (degrees) per spaxel.
    pub azimuth: Vec<f32>,
    /// Gas line-of-sight velocity relative to systemic (km/s).
    pub gas_velocity: Vec<f32>,
    /// Gas velocity dispersion (km/s).
    pub gas_sigma: Vec<f32>,
    /// Stellar line-of-sight velocity (km/s).
    pub stellar_velocity: Vec<f32>,
    /// Stellar velocity dispersion (km/s).
    pub stellar_sigma: Vec<f32>,
}

impl GalaxyMaps {
    /// Value of `array` (35 channels) at channel `c`, spaxel (col, row).
    pub fn at<T: Copy>(&self, array: &[T], c: usize, col: usize, row: usize) -> T {
        array[c * self.grid.plane() + row * self.grid.size + col]
    }

    /// True when the spaxel was analysed (inside the footprint and not NOVALUE).
    pub fn analysed(&self, p: usize) -> bool {
        self.spaxel_mask[p] == 0
    }
}

/// Line-flux noise (1e-17 erg/s/cm²/spaxel) of each channel in a spaxel of typical continuum
/// S/N, modelled on the real galaxy 7815-3702: blue lines and the far-red (sky-dominated)
/// lines are noisier. Fixed-ratio partners take their noise from the main line.
const BASE_SIGMA: [f64; N_CHANNELS] = [
    0.070, 0.070, 0.065, 0.062, 0.056, 0.052, 0.052, 0.054, 0.054, 0.0, 0.050, 0.044, 0.041, 0.036,
    0.037, 0.0, 0.032, 0.040, 0.040, 0.041, 0.028, 0.0, 0.0, 0.039, 0.034, 0.039, 0.035, 0.036,
    0.036, 0.045, 0.060, 0.0, 0.065, 0.060, 0.070,
];

/// Per-line chance that the DAP flags a Gaussian fit NEARBOUND (value kept) or MATHERROR
/// (value zeroed), as seen in real maps.
const P_NEARBOUND: f64 = 0.003;
const P_MATHERROR: f64 = 0.001;

/// Geometry of the galaxy on the sky.
struct Disk {
    q: f64,
    sin_pa: f64,
    cos_pa: f64,
    reff: f64,
}

impl Disk {
    fn new(geometry: &Geometry) -> Self {
        let pa = geometry.pa_deg.to_radians();
        Self {
            q: (1.0 - geometry.ell).max(0.15),
            sin_pa: pa.sin(),
            cos_pa: pa.cos(),
            reff: geometry.reff_arcsec.max(0.5),
        }
    }

    /// (elliptical radius in arcsec, azimuth in the disk plane in radians).
    fn polar(&self, x: f64, y: f64) -> (f64, f64) {
        let major = x * self.sin_pa + y * self.cos_pa;
        let minor = (-x * self.cos_pa + y * self.sin_pa) / self.q;
        (major.hypot(minor), minor.atan2(major))
    }

    fn sin_inclination(&self) -> f64 {
        (1.0 - self.q * self.q).max(0.0).sqrt()
    }
}

/// Accumulates dusty line emission on the grid before PSF convolution.
struct Canvas {
    grid: Grid,
    k: [f64; N_CHANNELS],
    data: Vec<f64>,
}

impl Canvas {
    fn new(grid: Grid, k: [f64; N_CHANNELS]) -> Self {
        Self {
            grid,
            k,
            data: vec![0.0; N_CHANNELS * grid.plane()],
        }
    }

    /// Adds emission with intrinsic Hβ `hb` and spectrum `spectrum` behind E(B−V) `ebv`.
    fn add(&mut self, p: usize, hb: f64, ebv: f64, spectrum: &[f64; N_CHANNELS]) {
        if hb <= 0.0 {
            return;
        }
        let plane = self.grid.plane();
        for (c, (line, k)) in spectrum.iter().zip(&self.k).enumerate() {
            self.data[c * plane + p] += hb * line * 10f64.powf(-0.4 * k * ebv);
        }
    }

    /// Adds a compact elliptical Gaussian source of total intrinsic Hβ `hb_total` centred at
    /// sky (x0, y0), normalised on the pixel grid so its total flux is exact.
    #[allow(clippy::too_many_arguments)]
    fn add_gaussian(
        &mut self,
        x0: f64,
        y0: f64,
        sigma_major: f64,
        sigma_minor: f64,
        angle: f64,
        hb_total: f64,
        ebv: f64,
        spectrum: &[f64; N_CHANNELS],
    ) {
        let size = self.grid.size;
        let (sa, sb) = (sigma_major.max(0.25), sigma_minor.max(0.25));
        let (sin, cos) = angle.sin_cos();
        let weights: Vec<f64> = (0..self.grid.plane())
            .map(|p| {
                let (x, y) = self.grid.sky(p % size, p / size);
                let (dx, dy) = (x - x0, y - y0);
                let u = dx * sin + dy * cos;
                let v = -dx * cos + dy * sin;
                (-0.5 * ((u / sa).powi(2) + (v / sb).powi(2))).exp()
            })
            .collect();
        let total: f64 = weights.iter().sum();
        if total <= 0.0 {
            return;
        }
        for (p, w) in weights.iter().enumerate() {
            if *w > 1e-8 {
                self.add(p, hb_total * w / total, ebv, spectrum);
            }
        }
    }

    /// Convolves every channel with the PSF and returns the observed-frame maps.
    fn convolved(mut self, kernel: &[f64]) -> Vec<f64> {
        let plane = self.grid.plane();
        let mut scratch = Vec::new();
        for c in 0..N_CHANNELS {
            render::convolve_separable(
                &mut self.data[c * plane..(c + 1) * plane],
                self.grid.size,
                kernel,
                &mut scratch,
            );
        }
        self.data
    }
}

fn uniform(rng: &mut impl Rng, lo: f64, hi: f64) -> f64 {
    rng.random_range(lo..hi)
}

fn normal(rng: &mut impl Rng, mean: f64, sd: f64) -> f64 {
    mean + sd * rng.sample::<f64, _>(StandardNormal)
}

fn lognormal(rng: &mut impl Rng, median: f64, sigma_ln: f64) -> f64 {
    LogNormal::new(median.ln(), sigma_ln).map_or(median, |d| d.sample(rng))
}

/// Host gas model shared by ordinary galaxies and the hosts of anomalies.
///
/// A star-forming host is HII regions mixed with diffuse ionised gas (DIG), with ratios set per
/// spaxel at elliptical radius R (in Re) and relative pre-PSF Hα surface brightness Σ (1 at the
/// centre of the smooth disk, more on clumps):
///
/// - HII gas: metallicity Z = `log_nii_ha` + `nii_gradient`·R; log \[NII\]/Hα = Z + 0.3·v, at most
///   −0.25 (it saturates at high metallicity); log \[OIII\]/Hβ = Kauffmann+03(Z) −
///   `below_kauffmann` + `oiii_gradient`·min(R, 2.5) + u, softly kept ≥ `HII_MARGIN` dex under
///   Kauffmann+03 at the local \[NII\]/Hα (`soft_cap`); log \[SII\]/Hα = `log_sii_ha` +
///   0.06·min(R, 2.5) − u/2 + v, \[OI\]/Hα likewise from `log_oi_ha` with 0.05 dex/Re. The offset
///   is drawn per galaxy (log-normal, median 0.3 dex), so \[OIII\]/Hβ is not a fixed function of
///   \[NII\]/Hα, and the ionisation gradient can make it rise or fall outward.
/// - Region-to-region scatter: u and v are unit-variance Gaussian random fields correlated over
///   `SCATTER_SPAXELS` (≈ 1″, HII-region complexes) times `scatter_ion` (ionisation parameter)
///   and `scatter_low` (low-ionisation lines), before the PSF.
/// - DIG: its share of Hα is f = 1/(1 + (Σ/`dig_sb`)^`DIG_SLOPE`), so it dominates where the
///   surface brightness is low (outskirts, between clumps); DIG has \[NII\]/Hα `dig_nii` dex and
///   \[OIII\]/Hβ `dig_oiii` dex above the local HII gas, \[SII\]/Hα = `dig_sii` and \[OI\]/Hα =
///   `dig_oi`. Each ratio is the Hα- (Hβ-) weighted mix of the two, and the mixed \[OIII\]/Hβ is
///   softly kept `MIX_MARGIN` under a limit that moves from Kauffmann+03 (HII-dominated) to
///   Kewley+01 (DIG-dominated).
#[derive(Debug, Clone, Copy)]
struct Host {
    retired: bool,
    ha_amplitude: f64,
    ebv: f64,
    log_nii_ha: f64,
    nii_gradient: f64,
    below_kauffmann: f64,
    oiii_gradient: f64,
    log_oiii_hb: f64,
    log_sii_ha: f64,
    log_oi_ha: f64,
    n_clumps: usize,
    dig_sb: f64,
    dig_nii: f64,
    dig_oiii: f64,
    dig_sii: f64,
    dig_oi: f64,
    scatter_ion: f64,
    scatter_low: f64,
    /// Peak of the central star-forming concentration relative to the disk's centre (0: none).
    centre_amp: f64,
    /// Its Gaussian σ in units of Re.
    centre_sigma: f64,
}

/// Least distance (dex) of star-forming HII gas under Kauffmann+03 in \[OIII\]/Hβ.
const HII_MARGIN: f64 = 0.2;

/// Least distance (dex) of the mixed (HII + DIG) gas under the blended limit
/// (1 − w)·Kauffmann+03 + w·Kewley+01 in \[OIII\]/Hβ, w = (f − 0.3)/0.7 clamped to 0–1, f the DIG
/// share of Hα: spaxels where HII regions give ≥ 70 % of Hα stay star-forming, DIG-dominated
/// ones may become composite, never AGN-like.
const MIX_MARGIN: f64 = 0.15;

/// How steeply the DIG share of Hα falls with surface brightness: f = 1/(1 + (Σ/Σ_DIG)^1.5).
const DIG_SLOPE: f64 = 1.5;

/// Correlation scale (Gaussian σ, spaxels) of the region-to-region line-ratio scatter.
const SCATTER_SPAXELS: f64 = 2.0;

/// Keeps log \[OIII\]/Hβ `y` under `limit − margin` smoothly: unchanged up to 0.15 dex below
/// that, then bent (tanh) so that it approaches but never reaches it.
fn soft_cap(y: f64, limit: f64, margin: f64) -> f64 {
    const WIDTH: f64 = 0.15;
    let knee = limit - margin - WIDTH;
    if y <= knee {
        y
    } else {
        knee + WIDTH * ((y - knee) / WIDTH).tanh()
    }
}

/// Kauffmann+03 \[OIII\]/Hβ at \[NII\]/Hα `x` (kept left of its asymptote).
fn kauffmann(x: f64) -> f64 {
    crate::bpt::kauffmann03_nii(x.min(-0.05)).unwrap_or(-1.0)
}

/// log10 of the mix (1 − f)·10^a + f·10^b.
fn log_mix(a: f64, b: f64, f: f64) -> f64 {
    ((1.0 - f) * 10f64.powf(a) + f * 10f64.powf(b)).log10()
}

impl Host {
    fn draw(retired: bool, disk: &Disk, rng: &mut impl Rng) -> Self {
        if retired {
            Host {
                retired,
                ha_amplitude: lognormal(rng, 1.5, 0.5),
                ebv: uniform(rng, 0.0, 0.15),
                // LINER-like ratios (LIERs): clear of the Kewley+01 lines in every diagram.
                log_nii_ha: normal(rng, 0.1, 0.08).clamp(0.0, 0.3),
                nii_gradient: 0.0,
                below_kauffmann: 0.0,
                oiii_gradient: 0.0,
                log_oiii_hb: normal(rng, 0.12, 0.08).clamp(0.05, 0.35),
                log_sii_ha: normal(rng, -0.05, 0.06).clamp(-0.15, 0.1),
                log_oi_ha: normal(rng, -0.7, 0.08),
                n_clumps: 0,
                dig_sb: 0.0,
                dig_nii: 0.0,
                dig_oiii: 0.0,
                dig_sii: 0.0,
                dig_oi: 0.0,
                scatter_ion: 0.0,
                scatter_low: 0.0,
                centre_amp: 0.0,
                centre_sigma: 1.0,
            }
        } else {
            let log_nii_ha = normal(rng, -0.40, 0.08).clamp(-0.65, -0.28);
            let below_kauffmann = lognormal(rng, 0.3, 0.6).min(1.2);
            let k = kauffmann(log_nii_ha);
            Host {
                retired,
                ha_amplitude: lognormal(rng, 35.0, 0.75),
                ebv: uniform(rng, 0.05, 0.5),
                log_nii_ha,
                nii_gradient: normal(rng, -0.04, 0.06).min(0.05),
                below_kauffmann,
                oiii_gradient: normal(rng, 0.05, 0.07),
                log_oiii_hb: soft_cap(k - below_kauffmann, k, HII_MARGIN),
                log_sii_ha: normal(rng, -0.65, 0.06),
                log_oi_ha: normal(rng, -1.55, 0.08),
                n_clumps: ((disk.reff / 5.0) * rng.random_range(4.0..12.0)).round() as usize,
                dig_sb: lognormal(rng, 0.12, 0.5).min(0.2),
                dig_nii: uniform(rng, 0.1, 0.3),
                dig_oiii: uniform(rng, 0.0, 0.3),
                dig_sii: normal(rng, -0.15, 0.07),
                dig_oi: normal(rng, -1.05, 0.1),
                scatter_ion: uniform(rng, 0.08, 0.18),
                scatter_low: uniform(rng, 0.08, 0.18),
                centre_amp: lognormal(rng, 0.6, 1.0).min(6.0),
                centre_sigma: uniform(rng, 0.12, 0.35),
            }
        }
    }

    /// Renders the host gas (before PSF) onto the canvas.
    fn render(&self, canvas: &mut Canvas, disk: &Disk, rng: &mut impl Rng) {
        let grid = canvas.grid;
        let scale = disk.reff / 1.68;
        if self.retired {
            let spectrum = spectra::retired_gas(
                self.log_nii_ha,
                self.log_oiii_hb,
                self.log_sii_ha,
                self.log_oi_ha,
            )
            .spectrum();
            for p in 0..grid.plane() {
                let (x, y) = grid.sky(p % grid.size, p / grid.size);
                let (r, _) = disk.polar(x, y);
                // Sérsic n = 2 (b = 3.67): concentrated, following the old stars.
                let profile = (-3.67 * ((r + 0.3) / disk.reff).sqrt()).exp()
                    / (-3.67 * (0.3 / disk.reff).sqrt()).exp();
                canvas.add(
                    p,
                    self.ha_amplitude / CASE_B_HA_HB * profile,
                    self.ebv,
                    &spectrum,
                );
            }
            return;
        }
        // HII-region clumps: positions drawn from the exponential disk, in the disk plane.
        let clumps: Vec<(f64, f64, f64, f64)> = (0..self.n_clumps)
            .map(|_| {
                let radius = scale * (-(rng.random::<f64>() * rng.random::<f64>()).max(1e-9).ln());
                let theta = uniform(rng, 0.0, std::f64::consts::TAU);
                let (major, minor) = (radius * theta.cos(), radius * theta.sin() * disk.q);
                let x = major * disk.sin_pa - minor * disk.cos_pa;
                let y = major * disk.cos_pa + minor * disk.sin_pa;
                (x, y, uniform(rng, 0.4, 0.9), uniform(rng, 0.3, 1.2))
            })
            .collect();
        let mut scratch = Vec::new();
        let ion = render::correlated_noise(grid.size, SCATTER_SPAXELS, rng, &mut scratch);
        let low = render::correlated_noise(grid.size, SCATTER_SPAXELS, rng, &mut scratch);
        for p in 0..grid.plane() {
            let (x, y) = grid.sky(p % grid.size, p / grid.size);
            let (r, _) = disk.polar(x, y);
            let mut surface = (-r / scale).exp()
                + self.centre_amp * (-0.5 * (r / (self.centre_sigma * disk.reff)).powi(2)).exp();
            for &(cx, cy, sigma, amp) in &clumps {
                let d2 = (x - cx).powi(2) + (y - cy).powi(2);
                if d2 < 25.0 * sigma * sigma {
                    surface +=
                        amp * (-r / scale).exp().max(0.1) * (-0.5 * d2 / (sigma * sigma)).exp();
                }
            }
            let rr = r / disk.reff;
            let (u, v) = (self.scatter_ion * ion[p], self.scatter_low * low[p]);
            // HII gas: metallicity sets [NII]/Hα, the galaxy's offset and ionisation gradient
            // set [OIII]/Hβ under the star-forming sequence.
            let metal = (self.log_nii_ha + self.nii_gradient * rr).max(-1.2);
            // HII-region [NII]/Hα saturates near −0.25 at high metallicity.
            let nii = (metal + 0.3 * v).min(-0.25);
            let oiii = soft_cap(
                kauffmann(metal) - self.below_kauffmann + self.oiii_gradient * rr.min(2.5) + u,
                kauffmann(nii),
                HII_MARGIN,
            );
            let sii = self.log_sii_ha + 0.06 * rr.min(2.5) - 0.5 * u + v;
            let oi = self.log_oi_ha + 0.05 * rr.min(2.5) - 0.5 * u + v;
            // Diffuse ionised gas takes over where the surface brightness is low.
            let f = 1.0 / (1.0 + (surface / self.dig_sb).powf(DIG_SLOPE));
            let nii = log_mix(nii, nii + self.dig_nii, f);
            let oiii = log_mix(oiii, oiii + self.dig_oiii, f);
            let kewley = crate::bpt::kewley01_nii(nii.min(0.3)).unwrap_or(-1.0);
            let w = ((f - 0.3) / 0.7).clamp(0.0, 1.0);
            let limit = (1.0 - w) * kauffmann(nii) + w * kewley;
            let spectrum = spectra::star_forming_gas(
                soft_cap(oiii, limit, MIX_MARGIN),
                nii,
                log_mix(sii, self.dig_sii, f),
                log_mix(oi, self.dig_oi, f),
            )
            .spectrum();
            let ebv = self.ebv * (-r / (1.5 * disk.reff)).exp();
            canvas.add(
                p,
                self.ha_amplitude / CASE_B_HA_HB * surface,
                ebv,
                &spectrum,
            );
        }
    }
}

/// Draws the parameters of a galaxy of `kind` modelled on `geometry` and renders its maps.
pub fn simulate_galaxy(
    kind: GalaxyKind,
    mut geometry: Geometry,
    rng: &mut impl Rng,
) -> (GalaxyTruth, GalaxyMaps) {
    if kind == GalaxyKind::Blueberry {
        // Blueberries are dwarf galaxies of ≲ 1–2″; only the bundle and redshift carry over.
        geometry.reff_arcsec = uniform(rng, 0.6, 1.5);
    }
    let grid = Grid {
        size: grid_size(geometry.ifu_size),
    };
    let disk = Disk::new(&geometry);
    let psf_fwhm = uniform(rng, 2.3, 2.8);
    let kernel = render::gaussian_kernel(psf_fwhm / 2.3548 / SPAXEL_ARCSEC);
    let k = spectra::channel_k();
    let centre_p = grid.size / 2 * grid.size + grid.size / 2;
    let plane = grid.plane();
    let fwhm_px = psf_fwhm / SPAXEL_ARCSEC;

    let host_retired = match kind {
        GalaxyKind::StarForming
        | GalaxyKind::DualNucleus
        | GalaxyKind::Blueberry
        | GalaxyKind::Outflow
        | GalaxyKind::DustLane => false,
        GalaxyKind::Retired | GalaxyKind::Ring => true,
        GalaxyKind::Seyfert => rng.random_bool(0.4),
        GalaxyKind::Eelr => rng.random_bool(0.5),
    };
    let mut host = Host::draw(host_retired, &disk, rng);
    let mut anomaly = (f64::NAN, f64::NAN, f64::NAN, f64::NAN);

    let mut canvas = Canvas::new(grid, k);
    let model: Vec<f64> = if kind == GalaxyKind::Blueberry {
        let ratios = spectra::blueberry(
            uniform(rng, 0.75, 0.9),
            normal(rng, -1.7, 0.1),
            uniform(rng, -1.6, -1.2),
            10f64.powf(uniform(rng, 1.0, 1.78)),
        );
        host.ebv = uniform(rng, 0.0, 0.1);
        host.log_nii_ha = ratios.log_nii_ha;
        host.log_oiii_hb = ratios.log_oiii_hb;
        host.nii_gradient = 0.0;
        host.n_clumps = 0;
        let spectrum = ratios.spectrum();
        let sigma = disk.reff / 1.18; // Re of a Gaussian = 1.18 σ
        canvas.add_gaussian(
            0.0,
            0.0,
            sigma,
            sigma * disk.q,
            disk.sin_pa.atan2(disk.cos_pa),
            1.0,
            host.ebv,
            &spectrum,
        );
        // A faint underlying galaxy of the same gas (a few per cent of the light).
        let mut halo = Canvas::new(grid, k);
        for p in 0..plane {
            let (x, y) = grid.sky(p % grid.size, p / grid.size);
            let (r, _) = disk.polar(x, y);
            halo.add(p, 0.0015 * (-r / 2.0).exp(), host.ebv, &spectrum);
        }
        let core = canvas.convolved(&kernel);
        let halo = halo.convolved(&kernel);
        let peak_ha = uniform(rng, 40.0, 250.0);
        let unit_peak = core[ch::HA * plane + centre_p].max(1e-12);
        let scale = peak_ha / unit_peak;
        host.ha_amplitude = scale / CASE_B_HA_HB;
        let halo_peak = halo[ch::HA * plane + centre_p] * scale;
        anomaly = (
            grid.centre(),
            grid.centre(),
            (disk.reff + psf_fwhm) / SPAXEL_ARCSEC,
            peak_ha / halo_peak.max(1e-12),
        );
        core.iter()
            .zip(&halo)
            .map(|(c, h)| (c + h) * scale)
            .collect()
    } else {
        host.render(&mut canvas, &disk, rng);
        if kind == GalaxyKind::DustLane {
            anomaly = add_dust_lane(&mut canvas, &disk, psf_fwhm, rng);
        }
        let host_maps = canvas.convolved(&kernel);
        match kind {
            GalaxyKind::Seyfert => {
                let ratios = spectra::seyfert_nlr(
                    normal(rng, 1.0, 0.08).clamp(0.85, 1.15),
                    normal(rng, 0.0, 0.08),
                    normal(rng, -0.3, 0.06),
                    normal(rng, -0.85, 0.08),
                );
                let mut nucleus = Canvas::new(grid, k);
                nucleus.add_gaussian(
                    0.0,
                    0.0,
                    0.3,
                    0.3,
                    0.0,
                    1.0,
                    uniform(rng, 0.1, 0.4),
                    &ratios.spectrum(),
                );
                let nucleus = nucleus.convolved(&kernel);
                let host_peak = host_maps[ch::HA * plane + centre_p];
                let target = (uniform(rng, 2.0, 6.0) * host_peak).max(uniform(rng, 4.0, 20.0));
                let scale = target / nucleus[ch::HA * plane + centre_p].max(1e-12);
                anomaly = (
                    grid.centre(),
                    grid.centre(),
                    fwhm_px,
                    target / host_peak.max(1e-12),
                );
                with_component(&host_maps, &nucleus, scale)
            }
            GalaxyKind::Eelr => {
                let reach = coverage_radius_for(geometry.ifu_size) - 2.5;
                let distance = uniform(rng, 0.35, 0.7) * reach;
                let direction = uniform(rng, 0.0, std::f64::consts::TAU);
                let (x0, y0) = (distance * direction.cos(), distance * direction.sin());
                // Elongated roughly tangentially, like ionisation-cone edges and tidal tails.
                let angle = direction + std::f64::consts::FRAC_PI_2 + uniform(rng, -0.5, 0.5);
                let sigma_major = uniform(rng, 1.2, 2.5);
                let ratios = spectra::seyfert_nlr(
                    uniform(rng, 0.9, 1.1),
                    uniform(rng, -0.5, -0.25),
                    uniform(rng, -0.6, -0.4),
                    uniform(rng, -1.3, -1.0),
                );
                let mut cloud = Canvas::new(grid, k);
                cloud.add_gaussian(
                    x0,
                    y0,
                    sigma_major,
                    uniform(rng, 0.5, 1.0),
                    angle,
                    1.0,
                    uniform(rng, 0.0, 0.15),
                    &ratios.spectrum(),
                );
                let cloud = cloud.convolved(&kernel);
                let (col, row) = grid.pixel(x0, y0);
                let at = (row.round() as usize).min(grid.size - 1) * grid.size
                    + (col.round() as usize).min(grid.size - 1);
                let host_oiii = host_maps[ch::OIII_5008 * plane + at];
                let host_ha = host_maps[ch::HA * plane + at];
                let target = (uniform(rng, 1.5, 4.0) * host_ha).max(uniform(rng, 2.0, 8.0));
                let scale = target / cloud[ch::OIII_5008 * plane + at].max(1e-12);
                anomaly = (
                    col,
                    row,
                    2.0 * sigma_major / SPAXEL_ARCSEC,
                    target / host_oiii.max(1e-12),
                );
                with_component(&host_maps, &cloud, scale)
            }
            GalaxyKind::DualNucleus => {
                let separation = uniform(rng, 2.5, 5.0);
                let angle = uniform(rng, 0.0, std::f64::consts::PI);
                let (dx, dy) = (
                    0.5 * separation * angle.cos(),
                    0.5 * separation * angle.sin(),
                );
                let mut nuclei = Canvas::new(grid, k);
                for sign in [1.0, -1.0] {
                    let ratios = spectra::hii_region(
                        uniform(rng, -0.35, -0.25),
                        uniform(rng, 0.1, 0.2),
                        -0.55,
                        -1.4,
                    );
                    let brightness = uniform(rng, 0.6, 1.0);
                    nuclei.add_gaussian(
                        sign * dx,
                        sign * dy,
                        0.4,
                        0.4,
                        0.0,
                        brightness,
                        uniform(rng, 0.6, 1.0),
                        &ratios.spectrum(),
                    );
                }
                let nuclei = nuclei.convolved(&kernel);
                let host_peak = host_maps[ch::HA * plane + centre_p];
                let nuclei_peak = channel_peak(&nuclei, ch::HA, plane);
                let target = (uniform(rng, 1.5, 4.0) * host_peak).max(uniform(rng, 3.0, 10.0));
                let scale = target / nuclei_peak.max(1e-12);
                anomaly = (
                    grid.centre(),
                    grid.centre(),
                    (0.5 * separation + 0.5 * psf_fwhm) / SPAXEL_ARCSEC,
                    target / host_peak.max(1e-12),
                );
                with_component(&host_maps, &nuclei, scale)
            }
            GalaxyKind::Outflow => {
                let (wind, at, region) = render_outflow(grid, k, &disk, &geometry, rng);
                let wind = wind.convolved(&kernel);
                let host_ha = host_maps[ch::HA * plane + at];
                let target = (uniform(rng, 1.0, 3.0) * host_ha).max(uniform(rng, 0.5, 2.0));
                let scale = target / wind[ch::HA * plane + at].max(1e-12);
                anomaly = (
                    grid.centre(),
                    grid.centre(),
                    region,
                    target / host_ha.max(1e-12),
                );
                with_component(&host_maps, &wind, scale)
            }
            GalaxyKind::Ring => {
                let (ring, region) = render_ring(grid, k, &disk, &geometry, rng);
                let ring = ring.convolved(&kernel);
                let ring_peak = channel_peak(&ring, ch::HA, plane);
                let host_peak = host_maps[ch::HA * plane + centre_p];
                let target = uniform(rng, 5.0, 30.0);
                let scale = target / ring_peak.max(1e-12);
                anomaly = (
                    grid.centre(),
                    grid.centre(),
                    region,
                    target / host_peak.max(1e-12),
                );
                with_component(&host_maps, &ring, scale)
            }
            GalaxyKind::StarForming
            | GalaxyKind::Retired
            | GalaxyKind::Blueberry
            | GalaxyKind::DustLane => host_maps,
        }
    };

    let truth = GalaxyTruth {
        kind,
        geometry,
        grid: grid.size,
        psf_fwhm,
        noise_scale: lognormal(rng, 1.0, 0.2),
        ebv: host.ebv,
        ha_amplitude: host.ha_amplitude,
        log_nii_ha: host.log_nii_ha,
        nii_gradient: host.nii_gradient,
        log_oiii_hb: host.log_oiii_hb,
        n_clumps: host.n_clumps,
        vmax: if host.retired {
            uniform(rng, 50.0, 150.0)
        } else {
            uniform(rng, 100.0, 250.0)
        },
        continuum_snr: if host.retired {
            uniform(rng, 40.0, 90.0)
        } else {
            uniform(rng, 25.0, 70.0)
        },
        anomaly_col: anomaly.0,
        anomaly_row: anomaly.1,
        anomaly_radius: anomaly.2,
        anomaly_contrast: anomaly.3,
    };
    let maps = observe(&truth, &disk, host.retired, model, rng);
    (truth, maps)
}

/// The host's maps plus an anomalous component's, scaled by `scale`.
fn with_component(host: &[f64], component: &[f64], scale: f64) -> Vec<f64> {
    host.iter()
        .zip(component)
        .map(|(h, c)| h + c * scale)
        .collect()
}

/// The largest value of `channel` in `[channel][pixel]` maps of `plane` pixels (0 if none is
/// positive).
fn channel_peak(maps: &[f64], channel: usize, plane: usize) -> f64 {
    maps[channel * plane..(channel + 1) * plane]
        .iter()
        .copied()
        .fold(0.0, f64::max)
}

/// The outer reach (arcsec from the centre) of emission that the bundle still covers well.
fn bundle_reach(geometry: &Geometry) -> f64 {
    (coverage_radius_for(geometry.ifu_size) - 1.5).max(2.0)
}

/// A biconical wind along the disk's projected minor axis, before the PSF, with unit-free
/// brightness: shock-excited LINER-like ratios (fast shocks with precursor, Allen+08; Rich+11),
/// a cone of half-opening angle 20–35° that widens from a 0.7″ base, falling exponentially
/// with height. Returns the canvas, the pixel where it is normalised against the host (halfway
/// along one cone) and the truth radius (spaxels).
fn render_outflow(
    grid: Grid,
    k: [f64; N_CHANNELS],
    disk: &Disk,
    geometry: &Geometry,
    rng: &mut impl Rng,
) -> (Canvas, usize, f64) {
    let reach = bundle_reach(geometry);
    let height = uniform(rng, 0.3, 0.5) * reach;
    let tan_half = uniform(rng, 20f64, 35.0).to_radians().tan();
    let spectrum = spectra::retired_gas(
        uniform(rng, -0.15, 0.1),
        uniform(rng, -0.1, 0.3),
        uniform(rng, -0.35, -0.1),
        uniform(rng, -1.0, -0.7),
    )
    .spectrum();
    let ebv = uniform(rng, 0.0, 0.2);
    let mut wind = Canvas::new(grid, k);
    for p in 0..grid.plane() {
        let (x, y) = grid.sky(p % grid.size, p / grid.size);
        // Height along the projected minor axis and offset across it.
        let along = (-x * disk.cos_pa + y * disk.sin_pa).abs();
        let across = x * disk.sin_pa + y * disk.cos_pa;
        let width = 0.7 + along * tan_half;
        let profile = (-along / height).exp() * (-0.5 * (across / width).powi(2)).exp();
        wind.add(p, profile, ebv, &spectrum);
    }
    let half = 0.5 * reach;
    let (col, row) = grid.pixel(-half * disk.cos_pa, half * disk.sin_pa);
    let at = (row.round().max(0.0) as usize).min(grid.size - 1) * grid.size
        + (col.round().max(0.0) as usize).min(grid.size - 1);
    (wind, at, (2.0 * height).min(reach) / SPAXEL_ARCSEC)
}

/// A star-forming ring in the disk plane of radius 40–75 % of the bundle's reach over √q (so
/// the projected ellipse's geometric-mean radius is 40–75 % of the reach), 0.6–1.2″ wide, with
/// 4–10 knots, metal-poor HII ratios; before the PSF, unit-free brightness. Returns the canvas
/// and the truth radius (spaxels).
fn render_ring(
    grid: Grid,
    k: [f64; N_CHANNELS],
    disk: &Disk,
    geometry: &Geometry,
    rng: &mut impl Rng,
) -> (Canvas, f64) {
    let radius = uniform(rng, 0.4, 0.75) * bundle_reach(geometry) / disk.q.sqrt().max(0.5);
    let width = uniform(rng, 0.6, 1.2);
    let knots: Vec<(f64, f64)> = (0..rng.random_range(4..=10))
        .map(|_| {
            (
                uniform(rng, 0.0, std::f64::consts::TAU),
                uniform(rng, 0.5, 1.5),
            )
        })
        .collect();
    let spectrum = spectra::hii_region(
        uniform(rng, -0.65, -0.45),
        uniform(rng, 0.1, 0.3),
        normal(rng, -0.6, 0.06),
        normal(rng, -1.5, 0.08),
    )
    .spectrum();
    let ebv = uniform(rng, 0.05, 0.3);
    let mut ring = Canvas::new(grid, k);
    for p in 0..grid.plane() {
        let (x, y) = grid.sky(p % grid.size, p / grid.size);
        let (r, theta) = disk.polar(x, y);
        let band = (-0.5 * ((r - radius) / width).powi(2)).exp();
        if band < 1e-6 {
            continue;
        }
        let knotted: f64 = knots
            .iter()
            .map(|&(at, amp)| {
                let d = (theta - at + std::f64::consts::PI).rem_euclid(std::f64::consts::TAU)
                    - std::f64::consts::PI;
                amp * (-0.5 * (d * radius / width).powi(2)).exp()
            })
            .sum();
        ring.add(p, band * (1.0 + knotted), ebv, &spectrum);
    }
    (ring, (radius + 2.0 * width) / SPAXEL_ARCSEC)
}

/// Dims and reddens the host's pre-PSF emission along a straight dust lane (E(B−V) 0.8–1.5 at
/// its core, Gaussian profile 0.8–1.5″ wide, at any angle, its signed distance from the centre
/// drawn from −2″ to 2″ with the positive side capped at Re).
/// Returns the truth region (the lane's point nearest the centre, radius 2 widths + the PSF
/// FWHM, in spaxels) and, as the contrast, the Hα attenuation factor at the lane's core.
fn add_dust_lane(
    canvas: &mut Canvas,
    disk: &Disk,
    psf_fwhm: f64,
    rng: &mut impl Rng,
) -> (f64, f64, f64, f64) {
    let grid = canvas.grid;
    let extra_ebv = uniform(rng, 0.8, 1.5);
    let width = uniform(rng, 0.8, 1.5);
    let offset = uniform(rng, -2.0, 2.0).min(disk.reff);
    let angle = uniform(rng, 0.0, std::f64::consts::PI);
    let (sin, cos) = angle.sin_cos();
    let plane = grid.plane();
    for p in 0..plane {
        let (x, y) = grid.sky(p % grid.size, p / grid.size);
        let distance = x * cos + y * sin - offset;
        let ebv = extra_ebv * (-0.5 * (distance / width).powi(2)).exp();
        for (c, k) in canvas.k.iter().enumerate() {
            canvas.data[c * plane + p] *= 10f64.powf(-0.4 * k * ebv);
        }
    }
    let (col, row) = grid.pixel(offset * cos, offset * sin);
    (
        col,
        row,
        (2.0 * width + psf_fwhm) / SPAXEL_ARCSEC,
        10f64.powf(0.4 * canvas.k[ch::HA] * extra_ebv),
    )
}

/// Turns the noise-free model into what the DAP would write: footprint and analysis masks,
/// noise, clipped Gaussian-fit fluxes, fixed-ratio partners, summed fluxes, kinematics.
fn observe(
    truth: &GalaxyTruth,
    disk: &Disk,
    retired: bool,
    mut model: Vec<f64>,
    rng: &mut impl Rng,
) -> GalaxyMaps {
    let grid = Grid { size: truth.grid };
    let plane = grid.plane();
    let size = grid.size;
    let cover = coverage_radius_for(truth.geometry.ifu_size);
    let soft = 0.5 * truth.psf_fwhm;

    let mut spaxel_mask = vec![0i32; plane];
    let mut continuum_snr = vec![0f32; plane];
    let mut r_ell = vec![0f32; plane];
    let mut azimuth = vec![0f32; plane];
    let mut gas_velocity = vec![0f32; plane];
    let mut gas_sigma = vec![0f32; plane];
    let mut stellar_velocity = vec![0f32; plane];
    let mut stellar_sigma = vec![0f32; plane];
    let sigma0 = if retired {
        uniform(rng, 120.0, 220.0)
    } else {
        uniform(rng, 50.0, 110.0)
    };
    let turnover = 0.4 * disk.reff;
    for p in 0..plane {
        let (x, y) = grid.sky(p % size, p / size);
        let (r, theta) = disk.polar(x, y);
        r_ell[p] = r as f32;
        azimuth[p] = theta.to_degrees().rem_euclid(360.0) as f32;
        let hex = render::hex_radius(x, y);
        let rs = r.hypot(soft);
        let profile = if retired || truth.kind == GalaxyKind::Blueberry {
            (-3.67 * (rs / disk.reff.max(1.0)).sqrt()).exp()
                / (-3.67 * (soft / disk.reff.max(1.0)).sqrt()).exp()
        } else {
            (-(rs - soft) / (disk.reff / 1.68)).exp()
        };
        let snr =
            truth.continuum_snr * profile * (1.0 + 0.05 * rng.sample::<f64, _>(StandardNormal));
        if hex > cover {
            spaxel_mask[p] = NOCOV | LOWCOV | DONOTUSE;
        } else {
            continuum_snr[p] = snr.max(0.0) as f32;
            if hex > cover - 1.0 {
                spaxel_mask[p] = LOWCOV | DONOTUSE;
            } else if snr < 1.0 {
                // HYB10 leaves spaxels below the minimum continuum S/N (BINMINSN = 1) unanalysed.
                spaxel_mask[p] = NOVALUE | DONOTUSE;
            }
        }
        let rotation = truth.vmax * (r / turnover).tanh() * disk.sin_inclination() * theta.cos();
        gas_velocity[p] = rotation as f32;
        stellar_velocity[p] = (0.75 * rotation) as f32;
        gas_sigma[p] = (35.0 + 25.0 * (-r / disk.reff).exp()) as f32;
        stellar_sigma[p] = (sigma0 * (1.0 + r / disk.reff).powf(-0.3)) as f32;
    }
    if truth.kind == GalaxyKind::Seyfert {
        // The narrow-line region is kinematically hot where the nucleus dominates.
        let agn_fraction = 1.0 - truth.anomaly_contrast.recip().min(1.0);
        for (p, sigma) in gas_sigma.iter_mut().enumerate() {
            let (x, y) = grid.sky(p % size, p / size);
            let w = (-0.5 * (x * x + y * y) / (soft * soft / 1.38)).exp();
            *sigma += (200.0 * agn_fraction * w) as f32;
        }
    }

    // Fixed-ratio partners are tied in the DAP fit, so they are exact in the model too.
    for (dependent, main, ratio) in FIXED_RATIOS {
        for p in 0..plane {
            model[dependent * plane + p] = ratio * model[main * plane + p];
        }
    }

    let mut flux = vec![0f32; N_CHANNELS * plane];
    let mut ivar = vec![0f32; N_CHANNELS * plane];
    let mut mask = vec![0i32; N_CHANNELS * plane];
    let mut sflux = vec![0f32; N_CHANNELS * plane];
    let mut sflux_ivar = vec![0f32; N_CHANNELS * plane];
    let mut sflux_mask = vec![0i32; N_CHANNELS * plane];
    let mut scratch = Vec::new();
    let is_partner = |c: usize| FIXED_RATIOS.iter().any(|(d, _, _)| *d == c);
    for (c, base_sigma) in BASE_SIGMA.iter().enumerate() {
        let noise = render::correlated_noise(size, 0.8, rng, &mut scratch);
        let base = base_sigma.max(0.03) * truth.noise_scale;
        for p in 0..plane {
            let i = c * plane + p;
            let m = model[i];
            let snr = f64::from(continuum_snr[p]);
            let sigma = (base * base * (1.0 + snr / 25.0) + 4e-4 * m.max(0.0)).sqrt();
            let summed_sigma = 1.3 * sigma;
            let summed = m + summed_sigma * rng.sample::<f64, _>(StandardNormal);
            if spaxel_mask[p] != 0 {
                mask[i] = spaxel_mask[p];
                sflux_mask[i] = spaxel_mask[p];
                continue;
            }
            sflux[i] = summed as f32;
            sflux_ivar[i] = (1.0 / (summed_sigma * summed_sigma)) as f32;
            if is_partner(c) {
                continue;
            }
            // The Gaussian fit cannot return negative amplitude: lines the noise hides come
            // out exactly 0, with the error the fit would have had.
            flux[i] = (m + sigma * noise[p]).max(0.0) as f32;
            ivar[i] = (1.0 / (sigma * sigma)) as f32;
            let u: f64 = rng.random();
            if u < P_MATHERROR {
                mask[i] = MATHERROR | DONOTUSE;
                flux[i] = 0.0;
                ivar[i] = 0.0;
            } else if u < P_MATHERROR + P_NEARBOUND {
                mask[i] = NEARBOUND | DONOTUSE;
            }
        }
    }
    for (dependent, main, ratio) in FIXED_RATIOS {
        for p in 0..plane {
            let (d, m) = (dependent * plane + p, main * plane + p);
            flux[d] = (ratio * f64::from(flux[m])) as f32;
            ivar[d] = (f64::from(ivar[m]) / (ratio * ratio)) as f32;
            mask[d] = mask[m];
        }
    }
    // The summed-flux channel 0 is the [OII] doublet (OIId-3728); channel 1 is not measured.
    for (p, &bits) in spaxel_mask.iter().enumerate() {
        let (d0, d1) = (ch::OII_3727 * plane + p, ch::OII_3729 * plane + p);
        if bits == 0 {
            let s0 = 1.0 / f64::from(sflux_ivar[d0]).max(1e-12);
            let s1 = 1.0 / f64::from(sflux_ivar[d1]).max(1e-12);
            sflux[d0] += sflux[d1];
            sflux_ivar[d0] = (1.0 / (s0 + s1)) as f32;
        }
        sflux[d1] = 0.0;
        sflux_ivar[d1] = 0.0;
        sflux_mask[d1] = if bits == 0 { NOVALUE | DONOTUSE } else { bits };
    }
    let mut model: Vec<f32> = model.iter().map(|&v| v as f32).collect();
    // Re-derive partners from the stored f32 main line, exactly as the fluxes are.
    for (dependent, main, ratio) in FIXED_RATIOS {
        for p in 0..plane {
            model[dependent * plane + p] = (ratio * f64::from(model[main * plane + p])) as f32;
        }
    }
    GalaxyMaps {
        grid,
        model,
        flux,
        ivar,
        mask,
        sflux,
        sflux_ivar,
        sflux_mask,
        spaxel_mask,
        continuum_snr,
        r_ell,
        azimuth,
        gas_velocity,
        gas_sigma,
        stellar_velocity,
        stellar_sigma,
    }
}

/// Channel indices of the lines whose flux the DAP fits freely (not a fixed-ratio partner).
pub fn independent_channels() -> Vec<usize> {
    (0..N_CHANNELS)
        .filter(|c| !FIXED_RATIOS.iter().any(|(d, _, _)| d == c))
        .collect()
}
