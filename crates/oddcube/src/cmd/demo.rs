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
    #[arg(long, default_value = "oddcube-demo")]
    out: PathBuf,
    /// Galaxies in the simulated survey.
    #[arg(long, default_value_t = 200)]
    galaxies: usize,
    /// Fraction of them that are anomalous (Seyferts, blueberries, ...).
    #[arg(long, default_value_t = 0.08)]
    anomaly_fraction: f64,
    /// Random seed of the survey and the model.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Training epochs (about 4 s each for 200 galaxies on 2 cores).
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
                "--data", &dataset, "--out", &model, "--epochs", &epochs, "--seed", &seed,
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
            &[&results, "--labels", &truth],
        ),
        Stage::new(
            "project",
            root.join("results/projection.csv"),
            &[&results, "--seed", &seed],
        ),
        Stage::new(
            "plot-map",
            root.join("figures/map.png"),
            &["map", &results, "--out", &p("figures/map.png")],
        ),
        Stage::new(
            "plot-scores",
            root.join("figures/scores.png"),
            &["scores", &results, "--out", &p("figures/scores.png")],
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
    let eval_path = results_dir.join("evaluation.json");
    if let Ok(text) = std::fs::read_to_string(&eval_path) {
        println!();
        println!(
            "{}",
            oddcube_score::evaluate::headline_from_json(&text, &rank_by)?
        );
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
        "  oddcube serve --results {} --data {} --model {} --kinds {}",
        results_dir.display(),
        root.join("dataset").display(),
        root.join("model").display(),
        root.join("survey/truth.csv").display()
    );
    Ok(())
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
