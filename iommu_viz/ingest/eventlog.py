"""The parsed form of a log: :class:`EventLog` (the events, column-wise)
and :class:`ParsedLog` (the events and the counts of the other lines)."""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field

from .formats import _event, stamp_time

__all__ = ["EventLog", "ParsedLog"]


class EventLog(Sequence):
    """The parsed events of a log, stored column-wise in compact arrays
    (about 60 bytes an event); indexing gives :class:`Event` tuples.

    The columns (``kinds``, ``flags``, ``lines``, ``iovas``, ``sizes``,
    ``paddrs``, ``args``, ``devs``, ``stamps``) are public for fast readers
    such as the replay; ``devices`` maps a ``devs`` index to its name (0 is
    ``None``); ``stamps`` holds each line's prefix (the text before the
    event's fields, where the timestamp is), read by :meth:`time` and
    :attr:`times` only when asked for.
    """

    def __init__(self, devices=None, dev_index=None):
        self.kinds = array("B")
        self.flags = array("B")
        self.lines = array("I")
        self.iovas = array("Q")
        self.sizes = array("Q")
        self.paddrs = array("Q")
        self.args = array("Q")
        self.devs = array("I")
        self.stamps: list = []
        self.devices: list = [None] if devices is None else devices
        self._dev_index = {None: 0} if dev_index is None else dev_index

    _COLUMNS = ("kinds", "flags", "lines", "iovas", "sizes", "paddrs",
                "args", "devs", "stamps")

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
                      self.devices[self.devs[i]], self.flags[i],
                      stamp_time(self.stamps[i]))

    def __repr__(self):
        return f"<EventLog of {len(self)} events>"

    def dev_index(self, name) -> int:
        idx = self._dev_index.get(name)
        if idx is None:
            idx = self._dev_index[name] = len(self.devices)
            self.devices.append(name)
        return idx

    def time(self, i) -> float | None:
        """Event ``i``'s timestamp in seconds, ``None`` when it has none."""
        return stamp_time(self.stamps[i])

    @property
    def times(self) -> array:
        """Every event's timestamp in seconds (NaN where none)."""
        nan = float("nan")
        return array("d", [nan if t is None else t
                           for t in map(stamp_time, self.stamps)])

    def split(self, cut):
        """Cut the log at event ``cut``: returns the first part and keeps
        the rest (sharing the device names)."""
        head = EventLog(self.devices, self._dev_index)
        for name in self._COLUMNS:
            col = getattr(self, name)
            setattr(head, name, col[:cut])
            del col[:cut]
        return head

    def extend(self, other):
        """Append ``other``'s events (same device names)."""
        for name in self._COLUMNS:
            getattr(self, name).extend(getattr(other, name))


@dataclass
class ParsedLog:
    """What :func:`parse_log` read: ``events`` (an :class:`EventLog`),
    ``lines`` read, ``skipped`` (lines that are not iommu events),
    ``malformed`` (count) and ``problems`` (the first
    :data:`MAX_PROBLEMS` malformed lines as :class:`Problem`),
    ``faults`` (fault reports, :class:`~.faults.FaultLine`, each with the
    number of events before it as ``at``: see :attr:`fault_at`),
    ``fault_lines`` (the lines they took), ``rejoined`` (continuation
    lines of wrapped events joined to the line before) and ``binary``
    (the data held NUL bytes: not a text log)."""

    events: EventLog
    lines: int = 0
    skipped: int = 0
    malformed: int = 0
    problems: list = None
    faults: list = field(default_factory=list)
    fault_at: list = field(default_factory=list)
    fault_lines: int = 0
    rejoined: int = 0
    binary: bool = False

    def __post_init__(self):
        if self.problems is None:
            self.problems = []
