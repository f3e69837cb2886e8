//! Active learning: a relevance model fitted to the user's labels and the ranking it gives.
//!
//! An anomaly score says how *unusual* a galaxy is; the user's labels say what *they* find
//! interesting. Following Astronomaly (Lochner & Bassett 2021), a regression on the feature
//! space learns the user's notion of interesting from a handful of labels, and the ranking the
//! user sees becomes the anomaly score weighted by that predicted relevance. The full rationale
//! and the measured benefit are in `docs/active-learning.md`; in short:
//!
//! - **Features** ([`Features`]): each galaxy's latent vector, the signed logarithm of its anomaly
//!   scores ([`crate::evaluate::SCORE_COLUMNS`]) and its per-line χ² shares (`line:*`), every
//!   column standardised by median and MAD, and each of the three blocks scaled by
//!   `1/√(its columns)` so that each block weighs the same in a distance whatever its width.
//! - **Relevance** ([`RelevanceModel`]): a kernel-weighted Beta posterior. Each labelled galaxy
//!   i carries a target yᵢ (interesting = 1; normal and artefact = 0; a relevance grade g of
//!   0–5 gives g/5) and weighs on galaxy j with
//!   an RBF kernel wᵢⱼ = exp(−dᵢⱼ² / 2ℓᵢ²). With a prior relevance π of weight c₀, the
//!   relevance is the posterior mean r = (c₀π + Σwᵢⱼyᵢ) / (c₀ + Σwᵢⱼ) and its uncertainty the
//!   posterior standard deviation √(r(1−r) / (c₀ + Σwᵢⱼ + 1)): far from every label r = π and
//!   the uncertainty is largest. The prior π is empirical Bayes: the user's hit rate so far,
//!   (c₀r₀ + #interesting) / (c₀ + #labels) with r₀ = ½, so a galaxy unlike anything labelled
//!   is expected to be as relevant as the galaxies reviewed so far were, not a fixed ½. Every
//!   label's length scale ℓ is the typical distance between neighbours: the median, over up to
//!   200 galaxies spread over the catalogue, of the distance to their k-th nearest galaxy
//!   ([`RelevanceOptions::neighbours`]), so a label speaks for the galaxies about as close to it
//!   as neighbours usually are. (The alternative, each label's own k-th neighbour distance, lets
//!   a label on an isolated anomaly reach far across the sparse part of the space, where other
//!   kinds of anomaly lie; see `docs/active-learning.md`.) No parameter is fitted to any truth.
//! - **Blend**: `adjusted = a² · r / π`, where a ∈ (0, 1] is the galaxy's anomaly percentile
//!   (1 = most anomalous, from the ranking score; 0 for a NaN score) and r / π the relevance's
//!   lift over the prior. Without labels r = π everywhere, so `adjusted` is the squared
//!   percentile and the order exactly the anomaly ranking. Squaring lets the labels reorder the
//!   top of the ranking freely while a demoted anomaly still stays above most ordinary
//!   galaxies. Ties keep the anomaly order.
//!   Galaxies labelled normal or artefact, or graded below ½ (0–2), sink below every unlabelled
//!   galaxy (as the earlier demotion rule did): their `adjusted` is half the smaller of their own
//!   and the lowest unlabelled value.
//!
//! Determinism: the result depends only on the set of labels, never on the order they were
//! given in (sums run over the labelled galaxies in row order).
//!
//! Cost: building [`Features`] and the typical width is done once (O(n·d), plus 200 k-th
//! neighbour searches); a label change computes one column of squared distances (O(n·d), and
//! its k-th smallest value with a variable width) and recomputes relevance and order
//! (O(n·m) + O(n log n)). Memory: 4n bytes per labelled galaxy.

use std::collections::BTreeMap;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::evaluate::SCORE_COLUMNS;
use crate::feedback::UserLabel;
use crate::results::{Catalog, LINE_COLUMN_PREFIX};

/// Settings of the relevance model.
#[derive(Debug, Clone, PartialEq)]
pub struct RelevanceOptions {
    /// Relevance of a galaxy far from every label before any label (r₀; with `empirical_prior`
    /// the mean of the hyperprior on the user's hit rate).
    pub prior: f64,
    /// Weight of the prior in labels (c₀): one pseudo-label.
    pub prior_weight: f64,
    /// The k of the kernel width: the k-th nearest galaxy's distance (module doc).
    pub neighbours: usize,
    /// One kernel width for every label (the default): the median over a sample of galaxies of
    /// the distance to their k-th nearest galaxy ("as close as typical neighbours are"). When
    /// false, each label's own k-th neighbour distance (a variable-bandwidth kernel).
    pub typical_width: bool,
    /// Use the user's hit rate so far as the prior relevance (empirical Bayes) instead of r₀.
    pub empirical_prior: bool,
    /// Exponent γ of the anomaly percentile in the blend `a^γ · r`.
    pub anomaly_power: f64,
    /// Fixed kernel length scale in feature units for every label, instead of the
    /// neighbour distance (for experiments).
    pub bandwidth: Option<f64>,
}

impl Default for RelevanceOptions {
    fn default() -> Self {
        Self {
            prior: 0.5,
            prior_weight: 1.0,
            neighbours: 10,
            anomaly_power: 2.0,
            empirical_prior: true,
            typical_width: true,
            bandwidth: None,
        }
    }
}

/// The relevance target of a label ([`UserLabel::relevance`]): interesting 1, normal and
/// artefact 0, a grade g of Astronomaly's 0–5 scale g/5.
pub fn target(label: UserLabel) -> f64 {
    label.relevance()
}

/// The standardised feature vectors the relevance model measures distances in (module doc).
#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    n: usize,
    dim: usize,
    x: Vec<f32>,
    /// Names of the feature blocks' columns, for the record (`latent`, score and line names).
    pub columns: Vec<String>,
}

/// Median and 1.4826·MAD of the finite values (std, then 1, when the MAD is 0).
fn centre_scale(values: &[f64]) -> (f64, f64) {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return (0.0, 1.0);
    }
    v.sort_by(f64::total_cmp);
    let median = v[v.len() / 2];
    let mut dev: Vec<f64> = v.iter().map(|x| (x - median).abs()).collect();
    dev.sort_by(f64::total_cmp);
    let mad = 1.4826 * dev[dev.len() / 2];
    if mad > 0.0 {
        return (median, mad);
    }
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let sd = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
    (median, if sd > 0.0 { sd } else { 1.0 })
}

impl Features {
    /// Features of every catalogue row from its latents (`n × latent_dim`, row-major), its score
    /// columns and its `line:*` shares. Missing blocks are left out; non-finite values sit at the
    /// block's centre.
    pub fn build(catalog: &Catalog, latents: &[f32], latent_dim: usize) -> Result<Features> {
        let n = catalog.len();
        crate::error::check_len("latents", latents.len(), n * latent_dim)?;
        let mut blocks: Vec<(Vec<String>, Vec<Vec<f64>>)> = Vec::new();
        if latent_dim > 0 {
            let cols = (0..latent_dim)
                .map(|d| {
                    (0..n)
                        .map(|i| f64::from(latents[i * latent_dim + d]))
                        .collect()
                })
                .collect();
            let names = (0..latent_dim).map(|d| format!("latent{d}")).collect();
            blocks.push((names, cols));
        }
        // Scores span decades: compare them on a signed log scale.
        let slog = |v: f64| v.signum() * v.abs().ln_1p();
        let scores: Vec<(String, Vec<f64>)> = SCORE_COLUMNS
            .iter()
            .filter_map(|c| {
                catalog
                    .f64(c)
                    .map(|v| (c.to_string(), v.iter().map(|&x| slog(x)).collect()))
            })
            .collect();
        if !scores.is_empty() {
            blocks.push(scores.into_iter().unzip());
        }
        let lines: Vec<(String, Vec<f64>)> = catalog
            .line_columns()
            .into_iter()
            .map(|(name, v)| (format!("{LINE_COLUMN_PREFIX}{name}"), v.to_vec()))
            .collect();
        if !lines.is_empty() {
            blocks.push(lines.into_iter().unzip());
        }
        let dim: usize = blocks.iter().map(|(names, _)| names.len()).sum();
        if dim == 0 {
            return Err(Error::Empty(
                "relevance features (no latents, score or line columns)".to_string(),
            ));
        }
        let mut x = vec![0f32; n * dim];
        let mut columns = Vec::with_capacity(dim);
        let mut at = 0;
        for (names, cols) in blocks {
            let weight = 1.0 / (names.len() as f64).sqrt();
            for col in &cols {
                let (centre, scale) = centre_scale(col);
                for (i, &v) in col.iter().enumerate() {
                    let z = if v.is_finite() {
                        (v - centre) / scale * weight
                    } else {
                        0.0
                    };
                    x[i * dim + at] = z as f32;
                }
                at += 1;
            }
            columns.extend(names);
        }
        Ok(Features { n, dim, x, columns })
    }

    /// Number of galaxies.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Number of feature columns.
    pub fn dim(&self) -> usize {
        self.dim
    }

    fn row(&self, i: usize) -> &[f32] {
        &self.x[i * self.dim..(i + 1) * self.dim]
    }

    /// Squared distances of every galaxy to galaxy `i` (for diagnostics).
    pub fn distances(&self, i: usize) -> Vec<f32> {
        self.distances_to(i)
    }

    /// Squared distances of every galaxy to galaxy `i`.
    fn distances_to(&self, i: usize) -> Vec<f32> {
        let target = self.row(i);
        self.x
            .par_chunks(self.dim)
            .map(|row| {
                row.iter()
                    .zip(target)
                    .map(|(a, b)| (a - b) * (a - b))
                    .sum::<f32>()
            })
            .collect()
    }
}

/// Anomaly percentile of each row from its ranking score: 1 for the most anomalous, 1/n for the
/// least, 0 for a NaN score; and each row's anomaly rank (0-based, ties by row).
pub fn anomaly_percentiles(scores: &[f64]) -> (Vec<f64>, Vec<u32>) {
    let n = scores.len();
    let rank = crate::score::ranks(scores);
    let pct = scores
        .iter()
        .zip(&rank)
        .map(|(s, &r)| {
            if s.is_finite() {
                (n as f64 - f64::from(r) + 1.0) / n as f64
            } else {
                0.0
            }
        })
        .collect();
    (pct, rank.iter().map(|r| r - 1).collect())
}

/// The relevance model and the blended ranking of one catalogue, updated label by label.
#[derive(Debug, Clone)]
pub struct RelevanceModel {
    features: Features,
    options: RelevanceOptions,
    percentile: Vec<f64>,
    anomaly_rank: Vec<u32>,
    /// Squared typical neighbour distance (see [`RelevanceOptions::typical_width`]).
    typical: Option<f64>,
    /// Labelled row → (target, squared distances of every galaxy to it, 1 / 2ℓᵢ²).
    labelled: BTreeMap<usize, (f64, Vec<f32>, f64)>,
    relevance: Vec<f64>,
    uncertainty: Vec<f64>,
    adjusted: Vec<f64>,
    order: Vec<usize>,
}

impl RelevanceModel {
    /// A model over `features` with the ranking score `scores` (catalogue order, higher = more
    /// anomalous) and no labels yet: the order is the anomaly ranking.
    pub fn new(
        features: Features,
        scores: &[f64],
        options: RelevanceOptions,
    ) -> Result<RelevanceModel> {
        crate::error::check_len("scores", scores.len(), features.n)?;
        let valid = options.prior > 0.0
            && options.prior < 1.0
            && options.prior_weight > 0.0
            && options.neighbours >= 1
            && options.bandwidth.is_none_or(|b| b > 0.0 && b.is_finite());
        if !valid {
            return Err(Error::InvalidParameter {
                name: "relevance".to_string(),
                value: format!("{options:?}"),
                reason: "prior in (0, 1), prior weight > 0, neighbours ≥ 1, bandwidth > 0"
                    .to_string(),
            });
        }
        let (percentile, anomaly_rank) = anomaly_percentiles(scores);
        let n = features.n;
        let typical = options.typical_width.then(|| {
            // Up to 200 galaxies spread evenly over the catalogue: deterministic, no seed.
            let step = n.div_ceil(200).max(1);
            let mut kth: Vec<f32> = (0..n)
                .step_by(step)
                .map(|i| {
                    let mut d = features.distances_to(i);
                    d.swap_remove(i);
                    let k = options.neighbours.min(d.len()).max(1) - 1;
                    if d.is_empty() {
                        1.0
                    } else {
                        *d.select_nth_unstable_by(k, f32::total_cmp).1
                    }
                })
                .collect();
            kth.sort_by(f32::total_cmp);
            kth.get(kth.len() / 2)
                .map_or(1.0, |&v| f64::from(v).max(1e-12))
        });
        let mut model = RelevanceModel {
            typical,
            features,
            options,
            percentile,
            anomaly_rank,
            labelled: BTreeMap::new(),
            relevance: Vec::new(),
            uncertainty: Vec::new(),
            adjusted: Vec::new(),
            order: Vec::with_capacity(n),
        };
        model.refresh();
        Ok(model)
    }

    /// Number of galaxies.
    pub fn n(&self) -> usize {
        self.features.n
    }

    /// Number of labelled galaxies.
    pub fn n_labels(&self) -> usize {
        self.labelled.len()
    }

    /// True when catalogue row `row` has a label.
    pub fn is_labelled(&self, row: usize) -> bool {
        self.labelled.contains_key(&row)
    }

    /// Replaces all labels (`labels[i]` of catalogue row i). Only the rows whose label changed
    /// cost a distance column; the result depends on the labels alone.
    pub fn set_labels(&mut self, labels: &[Option<UserLabel>]) -> Result<()> {
        crate::error::check_len("labels", labels.len(), self.n())?;
        let mut changed = false;
        for (row, label) in labels.iter().enumerate() {
            match (label, self.labelled.get_mut(&row)) {
                (None, None) => {}
                (None, Some(_)) => {
                    self.labelled.remove(&row);
                    changed = true;
                }
                (Some(l), Some(entry)) => {
                    if entry.0 != target(*l) {
                        entry.0 = target(*l);
                        changed = true;
                    }
                }
                (Some(l), None) => {
                    let entry = self.label_entry(row, target(*l));
                    self.labelled.insert(row, entry);
                    changed = true;
                }
            }
        }
        if changed {
            self.refresh();
        }
        Ok(())
    }

    /// Sets (or with `None` clears) the label of catalogue row `row` and re-ranks.
    pub fn set_label(&mut self, row: usize, label: Option<UserLabel>) -> Result<()> {
        if row >= self.n() {
            return Err(Error::InvalidParameter {
                name: "row".to_string(),
                value: row.to_string(),
                reason: format!("the catalogue has {} rows", self.n()),
            });
        }
        match label {
            Some(label) => {
                let y = target(label);
                if let Some(entry) = self.labelled.get_mut(&row) {
                    if entry.0 == y {
                        return Ok(());
                    }
                    entry.0 = y;
                } else {
                    let entry = self.label_entry(row, y);
                    self.labelled.insert(row, entry);
                }
            }
            None => {
                if self.labelled.remove(&row).is_none() {
                    return Ok(());
                }
            }
        }
        self.refresh();
        Ok(())
    }

    /// The median kernel length scale of the labels (0 without labels), for the record.
    pub fn bandwidth(&self) -> f64 {
        let mut ell: Vec<f64> = self
            .labelled
            .values()
            .map(|(_, _, inv)| (0.5 / inv).sqrt())
            .collect();
        ell.sort_by(f64::total_cmp);
        ell.get(ell.len() / 2).copied().unwrap_or(0.0)
    }

    /// A label's target, its distance column and its kernel width (module doc).
    fn label_entry(&self, row: usize, y: f64) -> (f64, Vec<f32>, f64) {
        let column = self.features.distances_to(row);
        let ell2 = match (self.options.bandwidth, self.typical) {
            (Some(b), _) => b * b,
            (None, Some(t)) => t,
            (None, None) => {
                // The k-th smallest squared distance to another galaxy; a label on a
                // duplicated point falls back to the nearest positive distance.
                let mut others: Vec<f32> = column
                    .iter()
                    .enumerate()
                    .filter(|&(j, _)| j != row)
                    .map(|(_, &d)| d)
                    .collect();
                let k = self.options.neighbours.min(others.len()).max(1) - 1;
                let kth = if others.is_empty() {
                    1.0
                } else {
                    *others.select_nth_unstable_by(k, f32::total_cmp).1
                };
                let positive = column
                    .iter()
                    .copied()
                    .filter(|d| *d > 0.0)
                    .fold(f32::INFINITY, f32::min);
                let ell2 = if kth > 0.0 { kth } else { positive };
                if ell2.is_finite() && ell2 > 0.0 {
                    f64::from(ell2)
                } else {
                    1.0
                }
            }
        };
        (y, column, 0.5 / ell2)
    }

    /// Predicted relevance of every galaxy (posterior mean, in (0, 1)).
    pub fn relevance(&self) -> &[f64] {
        &self.relevance
    }

    /// Uncertainty of the relevance (posterior standard deviation).
    pub fn uncertainty(&self) -> &[f64] {
        &self.uncertainty
    }

    /// The blended ranking value `adjusted` of every galaxy (higher = look sooner).
    pub fn adjusted(&self) -> &[f64] {
        &self.adjusted
    }

    /// Catalogue rows in blended order (best first).
    pub fn order(&self) -> &[usize] {
        &self.order
    }

    /// 1-based blended rank of every row.
    pub fn ranks(&self) -> Vec<u32> {
        let mut rank = vec![0u32; self.n()];
        for (r, &i) in self.order.iter().enumerate() {
            rank[i] = r as u32 + 1;
        }
        rank
    }

    /// The galaxy to review next: the unlabelled row with the highest `a^γ · (r + explore · σ) / π`,
    /// γ = [`RelevanceOptions::anomaly_power`] as in the blend. `explore` = 0 gives the best
    /// blended one; > 0 adds an upper-confidence bonus for galaxies the model knows little about.
    /// `None` when every galaxy is labelled.
    pub fn next(&self, explore: f64) -> Option<usize> {
        let explore = if explore.is_finite() {
            explore.max(0.0)
        } else {
            0.0
        };
        let prior = self.prior();
        if explore == 0.0 {
            return self
                .order
                .iter()
                .copied()
                .find(|i| !self.labelled.contains_key(i));
        }
        (0..self.n())
            .filter(|i| !self.labelled.contains_key(i))
            .map(|i| {
                let a = self.percentile[i].powf(self.options.anomaly_power);
                let v = a * (self.relevance[i] + explore * self.uncertainty[i]) / prior;
                (v, i)
            })
            .max_by(|a, b| {
                a.0.total_cmp(&b.0)
                    .then(self.anomaly_rank[b.1].cmp(&self.anomaly_rank[a.1]))
            })
            .map(|(_, i)| i)
    }

    /// The prior relevance of a galaxy far from every label: with `empirical_prior`, the user's
    /// hit rate so far, (r₀c₀ + #interesting) / (c₀ + #labels); else r₀.
    pub fn prior(&self) -> f64 {
        let (r0, c0) = (self.options.prior, self.options.prior_weight);
        if !self.options.empirical_prior {
            return r0;
        }
        let hits: f64 = self.labelled.values().map(|(y, _, _)| *y).sum();
        (r0 * c0 + hits) / (c0 + self.labelled.len() as f64)
    }

    /// Recomputes relevance, blend and order from the labels.
    fn refresh(&mut self) {
        let (r0, c0) = (self.prior(), self.options.prior_weight);
        let labels: Vec<(f64, &[f32], f64)> = self
            .labelled
            .values()
            .map(|(y, c, inv)| (*y, c.as_slice(), *inv))
            .collect();
        let (relevance, uncertainty): (Vec<f64>, Vec<f64>) = (0..self.n())
            .into_par_iter()
            .map(|j| {
                let (mut sw, mut swy) = (0.0, 0.0);
                for (y, column, inv) in &labels {
                    let w = (-f64::from(column[j]) * inv).exp();
                    sw += w;
                    swy += w * y;
                }
                let r = (c0 * r0 + swy) / (c0 + sw);
                (r, (r * (1.0 - r) / (c0 + sw + 1.0)).sqrt())
            })
            .unzip();
        // Relevance enters as its lift over the prior, r / π: 1 far from every label, so the
        // anomaly order stands wherever the labels say nothing, whatever the hit rate.
        let prior = r0;
        let mut adjusted: Vec<f64> = self
            .percentile
            .iter()
            .zip(&relevance)
            .map(|(a, r)| a.powf(self.options.anomaly_power) * r / prior)
            .collect();
        let demoted = |row: &usize| self.labelled.get(row).is_some_and(|(y, _, _)| *y < 0.5);
        let lowest_unlabelled = (0..self.n())
            .filter(|i| !self.labelled.contains_key(i))
            .map(|i| adjusted[i])
            .fold(f64::INFINITY, f64::min);
        for row in self.labelled.keys().filter(|r| demoted(r)) {
            adjusted[*row] = 0.5 * adjusted[*row].min(lowest_unlabelled);
        }
        let mut order: Vec<usize> = (0..self.n()).collect();
        order.par_sort_unstable_by(|&a, &b| {
            adjusted[b]
                .total_cmp(&adjusted[a])
                .then(self.anomaly_rank[a].cmp(&self.anomaly_rank[b]))
        });
        self.relevance = relevance;
        self.uncertainty = uncertainty;
        self.adjusted = adjusted;
        self.order = order;
    }
}

/// What [`simulate_user`] found: the number of target galaxies among the first k reviewed, for
/// each k of `checkpoints`, walking the blended queue and walking the plain anomaly ranking.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SimulatedUser {
    /// The review depths counted at.
    pub checkpoints: Vec<usize>,
    /// Targets found within each depth by following [`RelevanceModel::next`] and labelling.
    pub active: Vec<usize>,
    /// Targets within each depth of the plain anomaly ranking.
    pub plain: Vec<usize>,
    /// Targets in the catalogue.
    pub targets: usize,
}

/// Plays a user against known answers: repeatedly takes [`RelevanceModel::next`], labels it
/// interesting when `is_target[row]` and normal otherwise (exactly what a person does through
/// the explorer), and counts the targets found. The model is used from its current labels.
pub fn simulate_user(
    model: &mut RelevanceModel,
    is_target: &[bool],
    checkpoints: &[usize],
    explore: f64,
) -> Result<SimulatedUser> {
    crate::error::check_len("targets", is_target.len(), model.n())?;
    let depth = checkpoints
        .iter()
        .copied()
        .max()
        .unwrap_or(0)
        .min(model.n());
    let plain_order: Vec<usize> = {
        let mut o: Vec<usize> = (0..model.n()).collect();
        o.sort_by_key(|&i| model.anomaly_rank[i]);
        o
    };
    let mut found = Vec::with_capacity(depth);
    let mut hits = 0;
    for _ in 0..depth {
        let Some(row) = model.next(explore) else {
            break;
        };
        let t = is_target[row];
        hits += usize::from(t);
        found.push(hits);
        model.set_label(
            row,
            Some(if t {
                UserLabel::Interesting
            } else {
                UserLabel::Normal
            }),
        )?;
    }
    let count_at = |k: usize| -> usize {
        found
            .get(k.min(found.len()).wrapping_sub(1))
            .copied()
            .unwrap_or(0)
    };
    let plain_at = |k: usize| -> usize {
        plain_order
            .iter()
            .take(k)
            .filter(|&&i| is_target[i])
            .count()
    };
    Ok(SimulatedUser {
        checkpoints: checkpoints.to_vec(),
        active: checkpoints.iter().map(|&k| count_at(k)).collect(),
        plain: checkpoints.iter().map(|&k| plain_at(k)).collect(),
        targets: is_target.iter().filter(|t| **t).count(),
    })
}

/// The blend of a catalogue with labels, as `oddcube score --labels` writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Blend {
    /// `adjusted` per row (see the module doc).
    pub adjusted: Vec<f64>,
    /// Predicted relevance per row.
    pub relevance: Vec<f64>,
    /// 1-based blended rank per row.
    pub rank: Vec<u32>,
}

/// Fits the relevance model to `labels` (catalogue order) and blends it with the ranking score
/// `scores`; the same computation the explorer runs live.
pub fn blend(
    catalog: &Catalog,
    latents: &[f32],
    latent_dim: usize,
    scores: &[f64],
    labels: &[Option<UserLabel>],
    options: &RelevanceOptions,
) -> Result<Blend> {
    let features = Features::build(catalog, latents, latent_dim)?;
    let mut model = RelevanceModel::new(features, scores, options.clone())?;
    model.set_labels(labels)?;
    Ok(Blend {
        adjusted: model.adjusted().to_vec(),
        relevance: model.relevance().to_vec(),
        rank: model.ranks(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::Column;

    /// Two clusters in a 2-D latent space (rows 0..10 near the origin, 10..20 near (10, 10))
    /// with scores falling with the row.
    fn two_clusters() -> (Catalog, Vec<f32>, Vec<f64>) {
        let latents: Vec<f32> = (0..20)
            .flat_map(|i| {
                let base = if i < 10 { 0.0 } else { 10.0 };
                let jitter = (i % 10) as f32 * 0.05;
                [base + jitter, base - jitter]
            })
            .collect();
        let scores: Vec<f64> = (0..20).map(|i| 100.0 - i as f64).collect();
        let mut catalog = Catalog::default();
        catalog
            .push(
                "plateifu",
                Column::Str((0..20).map(|i| format!("1-{i}")).collect()),
            )
            .unwrap();
        (catalog, latents, scores)
    }

    /// Kernels reaching each label's 3rd neighbour (within a 10-galaxy cluster) and the
    /// percentile itself in the blend: the mechanism, on a toy whose two clusters the default
    /// typical width (a tenth of a cluster here) would barely connect.
    fn options() -> RelevanceOptions {
        RelevanceOptions {
            neighbours: 3,
            typical_width: false,
            anomaly_power: 1.0,
            ..RelevanceOptions::default()
        }
    }

    fn model() -> RelevanceModel {
        let (catalog, latents, scores) = two_clusters();
        let f = Features::build(&catalog, &latents, 2).unwrap();
        RelevanceModel::new(f, &scores, options()).unwrap()
    }

    #[test]
    fn without_labels_the_order_is_the_anomaly_ranking() {
        let m = model();
        assert_eq!(m.order(), (0..20).collect::<Vec<_>>().as_slice());
        assert!(m.relevance().iter().all(|&r| r == 0.5));
        let (pct, _) = anomaly_percentiles(&two_clusters().2);
        assert_eq!(
            m.adjusted(),
            pct.as_slice(),
            "no labels: adjusted is the percentile"
        );
        let typical = RelevanceOptions {
            typical_width: true,
            ..options()
        };
        let (catalog, latents, scores) = two_clusters();
        let f = Features::build(&catalog, &latents, 2).unwrap();
        let mut t = RelevanceModel::new(f, &scores, typical).unwrap();
        t.set_label(12, Some(UserLabel::Interesting)).unwrap();
        assert!(t.relevance()[15] > t.relevance()[5]);
        assert_eq!(m.next(0.0), Some(0));
        // The defaults (one typical width, the percentile squared): without labels `adjusted`
        // is the squared percentile, so the order is still exactly the anomaly ranking.
        let f = Features::build(&catalog, &latents, 2).unwrap();
        let d = RelevanceModel::new(f, &scores, RelevanceOptions::default()).unwrap();
        assert_eq!(d.order(), (0..20).collect::<Vec<_>>().as_slice());
        let squared: Vec<f64> = pct.iter().map(|p| p * p).collect();
        assert_eq!(d.adjusted(), squared.as_slice());
    }

    #[test]
    fn graded_labels_lift_between_normal_and_interesting() {
        let relevance_near = |label: UserLabel| {
            let mut m = model();
            m.set_label(12, Some(label)).unwrap();
            m.relevance()[15]
        };
        let (low, mid, high) = (
            relevance_near(UserLabel::Relevance(1)),
            relevance_near(UserLabel::Relevance(4)),
            relevance_near(UserLabel::Interesting),
        );
        assert!(low < mid && mid < high, "{low} {mid} {high}");
        assert_eq!(relevance_near(UserLabel::Relevance(5)), high);
        assert_eq!(
            relevance_near(UserLabel::Relevance(0)),
            relevance_near(UserLabel::Normal)
        );
        // A low grade sinks its galaxy below every unlabelled one, as normal does.
        let mut m = model();
        m.set_label(0, Some(UserLabel::Relevance(2))).unwrap();
        assert_eq!(m.ranks()[0], 20);
    }

    #[test]
    fn an_interesting_label_lifts_its_cluster_and_normal_ones_sink() {
        let mut m = model();
        m.set_label(0, Some(UserLabel::Normal)).unwrap();
        m.set_label(12, Some(UserLabel::Interesting)).unwrap();
        let r = m.relevance();
        assert!(r[15] > 0.5 && r[5] < 0.5, "{r:?}");
        // The rest of the interesting cluster now comes before the first cluster.
        assert_eq!(m.next(0.0), Some(10));
        let rank = m.ranks();
        assert!(rank[13] < rank[1], "{rank:?}");
        assert_eq!(rank[0], 20, "a galaxy labelled normal sinks to the bottom");
        // Uncertainty is smallest at the labels.
        assert!(m.uncertainty()[12] < m.uncertainty()[5]);
        assert!(m.bandwidth() > 0.0);
        // Order of labelling does not matter; clearing returns to the plain ranking.
        let mut other = model();
        other.set_label(12, Some(UserLabel::Interesting)).unwrap();
        other.set_label(0, Some(UserLabel::Normal)).unwrap();
        assert_eq!(other.adjusted(), m.adjusted());
        assert_eq!(other.order(), m.order());
        other.set_label(12, None).unwrap();
        other.set_label(0, None).unwrap();
        assert_eq!(other.order(), (0..20).collect::<Vec<_>>().as_slice());
        assert!(m.set_label(99, None).is_err());
    }

    #[test]
    fn the_simulated_user_counts_targets_and_the_blend_matches_the_live_model() {
        let (catalog, latents, scores) = two_clusters();
        let is_target: Vec<bool> = (0..20).map(|i| i >= 10).collect();
        let mut m = model();
        let sim = simulate_user(&mut m, &is_target, &[5, 10], 0.0).unwrap();
        assert_eq!(sim.plain, vec![0, 0]);
        assert!(sim.active[1] >= 5, "{sim:?}");
        assert_eq!(sim.targets, 10);
        let labels: Vec<Option<UserLabel>> = (0..20)
            .map(|i| {
                m.labelled.get(&i).map(|(y, _, _)| {
                    if *y > 0.5 {
                        UserLabel::Interesting
                    } else {
                        UserLabel::Normal
                    }
                })
            })
            .collect();
        let b = blend(&catalog, &latents, 2, &scores, &labels, &options()).unwrap();
        assert_eq!(b.adjusted, m.adjusted());
        assert_eq!(b.rank, m.ranks());
        assert!(m.next(1.0).is_some());
    }

    #[test]
    fn bad_settings_and_nan_scores_are_handled() {
        let (catalog, latents, mut scores) = two_clusters();
        let f = Features::build(&catalog, &latents, 2).unwrap();
        let bad = RelevanceOptions {
            prior: 1.5,
            ..Default::default()
        };
        assert!(RelevanceModel::new(f.clone(), &scores, bad).is_err());
        assert!(RelevanceModel::new(f.clone(), &scores[..3], RelevanceOptions::default()).is_err());
        scores[0] = f64::NAN;
        let m = RelevanceModel::new(f, &scores, RelevanceOptions::default()).unwrap();
        assert_eq!(*m.order().last().unwrap(), 0, "NaN scores rank last");
        assert!(Features::build(&catalog, &latents, 3).is_err());
    }
}
