//! Emission-line spectra of the simulated ionised gas: the 35 DR17 channels as fluxes relative
//! to Hβ, built from a handful of physical line ratios (Case B Balmer and Paschen series,
//! metal-line ratios of HII regions, LINER-like gas, Seyfert narrow-line regions, metal-poor
//! starbursts), plus Cardelli, Clayton & Mathis (1989) dust attenuation.

use crate::lines::DR17_CHANNELS;

/// Number of DR17 Gaussian-fit channels.
pub const N_CHANNELS: usize = 35;

/// Channel indices in the DR17 file order (checked against `DR17_CHANNELS` by a test).
pub mod ch {
    #![allow(missing_docs)]
    pub const OII_3727: usize = 0;
    pub const OII_3729: usize = 1;
    pub const H12: usize = 2;
    pub const H11: usize = 3;
    pub const HTHE: usize = 4;
    pub const HETA: usize = 5;
    pub const NEIII_3869: usize = 6;
    pub const HEI_3889: usize = 7;
    pub const HZET: usize = 8;
    pub const NEIII_3968: usize = 9;
    pub const HEPS: usize = 10;
    pub const HDEL: usize = 11;
    pub const HGAM: usize = 12;
    pub const HEII_4687: usize = 13;
    pub const HB: usize = 14;
    pub const OIII_4960: usize = 15;
    pub const OIII_5008: usize = 16;
    pub const NI_5199: usize = 17;
    pub const NI_5201: usize = 18;
    pub const HEI_5877: usize = 19;
    pub const OI_6302: usize = 20;
    pub const OI_6365: usize = 21;
    pub const NII_6549: usize = 22;
    pub const HA: usize = 23;
    pub const NII_6585: usize = 24;
    pub const SII_6718: usize = 25;
    pub const SII_6732: usize = 26;
    pub const HEI_7067: usize = 27;
    pub const ARIII_7137: usize = 28;
    pub const ARIII_7753: usize = 29;
    pub const PETA: usize = 30;
    pub const SIII_9071: usize = 31;
    pub const PZET: usize = 32;
    pub const SIII_9533: usize = 33;
    pub const PEPS: usize = 34;
}

/// Lines whose flux the DAP ties to another line with a fixed atomic ratio:
/// (dependent channel, main channel, ratio).
pub const FIXED_RATIOS: [(usize, usize, f64); 5] = [
    (ch::NEIII_3968, ch::NEIII_3869, 0.30),
    (ch::OIII_4960, ch::OIII_5008, 0.35),
    (ch::OI_6365, ch::OI_6302, 0.32),
    (ch::NII_6549, ch::NII_6585, 0.34),
    (ch::SIII_9071, ch::SIII_9533, 0.41),
];

/// Intrinsic Hα/Hβ for Case B recombination at 10⁴ K.
pub const CASE_B_HA_HB: f64 = 2.86;

/// Case B hydrogen line intensities relative to Hβ (10⁴ K, low density): Balmer (science notes
/// for Hγ..Hη, Storey & Hummer 1995 for H10–H12) and Paschen P8–P10.
const HYDROGEN: [(usize, f64); 13] = [
    (ch::HA, CASE_B_HA_HB),
    (ch::HB, 1.0),
    (ch::HGAM, 0.47),
    (ch::HDEL, 0.26),
    (ch::HEPS, 0.16),
    (ch::HZET, 0.105),
    (ch::HETA, 0.079),
    (ch::HTHE, 0.053),
    (ch::H11, 0.040),
    (ch::H12, 0.031),
    (ch::PEPS, 0.0367),
    (ch::PZET, 0.0257),
    (ch::PETA, 0.0185),
];

/// The physical ratios that fix a spectrum; all others follow from them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LineRatios {
    /// log10 \[OIII\]5008/Hβ.
    pub log_oiii_hb: f64,
    /// log10 \[NII\]6585/Hα.
    pub log_nii_ha: f64,
    /// log10 (\[SII\]6718+6732)/Hα.
    pub log_sii_ha: f64,
    /// log10 \[OI\]6302/Hα.
    pub log_oi_ha: f64,
    /// (\[OII\]3727+3729)/Hβ.
    pub oii_hb: f64,
    /// \[NeIII\]3869/\[OIII\]5008.
    pub neiii_oiii: f64,
    /// HeII4687/Hβ.
    pub heii_hb: f64,
    /// HeI5877/Hβ.
    pub hei_hb: f64,
    /// (\[NI\]5199+5201)/Hβ.
    pub ni_hb: f64,
    /// \[ArIII\]7137/Hβ.
    pub ariii_hb: f64,
    /// \[SIII\]9533/Hβ.
    pub siii_hb: f64,
    /// \[SII\]6718/6732 (density indicator: 1.4 at low density).
    pub sii_doublet: f64,
}

impl LineRatios {
    /// Intrinsic (dust-free) fluxes of all 35 channels relative to Hβ = 1. Fixed-ratio partners
    /// get their exact atomic ratio.
    pub fn spectrum(&self) -> [f64; N_CHANNELS] {
        let mut s = [0.0; N_CHANNELS];
        for (channel, ratio) in HYDROGEN {
            s[channel] = ratio;
        }
        let ha = CASE_B_HA_HB;
        s[ch::OIII_5008] = 10f64.powf(self.log_oiii_hb);
        s[ch::NII_6585] = ha * 10f64.powf(self.log_nii_ha);
        let sii = ha * 10f64.powf(self.log_sii_ha);
        s[ch::SII_6718] = sii * self.sii_doublet / (1.0 + self.sii_doublet);
        s[ch::SII_6732] = sii / (1.0 + self.sii_doublet);
        s[ch::OI_6302] = ha * 10f64.powf(self.log_oi_ha);
        // [OII]3729/3727 = 1.4 in the low-density limit.
        s[ch::OII_3727] = self.oii_hb / 2.4;
        s[ch::OII_3729] = self.oii_hb * 1.4 / 2.4;
        s[ch::NEIII_3869] = self.neiii_oiii * s[ch::OIII_5008];
        s[ch::HEII_4687] = self.heii_hb;
        s[ch::HEI_5877] = self.hei_hb;
        // HeI 3889 and 7065 scale with 5876 (Case B: ~0.9 and ~0.3 of it).
        s[ch::HEI_3889] = 0.9 * self.hei_hb;
        s[ch::HEI_7067] = 0.3 * self.hei_hb;
        // [NI]5198/5200 ≈ 0.66 at low density.
        s[ch::NI_5199] = 0.4 * self.ni_hb;
        s[ch::NI_5201] = 0.6 * self.ni_hb;
        s[ch::ARIII_7137] = self.ariii_hb;
        // [ArIII]7751/7136 is fixed by atomic physics (0.24).
        s[ch::ARIII_7753] = 0.24 * self.ariii_hb;
        s[ch::SIII_9533] = self.siii_hb;
        apply_fixed_ratios(&mut s);
        s
    }
}

/// Sets every fixed-ratio partner to its exact multiple of the main line.
pub fn apply_fixed_ratios(spectrum: &mut [f64; N_CHANNELS]) {
    for (dependent, main, ratio) in FIXED_RATIOS {
        spectrum[dependent] = ratio * spectrum[main];
    }
}

/// Cardelli, Clayton & Mathis (1989) extinction curve k(λ) = A_λ / E(B−V) for R_V = 3.1
/// (optical/near-IR branch, λ in Å, valid 3030 Å–3.3 μm).
pub fn cardelli_k(wavelength_aa: f64) -> f64 {
    const R_V: f64 = 3.1;
    let x = 1e4 / wavelength_aa; // inverse microns
    let (a, b) = if x < 1.1 {
        (0.574 * x.powf(1.61), -0.527 * x.powf(1.61))
    } else {
        let y = x - 1.82;
        let a = 1.0 + 0.17699 * y - 0.50447 * y.powi(2) - 0.02427 * y.powi(3)
            + 0.72085 * y.powi(4)
            + 0.01979 * y.powi(5)
            - 0.77530 * y.powi(6)
            + 0.32999 * y.powi(7);
        let b = 1.41338 * y + 2.28305 * y.powi(2) + 1.07233 * y.powi(3)
            - 5.38434 * y.powi(4)
            - 0.62251 * y.powi(5)
            + 5.30260 * y.powi(6)
            - 2.09002 * y.powi(7);
        (a, b)
    };
    R_V * (a + b / R_V)
}

/// k(λ) of every channel, in file order.
pub fn channel_k() -> [f64; N_CHANNELS] {
    let mut k = [0.0; N_CHANNELS];
    for (slot, (_, wave)) in k.iter_mut().zip(DR17_CHANNELS.iter()) {
        *slot = cardelli_k(*wave);
    }
    k
}

/// Ratios of a star-forming (HII-region) spectrum at a given log \[NII\]/Hα (a metallicity
/// proxy), `below` dex under the Kauffmann+03 line in \[OIII\]/Hβ.
pub fn hii_region(log_nii_ha: f64, below: f64, log_sii_ha: f64, log_oi_ha: f64) -> LineRatios {
    let x = log_nii_ha.min(-0.05);
    let log_oiii_hb = crate::bpt::kauffmann03_nii(x).map_or(-1.0, |k| k - below);
    star_forming_gas(log_oiii_hb, x, log_sii_ha, log_oi_ha)
}
/// Ratios of star-forming gas (HII regions, possibly mixed with diffuse ionised gas) with the
/// given log \[OIII\]/Hβ, \[NII\]/Hα, \[SII\]/Hα and \[OI\]/Hα; the other lines follow the
/// \[NII\]/Hα metallicity proxy and the ionisation (\[OIII\]/Hβ) as in `hii_region`.
pub fn star_forming_gas(
    log_oiii_hb: f64,
    log_nii_ha: f64,
    log_sii_ha: f64,
    log_oi_ha: f64,
) -> LineRatios {
    let x = log_nii_ha.min(-0.05);
    let log_oiii_hb = log_oiii_hb.min(0.8);
    let oiii_hb = 10f64.powf(log_oiii_hb);
    LineRatios {
        log_oiii_hb,
        log_nii_ha: x,
        log_sii_ha,
        log_oi_ha,
        // [OII]/Hβ rises as metallicity drops (≈1.6 at solar, ≈3 at a third solar).
        oii_hb: (1.6 - 2.5 * (x + 0.4)).clamp(0.8, 4.0),
        neiii_oiii: 0.1,
        heii_hb: 0.005,
        hei_hb: 0.10,
        ni_hb: 0.03,
        ariii_hb: 0.03 + 0.06 * oiii_hb,
        siii_hb: 0.5,
        sii_doublet: 1.4,
    }
}

/// Ratios of diffuse LINER-like gas in a retired galaxy (ionised by old stars).
pub fn retired_gas(
    log_nii_ha: f64,
    log_oiii_hb: f64,
    log_sii_ha: f64,
    log_oi_ha: f64,
) -> LineRatios {
    LineRatios {
        log_oiii_hb,
        log_nii_ha,
        log_sii_ha,
        log_oi_ha,
        oii_hb: 4.0,
        neiii_oiii: 0.15,
        heii_hb: 0.02,
        hei_hb: 0.05,
        ni_hb: 0.2,
        ariii_hb: 0.05,
        siii_hb: 0.4,
        sii_doublet: 1.3,
    }
}

/// Ratios of a Seyfert narrow-line region: high ionisation, strong HeII and \[NeIII\].
pub fn seyfert_nlr(
    log_oiii_hb: f64,
    log_nii_ha: f64,
    log_sii_ha: f64,
    log_oi_ha: f64,
) -> LineRatios {
    LineRatios {
        log_oiii_hb,
        log_nii_ha,
        log_sii_ha,
        log_oi_ha,
        oii_hb: 3.0,
        neiii_oiii: 0.1,
        heii_hb: 0.25,
        hei_hb: 0.10,
        ni_hb: 0.15,
        ariii_hb: 0.25,
        siii_hb: 1.0,
        sii_doublet: 1.2,
    }
}

/// Ratios of a blueberry (Yang+17): metal-poor, extremely high-ionisation compact starburst
/// with \[OIII\]/\[OII\] = `oiii_oii`.
pub fn blueberry(log_oiii_hb: f64, log_nii_ha: f64, log_sii_ha: f64, oiii_oii: f64) -> LineRatios {
    let oiii_hb = 10f64.powf(log_oiii_hb);
    LineRatios {
        log_oiii_hb,
        log_nii_ha,
        log_sii_ha,
        log_oi_ha: log_sii_ha - 0.6,
        oii_hb: oiii_hb / oiii_oii,
        neiii_oiii: 0.08,
        heii_hb: 0.015,
        hei_hb: 0.11,
        ni_hb: 0.005,
        ariii_hb: 0.07,
        siii_hb: 0.25,
        sii_doublet: 1.4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_constants_match_dr17_order() {
        let names: Vec<&str> = DR17_CHANNELS.iter().map(|(n, _)| *n).collect();
        let checks = [
            (ch::OII_3727, "OII-3727"),
            (ch::HZET, "Hzet-3890"),
            (ch::NEIII_3968, "NeIII-3968"),
            (ch::HEII_4687, "HeII-4687"),
            (ch::HB, "Hb-4862"),
            (ch::OIII_5008, "OIII-5008"),
            (ch::NI_5201, "NI-5201"),
            (ch::OI_6365, "OI-6365"),
            (ch::HA, "Ha-6564"),
            (ch::NII_6585, "NII-6585"),
            (ch::SII_6732, "SII-6732"),
            (ch::ARIII_7753, "ARIII-7753"),
            (ch::PETA, "Peta-9017"),
            (ch::SIII_9071, "SIII-9071"),
            (ch::PEPS, "Peps-9548"),
        ];
        for (index, name) in checks {
            assert!(
                names[index].eq_ignore_ascii_case(name),
                "{index}: {} vs {name}",
                names[index]
            );
        }
        assert_eq!(names.len(), N_CHANNELS);
    }

    #[test]
    fn cardelli_matches_published_values() {
        // CCM89, R_V = 3.1: k(Hβ) ≈ 3.61, k(Hα) ≈ 2.53, k(V = 5500 Å) ≈ 3.1.
        assert!(
            (cardelli_k(4862.7) - 3.61).abs() < 0.03,
            "{}",
            cardelli_k(4862.7)
        );
        assert!(
            (cardelli_k(6564.6) - 2.53).abs() < 0.03,
            "{}",
            cardelli_k(6564.6)
        );
        assert!(
            (cardelli_k(5494.5) - 3.1).abs() < 0.03,
            "{}",
            cardelli_k(5494.5)
        );
        let k = channel_k();
        assert!(
            k.windows(2).all(|w| w[0] >= w[1]),
            "k falls with wavelength"
        );
    }

    #[test]
    fn spectra_are_positive_with_exact_partners() {
        for ratios in [
            hii_region(-0.4, 0.25, -0.5, -1.5),
            retired_gas(0.0, 0.0, -0.1, -0.7),
            seyfert_nlr(1.0, 0.0, -0.3, -0.85),
            blueberry(0.85, -1.7, -1.4, 20.0),
        ] {
            let s = ratios.spectrum();
            assert!(s.iter().all(|&v| v > 0.0 && v.is_finite()), "{s:?}");
            assert_eq!(s[ch::HB], 1.0);
            assert_eq!(s[ch::HA], CASE_B_HA_HB);
            for (dependent, main, ratio) in FIXED_RATIOS {
                assert_eq!(s[dependent], ratio * s[main]);
            }
        }
    }
}
