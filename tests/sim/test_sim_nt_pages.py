"""nT is a block-descriptor bit: bit 16 of a page descriptor is an output
address bit and must not make the model treat the page as nT (Arm ARM,
FEAT_BBM; the nT sequence is modelled by Simulation(split_nt=True))."""

from iommu_viz import SZ_2M, SZ_4K, Simulation
from iommu_viz.sim.smmu import nt_block


def _neighbour_outcomes(page, neighbour):
    sim = Simulation(kernel="v5.4", bbml=1, personality="adversarial")
    sim.map(0x40000000, 0x80000000, SZ_2M)
    sim.access(0x40001000)
    g = sim.new_gather()
    sim.unmap_fast(page, SZ_4K, g)
    sim.speculate(neighbour)
    return sorted(sim.access(neighbour).allowed)


def test_page_with_address_bit_16_is_not_nt():
    # the neighbour's output address 0x80012000 has bit 16 set; it is a
    # page like any other, so BBML1 allows the same conflict as at 0x80002000
    assert _neighbour_outcomes(0x40011000, 0x40012000) == \
        _neighbour_outcomes(0x40001000, 0x40002000)
    assert "conflict" in _neighbour_outcomes(0x40011000, 0x40012000)


def test_nt_block_reads_only_blocks():
    assert nt_block(0x80000000 | (1 << 16) | 1)          # block, nT
    assert not nt_block(0x80010000 | 3)                   # page at 0x80010000
    assert not nt_block(0x80000000 | 1)                   # block without nT


def test_writing_a_page_at_bit16_address_arms_no_refetch():
    sim = Simulation(kernel="v5.4", bbml=1, personality="adversarial")
    sim.map(0x50000000, 0x90010000, SZ_4K)
    sim.flush_all()
    assert not any(e.iova == 0x50000000 for e in sim.state.tlb)
