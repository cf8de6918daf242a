"""Shared vocabulary of the page-table formats: sizes, IOMMU prot flags, kernel
eras, the error type, and the flush-ops interface the formats call into.

The page-table code knows nothing of TLBs. Like ``io-pgtable`` in Linux it is
handed a set of TLB-maintenance callbacks (``struct iommu_flush_ops`` from
v5.4, ``struct iommu_gather_ops`` before that) and calls them with the same
arguments the kernel passes. :class:`FlushOps` is that interface;
:class:`RecordingFlushOps` is a fake that simply records the calls, which is
what a table uses when no system is attached (and what tests inspect).

Example::

    >>> from iommu_viz import LpaeTable, SZ_4K, SZ_2M
    >>> pt = LpaeTable(granule=SZ_4K, ias=48, oas=48, kernel="v5.4")
    >>> pt.map(0x40000000, 0x80000000, SZ_2M)
    2097152
    >>> pt.unmap(0x40001000, SZ_4K)
    4096
    >>> pt.tlb.calls
    [('tlb_add_page', None, 1073745920, 4096)]
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import IommuVizError

SZ_1K = 1 << 10
SZ_4K = 1 << 12
SZ_16K = 1 << 14
SZ_64K = 1 << 16
SZ_1M = 1 << 20
SZ_2M = 1 << 21
SZ_16M = 1 << 24
SZ_32M = 1 << 25
SZ_512M = 1 << 29
SZ_1G = 1 << 30
SZ_2G = 1 << 31
SZ_4G = 1 << 32

# include/linux/iommu.h (values unchanged from v4.20 to v6.13)
IOMMU_READ = 1 << 0
IOMMU_WRITE = 1 << 1
IOMMU_CACHE = 1 << 2
IOMMU_NOEXEC = 1 << 3
IOMMU_MMIO = 1 << 4
IOMMU_PRIV = 1 << 5

@dataclass(frozen=True)
class KernelEra:
    """What one kernel era does, field by field: the one record the page
    tables read instead of comparing era names. Each field names the
    release (and commit, where known) that changed it; the details and
    evidence are in docs/kernel-facts.md.

    >>> from iommu_viz.pgtable import era
    >>> era("v6.1").unmap_run_first, era("v6.12").unmap_run_first
    (False, True)
    >>> [e.name for e in ERAS.values() if e.splits_blocks]
    ['v4.20', 'v5.4', 'v6.1', 'v6.12']
    """

    name: str
    version: tuple
    #: what changed, for a learner (the text of :data:`KERNELS`)
    summary: str
    #: arm_lpae_split_blk_unmap invalidates and syncs the page itself
    #: (v4.20, b6b65ca20bc9); later the page goes to the caller's gather
    split_syncs_itself: bool
    #: a partial unmap of a block splits it (until v6.12; 33729a5fc0ca and
    #: fd50651636fb in v6.13 refuse it)
    splits_blocks: bool
    #: map_pages/unmap_pages with a page count (v5.14)
    pages_api: bool
    #: struct iommu_gather_ops (tlb_add_flush + tlb_sync) before v5.4
    gather_ops: bool
    #: iommu_flush_ops.tlb_flush_leaf exists (v5.4 .. v5.10; fefe8527a1e0)
    flush_leaf: bool
    #: arm_lpae_prot_to_pte picks SH=IS for IOMMU_CACHE, SH=OS otherwise (v5.6)
    sh_from_cache: bool
    #: arm-smmu-v3 range invalidation with TTL hints (v5.7, 6a481a95d4c1)
    range_inv: bool
    #: iommu_iotlb_gather_queued replaces the NON_STRICT quirk (v5.15, a8e5f04458c4)
    queued_gather: bool
    #: map_pages refuses a prot without IOMMU_READ/WRITE with -EINVAL
    #: (v6.11, 6093cd582f8e; Debian's 6.1.192 has it too)
    noaccess_einval: bool
    #: __arm_lpae_unmap frees the run's tables first, clears the run in one
    #: write and adds pages only for a caller's gather ("Optimise
    #: non-coherent unmap", v6.12); before, entry by entry
    unmap_run_first: bool
    #: v7s ARM_MTK_EXT address bits 32/33 in the PTE (v5.4)
    mtk_pa_bits: bool
    #: v7s MediaTek PA bit 34 and a level-1 table sized by ias (v5.12)
    mtk_pa34: bool

    def at_least(self, version: tuple) -> bool:
        """True when this era is the release ``version`` or later."""
        return self.version >= version


def _era(name, version, summary, **override):
    v = version
    fields = dict(
        split_syncs_itself=v < (5, 4), splits_blocks=v < (6, 13),
        pages_api=v >= (5, 14), gather_ops=v < (5, 4),
        flush_leaf=(5, 4) <= v < (5, 11), sh_from_cache=v >= (5, 6),
        range_inv=v >= (5, 7), queued_gather=v >= (5, 15),
        noaccess_einval=v >= (6, 11), unmap_run_first=v >= (6, 12),
        mtk_pa_bits=v >= (5, 4), mtk_pa34=v >= (5, 12))
    fields.update(override)
    return KernelEra(name, version, summary, **fields)


#: The kernel eras the model distinguishes, named by the first release that
#: behaved so (v6.1: as Debian 12 ships it, linux-source-6.1 6.1.192).
ERAS = {e.name: e for e in (
    _era("v4.20", (4, 20),
         "split syncs itself: arm_lpae_split_blk_unmap issues "
         "tlb_add_flush and tlb_sync (b6b65ca20bc9, non-strict mode)"),
    _era("v5.4", (5, 4),
         "deferred invalidation: the split adds the page to the caller's "
         "iommu_iotlb_gather; the caller's iotlb_sync covers it"),
    _era("v6.1", (6, 1),
         "Debian 12's kernel (6.1.192): as v6.12 but __arm_lpae_unmap "
         "handles a run entry by entry and adds each leaf page even "
         "without a gather (NULL); map_pages refuses no-access prot "
         "(backported from v6.11)", noaccess_einval=True),
    _era("v6.12", (6, 12),
         "the last release that splits: as v5.4, plus map_pages/"
         "unmap_pages (v5.14), the queued gather (v5.15) and "
         "arm-smmu-v3 range invalidation with TTL hints (v5.7+, 6a481a95d4c1)"),
    _era("v6.13", (6, 13),
         "no split: unmapping part of a block is refused with a warning "
         "and 0 bytes unmapped (33729a5fc0ca)"),
)}

#: Kernel eras the model distinguishes, with what changed for a learner.
KERNELS = {name: e.summary for name, e in ERAS.items()}


def check_kernel(kernel: str) -> str:
    """Return ``kernel`` if it is a modelled era, else raise ``ValueError``."""
    if kernel not in KERNELS:
        raise ValueError(
            f"kernel {kernel!r} is not a modelled era; choose one of "
            + ", ".join(repr(k) for k in KERNELS))
    return kernel


def era(kernel: str) -> KernelEra:
    """The :class:`KernelEra` record of ``kernel`` (``ValueError`` if it is
    not a modelled era)."""
    return ERAS[check_kernel(kernel)]


def era_at_least(kernel: str, version: tuple[int, int]) -> bool:
    """True when the era ``kernel`` is the release ``version`` or later."""
    return ERAS[kernel].version >= version


def fmt_size(size: int) -> str:
    """``4096`` -> ``'4 KiB'``; used in messages and captions."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size >= 1 << shift and size % (1 << shift) == 0:
            return f"{size >> shift} {unit}"
    return f"{size} bytes"


def short_size(size: int) -> str:
    """``4096`` -> ``'4K'``, ``2 << 20`` -> ``'2M'``: the kernel's SZ_ names."""
    for unit, shift in (("G", 30), ("M", 20), ("K", 10)):
        if size >= 1 << shift and size % (1 << shift) == 0:
            return f"{size >> shift}{unit}"
    return str(size)


class PgtableError(IommuVizError):
    """A page-table operation refused its input.

    ``errno`` is the kernel's errno name (``'EEXIST'``, ``'EINVAL'``,
    ``'ERANGE'``, ``'ENOMEM'``); the message names the offending value and the
    rule it broke. The table is unchanged when this is raised.
    """


class FlushOps:
    """The TLB-maintenance callbacks a page table is given.

    Models ``struct iommu_flush_ops`` (include/linux/io-pgtable.h, v5.4:
    ``tlb_flush_all``, ``tlb_flush_walk``, ``tlb_flush_leaf``,
    ``tlb_add_page``) and, for the v4.20 era, ``struct iommu_gather_ops``
    (``tlb_flush_all``, ``tlb_add_flush``, ``tlb_sync``). A format calls
    exactly the methods its kernel era called; the base class does nothing.
    """

    def tlb_flush_all(self) -> None:
        """Invalidate everything the domain may have cached."""

    # v5.4 .. v6.13
    def tlb_flush_walk(self, iova: int, size: int, granule: int) -> None:
        """Invalidate cached table walks (and leaves) of ``[iova, iova+size)``
        and wait for completion; called when a table is freed."""

    def tlb_flush_leaf(self, iova: int, size: int, granule: int) -> None:
        """Invalidate last-level entries of the range and wait (v5.4-v5.9,
        used by v7s to split contiguous entries)."""

    def tlb_add_page(self, gather, iova: int, granule: int) -> None:
        """Queue invalidation of one leaf of size ``granule`` into ``gather``;
        no completion is implied."""

    # v4.20
    def tlb_add_flush(self, iova: int, size: int, granule: int,
                      leaf: bool) -> None:
        """Issue (not wait for) invalidation of the range (v4.20)."""

    def tlb_sync(self) -> None:
        """Wait for all issued invalidations to complete (v4.20)."""


class RecordingFlushOps(FlushOps):
    """A fake that records each call as a tuple ``(name, *args)``.

    Models the kernel selftest's ``dummy_tlb_ops`` (which check their cookie
    and do nothing), but keeps what was asked so it can be read back.
    """

    def __init__(self):
        self.calls: list[tuple] = []

    def tlb_flush_all(self):
        self.calls.append(("tlb_flush_all",))

    def tlb_flush_walk(self, iova, size, granule):
        self.calls.append(("tlb_flush_walk", iova, size, granule))

    def tlb_flush_leaf(self, iova, size, granule):
        self.calls.append(("tlb_flush_leaf", iova, size, granule))

    def tlb_add_page(self, gather, iova, granule):
        self.calls.append(("tlb_add_page", gather, iova, granule))

    def tlb_add_flush(self, iova, size, granule, leaf):
        self.calls.append(("tlb_add_flush", iova, size, granule, leaf))

    def tlb_sync(self):
        self.calls.append(("tlb_sync",))


@dataclass(frozen=True)
class WalkStep:
    """One descriptor read by a table walk.

    ``kind`` is ``'table'``, ``'block'``, ``'page'`` (a leaf at the last
    level; for v7s also ``'section'``, ``'supersection'``, ``'large'``) or
    ``'invalid'``. ``table`` is the physical address of the table read,
    ``index`` the entry, ``pte`` the descriptor value.
    """

    level: int
    table: int
    index: int
    pte: int
    kind: str
    size: int  # bytes covered by this entry at this level
    pte_bits: int = 64  # 64 for LPAE descriptors, 32 for v7s

    def __str__(self):
        return (f"L{self.level} table 0x{self.table:x}[{self.index}] = "
                f"0x{self.pte:0{self.pte_bits // 4}x} ({self.kind}, "
                f"{short_size(self.size)})")


@dataclass(frozen=True)
class Translation:
    """The result of a successful walk: what a TLB would cache.

    ``iova`` and ``paddr`` are the block-aligned input and output addresses
    of the leaf, ``size`` its size, ``level`` its level, ``pte`` its value,
    ``prot`` the IOMMU_READ/WRITE/NOEXEC/PRIV permissions it grants and
    ``tables`` the physical addresses of the tables walked (for walk caches).
    """

    iova: int
    paddr: int
    size: int
    level: int
    pte: int
    prot: int
    tables: tuple = ()
    contiguous: int = 1  # v7s: number of identical entries (16 for CONT)


@dataclass(frozen=True)
class TableSnapshot:
    """An immutable copy of one table: its physical address, level, the
    iova it starts at, and its descriptors as a tuple of ints."""

    paddr: int
    level: int
    iova: int
    entries: tuple


@dataclass(frozen=True)
class PgtableSnapshot:
    """An immutable copy of a whole page table, as renderers read it.

    ``tables`` maps a table's physical address to its :class:`TableSnapshot`;
    ``root`` is the pgd's address; ``fmt`` is ``'lpae'`` or ``'v7s'``;
    ``detached`` lists tables allocated but not (or no longer) linked in.
    """

    fmt: str
    stage: int
    granule: int
    levels: tuple  # the levels in walk order, e.g. (0, 1, 2, 3)
    root: int
    tables: dict = field(hash=False, compare=True)
    decode: object = field(default=None, hash=False, compare=False, repr=False)

    def table(self, paddr: int) -> TableSnapshot:
        return self.tables[paddr]
