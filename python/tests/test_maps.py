"""read_maps against astropy's reading of the same HDUs, preprocess against ingest, and the
files ingest skips raising clear errors."""

import gzip
import shutil

import numpy as np
import pytest
from astropy.io import fits

import oddcube
from conftest import REAL_DR15, REAL_DR17


def channel_names(header):
    """EMLINE_GFLUX channel names from the C01… cards, as the DAP writes them."""
    names = []
    for i in range(1, header["NAXIS3"] + 1):
        names.append(header[f"C{i:02d}"].strip() if f"C{i:02d}" in header else header[f"C{i}"].strip())
    return names


@pytest.mark.parametrize("path, lines", [(REAL_DR15, "dr15"), (REAL_DR17, "dr17")])
def test_read_maps_equals_astropy(path, lines):
    maps = oddcube.read_maps(path, lines=lines)
    with fits.open(path) as hdus:
        names = channel_names(hdus["EMLINE_GFLUX"].header)
        assert maps.channels == names
        for i, line in enumerate(maps.lines):
            c = names.index(line)
            # Exact: the same float32 values, NaN in the same places.
            np.testing.assert_array_equal(maps.flux[i], hdus["EMLINE_GFLUX"].data[c].astype(np.float32))
            np.testing.assert_array_equal(maps.ivar[i], hdus["EMLINE_GFLUX_IVAR"].data[c].astype(np.float32))
            np.testing.assert_array_equal(maps.mask[i], hdus["EMLINE_GFLUX_MASK"].data[c].astype(np.int32))
            flux, ivar, mask = maps[line]
            np.testing.assert_array_equal(flux, maps.flux[i])
        primary = hdus[0].header
    assert maps.flux.dtype == np.float32 and maps.mask.dtype == np.int32
    assert maps.flux.shape == (len(maps.lines),) + hdus_shape(path)
    if "PLATEIFU" in primary:
        assert maps.plateifu == primary["PLATEIFU"].strip()
        assert maps.header["ra"] == pytest.approx(primary["OBJRA"])
        assert maps.header["psf_fwhm"] == pytest.approx(primary["RFWHM"])
    else:
        assert maps.plateifu == "tiny-test"  # the file-name fallback


def hdus_shape(path):
    with fits.open(path) as hdus:
        return hdus["EMLINE_GFLUX"].data.shape[1:]


def test_marvin_style_keys():
    maps = oddcube.read_maps(REAL_DR15, lines="dr15")
    ha = maps["emline_gflux_ha_6564"]
    np.testing.assert_array_equal(ha.flux, maps["Ha-6564"].flux)
    with pytest.raises(KeyError, match="Foo-1234"):
        maps["Foo-1234"]


def test_preprocess_equals_ingest(cli, scratch):
    out = scratch / "dataset"
    cli("ingest", REAL_DR15, "--lines", "dr15", "--size", "24", "--out", out)
    dataset = oddcube.Dataset(out)
    x, w = oddcube.read_maps(REAL_DR15, lines="dr15").preprocess(size=24)
    assert x.shape == (19, 24, 24) and x.dtype == np.float32
    np.testing.assert_array_equal(x, dataset.x[0])
    np.testing.assert_array_equal(w, dataset.w[0])
    assert dataset.galaxies.loc[0, "plateifu"] == "7815-3702"
    assert dataset.lines == oddcube.read_maps(REAL_DR15, lines="dr15").lines


def test_preprocess_equals_the_demo_dataset(demo):
    dataset = oddcube.Dataset(demo / "dataset")
    for row in [0, len(dataset) // 2, len(dataset) - 1]:
        source = dataset.galaxies.loc[row, "source"]
        x, w = oddcube.read_maps(source).preprocess(size=dataset.size)
        np.testing.assert_array_equal(x, dataset.x[row])
        np.testing.assert_array_equal(w, dataset.w[row])


def test_usable_matches_the_strict_policy():
    maps = oddcube.read_maps(REAL_DR15, lines="dr15")
    usable = maps.usable()
    donotuse = (maps.mask & ((1 << 30) | (1 << 5))) != 0
    expected = ~donotuse & (maps.ivar > 0) & np.isfinite(maps.flux) & np.isfinite(maps.ivar)
    np.testing.assert_array_equal(usable, expected)


def bad_inputs(directory):
    """One file per kind of input `ingest` skips, with the words its error must contain."""
    real = REAL_DR15.read_bytes()
    cases = []
    truncated = directory / "truncated.fits.gz"
    truncated.write_bytes(real[: len(real) // 2])
    cases.append((truncated, "truncated"))
    text = directory / "notes.fits"
    text.write_text("these are notes, not FITS\n" * 200)
    cases.append((text, "notes.fits"))
    empty = directory / "empty.fits"
    empty.write_bytes(b"")
    cases.append((empty, "empty.fits"))
    cases.append((directory / "missing.fits.gz", "missing.fits.gz"))
    # A well-formed MAPS file whose every flux is NaN: nothing usable.
    nan = directory / "all-nan.fits"
    with fits.open(REAL_DR15) as hdus:
        hdus["EMLINE_GFLUX"].data[:] = np.nan
        hdus.writeto(nan)
    cases.append((nan, "all-nan.fits"))
    return cases


def test_bad_inputs_raise_naming_the_file(scratch):
    for path, words in bad_inputs(scratch):
        with pytest.raises(oddcube.OddcubeError) as err:
            oddcube.read_maps(path, lines="dr15").preprocess()
        message = str(err.value)
        assert path.name in message, message
        assert words in message, message


def test_missing_line_names_the_file_and_the_line():
    with pytest.raises(ValueError, match="Foo-1234"):
        oddcube.read_maps(REAL_DR15, lines="Ha-6564,Foo-1234")
    # The DR15 file lacks lines of the DR17 preset: ingest would skip it, saying which.
    with pytest.raises(oddcube.OddcubeError) as err:
        oddcube.read_maps(REAL_DR15, lines="dr17")
    message = str(err.value)
    assert REAL_DR15.name in message and "dr15" in message, message


def test_bad_options_raise_value_error():
    maps = oddcube.read_maps(REAL_DR15, lines="dr15")
    with pytest.raises(ValueError, match="mask_policy"):
        maps.preprocess(mask_policy="sloppy")
    with pytest.raises(ValueError, match="size"):
        maps.preprocess(size=0)
    with pytest.raises(ValueError, match="lines"):
        oddcube.read_maps(REAL_DR15, lines="")


def test_ingest_skips_bad_files_and_keeps_the_good(scratch):
    bad = scratch / "bad"
    bad.mkdir()
    cases = bad_inputs(bad)
    shutil.copyfile(REAL_DR15, scratch / REAL_DR15.name)
    inputs = [scratch / REAL_DR15.name] + [path for path, _ in cases]
    with pytest.warns(UserWarning, match="skipped"):
        dataset = oddcube.ingest(inputs, scratch / "dataset", lines="dr15", size=16)
    assert len(dataset) == 1
    skipped = dict(dataset.ingest_report["skipped"])
    assert len(skipped) == len(cases)
    assert (scratch / "dataset" / "skipped.csv").exists()
    with pytest.raises(oddcube.OddcubeError, match="no input could be ingested"):
        with pytest.warns(UserWarning):
            oddcube.ingest([path for path, _ in cases], scratch / "none", lines="dr15")


def test_gzip_and_plain_read_the_same(scratch):
    plain = scratch / "plain.fits"
    plain.write_bytes(gzip.decompress(REAL_DR15.read_bytes()))
    a = oddcube.read_maps(REAL_DR15, lines="dr15")
    b = oddcube.read_maps(plain, lines="dr15")
    np.testing.assert_array_equal(a.flux, b.flux)


def test_unknown_header_values_are_nan_floats(scratch):
    """The tiny DR17 file has no OBJRA/OBJDEC/RFWHM cards: NaN in float columns, not None."""
    dataset = oddcube.ingest([REAL_DR17], scratch / "dataset", size=4)
    galaxies = dataset.galaxies
    assert galaxies.loc[0, "plateifu"] == "tiny-test"
    for column in ["ra", "dec", "psf_fwhm"]:
        assert galaxies[column].dtype == np.float64 and np.isnan(galaxies.loc[0, column]), column


def test_simulate_writes_the_kinds_asked_for(scratch):
    default = oddcube.simulate(scratch / "default", 8, seed=3, anomaly_fraction=0.5)
    assert len(default["files"]) == 8 and all(f.exists() for f in default["files"])
    assert set(default["truth"].loc[default["truth"].is_anomaly == 1, "kind"]) == {
        "seyfert", "blueberry", "eelr", "dual_nucleus"}
    held_out = oddcube.simulate(scratch / "held-out", 8, seed=3, anomaly_fraction=0.5, anomaly_kinds=["ring", "outflow"])
    assert held_out["kinds"] == {"ring": 2, "outflow": 2, **{k: v for k, v in default["kinds"].items()
                                                             if k in ("star_forming", "retired")}}
    # The same galaxies are anomalous whichever kinds fill them.
    assert list(held_out["truth"].is_anomaly) == list(default["truth"].is_anomaly)
    for bad in (["retired"], ["quasar"]):
        with pytest.raises(ValueError, match="anomaly kinds are .*dust_lane"):
            oddcube.simulate(scratch / "bad", 4, anomaly_kinds=bad)
