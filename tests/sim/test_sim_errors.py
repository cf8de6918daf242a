"""Bad input: every refused call raises a clear error naming the value and
leaves the run (events, ops, last State) exactly as it was."""

import pytest

from iommu_viz.pgtable.common import SZ_2M, SZ_4K
from iommu_viz.sim import ApiError, Simulation

BLOCK = 0x40000000
PAGE = 0x40001000


def _sim(**kw):
    sim = Simulation(**kw)
    sim.map(BLOCK, 0x80000000, SZ_2M)
    sim.access(PAGE)
    return sim


def _snapshot(sim):
    return len(sim.events), [dict(op) for op in sim.ops], sim.state, \
        len(sim.accesses)


def _unchanged(sim, before):
    assert _snapshot(sim)[0] == before[0]
    assert sim.ops == before[1]
    assert sim.state is before[2]
    assert len(sim.accesses) == before[3]


def test_unmap_never_mapped_returns_0_no_events():
    for fast in (False, True):
        sim = _sim()
        g = sim.new_gather() if fast else None
        before = _snapshot(sim)
        got = (sim.unmap_fast(0x50000000, SZ_4K, g) if fast
               else sim.unmap(0x50000000, SZ_4K))
        assert got == 0
        _unchanged(sim, before)


@pytest.mark.parametrize("iova,size,bad", [
    (0x40001001, SZ_4K, "0x40001001"),
    (0x40001000, 0x1800, "0x1800"),
    (0x40000800, SZ_4K, "0x40000800"),
])
@pytest.mark.parametrize("call", ["unmap", "unmap_fast", "map"])
def test_unaligned_raises_naming_value(call, iova, size, bad):
    sim = _sim()
    g = sim.new_gather()
    before = _snapshot(sim)
    with pytest.raises(ApiError) as ei:
        if call == "unmap":
            sim.unmap(iova, size)
        elif call == "unmap_fast":
            sim.unmap_fast(iova, size, g)
        else:
            sim.map(iova + 0x10000000, 0x90000000, size)
    assert ei.value.errno == "EINVAL"
    want = bad if call != "map" or bad == "0x1800" else \
        f"0x{int(bad, 16) + 0x10000000:x}"
    assert want in str(ei.value)
    assert "4 KiB" in str(ei.value)
    _unchanged(sim, before)


def test_zero_size_refused():
    sim = _sim()
    before = _snapshot(sim)
    with pytest.raises(ApiError, match="size 0x0"):
        sim.unmap(PAGE, 0)
    with pytest.raises(ApiError, match="size 0x0"):
        sim.map(0x50000000, 0x90000000, 0)
    _unchanged(sim, before)


def test_unaligned_paddr_on_map():
    sim = _sim()
    before = _snapshot(sim)
    with pytest.raises(ApiError, match="0x90000800"):
        sim.map(0x50000000, 0x90000800, SZ_4K)
    _unchanged(sim, before)


def test_foreign_gather_refused():
    sim = _sim()
    other = Simulation()
    g = other.new_gather()
    before = _snapshot(sim)
    with pytest.raises(ApiError) as ei:
        sim.iotlb_sync(g)
    assert ei.value.errno == "EINVAL"
    assert "#1" in str(ei.value) and "new_gather" in str(ei.value)
    _unchanged(sim, before)
    with pytest.raises(ApiError):
        sim.unmap_fast(PAGE, SZ_4K, g)
    _unchanged(sim, before)
    with pytest.raises(ApiError):
        sim.iotlb_sync("not a gather")
    _unchanged(sim, before)


@pytest.mark.parametrize("ms", [-1, -0.001, "5", None])
def test_advance_refuses_bad_time(ms):
    sim = _sim()
    before = _snapshot(sim)
    with pytest.raises(ValueError) as ei:
        sim.advance(ms)
    assert repr(ms) in str(ei.value)
    _unchanged(sim, before)
    assert sim.now_us == 0


@pytest.mark.parametrize("iova", [1 << 48, (1 << 48) + 0x1000, 1 << 60])
def test_access_beyond_ias(iova):
    sim = _sim()
    before = _snapshot(sim)
    with pytest.raises(ApiError) as ei:
        sim.access(iova)
    assert f"0x{iova:x}" in str(ei.value)
    assert "48-bit" in str(ei.value)
    _unchanged(sim, before)


def test_access_negative_iova():
    sim = _sim()
    before = _snapshot(sim)
    with pytest.raises(ApiError, match="-4096"):
        sim.access(-4096)
    _unchanged(sim, before)


@pytest.mark.parametrize("iova,size", [
    (BLOCK, SZ_2M),            # the same block
    (PAGE, SZ_4K),             # a page inside the block
    (BLOCK - SZ_4K, 2 * SZ_4K),  # straddles into the block
])
def test_map_over_existing_eexist(iova, size):
    sim = _sim()
    before = _snapshot(sim)
    with pytest.raises(ApiError) as ei:
        sim.map(iova, 0x90000000, size)
    assert ei.value.errno == "EEXIST"
    assert "0x4000" in str(ei.value)
    _unchanged(sim, before)
    # the straddling call must not have mapped its first page either
    assert sim.pt.translate(BLOCK - SZ_4K) is None


@pytest.mark.parametrize("fast", [False, True])
def test_vfio_refuses_partial_unmap(fast):
    sim = _sim(caller="vfio")
    g = sim.new_gather()
    before = _snapshot(sim)
    with pytest.raises(ApiError) as ei:
        if fast:
            sim.unmap_fast(PAGE, SZ_4K, g)
        else:
            sim.unmap(PAGE, SZ_4K)
    assert ei.value.errno == "EINVAL"
    assert "0x40001000" in str(ei.value) and "0x40000000" in str(ei.value)
    _unchanged(sim, before)
    # a whole mapping may go
    assert sim.unmap(BLOCK, SZ_2M) == SZ_2M


@pytest.mark.parametrize("iova,size", [
    (PAGE, SZ_4K), (BLOCK, SZ_4K), (BLOCK, 2 * SZ_2M)])
def test_dma_refuses_partial_buffer(iova, size):
    sim = _sim(caller="dma")
    before = _snapshot(sim)
    with pytest.raises(ApiError) as ei:
        sim.unmap(iova, size)
    assert ei.value.errno == "EINVAL"
    assert f"0x{iova:x}" in str(ei.value)
    _unchanged(sim, before)
    assert sim.unmap(BLOCK, SZ_2M) == SZ_2M


@pytest.mark.parametrize("kw,bad", [
    (dict(personality="paranoid"), "'paranoid'"),
    (dict(bbml=3), "3"),
    (dict(bbml="2"), "'2'"),
    (dict(caller="gpu"), "'gpu'"),
    (dict(kernel="v5.10"), "'v5.10'"),
    (dict(kernel="5.4"), "'5.4'"),
    (dict(tlb_entries=0), "0"),
    (dict(fmt="x86"), "'x86'"),
])
def test_constructor_refuses(kw, bad):
    with pytest.raises(ValueError) as ei:
        Simulation(**kw)
    assert bad in str(ei.value)
    assert list(kw)[0] in str(ei.value)


# ---------------------------------------------------------------- prot 0
# A map granting neither IOMMU_READ nor IOMMU_WRITE. v4.20/v5.4:
# arm_lpae_map / arm_v7s_map return 0 before any other check ("nothing to
# do"), so iommu_map succeeds and maps nothing. v6.11 on (6093cd582f8e):
# map_pages returns -EINVAL after its range checks, and iommu_map fails.
NO_ACCESS = [0, 0x4]                   # nothing; IOMMU_CACHE alone
OLD_ERAS = ["v4.20", "v5.4"]
NEW_ERAS = ["v6.12", "v6.13"]
FMTS = [("lpae", SZ_2M), ("v7s", 0x100000)]


def _prot_sim(kernel, fmt):
    sim = Simulation(kernel=kernel, fmt=fmt)
    sim.map(0x20000000, 0x80000000, SZ_4K)
    return sim


@pytest.mark.parametrize("fmt,size", FMTS)
@pytest.mark.parametrize("prot", NO_ACCESS)
@pytest.mark.parametrize("kernel", NEW_ERAS)
def test_no_access_map_refused_from_v6_11(kernel, prot, fmt, size):
    sim = _prot_sim(kernel, fmt)
    before = _snapshot(sim)
    tables = sim.pt.snapshot()
    with pytest.raises(ApiError) as ei:
        sim.map(BLOCK, 0x80000000, size, prot)
    assert ei.value.errno == "EINVAL"
    assert f"prot {prot:#x} grants neither IOMMU_READ nor IOMMU_WRITE" \
        in str(ei.value)
    _unchanged(sim, before)
    assert sim.pt.snapshot() == tables
    # the range checks come first in map_pages
    with pytest.raises(ApiError) as ei:
        sim.map(1 << sim.pt.ias, 0x80000000, size, prot)
    assert ei.value.errno == "ERANGE"
    _unchanged(sim, before)


@pytest.mark.parametrize("fmt,size", FMTS)
@pytest.mark.parametrize("prot", NO_ACCESS)
@pytest.mark.parametrize("kernel", OLD_ERAS)
def test_no_access_map_maps_nothing_before_v6_11(kernel, prot, fmt, size):
    sim = _prot_sim(kernel, fmt)
    tables = sim.pt.snapshot()
    assert sim.map(BLOCK, 0x80000000, size, prot) == 0
    assert sim.ops[-1] == dict(op="map", iova=BLOCK, paddr=0x80000000,
                               size=size, prot=prot)
    assert [e.kind for e in sim.events if e.op == len(sim.ops) - 1] == \
        ["call", "return"]
    assert sim.pt.snapshot() == tables
    assert sim.access(BLOCK).outcome == "fault"
    # "nothing to do" is the first check: neither an existing mapping
    # nor an iova beyond the input address size is looked at
    assert sim.map(0x20000000, 0x90000000, SZ_4K, prot) == 0
    assert sim.map(1 << sim.pt.ias, 0x80000000, size, prot) == 0
    assert sim.pt.snapshot() == tables


@pytest.mark.parametrize("kernel", OLD_ERAS + NEW_ERAS)
def test_prot_not_an_int_refused_unchanged(kernel):
    sim = _prot_sim(kernel, "lpae")
    before = _snapshot(sim)
    for bad in ("rw", None, 3.0, True):
        with pytest.raises(ApiError, match="must be an integer"):
            sim.map(BLOCK, 0x80000000, SZ_2M, bad)
        _unchanged(sim, before)
