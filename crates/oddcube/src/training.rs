//! Training a model and fitting its null in one call: what `oddcube train` does between parsing
//! its arguments and printing, shared with the Python package's `oddcube.train`.
//!
//! With restarts, several models are trained from consecutive seeds. The one with the lowest
//! validation loss becomes the model (its latents and maps fill the catalogue); the others whose
//! loss is within [`MEMBER_LOSS_MARGIN`] of it are kept beside it as the members of a restart
//! ensemble, whose mean fused score is the catalogue's `score` (docs/model.md, "Restarts"): the
//! choice needs no labels, a seed whose training stalls on a plateau is left out of the mean, and
//! how far one run's null reaches does not decide the flags alone.

use std::path::{Path, PathBuf};

use anyhow::Context;
use oddcube_data::Progress;
use oddcube_data::artifact::{ArtifactKind, check_output_dir};
use oddcube_data::atomic::write_bytes;
use oddcube_data::dataset::Dataset;
use oddcube_model::checkpoint::{BEST_WEIGHTS, CONFIG, HISTORY, LAST_CHECKPOINT};
use oddcube_model::plan::{DatasetShape, Plan, RunChoices, plan_run};
use oddcube_model::{TrainOptions, TrainReport, train};

use oddcube_score::ensemble::{MEMBERS_DIR, member_dir};

use crate::calibrate::{CalibrationReport, calibrate_model};

/// Where runs left out of the restart ensemble are kept (`left-out/seed-S/`): trained and
/// inspectable, but neither calibrated nor scored.
pub const LEFT_OUT_DIR: &str = "left-out";

/// How far above the kept run's validation loss, as a fraction of it, another run's may be and
/// still be averaged into `score` (`train --member-margin`). A run that stalls on a plateau ends
/// well above the best of its survey and ranks the anomalies worse, while runs within a few per
/// cent rank alike and steady the flags (docs/model.md, "Restarts", has the measurements).
pub const MEMBER_LOSS_MARGIN: f64 = 0.10;

/// The record of a model's restarts, written beside its `config.toml`.
pub const RESTARTS_FILE: &str = "restarts.csv";

/// What [`train_and_calibrate`] did.
pub struct Trained {
    /// The configuration trained with and the notes of its planning.
    pub plan: Plan,
    /// The training run (epochs, losses, timings) of the model kept.
    pub report: TrainReport,
    /// Every run trained from its own seed when restarting (empty for a single run).
    pub restarts: Vec<Restart>,
    /// The null fitted afterwards and stored in the model directory.
    pub calibration: CalibrationReport,
}

/// One of several runs trained from consecutive seeds.
#[derive(Debug, Clone, PartialEq)]
pub struct Restart {
    /// Its seed.
    pub seed: u64,
    /// Its best validation loss (the training loss without a validation split).
    pub best_loss: f64,
    /// The epoch of that loss.
    pub best_epoch: usize,
    /// `best_loss` over the loss of predicting every galaxy by the mean galaxy.
    pub relative_to_baseline: f64,
    /// Whether this run became the model.
    pub kept: bool,
    /// Whether its fused score is averaged into `score`: the kept run, and every other run whose
    /// best loss is finite and at most `1 + member_margin` times the kept one's
    /// ([`MEMBER_LOSS_MARGIN`] by default).
    pub member: bool,
}

/// Plans a run from `choices` (or resumes the one in `out`), trains it on `dataset` into `out`
/// on `device` (`cpu`, `cuda`, `cuda:N`), then fits and stores the null
/// ([`calibrate_model`]), so every trained model scores with calibrated p-values. With
/// `restarts` > 1, trains that many runs from the seeds `seed`, `seed + 1`, … in
/// sub-directories of `out` and keeps the one with the lowest validation loss (see
/// [`RESTARTS_FILE`]). `on_plan` sees the plan before training starts (the CLI prints it).
#[allow(clippy::too_many_arguments)]
pub fn train_and_calibrate(
    dataset: &Dataset,
    choices: &RunChoices,
    out: &Path,
    resume: bool,
    restarts: usize,
    member_margin: f64,
    device: &str,
    progress: &dyn Progress,
    on_plan: &dyn Fn(&Plan),
) -> anyhow::Result<Trained> {
    anyhow::ensure!(restarts >= 1, "--restarts must be at least 1");
    anyhow::ensure!(
        member_margin >= 0.0,
        "--member-margin {member_margin}: expected a fraction ≥ 0 (inf averages every run)"
    );
    let candle_device =
        oddcube_model::select_device(device).with_context(|| format!("device {device:?}"))?;
    let plateifus: Vec<String> = dataset
        .galaxies
        .iter()
        .map(|g| g.plateifu.clone())
        .collect();
    let manifest_hash = dataset.manifest_hash();
    let shape = DatasetShape {
        lines: &dataset.manifest.lines.lines,
        size: dataset.manifest.size,
        manifest_hash: &manifest_hash,
        plateifus: &plateifus,
        stretch: dataset.manifest.normalisation.stretch,
    };
    check_output_dir(out, ArtifactKind::Model)?;
    let train_into = |plan: &Plan, dir: &Path| -> anyhow::Result<TrainReport> {
        let options = TrainOptions {
            resume,
            max_epochs_this_call: None,
        };
        train(
            &plan.config,
            &dataset.cubes,
            &plateifus,
            dir,
            &candle_device,
            options,
            progress,
        )
        .with_context(|| format!("training into {}", dir.display()))
    };
    // A model whose restarts were already chosen (a job preempted while the kept run moved up
    // finishes the move), or one trained as a single run, resumes as the single model it is.
    if resume && out.join(RESTARTS_FILE).exists() {
        finish_keeping(out)?;
    }
    let single_before = resume && out.join(CONFIG).exists() && candidate_dirs(out)?.is_empty();
    if single_before && restarts > 1 && !out.join(RESTARTS_FILE).exists() {
        tracing::info!(
            "{} holds a single run: resuming it as one (restarts apply to new models)",
            out.display()
        );
    }
    let (plan, report, restarts) = if restarts == 1 || single_before {
        let plan = plan_run(choices, shape, out, resume)?;
        on_plan(&plan);
        let report = train_into(&plan, out)?;
        (plan, report, Vec::new())
    } else {
        anyhow::ensure!(
            resume || !out.join(LAST_CHECKPOINT).exists(),
            "{} already holds a trained model; pass --resume to continue it or choose another output",
            out.display()
        );
        let base_seed = plan_run(choices, shape, out, false)?.config.train.seed;
        let mut runs = Vec::with_capacity(restarts);
        for i in 0..restarts {
            let seed = base_seed.checked_add(i as u64).with_context(|| {
                format!("--seed {base_seed} leaves no room for {restarts} restarts")
            })?;
            let dir = restart_dir(out, seed);
            let seeded = RunChoices {
                seed: Some(seed),
                ..choices.clone()
            };
            let plan = plan_run(&seeded, shape, &dir, resume)?;
            if i == 0 {
                on_plan(&plan);
            }
            tracing::info!("restart {}/{restarts}: seed {seed}", i + 1);
            let report = train_into(&plan, &dir)?;
            tracing::info!(
                "restart {}/{restarts} (seed {seed}): best loss {:.5} at epoch {} ({:.3} × baseline)",
                i + 1,
                report.state.best_val,
                report.state.best_epoch,
                report.state.best_val / report.mean_baseline
            );
            runs.push((plan, report));
        }
        let kept = lowest_loss(runs.iter().map(|(_, r)| r.state.best_val));
        let kept_loss = runs[kept].1.state.best_val;
        let restarts: Vec<Restart> = runs
            .iter()
            .enumerate()
            .map(|(i, (plan, report))| Restart {
                seed: plan.config.train.seed,
                best_loss: report.state.best_val,
                best_epoch: report.state.best_epoch,
                relative_to_baseline: report.state.best_val / report.mean_baseline,
                kept: i == kept,
                member: i == kept
                    || joins_ensemble(report.state.best_val, kept_loss, member_margin),
            })
            .collect();
        for r in restarts
            .iter()
            .filter(|r| !r.member && r.best_loss.is_finite())
        {
            tracing::info!(
                "seed {}: best loss {:.3}× the kept run's, more than 1 + {member_margin}: kept in {}/seed-{} but not averaged into score",
                r.seed,
                r.best_loss / kept_loss,
                LEFT_OUT_DIR,
                r.seed
            );
        }
        let (plan, report) = runs.swap_remove(kept);
        let kept_dir = restart_dir(out, plan.config.train.seed);
        // Nothing is moved or deleted unless there is a model to keep.
        anyhow::ensure!(
            report.state.best_val.is_finite() && kept_dir.join(BEST_WEIGHTS).exists(),
            "no run trained a usable model (best losses: {}); the runs are kept in {}",
            restarts
                .iter()
                .map(|r| format!("seed {} {}", r.seed, r.best_loss))
                .collect::<Vec<_>>()
                .join(", "),
            out.display()
        );
        // The table first: it says which run is kept, so a job stopped while the files move
        // finishes the move when resumed.
        write_restarts(out, &restarts)?;
        finish_keeping(out)?;
        (plan, report, restarts)
    };
    let calibration = calibrate_model(out, dataset, device, progress)?;
    Ok(Trained {
        plan,
        report,
        restarts,
        calibration,
    })
}

/// Where the run of `seed` trains before one run is kept.
fn restart_dir(out: &Path, seed: u64) -> PathBuf {
    out.join(format!("restart-seed-{seed}"))
}

/// Index of the lowest loss; a NaN loss (a diverged run) never wins unless all are NaN, and
/// ties go to the first (the lowest seed).
fn lowest_loss(losses: impl Iterator<Item = f64>) -> usize {
    let mut best: Option<(usize, f64)> = None;
    for (i, loss) in losses.enumerate() {
        let better = match best {
            None => true,
            Some((_, b)) => !loss.is_nan() && (b.is_nan() || loss < b),
        };
        if better {
            best = Some((i, loss));
        }
    }
    best.map_or(0, |(i, _)| i)
}

/// Whether a run whose best validation loss is `loss` joins the restart ensemble of a model kept
/// with `kept_loss`: finite and at most `(1 + margin) × kept_loss`.
fn joins_ensemble(loss: f64, kept_loss: f64, margin: f64) -> bool {
    loss.is_finite() && loss <= (1.0 + margin) * kept_loss
}

/// The `restart-seed-*` run directories inside `out`.
fn candidate_dirs(out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if !out.is_dir() {
        return Ok(Vec::new());
    }
    let entries =
        std::fs::read_dir(out).with_context(|| format!("cannot read {}", out.display()))?;
    let mut dirs = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("cannot read {}", out.display()))?
            .path();
        let is_run = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("restart-seed-"));
        if is_run && path.is_dir() {
            dirs.push(path);
        }
    }
    dirs.sort();
    Ok(dirs)
}

/// Completes the choice recorded in `out`'s [`RESTARTS_FILE`]: moves the kept run's files up,
/// moves every other member into `members/seed-S/` (the restart ensemble,
/// [`oddcube_score::ensemble`]) and every other run with a finite loss into
/// [`LEFT_OUT_DIR`]`/seed-S/` (their resume checkpoints dropped), and removes what is left of the
/// run directories (diverged runs). Steps already done are skipped, so it can be repeated. A
/// table written before the `member` column existed makes every finite run a member.
fn finish_keeping(out: &Path) -> anyhow::Result<()> {
    let path = out.join(RESTARTS_FILE);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let rows: Vec<Vec<String>> = oddcube_data::csv::parse(&text)
        .into_iter()
        .skip(1)
        .filter(|row| row.len() == 5 || row.len() == 6)
        .collect();
    let kept: Vec<&String> = rows
        .iter()
        .filter(|row| row[4] == "true")
        .map(|row| &row[0])
        .collect();
    let [seed] = &kept[..] else {
        anyhow::bail!(
            "{} names {} kept runs, not one; remove the model directory to train again",
            path.display(),
            kept.len()
        );
    };
    let dir = out.join(format!("restart-seed-{seed}"));
    if dir.is_dir() {
        keep_restart(out, &dir)?;
    }
    for row in rows.iter().filter(|row| row[4] != "true") {
        let finite = row[1].parse::<f64>().is_ok_and(f64::is_finite);
        let Ok(seed) = row[0].parse::<u64>() else {
            continue;
        };
        let from = restart_dir(out, seed);
        if !(finite && from.join(BEST_WEIGHTS).is_file()) {
            continue;
        }
        let member = row.get(5).is_none_or(|m| m == "true");
        let (parent, to) = if member {
            (out.join(MEMBERS_DIR), out.join(member_dir(seed)))
        } else {
            let parent = out.join(LEFT_OUT_DIR);
            let to = parent.join(format!("seed-{seed}"));
            (parent, to)
        };
        std::fs::create_dir_all(&parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
        let checkpoint = from.join(LAST_CHECKPOINT);
        if checkpoint.exists() {
            std::fs::remove_file(&checkpoint)
                .with_context(|| format!("cannot remove {}", checkpoint.display()))?;
        }
        std::fs::rename(&from, &to)
            .with_context(|| format!("cannot move {} to {}", from.display(), to.display()))?;
    }
    for dir in candidate_dirs(out)? {
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    Ok(())
}

/// Moves the kept run's files from `dir` up into the model directory `out`.
fn keep_restart(out: &Path, dir: &Path) -> anyhow::Result<()> {
    for name in [CONFIG, BEST_WEIGHTS, LAST_CHECKPOINT, HISTORY] {
        let (from, to) = (dir.join(name), out.join(name));
        if from.exists() {
            std::fs::rename(&from, &to)
                .with_context(|| format!("cannot move {} to {}", from.display(), to.display()))?;
        }
    }
    Ok(())
}

/// Writes [`RESTARTS_FILE`]: one row per run,
/// `seed,best_loss,best_epoch,relative_to_baseline,kept,member`.
fn write_restarts(out: &Path, restarts: &[Restart]) -> anyhow::Result<()> {
    let mut text = String::from("seed,best_loss,best_epoch,relative_to_baseline,kept,member\n");
    for r in restarts {
        text.push_str(&format!(
            "{},{:e},{},{:.4},{},{}\n",
            r.seed, r.best_loss, r.best_epoch, r.relative_to_baseline, r.kept, r.member
        ));
    }
    let path = out.join(RESTARTS_FILE);
    write_bytes(&path, text.as_bytes()).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::{MEMBER_LOSS_MARGIN, joins_ensemble, lowest_loss};

    #[test]
    fn runs_within_the_margin_join_the_ensemble_and_diverged_ones_never_do() {
        let kept = 0.004;
        assert!(joins_ensemble(kept, kept, 0.0));
        assert!(joins_ensemble(1.09 * kept, kept, MEMBER_LOSS_MARGIN));
        assert!(!joins_ensemble(1.11 * kept, kept, MEMBER_LOSS_MARGIN));
        assert!(!joins_ensemble(1.0001 * kept, kept, 0.0));
        assert!(joins_ensemble(50.0 * kept, kept, f64::INFINITY));
        assert!(!joins_ensemble(f64::NAN, kept, f64::INFINITY));
        assert!(!joins_ensemble(f64::INFINITY, kept, f64::INFINITY));
    }

    #[test]
    fn the_lowest_finite_loss_wins_and_ties_go_to_the_first_seed() {
        assert_eq!(lowest_loss([0.5, 0.3, 0.4].into_iter()), 1);
        assert_eq!(lowest_loss([0.3, 0.3].into_iter()), 0);
        assert_eq!(lowest_loss([f64::NAN, 0.9, f64::NAN].into_iter()), 1);
        assert_eq!(lowest_loss([0.9, f64::NAN].into_iter()), 0);
        assert_eq!(lowest_loss([f64::NAN, f64::NAN].into_iter()), 0);
    }
}
