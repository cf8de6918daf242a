"""Invalidation timeline: swim-lanes over the steps of a recorded run.

Reads ``run.events`` and ``run.states`` (a Simulation or anything with the
same two lists) and nothing else. The lanes are the trace's actors:

``cpu``     IOMMU API calls and io-pgtable descriptor writes
``cmdq``    the SMMU command queue: CMD_TLBI_* and CMD_SYNC (SMMUv3 4.4,
            4.7: a TLBI is only known complete once a later CMD_SYNC is)
``tlb``     fills (walks, speculative walks), evictions, invalidations
``device``  DMA accesses and their outcome
``fq``      the lazy flush queue (iova.c / dma-iommu.c), when used

The x axis is the step index (one event per step), because logical time
stands still for most steps and then jumps (``advance``, the flush queue's
10 ms timeout); the logical time in ms is printed under each tick and at
every jump.

Shaded windows come from ``State.hazards``: a window spans consecutive
steps in which a hazard of that kind exists. ``stale``: a cached
translation reaches memory the tables no longer map there (SMMUv3 3.21:
entries persist until an invalidation completes). ``conflict``: two cached
entries overlap, which before BBML2 allows a TLB conflict (SMMUv3 3.21.3).

Uses matplotlib's object API (``matplotlib.figure.Figure``) only, so no
pyplot state is created or left behind.
"""

from __future__ import annotations

import textwrap

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from .common import OKABE_ITO, ascii_only, fit_lines

__all__ = ["timeline_figure", "timeline_compare", "timeline_text",
           "timeline_compare_ms", "window_times",
           "hazard_windows", "lanes_of", "LANE_LABELS", "WINDOW_LABELS",
           "OUTCOME_STYLE", "CATEGORY_STYLE"]

LANE_ORDER = ("cpu", "cmdq", "tlb", "device", "fq")
LANE_LABELS = {
    "cpu": "cpu: API, page tables",
    "cmdq": "cmdq: TLBI, CMD_SYNC",
    "tlb": "tlb: fill, invalidate",
    "device": "device: DMA",
    "fq": "fq: flush queue",
}

#: Window kinds: label, colour, hatch. Vermillion and reddish purple differ
#: in hue for colour-blind readers, and the hatches differ in greyscale.
WINDOW_LABELS = {
    "stale": "stale translation reachable",
    "conflict": "TLB conflict allowed",
}
WINDOW_STYLE = {
    "stale": (OKABE_ITO["vermillion"], "//"),
    "conflict": (OKABE_ITO["reddish_purple"], "\\\\"),
}

#: Access outcomes (Event kind "access", detail["outcome"]): label, marker,
#: colour, filled. Shapes differ, so colour is never the only cue.
OUTCOME_STYLE = {
    "translated": ("access: translated", "o", OKABE_ITO["bluish_green"]),
    "stale": ("access: stale translation used", "X", OKABE_ITO["vermillion"]),
    "conflict": ("access: TLB conflict", "D", OKABE_ITO["reddish_purple"]),
    "fault": ("access: fault", "s", OKABE_ITO["black"]),
}

#: Other events, grouped: label, marker, colour.
CATEGORY_STYLE = {
    "api": ("API call / return", "o", OKABE_ITO["black"]),
    "pte": ("page-table write", "s", OKABE_ITO["blue"]),
    "tlbi": ("TLBI issued", ">", OKABE_ITO["orange"]),
    "sync": ("CMD_SYNC issued / complete", "|", OKABE_ITO["black"]),
    "fill": ("TLB fill", "^", OKABE_ITO["bluish_green"]),
    "inval": ("TLB invalidate / evict", "v", OKABE_ITO["blue"]),
    "fq": ("flush-queue event", "d", OKABE_ITO["sky_blue"]),
    "other": ("other", ".", "#777777"),
}

#: Short names for the set of allowed outcomes printed under an access.
_ABBR = {"translated": "ok", "stale": "stale", "conflict": "confl",
         "fault": "fault"}

_CPU_API = {"init", "call", "return", "gather_init", "advance", "add_page",
            "gather_sync", "gather_drop"}
_CPU_PTE = {"pte_write", "table_fill", "table_alloc", "table_free"}


def _category(ev) -> str:
    if ev.actor == "cpu":
        if ev.kind in _CPU_PTE:
            return "pte"
        if ev.kind in _CPU_API:
            return "api"
        return "other"
    if ev.actor == "cmdq":
        if ev.kind == "sync_done" or ev.detail.get("op") == "CMD_SYNC":
            return "sync"
        if ev.kind == "cmd_issue":
            return "tlbi"
        return "other"
    if ev.actor == "tlb":
        if ev.kind == "fill":
            return "fill"
        if ev.kind in ("invalidate", "evict"):
            return "inval"
        return "other"
    if ev.actor == "fq":
        return "fq"
    return "other"


def _check_run(run):
    events = getattr(run, "events", None)
    states = getattr(run, "states", None)
    if events is None or states is None:
        raise TypeError(f"{type(run).__name__} is not a recorded run: it "
                        "needs .events and .states")
    if len(events) != len(states):
        raise ValueError(f"run has {len(events)} events but {len(states)} "
                         "states; a recorded run has one state per event")
    return list(events), list(states)


def _upto(events, upto):
    if upto is None:
        return len(events) - 1
    if not isinstance(upto, int) or not 0 <= upto < len(events):
        raise IndexError(f"upto {upto!r} is outside this run's steps "
                         f"0..{len(events) - 1}")
    return upto


def lanes_of(run) -> tuple:
    """The lanes the run needs, top to bottom: cpu, cmdq, tlb, device, and
    fq only if the flush queue was used."""
    events, states = _check_run(run)
    fq = any(e.actor == "fq" for e in events) or any(
        s.flush_queue for s in states)
    return tuple(a for a in LANE_ORDER if a != "fq" or fq)


def hazard_windows(run, upto=None) -> list[tuple]:
    """``(kind, first_step, last_step, reasons)`` for each window: maximal
    runs of consecutive steps (up to ``upto``) whose State has a hazard of
    that kind. ``reasons`` are the distinct hazard reasons, in order."""
    events, states = _check_run(run)
    last = _upto(events, upto) if events else -1
    out = []
    for kind in ("stale", "conflict"):
        start = None
        reasons = []
        for i in range(last + 1):
            hs = [h for h in states[i].hazards if h.kind == kind]
            if hs:
                if start is None:
                    start = i
                    reasons = []
                for h in hs:
                    if h.reason not in reasons:
                        reasons.append(h.reason)
            elif start is not None:
                out.append((kind, start, i - 1, tuple(reasons)))
                start = None
        if start is not None:
            out.append((kind, start, last, tuple(reasons)))
    out.sort(key=lambda w: (w[1], w[0]))
    return out


def _time_ticks(events, n):
    """Tick positions: every step at which logical time jumps (up to 12),
    then evenly spaced steps that do not crowd them."""
    if n == 0:
        return [], []
    jumps = [i for i in range(1, n)
             if events[i].time_us != events[i - 1].time_us]
    gap = max(1, n // 30)
    kept = sorted(set(jumps[:12]))
    base = MaxNLocator(nbins=10, integer=True).tick_values(0, n - 1)
    for t in (int(t) for t in base if 0 <= t <= n - 1):
        if all(abs(t - k) >= gap for k in kept):
            kept.append(t)
    return sorted(set(kept)), jumps


def _fmt_ms(us: int) -> str:
    ms = us / 1000.0
    return f"{ms:g}ms" if ms == int(ms) else f"{ms:.3f}ms"


def _draw(ax, run, upto=None, title=None, legend=True, mark=None):
    events, states = _check_run(run)
    last = _upto(events, upto) if events else -1
    lanes = lanes_of(run)
    ypos = {a: len(lanes) - 1 - i for i, a in enumerate(lanes)}
    n = len(events)

    # windows first, so markers sit on top
    for kind, a, b, reasons in hazard_windows(run, upto):
        colour, hatch = WINDOW_STYLE[kind]
        p = ax.axvspan(a - 0.5, b + 0.5, facecolor=colour, alpha=0.18,
                       hatch=hatch, edgecolor=colour, linewidth=0.8,
                       label=WINDOW_LABELS[kind], zorder=0)
        p.set_gid(f"window:{kind}:{a}-{b}")
        y = len(lanes) - 0.45 if kind == "stale" else len(lanes) - 0.75
        ax.text((a + b) / 2, y, f"{kind} {a}..{b}", ha="center",
                va="center", fontsize=7, color=colour, zorder=3,
                clip_on=True)

    groups: dict = {}
    outcomes: dict = {}
    notes = []
    for ev in events[:last + 1]:
        if ev.actor not in ypos:
            continue
        y = ypos[ev.actor]
        if ev.kind == "access" and ev.detail.get("outcome") in OUTCOME_STYLE:
            oc = ev.detail["outcome"]
            outcomes.setdefault(oc, []).append((ev.step, y))
            allowed = ev.detail.get("allowed") or ()
            if len(allowed) > 1:
                notes.append((ev.step, y, "/".join(
                    _ABBR.get(a, a) for a in sorted(allowed))))
        else:
            groups.setdefault(_category(ev), []).append((ev.step, y))

    handles = []
    for cat, (label, marker, colour) in CATEGORY_STYLE.items():
        pts = groups.get(cat)
        if not pts:
            continue
        coll = ax.scatter([p[0] for p in pts], [p[1] for p in pts],
                          marker=marker, s=28, color=colour, label=label,
                          zorder=4, linewidths=1.2)
        coll.set_gid(f"events:{cat}")
        handles.append(coll)
    for oc, (label, marker, colour) in OUTCOME_STYLE.items():
        pts = outcomes.get(oc)
        if not pts:
            continue
        coll = ax.scatter([p[0] for p in pts], [p[1] for p in pts],
                          marker=marker, s=90, color=colour, label=label,
                          edgecolors="black", linewidths=0.8, zorder=5)
        coll.set_gid(f"access:{oc}")
        handles.append(coll)
    for k, (x, y, txt) in enumerate(notes):
        # stagger neighbours so their notes do not overlap
        dy = -10 if k % 2 == 0 else 10
        ax.annotate(txt, (x, y), xytext=(0, dy), textcoords="offset points",
                    ha="center", va="top" if dy < 0 else "bottom",
                    fontsize=6, zorder=6)

    ticks, jumps = _time_ticks(events, n)
    for j in jumps:
        if j > last:
            break
        ax.axvline(j - 0.5, color="#777777", linestyle=":", linewidth=0.8,
                   zorder=1)
        right = j > 0.85 * n
        ax.annotate(f"t={_fmt_ms(events[j].time_us)}", (j - 0.5, 1.0),
                    xycoords=("data", "axes fraction"),
                    xytext=(-2 if right else 2, -2),
                    textcoords="offset points", fontsize=7, va="top",
                    ha="right" if right else "left", color="#444444")
    if upto is not None and upto < n - 1:
        ax.axvline(upto + 0.5, color="black", linewidth=1.5, zorder=6)
        ax.annotate(f"step {upto}", (upto + 0.5, 0.0),
                    xycoords=("data", "axes fraction"), xytext=(2, 2),
                    textcoords="offset points", fontsize=7)

    if mark is not None:
        if not isinstance(mark, int) or not 0 <= mark < n:
            raise IndexError(f"mark {mark!r} is outside this run's steps "
                             f"0..{n - 1}")
        ln = ax.axvline(mark, color="black", linestyle="--", linewidth=1.0,
                        zorder=6)
        ln.set_gid(f"mark:{mark}")
        ax.annotate(f"step {mark}", (mark, 0.0),
                    xycoords=("data", "axes fraction"), xytext=(3, 2),
                    textcoords="offset points", fontsize=7)
    ax.set_yticks([ypos[a] for a in lanes])
    ax.set_yticklabels([LANE_LABELS[a] for a in lanes])
    ax.set_ylim(-0.6, len(lanes) - 0.25)
    ax.set_xlim(-0.5, max(n, 1) - 0.5)
    ax.set_xticks(ticks)
    labels = []
    shown = None
    for t in ticks:
        # the time only where it differs from the previous label's
        tm = events[t].time_us
        labels.append(f"{t}\n{_fmt_ms(tm)}" if tm != shown else f"{t}\n")
        shown = tm
    ax.set_xticklabels(labels, fontsize=7)
    ax.set_xlabel("step (logical time below; under an access: the "
                  "outcomes allowed)", fontsize=8)
    for i in range(len(lanes)):
        ax.axhline(i, color="#DDDDDD", linewidth=0.6, zorder=0)
    ax.tick_params(axis="y", labelsize=8)
    if title:
        ax.set_title(title, fontsize=9, loc="left")
    if legend:
        _legend(ax, handles, Line2D([], [], color="#777777", linestyle=":",
                                    label="logical time jumps"))
    return ax


def _legend(ax, handles, line):
    """The legend right of ``ax``: each label of ``handles`` once (the
    first handle drawn with it), the stale and conflict window swatches,
    then ``line``, the vertical line this figure draws."""
    seen = {}
    for h in handles:
        seen.setdefault(h.get_label(), h)
    extra = []
    for kind in ("stale", "conflict"):
        colour, hatch = WINDOW_STYLE[kind]
        extra.append(Patch(facecolor=colour, alpha=0.3, hatch=hatch,
                           edgecolor=colour, label=WINDOW_LABELS[kind]))
    extra.append(line)
    ax.legend(handles=list(seen.values()) + extra, fontsize=7,
              loc="upper left", bbox_to_anchor=(1.005, 1.0),
              borderaxespad=0.0, frameon=False)


def _run_title(run, label=None):
    cfg = getattr(run, "config", None) or {}
    parts = []
    if label:
        parts.append(label)
    if cfg:
        parts.append(f"kernel {cfg.get('kernel', '?')}, "
                     f"{'strict' if cfg.get('strict', True) else 'lazy'}, "
                     f"BBML{cfg.get('bbml', 0)}, "
                     f"{cfg.get('personality', '?')} SMMU")
    return ": ".join(parts) if parts else None


#: Fixed margins in inches: lane labels on the left, the legend on the
#: right. Fixed margins rather than a layout engine, because a layout
#: engine draws the figure twice on every save.
_MARGIN_L, _MARGIN_R, _MARGIN_B, _MARGIN_T = 1.55, 2.35, 0.65, 0.35


def _fig_size(n, lanes, rows=1):
    w = max(9.0, min(18.0, 5.0 + 0.16 * n))
    return (w, rows * (0.75 + 0.5 * lanes) + _MARGIN_B + _MARGIN_T)


def _new_figure(size, rows=1):
    fig = Figure(figsize=size)
    w, h = size
    fig.subplots_adjust(left=_MARGIN_L / w, right=1 - _MARGIN_R / w,
                        bottom=_MARGIN_B / h, top=1 - _MARGIN_T / h,
                        hspace=(_MARGIN_B + _MARGIN_T) / (h / rows))
    return fig


def timeline_figure(run, upto=None, ax=None, title=None, legend=True,
                    width=None, mark=None):
    """Swim-lane timeline of ``run`` as a matplotlib Figure.

    ``upto`` draws only steps ``0..upto`` (the axis still spans the whole
    run, so stepping through keeps the scale); ``ax`` draws into an
    existing Axes and returns its figure. ``title`` defaults to the run's
    configuration; ``width`` (inches) overrides the width chosen from the
    number of steps; ``mark`` draws a dashed line at that step (e.g. the
    step a tree next to the timeline shows).
    """
    events, _ = _check_run(run)
    if title is None:
        title = _run_title(run)
    if ax is None:
        size = _fig_size(len(events), len(lanes_of(run)))
        if width is not None:
            if not width >= _MARGIN_L + _MARGIN_R + 2:
                raise ValueError(f"width {width!r} inches leaves no room "
                                 "for the plot; use at least 6")
            size = (float(width), size[1])
        fig = _new_figure(size)
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    _draw(ax, run, upto, title, legend, mark)
    return fig


def timeline_compare(run_a, run_b, labels=("strict", "lazy"), upto=None):
    """Two runs in two stacked axes sharing the step axis (e.g. the same
    scenario in strict and lazy mode)."""
    if len(labels) != 2:
        raise ValueError(f"labels {labels!r} must name exactly two runs")
    ea, _ = _check_run(run_a)
    eb, _ = _check_run(run_b)
    n = max(len(ea), len(eb))
    lanes = max(len(lanes_of(run_a)), len(lanes_of(run_b)))
    fig = _new_figure(_fig_size(n, lanes, rows=2), rows=2)
    ax1 = fig.add_subplot(2, 1, 1)
    ax2 = fig.add_subplot(2, 1, 2, sharex=ax1)
    for ax, run, label in ((ax1, run_a, labels[0]), (ax2, run_b, labels[1])):
        u = None if upto is None else min(upto, len(run.events) - 1)
        _draw(ax, run, u, _run_title(run, label))
    ax1.set_xlim(-0.5, n - 0.5)
    ax1.set_xlabel("")
    return fig


# ---------------------------------------------------------------- text

def timeline_text(run, width=72, upto=None) -> str:
    """The timeline as a plain-text event list (ASCII, lines at most
    ``width`` columns): one line per event with step, logical time, the
    window gutter (``S`` inside a stale window, ``C`` inside a conflict
    window) and lane; a bracket line where each window opens and closes."""
    events, states = _check_run(run)
    if not events:
        return "Timeline: no steps yet\n"
    last = _upto(events, upto)
    windows = hazard_windows(run)          # whole run: true extents
    opens: dict = {}
    closes: dict = {}
    inside = {"stale": set(), "conflict": set()}
    for kind, a, b, reasons in windows:
        opens.setdefault(a, []).append((kind, b, reasons))
        closes.setdefault(b, []).append(kind)
        inside[kind].update(range(a, b + 1))
    head = (f"Timeline, steps 0..{last}"
            + (f" of 0..{len(events) - 1}" if last < len(events) - 1 else ""))
    out = [head,
           "S = stale translation reachable, C = TLB conflict allowed",
           f"{'step':>4} {'time ms':>9} SC {'lane':<6} event"]
    prefix_w = 4 + 1 + 9 + 1 + 2 + 1 + 6 + 1
    text_w = max(20, width - prefix_w)
    for ev in events[:last + 1]:
        i = ev.step
        for kind, b, reasons in opens.get(i, ()):
            tag = "S" if kind == "stale" else "C"
            out.append(f"{'':>15}{tag}+-- {WINDOW_LABELS[kind]} opens "
                       f"(steps {i}..{b})")
            for r in reasons[:3]:
                out.append(f"{'':>15}|   {r}")
            if len(reasons) > 3:
                out.append(f"{'':>15}|   (+{len(reasons) - 3} more)")
        gut = (("S" if i in inside["stale"] else " ")
               + ("C" if i in inside["conflict"] else " "))
        body = textwrap.wrap(ascii_only(ev.text), width=text_w,
                             break_long_words=True) or [""]
        out.append(f"{i:>4} {ev.time_us / 1000:>9.3f} {gut} "
                   f"{ev.actor:<6} {body[0]}")
        for cont in body[1:]:
            out.append(f"{'':>15}{gut} {'':<6} {cont}")
        for kind in closes.get(i, ()):
            tag = "S" if kind == "stale" else "C"
            if i == len(events) - 1:
                what = "still open at the end"
            else:
                what = f"closes after step {i}"
            out.append(f"{'':>15}{tag}+-- {WINDOW_LABELS[kind]} {what}")
    return "\n".join(fit_lines(out, width)) + "\n"


# ------------------------------------------------------- time axis (ms)

def _unmap_return(events):
    """The step where the first unmap call of the run returns, or None."""
    for ev in events:
        if ev.kind == "return" and "unmap" in ev.func:
            return ev.step
    return None


def window_times(run, returns=None) -> dict:
    """The run's hazard windows on the logical clock, with the unmap's
    return: ``{"return_step", "return_ms", "windows": [(kind, start_ms,
    end_ms, still_open), ...], "after_return_ms"}``.

    A window ends when the first state without it is recorded (the time of
    that step); one still open at the end of the run ends at the last
    step's time. ``after_return_ms`` is how long a stale translation stays
    reachable after the unmap returned (0 when every stale window closed
    before the return). ``returns`` overrides the return step (default:
    the first ``return`` event of a function whose name contains
    ``unmap``)."""
    events, _ = _check_run(run)
    if returns is None:
        returns = _unmap_return(events)
    if returns is not None:
        _upto(events, returns)
    t_ret = events[returns].time_us if returns is not None else None
    out = []
    after = 0.0
    last = len(events) - 1
    for kind, a, b, _reasons in hazard_windows(run):
        still_open = b == last
        t0 = events[a].time_us
        t1 = events[b].time_us if still_open else events[b + 1].time_us
        out.append((kind, t0 / 1000, t1 / 1000, still_open))
        if kind == "stale" and returns is not None and b >= returns:
            after = max(after, (t1 - max(t0, t_ret)) / 1000)
    return {"return_step": returns,
            "return_ms": None if t_ret is None else t_ret / 1000,
            "windows": out, "after_return_ms": after}


#: Lanes of the ms view: what a reader needs to see the window and what
#: closes it (TLB fills and descriptor writes would pile up at t=0).
_MS_LANES = ("cpu", "cmdq", "device", "fq")
_MS_CPU_KINDS = {"call", "return", "advance"}


def _ms_window_words(info):
    after = info["after_return_ms"]
    stale = [w for w in info["windows"] if w[0] == "stale"]
    if not stale:
        return "no stale window"
    if after == 0:
        return "stale window closes before the unmap returns (0 ms after)"
    tail = " (still open at the end)" if any(w[3] for w in stale) else ""
    return f"stale window: {after:g} ms after the unmap returns{tail}"


def _draw_ms(ax, run, label, xmax, returns=None):
    events, _ = _check_run(run)
    info = window_times(run, returns)
    lanes = [a for a in _MS_LANES if a != "fq" or
             any(e.actor == "fq" for e in events)]
    ypos = {a: len(lanes) - 1 - i for i, a in enumerate(lanes)}
    min_w = xmax / 150          # a window of 0 ms still shows as a sliver
    for kind, t0, t1, _open in info["windows"]:
        colour, hatch = WINDOW_STYLE[kind]
        p = ax.axvspan(t0, max(t1, t0 + min_w), facecolor=colour,
                       alpha=0.18, hatch=hatch, edgecolor=colour,
                       linewidth=0.8, zorder=0)
        p.set_gid(f"window:{kind}:{t0:g}-{t1:g}ms")
    groups: dict = {}
    outcomes: dict = {}
    for ev in events:
        if ev.actor not in ypos:
            continue
        if ev.actor == "cpu" and ev.kind not in _MS_CPU_KINDS:
            continue
        x, y = ev.time_us / 1000, ypos[ev.actor]
        if ev.kind == "access" and ev.detail.get("outcome") in OUTCOME_STYLE:
            outcomes.setdefault(ev.detail["outcome"], []).append((x, y))
        else:
            groups.setdefault(_category(ev), []).append((x, y))
    handles = []
    for cat, (lab, marker, colour) in CATEGORY_STYLE.items():
        pts = groups.get(cat)
        if pts:
            handles.append(ax.scatter([p[0] for p in pts], [p[1] for p in pts],
                                      marker=marker, s=28, color=colour,
                                      label=lab, zorder=4, linewidths=1.2))
    for oc, (lab, marker, colour) in OUTCOME_STYLE.items():
        pts = outcomes.get(oc)
        if pts:
            handles.append(ax.scatter([p[0] for p in pts], [p[1] for p in pts],
                                      marker=marker, s=90, color=colour,
                                      label=lab, edgecolors="black",
                                      linewidths=0.8, zorder=5))
    if info["return_ms"] is not None:
        r = info["return_ms"]
        ln = ax.axvline(r, color="black", linestyle="--", linewidth=1.2,
                        zorder=6)
        ln.set_gid(f"return:{r:g}ms")
        ret_ev = events[info["return_step"]]
        # inside the axes, just right of the line, under the top edge:
        # one label per panel, so panels never overlap each other's text
        ax.annotate(f"{ret_ev.func} returns", (r, 1.0),
                    xycoords=("data", "axes fraction"), xytext=(4, -3),
                    textcoords="offset points", fontsize=7, va="top",
                    ha="left")
    ax.set_yticks([ypos[a] for a in lanes])
    ax.set_yticklabels([LANE_LABELS[a] for a in lanes], fontsize=8)
    ax.set_ylim(-0.6, len(lanes) - 0.4)
    for i in range(len(lanes)):
        ax.axhline(i, color="#DDDDDD", linewidth=0.6, zorder=0)
    ax.set_title(f"{label}: {_ms_window_words(info)}", fontsize=9,
                 loc="left")
    return handles, info


def timeline_compare_ms(run_a, run_b, labels=("strict", "lazy"),
                        returns=(None, None)):
    """Two runs on one **time axis in ms** (logical time), stacked: each
    panel marks where the unmap returns (dashed line), shades the stale
    and conflict windows by their length in ms (a window of 0 ms shows as
    a sliver) and prints, in its own title, how long the window stays open
    after the unmap returns. Unlike :func:`timeline_compare`, whose x axis
    counts steps, widths here are durations, so a lazy flush queue's 10 ms
    window looks ten milliseconds wide and a strict unmap's looks empty.

    ``returns`` gives each run's return step (default: its first unmap
    return). Returns the Figure; :func:`window_times` gives the numbers."""
    if len(labels) != 2:
        raise ValueError(f"labels {labels!r} must name exactly two runs")
    if len(returns) != 2:
        raise ValueError(f"returns {returns!r} must give one step per run")
    ea, _ = _check_run(run_a)
    eb, _ = _check_run(run_b)
    xmax = max(1.0, max(e.time_us for e in list(ea) + list(eb)) / 1000)
    lanes = max(len(_MS_LANES) - (0 if any(e.actor == "fq" for e in r) else 1)
                for r in (ea, eb))
    size = (10.0, 2 * (0.75 + 0.5 * lanes) + _MARGIN_B + _MARGIN_T + 0.3)
    fig = _new_figure(size, rows=2)
    ax1 = fig.add_subplot(2, 1, 1)
    ax2 = fig.add_subplot(2, 1, 2, sharex=ax1)
    handles = []
    for ax, run, label, ret in ((ax1, run_a, labels[0], returns[0]),
                                (ax2, run_b, labels[1], returns[1])):
        hs, _ = _draw_ms(ax, run, label, xmax, ret)
        handles += hs
    pad = xmax * 0.03
    ax1.set_xlim(-pad, xmax + pad)
    ax1.tick_params(labelbottom=False)
    ax2.set_xlabel("logical time (ms)", fontsize=8)
    ax2.tick_params(axis="x", labelsize=8)
    _legend(ax1, handles, Line2D([], [], color="black", linestyle="--",
                                 label="the unmap call returns"))
    return fig


# ---------------------------------------------------------------- replays
# A replayed log on its own clock, with its faults: kept apart from the
# run timeline above (a replay has no steps, lanes or hazards).

__all__ += ["replay_timeline_figure"]

#: events drawn per device at most (evenly thinned beyond that)
REPLAY_MAX_POINTS = 20000


def replay_timeline_figure(rep, ax=None, title=None, width=10.0):
    """A replayed log (:class:`~iommu_viz.ingest.replay.Replay` whose
    events were kept) on its timestamps (seconds; the event index when
    the log has none): one row per device, a tick per map (above the row's
    line) and unmap (below), each fault a vermillion mark on its own row
    with, for a use after unmap, a bar from the unmap to the fault. The
    faulting address and the verdict label each fault."""
    ev = rep.events
    if ev is None:
        raise ValueError("this replay did not keep its events; replay with "
                         "keep_events=True for a timeline")
    times = list(ev.times)
    stamped = any(t == t for t in times)
    xs = []
    last = 0.0
    for i, t in enumerate(times):
        last = (t if t == t else last) if stamped else float(i)
        xs.append(last)
    devs = sorted(set(ev.devs))
    faults = list(rep.faults)
    rows = len(devs) + (1 if faults else 0)
    if ax is None:
        # the run timeline's fixed margins: row labels left, legend right
        fig = _new_figure((width, _MARGIN_B + _MARGIN_T + 0.3
                           + 0.6 * max(1, rows)))
        ax = fig.add_subplot(1, 1, 1)
    else:
        fig = ax.figure
    labels = []
    for r, d in enumerate(devs):
        idx = [i for i in range(len(ev)) if ev.devs[i] == d]
        step = max(1, len(idx) // REPLAY_MAX_POINTS)
        idx = idx[::step]
        maps = [xs[i] for i in idx if ev.kinds[i] in (0, 2, 3)]
        unmaps = [xs[i] for i in idx if ev.kinds[i] not in (0, 2, 3)]
        ax.plot(maps, [r + 0.15] * len(maps), "|", color=OKABE_ITO["blue"],
                markersize=8)
        ax.plot(unmaps, [r - 0.15] * len(unmaps), "|",
                color=OKABE_ITO["orange"], markersize=8)
        labels.append(ascii_only(ev.devices[d] or "(no device named)"))
    red = OKABE_ITO["vermillion"]
    if faults:
        fr = len(devs)
        labels.append("faults")
        fx = [_replay_fault_x(f, ev, xs, stamped) for f in faults]
        lo, hi = min(xs + fx), max(xs + fx)
        for f, x in zip(faults, fx):
            ax.plot([x], [fr], "v", color=red, markersize=9)
            # a note in the right third reads leftwards, inside the axes
            left = hi > lo and x > lo + 0.66 * (hi - lo)
            ax.annotate(ascii_only(f"{f.iova:#x}: {f.verdict}"), (x, fr),
                        textcoords="offset points",
                        xytext=(-4 if left else 4, 6),
                        ha="right" if left else "left",
                        fontsize=8, color=red)
            if f.verdict == "use after unmap" and f.dt is not None and \
                    stamped:
                ax.plot([x - f.dt, x], [fr, fr], "-", color=red,
                        linewidth=2, alpha=0.6)
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels(labels)
    ax.set_ylim(-0.7, len(labels) - 0.3)
    ax.set_xlabel("log time (s)" if stamped else "event index (the log "
                  "has no timestamps)")
    s = rep.summary
    ax.set_title(ascii_only(title or f"replay: {s.events} events, "
                 f"{len(faults)} fault{'' if len(faults) == 1 else 's'}, "
                 f"kernel {s.kernel} era"),
                 fontsize=10, loc="left")
    ax.legend(handles=[
        Line2D([], [], marker="|", linestyle="", color=OKABE_ITO["blue"],
               label="map"),
        Line2D([], [], marker="|", linestyle="", color=OKABE_ITO["orange"],
               label="unmap"),
        Line2D([], [], marker="v", linestyle="", color=red, label="fault")],
        loc="upper left", bbox_to_anchor=(1.005, 1.0), borderaxespad=0.0,
        fontsize=8, frameon=False)
    return fig


def _replay_fault_x(f, ev, xs, stamped) -> float:
    if stamped and f.time is not None:
        return f.time
    from bisect import bisect_left     # kept local: this section stands apart
    k = max(0, bisect_left(ev.lines, f.line) - 1)
    return xs[k] if xs else 0.0
