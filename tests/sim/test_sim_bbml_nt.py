"""Break-before-make level 1 with and without the nT sequence (SMMUv3
3.21.1, SMMU_IDR3.BBML): the split marks the block nT and invalidates it
before replacing it. Then, at BBML1, an nT block still cached beside a new
page may give the old or the new translation but not a conflict; at BBML0
nT changes nothing; BBML2 never conflicts."""

import pytest

from iommu_viz import LpaeTable, SZ_2M, SZ_4K, Simulation, scenarios
from iommu_viz.pgtable.lpae import PTE_NT
from iommu_viz.scenarios import NEIGHBOUR


def neighbour_read(bbml, nt):
    run = scenarios.run("seed-conflict", bbml=bbml, split_nt=nt,
                        personality="adversarial", sync_after=False)
    return [a for a in run.accesses if a.iova == NEIGHBOUR][0], run


# allowed outcome sets of the first read of the neighbouring page, worked
# out from the BBML rules: both the nT block and the new page are cached
EXPECTED = {
    (0, False): {"conflict", "translated"},
    (0, True): {"conflict", "translated"},
    (1, False): {"conflict", "translated"},
    (1, True): {"translated"},
    (2, False): {"translated"},
    (2, True): {"translated"},
}


@pytest.mark.parametrize("bbml, nt", sorted(EXPECTED))
def test_conflict_allowed_by_bbml_and_nt(bbml, nt):
    read, run = neighbour_read(bbml, nt)
    assert set(read.allowed) == EXPECTED[bbml, nt]
    conflicts = [h for h in run.state_at(read.step).hazards
                 if h.kind == "conflict"]
    assert bool(conflicts) == ("conflict" in EXPECTED[bbml, nt])


def test_the_nt_block_is_what_the_tlb_holds():
    read, run = neighbour_read(1, True)
    st = run.state_at(read.step)
    blocks = [e for e in st.tlb if e.size == SZ_2M]
    assert len(blocks) == 1 and blocks[0].pte & PTE_NT
    assert blocks[0].paddr == 0x80000000
    # the nT write is recorded, and the tree can read it back
    ev = [e for e in run.events if "nT sequence" in e.func]
    assert len(ev) == 1 and "-> 0x80000000" in ev[0].text
    snap = run.state_at(ev[0].step).pgtable
    info = snap.decode(2, ev[0].detail["new"])
    assert info.kind == "block" and info.addr == 0x80000000
    assert "nT" in info.attrs


@pytest.mark.parametrize("kernel, calls", [
    ("v5.4", [("tlb_flush_leaf", 0x40000000, SZ_2M, SZ_2M),
              ("tlb_add_page", None, 0x40001000, SZ_4K)]),
    ("v4.20", [("tlb_add_flush", 0x40000000, SZ_2M, SZ_2M, True),
               ("tlb_sync",),
               ("tlb_add_flush", 0x40001000, SZ_4K, SZ_4K, True),
               ("tlb_sync",)]),
])
def test_split_nt_flush_calls(kernel, calls):
    pt = LpaeTable(kernel=kernel, split_nt=True)
    pt.map(0x40000000, 0x80000000, SZ_2M)
    assert pt.unmap(0x40001000, SZ_4K) == SZ_4K
    assert pt.tlb.calls == calls
    # the pages left behind do not inherit nT, and map the block's memory
    assert pt.iova_to_phys(0x40002000) == 0x80002000
    assert not pt.walk(0x40002000)[-1].pte & PTE_NT


def test_split_nt_has_no_meaning_for_v7s():
    with pytest.raises(ValueError, match="nT bit is an LPAE"):
        Simulation(fmt="v7s", split_nt=True)
