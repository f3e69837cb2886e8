//! `oddcube demo`: the whole chain on a simulated survey — simulate → ingest → train → score →
//! evaluate → project → figures — with a summary at the end.
//!
//! Each stage runs the same subcommand a user would type (the arguments are parsed by that
//! subcommand's own parser, so the demo cannot drift from the CLI), and each finished stage
//! leaves a stamp keyed by its arguments and the stamps of the stages before it: re-running the
//! demo reuses what is finished and up to date, `--force` redoes everything.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{FromArgMatches, Parser};

/// Arguments of `oddcube demo`.
#[derive(clap::Args)]
pub struct Args {
    /// Working directory for the survey, dataset, model, results and figures.
    #[arg(long, default_value = "oddcube-demo", value_name = "DIR")]
    out: PathBuf,
    /// Galaxies in the simulated survey (more than `simulate`'s 100: the model trains on 85 %
    /// of them, and the evaluation needs enough anomalies of each kind).
    #[arg(long, default_value_t = 400)]
    galaxies: usize,
    /// Fraction of them that are anomalous: Seyferts, blueberries, ... (four galaxies of each
    /// of the four kinds at the default 400; rare, as anomalies are in a real survey, so that
    /// the null of ordinary galaxies is not swamped by them).
    #[arg(long, default_value_t = 0.04)]
    anomaly_fraction: f64,
    /// Random seed of the survey and the model (not `simulate`'s 0: the demo's documented
    /// measurements in docs/scoring.md are for seed 42).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Training epochs (4–9 s each for 400 galaxies on 2 cores, by the machine).
    #[arg(long, default_value_t = 30)]
    epochs: usize,
    /// Redo every stage even when its outputs are up to date.
    #[arg(long)]
    force: bool,
}

/// A parser wrapper so a subcommand's `Args` can be built from words exactly as the CLI does.
#[derive(Parser)]
#[command(no_binary_name = true)]
struct Words<T: clap::Args> {
    #[command(flatten)]
    args: T,
}

fn parse<T: clap::Args>(words: &[String]) -> anyhow::Result<T> {
    let matches = <Words<T> as clap::CommandFactory>::command()
        .try_get_matches_from(words)
        .with_context(|| format!("demo built bad arguments: {}", words.join(" ")))?;
    Ok(Words::<T>::from_arg_matches(&matches)?.args)
}

/// One stage of the chain: its name, the output it makes, and the words of its subcommand.
struct Stage {
    name: &'static str,
    output: PathBuf,
    words: Vec<String>,
}

impl Stage {
    fn new(name: &'static str, output: PathBuf, words: &[&str]) -> Self {
        Self {
            name,
            output,
            words: words.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn stamp_path(&self, root: &Path) -> PathBuf {
        root.join(format!(".stage-{}.json", self.name))
    }

    /// The stage's key: its arguments, the version, and the key of the stage before it.
    fn key(&self, previous: &str) -> String {
        let text = format!(
            "{}|{}|{}|{}",
            env!("CARGO_PKG_VERSION"),
            self.name,
            self.words.join("\u{1f}"),
            previous
        );
        format!("{:032x}", xxhash_rust::xxh3::xxh3_128(text.as_bytes()))
    }
}

/// Runs `oddcube demo`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let root = args.out.clone();
    std::fs::create_dir_all(&root).with_context(|| format!("{}: cannot create", root.display()))?;
    let p = |name: &str| root.join(name).display().to_string();
    let (survey, dataset, model, results, figures) = (
        p("survey"),
        p("dataset"),
        p("model"),
        p("results"),
        p("figures"),
    );
    let truth = root.join("survey").join("truth.csv").display().to_string();
    let (n, frac, seed, epochs) = (
        args.galaxies.to_string(),
        args.anomaly_fraction.to_string(),
        args.seed.to_string(),
        args.epochs.to_string(),
    );

    let stages = [
        Stage::new(
            "simulate",
            PathBuf::from(&survey),
            &[
                "--out",
                &survey,
                "--galaxies",
                &n,
                "--seed",
                &seed,
                "--anomaly-fraction",
                &frac,
            ],
        ),
        Stage::new(
            "ingest",
            PathBuf::from(&dataset),
            &[&survey, "--out", &dataset],
        ),
        Stage::new(
            "train",
            PathBuf::from(&model),
            &[
                "--data",
                &dataset,
                "--out",
                &model,
                "--epochs",
                &epochs,
                "--seed",
                &seed,
                // One run, not train's three restarts: the demo must stay under 5 minutes on
                // 2 cores, and its documented numbers are for seed 42's model.
                "--restarts",
                "1",
            ],
        ),
        Stage::new(
            "score",
            PathBuf::from(&results),
            &[
                "--model",
                &model,
                "--data",
                &dataset,
                "--out",
                &results,
                "--residuals",
                "top:50",
            ],
        ),
        Stage::new(
            "evaluate",
            root.join("results/evaluation.json"),
            &["--results", &results, "--truth", &truth],
        ),
        Stage::new(
            "project",
            root.join("results/projection.csv"),
            &["--results", &results, "--seed", &seed],
        ),
        Stage::new(
            "plot-map",
            root.join("figures/map.png"),
            &[
                "map",
                "--results",
                &results,
                "--out-file",
                &p("figures/map.png"),
            ],
        ),
        Stage::new(
            "plot-scores",
            root.join("figures/scores.png"),
            &[
                "scores",
                "--results",
                &results,
                "--out-file",
                &p("figures/scores.png"),
            ],
        ),
    ];
    std::fs::create_dir_all(&figures).with_context(|| format!("{figures}: cannot create"))?;

    let mut previous = String::new();
    let total = stages.len();
    for (i, stage) in stages.iter().enumerate() {
        let key = stage.key(&previous);
        let stamp = stage.stamp_path(&root);
        let fresh = !args.force
            && stage.output.exists()
            && std::fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == key);
        if fresh {
            eprintln!(
                "[{}/{total}] {}: up to date, reused ({})",
                i + 1,
                stage.name,
                stage.output.display()
            );
        } else {
            eprintln!(
                "[{}/{total}] {}: oddcube {} {}",
                i + 1,
                stage.name,
                subcommand(stage.name),
                stage.words.join(" ")
            );
            let _ = std::fs::remove_file(&stamp);
            let t = Instant::now();
            let code = run_stage(stage)?;
            if code != ExitCode::SUCCESS && !(stage.name == "ingest" && code == ExitCode::from(3)) {
                bail!(
                    "demo stage {} failed; fix the error above and re-run `oddcube demo` to continue",
                    stage.name
                );
            }
            std::fs::write(&stamp, &key)
                .with_context(|| format!("{}: cannot write", stamp.display()))?;
            eprintln!(
                "[{}/{total}] {}: done in {:.1} s",
                i + 1,
                stage.name,
                t.elapsed().as_secs_f64()
            );
        }
        previous = key;
    }
    print_summary(&root, started.elapsed().as_secs_f64())?;
    Ok(ExitCode::SUCCESS)
}

fn subcommand(stage: &str) -> &str {
    match stage {
        "plot-map" | "plot-scores" => "plot",
        other => other,
    }
}

fn run_stage(stage: &Stage) -> anyhow::Result<ExitCode> {
    let w = &stage.words;
    match stage.name {
        "simulate" => crate::cmd::simulate::run(parse(w)?),
        "ingest" => crate::cmd::ingest::run(parse(w)?),
        "train" => crate::cmd::train::run(parse(w)?),
        "score" => crate::cmd::score::run(parse(w)?),
        "evaluate" => crate::cmd::evaluate::run(parse(w)?),
        "project" => crate::cmd::project::run(parse(w)?),
        "plot-map" | "plot-scores" => crate::cmd::plot::run(parse(w)?),
        other => bail!("unknown demo stage {other}"),
    }
}

/// Prints the top anomalies with their true kinds, the evaluation headline and where things are.
fn print_summary(root: &Path, seconds: f64) -> anyhow::Result<()> {
    let results_dir = root.join("results");
    let results = oddcube_score::results::Results::open(&results_dir)?;
    let truth = read_truth(&root.join("survey/truth.csv"))?;
    let plateifus = results
        .catalog
        .str("plateifu")
        .context("catalog has no plateifu column")?;
    let ranks = results
        .catalog
        .u32("rank")
        .context("catalog has no rank column")?;
    let mut order: Vec<usize> = (0..plateifus.len()).collect();
    order.sort_by_key(|&i| ranks[i]);
    let rank_by = results.manifest.rank_by.clone();
    let score = results
        .catalog
        .f64(&rank_by)
        .context("catalog lacks its rank-by column")?;
    println!();
    println!("Top 10 anomalies (by {rank_by}) and what they really are:");
    println!("  rank  plateifu      {rank_by:>10}  true kind");
    for &i in order.iter().take(10) {
        let kind = truth
            .iter()
            .find(|(p, _)| *p == plateifus[i])
            .map_or("?", |(_, k)| k.as_str());
        println!(
            "  {:>4}  {:<12}  {:>10.3}  {kind}",
            ranks[i], plateifus[i], score[i]
        );
    }
    let flags = results.catalog.bool("fdr_flag");
    let flagged: Vec<usize> = flags
        .map(|f| (0..f.len()).filter(|&i| f[i]).collect())
        .unwrap_or_default();
    let kind_of = |i: usize| {
        truth
            .iter()
            .find(|(p, _)| *p == plateifus[i])
            .map_or("?", |(_, k)| k.as_str())
    };
    println!();
    println!(
        "{}",
        flag_line(
            flagged.iter().map(|&i| kind_of(i)),
            plateifus.len(),
            results.manifest.fdr,
            flags.is_some()
        )
    );
    if flagged.is_empty()
        && let (Some(p), Some(q)) = (results.catalog.f64("pvalue"), results.catalog.f64("qvalue"))
        && let Some(note) = smallest_q_note(plateifus, p, q, results.manifest.fdr)
    {
        println!("{note}");
    }
    let eval_path = results_dir.join("evaluation.json");
    if let Ok(text) = std::fs::read_to_string(&eval_path) {
        println!();
        println!(
            "{}",
            oddcube_score::evaluate::headline_from_json(&text, &rank_by)?
        );
        println!();
        print!("{}", evaluation_summary(&text)?);
    }
    println!();
    println!("Files (in {}):", root.display());
    println!("  survey/    simulated MAPS files + truth.csv");
    println!("  dataset/   cubes.safetensors, galaxies.parquet/.csv, manifest.json");
    println!("  model/     config.toml, weights (safetensors), history.csv");
    println!(
        "  results/   catalog.parquet/.csv, latents.npy, residuals, evaluation.json, projection.csv"
    );
    println!("  figures/   map.png, scores.png");
    println!("Done in {seconds:.0} s. Explore the results in your browser:");
    println!(
        "  oddcube serve --results {} --data {} --model {} --truth {}",
        results_dir.display(),
        root.join("dataset").display(),
        root.join("model").display(),
        root.join("survey/truth.csv").display()
    );
    Ok(())
}

/// Score columns of the demo's AUROC table: the fused score, the two classic reconstruction
/// scores and the PCA baseline they must beat.
const SUMMARY_SCORES: [&str; 4] = ["score", "chi2", "recon", "pca_chi2"];

/// "Flagged at FDR q: n of N — k₁ kind₁, k₂ kind₂" from the true kinds of the flagged galaxies.
fn flag_line<'a>(
    kinds: impl Iterator<Item = &'a str>,
    n: usize,
    fdr: f64,
    has_flags: bool,
) -> String {
    if !has_flags {
        return "No fdr_flag column: these results were scored by an older oddcube.".to_string();
    }
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for kind in kinds {
        *counts.entry(kind).or_default() += 1;
    }
    let total: usize = counts.values().sum();
    let mut line = format!("Flagged at FDR {fdr}: {total} of {n} galaxies");
    if total > 0 {
        let by_kind: Vec<String> = counts.iter().map(|(k, c)| format!("{c} {k}")).collect();
        line.push_str(&format!(" — true kinds: {}", by_kind.join(", ")));
    }
    line
}

/// When nothing is flagged: which galaxy came closest (the smallest p-value; q-values tie across
/// the top of a BH list) and its q-value, so that "0 flagged" reads as "not enough evidence at
/// this level", not as "nothing unusual"; `None` without a finite p and q.
fn smallest_q_note(
    plateifus: &[String],
    p_values: &[f64],
    q_values: &[f64],
    fdr: f64,
) -> Option<String> {
    let (i, q) = q_values
        .iter()
        .enumerate()
        .filter(|(i, q)| q.is_finite() && p_values.get(*i).is_some_and(|p| p.is_finite()))
        .min_by(|a, b| p_values[a.0].total_cmp(&p_values[b.0]))?;
    Some(format!(
        "  The closest is {} with q = {q:.3} (flags need q ≤ {fdr}); the ranking above is still \
         the anomaly order. docs/scoring.md explains when a small survey's evidence is too weak \
         to flag.",
        plateifus.get(i).map_or("?", String::as_str)
    ))
}

/// The demo's judgement from `evaluation.json`: what the flags delivered, the AUROC of each
/// [`SUMMARY_SCORES`] column per true kind, and where the anomaly maps point. Parts the file
/// lacks (an older evaluate, no truth regions) are left out or said to be missing.
fn evaluation_summary(text: &str) -> anyhow::Result<String> {
    use std::fmt::Write as _;
    let doc: serde_json::Value =
        serde_json::from_str(text).context("evaluation.json is not JSON")?;
    let mut out = String::new();
    let number = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
    if let Some(flags) = doc.get("flags").filter(|f| !f.is_null()) {
        writeln!(
            out,
            "Flags against the truth: realized false-discovery proportion {:.2} ({} of {} flags \
             are ordinary galaxies), recall {:.2} of {} anomalies",
            number(&flags["false_discovery_proportion"]),
            flags["false_discoveries"],
            flags["flagged"],
            number(&flags["recall"]),
            flags["anomalies"],
        )?;
    }
    let evaluation = doc.get("evaluation").unwrap_or(&doc);
    let rows = evaluation["rows"].as_array().cloned().unwrap_or_default();
    let auroc = |score: &str, split: &str| {
        rows.iter()
            .find(|r| r["score"] == score && r["split"] == split)
            .map(|r| number(&r["auroc"]))
    };
    let mut splits: Vec<String> = evaluation["anomaly_kinds"]
        .as_array()
        .map(|k| {
            k.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    splits.push(oddcube_score::evaluate::OVERALL.to_string());
    let normal: Vec<&str> = evaluation["normal_labels"]
        .as_array()
        .map(|k| k.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    writeln!(
        out,
        "AUROC per true kind (against the normal kinds: {}; pca_chi2 = the PCA baseline):",
        normal.join(", ")
    )?;
    write!(out, "  {:<14}", "kind")?;
    for score in SUMMARY_SCORES {
        write!(out, "{score:>10}")?;
    }
    writeln!(out)?;
    for split in &splits {
        write!(out, "  {split:<14}")?;
        for score in SUMMARY_SCORES {
            match auroc(score, split) {
                Some(v) if v.is_finite() => write!(out, "{v:>10.3}")?,
                _ => write!(out, "{:>10}", "–")?,
            }
        }
        writeln!(out)?;
    }
    match doc.get("localization").filter(|l| !l.is_null()) {
        Some(loc) => {
            let row = |r: &serde_json::Value| {
                format!(
                    "pixel AUROC {:.2}, peak inside {:.0} % (n = {})",
                    number(&r["mean_pixel_auroc"]),
                    100.0 * number(&r["peak_inside"]),
                    r["n"]
                )
            };
            writeln!(
                out,
                "Localization (anomaly map against the true region): {}",
                row(&loc["overall"])
            )?;
            if let Some(kinds) = loc["per_kind"].as_object() {
                for (kind, r) in kinds {
                    writeln!(out, "  {kind:<14}{}", row(r))?;
                }
            }
        }
        None => writeln!(
            out,
            "Localization: not judged (no truth regions or no anomaly maps)"
        )?,
    }
    Ok(out)
}

/// (plateifu, kind) pairs from the simulator's truth table.
fn read_truth(path: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name);
    let (Some(ip), Some(ik)) = (col("plateifu"), col("kind")) else {
        bail!("{}: needs plateifu and kind columns", path.display());
    };
    Ok(lines
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            Some((f.get(ip)?.to_string(), f.get(ik)?.to_string()))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_line_counts_true_kinds() {
        let line = flag_line(
            ["seyfert", "blueberry", "seyfert"].into_iter(),
            200,
            0.05,
            true,
        );
        assert_eq!(
            line,
            "Flagged at FDR 0.05: 3 of 200 galaxies — true kinds: 1 blueberry, 2 seyfert"
        );
        assert_eq!(
            flag_line(std::iter::empty(), 10, 0.1, true),
            "Flagged at FDR 0.1: 0 of 10 galaxies"
        );
        assert!(flag_line(std::iter::empty(), 10, 0.1, false).contains("older"));
    }

    #[test]
    fn the_closest_galaxy_is_named_when_nothing_is_flagged() {
        let names = ["a".to_string(), "b".to_string(), "c".to_string()];
        // b and c tie on q (as the top of a BH list does); c has the smaller p.
        let p = [0.5, 0.002, 0.001];
        let note = smallest_q_note(&names, &p, &[0.9, 0.245, 0.245], 0.05).unwrap();
        assert!(
            note.contains("c with q = 0.245 (flags need q ≤ 0.05)"),
            "{note}"
        );
        assert!(smallest_q_note(&names, &p, &[f64::NAN; 3], 0.05).is_none());
    }

    #[test]
    fn evaluation_summary_tabulates_auroc_flags_and_localization() {
        let row = |score: &str, split: &str, auroc: f64| {
            serde_json::json!({ "score": score, "split": split, "n_positive": 4,
                "n_negative": 10, "auroc": auroc, "average_precision": 0.5,
                "precision_at_10": 0.1, "precision_at_50": 0.1, "precision_at_100": 0.1,
                "precision_at_n_positive": 0.1 })
        };
        let doc = serde_json::json!({
            "evaluation": {
                "normal_labels": ["star_forming"], "anomaly_kinds": ["seyfert"],
                "label_counts": {}, "n_unlabelled": 0,
                "rows": [row("score", "seyfert", 0.97), row("score", "overall", 0.9),
                         row("chi2", "seyfert", 0.93), row("pca_chi2", "overall", 0.8)],
            },
            "flags": { "flagged": 2, "false_discoveries": 0, "false_discovery_proportion": 0.0,
                       "anomalies": 16, "recall": 0.125 },
            "localization": { "overall": { "n": 4, "mean_pixel_auroc": 0.71, "peak_inside": 0.5 },
                              "per_kind": { "seyfert": { "n": 4, "mean_pixel_auroc": 0.65, "peak_inside": 0.25 } } },
        });
        let text = evaluation_summary(&doc.to_string()).unwrap();
        assert!(
            text.contains("realized false-discovery proportion 0.00"),
            "{text}"
        );
        assert!(text.contains("recall 0.12 of 16"), "{text}");
        let seyfert = text
            .lines()
            .find(|l| l.trim_start().starts_with("seyfert "))
            .unwrap();
        assert!(
            seyfert.contains("0.970") && seyfert.contains("0.930"),
            "{seyfert}"
        );
        assert!(
            seyfert.contains('–'),
            "missing recon/pca rows show a dash: {seyfert}"
        );
        let overall = text
            .lines()
            .find(|l| l.trim_start().starts_with("overall"))
            .unwrap();
        assert!(overall.contains("0.800"), "{overall}");
        assert!(
            text.contains("pixel AUROC 0.71, peak inside 50 % (n = 4)"),
            "{text}"
        );
        let old = serde_json::json!({ "evaluation": { "normal_labels": [], "anomaly_kinds": [], "rows": [] } });
        let text = evaluation_summary(&old.to_string()).unwrap();
        assert!(text.contains("Localization: not judged"), "{text}");
        assert!(evaluation_summary("not json").is_err());
    }
}
