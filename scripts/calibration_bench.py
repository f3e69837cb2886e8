#!/usr/bin/env python3
"""Calibration and ranking benchmark of `oddcube score` (issue #13): realized FDR, recall, AUROCs.

For every anomaly fraction F (default 2 %, 10 %, 30 %) and seed S (default 1, 2, 3), and for one
pure-null survey (F = 0), this script runs the pipeline exactly as a user would:

    oddcube simulate --out survey --galaxies N --anomaly-fraction F --seed S [--anomaly-kinds K]
    oddcube ingest survey --out dataset
    oddcube train --data dataset --out model --seed S --epochs E [--restarts R]
    oddcube score --model model --data dataset --out results          (defaults: stored null, FDR 0.05)
    oddcube evaluate --results results --truth survey/truth.csv      (AUROCs, PCA baseline)

and then reads `results/catalog.csv`, `survey/truth.csv` (`is_anomaly`, `kind`) and
`results/evaluation.json` and computes

* at nominal FDR levels 0.05 and 0.1: the galaxies flagged by Benjamini–Hochberg on the catalogue's
  `pvalue` column (re-run here; at 0.05 it is checked against the catalogue's own `fdr_flag`), the
  realized false-discovery proportion FDP = false flags / max(flags, 1) and the recall
  (true flags / planted anomalies);
* the AUROC of `score`, `pooled`, `chi2`, `global`, `local`, `recon`, `knn_dist`, `lof` and of the PCA
  baseline (`pca_chi2`, `pca_recon`), overall and per kind, from evaluation.json (the AUROC of
  `score` is recomputed here as a cross-check);
* the Kolmogorov–Smirnov distance of the p-values from uniform: for the pure-null survey (all
  galaxies, and separately the model's training and validation galaxies, both of which the null
  is fitted on: `model/calibration.json`'s `reference_plateifus` are the training galaxies), and for the
  ordinary galaxies of every survey; with the asymptotic 5 % critical value (Stephens' small-n
  form 1.358 / (√n + 0.12 + 0.11/√n)) and the asymptotic p-value.

It prints Markdown tables (FDP mean and worst and mean recall over the seeds per fraction,
per-survey AUROCs, per-kind AUROCs, KS) and writes every raw number to a JSON file.

Sizes. The defaults (300 galaxies, 12 epochs of the `cpu` preset, 10 surveys) were chosen from one
measured survey on the 2-core development machine shared with other jobs (load average ≈ 7):
300 galaxies, 15 epochs took simulate 48 s, ingest 13 s, train 124 s, score 5 s, evaluate 9 s
(≈ 200 s a survey, 33 min for 10). 12 epochs cut training to ≈ 100 s, and simulating + ingesting
the next survey while the current one trains (`--no-prefetch` turns it off; simulation mostly
waits for the disk) hides most of the rest, for ≈ 20–25 min in all: the recorded run (commit
06d0b18, load average 5–12, another training job alongside) took 1376 s (23 min). 300 galaxies is the survey
size issue #13 names; it leaves 6 anomalies at 2 %, so recall there moves in steps of 1/6.
The model's own default for 300 galaxies is 30 epochs (8000 galaxy presentations at most, 30
epochs at most: docs/model.md, "Epochs and survey size"): `--epochs default` leaves the choice to
`oddcube train`, the honest check of whether fewer epochs change the conclusions, and the right
setting for a larger `--galaxies` (12 epochs of 2500 training galaxies would teach the model the
anomalies).

Everything goes under --workdir (one directory per survey; the MAPS files are deleted after
ingest unless --keep-maps, since 300 galaxies take ≈ 800 MB); finished stages are reused on a
re-run (a `.done-STAGE` marker per stage), so an interrupted run resumes. Python 3 standard library
only.

    python3 scripts/calibration_bench.py --oddcube target/release/oddcube --workdir /tmp/calib \
        --json calibration_bench.json --markdown calibration_bench.md
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import json
import math
import os
import shutil
import subprocess
import sys
import threading
import time

LEVELS = (0.05, 0.1)
SCORE_COLUMNS = ("score", "pooled", "chi2", "global", "local", "recon", "knn_dist", "lof", "pca_chi2", "pca_recon")
TABLE_COLUMNS = ("score", "pooled", "chi2", "global", "local", "recon", "knn_dist", "pca_chi2", "pca_recon")
KINDS = ("blueberry", "dual_nucleus", "eelr", "seyfert")

_print_lock = threading.Lock()


def log(msg: str) -> None:
    with _print_lock:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def default_binary() -> str:
    target = os.environ.get("CARGO_TARGET_DIR")
    if target:
        return os.path.join(target, "release", "oddcube")
    return os.path.join("target", "release", "oddcube")


# ---------------------------------------------------------------------------------------------
# running the pipeline


def run_stage(survey_dir: str, stage: str, cmd: list[str], times: dict, ok_codes=(0,)) -> None:
    """Runs one stage unless its marker exists; logs to survey_dir/STAGE.log; records seconds."""
    marker = os.path.join(survey_dir, f".done-{stage}")
    if os.path.exists(marker):
        with open(marker) as f:
            times[stage] = json.load(f).get("seconds")
        return
    log(f"{os.path.basename(survey_dir)}: {stage}: {' '.join(cmd)}")
    t0 = time.monotonic()
    with open(os.path.join(survey_dir, f"{stage}.log"), "w") as out:
        rc = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=survey_dir)
    seconds = time.monotonic() - t0
    if rc not in ok_codes:
        raise RuntimeError(
            f"{stage} failed with exit code {rc} in {survey_dir} "
            f"(see {os.path.join(survey_dir, stage + '.log')}): {' '.join(cmd)}"
        )
    times[stage] = seconds
    with open(marker, "w") as f:
        json.dump({"seconds": seconds, "rc": rc, "cmd": cmd}, f)


def prepare(binary: str, survey_dir: str, n: int, fraction: float, seed: int, sim_jobs: int,
            keep_maps: bool, kinds: str | None = None) -> dict:
    os.makedirs(survey_dir, exist_ok=True)
    times: dict = {}
    run_stage(survey_dir, "simulate",
              [binary, "simulate", "--out", "survey", "--galaxies", str(n), "--anomaly-fraction",
               str(fraction), "--seed", str(seed), "--jobs", str(sim_jobs)]
              + (["--anomaly-kinds", kinds] if kinds else []), times)
    run_stage(survey_dir, "ingest", [binary, "ingest", "survey", "--out", "dataset"], times)
    if not keep_maps:
        for name in os.listdir(os.path.join(survey_dir, "survey")):
            if name.endswith(".fits.gz") or name.endswith(".fits"):
                os.remove(os.path.join(survey_dir, "survey", name))
    return times


def epochs_arg(text: str) -> int | None:
    """`--epochs`: a positive number, or `default` (None: `oddcube train` chooses)."""
    if text == "default":
        return None
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("epochs must be positive or 'default'")
    return value


def model_and_score(binary: str, survey_dir: str, seed: int, epochs: int | None, times: dict,
                    evaluate: bool, restarts: int | None = None) -> None:
    epoch_args = [] if epochs is None else ["--epochs", str(epochs)]
    restart_args = [] if restarts is None else ["--restarts", str(restarts)]
    run_stage(survey_dir, "train",
              [binary, "train", "--data", "dataset", "--out", "model", "--seed", str(seed),
               *epoch_args, *restart_args], times)
    run_stage(survey_dir, "score",
              [binary, "score", "--model", "model", "--data", "dataset", "--out", "results"], times)
    if evaluate:  # evaluate needs at least one anomaly (it refuses a pure-null survey)
        run_stage(survey_dir, "evaluate",
                  [binary, "evaluate", "--results", "results", "--truth", "survey/truth.csv"], times)


# ---------------------------------------------------------------------------------------------
# statistics


def to_float(s: str) -> float:
    try:
        return float(s)
    except (TypeError, ValueError):
        return float("nan")


def benjamini_hochberg(p: list[float]) -> list[float]:
    """BH q-values (R's p.adjust 'BH'); NaN p counts as 1."""
    n = len(p)
    p = [1.0 if math.isnan(x) else x for x in p]
    order = sorted(range(n), key=lambda i: p[i])
    q = [0.0] * n
    running = 1.0
    for rank0 in range(n - 1, -1, -1):
        i = order[rank0]
        running = min(running, p[i] * n / (rank0 + 1))
        q[i] = running
    return q


def auroc(scores: list[float], positive: list[bool]) -> float | None:
    """Mann–Whitney AUROC, ties one half; NaN scores rank lowest (as oddcube ranks them last)."""
    s = [(-math.inf if math.isnan(x) else x) for x in scores]
    pos = [x for x, y in zip(s, positive) if y]
    neg = [x for x, y in zip(s, positive) if not y]
    if not pos or not neg:
        return None
    # rank-sum with average ranks
    allv = sorted((v, i) for i, v in enumerate(s))
    ranks = [0.0] * len(s)
    i = 0
    while i < len(allv):
        j = i
        while j + 1 < len(allv) and allv[j + 1][0] == allv[i][0]:
            j += 1
        avg = (i + j) / 2 + 1
        for k in range(i, j + 1):
            ranks[allv[k][1]] = avg
        i = j + 1
    r_pos = sum(r for r, y in zip(ranks, positive) if y)
    n1, n0 = len(pos), len(neg)
    return (r_pos - n1 * (n1 + 1) / 2) / (n1 * n0)


def ks_uniform(p: list[float]) -> dict:
    """One-sample KS distance of p from U(0,1), the 5 % critical value and asymptotic p-value."""
    x = sorted(v for v in p if not math.isnan(v))
    n = len(x)
    if n == 0:
        return {"n": 0}
    plus = [((i + 1) / n - v, v) for i, v in enumerate(x)]   # empirical CDF above uniform
    minus = [(v - i / n, v) for i, v in enumerate(x)]        # empirical CDF below uniform
    d_plus, at_plus = max(plus)
    d_minus, at_minus = max(minus)
    d = max(d_plus, d_minus)
    # where the largest deviation sits: a surplus of p-values below a small p is what breaks
    # FDR control; a surplus in the body (e.g. ordinary scores less spread below the median
    # than the fitted scale says) does not.
    at = at_plus if d_plus >= d_minus else at_minus
    en = math.sqrt(n) + 0.12 + 0.11 / math.sqrt(n)
    lam = en * d
    q = 0.0
    for k in range(1, 101):
        q += 2 * (-1) ** (k - 1) * math.exp(-2 * k * k * lam * lam)
    q = min(1.0, max(0.0, q)) if lam > 0.2 else 1.0
    return {
        "n": n,
        "D": d,
        "D_plus": d_plus,
        "D_minus": d_minus,
        "D_at_p": at,
        "critical_5pct": 1.358 / en,
        "p_value": q,
        "reject_5pct": d > 1.358 / en,
        "fraction_p_below_0.05": sum(v < 0.05 for v in x) / n,
        "fraction_p_below_0.01": sum(v < 0.01 for v in x) / n,
    }


def analyse(survey_dir: str) -> dict:
    truth = {}
    with open(os.path.join(survey_dir, "survey", "truth.csv"), newline="") as f:
        for r in csv.DictReader(f):
            truth[r["plateifu"]] = r
    with open(os.path.join(survey_dir, "results", "catalog.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    with open(os.path.join(survey_dir, "model", "calibration.json")) as f:
        calib = json.load(f)
    training = set(calib.get("reference_plateifus", []))
    missing = [r["plateifu"] for r in rows if r["plateifu"] not in truth]
    if missing:
        raise RuntimeError(f"{survey_dir}: {len(missing)} catalogue galaxies not in truth.csv")
    is_anom = [truth[r["plateifu"]]["is_anomaly"].strip().lower() in ("1", "true") for r in rows]
    kinds = [truth[r["plateifu"]]["kind"] for r in rows]
    n_anom = sum(is_anom)
    pvals = [to_float(r["pvalue"]) for r in rows]
    qvals = benjamini_hochberg(pvals)
    catalogue_flag = [r["fdr_flag"].strip().lower() == "true" for r in rows]

    out: dict = {
        "n_galaxies": len(rows),
        "n_truth": len(truth),
        "n_anomalies": n_anom,
        "kind_counts": {k: kinds.count(k) for k in sorted(set(kinds))},
        "n_training": sum(r["plateifu"] in training for r in rows),
        "n_calibration": calib.get("n_calibration"),
        "null_fitted_on": calib.get("fitted_on"),
        "nan": {c: sum(math.isnan(to_float(r.get(c, "nan"))) for r in rows)
                for c in ("score", "pooled", "chi2", "global", "local", "recon", "knn_dist", "lof", "pvalue")},
        "fdr": {},
    }
    # BH re-run vs the catalogue's fdr_flag (score ran at the default --fdr 0.05)
    mine = [q <= 0.05 for q in qvals]
    out["bh_mismatch_at_0.05"] = sum(a != b for a, b in zip(mine, catalogue_flag))
    out["catalogue_flags_at_0.05"] = sum(catalogue_flag)
    for level in LEVELS:
        flags = [q <= level for q in qvals]
        n_flag = sum(flags)
        false = sum(f and not a for f, a in zip(flags, is_anom))
        true = n_flag - false
        flagged_kinds: dict = {}
        for f, k in zip(flags, kinds):
            if f:
                flagged_kinds[k] = flagged_kinds.get(k, 0) + 1
        out["fdr"][str(level)] = {
            "flagged": n_flag,
            "false": false,
            "true": true,
            "fdp": false / n_flag if n_flag else 0.0,
            "recall": true / n_anom if n_anom else None,
            "flagged_kinds": flagged_kinds,
            "flagged_training": sum(f and r["plateifu"] in training for f, r in zip(flags, rows)),
        }
    # AUROCs from evaluate
    auc: dict = {}
    eval_path = os.path.join(survey_dir, "results", "evaluation.json")
    if n_anom and os.path.exists(eval_path):
        with open(eval_path) as f:
            ev = json.load(f)
        for row in ev["evaluation"]["rows"]:
            auc.setdefault(row["score"], {})[row["split"]] = row["auroc"]
        out["pca_components"] = (ev.get("baseline") or {}).get("components")
        # evaluate's own flag report (newer binaries) and localization summary, when present
        if ev.get("flags"):
            out["evaluate_flags"] = ev["flags"]
        if ev.get("localization"):
            out["localization"] = ev["localization"]
        # cross-check of `score`'s overall AUROC (normal = is_anomaly false)
        mine_auc = auroc([to_float(r["score"]) for r in rows], is_anom)
        out["score_auroc_recomputed"] = mine_auc
    out["auroc"] = auc
    # p-value uniformity
    ordinary = [p for p, a in zip(pvals, is_anom) if not a]
    out["ks"] = {
        "ordinary": ks_uniform(ordinary),
        "ordinary_training": ks_uniform(
            [p for p, a, r in zip(pvals, is_anom, rows) if not a and r["plateifu"] in training]),
        "ordinary_validation": ks_uniform(
            [p for p, a, r in zip(pvals, is_anom, rows) if not a and r["plateifu"] not in training]),
    }
    return out


# ---------------------------------------------------------------------------------------------
# report


def fmt(x, nd=3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.{nd}f}"


def mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def markdown(report: dict) -> str:
    surveys = report["surveys"]
    fractions = report["settings"]["fractions"]
    lines = []
    over = (", over seeds " + ", ".join(str(s) for s in report["settings"]["seeds"])) if fractions else ""
    lines.append("Realized false-discovery proportion (FDP = false flags / flags, 0 when nothing is "
                 "flagged) and recall of Benjamini–Hochberg on `pvalue`" + over + ":")
    lines.append("")
    lines.append("| anomaly fraction | anomalies / survey | FDR 0.05: flagged (mean) | FDP mean | FDP worst | "
                 "recall mean | FDR 0.1: flagged (mean) | FDP mean | FDP worst | recall mean |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|")
    for f in fractions:
        ss = [s for s in surveys if s["fraction"] == f and "metrics" in s]
        if not ss:
            continue
        cells = [f"{f:g}", "/".join(str(s["metrics"]["n_anomalies"]) for s in ss)]
        for level in LEVELS:
            m = [s["metrics"]["fdr"][str(level)] for s in ss]
            cells += [fmt(mean([x["flagged"] for x in m]), 1), fmt(mean([x["fdp"] for x in m])),
                      fmt(max(x["fdp"] for x in m)), fmt(mean([x["recall"] for x in m]))]
        lines.append("| " + " | ".join(cells) + " |")
    nulls = [s for s in surveys if s["fraction"] == 0 and "metrics" in s]
    for s in nulls:
        m = s["metrics"]
        lines.append(
            f"| 0 (pure null, seed {s['seed']}) | 0 | {m['fdr']['0.05']['flagged']} | "
            f"{fmt(1.0 if m['fdr']['0.05']['flagged'] else 0.0)} | – | – | "
            f"{m['fdr']['0.1']['flagged']} | {fmt(1.0 if m['fdr']['0.1']['flagged'] else 0.0)} | – | – |")
    lines.append("")
    lines.append("Per survey (flags at 0.05 / 0.1: flagged, false, recall):")
    lines.append("")
    lines.append("| fraction | seed | anomalies | 0.05 flagged | false | recall | 0.1 flagged | false | recall | flagged kinds at 0.1 |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|")
    for s in surveys:
        if "metrics" not in s:
            continue
        m = s["metrics"]
        a, b = m["fdr"]["0.05"], m["fdr"]["0.1"]
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(b["flagged_kinds"].items()))
        lines.append(f"| {s['fraction']:g} | {s['seed']} | {m['n_anomalies']} | {a['flagged']} | {a['false']} | "
                     f"{fmt(a['recall'])} | {b['flagged']} | {b['false']} | {fmt(b['recall'])} | {kinds} |")
    lines.append("")
    lines.append("AUROC, all planted anomalies against the ordinary galaxies (star-forming and retired):")
    lines.append("")
    lines.append("| fraction | seed | " + " | ".join(f"`{c}`" for c in TABLE_COLUMNS) + " |")
    lines.append("|---|---|" + "---|" * len(TABLE_COLUMNS))
    for s in surveys:
        if "metrics" not in s or not s["metrics"]["auroc"]:
            continue
        a = s["metrics"]["auroc"]
        lines.append(f"| {s['fraction']:g} | {s['seed']} | "
                     + " | ".join(fmt(a.get(c, {}).get("overall")) for c in TABLE_COLUMNS) + " |")
    anomalous = [s for s in surveys if "metrics" in s and s["metrics"]["auroc"]]
    if anomalous:
        lines.append("| **mean** | | " + " | ".join(
            fmt(mean([s["metrics"]["auroc"].get(c, {}).get("overall") for s in anomalous]))
            for c in TABLE_COLUMNS) + " |")
        lines.append("")
        lines.append(f"AUROC per kind: mean over the {len(anomalous)} surveys (lowest in brackets):")
        lines.append("")
        lines.append("| kind | " + " | ".join(f"`{c}`" for c in TABLE_COLUMNS) + " |")
        lines.append("|---|" + "---|" * len(TABLE_COLUMNS))
        present = sorted({k for s in anomalous for c in s["metrics"]["auroc"].values() for k in c
                          if k not in ("overall", "normal")})
        for k in [k for k in KINDS if k in present] + [k for k in present if k not in KINDS]:
            cells = []
            for c in TABLE_COLUMNS:
                v = [s["metrics"]["auroc"].get(c, {}).get(k) for s in anomalous]
                v = [x for x in v if x is not None]
                cells.append(f"{fmt(mean(v))} ({fmt(min(v))})" if v else "–")
            lines.append(f"| {k} | " + " | ".join(cells) + " |")
        lines.append("")
        lines.append("`score` minus `pca_chi2` AUROC per survey (overall): " + ", ".join(
            f"{s['fraction']:g}/s{s['seed']} {s['metrics']['auroc']['score']['overall'] - s['metrics']['auroc']['pca_chi2']['overall']:+.3f}"
            for s in anomalous if "pca_chi2" in s["metrics"]["auroc"]))
    loc = [s for s in surveys if "metrics" in s and s["metrics"].get("localization")]
    if loc:
        lines.append("")
        lines.append("Localization (evaluate: mean pixel AUROC of the anomaly map inside vs outside the truth "
                     "region / fraction of map peaks inside it), per survey: " + ", ".join(
                         f"{s['fraction']:g}/s{s['seed']} {fmt(s['metrics']['localization']['overall']['mean_pixel_auroc'])}"
                         f" / {fmt(s['metrics']['localization']['overall']['peak_inside'], 2)}" for s in loc))
    lines.append("")
    lines.append("Uniformity of the ordinary galaxies' p-values (one-sample KS against U(0,1); D+: "
                 "empirical CDF above the uniform one, D−: below; 'at p': where the largest gap sits; "
                 "the last two columns are the fractions of p-values below 0.05 and 0.01, nominally "
                 "0.05 and 0.01):")
    lines.append("")
    lines.append("| survey | galaxies | n | KS D | D+ | D− | at p | 5 % critical | KS p | p < 0.05 | p < 0.01 |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for s in surveys:
        if "metrics" not in s:
            continue
        name = f"fraction {s['fraction']:g}, seed {s['seed']}"
        parts = ("ordinary", "ordinary_training", "ordinary_validation") if s["fraction"] == 0 else ("ordinary",)
        for part in parts:
            k = s["metrics"]["ks"][part]
            if not k.get("n"):
                continue
            label = {"ordinary": "all ordinary", "ordinary_training": "training",
                     "ordinary_validation": "validation"}[part]
            lines.append(f"| {name} | {label} | {k['n']} | {fmt(k['D'])} | {fmt(k['D_plus'])} | "
                         f"{fmt(k['D_minus'])} | {fmt(k['D_at_p'], 2)} | {fmt(k['critical_5pct'])} | {fmt(k['p_value'], 4)} | "
                         f"{fmt(k['fraction_p_below_0.05'])} | {fmt(k['fraction_p_below_0.01'])} |")
    lines.append("")
    lines.append("Stage times (s):")
    lines.append("")
    stages = ("simulate", "ingest", "train", "score", "evaluate")
    lines.append("| survey | " + " | ".join(stages) + " |")
    lines.append("|---|" + "---|" * len(stages))
    for s in surveys:
        lines.append(f"| {s['fraction']:g}/seed {s['seed']} | "
                     + " | ".join(fmt(s.get("times", {}).get(st), 0) for st in stages) + " |")
    lines.append("")
    lines.append(f"Total wall time {report['wall_seconds']:.0f} s.")
    problems = []
    for s in surveys:
        if "error" in s:
            problems.append(f"- {s['fraction']:g}/seed {s['seed']}: {s['error']}")
        elif "metrics" in s:
            m = s["metrics"]
            nan = {k: v for k, v in m["nan"].items() if v}
            if nan:
                problems.append(f"- {s['fraction']:g}/seed {s['seed']}: NaN values {nan}")
            ef = m.get("evaluate_flags")
            if ef and (ef.get("flagged") != m["fdr"]["0.05"]["flagged"]
                       or abs(ef.get("false_discovery_proportion", 0) - m["fdr"]["0.05"]["fdp"]) > 1e-9):
                problems.append(f"- {s['fraction']:g}/seed {s['seed']}: evaluate's flag report {ef} differs "
                                f"from the one computed here")
            if m["bh_mismatch_at_0.05"]:
                problems.append(f"- {s['fraction']:g}/seed {s['seed']}: BH re-run on `pvalue` disagrees with "
                                f"`fdr_flag` on {m['bh_mismatch_at_0.05']} galaxies")
            sa, ra = m.get("score_auroc_recomputed"), m["auroc"].get("score", {}).get("overall")
            if sa is not None and ra is not None and abs(sa - ra) > 1e-6:
                problems.append(f"- {s['fraction']:g}/seed {s['seed']}: evaluate's `score` AUROC {ra:.4f} "
                                f"≠ recomputed {sa:.4f}")
    if problems:
        lines.append("")
        lines.append("Problems seen:")
        lines.extend(problems)
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--oddcube", default=default_binary(),
                    help="oddcube binary (default $CARGO_TARGET_DIR/release/oddcube or target/release/oddcube)")
    ap.add_argument("--workdir", default="calibration-bench", help="where the surveys go (default ./calibration-bench)")
    ap.add_argument("--galaxies", type=int, default=300)
    ap.add_argument("--epochs", type=epochs_arg, default=12,
                    help="training epochs, or 'default' for oddcube train's own choice (default 12)")
    ap.add_argument("--fractions", default="0.02,0.1,0.3")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--null-seeds", default="1", help="seeds of pure-null surveys (empty: none)")
    ap.add_argument("--restarts", type=int, default=None,
                    help="train --restarts (default: train's own, 3; the tables in docs/scoring.md "
                         "recorded before restarts existed are single runs, --restarts 1)")
    ap.add_argument("--anomaly-kinds", default=None,
                    help="simulate --anomaly-kinds: the anomaly kinds to plant (default: simulate's mix; "
                         "outflow,ring,dust_lane are the kinds held out of it)")
    ap.add_argument("--sim-jobs", type=int, default=2, help="simulate --jobs")
    ap.add_argument("--no-prefetch", action="store_true",
                    help="do not simulate/ingest the next survey while the current one trains")
    ap.add_argument("--keep-maps", action="store_true", help="keep the simulated MAPS files")
    ap.add_argument("--json", default=None, help="raw numbers (default WORKDIR/calibration_bench.json)")
    ap.add_argument("--markdown", default=None, help="tables (default WORKDIR/calibration_bench.md)")
    args = ap.parse_args()

    binary = os.path.abspath(args.oddcube)
    if not os.access(binary, os.X_OK):
        ap.error(f"no executable oddcube at {binary} (build with cargo build --release or pass --oddcube)")
    fractions = [float(x) for x in args.fractions.split(",") if x]
    seeds = [int(x) for x in args.seeds.split(",") if x]
    null_seeds = [int(x) for x in args.null_seeds.split(",") if x]
    workdir = os.path.abspath(args.workdir)
    os.makedirs(workdir, exist_ok=True)
    json_path = args.json or os.path.join(workdir, "calibration_bench.json")
    md_path = args.markdown or os.path.join(workdir, "calibration_bench.md")

    plan = [(f, s) for f in fractions for s in seeds] + [(0.0, s) for s in null_seeds]
    surveys = [{"fraction": f, "seed": s, "dir": os.path.join(workdir, f"f{f:g}-s{s}")} for f, s in plan]
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip()
    t_start = time.monotonic()
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    epochs = "the default epochs" if args.epochs is None else f"{args.epochs} epochs"
    log(f"{len(surveys)} surveys of {args.galaxies} galaxies, {epochs}, binary {binary} ({version})")

    def prep(sv):
        return prepare(binary, sv["dir"], args.galaxies, sv["fraction"], sv["seed"], args.sim_jobs,
                       args.keep_maps, args.anomaly_kinds)

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    futures = []
    if not args.no_prefetch:
        futures = [pool.submit(prep, sv) for sv in surveys]
    for i, sv in enumerate(surveys):
        try:
            times = futures[i].result() if futures else prep(sv)
            model_and_score(binary, sv["dir"], sv["seed"], args.epochs, times, sv["fraction"] > 0,
                            args.restarts)
            sv["times"] = times
            sv["metrics"] = analyse(sv["dir"])
            m = sv["metrics"]
            log(f"f{sv['fraction']:g}-s{sv['seed']}: flagged {m['fdr']['0.05']['flagged']} "
                f"(FDP {m['fdr']['0.05']['fdp']:.2f}) at 0.05, {m['fdr']['0.1']['flagged']} "
                f"(FDP {m['fdr']['0.1']['fdp']:.2f}) at 0.1; score AUROC "
                f"{m['auroc'].get('score', {}).get('overall')}")
        except Exception as e:  # keep going: report what finished
            sv["error"] = str(e)
            log(f"ERROR {e}")
        report = {
            "settings": {"galaxies": args.galaxies, "epochs": args.epochs, "fractions": fractions,
                         "anomaly_kinds": args.anomaly_kinds, "restarts": args.restarts,
                         "seeds": seeds, "null_seeds": null_seeds, "levels": list(LEVELS),
                         "binary": binary, "version": version, "prefetch": not args.no_prefetch,
                         "started_utc": started, "cpu_count": os.cpu_count(),
                         "loadavg_at_end": os.getloadavg()},
            "surveys": surveys,
            "wall_seconds": time.monotonic() - t_start,
        }
        with open(json_path, "w") as f:  # rewritten after each survey: partial results survive
            json.dump(report, f, indent=1)
    pool.shutdown()
    md = markdown(report)
    with open(md_path, "w") as f:
        f.write(md)
    print(md)
    log(f"wrote {json_path} and {md_path}")
    return 0 if all("metrics" in s for s in surveys) else 1


if __name__ == "__main__":
    sys.exit(main())
