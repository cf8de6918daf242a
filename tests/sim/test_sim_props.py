"""Hypothesis properties of the Simulation over random small programs.

A program is a list of API calls on a few aligned addresses: map a 2 MiB
block or a 4K page (to one of two physical bases), unmap or unmap_fast
(into one of two gathers) a page or a block, speculate, access, advance
and iotlb_sync. Calls the API refuses (ApiError) are part of the program
too; they must leave the run unchanged, so the run is still meaningful.

Properties, each from an architecture or kernel rule:

(a) strict mode, no TTL hints: once every gather has been synced, every
    invalidation is complete (CMD_SYNC, SMMUv3 4.7) and covers what the
    tables lost (iommu_iotlb_gather_add_page, tlb_flush_walk), so no TLB
    entry is stale and no access may use a stale translation.
(b) strict mode, iommu_unmap only (it syncs before returning): at every
    access, every allowed outcome is a fault or the current translation.
(c) the coherent personality (QEMU) never reports a TLB conflict.
(d) a run is a pure function of its config and ops (from_ops).
(e) the TLB only holds translations that a walk found valid when they
    were filled: each entry's fill event is recorded, the entry was
    current then, and it maps iova to paddr as some map call did.
"""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iommu_viz.pgtable.common import SZ_2M, SZ_4K
from iommu_viz.sim import ApiError, Simulation

BLOCKS = (0x40000000, 0x40200000)
PAGES = (0x40000000, 0x40001000, 0x40002000, 0x40201000, 0x40400000)
TARGETS = tuple((b, SZ_2M) for b in BLOCKS) + tuple((p, SZ_4K) for p in PAGES)
PROBES = (0x40000000, 0x40001000, 0x40002000, 0x40003000, 0x40200000,
          0x40201000, 0x40202000, 0x40400000, 0x40401000)
BASES = (0x80000000, 0x90000000)     # paddr = base + (iova - 0x40000000)
ERAS = ("v4.20", "v5.4", "v6.12", "v6.13")

SETTINGS = settings(max_examples=60, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])

target = st.sampled_from(TARGETS)
probe = st.sampled_from(PROBES)
gather_ix = st.integers(0, 1)

MAP = st.tuples(st.just("map"), target, st.sampled_from(BASES))
UNMAP = st.tuples(st.just("unmap"), target)
FAST = st.tuples(st.just("unmap_fast"), target, gather_ix)
SYNC = st.tuples(st.just("sync"), gather_ix)
SPEC = st.tuples(st.just("speculate"), probe)
ACCESS = st.tuples(st.just("access"), probe, st.booleans())
ADVANCE = st.tuples(st.just("advance"), st.sampled_from((1, 5, 11)))

# the SMMU caches every valid probe and the device reads each
TOUCH = st.just(("touch",))

# a program starts by mapping something and letting the device use it, so
# that the TLB holds entries when the unmaps come
# half the programs start with the seed's 2 MiB block, so that partial
# unmaps split it
FIRST_MAP = st.one_of(st.just(("map", (BLOCKS[0], SZ_2M), BASES[0])), MAP)
ALL_OPS = st.builds(
    lambda first, setup, rest: [first] + setup + [("touch",)] + rest,
    FIRST_MAP, st.lists(MAP, max_size=2),
    st.lists(st.one_of(MAP, UNMAP, UNMAP, FAST, FAST, SYNC, SPEC, SPEC,
                       ACCESS, TOUCH, ADVANCE), max_size=14))
STRICT_UNMAP_OPS = st.builds(
    lambda first, setup, rest: [first] + setup + [("touch",)] + rest,
    FIRST_MAP, st.lists(MAP, max_size=2),
    st.lists(st.one_of(MAP, UNMAP, UNMAP, SPEC, SPEC, ACCESS, TOUCH,
                       ADVANCE), max_size=14))


def execute(sim, program):
    """Run ``program``; refused calls must leave the run unchanged."""
    gathers = {}
    for op in program:
        kind = op[0]
        if kind in ("unmap_fast", "sync") and op[-1] not in gathers:
            gathers[op[-1]] = sim.new_gather()
        before = (len(sim.events), len(sim.ops), sim.state)
        try:
            if kind == "map":
                (iova, size), base = op[1], op[2]
                sim.map(iova, base + iova - 0x40000000, size)
            elif kind == "unmap":
                sim.unmap(*op[1])
            elif kind == "unmap_fast":
                sim.unmap_fast(*op[1], gathers[op[2]])
            elif kind == "sync":
                sim.iotlb_sync(gathers[op[1]])
            elif kind == "speculate":
                sim.speculate(op[1])
            elif kind == "access":
                sim.access(op[1], write=op[2])
            elif kind == "advance":
                sim.advance(op[1])
            elif kind == "touch":
                for p in PROBES:
                    sim.speculate(p)
                    sim.access(p)
        except ApiError:
            assert (len(sim.events), len(sim.ops), sim.state) == before
    return gathers


def probe_all(sim):
    return [sim.access(p, write=w) for p in PROBES for w in (False, True)]


# ------------------------------------------------------------------ (a)
@SETTINGS
@given(kernel=st.sampled_from(ERAS), ttl=st.booleans(), bbml=st.sampled_from((0, 1, 2)),
       program=ALL_OPS)
def test_a_no_stale_after_covering_sync(kernel, ttl, bbml, program):
    # TTL hints may be on only where the driver sets none (v4.20, v5.4)
    ttl = ttl and kernel in ("v4.20", "v5.4")
    sim = Simulation(kernel=kernel, strict=True, ttl_hints=ttl, bbml=bbml)
    gathers = execute(sim, program)
    for g in gathers.values():
        sim.iotlb_sync(g)
    assert sim.state.pending == ()
    assert sim.state.stale_entries == ()
    # what stale hazards remain are freed tables in the walk cache only
    stale_walks = [w for w in sim.state.walk_cache if w.stale]
    assert len([h for h in sim.state.hazards if h.kind == "stale"]) == \
        len(stale_walks)
    for a in probe_all(sim):
        assert "stale" not in a.allowed, str(a)
        assert a.outcome != "stale"


# ------------------------------------------------------------------ (b)
@SETTINGS
@given(kernel=st.sampled_from(ERAS), bbml=st.sampled_from((0, 1, 2)),
       personality=st.sampled_from(("typical", "adversarial")),
       program=STRICT_UNMAP_OPS)
def test_b_strict_unmap_never_reaches_unmapped(kernel, bbml, personality,
                                               program):
    sim = Simulation(kernel=kernel, strict=True, ttl_hints=False, bbml=bbml,
                     personality=personality)
    execute(sim, program)
    accesses = sim.accesses + probe_all(sim)
    for a in accesses:
        assert a.allowed <= {"translated", "fault"}, str(a)
    # and "translated" is the walk's answer at that moment: check the
    # final probes against the tables directly
    for a in accesses[len(accesses) - 2 * len(PROBES):]:
        tr = sim.pt.translate(a.iova)
        for outcome, pa, _ in a.options:
            if outcome == "translated":
                assert tr is not None
                assert pa == tr.paddr + (a.iova - tr.iova)
            else:
                assert pa is None


# ------------------------------------------------------------------ (c)
@SETTINGS
@given(kernel=st.sampled_from(ERAS), strict=st.booleans(), ttl=st.booleans(),
       bbml=st.sampled_from((0, 1, 2)), program=ALL_OPS)
def test_c_coherent_never_conflicts(kernel, strict, ttl, bbml, program):
    sim = Simulation(kernel=kernel, strict=strict, ttl_hints=ttl, bbml=bbml,
                     personality="coherent")
    execute(sim, program)
    probe_all(sim)
    for a in sim.accesses:
        assert "conflict" not in a.allowed
    for s in sim.states:
        assert s.pending == ()
        assert not [h for h in s.hazards if h.kind == "conflict"]


# ------------------------------------------------------------------ (d)
@SETTINGS
@given(kernel=st.sampled_from(ERAS), strict=st.booleans(), ttl=st.booleans(),
       bbml=st.sampled_from((0, 1, 2)),
       personality=st.sampled_from(("typical", "adversarial", "coherent")),
       program=ALL_OPS)
def test_d_runs_replay_exactly(kernel, strict, ttl, bbml, personality,
                               program):
    sim = Simulation(kernel=kernel, strict=strict, ttl_hints=ttl, bbml=bbml,
                     personality=personality)
    execute(sim, program)
    again = Simulation.from_ops(sim.config, sim.ops)
    assert again.events == sim.events
    assert again.ops == sim.ops
    assert again.accesses == sim.accesses
    assert again.state.tlb == sim.state.tlb
    assert again.state.hazards == sim.state.hazards


# ------------------------------------------------------------------ (e)
@SETTINGS
@given(kernel=st.sampled_from(ERAS), strict=st.booleans(), ttl=st.booleans(),
       bbml=st.sampled_from((0, 1, 2)),
       personality=st.sampled_from(("typical", "adversarial", "coherent")),
       program=ALL_OPS)
def test_e_tlb_entries_come_from_valid_fills(kernel, strict, ttl, bbml,
                                             personality, program):
    sim = Simulation(kernel=kernel, strict=strict, ttl_hints=ttl, bbml=bbml,
                     personality=personality, tlb_entries=8)
    execute(sim, program)
    maps = [op for op in sim.ops if op["op"] == "map"]
    for s in sim.states:
        for e in s.tlb:
            fill = sim.events[e.inserted]
            assert fill.kind == "fill" and e.inserted <= s.step
            assert (fill.detail["iova"], fill.detail["size"],
                    fill.detail["level"], fill.detail["paddr"]) == (
                e.iova, e.size, e.level, e.paddr)
            then = [x for x in sim.states[e.inserted].tlb
                    if (x.iova, x.size, x.paddr) == (e.iova, e.size, e.paddr)]
            assert then and not then[0].stale
            assert any(m["iova"] <= e.iova and
                       e.iova + e.size <= m["iova"] + m["size"] and
                       m["paddr"] - m["iova"] == e.paddr - e.iova
                       for m in maps), e
        assert len(s.tlb) <= 8
