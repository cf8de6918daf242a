"""Page-table tree: rows, collapsing, marks, detached tables, DOT, text."""

import dataclasses
import re

import pytest
from hypothesis import given, settings, strategies as st

from iommu_viz import SZ_1M, SZ_2M, SZ_4K, SZ_16M, SZ_64K, LpaeTable
from iommu_viz.pgtable.common import TableSnapshot
from iommu_viz.pgtable.v7s import V7sTable
from iommu_viz.render.tree import (slot_size, tree_dot, tree_layout,
                                   tree_svg, tree_text)
from iommu_viz.sim.trace import TlbEntry

from render_helpers import check_plain

L3_SPLIT = 0x7F003000
L2 = 0x7F002000


def entry(tr, stale=(), pending=False, inserted=0):
    """A TlbEntry for a Translation."""
    return TlbEntry(1, tr.iova, tr.size, tr.level, tr.paddr, tr.prot, tr.pte,
                    inserted, stale_ranges=tuple(stale), pending=pending)


def node_rows(dot, paddr):
    """The row cells (index labels) of one node in DOT source."""
    m = re.search(rf"  t{paddr:x} \[.*?label=<(.*)>\];\n", dot)
    assert m, f"no node for 0x{paddr:x}"
    return re.findall(r'<TD ALIGN="RIGHT"[^>]*>(?:<B>)?(\[[0-9.]+\])', m.group(1))


# ------------------------------------------------------------------ layout

def test_split_table_collapses_to_three_rows(split):
    _, before, after, _ = split
    lay = tree_layout(after, prev=before)
    l3 = lay.table(L3_SPLIT)
    assert [(r.first, r.last, r.kind) for r in l3.rows] == [
        (0, 0, "page"), (1, 1, "invalid"), (2, 511, "page")]
    assert l3.rows[2].description == \
        "510 x 4K page -> 0x80002000..0x801fffff"
    assert l3.rows[0].description == "4K page -> 0x80000000"
    assert l3.new and not l3.detached and l3.parent == (L2, 0)


def test_tables_in_walk_order_with_parents(split):
    _, _, after, _ = split
    lay = tree_layout(after)
    assert [t.level for t in lay.tables] == [0, 1, 2, 3]
    assert [t.paddr for t in lay.tables] == sorted(after.tables)
    assert lay.tables[0].parent is None
    for parent, child in zip(lay.tables, lay.tables[1:]):
        assert child.parent[0] == parent.paddr


def test_changed_against_prev(split):
    _, before, after, _ = split
    lay = tree_layout(after, prev=before)
    l2 = lay.table(L2)
    assert l2.rows[0].kind == "table" and l2.rows[0].changed
    assert not l2.rows[1].changed
    assert not any(r.changed for r in lay.tables[0].rows)
    # without prev nothing is marked
    assert not any(r.changed for t in tree_layout(after).tables
                   for r in t.rows)


def test_freed_tables_are_listed(split):
    _, before, after, _ = split
    lay = tree_layout(before, prev=after)
    assert lay.freed == (L3_SPLIT,)
    assert "Freed since the previous step: 0x7f003000" in \
        tree_text(before, prev=after)


def test_stale_block_marked_on_slot_now_holding_a_table(split):
    pt, _, after, block = split
    stale = entry(block, stale=[(0x40001000, SZ_4K)])
    page = entry(pt.translate(0x40005000))
    lay = tree_layout(after, tlb=(stale, page))
    row = lay.table(L2).rows[0]
    assert row.kind == "table" and row.stale == (stale,)
    assert row.notes == ("TLB still holds 2M block -> 0x80000000 "
                         "(stale for 0x40001000+4K)",)
    # the cached page gets a row of its own inside the run
    l3 = lay.table(L3_SPLIT)
    assert [(r.first, r.last, bool(r.cached)) for r in l3.rows] == [
        (0, 0, False), (1, 1, False), (2, 4, False), (5, 5, True),
        (6, 511, False)]
    assert l3.rows[3].marks == " T "


def test_stale_page_in_an_emptied_table():
    pt = LpaeTable(kernel="v5.4")
    pt.map(0x40000000, 0x80000000, SZ_4K)
    tr = pt.translate(0x40000000)
    pt.unmap(0x40000000, SZ_4K)
    e = entry(tr, stale=[(tr.iova, tr.size)], pending=True)
    lay = tree_layout(pt.snapshot(), tlb=(e,))
    # __arm_lpae_unmap leaves the emptied L3 table linked: the slot is
    # there, invalid, and carries the mark
    l3 = [t for t in lay.tables if t.level == 3][0]
    row = [r for r in l3.rows if r.stale][0]
    assert row.kind == "invalid" and row.first == 0
    assert row.notes == ("TLB still holds 4K page -> 0x80000000, "
                         "invalidation pending",)


def test_stale_page_whose_table_was_freed_marks_where_walk_stops():
    pt = LpaeTable(kernel="v5.4")
    pt.map(0x40000000, 0x80000000, SZ_4K)
    pt.map(0x40001000, 0x80001000, SZ_4K)
    tr = pt.translate(0x40001000)
    # unmapping the whole 2M frees the L3 table (__arm_lpae_free_pgtable)
    assert pt.unmap(0x40000000, SZ_2M) == SZ_2M
    snap = pt.snapshot()
    assert not any(t.level == 3 for t in snap.tables.values())
    lay = tree_layout(snap, tlb=(entry(tr, stale=[(tr.iova, tr.size)]),))
    l2 = [t for t in lay.tables if t.level == 2][0]
    row = [r for r in l2.rows if r.stale][0]
    assert (row.first, row.kind) == (0, "invalid")
    assert row.notes == ("TLB still holds 4K page -> 0x80001000",)
    assert lay.unplaced == ()


def test_detached_table_appears_unlinked(split):
    _, _, after, _ = split
    extra = TableSnapshot(0x7F100000, 3, 0x40200000,
                          tuple([0] * 512))
    tables = dict(after.tables)
    tables[extra.paddr] = extra
    snap = dataclasses.replace(after, tables=tables)
    lay = tree_layout(snap)
    assert lay.tables[-1].paddr == 0x7F100000 and lay.tables[-1].detached
    assert all(not t.detached for t in lay.tables[:-1])
    dot = tree_dot(snap)
    assert "t7f100000 [style=dashed" in dot
    assert "-> t7f100000" not in dot
    assert "L3 table 0x7f100000 (DETACHED, not linked)" in tree_text(snap)


def test_detached_during_a_real_split(seed_run):
    fill = next(e.step for e in seed_run.events if e.kind == "table_fill")
    lay = tree_layout(seed_run.states[fill].pgtable,
                      prev=seed_run.states[fill - 1].pgtable)
    det = [t for t in lay.tables if t.detached]
    assert [(t.level, t.paddr) for t in det] == [(3, L3_SPLIT)]
    # one step later arm_lpae_install_table links it
    lay2 = tree_layout(seed_run.states[fill + 1].pgtable)
    assert not any(t.detached for t in lay2.tables)


def test_slot_sizes():
    snap = LpaeTable(granule=SZ_4K).snapshot()
    assert [slot_size(snap, lvl) for lvl in range(4)] == [
        1 << 39, 1 << 30, SZ_2M, SZ_4K]
    snap64 = LpaeTable(granule=SZ_64K, ias=48).snapshot()
    assert slot_size(snap64, 3) == SZ_64K and slot_size(snap64, 2) == 1 << 29
    v7 = V7sTable().snapshot()
    assert slot_size(v7, 1) == SZ_1M and slot_size(v7, 2) == SZ_4K
    with pytest.raises(ValueError, match="level 3 is not a v7s level"):
        slot_size(v7, 3)


def test_snapshot_without_decoder_is_refused(split):
    _, _, after, _ = split
    with pytest.raises(ValueError, match="no decode function"):
        tree_layout(dataclasses.replace(after, decode=None))


def test_bad_rankdir(split):
    with pytest.raises(ValueError, match="rankdir 'XY'"):
        tree_dot(split[2], rankdir="XY")


# ------------------------------------------------------------------ v7s

@pytest.fixture(scope="module")
def v7s():
    pt = V7sTable(kernel="v5.4")
    pt.map(0x1000000, 0x21000000, SZ_16M)
    pt.map(0x3000000, 0x40000000, SZ_1M)
    pt.map(0x3100000, 0x40100000, SZ_1M)
    for i in range(3):
        pt.map(0x4000000 + i * SZ_64K, 0x50000000 + i * SZ_64K, SZ_64K)
    pt.map(0x4030000, 0x60030000, SZ_4K)
    return pt, pt.snapshot()


def with_l2(snap, edit):
    """``snap`` with its level-2 table's entries edited by ``edit``."""
    (l2,) = [t for t in snap.tables.values() if t.level == 2]
    ptes = list(l2.entries)
    edit(ptes)
    tables = dict(snap.tables)
    tables[l2.paddr] = dataclasses.replace(l2, entries=tuple(ptes))
    return dataclasses.replace(snap, tables=tables)


def test_v7s_cont_groups_are_one_row(v7s):
    _, snap = v7s
    lay = tree_layout(snap)
    l1, l2 = lay.tables
    descs = [r.description for r in l1.rows]
    assert descs == [
        "16 x invalid",
        "16 x supersection, 16M CONT -> 0x21000000..0x21ffffff",
        "16 x invalid",
        "2 x 1M section -> 0x40000000..0x401fffff",
        "14 x invalid",
        f"table -> 0x{l2.paddr:x}",
        "4031 x invalid"]
    assert [r.description for r in l2.rows] == [
        "48 x large, 3 x 64K CONT -> 0x50000000..0x5002ffff",
        "4K page -> 0x60030000",
        "207 x invalid"]
    assert l2.rows[0].unit_entries == 16 and l2.rows[0].units == 3
    text = tree_text(snap)
    check_plain(text)
    assert "        pte 0x50001c31 +0x10000/group, RW TEX1 S nG AF" in text


def test_v7s_split_cont_into_pages(v7s):
    """The group at [16..31] rewritten as 16 small pages with one cleared
    (what a split of the CONT group leaves)."""
    pt, snap = v7s
    small = pt.snapshot().tables[snap.tables[snap.root].entries[64]
                                 & ~0x3FF].entries[48]
    attrs = small & 0xFFF

    def edit(ptes):
        for i in range(16, 32):
            ptes[i] = (0x50000000 + i * SZ_4K) | attrs
        ptes[17] = 0

    after = with_l2(snap, edit)
    l2 = tree_layout(after, prev=snap).tables[1]
    got = [(r.index_label, r.description, r.changed) for r in l2.rows]
    assert got == [
        ("[0..15]", "16 x large, 64K CONT -> 0x50000000..0x5000ffff", False),
        ("[16]", "4K page -> 0x50010000", True),
        ("[17]", "invalid", True),
        ("[18..31]", "14 x 4K page -> 0x50012000..0x5001ffff", True),
        ("[32..47]", "16 x large, 64K CONT -> 0x50020000..0x5002ffff", False),
        ("[48]", "4K page -> 0x60030000", False),
        ("[49..255]", "207 x invalid", False)]
    check_plain(tree_text(after, prev=snap))


def test_v7s_partial_cont_group_is_one_row(v7s):
    """Identical large-page descriptors that no longer form a whole group
    of 16 collapse into one row that says so."""
    _, snap = v7s

    def edit(ptes):
        ptes[16] = 0

    after = with_l2(snap, edit)
    rows = tree_layout(after, prev=snap).tables[1].rows
    assert [(r.index_label, r.description) for r in rows[:4]] == [
        ("[0..15]", "16 x large, 64K CONT -> 0x50000000..0x5000ffff"),
        ("[16]", "invalid"),
        ("[17..31]", "15 x large, partial 64K CONT -> "
                     "0x50010000..0x5001ffff"),
        ("[32..47]", "16 x large, 64K CONT -> 0x50020000..0x5002ffff")]
    assert rows[2].partial and not rows[3].partial
    assert "pte 0x50011c31 x15, RW TEX1 S nG AF" in tree_text(after)


def test_v7s_supersection_tlb_entry_marks_its_group(v7s):
    pt, before = v7s
    tr = pt.translate(0x1000000)
    lay = tree_layout(before, tlb=(entry(tr),))
    row = lay.tables[0].rows[1]
    assert row.kind == "supersection" and row.cached and row.first == 16 \
        and row.last == 31


# ------------------------------------------------------------------ DOT

def test_dot_nodes_rows_and_edges(split):
    pt, before, after, block = split
    dot = tree_dot(after, prev=before,
                   tlb=(entry(block, stale=[(0x40001000, SZ_4K)]),),
                   title="after the split")
    assert dot.startswith("digraph pgtable {")
    nodes = re.findall(r"^  (t[0-9a-f]+) \[", dot, re.M)
    assert nodes == [f"t{pa:x}" for pa in sorted(after.tables)]
    assert node_rows(dot, L3_SPLIT) == ["[0]", "[1]", "[2..511]"]
    assert node_rows(dot, L2) == ["[0]", "[1..511]"]
    edges = re.findall(r"^  t([0-9a-f]+):r(\d+)(:\w+)? -> t([0-9a-f]+)",
                       dot, re.M)
    assert [(int(a, 16), int(r), int(b, 16)) for a, r, _, b in edges] == [
        (0x7F000000, 0, 0x7F001000), (0x7F001000, 1, L2), (L2, 0, L3_SPLIT)]
    assert "510 x 4K page -&gt; 0x80002000..0x801fffff" in dot
    assert "TLB still holds 2M block -&gt; 0x80000000" in dot
    assert "0x0000000080002f43 +0x1000/entry" in dot
    assert "t7f003000 [style=bold" in dot          # new table
    assert "after the split" in dot and "Legend" in dot


def test_dot_legend_names_every_colour(split):
    _, before, after, block = split
    dot = tree_dot(after, prev=before, tlb=(entry(block, stale=[(0, 1)]),))
    used = set(re.findall(r'BGCOLOR="(#[0-9A-Fa-f]{6})"', dot))
    legend = dot[dot.index("Legend"):]
    in_legend = set(re.findall(r'BGCOLOR="(#[0-9A-Fa-f]{6})"', legend))
    assert used and used <= in_legend


def test_dot_is_deterministic(split):
    _, before, after, block = split
    tlb = (entry(block, stale=[(0x40001000, SZ_4K)]),)
    assert tree_dot(after, before, tlb) == tree_dot(after, before, tlb)


def test_svg_renders(split):
    _, before, after, _ = split
    svg = tree_svg(after, prev=before, title="split")
    assert "<svg" in svg and "510 x 4K page" in svg
    assert svg.count('class="node"') == 5          # 4 tables + legend
    assert svg.count('class="edge"') == 3
    assert tree_svg(after, legend=False).count('class="node"') == 4


# ------------------------------------------------------------------ text

def test_text_of_the_split(split):
    _, before, after, block = split
    text = tree_text(after, prev=before,
                     tlb=(entry(block, stale=[(0x40001000, SZ_4K)]),))
    check_plain(text)
    lines = text.split("\n")
    i = lines.index("L3 table 0x7f003000 (new, from 0x7f002000[0])")
    assert lines[i + 1:i + 7] == [
        "  iova 0x40000000..0x401fffff, 512 entries of 4K",
        "*   [0]      4K page -> 0x80000000",
        "             pte 0x0000000080000f43, RW idx0 nG ISH AF",
        "*   [1]      invalid",
        "*   [2..511] 510 x 4K page -> 0x80002000..0x801fffff",
        "             pte 0x0000000080002f43 +0x1000/entry, RW idx0 nG ISH "
        "AF"]
    assert lines[i + 7:] == [""]
    j = lines.index("L2 table 0x7f002000 (from 0x7f001000[1])")
    assert lines[j + 2] == "* ! [0]      table -> 0x7f003000"
    assert lines[j + 4].strip().startswith(
        "! TLB still holds 2M block -> 0x80000000")


def test_text_narrow_width_wraps(split):
    _, before, after, block = split
    text = tree_text(after, prev=before,
                     tlb=(entry(block, stale=[(0x40001000, SZ_4K)]),),
                     width=40)
    check_plain(text, 40)
    with pytest.raises(ValueError, match="width 10 is too narrow"):
        tree_text(after, width=10)


# ------------------------------------------------------------------ property

OPS = st.lists(st.tuples(st.sampled_from(["map", "unmap"]),
                         st.integers(0, 1023),
                         st.sampled_from([SZ_4K, 2 * SZ_4K, SZ_2M]),
                         st.booleans()),
               max_size=12)


@settings(max_examples=40, deadline=None)
@given(OPS)
def test_rows_partition_tables_and_describe_every_entry(ops):
    """Whatever was mapped, each table's rows cover its entries exactly
    once, in order, and every entry in a collapsed row is what the row
    says: same kind, output address advancing by the entry size."""
    pt = LpaeTable(kernel="v5.4")
    for op, page, size, odd in ops:
        iova = 0x40000000 + page * SZ_4K
        iova -= iova % size
        try:
            if op == "map":
                pt.map(iova, 0x80000000 + (iova - 0x40000000) * (2 if odd
                                                                 else 1),
                       size)
            else:
                pt.unmap(iova, size)
        except Exception:
            pass
    snap = pt.snapshot()
    lay = tree_layout(snap)
    assert {t.paddr for t in lay.tables} == set(snap.tables)
    for tv in lay.tables:
        t = snap.tables[tv.paddr]
        nxt = 0
        for row in tv.rows:
            assert row.first == nxt and row.last >= row.first
            nxt = row.last + 1
            for k, i in enumerate(range(row.first, row.last + 1)):
                info = snap.decode(t.level, t.entries[i])
                assert info.kind == row.kind
                if row.kind not in ("invalid", "table"):
                    assert info.addr == row.info.addr + k * info.size
                    assert info.attrs == row.info.attrs
            if row.kind == "table":
                assert row.count == 1
        assert nxt == len(t.entries)
        # collapsed: never two adjacent rows that could have been one
        for a, b in zip(tv.rows, tv.rows[1:]):
            if a.kind == b.kind == "invalid":
                assert a.pte != b.pte
            if a.kind == b.kind and a.kind not in ("invalid", "table"):
                assert b.info.addr != a.info.addr + a.units * a.info.size
    check_plain(tree_text(snap))
