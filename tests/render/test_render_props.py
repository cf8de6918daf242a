"""Properties over random runs: every plain-text view fits 72 columns in
ASCII, the Perfetto trace is well formed, and the JSON round trip
replays the same events."""

from types import SimpleNamespace

from hypothesis import HealthCheck, given, settings, strategies as st

from iommu_viz import SZ_2M, SZ_4K
from iommu_viz.render.export import perfetto_json, run_from_json, run_to_json
from iommu_viz.render.text import run_text
from iommu_viz.render.timeline import hazard_windows, timeline_text
from iommu_viz.sim import ApiError, Simulation

from render_helpers import check_plain

BASE = 0x40000000

OP = st.one_of(
    st.tuples(st.just("map"), st.integers(0, 1023),
              st.sampled_from([SZ_4K, 4 * SZ_4K, SZ_2M])),
    st.tuples(st.sampled_from(["unmap", "unmap_fast"]), st.integers(0, 1023),
              st.sampled_from([SZ_4K, 2 * SZ_4K, SZ_2M])),
    st.tuples(st.sampled_from(["access", "speculate"]), st.integers(0, 1023),
              st.just(0)),
    st.tuples(st.just("sync"), st.just(0), st.just(0)),
    st.tuples(st.just("advance"), st.sampled_from([1, 5, 10]), st.just(0)),
)


def build(ops, strict, kernel):
    sim = Simulation(kernel=kernel, strict=strict)
    g = sim.new_gather()
    for op, page, size in ops:
        iova = BASE + page * SZ_4K
        if size:
            iova -= iova % size
        try:
            if op == "map":
                sim.map(iova, 0x80000000 + (iova - BASE), size)
            elif op == "unmap":
                sim.unmap(iova, size)
            elif op == "unmap_fast":
                sim.unmap_fast(iova, size, g)
            elif op == "access":
                sim.access(iova)
            elif op == "speculate":
                sim.speculate(iova)
            elif op == "sync":
                sim.iotlb_sync(g)
            else:
                sim.advance(page)
        except ApiError:
            pass
    return sim


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(OP, max_size=10), st.booleans(),
       st.sampled_from(["v4.20", "v5.4", "v6.12", "v6.13"]), st.data())
def test_random_runs_render(ops, strict, kernel, data):
    sim = build(ops, strict, kernel)
    n = len(sim.events)
    step = data.draw(st.integers(0, n - 1))
    check_plain(run_text(sim, step))
    check_plain(timeline_text(sim))
    # windows are maximal runs of steps with a hazard of their kind
    for kind, a, b, _ in hazard_windows(sim):
        assert all(any(h.kind == kind for h in sim.states[i].hazards)
                   for i in range(a, b + 1))
        for edge in (a - 1, b + 1):
            if 0 <= edge < n:
                assert not any(h.kind == kind
                               for h in sim.states[edge].hazards)
    trace = perfetto_json(sim)
    inst = [e for e in trace["traceEvents"] if e["ph"] == "i"]
    assert len(inst) == n
    assert all({"name", "ph", "ts", "pid", "tid"} <= set(e)
               for e in trace["traceEvents"])
    assert run_from_json(run_to_json(sim)).events == sim.events


def test_empty_run_text():
    assert timeline_text(SimpleNamespace(events=[], states=[])) == \
        "Timeline: no steps yet\n"
