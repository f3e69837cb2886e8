//! How a catalogue column colours the latent map, in `oddcube plot map` and in the explorer:
//! one rule per column, so the figure and the page agree.
//!
//! Anomaly scores are long-tailed: a handful of galaxies sit decades above the rest, and a
//! linear colour scale paints everything else one colour (on the demo, all but four points).
//! The rule, per column:
//! - `score` — **linear**: it is a z-score against ordinary galaxies (0 typical, > 3 rare, can
//!   be negative), already standardised, so equal colour steps are equal steps in σ; a log is
//!   undefined for its negative values and a rank would hide how far out the top galaxies are.
//! - `rank` — **linear**, reversed (1 = most anomalous): ranks are uniform by construction.
//! - `pvalue`, `qvalue` — **log**, reversed: the interesting values are decades below 1.
//! - any other column (`global`, `local`, `recon`, `chi2`, `knn_dist`, `lof`, ...) — **log**
//!   when every value is positive and the upper tail is long, **rank** when the tail is long but
//!   some values are ≤ 0 (no log), else **linear**.
//!
//! Linear and log scales span the 1st–99th percentile (clamped beyond), so one extreme galaxy
//! does not squeeze the rest.

use super::Scale;

/// How values map onto the colour scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ColourStretch {
    /// Values as they are.
    Linear,
    /// `log10` of the values.
    Log,
    /// The values' rank among the finite ones (ties share their mean rank).
    Rank,
}

/// A column's colouring: the stretch and whether low values are the anomalous ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColourRule {
    /// The stretch.
    pub stretch: ColourStretch,
    /// True when low values are the anomalous ones (`rank`, p- and q-values): the scale is
    /// reversed so anomalous galaxies are always the bright end.
    pub reversed: bool,
}

/// The upper tail counts as long when the 99th percentile is this many times further above the
/// median than the 1st percentile is below it (a symmetric distribution gives ≈ 1; the demo's
/// `global` 16, `chi2` 10³; its `score` 2).
const LONG_TAIL: f64 = 3.0;

/// The rule for column `name` with `values` (see the module docs for why).
pub fn colour_rule(name: &str, values: &[f64]) -> ColourRule {
    match name {
        "score" => ColourRule {
            stretch: ColourStretch::Linear,
            reversed: false,
        },
        "rank" => ColourRule {
            stretch: ColourStretch::Linear,
            reversed: true,
        },
        "pvalue" | "qvalue" => ColourRule {
            stretch: if values.iter().all(|v| !v.is_finite() || *v > 0.0) {
                ColourStretch::Log
            } else {
                ColourStretch::Rank
            },
            reversed: true,
        },
        _ => {
            let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
            let q =
                |p: f64| Scale::percentile(finite.iter().copied(), p, p).map_or(f64::NAN, |s| s.lo);
            let (p1, p50, p99) = (q(1.0), q(50.0), q(99.0));
            let long_tail = p99 - p50 > LONG_TAIL * (p50 - p1);
            let stretch = if !long_tail {
                ColourStretch::Linear
            } else if finite.iter().all(|v| *v > 0.0) {
                ColourStretch::Log
            } else {
                ColourStretch::Rank
            };
            ColourRule {
                stretch,
                reversed: false,
            }
        }
    }
}

/// Every value's position on the colour scale (0 = ordinary end, 1 = anomalous end; `None` for
/// a non-finite value), and the values at the two ends.
#[derive(Debug, Clone, PartialEq)]
pub struct ColourPositions {
    /// The rule applied.
    pub rule: ColourRule,
    /// Position of each value in [0, 1].
    pub t: Vec<Option<f64>>,
    /// Value at position 0.
    pub low_end: f64,
    /// Value at position 1.
    pub high_end: f64,
}

impl ColourPositions {
    /// The value at colour position `t` ∈ [0, 1] (for colour-bar ticks); `values` are the ones
    /// the positions were computed from (a rank stretch reads its quantiles from them).
    pub fn value_at(&self, t: f64, values: &[f64]) -> f64 {
        let t = if self.rule.reversed { 1.0 - t } else { t };
        let (lo, hi) = if self.rule.reversed {
            (self.high_end, self.low_end)
        } else {
            (self.low_end, self.high_end)
        };
        match self.rule.stretch {
            ColourStretch::Linear => lo + t * (hi - lo),
            ColourStretch::Log => 10f64.powf(lo.log10() + t * (hi.log10() - lo.log10())),
            ColourStretch::Rank => {
                let q = t * 100.0;
                Scale::percentile(values.iter().copied(), q, q).map_or(f64::NAN, |s| s.lo)
            }
        }
    }
}

/// Colour positions of `values` by [`colour_rule`] for column `name`.
pub fn colour_positions(name: &str, values: &[f64]) -> ColourPositions {
    let rule = colour_rule(name, values);
    let finite = |v: &f64| v.is_finite() && (rule.stretch != ColourStretch::Log || *v > 0.0);
    let (mut t, mut lo, mut hi): (Vec<Option<f64>>, f64, f64) = match rule.stretch {
        ColourStretch::Rank => {
            let mut order: Vec<usize> = (0..values.len()).filter(|&i| finite(&values[i])).collect();
            order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
            let mut t = vec![None; values.len()];
            let n = order.len();
            let mut i = 0;
            while i < n {
                // Ties share their mean rank, so equal values get one colour.
                let mut j = i;
                while j + 1 < n && values[order[j + 1]] == values[order[i]] {
                    j += 1;
                }
                let mean = (i + j) as f64 / 2.0 / (n.max(2) - 1) as f64;
                for &k in &order[i..=j] {
                    t[k] = Some(mean);
                }
                i = j + 1;
            }
            let lo = order.first().map_or(f64::NAN, |&i| values[i]);
            let hi = order.last().map_or(f64::NAN, |&i| values[i]);
            (t, lo, hi)
        }
        ColourStretch::Linear | ColourStretch::Log => {
            let log = rule.stretch == ColourStretch::Log;
            let tone = |v: f64| if log { v.log10() } else { v };
            let scale = Scale::percentile(
                values.iter().filter(|v| finite(v)).map(|&v| tone(v)),
                1.0,
                99.0,
            )
            .unwrap_or(Scale { lo: 0.0, hi: 1.0 });
            let t = values
                .iter()
                .map(|v| finite(v).then(|| scale.unit(tone(*v)).clamp(0.0, 1.0)))
                .collect();
            let back = |x: f64| if log { 10f64.powf(x) } else { x };
            (t, back(scale.lo), back(scale.hi))
        }
    };
    if rule.reversed {
        for v in t.iter_mut().flatten() {
            *v = 1.0 - *v;
        }
        std::mem::swap(&mut lo, &mut hi);
    }
    ColourPositions {
        rule,
        t,
        low_end: lo,
        high_end: hi,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 100 ordinary values from 1 to 10³ and four at 10⁴–10⁵, like the demo's χ² (1st, 50th
    /// and 99th percentiles 0.9, 75 and 9·10⁴).
    fn long_tailed() -> Vec<f64> {
        let mut v: Vec<f64> = (0..100).map(|i| 10f64.powf(i as f64 * 0.03)).collect();
        v.extend([1e4, 3e4, 6e4, 1e5]);
        v
    }

    fn distinct_bins(t: &[Option<f64>]) -> usize {
        let mut bins: Vec<usize> = t
            .iter()
            .flatten()
            .map(|v| (v * 9.999).floor() as usize)
            .collect();
        bins.sort_unstable();
        bins.dedup();
        bins.len()
    }

    #[test]
    fn long_tailed_scores_use_log_and_spread_over_the_colours() {
        let v = long_tailed();
        let rule = colour_rule("chi2", &v);
        assert_eq!(rule.stretch, ColourStretch::Log);
        let log = colour_positions("chi2", &v);
        // Linear would put the 100 ordinary galaxies in one of ten colours; log spreads them.
        let linear_bins = {
            let s = Scale::percentile(v.iter().copied(), 1.0, 99.0).unwrap();
            let t: Vec<Option<f64>> = v[..100]
                .iter()
                .map(|x| Some(s.unit(*x).clamp(0.0, 1.0)))
                .collect();
            distinct_bins(&t)
        };
        assert_eq!(linear_bins, 1);
        assert!(distinct_bins(&log.t[..100]) >= 2, "{:?}", &log.t[..100]);
        assert_eq!(log.t[103], Some(1.0));
        assert!(log.low_end < log.high_end);
        assert!((log.value_at(0.0, &v) - log.low_end).abs() < 1e-9);
        assert!((log.value_at(1.0, &v) / log.high_end - 1.0).abs() < 1e-9);
    }

    #[test]
    fn score_is_linear_and_low_is_anomalous_for_rank_and_p() {
        let z: Vec<f64> = (0..50)
            .map(|i| -2.0 + i as f64 * 0.1)
            .chain([8.0])
            .collect();
        assert_eq!(colour_rule("score", &z).stretch, ColourStretch::Linear);
        let p: Vec<f64> = (1..=50).map(|i| 10f64.powi(-(i % 7))).collect();
        let pos = colour_positions("pvalue", &p);
        assert_eq!(pos.rule.stretch, ColourStretch::Log);
        assert!(pos.rule.reversed);
        let smallest = p.iter().position(|&x| x == 1e-6).unwrap();
        assert_eq!(
            pos.t[smallest],
            Some(1.0),
            "the smallest p is the bright end"
        );
        let rank: Vec<f64> = (1..=10).map(f64::from).collect();
        let pos = colour_positions("rank", &rank);
        assert_eq!(pos.t[0], Some(1.0));
        assert_eq!(pos.t[9], Some(0.0));
        assert!(
            pos.value_at(1.0, &rank) < pos.value_at(0.0, &rank),
            "bright end = rank 1"
        );
    }

    #[test]
    fn long_tails_with_non_positive_values_use_ranks_with_shared_ties() {
        let mut v: Vec<f64> = vec![0.0, 0.0, -1.0];
        v.extend((0..40).map(|i| i as f64 * 0.01));
        v.extend([50.0, 100.0, f64::NAN]);
        let pos = colour_positions("weird", &v);
        assert_eq!(pos.rule.stretch, ColourStretch::Rank);
        assert_eq!(pos.t[0], pos.t[1], "ties share a colour");
        assert_eq!(pos.t[2], Some(0.0));
        assert_eq!(pos.t[v.len() - 2], Some(1.0));
        assert_eq!(pos.t[v.len() - 1], None);
        let flat = colour_positions("lof", &[1.0, 1.1, 0.9, 1.05]);
        assert_eq!(flat.rule.stretch, ColourStretch::Linear);
    }
}
