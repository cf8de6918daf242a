"""What the conformance run (conformance/, ``make conformance``) found in
the model and the fixes, one test each, checked against the behaviour of
the kernel's io-pgtable code of Debian's linux-source-6.1 and -6.12."""

from __future__ import annotations

import pytest

from iommu_viz import LpaeTable, V7sTable, SZ_4K, SZ_2M
from iommu_viz.pgtable.common import (ERAS, KERNELS, KernelEra, PgtableError,
                                      check_kernel, era, era_at_least)

SZ_1G = 1 << 30


class Gather:
    def __init__(self, queued=False):
        self.queued = queued


def leaves(pt):
    return [(iova, size, pte) for iova, _, size, _, pte in pt.mappings()]


@pytest.mark.parametrize("kernel", ["v6.1", "v6.12"])
def test_split_unmaps_every_page_of_the_count(kernel):
    """arm_lpae_split_blk_unmap (v5.14+) leaves out min(pgcount, rest of
    the table) entries and calls tlb_add_page for each."""
    pt = LpaeTable(kernel=kernel)
    pt.map(0x200000, 0x80000000, SZ_2M)
    g = Gather()
    assert pt.unmap(0x201000, SZ_4K, g, count=2) == 2 * SZ_4K
    assert pt.tlb.calls == [("tlb_add_page", g, 0x201000, SZ_4K),
                            ("tlb_add_page", g, 0x202000, SZ_4K)]
    assert pt.iova_to_phys(0x201000) == pt.iova_to_phys(0x202fff) == 0
    assert pt.iova_to_phys(0x203000) == 0x80003000
    assert len(leaves(pt)) == 510


def test_split_count_stops_at_the_end_of_the_new_table():
    pt = LpaeTable(kernel="v6.12")
    pt.map(0x200000, 0x80000000, SZ_2M)
    pt.map(0x400000, 0x90000000, SZ_4K)
    g = Gather()
    # 3 pages from the block's last page: the split takes one; the next
    # call's run unmaps the page at 0x400000 and stops at the empty entry
    # after it (WARN), and the call after that finds it empty (WARN)
    assert pt.unmap(0x3ff000, SZ_4K, g, count=3) == 2 * SZ_4K
    assert [c[2] for c in pt.tlb.calls] == [0x3ff000, 0x400000]
    assert pt.kernel_warnings == [("__arm_lpae_unmap", "empty")] * 2


@pytest.mark.parametrize("count", [1, 2])
def test_block_over_a_table_frees_the_table(count):
    """arm_lpae_init_pte (v6.x): a table where the block goes is unmapped
    (walk flush, freed) and the block installed."""
    pt = LpaeTable(kernel="v6.12")
    pt.map(0x1000, 0x5000, SZ_4K)
    assert pt.map(0, 0x40000000, SZ_1G, count=count) == count * SZ_1G
    assert pt.tlb.calls == [("tlb_flush_walk", 0, SZ_1G, SZ_4K)]
    assert pt.iova_to_phys(0x1000) == 0x40001000
    assert pt.table_count == 2


@pytest.mark.parametrize("cls", [LpaeTable, V7sTable])
def test_iova_to_phys_above_ias_uses_the_low_bits(cls):
    """arm_lpae_iova_to_phys / arm_v7s_iova_to_phys do not check ias: each
    level's index masks the iova. The hardware walk still faults."""
    pt = cls(ias=32, kernel="v6.12")
    pt.map(0x1000, 0x7000, SZ_4K)
    assert pt.iova_to_phys((1 << 32) | 0x1234) == 0x7234
    assert pt.translate((1 << 32) | 0x1234) is None


def test_fast_paths_check_the_page_size():
    """A 512G level-0 entry is no page size of a 4K table: map and unmap of
    one page refuse it like any other size (EINVAL), table unchanged."""
    pt = LpaeTable(kernel="v6.12")
    for call in (lambda: pt.map(0, 0, 1 << 39), lambda: pt.unmap(0, 1 << 39)):
        with pytest.raises(PgtableError) as e:
            call()
        assert e.value.errno == "EINVAL" and "0x8000000000" in str(e.value)
    assert pt.table_count == 1 and not leaves(pt)


def test_a_run_stops_at_the_end_of_a_concatenated_pgd_page():
    """arm_lpae_max_entries: in a concatenated stage-2 pgd (here 2 pages of
    512 entries) one unmap_pages call ends at its page's end, so the next
    call starts afresh and WARNs once at the empty entry."""
    pt = LpaeTable(stage=2, ias=40, kernel="v6.12")
    assert pt.concatenated and pt.pgd_entries == 1024
    pt.map(511 * SZ_1G, 0, SZ_1G)
    assert pt.unmap(511 * SZ_1G, SZ_1G, Gather(), count=3) == SZ_1G
    assert pt.kernel_warnings == [("__arm_lpae_unmap", "empty")]


def test_unmap_of_nothing_records_the_kernel_warn():
    pt = LpaeTable(kernel="v6.12")
    assert pt.unmap(0x1000, SZ_4K) == 0
    assert pt.kernel_warnings == [("__arm_lpae_unmap", "empty")]
    assert pt.warnings == []      # a learner's list: only v6.13's refusal


def test_v7s_unmap_run_warns_again_when_the_core_retries():
    """arm_v7s_unmap_pages stops at the first invalid entry (one WARN) and
    returns what it unmapped; __iommu_unmap calls again from there, which
    WARNs again and returns 0."""
    pt = V7sTable(kernel="v6.12")
    pt.map(0, 0x7000, SZ_4K)
    assert pt.unmap(0, SZ_4K, count=3) == SZ_4K
    assert pt.kernel_warnings == [("__arm_v7s_unmap", "empty")] * 2


def test_v6_1_unmaps_entry_by_entry():
    """v6.1's __arm_lpae_unmap: each leaf goes to the gather as it is
    cleared, even without one (NULL is not queued); a table is walk-flushed
    and freed without an add_page. v6.12 adds pages only for a gather, for
    every entry of the run, tables included."""
    calls = {}
    for kernel in ("v6.1", "v6.12"):
        pt = LpaeTable(kernel=kernel)
        pt.map(0, 0x40000000, SZ_2M)
        pt.map(SZ_2M + SZ_4K, 0x5000, SZ_4K)
        assert pt.unmap(0, SZ_2M, None, count=2) == 2 * SZ_2M
        calls[kernel, None] = pt.tlb.calls
        pt = LpaeTable(kernel=kernel)
        pt.map(0, 0x40000000, SZ_2M)
        pt.map(SZ_2M + SZ_4K, 0x5000, SZ_4K)
        g = Gather()
        pt.unmap(0, SZ_2M, g, count=2)
        calls[kernel, "g"] = [c[:1] + c[2:] if c[0] == "tlb_add_page" else c
                              for c in pt.tlb.calls]
    walk = ("tlb_flush_walk", SZ_2M, SZ_2M, SZ_4K)
    assert calls["v6.1", None] == [("tlb_add_page", None, 0, SZ_2M), walk]
    assert calls["v6.12", None] == [walk]
    assert calls["v6.1", "g"] == [("tlb_add_page", 0, SZ_2M), walk]
    assert calls["v6.12", "g"] == [walk, ("tlb_add_page", 0, SZ_2M),
                                   ("tlb_add_page", SZ_2M, SZ_2M)]


def test_one_record_per_era():
    assert list(KERNELS) == list(ERAS) == ["v4.20", "v5.4", "v6.1", "v6.12",
                                           "v6.13"]
    assert all(isinstance(e, KernelEra) for e in ERAS.values())
    assert check_kernel("v6.1") == "v6.1"
    assert era("v4.20").split_syncs_itself and not era("v5.4").split_syncs_itself
    assert [k for k in ERAS if ERAS[k].splits_blocks] == ["v4.20", "v5.4",
                                                          "v6.1", "v6.12"]
    assert not era("v6.1").unmap_run_first and era("v6.12").unmap_run_first
    assert era("v6.1").noaccess_einval and not era("v5.4").noaccess_einval
    assert era_at_least("v6.1", (5, 15)) and not era_at_least("v6.1", (6, 6))
    with pytest.raises(ValueError, match="v6.1"):
        era("v6.2")
    with pytest.raises(Exception):
        era("v6.1").pages_api = False       # frozen
