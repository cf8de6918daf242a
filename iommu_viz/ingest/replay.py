"""Replay a real log of IOMMU map/unmap activity into a page-table model.

Each event is applied to an :class:`~iommu_viz.pgtable.lpae.LpaeTable`
(``fmt="lpae"``, io-pgtable-arm) or a
:class:`~iommu_viz.pgtable.v7s.V7sTable` (``fmt="v7s"``, the Armv7
short-descriptor format of io-pgtable-arm-v7s, as 32-bit IOMMUs such as
MediaTek's M4U use it) the way drivers/iommu/iommu.c applies a request to
the page-table code:

* an ftrace ``iommu:map`` (a whole iommu_map() request) or an unlinked
  ``pr_debug`` ``map:`` request is cut into page sizes by iommu_pgsize()
  (the v5.14+ form, which also counts runs of one size; the page sizes are the
  same as v5.4's) and handed to the table run by run, as __iommu_map does; if
  a run is refused, what was mapped is unmapped again, as iommu_map's clean-up
  does, and the request counts as *rejected*. ``pr_debug`` ``mapping:`` pieces
  are applied as logged (the request line above them is then only counted);
* an ftrace ``iommu:unmap``, a ``pr_debug`` ``unmapped:`` piece or an
  unlinked ``unmap this:`` request runs the loop of __iommu_unmap: the largest
  page size that fits, until the size is done or nothing more is mapped.

Requests misaligned to the granule are refused as __iommu_map/__iommu_unmap
refuse them (-EINVAL); the model's own :class:`PgtableError` refusals
(EEXIST when the log maps over a live mapping, ERANGE beyond the address size)
are counted too, with their line number, and never stop the replay. Logs do
not record permissions, so every mapping is ``IOMMU_READ | IOMMU_WRITE``.

The kernel era decides what a partial unmap of a block does: v4.20 to
v6.12 split it (arm_lpae_split_blk_unmap; for v7s arm_v7s_split_cont for a
64K large page or 16M supersection and arm_v7s_split_blk_unmap for a 1M
section), v6.13 refuses it and unmaps nothing (33729a5fc0ca for LPAE,
fd50651636fb for v7s); the summary counts both (*blocks split*, *refused
partial unmaps*). A v7s section split keeps the kernel's bug: the
remaining pages lose the section's output address (see
:mod:`iommu_viz.pgtable.v7s`), so the replayed mappings show them at
physical 0x0 onwards, as the kernel's table would.

The v7s input address is 32 bits (``ARM_V7S_ADDR_BITS``); ``mtk=True``
models mtk_iommu's quirks (``ARM_NS | NO_PERMS | ARM_MTK_EXT``): physical
addresses up to 34 bits (v5.4) or 35 (v5.12+), and from v5.12 an iova of
up to 34 bits with ``ias=34``. An event that does not fit is refused with
its line number (ERANGE), like any other refusal.

Example::

    >>> from iommu_viz.ingest import replay
    >>> r = replay(["map: IOMMU: iova=0x40000000 paddr=0x80000000 size=2097152",
    ...             "unmap: IOMMU: iova=0x40001000 size=4096 unmapped_size=4096"])
    >>> r.summary.blocks_split, r.summary.pages_mapped
    (1, {2097152: 1})
    >>> hex(r.table.iova_to_phys(0x40002000))
    '0x80002000'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import compress, repeat
from operator import eq

from ..pgtable.common import (
    IOMMU_READ, IOMMU_WRITE, FlushOps, PgtableError, SZ_1M, SZ_4K,
    check_kernel,
    era_at_least, fmt_size, short_size,
)
from ..pgtable.lpae import LpaeTable, MAX_LEVELS, PTE_ADDR_MASK
from ..pgtable.v7s import (
    ADDR_BITS as V7S_ADDR_BITS, CONT_PAGES as V7S_CONT_PAGES, V7sTable,
    lvl_mask as v7s_lvl_mask, pte_is_cont as v7s_pte_is_cont,
)
from ..sim.pgsize import iommu_pgsize
from .parse import (
    CHILD, COVERED, DBG_MAP, DBG_MAPPING, DBG_UNMAP, DBG_UNMAPPED, MAP,
    UNMAP, EventLog, ParsedLog, parse_log,
)
from .progress import make_progress

__all__ = ["replay", "Replay", "Summary", "CountingFlushOps",
           "format_mappings", "mapping_runs", "FORMATS", "MAX_REJECTED"]

#: Page-table formats replay can drive.
FORMATS = ("lpae", "v7s")
#: The granules each format has.
_GRANULES = {"lpae": (SZ_4K, 1 << 14, 1 << 16), "v7s": (SZ_4K,)}
#: How many refused requests are kept with their message (all are counted).
MAX_REJECTED = 1000
#: Inputs at least this big get an automatic progress bar.
_BIG_BYTES = 8 << 20
_TICK = 0x3FFF


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


@dataclass
class Summary:
    """What a replay did. Sizes are bytes; ``pages_mapped`` and ``leaves``
    map a page size to a count.

    * ``map_requests``/``unmap_requests``: iommu_map/iommu_unmap calls seen
      (a ``pr_debug`` request and its pieces count once);
    * ``pages_mapped``: pages installed by maps, by page size;
    * ``leaves``: leaf entries in the final table, by size;
    * ``blocks_split``: blocks replaced by a table on a partial unmap
      (v7s: sections replaced by a level-2 table, and 64K large pages or
      16M supersections rewritten as 16 entries by arm_v7s_split_cont);
    * ``unmatched_unmaps``: unmaps that found less mapped than they asked
      for (``unmatched_bytes`` in all);
    * ``refused_partial_unmaps``: partial unmaps of a block refused (v6.13);
    * ``rejected``: requests the model refused (misaligned, over a live
      mapping, beyond the address size);
    * ``tables_replaced``: block maps that replaced a table still holding
      pages (arm_lpae_init_pte frees it; those pages count as unmapped);
    * ``log_disagreements``: ftrace unmaps whose ``unmapped_size`` differs
      from what the model unmapped (a hint that the era, the granule or the
      start of the log is off);
    * ``peak_mapped`` and the log line where it was first reached;
    * ``mtk``: a v7s table with mtk_iommu's quirks.
    """

    fmt: str
    granule: int
    kernel: str
    ias: int
    lines: int = 0
    events: int = 0
    skipped: int = 0
    malformed: int = 0
    device: str | None = None
    map_requests: int = 0
    unmap_requests: int = 0
    mapped_bytes: int = 0
    unmapped_bytes: int = 0
    pages_mapped: dict = field(default_factory=dict)
    leaves: dict = field(default_factory=dict)
    blocks_split: int = 0
    unmatched_unmaps: int = 0
    unmatched_bytes: int = 0
    refused_partial_unmaps: int = 0
    rejected: int = 0
    tables_replaced: int = 0
    log_disagreements: int = 0
    peak_mapped: int = 0
    peak_line: int = 0
    mapped: int = 0
    tables: int = 0
    tlb_calls: dict = field(default_factory=dict)
    mtk: bool = False

    def to_dict(self) -> dict:
        """A JSON-ready dict (page sizes as ``'4K'``-style keys)."""
        d = dict(self.__dict__)
        d["pages_mapped"] = {short_size(k): v for k, v in
                             sorted(self.pages_mapped.items())}
        d["leaves"] = {short_size(k): v for k, v in sorted(self.leaves.items())}
        d["tlb_calls"] = dict(sorted(self.tlb_calls.items()))
        return d

    def __str__(self):
        def sizes(d):
            if not d:
                return "none"
            return ", ".join(f"{short_size(k)} x {v}" for k, v in sorted(d.items()))

        def wrap(label, text):
            out, cur = [], label
            for part in text.split(", "):
                add = part if cur == label else ", " + part
                if len(cur) + len(add) > 72 and cur != label:
                    out.append(cur + ",")
                    cur = " " * len(label) + part
                else:
                    cur += add
            out.append(cur)
            return out

        dev = f", device {self.device}" if self.device else ""
        name = self.fmt.upper() + ("+MTK" if self.mtk else "")
        lines = [
            f"replay: {name} {short_size(self.granule)} granule, "
            f"{self.ias}-bit iova, kernel {self.kernel} era{dev}",
            f"log: {self.lines} lines, {self.events} iommu events, "
            f"{self.skipped} other lines, {self.malformed} malformed",
            f"map requests      {self.map_requests:>10}  "
            f"{fmt_size(self.mapped_bytes) if self.mapped_bytes else '0'} mapped",
            f"unmap requests    {self.unmap_requests:>10}  "
            f"{fmt_size(self.unmapped_bytes) if self.unmapped_bytes else '0'}"
            " unmapped",
        ]
        lines += wrap("pages mapped:     ", sizes(self.pages_mapped))
        lines += wrap("leaves now:       ", sizes(self.leaves))
        lines += [
            f"blocks split      {self.blocks_split:>10}",
            f"unmatched unmaps  {self.unmatched_unmaps:>10}"
            + (f"  {fmt_size(self.unmatched_bytes)} not mapped"
               if self.unmatched_bytes else ""),
            f"refused partial   {self.refused_partial_unmaps:>10}  "
            "(partial unmaps of a block, v6.13)",
            f"rejected requests {self.rejected:>10}",
        ]
        if self.tables_replaced:
            lines.append(f"tables replaced   {self.tables_replaced:>10}  "
                         "(a block map freed a table with pages)")
        lines += [
            f"log disagreements {self.log_disagreements:>10}  "
            "(unmapped_size differs from the model)",
            f"peak mapped       {fmt_size(self.peak_mapped) if self.peak_mapped else '0':>10}"
            + (f"  at line {self.peak_line}" if self.peak_mapped else ""),
            f"mapped now        {fmt_size(self.mapped) if self.mapped else '0':>10}"
            f"  in {self.tables} tables",
        ]
        tlb = ", ".join(f"{k} {v}" for k, v in sorted(self.tlb_calls.items()))
        lines += wrap("tlb calls:        ", tlb or "none")
        return "\n".join(lines)


def _v7s_max_oas(kernel, mtk) -> int:
    """The output address size mtk_iommu gives a v7s table with
    ARM_MTK_EXT: 32 bits with ARM_MTK_4GB (v4.20), 34 (v5.4), 35 from the
    MT8192 series (v5.12); 32 without the quirk (ARM_V7S_ADDR_BITS)."""
    if not mtk:
        return V7S_ADDR_BITS
    if era_at_least(kernel, (5, 12)):
        return 35
    return 34 if era_at_least(kernel, (5, 4)) else 32


def _make_table(fmt, granule, kernel, ias, mtk, tlb):
    """A fresh table of ``fmt``: LPAE stage 1 with a 48-bit output, or
    ARM_V7S with all four page sizes (4K, 64K, 1M, 16M: the
    pgsize_bitmap mtk_iommu and arm-smmu give it) and, with ``mtk``, the
    quirks mtk_iommu_domain_finalise sets (ARM_NS, NO_PERMS,
    ARM_MTK_EXT)."""
    if fmt == "v7s":
        return V7sTable(granule=granule, ias=ias,
                        oas=_v7s_max_oas(kernel, mtk), kernel=kernel,
                        tlb=tlb, ns=mtk, no_perms=mtk, mtk_ext=mtk)
    return LpaeTable(granule=granule, ias=ias, oas=48, kernel=kernel, tlb=tlb)


class _Engine:
    """Applies events to a fresh table and keeps the counts."""

    def __init__(self, log: EventLog, granule, kernel, ias, dev_index,
                 fmt="lpae", mtk=False):
        self.log = log
        self.tlb = CountingFlushOps()
        self.fmt = fmt
        self.table = _make_table(fmt, granule, kernel, ias, mtk, self.tlb)
        # LPAE: a granule-sized unmap never frees a table, so the table
        # count grows by one per split and page unmaps can skip the trace
        # hook. v7s splits a CONT group without a new table
        # (arm_v7s_split_cont), so its unmaps are watched by the hook.
        self._count_by_tables = fmt == "lpae"
        self._trace = self._trace_lpae if fmt == "lpae" else self._trace_v7s
        self.granule = granule
        self.bitmap = self.table.pgsize_bitmap
        self.map_pages = era_at_least(kernel, (5, 14))
        self.dev_index = dev_index
        self.pos = 0
        self.map_requests = self.unmap_requests = 0
        self.mapped_bytes = self.unmapped_bytes = 0
        self.pages = {}
        self.splits = self.refused = self.rejected = 0
        self.unmatched = self.unmatched_bytes = 0
        self.disagreements = 0
        self.replaced = 0
        self.last_done = 0
        self.mapped = self.peak = self.peak_line = 0
        self.rejects: list = []
        self._trace_splits = 0
        self._trace_warns = 0

    # -- helpers -----------------------------------------------------------
    def _reject(self, i, message):
        self.rejected += 1
        if len(self.rejects) < MAX_REJECTED:
            self.rejects.append((self.log.lines[i], message))

    def _trace_lpae(self, func, kind, **detail):
        """Trace hook for LpaeTable: a split fills a new table
        (arm_lpae_split_blk_unmap); a refused partial unmap warns (v6.13)."""
        if kind == "table_fill":
            self._trace_splits += 1
        elif kind == "warn":
            self._trace_warns += 1

    def _trace_v7s(self, func, kind, **detail):
        """Trace hook for V7sTable: a split is arm_v7s_split_cont rewriting
        a CONT group, or arm_v7s_install_table putting a table where a
        section was (arm_v7s_split_blk_unmap; a table built but lost to
        the compare-and-swap replaced nothing); a refused partial unmap
        warns (v6.13)."""
        if kind == "pte_write":
            if func == "arm_v7s_split_cont" or (
                    func == "arm_v7s_install_table" and detail["old"]):
                self._trace_splits += 1
        elif kind == "warn":
            self._trace_warns += 1

    def _pgsize(self, iova, paddr, size):
        """(pgsize, count): iommu_pgsize of v5.14+ (drivers/iommu/iommu.c),
        the largest page size that fits, and how many of it to hand the table
        before a larger size could take over. ``paddr`` is ``iova`` for an
        unmap, as __iommu_unmap passes it."""
        pg = iommu_pgsize(self.bitmap, iova | paddr, size)
        larger = self.bitmap & ~((pg << 1) - 1)
        if larger:
            nxt = larger & -larger
            if not (iova ^ paddr) & (nxt - 1):
                offset = nxt - ((iova | paddr) & (nxt - 1))
                if offset + nxt <= size:
                    size = offset
        return pg, size // pg

    # -- requests ----------------------------------------------------------
    def map_request(self, i, iova, paddr, size) -> int:
        """__iommu_map: split ``size`` into page-size runs and map them;
        on a refusal unmap what was mapped (iommu_map's clean-up)."""
        if not size:
            return 0
        g = self.granule
        if (iova | paddr | size) & (g - 1):
            self._reject(i, f"unaligned: iova {iova:#x} pa {paddr:#x} size "
                         f"{size:#x} is not aligned to the {fmt_size(g)} "
                         "minimum page size (-EINVAL)")
            return 0
        runs = []
        pos = 0
        while pos < size:
            pg, n = self._pgsize(iova + pos, paddr + pos, size - pos)
            runs.append((iova + pos, paddr + pos, pg, n))
            pos += pg * n
        return self._map_runs(i, runs)

    def _live(self, iova, pgsize) -> int:
        """Bytes mapped in ``[iova, iova + pgsize)`` now, read by table
        walks: needed where a block-sized map or unmap meets a table, which
        io-pgtable-arm frees whole (arm_lpae_init_pte replaces it by the
        block; __arm_lpae_unmap returns the block size) whatever it held."""
        walk = self.table.walk
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

    def _replaced(self, iova, pgsize):
        """``(bytes, tables)``: the live pages in the tables a map of one
        ``pgsize`` page at ``iova`` would free, and how many such tables
        held pages. LPAE: arm_lpae_init_pte frees a table found in the
        block's one entry (a leaf there makes the map fail, EEXIST). v7s:
        arm_v7s_init_pte frees level-2 tables only when writing level-1
        entries (1M sections, 16M supersections: one per MiB); 4K and 64K
        pages are written at level 2, where no table can be."""
        walk = self.table.walk
        if self.fmt == "v7s":
            if pgsize < SZ_1M or (iova + pgsize - 1) >> self.table.ias:
                return 0, 0     # (the map refuses the latter: ERANGE)
            lost = tables = 0
            for a in range(iova, iova + pgsize, SZ_1M):
                if walk(a)[0].kind == "table":
                    live = self._live(a, SZ_1M)
                    if live:
                        lost += live
                        tables += 1
            return lost, tables
        live = self._live(iova, pgsize)
        if live and walk(iova)[-1].size < pgsize:
            return live, 1
        return 0, 0

    def _map_runs(self, i, runs) -> int:
        """Map (iova, paddr, pgsize, count) runs: up to v5.13 __iommu_map
        called ->map once a page, v5.14+ ->map_pages once a run. Returns
        the change in mapped bytes (a block that replaced a table took the
        table's pages with it: counted as unmapped). Both table models
        refuse a map before writing anything, so only the pages that were
        in fact mapped can have replaced a table."""
        table = self.table
        tmap = table.map
        prot = IOMMU_READ | IOMMU_WRITE
        done = []          # (iova, pgsize, count) mapped so far
        lost = 0
        try:
            for a, p, pg, n in runs:
                slots = None
                if pg > self.granule:
                    slots = [self._replaced(a + k * pg, pg) for k in range(n)]
                if self.map_pages or n == 1:
                    tmap(a, p, pg, prot, n)
                    done.append((a, pg, n))
                    k = n
                else:
                    k = 0
                    try:
                        for k in range(n):
                            tmap(a + k * pg, p + k * pg, pg, prot)
                    except PgtableError:
                        if k:
                            done.append((a, pg, k))
                            lost += self._count_replaced(slots, k)
                        raise
                    done.append((a, pg, n))
                    k = n
                lost += self._count_replaced(slots, k)
        except PgtableError as e:
            # iommu_map's clean-up: unmap what this request mapped
            for a, pg, n in done:
                table.unmap(a, pg, count=n)
            self._reject(i, str(e))
            self.unmapped_bytes += lost
            return -lost
        pages = self.pages
        total = 0
        for a, pg, n in done:
            pages[pg] = pages.get(pg, 0) + n
            total += pg * n
        self.mapped_bytes += total
        self.unmapped_bytes += lost
        return total - lost

    def _count_replaced(self, slots, k) -> int:
        """Count the tables replaced by the first ``k`` pages of a run
        (``slots`` from :meth:`_replaced`); returns the bytes lost."""
        if not slots:
            return 0
        lost = 0
        for b, t in slots[:k]:
            lost += b
            self.replaced += t
        return lost

    def map_piece(self, i, iova, paddr, pgsize, count) -> int:
        """A pr_debug ``mapping:`` piece: the page size the kernel chose;
        re-cut only when this table does not have that page size."""
        if pgsize & self.bitmap and not (iova | paddr) & (pgsize - 1):
            return self._map_runs(i, [(iova, paddr, pgsize, count)])
        return self.map_request(i, iova, paddr, pgsize * count)

    def unmap_request(self, i, iova, size) -> int:
        """__iommu_unmap: unmap the largest page size that fits, repeatedly,
        until ``size`` is done or nothing more is mapped there. Returns the
        bytes that were mapped and are no longer (the kernel's count can be
        larger: a block-sized unmap of a table counts the whole block)."""
        if not size:
            return 0
        g = self.granule
        if (iova | size) & (g - 1):
            self._reject(i, f"unaligned: iova {iova:#x} size {size:#x} is not "
                         f"aligned to the {fmt_size(g)} minimum page size")
            return 0
        table = self.table
        tunmap = table.unmap
        nwarnings = table.warnings.__len__
        by_tables = self._count_by_tables
        ntables = table._tables.__len__ if by_tables else None
        self._trace_splits = self._trace_warns = 0
        done = live = 0
        try:
            while done < size:
                # v5.4 called ->unmap once a page, v5.14+ ->unmap_pages with
                # the count; the table's loop over ``count`` is the former
                a = iova + done
                pg, n = self._pgsize(a, a, size - done)
                if pg == g and by_tables:
                    # LPAE granule pages: no table can be freed, so the table
                    # count grows by one for each split
                    # (arm_lpae_split_blk_unmap) and the warnings by one
                    # for each refused partial unmap
                    nt, nw = ntables(), nwarnings()
                    try:
                        if self.map_pages or (a + pg * n - 1) >> table.ias:
                            got = tunmap(a, pg, None, n)
                        else:
                            # one page a call, as v5.4's loop made them,
                            # until one finds nothing mapped
                            got = 0
                            for _ in range(n):
                                one = tunmap(a + got, pg)
                                if not one:
                                    break
                                got += one
                    finally:
                        self._trace_splits += ntables() - nt
                        self._trace_warns += nwarnings() - nw
                    if not got:
                        break
                    live += got
                    done += got
                    continue
                slots = None
                if pg > self.granule:
                    slots = [self._live(a + k * pg, pg) for k in range(n)]
                table.trace = self._trace
                try:
                    got = table.unmap(a, pg, count=n)
                finally:
                    table.trace = None
                if not got:
                    break
                live += got if slots is None else sum(slots[:got // pg])
                done += got
        except PgtableError as e:
            self._reject(i, str(e))
        self.splits += self._trace_splits
        if self._trace_warns:
            self.refused += 1
        elif done < size:
            self.unmatched += 1
            self.unmatched_bytes += size - done
        self.unmapped_bytes += live
        self.last_done = done
        return live

    # -- the loop ------------------------------------------------------------
    def run(self, stop, progress=None):
        """Apply events ``self.pos`` .. ``stop - 1``.

        The common events (a granule-sized, aligned ftrace map or unmap)
        are handed straight to the table's single-page map/unmap; their
        counts are kept in locals and the page count of each is known, so
        only the rest go through map_request/unmap_request. The fast unmap
        counts splits by the number of tables, which only LPAE allows (see
        ``_count_by_tables``): for v7s every unmap goes through
        unmap_request."""
        log = self.log
        kinds, flags, iovas, sizes = log.kinds, log.flags, log.iovas, log.sizes
        paddrs, args, devs = log.paddrs, log.args, log.devs
        table = self.table
        tmap, tunmap = table.map, table.unmap
        nwarnings = table.warnings.__len__
        prot = IOMMU_READ | IOMMU_WRITE
        g = self.granule
        gmask = g - 1
        if self._count_by_tables:
            ntables = table._tables.__len__   # read-only: counts splits
            ug = g          # unmaps of this size take the fast path
        else:
            ntables = None
            ug = -1         # no size is: every unmap is a request
        dev = self.dev_index
        mapped, peak = self.mapped, self.peak
        peak_at = -1          # event index where the peak was last raised
        fast_maps = fast_unmapped = 0
        map_requests = unmap_requests = 0
        splits = refused = unmatched = unmatched_bytes = disagree = 0
        for start in range(self.pos, stop, _TICK + 1):
            end = min(stop, start + _TICK + 1)
            if progress is not None:
                progress.update(start)
            cols = (range(start, end), kinds[start:end], iovas[start:end],
                    paddrs[start:end], sizes[start:end])
            if dev is not None:
                keep = list(map(eq, devs[start:end], repeat(dev)))
                cols = [compress(c, keep) for c in cols]
            for i, k, iova, pa, size in zip(*cols):
                if k == MAP:
                    map_requests += 1
                    if size == g and not (iova | pa) & gmask:
                        try:
                            tmap(iova, pa, g, prot)
                        except PgtableError as e:
                            self._reject(i, str(e))
                            continue
                        fast_maps += 1
                        mapped += g
                    else:
                        mapped += self.map_request(i, iova, pa, size)
                    if mapped > peak:
                        peak = mapped
                        peak_at = i
                elif k == UNMAP:
                    unmap_requests += 1
                    if size == ug and not iova & gmask:
                        nt = ntables()
                        nw = nwarnings()
                        try:
                            got = tunmap(iova, g)
                        except PgtableError as e:
                            self._reject(i, str(e))
                            got = 0
                        else:
                            if ntables() != nt:
                                splits += ntables() - nt
                            if not got:
                                if nwarnings() != nw:
                                    refused += 1
                                else:
                                    unmatched += 1
                                    unmatched_bytes += g
                        fast_unmapped += got
                        if got != args[i]:
                            disagree += 1
                    else:
                        got = self.unmap_request(i, iova, size)
                        if self.last_done != args[i]:
                            disagree += 1
                    mapped -= got
                elif k == DBG_MAPPING:
                    if not flags[i] & CHILD:
                        map_requests += 1
                    mapped += self.map_piece(i, iova, pa, size, args[i])
                    if mapped > peak:
                        peak = mapped
                        peak_at = i
                elif k == DBG_UNMAPPED:
                    if not flags[i] & CHILD:
                        unmap_requests += 1
                    mapped -= self.unmap_request(i, iova, size)
                elif k == DBG_MAP:
                    map_requests += 1
                    if not flags[i] & COVERED:
                        mapped += self.map_request(i, iova, pa, size)
                        if mapped > peak:
                            peak = mapped
                            peak_at = i
                elif k == DBG_UNMAP:
                    unmap_requests += 1
                    if not flags[i] & COVERED:
                        mapped -= self.unmap_request(i, iova, size)
        self.pos = max(self.pos, stop)
        self.mapped, self.peak = mapped, peak
        if peak_at >= 0:
            self.peak_line = log.lines[peak_at]
        self.map_requests += map_requests
        self.unmap_requests += unmap_requests
        if fast_maps:
            self.pages[g] = self.pages.get(g, 0) + fast_maps
            self.mapped_bytes += fast_maps * g
        self.unmapped_bytes += fast_unmapped
        self.splits += splits
        self.refused += refused
        self.unmatched += unmatched
        self.unmatched_bytes += unmatched_bytes
        self.disagreements += disagree

    def leaves(self) -> dict:
        """Leaf entries of the table by size, as a walk of
        :meth:`LpaeTable.mappings` would count them.

        Counted per table instead of per leaf: a non-zero entry of a
        last-level table is a page; one of a higher table is a block or
        points to a table one level down, and each table but the pgd has
        one such entry (arm_lpae_install_table). The count is used only
        when its bytes add up to what the replay kept as mapped; otherwise
        (or if the table does not expose its tables) the leaves are walked.
        """
        table = self.table
        if self.fmt != "lpae":
            # v7s: a CONT group is 16 identical entries and one leaf, so
            # counting non-zero entries would not do; its tables are
            # small (at most 4096 + 256 a table), walk them
            return self._walked_leaves()
        try:
            nonzero: dict[int, int] = {}
            below: dict[int, int] = {}
            for t in table._tables.values():
                ptes = t.ptes
                lvl = t.level
                nonzero[lvl] = nonzero.get(lvl, 0) + len(ptes) - ptes.count(0)
                if t is not table.pgd:
                    below[lvl - 1] = below.get(lvl - 1, 0) + 1
            leaves = {}
            for lvl, n in nonzero.items():
                n -= below.get(lvl, 0)
                if n < 0:
                    raise ValueError(lvl)
                if n:
                    size = table.block_size(lvl)
                    leaves[size] = leaves.get(size, 0) + n
            if sum(k * v for k, v in leaves.items()) == self.mapped:
                return dict(sorted(leaves.items()))
        except (AttributeError, ValueError):
            pass
        return self._walked_leaves()

    def _walked_leaves(self) -> dict:
        leaves = {}
        for _iova, _pa, size, _lvl, _pte in self.table.mappings():
            leaves[size] = leaves.get(size, 0) + 1
        return dict(sorted(leaves.items()))


class Replay:
    """The result of :func:`replay`.

    ``summary`` (:class:`Summary`), ``table`` (the final
    :class:`~iommu_viz.pgtable.lpae.LpaeTable` or
    :class:`~iommu_viz.pgtable.v7s.V7sTable`), ``events`` (the parsed
    :class:`~iommu_viz.ingest.parse.EventLog`), ``problems`` (malformed
    lines, :class:`~iommu_viz.ingest.parse.Problem`), ``rejected`` (``(line,
    message)`` for requests the model refused), ``tlb_calls`` (counts).
    """

    def __init__(self, parsed: ParsedLog, engine: _Engine, settings: dict):
        self.parsed = parsed
        self.events = parsed.events
        self.problems = parsed.problems
        self.table = engine.table
        self.rejected = engine.rejects
        self.settings = settings
        self.summary = self._summarise(engine)

    def _summarise(self, e: _Engine) -> Summary:
        s = self.settings
        leaves = e.leaves()
        p = self.parsed
        return Summary(
            fmt=s["fmt"], granule=s["granule"], kernel=s["kernel"],
            ias=s["ias"], lines=p.lines, events=len(p.events),
            skipped=p.skipped, malformed=p.malformed, device=s["device"],
            map_requests=e.map_requests, unmap_requests=e.unmap_requests,
            mapped_bytes=e.mapped_bytes, unmapped_bytes=e.unmapped_bytes,
            pages_mapped=dict(sorted(e.pages.items())), leaves=leaves,
            blocks_split=e.splits, unmatched_unmaps=e.unmatched,
            unmatched_bytes=e.unmatched_bytes,
            refused_partial_unmaps=e.refused, rejected=e.rejected,
            tables_replaced=e.replaced,
            log_disagreements=e.disagreements, peak_mapped=e.peak,
            peak_line=e.peak_line, mapped=e.mapped,
            tables=self.table.table_count,
            tlb_calls=dict(sorted(e.tlb.counts.items())), mtk=s["mtk"])

    @property
    def tlb_calls(self) -> dict:
        return self.summary.tlb_calls

    def _engine(self):
        s = self.settings
        return _Engine(self.events, s["granule"], s["kernel"], s["ias"],
                       s["dev_index"], s["fmt"], s["mtk"])

    def table_at(self, n: int):
        """A fresh table holding the state after the first ``n`` events
        (0 .. ``len(events)``), replayed again from the start; the same
        ``n`` always gives the same table."""
        total = len(self.events)
        if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= total:
            raise ValueError(f"event count {n!r} is out of range: the log has "
                             f"{total} events (0..{total})")
        e = self._engine()
        e.run(n)
        return e.table

    def mappings_text(self, max_rows=None) -> str:
        """The final table's mappings as text (see :func:`format_mappings`)."""
        return format_mappings(self.table, max_rows=max_rows)

    def __repr__(self):
        s = self.summary
        return (f"<Replay {s.events} events, {s.kernel} era, "
                f"{short_size(s.granule)} granule, {fmt_size(s.mapped) if s.mapped else '0'}"
                " mapped>")


def _check_settings(granule, kernel, fmt, ias, mtk) -> int:
    """Check the settings; returns the ias to use (``None``: 48 for LPAE,
    32 for v7s)."""
    check_kernel(kernel)
    if not isinstance(fmt, str) or fmt not in FORMATS:
        raise ValueError(f"page-table format {fmt!r} cannot be replayed; "
                         "choose one of " + ", ".join(map(repr, FORMATS)))
    if granule not in _GRANULES[fmt]:
        shown = f"{granule:#x}" if isinstance(granule, int) else repr(granule)
        if fmt == "v7s":
            raise ValueError(f"granule {shown} is not a v7s granule; the "
                             "short-descriptor format has 4K pages only")
        raise ValueError(f"granule {shown} is not an LPAE granule; "
                         "choose 4K, 16K or 64K")
    if not isinstance(mtk, bool):
        raise ValueError(f"mtk {mtk!r} must be True or False")
    if fmt == "lpae":
        if mtk:
            raise ValueError("the mtk quirk (mtk_iommu's ARM_MTK_EXT) is "
                             "for v7s tables; an LPAE table has no such "
                             "quirk")
        if ias is None:
            return 48
        if type(ias) is not int or not 32 <= ias <= 48:
            raise ValueError(f"ias {ias!r} is out of range; the model takes "
                             "32 to 48 bits")
        return ias
    # v7s: ARM_V7S_ADDR_BITS; mtk_iommu's 34-bit iova needs the MT8192
    # series (v5.12), so the v6.12 and v6.13 eras
    top = 34 if mtk and era_at_least(kernel, (5, 12)) else V7S_ADDR_BITS
    if ias is None:
        return V7S_ADDR_BITS
    if type(ias) is not int or not V7S_ADDR_BITS <= ias <= top:
        why = ("with the mtk quirk in the v6.12 and v6.13 eras, 32 to 34 "
               "bits" if top > V7S_ADDR_BITS else
               "v7s takes a 32-bit iova (33 or 34 bits only with the mtk "
               "quirk, from the v6.12 era)")
        raise ValueError(f"ias {ias!r} is out of range; {why}")
    return ias


def _source_is_big(source) -> bool:
    import os
    if isinstance(source, (str, os.PathLike)):
        try:
            return os.path.getsize(source) >= _BIG_BYTES
        except OSError:
            return False
    if hasattr(source, "fileno"):
        try:
            return os.fstat(source.fileno()).st_size >= _BIG_BYTES
        except (OSError, ValueError):
            return False
    try:
        return len(source) >= _BIG_BYTES // 100
    except TypeError:
        return False


def replay(source, granule=SZ_4K, kernel="v5.4", fmt="lpae", ias=None,
           progress=None, device=None, mtk=False) -> Replay:
    """Parse ``source`` (a path, a file object, or an iterable of lines) and
    replay its iommu map/unmap events into a fresh page table.

    ``fmt`` (``"lpae"`` or ``"v7s"``), ``granule`` (LPAE: 4K, 16K or 64K;
    v7s: 4K), ``kernel`` (era: ``"v4.20"``, ``"v5.4"``, ``"v6.12"``,
    ``"v6.13"``) and ``ias`` (input address bits; default 48 for LPAE,
    32 to 48; v7s: 32, up to 34 with ``mtk`` from the v6.12 era) pick the
    table; ``mtk`` (v7s only) gives it mtk_iommu's quirks (ARM_NS,
    NO_PERMS, ARM_MTK_EXT: physical addresses above 4 GiB).
    ``device`` keeps only the events whose ``dev=`` is that name.
    ``progress``: see :mod:`iommu_viz.ingest.progress` (default: a bar for
    big inputs in Jupyter or on a terminal).

    Raises ``ValueError`` for bad settings and ``OSError`` when the file
    cannot be read; the log's content never raises (see ``problems``,
    ``rejected`` and the summary).
    """
    ias = _check_settings(granule, kernel, fmt, ias, mtk)
    bar = make_progress(progress, _source_is_big(source))
    parsed = parse_log(source, progress=bar)
    dev_index = None
    if device is not None:
        dev_index = parsed.events._dev_index.get(device)
        if dev_index is None:
            names = [d for d in parsed.events.devices if d is not None]
            raise ValueError(
                f"device {device!r} does not appear in the log; it names "
                + (", ".join(map(repr, names)) if names else "no devices"))
    settings = dict(granule=granule, kernel=kernel, fmt=fmt, ias=ias,
                    device=device, dev_index=dev_index, mtk=mtk)
    engine = _Engine(parsed.events, granule, kernel, ias, dev_index, fmt,
                     mtk)
    if bar is not None:
        bar.start("replay", len(parsed.events))
    try:
        engine.run(len(parsed.events), bar)
    finally:
        if bar is not None:
            bar.close()
    return Replay(parsed, engine, settings)


#: How :func:`mapping_runs` names v7s leaves (V7sTable.describe's kinds).
_V7S_KINDS = {"page": "page", "large": "large page", "section": "section",
              "supersection": "supersection"}


def _v7s_attrs(pte, level):
    """A v7s leaf's bits other than its output address (the MediaTek
    address bits stay in: runs do not cross them)."""
    mask = v7s_lvl_mask(level)
    if v7s_pte_is_cont(pte, level):
        mask = (mask * V7S_CONT_PAGES) & 0xFFFFFFFF
    return pte & ~mask


def mapping_runs(table):
    """The leaves of ``table`` as runs ``(iova, paddr, size, count, kind)``:
    leaves of one size, consecutive in iova and in paddr, with the same
    attributes, in iova order. ``kind`` is ``'page'`` or ``'block'`` for
    LPAE; ``'page'``, ``'large page'``, ``'section'`` or
    ``'supersection'`` for v7s. Reads the table's ``mappings()`` only."""
    runs = []
    cur = None
    v7s = getattr(table, "fmt", "lpae") == "v7s"
    for iova, pa, size, level, pte in table.mappings():
        attrs = _v7s_attrs(pte, level) if v7s else pte & ~PTE_ADDR_MASK
        if cur is not None and cur[2] == size and cur[0] + cur[3] * size == iova \
                and cur[1] + cur[3] * size == pa and cur[5] == attrs:
            cur[3] += 1
            continue
        if v7s:
            kind = _V7S_KINDS[table.describe(level, pte).kind]
        else:
            kind = "page" if level == MAX_LEVELS - 1 else "block"
        cur = [iova, pa, size, 1, kind, attrs]
        runs.append(cur)
    return [tuple(r[:5]) for r in runs]


def format_mappings(table, max_rows=None, width=72) -> str:
    """The leaves of ``table`` as plain text, one row per run (see
    :func:`mapping_runs`)::

        0x000040000000-0x0000401fffff -> 0x000080000000    512 x 4K page

    ``max_rows`` caps the rows (a last line says how many runs were left
    out). A stand-in for the text tree renderer.
    """
    runs = mapping_runs(table)
    ndig = max(8, (getattr(table, "ias", 48) + 3) // 4)
    pdig = max(8, (getattr(table, "oas", 48) + 3) // 4)
    out = [f"{'iova range':<{2 * ndig + 5}} -> {'paddr':<{pdig + 2}} "
           f"{'pages':>6}"]
    shown = runs if max_rows is None else runs[:max_rows]
    for iova, pa, size, n, kind in shown:
        end = iova + n * size - 1
        out.append(f"0x{iova:0{ndig}x}-0x{end:0{ndig}x} -> 0x{pa:0{pdig}x} "
                   f"{n:>6} x {short_size(size)} {kind}")
    if len(shown) < len(runs):
        rest = runs[len(shown):]
        out.append(f"... {len(rest)} more runs ({sum(r[3] for r in rest)} "
                   "leaves) not shown")
    if not runs:
        out.append("(nothing mapped)")
    return "\n".join(line[:width] for line in out)
