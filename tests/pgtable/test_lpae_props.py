"""Hypothesis properties of the LPAE model against a flat oracle.

The oracle is a plain dictionary of leaves, ``iova -> (size, paddr,
prot)``, that knows nothing of tables. Its rules are the kernel's, stated
on mappings rather than on descriptors:

* map (arm_lpae_map / arm_lpae_map_pages, __arm_lpae_map,
  arm_lpae_init_pte): a page-size slot that lies inside, or is, an
  existing leaf is refused with -EEXIST; smaller leaves inside the slot
  (a table at the slot's level) are silently unmapped and the table is
  replaced by the block. The model refuses a multi-page call as a whole.
* unmap (__arm_lpae_unmap): every leaf inside the range goes; a leaf that
  contains the range is split (arm_lpae_split_blk_unmap: v4.20, v5.4,
  each level replaced by a table of next-level leaves with the same
  attributes) or, in v6.13 (33729a5fc0ca), left alone with the return
  value 0. The return value is the size when anything was mapped in the
  range; when nothing was, the kernel returns 0 or, if an empty table is
  still linked at that level, the size; either way nothing changes.

After every step the model's iova_to_phys on every probe address and its
mappings() must agree with the oracle, and snapshot() must equal a
snapshot rebuilt from scratch.
"""

import copy

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iommu_viz.pgtable.common import (
    IOMMU_CACHE, IOMMU_MMIO, IOMMU_NOEXEC, IOMMU_PRIV, IOMMU_READ,
    IOMMU_WRITE, SZ_1G, SZ_2M, SZ_4K, SZ_16K, SZ_32M, SZ_64K, SZ_512M,
    PgtableError, PgtableSnapshot, TableSnapshot,
)
from iommu_viz.pgtable.lpae import LpaeTable

ERAS = ["v4.20", "v5.4", "v6.13"]
PARTIAL_WARNING = "Unmap of a partial large IOPTE is not allowed"

# Addresses: a GiB base, then for each page size below the largest a
# multiplier chosen among the first, second and last slot of its parent,
# so that maps and unmaps collide often.
LAYOUT = {
    # granule: [(size, multipliers)] from the largest size down
    SZ_4K: [(SZ_1G, [0]), (SZ_2M, [0, 1, 511]), (SZ_4K, [0, 1, 511])],
    SZ_16K: [(SZ_32M, [0, 1, 31]), (SZ_16K, [0, 1, 2047])],
    SZ_64K: [(SZ_512M, [0, 1]), (SZ_64K, [0, 1, 8191])],
}
GIB_BASES = [0, SZ_1G, 3 * SZ_1G]
PA_BASES = [0x40000000, 0x8000000000, 0x100000000]
PROTS = [IOMMU_READ, IOMMU_WRITE, IOMMU_READ | IOMMU_WRITE,
         IOMMU_READ | IOMMU_WRITE | IOMMU_CACHE,
         IOMMU_READ | IOMMU_NOEXEC, IOMMU_READ | IOMMU_WRITE | IOMMU_MMIO,
         IOMMU_READ | IOMMU_PRIV, IOMMU_CACHE]      # the last maps nothing


class Oracle:
    """Leaves by iova; splitting follows the table levels only in that a
    block splits into entries of the next level's size."""

    def __init__(self, pt):
        self.bpl = pt.bits_per_level
        # v6.11 (6093cd582f8e): a map granting no access is refused
        self.no_access = "EINVAL" if pt.kernel in ("v6.12", "v6.13") else 0
        self.sizes = sorted(
            1 << b for b in range(64) if pt.pgsize_bitmap >> b & 1)
        self.leaves = {}

    def covering(self, addr):
        for size in self.sizes:
            base = addr & ~(size - 1)
            leaf = self.leaves.get(base)
            if leaf and leaf[0] == size:
                return base, leaf
        return None

    def inside(self, start, size):
        return [b for b, (s, _, _) in self.leaves.items()
                if start <= b and b + s <= start + size]

    def lookup(self, addr):
        hit = self.covering(addr)
        if not hit:
            return 0
        base, (_, pa, _) = hit
        return pa + (addr - base)

    def map(self, iova, pa, size, prot, count):
        """Returns 'EEXIST'/'EINVAL' or the bytes mapped; all or nothing."""
        if not prot & (IOMMU_READ | IOMMU_WRITE):
            return self.no_access
        for k in range(count):
            hit = self.covering(iova + k * size)
            if hit and hit[1][0] >= size:
                return "EEXIST"
        for k in range(count):
            slot = iova + k * size
            for b in self.inside(slot, size):       # table -> block
                del self.leaves[b]
            self.leaves[slot] = (size, pa + k * size, prot)
        return size * count

    def unmap(self, iova, size, kernel):
        """Returns (possible return values, warned)."""
        hit = self.covering(iova)
        if hit and hit[1][0] > size:
            if kernel == "v6.13":
                return {0}, True
            self._split(hit[0], hit[1], iova, size)
            return {size}, False
        gone = self.inside(iova, size)
        for b in gone:
            del self.leaves[b]
        return ({size} if gone else {0, size}), False

    def _split(self, base, leaf, iova, size):
        bsize, pa, prot = leaf
        self.leaves.pop(base, None)
        child = bsize >> self.bpl
        for cb in range(base, base + bsize, child):
            if cb <= iova < cb + child:
                if child > size:
                    self._split(cb, (child, pa + cb - base, prot), iova,
                                size)
            else:
                self.leaves[cb] = (child, pa + cb - base, prot)


def fresh_snapshot(pt):
    """A snapshot rebuilt from every live table, with no cache."""
    tables = {pa: TableSnapshot(pa, t.level, t.iova, tuple(t.ptes))
              for pa, t in pt._tables.items()}
    return PgtableSnapshot("lpae", pt.stage, pt.granule,
                           tuple(range(pt.start_level, 4)), pt.pgd.paddr,
                           tables)


def leaf_type(pt, level):
    return 3 if level == 3 else 1


def check_agrees(pt, oracle, probes):
    for a in probes:
        assert pt.iova_to_phys(a) == oracle.lookup(a), hex(a)
    got = [(iova, pa, size, pte) for iova, pa, size, _lvl, pte
           in pt.mappings()]
    want = []
    for b in sorted(oracle.leaves):
        size, pa, prot = oracle.leaves[b]
        level = pt.level_of_size(size)
        pte = pt.prot_to_pte(prot) | leaf_type(pt, level) | pa
        want.append((b, pa, size, pte))
    assert got == want


@st.composite
def scenario(draw, granule=None):
    granule = granule or draw(st.sampled_from([SZ_4K, SZ_16K, SZ_64K]))
    stage = draw(st.sampled_from([1, 2]))
    ias = draw(st.sampled_from([36, 40, 48]))
    layout = LAYOUT[granule]
    sizes = [size for size, _ in layout]

    def address(level_idx):
        """A fresh address among the layout's few slots."""
        a = draw(st.sampled_from(GIB_BASES))
        for size, mults in layout[:level_idx + 1]:
            a += draw(st.sampled_from(mults)) * size
        return a

    def related(level_idx, near):
        """An address that overlaps an earlier map: the slot of this
        size containing it, or a slot inside it."""
        iova, msize = near
        size = sizes[level_idx]
        if size >= msize:
            return iova & ~(size - 1)
        for s, mults in layout[sizes.index(msize) + 1:level_idx + 1]:
            iova += draw(st.sampled_from(mults)) * s
        return iova

    ops, mapped = [], []
    for _ in range(draw(st.integers(1, 10))):
        level_idx = draw(st.integers(0, len(layout) - 1))
        size = sizes[level_idx]
        if mapped and draw(st.integers(0, 3)):
            iova = related(level_idx, draw(st.sampled_from(mapped)))
        else:
            iova = address(level_idx)
        if draw(st.integers(0, 4)) < 3:
            pa = draw(st.sampled_from(PA_BASES)) + iova
            ops.append(("map", iova, pa, size, draw(st.sampled_from(PROTS)),
                        draw(st.sampled_from([1, 1, 1, 2, 3]))))
            mapped.append((iova, size))
        else:
            ops.append(("unmap", iova, size))
    return granule, stage, ias, ops


def probes_for(ops):
    """Every touched page: first, second and last page of each op's
    range, plus one byte before and after it."""
    seen = set()
    for op in ops:
        iova, size = op[1], op[3] if op[0] == "map" else op[2]
        count = op[5] if op[0] == "map" else 1
        end = iova + size * count
        for a in (iova, iova + 0x10, end - 8, end, iova + size // 2 + 4,
                  max(iova - 8, 0)):
            seen.add(a)
    return sorted(seen)


def run_against_oracle(kernel, granule, stage, ias, ops):
    pt = LpaeTable(granule=granule, ias=ias, oas=48, stage=stage,
                   kernel=kernel)
    oracle = Oracle(pt)
    probes = probes_for(ops)
    history = []
    warnings = 0
    for op in ops:
        if op[0] == "map":
            _, iova, pa, size, prot, count = op
            want = oracle.map(iova, pa, size, prot, count)
            before = pt.snapshot()
            try:
                got = pt.map(iova, pa, size, prot, count)
            except PgtableError as exc:
                assert exc.errno == want, exc
                assert pt.snapshot() == before
            else:
                assert got == want
        else:
            _, iova, size = op
            allowed, warned = oracle.unmap(iova, size, kernel)
            got = pt.unmap(iova, size)
            assert got in allowed
            warnings += warned
        assert len(pt.warnings) == warnings
        check_agrees(pt, oracle, probes)
        snap = pt.snapshot()
        assert snap == fresh_snapshot(pt)
        history.append((snap, fresh_snapshot(pt)))
    # copy on write: no later step changed an earlier snapshot
    for snap, frozen in history:
        assert snap == frozen
    return pt


PROFILE = settings(max_examples=150, deadline=None, derandomize=True,
                   suppress_health_check=[HealthCheck.too_slow])


@PROFILE
@given(scenario())
def test_v420_against_oracle(case):
    run_against_oracle("v4.20", *case)


@PROFILE
@given(scenario())
def test_v54_against_oracle(case):
    run_against_oracle("v5.4", *case)


@PROFILE
@given(scenario())
def test_v613_against_oracle(case):
    run_against_oracle("v6.13", *case)


@settings(max_examples=120, deadline=None, derandomize=True)
@given(case=scenario(), kernel=st.sampled_from(ERAS),
       last=st.integers(0, 9))
def test_map_then_unmap_restores_empty(case, kernel, last):
    """Mapping a range on an empty table and unmapping exactly that range
    leaves nothing translating, whatever was mapped before it was torn
    down the same way."""
    granule, stage, ias, ops = case
    maps = [op for op in ops if op[0] == "map" and op[4] & 3]
    pt = LpaeTable(granule=granule, ias=ias, oas=48, stage=stage,
                   kernel=kernel)
    probes = probes_for(maps)
    for op in maps[:last + 1]:
        _, iova, pa, size, prot, count = op
        try:
            assert pt.map(iova, pa, size, prot, count) == size * count
        except PgtableError as exc:
            assert exc.errno == "EEXIST"
            continue
        for k in range(count):
            assert pt.iova_to_phys(iova + k * size + 5) == pa + k * size + 5
        assert pt.unmap(iova, size, count=count) == size * count
        assert all(pt.iova_to_phys(a) == 0 for a in probes)
        assert list(pt.mappings()) == []
        assert pt.snapshot() == fresh_snapshot(pt)
    assert pt.warnings == []


@settings(max_examples=60, deadline=None, derandomize=True)
@given(scenario(granule=SZ_4K), st.sampled_from(ERAS))
def test_snapshot_matches_deepcopy(case, kernel):
    """Snapshots taken step by step equal the snapshot of a deep copy of
    the table whose snapshot cache has been dropped."""
    granule, stage, ias, ops = case
    pt = LpaeTable(granule=granule, ias=ias, oas=48, stage=stage,
                   kernel=kernel)
    for op in ops:
        try:
            if op[0] == "map":
                pt.map(op[1], op[2], op[3], op[4], op[5])
            else:
                pt.unmap(op[1], op[2])
        except PgtableError:
            pass
        clone = copy.deepcopy(pt)
        clone._snap_cache = {}
        clone._dirty = set(clone._tables)
        assert pt.snapshot() == clone.snapshot()


def test_oracle_split_rule_by_hand():
    """The oracle's split rule on the case worked out by hand: 4K
    granule, a 1G block, 4K unmapped at 1G + 2M + 4K (v5.4): 511 2M
    blocks, 511 4K pages, and the model agrees."""
    pt = LpaeTable(SZ_4K, 48, 48, 1, "v5.4")
    oracle = Oracle(pt)
    rw = IOMMU_READ | IOMMU_WRITE
    oracle.map(SZ_1G, 0x80000000, SZ_1G, rw, 1)
    pt.map(SZ_1G, 0x80000000, SZ_1G, rw)
    target = SZ_1G + SZ_2M + SZ_4K
    assert oracle.unmap(target, SZ_4K, "v5.4") == ({SZ_4K}, False)
    assert pt.unmap(target, SZ_4K) == SZ_4K
    sizes = sorted(s for s, _, _ in oracle.leaves.values())
    assert sizes == [SZ_4K] * 511 + [SZ_2M] * 511
    check_agrees(pt, oracle, [target, target - 1, target + SZ_4K,
                              SZ_1G, 2 * SZ_1G - 1])
    assert pt.tlb.calls == [("tlb_add_page", None, target, SZ_4K)]


@pytest.mark.parametrize("kernel", ERAS)
def test_block_replaces_table_of_pages(kernel):
    """arm_lpae_init_pte: a block mapped over a table whose pages are
    mapped unmaps them (walk flush, table freed) instead of -EEXIST."""
    pt = LpaeTable(SZ_4K, 48, 48, 1, kernel)
    rw = IOMMU_READ | IOMMU_WRITE
    pt.map(SZ_2M + SZ_4K, 0x1000, SZ_4K, rw)
    tables = pt.table_count
    assert pt.map(SZ_2M, 0x80000000, SZ_2M, rw) == SZ_2M
    assert pt.table_count == tables - 1
    assert pt.iova_to_phys(SZ_2M + SZ_4K) == 0x80001000
    if kernel == "v4.20":
        assert pt.tlb.calls == [("tlb_add_flush", SZ_2M, SZ_2M, SZ_4K,
                                 False), ("tlb_sync",)]
    else:
        assert pt.tlb.calls == [("tlb_flush_walk", SZ_2M, SZ_2M, SZ_4K)]
