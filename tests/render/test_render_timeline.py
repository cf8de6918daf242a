"""Timeline: lanes, hazard windows, access markers, text twin."""

from types import SimpleNamespace

import pytest
from matplotlib import _pylab_helpers
from matplotlib.figure import Figure

from iommu_viz import LpaeTable
from iommu_viz.render.timeline import (LANE_LABELS, WINDOW_LABELS,
                                       hazard_windows, lanes_of,
                                       timeline_compare, timeline_figure,
                                       timeline_text)
from iommu_viz.sim.trace import Event, Hazard, State

from render_helpers import check_plain, first_step


def fake_run(hazard_kinds, actors=None, times=None):
    """A hand-built run: one event per entry of ``hazard_kinds`` (a string
    of 's'/'c' letters per step)."""
    snap = LpaeTable().snapshot()
    events, states = [], []
    for i, kinds in enumerate(hazard_kinds):
        actor = actors[i] if actors else "cpu"
        t = times[i] if times else 0
        events.append(Event(i, t, i, actor, "call", "f", f"event {i}"))
        hz = tuple(Hazard({"s": "stale", "c": "conflict"}[k], 0, 0x1000,
                          f"reason {k}") for k in kinds)
        states.append(State(i, t, snap, (), (), (), (), (), hz))
    return SimpleNamespace(events=events, states=states, config={})


def windows_in(ax):
    return sorted((p.get_gid(), p.get_label()) for p in ax.patches
                  if (p.get_gid() or "").startswith("window:"))


def markers(ax, gid):
    for c in ax.collections:
        if c.get_gid() == gid:
            return [tuple(map(float, xy)) for xy in c.get_offsets()]
    return []


# ------------------------------------------------------------------ windows

def test_hazard_windows_from_states():
    run = fake_run(["", "s", "sc", "c", "", "s"])
    assert hazard_windows(run) == [
        ("stale", 1, 2, ("reason s",)),
        ("conflict", 2, 3, ("reason c",)),
        ("stale", 5, 5, ("reason s",))]
    assert hazard_windows(run, upto=2) == [
        ("stale", 1, 2, ("reason s",)), ("conflict", 2, 2, ("reason c",))]
    with pytest.raises(IndexError, match="upto 6 is outside"):
        hazard_windows(run, upto=6)


def test_window_patches_are_labelled():
    run = fake_run(["", "s", "sc", "c", "", "s"])
    ax = timeline_figure(run).axes[0]
    assert windows_in(ax) == [
        ("window:conflict:2-3", WINDOW_LABELS["conflict"]),
        ("window:stale:1-2", WINDOW_LABELS["stale"]),
        ("window:stale:5-5", WINDOW_LABELS["stale"])]
    p = [p for p in ax.patches if p.get_gid() == "window:stale:1-2"][0]
    # a Rectangle (matplotlib >= 3.9) or a Polygon (before)
    if hasattr(p, "get_width"):
        xs = [p.get_x(), p.get_x() + p.get_width()]
    else:
        xs = [v[0] for v in p.get_xy()]
    assert min(xs) == 0.5 and max(xs) == 2.5
    # the windows have distinct hatches, so greyscale tells them apart
    hatches = {p.get_label(): p.get_hatch() for p in ax.patches
               if p.get_gid()}
    assert len(set(hatches.values())) == 2


def test_seed_run_windows_match_the_split_and_the_sync(seed_run):
    install = next(
        e.step for e in seed_run.events
        if e.func == "arm_lpae_install_table" and e.detail.get("level") == 2)
    fill = first_step(seed_run, "fill", actor="tlb")
    spec = next(e.step for e in seed_run.events
                if e.kind == "fill" and e.step > install)
    inval = first_step(seed_run, "invalidate", actor="tlb")
    assert fill < install < spec < inval
    wins = {(k, a, b) for k, a, b, _ in hazard_windows(seed_run)}
    # the stale window opens when the table replaces the cached block, the
    # conflict window when the page is cached beside it; both close when
    # the TLBI takes the block out
    assert wins == {("stale", install, inval - 1),
                    ("conflict", spec, inval - 1)}
    ax = timeline_figure(seed_run).axes[0]
    assert [g for g, _ in windows_in(ax)] == [
        f"window:conflict:{spec}-{inval - 1}",
        f"window:stale:{install}-{inval - 1}"]


# ------------------------------------------------------------------ lanes

def test_lanes(seed_run, lazy_run):
    assert lanes_of(seed_run) == ("cpu", "cmdq", "tlb", "device")
    assert lanes_of(lazy_run) == ("cpu", "cmdq", "tlb", "device", "fq")
    ax = timeline_figure(lazy_run).axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    # top to bottom: cpu first; ticks are listed bottom-up by position
    ys = list(ax.get_yticks())
    by_y = [lab for _, lab in sorted(zip(ys, labels), reverse=True)]
    assert by_y == [LANE_LABELS[a] for a in
                    ("cpu", "cmdq", "tlb", "device", "fq")]


def test_access_markers(seed_run):
    ax = timeline_figure(seed_run).axes[0]
    device_y = len(lanes_of(seed_run)) - 1 - 3
    by_outcome = {}
    for e in seed_run.events:
        if e.kind == "access":
            by_outcome.setdefault(e.detail["outcome"], []).append(
                (float(e.step), float(device_y)))
    assert set(by_outcome) >= {"stale", "translated", "fault"}
    for oc, pts in by_outcome.items():
        assert markers(ax, f"access:{oc}") == pts
    shapes = {c.get_gid(): c.get_paths()[0].vertices.shape
              for c in ax.collections if (c.get_gid() or "").startswith(
                  "access:")}
    assert len(set(map(str, shapes.values()))) == len(shapes)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "access: stale translation used" in legend
    assert WINDOW_LABELS["stale"] in legend and \
        WINDOW_LABELS["conflict"] in legend
    # accesses with more than one allowed outcome say which
    texts = [t.get_text() for t in ax.texts]
    assert "fault/stale" in texts


def test_upto_draws_only_the_past(seed_run):
    n = len(seed_run.events)
    upto = first_step(seed_run, "access", outcome="stale")
    ax = timeline_figure(seed_run, upto=upto).axes[0]
    for c in ax.collections:
        assert all(x <= upto for x, _ in c.get_offsets())
    assert markers(ax, "access:fault") == []
    assert ax.get_xlim() == (-0.5, n - 0.5)    # scale stays the run's
    for g, _ in windows_in(ax):
        assert int(g.rsplit("-", 1)[1]) <= upto


def test_mark_line(seed_run):
    ax = timeline_figure(seed_run, mark=5).axes[0]
    lines = [ln for ln in ax.lines if ln.get_gid() == "mark:5"]
    assert len(lines) == 1 and list(lines[0].get_xdata()) == [5, 5]
    with pytest.raises(IndexError, match="mark 99 is outside"):
        timeline_figure(seed_run, mark=99)
    with pytest.raises(ValueError, match="width 3 inches"):
        timeline_figure(seed_run, width=3)


def test_logical_time_labels(lazy_run):
    ax = timeline_figure(lazy_run).axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    ticks = [int(t) for t in ax.get_xticks()]
    jump = next(e.step for e in lazy_run.events if e.time_us == 4000)
    assert jump in ticks
    assert labels[ticks.index(jump)] == f"{jump}\n4ms"
    assert "t=10ms" in [t.get_text() for t in ax.texts]


def test_draw_into_given_axes_and_no_pyplot_state(seed_run):
    before = len(_pylab_helpers.Gcf.get_all_fig_managers())
    fig = Figure()
    ax = fig.add_subplot()
    assert timeline_figure(seed_run, ax=ax) is fig
    assert ax.collections
    timeline_compare(seed_run, seed_run)
    assert len(_pylab_helpers.Gcf.get_all_fig_managers()) == before


def test_compare(seed_run, lazy_run):
    fig = timeline_compare(seed_run, lazy_run, labels=("strict", "lazy"))
    a, b = fig.axes
    assert a.get_shared_x_axes().joined(a, b)
    assert a.get_title(loc="left").startswith("strict: kernel v5.4, strict")
    assert b.get_title(loc="left").startswith("lazy: kernel v5.4, lazy")
    n = max(len(seed_run.events), len(lazy_run.events))
    assert a.get_xlim() == (-0.5, n - 0.5)
    assert len(b.get_yticks()) == 5 and len(a.get_yticks()) == 4
    with pytest.raises(ValueError, match="exactly two"):
        timeline_compare(seed_run, lazy_run, labels=("one",))


def test_not_a_run():
    with pytest.raises(TypeError, match="not a recorded run"):
        timeline_figure(object())
    bad = SimpleNamespace(events=[1, 2], states=[1])
    with pytest.raises(ValueError, match="2 events but 1 states"):
        timeline_figure(bad)


# ------------------------------------------------------------------ text

def test_text_brackets_windows():
    run = fake_run(["", "s", "sc", "c", "", "s"],
                   times=[0, 0, 0, 1000, 1000, 11000])
    text = timeline_text(run)
    check_plain(text)
    lines = text.split("\n")
    assert lines[2] == "step   time ms SC lane   event"
    body = lines[3:]
    assert body == [
        "   0     0.000    cpu    event 0",
        "               S+-- stale translation reachable opens (steps 1..2)",
        "               |   reason s",
        "   1     0.000 S  cpu    event 1",
        "               C+-- TLB conflict allowed opens (steps 2..3)",
        "               |   reason c",
        "   2     0.000 SC cpu    event 2",
        "               S+-- stale translation reachable closes after step 2",
        "   3     1.000  C cpu    event 3",
        "               C+-- TLB conflict allowed closes after step 3",
        "   4     1.000    cpu    event 4",
        "               S+-- stale translation reachable opens (steps 5..5)",
        "               |   reason s",
        "   5    11.000 S  cpu    event 5",
        "               S+-- stale translation reachable still open at the "
        "end",
        ""]


def test_text_upto(seed_run):
    upto = first_step(seed_run, "access", outcome="stale")
    text = timeline_text(seed_run, upto=upto)
    check_plain(text)
    lines = text.rstrip("\n").split("\n")
    assert lines[0] == (f"Timeline, steps 0..{upto} of "
                        f"0..{len(seed_run.events) - 1}")
    steps = [int(ln[:4]) for ln in lines[3:] if ln[:4].strip().isdigit()]
    assert steps == list(range(upto + 1))
    assert "closes" not in text          # the windows are still open there
    with pytest.raises(IndexError):
        timeline_text(seed_run, upto=len(seed_run.events))


def test_text_of_real_runs_fit(seed_run, lazy_run):
    for run in (seed_run, lazy_run):
        text = timeline_text(run)
        check_plain(text)
        assert text.count("\n") >= len(run.events) + 3
        check_plain(timeline_text(run, width=50), 50)
