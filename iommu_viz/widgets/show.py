"""Small display helpers for the notebooks: turn the renderers' output into
objects Jupyter shows, without pyplot or the inline backend.

* :func:`show_tree` - the page-table tree of a table, snapshot or recorded
  State as an SVG (graphviz ``dot``, :func:`iommu_viz.render.tree.tree_svg`).
* :func:`show_figure` - a matplotlib ``Figure`` (e.g. a timeline) as PNG.
* :func:`find_step` - the first step of a run whose event names a kernel
  function (``Event.func``) or kind.
* :func:`events_table` - a run's events as an HTML table.

They only format what the model recorded; they model no kernel behaviour.
"""

from __future__ import annotations

import html
import io

__all__ = ["show_tree", "show_figure", "find_step", "events_table"]


def _snapshot_and_tlb(obj):
    """(PgtableSnapshot, tlb entries) from a table, snapshot or State."""
    if hasattr(obj, "pgtable") and hasattr(obj, "tlb"):          # State
        return obj.pgtable, obj.tlb
    if hasattr(obj, "snapshot") and callable(obj.snapshot):      # a table
        return obj.snapshot(), ()
    if hasattr(obj, "tables") and hasattr(obj, "root"):          # snapshot
        return obj, ()
    raise TypeError(f"cannot draw a page-table tree from {type(obj).__name__}"
                    "; give an LpaeTable, a PgtableSnapshot or a State")


def show_tree(obj, prev=None, title=None, legend=True):
    """An IPython ``SVG`` of the page-table tree of ``obj`` (an LpaeTable
    or V7sTable, a PgtableSnapshot, or a recorded State, whose TLB entries
    are marked too). ``prev`` (same kinds) highlights what changed."""
    from IPython.display import SVG

    from ..render.tree import tree_svg
    snap, tlb = _snapshot_and_tlb(obj)
    prev_snap = _snapshot_and_tlb(prev)[0] if prev is not None else None
    return SVG(tree_svg(snap, prev=prev_snap, tlb=tlb, title=title,
                        legend=legend))


def show_figure(fig, dpi=80):
    """An IPython ``Image`` (PNG) of a matplotlib Figure."""
    from IPython.display import Image
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white")
    return Image(data=buf.getvalue(), format="png")


def find_step(sim, name: str, after: int = -1) -> int:
    """The first step after ``after`` whose event's kernel function
    contains ``name`` or whose kind is ``name``."""
    for ev in sim.events[after + 1:]:
        if name in ev.func or ev.kind == name:
            return ev.step
    raise ValueError(f"no event after step {after} names {name!r}")


class _Html:
    def __init__(self, text):
        self.text = text

    def _repr_html_(self):
        return self.text


def events_table(sim, first=0, last=None, actors=None):
    """The run's events ``first..last`` (inclusive) as an HTML table: step,
    time, actor, kernel function, what happened. ``actors`` filters."""
    last = len(sim.events) - 1 if last is None else last
    rows = []
    for ev in sim.events[first:last + 1]:
        if actors and ev.actor not in actors:
            continue
        rows.append(f"<tr><td>{ev.step}</td><td>{ev.time_us / 1000:g} ms"
                    f"</td><td>{ev.actor}</td><td><code>"
                    f"{html.escape(ev.func)}</code></td><td style="
                    f'"text-align:left">{html.escape(ev.text)}</td></tr>')
    return _Html('<table><tr><th>step</th><th>time</th><th>actor</th>'
                 '<th>function</th><th style="text-align:left">what '
                 'happened</th></tr>' + "".join(rows) + "</table>")
