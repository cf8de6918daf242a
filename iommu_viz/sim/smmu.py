"""The SMMU hardware: TLB, walk cache, command execution and the
architecture's rules on what a device access may see.

Rules modelled (Arm SMMUv3 architecture, IHI0070, sections 3.20-3.21, 4.4,
4.7, 16.2, and SMMU_IDR3.BBML):

* A TLB caches only valid translations, tagged by ASID, block-aligned input
  address, size and level; a block is one entry. Entries may be filled
  speculatively and evicted at any time.
* ``CMD_TLBI_NH_VA`` removes the ASID's entries that translate the address
  (or the range, with range invalidation); ``Leaf=1`` may leave walk-cache
  entries; a TTL hint naming another level need not remove an entry.
  ``CMD_TLBI_NH_ASID`` removes all of the ASID's entries.
* An invalidation is only guaranteed complete when a later ``CMD_SYNC``
  completes; until then an access may use the old or the new state.
* Two entries translating one address are a TLB conflict at BBML level 0;
  at level 1 unless one came from a block descriptor with the nT bit set
  (the level-1 sequence: nT, invalidate, replace); never at level 2 (old or
  new translation).
* Walks read the tables in memory, never through a cached table pointer:
  Linux frees a table only after a synchronous walk invalidation
  (``tlb_flush_walk``), so a walk-cache entry cannot lead into a freed
  table while the driver keeps that rule; a stale one is shown as a hazard.

The hardware takes work through two doors only: :meth:`Smmu.submit` and
:meth:`Smmu.sync` (the command queue, written by the driver), and
:meth:`Smmu.translate` / :meth:`Smmu.speculate` (a device's transaction, a
walk the SMMU chooses to make). It reads the page tables by walking them
(``translate``/``walk`` of the table the context descriptor points at).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..pgtable.common import IOMMU_WRITE, short_size
from ..pgtable.lpae import PTE_NT, PTE_TYPE_BLOCK, PTE_TYPE_MASK
from .trace import OUTCOMES, Command

PERSONALITIES = {
    "typical": "invalidations land at CMD_SYNC; a cached (stale) entry wins "
               "over a walk, the larger (older) entry first",
    "adversarial": "any outcome the architecture allows may happen, and the "
                   "worst one does: stale, then conflict, then fault",
    "coherent": "QEMU's SMMUv3 model: commands act when queued, no walk "
                "cache, 256 entries emptied when full, a cached block wins, "
                "never a conflict",
}


@dataclass
class LiveEntry:
    """A TLB entry as the hardware holds it (mutable, internal)."""

    asid: int
    iova: int
    size: int
    level: int
    paddr: int
    prot: int
    pte: int
    inserted: int
    speculative: bool = False
    last_used: int = 0

    def key(self):
        return (self.asid, self.iova, self.size, self.level, self.paddr,
                self.prot)

    def covers(self, iova):
        return self.iova <= iova < self.iova + self.size

    def overlaps(self, start, end):
        return self.iova < end and start < self.iova + self.size


@dataclass
class LiveWalk:
    """A walk-cache entry: the table descriptor at ``level`` for the
    region ``[iova, iova + size)`` pointed at ``table``."""

    asid: int
    iova: int
    size: int
    level: int
    table: int
    inserted: int

    def key(self):
        return (self.asid, self.iova, self.level, self.table)


def tlbi_matches(cmd_fields: dict, entry: LiveEntry, tg_shift: int,
                 ttl_hints: bool) -> bool:
    """Whether executing a ``CMD_TLBI_NH_VA`` must remove ``entry``.

    Models the SMMUv3 rule for TLBI by VA with optional range (NUM, SCALE,
    TG) and TTL: the entry must translate an address of the range, and a
    non-zero TTL naming a different level frees the SMMU from removing it.
    """
    if entry.asid != cmd_fields.get("asid", entry.asid):
        return False
    addr = cmd_fields["addr"]
    if cmd_fields.get("tg"):
        span = (cmd_fields.get("num", 0) + 1) << (cmd_fields.get("scale", 0) + tg_shift)
        if not entry.overlaps(addr, addr + span):
            return False
    elif not entry.covers(addr):
        return False
    ttl = cmd_fields.get("ttl", 0)
    if ttl and ttl_hints and ttl != entry.level:
        return False
    return True


def pick(options, personality: str):
    """Choose among the allowed ``options`` (tuples of outcome, paddr,
    source) as the personality does. ``typical`` and ``coherent`` prefer a
    cached entry (largest first, as QEMU probes levels from the top);
    ``adversarial`` the worst outcome in :data:`OUTCOMES` order."""
    if personality == "adversarial":
        rank = {o: i for i, o in enumerate(OUTCOMES)}
        return min(options, key=lambda o: (rank[o[0]], o[2]))
    cached = [o for o in options if o[2].startswith("tlb")]
    non_conflict = [o for o in cached if o[0] != "conflict"]
    if non_conflict:
        return non_conflict[0]
    walk = [o for o in options if o[2] == "walk"]
    return walk[0] if walk else options[0]



def nt_block(pte: int) -> bool:
    """Whether an LPAE descriptor is a block with the nT bit set. nT is bit
    16 of a *block* descriptor only (Arm ARM, FEAT_BBM, "Block descriptor
    nT bit"); in a page or table descriptor bit 16 is an address bit."""
    return (pte & PTE_TYPE_MASK) == PTE_TYPE_BLOCK and bool(pte & PTE_NT)

class Smmu:
    """An SMMUv3 translating one stream's stage-1 context (one ASID).

    Holds the TLB (``tlb``, :class:`LiveEntry`), the walk cache (``walks``,
    :class:`LiveWalk`) and the commands queued but not yet complete
    (``pending``). ``rec`` is the run's recorder (events go to the ``cmdq``
    and ``tlb`` lanes).
    """

    def __init__(self, cfg, rec):
        self.rec = rec
        self.asid = cfg.asid
        self.personality = cfg.personality
        self.coherent = cfg.coherent
        self.bbml = cfg.bbml
        self.capacity = cfg.tlb_entries
        self.replacement = cfg.tlb_replacement
        self.walk_cache = cfg.walk_cache and not cfg.coherent
        self.ttl_hints = cfg.ttl_in_use
        self.pt = None
        self.tg = 12
        self.tlb: list[LiveEntry] = []
        self.walks: list[LiveWalk] = []
        self.pending: list[Command] = []
        self.seq = 0
        self.nt_refetch: int | None = None

    def write_cd(self, pt, tg: int) -> None:
        """The context descriptor: walks start at ``pt``'s pgd, with the
        granule ``1 << tg`` (CD.TTB0, CD.TG0)."""
        self.pt = pt
        self.tg = tg

    # ------------------------------------------------------------ command queue
    def submit(self, op: str, func: str, **fields) -> None:
        """A command written to the queue by ``func``. QEMU
        (smmuv3_cmdq_consume on the CMDQ_PROD write) carries it out at
        once; real hardware may do so at any time up to the next CMD_SYNC,
        so it stays pending."""
        self.seq += 1
        cmd = Command(self.seq, op, tuple(fields.items()), self.rec.next_step)
        if not self.coherent:
            self.pending.append(cmd)
        self.rec.emit("cmdq", "cmd_issue", func, f"queue {cmd}", cmd=str(cmd),
                      op=op, fields=dict(fields))
        if self.coherent:
            self._execute(cmd)

    def sync(self, func: str) -> None:
        """CMD_SYNC written by ``func`` and waited for: every earlier
        command is then complete (SMMUv3 4.7.3)."""
        self.seq += 1
        self.rec.emit("cmdq", "cmd_issue", func, "queue CMD_SYNC",
                      cmd="CMD_SYNC", op="CMD_SYNC", fields={})
        done = list(self.pending)
        self.pending.clear()
        for c in done:
            self._execute(c)
        self.rec.emit("cmdq", "sync_done", func,
                      f"CMD_SYNC complete: {len(done)} earlier command(s) done",
                      completed=len(done))
        if self.nt_refetch is not None:
            iova, self.nt_refetch = self.nt_refetch, None
            tr = self.pt.translate(iova)
            if self.personality == "adversarial" and tr is not None:
                # a valid translation may be cached at any time: the worst
                # case refetches the nT block before it is replaced
                self._fill(tr, speculative=True)

    def nt_written(self, iova: int) -> None:
        """A block at ``iova`` was marked nT (the first step of the BBML1
        sequence): an adversarial SMMU caches it again after the sync."""
        self.nt_refetch = iova

    def _execute(self, cmd):
        """Carry out one invalidation command on the TLB and walk cache."""
        f = dict(cmd.fields)
        rec = self.rec
        if cmd.op == "CMD_TLBI_NH_ASID":
            gone = [e for e in self.tlb if e.asid == f["asid"]]
            walks = [w for w in self.walks if w.asid == f["asid"]]
        else:
            gone = [e for e in self.tlb
                    if tlbi_matches(f, e, self.tg, self.ttl_hints)]
            if f.get("leaf"):
                walks = []
            else:
                addr = f["addr"]
                span = ((f.get("num", 0) + 1) << (f.get("scale", 0) + self.tg)
                        if f.get("tg") else 1)
                walks = [w for w in self.walks if w.asid == f.get("asid")
                         and w.iova < addr + span and addr < w.iova + w.size]
            if f.get("ttl") and self.ttl_hints:
                survivors = [e for e in self.tlb if e not in gone and
                             tlbi_matches(dict(f, ttl=0), e, self.tg, False)]
                for e in survivors:
                    rec.emit("tlb", "ttl_miss", "SMMUv3 TLBI TTL rule",
                             f"TTL={f['ttl']} names level {f['ttl']}: "
                             f"{short_size(e.size)} entry at level {e.level}"
                             f" for 0x{e.iova:x} need not be removed, stays",
                             iova=e.iova, size=e.size, level=e.level)
        for e in gone:
            self.tlb.remove(e)
        for w in walks:
            self.walks.remove(w)
        if gone or walks:
            what = ", ".join(f"{short_size(e.size)} 0x{e.iova:x}" for e in gone)
            if walks:
                what += (", " if what else "") + f"{len(walks)} walk-cache"
            rec.emit("tlb", "invalidate", "SMMU executes " + cmd.op,
                     f"{cmd.op.replace('CMD_', '')} removes {what}",
                     removed=[(e.iova, e.size, e.level) for e in gone],
                     walks=len(walks))

    # ------------------------------------------------------------ translation
    def conflict_allowed(self, entries) -> bool:
        """Whether overlapping ``entries`` may raise a TLB conflict:
        SMMU_IDR3.BBML 0 always, BBML 1 unless one came from a block marked
        nT (the level-1 sequence), BBML 2 never; QEMU never reports one."""
        if self.coherent or self.bbml == 2:
            return False
        if self.bbml == 1 and self.pt.fmt == "lpae" and \
                any(nt_block(e.pte) for e in entries):
            return False
        return True

    def _walk_option(self, iova, write):
        tr = self.pt.translate(iova)
        if tr is None:
            return ("fault", None, "walk"), None
        if write and not tr.prot & IOMMU_WRITE:
            return ("fault", None, "walk"), None
        return ("translated", tr.paddr + (iova - tr.iova), "walk"), tr

    def options(self, iova: int, write: bool):
        """Every outcome the architecture allows for an access now, as
        ``(outcome, paddr, source)``, and the walk's translation."""
        truth, tr = self._walk_option(iova, write)
        matches = [e for e in self.tlb if e.asid == self.asid and e.covers(iova)]
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
        if len(distinct) > 1 and self.conflict_allowed(matches):
            opts.append(("conflict", None, "tlb:multi-hit"))
        # a TLB may drop any entry at any time (or never filled it), and
        # QEMU-like coherence has nothing pending: the walk result is
        # allowed unless a cached entry must be used (coherent model)
        if not matches or not self.coherent:
            opts.append(truth)
        return opts, tr

    def translate(self, iova: int, write: bool):
        """A transaction from the device: ``(chosen, opts)``, the outcome
        the personality picked among ``opts``, all those allowed. A walk
        that translates fills the TLB; a TLB hit refreshes its entry."""
        opts, tr = self.options(iova, write)
        chosen = pick(opts, self.personality)
        source = chosen[2]
        if source == "walk" and tr is not None and chosen[0] == "translated":
            self._fill(tr, speculative=False)
        elif source.startswith("tlb:") and source != "tlb:multi-hit":
            for e in self.tlb:
                if f"tlb:{short_size(e.size)}@0x{e.iova:x}" == source:
                    e.last_used = self.rec.next_step
        return chosen, opts

    def speculate(self, iova: int) -> bool:
        """Walk ``iova`` and cache a valid translation now, as the SMMU may
        at any time (SMMUv3 3.21.1: speculative fills). Returns whether
        anything was cached (faults are not cached)."""
        tr = self.pt.translate(iova) if not iova >> self.pt.ias else None
        if tr is None:
            self.rec.emit("tlb", "no_fill", "speculative walk",
                          f"speculative walk of 0x{iova:x} finds no valid "
                          "translation: nothing cached")
            return False
        self._fill(tr, speculative=True)
        return True

    def _fill(self, tr, speculative):
        rec = self.rec
        key = (self.asid, tr.iova, tr.size, tr.level, tr.paddr, tr.prot)
        for e in self.tlb:
            if e.key() == key:
                e.last_used = rec.next_step
                return
        if len(self.tlb) >= self.capacity:
            if self.coherent:
                self.tlb.clear()
                rec.emit("tlb", "evict", "smmu_iotlb_insert",
                         "IOTLB full: QEMU empties it before inserting")
            else:
                key = (lambda e: e.last_used) if self.replacement == "lru" \
                    else (lambda e: e.inserted)
                victim = min(self.tlb, key=key)
                self.tlb.remove(victim)
                rec.emit("tlb", "evict",
                         f"TLB replacement ({self.replacement.upper()})",
                         f"evict {short_size(victim.size)} 0x{victim.iova:x}")
        step = rec.next_step
        self.tlb.append(LiveEntry(self.asid, tr.iova, tr.size, tr.level,
                                  tr.paddr, tr.prot, tr.pte, step,
                                  speculative, step))
        if self.walk_cache:
            pt = self.pt
            for lvl, table in zip(range(pt.start_level, tr.level),
                                  tr.tables[1:]):
                bs = pt.block_size(lvl)
                w = LiveWalk(self.asid, tr.iova & ~(bs - 1), bs, lvl, table, step)
                if all(x.key() != w.key() for x in self.walks):
                    self.walks.append(w)
        kind = "block" if tr.size > self.pt.granule else "page"
        rec.emit("tlb", "fill", "speculative walk" if speculative else
                 "SMMU table walk",
                 f"{'speculatively ' if speculative else ''}cache "
                 f"{short_size(tr.size)} {kind} 0x{tr.iova:x} -> "
                 f"0x{tr.paddr:x} (L{tr.level})",
                 iova=tr.iova, size=tr.size, level=tr.level, paddr=tr.paddr)
