"""Parse a log into events: the map/unmap requests and pieces (see
:mod:`.formats`) and the fault reports (see :mod:`.faults`), in order.

:func:`parse_log` reads a whole log into a :class:`ParsedLog`;
:class:`LogStream` hands the events out a block at a time, so that a
replay can apply them as they are read and the log never sits in memory.
Lines come from :mod:`.lines` (one numbering for every source).

A line wrapped by a mail client (an event or a fault report broken over
two or three lines, ``> `` quoted or not) is joined again: a line that is
malformed, or that ends where an event's fields should start (``unmap:``,
``IOMMU:``), is held; when the next line is not an event by itself and
the two (or three) read together as one, they become one event at the
first line's number and the others count as *rejoined*. Otherwise the held
line is reported as it was.

Each line is exactly one of: an event, a fault report's line, a skipped
line, a malformed line, or a rejoined continuation::

    lines == events + fault_lines + skipped + malformed + rejoined
"""

from __future__ import annotations

from itertools import islice

from .eventlog import EventLog, ParsedLog
from .formats import (  # noqa: F401  (re-exported: the public names)
    CHILD, COVERED, DBG_MAP, DBG_MAPPING, DBG_UNMAP, DBG_UNMAPPED,
    KIND_NAMES, MAP, MAX_PROBLEMS, UNMAP, Event, LogFormatError, Problem,
    parse_line,
)
from .lines import open_text
from .reader import _Reader  # noqa: F401  (tests read it)

__all__ = [
    "Event", "EventLog", "LogFormatError", "ParsedLog", "Problem",
    "parse_line", "parse_log", "LogStream", "KIND_NAMES",
    "MAP", "UNMAP", "DBG_MAP", "DBG_MAPPING", "DBG_UNMAP", "DBG_UNMAPPED",
    "COVERED", "CHILD",
]

#: lines of an iterable taken at a time; characters of a file read at a time
_BATCH = 256
_BLOCK = 1 << 15
_TICK = 0x4000           # lines between progress updates


def _read(source, progress, r):
    """Feed ``source`` to reader ``r``, yielding after each block."""
    text = open_text(source, _BLOCK)
    tick = _TICK          # lines read when progress is next updated
    if progress is not None:
        progress.start("parse", text.total if text is not None else None)
    try:
        if text is not None:
            for block in text:
                r.block("\n" + block)
                if progress is not None and r.n >= tick:
                    progress.update(text.tell())
                    tick = r.n + _TICK
                yield
            r.out.binary = text.binary
            if progress is not None and text.total is not None:
                progress.update(text.tell())
        else:
            it = iter(source)
            while True:
                batch = list(islice(it, _BATCH))
                if not batch:
                    break
                r.batch(batch)
                if progress is not None and r.n >= tick:
                    progress.update(r.n)
                    tick = r.n + _TICK
                yield
    finally:
        if text is not None:
            text.close()
        if progress is not None:
            progress.close()


class LogStream:
    """Parse ``source`` a block at a time: iterating gives
    :class:`~.eventlog.EventLog` segments, consecutive, together all the
    events (device names shared). ``parsed`` is the
    :class:`~.eventlog.ParsedLog` being filled (counts, problems and
    faults so far; its ``events`` stay empty); each fault's place among
    the events is in ``parsed.fault_at``.

        >>> s = LogStream(["map: IOMMU: iova=0x1000 paddr=0x2000 size=4096"])
        >>> [len(seg) for seg in s], s.parsed.lines
        ([1], 1)
    """

    def __init__(self, source, progress=None):
        self._reader = _Reader()
        self.parsed = self._reader.out
        self._blocks = _read(source, progress, self._reader)

    def __iter__(self):
        r = self._reader
        for _ in self._blocks:
            if len(r.ev) >= _BATCH:
                yield r.take()
        r.result()
        if len(r.ev):
            yield r.take(final=True)


def parse_log(source, progress=None) -> ParsedLog:
    """Parse a whole log: ``source`` is a path, a file object, a str
    holding the log's text (it has a line break) or an iterable of lines
    (str or bytes). Never raises for the log's content; malformed lines
    end up in ``problems``. ``progress``, if given, is an object with
    ``start(phase, total)``, ``update(done)`` and ``close()`` (see
    :mod:`iommu_viz.ingest.progress`).

    Lines are read a block at a time: the common ftrace map/unmap lines by
    one regular expression over the block, every other line by the same
    per-line reader as :func:`parse_line`, in its place; both give the same
    events."""
    r = _Reader()
    for _ in _read(source, progress, r):
        pass
    return r.result()
