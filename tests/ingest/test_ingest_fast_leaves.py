"""The replay's shortcut for granule pages (engine.FAST_LEAVES: writing a
page straight into a last-level table it has seen, see tables.LeafSlots)
changes nothing: random logs replayed with and without it give the same
tables, descriptor for descriptor, and the same summary."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from iommu_viz.ingest import engine, replay

SIZES = [1, 1, 1, 2, 3, 4, 16, 512, 513, 1024]


@st.composite
def logs(draw):
    g = draw(st.sampled_from([1 << 12, 1 << 14, 1 << 16]))
    base = 0x40000000
    lines = []
    for _ in range(draw(st.integers(1, 40))):
        off = draw(st.one_of(st.integers(0, 1100),
                             st.sampled_from([0, 510, 511, 512, 1024]))) * g
        n = draw(st.sampled_from(SIZES))
        pa = 0x80000000 + draw(st.integers(0, 1100)) * g
        kind = draw(st.sampled_from(["map", "unmap", "dmap", "dunmap",
                                     "fault"]))
        if kind == "map":
            lines.append(f"map: IOMMU: iova=0x{base + off:x} paddr=0x{pa:x} "
                         f"size={n * g}")
        elif kind == "dmap":      # a pr_debug request with no pieces
            lines.append(f"iommu: map: iova 0x{base + off:x} pa 0x{pa:x} "
                         f"size 0x{n * g:x}")
        elif kind == "unmap":
            lines.append(f"unmap: IOMMU: iova=0x{base + off:x} size={n * g}"
                         f" unmapped_size={n * g}")
        elif kind == "dunmap":
            lines.append(f"iommu: unmap this: iova 0x{base + off:x} size "
                         f"0x{n * g:x}")
        else:
            lines.append("AMD-Vi: Event logged [IO_PAGE_FAULT device=00:14.0"
                         f" domain=0x1 address=0x{base + off:x} flags=0x0]")
    return g, lines


def _state(r):
    snap = r.table.snapshot()
    tables = sorted((t.level, t.iova, t.entries) for t in snap.tables.values())
    return tables, r.summary.to_dict(), r.rejected


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(logs(), st.sampled_from(["v4.20", "v5.4", "v6.12", "v6.13"]))
def test_the_leaf_shortcut_changes_nothing(monkeypatch, case, kernel):
    g, lines = case
    with monkeypatch.context() as m:
        m.setattr(engine, "FAST_LEAVES", False)
        want = _state(replay(lines, granule=g, kernel=kernel))
    assert _state(replay(lines, granule=g, kernel=kernel)) == want


def test_the_shortcut_is_taken():
    lines = [f"map: IOMMU: iova=0x{0x1000 * k:x} paddr=0x{0x1000 * k:x} "
             "size=4096" for k in range(1, 5)]
    r = replay(lines)
    assert r.summary.pages_mapped == {4096: 4}
    e = engine._Engine(4096, "v5.4", 48)
    assert e.leaf is not None and e.leaf.ok
    assert e.leaf.unmap_calls == (("tlb_add_page", 1),)


@pytest.mark.parametrize("kernel, calls", [
    ("v4.20", (("tlb_add_flush", 1),)), ("v6.12", (("tlb_add_page", 1),))])
def test_the_shortcut_learns_the_era_from_the_model(kernel, calls):
    assert engine._Engine(4096, kernel, 48).leaf.unmap_calls == calls
