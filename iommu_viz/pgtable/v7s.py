"""The Armv7 short-descriptor format: a model of
``drivers/iommu/io-pgtable-arm-v7s.c`` (``ARM_V7S``) in the kernel eras
v4.20, v5.4, v6.1, v6.12 and v6.13 (v6.1 behaves as v6.12 here: checked
against both Debian packages' code by ``make conformance``).

Two levels (the kernel numbers them 1 and 2): a 16 KiB level-1 table of
4096 32-bit entries, each a 1 MiB section or a pointer to a 1 KiB
level-2 table of 256 entries, each a 4 KiB small page. 16 MiB
supersections and 64 KiB large pages are one descriptor written into 16
consecutive entries (``ARM_V7S_CONT_PAGES``); the TLB may hold such a
group as a single entry, which is why :meth:`V7sTable.translate` reports
the whole group (``contiguous=16``).

The descriptors are the real 32-bit values (type bits, AP, TEX/C/B, XN,
NS, nG, S, the supersection bit, the MediaTek physical-address bits), so
``hex(pte)`` reads as the kernel would write it. TLB maintenance goes
through the :class:`~iommu_viz.pgtable.common.FlushOps` given at
construction, called where and with what each era called.

Example::

    >>> from iommu_viz import V7sTable, SZ_4K, SZ_64K, SZ_1M
    >>> pt = V7sTable(kernel="v5.4")
    >>> pt.levels, pt.start_level, hex(pt.pgsize_bitmap)
    (2, 1, '0x1111000')
    >>> pt.map(0x100000, 0x80000000, SZ_1M)
    1048576
    >>> hex(pt.iova_to_phys(0x101234))
    '0x80001234'
    >>> [str(s) for s in pt.walk(0x101234)]
    ['L1 table 0x7e000000[1] = 0x80031c02 (section, 1M)']
    >>> pt.map(0x200000, 0x90000000, SZ_64K)
    65536
    >>> t = pt.translate(0x20abcd)
    >>> hex(t.iova), hex(t.paddr), t.size, t.contiguous
    ('0x200000', '0x90000000', 65536, 16)

What changed between the eras, each rule keyed to the release that
brought it (a field of the era's
:class:`~iommu_viz.pgtable.common.KernelEra`), so v6.12 is v5.4 plus:

* v5.11, "iommu/io-pgtable: Remove tlb_flush_leaf" (fefe8527a1e0):
  arm_v7s_split_cont invalidates the CONT group with tlb_flush_walk.
* v5.12, Yong Wu's MT8192 series (iommu pull for v5.12): the MediaTek
  physical-address bit 34 (PTE bit 5, ``oas`` up to 35) and "Quad lvl1
  pgtable": the level-1 table resolves ``ias - 20`` bits, so its size
  follows ``ias`` (up to 34 with ``mtk_ext``).
* v5.14, map_pages/unmap_pages: the ``count`` loop is the table's own
  (arm_v7s_map_pages / arm_v7s_unmap_pages, one page at a time).
* v5.15, "iommu/io-pgtable: Remove non-strict quirk" (a8e5f04458c4):
  no NON_STRICT; a leaf is added to the gather unless the gather is
  queued (iommu_iotlb_gather_queued). The splits still add their page
  unconditionally.
* v6.13, fd50651636fb: no split at all.

Not modelled: IO_PGTABLE_QUIRK_ARM_MTK_TTBR_EXT (v6.12 has it; it only
matters for tables above 4 GiB, and the model's tables are below).

Kernel bugs the model keeps (because it models the code, not the
intent), both in every kernel that split (v4.20 .. v6.12):

* ``arm_v7s_split_blk_unmap`` builds the new level-2 entries from the
  section's attributes alone and never adds the section's output
  address, so after a partial unmap of a section the remaining pages map
  physical ``0x0 .. 0xfffff`` instead of the section's memory. The
  kernel's selftest only checks the page it remaps, so it never noticed.
* ``arm_v7s_split_cont`` returns the *first* section of the split
  supersection; when the partial unmap lies in another 1 MiB of the
  supersection, ``arm_v7s_install_table``'s compare-and-swap then finds a
  different entry, the new table is freed and 0 bytes are unmapped (the
  supersection has been turned into 16 sections on the way).
"""

from __future__ import annotations

from array import array

from .base import PgtableBase, Table
from .common import (
    IOMMU_CACHE, IOMMU_MMIO, IOMMU_NOEXEC, IOMMU_PRIV, IOMMU_READ, IOMMU_WRITE,
    SZ_1M, SZ_4K, SZ_16M, SZ_64K,
    PgtableError, RecordingFlushOps, TableSnapshot,
    Translation, WalkStep, era, fmt_size,
)
from .lpae import PteInfo

# Geometry (ARM_V7S_*; the level numbers are the kernel's, 1 and 2)
ADDR_BITS = 32
CONT_PAGES = 16
TABLE_SHIFT = 10
TABLE_MASK = 0xFFFFFFFF & ~((1 << TABLE_SHIFT) - 1)
L2_ENTRIES = 256

# Type bits (bits 1:0)
PTE_TYPE_TABLE = 0x1          # level 1: pointer to a level-2 table
PTE_TYPE_PAGE = 0x2           # level 1: section; level 2: small page
PTE_TYPE_CONT_PAGE = 0x1      # level 2: large page

# Fixed-position bits
ATTR_B = 1 << 2
ATTR_C = 1 << 3
ATTR_NS_TABLE = 1 << 3        # level-1 table descriptor
ATTR_NS_SECTION = 1 << 19     # level-1 section/supersection
CONT_SECTION = 1 << 18        # supersection
CONT_PAGE_XN_SHIFT = 15       # XN of a large page is bit 15
CONT_PAGE_TEX_SHIFT = 6       # TEX of a large page moves up by 6 bits

# The 8-bit attribute block, at bits 17:10 (level 1) or 11:4 (level 2)
ATTR_AP0 = 1 << 0             # AF in the simplified AP model
ATTR_AP1 = 1 << 1             # unprivileged access allowed
ATTR_AP2 = 1 << 5             # read-only
ATTR_S = 1 << 6
ATTR_NG = 1 << 7
TEX_SHIFT = 2
TEX_MASK = 0x7
PTE_AF = ATTR_AP0
PTE_AP_UNPRIV = ATTR_AP1
PTE_AP_RDONLY = ATTR_AP2
CONT_PAGE_TEX_MASK = TEX_MASK << CONT_PAGE_TEX_SHIFT   # bits 8:6

# MediaTek physical-address extension bits
MTK_PA_BIT32 = 1 << 9         # v4.20: ARM_V7S_ATTR_MTK_4GB, same bit
MTK_PA_BIT33 = 1 << 4         # v5.4+
MTK_PA_BIT34 = 1 << 5         # v5.12+ (v6.12 and v6.13 eras)

#: Where simulated v7s page-table memory starts (LPAE's starts at
#: 0x7f000000); below 4 GiB, as the kernel requires of v7s tables.
TABLE_MEM_BASE = 0x7E000000
#: The CPU page size the level-1 table is allocated in.
CPU_PAGE_SIZE = SZ_4K

ALL_PGSIZES = SZ_4K | SZ_64K | SZ_1M | SZ_16M
_U32 = 0xFFFFFFFF


def lvl_shift(lvl: int) -> int:
    """ARM_V7S_LVL_SHIFT: 20 at level 1, 12 at level 2."""
    return 20 if lvl == 1 else 12


def lvl_mask(lvl: int) -> int:
    """ARM_V7S_LVL_MASK: the output-address bits of a leaf at ``lvl``."""
    return (_U32 << lvl_shift(lvl)) & _U32


def attr_shift(lvl: int) -> int:
    """ARM_V7S_ATTR_SHIFT: 10 at level 1, 4 at level 2."""
    return 16 - lvl * 6


def attr_xn(lvl: int) -> int:
    """ARM_V7S_ATTR_XN: bit 4 at level 1, bit 0 at level 2."""
    return 1 << (4 * (2 - lvl))


def pte_to_cont(pte: int, lvl: int) -> int:
    """arm_v7s_pte_to_cont: a section becomes a supersection (bit 18); a
    small page becomes a large page (type 0b01, XN to bit 15, TEX to bits
    14:12)."""
    if lvl == 1:
        return pte | CONT_SECTION
    xn = pte & attr_xn(2)
    tex = pte & CONT_PAGE_TEX_MASK
    pte ^= xn | tex | PTE_TYPE_PAGE
    return pte | (xn << CONT_PAGE_XN_SHIFT) | (tex << CONT_PAGE_TEX_SHIFT) \
        | PTE_TYPE_CONT_PAGE


def cont_to_pte(pte: int, lvl: int) -> int:
    """arm_v7s_cont_to_pte (v4.20 .. v6.12): the inverse of
    :func:`pte_to_cont`."""
    if lvl == 1:
        return pte & ~CONT_SECTION
    xn = pte & (1 << CONT_PAGE_XN_SHIFT)
    tex = pte & (CONT_PAGE_TEX_MASK << CONT_PAGE_TEX_SHIFT)
    pte ^= xn | tex | PTE_TYPE_CONT_PAGE
    return pte | (xn >> CONT_PAGE_XN_SHIFT) | (tex >> CONT_PAGE_TEX_SHIFT) \
        | PTE_TYPE_PAGE


def pte_is_valid(pte: int) -> bool:
    """ARM_V7S_PTE_IS_VALID: type bits not 0b00."""
    return (pte & 0x3) != 0


def pte_is_table(pte: int, lvl: int) -> bool:
    """ARM_V7S_PTE_IS_TABLE: only at level 1, type 0b01."""
    return lvl == 1 and (pte & 0x3) == PTE_TYPE_TABLE


def pte_is_cont(pte: int, lvl: int) -> bool:
    """arm_v7s_pte_is_cont: a supersection (level 1) or large page
    (level 2). Only meaningful for a valid entry."""
    if lvl == 1 and not pte_is_table(pte, lvl):
        return bool(pte & CONT_SECTION)
    if lvl == 2:
        return not pte & PTE_TYPE_PAGE
    return False


class V7sTable(PgtableBase):
    """An io-pgtable-arm-v7s page table (``ARM_V7S``), stage 1 only.

    Same interface as :class:`~iommu_viz.pgtable.lpae.LpaeTable`.
    ``granule`` must be 4 KiB; ``ias`` is 21 to 32 bits (34 with
    ``mtk_ext`` from v5.12, so in the v6.12 and v6.13 eras) and ``oas``
    32 (up to 34 with ``mtk_ext`` in the v5.4 era, 35 from v5.12);
    ``kernel`` the era.
    ``pgsize_bitmap`` is the driver's choice among 4K, 64K, 1M and 16M
    (supersections are used only when 16M is in it). Quirks, as
    ``IO_PGTABLE_QUIRK_*``: ``ns`` (ARM_NS: NS bit in sections and
    NSTable in table descriptors), ``no_perms`` (NO_PERMS: no AF/AP/XN
    bits), ``mtk_ext`` (ARM_MTK_4GB in v4.20, ARM_MTK_EXT later: extra
    physical-address bits; needs ``no_perms``), ``non_strict``
    (NON_STRICT, v4.20 and v5.4 only: leaf unmaps are not invalidated;
    from v5.15 pass a gather with ``queued=True`` instead).
    ``split_sync`` overrides whether arm_v7s_split_blk_unmap invalidates
    and syncs on its own, as for LPAE (True: tlb_flush_leaf in v5.4,
    tlb_flush_walk from v5.11, which removed flush_leaf). ``tlb`` and
    ``trace`` as for LPAE.

    >>> pt = V7sTable(kernel="v4.20", ns=True)
    >>> pt.map(0x1000000, 0x1000000, SZ_16M)
    16777216
    >>> pt.describe(1, pt.pgd.ptes[16]).kind, hex(pt.pgd.ptes[31])
    ('supersection', '0x10f1c02')
    >>> pt.unmap(0x1100000, SZ_1M)     # splits the supersection first
    1048576
    >>> pt.tlb.calls
    ... # doctest: +NORMALIZE_WHITESPACE
    [('tlb_add_flush', 17825792, 16777216, 16777216, True), ('tlb_sync',),
     ('tlb_add_flush', 17825792, 1048576, 1048576, True)]
    """

    fmt = "v7s"
    PTE_TYPECODE = "I"

    def __init__(self, granule=SZ_4K, ias=32, oas=32, stage=1, kernel="v5.4",
                 tlb=None, non_strict=False, ns=False, no_perms=False,
                 mtk_ext=False, pgsize_bitmap=ALL_PGSIZES, trace=None,
                 split_sync=None):
        rules = era(kernel)
        if granule != SZ_4K:
            shown = (f"{granule:#x}" if isinstance(granule, int)
                     else repr(granule))
            raise ValueError(
                f"granule {shown} is not a v7s granule; the short-descriptor "
                "format has 4 KiB pages only")
        if stage != 1:
            raise ValueError(f"stage {stage!r} is not supported: ARM_V7S is "
                             "a stage-1 format")
        if not isinstance(pgsize_bitmap, int) or not pgsize_bitmap \
                or pgsize_bitmap & ~ALL_PGSIZES:
            shown = (f"{pgsize_bitmap:#x}" if isinstance(pgsize_bitmap, int)
                     else repr(pgsize_bitmap))
            raise ValueError(
                f"pgsize_bitmap {shown} must be a non-empty subset of "
                f"{ALL_PGSIZES:#x} (4 KiB, 64 KiB, 1 MiB, 16 MiB)")
        if mtk_ext and not no_perms:
            name = "ARM_MTK_EXT" if rules.mtk_pa_bits \
                else "ARM_MTK_4GB"
            raise ValueError(
                f"the {name} quirk needs NO_PERMS too: its address bits "
                "reuse permission bits (arm_v7s_alloc_pgtable refuses it)")
        if non_strict and rules.queued_gather:
            raise ValueError(
                f"the NON_STRICT quirk is gone in the {kernel} era (removed "
                "in v5.15, a8e5f04458c4); pass a gather with queued=True "
                "instead")
        # v5.12 (MT8192): ias up to 34 and PA bit 34 with ARM_MTK_EXT
        mtk_34 = rules.mtk_pa34
        max_ias = 34 if (mtk_ext and mtk_34) else ADDR_BITS
        if not isinstance(ias, int) or not 21 <= ias <= max_ias:
            raise ValueError(
                f"ias {ias!r} is out of range; this table takes 21 to "
                f"{max_ias} bits")
        max_oas = ADDR_BITS
        if mtk_ext:
            # ARM_MTK_4GB: 32 bits; ARM_MTK_EXT (v5.4): 34; v5.12: 35
            max_oas = 35 if mtk_34 else 34 if rules.mtk_pa_bits \
                else 32
        if not isinstance(oas, int) or not 32 <= oas <= max_oas:
            raise ValueError(
                f"oas {oas!r} is out of range; this table takes 32 to "
                f"{max_oas} bits")
        self.kernel = kernel
        #: the era's rules (:class:`~iommu_viz.pgtable.common.KernelEra`)
        self.era = rules
        self.granule = SZ_4K
        self.ias = ias
        self.oas = oas
        self.stage = 1
        self.tlb = tlb if tlb is not None else RecordingFlushOps()
        self.non_strict = bool(non_strict)
        self.ns = bool(ns)
        self.no_perms = bool(no_perms)
        self.mtk_ext = bool(mtk_ext)
        self.trace = trace
        #: whether arm_v7s_split_blk_unmap invalidates and syncs the
        #: unmapped part itself (None: as the era did; True in v4.20)
        self.split_sync = rules.split_syncs_itself \
            if split_sync is None else bool(split_sync)
        self.warnings: list[str] = []
        #: every WARN the kernel code prints, as (function, what), as for
        #: LpaeTable (``'empty'``: an unmap found an invalid entry)
        self.kernel_warnings: list[tuple[str, str]] = []
        # The era's rules, each named by the release that brought it.
        #: struct iommu_gather_ops (tlb_add_flush + tlb_sync) before v5.4
        self._gather_ops = rules.gather_ops
        #: ARM_MTK_EXT address bits 32/33 via paddr_to_iopte (v5.4); before
        #: that ARM_MTK_4GB sets bit 9 in arm_v7s_prot_to_pte
        self._mtk_pa_bits = rules.mtk_pa_bits
        #: tlb_flush_leaf removed (fefe8527a1e0, v5.11): flush_walk instead
        self._flush_leaf = not rules.at_least((5, 11))
        #: MediaTek PA bit 34 at PTE bit 5 (v5.12)
        self._mtk_pa34 = mtk_34
        #: iommu_iotlb_gather_queued replaces NON_STRICT (v5.15)
        self._queued_gather = rules.queued_gather
        #: partial unmaps split (until v6.12; fd50651636fb in v6.13)
        self._splits = rules.splits_blocks

        self.pgsize_bitmap = pgsize_bitmap
        self.pg_shift = 12
        self.levels = 2
        self.start_level = 1
        # _ARM_V7S_LVL_BITS(1): 12 bits before v5.12; ias - 20 since
        # "Quad lvl1 pgtable for MediaTek" (v5.12), for every table
        l1_bits = ias - 20 if rules.mtk_pa34 else 12
        self.pgd_entries = 1 << l1_bits
        self.pgd_size = self.pgd_entries * 4
        self._prot_cache: dict[tuple, int] = {}

        self._next_table_pa = TABLE_MEM_BASE
        self._free_l2: list[int] = []
        self._tables: dict[int, Table] = {}
        self._dirty: set[int] = set()
        self._snap_cache: dict[int, TableSnapshot] = {}
        self.pgd = self._alloc_table(1, 0, "arm_v7s_alloc_pgtable")

    # ------------------------------------------------------------ geometry
    def block_size(self, level: int) -> int:
        """ARM_V7S_BLOCK_SIZE: bytes one entry at ``level`` covers (1 MiB
        or 4 KiB; a CONT group covers 16 times that)."""
        return 1 << lvl_shift(level)

    def level_index(self, iova: int, level: int) -> int:
        """ARM_V7S_LVL_IDX: the entry at ``level`` that translates
        ``iova``."""
        n = self.pgd_entries if level == 1 else L2_ENTRIES
        return (iova >> lvl_shift(level)) & (n - 1)

    def level_of_size(self, size: int) -> int:
        """The level a page of ``size`` is written at: 1 for 1 MiB
        sections and 16 MiB supersections, 2 for 4 KiB small and 64 KiB
        large pages."""
        if size in (SZ_1M, SZ_16M):
            return 1
        if size in (SZ_4K, SZ_64K):
            return 2
        raise ValueError(f"no v7s entry maps {fmt_size(size)}")

    # ------------------------------------------------------------ memory
    def _alloc_table(self, level, iova, func):
        """__arm_v7s_alloc_table: level 1 from the page allocator (whole
        pages, aligned to its size); level 2 from a 1 KiB-aligned
        kmem_cache, which hands back the most recently freed object
        first."""
        if level == 1:
            n = self.pgd_entries
            nbytes = max(n * 4, CPU_PAGE_SIZE)
            align = 1 << (nbytes - 1).bit_length()
            pa = (self._next_table_pa + align - 1) & ~(align - 1)
            self._next_table_pa = pa + nbytes
        else:
            n = L2_ENTRIES
            if self._free_l2:
                pa = self._free_l2.pop()
            else:
                pa = self._next_table_pa
                self._next_table_pa += n * 4
        return self._new_table(pa, level, iova, n, func)

    def _deref(self, pte) -> Table:
        """iopte_deref of a level-1 table descriptor."""
        return self._tables[pte & TABLE_MASK]

    # ------------------------------------------------------------ descriptors
    def prot_to_pte(self, prot: int, level: int) -> int:
        """arm_v7s_prot_to_pte: attribute and type bits of a leaf at
        ``level`` for IOMMU_* ``prot`` (no address, not CONT).

        nG and S always; TEX=1 unless IOMMU_MMIO; with permissions in
        use (no NO_PERMS) AF, AP1 unless IOMMU_PRIV, AP2 unless
        IOMMU_WRITE and XN for IOMMU_NOEXEC; B for MMIO, B|C for
        IOMMU_CACHE; type 0b10; NS at level 1 with the ARM_NS quirk. In
        v4.20 the ARM_MTK_4GB quirk also sets bit 9 here.
        """
        key = (prot, level)
        pte = self._prot_cache.get(key)
        if pte is not None:
            return pte
        ap = not self.no_perms
        attr = ATTR_NG | ATTR_S
        if not prot & IOMMU_MMIO:
            attr |= 1 << TEX_SHIFT
        if ap:
            attr |= PTE_AF
            if not prot & IOMMU_PRIV:
                attr |= PTE_AP_UNPRIV
            if not prot & IOMMU_WRITE:
                attr |= PTE_AP_RDONLY
        pte = attr << attr_shift(level)
        if prot & IOMMU_NOEXEC and ap:
            pte |= attr_xn(level)
        if prot & IOMMU_MMIO:
            pte |= ATTR_B
        elif prot & IOMMU_CACHE:
            pte |= ATTR_B | ATTR_C
        pte |= PTE_TYPE_PAGE
        if level == 1 and self.ns:
            pte |= ATTR_NS_SECTION
        if self.mtk_ext and not self._mtk_pa_bits:
            pte |= MTK_PA_BIT32
        self._prot_cache[key] = pte
        return pte

    def _kernel_pte_to_prot(self, pte, level):
        """arm_v7s_pte_to_prot (v4.20 .. v6.12), as the split uses it on a
        plain section: includes IOMMU_MMIO/IOMMU_CACHE."""
        prot = IOMMU_READ
        attr = pte >> attr_shift(level)
        if not attr & PTE_AP_RDONLY:
            prot |= IOMMU_WRITE
        if not attr & PTE_AP_UNPRIV:
            prot |= IOMMU_PRIV
        if not attr & (TEX_MASK << TEX_SHIFT):
            prot |= IOMMU_MMIO
        elif pte & ATTR_C:
            prot |= IOMMU_CACHE
        if pte & attr_xn(level):
            prot |= IOMMU_NOEXEC
        return prot

    def _paddr_to_iopte(self, paddr, level):
        """paddr_to_iopte: the address bits of a leaf (v5.4+: with the
        MediaTek bits 32 -> bit 9, 33 -> bit 4 and, from v5.12, 34 -> bit
        5)."""
        pte = paddr & lvl_mask(level)
        if self.mtk_ext and self._mtk_pa_bits:
            if paddr >> 32 & 1:
                pte |= MTK_PA_BIT32
            if paddr >> 33 & 1:
                pte |= MTK_PA_BIT33
            if self._mtk_pa34 and paddr >> 34 & 1:
                pte |= MTK_PA_BIT34
        return pte

    def _iopte_to_paddr(self, pte, level):
        """iopte_to_paddr (v5.4+) / the mask in arm_v7s_iova_to_phys
        (v4.20): the output address the kernel reads back from a leaf."""
        mask = lvl_mask(level)
        if pte_is_cont(pte, level):
            mask = (mask * CONT_PAGES) & _U32
        paddr = pte & mask
        if self.mtk_ext and self._mtk_pa_bits:
            if pte & MTK_PA_BIT32:
                paddr |= 1 << 32
            if pte & MTK_PA_BIT33:
                paddr |= 1 << 33
            if self._mtk_pa34 and pte & MTK_PA_BIT34:
                paddr |= 1 << 34
        return paddr

    def _hw_paddr(self, pte, level):
        """The output address the hardware uses. Equal to the kernel's
        view except in v4.20 4GB mode, where MediaTek IOMMUs take bit 9 as
        physical-address bit 32 but arm_v7s_iova_to_phys ignores it."""
        paddr = self._iopte_to_paddr(pte, level)
        if self.mtk_ext and not self._mtk_pa_bits and pte & MTK_PA_BIT32:
            paddr |= 1 << 32
        return paddr

    def _table_pte(self, t):
        """arm_v7s_install_table: table descriptor for table ``t``."""
        pte = t.paddr | PTE_TYPE_TABLE
        if self.ns:
            pte |= ATTR_NS_TABLE
        return pte

    def _leaf_size(self, pte, level):
        bs = self.block_size(level)
        return bs * CONT_PAGES if pte_is_cont(pte, level) else bs

    def _xn_set(self, pte, level):
        if self.no_perms:
            return False
        if level == 2 and pte_is_cont(pte, 2):
            return bool(pte & (1 << CONT_PAGE_XN_SHIFT))
        return bool(pte & attr_xn(level))

    def pte_prot(self, pte: int, level: int) -> int:
        """The IOMMU_READ/WRITE/NOEXEC/PRIV rights a leaf ``pte`` at
        ``level`` grants (IOMMU_PRIV: privileged accesses only). With
        NO_PERMS the hardware checks nothing: read and write."""
        if self.no_perms:
            return IOMMU_READ | IOMMU_WRITE
        attr = pte >> attr_shift(level)
        prot = IOMMU_READ
        if not attr & PTE_AP_RDONLY:
            prot |= IOMMU_WRITE
        if not attr & PTE_AP_UNPRIV:
            prot |= IOMMU_PRIV
        if self._xn_set(pte, level):
            prot |= IOMMU_NOEXEC
        return prot

    def describe(self, level: int, pte: int) -> PteInfo:
        """Decode ``pte`` read at ``level`` for display. Kinds:
        ``'invalid'``, ``'table'``, ``'section'``, ``'supersection'``,
        ``'page'`` (small) and ``'large'``; ``size`` is what the mapping
        covers (16 MiB for each entry of a supersection, 64 KiB for each
        of a large page) and ``addr`` its hardware output address."""
        bs = self.block_size(level)
        if not pte_is_valid(pte):
            return PteInfo("invalid", 0, bs, 0, "")
        if pte_is_table(pte, level):
            attrs = "NSTable" if pte & ATTR_NS_TABLE else ""
            return PteInfo("table", pte & TABLE_MASK, bs, 0, attrs)
        cont = pte_is_cont(pte, level)
        if level == 1:
            kind = "supersection" if cont else "section"
        else:
            kind = "large" if cont else "page"
        size = bs * CONT_PAGES if cont else bs
        prot = self.pte_prot(pte, level)
        attr = pte >> attr_shift(level)
        if level == 2 and cont:
            tex = (pte >> (TEX_SHIFT + attr_shift(2) + CONT_PAGE_TEX_SHIFT)) \
                & TEX_MASK
        else:
            tex = (attr >> TEX_SHIFT) & TEX_MASK
        bits = []
        rw = ("R" if prot & IOMMU_READ else "") + \
            ("W" if prot & IOMMU_WRITE else "")
        bits.append(rw or "none")
        bits.append(f"TEX{tex}" + ("C" if pte & ATTR_C else "")
                    + ("B" if pte & ATTR_B else ""))
        if attr & ATTR_S:
            bits.append("S")
        if attr & ATTR_NG:
            bits.append("nG")
        if not self.no_perms:
            if attr & PTE_AF:
                bits.append("AF")
            if prot & IOMMU_PRIV:
                bits.append("priv")
            if prot & IOMMU_NOEXEC:
                bits.append("XN")
        if level == 1 and pte & ATTR_NS_SECTION:
            bits.append("NS")
        if self.mtk_ext:
            if pte & MTK_PA_BIT32:
                bits.append("PA32")
            if self._mtk_pa_bits and pte & MTK_PA_BIT33:
                bits.append("PA33")
            if self._mtk_pa34 and pte & MTK_PA_BIT34:
                bits.append("PA34")
        return PteInfo(kind, self._hw_paddr(pte, level) & ~(size - 1), size,
                       prot, " ".join(bits))

    # ------------------------------------------------------------ checks
    # ------------------------------------------------------------ map
    def map(self, iova: int, paddr: int, size: int,
            prot: int = IOMMU_READ | IOMMU_WRITE, count: int = 1) -> int:
        """Map ``count`` pages of ``size`` bytes at ``iova`` to ``paddr``.

        Models arm_v7s_map (v4.20, v5.4), with the loop iommu_map makes
        over ``count``, and arm_v7s_map_pages (v5.14+: v6.12, v6.13),
        which loops over the pages one __arm_v7s_map at a time. Returns
        the bytes mapped (0 when ``prot`` grants neither read nor write,
        before v6.11; from v6.11, 6093cd582f8e, map_pages refuses that
        with EINVAL). A 1 MiB or 16 MiB page written
        over a level-2 table unmaps and frees the table first, with its
        walk flush (arm_v7s_init_pte). Raises
        :class:`PgtableError` with ``EEXIST`` when a leaf already maps
        part of the range, ``EINVAL``/``ERANGE`` for bad input; the table
        is then unchanged.
        """
        if not self._check_map_args(iova, paddr, size, prot, count):
            return 0
        self._check_free(iova, size, count)
        for k in range(count):
            self._map_one(iova + k * size, paddr + k * size, size, prot)
        return size * count

    def _leaf_name(self, pte, level):
        return f"{fmt_size(self._leaf_size(pte, level))} " \
            f"{self.describe(level, pte).kind}"

    def _check_free(self, iova, size, count):
        """Refuse (EEXIST) before writing anything if a leaf maps any
        page of the range: the checks of __arm_v7s_map and
        arm_v7s_init_pte, done up front so that a refused call leaves the
        table as it was."""
        for k in range(count):
            a = iova + k * size
            i1 = self.level_index(a, 1)
            if size >= SZ_1M:
                for i in range(size // SZ_1M):
                    pte = self.pgd.ptes[i1 + i]
                    if pte_is_valid(pte) and not pte_is_table(pte, 1):
                        raise PgtableError(
                            "EEXIST", f"iova {a + i * SZ_1M:#x} is already "
                            f"mapped by a {self._leaf_name(pte, 1)}; unmap "
                            "it first")
                continue
            pte = self.pgd.ptes[i1]
            if not pte_is_valid(pte):
                continue
            if not pte_is_table(pte, 1):
                base = a & ~(self._leaf_size(pte, 1) - 1)
                raise PgtableError(
                    "EEXIST", f"iova {a:#x} lies inside a "
                    f"{self._leaf_name(pte, 1)} at {base:#x}; unmap it first")
            t = self._deref(pte)
            i2 = self.level_index(a, 2)
            for i in range(size // SZ_4K):
                p2 = t.ptes[i2 + i]
                if pte_is_valid(p2):
                    raise PgtableError(
                        "EEXIST", f"iova {a + i * SZ_4K:#x} is already mapped "
                        f"by a {self._leaf_name(p2, 2)}; unmap it first")

    def _map_one(self, iova, paddr, size, prot):
        """__arm_v7s_map: walk down from level 1, installing a level-2
        table if needed, then arm_v7s_init_pte."""
        t = self.pgd
        lvl = 1
        while True:
            n = size >> lvl_shift(lvl)
            idx = self.level_index(iova, lvl)
            if n:
                self._init_pte(iova, paddr, prot, lvl, n, t, idx)
                return
            pte = t.ptes[idx]
            if not pte:
                child = self._alloc_table(2, iova & ~(SZ_1M - 1),
                                          "__arm_v7s_map")
                self._write(t, idx, self._table_pte(child),
                            "arm_v7s_install_table")
                t = child
            else:
                t = self._deref(pte)
            lvl = 2

    def _init_pte(self, iova, paddr, prot, lvl, n, t, idx):
        """arm_v7s_init_pte: free any level-2 table in the way, then write
        the leaf into ``n`` entries (16 identical ones for CONT)."""
        bs = self.block_size(lvl)
        for i in range(n):
            if pte_is_table(t.ptes[idx + i], lvl):
                self._unmap_at(iova + i * bs, bs, None, lvl, t)
        pte = self.prot_to_pte(prot, lvl)
        if n > 1:
            pte = pte_to_cont(pte, lvl)
        pte |= self._paddr_to_iopte(paddr, lvl)
        self._write(t, idx, pte, "arm_v7s_init_pte", count=n)

    # ------------------------------------------------------------ unmap
    def unmap(self, iova: int, size: int, gather=None, count: int = 1) -> int:
        """Unmap ``count`` pages of ``size`` at ``iova``; returns bytes
        unmapped, 0 when nothing (valid) is mapped there.

        Models arm_v7s_unmap (v4.20, v5.4) / arm_v7s_unmap_pages
        (v5.14+: v6.1, v6.12, v6.13) and __arm_v7s_unmap below them, looping
        over ``count`` and stopping at the first page that unmaps
        nothing, as __iommu_unmap / unmap_pages do. Unmapping part of a
        CONT group splits it (arm_v7s_split_cont) and part of a section
        replaces it by a level-2 table (arm_v7s_split_blk_unmap) in the
        v4.20, v5.4 and v6.12 eras; the v6.13 era (fd50651636fb, the v7s
        sibling of 33729a5fc0ca) refuses both with a warning and 0.
        ``gather`` is passed through untouched to ``tlb_add_page``.
        """
        self._check_count(count)
        self._check_pgsize(size, "unmap")
        self._check_iova(iova, size, count)
        total = size * count
        done = 0
        while done < total:
            # one arm_v7s_unmap_pages call (v5.14+) unmaps page by page up
            # to the first that fails; __iommu_unmap calls again from
            # there, which WARNs once more and returns 0. Before v5.14 the
            # core called arm_v7s_unmap once a page.
            n = (total - done) // size if self.era.pages_api else 1
            got = 0
            for _ in range(n):
                one = self._unmap_at(iova + done + got, size, gather, 1,
                                     self.pgd)
                if not one:
                    break
                got += one
            if not got:
                break
            done += got
        return done

    def _leaf_tlb(self, iova, blk, gather):
        """The leaf invalidation of __arm_v7s_unmap, era by era: v4.20
        tlb_add_flush, v5.4 tlb_add_page unless NON_STRICT, v5.15+
        (v6.12, v6.13) tlb_add_page unless the gather is queued."""
        if self._queued_gather:
            # iommu_iotlb_gather_queued(): a NULL gather is not queued
            if not getattr(gather, "queued", False):
                self.tlb.tlb_add_page(gather, iova, blk)
        elif self.non_strict:
            pass        # IO_PGTABLE_QUIRK_NON_STRICT: the flush queue will do
        elif self._gather_ops:
            self.tlb.tlb_add_flush(iova, blk, blk, True)
        else:
            self.tlb.tlb_add_page(gather, iova, blk)

    def _unmap_at(self, iova, size, gather, lvl, t):
        """__arm_v7s_unmap from table ``t`` at level ``lvl``."""
        func = "__arm_v7s_unmap"
        n = size >> lvl_shift(lvl)
        idx = self.level_index(iova, lvl)
        ptes = list(t.ptes[idx:idx + max(n, 1)])
        if not all(pte_is_valid(p) for p in ptes):
            # WARN_ON(!ARM_V7S_PTE_IS_VALID) in the kernel
            self.kernel_warnings.append((func, "empty"))
            return 0
        pte0 = ptes[0]
        if n <= 1 and pte_is_cont(pte0, lvl):
            if not self._splits:
                self._warn(func, "Unmap of a partial large IOPTE is not "
                           "allowed", "partial")
                return 0
            pte0 = self._split_cont(iova, idx, lvl, t)
        if n:
            blk = self.block_size(lvl)
            self._write(t, idx, 0, func, count=n)
            for i, p in enumerate(ptes):
                a = iova + i * blk
                if pte_is_table(p, lvl):
                    # also flush any partial walks, then free the table
                    walk = self.block_size(lvl + 1)
                    if self._gather_ops:
                        self.tlb.tlb_add_flush(a, blk, walk, False)
                        self.tlb.tlb_sync()
                    else:
                        self.tlb.tlb_flush_walk(a, blk, walk)
                    self._free_table(self._deref(p), "__arm_v7s_free_table")
                else:
                    self._leaf_tlb(a, blk, gather)
            return size
        if lvl == 1 and not pte_is_table(pte0, 1):
            if not self._splits:
                self._warn(func, "Unmap of a partial large IOPTE is not "
                           "allowed", "partial")
                return 0
            return self._split_blk_unmap(iova, size, gather, pte0, t, idx)
        return self._unmap_at(iova, size, gather, 2, self._deref(pte0))

    def _split_cont(self, iova, idx, lvl, t):
        """arm_v7s_split_cont (v4.20 .. v6.12): rewrite the 16 entries of
        the CONT group holding ``idx`` as 16 ordinary entries, then
        invalidate the whole group and wait: v4.20 tlb_add_flush +
        tlb_sync, v5.4 tlb_flush_leaf, v5.11 .. v6.12 tlb_flush_walk
        (fefe8527a1e0 removed flush_leaf). ``iova`` is the unmap's own,
        not the group's start, as in the kernel. Returns the first new
        entry, as the kernel does."""
        bs = self.block_size(lvl)
        first = cont_to_pte(t.ptes[idx], lvl)
        base = idx & ~(CONT_PAGES - 1)
        self._write(t, base, first, "arm_v7s_split_cont", count=CONT_PAGES,
                    step=bs)
        size = bs * CONT_PAGES
        if self._gather_ops:
            self.tlb.tlb_add_flush(iova, size, size, True)
            self.tlb.tlb_sync()
        elif self._flush_leaf:
            self.tlb.tlb_flush_leaf(iova, size, size)
        else:
            self.tlb.tlb_flush_walk(iova, size, size)
        return first

    def _split_blk_unmap(self, iova, size, gather, blk_pte, parent, pidx):
        """arm_v7s_split_blk_unmap (v4.20 .. v6.12): build a level-2 table
        that maps the section minus the part being unmapped (64 KiB parts
        as large pages), install it in place of ``blk_pte`` with a
        compare-and-swap, then hand the TLB its maintenance: v4.20
        tlb_add_flush + tlb_sync, v5.4 .. v6.12 tlb_add_page into the
        caller's gather (even a queued one: unlike the leaf path, the
        split never asks iommu_iotlb_gather_queued).

        As in the kernel, the entries get the section's attributes
        (arm_v7s_prot_to_pte(arm_v7s_pte_to_prot(...))) but addresses
        counted from 0: the section's output address is lost. If the
        entry no longer holds ``blk_pte`` the new table is freed and 0
        is returned.
        """
        func = "arm_v7s_split_blk_unmap"
        blk_iova = iova & ~(SZ_1M - 1)
        table = self._alloc_table(2, blk_iova, func)
        num_entries = size >> lvl_shift(2)
        unmap_idx = self.level_index(iova, 2)
        pte = self.prot_to_pte(self._kernel_pte_to_prot(blk_pte, 1), 2)
        if num_entries > 1:
            pte = pte_to_cont(pte, 2)
        first = pte
        for i in range(0, L2_ENTRIES, num_entries):
            if i != unmap_idx:
                table.ptes[i:i + num_entries] = array("I", [pte] * num_entries)
            pte += size
        self._dirty.add(table.paddr)
        if self.trace:
            self.trace(func, "table_fill", table=table.paddr, level=2,
                       iova=blk_iova, first=first, step=size,
                       count=L2_ENTRIES, group=num_entries,
                       skipped=unmap_idx, skipped_count=num_entries)
        cur = parent.ptes[pidx]
        if cur != blk_pte:
            # arm_v7s_install_table's cmpxchg found another value
            self._free_table(table, "__arm_v7s_free_table")
            if not pte_is_table(cur, 1):
                return 0
            return self._unmap_at(iova, size, gather, 2, self._deref(cur))
        self._write(parent, pidx, self._table_pte(table),
                    "arm_v7s_install_table")
        if self._gather_ops:
            self.tlb.tlb_add_flush(iova, size, size, True)
            if self.split_sync:
                self.tlb.tlb_sync()
        elif self.split_sync:
            # what-if: a synchronous invalidation of the era instead
            if self._flush_leaf:
                self.tlb.tlb_flush_leaf(iova, size, size)
            else:
                self.tlb.tlb_flush_walk(iova, size, size)
        else:
            self.tlb.tlb_add_page(gather, iova, size)
        return size

    # ------------------------------------------------------------ lookups
    def iova_to_phys(self, iova: int) -> int:
        """arm_v7s_iova_to_phys: the physical address ``iova`` translates
        to, or 0 when it is not mapped (an iova beyond ``ias`` reads the
        entry its low bits index, as the kernel does). In v4.20 4GB mode (``mtk_ext``)
        this is the kernel's 32-bit answer, without the bit 32 the
        MediaTek hardware adds (see :meth:`translate`)."""
        if not isinstance(iova, int) or iova < 0:
            raise PgtableError("EINVAL", f"iova {iova!r} must be a "
                               "non-negative integer")
        t = self.pgd
        lvl = 1
        while True:
            # no check against ias: as in the kernel, each level's index
            # takes its bits and the bits above ias are ignored
            pte = t.ptes[self.level_index(iova, lvl)]
            if not pte_is_table(pte, lvl):
                break
            t = self._deref(pte)
            lvl = 2
        if not pte_is_valid(pte):
            return 0
        size = self._leaf_size(pte, lvl)
        return self._iopte_to_paddr(pte, lvl) | (iova & (size - 1))

    def translate(self, iova: int):
        """A hardware walk: the :class:`Translation` for ``iova`` (what a
        TLB would cache) or ``None`` when the walk faults.

        A supersection or large page is reported as the whole 16 MiB or
        64 KiB group with ``contiguous=16``: the architecture lets a TLB
        hold such a group as one entry (the 16 entries must be
        identical), which is why the kernel invalidates the whole group
        when it splits one. Models the VMSAv7 short-descriptor walk.
        """
        if not isinstance(iova, int) or iova < 0 or iova >> self.ias:
            return None
        t = self.pgd
        lvl = 1
        tables = []
        while True:
            tables.append(t.paddr)
            pte = t.ptes[self.level_index(iova, lvl)]
            if not pte_is_valid(pte):
                return None
            if pte_is_table(pte, lvl):
                t = self._deref(pte)
                lvl = 2
                continue
            cont = pte_is_cont(pte, lvl)
            size = self._leaf_size(pte, lvl)
            return Translation(iova & ~(size - 1),
                               self._hw_paddr(pte, lvl) & ~(size - 1),
                               size, lvl, pte, self.pte_prot(pte, lvl),
                               tuple(tables), CONT_PAGES if cont else 1)

    def walk(self, iova: int) -> list[WalkStep]:
        """The descriptors a walk of ``iova`` reads, one
        :class:`~iommu_viz.pgtable.common.WalkStep` a level, ending at a
        leaf or at an invalid entry."""
        if not isinstance(iova, int) or iova < 0 or iova >> self.ias:
            raise PgtableError("ERANGE", f"iova {iova!r} is beyond the "
                               f"{self.ias}-bit input address size")
        steps = []
        t = self.pgd
        lvl = 1
        while True:
            idx = self.level_index(iova, lvl)
            pte = t.ptes[idx]
            info = self.describe(lvl, pte)
            steps.append(WalkStep(lvl, t.paddr, idx, pte, info.kind,
                                  info.size, pte_bits=32))
            if info.kind != "table":
                return steps
            t = self._deref(pte)
            lvl = 2

    # ------------------------------------------------------------ views
    def _snapshot_geometry(self):
        return 1, SZ_4K, (1, 2)

    def _table_freed(self, t):
        # __arm_v7s_free_table: level-2 tables come from a kmem_cache,
        # whose most recently freed object is handed out next
        if t.level == 2:
            self._free_l2.append(t.paddr)

    def mappings(self):
        """Yield ``(iova, paddr, size, level, pte)`` for every leaf, in
        iova order; a CONT group is yielded once, as one 64 KiB or 16 MiB
        mapping. ``paddr`` is the hardware output address."""
        def rec(t, lvl):
            bs = self.block_size(lvl)
            for i, pte in enumerate(t.ptes):
                if not pte_is_valid(pte):
                    continue
                if pte_is_table(pte, lvl):
                    yield from rec(self._deref(pte), 2)
                    continue
                cont = pte_is_cont(pte, lvl)
                if cont and i % CONT_PAGES:
                    continue
                size = bs * CONT_PAGES if cont else bs
                yield (t.iova + i * bs, self._hw_paddr(pte, lvl) & ~(size - 1),
                       size, lvl, pte)
        yield from rec(self.pgd, 1)

    def __repr__(self):
        return (f"V7sTable(ias={self.ias}, oas={self.oas}, "
                f"kernel={self.kernel!r}, "
                f"pgsize_bitmap={self.pgsize_bitmap:#x}, "
                f"tables={len(self._tables)})")
