"""The Arm LPAE (VMSAv8-64) page-table format: a model of
``drivers/iommu/io-pgtable-arm.c`` for stage 1 and stage 2, three kernel eras.

Tables hold real 64-bit descriptors in compact arrays, each table at a
simulated physical address, so ``hex(pte)`` reads as the kernel would write
it. TLB maintenance goes through the :class:`~iommu_viz.pgtable.common.FlushOps`
given at construction, called exactly where and with what the kernel calls.

Example::

    >>> from iommu_viz import LpaeTable, SZ_4K, SZ_2M, IOMMU_READ, IOMMU_WRITE
    >>> pt = LpaeTable(granule=SZ_4K, ias=48, oas=48, stage=1, kernel="v5.4")
    >>> pt.levels, pt.start_level, hex(pt.pgsize_bitmap)
    (4, 0, '0x40201000')
    >>> pt.map(0x200000, 0x80000000, SZ_2M, prot=IOMMU_READ | IOMMU_WRITE)
    2097152
    >>> hex(pt.iova_to_phys(0x201234))
    '0x80001234'
    >>> [str(s) for s in pt.walk(0x201234)][-1]
    'L2 table 0x7f002000[1] = 0x0000000080000f41 (block, 2M)'
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass

from .base import PgtableBase, Table
from .common import (
    IOMMU_CACHE, IOMMU_MMIO, IOMMU_NOEXEC, IOMMU_PRIV, IOMMU_READ, IOMMU_WRITE,
    SZ_4K, SZ_16K, SZ_64K, SZ_1G, SZ_2M, SZ_32M, SZ_512M,
    PgtableError, RecordingFlushOps, TableSnapshot,
    Translation, WalkStep, era, fmt_size,
)

# Descriptor bits (io-pgtable-arm.c, ARM_LPAE_PTE_*; Arm ARM D8.3)
PTE_TYPE_MASK = 0x3
PTE_TYPE_BLOCK = 1
PTE_TYPE_TABLE = 3
PTE_TYPE_PAGE = 3
PTE_VALID = 1 << 0
PTE_NS = 1 << 5
PTE_AP_UNPRIV = 1 << 6
PTE_AP_RDONLY = 2 << 6
PTE_SH_NS = 0 << 8
PTE_SH_OS = 2 << 8
PTE_SH_IS = 3 << 8
PTE_AF = 1 << 10
PTE_NG = 1 << 11
PTE_NT = 1 << 16      # block descriptors, FEAT_BBM / SMMUv3 BBML1
PTE_XN = 3 << 53
PTE_SW_SYNC = 1 << 55
PTE_NSTABLE = 1 << 63
PTE_ATTRINDX_SHIFT = 2
PTE_ADDR_MASK = ((1 << 48) - 1) & ~((1 << 12) - 1)   # GENMASK_ULL(47, 12)
PTE_ATTR_LO_MASK = 0x3ff << 2
PTE_ATTR_HI_MASK = 6 << 52
PTE_ATTR_MASK = PTE_ATTR_LO_MASK | PTE_ATTR_HI_MASK
# stage 2
PTE_HAP_FAULT = 0 << 6
PTE_HAP_READ = 1 << 6
PTE_HAP_WRITE = 2 << 6
PTE_MEMATTR_OIWB = 0xF << 2
PTE_MEMATTR_NC = 0x5 << 2
PTE_MEMATTR_DEV = 0x1 << 2
# MAIR indices used by the SMMU drivers at stage 1
MAIR_ATTR_IDX_NC = 0
MAIR_ATTR_IDX_CACHE = 1
MAIR_ATTR_IDX_DEV = 2

MAX_LEVELS = 4
S2_MAX_CONCAT_PAGES = 16
#: Where simulated page-table memory starts (below 2 GiB so that table
#: descriptors fit any output size the model accepts).
TABLE_MEM_BASE = 0x7F000000
#: The CPU page size the kernel allocates table memory in.
CPU_PAGE_SIZE = SZ_4K

_PAGE_SIZES = {SZ_4K: SZ_4K | SZ_2M | SZ_1G, SZ_16K: SZ_16K | SZ_32M,
               SZ_64K: SZ_64K | SZ_512M}


@dataclass(frozen=True)
class PteInfo:
    """A decoded descriptor: what a learner reads next to the hex."""

    kind: str            # 'invalid', 'table', 'block', 'page'
    addr: int            # output address (leaf) or next-table address
    size: int            # bytes this entry covers
    prot: int            # IOMMU_* permissions a leaf grants
    attrs: str           # short attribute summary, e.g. 'AF SH=IS nG RW idx1'


class LpaeTable(PgtableBase):
    """An io-pgtable-arm LPAE page table (``ARM_64_LPAE_S1``/``_S2``).

    ``granule`` selects the translation granule (4K, 16K or 64K) and with it
    the block sizes, exactly as ``arm_lpae_restrict_pgsizes`` does;
    ``ias``/``oas`` are the input and output address sizes (32-48 bits);
    ``stage`` 1 or 2; ``kernel`` the era (``"v4.20"``, ``"v5.4"``,
    ``"v6.1"``, ``"v6.12"``, ``"v6.13"``; its rules are ``self.era``, a
    :class:`~iommu_viz.pgtable.common.KernelEra`) whose unmap/split
    behaviour and descriptor bits are used.

    ``tlb`` receives the TLB-maintenance calls (a
    :class:`~iommu_viz.pgtable.common.RecordingFlushOps` by default);
    ``non_strict`` sets ``IO_PGTABLE_QUIRK_NON_STRICT`` (lazy mode: leaf
    unmaps are not invalidated); ``ns`` sets ``IO_PGTABLE_QUIRK_ARM_NS``.
    ``trace``, if given, is called as ``trace(func, kind, **detail)`` for
    every table write, allocation and warning, naming the kernel function.
    ``split_sync`` overrides the era's choice of whether the split
    invalidates and syncs on its own (the v4.20 "hack"): in the v5.4 era
    True means ``tlb_flush_leaf`` of the page instead of ``tlb_add_page``;
    in the v4.20 era False means ``tlb_add_flush`` without ``tlb_sync``.
    ``split_nt`` makes the split follow the break-before-make level 1
    sequence of the SMMUv3 architecture (set nT in the block, invalidate
    it, replace it, invalidate): an experiment, not a kernel behaviour.
    """

    fmt = "lpae"

    def __init__(self, granule=SZ_4K, ias=48, oas=48, stage=1, kernel="v5.4",
                 tlb=None, non_strict=False, ns=False, trace=None,
                 split_sync=None, split_nt=False):
        rules = era(kernel)
        if granule not in _PAGE_SIZES:
            raise ValueError(
                f"granule {granule:#x} is not an LPAE granule; the format "
                "supports 4 KiB, 16 KiB and 64 KiB")
        for name, bits in (("ias", ias), ("oas", oas)):
            if not isinstance(bits, int) or not 32 <= bits <= 48:
                raise ValueError(
                    f"{name} {bits!r} is out of range; the model takes 32 to "
                    "48 bits (52-bit addressing is not modelled)")
        if stage not in (1, 2):
            raise ValueError(f"stage {stage!r} must be 1 or 2")
        if stage == 2 and ns:
            raise ValueError("the NS quirk does not apply at stage 2 "
                             "(arm_64_lpae_alloc_pgtable_s2 refuses it)")
        self.kernel = kernel
        #: the era's rules (:class:`~iommu_viz.pgtable.common.KernelEra`)
        self.era = rules
        self.granule = granule
        self.ias = ias
        self.oas = oas
        self.stage = stage
        self.tlb = tlb if tlb is not None else RecordingFlushOps()
        self.non_strict = non_strict
        self.ns = ns
        self.trace = trace
        #: whether arm_lpae_split_blk_unmap invalidates and syncs the
        #: unmapped page itself (None: as the era did; True in v4.20)
        self.split_sync = rules.split_syncs_itself if split_sync is None \
            else bool(split_sync)
        #: a hypothetical split that first marks the block nT and
        #: invalidates it (the SMMUv3 BBML1 sequence); no kernel does this
        self.split_nt = bool(split_nt)
        self.warnings: list[str] = []
        #: every WARN the kernel code prints, as (function, what):
        #: ``'empty'`` (WARN_ON(!pte): nothing mapped where an unmap looked),
        #: ``'partial'`` (v6.13's refused partial unmap); ``warnings`` keeps
        #: only the messages a learner reads
        self.kernel_warnings: list[tuple[str, str]] = []

        # arm_lpae_alloc_pgtable (v5.7+ field names; same arithmetic in v5.4)
        self.pgsize_bitmap = _PAGE_SIZES[granule]
        self.pg_shift = granule.bit_length() - 1
        self.bits_per_level = self.pg_shift - 3
        va_bits = ias - self.pg_shift
        self.levels = -(-va_bits // self.bits_per_level)
        self.start_level = MAX_LEVELS - self.levels
        self.pgd_bits = va_bits - self.bits_per_level * (self.levels - 1)
        self.concatenated = False
        if stage == 2 and self.start_level == 0:
            # arm_64_lpae_alloc_pgtable_s2: concatenate pgds at level 1
            if (1 << self.pgd_bits) <= S2_MAX_CONCAT_PAGES:
                self.pgd_bits += self.bits_per_level
                self.start_level += 1
                self.levels -= 1
                self.concatenated = True
        self.pgd_entries = 1 << self.pgd_bits
        self.pgd_size = self.pgd_entries * 8
        self._ptes_per_table = 1 << self.bits_per_level
        self._shift = [0] * (MAX_LEVELS + 1)
        for lvl in range(MAX_LEVELS):
            self._shift[lvl] = (MAX_LEVELS - lvl) * self.bits_per_level + 3
        self._prot_cache: dict[int, int] = {}
        self._size_level = {1 << self._shift[lvl]: lvl
                            for lvl in range(self.start_level, MAX_LEVELS)}
        self._idx_mask = [(1 << (self.pgd_bits if lvl == self.start_level
                                 else self.bits_per_level)) - 1
                          for lvl in range(MAX_LEVELS)]

        self._next_table_pa = TABLE_MEM_BASE
        self._tables: dict[int, Table] = {}
        self._dirty: set[int] = set()
        self._snap_cache: dict[int, TableSnapshot] = {}
        self.pgd = self._alloc_table(self.start_level, 0, "arm_lpae_alloc_pgtable",
                                     self.pgd_entries)

    # ------------------------------------------------------------------ geometry
    def block_size(self, level: int) -> int:
        """ARM_LPAE_BLOCK_SIZE: bytes one entry at ``level`` covers."""
        return 1 << self._shift[level]

    def level_index(self, iova: int, level: int) -> int:
        """ARM_LPAE_LVL_IDX: the entry at ``level`` that translates ``iova``."""
        bits = self.bits_per_level
        if level == self.start_level:
            bits = self.pgd_bits
        return (iova >> self._shift[level]) & ((1 << bits) - 1)

    def level_of_size(self, size: int) -> int:
        """The level whose entries cover exactly ``size`` bytes."""
        lvl = self._size_level.get(size)
        if lvl is None:
            raise ValueError(f"no level maps {fmt_size(size)}")
        return lvl

    # ------------------------------------------------------------------ memory
    def _alloc_table(self, level, iova, func, n=None):
        """__arm_lpae_alloc_pages: a zeroed table at a fresh physical address
        (page-granular and aligned to its own size, as alloc_pages gives)."""
        n = n or self._ptes_per_table
        nbytes = max(n * 8, CPU_PAGE_SIZE)
        align = 1 << (nbytes - 1).bit_length()
        pa = (self._next_table_pa + align - 1) & ~(align - 1)
        self._next_table_pa = pa + align
        return self._new_table(pa, level, iova, n, func)

    def _deref(self, pte) -> Table:
        return self._tables[pte & PTE_ADDR_MASK]

    def _is_leaf(self, pte, level):
        """iopte_leaf."""
        if level == MAX_LEVELS - 1:
            return (pte & PTE_TYPE_MASK) == PTE_TYPE_PAGE
        return (pte & PTE_TYPE_MASK) == PTE_TYPE_BLOCK

    def _is_table(self, pte, level):
        return level < MAX_LEVELS - 1 and (pte & PTE_TYPE_MASK) == PTE_TYPE_TABLE

    # ------------------------------------------------------------------ descriptors
    def prot_to_pte(self, prot: int) -> int:
        """arm_lpae_prot_to_pte: attribute bits for IOMMU_* ``prot``.

        v4.20/v5.4 set AF and SH=IS for every leaf in __arm_lpae_init_pte;
        later kernels (v5.6+, so the v6.13 era) choose SH=IS for
        IOMMU_CACHE and SH=OS otherwise, here.
        """
        pte = self._prot_cache.get(prot)
        if pte is not None:
            return pte
        if self.stage == 1:
            pte = PTE_NG
            if not (prot & IOMMU_WRITE) and (prot & IOMMU_READ):
                pte |= PTE_AP_RDONLY
            if not (prot & IOMMU_PRIV):
                pte |= PTE_AP_UNPRIV
            if prot & IOMMU_MMIO:
                pte |= MAIR_ATTR_IDX_DEV << PTE_ATTRINDX_SHIFT
            elif prot & IOMMU_CACHE:
                pte |= MAIR_ATTR_IDX_CACHE << PTE_ATTRINDX_SHIFT
        else:
            pte = PTE_HAP_FAULT
            if prot & IOMMU_READ:
                pte |= PTE_HAP_READ
            if prot & IOMMU_WRITE:
                pte |= PTE_HAP_WRITE
            if prot & IOMMU_MMIO:
                pte |= PTE_MEMATTR_DEV
            elif prot & IOMMU_CACHE:
                pte |= PTE_MEMATTR_OIWB
            else:
                pte |= PTE_MEMATTR_NC
        if self.era.sh_from_cache:
            pte |= PTE_SH_IS if prot & IOMMU_CACHE else PTE_SH_OS
        else:
            pte |= PTE_SH_IS
        if prot & IOMMU_NOEXEC:
            pte |= PTE_XN
        if self.ns:
            pte |= PTE_NS
        pte |= PTE_AF
        self._prot_cache[prot] = pte
        return pte

    def _leaf_pte(self, paddr, attrs, level):
        """__arm_lpae_init_pte: type bits plus output address."""
        kind = PTE_TYPE_PAGE if level == MAX_LEVELS - 1 else PTE_TYPE_BLOCK
        return attrs | kind | (paddr & PTE_ADDR_MASK)

    def _table_pte(self, t):
        """arm_lpae_install_table: table descriptor for table ``t``."""
        pte = t.paddr | PTE_TYPE_TABLE
        if self.ns:
            pte |= PTE_NSTABLE
        return pte

    def pte_prot(self, pte: int) -> int:
        """The IOMMU_READ/WRITE/NOEXEC/PRIV rights a leaf ``pte`` grants."""
        prot = 0
        if self.stage == 1:
            prot |= IOMMU_READ
            if not pte & PTE_AP_RDONLY:
                prot |= IOMMU_WRITE
            if not pte & PTE_AP_UNPRIV:
                prot |= IOMMU_PRIV
        else:
            if pte & PTE_HAP_READ:
                prot |= IOMMU_READ
            if pte & PTE_HAP_WRITE:
                prot |= IOMMU_WRITE
        if pte & PTE_XN:
            prot |= IOMMU_NOEXEC
        return prot

    def describe(self, level: int, pte: int) -> PteInfo:
        """Decode ``pte`` read at ``level`` for display."""
        size = self.block_size(level)
        if not pte & PTE_VALID:
            return PteInfo("invalid", 0, size, 0, "")
        if self._is_table(pte, level):
            attrs = "NSTable" if pte & PTE_NSTABLE else ""
            return PteInfo("table", pte & PTE_ADDR_MASK, size, 0, attrs)
        if level == MAX_LEVELS - 1 and (pte & PTE_TYPE_MASK) != PTE_TYPE_PAGE:
            return PteInfo("invalid", 0, size, 0, "reserved")
        kind = "page" if level == MAX_LEVELS - 1 else "block"
        prot = self.pte_prot(pte)
        bits = []
        rw = ("R" if prot & IOMMU_READ else "") + ("W" if prot & IOMMU_WRITE else "")
        bits.append(rw or "none")
        if self.stage == 1:
            bits.append(f"idx{(pte >> PTE_ATTRINDX_SHIFT) & 7}")
            if pte & PTE_NG:
                bits.append("nG")
        else:
            bits.append(f"mem{(pte >> 2) & 0xF:x}")
        sh = (pte >> 8) & 3
        bits.append({0: "NSH", 1: "SH?", 2: "OSH", 3: "ISH"}[sh])
        if pte & PTE_AF:
            bits.append("AF")
        if pte & PTE_XN:
            bits.append("XN")
        if pte & PTE_NS:
            bits.append("NS")
        if kind == "block" and pte & PTE_NT:
            bits.append("nT")
        # a block's output address has no bits below its size (bit 16 of a
        # block is nT, not address)
        return PteInfo(kind, pte & PTE_ADDR_MASK & ~(size - 1), size, prot,
                       " ".join(bits))

    # ------------------------------------------------------------------ map
    def map(self, iova: int, paddr: int, size: int, prot: int = IOMMU_READ | IOMMU_WRITE,
            count: int = 1) -> int:
        """Map ``count`` pages of ``size`` bytes at ``iova`` to ``paddr``.

        Models arm_lpae_map (v4.20, v5.4) / arm_lpae_map_pages (v5.14+),
        with the loop iommu_map makes over ``count``. Returns the bytes
        mapped (0 when ``prot`` grants neither read nor write, as the
        kernel did before v6.11, EINVAL from v6.11). Raises :class:`PgtableError` with ``EEXIST`` when a
        leaf already maps part of the range, ``EINVAL``/``ERANGE`` for bad
        input; the table is then unchanged.
        """
        # fast path: one well-formed page (all the checks below, folded)
        if count == 1 and type(iova) is int and type(paddr) is int and type(size) is int \
                and size in self._size_level and size & self.pgsize_bitmap \
                and iova >= 0 and paddr >= 0 \
                and not (iova | paddr) & (size - 1) \
                and not (iova + size - 1) >> self.ias \
                and not (paddr + size - 1) >> self.oas \
                and type(prot) is int and prot & (IOMMU_READ | IOMMU_WRITE):
            attrs = self._prot_cache.get(prot) or self.prot_to_pte(prot)
            return self._map_one(iova, paddr, size, attrs, self._size_level[size])
        if not self._check_map_args(iova, paddr, size, prot, count):
            return 0
        attrs = self.prot_to_pte(prot)
        level = self.level_of_size(size)
        if count == 1:
            return self._map_one(iova, paddr, size, attrs, level)
        self._check_free(iova, size, count)
        mapped = 0
        while mapped < size * count:
            mapped += self._map_run(iova + mapped, paddr + mapped, size,
                                    count - mapped // size, attrs, level)
        return mapped

    def _check_free(self, iova, size, count):
        """Refuse (EEXIST) before writing anything if a leaf maps any page
        of the range: arm_lpae_init_pte's check, done up front so that a
        refused call leaves the table as it was (the kernel instead relies
        on iommu_map unmapping what it had mapped)."""
        end = iova + size * count
        a = iova
        while a < end:
            t = self.pgd
            lvl = self.start_level
            while True:
                bs = self.block_size(lvl)
                pte = t.ptes[self.level_index(a, lvl)]
                if pte == 0 or (bs == size):
                    if pte and self._is_leaf(pte, lvl):
                        raise PgtableError(
                            "EEXIST", f"iova {a:#x} is already mapped by a "
                            f"{fmt_size(bs)} {self.describe(lvl, pte).kind}; "
                            "unmap it first")
                    nxt = (a | (bs - 1)) + 1 if pte == 0 else a + size
                    a = max(nxt, a + size)
                    break
                if self._is_leaf(pte, lvl):
                    raise PgtableError(
                        "EEXIST", f"iova {a:#x} lies inside a {fmt_size(bs)} "
                        f"block at {a & ~(bs - 1):#x}; unmap it first")
                t = self._deref(pte)
                lvl += 1

    def _map_one(self, iova, paddr, size, attrs, target):
        """__arm_lpae_map for a single page, in one pass: a leaf found on
        the way down or in the target slot refuses the call (EEXIST) before
        anything is written, since tables are only allocated below empty
        entries, where no leaf can be."""
        t = self.pgd
        lvl = self.start_level
        shift = self._shift
        ptes = t.ptes
        mask = self._idx_mask
        while lvl < target:
            idx = (iova >> shift[lvl]) & mask[lvl]
            pte = ptes[idx]
            if pte == 0:
                child = self._alloc_table(lvl + 1, iova & ~((1 << shift[lvl]) - 1),
                                          "__arm_lpae_map")
                self._write(t, idx, self._table_pte(child), "arm_lpae_install_table")
                t = child
            elif (pte & PTE_TYPE_MASK) == PTE_TYPE_BLOCK:
                bs = 1 << shift[lvl]
                raise PgtableError(
                    "EEXIST", f"iova {iova:#x} lies inside a {fmt_size(bs)} "
                    f"block at {iova & ~(bs - 1):#x}; unmap it first")
            else:
                t = self._tables[pte & PTE_ADDR_MASK]
            ptes = t.ptes
            lvl += 1
        idx = (iova >> shift[lvl]) & mask[lvl]
        old = ptes[idx]
        if old:
            if self._is_leaf(old, lvl):
                raise PgtableError(
                    "EEXIST", f"iova {iova:#x} is already mapped by a "
                    f"{fmt_size(size)} {self.describe(lvl, old).kind}; "
                    "unmap it first")
            # arm_lpae_init_pte: a table here is unmapped and freed first
            self._unmap_at(iova, size, None, lvl, t, "arm_lpae_init_pte")
        self._write(t, idx, self._leaf_pte(paddr, attrs, lvl),
                    "__arm_lpae_init_pte")
        return size

    def _map_run(self, iova, paddr, size, pgcount, attrs, target):
        """__arm_lpae_map: walk down, installing tables, then write up to
        the rest of the leaf table's entries (map_pages semantics)."""
        func = "__arm_lpae_map"
        t = self.pgd
        lvl = self.start_level
        while lvl < target:
            idx = self.level_index(iova, lvl)
            pte = t.ptes[idx]
            if pte == 0:
                child = self._alloc_table(lvl + 1, iova & ~(self.block_size(lvl) - 1),
                                          func)
                self._write(t, idx, self._table_pte(child), "arm_lpae_install_table")
                t = child
            else:
                t = self._deref(pte)
            lvl += 1
        idx = self.level_index(iova, lvl)
        # map_pages (v5.14+) fills up to the end of the table in one call;
        # before that each call mapped one page
        n = min(pgcount, self._max_entries(idx)) if self.era.pages_api else 1
        for i in range(n):
            old = t.ptes[idx + i]
            if old and self._is_table(old, lvl):
                # arm_lpae_init_pte: unmap and free the old table first
                self._unmap_at(iova + i * size, size, None, lvl, t,
                               "arm_lpae_init_pte")
        first = self._leaf_pte(paddr, attrs, lvl)
        self._write(t, idx, first, "__arm_lpae_init_pte", count=n,
                    step=size if n > 1 else 0)
        return n * size

    # ------------------------------------------------------------------ unmap
    def unmap(self, iova: int, size: int, gather=None, count: int = 1) -> int:
        """Unmap ``count`` pages of ``size`` at ``iova``; returns bytes
        unmapped, 0 when nothing is mapped there (kernel semantics).

        Models arm_lpae_unmap (v4.20, v5.4) / arm_lpae_unmap_pages (v5.14+:
        v6.1, v6.12, v6.13) and __arm_lpae_unmap below it, calling it
        again for the rest of ``count`` the way __iommu_unmap does (each
        call covers at most the rest of one table). An unmap of part of a
        block splits it (arm_lpae_split_blk_unmap) up to the v6.12 era and
        is refused with a warning and 0 in the v6.13 era. An unmap that
        finds nothing returns 0 and records the kernel's WARN in
        ``kernel_warnings``. ``gather`` is passed through untouched to
        ``tlb_add_page``.
        """
        if count == 1 and type(iova) is int and type(size) is int \
                and size in self._size_level and size & self.pgsize_bitmap \
                and iova >= 0 and not iova & (size - 1) \
                and not (iova + size - 1) >> self.ias:
            return self._unmap_at(iova, size, gather, self.start_level,
                                  self.pgd, "__arm_lpae_unmap")
        self._check_count(count)
        self._check_pgsize(size, "unmap")
        self._check_iova(iova, size, count)
        done = 0
        while done < size * count:
            got = self._unmap_at(iova + done, size, gather, self.start_level,
                                 self.pgd, "__arm_lpae_unmap",
                                 pgcount=count - done // size)
            if not got:
                break
            done += got
        return done

    def _unmap_at(self, iova, size, gather, lvl, t, func, pgcount=1):
        """__arm_lpae_unmap from table ``t`` at level ``lvl``."""
        shift = self._shift
        mask = self._idx_mask
        if not self.era.pages_api:
            pgcount = 1
        while True:
            idx = (iova >> shift[lvl]) & mask[lvl]
            pte = t.ptes[idx]
            if pte == 0:
                self._warn_on("__arm_lpae_unmap", "empty")
                return 0
            bs = 1 << shift[lvl]
            if size == bs:
                return self._unmap_entries(iova, size, gather, lvl, t, idx,
                                           pgcount)
            if self._is_leaf(pte, lvl):
                if not self.era.splits_blocks:
                    self._warn("__arm_lpae_unmap",
                               "Unmap of a partial large IOPTE is not allowed",
                               "partial")
                    return 0
                return self._split_blk_unmap(iova, size, gather, pte, lvl + 1,
                                             t, idx, pgcount)
            t = self._tables[pte & PTE_ADDR_MASK]
            lvl += 1

    def _warn_on(self, func, what):
        """A WARN_ON the model answers with a plain return value: only
        ``kernel_warnings`` records it."""
        self.kernel_warnings.append((func, what))

    def _max_entries(self, idx):
        """arm_lpae_max_entries: entries from ``idx`` to the end of its
        table page (a concatenated stage-2 pgd is several pages; the
        run stops at the page's end)."""
        per = self._ptes_per_table
        return per - (idx & (per - 1))

    def _unmap_entries(self, iova, size, gather, lvl, t, idx, n):
        """The 'size matches this level' arm of __arm_lpae_unmap: clear up
        to ``n`` entries (one before v5.14), free tables below them with a
        walk flush, and hand the TLB the leaf maintenance of the era."""
        func = "__arm_lpae_unmap"
        granule = self.granule
        tlb = self.tlb
        if not self.era.pages_api:
            pte = t.ptes[idx]
            self._write(t, idx, 0, func)
            if not self._is_leaf(pte, lvl):
                # also flush any partial walks, then free the tables
                if self.era.gather_ops:
                    tlb.tlb_add_flush(iova, size, granule, False)
                    tlb.tlb_sync()
                else:
                    tlb.tlb_flush_walk(iova, size, granule)
                self._free_subtree(self._deref(pte), "__arm_lpae_free_pgtable")
            elif self.non_strict:
                pass        # IO_PGTABLE_QUIRK_NON_STRICT: the flush queue will do
            elif self.era.gather_ops:
                tlb.tlb_add_flush(iova, size, size, True)
            else:
                tlb.tlb_add_page(gather, iova, size)
            return size
        n = min(n, self._max_entries(idx))
        ptes = t.ptes
        queued = getattr(gather, "queued", False)
        i = 0
        if not self.era.unmap_run_first:
            # v5.14 .. v6.11 (the v6.1 era): entry by entry, stopping at the
            # first empty one; a table is walk-flushed and freed, a leaf
            # goes to the gather unless it is queued (a NULL gather is not)
            while i < n:
                pte = ptes[idx + i]
                if pte == 0:
                    self._warn_on(func, "empty")
                    break
                self._write(t, idx + i, 0, "__arm_lpae_clear_pte")
                if not self._is_leaf(pte, lvl):
                    tlb.tlb_flush_walk(iova + i * size, size, granule)
                    self._free_subtree(self._deref(pte), "__arm_lpae_free_pgtable")
                elif not queued:
                    tlb.tlb_add_page(gather, iova + i * size, size)
                i += 1
            return i * size
        # v6.12+ ("Optimise non-coherent unmap"): up to the first empty
        # entry, tables are cleared, walk-flushed and freed first, then the
        # whole run is cleared, and only a caller's gather that is not
        # queued gets every entry of the run, tables included, as add_page:
        # a NULL gather (the selftest, or arm_lpae_init_pte replacing a
        # table) queues nothing.
        while i < n:
            pte = ptes[idx + i]
            if pte == 0:
                self._warn_on(func, "empty")
                break
            if not self._is_leaf(pte, lvl):
                self._write(t, idx + i, 0, "__arm_lpae_clear_pte")
                tlb.tlb_flush_walk(iova + i * size, size, granule)
                self._free_subtree(self._deref(pte), "__arm_lpae_free_pgtable")
            i += 1
        if i:
            self._write(t, idx, 0, "__arm_lpae_clear_pte", count=i)
            if gather is not None and not queued:
                for j in range(i):
                    tlb.tlb_add_page(gather, iova + j * size, size)
        return i * size

    def _free_subtree(self, t, func):
        """__arm_lpae_free_pgtable: free a table and the tables below it."""
        if t.level < MAX_LEVELS - 1:
            for pte in t.ptes:
                if pte and self._is_table(pte, t.level):
                    self._free_subtree(self._deref(pte), func)
        self._free_table(t, func)

    def _split_blk_unmap(self, iova, size, gather, blk_pte, lvl, parent, pidx,
                         pgcount=1):
        """arm_lpae_split_blk_unmap (v4.20 .. v6.12): replace the block
        ``blk_pte`` (at level ``lvl - 1``) by a table at ``lvl`` mapping the
        same memory minus the part being unmapped (from v5.14 ``pgcount``
        pages, up to the end of the new table), then hand the TLB its
        maintenance: v4.20 issues and syncs it right here, v5.4 and later
        add each page to the caller's gather."""
        func = "arm_lpae_split_blk_unmap"
        split_sz = self.block_size(lvl)
        blk_iova = iova & ~(self.block_size(lvl - 1) - 1)
        unmap_idx, num = -1, 0
        if size == split_sz:
            unmap_idx = self.level_index(iova, lvl)
            num = min(pgcount, self._max_entries(unmap_idx)) \
                if self.era.pages_api else 1
        table = self._alloc_table(lvl, blk_iova, func)
        attrs = blk_pte & PTE_ATTR_MASK
        blk_paddr = blk_pte & PTE_ADDR_MASK & ~(self.block_size(lvl - 1) - 1)
        first = self._leaf_pte(blk_paddr, attrs, lvl)
        n = len(table.ptes)
        table.ptes[:] = array("Q", range(first, first + n * split_sz, split_sz))
        if num:
            table.ptes[unmap_idx:unmap_idx + num] = array("Q", bytes(8 * num))
        self._dirty.add(table.paddr)
        if self.trace:
            self.trace(func, "table_fill", table=table.paddr, level=lvl,
                       iova=blk_iova, first=first, step=split_sz, count=n,
                       skipped=unmap_idx, skipped_count=num)
        if self.split_nt:
            # BBML1: mark the block nT and invalidate it before replacing it,
            # so no TLB entry from the old descriptor lacks nT (SMMUv3 3.21.1)
            blk_sz = self.block_size(lvl - 1)
            self._write(parent, pidx, blk_pte | PTE_NT,
                        "arm_lpae_split_blk_unmap (nT sequence)")
            if self.era.gather_ops:
                self.tlb.tlb_add_flush(blk_iova, blk_sz, blk_sz, True)
                self.tlb.tlb_sync()
            else:
                self.tlb.tlb_flush_leaf(blk_iova, blk_sz, blk_sz)
        # arm_lpae_install_table: the table replaces the live block
        self._write(parent, pidx, self._table_pte(table), "arm_lpae_install_table")
        if num:
            for k in range(num):
                a = iova + k * size
                if self.era.gather_ops:
                    self.tlb.tlb_add_flush(a, size, size, True)
                    if self.split_sync:
                        self.tlb.tlb_sync()
                elif self.split_sync:
                    self.tlb.tlb_flush_leaf(a, size, size)
                else:
                    self.tlb.tlb_add_page(gather, a, size)
            return num * size
        return self._unmap_at(iova, size, gather, lvl, table, "__arm_lpae_unmap",
                              pgcount)

    # ------------------------------------------------------------------ lookups
    def iova_to_phys(self, iova: int) -> int:
        """arm_lpae_iova_to_phys: the physical address ``iova`` translates
        to, or 0 when it is not mapped. As in the kernel, an iova beyond
        ``ias`` is not refused: each level's index takes its bits, so the
        bits above ``ias`` are ignored."""
        if not isinstance(iova, int) or iova < 0:
            raise PgtableError("EINVAL", f"iova {iova!r} must be a "
                               "non-negative integer")
        t = self.pgd
        lvl = self.start_level
        while True:
            pte = t.ptes[self.level_index(iova, lvl)]
            if not pte:
                return 0
            if self._is_leaf(pte, lvl):
                return (pte & PTE_ADDR_MASK) | (iova & (self.block_size(lvl) - 1))
            if lvl == MAX_LEVELS - 1:
                return 0
            t = self._deref(pte)
            lvl += 1

    def translate(self, iova: int):
        """A hardware walk: the :class:`Translation` for ``iova`` (the leaf
        a TLB would cache) or ``None`` when the walk faults.

        Models the SMMU's table walk of the stage-1 or stage-2 tables
        (Arm ARM D8 translation table walk), reading the same descriptors.
        """
        if iova >> self.ias:
            return None
        t = self.pgd
        lvl = self.start_level
        tables = []
        while True:
            tables.append(t.paddr)
            pte = t.ptes[self.level_index(iova, lvl)]
            if not pte & PTE_VALID:
                return None
            if self._is_leaf(pte, lvl):
                bs = self.block_size(lvl)
                return Translation(iova & ~(bs - 1), pte & PTE_ADDR_MASK & ~(bs - 1),
                                   bs, lvl, pte, self.pte_prot(pte), tuple(tables))
            if lvl == MAX_LEVELS - 1:
                return None
            t = self._deref(pte)
            lvl += 1

    def walk(self, iova: int) -> list[WalkStep]:
        """The descriptors a walk of ``iova`` reads, one
        :class:`~iommu_viz.pgtable.common.WalkStep` a level, ending at a leaf
        or at an invalid entry."""
        if not isinstance(iova, int) or iova < 0 or iova >> self.ias:
            raise PgtableError("ERANGE", f"iova {iova!r} is beyond the "
                               f"{self.ias}-bit input address size")
        steps = []
        t = self.pgd
        lvl = self.start_level
        while True:
            idx = self.level_index(iova, lvl)
            pte = t.ptes[idx]
            info = self.describe(lvl, pte)
            steps.append(WalkStep(lvl, t.paddr, idx, pte, info.kind, info.size))
            if info.kind != "table":
                return steps
            t = self._deref(pte)
            lvl += 1

    # ------------------------------------------------------------------ views
    def _snapshot_geometry(self):
        return self.stage, self.granule, tuple(range(self.start_level, MAX_LEVELS))

    def mappings(self):
        """Yield ``(iova, paddr, size, level, pte)`` for every leaf, in iova
        order."""
        def rec(t, lvl):
            bs = self.block_size(lvl)
            for i, pte in enumerate(t.ptes):
                if not pte:
                    continue
                if self._is_leaf(pte, lvl):
                    yield (t.iova + i * bs, pte & PTE_ADDR_MASK & ~(bs - 1),
                           bs, lvl, pte)
                elif self._is_table(pte, lvl):
                    yield from rec(self._deref(pte), lvl + 1)
        yield from rec(self.pgd, self.start_level)

    def __repr__(self):
        return (f"LpaeTable(granule={fmt_size(self.granule)}, ias={self.ias}, "
                f"oas={self.oas}, stage={self.stage}, kernel={self.kernel!r}, "
                f"levels={self.levels}, tables={len(self._tables)})")
