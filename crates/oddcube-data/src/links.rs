//! Where a MaNGA galaxy can be looked at on the web: its Marvin (DR17) page and the SkyServer
//! summary at its position. One builder, used by the catalogue (`marvin_url`) and the
//! explorer's galaxy page, so the two never disagree.

/// The Marvin (DR17) galaxy page of a plate-ifu, e.g.
/// `https://dr17.sdss.org/marvin/galaxy/8485-1901/`.
pub fn marvin_url(plateifu: &str) -> String {
    format!("https://dr17.sdss.org/marvin/galaxy/{plateifu}/")
}

/// The SkyServer (DR17) object summary at (ra, dec) in degrees; `None` when either is not a
/// finite number (unknown position).
pub fn skyserver_url(ra: f64, dec: f64) -> Option<String> {
    (ra.is_finite() && dec.is_finite()).then(|| {
        format!("https://skyserver.sdss.org/dr17/en/tools/explore/summary.aspx?ra={ra}&dec={dec}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            marvin_url("8485-1901"),
            "https://dr17.sdss.org/marvin/galaxy/8485-1901/"
        );
        assert_eq!(
            skyserver_url(234.5, -1.25).as_deref(),
            Some(
                "https://skyserver.sdss.org/dr17/en/tools/explore/summary.aspx?ra=234.5&dec=-1.25"
            )
        );
        assert_eq!(skyserver_url(f64::NAN, 1.0), None);
        assert_eq!(skyserver_url(1.0, f64::INFINITY), None);
    }
}
