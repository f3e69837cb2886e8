//! Emission-line catalogue of the MaNGA DAP and the line sets the autoencoder reads.
//!
//! A line set is an ordered list of DAP channel names in wavelength order: the order is the
//! "time" axis the ConvLSTM walks along, so it is part of a dataset's identity.

use std::fmt;

/// The 35 DR17 Gaussian-fit channels, in file order, with their vacuum rest wavelengths (Å).
pub const DR17_CHANNELS: [(&str, f64); 35] = [
    ("OII-3727", 3727.092),
    ("OII-3729", 3729.875),
    ("H12-3751", 3751.217),
    ("H11-3771", 3771.701),
    ("Hthe-3798", 3798.976),
    ("Heta-3836", 3836.472),
    ("NeIII-3869", 3869.86),
    ("HeI-3889", 3889.749),
    ("Hzet-3890", 3890.151),
    ("NeIII-3968", 3968.59),
    ("Heps-3971", 3971.195),
    ("Hdel-4102", 4102.892),
    ("Hgam-4341", 4341.684),
    ("HeII-4687", 4687.015),
    ("Hb-4862", 4862.683),
    ("OIII-4960", 4960.295),
    ("OIII-5008", 5008.24),
    ("NI-5199", 5199.349),
    ("NI-5201", 5201.705),
    ("HeI-5877", 5877.252),
    ("OI-6302", 6302.046),
    ("OI-6365", 6365.536),
    ("NII-6549", 6549.86),
    ("Ha-6564", 6564.608),
    ("NII-6585", 6585.27),
    ("SII-6718", 6718.295),
    ("SII-6732", 6732.674),
    ("HeI-7067", 7067.491),
    ("ArIII-7137", 7137.76),
    ("ArIII-7753", 7753.24),
    ("Peta-9017", 9017.384),
    ("SIII-9071", 9071.1),
    ("Pzet-9231", 9231.546),
    ("SIII-9533", 9533.2),
    ("Peps-9548", 9548.588),
];

/// The 22 DR15 Gaussian-fit channels, in file order.
pub const DR15_CHANNELS: [&str; 22] = [
    "OII-3727",
    "OII-3729",
    "Hthe-3798",
    "Heta-3836",
    "NeIII-3869",
    "Hzet-3890",
    "NeIII-3968",
    "Heps-3971",
    "Hdel-4102",
    "Hgam-4341",
    "HeII-4687",
    "Hb-4862",
    "OIII-4960",
    "OIII-5008",
    "HeI-5877",
    "OI-6302",
    "OI-6365",
    "NII-6549",
    "Ha-6564",
    "NII-6585",
    "SII-6718",
    "SII-6732",
];

/// Preset `dr17`: the 25 DR17 channels in 3800–8000 Å minus the six that are fixed-ratio
/// partners or blends of another channel (NeIII-3968, OIII-4960, OI-6365, NII-6549, HeI-3889,
/// NI-5201), so every map carries independent information.
pub const PRESET_DR17: [&str; 19] = [
    "Heta-3836",
    "NeIII-3869",
    "Hzet-3890",
    "Heps-3971",
    "Hdel-4102",
    "Hgam-4341",
    "HeII-4687",
    "Hb-4862",
    "OIII-5008",
    "NI-5199",
    "HeI-5877",
    "OI-6302",
    "Ha-6564",
    "NII-6585",
    "SII-6718",
    "SII-6732",
    "HeI-7067",
    "ArIII-7137",
    "ArIII-7753",
];

/// Preset `dr15`: the DR15 22-line list cut to 3800–8000 Å; present in DR15 and DR17 files.
pub const PRESET_DR15: [&str; 19] = [
    "Heta-3836",
    "NeIII-3869",
    "Hzet-3890",
    "NeIII-3968",
    "Heps-3971",
    "Hdel-4102",
    "Hgam-4341",
    "HeII-4687",
    "Hb-4862",
    "OIII-4960",
    "OIII-5008",
    "HeI-5877",
    "OI-6302",
    "OI-6365",
    "NII-6549",
    "Ha-6564",
    "NII-6585",
    "SII-6718",
    "SII-6732",
];

/// Rest wavelength (Å) of a DAP channel name, if it is one of the DR17 channels.
pub fn wavelength(name: &str) -> Option<f64> {
    DR17_CHANNELS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, w)| *w)
}

/// The line presets `--lines` takes, by name.
pub const PRESETS: [&str; 2] = ["dr17", "dr15"];

/// The DAP layout a file's channel list (`EMLINE_GFLUX` channel names, in file order) is:
/// `DR17` (the 35 channels of DAP 3.x, [`DR17_CHANNELS`]) or `DR15` (the 22 of DAP 2.x,
/// [`DR15_CHANNELS`]); `None` for any other list.
pub fn layout_of(channels: &[String]) -> Option<&'static str> {
    if channels
        .iter()
        .map(String::as_str)
        .eq(DR17_CHANNELS.iter().map(|(n, _)| *n))
    {
        Some("DR17")
    } else if channels.iter().map(String::as_str).eq(DR15_CHANNELS) {
        Some("DR15")
    } else {
        None
    }
}

/// The presets of [`PRESETS`] whose every line is among `channels`: the `--lines` values that
/// can read a file with these channels.
pub fn presets_in(channels: &[String]) -> Vec<&'static str> {
    PRESETS
        .into_iter()
        .filter(|name| LineSet::parse(name).is_ok_and(|set| set.indices_in(channels).is_ok()))
        .collect()
}

/// What a file with `channels` is and which presets read it, for an error about a line it
/// lacks: `"; it is a DR15-layout file (22 channels): the dr15 line preset reads it (--lines
/// dr15)"`. Empty when the file's layout is unknown and no preset reads it.
pub fn missing_line_hint(channels: &[String]) -> String {
    let layout = layout_of(channels).map_or_else(
        || format!("; it has {} channels", channels.len()),
        |l| format!("; it is a {l}-layout file ({} channels)", channels.len()),
    );
    match presets_in(channels)[..] {
        [] => format!("{layout}, which no line preset reads: name its lines with --lines A,B,…"),
        [one] => format!("{layout}: the {one} line preset reads it (--lines {one})"),
        ref several => format!(
            "{layout}: the line presets {} read it (--lines {})",
            several.join(", "),
            several[0]
        ),
    }
}

/// An ordered set of emission lines (DAP channel names) to read from each galaxy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LineSet {
    /// `dr17`, `dr15` or `custom`.
    pub preset: String,
    /// Channel names in the order the model reads them.
    pub lines: Vec<String>,
}

/// Why a line-set specification could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineSetError {
    /// The specification named no lines.
    #[error("empty line list")]
    Empty,
    /// A custom list named a line twice.
    #[error("line {0} is listed twice")]
    Duplicate(String),
    /// A custom list named something that is not a DAP emission-line channel.
    #[error("unknown line {name:?}; known DAP channels: {known}")]
    Unknown {
        /// The name as given.
        name: String,
        /// Comma-separated known channel names.
        known: String,
    },
}

impl LineSet {
    /// The default preset (`dr17`).
    pub fn dr17() -> Self {
        Self::preset("dr17", &PRESET_DR17)
    }

    /// The DR15-compatible preset (`dr15`).
    pub fn dr15() -> Self {
        Self::preset("dr15", &PRESET_DR15)
    }

    fn preset(name: &str, lines: &[&str]) -> Self {
        Self {
            preset: name.to_string(),
            lines: lines.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Parses `dr17`, `dr15` or a comma-separated list of channel names (kept in the given
    /// order, so the caller decides the sequence; names are matched case-sensitively after
    /// trimming, as the DAP writes them).
    pub fn parse(spec: &str) -> Result<Self, LineSetError> {
        match spec.trim() {
            "dr17" => return Ok(Self::dr17()),
            "dr15" => return Ok(Self::dr15()),
            _ => {}
        }
        let mut lines: Vec<String> = Vec::new();
        for name in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if wavelength(name).is_none() {
                let known = DR17_CHANNELS
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(",");
                return Err(LineSetError::Unknown {
                    name: name.to_string(),
                    known,
                });
            }
            if lines.iter().any(|l| l == name) {
                return Err(LineSetError::Duplicate(name.to_string()));
            }
            lines.push(name.to_string());
        }
        if lines.is_empty() {
            return Err(LineSetError::Empty);
        }
        Ok(Self {
            preset: "custom".to_string(),
            lines,
        })
    }

    /// Number of lines (the sequence length T of the model).
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// True when the set has no lines (never for a parsed set).
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Position of each line of the set in a file's channel list, or the first missing line.
    pub fn indices_in(&self, channels: &[String]) -> Result<Vec<usize>, String> {
        self.lines
            .iter()
            .map(|l| {
                channels
                    .iter()
                    .position(|c| c == l)
                    .ok_or_else(|| l.clone())
            })
            .collect()
    }

    /// Position of a named line within this set.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.lines.iter().position(|l| l == name)
    }
}

impl fmt::Display for LineSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({} lines: {})",
            self.preset,
            self.lines.len(),
            self.lines.join(",")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_have_19_lines_in_wavelength_order() {
        for set in [LineSet::dr17(), LineSet::dr15()] {
            assert_eq!(set.len(), 19, "{set}");
            let waves: Vec<f64> = set.lines.iter().map(|l| wavelength(l).unwrap()).collect();
            assert!(
                waves.windows(2).all(|w| w[0] < w[1]),
                "{set} not in wavelength order"
            );
            assert!(
                waves.iter().all(|&w| w > 3800.0 && w < 8000.0),
                "{set} out of range"
            );
        }
    }

    #[test]
    fn dr17_preset_is_range_minus_dependent_channels() {
        let dependent = [
            "NeIII-3968",
            "OIII-4960",
            "OI-6365",
            "NII-6549",
            "HeI-3889",
            "NI-5201",
        ];
        let expected: Vec<&str> = DR17_CHANNELS
            .iter()
            .filter(|(_, w)| *w > 3800.0 && *w < 8000.0)
            .map(|(n, _)| *n)
            .filter(|n| !dependent.contains(n))
            .collect();
        assert_eq!(LineSet::dr17().lines, expected);
    }

    #[test]
    fn dr15_preset_is_dr15_channels_in_range() {
        let expected: Vec<&str> = DR15_CHANNELS
            .iter()
            .copied()
            .filter(|n| {
                let w = wavelength(n).unwrap();
                w > 3800.0 && w < 8000.0
            })
            .collect();
        assert_eq!(LineSet::dr15().lines, expected);
    }

    #[test]
    fn custom_lists_parse_and_reject_bad_names() {
        let set = LineSet::parse(" Ha-6564, Hb-4862 ").unwrap();
        assert_eq!(set.lines, ["Ha-6564", "Hb-4862"]);
        assert_eq!(set.preset, "custom");
        assert!(matches!(
            LineSet::parse("Ha-6564,Halpha"),
            Err(LineSetError::Unknown { .. })
        ));
        assert!(matches!(
            LineSet::parse("Ha-6564,Ha-6564"),
            Err(LineSetError::Duplicate(_))
        ));
        assert_eq!(LineSet::parse(" , "), Err(LineSetError::Empty));
    }

    #[test]
    fn layouts_and_the_presets_that_read_them() {
        let dr15: Vec<String> = DR15_CHANNELS.iter().map(|s| s.to_string()).collect();
        let dr17: Vec<String> = DR17_CHANNELS.iter().map(|(s, _)| s.to_string()).collect();
        assert_eq!(layout_of(&dr15), Some("DR15"));
        assert_eq!(layout_of(&dr17), Some("DR17"));
        assert_eq!(layout_of(&dr15[..3]), None);
        assert_eq!(presets_in(&dr15), ["dr15"]);
        assert_eq!(presets_in(&dr17), ["dr17", "dr15"]);
        assert!(presets_in(&dr15[..3]).is_empty());
        let hint = missing_line_hint(&dr15);
        assert!(
            hint.contains("DR15-layout") && hint.contains("--lines dr15"),
            "{hint}"
        );
        assert!(missing_line_hint(&dr15[..3]).contains("no line preset"));
    }

    #[test]
    fn missing_line_is_reported() {
        let channels: Vec<String> = DR15_CHANNELS.iter().map(|s| s.to_string()).collect();
        assert!(LineSet::dr15().indices_in(&channels).is_ok());
        assert_eq!(
            LineSet::dr17().indices_in(&channels),
            Err("NI-5199".to_string())
        );
    }
}
