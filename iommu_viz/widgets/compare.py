"""Two recorded runs of one scenario side by side: which event of the new
run is "the same" as a step of the old one, and what changed.

Nothing here re-runs the model; it reads ``events``, ``ops``, ``accesses``
and the hazard windows (:func:`iommu_viz.render.timeline.hazard_windows`)
of two runs.

* An access is known by its label and its rank among accesses with that
  label: the second ``read 0x40001000`` of one run is the second of the
  other, whatever step each lands on.
* An API call is known the same way by what it does (``unmap 0x40001000
  size 0x1000``; ``iommu_unmap`` and ``iommu_unmap_fast`` are one unmap).
* Inside a call, an event is known by its kind, kernel function and rank.

Example::

    >>> from iommu_viz import scenarios
    >>> a = scenarios.run("seed", fast=True, sync_after=False)
    >>> b = scenarios.run("seed", fast=True, sync_after=False, split_sync=True)
    >>> a.events[16].text[:30], match_step(a, 16, b)
    ('device read 0x40001000: stale ', 19)
    >>> print("\\n".join(compare_runs(a, b).lines()))  # doctest: +ELLIPSIS
    outcome: read 0x40001000 (2nd), step 16 -> 19: stale -> fault
    outcome: read 0x40001000 (3rd), step 19 -> 23: stale -> fault
    window shorter: stale, steps 13..20 -> 13..15
    steps added: 5 (arm_smmu_tlb_inv_leaf x3, SMMU executes CMD_TLBI_NH_VA, SMMU table walk)
    steps removed: 1 (iommu_iotlb_gather_add_page)
"""

from __future__ import annotations

import difflib
from collections import Counter
from dataclasses import dataclass, field

__all__ = ["access_label", "access_keys", "match_step", "compare_runs",
           "RunDiff"]

_ORD = {1: "1st", 2: "2nd", 3: "3rd"}


def _nth(k: int) -> str:
    return _ORD.get(k, f"{k}th")


def access_label(access) -> str:
    """``read 0x40001000`` / ``write 0x10001000``."""
    return f"{'write' if access.write else 'read'} 0x{access.iova:x}"


def _ranked(labels) -> list[tuple[str, int]]:
    """``(label, rank)`` of each label: its count so far, from 1."""
    seen: Counter = Counter()
    out = []
    for lab in labels:
        seen[lab] += 1
        out.append((lab, seen[lab]))
    return out


def access_keys(sim) -> list[tuple[str, int]]:
    """``(label, rank)`` of each access of ``sim`` (rank counts from 1)."""
    return _ranked(access_label(a) for a in sim.accesses)


def _op_label(op: dict) -> str:
    name = op.get("op", "?")
    if name == "access":
        return f"{'write' if op.get('write') else 'read'} 0x{op['iova']:x}"
    if name in ("unmap_fast", "unmap"):
        name = "unmap"
    args = " ".join(f"{k} 0x{v:x}" if isinstance(v, int)
                    and not isinstance(v, bool) else f"{k} {v}"
                    for k, v in sorted(op.items())
                    if k not in ("op", "gather", "id"))
    return f"{name} {args}".strip()


def _op_keys(sim):
    return _ranked(_op_label(op) for op in sim.ops)


def _events_of_op(sim, op: int):
    return [ev for ev in sim.events if ev.op == op]


def match_step(a, step: int, b) -> int:
    """The step of run ``b`` that shows the same event as ``step`` of run
    ``a``: the same access, else the same event of the same API call, else
    that call's last event, else the last event of the nearest earlier
    call that both runs make."""
    ev = a.events[step]
    if ev.op < 0 or not b.events:
        return 0
    keys_a, keys_b = _op_keys(a), _op_keys(b)
    where = {k: i for i, k in enumerate(keys_b)}
    ob = where.get(keys_a[ev.op]) if ev.op < len(keys_a) else None
    if ob is None:
        for earlier in range(min(ev.op, len(keys_a)) - 1, -1, -1):
            if keys_a[earlier] in where:
                evs = _events_of_op(b, where[keys_a[earlier]])
                return evs[-1].step if evs else 0
        return 0
    evs_a, evs_b = _events_of_op(a, ev.op), _events_of_op(b, ob)
    if not evs_b:
        return 0
    rank = sum(1 for e in evs_a if e.step <= step
               and (e.kind, e.func) == (ev.kind, ev.func))
    same = [e for e in evs_b if (e.kind, e.func) == (ev.kind, ev.func)]
    if len(same) >= rank:
        return same[rank - 1].step
    if ev.step == evs_a[-1].step:
        return evs_b[-1].step
    return evs_b[0].step


def _windows(sim):
    from ..render.timeline import hazard_windows
    return hazard_windows(sim)


@dataclass
class RunDiff:
    """What changed from run ``a`` to run ``b``.

    ``outcomes``: ``(label, rank, step_a, step_b, outcome_a, outcome_b,
    allowed_a, allowed_b)`` for each access whose outcome or allowed set
    differs (a step is None where the access is only in one run);
    ``opened``/``closed``: hazard windows ``(kind, first, last, reasons)``
    only in ``b`` / only in ``a``; ``resized``: ``(window_a, window_b)``
    for a window of both runs (same kind and reason) whose steps differ;
    ``added``/``removed``: events only in
    ``b`` / only in ``a`` (matched by actor, kind and kernel function)."""

    outcomes: list = field(default_factory=list)
    opened: list = field(default_factory=list)
    closed: list = field(default_factory=list)
    resized: list = field(default_factory=list)
    added: list = field(default_factory=list)
    removed: list = field(default_factory=list)

    @property
    def same(self) -> bool:
        return not (self.outcomes or self.opened or self.closed
                    or self.resized
                    or self.added or self.removed)

    def lines(self, upto=None) -> list[str]:
        """One line per kind of change (ASCII). ``upto``: a step of run
        ``b``; outcomes and windows after it are counted, not shown (for
        predict mode)."""
        out, hidden = [], 0
        for lab, rank, sa, sb, oa, ob, _, _ in self.outcomes:
            if upto is not None and (sb is None or sb > upto) \
                    and (sa is None or sa > upto):
                hidden += 1
                continue
            where = (f"step {sa} -> {sb}" if sa is not None and sb is not None
                     else f"step {sa if sa is not None else sb}")
            out.append(f"outcome: {lab} ({_nth(rank)}), {where}: "
                       f"{oa or 'no access'} -> {ob or 'no access'}")
        for what, wins in (("closed", self.closed), ("opened", self.opened)):
            for kind, first, last, _ in wins:
                if upto is not None and first > upto:
                    hidden += 1
                    continue
                out.append(f"window {what}: {kind}, steps {first}..{last}")
        for (kind, f0, l0, _), (_, f1, l1, _) in self.resized:
            if upto is not None and f1 > upto:
                hidden += 1
                continue
            how = "shorter" if l1 - f1 < l0 - f0 else (
                "longer" if l1 - f1 > l0 - f0 else "moved")
            out.append(f"window {how}: {kind}, steps {f0}..{l0} -> "
                       f"{f1}..{l1}")
        if hidden:
            out.append(f"{hidden} later change(s) hidden until you get there")
        for what, evs in (("added", self.added), ("removed", self.removed)):
            if evs:
                names = Counter(e.func for e in evs)
                parts = [f"{f} x{n}" if n > 1 else f
                         for f, n in names.most_common(3)]
                more = len(names) - 3
                out.append(f"steps {what}: {len(evs)} ("
                           + ", ".join(parts)
                           + (f", +{more} more" if more > 0 else "") + ")")
        return out


def compare_runs(a, b) -> RunDiff:
    """:class:`RunDiff` from run ``a`` to run ``b``."""
    d = RunDiff()
    ka, kb = access_keys(a), access_keys(b)
    ia = dict(zip(ka, a.accesses))
    ib = dict(zip(kb, b.accesses))
    for key in ka + [k for k in kb if k not in ia]:
        x, y = ia.get(key), ib.get(key)
        if x is not None and y is not None and x.outcome == y.outcome \
                and set(x.allowed) == set(y.allowed):
            continue
        d.outcomes.append((
            key[0], key[1],
            x.step if x is not None else None,
            y.step if y is not None else None,
            x.outcome if x is not None else None,
            y.outcome if y is not None else None,
            tuple(sorted(x.allowed)) if x is not None else (),
            tuple(sorted(y.allowed)) if y is not None else ()))
    wa, wb = _windows(a), _windows(b)
    sig = lambda w: (w[0], w[3])                          # noqa: E731
    d.closed = [w for w in wa if sig(w) not in {sig(v) for v in wb}]
    d.opened = [w for w in wb if sig(w) not in {sig(v) for v in wa}]
    later = {sig(w): w for w in wb}
    d.resized = [(w, later[sig(w)]) for w in wa if sig(w) in later
                 and later[sig(w)][1:3] != w[1:3]]
    ea = [(e.actor, e.kind, e.func) for e in a.events[1:]]
    eb = [(e.actor, e.kind, e.func) for e in b.events[1:]]
    sm = difflib.SequenceMatcher(a=ea, b=eb, autojunk=False)
    for tag, i1, i2, j1, j2 in sm.get_opcodes():
        if tag in ("replace", "delete"):
            d.removed.extend(a.events[1 + i1:1 + i2])
        if tag in ("replace", "insert"):
            d.added.extend(b.events[1 + j1:1 + j2])
    return d
