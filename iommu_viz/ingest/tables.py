"""The page table a replay drives and what it hands the table: flush ops
that only count the TLB callbacks, the strict unmap's gather, and two
walks of the table that io-pgtable's block writes need (the bytes a block
would free).
"""

from __future__ import annotations

from array import array

from ..pgtable.common import FlushOps, PgtableError, SZ_1M, era_at_least
from ..pgtable.lpae import PTE_ADDR_MASK, LpaeTable
from ..pgtable.v7s import ADDR_BITS as V7S_ADDR_BITS, V7sTable

__all__ = ["CountingFlushOps", "IotlbGather", "make_table", "live_bytes",
           "replaced_by", "v7s_max_oas", "LeafSlots", "SplitWatch"]


class CountingFlushOps(FlushOps):
    """Flush ops that only count the calls the page table makes, by name:
    the cheap stand-in for an SMMU during a long replay (models the
    callbacks of ``struct iommu_flush_ops``, v5.4, and ``iommu_gather_ops``,
    v4.20, without a TLB behind them)."""

    def __init__(self):
        self.counts: dict[str, int] = {}

    def _count(self, name):
        self.counts[name] = self.counts.get(name, 0) + 1

    def tlb_flush_all(self):
        self._count("tlb_flush_all")

    def tlb_flush_walk(self, iova, size, granule):
        self._count("tlb_flush_walk")

    def tlb_flush_leaf(self, iova, size, granule):
        self._count("tlb_flush_leaf")

    def tlb_add_page(self, gather, iova, granule):
        # the one called for every page unmapped: counted in place
        counts = self.counts
        counts["tlb_add_page"] = counts.get("tlb_add_page", 0) + 1

    def tlb_add_flush(self, iova, size, granule, leaf):
        self._count("tlb_add_flush")

    def tlb_sync(self):
        self._count("tlb_sync")


class IotlbGather:
    """The ``struct iommu_iotlb_gather`` that iommu_unmap() puts on its
    stack and hands to __iommu_unmap (drivers/iommu/iommu.c, v5.4 and
    later; iommu_iotlb_gather_init): the page table adds each unmapped
    leaf to it with ``tlb_add_page`` and iommu_iotlb_sync() then flushes
    it. A strict unmap's gather is not queued (only dma-iommu's lazy mode
    queues one, v5.15+)."""

    __slots__ = ("queued",)

    def __init__(self):
        self.queued = False


def v7s_max_oas(kernel, mtk) -> int:
    """The output address size mtk_iommu gives a v7s table with
    ARM_MTK_EXT: 32 bits with ARM_MTK_4GB (v4.20), 34 (v5.4), 35 from the
    MT8192 series (v5.12); 32 without the quirk (ARM_V7S_ADDR_BITS)."""
    if not mtk:
        return V7S_ADDR_BITS
    if era_at_least(kernel, (5, 12)):
        return 35
    return 34 if era_at_least(kernel, (5, 4)) else 32


def make_table(fmt, granule, kernel, ias, mtk, tlb):
    """A fresh table of ``fmt``: LPAE stage 1 with a 48-bit output, or
    ARM_V7S with all four page sizes (4K, 64K, 1M, 16M: the
    pgsize_bitmap mtk_iommu and arm-smmu give it) and, with ``mtk``, the
    quirks mtk_iommu_domain_finalise sets (ARM_NS, NO_PERMS,
    ARM_MTK_EXT)."""
    if fmt == "v7s":
        return V7sTable(granule=granule, ias=ias,
                        oas=v7s_max_oas(kernel, mtk), kernel=kernel,
                        tlb=tlb, ns=mtk, no_perms=mtk, mtk_ext=mtk)
    return LpaeTable(granule=granule, ias=ias, oas=48, kernel=kernel, tlb=tlb)



def live_bytes(table, iova, pgsize) -> int:
        """Bytes mapped in ``[iova, iova + pgsize)`` now, read by table
        walks: needed where a block-sized map or unmap meets a table, which
        io-pgtable-arm frees whole (arm_lpae_init_pte replaces it by the
        block; __arm_lpae_unmap returns the block size) whatever it held."""
        walk = table.walk
        try:
            last = walk(iova)[-1]
        except PgtableError:
            return 0
        if last.size >= pgsize:
            return 0 if last.kind == "invalid" else pgsize
        live = 0
        x = iova
        end = iova + pgsize
        while True:
            if last.kind != "invalid":
                live += last.size
            x = (x & ~(last.size - 1)) + last.size
            if x >= end:
                return live
            last = walk(x)[-1]

def replaced_by(table, fmt, iova, pgsize):
        """``(bytes, tables)``: the live pages in the tables a map of one
        ``pgsize`` page at ``iova`` would free, and how many such tables
        held pages. LPAE: arm_lpae_init_pte frees a table found in the
        block's one entry (a leaf there makes the map fail, EEXIST). v7s:
        arm_v7s_init_pte frees level-2 tables only when writing level-1
        entries (1M sections, 16M supersections: one per MiB); 4K and 64K
        pages are written at level 2, where no table can be."""
        walk = table.walk
        if fmt == "v7s":
            if pgsize < SZ_1M or (iova + pgsize - 1) >> table.ias:
                return 0, 0     # (the map refuses the latter: ERANGE)
            lost = tables = 0
            for a in range(iova, iova + pgsize, SZ_1M):
                if walk(a)[0].kind == "table":
                    live = live_bytes(table, a, SZ_1M)
                    if live:
                        lost += live
                        tables += 1
            return lost, tables
        live = live_bytes(table, iova, pgsize)
        if live and walk(iova)[-1].size < pgsize:
            return live, 1
        return 0, 0


class LeafSlots:
    """The last-level tables of an LPAE table that the replay has seen,
    by the iova span each covers, so that a granule page can be written
    into (or cleared from) its slot directly: the same descriptor that
    ``LpaeTable.map`` writes for one page into an existing last-level
    table (__arm_lpae_init_pte), and the same flush-op calls that
    ``LpaeTable.unmap`` makes for one page (__arm_lpae_unmap), learnt
    from a scratch table of the same settings rather than restated here.
    Anything else (no table yet, a slot in use, a block, a freed table)
    goes to the table's own map/unmap. A test replays random logs both
    ways and compares every table.

    ``ok`` is False when the scratch table shows something this shortcut
    does not cover (then the replay never takes it)."""

    def __init__(self, table, kernel, ias, gather):
        self.table = table
        self.slots: dict = {}
        self.bits = 0
        self.unmap_calls: tuple = ()
        self.ok = False
        if table.fmt != "lpae" or table.trace is not None:
            return
        g = table.granule
        self.span = table.pg_shift + (table.pg_shift - 3)   # one table's span
        self.gshift = table.pg_shift
        self.imask = (1 << (table.pg_shift - 3)) - 1
        try:
            self.ok = self._learn(kernel, ias, g, gather)
        except (PgtableError, KeyError, AttributeError, IndexError):
            self.ok = False

    def _learn(self, kernel, ias, g, gather) -> bool:
        rec = CountingFlushOps()
        t = make_table("lpae", g, kernel, ias, False, rec)
        iova = 1 << (ias - 1)
        bits = set()
        for k, pa in enumerate((0x80000000, 0x1234567000 & ~(g - 1))):
            a = iova + k * g
            t.map(a, pa, g)
            pte = t.walk(a)[-1].pte
            b = pte ^ pa
            if b & PTE_ADDR_MASK or pte != pa | b:
                return False
            bits.add(b)
        if len(bits) != 1 or rec.counts:
            return False
        self.bits = bits.pop()
        t.unmap(iova, g, gather)
        self.unmap_calls = tuple(rec.counts.items())
        return True

    def _slot(self, iova):
        """The cached last-level table for ``iova`` if it is still the
        table's, and the index of ``iova``'s slot in it."""
        t = self.slots.get(iova >> self.span)
        if t is None or self.table._tables.get(t.paddr) is not t:
            return None, 0
        return t, (iova >> self.gshift) & self.imask

    def map_run(self, iova, pa, n) -> bool:
        """Write ``n`` granule pages at ``iova`` -> ``pa`` when they all
        fall in empty slots of one cached table; False (nothing written)
        otherwise."""
        t, x = self._slot(iova)
        g = self.table.granule
        if t is None or x + n > len(t.ptes) or \
                (pa + n * g - 1) >> self.table.oas:
            return False
        ptes = t.ptes
        if n == 1:
            if ptes[x]:
                return False
            ptes[x] = pa | self.bits
        else:
            if any(ptes[x:x + n]):
                return False
            first = pa | self.bits
            ptes[x:x + n] = array("Q", range(first, first + n * g, g))
        self.table._dirty.add(t.paddr)
        return True

    def unmap_run(self, iova, n, counts) -> int:
        """Clear up to ``n`` granule pages from ``iova`` in one cached
        table, stopping at the first empty slot or the table's end, and
        count the flush-op calls each page makes; returns the pages
        cleared (0: not cached, or nothing there)."""
        t, x = self._slot(iova)
        if t is None:
            return 0
        ptes = t.ptes
        end = min(len(ptes), x + n)
        k = x
        while k < end and ptes[k] & 3 == 3:       # a page descriptor
            k += 1
        k -= x
        if k:
            ptes[x:x + k] = array("Q", bytes(8 * k))
            self.table._dirty.add(t.paddr)
            for name, c in self.unmap_calls:
                counts[name] = counts.get(name, 0) + c * k
        return k

    def learn(self, iova):
        """Remember the last-level table that holds ``iova``'s slot now."""
        step = self.table.walk(iova)[-1]
        if step.level == 3:
            self.slots[iova >> self.span] = self.table._tables[step.table]


class SplitWatch:
    """The trace hook a request's unmap runs under: it counts the splits
    and the refusals (warnings) the table reports. ``hook`` is the one for
    the table's format."""

    def __init__(self, fmt):
        self.splits = self.warns = 0
        self.hook = self._lpae if fmt == "lpae" else self._v7s

    def _lpae(self, func, kind, **detail):
        """LpaeTable: a split fills a new table (arm_lpae_split_blk_unmap);
        a refused partial unmap warns (v6.13)."""
        if kind == "table_fill":
            self.splits += 1
        elif kind == "warn":
            self.warns += 1

    def _v7s(self, func, kind, **detail):
        """V7sTable: a split is arm_v7s_split_cont rewriting a CONT group,
        or arm_v7s_install_table putting a table where a section was
        (arm_v7s_split_blk_unmap; a table built but lost to the
        compare-and-swap replaced nothing); a refused partial unmap warns
        (v6.13)."""
        if kind == "pte_write":
            if func == "arm_v7s_split_cont" or (
                    func == "arm_v7s_install_table" and detail["old"]):
                self.splits += 1
        elif kind == "warn":
            self.warns += 1
