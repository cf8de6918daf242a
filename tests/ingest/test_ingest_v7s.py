"""Replaying logs into the Armv7 short-descriptor format (``fmt="v7s"``,
io-pgtable-arm-v7s): summaries worked out by hand for a small log in each
era, the v6.13 refusal, addresses that do not fit a 32-bit table, the MTK
quirk, the example log and ``iommu-viz replay --fmt v7s``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from iommu_viz import SZ_4K, SZ_64K, SZ_1M, SZ_16M, V7sTable
from iommu_viz.cli import main
from iommu_viz.ingest import replay
from iommu_viz.ingest.replay import format_mappings, mapping_runs

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "mtk-camera.log"
PRE = "camerahalserver-612 [005] .... 1203.481251: "


def _map(iova, pa, size, dev="cam"):
    return (f"{PRE}map: IOMMU: dev={dev} iova=0x{iova:016x} - "
            f"0x{iova + size:016x} paddr=0x{pa:016x} size={size}")


def _unmap(iova, size, unmapped=None, dev="cam"):
    return (f"{PRE}unmap: IOMMU: dev={dev} iova=0x{iova:016x} - "
            f"0x{iova + size:016x} size={size} unmapped_size="
            f"{size if unmapped is None else unmapped}")


def _walk_leaves(table):
    out = {}
    for _iova, _pa, size, _lvl, _pte in table.mappings():
        out[size] = out.get(size, 0) + 1
    return dict(sorted(out.items()))


# The small log. Line numbers are list positions + 1.
SMALL = [
    _map(0x10000000, 0x80000000, 2 * SZ_1M),     # 1: two 1M sections
    _map(0x10200000, 0x90000000, 3 * SZ_64K),    # 2: three 64K large pages
    _map(0x10230000, 0x91003000, 2 * SZ_4K),     # 3: two 4K pages (pa not
                                                 #    64K-aligned)
    _map(0x11000000, 0xA0000000, SZ_16M),        # 4: one supersection
    _unmap(0x10105000, SZ_4K),                   # 5: 4K out of section 2
    _unmap(0x10211000, SZ_4K),                   # 6: 4K out of large page 2
    _unmap(0x20000000, SZ_4K, unmapped=0),       # 7: nothing mapped there
    _map(0xFFFFF000, 0x1000, 2 * SZ_4K),         # 8: runs past 4 GiB
    _map(0x30000000, 0x100000000, SZ_4K),        # 9: paddr above 4 GiB
]
PEAK = 2 * SZ_1M + 3 * SZ_64K + 2 * SZ_4K + SZ_16M       # after line 4


# ------------------------------------------------------------ by hand
@pytest.mark.parametrize("kernel, tlb, tables", [
    # v4.20: each split invalidates and syncs itself (tlb_add_flush +
    # tlb_sync); the leaf unmaps after the CONT split and in iommu_map's
    # clean-up of line 8 add a flush each. Line 8's first page is mapped
    # (in a new level-2 table, which stays) before the second is refused
    ("v4.20", {"tlb_add_flush": 4, "tlb_sync": 2}, 4),
    # v5.4: split_cont syncs with flush_leaf; the section split, the leaf
    # after the CONT split and the clean-up add a page to the gather
    ("v5.4", {"tlb_add_page": 3, "tlb_flush_leaf": 1}, 4),
    # v6.12: flush_walk instead of flush_leaf (v5.11); map_pages (v5.14)
    # is refused whole by the model, so line 8 maps nothing: no clean-up
    ("v6.12", {"tlb_add_page": 2, "tlb_flush_walk": 1}, 3),
])
def test_small_log_in_the_eras_that_split(kernel, tlb, tables):
    r = replay(SMALL, fmt="v7s", kernel=kernel)
    s = r.summary
    assert (s.fmt, s.ias, s.granule) == ("v7s", 32, SZ_4K)
    assert (s.map_requests, s.unmap_requests) == (6, 3)
    assert s.pages_mapped == {SZ_4K: 2, SZ_64K: 3, SZ_1M: 2, SZ_16M: 1}
    # one section replaced by a level-2 table, one CONT group rewritten
    assert s.blocks_split == 2 and s.refused_partial_unmaps == 0
    assert (s.unmatched_unmaps, s.unmatched_bytes) == (1, SZ_4K)
    assert s.log_disagreements == 0        # line 7 logged 0 bytes too
    assert (s.peak_mapped, s.peak_line) == (PEAK, 4)
    assert s.mapped == PEAK - 2 * SZ_4K
    # section 1 untouched; section 2 became 255 pages; large page 2
    # became 15 pages; the two 4K pages and the supersection as mapped
    assert s.leaves == {SZ_4K: 255 + 15 + 2, SZ_64K: 2, SZ_1M: 1,
                        SZ_16M: 1} == _walk_leaves(r.table)
    assert s.rejected == 2 and [ln for ln, _ in r.rejected] == [8, 9]
    assert s.tlb_calls == tlb
    # L1 + the split section's table + the table of the 64K/4K pages
    # (+ line 8's table)
    assert s.tables == tables


def test_small_log_v613_refuses_partial_unmaps():
    r = replay(SMALL, fmt="v7s", kernel="v6.13")
    s = r.summary
    assert s.blocks_split == 0
    # line 5 (part of a section) and line 6 (part of a large page) are
    # refused with a warning and 0 bytes (fd50651636fb)
    assert s.refused_partial_unmaps == 2
    assert r.table.warnings == ["Unmap of a partial large IOPTE is not "
                                "allowed"] * 2
    assert (s.unmatched_unmaps, s.unmatched_bytes) == (1, SZ_4K)
    assert s.log_disagreements == 2        # the log says 4096 for both
    assert s.mapped == s.peak_mapped == PEAK
    assert s.leaves == s.pages_mapped == _walk_leaves(r.table)
    assert s.tlb_calls == {} and s.tables == 2
    assert "refused partial            2  (partial unmaps of a block, " \
        "v6.13)" in str(s).splitlines()


def test_small_log_mappings_show_the_section_split_losing_its_address():
    """arm_v7s_split_blk_unmap (v4.20 .. v6.12) never adds the section's
    output address to the new entries: the replayed table maps what the
    kernel's would, physical 0x0 onwards."""
    r = replay(SMALL, fmt="v7s")
    assert r.table.iova_to_phys(0x10000000) == 0x80000000
    assert r.table.iova_to_phys(0x10106000) == 0x6000
    assert r.table.iova_to_phys(0x10105000) == 0
    runs = mapping_runs(r.table)
    assert runs[:3] == [(0x10000000, 0x80000000, SZ_1M, 1, "section"),
                        (0x10100000, 0x0, SZ_4K, 5, "page"),
                        (0x10106000, 0x6000, SZ_4K, 250, "page")]
    assert (0x10200000, 0x90000000, SZ_64K, 1, "large page") in runs
    assert runs[-1] == (0x11000000, 0xA0000000, SZ_16M, 1, "supersection")
    text = format_mappings(r.table)
    assert "0x11000000-0x11ffffff -> 0xa0000000      1 x 16M supersection" \
        in text.splitlines()
    assert all(len(ln) <= 72 and ln.isascii() for ln in text.splitlines())


def test_table_at_replays_the_prefix():
    r = replay(SMALL, fmt="v7s")
    before, after = r.table_at(4), r.table_at(5)
    assert isinstance(before, V7sTable) and before.kernel == "v5.4"
    assert before.walk(0x10105000)[-1].kind == "section"
    assert after.walk(0x10105000)[-1].kind == "invalid"
    assert len(after.walk(0x10105000)) == 2
    assert r.table_at(len(SMALL)).snapshot() == r.table.snapshot()
    assert r.table_at(5).snapshot() == after.snapshot()
    with pytest.raises(ValueError, match="event count 10 is out of range"):
        r.table_at(10)


# ------------------------------------------------------------ does not fit
def test_addresses_beyond_32_bits_are_refused_with_their_line():
    r = replay(SMALL, fmt="v7s", kernel="v6.13")
    (l8, m8), (l9, m9) = r.rejected
    assert l8 == 8 and m8 == ("iova range 0xfffff000..0x100000fff is beyond "
                              "the 32-bit input address size (-ERANGE)")
    assert l9 == 9 and m9 == ("paddr range 0x100000000..0x100000fff is "
                              "beyond the 32-bit output address size "
                              "(-ERANGE)")
    assert r.table.iova_to_phys(0xFFFFF000) == 0
    # an unmap that does not fit either, and one of 8 GiB
    r = replay([_map(0x1000, 0x1000, SZ_4K), _unmap(0x100000000, SZ_4K),
                _unmap(0xFFFFF000, 2 * SZ_4K), _unmap(0, 1 << 33)],
               fmt="v7s")
    assert [ln for ln, _ in r.rejected] == [2, 3, 4]
    assert all("beyond the 32-bit input address size" in m
               for _, m in r.rejected)
    assert r.summary.mapped == SZ_4K


def test_mtk_quirk_takes_physical_addresses_above_4g():
    # ARM_MTK_EXT: 34-bit paddr in the v5.4 era (PA bits 32/33 at PTE bits
    # 9 and 4), but still a 32-bit iova
    r = replay(SMALL, fmt="v7s", mtk=True)
    assert [ln for ln, _ in r.rejected] == [8]
    assert r.table.iova_to_phys(0x30000000) == 0x100000000
    assert r.summary.mtk and str(r.summary).startswith("replay: V7S+MTK")
    pte = r.table.walk(0x30000000)[-1].pte
    assert pte & (1 << 9)                     # MTK_PA_BIT32
    # from v5.12 (the v6.12 era) a 34-bit iova with ias=34
    r = replay([_map(0x300000000, 0x400000000, SZ_1M)], fmt="v7s",
               kernel="v6.12", mtk=True, ias=34)
    assert r.summary.rejected == 0 and r.summary.ias == 34
    assert r.table.iova_to_phys(0x300000000) == 0x400000000


@pytest.mark.parametrize("kw, msg", [
    (dict(granule=1 << 16), "granule 0x10000 is not a v7s granule; the "
                            "short-descriptor format has 4K pages only"),
    (dict(ias=48), "ias 48 is out of range; v7s takes a 32-bit iova"),
    (dict(ias=34, mtk=True), "ias 34 is out of range; v7s takes a 32-bit"),
    (dict(ias=35, mtk=True, kernel="v6.13"),
     "ias 35 is out of range; with the mtk quirk in the v6.12 and v6.13 "
     "eras, 32 to 34 bits"),
    (dict(mtk="yes"), "mtk 'yes' must be True or False"),
    (dict(fmt="lpae", mtk=True), "the mtk quirk .* is for v7s tables"),
])
def test_bad_v7s_settings(kw, msg):
    kw = {"fmt": "v7s", **kw}
    with pytest.raises(ValueError, match=msg):
        replay([], **kw)


# ------------------------------------------------------------ counts
@pytest.mark.parametrize("kernel, splits, unmapped", [
    ("v5.4", 2, SZ_4K), ("v6.13", 0, 0)])
def test_page_unmap_in_the_first_mib_of_a_supersection(kernel, splits,
                                                        unmapped):
    # v5.4: split_cont makes 16 sections, then the first is split
    r = replay([_map(0x1000000, 0x3000000, SZ_16M),
                _unmap(0x1003000, SZ_4K)], fmt="v7s", kernel=kernel)
    s = r.summary
    assert s.blocks_split == splits
    assert s.mapped == SZ_16M - unmapped
    assert s.leaves == _walk_leaves(r.table)


def test_page_unmap_elsewhere_in_a_supersection_unmaps_nothing():
    """arm_v7s_split_cont hands back the group's first section; when the
    page is in another MiB, arm_v7s_install_table's compare-and-swap fails
    and 0 bytes are unmapped, though the supersection is now 16 sections:
    one split, one unmap that matched nothing."""
    r = replay([_map(0x1000000, 0x3000000, SZ_16M),
                _unmap(0x1303000, SZ_4K)], fmt="v7s")
    s = r.summary
    assert s.blocks_split == 1
    assert (s.unmatched_unmaps, s.log_disagreements) == (1, 1)
    assert s.leaves == {SZ_1M: 16}
    assert s.mapped == SZ_16M


def test_section_map_over_a_table_frees_its_pages():
    # arm_v7s_init_pte frees the level-2 table in the way of a section;
    # a 64K map over 4K pages is refused instead (EEXIST)
    lines = [_map(0x200000, 0x5000, 2 * SZ_4K),
             _map(0x210000, 0x40000000, SZ_64K),
             _map(0x200000, 0x9000000, SZ_64K),
             _map(0x200000, 0x8000000, SZ_1M)]
    r = replay(lines, fmt="v7s")
    s = r.summary
    assert s.rejected == 1 and r.rejected[0][0] == 3
    assert "already mapped" in r.rejected[0][1]
    assert s.tables_replaced == 1
    assert s.mapped == SZ_1M and s.leaves == {SZ_1M: 1}
    assert s.unmapped_bytes == 2 * SZ_4K + SZ_64K
    assert s.tlb_calls == {"tlb_flush_walk": 1}


def test_supersection_map_frees_every_table_in_its_16_entries():
    # arm_v7s_init_pte walks all 16 level-1 entries of the supersection
    # and frees each level-2 table it finds (each with its walk flush)
    lines = [_map(0x1000000, 0x7000, SZ_4K), _map(0x1300000, 0x8000, SZ_4K),
             _map(0x1304000, 0x9000, SZ_4K), _map(0x1000000, 0x5000000,
                                                 SZ_16M)]
    s = replay(lines, fmt="v7s").summary
    assert s.rejected == 0 and s.tables_replaced == 2
    assert s.mapped == SZ_16M and s.leaves == {SZ_16M: 1}
    assert s.unmapped_bytes == 3 * SZ_4K
    assert s.tlb_calls == {"tlb_flush_walk": 2}


def test_pr_debug_pieces_replay_into_v7s():
    lines = ["iommu: map: iova 0x10000000 pa 0x80000000 size 0x110000",
             "iommu: mapping: iova 0x10000000 pa 0x80000000 pgsize 0x100000",
             "iommu: mapping: iova 0x10100000 pa 0x80100000 pgsize 0x10000",
             "iommu: unmap this: iova 0x10100000 size 0x10000",
             "iommu: unmapped: iova 0x10100000 size 0x10000"]
    s = replay(lines, fmt="v7s").summary
    assert (s.map_requests, s.unmap_requests) == (1, 1)
    assert s.pages_mapped == {SZ_64K: 1, SZ_1M: 1}
    assert s.leaves == {SZ_1M: 1} and s.mapped == SZ_1M


_SIZES = st.sampled_from([SZ_4K, 2 * SZ_4K, SZ_64K, 3 * SZ_64K, SZ_1M,
                          2 * SZ_1M, SZ_16M])
_EVENT = st.tuples(st.booleans(), st.integers(0, 47), _SIZES,
                   st.integers(0, 63))


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_EVENT, max_size=14), st.sampled_from(["v5.4", "v6.13"]))
def test_any_small_log_keeps_its_counts_consistent(events, kernel):
    """Whatever a log does (in a 48 MiB window, some of it beyond 4 GiB),
    the replay never raises, and the leaves it reports are a walk's and
    add up to the bytes it says are mapped."""
    lines = []
    for is_map, slot, size, pa in events:
        iova = 0xFD000000 + slot * SZ_1M - (SZ_64K if slot % 5 == 4 else 0)
        if is_map:
            lines.append(_map(iova, 0x40000000 + pa * SZ_16M, size))
        else:
            lines.append(_unmap(iova + (slot % 3) * SZ_4K, size))
    r = replay(lines, fmt="v7s", kernel=kernel)
    s = r.summary
    assert s.leaves == _walk_leaves(r.table)
    assert sum(k * v for k, v in s.leaves.items()) == s.mapped
    assert s.mapped_bytes - s.unmapped_bytes == s.mapped
    assert all(0 < ln <= len(lines) for ln, _ in r.rejected)


# ------------------------------------------------------------ example log
def test_example_log():
    assert EXAMPLE.stat().st_size < 50_000
    r = replay(EXAMPLE, fmt="v7s")
    s = r.summary
    assert r.problems == [] and s.rejected == 0 and s.malformed == 0
    # ION's 1M/64K/4K pages: 4 preview buffers (2 + 15 + 8 each), 16K
    # of metadata, two 192K statistics buffers, imgsys's 2M pool and
    # 256K ring, a 12MP raw frame (14 + 4 + 15)
    assert s.pages_mapped == {SZ_4K: 4 + 4 * 8 + 15,
                              SZ_64K: 4 * 15 + 2 * 3 + 4 + 4,
                              SZ_1M: 4 * 2 + 2 + 14}
    # imgsys unmaps 64K of a section, 4K of a section, 4K of a large page
    assert s.blocks_split == 3 and s.unmatched_unmaps == 0
    assert s.log_disagreements == 0
    assert s.device is None and set(r.events.devices) == {
        None, "1a000000.camisp", "15020000.imgsys"}
    assert s.leaves == {SZ_4K: 255 + 15, SZ_64K: 15 + 3}
    assert s.mapped == 2 * SZ_1M + 256 * 1024 - SZ_64K - 2 * SZ_4K
    s13 = replay(EXAMPLE, fmt="v7s", kernel="v6.13").summary
    assert (s13.blocks_split, s13.refused_partial_unmaps) == (0, 3)
    assert s13.leaves == {SZ_64K: 4, SZ_1M: 2}
    dip = replay(EXAMPLE, fmt="v7s", device="15020000.imgsys").summary
    assert (dip.map_requests, dip.unmap_requests) == (2, 3)


# ------------------------------------------------------------ command line
def _cli(capsys, *args):
    code = main(["replay", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_fmt_v7s_text(capsys, tmp_path):
    log = tmp_path / "small.log"
    log.write_text("\n".join(SMALL) + "\n")
    code, out, err = _cli(capsys, log, "--fmt", "v7s", "--rows", "0")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == "replay: V7S 4K granule, 32-bit iova, kernel v5.4 era"
    assert "pages mapped:     4K x 2, 64K x 3, 1M x 2, 16M x 1" in lines
    assert any(ln.split()[:3] == ["blocks", "split", "2"] for ln in lines)
    assert any(ln.split()[:3] == ["unmatched", "unmaps", "1"] for ln in lines)
    # v5.4 maps line 8 a page at a time: the second page is refused
    assert "  line 8: iova range 0x100000000..0x100000fff is beyond the " \
        "32-bit in..." in lines
    assert "0x10100000-0x10104fff -> 0x00000000      5 x 4K page" in lines
    assert all(len(ln) <= 72 and ln.isascii() for ln in lines)


def test_cli_fmt_v7s_tree_json_and_errors(capsys, tmp_path):
    log = tmp_path / "small.log"
    log.write_text("\n".join(SMALL[:5]) + "\n")
    code, out, _ = _cli(capsys, log, "--fmt", "v7s", "--at", "4", "--tree")
    assert code == 0
    tree = out[out.index("replay: v7s, v5.4 era, after 4 of 5 events"):]
    assert "1 x 16M supersection" in out
    assert "L1 table 0x7e000000" in tree and "L2 table" in tree
    assert all(len(ln) <= 72 for ln in out.splitlines())
    code, out, _ = _cli(capsys, log, "--fmt", "v7s", "--format", "json")
    doc = json.loads(out)
    assert doc["summary"]["fmt"] == "v7s" and doc["summary"]["ias"] == 32
    assert doc["summary"]["pages_mapped"] == {"4K": 2, "64K": 3, "1M": 2,
                                              "16M": 1}
    assert doc["mappings"][0] == {"iova": "0x10000000",
                                  "paddr": "0x80000000", "pgsize": "1M",
                                  "count": 1, "kind": "section"}
    for args, status, text in [
            (("--fmt", "v8"), 2, "argument --fmt: 'v8' is not a page-table "
                                 "format; choose lpae or v7s"),
            (("--fmt", "v7s", "--granule", "16K"), 1,
             "granule 0x4000 is not a v7s granule"),
            (("--fmt", "v7s", "--ias", "40"), 1, "ias 40 is out of range"),
            (("--mtk",), 1, "the mtk quirk (mtk_iommu's ARM_MTK_EXT) is for "
                            "v7s tables")]:
        code, out, err = _cli(capsys, log, *args)
        assert (code, out) == (status, "")
        assert len(err.splitlines()) == 1 and text in err


@pytest.mark.skipif(__import__("shutil").which("dot") is None,
                    reason="needs graphviz dot")
def test_cli_fmt_v7s_pictures(tmp_path):
    exe = Path(sys.executable).parent / "iommu-viz"
    for fmt, magic in (("svg", b"<svg"), ("png", b"\x89PNG")):
        dest = tmp_path / f"tree.{fmt}"
        p = subprocess.run([str(exe), "replay", str(EXAMPLE), "--fmt", "v7s",
                            "--device", "15020000.imgsys", "--format", fmt,
                            "-o", str(dest)], capture_output=True, timeout=120)
        assert p.returncode == 0, p.stderr
        data = dest.read_bytes()
        assert magic in data[:400]
        if fmt == "svg":
            assert b"replay: v7s, v5.4 era, after 154 of 154 events" in data
