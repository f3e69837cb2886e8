#!/usr/bin/env python3
"""Reads EMLINE_GFLUX, _IVAR and _MASK of every MAPS file in a directory with astropy + numpy
and prints files/s and MB/s, for comparison with
`cargo run --release -p oddcube-data --example ingest_bench -- DIR`.

Usage: python3 bench/astropy_read.py DIR
"""
import glob
import os
import sys
import time

import numpy as np
from astropy.io import fits


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    files = sorted(glob.glob(os.path.join(sys.argv[1], "**", "*.fits*"), recursive=True))
    files = [f for f in files if f.endswith((".fits", ".fits.gz"))]
    if not files:
        sys.exit(f"no MAPS files in {sys.argv[1]}")
    on_disk = sum(os.path.getsize(f) for f in files)
    start = time.perf_counter()
    checksum = 0.0
    for f in files:
        with fits.open(f) as hdul:
            flux = np.asarray(hdul["EMLINE_GFLUX"].data, dtype=np.float32)
            ivar = np.asarray(hdul["EMLINE_GFLUX_IVAR"].data, dtype=np.float32)
            mask = np.asarray(hdul["EMLINE_GFLUX_MASK"].data, dtype=np.int32)
            # Touch every value so lazy loading cannot skip work.
            checksum += float(flux.sum(dtype=np.float64)) + float(ivar.sum(dtype=np.float64)) + float(mask.sum())
    t = time.perf_counter() - start
    print(f"{len(files)} files, {on_disk / 1e6:.1f} MB on disk")
    print(f"astropy read         {len(files) / t:7.2f} files/s  {on_disk / 1e6 / t:7.1f} MB/s on disk  (checksum {checksum:.6g})")


if __name__ == "__main__":
    main()
