"""The lazy flush queue (iova.c queue_iova / fq_flush_timeout in v4.20 and
v5.4; dma-iommu.c from v5.17, same rules).

* IOVA_FQ_SIZE is 256 slots, and fq_full() is (tail + 1) % 256 == head,
  so the ring holds 255 entries; queueing onto a full ring first flushes
  the IOTLB (one CMD_TLBI_NH_ASID and its CMD_SYNC), frees the ring, then
  adds the new entry.
* The timer is armed by the first entry (fq_timer_on) for
  IOVA_FQ_TIMEOUT = 10 ms and is neither pushed back by later entries nor
  cancelled by a full-ring flush; when it fires it flushes the IOTLB and
  frees every flushed entry.
"""

import pytest

from iommu_viz.pgtable.common import SZ_4K
from iommu_viz.sim import Simulation

BASE = 0x10000000


def _lazy(kernel="v5.4", n=256):
    sim = Simulation(kernel=kernel, strict=False, caller="dma")
    for i in range(n):
        sim.map(BASE + i * SZ_4K, 0x90000000 + i * SZ_4K, SZ_4K)
    return sim


def _op_events(sim, index):
    return [e for e in sim.events if e.op == index]


def _issued(events):
    return [e.detail["op"] for e in events if e.kind == "cmd_issue"]


@pytest.mark.parametrize("kernel", ["v4.20", "v5.4", "v6.12"])
def test_ring_holds_255_then_flushes(kernel):
    sim = _lazy(kernel)
    first_unmap = len(sim.ops)
    for i in range(255):
        assert sim.unmap(BASE + i * SZ_4K, SZ_4K) == SZ_4K
    assert len(sim.state.flush_queue) == 255
    # lazy unmaps of leaves issue no command at all
    assert not [e for e in sim.events[first_unmap:] if e.kind == "cmd_issue"]
    assert all(e.op < first_unmap for e in sim.events if e.kind == "cmd_issue")
    sim.unmap(BASE + 255 * SZ_4K, SZ_4K)
    evs = _op_events(sim, len(sim.ops) - 1)
    assert _issued(evs) == ["CMD_TLBI_NH_ASID", "CMD_SYNC"]
    kinds = [e.kind for e in evs]
    # the flush comes before the new entry is added
    assert kinds.index("fq_full") < kinds.index("cmd_issue") < \
        kinds.index("fq_free") < kinds.index("fq_add")
    freed = next(e for e in evs if e.kind == "fq_free")
    assert freed.detail["freed"] == 255
    assert [(q.iova, q.size) for q in sim.state.flush_queue] == [
        (BASE + 255 * SZ_4K, SZ_4K)]


def test_timeout_exactly_10ms():
    sim = _lazy(n=1)
    sim.unmap(BASE, SZ_4K)
    assert sim.state.fq_deadline_us == 10000
    sim.advance(9.999)
    assert not [e for e in sim.events if e.kind == "fq_timeout"]
    assert len(sim.state.flush_queue) == 1
    sim.advance(0.001)
    fired = [e for e in sim.events if e.kind == "fq_timeout"]
    assert [e.time_us for e in fired] == [10000]
    evs = _op_events(sim, len(sim.ops) - 1)
    assert _issued(evs) == ["CMD_TLBI_NH_ASID", "CMD_SYNC"]
    assert all(e.time_us == 10000 for e in evs)
    assert sim.state.flush_queue == ()
    assert sim.state.fq_deadline_us is None


def test_timer_fires_mid_advance_at_deadline():
    sim = _lazy(n=1)
    sim.advance(3)
    sim.unmap(BASE, SZ_4K)          # queued at 3 ms
    sim.advance(20)
    fired = [e for e in sim.events if e.kind == "fq_timeout"]
    assert [e.time_us for e in fired] == [13000]
    assert sim.now_us == 23000


def test_later_entries_do_not_push_timer_back():
    sim = _lazy(n=3)
    sim.unmap(BASE, SZ_4K)          # arms the timer for 10 ms
    sim.advance(4)
    sim.unmap(BASE + SZ_4K, SZ_4K)
    sim.advance(4)
    sim.unmap(BASE + 2 * SZ_4K, SZ_4K)
    assert sim.state.fq_deadline_us == 10000
    sim.advance(4)
    fired = [e for e in sim.events if e.kind == "fq_timeout"]
    assert [e.time_us for e in fired] == [10000]
    assert sim.state.flush_queue == ()


def test_full_ring_flush_keeps_the_armed_timer():
    # the timer armed by the first entry (t=0) is left running by the
    # full-ring flush at 5 ms: it still fires at 10 ms, not 15 ms
    sim = _lazy()
    for i in range(255):
        sim.unmap(BASE + i * SZ_4K, SZ_4K)
    sim.advance(5)
    sim.unmap(BASE + 255 * SZ_4K, SZ_4K)
    assert len(sim.state.flush_queue) == 1
    assert sim.state.fq_deadline_us == 10000
    sim.advance(10)
    fired = [e for e in sim.events if e.kind == "fq_timeout"]
    assert [e.time_us for e in fired] == [10000]
    assert sim.state.flush_queue == ()


def test_stale_window_closes_at_timeout():
    sim = _lazy(n=1)
    sim.access(BASE, write=True)
    sim.unmap(BASE, SZ_4K)
    a = sim.access(BASE, write=True)
    assert (a.outcome, a.allowed) == ("stale", {"stale", "fault"})
    sim.advance(9.999)
    assert sim.access(BASE, write=True).outcome == "stale"
    sim.advance(0.001)
    a = sim.access(BASE, write=True)
    assert (a.outcome, a.allowed) == ("fault", {"fault"})


def test_strict_never_queues():
    sim = Simulation(caller="dma")
    sim.map(BASE, 0x90000000, SZ_4K)
    sim.unmap(BASE, SZ_4K)
    assert sim.state.flush_queue == ()
    assert sim.state.fq_deadline_us is None
    assert not [e for e in sim.events if e.actor == "fq"]
