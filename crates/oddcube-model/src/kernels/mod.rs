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
