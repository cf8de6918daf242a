"""The page table a replay drives and what it hands the table: flush ops
that only count the TLB callbacks, the strict unmap's gather, and two
walks of the table that io-pgtable's block writes need (the bytes a block
would free).
"""

from __future__ import annotations

from ..pgtable.common import FlushOps, PgtableError, SZ_1M, era_at_least
from ..pgtable.lpae import LpaeTable
from ..pgtable.v7s import ADDR_BITS as V7S_ADDR_BITS, V7sTable

__all__ = ["CountingFlushOps", "IotlbGather", "make_table", "live_bytes",
           "replaced_by", "v7s_max_oas"]


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
