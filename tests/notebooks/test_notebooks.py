"""Every notebook in notebooks/ runs top to bottom in a clean kernel.

The kernel is this interpreter (``sys.executable -m ipykernel_launcher``),
given to nbclient through a kernel spec written to a temporary directory, so
the test does not depend on which ``python3`` kernel spec Jupyter would find
first. Each notebook runs with notebooks/ as its working directory, as in
JupyterLab (``--ServerApp.root_dir=notebooks``); notebook 06 finds its
example log through the package, so any working directory would do.

Also checked without running: notebooks are committed without outputs,
answers are not typed into hidden ``<details>`` blocks (the predict
questions compute them: test_claims.py), every notebook links the glossary
and its sources (kernel lines at a release tag, commits, list messages), and
the glossary anchors they link exist.
"""

import json
import re
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
BUDGET = 20           # seconds per notebook, from a clean kernel
WORKBOOK_BUDGET = 60  # seconds for all of them together
TAKEN: dict = {}
GLOSSARY = ROOT / "docs" / "glossary.md"
ERAS = {"v4.20", "v5.4", "v6.1", "v6.12", "v6.13"}


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
                     "06_your_own_system.ipynb",
                     "07_exercises_and_cheat_sheet.ipynb", "A1_v7s_appendix.ipynb"):
        assert expected in names


def _markdown(path):
    book = nbformat.read(path, as_version=4)
    return "\n".join(c.source for c in book.cells if c.cell_type == "markdown")


def test_v7s_appendix_is_linked_from_01_and_02():
    for stem in ("01_page_tables", "02_splitting_a_block"):
        assert "(A1_v7s_appendix.ipynb)" in _markdown(NOTEBOOKS / f"{stem}.ipynb")


def _anchors():
    return {re.sub(r"[^a-z0-9_ -]", "", ln[4:].strip().lower()).replace(" ", "-")
            for ln in GLOSSARY.read_text().splitlines() if ln.startswith("### ")}


@pytest.mark.parametrize("path", BOOKS, ids=[b.stem for b in BOOKS])
def test_notebook_links_glossary_and_sources(path):
    text = _markdown(path)
    assert not re.search(r"\{(ident|src|commit|lore|g)\(", text), \
        f"{path.name}: an unexpanded link template"
    used = set(re.findall(r"\.\./docs/glossary\.md#([a-z0-9_-]+)", text))
    missing = used - _anchors()
    assert not missing, f"{path.name} links missing glossary terms {missing}"
    sources = re.findall(r"\((https://(?:elixir\.bootlin\.com|git\.kernel\.org|"
                         r"lore\.kernel\.org|developer\.arm\.com)[^)]*)\)", text)
    assert len(sources) >= 3, f"{path.name}: {len(sources)} source links"
    for url in sources:
        m = re.match(r"https://elixir\.bootlin\.com/linux/([^/]+)/", url)
        if m:
            assert m.group(1) in ERAS, f"{url}: not a release tag we model"
        m = re.match(r"https://git\.kernel\.org/torvalds/c/([0-9a-f]+)$", url)
        if "git.kernel.org" in url:
            assert m and len(m.group(1)) >= 12, f"{url}: not a commit link"
    if not path.stem.startswith("A"):
        assert used, f"{path.name} links no glossary term"


@pytest.mark.parametrize("path", BOOKS, ids=[b.stem for b in BOOKS])
def test_notebook_is_committed_clean(path):
    """Notebooks are committed without outputs, and no answer is typed
    into a hidden <details> block: questions are ask() widgets whose
    answer the model computes (test_claims.py)."""
    book = nbformat.read(path, as_version=4)
    for cell in book.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: cell has outputs"
            assert cell.execution_count is None
        else:
            assert "<details>" not in cell.source, \
                f"{path.name}: a typed answer in <details>"


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
    TAKEN[path.name] = took
    print(f"{path.name}: {took:.1f} s")


def test_whole_workbook_is_fast():
    """Runs after the notebooks (pytest keeps file order): their sum."""
    if len(TAKEN) != len(BOOKS):
        pytest.skip("not every notebook ran in this session")
    assert sum(TAKEN.values()) < WORKBOOK_BUDGET, TAKEN
