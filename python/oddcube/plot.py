"""Figures of oddcube's arrays with matplotlib, in Marvin's conventions: masked or unusable
spaxels grey, a percentile stretch (5–95 % of the usable pixels by default), north up
(``origin="lower"``: row 0 at the bottom, as Marvin and ``oddcube plot`` draw MaNGA maps).

Computing stays in :mod:`oddcube` (arrays and DataFrames); this module only draws, and every
function returns the matplotlib ``Figure`` so a notebook shows it and a script can save it.

- :func:`maps`: emission-line maps of a :class:`~oddcube.Maps` (one panel per line).
- :func:`residuals`: data, model and residual (σ) per line of a stored galaxy of a
  :class:`~oddcube.Results`.
- :func:`anomaly_map`: a galaxy's anomaly map with the dominant line named.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

__all__ = ["anomaly_map", "maps", "residuals"]

#: Colour of masked spaxels.
MASKED = "0.75"


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("oddcube.plot needs matplotlib: pip install matplotlib") from err
    return plt


def _cmap(name: str):
    import matplotlib

    return matplotlib.colormaps[name].with_extremes(bad=MASKED)


def _stretch(image: np.ndarray, percentiles: tuple[float, float]) -> tuple[float, float]:
    """Limits at the given percentiles of the finite pixels (0, 1 when there are none)."""
    finite = image[np.isfinite(image)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(finite, percentiles)
    return (float(lo), float(hi)) if hi > lo else (float(lo), float(lo) + 1.0)


def _grid(n: int, columns: int, panel: float):
    plt = _pyplot()
    columns = max(1, min(columns, n))
    rows = math.ceil(n / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(panel * columns, panel * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def _show(ax, image, title, cmap, vmin, vmax, label=None):
    im = ax.imshow(image, origin="lower", cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    cbar = ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
    cbar.ax.tick_params(labelsize=7)
    if label:
        cbar.set_label(label, fontsize=7)
    return im


def maps(
    m,
    lines: Optional[Sequence[str]] = None,
    *,
    percentiles: tuple[float, float] = (5.0, 95.0),
    mask_policy: str = "strict",
    columns: int = 4,
    panel: float = 2.6,
):
    """The flux maps of a :class:`~oddcube.Maps` (``lines``: names, default all), each with
    its own percentile stretch; spaxels ``ingest`` would not use under ``mask_policy`` grey."""
    names = list(lines) if lines is not None else list(m.lines)
    usable = m.usable(mask_policy)
    fig, axes = _grid(len(names), columns, panel)
    cmap = _cmap("viridis")
    for ax, name in zip(axes, names):
        i = m.lines.index(name) if name in m.lines else m._line_index(name)
        image = np.where(usable[i], m.flux[i], np.nan)
        lo, hi = _stretch(image, percentiles)
        _show(ax, image, name, cmap, lo, hi, "1e-17 erg/s/cm²/spaxel")
    fig.suptitle(f"{m.plateifu}: emission-line flux", fontsize=10)
    fig.tight_layout()
    return fig


def residuals(
    results,
    plateifu: str,
    lines: Optional[Sequence[str]] = None,
    *,
    percentiles: tuple[float, float] = (5.0, 95.0),
    limit_sigma: float = 5.0,
    panel: float = 2.4,
):
    """Data, reconstruction and residual ((x − x̂)·√w, in σ) of one galaxy stored in a
    :class:`~oddcube.Results`, one row per line (default: the four lines with the largest mean
    squared residual). Data and model share a stretch; the residual is symmetric, clipped at
    ``limit_sigma``; pixels without weight are grey."""
    r = results.residuals(plateifu)
    usable = r.w > 0
    if lines is None:
        power = np.where(usable, r.residual**2, 0.0).sum(axis=(1, 2)) / np.maximum(usable.sum(axis=(1, 2)), 1)
        order = list(np.argsort(power)[::-1][:4])
    else:
        order = [r.lines.index(name) for name in lines]
    plt = _pyplot()
    fig, axes = plt.subplots(len(order), 3, figsize=(panel * 3, panel * len(order)), squeeze=False)
    flux_cmap, resid_cmap = _cmap("viridis"), _cmap("RdBu_r")
    for row, i in zip(axes, order):
        data = np.where(usable[i], r.x[i], np.nan)
        model = np.where(usable[i], r.xhat[i], np.nan)
        resid = np.where(usable[i], r.residual[i], np.nan)
        lo, hi = _stretch(np.concatenate([data.ravel(), model.ravel()]), percentiles)
        _show(row[0], data, f"{r.lines[i]} data", flux_cmap, lo, hi)
        _show(row[1], model, f"{r.lines[i]} model", flux_cmap, lo, hi)
        _show(row[2], resid, f"{r.lines[i]} residual", resid_cmap, -limit_sigma, limit_sigma, "σ")
    fig.suptitle(f"{plateifu}: data, reconstruction, residual", fontsize=10)
    fig.tight_layout()
    return fig


def anomaly_map(results, plateifu: str, *, percentiles: tuple[float, float] = (0.0, 99.5), panel: float = 3.2):
    """The anomaly map of one galaxy of a :class:`~oddcube.Results` (PSF-smoothed χ² per
    pixel, log stretch) and the line that dominates its peak."""
    a = results.anomaly_map(plateifu)
    value = np.where(a.line >= 0, a.value, np.nan)
    log = np.log10(np.clip(value, 1e-3, None))
    lo, hi = _stretch(log, percentiles)
    fig, axes = _grid(1, 1, panel)
    _show(axes[0], log, "anomaly map", _cmap("magma"), lo, hi, "log10 χ²")
    if np.isfinite(value).any():
        peak = np.unravel_index(np.nanargmax(value), value.shape)
        axes[0].plot(peak[1], peak[0], marker="+", color="cyan", markersize=10)
        fig.suptitle(f"{plateifu}: peak dominated by {a.dominant[peak]}", fontsize=10)
    fig.tight_layout()
    return fig
