"""Export: SVG and PNG files, Perfetto traces, and runs as JSON.

* :func:`to_svg` / :func:`to_png` render a matplotlib Figure or DOT source.
* :func:`perfetto_json` writes the Chrome trace-event format that
  https://ui.perfetto.dev and chrome://tracing open: one track per lane,
  an instant event per step, hazard windows as slices on their own tracks.
* :func:`run_to_json` / :func:`run_from_json` save a run as its
  configuration and API calls (plus the events, as a check) and load it by
  re-executing the calls with ``Simulation.from_ops``: the model is
  deterministic, so the replay must give the identical events.
* :func:`render_run` is what the ``iommu-viz`` command calls.
"""

from __future__ import annotations

import bisect
import io
import json
import re

from .text import run_text, step_index
from .timeline import (LANE_LABELS, WINDOW_LABELS, _check_run,
                       hazard_windows, lanes_of, timeline_figure)
from .tree import tree_dot

__all__ = ["to_svg", "to_png", "perfetto_json", "run_to_json",
           "run_from_json", "render_run", "event_to_dict", "FORMATS",
           "RUN_FORMAT", "STEP_US", "replay_perfetto_json"]

#: What :func:`render_run` produces.
FORMATS = ("text", "svg", "png", "perfetto", "json")
#: The ``format`` tag of a saved run.
RUN_FORMAT = "iommu-viz-run"
RUN_VERSION = 1
#: Perfetto: each step adds this many microseconds (1 ns) to the logical
#: time, so events at the same logical time keep their order on screen.
STEP_US = 0.001

_SVG_RC = {"svg.hashsalt": "iommu-viz", "svg.fonttype": "none"}


def _is_dot(obj) -> bool:
    return isinstance(obj, str) and re.match(
        r"\s*(strict\s+)?(di)?graph\b", obj) is not None


def _figure_bytes(fig, fmt, dpi):
    import matplotlib
    buf = io.BytesIO()
    meta = ({"Date": None, "Creator": "iommu-viz"} if fmt == "svg"
            else {"Software": "iommu-viz"})
    with matplotlib.rc_context(_SVG_RC):
        fig.savefig(buf, format=fmt, dpi=dpi, metadata=meta,
                    facecolor="white")
    return buf.getvalue()


def to_svg(obj) -> str:
    """SVG text of a matplotlib ``Figure``, DOT source (a string starting
    ``digraph``) or a graphviz ``Source``/``Digraph``. Deterministic: the
    same input gives the same bytes."""
    from matplotlib.figure import Figure
    if isinstance(obj, Figure):
        return _figure_bytes(obj, "svg", 72).decode("utf-8")
    if _is_dot(obj):
        import graphviz
        return graphviz.Source(obj).pipe(format="svg").decode("utf-8")
    if hasattr(obj, "pipe"):
        return obj.pipe(format="svg").decode("utf-8")
    raise TypeError(f"cannot render {type(obj).__name__} as SVG: expected a "
                    "matplotlib Figure, DOT source or a graphviz object")


def to_png(obj, dpi: int = 100) -> bytes:
    """PNG bytes of a matplotlib ``Figure``, DOT source or graphviz
    object (``dpi`` applies to figures and to DOT)."""
    from matplotlib.figure import Figure
    if isinstance(obj, Figure):
        return _figure_bytes(obj, "png", dpi)
    if _is_dot(obj):
        import graphviz
        src = obj.replace("{", f"{{\n  graph [dpi={int(dpi)}];", 1)
        return graphviz.Source(src).pipe(format="png")
    if hasattr(obj, "pipe"):
        return obj.pipe(format="png")
    raise TypeError(f"cannot render {type(obj).__name__} as PNG: expected a "
                    "matplotlib Figure, DOT source or a graphviz object")


# ---------------------------------------------------------------- JSON

def _jsonable(v):
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (set, frozenset)):
        return sorted(_jsonable(x) for x in v)
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return str(v)


def event_to_dict(ev) -> dict:
    """An Event as plain JSON data."""
    return {"step": ev.step, "time_us": ev.time_us, "op": ev.op,
            "actor": ev.actor, "kind": ev.kind, "func": ev.func,
            "text": ev.text, "detail": _jsonable(ev.detail)}


def run_to_json(run) -> dict:
    """A run as JSON data: ``config`` and ``ops`` (enough to re-execute it)
    plus ``events`` (to check the replay)."""
    for attr in ("config", "ops", "events"):
        if not hasattr(run, attr):
            raise TypeError(f"{type(run).__name__} has no .{attr}; only a "
                            "Simulation (or a run loaded from JSON) can be "
                            "saved")
    return {"format": RUN_FORMAT, "version": RUN_VERSION,
            "config": _jsonable(run.config), "ops": _jsonable(run.ops),
            "events": [event_to_dict(e) for e in run.events]}


def run_from_json(d):
    """Load a run saved by :func:`run_to_json` (a dict or JSON text) by
    re-executing its API calls with ``Simulation.from_ops``.

    Raises ``ValueError`` naming the first step whose replayed event
    differs from the recorded one (another model version, or an edited
    file), or when the data is not a saved run.
    """
    if isinstance(d, (str, bytes)):
        try:
            d = json.loads(d)
        except json.JSONDecodeError as e:
            raise ValueError(f"not a saved run: invalid JSON ({e})") from None
    if not isinstance(d, dict) or d.get("format") != RUN_FORMAT:
        raise ValueError("not a saved run: expected a dict with format "
                         f"{RUN_FORMAT!r}")
    if d.get("version") != RUN_VERSION:
        raise ValueError(f"saved run version {d.get('version')!r} is not "
                         f"supported; this build reads version {RUN_VERSION}")
    for key in ("config", "ops", "events"):
        if key not in d:
            raise ValueError(f"saved run has no {key!r}")
    from ..sim import Simulation
    try:
        sim = Simulation.from_ops(dict(d["config"]), list(d["ops"]))
    except (TypeError, KeyError, ValueError, ArithmeticError) as e:
        raise ValueError(f"saved run does not re-execute: {e}") from e
    except Exception as e:  # ApiError, PgtableError: the model refused
        raise ValueError(f"saved run does not re-execute: "
                         f"{type(e).__name__}: {e}") from e
    got = json.loads(json.dumps([event_to_dict(e) for e in sim.events]))
    want = json.loads(json.dumps(d["events"]))
    for i, (g, w) in enumerate(zip(got, want)):
        if g != w:
            keys = [k for k in sorted(set(g) | set(w)) if g.get(k) != w.get(k)]
            raise ValueError(
                f"replayed run differs from the recorded one at step {i} "
                f"(field {', '.join(keys)}): recorded {w.get('text')!r}, "
                f"replayed {g.get('text')!r}")
    if len(got) != len(want):
        raise ValueError(f"replayed run has {len(got)} events, the recorded "
                         f"one {len(want)}")
    return sim


# ---------------------------------------------------------------- Perfetto

_TIDS = {"cpu": 1, "cmdq": 2, "tlb": 3, "device": 4, "fq": 5}
_WINDOW_TIDS = {"stale": 10, "conflict": 11}


def _event_name(ev) -> str:
    if ev.kind == "access":
        return f"access: {ev.detail.get('outcome', '?')}"
    if ev.kind == "cmd_issue":
        return str(ev.detail.get("op") or ev.kind)
    if ev.kind == "call":
        return ev.func
    return ev.kind


def perfetto_json(run) -> dict:
    """The run in Chrome trace-event format (``{"traceEvents": [...],
    "displayTimeUnit": "ms"}``): ``ts`` is the logical time in
    microseconds plus :data:`STEP_US` per step; lanes are threads named by
    ``thread_name`` metadata; each event is an instant (``ph`` "i", thread
    scope); hazard windows are complete slices (``ph`` "X") on tracks of
    their own."""
    events, states = _check_run(run)
    pid = 1
    cfg = getattr(run, "config", None) or {}
    pname = "iommu-viz run" + (
        f" (kernel {cfg.get('kernel')}, "
        f"{'strict' if cfg.get('strict', True) else 'lazy'}, "
        f"BBML{cfg.get('bbml', 0)})" if cfg else "")
    out = [{"name": "process_name", "ph": "M", "pid": pid, "tid": 0,
            "ts": 0, "args": {"name": pname}}]
    for lane in lanes_of(run):
        tid = _TIDS[lane]
        out.append({"name": "thread_name", "ph": "M", "pid": pid,
                    "tid": tid, "ts": 0, "args": {"name": LANE_LABELS[lane]}})
        out.append({"name": "thread_sort_index", "ph": "M", "pid": pid,
                    "tid": tid, "ts": 0, "args": {"sort_index": tid}})
    for kind, tid in _WINDOW_TIDS.items():
        out.append({"name": "thread_name", "ph": "M", "pid": pid,
                    "tid": tid, "ts": 0,
                    "args": {"name": "window: " + WINDOW_LABELS[kind]}})
        out.append({"name": "thread_sort_index", "ph": "M", "pid": pid,
                    "tid": tid, "ts": 0, "args": {"sort_index": tid}})

    def ts(i):
        return round(events[i].time_us + i * STEP_US, 3)

    for ev in events:
        out.append({"name": _event_name(ev), "cat": ev.actor, "ph": "i",
                    "s": "t", "ts": ts(ev.step), "pid": pid,
                    "tid": _TIDS.get(ev.actor, 9),
                    "args": {"step": ev.step, "time_ms": ev.time_ms,
                             "func": ev.func, "text": ev.text,
                             "detail": _jsonable(ev.detail)}})
    n = len(events)
    for kind, a, b, reasons in hazard_windows(run):
        start = ts(a)
        end = ts(b + 1) if b + 1 < n else ts(b) + STEP_US
        out.append({"name": WINDOW_LABELS[kind], "cat": "window", "ph": "X",
                    "ts": start, "dur": round(max(end - start, STEP_US), 3),
                    "pid": pid, "tid": _WINDOW_TIDS[kind],
                    "args": {"first_step": a, "last_step": b,
                             "reasons": list(reasons)}})
    return {"traceEvents": out, "displayTimeUnit": "ms"}


# ---------------------------------------------------------------- pictures

def _svg_size(svg: str):
    m = re.search(r"<svg\b[^>]*>", svg)
    if not m:
        raise ValueError("not SVG text: no <svg> element")
    tag = m.group(0)

    def attr(name):
        a = re.search(rf'\b{name}="([0-9.]+)(pt|px)?"', tag)
        if not a:
            raise ValueError(f"SVG root has no {name}")
        v = float(a.group(1))
        return v * 0.75 if a.group(2) == "px" else v
    return attr("width"), attr("height"), m.start(), m.end()


def stack_svgs(svgs) -> str:
    """Stack SVG documents vertically into one (sizes in points)."""
    parts = []
    y = 0.0
    width = 0.0
    for svg in svgs:
        w, h, start, end = _svg_size(svg)
        tag = svg[start:end]
        tag = re.sub(r'\bwidth="[^"]*"', f'width="{w:.2f}"', tag, count=1)
        tag = re.sub(r'\bheight="[^"]*"', f'height="{h:.2f}"', tag, count=1)
        tag = tag.replace("<svg", f'<svg x="0" y="{y:.2f}"', 1)
        parts.append(tag + svg[end:].strip())
        y += h
        width = max(width, w)
    return ('<?xml version="1.0" encoding="utf-8" standalone="no"?>\n'
            f'<svg xmlns="http://www.w3.org/2000/svg" '
            f'xmlns:xlink="http://www.w3.org/1999/xlink" '
            f'width="{width:.2f}pt" height="{y:.2f}pt" '
            f'viewBox="0 0 {width:.2f} {y:.2f}">\n'
            '<rect width="100%" height="100%" fill="white"/>\n'
            + "\n".join(parts) + "\n</svg>\n")


def stack_pngs(pngs) -> bytes:
    """Stack PNG images vertically, left-aligned, on white."""
    from PIL import Image
    imgs = [Image.open(io.BytesIO(p)).convert("RGB") for p in pngs]
    w = max(i.width for i in imgs)
    h = sum(i.height for i in imgs)
    canvas = Image.new("RGB", (w, h), "white")
    y = 0
    for im in imgs:
        canvas.paste(im, (0, y))
        y += im.height
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return buf.getvalue()


def step_dot(run, step=None, title=None) -> str:
    """DOT of the tree at ``step`` with changes against the step before
    and the TLB marks of that step."""
    i = step_index(run, step)
    st = run.states[i]
    prev = run.states[i - 1].pgtable if i > 0 else None
    if title is None:
        ev = run.events[i]
        title = f"after step {i}: {ev.func}: {ev.text}"
    return tree_dot(st.pgtable, prev=prev, tlb=st.tlb, title=title)


def render_run(run, fmt: str, step=None):
    """Render ``run`` (at ``step``, default the last) as ``fmt``:

    ``text``      str, plain text, <= 72 columns (:func:`run_text`)
    ``svg``       str, the tree at the step above the timeline up to it
    ``png``       bytes, the same picture
    ``perfetto``  str, Chrome trace-event JSON (:func:`perfetto_json`)
    ``json``      str, the saved run (:func:`run_to_json`)
    """
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} is not one of "
                         + ", ".join(FORMATS))
    if fmt == "text":
        return run_text(run, step)
    if fmt == "perfetto":
        return json.dumps(perfetto_json(run), indent=1, sort_keys=True)
    if fmt == "json":
        return json.dumps(run_to_json(run), indent=1, sort_keys=True)
    i = step_index(run, step)
    dot = step_dot(run, i)
    upto = None if i == len(run.events) - 1 else i
    if fmt == "svg":
        fig = timeline_figure(run, upto=upto)
        return stack_svgs([to_svg(dot), to_svg(fig)])
    tree_png = to_png(dot, dpi=96)
    from PIL import Image
    tw = Image.open(io.BytesIO(tree_png)).width
    fig = timeline_figure(run, upto=upto)
    w = fig.get_size_inches()[0]
    if tw / 100 > w:
        # as wide as the tree, within reason
        fig = timeline_figure(run, upto=upto, width=min(tw / 100, 18.0))
    return stack_pngs([tree_png, to_png(fig, dpi=100)])


# ---------------------------------------------------------------- replays
#: Perfetto track ids of a replay: devices from 1, faults from this one
_FAULT_TID = 10000


def replay_perfetto_json(rep) -> dict:
    """A replayed log (:class:`~iommu_viz.ingest.replay.Replay` whose
    events were kept) in Chrome trace-event format: ``ts`` is the log's own
    timestamp in microseconds; one track per device (``dev=`` name, or
    "(no device named)"), each map or unmap a complete slice (``ph`` "X")
    lasting until the track's next event, at most 1 us, so slices on a
    track never overlap; each fault an instant (``ph`` "i", process
    scope) on a faults track, and for a use after unmap a slice from the
    unmap to the fault on a track of its own. Events without a timestamp
    take the last one seen (or their index, in microseconds, when the log
    has none at all)."""
    ev = rep.events
    if ev is None:
        raise ValueError("this replay did not keep its events; replay with "
                         "keep_events=True for a trace")
    s = rep.summary
    pid = 1
    n = len(ev)
    times = list(ev.times)
    stamped = any(t == t for t in times)
    ts = []
    last = 0.0
    for i, t in enumerate(times):
        if not stamped:
            last = float(i)
        elif t == t:
            last = t * 1e6
        ts.append(round(last, 3))
    name = (f"iommu-viz replay ({s.fmt}, kernel {s.kernel} era"
            + ("" if stamped else ", no timestamps: 1 us per event") + ")")
    out = [{"name": "process_name", "ph": "M", "pid": pid, "tid": 0,
            "ts": 0, "args": {"name": name}}]
    used = sorted(set(ev.devs))
    for d in used:
        label = ev.devices[d] or "(no device named)"
        out.append({"name": "thread_name", "ph": "M", "pid": pid,
                    "tid": 1 + d, "ts": 0, "args": {"name": label}})
    # each track's events in time order; a slice ends at the next one
    by_track = {}
    for i in range(n):
        by_track.setdefault(ev.devs[i], []).append(i)
    kinds = ("map", "unmap", "map request", "map piece", "unmap request",
             "unmap piece")
    for d, idx in by_track.items():
        idx.sort(key=lambda i: (ts[i], i))
        for k, i in enumerate(idx):
            nxt = ts[idx[k + 1]] if k + 1 < len(idx) else ts[i] + 1.0
            dur = round(max(0.0, min(1.0, nxt - ts[i])), 3)
            args = {"line": ev.lines[i], "iova": f"{ev.iovas[i]:#x}",
                    "size": ev.sizes[i]}
            if ev.kinds[i] in (0, 2, 3):
                args["paddr"] = f"{ev.paddrs[i]:#x}"
            out.append({"name": f"{kinds[ev.kinds[i]]} {ev.iovas[i]:#x}",
                        "cat": "iommu", "ph": "X", "ts": ts[i], "dur": dur,
                        "pid": pid, "tid": 1 + d, "args": args})
    faults = list(rep.faults)
    if faults:
        out.append({"name": "thread_name", "ph": "M", "pid": pid,
                    "tid": _FAULT_TID, "ts": 0, "args": {"name": "faults"}})
    windows = []          # (start, end) per window track
    for f in faults:
        t = _fault_ts(f, rep, ts, stamped)
        out.append({"name": f"fault {f.iova:#x}: {f.verdict}",
                    "cat": "fault", "ph": "i", "s": "p", "ts": t,
                    "pid": pid, "tid": _FAULT_TID, "args": f.to_dict()})
        if f.verdict == "use after unmap" and f.dt is not None:
            start = round(t - f.dt * 1e6, 3)
            k = next((j for j, end in enumerate(windows) if end <= start),
                     len(windows))
            if k == len(windows):
                windows.append(0.0)
                out.append({"name": "thread_name", "ph": "M", "pid": pid,
                            "tid": _FAULT_TID + 1 + k, "ts": 0,
                            "args": {"name": "use after unmap"}})
            windows[k] = t
            out.append({"name": f"unmapped {f.iova:#x} -> fault",
                        "cat": "fault", "ph": "X", "ts": start,
                        "dur": round(t - start, 3), "pid": pid,
                        "tid": _FAULT_TID + 1 + k,
                        "args": {"unmap_line": f.unmap_line,
                                 "fault_line": f.line}})
    return {"traceEvents": out, "displayTimeUnit": "ms"}


def _fault_ts(f, rep, ts, stamped) -> float:
    """A fault's place on the trace's clock: its own timestamp, or that of
    the last event logged before it."""
    if stamped and f.time is not None:
        return round(f.time * 1e6, 3)
    k = max(0, bisect.bisect_left(rep.events.lines, f.line) - 1)
    return ts[k] if ts else 0.0
