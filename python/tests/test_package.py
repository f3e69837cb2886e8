"""The package as a whole: version, exceptions, the stubs and documentation."""

import re
from importlib import metadata

import oddcube
from conftest import REPO


def test_version_equals_the_crates():
    cargo = (REPO / "Cargo.toml").read_text()
    workspace = re.search(r'\[workspace\.package\][^\[]*?version\s*=\s*"([^"]+)"', cargo, re.S).group(1)
    assert oddcube.__version__ == workspace
    assert oddcube.CORE_VERSION == workspace
    assert metadata.version("oddcube") == workspace


def test_errors_are_one_exception_class():
    assert issubclass(oddcube.OddcubeError, Exception)
    assert oddcube.OddcubeError is oddcube._oddcube.OddcubeError


def test_public_api_is_documented():
    for name in oddcube.__all__:
        item = getattr(oddcube, name)
        if callable(item) and not isinstance(item, str):
            assert item.__doc__, f"oddcube.{name} has no docstring"
    assert oddcube.__doc__ and "read_maps" in oddcube.__doc__


def test_stub_names_every_extension_function():
    stub = (REPO / "python" / "oddcube" / "_oddcube.pyi").read_text()
    for name in dir(oddcube._oddcube):
        if not name.startswith("_"):
            assert re.search(rf"\b{name}\b", stub), f"_oddcube.pyi lacks {name}"
