//! The fixed choices of the command line as `clap::ValueEnum` enums — so `--help` lists them and
//! clap rejects anything else before a command starts — each converted into the library type it
//! stands for. The libraries keep their own enums (and no clap dependency); the spellings here
//! are the ones the commands have always accepted.

use oddcube_data::MaskPolicy;
use oddcube_data::preprocess::Stretch;
use oddcube_model::config::CellKernelKind;
use oddcube_model::{DeviceSpec, LossMode, ModelKind, Preset};
use oddcube_score::knn::Metric;
use oddcube_score::similar::OutputFormat;

/// The command-line spelling of a choice (for messages that echo it).
pub fn name<T: clap::ValueEnum>(choice: &T) -> String {
    choice
        .to_possible_value()
        .map_or_else(String::new, |v| v.get_name().to_string())
}

/// `--preset`: the architecture preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PresetArg {
    /// S = 32, small network: trains in minutes on a few CPU cores.
    Cpu,
    /// S = 64, the paper's scale, meant for a GPU.
    Paper,
}

impl From<PresetArg> for Preset {
    fn from(p: PresetArg) -> Preset {
        match p {
            PresetArg::Cpu => Preset::Cpu,
            PresetArg::Paper => Preset::Paper,
        }
    }
}

/// `--arch`: autoencoder or variational autoencoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KindArg {
    /// Deterministic latent.
    Ae,
    /// Gaussian latent with a β-weighted KL term.
    Vae,
}

impl From<KindArg> for ModelKind {
    fn from(k: KindArg) -> ModelKind {
        match k {
            KindArg::Ae => ModelKind::Ae,
            KindArg::Vae => ModelKind::Vae,
        }
    }
}

/// `--kernel`: the ConvLSTM/conv implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KernelArg {
    /// oddcube's fused CPU kernels (the reference composition on other devices).
    Fused,
    /// Plain candle ops.
    Reference,
}

impl From<KernelArg> for CellKernelKind {
    fn from(k: KernelArg) -> CellKernelKind {
        match k {
            KernelArg::Fused => CellKernelKind::Fused,
            KernelArg::Reference => CellKernelKind::Reference,
        }
    }
}

/// `--loss`: the weights of the reconstruction loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LossArg {
    /// Every unmasked pixel weighs the same.
    Mse,
    /// Inverse-variance weights.
    Chi2,
}

impl From<LossArg> for LossMode {
    fn from(l: LossArg) -> LossMode {
        match l {
            LossArg::Mse => LossMode::Mse,
            LossArg::Chi2 => LossMode::Chi2,
        }
    }
}

/// `--mask-policy`: which DAP quality bits reject a pixel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MaskArg {
    /// Reject DONOTUSE and UNRELIABLE.
    Strict,
    /// Reject DONOTUSE only.
    Lenient,
}

impl From<MaskArg> for MaskPolicy {
    fn from(m: MaskArg) -> MaskPolicy {
        match m {
            MaskArg::Strict => MaskPolicy::Strict,
            MaskArg::Lenient => MaskPolicy::Lenient,
        }
    }
}

/// `--stretch`: the flux stretch after normalisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StretchArg {
    /// Linear flux.
    None,
    /// `a · asinh(x / a)` with the default softening.
    Asinh,
}

impl From<StretchArg> for Stretch {
    fn from(s: StretchArg) -> Stretch {
        // The library's parser owns the default softening.
        let name = match s {
            StretchArg::None => "none",
            StretchArg::Asinh => "asinh",
        };
        Stretch::parse(name).unwrap_or_default()
    }
}

/// `--metric`: distance in latent space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LatentMetric {
    /// Straight-line distance.
    #[value(alias = "l2")]
    Euclidean,
    /// One minus the cosine similarity.
    Cosine,
}

impl From<LatentMetric> for Metric {
    fn from(m: LatentMetric) -> Metric {
        match m {
            LatentMetric::Euclidean => Metric::Euclidean,
            LatentMetric::Cosine => Metric::Cosine,
        }
    }
}

/// `--format` of `oddcube similar`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SimilarFormat {
    /// Aligned text columns.
    Table,
    /// CSV with a header row.
    Csv,
    /// A JSON array of objects.
    Json,
}

/// `inspect --format`: how the report is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InspectFormat {
    /// Readable text.
    Text,
    /// The report as a JSON object.
    Json,
}

impl From<SimilarFormat> for OutputFormat {
    fn from(f: SimilarFormat) -> OutputFormat {
        match f {
            SimilarFormat::Table => OutputFormat::Table,
            SimilarFormat::Csv => OutputFormat::Csv,
            SimilarFormat::Json => OutputFormat::Json,
        }
    }
}

/// `--device`: `cpu`, `cuda` or `cuda:N` — not a fixed list (the GPU number varies), so a parsed
/// type rather than a `ValueEnum`; clap still rejects a bad name before the command starts.
pub type DeviceName = DeviceSpec;

#[cfg(test)]
mod tests {
    use clap::ValueEnum;

    use super::*;

    /// The spellings scripts and docs use keep working.
    #[test]
    fn command_line_spellings() {
        let names = |variants: &[&dyn Fn() -> Vec<String>]| -> Vec<Vec<String>> {
            variants.iter().map(|f| f()).collect()
        };
        fn of<T: ValueEnum>() -> Vec<String> {
            T::value_variants()
                .iter()
                .filter_map(|v| v.to_possible_value())
                .map(|p| p.get_name().to_string())
                .collect()
        }
        assert_eq!(
            names(&[
                &of::<PresetArg>,
                &of::<KindArg>,
                &of::<KernelArg>,
                &of::<LossArg>,
                &of::<MaskArg>,
                &of::<StretchArg>,
                &of::<LatentMetric>,
                &of::<SimilarFormat>,
            ]),
            [
                vec!["cpu", "paper"],
                vec!["ae", "vae"],
                vec!["fused", "reference"],
                vec!["mse", "chi2"],
                vec!["strict", "lenient"],
                vec!["none", "asinh"],
                vec!["euclidean", "cosine"],
                vec!["table", "csv", "json"],
            ]
        );
        assert_eq!(
            LatentMetric::from_str("l2", true).unwrap(),
            LatentMetric::Euclidean
        );
        assert_eq!(
            Stretch::from(StretchArg::Asinh),
            Stretch::parse("asinh").unwrap()
        );
    }

    /// The metric and projection names were parsed case-insensitively before they became enums.
    #[test]
    fn metric_and_method_ignore_letter_case() {
        use clap::Parser;

        #[derive(Parser)]
        #[command(no_binary_name = true)]
        struct Similar {
            #[command(flatten)]
            args: crate::cmd::similar::Args,
        }
        #[derive(Parser)]
        #[command(no_binary_name = true)]
        struct Project {
            #[command(flatten)]
            args: crate::cmd::project::Args,
        }
        let metric = |name: &str| {
            Similar::try_parse_from(["results", "8485-1901", "--metric", name])
                .map(|s| s.args.metric)
        };
        assert_eq!(metric("L2").unwrap(), LatentMetric::Euclidean);
        assert_eq!(metric("Cosine").unwrap(), LatentMetric::Cosine);
        assert!(metric("manhattan").is_err());
        let method = Project::try_parse_from(["results", "--method", "PCA"]).unwrap();
        assert_eq!(method.args.method, crate::cmd::project::MethodArg::Pca);
    }
}
