"""The arm-smmu-v3 driver's TLB maintenance
(drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3.c).

:class:`ArmSmmuDomain` is one ``struct arm_smmu_domain`` seen from its two
callers: io-pgtable calls its flush ops (``arm_smmu_flush_ops``: the
methods of :class:`~iommu_viz.pgtable.common.FlushOps`), the IOMMU core its
domain ops (``flush_iotlb_all``, ``iotlb_sync``). It turns each into SMMU
commands: ``CMD_TLBI_NH_ASID`` for the whole context, ``CMD_TLBI_NH_VA``
per granule or, with range invalidation, per range (TG, TTL, NUM, SCALE),
and ``CMD_SYNC`` to wait. It reaches the hardware only through the
command queue: :meth:`Smmu.submit` and :meth:`Smmu.sync`.

Which callbacks exist is the era's: v4.20 has ``iommu_gather_ops``
(``tlb_add_flush`` issues, ``tlb_sync`` waits), v5.4+ ``iommu_flush_ops``
(``tlb_flush_walk``/``tlb_flush_leaf`` invalidate and wait,
``tlb_add_page`` only gathers).
"""

from __future__ import annotations

from ..pgtable.common import FlushOps, era_at_least
from .iommu import iommu_iotlb_gather_add_page


class ArmSmmuDomain(FlushOps):
    """The driver's side of one stage-1 domain.

    ``smmu`` is the hardware's command queue, ``rec`` the run's recorder.
    ``range_inv``: the driver builds range TLBIs with TTL hints (v5.7+,
    6a481a95d4c1, on an SMMU with range invalidation).
    """

    def __init__(self, cfg, smmu, rec):
        self.smmu = smmu
        self.rec = rec
        self.kernel = cfg.kernel
        self.asid = cfg.asid
        self.deferred_gather = cfg.deferred_gather
        self.range_inv = cfg.ttl_in_use
        self.tg = 12

    def finalise(self, pt) -> None:
        """arm_smmu_domain_finalise: the page table is allocated; its
        smallest page size is the granule the TLBIs encode (TG), and the
        context descriptor points the SMMU at it."""
        self.tg = (pt.pgsize_bitmap & -pt.pgsize_bitmap).bit_length() - 1
        self.smmu.write_cd(pt, self.tg)

    # ------------------------------------------------ io-pgtable flush ops
    def tlb_flush_all(self):
        """arm_smmu_tlb_inv_context."""
        self.tlb_inv_context("arm_smmu_tlb_inv_context")

    def tlb_flush_walk(self, iova, size, granule):
        """arm_smmu_tlb_inv_walk: Leaf=0 TLBIs (walk caches too), sync."""
        self.tlb_inv_range(iova, size, granule, False, "arm_smmu_tlb_inv_walk")

    def tlb_flush_leaf(self, iova, size, granule):
        """arm_smmu_tlb_inv_leaf (v5.4-v5.9): Leaf=1 TLBIs, sync."""
        self.tlb_inv_range(iova, size, granule, True, "arm_smmu_tlb_inv_leaf")

    def tlb_add_page(self, gather, iova, granule):
        """arm_smmu_tlb_inv_page_nosync: add the page to the caller's
        gather; nothing is issued. With ``deferred_gather`` off (an
        experiment), the page is invalidated and synced at once."""
        if not self.deferred_gather:
            self.rec.emit("cpu", "add_page", "arm_smmu_tlb_inv_page_nosync",
                          f"gather deferral off: invalidate 0x{iova:x} now")
            self.tlb_inv_range(iova, granule, granule, True,
                               "arm_smmu_tlb_inv_range")
            return
        if gather is None:
            raise AssertionError("tlb_add_page without a gather")
        iommu_iotlb_gather_add_page(self, gather, iova, granule)

    def tlb_add_flush(self, iova, size, granule, leaf):
        """arm_smmu_tlb_inv_range_nosync (v4.20): issue, do not wait."""
        self.tlb_inv_range(iova, size, granule, leaf,
                           "arm_smmu_tlb_inv_range_nosync", sync=False)

    def tlb_sync(self):
        """arm_smmu_tlb_sync (v4.20): CMD_SYNC and wait."""
        self.smmu.sync("arm_smmu_tlb_sync")

    # ------------------------------------------------ iommu_domain_ops
    def flush_iotlb_all(self) -> None:
        """arm_smmu_flush_iotlb_all: the whole context, then sync."""
        self.tlb_inv_context("arm_smmu_flush_iotlb_all")

    def iotlb_sync(self, gather) -> None:
        """arm_smmu_iotlb_sync: v4.20 only waits (the TLBIs went out at
        unmap); v5.4+ invalidates the gathered range, then syncs."""
        if not era_at_least(self.kernel, (5, 4)):
            self.smmu.sync("arm_smmu_iotlb_sync")
        elif not gather.empty:
            self.tlb_inv_range(gather.start, gather.end - gather.start,
                               gather.pgsize, True, "arm_smmu_iotlb_sync")

    # ------------------------------------------------ commands
    def tlb_inv_context(self, func: str) -> None:
        """arm_smmu_tlb_inv_context: CMD_TLBI_NH_ASID, then CMD_SYNC."""
        self.smmu.submit("CMD_TLBI_NH_ASID", func, asid=self.asid)
        self.smmu.sync(func)

    def tlb_inv_range(self, iova, size, granule, leaf, func, sync=True):
        """arm_smmu_tlb_inv_range (v5.4) / __arm_smmu_tlb_inv_range
        (v5.7+): the CMD_TLBI_NH_VA commands for the range, then CMD_SYNC
        unless ``sync`` is False (v4.20's _nosync)."""
        for f in self.tlbi_va_fields(iova, size, granule, leaf):
            self.smmu.submit("CMD_TLBI_NH_VA", func, **f)
        if sync:
            self.smmu.sync(func)

    def tlbi_va_fields(self, iova, size, granule, leaf) -> list[dict]:
        """The CMD_TLBI_NH_VA operands for a range, one dict per command.

        Without range invalidation: one command per ``granule``. With it:
        TG is the table granule, TTL the level of a ``granule``-sized leaf
        (v6.6+: 0 for non-leaf, 6833b8f2e199), and each command covers
        ``(NUM + 1) << SCALE`` pages, taking the lowest set bits of the
        page count first; v6.6+ never sends TTL=NUM=SCALE=0 for a
        non-leaf range (eb6c97647be2).
        """
        cmds = []
        end = iova + size
        if self.range_inv:
            tg = self.tg
            tg_field = (tg - 10) // 2
            glog = granule.bit_length() - 1
            ttl = 4 - ((glog - 3) // (tg - 3))
            v6_6 = era_at_least(self.kernel, (6, 6))
            if not leaf and v6_6:
                ttl = 0
            num_pages = size >> tg
            if not leaf and v6_6 and (num_pages & 31) == 1:
                num_pages += 1
            a = iova
            while a < end and num_pages:
                scale = (num_pages & -num_pages).bit_length() - 1
                num = (num_pages >> scale) & 31
                cmds.append(dict(asid=self.asid, addr=a, leaf=leaf, tg=tg_field,
                                 ttl=ttl, num=num - 1, scale=scale))
                a += num << (scale + tg)
                num_pages -= num << scale
        else:
            a = iova
            while a < end:
                cmds.append(dict(asid=self.asid, addr=a, leaf=leaf))
                a += granule
        return cmds
