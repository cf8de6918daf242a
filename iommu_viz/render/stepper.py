"""A run as one self-contained HTML page that steps through it.

Every step is precomputed, as Python Tutor precomputes its traces: the
page-table tree (SVG, laid out by Graphviz here, changes against the step
before), the TLB tables, the caption, and the timeline of the whole run
(one SVG) with a cursor on the step and a veil over the steps still to
come. A few lines of inline JavaScript show a step: first / previous /
next / last buttons, a slider, and the arrow, Home and End keys. The page
loads nothing (no network, no external script), so it can be attached to
a mail; identical trees and TLB views are stored once.

Example::

    >>> from iommu_viz import scenarios
    >>> from iommu_viz.render.stepper import stepper_html
    >>> page = stepper_html(scenarios.run("seed", fast=True))
    >>> page.startswith("<!DOCTYPE html>") and "src=" not in page
    True
"""

from __future__ import annotations

import html
import json

from . import inline_svg
from .export import to_svg
from .text import caption, step_index
from .timeline import timeline_figure
from .tlb import tlb_html
from .tree import tree_dot

__all__ = ["stepper_html", "stepper_data"]


def _timeline(run):
    """The whole run's timeline as SVG, and where (as fractions of the
    picture) the plot's steps lie: ``(svg, x0, x1, top, height)``."""
    fig = timeline_figure(run)
    box = fig.axes[0].get_position()
    return (inline_svg(to_svg(fig)), box.x0, box.x1, 1 - box.y1,
            box.y1 - box.y0)


def stepper_data(run) -> dict:
    """What the page shows, step by step: ``trees`` and ``tlbs`` (unique
    SVG / HTML texts), ``steps`` (``caption``, ``tree`` and ``tlb``
    indexes), the ``timeline`` SVG and the plot's extent in it."""
    import graphviz
    n = len(run.events)
    trees, tree_ix, tlbs, tlb_ix, steps = [], {}, [], {}, []
    for i in range(n):
        st = run.states[i]
        prev = run.states[i - 1].pgtable if i else None
        dot = tree_dot(st.pgtable, prev=prev, tlb=st.tlb)
        if dot not in tree_ix:
            tree_ix[dot] = len(trees)
            trees.append(inline_svg(graphviz.Source(dot).pipe(
                format="svg").decode("utf-8")))
        tlb = tlb_html(st)
        if tlb not in tlb_ix:
            tlb_ix[tlb] = len(tlbs)
            tlbs.append(tlb)
        steps.append({"caption": caption(run, i), "tree": tree_ix[dot],
                      "tlb": tlb_ix[tlb]})
    svg, x0, x1, top, height = _timeline(run)
    return {"trees": trees, "tlbs": tlbs, "steps": steps,
            "timeline": svg, "plot": [x0, x1, top, height]}


_CSS = """
body { font-family: sans-serif; margin: 8px 16px; color: #222; }
h1 { font-size: 16px; margin: 4px 0; }
#iv-controls { position: sticky; top: 0; background: white; padding: 6px 0;
  border-bottom: 1px solid #ccc; z-index: 2; }
#iv-controls button { font-size: 14px; min-width: 3em; }
#iv-slider { width: 40%; vertical-align: middle; }
#iv-caption { font-family: monospace; font-size: 13px; padding: 4px 6px;
  border-left: 4px solid #0072B2; background: #f4f8fb; margin: 6px 0; }
#iv-panes { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
#iv-tree svg { max-width: 100%; height: auto; }
#iv-tree { flex: 1 1 480px; overflow: auto; }
#iv-tlb { flex: 1 1 420px; font-size: 12px; overflow: auto; }
#iv-tlb table { border-collapse: collapse; font-size: 11px; }
#iv-timeline { position: relative; width: 100%; margin-top: 8px; }
#iv-timeline svg { display: block; width: 100%; height: auto; }
#iv-cursor { position: absolute; width: 0; border-left: 2px solid black; }
#iv-veil { position: absolute; background: rgba(255,255,255,0.75); }
pre { font-size: 12px; background: #f6f6f6; padding: 6px; }
"""

_JS = """
(function () {
  var D = JSON.parse(document.getElementById('iv-data').textContent);
  var n = D.steps.length, cur = 0;
  function $(id) { return document.getElementById(id); }
  var slider = $('iv-slider');
  slider.max = n - 1;
  function show(i) {
    i = Math.max(0, Math.min(n - 1, i));
    var s = D.steps[i], p = D.plot, w = (p[1] - p[0]) / n;
    if (i !== cur || !$('iv-tree').innerHTML) {
      $('iv-tree').innerHTML = D.trees[s.tree];
      $('iv-tlb').innerHTML = D.tlbs[s.tlb];
    }
    cur = i;
    $('iv-caption').textContent = s.caption;
    $('iv-step').textContent = 'step ' + i + ' of 0..' + (n - 1);
    slider.value = i;
    var c = $('iv-cursor'), v = $('iv-veil');
    c.style.left = (100 * (p[0] + (i + 0.5) * w)) + '%';
    c.style.top = v.style.top = (100 * p[2]) + '%';
    c.style.height = v.style.height = (100 * p[3]) + '%';
    v.style.left = (100 * (p[0] + (i + 1) * w)) + '%';
    v.style.width = (100 * (n - 1 - i) * w) + '%';
    $('iv-first').disabled = $('iv-prev').disabled = i === 0;
    $('iv-next').disabled = $('iv-last').disabled = i === n - 1;
    document.body.setAttribute('data-step', i);
  }
  $('iv-first').onclick = function () { show(0); };
  $('iv-prev').onclick = function () { show(cur - 1); };
  $('iv-next').onclick = function () { show(cur + 1); };
  $('iv-last').onclick = function () { show(n - 1); };
  slider.oninput = function () { show(parseInt(slider.value, 10)); };
  document.addEventListener('keydown', function (e) {
    if (e.target.tagName === 'INPUT' && e.target !== slider) return;
    var to = {ArrowLeft: cur - 1, ArrowRight: cur + 1, Home: 0,
              End: n - 1}[e.key];
    if (to !== undefined) { show(to); e.preventDefault(); }
  });
  $('iv-timeline').insertAdjacentHTML('afterbegin', D.timeline);
  $('iv-tree').innerHTML = '';
  show(parseInt(document.body.getAttribute('data-start'), 10) || 0);
})();
"""


def _script_json(data) -> str:
    """JSON that cannot end the <script> element holding it."""
    return json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")


def stepper_html(run, step=None, title=None) -> str:
    """``run`` as one HTML page that steps through it, opening at
    ``step`` (default 0). ``title`` defaults to the run's configuration.
    The scenario file of the run is included below the pictures."""
    n = len(run.events)
    start = 0 if step is None else step_index(run, step)
    data = stepper_data(run)
    from .text import _config_line
    title = title or _config_line(run)
    try:
        from ..scenarios import to_text
        scenario = to_text(run)
    except (ImportError, AttributeError, ValueError):
        scenario = None
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style></head>",
        f'<body data-start="{start}">',
        f"<h1>{html.escape(title)}</h1>",
        '<div id="iv-controls">'
        '<button id="iv-first" title="first step (Home)">|&lt;</button> '
        '<button id="iv-prev" title="previous step (left arrow)">&lt;</button> '
        '<button id="iv-next" title="next step (right arrow)">&gt;</button> '
        '<button id="iv-last" title="last step (End)">&gt;|</button> '
        f'<input id="iv-slider" type="range" min="0" max="{n - 1}" '
        f'value="{start}" aria-label="step"> <span id="iv-step"></span>'
        '<div id="iv-caption"></div></div>',
        '<div id="iv-panes"><div id="iv-tree"></div>'
        '<div id="iv-tlb"></div></div>',
        '<div id="iv-timeline"><div id="iv-veil"></div>'
        '<div id="iv-cursor"></div></div>',
    ]
    if scenario:
        parts.append("<details><summary>The run as a scenario file "
                     "(<code>iommu-viz run FILE</code>)</summary><pre>"
                     + html.escape(scenario) + "</pre></details>")
    parts.append('<p style="font-size:smaller">Made by iommu-viz. Outcomes '
                 "under an access are the ones the architecture allows; "
                 "the SMMU personality picked the one shown.</p>")
    parts.append('<script type="application/json" id="iv-data">'
                 + _script_json(data) + "</script>")
    parts.append(f"<script>{_JS}</script></body></html>")
    return "\n".join(parts) + "\n"
