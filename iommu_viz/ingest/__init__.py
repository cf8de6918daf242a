"""Readers for real logs: ftrace ``iommu:map``/``iommu:unmap`` events, the
``pr_debug`` lines of drivers/iommu/iommu.c and the IOMMU drivers' fault
reports, and their replay into the page-table model (LPAE, or v7s with
``fmt="v7s"``).

The modules, in the order a log goes through them: :mod:`.lines` (reading
lines, one numbering), :mod:`.formats` and :mod:`.faults` (what a line
says), :mod:`.reader` and :mod:`.parse` (lines to events, wrapped lines
joined), :mod:`.eventlog` (the events, column-wise), :mod:`.tables` and
:mod:`.engine` (replaying events into a table), :mod:`.explain` (what a
fault met), :mod:`.summary` (summarising), :mod:`.replay` (the entry
point).

    >>> from iommu_viz.ingest import replay
    >>> r = replay("examples/vm-start.log")          # doctest: +SKIP
    >>> print(r.summary)                              # doctest: +SKIP
"""

from .faults import Fault, FaultLine, scan_fault
from .parse import (Event, EventLog, LogFormatError, LogStream, ParsedLog,
                    Problem, parse_line, parse_log)
from .replay import (CountingFlushOps, Replay, Summary, format_mappings,
                     replay)

__all__ = ["Event", "EventLog", "LogFormatError", "LogStream", "ParsedLog",
           "Problem", "parse_line", "parse_log", "CountingFlushOps",
           "Replay", "Summary", "format_mappings", "replay", "Fault",
           "FaultLine", "scan_fault"]
