"""Parser tests: every line format the kernel has printed for iommu:map /
iommu:unmap and the iommu.c pr_debug lines, lines that are not events, and
malformed event lines (reported with line number and text, never raised
from parse_log)."""

from __future__ import annotations

import io

import pytest

from iommu_viz.ingest.parse import (
    Event, LogFormatError, MAX_PROBLEMS, parse_line, parse_log,
)

PREFIX = "qemu-kvm-4575 [008] ....... 438.308478: "
DMESG = "[  438.308478] iommu: "


# ---------------------------------------------------------------- ftrace
@pytest.mark.parametrize("line, want", [
    # v4.x - v5.3: no range
    ("map: IOMMU: iova=0x0000000ffff36000 paddr=0x00000001164d8000 size=4096",
     ("map", 0xffff36000, 4096, 0x1164d8000, None, None)),
    # v5.4+: iova=A - B
    ("map: IOMMU: iova=0x00000000000c0000 - 0x00000000000c1000 "
     "paddr=0x00000001a68c0000 size=4096",
     ("map", 0xc0000, 4096, 0x1a68c0000, None, None)),
    ("unmap: IOMMU: iova=0x0000000000001000 - 0x0000000000002000 size=4096 "
     "unmapped_size=4096",
     ("unmap", 0x1000, 4096, None, 4096, None)),
    ("unmap: IOMMU: iova=0x0000000000001000 size=8192 unmapped_size=0",
     ("unmap", 0x1000, 8192, None, 0, None)),
    # vendor trees: dev=NAME after IOMMU:
    ("map: IOMMU: dev=a600000.dwc3 iova=0x00000000fff00000 "
     "paddr=0x00000000aa000000 size=1048576",
     ("map", 0xfff00000, 1 << 20, 0xaa000000, None, "a600000.dwc3")),
    ("unmap: IOMMU: dev=kgsl-3d0 iova=0x0000000000010000 size=65536 "
     "unmapped_size=65536",
     ("unmap", 0x10000, 65536, None, 65536, "kgsl-3d0")),
    ("map: IOMMU: dev=0000:01:00.0 iova=0x0000000000200000 - "
     "0x0000000000400000 paddr=0x0000000080000000 size=2097152",
     ("map", 0x200000, 1 << 21, 0x80000000, None, "0000:01:00.0")),
    # dev= elsewhere and an extra vendor key: read field by field
    ("unmap: IOMMU: iova=0x0000000000010000 size=4096 unmapped_size=4096 "
     "dev=gpu prot=0x3",
     ("unmap", 0x10000, 4096, None, 4096, "gpu")),
    # upper-case hex digits are accepted
    ("map: IOMMU: iova=0x00000000ABCD0000 paddr=0x00000000DEAD0000 size=4096",
     ("map", 0xabcd0000, 4096, 0xdead0000, None, None)),
])
@pytest.mark.parametrize("prefix", [
    "", PREFIX, "          <idle>-0     [003] d.h1.  1234.567890: ",
    "  kworker/u16:2-123   [001] .....  99.000001: ",
    "qemu-kvm  4575 [008]   438.308478: iommu:",        # perf script
])
def test_ftrace_formats(line, want, prefix):
    ev = parse_line(prefix + line + "\n", 7)
    assert isinstance(ev, Event)
    kind, iova, size, paddr, unmapped, dev = want
    assert (ev.kind, ev.iova, ev.size, ev.paddr, ev.unmapped, ev.dev) == \
        (kind, iova, size, paddr, unmapped, dev)
    assert ev.line == 7 and ev.count == 1
    assert not ev.covered and not ev.child


def test_trace_cmd_padding_and_crlf():
    ev = parse_line("qemu-kvm-4575 [008] 438.308478: map:                 "
                    "IOMMU: iova=0x0000000000001000 paddr=0x0000000000002000 "
                    "size=4096\r\n")
    assert (ev.kind, ev.iova, ev.paddr) == ("map", 0x1000, 0x2000)


# ---------------------------------------------------------------- pr_debug
@pytest.mark.parametrize("line, want", [
    ("map: iova 0x6e200000 pa 0x00000004f4800000 size 0x400000",
     ("debug_map", 0x6e200000, 0x400000, 0x4f4800000, 1)),
    ("mapping: iova 0x6e200000 pa 0x00000004f4800000 pgsize 0x200000 count 2",
     ("debug_mapping", 0x6e200000, 0x200000, 0x4f4800000, 2)),
    # before v5.14: no count
    ("mapping: iova 0x6e200000 pa 0x00000004f4800000 pgsize 0x200000",
     ("debug_mapping", 0x6e200000, 0x200000, 0x4f4800000, 1)),
    # v3.x: pa as 0x%lx, pgsize in decimal (%lu)
    ("mapping: iova 0x1000 pa 0x80001000 pgsize 4096",
     ("debug_mapping", 0x1000, 4096, 0x80001000, 1)),
    ("unmap this: iova 0x6e200000 size 0x1000",
     ("debug_unmap", 0x6e200000, 0x1000, None, 1)),
    ("unmapped: iova 0x6e200000 size 0x1000",
     ("debug_unmapped", 0x6e200000, 0x1000, None, 1)),
    # v3.x printed the unmapped size as %lx, hex without 0x
    ("unmapped: iova 0x6e200000 size 200000",
     ("debug_unmapped", 0x6e200000, 0x200000, None, 1)),
])
@pytest.mark.parametrize("prefix", [
    "", "iommu: ", DMESG, "Mar 01 12:00:00 host kernel: iommu: ",
    "<7>[   12.5] iommu: ",
])
def test_pr_debug_formats(line, want, prefix):
    ev = parse_line(prefix + line + "\n")
    kind, iova, size, paddr, count = want
    assert (ev.kind, ev.iova, ev.size, ev.paddr, ev.count) == \
        (kind, iova, size, paddr, count)
    assert ev.unmapped is None and ev.dev is None


# ---------------------------------------------------------------- other lines
@pytest.mark.parametrize("line", [
    "",
    "\n",
    "# tracer: nop",
    "#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION",
    PREFIX + "attach_device_to_domain: IOMMU: device=0000:01:00.0",
    PREFIX + "add_device_to_group: IOMMU: groupID=7 device=0000:01:00.0",
    PREFIX + "io_page_fault: IOMMU:arm-smmu-v3 0000:01:00.0 "
             "iova=0x0000000000001000 flags=0x0000",
    PREFIX + "map_sg: IOMMU: iova=0x0000000000001000 paddr=0x2 size=4096",
    PREFIX + "dma_map: IOMMU: iova=0x0000000000001000 paddr=0x2 size=4096",
    PREFIX + "kvm_exit: reason EXTERNAL_INTERRUPT rip 0xffffffff info 0 0",
    "[    1.0] nvme 0000:01:00.0: dma_map: iova 0x1000 pa 0x2000 size 0x1000",
    "[    1.0] vfio-pci 0000:01:00.0: enabling device (0000 -> 0002)",
    "remapping: iova 0x1000 pa 0x2000 pgsize 0x1000",
    "the unmap this: IOMMU thing",
])
def test_other_lines_are_skipped(line):
    assert parse_line(line) is None


# ---------------------------------------------------------------- malformed
@pytest.mark.parametrize("line, reason", [
    ("map: IOMMU: iova=0x0000000000001000 size=4096", "no paddr= field"),
    ("map: IOMMU: iova=0x00000000000g1000 paddr=0x2000 size=4096",
     "not a 0x hex number"),
    ("map: IOMMU: iova=0x1000 paddr=0x2000 size=0x1000",
     "not a decimal number"),
    ("map: IOMMU: iova=0x1000 - 0x3000 paddr=0x2000 size=4096",
     "range end 0x3000 is not iova + size"),
    ("unmap: IOMMU: iova=0x1000 - 0x2000 size=4096 unmapped_size=4096 "
     "size=4096", "size= twice"),
    ("unmap: IOMMU: iova=0x1000 paddr=0x2000 size=4096 unmapped_size=0",
     "does not carry a paddr= field"),
    ("map: IOMMU: iova=0x1000 paddr=0x2000 size=4096 unmapped_size=0",
     "does not carry a unmapped_size= field"),
    ("unmap: IOMMU: iova=0x1000 size=4096", "no unmapped_size= field"),
    ("map: IOMMU: iova=0x000000000000c", "no paddr= field"),   # truncated
    ("map: IOMMU: iova=0x1000 paddr=0x2000 size=4096 garbage",
     "unexpected text 'garbage'"),
    ("map: IOMMU: iova=0x1000 - paddr=0x2000 size=4096",
     "iova range has no end"),
    ("map: IOMMU: iova=0x1000 - 0xzz paddr=0x2000 size=4096",
     "range end '0xzz' is not a 0x hex number"),
    ("map: IOMMU: iova=0x10000000000000000 paddr=0x2000 size=4096",
     "does not fit in 64 bits"),
    ("map: IOMMU: iova=0x1000 paddr=0x2000 size=99999999999999999999",
     "does not fit in 64 bits"),
    ("map: IOMMU: iova=0x1000 paddr=0x2000 size=\u0664\u0660\u0669\u0666",
     "not a decimal number"),
    ("map: iova 0x6e200000 pa size 0x400000", "'map: iova 0x<hex>"),
    ("mapping: iova 0x1000 pa 0x2000 pgsize 0x3000", "not a power of two"),
    ("mapping: iova 0x1000 pa 0x2000 pgsize 0x1000 count 0", "count 0"),
    ("mapping: iova 0x1000 pa 0x2000", "'mapping: iova 0x<hex>"),
    ("unmap this: iova 0x1000 size 4096", "'unmap this: iova"),
    ("unmapped: iova 0x1000", "'unmapped: iova"),
    ("unmapped: iova 0x1000 size 0x1_000", "'unmapped: iova"),
])
def test_malformed_event_lines(line, reason):
    text = PREFIX + line
    with pytest.raises(LogFormatError) as ei:
        parse_line(text, 42)
    e = ei.value
    assert reason in e.reason
    assert e.lineno == 42 and e.text == text
    assert str(e).startswith("line 42: ") and repr(text) in str(e)
    assert isinstance(e, ValueError)
    # in a log: recorded with its line number, the rest still parsed
    good = PREFIX + "map: IOMMU: iova=0x1000 paddr=0x2000 size=4096"
    log = parse_log(["# header\n", good + "\n", text + "\n", good + "\n"])
    assert log.malformed == 1 and len(log.problems) == 1
    assert log.problems[0].lineno == 3 and reason in log.problems[0].reason
    assert log.problems[0].text == text
    assert len(log.events) == 2 and log.skipped == 1 and log.lines == 4
    assert [e.line for e in log.events] == [2, 4]


def test_long_malformed_text_is_shortened():
    text = "map: IOMMU: iova=0x1000 paddr=0x2000 size=4096 " + "x" * 500
    with pytest.raises(LogFormatError) as ei:
        parse_line(text)
    assert len(ei.value.text) <= 160 and ei.value.text.endswith("...")


def test_problems_are_capped_but_counted():
    bad = "map: IOMMU: iova=0xZZ paddr=0x2000 size=4096\n"
    log = parse_log([bad] * (MAX_PROBLEMS + 5))
    assert log.malformed == MAX_PROBLEMS + 5
    assert len(log.problems) == MAX_PROBLEMS


def test_parse_line_rejects_non_text():
    with pytest.raises(TypeError, match="takes a str"):
        parse_line(b"map: IOMMU: iova=0x1000 paddr=0x2000 size=4096")


# ---------------------------------------------------------------- linking
def test_pr_debug_request_and_pieces_are_linked():
    log = parse_log([
        DMESG + "map: iova 0x6e200000 pa 0x00000004f4800000 size 0x401000",
        "[  438.4] some other driver line",
        DMESG + "mapping: iova 0x6e200000 pa 0x00000004f4800000 "
                "pgsize 0x200000 count 2",
        DMESG + "mapping: iova 0x6e600000 pa 0x00000004f4c00000 "
                "pgsize 0x1000 count 1",
        DMESG + "unmap this: iova 0x6e200000 size 0x200000",
        DMESG + "unmapped: iova 0x6e200000 size 0x200000",
        # a piece with no request before it (only that dyndbg line on)
        DMESG + "mapping: iova 0x1000 pa 0x2000 pgsize 0x1000 count 1",
        # a request with no pieces (nothing unmapped, or only it enabled)
        DMESG + "unmap this: iova 0x9000 size 0x1000",
    ])
    ev = log.events
    assert [e.kind for e in ev] == [
        "debug_map", "debug_mapping", "debug_mapping", "debug_unmap",
        "debug_unmapped", "debug_mapping", "debug_unmap"]
    assert [e.covered for e in ev] == [True, False, False, True, False,
                                       False, False]
    assert [e.child for e in ev] == [False, True, True, False, True, False,
                                     False]
    assert log.skipped == 1


def test_piece_out_of_the_request_is_not_linked():
    log = parse_log([
        "map: iova 0x10000 pa 0x20000 size 0x2000",
        "mapping: iova 0x50000 pa 0x60000 pgsize 0x1000 count 1",   # elsewhere
        "map: iova 0x10000 pa 0x20000 size 0x2000",
        "mapping: iova 0x10000 pa 0x99000 pgsize 0x1000 count 1",   # wrong pa
    ])
    assert [(e.covered, e.child) for e in log.events] == [
        (False, False), (False, False), (False, False), (False, False)]


def test_map_pages_count_is_trimmed_to_what_was_mapped():
    # v5.14+: count 3 asked across a table end; map_pages mapped one page,
    # and __iommu_map went round again from 0x200000
    log = parse_log([
        "map: iova 0x1ff000 pa 0x801ff000 size 0x3000",
        "mapping: iova 0x1ff000 pa 0x801ff000 pgsize 0x1000 count 3",
        "mapping: iova 0x200000 pa 0x80200000 pgsize 0x1000 count 2",
    ])
    assert [e.count for e in log.events] == [1, 1, 2]
    # a count running past the request is cut at its end
    log = parse_log([
        "map: iova 0x10000 pa 0x20000 size 0x2000",
        "mapping: iova 0x10000 pa 0x20000 pgsize 0x1000 count 5",
    ])
    assert log.events[1].count == 2


# ---------------------------------------------------------------- sources
LOG_TEXT = (
    "# tracer: nop\n"
    + PREFIX + "map: IOMMU: iova=0x0000000000001000 - 0x0000000000002000 "
               "paddr=0x0000000000005000 size=4096\n"
    + PREFIX + "map: IOMMU: dev=gpu iova=0x0000000000003000 "
               "paddr=0x0000000000006000 size=4096\n"
    + PREFIX + "unmap: IOMMU: iova=0x0000000000001000 size=4096 "
               "unmapped_size=4096\n"
    + "garbage line \xe9\n"
    + PREFIX + "unmap: IOMMU: iova=0xnothex size=4096 unmapped_size=4096\n"
)


def _summary(log):
    return ([tuple(e) for e in log.events], log.lines, log.skipped,
            log.malformed, [str(p) for p in log.problems])


def test_every_source_kind_gives_the_same_result(tmp_path):
    path = tmp_path / "t.log"
    path.write_text(LOG_TEXT, encoding="utf-8")
    want = _summary(parse_log(LOG_TEXT.splitlines(keepends=True)))
    assert want[1:4] == (6, 2, 1)
    assert [e[0] for e in want[0]] == ["map", "map", "unmap"]
    assert want[0][1][7] == "gpu"
    assert _summary(parse_log(str(path))) == want
    assert _summary(parse_log(path)) == want
    with open(path, encoding="utf-8") as f:
        assert _summary(parse_log(f)) == want
    with open(path, "rb") as f:
        assert _summary(parse_log(f)) == want
    assert _summary(parse_log(io.StringIO(LOG_TEXT))) == want
    assert _summary(parse_log(io.BytesIO(LOG_TEXT.encode()))) == want
    assert _summary(parse_log(
        [ln.encode() for ln in LOG_TEXT.splitlines(keepends=True)])) == want
    # lines without their newlines parse the same
    assert _summary(parse_log(iter(LOG_TEXT.splitlines()))) == want


def test_invalid_utf8_is_replaced_not_raised(tmp_path):
    path = tmp_path / "bin.log"
    path.write_bytes(b"\xff\xfe\x00garbage\n" + LOG_TEXT.encode())
    log = parse_log(path)
    assert len(log.events) == 3 and log.lines == 7


def test_event_log_indexing():
    log = parse_log(LOG_TEXT.splitlines())
    ev = log.events
    assert len(ev) == 3 and ev[-1] == ev[2]
    assert ev[0:2] == [ev[0], ev[1]]
    with pytest.raises(IndexError, match="event 3 is out of range"):
        ev[3]
    assert ev.devices == [None, "gpu"]
