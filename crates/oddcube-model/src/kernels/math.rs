//! Branch-free `exp`, sigmoid and tanh that the compiler vectorises: libm's scalar `expf`
//! would cost more than the gate GEMM itself in a ConvLSTM step on an 8×8 map.

const LOG2E: f32 = std::f32::consts::LOG2_E;
// ln 2 split in a part exact in f32 and a remainder (Cody–Waite reduction).
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Adding and subtracting 1.5·2²³ rounds an f32 of magnitude below 2²² to the nearest integer.
const ROUND: f32 = 12_582_912.0;

/// `e^x` within ~2 ulp for `x ∈ [−87, 88]`; inputs outside are clamped (the result saturates
/// near 0 or at ~1.65·10³⁸ instead of becoming 0 or ∞).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    // Cephes' minimax polynomial for e^r on [−ln2/2, ln2/2].
    let p = 1.987_569_1e-4f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let p = p * r * r + r + 1.0;
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// `1 / (1 + e^−x)`.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// `tanh x = 1 − 2 / (e^{2x} + 1)`: absolute error ~1e-7 (relative error grows near 0, where
/// the value itself is small).
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    1.0 - 2.0 / (exp(2.0 * x) + 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_sigmoid_tanh_match_libm() {
        let mut x = -90.0f32;
        while x < 90.0 {
            let want = x.clamp(-87.0, 88.0).exp();
            let got = exp(x);
            assert!(
                ((got - want) / want).abs() < 3e-7,
                "exp({x}) = {got}, libm {want}"
            );
            let s = 1.0 / (1.0 + (-x as f64).exp());
            assert!((sigmoid(x) as f64 - s).abs() < 2e-7, "sigmoid({x})");
            assert!(
                (tanh(x) as f64 - (x as f64).tanh()).abs() < 3e-7,
                "tanh({x})"
            );
            x += 0.0137;
        }
        assert_eq!(tanh(0.0), 0.0);
        assert_eq!(sigmoid(0.0), 0.5);
    }
}
