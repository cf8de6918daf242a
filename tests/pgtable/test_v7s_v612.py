"""The v6.12 era of the v7s model: the last io-pgtable-arm-v7s.c that
splits, i.e. v5.4 plus what arrived up to v6.12.

Sources (read, not copied): the pre-image of Jason Gunthorpe's "Remove
split on unmap behavior" (v6.13, fd50651636fb), which is the v6.12 text
of arm_v7s_split_cont (io_pgtable_tlb_flush_walk since fefe8527a1e0,
v5.11), arm_v7s_split_blk_unmap (io_pgtable_tlb_add_page into the
caller's gather), __arm_v7s_unmap (add_page unless
iommu_iotlb_gather_queued, v5.15) and arm_v7s_do_selftests with its
"Partial unmap" loop through unmap_pages/map_pages (v5.14); and the v5.12
iommu pull (Yong Wu's MT8192 series: MediaTek PA bit 34, level-1 table
sized by ias).
"""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iommu_viz import V7sTable
from iommu_viz.pgtable.common import (
    IOMMU_CACHE, IOMMU_NOEXEC, IOMMU_READ, IOMMU_WRITE, SZ_1M, SZ_4K,
    SZ_16M, SZ_64K, PgtableError, RecordingFlushOps,
)
from iommu_viz.pgtable.v7s import TABLE_MEM_BASE
from test_v7s import run_selftest

K = "v6.12"
RW = IOMMU_READ | IOMMU_WRITE
RWXC = IOMMU_READ | IOMMU_WRITE | IOMMU_NOEXEC | IOMMU_CACHE
SELFTEST_BITMAP = SZ_4K | SZ_64K | SZ_1M | SZ_16M
L2_0 = TABLE_MEM_BASE + 0x4000      # first level-2 table, after the 16K pgd


class Gather:
    """Stands in for struct iommu_iotlb_gather (``queued``: v5.15+)."""

    def __init__(self, queued=False):
        self.queued = queued


def flush_names(calls):
    return {c[0] for c in calls}


# ---------------------------------------------------------------- selftest
def run_selftest_v612():
    """arm_v7s_do_selftests as v6.12 has it (the shared replay of
    test_v7s, which keeps the "Partial unmap" loop that v6.13 deleted),
    plus the v6.12 dummy ops' own limit: they have no tlb_flush_leaf, and
    they WARN if no size bit is in the bitmap. Returns the table and the
    flush calls of each phase."""
    pt, phases = run_selftest(K)
    for c in pt.tlb.calls:
        assert c[0] in ("tlb_flush_walk", "tlb_add_page"), c
        size = c[3] if c[0] == "tlb_add_page" else c[2]
        assert size & SELFTEST_BITMAP, c
    return pt, phases


def test_selftest_v612_passes_with_partial_unmap_loop():
    pt, phases = run_selftest_v612()
    assert phases["map"] == []
    assert pt.warnings == []
    assert phases["partial"]


def test_selftest_v612_partial_unmap_calls():
    _, phases = run_selftest_v612()
    assert phases["partial"] == [
        # 64K large page: split_cont waits on a walk flush of the group
        # (from the unmap's own iova), then the page goes to the gather
        ("tlb_flush_walk", 0x1001000, SZ_64K, SZ_64K),
        ("tlb_add_page", None, 0x1001000, SZ_4K),
        # 1M section: split_blk_unmap adds the page to the (NULL) gather
        ("tlb_add_page", None, 0x2001000, SZ_4K),
        # 16M supersection: split_cont, then split_blk_unmap
        ("tlb_flush_walk", 0x3001000, SZ_16M, SZ_16M),
        ("tlb_add_page", None, 0x3001000, SZ_4K),
    ]


def test_selftest_v612_full_unmap_calls():
    # after the partial loop 16M holds 16 small pages, 32M a table and
    # 48M a table plus 15 sections, as in v5.4
    _, phases = run_selftest_v612()
    expect = [("tlb_add_page", None, 0, SZ_4K)]
    expect += [("tlb_add_page", None, 0x1000000 + k * SZ_4K, SZ_4K)
               for k in range(16)]
    expect += [("tlb_flush_walk", 0x2000000, SZ_1M, SZ_4K)]
    expect += [("tlb_flush_walk", 0x3000000, SZ_1M, SZ_4K)]
    expect += [("tlb_add_page", None, 0x3000000 + k * SZ_1M, SZ_1M)
               for k in range(1, 16)]
    assert phases["full"] == expect


def test_selftest_v612_descriptors():
    """The selftest's first loop writes the same words as in v5.4
    (ARM_NS; READ|WRITE|NOEXEC|CACHE), worked out by hand."""
    pt = V7sTable(kernel=K, ns=True)
    for i, size in enumerate([SZ_4K, SZ_64K, SZ_1M, SZ_16M]):
        pt.map(i * SZ_16M, i * SZ_16M, size, RWXC)
    l1 = pt.pgd.ptes
    assert l1[0] == L2_0 | 0x9                   # NS_TABLE | table
    assert l1[16] == (L2_0 + 0x400) | 0x9
    # small page: attrs 0xc7 << 4 | XN bit 0 | C|B | type 0b10
    assert pt._tables[L2_0].ptes[0] == 0x00000C7F
    # large page: XN to bit 15, TEX to bits 14:12, type 0b01
    assert list(pt._tables[L2_0 + 0x400].ptes[:17]) == \
        [0x01009C3D] * 16 + [0]
    # section: 0xc7 << 10 | XN bit 4 | C|B | type | NS bit 19
    assert l1[32] == 0x020B1C1E
    # supersection: plus bit 18 in all 16 entries
    assert list(l1[48:64]) == [0x030F1C1E] * 16


# ---------------------------------------------------------------- splits
def test_split_cont_uses_flush_walk_in_v612_and_flush_leaf_in_v54():
    calls = {}
    for kernel in ("v5.4", K):
        pt = V7sTable(kernel=kernel)
        pt.map(0x200000, 0x30000000, SZ_64K, RWXC)
        pt.map(0x1000000, 0x40000000, SZ_16M)
        assert pt.unmap(0x203000, SZ_4K) == SZ_4K
        assert pt.unmap(0x1000000, SZ_1M) == SZ_1M
        calls[kernel] = pt.tlb.calls
        l2 = pt._deref(pt.pgd.ptes[2]).ptes
        expect = [0x30000C7F + k * SZ_4K for k in range(16)]
        expect[3] = 0
        assert list(l2[:16]) == expect
        assert pt.pgd.ptes[16] == 0
        assert list(pt.pgd.ptes[17:32]) == [0x40031C02 + k * SZ_1M
                                            for k in range(1, 16)]
    assert calls[K] == [
        ("tlb_flush_walk", 0x203000, SZ_64K, SZ_64K),
        ("tlb_add_page", None, 0x203000, SZ_4K),
        ("tlb_flush_walk", 0x1000000, SZ_16M, SZ_16M),
        ("tlb_add_page", None, 0x1000000, SZ_1M),
    ]
    # the only difference from v5.4 is the removed flush_leaf
    renamed = [("tlb_flush_walk",) + c[1:] if c[0] == "tlb_flush_leaf"
               else c for c in calls["v5.4"]]
    assert renamed == calls[K]
    assert "tlb_flush_leaf" in flush_names(calls["v5.4"])


def test_split_blk_unmap_adds_page_even_to_a_queued_gather():
    """v6.12: a leaf unmap asks iommu_iotlb_gather_queued, the split's
    add_page does not."""
    pt = V7sTable(kernel=K)
    pt.map(0, 0, SZ_4K)
    pt.map(SZ_1M, 0x5000000, SZ_1M)
    pt.map(2 * SZ_1M, 0x6000000, SZ_1M)
    q = Gather(queued=True)
    assert pt.unmap(0, SZ_4K, gather=q) == SZ_4K
    assert pt.tlb.calls == []
    assert pt.unmap(SZ_1M + SZ_4K, SZ_4K, gather=q) == SZ_4K
    assert pt.tlb.calls == [("tlb_add_page", q, SZ_1M + SZ_4K, SZ_4K)]
    # a 64 KiB part: the table gets large pages, the gather the 64K
    g = Gather()
    assert pt.unmap(2 * SZ_1M + SZ_64K, SZ_64K, gather=g) == SZ_64K
    assert pt.tlb.calls[-1] == ("tlb_add_page", g, 2 * SZ_1M + SZ_64K,
                                SZ_64K)
    l2 = pt._deref(pt.pgd.ptes[2]).ptes
    assert list(l2[16:32]) == [0] * 16
    assert list(l2[:16]) == [0x00001C31] * 16     # address lost, as v5.4


def test_split_blk_unmap_keeps_the_lost_address_bug():
    pt = V7sTable(kernel=K, ns=True)
    pt.map(0x2000000, 0x2000000, SZ_1M, RWXC)
    assert pt.unmap(0x2001000, SZ_4K) == SZ_4K
    l2 = pt._tables[L2_0].ptes
    assert (l2[0], l2[1], l2[2], l2[255]) == \
        (0x00000C7F, 0, 0x00002C7F, 0x000FFC7F)
    assert pt.iova_to_phys(0x2002042) == 0x2042


def test_split_supersection_elsewhere_unmaps_nothing_v612():
    pt = V7sTable(kernel=K)
    pt.map(0x1000000, 0x20000000, SZ_16M)
    assert pt.unmap(0x1301000, SZ_4K) == 0
    assert pt.tlb.calls == [("tlb_flush_walk", 0x1301000, SZ_16M, SZ_16M)]
    assert list(pt.pgd.ptes[16:32]) == [0x20031C02 + k * SZ_1M
                                        for k in range(16)]
    assert pt.table_count == 1


def test_split_sync_override_uses_flush_walk():
    pt = V7sTable(kernel=K, split_sync=True)
    pt.map(0, 0, SZ_1M)
    assert pt.unmap(SZ_4K, SZ_4K) == SZ_4K
    assert pt.tlb.calls == [("tlb_flush_walk", SZ_4K, SZ_4K, SZ_4K)]
    assert V7sTable(kernel=K).split_sync is False


# ---------------------------------------------------------------- unmap
def test_leaf_unmap_queued_gather_and_count():
    pt = V7sTable(kernel=K)
    pt.map(0, 0, SZ_4K, count=3)
    assert pt.unmap(0, SZ_4K, gather=Gather(queued=True)) == SZ_4K
    assert pt.tlb.calls == []
    g = Gather()
    # unmap_pages: one page at a time, stopping at the first hole
    assert pt.unmap(SZ_4K, SZ_4K, gather=g, count=4) == 2 * SZ_4K
    assert pt.tlb.calls == [("tlb_add_page", g, SZ_4K, SZ_4K),
                            ("tlb_add_page", g, 2 * SZ_4K, SZ_4K)]


def test_table_replaced_by_section_walk_flush():
    pt = V7sTable(kernel=K)
    pt.map(SZ_1M, 0, SZ_4K)
    assert pt.map(SZ_1M, 0x7000000, SZ_1M) == SZ_1M
    assert pt.tlb.calls == [("tlb_flush_walk", SZ_1M, SZ_1M, SZ_4K)]
    assert pt.table_count == 1


def test_non_strict_refused_from_v5_15():
    with pytest.raises(ValueError, match="NON_STRICT quirk is gone in the "
                       "v6.12 era"):
        V7sTable(kernel=K, non_strict=True)
    assert V7sTable(kernel="v5.4", non_strict=True).non_strict


# ---------------------------------------------------------------- geometry
@pytest.mark.parametrize("ias, entries", [(21, 2), (24, 16), (30, 1024),
                                          (32, 4096)])
def test_level1_table_follows_ias(ias, entries):
    """_ARM_V7S_LVL_BITS(1) is ias - 20 since v5.12, for every table."""
    pt = V7sTable(kernel=K, ias=ias)
    assert pt.pgd_entries == entries
    assert len(pt.pgd.ptes) == entries and pt.pgd_size == entries * 4
    top = (1 << ias) - SZ_1M
    pt.map(top, 0x100000, SZ_1M)
    assert pt.level_index(top, 1) == entries - 1
    assert pt.iova_to_phys(top + 0x42) == 0x100042
    assert pt.iova_to_phys(1 << ias) == 0
    with pytest.raises(PgtableError, match=f"{ias}-bit input"):
        pt.map(1 << ias, 0, SZ_4K)
    # v5.4 keeps 4096 entries whatever ias is
    assert V7sTable(kernel="v5.4", ias=ias).pgd_entries == 4096


def test_mtk_ext_v612_bits_and_34_bit_iova():
    pt = V7sTable(kernel=K, ias=34, oas=35, no_perms=True, mtk_ext=True)
    assert pt.pgd_entries == 1 << 14 and pt.pgd_size == 0x10000
    # section: nG|S|TEX1 = 0xc4 << 10 | type 0b10 = 0x31002; PA bits
    # 32 -> bit 9, 33 -> bit 4, 34 -> bit 5
    pt.map(0x3_0000_0000, 0x7_4010_0000, SZ_1M)
    assert pt.level_index(0x3_0000_0000, 1) == 0x3000
    assert pt.pgd.ptes[0x3000] == 0x40131232
    assert pt.iova_to_phys(0x3_0000_0042) == 0x7_4010_0042
    info = pt.describe(1, pt.pgd.ptes[0x3000])
    assert info.attrs.split()[-3:] == ["PA32", "PA33", "PA34"]
    assert info.addr == 0x7_4010_0000
    # small page: 0xc4 << 4 | 0x2 = 0xc42, plus bit 5 for PA bit 34
    pt.map(0, 0x4_0000_3000, SZ_4K)
    assert pt.walk(0)[0].pte == (TABLE_MEM_BASE + 0x10000) | 1
    assert pt.walk(0)[-1].pte == 0x3C62
    assert pt.translate(0x123).paddr == 0x4_0000_3000
    with pytest.raises(PgtableError, match="35-bit output"):
        pt.map(SZ_1M, 1 << 35, SZ_1M)
    with pytest.raises(ValueError, match="ias 35"):
        V7sTable(kernel=K, ias=35, oas=35, no_perms=True, mtk_ext=True)
    with pytest.raises(ValueError, match="ias 33"):
        V7sTable(kernel=K, ias=33)
    with pytest.raises(ValueError, match="ARM_MTK_EXT quirk needs NO_PERMS"):
        V7sTable(kernel=K, mtk_ext=True)


def test_descriptor_bits_v612():
    pt = V7sTable(kernel=K)
    pt.map(0x100000, 0x12345000, SZ_4K, IOMMU_READ)
    assert pt.walk(0x100000)[-1].pte == 0x12345E72
    pt.map(0x200000, 0x50010000, SZ_64K, RW | IOMMU_CACHE)
    assert pt.walk(0x20f000)[-1].pte == 0x50011C3D
    pt.map(0x1000000, 0x60000000, SZ_16M, RW | IOMMU_NOEXEC)
    # 0xc7 << 10 | XN bit 4 | type | supersection bit 18
    assert pt.walk(0x1abc000)[-1].pte == 0x60071C12
    assert pt.describe(1, 0x60071C12).kind == "supersection"
    assert pt.translate(0x1abc000).contiguous == 16
    assert repr(pt).startswith("V7sTable(ias=32, oas=32, kernel='v6.12'")


# ---------------------------------------------------------------- oracle
_SIZES = [SZ_4K, SZ_64K, SZ_1M, SZ_16M]
_ops = st.lists(st.tuples(
    st.sampled_from(["map", "unmap"]),
    st.integers(0, 3),                    # page size
    st.integers(0, 63),                   # slot, in units of the size
    st.integers(1, 3),                    # count
    st.sampled_from([RW, IOMMU_READ, RWXC]),
), min_size=1, max_size=25)


def _apply(pt, op):
    kind, si, slot, count, prot = op
    size = _SIZES[si]
    iova = (slot * size) % (64 * SZ_1M)
    try:
        if kind == "map":
            return pt.map(iova, 0x80000000 + iova, size, prot, count)
        return pt.unmap(iova, size, None, count)
    except PgtableError as e:
        return e.errno


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(_ops)
def test_v612_is_v54_with_flush_walk_for_flush_leaf(ops):
    """Same descriptors, same results, same TLB calls but for the
    removed tlb_flush_leaf (ias 32, no MediaTek quirks, NULL gather)."""
    a = V7sTable(kernel="v5.4", tlb=RecordingFlushOps())
    b = V7sTable(kernel=K, tlb=RecordingFlushOps())
    for op in ops:
        assert _apply(a, op) == _apply(b, op)
        assert a.snapshot() == b.snapshot()
    renamed = [("tlb_flush_walk",) + c[1:] if c[0] == "tlb_flush_leaf"
               else c for c in a.tlb.calls]
    assert renamed == b.tlb.calls
    assert "tlb_flush_leaf" not in flush_names(b.tlb.calls)


# ---------------------------------------------------------------- system
@pytest.mark.parametrize("kernel", ["v4.20", "v5.4", "v6.12", "v6.13"])
@pytest.mark.parametrize("strict", [True, False])
def test_simulation_v7s_every_era(kernel, strict):
    from iommu_viz.sim.system import Simulation
    sim = Simulation(fmt="v7s", kernel=kernel, strict=strict)
    assert sim.pt.kernel == kernel and sim.pt.fmt == "v7s"
    sim.map(0x200000, 0x90000000, SZ_64K)
    sim.map(0x300000, 0x90100000, SZ_1M)
    n = len(sim.events)
    got = (sim.unmap(0x201000, SZ_4K), sim.unmap(0x301000, SZ_4K))
    funcs = [e.func for e in sim.events[n:]]
    if kernel == "v6.13":
        assert got == (0, 0)
        assert sim.pt.warnings
        return
    assert got == (SZ_4K, SZ_4K)
    assert "arm_v7s_split_cont" in funcs
    assert "arm_v7s_split_blk_unmap" in funcs
    if kernel == "v6.12":
        assert "arm_smmu_tlb_inv_walk" in funcs
        assert "arm_smmu_tlb_inv_leaf" not in funcs
        # lazy: the leaf is left to the queue, the split still gathers
        adds = funcs.count("iommu_iotlb_gather_add_page")
        assert adds == (2 if strict else 1)
    elif kernel == "v5.4":
        assert "arm_smmu_tlb_inv_leaf" in funcs
    sim.advance(20)
    assert sim.access(0x301000).paddr is None
    assert sim.access(0x302000).paddr == 0x2000    # the kept split bug
