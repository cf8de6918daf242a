"""Replaying events: the page-table model driven the way
drivers/iommu/iommu.c drives io-pgtable (see :mod:`.replay` for the rules
of each event kind), with cheap flush ops that count the TLB callbacks.

:class:`_Engine` applies a log's events, a segment at a time, to a fresh
table and keeps the counts a :class:`~.summary.Summary` reports; it also
remembers, for each iova, the latest unmap that unmapped something there,
so that a fault can be explained (:mod:`.explain`).
"""

from __future__ import annotations

from itertools import compress, repeat
from operator import eq

from ..pgtable.common import (
    IOMMU_READ, IOMMU_WRITE, PgtableError, era_at_least, fmt_size,
)
from ..sim.pgsize import iommu_pgsize_count
from .formats import (
    CHILD, COVERED, DBG_MAP, DBG_MAPPING, DBG_UNMAP, DBG_UNMAPPED, MAP,
    UNMAP,
)
from .tables import (CountingFlushOps, IotlbGather, LeafSlots, SplitWatch,
                     live_bytes, make_table, replaced_by)

__all__ = ["MAX_REJECTED"]

#: How many refused requests are kept with their message (all are counted).
MAX_REJECTED = 1000
_TICK = 0x3FFF
#: Write granule pages straight into known last-level tables (LeafSlots);
#: the tests turn it off to check that it changes nothing.
FAST_LEAVES = True


class _Engine:
    """Applies events to a fresh table and keeps the counts."""

    def __init__(self, granule, kernel, ias, device=None, fmt="lpae",
                 mtk=False):
        self.log = None           # the segment being applied
        self.tlb = CountingFlushOps()
        #: iommu_unmap's on-stack gather (strict: not queued)
        self.gather = IotlbGather()
        self.fmt = fmt
        self.table = make_table(fmt, granule, kernel, ias, mtk, self.tlb)
        # LPAE: a granule-sized unmap never frees a table, so the table
        # count grows by one per split and page unmaps can skip the trace
        # hook. v7s splits a CONT group without a new table
        # (arm_v7s_split_cont), so its unmaps are watched by the hook.
        self._count_by_tables = fmt == "lpae"
        self._watch = SplitWatch(fmt)
        self.granule = granule
        self.bitmap = self.table.pgsize_bitmap
        self.map_pages = era_at_least(kernel, (5, 14))
        self.device = device
        self.kernel = kernel
        self.map_requests = self.unmap_requests = 0
        self.mapped_bytes = self.unmapped_bytes = 0
        self.pages = {}
        self.splits = self.refused = self.rejected = self.disagreements = 0
        self.unmatched = self.unmatched_bytes = self.partly = 0
        self.replaced = self.last_done = 0
        self.mapped = self.peak = self.peak_line = 0
        self.rejects: list = []
        #: the latest unmap that unmapped something, by its iova:
        #: (line, prefix (its timestamp), device, size)
        self.unmaps: dict = {}
        #: (iova, line) of each partial unmap that split a block
        self.split_log: list = []
        self.leaf = None
        if FAST_LEAVES and fmt == "lpae":
            leaf = LeafSlots(self.table, kernel, ias, self.gather)
            self.leaf = leaf if leaf.ok else None

    # -- helpers -----------------------------------------------------------
    def _reject(self, i, message):
        self.rejected += 1
        if len(self.rejects) < MAX_REJECTED:
            self.rejects.append((self.log.lines[i], message))

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
            pg, n = iommu_pgsize_count(self.bitmap, iova + pos, paddr + pos,
                                       size - pos)
            runs.append((iova + pos, paddr + pos, pg, n))
            pos += pg * n
        return self._map_runs(i, runs)

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
        leaf = self.leaf
        done = []          # (iova, pgsize, count) mapped so far
        lost = 0
        try:
            for a, p, pg, n in runs:
                slots = None
                if pg > self.granule:
                    slots = [replaced_by(table, self.fmt, a + k * pg, pg)
                             for k in range(n)]
                if leaf is not None and pg == self.granule and \
                        leaf.map_run(a, p, n):
                    done.append((a, pg, n))
                    continue
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
                            lost += self._replaced_pages(slots, k)
                        raise
                    done.append((a, pg, n))
                    k = n
                lost += self._replaced_pages(slots, k)
                if leaf is not None and pg == self.granule:
                    leaf.learn(a)
        except PgtableError as e:
            # iommu_map's clean-up: unmap what this request mapped
            for a, pg, n in done:
                table.unmap(a, pg, self.gather, count=n)
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

    def _replaced_pages(self, slots, k) -> int:
        """Count the tables replaced by the first ``k`` pages of a run
        (``slots`` from replaced_by); returns the bytes lost."""
        lost = 0
        for b, t in (slots or ())[:k]:
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
        gather = self.gather
        leaf, counts = self.leaf, self.tlb.counts
        nwarnings = table.warnings.__len__
        by_tables = self._count_by_tables
        ntables = table._tables.__len__ if by_tables else None
        watch = self._watch
        watch.splits = watch.warns = 0
        done = live = 0
        try:
            while done < size:
                # v5.4 called ->unmap once a page, v5.14+ ->unmap_pages with
                # the count; the table's loop over ``count`` is the former
                a = iova + done
                pg, n = iommu_pgsize_count(self.bitmap, a, a, size - done)
                if pg == g and leaf is not None and \
                        not (a + pg * n - 1) >> table.ias:
                    got = leaf.unmap_run(a, n, counts) * g
                    if got:
                        live += got
                        done += got
                        continue
                if pg == g and by_tables:
                    # LPAE granule pages: no table can be freed, so the table
                    # count grows by one for each split
                    # (arm_lpae_split_blk_unmap) and the warnings by one
                    # for each refused partial unmap
                    nt, nw = ntables(), nwarnings()
                    try:
                        if self.map_pages or (a + pg * n - 1) >> table.ias:
                            got = tunmap(a, pg, gather, n)
                        else:
                            # one page a call, as v5.4's loop made them,
                            # until one finds nothing mapped
                            got = 0
                            for _ in range(n):
                                one = tunmap(a + got, pg, gather)
                                if not one:
                                    break
                                got += one
                    finally:
                        watch.splits += ntables() - nt
                        watch.warns += nwarnings() - nw
                    if not got:
                        break
                    live += got
                    done += got
                    continue
                slots = None
                if pg > self.granule:
                    slots = [live_bytes(table, a + k * pg, pg)
                             for k in range(n)]
                table.trace = watch.hook
                try:
                    got = table.unmap(a, pg, gather, count=n)
                finally:
                    table.trace = None
                if not got:
                    break
                live += got if slots is None else sum(slots[:got // pg])
                done += got
        except PgtableError as e:
            self._reject(i, str(e))
        self.splits += watch.splits
        if watch.splits:
            self.split_log.append((iova, self.log.lines[i]))
        if watch.warns:
            self.refused += 1
        elif done < size:
            self.unmatched += 1
            self.unmatched_bytes += size - done
            if done:
                self.partly += 1
        self.unmapped_bytes += live
        self.last_done = done
        if done:
            log = self.log
            self.unmaps[iova] = (log.lines[i], log.stamps[i],
                                 log.devices[log.devs[i]], done)
        return live

    # -- the loop ------------------------------------------------------------
    def apply(self, log, lo, hi, progress=None):
        """Apply events ``lo`` .. ``hi - 1`` of ``log`` (an
        :class:`~.eventlog.EventLog`, the whole log or a segment of it).

        A granule-sized, aligned ftrace map or unmap goes straight to its
        slot (LeafSlots) or to the table's single-page map/unmap, with the
        counts kept in locals; the rest go through map_request and
        unmap_request. The fast unmap counts splits by the number of
        tables, which only LPAE allows (``_count_by_tables``)."""
        self.log = log
        kinds, flags, iovas, sizes = log.kinds, log.flags, log.iovas, log.sizes
        paddrs, args, devs = log.paddrs, log.args, log.devs
        lines, stamps, names = log.lines, log.stamps, log.devices
        unmaps = self.unmaps
        gather = self.gather
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
        dev = None if self.device is None else \
            log._dev_index.get(self.device, -1)
        # granule pages into last-level tables already seen (LeafSlots)
        leaf = self.leaf
        sget = leaf.slots.get if leaf is not None else None
        if sget is not None:
            span, gshift, imask, lbits = (leaf.span, leaf.gshift, leaf.imask,
                                          leaf.bits)
            tget, dirty = table._tables.get, table._dirty.add
            ucalls, counts = leaf.unmap_calls, self.tlb.counts
            pa_top = 1 << table.oas
        mapped, peak = self.mapped, self.peak
        peak_at = -1          # event index where the peak was last raised
        fast_maps = fast_unmapped = 0
        map_requests = unmap_requests = 0
        splits = refused = unmatched = unmatched_bytes = disagree = 0
        for start in range(lo, hi, _TICK + 1):
            end = min(hi, start + _TICK + 1)
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
                        if sget is not None and pa < pa_top:
                            t = sget(iova >> span)
                            if t is not None and tget(t.paddr) is t:
                                x = (iova >> gshift) & imask
                                ptes = t.ptes
                                if not ptes[x]:
                                    ptes[x] = pa | lbits
                                    dirty(t.paddr)
                                    fast_maps += 1
                                    mapped += g
                                    if mapped > peak:
                                        peak = mapped
                                        peak_at = i
                                    continue
                        try:
                            tmap(iova, pa, g, prot)
                        except PgtableError as e:
                            self._reject(i, str(e))
                            continue
                        if sget is not None:
                            leaf.learn(iova)
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
                        if sget is not None:
                            t = sget(iova >> span)
                            if t is not None and tget(t.paddr) is t:
                                x = (iova >> gshift) & imask
                                ptes = t.ptes
                                if ptes[x] & 3 == 3:      # a page
                                    ptes[x] = 0
                                    dirty(t.paddr)
                                    for name, c in ucalls:
                                        counts[name] = counts.get(name, 0) + c
                                    fast_unmapped += g
                                    unmaps[iova] = (lines[i], stamps[i],
                                                    names[devs[i]], g)
                                    if g != args[i]:
                                        disagree += 1
                                    mapped -= g
                                    continue
                        nt = ntables()
                        nw = nwarnings()
                        try:
                            got = tunmap(iova, g, gather)
                        except PgtableError as e:
                            self._reject(i, str(e))
                            got = 0
                        else:
                            if ntables() != nt:
                                splits += ntables() - nt
                                self.split_log.append((iova, lines[i]))
                            if not got:
                                if nwarnings() != nw:
                                    refused += 1
                                else:
                                    unmatched += 1
                                    unmatched_bytes += g
                        fast_unmapped += got
                        if got:
                            unmaps[iova] = (lines[i], stamps[i],
                                            names[devs[i]], got)
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
        self.mapped, self.peak = mapped, peak
        if peak_at >= 0:
            self.peak_line = lines[peak_at]
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

