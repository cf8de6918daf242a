"""Readers for real logs: ftrace ``iommu:map``/``iommu:unmap`` events and the
``pr_debug`` lines of drivers/iommu/iommu.c, and their replay into the
page-table model (LPAE, or v7s with ``fmt="v7s"``).

    >>> from iommu_viz.ingest import replay
    >>> r = replay("examples/vm-start.log")          # doctest: +SKIP
    >>> print(r.summary)                              # doctest: +SKIP
"""

from .parse import (Event, EventLog, LogFormatError, ParsedLog, Problem,
                    parse_line, parse_log)
from .replay import (CountingFlushOps, Replay, Summary, format_mappings,
                     replay)

__all__ = ["Event", "EventLog", "LogFormatError", "ParsedLog", "Problem",
           "parse_line", "parse_log", "CountingFlushOps", "Replay",
           "Summary", "format_mappings", "replay"]
