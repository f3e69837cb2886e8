#!/usr/bin/env python3
"""Would averaging `train`'s restarts beat keeping one? (docs/model.md, "Restarts").

This offline measurement is what made the mean of the runs `score`'s default (the restart
ensemble, crates/oddcube-score/src/ensemble.rs); it stays to compare members and pairs of runs
from single-run catalogues.

Reads the catalogues of several single runs on one simulated survey and the survey's truth, and
prints, for every run, for the mean of all runs' `score` columns and for every pair of runs:
the AUROC of the score overall and per planted kind, and the flags at a nominal false-discovery
rate with how many are ordinary galaxies, the realized false-discovery proportion and the recall.

The ensemble is given p-values the way `oddcube score` gives them from a stored null fitted on the
model's whole dataset (here: the survey, which is that dataset): centre = median, scale =
`tail_sigma` (crates/oddcube-score/src/robust.rs), p from the empirical body below the 90th
percentile (or z = 1.28) and the normal tail above it (`Calibration::pvalue`), then
Benjamini–Hochberg. As a check of that mimicry, each single run's own `score` goes through the
same code and its flags are compared with its catalogue's `fdr_flag` (the script stops if they
differ).

The runs:

    oddcube simulate --out survey --galaxies 3000 --anomaly-fraction 0.05 --seed 1
    oddcube ingest survey --out dataset
    for S in 1 2 3; do
      oddcube train --data dataset --out model$S --seed $S --restarts 1
      oddcube score --model model$S --data dataset --out results$S
    done
    python3 scripts/restart_ensemble.py --truth survey/truth.csv results1 results2 results3

Python 3 standard library only.
"""

from __future__ import annotations

import argparse
import bisect
import csv
import itertools
import math
import os
import sys

MAD_TO_SIGMA = 1.482602218505602
Z_90 = 1.2815515655446005
Z_95 = 1.6448536269514722
# robust.rs: values above median + DECILE_CLIP upper-half σ are left out of the tail quantiles.
DECILE_CLIP = 4.0
# calibration.rs: the empirical body of the null ends at this quantile (or at z₉₀).
BODY_QUANTILE = 0.9
SCORE_TIE = 1e-6


def read_csv(path: str) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def as_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def median(values: list[float]) -> float:
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def quantile_of_sorted(s: list[float], q: float) -> float:
    last = len(s) - 1
    position = min(max(q * last, 0.0), float(last))
    below = int(math.floor(position))
    above = min(below + 1, last)
    return s[below] + (position - below) * (s[above] - s[below])


def upper_sigma(values: list[float]) -> float:
    centre = median(values)
    above = [v - centre for v in values if v > centre]
    return MAD_TO_SIGMA * median(above)


def tail_sigma_terms(values: list[float]) -> tuple[float, float, float, float]:
    """(median, upper-half σ, 90th- and 95th-percentile σ after the clip; NaN where too few)."""
    finite = sorted(v for v in values if math.isfinite(v))
    quartile = upper_sigma(finite)
    centre = median(finite)
    kept = [v for v in finite if v <= centre + DECILE_CLIP * quartile]
    percentile_terms = [
        (quantile_of_sorted(kept, q) - centre) / z_q if len(kept) >= needed else math.nan
        for q, z_q, needed in [(0.90, Z_90, 10), (0.95, Z_95, 100)]
    ]
    return (centre, quartile, *percentile_terms)


def tail_sigma(values: list[float]) -> float:
    _, quartile, q90, q95 = tail_sigma_terms(values)
    return max([quartile] + [t for t in (q90, q95) if math.isfinite(t)])


def normal_upper_tail(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def pvalues(scores: list[float]) -> list[float]:
    """p of every score against the null of the same scores (they are the calibration galaxies)."""
    null = sorted(s for s in scores if math.isfinite(s))
    body_end = min(quantile_of_sorted(null, BODY_QUANTILE), Z_90)
    out = []
    for s in scores:
        if not math.isfinite(s):
            out.append(1.0)
        elif s >= body_end:
            out.append(normal_upper_tail(s))
        else:
            at_least = len(null) - bisect.bisect_left(null, s - SCORE_TIE)
            out.append(max((1 + at_least) / (len(null) + 1), normal_upper_tail(body_end)))
    return out


def benjamini_hochberg(p: list[float], alpha: float) -> list[bool]:
    order = sorted(range(len(p)), key=lambda i: p[i])
    cut = 0
    for rank, i in enumerate(order, 1):
        if p[i] <= alpha * rank / len(p):
            cut = rank
    flagged = set(order[:cut])
    return [i in flagged for i in range(len(p))]


def auroc(positives: list[float], negatives: list[float]) -> float:
    """Mann–Whitney AUROC with ties counted half; NaN scores rank lowest."""
    key = lambda v: -math.inf if math.isnan(v) else v  # noqa: E731
    values = sorted([(key(v), 1) for v in positives] + [(key(v), 0) for v in negatives])
    rank_sum, i = 0.0, 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1][0] == values[i][0]:
            j += 1
        mid_rank = (i + j) / 2 + 1
        rank_sum += mid_rank * sum(label for _, label in values[i : j + 1])
        i = j + 1
    n_pos, n_neg = len(positives), len(negatives)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def restandardised(scores: list[float]) -> list[float]:
    centre = median([s for s in scores if math.isfinite(s)])
    scale = tail_sigma(scores)
    return [(s - centre) / scale for s in scores]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="+", help="RESULTS directories of single runs on one survey")
    ap.add_argument("--truth", required=True, help="the survey's truth.csv")
    ap.add_argument("--fdr", type=float, default=0.05, help="nominal false-discovery rate")
    args = ap.parse_args()
    if len(args.results) < 2:
        ap.error("give at least two RESULTS directories")

    truth = {row["plateifu"]: row for row in read_csv(args.truth)}
    catalogs = [read_csv(os.path.join(d, "catalog.csv")) for d in args.results]
    ids = [row["plateifu"] for row in catalogs[0]]
    for d, cat in zip(args.results, catalogs):
        if [row["plateifu"] for row in cat] != ids:
            sys.exit(f"{d}/catalog.csv: rows differ from {args.results[0]}'s: not the same survey")
    missing = [i for i in ids if i not in truth]
    if missing:
        sys.exit(f"{args.truth}: no truth for {len(missing)} galaxies (first {missing[0]})")
    is_anomaly = [truth[i]["is_anomaly"].strip().lower() in ("true", "1") for i in ids]
    kinds = [truth[i]["kind"] for i in ids]
    anomaly_kinds = sorted({k for k, a in zip(kinds, is_anomaly) if a})

    def row(name: str, score: list[float], flags: list[bool]) -> str:
        negatives = [s for s, a in zip(score, is_anomaly) if not a]
        cells = [name, f"{auroc([s for s, a in zip(score, is_anomaly) if a], negatives):.3f}"]
        for kind in anomaly_kinds:
            cells.append(f"{auroc([s for s, k in zip(score, kinds) if k == kind], negatives):.3f}")
        flagged = [i for i, f in enumerate(flags) if f]
        ordinary = sum(1 for i in flagged if not is_anomaly[i])
        cells += [
            f"{len(flagged)} ({ordinary})",
            f"{ordinary / max(len(flagged), 1):.3f}",
            f"{(len(flagged) - ordinary) / max(sum(is_anomaly), 1):.2f}",
        ]
        return "| " + " | ".join(cells) + " |"

    header = ["scores", "AUROC"] + anomaly_kinds
    header += [f"flags at {args.fdr} (ordinary)", "FDP", "recall"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    runs = []
    for d, cat in zip(args.results, catalogs):
        score = [as_float(r["score"]) for r in cat]
        flags = benjamini_hochberg(pvalues(score), args.fdr)
        stored = [r["fdr_flag"].strip().lower() == "true" for r in cat]
        if abs(args.fdr - 0.05) < 1e-12 and flags != stored:
            sys.exit(f"{d}: the mimicked null flags {sum(flags)}, the catalogue {sum(stored)}")
        runs.append(score)
        print(row(os.path.basename(os.path.normpath(d)), score, flags))

    def ensemble(members: tuple[int, ...]) -> list[float]:
        mean = [sum(runs[m][i] for m in members) / len(members) for i in range(len(ids))]
        return restandardised(mean)

    every = tuple(range(len(runs)))
    score = ensemble(every)
    print(row("mean of all", score, benjamini_hochberg(pvalues(score), args.fdr)))
    if len(runs) > 2:
        for pair in itertools.combinations(every, 2):
            score = ensemble(pair)
            names = [os.path.basename(os.path.normpath(args.results[m])) for m in pair]
            name = "mean of " + " + ".join(names)
            print(row(name, score, benjamini_hochberg(pvalues(score), args.fdr)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
