"""The system: IOMMU API with gather, strict and lazy modes, the SMMUv3
driver's TLB maintenance, the SMMU's TLB and command queue, and a DMA device.

Example: the seed thread's case, ``iommu_unmap_fast`` of one page inside a
2 MiB block, and a device access before the caller syncs::

    >>> from iommu_viz import Simulation, SZ_2M, SZ_4K
    >>> sim = Simulation(kernel="v5.4")
    >>> sim.map(0x40000000, 0x80000000, SZ_2M)
    2097152
    >>> sim.access(0x40001000).outcome          # fills the TLB with the block
    'translated'
    >>> g = sim.new_gather()
    >>> sim.unmap_fast(0x40001000, SZ_4K, g)
    4096
    >>> a = sim.access(0x40001000)
    >>> a.outcome, sorted(a.allowed)            # the old block is still cached
    ('stale', ['fault', 'stale'])
    >>> sim.iotlb_sync(g)
    >>> sim.access(0x40001000).outcome
    'fault'
"""

from __future__ import annotations

from dataclasses import dataclass

from ..pgtable.common import (
    IOMMU_READ, IOMMU_WRITE, SZ_4K, FlushOps, PgtableError, check_kernel,
    era_at_least, fmt_size, short_size,
)
from ..pgtable.lpae import PTE_NT, LpaeTable
from .pgsize import iommu_pgsize
from .smmu import PERSONALITIES, LiveEntry, LiveWalk, pick, tlbi_matches
from .trace import (
    Command, Event, FqEntry, GatherState, Hazard, State, TlbEntry,
    WalkCacheEntry,
)

ULONG_MAX = (1 << 64) - 1
CALLERS = {
    "raw": "a raw IOMMU API user (GPU, SVA): may unmap any range",
    "dma": "dma-iommu: unmaps whole buffers it mapped",
    "vfio": "VFIO type1: refuses an unmap that would split one of its "
            "mappings (vfio_dma_do_unmap, -EINVAL)",
}


class ApiError(Exception):
    """An IOMMU API call refused its input, with the kernel's errno name.

    The run is unchanged when this is raised.
    """

    def __init__(self, errno: str, message: str):
        super().__init__(f"{message} (-{errno})")
        self.errno = errno
        self.message = message


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


@dataclass(frozen=True)
class Access:
    """The result of one DMA access.

    ``outcome`` is what the chosen hardware personality did; ``allowed`` the
    set of outcome names the architecture permits at this moment;
    ``options`` each permitted ``(outcome, paddr, source)``; ``paddr`` the
    physical address reached (None on fault or conflict).
    """

    iova: int
    write: bool
    outcome: str
    paddr: int | None
    allowed: frozenset
    options: tuple
    step: int
    source: str

    def __str__(self):
        where = f" -> 0x{self.paddr:x}" if self.paddr is not None else ""
        return (f"{'write' if self.write else 'read'} 0x{self.iova:x}: "
                f"{self.outcome}{where} (allowed: "
                + ", ".join(sorted(self.allowed)) + ")")


class _Driver(FlushOps):
    """The arm-smmu-v3 driver's io-pgtable callbacks for one domain.

    v4.20: arm_smmu_tlb_inv_context, arm_smmu_tlb_inv_range_nosync,
    arm_smmu_tlb_sync. v5.4+: arm_smmu_tlb_inv_walk / _leaf (inv_range plus
    sync), arm_smmu_tlb_inv_page_nosync (gather only).
    """

    def __init__(self, sim):
        self.sim = sim

    def tlb_flush_all(self):
        self.sim._inv_context("arm_smmu_tlb_inv_context")

    def tlb_flush_walk(self, iova, size, granule):
        self.sim._inv_range(iova, size, granule, False, "arm_smmu_tlb_inv_walk")

    def tlb_flush_leaf(self, iova, size, granule):
        self.sim._inv_range(iova, size, granule, True, "arm_smmu_tlb_inv_leaf")

    def tlb_add_page(self, gather, iova, granule):
        self.sim._add_page(gather, iova, granule)

    def tlb_add_flush(self, iova, size, granule, leaf):
        self.sim._issue_tlbi_range(iova, size, granule, leaf,
                                   "arm_smmu_tlb_inv_range_nosync", sync=False)

    def tlb_sync(self):
        self.sim._cmd_sync("arm_smmu_tlb_sync")


class Simulation:
    """An SMMUv3 system running one stage-1 domain for one device.

    Parameters (kernel eras and hardware options):

    ``fmt``           ``"lpae"`` (or ``"v7s"`` when that format is present)
    ``granule``       translation granule, 4K/16K/64K
    ``ias``           input address size in bits
    ``kernel``        ``"v4.20"``, ``"v5.4"``, ``"v6.12"`` or ``"v6.13"``
    ``strict``        ``False`` for lazy mode (``iommu.strict=0``): leaf
                      invalidation is left to the flush queue
    ``bbml``          SMMU_IDR3.BBML, 0, 1 or 2
    ``personality``   ``"typical"``, ``"adversarial"`` or ``"coherent"``
    ``tlb_entries``   TLB capacity (least recently used entry evicted);
                      default 64, or 256 for the coherent personality
    ``tlb_replacement`` ``"lru"`` (least recently used) or ``"fifo"``
                      (oldest fill) picks the entry a full TLB evicts
    ``walk_cache``    whether table descriptors are cached. Walk-cache
                      entries are filled by walks, removed by Leaf=0 and
                      ASID invalidations, kept by Leaf=1 ones, and shown;
                      walks themselves always read the tables in memory,
                      so a walk never follows a cached pointer into a
                      freed table (Linux frees tables only after a
                      synchronous walk flush, so it cannot arise here)
    ``ttl_hints``     the SMMU has range invalidation (RIL) and honours
                      strictly the TTL hint the driver derives from the
                      granule (driver code of v5.7+, so the v6.12 and
                      v6.13 eras; v4.20 and v5.4 drivers set no TTL)
    ``caller``        ``"raw"``, ``"dma"`` or ``"vfio"`` (see CALLERS)
    ``split_sync``    override the era: the split invalidates and syncs on
                      its own (True is the v4.20 behaviour)
    ``split_nt``      the split follows the BBML1 nT sequence (an
                      experiment: no kernel does this); with ``bbml=1`` a
                      cached nT block then cannot conflict with a new page
    ``deferred_gather`` False: each page added to a gather is invalidated
                      and synced at once instead of deferred
    ``fq_size``, ``fq_timeout_ms`` the flush queue (256 slots, 10 ms)

    Every format is driven with SMMUv3-style commands. The v7s format is
    only used with SMMUv1/v2 (arm-smmu.c) and non-Arm IOMMUs, whose drivers
    invalidate through registers (TLBIVA/TLBIVAL then TLBSYNC); read the
    commands of a v7s run as those, with no range or TTL fields.
    """

    def __init__(self, fmt="lpae", granule=SZ_4K, ias=48, kernel="v5.4",
                 strict=True, bbml=0, personality="typical", tlb_entries=None,
                 walk_cache=True, ttl_hints=True, caller="raw",
                 tlb_replacement="lru", split_nt=False,
                 split_sync=None, deferred_gather=True, asid=1,
                 fq_size=256, fq_timeout_ms=10, oas=48):
        check_kernel(kernel)
        if personality not in PERSONALITIES:
            raise ValueError(f"personality {personality!r} is not one of "
                             + ", ".join(PERSONALITIES))
        if bbml not in (0, 1, 2):
            raise ValueError(f"bbml {bbml!r} must be 0, 1 or 2 (SMMU_IDR3.BBML)")
        if caller not in CALLERS:
            raise ValueError(f"caller {caller!r} is not one of "
                             + ", ".join(CALLERS))
        if tlb_entries is None:
            # QEMU's IOTLB holds SMMU_IOTLB_MAX_SIZE (256) entries
            tlb_entries = 256 if personality == "coherent" else 64
        if not isinstance(tlb_entries, int) or tlb_entries < 1:
            raise ValueError(f"tlb_entries {tlb_entries!r} must be at least 1")
        if tlb_replacement not in ("lru", "fifo"):
            raise ValueError(f"tlb_replacement {tlb_replacement!r} must be "
                             "'lru' or 'fifo'")
        if fq_size < 2 or fq_timeout_ms <= 0:
            raise ValueError("the flush queue needs at least 2 slots and a "
                             "positive timeout")
        if fmt == "v7s":
            # the drivers that use v7s (arm-smmu.c for SMMUv1/v2, MediaTek,
            # Renesas) have no range invalidation, hence no TTL hints; the
            # format translates 32-bit input addresses
            ttl_hints = False
            ias = 32
        self.config = dict(fmt=fmt, granule=granule, ias=ias, kernel=kernel,
                           strict=strict, bbml=bbml, personality=personality,
                           tlb_entries=tlb_entries, walk_cache=walk_cache,
                           tlb_replacement=tlb_replacement,
                           split_nt=split_nt,
                           ttl_hints=ttl_hints, caller=caller,
                           split_sync=split_sync,
                           deferred_gather=deferred_gather, asid=asid,
                           fq_size=fq_size, fq_timeout_ms=fq_timeout_ms,
                           oas=oas)
        self.kernel = kernel
        self.strict = strict
        self.bbml = bbml
        self.personality = personality
        self.caller = caller
        self.asid = asid
        self.deferred_gather = deferred_gather
        self.coherent = personality == "coherent"
        self.tlb_entries = tlb_entries
        self.walk_cache_on = walk_cache and not self.coherent
        self.tlb_replacement = tlb_replacement
        # the driver sets TTL only with range invalidation (v5.7, 6a481a95d4c1)
        self.ttl_hints = ttl_hints and era_at_least(kernel, (5, 7))
        self.fq_size = fq_size
        self.fq_timeout_us = int(fq_timeout_ms * 1000)

        self.events: list[Event] = []
        self.states: list[State] = []
        self.ops: list[dict] = []
        self.accesses: list[Access] = []
        self.now_us = 0
        self._op = -1
        self._gen = 0
        self._stale_cache: dict = {}
        self._tlb: list[LiveEntry] = []
        self._walks: list[LiveWalk] = []
        self._pending: list[Command] = []
        self._cmd_seq = 0
        self._fq: list[FqEntry] = []
        self._fq_deadline: int | None = None
        self._gathers: dict[int, Gather] = {}
        self._nt_refetch: int | None = None
        self._next_gather = 0
        self._buffers: dict[int, int] = {}
        self._recording = True

        driver = _Driver(self)
        self._recording = False     # the pgd's allocation is part of init
        non_strict = (not strict) and not era_at_least(kernel, (5, 15))
        if fmt == "lpae":
            self.pt = LpaeTable(granule=granule, ias=ias, oas=oas, stage=1,
                                kernel=kernel, tlb=driver,
                                non_strict=non_strict, trace=self._pt_trace,
                                split_sync=split_sync, split_nt=split_nt)
        elif fmt == "v7s":
            try:
                from ..pgtable.v7s import V7sTable
            except ImportError as e:  # pragma: no cover - format not built
                raise ValueError("fmt 'v7s' is not available in this build") from e
            if split_nt:
                raise ValueError("split_nt: the nT bit is an LPAE block "
                                 "descriptor bit; v7s has none")
            self.pt = V7sTable(kernel=kernel, tlb=driver,
                               non_strict=non_strict, trace=self._pt_trace,
                               split_sync=split_sync)
        else:
            raise ValueError(f"fmt {fmt!r} must be 'lpae' or 'v7s'")
        self._recording = True
        self.granule = self.pt.granule
        self._tg = (self.pt.pgsize_bitmap & -self.pt.pgsize_bitmap).bit_length() - 1
        self._emit("cpu", "init", "arm_smmu_domain_finalise",
                   f"domain ready: {fmt.upper()} {short_size(self.granule)} "
                   f"granule, {self.pt.levels} levels, kernel {kernel}, "
                   f"{'strict' if strict else 'lazy'}, BBML{bbml}, "
                   f"{personality} SMMU")

    # ================================================================ recording
    def _emit(self, actor, kind, func, text, **detail):
        if not self._recording:
            return
        ev = Event(len(self.events), self.now_us, self._op, actor, kind, func,
                   text, detail)
        self.events.append(ev)
        self.states.append(self._state(ev.step))

    def _state(self, step):
        snap = self.pt.snapshot()
        tlb = tuple(self._entry_state(e) for e in self._tlb)
        walks = tuple(self._walk_state(w) for w in self._walks)
        hazards = self._hazards(tlb, walks)
        return State(step, self.now_us, snap, tlb, walks, tuple(self._pending),
                     tuple(self._fq),
                     tuple(g.state() for g in self._gathers.values() if not g.empty),
                     hazards, self._fq_deadline)

    def _pt_trace(self, func, kind, **d):
        self._gen += 1
        if kind == "pte_write" and d["new"] & PTE_NT and self.pt.fmt == "lpae":
            # the nT step of a BBML1 split: the adversarial SMMU will cache
            # the nT block again as soon as the old entries are gone
            self._nt_refetch = d["iova"]
        if kind == "pte_write":
            lvl = d["level"]
            new = d["new"]
            info = self.pt.describe(lvl, new) if new else None
            what = (f"{d['count']} entries" if d["count"] > 1 else "entry")
            if not new:
                text = (f"clear {what} [{d['index']}] of L{lvl} table "
                        f"0x{d['table']:x} (iova 0x{d['iova']:x})")
            elif info.kind == "table":
                text = (f"install table 0x{info.addr:x} at L{lvl} [{d['index']}]"
                        f" (iova 0x{d['iova']:x}), replacing "
                        f"descriptor 0x{d['old']:x}" if d["old"] else
                        f"install table 0x{info.addr:x} at L{lvl} [{d['index']}]"
                        f" (iova 0x{d['iova']:x})")
            else:
                text = (f"write {what} [{d['index']}] of L{lvl} table: "
                        f"{info.kind} 0x{d['iova']:x} -> 0x{info.addr:x}")
            self._emit("cpu", "pte_write", func, text, **d)
        elif kind == "table_fill":
            skip = d["skipped"]
            text = (f"fill new L{d['level']} table 0x{d['table']:x} with "
                    f"{d['count'] - (skip >= 0)} entries from the block"
                    + (f", leaving [{skip}] empty" if skip >= 0 else ""))
            self._emit("cpu", "table_fill", func, text, **d)
        elif kind == "table_alloc":
            self._emit("cpu", "table_alloc", func,
                       f"allocate L{d['level']} table at 0x{d['table']:x}", **d)
        elif kind == "table_free":
            self._emit("cpu", "table_free", func,
                       f"free L{d['level']} table 0x{d['table']:x}", **d)
        elif kind == "warn":
            self._emit("cpu", "warn", func, f"WARNING: {d['message']}", **d)

    # ================================================================ TLB state
    def _entry_stale_ranges(self, e: LiveEntry):
        """The parts of entry ``e`` that no longer match the tables."""
        key = (e.key(), self._gen)
        hit = self._stale_cache.get(key)
        if hit is not None:
            return hit
        out = []
        a = e.iova
        end = e.iova + e.size
        pt = self.pt
        while a < end:
            tr = pt.translate(a)
            if tr is None:
                step = pt.walk(a)[-1].size
                step = min(step - (a & (step - 1)), end - a)
                bad = True
            else:
                step = min(tr.iova + tr.size, end) - a
                bad = (tr.paddr + (a - tr.iova) != e.paddr + (a - e.iova)
                       or tr.prot != e.prot)
            if bad:
                if out and out[-1][0] + out[-1][1] == a:
                    out[-1] = (out[-1][0], out[-1][1] + step)
                else:
                    out.append((a, step))
            a += step
        res = tuple(out)
        if len(self._stale_cache) > 4096:
            self._stale_cache.clear()
        self._stale_cache[key] = res
        return res

    def _pending_for(self, e):
        for c in self._pending:
            if c.op == "CMD_TLBI_NH_ASID" and c.get("asid") == e.asid:
                return True
            if c.op == "CMD_TLBI_NH_VA" and tlbi_matches(dict(c.fields), e, self._tg,
                                                         self.ttl_hints):
                return True
        return False

    def _entry_state(self, e):
        return TlbEntry(e.asid, e.iova, e.size, e.level, e.paddr, e.prot, e.pte,
                        e.inserted, e.speculative, self._entry_stale_ranges(e),
                        self._pending_for(e))

    def _walk_stale(self, w):
        tr = self.pt.walk(w.iova)
        for s in tr:
            if s.level == w.level:
                return not (s.kind == "table" and
                            self.pt.describe(s.level, s.pte).addr == w.table)
        return True

    def _walk_state(self, w):
        pending = any(c.op == "CMD_TLBI_NH_ASID" or (
            c.op == "CMD_TLBI_NH_VA" and not c.get("leaf")
            and w.iova <= c.get("addr") < w.iova + w.size) for c in self._pending)
        return WalkCacheEntry(w.asid, w.iova, w.size, w.level, w.table,
                              self._walk_stale(w), pending)

    def _conflict_allowed(self, entries):
        """Whether overlapping ``entries`` may raise a TLB conflict:
        SMMU_IDR3.BBML 0 always, BBML 1 unless one came from a block marked
        nT (the level-1 sequence), BBML 2 never; QEMU never reports one."""
        if self.coherent or self.bbml == 2:
            return False
        if self.bbml == 1 and self.pt.fmt == "lpae" and \
                any(e.pte & PTE_NT for e in entries):
            return False
        return True

    def _hazards(self, tlb, walks):
        out = []
        for e in tlb:
            for (a, s) in e.stale_ranges:
                out.append(Hazard(
                    "stale", a, s,
                    f"TLB holds {short_size(e.size)} "
                    f"{'block' if e.size > self.granule else 'page'} 0x{e.iova:x} -> "
                    f"0x{e.paddr:x}; tables no longer map 0x{a:x} that way"))
        if not (self.bbml == 2 or self.coherent):
            for i, e in enumerate(tlb):
                for f in tlb[i + 1:]:
                    if e.asid == f.asid and e.iova < f.iova + f.size and \
                            f.iova < e.iova + e.size and \
                            (e.size, e.paddr) != (f.size, f.paddr) and \
                            self._conflict_allowed((e, f)):
                        lo = max(e.iova, f.iova)
                        hi = min(e.iova + e.size, f.iova + f.size)
                        out.append(Hazard(
                            "conflict", lo, hi - lo,
                            f"{short_size(e.size)} and {short_size(f.size)} "
                            f"entries both translate 0x{lo:x} (BBML{self.bbml})"))
        for w in walks:
            if w.stale:
                out.append(Hazard("stale", w.iova, w.size,
                                  f"walk cache points at freed table 0x{w.table:x}"))
        return tuple(out)

    # ================================================================ commands
    def _issue(self, op, func, **fields):
        self._cmd_seq += 1
        cmd = Command(self._cmd_seq, op, tuple(fields.items()), len(self.events))
        # QEMU (smmuv3_cmdq_consume on the CMDQ_PROD write) carries a
        # command out as it is queued: it is never recorded as pending
        if not self.coherent:
            self._pending.append(cmd)
        self._emit("cmdq", "cmd_issue", func, f"queue {cmd}", cmd=str(cmd),
                   op=op, fields=dict(fields))
        if self.coherent:
            self._execute(cmd)

    def _execute(self, cmd):
        """Carry out one invalidation command on the TLB and walk cache."""
        f = dict(cmd.fields)
        if cmd.op in ("CMD_TLBI_NH_ASID",):
            gone = [e for e in self._tlb if e.asid == f["asid"]]
            walks = [w for w in self._walks if w.asid == f["asid"]]
        else:
            gone = [e for e in self._tlb
                    if tlbi_matches(f, e, self._tg, self.ttl_hints)]
            if f.get("leaf"):
                walks = []
            else:
                addr = f["addr"]
                span = ((f.get("num", 0) + 1) << (f.get("scale", 0) + self._tg)
                        if f.get("tg") else 1)
                walks = [w for w in self._walks if w.asid == f.get("asid")
                         and w.iova < addr + span and addr < w.iova + w.size]
            if f.get("ttl") and self.ttl_hints:
                survivors = [e for e in self._tlb if e not in gone and
                             tlbi_matches(dict(f, ttl=0), e, self._tg, False)]
                for e in survivors:
                    self._emit("tlb", "ttl_miss", "SMMUv3 TLBI TTL rule",
                               f"TTL={f['ttl']} names level {f['ttl']}: "
                               f"{short_size(e.size)} entry at level {e.level}"
                               f" for 0x{e.iova:x} need not be removed, stays",
                               iova=e.iova, size=e.size, level=e.level)
        for e in gone:
            self._tlb.remove(e)
        for w in walks:
            self._walks.remove(w)
        if gone or walks:
            what = ", ".join(f"{short_size(e.size)} 0x{e.iova:x}" for e in gone)
            if walks:
                what += (", " if what else "") + f"{len(walks)} walk-cache"
            self._emit("tlb", "invalidate", "SMMU executes " + cmd.op,
                       f"{cmd.op.replace('CMD_', '')} removes {what}",
                       removed=[(e.iova, e.size, e.level) for e in gone],
                       walks=len(walks))

    def _cmd_sync(self, func):
        """Issue CMD_SYNC and wait for it: every earlier command is then
        complete (SMMUv3 4.7.3). Models arm_smmu_cmdq_issue_sync."""
        self._cmd_seq += 1
        self._emit("cmdq", "cmd_issue", func, "queue CMD_SYNC", cmd="CMD_SYNC",
                   op="CMD_SYNC", fields={})
        done = list(self._pending)
        self._pending.clear()
        for c in done:
            self._execute(c)
        self._emit("cmdq", "sync_done", func,
                   f"CMD_SYNC complete: {len(done)} earlier command(s) done",
                   completed=len(done))
        if self._nt_refetch is not None:
            iova, self._nt_refetch = self._nt_refetch, None
            tr = self.pt.translate(iova)
            if self.personality == "adversarial" and tr is not None:
                # a valid translation may be cached at any time: the worst
                # case refetches the nT block before it is replaced
                self._fill(tr, speculative=True)

    def _tlbi_va_fields(self, iova, size, granule, leaf):
        """The CMD_TLBI_NH_VA operands for a range, as
        arm_smmu_tlb_inv_range (v5.4) / __arm_smmu_tlb_inv_range (v5.7+)
        builds them; with range invalidation TG, TTL, NUM and SCALE."""
        cmds = []
        end = iova + size
        if self.ttl_hints:
            tg = self._tg
            tg_field = (tg - 10) // 2
            glog = granule.bit_length() - 1
            ttl = 4 - ((glog - 3) // (tg - 3))
            if not leaf and era_at_least(self.kernel, (6, 6)):
                ttl = 0       # 6833b8f2e199: TTL only for leaf invalidations
            num_pages = size >> tg
            if not leaf and era_at_least(self.kernel, (6, 6)) and \
                    (num_pages & 31) == 1:
                num_pages += 1   # eb6c97647be2: never TTL=NUM=SCALE=0
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

    def _issue_tlbi_range(self, iova, size, granule, leaf, func, sync=True):
        for f in self._tlbi_va_fields(iova, size, granule, leaf):
            self._issue("CMD_TLBI_NH_VA", func, **f)
        if sync:
            self._cmd_sync(func)

    def _inv_range(self, iova, size, granule, leaf, func):
        self._issue_tlbi_range(iova, size, granule, leaf, func, sync=True)

    def _inv_context(self, func):
        self._issue("CMD_TLBI_NH_ASID", func, asid=self.asid)
        self._cmd_sync(func)

    def _add_page(self, gather, iova, granule):
        """iommu_iotlb_gather_add_page (v5.4; v5.13+ the same rule written
        with iommu_iotlb_gather_is_disjoint): a page of another size, or
        one disjoint from the gathered range, forces a sync first."""
        if not self.deferred_gather:
            self._emit("cpu", "add_page", "arm_smmu_tlb_inv_page_nosync",
                       f"gather deferral off: invalidate 0x{iova:x} now")
            self._inv_range(iova, granule, granule, True,
                            "arm_smmu_tlb_inv_range")
            return
        if gather is None:
            raise AssertionError("tlb_add_page without a gather")
        end = iova + granule
        if gather.pgsize != granule or end < gather.start or iova > gather.end:
            if gather.pgsize:
                self._emit("cpu", "gather_sync", "iommu_iotlb_gather_add_page",
                           f"page 0x{iova:x} ({short_size(granule)}) does not "
                           "fit the gather: sync it first")
                self._iotlb_sync(gather, "iommu_iotlb_gather_add_page")
            gather.pgsize = granule
        gather.end = max(gather.end, end)
        gather.start = min(gather.start, iova)
        self._emit("cpu", "add_page", "iommu_iotlb_gather_add_page",
                   f"gather #{gather.id} += 0x{iova:x} ({short_size(granule)})"
                   f": now 0x{gather.start:x}..0x{gather.end:x}",
                   gather=gather.id, iova=iova, size=granule)

    def _iotlb_sync(self, gather, func):
        """The driver's iotlb_sync: v4.20 only waits (the TLBIs were issued
        at unmap), v5.4+ invalidates the gathered range then syncs
        (arm_smmu_iotlb_sync); then iommu_iotlb_gather_init."""
        if self.kernel == "v4.20":
            self._cmd_sync("arm_smmu_iotlb_sync")
        elif not gather.empty:
            self._inv_range(gather.start, gather.end - gather.start,
                            gather.pgsize, True, "arm_smmu_iotlb_sync")
        gather.reset()

    # ================================================================ API
    def _begin(self, op: dict):
        self._op = len(self.ops)
        self.ops.append(op)

    def _check_addr(self, name, value):
        if not isinstance(value, int) or value < 0:
            raise ApiError("EINVAL", f"{name} {value!r} must be a "
                           "non-negative integer")

    def _min_pagesz(self):
        return self.pt.pgsize_bitmap & -self.pt.pgsize_bitmap

    def map(self, iova: int, paddr: int, size: int,
            prot: int = IOMMU_READ | IOMMU_WRITE) -> int:
        """iommu_map: split ``size`` into the largest page sizes alignment
        allows (iommu_pgsize) and map each (v4.20 .. v6.13). Returns the
        bytes mapped; raises :class:`ApiError` and changes nothing when
        the range is unaligned, out of range or already mapped."""
        for n, v in (("iova", iova), ("paddr", paddr), ("size", size)):
            self._check_addr(n, v)
        m = self._min_pagesz()
        if not size or (iova | paddr | size) & (m - 1):
            raise ApiError("EINVAL", f"unaligned: iova 0x{iova:x} pa "
                           f"0x{paddr:x} size 0x{size:x}: all must be "
                           f"multiples of the {fmt_size(m)} minimum page size")
        pieces = self._pieces(iova, paddr, size)
        try:
            for (i, p, pg, cnt) in pieces:
                self.pt._check_iova(i, pg, cnt)
                if (p + pg * cnt - 1) >> self.pt.oas:
                    raise PgtableError("ERANGE", f"paddr 0x{p:x} is beyond the "
                                       f"{self.pt.oas}-bit output address size")
                self.pt._check_free(i, pg, cnt)
        except PgtableError as e:
            raise ApiError(e.errno, e.message) from None
        self._begin(dict(op="map", iova=iova, paddr=paddr, size=size, prot=prot))
        self._emit("cpu", "call", "iommu_map",
                   f"iommu_map(iova=0x{iova:x}, paddr=0x{paddr:x}, "
                   f"size={fmt_size(size)})", iova=iova, paddr=paddr, size=size)
        done = 0
        for (i, p, pg, cnt) in pieces:
            done += self.pt.map(i, p, pg, prot, cnt)
        self._buffers[iova] = size
        return done

    def _pieces(self, iova, paddr, size):
        """(iova, paddr, pgsize, count) runs as iommu_pgsize picks them."""
        out = []
        done = 0
        bitmap = self.pt.pgsize_bitmap
        while done < size:
            merge = (iova + done) | (paddr + done if paddr is not None else 0)
            pg = iommu_pgsize(bitmap, merge, size - done)
            if out and out[-1][2] == pg and era_at_least(self.kernel, (5, 14)):
                i, p, _, c = out[-1]
                out[-1] = (i, p, pg, c + 1)
            else:
                out.append((iova + done, None if paddr is None else paddr + done,
                            pg, 1))
            done += pg
        return out

    def _check_unmap(self, iova, size):
        self._check_addr("iova", iova)
        self._check_addr("size", size)
        m = self._min_pagesz()
        if not size or (iova | size) & (m - 1):
            raise ApiError("EINVAL", f"unaligned: iova 0x{iova:x} size "
                           f"0x{size:x}: both must be multiples of the "
                           f"{fmt_size(m)} minimum page size")
        if (iova + size - 1) >> self.pt.ias:
            raise ApiError("ERANGE", f"iova range 0x{iova:x}..0x{iova + size - 1:x}"
                           f" is beyond the {self.pt.ias}-bit input address size")
        end = iova + size
        if self.caller == "vfio":
            for b, s in self._buffers.items():
                if (b < iova < b + s) or (b < end < b + s):
                    raise ApiError(
                        "EINVAL", f"VFIO refuses to unmap 0x{iova:x}..0x{end - 1:x}:"
                        f" it would split its mapping 0x{b:x}..0x{b + s - 1:x} "
                        "(vfio_dma_do_unmap)")
        elif self.caller == "dma":
            if self._buffers.get(iova) != size:
                raise ApiError(
                    "EINVAL", f"the DMA API unmaps whole buffers: no buffer of "
                    f"{fmt_size(size)} was mapped at 0x{iova:x}")

    def _unmap_pieces(self, iova, size, gather, func):
        """__iommu_unmap: unmap page by page until ``size`` is done or
        nothing is mapped (v4.20 .. v6.13)."""
        unmapped = 0
        bitmap = self.pt.pgsize_bitmap
        while unmapped < size:
            a = iova + unmapped
            pg = iommu_pgsize(bitmap, a, size - unmapped)
            count = 1
            if era_at_least(self.kernel, (5, 14)):
                # iommu_pgsize (v5.14+) also counts pages up to the next
                # larger page size's alignment
                bigger = bitmap & ~((pg << 1) - 1)
                limit = size - unmapped
                if bigger:
                    nxt = bigger & -bigger
                    limit = min(limit, ((a | (nxt - 1)) + 1) - a)
                count = max(1, limit // pg)
            got = self.pt.unmap(a, pg, gather, count)
            if not got:
                break
            unmapped += got
        return unmapped

    def _would_unmap(self, iova, size):
        return any(self.pt.translate(a) is not None
                   for a in range(iova, iova + size, self._min_pagesz())) \
            if size // self._min_pagesz() <= 4096 else True

    def unmap(self, iova: int, size: int) -> int:
        """Unmap and make it stick the way the mode does.

        Strict: iommu_unmap (__iommu_unmap then iommu_iotlb_sync). Lazy:
        the dma-iommu path (__iommu_dma_unmap: iommu_unmap_fast with a
        queued gather, no sync, then the range waits in the flush queue,
        queue_iova / iommu_dma_free_iova). Returns bytes unmapped; 0 and
        no change when nothing is mapped there."""
        self._check_unmap(iova, size)
        if not self._would_unmap(iova, size):
            return 0
        self._begin(dict(op="unmap", iova=iova, size=size))
        func = "iommu_unmap" if self.strict else "__iommu_dma_unmap"
        self._emit("cpu", "call", func,
                   f"{func}(iova=0x{iova:x}, size={fmt_size(size)})",
                   iova=iova, size=size)
        g = Gather(self, -1, queued=not self.strict)
        self._gathers[-1] = g
        try:
            got = self._unmap_pieces(iova, size, g, func)
            if self.strict:
                self._iotlb_sync(g, "iommu_iotlb_sync")
            else:
                if not g.empty:
                    self._emit("cpu", "gather_drop", "__iommu_dma_unmap",
                               f"lazy: gather 0x{g.start:x}..0x{g.end:x} left "
                               "to the flush queue, not synced")
                self._fq_add(iova, size)
        finally:
            del self._gathers[-1]
        if got >= size:
            self._buffers.pop(iova, None)
        self._emit("cpu", "return", func, f"{func} returns 0x{got:x}",
                   unmapped=got)
        return got

    def new_gather(self) -> Gather:
        """iommu_iotlb_gather_init: an empty gather for unmap_fast."""
        self._next_gather += 1
        g = Gather(self, self._next_gather)
        self._gathers[g.id] = g
        self._begin(dict(op="new_gather", id=g.id))
        self._emit("cpu", "gather_init", "iommu_iotlb_gather_init",
                   f"new gather #{g.id}", gather=g.id)
        return g

    def _own_gather(self, g):
        if not isinstance(g, Gather) or g._owner is not self or \
                self._gathers.get(g.id) is not g:
            raise ApiError("EINVAL", f"gather {g!r} does not belong to this "
                           "simulation; make one with new_gather()")

    def unmap_fast(self, iova: int, size: int, gather: Gather) -> int:
        """iommu_unmap_fast: unmap, deferring leaf invalidation into
        ``gather``; nothing is guaranteed until iotlb_sync(gather)
        (v4.20: TLBIs issued, no CMD_SYNC; v5.4+: nothing issued)."""
        self._own_gather(gather)
        self._check_unmap(iova, size)
        if not self._would_unmap(iova, size):
            return 0
        self._begin(dict(op="unmap_fast", iova=iova, size=size, gather=gather.id))
        self._emit("cpu", "call", "iommu_unmap_fast",
                   f"iommu_unmap_fast(iova=0x{iova:x}, size={fmt_size(size)}, "
                   f"gather #{gather.id})", iova=iova, size=size)
        got = self._unmap_pieces(iova, size, gather, "iommu_unmap_fast")
        if got >= size:
            self._buffers.pop(iova, None)
        self._emit("cpu", "return", "iommu_unmap_fast",
                   f"iommu_unmap_fast returns 0x{got:x}; no sync yet",
                   unmapped=got)
        return got

    def iotlb_sync(self, gather: Gather) -> None:
        """iommu_iotlb_sync (iommu_tlb_sync in v5.4): complete what
        ``gather`` deferred."""
        self._own_gather(gather)
        self._begin(dict(op="iotlb_sync", gather=gather.id))
        self._emit("cpu", "call", "iommu_iotlb_sync",
                   f"iommu_iotlb_sync(gather #{gather.id})", gather=gather.id)
        self._iotlb_sync(gather, "iommu_iotlb_sync")

    def flush_all(self) -> None:
        """iommu_flush_iotlb_all: invalidate the whole domain."""
        self._begin(dict(op="flush_all"))
        self._emit("cpu", "call", "iommu_flush_iotlb_all",
                   "iommu_flush_iotlb_all()")
        self._inv_context("arm_smmu_flush_iotlb_all")

    # ================================================================ flush queue
    def _fq_add(self, iova, size):
        """queue_iova (iova.c v4.20/v5.4; dma-iommu.c v5.17+): a ring of
        ``fq_size`` slots holds ``fq_size - 1`` entries; a full ring is
        flushed first; the first entry starts the timeout."""
        if len(self._fq) >= self.fq_size - 1:
            self._emit("fq", "fq_full", "queue_iova",
                       f"flush queue full ({len(self._fq)} entries): flush now")
            self._fq_flush("fq_full")
        self._fq.append(FqEntry(iova, size, self.now_us))
        if self._fq_deadline is None:
            self._fq_deadline = self.now_us + self.fq_timeout_us
        self._emit("fq", "fq_add", "queue_iova",
                   f"queue iova 0x{iova:x} ({fmt_size(size)}); flush due at "
                   f"{self._fq_deadline / 1000:.3f} ms", iova=iova, size=size)

    def _fq_flush(self, why):
        """fq_flush_iotlb + fq_ring_free: flush the whole IOTLB, then the
        queued IOVAs (and the pages behind them) are free. Only the timer
        (fq_flush_timeout) clears fq_timer_on; a full-ring flush in
        queue_iova leaves the armed timer running (iova.c v4.20/v5.4,
        dma-iommu.c v5.17+)."""
        self._inv_context("arm_smmu_flush_iotlb_all")
        n = len(self._fq)
        self._fq.clear()
        if why == "timeout":
            self._fq_deadline = None
        self._emit("fq", "fq_free", "fq_ring_free",
                   f"{n} queued range(s) freed after the flush ({why})",
                   freed=n)

    def advance(self, ms) -> None:
        """Let ``ms`` milliseconds of logical time pass; the flush queue's
        timer (fq_flush_timeout) fires if it falls due."""
        if not isinstance(ms, (int, float)) or ms < 0:
            raise ValueError(f"advance({ms!r}): time cannot go backwards or be "
                             "other than a number of milliseconds >= 0")
        target = self.now_us + int(round(ms * 1000))
        self._begin(dict(op="advance", ms=ms))
        if self._fq_deadline is not None and self._fq_deadline <= target:
            self.now_us = self._fq_deadline
            self._emit("fq", "fq_timeout", "fq_flush_timeout",
                       f"flush-queue timer fires at {self.now_us / 1000:.3f} ms")
            self._fq_flush("timeout")
        self.now_us = target
        self._emit("cpu", "advance", "time", f"time is now "
                   f"{self.now_us / 1000:.3f} ms")

    # ================================================================ device
    def _walk_option(self, iova, write):
        tr = self.pt.translate(iova)
        if tr is None:
            return ("fault", None, "walk"), None
        if write and not tr.prot & IOMMU_WRITE:
            return ("fault", None, "walk"), None
        return ("translated", tr.paddr + (iova - tr.iova), "walk"), tr

    def _options(self, iova, write):
        """Every outcome the architecture allows for an access now."""
        truth, tr = self._walk_option(iova, write)
        matches = [e for e in self._tlb if e.asid == self.asid and e.covers(iova)]
        matches.sort(key=lambda e: (e.level, e.inserted))
        opts = []
        for e in matches:
            pa = e.paddr + (iova - e.iova)
            if write and not e.prot & IOMMU_WRITE:
                o = "fault"
                pa = None
            elif truth[0] == "translated" and truth[1] == pa:
                o = "translated"
            else:
                o = "stale"
            opts.append((o, pa, f"tlb:{short_size(e.size)}@0x{e.iova:x}"))
        distinct = {(e.size, e.paddr) for e in matches}
        if len(distinct) > 1 and self._conflict_allowed(matches):
            opts.append(("conflict", None, "tlb:multi-hit"))
        # a TLB may drop any entry at any time (or never filled it), and
        # QEMU-like coherence has nothing pending: the walk result is
        # allowed unless a cached entry must be used (coherent model)
        if not matches or not self.coherent:
            opts.append(truth)
        return opts, tr

    def access(self, iova: int, write: bool = False) -> Access:
        """A DMA access by the device through the SMMU: look up the TLB,
        walk on a miss (caching a valid result), and report the outcome
        the personality picked among those the architecture allows."""
        self._check_addr("iova", iova)
        if iova >> self.pt.ias:
            raise ApiError("ERANGE", f"iova 0x{iova:x} is beyond the "
                           f"{self.pt.ias}-bit input address size")
        self._begin(dict(op="access", iova=iova, write=bool(write)))
        opts, tr = self._options(iova, write)
        chosen = pick(opts, self.personality)
        outcome, pa, source = chosen
        allowed = frozenset(o[0] for o in opts)
        if source == "walk" and tr is not None and outcome == "translated":
            self._fill(tr, speculative=False)
        elif source.startswith("tlb:") and source != "tlb:multi-hit":
            for e in self._tlb:
                if f"tlb:{short_size(e.size)}@0x{e.iova:x}" == source:
                    e.last_used = len(self.events)
        a = Access(iova, bool(write), outcome, pa, allowed, tuple(opts),
                   len(self.events), source)
        self.accesses.append(a)
        rw = "write" if write else "read"
        where = f" -> 0x{pa:x}" if pa is not None else ""
        self._emit("device", "access", "SMMU translation",
                   f"device {rw} 0x{iova:x}: {outcome}{where} via {source} "
                   f"(allowed: {', '.join(sorted(allowed))})",
                   iova=iova, write=bool(write), outcome=outcome, paddr=pa,
                   allowed=sorted(allowed), source=source)
        return a

    def speculate(self, iova: int) -> bool:
        """The SMMU walks ``iova`` and caches a valid translation now, as it
        may at any time (SMMUv3 3.21.1: speculative fills). Returns whether
        anything was cached (faults are not cached)."""
        self._check_addr("iova", iova)
        self._begin(dict(op="speculate", iova=iova))
        tr = self.pt.translate(iova) if not iova >> self.pt.ias else None
        if tr is None:
            self._emit("tlb", "no_fill", "speculative walk",
                       f"speculative walk of 0x{iova:x} finds no valid "
                       "translation: nothing cached")
            return False
        self._fill(tr, speculative=True)
        return True

    def _fill(self, tr, speculative):
        key = (self.asid, tr.iova, tr.size, tr.level, tr.paddr, tr.prot)
        for e in self._tlb:
            if e.key() == key:
                e.last_used = len(self.events)
                return
        if len(self._tlb) >= self.tlb_entries:
            if self.coherent:
                self._tlb.clear()
                self._emit("tlb", "evict", "smmu_iotlb_insert",
                           "IOTLB full: QEMU empties it before inserting")
            else:
                key = (lambda e: e.last_used) if self.tlb_replacement == "lru" \
                    else (lambda e: e.inserted)
                victim = min(self._tlb, key=key)
                self._tlb.remove(victim)
                self._emit("tlb", "evict",
                           f"TLB replacement ({self.tlb_replacement.upper()})",
                           f"evict {short_size(victim.size)} 0x{victim.iova:x}")
        step = len(self.events)
        self._tlb.append(LiveEntry(self.asid, tr.iova, tr.size, tr.level,
                                   tr.paddr, tr.prot, tr.pte, step,
                                   speculative, step))
        if self.walk_cache_on:
            for lvl, table in zip(range(self.pt.start_level, tr.level),
                                  tr.tables[1:]):
                bs = self.pt.block_size(lvl)
                w = LiveWalk(self.asid, tr.iova & ~(bs - 1), bs, lvl, table, step)
                if all(x.key() != w.key() for x in self._walks):
                    self._walks.append(w)
        kind = "block" if tr.size > self.granule else "page"
        self._emit("tlb", "fill", "speculative walk" if speculative else
                   "SMMU table walk",
                   f"{'speculatively ' if speculative else ''}cache "
                   f"{short_size(tr.size)} {kind} 0x{tr.iova:x} -> "
                   f"0x{tr.paddr:x} (L{tr.level})",
                   iova=tr.iova, size=tr.size, level=tr.level, paddr=tr.paddr)

    # ================================================================ reading
    def state_at(self, step: int) -> State:
        """The state recorded after event ``step`` (negative counts from
        the end)."""
        if not isinstance(step, int) or not -len(self.states) <= step < len(self.states):
            raise IndexError(f"step {step!r} is outside this run's "
                             f"0..{len(self.states) - 1}")
        return self.states[step]

    @property
    def state(self) -> State:
        return self.states[-1]

    @classmethod
    def from_ops(cls, config: dict, ops: list) -> "Simulation":
        """Re-execute a recorded list of API calls on a fresh simulation."""
        sim = cls(**config)
        gathers = {}
        for op in ops:
            kind = op["op"]
            if kind == "map":
                sim.map(op["iova"], op["paddr"], op["size"], op.get("prot", 3))
            elif kind == "unmap":
                sim.unmap(op["iova"], op["size"])
            elif kind == "new_gather":
                gathers[op["id"]] = sim.new_gather()
            elif kind == "unmap_fast":
                sim.unmap_fast(op["iova"], op["size"], gathers[op["gather"]])
            elif kind == "iotlb_sync":
                sim.iotlb_sync(gathers[op["gather"]])
            elif kind == "flush_all":
                sim.flush_all()
            elif kind == "access":
                sim.access(op["iova"], op.get("write", False))
            elif kind == "speculate":
                sim.speculate(op["iova"])
            elif kind == "advance":
                sim.advance(op["ms"])
            else:
                raise ValueError(f"unknown op {kind!r} in recorded run")
        return sim

    def caption(self, step: int) -> str:
        """One line naming the kernel function that acted at ``step``."""
        ev = self.events[step]
        return f"{ev.func}: {ev.text}"

    def __str__(self):
        st = self.state
        lines = [f"Simulation({self.kernel}, "
                 f"{'strict' if self.strict else 'lazy'}, BBML{self.bbml}, "
                 f"{self.personality}): {len(self.events)} steps, "
                 f"t={st.time_us / 1000:.3f} ms",
                 f"  TLB: {len(st.tlb)} entries, "
                 f"{sum(e.stale for e in st.tlb)} stale; pending commands: "
                 f"{len(st.pending)}; flush queue: {len(st.flush_queue)}"]
        for a in self.accesses[-3:]:
            lines.append("  " + str(a))
        return "\n".join(lines)

    __repr__ = __str__

    def to_scenario(self) -> str:
        """This run as a scenario file (iommu_viz.scenarios.to_text): it
        re-executes to the same events."""
        from ..scenarios import to_text
        return to_text(self)
