"""The Explorer's pictures, read from a recorded run: the tree focused on
what changed, the TLB, and a compact timeline of the whole run with the
position of each step on it.

* **Focus.** The tree shows the table that holds the latest change (up to
  the step shown) and everything under it; the levels above collapse into
  a one-line path (``L0 0x7f000000 [0] > L1 0x7f001000 [1]``). A change is
  a table allocated, freed or with an entry written since the step
  before; a detached table (allocated, not yet linked, e.g. inside
  arm_lpae_split_blk_unmap) counts for the table whose slot will link it.
* **Compact timeline.** The swim-lanes of
  :func:`iommu_viz.render.timeline.timeline_figure` (its lanes, marker
  styles, windows and colours, read from that module) for the whole run,
  drawn as SVG: a new run costs milliseconds where a matplotlib redraw
  costs 100-300 ms. The Explorer masks the steps after the one shown, so
  one picture per run serves every step.

Pictures are cached: trees by their DOT source (consecutive steps and
neighbouring runs often draw the same tree), timelines per run.
"""

from __future__ import annotations

import dataclasses
import html
import io
import re
import threading
from collections import OrderedDict

from ..render.common import MARKS

__all__ = ["focus_path", "tree_view", "timeline_svg", "timeline_png",
           "tree_legend_html"]

_TREE_CACHE: OrderedDict = OrderedDict()
_TREE_CACHE_MAX = 400
_TREE_LOCK = threading.Lock()        # the Explorer lays trees out in a thread


# ---------------------------------------------------------------- focus

def _children(snap, pa):
    t = snap.tables[pa]
    for i, pte in enumerate(t.entries):
        if not pte:
            continue
        info = snap.decode(t.level, pte)
        if info.kind == "table" and info.addr in snap.tables:
            yield i, info.addr


def _linked(snap):
    """``{table: (parent, index)}`` for the tables reachable from the root
    (the root maps to None)."""
    out = {snap.root: None}
    todo = [snap.root]
    while todo:
        pa = todo.pop()
        for i, child in _children(snap, pa):
            if child not in out:
                out[child] = (pa, i)
                todo.append(child)
    return out


def _path(links, pa):
    out = []
    while pa is not None:
        out.append(pa)
        up = links.get(pa)
        pa = up[0] if up else None
    return out[::-1]


def _covering(snap, links, t):
    """The linked table whose slot covers detached table ``t``'s iova at
    the level above it (where it will be linked)."""
    from ..render.tree import slot_size
    best = snap.root
    for pa in links:
        u = snap.tables[pa]
        span = len(u.entries) * slot_size(snap, u.level)
        if u.level < t.level and u.iova <= t.iova < u.iova + span \
                and u.level > snap.tables[best].level:
            best = pa
    return best


def _changed(prev, snap) -> set:
    out = {pa for pa, t in snap.tables.items()
           if pa not in prev.tables or prev.tables[pa].entries != t.entries}
    freed = set(prev.tables) - set(snap.tables)
    if freed:
        plinks = _linked(prev)
        for pa in freed:      # a freed table: its parent (if still there)
            up = plinks.get(pa)
            if up and up[0] in snap.tables:
                out.add(up[0])
    return out


def focus_path(sim, step: int) -> list:
    """Tables from the root to the focus table at ``step`` (root first)."""
    snap = sim.states[step].pgtable
    links = _linked(snap)
    changed = set()
    for s in range(step, 0, -1):
        changed = _changed(sim.states[s - 1].pgtable,
                           sim.states[s].pgtable) & set(snap.tables)
        if changed:
            break
    if not changed:
        return [snap.root]
    paths = []
    for pa in changed:
        anchor = pa if pa in links else _covering(snap, links,
                                                  snap.tables[pa])
        paths.append(_path(links, anchor))
    common = []
    for level in zip(*paths):
        if len(set(level)) != 1:
            break
        common.append(level[0])
    return common or [snap.root]


def _subtree(snap, top):
    links = _linked(snap)
    keep = {top}
    todo = [top]
    while todo:
        pa = todo.pop()
        for _, child in _children(snap, pa):
            if child not in keep:
                keep.add(child)
                todo.append(child)
    keep |= {pa for pa in snap.tables if pa not in links}   # detached
    return keep


def _trimmed(snap, top, keep):
    return dataclasses.replace(
        snap, root=top,
        tables={pa: t for pa, t in snap.tables.items() if pa in keep})


def _crumb(snap, path) -> str:
    links = _linked(snap)
    parts = []
    for pa in path[:-1]:
        t = snap.tables[pa]
        child = path[path.index(pa) + 1]
        idx = links[child][1]
        parts.append(f"L{t.level} 0x{pa:x} [{idx}]")
    return " &gt; ".join(parts)


def tree_legend_html() -> str:
    """The tree's marks as one line of HTML (the picture leaves its own
    legend out to save room)."""
    items = []
    for key in ("changed", "cached", "stale"):
        sym, colour, meaning = MARKS[key]
        fc = "white" if key == "stale" else "black"
        items.append(f'<span style="background:{colour};color:{fc};'
                     f'padding:0 4px;font-weight:bold">{sym}</span> '
                     f"{html.escape(meaning)}")
    items.append("dashed: detached table; bold: new table")
    return ('<div class="iv-legend-line">' + " &nbsp; ".join(items)
            + "</div>")


def _fit_svg(svg: str) -> str:
    """Let the SVG scale to its box (up to 1.4 times its size), keeping
    its aspect ratio, centred."""
    svg = svg[svg.find("<svg"):]
    m = re.search(r'<svg width="([\d.]+)pt" height="([\d.]+)pt"', svg)
    if not m:
        return svg
    w, h = float(m.group(1)), float(m.group(2))
    return svg.replace(
        m.group(0), f'<svg width="100%" height="100%" style="max-width:'
        f'{w * 1.4:.0f}pt;max-height:{h * 1.4:.0f}pt"', 1)


def _dot_to_svg(dot: str) -> str:
    with _TREE_LOCK:
        svg = _TREE_CACHE.get(dot)
    if svg is None:
        import graphviz
        svg = _fit_svg(graphviz.Source(dot).pipe(format="svg")
                       .decode("utf-8"))
    with _TREE_LOCK:
        _TREE_CACHE[dot] = svg
        _TREE_CACHE.move_to_end(dot)
        while len(_TREE_CACHE) > _TREE_CACHE_MAX:
            _TREE_CACHE.popitem(last=False)
    return svg


def tree_view(sim, step: int, above: bool = False, title: str = ""):
    """``(crumb_html, svg)`` of ``step``: the tree from the focus
    table down (everything when ``above``), the changes against the step
    before marked, the TLB's entries placed on their slots."""
    from ..render.tree import slot_size, tree_dot
    st = sim.states[step]
    snap = st.pgtable
    prev = sim.states[step - 1].pgtable if step > 0 else None
    path = focus_path(sim, step)
    top = path[-1]
    tlb = st.tlb
    crumb = ""
    if not above and top != snap.root:
        keep = _subtree(snap, top)
        t = snap.tables[top]
        lo, hi = t.iova, t.iova + len(t.entries) * slot_size(snap, t.level)
        tlb = tuple(e for e in st.tlb if e.iova < hi and e.iova + e.size > lo)
        if prev is not None:
            pkeep = keep | (_subtree(prev, top) if top in prev.tables
                            else set())
            pkeep &= set(prev.tables)
            prev = _trimmed(prev, top if top in prev.tables else prev.root,
                            pkeep)
        snap = _trimmed(snap, top, keep)
        crumb = (f"levels above collapsed: {_crumb(st.pgtable, path)} "
                 f"&gt; <b>L{t.level} 0x{top:x}</b>")
    elif top != snap.root:
        crumb = f"focus: L{snap.tables[top].level} 0x{top:x}"
    dot = tree_dot(snap, prev=prev, tlb=tlb, title=title or None,
                   legend=False)
    return crumb, _dot_to_svg(dot)


# ---------------------------------------------------------------- timeline

#: Geometry of the compact timeline, in SVG user units (about pixels).
_W, _LEFT, _RIGHT, _LANE, _TOP, _BOTTOM = 1300, 150, 12, 30, 18, 34

_MARK_PATHS = {          # matplotlib marker -> SVG path around (0, 0), r=1
    "o": None, ".": None,
    "s": "M-1,-1H1V1H-1Z",
    "D": "M0,-1.3L1.3,0L0,1.3L-1.3,0Z", "d": "M0,-1.3L0.9,0L0,1.3L-0.9,0Z",
    "^": "M0,-1.2L1.1,0.9H-1.1Z", "v": "M0,1.2L1.1,-0.9H-1.1Z",
    ">": "M1.2,0L-0.9,1.1V-1.1Z",
    "X": "M-1,-0.6L-0.6,-1L0,-0.4L0.6,-1L1,-0.6L0.4,0L1,0.6L0.6,1L0,0.4"
         "L-0.6,1L-1,0.6L-0.4,0Z",
    "|": "M0,-1.3V1.3",
}


def _marker(kind, x, y, r, colour, edge=None):
    path = _MARK_PATHS.get(kind)
    stroke = (f' stroke="{edge}" stroke-width="1" '
              'vector-effect="non-scaling-stroke"' if edge else "")
    if path is None:
        rr = r * (0.4 if kind == "." else 1)
        return (f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{rr:.1f}" '
                f'fill="{colour}"{stroke}/>')
    if kind == "|":
        return (f'<path d="{path}" transform="translate({x:.1f},{y:.1f}) '
                f'scale({r:.1f})" stroke="{colour}" stroke-width="1.8" '
                'vector-effect="non-scaling-stroke" fill="none"/>')
    return (f'<path d="{path}" transform="translate({x:.1f},{y:.1f}) '
            f'scale({r:.1f})" fill="{colour}"{stroke}/>')


def timeline_svg(run) -> tuple[str, list]:
    """``(svg, edges)``: the whole run as a compact swim-lane timeline (the
    lanes, markers, windows and colours of
    :func:`iommu_viz.render.timeline.timeline_figure`, drawn as SVG so a
    new run costs milliseconds, not a matplotlib redraw), and for each
    step the position (a fraction of the width) of the boundary after it,
    where the Explorer's mask starts."""
    from ..render import timeline as T
    events = list(run.events)
    lanes = T.lanes_of(run)
    n = max(1, len(events))
    h = _TOP + _LANE * len(lanes) + _BOTTOM
    dx = (_W - _LEFT - _RIGHT) / n
    x = lambda step: _LEFT + (step + 0.5) * dx             # noqa: E731
    y = {a: _TOP + _LANE * (i + 0.5) for i, a in enumerate(lanes)}
    out = [f'<svg class="iv-tl-svg" viewBox="0 0 {_W} {h}" width="100%" '
           'preserveAspectRatio="xMinYMin meet" font-family="sans-serif" '
           'font-size="10" xmlns="http://www.w3.org/2000/svg"><defs>']
    for kind, (colour, hatch) in T.WINDOW_STYLE.items():
        angle = 45 if hatch[0] == "/" else -45
        out.append(f'<pattern id="iv-h-{kind}" width="6" height="6" '
                   f'patternUnits="userSpaceOnUse" patternTransform='
                   f'"rotate({angle})"><line x1="0" y1="0" x2="0" y2="6" '
                   f'stroke="{colour}" stroke-width="1"/></pattern>')
    out.append("</defs>")
    for a in lanes:
        out.append(f'<line x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{y[a]:.1f}" '
                   f'y2="{y[a]:.1f}" stroke="#ddd"/><text x="{_LEFT - 6}" '
                   f'y="{y[a] + 3:.1f}" text-anchor="end">'
                   f"{html.escape(T.LANE_LABELS[a])}</text>")
    for kind, first, last, _ in T.hazard_windows(run):
        colour = T.WINDOW_STYLE[kind][0]
        x0, x1 = x(first) - dx / 2, x(last) + dx / 2
        out.append(f'<g class="iv-window-{kind}"><rect x="{x0:.1f}" '
                   f'y="{_TOP}" width="{x1 - x0:.1f}" height='
                   f'"{_LANE * len(lanes)}" fill="{colour}" '
                   f'fill-opacity="0.15"/><rect x="{x0:.1f}" y="{_TOP}" '
                   f'width="{x1 - x0:.1f}" height="{_LANE * len(lanes)}" '
                   f'fill="url(#iv-h-{kind})" fill-opacity="0.5" stroke='
                   f'"{colour}"/><text x="{(x0 + x1) / 2:.1f}" y="'
                   f'{_TOP + 9 + (0 if kind == "stale" else 10)}" '
                   f'text-anchor="middle" fill="{colour}" font-size="9">'
                   f"{kind} {first}..{last}</text></g>")
    shown, notes = None, 0
    for ev in events:
        if ev.step and ev.time_us != events[ev.step - 1].time_us:
            xj = x(ev.step) - dx / 2
            out.append(f'<line x1="{xj:.1f}" x2="{xj:.1f}" y1="{_TOP}" '
                       f'y2="{h - _BOTTOM}" stroke="#777" '
                       'stroke-dasharray="2,2"/>')
        tick = n <= 40 or ev.step % max(1, n // 30) == 0
        if tick:
            ms = (f"{ev.time_us / 1000:g}ms" if ev.time_us != shown else "")
            shown = ev.time_us
            out.append(f'<text x="{x(ev.step):.1f}" y="{h - _BOTTOM + 12}" '
                       f'text-anchor="middle" font-size="9">{ev.step}'
                       f'</text><text x="{x(ev.step):.1f}" y="'
                       f'{h - _BOTTOM + 23}" text-anchor="middle" '
                       f'font-size="8" fill="#444">{ms}</text>')
        if ev.actor not in y:
            continue
        oc = ev.detail.get("outcome") if ev.kind == "access" else None
        if oc in T.OUTCOME_STYLE:
            _, mk, colour = T.OUTCOME_STYLE[oc]
            out.append(_marker(mk, x(ev.step), y[ev.actor], 6.5, colour,
                               edge="black"))
            allowed = ev.detail.get("allowed") or ()
            if len(allowed) > 1:
                # staggered below and above, so neighbours do not overlap
                dy = 16 if notes % 2 == 0 else -10
                notes += 1
                out.append(f'<text x="{x(ev.step):.1f}" y="'
                           f'{y[ev.actor] + dy:.1f}" text-anchor="middle" '
                           'font-size="8">' + "/".join(sorted(allowed))
                           + "</text>")
        else:
            _, mk, colour = T.CATEGORY_STYLE[T._category(ev)]
            out.append(_marker(mk, x(ev.step), y[ev.actor], 4.5, colour))
    out.append(f'<text x="{_LEFT}" y="{h - 1}" font-size="9" fill="#444">'
               "step (logical time below it where it changes; under an "
               "access: the outcomes allowed)</text></svg>")
    edges = [(x(s) + dx / 2) / _W for s in range(len(events))]
    return "".join(out), edges


def timeline_png(run) -> bytes:
    """The whole run's timeline as the notebooks draw it (matplotlib,
    :func:`iommu_viz.render.timeline.timeline_figure`), as PNG."""
    from ..render.timeline import timeline_figure
    fig = timeline_figure(run, legend=False)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, facecolor="white")
    return buf.getvalue()
