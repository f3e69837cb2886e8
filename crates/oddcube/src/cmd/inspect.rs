//! `oddcube inspect`: what one MaNGA DAP MAPS file holds.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use oddcube_data::inspect::{InspectReport, inspect};

use crate::cmd::choices::{InspectFormat, MaskArg};

/// Arguments of `oddcube inspect`.
#[derive(clap::Args)]
pub struct Args {
    /// A MAPS file (`.fits` or `.fits.gz`).
    file: PathBuf,
    /// Mask policy for the good-spaxel counts: `strict` or `lenient`.
    #[arg(long, value_enum, default_value_t = MaskArg::Strict)]
    mask_policy: MaskArg,
    /// Output format: text or json.
    #[arg(long, value_enum, default_value_t = InspectFormat::Text)]
    format: InspectFormat,
    /// Short for --format json.
    #[arg(long, conflicts_with = "format")]
    json: bool,
}

/// Runs `oddcube inspect`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let report = inspect(&args.file, args.mask_policy.into())?;
    if args.json || args.format == InspectFormat::Json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(ExitCode::SUCCESS)
}

fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref()
        .map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// The human-readable report.
fn render(r: &InspectReport) -> String {
    let m = &r.meta;
    let mut s = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(s, "{} ({} bytes)", r.path, r.file_bytes);
    let source = if m.plateifu_from_filename {
        " (from the file name)"
    } else {
        ""
    };
    let _ = writeln!(s, "plateifu   {}{source}", m.plateifu);
    let _ = writeln!(s, "mangaid    {}", opt(&m.mangaid));
    let _ = writeln!(s, "ra, dec    {}, {} deg", opt(&m.ra), opt(&m.dec));
    let _ = writeln!(
        s,
        "z          {}  (SCINPVEL / c)",
        m.z.map_or("-".to_string(), |z| format!("{z:.6}"))
    );
    let _ = writeln!(s, "IFU size   {}", opt(&m.ifu_size));
    let _ = writeln!(
        s,
        "DAP        {} {}  DAPQUAL {}",
        opt(&m.daptype),
        opt(&m.versdap),
        opt(&m.dapqual)
    );
    let _ = writeln!(s, "quality    {}", quality_line(m.dapqual, m.drp3qual));
    for notice in &m.notices {
        let _ = writeln!(s, "notice     {notice}");
    }
    let _ = writeln!(
        s,
        "grid       {} × {} spaxels, {} in the IFU footprint; good counts use the {:?} mask policy",
        r.ny, r.nx, r.footprint_spaxels, r.mask_policy
    );
    let presets = if r.line_presets.is_empty() {
        "none: name the lines with --lines A,B,…".to_string()
    } else {
        r.line_presets
            .iter()
            .map(|p| format!("{p} (--lines {p})"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(
        s,
        "layout     {} ({} emission-line channels); line presets that read it: {presets}",
        r.layout
            .as_deref()
            .map_or_else(|| "unknown".to_string(), |l| format!("{l} DAP")),
        r.lines.len()
    );
    let _ = writeln!(s, "\nHDUs ({}):", r.hdus.len());
    for (i, h) in r.hdus.iter().enumerate() {
        let _ = writeln!(
            s,
            "  {i:>3} {:<22} {:<10} BITPIX {:>3}  {:?}",
            h.name,
            format!("{:?}", h.kind),
            h.bitpix,
            h.shape
        );
    }
    let _ = writeln!(s, "\nEMLINE_GFLUX channels ({}):", r.lines.len());
    let _ = writeln!(
        s,
        "  {:>3} {:<12} {:>9} {:>6} {:>12} {:>12}",
        "#", "line", "λ (Å)", "good", "median flux", "median σ"
    );
    for l in &r.lines {
        let num = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
        let _ = writeln!(
            s,
            "  {:>3} {:<12} {:>9} {:>6} {:>12} {:>12}",
            l.index + 1,
            l.name,
            l.wavelength.map_or("-".to_string(), |w| format!("{w:.2}")),
            l.good_spaxels,
            num(l.median_flux),
            num(l.median_sigma)
        );
    }
    s
}

/// The DAP and DRP quality masks with their bits named, and whether the galaxy is CRITICAL
/// (what `ingest` keeps in `dapqual`/`drp3qual` and `--skip-critical` acts on).
fn quality_line(dapqual: Option<i64>, drp3qual: Option<i64>) -> String {
    use oddcube_data::quality::{dapqual_names, drp3qual_names, header_mask, is_critical};
    // The masks as ingest keeps them, with ingest's notice for a value that is not 32-bit.
    let mut notices = Vec::new();
    let dap_mask = header_mask(dapqual, "DAPQUAL", &mut notices);
    let drp_mask = header_mask(drp3qual, "DRP3QUAL", &mut notices);
    let describe = |key: &str, value: Option<i64>, bits: String| match value {
        None => format!("{key} absent"),
        Some(v) if bits.is_empty() => format!("{key} {v} (no bits set)"),
        Some(v) => format!("{key} {v} ({bits})"),
    };
    let mut line = format!(
        "{}, {}",
        describe("DAPQUAL", dapqual, dapqual_names(dap_mask)),
        describe("DRP3QUAL", drp3qual, drp3qual_names(drp_mask)),
    );
    if is_critical(dap_mask, drp_mask) {
        line.push_str("; CRITICAL: ingest keeps and marks it (--skip-critical leaves it out)");
    }
    for notice in notices {
        line.push_str("; ");
        line.push_str(&notice);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::quality_line;

    #[test]
    fn quality_names_the_bits_and_says_critical() {
        assert_eq!(
            quality_line(Some(0), None),
            "DAPQUAL 0 (no bits set), DRP3QUAL absent"
        );
        let critical = quality_line(Some(1 << 30), Some(0));
        assert!(
            critical.starts_with("DAPQUAL 1073741824 (CRITICAL)"),
            "{critical}"
        );
        assert!(
            critical.contains("CRITICAL: ingest keeps and marks it"),
            "{critical}"
        );
        // A value that is not a 32-bit mask is named, as ingest names it.
        assert!(
            quality_line(Some(1 << 40), None).contains("is not a 32-bit mask"),
            "{}",
            quality_line(Some(1 << 40), None)
        );
        // The DRP's CRITICAL bit counts too.
        assert!(quality_line(None, Some(1 << 30)).contains("CRITICAL: ingest"));
    }
}
