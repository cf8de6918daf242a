"""Bad input: every refusal names the offending value, carries the
kernel's errno and leaves the table exactly as it was.

The kernel's checks being modelled: arm_lpae_map / arm_lpae_map_pages
(-EINVAL for a size not in pgsize_bitmap, -ERANGE for iova beyond ias or
paddr beyond oas, -EEXIST from arm_lpae_init_pte and __arm_lpae_map when
a leaf is in the way), iommu_map's alignment check (-EINVAL), and
arm_lpae_unmap (nothing mapped: 0 bytes). Constructor checks follow
arm_lpae_alloc_pgtable / arm_64_lpae_alloc_pgtable_s1/_s2.
"""

import pytest

from iommu_viz.pgtable.common import (
    IOMMU_READ, IOMMU_WRITE, SZ_1G, SZ_2M, SZ_4K, SZ_16K, SZ_64K,
    PgtableError,
)
from iommu_viz.pgtable.lpae import LpaeTable

RW = IOMMU_READ | IOMMU_WRITE
ERAS = ["v4.20", "v5.4", "v6.13"]


def populated(kernel="v5.4", ias=32, oas=40):
    """A table with a page, a block and a table in it, and a history of
    flush-op calls, so that "unchanged" means something."""
    pt = LpaeTable(SZ_4K, ias, oas, 1, kernel)
    pt.map(0x1000, 0x5000, SZ_4K, RW)
    pt.map(SZ_1G, 0x40000000, SZ_2M, RW)
    pt.map(2 * SZ_1G, 0x80000000, SZ_1G, RW)
    pt.map(0x3000, 0x6000, SZ_4K, RW)
    pt.unmap(0x3000, SZ_4K)
    assert pt.tlb.calls or kernel == "v6.13"
    return pt


def refused(pt, errno, fragment, call):
    """Run ``call`` and check it raises ``errno`` with ``fragment`` in the
    message, changing neither the tables, the flush-op calls nor the
    warnings."""
    before = pt.snapshot()
    calls = list(pt.tlb.calls)
    warnings = list(pt.warnings)
    with pytest.raises(PgtableError) as exc:
        call()
    assert exc.value.errno == errno, exc.value
    assert fragment in exc.value.message, exc.value.message
    assert f"(-{errno})" in str(exc.value)
    assert pt.snapshot() == before
    assert pt.tlb.calls == calls
    assert pt.warnings == warnings
    return exc.value


# (description, errno, fragment naming the value, map arguments)
BAD_MAPS = [
    ("unaligned iova", "EINVAL", "iova 0x1001",
     dict(iova=0x1001, paddr=0x9000, size=SZ_4K)),
    ("iova aligned to 4K, not 2M", "EINVAL", "iova 0x201000",
     dict(iova=0x201000, paddr=0x200000, size=SZ_2M)),
    ("unaligned paddr", "EINVAL", "paddr 0x9001",
     dict(iova=0x9000, paddr=0x9001, size=SZ_4K)),
    ("paddr aligned to 4K, not 2M", "EINVAL", "paddr 0x1000",
     dict(iova=0x200000, paddr=0x1000, size=SZ_2M)),
    ("size 8K", "EINVAL", "0x2000",
     dict(iova=0x8000, paddr=0x8000, size=0x2000)),
    ("size 0", "EINVAL", "0x0", dict(iova=0x8000, paddr=0x8000, size=0)),
    ("size 3", "EINVAL", "0x3", dict(iova=0x8000, paddr=0x8000, size=3)),
    ("size 16K on a 4K table", "EINVAL", "0x4000",
     dict(iova=0x8000, paddr=0x8000, size=SZ_16K)),
    ("negative size", "EINVAL", "-0x1000",
     dict(iova=0x8000, paddr=0x8000, size=-SZ_4K)),
    ("non-int size", "EINVAL", "4096.0",
     dict(iova=0x8000, paddr=0x8000, size=4096.0)),
    ("iova beyond ias 32", "ERANGE", "0x100000000",
     dict(iova=1 << 32, paddr=0x8000, size=SZ_4K)),
    ("range end beyond ias", "ERANGE", "0x100000fff",
     dict(iova=0xFFFFF000, paddr=0x8000, size=SZ_4K, count=2)),
    ("1G block ending past 4G", "ERANGE", "0x13fffffff",
     dict(iova=3 * SZ_1G, paddr=0, size=SZ_1G, count=2)),
    ("paddr beyond oas 40", "ERANGE", "0x10000000000",
     dict(iova=0x8000, paddr=1 << 40, size=SZ_4K)),
    ("paddr range end beyond oas", "ERANGE", "0x10000000fff",
     dict(iova=0x8000, paddr=(1 << 40) - SZ_4K, size=SZ_4K, count=2)),
    ("count 0", "EINVAL", "count 0",
     dict(iova=0x8000, paddr=0x8000, size=SZ_4K, count=0)),
    ("negative count", "EINVAL", "count -1",
     dict(iova=0x8000, paddr=0x8000, size=SZ_4K, count=-1)),
    ("non-int count", "EINVAL", "count 1.5",
     dict(iova=0x8000, paddr=0x8000, size=SZ_4K, count=1.5)),
    ("negative iova", "EINVAL", "iova -4096",
     dict(iova=-SZ_4K, paddr=0x8000, size=SZ_4K)),
    ("negative paddr", "EINVAL", "paddr -4096",
     dict(iova=0x8000, paddr=-SZ_4K, size=SZ_4K)),
    ("non-int iova", "EINVAL", "iova '0x8000'",
     dict(iova="0x8000", paddr=0x8000, size=SZ_4K)),
    ("non-int paddr", "EINVAL", "paddr 32768.0",
     dict(iova=0x8000, paddr=32768.0, size=SZ_4K)),
]


@pytest.mark.parametrize("kernel", ERAS)
@pytest.mark.parametrize("what,errno,fragment,args", BAD_MAPS,
                         ids=[b[0] for b in BAD_MAPS])
def test_bad_map(kernel, what, errno, fragment, args):
    pt = populated(kernel)
    refused(pt, errno, fragment, lambda: pt.map(prot=RW, **args))


BAD_UNMAPS = [
    ("unaligned iova", "EINVAL", "iova 0x1001", dict(iova=0x1001,
                                                      size=SZ_4K)),
    ("iova aligned to 4K, not 2M", "EINVAL", "iova 0x40001000",
     dict(iova=SZ_1G + SZ_4K, size=SZ_2M)),
    ("size 8K", "EINVAL", "0x2000", dict(iova=0x0, size=0x2000)),
    ("size 0", "EINVAL", "0x0", dict(iova=0x0, size=0)),
    ("size 3", "EINVAL", "0x3", dict(iova=0x0, size=3)),
    ("iova beyond ias", "ERANGE", "0x100000000",
     dict(iova=1 << 32, size=SZ_4K)),
    ("range end beyond ias", "ERANGE", "0x17fffffff",
     dict(iova=2 * SZ_1G, size=SZ_1G, count=4)),
    ("count 0", "EINVAL", "count 0", dict(iova=0x1000, size=SZ_4K,
                                           count=0)),
    ("negative iova", "EINVAL", "iova -4096", dict(iova=-SZ_4K,
                                                    size=SZ_4K)),
    ("non-int iova", "EINVAL", "iova None", dict(iova=None, size=SZ_4K)),
    ("non-int size", "EINVAL", "'4K'", dict(iova=0x1000, size="4K")),
]


@pytest.mark.parametrize("kernel", ERAS)
@pytest.mark.parametrize("what,errno,fragment,args", BAD_UNMAPS,
                         ids=[b[0] for b in BAD_UNMAPS])
def test_bad_unmap(kernel, what, errno, fragment, args):
    pt = populated(kernel)
    refused(pt, errno, fragment, lambda: pt.unmap(**args))


def test_message_names_rule():
    """The message says which rule was broken, in words."""
    pt = populated()
    e = refused(pt, "EINVAL", "0x1001", lambda: pt.map(0x1001, 0, SZ_4K))
    assert "aligned" in e.message and "4 KiB" in e.message
    e = refused(pt, "EINVAL", "0x2000", lambda: pt.map(0, 0, 0x2000))
    assert "pgsize_bitmap 0x40201000" in e.message
    e = refused(pt, "ERANGE", "0x100000000",
                lambda: pt.map(1 << 32, 0, SZ_4K))
    assert "32-bit input address size" in e.message
    e = refused(pt, "ERANGE", "0x10000000000",
                lambda: pt.map(0, 1 << 40, SZ_4K))
    assert "40-bit output address size" in e.message


def test_granule_specific_sizes():
    """16K and 64K tables refuse the 4K family's sizes."""
    for granule, bad in ((SZ_16K, SZ_4K), (SZ_16K, SZ_2M),
                         (SZ_64K, SZ_16K), (SZ_64K, SZ_1G)):
        pt = LpaeTable(granule, 48, 48, 1, "v5.4")
        refused(pt, "EINVAL", f"{bad:#x}", lambda: pt.map(0, 0, bad))
        refused(pt, "EINVAL", f"{bad:#x}", lambda: pt.unmap(0, bad))


# ------------------------------------------------------------------ EEXIST
@pytest.mark.parametrize("kernel", ERAS)
def test_eexist_page_over_page(kernel):
    pt = populated(kernel)
    e = refused(pt, "EEXIST", "0x1000",
                lambda: pt.map(0x1000, 0x9000, SZ_4K, RW))
    assert "already mapped" in e.message


@pytest.mark.parametrize("kernel", ERAS)
def test_eexist_page_inside_block(kernel):
    pt = populated(kernel)
    e = refused(pt, "EEXIST", "0x40000000",
                lambda: pt.map(SZ_1G + 0x5000, 0x9000, SZ_4K, RW))
    assert "inside a 2 MiB block" in e.message
    refused(pt, "EEXIST", "0x80000000",
            lambda: pt.map(2 * SZ_1G + SZ_2M, 0, SZ_2M, RW))


@pytest.mark.parametrize("kernel", ERAS)
def test_eexist_block_over_block(kernel):
    pt = populated(kernel)
    refused(pt, "EEXIST", "0x40000000",
            lambda: pt.map(SZ_1G, 0, SZ_2M, RW))
    refused(pt, "EEXIST", "0x80000000",
            lambda: pt.map(2 * SZ_1G, 0, SZ_1G, RW))


@pytest.mark.parametrize("kernel", ERAS)
def test_eexist_last_page_of_count(kernel):
    """A count > 1 map whose last page collides is refused as a whole:
    none of the first pages appear."""
    pt = populated(kernel)
    # four pages from 0xD000: the fourth, 0x10000, is mapped already
    pt.map(0x10000, 0x77000, SZ_4K, RW)
    refused(pt, "EEXIST", "0x10000",
            lambda: pt.map(0xD000, 0x20000, SZ_4K, RW, count=4))
    for a in (0xD000, 0xE000, 0xF000):
        assert pt.iova_to_phys(a) == 0
    # a 2M run whose last block falls inside the 1G block at 2G
    refused(pt, "EEXIST", "0x80000000",
            lambda: pt.map(2 * SZ_1G - 2 * SZ_2M, 0, SZ_2M, RW, count=3))
    assert pt.iova_to_phys(2 * SZ_1G - 2 * SZ_2M) == 0


@pytest.mark.parametrize("kernel", ERAS)
def test_einval_checked_before_eexist(kernel):
    """EEXIST is only judged on valid input: a bad size is EINVAL even
    where a page is mapped."""
    pt = populated(kernel)
    refused(pt, "EINVAL", "0x2000", lambda: pt.map(0x1000, 0, 0x2000, RW))


# ------------------------------------------------------------- unmap zero
@pytest.mark.parametrize("kernel", ERAS)
def test_unmap_never_mapped_returns_zero(kernel):
    """__arm_lpae_unmap: an empty entry on the way means 0 bytes, and no
    flush op; on an empty table and next to live mappings alike."""
    pt = LpaeTable(SZ_4K, 48, 48, 1, kernel)
    assert pt.unmap(0x1000, SZ_4K) == 0
    assert pt.unmap(SZ_1G, SZ_1G) == 0
    assert pt.unmap(SZ_2M, SZ_2M, count=3) == 0
    assert pt.tlb.calls == []
    pt = populated(kernel)
    before = pt.snapshot()
    calls = list(pt.tlb.calls)
    assert pt.unmap(0x5000, SZ_4K) == 0             # same table, empty slot
    assert pt.unmap(3 * SZ_1G, SZ_1G) == 0          # empty level-1 slot
    assert pt.unmap(SZ_1G + 4 * SZ_2M, SZ_2M) == 0  # empty level-2 slot
    assert pt.snapshot() == before
    assert pt.tlb.calls == calls
    assert pt.warnings == []


# ------------------------------------------------------------ constructor
@pytest.mark.parametrize("kwargs,fragment", [
    (dict(granule=0x2000), "0x2000"),
    (dict(granule=SZ_1G), "0x40000000"),
    (dict(ias=31), "ias 31"),
    (dict(ias=49), "ias 49"),
    (dict(oas=31), "oas 31"),
    (dict(oas=52), "oas 52"),
    (dict(ias="48"), "ias '48'"),
    (dict(stage=3), "stage 3"),
    (dict(stage=0), "stage 0"),
    (dict(kernel="v5.10"), "'v5.10'"),
    (dict(kernel="6.13"), "'6.13'"),
])
def test_constructor_errors(kwargs, fragment):
    with pytest.raises(ValueError) as exc:
        LpaeTable(**kwargs)
    assert fragment in str(exc.value)


@pytest.mark.parametrize("kernel", ["v4.20", "v5.4", "v6.12", "v6.13"])
def test_no_access_check_order(kernel):
    """arm_lpae_map (v4.20, v5.4) returns 0 for a prot without READ or
    WRITE before any other check; arm_lpae_map_pages (v6.11 on) checks the
    range first, then refuses it with EINVAL."""
    from iommu_viz.pgtable.common import PgtableError
    pt = LpaeTable(kernel=kernel)
    pt.map(0x1000, 0x1000, 0x1000)
    beyond = 1 << pt.ias
    if kernel in ("v4.20", "v5.4"):
        assert pt.map(beyond, 0x1000, 0x1000, prot=0) == 0
        assert pt.map(0x1000, 0x2000, 0x1000, prot=0) == 0   # no EEXIST
        assert pt.map(0x1001, 0x2000, 0x1000, prot=0) == 0   # nor EINVAL
    else:
        with pytest.raises(PgtableError) as e:
            pt.map(beyond, 0x1000, 0x1000, prot=0)
        assert e.value.errno == "ERANGE"
        with pytest.raises(PgtableError, match="grants neither") as e:
            pt.map(0x1000, 0x2000, 0x1000, prot=0)
        assert e.value.errno == "EINVAL"
    assert pt.iova_to_phys(0x1000) == 0x1000
