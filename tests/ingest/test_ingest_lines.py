"""Reading lines: one numbering for paths, standard input, file objects
and strings whatever the line endings; mail-wrapped events joined back at
their first line; every line counted once; the strict unmap's gather; the
replay streams (memory follows the mapped state, not the log)."""

from __future__ import annotations

import io
import tracemalloc

import pytest

from iommu_viz.ingest import parse, parse_log, replay
from iommu_viz.ingest.summary import ascii_text

MAP = "map: IOMMU: iova=0x{:x} paddr=0x{:x} size=4096"
UNMAP = "unmap: IOMMU: iova=0x{:x} size=4096 unmapped_size=4096"
BODY = ["noise", MAP.format(0x1000, 0x2000), "x", "",
        MAP.format(0x3000, 0x2000), UNMAP.format(0x1000)]


def _lines(log):
    return [e.line for e in log.events], log.lines


@pytest.mark.parametrize("nl", ["\n", "\r\n", "\r\r\n", "\r"])
def test_one_numbering_for_every_source(tmp_path, nl, small_blocks):
    text = nl.join(BODY) + nl
    want = ([2, 5, 6], 6)
    path = tmp_path / "t.log"
    path.write_bytes(text.encode())
    assert _lines(parse_log(path)) == want
    assert _lines(parse_log(str(path))) == want
    assert _lines(parse_log(text)) == want                  # a str of text
    assert _lines(parse_log(io.BytesIO(text.encode()))) == want  # stdin
    assert _lines(parse_log(io.StringIO(text, newline=""))) == want
    with open(path, encoding="utf-8") as f:                 # text mode
        assert _lines(parse_log(f)) == want
    with open(path, "rb") as f:
        assert _lines(parse_log(f)) == want


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(parse, "_BATCH", 3)
    monkeypatch.setattr(parse, "_BLOCK", 7)


def test_a_lone_cr_inside_text_ends_a_line(small_blocks):
    text = "a\rb\r\r\r\nc\n" + MAP.format(0x1000, 0) + "\r"
    log = parse_log(text)
    assert log.lines == 4 and log.events[0].line == 4


FT = "qemu-kvm-4575 [008] ....... 438.308480: "
WRAPS = [
    # two lines, the break inside the range
    ([FT + "unmap: IOMMU: iova=0x0000000040005000 -",
      "0x0000000040006000 size=4096 unmapped_size=4096"], 1),
    # three lines, mail-quoted
    (["> " + FT + "unmap: IOMMU:",
      "> iova=0x0000000040005000 - 0x0000000040006000 size=4096",
      "> unmapped_size=4096"], 2),
    # the break right after the event name
    ([FT + "unmap:",
      "IOMMU: iova=0x0000000040005000 - 0x0000000040006000 size=4096 "
      "unmapped_size=4096"], 1),
    # a pr_debug piece, nested quotes
    ([">> [  438.308480] iommu: unmapped: iova 0x40005000",
      ">> size 0x1000"], 1),
]


@pytest.mark.parametrize("wrapped, joined", WRAPS)
def test_mail_wrapped_events_are_joined(wrapped, joined, small_blocks):
    lines = ["first line", MAP.format(0x40000000, 0x80000000)] + wrapped + \
        ["last line"]
    for source in (lines, "\n".join(lines) + "\n"):
        log = parse_log(source)
        assert log.malformed == 0 and log.rejoined == joined
        ev = log.events[-1]
        assert (ev.line, ev.iova, ev.size) == (3, 0x40005000, 4096)
        assert log.lines == len(log.events) + log.skipped + log.rejoined
    s = replay(lines).summary
    assert s.rejoined == joined and f"rejoined lines    {joined:>10}" in str(s)


def test_a_wrapped_fault_report_is_joined():
    lines = ["[ 5.6] xhci_hcd 0000:00:14.0: AMD-Vi: Event logged",
             "[IO_PAGE_FAULT domain=0x000d address=0xfffd2000",
             "flags=0x0000]"]
    log = parse_log(lines)
    assert log.rejoined == 2 and log.fault_lines == 1
    assert log.faults[0].iova == 0xfffd2000 and log.faults[0].line == 1


def test_a_malformed_line_before_a_complete_one_is_not_joined():
    lines = [FT + "unmap: IOMMU: iova=0x0000000040005000 -",
             UNMAP.format(0x2000),
             "map: IOMMU: iova=0xzz paddr=0x1 size=4096",
             "nothing to finish it"]
    log = parse_log(lines)
    assert log.rejoined == 0 and log.malformed == 2
    assert [p.lineno for p in log.problems] == [1, 3]
    assert [e.line for e in log.events] == [2]
    assert log.skipped == 1


def test_every_line_is_counted_once():
    lines = ["noise", MAP.format(0x1000, 0), FT + "unmap: IOMMU:",
             "iova=0x1000 size=4096 unmapped_size=4096",
             "AMD-Vi: Event logged [IO_PAGE_FAULT device=00:14.0 "
             "domain=0x1 address=0x1000 flags=0x0]",
             "map: IOMMU: iova=0xzz paddr=0x1 size=4096"]
    log = parse_log(lines)
    assert (len(log.events), log.skipped, log.malformed, log.rejoined,
            log.fault_lines) == (2, 1, 1, 1, 1)
    assert log.lines == 6


def test_printed_text_is_ascii():
    lines = ["map: IOMMU: iova=0x\u0664\u0664 paddr=0x1 size=4096",
             MAP.format(0x1000, 0x2000)]
    r = replay(lines)
    assert not r.problems[0].text.isascii()
    assert ascii_text(str(r.problems[0])).isascii()
    assert "\\u0664" in ascii_text(r.problems[0].text)


# ---------------------------------------------------------------- gather
@pytest.mark.parametrize("kernel, calls", [
    ("v4.20", {"tlb_add_flush": 4}),
    ("v5.4", {"tlb_add_page": 4}),
    # __iommu_unmap hands unmap_pages the gather iommu_unmap put on its
    # stack (iommu.c, v6.12): every leaf of the run is added to it
    ("v6.12", {"tlb_add_page": 4}),
    ("v6.13", {"tlb_add_page": 4}),
])
def test_a_strict_unmap_passes_its_gather(kernel, calls):
    lines = ["map: IOMMU: iova=0x10000 paddr=0x80000 size=16384",
             "unmap: IOMMU: iova=0x10000 size=16384 unmapped_size=16384"]
    assert replay(lines, kernel=kernel).summary.tlb_calls == calls
    # one page at a time (the fast path) too
    lines = [MAP.format(0x10000 + k * 4096, 0x80000) for k in range(4)] + \
        [UNMAP.format(0x10000 + k * 4096) for k in range(4)]
    assert replay(lines, kernel=kernel).summary.tlb_calls == calls


def test_the_map_clean_up_unmaps_with_a_gather_too():
    # v6.12: a 2M block and a 4K page; the page is taken, so iommu_map
    # unmaps the block it had mapped, through iommu_unmap and its gather
    lines = [MAP.format(0x40200000, 0x5000),
             "map: IOMMU: iova=0x40000000 paddr=0x80000000 size=2101248"]
    s = replay(lines, kernel="v6.12").summary
    assert s.rejected == 1 and s.tlb_calls == {"tlb_add_page": 1}
    assert s.mapped == 4096


# ---------------------------------------------------------------- streaming
def _churn(n):
    """n events that map and unmap the same few pages: the mapped state
    stays tiny however long the log."""
    for k in range(n // 2):
        a = 0x100000 + (k % 8) * 4096
        yield MAP.format(a, 0x200000 + a)
        yield UNMAP.format(a)


def test_memory_follows_the_mapped_state_not_the_log():
    n = 30_000
    tracemalloc.start()
    try:
        r = replay(_churn(n), keep_events=False, progress=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert r.summary.events == n and r.events is None
    # the events alone would take about 60 bytes each if they were kept
    assert peak < n * 60 / 4, peak
    with pytest.raises(ValueError, match="were not kept"):
        r.table_at(3)
    # the same log, kept: table_at replays the prefix
    r = replay(list(_churn(40)))
    assert r.table_at(1).iova_to_phys(0x100000) == 0x300000


def test_table_after_at_events_while_streaming():
    r = replay(_churn(40), keep_events=False, at=1)
    assert r.table_after.iova_to_phys(0x100000) == 0x300000
    assert r.table.iova_to_phys(0x100000) == 0
    with pytest.raises(ValueError, match="beyond the log's 40 events"):
        replay(_churn(40), at=41)
