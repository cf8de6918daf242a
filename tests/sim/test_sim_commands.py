"""The SMMU commands arm-smmu-v3 issues, worked out by hand.

v5.4 arm_smmu_tlb_inv_range: one CMD_TLBI_NH_VA per granule, then one
CMD_SYNC for the batch. v6.12 __arm_smmu_tlb_inv_range with range
invalidation (docs/kernel-facts.md section 6), 4K leaf granule so
tg = 12:

  TG field = (tg - 10) / 2 = 1
  TTL      = 4 - (log2(granule) - 3) / (tg - 3)   (leaf only, v6.6+)
  loop:    scale = ffs(num_pages); num = (num_pages >> scale) & 31;
           NUM field = num - 1; covers num << (scale + tg) bytes;
           num_pages -= num << scale

  3 pages:   scale 0, num 3  -> NUM 2, SCALE 0 (one command)
  4 pages:   scale 2, num 1  -> NUM 0, SCALE 2 (one command)
  6 pages:   scale 1, num 3  -> NUM 2, SCALE 1 (one command)
  33 pages:  scale 0, num 1  -> NUM 0, SCALE 0 (1 page), then
             32 pages left: scale 5, num 1 -> NUM 0, SCALE 5
  walk flush of a 2 MiB table: 512 pages, leaf 0, TTL 0 (6833b8f2e199),
             512 & 31 = 0 so no extra page (eb6c97647be2);
             scale 9, num 1 -> NUM 0, SCALE 9
"""

import pytest

from iommu_viz.pgtable.common import SZ_2M, SZ_4K
from iommu_viz.sim import Simulation

BASE = 0x10000000


def _commands(sim, op_index):
    return [(e.detail["op"], e.detail["fields"]) for e in sim.events
            if e.op == op_index and e.kind == "cmd_issue"]


def _unmap_pages(kernel, n, ttl_hints):
    sim = Simulation(kernel=kernel, ttl_hints=ttl_hints)
    sim.map(BASE, 0x90000000, n * SZ_4K)
    for i in range(n):
        sim.access(BASE + i * SZ_4K)
    assert sim.unmap(BASE, n * SZ_4K) == n * SZ_4K
    return sim, _commands(sim, len(sim.ops) - 1)


@pytest.mark.parametrize("ttl_hints", [False, True])
def test_v54_strict_four_pages(ttl_hints):
    # v5.4 drivers never set TTL or range fields, whatever the SMMU has
    sim, cmds = _unmap_pages("v5.4", 4, ttl_hints)
    assert cmds == [
        ("CMD_TLBI_NH_VA", dict(asid=1, addr=BASE, leaf=True)),
        ("CMD_TLBI_NH_VA", dict(asid=1, addr=BASE + 0x1000, leaf=True)),
        ("CMD_TLBI_NH_VA", dict(asid=1, addr=BASE + 0x2000, leaf=True)),
        ("CMD_TLBI_NH_VA", dict(asid=1, addr=BASE + 0x3000, leaf=True)),
        ("CMD_SYNC", {}),
    ]
    assert sim.state.tlb == ()
    # the commands are issued by the caller's sync, not by the unmap
    funcs = {e.func for e in sim.events
             if e.op == len(sim.ops) - 1 and e.kind == "cmd_issue"}
    assert funcs == {"arm_smmu_iotlb_sync"}


def _range(addr, num, scale, leaf=True, ttl=3):
    return ("CMD_TLBI_NH_VA", dict(asid=1, addr=addr, leaf=leaf, tg=1,
                                   ttl=ttl, num=num, scale=scale))


@pytest.mark.parametrize("n,want", [
    (4, [_range(BASE, 0, 2)]),
    (3, [_range(BASE, 2, 0)]),
    (6, [_range(BASE, 2, 1)]),
    (33, [_range(BASE, 0, 0), _range(BASE + 0x1000, 0, 5)]),
])
def test_v612_range_commands(n, want):
    sim, cmds = _unmap_pages("v6.12", n, True)
    assert cmds == want + [("CMD_SYNC", {})]
    assert sim.state.tlb == ()


def test_v612_without_ttl_hints_is_per_page():
    sim, cmds = _unmap_pages("v6.12", 3, False)
    assert cmds == [
        ("CMD_TLBI_NH_VA", dict(asid=1, addr=BASE + i * SZ_4K, leaf=True))
        for i in range(3)] + [("CMD_SYNC", {})]


def _walk_flush(kernel, ttl_hints):
    # a 4K page puts a level-3 table under the 2 MiB slot; unmapping the
    # whole 2 MiB clears the table entry and frees the table after a walk
    # flush (tlb_flush_walk / arm_smmu_tlb_inv_walk)
    sim = Simulation(kernel=kernel, ttl_hints=ttl_hints)
    sim.map(0x40000000, 0x80000000, SZ_4K)
    sim.access(0x40000000)
    assert sim.unmap(0x40000000, SZ_2M) == SZ_2M
    return sim, _commands(sim, len(sim.ops) - 1)


def test_v612_walk_flush_has_ttl_0():
    sim, cmds = _walk_flush("v6.12", True)
    # the walk flush (leaf 0, TTL 0) and its sync come from
    # arm_smmu_tlb_inv_walk while the table is freed; v6.12's
    # __arm_lpae_unmap then also adds the cleared 2 MiB entry to the
    # gather like a leaf, so iommu_unmap's sync issues a leaf range
    # command with granule 2M: TTL = 4 - (21 - 3) / 9 = 2, 512 pages
    assert cmds == [_range(0x40000000, 0, 9, leaf=False, ttl=0),
                    ("CMD_SYNC", {}),
                    _range(0x40000000, 0, 9, leaf=True, ttl=2),
                    ("CMD_SYNC", {})]
    funcs = [e.func for e in sim.events
             if e.op == len(sim.ops) - 1 and e.kind == "cmd_issue"]
    assert funcs == ["arm_smmu_tlb_inv_walk"] * 2 + \
        ["arm_smmu_iotlb_sync"] * 2
    free = [e for e in sim.events if e.kind == "table_free"]
    assert [e.detail["level"] for e in free] == [3]
    assert sim.state.tlb == ()
    assert all(w.level < 2 for w in sim.state.walk_cache)


def test_v54_walk_flush_per_granule_not_leaf():
    sim, cmds = _walk_flush("v5.4", True)
    assert len(cmds) == 513
    assert cmds[0] == ("CMD_TLBI_NH_VA",
                       dict(asid=1, addr=0x40000000, leaf=False))
    assert cmds[-2] == ("CMD_TLBI_NH_VA",
                        dict(asid=1, addr=0x40000000 + SZ_2M - SZ_4K,
                             leaf=False))
    assert cmds[-1] == ("CMD_SYNC", {})
    assert all(f["leaf"] is False for _, f in cmds[:-1])


def test_v420_walk_flush_add_flush_then_sync():
    sim, cmds = _walk_flush("v4.20", False)
    # tlb_add_flush(leaf=false) per granule + tlb_sync, then iommu_unmap's
    # own sync
    ops = [c[0] for c in cmds]
    assert ops.count("CMD_TLBI_NH_VA") == 512
    assert ops[512:] == ["CMD_SYNC", "CMD_SYNC"]


def test_flush_all_is_asid():
    sim = Simulation()
    sim.flush_all()
    assert _commands(sim, 0) == [("CMD_TLBI_NH_ASID", dict(asid=1)),
                                 ("CMD_SYNC", {})]
