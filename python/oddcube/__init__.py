"""oddcube from Python: the same Rust core as the ``oddcube`` command, as numpy and pandas.

Find the galaxies that are not like the others in MaNGA integral-field spectroscopy. Every
function here calls oddcube's Rust crates (through the extension module ``oddcube._oddcube``);
nothing is implemented twice, so a notebook gets the numbers the command line writes.

Where to start:

- :func:`read_maps` reads one DAP MAPS file as ``ingest`` does; :meth:`Maps.preprocess` gives
  the ``(x, w)`` cube ``ingest`` stores.
- :func:`simulate` writes a simulated survey, :func:`ingest` turns MAPS files into a
  :class:`Dataset` (``.x``/``.w`` memory-mapped, ``.galaxies`` a DataFrame).
- :func:`train` trains a model and returns it as a :class:`Model` (``encode``,
  ``reconstruct``, ``score``).
- :class:`Results` opens a RESULTS directory: the catalogue, latents, latent neighbours
  (:meth:`Results.similar`), residual and anomaly maps. :mod:`oddcube.plot` draws them.

Errors from the core raise :class:`OddcubeError` with the command line's message (the file
and the reason); arrays of the wrong shape or dtype raise ``ValueError``. Heavy work runs
with the GIL released. Long work takes ``progress=``: a callable
``progress(stage, done, total, message)``, e.g. :func:`print_progress`; an exception it raises
is re-raised when the work ends (the Rust work cannot be interrupted from inside it).
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path
from typing import Callable, NamedTuple, Optional, Sequence, Union

import numpy as np
import pandas as pd

from . import _oddcube
from ._oddcube import CORE_VERSION, OddcubeError

__version__: str = _oddcube.__version__

__all__ = [
    "AnomalyMap",
    "CORE_VERSION",
    "Dataset",
    "LineMaps",
    "Maps",
    "Model",
    "OddcubeError",
    "Residuals",
    "Results",
    "__version__",
    "ingest",
    "print_progress",
    "read_maps",
    "simulate",
    "train",
]

PathLike = Union[str, os.PathLike]
Progress = Optional[Callable[[str, int, int, Optional[str]], object]]


class _ProgressLine:
    """One updating line per stage on stderr: ``stage: done/total  latest message``."""

    def __init__(self):
        self.stage, self.message = None, ""

    def __call__(self, stage: str, done: int, total: int, message: Optional[str] = None) -> None:
        if stage != self.stage:
            self.stage, self.message = stage, ""
        if message:
            self.message = message
        line = f"{stage}: {done}/{total}" + (f"  {self.message}" if self.message else "")
        sys.stderr.write("\r" + line)
        if total and done >= total and not message:
            sys.stderr.write("\n")
        sys.stderr.flush()


#: A ready-made ``progress=`` callback: one updating line per stage on stderr (the stage, the
#: count done and the latest message, e.g. an epoch's loss).
print_progress = _ProgressLine()


def _frame(columns) -> pd.DataFrame:
    """A DataFrame from the extension's ``[(name, values)]``, keeping the column order."""
    return pd.DataFrame({name: values for name, values in columns})


# --- one MAPS file ---------------------------------------------------------------------------


class LineMaps(NamedTuple):
    """One emission line's maps, carried together as Marvin does: ``[y, x]`` each."""

    flux: np.ndarray
    ivar: np.ndarray
    mask: np.ndarray


class Maps:
    """A DAP MAPS file as oddcube reads it (:func:`read_maps`).

    ``flux``, ``ivar`` and ``mask`` are numpy arrays ``[line, y, x]`` of the chosen lines, in
    the order the model reads them (``lines``); ``maps["Ha-6564"]`` gives one line's three
    arrays (Marvin's ``"emline_gflux_ha_6564"`` works too). ``header`` holds the metadata
    ``ingest`` keeps (plateifu, mangaid, ra, dec, z, psf_fwhm, ifu_size, dapqual, drp3qual,
    daptype, versdap, notices).
    """

    def __init__(self, raw: "_oddcube.RawMaps"):
        self._raw = raw
        self.flux: np.ndarray = raw.flux()
        self.ivar: np.ndarray = raw.ivar()
        self.mask: np.ndarray = raw.mask()
        self.lines: list[str] = raw.lines()
        self.channels: list[str] = raw.channels()
        self.path: Path = Path(raw.path())
        self.header: dict = json.loads(raw.header_json())
        self.plateifu: str = self.header["plateifu"]

    def __repr__(self) -> str:
        n, ny, nx = self.flux.shape
        return f"<oddcube.Maps {self.plateifu}: {n} lines, {ny}×{nx} spaxels, {self.path.name}>"

    def _line_index(self, key: str) -> int:
        if key in self.lines:
            return self.lines.index(key)
        marvin = {"emline_gflux_" + name.lower().replace("-", "_"): i for i, name in enumerate(self.lines)}
        if key.lower() in marvin:
            return marvin[key.lower()]
        raise KeyError(f"{key!r} is not one of the lines read: {', '.join(self.lines)}")

    def __getitem__(self, key: str) -> LineMaps:
        i = self._line_index(key)
        return LineMaps(self.flux[i], self.ivar[i], self.mask[i])

    @property
    def skycoo(self) -> Optional[np.ndarray]:
        """SPX_SKYCOO ``[2, y, x]``: on-sky offsets (arcsec) from the IFU centre, or None."""
        return self._raw.skycoo()

    def usable(self, mask_policy: str = "strict") -> np.ndarray:
        """Spaxels ``ingest`` would use (bool ``[line, y, x]``) under ``mask_policy``."""
        return self._raw.usable(mask_policy)

    def preprocess(
        self,
        size: int = 32,
        mask_policy: str = "strict",
        stretch: str = "none",
        return_info: bool = False,
    ):
        """The ``(x, w)`` cube exactly as ``ingest`` stores it: float32 ``[line, size, size]``.

        With ``return_info=True`` also a dict of the centre used, the box mapped onto the grid,
        the flux scale and the number of usable spaxels.
        """
        x, w, info = self._raw.preprocess(int(size), mask_policy, stretch)
        return (x, w, info) if return_info else (x, w)


def read_maps(path: PathLike, lines: str = "dr17") -> Maps:
    """Reads a MaNGA DAP MAPS file (``.fits`` or ``.fits.gz``) as ``oddcube ingest`` does.

    ``lines``: ``"dr17"`` (19 lines, 3800–8000 Å), ``"dr15"`` or comma-separated DAP channel
    names. Raises :class:`OddcubeError` naming the file and the reason for any file ``ingest``
    would skip (unreadable, not a MAPS file, a missing line, …).
    """
    return Maps(_oddcube.read_maps(os.fspath(path), lines))


# --- datasets --------------------------------------------------------------------------------


class Dataset:
    """A dataset directory written by ``oddcube ingest`` (or :func:`ingest`).

    ``x`` and ``w`` are read-only ``numpy.memmap`` arrays ``[N, L, S, S]`` float32 over
    ``cubes.safetensors`` (nothing is copied until used); ``galaxies`` is the per-galaxy table
    (a DataFrame, tensor order); ``manifest`` the dataset's ``manifest.json``.
    """

    def __init__(self, dir: PathLike):
        self.dir = Path(dir)
        layout = _oddcube.dataset_layout(os.fspath(self.dir))
        shape = tuple(layout["shape"])
        self.x: np.ndarray = np.memmap(layout["path"], dtype="<f4", mode="r", offset=layout["x_offset"], shape=shape)
        self.w: np.ndarray = np.memmap(layout["path"], dtype="<f4", mode="r", offset=layout["w_offset"], shape=shape)
        records, manifest = _oddcube.dataset_galaxies(os.fspath(self.dir))
        galaxies = pd.DataFrame.from_records(json.loads(records))
        # JSON has no NaN: unknown values arrive as None; these columns are floats.
        for column in ("ra", "dec", "z", "scale", "psf_fwhm"):
            if column in galaxies:
                galaxies[column] = galaxies[column].astype(float)
        self.galaxies: pd.DataFrame = galaxies
        self.manifest: dict = json.loads(manifest)
        self.lines: list[str] = list(self.manifest["lines"]["lines"])
        self.size: int = int(self.manifest["size"])
        self.ingest_report: Optional[dict] = None

    def __len__(self) -> int:
        return self.x.shape[0]

    def __repr__(self) -> str:
        n, l, s, _ = self.x.shape
        return f"<oddcube.Dataset {self.dir}: {n} galaxies, {l} lines, {s}×{s}>"

    def galaxy(self, which: Union[int, str]) -> tuple[np.ndarray, np.ndarray]:
        """``(x, w)`` of one galaxy (``[L, S, S]``), by row or plate-ifu."""
        if isinstance(which, str):
            rows = np.flatnonzero(self.galaxies["plateifu"].to_numpy() == which)
            if rows.size == 0:
                raise KeyError(f"{which!r} is not a galaxy of {self.dir}")
            which = int(rows[0])
        return self.x[which], self.w[which]


def ingest(
    inputs: Union[PathLike, Sequence[PathLike]],
    out: PathLike,
    *,
    lines: str = "dr17",
    size: int = 32,
    mask_policy: str = "strict",
    stretch: str = "none",
    jobs: int = 0,
    skip_critical: bool = False,
    progress: Progress = None,
) -> Dataset:
    """MAPS files, directories or glob patterns → a dataset directory, as ``oddcube ingest``.

    Bad files are skipped, never fatal: each is named with its reason in a warning, in
    ``skipped.csv`` and in the returned dataset's ``ingest_report["skipped"]``. Raises
    :class:`OddcubeError` only when nothing could be ingested.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    report = _oddcube.ingest(
        [os.fspath(p) for p in inputs], os.fspath(out), lines, int(size), mask_policy, stretch,
        int(jobs), bool(skip_critical), progress,
    )
    for path, reason in report["skipped"]:
        warnings.warn(f"skipped {path}: {reason}", stacklevel=2)
    if report["n_ingested"] == 0:
        raise OddcubeError(f"no input could be ingested into {out} ({len(report['skipped'])} skipped)")
    dataset = Dataset(out)
    dataset.ingest_report = report
    return dataset


def simulate(
    out: PathLike,
    galaxies: int = 100,
    *,
    seed: int = 0,
    anomaly_fraction: float = 0.05,
    anomaly_kinds: Optional[Sequence[str]] = None,
    gzip_level: int = 1,
    progress: Progress = None,
) -> dict:
    """Writes a simulated survey of DR17-format MAPS files and ``truth.csv`` into ``out``, as
    ``oddcube simulate``. ``anomaly_kinds`` names the anomaly kinds injected in turn (``None``: the
    default mix of seyfert, blueberry, eelr and dual_nucleus; ``outflow``, ``ring`` and
    ``dust_lane`` are held out of it, see docs/simulation.md). Returns a dict: ``files``,
    ``truth`` (the truth table as a DataFrame), ``kinds`` (kind → count) and ``seconds``."""
    if isinstance(anomaly_kinds, str):
        anomaly_kinds = [anomaly_kinds]
    summary = _oddcube.simulate(
        os.fspath(out), int(galaxies), int(seed), float(anomaly_fraction),
        None if anomaly_kinds is None else [str(k) for k in anomaly_kinds], int(gzip_level), progress,
    )
    summary["files"] = [Path(f) for f in summary["files"]]
    summary["truth"] = pd.read_csv(summary.pop("truth_path"))
    return summary


# --- models ----------------------------------------------------------------------------------


def _cubes(x, w, n_lines: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``x``, ``w`` as C-contiguous float32 ``[N, L, S, S]``; one galaxy ``[L, S, S]`` is
    promoted. ``ValueError`` names the expected shape."""
    expected = f"[N, {n_lines}, {size}, {size}] or [{n_lines}, {size}, {size}]"
    arrays = []
    for name, a in (("x", x), ("w", w)):
        a = np.asarray(a)
        if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
            raise ValueError(f"{name} has dtype {a.dtype}; expected floating point, shape {expected}")
        if a.ndim == 3:
            a = a[np.newaxis]
        if a.ndim != 4 or a.shape[1:] != (n_lines, size, size):
            raise ValueError(f"{name} has shape {np.shape(a)}; the model expects {expected} (galaxies, lines, rows, columns)")
        arrays.append(np.ascontiguousarray(a, dtype=np.float32))
    if arrays[0].shape != arrays[1].shape:
        raise ValueError(f"x has shape {arrays[0].shape} but w has {arrays[1].shape}; they must be equal")
    return arrays[0], arrays[1]


class Model:
    """A trained model directory (written by ``oddcube train`` or :func:`train`) loaded on
    ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:N"``; CUDA needs a build with the ``cuda``
    feature). ``batch`` galaxies go through the network at a time."""

    def __init__(self, dir: PathLike, device: str = "cpu", batch: int = 32):
        if int(batch) < 1:
            raise ValueError("batch must be at least 1")
        self.dir = Path(dir)
        self.device = device
        self._raw = _oddcube.RawModel(os.fspath(self.dir), device, int(batch))
        self.lines: list[str] = list(self._raw.lines)
        self.n_lines: int = int(self._raw.n_lines)
        self.size: int = int(self._raw.size)
        self.latent_dim: int = int(self._raw.latent_dim)
        self.kind: str = self._raw.kind
        self.training_report: Optional[dict] = None

    def __repr__(self) -> str:
        return f"<oddcube.Model {self.dir}: {self.kind}, {self.n_lines} lines, {self.size}×{self.size}, D={self.latent_dim}>"

    @property
    def config(self) -> str:
        """The model's ``config.toml``."""
        return self._raw.config_toml()

    @property
    def history(self) -> pd.DataFrame:
        """The training history (``history.csv``: one row per epoch)."""
        return pd.read_csv(self.dir / "history.csv")

    def encode(self, x, w) -> np.ndarray:
        """Latent vectors ``[N, D]`` of preprocessed cubes ``x``, ``w`` (``[N, L, S, S]``)."""
        x, w = _cubes(x, w, self.n_lines, self.size)
        return self._raw.encode(x, w)

    def reconstruct(self, x, w) -> np.ndarray:
        """The model's reconstruction ``[N, L, S, S]`` of ``x``, ``w``."""
        x, w = _cubes(x, w, self.n_lines, self.size)
        return self._raw.reconstruct(x, w)

    def score(
        self,
        data: Union[PathLike, Dataset, np.ndarray],
        w: Optional[np.ndarray] = None,
        *,
        plateifus: Optional[Sequence[str]] = None,
        out: Optional[PathLike] = None,
        rank_by: str = "score",
        pvalues: str = "stored",
        fdr: float = 0.05,
        knn_k: int = 10,
        metric: str = "euclidean",
        residuals: str = "top:50",
        labels: Optional[PathLike] = None,
        return_latents: bool = False,
        progress: Progress = None,
    ):
        """Scores a dataset (a :class:`Dataset` or its directory) as ``oddcube score`` does and
        returns the catalogue as a DataFrame with the same columns in the same order
        (``docs/results.md``). With ``out`` the RESULTS directory is written too.

        ``data`` may also be arrays ``x`` with ``w`` (``[N, L, S, S]``, preprocessed as
        ``ingest`` does, e.g. :meth:`Maps.preprocess`), named by ``plateifus``; metadata the
        arrays lack takes the defaults of an unknown record (0.5″ grid pixels, the default PSF,
        no quality bits). The population columns (``score``'s p- and q-values, ``knn_dist``,
        ranks) are computed over the galaxies given, with the model's stored null by default,
        so a short follow-up list still gets honest p-values.

        With ``return_latents=True`` returns ``(catalogue, latents [N, D])``.
        """
        if isinstance(data, np.ndarray) or w is not None:
            if w is None:
                raise ValueError("arrays need both x and w")
            if out is not None or labels is not None:
                raise ValueError("out= and labels= need a dataset directory, not arrays")
            x, w = _cubes(data, w, self.n_lines, self.size)
            names = list(plateifus) if plateifus is not None else [f"galaxy-{i}" for i in range(x.shape[0])]
            columns, manifest, latents = self._raw.score_arrays(
                x, w, names, rank_by, pvalues, float(fdr), int(knn_k), metric, progress
            )
        else:
            directory = data.dir if isinstance(data, Dataset) else Path(data)
            columns, manifest, latents = self._raw.score_dataset(
                os.fspath(directory), None if out is None else os.fspath(out), rank_by, pvalues,
                float(fdr), int(knn_k), metric, residuals, None if labels is None else os.fspath(labels), progress,
            )
        catalog = _frame(columns)
        catalog.attrs["manifest"] = json.loads(manifest)
        for warning in catalog.attrs["manifest"].get("warnings", []):
            warnings.warn(warning, stacklevel=2)
        return (catalog, latents) if return_latents else catalog

    def score_files(
        self,
        inputs: Union[PathLike, Sequence[PathLike]],
        *,
        mask_policy: str = "strict",
        stretch: str = "none",
        skip_critical: bool = False,
        **options,
    ) -> pd.DataFrame:
        """Scores MAPS files (or directories, or glob patterns) that are not in any dataset — a
        follow-up list, your own reductions — with the galaxies' own metadata (PSF, pixel scale,
        quality bits), unlike arrays. They are ingested with the model's lines and grid into a
        temporary dataset (``mask_policy`` and ``stretch`` must be those of the training
        dataset; the defaults are ``ingest``'s), then scored as :meth:`score` does, with the
        stored null: a short, mostly anomalous list still gets honest p-values. ``options`` are
        :meth:`score`'s (``fdr``, ``rank_by``, ``return_latents``, …); files ``ingest`` would
        skip are skipped with a warning."""
        import tempfile

        with tempfile.TemporaryDirectory(prefix="oddcube-score-") as tmp:
            dataset = ingest(
                inputs, Path(tmp) / "dataset", lines=",".join(self.lines), size=self.size,
                mask_policy=mask_policy, stretch=stretch, skip_critical=skip_critical,
            )
            return self.score(dataset, **options)


def train(
    data: Union[PathLike, Dataset],
    out: PathLike,
    *,
    preset: str = "cpu",
    arch: str = "ae",
    epochs: Optional[int] = None,
    batch: Optional[int] = None,
    lr: Optional[float] = None,
    latent: Optional[int] = None,
    beta: Optional[float] = None,
    seed: Optional[int] = None,
    val_fraction: Optional[float] = None,
    loss: Optional[str] = None,
    patience: Optional[int] = None,
    noise: bool = False,
    augment: bool = True,
    resume: bool = False,
    restarts: int = 3,
    member_margin: float = 0.1,
    device: str = "cpu",
    kernel: str = "fused",
    progress: Progress = None,
) -> Model:
    """Trains a model on a dataset into ``out`` and fits its null, as ``oddcube train`` does
    (the same options; ``None`` takes the default, and the default ``epochs`` follows the
    number of training galaxies as there). ``restarts`` trains that many models from
    consecutive seeds: the one with the lowest validation loss is the model, the others within
    ``member_margin`` of its loss (a fraction; ``float("inf")`` for all) its restart ensemble,
    whose mean score the catalogue's ``score`` is (1: a single model). Returns the trained
    :class:`Model`; ``model.training_report`` has the epoch table, the null's summary,
    ``restarts`` (seed, best loss, its epoch, loss over the baseline, kept, member) per run and
    ``ensemble_seeds``."""
    directory = data.dir if isinstance(data, Dataset) else Path(data)
    if not 1 <= int(restarts) <= 100:
        raise ValueError(f"restarts={restarts}: expected 1 to 100, as oddcube train --restarts")
    if not float(member_margin) >= 0:
        raise ValueError(f"member_margin={member_margin}: expected a fraction >= 0 or inf")
    report = _oddcube.train(
        os.fspath(directory), os.fspath(out), preset, arch, epochs, batch, lr, latent, beta, seed,
        val_fraction, loss, patience, bool(noise), bool(augment), bool(resume), int(restarts),
        float(member_margin), device, kernel, progress,
    )
    model = Model(out, device=device)
    model.training_report = report
    return model


# --- results ---------------------------------------------------------------------------------


class Residuals(NamedTuple):
    """A galaxy's stored residual maps, ``[L, S, S]`` each: data, reconstruction, weights and
    the residual in σ, ``(x − x̂)·√w``."""

    x: np.ndarray
    xhat: np.ndarray
    w: np.ndarray
    residual: np.ndarray
    lines: list


class AnomalyMap(NamedTuple):
    """A galaxy's anomaly map ``[S, S]``: the PSF-smoothed mean z² (χ² against the measurement
    error plus the model's error floor) per pixel — for a restart ensemble scored with its stored
    null, the geometric mean of the averaged runs' maps — and the index into ``lines`` of the line
    that dominates each pixel in the kept run's residuals (-1 where no line was usable)."""

    value: np.ndarray
    line: np.ndarray
    lines: list

    @property
    def dominant(self) -> np.ndarray:
        """The dominant line's name per pixel (``""`` where none)."""
        names = np.array(list(self.lines) + [""], dtype=object)
        return names[np.where(self.line < 0, len(self.lines), self.line)]


class Results:
    """A RESULTS directory written by ``oddcube score`` (or ``merge``, or :meth:`Model.score`
    with ``out``): the catalogue, latents, neighbours and maps."""

    def __init__(self, dir: PathLike):
        self.dir = Path(dir)
        self._raw = _oddcube.RawResults(os.fspath(self.dir))
        self.manifest: dict = json.loads(self._raw.manifest_json())
        self._catalog: Optional[pd.DataFrame] = None
        self._latents: Optional[np.ndarray] = None

    def __repr__(self) -> str:
        return f"<oddcube.Results {self.dir}: {self.manifest['n_galaxies']} galaxies, ranked by {self.manifest['rank_by']}>"

    @property
    def catalog(self) -> pd.DataFrame:
        """``catalog.parquet`` as a DataFrame (columns in ``docs/results.md``)."""
        if self._catalog is None:
            self._catalog = _frame(self._raw.catalog())
        return self._catalog

    @property
    def latents(self) -> np.ndarray:
        """``latents.npy``: ``[N, D]`` float32, catalogue order."""
        if self._latents is None:
            self._latents = self._raw.latents()
        return self._latents

    def similar(self, query: Union[str, np.ndarray, Sequence[float]], k: int = 10, metric: str = "euclidean") -> pd.DataFrame:
        """The ``k`` galaxies nearest in latent space to ``query`` — a catalogue galaxy
        (plate-ifu, MaNGA-ID or MAPS file name; not its own neighbour) or a latent vector —
        as ``oddcube similar`` lists them: position, plateifu, distance, rank, chi2."""
        if int(k) < 1:
            raise ValueError("k must be at least 1")
        if isinstance(query, str):
            rows = self._raw.similar_galaxy(query, int(k), metric)
        else:
            vector = np.ascontiguousarray(np.asarray(query, dtype=np.float32))
            dim = int(self.manifest["latent_dim"])
            if vector.shape != (dim,):
                raise ValueError(f"the query vector has shape {vector.shape}; expected ({dim},), the latent dimension")
            rows = self._raw.similar_vector(vector, int(k), metric)
        return _frame(rows)

    def residuals(self, plateifu: str) -> Residuals:
        """The stored residual maps of one galaxy (``score --residuals`` chooses which are
        stored; by default the 50 most anomalous)."""
        maps = self._raw.residuals(plateifu)
        return Residuals(maps["x"], maps["xhat"], maps["w"], maps["residual"], list(maps["lines"]))

    def anomaly_map(self, plateifu: str) -> AnomalyMap:
        """The anomaly map of one galaxy (kept for every galaxy)."""
        value, line, lines = self._raw.anomaly_map(plateifu)
        line = line.astype(np.int16)
        line[line == 255] = -1
        return AnomalyMap(value, line, list(lines))
