"""What every page-table format shares: compact table storage at simulated
physical addresses, the write/free/warn hooks that feed a recorded run,
copy-on-write snapshots, and the argument checks (with their messages).

The formats (:mod:`.lpae`, :mod:`.v7s`) subclass :class:`PgtableBase` and
add their geometry, descriptors and the kernel's map/unmap logic.
"""

from __future__ import annotations

from array import array

from .common import (IOMMU_READ, IOMMU_WRITE, PgtableError, PgtableSnapshot,
                     TableSnapshot, fmt_size)


class Table:
    """One table: its level, the iova it translates from, its descriptors
    (an ``array`` of 64-bit LPAE or 32-bit v7s entries)."""

    __slots__ = ("paddr", "level", "iova", "ptes")

    def __init__(self, paddr, level, iova, n, typecode="Q"):
        self.paddr = paddr
        self.level = level
        self.iova = iova
        self.ptes = array(typecode, bytes(array(typecode).itemsize * n))


class PgtableBase:
    """Storage, trace hooks, snapshots and checks shared by the formats.

    A subclass sets ``fmt``, ``PTE_TYPECODE`` and, before using these
    helpers, ``_tables`` (paddr -> :class:`Table`), ``_dirty``,
    ``_snap_cache``, ``trace``, ``warnings``, ``kernel_warnings``,
    ``era``, ``pgsize_bitmap``, ``ias``
    and ``pgd``; it provides ``block_size(level)``, ``describe`` and
    ``_snapshot_geometry()``.
    """

    fmt = "?"
    PTE_TYPECODE = "Q"

    # ------------------------------------------------------------ storage
    def _new_table(self, pa, level, iova, n, func):
        t = Table(pa, level, iova, n, self.PTE_TYPECODE)
        self._tables[pa] = t
        self._dirty.add(pa)
        if self.trace:
            self.trace(func, "table_alloc", table=pa, level=level, iova=iova,
                       entries=n)
        return t

    def _free_table(self, t, func):
        """Forget table ``t`` (its memory goes back to the allocator)."""
        del self._tables[t.paddr]
        self._dirty.add(t.paddr)
        self._table_freed(t)
        if self.trace:
            self.trace(func, "table_free", table=t.paddr, level=t.level,
                       iova=t.iova)

    def _table_freed(self, t):
        """Hook: a format that recycles table memory notes ``t`` here."""

    def _write(self, t, idx, new, func, count=1, step=0):
        """Store ``count`` descriptors starting at ``idx`` (the k-th being
        ``new + k*step``): the formats' set_pte / init_pte writes, and the
        one place a recorded run learns of them."""
        if self.trace is None and count == 1:
            t.ptes[idx] = new
            self._dirty.add(t.paddr)
            return
        old = t.ptes[idx]
        if count == 1:
            t.ptes[idx] = new
        else:
            t.ptes[idx:idx + count] = array(
                self.PTE_TYPECODE, range(new, new + count * step, step)
                if step else [new] * count)
        self._dirty.add(t.paddr)
        if self.trace:
            self.trace(func, "pte_write", table=t.paddr, level=t.level,
                       index=idx, count=count, old=old, new=new, step=step,
                       iova=t.iova + idx * self.block_size(t.level))

    def _warn(self, func, message, what):
        """A kernel WARN a learner should read: kept in ``warnings`` (and in
        ``kernel_warnings`` as ``(func, what)``) and traced."""
        self.warnings.append(message)
        self.kernel_warnings.append((func, what))
        if self.trace:
            self.trace(func, "warn", message=message)

    # ------------------------------------------------------------ views
    def snapshot(self) -> PgtableSnapshot:
        """An immutable copy of every table; unchanged tables are shared
        with the previous snapshot, so taking one per step is cheap."""
        cache = self._snap_cache
        for pa in self._dirty:
            t = self._tables.get(pa)
            if t is None:
                cache.pop(pa, None)
            else:
                cache[pa] = TableSnapshot(pa, t.level, t.iova, tuple(t.ptes))
        self._dirty.clear()
        stage, granule, levels = self._snapshot_geometry()
        return PgtableSnapshot(self.fmt, stage, granule, levels,
                               self.pgd.paddr, dict(cache),
                               decode=self.describe)

    @property
    def table_count(self) -> int:
        """How many tables are allocated (the pgd included)."""
        return len(self._tables)

    # ------------------------------------------------------------ checks
    def _check_pgsize(self, size, what):
        if not isinstance(size, int) or size <= 0 or size & (size - 1) \
                or not size & self.pgsize_bitmap:
            sizes = ", ".join(fmt_size(1 << b) for b in range(64)
                              if self.pgsize_bitmap >> b & 1)
            shown = f"{size:#x}" if isinstance(size, int) else repr(size)
            raise PgtableError(
                "EINVAL", f"{what} size {shown} is not a page size of this "
                f"table (pgsize_bitmap {self.pgsize_bitmap:#x}: {sizes})")

    def _check_iova(self, iova, size, count):
        if not isinstance(iova, int) or iova < 0:
            raise PgtableError("EINVAL", f"iova {iova!r} must be a "
                               "non-negative integer")
        if iova % size:
            raise PgtableError("EINVAL", f"iova {iova:#x} is not aligned to "
                               f"the {fmt_size(size)} page size")
        if iova >> self.ias or (iova + size * count - 1) >> self.ias:
            raise PgtableError(
                "ERANGE", f"iova range {iova:#x}..{iova + size * count - 1:#x}"
                f" is beyond the {self.ias}-bit input address size")

    def _check_count(self, count):
        if not isinstance(count, int) or count < 1:
            raise PgtableError("EINVAL", f"count {count!r} must be at least 1")

    def check_prot(self, prot) -> bool:
        """The map call's no-access check (arm_lpae_map / arm_v7s_map in
        v4.20 and v5.4; arm_lpae_map_pages / arm_v7s_map_pages in v6.12
        and v6.13): True when ``prot`` grants IOMMU_READ or IOMMU_WRITE.
        When it grants neither, before v6.11 the call had nothing to do:
        False (it returns 0 and writes nothing); from v6.11 (6093cd582f8e,
        also taken into the 6.1, 6.6 and 6.10 stable trees) it fails:
        :class:`PgtableError` ``EINVAL``. A ``prot`` that is not an int is
        ``EINVAL`` in every era."""
        if not isinstance(prot, int) or isinstance(prot, bool):
            raise PgtableError("EINVAL", f"prot {prot!r} must be an integer "
                               "of IOMMU_* flags")
        if prot & (IOMMU_READ | IOMMU_WRITE):
            return True
        if self.era.noaccess_einval:
            raise PgtableError(
                "EINVAL", f"prot {prot:#x} grants neither IOMMU_READ nor "
                "IOMMU_WRITE; from v6.11 a map without access is refused")
        return False

    def _no_access_first(self) -> bool:
        """Before v6.11 the no-access check is a map call's first, ahead
        of the size and range checks; from v6.11 it follows them."""
        return not self.era.noaccess_einval

    def _check_map_args(self, iova, paddr, size, prot, count) -> bool:
        """The checks of a map call, in the kernel's order; False when the
        call is a no-op (no access granted, before v6.11)."""
        if self._no_access_first() and not self.check_prot(prot):
            return False
        self._check_count(count)
        self._check_pgsize(size, "map")
        self._check_iova(iova, size, count)
        if not isinstance(paddr, int) or paddr < 0:
            raise PgtableError("EINVAL", f"paddr {paddr!r} must be a "
                               "non-negative integer")
        if paddr % size:
            raise PgtableError("EINVAL", f"paddr {paddr:#x} is not aligned to "
                               f"the {fmt_size(size)} page size")
        end_pa = paddr + size * count - 1
        if paddr >> self.oas or end_pa >> self.oas:
            raise PgtableError(
                "ERANGE", f"paddr range {paddr:#x}..{end_pa:#x} is beyond the "
                f"{self.oas}-bit output address size")
        return self.check_prot(prot)

    def check_map_range(self, iova, paddr, size, count=1,
                        prot=IOMMU_READ | IOMMU_WRITE) -> bool:
        """What mapping ``count`` pages of ``size`` from ``iova`` to
        ``paddr`` with ``prot`` would do, changing nothing: True when it
        would map them, False when it would map nothing and succeed (no
        access before v6.11), :class:`PgtableError` when it would fail
        (``ERANGE`` beyond the input or output address size, ``EINVAL``
        no access from v6.11, ``EEXIST`` something mapped there), checked
        in the kernel's order. For the IOMMU API, which checks every run
        of an ``iommu_map`` before the first is mapped."""
        if self._no_access_first() and not self.check_prot(prot):
            return False
        self._check_iova(iova, size, count)
        if (paddr + size * count - 1) >> self.oas:
            raise PgtableError("ERANGE", f"paddr 0x{paddr:x} is beyond the "
                               f"{self.oas}-bit output address size")
        self.check_prot(prot)
        self._check_free(iova, size, count)
        return True
