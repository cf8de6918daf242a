"""Exports: SVG/PNG, Perfetto trace, JSON round trip, render_run, text,
Jupyter helpers."""

import copy
import json

import pytest

from iommu_viz import SZ_4K
from iommu_viz.render import (install_reprs, run_html, state_html,
                              state_repr_html)
from iommu_viz.render.export import (FORMATS, perfetto_json, render_run,
                                     run_from_json, run_to_json, stack_svgs,
                                     to_png, to_svg)
from iommu_viz.render.text import caption, run_text
from iommu_viz.render.timeline import timeline_figure
from iommu_viz.render.tree import tree_dot
from iommu_viz.sim import Simulation

from render_helpers import check_plain, first_step

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------ pictures

def test_to_svg_and_png(seed_run, split):
    fig = timeline_figure(seed_run)
    svg = to_svg(fig)
    assert svg.startswith("<?xml") and "<svg" in svg
    assert to_svg(fig) == svg                      # deterministic
    assert to_png(fig).startswith(PNG_MAGIC)
    dot = tree_dot(split[2])
    assert "<svg" in to_svg(dot) and to_png(dot).startswith(PNG_MAGIC)
    with pytest.raises(TypeError, match="cannot render int as SVG"):
        to_svg(3)
    with pytest.raises(TypeError, match="cannot render str as PNG"):
        to_png("not dot")


def test_stack_svgs():
    a = '<?xml version="1.0"?>\n<svg width="100pt" height="20pt"><g/></svg>'
    b = '<svg width="40px" height="40px"><rect/></svg>'
    out = stack_svgs([a, b])
    assert 'width="100.00pt" height="50.00pt"' in out
    assert '<svg x="0" y="0.00" width="100.00" height="20.00"><g/>' in out
    assert '<svg x="0" y="20.00" width="30.00" height="30.00"><rect/>' in out
    assert out.count("<?xml") == 1
    with pytest.raises(ValueError, match="no <svg> element"):
        stack_svgs(["<p/>"])


# ------------------------------------------------------------------ Perfetto

def test_perfetto_required_fields(lazy_run):
    trace = perfetto_json(lazy_run)
    assert trace["displayTimeUnit"] == "ms"
    evs = trace["traceEvents"]
    json.dumps(trace)                                   # serialisable
    for e in evs:
        for key in ("name", "ph", "ts", "pid", "tid"):
            assert key in e, (key, e)
        assert e["ph"] in ("M", "i", "X")
        if e["ph"] == "i":
            assert e["s"] == "t"
        if e["ph"] == "X":
            assert e["dur"] > 0
    inst = [e for e in evs if e["ph"] == "i"]
    assert [e["args"]["step"] for e in inst] == list(range(len(
        lazy_run.events)))
    # ts is the logical time in microseconds, in order
    ts = [e["ts"] for e in inst]
    assert ts == sorted(ts)
    for e, ev in zip(inst, lazy_run.events):
        assert ev.time_us <= e["ts"] < ev.time_us + 1
    names = {e["tid"]: e["args"]["name"] for e in evs
             if e["ph"] == "M" and e["name"] == "thread_name"}
    assert set(names) == {1, 2, 3, 4, 5, 10, 11}
    assert names[5].startswith("fq") and "stale" in names[10]
    lanes = {e["tid"] for e in inst}
    assert lanes == {1, 2, 3, 4, 5}
    win = [e for e in evs if e["ph"] == "X"]
    assert [w["name"] for w in win] == ["stale translation reachable"]
    # the window covers the stale accesses, not the fault after the flush
    first, last = win[0]["args"]["first_step"], win[0]["args"]["last_step"]
    stale = [e.step for e in lazy_run.events
             if e.detail.get("outcome") == "stale"]
    assert stale and all(first <= s <= last for s in stale)
    fault = first_step(lazy_run, "access", outcome="fault")
    assert fault > last


def test_perfetto_names(seed_run):
    inst = [e for e in perfetto_json(seed_run)["traceEvents"]
            if e["ph"] == "i"]
    names = [e["name"] for e in inst]
    assert "CMD_TLBI_NH_VA" in names and "CMD_SYNC" in names
    assert "access: stale" in names and "iommu_unmap_fast" in names


# ------------------------------------------------------------------ JSON

def test_json_round_trip(seed_run):
    d = run_to_json(seed_run)
    text = json.dumps(d)
    back = run_from_json(json.loads(text))
    assert back.events == seed_run.events
    assert [s.tlb for s in back.states] == [s.tlb for s in seed_run.states]
    assert back.config == seed_run.config and back.ops == seed_run.ops
    assert run_from_json(text).events == seed_run.events    # JSON text too


def test_json_round_trip_lazy(lazy_run):
    assert run_from_json(run_to_json(lazy_run)).events == lazy_run.events


def test_json_tampered_events_are_refused(seed_run):
    d = run_to_json(seed_run)
    bad = copy.deepcopy(d)
    step = first_step(seed_run, "access", outcome="stale")
    bad["events"][step]["text"] = "device read: nothing to see"
    with pytest.raises(ValueError, match=rf"differs .* at step {step} "
                                         r"\(field text\)"):
        run_from_json(bad)
    short = copy.deepcopy(d)
    short["events"].append(dict(short["events"][-1], step=len(d["events"])))
    with pytest.raises(ValueError, match="replayed run has"):
        run_from_json(short)
    changed = copy.deepcopy(d)
    changed["config"]["kernel"] = "v4.20"
    with pytest.raises(ValueError, match="differs"):
        run_from_json(changed)


def test_json_bad_input():
    with pytest.raises(ValueError, match="not a saved run"):
        run_from_json({"config": {}})
    with pytest.raises(ValueError, match="invalid JSON"):
        run_from_json("{")
    d = {"format": "iommu-viz-run", "version": 1, "config": {},
         "ops": [{"op": "fly"}], "events": []}
    with pytest.raises(ValueError, match="does not re-execute.*fly"):
        run_from_json(d)
    d["version"] = 9
    with pytest.raises(ValueError, match="version 9"):
        run_from_json(d)
    with pytest.raises(TypeError, match="has no .config"):
        run_to_json(object())


# ------------------------------------------------------------------ render_run

def test_render_run_formats(seed_run):
    step = first_step(seed_run, "access", outcome="stale")
    text = render_run(seed_run, "text", step)
    assert text == run_text(seed_run, step)
    svg = render_run(seed_run, "svg", step)
    assert svg.count("<svg") == 3 and "TLB still holds 2M block" in svg
    png = render_run(seed_run, "png", step)
    assert isinstance(png, bytes) and png.startswith(PNG_MAGIC)
    assert json.loads(render_run(seed_run, "perfetto"))["traceEvents"]
    assert json.loads(render_run(seed_run, "json"))["ops"] == seed_run.ops
    assert set(FORMATS) == {"text", "svg", "png", "perfetto", "json"}
    with pytest.raises(ValueError, match="format 'pdf' is not one of"):
        render_run(seed_run, "pdf")
    with pytest.raises(IndexError, match="step 999 is outside"):
        render_run(seed_run, "text", 999)


# ------------------------------------------------------------------ text

def test_run_text(seed_run):
    step = first_step(seed_run, "access", outcome="stale")
    text = run_text(seed_run, step)
    check_plain(text)
    lines = text.split("\n")
    assert lines[0] == ("iommu-viz: lpae 4K, kernel v5.4, strict, BBML0, "
                        "typical SMMU")
    assert lines[1].startswith(f"Step {step} of 0..{len(seed_run.events) - 1}"
                               ", t = 0.000 ms, device: SMMU translation")
    heads = [ln for ln in lines if ln.startswith("-- ")]
    assert [h.split(" -")[0] for h in heads] == [
        "-- Page table", "-- TLB", f"-- Timeline up to step {step}"]
    assert all(len(h) == 72 for h in heads)
    assert "  ! [0]      table -> 0x7f003000" in lines
    assert f"Timeline, steps 0..{step} of 0..{len(seed_run.events) - 1}" \
        in lines
    # the last step by default
    last = run_text(seed_run)
    assert f"Step {len(seed_run.events) - 1} of" in last
    check_plain(last)
    assert caption(seed_run, -1) == caption(seed_run,
                                            len(seed_run.events) - 1)


def test_run_text_lazy_every_step_fits(lazy_run):
    for step in range(0, len(lazy_run.events), 5):
        check_plain(run_text(lazy_run, step))


def test_run_text_long_addresses():
    sim = Simulation(kernel="v5.4")
    sim.map(0xFFFFFFE00000, 0x7FFFFFE00000, 0x200000)
    sim.access(0xFFFFFFE01000)
    sim.unmap(0xFFFFFFE01000, SZ_4K)
    check_plain(run_text(sim))


# ------------------------------------------------------------------ Jupyter

def test_state_html(seed_run):
    step = first_step(seed_run, "access", outcome="stale")
    h = state_html(seed_run.states[step], seed_run.states[step - 1])
    assert h.startswith('<div class="iommu-viz-state"><svg')
    assert "<?xml" not in h and "TLB entries (oldest first)" in h
    assert state_repr_html(seed_run.states[step]).count("<svg") == 1


def test_run_html(seed_run):
    h = run_html(seed_run, 5)
    assert "Step 5 of" in h and h.count("<svg") == 2 and "<?xml" not in h
    assert '<div class="iommu-viz-timeline"><svg' in h


def test_install_reprs():
    class S:
        pass

    class R:
        pass
    install_reprs(state_cls=S, run_cls=R)
    assert S._repr_html_ is state_repr_html
    assert R()._repr_html_() == "<p>(empty run)</p>"
