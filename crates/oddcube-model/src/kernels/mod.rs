//! Fused CPU kernels for the network's hot spots, as candle custom ops with backward passes.
//!
//! candle's CPU conv2d spends most of its time gathering patches through a generic strided
//! copy, and its input gradient is a direct (non-GEMM) transposed convolution; on our small
//! maps that made a training step ~5× slower than PyTorch-CPU. The kernels here do every conv
//! as one patch gather into a `[K, P]` column buffer (plain slice copies) and one GEMM from the
//! `gemm` crate candle itself uses, with bias, ReLU and nearest-×2 upsampling folded in; the
//! ConvLSTM cell does its gate GEMM and the whole sigmoid/tanh/c/h update in one pass, and its
//! backward reuses the activations saved in the forward output.
//!
//! Work is split over fixed-size chunks of images (independent of the thread count, so results
//! are bit-identical for any number of threads), and chunks run on rayon.

/// Defines a function whose body is compiled twice: for AVX2 + FMA, chosen at run time when
/// the CPU has them, and for the baseline target otherwise. The portable binary is built for
/// x86-64 v1 (SSE2), where the compiler vectorises the kernels' element-wise loops only four
/// lanes wide; the AVX2 copy doubles that. (`gemm` does its own run-time dispatch.)
macro_rules! simd_dispatch {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn portable($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) $(-> $ret)? {
                    portable($($arg),*)
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU has the features `avx2` is compiled for.
                    return unsafe { avx2($($arg),*) };
                }
            }
            portable($($arg),*)
        }
    };
}

/// The CPU instruction sets the fused kernels run with: what the binary was compiled for and
/// what the running CPU offers. `oddcube --version` prints it, so a benchmark or a bug report
/// says which code path ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuKernels {
    /// Target architecture (`x86_64`, `aarch64`, …).
    pub arch: &'static str,
    /// SIMD features every function is compiled for (the build target's baseline, raised by
    /// `-C target-cpu` or `-C target-feature`).
    pub compiled: Vec<&'static str>,
    /// SIMD features the running CPU reports, among those that matter here.
    pub detected: Vec<&'static str>,
    /// The instruction set the fused kernels' element-wise loops and the `gemm` crate's GEMMs
    /// use on this CPU.
    pub used: &'static str,
}

impl std::fmt::Display for CpuKernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |v: &[&str]| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(" ")
            }
        };
        write!(
            f,
            "{}, compiled for {}; this CPU has {}; fused kernels and GEMM use {}",
            self.arch,
            list(&self.compiled),
            list(&self.detected),
            self.used
        )
    }
}

/// What [`CpuKernels`] this binary and CPU give. On x86-64 the fused kernels are compiled twice
/// and pick AVX2+FMA at run time (see `simd_dispatch!`), as `gemm` does; AVX-512 is listed when
/// present but not used (`gemm` is built without its `x86-v4` feature). On AArch64 NEON is
/// the baseline.
pub fn cpu_kernels() -> CpuKernels {
    #[cfg(target_arch = "x86_64")]
    {
        let compiled: Vec<&'static str> = [
            ("sse2", cfg!(target_feature = "sse2")),
            ("sse4.1", cfg!(target_feature = "sse4.1")),
            ("avx", cfg!(target_feature = "avx")),
            ("avx2", cfg!(target_feature = "avx2")),
            ("fma", cfg!(target_feature = "fma")),
            ("avx512f", cfg!(target_feature = "avx512f")),
        ]
        .into_iter()
        .filter_map(|(name, on)| on.then_some(name))
        .collect();
        let detected: Vec<&'static str> = [
            ("avx2", std::is_x86_feature_detected!("avx2")),
            ("fma", std::is_x86_feature_detected!("fma")),
            ("avx512f", std::is_x86_feature_detected!("avx512f")),
        ]
        .into_iter()
        .filter_map(|(name, on)| on.then_some(name))
        .collect();
        let used = if detected.contains(&"avx2") && detected.contains(&"fma") {
            "avx2+fma"
        } else {
            "sse2 (no avx2+fma on this CPU)"
        };
        CpuKernels {
            arch: "x86_64",
            compiled,
            detected,
            used,
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        let neon = std::arch::is_aarch64_feature_detected!("neon");
        CpuKernels {
            arch: "aarch64",
            compiled: if cfg!(target_feature = "neon") {
                vec!["neon"]
            } else {
                Vec::new()
            },
            detected: if neon { vec!["neon"] } else { Vec::new() },
            used: if neon { "neon" } else { "scalar" },
        }
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        CpuKernels {
            arch: std::env::consts::ARCH,
            compiled: Vec::new(),
            detected: Vec::new(),
            used: "portable code",
        }
    }
}

pub mod conv;
mod direct;
pub mod lstm;
mod math;
mod patches;
mod subpixel;
#[cfg(test)]
pub(crate) mod test_support;

pub use conv::{ConvSpec, conv2d};
pub use lstm::{LstmWeights, lstm_step, lstm_zero_state, pack_lstm_weights};
pub use patches::ConvGeometry;
