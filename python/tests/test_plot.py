"""oddcube.plot draws what it is given, in Marvin's conventions."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402

import oddcube  # noqa: E402
import oddcube.plot  # noqa: E402
from conftest import REAL_DR15  # noqa: E402


def images(fig):
    return [im for ax in fig.axes for im in ax.get_images()]


def test_maps_grey_where_unusable_and_north_up():
    maps = oddcube.read_maps(REAL_DR15, lines="dr15")
    fig = oddcube.plot.maps(maps, ["Ha-6564", "OIII-5008"])
    ims = images(fig)
    assert len(ims) == 2
    usable = maps.usable()
    i = maps.lines.index("Ha-6564")
    shown = ims[0].get_array()
    # Unusable spaxels are masked (drawn in the 'bad' colour, grey), usable ones are the flux.
    assert np.array_equal(np.ma.getmaskarray(shown) | ~np.isfinite(shown.filled(np.nan)), ~usable[i])
    assert ims[0].origin == "lower"
    lo, hi = ims[0].get_clim()
    flux = maps.flux[i][usable[i]]
    assert np.isclose(lo, np.percentile(flux, 5)) and np.isclose(hi, np.percentile(flux, 95))
    assert np.allclose(ims[0].get_cmap().get_bad()[:3], matplotlib.colors.to_rgb(oddcube.plot.MASKED))


def test_residuals_and_anomaly_map(demo):
    results = oddcube.Results(demo / "results")
    galaxy = results.catalog.sort_values("rank")["plateifu"].iloc[0]
    fig = oddcube.plot.residuals(results, galaxy)
    assert len(images(fig)) == 4 * 3
    lo, hi = images(fig)[2].get_clim()
    assert (lo, hi) == (-5.0, 5.0)
    fig = oddcube.plot.anomaly_map(results, galaxy)
    assert len(images(fig)) == 1 and "dominated by" in fig._suptitle.get_text()
