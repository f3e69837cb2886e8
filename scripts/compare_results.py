#!/usr/bin/env python3
"""Compare two RESULTS directories written by `oddcube score` (standard library only).

Usage: scripts/compare_results.py BEFORE AFTER

Exits 0 when they hold the same results: catalog.csv identical cell for cell, latents.npy and
residuals.safetensors identical byte for byte, and manifest.json equal except its provenance
fields (which binary wrote it, when, from which paths). Used to show that a refactoring left the
scores unchanged: score the same dataset with the same model using the binaries before and after.
"""
import json
import sys
from pathlib import Path

# Fields that say where and by what a directory was written, not what it holds.
PROVENANCE = {"oddcube_version", "created_by", "model_dir", "dataset_dir", "created_at", "git"}


def main(before: Path, after: Path) -> int:
    problems = []
    for name in ["catalog.csv", "latents.npy", "residuals.safetensors", "catalog.parquet"]:
        a, b = before / name, after / name
        if not a.exists() and not b.exists():
            continue
        if a.exists() != b.exists():
            problems.append(f"{name}: present in only one directory")
        elif name == "catalog.parquet":
            continue  # parquet embeds writer metadata; the CSV carries the same cells
        elif a.read_bytes() != b.read_bytes():
            if name == "catalog.csv":
                rows_a = a.read_text().splitlines()
                rows_b = b.read_text().splitlines()
                for i, (ra, rb) in enumerate(zip(rows_a, rows_b)):
                    if ra != rb:
                        problems.append(f"catalog.csv line {i + 1}:\n  before {ra}\n  after  {rb}")
                        break
                if len(rows_a) != len(rows_b):
                    problems.append(f"catalog.csv: {len(rows_a)} vs {len(rows_b)} lines")
            else:
                problems.append(f"{name}: bytes differ")
    ma = json.loads((before / "manifest.json").read_text())
    mb = json.loads((after / "manifest.json").read_text())
    for key in sorted(set(ma) | set(mb)):
        if key in PROVENANCE:
            continue
        if ma.get(key) != mb.get(key):
            problems.append(f"manifest.json {key}: {ma.get(key)!r} vs {mb.get(key)!r}")
    for p in problems:
        print(p)
    print("identical (provenance aside)" if not problems else f"{len(problems)} difference(s)")
    return 0 if not problems else 1


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
