"""The faults of a replay drawn: marked on the page-table tree (DOT and
text) and on the replay's timeline; the marks point at the entry a walk
of the faulting address ends on."""

from __future__ import annotations

import pytest

from iommu_viz.ingest import replay
from iommu_viz.render.tree import fault_slot, tree_dot_faults, \
    tree_text_faults

FT = "  kworker/2:1-88   [002] .....  {:.6f}: "
LINES = [
    FT.format(1.0) + "map: IOMMU: dev=gpu iova=0x40000000 paddr=0x880000000 "
    "size=2097152",
    FT.format(1.5) + "unmap: IOMMU: dev=gpu iova=0x40005000 size=4096 "
    "unmapped_size=4096",
    "[    1.600000] AMD-Vi: Event logged [IO_PAGE_FAULT device=00:14.0 "
    "domain=0x1 address=0x40005008 flags=0x20]",
    "[    1.700000] AMD-Vi: Event logged [IO_PAGE_FAULT device=00:14.0 "
    "domain=0x1 address=0x7000 flags=0x20]",
]


@pytest.fixture(scope="module")
def rep():
    return replay(LINES, kernel="v5.4")


def test_fault_slot_is_where_the_walk_ends(rep):
    snap = rep.table.snapshot()
    pa, idx, level, kind = fault_slot(snap, 0x40005008)
    assert (idx, level, kind) == (5, 3, "invalid")
    assert snap.tables[pa].level == 3
    # an address under no table: the walk ends on an invalid level-1 entry
    assert fault_slot(snap, 0x7000)[2:] == (1, "invalid")
    assert fault_slot(snap, 1 << 48) is None


def test_tree_dot_marks_each_fault(rep):
    snap = rep.table.snapshot()
    dot = tree_dot_faults(snap, rep.faults, title="t")
    pa, idx, _, _ = fault_slot(snap, 0x40005008)
    assert f"fault0 -> t{pa:x}:r5" in dot
    assert "line 3: fault at 0x40005008<BR/>use after unmap" in dot
    assert dot.count("shape=note") == 2
    assert dot.rstrip().endswith("}")
    assert tree_dot_faults(snap, []) == \
        __import__("iommu_viz.render.tree", fromlist=["tree_dot"]).tree_dot(
            snap)


def test_tree_text_lists_the_faults(rep):
    text = tree_text_faults(rep.table.snapshot(), rep.faults)
    lines = text.splitlines()
    i = lines.index("Faults (the entry each faulting address walks to):")
    assert lines[i + 1] == "  line 3: fault at 0x40005008: use after unmap"
    assert lines[i + 2].endswith("[5]: invalid")
    assert all(len(ln) <= 72 and ln.isascii() for ln in lines)


def test_timeline_marks_faults_and_windows(rep):
    from iommu_viz.render.timeline import replay_timeline_figure
    fig = replay_timeline_figure(rep)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["gpu", "faults"]
    notes = [t.get_text() for t in ax.texts]
    assert notes == ["0x40005008: use after unmap", "0x7000: never mapped"]
    # the use-after-unmap bar runs from the unmap (1.5 s) to the fault
    bars = [ln.get_xdata() for ln in ax.lines if ln.get_linestyle() == "-"]
    assert [list(map(float, b)) for b in bars] == [[1.5, 1.6]]
    assert ax.get_xlabel() == "log time (s)"


def test_timeline_needs_the_events():
    r = replay(LINES, keep_events=False)
    from iommu_viz.render.timeline import replay_timeline_figure
    with pytest.raises(ValueError, match="keep_events=True"):
        replay_timeline_figure(r)
