#!/usr/bin/env python3
"""oddcube vs PyTorch-CPU on the same ConvLSTM autoencoder, in one run.

Runs `oddcube bench` and `bench/pytorch_convlstm.py` alternately for several rounds (so slow
drifts in machine load hit both alike), then prints the median training and inference
GFLOP/s of each, their ratio, the load average before and after, and the fraction of the
machine's FP32 peak (AVX2 + FMA: two 8-lane FMA units per core, 32 FLOP/cycle/core, at the
clock /proc/cpuinfo reports).

    python3 bench/compare.py [--rounds 3] [--preset cpu] [--threads 2] [--steps 7]
        [--oddcube PATH] [--kernel fused]   (PATH defaults to $CARGO_TARGET_DIR/release/oddcube)

A measuring tool, not a dependency: it needs `torch` (PyPI) and a release build of oddcube.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
LINE = re.compile(r"^(train|infer): ([\d.]+) samples/s, ([\d.]+) ms/step, ([\d.]+) GFLOP/s")
EXECUTED = re.compile(r"architecture's ([\d.]+) GFLOP; the fused kernels execute ([\d.]+)")


def run(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    found = {}
    for line in out.splitlines():
        m = LINE.match(line)
        if m:
            found[m.group(1)] = (float(m.group(2)), float(m.group(3)), float(m.group(4)))
        e = EXECUTED.search(line)
        if e:
            found["executed"] = float(e.group(2)) / float(e.group(1))
    if not {"train", "infer"} <= set(found):
        sys.exit(f"no train/infer lines in the output of {' '.join(cmd)}:\n{out}")
    return found


def peak_gflops(threads):
    mhz = []
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("cpu MHz"):
                mhz.append(float(line.split(":")[1]))
    if not mhz:
        return None
    return threads * 32 * max(mhz) / 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--model", default="ae")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--steps", type=int, default=7)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--kernel", default="fused")
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(HERE, "..", "target"))
    ap.add_argument("--oddcube", default=os.path.join(target, "release", "oddcube"),
                    help="the oddcube binary (default: $CARGO_TARGET_DIR or target/, release)")
    args = ap.parse_args()

    common = ["--preset", args.preset, "--steps", str(args.steps), "--batch", str(args.batch)]
    # The architecture is `--arch` for oddcube (docs/cli.md), `--model` for the PyTorch copy.
    ours = [args.oddcube, "bench", *common, "--arch", args.model, "--jobs", str(args.threads),
            "--kernel", args.kernel]
    theirs = [sys.executable, os.path.join(HERE, "pytorch_convlstm.py"), *common,
              "--model", args.model, "--threads", str(args.threads)]

    load_before = os.getloadavg()
    results = {"oddcube": [], "pytorch": []}
    for r in range(args.rounds):
        for name, cmd in (("oddcube", ours), ("pytorch", theirs)):
            res = run(cmd)
            results[name].append(res)
            print(f"round {r + 1} {name:8s} train {res['train'][2]:7.2f} GFLOP/s "
                  f"({res['train'][0]:.1f} samples/s)   infer {res['infer'][2]:7.2f} GFLOP/s "
                  f"({res['infer'][0]:.1f} samples/s)", flush=True)
    load_after = os.getloadavg()

    peak = peak_gflops(args.threads)
    print(f"\npreset {args.preset} ({args.model}), batch {args.batch}, {args.threads} threads, "
          f"{args.rounds} rounds × {args.steps} steps; load average "
          f"{load_before[0]:.2f} before, {load_after[0]:.2f} after")
    for kind in ("train", "infer"):
        med = {n: statistics.median(x[kind][2] for x in results[n]) for n in results}
        rate = {n: statistics.median(x[kind][0] for x in results[n]) for n in results}
        line = (f"{kind}: oddcube {med['oddcube']:.2f} GFLOP/s ({rate['oddcube']:.1f} samples/s), "
                f"pytorch {med['pytorch']:.2f} GFLOP/s ({rate['pytorch']:.1f} samples/s), "
                f"ratio {med['oddcube'] / med['pytorch']:.2f}")
        if peak:
            line += (f"; {100 * med['oddcube'] / peak:.0f} % vs {100 * med['pytorch'] / peak:.0f} % "
                     f"of the {peak:.0f} GFLOP/s FP32 peak")
            executed = results["oddcube"][0].get("executed")
            if executed:
                line += (f" (oddcube executes {executed:.3f}× the counted FLOPs: "
                         f"{100 * executed * med['oddcube'] / peak:.0f} % of peak executed)")
        print(line)


if __name__ == "__main__":
    main()
