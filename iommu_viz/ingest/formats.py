"""The line formats of the IOMMU map/unmap activity a Linux kernel logs.

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
raises :class:`LogFormatError` for it, :func:`~.parse.parse_log` records it
(line number, text, reason) and carries on.

The timestamp of the ftrace prefix (``438.308478:``) or of the dmesg
prefix (``[  438.308478]``) is kept with the event, in seconds, when the
line has one.

A ``pr_debug`` request and its pieces describe one operation; the parser
links them (the request is marked *covered*, the pieces *child*), so that a
replay applies the pieces and counts the request once. Under map_pages
(v5.14+) a ``mapping`` line's ``count`` is what was asked of the page table,
which may stop at the end of a table and map fewer; when the next piece starts
earlier than the count implies, the parser trims the count to what was in
fact mapped.

Example::

    >>> from iommu_viz.ingest.formats import parse_line
    >>> ev = parse_line("qemu-kvm-4575 [008] ....... 438.308478: map: IOMMU: "
    ...     "iova=0x00000000000c0000 - 0x00000000000c1000 "
    ...     "paddr=0x00000001a68c0000 size=4096")
    >>> ev.kind, hex(ev.iova), hex(ev.paddr), ev.size
    ('map', '0xc0000', '0x1a68c0000', 4096)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

__all__ = [
    "Event", "LogFormatError", "Problem", "parse_line", "line_time",
    "line_prefix", "stamp_time",
    "KIND_NAMES",
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
#: The timestamp of an ftrace prefix ("438.308478: ") or a dmesg one
#: ("[  438.308478] "): the first such number before the event's name.
TIME = re.compile(r"[ \[]([0-9]+\.[0-9]+)[:\]] ", re.ASCII)
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
    piece that belongs to the request before it; ``time`` the timestamp of
    the line's ftrace or dmesg prefix in seconds (``None`` without one).
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
    time: float | None = None


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
    known in context; see :func:`~.parse.parse_log`."""
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
    return _event(kind, lineno, iova, size, paddr, arg, dev, 0,
                  line_time(text))


def line_prefix(line: str) -> str:
    """What comes before an event line's fields: the text before its
    first ``IOMMU:`` (ftrace) or ``: iova `` (pr_debug)."""
    pos = line.find("IOMMU:")
    if pos < 0:
        pos = line.find(": iova ")
    return line[:pos] if pos >= 0 else line


def stamp_time(prefix: str) -> float | None:
    """The timestamp (seconds) in an event's prefix: the first
    ``NNN.NNN:`` or ``[ NNN.NNN]`` in it, else ``None``."""
    m = TIME.search(prefix)
    return float(m.group(1)) if m else None


def line_time(line: str) -> float | None:
    """The timestamp (seconds) of an event line, from its prefix."""
    return stamp_time(line_prefix(line))


def _event(kind, line, iova, size, paddr, arg, dev, flags, time=None):
    is_unmap = kind in (UNMAP, DBG_UNMAP, DBG_UNMAPPED)
    return Event(KIND_NAMES[kind], line, iova, size,
                 None if is_unmap else paddr,
                 arg if kind == DBG_MAPPING else 1,
                 arg if kind == UNMAP else None,
                 dev, bool(flags & COVERED), bool(flags & CHILD), time)
