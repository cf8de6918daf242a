"""Hardware personalities and break-before-make levels.

* typical: a cached entry wins over a walk, so a stale block is used.
* adversarial: the worst outcome the architecture allows, in the order
  stale, conflict, fault, translated.
* coherent (QEMU hw/arm/smmu-common.c, smmuv3.c): commands act when the
  queue is written (no TLBI-to-SYNC window), no conflict is ever
  reported, 256 entries and the whole IOTLB emptied when an insert finds
  it full (smmu_iotlb_insert).
* BBML (SMMU_IDR3.BBML): levels 0 and 1 allow a TLB conflict when two
  entries translate one address (Linux does not use the nT bit), level 2
  never does.
"""

import pytest

from iommu_viz import scenarios
from iommu_viz.pgtable.common import SZ_2M, SZ_4K
from iommu_viz.sim import Simulation

PAGE = 0x40001000
NEIGHBOUR = 0x40002000
WORST_FIRST = ["stale", "conflict", "fault", "translated"]


def outcomes(sim):
    return [(a.outcome, a.allowed) for a in sim.accesses]


# ------------------------------------------------------------------ typical
def test_typical_uses_the_stale_block():
    sim = scenarios.seed(kernel="v5.4", fast=True, sync_after=False,
                         personality="typical")
    a = sim.accesses[1]
    assert a.iova == PAGE
    assert a.allowed == {"stale", "fault"}
    assert a.outcome == "stale"
    assert a.paddr == 0x80001000
    assert a.source.startswith("tlb:")


def test_typical_prefers_block_over_page_on_multi_hit():
    # seed-conflict, BBML0: both the old block and the new 4K page are
    # cached for the neighbour; typical takes a cached, non-conflict
    # entry, the block first (as QEMU probes from the top level)
    sim = scenarios.run("seed-conflict", kernel="v5.4", bbml=0)
    a = sim.accesses[2]
    assert a.iova == NEIGHBOUR
    assert a.allowed == {"translated", "conflict"}
    assert a.outcome == "translated"
    assert a.paddr == 0x80002000
    assert a.source.startswith("tlb:2M")


# ------------------------------------------------------------------ adversarial
def test_adversarial_seed_conflict():
    sim = scenarios.run("seed-conflict", kernel="v5.4", bbml=0,
                        personality="adversarial")
    assert outcomes(sim) == [
        ("translated", {"translated"}),          # before
        ("stale", {"stale", "fault"}),           # page, block cached
        ("conflict", {"translated", "conflict"}),  # neighbour, 2 entries
        ("fault", {"fault"}),                    # page after the sync
        ("fault", {"fault"}),                    # page after 11 ms
        ("translated", {"translated"}),          # neighbour after 11 ms
    ]
    assert sim.accesses[2].paddr is None


@pytest.mark.parametrize("name,kw", [
    ("seed", dict(fast=True, sync_after=False)),
    ("seed", dict(strict=False)),
    ("seed-conflict", dict(bbml=1)),
    ("seed-conflict", dict(bbml=2)),
    ("seed", dict(kernel="v6.12", ttl_hints=True)),
    ("strict-vs-lazy", dict(strict=False)),
])
def test_adversarial_picks_worst_allowed(name, kw):
    sim = scenarios.run(name, personality="adversarial", **kw)
    assert sim.accesses
    for a in sim.accesses:
        worst = min(a.allowed, key=WORST_FIRST.index)
        assert a.outcome == worst, str(a)


# ------------------------------------------------------------------ coherent
def _v420_leaf_unmap_fast(personality):
    sim = Simulation(kernel="v4.20", personality=personality)
    sim.map(0x10000000, 0x90000000, SZ_4K)
    sim.access(0x10000000)
    g = sim.new_gather()
    sim.unmap_fast(0x10000000, SZ_4K, g)
    return sim, g


def test_typical_v420_unmap_fast_leaves_tlbi_pending():
    # v4.20: the leaf unmap issues tlb_add_flush (a TLBI) without a sync;
    # until iommu_tlb_sync the TLBI is not guaranteed complete
    sim, g = _v420_leaf_unmap_fast("typical")
    assert [c.op for c in sim.state.pending] == ["CMD_TLBI_NH_VA"]
    assert [e.pending for e in sim.state.tlb] == [True]
    a = sim.access(0x10000000)
    assert (a.outcome, a.allowed) == ("stale", {"stale", "fault"})
    sim.iotlb_sync(g)
    assert sim.state.pending == ()
    assert sim.access(0x10000000).allowed == {"fault"}


def test_coherent_v420_unmap_fast_has_no_pending_window():
    sim, g = _v420_leaf_unmap_fast("coherent")
    assert sim.state.pending == ()
    assert sim.state.tlb == ()
    a = sim.access(0x10000000)
    assert (a.outcome, a.allowed) == ("fault", {"fault"})
    # the TLBI acted when it was written to the queue
    evs = [e for e in sim.events if e.op == 3]
    kinds = [e.kind for e in evs]
    assert kinds.index("cmd_issue") < kinds.index("invalidate")


@pytest.mark.parametrize("bbml", [0, 1, 2])
@pytest.mark.parametrize("kernel", ["v5.4", "v6.12"])
def test_coherent_never_reports_conflict(bbml, kernel):
    sim = scenarios.run("seed-conflict", kernel=kernel, bbml=bbml,
                        personality="coherent")
    # both entries are cached for the neighbour, yet no conflict
    a = sim.accesses[2]
    assert a.iova == NEIGHBOUR
    assert (a.outcome, a.allowed) == ("translated", {"translated"})
    assert any(len(s.tlb) == 2 for s in sim.states)
    for s in sim.states:
        assert not [h for h in s.hazards if h.kind == "conflict"]


def test_coherent_empties_full_tlb():
    sim = Simulation(personality="coherent")
    assert sim.tlb_entries == 256
    sim.map(0x40000000, 0x90000000, 257 * SZ_4K)
    for i in range(256):
        sim.access(0x40000000 + i * SZ_4K)
    assert len(sim.state.tlb) == 256
    assert not [e for e in sim.events if e.kind == "evict"]
    sim.access(0x40000000 + 256 * SZ_4K)
    ev = [e for e in sim.events if e.kind == "evict"]
    assert len(ev) == 1 and ev[0].func == "smmu_iotlb_insert"
    assert [(e.iova, e.size) for e in sim.state.tlb] == [
        (0x40000000 + 256 * SZ_4K, SZ_4K)]


def test_typical_full_tlb_evicts_one():
    # contrast: a typical SMMU with 4 entries replaces the least recently
    # used entry, one at a time
    sim = Simulation(tlb_entries=4, bbml=2)
    sim.map(0x40000000, 0x90000000, 5 * SZ_4K)
    for i in range(5):
        sim.access(0x40000000 + i * SZ_4K)
    assert [e.iova for e in sim.state.tlb] == [
        0x40000000 + i * SZ_4K for i in range(1, 5)]


def test_coherent_has_no_walk_cache():
    sim = Simulation(personality="coherent")
    sim.map(0x40000000, 0x80000000, SZ_2M)
    sim.access(PAGE)
    assert sim.state.walk_cache == ()
    typical = Simulation()
    typical.map(0x40000000, 0x80000000, SZ_2M)
    typical.access(PAGE)
    assert len(typical.state.walk_cache) == 2     # L0 and L1 descriptors


# ------------------------------------------------------------------ BBML
def _both_cached(state):
    block = any(e.size == SZ_2M and e.iova == 0x40000000 for e in state.tlb)
    page = any(e.size == SZ_4K and e.iova == NEIGHBOUR for e in state.tlb)
    return block and page


@pytest.mark.parametrize("kernel", ["v5.4", "v6.12"])
@pytest.mark.parametrize("bbml,conflict", [(0, True), (1, True), (2, False)])
def test_bbml_seed_conflict(kernel, bbml, conflict):
    sim = scenarios.run("seed-conflict", kernel=kernel, bbml=bbml,
                        ttl_hints=False)
    a = sim.accesses[2]
    assert a.iova == NEIGHBOUR
    want = {"translated", "conflict"} if conflict else {"translated"}
    assert a.allowed == want
    assert a.outcome == "translated"
    both = [_both_cached(s) for s in sim.states]
    # the window exists: from the speculative fill to the sync
    assert any(both)
    first = both.index(True)
    assert sim.events[first].kind == "fill"
    assert sim.events[first].detail["iova"] == NEIGHBOUR
    last = len(both) - 1 - both[::-1].index(True)
    assert sim.events[last + 1].kind == "invalidate"
    for s, b in zip(sim.states, both):
        hz = [h for h in s.hazards if h.kind == "conflict"]
        if conflict and b:
            assert [(h.iova, h.size) for h in hz] == [(NEIGHBOUR, SZ_4K)]
        else:
            assert hz == []


def test_bbml2_never_conflict_even_adversarial():
    sim = scenarios.run("seed-conflict", bbml=2, personality="adversarial")
    for a in sim.accesses:
        assert "conflict" not in a.allowed
        assert a.outcome != "conflict"


def test_bbml_conflict_persists_after_ttl_sync_v612():
    # v6.12 + TTL hints: the sync's TTL=3 misses the level-2 block, so the
    # two entries stay and so does the conflict window
    sim = scenarios.run("seed-conflict", kernel="v6.12", ttl_hints=True,
                        bbml=0)
    assert _both_cached(sim.state)
    assert [h.kind for h in sim.state.hazards].count("conflict") == 1
    assert sim.accesses[-1].allowed == {"translated", "conflict"}
