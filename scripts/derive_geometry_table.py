#!/usr/bin/env python3
"""Derive the galaxy-geometry table the survey simulator samples from.

Reads the real MaNGA DRP catalogue (drpcomplete_v2_7_1.fits, BINTABLE DRPC) and writes
crates/oddcube-data/assets/manga_geometry.csv: one row per galaxy with a usable redshift and
shape, values rounded to what the simulator needs. The CSV is compiled into the oddcube binary
(include_str!), so the simulator never needs the catalogue at run time.

Run from the repository root (astropy + numpy required):
    python3 scripts/derive_geometry_table.py [path/to/drpcomplete_v2_7_1.fits]
"""

import sys
from pathlib import Path

import numpy as np
from astropy.io import fits

C_KM_S = 299792.458
DEFAULT_CATALOGUE = Path(__file__).resolve().parents[1] / "tests/data/real/drpcomplete_v2_7_1.fits"
OUT = Path(__file__).resolve().parents[1] / "crates/oddcube-data/assets/manga_geometry.csv"


def main() -> None:
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_CATALOGUE
    table = fits.open(source)["DRPC"].data
    ifudesign = np.asarray(table["IFUDESIGN"], dtype=np.int64)
    vel = np.asarray(table["VEL"], dtype=np.float64)
    ell = np.asarray(table["ELL"], dtype=np.float64)
    pa = np.asarray(table["PA"], dtype=np.float64)
    reff = np.asarray(table["REFF"], dtype=np.float64)
    ra = np.asarray(table["OBJRA"], dtype=np.float64)
    dec = np.asarray(table["OBJDEC"], dtype=np.float64)

    ifu_size = ifudesign // 100
    # Bad rows carry sentinels (VEL ~ -3e9, ELL/PA -9999, REFF <= 0); MaNGA targets sit at
    # 0.01 < z < 0.15, so anything outside a generous window is a catalogue artefact.
    good = (
        np.isin(ifu_size, [19, 37, 61, 91, 127])
        & np.isfinite(vel) & (vel > 0.001 * C_KM_S) & (vel < 0.3 * C_KM_S)
        & np.isfinite(ell) & (ell >= 0) & (ell < 0.95)
        & np.isfinite(pa) & (pa >= 0) & (pa <= 180)
        & np.isfinite(reff) & (reff > 0.3) & (reff < 60)
        & np.isfinite(ra) & np.isfinite(dec)
    )
    rows = np.flatnonzero(good)
    with OUT.open("w") as out:
        out.write(f"# derived from {source.name} by scripts/derive_geometry_table.py; "
                  f"{len(rows)} of {len(table)} rows kept\n")
        out.write("ifu_size,ell,pa_deg,reff_arcsec,z,ra_deg,dec_deg\n")
        for i in rows:
            out.write(f"{ifu_size[i]},{ell[i]:.3f},{pa[i]:.1f},{reff[i]:.2f},"
                      f"{vel[i] / C_KM_S:.5f},{ra[i]:.4f},{dec[i]:.4f}\n")
    print(f"wrote {OUT} ({len(rows)} of {len(table)} galaxies)")


if __name__ == "__main__":
    main()
