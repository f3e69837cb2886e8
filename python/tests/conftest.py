"""Shared fixtures: the repository's real MAPS files, the `oddcube` binary the Python results are
compared with, and one small demo run (`oddcube demo`) shared by the whole session."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
REAL = REPO / "tests" / "data" / "real"
REAL_DR15 = REAL / "manga-7815-3702-MAPS-HYB10-GAU-MILESHC.fits.gz"
REAL_DR17 = REAL / "tiny-test-MAPS-HYB10-MILESHC-MASTARSSP.fits.gz"


def _binary() -> Path:
    """The CLI to compare with: $ODDCUBE_BIN, else the release build of this clone."""
    if os.environ.get("ODDCUBE_BIN"):
        return Path(os.environ["ODDCUBE_BIN"])
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    return target / "release" / "oddcube"


@pytest.fixture(scope="session")
def cli():
    """Runs the `oddcube` binary; fails (never skips) when it is missing, since half of these
    tests exist to compare Python with it."""
    binary = _binary()
    if not binary.exists():
        pytest.fail(f"{binary} not found: run `cargo build --release` first or set ODDCUBE_BIN")

    def run(*args: str) -> subprocess.CompletedProcess:
        result = subprocess.run([str(binary), *map(str, args)], capture_output=True, text=True)
        if result.returncode not in (0, 3):
            raise AssertionError(f"oddcube {' '.join(map(str, args))} failed:\n{result.stderr}")
        return result

    return run


@pytest.fixture(scope="session")
def demo(cli, tmp_path_factory) -> Path:
    """`oddcube demo` at small settings (60 galaxies, 2 epochs): survey/, dataset/, model/,
    results/ as the demo writes them. Its results/ was scored by the CLI; residual maps are
    stored for every galaxy so that any galaxy's can be compared."""
    root = tmp_path_factory.mktemp("demo") / "demo"
    cli("demo", "--out", root, "--galaxies", 60, "--anomaly-fraction", 0.2, "--epochs", 2)
    # Re-score with every galaxy's residual maps (the demo keeps the top 50).
    cli("score", "--model", root / "model", "--data", root / "dataset", "--out", root / "results", "--residuals", "all")
    return root


@pytest.fixture()
def scratch(tmp_path) -> Path:
    return tmp_path


def copy(src: Path, dst_dir: Path) -> Path:
    dst = dst_dir / src.name
    shutil.copyfile(src, dst)
    return dst
