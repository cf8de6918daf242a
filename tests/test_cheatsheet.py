"""The cheat sheet: generated from the model, every cell checked against a
direct run of the Simulation API, and the README's copy fresh."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from iommu_viz import SZ_2M, SZ_4K, Simulation
from iommu_viz.cheatsheet import (
    BBMLS, CALLERS, END, START, TLBI_BY, build, case_text, main,
    readme_block, write_readme,
)
from iommu_viz.pgtable.common import KERNELS

ROOT = Path(__file__).resolve().parents[1]
LETTER = {"translated": "T", "fault": "F", "stale": "S", "conflict": "C"}


@pytest.fixture(scope="module")
def sheet():
    return build()


def _letters(a):
    return "".join(LETTER[o] for o in ("translated", "fault", "stale",
                                       "conflict") if o in a.allowed)


def _direct(era, strict, caller, bbml):
    """The case written straight against the Simulation API."""
    sim = Simulation(kernel=era, strict=strict, bbml=bbml)
    sim.map(0x40000000, 0x80000000, SZ_2M)
    sim.access(0x40001000)
    if caller == "unmap":
        sim.unmap(0x40001000, SZ_4K)
    else:
        g = sim.new_gather()
        sim.unmap_fast(0x40001000, SZ_4K, g)
    sim.speculate(0x40002000)
    window = (_letters(sim.access(0x40001000)),
              _letters(sim.access(0x40002000)))
    if caller == "fast+sync":
        sim.iotlb_sync(g)
    sim.advance(11)
    after = (_letters(sim.access(0x40001000)),
             _letters(sim.access(0x40002000)))
    return window, after, sim


def test_readme_is_fresh(sheet):
    """Fails when the README's table differs from the generator's: run
    python -m iommu_viz.cheatsheet --write-readme."""
    readme = (ROOT / "README.md").read_text()
    assert readme.count(START) == 1 and readme.count(END) == 1
    block = readme[readme.index(START):readme.index(END) + len(END)]
    assert block == readme_block(sheet)


def test_every_case_is_there(sheet):
    assert {"v4.20", "v5.4", "v6.12", "v6.13"} <= set(KERNELS)
    keys = [(r.era, r.strict, r.caller) for r in sheet.rows]
    assert keys == [(e, s, c) for e in KERNELS for s in (True, False)
                    for c in CALLERS]
    for r in sheet.rows:
        assert sorted(r.cells) == list(BBMLS)
        assert r.tlbi_by in TLBI_BY, r
    folded = sheet.folded()
    covered = set()
    for era, mode, caller, r in folded:
        modes = {"strict": [True], "lazy": [False]}.get(mode, [True, False])
        callers = CALLERS if caller == "any" else [caller]
        for s in modes:
            for c in callers:
                full = sheet.row(era, s, c)
                assert (full.tlbi_by, full.closes, full.cells) == \
                    (r.tlbi_by, r.closes, r.cells)
                covered.add((era, s, c))
    assert covered == set(keys)
    assert len(folded) < len(keys)


def test_cells_agree_with_direct_runs(sheet):
    for r in sheet.rows:
        for bbml in BBMLS:
            window, after, _ = _direct(r.era, r.strict, r.caller, bbml)
            assert r.cells[bbml] == window, (r, bbml)
            assert r.after[bbml] == after, (r, bbml)


def test_what_the_table_says(sheet):
    """Facts the model must keep (and the columns must read right)."""
    for r in sheet.rows:
        if r.closes not in ("never", "no split"):
            assert all(r.after[b] == ("F", "T") for b in BBMLS), r
        if r.closes == "never":
            assert r.after == r.cells, r
        assert "C" not in r.cells[2][1]            # BBML2: never a conflict
        assert r.cells[0] == r.cells[1]            # no nT sequence: as BBML0
    for c in CALLERS:
        for s in (True, False):
            assert sheet.row("v4.20", s, c).tlbi_by == "split"
            assert sheet.row("v6.13", s, c).tlbi_by == "refused"
            assert sheet.row("v6.13", s, c).cells[0] == ("T", "T")
    assert sheet.row("v5.4", True, "unmap").closes == "in the call"
    assert sheet.row("v5.4", True, "fast+sync").closes == "at the sync"
    assert sheet.row("v5.4", True, "fast").cells[0] == ("FS", "TC")
    assert sheet.row("v5.4", False, "unmap").closes == "FQ, 10 ms"


def test_columns_are_read_from_events(sheet):
    """The 'TLBI by' column follows the run: the caller's sync queues the
    TLBI in v5.4, the split itself in v4.20, and a TTL miss event is
    recorded where the table says TTL."""
    _, _, sim = _direct("v5.4", True, "fast+sync", 0)
    issued = [e.func for e in sim.events if e.kind == "cmd_issue"
              and e.detail.get("op") == "CMD_TLBI_NH_VA"]
    assert issued == ["arm_smmu_iotlb_sync"]
    _, _, sim = _direct("v4.20", True, "fast", 0)
    assert any(e.func == "arm_smmu_tlb_sync" for e in sim.events)
    for r in sheet.rows:
        _, _, sim = _direct(r.era, r.strict, r.caller, 0)
        ttl = any(e.kind == "ttl_miss" for e in sim.events)
        assert (r.tlbi_by == "TTL") == (ttl and r.closes == "never")
    assert any("Without range invalidation" in n for n in sheet.notes)


def test_text_and_markdown(sheet):
    text = sheet.text()
    assert text.isascii()
    assert max(len(line) for line in text.splitlines()) <= 72
    md = sheet.markdown()
    for code in sheet.codes():
        assert f"`{code}`" in md
        src = TLBI_BY[code][1]
        assert (src in md) if src else "the model's reasoning" in md
    assert "map 0x40000000 0x80000000 2M" in case_text("v5.4", True, "fast")


def test_legend_links_are_in_the_workbooks_forms():
    """Kernel code by identifier at a modelled era's tag, commits as
    git.kernel.org/torvalds/c/<hash> (the notebooks' forms)."""
    eras = set(KERNELS)
    for code, (_words, src) in TLBI_BY.items():
        if src is None:
            continue
        m = re.fullmatch(r"https://elixir\.bootlin\.com/linux/([^/]+)/A/"
                         r"ident/\w+", src)
        c = re.fullmatch(r"https://git\.kernel\.org/torvalds/c/"
                         r"[0-9a-f]{12,40}", src)
        assert (m and m.group(1) in eras) or c, f"{code}: {src}"


def test_fast_enough():
    t0 = time.perf_counter()
    build.__wrapped__()          # uncached
    assert time.perf_counter() - t0 < 3.0


def test_write_readme(tmp_path, capsys):
    p = tmp_path / "README.md"
    p.write_text("# title\n\nintro\n")
    assert write_readme(p) is True
    first = p.read_text()
    assert "## Cheat sheet" in first and START in first and END in first
    assert write_readme(p) is False
    p.write_text(first.replace("| v4.20 |", "| v9.99 |"))
    assert write_readme(p) is True and p.read_text() == first
    assert main(["--write-readme", str(p)]) == 0
    assert "already up to date" in capsys.readouterr().out
    assert main(["--write-readme", str(tmp_path / "missing" / "R.md")]) == 1
    assert "cannot update" in capsys.readouterr().err
    assert main([]) == 0
    assert capsys.readouterr().out.startswith("Cheat sheet:")


def test_cli_cheatsheet(capsys):
    from iommu_viz.cli import main as cli
    assert cli(["cheatsheet"]) == 0
    assert capsys.readouterr().out == build().text() + "\n"
    assert cli(["cheatsheet", "--markdown"]) == 0
    assert capsys.readouterr().out == build().markdown() + "\n"
