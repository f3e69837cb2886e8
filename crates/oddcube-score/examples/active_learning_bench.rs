//! Benchmarks of the active-learning ranking (`docs/active-learning.md`).
//!
//! `simulate RESULTS TRUTH [EXPLORE [BANDWIDTH]]` plays a user against a simulated survey's `truth.csv`:
//! for each anomaly kind as the target, it follows `RelevanceModel::next` (what `/api/next`
//! serves) from no labels, labels each galaxy interesting when its true kind is the target and
//! normal otherwise, and prints the targets found in the first 25/50/100 next to the plain
//! anomaly ranking, as a Markdown table. The truth is only ever used as the user's answers.
//!
//! For experiments (reported as sensitivity in the doc, never used to pick the defaults from a
//! survey's truth): environment `K` (kernel neighbours), `GAMMA` (anomaly power), `C0` (prior
//! weight), `EB=0` (fixed prior ½), `TYPICAL=1` (one kernel width), `NOSCORES=1` (features
//! without the score block), and `TRACE=1` prints the first 50 galaxies each walk reviews
//! with their true kind, anomaly rank and relevance.
//!
//! `purity RESULTS TRUTH` prints, per feature block, the share of same-kind galaxies among the 5
//! nearest neighbours of each anomaly (how well the features group each kind).
//!
//! `latency N [N …]` times the live update on a synthetic catalogue of N galaxies (32 latent
//! dimensions, the eight score columns, 19 line shares): start-up (features, model), then one
//! label change to the new order, at 1, 10, 50, 100 and 200 labels (median of 5 changes each).
//!
//! `cargo run --release -p oddcube-score --example active_learning_bench -- simulate RESULTS truth.csv`

use std::time::Instant;

use oddcube_score::feedback::UserLabel;
use oddcube_score::relevance::{Features, RelevanceModel, RelevanceOptions, simulate_user};
use oddcube_score::results::{Catalog, Column, Results};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

type Failure = Box<dyn std::error::Error>;

/// A RESULTS directory, its plate-ifus, and each one's true kind (catalogue order).
type Labelled = (Results, Vec<String>, Vec<Option<String>>);

/// The RESULTS directory, its plate-ifus and each one's true kind from `truth` (catalogue order).
fn open_with_kinds(results: &str, truth: &str) -> Result<Labelled, Failure> {
    let results = Results::open(std::path::Path::new(results))?;
    let ids = results
        .catalog
        .str("plateifu")
        .ok_or("no plateifu column")?
        .to_vec();
    let kinds =
        oddcube_score::truth::read_labels_csv(std::path::Path::new(truth), "plateifu", "kind")?;
    let kinds = oddcube_score::truth::align_labels(&ids, &kinds);
    Ok((results, ids, kinds))
}

fn simulate(
    results: &str,
    truth: &str,
    explore: f64,
    bandwidth: Option<f64>,
) -> Result<(), Failure> {
    let (results, ids, kinds) = open_with_kinds(results, truth)?;
    let catalog = &results.catalog;
    let rank_by = results.manifest.rank_by.clone();
    let scores = catalog.f64(&rank_by).ok_or("no ranking column")?.to_vec();
    let started = Instant::now();
    let features = if std::env::var_os("NOSCORES").is_some() {
        let mut sub = Catalog::default();
        for (name, column) in &catalog.columns {
            if !oddcube_score::evaluate::SCORE_COLUMNS.contains(&name.as_str()) {
                sub.push(name, column.clone())?;
            }
        }
        Features::build(&sub, &results.latents, results.latent_dim)?
    } else {
        Features::build(catalog, &results.latents, results.latent_dim)?
    };
    let dim = features.dim();
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<f64>().ok());
    let defaults = RelevanceOptions::default();
    let options = RelevanceOptions {
        bandwidth,
        neighbours: env("K").map_or(defaults.neighbours, |k| k as usize),
        anomaly_power: env("GAMMA").unwrap_or(defaults.anomaly_power),
        prior_weight: env("C0").unwrap_or(defaults.prior_weight),
        empirical_prior: env("EB").map_or(defaults.empirical_prior, |v| v > 0.0),
        typical_width: env("TYPICAL").map_or(defaults.typical_width, |v| v > 0.0),
        ..defaults
    };
    let base = RelevanceModel::new(features, &scores, options)?;
    eprintln!(
        "{} galaxies, {} features, start-up {:.0} ms",
        ids.len(),
        dim,
        started.elapsed().as_secs_f64() * 1e3
    );
    let mut names: Vec<String> = kinds.iter().flatten().cloned().collect();
    names.sort();
    names.dedup();
    names.retain(|k| !oddcube_score::evaluate::DEFAULT_NORMAL_LABELS.contains(&k.as_str()));
    let checkpoints = [25, 50, 100];
    println!(
        "| target kind | in survey | plain 25 | active 25 | plain 50 | active 50 | plain 100 | active 100 | final ℓ |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut total = [0usize; 6];
    for kind in &names {
        let is_target: Vec<bool> = kinds.iter().map(|k| k.as_deref() == Some(kind)).collect();
        let mut model = base.clone();
        let t = Instant::now();
        if std::env::var_os("TRACE").is_some() {
            let mut m = model.clone();
            for step in 0..50 {
                let Some(row) = m.next(explore) else { break };
                eprintln!(
                    "{kind} {step}: {} rank {} r {:.2} a·r {:.3}",
                    kinds[row].as_deref().unwrap_or("?"),
                    catalog.u32("rank").map_or(0, |r| r[row]),
                    m.relevance()[row],
                    m.adjusted()[row]
                );
                let label = if is_target[row] {
                    UserLabel::Interesting
                } else {
                    UserLabel::Normal
                };
                m.set_label(row, Some(label))?;
            }
        }
        let sim = simulate_user(&mut model, &is_target, &checkpoints, explore)?;
        eprintln!("{kind}: 100 labels in {:.1} s", t.elapsed().as_secs_f64());
        for i in 0..3 {
            total[2 * i] += sim.plain[i];
            total[2 * i + 1] += sim.active[i];
        }
        println!(
            "| {kind} | {} | {} | {} | {} | {} | {} | {} | {:.3} |",
            sim.targets,
            sim.plain[0],
            sim.active[0],
            sim.plain[1],
            sim.active[1],
            sim.plain[2],
            sim.active[2],
            model.bandwidth()
        );
    }
    println!(
        "| all kinds | | {} | {} | {} | {} | {} | {} | |",
        total[0], total[1], total[2], total[3], total[4], total[5]
    );
    Ok(())
}

/// A synthetic catalogue: clustered latents, positive scores, line shares summing to 1.
fn synthetic(n: usize, seed: u64) -> Result<(Catalog, Vec<f32>, Vec<f64>), Failure> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let dim = 32;
    let centres: Vec<Vec<f32>> = (0..20)
        .map(|_| (0..dim).map(|_| rng.random_range(-3.0..3.0)).collect())
        .collect();
    let mut latents = Vec::with_capacity(n * dim);
    for _ in 0..n {
        let c = &centres[rng.random_range(0..centres.len())];
        latents.extend(c.iter().map(|v| v + rng.random_range(-1.0f32..1.0)));
    }
    let mut catalog = Catalog::default();
    catalog.push(
        "plateifu",
        Column::Str(
            (0..n)
                .map(|i| format!("{}-{}", 7000 + i / 1000, i % 1000))
                .collect(),
        ),
    )?;
    let mut score = Vec::new();
    for name in oddcube_score::evaluate::SCORE_COLUMNS {
        let v: Vec<f64> = (0..n)
            .map(|_| rng.random_range(0.0f64..1.0).powi(4) * 10.0)
            .collect();
        if name == "score" {
            score = v.clone();
        }
        catalog.push(name, Column::F64(v))?;
    }
    let lines = 19;
    let shares: Vec<Vec<f64>> = (0..n)
        .map(|_| {
            let raw: Vec<f64> = (0..lines).map(|_| rng.random_range(0.0..1.0)).collect();
            let sum: f64 = raw.iter().sum();
            raw.iter().map(|v| v / sum).collect()
        })
        .collect();
    for l in 0..lines {
        catalog.push(
            &format!("line:L{l}"),
            Column::F64(shares.iter().map(|s| s[l]).collect()),
        )?;
    }
    Ok((catalog, latents, score))
}

fn latency(sizes: &[usize]) -> Result<(), Failure> {
    println!("| galaxies | start-up (ms) | 1 label (ms) | 10 | 50 | 100 | 200 |");
    println!("|---|---|---|---|---|---|---|");
    for &n in sizes {
        let (catalog, latents, scores) = synthetic(n, 1)?;
        let t = Instant::now();
        let features = Features::build(&catalog, &latents, 32)?;
        let mut model = RelevanceModel::new(features, &scores, RelevanceOptions::default())?;
        let startup = t.elapsed().as_secs_f64() * 1e3;
        let mut row = format!("| {n} | {startup:.0} |");
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        for target in [1usize, 10, 50, 100, 200] {
            // Bring the model to target − 1 labels without timing, then time 5 changes.
            while model.n_labels() + 1 < target {
                let row = rng.random_range(0..n);
                model.set_label(row, Some(UserLabel::Normal))?;
            }
            let mut times = Vec::new();
            for k in 0..5 {
                let row = loop {
                    let r = rng.random_range(0..n);
                    if !model.is_labelled(r) {
                        break r;
                    }
                };
                let label = if k % 2 == 0 {
                    UserLabel::Interesting
                } else {
                    UserLabel::Normal
                };
                let t = Instant::now();
                model.set_label(row, Some(label))?;
                let _next = model.next(0.0);
                times.push(t.elapsed().as_secs_f64() * 1e3);
                model.set_label(row, None)?;
            }
            times.sort_by(f64::total_cmp);
            row.push_str(&format!(" {:.1} |", times[2]));
        }
        println!("{row}");
    }
    Ok(())
}

/// Diagnostic: for each block choice, the mean share of same-kind galaxies among the 5 nearest
/// neighbours of each anomaly (how well the features group a kind), per kind.
fn purity(results: &str, truth: &str) -> Result<(), Failure> {
    let (results, ids, kinds) = open_with_kinds(results, truth)?;
    let catalog = &results.catalog;
    let normal = |k: &Option<String>| {
        k.as_deref()
            .is_none_or(|k| oddcube_score::evaluate::DEFAULT_NORMAL_LABELS.contains(&k))
    };
    for (name, latents, scores, lines) in [
        ("all", true, true, true),
        ("latents", true, false, false),
        ("scores", false, true, false),
        ("lines", false, false, true),
        ("scores+lines", false, true, true),
    ] {
        let mut sub = Catalog::default();
        sub.push("plateifu", Column::Str(ids.clone()))?;
        for (col, values) in &catalog.columns {
            let is_line = col.starts_with("line:");
            let is_score = oddcube_score::evaluate::SCORE_COLUMNS.contains(&col.as_str())
                || (col.starts_with("region_") && scores);
            if (is_line && lines) || (is_score && scores) {
                sub.push(col, values.clone())?;
            }
        }
        let dim = if latents { results.latent_dim } else { 0 };
        let lat: Vec<f32> = if latents {
            results.latents.clone()
        } else {
            Vec::new()
        };
        let f = Features::build(&sub, &lat, dim)?;
        let mut per_kind: std::collections::BTreeMap<String, (f64, usize)> = Default::default();
        for i in 0..ids.len() {
            if normal(&kinds[i]) {
                continue;
            }
            let d = f.distances(i);
            let mut idx: Vec<usize> = (0..ids.len()).filter(|&j| j != i).collect();
            idx.sort_by(|&a, &b| d[a].total_cmp(&d[b]));
            let same = idx
                .iter()
                .take(5)
                .filter(|&&j| kinds[j] == kinds[i])
                .count();
            let e = per_kind
                .entry(kinds[i].clone().unwrap_or_default())
                .or_default();
            e.0 += same as f64 / 5.0;
            e.1 += 1;
        }
        let text: Vec<String> = per_kind
            .iter()
            .map(|(k, (s, n))| format!("{k} {:.2}", s / *n as f64))
            .collect();
        println!("{name}: {}", text.join(", "));
    }
    Ok(())
}

fn main() -> Result<(), Failure> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("simulate") if args.len() >= 3 => {
            let explore = args.get(3).map(|e| e.parse()).transpose()?.unwrap_or(0.0);
            let bandwidth = args.get(4).map(|e| e.parse()).transpose()?;
            simulate(&args[1], &args[2], explore, bandwidth)
        }
        Some("purity") if args.len() >= 3 => purity(&args[1], &args[2]),
        Some("latency") => {
            let sizes: Vec<usize> = args[1..].iter().map(|a| a.parse()).collect::<Result<_, _>>()?;
            latency(if sizes.is_empty() { &[10_000, 100_000] } else { &sizes })
        }
        _ => Err("usage: active_learning_bench simulate RESULTS TRUTH [EXPLORE [BANDWIDTH]] | latency [N …]".into()),
    }
}
