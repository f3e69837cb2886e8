"""The quickstart notebook executes headless, top to bottom, without error; the figures it draws
are checked for being figures (PNG outputs), and the committed notebook carries no outputs."""

import json

import nbformat
from nbclient import NotebookClient

from conftest import REPO

NOTEBOOK = REPO / "examples" / "notebooks" / "quickstart.ipynb"


def test_committed_notebook_has_no_outputs():
    nb = json.loads(NOTEBOOK.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None


def test_quickstart_executes(scratch):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(scratch)}}).execute()
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 3, f"expected 3 figures, got {len(images)}"
    assert (scratch / "quickstart-run" / "results" / "catalog.parquet").exists()
