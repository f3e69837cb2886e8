#!/usr/bin/env python3
"""Compare a simulated survey's emission-line maps with a real MaNGA MAPS file.

For each line both files have: usable spaxels (DONOTUSE clear, IVAR > 0), median and 99th
percentile of GFLUX, 10/50/90th percentiles of sigma = 1/sqrt(IVAR), and the fraction of usable
values that are exactly 0. Simulated statistics pool all galaxies of the chosen kind.

    python3 scripts/compare_simulated_survey.py SURVEY_DIR [REAL_MAPS] [--kind star_forming]
"""

import argparse
import csv
from pathlib import Path

import numpy as np
from astropy.io import fits

DONOTUSE = 1 << 30
DEFAULT_REAL = (Path(__file__).resolve().parents[1]
                / "tests/data/real/manga-7815-3702-MAPS-HYB10-GAU-MILESHC.fits.gz")


def channels(hdu):
    n = hdu.header["NAXIS3"]
    width = 2 if n >= 10 else 1
    return [hdu.header[f"C{i + 1:0{width}d}"].strip() for i in range(n)]


def usable_values(path):
    with fits.open(path) as h:
        names = channels(h["EMLINE_GFLUX"])
        flux, ivar, mask = (h[e].data for e in ("EMLINE_GFLUX", "EMLINE_GFLUX_IVAR", "EMLINE_GFLUX_MASK"))
        out = {}
        for i, name in enumerate(names):
            good = ((mask[i] & DONOTUSE) == 0) & (ivar[i] > 0)
            out[name] = (flux[i][good].astype(float), ivar[i][good].astype(float))
        return out


def stats(flux, ivar):
    if len(flux) == 0:
        return None
    sigma = 1 / np.sqrt(ivar)
    return (len(flux), np.median(flux), np.percentile(flux, 99), *np.percentile(sigma, [10, 50, 90]),
            np.mean(flux == 0))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("survey", type=Path)
    parser.add_argument("real", type=Path, nargs="?", default=DEFAULT_REAL)
    parser.add_argument("--kind", default="star_forming", help="kind from truth.csv, or 'all'")
    args = parser.parse_args()
    real = usable_values(args.real)
    rows = list(csv.DictReader(open(args.survey / "truth.csv")))
    chosen = [r for r in rows if args.kind == "all" or r["kind"] == args.kind]
    pooled = {}
    for row in chosen:
        for name, (f, v) in usable_values(args.survey / row["file"]).items():
            pf, pv = pooled.setdefault(name, ([], []))
            pf.append(f)
            pv.append(v)
    print(f"{len(chosen)} simulated galaxies ({args.kind}) vs {args.real.name}")
    print(f"{'line':11s} | {'n/gal':>6s} {'median':>7s} {'p99':>7s} {'sig10':>6s} {'sig50':>6s} {'sig90':>6s} {'zeros':>5s}"
          f" | {'n':>5s} {'median':>7s} {'p99':>7s} {'sig10':>6s} {'sig50':>6s} {'sig90':>6s} {'zeros':>5s}")
    for name in real:
        if name not in pooled:
            continue
        s = stats(np.concatenate(pooled[name][0]), np.concatenate(pooled[name][1]))
        r = stats(*real[name])
        if s is None or r is None:
            continue
        sim = f"{s[0] / len(chosen):6.0f} {s[1]:7.3f} {s[2]:7.2f} {s[3]:6.3f} {s[4]:6.3f} {s[5]:6.3f} {s[6]:5.2f}"
        rea = f"{r[0]:5d} {r[1]:7.3f} {r[2]:7.2f} {r[3]:6.3f} {r[4]:6.3f} {r[5]:6.3f} {r[6]:5.2f}"
        print(f"{name:11s} | {sim} | {rea}")


if __name__ == "__main__":
    main()
