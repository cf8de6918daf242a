"""Every run writes back as a scenario file that re-executes exactly:
random configurations and random API calls (hypothesis) -> to_text ->
parse -> run gives the same events, the same calls, and the same text."""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings, strategies as st

from iommu_viz import ApiError, Simulation, scenarios
from iommu_viz.scenarios import parse, to_text
from iommu_viz.scenarios.format import PROT

BASE = 0x40000000
SIZES = (0x1000, 0x2000, 0x10000, 0x100000, 0x200000, 0x40000000)


@st.composite
def configs(draw):
    fmt = draw(st.sampled_from(["lpae", "lpae", "v7s"]))
    cfg = dict(fmt=fmt,
               kernel=draw(st.sampled_from(["v4.20", "v5.4", "v6.12",
                                            "v6.13"])),
               strict=draw(st.booleans()),
               bbml=draw(st.sampled_from([0, 1, 2])),
               personality=draw(st.sampled_from(["typical", "adversarial",
                                                 "coherent"])),
               ttl_hints=draw(st.booleans()),
               walk_cache=draw(st.booleans()),
               caller=draw(st.sampled_from(["raw", "raw", "dma", "vfio"])),
               split_sync=draw(st.sampled_from([None, True, False])),
               deferred_gather=draw(st.booleans()),
               tlb_entries=draw(st.sampled_from([None, 1, 3, 8])),
               tlb_replacement=draw(st.sampled_from(["lru", "fifo"])),
               fq_size=draw(st.sampled_from([2, 4, 256])),
               fq_timeout_ms=draw(st.sampled_from([10, 1, 0.5])))
    if fmt == "lpae":
        cfg["granule"] = draw(st.sampled_from([0x1000, 0x1000, 0x4000,
                                               0x10000]))
        cfg["split_nt"] = draw(st.booleans())
    return cfg


addresses = st.builds(lambda k, s: BASE + k * s,
                      st.integers(0, 15), st.sampled_from(SIZES[:4]))
ops = st.lists(st.one_of(
    # (a map is aligned to its size, so blocks stay blocks and a run
    # stays small; unmaps anywhere split them). A prot granting no access
    # is a recorded call that maps nothing before v6.11 and a refusal
    # that records nothing from v6.11: both must round-trip.
    st.builds(lambda size, k, prot: ("map", BASE + k * size, size, prot),
              st.sampled_from(SIZES), st.integers(0, 3),
              st.sampled_from([3, 3, 1, 2, PROT["read"] | PROT["cache"],
                               0, PROT["cache"]])),
    st.tuples(st.just("unmap"), addresses, st.sampled_from(SIZES)),
    st.tuples(st.just("unmap_fast"), addresses, st.sampled_from(SIZES),
              st.integers(0, 3)),
    st.tuples(st.just("gather")),
    st.tuples(st.just("sync"), st.integers(0, 3)),
    st.tuples(st.just("access"), addresses, st.booleans(),
              st.sampled_from([None, None, "A", "B.1"])),
    st.tuples(st.just("speculate"), addresses),
    st.tuples(st.just("advance"), st.sampled_from([0, 1, 5, 11, 0.25,
                                                   2.5, 1e-3])),
    st.tuples(st.just("flush_all")),
), max_size=14)


def drive(cfg, calls):
    """Apply ``calls`` to a Simulation, skipping what the model refuses;
    labels go on the recorded access as Scenario.run puts them."""
    sim = Simulation(**cfg)
    gathers = []
    labels = itertools.count()
    for c in calls:
        try:
            if c[0] == "map":
                sim.map(c[1], 0x80000000 + (c[1] - BASE), c[2], c[3])
            elif c[0] == "unmap":
                sim.unmap(c[1], c[2])
            elif c[0] == "unmap_fast" and gathers:
                sim.unmap_fast(c[1], c[2], gathers[c[3] % len(gathers)])
            elif c[0] == "gather":
                gathers.append(sim.new_gather())
            elif c[0] == "sync" and gathers:
                sim.iotlb_sync(gathers[c[1] % len(gathers)])
            elif c[0] == "access":
                sim.access(c[1], c[2])
                if c[3]:
                    sim.ops[-1]["label"] = f"{c[3]}{next(labels)}"
            elif c[0] == "speculate":
                sim.speculate(c[1])
            elif c[0] == "advance":
                sim.advance(c[1])
            elif c[0] == "flush_all":
                sim.flush_all()
        except ApiError:
            pass
    return sim


def check_round_trip(sim):
    text = to_text(sim)
    again = parse(text, source="written.scn").run()
    assert again.events == sim.events
    assert again.ops == sim.ops
    assert again.config == sim.config
    assert to_text(again) == text


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(configs(), ops)
def test_random_runs_round_trip(cfg, calls):
    check_round_trip(drive(cfg, calls))


def test_named_scenarios_round_trip_with_every_knob():
    for name in scenarios.names():
        sc = scenarios.named(name)
        for values in itertools.product([False, True],
                                        repeat=len(sc.params)):
            check_round_trip(sc.run(**dict(zip(sc.params, values))))
