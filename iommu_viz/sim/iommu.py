"""The IOMMU core API and its gathers (drivers/iommu/iommu.c,
include/linux/iommu.h).

:class:`IommuDomain` is one ``struct iommu_domain``: ``map`` cuts a range
into page sizes (``iommu_pgsize``) and hands each run to the page table;
``unmap`` and ``unmap_fast`` unmap until the range is done or nothing is
mapped (``__iommu_unmap``), ``iotlb_sync`` completes a gather. It reaches
the page table through its public map/unmap/translate calls and the
driver through ``struct iommu_domain_ops`` (``flush_iotlb_all``,
``iotlb_sync``); :class:`Gather` is ``struct iommu_iotlb_gather``, which
the driver fills through :func:`iommu_iotlb_gather_add_page`.

Every call is checked before anything changes; a refused call raises
:class:`~iommu_viz.errors.ApiError` and leaves the run as it was.
"""

from __future__ import annotations

from ..errors import ApiError, check_uint
from ..pgtable.common import (
    IOMMU_READ, IOMMU_WRITE, PgtableError, era_at_least, fmt_size,
    short_size,
)
from .pgsize import iommu_pgsize, iommu_pgsize_count
from .trace import GatherState

ULONG_MAX = (1 << 64) - 1

#: the id of the gather iommu_unmap and __iommu_dma_unmap keep on the stack
STACK_GATHER = -1


class Gather:
    """``struct iommu_iotlb_gather``: the range of leaf invalidations an
    unmap has deferred (v5.4+; in the v4.20 era only a token for the sync).

    ``start``/``end`` (end exclusive, as in v5.4; v5.12+ keeps it
    inclusive), ``pgsize`` and ``queued`` (v5.15+, set by dma-iommu when the
    flush queue will do the invalidation).
    """

    def __init__(self, owner, gid, queued=False):
        self._owner = owner
        self.id = gid
        self.queued = queued
        self.reset()

    def reset(self):
        """iommu_iotlb_gather_init."""
        self.start = ULONG_MAX
        self.end = 0
        self.pgsize = 0

    @property
    def empty(self):
        return self.pgsize == 0

    def state(self):
        return GatherState(self.id, self.start, self.end, self.pgsize, self.queued)

    def __repr__(self):
        if self.empty:
            return f"Gather(#{self.id}, empty)"
        return (f"Gather(#{self.id}, 0x{self.start:x}..0x{self.end:x}, "
                f"pgsize={short_size(self.pgsize)})")


def iommu_iotlb_sync(ops, gather: Gather) -> None:
    """The driver's ``iotlb_sync`` on ``gather``, then
    iommu_iotlb_gather_init: the gather is empty afterwards."""
    ops.iotlb_sync(gather)
    gather.reset()


def iommu_iotlb_gather_add_page(ops, gather: Gather, iova: int,
                                size: int) -> None:
    """Add a page to ``gather``; a page of another size, or one disjoint
    from the gathered range, makes the gather sync first, so a gather
    always describes one contiguous run of one page size.

    Models iommu_iotlb_gather_add_page (v5.4; v5.13+ the same rule written
    with iommu_iotlb_gather_is_disjoint). ``ops`` is the driver calling it
    (its ``iotlb_sync`` and recorder ``rec``).
    """
    rec = ops.rec
    end = iova + size
    if gather.pgsize != size or end < gather.start or iova > gather.end:
        if gather.pgsize:
            rec.emit("cpu", "gather_sync", "iommu_iotlb_gather_add_page",
                     f"page 0x{iova:x} ({short_size(size)}) does not "
                     "fit the gather: sync it first")
            iommu_iotlb_sync(ops, gather)
        gather.pgsize = size
    gather.end = max(gather.end, end)
    gather.start = min(gather.start, iova)
    rec.emit("cpu", "add_page", "iommu_iotlb_gather_add_page",
             f"gather #{gather.id} += 0x{iova:x} ({short_size(size)})"
             f": now 0x{gather.start:x}..0x{gather.end:x}",
             gather=gather.id, iova=iova, size=size)


class IommuDomain:
    """One paging domain of the IOMMU core: the API calls on it.

    ``pt`` is the domain's page table (io-pgtable), ``ops`` the driver's
    domain ops, ``caller`` the API's user (:mod:`.callers`), ``rec`` the
    run's recorder; ``gathers`` holds the gathers now open (by id).
    """

    def __init__(self, kernel, pt, ops, caller, rec):
        self.pt = pt
        self.ops = ops
        self.caller = caller
        self.rec = rec
        #: v5.14+ hands the table a count of pages per call
        self.pages_api = era_at_least(kernel, (5, 14))
        self.min_pagesz = pt.pgsize_bitmap & -pt.pgsize_bitmap
        self.gathers: dict[int, Gather] = {}
        self._next_gather = 0

    # ------------------------------------------------------------ gathers
    def new_gather(self) -> Gather:
        """iommu_iotlb_gather_init: an empty gather for unmap_fast."""
        self._next_gather += 1
        g = Gather(self, self._next_gather)
        self.gathers[g.id] = g
        self.rec.begin(dict(op="new_gather", id=g.id))
        self.rec.emit("cpu", "gather_init", "iommu_iotlb_gather_init",
                      f"new gather #{g.id}", gather=g.id)
        return g

    def _own_gather(self, g):
        if not isinstance(g, Gather) or g._owner is not self or \
                self.gathers.get(g.id) is not g:
            raise ApiError("EINVAL", f"gather {g!r} does not belong to this "
                           "simulation; make one with new_gather()")

    # ------------------------------------------------------------ map
    def map(self, iova: int, paddr: int, size: int,
            prot: int = IOMMU_READ | IOMMU_WRITE) -> int:
        """iommu_map: split ``size`` into the largest page sizes alignment
        allows (iommu_pgsize) and map each run (v4.20 .. v6.13). Every run
        is checked before the first is mapped, so a refused call raises
        :class:`ApiError` and changes nothing (the kernel instead unmaps
        what it had mapped). Returns the bytes mapped.

        A ``prot`` granting neither IOMMU_READ nor IOMMU_WRITE: before
        v6.11 the page table's map had nothing to do and returned 0
        before any other check, so iommu_map succeeds having mapped
        nothing (returns 0 here); from v6.11 (6093cd582f8e) the table's
        map_pages fails with EINVAL after its range checks, and so does
        iommu_map (ApiError). (From v5.14 to v6.10 without that fix the
        map_pages loop of __iommu_map never ended; no era here has it.)
        """
        for n, v in (("iova", iova), ("paddr", paddr), ("size", size)):
            check_uint(n, v)
        m = self.min_pagesz
        if not size or (iova | paddr | size) & (m - 1):
            raise ApiError("EINVAL", f"unaligned: iova 0x{iova:x} pa "
                           f"0x{paddr:x} size 0x{size:x}: all must be "
                           f"multiples of the {fmt_size(m)} minimum page size")
        runs = self._map_runs(iova, paddr, size)
        try:
            writes = all([self.pt.check_map_range(i, p, pg, cnt, prot)
                          for (i, p, pg, cnt) in runs])
        except PgtableError as e:
            raise ApiError(e.errno, e.message) from None
        self.rec.begin(dict(op="map", iova=iova, paddr=paddr, size=size,
                            prot=prot))
        self.rec.emit("cpu", "call", "iommu_map",
                      f"iommu_map(iova=0x{iova:x}, paddr=0x{paddr:x}, "
                      f"size={fmt_size(size)})", iova=iova, paddr=paddr,
                      size=size)
        if not writes:
            self.rec.emit("cpu", "return", "iommu_map",
                          f"prot 0x{prot:x} grants neither read nor write: "
                          "the page table has nothing to do and returns 0 "
                          "(before v6.11); iommu_map returns 0 with nothing "
                          "mapped", mapped=0)
            self.caller.mapped(iova, size)
            return 0
        done = 0
        for (i, p, pg, cnt) in runs:
            done += self.pt.map(i, p, pg, prot, cnt)
        self.caller.mapped(iova, size)
        return done

    def _map_runs(self, iova, paddr, size):
        """The (iova, paddr, pgsize, count) runs __iommu_map hands the
        table: one page each before v5.14, counted runs from v5.14."""
        out = []
        done = 0
        bitmap = self.pt.pgsize_bitmap
        while done < size:
            i, p = iova + done, paddr + done
            if self.pages_api:
                pg, count = iommu_pgsize_count(bitmap, i, p, size - done)
            else:
                pg, count = iommu_pgsize(bitmap, i | p, size - done), 1
            out.append((i, p, pg, count))
            done += pg * count
        return out

    # ------------------------------------------------------------ unmap
    def check_unmap(self, iova, size):
        """The checks of iommu_unmap and of the caller, before anything
        changes."""
        check_uint("iova", iova)
        check_uint("size", size)
        m = self.min_pagesz
        if not size or (iova | size) & (m - 1):
            raise ApiError("EINVAL", f"unaligned: iova 0x{iova:x} size "
                           f"0x{size:x}: both must be multiples of the "
                           f"{fmt_size(m)} minimum page size")
        if (iova + size - 1) >> self.pt.ias:
            raise ApiError("ERANGE", f"iova range 0x{iova:x}..0x{iova + size - 1:x}"
                           f" is beyond the {self.pt.ias}-bit input address size")
        self.caller.check_unmap(iova, size)

    def would_unmap(self, iova, size) -> bool:
        """Whether any page of the range is mapped (ranges over 4096
        pages are assumed to be): a call that unmaps nothing is not
        recorded."""
        m = self.min_pagesz
        if size // m > 4096:
            return True
        return any(self.pt.translate(a) is not None
                   for a in range(iova, iova + size, m))

    def unmap_pages(self, iova, size, gather) -> int:
        """__iommu_unmap: unmap runs of pages until ``size`` is done or a
        run unmaps nothing (v4.20 .. v6.13)."""
        unmapped = 0
        bitmap = self.pt.pgsize_bitmap
        while unmapped < size:
            a = iova + unmapped
            if self.pages_api:
                pg, count = iommu_pgsize_count(bitmap, a, a, size - unmapped)
            else:
                pg, count = iommu_pgsize(bitmap, a, size - unmapped), 1
            got = self.pt.unmap(a, pg, gather, count)
            if not got:
                break
            unmapped += got
        return unmapped

    def unmap_on_stack(self, iova, size, func, queued, complete) -> int:
        """Unmap with a gather of the caller's own (iommu_unmap,
        __iommu_dma_unmap): ``func`` names the call, ``queued`` marks the
        gather for the flush queue, ``complete(gather)`` then makes the
        unmap stick (a sync, or queueing the range). Returns bytes
        unmapped; 0, unrecorded, when nothing is mapped there."""
        self.check_unmap(iova, size)
        if not self.would_unmap(iova, size):
            return 0
        rec = self.rec
        rec.begin(dict(op="unmap", iova=iova, size=size))
        rec.emit("cpu", "call", func,
                 f"{func}(iova=0x{iova:x}, size={fmt_size(size)})",
                 iova=iova, size=size)
        g = Gather(self, STACK_GATHER, queued=queued)
        self.gathers[STACK_GATHER] = g
        try:
            got = self.unmap_pages(iova, size, g)
            complete(g)
        finally:
            del self.gathers[STACK_GATHER]
        self.caller.unmapped(iova, size, got)
        rec.emit("cpu", "return", func, f"{func} returns 0x{got:x}",
                 unmapped=got)
        return got

    def unmap(self, iova: int, size: int) -> int:
        """iommu_unmap: __iommu_unmap, then iommu_iotlb_sync."""
        return self.unmap_on_stack(
            iova, size, "iommu_unmap", False,
            lambda g: iommu_iotlb_sync(self.ops, g))

    def unmap_fast(self, iova: int, size: int, gather: Gather) -> int:
        """iommu_unmap_fast: unmap, deferring leaf invalidation into
        ``gather``; nothing is guaranteed until iotlb_sync(gather)
        (v4.20: TLBIs issued, no CMD_SYNC; v5.4+: nothing issued)."""
        self._own_gather(gather)
        self.check_unmap(iova, size)
        if not self.would_unmap(iova, size):
            return 0
        rec = self.rec
        rec.begin(dict(op="unmap_fast", iova=iova, size=size, gather=gather.id))
        rec.emit("cpu", "call", "iommu_unmap_fast",
                 f"iommu_unmap_fast(iova=0x{iova:x}, size={fmt_size(size)}, "
                 f"gather #{gather.id})", iova=iova, size=size)
        got = self.unmap_pages(iova, size, gather)
        self.caller.unmapped(iova, size, got)
        rec.emit("cpu", "return", "iommu_unmap_fast",
                 f"iommu_unmap_fast returns 0x{got:x}; no sync yet",
                 unmapped=got)
        return got

    # ------------------------------------------------------------ sync
    def iotlb_sync(self, gather: Gather) -> None:
        """iommu_iotlb_sync (iommu_tlb_sync in v5.4): complete what
        ``gather`` deferred."""
        self._own_gather(gather)
        self.rec.begin(dict(op="iotlb_sync", gather=gather.id))
        self.rec.emit("cpu", "call", "iommu_iotlb_sync",
                      f"iommu_iotlb_sync(gather #{gather.id})", gather=gather.id)
        iommu_iotlb_sync(self.ops, gather)

    def flush_iotlb_all(self) -> None:
        """iommu_flush_iotlb_all: invalidate the whole domain."""
        self.rec.begin(dict(op="flush_all"))
        self.rec.emit("cpu", "call", "iommu_flush_iotlb_all",
                      "iommu_flush_iotlb_all()")
        self.ops.flush_iotlb_all()
