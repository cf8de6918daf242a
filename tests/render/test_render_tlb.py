"""TLB view: entries, walk cache, pending commands, flush queue."""

import re

from iommu_viz import IOMMU_NOEXEC, IOMMU_READ, IOMMU_WRITE, LpaeTable
from iommu_viz.render.common import MARKS, OKABE_ITO
from iommu_viz.render.tlb import tlb_html, tlb_rows, tlb_text
from iommu_viz.sim.trace import (Command, FqEntry, GatherState, Hazard, State,
                                 TlbEntry, WalkCacheEntry)

from render_helpers import check_plain, first_step


def hand_state():
    snap = LpaeTable().snapshot()
    tlb = (
        TlbEntry(1, 0x40000000, 0x200000, 2, 0x80000000,
                 IOMMU_READ | IOMMU_WRITE, 0x80000F41, 7,
                 stale_ranges=((0x40001000, 0x1000),), pending=True),
        TlbEntry(1, 0x40002000, 0x1000, 3, 0x80002000, IOMMU_READ | IOMMU_NOEXEC,
                 0x80002F43, 16, speculative=True),
    )
    walks = (WalkCacheEntry(1, 0x40000000, 0x200000, 2, 0x7F003000),
             WalkCacheEntry(1, 0x0, 1 << 39, 0, 0x7F001000, stale=True,
                            pending=True))
    pending = (Command(3, "CMD_TLBI_NH_VA",
                       (("asid", 1), ("addr", 0x40001000), ("leaf", True)), 20),)
    fq = (FqEntry(0x10000000, 0x2000, 2500),)
    gathers = (GatherState(1, 0x40001000, 0x40002000, 0x1000),)
    hazards = (Hazard("stale", 0x40001000, 0x1000, "old block cached"),
               Hazard("conflict", 0x40002000, 0x1000, "2M and 4K overlap"))
    return State(21, 2500, snap, tlb, walks, pending, fq, gathers, hazards,
                 fq_deadline_us=12500)


def test_rows():
    rows = tlb_rows(hand_state())
    assert rows[0]["iova"] == "0x40000000..0x401fffff"
    assert rows[0]["size"] == "2M" and rows[0]["perm"] == "RW"
    assert rows[0]["stale"] and rows[0]["pending"]
    assert rows[0]["stale_ranges"] == ["0x40001000..0x40001fff"]
    assert rows[1]["perm"] == "R XN" and rows[1]["speculative"]
    assert not rows[1]["stale"]


def test_text():
    text = tlb_text(hand_state())
    check_plain(text)
    lines = text.split("\n")
    assert lines[0] == ("TLB at step 21, t=2.500 ms: 2 entries, 1 stale, "
                        "1 inval pending")
    assert lines[2] == ("!  0    1 0x40000000..0x401fffff      2M L2  "
                        "0x80000000   RW")
    assert lines[3] == "         filled at step 7, STALE, inval pending"
    assert lines[4] == "         ! stale for 0x40001000..0x40001fff"
    assert lines[5].startswith("   1    1 0x40002000..0x40002fff      4K L3")
    assert "  #3 CMD_TLBI_NH_VA asid=1 addr=0x40001000 leaf=1 (issued at " \
        "step 20)" in lines
    assert "Flush queue: 1 entry, timeout at 12.500 ms" in lines
    assert "  0x10000000..0x10001fff (8K), queued at 2.500 ms" in lines
    i = lines.index("!  1 asid 1 0x0..0x7fffffffff L0 -> table 0x7f001000")
    assert lines[i + 1] == ("         STALE: table no longer linked, "
                            "inval pending")
    assert "  #1 0x40001000..0x40002000 pgsize 4K" in lines
    assert "  conflict: 0x40002000..0x40002fff: 2M and 4K overlap" in lines


def test_text_narrow():
    check_plain(tlb_text(hand_state(), width=40), 40)


def test_empty_state_text():
    st = State(0, 0, LpaeTable().snapshot(), (), (), (), (), (), ())
    text = tlb_text(st)
    assert "  (empty)" in text.split("\n")
    assert "Commands issued, not yet complete: 0" in text
    assert "Hazards" not in text


def test_html():
    h = tlb_html(hand_state())
    assert h.count("<table") == 6     # tlb, walk, cmds, fq, gathers, hazards
    assert "CMD_TLBI_NH_VA asid=1 addr=0x40001000 leaf=1" in h
    assert "STALE, inval pending, " not in h
    assert "STALE, inval pending" in h and "speculative" in h
    assert "stale for 0x40001000..0x40001fff" in h
    # every background colour used is named in the legend
    used = set(re.findall(r"background:(#[0-9A-Fa-f]{6})", h))
    legend = h[h.index("Legend"):]
    assert used and used <= set(re.findall(r"background:(#[0-9A-Fa-f]{6})",
                                           legend))
    assert MARKS["stale"][1] in used and OKABE_ITO["orange"] in used


def test_html_escapes():
    st = hand_state()
    st = st.__class__(**{**st.__dict__, "hazards": (
        Hazard("stale", 0, 0x1000, "<b>&"),)})
    h = tlb_html(st)
    assert "&lt;b&gt;&amp;" in h and "<b>&" not in h


def test_real_run_state(seed_run):
    step = first_step(seed_run, "cmd_issue", op="CMD_SYNC")
    st = seed_run.states[step]
    text = tlb_text(st)
    check_plain(text)
    assert "CMD_TLBI_NH_VA asid=1 addr=0x40001000 leaf=1" in text
    assert "STALE" in text
    after = tlb_text(seed_run.states[-1])
    assert "STALE" not in after
    assert "Commands issued, not yet complete: 0" in after
