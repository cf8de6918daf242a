"""Every notebook in notebooks/ runs top to bottom in a clean kernel.

The kernel is this interpreter (``sys.executable -m ipykernel_launcher``),
given to nbclient through a kernel spec written to a temporary directory, so
the test does not depend on which ``python3`` kernel spec Jupyter would find
first. Each notebook runs with notebooks/ as its working directory, as in
JupyterLab (``--ServerApp.root_dir=notebooks``).
"""

import json
import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
BOOKS = sorted(NOTEBOOKS.glob("*.ipynb"))
KERNEL = "iommu-viz-test"
TIMEOUT = 60          # seconds per cell
BUDGET = 60           # seconds per notebook, from a clean kernel


@pytest.fixture(scope="module")
def kernel_dir(tmp_path_factory):
    """A Jupyter data dir holding one kernel spec: this interpreter."""
    data = tmp_path_factory.mktemp("jupyter-data")
    spec = data / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f",
                 "{connection_file}"],
        "display_name": "iommu-viz test kernel",
        "language": "python",
    }))
    return data


def test_the_workbook_is_there():
    names = [b.name for b in BOOKS]
    for expected in ("01_page_tables.ipynb", "02_splitting_a_block.ipynb",
                     "03_deferred_invalidation.ipynb",
                     "04_strict_vs_lazy.ipynb", "05_the_2019_thread.ipynb",
                     "06_your_own_system.ipynb"):
        assert expected in names


@pytest.mark.parametrize("path", BOOKS, ids=[b.stem for b in BOOKS])
def test_notebook_is_committed_clean(path):
    """Notebooks are committed without outputs, and end with questions
    whose answers are hidden in <details>."""
    book = nbformat.read(path, as_version=4)
    for cell in book.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: cell has outputs"
            assert cell.execution_count is None
    last = book.cells[-1]
    assert last.cell_type == "markdown" and "Questions" in last.source
    assert "<details>" in last.source and "<summary>" in last.source


@pytest.mark.parametrize("path", BOOKS, ids=[b.stem for b in BOOKS])
def test_notebook_runs(path, kernel_dir, monkeypatch):
    monkeypatch.setenv("JUPYTER_PATH", str(kernel_dir))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    book = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        book, timeout=TIMEOUT, kernel_name=KERNEL,
        resources={"metadata": {"path": str(NOTEBOOKS)}})
    t0 = time.monotonic()
    client.execute()          # raises CellExecutionError on any error
    took = time.monotonic() - t0
    errors = [o for c in book.cells if c.cell_type == "code"
              for o in c.outputs if o.output_type == "error"]
    assert not errors
    assert took < BUDGET, f"{path.name} took {took:.1f} s"
    print(f"{path.name}: {took:.1f} s")
