"""What the replay knew of a faulting address when the fault was logged.

A fault report (:class:`~.faults.FaultLine`) is explained against the
replay's state at that point of the log:

* the table maps the address: the fault is not a missing mapping. The log
  records no permissions (the replay maps every page READ|WRITE), so the
  device may have lacked a permission; or its TLB held an entry that the
  table no longer has. When the address lies in a block that a partial
  unmap split earlier, the note says what the era's split leaves behind
  and what the SMMU may then do (SMMUv3 spec 3.21.1 and SMMU_IDR3.BBML:
  with BBML 0 an old block entry and a new page entry may both be cached,
  a TLB conflict);
* the table does not map it, and an unmap had unmapped it: "use after
  unmap", with the unmap's line, device and the time between the two
  lines when both have timestamps;
* neither: never mapped in this log (the log may start after the map).
"""

from __future__ import annotations

from ..pgtable.common import era_at_least, fmt_size
from .faults import Fault, FaultLine
from .formats import stamp_time

__all__ = ["explain_fault", "find_unmap"]

#: aligned starts tried before a scan of every unmap (granule .. 1 GiB)
_ALIGNS = tuple(1 << b for b in range(12, 31))


def find_unmap(unmaps: dict, iova: int):
    """The latest unmap ``(start, (line, time, device, size))`` whose
    range holds ``iova``, from ``unmaps`` (start -> record), or
    ``None``."""
    best = None
    seen = set()
    for a in _ALIGNS:
        start = iova & ~(a - 1)
        if start in seen:
            continue
        seen.add(start)
        rec = unmaps.get(start)
        if rec is not None and start <= iova < start + rec[3]:
            if best is None or rec[0] > best[1][0]:
                best = (start, rec)
    if best is not None:
        return best
    for start, rec in unmaps.items():
        if start <= iova < start + rec[3] and (
                best is None or rec[0] > best[1][0]):
            best = (start, rec)
    return best


def _split_note(engine, iova, tr) -> str:
    """What a block split earlier near ``iova`` leaves for the TLB, in the
    replay's era; ``''`` when no split touched the block around it."""
    table = engine.table
    level = tr.level
    if level <= getattr(table, "start_level", 1):
        return ""
    try:
        parent = table.block_size(level - 1)
    except (KeyError, IndexError, ValueError):
        return ""
    base = iova & ~(parent - 1)
    line = None
    for a, ln in reversed(engine.split_log):
        if a & ~(parent - 1) == base:
            line = ln
            break
    if line is None:
        return ""
    kernel = engine.kernel
    where = f"not a missing mapping; the {fmt_size(parent)} block at {base:#x} was split at line {line}"
    if not era_at_least(kernel, (5, 4)):
        return (f"{where}; in the {kernel} era the split invalidates and "
                "syncs the unmapped page itself, so a stale entry needs a "
                "caller that skipped its own sync (non-strict mode)")
    note = (f"{where}; in the {kernel} era the split leaves the old block's "
            "invalidation to the caller's gather, so until the caller syncs "
            "(iommu_unmap_fast without iotlb_sync) the TLB may keep the old "
            "block, and with BBML 0 the old block and a new page together "
            "(a TLB conflict, F_TLB_CONFLICT 0x20)")
    if era_at_least(kernel, (5, 7)):
        # arm-smmu-v3 sets TTL from the granule it is given (v5.7 on, with
        # range invalidation): the page's TLBI names level 3, which an SMMU
        # may apply only to level-3 entries, leaving the cached block
        note += ("; on an SMMU with range invalidation the sync's TLBI "
                 "carries the page's TTL hint, which need not remove the "
                 "block, so the window can outlast the sync (see the "
                 "ttl-split scenario)")
    return note


def explain_fault(engine, f: FaultLine, after_events=0) -> Fault:
    """The :class:`~.faults.Fault` for report ``f`` given the replay
    ``engine``'s state now (its table and its record of unmaps), after
    ``after_events`` events."""
    table = engine.table
    iova = f.iova
    tr = None
    if not iova >> table.ias:
        tr = table.translate(iova)
    base = dict(fmt=f.fmt, line=f.line, iova=iova, device=f.device,
                access=f.access, detail=f.detail, time=f.time,
                after_events=after_events)
    if tr is not None:
        note = _split_note(engine, iova, tr) or (
            "not a missing mapping: the log has no permissions (the "
            "replay maps READ|WRITE), so a permission not granted, or a TLB "
            "entry older than this mapping (a lazy unmap waits for the flush "
            "queue)")
        return Fault(**base, verdict="mapped",
                     paddr=tr.paddr | (iova & (tr.size - 1)), note=note)
    hit = find_unmap(engine.unmaps, iova)
    if hit is None:
        return Fault(**base, verdict="never mapped")
    start, (line, stamp, dev, size) = hit
    t = stamp_time(stamp)
    dt = None
    if f.time is not None and t is not None:
        dt = f.time - t
    return Fault(**base, verdict="use after unmap", unmap_line=line,
                 unmap_device=dev, unmap_iova=start, unmap_size=size, dt=dt)
