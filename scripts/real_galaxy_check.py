#!/usr/bin/env python3
"""Real-galaxy check of issue #13: where does the real, ordinary star-forming disk 7815-3702 rank?

The real DR15-era MAPS file `tests/data/real/manga-7815-3702-MAPS-HYB10-GAU-MILESHC.fits.gz`
(22 Gaussian-fit channels) is ingested with `--lines dr15` together with a simulated survey,
a model is trained on that dataset, the dataset is scored, and the script reports the percentile
of 7815-3702 among the simulated ordinary galaxies (truth kind `star_forming` or `retired`) on
`score`, `pooled`, `chi2`, `global`, `local`, `recon` (and `knn_dist`, `lof`, `pvalue`), plus the same
against the star-forming galaxies alone (the real galaxy is star-forming; the faint retired
galaxies have low χ², which lifts any star-forming galaxy's percentile among "ordinary").

The simulator writes only the DR17 layout (35 channels; `oddcube simulate` has no layout
option). That is no obstacle: the `dr15` line preset (19 lines: the DR15 list cut to 3800–8000 Å)
names channels that DR15 and DR17 files both have, so `ingest --lines dr15` reads the simulated
DR17 files and the real DR15 file into the same 19-line cubes. What differs is what the DAP put in
those channels: DR17 (and the simulator) tie NeIII-3968, OIII-4960, OI-6365 and NII-6549 to
their partners at fixed ratios; the DR15 file fits NeIII-3968 freely (49 % exact zeros).

    oddcube simulate --out survey --galaxies 300 --seed 1
    oddcube ingest survey tests/data/real/manga-7815-3702-MAPS-HYB10-GAU-MILESHC.fits.gz --lines dr15 --out dataset
    oddcube train --data dataset --out model --seed 1            (the default: 30 epochs for ~256 training galaxies)
    oddcube score --model model --data dataset --out results

Percentile = 100 × (#{ordinary with value < real} + ½ #{equal}) / #ordinary. Python 3 standard
library only; it drives the `oddcube` binary (`--oddcube`, default
$CARGO_TARGET_DIR/release/oddcube or target/release/oddcube). Finished stages are reused
(`.done-STAGE` markers in --workdir).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import time

REAL_DEFAULT = os.path.join("tests", "data", "real", "manga-7815-3702-MAPS-HYB10-GAU-MILESHC.fits.gz")
COLUMNS = ("score", "pooled", "chi2", "global", "local", "recon", "knn_dist", "lof")


def default_binary() -> str:
    target = os.environ.get("CARGO_TARGET_DIR")
    return os.path.join(target or "target", "release", "oddcube")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def stage(workdir: str, name: str, cmd: list[str], times: dict, ok=(0,)) -> None:
    marker = os.path.join(workdir, f".done-{name}")
    if os.path.exists(marker):
        with open(marker) as f:
            times[name] = json.load(f)["seconds"]
        return
    log(f"{name}: {' '.join(cmd)}")
    t0 = time.monotonic()
    with open(os.path.join(workdir, f"{name}.log"), "w") as out:
        rc = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=workdir)
    if rc not in ok:
        raise SystemExit(f"{name} failed (exit {rc}); see {os.path.join(workdir, name + '.log')}")
    times[name] = time.monotonic() - t0
    with open(marker, "w") as f:
        json.dump({"seconds": times[name], "rc": rc, "cmd": cmd}, f)


def to_float(s) -> float:
    try:
        return float(s)
    except (TypeError, ValueError):
        return float("nan")


def percentile(value: float, population: list[float]) -> float | None:
    pop = [v for v in population if not math.isnan(v)]
    if math.isnan(value) or not pop:
        return None
    below = sum(v < value for v in pop)
    equal = sum(v == value for v in pop)
    return 100.0 * (below + 0.5 * equal) / len(pop)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--oddcube", default=default_binary())
    ap.add_argument("--real", default=REAL_DEFAULT, help="the real MAPS file (default: %(default)s)")
    ap.add_argument("--plateifu", default="7815-3702", help="its plate-ifu")
    ap.add_argument("--workdir", default="real-galaxy-check")
    ap.add_argument("--galaxies", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--anomaly-fraction", type=float, default=None,
                    help="simulate's --anomaly-fraction (default: simulate's default, 5 %%)")
    ap.add_argument("--epochs", type=int, default=None, help="train --epochs (default: the model's, 30)")
    ap.add_argument("--json", default=None, help="numbers (default WORKDIR/real_galaxy_check.json)")
    args = ap.parse_args()

    binary = os.path.abspath(args.oddcube)
    real = os.path.abspath(args.real)
    if not os.access(binary, os.X_OK):
        ap.error(f"no executable oddcube at {binary}")
    if not os.path.exists(real):
        ap.error(f"no file {real}")
    workdir = os.path.abspath(args.workdir)
    os.makedirs(workdir, exist_ok=True)
    times: dict = {}
    t0 = time.monotonic()

    sim = [binary, "simulate", "--out", "survey", "--galaxies", str(args.galaxies), "--seed", str(args.seed)]
    if args.anomaly_fraction is not None:
        sim += ["--anomaly-fraction", str(args.anomaly_fraction)]
    stage(workdir, "simulate", sim, times)
    stage(workdir, "ingest", [binary, "ingest", "survey", real, "--lines", "dr15", "--out", "dataset"], times)
    train = [binary, "train", "--data", "dataset", "--out", "model", "--seed", str(args.seed)]
    if args.epochs is not None:
        train += ["--epochs", str(args.epochs)]
    stage(workdir, "train", train, times)
    stage(workdir, "score", [binary, "score", "--model", "model", "--data", "dataset", "--out", "results"], times)

    with open(os.path.join(workdir, "survey", "truth.csv"), newline="") as f:
        truth = {r["plateifu"]: r for r in csv.DictReader(f)}
    with open(os.path.join(workdir, "results", "catalog.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    with open(os.path.join(workdir, "model", "calibration.json")) as f:
        calib = json.load(f)
    with open(os.path.join(workdir, "dataset", "manifest.json")) as f:
        manifest = json.load(f)
    real_rows = [r for r in rows if r["plateifu"] == args.plateifu]
    if len(real_rows) != 1:
        raise SystemExit(f"{args.plateifu} appears {len(real_rows)} times in the catalogue "
                         f"(skipped at ingest? see {workdir}/dataset/skipped.csv)")
    me = real_rows[0]
    ordinary = [r for r in rows if r["plateifu"] in truth and truth[r["plateifu"]]["kind"] in ("star_forming", "retired")]
    sf = [r for r in ordinary if truth[r["plateifu"]]["kind"] == "star_forming"]
    result = {
        "plateifu": args.plateifu,
        "real_file": real,
        "binary": binary,
        "version": subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip(),
        "settings": {"galaxies": args.galaxies, "seed": args.seed, "anomaly_fraction": args.anomaly_fraction,
                     "epochs": args.epochs, "lines": "dr15"},
        "dataset_lines": manifest.get("lines"),
        "n_catalogue": len(rows),
        "n_ordinary": len(ordinary),
        "n_star_forming": len(sf),
        "real_in_training_set": args.plateifu in set(calib.get("reference_plateifus", [])),
        "null_fitted_on": calib.get("fitted_on"),
        "n_calibration": calib.get("n_calibration"),
        "real": {c: to_float(me.get(c)) for c in COLUMNS + ("pvalue", "qvalue", "rank", "n_pixels", "depth")},
        "real_fdr_flag": me.get("fdr_flag"),
        "real_region_line": me.get("region_line"),
        "percentile_among_ordinary": {},
        "percentile_among_star_forming": {},
        "ordinary_median": {},
        "star_forming_median": {},
        "times": times,
    }
    for c in COLUMNS:
        v = to_float(me.get(c))
        o = [to_float(r.get(c)) for r in ordinary]
        s = [to_float(r.get(c)) for r in sf]
        result["percentile_among_ordinary"][c] = percentile(v, o)
        result["percentile_among_star_forming"][c] = percentile(v, s)
        result["ordinary_median"][c] = sorted(o)[len(o) // 2] if o else None
        result["star_forming_median"][c] = sorted(s)[len(s) // 2] if s else None
    result["wall_seconds"] = time.monotonic() - t0
    json_path = args.json or os.path.join(workdir, "real_galaxy_check.json")
    with open(json_path, "w") as f:
        json.dump(result, f, indent=1)

    def fmt(x, nd=1):
        return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"

    print(f"{args.plateifu} ({'training' if result['real_in_training_set'] else 'validation'} galaxy) in a "
          f"{args.galaxies}-galaxy simulated survey (seed {args.seed}), `--lines dr15`; "
          f"{len(ordinary)} ordinary simulated galaxies ({len(sf)} star-forming):")
    print()
    print("| column | 7815-3702 | median ordinary | median star-forming | percentile among ordinary | percentile among star-forming |")
    print("|---|---|---|---|---|---|")
    for c in COLUMNS:
        print(f"| `{c}` | {result['real'][c]:.4g} | {result['ordinary_median'][c]:.4g} | "
              f"{result['star_forming_median'][c]:.4g} | {fmt(result['percentile_among_ordinary'][c])} | "
              f"{fmt(result['percentile_among_star_forming'][c])} |")
    print()
    print(f"p = {result['real']['pvalue']:.4g}, q = {result['real']['qvalue']:.4g}, fdr_flag = "
          f"{result['real_fdr_flag']}, rank {int(result['real']['rank'])} of {len(rows)}; region line "
          f"{result['real_region_line']}")
    print("times (s): " + ", ".join(f"{k} {v:.0f}" for k, v in times.items()))
    log(f"wrote {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
