"""Model.score against the CLI's catalogue, encode against the CLI's latents, training from
Python, array inputs and the GIL."""

import json
import math
import threading
import time

import numpy as np
import pandas as pd
import pytest

import oddcube


def assert_same_catalog(python: pd.DataFrame, cli: pd.DataFrame):
    """Same columns in the same order; strings and flags equal; numbers equal to float
    rounding (the same code on the same inputs: only summation order across threads may
    differ, so 1e-9 relative is generous)."""
    assert list(python.columns) == list(cli.columns)
    assert len(python) == len(cli)
    for name in cli.columns:
        a, b = python[name].to_numpy(), cli[name].to_numpy()
        if a.dtype.kind == "f":
            np.testing.assert_allclose(a, b.astype(float), rtol=1e-9, atol=1e-12, equal_nan=True, err_msg=name)
        else:
            assert list(a) == list(b), name


def test_score_equals_the_cli_catalogue(demo):
    model = oddcube.Model(demo / "model")
    catalog = model.score(oddcube.Dataset(demo / "dataset"))
    assert_same_catalog(catalog, oddcube.Results(demo / "results").catalog)
    assert catalog.attrs["manifest"]["rank_by"] == "score"


def test_score_equals_the_cli_csv(demo):
    """The same comparison through an independent reader: pandas on catalog.csv."""
    catalog = oddcube.Model(demo / "model").score(demo / "dataset")
    csv = pd.read_csv(demo / "results" / "catalog.csv", keep_default_na=False, na_values=["NaN", "nan", ""])
    for name in ["plateifu", "rank"]:
        assert list(catalog[name].astype(str)) == list(csv[name].astype(str)), name
    for name in ["chi2", "recon", "score", "pvalue", "qvalue"]:
        np.testing.assert_allclose(catalog[name], csv[name], rtol=1e-6, equal_nan=True, err_msg=name)


def test_score_with_out_writes_results(demo, scratch):
    out = scratch / "results"
    catalog = oddcube.Model(demo / "model").score(demo / "dataset", out=out, residuals="top:3")
    written = oddcube.Results(out)
    assert_same_catalog(catalog, written.catalog)
    assert written.manifest["residuals"] == "top:3"


def test_encode_equals_the_cli_latents(demo):
    dataset = oddcube.Dataset(demo / "dataset")
    z = oddcube.Model(demo / "model").encode(dataset.x, dataset.w)
    np.testing.assert_allclose(z, oddcube.Results(demo / "results").latents, rtol=1e-5, atol=1e-6)


def test_reconstruct_matches_stored_residuals(demo):
    results = oddcube.Results(demo / "results")
    dataset = oddcube.Dataset(demo / "dataset")
    plateifu = results.catalog.sort_values("rank")["plateifu"].iloc[0]
    x, w = dataset.galaxy(plateifu)
    xhat = oddcube.Model(demo / "model").reconstruct(x, w)[0]
    stored = results.residuals(plateifu)
    np.testing.assert_array_equal(stored.x, x)
    np.testing.assert_allclose(stored.xhat, xhat, rtol=1e-5, atol=1e-6)


def test_score_arrays_gives_the_per_galaxy_errors(demo):
    """Arrays carry no metadata, so region columns may differ; the reconstruction errors
    depend on x, w and the model only and must agree."""
    dataset = oddcube.Dataset(demo / "dataset")
    model = oddcube.Model(demo / "model")
    by_dir = model.score(dataset)
    names = list(dataset.galaxies["plateifu"])
    by_arrays, latents = model.score(np.asarray(dataset.x), np.asarray(dataset.w), plateifus=names, return_latents=True)
    assert list(by_arrays["plateifu"]) == names
    for name in ["recon", "chi2", "global"]:
        np.testing.assert_allclose(by_arrays[name], by_dir[name], rtol=1e-9, err_msg=name)
    assert latents.shape == (len(names), model.latent_dim)
    # A short, mostly anomalous list keeps honest p-values: the stored null, not the list's own.
    assert by_arrays.attrs["manifest"]["null_fitted_on"] == by_dir.attrs["manifest"]["null_fitted_on"]


def test_wrong_shapes_and_dtypes_raise_value_error(demo):
    model = oddcube.Model(demo / "model")
    L, S = model.n_lines, model.size
    assert L == len(model.lines)
    good = np.zeros((2, L, S, S), np.float32)
    with pytest.raises(ValueError, match=rf"\[N, {L}, {S}, {S}\]"):
        model.encode(np.zeros((2, L, S + 1, S)), good)
    with pytest.raises(ValueError, match="dtype"):
        model.encode(good.astype(str), good)
    with pytest.raises(ValueError, match="must be equal"):
        model.encode(good, good[:1])
    with pytest.raises(ValueError, match="both x and w"):
        model.score(good)
    with pytest.raises(ValueError, match="rank_by"):
        model.score(oddcube.Dataset(demo / "dataset"), rank_by="brightness")
    # A single galaxy [L, S, S] is promoted to a batch of one.
    assert model.encode(good[0], good[0]).shape == (1, model.latent_dim)


def test_missing_model_raises_naming_it(scratch):
    with pytest.raises(oddcube.OddcubeError, match="nope"):
        oddcube.Model(scratch / "nope")


def test_train_from_python_reports_progress(demo, scratch):
    events = []
    model = oddcube.train(
        demo / "dataset", scratch / "model", epochs=1, seed=3,
        progress=lambda stage, done, total, message: events.append((stage, done, total, message)),
    )
    assert isinstance(model, oddcube.Model)
    assert model.training_report["null_n_calibration"] > 0
    assert len(model.history) == 1
    stages = {e[0] for e in events}
    assert any(done == total and total > 0 for _, done, total, _ in events), events[:5]
    assert len(stages) >= 2, stages
    # The same options as the CLI, with its messages.
    with pytest.raises(ValueError, match="arch"):
        oddcube.train(demo / "dataset", scratch / "m2", arch="gan")


def test_restarts_keep_the_lowest_validation_loss(demo, scratch):
    # Both runs members whatever their losses after one epoch (the margin is tested in Rust).
    model = oddcube.train(
        demo / "dataset", scratch / "model", epochs=1, seed=5, restarts=2,
        member_margin=float("inf"),
    )
    runs = model.training_report["restarts"]
    assert [r[0] for r in runs] == [5, 6]
    kept = [r for r in runs if r[4]]
    assert len(kept) == 1 and kept[0][1] == min(r[1] for r in runs)
    assert (scratch / "model" / "restarts.csv").exists()
    assert model.training_report["null_n_calibration"] > 0
    # The other run is the restart ensemble's member, and `score` is the two runs' standardised
    # mean (ensemble.json holds the centre and scale).
    assert model.training_report["ensemble_seeds"] == [5, 6]
    other = 5 if kept[0][0] == 6 else 6
    assert (scratch / "model" / "members" / f"seed-{other}" / "calibration.json").exists()
    catalog = model.score(oddcube.Dataset(demo / "dataset"))
    assert catalog.attrs["manifest"]["ensemble_seeds"] == [5, 6]
    null = json.loads((scratch / "model" / "ensemble.json").read_text())
    mean = (catalog["score_seed_5"] + catalog["score_seed_6"]) / 2
    np.testing.assert_allclose(catalog["score"], (mean - null["centre"]) / null["scale"], rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="restarts"):
        oddcube.train(demo / "dataset", scratch / "m2", restarts=0)
    with pytest.raises(ValueError, match="member_margin"):
        oddcube.train(demo / "dataset", scratch / "m2", member_margin=-0.1)


def test_a_raising_progress_callback_surfaces(demo, scratch):
    def boom(stage, done, total, message):
        raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        oddcube.Model(demo / "model").score(demo / "dataset", progress=boom)


def test_heavy_work_releases_the_gil(demo):
    """While the core encodes, another Python thread keeps running: it records times, and some
    fall strictly inside the call. If the GIL were held for the call, none could."""
    dataset = oddcube.Dataset(demo / "dataset")
    model = oddcube.Model(demo / "model", batch=4)
    x = np.ascontiguousarray(np.concatenate([dataset.x] * 4))
    w = np.ascontiguousarray(np.concatenate([dataset.w] * 4))
    ticks, stop = [], threading.Event()

    def tick():
        while not stop.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)

    thread = threading.Thread(target=tick)
    thread.start()
    time.sleep(0.01)
    start = time.perf_counter()
    model.encode(x, w)
    end = time.perf_counter()
    stop.set()
    thread.join()
    inside = [t for t in ticks if start < t < end]
    assert end - start > 0.02, "the call was too short to tell"
    assert len(inside) >= 3, (len(inside), end - start)


def test_score_files_keeps_the_metadata_arrays_lack(demo):
    """Scoring three of the demo's MAPS files directly gives the rows the whole dataset's
    scoring gives them for every per-galaxy column (the population columns differ: three
    galaxies are a different population), and the region columns that arrays cannot have.
    Tolerance: three galaxies go through the network in another batch than in the whole
    dataset, and the float32 GEMMs sum in another order (measured: 2e-9 relative); 1e-6 still
    catches a different PSF or pixel scale, which moves these columns by per cents."""
    model = oddcube.Model(demo / "model")
    dataset = oddcube.Dataset(demo / "dataset")
    full = model.score(dataset).set_index("plateifu")
    sources = list(dataset.galaxies["source"].iloc[[0, 7, 21]])
    few = model.score_files(sources).set_index("plateifu")
    assert len(few) == 3 and set(few.index) <= set(full.index)
    for name in ["recon", "chi2", "global", "local", "region_dx", "region_dy", "region_area", "psf_fwhm"]:
        if name in full.columns:
            np.testing.assert_allclose(few[name], full.loc[few.index, name], rtol=1e-6, equal_nan=True, err_msg=name)
    assert list(few["region_line"]) == list(full.loc[few.index, "region_line"])
    assert few.attrs["manifest"]["null_fitted_on"] == full.attrs["manifest"]["null_fitted_on"]
