"""The kernel's own LPAE selftest, replayed against the model, plus the
table geometry worked out by hand.

Models ``arm_lpae_run_tests`` and ``arm_lpae_do_selftests`` in
drivers/iommu/io-pgtable-arm.c:

* v5.4 (used for the "v4.20" and "v5.4" eras): for every pgsize bitmap
  (4K|2M|1G, 16K|32M, 64K|512M) and ias 32, 36, 40, 42, 44, 48 with
  oas 48, for ARM_64_LPAE_S1 and ARM_64_LPAE_S2: empty lookups, one
  mapping of every page size at N GiB, an overlapping map that must fail,
  a partial unmap of the smallest page inside the block at 1 GiB, its
  remap, then a full unmap and remap of every size.
* v6.13: commit 33729a5fc0ca deleted the partial unmap and its remap from
  the test (the split they exercised is gone), and d64c8053378e ("Add
  self test for the last page in the IAS", also v6.13) appended a
  map/unmap of the largest page size at the very top of the ias, a corner
  of concatenated stage-2 pgds. The v6.13 test calls map_pages and
  unmap_pages with a NULL gather, so leaf unmaps queue nothing.

The flush-op calls each step makes are checked on the table's
RecordingFlushOps, era by era.
"""

import pytest

from iommu_viz.pgtable.common import (
    IOMMU_CACHE, IOMMU_NOEXEC, IOMMU_READ, IOMMU_WRITE, SZ_1G, SZ_2G,
    SZ_2M, SZ_4K, SZ_16K, SZ_32M, SZ_64K, SZ_512M, PgtableError,
)
from iommu_viz.pgtable.lpae import LpaeTable

# arm_lpae_do_selftests
SELFTEST_PGSIZES = [SZ_4K | SZ_2M | SZ_1G, SZ_16K | SZ_32M, SZ_64K | SZ_512M]
SELFTEST_IAS = [32, 36, 40, 42, 44, 48]
ERAS = ["v4.20", "v5.4", "v6.13"]

RWXC = IOMMU_READ | IOMMU_WRITE | IOMMU_NOEXEC | IOMMU_CACHE
PARTIAL_WARNING = "Unmap of a partial large IOPTE is not allowed"


def set_bits(bitmap):
    """for_each_set_bit: the page sizes in a pgsize bitmap, smallest
    first."""
    return [1 << b for b in range(64) if bitmap >> b & 1]


def granule_of(bitmap):
    return bitmap & -bitmap         # 1UL << __ffs(bitmap)


def expect_overlap_refused(pt, iova, size):
    """The selftest's 'Overlapping mappings' step: a second map of the
    same iova must fail (-EEXIST) and must change nothing."""
    before = pt.snapshot()
    calls = list(pt.tlb.calls)
    with pytest.raises(PgtableError) as exc:
        pt.map(iova, iova + size, size, IOMMU_READ | IOMMU_NOEXEC)
    assert exc.value.errno == "EEXIST"
    assert pt.snapshot() == before
    assert pt.tlb.calls == calls


def run_tests(bitmap, ias, stage, kernel):
    """One arm_lpae_run_tests pass for one format; returns the flush-op
    calls of each phase so that callers can check them."""
    granule = granule_of(bitmap)
    pt = LpaeTable(granule=granule, ias=ias, oas=48, stage=stage,
                   kernel=kernel)
    assert pt.pgsize_bitmap == bitmap
    sizes = set_bits(bitmap)
    phases = {}

    # Initial sanity checks: an empty table translates nothing.
    for iova in (42, SZ_1G + 42, SZ_2G + 42):
        assert pt.iova_to_phys(iova) == 0

    # Distinct mappings of different granule sizes, one per GiB.
    iova = 0
    for size in sizes:
        assert pt.map(iova, iova, size, RWXC) == size
        expect_overlap_refused(pt, iova, size)
        assert pt.iova_to_phys(iova + 42) == iova + 42
        iova += SZ_1G
    phases["map"] = list(pt.tlb.calls)
    mark = len(pt.tlb.calls)

    if kernel in ("v4.20", "v5.4"):
        # Partial unmap: the smallest page inside the block at 1 GiB.
        size = sizes[0]
        assert pt.unmap(SZ_1G + size, size) == size
        assert pt.iova_to_phys(SZ_1G + size + 42) == 0
        assert pt.iova_to_phys(SZ_1G + 42) == SZ_1G + 42
        # Remap of partial unmap (to physical address 'size', read-only).
        assert pt.map(SZ_1G + size, size, size, IOMMU_READ) == size
        assert pt.iova_to_phys(SZ_1G + size + 42) == size + 42
        phases["partial"] = pt.tlb.calls[mark:]
        mark = len(pt.tlb.calls)

    # Full unmap, and remap of each full block (write-only).
    iova = 0
    for size in sizes:
        assert pt.unmap(iova, size) == size
        assert pt.iova_to_phys(iova + 42) == 0
        assert pt.map(iova, iova, size, IOMMU_WRITE) == size
        assert pt.iova_to_phys(iova + 42) == iova + 42
        iova += SZ_1G
    phases["full"] = pt.tlb.calls[mark:]
    mark = len(pt.tlb.calls)

    if kernel == "v6.13":
        # Map/unmap the last largest page of the ias (d64c8053378e).
        size = sizes[-1]
        iova = (1 << ias) - size
        assert pt.map(iova, iova, size, RWXC) == size
        assert pt.iova_to_phys(iova + 42) == iova + 42
        assert pt.unmap(iova, size) == size
        assert pt.iova_to_phys(iova + 42) == 0
        phases["last"] = pt.tlb.calls[mark:]

    assert pt.warnings == []
    return pt, phases


def expected_phases(bitmap, kernel):
    """The flush-op calls each selftest phase must make, read off the
    era's __arm_lpae_unmap and arm_lpae_split_blk_unmap."""
    sizes = set_bits(bitmap)
    small, block = sizes[0], sizes[1]
    granule = small
    exp = {"map": []}           # mapping never invalidates anything
    if kernel == "v4.20":
        # split: the page's invalidation is issued and synced at once
        exp["partial"] = [("tlb_add_flush", SZ_1G + small, small, small,
                           True), ("tlb_sync",)]
        full = []
        for j, size in enumerate(sizes):
            if j == 1:
                # the split block is a table now: non-leaf flush + sync
                full += [("tlb_add_flush", SZ_1G, block, granule, False),
                         ("tlb_sync",)]
            else:
                full.append(("tlb_add_flush", j * SZ_1G, size, size, True))
        exp["full"] = full
    elif kernel == "v5.4":
        # split: the page goes into the caller's (NULL) gather
        exp["partial"] = [("tlb_add_page", None, SZ_1G + small, small)]
        full = []
        for j, size in enumerate(sizes):
            if j == 1:
                full.append(("tlb_flush_walk", SZ_1G, block, granule))
            else:
                full.append(("tlb_add_page", None, j * SZ_1G, size))
        exp["full"] = full
    else:
        # v6.13: NULL gather, no tables freed: nothing at all
        exp["full"] = []
        exp["last"] = []
    return exp


@pytest.mark.parametrize("kernel", ERAS)
@pytest.mark.parametrize("ias", SELFTEST_IAS)
@pytest.mark.parametrize("bitmap", SELFTEST_PGSIZES,
                         ids=["4K", "16K", "64K"])
def test_arm_lpae_do_selftests(bitmap, ias, kernel):
    """arm_lpae_do_selftests: every pgsize x ias, both 64-bit formats."""
    for stage in (1, 2):            # ARM_64_LPAE_S1, ARM_64_LPAE_S2
        pt, phases = run_tests(bitmap, ias, stage, kernel)
        assert phases == expected_phases(bitmap, kernel), (stage, phases)


def test_selftest_calls_4k_literal():
    """The 4K|2M|1G stage-1 run, ias 48, written out in full for each
    era (addresses: 1 GiB + 4 KiB = 0x40001000, 2 GiB = 0x80000000)."""
    bitmap = SZ_4K | SZ_2M | SZ_1G
    _, p = run_tests(bitmap, 48, 1, "v4.20")
    assert p["partial"] == [("tlb_add_flush", 0x40001000, 0x1000, 0x1000,
                             True), ("tlb_sync",)]
    assert p["full"] == [
        ("tlb_add_flush", 0x0, 0x1000, 0x1000, True),
        ("tlb_add_flush", 0x40000000, 0x200000, 0x1000, False),
        ("tlb_sync",),
        ("tlb_add_flush", 0x80000000, 0x40000000, 0x40000000, True),
    ]
    _, p = run_tests(bitmap, 48, 1, "v5.4")
    assert p["partial"] == [("tlb_add_page", None, 0x40001000, 0x1000)]
    assert p["full"] == [
        ("tlb_add_page", None, 0x0, 0x1000),
        ("tlb_flush_walk", 0x40000000, 0x200000, 0x1000),
        ("tlb_add_page", None, 0x80000000, 0x40000000),
    ]
    _, p = run_tests(bitmap, 48, 1, "v6.13")
    assert p == {"map": [], "full": [], "last": []}


@pytest.mark.parametrize("kernel", ["v4.20", "v5.4"])
def test_split_adds_exactly_one_invalidation(kernel):
    """The partial unmap replaces the 2M block by a table: one table
    allocated, the block's other 511 pages still translate, and the era's
    single maintenance call for the unmapped page (v4.20: add_flush then
    sync, b6b65ca20bc9; v5.4: one tlb_add_page into the gather)."""
    pt = LpaeTable(SZ_4K, 48, 48, 1, kernel)
    pt.map(SZ_1G, SZ_1G, SZ_2M, RWXC)
    tables = pt.table_count
    assert pt.unmap(SZ_1G + SZ_4K, SZ_4K) == SZ_4K
    assert pt.table_count == tables + 1
    if kernel == "v4.20":
        assert pt.tlb.calls == [
            ("tlb_add_flush", SZ_1G + SZ_4K, SZ_4K, SZ_4K, True),
            ("tlb_sync",)]
    else:
        assert pt.tlb.calls == [("tlb_add_page", None, SZ_1G + SZ_4K,
                                 SZ_4K)]
    for page in range(512):
        iova = SZ_1G + page * SZ_4K
        want = 0 if page == 1 else iova + 7
        assert pt.iova_to_phys(iova + 7) == want
    assert pt.warnings == []


@pytest.mark.parametrize("bitmap", SELFTEST_PGSIZES, ids=["4K", "16K", "64K"])
@pytest.mark.parametrize("stage", [1, 2])
def test_v613_partial_unmap_refused(bitmap, stage):
    """v6.13 (33729a5fc0ca): the old selftest's partial-unmap step now
    returns 0 with WARN_ONCE("Unmap of a partial large IOPTE is not
    allowed"), issues no flush op and leaves the block in place."""
    pt, _ = run_tests(bitmap, 48, stage, "v6.13")
    small, block = set_bits(bitmap)[:2]
    before = pt.snapshot()
    calls = list(pt.tlb.calls)
    assert pt.unmap(SZ_1G + small, small) == 0
    assert pt.warnings == [PARTIAL_WARNING]
    assert pt.tlb.calls == calls == []
    assert pt.snapshot() == before
    # the block is untouched, so the selftest's remap would be refused
    assert pt.iova_to_phys(SZ_1G + small + 42) == SZ_1G + small + 42
    with pytest.raises(PgtableError) as exc:
        pt.map(SZ_1G + small, small, small, IOMMU_READ)
    assert exc.value.errno == "EEXIST"
    assert pt.iova_to_phys(SZ_1G + block - 1) == SZ_1G + block - 1


def test_v613_partial_unmap_with_gather_still_silent():
    """Even with a real gather the refused unmap queues nothing."""
    pt = LpaeTable(SZ_4K, 48, 48, 1, "v6.13")
    pt.map(SZ_2M, 0x80000000, SZ_2M, RWXC)
    gather = object()
    assert pt.unmap(SZ_2M + SZ_4K, SZ_4K, gather) == 0
    assert pt.tlb.calls == []
    assert pt.warnings == [PARTIAL_WARNING]
    # a full-size unmap with a gather queues the block (v6.13 only adds
    # pages when a gather is given and not queued)
    assert pt.unmap(SZ_2M, SZ_2M, gather) == SZ_2M
    assert pt.tlb.calls == [("tlb_add_page", gather, SZ_2M, SZ_2M)]


class Gather:
    """Stands in for struct iommu_iotlb_gather; ``queued`` as set by
    dma-iommu in lazy mode (iommu_iotlb_gather_queued)."""

    def __init__(self, queued=False):
        self.queued = queued


def test_v613_unmap_pages_run_with_gather():
    """v6.13 __arm_lpae_unmap with pgcount 3 over [2M block, table of 4K
    pages, 2M block]: the table is cleared, walk-flushed and freed first,
    then the whole run is cleared and every entry of it (the table's
    included) is added to a live gather; a queued gather gets nothing;
    both return 3 x 2M."""
    for queued in (False, True):
        pt = LpaeTable(SZ_4K, 48, 48, 1, "v6.13")
        pt.map(0, 0x80000000, SZ_2M)
        pt.map(SZ_2M + SZ_4K, 0x1000, SZ_4K)
        pt.map(2 * SZ_2M, 0x80400000, SZ_2M)
        gather = Gather(queued)
        assert pt.unmap(0, SZ_2M, gather, count=3) == 3 * SZ_2M
        walk = [("tlb_flush_walk", SZ_2M, SZ_2M, SZ_4K)]
        adds = [("tlb_add_page", gather, k * SZ_2M, SZ_2M) for k in range(3)]
        assert pt.tlb.calls == walk + ([] if queued else adds)
        assert list(pt.mappings()) == []
    # a NULL gather (the selftest's) queues nothing either
    pt = LpaeTable(SZ_4K, 48, 48, 1, "v6.13")
    pt.map(0, 0x80000000, SZ_2M, count=2)
    assert pt.unmap(0, SZ_2M, None, count=2) == 2 * SZ_2M
    assert pt.tlb.calls == []


# ---------------------------------------------------------------- geometry
# Worked out by hand from arm_lpae_alloc_pgtable / _s2 (and the Arm ARM's
# translation-granule tables): pg_shift = log2(granule), bits_per_level =
# pg_shift - 3, va_bits = ias - pg_shift, levels = ceil(va_bits / bpl),
# start = 4 - levels, pgd entries = 2^(va_bits - bpl * (levels - 1)).
# Stage 2 concatenates up to 16 level-0 entries into a level-1 pgd (only
# when the walk would start at level 0).
#
# Rows: ias -> (stage-1 levels, stage-1 pgd entries,
#               stage-2 levels, stage-2 pgd entries)
GEOMETRY_4K = {     # 9 bits a level; L3 4K, L2 2M, L1 1G, L0 512G
    32: (3, 4, 3, 4),           # va 20 = 2 + 9 + 9
    33: (3, 8, 3, 8),
    34: (3, 16, 3, 16),
    35: (3, 32, 3, 32),
    36: (3, 64, 3, 64),         # va 24 = 6 + 9 + 9
    37: (3, 128, 3, 128),
    38: (3, 256, 3, 256),
    39: (3, 512, 3, 512),       # va 27 = 9 + 9 + 9: one full table
    40: (4, 2, 3, 1024),        # va 28 = 1 + 27; s2: 2 x 512 at L1
    41: (4, 4, 3, 2048),
    42: (4, 8, 3, 4096),        # s2: 8 concatenated tables
    43: (4, 16, 3, 8192),       # s2: 16 tables, the most allowed
    44: (4, 32, 4, 32),         # 32 L0 entries: too many to concatenate
    45: (4, 64, 4, 64),
    46: (4, 128, 4, 128),
    47: (4, 256, 4, 256),
    48: (4, 512, 4, 512),       # va 36 = 9 + 27
}
GEOMETRY_16K = {    # 11 bits a level; L3 16K, L2 32M, L1 64G, L0 128T
    32: (2, 128, 2, 128),       # va 18 = 7 + 11
    33: (2, 256, 2, 256),
    34: (2, 512, 2, 512),
    35: (2, 1024, 2, 1024),
    36: (2, 2048, 2, 2048),     # va 22 = 11 + 11
    37: (3, 2, 3, 2),           # va 23 = 1 + 22; starts at L1: no concat
    38: (3, 4, 3, 4),
    39: (3, 8, 3, 8),
    40: (3, 16, 3, 16),         # va 26 = 4 + 22
    41: (3, 32, 3, 32),
    42: (3, 64, 3, 64),
    43: (3, 128, 3, 128),
    44: (3, 256, 3, 256),       # va 30 = 8 + 22
    45: (3, 512, 3, 512),
    46: (3, 1024, 3, 1024),
    47: (3, 2048, 3, 2048),
    48: (4, 2, 3, 4096),        # va 34 = 1 + 33; s2: 2 x 2048 at L1
}
GEOMETRY_64K = {    # 13 bits a level; L3 64K, L2 512M, L1 4T
    32: (2, 8, 2, 8),           # va 16 = 3 + 13
    33: (2, 16, 2, 16),
    34: (2, 32, 2, 32),
    35: (2, 64, 2, 64),
    36: (2, 128, 2, 128),       # va 20 = 7 + 13
    37: (2, 256, 2, 256),
    38: (2, 512, 2, 512),
    39: (2, 1024, 2, 1024),
    40: (2, 2048, 2, 2048),     # va 24 = 11 + 13
    41: (2, 4096, 2, 4096),
    42: (2, 8192, 2, 8192),     # va 26 = 13 + 13: one full table
    43: (3, 2, 3, 2),           # va 27 = 1 + 26
    44: (3, 4, 3, 4),
    45: (3, 8, 3, 8),
    46: (3, 16, 3, 16),
    47: (3, 32, 3, 32),
    48: (3, 64, 3, 64),         # va 32 = 6 + 26; never starts at L0
}
GEOMETRY = {SZ_4K: GEOMETRY_4K, SZ_16K: GEOMETRY_16K, SZ_64K: GEOMETRY_64K}
BITS_PER_LEVEL = {SZ_4K: 9, SZ_16K: 11, SZ_64K: 13}
PGSIZE_BITMAP = {SZ_4K: 0x40201000, SZ_16K: 0x02004000, SZ_64K: 0x20010000}
BLOCK_SIZES = {     # level -> bytes one entry maps
    SZ_4K: {0: 1 << 39, 1: 1 << 30, 2: 1 << 21, 3: 1 << 12},
    SZ_16K: {0: 1 << 47, 1: 1 << 36, 2: 1 << 25, 3: 1 << 14},
    SZ_64K: {1: 1 << 42, 2: 1 << 29, 3: 1 << 16},
}


@pytest.mark.parametrize("granule", [SZ_4K, SZ_16K, SZ_64K],
                         ids=["4K", "16K", "64K"])
@pytest.mark.parametrize("ias", range(32, 49))
@pytest.mark.parametrize("stage", [1, 2])
def test_geometry(granule, ias, stage):
    s1_levels, s1_entries, s2_levels, s2_entries = GEOMETRY[granule][ias]
    levels, entries = ((s1_levels, s1_entries) if stage == 1
                       else (s2_levels, s2_entries))
    pt = LpaeTable(granule=granule, ias=ias, oas=48, stage=stage)
    assert pt.levels == levels
    assert pt.start_level == 4 - levels
    assert pt.pgd_entries == entries
    assert pt.pgd_size == entries * 8
    assert pt.bits_per_level == BITS_PER_LEVEL[granule]
    assert pt.pgsize_bitmap == PGSIZE_BITMAP[granule]
    assert pt.concatenated == (stage == 2 and s1_levels == 4
                               and s2_levels == 3)
    snap = pt.snapshot()
    assert snap.levels == tuple(range(4 - levels, 4))
    assert len(snap.table(snap.root).entries) == entries
    for level, size in BLOCK_SIZES[granule].items():
        if level >= pt.start_level:
            assert pt.block_size(level) == size
    # the pgd's entries exactly cover the input address space
    assert entries * pt.block_size(pt.start_level) == 1 << ias


def test_level_index_4k_48():
    """Each level takes its own 9 bits of the iova."""
    pt = LpaeTable(SZ_4K, 48, 48, 1)
    iova = (5 << 39) | (7 << 30) | (9 << 21) | (11 << 12) | 0x123
    assert [pt.level_index(iova, lvl) for lvl in range(4)] == [5, 7, 9, 11]
    pt.map(iova & ~0xFFF, 0x1234000, SZ_4K)
    assert [s.index for s in pt.walk(iova)] == [5, 7, 9, 11]
    assert pt.iova_to_phys(iova) == 0x1234123


def test_level_index_concatenated_s2():
    """Stage 2, 4K, ias 40: the pgd is two concatenated level-1 tables
    (1024 entries), so the level-1 index has 10 bits: iova 0xC040000000
    is entry 0x301 = 769, in the second table."""
    pt = LpaeTable(SZ_4K, 40, 48, 2)
    assert pt.level_index(0xC040000000, 1) == 769
    pt.map(0xC040000000, 0x40000000, SZ_1G)
    steps = pt.walk(0xC040000000 + 5)
    assert [(s.level, s.index, s.kind) for s in steps] == [(1, 769, "block")]
    assert pt.iova_to_phys(0xC040000005) == 0x40000005
    # the last 1G of the ias, the corner d64c8053378e tests
    top = (1 << 40) - SZ_1G
    assert pt.level_index(top, 1) == 1023
    assert pt.map(top, top, SZ_1G) == SZ_1G
    assert pt.unmap(top, SZ_1G) == SZ_1G


def test_pgd_address_and_alignment():
    """The pgd lives in simulated table memory, aligned to its size (the
    32 KiB concatenated stage-2 pgd of 4K/ias 42 is 32 KiB aligned)."""
    pt = LpaeTable(SZ_4K, 42, 48, 2)
    assert pt.pgd_size == 0x8000
    assert pt.pgd.paddr % 0x8000 == 0
    assert pt.snapshot().root == pt.pgd.paddr
