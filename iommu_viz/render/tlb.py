"""TLB view: what the SMMU has cached after one step, and what is in
flight.

Reads one :class:`~iommu_viz.sim.trace.State`: the TLB entries (SMMUv3
3.20-3.21: tagged by ASID, block-aligned iova, size and level), the walk
cache (intermediate descriptors), commands issued but not yet completed
(SMMUv3 4.7: a TLBI is only known to be done once a later CMD_SYNC
completes), the lazy flush queue (iova.c / dma-iommu.c ``fq``), open
``iommu_iotlb_gather`` ranges and the hazard windows the state opens.
"""

from __future__ import annotations

import html

from .common import MARKS, OKABE_ITO, fit_lines, hexaddr, perm_str, size_str

__all__ = ["tlb_html", "tlb_text", "tlb_rows"]



def _walk_flags(w):
    """The words a walk-cache entry's state is shown with."""
    fl = []
    if w.stale:
        fl.append("STALE: table no longer linked")
    if w.pending:
        fl.append("inval pending")
    return fl

def _range(start: int, size: int) -> str:
    return f"{hexaddr(start)}..{hexaddr(start + size - 1)}"


def _flags(e) -> list[str]:
    out = []
    if e.stale:
        out.append("STALE")
    if e.pending:
        out.append("inval pending")
    if getattr(e, "speculative", False):
        out.append("speculative")
    return out


def tlb_rows(state) -> list[dict]:
    """The TLB entries as plain dicts (oldest first), the columns both
    views show."""
    rows = []
    for i, e in enumerate(state.tlb):
        rows.append(dict(
            n=i, asid=e.asid, iova=_range(e.iova, e.size),
            size=size_str(e.size), level=e.level, paddr=hexaddr(e.paddr),
            perm=perm_str(e.prot), stale=e.stale, pending=e.pending,
            speculative=e.speculative, inserted=e.inserted,
            stale_ranges=[_range(a, s) for a, s in e.stale_ranges]))
    return rows


def _summary(state) -> str:
    n = len(state.tlb)
    stale = sum(1 for e in state.tlb if e.stale)
    pend = sum(1 for e in state.tlb if e.pending)
    return (f"TLB at step {state.step}, t={state.time_us / 1000:.3f} ms: "
            f"{n} entr{'y' if n == 1 else 'ies'}, {stale} stale, "
            f"{pend} inval pending")


# ---------------------------------------------------------------- text

def tlb_text(state, width=72) -> str:
    """The TLB, walk cache, pending commands, flush queue, open gathers
    and hazards as plain text (ASCII, lines at most ``width`` columns)."""
    out = [_summary(state)]
    if state.tlb:
        out.append("   # asid iova range                 size lvl "
                   "paddr        perm")
        for r, e in zip(tlb_rows(state), state.tlb):
            mark = "!" if r["stale"] else " "
            out.append(f"{mark}{r['n']:>3} {r['asid']:>4} {r['iova']:<25} "
                       f"{r['size']:>4} L{r['level']}  {r['paddr']:<12} "
                       f"{r['perm']}")
            flags = _flags(e)
            detail = [f"filled at step {e.inserted}"] + flags
            out.append("         " + ", ".join(detail))
            if r["stale_ranges"]:
                out.append("         ! stale for " + ", ".join(
                    r["stale_ranges"]))
    else:
        out.append("  (empty)")
    out.append("")
    out.append(f"Walk cache: {len(state.walk_cache)} entr"
               f"{'y' if len(state.walk_cache) == 1 else 'ies'}")
    for i, w in enumerate(state.walk_cache):
        fl = _walk_flags(w)
        out.append(f"{'!' if w.stale else ' '}{i:>3} asid {w.asid} "
                   f"{_range(w.iova, w.size)} L{w.level} -> table "
                   f"{hexaddr(w.table)}")
        if fl:
            out.append("         " + ", ".join(fl))
    out.append("")
    out.append(f"Commands issued, not yet complete: {len(state.pending)}")
    for c in state.pending:
        out.append(f"  #{c.seq} {c} (issued at step {c.issued})")
    out.append("")
    dl = ("" if state.fq_deadline_us is None else
          f", timeout at {state.fq_deadline_us / 1000:.3f} ms")
    out.append(f"Flush queue: {len(state.flush_queue)} entr"
               f"{'y' if len(state.flush_queue) == 1 else 'ies'}{dl}")
    for f in state.flush_queue:
        out.append(f"  {_range(f.iova, f.size)} ({size_str(f.size)}), "
                   f"queued at {f.queued_us / 1000:.3f} ms")
    if state.gathers:
        out.append("")
        out.append("Open gathers:")
        for g in state.gathers:
            out.append(f"  #{g.id} {hexaddr(g.start)}..{hexaddr(g.end)} "
                       f"pgsize {size_str(g.pgsize)}"
                       + (" (queued)" if g.queued else ""))
    if state.hazards:
        out.append("")
        out.append("Hazards:")
        for h in state.hazards:
            out.append(f"  {h.kind}: {_range(h.iova, h.size)}: {h.reason}")
    return "\n".join(fit_lines(out, width)) + "\n"


# ---------------------------------------------------------------- HTML

_TD = 'style="border:1px solid #999;padding:2px 6px;text-align:left"'
_MONO = "font-family:monospace"


def _table(headers, rows, caption) -> str:
    head = "".join(f"<th {_TD}>{html.escape(h)}</th>" for h in headers)
    body = "".join(rows) if rows else (
        f'<tr><td {_TD} colspan="{len(headers)}"><i>empty</i></td></tr>')
    return (f'<table style="border-collapse:collapse;margin:4px 0">'
            f'<caption style="text-align:left;font-weight:bold">'
            f"{html.escape(caption)}</caption><tr>{head}</tr>{body}</table>")


def _cell(text, style="") -> str:
    st = f' style="{style}"' if style else ""
    return f"<td {_TD}><span{st}>{html.escape(str(text))}</span></td>"


def _row(cells, mark=None) -> str:
    bg = ""
    if mark == "stale":
        bg = f' style="background:{MARKS["stale"][1]};color:white"'
    elif mark == "conflict":
        bg = f' style="background:{OKABE_ITO["reddish_purple"]}"'
    elif mark == "pending":
        bg = f' style="background:{OKABE_ITO["orange"]}"'
    return f"<tr{bg}>" + "".join(cells) + "</tr>"


def tlb_html(state) -> str:
    """The same content as :func:`tlb_text` as HTML tables (for Jupyter).
    Stale rows are vermillion with a ``!`` and the word STALE; rows with an
    invalidation pending are orange and say so; a legend follows."""
    parts = [f"<div><p><b>{html.escape(_summary(state))}</b></p>"]
    rows = []
    for r, e in zip(tlb_rows(state), state.tlb):
        flags = _flags(e)
        mark = "stale" if r["stale"] else ("pending" if r["pending"] else None)
        sym = "!" if r["stale"] else ""
        rows.append(_row([
            _cell(f"{sym}{r['n']}"), _cell(r["asid"]),
            _cell(r["iova"], _MONO), _cell(f"L{r['level']} {r['size']}"),
            _cell(r["paddr"], _MONO), _cell(r["perm"]),
            _cell(", ".join(flags) or "current"),
            _cell(("stale for " + ", ".join(r["stale_ranges"]))
                  if r["stale_ranges"] else ""),
            _cell(e.inserted)], mark))
    parts.append(_table(["#", "ASID", "iova range", "level/size", "paddr",
                         "perm", "state", "stale part", "filled at step"],
                        rows, "TLB entries (oldest first)"))
    rows = []
    for i, w in enumerate(state.walk_cache):
        fl = _walk_flags(w)
        mark = "stale" if w.stale else ("pending" if w.pending else None)
        rows.append(_row([
            _cell(("!" if w.stale else "") + str(i)), _cell(w.asid),
            _cell(_range(w.iova, w.size), _MONO), _cell(f"L{w.level}"),
            _cell(hexaddr(w.table), _MONO),
            _cell(", ".join(fl) or "current")], mark))
    parts.append(_table(["#", "ASID", "iova range", "level", "next table",
                         "state"], rows, "Walk cache"))
    rows = [_row([_cell(c.seq), _cell(str(c), _MONO), _cell(c.issued)],
                 "pending") for c in state.pending]
    parts.append(_table(["seq", "command", "issued at step"], rows,
                        "Commands issued, not yet complete"))
    rows = [_row([_cell(_range(f.iova, f.size), _MONO),
                  _cell(size_str(f.size)),
                  _cell(f"{f.queued_us / 1000:.3f} ms")])
            for f in state.flush_queue]
    cap = "Flush queue"
    if state.fq_deadline_us is not None:
        cap += f" (timeout at {state.fq_deadline_us / 1000:.3f} ms)"
    parts.append(_table(["iova range", "size", "queued at"], rows, cap))
    if state.gathers:
        rows = [_row([_cell(f"#{g.id}"),
                      _cell(f"{hexaddr(g.start)}..{hexaddr(g.end)}", _MONO),
                      _cell(size_str(g.pgsize)),
                      _cell("yes" if g.queued else "no")])
                for g in state.gathers]
        parts.append(_table(["gather", "range", "pgsize", "queued"], rows,
                            "Open gathers"))
    if state.hazards:
        rows = [_row([_cell(h.kind), _cell(_range(h.iova, h.size), _MONO),
                      _cell(h.reason)], h.kind) for h in state.hazards]
        parts.append(_table(["hazard", "iova range", "why"], rows,
                            "Hazard windows open now"))
    parts.append(
        '<p style="font-size:smaller">Legend: '
        f'<span style="background:{MARKS["stale"][1]};color:white;'
        'padding:0 4px">! STALE</span> the entry no longer matches the '
        'page tables; '
        f'<span style="background:{OKABE_ITO["orange"]};padding:0 4px">'
        "inval pending</span> an invalidation was issued but no CMD_SYNC "
        "has completed it yet; "
        f'<span style="background:{OKABE_ITO["reddish_purple"]};'
        'padding:0 4px">conflict</span> two cached entries overlap (a TLB '
        "conflict is allowed).</p></div>")
    return "".join(parts)
