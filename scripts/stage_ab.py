#!/usr/bin/env python3
"""Times the pipeline's data stages under two oddcube binaries, run alternately, and checks that
they produce the same outputs. Prints numbers only; compare the two columns of one run, never
numbers from different runs or machines (load moves a stage by ±20 % here).

Each round runs, for binary A then B (B then A on odd rounds, so drift in the machine's load
falls on both): `simulate` (--galaxies, --seed), `ingest` of that survey, with `--train-epochs N`
a `train` of that dataset (N epochs, one run, --seed), and with `--evaluate RESULTS DATA TRUTH` an
`evaluate` of a copy of RESULTS. Wall time and the child's user and system CPU are recorded
(`os.wait4`). `--env-a`/`--env-b KEY=VALUE` (repeatable) set environment variables for one side
only, so one binary can be compared with itself under two settings (pass it twice). Checks, once
both have run:

- the simulated MAPS files inflate to the same bytes, except CHECKSUM/DATASUM cards (their
  comments carry the time of writing);
- the two datasets' `cubes.safetensors` are identical;
- the two trained models' `best.safetensors` and `calibration.json` are identical;
- `evaluate` printed the same metric table (its lines that start with a score name).

    python3 scripts/stage_ab.py OLD_BIN NEW_BIN --workdir /tmp/ab [--galaxies 400] [--seed 42]
        [--rounds 2] [--train-epochs N] [--evaluate RESULTS DATA TRUTH]
        [--env-a KEY=VALUE ...] [--env-b KEY=VALUE ...]

Needs only the Python standard library. The work directory grows by two surveys (about 1.1 GB
each for 400 galaxies) and two datasets.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def run(cmd: list[str], log: Path, env: dict[str, str]) -> tuple[float, float, float]:
    """Runs `cmd` with `env`, its output into `log`; returns (wall, user, system) seconds; exits on
    error."""
    start = time.perf_counter()
    with open(log, "w") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(cmd)} failed; its output is in {log}")
    return wall, usage.ru_utime, usage.ru_stime


def fits_cards_differ(a: bytes, b: bytes) -> bool:
    """True when two FITS byte streams differ anywhere but in CHECKSUM/DATASUM cards."""
    if len(a) != len(b):
        return True
    for start in range(0, len(a), 80):
        x, y = a[start : start + 80], b[start : start + 80]
        if x != y and not (x.startswith((b"CHECKSUM", b"DATASUM")) and x[:8] == y[:8]):
            return True
    return False


def compare_surveys(a: Path, b: Path) -> list[str]:
    problems = []
    names = sorted(p.name for p in a.iterdir())
    if names != sorted(p.name for p in b.iterdir()):
        return ["the two surveys hold different files"]
    for name in names:
        x, y = (a / name).read_bytes(), (b / name).read_bytes()
        if name.endswith(".gz"):
            x, y = gzip.decompress(x), gzip.decompress(y)
            if x != y and fits_cards_differ(x, y):
                problems.append(f"{name}: contents differ")
        elif x != y:
            problems.append(f"{name}: differs")
    return problems


def metric_lines(log: Path) -> list[str]:
    """What `evaluate` printed, less its progress bars, log lines and the path it wrote."""
    skip = ("PCA fit", "PCA scores", "kNN graph", "wrote ", "\x1b")
    return [line for line in log.read_text().splitlines() if not line.startswith(skip)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("binaries", nargs=2, type=Path, metavar="BIN")
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--galaxies", type=int, default=400)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--train-epochs", type=int, metavar="N")
    parser.add_argument("--evaluate", nargs=3, type=Path, metavar=("RESULTS", "DATA", "TRUTH"))
    parser.add_argument("--env-a", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--env-b", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    labels = ["A", "B"]
    envs = []
    for settings in (args.env_a, args.env_b):
        env = dict(os.environ)
        for setting in settings:
            key, sep, value = setting.partition("=")
            if not sep or not key:
                parser.error(f"--env-a/--env-b take KEY=VALUE, not {setting!r}")
            env[key] = value
        envs.append(env)
    times: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    args.workdir.mkdir(parents=True, exist_ok=True)
    for round_ in range(args.rounds):
        order = [0, 1] if round_ % 2 == 0 else [1, 0]
        for which in order:
            binary, label = str(args.binaries[which].resolve()), labels[which]
            base = args.workdir / label
            survey, dataset = base / "survey", base / "dataset"
            shutil.rmtree(base, ignore_errors=True)
            base.mkdir()
            stages = [
                ("simulate", [binary, "simulate", "--out", str(survey),
                              "--galaxies", str(args.galaxies), "--seed", str(args.seed)]),
                ("ingest", [binary, "ingest", str(survey), "--out", str(dataset)]),
            ]
            if args.train_epochs:
                stages.append(("train", [binary, "train", "--data", str(dataset),
                                         "--out", str(base / "model"),
                                         "--epochs", str(args.train_epochs),
                                         "--seed", str(args.seed), "--restarts", "1"]))
            if args.evaluate:
                results, data, truth = args.evaluate
                copy = base / "results"
                shutil.copytree(results, copy)
                stages.append(("evaluate", [binary, "evaluate", "--results", str(copy),
                                            "--data", str(data), "--truth", str(truth)]))
            for stage, cmd in stages:
                measured = run(cmd, base / f"{stage}.log", envs[which])
                times.setdefault((label, stage), []).append(measured)
                print(f"round {round_ + 1} {label} {stage:9s} {measured[0]:7.2f} s wall "
                      f"({measured[1]:.1f} s user, {measured[2]:.1f} s system)", flush=True)
    print(f"\nA = {args.binaries[0]} {' '.join(args.env_a)}".rstrip())
    print(f"B = {args.binaries[1]} {' '.join(args.env_b)}".rstrip())
    print("| stage | A wall (median; runs) | B wall (median; runs) | A user+sys | B user+sys |")
    print("|---|---|---|---|---|")
    for stage in dict.fromkeys(stage for _, stage in times):
        cells = []
        for label in labels:
            walls = [t[0] for t in times[(label, stage)]]
            cells.append(f"{statistics.median(walls):.2f} s ({', '.join(f'{w:.2f}' for w in walls)})")
        for label in labels:
            cpu = [t[1] + t[2] for t in times[(label, stage)]]
            cells.append(f"{statistics.median(cpu):.1f} s")
        print(f"| {stage} | " + " | ".join(cells) + " |")
    problems = compare_surveys(args.workdir / "A" / "survey", args.workdir / "B" / "survey")
    cubes = [(args.workdir / label / "dataset" / "cubes.safetensors").read_bytes() for label in labels]
    if cubes[0] != cubes[1]:
        problems.append("cubes.safetensors differ")
    if args.train_epochs:
        for name in ("best.safetensors", "calibration.json"):
            model = [(args.workdir / label / "model" / name).read_bytes() for label in labels]
            if model[0] != model[1]:
                problems.append(f"the trained models' {name} differ")
    if args.evaluate and metric_lines(args.workdir / "A" / "evaluate.log") != metric_lines(
        args.workdir / "B" / "evaluate.log"
    ):
        problems.append("evaluate printed different metrics")
    print("\nsame outputs: " + ("yes" if not problems else "NO — " + "; ".join(problems[:5])))


if __name__ == "__main__":
    main()
