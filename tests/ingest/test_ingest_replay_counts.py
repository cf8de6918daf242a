"""Replay counts that the fast paths keep without the table's trace hook:
splits and refused partial unmaps of multi-page unmaps (__iommu_unmap's
per-page loop), a map request refused part way (iommu_map's clean-up),
the leaves of the final table and the line of the peak."""

from __future__ import annotations

import pytest

from iommu_viz import SZ_4K, SZ_2M
from iommu_viz.ingest import replay

SZ_1G = 1 << 30


def _map(iova, pa, size):
    return (f"map: IOMMU: iova=0x{iova:016x} - 0x{iova + size:016x} "
            f"paddr=0x{pa:016x} size={size}")


def _unmap(iova, size, unmapped=None):
    return (f"unmap: IOMMU: iova=0x{iova:016x} size={size} "
            f"unmapped_size={size if unmapped is None else unmapped}")


def _walk_leaves(table):
    out = {}
    for _iova, _pa, size, _lvl, _pte in table.mappings():
        out[size] = out.get(size, 0) + 1
    return dict(sorted(out.items()))


@pytest.mark.parametrize("kernel, splits, refused, leaves", [
    ("v4.20", 1, 0, {SZ_4K: 508}),
    ("v5.4", 1, 0, {SZ_4K: 508}),
    ("v6.13", 0, 1, {SZ_2M: 1}),
])
def test_multi_page_unmap_inside_a_block(kernel, splits, refused, leaves):
    # 16K out of a 2M block: four page-sized unmaps, the first splits
    r = replay([_map(0x40000000, 0x80000000, SZ_2M),
                _unmap(0x40008000, 4 * SZ_4K)], kernel=kernel)
    s = r.summary
    assert (s.blocks_split, s.refused_partial_unmaps) == (splits, refused)
    assert s.leaves == leaves == _walk_leaves(r.table)
    assert s.unmatched_unmaps == 0
    assert s.log_disagreements == (0 if refused == 0 else 1)


@pytest.mark.parametrize("kernel", ["v4.20", "v5.4"])
def test_page_unmap_inside_a_1g_block_splits_twice(kernel):
    r = replay([_map(SZ_1G, 2 * SZ_1G, SZ_1G),
                _unmap(SZ_1G + SZ_2M + 0x3000, 2 * SZ_4K)], kernel=kernel)
    s = r.summary
    assert s.blocks_split == 2
    assert s.leaves == {SZ_4K: 510, SZ_2M: 511} == _walk_leaves(r.table)
    assert s.mapped == SZ_1G - 2 * SZ_4K


def test_multi_page_unmap_stops_at_the_first_hole():
    lines = [_map(0x10000, 0x90000, SZ_4K), _map(0x11000, 0x91000, SZ_4K),
             _map(0x13000, 0x93000, SZ_4K), _unmap(0x10000, 4 * SZ_4K)]
    s = replay(lines).summary
    assert (s.unmatched_unmaps, s.unmatched_bytes) == (1, 2 * SZ_4K)
    assert s.mapped == SZ_4K and s.log_disagreements == 1
    assert s.leaves == {SZ_4K: 1}


def test_multi_page_unmap_beyond_the_address_size_changes_nothing():
    top = (1 << 40) - SZ_4K
    r = replay([_map(top, 0x1000, SZ_4K), _unmap(top, 2 * SZ_4K)], ias=40)
    assert r.summary.rejected == 1 and r.summary.mapped == SZ_4K
    assert "beyond the 40-bit input address size" in r.rejected[0][1]
    assert r.table.iova_to_phys(top) == 0x1000
    assert r.summary.leaves == {SZ_4K: 1}


def test_map_refused_part_way_is_undone():
    # v5.4 maps a 16K request a page at a time; the third page is taken
    lines = [_map(0x22000, 0x5000, SZ_4K), _map(0x20000, 0x80000, 4 * SZ_4K)]
    r = replay(lines, kernel="v5.4")
    s = r.summary
    assert s.rejected == 1 and r.rejected[0][0] == 2
    assert s.mapped == SZ_4K and s.leaves == {SZ_4K: 1}
    assert s.pages_mapped == {SZ_4K: 1}
    # the two pages mapped before the refusal were unmapped again
    assert s.tlb_calls == {"tlb_add_page": 2}
    assert r.table.iova_to_phys(0x22000) == 0x5000


def test_peak_line_is_where_the_peak_was_first_reached():
    lines = ["noise", _map(0x1000, 0x1000, SZ_4K), _map(0x2000, 0x2000, SZ_4K),
             _unmap(0x1000, SZ_4K), _map(0x3000, 0x3000, SZ_4K),
             _map(0x4000, 0x4000, SZ_4K), _unmap(0x4000, SZ_4K),
             _map(0x5000, 0x5000, SZ_4K)]
    s = replay(lines).summary
    assert (s.peak_mapped, s.peak_line) == (3 * SZ_4K, 6)


def test_leaves_of_a_mixed_table_match_a_walk():
    lines = [_map(0x40000000, 0x80000000, 4 * SZ_2M),
             _map(0x100000, 0x200000, 64 * SZ_4K),
             _unmap(0x40201000, SZ_4K), _unmap(0x40400000, SZ_2M),
             _map(0x80000000, 0x80000000, SZ_1G)]
    for kernel in ("v4.20", "v5.4", "v6.13"):
        r = replay(lines, kernel=kernel)
        assert r.summary.leaves == _walk_leaves(r.table)
        assert sum(k * v for k, v in r.summary.leaves.items()) == \
            r.summary.mapped
