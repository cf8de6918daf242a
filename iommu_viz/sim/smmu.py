"""The SMMU hardware side: TLB, walk cache, command execution and the
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
* Two entries translating one address are a TLB conflict unless the SMMU
  implements BBML level 2 (then old or new translation, never a conflict).

Not modelled: the nT bit of BBML level 1 (Linux never sets it, so level 1
behaves as level 0 here), and walks through stale walk-cache entries (see
``Simulation``'s ``walk_cache``).
"""

from __future__ import annotations

from dataclasses import dataclass

from .trace import OUTCOMES

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
