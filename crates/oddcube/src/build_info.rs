//! What this binary was built with, for `oddcube --version`: the version, the cargo features
//! (is the CUDA backend in?) and the CPU kernels' instruction sets (compiled and detected), so a
//! benchmark, a bug report or a batch log records which code ran.

/// The version of the oddcube crates (the Python package's version must equal it).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Whether the CUDA backend was compiled in (`cargo build --features cuda`).
pub const CUDA: bool = cfg!(feature = "cuda");

/// The `--version` text: the version on the first line (as clap prints it), then the features
/// and the CPU kernels, one per line.
pub fn version_text() -> String {
    let cuda = if CUDA {
        "cuda (GPU backend built in; --device cuda)"
    } else {
        "cpu only (no cuda: build with `--features cuda` for GPUs)"
    };
    format!(
        "{}\nfeatures: {cuda}\ncpu kernels: {}",
        env!("CARGO_PKG_VERSION"),
        oddcube_model::kernels::cpu_kernels()
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn version_text_names_features_and_kernels() {
        let text = super::version_text();
        assert!(text.starts_with(env!("CARGO_PKG_VERSION")), "{text}");
        assert!(text.contains("features: "), "{text}");
        assert!(text.contains("cpu kernels: "), "{text}");
        assert!(text.contains(std::env::consts::ARCH), "{text}");
    }
}
