"""The Explorer: step through a recorded scenario run and flip its options,
on one screen (1400 x 1000).

``Explorer("seed", fast=True, sync_after=False)`` runs the named scenario
(:mod:`iommu_viz.scenarios`) and lays out its
:class:`~iommu_viz.widgets.session.ExplorerSession`:

* a bar with the scenario and the card's three toggles (the split's own
  sync, how the caller unmaps, strict or lazy) and "More" for the rest
  (:data:`~iommu_viz.widgets.toggles.TOGGLES` holds every toggle's label,
  tooltip and the rules that disable it where it cannot matter);
* first / prev / next / last, play and a step slider;
* the caption (the kernel function or hardware rule that acted,
  :meth:`Simulation.caption`) and a strip saying what the last toggle
  changed (outcomes, windows, steps added or removed);
* the page-table tree focused on what changed, the TLB and the device's
  accesses in words (:mod:`iommu_viz.widgets.outcome`), and a clickable
  list of the run's events;
* a compact timeline of the whole run (SVG), masked after the step shown.

``Explorer(..., predict=True)`` asks, before each device access, which
outcomes the architecture allows, and keeps a score.

Every picture is read from the recorded run; stepping back shows the state
recorded at an earlier step, nothing is undone. A toggle re-runs the
scenario and stays on the same event (the same access or API call).

Headless use (tests, scripts)::

    >>> ex = Explorer("seed", fast=True, sync_after=False)
    >>> ex.step = 16
    >>> ex.caption_text.startswith("SMMU translation")
    True
    >>> ex.set_option("split_sync", True)
    >>> ex.sim.accesses[1].outcome, ex.step
    ('fault', 19)
"""

from __future__ import annotations

import asyncio
import zlib
import html
import time
from importlib import resources

from .. import scenarios
from ..sim.trace import OUTCOMES
from .compare import match_step
from .outcome import access_summary, access_words, explain_access
from .session import ExplorerSession, toggle_value
from .toggles import (FORMATS, FRONT, MORE, TOGGLE_NAMES, TOGGLES,
                      UNMAP_CHOICES)
from .views import timeline_png, timeline_svg, tree_legend_html, tree_view

__all__ = ["Explorer", "UNMAP_CHOICES", "TOGGLE_NAMES", "FORMATS"]

#: How the timeline hatches its shaded windows (matplotlib hatch marks,
#: as drawn by render.timeline; tests/widgets checks they agree). The
#: colours are the matching access outcomes' (OUTCOME_STYLE).
_WINDOW_HATCH = {"stale": "//", "conflict": "\\\\"}

_POOL = None


def _css() -> str:
    """The stylesheet shipped as package data (explorer.css)."""
    text = resources.files(__package__).joinpath("explorer.css").read_text(
        encoding="utf-8")
    return f"<style>{text}</style>"


def _pool():
    """One worker thread for tree layouts (a ``dot`` subprocess each)."""
    global _POOL
    if _POOL is None:
        from concurrent.futures import ThreadPoolExecutor
        _POOL = ThreadPoolExecutor(max_workers=1,
                                   thread_name_prefix="iommu-viz-tree")
    return _POOL


class Explorer:
    """Interactive view of one scenario run (ipywidgets 8).

    ``scenario`` names a scenario of :func:`iommu_viz.scenarios.catalog`,
    or is a scenario file's path, scenario text or a
    :class:`~iommu_viz.scenarios.Scenario`: its ``config`` is the starting
    option set, which the toggles override (the chooser shows the file's
    name, or ``(text)``); ``options`` are its keyword options; ``step`` the step to show first:
    an int, or a string naming the first event whose kernel function
    (``Event.func``) or kind contains it (e.g.
    ``"arm_lpae_split_blk_unmap"``); default 0. ``predict=True`` hides
    outcomes until the learner has predicted them.
    """

    def __init__(self, scenario="seed", step=None, predict=False,
                 **options):
        import ipywidgets as W
        self._W = W
        self.session = ExplorerSession(scenario, step=step, predict=predict,
                                       **options)
        self._timelines: dict = {}      # run key -> (svg, edges)
        self._quiet = False
        self._above = False
        self._avail_key = None
        self._idle_handle = None
        self.last_redraw_ms = 0.0
        self._renders: dict = {}        # (run key, step, above) -> views
        self._inflight: set = set()     # keys of views being laid out
        self._build()
        self._load_toggles()
        self._show()

    # ------------------------------------------------------------ state
    @property
    def sim(self):
        return self.session.sim

    @property
    def scenario(self) -> str:
        return self.session.scenario

    @property
    def options(self) -> dict:
        return self.session.options

    @property
    def error(self) -> str:
        return self.session.error

    @property
    def predict(self) -> bool:
        return self.session.predict

    @property
    def score(self):
        return self.session.score

    @property
    def comparison(self):
        return self.session.comparison

    @property
    def _runs(self):
        return self.session._runs

    def _run_key(self):
        return self.session._key()

    # ------------------------------------------------------------ widgets
    def _make_toggle(self, name):
        """The control (no description of its own: ipywidgets would show
        the description instead of the tooltip) in a box with its label;
        the control and the label carry the tooltip (a Box cannot)."""
        W = self._W
        t = TOGGLES[name]
        if t.kind == "check":
            w = W.Checkbox(indent=False, layout=W.Layout(width="auto"))
        elif t.kind == "buttons":
            w = W.ToggleButtons(options=list(t.choices),
                                style={"button_width": "58px"})
        else:
            plain = all(k == v for k, v in t.choices)
            w = W.Dropdown(options=[v for _, v in t.choices] if plain
                           else list(t.choices),
                           layout=W.Layout(width="auto"))
        label = W.HTML(html.escape(t.label))
        label.add_class("iv-toggle-label")
        parts = [w, label] if t.kind == "check" else [label, w]
        box = W.HBox(parts, layout=W.Layout(align_items="center"))
        box.add_class("iv-toggle")
        self._labels[name] = label
        return w, box

    def _build(self):
        W = self._W
        t = {}
        t["scenario"] = W.Dropdown(
            options=self.session.scenario_names(),
            description="scenario", layout=W.Layout(width="auto"),
            style={"description_width": "initial"})
        t["scenario"].tooltip = ("The scenario to run; each keeps its own "
                                 "options when you come back to it.")
        boxes = {"scenario": t["scenario"]}
        self._labels = {}
        for name in TOGGLES:
            t[name], boxes[name] = self._make_toggle(name)
        for name, w in t.items():
            boxes[name].add_class("iv-toggle-" + name.replace("_", "-"))
            w.observe(lambda ch, n=name: self._on_toggle(n), names="value")
        self.toggles = t
        self._boxes = boxes

        self.more = W.ToggleButton(description="More", icon="sliders",
                                   tooltip="the other toggles",
                                   layout=W.Layout(width="90px"))
        self.more.add_class("iv-more-button")
        self.more.observe(self._on_more, names="value")
        self.score_label = W.HTML()
        self.score_label.add_class("iv-score")
        bar = W.HBox([t["scenario"]] + [boxes[n] for n in FRONT]
                     + [self.more, self.score_label])
        bar.add_class("iv-bar")
        self.more_box = W.HBox([boxes[n] for n in MORE],
                               layout=W.Layout(display="none"))
        self.more_box.add_class("iv-bar")
        self.more_box.add_class("iv-more")

        def button(desc, icon, tip, cls, fn):
            b = W.Button(description=desc, icon=icon, tooltip=tip,
                         layout=W.Layout(width="72px"))
            b.add_class("iv-" + cls)
            b.on_click(lambda _: fn())
            return b
        self.b_first = button("first", "step-backward", "first step",
                              "first", self.first)
        self.b_prev = button("prev", "chevron-left", "previous step", "prev",
                             self.prev)
        self.b_next = button("next", "chevron-right", "next step", "next",
                             self.next)
        self.b_last = button("last", "step-forward", "last step", "last",
                             self.last)
        self.slider = W.IntSlider(min=0, max=1, value=0, description="step",
                                  continuous_update=True,
                                  layout=W.Layout(width="380px"))
        self.slider.add_class("iv-slider")
        self.play = W.Play(min=0, max=1, value=0, interval=900,
                           description="play")
        W.jslink((self.play, "value"), (self.slider, "value"))
        self.slider.observe(self._on_slider, names="value")
        nav = W.HBox([self.b_first, self.b_prev, self.b_next, self.b_last,
                      self.play, self.slider])
        nav.add_class("iv-bar")

        self.caption = W.HTML(layout=W.Layout(width="100%"))
        self.caption.add_class("iv-caption-box")
        self.compare = W.HTML(layout=W.Layout(width="100%"))
        self.compare.add_class("iv-compare-box")

        self.crumb = W.HTML()
        self.crumb.add_class("iv-crumb")
        self.above = W.Checkbox(description="show levels above",
                                indent=False, layout=W.Layout(width="auto"))
        self.above.add_class("iv-above")
        self.above.tooltip = ("Show the tables above the one that changed "
                              "(the walk from the root).")
        self.above.observe(self._on_above, names="value")
        self.tree = W.HTML(layout=W.Layout(width="100%"))
        self.tree.add_class("iv-tree")
        tree_pane = W.VBox([W.HBox([self.above, self.crumb]), self.tree,
                            W.HTML(tree_legend_html())])
        tree_pane.add_class("iv-tree-pane")

        self.tlb = W.HTML(layout=W.Layout(width="100%"))
        self.tlb.add_class("iv-tlb")
        self.outcome = W.HTML(layout=W.Layout(width="100%"))
        self.outcome.add_class("iv-outcome")
        self.q_text = W.HTML()
        self.picks = {o: W.ToggleButton(description=o,
                                        layout=W.Layout(width="88px"))
                      for o in OUTCOMES}
        for o, b in self.picks.items():
            b.add_class("iv-pick-" + o)
        self.b_check = W.Button(description="check", button_style="warning",
                                layout=W.Layout(width="80px"))
        self.b_check.add_class("iv-check")
        self.b_check.on_click(lambda _: self._on_check())
        self.b_reveal = W.Button(description="just show me",
                                 layout=W.Layout(width="110px"))
        self.b_reveal.add_class("iv-reveal")
        self.b_reveal.on_click(lambda _: self._on_reveal())
        self.predict_box = W.VBox([
            self.q_text,
            W.HBox(list(self.picks.values()) + [self.b_check,
                                                self.b_reveal],
                   layout=W.Layout(flex_flow="row wrap"))],
            layout=W.Layout(display="none"))
        self.predict_box.add_class("iv-predict")
        side = W.VBox([self.predict_box, self.tlb, self.outcome])
        side.add_class("iv-side")

        self.events = W.Select(options=[("", 0)], rows=20)
        self.events.add_class("iv-events")
        self.events.tooltip = "click an event to go to its step"
        self.events.observe(self._on_event_pick, names="value")
        main = W.HBox([tree_pane, side, self.events])
        main.add_class("iv-main")

        self.timeline = W.HTML(layout=W.Layout(width="100%"))
        self.timeline.add_class("iv-tl-img")
        self.tl_over = W.HTML()
        self.tl_over.add_class("iv-tl-over")
        tl = W.Box([self.timeline, self.tl_over])
        tl.add_class("iv-tl-wrap")
        self.widget = W.VBox([
            W.HTML(_css()), bar, self.more_box, nav, self.caption,
            self.compare, main, tl, W.HTML(self._timeline_legend())])
        self.widget.add_class("iv-explorer")

    def _on_more(self, change):
        self.more_box.layout.display = "flex" if change["new"] else "none"

    def _load_toggles(self):
        """Make the toggles show the current options, enabled where they
        can matter, without re-running."""
        self._quiet = True
        try:
            t, o = self.toggles, self.options
            if tuple(t["scenario"].options) != tuple(
                    self.session.scenario_names()):
                t["scenario"].options = self.session.scenario_names()
            t["scenario"].value = self.scenario
            for name in TOGGLES:
                t[name].value = toggle_value(name, o)
        finally:
            self._quiet = False
        self._apply_availability(self._cached_availability())
        desc = dict(scenarios.catalog()).get(self.scenario)
        if desc is None:              # a file: its first sentence
            sc = self.session.scenario_file()
            desc = (sc.description.split(". ")[0].rstrip(".") + ". "
                    if sc.description else "") + f"From {sc.source}."
        t["scenario"].tooltip = desc

    def _cached_availability(self):
        return self.session._avail.get(self._run_key())

    def _apply_availability(self, avail):
        """Disable the toggles that cannot matter (``avail`` from
        :meth:`ExplorerSession.availability`; None: not known yet, all
        enabled but those a rule switches off)."""
        for name, tg in TOGGLES.items():
            why = (avail[name] if avail is not None
                   else self.session.static_reason(name))
            w, box = self.toggles[name], self._boxes[name]
            tip = tg.tip + (f" Cannot matter here: {why}" if why else "")
            if w.disabled != (why is not None):
                w.disabled = why is not None
            for x in (w, self._labels[name]):
                x.tooltip = tip
            for x in (w, box):
                if why:
                    x.add_class("iv-toggle-disabled")
                else:
                    x.remove_class("iv-toggle-disabled")
            if tg.kind == "buttons":
                w.tooltips = [tip] * len(tg.choices)
        self._avail_key = self._run_key() if avail is not None else None

    def availability(self) -> dict:
        """``{toggle: None or why it cannot matter}``; also applied to
        the toggles (runs the alternatives that are not stored yet)."""
        avail = self.session.availability()
        self._apply_availability(avail)
        return avail

    def _on_toggle(self, name):
        if self._quiet:
            return
        w = self.toggles[name]
        if name == "scenario":
            self.set_option("scenario", w.value)
        else:
            self.set_option(name, w.value)

    # ------------------------------------------------------------ actions
    def set_option(self, name: str, value) -> None:
        """Set one option (a scenario option, or ``unmap`` to a key of
        UNMAP_CHOICES, or ``scenario``), re-run, stay on the same event."""
        try:
            self.session.set_option(name, value)
        finally:
            self._show()
            self._load_toggles()

    def first(self):
        self.step = 0

    def prev(self):
        self.step = max(0, self.step - 1)

    def next(self):
        self.step = min(len(self.sim.events) - 1, self.step + 1)

    def last(self):
        self.step = len(self.sim.events) - 1

    @property
    def step(self) -> int:
        """The step shown (an index into ``sim.events``)."""
        return self.session.step

    @step.setter
    def step(self, value) -> None:
        self.session.step = value
        self._show()

    def answer(self, outcomes) -> dict:
        """Predict mode: answer the open question (see
        :meth:`ExplorerSession.answer`)."""
        verdict = self.session.answer(outcomes)
        self._show()
        return verdict

    def reveal(self) -> None:
        self.session.reveal()
        self._show()

    def _on_check(self):
        picked = [o for o, b in self.picks.items() if b.value]
        if not picked:
            self.q_text.value = (self._question_html()
                                 + "<br><b>Pick at least one outcome.</b>")
            return
        self.answer(picked)

    def _on_reveal(self):
        self.reveal()

    def _on_slider(self, change):
        if self._quiet:
            return
        self.session.step = change["new"]
        self._show()

    def _on_event_pick(self, change):
        if self._quiet or change["new"] is None:
            return
        self.step = change["new"]

    def _on_above(self, change):
        self._above = bool(change["new"])
        self._show()

    # ------------------------------------------------------------ views
    def _views(self, step):
        """Tree, crumb and TLB of ``step`` of the current run (cached)."""
        key = (self._run_key(), step, self._above)
        r = self._renders.get(key)
        if r is None:
            r = self._renders[key] = self._compute_views(self.sim, step,
                                                         self._above)
            if len(self._renders) > 600:
                self._renders.pop(next(iter(self._renders)))
        return r

    @staticmethod
    def _compute_views(sim, step, above):
        from ..render.tlb import tlb_html
        crumb, tree = tree_view(sim, step, above=above,
                                title=_tree_title(sim.states[step].pgtable))
        return {"crumb": crumb, "tree": tree,
                "tlb": tlb_html(sim.states[step])}

    def _event_labels(self):
        s = self.session
        hidden = set()
        if s.predict:
            for a, q in zip(self.sim.accesses, s.questions()):
                if not s.is_revealed(a):
                    op = self.sim.events[a.step].op
                    hidden |= {ev.step for ev in self.sim.events
                               if ev.op == op}
        out = []
        for ev in self.sim.events:
            text = ("device access: predict it first" if ev.step in hidden
                    else ev.text)
            out.append((f"{ev.step:>3} {ev.actor:<6} {text}", ev.step))
        return out

    def _question_html(self):
        q = self.session.question()
        if q is None:
            return ""
        rw = "write" if q.write else "read"
        return (f"<b>Predict:</b> the device is about to {rw} "
                f"0x{q.iova:x}. Which outcomes does the architecture allow "
                "here? Pick one or more, then check.")

    def _caption_html(self):
        s = self.session
        step, last = s.step, len(self.sim.events) - 1
        ev = self.sim.events[step]
        err = (f'<div class="iv-error">{html.escape(s.error)}</div>'
               if s.error else "")
        cls, actor = "iv-caption", ev.actor
        if s.question() is not None:
            cls += " iv-question-cap"
            actor = "device"        # not the fill's actor: that would tell
        tree = self._tree_key(self._views(s.view_step))
        return (f'<div class="{cls}" data-run="{self._run_id()}" '
                f'data-step="{step}" data-tree="{tree}">step {step}/{last}, '
                f"t = {ev.time_us / 1000:g} ms, {html.escape(actor)}: "
                f"<b>{html.escape(s.caption_text)}</b></div>{err}")

    def _compare_html(self):
        s = self.session
        if s.comparison is None:
            text = (html.escape(s.changed) + ": " if s.changed else "") + (
                "flip a toggle to see what it changes against this run")
            return f'<div class="iv-compare iv-nochange">{text}</div>'
        upto = s.step if s.predict else None
        lines = s.comparison.lines(upto=upto)
        body = (" &middot; ".join(html.escape(x) for x in lines)
                if lines else "nothing: same steps, same outcomes")
        return (f'<div class="iv-compare"><b>{html.escape(s.changed)}</b> '
                f"changed: {body}</div>")

    def _outcome_html(self, step):
        s = self.session
        items = []
        for a in self.sim.accesses:
            if a.step > step or not s.is_revealed(a):
                continue
            head, body = access_words(self.sim, a)
            cls = "iv-now" if a.step == step else ""
            verdict = s.verdict_for(a) if s.predict else None
            mark = ""
            if verdict is not None:
                ok = verdict["correct"]
                mark = (f' <span class="{"iv-right" if ok else "iv-wrong"}">'
                        f'you picked {", ".join(verdict["picked"])}: '
                        f'{"right" if ok else "not quite"}</span>')
            label = html.escape(f"step {a.step}: {access_summary(a)}")
            allowed = html.escape(", ".join(sorted(a.allowed)))
            items.append(f'<li class="{cls}"><b>{label}</b> (allowed: '
                         f"{allowed}){mark}<br>{html.escape(body)}</li>")
        later = sum(1 for a in self.sim.accesses if a.step > step
                    or not s.is_revealed(a))
        tail = (f"<p><i>{later} later access(es): their outcomes show when "
                "you get there.</i></p>" if later else "")
        if not items:
            return ("<i>No device access yet.</i>" + tail)
        return "<ul>" + "".join(items[::-1]) + "</ul>" + tail

    @staticmethod
    def _tree_key(views) -> str:
        return format(zlib.crc32(views["tree"].encode()), "08x")

    def _run_id(self):
        return abs(hash(self._run_key())) % 10**8

    def _timeline_over(self, edges, step):
        x = edges[step] * 100
        mask = "iv-mask iv-opaque" if self.predict else "iv-mask"
        return (f'<div data-run="{self._run_id()}" data-step="{step}" '
                f'class="iv-tl-mark"><div class="{mask}" style="left:'
                f'{x:.2f}%"></div><div class="iv-cursor" style="left:'
                f'{x:.2f}%"></div></div>')

    def _show_timeline(self, view_step):
        key = self._run_key()
        done = self._timelines.get(key)
        if done is None:
            done = self._timelines[key] = timeline_svg(self.sim)
            if len(self._timelines) > 64:
                self._timelines.pop(next(iter(self._timelines)))
        svg, edges = done
        self.timeline.value = svg
        self.tl_over.value = self._timeline_over(edges, view_step)

    def _show(self):
        """Show the current step (pictures cached per run and step)."""
        t0 = time.perf_counter()
        s = self.session
        step, view = s.step, s.view_step
        # the picture first (each value is a message of its own), then the
        # rest, then the navigation
        self.caption.value = self._caption_html()
        self.compare.value = self._compare_html()
        r = self._views(view)
        # the same picture is not sent again: the tree's key (a checksum)
        # is in the caption, so a reader knows which tree goes with it
        self.tree.value = (f'<div class="iv-tree-svg" data-key="'
                           f'{self._tree_key(r)}">{r["tree"]}</div>')
        self._show_timeline(view)
        self.tlb.value = r["tlb"]
        self.crumb.value = r["crumb"]
        self.above.layout.visibility = ("visible" if r["crumb"] or
                                        self._above else "hidden")
        self.outcome.value = self._outcome_html(view)
        q = s.question()
        self.predict_box.layout.display = "flex" if q is not None else "none"
        if q is not None:
            self.q_text.value = self._question_html()
            for b in self.picks.values():
                b.value = False
        self.score_label.value = (f"<b>{html.escape(str(s.score))}</b>"
                                  if s.predict else "")
        self._sync_nav(step)
        self.widget.remove_class("iv-ready")
        self.last_redraw_ms = (time.perf_counter() - t0) * 1000
        self._schedule_idle()

    def _sync_nav(self, step):
        """Slider, play button and event list follow the step (and the
        run's length), without acting on their own change."""
        self._quiet = True
        try:
            last = len(self.sim.events) - 1
            if self.slider.max != last:
                if self.slider.value > last:
                    self.slider.value = self.play.value = 0
                self.slider.max = self.play.max = last
            labels = self._event_labels()
            if list(self.events.options) != labels:
                self.events.options = labels
            # the play button is linked to the slider in the browser, and
            # the link copies its value over the slider's when it starts
            self.play.value = step
            self.slider.value = step
            self.events.value = step
        finally:
            self._quiet = False

    # ------------------------------------------------------------ idle work
    @staticmethod
    def _loop():
        try:
            return asyncio.get_running_loop()
        except RuntimeError:
            return None

    def _schedule_idle(self):
        """In a running kernel, once idle: render the neighbouring steps,
        then run the toggles' other values (to disable those that cannot
        matter, and so a click finds its run ready), then draw their
        timelines in the worker process. Without a running event loop
        (scripts, tests) nothing is scheduled."""
        loop = self._loop()
        if loop is None:
            return
        if self._idle_handle is not None:
            self._idle_handle.cancel()
        self._idle_handle = loop.call_later(0.03, self._idle, self.sim,
                                            self.step)

    def _idle(self, sim, step, phase=0):
        self._idle_handle = None
        if sim is not self.sim or step != self.step:
            return
        loop = self._loop()
        s = self.session
        if phase == 0:
            # the next and previous steps' pictures (the tree in a thread)
            for nxt in (step + 1, step + 2, step - 1):
                if 0 <= nxt < len(sim.events):
                    self._prefetch_views(loop, self._run_key(), sim, nxt)
            phase = 1
        if phase == 1:
            # one other value of a toggle per turn: cheap runs
            todo = s.pending_alternatives()
            if todo:
                try:
                    s.run_for(s.scenario, todo[0])
                except Exception:
                    pass                # availability() records it
                self._idle_handle = loop.call_later(0.005, self._idle, sim,
                                                    step, 1)
                return
            if self._avail_key != self._run_key():
                self._apply_availability(s.availability())
            self.widget.add_class("iv-ready")      # for the browser tests
            # their trees at this event, once the learner pauses here
            self._idle_handle = loop.call_later(0.4, self._idle, sim, step,
                                                2)
            return
        for _, opts, alt in self._alternative_runs():
            self._prefetch_views(loop, s._key(s.scenario, opts), alt,
                                 match_step(sim, step, alt))

    def _alternative_runs(self):
        """``(toggle, options, run)`` of every other toggle value already
        run, the front toggles first."""
        s = self.session
        for name in TOGGLES:
            for _, opts in s.alternatives(name):
                if s.has_run(s.scenario, opts):
                    yield name, opts, s.run_for(s.scenario, opts)

    def _prefetch_views(self, loop, run_key, sim, step):
        key = (run_key, step, self._above)
        if key in self._renders or key in self._inflight:
            return
        self._inflight.add(key)
        fut = _pool().submit(self._compute_views, sim, step, self._above)
        fut.add_done_callback(
            lambda f: _call_soon(loop, self._store_views, key, f))

    def _store_views(self, key, fut):
        self._inflight.discard(key)
        try:
            self._renders[key] = fut.result()
        except Exception:
            pass                        # shown, with its error, if visited

    # ------------------------------------------------------------ reading
    @property
    def caption_text(self) -> str:
        """The current step's one-line caption (kernel function: what)."""
        return self.session.caption_text

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
    def compare_html(self) -> str:
        return self.compare.value

    @property
    def timeline_svg(self) -> str:
        """The compact timeline of the whole run (SVG; the steps after the
        one shown are masked in the browser)."""
        return self.timeline.value

    @property
    def timeline_png(self) -> bytes:
        """The run's timeline as the notebooks draw it (matplotlib PNG)."""
        return timeline_png(self.sim)

    def outcomes(self) -> list[str]:
        """The outcome panel as plain-text paragraphs, one per access."""
        return [explain_access(self.sim, a) for a in self.sim.accesses]

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
        return ('<div class="iv-legend">' + " &nbsp; ".join(items)
                + "</div>")

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    def __repr__(self):
        return (f"Explorer({self.scenario!r}, step {self.step}/"
                f"{len(self.sim.events) - 1}: {self.caption_text})")


def _call_soon(loop, fn, *args):
    """Hand a worker's result to the event loop, unless it has closed
    (a script's loop ended before the worker finished)."""
    if not loop.is_closed():
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            pass


def _tree_title(snap) -> str:
    """A line naming the table's format under the tree, e.g. "v7s (short
    descriptor, 32-bit), 4K granule, levels 1..2"."""
    kind = {"lpae": "LPAE (long descriptor, 64-bit)",
            "v7s": "v7s (short descriptor, 32-bit)"}.get(snap.fmt, snap.fmt)
    return (f"{kind}, {snap.granule >> 10}K granule, levels "
            f"{snap.levels[0]}..{snap.levels[-1]}")

