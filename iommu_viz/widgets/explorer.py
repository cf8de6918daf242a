"""The Explorer: step through a recorded scenario run and flip its options.

``Explorer("seed", fast=True, sync_after=False)`` runs the named scenario
(:mod:`iommu_viz.scenarios`) and shows, for one step at a time, the
page-table tree, the TLB, the timeline up to that step, a one-line caption
naming the kernel function or hardware rule that acted
(:meth:`Simulation.caption`) and the outcome of the device's accesses in
words (:mod:`iommu_viz.widgets.outcome`).

Every picture is read from the recorded run; stepping back shows the state
recorded at an earlier step, nothing is undone. Changing a toggle re-runs
the scenario with the new options and keeps the current step where it still
exists (otherwise the last step).

The toggles and the option they set (the model's meaning is in
:class:`~iommu_viz.sim.Simulation` and :mod:`iommu_viz.scenarios`):

``scenario``         which scenario (its own defaults are loaded)
``fmt``              page-table format: LPAE (io-pgtable-arm.c, 64-bit
                     descriptors, 2 MiB blocks) or v7s
                     (io-pgtable-arm-v7s.c, 32-bit descriptors, 1 MiB
                     sections, 64 KiB large pages as CONT groups of 16)
``kernel``           era: v4.20, v5.4, v6.12, v6.13
``strict``           strict (invalidate on unmap) or lazy (flush queue)
``unmap``            ``iommu_unmap``; ``iommu_unmap_fast`` then
                     ``iommu_iotlb_sync``; ``iommu_unmap_fast`` with no sync
``split_sync``       the split invalidates and syncs on its own, as
                     arm_lpae_split_blk_unmap and arm_v7s_split_blk_unmap
                     did in v4.20 (ticked = on;
                     unticked = off; the era's default is not forced)
``deferred_gather``  pages added to the gather wait for the caller's sync
``bbml``             SMMU_IDR3.BBML level 0, 1, 2
``personality``      typical, adversarial, coherent (QEMU-like)
``speculate``        the SMMU speculatively caches the neighbouring page
``ttl_hints``        the SMMU honours the driver's TTL hint (v5.7+ drivers)
``split_nt``         the split follows the BBML1 nT sequence (an experiment)

Headless use (tests, scripts)::

    >>> ex = Explorer("seed", fast=True, sync_after=False)
    >>> ex.step = 16
    >>> ex.caption_text.startswith("SMMU translation")
    True
    >>> ex.set_option("split_sync", True)
    >>> ex.sim.accesses[1].outcome
    'fault'
"""

from __future__ import annotations

import asyncio
import html
import io
import time

from .. import scenarios
from ..pgtable.common import KERNELS, era_at_least
from ..sim import PERSONALITIES
from .outcome import access_summary, access_words, explain_access

__all__ = ["Explorer", "UNMAP_CHOICES", "TOGGLE_NAMES", "FORMATS"]

#: The ``unmap`` dropdown: label -> (fast, sync_after).
UNMAP_CHOICES = {
    "iommu_unmap": (False, True),
    "iommu_unmap_fast + iotlb_sync": (True, True),
    "iommu_unmap_fast, no sync": (True, False),
}

TOGGLE_NAMES = ("scenario", "fmt", "kernel", "strict", "unmap", "split_sync",
                "deferred_gather", "bbml", "personality", "speculate",
                "ttl_hints", "split_nt")

_SIM_KEYS = ("fmt", "kernel", "strict", "bbml", "personality", "ttl_hints",
             "walk_cache", "tlb_entries", "split_sync", "deferred_gather",
             "split_nt")

#: The ``fmt`` toggle: label -> scenario option value.
FORMATS = {"LPAE": "lpae", "v7s": "v7s"}

#: How the timeline hatches its shaded windows (matplotlib hatch marks,
#: as drawn by render.timeline; tests/widgets checks they agree). The
#: colours are the matching access outcomes' (OUTCOME_STYLE).
_WINDOW_HATCH = {"stale": "//", "conflict": "\\\\"}

_CSS = """
<style>
.iv-explorer .iv-caption { font-family: monospace; font-size: 13px;
  padding: 4px 6px; border-left: 4px solid #0072B2; background: #f4f8fb; }
.iv-explorer .iv-pane { overflow: auto; border: 1px solid #ccc;
  padding: 2px; background: white; }
.iv-explorer .iv-outcome li { margin-bottom: 4px; }
.iv-explorer .iv-later { color: #888; }
.iv-explorer .iv-now { background: #fff3c4; }
.iv-explorer .iv-error { color: #a00; font-weight: bold; }
.iv-explorer .iv-tree-svg svg { max-width: 100%; height: auto; }
.iv-explorer .iv-tlb table { font-size: 11px; border-collapse: collapse; }
.iv-explorer .iv-tlb td, .iv-explorer .iv-tlb th {
  padding: 1px 4px !important; line-height: 1.3; vertical-align: top; }
.iv-explorer .iv-tlb td span[style*="monospace"] { white-space: nowrap; }
.iv-explorer .iv-tlb caption { white-space: nowrap; }
.iv-explorer .iv-tlb p { margin: 2px 0; }
.iv-explorer .iv-tlb h4, .iv-explorer .iv-tlb caption { font-size: 12px;
  margin: 4px 0 2px 0; }
.iv-explorer .iv-outcome { font-size: 12px; line-height: 1.35; }
</style>
"""


_POOL = None


def _pool():
    """One worker thread for the tree layout (a ``dot`` subprocess)."""
    global _POOL
    if _POOL is None:
        from concurrent.futures import ThreadPoolExecutor
        _POOL = ThreadPoolExecutor(max_workers=1,
                                   thread_name_prefix="iommu-viz-tree")
    return _POOL


def _era_split_sync(kernel: str) -> bool:
    """Whether the era's split syncs on its own: only v4.20 (b6b65ca20bc9
    for arm_lpae_split_blk_unmap; arm_v7s_split_blk_unmap likewise); the
    v5.4 series moved the page to the gather in both formats."""
    return kernel == "v4.20"


def _era_splits(kernel: str) -> bool:
    """Partial unmap of a block splits it until v6.12; v6.13 refuses it
    (LPAE 33729a5fc0ca, v7s fd50651636fb)."""
    return not era_at_least(kernel, (6, 13))


def _tree_title(snap) -> str:
    """A line naming the table's format under the tree, e.g. "v7s (short
    descriptor, 32-bit), 4K granule, levels 1..2"."""
    kind = {"lpae": "LPAE (long descriptor, 64-bit)",
            "v7s": "v7s (short descriptor, 32-bit)"}.get(snap.fmt, snap.fmt)
    return (f"{kind}, {snap.granule >> 10}K granule, levels "
            f"{snap.levels[0]}..{snap.levels[-1]}")


def _effective_options(name: str, given: dict, sim) -> dict:
    """The full option set a run used: what was given, else what the
    scenario's own defaults made the run do (read back from the run's
    ``config`` and recorded ``ops``)."""
    opts = dict(scenarios.DEFAULTS)
    for k in _SIM_KEYS:
        if k in sim.config:
            opts[k] = sim.config[k]
    kinds = {op["op"] for op in sim.ops}
    opts["fast"] = given.get("fast", "unmap_fast" in kinds)
    if opts["fast"]:
        opts["sync_after"] = given.get("sync_after", "iotlb_sync" in kinds)
    else:
        opts["sync_after"] = given.get("sync_after", True)
    opts["speculate"] = given.get("speculate", "speculate" in kinds)
    opts.update(given)
    return opts


class Explorer:
    """Interactive view of one scenario run (ipywidgets 8).

    ``scenario`` names a scenario of :func:`iommu_viz.scenarios.catalog`;
    ``options`` are its keyword options; ``step`` the step to show first:
    an int, or a string naming the first event whose kernel function
    (``Event.func``) or kind contains it (e.g.
    ``"arm_lpae_split_blk_unmap"``); default 0.
    """

    def __init__(self, scenario: str = "seed", step=None, **options):
        import ipywidgets as W
        self._W = W
        scenarios.get(scenario)              # clear error for a bad name
        unknown = set(options) - set(scenarios.DEFAULTS)
        if unknown:
            raise ValueError("unknown Explorer option(s) "
                             + ", ".join(sorted(unknown)) + "; known: "
                             + ", ".join(sorted(scenarios.DEFAULTS)))
        self.scenario = scenario
        self._runs: dict = {}                # options key -> (sim, renders)
        sim = scenarios.run(scenario, **options)
        self.options = _effective_options(scenario, options, sim)
        self._store(sim)
        self.sim = sim
        self._renders = self._runs[self._key()][1]
        self._quiet = False
        self.error = ""
        self.last_redraw_ms = 0.0
        self._build()
        self._load_toggles()
        self._set_bounds()
        self.step = self._resolve_step(step)
        self._show()

    # ------------------------------------------------------------ runs
    def _key(self, scenario=None, options=None):
        o = self.options if options is None else options
        return (scenario or self.scenario,
                tuple(sorted((k, repr(v)) for k, v in o.items())))

    def _store(self, sim, key=None):
        if len(self._runs) > 16:
            self._runs.pop(next(iter(self._runs)))
        self._runs[key or self._key()] = (sim, {})

    def _rerun(self, scenario, options):
        """Run ``scenario`` with ``options``; on success make it current and
        keep the step where it still exists."""
        key = self._key(scenario, options)
        if key not in self._runs:
            try:
                sim = scenarios.run(scenario, **options)
            except Exception as e:          # shown, the old run stays
                self.error = f"{type(e).__name__}: {e}"
                self._load_toggles()
                self._show()
                return
            self._runs[key] = (sim, {})
        self.error = ""
        self.scenario = scenario
        self.options = dict(options)
        self.sim, self._renders = self._runs[key]
        step = self.step
        self._load_toggles()
        self._set_bounds()
        self._quiet = True
        try:
            self.slider.value = min(step, len(self.sim.events) - 1)
        finally:
            self._quiet = False
        self._show()

    def set_option(self, name: str, value) -> None:
        """Set one option (a scenario option, or ``unmap`` to a key of
        UNMAP_CHOICES, or ``scenario``) and re-run."""
        if name == "scenario":
            scenarios.get(value)
            sim = scenarios.run(value)
            opts = _effective_options(value, {}, sim)
            key = self._key(value, opts)
            if key not in self._runs:
                self._runs[key] = (sim, {})
            self._rerun(value, opts)
            return
        opts = dict(self.options)
        if name == "unmap":
            if value not in UNMAP_CHOICES:
                raise ValueError(f"unmap {value!r} is not one of "
                                 + ", ".join(repr(c) for c in UNMAP_CHOICES))
            opts["fast"], opts["sync_after"] = UNMAP_CHOICES[value]
        elif name in scenarios.DEFAULTS:
            if name == "fmt" and value not in FORMATS.values():
                raise ValueError(f"fmt {value!r} is not one of "
                                 + ", ".join(repr(f) for f in
                                             FORMATS.values()))
            if name == "kernel" and value not in KERNELS:
                raise ValueError(f"kernel {value!r} is not one of "
                                 + ", ".join(KERNELS))
            if name == "personality" and value not in PERSONALITIES:
                raise ValueError(f"personality {value!r} is not one of "
                                 + ", ".join(PERSONALITIES))
            if name == "bbml" and value not in (0, 1, 2):
                raise ValueError(f"bbml {value!r} must be 0, 1 or 2")
            if name == "split_sync" and value not in (None, True, False):
                raise ValueError(f"split_sync {value!r} must be None, True "
                                 "or False")
            opts[name] = value
        else:
            raise ValueError(f"no option {name!r}; choose one of "
                             + ", ".join(sorted(set(scenarios.DEFAULTS)
                                                | {"unmap", "scenario"})))
        if opts.get("fmt", "lpae") != "lpae":
            opts["split_nt"] = False      # nT is an LPAE block bit
        # the era's own behaviour is stored as None (not forced)
        if opts.get("split_sync") is not None and \
                opts["split_sync"] == _era_split_sync(opts["kernel"]):
            opts["split_sync"] = None
        self._rerun(self.scenario, opts)

    # ------------------------------------------------------------ widgets
    def _build(self):
        W = self._W
        desc = {"description_width": "initial"}
        lay = W.Layout(width="auto")
        t = {}
        t["scenario"] = W.Dropdown(
            options=[n for n, _ in scenarios.catalog()], description="scenario",
            style=desc, layout=lay)
        t["fmt"] = W.ToggleButtons(
            options=list(FORMATS.items()), style={"button_width": "60px"},
            tooltips=["long descriptor, 64-bit (io-pgtable-arm.c)",
                      "short descriptor, 32-bit (io-pgtable-arm-v7s.c)"])
        t["kernel"] = W.Dropdown(options=list(KERNELS), description="kernel",
                                 style=desc, layout=lay)
        t["strict"] = W.ToggleButtons(options=[("strict", True),
                                               ("lazy", False)],
                                      style={"button_width": "60px"},
                                      tooltips=["invalidate on unmap",
                                                "leave it to the flush queue"])
        t["unmap"] = W.Dropdown(options=list(UNMAP_CHOICES),
                                description="unmap", style=desc,
                                layout=lay)
        t["split_sync"] = W.Checkbox(description="split syncs itself (v4.20)",
                                     style=desc, indent=False, layout=lay)
        t["deferred_gather"] = W.Checkbox(description="deferred gather",
                                          style=desc, indent=False, layout=lay)
        t["bbml"] = W.Dropdown(options=[("BBML0", 0), ("BBML1", 1),
                                        ("BBML2", 2)],
                               description="break-before-make", style=desc,
                               layout=lay)
        t["personality"] = W.Dropdown(options=list(PERSONALITIES),
                                      description="SMMU", style=desc,
                                      layout=lay)
        t["speculate"] = W.Checkbox(
            description="speculative fill, next page", style=desc,
            indent=False, layout=lay,
            tooltip="the SMMU caches the neighbouring page by a speculative "
                    "walk")
        t["ttl_hints"] = W.Checkbox(description="TTL hints honoured",
                                    style=desc, indent=False, layout=lay)
        t["split_nt"] = W.Checkbox(
            description="split marks the block nT first", style=desc,
            indent=False, layout=lay,
            tooltip="an experiment: the BBML1 sequence (set nT, TLBI, "
                    "replace, TLBI); no kernel does this")
        for name, w in t.items():
            w.add_class("iv-toggle-" + name.replace("_", "-"))
            w.observe(lambda ch, n=name: self._on_toggle(n), names="value")
        self.toggles = t

        self.b_first = W.Button(description="first", icon="step-backward",
                                tooltip="first step", layout=W.Layout(width="80px"))
        self.b_prev = W.Button(description="prev", icon="chevron-left",
                               tooltip="previous step", layout=W.Layout(width="80px"))
        self.b_next = W.Button(description="next", icon="chevron-right",
                               tooltip="next step", layout=W.Layout(width="80px"))
        self.b_last = W.Button(description="last", icon="step-forward",
                               tooltip="last step", layout=W.Layout(width="80px"))
        for b, cls in ((self.b_first, "first"), (self.b_prev, "prev"),
                       (self.b_next, "next"), (self.b_last, "last")):
            b.add_class("iv-" + cls)
        self.b_first.on_click(lambda _: self.first())
        self.b_prev.on_click(lambda _: self.prev())
        self.b_next.on_click(lambda _: self.next())
        self.b_last.on_click(lambda _: self.last())
        self.slider = W.IntSlider(min=0, max=1, value=0, description="step",
                                  continuous_update=True,
                                  layout=W.Layout(width="420px"))
        self.slider.add_class("iv-slider")
        self.play = W.Play(min=0, max=1, value=0, interval=900,
                           description="play")
        W.jslink((self.play, "value"), (self.slider, "value"))
        self.slider.observe(self._on_step, names="value")

        self.caption = W.HTML(layout=W.Layout(width="100%"))
        self.caption.add_class("iv-caption-box")
        self.tree = W.HTML(layout=W.Layout(width="100%"))
        self.tree.add_class("iv-tree")
        self.tlb = W.HTML(layout=W.Layout(width="100%"))
        self.tlb.add_class("iv-tlb")
        self.timeline = W.Image(format="png", layout=W.Layout(
            max_width="100%", height="auto", object_fit="contain"))
        self.timeline.add_class("iv-timeline")
        self.outcome = W.HTML(layout=W.Layout(width="100%"))
        self.outcome.add_class("iv-outcome")
        self.title = W.HTML()

        grid = W.GridBox(
            [t["scenario"], t["fmt"], t["kernel"], t["strict"], t["unmap"],
             t["split_sync"], t["deferred_gather"], t["bbml"],
             t["personality"], t["speculate"], t["ttl_hints"],
             t["split_nt"]],
            # as many columns as fit: four in a wide notebook, two or three
            # at the default JupyterLab width with the file browser open
            layout=W.Layout(grid_template_columns=("repeat(auto-fill, "
                                                   "minmax(270px, 1fr))"),
                            grid_gap="2px 12px", align_items="center"))
        controls = W.HBox([self.b_first, self.b_prev, self.b_next,
                           self.b_last, self.play, self.slider],
                          layout=W.Layout(flex_flow="row wrap",
                                          align_items="center"))
        # the tree gets the full width: graphviz lays the levels out
        # diagonally, and squeezed into a column its text became too small
        tree_box = W.Box([self.tree], layout=W.Layout(
            max_height="900px", overflow="auto", border="1px solid #ccc",
            width="100%"))
        # the TLB and the accesses are stacked, each at full width: side by
        # side at the default JupyterLab width the TLB's tables scrolled
        # sideways and their titles wrapped
        tlb_box = W.Box([self.tlb], layout=W.Layout(
            max_height="600px", overflow="auto", width="100%"))
        out_box = W.Box([self.outcome], layout=W.Layout(
            max_height="320px", overflow="auto", width="100%"))
        self.widget = W.VBox([
            W.HTML(_CSS), self.title, grid, controls, self.caption,
            W.HTML("<b>Page tables</b>"), tree_box,
            W.HTML("<b>SMMU TLB and what is in flight</b>"), tlb_box,
            W.HTML("<b>The device's accesses</b>"), out_box,
            W.HTML("<b>Timeline up to this step</b>"), self.timeline,
            W.HTML(self._timeline_legend())])
        self.widget.add_class("iv-explorer")

    def _load_toggles(self):
        """Make the toggles show the current options, without re-running."""
        self._quiet = True
        try:
            t, o = self.toggles, self.options
            t["scenario"].value = self.scenario
            t["fmt"].value = o.get("fmt", "lpae")
            t["kernel"].value = o["kernel"]
            t["strict"].value = bool(o["strict"])
            for label, pair in UNMAP_CHOICES.items():
                if pair == (bool(o["fast"]), bool(o["sync_after"])) or (
                        not o["fast"] and pair[0] is False):
                    t["unmap"].value = label
                    break
            ss = o["split_sync"]
            t["split_sync"].value = (_era_split_sync(o["kernel"])
                                     if ss is None else bool(ss))
            t["split_sync"].disabled = not _era_splits(o["kernel"])
            t["deferred_gather"].value = bool(o["deferred_gather"])
            t["bbml"].value = o["bbml"]
            t["personality"].value = o["personality"]
            t["speculate"].value = bool(o["speculate"])
            t["ttl_hints"].value = bool(o["ttl_hints"])
            t["split_nt"].value = bool(o.get("split_nt", False))
            # nT is an LPAE block bit, and only a split can use it
            t["split_nt"].disabled = (o.get("fmt", "lpae") != "lpae"
                                      or not _era_splits(o["kernel"]))
        finally:
            self._quiet = False
        desc = dict(scenarios.catalog()).get(self.scenario, "")
        self.title.value = (f"<b>Scenario {html.escape(self.scenario)}</b>: "
                            f"{html.escape(desc)}")

    def _on_toggle(self, name):
        if self._quiet:
            return
        w = self.toggles[name]
        self.set_option(name, w.value)

    def _set_bounds(self):
        n = len(self.sim.events)
        self._quiet = True
        try:
            if self.slider.value > n - 1:
                self.slider.value = n - 1
            self.slider.max = n - 1
            if self.play.value > n - 1:
                self.play.value = n - 1
            self.play.max = n - 1
        finally:
            self._quiet = False

    # ------------------------------------------------------------ steps
    def _resolve_step(self, step):
        if step is None:
            return 0
        if isinstance(step, str):
            for ev in self.sim.events:
                if step in ev.func or step == ev.kind:
                    return ev.step
            raise ValueError(f"step {step!r}: no event of this run names "
                             "that function or kind")
        if isinstance(step, bool) or not isinstance(step, int):
            raise ValueError(f"step {step!r} must be an int or a function "
                             "name")
        n = len(self.sim.events)
        if not -n <= step < n:
            raise ValueError(f"step {step} is outside this run's 0..{n - 1}")
        return step % n

    @property
    def step(self) -> int:
        """The step shown (an index into ``sim.events``)."""
        return self.slider.value

    @step.setter
    def step(self, value) -> None:
        value = self._resolve_step(value)
        if value == self.slider.value:
            self._show()
        else:
            self.slider.value = value

    def first(self):
        self.step = 0

    def prev(self):
        self.step = max(0, self.step - 1)

    def next(self):
        self.step = min(len(self.sim.events) - 1, self.step + 1)

    def last(self):
        self.step = len(self.sim.events) - 1

    def _on_step(self, change):
        if not self._quiet:
            self._show()

    # ------------------------------------------------------------ views
    def _tree_and_tlb(self, sim, step):
        from ..render.tlb import tlb_html
        from ..render.tree import tree_svg
        st = sim.states[step]
        prev = sim.states[step - 1].pgtable if step > 0 else None
        svg = tree_svg(st.pgtable, prev=prev, tlb=st.tlb, legend=True,
                       title=_tree_title(st.pgtable))
        svg = svg[svg.find("<svg"):]
        return {"tree": f'<div class="iv-tree-svg">{svg}</div>',
                "tlb": tlb_html(st)}

    def _render(self, step):
        """The step's pictures, rendered once per run and step. The tree
        is laid out by the ``dot`` program in a worker thread while this
        thread draws the timeline, so the two overlap."""
        r = self._renders.get(step)
        if r is not None:
            return r
        job = _pool().submit(self._tree_and_tlb, self.sim, step)
        png = self._timeline_png(step)
        r = job.result()
        r["timeline"] = png
        self._renders[step] = r
        return r

    def _timeline_png(self, step) -> bytes:
        from ..render.timeline import timeline_figure
        # the legend is drawn once, as HTML (_timeline_legend): drawing it
        # into every step's figure doubled the time of a redraw
        fig = timeline_figure(self.sim, upto=step, legend=False)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100, facecolor="white")
        return buf.getvalue()

    @staticmethod
    def _timeline_legend() -> str:
        """The timeline's legend as HTML, from the renderer's own styles
        (marker shapes approximated by characters, colours as drawn)."""
        from ..render.timeline import (CATEGORY_STYLE, OUTCOME_STYLE,
                                       WINDOW_LABELS)
        glyph = {"o": "&#9679;", "s": "&#9632;", ">": "&#9654;",
                 "|": "|", "^": "&#9650;", "v": "&#9660;", "d": "&#9670;",
                 "D": "&#9670;", "X": "&#10006;", ".": "&#183;"}
        items = []
        for label, marker, colour in (list(CATEGORY_STYLE.values())
                                      + list(OUTCOME_STYLE.values())):
            if label == "other":
                continue
            items.append(f'<span style="color:{colour}">'
                         f'{glyph.get(marker, marker)}</span>&nbsp;'
                         f"{html.escape(label)}")
        for kind, label in WINDOW_LABELS.items():
            colour = OUTCOME_STYLE[kind][2]
            hatch = _WINDOW_HATCH[kind]
            angle = "135deg" if hatch[0] == "/" else "45deg"
            items.append(
                f'<span style="background:repeating-linear-gradient('
                f'{angle},{colour} 0 1px,transparent 1px 4px);'
                f'border:1px solid {colour};display:inline-block;'
                'width:14px;height:10px"></span>&nbsp;'
                f"{html.escape(label)} (shaded, hatched "
                f"{html.escape(hatch[:2])})")
        return ('<div class="iv-legend" style="font-size:11px;'
                'line-height:1.6">' + " &nbsp; ".join(items) + "</div>")

    def _caption_html(self, step):
        ev = self.sim.events[step]
        last = len(self.sim.events) - 1
        text = html.escape(self.sim.caption(step))
        err = (f'<div class="iv-error">{html.escape(self.error)}</div>'
               if self.error else "")
        return (f'<div class="iv-caption">step {step}/{last}, '
                f"t = {ev.time_us / 1000:g} ms, {html.escape(ev.actor)}: "
                f"<b>{text}</b></div>{err}")

    def _outcome_html(self, step):
        words = self._renders.get("words")
        if words is None:
            words = [access_words(self.sim, a)[1] for a in self.sim.accesses]
            self._renders["words"] = words
        items = []
        for a, body in zip(self.sim.accesses, words):
            cls = ("iv-now" if a.step == step else
                   "iv-later" if a.step > step else "")
            label = html.escape(f"step {a.step}: {access_summary(a)}")
            allowed = html.escape(", ".join(sorted(a.allowed)))
            items.append(f'<li class="{cls}"><b>{label}</b> '
                         f"(allowed: {allowed})<br>{html.escape(body)}</li>")
        if not items:
            return "<i>No device access in this run.</i>"
        return ('<ul class="iv-outcome" style="padding-left:18px;'
                'margin:0">' + "".join(items) + "</ul>")

    def _show(self):
        """Show the current step (pictures cached per step)."""
        t0 = time.perf_counter()
        step = self.step
        self.caption.value = self._caption_html(step)
        r = self._render(step)
        self.tree.value = r["tree"]
        self.tlb.value = r["tlb"]
        self.outcome.value = self._outcome_html(step)
        self.timeline.value = r["timeline"]
        self.last_redraw_ms = (time.perf_counter() - t0) * 1000
        self._prefetch_later(step + 1)

    def _prefetch_later(self, step):
        """In a running kernel, render ``step`` once the kernel is idle
        (an event-loop callback on the kernel's own thread), so that
        *next* and *play* find it cached. Without a running event loop
        (scripts, tests) nothing is scheduled."""
        if step >= len(self.sim.events) or step in self._renders:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        loop.call_later(0.05, self._prefetch, self.sim, step)

    def _prefetch(self, sim, step):
        if sim is not self.sim or step in self._renders:
            return                  # re-run or already shown meanwhile
        try:
            self._render(step)
        except Exception:           # shown (with its error) when visited
            pass

    # ------------------------------------------------------------ reading
    @property
    def caption_text(self) -> str:
        """The current step's one-line caption (kernel function: what)."""
        return self.sim.caption(self.step)

    @property
    def tree_html(self) -> str:
        """The current tree picture (an SVG inside a div)."""
        return self.tree.value

    @property
    def tlb_html(self) -> str:
        return self.tlb.value

    @property
    def outcome_html(self) -> str:
        return self.outcome.value

    @property
    def timeline_png(self) -> bytes:
        return bytes(self.timeline.value)

    def outcomes(self) -> list[str]:
        """The outcome panel as plain-text paragraphs, one per access."""
        return [explain_access(self.sim, a) for a in self.sim.accesses]

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    def __repr__(self):
        return (f"Explorer({self.scenario!r}, step {self.step}/"
                f"{len(self.sim.events) - 1}: {self.caption_text})")
