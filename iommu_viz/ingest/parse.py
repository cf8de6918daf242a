"""Read the IOMMU map/unmap activity a Linux kernel logs.

Two sources are understood, in every wording the kernel has used:

* ftrace events ``iommu:map`` and ``iommu:unmap`` (include/trace/events/iommu.h,
  traced by iommu_map()/iommu_unmap() in drivers/iommu/iommu.c). Up to v5.3 the
  events print ``IOMMU: iova=0x... paddr=0x... size=N`` and
  ``IOMMU: iova=0x... size=N unmapped_size=N``; from v5.4 the iova is a range,
  ``iova=0x... - 0x...`` (start, start + size); some vendor trees add
  ``dev=NAME`` after ``IOMMU:``. The usual ftrace prefix (task-pid, CPU,
  flags, timestamp), a ``trace-cmd report`` or ``perf script`` prefix, or no
  prefix at all may come first.
* the ``pr_debug`` lines of __iommu_map()/__iommu_unmap() in
  drivers/iommu/iommu.c (seen in dmesg with dynamic debug on, usually behind
  ``iommu: ``): ``map: iova 0x.. pa 0x.. size 0x..`` (the request), then one
  ``mapping: iova 0x.. pa 0x.. pgsize 0x..`` line per piece (``count N``
  added in v5.14; ``pgsize`` printed in decimal by v3.x kernels), and
  ``unmap this: iova 0x.. size 0x..`` (the request), then one
  ``unmapped: iova 0x.. size 0x..`` line per piece unmapped (v3.x printed
  that size in hex without ``0x``).

Any other line is skipped and counted. A line that is one of these events but
does not read as the kernel prints it is *malformed*: :func:`parse_line`
raises :class:`LogFormatError` for it, :func:`parse_log` records it (line
number, text, reason) and carries on.

A ``pr_debug`` request and its pieces describe one operation; the parser
links them (the request is marked *covered*, the pieces *child*), so that a
replay applies the pieces and counts the request once. Under map_pages
(v5.14+) a ``mapping`` line's ``count`` is what was asked of the page table,
which may stop at the end of a table and map fewer; when the next piece starts
earlier than the count implies, the parser trims the count to what was in
fact mapped.

Example::

    >>> from iommu_viz.ingest.parse import parse_line
    >>> ev = parse_line("qemu-kvm-4575 [008] ....... 438.308478: map: IOMMU: "
    ...     "iova=0x00000000000c0000 - 0x00000000000c1000 "
    ...     "paddr=0x00000001a68c0000 size=4096")
    >>> ev.kind, hex(ev.iova), hex(ev.paddr), ev.size
    ('map', '0xc0000', '0x1a68c0000', 4096)
"""

from __future__ import annotations

import io
import os
import re
import sys
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import compress, islice, repeat
from operator import add, methodcaller, not_
from typing import NamedTuple

__all__ = [
    "Event", "EventLog", "LogFormatError", "ParsedLog", "Problem",
    "parse_line", "parse_log", "KIND_NAMES",
    "MAP", "UNMAP", "DBG_MAP", "DBG_MAPPING", "DBG_UNMAP", "DBG_UNMAPPED",
    "COVERED", "CHILD",
]

# Event kinds (stored as one byte each)
MAP = 0            # ftrace iommu:map, a whole iommu_map() request
UNMAP = 1          # ftrace iommu:unmap, a whole iommu_unmap() request
DBG_MAP = 2        # pr_debug "map:" request of __iommu_map
DBG_MAPPING = 3    # pr_debug "mapping:" piece of __iommu_map
DBG_UNMAP = 4      # pr_debug "unmap this:" request of __iommu_unmap
DBG_UNMAPPED = 5   # pr_debug "unmapped:" piece of __iommu_unmap

KIND_NAMES = ("map", "unmap", "debug_map", "debug_mapping", "debug_unmap",
              "debug_unmapped")

# Flags
COVERED = 1        # a pr_debug request followed by its piece lines
CHILD = 2          # a pr_debug piece that belongs to the request before it

#: How many malformed lines are kept with their text (all are counted).
MAX_PROBLEMS = 1000
_U64 = 1 << 64
_TEXT_MAX = 160

_H = r"([0-9a-fA-F]{1,16})"
_D = r"([0-9]{1,20})"
_END = r"[ \t\r\n]*$"
# What follows "IOMMU: " in the ftrace formats, fast path (the formats the
# kernel and the vendor trees print, in their order); anything else goes to
# the field-by-field reader for a precise error.
_FT_MAP = re.compile(
    r"(?:dev=(\S+) )?iova=0x" + _H + r"(?: - 0x" + _H + r")? paddr=0x" + _H
    + r" size=" + _D + _END, re.ASCII)
_FT_UNMAP = re.compile(
    r"(?:dev=(\S+) )?iova=0x" + _H + r"(?: - 0x" + _H + r")? size=" + _D
    + r" unmapped_size=" + _D + _END, re.ASCII)
# What follows ": iova " in the pr_debug formats.
_DBG = {
    DBG_MAP: re.compile(r"0x" + _H + r" pa 0x" + _H + r" size 0x" + _H + _END,
                        re.ASCII),
    DBG_MAPPING: re.compile(
        r"0x" + _H + r" pa 0x" + _H + r" pgsize (?:0x" + _H + r"|" + _D
        + r")(?: count " + _D + r")?" + _END, re.ASCII),
    DBG_UNMAP: re.compile(r"0x" + _H + r" size 0x" + _H + _END, re.ASCII),
    DBG_UNMAPPED: re.compile(r"0x" + _H + r" size (?:0x)?" + _H + _END,
                             re.ASCII),
}
_DBG_FORMAT = {
    DBG_MAP: "'map: iova 0x<hex> pa 0x<hex> size 0x<hex>'",
    DBG_MAPPING: "'mapping: iova 0x<hex> pa 0x<hex> pgsize 0x<hex> "
                 "[count <n>]'",
    DBG_UNMAP: "'unmap this: iova 0x<hex> size 0x<hex>'",
    DBG_UNMAPPED: "'unmapped: iova 0x<hex> size 0x<hex>'",
}
_HEXVAL = re.compile(r"0x[0-9a-fA-F]+", re.ASCII)
_DECVAL = re.compile(r"[0-9]+", re.ASCII)
# characters that may come right before an event name: start of line, a
# space (ftrace/dmesg prefix), ':' (perf's "iommu:map:"), ']' (dmesg stamp)
_BOUNDARY = " \t:]"


class LogFormatError(ValueError):
    """A line is an iommu map/unmap event but not in a format the kernel
    prints. ``lineno``, ``text`` and ``reason`` say where and why."""

    def __init__(self, reason: str, text: str = "", lineno: int = 0):
        self.reason = reason
        self.text = _shorten(text)
        self.lineno = lineno
        where = f"line {lineno}: " if lineno else ""
        super().__init__(f"{where}{reason}: {self.text!r}")


def _shorten(text: str) -> str:
    text = text.rstrip("\r\n")
    if len(text) > _TEXT_MAX:
        text = text[:_TEXT_MAX - 3] + "..."
    return text


@dataclass(frozen=True)
class Problem:
    """A malformed line: its 1-based number, its text and what is wrong."""

    lineno: int
    text: str
    reason: str

    def __str__(self):
        return f"line {self.lineno}: {self.reason}: {self.text!r}"


class Event(NamedTuple):
    """One parsed event.

    ``kind`` is one of :data:`KIND_NAMES`; ``iova`` and ``size`` are the
    request (or piece) range; ``paddr`` is ``None`` for unmaps; ``count`` is
    the number of ``size`` pages of a ``debug_mapping`` piece (1 otherwise);
    ``unmapped`` is the ftrace unmap's ``unmapped_size`` (``None``
    otherwise); ``dev`` the ``dev=`` name when the log gives one; ``covered``
    is True for a ``pr_debug`` request whose pieces follow, ``child`` for a
    piece that belongs to the request before it.
    """

    kind: str
    line: int
    iova: int
    size: int
    paddr: int | None = None
    count: int = 1
    unmapped: int | None = None
    dev: str | None = None
    covered: bool = False
    child: bool = False


def _hex(s: str, name: str, text: str) -> int:
    v = int(s, 16)
    if v >= _U64:
        raise LogFormatError(f"{name} 0x{s} does not fit in 64 bits", text)
    return v


def _dec(s: str, name: str, text: str) -> int:
    v = int(s)
    if v >= _U64:
        raise LogFormatError(f"{name} {s} does not fit in 64 bits", text)
    return v


def _scan(line: str):
    """The fields of an iommu event line as a tuple
    ``(kind, iova, size, paddr, arg, dev)``, ``None`` for any other line;
    raises :class:`LogFormatError` for a malformed event line.

    ``arg`` is the piece count of a ``mapping`` line and the
    ``unmapped_size`` of an ftrace unmap, else 0/1.
    """
    i = line.find("IOMMU:")
    if i >= 0:
        # ftrace: the event name ends right before "IOMMU:", possibly
        # padded by trace-cmd; it must be exactly "map" or "unmap"
        if i >= 5 and line.startswith("map: ", i - 5):
            w = i - 5
        else:
            head = line[:i].rstrip(" \t")
            if not head.endswith("map:"):
                return None
            w = len(head) - 4
        if w >= 2 and line.startswith("un", w - 2):
            w -= 2
            kind = UNMAP
        else:
            kind = MAP
        if w and line[w - 1] not in _BOUNDARY:
            return None          # e.g. "foo_map: IOMMU:", another event
        j = i + 6
        if line.startswith(" ", j):
            j += 1
        if kind == MAP:
            m = _FT_MAP.match(line, j)
            if m:
                # {1,16} hex digits always fit 64 bits; sizes may not
                dev, iova, end, paddr, size = m.groups()
                iova = int(iova, 16)
                size = int(size)
                if size >= _U64:
                    raise LogFormatError(f"size {size} does not fit in 64 "
                                         "bits", line)
                if end is not None and int(end, 16) != iova + size:
                    raise LogFormatError(
                        f"iommu:map range end 0x{end} is not iova + size "
                        f"({iova + size:#x})", line)
                return MAP, iova, size, int(paddr, 16), 1, dev
        else:
            m = _FT_UNMAP.match(line, j)
            if m:
                dev, iova, end, size, unmapped = m.groups()
                iova = int(iova, 16)
                size = int(size)
                unmapped = int(unmapped)
                if size >= _U64 or unmapped >= _U64:
                    raise LogFormatError(f"size {size} or unmapped_size "
                                         f"{unmapped} does not fit in 64 "
                                         "bits", line)
                if end is not None and int(end, 16) != iova + size:
                    raise LogFormatError(
                        f"iommu:unmap range end 0x{end} is not iova + size "
                        f"({iova + size:#x})", line)
                return UNMAP, iova, size, 0, unmapped, dev
        return _scan_ftrace_fields(line, line[j:], kind)

    j = line.find(": iova ")
    if j < 0:
        return None
    if line.endswith("unmap this", 0, j):
        kind, w = DBG_UNMAP, j - 10
    elif line.endswith("unmapped", 0, j):
        kind, w = DBG_UNMAPPED, j - 8
    elif line.endswith("mapping", 0, j):
        kind, w = DBG_MAPPING, j - 7
    elif line.endswith("map", 0, j):
        kind, w = DBG_MAP, j - 3
    else:
        return None
    if w and line[w - 1] not in _BOUNDARY:
        return None              # e.g. "dma_map: iova", another driver
    m = _DBG[kind].match(line, j + 7)
    if not m:
        raise LogFormatError(
            f"{KIND_NAMES[kind].replace('debug_', '')} line does not read as "
            f"iommu.c prints it, {_DBG_FORMAT[kind]}", line)
    g = m.groups()
    iova = _hex(g[0], "iova", line)
    if kind == DBG_MAP:
        return (kind, iova, _hex(g[2], "size", line),
                _hex(g[1], "pa", line), 1, None)
    if kind == DBG_MAPPING:
        pa = _hex(g[1], "pa", line)
        if g[2] is not None:
            pgsize = _hex(g[2], "pgsize", line)
        else:
            pgsize = _dec(g[3], "pgsize", line)
        if pgsize <= 0 or pgsize & (pgsize - 1):
            raise LogFormatError(
                f"mapping pgsize {pgsize:#x} is not a power of two "
                "(iommu_pgsize always picks one)", line)
        count = 1
        if g[4] is not None:
            count = _dec(g[4], "count", line)
            if count < 1:
                raise LogFormatError("mapping count 0: iommu_pgsize never "
                                     "returns fewer than 1 page", line)
        return kind, iova, pgsize, pa, count, None
    return kind, iova, _hex(g[1], "size", line), 0, 1, None


def _scan_ftrace_fields(line: str, rest: str, kind: int):
    """Field-by-field reading of an ftrace map/unmap body that the fast
    patterns refused: either a layout they do not cover (``dev=`` in another
    place, an extra ``key=value`` a vendor added) or an error to name."""
    name = "iommu:map" if kind == MAP else "iommu:unmap"
    toks = rest.split()
    fields: dict[str, str] = {}
    end = None
    k = 0
    while k < len(toks):
        t = toks[k]
        key, eq, val = t.partition("=")
        if not eq or not key:
            raise LogFormatError(f"{name} has unexpected text {t!r}", line)
        if key in fields:
            raise LogFormatError(f"{name} gives {key}= twice", line)
        fields[key] = val
        if key == "iova" and k + 1 < len(toks) and toks[k + 1] == "-":
            if k + 2 >= len(toks) or "=" in toks[k + 2]:
                raise LogFormatError(f"{name} iova range has no end", line)
            end = toks[k + 2]
            k += 2
        k += 1
    need = ("iova", "paddr", "size") if kind == MAP else \
        ("iova", "size", "unmapped_size")
    for key in need:
        if key not in fields:
            raise LogFormatError(f"{name} has no {key}= field", line)
    wrong = "unmapped_size" if kind == MAP else "paddr"
    if wrong in fields:
        raise LogFormatError(f"{name} does not carry a {wrong}= field", line)
    vals = {}
    for key in ("iova", "paddr"):
        if key in fields:
            v = fields[key]
            if not _HEXVAL.fullmatch(v):
                raise LogFormatError(
                    f"{name} {key} {v!r} is not a 0x hex number", line)
            vals[key] = _hex(v[2:], key, line)
    for key in ("size", "unmapped_size"):
        if key in fields:
            v = fields[key]
            if not _DECVAL.fullmatch(v):
                raise LogFormatError(
                    f"{name} {key} {v!r} is not a decimal number (the "
                    "tracepoint prints %zu)", line)
            vals[key] = _dec(v, key, line)
    iova, size = vals["iova"], vals["size"]
    if end is not None:
        if not _HEXVAL.fullmatch(end):
            raise LogFormatError(
                f"{name} range end {end!r} is not a 0x hex number", line)
        if int(end, 16) != iova + size:
            raise LogFormatError(
                f"{name} range end {end} is not iova + size "
                f"({iova + size:#x})", line)
    dev = fields.get("dev")
    if kind == MAP:
        return MAP, iova, size, vals["paddr"], 1, dev
    return UNMAP, iova, size, 0, vals["unmapped_size"], dev


def parse_line(text: str, lineno: int = 0) -> Event | None:
    """Parse one log line: an :class:`Event`, or ``None`` for a line that is
    not an iommu map/unmap event. Raises :class:`LogFormatError` (and
    nothing else) for a malformed event line. ``covered``/``child`` are only
    known in context; see :func:`parse_log`."""
    if not isinstance(text, str):
        raise TypeError(f"parse_line takes a str, not {type(text).__name__}")
    try:
        got = _scan(text)
    except LogFormatError as e:
        if lineno:
            raise LogFormatError(e.reason, text, lineno) from None
        raise
    if got is None:
        return None
    kind, iova, size, paddr, arg, dev = got
    return _event(kind, lineno, iova, size, paddr, arg, dev, 0)


def _event(kind, line, iova, size, paddr, arg, dev, flags):
    is_unmap = kind in (UNMAP, DBG_UNMAP, DBG_UNMAPPED)
    return Event(KIND_NAMES[kind], line, iova, size,
                 None if is_unmap else paddr,
                 arg if kind == DBG_MAPPING else 1,
                 arg if kind == UNMAP else None,
                 dev, bool(flags & COVERED), bool(flags & CHILD))


class EventLog(Sequence):
    """The parsed events of a log, stored column-wise in compact arrays
    (about 50 bytes an event); indexing gives :class:`Event` tuples.

    The columns (``kinds``, ``flags``, ``lines``, ``iovas``, ``sizes``,
    ``paddrs``, ``args``, ``devs``) are public for fast readers such as the
    replay; ``devices`` maps a ``devs`` index to its name (0 is ``None``).
    """

    def __init__(self):
        self.kinds = array("B")
        self.flags = array("B")
        self.lines = array("I")
        self.iovas = array("Q")
        self.sizes = array("Q")
        self.paddrs = array("Q")
        self.args = array("Q")
        self.devs = array("I")
        self.devices: list = [None]
        self._dev_index = {None: 0}

    def __len__(self):
        return len(self.kinds)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"event {i} is out of range (0..{len(self) - 1})")
        return _event(self.kinds[i], self.lines[i], self.iovas[i],
                      self.sizes[i], self.paddrs[i], self.args[i],
                      self.devices[self.devs[i]], self.flags[i])

    def __repr__(self):
        return f"<EventLog of {len(self)} events>"

    def dev_index(self, name) -> int:
        idx = self._dev_index.get(name)
        if idx is None:
            idx = self._dev_index[name] = len(self.devices)
            self.devices.append(name)
        return idx


@dataclass
class ParsedLog:
    """What :func:`parse_log` read: ``events`` (an :class:`EventLog`),
    ``lines`` read, ``skipped`` (lines that are not iommu events),
    ``malformed`` (count) and ``problems`` (the first
    :data:`MAX_PROBLEMS` malformed lines as :class:`Problem`)."""

    events: EventLog
    lines: int = 0
    skipped: int = 0
    malformed: int = 0
    problems: list = None

    def __post_init__(self):
        if self.problems is None:
            self.problems = []


def _open_source(source):
    """How to read ``source`` (a path, a text or binary file object, or an
    iterable of lines): ``(reader, tell, total, closer, whole)``. ``whole``
    is True when ``reader`` is a text file that this module opened, with
    universal newlines, so that it can be read in blocks of characters (its
    lines are then exactly what iterating it would give); otherwise
    ``reader`` is iterated line by line. ``tell`` reads progress, ``total``
    is its end (or ``None``)."""
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        f = open(path, "r", encoding="utf-8", errors="replace", newline=None)
        total = os.fstat(f.fileno()).st_size
        return f, (lambda: f.buffer.tell()), total, f.close, True
    if isinstance(source, (bytes, bytearray)):
        raise TypeError("give a path, a file object or lines, not bytes")
    if isinstance(source, io.TextIOWrapper):
        buf = source.buffer
        total = None
        try:
            total = os.fstat(source.fileno()).st_size
        except (OSError, io.UnsupportedOperation, AttributeError):
            pass
        return source, (lambda: _tell(buf)), total, None, False
    if isinstance(source, (io.BufferedIOBase, io.RawIOBase)):
        wrapped = io.TextIOWrapper(source, encoding="utf-8", errors="replace")
        return _open_source(wrapped)[0:3] + (wrapped.detach, True)
    return source, None, None, None, False


def _tell(buf):
    try:
        return buf.tell()
    except (OSError, ValueError):
        return 0


def _decode(line):
    if isinstance(line, (bytes, bytearray)):
        return line.decode("utf-8", "replace")
    if not isinstance(line, str):
        raise TypeError(f"log lines must be str or bytes, not "
                        f"{type(line).__name__}")
    return line


# ---------------------------------------------------------------- bulk reading
# One pass of _BULK over a block of whole lines (preceded by a "\n") gives
# one match per line, so the loop over a block's lines runs in the regex
# engine. A line in the common ftrace form fills groups 1-6 ('un' or '',
# iova, range end or '', paddr or '', size, unmapped_size or ''); any other
# line fills group 7 with its text and is read by _scan, in its place. The
# common form is what _scan accepts from _FT_MAP/_FT_UNMAP with no dev=,
# narrowed so that both read it alike: the prefix has no letter 'I' (so the
# "IOMMU:" found is the line's first), the event name follows a boundary
# character or the start of the line, one space follows "IOMMU:", sizes
# have at most 19 digits (below 2**64). The range end is checked after.
_BULK = re.compile(
    r"[^I\n]*+IOMMU: "
    r"(?:(?<=[ \t:\]\n](un)map: IOMMU: )|(?<=[ \t:\]\n]map: IOMMU: ))"
    r"iova=0x([0-9a-fA-F]{1,16})(?: - 0x([0-9a-fA-F]{1,16}))? "
    r"(?(1)|paddr=0x([0-9a-fA-F]{1,16}) )size=([0-9]{1,19})"
    r"(?(1) unmapped_size=([0-9]{1,19}))[ \t\r]*\n"
    r"|([^\n]*\n)", re.ASCII)
#: lines of an iterable taken at a time; characters of a file read at a time
_BATCH = 256
_BLOCK = 1 << 15
_LINE_MAX = (1 << 32) - 1
_TICK = 0x4000           # lines between progress updates
_BIG_ENDIAN = sys.byteorder == "big"
_ZERO16 = {"": "0" * 16}.get     # paddr of an unmap in a mixed block
_ONE = {"": "1"}.get             # the arg of a map in a mixed block
_ends_with_newline = methodcaller("endswith", "\n")


def _hex_column(col) -> array:
    """Hex digit strings as an array of 64-bit values: all at once when
    every one has 16 digits (the kernel prints %016llx), else one by one."""
    s = "".join(col)
    if len(s) == 16 * len(col):
        a = array("Q", bytes.fromhex(s))
        if not _BIG_ENDIAN:
            a.byteswap()
        return a
    return array("Q", map(int, col, repeat(16)))


def _dec_column(col) -> array:
    """Decimal digit strings (at most 19 digits) as an array, converting
    each distinct string once."""
    values = {s: int(s) for s in set(col)}
    return array("Q", map(values.__getitem__, col))


class _Reader:
    """parse_log's state: the event columns, the counts, and the linking of
    ``pr_debug`` requests to their pieces."""

    def __init__(self):
        self.ev = ev = EventLog()
        self.out = ParsedLog(ev)
        self.n = self.skipped = self.malformed = 0
        # pr_debug request linking state
        self.req = -1         # index of the open request, or -1
        self.req_end = 0      # end of its iova range
        self.req_delta = 0    # paddr - iova of a map request
        self.last_piece = -1  # index of its latest piece

    # -- one line ----------------------------------------------------------
    def line(self, line, n):
        """Read line number ``n`` with _scan and store what it is."""
        if line.__class__ is not str:
            line = _decode(line)
        try:
            got = _scan(line)
        except LogFormatError as e:
            self.malformed += 1
            if len(self.out.problems) < MAX_PROBLEMS:
                self.out.problems.append(Problem(n, _shorten(line), e.reason))
            return
        if got is None:
            self.skipped += 1
            return
        ev = self.ev
        kinds, iovas, sizes, args = ev.kinds, ev.iovas, ev.sizes, ev.args
        kind, iova, size, paddr, arg, dev = got
        flag = 0
        if kind >= DBG_MAP:
            req = self.req
            if kind == DBG_MAP or kind == DBG_UNMAP:
                self.req = len(kinds)
                self.req_end = iova + size
                self.req_delta = paddr - iova
                self.last_piece = -1
            elif req >= 0 and (kinds[req] == kind - 1) and \
                    iovas[req] <= iova < self.req_end and \
                    (self.last_piece < 0 or iova > iovas[self.last_piece]) \
                    and (kind == DBG_UNMAPPED or
                         paddr - iova == self.req_delta):
                flag = CHILD
                ev.flags[req] |= COVERED
                last = self.last_piece
                if kind == DBG_MAPPING:
                    req_end = self.req_end
                    if last >= 0:
                        # map_pages stopped early: the next piece starts
                        # where the previous one really ended
                        p_iova = iovas[last]
                        p_size = sizes[last]
                        if iova < p_iova + p_size * args[last] and \
                                not (iova - p_iova) % p_size:
                            args[last] = (iova - p_iova) // p_size
                    if iova + size * arg > req_end and \
                            not (req_end - iova) % size:
                        arg = max(1, (req_end - iova) // size)
                self.last_piece = len(kinds)
            else:
                self.req = -1
        else:
            self.req = -1
        kinds.append(kind)
        ev.flags.append(flag)
        ev.lines.append(n if n < _LINE_MAX else _LINE_MAX)
        iovas.append(iova)
        sizes.append(size)
        ev.paddrs.append(paddr)
        args.append(arg)
        ev.devs.append(0 if dev is None else ev.dev_index(dev))

    def lines(self, lines):
        """Read ``lines`` one by one."""
        n = self.n
        one = self.line
        for line in lines:
            n += 1
            self.n = n
            one(line, n)

    # -- a block of lines ----------------------------------------------------
    def batch(self, batch):
        """Read a list of lines (str or bytes, with or without their
        newlines) as one block when they join into one, else one by one."""
        if not batch:
            return
        kinds = set(map(type, batch))
        if kinds != {str}:
            if not kinds <= {str, bytes, bytearray}:
                return self.lines(batch)     # raises at the odd one
            batch = list(map(_decode, batch))
        nb = len(batch)
        text = "\n".join(batch)
        if text.count("\n") == nb - 1:
            return self.block("\n" + text + "\n", batch, nb)
        text = "".join(batch)
        if text.count("\n") == nb and all(map(_ends_with_newline, batch)):
            return self.block("\n" + text, batch, nb)
        self.lines(batch)

    def block(self, text, originals=None, expect=None):
        """Read the lines of ``text``, a "\\n" then whole lines each ending
        in "\\n". ``originals``, if given, are the lines as the caller gave
        them (what _scan is handed for the lines it reads)."""
        found = _BULK.findall(text, 1)
        nlines = len(found)
        if not nlines:
            return
        base = self.n
        if expect is not None and nlines != expect or \
                base + nlines >= _LINE_MAX:
            return self._block_by_line(text, originals)
        un, iov, end, pa, sz, unm, other = zip(*found)
        slow = list(compress(range(nlines), other))
        if len(slow) == nlines:
            return self._block_by_line(text, originals)
        if slow:
            sel = list(map(not_, other))
            un = list(compress(un, sel))
            iov = list(compress(iov, sel))
            end = list(compress(end, sel))
            pa = list(compress(pa, sel))
            sz = list(compress(sz, sel))
            unm = list(compress(unm, sel))
        nf = len(iov)
        nun = len("".join(un)) >> 1
        iovas = _hex_column(iov)
        sizes = _dec_column(sz)
        if nun == 0:
            kinds = array("B", bytes(nf))
            paddrs = _hex_column(pa)
            args = array("Q", [1]) * nf
        elif nun == nf:
            kinds = array("B", b"\x01" * nf)
            paddrs = array("Q", bytes(8 * nf))
            args = _dec_column(unm)
        else:
            kinds = array("B", map(bool, un))
            paddrs = _hex_column(list(map(_ZERO16, pa, pa)))
            args = _dec_column(list(map(_ONE, unm, unm)))
        if any(end):
            # a range's end must be iova + size, or _scan names the error
            want = list(map(add, compress(iovas, end), compress(sizes, end)))
            try:
                ok = _hex_column(list(compress(end, end))) == array("Q", want)
            except OverflowError:
                ok = False
            if not ok:
                return self._block_by_line(text, originals)
        numbers = range(base + 1, base + nlines + 1)
        cols = (kinds, array("B", bytes(nf)),
                array("I", compress(numbers, sel) if slow else numbers),
                iovas, sizes, paddrs, args, array("I", bytes(4 * nf)))
        ev = self.ev
        dest = (ev.kinds, ev.flags, ev.lines, ev.iovas, ev.sizes, ev.paddrs,
                ev.args, ev.devs)
        if not slow:
            for d, c in zip(dest, cols):
                d += c
            self.req = -1
            self.n = base + nlines
            return
        done = 0
        one = self.line
        for k, idx in enumerate(slow):
            upto = idx - k           # common lines before this one
            if upto > done:
                for d, c in zip(dest, cols):
                    d += c[done:upto]
                done = upto
                self.req = -1
            one(originals[idx] if originals is not None else other[idx],
                base + idx + 1)
        if nf > done:
            for d, c in zip(dest, cols):
                d += c[done:]
            self.req = -1
        self.n = base + nlines

    def _block_by_line(self, text, originals):
        if originals is None:
            originals = [s + "\n" for s in text[1:-1].split("\n")]
        self.lines(originals)

    def result(self) -> ParsedLog:
        out = self.out
        out.lines = self.n
        out.skipped = self.skipped
        out.malformed = self.malformed
        return out


def parse_log(source, progress=None) -> ParsedLog:
    """Parse a whole log: ``source`` is a path, a file object or an iterable
    of lines (str or bytes). Never raises for the log's content; malformed
    lines end up in ``problems``. ``progress``, if given, is an object with
    ``start(phase, total)``, ``update(done)`` and ``close()`` (see
    :mod:`iommu_viz.ingest.progress`).

    Lines are read a block at a time: the common ftrace map/unmap lines by
    one regular expression over the block, every other line by the same
    per-line reader as :func:`parse_line`, in its place; both give the same
    events."""
    reader, tell, total, closer, whole = _open_source(source)
    r = _Reader()
    tick = _TICK          # lines read when progress is next updated
    if progress is not None:
        progress.start("parse", total if tell else None)
    try:
        if whole:
            read = reader.read
            parts = ["\n"]      # the block so far: "\n", then its text
            while True:
                chunk = read(_BLOCK)
                if not chunk:
                    break
                cut = chunk.rfind("\n") + 1
                if not cut:
                    parts.append(chunk)       # inside a long line
                    continue
                parts.append(chunk[:cut])
                r.block("".join(parts))
                parts = ["\n", chunk[cut:]]
                if progress is not None and r.n >= tick:
                    progress.update(tell())
                    tick = r.n + _TICK
            carry = "".join(parts[1:])
            if carry:
                r.lines([carry])     # a last line with no newline
        else:
            it = iter(reader)
            while True:
                batch = list(islice(it, _BATCH))
                if not batch:
                    break
                r.batch(batch)
                if progress is not None and r.n >= tick:
                    progress.update(tell() if tell else r.n)
                    tick = r.n + _TICK
    finally:
        if closer is not None:
            closer()
        if progress is not None:
            progress.close()
    return r.result()
