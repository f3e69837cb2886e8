"""Results: catalogue, latents, neighbours (against `oddcube similar`), residual and anomaly
maps."""

import io

import numpy as np
import pandas as pd
import pytest

import oddcube


@pytest.fixture(scope="module")
def results(demo):
    return oddcube.Results(demo / "results")


def test_similar_equals_the_cli(demo, cli, results):
    galaxy = results.catalog.sort_values("rank")["plateifu"].iloc[0]
    printed = cli("similar", "--results", demo / "results", galaxy, "-k", 7, "--format", "csv").stdout
    expected = pd.read_csv(io.StringIO(printed))
    found = results.similar(galaxy, k=7)
    assert list(found["plateifu"]) == list(expected["plateifu"])
    np.testing.assert_allclose(found["distance"], expected["distance"], rtol=1e-5)
    assert galaxy not in list(found["plateifu"])


def test_similar_by_vector_finds_the_galaxy_itself(results):
    row = 5
    found = results.similar(results.latents[row], k=3)
    assert found["plateifu"].iloc[0] == results.catalog["plateifu"].iloc[row]
    assert found["distance"].iloc[0] == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="latent dimension"):
        results.similar(np.zeros(results.latents.shape[1] + 1), k=3)


def test_bad_options_raise_value_error(results):
    name = results.catalog["plateifu"].iloc[0]
    with pytest.raises(ValueError, match="metric"):
        results.similar(name, k=3, metric="manhattan")
    with pytest.raises(ValueError, match="k must be"):
        results.similar(name, k=0)


def test_unknown_galaxy_suggests_names(results):
    name = results.catalog["plateifu"].iloc[0]
    with pytest.raises(oddcube.OddcubeError, match=name):
        results.similar(name + "9", k=3)


def test_residuals_are_sigma_residuals(results):
    galaxy = results.catalog["plateifu"].iloc[0]
    r = results.residuals(galaxy)
    assert r.x.shape == (len(r.lines), results.manifest["size"], results.manifest["size"])
    expected = (r.x - r.xhat) * np.sqrt(r.w)
    np.testing.assert_allclose(r.residual, expected, rtol=1e-5, atol=1e-5)


def test_anomaly_map_matches_the_catalogue(results):
    catalog = results.catalog
    galaxy = catalog.sort_values("rank")["plateifu"].iloc[0]
    a = results.anomaly_map(galaxy)
    size = results.manifest["size"]
    assert a.value.shape == (size, size) and a.line.shape == (size, size)
    row = catalog.index[catalog["plateifu"] == galaxy][0]
    # The catalogue's dominant line of the region is a line the map names.
    assert catalog.loc[row, "region_line"] in set(a.lines) | {""}
    assert set(np.unique(a.line)) <= set(range(-1, len(a.lines)))


def test_missing_results_raise(scratch):
    with pytest.raises(oddcube.OddcubeError, match="manifest.json"):
        oddcube.Results(scratch)
