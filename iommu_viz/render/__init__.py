"""Views of a recorded run: page-table trees, TLB tables, timelines, plain
text, and exports. Every view reads a run (``.events``, ``.states``,
``.config``, ``.ops``) or one of its States and nothing else.

Jupyter display helpers: the ``*_repr_*`` functions take the object as
their only argument, so they can be attached as methods, e.g.::

    State._repr_html_ = state_repr_html
    PgtableSnapshot._repr_svg_ = snapshot_repr_svg
    Simulation._repr_html_ = run_repr_html

(:func:`install_reprs` does exactly that for the classes it is given).
"""

from __future__ import annotations

import html
import re

from .export import (FORMATS, perfetto_json, render_run, run_from_json,
                     run_to_json, to_png, to_svg)
from .text import caption, run_text
from .timeline import (hazard_windows, timeline_compare, timeline_figure,
                       timeline_text)
from .tlb import tlb_html, tlb_text
from .tree import tree_dot, tree_layout, tree_svg, tree_text

__all__ = [
    "tree_dot", "tree_svg", "tree_text", "tree_layout",
    "tlb_html", "tlb_text",
    "timeline_figure", "timeline_compare", "timeline_text", "hazard_windows",
    "run_text", "caption",
    "to_svg", "to_png", "perfetto_json", "run_to_json", "run_from_json",
    "render_run", "FORMATS",
    "inline_svg", "state_html", "run_html",
    "state_repr_html", "snapshot_repr_svg", "run_repr_html", "install_reprs",
]


def inline_svg(svg: str) -> str:
    """SVG text without its XML prolog, ready to sit inside HTML."""
    m = re.search(r"<svg\b", svg)
    return svg[m.start():] if m else svg


def _tree_block(snapshot, prev=None, tlb=(), title=None) -> str:
    """The tree as inline SVG, or as preformatted text when Graphviz's
    ``dot`` program is not installed."""
    try:
        return inline_svg(tree_svg(snapshot, prev=prev, tlb=tlb,
                                   title=title))
    except Exception as e:  # graphviz.ExecutableNotFound and friends
        note = html.escape(f"(Graphviz unavailable: {type(e).__name__}; "
                           "showing the text view)")
        return (f"<p><i>{note}</i></p><pre>"
                + html.escape(tree_text(snapshot, prev=prev, tlb=tlb))
                + "</pre>")


def state_html(state, prev=None, title=None) -> str:
    """One State as HTML: the page-table tree (SVG, changes against
    ``prev``, a State or a PgtableSnapshot) and the TLB tables."""
    if prev is not None and hasattr(prev, "pgtable"):
        prev = prev.pgtable
    return ('<div class="iommu-viz-state">'
            + _tree_block(state.pgtable, prev=prev, tlb=state.tlb,
                          title=title)
            + tlb_html(state) + "</div>")


def run_html(run, step=None) -> str:
    """A run at ``step`` (default the last) as HTML: caption, tree, TLB
    and the timeline up to the step (inline SVG: faster to make than a
    PNG, and sharp at any zoom)."""
    from .text import step_index
    i = step_index(run, step)
    st = run.states[i]
    prev = run.states[i - 1] if i > 0 else None
    fig = timeline_figure(run, upto=None if i == len(run.events) - 1 else i)
    return ('<div class="iommu-viz-run">'
            f"<p><b>{html.escape(caption(run, i))}</b></p>"
            + state_html(st, prev)
            + '<div class="iommu-viz-timeline">' + inline_svg(to_svg(fig))
            + "</div></div>")


def state_repr_html(self) -> str:
    """``_repr_html_`` for State."""
    return state_html(self)


def snapshot_repr_svg(self) -> str:
    """``_repr_svg_`` for PgtableSnapshot."""
    return inline_svg(tree_svg(self))


def run_repr_html(self) -> str:
    """``_repr_html_`` for Simulation (and any recorded run)."""
    if not getattr(self, "events", None):
        return "<p>(empty run)</p>"
    return run_html(self)


def install_reprs(state_cls=None, snapshot_cls=None, run_cls=None) -> None:
    """Attach the Jupyter display hooks to the classes given."""
    if state_cls is not None:
        state_cls._repr_html_ = state_repr_html
    if snapshot_cls is not None:
        snapshot_cls._repr_svg_ = snapshot_repr_svg
    if run_cls is not None:
        run_cls._repr_html_ = run_repr_html
