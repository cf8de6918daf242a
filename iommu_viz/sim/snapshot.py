"""The :class:`~iommu_viz.sim.trace.State` kept after every event, and
the windows it shows: what no kernel file computes, the model's own
reading of the architecture's rules.

A TLB entry is *stale* where it no longer matches the page tables (the
device may still reach memory the tables no longer map there); two cached
entries for one address are a *conflict* where the SMMU's BBML level
allows one (:meth:`~iommu_viz.sim.smmu.Smmu.conflict_allowed`); a
walk-cache entry is stale when the table it points at is no longer linked
in. An entry is *pending* while an issued, not yet synced, invalidation
targets it.
"""

from __future__ import annotations

from ..pgtable.common import short_size
from .smmu import LiveEntry, tlbi_matches
from .trace import Hazard, State, TlbEntry, WalkCacheEntry


class StateKeeper:
    """Reads every layer and makes the State after one step.

    ``pt`` the page table, ``smmu`` the hardware, ``domain`` the IOMMU
    core (its open gathers), ``dma`` the flush queue, ``clock`` the time.
    Stale ranges are cached per TLB entry until the tables change
    (:meth:`tables_changed`).
    """

    def __init__(self, pt, smmu, domain, dma, clock):
        self.pt = pt
        self.smmu = smmu
        self.domain = domain
        self.dma = dma
        self.clock = clock
        self.gen = 0
        self._stale_cache: dict = {}

    def tables_changed(self) -> None:
        """The page tables were written: stale ranges must be read again."""
        self.gen += 1

    def state(self, step: int) -> State:
        smmu = self.smmu
        tlb = tuple(self._entry_state(e) for e in smmu.tlb)
        walks = tuple(self._walk_state(w) for w in smmu.walks)
        return State(step, self.clock.now_us, self.pt.snapshot(), tlb, walks,
                     tuple(smmu.pending), tuple(self.dma.fq),
                     tuple(g.state() for g in self.domain.gathers.values()
                           if not g.empty),
                     self._hazards(tlb, walks), self.dma.deadline_us)

    # ------------------------------------------------------------ TLB
    def _entry_stale_ranges(self, e: LiveEntry):
        """The parts of entry ``e`` that no longer match the tables."""
        key = (e.key(), self.gen)
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
        smmu = self.smmu
        for c in smmu.pending:
            if c.op == "CMD_TLBI_NH_ASID" and c.get("asid") == e.asid:
                return True
            if c.op == "CMD_TLBI_NH_VA" and tlbi_matches(
                    dict(c.fields), e, smmu.tg, smmu.ttl_hints):
                return True
        return False

    def _entry_state(self, e):
        return TlbEntry(e.asid, e.iova, e.size, e.level, e.paddr, e.prot, e.pte,
                        e.inserted, e.speculative, self._entry_stale_ranges(e),
                        self._pending_for(e))

    # ------------------------------------------------------------ walk cache
    def _walk_stale(self, w):
        for s in self.pt.walk(w.iova):
            if s.level == w.level:
                return not (s.kind == "table" and
                            self.pt.describe(s.level, s.pte).addr == w.table)
        return True

    def _walk_state(self, w):
        pending = any(c.op == "CMD_TLBI_NH_ASID" or (
            c.op == "CMD_TLBI_NH_VA" and not c.get("leaf")
            and w.iova <= c.get("addr") < w.iova + w.size)
            for c in self.smmu.pending)
        return WalkCacheEntry(w.asid, w.iova, w.size, w.level, w.table,
                              self._walk_stale(w), pending)

    # ------------------------------------------------------------ hazards
    def _hazards(self, tlb, walks):
        smmu = self.smmu
        granule = self.pt.granule
        out = []
        for e in tlb:
            for (a, s) in e.stale_ranges:
                out.append(Hazard(
                    "stale", a, s,
                    f"TLB holds {short_size(e.size)} "
                    f"{'block' if e.size > granule else 'page'} 0x{e.iova:x} -> "
                    f"0x{e.paddr:x}; tables no longer map 0x{a:x} that way"))
        if not (smmu.bbml == 2 or smmu.coherent):
            for i, e in enumerate(tlb):
                for f in tlb[i + 1:]:
                    if e.asid == f.asid and e.iova < f.iova + f.size and \
                            f.iova < e.iova + e.size and \
                            (e.size, e.paddr) != (f.size, f.paddr) and \
                            smmu.conflict_allowed((e, f)):
                        lo = max(e.iova, f.iova)
                        hi = min(e.iova + e.size, f.iova + f.size)
                        out.append(Hazard(
                            "conflict", lo, hi - lo,
                            f"{short_size(e.size)} and {short_size(f.size)} "
                            f"entries both translate 0x{lo:x} (BBML{smmu.bbml})"))
        for w in walks:
            if w.stale:
                out.append(Hazard("stale", w.iova, w.size,
                                  f"walk cache points at freed table 0x{w.table:x}"))
        return tuple(out)
