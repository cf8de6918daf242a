"""Shared runs and snapshots for the renderer tests."""

import pytest

from iommu_viz import SZ_2M, SZ_4K, LpaeTable
from iommu_viz.sim import Simulation

BLOCK_IOVA = 0x40000000
BLOCK_PA = 0x80000000


@pytest.fixture(scope="session")
def split():
    """A 2 MiB block, then the same table after unmapping its second 4K
    page (arm_lpae_split_blk_unmap, v5.4 era), and the table object."""
    pt = LpaeTable(granule=SZ_4K, ias=48, oas=48, kernel="v5.4")
    pt.map(BLOCK_IOVA, BLOCK_PA, SZ_2M)
    before = pt.snapshot()
    block = pt.translate(BLOCK_IOVA)
    assert pt.unmap(BLOCK_IOVA + SZ_4K, SZ_4K) == SZ_4K
    after = pt.snapshot()
    return pt, before, after, block


def seed_ops(sim):
    """The seed thread's case: unmap_fast of one page inside a cached
    block, a speculative fill of a neighbour, accesses before the sync."""
    sim.map(BLOCK_IOVA, BLOCK_PA, SZ_2M)
    sim.access(BLOCK_IOVA + SZ_4K)
    g = sim.new_gather()
    sim.unmap_fast(BLOCK_IOVA + SZ_4K, SZ_4K, g)
    sim.speculate(BLOCK_IOVA + 2 * SZ_4K)
    sim.access(BLOCK_IOVA + SZ_4K)
    sim.access(BLOCK_IOVA + 2 * SZ_4K)
    sim.iotlb_sync(g)
    sim.access(BLOCK_IOVA + SZ_4K)
    sim.advance(10)
    return sim


@pytest.fixture(scope="session")
def seed_run():
    return seed_ops(Simulation(kernel="v5.4"))


@pytest.fixture(scope="session")
def lazy_run():
    """Lazy mode: the unmapped page stays reachable until the flush
    queue's 10 ms timeout flushes the TLB."""
    sim = Simulation(kernel="v5.4", strict=False)
    sim.map(0x10000000, 0x90000000, 2 * SZ_4K)
    sim.access(0x10001000)
    sim.unmap(0x10000000, 2 * SZ_4K)
    sim.access(0x10001000)
    sim.advance(4)
    sim.access(0x10001000)
    sim.advance(10)
    sim.access(0x10001000)
    return sim
