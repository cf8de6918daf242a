"""The Armv7 short-descriptor model (io-pgtable-arm-v7s.c) against the
kernel's own selftest, hand-derived descriptor values, an independent
flat oracle, and bad input.

Selftest: arm_v7s_do_selftests. v4.20 and v5.4 run the "Partial unmap"
loop (4 KiB out of the 64 KiB large page, the 1 MiB section and the 16
MiB supersection); v6.13 deleted it along with the split code
(fd50651636fb, "iommu/io-pgtable-arm-v7s: Remove split on unmap
behavior"). The dummy flush ops WARN when a flushed size has no bit in
common with the pgsize bitmap; the recorded calls are checked for that
and, phase by phase, for the exact sequence each era makes.
"""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iommu_viz import V7sTable
from iommu_viz.pgtable.common import (
    IOMMU_CACHE, IOMMU_MMIO, IOMMU_NOEXEC, IOMMU_PRIV, IOMMU_READ,
    IOMMU_WRITE, SZ_1G, SZ_1M, SZ_2G, SZ_2M, SZ_4K, SZ_16M, SZ_64K,
    PgtableError,
)
from iommu_viz.pgtable.v7s import TABLE_MEM_BASE

ERAS = ["v4.20", "v5.4", "v6.13"]
SPLIT_ERAS = ["v4.20", "v5.4"]
RW = IOMMU_READ | IOMMU_WRITE
RWXC = IOMMU_READ | IOMMU_WRITE | IOMMU_NOEXEC | IOMMU_CACHE
SELFTEST_BITMAP = SZ_4K | SZ_64K | SZ_1M | SZ_16M
PARTIAL_WARNING = "Unmap of a partial large IOPTE is not allowed"
L2_0 = TABLE_MEM_BASE + 0x4000      # first level-2 table, after the 16K pgd


class Gather:
    """Stands in for struct iommu_iotlb_gather."""

    def __init__(self, queued=False):
        self.queued = queued


def call_ranges(calls):
    """(start, end) iova ranges that the recorded flush calls invalidate."""
    out = []
    for c in calls:
        if c[0] == "tlb_add_page":
            out.append((c[2], c[2] + c[3]))
        elif c[0] in ("tlb_flush_walk", "tlb_flush_leaf", "tlb_add_flush"):
            out.append((c[1], c[1] + c[2]))
        elif c[0] == "tlb_flush_all":
            out.append((0, 1 << 64))
    return out


def check_dummy_ops(calls, bitmap):
    """dummy_tlb_flush / dummy_tlb_add_page: WARN_ON(!(size & bitmap))."""
    for c in calls:
        if c[0] == "tlb_add_page":
            assert c[3] & bitmap, c
        elif c[0] in ("tlb_flush_walk", "tlb_flush_leaf", "tlb_add_flush"):
            assert c[2] & bitmap, c


# ---------------------------------------------------------------- selftest
def run_selftest(kernel):
    """arm_v7s_do_selftests, step by step; returns the table and the flush
    calls of each phase."""
    pt = V7sTable(ias=32, oas=32, kernel=kernel, ns=True,
                  pgsize_bitmap=SELFTEST_BITMAP)
    phases = {}
    for iova in (42, SZ_1G + 42, SZ_2G + 42):
        assert pt.iova_to_phys(iova) == 0

    sizes = [SZ_4K, SZ_64K, SZ_1M, SZ_16M]       # for_each_set_bit
    iova = 0
    for size in sizes:
        assert pt.map(iova, iova, size, RWXC) == size
        before = pt.snapshot()
        with pytest.raises(PgtableError) as exc:    # overlapping mappings
            pt.map(iova, iova + size, size, IOMMU_READ | IOMMU_NOEXEC)
        assert exc.value.errno == "EEXIST"
        assert pt.snapshot() == before
        assert pt.iova_to_phys(iova + 42) == iova + 42
        iova += SZ_16M
    phases["map"] = list(pt.tlb.calls)

    if kernel != "v6.13":
        mark = len(pt.tlb.calls)
        for i in range(1, len(sizes)):              # partial unmap
            iova_start = i * SZ_16M
            assert pt.unmap(iova_start + SZ_4K, SZ_4K) == SZ_4K
            assert pt.map(iova_start + SZ_4K, SZ_4K, SZ_4K,
                          IOMMU_READ) == SZ_4K
            assert pt.iova_to_phys(iova_start + SZ_4K + 42) == SZ_4K + 42
        phases["partial"] = pt.tlb.calls[mark:]

    mark = len(pt.tlb.calls)
    iova = 0
    for size in sizes:                              # full unmap
        assert pt.unmap(iova, size) == size
        assert pt.iova_to_phys(iova + 42) == 0
        assert pt.map(iova, iova, size, IOMMU_WRITE) == size
        assert pt.iova_to_phys(iova + 42) == iova + 42
        iova += SZ_16M
    phases["full"] = pt.tlb.calls[mark:]
    check_dummy_ops(pt.tlb.calls, SELFTEST_BITMAP)
    return pt, phases


@pytest.mark.parametrize("kernel", ERAS)
def test_selftest_passes(kernel):
    pt, phases = run_selftest(kernel)
    assert phases["map"] == []
    assert pt.warnings == []
    assert ("partial" in phases) == (kernel != "v6.13")


def test_selftest_partial_unmap_calls_v5_4():
    _, phases = run_selftest("v5.4")
    assert phases["partial"] == [
        # 64K large page: split_cont flushes the group, then the page
        ("tlb_flush_leaf", 0x1001000, SZ_64K, SZ_64K),
        ("tlb_add_page", None, 0x1001000, SZ_4K),
        # 1M section: split_blk_unmap adds the page to the gather
        ("tlb_add_page", None, 0x2001000, SZ_4K),
        # 16M supersection: split_cont, then split_blk_unmap
        ("tlb_flush_leaf", 0x3001000, SZ_16M, SZ_16M),
        ("tlb_add_page", None, 0x3001000, SZ_4K),
    ]


def test_selftest_partial_unmap_calls_v4_20():
    _, phases = run_selftest("v4.20")
    assert phases["partial"] == [
        ("tlb_add_flush", 0x1001000, SZ_64K, SZ_64K, True), ("tlb_sync",),
        ("tlb_add_flush", 0x1001000, SZ_4K, SZ_4K, True),
        ("tlb_add_flush", 0x2001000, SZ_4K, SZ_4K, True), ("tlb_sync",),
        ("tlb_add_flush", 0x3001000, SZ_16M, SZ_16M, True), ("tlb_sync",),
        ("tlb_add_flush", 0x3001000, SZ_4K, SZ_4K, True), ("tlb_sync",),
    ]


def test_selftest_full_unmap_calls():
    # v5.4: after the partial loop, 16M holds 16 small pages, 32M a table
    # and 48M a table plus 15 sections
    _, phases = run_selftest("v5.4")
    expect = [("tlb_add_page", None, 0, SZ_4K)]
    expect += [("tlb_add_page", None, 0x1000000 + k * SZ_4K, SZ_4K)
               for k in range(16)]
    expect += [("tlb_flush_walk", 0x2000000, SZ_1M, SZ_4K)]
    expect += [("tlb_flush_walk", 0x3000000, SZ_1M, SZ_4K)]
    expect += [("tlb_add_page", None, 0x3000000 + k * SZ_1M, SZ_1M)
               for k in range(1, 16)]
    assert phases["full"] == expect

    _, phases = run_selftest("v4.20")
    assert phases["full"][17:20] == [
        ("tlb_add_flush", 0x2000000, SZ_1M, SZ_4K, False), ("tlb_sync",),
        ("tlb_add_flush", 0x3000000, SZ_1M, SZ_4K, False)]

    # v6.13: nothing was split, so every entry is still a leaf
    _, phases = run_selftest("v6.13")
    expect = [("tlb_add_page", None, 0, SZ_4K)]
    expect += [("tlb_add_page", None, 0x1000000 + k * SZ_4K, SZ_4K)
               for k in range(16)]
    expect += [("tlb_add_page", None, 0x2000000, SZ_1M)]
    expect += [("tlb_add_page", None, 0x3000000 + k * SZ_1M, SZ_1M)
               for k in range(16)]
    assert phases["full"] == expect


def test_selftest_descriptors():
    """The entries the selftest's first loop writes (ARM_NS quirk on,
    READ|WRITE|NOEXEC|CACHE), derived by hand from the bit layout."""
    pt = V7sTable(kernel="v5.4", ns=True)
    for i, size in enumerate([SZ_4K, SZ_64K, SZ_1M, SZ_16M]):
        pt.map(i * SZ_16M, i * SZ_16M, size, RWXC)
    l1 = pt.pgd.ptes
    # table descriptors: table address | NS_TABLE (bit 3) | type 0b01;
    # the level-2 tables are 1 KiB objects after the 16 KiB pgd
    assert l1[0] == 0x7E004009
    assert l1[16] == 0x7E004409
    # 4K small page at 0: attribute block nG|S|TEX=1|AP1|AF = 0xc7 at
    # bits 11:4 -> 0xc70; XN bit 0; C|B 0xc; type 0b1x -> 0xc7f
    assert pt._tables[0x7E004000].ptes[0] == 0x00000C7F
    # 64K large page at 16M: XN moves to bit 15, TEX=1 to bit 12, type
    # 0b01: 0xc7f ^ (0x1|0x40|0x2) | 0x8000|0x1000|0x1 = 0x9c3d
    assert list(pt._tables[0x7E004400].ptes[:17]) == [0x01009C3D] * 16 + [0]
    # 1M section at 32M: block 0xc7 at bits 17:10 -> 0x31c00; XN bit 4;
    # C|B; type 0b10; NS_SECTION bit 19 -> 0xb1c1e
    assert l1[32] == 0x020B1C1E
    # 16M supersection at 48M: plus bit 18
    assert list(l1[48:64]) == [0x030F1C1E] * 16
    assert l1[64] == 0


# ---------------------------------------------------------------- descriptors
@pytest.mark.parametrize("kernel", ERAS)
def test_descriptor_bits(kernel):
    pt = V7sTable(kernel=kernel)
    # read-only: nG|S|TEX1|AP2|AP1|AF = 0xe7 -> 0xe70 | type 0x2
    pt.map(0x100000, 0x12345000, SZ_4K, IOMMU_READ)
    assert pt.walk(0x100000)[-1].pte == 0x12345E72
    # privileged MMIO section: nG|S|AF = 0xc1 << 10 = 0x30400; B; type
    pt.map(0x40000000, 0x40000000, SZ_1M, RW | IOMMU_PRIV | IOMMU_MMIO)
    assert pt.walk(0x40000000)[-1].pte == 0x40030406
    # IOMMU_CACHE without NOEXEC, large page: 0xc7e -> xn=0, tex=0x40:
    # 0xc7e ^ 0x42 | 0x1000 | 0x1 = 0x1c3d
    pt.map(0x200000, 0x50010000, SZ_64K, RW | IOMMU_CACHE)
    assert pt.walk(0x20f000)[-1].pte == 0x50011C3D
    # table descriptor without NS: address | 0b01
    assert pt.walk(0x100000)[0].pte == L2_0 | 1


@pytest.mark.parametrize("kernel", ERAS)
def test_no_perms(kernel):
    pt = V7sTable(kernel=kernel, no_perms=True)
    # nG|S|TEX1 = 0xc4 -> 0xc40 | 0x2; NOEXEC is ignored without perms
    pt.map(0, 0x1000, SZ_4K, IOMMU_READ | IOMMU_NOEXEC)
    assert pt.walk(0)[-1].pte == 0x1C42
    tr = pt.translate(0)
    assert tr.prot == IOMMU_READ | IOMMU_WRITE


def test_mtk_pa_bits_by_era():
    # v4.20 4GB mode: bit 9 on every leaf; the kernel reads back the low
    # 4 GiB alias, the hardware uses bit 9 as PA bit 32
    pt = V7sTable(kernel="v4.20", no_perms=True, mtk_ext=True)
    pt.map(0, 0x1000, SZ_4K)
    assert pt.walk(0)[-1].pte == 0x1C42 | 0x200
    assert pt.iova_to_phys(0x123) == 0x1123
    assert pt.translate(0x123).paddr == 0x1_0000_1000
    with pytest.raises(PgtableError, match="32-bit output"):
        pt.map(SZ_4K, 1 << 32, SZ_4K)
    # v5.4: PA bit 32 -> bit 9, bit 33 -> bit 4 (oas 34)
    pt = V7sTable(kernel="v5.4", oas=34, no_perms=True, mtk_ext=True)
    pt.map(0, 0x3_0000_1000, SZ_4K)
    assert pt.walk(0)[-1].pte == 0x1C42 | 0x200 | 0x10
    assert pt.iova_to_phys(0x42) == 0x3_0000_1042
    with pytest.raises(PgtableError, match="34-bit output"):
        V7sTable(kernel="v5.4", oas=34, no_perms=True,
                 mtk_ext=True).map(0, 1 << 34, SZ_4K)
    # v6.13: also bit 34 -> bit 5 (oas 35); a section carries them too
    pt = V7sTable(kernel="v6.13", oas=35, no_perms=True, mtk_ext=True)
    pt.map(0, 0x7_0000_1000, SZ_4K)
    assert pt.walk(0)[-1].pte == 0x1C42 | 0x200 | 0x10 | 0x20
    pt.map(SZ_1M, 0x4_0010_0000, SZ_1M)
    # section: 0xc4 << 10 = 0x31000 | 0x2 | 0x100000 | bit 5
    assert pt.walk(SZ_1M)[-1].pte == 0x00131022
    assert pt.iova_to_phys(SZ_1M + 5) == 0x4_0010_0005
    assert "PA34" in pt.describe(1, pt.pgd.ptes[1]).attrs


def test_mtk_iova_34_bits_v6_13():
    pt = V7sTable(kernel="v6.13", ias=34, oas=35, no_perms=True, mtk_ext=True)
    assert pt.pgd_entries == 1 << 14
    pt.map(0x3_0000_0000, 0x1000_0000, SZ_1M)
    assert pt.level_index(0x3_0000_0000, 1) == 0x3000
    assert pt.iova_to_phys(0x3_0000_0042) == 0x1000_0042
    with pytest.raises(ValueError, match="ias 34"):
        V7sTable(kernel="v5.4", ias=34, oas=34, no_perms=True, mtk_ext=True)


def test_level1_size_follows_ias_only_in_v6_13():
    assert V7sTable(kernel="v6.13", ias=30).pgd_entries == 1024
    assert V7sTable(kernel="v5.4", ias=30).pgd_entries == 4096
    pt = V7sTable(kernel="v6.13", ias=30)
    # a 4 KiB pgd still takes a whole page; the first level-2 table follows
    pt.map(0, 0, SZ_4K)
    assert pt.walk(0)[0].pte == TABLE_MEM_BASE + 0x1000 | 1


def test_table_memory_layout():
    pt = V7sTable()
    assert pt.pgd.paddr == TABLE_MEM_BASE and len(pt.pgd.ptes) == 4096
    pt.map(0, 0, SZ_4K)
    pt.map(SZ_1M, 0, SZ_4K)
    pt.map(2 * SZ_1M, 0, SZ_4K)
    tables = [pt.walk(i * SZ_1M)[0].pte & ~0x3FF for i in range(3)]
    assert tables == [L2_0, L2_0 + 0x400, L2_0 + 0x800]
    assert all(t % 0x400 == 0 for t in tables)
    # the kmem_cache hands back the most recently freed object
    pt.unmap(SZ_1M, SZ_1M)
    pt.unmap(0, SZ_1M)
    pt.map(5 * SZ_1M, 0, SZ_4K)
    assert pt.walk(5 * SZ_1M)[0].pte & ~0x3FF == L2_0


# ---------------------------------------------------------------- walks
def test_translate_reports_whole_cont_group():
    pt = V7sTable()
    pt.map(0x1000000, 0x20000000, SZ_16M)
    pt.map(0x200000, 0x30050000, SZ_64K, IOMMU_READ)
    pt.map(0x300000, 0x40000000, SZ_1M)
    t = pt.translate(0x1abcdef)
    assert (t.iova, t.paddr, t.size, t.level, t.contiguous) == \
        (0x1000000, 0x20000000, SZ_16M, 1, 16)
    t = pt.translate(0x20fffc)
    assert (t.iova, t.paddr, t.size, t.level, t.contiguous) == \
        (0x200000, 0x30050000, SZ_64K, 2, 16)
    assert t.prot == IOMMU_READ
    assert t.tables == (TABLE_MEM_BASE, L2_0)
    t = pt.translate(0x3fffff)
    assert (t.size, t.contiguous) == (SZ_1M, 1)
    assert pt.translate(0x210000) is None
    assert pt.translate(1 << 32) is None
    assert pt.iova_to_phys(0x1abcdef) == 0x20abcdef
    assert pt.iova_to_phys(0x20fffc) == 0x3005fffc


def test_describe_and_walk_kinds():
    pt = V7sTable(ns=True)
    pt.map(0x1000000, 0x1000000, SZ_16M, RWXC)
    pt.map(0x100000, 0x80000000, SZ_1M, IOMMU_READ | IOMMU_PRIV)
    pt.map(0x200000, 0x90000000, SZ_64K, RWXC)
    pt.map(0x210000, 0x90010000, SZ_4K, RW)
    kinds = {iova: [s.kind for s in pt.walk(iova)]
             for iova in (0x1100000, 0x100000, 0x200000, 0x210000, 0x211000)}
    assert kinds == {0x1100000: ["supersection"], 0x100000: ["section"],
                     0x200000: ["table", "large"], 0x210000: ["table", "page"],
                     0x211000: ["table", "invalid"]}
    info = pt.describe(1, pt.pgd.ptes[17])
    assert (info.addr, info.size) == (0x1000000, SZ_16M)
    assert info.attrs == "RW TEX1CB S nG AF XN NS"
    assert pt.describe(1, pt.pgd.ptes[1]).attrs == "R TEX1 S nG AF priv NS"
    large = pt.describe(2, pt.walk(0x20f000)[-1].pte)
    assert (large.kind, large.addr, large.size, large.attrs) == \
        ("large", 0x90000000, SZ_64K, "RW TEX1CB S nG AF XN")
    assert pt.describe(1, pt.pgd.ptes[2]).attrs == "NSTable"
    assert pt.describe(2, 0).kind == "invalid"
    assert str(pt.walk(0x210000)[-1]) == \
        "L2 table 0x7e004000[16] = 0x90010c72 (page, 4K)"
    with pytest.raises(PgtableError) as exc:
        pt.walk(1 << 32)
    assert exc.value.errno == "ERANGE"


def test_mappings_yield_groups_once():
    pt = V7sTable()
    pt.map(0x1000000, 0x20000000, SZ_16M)
    pt.map(0x200000, 0x30000000, SZ_64K, count=2)
    pt.map(0x100000, 0x40000000, SZ_1M)
    got = [(i, p, s, lvl) for i, p, s, lvl, _ in pt.mappings()]
    assert got == [(0x100000, 0x40000000, SZ_1M, 1),
                   (0x200000, 0x30000000, SZ_64K, 2),
                   (0x210000, 0x30010000, SZ_64K, 2),
                   (0x1000000, 0x20000000, SZ_16M, 1)]


def test_snapshot_is_copy_on_write():
    pt = V7sTable()
    pt.map(0, 0, SZ_4K)
    pt.map(SZ_1M, 0, SZ_4K)
    s1 = pt.snapshot()
    pt.map(SZ_4K, SZ_4K, SZ_4K)
    s2 = pt.snapshot()
    assert s1.fmt == "v7s" and s1.levels == (1, 2) and s1.stage == 1
    assert s1.table(L2_0 + 0x400) is s2.table(L2_0 + 0x400)
    assert s1.table(L2_0) is not s2.table(L2_0)
    assert s1.table(L2_0).entries[1] == 0
    assert s2.table(L2_0).entries[1] == 0x1C72
    assert s1.decode(2, 0x1C72).kind == "page"
    pt.unmap(SZ_1M, SZ_1M)
    assert L2_0 + 0x400 not in pt.snapshot().tables


# ---------------------------------------------------------------- map details
@pytest.mark.parametrize("kernel", ERAS)
def test_map_over_table_frees_it(kernel):
    events = []
    pt = V7sTable(kernel=kernel, trace=lambda f, k, **d: events.append((f, k)))
    pt.map(0x100000, 0x5000, SZ_4K)
    events.clear()
    assert pt.map(0x100000, 0x80000000, SZ_1M) == SZ_1M
    flush = ([("tlb_add_flush", 0x100000, SZ_1M, SZ_4K, False), ("tlb_sync",)]
             if kernel == "v4.20" else
             [("tlb_flush_walk", 0x100000, SZ_1M, SZ_4K)])
    assert pt.tlb.calls == flush
    assert events == [("__arm_v7s_unmap", "pte_write"),
                      ("__arm_v7s_free_table", "table_free"),
                      ("arm_v7s_init_pte", "pte_write")]
    assert pt.iova_to_phys(0x100042) == 0x80000042
    assert pt.table_count == 1


def test_eexist_cases_leave_table_unchanged():
    pt = V7sTable()
    pt.map(0x100000, 0x100000, SZ_1M)
    pt.map(0x1000000, 0x1000000, SZ_16M)
    pt.map(0x200000, 0x200000, SZ_64K)
    pt.map(0x300000, 0x300000, SZ_4K)
    cases = [
        (0x101000, SZ_4K, "iova 0x101000 lies inside a 1 MiB section at "
                          "0x100000"),
        (0x1230000, SZ_64K, "lies inside a 16 MiB supersection at "
                            "0x1000000"),
        (0x100000, SZ_1M, "iova 0x100000 is already mapped by a 1 MiB "
                          "section"),
        (0x0, SZ_16M, "iova 0x100000 is already mapped"),
        (0x20f000, SZ_4K, "iova 0x20f000 is already mapped by a 64 KiB large"),
        (0x300000, SZ_64K, "iova 0x300000 is already mapped by a 4 KiB page"),
    ]
    for iova, size, msg in cases:
        before = pt.snapshot()
        with pytest.raises(PgtableError, match=msg) as exc:
            pt.map(iova, 0x40000000, size)
        assert exc.value.errno == "EEXIST"
        assert pt.snapshot() == before
    # a later page of a multi-page map is checked before anything is written
    before = pt.snapshot()
    with pytest.raises(PgtableError):
        pt.map(0x2fe000, 0x40000000, SZ_4K, count=3)
    assert pt.snapshot() == before
    assert pt.tlb.calls == []


def test_no_access_maps_nothing():
    pt = V7sTable()
    assert pt.map(0, 0, SZ_4K, prot=IOMMU_CACHE) == 0
    assert pt.table_count == 1


# ---------------------------------------------------------------- splits
@pytest.mark.parametrize("kernel", SPLIT_ERAS)
def test_split_cont_large_page(kernel):
    events = []
    pt = V7sTable(kernel=kernel,
                  trace=lambda f, k, **d: events.append((f, k, d)))
    pt.map(0x200000, 0x30000000, SZ_64K, RWXC)
    events.clear()
    assert pt.unmap(0x203000, SZ_4K) == SZ_4K
    l2 = pt._deref(pt.pgd.ptes[2]).ptes
    # cont_to_pte(0x30009c3d) = 0x30000c7f, then + k * 4K; entry 3 cleared
    expect = [0x30000C7F + k * SZ_4K for k in range(16)]
    expect[3] = 0
    assert list(l2[:16]) == expect
    assert [(f, k, d.get("count"), d.get("step")) for f, k, d in events] == [
        ("arm_v7s_split_cont", "pte_write", 16, SZ_4K),
        ("__arm_v7s_unmap", "pte_write", 1, 0)]
    assert pt.iova_to_phys(0x20f123) == 0x3000f123
    assert pt.iova_to_phys(0x203000) == 0


@pytest.mark.parametrize("kernel", SPLIT_ERAS)
def test_split_blk_unmap_loses_section_address(kernel):
    """arm_v7s_split_blk_unmap never ORs the section's address into the
    new entries: they count up from physical 0."""
    events = []
    pt = V7sTable(kernel=kernel, ns=True,
                  trace=lambda f, k, **d: events.append((f, k, d)))
    pt.map(0x2000000, 0x2000000, SZ_1M, RWXC)      # 0x020b1c1e
    events.clear()
    assert pt.unmap(0x2001000, SZ_4K) == SZ_4K
    assert pt.pgd.ptes[32] == L2_0 | 0x9          # NS_TABLE | table
    l2 = pt._tables[L2_0].ptes
    # pte_to_prot(0x020b1c1e, 1) = READ|WRITE|CACHE|NOEXEC, back at level
    # 2 that is 0xc7f; entry k gets 0xc7f + k * 4K, the section's 32M lost
    assert l2[0] == 0x00000C7F and l2[1] == 0 and l2[2] == 0x00002C7F
    assert l2[255] == 0x000FFC7F
    assert pt.iova_to_phys(0x2002042) == 0x2042
    assert [(f, k) for f, k, _ in events] == [
        ("arm_v7s_split_blk_unmap", "table_alloc"),
        ("arm_v7s_split_blk_unmap", "table_fill"),
        ("arm_v7s_install_table", "pte_write")]
    fill = events[1][2]
    assert (fill["first"], fill["step"], fill["group"], fill["skipped"]) == \
        (0xC7F, SZ_4K, 1, 1)
    # a 64 KiB part: large pages, the 64K group holding the iova skipped
    pt.map(0x3000000, 0x3000000, SZ_1M)
    assert pt.unmap(0x3010000, SZ_64K) == SZ_64K
    l2 = pt._deref(pt.pgd.ptes[48]).ptes
    # prot_to_pte(READ|WRITE, 2) = 0xc72 -> large 0xc72 ^ 0x42 | 0x1001
    assert list(l2[:16]) == [0x00001C31] * 16
    assert list(l2[16:32]) == [0] * 16
    assert list(l2[32:48]) == [0x00021C31] * 16


@pytest.mark.parametrize("kernel", SPLIT_ERAS)
def test_split_supersection_elsewhere_unmaps_nothing(kernel):
    """arm_v7s_split_cont returns the group's first section, so for a
    partial unmap in another MiB of the supersection the install's
    compare-and-swap fails: 0 bytes, 16 sections left behind."""
    events = []
    pt = V7sTable(kernel=kernel,
                  trace=lambda f, k, **d: events.append((f, k)))
    pt.map(0x1000000, 0x20000000, SZ_16M)
    assert pt.unmap(0x1301000, SZ_4K) == 0
    assert list(pt.pgd.ptes[16:32]) == [0x20031C02 + k * SZ_1M
                                        for k in range(16)]
    assert pt.table_count == 1
    assert events[-3:] == [("arm_v7s_split_blk_unmap", "table_alloc"),
                           ("arm_v7s_split_blk_unmap", "table_fill"),
                           ("__arm_v7s_free_table", "table_free")]
    flush = (("tlb_add_flush", 0x1301000, SZ_16M, SZ_16M, True)
             if kernel == "v4.20" else
             ("tlb_flush_leaf", 0x1301000, SZ_16M, SZ_16M))
    assert pt.tlb.calls[0] == flush
    assert pt.iova_to_phys(0x1301000) == 0x20301000
    # in the first MiB of a supersection it works (the selftest's case)
    pt.map(0x2000000, 0x30000000, SZ_16M)
    assert pt.unmap(0x2001000, SZ_4K) == SZ_4K
    assert pt.iova_to_phys(0x2001000) == 0
    assert pt.iova_to_phys(0x2100000) == 0x30100000


@pytest.mark.parametrize("kernel", SPLIT_ERAS)
def test_unmap_section_of_supersection(kernel):
    pt = V7sTable(kernel=kernel)
    pt.map(0x1000000, 0x20000000, SZ_16M)
    assert pt.unmap(0x1500000, SZ_1M) == SZ_1M
    assert pt.pgd.ptes[21] == 0
    assert pt.pgd.ptes[22] == 0x20031C02 + 6 * SZ_1M
    assert pt.translate(0x1600000).contiguous == 1


def test_split_sync_override():
    pt = V7sTable(kernel="v5.4", split_sync=True)
    pt.map(0, 0, SZ_1M)
    pt.unmap(SZ_4K, SZ_4K)
    assert pt.tlb.calls == [("tlb_flush_leaf", SZ_4K, SZ_4K, SZ_4K)]
    pt = V7sTable(kernel="v4.20", split_sync=False)
    pt.map(0, 0, SZ_1M)
    pt.unmap(SZ_4K, SZ_4K)
    assert pt.tlb.calls == [("tlb_add_flush", SZ_4K, SZ_4K, SZ_4K, True)]


@pytest.mark.parametrize("kernel", SPLIT_ERAS)
def test_non_strict_skips_leaf_flush_but_not_split(kernel):
    pt = V7sTable(kernel=kernel, non_strict=True)
    pt.map(0, 0, SZ_4K)
    pt.map(SZ_1M, 0, SZ_1M)
    assert pt.unmap(0, SZ_4K) == SZ_4K
    assert pt.tlb.calls == []
    assert pt.unmap(SZ_1M, SZ_4K) == SZ_4K
    assert len(pt.tlb.calls) >= 1


def test_v6_13_queued_gather_skips_add_page():
    pt = V7sTable(kernel="v6.13")
    pt.map(0, 0, SZ_4K, count=2)
    g = Gather(queued=True)
    assert pt.unmap(0, SZ_4K, gather=g) == SZ_4K
    assert pt.tlb.calls == []
    g = Gather()
    assert pt.unmap(SZ_4K, SZ_4K, gather=g) == SZ_4K
    assert pt.tlb.calls == [("tlb_add_page", g, SZ_4K, SZ_4K)]


def test_v6_13_refuses_partial_unmaps():
    pt = V7sTable(kernel="v6.13")
    pt.map(0x1000000, 0x1000000, SZ_16M)
    pt.map(0x100000, 0x100000, SZ_1M)
    pt.map(0x200000, 0x200000, SZ_64K)
    before = pt.snapshot()
    for iova, size in [(0x1000000, SZ_1M), (0x1301000, SZ_4K),
                       (0x1010000, SZ_64K), (0x101000, SZ_4K),
                       (0x110000, SZ_64K), (0x200000, SZ_4K),
                       (0x20f000, SZ_4K)]:
        assert pt.unmap(iova, size) == 0
    assert pt.snapshot() == before
    assert pt.tlb.calls == []
    assert pt.warnings == [PARTIAL_WARNING] * 7
    # whole entries still unmap
    assert pt.unmap(0x200000, SZ_64K) == SZ_64K
    assert pt.unmap(0x1000000, SZ_16M) == SZ_16M


@pytest.mark.parametrize("kernel", ERAS)
def test_unmap_nothing_and_count(kernel):
    pt = V7sTable(kernel=kernel)
    assert pt.unmap(0, SZ_4K) == 0
    pt.map(0, 0, SZ_4K, count=3)
    # 64K needs all 16 entries valid: nothing is cleared
    assert pt.unmap(0, SZ_64K) == 0
    assert pt.iova_to_phys(SZ_4K) == SZ_4K
    # the count loop stops at the first hole
    assert pt.unmap(0, SZ_4K, count=5) == 3 * SZ_4K


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("kernel", ERAS)
def test_bad_input_is_refused_without_change(kernel):
    pt = V7sTable(kernel=kernel, pgsize_bitmap=SZ_4K | SZ_64K | SZ_1M)
    pt.map(0, 0, SZ_64K)
    before = pt.snapshot()
    cases = [
        (lambda: pt.map(0x1001, 0, SZ_4K), "EINVAL",
         "iova 0x1001 is not aligned to the 4 KiB page size"),
        (lambda: pt.map(0x100000, 0x1000, SZ_64K), "EINVAL",
         "paddr 0x1000 is not aligned to the 64 KiB page size"),
        (lambda: pt.map(0, 0, SZ_2M), "EINVAL",
         "map size 0x200000 is not a page size"),
        (lambda: pt.map(0x1000000, 0, SZ_16M), "EINVAL",
         r"pgsize_bitmap 0x111000: 4 KiB, 64 KiB, 1 MiB\)"),
        (lambda: pt.map(0, 0, 0x3000), "EINVAL", "size 0x3000"),
        (lambda: pt.map(1 << 32, 0, SZ_4K), "ERANGE",
         "beyond the 32-bit input address size"),
        (lambda: pt.map(0xFFFFF000, 0, SZ_4K, count=2), "ERANGE",
         "iova range 0xfffff000..0x100000fff"),
        (lambda: pt.map(SZ_1M, 0xFFF00000, SZ_1M, count=2), "ERANGE",
         "paddr range 0xfff00000..0x1000fffff is beyond the 32-bit output"),
        (lambda: pt.map(SZ_1M, -4096, SZ_4K), "EINVAL", "paddr -4096"),
        (lambda: pt.map(-4096, 0, SZ_4K), "EINVAL", "iova -4096"),
        (lambda: pt.map(SZ_1M, 0, SZ_4K, count=0), "EINVAL",
         "count 0 must be at least 1"),
        (lambda: pt.unmap(0x1001, SZ_4K), "EINVAL", "not aligned"),
        (lambda: pt.unmap(0, SZ_2M), "EINVAL", "unmap size 0x200000"),
        (lambda: pt.unmap(0, SZ_4K, count=0), "EINVAL", "count 0"),
        (lambda: pt.unmap(1 << 32, SZ_4K), "ERANGE", "32-bit input"),
        (lambda: pt.iova_to_phys(-1), "EINVAL", "iova -1"),
    ]
    for call, errno, msg in cases:
        with pytest.raises(PgtableError, match=msg) as exc:
            call()
        assert exc.value.errno == errno
        assert f"(-{errno})" in str(exc.value)
        assert pt.snapshot() == before
        assert pt.tlb.calls == []


@pytest.mark.parametrize("kwargs, msg", [
    ({"granule": SZ_64K}, "granule 0x10000 is not a v7s granule"),
    ({"stage": 2}, "stage 2 is not supported"),
    ({"ias": 33}, "ias 33 is out of range"),
    ({"ias": 20}, "ias 20 is out of range"),
    ({"oas": 33}, "oas 33 is out of range"),
    ({"oas": 35, "mtk_ext": True, "no_perms": True}, "oas 35"),
    ({"mtk_ext": True}, "ARM_MTK_EXT quirk needs NO_PERMS"),
    ({"pgsize_bitmap": SZ_4K | SZ_2M}, "pgsize_bitmap 0x201000 must be"),
    ({"pgsize_bitmap": 0}, "pgsize_bitmap 0x0"),
    ({"kernel": "v5.10"}, "not a modelled era"),
    ({"kernel": "v6.13", "non_strict": True}, "NON_STRICT quirk is gone"),
])
def test_bad_construction(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        V7sTable(**kwargs)


def test_repr_and_level_of_size():
    pt = V7sTable(kernel="v6.13")
    assert repr(pt) == ("V7sTable(ias=32, oas=32, kernel='v6.13', "
                        "pgsize_bitmap=0x1111000, tables=1)")
    assert [pt.level_of_size(s) for s in (SZ_4K, SZ_64K, SZ_1M, SZ_16M)] \
        == [2, 2, 1, 1]
    assert (pt.block_size(1), pt.block_size(2)) == (SZ_1M, SZ_4K)
    with pytest.raises(ValueError, match="2 MiB"):
        pt.level_of_size(SZ_2M)


# ---------------------------------------------------------------- oracle
class Oracle:
    """A flat model of what each era's v7s code leaves mapped: leaf
    mappings keyed by iova, and which MiB slots hold a level-2 table.
    Written from the rules, not from the model's code."""

    def __init__(self, kernel):
        self.kernel = kernel
        self.leaves = {}        # iova -> (size, paddr)
        self.tables = set()     # 1 MiB slot numbers

    def _leaf_at(self, base, size):
        got = self.leaves.get(base)
        return got is not None and got[0] == size

    def big(self, slot):
        """The iova of the section or supersection covering ``slot``."""
        for size in (SZ_1M, SZ_16M):
            base = (slot * SZ_1M) & ~(size - 1)
            if self._leaf_at(base, size):
                return base
        return None

    def small(self, page):
        for size in (SZ_4K, SZ_64K):
            base = page & ~(size - 1)
            if self._leaf_at(base, size):
                return base
        return None

    def _drop_table(self, slot):
        self.tables.discard(slot)
        for a in [a for a, (s, _) in self.leaves.items()
                  if s < SZ_1M and a // SZ_1M == slot]:
            del self.leaves[a]

    def _split_super(self, base):
        _, pa = self.leaves.pop(base)
        for k in range(16):
            self.leaves[base + k * SZ_1M] = (SZ_1M, pa + k * SZ_1M)

    def map(self, iova, paddr, size, count):
        for n in range(count):
            a = iova + n * size
            if size >= SZ_1M:
                slots = range(a // SZ_1M, (a + size) // SZ_1M)
                if any(self.big(s) is not None for s in slots):
                    return "EEXIST"
            else:
                if self.big(a // SZ_1M) is not None or any(
                        self.small(p) is not None
                        for p in range(a, a + size, SZ_4K)):
                    return "EEXIST"
        for n in range(count):
            a, pa = iova + n * size, paddr + n * size
            if size >= SZ_1M:
                for s in range(a // SZ_1M, (a + size) // SZ_1M):
                    if s in self.tables:
                        self._drop_table(s)
            else:
                self.tables.add(a // SZ_1M)
            self.leaves[a] = (size, pa)
        return size * count

    def unmap(self, iova, size, count):
        done = 0
        for n in range(count):
            got = self._unmap_one(iova + n * size, size)
            if not got:
                break
            done += got
        return done

    def _unmap_one(self, iova, size):
        old_style = self.kernel != "v6.13"
        slot = iova // SZ_1M
        if size >= SZ_1M:
            slots = range(slot, slot + size // SZ_1M)
            if any(s not in self.tables and self.big(s) is None
                   for s in slots):
                return 0
            if size == SZ_1M and slot not in self.tables \
                    and self.leaves[self.big(slot)][0] == SZ_16M:
                if not old_style:
                    return 0
                self._split_super(self.big(slot))
            for s in slots:
                if s in self.tables:
                    self._drop_table(s)
                else:
                    self.leaves.pop(self.big(s), None)
            return size
        if slot in self.tables:
            pages = range(iova, iova + size, SZ_4K)
            if any(self.small(p) is None for p in pages):
                return 0
            base = self.small(iova)
            if size == SZ_4K and self.leaves[base][0] == SZ_64K:
                if not old_style:
                    return 0
                _, pa = self.leaves.pop(base)
                for k in range(16):
                    self.leaves[base + k * SZ_4K] = (SZ_4K, pa + k * SZ_4K)
            for p in pages:
                b = self.small(p)
                if b is not None:
                    del self.leaves[b]
            return size
        base = self.big(slot)
        if base is None or not old_style:
            return 0
        if self.leaves[base][0] == SZ_16M:
            self._split_super(base)
            if slot * SZ_1M != base:
                return 0            # the failed compare-and-swap
        del self.leaves[slot * SZ_1M]
        self.tables.add(slot)
        for off in range(0, SZ_1M, size):
            if slot * SZ_1M + off != iova:
                self.leaves[slot * SZ_1M + off] = (size, off)   # from 0
        return size

    def translate(self, iova):
        for size in (SZ_4K, SZ_64K, SZ_1M, SZ_16M):
            base = iova & ~(size - 1)
            if self._leaf_at(base, size):
                return self.leaves[base][1] + iova - base
        return None


SIZES = [SZ_4K, SZ_64K, SZ_1M, SZ_16M]


@st.composite
def operation(draw):
    size = draw(st.sampled_from(SIZES))
    region = draw(st.sampled_from([0, 1, 2])) * SZ_16M
    if size == SZ_16M:
        iova = region
    else:
        iova = region + draw(st.sampled_from([0, 1, 2, 15])) * SZ_1M
        if size < SZ_1M:
            per = SZ_1M // size
            iova += draw(st.sampled_from([0, 1, 2, per - 1])) * size
    count = draw(st.sampled_from([1, 1, 1, 2]))
    if draw(st.booleans()):
        top = (1 << 32) // size - count
        paddr = draw(st.integers(0, top)) * size
        return ("map", iova, paddr, size, count)
    return ("unmap", iova, None, size, count)


def model_state(pt):
    leaves = {i: (s, p) for i, p, s, _, _ in pt.mappings()}
    tables = {i for i, pte in enumerate(pt.pgd.ptes) if pte & 3 == 1}
    return leaves, tables


@pytest.mark.parametrize("kernel", ERAS)
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(operation(), min_size=1, max_size=25))
def test_against_flat_oracle(kernel, ops):
    pt = V7sTable(kernel=kernel)
    oracle = Oracle(kernel)
    for op, iova, paddr, size, count in ops:
        before_snap = pt.snapshot()
        before_leaves = list(pt.mappings())
        ncalls = len(pt.tlb.calls)
        if op == "map":
            want = oracle.map(iova, paddr, size, count)
            if want == "EEXIST":
                with pytest.raises(PgtableError) as exc:
                    pt.map(iova, paddr, size, RW, count)
                assert exc.value.errno == "EEXIST"
                assert pt.snapshot() == before_snap
                continue
            assert pt.map(iova, paddr, size, RW, count) == want
        else:
            want = oracle.unmap(iova, size, count)
            assert pt.unmap(iova, size, count=count) == want
        assert model_state(pt) == (oracle.leaves, oracle.tables)
        for a in (iova, iova + size - SZ_4K, iova + size * count - 1):
            want_pa = oracle.translate(a)
            assert pt.iova_to_phys(a) == (0 if want_pa is None else want_pa)
        # every leaf that stopped translating as before was invalidated
        ranges = call_ranges(pt.tlb.calls[ncalls:])
        for li, lp, ls, _, _ in before_leaves:
            changed = any(pt.iova_to_phys(li + o) != lp + o
                          for o in range(0, ls, max(SZ_4K, ls // 16)))
            if changed:
                assert any(a < li + ls and li < b for a, b in ranges), \
                    (hex(li), ls, pt.tlb.calls[ncalls:])
    check_dummy_ops(pt.tlb.calls, SELFTEST_BITMAP)
