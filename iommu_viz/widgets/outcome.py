"""The outcome panel's words: what each device access did and what the
architecture would also have allowed, read from a recorded run.

Nothing here re-runs the model. Each sentence is built from the run's
:class:`~iommu_viz.sim.Access` records (``outcome``, ``allowed``,
``options``), the :class:`~iommu_viz.sim.trace.State` recorded after each
step (TLB entries with their ``stale_ranges``, ``hazards``) and the events
(``return`` of an unmap call, ``sync_done`` of a CMD_SYNC). The rules the
words state are those the model implements:

* SMMUv3 (IHI0070) 3.21 / 4.7: a cached entry may be used until an
  invalidation that removes it has completed, which software only knows
  once a later CMD_SYNC completes; so a stale entry keeps the old output
  address reachable until that sync (strict mode) or until the flush
  queue's full-IOTLB flush (lazy mode, fq_flush_timeout / queue_iova).
* SMMU_IDR3.BBML: with two overlapping entries for one address, levels 0
  and 1 allow a TLB conflict (F_TLB_CONFLICT, event 0x20); level 2 does not.

Example::

    >>> from iommu_viz import scenarios
    >>> sim = scenarios.run("seed", fast=True, sync_after=False)
    >>> print(explain_access(sim, sim.accesses[1]))     # doctest: +ELLIPSIS
    step 16, read 0x40001000: stale (allowed: fault, stale). The device can
    still read 0x80001000 through the stale 2M block 0x40000000...
"""

from __future__ import annotations

import textwrap

from ..pgtable.common import short_size

__all__ = ["explain_access", "access_words", "access_summary", "outcome_text",
           "outcome_items"]


def _ms(us: int) -> str:
    ms = us / 1000.0
    return f"{ms:g} ms"


def _entry_for(state, source: str):
    """The TLB entry an access option names (``tlb:2M@0x40000000``)."""
    for e in state.tlb:
        if source == f"tlb:{short_size(e.size)}@0x{e.iova:x}":
            return e
    return None


def _same_entry(a, b) -> bool:
    return (a.asid, a.iova, a.size, a.level, a.paddr) == \
        (b.asid, b.iova, b.size, b.level, b.paddr)


def _stale_at(state, entry, iova) -> bool:
    """``entry`` is still cached in ``state`` and stale for ``iova``."""
    for e in state.tlb:
        if _same_entry(e, entry):
            return any(s <= iova < s + n for s, n in e.stale_ranges)
    return False


def _conflict_at(state, iova) -> bool:
    return any(h.kind == "conflict" and h.iova <= iova < h.iova + h.size
               for h in state.hazards)


def _unmap_return_before(sim, step):
    """The last event before ``step`` where an unmap call returned."""
    for ev in reversed(sim.events[:step]):
        if ev.kind == "return" and "unmap" in ev.func:
            return ev
    return None


def _closing_event(sim, step):
    """The event that ends a window closed at ``step``: the CMD_SYNC that
    completes the invalidation in the same API call, if there is one."""
    ev = sim.events[step]
    for later in sim.events[step:]:
        if later.op != ev.op:
            break
        if later.kind == "sync_done":
            return later
    return ev


def _first_step(sim, start, pred):
    """First step after ``start`` at which ``pred(state)`` is False."""
    for st in sim.states[start + 1:]:
        if not pred(st):
            return st.step
    return None


def _window_words(sim, access, closed_at, what):
    """'until ...' words for a window that closes at step ``closed_at``
    (None: still open when the run ends)."""
    ret = _unmap_return_before(sim, access.step)
    if closed_at is None:
        syncs = [ev for ev in sim.events
                 if ev.kind == "sync_done" and ret is not None
                 and ev.op >= ret.op]
        last_sync = syncs[-1] if syncs else None
        words = f"{what} until the end of this run: nothing removes it"
        if last_sync is not None:
            words += (f" (the CMD_SYNC at step {last_sync.step} completed "
                      "without removing it)")
        elif ret is not None:
            words += f" (no sync follows {ret.func})"
        return words
    close = _closing_event(sim, closed_at)
    by_fq = any(ev.actor == "fq" for ev in sim.events
                if ev.op == close.op)
    how = "the flush queue's flush" if by_fq else "the sync"
    if close.kind == "sync_done":
        where = f"{how} completes at step {close.step} ({close.func})"
    else:
        where = f"step {close.step} ({close.func})"
    if ret is not None and close.time_us > ret.time_us:
        return (f"{what} for {_ms(close.time_us - ret.time_us)} after "
                f"{ret.func} returned, until {where}")
    if ret is not None and close.step > ret.step:
        return f"{what} after {ret.func} returned, until {where}"
    return f"{what} until {where}"


def explain_access(sim, access) -> str:
    """One paragraph on ``access`` (an item of ``sim.accesses``): what
    happened, what else the architecture allows, and for how long;
    ASCII, wrapped at 72 columns."""
    head, body = access_words(sim, access)
    return textwrap.fill(head + " " + body, 72)


def access_words(sim, access) -> tuple[str, str]:
    """``(head, body)``: the outcome and allowed set in one short sentence,
    and the explanation (unwrapped)."""
    rw = "write" if access.write else "read"
    allowed = ", ".join(sorted(access.allowed))
    head = (f"step {access.step}, {rw} 0x{access.iova:x}: {access.outcome} "
            f"(allowed: {allowed}).")
    state = sim.states[access.step]
    parts = [head]
    stale_opts = [o for o in access.options if o[0] == "stale"]
    if stale_opts:
        _, pa, source = stale_opts[0]
        entry = _entry_for(state, source)
        kind = "block" if entry is not None and entry.size > sim.granule \
            else "page"
        desc = (f"{short_size(entry.size)} {kind} 0x{entry.iova:x}"
                if entry is not None else source)
        verb = "read" if not access.write else "write"
        closed = None
        if entry is not None:
            closed = _first_step(sim, access.step,
                                 lambda st: _stale_at(st, entry, access.iova))
        lead = (f"The device can still {verb} 0x{pa:x} through the stale "
                f"{desc}")
        if access.outcome != "stale":
            lead = (f"This SMMU gave {access.outcome}, but the architecture "
                    f"also lets the device {verb} 0x{pa:x} through the "
                    f"stale {desc}")
        parts.append(_window_words(sim, access, closed, lead) + ".")
    if "conflict" in access.allowed:
        closed = _first_step(sim, access.step,
                             lambda st: _conflict_at(st, access.iova))
        lead = (f"Two cached entries translate 0x{access.iova:x}; with "
                f"BBML{sim.bbml} the SMMU may report a TLB conflict "
                "(F_TLB_CONFLICT, event 0x20)")
        if access.outcome == "conflict":
            lead = (f"Two cached entries translate 0x{access.iova:x} and "
                    f"this SMMU reported a TLB conflict (F_TLB_CONFLICT, "
                    f"event 0x20), which BBML{sim.bbml} allows")
        parts.append(_window_words(sim, access, closed, lead) + ".")
    if not stale_opts and "conflict" not in access.allowed:
        if access.outcome == "translated":
            via = ("a table walk" if access.source == "walk" else
                   "the cached " + access.source[4:].replace("@", " entry at "))
            parts.append(f"It reaches 0x{access.paddr:x}, as the page tables "
                         f"say, via {via}.")
        elif access.outcome == "fault":
            parts.append("Nothing maps it and nothing stale is cached, so "
                         "it faults (F_TRANSLATION, event 0x10).")
    return parts[0], " ".join(parts[1:])


def access_summary(access) -> str:
    """A short label: ``read 0x40001000: stale -> 0x80001000``."""
    rw = "write" if access.write else "read"
    where = f" -> 0x{access.paddr:x}" if access.paddr is not None else ""
    return f"{rw} 0x{access.iova:x}: {access.outcome}{where}"


def outcome_items(sim):
    """``[(access, paragraph), ...]`` for every access of the run."""
    return [(a, explain_access(sim, a)) for a in sim.accesses]


def outcome_text(sim, upto=None) -> str:
    """Plain text (ASCII, <= 72 columns) for the accesses up to step
    ``upto`` (all when None), one paragraph each."""
    out = []
    for a, words in outcome_items(sim):
        if upto is not None and a.step > upto:
            continue
        out.append(words)
    if not out:
        return "No device access yet.\n"
    return "\n\n".join(out) + "\n"
