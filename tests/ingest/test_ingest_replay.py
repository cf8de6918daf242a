"""Replay tests: a realistic VM start (guest RAM mapped in 4K to 2M pieces,
then a partial unmap) checked against the tree and the summary in each
kernel era, the same log in the other formats, a property test against a
page-by-page oracle, and the bookkeeping of refused and unmatched requests."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from iommu_viz.ingest import replay
from iommu_viz.ingest.progress import TextBar, make_progress
from iommu_viz.ingest.replay import format_mappings, mapping_runs

SZ_4K, SZ_2M = 1 << 12, 1 << 21
RAM = 0x40000000
PREFIX = "qemu-kvm-4575 [008] ....... {t:.6f}: "
ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- log writers
def ftrace(ops, ranged=True):
    """ftrace lines for ("map", iova, pa, size) / ("unmap", iova, size,
    unmapped_size) operations, with a header and some noise."""
    out = ["# tracer: nop", "#"]
    t = 438.308478
    for k, op in enumerate(ops):
        t += 0.000013
        p = PREFIX.format(t=t)
        rng = (lambda a, s: f" - 0x{a + s:016x}") if ranged else (lambda a, s: "")
        if op[0] == "map":
            _, a, pa, s = op
            out.append(f"{p}map: IOMMU: iova=0x{a:016x}{rng(a, s)} "
                       f"paddr=0x{pa:016x} size={s}")
        else:
            _, a, s, u = op
            out.append(f"{p}unmap: IOMMU: iova=0x{a:016x}{rng(a, s)} "
                       f"size={s} unmapped_size={u}")
        if k % 5 == 4:
            out.append(p + "kvm_exit: reason EXTERNAL_INTERRUPT rip 0x1 info 0 0")
    return [ln + "\n" for ln in out]


def pieces(iova, pa, size):
    """iommu_pgsize (v5.14+) runs for the 4K/2M/1G bitmap."""
    out = []
    while size:
        pg = SZ_4K
        for cand in (1 << 30, SZ_2M):
            if size >= cand and not (iova | pa) & (cand - 1):
                pg = cand
                break
        n = size // pg
        nxt = {SZ_4K: SZ_2M, SZ_2M: 1 << 30}.get(pg)
        if nxt and not (iova ^ pa) & (nxt - 1):
            off = nxt - ((iova | pa) & (nxt - 1))
            if off + nxt <= size:
                n = off // pg
        out.append((iova, pa, pg, n))
        iova, pa, size = iova + pg * n, pa + pg * n, size - pg * n
    return out


def pr_debug(ops):
    out = []
    for op in ops:
        d = "[  438.3] iommu: "
        if op[0] == "map":
            _, a, pa, s = op
            out.append(f"{d}map: iova 0x{a:x} pa 0x{pa:016x} size 0x{s:x}")
            for pa_, ppa, pg, n in pieces(a, pa, s):
                out.append(f"{d}mapping: iova 0x{pa_:x} pa 0x{ppa:016x} "
                           f"pgsize 0x{pg:x} count {n}")
        else:
            _, a, s, u = op
            out.append(f"{d}unmap this: iova 0x{a:x} size 0x{s:x}")
            if u:
                out.append(f"{d}unmapped: iova 0x{a:x} size 0x{u:x}")
        out.append("[  438.3] kvm: vcpu0 unhandled rdmsr: 0x64e")
    return [ln + "\n" for ln in out]


# ---------------------------------------------------------------- the VM
BLOCK_PA = 0x880000000
VM_MAPS = [
    ("map", RAM, BLOCK_PA, SZ_2M),                        # a hugepage
    # a 2M slot backed by scattered 4K pages: 4K, 8K, 64K, 1M, rest
    ("map", RAM + 0x200000, 0x1_2345_6000, 0x1000),
    ("map", RAM + 0x201000, 0x1_0000_2000, 0x2000),
    ("map", RAM + 0x203000, 0x1_7777_0000, 0x10000),
    ("map", RAM + 0x213000, 0x1_5000_0000, 0x100000),
    ("map", RAM + 0x313000, 0x1_6000_0000, 0x400000 - 0x313000),
    ("map", RAM + 0x400000, 0x8c0000000, 2 * SZ_2M),      # two hugepages
    # contiguous on the host but not 2M aligned there: 512 pages
    ("map", RAM + 0x800000, 0x1_9000_1000, SZ_2M),
]
PARTIAL = ("unmap", RAM + 0x5000, SZ_4K, SZ_4K)            # inside the block
VM = VM_MAPS + [PARTIAL]
TOTAL = 5 * SZ_2M
N4K = (SZ_2M + SZ_2M) // SZ_4K                             # 1024 pages


def _pages(table):
    """{iova: paddr} for every 4K of every leaf."""
    out = {}
    for iova, pa, size, _lvl, _pte in table.mappings():
        for off in range(0, size, SZ_4K):
            out[iova + off] = pa + off
    return out


def test_vm_start_then_partial_unmap_v5_4():
    r = replay(ftrace(VM), kernel="v5.4")
    s = r.summary
    assert (s.events, s.malformed, s.lines) == (len(VM), 0, len(VM) + 3)
    assert s.skipped == 2 + len(VM) // 5
    assert s.map_requests == len(VM_MAPS) and s.unmap_requests == 1
    assert s.pages_mapped == {SZ_4K: N4K, SZ_2M: 3}
    assert s.blocks_split == 1
    assert s.leaves == {SZ_4K: N4K + 511, SZ_2M: 2}
    assert s.peak_mapped == TOTAL and s.mapped == TOTAL - SZ_4K
    assert s.mapped_bytes == TOTAL and s.unmapped_bytes == SZ_4K
    assert s.unmatched_unmaps == s.refused_partial_unmaps == s.rejected == 0
    assert s.log_disagreements == 0
    # the split's invalidation goes to the caller's gather (v5.4)
    assert s.tlb_calls == {"tlb_add_page": 1}
    assert r.problems == [] and r.rejected == []

    # the tree: the block became a table of 511 pages and one hole
    t = r.table
    steps = t.walk(RAM + 0x5000)
    assert [st.kind for st in steps] == ["table", "table", "table", "invalid"]
    assert [st.level for st in steps] == [0, 1, 2, 3]
    assert t.iova_to_phys(RAM + 0x5000) == 0
    assert t.iova_to_phys(RAM + 0x6123) == BLOCK_PA + 0x6123
    assert t.walk(RAM + 0x4000)[-1].kind == "page"
    block_l3 = [m for m in t.mappings() if RAM <= m[0] < RAM + SZ_2M]
    assert len(block_l3) == 511
    assert all(pa == BLOCK_PA + (iova - RAM) for iova, pa, *_ in block_l3)
    # the hugepages stayed blocks, the scattered slot is 4K pages
    assert t.walk(RAM + 0x400000)[-1].kind == "block"
    assert t.walk(RAM + 0x600000)[-1].kind == "block"
    assert t.iova_to_phys(RAM + 0x600010) == 0x8c0200010
    assert t.walk(RAM + 0x900000)[-1].kind == "page"
    assert t.iova_to_phys(RAM + 0x213000) == 0x1_5000_0000

    # before the unmap, the block was whole
    before = r.table_at(len(VM_MAPS))
    assert before.walk(RAM + 0x5000)[-1].kind == "block"
    assert len(_pages(before)) == TOTAL // SZ_4K

    text = str(s)
    assert all(len(ln) <= 72 and ln.isascii() for ln in text.splitlines())
    assert "blocks split               1" in text
    assert "4K x 1024, 2M x 3" in text


def test_vm_start_v6_13_refuses_the_partial_unmap():
    r = replay(ftrace(VM), kernel="v6.13")
    s = r.summary
    assert s.refused_partial_unmaps == 1 and s.blocks_split == 0
    assert s.leaves == {SZ_4K: N4K, SZ_2M: 3}
    assert s.mapped == TOTAL and s.unmapped_bytes == 0
    # the log (from a splitting kernel) says 4096 were unmapped
    assert s.log_disagreements == 1
    assert s.unmatched_unmaps == 0
    assert r.table.walk(RAM + 0x5000)[-1].kind == "block"
    assert r.table.warnings == ["Unmap of a partial large IOPTE is not allowed"]


def test_vm_start_v4_20_split_syncs_itself():
    s = replay(ftrace(VM), kernel="v4.20").summary
    assert s.blocks_split == 1
    assert s.tlb_calls == {"tlb_add_flush": 1, "tlb_sync": 1}


def test_same_vm_in_every_log_format_gives_the_same_table():
    want = replay(ftrace(VM)).table
    for lines in (ftrace(VM, ranged=False), pr_debug(VM)):
        r = replay(lines)
        assert _pages(r.table) == _pages(want)
        assert list(mapping_runs(r.table)) == list(mapping_runs(want))
        s = r.summary
        # a request and its "mapping:" pieces count once
        assert s.map_requests == len(VM_MAPS) and s.unmap_requests == 1
        assert s.pages_mapped == {SZ_4K: N4K, SZ_2M: 3}
        assert s.blocks_split == 1 and s.mapped == TOTAL - SZ_4K


def test_pr_debug_requests_without_pieces_are_replayed():
    # only the "map:" and "unmap this:" dyndbg lines were enabled
    lines = [ln for ln in pr_debug(VM) if " mapping: " not in ln
             and " unmapped: " not in ln]
    r = replay(lines)
    assert _pages(r.table) == _pages(replay(ftrace(VM)).table)
    assert r.summary.pages_mapped == {SZ_4K: N4K, SZ_2M: 3}


def test_map_pages_short_count_is_not_double_mapped():
    lines = ["map: iova 0x1ff000 pa 0x801ff000 size 0x3000",
             "mapping: iova 0x1ff000 pa 0x801ff000 pgsize 0x1000 count 3",
             "mapping: iova 0x200000 pa 0x80200000 pgsize 0x1000 count 2"]
    r = replay(lines, kernel="v6.13")
    assert r.rejected == [] and r.summary.rejected == 0
    assert sorted(_pages(r.table)) == [0x1ff000, 0x200000, 0x201000]
    assert r.summary.map_requests == 1


# ---------------------------------------------------------------- bookkeeping
def test_refused_and_unmatched_requests_are_counted_not_fatal():
    ops = [("map", 0x10000, 0x80000, 0x2000),
           ("map", 0x11000, 0x90000, 0x1000),          # over a live page
           ("map", 0x20800, 0x90000, 0x1000),          # misaligned
           ("unmap", 0x50000, 0x1000, 0),              # nothing there
           ("unmap", 0x10000, 0x4000, 0x2000),         # runs into a hole
           ("map", 0x1ff000000000, 0x80000, 0x2000)]   # high, still 48-bit
    r = replay(ftrace(ops))
    s = r.summary
    assert s.rejected == 2
    lines = [ln for ln, _ in r.rejected]
    assert lines == [4, 5]
    assert "EEXIST" in r.rejected[0][1]
    assert "unaligned: iova 0x20800" in r.rejected[1][1]
    assert s.unmatched_unmaps == 2 and s.unmatched_bytes == 0x1000 + 0x2000
    assert s.log_disagreements == 0
    assert sorted(_pages(r.table)) == [0x1ff000000000, 0x1ff000001000]
    r = replay(ftrace([("map", 1 << 48, 0x80000, 0x1000)]))
    assert r.summary.rejected == 1 and "ERANGE" in r.rejected[0][1]


def test_a_refused_request_leaves_nothing_mapped():
    # 2M + 4K: the block maps, the page collides, iommu_map unmaps the block
    ops = [("map", 0x400000, 0x7000000, 0x1000),
           ("map", 0x200000, 0x8000000, SZ_2M + 0x1000)]
    r = replay(ftrace(ops))
    assert r.summary.rejected == 1
    assert sorted(_pages(r.table)) == [0x400000]
    assert r.summary.mapped == 0x1000 == r.summary.peak_mapped


def test_block_map_over_a_table_of_pages_replaces_it():
    # arm_lpae_init_pte frees a table a block is mapped over
    ops = [("map", 0x200000, 0x80000, 0x3000),
           ("map", 0x200000, 0x9000000, SZ_2M)]
    r = replay(ftrace(ops))
    s = r.summary
    assert s.tables_replaced == 1 and s.rejected == 0
    assert s.mapped == SZ_2M and s.unmapped_bytes == 0x3000
    assert s.leaves == {SZ_2M: 1}
    assert "tables replaced" in str(s)


def test_block_sized_unmap_of_a_table_counts_what_was_there():
    # the kernel reports 2M unmapped when it frees a table of 511 pages
    ops = [("map", 0x200000, 0x9000000, SZ_2M),
           ("unmap", 0x201000, 0x1000, 0x1000),
           ("unmap", 0x200000, SZ_2M, SZ_2M)]
    s = replay(ftrace(ops)).summary
    assert s.mapped == 0 and s.unmapped_bytes == SZ_2M
    assert s.log_disagreements == 0 and s.unmatched_unmaps == 0


def test_device_filter():
    lines = ["map: IOMMU: dev=gpu iova=0x1000 paddr=0x2000 size=4096",
             "map: IOMMU: dev=nic iova=0x1000 paddr=0x3000 size=4096",
             "map: IOMMU: iova=0x5000 paddr=0x3000 size=4096"]
    r = replay(lines, device="nic")
    assert _pages(r.table) == {0x1000: 0x3000}
    assert r.summary.device == "nic" and "device nic" in str(r.summary)
    assert replay(lines).summary.rejected == 1       # gpu and nic collide
    with pytest.raises(ValueError, match="device 'x' does not appear in the "
                       "log; it names 'gpu', 'nic'"):
        replay(lines, device="x")


@pytest.mark.parametrize("kw, msg", [
    (dict(kernel="v9.9"), "kernel 'v9.9' is not a modelled era"),
    (dict(granule=8192), "granule 0x2000 is not an LPAE granule"),
    (dict(fmt="arm64"), "format 'arm64' cannot be replayed; choose one "
                        "of 'lpae', 'v7s'"),
    (dict(ias=60), "ias 60 is out of range"),
])
def test_bad_settings(kw, msg):
    with pytest.raises(ValueError, match=msg):
        replay([], **kw)


def test_missing_file_raises_oserror(tmp_path):
    with pytest.raises(FileNotFoundError):
        replay(tmp_path / "nope.log")


def test_table_at_is_deterministic_and_checked():
    r = replay(ftrace(VM))
    for n in (0, 1, 5, len(VM)):
        a, b = r.table_at(n), r.table_at(n)
        assert a is not b and a.snapshot() == b.snapshot()
        assert _pages(a) == _pages(replay(ftrace(VM[:n])).table)
    assert r.table_at(len(VM)).snapshot() == r.table.snapshot()
    for bad in (-1, len(VM) + 1, 1.5, True):
        with pytest.raises(ValueError, match="out of range: the log has 9"):
            r.table_at(bad)


def test_events_are_exposed_compactly():
    r = replay(ftrace(VM))
    assert len(r.events) == len(VM)
    assert r.events[0].kind == "map" and r.events[0].paddr == BLOCK_PA
    assert r.events[-1].kind == "unmap" and r.events[-1].unmapped == SZ_4K


# ---------------------------------------------------------------- oracle
OP = st.one_of(
    st.tuples(st.just("map"), st.integers(0, 63), st.integers(1, 8),
              st.integers(0, 1 << 12)),
    st.tuples(st.just("unmap"), st.integers(0, 63), st.integers(1, 8)),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(OP, max_size=25), st.sampled_from(["v5.4", "v6.13"]))
def test_replay_matches_a_page_oracle(ops, kernel):
    """4K-page maps/unmaps (below 2M, so no blocks): a map is refused if any
    of its pages is mapped; an unmap removes pages until the first hole."""
    base = 0x7fff00000
    lines, pages = [], {}
    rejected = unmatched = peak = 0
    for op in ops:
        a = base + op[1] * SZ_4K
        size = op[2] * SZ_4K
        if op[0] == "map":
            pa = op[3] * SZ_4K
            lines.append(f"map: IOMMU: iova=0x{a:x} paddr=0x{pa:x} size={size}")
            span = range(a, a + size, SZ_4K)
            if any(p in pages for p in span):
                rejected += 1
            else:
                pages.update({p: pa + p - a for p in span})
        else:
            n = 0
            for p in range(a, a + size, SZ_4K):
                if p not in pages:
                    break
                del pages[p]
                n += SZ_4K
            unmatched += n < size
            lines.append(f"unmap: IOMMU: iova=0x{a:x} size={size} "
                         f"unmapped_size={n}")
        peak = max(peak, len(pages) * SZ_4K)
    r = replay(lines, kernel=kernel)
    s = r.summary
    assert _pages(r.table) == pages
    assert s.rejected == rejected and s.unmatched_unmaps == unmatched
    assert s.mapped == len(pages) * SZ_4K and s.peak_mapped == peak
    assert s.log_disagreements == 0 and s.blocks_split == 0


# ---------------------------------------------------------------- text
def test_format_mappings_collapses_runs():
    r = replay(ftrace(VM))
    text = format_mappings(r.table)
    rows = text.splitlines()
    assert rows[0].startswith("iova range")
    assert all(len(ln) <= 72 and ln.isascii() for ln in rows)
    assert "0x000040000000-0x000040004fff -> 0x000880000000      5 x 4K page" \
        in rows
    assert "0x000040006000-0x0000401fffff -> 0x000880006000    506 x 4K page" \
        in rows
    assert "0x000040400000-0x0000407fffff -> 0x0008c0000000      2 x 2M block" \
        in rows
    assert "0x000040800000-0x0000409fffff -> 0x000190001000    512 x 4K page" \
        in rows
    short = format_mappings(r.table, max_rows=2).splitlines()
    assert len(short) == 4 and short[-1].startswith("... ")
    assert format_mappings(replay([]).table).splitlines()[1] == \
        "(nothing mapped)"


# ---------------------------------------------------------------- progress
def test_progress_callback_sees_both_phases(tmp_path):
    path = tmp_path / "vm.log"
    path.write_text("".join(ftrace(VM * 1)))
    seen = []
    replay(path, progress=lambda phase, done, total: seen.append(
        (phase, done, total)))
    phases = [p for p, _, _ in seen]
    assert phases[0] == "parse" and phases[-1] == "replay"
    size = path.stat().st_size
    assert ("parse", size, size) in seen
    assert seen[-1] == ("replay", len(VM), len(VM))
    assert all(d <= t for _, d, t in seen if t is not None)


def test_progress_tqdm_like_object():
    class Bar:
        def __init__(self):
            self.n, self.totals, self.desc = 0, [], []

        def reset(self, total=None):
            self.n = 0
            self.totals.append(total)

        def set_description(self, d):
            self.desc.append(d)

        def update(self, k):
            self.n += k
    bar = Bar()
    big = ftrace([("map", i * SZ_4K, i * SZ_4K, SZ_4K) for i in range(40000)])
    replay(big, progress=bar)
    assert bar.desc == ["parse", "replay"]
    assert bar.totals == [None, 40000]
    assert 0 < bar.n <= 40000


def test_text_bar_is_ascii_and_narrow():
    out = io.StringIO()
    bar = TextBar(out)
    bar.start("replay", 1000)
    for d in (0, 10, 500, 1000):
        bar.update(d)
    bar.close()
    frames = [f for f in out.getvalue().split("\r") if f.strip()]
    assert frames[-1].startswith("replay [##############################] 100%")
    assert all(len(f) <= 72 and f.isascii() for f in frames)
    bar.start("parse", None)
    bar.update(12345)
    assert "12,345 lines" in out.getvalue()


def test_make_progress_choices():
    assert make_progress(False, True) is None
    assert make_progress(None, False) is None
    with pytest.raises(TypeError, match="progress 3 must be"):
        make_progress(3, True)


# ---------------------------------------------------------------- example
def test_example_vm_start_log():
    path = ROOT / "examples" / "vm-start.log"
    assert path.stat().st_size < 200_000
    r = replay(path)
    s = r.summary
    assert s.malformed == 0 and s.rejected == 0
    assert s.blocks_split == 1 and s.unmatched_unmaps == 1
    assert s.peak_mapped == 256 << 20 and s.mapped == (256 << 20) - SZ_4K
    assert SZ_2M in s.pages_mapped and SZ_4K in s.pages_mapped


def test_widget_bar_tracks_the_phases(capsys):
    pytest.importorskip("ipywidgets")
    from iommu_viz.ingest.progress import WidgetBar
    bar = WidgetBar()
    bar.start("replay", 200)
    bar.update(50)
    assert (bar._bar.description, bar._bar.max, bar._bar.value) == \
        ("replay", 200, 50)
    assert bar._label.value == "25%"
    bar.close()
    assert bar._bar.value == 200 and bar._bar.bar_style == "success"
    bar.start("parse", None)
    bar.update(7)
    assert bar._label.value == "7 lines"
