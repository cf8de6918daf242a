"""Lazy mode: dma-iommu's unmap and its flush queue
(drivers/iommu/dma-iommu.c; the queue lived in drivers/iommu/iova.c until
v5.17).

In lazy mode (``iommu.strict=0``) ``__iommu_dma_unmap`` unmaps with a
*queued* gather and does not sync: the range waits in a flush queue,
whose whole-IOTLB flush comes when the ring is full or its timer fires.
Until then the device may still reach the pages through the TLB. The
queue reaches the driver only through ``flush_iotlb_all`` (the domain op
``fq_flush_iotlb`` calls), the unmap the IOMMU core through its unmap.
"""

from __future__ import annotations

from ..pgtable.common import fmt_size
from .trace import FqEntry


class IommuDmaCookie:
    """``struct iommu_dma_cookie`` of a DMA domain in lazy mode: its flush
    queue (``fq``, a ring of ``size`` slots) and the time its timer is due
    (``deadline_us``, None when not armed).

    ``domain`` is the IOMMU core's domain, ``ops`` the driver's domain
    ops, ``clock`` the run's clock, ``rec`` its recorder.
    """

    def __init__(self, cfg, domain, ops, clock, rec):
        self.domain = domain
        self.ops = ops
        self.clock = clock
        self.rec = rec
        self.size = cfg.fq_size
        self.timeout_us = int(cfg.fq_timeout_ms * 1000)
        self.fq: list[FqEntry] = []
        self.deadline_us: int | None = None

    def unmap(self, iova: int, size: int) -> int:
        """__iommu_dma_unmap: iommu_unmap_fast with a queued gather, no
        sync, then the range goes to the flush queue (iommu_dma_free_iova,
        queue_iova). Returns bytes unmapped."""
        return self.domain.unmap_on_stack(
            iova, size, "__iommu_dma_unmap", True,
            lambda g: self._defer(g, iova, size))

    def _defer(self, gather, iova, size):
        if not gather.empty:
            self.rec.emit("cpu", "gather_drop", "__iommu_dma_unmap",
                          f"lazy: gather 0x{gather.start:x}..0x{gather.end:x} "
                          "left to the flush queue, not synced")
        self.queue_iova(iova, size)

    def queue_iova(self, iova: int, size: int) -> None:
        """queue_iova (iova.c v4.20/v5.4; dma-iommu.c v5.17+): a ring of
        ``size`` slots holds ``size - 1`` entries; a full ring is flushed
        first; the first entry arms the timer."""
        if len(self.fq) >= self.size - 1:
            self.rec.emit("fq", "fq_full", "queue_iova",
                          f"flush queue full ({len(self.fq)} entries): flush now")
            self.fq_flush("fq_full")
        now = self.clock.now_us
        self.fq.append(FqEntry(iova, size, now))
        if self.deadline_us is None:
            self.deadline_us = now + self.timeout_us
        self.rec.emit("fq", "fq_add", "queue_iova",
                      f"queue iova 0x{iova:x} ({fmt_size(size)}); flush due at "
                      f"{self.deadline_us / 1000:.3f} ms", iova=iova, size=size)

    def fq_flush(self, why: str) -> None:
        """fq_flush_iotlb + fq_ring_free: flush the whole IOTLB, then the
        queued IOVAs (and the pages behind them) are free. Only the timer
        clears the armed flag (fq_timer_on): a flush for a full ring leaves
        the timer running."""
        self.ops.flush_iotlb_all()
        n = len(self.fq)
        self.fq.clear()
        if why == "timeout":
            self.deadline_us = None
        self.rec.emit("fq", "fq_free", "fq_ring_free",
                      f"{n} queued range(s) freed after the flush ({why})",
                      freed=n)

    def fq_flush_timeout(self) -> None:
        """fq_flush_timeout: the timer fired (the clock is at its
        deadline)."""
        self.rec.emit("fq", "fq_timeout", "fq_flush_timeout",
                      f"flush-queue timer fires at "
                      f"{self.clock.now_us / 1000:.3f} ms")
        self.fq_flush("timeout")
