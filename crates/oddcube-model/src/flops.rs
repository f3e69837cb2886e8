//! Floating-point operation count of one forward pass, from the architecture alone, for the
//! benchmark's achieved GFLOP/s.
//!
//! Conventions: a multiply-add is 2 FLOPs; a bias add 1 per output element; every activation
//! (ReLU, sigmoid, tanh) 1 per element; the input normalisation 2 per input pixel and the
//! output scale and mean offset 2 per output pixel; the ConvLSTM update `c' = f·c + i·g`, `h' = o·tanh(c')`
//! 3 + 2 per hidden element (so 9 per hidden element and step with the gate activations);
//! nearest upsampling, reshapes and concatenation 0. The count is the deterministic pass (the
//! VAE decodes μ); the loss is not counted.

use crate::config::{ArchConfig, ModelKind};

/// FLOPs of a conv with bias producing `cout` maps of side `out_side`.
fn conv(cin: usize, cout: usize, k: usize, out_side: usize) -> u64 {
    let outputs = (cout * out_side * out_side) as u64;
    2 * (cin * k * k) as u64 * outputs + outputs
}

/// FLOPs of a linear layer with bias.
fn linear(inputs: usize, outputs: usize) -> u64 {
    2 * (inputs * outputs) as u64 + outputs as u64
}

/// FLOPs of one ConvLSTM step: the gate conv plus 9 per hidden element.
fn lstm_step(cin: usize, hidden: usize, k: usize, side: usize) -> u64 {
    conv(cin + hidden, 4 * hidden, k, side) + 9 * (hidden * side * side) as u64
}

/// FLOPs of one forward pass for one galaxy (multiply by the batch size for a batch).
pub fn forward_flops(arch: &ArchConfig) -> u64 {
    let steps = arch.n_lines as u64;
    let (c, k, s) = (arch.conv_channels, arch.kernel, arch.inner_size());
    let mut total = 0u64;

    // Encoder: per-step downsampling convs with ReLU.
    let mut cin = 1;
    let mut side = arch.size;
    for _ in 0..arch.downsample {
        side /= 2;
        total += steps * (conv(cin, c, 3, side) + (c * side * side) as u64);
        cin = c;
    }
    for &h in &arch.hidden {
        total += steps * lstm_step(cin, h, k, s);
        cin = h;
    }
    let head_outputs = arch.head_len() as u64;
    total += conv(cin, arch.head_channels, 3, s) + head_outputs;
    let heads = match arch.kind {
        ModelKind::Ae => 1,
        ModelKind::Vae => 2,
    };
    total += heads * linear(arch.head_len(), arch.latent);

    // Decoder: linear + ReLU, the ConvLSTM stack, per-step upsample + conv + ReLU, output conv.
    total += linear(arch.latent, arch.head_len()) + head_outputs;
    let mut cin = arch.head_channels;
    for &h in &arch.decoder_hidden {
        total += steps * lstm_step(cin, h, k, s);
        cin = h;
    }
    let mut side = s;
    for _ in 0..arch.downsample {
        side *= 2;
        total += steps * (conv(cin, c, 3, side) + (c * side * side) as u64);
        cin = c;
    }
    total += steps * conv(cin, 1, 3, arch.size);
    // Input normalisation (subtract, divide) per input pixel; output scale and mean-map offset
    // per output pixel.
    total += steps * 4 * (arch.size * arch.size) as u64;
    total
}

/// FLOPs the fused CPU kernels actually execute for one galaxy's forward pass. The only
/// difference from [`forward_flops`] (the architecture's count, used for the benchmark's
/// GFLOP/s so it compares with other implementations) is the decoder's nearest-×2 + 3×3
/// up-convs, which the kernels compute as four 2×2 convs over an `(s + 1)²` grid of the
/// low-resolution map (see `kernels::subpixel`).
pub fn executed_forward_flops(arch: &ArchConfig) -> u64 {
    let steps = arch.n_lines as u64;
    let c = arch.conv_channels;
    let mut total = forward_flops(arch);
    let mut cin = *arch.decoder_hidden.last().unwrap_or(&c);
    let mut side = arch.inner_size();
    for _ in 0..arch.downsample {
        let out = (c * 4 * side * side) as u64;
        if c > 2 {
            let nominal = conv(cin, c, 3, 2 * side);
            let executed = 2 * (4 * c * cin * 4 * (side + 1) * (side + 1)) as u64 + out;
            total = total - steps * nominal + steps * executed;
        }
        side *= 2;
        cin = c;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CellKernelKind;

    /// Hand count for S = 4, T = 2, one downsampling conv (1 → 2 channels), one hidden channel,
    /// 1×1 gate kernels, one head channel, D = 2:
    /// down 2·(2·1·9·2·4 + 8 + 8) = 320; encoder LSTM 2·(2·3·1·4·4 + 16 + 9·4) = 296;
    /// head 2·1·9·1·4 + 4 + 4 = 80; fc 2·4·2 + 2 = 18; decoder fc 2·2·4 + 4 + 4 = 24;
    /// decoder LSTM 2·(2·2·4·4 + 16 + 36) = 232; up 2·(2·1·9·2·16 + 32 + 32) = 1280;
    /// out 2·(2·2·9·16 + 16) = 1184; input normalisation 2·2·16 = 64; output scale and mean-map
    /// offset 2·2·16 = 64. Total 3562.
    #[test]
    fn matches_hand_count() {
        let arch = ArchConfig {
            kind: ModelKind::Ae,
            size: 4,
            n_lines: 2,
            downsample: 1,
            conv_channels: 2,
            hidden: vec![1],
            decoder_hidden: vec![1],
            kernel: 1,
            head_channels: 1,
            latent: 2,
            beta: 0.0,
            kl_units: crate::config::KlUnits::Absolute,
            free_bits: 0.0,
            kl_warmup: 0.0,
            cell: CellKernelKind::Reference,
        };
        assert_eq!(forward_flops(&arch), 3562);
        // The VAE adds one more latent head: 18 FLOPs.
        let vae = ArchConfig {
            kind: ModelKind::Vae,
            ..arch
        };
        assert_eq!(forward_flops(&vae), 3562 + 18);
    }

    /// The cpu preset's up-convs execute about half their nominal multiply-adds: 0.332 of the
    /// 0.396 GFLOP forward (up0: 16·(9²)/(36·8²) of 44.9 MFLOP; up1: 16·17²/(36·16²) of 90.0).
    #[test]
    fn executed_count_reflects_the_subpixel_up_convs() {
        let arch = ArchConfig::preset(crate::config::Preset::Cpu, ModelKind::Ae, 19);
        let (nominal, executed) = (forward_flops(&arch), executed_forward_flops(&arch));
        assert_eq!(nominal, 396_078_112);
        assert!(executed < nominal);
        let saved = (nominal - executed) as f64 / 1e6;
        assert!((saved - 64.4).abs() < 0.5, "{saved} MFLOP saved");
    }
}
