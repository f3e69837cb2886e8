#!/usr/bin/env python3
"""Derive the DR17 MAPS file layout the survey simulator reproduces.

Reads a genuine DR17-layout DAP MAPS file (tiny-test-MAPS-HYB10-MILESHC-MASTARSSP.fits.gz, made by
DAP 4.5.0 from real MaNGA spectra) and writes crates/oddcube-data/assets/dr17_maps_layout.json:
the primary-header cards of the DAP and, for each of the 63 extensions in file order, its EXTNAME,
BITPIX, number of channels (0 for a 2-D map) and the header cards that describe its content
(channel names C01.., units U01.., BUNIT, HDUCLASn, ERRDATA/QUALDATA/SCIDATA, AUTHOR, MASKNAME).
Structural cards (NAXISn, ...), the spatial WCS and checksums are left out: the simulator writes
them per galaxy. The JSON is compiled into the oddcube binary (include_str!).

Run from the repository root (astropy required):
    python3 scripts/derive_maps_layout.py [path/to/a/DR17/MAPS.fits.gz]
"""

import json
import sys
from pathlib import Path

from astropy.io import fits

DEFAULT_SOURCE = (Path(__file__).resolve().parents[1]
                  / "tests/data/real/tiny-test-MAPS-HYB10-MILESHC-MASTARSSP.fits.gz")
OUT = Path(__file__).resolve().parents[1] / "crates/oddcube-data/assets/dr17_maps_layout.json"

STRUCTURAL = {"SIMPLE", "XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "NAXIS3", "EXTEND",
              "PCOUNT", "GCOUNT", "EXTNAME", "CHECKSUM", "DATASUM"}
WCS = {"WCSAXES", "CRPIX1", "CRPIX2", "CRPIX3", "CDELT1", "CDELT2", "CDELT3", "CRVAL1", "CRVAL2",
       "CRVAL3", "LATPOLE", "LONPOLE", "WCSNAME", "MJDREF", "CTYPE1", "CTYPE2", "CTYPE3", "CUNIT1",
       "CUNIT2", "CUNIT3", "PC1_1", "PC2_2", "RADESYS", "EQUINOX", "MJD-OBS", "DATE-OBS"}


def cards(header, skip):
    out = []
    for card in header.cards:
        if card.keyword in skip or card.keyword in ("", "COMMENT", "HISTORY"):
            continue
        value = card.value
        if not isinstance(value, (str, bool, int, float)):
            value = ""  # an undefined value (e.g. BINCOV =  / ...)
        out.append([card.keyword, value, card.comment])
    return out


def main() -> None:
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_SOURCE
    hdus = fits.open(source)
    layout = {
        "source": source.name,
        "primary": cards(hdus[0].header, STRUCTURAL),
        "extensions": [],
    }
    for hdu in hdus[1:]:
        header = hdu.header
        layout["extensions"].append({
            "extname": hdu.name,
            "bitpix": header["BITPIX"],
            "channels": header["NAXIS3"] if header["NAXIS"] == 3 else 0,
            "cards": cards(header, STRUCTURAL | WCS),
        })
    # One extension per line: small, and diffs stay readable when the layout changes.
    lines = ",\n  ".join(json.dumps(e) for e in layout["extensions"])
    OUT.write_text(
        f'{{"source": {json.dumps(layout["source"])},\n'
        f' "primary": {json.dumps(layout["primary"])},\n'
        f' "extensions": [\n  {lines}\n ]}}\n'
    )
    print(f"wrote {OUT}: primary + {len(layout['extensions'])} extensions")


if __name__ == "__main__":
    main()
