//! BPT line-ratio diagnostics: the Kauffmann+03, Kewley+01 and Kewley+06 demarcation lines and
//! the spaxel / galaxy classification built on them (as Marvin does for MaNGA).
//!
//! All ratios are log10 flux ratios: x = log \[NII\]6585/Hα, log (\[SII\]6718+6732)/Hα or log
//! \[OI\]6302/Hα; y = log \[OIII\]5008/Hβ. The functions are pure so the simulator's tests and the
//! `bpt` command share one definition.

/// A line measurement: Gaussian-fit flux and its inverse variance (DAP units).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LineFlux {
    /// Flux (1e-17 erg/s/cm²/spaxel).
    pub flux: f64,
    /// Inverse variance of the flux; 0 = no measurement.
    pub ivar: f64,
}

impl LineFlux {
    /// A measurement from flux and inverse variance.
    pub fn new(flux: f64, ivar: f64) -> Self {
        Self { flux, ivar }
    }

    /// Signal-to-noise ratio `flux · sqrt(ivar)`; 0 when there is no usable measurement.
    pub fn snr(self) -> f64 {
        if self.ivar > 0.0 && self.ivar.is_finite() && self.flux.is_finite() {
            self.flux * self.ivar.sqrt()
        } else {
            0.0
        }
    }

    /// The sum of two independent measurements (fluxes add, variances add).
    pub fn plus(self, other: LineFlux) -> LineFlux {
        let ivar = if self.ivar > 0.0 && other.ivar > 0.0 {
            1.0 / (1.0 / self.ivar + 1.0 / other.ivar)
        } else {
            0.0
        };
        LineFlux {
            flux: self.flux + other.flux,
            ivar,
        }
    }
}

/// The seven lines the BPT diagrams need.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BptLines {
    /// Hb-4862.
    pub hb: LineFlux,
    /// OIII-5008.
    pub oiii: LineFlux,
    /// OI-6302.
    pub oi: LineFlux,
    /// Ha-6564.
    pub ha: LineFlux,
    /// NII-6585.
    pub nii: LineFlux,
    /// SII-6718.
    pub sii_6718: LineFlux,
    /// SII-6732.
    pub sii_6732: LineFlux,
}

impl BptLines {
    /// The DAP channel names of the lines, in the field order of this struct.
    pub const CHANNELS: [&'static str; 7] = [
        "Hb-4862",
        "OIII-5008",
        "OI-6302",
        "Ha-6564",
        "NII-6585",
        "SII-6718",
        "SII-6732",
    ];

    /// Builds the set from a lookup of (flux, ivar) by DAP channel name; a missing channel
    /// counts as not measured.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<(f64, f64)>) -> Self {
        let get = |name: &str| {
            lookup(name)
                .map(|(f, i)| LineFlux::new(f, i))
                .unwrap_or_default()
        };
        Self {
            hb: get("Hb-4862"),
            oiii: get("OIII-5008"),
            oi: get("OI-6302"),
            ha: get("Ha-6564"),
            nii: get("NII-6585"),
            sii_6718: get("SII-6718"),
            sii_6732: get("SII-6732"),
        }
    }

    /// \[SII\] 6718 + 6732.
    pub fn sii(&self) -> LineFlux {
        self.sii_6718.plus(self.sii_6732)
    }
}

/// BPT class of a spectrum (Kewley+06 scheme, as in Marvin).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BptClass {
    /// Below Kauffmann+03 in \[NII\] and below Kewley+01 in \[SII\] (and \[OI\]).
    StarForming,
    /// Between Kauffmann+03 and Kewley+01 in \[NII\], below Kewley+01 in \[SII\] (and \[OI\]).
    Composite,
    /// Above Kewley+01 in every diagram and above the Kewley+06 Seyfert/LINER lines.
    Seyfert,
    /// Above Kewley+01 in every diagram and below the Kewley+06 Seyfert/LINER lines.
    Liner,
    /// The diagrams disagree.
    Ambiguous,
    /// Some required line has S/N below the threshold (or no positive flux).
    Unclassified,
}

impl BptClass {
    /// Short lowercase name: `sf`, `composite`, `seyfert`, `liner`, `ambiguous`, `unclassified`.
    pub fn name(self) -> &'static str {
        match self {
            BptClass::StarForming => "sf",
            BptClass::Composite => "composite",
            BptClass::Seyfert => "seyfert",
            BptClass::Liner => "liner",
            BptClass::Ambiguous => "ambiguous",
            BptClass::Unclassified => "unclassified",
        }
    }

    /// All classes, in the order above.
    pub const ALL: [BptClass; 6] = [
        BptClass::StarForming,
        BptClass::Composite,
        BptClass::Seyfert,
        BptClass::Liner,
        BptClass::Ambiguous,
        BptClass::Unclassified,
    ];
}

impl std::fmt::Display for BptClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Classification settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BptOptions {
    /// Minimum S/N of every line used (3 in Marvin).
    pub min_snr: f64,
    /// Use the \[OI\] diagram (Marvin's default); without it, \[NII\] and \[SII\] decide.
    pub use_oi: bool,
}

impl Default for BptOptions {
    fn default() -> Self {
        Self {
            min_snr: 3.0,
            use_oi: true,
        }
    }
}

/// Kauffmann+03 star-forming limit in the \[NII\] diagram: y = 0.61/(x − 0.05) + 1.30, x < 0.05.
pub fn kauffmann03_nii(x: f64) -> Option<f64> {
    (x < 0.05).then(|| 0.61 / (x - 0.05) + 1.30)
}

/// Kewley+01 maximum-starburst line in the \[NII\] diagram: y = 0.61/(x − 0.47) + 1.19, x < 0.47.
pub fn kewley01_nii(x: f64) -> Option<f64> {
    (x < 0.47).then(|| 0.61 / (x - 0.47) + 1.19)
}

/// Kewley+01 maximum-starburst line in the \[SII\] diagram: y = 0.72/(x − 0.32) + 1.30, x < 0.32.
pub fn kewley01_sii(x: f64) -> Option<f64> {
    (x < 0.32).then(|| 0.72 / (x - 0.32) + 1.30)
}

/// Kewley+01 maximum-starburst line in the \[OI\] diagram: y = 0.73/(x + 0.59) + 1.33, x < −0.59.
pub fn kewley01_oi(x: f64) -> Option<f64> {
    (x < -0.59).then(|| 0.73 / (x + 0.59) + 1.33)
}

/// Kewley+06 Seyfert/LINER line in the \[SII\] diagram: y = 1.89 x + 0.76.
pub fn kewley06_sii(x: f64) -> f64 {
    1.89 * x + 0.76
}

/// Kewley+06 Seyfert/LINER line in the \[OI\] diagram: y = 1.18 x + 1.30.
pub fn kewley06_oi(x: f64) -> f64 {
    1.18 * x + 1.30
}

/// True when (x, y) lies below a hyperbolic demarcation that exists only left of its asymptote;
/// right of the asymptote every point counts as above.
fn below(curve: fn(f64) -> Option<f64>, x: f64, y: f64) -> bool {
    curve(x).is_some_and(|limit| y < limit)
}

/// The log ratios of a classified spectrum.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BptPoint {
    /// log \[NII\]6585/Hα.
    pub log_nii_ha: f64,
    /// log \[SII\]/Hα.
    pub log_sii_ha: f64,
    /// log \[OI\]/Hα; NaN when \[OI\] is not used.
    pub log_oi_ha: f64,
    /// log \[OIII\]5008/Hβ.
    pub log_oiii_hb: f64,
}

/// The log ratios when every line needed has S/N ≥ `options.min_snr` and positive flux.
pub fn bpt_point(lines: &BptLines, options: &BptOptions) -> Option<BptPoint> {
    let mut needed = vec![lines.hb, lines.oiii, lines.ha, lines.nii, lines.sii()];
    if options.use_oi {
        needed.push(lines.oi);
    }
    if needed
        .iter()
        .any(|l| l.flux.is_nan() || l.flux <= 0.0 || l.snr() < options.min_snr)
    {
        return None;
    }
    let ratio = |a: LineFlux, b: LineFlux| (a.flux / b.flux).log10();
    Some(BptPoint {
        log_nii_ha: ratio(lines.nii, lines.ha),
        log_sii_ha: ratio(lines.sii(), lines.ha),
        log_oi_ha: if options.use_oi {
            ratio(lines.oi, lines.ha)
        } else {
            f64::NAN
        },
        log_oiii_hb: ratio(lines.oiii, lines.hb),
    })
}

/// Classifies a point on the diagrams (Kewley+06 as implemented by Marvin).
pub fn classify_point(point: &BptPoint, use_oi: bool) -> BptClass {
    let y = point.log_oiii_hb;
    let below_kauffmann = below(kauffmann03_nii, point.log_nii_ha, y);
    let below_kewley_nii = below(kewley01_nii, point.log_nii_ha, y);
    let below_kewley_sii = below(kewley01_sii, point.log_sii_ha, y);
    let below_kewley_oi = !use_oi || below(kewley01_oi, point.log_oi_ha, y);
    let above_kewley_oi = !use_oi || !below(kewley01_oi, point.log_oi_ha, y);

    if below_kauffmann && below_kewley_sii && below_kewley_oi {
        return BptClass::StarForming;
    }
    if !below_kauffmann && below_kewley_nii && below_kewley_sii && below_kewley_oi {
        return BptClass::Composite;
    }
    if !below_kewley_nii && !below_kewley_sii && above_kewley_oi {
        let seyfert_sii = y > kewley06_sii(point.log_sii_ha);
        let seyfert_oi = !use_oi || y > kewley06_oi(point.log_oi_ha);
        let liner_oi = !use_oi || y <= kewley06_oi(point.log_oi_ha);
        if seyfert_sii && seyfert_oi {
            return BptClass::Seyfert;
        }
        if !seyfert_sii && liner_oi {
            return BptClass::Liner;
        }
    }
    BptClass::Ambiguous
}

/// Classifies one spectrum from its line fluxes and inverse variances.
pub fn classify(lines: &BptLines, options: &BptOptions) -> BptClass {
    match bpt_point(lines, options) {
        Some(point) => classify_point(&point, options.use_oi),
        None => BptClass::Unclassified,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Noise-free lines with the given log ratios and Hβ = 10, Hα = 30.
    fn lines(log_nii: f64, log_sii: f64, log_oi: f64, log_oiii: f64) -> BptLines {
        let exact = |f: f64| LineFlux::new(f, 1e6);
        let ha = 30.0;
        let sii = ha * 10f64.powf(log_sii);
        BptLines {
            hb: exact(10.0),
            oiii: exact(10.0 * 10f64.powf(log_oiii)),
            oi: exact(ha * 10f64.powf(log_oi)),
            ha: exact(ha),
            nii: exact(ha * 10f64.powf(log_nii)),
            sii_6718: exact(0.6 * sii),
            sii_6732: exact(0.4 * sii),
        }
    }

    #[test]
    fn curves_match_published_forms() {
        assert!((kauffmann03_nii(-0.4).unwrap() - (0.61 / -0.45 + 1.30)).abs() < 1e-12);
        assert!((kewley01_nii(0.0).unwrap() - (0.61 / -0.47 + 1.19)).abs() < 1e-12);
        assert!((kewley01_sii(-0.5).unwrap() - (0.72 / -0.82 + 1.30)).abs() < 1e-12);
        assert!((kewley01_oi(-1.5).unwrap() - (0.73 / -0.91 + 1.33)).abs() < 1e-12);
        assert_eq!(kauffmann03_nii(0.05), None);
        assert_eq!(kewley01_oi(-0.59), None);
        // Kauffmann lies below Kewley+01 over the range galaxies occupy (the curves cross
        // near x = -1.3, far left of any real spectrum).
        for i in 0..100 {
            let x = -1.2 + 0.0124 * i as f64;
            assert!(
                kauffmann03_nii(x).unwrap() < kewley01_nii(x).unwrap(),
                "x = {x}"
            );
        }
    }

    #[test]
    fn typical_spectra_fall_in_their_classes() {
        let options = BptOptions::default();
        // HII region: log NII/Ha -0.4, SII/Ha -0.5, OI/Ha -1.5, OIII/Hb -0.3.
        assert_eq!(
            classify(&lines(-0.4, -0.5, -1.5, -0.3), &options),
            BptClass::StarForming
        );
        // Composite: between the [NII] curves, star-forming in [SII] and [OI].
        assert_eq!(
            classify(&lines(-0.2, -0.5, -1.5, 0.0), &options),
            BptClass::Composite
        );
        // Seyfert: OIII/Hb 10, NII/Ha 1, SII/Ha 0.5, OI/Ha 0.2.
        assert_eq!(
            classify(&lines(0.0, -0.3, -0.7, 1.0), &options),
            BptClass::Seyfert
        );
        // LINER: OIII/Hb 1, NII/Ha 1.5, SII/Ha 1, OI/Ha 0.3.
        assert_eq!(
            classify(&lines(0.18, 0.0, -0.5, 0.0), &options),
            BptClass::Liner
        );
        // Star-forming in [NII], AGN-like in [SII]: the diagrams disagree.
        assert_eq!(
            classify(&lines(-0.6, 0.2, -1.5, -0.2), &options),
            BptClass::Ambiguous
        );
    }

    #[test]
    fn low_snr_or_zero_flux_is_unclassified() {
        let options = BptOptions::default();
        let mut faint = lines(-0.4, -0.5, -1.5, -0.3);
        faint.oi = LineFlux::new(0.01, 1.0);
        assert_eq!(classify(&faint, &options), BptClass::Unclassified);
        // Without the [OI] diagram the same spectrum is classified.
        let no_oi = BptOptions {
            use_oi: false,
            ..options
        };
        assert_eq!(classify(&faint, &no_oi), BptClass::StarForming);
        let mut zero = lines(-0.4, -0.5, -1.5, -0.3);
        zero.hb = LineFlux::new(0.0, 100.0);
        assert_eq!(classify(&zero, &options), BptClass::Unclassified);
        let mut no_ivar = lines(-0.4, -0.5, -1.5, -0.3);
        no_ivar.nii.ivar = 0.0;
        assert_eq!(classify(&no_ivar, &options), BptClass::Unclassified);
    }

    #[test]
    fn sii_doublet_combines_fluxes_and_variances() {
        let a = LineFlux::new(3.0, 4.0); // sigma 0.5
        let b = LineFlux::new(1.0, 1.0 / 0.75); // variance 0.75
        let sum = a.plus(b);
        assert_eq!(sum.flux, 4.0);
        assert!((1.0 / sum.ivar - 1.0).abs() < 1e-12);
        assert_eq!(a.plus(LineFlux::new(1.0, 0.0)).ivar, 0.0);
    }

    #[test]
    fn lookup_by_channel_name() {
        let lines = BptLines::from_lookup(|name| (name == "Ha-6564").then_some((5.0, 2.0)));
        assert_eq!(lines.ha, LineFlux::new(5.0, 2.0));
        assert_eq!(lines.hb, LineFlux::default());
    }
}
