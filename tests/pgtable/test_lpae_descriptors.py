"""Descriptor bits, checked against values worked out by hand.

VMSAv8-64 descriptor fields (Arm ARM D8.3; io-pgtable-arm.c ARM_LPAE_PTE_*):

    bits 1:0   type: 0b01 block (levels 0-2), 0b11 table (levels 0-2) or
               page (level 3)
    bits 4:2   stage 1 AttrIndx (MAIR index: 0 NC, 1 WBRWA cache, 2 device)
    bits 5:2   stage 2 MemAttr (0xF outer/inner WB, 0x5 NC, 0x1 device)
    bit  5     stage 1 NS (IO_PGTABLE_QUIRK_ARM_NS)
    bits 7:6   stage 1 AP: bit 6 "unprivileged", bit 7 "read-only"
               stage 2 S2AP: bit 6 read, bit 7 write
    bits 9:8   SH: 0b11 inner, 0b10 outer shareable
    bit  10    AF, always set by the kernel
    bit  11    nG (stage 1 only; the kernel marks every mapping non-global)
    bits 54:53 XN, both set for IOMMU_NOEXEC
    bit  63    NSTable in table descriptors (NS quirk)

arm_lpae_prot_to_pte / __arm_lpae_init_pte. Shareability: v4.20 and v5.4
OR SH=IS into every leaf in __arm_lpae_init_pte; Robin Murphy's rework
(after v5.4, so in the v6.13 era) moved it to arm_lpae_prot_to_pte as
"SH=IS if IOMMU_CACHE, else SH=OS" (non-Mali formats).
"""

import pytest

from iommu_viz.pgtable.common import (
    IOMMU_CACHE, IOMMU_MMIO, IOMMU_NOEXEC, IOMMU_PRIV, IOMMU_READ,
    IOMMU_WRITE, SZ_1G, SZ_2M, SZ_4K, SZ_16K, SZ_64K,
)
from iommu_viz.pgtable.lpae import LpaeTable

R, W, C = IOMMU_READ, IOMMU_WRITE, IOMMU_CACHE
RW = R | W
PAGE_PA = 0x80000000            # a 4K page at level 3
BLOCK_PA = 0x80200000           # a 2M block at level 2

# Stage 1, type 3 (page), pa 0x80000000. Common bits: nG 0x800, AF 0x400.
# v5.4: SH=IS (0x300) always.  v6.13: SH=IS with IOMMU_CACHE, else SH=OS
# (0x200).
S1_PAGES = [
    # prot, ns, v5.4, v6.13
    # READ: AP=0b11 (unpriv 0x40 | rdonly 0x80), idx 0
    #   0x800|0x400|0x300|0xC0|0x3 = 0xFC3 ; OS: 0xEC3
    (R, False, 0x0000000080000FC3, 0x0000000080000EC3),
    # WRITE: AP=0b01 (0x40) - write implies read at stage 1
    #   0x800|0x400|0x300|0x40|0x3 = 0xF43 ; OS: 0xE43
    (W, False, 0x0000000080000F43, 0x0000000080000E43),
    # READ|WRITE: same AP=0b01
    (RW, False, 0x0000000080000F43, 0x0000000080000E43),
    # READ|WRITE|CACHE: AttrIndx 1 (1 << 2 = 0x4): 0xF47 in both eras,
    # since CACHE selects SH=IS in v6.13 too
    (RW | C, False, 0x0000000080000F47, 0x0000000080000F47),
    # CACHE alone with READ: AP=0b11, idx 1: 0xFC7
    (R | C, False, 0x0000000080000FC7, 0x0000000080000FC7),
    # READ|WRITE|MMIO: AttrIndx 2 (0x8): 0xF4B ; OS: 0xE4B
    (RW | IOMMU_MMIO, False, 0x0000000080000F4B, 0x0000000080000E4B),
    # MMIO wins over CACHE for AttrIndx; CACHE still picks SH=IS: 0xF4B
    (RW | IOMMU_MMIO | C, False, 0x0000000080000F4B, 0x0000000080000F4B),
    # READ|WRITE|NOEXEC: XN = 0b11 << 53 = 0x0060_0000_0000_0000
    (RW | IOMMU_NOEXEC, False, 0x0060000080000F43, 0x0060000080000E43),
    # READ|WRITE|PRIV: AP=0b00 (no unpriv bit): 0xF03 ; OS: 0xE03
    (RW | IOMMU_PRIV, False, 0x0000000080000F03, 0x0000000080000E03),
    # READ|PRIV: AP=0b10 (rdonly 0x80): 0xF83 ; OS: 0xE83
    (R | IOMMU_PRIV, False, 0x0000000080000F83, 0x0000000080000E83),
    # NS quirk: NS bit 5 (0x20): RW 0xF63 ; OS: 0xE63
    (RW, True, 0x0000000080000F63, 0x0000000080000E63),
    # NS + RW|CACHE: 0xF67 in both
    (RW | C, True, 0x0000000080000F67, 0x0000000080000F67),
]

# Stage 2, type 3, pa 0x80000000. No nG, no NS. AF 0x400.
# S2AP bits 7:6: READ 0x40, WRITE 0x80. MemAttr bits 5:2: NC 0x5 << 2 =
# 0x14, OIWB 0xF << 2 = 0x3C, device 0x1 << 2 = 0x04.
S2_PAGES = [
    # READ: 0x400|0x300|0x40|0x14|0x3 = 0x757 ; OS 0x657
    (R, 0x0000000080000757, 0x0000000080000657),
    # WRITE (write-only is expressible at stage 2): 0x797 ; OS 0x697
    (W, 0x0000000080000797, 0x0000000080000697),
    # READ|WRITE: 0x7D7 ; OS 0x6D7
    (RW, 0x00000000800007D7, 0x00000000800006D7),
    # READ|WRITE|CACHE: 0x400|0x300|0xC0|0x3C|0x3 = 0x7FF in both
    (RW | C, 0x00000000800007FF, 0x00000000800007FF),
    # READ|WRITE|MMIO: device memory 0x04: 0x7C7 ; OS 0x6C7
    (RW | IOMMU_MMIO, 0x00000000800007C7, 0x00000000800006C7),
    # READ|WRITE|NOEXEC: XN 0x0060_0000_0000_0000
    (RW | IOMMU_NOEXEC, 0x00600000800007D7, 0x00600000800006D7),
    # PRIV means nothing at stage 2
    (RW | IOMMU_PRIV, 0x00000000800007D7, 0x00000000800006D7),
]


@pytest.mark.parametrize("prot,ns,v54,v613", S1_PAGES)
def test_stage1_page(prot, ns, v54, v613):
    for kernel, want in (("v4.20", v54), ("v5.4", v54), ("v6.13", v613)):
        pt = LpaeTable(SZ_4K, 48, 48, 1, kernel, ns=ns)
        assert pt.map(0x10000, PAGE_PA, SZ_4K, prot) == SZ_4K
        steps = pt.walk(0x10000)
        assert steps[-1].level == 3 and steps[-1].kind == "page"
        assert steps[-1].pte == want, (kernel, hex(steps[-1].pte))
        assert [m[4] for m in pt.mappings()] == [want]


@pytest.mark.parametrize("prot,v54,v613", S2_PAGES)
def test_stage2_page(prot, v54, v613):
    for kernel, want in (("v4.20", v54), ("v5.4", v54), ("v6.13", v613)):
        pt = LpaeTable(SZ_4K, 40, 48, 2, kernel)
        assert pt.map(0x10000, PAGE_PA, SZ_4K, prot) == SZ_4K
        assert pt.walk(0x10000)[-1].pte == want, (kernel, prot)


@pytest.mark.parametrize("kernel,stage,want", [
    # 2M block at level 2, READ|WRITE|CACHE, pa 0x80200000, type 0b01:
    # stage 1: nG|AF|SH=IS|AP=01|idx1|block = 0x800|0x400|0x300|0x40|0x4|1
    ("v5.4", 1, 0x0000000080200F45),
    ("v6.13", 1, 0x0000000080200F45),
    # stage 2: AF|SH=IS|S2AP=11|OIWB|block = 0x400|0x300|0xC0|0x3C|1
    ("v5.4", 2, 0x00000000802007FD),
    ("v6.13", 2, 0x00000000802007FD),
])
def test_block_descriptor(kernel, stage, want):
    pt = LpaeTable(SZ_4K, 48, 48, stage, kernel)
    pt.map(SZ_1G + SZ_2M, BLOCK_PA, SZ_2M, RW | C)
    step = pt.walk(SZ_1G + SZ_2M + 0x1234)[-1]
    assert (step.level, step.kind, step.size) == (2, "block", SZ_2M)
    assert step.pte == want


def test_block_descriptor_v613_outer_shareable():
    # a 1G block, READ only, no CACHE, stage 1, v6.13: SH=OS (0x200)
    # nG|AF|OS|AP=11|idx0|block = 0x800|0x400|0x200|0xC0|1 = 0xEC1
    pt = LpaeTable(SZ_4K, 48, 48, 1, "v6.13")
    pt.map(2 * SZ_1G, 0x40000000, SZ_1G, R)
    step = pt.walk(2 * SZ_1G)[-1]
    assert (step.level, step.kind) == (1, "block")
    assert step.pte == 0x0000000040000EC1


@pytest.mark.parametrize("granule,level", [(SZ_16K, 3), (SZ_64K, 3)])
def test_page_descriptor_other_granules(granule, level):
    """The type and attribute bits do not depend on the granule; the
    address field holds the granule-aligned pa (16K: 0x80004000)."""
    pt = LpaeTable(granule, 48, 48, 1, "v5.4")
    pa = 0x80000000 + granule
    pt.map(granule * 3, pa, granule, RW | C)
    step = pt.walk(granule * 3)[-1]
    assert step.level == level
    assert step.pte == pa | 0xF47


@pytest.mark.parametrize("kernel", ["v5.4", "v6.13"])
@pytest.mark.parametrize("ns", [False, True])
def test_table_descriptors(kernel, ns):
    """arm_lpae_install_table / __arm_lpae_map: a table descriptor is the
    next table's pa | 0b11, plus NSTable (bit 63) under the NS quirk."""
    pt = LpaeTable(SZ_4K, 48, 48, 1, kernel, ns=ns)
    pt.map(0x12345000, PAGE_PA, SZ_4K, RW)
    steps = pt.walk(0x12345000)
    assert [s.kind for s in steps] == ["table", "table", "table", "page"]
    nstable = 1 << 63 if ns else 0
    for upper, lower in zip(steps, steps[1:]):
        assert upper.pte == lower.table | 0x3 | nstable
        assert lower.table % SZ_4K == 0
        info = pt.describe(upper.level, upper.pte)
        assert info.kind == "table" and info.addr == lower.table
        assert ("NSTable" in info.attrs) == ns
    assert steps[-1].pte & 0x20 == (0x20 if ns else 0)      # NS on leaf


def test_ns_quirk_refused_at_stage2():
    with pytest.raises(ValueError, match="stage 2"):
        LpaeTable(SZ_4K, 48, 48, 2, "v5.4", ns=True)


@pytest.mark.parametrize("kernel", ["v4.20", "v5.4"])
@pytest.mark.parametrize("prot,attrs", [
    # nG|AF|SH=IS|AP=01|idx1 = 0xF44, page type 3 -> 0xF47
    (RW | C, 0x0000000000000F47),
    # the XN bits survive the split (ARM_LPAE_PTE_ATTR_HI_MASK)
    (RW | C | IOMMU_NOEXEC, 0x0060000000000F47),
])
def test_split_copies_block_attributes(kernel, prot, attrs):
    """arm_lpae_split_blk_unmap: after unmapping one 4K page of a 2M
    block, the new level-3 table holds the other 511 pages with the
    block's attributes, type 0b11 and consecutive addresses; the level-2
    entry becomes a table descriptor pointing at it."""
    pt = LpaeTable(SZ_4K, 48, 48, 1, kernel)
    iova = SZ_1G + SZ_2M
    pt.map(iova, BLOCK_PA, SZ_2M, prot)
    block_pte = pt.walk(iova)[-1].pte
    assert block_pte == BLOCK_PA | (attrs & ~0x3) | 0x1
    assert pt.unmap(iova + 5 * SZ_4K, SZ_4K) == SZ_4K
    steps = pt.walk(iova)
    l2, l3 = steps[-2], steps[-1]
    assert l2.level == 2 and l2.kind == "table"
    assert l2.pte == l3.table | 0x3
    entries = pt.snapshot().table(l3.table).entries
    assert len(entries) == 512
    for i, pte in enumerate(entries):
        if i == 5:
            assert pte == 0
        else:
            assert pte == (BLOCK_PA + i * SZ_4K) | attrs, i
    assert sum(1 for e in entries if e) == 511


def test_split_of_1g_block_two_levels():
    """A 4K unmap inside a 1G block (v5.4) splits twice: a level-2 table
    of 2M blocks (type 0b01), one of which became a level-3 table."""
    pt = LpaeTable(SZ_4K, 48, 48, 1, "v5.4")
    pt.map(SZ_1G, 0x40000000, SZ_1G, RW)
    target = SZ_1G + 3 * SZ_2M + 7 * SZ_4K
    assert pt.unmap(target, SZ_4K) == SZ_4K
    l1, l2, l3 = pt.walk(target)[-3:]
    l2_entries = pt.snapshot().table(l2.table).entries
    # nG|AF|SH=IS|AP=01|idx0 = 0xF40; block type 1 -> 0xF41
    for i, pte in enumerate(l2_entries):
        if i == 3:
            assert pte == l3.table | 0x3
        else:
            assert pte == (0x40000000 + i * SZ_2M) | 0xF41
    l3_entries = pt.snapshot().table(l3.table).entries
    assert l3_entries[7] == 0
    assert l3_entries[8] == (0x40000000 + 3 * SZ_2M + 8 * SZ_4K) | 0xF43
    assert pt.tlb.calls == [("tlb_add_page", None, target, SZ_4K)]


def test_no_access_maps_nothing():
    """arm_lpae_map: no READ and no WRITE means nothing to do, return 0."""
    for prot in (0, C, IOMMU_NOEXEC, IOMMU_MMIO | IOMMU_PRIV):
        pt = LpaeTable(SZ_4K, 48, 48, 1, "v5.4")
        before = pt.snapshot()
        assert pt.map(0, PAGE_PA, SZ_4K, prot) == 0
        assert pt.snapshot() == before
        assert pt.iova_to_phys(0) == 0


@pytest.mark.parametrize("stage", [1, 2])
def test_translation_prot_decodes_bits(stage):
    """translate() reports the rights the bits grant: stage 1 cannot
    express write-only (AP=01 is read/write), stage 2 can."""
    pt = LpaeTable(SZ_4K, 40, 48, stage, "v5.4")
    pt.map(0x0, PAGE_PA, SZ_4K, W)
    pt.map(0x1000, PAGE_PA, SZ_4K, R | IOMMU_NOEXEC)
    pt.map(0x2000, PAGE_PA, SZ_4K, RW | IOMMU_PRIV)
    w = pt.translate(0x0).prot
    r = pt.translate(0x1000).prot
    p = pt.translate(0x2000).prot
    if stage == 1:
        assert w == RW
        assert p == RW | IOMMU_PRIV
    else:
        assert w == W
        assert p == RW
    assert r == R | IOMMU_NOEXEC
