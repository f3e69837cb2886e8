#!/usr/bin/env python3
"""Benchmarks of the Python package against astropy and against the CLI.

1. Reading DR17 MAPS files: ``oddcube.read_maps`` (flux, ivar and mask of the 19 DR17 lines
   as numpy) against astropy reading the same three HDUs and selecting the same channels.
2. Scoring: ``Model.score`` from Python against ``oddcube score`` on the same dataset and
   model, both writing a RESULTS directory (and Python also without writing).

Runs are interleaved (A, B, A, B, …) so that load changes hit both sides alike; the median of
the repetitions is reported. Needs numpy, astropy, the ``oddcube`` package and the CLI
(``--oddcube`` or ``target/release/oddcube``).

    python scripts/python_bench.py --work /tmp/pybench [--files 20] [--galaxies 200] [--reps 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np
from astropy.io import fits

import oddcube


def astropy_read(path: Path, lines: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What read_maps returns, the astropy way: channel names from the C01… cards."""
    with fits.open(path) as hdus:
        header = hdus["EMLINE_GFLUX"].header
        names = [header[f"C{i:02d}"].strip() for i in range(1, header["NAXIS3"] + 1)]
        index = [names.index(line) for line in lines]
        return (
            np.asarray(hdus["EMLINE_GFLUX"].data[index], dtype=np.float32),
            np.asarray(hdus["EMLINE_GFLUX_IVAR"].data[index], dtype=np.float32),
            np.asarray(hdus["EMLINE_GFLUX_MASK"].data[index], dtype=np.int32),
        )


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def report(times: dict[str, list[float]], count: int, unit: str) -> None:
    """Prints each method's median time and throughput (`count` items of `unit` per run)."""
    width = max(len(name) for name in times) + 2
    for name, runs in times.items():
        t = statistics.median(runs)
        print(f"  {name:<{width}} {count / t:7.1f} {unit}/s  ({t:.2f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--galaxies", type=int, default=200)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--oddcube", type=Path, default=Path(os.environ.get("CARGO_TARGET_DIR", "target")) / "release" / "oddcube")
    args = parser.parse_args()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)

    # 1. Reading MAPS files.
    files = oddcube.simulate(work / "maps", galaxies=args.files, seed=7)["files"]
    lines = oddcube.read_maps(files[0]).lines
    for f in files:  # the same values both ways, and a warm page cache for both
        ours, theirs = oddcube.read_maps(f), astropy_read(f, lines)
        assert np.array_equal(ours.flux, theirs[0], equal_nan=True) and np.array_equal(ours.mask, theirs[2])
    read = {"oddcube.read_maps": [], "astropy": []}
    for _ in range(args.reps):
        read["oddcube.read_maps"].append(timed(lambda: [oddcube.read_maps(f) for f in files]))
        read["astropy"].append(timed(lambda: [astropy_read(f, lines) for f in files]))
    megabytes = sum(f.stat().st_size for f in files) / 1e6
    print(f"reading {len(files)} DR17-format MAPS files ({megabytes:.1f} MB gzipped), median of {args.reps}:")
    report(read, len(files), "files")
    ratio = statistics.median(read["astropy"]) / statistics.median(read["oddcube.read_maps"])
    print(f"  read_maps is {ratio:.1f}× astropy")

    # 2. Scoring throughput.
    survey = work / "survey"
    if not (work / "model" / "calibration.json").exists():
        oddcube.simulate(survey, galaxies=args.galaxies, seed=8, anomaly_fraction=0.08)
        dataset = oddcube.ingest(survey, work / "dataset")
        oddcube.train(dataset, work / "model", epochs=1, seed=8)
    dataset = oddcube.Dataset(work / "dataset")
    model = oddcube.Model(work / "model")
    n = len(dataset)
    cli = [str(args.oddcube), "score", "--model", str(work / "model"), "--data", str(work / "dataset")]
    score = {"oddcube score (CLI)": [], "Model.score(out=…)": [], "Model.score()": []}
    for rep in range(args.reps):
        score["oddcube score (CLI)"].append(
            timed(lambda: subprocess.run(cli + ["--out", str(work / f"cli-{rep}")], check=True, capture_output=True))
        )
        score["Model.score(out=…)"].append(timed(lambda: model.score(dataset, out=work / f"py-{rep}")))
        score["Model.score()"].append(timed(lambda: model.score(dataset)))
    print(f"scoring {n} galaxies (cpu preset, 1 epoch), median of {args.reps}:")
    report(score, n, "galaxies")
    ratio = statistics.median(score["Model.score(out=…)"]) / statistics.median(score["oddcube score (CLI)"])
    print(f"  Python (writing the same RESULTS) takes {ratio:.2f}× the CLI's time")


if __name__ == "__main__":
    main()
