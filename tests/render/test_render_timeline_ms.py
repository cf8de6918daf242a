"""The strict/lazy comparison on a time axis in ms: window lengths from
the logical clock, the unmap's return marked once per panel."""

import pytest

from iommu_viz import scenarios
from iommu_viz.render.timeline import timeline_compare_ms, window_times


@pytest.fixture(scope="module")
def runs():
    return (scenarios.run("strict-vs-lazy", strict=True),
            scenarios.run("strict-vs-lazy", strict=False))


def test_window_lengths_come_from_the_clock(runs):
    strict, lazy = runs
    s, z = window_times(strict), window_times(lazy)
    assert s["after_return_ms"] == 0 and s["windows"]
    assert all(w[2] == 0.0 for w in s["windows"])   # closes at t=0
    assert z["after_return_ms"] == 10.0              # the 10 ms fq timer
    assert z["return_ms"] == 0.0
    assert strict.events[s["return_step"]].kind == "return"


def test_never_synced_window_is_open_at_the_end():
    run = scenarios.run("seed", fast=True, sync_after=False)
    info = window_times(run)
    stale = [w for w in info["windows"] if w[0] == "stale"]
    assert stale[-1][3] is True and info["after_return_ms"] == 11.0


def test_figure_axis_is_in_ms_with_one_return_mark_per_panel(runs):
    fig = timeline_compare_ms(*runs)
    top, bottom = fig.axes[:2]
    assert bottom.get_xlabel() == "logical time (ms)"
    assert top.get_xlim()[1] > 11 > 10
    for ax in (top, bottom):
        marks = [ln for ln in ax.lines if (ln.get_gid() or "").startswith("return:")]
        assert len(marks) == 1
        assert len(ax.texts) == 1          # one label, never both runs'
    assert "0 ms after" in top.get_title(loc="left")
    assert "10 ms after" in bottom.get_title(loc="left")
    gids = [p.get_gid() for p in bottom.patches]
    assert "window:stale:0-10ms" in gids


def test_bad_arguments_are_named(runs):
    with pytest.raises(ValueError, match="exactly two"):
        timeline_compare_ms(*runs, labels=("a",))
    with pytest.raises(IndexError, match="outside"):
        window_times(runs[0], returns=999)
