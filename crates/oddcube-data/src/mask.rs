//! MANGA_DAPPIXMASK bits and the policy that decides which pixels are usable.

/// No coverage in the cube (outside the IFU footprint).
pub const NOCOV: i32 = 1 << 0;
/// Low coverage (edge of the footprint).
pub const LOWCOV: i32 = 1 << 1;
/// A dead fibre contributed.
pub const DEADFIBER: i32 = 1 << 2;
/// A foreground star.
pub const FORESTAR: i32 = 1 << 3;
/// The quantity was not computed (e.g. continuum too faint).
pub const NOVALUE: i32 = 1 << 4;
/// The value is unreliable (not folded into DONOTUSE).
pub const UNRELIABLE: i32 = 1 << 5;
/// A mathematical error occurred.
pub const MATHERROR: i32 = 1 << 6;
/// The fit failed.
pub const FITFAILED: i32 = 1 << 7;
/// A fit parameter sits at a boundary.
pub const NEARBOUND: i32 = 1 << 8;
/// No correction applied.
pub const NOCORRECTION: i32 = 1 << 9;
/// Multi-component fit.
pub const MULTICOMP: i32 = 1 << 10;
/// Do not use: set whenever any of bits 0–4 or 6–8 is.
pub const DONOTUSE: i32 = 1 << 30;

/// The bits whose presence the DAP consolidates into DONOTUSE.
pub const DONOTUSE_SOURCES: i32 =
    NOCOV | LOWCOV | DEADFIBER | FORESTAR | NOVALUE | MATHERROR | FITFAILED | NEARBOUND;

/// Which mask bits make a pixel unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum MaskPolicy {
    /// DONOTUSE or UNRELIABLE set → unusable (Marvin's DR17 default; the oddcube default).
    #[default]
    Strict,
    /// Only DONOTUSE set → unusable (keeps UNRELIABLE pixels).
    Lenient,
}

impl MaskPolicy {
    /// The bits that reject a pixel under this policy.
    pub fn reject_bits(self) -> i32 {
        match self {
            MaskPolicy::Strict => DONOTUSE | UNRELIABLE,
            MaskPolicy::Lenient => DONOTUSE,
        }
    }

    /// A pixel is usable when no rejecting bit is set, its IVAR is positive and both its flux
    /// and IVAR are finite.
    pub fn is_good(self, mask: i32, flux: f32, ivar: f32) -> bool {
        mask & self.reject_bits() == 0 && ivar > 0.0 && flux.is_finite() && ivar.is_finite()
    }

    /// Parses `strict` or `lenient`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "strict" => Some(Self::Strict),
            "lenient" => Some(Self::Lenient),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies() {
        assert!(MaskPolicy::Strict.is_good(0, 1.0, 1.0));
        assert!(!MaskPolicy::Strict.is_good(UNRELIABLE, 1.0, 1.0));
        assert!(MaskPolicy::Lenient.is_good(UNRELIABLE, 1.0, 1.0));
        assert!(!MaskPolicy::Lenient.is_good(NOCOV | DONOTUSE, 0.0, 0.0));
        assert!(!MaskPolicy::Lenient.is_good(0, 1.0, 0.0));
        assert!(!MaskPolicy::Lenient.is_good(0, f32::NAN, 1.0));
        assert!(!MaskPolicy::Lenient.is_good(0, 1.0, f32::INFINITY));
    }
}
