"""The line reader under :func:`~.parse.parse_log`: the common ftrace lines
of a block by one regular expression, every other line one by one (events
by :mod:`.formats`, fault reports by :mod:`.faults`), the linking of
``pr_debug`` requests to their pieces, and the joining of lines a mail
client wrapped (see :mod:`.parse`).
"""

from __future__ import annotations

import re
import sys
from array import array
from itertools import compress, repeat
from operator import add, methodcaller, not_

from .eventlog import EventLog, ParsedLog
from .faults import scan_fault, smmu_v3_dword, smmu_v3_fault
from .formats import (
    CHILD, COVERED, DBG_MAP, DBG_MAPPING, DBG_UNMAP, DBG_UNMAPPED,
    MAX_PROBLEMS, LogFormatError, Problem, _scan, _shorten, line_prefix,
)
from .lines import strip_quote

#: a line that ends where an event's fields would start: the rest may be
#: on the next line (a mail client's wrap)
_OPEN_END = re.compile(r"(?:\b(?:un)?map:|mapping:|unmapped:|unmap this:|"
                       r"IOMMU:|io_page_fault:|Event logged|DMAR:|"
                       r"Unhandled context fault:)[ \t]*$", re.ASCII)
#: lines a wrapped event may span
_JOIN_MAX = 3


def _open_end(line) -> bool:
    """True when ``line`` stops where an event's fields would start."""
    t = line.rstrip()
    return (t.endswith(":") or t.endswith("logged")) and \
        _OPEN_END.search(t) is not None


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
# engine. A line in the common ftrace form fills groups 1-7 (its prefix,
# 'un' or '', iova, range end or '', paddr or '', size, unmapped_size
# or ''); any other line fills group 8 with its text and is read by _scan,
# in its place. The common form is what _scan accepts from
# _FT_MAP/_FT_UNMAP with no dev=, narrowed so that both read it alike: the
# prefix has no letter 'I' (so the "IOMMU:" found is the line's first), the
# event name follows a boundary character or the start of the line, one
# space follows "IOMMU:", sizes have at most 19 digits (below 2**64). The
# prefix is kept as formats.line_prefix gives it (the timestamp is read
# from it only when asked for). The range end is checked after.
_BULK = re.compile(
    r"([^I\n]*+)IOMMU: "
    r"(?:(?<=[ \t:\]\n](un)map: IOMMU: )|(?<=[ \t:\]\n]map: IOMMU: ))"
    r"iova=0x([0-9a-fA-F]{1,16})(?: - 0x([0-9a-fA-F]{1,16}))? "
    r"(?(2)|paddr=0x([0-9a-fA-F]{1,16}) )size=([0-9]{1,19})"
    r"(?(2) unmapped_size=([0-9]{1,19}))[ \t\r]*\n"
    r"|([^\n]*\n)", re.ASCII)
_LINE_MAX = (1 << 32) - 1
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
    """parse_log's state: the event columns, the counts, the linking of
    ``pr_debug`` requests to their pieces, and the lines held for a join
    (a wrapped event) or an SMMUv3 event dump still being read."""

    def __init__(self):
        self.ev = ev = EventLog()
        self.out = ParsedLog(ev)
        self.n = self.skipped = self.malformed = 0
        # pr_debug request linking state
        self.req = -1         # index of the open request, or -1
        self.req_end = 0      # end of its iova range
        self.req_delta = 0    # paddr - iova of a map request
        self.last_piece = -1  # index of its latest piece
        self.handed = 0       # events handed out by take()
        self.pend = None      # [(text, n), ...] lines held for a join, reason
        self.evt = None       # (head FaultLine, [dwords]) of an SMMUv3 dump

    # -- one line ----------------------------------------------------------
    def line(self, line, n):
        """Read line number ``n``: continue a held line or an SMMUv3 dump
        with it, or read it afresh."""
        if line.__class__ is not str:
            line = _decode(line)
        if self.evt is not None and self._dword(line):
            return
        if self.pend is not None and self._join(line, n):
            return
        self._fresh(line, n)

    def _fresh(self, line, n):
        try:
            got = _scan(line)
        except LogFormatError as e:
            self.pend = ([(line, n)], e.reason)
            return
        if got is None:
            self._other(line, n)
            return
        self._store(got, n, line_prefix(line))

    def _other(self, line, n):
        """A line that is no map/unmap event: a fault report, a line held
        for a join, or a skipped line."""
        try:
            f = scan_fault(line, n)
        except LogFormatError as e:
            self.pend = ([(line, n)], e.reason)
            return
        if f is None:
            if _open_end(line):
                self.pend = ([(line, n)], None)
            else:
                self.skipped += 1
            return
        self._fault(f, 1)

    def _fault(self, f, nlines):
        out = self.out
        if f.more:
            self.evt = (f, [])
            out.fault_lines += nlines
            return
        out.fault_lines += nlines
        if f.iova is None:
            return
        out.faults.append(f)
        out.fault_at.append(self.handed + len(self.ev))

    def _dword(self, line) -> bool:
        """An SMMUv3 event dump line: one more dword of the open event."""
        head, words = self.evt
        d = smmu_v3_dword(strip_quote(line))
        if d is None:
            self._drop_evt()
            return False
        words.append(d)
        self.out.fault_lines += 1
        if len(words) == head.more:
            self.evt = None
            self._fault(smmu_v3_fault(head, words), 0)
        return True

    def _drop_evt(self):
        head, words = self.evt
        self.evt = None
        self._problem(head.line, f"arm-smmu-v3 event dump has {len(words)} "
                      f"of its {head.more} dwords", "event received:")

    def _problem(self, n, reason, text):
        self.malformed += 1
        if len(self.out.problems) < MAX_PROBLEMS:
            self.out.problems.append(Problem(n, _shorten(text), reason))

    def _join(self, line, n) -> bool:
        """Try ``line`` as the continuation of the held line(s); False
        when it is not one (the held lines are then reported)."""
        held, reason = self.pend
        cont = strip_quote(line).strip()
        ok = bool(cont) and held[-1][1] + 1 == n
        if ok:
            try:
                ok = _scan(line) is None and scan_fault(line) is None
            except LogFormatError:
                pass
        if not ok:
            self.flush()
            return False
        text = held[0][0].rstrip(" \t\r\n") + " " + " ".join(
            strip_quote(t).strip() for t, _ in held[1:] + [(cont, n)])
        first = held[0][1]
        try:
            got = _scan(text)
            f = None if got is not None else scan_fault(text, first)
        except LogFormatError as e:
            if len(held) + 1 < _JOIN_MAX:
                self.pend = (held + [(line, n)], reason)
                return True
            self.pend = (held + [(line, n)], reason or e.reason)
            self.flush()
            return True
        if got is None and f is None:
            if len(held) + 1 < _JOIN_MAX and _open_end(text):
                self.pend = (held + [(line, n)], reason)
                return True
            self.flush()
            return False
        self.pend = None
        self.out.rejoined += len(held)
        if got is not None:
            self._store(got, first, line_prefix(text))
        else:
            self._fault(f, 1)
        return True

    def flush(self):
        """Report held lines as they were: the first as malformed (or
        skipped), the others read again on their own."""
        if self.evt is not None:
            self._drop_evt()
        if self.pend is None:
            return
        held, reason = self.pend
        self.pend = None
        (text, n), rest = held[0], held[1:]
        if reason is None:
            self.skipped += 1
        else:
            self._problem(n, reason, text)
        for t, k in rest:
            self.line(t, k)
        if self.pend is not None:
            self.flush()

    def _store(self, got, n, stamp):
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
        ev.stamps.append(stamp)

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
        ts, un, iov, end, pa, sz, unm, other = zip(*found)
        slow = list(compress(range(nlines), other))
        if len(slow) == nlines:
            return self._block_by_line(text, originals)
        if slow:
            sel = list(map(not_, other))
            ts = list(compress(ts, sel))
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
                iovas, sizes, paddrs, args, array("I", bytes(4 * nf)),
                list(ts))
        ev = self.ev
        dest = (ev.kinds, ev.flags, ev.lines, ev.iovas, ev.sizes, ev.paddrs,
                ev.args, ev.devs, ev.stamps)
        if self.pend is not None or self.evt is not None:
            if not slow or slow[0]:
                self.flush()        # a complete event follows the held line
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
                if self.pend is not None or self.evt is not None:
                    self.flush()
                for d, c in zip(dest, cols):
                    d += c[done:upto]
                done = upto
                self.req = -1
            one(originals[idx] if originals is not None else other[idx],
                base + idx + 1)
        if nf > done:
            if self.pend is not None or self.evt is not None:
                self.flush()
            for d, c in zip(dest, cols):
                d += c[done:]
            self.req = -1
        self.n = base + nlines

    def _block_by_line(self, text, originals):
        if originals is None:
            originals = [s + "\n" for s in text[1:-1].split("\n")]
        self.lines(originals)

    def take(self, final=False) -> EventLog:
        """The events read so far that no later line can change, handed
        out (an open ``pr_debug`` request and its pieces stay: a piece
        still to come marks the request covered); ``final``: all of
        them, the input is done."""
        ev = self.ev
        cut = len(ev) if self.req < 0 or final else self.req
        head = ev.split(cut)
        self.handed += cut
        if final:
            self.req = -1
        elif self.req >= 0:
            self.req -= cut
            if self.last_piece >= 0:
                self.last_piece -= cut
        return head

    def result(self) -> ParsedLog:
        self.flush()
        out = self.out
        out.lines = self.n
        out.skipped = self.skipped
        out.malformed = self.malformed
        return out


