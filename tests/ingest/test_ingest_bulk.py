"""The bulk reader of parse_log (one regular expression over a block of
lines for the common ftrace forms, the per-line reader _scan for every
other line, in its place) gives exactly what reading every line with
_scan gives: same events (all columns, flags and line numbers included),
same counts, same problems, from every kind of source and wherever the
blocks are cut."""

from __future__ import annotations

import io
import string

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from iommu_viz.ingest import parse
from iommu_viz.ingest.parse import _Reader, parse_line, parse_log

PREFIXES = [
    "", "qemu-kvm-4575 [008] ....... 438.308478: ",
    "          <idle>-0     [003] d.h1.  1234.567890: ",
    "qemu-kvm  4575 [008]   438.308478: iommu:",       # perf script
    "[  438.308478] iommu: ", "x", "xun", "\t", " ]", "un",
    "Iperf-12 [000] 1.0: ",                          # an 'I' before IOMMU:
    "foo IOMMU: ", "map: IOMMU:x ",                  # an earlier IOMMU:
]
TAILS = ["", " ", "\r", " \t\r", "\n", "\r\n", " x", "\x0b"]
HEXES = ["0", "1000", "00000000000c0000", "ffffffffffff0000",
         "0000000100000000", "ABCD0000", "fffffffffffff000", "1" * 17, "g1"]
SIZES = ["4096", "0", "2097152", "9" * 19, "9" * 20, "18446744073709551615",
         "4k"]


@st.composite
def ftrace_line(draw):
    kind = draw(st.sampled_from(["map", "unmap"]))
    iova = draw(st.sampled_from(HEXES))
    size = draw(st.sampled_from(SIZES))
    body = f"iova=0x{iova}"
    if draw(st.booleans()):
        # a range whose end is right, off by one page, or not hex
        end = draw(st.sampled_from(["right", "wrong", "zz"]))
        if end == "right" and size.isdigit() and all(
                c in string.hexdigits for c in iova):
            end = f"{int(iova, 16) + int(size):016x}"
        elif end != "zz":
            end = "0000000000001000"
        body += f" - 0x{end}"
    if kind == "map":
        body += f" paddr=0x{draw(st.sampled_from(HEXES))} size={size}"
    else:
        body += f" size={size} unmapped_size={draw(st.sampled_from(SIZES))}"
    if draw(st.integers(0, 9)) == 0:
        body = "dev=gpu " + body
    sep = draw(st.sampled_from([" ", " ", " ", "", "  "]))
    return (draw(st.sampled_from(PREFIXES)) + kind + ": IOMMU:" + sep + body
            + draw(st.sampled_from(TAILS)))


PR_DEBUG = [
    "[ 1.0] iommu: map: iova 0x6e200000 pa 0x00000004f4800000 size 0x400000",
    "iommu: mapping: iova 0x6e200000 pa 0x00000004f4800000 pgsize 0x200000 "
    "count 2",
    "mapping: iova 0x6e400000 pa 0x00000004f4a00000 pgsize 0x1000 count 1",
    "unmap this: iova 0x6e200000 size 0x1000",
    "unmapped: iova 0x6e200000 size 0x1000",
    "unmapped: iova 0x6e200000 size 1000x",
]
LINE = st.one_of(
    ftrace_line(), ftrace_line(), ftrace_line(),
    st.sampled_from(PR_DEBUG),
    st.text(string.ascii_letters + string.digits + " -=:.[]_\t\r\n" + "\xe9",
            max_size=40),
)


def _reference(lines):
    """Every line read one by one by _scan (the per-line reader)."""
    r = _Reader()
    r.lines(lines)
    return _shape(r.result())


def _shape(log):
    ev = log.events
    problems = [(p.lineno, p.text, p.reason) for p in log.problems]
    return ([tuple(e) for e in ev], list(ev.lines), log.lines, log.skipped,
            log.malformed, problems)


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of a few lines/characters, so that every log is cut often."""
    monkeypatch.setattr(parse, "_BATCH", 3)
    monkeypatch.setattr(parse, "_BLOCK", 97)


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(LINE, max_size=30))
def test_bulk_and_per_line_readers_agree(small_blocks, lines):
    want = _reference(lines)
    assert _shape(parse_log(lines)) == want
    # and each event is what parse_line makes of its line (but for the
    # count of a pr_debug piece, which its neighbours may trim)
    log = parse_log(lines)
    for ev in log.events:
        one = parse_line(lines[ev.line - 1], ev.line)
        assert one is not None
        assert one[:5] + one[6:8] == ev[:5] + ev[6:8]


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(LINE.filter(lambda s: "\n" not in s and "\r" not in s),
                max_size=30), st.sampled_from(["\n", "\r\n"]))
def test_every_source_reads_alike(small_blocks, tmp_path_factory, lines, nl):
    """A file (read in blocks of characters), its bytes, a list with or
    without newlines and a generator give the reference result."""
    want = _reference(lines)
    text = "".join(ln + nl for ln in lines)
    path = tmp_path_factory.mktemp("bulk") / "t.log"
    path.write_bytes(text.encode())
    assert _shape(parse_log(path)) == want
    assert _shape(parse_log(io.BytesIO(text.encode()))) == want
    assert _shape(parse_log([ln + nl for ln in lines])) == want
    assert _shape(parse_log(iter(lines))) == want
    assert _shape(parse_log([ln.encode() for ln in lines])) == want
    with open(path, encoding="utf-8") as f:
        assert _shape(parse_log(f)) == want


def test_list_lines_with_inner_newlines_are_read_one_by_one(small_blocks):
    good = "map: IOMMU: iova=0x1000 paddr=0x2000 size=4096"
    lines = [good, good + "\n" + good, "", good + "\n", good, good + "\n"]
    assert _shape(parse_log(lines)) == _reference(lines)
    assert len(parse_log(lines).events) == 4


def test_last_line_without_newline(tmp_path):
    path = tmp_path / "t.log"
    path.write_text("noise\nmap: IOMMU: iova=0x1000 paddr=0x2000 size=4096")
    log = parse_log(path)
    assert log.lines == 2 and log.skipped == 1
    assert log.events[0].line == 2 and log.events[0].paddr == 0x2000


def test_line_numbers_across_blocks(small_blocks):
    ftrace = "t-1 [000] 1.0: map: IOMMU: iova=0x{:016x} - 0x{:016x} " \
             "paddr=0x{:016x} size=4096"
    lines = []
    for i in range(50):
        lines.append(ftrace.format(i << 12, (i + 1) << 12, i << 20))
        if i % 7 == 3:
            lines.append("t-1 [000] 1.0: kvm_exit: reason IRQ")
        if i % 11 == 5:
            lines.append("iommu: map: iova 0x7000 pa 0x9000 size 0x1000")
            lines.append("iommu: mapping: iova 0x7000 pa 0x9000 pgsize 0x1000")
    log = parse_log(lines)
    assert _shape(log) == _reference(lines)
    for ev in log.events:
        assert parse_line(lines[ev.line - 1]) is not None
    assert [e.child for e in log.events if e.kind == "debug_mapping"] == \
        [True] * 5


def test_an_earlier_iommu_marker_decides_as_parse_line_does():
    """The first "IOMMU:" of a line is the one read: here it is followed
    by "x", which parse_line reports; parse_log reports it too."""
    line = "map: IOMMU:x map: IOMMU: iova=0x1000 paddr=0x2000 size=4096"
    with pytest.raises(parse.LogFormatError) as e:
        parse_line(line)
    log = parse_log([line])
    assert not log.events and log.malformed == 1
    assert log.problems[0].reason == e.value.reason


def test_wrong_range_end_in_a_block_is_reported():
    good = "map: IOMMU: iova=0x{:016x} - 0x{:016x} paddr=0x0 size=4096"
    lines = [good.format(i << 12, (i + 1) << 12) for i in range(10)]
    lines[6] = good.format(6 << 12, 8 << 12)
    log = parse_log(lines)
    assert len(log.events) == 9 and log.malformed == 1
    assert log.problems[0].lineno == 7
    assert "range end 0x0000000000008000 is not iova + size" in \
        log.problems[0].reason


@pytest.mark.parametrize("batch", [3, 256])
def test_an_ftrace_event_between_request_and_piece_unlinks_them(
        monkeypatch, batch):
    monkeypatch.setattr(parse, "_BATCH", batch)
    lines = ["iommu: map: iova 0x7000 pa 0x9000 size 0x1000",
             "map: IOMMU: iova=0x1000 paddr=0x2000 size=4096",
             "iommu: mapping: iova 0x7000 pa 0x9000 pgsize 0x1000"]
    log = parse_log(lines)
    assert [(e.kind, e.covered, e.child) for e in log.events] == [
        ("debug_map", False, False), ("map", False, False),
        ("debug_mapping", False, False)]
    assert _shape(log) == _reference(lines)


def test_a_line_longer_than_many_blocks(small_blocks, tmp_path):
    good = "map: IOMMU: iova=0x1000 paddr=0x2000 size=4096"
    long_ = "x" * 5000 + " map: IOMMU: iova=0x3000 paddr=0x4000 size=4096"
    lines = [good, long_, "y" * 3000, good]
    path = tmp_path / "long.log"
    path.write_text("\n".join(lines))
    log = parse_log(path)
    assert _shape(log) == _reference(lines)
    assert [e.line for e in log.events] == [1, 2, 4]
