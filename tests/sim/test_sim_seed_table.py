"""The seed thread's case in every era, mode and unmap flavour.

The case (iommu_viz.scenarios.seed): map a 2 MiB block 0x40000000 ->
0x80000000; the device reads 0x40001000 (the TLB caches the block);
unmap 4K at 0x40001000; the device reads that page and its neighbour
0x40002000; the caller syncs (unmap_fast with the later sync only); 11 ms
pass; the device reads the page and the neighbour again.

The table below was worked out by hand from the kernel code of each era,
not from the model:

* v4.20: arm_lpae_split_blk_unmap issues tlb_add_flush for the page and
  tlb_sync itself (b6b65ca20bc9), whatever the caller (unmap or
  unmap_fast) and whatever IO_PGTABLE_QUIRK_NON_STRICT says: the block
  entry has left the TLB when the unmap returns.
* v5.4 / v6.12: the split only adds the page to the caller's gather
  (io_pgtable_tlb_add_page, no sync). iommu_unmap syncs the gather;
  unmap_fast leaves it to the caller's iommu_iotlb_sync; lazy mode
  (dma-iommu's __iommu_dma_unmap) never syncs the gather (v5.4: no
  iommu_tlb_sync when cookie->fq_domain; v6.12: gather->queued) and the
  IOVA waits in the flush queue, whose timer flushes the whole ASID 10 ms
  after the entry was queued. unmap_fast does not queue anything.
* v6.12 with TTL hints (range invalidation, v5.7+ driver): the sync
  covers the page with TTL=3 (the 4K granule's level) but the cached
  entry is the level-2 block, so the SMMU need not remove it: the sync
  does not end the stale window; only the lazy ASID flush does.
* v6.13: the partial unmap is refused (WARN, 0 bytes): nothing changes.

Per access: T = translated (only outcome allowed), S = the stale block
is used (stale and fault allowed: the TLB may drop the entry at any
time), F = fault (only outcome allowed).
"""

import pytest

from iommu_viz import scenarios

PAGE = 0x40001000
NEIGHBOUR = 0x40002000

T = ("translated", frozenset({"translated"}))
S = ("stale", frozenset({"stale", "fault"}))
F = ("fault", frozenset({"fault"}))

ERAS = ("v4.20", "v5.4", "v6.12", "v6.13")
MODES = ("unmap", "fast", "fast_sync")

# accesses: before, page, neighbour, [page after sync], page after
# advance(11), neighbour after advance(11)
TABLE = {
    # ---- v4.20: the split syncs itself; the block is gone at once
    ("v4.20", True, "unmap"): [T, F, T, F, T],
    ("v4.20", True, "fast"): [T, F, T, F, T],
    ("v4.20", True, "fast_sync"): [T, F, T, F, F, T],
    ("v4.20", False, "unmap"): [T, F, T, F, T],
    ("v4.20", False, "fast"): [T, F, T, F, T],
    ("v4.20", False, "fast_sync"): [T, F, T, F, F, T],
    # ---- v5.4: the page goes into the gather
    ("v5.4", True, "unmap"): [T, F, T, F, T],
    ("v5.4", True, "fast"): [T, S, T, S, T],
    ("v5.4", True, "fast_sync"): [T, S, T, F, F, T],
    ("v5.4", False, "unmap"): [T, S, T, F, T],     # flush queue at 10 ms
    ("v5.4", False, "fast"): [T, S, T, S, T],      # nothing queued
    ("v5.4", False, "fast_sync"): [T, S, T, F, F, T],
    # ---- v6.12 without TTL hints: as v5.4
    ("v6.12", True, "unmap"): [T, F, T, F, T],
    ("v6.12", True, "fast"): [T, S, T, S, T],
    ("v6.12", True, "fast_sync"): [T, S, T, F, F, T],
    ("v6.12", False, "unmap"): [T, S, T, F, T],
    ("v6.12", False, "fast"): [T, S, T, S, T],
    ("v6.12", False, "fast_sync"): [T, S, T, F, F, T],
    # ---- v6.13: refused, the block stays
    ("v6.13", True, "unmap"): [T, T, T, T, T],
    ("v6.13", True, "fast"): [T, T, T, T, T],
    ("v6.13", True, "fast_sync"): [T, T, T, T, T, T],
    ("v6.13", False, "unmap"): [T, T, T, T, T],
    ("v6.13", False, "fast"): [T, T, T, T, T],
    ("v6.13", False, "fast_sync"): [T, T, T, T, T, T],
}

# v6.12 with TTL hints: TTL=3 misses the level-2 block
TABLE_TTL_V612 = {
    ("v6.12", True, "unmap"): [T, S, T, S, T],
    ("v6.12", True, "fast"): [T, S, T, S, T],
    ("v6.12", True, "fast_sync"): [T, S, T, S, S, T],
    ("v6.12", False, "unmap"): [T, S, T, F, T],     # ASID flush has no TTL
    ("v6.12", False, "fast"): [T, S, T, S, T],
    ("v6.12", False, "fast_sync"): [T, S, T, S, S, T],
}


def expected(kernel, strict, mode, ttl):
    if ttl and kernel == "v6.12":
        return TABLE_TTL_V612[(kernel, strict, mode)]
    # v4.20/v5.4 drivers set no TTL; v6.13 issues no leaf TLBI here
    return TABLE[(kernel, strict, mode)]


def run(kernel, strict, mode, ttl, **kw):
    return scenarios.seed(kernel=kernel, strict=strict, ttl_hints=ttl,
                          fast=mode != "unmap",
                          sync_after=mode == "fast_sync", **kw)


def iovas(mode):
    seq = [PAGE, PAGE, NEIGHBOUR]
    if mode == "fast_sync":
        seq.append(PAGE)
    return seq + [PAGE, NEIGHBOUR]


@pytest.mark.parametrize("ttl", [False, True], ids=["ttl0", "ttl1"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("strict", [True, False], ids=["strict", "lazy"])
@pytest.mark.parametrize("kernel", ERAS)
def test_seed_outcome_sets(kernel, strict, mode, ttl):
    sim = run(kernel, strict, mode, ttl)
    want = expected(kernel, strict, mode, ttl)
    got = [(a.outcome, a.allowed) for a in sim.accesses]
    assert got == want, (kernel, strict, mode, ttl)
    assert [a.iova for a in sim.accesses] == iovas(mode)
    for a in sim.accesses:
        # the physical address follows from the outcome: the block's
        # (old or current) translation, or nothing on a fault
        if a.outcome in ("translated", "stale"):
            assert a.paddr == 0x80000000 + (a.iova - 0x40000000)
        else:
            assert a.paddr is None
        # every option's outcome is in the allowed set and vice versa
        assert {o[0] for o in a.options} == set(a.allowed)


def test_ttl_changes_only_v612():
    """ttl_hints only matters where the driver sets TTL (v5.7+) and a leaf
    TLBI is issued for the split page (not v6.13)."""
    for kernel in ERAS:
        for strict in (True, False):
            for mode in MODES:
                a = [(x.outcome, x.allowed)
                     for x in run(kernel, strict, mode, False).accesses]
                b = [(x.outcome, x.allowed)
                     for x in run(kernel, strict, mode, True).accesses]
                # differs exactly where a leaf sync of the split page
                # happens: iommu_unmap (strict) or the caller's sync
                syncs = mode == "fast_sync" or (strict and mode == "unmap")
                assert (a != b) == (kernel == "v6.12" and syncs), (
                    kernel, strict, mode)


def _op_events(sim, kind):
    i = next(n for n, op in enumerate(sim.ops) if op["op"] == kind)
    return [e for e in sim.events if e.op == i]


def _returned(sim, kind):
    ev = [e for e in _op_events(sim, kind) if e.kind == "return"]
    return ev[-1].detail["unmapped"]


@pytest.mark.parametrize("mode", ["unmap", "fast"])
def test_v420_split_issues_and_syncs_itself(mode):
    sim = run("v4.20", True, mode, False)
    kind = "unmap" if mode == "unmap" else "unmap_fast"
    evs = _op_events(sim, kind)
    issued = [(e.func, e.detail["op"]) for e in evs if e.kind == "cmd_issue"]
    # tlb_add_flush (one TLBI for the 4K page) then tlb_sync, inside the
    # split; iommu_unmap adds its own CMD_SYNC afterwards
    assert issued[:2] == [
        ("arm_smmu_tlb_inv_range_nosync", "CMD_TLBI_NH_VA"),
        ("arm_smmu_tlb_sync", "CMD_SYNC")]
    assert len(issued) == (3 if mode == "unmap" else 2)
    tlbi = next(e for e in evs if e.kind == "cmd_issue")
    assert tlbi.detail["fields"]["addr"] == PAGE
    assert tlbi.detail["fields"]["leaf"] is True
    assert _returned(sim, kind) == 0x1000


@pytest.mark.parametrize("kernel", ["v5.4", "v6.12"])
def test_split_adds_to_gather_without_commands(kernel):
    sim = run(kernel, True, "fast", False)
    evs = _op_events(sim, "unmap_fast")
    assert not [e for e in evs if e.kind == "cmd_issue"]
    adds = [e for e in evs if e.kind == "add_page"]
    assert [(e.detail["iova"], e.detail["size"]) for e in adds] == [
        (PAGE, 0x1000)]
    # the gather is open (and visible) until the caller syncs
    st = sim.states[evs[-1].step]
    assert [(g.start, g.end, g.pgsize) for g in st.gathers] == [
        (PAGE, PAGE + 0x1000, 0x1000)]


@pytest.mark.parametrize("kernel", ["v5.4", "v6.12"])
def test_lazy_unmap_drops_gather_and_queues(kernel):
    sim = run(kernel, False, "unmap", False)
    evs = _op_events(sim, "unmap")
    kinds = [e.kind for e in evs]
    assert "gather_drop" in kinds and "fq_add" in kinds
    assert "cmd_issue" not in kinds
    fired = [e for e in sim.events if e.kind == "fq_timeout"]
    assert [e.time_us for e in fired] == [10000]


@pytest.mark.parametrize("strict", [True, False])
@pytest.mark.parametrize("mode", ["unmap", "fast"])
def test_v613_refuses(strict, mode):
    sim = run("v6.13", strict, mode, False)
    kind = "unmap" if mode == "unmap" else "unmap_fast"
    evs = _op_events(sim, kind)
    warns = [e for e in evs if e.kind == "warn"]
    assert len(warns) == 1
    assert "Unmap of a partial large IOPTE is not allowed" in warns[0].text
    assert _returned(sim, kind) == 0
    assert not [e for e in evs if e.kind == "pte_write"]
    # the block is still the mapping
    assert sim.pt.translate(PAGE).size == 0x200000
