"""Fuzz tests: whatever text a log holds, parse_line returns an Event or
None or raises LogFormatError (the documented error) and nothing else;
parse_log and replay never raise for content; the fast path of parse_log
reads every line exactly as parse_line does."""

from __future__ import annotations

import string

from hypothesis import HealthCheck, given, settings, strategies as st

from iommu_viz.ingest.parse import Event, LogFormatError, parse_line, parse_log
from iommu_viz.ingest.replay import replay

VALID = [
    "map: IOMMU: iova=0x0000000ffff36000 paddr=0x00000001164d8000 size=4096",
    "map: IOMMU: iova=0x00000000000c0000 - 0x00000000000c1000 "
    "paddr=0x00000001a68c0000 size=4096",
    "unmap: IOMMU: iova=0x0000000000001000 - 0x0000000000002000 size=4096 "
    "unmapped_size=4096",
    "unmap: IOMMU: dev=gpu iova=0x0000000000001000 size=4096 unmapped_size=0",
    "qemu-kvm-4575 [008] ....... 438.308478: map: IOMMU: iova=0x200000 "
    "paddr=0x80000000 size=2097152",
    "[ 1.0] iommu: map: iova 0x6e200000 pa 0x00000004f4800000 size 0x400000",
    "iommu: mapping: iova 0x6e200000 pa 0x00000004f4800000 pgsize 0x200000 "
    "count 2",
    "unmap this: iova 0x6e200000 size 0x1000",
    "unmapped: iova 0x6e200000 size 0x1000",
]

# text made of the characters these lines are made of, to hit near misses
ALPHABET = string.ascii_letters + string.digits + " -=:.[]_\t\r" + "\u0664\xe9"


def _check_line(text):
    try:
        ev = parse_line(text, 3)
    except LogFormatError as e:
        assert e.lineno == 3 and e.reason
        return
    assert ev is None or isinstance(ev, Event)
    if ev is not None:
        assert 0 <= ev.iova < 1 << 64 and 0 <= ev.size < 1 << 64
        assert ev.paddr is None or 0 <= ev.paddr < 1 << 64


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_random_text_raises_only_the_documented_error(text):
    _check_line(text)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(VALID), st.data())
def test_mutated_event_lines(line, data):
    """Valid lines with characters replaced, inserted or deleted."""
    chars = list(line)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(("replace", "insert", "delete")))
        pos = data.draw(st.integers(0, max(0, len(chars) - 1)))
        if op == "delete" and chars:
            del chars[pos]
        else:
            c = data.draw(st.sampled_from(ALPHABET))
            if op == "insert" or not chars:
                chars.insert(pos, c)
            else:
                chars[pos] = c
    _check_line("".join(chars))


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.sampled_from(VALID), st.text(ALPHABET)),
                max_size=12))
def test_logs_never_raise_and_fast_path_agrees(lines):
    log = parse_log([ln + "\n" for ln in lines])
    assert log.lines == len(lines)
    assert log.lines == len(log.events) + log.skipped + log.malformed
    # each event is what parse_line makes of its line (flags aside)
    for ev in log.events:
        one = parse_line(lines[ev.line - 1], ev.line)
        assert one is not None
        assert one[:8] == ev[:8]
    for p in log.problems:
        try:
            parse_line(lines[p.lineno - 1])
        except LogFormatError as e:
            assert e.reason == p.reason
        else:
            raise AssertionError(f"line {p.lineno} was reported malformed")
    # and a replay of anything completes with a consistent summary
    for kernel in ("v5.4", "v6.13"):
        r = replay(lines, kernel=kernel, progress=False)
        s = r.summary
        assert s.events == len(log.events)
        assert s.mapped == sum(size for _, _, size, _, _ in r.table.mappings())
        assert s.peak_mapped >= s.mapped >= 0
        assert s.mapped == s.mapped_bytes - s.unmapped_bytes
        assert s.leaves == {} or sum(k * v for k, v in s.leaves.items()) \
            == s.mapped
