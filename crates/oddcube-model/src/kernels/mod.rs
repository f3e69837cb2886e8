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

/// Defines a function whose body is compiled three times: for AVX-512 (x86-64 v4) and for AVX2 +
/// FMA, chosen at run time when the CPU has them, and for the baseline target otherwise. The
/// portable binary is built for x86-64 v1 (SSE2), where the compiler vectorises the kernels'
/// element-wise loops only four lanes wide; the AVX2 copy doubles that and the AVX-512 copy
/// doubles it again. The loops are element-wise (no float reduction is reordered), so every
/// copy computes the same bits. (`gemm` does its own run-time dispatch.)
macro_rules! simd_dispatch {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn portable($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512cd,avx512dq,avx512vl,avx2,fma")]
                fn avx512($($arg: $ty),*) $(-> $ret)? {
                    portable($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) $(-> $ret)? {
                    portable($($arg),*)
                }
                match $crate::kernels::simd_level() {
                    // SAFETY: the CPU has the features `avx512` is compiled for.
                    $crate::kernels::SimdLevel::Avx512 => return unsafe { avx512($($arg),*) },
                    // SAFETY: the CPU has the features `avx2` is compiled for.
                    $crate::kernels::SimdLevel::Avx2 => return unsafe { avx2($($arg),*) },
                    $crate::kernels::SimdLevel::Portable => {}
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

/// Whether the CPU has the AVX-512 subsets of x86-64 v4 (F, BW, CD, DQ, VL) that the fused
/// kernels' widest copy is compiled for and that `gemm` (built with its `x86-v4` feature) asks
/// for before it runs its AVX-512 micro-kernels.
#[cfg(target_arch = "x86_64")]
pub fn has_x86_v4() -> bool {
    std::is_x86_feature_detected!("avx512f")
        && std::is_x86_feature_detected!("avx512bw")
        && std::is_x86_feature_detected!("avx512cd")
        && std::is_x86_feature_detected!("avx512dq")
        && std::is_x86_feature_detected!("avx512vl")
        && std::is_x86_feature_detected!("avx2")
        && std::is_x86_feature_detected!("fma")
}

/// Which copy of a `simd_dispatch!` function runs, narrowest first.
#[cfg(target_arch = "x86_64")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum SimdLevel {
    /// The build target's baseline (SSE2 on x86-64).
    Portable,
    /// AVX2 + FMA.
    Avx2,
    /// AVX-512, x86-64 v4 ([`has_x86_v4`]).
    Avx512,
}

/// The widest copy the CPU can run; tests may lower it (`tests::with_simd_cap`).
#[cfg(target_arch = "x86_64")]
pub(crate) fn simd_level() -> SimdLevel {
    let detected = if has_x86_v4() {
        SimdLevel::Avx512
    } else if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        SimdLevel::Avx2
    } else {
        SimdLevel::Portable
    };
    #[cfg(test)]
    let detected = detected.min(tests::simd_cap());
    detected
}

/// What [`CpuKernels`] this binary and CPU give. On x86-64 the fused kernels are compiled three
/// times and pick AVX-512 (x86-64 v4) or AVX2+FMA at run time (see `simd_dispatch!`), as `gemm`
/// does. On AArch64 NEON is the baseline.
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
        let used = match simd_level() {
            SimdLevel::Avx512 => "avx512 (x86-64 v4)",
            SimdLevel::Avx2 => "avx2+fma",
            SimdLevel::Portable => "sse2 (no avx2+fma on this CPU)",
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

#[cfg(all(test, target_arch = "x86_64"))]
pub(crate) mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU8, Ordering};

    use super::SimdLevel;

    /// The widest [`SimdLevel`] the kernels may use, as its index (all by default).
    static CAP: AtomicU8 = AtomicU8::new(u8::MAX);
    /// Held while a test lowers [`CAP`], so two such tests do not interleave.
    static CAP_LOCK: Mutex<()> = Mutex::new(());

    /// The cap [`super::simd_level`] applies.
    pub fn simd_cap() -> SimdLevel {
        match CAP.load(Ordering::Relaxed) {
            0 => SimdLevel::Portable,
            1 => SimdLevel::Avx2,
            _ => SimdLevel::Avx512,
        }
    }

    /// Runs `f` once for every copy this CPU can run, narrowest first, with the kernels held
    /// to that copy (on every thread: the cap is global), and returns each level with its
    /// result. Other tests running meanwhile use the lowered copy too, which they cannot tell
    /// apart if the copies agree — what the tests using this check.
    pub fn with_simd_cap<T>(f: impl Fn() -> T) -> Vec<(SimdLevel, T)> {
        let _guard = CAP_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let widest = super::simd_level();
        let mut out = Vec::new();
        for (index, level) in [SimdLevel::Portable, SimdLevel::Avx2, SimdLevel::Avx512]
            .into_iter()
            .enumerate()
        {
            if level > widest {
                break;
            }
            CAP.store(index as u8, Ordering::Relaxed);
            out.push((level, f()));
        }
        CAP.store(u8::MAX, Ordering::Relaxed);
        out
    }

    /// Every copy of the element-wise kernels computes the same bits, so a model trains and
    /// scores alike whichever the CPU runs (`gemm`'s own micro-kernels, chosen apart from these,
    /// are the same in every run here). Covers the three conv paths (patches + GEMM, direct,
    /// sub-pixel) and two ConvLSTM steps, forward and backward: all eight dispatched functions.
    #[test]
    fn every_simd_copy_computes_the_same_bits() {
        use crate::kernels::test_support::{probed_backward, random};
        use crate::kernels::{ConvGeometry, ConvSpec, conv2d};
        use crate::kernels::{lstm_step, lstm_zero_state, pack_lstm_weights};
        use candle_core::{Device, Tensor, Var};

        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let run = || {
            let mut bits: Vec<Vec<f32>> = Vec::new();
            // (n, cin, cout, side, upsample): patches + GEMM, direct (one output), sub-pixel.
            for (seed, (n, cin, cout, side, upsample)) in
                [(3, 4, 6, 7, 1), (2, 5, 1, 9, 1), (2, 3, 5, 4, 2)]
                    .into_iter()
                    .enumerate()
            {
                let seed = 100 + 10 * seed as u64;
                let spec = ConvSpec {
                    geometry: ConvGeometry {
                        upsample,
                        ..ConvGeometry::same(3, 1)
                    },
                    relu: true,
                };
                let x = Var::from_tensor(&random(&[n, cin, side, side], seed)).unwrap();
                let w = Var::from_tensor(&random(&[cout, cin, 3, 3], seed + 1)).unwrap();
                let b = Var::from_tensor(&random(&[cout], seed + 2)).unwrap();
                let y = conv2d(&x, &w, &b, spec, true).unwrap();
                let g = probed_backward(&y, seed + 3);
                bits.push(flat(&y));
                for var in [&x, &w, &b] {
                    bits.push(flat(g.get(var).unwrap()));
                }
            }
            let (n, cin, hidden, side) = (2, 3, 4, 6);
            let w = Var::from_tensor(&random(&[4 * hidden, cin + hidden, 3, 3], 7)).unwrap();
            let b = Var::from_tensor(&random(&[4 * hidden], 8)).unwrap();
            let x1 = Var::from_tensor(&random(&[n, cin, side, side], 9)).unwrap();
            let x2 = Var::from_tensor(&random(&[n, cin, side, side], 10)).unwrap();
            let weights = pack_lstm_weights(&w, &b).unwrap();
            let state = lstm_zero_state(n, hidden, side, &Device::Cpu).unwrap();
            let state = lstm_step(&weights, &x1, &state).unwrap();
            let state = lstm_step(&weights, &x2, &state).unwrap();
            let g = probed_backward(&state, 11);
            bits.push(flat(&state));
            for var in [&w, &b, &x1, &x2] {
                bits.push(flat(g.get(var).unwrap()));
            }
            bits
        };
        let runs = with_simd_cap(run);
        let (_, portable) = &runs[0];
        for (level, bits) in &runs[1..] {
            for (i, (a, b)) in bits.iter().zip(portable).enumerate() {
                let same =
                    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(
                    same,
                    "{level:?} differs from the portable copy in output {i}"
                );
            }
        }
    }
}
