"""The Explorer's pictures, read from a recorded run: the tree focused on
what changed, the TLB, and a compact timeline of the whole run with the
position of each step on it.

* **Focus.** The tree shows the table that holds the latest change (up to
  the step shown) and everything under it; the levels above collapse into
  a one-line path (``L0 0x7f000000 [0] > L1 0x7f001000 [1]``). A change is
  a table allocated, freed or with an entry written since the step
  before; a detached table (allocated, not yet linked, e.g. inside
  arm_lpae_split_blk_unmap) counts for the table whose slot will link it.
* **Compact timeline.** :func:`iommu_viz.render.timeline.timeline_figure`
  of the whole run, without its legend margin and with lanes closer
  together; the Explorer masks the steps after the one shown, so one
  picture per run serves every step.

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

__all__ = ["focus_path", "tree_view", "timeline_png", "tree_legend_html"]

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

#: Compact geometry: inches per lane, bottom and top margins, width.
_LANE_IN, _BOTTOM_IN, _TOP_IN, _LEFT_IN, _RIGHT_IN = 0.36, 0.5, 0.28, 1.5, 0.15
TIMELINE_WIDTH_IN = 14.4
TIMELINE_DPI = 90


@dataclasses.dataclass
class LightRun:
    """What the timeline reads of a run (events, the hazards of each state
    and the config), small enough to hand to a worker process."""

    events: list
    states: list
    config: dict

    @classmethod
    def of(cls, sim):
        return cls(list(sim.events),
                   [_LightState(s.hazards, bool(s.flush_queue))
                    for s in sim.states],
                   dict(sim.config))


@dataclasses.dataclass
class _LightState:
    hazards: tuple
    flush_queue: bool


def timeline_png(run) -> tuple[bytes, list]:
    """``(png, edges)``: the whole run's compact timeline, and for each
    step the horizontal position (a fraction of the picture's width) of
    the boundary after it, where the Explorer's mask starts."""
    from ..render.timeline import lanes_of, timeline_figure
    lanes = len(lanes_of(run))
    fig = timeline_figure(run, legend=False, width=TIMELINE_WIDTH_IN)
    h = _BOTTOM_IN + _TOP_IN + lanes * _LANE_IN + 0.25
    fig.set_size_inches(TIMELINE_WIDTH_IN, h)
    fig.subplots_adjust(left=_LEFT_IN / TIMELINE_WIDTH_IN,
                        right=1 - _RIGHT_IN / TIMELINE_WIDTH_IN,
                        bottom=_BOTTOM_IN / h, top=1 - _TOP_IN / h)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=TIMELINE_DPI, facecolor="white")
    ax = fig.axes[0]
    pos = ax.get_position()
    x0, x1 = ax.get_xlim()
    edges = [pos.x0 + (s + 0.5 - x0) / (x1 - x0) * pos.width
             for s in range(len(run.events))]
    return buf.getvalue(), edges
