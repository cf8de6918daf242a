"""TLB capacity and replacement: LRU keeps a recently used entry, FIFO
evicts the oldest fill whatever its use; a bad policy is refused."""

import pytest

from iommu_viz import SZ_4K, Simulation


def fill_three_then_touch_first(policy):
    sim = Simulation(tlb_entries=2, tlb_replacement=policy)
    for i in range(3):
        sim.map(0x1000000 + i * SZ_4K, 0x8000000 + i * SZ_4K, SZ_4K)
    sim.access(0x1000000)            # fill A
    sim.access(0x1001000)            # fill B
    sim.access(0x1000000)            # use A again
    sim.access(0x1002000)            # fill C: evicts B (LRU) or A (FIFO)
    return {e.iova for e in sim.state.tlb}, sim


def test_lru_evicts_the_least_recently_used():
    kept, sim = fill_three_then_touch_first("lru")
    assert kept == {0x1000000, 0x1002000}
    assert any(ev.kind == "evict" and "LRU" in ev.func for ev in sim.events)


def test_fifo_evicts_the_oldest_fill():
    kept, sim = fill_three_then_touch_first("fifo")
    assert kept == {0x1001000, 0x1002000}
    assert any(ev.kind == "evict" and "FIFO" in ev.func for ev in sim.events)


def test_bad_policy_named():
    with pytest.raises(ValueError, match="tlb_replacement 'random'"):
        Simulation(tlb_replacement="random")
